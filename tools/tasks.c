/* tools/tasks.c - data, loss, test metric and baseline of each task (see tasks.h).
 *
 * Dimension letters: T time steps, B batch, I input size, O output size, V vocabulary.
 * Batches are built in double arrays (time-major: element [t][b][i] at (t·B + b)·I + i) and converted
 * to the model's dtype once. Test sets come from a fixed seed, so every run is judged on the same
 * examples; the training stream comes from the caller's generator, whose state a checkpoint saves. */
#include "tools/tasks.h"

#include "tools/datatask.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <tapegrad/autograd.h>
#include <tapegrad/loss.h>
#include <tapegrad/ops.h>

#define DEFAULT_TEXT "/usr/share/common-licenses/GPL-3"
#define COPY_SYMBOLS 8   /* data symbols 0..7 */
#define COPY_BLANK 8
#define COPY_DELIM 9
#define COPY_LEN 10      /* symbols to remember */
#define PATTERN_CLASSES 4

typedef struct task_def task_def;

struct task {
    const task_def *def;
    long seq;                    /* the length parameter */
    int64_t eval_batch;          /* sequences per forward in evaluation (0: a whole test batch) */
    tg_dtype dtype;
    int64_t in, out;             /* I, O */
    double loss_baseline, metric_baseline;
    char data_desc[300];
    /* charlm */
    unsigned char *text;         /* owned */
    size_t n_text, n_train;      /* the first n_train bytes train, the rest test */
    unsigned char vocab[256];
    int V;
    int index[256];              /* byte -> vocabulary index, -1 if absent */
    /* data */
    data_src *data;              /* owned */
    const data_opts *data_opts;  /* borrowed, for the setup */
    char err[512];               /* the last failed batch */
};

/* Fills b for T_param (the task's length parameter). */
typedef int (*gen_fn)(task *t, tg_rng *rng, int64_t B, long T_param, task_batch *b);
typedef int (*eval_fn)(task *t, const tg_model *m, bool verbose, task_eval *ev);

/* Sets what depends on the length parameter t->seq (already range-checked): t->in, t->out and the
 * baselines; charlm reads its text here. Returns 0, or -1 with a one-line message in err. */
typedef int (*setup_fn)(task *t, const char *text, char *err, size_t errlen);

/* One task: everything about it is its row in g_tasks (bottom of this file) and the functions the
 * row names. Adding a task: gen_/eval_/setup_ functions beside the others, one row, and a test in
 * tests/test_cli.c that a short run beats the baseline by the row's margin (recipe: docs/design.md,
 * "Adding a task"). Names, the list in messages and the --task help are made from the rows. */
struct task_def {
    const char *name;
    const char *about;            /* one line */
    const char *seq_meaning;      /* what --seq means */
    long min_seq, max_seq;        /* the range --seq must be in */
    task_loss loss;
    bool every_step;              /* targets at every step (else at the last one) */
    task_defaults defaults;       /* seq, hidden, batch, steps, lr */
    const char *metric, *baseline_desc;
    bool lower_better;            /* the metric is an error or a loss (else an accuracy) */
    bool percent;                 /* the metric is a fraction, shown as a percentage (accuracy, error rate) */
    /* "beats the baseline" means the error (the metric, or 1 - metric for an accuracy) is at least
     * this fraction below the baseline's: error <= (1 - margin) · baseline error. A margin keeps a
     * model that learned nothing from passing on noise (pattern after 1 step: 26.7 % vs 25 %). */
    double margin;
    setup_fn setup;
    gen_fn gen;
    eval_fn eval;
};

/* ---- small helpers ---------------------------------------------------------------------------------- */

static double uniform(tg_rng *r, double lo, double hi) { return lo + (hi - lo) * tg_rng_uniform(r); }

/* Allocates the double arrays of a batch: x [T,B,I], and targets [rows, O] or labels [rows]. */
typedef struct raw_batch {
    int64_t T, B, I, O, rows;
    double *x, *y;
    int64_t *labels;
} raw_batch;

static int raw_alloc(const task *t, int64_t T, int64_t B, raw_batch *r) {
    memset(r, 0, sizeof *r);
    r->T = T;
    r->B = B;
    r->I = t->in;
    r->O = t->out;
    r->rows = t->def->every_step ? T * B : B;
    r->x = calloc((size_t)(T * B * t->in), sizeof *r->x);
    if (t->def->loss == TASK_LOSS_CE) r->labels = calloc((size_t)r->rows, sizeof *r->labels);
    else r->y = calloc((size_t)(r->rows * t->out), sizeof *r->y);
    if (!r->x || (!r->labels && !r->y)) {
        free(r->x);
        free(r->y);
        free(r->labels);
        return -1;
    }
    return 0;
}

static int raw_finish(const task *t, raw_batch *r, task_batch *b) {
    memset(b, 0, sizeof *b);
    b->T = r->T;
    b->B = r->B;
    b->x = tg_from_f64(t->dtype, TG_SHAPE(r->T, r->B, r->I), r->x);
    if (r->y) b->target = tg_from_f64(t->dtype, TG_SHAPE(r->rows, r->O), r->y);
    b->labels = r->labels;
    free(r->x);
    free(r->y);
    if (!b->x || (r->y && !b->target)) {
        task_batch_clear(b);
        return -1;
    }
    return 0;
}

void task_batch_clear(task_batch *b) {
    if (!b) return;
    tg_release(b->x);
    tg_release(b->target);
    free(b->labels);
    free(b->lengths);
    memset(b, 0, sizeof *b);
}

/* Steps per forward call in evaluation: the state is carried from one window to the next. */
#define EVAL_WINDOW 256

/* The model's outputs for x [T,B,I] as doubles into out (rows time-major (t·B + b) for every-step
 * tasks, else b), computed with no tape (no-grad) in pieces of at most t->eval_batch sequences (0: all
 * B) and EVAL_WINDOW steps, the state carried across windows and every piece's results released
 * (tg_tape_reset) before the next: memory is bounded by eval_batch x EVAL_WINDOW, not by B x T. The
 * per-element arithmetic is the one of a single whole forward. Returns 0 or -1. */
