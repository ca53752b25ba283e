/* autograd/ops_rnn_seq.c - the one-state recurrence h' = act(xp + h·Wᵀ + b) (rnn_tanh, rnn_relu) or
 * h' = act(xp + u ⊙ h + b) (IndRNN) over a whole sequence as one op.
 *
 * Dimension letters: T time steps, B rows (batch), H hidden size. xp [T,B,H] is one layer's input
 * projection x·W_ihᵀ + b_ih for all steps (the runner makes it with one GEMM).
 *
 * Why one op for the T steps, not one per step: all that a one-float cell's backward needs is h' (act'
 * from h', dW from the previous h'), 1 float per batch x hidden element and step; the plain ops keep 4
 * (xp, the pre-activation, h', the runner's tg_stack copy of the step outputs). A step op that wrote h'_t
 * over its row of xp would bump the version of xp's whole storage at every step, which makes the h and
 * h' every earlier step saved look modified (versions are per storage, not per row), and the outputs
 * would still be stacked into a copy. This op writes all of h' over xp (one version bump, before its
 * record), returns that storage as the [T,B,H] output the layer needs, and keeps nothing else: one
 * record and 1 float per element and step. Anything that saved xp before fails in backward naming
 * itself; anything that changes the output afterwards makes this op's backward fail naming it.
 *
 * Backward walks the steps in reverse with the arithmetic of the per-step ops it replaces, in their
 * order (tg_linear_add + tg_tanh / tg_relu; tg_mul + tg_add + tg_add + tg_relu for IndRNN, the stacked
 * outputs' gradient, tg_select's into xp), so values and gradients are bit-identical to them
 * (tests/test_ops.c checks it). */
#include "autograd/ops_common.h"
#include "autograd/ops_step.h"
#include "tensor/vmath.h"

#define RS_KNOWN (TG_RNNS_RELU | TG_RNNS_REVERSE)

static bool rs_args(const char *fn, const tg_tensor *xp, const tg_tensor *h0, const tg_tensor *W, const tg_tensor *b,
                    unsigned flags) {
    if (flags & ~(unsigned)RS_KNOWN) {
        tg_error(fn, "flags 0x%x: unknown bits 0x%x (TG_RNNS_RELU, TG_RNNS_REVERSE of <tapegrad/ops.h> only)", flags,
                 flags & ~(unsigned)RS_KNOWN);
        return false;
    }
    if (!tg__check(fn, "xp", xp) || !tg__check(fn, "h0", h0) || !tg__check(fn, "W", W)) return false;
    if (!b && tg_error_pending()) return false; /* a NULL bias from a failed op, not "no bias" */
    if (b && !tg__check(fn, "b", b)) return false;
    if (!tg__same_dtype(fn, xp, h0) || !tg__same_dtype(fn, xp, W) || (b && !tg__same_dtype(fn, xp, b))) return false;
    const int64_t H = xp->ndim == 3 ? xp->shape[2] : -1;
    bool ok = xp->ndim == 3 && h0->ndim == 2 && h0->shape[0] == xp->shape[1] && h0->shape[1] == H &&
              ((W->ndim == 2 && W->shape[0] == H && W->shape[1] == H) || (W->ndim == 1 && W->shape[0] == H)) &&
              (!b || (b->ndim == 1 && b->shape[0] == H));
    if (!ok) {
        char s1[128], s2[128], s3[128], s4[128];
        tg_error(fn, "xp %s, h0 %s, W %s%s%s: need xp [T,B,H], h0 [B,H], W [H,H] (or [H]: u ⊙ h)%s",
                 tg_shape_str(xp, s1, sizeof s1), tg_shape_str(h0, s2, sizeof s2), tg_shape_str(W, s3, sizeof s3),
                 b ? ", b " : "", b ? tg_shape_str(b, s4, sizeof s4) : "", b ? ", b [H]" : "");
    }
    return ok;
}

/* Step s (in the order of the recurrence) reads and writes row rs_t(s) of the sequence. */
static inline int64_t rs_t(int64_t s, int64_t steps, bool reverse) { return reverse ? steps - 1 - s : s; }

