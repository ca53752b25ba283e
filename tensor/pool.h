/* tensor/pool.h - the persistent worker pool behind tg_set_num_threads (internal).
 *
 *     static void work(void *arg) { ... claim chunks of the job in arg until none is left ... }
 *     if (!tg__pool_run(tg_get_num_threads(), work, &job)) work(&job);  // pool busy: run alone
 *
 * Workers are started lazily, live for the process and are forgotten in a forked child. */
#ifndef TG_TENSOR_POOL_H
#define TG_TENSOR_POOL_H

#include <stddef.h>
#include <stdint.h>

#define TG_MAX_THREADS 64 /* the most tg_set_num_threads accepts */

typedef void (*tg_task_fn)(void *arg);

/* Runs fn(arg) on the calling thread and offers it to up to n-1 workers; fn must cope with
 * being run by any number of those (it claims its work itself). Returns 0 without running
 * anything if the pool is busy (another call owns it) or no worker could be started; 1 when fn
 * ran and every worker that took it has finished. */
int tg__pool_run(int n, tg_task_fn fn, void *arg);

/* fn(ctx, i0, i1) over the index range [0, n): with tg_get_num_threads() > 1 and n >= 2·grain, cut
 * into blocks (each at least grain long, a multiple of align except the last) that the caller and the
 * pool's workers claim; else, or with the pool busy, fn(ctx, 0, n) on the caller. Every index is in
 * exactly one block, so a per-index computation gives the same results on any number of threads. */
typedef void (*tg_range_fn)(void *ctx, int64_t i0, int64_t i1);
void tg__pool_for(int64_t n, int64_t grain, int64_t align, tg_range_fn fn, void *ctx);

/* Bytes of memory work below which a zero-fill or a copy stays on one thread (the hand-over to a
 * worker costs a few microseconds; 256 KB take ~10 us on one core). */
#define TG_POOL_MIN_BYTES ((int64_t)1 << 18)
/* memset(dst, 0, bytes) and memcpy(dst, src, bytes) (no overlap), on the pool when large */
void tg__pool_zero(void *dst, size_t bytes);
void tg__pool_copy(void *dst, const void *src, size_t bytes);
#endif
