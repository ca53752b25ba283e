/* tests/dist_worker.c - the library side of <tapegrad/dist.h>, run by tests/test_dist.c under
 * `mpirun -np N` (N = 2 and 3: an uneven split). A plain MPI program (Criterion forks, MPI does not
 * like that): it calls MPI_Init itself, as a user's program would, and checks on every rank:
 *   - tg_dist_from_comm and tg_dist_init on an initialised MPI neither re-initialise nor finalise it;
 *   - tg_dist_shard splits n items into contiguous parts covering [0, n) exactly (n < N included);
 *   - tg_dist_broadcast_params makes every rank hold rank 0's values (F32 and F64, version bumped);
 *   - tg_dist_allreduce_grads gives Σ_r w_r g_r with per-rank weights, for F32 and F64 parameters in
 *     one call, the scalar too; a gradient only rank 1 has reaches every rank; a parameter no rank
 *     has a gradient for stays without one; a small bucket count (one call for the F32 and one for
 *     the F64 parameters, plus the layout check) is used, not one call per tensor;
 *   - the same all-reduce with tg_dist_set_poll_sleep (non-blocking calls + nanosleep) and split timing
 *     (a barrier first) gives the same bits, one call more, wait and transfer times counted;
 *     tg_dist_gather_doubles brings every rank's values to rank 0 in rank order;
 *   - tg_dist_check_params: 0 when equal; one flipped bit on the last rank -> -1 on every rank, with
 *     a message naming that rank;
 *   - ranks holding different parameter sets -> -1 on every rank, naming the first differing rank.
 * With --singleton it is started without mpirun (MPI's singleton start: one rank): the same calls on
 * a world of one, where the collectives must leave every value as it is (the weight 1 sum of one
 * rank), the parameter check must agree with itself, and nothing may leak (test_dist runs it that way
 * so that CI's valgrind stage traces the single-rank path; Open MPI's own leaks are suppressed by
 * scripts/valgrind-openmpi.supp). The checks that need a second rank are skipped there.
 * Prints "dist_worker rank R/N: K checks passed" and exits 0, or names each failed check and exits 1. */
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <tapegrad/dist.h>
#include <tapegrad/tapegrad.h>

static int g_rank, g_checks, g_failed;

