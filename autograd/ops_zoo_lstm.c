/* autograd/ops_zoo_lstm.c - one step of the zoo's LSTM family (Greff et al. 2017: peepholes, a gate
 * removed, coupled gates, a linear input or output activation) as one op.
 *
 * Dimension letters as in autograd/ops_fused.c: B rows, H hidden size, R the width of h, G gate blocks
 * (2..4: the blocks the variant keeps, in the order i, f, g, o). xp [B,G·H] is the step's input
 * projection x·W_ihᵀ + b_ih (the runner's view of its [T,B,G·H] result).
 *
 * Why: written with plain ops (tg_chunk, tg_sigmoid, tg_mul, tg_add, ...) a peephole LSTM step keeps
 * 27-33 floats per batch x hidden element on the tape (every op keeps its [B,H] result) and makes ~20
 * records. As tg_lstm_cell_ does for the lstm, this op computes the pre-activations in a scratch buffer,
 * stores the gate activations over xp (an op result of the current tape that nothing reads after this
 * step) and keeps only (h', c'): G + 2 floats per step, one record. Backward reads the saved gates, c,
 * c' and the peepholes, and runs tg_linear's backward on (h, W_hh, b_hh) with dL/dpre. */
#include "autograd/ops_common.h"
#include "autograd/ops_step.h"
#include "tensor/vmath.h"

#include <math.h>

#define LZ_KNOWN (TG_LSTMZ_NO_I | TG_LSTMZ_NO_F | TG_LSTMZ_NO_O | TG_LSTMZ_COUPLED | TG_LSTMZ_LINEAR_G | TG_LSTMZ_LINEAR_C)

/* The layout of a variant: block of each gate in a row of [B,G·H] (-1: absent, the gate is 1, or 1 − i
 * for f with coupled), and its peepholes [H] (NULL: none). */
typedef struct lz_layout {
    int G, bi, bf, bg, bo;
    bool coupled, lin_g, lin_c;
} lz_layout;

static lz_layout lz_layout_of(unsigned flags) {
    lz_layout L = {0, -1, -1, -1, -1, (flags & TG_LSTMZ_COUPLED) != 0, (flags & TG_LSTMZ_LINEAR_G) != 0,
                   (flags & TG_LSTMZ_LINEAR_C) != 0};
    if (!(flags & TG_LSTMZ_NO_I)) L.bi = L.G++;
    if (!(flags & (TG_LSTMZ_NO_F | TG_LSTMZ_COUPLED))) L.bf = L.G++;
    L.bg = L.G++;
    if (!(flags & TG_LSTMZ_NO_O)) L.bo = L.G++;
    return L;
}

typedef struct {
    const tg_tensor *xp, *c, *w[3]; /* w: peepholes of i, f, o or NULL */
    tg_tensor *hp, *A, *out;
    lz_layout L;
    int64_t B, H;
} lz_fwd;

/* Rows [r0, r1): a = xp + (b + h·Wᵀ); i = σ(a_i + w_ci ⊙ c), f = σ(a_f + w_cf ⊙ c) (or 1 − i), g = tanh(a_g)
 * (or a_g) into A; c' = f ⊙ c + i ⊙ g; o = σ(a_o + w_co ⊙ c'); h' = o ⊙ tanh(c') (or o ⊙ c'). An absent
 * gate is 1. A may be xp itself: a row of xp is read (the first loop) before that row of A is written. */
