/* nn/loss.c - MSE, L1, smooth L1, Huber, KL divergence, cross-entropy / NLL (class indices or
 * probabilities), binary cross-entropy on probabilities and with logits (PyTorch semantics).
 *
 * Dimension letters: N (rows, e.g. batch x time flattened), C (classes), d1... (extra positions of a
 * [N,C,d1,...] input).
 *
 * Every loss is a composition of public ops, so the tape differentiates it; the only work done here by
 * hand is argument checking and building constant (non-differentiated) tensors: the class-weight mask
 * of cross-entropy and its denominator. Constants are created as new references and released right
 * after the op that uses them: an op that saves them for backward holds its own reference. */
#include <tapegrad/autograd.h>
#include <tapegrad/loss.h>
#include <tapegrad/ops.h>
#include "tensor/alloc.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static bool arg_ok(const char *fn, const char *name, const tg_tensor *t) {
    /* A NULL produced by an earlier failed op stays silent, keeping that op's message. */
    if (!t) {
        if (!tg_error_pending()) tg_error(fn, "argument %s is NULL", name);
        return false;
    }
    return true;
}

static bool reduction_ok(const char *fn, tg_reduction r) {
    if (r == TG_REDUCE_MEAN || r == TG_REDUCE_SUM || r == TG_REDUCE_NONE) return true;
    tg_error(fn, "reduction %d is not TG_REDUCE_MEAN, TG_REDUCE_SUM or TG_REDUCE_NONE%s", (int)r,
             r == TG_REDUCE_BATCHMEAN ? " (TG_REDUCE_BATCHMEAN is only for tg_kl_div)" : "");
    return false;
}

static bool same_shape_dtype(const char *fn, const char *na, const tg_tensor *a, const char *nb, const tg_tensor *b) {
    if (tg_same_shape(a, b) && tg_dtype_of(a) == tg_dtype_of(b)) return true;
    char s1[128], s2[128];
    tg_error(fn, "%s %s %s and %s %s %s: shapes or dtypes differ", na, tg_shape_str(a, s1, sizeof s1),
             tg_dtype_name(tg_dtype_of(a)), nb, tg_shape_str(b, s2, sizeof s2), tg_dtype_name(tg_dtype_of(b)));
    return false;
}

/* t / n with n a constant (torch divides; multiplying by 1/n would differ in the last bit) */
static tg_tensor *div_by(tg_tensor *t, double n) {
    if (!t) return NULL;
    tg_tensor *d = tg_scalar(tg_dtype_of(t), n);
    tg_tensor *q = tg_div(t, d);
    tg_release(d);
    return q;
}

static tg_tensor *reduce(tg_tensor *per_element, tg_reduction r) {
    switch (r) {
    case TG_REDUCE_MEAN: return tg_mean(per_element);
    case TG_REDUCE_SUM: return tg_sum(per_element);
    case TG_REDUCE_BATCHMEAN: /* sum / N (0-d input: the sum), torch's 'batchmean' */
        return per_element && tg_ndim(per_element) > 0 ? div_by(tg_sum(per_element), (double)tg_dim(per_element, 0))
                                                       : tg_sum(per_element);
    default: return per_element;
    }
}

/* ---- MSE ---------------------------------------------------------------------------------------- */

/* l = (input - target)² */
tg_tensor *tg_mse_loss(const tg_tensor *input, const tg_tensor *target, tg_reduction reduction) {
    const char *fn = "tg_mse_loss";
    if (!arg_ok(fn, "input", input) || !arg_ok(fn, "target", target) || !reduction_ok(fn, reduction)) return NULL;
    if (!same_shape_dtype(fn, "input", input, "target", target)) return NULL;
    tg_tensor *diff = tg_sub(input, target);
    return reduce(tg_mul(diff, diff), reduction);
}

/* ---- cross-entropy and NLL ---------------------------------------------------------------------- */

tg_cross_entropy_opts tg_cross_entropy_defaults(void) {
    return (tg_cross_entropy_opts){.reduction = TG_REDUCE_MEAN, .ignore_index = -100, .weight = NULL,
                                   .label_smoothing = 0.0};
}

