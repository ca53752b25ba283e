/* dist/dist.c - data-parallel training over MPI (see <tapegrad/dist.h>): broadcast of parameters,
 * bucketed all-reduce of gradients, parameter hashes compared across ranks.
 *
 * Without MPI (TG_HAVE_MPI 0) the same functions exist and report that MPI is missing; the hash, the
 * shard arithmetic and the launcher check are plain C and work in both builds. */
#include <tapegrad/dist.h>

#include <tapegrad/autograd.h>
#include <tapegrad/tensor.h>

#include "autograd/tape_internal.h" /* tg__grad_buf: a rank without a gradient gets a zero one */
#include "tensor/alloc.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define NO_MPI_MSG "tapegrad was built without MPI (install libopenmpi-dev and configure with -Dmpi=enabled)"

struct tg_dist {
    int rank, size;
    bool owns_init;   /* tg_dist_init called MPI_Init: tg_dist_free calls MPI_Finalize */
    double seconds;   /* inside collective calls */
    int64_t bytes, calls;
    bool split;       /* tg_dist_set_split_timing: a timed MPI_Barrier before each gradient all-reduce */
    int poll_us;      /* tg_dist_set_poll_sleep: 0 = MPI's blocking calls (busy-polling) */
    double wait, transfer, comm_cpu; /* barrier / all-reduce seconds (split on); process CPU in collectives */
    unsigned char *buf; /* the bucket, reused from call to call */
    size_t cap;
#if TG_HAVE_MPI
    MPI_Comm comm;    /* a duplicate of the user's communicator, errors returned */
#endif
};

bool tg_dist_launched(void) {
    static const char *const vars[] = {"OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_RANK"};
    for (size_t i = 0; i < sizeof vars / sizeof vars[0]; i++)
        if (getenv(vars[i])) return true;
    return false;
}

int tg_dist_rank(const tg_dist *d) { return d ? d->rank : 0; }
int tg_dist_size(const tg_dist *d) { return d ? d->size : 1; }

void tg_dist_shard(const tg_dist *d, int64_t n, int64_t *lo, int64_t *count) {
    int64_t size = tg_dist_size(d), r = tg_dist_rank(d);
    if (n < 0) n = 0;
    int64_t base = n / size, extra = n % size;
    int64_t c = base + (r < extra ? 1 : 0);
    int64_t l = r * base + (r < extra ? r : extra);
    if (lo) *lo = l;
    if (count) *count = c;
}

static uint64_t splitmix64(uint64_t x) {
    x += 0x9e3779b97f4a7c15ULL;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
    return x ^ (x >> 31);
}

uint64_t tg_dist_seed(const tg_dist *d, uint64_t seed) {
    int r = tg_dist_rank(d);
    return r == 0 ? seed : splitmix64(seed ^ splitmix64((uint64_t)r));
}

void tg_dist_stats(const tg_dist *d, double *seconds, int64_t *bytes, int64_t *calls) {
    if (seconds) *seconds = d ? d->seconds : 0;
    if (bytes) *bytes = d ? d->bytes : 0;
    if (calls) *calls = d ? d->calls : 0;
}

void tg_dist_set_split_timing(tg_dist *d, bool on) {
    if (d) d->split = on;
}

int tg_dist_set_poll_sleep(tg_dist *d, int microseconds) {
    if (!d) { tg_error("tg_dist_set_poll_sleep", "d is NULL"); return -1; }
    if (microseconds < 0 || microseconds > 1000000) {
        tg_error_quiet("tg_dist_set_poll_sleep", "%d microseconds is outside 0..1000000", microseconds);
        return -1;
    }
    d->poll_us = microseconds;
    return 0;
}

void tg_dist_split_stats(const tg_dist *d, double *wait, double *transfer, double *comm_cpu) {
    if (wait) *wait = d ? d->wait : 0;
    if (transfer) *transfer = d ? d->transfer : 0;
    if (comm_cpu) *comm_cpu = d ? d->comm_cpu : 0;
}


/* ---- hashes --------------------------------------------------------------------------------------- */