static int predict_pieces(const tg_model *m, const task *t, const tg_tensor *x, double *out) {
    int64_t T = tg_dim(x, 0), B = tg_dim(x, 1), I = tg_dim(x, 2), O = t->out;
    int64_t per = t->eval_batch > 0 && t->eval_batch < B ? t->eval_batch : B;
    size_t item = tg_itemsize(tg_dtype_of(x));
    const unsigned char *src = tg_cdata(x);
    bool every = t->def->every_step;
    int rc = 0;
    for (int64_t b0 = 0; b0 < B && rc == 0; b0 += per) {
        int64_t nb = B - b0 < per ? B - b0 : per;
        tg_rnn_carry carry = {0};
        for (int64_t t0 = 0; t0 < T && rc == 0; t0 += EVAL_WINDOW) {
            int64_t nt = T - t0 < EVAL_WINDOW ? T - t0 : EVAL_WINDOW;
            tg_tensor *xc = tg_empty(tg_dtype_of(x), TG_SHAPE(nt, nb, I)); /* x[t0:t0+nt, b0:b0+nb, :] */
            if (xc) {
                unsigned char *dst = tg_data(xc);
                for (int64_t s = 0; s < nt; s++)
                    memcpy(dst + (size_t)(s * nb * I) * item, src + (size_t)(((t0 + s) * B + b0) * I) * item,
                           (size_t)(nb * I) * item);
            }
            tg_no_grad_begin();
            tg_tensor *p = xc ? tg_model_forward(m, xc, every, &carry, NULL) : NULL; /* [nt·nb,O] or [nb,O] */
            tg_tensor *d = p ? tg_to_dtype(p, TG_F64) : NULL;
            tg_no_grad_end();
            if (!d) rc = -1;
            else if (every)
                for (int64_t s = 0; s < nt; s++)
                    memcpy(out + ((t0 + s) * B + b0) * O, tg_f64(d) + s * nb * O, (size_t)(nb * O) * sizeof *out);
            else if (t0 + nt == T)
                memcpy(out + b0 * O, tg_f64(d), (size_t)(nb * O) * sizeof *out);
            tg_release(d);
            tg_release(xc);
            tg_tape_reset();
        }
        tg_rnn_carry_clear(&carry);
    }
    return rc;
}

/* The model's outputs for a batch, as doubles [rows, O] (malloc'd), computed without a tape: with the
 * caller's carry (a stream continued across calls) in one forward, else by predict_pieces. */
static double *predict(const tg_model *m, const task *t, const tg_tensor *x, tg_rnn_carry *carry) {
    int64_t rows = (t->def->every_step ? tg_dim(x, 0) : 1) * tg_dim(x, 1);
    double *out = malloc((size_t)(rows * t->out) * sizeof *out);
    if (!out) return NULL;
    if (!carry) {
        if (predict_pieces(m, t, x, out) == 0) return out;
        free(out);
        return NULL;
    }
    tg_no_grad_begin();
    tg_tensor *p = tg_model_forward(m, x, t->def->every_step, carry, NULL);
    tg_tensor *d = p ? tg_to_dtype(p, TG_F64) : NULL;
    if (d) memcpy(out, tg_f64(d), (size_t)(rows * t->out) * sizeof *out);
    else { free(out); out = NULL; }
    tg_release(d);
    tg_no_grad_end();
    tg_tape_reset();
    return out;
}

/* -log softmax(logits)[label] for one row of O logits */
static double row_ce(const double *logits, int64_t O, int64_t label) {
    double mx = logits[0];
    for (int64_t k = 1; k < O; k++) mx = logits[k] > mx ? logits[k] : mx;
    double s = 0;
    for (int64_t k = 0; k < O; k++) s += exp(logits[k] - mx);
    return mx + log(s) - logits[label];
}

static int64_t row_argmax(const double *v, int64_t n) {
    int64_t best = 0;
    for (int64_t k = 1; k < n; k++)
        if (v[k] > v[best]) best = k;
    return best;
}

/* binary cross-entropy from a logit, stable: softplus(x) - x·y */
static double bce(double x, double y) { return (x > 0 ? x + log1p(exp(-x)) : log1p(exp(x))) - x * y; }

#define APPEND(ev, ...)                                                                                        \
    do {                                                                                                       \
        size_t used_ = strlen((ev)->detail);                                                                   \
        if (used_ < sizeof (ev)->detail) snprintf((ev)->detail + used_, sizeof (ev)->detail - used_, __VA_ARGS__); \
    } while (0)

/* ---- arith: next number of an arithmetic sequence ---------------------------------------------------- */

/* x_t = a + t·d (t = 0..T-1), target a + T·d; a ~ U(-1, 1), d ~ U(-0.3, 0.3).
 * Baseline "repeat the last number": MSE = E[d²] = 0.3²/3 = 0.03. */
#define ARITH_D 0.3

static int gen_arith(task *t, tg_rng *rng, int64_t B, long T, task_batch *b) {
    raw_batch r;
    if (raw_alloc(t, T, B, &r)) return -1;
    for (int64_t i = 0; i < B; i++) {
        double a = uniform(rng, -1, 1), d = uniform(rng, -ARITH_D, ARITH_D);
        for (int64_t s = 0; s < T; s++) r.x[s * B + i] = a + (double)s * d;
        r.y[i] = a + (double)T * d;
    }
    return raw_finish(t, &r, b);
}

static int eval_arith(task *t, const tg_model *m, bool verbose, task_eval *ev) {
    tg_rng rng;
    tg_rng_seed(&rng, TASK_TEST_SEED);
    double se = 0;
    int64_t n = 0;
    for (int rep = 0; rep < 8; rep++) {
        task_batch b;
        if (gen_arith(t, &rng, 250, t->seq, &b)) return -1;
        double *p = predict(m, t, b.x, NULL);
        if (!p) { task_batch_clear(&b); return -1; }
        for (int64_t i = 0; i < b.B; i++) {
            double e = p[i] - tg_get(b.target, i);
            se += e * e;
            n++;
            if (verbose && rep == 0 && i < 4) {
                int64_t T = b.T;
                APPEND(ev, "  %8.4f %8.4f %8.4f ... %8.4f  -> predicted %8.4f   (true next %8.4f)\n",
                       tg_get(b.x, 0 * b.B + i), tg_get(b.x, 1 * b.B + i), tg_get(b.x, 2 * b.B + i),
                       tg_get(b.x, (T - 1) * b.B + i), p[i], tg_get(b.target, i));
            }
        }
        free(p);
        task_batch_clear(&b);
    }
    ev->metric = ev->loss = se / (double)n;
    return 0;
}

/* ---- pattern: classify a noisy waveform ----------------------------------------------------------- */

static const char *const pattern_names[PATTERN_CLASSES] = {"sine", "square", "sawtooth", "triangle"};

