/* tools/datatask.c - the user's data as a training task (see datatask.h).
 * Dimension letters: N sequences, T steps, B batch, I features, O regression outputs, C classes. */
#include "tools/datatask.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <tapegrad/autograd.h>

#define DEFAULT_WINDOW 20

/* ---- the targets: one row each --------------------------------------------------------------------- */

typedef enum { T_NEXT, T_CLASS, T_TAG, T_VALUE } target_id;

typedef struct target_def {
    target_id id;
    const char *name, *about;
    tg_label_kind labels;        /* what the file must provide (NONE: windows make the targets) */
    task_loss loss;
    bool every_step;
    const char *metric, *metric_short, *baseline;
    bool lower_better, percent;
} target_def;

static const target_def g_targets[] = {
    {T_NEXT, "next", "forecast the values --horizon steps after each window of --seq steps", TG_LABELS_NONE,
     TASK_LOSS_MSE, false, "MSE", "mse", "persistence: repeat the window's last value", true, false},
    {T_CLASS, "class", "one class per sequence", TG_LABELS_CLASS, TASK_LOSS_CE, false, "accuracy", "acc",
     "the training split's majority class", false, true},
    {T_TAG, "tag", "one class per step", TG_LABELS_TAG, TASK_LOSS_CE, true, "per-step accuracy", "acc",
     "the training split's majority class at each step", false, true},
    {T_VALUE, "value", "real values per sequence (regression)", TG_LABELS_VALUE, TASK_LOSS_MSE, false, "MSE", "mse",
     "the training split's mean", true, false},
};
#define N_TARGETS (int)(sizeof g_targets / sizeof g_targets[0])

static const target_def *find_target(const char *name) {
    for (int i = 0; name && i < N_TARGETS; i++)
        if (strcmp(g_targets[i].name, name) == 0) return &g_targets[i];
    return NULL;
}

const char *data_target_list(void) {
    static char list[128];
    if (!list[0])
        for (int i = 0; i < N_TARGETS; i++)
            snprintf(list + strlen(list), sizeof list - strlen(list), "%s%s", i ? ", " : "", g_targets[i].name);
    return list;
}
bool data_target_known(const char *name) { return find_target(name) != NULL; }

/* ---- the source ------------------------------------------------------------------------------------ */

#define N_META 17

struct data_src {
    const target_def *def;
    tg_dtype dtype;
    uint64_t seed;
    tg_dataset *part[3];         /* train, val, test (owned; NULL if absent) */
    tg_norm norm;                /* inputs */
    tg_norm ynorm;               /* value / next targets (features = O) */
    int64_t I, C, O;             /* features, classes, regression outputs */
    /* baselines, fitted on the raw training split */
    int64_t majority;            /* class / tag: the most frequent class */
    int64_t *tag_major;          /* tag: [tag_T] majority per step position */
    int64_t tag_T;
    double *train_mean;          /* value: [O] */
    double baseline[3], loss_baseline;
    tg_batcher *bt;              /* training batches (made at the first batch) */
    int64_t B;
    int64_t eval_batch;          /* sequences per piece of data_predict */
    char desc[600];
    char *features;              /* names, comma-separated */
    /* metadata values (owned strings) */
    char *meta_val[N_META];
    const char *meta_key[N_META];
    int n_meta;
};

static char *dup_or_null(const char *s) {
    if (!s) return NULL;
    char *d = malloc(strlen(s) + 1);
    if (d) memcpy(d, s, strlen(s) + 1);
    return d;
}