/* Checks the [N,C] or [N,C,d1,...] input, the N·d1·... targets and the options; on success *N, *C
 * and *inner (the product of d1, ..., 1 for [N,C]) are set. */
static bool check_nll_args(const char *fn, const tg_tensor *x, const int64_t *target,
                           const tg_cross_entropy_opts *o, int64_t *N, int64_t *C, int64_t *inner) {
    if (!arg_ok(fn, "logits", x) || !reduction_ok(fn, o->reduction)) return false;
    char s[128], s2[128];
    if (tg_ndim(x) < 2) {
        tg_error(fn, "input %s must be [N,C] or [N,C,d1,...] (classes on axis 1)", tg_shape_str(x, s, sizeof s));
        return false;
    }
    *N = tg_dim(x, 0);
    *C = tg_dim(x, 1);
    *inner = 1;
    for (int d = 2; d < tg_ndim(x); d++) *inner *= tg_dim(x, d);
    const int64_t n_targets = *N * *inner;
    if (n_targets > 0 && !target) { tg_error(fn, "input %s: target is NULL", tg_shape_str(x, s, sizeof s)); return false; }
    for (int64_t i = 0; i < n_targets; i++) {
        if (target[i] == o->ignore_index) continue;
        if (target[i] < 0 || target[i] >= *C) {
            tg_error(fn, "input %s: target[%lld] = %lld is outside [0, %lld) and is not ignore_index %lld",
                     tg_shape_str(x, s, sizeof s), (long long)i, (long long)target[i], (long long)*C,
                     (long long)o->ignore_index);
            return false;
        }
    }
    if (o->weight) {
        if (tg_ndim(o->weight) != 1 || tg_dim(o->weight, 0) != *C) {
            tg_error(fn, "input %s: class weights %s must be [%lld]", tg_shape_str(x, s, sizeof s),
                     tg_shape_str(o->weight, s2, sizeof s2), (long long)*C);
            return false;
        }
    }
    if (!(o->label_smoothing >= 0.0 && o->label_smoothing <= 1.0)) {
        tg_error(fn, "label_smoothing %g is outside [0, 1]", o->label_smoothing);
        return false;
    }
    return true;
}

/* l_i = -Σ_c M_ic logp_ic, where the constant mask M (shaped like the input; i runs over n and the
 * positions d1... of a [N,C,d1,...] input) holds
 *   M_ic = (1-ε) w[t_i] [c = t_i] + (ε/C) w_c   for targets that are not ignored, 0 otherwise;
 * mean = Σ_i l_i / Σ_{i not ignored} w[t_i]  (PyTorch's weighted mean, also used with smoothing). */
