/* tensor/pool.h - the persistent worker pool behind tg_set_num_threads (internal).
 *
 *     static void work(void *arg) { ... claim chunks of the job in arg until none is left ... }
 *     if (!tg__pool_run(tg_get_num_threads(), work, &job)) work(&job);  // pool busy: run alone
 *
 * Workers are started lazily, live for the process and are forgotten in a forked child. */
#ifndef TG_TENSOR_POOL_H
#define TG_TENSOR_POOL_H

#define TG_MAX_THREADS 64 /* the most tg_set_num_threads accepts */

typedef void (*tg_task_fn)(void *arg);

/* Runs fn(arg) on the calling thread and offers it to up to n-1 workers; fn must cope with
 * being run by any number of those (it claims its work itself). Returns 0 without running
 * anything if the pool is busy (another call owns it) or no worker could be started; 1 when fn
 * ran and every worker that took it has finished. */
int tg__pool_run(int n, tg_task_fn fn, void *arg);
#endif
