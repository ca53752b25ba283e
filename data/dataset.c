/* data/dataset.c - the dataset object: construction from memory, accessors, subset, split, windows,
 * per-feature normalisation and its text form.
 *
 * Layout (data/internal.h): every real step of every sequence back to back in one [S, I] array of
 * doubles, with offset[n] the first step of sequence n, so a sequence is a borrowed [T_n, I] slice and
 * padding exists only in batches. Dimension letters: N sequences, T steps, S total steps, I features,
 * O regression outputs, C classes.
 */
#include "data/internal.h"
#include "tensor/alloc.h"

#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int tgd_fail(char *err, size_t errlen, const char *fmt, ...) {
    if (err && errlen) {
        /* Messages quote the file (a column name, a key): its control bytes are escaped, so the
         * message stays one printable line whatever the file holds (found by tests/fuzz/fuzz_csv.c). */
        char raw[1024];
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(raw, sizeof raw, fmt, ap);
        va_end(ap);
        size_t n = 0;
        for (const unsigned char *c = (const unsigned char *)raw; *c && n + 1 < errlen; c++) {
            if (*c >= 0x20 && *c != 0x7f) { err[n++] = (char)*c; continue; }
            char esc[5];
            int k = *c == '\n' ? snprintf(esc, sizeof esc, "\\n") : *c == '\r' ? snprintf(esc, sizeof esc, "\\r")
                  : *c == '\t' ? snprintf(esc, sizeof esc, "\\t") : snprintf(esc, sizeof esc, "\\x%02x", *c);
            if (n + (size_t)k + 1 > errlen) break;
            memcpy(err + n, esc, (size_t)k);
            n += (size_t)k;
        }
        err[n] = 0;
    }
    return -1;
}

/* a * b, or -1 when it does not fit in int64 (both >= 0). */
static int64_t mul_ok(int64_t a, int64_t b) {
    if (a < 0 || b < 0) return -1;
    if (a && b > INT64_MAX / a) return -1;
    return a * b;
}

static void *alloc_array(int64_t count, size_t item) {
    if (count < 0 || (uint64_t)count > SIZE_MAX / item / 2) return NULL;
    return tg_malloc(count ? (size_t)count * item : 1);
}

void tg_dataset_free(tg_dataset *ds) {
    if (!ds) return;
    if (ds->names)
        for (int64_t i = 0; i < ds->features; i++) free(ds->names[i]);
    free(ds->names);
    free(ds->offset);
    free(ds->x);
    free(ds->labels);
    free(ds->values);
    free(ds);
}

tg_dataset *tgd_alloc(int64_t n, int64_t features, int64_t steps, tg_label_kind kind, int64_t outputs,
                      char *err, size_t errlen) {
    if (n < 1 || features < 1 || steps < n) {
        tgd_fail(err, errlen, "a dataset needs at least one sequence, one feature and one step per sequence "
                 "(got N %" PRId64 ", I %" PRId64 ", %" PRId64 " steps)", n, features, steps);
        return NULL;
    }
    if (mul_ok(steps, features) < 0 || (kind == TG_LABELS_VALUE && (outputs < 1 || mul_ok(n, outputs) < 0))) {
        tgd_fail(err, errlen, "dataset of %" PRId64 " steps x %" PRId64 " features is too large", steps, features);
        return NULL;
    }
    tg_dataset *ds = tg_calloc(1, sizeof *ds);
    if (!ds) goto oom;
    ds->n = n;
    ds->features = features;
    ds->kind = kind;
    ds->offset = alloc_array(n + 1, sizeof *ds->offset);
    ds->x = alloc_array(steps * features, sizeof *ds->x);
    if (!ds->offset || !ds->x) goto oom;
    ds->offset[0] = 0;
    if (kind == TG_LABELS_CLASS || kind == TG_LABELS_TAG) {
        ds->labels = alloc_array(kind == TG_LABELS_CLASS ? n : steps, sizeof *ds->labels);
        if (!ds->labels) goto oom;
    } else if (kind == TG_LABELS_VALUE) {
        ds->outputs = outputs;
        ds->values = alloc_array(n * outputs, sizeof *ds->values);
        if (!ds->values) goto oom;
    }
    return ds;
oom:
    tg_dataset_free(ds);
    tgd_fail(err, errlen, "out of memory for a dataset of %" PRId64 " steps x %" PRId64 " features", steps, features);
    return NULL;
}