static tg_tensor *nll_from_log_probs(const tg_tensor *logp, const int64_t *target, const tg_cross_entropy_opts *o,
                                     int64_t N, int64_t C, int64_t inner) {
    if (!logp) return NULL;
    tg_dtype dt = tg_dtype_of(logp);
    tg_tensor *mask = tg_zeros(dt, tg_ndim(logp), tg_shape(logp));
    if (!mask) return NULL;
    float *m32 = dt == TG_F32 ? tg_data(mask) : NULL;
    double *m64 = dt == TG_F64 ? tg_data(mask) : NULL;
    const double eps = o->label_smoothing;
    double denom = 0.0;
#define MASK_AT(i, c) ((((i) / inner) * C + (c)) * inner + (i) % inner) /* target i = n·inner + j */
    for (int64_t i = 0; i < N * inner; i++) {
        if (target[i] == o->ignore_index) continue;
        double wt = o->weight ? tg_get(o->weight, target[i]) : 1.0;
        denom += wt;
        for (int64_t c = 0; c < C; c++) {
            double v = eps > 0 ? eps / (double)C * (o->weight ? tg_get(o->weight, c) : 1.0) : 0.0;
            if (c == target[i]) v += (1.0 - eps) * wt;
            if (m32) m32[MASK_AT(i, c)] = (float)v;
            else m64[MASK_AT(i, c)] = v;
        }
    }
    tg_bump_version(mask);
    if (o->reduction == TG_REDUCE_MEAN && denom == 0.0) {
        /* Σ w[t_i] = 0 (every target ignored, or only zero-weight classes): torch's loss is 0/0 = NaN,
         * but its nll backward writes -w[t_i]/0 only into non-ignored rows, so ignored rows get a
         * gradient of exactly 0 (an all-padding batch does not poison the parameters) and zero-weight
         * rows get -0/0 = NaN (at the target column; at every column with smoothing, whose term torch also
         * divides by 0). The mask is scaled by 1/denom here, ignored rows left at 0, and the NaN
         * of the forward value comes from a constant that has no gradient. */
        for (int64_t i = 0; i < N * inner; i++) {
            if (target[i] == o->ignore_index) continue;
            for (int64_t c = 0; c < C; c++)
                if (c == target[i] || eps > 0) tg_set(mask, MASK_AT(i, c), tg_get(mask, MASK_AT(i, c)) / denom);
        }
        tg_tensor *mean = tg_add_scalar(tg_neg(tg_sum(tg_mul(logp, mask))), NAN);
        tg_release(mask);
        return mean;
    }
#undef MASK_AT
    tg_tensor *per_row = tg_neg(tg_sum_axis(tg_mul(logp, mask), 1, false)); /* [N] or [N,d1,...] */
    tg_release(mask);
    if (o->reduction == TG_REDUCE_NONE) return per_row;
    tg_tensor *total = tg_sum(per_row);
    if (o->reduction == TG_REDUCE_SUM) return total;
    return div_by(total, denom);
}

tg_tensor *tg_cross_entropy(const tg_tensor *logits, const int64_t *target, const tg_cross_entropy_opts *opts) {
    tg_cross_entropy_opts o = opts ? *opts : tg_cross_entropy_defaults();
    int64_t N, C, inner;
    if (!check_nll_args("tg_cross_entropy", logits, target, &o, &N, &C, &inner)) return NULL;
    return nll_from_log_probs(tg_log_softmax(logits, 1), target, &o, N, C, inner);
}

tg_tensor *tg_nll_loss(const tg_tensor *log_probs, const int64_t *target, const tg_cross_entropy_opts *opts) {
    tg_cross_entropy_opts o = opts ? *opts : tg_cross_entropy_defaults();
    int64_t N, C, inner;
    if (!check_nll_args("tg_nll_loss", log_probs, target, &o, &N, &C, &inner)) return NULL;
    return nll_from_log_probs(log_probs, target, &o, N, C, inner);
}

/* ---- binary cross-entropy with logits ----------------------------------------------------------- */

/* Broadcasting `w` against x must leave x's shape unchanged (PyTorch: "weight must be broadcastable
 * to input"). */
static bool broadcasts_into(const char *fn, const char *name, const tg_tensor *w, const tg_tensor *x) {
    int nw = tg_ndim(w), nx = tg_ndim(x);
    bool ok = nw <= nx;
    for (int d = 0; ok && d < nw; d++) {
        int64_t ew = tg_dim(w, d), ex = tg_dim(x, nx - nw + d);
        ok = ew == ex || ew == 1;
    }
    if (ok && tg_dtype_of(w) == tg_dtype_of(x)) return true;
    char s1[128], s2[128];
    tg_error(fn, "%s %s %s does not broadcast to input %s %s", name, tg_shape_str(w, s1, sizeof s1),
             tg_dtype_name(tg_dtype_of(w)), tg_shape_str(x, s2, sizeof s2), tg_dtype_name(tg_dtype_of(x)));
    return false;
}

