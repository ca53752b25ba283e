/* tensor/alloc.h - the one allocation entry point of the library (private: not installed).
 *
 * Every heap allocation made by tensor/, data/, autograd/, nn/, optim/, train/ and dist/ goes through these
 * macros, so a test can make any single one of them fail (tests/test_allocfail.c sweeps N over all the
 * allocations of an operation: SQLite's malloc test). What they return is plain libc memory, released
 * with free() (also by a library user, for the strings some functions return).
 *
 * The hook is always compiled in but off: while no test has armed it the cost is one relaxed atomic
 * load per allocation (the tensor buffers come from per-thread pools, so allocations are rare on the
 * hot path), and the sweep then runs against the very library that is shipped, in the normal, ASan
 * (LeakSanitizer) and valgrind stages alike, with no separate build configuration to keep working. */
#ifndef TG_ALLOC_H
#define TG_ALLOC_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#define TG__ALLOC_STR2(x) #x
#define TG__ALLOC_STR(x) TG__ALLOC_STR2(x)
#define TG__ALLOC_SITE __FILE__ ":" TG__ALLOC_STR(__LINE__)

#define tg_malloc(n) tg__malloc((n), TG__ALLOC_SITE)
#define tg_calloc(n, size) tg__calloc((n), (size), TG__ALLOC_SITE)
#define tg_realloc(p, n) tg__realloc((p), (n), TG__ALLOC_SITE)
#define tg_aligned_alloc(align, n) tg__aligned_alloc((align), (n), TG__ALLOC_SITE)
#define tg_strdup(s) tg__strdup((s), TG__ALLOC_SITE)
#define tg_strndup(s, n) tg__strndup((s), (n), TG__ALLOC_SITE)
#define tg_realpath(path) tg__realpath((path), TG__ALLOC_SITE) /* realpath(path, NULL) */

void *tg__malloc(size_t n, const char *site);
void *tg__calloc(size_t n, size_t size, const char *site);
void *tg__realloc(void *p, size_t n, const char *site);       /* NULL on failure, p left as it was */
void *tg__aligned_alloc(size_t align, size_t n, const char *site);
char *tg__strdup(const char *s, const char *site);
char *tg__strndup(const char *s, size_t n, const char *site);
char *tg__realpath(const char *path, const char *site); /* injected failure: NULL, errno ENOMEM */

/* ---- the test hook ----------------------------------------------------------------------------
 * tg__alloc_fail_at(n, persist): from now on allocations are counted from 0 and the one numbered n
 * fails (returns NULL as if the system were out of memory); with persist every later one fails too.
 * n = TG_ALLOC_NEVER only counts; n < 0 turns the hook off (the default). All threads share the
 * counter. */
#define TG_ALLOC_NEVER INT64_MAX
void tg__alloc_fail_at(int64_t n, bool persist);
int64_t tg__alloc_count(void);          /* allocations counted since the last tg__alloc_fail_at */
int64_t tg__alloc_failures(void);       /* how many were made to fail since then */
const char *tg__alloc_failed_site(void); /* "file.c:line" of the first one made to fail, or NULL */

/* ---- I/O failures (the save path of tensor/safetensors.c) ---------------------------------------
 * tg__io_fail_at(op, n, err): the n-th (from 0) call of op from now fails with errno err, as if the
 * disk were full or broken; n < 0 turns it off. tg__io_injected(op) is what the save path asks before
 * each such call: true (errno set) means "fail this one". tg__io_count(op): calls of op counted since. */
typedef enum tg_io_op {
    TG_IO_WRITE,  /* a block written to the temporary: the header, each tensor's data */
    TG_IO_FSYNC,  /* the temporary's fsync */
    TG_IO_CLOSE,  /* its close */
    TG_IO_RENAME, /* the rename over the file */
    TG_IO_OPS
} tg_io_op;
void tg__io_fail_at(tg_io_op op, int64_t n, int err);
bool tg__io_injected(tg_io_op op);
int64_t tg__io_count(tg_io_op op);
#endif