int tgd_default_names(tg_dataset *ds, char *err, size_t errlen) {
    ds->names = tg_calloc((size_t)ds->features, sizeof *ds->names);
    if (!ds->names) return tgd_fail(err, errlen, "out of memory");
    for (int64_t i = 0; i < ds->features; i++) {
        char b[32];
        snprintf(b, sizeof b, "x%" PRId64, i);
        if (!(ds->names[i] = tg_strdup(b))) return tgd_fail(err, errlen, "out of memory");
    }
    return 0;
}

static int copy_names(tg_dataset *dst, const tg_dataset *src, char *err, size_t errlen) {
    dst->names = tg_calloc((size_t)dst->features, sizeof *dst->names);
    if (!dst->names) return tgd_fail(err, errlen, "out of memory");
    for (int64_t i = 0; i < dst->features; i++)
        if (!(dst->names[i] = tg_strdup(src->names[i]))) return tgd_fail(err, errlen, "out of memory");
    return 0;
}

int tgd_finish(tg_dataset *ds, const char *what, char *err, size_t errlen) {
    ds->max_len = 0;
    for (int64_t n = 0; n < ds->n; n++) {
        int64_t len = ds->offset[n + 1] - ds->offset[n];
        if (len < 1) return tgd_fail(err, errlen, "%s: sequence %" PRId64 " has no steps", what, n);
        if (len > ds->max_len) ds->max_len = len;
    }
    int64_t steps = ds->offset[ds->n];
    for (int64_t s = 0; s < steps; s++)
        for (int64_t i = 0; i < ds->features; i++)
            if (!isfinite(ds->x[s * ds->features + i])) {
                int64_t n = 0;
                while (ds->offset[n + 1] <= s) n++;
                return tgd_fail(err, errlen, "%s: sequence %" PRId64 ", step %" PRId64 ", feature %" PRId64
                                " is %g (values must be finite)", what, n, s - ds->offset[n], i, ds->x[s * ds->features + i]);
            }
    if (ds->kind == TG_LABELS_CLASS || ds->kind == TG_LABELS_TAG) {
        int64_t count = ds->kind == TG_LABELS_CLASS ? ds->n : steps, top = -1;
        for (int64_t k = 0; k < count; k++) {
            int64_t v = ds->labels[k];
            if (v < 0 || v >= TG_DATA_MAX_CLASSES) {
                int64_t n = k, t = 0;
                if (ds->kind == TG_LABELS_TAG) {
                    n = 0;
                    while (ds->offset[n + 1] <= k) n++;
                    t = k - ds->offset[n];
                    return tgd_fail(err, errlen, "%s: sequence %" PRId64 ", step %" PRId64 ": label %" PRId64
                                    " is outside 0..%d", what, n, t, v, TG_DATA_MAX_CLASSES - 1);
                }
                return tgd_fail(err, errlen, "%s: sequence %" PRId64 ": label %" PRId64 " is outside 0..%d", what, n,
                                v, TG_DATA_MAX_CLASSES - 1);
            }
            if (v > top) top = v;
        }
        ds->classes = top + 1;
    }
    if (ds->kind == TG_LABELS_VALUE)
        for (int64_t k = 0; k < ds->n * ds->outputs; k++)
            if (!isfinite(ds->values[k]))
                return tgd_fail(err, errlen, "%s: sequence %" PRId64 ": target %" PRId64 " is %g (values must be finite)",
                                what, k / ds->outputs, k % ds->outputs, ds->values[k]);
    if (!ds->names) return tgd_default_names(ds, err, errlen);
    return 0;
}