tg_tensor *tg_bce_with_logits(const tg_tensor *logits, const tg_tensor *target, const tg_bce_opts *opts) {
    const char *fn = "tg_bce_with_logits";
    tg_bce_opts o = opts ? *opts : (tg_bce_opts){.reduction = TG_REDUCE_MEAN};
    if (!arg_ok(fn, "logits", logits) || !arg_ok(fn, "target", target) || !reduction_ok(fn, o.reduction)) return NULL;
    if (!same_shape_dtype(fn, "logits", logits, "target", target)) return NULL;
    if (o.weight && !broadcasts_into(fn, "weight", o.weight, logits)) return NULL;
    if (o.pos_weight && !broadcasts_into(fn, "pos_weight", o.pos_weight, logits)) return NULL;
    tg_tensor *loss;
    if (!o.pos_weight) {
        /* l = softplus(x) - x y : softplus is max(x,0) + log1p(e^-|x|), exact at ±1e4 */
        loss = tg_sub(tg_softplus(logits), tg_mul(logits, target));
    } else {
        /* l = (1-y) x + (1 + (p-1) y) softplus(-x)   (softplus(-x) = -log σ(x)) */
        tg_tensor *log_weight = tg_add_scalar(tg_mul(tg_add_scalar(o.pos_weight, -1.0), target), 1.0);
        loss = tg_add(tg_mul(tg_rsub_scalar(1.0, target), logits), tg_mul(log_weight, tg_softplus(tg_neg(logits))));
    }
    if (o.weight) loss = tg_mul(loss, o.weight);
    return reduce(loss, o.reduction);
}

/* ---- L1, smooth L1, Huber, KL divergence, BCE on probabilities ---------------------------------- */

/* Checks shared by the per-element losses, then tg_pointwise_loss and the reduction. */
static tg_tensor *pointwise(const char *fn, const tg_tensor *input, const tg_tensor *target, tg_reduction r,
                            tg_pointwise_kind kind, double param, const tg_tensor *weight) {
    bool batchmean_ok = kind == TG_PWL_KL || kind == TG_PWL_KL_LOG_TARGET;
    if (!arg_ok(fn, "input", input) || !arg_ok(fn, "target", target)) return NULL;
    if (!(batchmean_ok && r == TG_REDUCE_BATCHMEAN) && !reduction_ok(fn, r)) return NULL;
    if (!same_shape_dtype(fn, "input", input, "target", target)) return NULL;
    if (weight && !broadcasts_into(fn, "weight", weight, input)) return NULL;
    tg_tensor *loss = tg_pointwise_loss(input, target, kind, param);
    if (weight) loss = tg_mul(loss, weight);
    return loss ? reduce(loss, r) : NULL;
}

tg_tensor *tg_l1_loss(const tg_tensor *input, const tg_tensor *target, tg_reduction reduction) {
    return pointwise("tg_l1_loss", input, target, reduction, TG_PWL_L1, 0.0, NULL);
}

tg_tensor *tg_smooth_l1_loss(const tg_tensor *input, const tg_tensor *target, tg_reduction reduction, double beta) {
    const char *fn = "tg_smooth_l1_loss";
    if (!(beta >= 0) || isinf(beta)) { /* torch: "smooth_l1_loss does not support negative values for beta." */
        tg_error(fn, "beta %g must be finite and >= 0", beta);
        return NULL;
    }
    /* β = 0 keeps torch's smooth-L1 kernel (not l1_loss): the value is |d|, the gradient at d = 0 is -1 */
    return pointwise(fn, input, target, reduction, TG_PWL_SMOOTH_L1, beta, NULL);
}

tg_tensor *tg_huber_loss(const tg_tensor *input, const tg_tensor *target, tg_reduction reduction, double delta) {
    const char *fn = "tg_huber_loss";
    if (!(delta > 0) || isinf(delta)) { /* torch: "huber_loss does not support non-positive values for delta." */
        tg_error(fn, "delta %g must be finite and > 0", delta);
        return NULL;
    }
    return pointwise(fn, input, target, reduction, TG_PWL_HUBER, delta, NULL);
}

tg_tensor *tg_kl_div(const tg_tensor *input, const tg_tensor *target, tg_reduction reduction, bool log_target) {
    return pointwise("tg_kl_div", input, target, reduction, log_target ? TG_PWL_KL_LOG_TARGET : TG_PWL_KL, 0.0, NULL);
}