#define FNV_OFFSET 0xcbf29ce484222325ULL
#define FNV_PRIME 0x100000001b3ULL

static uint64_t fnv(uint64_t h, const void *p, size_t n) {
    const unsigned char *b = p;
    for (size_t i = 0; i < n; i++) h = (h ^ b[i]) * FNV_PRIME;
    return h;
}

/* names, dtypes and shapes (values too when `values`), in the set's order */
static uint64_t params_hash(const tg_params *params, bool values) {
    uint64_t h = FNV_OFFSET;
    int n = tg_params_count(params);
    h = fnv(h, &n, sizeof n);
    for (int i = 0; i < n; i++) {
        const char *name = tg_params_name_at(params, i);
        tg_tensor *t = tg_params_at(params, i);
        h = fnv(h, name, strlen(name) + 1);
        int dt = (int)tg_dtype_of(t), nd = tg_ndim(t);
        h = fnv(h, &dt, sizeof dt);
        h = fnv(h, &nd, sizeof nd);
        h = fnv(h, tg_shape(t), (size_t)nd * sizeof(int64_t));
        if (values) h = fnv(h, tg_data(t), (size_t)tg_numel(t) * tg_itemsize(tg_dtype_of(t)));
    }
    return h;
}

uint64_t tg_params_hash(const tg_params *params) {
    if (!params) { tg_error("tg_params_hash", "params is NULL"); return 0; }
    return params_hash(params, true);
}

#if !TG_HAVE_MPI
/* ---- the build without MPI ------------------------------------------------------------------------ */

tg_dist *tg_dist_init(int *argc, char ***argv) {
    (void)argc;
    (void)argv;
    tg_error_quiet("tg_dist_init", NO_MPI_MSG);
    return NULL;
}
void tg_dist_free(tg_dist *d) { free(d); }
int tg_dist_broadcast_params(tg_dist *d, tg_params *params) {
    (void)d;
    (void)params;
    tg_error_quiet("tg_dist_broadcast_params", NO_MPI_MSG);
    return -1;
}
int tg_dist_allreduce_grads(tg_dist *d, tg_params *params, double weight, double *scalar) {
    (void)d;
    (void)params;
    (void)weight;
    (void)scalar;
    tg_error_quiet("tg_dist_allreduce_grads", NO_MPI_MSG);
    return -1;
}
int tg_dist_check_params(tg_dist *d, const tg_params *params, uint64_t *hash) {
    (void)d;
    if (hash) *hash = params ? tg_params_hash(params) : 0;
    tg_error_quiet("tg_dist_check_params", NO_MPI_MSG);
    return -1;
}
int tg_dist_abort(tg_dist *d, int code) {
    (void)d;
    (void)code;
    tg_error_quiet("tg_dist_abort", NO_MPI_MSG);
    return -1;
}
int tg_dist_gather_doubles(tg_dist *d, const double *mine, int n, double *all) {
    (void)d;
    (void)mine;
    (void)n;
    (void)all;
    tg_error_quiet("tg_dist_gather_doubles", NO_MPI_MSG);
    return -1;
}

#else
/* ---- MPI ------------------------------------------------------------------------------------------ */

static int mpi_fail(const char *fn, const char *what, int rc) {
    char msg[MPI_MAX_ERROR_STRING] = "";
    int len = 0;
    MPI_Error_string(rc, msg, &len);
    tg_error_quiet(fn, "%s failed: %s", what, msg);
    return -1;
}

static tg_dist *dist_new(MPI_Comm comm, bool owns_init, const char *fn) {
    tg_dist *d = tg_calloc(1, sizeof *d);
    if (!d) { tg_error_quiet(fn, "out of memory"); return NULL; }
    int rc = MPI_Comm_dup(comm, &d->comm);
    if (rc != MPI_SUCCESS) { free(d); mpi_fail(fn, "MPI_Comm_dup", rc); return NULL; }
    MPI_Comm_set_errhandler(d->comm, MPI_ERRORS_RETURN);
    MPI_Comm_rank(d->comm, &d->rank);
    MPI_Comm_size(d->comm, &d->size);
    d->owns_init = owns_init;
    return d;
}