static void lz_fwd_rows(void *p, int64_t r0, int64_t r1) {
    const lz_fwd *q = p;
    const lz_layout L = q->L;
    const int64_t B = q->B, H = q->H, GH = L.G * H;
    TG_DISPATCH(q->xp->dtype, {
        const T *restrict px = TG_PTR(q->xp, T), *restrict pc = TG_PTR(q->c, T);
        const T *wi = q->w[0] ? TG_PTR(q->w[0], T) : NULL, *wf = q->w[1] ? TG_PTR(q->w[1], T) : NULL;
        const T *wo = q->w[2] ? TG_PTR(q->w[2], T) : NULL;
        T *restrict pp = TG_PTR(q->hp, T), *pa = TG_PTR(q->A, T);
        for (int64_t k = r0 * GH; k < r1 * GH; k++) pp[k] = px[k] + pp[k];
        T *h2 = TG_PTR(q->out, T), *c2 = h2 + B * H;
        for (int64_t r = r0; r < r1; r++) {
            T *restrict a = pp + r * GH, *restrict y = pa + r * GH, *restrict cn = c2 + r * H, *restrict hn = h2 + r * H;
            const T *restrict cr = pc + r * H;
            if (L.bi >= 0) {
                T *ai = a + L.bi * H;
                if (wi) for (int64_t j = 0; j < H; j++) ai[j] = ai[j] + wi[j] * cr[j];
                _Generic((T)0, float: tg_vsigmoid_f32, default: tg_vsigmoid_f64)(y + L.bi * H, ai, H);
            }
            if (L.bf >= 0) {
                T *af = a + L.bf * H;
                if (wf) for (int64_t j = 0; j < H; j++) af[j] = af[j] + wf[j] * cr[j];
                _Generic((T)0, float: tg_vsigmoid_f32, default: tg_vsigmoid_f64)(y + L.bf * H, af, H);
            }
            T *g = y + L.bg * H;
            if (L.lin_g) memcpy(g, a + L.bg * H, (size_t)H * sizeof(T));
            else _Generic((T)0, float: tg_vtanh_f32, default: tg_vtanh_f64)(g, a + L.bg * H, H);
            const T *i = L.bi >= 0 ? y + L.bi * H : NULL, *f = L.bf >= 0 ? y + L.bf * H : NULL;
            /* c' = f ⊙ c + i ⊙ g, each product as the plain ops round it */
            if (L.coupled) for (int64_t j = 0; j < H; j++) cn[j] = (1 - i[j]) * cr[j] + i[j] * g[j];
            else if (f && i) for (int64_t j = 0; j < H; j++) cn[j] = f[j] * cr[j] + i[j] * g[j];
            else if (f) for (int64_t j = 0; j < H; j++) cn[j] = f[j] * cr[j] + g[j];
            else if (i) for (int64_t j = 0; j < H; j++) cn[j] = cr[j] + i[j] * g[j];
            else for (int64_t j = 0; j < H; j++) cn[j] = cr[j] + g[j];
            if (L.lin_c) memcpy(hn, cn, (size_t)H * sizeof(T));
            else _Generic((T)0, float: tg_vtanh_f32, default: tg_vtanh_f64)(hn, cn, H);
            if (L.bo >= 0) {
                T *ao = a + L.bo * H, *o = y + L.bo * H;
                if (wo) for (int64_t j = 0; j < H; j++) ao[j] = ao[j] + wo[j] * cn[j];
                _Generic((T)0, float: tg_vsigmoid_f32, default: tg_vsigmoid_f64)(o, ao, H);
                for (int64_t j = 0; j < H; j++) hn[j] = o[j] * hn[j];
            }
        }
    });
}

/* A peephole's checks: [H] of xp's dtype, and only on a gate the variant has. */
static bool lz_peephole_ok(const char *fn, const char *name, const tg_tensor *w, bool gate_there, const char *why,
                           const tg_tensor *xp, int64_t H) {
    if (!w) return !tg_error_pending(); /* a NULL peephole from a failed op, not "no peephole" */
    if (!tg__check(fn, name, w) || !tg__same_dtype(fn, xp, w)) return false;
    char s[128];
    if (!gate_there) {
        tg_error(fn, "%s %s given, but %s", name, tg_shape_str(w, s, sizeof s), why);
        return false;
    }
    if (w->ndim != 1 || w->shape[0] != H) {
        tg_error(fn, "%s %s: need [H] = [%lld] (one weight per unit)", name, tg_shape_str(w, s, sizeof s), (long long)H);
        return false;
    }
    return true;
}