static int add_meta(data_src *d, const char *key, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int add_meta(data_src *d, const char *key, const char *fmt, ...) {
    if (d->n_meta >= N_META) return -1;
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    char *v = malloc((size_t)n + 1);
    if (!v) return -1;
    va_start(ap, fmt);
    vsnprintf(v, (size_t)n + 1, fmt, ap);
    va_end(ap);
    d->meta_key[d->n_meta] = key;
    d->meta_val[d->n_meta++] = v;
    return 0;
}

void data_src_free(data_src *d) {
    if (!d) return;
    for (int k = 0; k < 3; k++) tg_dataset_free(d->part[k]);
    tg_norm_clear(&d->norm);
    tg_norm_clear(&d->ynorm);
    free(d->tag_major);
    free(d->train_mean);
    tg_batcher_free(d->bt);
    free(d->features);
    for (int k = 0; k < d->n_meta; k++) free(d->meta_val[k]);
    free(d);
}

/* Splits "a,b,c" into a NULL-terminated array of copies (one allocation). */
static char **split_columns(const char *s) {
    if (!s) return NULL;
    size_t n = 1, len = strlen(s);
    for (const char *p = s; *p; p++) n += *p == ',';
    char **out = malloc((n + 1) * sizeof *out + len + 1);
    if (!out) return NULL;
    char *buf = (char *)(out + n + 1);
    memcpy(buf, s, len + 1);
    size_t k = 0;
    for (char *tok = buf;; ) {
        char *comma = strchr(tok, ',');
        if (comma) *comma = 0;
        out[k++] = tok;
        if (!comma) break;
        tok = comma + 1;
    }
    out[k] = NULL;
    return out;
}

static tg_dataset *load_one(const target_def *def, const char *path, const char *labels, const data_opts *o,
                            bool labels_optional, char *err, size_t errlen) {
    char **cols = split_columns(o->feature_columns);
    if (o->feature_columns && !cols) { snprintf(err, errlen, "out of memory"); return NULL; }
    tg_data_options dopt = {.seq_column = o->seq_column,
                            .label_column = def->id == T_NEXT ? NULL : o->label_column,
                            .feature_columns = (const char *const *)cols,
                            .label_kind = def->labels,
                            .idx_no_scale = o->idx_no_scale,
                            .label_column_optional = labels_optional};
    tg_dataset *ds = tg_dataset_load(path, def->id == T_NEXT ? NULL : labels, &dopt, err, errlen);
    free(cols);
    if (!ds) return NULL;
    tg_label_kind got = tg_dataset_label_kind(ds);
    if (def->id != T_NEXT && got != def->labels && !(labels_optional && got == TG_LABELS_NONE)) {
        snprintf(err, errlen, "%s: --target %s needs %s labels, the data has %s labels%s", path, def->name,
                 tg_label_kind_name(def->labels), tg_label_kind_name(got),
                 got == TG_LABELS_NONE ? " (give --labels FILE, or --label-column NAME for a CSV)" : "");
        tg_dataset_free(ds);
        return NULL;
    }
    if (def->id == T_NEXT) {
        tg_dataset *w = tg_dataset_windows(ds, o->window > 0 ? o->window : DEFAULT_WINDOW,
                                           o->horizon > 0 ? o->horizon : 1, 1, err, errlen);
        tg_dataset_free(ds);
        if (!w) return NULL;
        ds = w;
    }
    return ds;
}

/* Fits the baselines on the raw training split. */
static int fit_baselines(data_src *d) {
    const tg_dataset *tr = d->part[DATA_TRAIN];
    int64_t N = tg_dataset_size(tr);
    if (d->def->id == T_CLASS || d->def->id == T_TAG) {
        int64_t *count = calloc((size_t)d->C, sizeof *count);
        if (!count) return -1;
        int64_t T = tg_dataset_max_length(tr);
        if (d->def->id == T_TAG) {
            int64_t *pos = calloc((size_t)(T * d->C), sizeof *pos);
            d->tag_major = calloc((size_t)T, sizeof *d->tag_major);
            if (!pos || !d->tag_major) { free(pos); free(count); return -1; }
            d->tag_T = T;
            for (int64_t n = 0; n < N; n++) {
                const int64_t *tags = tg_dataset_tags(tr, n);
                for (int64_t t = 0; t < tg_dataset_length(tr, n); t++) {
                    pos[t * d->C + tags[t]]++;
                    count[tags[t]]++;
                }
            }
            for (int64_t t = 0; t < T; t++) {
                int64_t best = 0;
                for (int64_t c = 1; c < d->C; c++)
                    if (pos[t * d->C + c] > pos[t * d->C + best]) best = c;
                d->tag_major[t] = best;
            }
            free(pos);
        } else {
            for (int64_t n = 0; n < N; n++) count[tg_dataset_label(tr, n)]++;
        }
        int64_t best = 0, total = 0;
        for (int64_t c = 0; c < d->C; c++) {
            total += count[c];
            if (count[c] > count[best]) best = c;
        }
        d->majority = best;
        /* loss of the memoryless model: the cross-entropy of the training class frequencies */
        double ce = 0;
        for (int64_t c = 0; c < d->C; c++)
            if (count[c]) ce -= (double)count[c] / (double)total * log((double)count[c] / (double)total);
        d->loss_baseline = ce;
        free(count);
    } else if (d->def->id == T_VALUE) {
        d->train_mean = calloc((size_t)d->O, sizeof *d->train_mean);
        if (!d->train_mean) return -1;
        for (int64_t n = 0; n < N; n++)
            for (int64_t k = 0; k < d->O; k++) d->train_mean[k] += tg_dataset_values(tr, n)[k] / (double)N;
        d->loss_baseline = 1; /* the mean predicts 0 in standard units: MSE = variance = 1 */
    } else {
        d->loss_baseline = NAN; /* set below from the training split's persistence error */
    }
    return 0;
}

/* The baseline's metric on a raw part. */
static double baseline_on(const data_src *d, const tg_dataset *ds) {
    if (!ds || tg_dataset_label_kind(ds) == TG_LABELS_NONE) return NAN;
    int64_t N = tg_dataset_size(ds);
    double num = 0, den = 0;
    for (int64_t n = 0; n < N; n++) {
        switch (d->def->id) {
        case T_CLASS: num += tg_dataset_label(ds, n) == d->majority; den += 1; break;
        case T_TAG: {
            const int64_t *tags = tg_dataset_tags(ds, n);
            for (int64_t t = 0; t < tg_dataset_length(ds, n); t++) {
                int64_t guess = t < d->tag_T ? d->tag_major[t] : d->majority;
                num += tags[t] == guess;
                den += 1;
            }
            break;
        }
        case T_VALUE:
            for (int64_t k = 0; k < d->O; k++) {
                double e = tg_dataset_values(ds, n)[k] - d->train_mean[k];
                num += e * e;
                den += 1;
            }
            break;
        case T_NEXT: {
            const double *last = tg_dataset_seq(ds, n) + (tg_dataset_length(ds, n) - 1) * d->I;
            for (int64_t k = 0; k < d->O; k++) {
                double e = tg_dataset_values(ds, n)[k] - last[k];
                num += e * e;
                den += 1;
            }
            break;
        }
        }
    }
    return den > 0 ? num / den : NAN;
}

/* Mean / std of the VALUE labels of the training split (std 1 for a constant output). */
static int fit_ynorm(const tg_dataset *tr, int64_t O, tg_norm *out) {
    int64_t N = tg_dataset_size(tr);
    out->features = O;
    out->mean = calloc((size_t)O, sizeof *out->mean);
    out->std = calloc((size_t)O, sizeof *out->std);
    if (!out->mean || !out->std) { tg_norm_clear(out); return -1; }
    for (int64_t n = 0; n < N; n++)
        for (int64_t k = 0; k < O; k++) out->mean[k] += tg_dataset_values(tr, n)[k] / (double)N;
    for (int64_t n = 0; n < N; n++)
        for (int64_t k = 0; k < O; k++) {
            double e = tg_dataset_values(tr, n)[k] - out->mean[k];
            out->std[k] += e * e / (double)N;
        }
    for (int64_t k = 0; k < O; k++) out->std[k] = out->std[k] > 1e-24 ? sqrt(out->std[k]) : 1;
    return 0;
}

static void describe(data_src *d, const data_opts *o) {
    int64_t tmin = INT64_MAX, tmax = 0;
    for (int k = 0; k < 3; k++)
        for (int64_t n = 0; d->part[k] && n < tg_dataset_size(d->part[k]); n++) {
            int64_t t = tg_dataset_length(d->part[k], n);
            tmin = t < tmin ? t : tmin;
            tmax = t > tmax ? t : tmax;
        }
    char lens[64];
    if (tmin == tmax) snprintf(lens, sizeof lens, "%lld steps", (long long)tmax);
    else snprintf(lens, sizeof lens, "%lld..%lld steps", (long long)tmin, (long long)tmax);
    char what[96] = "";
    if (d->C) snprintf(what, sizeof what, ", %lld classes", (long long)d->C);
    else if (d->def->id == T_VALUE) snprintf(what, sizeof what, ", %lld output%s", (long long)d->O, d->O == 1 ? "" : "s");
    else snprintf(what, sizeof what, ", windows of %ld, horizon %ld", o->window > 0 ? o->window : DEFAULT_WINDOW,
                  o->horizon > 0 ? o->horizon : 1);
    char test[48] = "";
    if (d->part[DATA_TEST]) snprintf(test, sizeof test, ", test %lld", (long long)data_size(d, DATA_TEST));
    snprintf(d->desc, sizeof d->desc, "%s%s%s: %lld %s (train %lld, val %lld%s), %lld feature%s, %s%s", o->path,
             o->labels ? " + " : "", o->labels ? o->labels : "",
             (long long)(data_size(d, DATA_TRAIN) + data_size(d, DATA_VAL)),
             d->def->id == T_NEXT ? "windows" : "sequences", (long long)data_size(d, DATA_TRAIN),
             (long long)data_size(d, DATA_VAL), test, (long long)d->I, d->I == 1 ? "" : "s", lens, what);
}

data_src *data_src_new(const data_opts *o, char *err, size_t errlen) {
    const target_def *def = find_target(o->target);
    if (!def) {
        snprintf(err, errlen, "unknown target '%s' (known: %s)", o->target ? o->target : "(none)", data_target_list());
        return NULL;
    }
    if (!o->path) { snprintf(err, errlen, "no data file"); return NULL; }
    if (!(o->val >= 0 && o->val <= 0.9)) { snprintf(err, errlen, "--val %g is out of range [0, 0.9]", o->val); return NULL; }
    data_src *d = calloc(1, sizeof *d);
    if (!d) { snprintf(err, errlen, "out of memory"); return NULL; }
    d->def = def;
    d->dtype = o->dtype;
    d->seed = o->seed;
    d->eval_batch = o->eval_batch > 0 ? o->eval_batch : DATA_EVAL_BATCH;
    tg_dataset *all = load_one(def, o->path, o->labels, o, o->no_split, err, errlen);
    if (!all) goto fail;
    int64_t N = tg_dataset_size(all);
    d->I = tg_dataset_features(all);
    if (o->no_split) {
        d->part[DATA_VAL] = all;
    } else if (def->id == T_NEXT) {
        /* chronological: the last windows validate (their targets come after every training target) */
        int64_t n_val = (int64_t)llround(o->val * (double)N), n_train = N - n_val;
        if (n_train < 1 || (o->val > 0 && n_val < 1)) {
            snprintf(err, errlen, "%s: %lld windows are too few for a validation fraction of %g", o->path,
                     (long long)N, o->val);
            tg_dataset_free(all);
            goto fail;
        }
        int64_t *idx = malloc((size_t)N * sizeof *idx);
        if (!idx) { tg_dataset_free(all); snprintf(err, errlen, "out of memory"); goto fail; }
        for (int64_t k = 0; k < N; k++) idx[k] = k;
        d->part[DATA_TRAIN] = tg_dataset_subset(all, idx, n_train, err, errlen);
        if (d->part[DATA_TRAIN] && n_val) d->part[DATA_VAL] = tg_dataset_subset(all, idx + n_train, n_val, err, errlen);
        free(idx);
        tg_dataset_free(all);
        if (!d->part[DATA_TRAIN] || (n_val && !d->part[DATA_VAL])) goto fail;
    } else {
        int rc = tg_dataset_split(all, o->val, o->seed, &d->part[DATA_TRAIN], &d->part[DATA_VAL], err, errlen);
        tg_dataset_free(all);
        if (rc) goto fail;
        if (tg_dataset_size(d->part[DATA_TRAIN]) < 1) {
            snprintf(err, errlen, "%s: %lld sequences leave none to train on with --val %g", o->path, (long long)N, o->val);
            goto fail;
        }
    }
    if (o->test_path) {
        d->part[DATA_TEST] = load_one(def, o->test_path, o->test_labels, o, false, err, errlen);
        if (!d->part[DATA_TEST]) goto fail;
        if (tg_dataset_features(d->part[DATA_TEST]) != d->I) {
            snprintf(err, errlen, "%s has %lld features, the training data %lld", o->test_path,
                     (long long)tg_dataset_features(d->part[DATA_TEST]), (long long)d->I);
            goto fail;
        }
    }
    /* classes and outputs: the training split decides (C from the largest label of train and val) */
    if (def->id == T_CLASS || def->id == T_TAG) {
        for (int k = 0; k < 3; k++)
            if (d->part[k] && tg_dataset_classes(d->part[k]) > d->C) d->C = tg_dataset_classes(d->part[k]);
        if (o->classes > 0) {
            if (d->C > o->classes) {
                snprintf(err, errlen, "%s: a label is %lld, the model knows %lld classes (0..%lld)", o->path,
                         (long long)d->C - 1, (long long)o->classes, (long long)o->classes - 1);
                goto fail;
            }
            d->C = o->classes;
        }
        if (d->C < 2 && !o->no_split) {
            snprintf(err, errlen, "%s: the labels hold %lld class%s; --target %s needs at least 2", o->path,
                     (long long)d->C, d->C == 1 ? "" : "es", def->name);
            goto fail;
        }
    } else if (def->id == T_VALUE) {
        const tg_dataset *ref = d->part[DATA_TRAIN] ? d->part[DATA_TRAIN] : d->part[DATA_VAL];
        d->O = tg_dataset_label_kind(ref) == TG_LABELS_VALUE ? tg_dataset_outputs(ref) : 0;
    } else {
        d->O = d->I;
    }
    /* statistics: stored ones (resume, predict) or fitted on the training split */
    if (o->norm) {
        if (tg_norm_from_string(o->norm, &d->norm, err, errlen)) goto fail;
        if (d->norm.features != d->I) {
            snprintf(err, errlen, "%s has %lld features, the model was trained on %lld", o->path, (long long)d->I,
                     (long long)d->norm.features);
            goto fail;
        }
    } else if (tg_norm_fit(d->part[DATA_TRAIN], &d->norm, err, errlen)) {
        goto fail;
    }
    if (def->loss == TASK_LOSS_MSE) {
        if (o->ynorm) {
            if (tg_norm_from_string(o->ynorm, &d->ynorm, err, errlen)) goto fail;
            if (d->O == 0) d->O = d->ynorm.features; /* predicting without labels */
            if (d->ynorm.features != d->O) {
                snprintf(err, errlen, "%s has %lld outputs, the model was trained on %lld", o->path, (long long)d->O,
                         (long long)d->ynorm.features);
                goto fail;
            }
        } else if (fit_ynorm(d->part[DATA_TRAIN], d->O, &d->ynorm)) {
            snprintf(err, errlen, "out of memory");
            goto fail;
        }
    }
    if (d->part[DATA_TRAIN]) {
        if (fit_baselines(d)) { snprintf(err, errlen, "out of memory"); goto fail; }
        for (int k = 0; k < 3; k++) d->baseline[k] = baseline_on(d, d->part[k]);
        if (def->id == T_NEXT) {
            double mse = baseline_on(d, d->part[DATA_TRAIN]), v = 0;
            for (int64_t k = 0; k < d->O; k++) v += d->ynorm.std[k] * d->ynorm.std[k] / (double)d->O;
            d->loss_baseline = mse / v; /* persistence's error in standard units (roughly) */
        }
    } else {
        for (int k = 0; k < 3; k++) d->baseline[k] = NAN;
    }
    for (int k = 0; k < 3; k++)
        if (d->part[k]) tg_norm_apply(d->part[k], &d->norm);
    /* the feature names, for predict's check */
    {
        const tg_dataset *ref = d->part[DATA_TRAIN] ? d->part[DATA_TRAIN] : d->part[DATA_VAL];
        size_t len = 1;
        for (int64_t i = 0; i < d->I; i++) len += strlen(tg_dataset_feature_name(ref, i)) + 1;
        d->features = malloc(len);
        if (!d->features) { snprintf(err, errlen, "out of memory"); goto fail; }
        d->features[0] = 0;
        for (int64_t i = 0; i < d->I; i++) {
            if (i) strcat(d->features, ",");
            strcat(d->features, tg_dataset_feature_name(ref, i));
        }
    }
    describe(d, o);
    /* metadata that rebuilds this source */
    char *ns = tg_norm_to_string(&d->norm), *ys = def->loss == TASK_LOSS_MSE ? tg_norm_to_string(&d->ynorm) : NULL;
    int bad = !ns || (def->loss == TASK_LOSS_MSE && !ys);
    bad |= add_meta(d, "target", "%s", def->name);
    bad |= add_meta(d, "data", "%s", o->path);
    bad |= add_meta(d, "labels", "%s", o->labels ? o->labels : "");
    bad |= add_meta(d, "test_data", "%s", o->test_path ? o->test_path : "");
    bad |= add_meta(d, "test_labels", "%s", o->test_labels ? o->test_labels : "");
    bad |= add_meta(d, "window", "%ld", def->id == T_NEXT ? (o->window > 0 ? o->window : DEFAULT_WINDOW) : 0);
    bad |= add_meta(d, "horizon", "%ld", def->id == T_NEXT ? (o->horizon > 0 ? o->horizon : 1) : 0);
    bad |= add_meta(d, "val", "%.17g", o->val);
    bad |= add_meta(d, "seq_column", "%s", o->seq_column ? o->seq_column : "");
    bad |= add_meta(d, "label_column", "%s", o->label_column ? o->label_column : "");
    bad |= add_meta(d, "feature_columns", "%s", o->feature_columns ? o->feature_columns : "");
    bad |= add_meta(d, "idx_no_scale", "%d", o->idx_no_scale ? 1 : 0);
    bad |= add_meta(d, "norm", "%s", ns ? ns : "");
    bad |= add_meta(d, "ynorm", "%s", ys ? ys : "");
    bad |= add_meta(d, "features", "%s", d->features);
    bad |= add_meta(d, "classes", "%lld", (long long)d->C);
    free(ns);
    free(ys);
    if (bad) { snprintf(err, errlen, "out of memory"); goto fail; }
    return d;
fail:
    data_src_free(d);
    return NULL;
}

/* ---- accessors ---------------------------------------------------------------------------------- */

const char *data_target_name(const data_src *d) { return d->def->name; }
const char *data_target_about(const data_src *d) { return d->def->about; }
int64_t data_inputs(const data_src *d) { return d->I; }
int64_t data_outputs(const data_src *d) { return d->def->loss == TASK_LOSS_CE ? d->C : d->O; }
bool data_every_step(const data_src *d) { return d->def->every_step; }
task_loss data_loss_kind(const data_src *d) { return d->def->loss; }
const char *data_metric_short(const data_src *d) { return d->def->metric_short; }
bool data_lower_better(const data_src *d) { return d->def->lower_better; }
bool data_metric_percent(const data_src *d) { return d->def->percent; }
const char *data_baseline_desc(const data_src *d) { return d->def->baseline; }
double data_loss_baseline(const data_src *d) { return d->loss_baseline; }
const char *data_desc(const data_src *d) { return d->desc; }
const char *data_feature_names(const data_src *d) { return d->features; }
const tg_dataset *data_part_set(const data_src *d, data_part part) { return d->part[part]; }
int64_t data_size(const data_src *d, data_part part) { return d->part[part] ? tg_dataset_size(d->part[part]) : 0; }

const char *data_metric_name(const data_src *d) {
    static char buf[4][64];
    static int k;
    k = (k + 1) % 4;
    snprintf(buf[k], sizeof buf[k], "%s %s", d->part[DATA_TEST] ? "test" : "val", d->def->metric);
    return buf[k];
}

double data_baseline(const data_src *d, data_part part) { return d->baseline[part]; }

int64_t data_epoch_steps(const data_src *d, int64_t B) {
    int64_t n = data_size(d, DATA_TRAIN);
    return B > 0 && n > 0 ? (n + B - 1) / B : 1;
}

int data_meta(const data_src *d, const char **kv, int max) {
    int n = 0;
    for (int k = 0; k < d->n_meta && n < max; k++, n++) {
        kv[2 * n] = d->meta_key[k];
        kv[2 * n + 1] = d->meta_val[k];
    }
    return n;
}

/* ---- batches ------------------------------------------------------------------------------------ */

/* Moves a tg_batch into a task_batch: x and lengths as they are, labels as the loss wants them
 * (class indices as int64; regression targets in standard units). */
static int to_task_batch(const data_src *d, tg_batch *bb, task_batch *b) {
    memset(b, 0, sizeof *b);
    b->T = bb->T;
    b->B = bb->B;
    b->x = bb->x;
    bb->x = NULL;
    b->lengths = bb->lengths;
    bb->lengths = NULL;
    if (bb->classes) {
        int64_t n = tg_numel(bb->classes);
        b->labels = malloc((size_t)n * sizeof *b->labels);
        if (!b->labels) return -1;
        for (int64_t k = 0; k < n; k++) b->labels[k] = (int64_t)tg_get(bb->classes, k);
    } else if (bb->values) {
        int64_t B = bb->B, O = d->O;
        double *y = malloc((size_t)(B * O) * sizeof *y);
        if (!y) return -1;
        for (int64_t r = 0; r < B; r++)
            for (int64_t k = 0; k < O; k++)
                y[r * O + k] = (tg_get(bb->values, r * O + k) - d->ynorm.mean[k]) / d->ynorm.std[k];
        b->target = tg_from_f64(d->dtype, TG_SHAPE(B, O), y);
        free(y);
        if (!b->target) return -1;
    }
    return 0;
}

int data_next_batch(data_src *d, int64_t B, task_batch *b, char *err, size_t errlen) {
    memset(b, 0, sizeof *b);
    if (!d->bt) {
        d->bt = tg_batcher_new(d->part[DATA_TRAIN], B, true, false, d->seed, d->dtype, err, errlen);
        if (!d->bt) return -1;
        d->B = B;
    }
    tg_batch bb = {0};
    int r = tg_batcher_next(d->bt, &bb, err, errlen);
    if (r == 0) r = tg_batcher_next(d->bt, &bb, err, errlen); /* the end of an epoch: start the next */
    if (r != 1) {
        tg_batch_clear(&bb);
        if (r == 0) snprintf(err, errlen, "the training split gave no batch");
        return -1;
    }
    int rc = to_task_batch(d, &bb, b);
    tg_batch_clear(&bb);
    if (rc) {
        task_batch_clear(b);
        snprintf(err, errlen, "out of memory");
    }
    return rc;
}

char *data_batcher_state(const data_src *d) { return d->bt ? tg_batcher_state(d->bt) : dup_or_null(""); }

int data_batcher_restore(data_src *d, int64_t B, const char *state, char *err, size_t errlen) {
    if (!state || !*state) return 0; /* saved before the first batch */
    if (!d->bt) {
        d->bt = tg_batcher_new(d->part[DATA_TRAIN], B, true, false, d->seed, d->dtype, err, errlen);
        if (!d->bt) return -1;
        d->B = B;
    }
    return tg_batcher_restore(d->bt, state, err, errlen);
}

static int64_t argmax(const double *v, int64_t n) {
    int64_t best = 0;
    for (int64_t k = 1; k < n; k++)
        if (v[k] > v[best]) best = k;
    return best;
}

void data_batch_score(const data_src *d, const tg_tensor *pred, const task_batch *b, double *num, double *den) {
    int64_t W = tg_dim(pred, 1), rows = tg_dim(pred, 0);
    tg_tensor *p = tg_to_dtype(pred, TG_F64);
    if (!p) return;
    const double *v = tg_f64(p);
    if (d->def->loss == TASK_LOSS_CE) {
        for (int64_t r = 0; r < rows; r++) {
            if (b->labels[r] < 0) continue; /* padding */
            *num += argmax(v + r * W, W) == b->labels[r];
            *den += 1;
        }
    } else {
        for (int64_t r = 0; r < rows; r++)
            for (int64_t k = 0; k < W; k++) {
                double e = (v[r * W + k] - tg_get(b->target, r * W + k)) * d->ynorm.std[k];
                *num += e * e;
                *den += 1;
            }
    }
    tg_release(p);
}

/* ---- evaluation ----------------------------------------------------------------------------------- */

void data_pred_clear(data_pred *o) {
    if (!o) return;
    free(o->offset);
    free(o->v);
    memset(o, 0, sizeof *o);
}

/* Runs the model over one chunk of B padded sequences (bb.x [T,B,I], bb.lengths) through a stream of
 * B rows, one step at a time, without the tape; keeps each row's output at every step of its sequence
 * (every) or at its own last step (then the row starts over), target units. Returns 0 or -1 (tg_error). */
static int stream_chunk(const data_src *d, const tg_model *m, const tg_batch *bb, int64_t start, bool every, data_pred *out) {
    int64_t T = tg_dim(bb->x, 0), B = tg_dim(bb->x, 1), W = out->width;
    tg_rnn_stream *s = tg_model_stream_new(m, B);
    int rc = s ? 0 : -1;
    for (int64_t t = 0; t < T && rc == 0; t++) {
        tg_tensor *xt = tg_view_at(bb->x, t);
        const tg_tensor *y = xt ? tg_rnn_stream_step(s, xt) : NULL; /* [B, W] */
        tg_release(xt);
        if (!y) { rc = -1; break; }
        for (int64_t k = 0; k < B && rc == 0; k++) {
            int64_t n = start + k, len = bb->lengths ? bb->lengths[k] : T;
            if (every && t < len) {
                for (int64_t j = 0; j < W; j++) out->v[(out->offset[n] + t) * W + j] = tg_get(y, k * W + j);
            } else if (!every && t == len - 1) {
                for (int64_t j = 0; j < W; j++) {
                    double v = tg_get(y, k * W + j);
                    out->v[n * W + j] = d->def->loss == TASK_LOSS_CE ? v : v * d->ynorm.std[j] + d->ynorm.mean[j];
                }
                rc = tg_rnn_stream_reset_row(s, k); /* padding after its end: keep the row bounded */
            }
        }
    }
    tg_rnn_stream_free(s);
    return rc;
}

int data_predict(const data_src *d, const tg_model *m, data_part part, data_pred *out, char *err, size_t errlen) {
    memset(out, 0, sizeof *out);
    const tg_dataset *ds = d->part[part];
    if (!ds) { snprintf(err, errlen, "no %s data", part == DATA_TEST ? "test" : part == DATA_VAL ? "validation" : "training"); return -1; }
    int64_t N = tg_dataset_size(ds), W = data_outputs(d);
    bool every = d->def->every_step;
    out->n = N;
    out->width = W;
    out->offset = malloc((size_t)(N + 1) * sizeof *out->offset);
    if (!out->offset) { snprintf(err, errlen, "out of memory"); return -1; }
    out->offset[0] = 0;
    for (int64_t n = 0; n < N; n++) out->offset[n + 1] = out->offset[n] + (every ? tg_dataset_length(ds, n) : 1);
    out->v = malloc((size_t)(out->offset[N] * W) * sizeof *out->v);
    int64_t per = d->eval_batch < N ? d->eval_batch : N;
    int64_t *idx = malloc((size_t)(per > 0 ? per : 1) * sizeof *idx);
    if (!out->v || !idx) { free(idx); data_pred_clear(out); snprintf(err, errlen, "out of memory"); return -1; }
    int rc = 0;
    for (int64_t start = 0; start < N && rc == 0; start += per) {
        int64_t B = N - start < per ? N - start : per;
        for (int64_t k = 0; k < B; k++) idx[k] = start + k;
        tg_batch bb = {0};
        if (tg_batch_make(ds, idx, B, d->dtype, &bb, err, errlen)) { rc = -1; break; }
        if (stream_chunk(d, m, &bb, start, every, out)) {
            snprintf(err, errlen, "the model failed on the data: %s", tg_error_pending() ? tg_last_error() : "?");
            tg_clear_error();
            rc = -1;
        }
        tg_batch_clear(&bb);
    }
    free(idx);
    if (rc) data_pred_clear(out);
    return rc;
}

/* -log softmax(logits)[label] */
static double row_ce(const double *logits, int64_t C, int64_t label) {
    double mx = logits[0], s = 0;
    for (int64_t k = 1; k < C; k++) mx = logits[k] > mx ? logits[k] : mx;
    for (int64_t k = 0; k < C; k++) s += exp(logits[k] - mx);
    return mx + log(s) - logits[label];
}

int data_score(const data_src *d, data_part part, const data_pred *o, data_eval *ev) {
    memset(ev, 0, sizeof *ev);
    const tg_dataset *ds = d->part[part];
    if (!ds || tg_dataset_label_kind(ds) == TG_LABELS_NONE) return -1;
    double num = 0, den = 0, loss = 0;
    int64_t W = o->width;
    for (int64_t n = 0; n < o->n; n++) {
        const double *v = o->v + o->offset[n] * W;
        switch (d->def->id) {
        case T_CLASS: {
            int64_t y = tg_dataset_label(ds, n);
            if (y >= W) return -1;
            num += argmax(v, W) == y;
            loss += row_ce(v, W, y);
            den += 1;
            break;
        }
        case T_TAG: {
            const int64_t *tags = tg_dataset_tags(ds, n);
            for (int64_t t = 0; t < tg_dataset_length(ds, n); t++) {
                if (tags[t] >= W) return -1;
                num += argmax(v + t * W, W) == tags[t];
                loss += row_ce(v + t * W, W, tags[t]);
                den += 1;
            }
            break;
        }
        case T_VALUE:
        case T_NEXT:
            for (int64_t k = 0; k < W; k++) {
                double e = v[k] - tg_dataset_values(ds, n)[k];
                num += e * e;
                loss += e * e / (d->ynorm.std[k] * d->ynorm.std[k]);
                den += 1;
            }
            break;
        }
    }
    if (den == 0) return -1;
    ev->metric = num / den;
    ev->loss = loss / den;
    ev->n = o->n;
    return 0;
}

int data_evaluate(const data_src *d, const tg_model *m, data_part part, data_eval *ev, char *err, size_t errlen) {
    data_pred o;
    if (data_predict(d, m, part, &o, err, errlen)) return -1;
    int rc = data_score(d, part, &o, ev);
    data_pred_clear(&o);
    if (rc) snprintf(err, errlen, "the %s data has no labels to score", part == DATA_TEST ? "test" : "validation");
    return rc;
}