tg_dataset *tg_dataset_from_tensor(const tg_tensor *x, const int64_t *lengths, tg_label_kind kind,
                                   const void *labels, int64_t n_outputs, char *err, size_t errlen) {
    const char *fn = "tg_dataset_from_tensor";
    if (!x) { tgd_fail(err, errlen, "%s: x is NULL", fn); return NULL; }
    char sb[96];
    tg_shape_str(x, sb, sizeof sb);
    if (tg_ndim(x) != 3) { tgd_fail(err, errlen, "%s: x %s must be [N,T,I]", fn, sb); return NULL; }
    if (kind < TG_LABELS_NONE || kind > TG_LABELS_VALUE) { tgd_fail(err, errlen, "%s: unknown label kind %d", fn, (int)kind); return NULL; }
    if (kind != TG_LABELS_NONE && !labels) { tgd_fail(err, errlen, "%s: label kind %s needs labels", fn, tg_label_kind_name(kind)); return NULL; }
    if (kind == TG_LABELS_VALUE && n_outputs < 1) {
        tgd_fail(err, errlen, "%s: VALUE labels need n_outputs >= 1 (got %" PRId64 ")", fn, n_outputs);
        return NULL;
    }
    int64_t N = tg_dim(x, 0), T = tg_dim(x, 1), I = tg_dim(x, 2), steps = 0;
    if (N < 1 || T < 1 || I < 1) { tgd_fail(err, errlen, "%s: x %s has an empty dimension", fn, sb); return NULL; }
    for (int64_t n = 0; n < N; n++) {
        int64_t len = lengths ? lengths[n] : T;
        if (len < 1 || len > T) {
            tgd_fail(err, errlen, "%s: lengths[%" PRId64 "] = %" PRId64 " is outside 1..%" PRId64, fn, n, len, T);
            return NULL;
        }
        steps += len;
    }
    tg_dataset *ds = tgd_alloc(N, I, steps, kind, n_outputs, err, errlen);
    if (!ds) return NULL;
    const bool f64 = tg_dtype_of(x) == TG_F64;
    const void *src = tg_cdata(x);
    for (int64_t n = 0, s = 0; n < N; n++) {
        int64_t len = lengths ? lengths[n] : T;
        for (int64_t t = 0; t < len; t++, s++) {
            for (int64_t i = 0; i < I; i++) {
                int64_t k = (n * T + t) * I + i;
                ds->x[s * I + i] = f64 ? ((const double *)src)[k] : (double)((const float *)src)[k];
            }
            if (kind == TG_LABELS_TAG) ds->labels[s] = ((const int64_t *)labels)[n * T + t];
        }
        ds->offset[n + 1] = s;
        if (kind == TG_LABELS_CLASS) ds->labels[n] = ((const int64_t *)labels)[n];
    }
    if (kind == TG_LABELS_VALUE) memcpy(ds->values, labels, (size_t)(N * n_outputs) * sizeof(double));
    if (tgd_finish(ds, fn, err, errlen)) { tg_dataset_free(ds); return NULL; }
    return ds;
}

/* ---- accessors: out-of-range arguments are programming errors (tg_error, then 0 / NULL) ---------- */

static bool seq_ok(const tg_dataset *ds, int64_t n, const char *fn) {
    if (!ds) { tg_error(fn, "dataset is NULL"); return false; }
    if (n < 0 || n >= ds->n) { tg_error(fn, "sequence %" PRId64 " is outside 0..%" PRId64, n, ds->n - 1); return false; }
    return true;
}