TG_OP(LSTM_ZOO, lstm_zoo_, -1, IN1 | IN2 | IN3 | IN4 | IN5 | IN6 | OUT) /* LSTM-family step; in = xp, h, W, c, peepholes present, b; k[0] flags, k[1] peephole mask; aux = gates */
tg_tensor *tg_lstm_zoo_(tg_tensor *xp, const tg_tensor *h, const tg_tensor *W, const tg_tensor *b, const tg_tensor *c,
                        const tg_tensor *w_ci, const tg_tensor *w_cf, const tg_tensor *w_co, unsigned flags) {
    const char *fn = "tg_lstm_zoo_";
    if (flags & ~(unsigned)LZ_KNOWN) {
        tg_error(fn, "flags 0x%x: unknown bits 0x%x (TG_LSTMZ_* of <tapegrad/ops.h> only)", flags, flags & ~(unsigned)LZ_KNOWN);
        return NULL;
    }
    if ((flags & TG_LSTMZ_COUPLED) && (flags & (TG_LSTMZ_NO_I | TG_LSTMZ_NO_F))) {
        tg_error(fn, "flags 0x%x: TG_LSTMZ_COUPLED (f = 1 - i, no f block) needs the input gate and excludes TG_LSTMZ_NO_F",
                 flags);
        return NULL;
    }
    const lz_layout L = lz_layout_of(flags);
    if (!tg__check(fn, "c", c) || !tg__step_args(fn, L.G, xp, h, W, b, c)) return NULL;
    const int64_t B = xp->shape[0], H = xp->shape[1] / L.G;
    if (!lz_peephole_ok(fn, "w_ci", w_ci, L.bi >= 0, "the input gate is absent (TG_LSTMZ_NO_I)", xp, H) ||
        !lz_peephole_ok(fn, "w_cf", w_cf, L.bf >= 0, "the forget gate has no block (TG_LSTMZ_NO_F or TG_LSTMZ_COUPLED)", xp, H) ||
        !lz_peephole_ok(fn, "w_co", w_co, L.bo >= 0, "the output gate is absent (TG_LSTMZ_NO_O)", xp, H))
        return NULL;
    const tg_tensor *peep[3] = {w_ci, w_cf, w_co}, *in[8] = {xp, h, W, c};
    int nin = 4, mask = 0;
    for (int k = 0; k < 3; k++)
        if (peep[k]) in[nin++] = peep[k], mask |= 1 << k;
    if (b) in[nin++] = b;
    int64_t shape[3] = {2, B, H};
    tg_tensor *out = tg__result(xp->dtype, 3, shape);
    if (!out) return NULL;
    bool recorded = false;
    for (int k = 0; k < nin && tg_grad_enabled(); k++) recorded |= tg__needs_grad(in[k]);
    tg_tensor *own, *hp = tg__alloc(xp->dtype, 2, xp->shape), *A = hp ? tg__gate_buffer(xp, recorded, &own) : NULL;
    if (!A) { tg_release(hp); return NULL; }
    tg__linear_into(h, W, b, NULL, B, hp);
    lz_fwd ctx = {xp, c, {w_ci, w_cf, w_co}, hp, A, out, L, B, H};
    tg__for_rows(B, L.G * H, lz_fwd_rows, &ctx);
    tg_release(hp);
    tg_record *r = recorded ? tg__record(TG_OP_LSTM_ZOO, out, nin, in) : NULL;
    if (r) {
        r->aux = own ? own : tg_reshape_view(xp, 2, xp->shape);
        r->k[0] = (int64_t)flags;
        r->k[1] = mask;
    } else tg_release(own);
    return out;
}

typedef struct {
    const tg_tensor *aux, *c, *out, *g, *w[3];
    tg_tensor *D, *gc;
    bool ac;
    lz_layout L;
    int64_t B, H;
} lz_bwd;

