/* tools/datatask.h - the data-backed task of `tapegrad train --data FILE --target T` and of
 * `tapegrad predict`: the user's sequences (any format tg_dataset_load reads), a training / validation
 * split, normalisation fitted on the training split, shuffled mini-batches whose position a checkpoint
 * saves, the metric of each target and the baseline it must beat.
 *
 *     data_src *d = data_src_new(&(data_opts){.path = "x.npy", .labels = "y.npy", .target = "class",
 *                                             .val = 0.1, .seed = 1}, err, sizeof err);
 *     task_batch b;  data_next_batch(d, 32, &b);        // the next training batch (x, lengths, labels)
 *     data_eval ev;  data_evaluate(d, m, DATA_VAL, &ev);  // metric + loss on the validation split
 *
 * Targets (one row each in the table of datatask.c):
 *   next   forecasting: windows of --seq steps, target the I values --horizon steps after each window's
 *          last step; MSE (reported in the data's units); baseline persistence (repeat the last value).
 *          The split is chronological: the last FRACTION of the windows validate.
 *   class  one class per sequence; cross-entropy, accuracy; baseline the training split's majority class.
 *   tag    one class per step; cross-entropy over real steps, per-step accuracy; baseline the training
 *          split's majority class at each step position (the overall majority past its longest sequence).
 *   value  O real values per sequence; MSE in the data's units; baseline the training split's mean.
 * Inputs are standardised with the training split's mean / std per feature (tg_norm); regression
 * targets likewise with their own (the model learns in standard units; metrics are in data units).
 * Dimension letters: N sequences, T steps, B batch, I features, O regression outputs, C classes. */
#ifndef TG_TOOLS_DATATASK_H
#define TG_TOOLS_DATATASK_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <tapegrad/data.h>
#include <tapegrad/tensor.h>

#include <tapegrad/train.h>
#include "tools/tasks.h"

typedef struct data_opts {
    const char *path, *labels;           /* inputs, and labels (NULL: in the file or none) */
    const char *test_path, *test_labels; /* a separate test set (NULL: none) */
    const char *target;                  /* next | class | tag | value */
    long window, horizon;                /* next: steps per window (0: 20), steps ahead (0: 1) */
    double val;                          /* validation fraction in [0, 0.9] */
    uint64_t seed;                       /* of the split and of the batches */
    const char *seq_column, *label_column, *feature_columns; /* CSV; feature_columns comma-separated */
    bool idx_no_scale;                   /* IDX images: keep 0..255 */
    tg_dtype dtype;                      /* of the batches (the model's) */
    const char *norm, *ynorm;            /* stored statistics (resume, predict); NULL: fit on the training split */
    bool no_split;                       /* predict on the whole file: everything is "val", no training split */
    int64_t classes;                     /* class / tag: C of the model (predict); 0 = from the labels */
    int64_t eval_batch;                  /* sequences per piece in data_predict (0: DATA_EVAL_BATCH) */
} data_opts;

#define DATA_EVAL_BATCH 256              /* data_predict's piece when data_opts.eval_batch is 0 */

typedef struct data_src data_src;
typedef enum data_part { DATA_TRAIN, DATA_VAL, DATA_TEST } data_part;

const char *data_target_list(void);      /* "next, class, tag, value" */
bool data_target_known(const char *name);
/* Loads, splits, normalises. Returns NULL with a one-line message in err (file, line or offset, and
 * the problem; a target that does not fit the labels; too few sequences). */
data_src *data_src_new(const data_opts *o, char *err, size_t errlen);
void data_src_free(data_src *d);         /* NULL-safe */

const char *data_target_name(const data_src *d);
const char *data_target_about(const data_src *d); /* one line */
int64_t data_inputs(const data_src *d);  /* I */
int64_t data_outputs(const data_src *d); /* the model's outputs: C (class, tag) or O */
bool data_every_step(const data_src *d); /* tag */
task_loss data_loss_kind(const data_src *d);
const char *data_metric_name(const data_src *d); /* "val accuracy", ... (the part it is reported on) */
const char *data_metric_short(const data_src *d);/* "acc", "mse" (progress line, CSV columns) */
bool data_lower_better(const data_src *d);
bool data_metric_percent(const data_src *d);
const char *data_baseline_desc(const data_src *d);
/* The baseline's metric on a part (NAN if the part is empty), and its loss in training-loss units. */
double data_baseline(const data_src *d, data_part part);
double data_loss_baseline(const data_src *d);
int64_t data_size(const data_src *d, data_part part); /* sequences (windows for next); 0 if absent */
const tg_dataset *data_part_set(const data_src *d, data_part part); /* borrowed, NULL if absent */
const char *data_desc(const data_src *d);
int64_t data_epoch_steps(const data_src *d, int64_t B); /* ceil(N_train / B) */

/* The next training batch of B (a new shuffled epoch after the last one). 0 or -1 + err. */
int data_next_batch(data_src *d, int64_t B, task_batch *b, char *err, size_t errlen);
/* The batcher's position ("" before the first batch): malloc'd; and back (before any batch). */
char *data_batcher_state(const data_src *d);
int data_batcher_restore(data_src *d, int64_t B, const char *state, char *err, size_t errlen);

/* Adds one training batch's predictions (tg_model_forward output) to a running metric: *num += the
 * metric's sum over the batch (correct answers, or squared errors in data units), *den += its count. */
void data_batch_score(const data_src *d, const tg_tensor *pred, const task_batch *b, double *num, double *den);

/* The model's outputs for every sequence of a part, computed without a tape in pieces of
 * data_opts.eval_batch sequences (each piece padded to its longest and streamed one step at a time
 * through tg_model_stream_new: no allocation per step; memory beyond the outputs is bounded by the piece):
 * class C logits; tag T_n rows of C logits; value / next O values in data units. */
typedef struct data_pred {
    int64_t n, width;        /* sequences, values per row */
    int64_t *offset;         /* [n+1] first row of sequence k (class, value: k) */
    double *v;               /* [offset[n], width] */
} data_pred;
int data_predict(const data_src *d, const tg_model *m, data_part part, data_pred *out, char *err, size_t errlen);
void data_pred_clear(data_pred *o);

typedef struct data_eval {
    double metric;           /* accuracy (0..1) or MSE in data units */
    double loss;             /* in training-loss units (cross-entropy; MSE in standard units) */
    int64_t n;               /* sequences scored */
} data_eval;
/* The metric and loss of outputs against the part's labels. 0, or -1 if the part has no labels. */
int data_score(const data_src *d, data_part part, const data_pred *o, data_eval *ev);
/* data_predict + data_score. */
int data_evaluate(const data_src *d, const tg_model *m, data_part part, data_eval *ev, char *err, size_t errlen);

/* Checkpoint metadata: the options that rebuild this data source (target, files, columns, window,
 * horizon, val, the statistics, the features' names, C). Writes up to max key/value pairs into kv
 * (pointers into d, valid while d lives); returns the number of pairs. */
int data_meta(const data_src *d, const char **kv, int max);
/* The feature names of the training data, comma-separated (borrowed). */
const char *data_feature_names(const data_src *d);
#endif
