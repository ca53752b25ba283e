/* bench/bench_common.h - the timing helpers every C benchmark here shares: a clock read in seconds
 * (CLOCK_THREAD_CPUTIME_ID for the thread CPU time the figures of docs/speed.md use, CLOCK_MONOTONIC
 * for the wall clock) and the median of a sample.
 *
 * bench_median sorts its array in place, ascending, so after it v[0] is the minimum and v[n-1] the
 * maximum (bench_lstm prints the minimum that way). Header-only: each bench is one .c file. */
#ifndef TG_BENCH_COMMON_H
#define TG_BENCH_COMMON_H

#include <stdlib.h>
#include <time.h>

/* The clock `id` now, in seconds. */
static inline double bench_clock_s(clockid_t id) {
    struct timespec ts;
    clock_gettime(id, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* This thread's CPU time, in seconds. */
static inline double bench_cpu_now(void) { return bench_clock_s(CLOCK_THREAD_CPUTIME_ID); }

/* The wall clock (monotonic), in seconds. */
static inline double bench_wall_now(void) { return bench_clock_s(CLOCK_MONOTONIC); }

static inline int bench_cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* The median of v[0..n-1] (n >= 1; the mean of the two middle values when n is even); sorts v. */
static inline double bench_median(double *v, int n) {
    qsort(v, (size_t)n, sizeof *v, bench_cmp_double);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

#endif