#define LZ_CHUNK 256
/* Rows [r0, r1) of the backward (the formulas above tg__lstm_zoo__backward) */
static void lz_bwd_rows(void *p, int64_t r0, int64_t r1) {
    const lz_bwd *q = p;
    const lz_layout L = q->L;
    const int64_t B = q->B, H = q->H, GH = L.G * H;
    const bool ac = q->ac;
    TG_DISPATCH(q->g->dtype, {
        const T *pa = TG_PTR(q->aux, T), *pc = TG_PTR(q->c, T), *c2 = TG_PTR(q->out, T) + B * H;
        const T *gh = TG_PTR(q->g, T), *gcv = gh + B * H;
        const T *wi = q->w[0] ? TG_PTR(q->w[0], T) : NULL, *wf = q->w[1] ? TG_PTR(q->w[1], T) : NULL;
        const T *wo = q->w[2] ? TG_PTR(q->w[2], T) : NULL;
        T *dp = TG_PTR(q->D, T), *dc = q->gc ? TG_PTR(q->gc, T) : NULL;
        T tau[LZ_CHUNK], dc2[LZ_CHUNK];
        for (int64_t r = r0; r < r1; r++) {
            const T *y = pa + r * GH;
            const T *i = L.bi >= 0 ? y + L.bi * H : NULL, *f = L.bf >= 0 ? y + L.bf * H : NULL, *gg = y + L.bg * H;
            const T *o = L.bo >= 0 ? y + L.bo * H : NULL;
            T *d = dp + r * GH;
            for (int64_t j0 = 0; j0 < H; j0 += LZ_CHUNK) {
                const int64_t m = H - j0 < LZ_CHUNK ? H - j0 : LZ_CHUNK, e = r * H + j0;
                if (L.lin_c) memcpy(tau, c2 + e, (size_t)m * sizeof(T));
                else _Generic((T)0, float: tg_vtanh_f32, default: tg_vtanh_f64)(tau, c2 + e, m);
                /* dc' = g_c + (g_h o) act'(c') [+ dpre_o w_co] */
                if (o) {
                    T *dO = d + L.bo * H + j0;
                    for (int64_t k = 0; k < m; k++) dO[k] = gh[e + k] * tau[k] * (o[j0 + k] * (1 - o[j0 + k]));
                    if (L.lin_c) for (int64_t k = 0; k < m; k++) dc2[k] = gcv[e + k] + gh[e + k] * o[j0 + k];
                    else for (int64_t k = 0; k < m; k++) dc2[k] = gcv[e + k] + gh[e + k] * o[j0 + k] * (1 - tau[k] * tau[k]);
                    if (wo) for (int64_t k = 0; k < m; k++) dc2[k] += dO[k] * wo[j0 + k];
                } else if (L.lin_c) for (int64_t k = 0; k < m; k++) dc2[k] = gcv[e + k] + gh[e + k];
                else for (int64_t k = 0; k < m; k++) dc2[k] = gcv[e + k] + gh[e + k] * (1 - tau[k] * tau[k]);
                /* dpre_g = (dc' i) act'(a_g) */
                T *dg = d + L.bg * H + j0;
                const T *gj = gg + j0;
                if (i && L.lin_g) for (int64_t k = 0; k < m; k++) dg[k] = dc2[k] * i[j0 + k];
                else if (i) for (int64_t k = 0; k < m; k++) dg[k] = dc2[k] * i[j0 + k] * (1 - gj[k] * gj[k]);
                else if (L.lin_g) for (int64_t k = 0; k < m; k++) dg[k] = dc2[k];
                else for (int64_t k = 0; k < m; k++) dg[k] = dc2[k] * (1 - gj[k] * gj[k]);
                /* dpre_i = (dc' g [− dc' c with coupled gates]) i(1 − i),  dpre_f = (dc' c) f(1 − f) */
                const T *cr = pc + e;
                if (i) {
                    T *di = d + L.bi * H + j0;
                    const T *ij = i + j0;
                    if (L.coupled) for (int64_t k = 0; k < m; k++) di[k] = (dc2[k] * gj[k] - dc2[k] * cr[k]) * (ij[k] * (1 - ij[k]));
                    else for (int64_t k = 0; k < m; k++) di[k] = dc2[k] * gj[k] * (ij[k] * (1 - ij[k]));
                }
                if (f) {
                    T *df = d + L.bf * H + j0;
                    const T *fj = f + j0;
                    for (int64_t k = 0; k < m; k++) df[k] = dc2[k] * cr[k] * (fj[k] * (1 - fj[k]));
                }
                if (!dc) continue;
                /* dc = dc' f [+ dpre_i w_ci] [+ dpre_f w_cf]   (f = 1 − i coupled, 1 absent) */
                T *dcr = dc + e, tmp[LZ_CHUNK];
                if (L.coupled) for (int64_t k = 0; k < m; k++) tmp[k] = dc2[k] * (1 - i[j0 + k]);
                else if (f) for (int64_t k = 0; k < m; k++) tmp[k] = dc2[k] * f[j0 + k];
                else memcpy(tmp, dc2, (size_t)m * sizeof(T));
                if (wi) { const T *di = d + L.bi * H + j0; for (int64_t k = 0; k < m; k++) tmp[k] += di[k] * wi[j0 + k]; }
                if (wf) { const T *df = d + L.bf * H + j0; for (int64_t k = 0; k < m; k++) tmp[k] += df[k] * wf[j0 + k]; }
                if (ac) memcpy(dcr, tmp, (size_t)m * sizeof(T));
                else for (int64_t k = 0; k < m; k++) dcr[k] += tmp[k];
            }
        }
    });
}

