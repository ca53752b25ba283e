/* tapegrad/trainer.h - the training loop and checkpoints that resume bit for bit.
 *
 * The loop a user would otherwise write around every model (steps, clipping, optimizer step, tape
 * reset, epochs with a validation metric, early stopping with the best parameters kept, a progress
 * callback) and a checkpoint of everything it needs to continue exactly: parameters, optimizer and
 * schedule state, step, the data stream's generator, the epoch in progress and the early-stopping
 * counters. The model and the data stay yours: a callback draws a batch and returns the loss.
 *
 *     static tg_tensor *batch_loss(tg_trainer *tr, tg_rng *rng, void *user) {
 *         my_model *m = user;
 *         ... x, target drawn from rng ...
 *         return tg_mse_loss(my_forward(m, x), target, TG_REDUCE_MEAN);  // tape-owned scalar
 *     }
 *     tg_trainer tr;
 *     tg_trainer_init(&tr, params, opt, &(tg_train_opts){.clip = 1, .seed = 7},
 *                     &(tg_train_hooks){.loss = batch_loss, .user = &m});
 *     if (tg_trainer_load(&tr, "ckpt.safetensors", NULL) != 0) ...     // optional: resume
 *     tg_trainer_run(&tr, 1000);                                       // until step 1000
 *     tg_trainer_save(&tr, "ckpt.safetensors", 0, NULL);
 *     tg_trainer_free(&tr);
 *
 * One step (tg_trainer_step): loss = hooks.loss(rng) -> tg_backward -> hooks.after_backward ->
 * clip -> tg_optim_step -> tg_optim_zero_grad -> tg_tape_reset (the tape is per thread: do not keep
 * tape-owned tensors across steps) -> step += 1 -> [per-step schedule] -> at an epoch's end:
 * hooks.evaluate, early stopping, [per-epoch schedule], hooks.after_epoch -> hooks.after_step.
 * A run resumed from a checkpoint of step k gives the same parameters, bit for bit, as one that never
 * stopped, provided every random draw of a step comes from the rng the loss hook is given.
 *
 * Errors: functions return 0 or -1 with a message (tg_last_error; data errors, which never abort).
 * A hook that returns -1 (or NULL) stops the step; its own message, if it reported one, is kept.
 */
#ifndef TAPEGRAD_TRAINER_H
#define TAPEGRAD_TRAINER_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <tapegrad/nn.h>
#include <tapegrad/optim.h>
#include <tapegrad/safetensors.h>
#include <tapegrad/tensor.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct tg_trainer tg_trainer;

/* What the loop reports at the end of each epoch (hooks.after_epoch). */
typedef struct tg_epoch_report {
    int64_t epoch;           /* 1, 2, ...: epochs completed */
    double train_loss;       /* mean training loss over the epoch's steps */
    double metric;           /* hooks.evaluate's value, NAN without one */
    bool best;               /* a new best metric (the parameters were kept if keep_best) */
    bool stop;               /* early stopping ends the run after this epoch */
} tg_epoch_report;

typedef struct tg_train_hooks {
    /* Required: draws one batch from rng (the trainer's data stream, saved in checkpoints), runs the
     * forward pass and returns the scalar loss (tape-owned), or NULL after an error. */
    tg_tensor *(*loss)(tg_trainer *tr, tg_rng *rng, void *user);
    /* Optional: after the backward, before clipping (average gradients over processes, score the
     * batch while its tensors live). May change *loss (the value the loop records). 0, or -1. */
    int (*after_backward)(tg_trainer *tr, double *loss, void *user);
    /* Optional, at an epoch's end: the validation metric in *metric (NAN: none this time). 0, or -1. */
    int (*evaluate)(tg_trainer *tr, double *metric, void *user);
    /* Optional: after an epoch's bookkeeping (print it, save the best checkpoint). 0, or -1. */
    int (*after_epoch)(tg_trainer *tr, const tg_epoch_report *report, void *user);
    /* Optional: after every completed step (curves, progress lines). 0, or -1. */
    int (*after_step)(tg_trainer *tr, void *user);
    void *user;              /* passed to every hook */
} tg_train_hooks;

