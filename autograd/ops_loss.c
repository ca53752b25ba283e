/* autograd/ops_loss.c - fused loss ops whose forward and backward must be torch's own formulas:
 * the per-element losses (L1, smooth L1, Huber, KL divergence, binary cross-entropy on probabilities).
 *
 * Why fused ops rather than compositions of public ops: torch's backward of these losses is not the
 * derivative of a composition in every corner. BCE clamps its logs at -100 in the forward but divides
 * by max(x(1-x), 1e-12) in the backward (finite, non-zero gradients at x = 0 and 1); smooth L1 / Huber
 * give a NaN gradient for a NaN difference (a clamp would give 0); L1's gradient is torch's sgn(x - y), 0
 * for NaN. Writing torch's kernels here makes every such case follow torch exactly. */
#include "autograd/ops_common.h"

#include <tgmath.h>

/* torch's std::max(a, b) = a < b ? b : a, so a NaN a stays NaN (fmax would drop it). */
#define TORCH_MAX(a, b) ((a) < (b) ? (b) : (a))
/* torch's sgn for reals: -1, 0, 1, and 0 for NaN (torch.sgn(nan) = 0, so L1's gradient is 0 there). */
#define TORCH_SGN(d) ((d) > 0 ? (T)1 : ((d) < 0 ? (T)-1 : (T)0))
/* xlogy(a, b) = 0 if a == 0 (and b is not NaN), else a log b. */
#define XLOGY(a, b) (isnan(b) ? (b) : ((a) == 0 ? (T)0 : (a) * log(b)))

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