/* dw[j] += Σ_rows D[r, blk·H + j] s[off + r·H + j]: a peephole's gradient, one thread (rows in order) */
static void lz_peep_grad(tg_tensor *gw, const tg_tensor *D, int blk, int G, const tg_tensor *s, int64_t off,
                         int64_t B, int64_t H) {
    if (!gw) return;
    TG_DISPATCH(D->dtype, {
        const T *pd = TG_PTR(D, T), *ps = TG_PTR(s, T) + off;
        T *restrict dw = TG_PTR(gw, T);
        for (int64_t r = 0; r < B; r++) {
            const T *restrict dr = pd + r * G * H + blk * H, *restrict sr = ps + r * H;
            for (int64_t j = 0; j < H; j++) dw[j] += dr[j] * sr[j];
        }
    });
}

/* With g = [g_h; g_c], the saved gates (an absent one is 1; f = 1 − i coupled), τ = act(c') (tanh or
 * identity), act' its derivative:
 *   dpre_o = (g_h τ) o(1 − o),   dc' = g_c + (g_h o) act'(c') + dpre_o w_co
 *   dpre_g = (dc' i) act_g'(a_g),  dpre_i = (dc' g [− dc' c]) i(1 − i),  dpre_f = (dc' c) f(1 − f)
 *   dc = dc' f + dpre_i w_ci + dpre_f w_cf,   dw_ci += Σ_rows dpre_i c,  dw_cf += Σ_rows dpre_f c,  dw_co += Σ_rows dpre_o c'
 *   dxp += dpre;  dh += dpre·W,  dW += dpreᵀ·h,  db += Σ_rows dpre */
void tg__lstm_zoo__backward(tg_record *r, const tg_tensor *g) {
    tg_tensor *xp = r->in[0], *c = r->in[3];
    const lz_layout L = lz_layout_of((unsigned)r->k[0]);
    const int64_t B = xp->shape[0], H = xp->shape[1] / L.G;
    tg_tensor *w[3] = {NULL, NULL, NULL};
    int k = 4;
    for (int q = 0; q < 3; q++)
        if (r->k[1] & (1 << q)) w[q] = r->in[k++];
    tg_tensor *b = k < r->nin ? r->in[k] : NULL;
    bool ac;
    tg_tensor *scratch, *D = tg__pre_grad_buffer(xp, &scratch);
    tg_tensor *gc = tg__grad_buf_assign(c, &ac);
    if (!D) return;
    lz_bwd ctx = {r->aux, c, r->out, g, {w[0], w[1], w[2]}, D, gc, ac, L, B, H};
    tg__for_rows(B, L.G * H, lz_bwd_rows, &ctx);
    const int blk[3] = {L.bi, L.bf, L.bo};
    for (int q = 0; q < 3; q++) /* w_ci, w_cf read c; w_co reads c' (the second half of the result) */
        if (w[q]) lz_peep_grad(tg__grad_buf(w[q]), D, blk[q], L.G, q == 2 ? r->out : c, q == 2 ? B * H : 0, B, H);
    if (scratch && xp->grad) tg_axpy_(xp->grad, 1.0, scratch);
    tg__step_matrix_backward(r->in[1], r->in[2], b, D);
    tg_release(scratch);
}
