/* tapegrad/dist.h - data-parallel training over MPI: every rank holds the whole model, computes the
 * gradient of its share of each batch, and the ranks average their gradients before the optimizer step.
 *
 * Worked example (each rank runs this; start it with `mpirun -np N ./program`):
 *
 *     tg_dist *d = tg_dist_init(&argc, &argv);   // MPI_Init unless the program already did; NULL + tg_last_error()
 *     tg_dist_broadcast_params(d, lstm->params);  // rank 0's initial weights everywhere
 *     int64_t lo, n;
 *     tg_dist_shard(d, B, &lo, &n);               // this rank's rows [lo, lo+n) of each global batch of B
 *     for (int step = 0; step < steps; step++) {
 *         tg_optim_zero_grad(opt);
 *         ... make the global batch (same generator on every rank), keep rows [lo, lo+n) ...
 *         tg_tensor *loss = mean loss over the n rows;             // tape-owned
 *         tg_backward(loss);
 *         double l = tg_item(loss);
 *         tg_dist_allreduce_grads(d, lstm->params, (double)n / B, &l);  // grad = Σ_r (n_r/B)·grad_r; l likewise
 *         tg_optim_clip_grad_norm(opt, 1.0, 2.0, false);         // sees the global gradient
 *         tg_optim_step(opt);
 *         tg_tape_reset();
 *     }
 *     if (tg_dist_check_params(d, lstm->params)) ...  // -1: the ranks' parameters are not bit-identical
 *     tg_dist_free(d);                             // MPI_Finalize only if tg_dist_init called MPI_Init
 *
 * Why weights n_r/B rather than 1/N: a mean loss over a slice of n_r rows is (1/n_r)·Σ, so Σ_r (n_r/B)
 * times each slice's gradient is exactly the gradient of the mean over all B rows, even when B is not a
 * multiple of N. The ranks then hold the same gradient a single process would have computed on the
 * whole batch (up to the order of the additions), so clipping and the optimizer step see the global
 * gradient and every rank takes the same step.
 *
 * Gradients travel in buckets: each parameter's gradient (times the weight) is copied into a flat
 * buffer, one MPI_Allreduce(SUM) per bucket of up to TG_DIST_BUCKET_BYTES (one call for any model up to
 * that size, ~6.5 M F32 parameters), then copied back. A parameter without a gradient on a rank counts as
 * zeros there; if any rank has one, every rank ends with one (so every rank's optimizer steps the same
 * parameters); if none has, it stays without.
 *
 * Without MPI (a build configured with -Dmpi=disabled, or where meson found no MPI; TG_HAVE_MPI 0 in
 * <tapegrad/config.h>) every function here exists and reports "tapegrad was built without MPI"
 * (tg_dist_init returns NULL; the others return -1), except tg_params_hash, tg_dist_launched and the
 * accessors, which work everywhere. tg_dist_from_comm, which takes an MPI_Comm, exists only when
 * TG_HAVE_MPI is 1 (this header then includes <mpi.h>). The umbrella <tapegrad/tapegrad.h> does not
 * include this header, so programs that do not use it never need MPI's include path.
 *
 * Errors: NULL arguments are programming errors (tg_error: default print and abort). Everything else
 * (MPI failures, ranks whose parameter sets differ, the missing MPI) returns -1 / NULL with a message in
 * tg_last_error(), through tg_error_quiet. A rank that cannot go on should print its message and call
 * tg_dist_abort, which ends every rank (MPI_Abort) instead of leaving the others waiting in a
 * collective call.
 *
 * Ownership: tg_dist is a new object (tg_dist_free); parameter sets are borrowed. Not thread-safe: one
 * thread per rank calls these (the GEMM threads inside each rank are fine).
 */
#ifndef TAPEGRAD_DIST_H
#define TAPEGRAD_DIST_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <tapegrad/config.h>
#include <tapegrad/nn.h>

#if TG_HAVE_MPI
#include <mpi.h>
#endif

