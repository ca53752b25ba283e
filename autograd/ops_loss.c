/* autograd/ops_loss.c - fused loss ops whose forward and backward must be torch's own formulas:
 * the per-element losses (L1, smooth L1, Huber, KL divergence, binary cross-entropy on probabilities)
 * and CTC (its forward-backward recursions in log space).
 *
 * Why fused ops rather than compositions of public ops: torch's backward of these losses is not the
 * derivative of a composition in every corner. BCE clamps its logs at -100 in the forward but divides
 * by max(x(1-x), 1e-12) in the backward (finite, non-zero gradients at x = 0 and 1); smooth L1 / Huber
 * give a NaN gradient for a NaN difference (a clamp would give 0); L1's gradient is torch's sgn(x - y), 0
 * for NaN. Writing torch's kernels here makes every such case follow torch exactly. */
#include "autograd/ops_common.h"
#include "tensor/alloc.h"

#include <stdint.h>
#include <stdlib.h>
#include <tgmath.h>

/* torch's std::max(a, b) = a < b ? b : a, so a NaN a stays NaN (fmax would drop it). */
#define TORCH_MAX(a, b) ((a) < (b) ? (b) : (a))
/* torch's sgn for reals: -1, 0, 1, and 0 for NaN (torch.sgn(nan) = 0, so L1's gradient is 0 there). */
#define TORCH_SGN(d) ((d) > 0 ? (T)1 : ((d) < 0 ? (T)-1 : (T)0))
/* xlogy(a, b) = 0 if a == 0 (and b is not NaN), else a log b. */
#define XLOGY(a, b) (isnan(b) ? (b) : ((a) == 0 ? (T)0 : (a) * log(b)))

TG_OP(POINTWISE_LOSS, pointwise_loss, 2, IN0 | IN1) /* loss(x, y) per element; k[0] kind, f[0] β/δ */
tg_tensor *tg_pointwise_loss(const tg_tensor *x, const tg_tensor *y, tg_pointwise_kind kind, double param) {
    const char *fn = "tg_pointwise_loss";
    if (!tg__check(fn, "input", x) || !tg__check(fn, "target", y)) return NULL;
    char s1[128], s2[128];
    if (!tg_same_shape(x, y) || x->dtype != y->dtype) {
        tg_error(fn, "input %s %s and target %s %s: shapes or dtypes differ", tg_shape_str(x, s1, sizeof s1),
                 tg_dtype_name(x->dtype), tg_shape_str(y, s2, sizeof s2), tg_dtype_name(y->dtype));
        return NULL;
    }
    if ((unsigned)kind >= TG_PWL_COUNT) { tg_error(fn, "unknown loss kind %d", (int)kind); return NULL; }
    if (kind == TG_PWL_SMOOTH_L1 && !(param >= 0 && isfinite(param))) {
        tg_error(fn, "smooth L1: beta %g must be finite and >= 0", param);
        return NULL;
    }
    if (kind == TG_PWL_HUBER && !(param > 0 && isfinite(param))) {
        tg_error(fn, "Huber: delta %g must be finite and > 0", param);
        return NULL;
    }
    if (kind == TG_PWL_BCE) {
        /* torch: "all elements of input should be between 0 and 1" (NaN included) */
        for (int64_t i = 0; i < x->numel; i++) {
            double v = tg_get(x, i);
            if (!(v >= 0 && v <= 1)) {
                tg_error(fn, "binary cross-entropy: input %s: element %lld is %g; all elements of input should be between 0 and 1",
                         tg_shape_str(x, s1, sizeof s1), (long long)i, v);
                return NULL;
            }
        }
    }
    tg_tensor *out = tg__result(x->dtype, x->ndim, x->shape);
    if (!out) return NULL;
    TG_DISPATCH(x->dtype, {
        const T *px = TG_PTR(x, T), *py = TG_PTR(y, T);
        T *po = TG_PTR(out, T);
        const T p = (T)param;
        for (int64_t i = 0; i < x->numel; i++) {
            const T a = px[i], b = py[i], d = a - b, z = fabs(d);
            T l;
            switch (kind) {
            case TG_PWL_L1: l = z; break;
            /* z < β ? z²/(2β) : z - β/2 */
            case TG_PWL_SMOOTH_L1: l = z < p ? (T)0.5 * z * z / p : z - (T)0.5 * p; break;
            /* z < δ ? z²/2 : δ (z - δ/2) */
            case TG_PWL_HUBER: l = z < p ? (T)0.5 * z * z : p * (z - (T)0.5 * p); break;
            /* xlogy(y, y) - y x */
            case TG_PWL_KL: l = XLOGY(b, b) - b * a; break;
            /* e^y (y - x) */
            case TG_PWL_KL_LOG_TARGET: l = exp(b) * (b - a); break;
            /* (y - 1) max(log(1-x), -100) - y max(log x, -100) */
            default: l = (b - 1) * TORCH_MAX(log1p(-a), (T)-100) - b * TORCH_MAX(log(a), (T)-100); break;
            }
            po[i] = l;
        }
    });
    const tg_tensor *in[2] = {x, y};
    tg_record *r = tg__record(TG_OP_POINTWISE_LOSS, out, 2, in);
    if (r) { r->k[0] = kind; r->f[0] = param; }
    return out;
}

