/* tapegrad/tensor.h - reference-counted n-d arrays (F32, F64), creation, RNG, printing, errors.
 *
 * Worked example (also built as examples/tensor_basics.c):
 *
 *     tg_tensor *x = tg_arange(TG_F64, 0, 6, 1);          // returns: new ref, [6]
 *     tg_tensor *m = tg_reshape_view(x, TG_SHAPE(2, 3));  // returns: new ref, shares x's storage
 *     tg_tensor *row = tg_view_at(m, 1);                  // returns: new ref, [3] = {3, 4, 5}, zero-copy
 *     tg_print(row);                                      // tensor([3., 4., 5.], dtype=f64)
 *     tg_release(row); tg_release(m); tg_release(x);      // any order: storage lives until the last view
 *
 * Ownership vocabulary used on every prototype (docs/design.md §3):
 *   returns: new ref    - the caller owns one reference and releases it with tg_release
 *   returns: tape-owned - the current thread's tape owns it until tg_tape_reset (tg_retain to keep it)
 *   returns: borrowed   - valid while the argument is alive; do not release
 *   args: borrowed      - no function ever steals a reference
 *
 * All tensors are contiguous row-major. A view (tg_view_at, tg_reshape_view) shares the storage of its
 * base; the storage is reference-counted separately from the header and carries a version counter that
 * every in-place write (functions ending in `_`) increments.
 */
#ifndef TAPEGRAD_TENSOR_H
#define TAPEGRAD_TENSOR_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdbool.h>