/* x_t = A·w(t/P + φ) + N(0, 0.1²), w one of 4 shapes, P ~ U(4, 16), φ ~ U(0, 1), A ~ U(0.5, 1.5). */
static int gen_pattern(task *t, tg_rng *rng, int64_t B, long T, task_batch *b) {
    raw_batch r;
    if (raw_alloc(t, T, B, &r)) return -1;
    for (int64_t i = 0; i < B; i++) {
        int64_t cls = (int64_t)tg_rng_below(rng, PATTERN_CLASSES);
        double P = uniform(rng, 4, 16), phi = tg_rng_uniform(rng), A = uniform(rng, 0.5, 1.5);
        for (int64_t s = 0; s < T; s++) {
            double u = (double)s / P + phi;
            u -= floor(u);
            double w = cls == 0 ? sin(2 * M_PI * u) : cls == 1 ? (u < 0.5 ? 1 : -1) : cls == 2 ? 2 * u - 1
                                                                                                 : (u < 0.5 ? 4 * u - 1 : 3 - 4 * u);
            r.x[s * B + i] = A * w + 0.1 * tg_rng_normal(rng);
        }
        r.labels[i] = cls;
    }
    return raw_finish(t, &r, b);
}

static int eval_pattern(task *t, const tg_model *m, bool verbose, task_eval *ev) {
    tg_rng rng;
    tg_rng_seed(&rng, TASK_TEST_SEED);
    int64_t confusion[PATTERN_CLASSES][PATTERN_CLASSES] = {{0}}, n = 0, right = 0;
    double ce = 0;
    for (int rep = 0; rep < 8; rep++) {
        task_batch b;
        if (gen_pattern(t, &rng, 250, t->seq, &b)) return -1;
        double *p = predict(m, t, b.x, NULL);
        if (!p) { task_batch_clear(&b); return -1; }
        for (int64_t i = 0; i < b.B; i++) {
            int64_t guess = row_argmax(p + i * t->out, t->out);
            confusion[b.labels[i]][guess]++;
            right += guess == b.labels[i];
            ce += row_ce(p + i * t->out, t->out, b.labels[i]);
            n++;
        }
        free(p);
        task_batch_clear(&b);
    }
    ev->metric = (double)right / (double)n;
    ev->loss = ce / (double)n;
    if (verbose) {
        APPEND(ev, "  confusion (rows: true class, columns: predicted)\n  %-9s", "");
        for (int k = 0; k < PATTERN_CLASSES; k++) APPEND(ev, " %9s", pattern_names[k]);
        APPEND(ev, "\n");
        for (int c = 0; c < PATTERN_CLASSES; c++) {
            APPEND(ev, "  %-9s", pattern_names[c]);
            for (int k = 0; k < PATTERN_CLASSES; k++) APPEND(ev, " %9lld", (long long)confusion[c][k]);
            APPEND(ev, "\n");
        }
    }
    return 0;
}

/* ---- adding: the adding problem (Hochreiter & Schmidhuber 1997; Le et al. 2015's form) -------------- */

/* Two inputs per step: a value ~ U(0, 1) and a marker; one marker in the first half, one in the second;
 * target: the sum of the two marked values. Always predicting 1 gives MSE Var(u1 + u2) = 1/6. */
static int gen_adding(task *t, tg_rng *rng, int64_t B, long T, task_batch *b) {
    raw_batch r;
    if (raw_alloc(t, T, B, &r)) return -1;
    int64_t half = T / 2;
    for (int64_t i = 0; i < B; i++) {
        for (int64_t s = 0; s < T; s++) r.x[(s * B + i) * 2] = tg_rng_uniform(rng);
        int64_t m1 = (int64_t)tg_rng_below(rng, (uint64_t)half);
        int64_t m2 = half + (int64_t)tg_rng_below(rng, (uint64_t)(T - half));
        r.x[(m1 * B + i) * 2 + 1] = 1;
        r.x[(m2 * B + i) * 2 + 1] = 1;
        r.y[i] = r.x[(m1 * B + i) * 2] + r.x[(m2 * B + i) * 2];
    }
    return raw_finish(t, &r, b);
}

static int eval_adding(task *t, const tg_model *m, bool verbose, task_eval *ev) {
    tg_rng rng;
    tg_rng_seed(&rng, TASK_TEST_SEED);
    double se = 0;
    int64_t n = 0;
    for (int rep = 0; rep < 8; rep++) {
        task_batch b;
        if (gen_adding(t, &rng, 250, t->seq, &b)) return -1;
        double *p = predict(m, t, b.x, NULL);
        if (!p) { task_batch_clear(&b); return -1; }
        for (int64_t i = 0; i < b.B; i++) {
            double y = tg_get(b.target, i), e = p[i] - y;
            se += e * e;
            n++;
            if (verbose && rep == 0 && i < 6) {
                double v[2] = {0, 0};
                int64_t at[2] = {0, 0};
                int k = 0;
                for (int64_t s = 0; s < b.T && k < 2; s++)
                    if (tg_get(b.x, (s * b.B + i) * 2 + 1) > 0.5) { v[k] = tg_get(b.x, (s * b.B + i) * 2); at[k++] = s; }
                APPEND(ev, "  x[%3lld] + x[%3lld] = %.3f + %.3f = %.3f   predicted %.3f   (error %+.3f)\n",
                       (long long)at[0], (long long)at[1], v[0], v[1], y, p[i], e);
            }
        }
        free(p);
        task_batch_clear(&b);
    }
    ev->metric = ev->loss = se / (double)n;
    return 0;
}

/* ---- copy: the copy/memory task (Hochreiter & Schmidhuber 1997; Arjovsky et al. 2016's form) ------- */

/* Length T+20, one-hot over 10 symbols: 10 data symbols from 0..7, T-1 blanks, the delimiter, 10 blanks.
 * Target: T+10 blanks, then the 10 data symbols. A memoryless model gets the blanks right and guesses
 * the 10 symbols: cross-entropy 10·log 8 / (T+20) per step. */