/* With d = x - y and g the upstream gradient (torch's *_backward kernels):
 *   L1        dx += g sgn(d)                                  dy -= g sgn(d)
 *   smooth L1 dx += g s(d), s(e) = e <= -β ? -1 : e >= β ? 1 : e/β    dy += g s(-d)
 *   Huber     dx += g h(d), h(e) = e <= -δ ? -δ : e >= δ ? δ : e        dy += g h(-d)
 *   KL        dx += -g y                                     dy += g (xlogy(y != 0, y) + y/y - x)
 *   KL log    dx += -g e^y                                   dy += g (e^y (y - x) + e^y)
 *   BCE       dx += g (x - y) / max((1-x) x, 1e-12f)          dy += -g logit(x) = -g log(x / (1-x)) */
#define SMOOTH_L1_GRAD(e) ((e) <= -p ? -gi : ((e) >= p ? gi : gi * (e) / p))
#define HUBER_GRAD(e) ((e) <= -p ? -gi * p : ((e) >= p ? gi * p : gi * (e)))
/* torch's EPSILON of the BCE backward is a float: 1e-12f = 9.99999996e-13 */
#define BCE_EPSILON 1e-12f
void tg__pointwise_loss_backward(tg_record *r, const tg_tensor *g) {
    tg_tensor *gx = tg__grad_buf(r->in[0]), *gy = tg__grad_buf(r->in[1]);
    if (!gx && !gy) return;
    const tg_pointwise_kind kind = (tg_pointwise_kind)r->k[0];
    TG_DISPATCH(g->dtype, {
        const T *px = TG_PTR(r->in[0], T), *py = TG_PTR(r->in[1], T), *pg = TG_PTR(g, T);
        T *dx = gx ? TG_PTR(gx, T) : NULL, *dy = gy ? TG_PTR(gy, T) : NULL;
        const T p = (T)r->f[0];
        for (int64_t i = 0; i < g->numel; i++) {
            const T a = px[i], b = py[i], d = a - b, gi = pg[i];
            T ga, gb;
            switch (kind) {
            case TG_PWL_L1: ga = gi * TORCH_SGN(d); gb = -ga; break;
            /* the target's gradient is torch's kernel at y - x (so with β = 0 both are -g at d = 0) */
            case TG_PWL_SMOOTH_L1: ga = SMOOTH_L1_GRAD(d); gb = SMOOTH_L1_GRAD(-d); break;
            case TG_PWL_HUBER: ga = HUBER_GRAD(d); gb = HUBER_GRAD(-d); break;
            case TG_PWL_KL: ga = -gi * b; gb = gi * XLOGY((T)(b != 0), b) + gi * b / b - gi * a; break;
            case TG_PWL_KL_LOG_TARGET: ga = -gi * exp(b); gb = gi * (exp(b) * (b - a)) + gi * exp(b); break;
            default:
                ga = gi * (a - b) / TORCH_MAX((1 - a) * a, (T)BCE_EPSILON);
                gb = -(log(a / (1 - a))) * gi;
                break;
            }
            if (dx) dx[i] += ga;
            if (dy) dy[i] += gb;
        }
    });
}

