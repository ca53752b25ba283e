/* tools/tasks.h - the learning tasks of `tapegrad train`, `compare` and the main job.
 *
 *     char err[256];
 *     task *t = task_new("adding", &(task_opts){.seq = 50}, err, sizeof err);   // NULL + err on failure
 *     task_batch b;
 *     task_make_batch(t, &rng, 32, &b);               // x [T,B,I], targets; new refs / malloc'd
 *     tg_tensor *pred = tg_model_forward(m, b.x, task_every_step(t), NULL, NULL);   // tape-owned
 *     tg_backward(task_loss_of(t, pred, &b));
 *     task_batch_clear(&b);
 *     ...
 *     task_eval ev;
 *     task_evaluate(t, m, true, &ev);                  // test metric on a fixed held-out set
 *     printf("%s %.4f vs baseline %.4f\n", task_metric_name(t), ev.metric, task_metric_baseline(t));
 *     // beats_baseline (trainer.h): the error at least task_margin(t) below the baseline's
 *
 * Dimension letters: T time steps, B batch, I input size, O output size, V vocabulary.
 *
 * Every task but charlm makes its data from a generator seeded by the caller (training batches) or by
 * a fixed seed (the test set, so every run, cell and seed is judged on the same examples). Each task
 * has a loss (what training minimises), a test metric, and the baseline that metric must beat - the
 * best a model without memory could do:
 *   arith    next number of an arithmetic sequence (regression, MSE; baseline: repeat the last number)
 *   pattern  which of 4 noisy waveforms a sequence is (cross-entropy; metric accuracy, baseline 25%)
 *   adding   the adding problem: sum of the two marked numbers (MSE; baseline 0.167 = always predict 1)
 *   copy     the copy/memory task: recall 10 symbols after T blanks (cross-entropy per step;
 *            baseline 10·log 8 / (T+20): blanks right, the recalled symbols guessed)
 *   binadd   binary addition bit by bit, least significant first (per-bit BCE; tested on numbers 4x
 *            longer than trained on; metric bit error rate, baseline the carry-less XOR)
 *   charlm   next character of a text file (cross-entropy, nats/char; baseline the unigram model)
 */
#ifndef TG_TOOLS_TASKS_H
#define TG_TOOLS_TASKS_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <tapegrad/tensor.h>

#include <tapegrad/train.h>

/* The seed of every generated task's fixed test set (task_evaluate draws its batches from it). */
#define TASK_TEST_SEED 0x7e57da7aULL

typedef enum task_loss {
    TASK_LOSS_MSE, /* real targets, mean squared error */
    TASK_LOSS_CE,  /* class indices, cross-entropy from logits */
    TASK_LOSS_BCE  /* 0/1 targets, binary cross-entropy from logits */
} task_loss;

struct data_opts;      /* tools/datatask.h */
struct data_src;

typedef struct task_opts {
    long seq;          /* the task's length parameter (see task_seq_meaning); 0 = its default */
    const char *text;  /* charlm: a text file; NULL = /usr/share/common-licenses/GPL-3 or a built corpus */
    tg_dtype dtype;    /* of the tensors the batches hold (the model's dtype) */
    int64_t eval_batch;/* task_evaluate: sequences per forward (0: a whole test batch, 250 or 8 streams) */
    const struct data_opts *data; /* task "data": the user's files and target (tools/datatask.h) */
} task_opts;

/* Suggested settings that train well in a short run (used when the user does not give them). */
typedef struct task_defaults {
    long seq, hidden, batch, steps;
    double lr;
} task_defaults;

typedef struct task task;

typedef struct task_batch {
    int64_t T, B;
    tg_tensor *x;       /* [T,B,I] new ref */
    tg_tensor *target;  /* MSE/BCE: [T·B,O] (every step, time-major) or [B,O]; new ref. CE: NULL */
    int64_t *labels;    /* CE: [T·B] (every step, time-major) or [B]; malloc'd (-100: a padding step). Else NULL */
    int64_t *lengths;   /* [B] real steps of each sequence (malloc'd), or NULL: all T */
} task_batch;

typedef struct task_eval {
    double metric;      /* the test metric (task_metric_name) */
    double loss;        /* the loss on the test set, in training-loss units */
    char detail[4096];  /* human-readable extras: example predictions, sampled text, ... */
} task_eval;