static int gen_copy(task *t, tg_rng *rng, int64_t B, long T, task_batch *b) {
    int64_t len = T + 2 * COPY_LEN;
    raw_batch r;
    if (raw_alloc(t, len, B, &r)) return -1;
    for (int64_t i = 0; i < B; i++) {
        int sym[COPY_LEN];
        for (int k = 0; k < COPY_LEN; k++) sym[k] = (int)tg_rng_below(rng, COPY_SYMBOLS);
        for (int64_t s = 0; s < len; s++) {
            int in = s < COPY_LEN ? sym[s] : s == COPY_LEN + T - 1 ? COPY_DELIM : COPY_BLANK;
            r.x[(s * B + i) * t->in + in] = 1;
            r.labels[s * B + i] = s >= len - COPY_LEN ? sym[s - (len - COPY_LEN)] : COPY_BLANK;
        }
    }
    return raw_finish(t, &r, b);
}

static int eval_copy(task *t, const tg_model *m, bool verbose, task_eval *ev) {
    tg_rng rng;
    tg_rng_seed(&rng, TASK_TEST_SEED);
    double ce = 0;
    int64_t n = 0, recalled = 0, n_recall = 0, shown = 0;
    for (int rep = 0; rep < 4; rep++) {
        task_batch b;
        if (gen_copy(t, &rng, 250, t->seq, &b)) return -1;
        double *p = predict(m, t, b.x, NULL);
        if (!p) { task_batch_clear(&b); return -1; }
        int64_t len = b.T;
        for (int64_t s = 0; s < len; s++)
            for (int64_t i = 0; i < b.B; i++) {
                int64_t row = s * b.B + i;
                ce += row_ce(p + row * t->out, t->out, b.labels[row]);
                n++;
                if (s >= len - COPY_LEN) {
                    n_recall++;
                    recalled += row_argmax(p + row * t->out, t->out) == b.labels[row];
                }
            }
        for (int64_t i = 0; verbose && i < b.B && shown < 4; i++, shown++) {
            APPEND(ev, "  shown ");
            for (int k = 0; k < COPY_LEN; k++) APPEND(ev, "%lld", (long long)b.labels[(len - COPY_LEN + k) * b.B + i]);
            APPEND(ev, ", then %ld blank steps and the delimiter; recalled ", t->seq - 1);
            for (int k = 0; k < COPY_LEN; k++) {
                int64_t g = row_argmax(p + ((len - COPY_LEN + k) * b.B + i) * t->out, t->out);
                APPEND(ev, "%c", g < COPY_SYMBOLS ? (char)('0' + g) : '_');
            }
            APPEND(ev, "\n");
        }
        free(p);
        task_batch_clear(&b);
    }
    ev->metric = ev->loss = ce / (double)n;
    if (verbose)
        APPEND(ev, "  recalled symbols right: %.1f%% (chance %.1f%%)\n", 100.0 * (double)recalled / (double)n_recall,
               100.0 / COPY_SYMBOLS);
    return 0;
}

/* ---- binadd: binary addition, one bit per step ------------------------------------------------------ */

/* Inputs at step s: bit s of a and of b (least significant first; zeros at the extra last step),
 * target: bit s of a + b. n-bit numbers take n+1 steps. */
static int gen_binadd(task *t, tg_rng *rng, int64_t B, long nbits, task_batch *b) {
    int64_t T = nbits + 1;
    raw_batch r;
    if (raw_alloc(t, T, B, &r)) return -1;
    for (int64_t i = 0; i < B; i++) {
        int carry = 0;
        for (int64_t s = 0; s < T; s++) {
            int x = s < nbits ? (int)tg_rng_below(rng, 2) : 0, y = s < nbits ? (int)tg_rng_below(rng, 2) : 0;
            int sum = x + y + carry;
            carry = sum >> 1;
            r.x[(s * B + i) * 2] = x;
            r.x[(s * B + i) * 2 + 1] = y;
            r.y[s * B + i] = sum & 1;
        }
    }
    return raw_finish(t, &r, b);
}

static long binadd_test_bits(const task *t) { return 4 * t->seq; }

/* The test set: numbers 4x longer than trained on. The memoryless baseline predicts a XOR b (right
 * whenever no carry comes in); its error rate is measured on the same test set. */
static int eval_binadd_set(task *t, const tg_model *m, bool verbose, task_eval *ev, double *xor_err) {
    tg_rng rng;
    tg_rng_seed(&rng, TASK_TEST_SEED);
    long nb = binadd_test_bits(t);
    int64_t wrong = 0, xor_wrong = 0, bits = 0, sums_right = 0, sums = 0, shown = 0;
    double loss = 0;
    for (int rep = 0; rep < 4; rep++) {
        task_batch b;
        if (gen_binadd(t, &rng, 250, nb, &b)) return -1;
        double *p = m ? predict(m, t, b.x, NULL) : NULL;
        if (m && !p) { task_batch_clear(&b); return -1; }
        for (int64_t i = 0; i < b.B; i++) {
            bool all = true;
            for (int64_t s = 0; s < b.T; s++) {
                int64_t row = s * b.B + i;
                double y = tg_get(b.target, row);
                int xr = ((int)tg_get(b.x, row * 2) ^ (int)tg_get(b.x, row * 2 + 1));
                xor_wrong += xr != (int)y;
                bits++;
                if (p) {
                    int g = p[row] > 0;
                    wrong += g != (int)y;
                    all &= g == (int)y;
                    loss += bce(p[row], y);
                }
            }
            sums++;
            sums_right += all;
            if (p && verbose && shown < 3 && b.T <= 64) {
                /* print a, b, a+b and the prediction, most significant bit first */
                char la[80], lb[80], ls[80], lp[80];
                int64_t T = b.T;
                for (int64_t s = 0; s < T; s++) {
                    int64_t row = (T - 1 - s) * b.B + i;
                    la[s] = (char)('0' + (int)tg_get(b.x, row * 2));
                    lb[s] = (char)('0' + (int)tg_get(b.x, row * 2 + 1));
                    ls[s] = (char)('0' + (int)tg_get(b.target, row));
                    lp[s] = (char)('0' + (p[row] > 0));
                }
                la[T] = lb[T] = ls[T] = lp[T] = 0;
                APPEND(ev, "    %s\n  + %s\n  = %s\n    %s predicted %s\n\n", la, lb, ls, lp,
                       strcmp(ls, lp) == 0 ? "(right)" : "(WRONG)");
                shown++;
            }
        }
        free(p);
        task_batch_clear(&b);
    }
    if (xor_err) *xor_err = (double)xor_wrong / (double)bits;
    if (m) {
        ev->metric = (double)wrong / (double)bits;
        ev->loss = loss / (double)bits;
        if (verbose)
            APPEND(ev, "  whole %ld-bit sums right: %lld of %lld (trained on %ld-bit numbers)\n", nb,
                   (long long)sums_right, (long long)sums, t->seq);
    }
    return 0;
}