#ifdef __cplusplus
extern "C" {
#endif

#define TG_MAX_DIMS 6

typedef enum tg_dtype {
    TG_F32 = 0, /* IEEE binary32 */
    TG_F64 = 1  /* IEEE binary64; gradchecks and conformance references run in this */
} tg_dtype;

typedef struct tg_tensor tg_tensor;

/* TG_SHAPE(2, 3) expands to the two arguments `ndim, shape` that every shape-taking function expects. */
#define TG_SHAPE(...) \
    (int)(sizeof((const int64_t[]){__VA_ARGS__}) / sizeof(int64_t)), (const int64_t[]){__VA_ARGS__}

/* ---- errors (docs/design.md §6) ------------------------------------------------------------- */

/* Called once per programming error with the full message, e.g.
 * "tg_matmul: [3,4] @ [5,2]: inner dimensions differ". The default handler prints the message to
 * stderr and aborts. A custom handler that returns lets the program continue: the failing function
 * returns NULL (or an error status) and later ops given NULL return NULL, keeping the first message. */
typedef void (*tg_error_handler)(const char *message, void *user);

void tg_set_error_handler(tg_error_handler handler, void *user); /* NULL restores the default */
const char *tg_last_error(void);  /* returns: borrowed; "" when no error is pending (per thread) */
bool tg_error_pending(void);
void tg_clear_error(void);
/* Report an error as `fn: message` through the handler (for nn/, optim/ and user extensions). */
void tg_error(const char *fn, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Records the message without calling the handler: for data errors (files, arguments), which return
 * a status instead of aborting. */
void tg_error_quiet(const char *fn, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* ---- lifetime -------------------------------------------------------------------------------- */

tg_tensor *tg_retain(tg_tensor *t);  /* returns: t (one more reference); NULL-safe */
void tg_release(tg_tensor *t);       /* drops one reference; tg_release(NULL) is a no-op */
long tg_live_tensors(void);          /* tensor headers currently alive, all threads (debug counter) */
void tg_pool_trim(void);             /* returns this thread's cached buffers to the system */

/* ---- creation (all: returns: new ref; args: borrowed) ------------------------------------------ */

tg_tensor *tg_empty(tg_dtype dtype, int ndim, const int64_t *shape); /* uninitialised */
tg_tensor *tg_zeros(tg_dtype dtype, int ndim, const int64_t *shape);
tg_tensor *tg_ones(tg_dtype dtype, int ndim, const int64_t *shape);
tg_tensor *tg_full(tg_dtype dtype, int ndim, const int64_t *shape, double value);
tg_tensor *tg_scalar(tg_dtype dtype, double value);                    /* 0-d tensor */
tg_tensor *tg_arange(tg_dtype dtype, double start, double stop, double step); /* [ceil((stop-start)/step)] */
/* Copies ndim/shape elements of `data`, which holds float for TG_F32 and double for TG_F64. */
tg_tensor *tg_from_array(tg_dtype dtype, int ndim, const int64_t *shape, const void *data);
tg_tensor *tg_from_f64(tg_dtype dtype, int ndim, const int64_t *shape, const double *data); /* converts */
tg_tensor *tg_copy(const tg_tensor *t);                /* deep copy, not recorded on the tape */
tg_tensor *tg_to_dtype(const tg_tensor *t, tg_dtype dtype); /* converted copy, not recorded */
tg_tensor *tg_zeros_like(const tg_tensor *t);
/* Zero-copy views sharing t's storage (not recorded; see tg_select / tg_reshape for tape ops). */
tg_tensor *tg_view_at(const tg_tensor *t, int64_t index);  /* t[index] along the first axis */
tg_tensor *tg_view_range(const tg_tensor *t, int64_t begin, int64_t end); /* t[begin:end] on axis 0 */
tg_tensor *tg_reshape_view(const tg_tensor *t, int ndim, const int64_t *shape); /* one dim may be -1 */

/* ---- inspection (args: borrowed) --------------------------------------------------------------- */
/* Given NULL or a released tensor (or an axis / index out of range, or the wrong dtype) each reports
 * through the error handler and, when the handler returns, gives: tg_ndim and tg_dim -1, tg_shape,
 * tg_data, tg_cdata, tg_f32 and tg_f64 NULL, tg_numel 0, tg_dtype_of TG_F64, tg_get and tg_item NaN,
 * tg_version 0. tg_same_shape and tg_shares_storage report nothing and answer false for NULL. */

int tg_ndim(const tg_tensor *t);
int64_t tg_dim(const tg_tensor *t, int axis); /* negative axis counts from the end */
const int64_t *tg_shape(const tg_tensor *t);  /* returns: borrowed, tg_ndim entries */
int64_t tg_numel(const tg_tensor *t);
tg_dtype tg_dtype_of(const tg_tensor *t);
size_t tg_itemsize(tg_dtype dtype);
const char *tg_dtype_name(tg_dtype dtype);    /* "F32" / "F64" (safetensors spelling) */
void *tg_data(tg_tensor *t);                  /* returns: borrowed pointer to the first element */
const void *tg_cdata(const tg_tensor *t);
float *tg_f32(tg_tensor *t);                  /* NULL (with an error) if dtype is not F32 */
double *tg_f64(tg_tensor *t);                 /* NULL (with an error) if dtype is not F64 */
double tg_get(const tg_tensor *t, int64_t flat_index); /* element as double */
double tg_item(const tg_tensor *t);           /* the only element of a one-element tensor */
bool tg_same_shape(const tg_tensor *a, const tg_tensor *b);
/* Writes "[3,4]" into buf (always NUL-terminated); returns buf. */
char *tg_shape_str(const tg_tensor *t, char *buf, size_t size);
bool tg_shares_storage(const tg_tensor *a, const tg_tensor *b);
uint64_t tg_version(const tg_tensor *t);      /* storage version counter */
void tg_set_name(tg_tensor *t, const char *name); /* shown in messages and prints (copied, max 47) */
const char *tg_name(const tg_tensor *t);      /* returns: borrowed, "" if unnamed */

/* ---- in-place writes (bump the version counter; not recorded) ---------------------------------- */

void tg_set(tg_tensor *t, int64_t flat_index, double value);
void tg_fill_(tg_tensor *t, double value);
void tg_zero_(tg_tensor *t);
int tg_copy_(tg_tensor *dst, const tg_tensor *src);    /* same numel; converts dtype; 0 or -1 */
void tg_axpy_(tg_tensor *y, double alpha, const tg_tensor *x); /* y += alpha x (same numel) */
void tg_scale_(tg_tensor *t, double alpha);
void tg_bump_version(tg_tensor *t); /* after writing through tg_data() yourself */

/* ---- printing ---------------------------------------------------------------------------------- */

/* Like numpy: tensor([[1., 2.], [3., 4.]], dtype=f64); more than 1000 elements are abbreviated with
 * "..." keeping 3 items at each edge of every axis. */
void tg_print(const tg_tensor *t);
void tg_fprint(FILE *f, const tg_tensor *t);

/* ---- random numbers: our own generator, same stream on every platform --------------------------- */

/* xoshiro256** seeded through splitmix64. Uniform doubles use the top 53 bits; normals use the
 * Box-Muller transform. */
typedef struct tg_rng { uint64_t s[4]; double spare; int has_spare; } tg_rng;

void tg_rng_seed(tg_rng *rng, uint64_t seed);
uint64_t tg_rng_u64(tg_rng *rng);
double tg_rng_uniform(tg_rng *rng);            /* [0, 1) */
double tg_rng_normal(tg_rng *rng);             /* N(0, 1) */
uint64_t tg_rng_below(tg_rng *rng, uint64_t n); /* uniform integer in [0, n), unbiased */
tg_rng *tg_default_rng(void);                  /* per-thread generator, seeded 0 until tg_manual_seed */
void tg_manual_seed(uint64_t seed);
/* returns: new ref. rng NULL = the default generator. */
tg_tensor *tg_rand_uniform(tg_rng *rng, tg_dtype dtype, int ndim, const int64_t *shape, double lo, double hi);
tg_tensor *tg_rand_normal(tg_rng *rng, tg_dtype dtype, int ndim, const int64_t *shape, double mean, double std);
void tg_uniform_(tg_rng *rng, tg_tensor *t, double lo, double hi);
void tg_normal_(tg_rng *rng, tg_tensor *t, double mean, double std);

/* ---- threads ----------------------------------------------------------------------------------- */

void tg_set_num_threads(int n); /* GEMM worker threads (1 = single-threaded, default 1) */
int tg_get_num_threads(void);

/* ---- CPU kernels ------------------------------------------------------------------------------- */

/* The hot kernels (GEMM, exp/tanh/sigmoid, sums) are built for several CPU targets and the best one
 * this CPU runs is chosen at the first use; the environment variable TAPEGRAD_CPU=generic|avx2|avx512
 * forces one (a target the CPU cannot run falls back, with a message on stderr).
 * tg_kernel_target: the chosen one, "avx512", "avx2", "generic" (or "native" in a -Dnative=true build).
 * tg_kernel_targets: the targets this build has, space-separated, best first.
 * returns: borrowed (static strings) */
const char *tg_kernel_target(void);
const char *tg_kernel_targets(void);

#ifdef __cplusplus
}
#endif
#endif
