/* data/internal.h - the dataset's layout and the helpers its readers share. Not installed.
 *
 * Dimension letters: N sequences, T time steps, I features, O regression outputs. */
#ifndef TG_DATA_INTERNAL_H
#define TG_DATA_INTERNAL_H
#include <tapegrad/data.h>

#include <stdarg.h>

struct tg_dataset {
    int64_t n, features;         /* N, I */
    int64_t max_len;             /* max_n T_n */
    int64_t *offset;             /* [N+1] first step of each sequence; offset[N] = total steps S */
    double *x;                   /* [S, I] row-major, every real step of every sequence */
    tg_label_kind kind;
    int64_t classes;             /* C (CLASS, TAG) */
    int64_t outputs;             /* O (VALUE) */
    int64_t *labels;             /* CLASS: [N]; TAG: [S] (per step, aligned with x) */
    double *values;              /* VALUE: [N, O] */
    char **names;                /* [I] feature names */
};

/* Writes "prefix: message" into err (err may be NULL); returns -1 for `return tgd_fail(...)`. */
int tgd_fail(char *err, size_t errlen, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* An empty dataset of N sequences, I features, S total steps and the given label storage; offset,
 * x, labels/values allocated (uninitialised except offset[0] = 0), names NULL (tgd_default_names).
 * Counts are checked for overflow. returns: new object or NULL + err. */
tg_dataset *tgd_alloc(int64_t n, int64_t features, int64_t steps, tg_label_kind kind, int64_t outputs,
                      char *err, size_t errlen);
int tgd_default_names(tg_dataset *ds, char *err, size_t errlen); /* "x0".. */
/* After offsets and labels are filled: max_len, classes; checks lengths >= 1, labels in range and
 * values finite. `what` names the source in messages. Returns 0 or -1 + err. */
int tgd_finish(tg_dataset *ds, const char *what, char *err, size_t errlen);

/* Whole file in memory, refusing more than max bytes. returns: 0 and *buf malloc'd (+1 NUL byte), or -1. */
int tgd_read_file(const char *path, size_t max, unsigned char **buf, size_t *len, char *err, size_t errlen);

/* ---- typed arrays (npy, IDX, safetensors): a view of little- or big-endian elements in a buffer --- */
typedef enum tgd_elem { TGD_F32, TGD_F64, TGD_I64, TGD_I32, TGD_I16, TGD_I8, TGD_U8 } tgd_elem;
typedef struct tgd_array {
    tgd_elem elem;
    bool big_endian;
    int ndim;
    int64_t shape[4];
    int64_t numel;
    const unsigned char *data;   /* borrowed: numel * itemsize bytes */
    const char *what;            /* "x.npy" / "train.safetensors: tensor 'y'" for messages */
    int64_t base_offset;         /* byte offset of data in its file, for messages */
    bool ints;                   /* every value is an integer (safetensors integers converted to F64) */
} tgd_array;
size_t tgd_elem_size(tgd_elem e);
const char *tgd_elem_name(tgd_elem e);
/* The format table's rows (data/load.c k_formats), for tests/test_data.c: row k's name ("npy", ...)
 * and its fuzz target (tests/fuzz/fuzz_<fuzz>.c); NULL for k out of range. */
int tgd_format_count(void);
const char *tgd_format_name(int k);
const char *tgd_format_fuzz(int k);
bool tgd_elem_integer(tgd_elem e);
double tgd_array_get(const tgd_array *a, int64_t i);
int64_t tgd_array_get_int(const tgd_array *a, int64_t i);
/* numel = product of shape, with overflow check and numel * itemsize <= limit. Returns 0 or -1 + err. */
int tgd_array_numel(tgd_array *a, uint64_t limit, char *err, size_t errlen);

/* Builds a dataset from x (+ optional lengths [N], labels) per the shape rules of tg_dataset_load.
 * scale multiplies every x value (IDX: 1/255). returns: new object or NULL + err. */
tg_dataset *tgd_from_arrays(const tgd_array *x, const tgd_array *lengths, const tgd_array *labels,
                            const tg_data_options *opt, double scale, char *err, size_t errlen);

/* ---- readers: each parses a whole file image (what = the name for messages) --------------------- */
int tgd_npy_parse(const unsigned char *buf, size_t len, const char *what, tgd_array *out, char *err, size_t errlen);
tg_dataset *tgd_csv_parse(const unsigned char *buf, size_t len, const char *what, const tgd_array *labels,
                          const tg_data_options *opt, char *err, size_t errlen);
tg_dataset *tgd_st_parse(const unsigned char *buf, size_t len, const char *what, const tgd_array *labels,
                         const tg_data_options *opt, char *err, size_t errlen);
int tgd_idx_parse(const unsigned char *buf, size_t len, const char *what, tgd_array *out, char *err, size_t errlen);
#endif