static int eval_binadd(task *t, const tg_model *m, bool verbose, task_eval *ev) {
    return eval_binadd_set(t, m, verbose, ev, NULL);
}

/* ---- charlm: character-level language model --------------------------------------------------------- */

/* Inputs: one-hot characters; targets: the next character. Training windows are drawn at random from
 * the first 90% of the text; the test metric runs over the last 10% in streams with the state carried
 * across chunks. Baseline: the unigram model (character frequencies of the training part, add-one). */
static int gen_charlm(task *t, tg_rng *rng, int64_t B, long T, task_batch *b) {
    raw_batch r;
    if (raw_alloc(t, T, B, &r)) return -1;
    for (int64_t i = 0; i < B; i++) {
        size_t start = (size_t)tg_rng_below(rng, (uint64_t)(t->n_train - (size_t)T - 1));
        for (int64_t s = 0; s < T; s++) {
            r.x[(s * B + i) * t->in + t->index[t->text[start + (size_t)s]]] = 1;
            r.labels[s * B + i] = t->index[t->text[start + (size_t)s + 1]];
        }
    }
    return raw_finish(t, &r, b);
}

#define CHARLM_TEST_MAX 20000
#define CHARLM_STREAMS 8

static int eval_charlm(task *t, const tg_model *m, bool verbose, task_eval *ev) {
    const unsigned char *test = t->text + t->n_train;
    size_t n_test = t->n_text - t->n_train;
    if (n_test > CHARLM_TEST_MAX) n_test = CHARLM_TEST_MAX;
    int64_t S = CHARLM_STREAMS, per = (int64_t)(n_test - 1) / S, T = t->seq;
    double ce = 0;
    int64_t n = 0;
    tg_rnn_carry carry = {0};
    int rc = 0;
    for (int64_t pos = 0; pos < per && rc == 0; pos += T) {
        int64_t len = pos + T <= per ? T : per - pos;
        double *x = calloc((size_t)(len * S * t->in), sizeof *x);
        if (!x) { rc = -1; break; }
        for (int64_t s = 0; s < len; s++)
            for (int64_t i = 0; i < S; i++) x[(s * S + i) * t->in + t->index[test[i * per + pos + s]]] = 1;
        tg_tensor *xt = tg_from_f64(t->dtype, TG_SHAPE(len, S, t->in), x);
        free(x);
        double *p = xt ? predict(m, t, xt, &carry) : NULL;
        tg_release(xt);
        if (!p) { rc = -1; break; }
        for (int64_t s = 0; s < len; s++)
            for (int64_t i = 0; i < S; i++) {
                ce += row_ce(p + (s * S + i) * t->out, t->out, t->index[test[i * per + pos + s + 1]]);
                n++;
            }
        free(p);
    }
    tg_rnn_carry_clear(&carry);
    if (rc) return -1;
    ev->metric = ev->loss = ce / (double)n;
    if (verbose) {
        char sample[400];
        if (charlm_sample(m, t->vocab, t->V, "The ", 300, 0.7, 1, sample, sizeof sample) == 0)
            APPEND(ev, "  sample (temperature 0.7, primed with \"The \"):\n  ----\n%s\n  ----\n", sample);
    }
    return 0;
}

int charlm_sample(const tg_model *m, const unsigned char *vocab, int V, const char *prime, int length,
                  double temperature, uint64_t seed, char *out, size_t size) {
    int index[256];
    for (int k = 0; k < 256; k++) index[k] = -1;
    for (int k = 0; k < V; k++) index[vocab[k]] = k;
    size_t np = strlen(prime);
    if (np == 0 || V != m->cfg.input_size || V != m->cfg.output_size) return -1;
    for (size_t k = 0; k < np; k++)
        if (index[(unsigned char)prime[k]] < 0) return -1;
    tg_rng rng;
    tg_rng_seed(&rng, seed);
    size_t used = 0;
    /* one row streamed one character at a time (no tape): the prime, then each pick fed back */
    tg_rnn_stream *st = tg_model_stream_new(m, 1);
    tg_tensor *x = tg_zeros(m->cfg.dtype, TG_SHAPE(1, V));
    double *prob = malloc((size_t)V * sizeof *prob);
    const tg_tensor *logits = NULL; /* [1, V] */
    int rc = st && x && prob ? 0 : -1;
    for (size_t k = 0; k < np && !rc; k++) {
        tg_fill_(x, 0);
        tg_set(x, index[(unsigned char)prime[k]], 1);
        if (!(logits = tg_rnn_stream_step(st, x))) rc = -1;
        if (used + 1 < size) out[used++] = prime[k];
    }
    for (int c = 0; c < length && !rc; c++) {
        double mx = -INFINITY, sum = 0;
        for (int k = 0; k < V; k++) {
            prob[k] = tg_get(logits, k) / temperature;
            mx = prob[k] > mx ? prob[k] : mx;
        }
        for (int k = 0; k < V; k++) sum += (prob[k] = exp(prob[k] - mx));
        double u = tg_rng_uniform(&rng) * sum;
        int pick = V - 1;
        for (int k = 0; k < V; k++) {
            if (u < prob[k]) { pick = k; break; }
            u -= prob[k];
        }
        if (used + 1 < size) out[used++] = (char)vocab[pick];
        if (c + 1 < length) {
            tg_fill_(x, 0);
            tg_set(x, pick, 1);
            if (!(logits = tg_rnn_stream_step(st, x))) rc = -1;
        }
    }
    if (size) out[used < size ? used : size - 1] = 0;
    tg_rnn_stream_free(st);
    tg_release(x);
    free(prob);
    return rc;
}

/* A small corpus for systems without GPL-3: seeded sentences from a toy grammar. */
static unsigned char *build_corpus(size_t *n) {
    static const char *const subj[] = {"the cat", "a dog", "the old man", "my sister", "the teacher", "a bird",
                                       "the children", "our neighbour", "the farmer", "a small fox"};
    static const char *const verb[] = {"sees", "likes", "finds", "follows", "watches", "helps", "calls", "draws"};
    static const char *const obj[] = {"the red ball", "a green tree", "the river", "an apple", "the moon",
                                      "a quiet house", "the long road", "some bread", "the garden", "a letter"};
    static const char *const tail[] = {"", " in the morning", " after dinner", " near the bridge", " every day",
                                       " with great care", " again"};
    size_t cap = 60000, len = 0;
    unsigned char *s = malloc(cap + 256);
    if (!s) return NULL;
    tg_rng rng;
    tg_rng_seed(&rng, 42);
    while (len < cap) {
        char sent[200];
        int k = snprintf(sent, sizeof sent, "%s %s %s%s%s", subj[tg_rng_below(&rng, 10)], verb[tg_rng_below(&rng, 8)],
                         obj[tg_rng_below(&rng, 10)], tail[tg_rng_below(&rng, 7)],
                         tg_rng_below(&rng, 4) ? ". " : ".\n");
        sent[0] = (char)(sent[0] - 'a' + 'A');
        memcpy(s + len, sent, (size_t)k);
        len += (size_t)k;
    }
    *n = len;
    return s;
}