#define CHECK(cond, ...)                                                                                      \
    do {                                                                                                      \
        g_checks++;                                                                                           \
        if (!(cond)) {                                                                                        \
            g_failed++;                                                                                       \
            fprintf(stderr, "dist_worker rank %d: line %d: %s: ", g_rank, __LINE__, #cond);                   \
            fprintf(stderr, __VA_ARGS__);                                                                     \
            fprintf(stderr, "\n");                                                                            \
        }                                                                                                     \
    } while (0)

static void record_error(const char *msg, void *user) {
    (void)msg;
    (void)user;
}

/* a: F64 [3], b: F32 [2,2], c: F64 [2] (gradient on rank 1 only), e: F64 [1] (never a gradient) */
static tg_params *make_set(double base) {
    tg_params *p = tg_params_new();
    const char *names[4] = {"a", "b", "c", "e"};
    tg_tensor *ts[4] = {tg_full(TG_F64, TG_SHAPE(3), base), tg_full(TG_F32, TG_SHAPE(2, 2), base),
                        tg_full(TG_F64, TG_SHAPE(2), base), tg_full(TG_F64, TG_SHAPE(1), base)};
    for (int i = 0; i < 4; i++) {
        tg_set_requires_grad(ts[i], true);
        tg_params_add(p, names[i], ts[i]);
        tg_release(ts[i]);
    }
    return p;
}

/* grad of x = coef: backward of sum(x ⊙ coef) */
static void set_grad(tg_tensor *x, const double *coef) {
    tg_tensor *c = tg_from_f64(tg_dtype_of(x), tg_ndim(x), tg_shape(x), coef);
    tg_backward(tg_sum(tg_mul(x, c)));
    tg_release(c);
    tg_tape_reset();
}

/* FNV-1a of a tensor's bytes */
static uint64_t bytes_hash(tg_tensor *t) {
    const unsigned char *b = tg_data(t);
    uint64_t h = 0xcbf29ce484222325ULL;
    for (size_t i = 0; i < (size_t)tg_numel(t) * tg_itemsize(tg_dtype_of(t)); i++) h = (h ^ b[i]) * 0x100000001b3ULL;
    return h;
}

static double at(tg_tensor *t, int i) {
    return tg_dtype_of(t) == TG_F64 ? ((double *)tg_data(t))[i] : (double)((float *)tg_data(t))[i];
}

int main(int argc, char **argv) {
    const bool singleton = argc > 1 && strcmp(argv[1], "--singleton") == 0;
    const bool launched = tg_dist_launched(); /* before MPI_Init: a singleton start sets MPI's variables */
    MPI_Init(&argc, &argv);
    int size;
    MPI_Comm_rank(MPI_COMM_WORLD, &g_rank);
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    tg_set_error_handler(record_error, NULL);

    tg_dist *d = tg_dist_from_comm(MPI_COMM_WORLD);
    CHECK(d != NULL, "tg_dist_from_comm: %s", tg_last_error());
    if (!d) { MPI_Abort(MPI_COMM_WORLD, 1); }
    CHECK(tg_dist_rank(d) == g_rank && tg_dist_size(d) == size, "rank %d size %d", tg_dist_rank(d), tg_dist_size(d));
    if (singleton) {
        CHECK(size == 1, "started without mpirun, yet %d ranks", size);
        CHECK(!launched, "no launcher, yet tg_dist_launched");
    } else {
        CHECK(launched, "mpirun's environment not recognised");
    }
    tg_dist *d2 = tg_dist_init(&argc, &argv); /* MPI is initialised: no second MPI_Init, no finalise */
    CHECK(d2 != NULL, "tg_dist_init on an initialised MPI: %s", tg_last_error());
    tg_dist_free(d2);
    int fin = 1;
    MPI_Finalized(&fin);
    CHECK(!fin, "tg_dist_free finalised an MPI it did not initialise");

    /* shard: every rank's [lo, lo+n) gathered; they must tile [0, total) in rank order */
    const int64_t totals[] = {0, 1, 2, 7, 32, 33};
    for (size_t k = 0; k < sizeof totals / sizeof totals[0]; k++) {
        int64_t mine[2], *all = malloc(2 * (size_t)size * sizeof *all);
        tg_dist_shard(d, totals[k], &mine[0], &mine[1]);
        MPI_Allgather(mine, 2, MPI_INT64_T, all, 2, MPI_INT64_T, MPI_COMM_WORLD);
        int64_t next = 0, mx = 0, mn = totals[k];
        for (int r = 0; r < size; r++) {
            CHECK(all[2 * r] == next, "n %lld: rank %d starts at %lld, not %lld", (long long)totals[k], r,
                  (long long)all[2 * r], (long long)next);
            next += all[2 * r + 1];
            if (all[2 * r + 1] > mx) mx = all[2 * r + 1];
            if (all[2 * r + 1] < mn) mn = all[2 * r + 1];
        }
        CHECK(next == totals[k] && mx - mn <= 1, "n %lld: parts cover %lld, sizes %lld..%lld", (long long)totals[k],
              (long long)next, (long long)mn, (long long)mx);
        free(all);
    }
    uint64_t seeds[64] = {0}, s = tg_dist_seed(d, 42);
    CHECK(g_rank != 0 || s == 42, "rank 0's seed changed to %llu", (unsigned long long)s);
    if (size <= 64) MPI_Allgather(&s, 1, MPI_UINT64_T, seeds, 1, MPI_UINT64_T, MPI_COMM_WORLD);
    for (int r = 1; r < size && r < 64; r++) CHECK(seeds[r] != seeds[0], "rank %d draws rank 0's stream", r);

    /* broadcast: rank r starts from r + 1.5 everywhere; afterwards everyone holds 1.5 */
    tg_params *p = make_set(g_rank + 1.5);
    uint64_t v0 = tg_version(tg_params_find(p, "a"));
    CHECK(tg_dist_broadcast_params(d, p) == 0, "broadcast: %s", tg_last_error());
    for (int i = 0; i < tg_params_count(p); i++) {
        tg_tensor *t = tg_params_at(p, i);
        for (int e = 0; e < tg_numel(t); e++) CHECK(at(t, e) == 1.5, "%s[%d] = %g after the broadcast", tg_params_name_at(p, i), e, at(t, e));
    }
    if (g_rank != 0) CHECK(tg_version(tg_params_find(p, "a")) != v0, "version counter not bumped");

    /* all-reduce: g_r = (r+1)·(1, 2, ...), weights w_r = (r+1)/S with S = Σ (r+1) */
    double S = size * (size + 1) / 2.0, w = (g_rank + 1) / S, coef[4];
    for (int e = 0; e < 4; e++) coef[e] = (g_rank + 1) * (e + 1);
    set_grad(tg_params_find(p, "a"), coef);
    set_grad(tg_params_find(p, "b"), coef);
    if (g_rank == 1) set_grad(tg_params_find(p, "c"), coef);
    double loss = 10.0 * (g_rank + 1);
    double t0 = 0;
    int64_t calls0 = 0, calls1 = 0;
    tg_dist_stats(d, &t0, NULL, &calls0);
    CHECK(tg_dist_allreduce_grads(d, p, w, &loss) == 0, "allreduce: %s", tg_last_error());
    tg_dist_stats(d, NULL, NULL, &calls1);
    CHECK(calls1 - calls0 == 3, "%lld collective calls for 4 tensors of 2 dtypes (expected 3: layout, F64, F32)",
          (long long)(calls1 - calls0));
    double sw2 = 0; /* Σ w_r (r+1) = Σ (r+1)² / S */
    for (int r = 0; r < size; r++) sw2 += (r + 1.0) * (r + 1.0) / S;
    for (int e = 0; e < 3; e++)
        CHECK(fabs(at(tg_grad(tg_params_find(p, "a")), e) - sw2 * (e + 1)) < 1e-12, "a.grad[%d] = %.17g, expected %.17g",
              e, at(tg_grad(tg_params_find(p, "a")), e), sw2 * (e + 1));
    for (int e = 0; e < 4; e++)
        CHECK(fabs(at(tg_grad(tg_params_find(p, "b")), e) - sw2 * (e + 1)) < 1e-5 * sw2 * (e + 1), "b.grad[%d] = %g, expected %g",
              e, at(tg_grad(tg_params_find(p, "b")), e), sw2 * (e + 1));
    tg_tensor *gc = tg_grad(tg_params_find(p, "c"));
    if (size == 1) CHECK(gc == NULL, "c has a gradient though the only rank had none");
    else CHECK(gc != NULL, "c: rank 1's gradient did not reach rank %d", g_rank);
    for (int e = 0; gc && e < 2; e++)
        CHECK(fabs(at(gc, e) - 2.0 / S * 2 * (e + 1)) < 1e-12, "c.grad[%d] = %g, expected %g", e, at(gc, e), 4.0 / S * (e + 1));
    CHECK(tg_grad(tg_params_find(p, "e")) == NULL, "e has a gradient though no rank had one");
    CHECK(fabs(loss - 10 * sw2) < 1e-9, "scalar %g, expected %g", loss, 10 * sw2);

    /* the same all-reduce again with a poll sleep (non-blocking calls, MPI_Test + nanosleep) and split
     * timing (a barrier first): bit for bit the same gradients and scalar, one collective call more */
    tg_clear_error();
    CHECK(tg_dist_set_poll_sleep(d, -1) == -1 && strstr(tg_last_error(), "-1 microseconds is outside 0..1000000"),
          "a negative poll sleep: '%s'", tg_last_error());
    const char *reduced[3] = {"a", "b", "c"};
    uint64_t before = 0;
    for (int k = 0; k < 3; k++) {
        tg_tensor *g = tg_grad(tg_params_find(p, reduced[k]));
        if (g) before = (before * 31) ^ bytes_hash(g);
    }
    double loss_before = loss;
    tg_params_zero_grad(p);
    set_grad(tg_params_find(p, "a"), coef);
    set_grad(tg_params_find(p, "b"), coef);
    if (g_rank == 1) set_grad(tg_params_find(p, "c"), coef);
    loss = 10.0 * (g_rank + 1);
    CHECK(tg_dist_set_poll_sleep(d, 30) == 0, "poll sleep 30: %s", tg_last_error());
    tg_dist_set_split_timing(d, true);
    tg_dist_stats(d, NULL, NULL, &calls0);
    CHECK(tg_dist_allreduce_grads(d, p, w, &loss) == 0, "allreduce with a poll sleep: %s", tg_last_error());
    tg_dist_stats(d, NULL, NULL, &calls1);
    CHECK(calls1 - calls0 == 4, "%lld collective calls with split timing (expected 4: barrier, layout, F64, F32)",
          (long long)(calls1 - calls0));
    uint64_t after = 0;
    for (int k = 0; k < 3; k++) {
        tg_tensor *g = tg_grad(tg_params_find(p, reduced[k]));
        if (g) after = (after * 31) ^ bytes_hash(g);
    }
    CHECK(after == before && loss == loss_before, "poll sleep: other gradients (hash %llx vs %llx) or scalar (%.17g vs %.17g)",
          (unsigned long long)after, (unsigned long long)before, loss, loss_before);
    double wait = -1, transfer = -1, comm_cpu = -1;
    tg_dist_split_stats(d, &wait, &transfer, &comm_cpu);
    CHECK(wait > 0 && transfer > 0 && comm_cpu >= 0, "split timing: wait %g, transfer %g, CPU %g", wait, transfer, comm_cpu);
    double secs = 0;
    tg_dist_stats(d, &secs, NULL, NULL);
    CHECK(wait + transfer <= secs - t0 + 1e-12, "wait %g + transfer %g exceed the %g s in collectives", wait, transfer, secs - t0);
    tg_dist_set_split_timing(d, false);
    tg_dist_set_poll_sleep(d, 0);
    double mine3[3] = {g_rank, 2.0 * g_rank, -1}, all3[3 * 64];
    CHECK(tg_dist_gather_doubles(d, mine3, 3, size <= 64 ? all3 : NULL) == 0, "gather: %s", tg_last_error());
    for (int r = 0; g_rank == 0 && r < size && r < 64; r++)
        CHECK(all3[3 * r] == r && all3[3 * r + 1] == 2.0 * r && all3[3 * r + 2] == -1, "gather: rank %d sent %g %g %g", r,
              all3[3 * r], all3[3 * r + 1], all3[3 * r + 2]);

    /* bit-identity check */
    uint64_t h = 0;
    CHECK(tg_dist_check_params(d, p, &h) == 0, "check on equal sets: %s", tg_last_error());
    CHECK(h == tg_params_hash(p), "hash returned %llx, tg_params_hash %llx", (unsigned long long)h,
          (unsigned long long)tg_params_hash(p));
    if (g_rank == size - 1) {
        double *a = tg_data(tg_params_find(p, "a"));
        uint64_t bits;
        memcpy(&bits, &a[2], sizeof bits);
        bits ^= 1; /* the last bit of the mantissa */
        memcpy(&a[2], &bits, sizeof bits);
    }
    tg_clear_error();
    if (size == 1) { /* one rank agrees with itself, flipped bit or not */
        CHECK(tg_dist_check_params(d, p, &h) == 0, "one rank disagrees with itself: %s", tg_last_error());
        CHECK(h == tg_params_hash(p), "hash returned %llx, tg_params_hash %llx", (unsigned long long)h,
              (unsigned long long)tg_params_hash(p));
    } else {
        CHECK(tg_dist_check_params(d, p, NULL) == -1, "one flipped bit on rank %d not detected", size - 1);
        char want[64];
        snprintf(want, sizeof want, "rank %d differ", size - 1);
        CHECK(strstr(tg_last_error(), want) != NULL, "message '%s' does not name rank %d", tg_last_error(), size - 1);
    }

    /* different sets on rank 1: refused on every rank, before any bucket is exchanged */
    tg_params *q = make_set(0);
    if (g_rank == 1) {
        tg_tensor *x = tg_zeros(TG_F64, TG_SHAPE(5));
        tg_params_add(q, "extra", x);
        tg_release(x);
    }
    tg_clear_error();
    if (size > 1) {
        CHECK(tg_dist_broadcast_params(d, q) == -1, "rank 1's extra tensor not refused by the broadcast");
        CHECK(strstr(tg_last_error(), "rank 1 holds other parameters") != NULL, "message: '%s'", tg_last_error());
        tg_clear_error();
        CHECK(tg_dist_allreduce_grads(d, q, 1.0, NULL) == -1, "rank 1's extra tensor not refused by the all-reduce");
        CHECK(strstr(tg_last_error(), "different parameter sets") != NULL, "message: '%s'", tg_last_error());
    } else { /* one rank: the broadcast keeps the values, the all-reduce of no gradients gives none */
        CHECK(tg_dist_broadcast_params(d, q) == 0, "broadcast on one rank: %s", tg_last_error());
        CHECK(at(tg_params_find(q, "a"), 0) == 0, "the broadcast changed a value on one rank");
        CHECK(tg_dist_allreduce_grads(d, q, 1.0, NULL) == 0, "allreduce on one rank: %s", tg_last_error());
        for (int i = 0; i < tg_params_count(q); i++)
            CHECK(tg_grad(tg_params_at(q, i)) == NULL, "%s got a gradient from nowhere", tg_params_name_at(q, i));
    }
    tg_params_free(q);
    tg_params_free(p);

    tg_dist_free(d);
    MPI_Finalized(&fin);
    CHECK(!fin, "tg_dist_free finalised an MPI it did not initialise");
    int bad = 0;
    MPI_Allreduce(&g_failed, &bad, 1, MPI_INT, MPI_SUM, MPI_COMM_WORLD);
    printf("dist_worker rank %d/%d: %d checks, %d failed here, %d on all ranks\n", g_rank, size, g_checks, g_failed, bad);
    MPI_Finalize();
    return bad ? 1 : 0;
}