/* ---- CTC (Graves et al. 2006), torch's CPU algorithm ------------------------------------------ *
 *
 * Dimension letters: T time steps, N sequences, C classes (blank included), S target length, L = 2S+1
 * the extended target l' (blank, l_1, blank, l_2, ..., blank). Everything in log space:
 *   α_0(0) = lp_0(blank), α_0(1) = lp_0(l_1),
 *   α_t(s) = lp_t(l'_s) + lse(α_{t-1}(s), α_{t-1}(s-1), α_{t-1}(s-2) if l'_s ≠ l'_{s-2}),
 *   nll = -lse(α_{T_n-1}(L-1), α_{T_n-1}(L-2)),
 * each lse taken around the largest term (0 when every term is -inf), as torch does. An impossible
 * alignment (too short an input for the target and its repeats) gives nll = +inf. */

#define CTC_MAX_ALPHA (INT64_C(1) << 27) /* elements of α for the whole batch: a clear error beyond */

/* l'_s of sequence n: blank at even s, its label (s-1)/2 at odd s */
/* log_probs[t, n, c] inside the loops over n */
#define LP(t, c) lp[((t) * N + n) * C + (c)]

static inline int64_t ctc_prime(const int64_t *tgt, int64_t s, int64_t blank) { return s % 2 ? tgt[s / 2] : blank; }