tg_dist *tg_dist_init(int *argc, char ***argv) {
    int inited = 0, finalized = 0;
    MPI_Initialized(&inited);
    MPI_Finalized(&finalized);
    if (finalized) { tg_error_quiet("tg_dist_init", "MPI was already finalised"); return NULL; }
    bool mine = false;
    if (!inited) {
        int rc = MPI_Init(argc, argv);
        if (rc != MPI_SUCCESS) return mpi_fail("tg_dist_init", "MPI_Init", rc), NULL;
        mine = true;
    }
    tg_dist *d = dist_new(MPI_COMM_WORLD, mine, "tg_dist_init");
    if (!d && mine) MPI_Finalize();
    return d;
}

tg_dist *tg_dist_from_comm(MPI_Comm comm) {
    int inited = 0, finalized = 0;
    MPI_Initialized(&inited);
    MPI_Finalized(&finalized);
    if (!inited || finalized) {
        tg_error_quiet("tg_dist_from_comm", "MPI is not initialised (call MPI_Init first, or use tg_dist_init)");
        return NULL;
    }
    if (comm == MPI_COMM_NULL) { tg_error("tg_dist_from_comm", "comm is MPI_COMM_NULL"); return NULL; }
    return dist_new(comm, false, "tg_dist_from_comm");
}

void tg_dist_free(tg_dist *d) {
    if (!d) return;
    int finalized = 0;
    MPI_Finalized(&finalized);
    if (!finalized) MPI_Comm_free(&d->comm);
    bool fin = d->owns_init && !finalized;
    free(d->buf);
    free(d);
    if (fin) MPI_Finalize();
}

int tg_dist_abort(tg_dist *d, int code) {
    fflush(stdout);
    fflush(stderr);
    MPI_Abort(d ? d->comm : MPI_COMM_WORLD, code);
    return -1; /* not reached */
}

/* The process's CPU seconds (all threads): a rank that busy-polls inside MPI burns CPU there. */
static double cpu_now(void) {
    struct timespec ts;
    if (clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts)) return 0;
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* Around every collective call: wall seconds, process CPU seconds, bytes handed over, calls. */
typedef struct coll_timer {
    double wall, cpu;
} coll_timer;

static coll_timer timer_start(void) { return (coll_timer){MPI_Wtime(), cpu_now()}; }

static double timer_stop(tg_dist *d, coll_timer t, size_t bytes) {
    double wall = MPI_Wtime() - t.wall;
    d->seconds += wall;
    d->comm_cpu += cpu_now() - t.cpu;
    d->bytes += (int64_t)bytes;
    d->calls++;
    return wall;
}

static bool ensure_buf(tg_dist *d, size_t bytes, const char *fn) {
    if (bytes <= d->cap) return true;
    unsigned char *b = tg_realloc(d->buf, bytes);
    if (!b) { tg_error_quiet(fn, "out of memory (a bucket of %zu bytes)", bytes); return false; }
    d->buf = b;
    d->cap = bytes;
    return true;
}

static MPI_Datatype mpi_type(tg_dtype dt) { return dt == TG_F64 ? MPI_DOUBLE : MPI_FLOAT; }

/* Every rank learns every rank's layout hash; returns the first rank whose hash differs from rank 0's,
 * or -1 when all agree (-2 on an MPI failure, message set). */
static int layout_mismatch(tg_dist *d, uint64_t mine, const char *fn) {
    uint64_t *all = tg_malloc((size_t)d->size * sizeof *all);
    if (!all) { tg_error_quiet(fn, "out of memory"); return -2; }
    coll_timer t0 = timer_start();
    int rc = MPI_Allgather(&mine, 1, MPI_UINT64_T, all, 1, MPI_UINT64_T, d->comm);
    timer_stop(d, t0, sizeof mine);
    if (rc != MPI_SUCCESS) { free(all); return mpi_fail(fn, "MPI_Allgather", rc), -2; }
    int bad = -1;
    for (int r = 1; r < d->size && bad < 0; r++)
        if (all[r] != all[0]) bad = r;
    free(all);
    return bad;
}