typedef struct tg_train_opts {
    double clip;             /* max global L2 norm of the gradients (tg_optim_clip_grad_norm); 0: off */
    tg_sched *sched;         /* borrowed, may be NULL: stepped after every step, or every epoch */
    bool sched_per_epoch;    /* step sched at epochs' ends (PLATEAU: with the metric) instead of steps */
    int64_t epoch_steps;     /* steps per epoch; 0: no epochs (no evaluation, no early stopping) */
    int64_t patience;        /* stop after this many epochs without a better metric; 0: never */
    bool higher_is_better;   /* the metric's direction (default: lower is better, e.g. a loss) */
    bool keep_best;          /* keep a copy of the parameters at the best epoch (tg_trainer_restore_best) */
    bool detect_anomaly;     /* every step in anomaly mode: the first op making a NaN/inf fails the step */
    uint64_t seed;           /* the data stream's generator */
} tg_train_opts;

struct tg_trainer {
    tg_params *params;       /* borrowed: the model's parameters under their checkpoint names */
    tg_optim *opt;           /* borrowed: an optimizer over (a subset of) params */
    tg_train_opts opts;
    tg_train_hooks hooks;
    tg_rng rng;              /* the data stream, given to hooks.loss */
    int64_t step;            /* steps done */
    double last_loss;        /* the last step's loss */
    double epoch_loss;       /* sum of the losses of the epoch in progress */
    int64_t epoch_batches;   /* steps of the epoch in progress */
    double best_metric;      /* the best metric so far, NAN: none yet */
    int64_t best_epoch;      /* the epoch that gave it (0: none) */
    int64_t bad_epochs;      /* epochs since, with a metric and no improvement */
    bool stopped;            /* early stopping ended the run */
    void **best_values;      /* private: the parameters' bytes at the best epoch (keep_best) */
};

/* Sets up a trainer over borrowed params and opt (both must outlive it). hooks->loss is required.
 * Returns 0, or -1 with a message (NULL arguments, no loss hook, negative clip or sizes). */
int tg_trainer_init(tg_trainer *tr, tg_params *params, tg_optim *opt, const tg_train_opts *opts,
                    const tg_train_hooks *hooks);
void tg_trainer_free(tg_trainer *tr);  /* frees the kept best parameters; NULL-safe; borrows nothing more */

/* One training step (see the header comment). Returns 0, or -1 with a message: a hook failed, the
 * backward or the optimizer failed, or the loss is not finite ("the loss became nan at step 12";
 * the step is counted then, last_loss holds the value). */
int tg_trainer_step(tg_trainer *tr);
/* Steps until tr->step == until or early stopping. Returns 0, or -1 as tg_trainer_step. */
int tg_trainer_run(tg_trainer *tr, int64_t until);
/* Copies the parameters kept at the best epoch back (keep_best). Returns true if it did, false when
 * nothing was kept. */
bool tg_trainer_restore_best(tg_trainer *tr);

/* ---- checkpoints --------------------------------------------------------------------------------- */

/* Writes the checkpoint: PATH holds the parameters under their names (tg_params_save's layout, so
 * PyTorch's safetensors reads it) with the trainer's state as metadata ("format"="pt",
 * "tapegrad.train"="1", "step", "rng", "epoch_acc", "early") and nmeta extra (key, value) pairs of
 * yours (meta[2i], meta[2i+1]; these keys are refused); "<stem>.optim.safetensors"
 * (tg_ckpt_optim_path, <tapegrad/train.h>) holds the optimizer and schedule state (tg_optim_save's
 * layout). Both files carry the same "pair_id" (refused as a key of yours). Each file is replaced
 * atomically and the previous pair stays loadable until both are: a failed or interrupted save leaves
 * the previous checkpoint (train.h). Returns 0, or -1 with a message. */
int tg_trainer_save(const tg_trainer *tr, const char *path, int nmeta, const char *const *meta);
/* Restores a checkpoint written by tg_trainer_save into a trainer set up the same way (parameters of
 * the same names, shapes and dtypes; same optimizer kind and groups; same schedule kind). Everything
 * is validated before anything changes, the optimizer file's pairing id with the model file's among it:
 * on failure -1 with a message naming the file (both files for a mismatched pair) and the problem,
 * and the trainer, parameters and optimizer are left as they were. meta (may be NULL): on success the
 * opened parameter file, for your own metadata keys (tg_st_meta; tg_st_free it). */
int tg_trainer_load(tg_trainer *tr, const char *path, tg_st_file **meta);

#ifdef __cplusplus
}
#endif
#endif