int64_t tg_dataset_size(const tg_dataset *ds) { return ds ? ds->n : 0; }
int64_t tg_dataset_features(const tg_dataset *ds) { return ds ? ds->features : 0; }
int64_t tg_dataset_max_length(const tg_dataset *ds) { return ds ? ds->max_len : 0; }
int64_t tg_dataset_length(const tg_dataset *ds, int64_t n) {
    return seq_ok(ds, n, "tg_dataset_length") ? ds->offset[n + 1] - ds->offset[n] : 0;
}
const double *tg_dataset_seq(const tg_dataset *ds, int64_t n) {
    return seq_ok(ds, n, "tg_dataset_seq") ? ds->x + ds->offset[n] * ds->features : NULL;
}
tg_label_kind tg_dataset_label_kind(const tg_dataset *ds) { return ds ? ds->kind : TG_LABELS_NONE; }
int64_t tg_dataset_classes(const tg_dataset *ds) { return ds ? ds->classes : 0; }
int64_t tg_dataset_outputs(const tg_dataset *ds) { return ds ? ds->outputs : 0; }
int64_t tg_dataset_label(const tg_dataset *ds, int64_t n) {
    if (!seq_ok(ds, n, "tg_dataset_label")) return -1;
    if (ds->kind != TG_LABELS_CLASS) { tg_error("tg_dataset_label", "the dataset has %s labels, not class", tg_label_kind_name(ds->kind)); return -1; }
    return ds->labels[n];
}
const int64_t *tg_dataset_tags(const tg_dataset *ds, int64_t n) {
    if (!seq_ok(ds, n, "tg_dataset_tags")) return NULL;
    if (ds->kind != TG_LABELS_TAG) { tg_error("tg_dataset_tags", "the dataset has %s labels, not tag", tg_label_kind_name(ds->kind)); return NULL; }
    return ds->labels + ds->offset[n];
}
const double *tg_dataset_values(const tg_dataset *ds, int64_t n) {
    if (!seq_ok(ds, n, "tg_dataset_values")) return NULL;
    if (ds->kind != TG_LABELS_VALUE) { tg_error("tg_dataset_values", "the dataset has %s labels, not value", tg_label_kind_name(ds->kind)); return NULL; }
    return ds->values + n * ds->outputs;
}
const char *tg_dataset_feature_name(const tg_dataset *ds, int64_t i) {
    if (!ds) { tg_error("tg_dataset_feature_name", "dataset is NULL"); return NULL; }
    if (i < 0 || i >= ds->features) {
        tg_error("tg_dataset_feature_name", "feature %" PRId64 " is outside 0..%" PRId64, i, ds->features - 1);
        return NULL;
    }
    return ds->names[i];
}

static const char *const k_kind_names[] = {"none", "class", "tag", "value"};
_Static_assert(sizeof k_kind_names / sizeof *k_kind_names == TG_LABELS_VALUE + 1, "one name per label kind");
const char *tg_label_kind_name(tg_label_kind kind) {
    return kind >= TG_LABELS_NONE && kind <= TG_LABELS_VALUE ? k_kind_names[kind] : "unknown";
}

/* ---- subset, split, windows -------------------------------------------------------------------- */

tg_dataset *tg_dataset_subset(const tg_dataset *ds, const int64_t *index, int64_t n, char *err, size_t errlen) {
    const char *fn = "tg_dataset_subset";
    if (!ds || !index) { tgd_fail(err, errlen, "%s: %s is NULL", fn, !ds ? "dataset" : "index"); return NULL; }
    if (n < 1) { tgd_fail(err, errlen, "%s: n = %" PRId64 " (a subset needs at least one sequence)", fn, n); return NULL; }
    int64_t steps = 0;
    for (int64_t k = 0; k < n; k++) {
        if (index[k] < 0 || index[k] >= ds->n) {
            tgd_fail(err, errlen, "%s: index[%" PRId64 "] = %" PRId64 " is outside 0..%" PRId64, fn, k, index[k], ds->n - 1);
            return NULL;
        }
        steps += ds->offset[index[k] + 1] - ds->offset[index[k]];
        if (steps < 0) { tgd_fail(err, errlen, "%s: too many steps", fn); return NULL; }
    }
    tg_dataset *out = tgd_alloc(n, ds->features, steps, ds->kind, ds->outputs, err, errlen);
    if (!out) return NULL;
    const int64_t I = ds->features, O = ds->outputs;
    for (int64_t k = 0; k < n; k++) {
        int64_t j = index[k], b = ds->offset[j], len = ds->offset[j + 1] - b;
        memcpy(out->x + out->offset[k] * I, ds->x + b * I, (size_t)(len * I) * sizeof(double));
        if (ds->kind == TG_LABELS_TAG) memcpy(out->labels + out->offset[k], ds->labels + b, (size_t)len * sizeof(int64_t));
        if (ds->kind == TG_LABELS_CLASS) out->labels[k] = ds->labels[j];
        if (ds->kind == TG_LABELS_VALUE) memcpy(out->values + k * O, ds->values + j * O, (size_t)O * sizeof(double));
        out->offset[k + 1] = out->offset[k] + len;
    }
    if (copy_names(out, ds, err, errlen) || tgd_finish(out, fn, err, errlen)) { tg_dataset_free(out); return NULL; }
    /* C stays the parent's: a validation part that happens to miss the top class must not shrink it */
    out->classes = ds->classes;
    return out;
}

