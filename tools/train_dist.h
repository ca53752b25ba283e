/* tools/train_dist.h - the MPI hooks of `tapegrad train` (data parallel; the library side is
 * <tapegrad/dist.h>). `mpirun -np N tapegrad train ...` runs N copies of the same command; each makes
 * the same global batch of B sequences from the same data stream, keeps its rows [lo, lo + n), and the
 * ranks sum their gradients weighted by their share, so clipping and the optimizer step see exactly
 * the gradient one process computes on the whole batch. Rank 0 alone prints, logs, plots, saves and
 * evaluates; a rank that fails prints its message and ends every rank (MPI_Abort).
 *
 *     tg_dist *d;
 *     int rc = train_dist_begin(&d, "train", &argc, &argv);  // not under mpirun: d = NULL, nothing happens
 *     if (rc == 0) rc = the command's body (tr.dist = d; train_dist_prepare(&tr, ...) ...);
 *     return train_dist_end(d, "train", rc);                  // failure on N > 1 ranks: MPI_Abort
 */
#ifndef TG_TOOLS_TRAIN_DIST_H
#define TG_TOOLS_TRAIN_DIST_H
#include <stdbool.h>
#include <stddef.h>

#include <tapegrad/dist.h>

#include "tools/tasks.h"

struct trainer;

/* Under an MPI launcher: initialises MPI (tg_dist_init) and, on ranks other than 0, sends stdout to
 * /dev/null. Not launched: *d = NULL. Returns 0, or an exit status after printing why (a build without
 * MPI started by mpirun would train N independent copies writing the same files: refused). */
int train_dist_begin(tg_dist **d, const char *cmd, int *argc, char ***argv);
/* rc != 0 on a job of more than one rank: prints "rank r of N failed" and MPI_Aborts every rank with
 * rc. Otherwise frees d (MPI_Finalize) and returns rc. */
int train_dist_end(tg_dist *d, const char *cmd, int rc);

/* Before training: rank 0's parameters to every rank (tg_dist_broadcast_params: also checks that all
 * ranks built the same model) and, with `check`, the bit-identity check. Refuses a global batch
 * smaller than the number of ranks, and dropout/zoneout on more than one rank (their masks are drawn
 * for the rank's rows from the shared data stream, which would make the ranks' streams diverge).
 * Returns 0, or -1 with a message. */
int train_dist_prepare(struct trainer *tr, tg_dist *d, bool check, char *err, size_t errlen);

/* Replaces *b by this rank's rows [lo, lo + n) of it (x [T,n,I]; targets / labels of those rows, per
 * step when the task scores every step) and sets *weight to this rank's share of the loss's
 * denominator (n / B; for class labels the share of rows that are not ignore_index). Returns 0, or -1
 * (out of memory: *b cleared). */
int train_dist_slice(const tg_dist *d, task_batch *b, bool every_step, double *weight);

/* Where a run's figures start: tg_dist_stats / tg_dist_split_stats, the process CPU seconds and the
 * trainer's seconds before trainer_run. */
typedef struct train_dist_mark {
    double comm, wait, transfer, comm_cpu, cpu, seconds;
    int64_t bytes;
} train_dist_mark;
void train_dist_mark_now(const struct trainer *tr, const tg_dist *d, train_dist_mark *m);

/* After training: "mpi: 2 ranks x 1 thread, ... communication 0.4 ms/step (3% of the step time)" on
 * rank 0; with `split` (tg_dist_set_split_timing was on: `train --mpi-timing`) one line per rank
 * more, its step split into compute (wall and CPU), waiting for the slowest rank and the all-reduce
 * itself, and the CPU it burnt inside MPI. With `check` the bit-identity check first. m0: the mark
 * before the run. Collective. Returns 0, or -1 with a message (the ranks' parameters differ). */
int train_dist_report(const struct trainer *tr, tg_dist *d, bool check, bool split, int threads, int64_t steps,
                      const train_dist_mark *m0, char *err, size_t errlen);
#endif