TG_OP(CTC, ctc_nll, 1, IN0) /* CTC -log p per sequence; aux = α, nll; idx = lengths, targets */
tg_tensor *tg_ctc_nll(const tg_tensor *log_probs, const int64_t *targets, int64_t target_stride,
                      const int64_t *input_lengths, const int64_t *target_lengths, int64_t blank, bool zero_infinity) {
    const char *fn = "tg_ctc_nll";
    if (!tg__check(fn, "log_probs", log_probs)) return NULL;
    char s1[128];
    const tg_tensor *x = log_probs;
    if (x->ndim != 3) {
        tg_error(fn, "log_probs %s must be [T,N,C]", tg_shape_str(x, s1, sizeof s1));
        return NULL;
    }
    const int64_t nT = x->shape[0], N = x->shape[1], C = x->shape[2];
    if (blank < 0 || blank >= C) {
        tg_error(fn, "log_probs %s: blank %lld is outside [0, %lld)", tg_shape_str(x, s1, sizeof s1), (long long)blank, (long long)C);
        return NULL;
    }
    if (target_stride < 0) { tg_error(fn, "target_stride %lld must be >= 0 (0: concatenated targets)", (long long)target_stride); return NULL; }
    if (N > 0 && (!input_lengths || !target_lengths)) { tg_error(fn, "input_lengths or target_lengths is NULL"); return NULL; }
    int64_t total = 0, max_tl = 0;
    for (int64_t n = 0; n < N; n++) {
        if (input_lengths[n] < 0 || input_lengths[n] > nT) {
            tg_error(fn, "log_probs %s: input_lengths[%lld] = %lld is outside [0, %lld]", tg_shape_str(x, s1, sizeof s1),
                     (long long)n, (long long)input_lengths[n], (long long)nT);
            return NULL;
        }
        int64_t tl = target_lengths[n];
        if (tl < 0 || (target_stride > 0 && tl > target_stride)) {
            tg_error(fn, "target_lengths[%lld] = %lld is outside [0, %lld]", (long long)n, (long long)tl,
                     (long long)(target_stride > 0 ? target_stride : INT64_MAX));
            return NULL;
        }
        if (tl > CTC_MAX_ALPHA) { tg_error(fn, "target_lengths[%lld] = %lld is absurdly large", (long long)n, (long long)tl); return NULL; }
        total += tl;
        if (tl > max_tl) max_tl = tl;
    }
    const int64_t L = 2 * max_tl + 1;
    if (nT > 0 && N > 0 && L > CTC_MAX_ALPHA / nT / N) {
        tg_error(fn, "log_probs %s with targets of up to %lld labels: %lld x %lld x %lld alignment states is too many",
                 tg_shape_str(x, s1, sizeof s1), (long long)max_tl, (long long)N, (long long)nT, (long long)L);
        return NULL;
    }
    if (total > 0 && !targets) { tg_error(fn, "targets is NULL"); return NULL; }
    /* idx: input lengths | target lengths | offsets | the targets of each sequence, concatenated */
    int64_t *idx = tg_malloc((size_t)(3 * N + total + 1) * sizeof *idx);
    if (!idx) { tg_error(fn, "out of memory"); return NULL; }
    int64_t off = 0;
    for (int64_t n = 0; n < N; n++) {
        const int64_t *src = targets + (target_stride > 0 ? n * target_stride : off);
        idx[n] = input_lengths[n];
        idx[N + n] = target_lengths[n];
        idx[2 * N + n] = off;
        for (int64_t j = 0; j < target_lengths[n]; j++) {
            if (src[j] < 0 || src[j] >= C || src[j] == blank) {
                tg_error(fn, "target %lld of sequence %lld is %lld: labels must be in [0, %lld) and not the blank %lld",
                         (long long)j, (long long)n, (long long)src[j], (long long)C, (long long)blank);
                free(idx);
                return NULL;
            }
            idx[3 * N + off + j] = src[j];
        }
        off += target_lengths[n];
    }
    /* α for every (n, t, s), then the N values of nll (read again by backward) */
    int64_t alpha_n = N * nT * L + N;
    tg_tensor *alpha = tg_full(x->dtype, 1, &alpha_n, -INFINITY);
    tg_tensor *out = alpha ? tg__result(x->dtype, 1, &N) : NULL;
    if (!out) { free(idx); tg_release(alpha); return NULL; }
    TG_DISPATCH(x->dtype, {
        const T *lp = TG_PTR(x, T);
        T *la = TG_PTR(alpha, T), *nll = la + N * nT * L, *po = TG_PTR(out, T);
        const T ninf = -INFINITY;
        for (int64_t n = 0; n < N; n++) {
            const int64_t il = idx[n], tl = idx[N + n], *tgt = idx + 3 * N + idx[2 * N + n];
            T *a = la + n * nT * L;
            if (il == 0) { /* torch reads uninitialised memory here; defined: an empty input matches only an empty target */
                nll[n] = tl == 0 ? (T)0 : (T)INFINITY;
            } else {
                a[0] = LP(0, blank);
                if (tl > 0) a[1] = LP(0, tgt[0]);
                for (int64_t t = 1; t < il; t++)
                    for (int64_t s = 0; s < 2 * tl + 1; s++) {
                        const int64_t c = ctc_prime(tgt, s, blank);
                        T la1 = a[(t - 1) * L + s], la2 = ninf, la3 = ninf, m = la1;
                        if (s > 0) { la2 = a[(t - 1) * L + s - 1]; if (la2 > m) m = la2; }
                        if (s > 1 && ctc_prime(tgt, s - 2, blank) != c) { la3 = a[(t - 1) * L + s - 2]; if (la3 > m) m = la3; }
                        if (m == ninf) m = 0;
                        a[t * L + s] = log(exp(la1 - m) + exp(la2 - m) + exp(la3 - m)) + m + LP(t, c);
                    }
                if (tl == 0) nll[n] = -a[(il - 1) * L];
                else {
                    T l1 = a[(il - 1) * L + 2 * tl], l2 = a[(il - 1) * L + 2 * tl - 1], m = l1 > l2 ? l1 : l2;
                    if (m == ninf) m = 0;
                    nll[n] = -(log(exp(l1 - m) + exp(l2 - m)) + m);
                }
            }
            po[n] = zero_infinity && nll[n] == (T)INFINITY ? (T)0 : nll[n];
        }
    });
    const tg_tensor *in[1] = {x};
    tg_record *r = tg__record(TG_OP_CTC, out, 1, in);
    if (r) {
        r->idx = idx;
        r->aux = alpha;
        r->k[0] = blank;
        r->k[1] = zero_infinity;
        r->k[2] = L;
    } else {
        free(idx);
        tg_release(alpha);
    }
    return out;
}