/* Fisher-Yates from a generator seeded once: perm[0..n) becomes a permutation of 0..n-1. */
static void permute(int64_t *perm, int64_t n, tg_rng *rng) {
    for (int64_t i = 0; i < n; i++) perm[i] = i;
    for (int64_t i = n - 1; i > 0; i--) {
        int64_t j = (int64_t)tg_rng_below(rng, (uint64_t)i + 1);
        int64_t tmp = perm[i];
        perm[i] = perm[j];
        perm[j] = tmp;
    }
}

int tg_dataset_split(const tg_dataset *ds, double val_fraction, uint64_t seed, tg_dataset **train,
                     tg_dataset **val, char *err, size_t errlen) {
    const char *fn = "tg_dataset_split";
    if (train) *train = NULL;
    if (val) *val = NULL;
    if (!ds || !train || !val) return tgd_fail(err, errlen, "%s: %s is NULL", fn, !ds ? "dataset" : !train ? "train" : "val");
    if (!(val_fraction >= 0 && val_fraction < 1))
        return tgd_fail(err, errlen, "%s: validation fraction %g is outside [0, 1)", fn, val_fraction);
    int64_t nval = (int64_t)llround(val_fraction * (double)ds->n);
    if (val_fraction > 0 && nval == 0)
        return tgd_fail(err, errlen, "%s: validation fraction %g of %" PRId64 " sequences rounds to none", fn,
                        val_fraction, ds->n);
    if (nval >= ds->n)
        return tgd_fail(err, errlen, "%s: validation fraction %g of %" PRId64 " sequences leaves none to train on", fn,
                        val_fraction, ds->n);
    int64_t *perm = alloc_array(ds->n, sizeof *perm);
    if (!perm) return tgd_fail(err, errlen, "%s: out of memory", fn);
    tg_rng rng;
    tg_rng_seed(&rng, seed);
    permute(perm, ds->n, &rng);
    int rc = -1;
    if (nval > 0 && !(*val = tg_dataset_subset(ds, perm, nval, err, errlen))) goto done;
    if (!(*train = tg_dataset_subset(ds, perm + nval, ds->n - nval, err, errlen))) goto done;
    rc = 0;
done:
    if (rc) {
        tg_dataset_free(*val);
        *val = NULL;
    }
    free(perm);
    return rc;
}

