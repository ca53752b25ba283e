/* tensor/pool.c - the thread count (tg_set_num_threads), the persistent worker pool that runs a task on
 * several threads (used by the GEMM, tensor/gemm.c), and tg__pool_for, which cuts a range of independent
 * items (elements, rows, columns, whole tensors) into blocks for it (see tensor/pool.h). */
#ifndef _POSIX_C_SOURCE
#define _POSIX_C_SOURCE 200809L
#endif

#include "tensor/pool.h"

#include <tapegrad/tensor.h>

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdint.h>
#include <string.h>
#include <time.h>

/* ---- threading knob ---------------------------------------------------------------------- */

static atomic_int tg_num_threads = 1;

void tg_set_num_threads(int n)
{
    if (n < 1) n = 1;
    if (n > TG_MAX_THREADS) n = TG_MAX_THREADS;
    atomic_store_explicit(&tg_num_threads, n, memory_order_relaxed);
}

int tg_get_num_threads(void) { return atomic_load_explicit(&tg_num_threads, memory_order_relaxed); }

/* ---- persistent worker pool ---------------------------------------------------------------- */
/* Workers are started lazily and live for the process; each owns a slot. The dispatcher posts a
 * task in a slot (state POSTED) and bumps the slot's generation to wake the worker. A worker
 * claims its task (POSTED -> RUNNING) when it gets to it; the dispatcher, once done with its own
 * share, withdraws every task not yet claimed (POSTED -> IDLE), so it never waits for a worker
 * that has not been scheduled yet, only for one that is actually running. Work inside a task is
 * claimed dynamically (see tg_gemm_mt), so a late worker simply gets less of it.
 * After a task a worker spins for a short while (TG_POOL_SPIN_NS, yielding the CPU) before
 * sleeping on a condition variable, so back-to-back calls (an RNN time loop) find it awake.
 * One call at a time owns the pool; a concurrent caller that finds it busy runs single-threaded. */

enum { TG_SLOT_IDLE = 0, TG_SLOT_POSTED = 1, TG_SLOT_RUNNING = 2 };

typedef struct {
    atomic_int state;
    atomic_ulong gen; /* bumped after each post; only a wake-up hint */
    tg_task_fn fn;
    void *arg;
    char pad[64];
} tg_pool_slot;

#ifndef TG_POOL_SPIN_NS
#define TG_POOL_SPIN_NS 100000L /* worker: keep polling this long after a task before sleeping */
#endif

static pthread_mutex_t tg_pool_owner = PTHREAD_MUTEX_INITIALIZER; /* held by the dispatching call */
static pthread_mutex_t tg_pool_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t tg_pool_wake = PTHREAD_COND_INITIALIZER;
static pthread_cond_t tg_pool_done = PTHREAD_COND_INITIALIZER;
static int tg_pool_sleepers; /* workers blocked on tg_pool_wake (under tg_pool_mu) */
static int tg_pool_waiting;  /* dispatcher blocked on tg_pool_done (under tg_pool_mu) */
static int tg_pool_started;  /* workers created so far (pool owner only) */
static tg_pool_slot tg_pool_slots[TG_MAX_THREADS];

static inline void tg_cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ __volatile__("yield");
#endif
}

static int64_t tg_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static void *tg_pool_worker(void *p)
{
    tg_pool_slot *slot = p;
    unsigned long seen = 0; /* a slot's generation is 0 until its worker exists */
    for (;;) {
        /* poll for a while (pause first, then yield so a thread sharing this core can run) */
        int64_t t0 = -1;
        for (unsigned it = 0; atomic_load_explicit(&slot->gen, memory_order_acquire) == seen; it++) {
            if (it < 64) {
                tg_cpu_relax();
                continue;
            }
            const int64_t t = tg_now_ns();
            if (t0 < 0) t0 = t;
            else if (t - t0 > TG_POOL_SPIN_NS) break;
            sched_yield();
        }
        if (atomic_load_explicit(&slot->gen, memory_order_acquire) == seen) {
            pthread_mutex_lock(&tg_pool_mu);
            tg_pool_sleepers++;
            while (atomic_load_explicit(&slot->gen, memory_order_acquire) == seen)
                pthread_cond_wait(&tg_pool_wake, &tg_pool_mu);
            tg_pool_sleepers--;
            pthread_mutex_unlock(&tg_pool_mu);
        }
        seen = atomic_load_explicit(&slot->gen, memory_order_acquire);
        int expected = TG_SLOT_POSTED;
        if (!atomic_compare_exchange_strong_explicit(&slot->state, &expected, TG_SLOT_RUNNING,
                                                     memory_order_acq_rel, memory_order_acquire))
            continue; /* withdrawn by the dispatcher */
        slot->fn(slot->arg);
        atomic_store_explicit(&slot->state, TG_SLOT_IDLE, memory_order_release);
        pthread_mutex_lock(&tg_pool_mu);
        if (tg_pool_waiting) pthread_cond_broadcast(&tg_pool_done);
        pthread_mutex_unlock(&tg_pool_mu);
    }
    return NULL;
}

/* A forked child has none of the parent's workers: forget them so the child starts its own. */
static void tg_pool_atfork_child(void)
{
    pthread_mutex_init(&tg_pool_owner, NULL);
    pthread_mutex_init(&tg_pool_mu, NULL);
    pthread_cond_init(&tg_pool_wake, NULL);
    pthread_cond_init(&tg_pool_done, NULL);
    tg_pool_sleepers = 0;
    tg_pool_waiting = 0;
    tg_pool_started = 0;
    for (int i = 0; i < TG_MAX_THREADS; i++) {
        atomic_store(&tg_pool_slots[i].state, TG_SLOT_IDLE);
        atomic_store(&tg_pool_slots[i].gen, 0);
    }
}