TG_OP(RNN_SEQ, rnn_seq_, -1, IN1 | IN2 | OUT) /* h' = act(xp_t + h W_hhᵀ (or u ⊙ h) + b) over T steps; in = xp, h0, W[, b]; k[0] flags */
tg_tensor *tg_rnn_seq_(tg_tensor *xp, const tg_tensor *h0, const tg_tensor *W, const tg_tensor *b, unsigned flags) {
    const char *fn = "tg_rnn_seq_";
    if (!rs_args(fn, xp, h0, W, b, flags)) return NULL;
    const tg_tensor *in[4] = {xp, h0, W, b};
    const int nin = b ? 4 : 3;
    bool recorded = false;
    for (int i = 0; i < nin && tg_grad_enabled(); i++) recorded |= tg__needs_grad(in[i]);
    /* over xp only when it is an op result of this tape and no other input shares its storage (h0
     * read back in backward must not be overwritten) */
    bool over = recorded && tg__record_of(xp) && h0->storage != xp->storage && W->storage != xp->storage &&
                (!b || b->storage != xp->storage);
    tg_tensor *out;
    if (over) {
        tg_bump_version(xp);
        if (!(out = tg_reshape_view(xp, 3, xp->shape))) return NULL;
        tg__autorelease(out);
    } else if (!(out = tg__result(xp->dtype, 3, xp->shape))) return NULL;
    const int64_t nT = xp->shape[0], B = xp->shape[1], H = xp->shape[2], n = B * H;
    const bool relu = flags & TG_RNNS_RELU, reverse = flags & TG_RNNS_REVERSE, diag = W->ndim == 1;
    tg_tensor *pre = diag ? NULL : tg__alloc(xp->dtype, 2, h0->shape); /* [B,H] scratch: a step's pre-activation */
    if (!diag && !pre) return NULL;
    for (int64_t s = 0; s < nT; s++) {
        const int64_t t = rs_t(s, nT, reverse);
        tg_tensor *hv = s ? tg_view_at(out, rs_t(s - 1, nT, reverse)) : NULL, *xv = tg_view_at(xp, t);
        const tg_tensor *h = s ? hv : h0;
        if ((s && !hv) || !xv) { tg_release(hv); tg_release(xv); tg_release(pre); return NULL; }
        TG_DISPATCH(xp->dtype, {
            T *y = TG_PTR(out, T) + t * n; /* may be xv's row itself: each element is read before it is written */
            const T *x = TG_PTR(xv, T), *hp = TG_PTR(h, T);
            if (!diag) {
                /* pre = xp_t + (b + h·Wᵀ) (tg_linear_add's rounding), h' = act(pre) (tg_tanh / tg_relu) */
                tg__linear_into(h, W, b, xv, B, pre);
                const T *p = TG_PTR(pre, T);
                if (!relu) _Generic((T)0, float: tg_vtanh_f32, default: tg_vtanh_f64)(y, p, n);
                else for (int64_t i = 0; i < n; i++) y[i] = p[i] > 0 ? p[i] : 0;
            } else {
                /* h' = act(xp_t + ((u ⊙ h) + b)): tg_mul, tg_add, tg_add, tg_relu / tg_tanh, one rounding each */
                const T *u = TG_PTR(W, T), *bb = b ? TG_PTR(b, T) : NULL;
                for (int64_t r = 0; r < B; r++)
                    for (int64_t j = 0; j < H; j++) {
                        const int64_t i = r * H + j;
                        T a = u[j] * hp[i];
                        if (bb) a = a + bb[j];
                        a = x[i] + a;
                        y[i] = a;
                    }
                if (!relu) _Generic((T)0, float: tg_vtanh_f32, default: tg_vtanh_f64)(y, y, n);
                else for (int64_t i = 0; i < n; i++) y[i] = y[i] > 0 ? y[i] : 0;
            }
        });
        tg_release(hv);
        tg_release(xv);
    }
    tg_release(pre);
    tg_record *r = recorded ? tg__record(TG_OP_RNN_SEQ, out, nin, in) : NULL;
    if (r) r->k[0] = (int64_t)flags;
    return out;
}

/* Per step, from the last to the first, with g_t the upstream gradient of h'_t and y = h'_t:
 *   dpre_t = (g_t + dh'_t) act'(y)      act' = 1 − y² (tanh), [y > 0] (relu); dh'_t from step t+1
 *   dxp_t += dpre_t
 *   matrix: dh'_{t−1} = dpre_t·W,  dW += dpre_tᵀ·h'_{t−1} (staged),  db += Σ_rows dpre_t   (tg_linear's)
 *   IndRNN: db += Σ_rows dpre_t,  du += Σ_rows dpre_t ⊙ h'_{t−1},  dh'_{t−1} = dpre_t ⊙ u
 * with h'_{−1} = h0 (dh0 += ...). "t − 1" is the step before in the recurrence's order (t + 1 reversed). */