static int setup_charlm(task *t, const char *path, char *err, size_t errlen) {
    const char *src = path;
    if (!path) {
        FILE *probe = fopen(DEFAULT_TEXT, "rb");
        if (probe) { fclose(probe); src = DEFAULT_TEXT; }
    }
    if (src) {
        FILE *f = fopen(src, "rb");
        if (!f) { snprintf(err, errlen, "cannot read text file '%s': %s", src, strerror(errno)); return -1; }
        size_t cap = 1 << 16, n = 0;
        unsigned char *buf = malloc(cap);
        while (buf) {
            size_t k = fread(buf + n, 1, cap - n, f);
            n += k;
            if (n < cap) break;
            if (cap >= (size_t)1 << 30) break; /* 1 GiB is plenty */
            unsigned char *nb = realloc(buf, cap * 2);
            if (!nb) { free(buf); buf = NULL; break; }
            buf = nb;
            cap *= 2;
        }
        bool bad = ferror(f);
        fclose(f);
        if (!buf || bad) {
            free(buf);
            snprintf(err, errlen, "cannot read text file '%s'%s", src, bad ? ": read error" : ": out of memory");
            return -1;
        }
        t->text = buf;
        t->n_text = n;
        const char *base = strrchr(src, '/');
        snprintf(t->data_desc, sizeof t->data_desc, "%s (%zu chars)", base ? base + 1 : src, n);
    } else {
        t->text = build_corpus(&t->n_text);
        if (!t->text) { snprintf(err, errlen, "out of memory"); return -1; }
        snprintf(t->data_desc, sizeof t->data_desc, "built-in toy-grammar corpus (%zu chars)", t->n_text);
    }
    size_t need = 20 * ((size_t)t->seq + 1);
    if (t->n_text < need || t->n_text < 200) {
        snprintf(err, errlen, "text file '%s' is too short: %zu bytes, need at least %zu for --seq %ld", src ? src : "?",
                 t->n_text, need < 200 ? 200 : need, t->seq);
        return -1;
    }
    t->n_train = t->n_text * 9 / 10;
    bool seen[256] = {false};
    for (size_t k = 0; k < t->n_text; k++) seen[t->text[k]] = true;
    t->V = 0;
    for (int c = 0; c < 256; c++) {
        t->index[c] = seen[c] ? t->V : -1;
        if (seen[c]) t->vocab[t->V++] = (unsigned char)c;
    }
    t->in = t->out = t->V;
    /* unigram baseline: add-one frequencies of the training part, cross-entropy on the test part */
    double count[256] = {0}, total = 0;
    for (size_t k = 0; k < t->n_train; k++) count[t->index[t->text[k]]] += 1;
    for (int k = 0; k < t->V; k++) total += (count[k] += 1);
    size_t end = t->n_train + CHARLM_TEST_MAX < t->n_text ? t->n_train + CHARLM_TEST_MAX : t->n_text;
    double ce = 0;
    for (size_t k = t->n_train + 1; k < end; k++) ce -= log(count[t->index[t->text[k]]] / total);
    t->loss_baseline = t->metric_baseline = ce / (double)(end - t->n_train - 1);
    return 0;
}

/* ---- setups: sizes and baselines ---------------------------------------------------------------------- */

static int setup_arith(task *t, const char *text, char *err, size_t errlen) {
    (void)text; (void)err; (void)errlen;
    t->in = 1, t->out = 1;
    t->loss_baseline = t->metric_baseline = ARITH_D * ARITH_D / 3;
    return 0;
}

static int setup_pattern(task *t, const char *text, char *err, size_t errlen) {
    (void)text; (void)err; (void)errlen;
    t->in = 1, t->out = PATTERN_CLASSES;
    t->loss_baseline = log(PATTERN_CLASSES);
    t->metric_baseline = 1.0 / PATTERN_CLASSES;
    return 0;
}

static int setup_adding(task *t, const char *text, char *err, size_t errlen) {
    (void)text; (void)err; (void)errlen;
    t->in = 2, t->out = 1;
    t->loss_baseline = t->metric_baseline = 1.0 / 6.0;
    return 0;
}

static int setup_copy(task *t, const char *text, char *err, size_t errlen) {
    (void)text; (void)err; (void)errlen;
    t->in = COPY_SYMBOLS + 2, t->out = COPY_SYMBOLS + 2;
    t->loss_baseline = t->metric_baseline = COPY_LEN * log(COPY_SYMBOLS) / (double)(t->seq + 2 * COPY_LEN);
    return 0;
}

static int setup_binadd(task *t, const char *text, char *err, size_t errlen) {
    (void)text;
    t->in = 2, t->out = 1;
    t->loss_baseline = log(2.0);
    double xor_err = 0.5;
    if (eval_binadd_set(t, NULL, false, NULL, &xor_err)) { snprintf(err, errlen, "out of memory"); return -1; }
    t->metric_baseline = xor_err;
    return 0;
}

/* ---- data: the user's files (tools/datatask.c) ------------------------------------------------------ */

static int gen_data(task *t, tg_rng *rng, int64_t B, long T, task_batch *b) {
    (void)rng, (void)T; /* the batcher has its own seeded generator, saved in checkpoints */
    return data_next_batch(t->data, B, b, t->err, sizeof t->err);
}

