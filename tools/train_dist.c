/* tools/train_dist.c - the MPI hooks of `tapegrad train` (see train_dist.h). */
#include "tools/train_dist.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <tapegrad/tensor.h>

#include "tools/trainer.h"

#define IGNORE_INDEX (-100) /* tg_loss_opts' default ignore_index: such rows are not in the mean */

int train_dist_begin(tg_dist **d, const char *cmd, int *argc, char ***argv) {
    *d = NULL;
    if (!tg_dist_launched()) return 0;
    *d = tg_dist_init(argc, argv);
    if (!*d) {
        fprintf(stderr, "tapegrad %s: started by an MPI launcher, but %s\n", cmd, tg_last_error());
        return 2;
    }
    if (tg_dist_rank(*d) != 0 && !freopen("/dev/null", "w", stdout)) {
        fprintf(stderr, "tapegrad %s: rank %d: cannot silence stdout\n", cmd, tg_dist_rank(*d));
        return 1;
    }
    return 0;
}

int train_dist_end(tg_dist *d, const char *cmd, int rc) {
    if (rc != 0 && tg_dist_size(d) > 1) {
        fprintf(stderr, "tapegrad %s: rank %d of %d failed (exit status %d); ending all ranks\n", cmd,
                tg_dist_rank(d), tg_dist_size(d), rc);
        tg_dist_abort(d, rc);
    }
    tg_dist_free(d);
    return rc;
}

int train_dist_prepare(trainer *tr, tg_dist *d, bool check, char *err, size_t errlen) {
    int N = tg_dist_size(d);
    if (N > 1 && tr->cfg.batch < N) {
        snprintf(err, errlen, "--batch %ld is smaller than the %d ranks: each rank needs at least one sequence",
                 tr->cfg.batch, N);
        return -1;
    }
    if (N > 1 && (tr->cfg.dropout > 0 || tr->cfg.zoneout > 0)) {
        snprintf(err, errlen, "--dropout and --zoneout do not run on more than one rank yet (their masks "
                              "come from the shared data stream)");
        return -1;
    }
    tg_clear_error();
    if (tg_dist_broadcast_params(d, tr->model->params)) {
        snprintf(err, errlen, "%s", tg_last_error());
        return -1;
    }
    uint64_t h = 0;
    if (check && tg_dist_check_params(d, tr->model->params, &h)) {
        snprintf(err, errlen, "%s", tg_last_error());
        return -1;
    }
    int64_t lo, n;
    tg_dist_shard(d, tr->cfg.batch, &lo, &n);
    printf("data parallel over MPI: %d rank%s; rank 0 takes sequences %lld..%lld of each batch of %ld%s\n", N,
           N == 1 ? "" : "s", (long long)lo, (long long)(lo + n - 1), tr->cfg.batch,
           check ? "; parameters identical on every rank after the broadcast" : "");
    fflush(stdout);
    return 0;
}

/* rows [lo, lo+n) of each of `blocks` consecutive blocks of `B` rows of `width` values */
static tg_tensor *slice_rows(const tg_tensor *t, int64_t blocks, int64_t B, int64_t lo, int64_t n, int64_t width) {
    int nd = tg_ndim(t);
    int64_t shape[8];
    memcpy(shape, tg_shape(t), (size_t)nd * sizeof *shape);
    if (nd == 3) shape[1] = n;          /* x [T,B,I] */
    else shape[0] = blocks * n;         /* targets [T·B,O] or [B,O] */
    tg_tensor *out = tg_empty(tg_dtype_of(t), nd, shape);
    if (!out) return NULL;
    size_t isz = tg_itemsize(tg_dtype_of(t)), row = (size_t)width * isz;
    const unsigned char *src = tg_data((tg_tensor *)t);
    unsigned char *dst = tg_data(out);
    for (int64_t k = 0; k < blocks; k++)
        memcpy(dst + (size_t)(k * n) * row, src + (size_t)(k * B + lo) * row, (size_t)n * row);
    return out;
}