tg_dataset *tg_dataset_windows(const tg_dataset *ds, int64_t window, int64_t horizon, int64_t stride,
                               char *err, size_t errlen) {
    const char *fn = "tg_dataset_windows";
    if (!ds) { tgd_fail(err, errlen, "%s: dataset is NULL", fn); return NULL; }
    if (stride == 0) stride = 1;
    if (window < 1 || horizon < 1 || stride < 1) {
        tgd_fail(err, errlen, "%s: window %" PRId64 ", horizon %" PRId64 " and stride %" PRId64 " must be >= 1", fn,
                 window, horizon, stride);
        return NULL;
    }
    if (window > INT64_MAX / 4 || horizon > INT64_MAX / 4) { tgd_fail(err, errlen, "%s: window or horizon too large", fn); return NULL; }
    int64_t count = 0;
    for (int64_t n = 0; n < ds->n; n++) {
        int64_t len = ds->offset[n + 1] - ds->offset[n];
        if (len >= window + horizon) count += (len - window - horizon) / stride + 1;
    }
    if (count == 0) {
        tgd_fail(err, errlen, "%s: no sequence is long enough for a window of %" PRId64 " steps and a target %" PRId64
                 " steps later (needs %" PRId64 " steps; the longest has %" PRId64 ")", fn, window, horizon,
                 window + horizon, ds->max_len);
        return NULL;
    }
    if (mul_ok(count, window) < 0) { tgd_fail(err, errlen, "%s: %" PRId64 " windows of %" PRId64 " steps are too many", fn, count, window); return NULL; }
    const int64_t I = ds->features;
    tg_dataset *out = tgd_alloc(count, I, count * window, TG_LABELS_VALUE, I, err, errlen);
    if (!out) return NULL;
    int64_t k = 0;
    for (int64_t n = 0; n < ds->n; n++) {
        int64_t b = ds->offset[n], len = ds->offset[n + 1] - b;
        for (int64_t s = 0; s + window + horizon <= len; s += stride, k++) {
            memcpy(out->x + k * window * I, ds->x + (b + s) * I, (size_t)(window * I) * sizeof(double));
            memcpy(out->values + k * I, ds->x + (b + s + window - 1 + horizon) * I, (size_t)I * sizeof(double));
            out->offset[k + 1] = (k + 1) * window;
        }
    }
    if (copy_names(out, ds, err, errlen) || tgd_finish(out, fn, err, errlen)) { tg_dataset_free(out); return NULL; }
    return out;
}

/* ---- normalisation ----------------------------------------------------------------------------- */

void tg_norm_clear(tg_norm *norm) {
    if (!norm) return;
    free(norm->mean);
    free(norm->std);
    memset(norm, 0, sizeof *norm);
}

static int norm_alloc(tg_norm *out, int64_t features, char *err, size_t errlen) {
    memset(out, 0, sizeof *out);
    out->mean = alloc_array(features, sizeof(double));
    out->std = alloc_array(features, sizeof(double));
    if (!out->mean || !out->std) { tg_norm_clear(out); return tgd_fail(err, errlen, "out of memory"); }
    out->features = features;
    return 0;
}

int tg_norm_fit(const tg_dataset *ds, tg_norm *out, char *err, size_t errlen) {
    if (!ds || !out) return tgd_fail(err, errlen, "tg_norm_fit: %s is NULL", !ds ? "dataset" : "out");
    const int64_t I = ds->features, S = ds->offset[ds->n];
    if (norm_alloc(out, I, err, errlen)) return -1;
    /* two passes (mean, then squared deviations): exact for a constant feature, no cancellation */
    for (int64_t i = 0; i < I; i++) {
        double sum = 0, dev = 0;
        for (int64_t s = 0; s < S; s++) sum += ds->x[s * I + i];
        double mean = sum / (double)S;
        for (int64_t s = 0; s < S; s++) {
            double d = ds->x[s * I + i] - mean;
            dev += d * d;
        }
        double sd = sqrt(dev / (double)S);
        out->mean[i] = mean;
        out->std[i] = sd > 0 && isfinite(sd) ? sd : 1.0;
    }
    return 0;
}

static bool norm_fits(const tg_dataset *ds, const tg_norm *norm, const char *fn, char *err, size_t errlen) {
    if (!ds || !norm || !norm->mean || !norm->std) {
        char m[64];
        snprintf(m, sizeof m, "%s", !ds ? "dataset is NULL" : "norm is NULL or empty");
        if (err) tgd_fail(err, errlen, "%s: %s", fn, m);
        else tg_error(fn, "%s", m);
        return false;
    }
    if (norm->features != ds->features) {
        if (err) tgd_fail(err, errlen, "%s: the statistics are for %" PRId64 " features, the dataset has %" PRId64, fn,
                          norm->features, ds->features);
        else tg_error(fn, "the statistics are for %" PRId64 " features, the dataset has %" PRId64, norm->features, ds->features);
        return false;
    }
    return true;
}