tg_tensor *tg_binary_cross_entropy(const tg_tensor *input, const tg_tensor *target, const tg_bce_opts *opts) {
    const char *fn = "tg_binary_cross_entropy";
    tg_bce_opts o = opts ? *opts : (tg_bce_opts){.reduction = TG_REDUCE_MEAN};
    if (o.pos_weight) {
        tg_error(fn, "pos_weight is only for tg_bce_with_logits (torch's binary_cross_entropy has none)");
        return NULL;
    }
    return pointwise(fn, input, target, o.reduction, TG_PWL_BCE, 0.0, o.weight);
}

/* ---- cross-entropy with probability targets ----------------------------------------------------- */

/* l_n = -Σ_c w_c t'_nc log_softmax(x)_nc with t' = (1-ε) t + ε/C; mean = Σ l / (numel / C). */
tg_tensor *tg_cross_entropy_probs(const tg_tensor *logits, const tg_tensor *target, const tg_cross_entropy_opts *opts) {
    const char *fn = "tg_cross_entropy_probs";
    tg_cross_entropy_opts o = opts ? *opts : tg_cross_entropy_defaults();
    if (!arg_ok(fn, "logits", logits) || !arg_ok(fn, "target", target) || !reduction_ok(fn, o.reduction)) return NULL;
    char s[128], s2[128];
    if (tg_ndim(logits) < 2) {
        tg_error(fn, "input %s must be [N,C] or [N,C,d1,...] (classes on axis 1)", tg_shape_str(logits, s, sizeof s));
        return NULL;
    }
    if (!same_shape_dtype(fn, "logits", logits, "target", target)) return NULL;
    const int nd = tg_ndim(logits);
    const int64_t C = tg_dim(logits, 1);
    if (o.weight && (tg_ndim(o.weight) != 1 || tg_dim(o.weight, 0) != C || tg_dtype_of(o.weight) != tg_dtype_of(logits))) {
        tg_error(fn, "input %s: class weights %s %s must be [%lld] %s", tg_shape_str(logits, s, sizeof s),
                 tg_shape_str(o.weight, s2, sizeof s2), tg_dtype_name(tg_dtype_of(o.weight)), (long long)C,
                 tg_dtype_name(tg_dtype_of(logits)));
        return NULL;
    }
    if (!(o.label_smoothing >= 0.0 && o.label_smoothing <= 1.0)) {
        tg_error(fn, "label_smoothing %g is outside [0, 1]", o.label_smoothing);
        return NULL;
    }
    const tg_tensor *t = target;
    if (o.label_smoothing > 0) t = tg_affine(target, 1.0 - o.label_smoothing, o.label_smoothing / (double)C);
    tg_tensor *prod = tg_mul(tg_log_softmax(logits, 1), t);
    if (o.weight) {
        int64_t wshape[TG_MAX_DIMS]; /* [1,C,1,...]: broadcast along axis 1 */
        for (int d = 0; d < nd; d++) wshape[d] = d == 1 ? C : 1;
        prod = tg_mul(prod, tg_reshape(o.weight, nd, wshape));
    }
    tg_tensor *per = tg_neg(tg_sum_axis(prod, 1, false)); /* [N] or [N,d1,...] */
    if (o.reduction == TG_REDUCE_NONE) return per;
    tg_tensor *total = tg_sum(per);
    if (o.reduction == TG_REDUCE_SUM) return total;
    return div_by(total, C ? (double)(tg_numel(logits) / C) : 0.0); /* no elements: 0/0 = NaN, like torch */
}

/* ---- CTC ---------------------------------------------------------------------------------------- */