static bool check_layout(tg_dist *d, const tg_params *params, const char *fn) {
    int bad = layout_mismatch(d, params_hash(params, false), fn);
    if (bad == -1) return true;
    if (bad >= 0)
        tg_error_quiet(fn, "rank %d holds other parameters than rank 0 (names, dtypes or shapes differ: "
                           "start every rank with the same options)", bad);
    return false;
}

int tg_dist_broadcast_params(tg_dist *d, tg_params *params) {
    const char *fn = "tg_dist_broadcast_params";
    if (!d || !params) { tg_error(fn, "%s is NULL", d ? "params" : "d"); return -1; }
    if (!check_layout(d, params, fn)) return -1;
    int n = tg_params_count(params);
    for (int dt = TG_F32; dt <= TG_F64; dt++) {
        size_t isz = tg_itemsize((tg_dtype)dt);
        int i = 0;
        while (i < n) {
            /* one bucket: parameters i..j-1 of this dtype (a tensor larger than a bucket goes alone) */
            size_t used = 0;
            int j = i;
            for (; j < n; j++) {
                tg_tensor *t = tg_params_at(params, j);
                if ((int)tg_dtype_of(t) != dt) continue;
                size_t b = (size_t)tg_numel(t) * isz;
                if (used > 0 && used + b > TG_DIST_BUCKET_BYTES) break;
                used += b;
            }
            if (used > 0) {
                if (!ensure_buf(d, used, fn)) return -1;
                size_t off = 0;
                for (int k = i; k < j; k++) {
                    tg_tensor *t = tg_params_at(params, k);
                    if ((int)tg_dtype_of(t) != dt) continue;
                    size_t b = (size_t)tg_numel(t) * isz;
                    memcpy(d->buf + off, tg_data(t), b);
                    off += b;
                }
                coll_timer t0 = timer_start();
                int rc = MPI_Bcast(d->buf, (int)(used / isz), mpi_type((tg_dtype)dt), 0, d->comm);
                timer_stop(d, t0, used);
                if (rc != MPI_SUCCESS) return mpi_fail(fn, "MPI_Bcast", rc);
                off = 0;
                for (int k = i; k < j; k++) {
                    tg_tensor *t = tg_params_at(params, k);
                    if ((int)tg_dtype_of(t) != dt) continue;
                    size_t b = (size_t)tg_numel(t) * isz;
                    if (d->rank != 0) {
                        memcpy(tg_data(t), d->buf + off, b);
                        tg_bump_version(t);
                    }
                    off += b;
                }
            }
            i = j;
        }
    }
    return 0;
}

/* Completes a non-blocking collective: MPI_Wait (MPI's own busy-polling), or with a poll sleep set,
 * MPI_Test then nanosleep until done, so that a waiting rank gives its core away. */
static int finish(const tg_dist *d, MPI_Request *rq) {
    if (d->poll_us <= 0) return MPI_Wait(rq, MPI_STATUS_IGNORE);
    struct timespec ts = {d->poll_us / 1000000, 1000L * (d->poll_us % 1000000)};
    for (;;) {
        int done = 0;
        int rc = MPI_Test(rq, &done, MPI_STATUS_IGNORE);
        if (rc != MPI_SUCCESS || done) return rc;
        nanosleep(&ts, NULL);
    }
}

/* The collectives of a training step (the gradient all-reduce and its checks): blocking MPI calls, or
 * their non-blocking forms finished by `finish` when a poll sleep is set. */
static int step_allreduce(const tg_dist *d, void *buf, int count, MPI_Datatype t, MPI_Op op) {
    if (d->poll_us <= 0) return MPI_Allreduce(MPI_IN_PLACE, buf, count, t, op, d->comm);
    MPI_Request rq;
    int rc = MPI_Iallreduce(MPI_IN_PLACE, buf, count, t, op, d->comm, &rq);
    return rc != MPI_SUCCESS ? rc : finish(d, &rq);
}