void tg__rnn_seq__backward(tg_record *r, const tg_tensor *g) {
    tg_tensor *xp = r->in[0], *h0 = r->in[1], *W = r->in[2], *b = r->nin > 3 ? r->in[3] : NULL, *Y = r->out;
    const unsigned flags = (unsigned)r->k[0];
    const bool relu = flags & TG_RNNS_RELU, reverse = flags & TG_RNNS_REVERSE, diag = W->ndim == 1;
    const int64_t nT = Y->shape[0], B = Y->shape[1], H = Y->shape[2], n = B * H;
    const size_t row = (size_t)n * tg_itemsize(g->dtype);
    if (nT == 0) return;
    bool ax;
    tg_tensor *gx = tg__grad_buf_assign(xp, &ax);
    /* dL/dh' of the current step (carry) and of the one before (next); dpre in gx's row (a new dxp) or D */
    tg_tensor *carry = tg__alloc(g->dtype, 2, h0->shape), *next = tg__alloc(g->dtype, 2, h0->shape);
    tg_tensor *D = gx && ax ? NULL : tg__alloc(g->dtype, 2, h0->shape);
    tg_tensor *gu = diag ? tg__grad_buf(W) : NULL, *gb = diag && b ? tg__grad_buf(b) : NULL;
    if (!carry || !next || (!D && !(gx && ax))) goto done;
    memcpy(tg__ptr(carry), (const char *)tg__ptr(g) + (size_t)rs_t(nT - 1, nT, reverse) * row, row);
    for (int64_t s = nT - 1; s >= 0; s--) {
        const int64_t t = rs_t(s, nT, reverse), tp = s ? rs_t(s - 1, nT, reverse) : -1;
        tg_tensor *Dv = D ? tg_retain(D) : tg_view_at(gx, t);
        tg_tensor *hv = s ? tg_view_at(Y, tp) : tg_retain(h0); /* h'_{t−1} */
        if (!Dv || !hv) { tg_release(Dv); tg_release(hv); goto done; }
        if (s) memcpy(tg__ptr(next), (const char *)tg__ptr(g) + (size_t)tp * row, row);
        TG_DISPATCH(g->dtype, {
            const T *restrict y = TG_PTR(Y, T) + t * n, *restrict c = TG_PTR(carry, T);
            T *restrict d = TG_PTR(Dv, T);
            if (relu) /* c [y > 0] (tg_relu's backward), the 0/1 factor as a value so the loop vectorises */
                for (int64_t i = 0; i < n; i++) {
                    const T m = y[i] > 0;
                    d[i] = c[i] * m;
                }
            else for (int64_t i = 0; i < n; i++) d[i] = c[i] * (1 - y[i] * y[i]);
        });
        if (!diag) {
            /* h'_{t−1}'s gradient is the upstream one plus dpre·W, added by tg_linear's backward */
            if (s) { hv->requires_grad = true; hv->grad = next; }
            tg__step_matrix_backward(hv, W, b, Dv);
            if (s) hv->grad = NULL;
        } else {
            bool ah = false;
            tg_tensor *gh = s ? next : tg__grad_buf_assign(hv, &ah);
            TG_DISPATCH(g->dtype, {
                const T *d = TG_PTR(Dv, T), *u = TG_PTR(W, T), *hp = TG_PTR(hv, T);
                T *restrict pb = gb ? TG_PTR(gb, T) : NULL, *restrict pu = gu ? TG_PTR(gu, T) : NULL;
                T *ph = gh ? TG_PTR(gh, T) : NULL;
                for (int64_t q = 0; q < B; q++) { /* rows in order, as the broadcast ops add them */
                    const T *restrict dq = d + q * H, *restrict hq = hp + q * H;
                    T *restrict gq = ph ? ph + q * H : NULL;
                    if (pb) for (int64_t j = 0; j < H; j++) pb[j] += dq[j];
                    if (pu) for (int64_t j = 0; j < H; j++) pu[j] += dq[j] * hq[j];
                    if (gq && ah) for (int64_t j = 0; j < H; j++) gq[j] = dq[j] * u[j];
                    else if (gq) for (int64_t j = 0; j < H; j++) gq[j] += dq[j] * u[j];
                }
            });
        }
        if (gx) /* tg_select's backward adds into a zeroed gradient: 0 + dpre (so −0 becomes +0 as there) */
            TG_DISPATCH(g->dtype, {
                T *dx = TG_PTR(gx, T) + t * n;
                const T *d = TG_PTR(Dv, T); /* dx's row itself when ax */
                if (ax) for (int64_t i = 0; i < n; i++) dx[i] = (T)0 + dx[i];
                else for (int64_t i = 0; i < n; i++) dx[i] += d[i];
            });
        tg_release(Dv);
        tg_release(hv);
        tg_tensor *tmp = carry;
        carry = next, next = tmp;
    }
done:
    tg_release(carry);
    tg_release(next);
    tg_release(D);
}