#ifdef __cplusplus
extern "C" {
#endif

#define TG_DIST_BUCKET_BYTES ((size_t)25 << 20) /* PyTorch DDP's default bucket size, 25 MiB */

typedef struct tg_dist tg_dist;

/* Was this process started by an MPI launcher (mpirun / mpiexec / srun: one of the environment
 * variables OMPI_COMM_WORLD_SIZE, PMI_SIZE, PMIX_RANK set)? A program can use it to decide whether to
 * call tg_dist_init at all, so that a plain run never touches MPI. Works without MPI too. */
bool tg_dist_launched(void);

/* Over MPI_COMM_WORLD. Calls MPI_Init(argc, argv) only when MPI is not initialised yet (MPI_Initialized;
 * argc/argv may be NULL), and remembers it, so that tg_dist_free calls MPI_Finalize exactly when this
 * call did the MPI_Init. returns: new object, or NULL with a message (tg_last_error). */
tg_dist *tg_dist_init(int *argc, char ***argv);
#if TG_HAVE_MPI
/* Over a communicator of the caller's (MPI already initialised by the caller: else NULL + message).
 * The communicator is duplicated (MPI_Comm_dup, errors returned instead of fatal), so tapegrad's
 * messages never mix with the program's own; tg_dist_free frees the duplicate and never finalises.
 * returns: new object, or NULL with a message. args: borrowed. */
tg_dist *tg_dist_from_comm(MPI_Comm comm);
#endif
/* Frees the duplicate communicator; MPI_Finalize if tg_dist_init did MPI_Init. Collective. NULL-safe. */
void tg_dist_free(tg_dist *d);

int tg_dist_rank(const tg_dist *d);  /* 0 .. size-1 */
int tg_dist_size(const tg_dist *d);  /* number of ranks, >= 1 */

/* This rank's part of n items split into size nearly equal contiguous parts (the first n % size ranks
 * get one more): rows [*lo, *lo + *count). A rank may get 0 rows when n < size. */
void tg_dist_shard(const tg_dist *d, int64_t n, int64_t *lo, int64_t *count);
/* A seed for this rank's own random stream (rank 0: seed itself; rank r: a splitmix64 mix of seed and
 * r), for programs in which each rank draws its own batches instead of slicing a shared global batch. */
uint64_t tg_dist_seed(const tg_dist *d, uint64_t seed);

/* Copies rank 0's values of every tensor of the set into every rank's (in place: identities kept,
 * version counters bumped), in buckets of MPI_Bcast. First checks that all ranks hold sets of the same
 * layout (count, names, dtypes, shapes): if not, every rank returns -1 with a message naming the
 * first rank that differs, and nothing is changed. Collective. args: borrowed. */
int tg_dist_broadcast_params(tg_dist *d, tg_params *params);

/* Every gradient g of the set becomes Σ_ranks weight_r · g_r (weight = (rows of this rank) / (rows of
 * the global batch) for a mean loss; 1/size for a plain average). If scalar is not NULL, *scalar is
 * reduced the same way in the same call (the batch loss, for logs). Buckets of TG_DIST_BUCKET_BYTES
 * per dtype, one MPI_Allreduce each. All ranks must pass sets of the same layout (checked cheaply:
 * the bucket sizes are compared first; a mismatch returns -1 on every rank). Collective. */
int tg_dist_allreduce_grads(tg_dist *d, tg_params *params, double weight, double *scalar);

/* 64-bit FNV-1a hash of the set: every name, dtype, shape and the exact bytes of every value. Equal
 * hashes on two ranks = bit-identical parameters (barring a 2^-64 collision). Works without MPI. */
uint64_t tg_params_hash(const tg_params *params);
/* Compares tg_params_hash across ranks. Returns 0 when all agree; else -1 with a message naming a rank
 * whose hash differs from rank 0's, on every rank. *hash (may be NULL) gets this rank's hash. Collective. */
int tg_dist_check_params(tg_dist *d, const tg_params *params, uint64_t *hash);

/* Time and traffic so far: seconds inside tapegrad's collective calls on this rank (including waiting
 * for slower ranks), bytes this rank handed to them, and the number of calls. Any pointer may be NULL. */
void tg_dist_stats(const tg_dist *d, double *seconds, int64_t *bytes, int64_t *calls);

/* Measurement mode (off by default): with `on`, tg_dist_allreduce_grads first waits in a timed
 * MPI_Barrier, so the time a rank spends waiting for the slowest rank to arrive is counted apart
 * from the exchange itself (the all-reduce calls after the barrier, when every rank is there). The
 * barrier costs one more collective per step (a few µs over shared memory); the results are the
 * same. NULL-safe; works without MPI (nothing to time there). */
void tg_dist_set_split_timing(tg_dist *d, bool on);
/* How a rank waits inside the collectives of tg_dist_allreduce_grads. 0 (the default): MPI's blocking
 * calls, which busy-poll: the lowest latency when every rank has a core of its own. microseconds > 0:
 * the non-blocking forms (MPI_Iallreduce, MPI_Ibarrier), completed by MPI_Test with a nanosleep of
 * that long between tests, so a waiting rank gives its core to others: for ranks that share cores
 * with other work (more processes than cores, a loaded machine), where a busy-polling rank burns the
 * time slice its peer needs. Every test adds up to one sleep (plus the kernel's timer slack, ~50 µs)
 * per round of the all-reduce, so leave it at 0 on a cluster. The sums are the same either way for 2
 * ranks; for more, MPI may add in another order (within rounding). Returns 0, or -1 with a message
 * (outside 0..1000000; d NULL is a programming error). Works without MPI (nothing waits there). */
int tg_dist_set_poll_sleep(tg_dist *d, int microseconds);
/* Seconds so far of split timing: *wait in the barriers, *transfer in the gradient all-reduces after
 * them; and *comm_cpu, the process CPU seconds (all threads, CLOCK_PROCESS_CPUTIME_ID) spent inside
 * every collective call of tg_dist (split timing on or not): MPI busy-polls while it waits, so this
 * is CPU the rank burns waiting. Any pointer may be NULL; d NULL gives zeros. */
void tg_dist_split_stats(const tg_dist *d, double *wait, double *transfer, double *comm_cpu);
/* Rank 0 gets every rank's n values (all[r*n + i] = value i of rank r; `all` holds size*n values on
 * rank 0 and may be NULL elsewhere): per-rank figures for one report. Collective. Returns 0, or -1
 * with a message (MPI failure; without MPI). */
int tg_dist_gather_doubles(tg_dist *d, const double *mine, int n, double *all);

/* Ends every rank of the communicator with exit status `code` (MPI_Abort) after flushing stdout and
 * stderr; for a rank that hit an error the others cannot know about. Does not return when MPI is
 * there. Without MPI (or d NULL) it returns -1 with a message, so the caller exits as it would anyway. */
int tg_dist_abort(tg_dist *d, int code);

#ifdef __cplusplus
}
#endif
#endif