static int eval_data(task *t, const tg_model *m, bool verbose, task_eval *ev) {
    data_part part = data_size(t->data, DATA_TEST) ? DATA_TEST : DATA_VAL;
    data_eval de;
    if (!data_size(t->data, part)) {
        snprintf(t->err, sizeof t->err, "no validation data (--val 0 and no --test-data)");
        return -1;
    }
    if (data_evaluate(t->data, m, part, &de, t->err, sizeof t->err)) return -1;
    ev->metric = de.metric;
    ev->loss = de.loss;
    if (verbose) {
        APPEND(ev, "  on %lld %s %s; loss %.5g (%s)\n", (long long)de.n, part == DATA_TEST ? "test" : "validation",
               strcmp(data_target_name(t->data), "next") == 0 ? "windows" : "sequences", de.loss,
               data_loss_kind(t->data) == TASK_LOSS_CE ? "cross-entropy" : "MSE in standard units");
        if (part == DATA_TEST && data_size(t->data, DATA_VAL)) {
            data_eval dv;
            if (data_evaluate(t->data, m, DATA_VAL, &dv, t->err, sizeof t->err) == 0)
                APPEND(ev, "  validation %s %.5g%s (baseline %.5g%s)\n", data_metric_short(t->data),
                       data_metric_percent(t->data) ? 100 * dv.metric : dv.metric, data_metric_percent(t->data) ? "%" : "",
                       data_metric_percent(t->data) ? 100 * data_baseline(t->data, DATA_VAL) : data_baseline(t->data, DATA_VAL),
                       data_metric_percent(t->data) ? "%" : "");
        }
    }
    return 0;
}

static int setup_data(task *t, const char *text, char *err, size_t errlen) {
    (void)text;
    if (!t->data_opts) {
        snprintf(err, errlen, "task data needs --data FILE and --target (%s)", data_target_list());
        return -1;
    }
    data_opts o = *t->data_opts;
    o.eval_batch = t->eval_batch; /* --eval-batch: the validation of every epoch and the final evaluation */
    t->data = data_src_new(&o, err, errlen);
    if (!t->data) return -1;
    t->in = data_inputs(t->data);
    t->out = data_outputs(t->data);
    t->seq = strcmp(data_target_name(t->data), "next") == 0 ? t->seq : 0;
    t->loss_baseline = data_loss_baseline(t->data);
    t->metric_baseline = data_baseline(t->data, data_size(t->data, DATA_TEST) ? DATA_TEST : DATA_VAL);
    snprintf(t->data_desc, sizeof t->data_desc, "%s", data_desc(t->data));
    return 0;
}

/* ---- the table ---------------------------------------------------------------------------------------- */

static const task_def g_tasks[] = {
    {.name = "arith", .about = "predict the next number of an arithmetic sequence (regression)",
     .seq_meaning = "sequence length", .min_seq = 3, .max_seq = 100000, .loss = TASK_LOSS_MSE, .every_step = false,
     .defaults = {10, 32, 32, 1500, 1e-2}, .metric = "test MSE", .baseline_desc = "repeat the last number",
     .lower_better = true, .margin = 0.5, .setup = setup_arith, .gen = gen_arith, .eval = eval_arith},
    {.name = "pattern", .about = "classify a noisy waveform: sine, square, sawtooth or triangle",
     .seq_meaning = "sequence length", .min_seq = 1, .max_seq = 100000, .loss = TASK_LOSS_CE, .every_step = false,
     .defaults = {32, 32, 32, 1500, 1e-2}, .metric = "test accuracy", .baseline_desc = "chance (4 balanced classes)",
     .lower_better = false, .percent = true, .margin = 0.5, .setup = setup_pattern, .gen = gen_pattern, .eval = eval_pattern},
    {.name = "adding", .about = "the adding problem: the sum of the two marked numbers of a sequence",
     .seq_meaning = "sequence length T", .min_seq = 2, .max_seq = 100000, .loss = TASK_LOSS_MSE, .every_step = false,
     .defaults = {50, 32, 32, 2000, 1e-2}, .metric = "test MSE", .baseline_desc = "always predict 1",
     .lower_better = true, .margin = 0.5, .setup = setup_adding, .gen = gen_adding, .eval = eval_adding},
    /* copy: the baseline is the best any memoryless model can do, so a few % below it is recall */
    {.name = "copy", .about = "the copy task: recall 10 symbols after T blank steps",
     .seq_meaning = "delay T; sequences are T+20 long", .min_seq = 1, .max_seq = 100000, .loss = TASK_LOSS_CE,
     .every_step = true, .defaults = {10, 128, 32, 6000, 3e-3}, .metric = "test cross-entropy (nats/step)",
     .baseline_desc = "memoryless: 10 log 8 / (T+20)", .lower_better = true, .margin = 0.03, .setup = setup_copy,
     .gen = gen_copy, .eval = eval_copy},
    {.name = "binadd", .about = "binary addition bit by bit; tested on numbers 4x longer than trained on",
     .seq_meaning = "bits of the training numbers", .min_seq = 1, .max_seq = 1000, .loss = TASK_LOSS_BCE,
     .every_step = true, .defaults = {8, 16, 32, 600, 1e-2}, .metric = "test bit error rate",
     .baseline_desc = "memoryless: a XOR b, no carry", .lower_better = true, .percent = true, .margin = 0.5,
     .setup = setup_binadd,
     .gen = gen_binadd, .eval = eval_binadd},
    {.name = "charlm", .about = "character-level language model of a text file (--text FILE)",
     .seq_meaning = "training window length", .min_seq = 1, .max_seq = 100000, .loss = TASK_LOSS_CE,
     .every_step = true, .defaults = {64, 128, 32, 1000, 3e-3}, .metric = "test nats/char",
     .baseline_desc = "unigram character frequencies", .lower_better = true, .margin = 0.1, .setup = setup_charlm,
     .gen = gen_charlm, .eval = eval_charlm},
    {.name = "data", .about = "the user's sequences (--data FILE --target next|class|tag|value)",
     .seq_meaning = "next: window length", .min_seq = 1, .max_seq = 100000, .loss = TASK_LOSS_MSE,
     .every_step = false, .defaults = {20, 64, 32, 0, 1e-3}, .metric = "val metric", .baseline_desc = "see the target",
     .lower_better = true, .margin = 0.05, .setup = setup_data, .gen = gen_data, .eval = eval_data},
};
#define N_TASKS (int)(sizeof g_tasks / sizeof g_tasks[0])

static const task_def *find_def(const char *name) {
    for (int i = 0; name && i < N_TASKS; i++)
        if (strcmp(g_tasks[i].name, name) == 0) return &g_tasks[i];
    return NULL;
}

char *task_list_sep(char *buf, size_t size, const char *sep) {
    if (!buf || size == 0) return buf;
    buf[0] = '\0';
    size_t len = 0;
    for (int i = 0; i < N_TASKS && len < size; i++) {
        int w = snprintf(buf + len, size - len, "%s%s", i ? sep : "", g_tasks[i].name);
        if (w < 0) break;
        len += (size_t)w;
    }
    return buf;
}