int train_dist_slice(const tg_dist *d, task_batch *b, bool every_step, double *weight) {
    int64_t lo, n, B = b->B, T = b->T;
    tg_dist_shard(d, B, &lo, &n);
    *weight = 1;
    if (n == B) return 0;
    task_batch s = {.T = T, .B = n};
    s.x = slice_rows(b->x, T, B, lo, n, tg_shape(b->x)[2]);
    int64_t blocks = every_step ? T : 1; /* targets and labels: [T·B] time-major rows, or [B] */
    if (b->target) s.target = slice_rows(b->target, blocks, B, lo, n, tg_shape(b->target)[1]);
    int64_t all = B, mine = n;
    if (b->labels) {
        s.labels = malloc((size_t)(blocks * n) * sizeof *s.labels);
        all = mine = 0;
        for (int64_t k = 0; s.labels && k < blocks; k++)
            for (int64_t i = 0; i < B; i++) {
                int64_t v = b->labels[k * B + i];
                bool counted = v != IGNORE_INDEX;
                all += counted;
                if (i >= lo && i < lo + n) {
                    s.labels[k * n + i - lo] = v;
                    mine += counted;
                }
            }
    }
    if (!s.x || (b->target && !s.target) || (b->labels && !s.labels)) {
        task_batch_clear(&s);
        task_batch_clear(b);
        return -1;
    }
    task_batch_clear(b);
    *b = s;
    *weight = all > 0 ? (double)mine / (double)all : 0;
    return 0;
}

static double process_cpu(void) {
    struct timespec ts;
    if (clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts)) return 0;
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

void train_dist_mark_now(const trainer *tr, const tg_dist *d, train_dist_mark *m) {
    tg_dist_stats(d, &m->comm, &m->bytes, NULL);
    tg_dist_split_stats(d, &m->wait, &m->transfer, &m->comm_cpu);
    m->cpu = process_cpu();
    m->seconds = tr->seconds;
}

enum { F_STEP, F_COMM, F_WAIT, F_XFER, F_CPU, F_COMM_CPU, F_N }; /* per-rank ms per step */

/* Rank 0 prints each rank's step: compute (wall, CPU), waiting, all-reduce, CPU inside MPI. */
static int report_split(tg_dist *d, const double *mine, char *err, size_t errlen) {
    int N = tg_dist_size(d);
    double *all = tg_dist_rank(d) == 0 ? malloc((size_t)N * F_N * sizeof *all) : NULL;
    if (tg_dist_rank(d) == 0 && !all) { snprintf(err, errlen, "out of memory"); return -1; }
    tg_clear_error();
    if (tg_dist_gather_doubles(d, mine, F_N, all)) {
        free(all);
        snprintf(err, errlen, "%s", tg_last_error());
        return -1;
    }
    for (int r = 0; all && r < N; r++) {
        const double *v = all + (size_t)r * F_N;
        printf("mpi rank %d: %.3f ms/step = compute %.3f ms (CPU %.3f ms) + waiting for the slowest rank %.3f ms "
               "+ all-reduce %.3f ms; CPU inside MPI %.3f ms/step\n",
               r, v[F_STEP], v[F_STEP] - v[F_COMM], v[F_CPU] - v[F_COMM_CPU], v[F_WAIT], v[F_XFER], v[F_COMM_CPU]);
    }
    free(all);
    return 0;
}

int train_dist_report(const trainer *tr, tg_dist *d, bool check, bool split, int threads, int64_t steps,
                      const train_dist_mark *m0, char *err, size_t errlen) {
    train_dist_mark m; /* before the check below, whose collective is not part of the run */
    if (d) train_dist_mark_now(tr, d, &m);
    uint64_t h = tg_params_hash(tr->model->params);
    if (check && d) {
        tg_clear_error();
        if (tg_dist_check_params(d, tr->model->params, &h)) {
            snprintf(err, errlen, "%s", tg_last_error());
            return -1;
        }
    }
    if (check) printf("parameters hash %016" PRIx64 "%s\n", h, d ? " (identical on every rank)" : "");
    if (!d) return 0;
    double secs = m.comm - m0->comm, run = m.seconds - m0->seconds;
    int64_t bytes = m.bytes - m0->bytes;
    if (steps <= 0 || run <= 0) return 0;
    double per = secs / (double)steps, step = run / (double)steps;
    printf("mpi: %d rank%s x %d thread%s, %.1f steps/s, all-reduce %.1f kB/step, communication %.3f ms/step "
           "(%.0f%% of the step time, waiting for other ranks included)\n",
           tg_dist_size(d), tg_dist_size(d) == 1 ? "" : "s", threads, threads == 1 ? "" : "s", (double)steps / run,
           (double)bytes / (double)steps / 1e3, 1e3 * per, 100 * per / step);
    if (!split) return 0;
    double k = 1e3 / (double)steps, mine[F_N];
    mine[F_STEP] = k * run;
    mine[F_COMM] = k * secs;
    mine[F_WAIT] = k * (m.wait - m0->wait);
    mine[F_XFER] = k * (m.transfer - m0->transfer);
    mine[F_CPU] = k * (m.cpu - m0->cpu);
    mine[F_COMM_CPU] = k * (m.comm_cpu - m0->comm_cpu);
    return report_split(d, mine, err, errlen);
}
