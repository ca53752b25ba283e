/* tapegrad/safetensors.h - read and write the safetensors format (docs/design.md §9).
 *
 *     tg_st_file *f = tg_st_load("case.safetensors");      // returns: new object or NULL
 *     if (!f) { fprintf(stderr, "%s\n", tg_last_error()); return 2; }
 *     tg_tensor *x = tg_st_get(f, "x");                     // returns: borrowed (owned by f)
 *     ...
 *     tg_st_free(f);
 *
 * File layout: 8-byte little-endian header length N, N bytes of UTF-8 JSON
 *   {"name": {"dtype": "F32", "shape": [2, 3], "data_offsets": [0, 24]}, ..., "__metadata__": {"k": "v"}}
 * then the raw little-endian data. The reader validates everything: header length against the file
 * size, JSON syntax (strict: no trailing garbage, no duplicate keys), dtype, shape x itemsize equal to
 * the offset span, offsets inside the data area, non-overlapping, covering it without holes. Tensors of
 * dtype F32 and F64 are loaded; other valid dtypes (F16, BF16, I64, ...) are rejected by name, unless
 * the _flags loaders are asked to convert integers (TG_ST_INTEGERS_AS_F64).
 *
 * Errors here are data errors: functions return NULL / -1 and record a one-line message readable with
 * tg_last_error() (they never call the abort handler), free everything they allocated, and never leave
 * a partial file: tg_st_save replaces a regular file (or creates one) by writing a temporary file in
 * the same directory and renaming it over path; a symbolic link is written through (its target
 * replaced, the link kept); a device or FIFO (/dev/null, a pipe) is written into directly; a directory
 * is an error.
 */
#ifndef TAPEGRAD_SAFETENSORS_H
#define TAPEGRAD_SAFETENSORS_H
#include <tapegrad/tensor.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct tg_st_file tg_st_file;

tg_st_file *tg_st_load(const char *path);                   /* returns: new object (tg_st_free) or NULL */
tg_st_file *tg_st_parse(const void *bytes, size_t size);    /* same, from memory (used by the fuzzer) */
void tg_st_free(tg_st_file *f);                             /* NULL-safe; releases its tensors */
int tg_st_count(const tg_st_file *f);                       /* number of tensors */
const char *tg_st_name_at(const tg_st_file *f, int i);      /* returns: borrowed; in file order */
tg_tensor *tg_st_tensor_at(const tg_st_file *f, int i);     /* returns: borrowed */
tg_tensor *tg_st_get(const tg_st_file *f, const char *name);/* returns: borrowed, NULL if absent (no error) */
/* The same with options: TG_ST_INTEGERS_AS_F64 also loads integer tensors (BOOL, U8..U64, I8..I64),
 * converted to F64 (values beyond 2^53 in magnitude are rejected); tg_st_dtype_at tells the dtype
 * written in the file. Used by the data readers (labels, lengths). */
#define TG_ST_INTEGERS_AS_F64 1u
tg_st_file *tg_st_load_flags(const char *path, unsigned flags);              /* returns: new object or NULL */
tg_st_file *tg_st_parse_flags(const void *bytes, size_t size, unsigned flags); /* returns: new object or NULL */
const char *tg_st_dtype_at(const tg_st_file *f, int i);     /* returns: borrowed, as in the file ("I64") */
int tg_st_meta_count(const tg_st_file *f);
const char *tg_st_meta_key(const tg_st_file *f, int i);     /* returns: borrowed */
const char *tg_st_meta_value(const tg_st_file *f, int i);   /* returns: borrowed */
const char *tg_st_meta(const tg_st_file *f, const char *key); /* returns: borrowed, NULL if absent */

/* Writes n named tensors (F32/F64, any shape) and nmeta string pairs meta[2i] -> meta[2i+1].
 * Names must be unique and non-empty. Returns 0, or -1 with a message (nothing is left at path
 * unless it existed before, in which case it is untouched). args: borrowed. */
int tg_st_save(const char *path, int n, const char *const *names, tg_tensor *const *tensors,
               int nmeta, const char *const *meta);

#ifdef __cplusplus
}
#endif
#endif
