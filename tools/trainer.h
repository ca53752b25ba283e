/* tools/trainer.h - the training loop shared by `tapegrad train`, `compare` and the main job: batches
 * from a task, forward through the model, loss, backward (the tape), gradient clipping, an optimizer
 * step; a learning curve; a live progress line; checkpoints that resume bit for bit.
 * Each step is the library's tg_trainer_step (<tapegrad/trainer.h>), given hooks that draw the task's
 * batch (and slice it per MPI rank) and score it; this file adds the task, curves, progress lines, the
 * data tasks' epochs and early stopping, and the command's checkpoint metadata (tg_ckpt_save, train.h).
 *
 *     trainer tr;
 *     if (trainer_init(&tr, &cfg, NULL, err, sizeof err)) ...          // builds task, model, optimizer
 *     trainer_run(&tr, cfg.steps, &(progress){.mode = progress_auto()}, err, sizeof err);
 *     trainer_save(&tr, "model.safetensors", err, sizeof err);
 *     task_evaluate(tr.task, tr.model, true, &ev);
 *     trainer_free(&tr);
 *
 * Random streams: the model is initialised from `seed`; the data stream is a separate generator seeded
 * from `seed` too, so two cells trained with the same seed see exactly the same batches. */
#ifndef TG_TOOLS_TRAINER_H
#define TG_TOOLS_TRAINER_H
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include <tapegrad/optim.h>
#include <tapegrad/trainer.h>

#include <tapegrad/train.h>
#include "tools/tasks.h"

/* When a schedule steps: AUTO is every epoch on the user's data (--data), as torch users step most
 * schedules, and every step on the synthetic tasks (whose data stream has no real epochs) and for the
 * kinds torch steps per batch (onecycle, cyclic: tg_sched_spec_per_step). */
typedef enum { SCHED_AUTO = 0, SCHED_EVERY_STEP, SCHED_EVERY_EPOCH } sched_every;
/* "step" / "epoch" (AUTO: "auto"), and back (SCHED_AUTO - 1 for an unknown name) */
const char *sched_every_name(sched_every e);
int sched_every_from_name(const char *name);

typedef struct train_config {
    const char *task;        /* task name */
    const char *cell;        /* cell name */
    const char *text;        /* charlm: text file, NULL = default corpus */
    long seq, hidden, layers, batch;
    long eval_batch;         /* sequences per forward in task_evaluate (0: batch) */
    double lr;
    const char *optim;       /* an optimizer's name (tg_optim_kind_from_name) */
    double clip;             /* max gradient norm; 0 = no clipping */
    long steps;              /* total steps to reach */
    long seed;
    tg_dtype dtype;
    bool set_forget_bias;
    double forget_bias;
    double dropout;          /* between stacked layers (0: off) */
    double zoneout;          /* on every state (0: off) */
    long proj;               /* LSTM with projections: proj_size (0: none) */
    const struct data_opts *data; /* task "data": the user's files (tools/datatask.h), else NULL */
    long patience;           /* data: stop after this many epochs without a better validation metric (0: never) */
    const char *best_path;   /* data with patience: the checkpoint written at each new best epoch (may be NULL) */
    const char *sched;       /* a learning-rate schedule, "KIND[:name=value,...]" (tg_sched_from_spec); NULL: none */
    sched_every sched_every; /* when it steps */
} train_config;

/* Fills the settings the user left at 0 / NULL from the task's defaults (task_defaults_of). */
void train_config_fill_defaults(train_config *cfg);
/* true when name is an optimizer's name (tg_optim_kind_from_name); else false with "unknown
 * optimizer 'x' (known: sgd, adam, ...)" in err. */
bool optim_name_ok(const char *name, char *err, size_t errlen);

typedef struct train_curve {
    int64_t *step;           /* [n] the step at the end of each window */
    double *loss;            /* [n] mean training loss over the window */
    double *seconds;         /* [n] training time so far */
    int n, cap;
} train_curve;

/* Per-epoch figures of a data task (train: running means over the epoch's batches). */
typedef struct epoch_curve {
    int64_t *epoch;
    double *train_loss, *train_metric, *val_loss, *val_metric;
    int n, cap;
} epoch_curve;

typedef struct resume_strings resume_strings;