static pthread_once_t tg_pool_once = PTHREAD_ONCE_INIT;
static void tg_pool_init_once(void) { pthread_atfork(NULL, NULL, tg_pool_atfork_child); }

/* (pool.h) */
int tg__pool_run(int n, tg_task_fn fn, void *arg)
{
    pthread_once(&tg_pool_once, tg_pool_init_once);
    if (pthread_mutex_trylock(&tg_pool_owner) != 0) return 0;
    while (tg_pool_started < n - 1) {
        tg_pool_slot *slot = &tg_pool_slots[tg_pool_started + 1];
        pthread_t th;
        pthread_attr_t attr;
        if (pthread_attr_init(&attr) != 0) break;
        pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
        const int rc = pthread_create(&th, &attr, tg_pool_worker, slot);
        pthread_attr_destroy(&attr);
        if (rc != 0) break;
        tg_pool_started++;
    }
    if (n > tg_pool_started + 1) n = tg_pool_started + 1;
    if (n < 2) {
        pthread_mutex_unlock(&tg_pool_owner);
        return 0;
    }
    for (int i = 1; i < n; i++) {
        tg_pool_slot *slot = &tg_pool_slots[i];
        slot->fn = fn;
        slot->arg = arg;
        atomic_store_explicit(&slot->state, TG_SLOT_POSTED, memory_order_release);
        atomic_fetch_add_explicit(&slot->gen, 1, memory_order_release);
    }
    pthread_mutex_lock(&tg_pool_mu);
    if (tg_pool_sleepers > 0) pthread_cond_broadcast(&tg_pool_wake);
    pthread_mutex_unlock(&tg_pool_mu);

    fn(arg);

    for (int i = 1; i < n; i++) {
        tg_pool_slot *slot = &tg_pool_slots[i];
        int expected = TG_SLOT_POSTED;
        if (atomic_compare_exchange_strong_explicit(&slot->state, &expected, TG_SLOT_IDLE,
                                                    memory_order_acq_rel, memory_order_acquire))
            continue; /* never started: withdrawn */
        for (unsigned it = 0; it < 256 && atomic_load_explicit(&slot->state, memory_order_acquire) != TG_SLOT_IDLE;
             it++)
            tg_cpu_relax();
        if (atomic_load_explicit(&slot->state, memory_order_acquire) != TG_SLOT_IDLE) {
            pthread_mutex_lock(&tg_pool_mu);
            tg_pool_waiting = 1;
            while (atomic_load_explicit(&slot->state, memory_order_acquire) != TG_SLOT_IDLE)
                pthread_cond_wait(&tg_pool_done, &tg_pool_mu);
            tg_pool_waiting = 0;
            pthread_mutex_unlock(&tg_pool_mu);
        }
    }
    pthread_mutex_unlock(&tg_pool_owner);
    return 1;
}

/* ---- ranges, zero-fill and copies on the pool ---------------------------------------------- */

typedef struct {
    tg_range_fn fn;
    void *ctx;
    int64_t n, chunk;
    atomic_long next; /* next unclaimed block */
} tg_range_task;

static void tg_range_worker(void *p)
{
    tg_range_task *t = p;
    for (;;) {
        const int64_t i0 = atomic_fetch_add_explicit(&t->next, 1, memory_order_relaxed) * t->chunk;
        if (i0 >= t->n) break;
        t->fn(t->ctx, i0, i0 + t->chunk < t->n ? i0 + t->chunk : t->n);
    }
}

/* (pool.h) */
void tg__pool_for(int64_t n, int64_t grain, int64_t align, tg_range_fn fn, void *ctx)
{
    int nt = tg_get_num_threads();
    if (grain < 1) grain = 1;
    if (align < 1) align = 1;
    if (nt > 1 && n >= 2 * grain) {
        if ((int64_t)nt > n / grain) nt = (int)(n / grain);
        /* two blocks per thread, so a worker that comes late (or shares its core) takes fewer */
        int64_t chunk = (n + 2 * nt - 1) / (2 * nt);
        if (chunk < grain) chunk = grain;
        chunk = (chunk + align - 1) / align * align;
        if (chunk < n) {
            tg_range_task t = {fn, ctx, n, chunk, 0};
            if (tg__pool_run(nt, tg_range_worker, &t)) return;
        }
    }
    if (n > 0) fn(ctx, 0, n);
}

typedef struct {
    char *dst;
    const char *src; /* NULL: zero-fill */
} tg_bytes_job;

static void tg_bytes_range(void *p, int64_t i0, int64_t i1)
{
    const tg_bytes_job *j = p;
    if (j->src) memcpy(j->dst + i0, j->src + i0, (size_t)(i1 - i0));
    else memset(j->dst + i0, 0, (size_t)(i1 - i0));
}

/* (pool.h) */
void tg__pool_zero(void *dst, size_t bytes)
{
    tg_bytes_job j = {dst, NULL};
    tg__pool_for((int64_t)bytes, TG_POOL_MIN_BYTES, 4096, tg_bytes_range, &j);
}

/* (pool.h) */
void tg__pool_copy(void *dst, const void *src, size_t bytes)
{
    tg_bytes_job j = {dst, src};
    tg__pool_for((int64_t)bytes, TG_POOL_MIN_BYTES, 4096, tg_bytes_range, &j);
}