/* The exact gradient with respect to log_probs, with β the backward variables (β_t(s) includes the
 * emission at t, like α) and lcab_t(c) = lse_{s: l'_s = c} α_t(s) + β_t(s):
 *   dlp_t(c) += -g_n e^{lcab_t(c) + nll - lp_t(c)}     for t < T_n, nothing after;
 * nothing for a sequence whose nll is inf when zero_infinity; NaN for it otherwise (e^{-inf + inf}),
 * as torch. torch 1.13's backward (LossCTC.cpp) adds g_n e^{lp_t(c)} to this: it returns the gradient
 * of the logits of a log_softmax that produced lp, not that of lp (pytorch/pytorch#52241, #82545, open).
 * Through tg_log_softmax the two agree: that term is what log_softmax's backward subtracts, the
 * probabilities summing to 1. The tests compare the logits' gradient with torch's and gradcheck this
 * one directly. */
void tg__ctc_nll_backward(tg_record *r, const tg_tensor *g) {
    tg_tensor *gx = tg__grad_buf(r->in[0]);
    if (!gx) return;
    const tg_tensor *x = r->in[0];
    const int64_t nT = x->shape[0], N = x->shape[1], C = x->shape[2], blank = r->k[0], L = r->k[2];
    const bool zero_infinity = r->k[1] != 0;
    tg_tensor *beta = tg_full(x->dtype, 1, (int64_t[]){(nT ? nT : 1) * L}, -INFINITY);
    tg_tensor *lcab = tg_full(x->dtype, 1, (int64_t[]){(nT ? nT : 1) * C}, -INFINITY);
    if (!beta || !lcab) { tg_release(beta); tg_release(lcab); return; }
    TG_DISPATCH(x->dtype, {
        const T *lp = TG_PTR(x, T), *la = TG_PTR(r->aux, T), *nllv = la + N * nT * L, *pg = TG_PTR(g, T);
        T *b = TG_PTR(beta, T), *ab = TG_PTR(lcab, T), *d = TG_PTR(gx, T);
        const T ninf = -INFINITY;
        for (int64_t n = 0; n < N; n++) {
            const int64_t il = r->idx[n], tl = r->idx[N + n], *tgt = r->idx + 3 * N + r->idx[2 * N + n];
            const T nll = nllv[n], gr = pg[n];
            const T *a = la + n * nT * L;
            if (il == 0 || (zero_infinity && nll == (T)INFINITY)) continue; /* adds 0 */
            for (int64_t i = 0; i < il * L; i++) b[i] = ninf;
            for (int64_t i = 0; i < il * C; i++) ab[i] = ninf;
            const int64_t last = 2 * tl;
            b[(il - 1) * L + last] = LP(il - 1, blank);
            ab[(il - 1) * C + blank] = a[(il - 1) * L + last] + b[(il - 1) * L + last];
            if (tl > 0) {
                const int64_t c = ctc_prime(tgt, last - 1, blank);
                b[(il - 1) * L + last - 1] = LP(il - 1, c);
                ab[(il - 1) * C + c] = a[(il - 1) * L + last - 1] + b[(il - 1) * L + last - 1];
            }
            for (int64_t t = il - 2; t >= 0; t--)
                for (int64_t s = last; s >= 0; s--) {
                    const int64_t c = ctc_prime(tgt, s, blank);
                    T lb1 = b[(t + 1) * L + s], lb2 = ninf, lb3 = ninf, m = lb1;
                    if (s < last) { lb2 = b[(t + 1) * L + s + 1]; if (lb2 > m) m = lb2; }
                    if (s < last - 1 && ctc_prime(tgt, s + 2, blank) != c) { lb3 = b[(t + 1) * L + s + 2]; if (lb3 > m) m = lb3; }
                    if (m == ninf) m = 0;
                    b[t * L + s] = log(exp(lb1 - m) + exp(lb2 - m) + exp(lb3 - m)) + m + LP(t, c);
                    const T lab = a[t * L + s] + b[t * L + s];
                    T *acc = &ab[t * C + c];
                    if (*acc == ninf) *acc = lab;
                    else {
                        const T mx = *acc > lab ? *acc : lab;
                        *acc = log(exp(*acc - mx) + exp(lab - mx)) + mx;
                    }
                }
            for (int64_t t = 0; t < il; t++)
                for (int64_t c = 0; c < C; c++) {
                    const T l = LP(t, c);
                    d[(t * N + n) * C + c] += -exp(ab[t * C + c] + nll - l) * gr;
                }
        }
    });
    tg_release(beta);
    tg_release(lcab);
}
#undef LP