static int step_barrier(const tg_dist *d) {
    if (d->poll_us <= 0) return MPI_Barrier(d->comm);
    MPI_Request rq;
    int rc = MPI_Ibarrier(d->comm, &rq);
    return rc != MPI_SUCCESS ? rc : finish(d, &rq);
}

/* One all-reduce (SUM) of `count` elements of dtype dt in d->buf. */
static int allreduce_buf(tg_dist *d, tg_dtype dt, size_t count, const char *fn) {
    coll_timer t0 = timer_start();
    int rc = step_allreduce(d, d->buf, (int)count, mpi_type(dt), MPI_SUM);
    double wall = timer_stop(d, t0, count * tg_itemsize(dt));
    if (d->split) d->transfer += wall;
    return rc == MPI_SUCCESS ? 0 : mpi_fail(fn, "MPI_Allreduce", rc);
}

static void put(void *buf, tg_dtype dt, size_t i, double v) {
    if (dt == TG_F64) ((double *)buf)[i] = v;
    else ((float *)buf)[i] = (float)v;
}
static double get(const void *buf, tg_dtype dt, size_t i) {
    return dt == TG_F64 ? ((const double *)buf)[i] : (double)((const float *)buf)[i];
}

int tg_dist_allreduce_grads(tg_dist *d, tg_params *params, double weight, double *scalar) {
    const char *fn = "tg_dist_allreduce_grads";
    if (!d || !params) { tg_error(fn, "%s is NULL", d ? "params" : "d"); return -1; }
    int n = tg_params_count(params);
    /* The layouts must agree before buckets of a size derived from them are exchanged: MAX of (hash,
     * ~hash) gives (max, ~min), equal to (mine, ~mine) on every rank exactly when all hashes agree. */
    uint64_t lay = params_hash(params, false), mm[2] = {lay, ~lay};
    coll_timer t0;
    int rc;
    if (d->split) { /* measurement: waiting for the slowest rank apart from the exchange itself */
        t0 = timer_start();
        rc = step_barrier(d);
        d->wait += timer_stop(d, t0, 0);
        if (rc != MPI_SUCCESS) return mpi_fail(fn, "MPI_Barrier", rc);
    }
    t0 = timer_start();
    rc = step_allreduce(d, mm, 2, MPI_UINT64_T, MPI_MAX);
    double wall = timer_stop(d, t0, sizeof mm);
    if (d->split) d->transfer += wall;
    if (rc != MPI_SUCCESS) return mpi_fail(fn, "MPI_Allreduce", rc);
    if (mm[0] != ~mm[1]) {
        tg_error_quiet(fn, "the ranks hold different parameter sets (names, dtypes or shapes differ)");
        return -1;
    }
    /* The first bucket of the first dtype present also carries, after the gradients, one "has a
     * gradient" count per parameter and the scalar. */
    int first_dt = -1;
    for (int k = 0; k < n && first_dt < 0; k++) first_dt = (int)tg_dtype_of(tg_params_at(params, k));
    char *has = tg_calloc((size_t)(n ? n : 1), 1); /* has[k]: some rank had a gradient for parameter k */
    if (!has) { tg_error_quiet(fn, "out of memory"); return -1; }
    bool extras_done = first_dt < 0;
    int status = 0;
    if (first_dt < 0 && scalar) { /* an empty set: the scalar alone */
        double v = weight * *scalar;
        t0 = timer_start();
        rc = step_allreduce(d, &v, 1, MPI_DOUBLE, MPI_SUM);
        wall = timer_stop(d, t0, sizeof v);
        if (d->split) d->transfer += wall;
        if (rc != MPI_SUCCESS) status = mpi_fail(fn, "MPI_Allreduce", rc);
        else *scalar = v;
    }
    for (int pass = 0; pass < 2 && status == 0; pass++) {
        int dt = pass == 0 ? first_dt : 1 - first_dt;
        if (dt < 0) break;
        size_t isz = tg_itemsize((tg_dtype)dt);
        int i = 0;
        while (i < n && status == 0) {
            size_t used = 0; /* elements */
            int j = i;
            for (; j < n; j++) {
                tg_tensor *t = tg_params_at(params, j);
                if ((int)tg_dtype_of(t) != dt) continue;
                size_t c = (size_t)tg_numel(t);
                if (used > 0 && (used + c) * isz > TG_DIST_BUCKET_BYTES) break;
                used += c;
            }
            if (used == 0 && extras_done) { i = j; continue; }
            bool extras = !extras_done;
            size_t count = used + (extras ? (size_t)n + 1 : 0);
            if (!ensure_buf(d, count * isz, fn)) { status = -1; break; }
            size_t off = 0;
            for (int k = i; k < j; k++) {
                tg_tensor *t = tg_params_at(params, k);
                if ((int)tg_dtype_of(t) != dt) continue;
                size_t c = (size_t)tg_numel(t);
                tg_tensor *g = tg_grad(t);
                if (!g) memset(d->buf + off * isz, 0, c * isz);
                else if (dt == TG_F64) {
                    const double *s = tg_data(g);
                    double *b = (double *)d->buf + off;
                    for (size_t e = 0; e < c; e++) b[e] = weight * s[e];
                } else {
                    const float *s = tg_data(g);
                    float *b = (float *)d->buf + off;
                    float w = (float)weight;
                    for (size_t e = 0; e < c; e++) b[e] = w * s[e];
                }
                off += c;
            }
            if (extras) {
                for (int k = 0; k < n; k++) put(d->buf, (tg_dtype)dt, used + (size_t)k, tg_grad(tg_params_at(params, k)) ? 1 : 0);
                put(d->buf, (tg_dtype)dt, used + (size_t)n, scalar ? weight * *scalar : 0);
            }
            if (allreduce_buf(d, (tg_dtype)dt, count, fn)) { status = -1; break; }
            if (extras) {
                for (int k = 0; k < n; k++) has[k] = get(d->buf, (tg_dtype)dt, used + (size_t)k) > 0.5;
                if (scalar) *scalar = get(d->buf, (tg_dtype)dt, used + (size_t)n);
                extras_done = true;
            }
            off = 0;
            for (int k = i; k < j; k++) {
                tg_tensor *t = tg_params_at(params, k);
                if ((int)tg_dtype_of(t) != dt) continue;
                size_t c = (size_t)tg_numel(t);
                tg_tensor *g = tg_grad(t);
                if (!g && has[k] && tg_requires_grad(t)) g = tg__grad_buf(t); /* zeros, then the sum */
                if (g) {
                    memcpy(tg_data(g), d->buf + off * isz, c * isz);
                    tg_bump_version(g);
                }
                off += c;
            }
            i = j;
        }
    }
    free(has);
    return status;
}

int tg_dist_check_params(tg_dist *d, const tg_params *params, uint64_t *hash) {
    const char *fn = "tg_dist_check_params";
    if (!d || !params) { tg_error(fn, "%s is NULL", d ? "params" : "d"); return -1; }
    uint64_t h = params_hash(params, true);
    if (hash) *hash = h;
    int bad = layout_mismatch(d, h, fn);
    if (bad == -1) return 0;
    if (bad >= 0) tg_error_quiet(fn, "the parameters of rank %d differ from rank 0's (hashes differ)", bad);
    return -1;
}

int tg_dist_gather_doubles(tg_dist *d, const double *mine, int n, double *all) {
    const char *fn = "tg_dist_gather_doubles";
    if (!d || !mine || n < 0 || (d->rank == 0 && !all)) {
        tg_error(fn, "%s", !d ? "d is NULL" : !mine ? "mine is NULL" : n < 0 ? "n < 0" : "all is NULL on rank 0");
        return -1;
    }
    int rc = MPI_Gather(mine, n, MPI_DOUBLE, all, n, MPI_DOUBLE, 0, d->comm);
    return rc == MPI_SUCCESS ? 0 : mpi_fail(fn, "MPI_Gather", rc);
}
#endif