void tg_norm_apply(tg_dataset *ds, const tg_norm *norm) {
    if (!norm_fits(ds, norm, "tg_norm_apply", NULL, 0)) return;
    const int64_t I = ds->features, S = ds->offset[ds->n];
    for (int64_t s = 0; s < S; s++)
        for (int64_t i = 0; i < I; i++) ds->x[s * I + i] = (ds->x[s * I + i] - norm->mean[i]) / norm->std[i];
}

int tg_norm_apply_values(tg_dataset *ds, const tg_norm *norm, char *err, size_t errlen) {
    if (!ds || !norm || !norm->mean || !norm->std)
        return tgd_fail(err, errlen, "tg_norm_apply_values: %s", !ds ? "dataset is NULL" : "norm is NULL or empty");
    if (ds->kind != TG_LABELS_VALUE || ds->outputs != norm->features)
        return tgd_fail(err, errlen, "tg_norm_apply_values: the dataset has %s labels%s, not %" PRId64 " values per sequence",
                        tg_label_kind_name(ds->kind), ds->kind == TG_LABELS_VALUE ? " of another width" : "", norm->features);
    for (int64_t n = 0; n < ds->n; n++)
        for (int64_t o = 0; o < ds->outputs; o++)
            ds->values[n * ds->outputs + o] = (ds->values[n * ds->outputs + o] - norm->mean[o]) / norm->std[o];
    return 0;
}

char *tg_norm_to_string(const tg_norm *norm) {
    if (!norm || norm->features < 1 || !norm->mean || !norm->std || norm->features > INT64_MAX / 64) return NULL;
    size_t cap = (size_t)norm->features * 2 * 26 + 2, len = 0;
    char *s = tg_malloc(cap);
    if (!s) return NULL;
    for (int part = 0; part < 2; part++)
        for (int64_t i = 0; i < norm->features; i++) {
            const char *sep = i ? "," : part ? ";" : "";
            len += (size_t)snprintf(s + len, cap - len, "%s%.17g", sep, part ? norm->std[i] : norm->mean[i]);
        }
    return s;
}

/* Parses one comma-separated list of finite doubles ending at `stop`; returns the count or -1. */
static int64_t parse_list(const char *s, const char *stop, double *out, const char *what, char *err, size_t errlen) {
    int64_t k = 0;
    const char *p = s;
    for (;;) {
        char *end;
        double v = strtod(p, &end);
        if (end == p || (*end != ',' && end != stop) || !isfinite(v) || *p == ' ' || *p == '\t')
            return tgd_fail(err, errlen, "tg_norm_from_string: %s %" PRId64 " (at character %td) is not a finite number",
                            what, k, p - s);
        if (out) out[k] = v;
        k++;
        if (end == stop) return k;
        p = end + 1;
    }
}

int tg_norm_from_string(const char *s, tg_norm *out, char *err, size_t errlen) {
    if (!s || !out) return tgd_fail(err, errlen, "tg_norm_from_string: %s is NULL", !s ? "string" : "out");
    memset(out, 0, sizeof *out);
    const char *semi = strchr(s, ';');
    if (!semi || strchr(semi + 1, ';'))
        return tgd_fail(err, errlen, "tg_norm_from_string: expected \"mean0,mean1,...;std0,std1,...\" (one ';')");
    const char *end = semi + strlen(semi);
    int64_t nm = parse_list(s, semi, NULL, "mean", err, errlen);
    if (nm < 0) return -1;
    int64_t ns = parse_list(semi + 1, end, NULL, "std", err, errlen);
    if (ns < 0) return -1;
    if (nm != ns) return tgd_fail(err, errlen, "tg_norm_from_string: %" PRId64 " means but %" PRId64 " stds", nm, ns);
    tg_norm tmp;
    if (norm_alloc(&tmp, nm, err, errlen)) return -1;
    parse_list(s, semi, tmp.mean, "mean", err, errlen);
    parse_list(semi + 1, end, tmp.std, "std", err, errlen);
    for (int64_t i = 0; i < nm; i++)
        if (!(tmp.std[i] > 0)) {
            tg_norm_clear(&tmp);
            return tgd_fail(err, errlen, "tg_norm_from_string: std %" PRId64 " is not positive", i);
        }
    *out = tmp;
    return 0;
}