tg_tensor *tg_ctc_loss(const tg_tensor *log_probs, const int64_t *targets, int64_t target_stride,
                       const int64_t *input_lengths, const int64_t *target_lengths, const tg_ctc_opts *opts) {
    const char *fn = "tg_ctc_loss";
    tg_ctc_opts o = opts ? *opts : (tg_ctc_opts){.blank = 0, .reduction = TG_REDUCE_MEAN};
    if (!arg_ok(fn, "log_probs", log_probs) || !reduction_ok(fn, o.reduction)) return NULL;
    char s[128];
    const int nd = tg_ndim(log_probs);
    if (nd != 2 && nd != 3) {
        tg_error(fn, "log_probs %s must be [T,N,C] or [T,C] (one sequence)", tg_shape_str(log_probs, s, sizeof s));
        return NULL;
    }
    const tg_tensor *lp3 = nd == 3 ? log_probs : tg_reshape(log_probs, 3, (int64_t[]){tg_dim(log_probs, 0), 1, tg_dim(log_probs, 1)});
    tg_tensor *nll = tg_ctc_nll(lp3, targets, target_stride, input_lengths, target_lengths, o.blank, o.zero_infinity);
    if (!nll) return NULL;
    if (o.reduction == TG_REDUCE_NONE) return nd == 3 ? nll : tg_reshape(nll, 0, NULL);
    if (o.reduction == TG_REDUCE_SUM) return tg_sum(nll);
    const int64_t N = tg_dim(lp3, 1);
    tg_tensor *len = tg_zeros(tg_dtype_of(log_probs), 1, &N); /* max(target_length, 1), a constant */
    if (!len) return NULL;
    for (int64_t n = 0; n < N; n++) tg_set(len, n, (double)(target_lengths[n] > 1 ? target_lengths[n] : 1));
    tg_tensor *mean = tg_mean(tg_div(nll, len));
    tg_release(len);
    return mean;
}

int64_t tg_ctc_greedy_decode(const tg_tensor *log_probs, int64_t n, int64_t length, int64_t blank, int64_t *out,
                             int64_t cap) {
    const char *fn = "tg_ctc_greedy_decode";
    if (!arg_ok(fn, "log_probs", log_probs)) return -1;
    char s[128];
    if (tg_ndim(log_probs) != 3 || n < 0 || n >= tg_dim(log_probs, 1) || length < 0 || length > tg_dim(log_probs, 0) ||
        blank < 0 || blank >= tg_dim(log_probs, 2) || cap < 0 || (cap > 0 && !out)) {
        tg_error(fn, "log_probs %s (must be [T,N,C]): sequence %lld, length %lld, blank %lld or output of %lld labels out of range",
                 tg_shape_str(log_probs, s, sizeof s), (long long)n, (long long)length, (long long)blank, (long long)cap);
        return -1;
    }
    const int64_t N = tg_dim(log_probs, 1), C = tg_dim(log_probs, 2);
    int64_t count = 0, prev = -1;
    for (int64_t t = 0; t < length; t++) {
        int64_t best = 0;
        double bv = -INFINITY;
        for (int64_t c = 0; c < C; c++) {
            double v = tg_get(log_probs, (t * N + n) * C + c);
            if (v > bv) { bv = v; best = c; }
        }
        if (best != blank && best != prev) {
            if (count < cap) out[count] = best;
            count++;
        }
        prev = best;
    }
    return count;
}

int64_t tg_edit_distance(const int64_t *a, int64_t na, const int64_t *b, int64_t nb) {
    if (na < 0 || nb < 0 || (na > 0 && !a) || (nb > 0 && !b)) return -1;
    int64_t *row = tg_malloc((size_t)(nb + 1) * sizeof *row); /* one row of the DP table */
    if (!row) return -1;
    for (int64_t j = 0; j <= nb; j++) row[j] = j;
    for (int64_t i = 1; i <= na; i++) {
        int64_t diag = row[0];
        row[0] = i;
        for (int64_t j = 1; j <= nb; j++) {
            int64_t up = row[j], best = diag + (a[i - 1] != b[j - 1]);
            if (up + 1 < best) best = up + 1;
            if (row[j - 1] + 1 < best) best = row[j - 1] + 1;
            diag = up;
            row[j] = best;
        }
    }
    int64_t d = row[nb];
    free(row);
    return d;
}