const char *task_list(void);                     /* "arith, pattern, ...": every task's name, from the table */
/* The same joined by sep (" | " for a help text) into buf[size] (truncated if short). returns: buf */
char *task_list_sep(char *buf, size_t size, const char *sep);
bool task_known(const char *name);
/* Sets up a task; charlm reads its text here. Returns NULL with a one-line message in err on a bad
 * name, bad length or unreadable file. */
task *task_new(const char *name, const task_opts *opts, char *err, size_t errlen);
void task_free(task *t);                         /* NULL-safe */

const char *task_name(const task *t);
const char *task_about(const task *t);           /* one line */
task_defaults task_defaults_of(const char *name);/* zeros for an unknown name */
/* "(default: the task's: arith 32, ..., data 64)" or "(default: the task's, 32 for every task)" for
 * the --help line of a size option; which is 's' (seq), 'h' (hidden), 'b' (batch), 'l' (lr) or 't'
 * (steps; data's is "10 epochs"). Writes into buf and returns it. */
char *task_defaults_help(char *buf, size_t size, const char *what, char which);
long task_seq(const task *t);                    /* the length parameter in force */
const char *task_seq_meaning(const char *name);  /* what --seq means for this task */
int64_t task_input_size(const task *t);          /* I */
int64_t task_output_size(const task *t);         /* O */
bool task_every_step(const task *t);             /* targets at every step (else at the last one) */
bool task_every_step_of(const char *name);       /* the same by task name (false for an unknown name) */
task_loss task_loss_kind(const task *t);
double task_loss_baseline(const task *t);        /* the baseline's loss, in training-loss units */
const char *task_metric_name(const task *t);     /* "test MSE", "test accuracy", ... */
bool task_metric_lower_better(const task *t);
bool task_metric_percent(const task *t);         /* the metric is a fraction shown as a percentage */
double task_metric_baseline(const task *t);
/* How far below the baseline the error (the metric, or 1 - metric for an accuracy) must be to count
 * as beating it: error <= (1 - margin) · baseline error (beats_baseline in trainer.h). */
double task_margin(const task *t);
/* The table's rows as the registry checks of tests/test_cli.c see them (task_rows_check_all): row i of
 * task_row_count(), its mandatory fields; setup/gen/eval say whether the row has the function. */
typedef struct task_row_view {
    const char *name, *metric, *baseline_desc;
    double margin;
    bool setup, gen, eval;
} task_row_view;
int task_row_count(void);
task_row_view task_row_at(int i);                /* i in [0, task_row_count()) */
const char *task_baseline_desc(const task *t);   /* "always predict 1", ... */
/* An epoch, for --epochs: charlm one pass over the training text, the others 10,000 examples. */
int64_t task_epoch_steps(const task *t, int64_t batch);

/* A training batch of B examples drawn with rng. Returns 0, or -1 (out of memory). */
int task_make_batch(task *t, tg_rng *rng, int64_t B, task_batch *b);
void task_batch_clear(task_batch *b);            /* releases / frees and zeroes */
/* The training loss of the model's predictions (tg_model_forward with task_every_step). tape-owned. */
tg_tensor *task_loss_of(const task *t, const tg_tensor *pred, const task_batch *b);
/* The test metric and loss on the task's fixed test set (no tape is recorded). verbose fills
 * ev->detail with a few examples. Returns 0 or -1. */
int task_evaluate(task *t, const tg_model *m, bool verbose, task_eval *ev);

/* task "data": the data source (borrowed), else NULL */
struct data_src *task_data(const task *t);
/* The message of the last failed task_make_batch ("" if none). borrowed */
const char *task_error(const task *t);

/* charlm only: the vocabulary (sorted distinct bytes of the text). NULL for other tasks. */
const unsigned char *task_vocab(const task *t, int *V);
/* Samples `length` characters from a character model (input and output size V), after feeding it the
 * prime text (every character must be in vocab), through a one-row tg_model_stream_new (no tape; no
 * allocation per character). Writes prime + sample to out (NUL-terminated,
 * truncated to size). Returns 0, or -1 (a prime character outside the vocabulary, or an error). */
int charlm_sample(const tg_model *m, const unsigned char *vocab, int V, const char *prime, int length,
                  double temperature, uint64_t seed, char *out, size_t size);
/* "abc" style description of the text source ("GPL-3 (35149 chars)") for reports. */
const char *task_data_desc(const task *t);
#endif
