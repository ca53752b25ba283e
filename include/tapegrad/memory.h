/* tapegrad/memory.h - how much memory a model and a training step need, checked BEFORE allocating.
 *
 *     tg_mem_estimate e;
 *     tg_rnn_mem_estimate(tg_cell_by_name("lstm"), &cfg, T, B, 2, &e);  // 2: Adam's m and v per parameter
 *     char err[256];
 *     if (tg_mem_check(&e, 0, err, sizeof err)) { puts(err); return 2; }
 *     // "needs ~3.1 TB: hidden 4096 x batch 4096 x seq 100000 (tape 3.1 TB, parameters 537 MB, ...),
 *     //  more than the 6.2 GB available (MemAvailable)"
 *
 * One formula, used by the library's own constructors (tg_rnn_new refuses parameters that cannot fit,
 * tg_empty refuses a buffer larger than what is available) and by every tapegrad command:
 *
 *     total = parameters x (1 + 1 gradient + optimizer slots) + tape + data
 *     tape  = 1.25 x Σ over layers and directions of T x (a_cell x B x H + b_cell x H²) x itemsize
 *             + T x B x I x itemsize (the input, which the first projection saves)
 *
 * a_cell and b_cell are measured once per cell (and cached): the cell runs 4 steps at H = 16 with
 * batch 2 and 4 in a thread of its own (its tape is separate from the caller's) and tg_tape_bytes is
 * read; the factor 1.25 covers the gradients that backward holds at its peak. tests/test_memory.c
 * checks the tape term against tg_tape_bytes at other sizes for every built-in cell, and the command
 * test checks the total against the measured peak RSS of `tapegrad bench` (README, Reliability).
 *
 * All byte counts are doubles: products of sizes that would overflow 64 bits still compare correctly.
 * Layers: tg_mem_available, tg_mem_format and tg_mem_check live in tensor/, the estimate in nn/. */
#ifndef TAPEGRAD_MEMORY_H
#define TAPEGRAD_MEMORY_H
#include <tapegrad/nn.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct tg_mem_estimate {
    double params;    /* bytes of the parameters */
    double grads;     /* their gradients (same size) */
    double optim;     /* optimizer state: slots x parameters */
    double tape;      /* the tape of one forward + backward at its peak */
    double data;      /* the step's inputs and targets */
    double total;     /* the sum (tg_mem_sum) */
    char why[192];    /* the sizes whose product dominates, "hidden 4096 x batch 4096 x seq 100000" */
} tg_mem_estimate;

/* Fills *out for cell over cfg (layers, directions, dtype, bias) with T steps of batch B and an
 * optimizer keeping `optim_slots` tensors per parameter (SGD 0 or 1, Adam 2). T = 0 or B = 0: the
 * parameters only. Returns 0, or -1 after tg_error (NULL or malformed arguments). */
int tg_rnn_mem_estimate(const tg_cell *cell, const tg_rnn_config *cfg, int64_t T, int64_t B, int optim_slots,
                        tg_mem_estimate *out);
/* The cell's measured tape coefficients (see above): bytes per step per layer = (a B H + b H²) x itemsize.
 * Returns 0, or -1 when the probe could not run the cell (then a conservative default is given). */
int tg_cell_tape_coefficients(const tg_cell *cell, double *a, double *b);
/* total = params + grads + optim + tape + data */
void tg_mem_sum(tg_mem_estimate *e);

/* Bytes this process can still allocate: /proc/meminfo's MemAvailable, or what RLIMIT_AS leaves above
 * the current virtual size when that is smaller. source (may be NULL) receives "MemAvailable" or
 * "RLIMIT_AS". Unknown (no /proc): 1e18. */
double tg_mem_available(char *source, size_t n);
/* "3.1 TB", "537 MB", "12 kB", "100 B" (decimal units). returns buf */
char *tg_mem_format(double bytes, char *buf, size_t n);
/* 0 when e->total fits in `limit` bytes (limit <= 0: tg_mem_available()), else -1 and a one-line message
 * "needs ~X: <why> (tape X, parameters X, ...), more than the Y available (<source>)". */
int tg_mem_check(const tg_mem_estimate *e, double limit, char *err, size_t errlen);
/* Parses "4G", "500M", "1.5T", "100000" (bytes; k/K, M, G, T, P decimal, optional trailing B) into *bytes.
 * Returns 0, or -1 when s is not a size of at least one byte (or overflows a double: 1e308T). */
int tg_mem_parse(const char *s, double *bytes);

#ifdef __cplusplus
}
#endif
#endif