const char *task_list(void) {
    static char list[512]; /* made from the rows once; the tools run the tasks from one thread */
    if (!list[0]) task_list_sep(list, sizeof list, ", ");
    return list;
}
double task_margin(const task *t) { return t->def->margin; }
int task_row_count(void) { return N_TASKS; }
task_row_view task_row_at(int i) {
    const task_def *d = &g_tasks[i];
    return (task_row_view){.name = d->name, .metric = d->metric, .baseline_desc = d->baseline_desc,
                           .margin = d->margin, .setup = d->setup != NULL, .gen = d->gen != NULL,
                           .eval = d->eval != NULL};
}
bool task_known(const char *name) { return find_def(name) != NULL; }

task_defaults task_defaults_of(const char *name) {
    const task_def *d = find_def(name);
    return d ? d->defaults : (task_defaults){0};
}

char *task_defaults_help(char *buf, size_t size, const char *what, char which) {
    if (!buf || size == 0) return buf;
    double v[N_TASKS];
    bool same = true;
    for (int i = 0; i < N_TASKS; i++) {
        const task_defaults *d = &g_tasks[i].defaults;
        v[i] = which == 's' ? (double)d->seq : which == 'h' ? (double)d->hidden : which == 'b' ? (double)d->batch
             : which == 'l' ? d->lr : (double)d->steps;
        same = same && v[i] == v[0];
    }
    if (same) {
        snprintf(buf, size, "%s (default: the task's, %.10g for every task)", what, v[0]);
        return buf;
    }
    size_t len = (size_t)snprintf(buf, size, "%s (default: the task's:", what);
    for (int i = 0; i < N_TASKS && len < size; i++) {
        int w = v[i] > 0 ? snprintf(buf + len, size - len, "%s %s %.10g", i ? "," : "", g_tasks[i].name, v[i])
                         : snprintf(buf + len, size - len, "%s %s 10 epochs", i ? "," : "", g_tasks[i].name);
        if (w < 0) break;
        len += (size_t)w;
    }
    if (len < size) snprintf(buf + len, size - len, ")");
    return buf;
}

const char *task_seq_meaning(const char *name) {
    const task_def *d = find_def(name);
    return d ? d->seq_meaning : "";
}

task *task_new(const char *name, const task_opts *opts, char *err, size_t errlen) {
    const task_def *d = find_def(name);
    if (!d) {
        snprintf(err, errlen, "unknown task '%s' (known: %s)", name ? name : "(null)", task_list());
        return NULL;
    }
    task *t = calloc(1, sizeof *t);
    if (!t) { snprintf(err, errlen, "out of memory"); return NULL; }
    t->def = d;
    t->seq = opts && opts->seq > 0 ? opts->seq : d->defaults.seq;
    t->dtype = opts ? opts->dtype : TG_F32;
    t->eval_batch = opts && opts->eval_batch > 0 ? opts->eval_batch : 0;
    if (t->seq < d->min_seq || t->seq > d->max_seq) {
        snprintf(err, errlen, "task %s: --seq %ld is out of range [%ld, %ld]", name, t->seq, d->min_seq, d->max_seq);
        free(t);
        return NULL;
    }
    snprintf(t->data_desc, sizeof t->data_desc, "generated from the seed");
    t->data_opts = opts ? opts->data : NULL;
    if (d->setup(t, opts ? opts->text : NULL, err, errlen)) { task_free(t); return NULL; }
    return t;
}

void task_free(task *t) {
    if (!t) return;
    data_src_free(t->data);
    free(t->text);
    free(t);
}

const char *task_name(const task *t) { return t->def->name; }
const char *task_about(const task *t) { return t->data ? data_target_about(t->data) : t->def->about; }
long task_seq(const task *t) { return t->seq; }
int64_t task_input_size(const task *t) { return t->in; }
int64_t task_output_size(const task *t) { return t->out; }
bool task_every_step(const task *t) { return t->data ? data_every_step(t->data) : t->def->every_step; }
bool task_every_step_of(const char *name) {
    const task_def *d = find_def(name);
    return d && d->every_step;
}
task_loss task_loss_kind(const task *t) { return t->data ? data_loss_kind(t->data) : t->def->loss; }
double task_loss_baseline(const task *t) { return t->loss_baseline; }
const char *task_metric_name(const task *t) { return t->data ? data_metric_name(t->data) : t->def->metric; }
bool task_metric_lower_better(const task *t) { return t->data ? data_lower_better(t->data) : t->def->lower_better; }
bool task_metric_percent(const task *t) { return t->data ? data_metric_percent(t->data) : t->def->percent; }
double task_metric_baseline(const task *t) { return t->metric_baseline; }
const char *task_baseline_desc(const task *t) { return t->data ? data_baseline_desc(t->data) : t->def->baseline_desc; }
const char *task_data_desc(const task *t) { return t->data_desc; }
struct data_src *task_data(const task *t) { return t->data; }
const char *task_error(const task *t) { return t->err; }

const unsigned char *task_vocab(const task *t, int *V) {
    if (t->def->gen != gen_charlm) return NULL;
    if (V) *V = t->V;
    return t->vocab;
}

int64_t task_epoch_steps(const task *t, int64_t batch) {
    if (t->data) return data_epoch_steps(t->data, batch);
    int64_t examples = t->def->gen == gen_charlm ? (int64_t)t->n_train / t->seq : 10000;
    int64_t s = (examples + batch - 1) / batch;
    return s > 0 ? s : 1;
}

int task_make_batch(task *t, tg_rng *rng, int64_t B, task_batch *b) { return t->def->gen(t, rng, B, t->seq, b); }

tg_tensor *task_loss_of(const task *t, const tg_tensor *pred, const task_batch *b) {
    switch (task_loss_kind(t)) {
    case TASK_LOSS_MSE: return tg_mse_loss(pred, b->target, TG_REDUCE_MEAN);
    case TASK_LOSS_CE: return tg_cross_entropy(pred, b->labels, NULL);
    case TASK_LOSS_BCE: return tg_bce_with_logits(pred, b->target, NULL);
    }
    return NULL;
}

int task_evaluate(task *t, const tg_model *m, bool verbose, task_eval *ev) {
    memset(ev, 0, sizeof *ev);
    return t->def->eval(t, m, verbose, ev);
}