typedef struct trainer {
    train_config cfg;
    resume_strings *resumed; /* owned (trainer_resume): what cfg's strings point at; NULL otherwise */
    task *task;              /* owned */
    tg_model *model;            /* owned */
    tg_optim *opt;           /* owned */
    tg_trainer loop;         /* the library's step (<tapegrad/trainer.h>): its rng is the data stream (batches, masks) */
    int64_t step;            /* steps done */
    int64_t log_every;       /* steps per curve point */
    train_curve curve;
    double seconds;          /* time spent in trainer_run */
    double window_sum;       /* losses of the current window */
    int64_t window_n;
    double last_loss;
    FILE *csv;               /* borrowed: curve points are appended as they come (may be NULL) */
    bool detect_anomaly;     /* run the steps in anomaly mode: stop at the op that made the first NaN/inf */
    struct tg_dist *dist;    /* borrowed: data parallel over MPI (tools/train_dist.h); NULL = one process */
    /* data tasks: the epoch in progress, the per-epoch curve and early stopping */
    double ep_loss, ep_n, ep_num, ep_den; /* sums over the epoch's batches (loss, and the metric's parts) */
    epoch_curve epochs;
    double best_metric;      /* best validation metric so far (NAN: none yet) */
    int64_t best_epoch, bad_epochs;
    void **best_params;      /* the parameters at the best epoch (raw copies), when patience is set */
    bool stopped;            /* early stopping ended the run */
    /* the learning-rate schedule (trainer_start_sched) */
    tg_sched *sched;         /* owned; NULL: the lr stays cfg.lr */
    bool sched_per_epoch;    /* stepped at epochs' ends (plateau: on the validation metric), else after every step */
    char sched_spec[600];    /* its canonical spec (every argument), saved in checkpoints */
    double step_lr;          /* the lr of the last step taken (group 0): the logs' lr column */
} trainer;

/* Builds the task, the model (or takes `preloaded`, owning it from then on, even on failure) and the
 * optimizer. Returns 0, or -1 with a message in err. */
int trainer_init(trainer *tr, const train_config *cfg, tg_model *preloaded, char *err, size_t errlen);
void trainer_free(trainer *tr);

typedef enum { PROGRESS_OFF, PROGRESS_TTY, PROGRESS_LINES } progress_mode;
progress_mode progress_auto(void);   /* TTY when stdout is a terminal, else LINES */
typedef struct progress {
    progress_mode mode;
    const char *label;               /* printed before each line, e.g. "lstm seed 1" (may be NULL) */
} progress;

/* Creates the schedule cfg.sched over the run's cfg.steps (a resumed trainer has its own already).
 * Returns 0 (nothing to do without cfg.sched), or -1 with a message (a bad spec; plateau without a
 * validation metric or stepped per step). */
int trainer_start_sched(trainer *tr, char *err, size_t errlen);
/* Refuses (-1 + message) a run whose steps up to cfg.steps would step the schedule past its end (a
 * onecycle's total_steps, tg_sched_steps_left) before it starts, rather than failing there; resumed:
 * the checkpoint's path (the message then says so), or NULL. 0 when it fits or there is no schedule. */
int trainer_check_sched_length(const trainer *tr, const char *resumed, char *err, size_t errlen);

/* Trains until tr->step == until. Returns 0, or -1 with a message (an op failed, the loss is NaN). */
int trainer_run(trainer *tr, int64_t until, const progress *p, char *err, size_t errlen);

/* Checkpoint (model.h): parameters, optimizer, step, data stream, and the training options. */
int trainer_save(const trainer *tr, const char *path, char *err, size_t errlen);
/* Rebuilds a trainer from a checkpoint: the stored options (task, cell, sizes, optimizer, lr, clip,
 * batch, seq, seed, text) replace user's; user's steps (the total to reach) is kept. Returns 0, or -1
 * with a message. */
int trainer_resume(trainer *tr, const train_config *user, const char *path, char *err, size_t errlen);

/* "test MSE 0.0012 vs baseline 0.1667 (always predict 1): 139x lower, beats the baseline" */
void format_metric(const task *t, double metric, char *buf, size_t n);
bool beats_baseline(const task *t, double metric);
/* Was the model of the best epoch put back after early stopping (trainer_restore_best)? Returns 1
 * if restored, 0 if there was nothing to restore. */
int trainer_restore_best(trainer *tr);
/* Values shown as percentages (accuracy, bit error rate) */
double metric_display(const task *t, double metric, const char **unit);

/* "MSE", "cross-entropy", "binary cross-entropy" */
const char *loss_name(const task *t);
/* The task, model and training settings, three lines. */
void print_run_header(FILE *f, const trainer *tr, int threads);
/* The metric against its baseline, then the task's examples. */
void print_eval(FILE *f, const task *t, const task_eval *ev);
/* Can `path` be created or overwritten (its directory exists and is writable)? errno set if not. */
bool writable_path(const char *path);
#endif
