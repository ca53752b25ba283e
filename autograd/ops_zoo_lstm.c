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

/* ---- lstm_fgr: the gates of a step with full gate recurrence ---------------------------------------- */

/* Why its own op: lstm_fgr (nn/cells_zoo.c) is lstm_peephole plus r = [i_{t−1} | f_{t−1} | o_{t−1}] W_ggᵀ
 * inside the σ of i, f, o, and its previous gates are states that keep receiving gradients. Written with
 * plain ops it kept 44.6 floats per batch x hidden element and step on the tape. This op returns the
 * gates themselves, gate-major [4,B,H] (i, f, g, o), stored over xp when xp is an op result of the
 * current tape (as tg_lstm_cell_ stores its gates), so the gates are both what backward reads and the
 * next step's states (tg_select views, no copy); tg_lstm_state(gates, c) then makes (h', c'). The write
 * over xp bumps the version only where a record saved xp's storage (tg__write_over): the runner's
 * projection is one storage for all steps, and an earlier step's gates, saved by its tg_lstm_state and by
 * this op of the next step, sit in the same storage. Tape per step: 4 (gates, in xp) + 2 (h', c') floats.
 *
 * prev holds the previous gates: [3,B,H] (i, f, o) or [4,B,H] (i, f, g, o, a result of this op; g is not
 * read). X [B,3H] is prev gathered row by row ([i | f | o] of tg_concat), rp = X·W_ggᵀ (tg_linear's
 * rounding). Rows [r0, r1) after hp = xp + (b + h·Wᵀ):
 *   i = σ((a_i + w_ci ⊙ c) + r_i),  f = σ((a_f + w_cf ⊙ c) + r_f),  g = tanh(a_g)
 *   c' = f ⊙ c + i ⊙ g,  o = σ((a_o + w_co ⊙ c') + r_o)        (the plain spelling's order of additions) */
typedef struct {
    const tg_tensor *xp, *c, *w[3];
    tg_tensor *hp, *rp, *out;
    int64_t B, H;
} fg_fwd;

static void fg_add_rows(void *p, int64_t r0, int64_t r1) {
    const fg_fwd *q = p;
    const int64_t GH = 4 * q->H;
    TG_DISPATCH(q->xp->dtype, {
        const T *restrict px = TG_PTR(q->xp, T);
        T *restrict pp = TG_PTR(q->hp, T);
        for (int64_t k = r0 * GH; k < r1 * GH; k++) pp[k] = px[k] + pp[k];
    });
}

static void fg_fwd_rows(void *p, int64_t r0, int64_t r1) {
    const fg_fwd *q = p;
    const int64_t B = q->B, H = q->H, BH = B * H;
    TG_DISPATCH(q->xp->dtype, {
        const T *restrict wi = TG_PTR(q->w[0], T), *restrict wf = TG_PTR(q->w[1], T), *restrict wo = TG_PTR(q->w[2], T);
        T *po = TG_PTR(q->out, T);
        for (int64_t r = r0; r < r1; r++) {
            T *restrict a = TG_PTR(q->hp, T) + r * 4 * H, *restrict rr = TG_PTR(q->rp, T) + r * 3 * H;
            const T *restrict cr = TG_PTR(q->c, T) + r * H;
            T *restrict i = po + r * H, *restrict f = po + BH + r * H, *restrict g = po + 2 * BH + r * H;
            T *restrict o = po + 3 * BH + r * H;
            for (int64_t j = 0; j < H; j++) a[j] = (a[j] + wi[j] * cr[j]) + rr[j];
            for (int64_t j = 0; j < H; j++) a[H + j] = (a[H + j] + wf[j] * cr[j]) + rr[H + j];
            _Generic((T)0, float: tg_vsigmoid_f32, default: tg_vsigmoid_f64)(i, a, H);
            _Generic((T)0, float: tg_vsigmoid_f32, default: tg_vsigmoid_f64)(f, a + H, H);
            _Generic((T)0, float: tg_vtanh_f32, default: tg_vtanh_f64)(g, a + 2 * H, H);
            T *restrict cn = rr; /* r_i is used: its row holds c' now */
            for (int64_t j = 0; j < H; j++) cn[j] = f[j] * cr[j] + i[j] * g[j];
            for (int64_t j = 0; j < H; j++) a[3 * H + j] = (a[3 * H + j] + wo[j] * cn[j]) + rr[2 * H + j];
            _Generic((T)0, float: tg_vsigmoid_f32, default: tg_vsigmoid_f64)(o, a + 3 * H, H);
        }
    });
}

/* X [B,3H] = rows [a_r | b_r | c_r] of the blocks blk[0..2] of src [k,B,H] (dst += when add) */
static void fg_gather(tg_tensor *X, const tg_tensor *src, const int *blk, int64_t B, int64_t H) {
    TG_DISPATCH(X->dtype, {
        const T *ps = TG_PTR(src, T);
        T *px = TG_PTR(X, T);
        for (int64_t r = 0; r < B; r++)
            for (int b = 0; b < 3; b++) memcpy(px + r * 3 * H + b * H, ps + blk[b] * B * H + r * H, (size_t)H * sizeof(T));
    });
}

/* a and b share elements of one storage (tensors are contiguous: [offset, offset + numel)) */
static bool fg_overlap(const tg_tensor *a, const tg_tensor *b) {
    return a && a->storage == b->storage && a->offset < b->offset + b->numel && b->offset < a->offset + a->numel;
}

/* prev's blocks of i, f, o: {0, 1, 2} of [3,B,H], {0, 1, 3} of [4,B,H] */
static void fg_prev_blocks(const tg_tensor *prev, int *blk) {
    blk[0] = 0, blk[1] = 1, blk[2] = prev->shape[0] == 4 ? 3 : 2;
}

TG_OP(LSTM_FGR_GATES, lstm_fgr_gates_, -1, IN1 | IN2 | IN3 | IN4 | IN5 | IN6 | IN7 | IN8 | OUT) /* lstm_fgr's gates [4,B,H]; in = xp, h, W, c, w_ci, w_cf, w_co, W_gg, prev[, b] */
tg_tensor *tg_lstm_fgr_gates_(tg_tensor *xp, const tg_tensor *h, const tg_tensor *W, const tg_tensor *b, const tg_tensor *c,
                              const tg_tensor *w_ci, const tg_tensor *w_cf, const tg_tensor *w_co, const tg_tensor *W_gg,
                              const tg_tensor *prev) {
    const char *fn = "tg_lstm_fgr_gates_";
    if (!tg__check(fn, "c", c) || !tg__check(fn, "w_ci", w_ci) || !tg__check(fn, "w_cf", w_cf) ||
        !tg__check(fn, "w_co", w_co) || !tg__check(fn, "W_gg", W_gg) || !tg__check(fn, "prev", prev) ||
        !tg__step_args(fn, 4, xp, h, W, b, c))
        return NULL;
    const int64_t B = xp->shape[0], H = xp->shape[1] / 4;
    if (!lz_peephole_ok(fn, "w_ci", w_ci, true, "", xp, H) || !lz_peephole_ok(fn, "w_cf", w_cf, true, "", xp, H) ||
        !lz_peephole_ok(fn, "w_co", w_co, true, "", xp, H) || !tg__same_dtype(fn, xp, W_gg) || !tg__same_dtype(fn, xp, prev))
        return NULL;
    char s1[128], s2[128];
    if (W_gg->ndim != 2 || W_gg->shape[0] != 3 * H || W_gg->shape[1] != 3 * H) {
        tg_error(fn, "W_gg %s: need [3H,3H] = [%lld,%lld] (rows i, f, o receive, columns i, f, o are read)",
                 tg_shape_str(W_gg, s1, sizeof s1), (long long)(3 * H), (long long)(3 * H));
        return NULL;
    }
    if (prev->ndim != 3 || (prev->shape[0] != 3 && prev->shape[0] != 4) || prev->shape[1] != B || prev->shape[2] != H) {
        tg_error(fn, "prev %s, xp %s: the previous gates must be [3,B,H] (i, f, o) or [4,B,H] (i, f, g, o) = [3 or 4,%lld,%lld]",
                 tg_shape_str(prev, s1, sizeof s1), tg_shape_str(xp, s2, sizeof s2), (long long)B, (long long)H);
        return NULL;
    }
    const tg_tensor *in[10] = {xp, h, W, c, w_ci, w_cf, w_co, W_gg, prev, b};
    const int nin = b ? 10 : 9;
    bool recorded = false;
    for (int k = 0; k < nin && tg_grad_enabled(); k++) recorded |= tg__needs_grad(in[k]);
    int64_t shape[3] = {4, B, H}, xshape[2] = {B, 3 * H};
    /* over xp only when no other input's elements overlap xp's (prev is an earlier step's gates in the same
     * storage, other rows): c is read while the gates are written, and backward reads h, c, the weights and
     * prev, which a write over them would change after this record took their versions (h5rev) */
    bool apart = true;
    for (int k = 1; k < nin; k++) apart &= !fg_overlap(in[k], xp);
    tg_tensor *out;
    if (recorded && apart && tg__record_of(xp)) { /* over xp: its values are read into hp before the gates are written */
        tg__write_over(xp);
        out = tg_reshape_view(xp, 3, shape);
        tg__autorelease(out);
    } else out = tg__result(xp->dtype, 3, shape);
    tg_tensor *hp = tg__alloc(xp->dtype, 2, xp->shape), *X = tg__alloc(xp->dtype, 2, xshape), *rp = tg__alloc(xp->dtype, 2, xshape);
    if (!out || !hp || !X || !rp) {
        tg_release(hp); tg_release(X); tg_release(rp);
        if (!tg_error_pending()) tg_error(fn, "out of memory");
        return NULL;
    }
    int blk[3];
    fg_prev_blocks(prev, blk);
    fg_gather(X, prev, blk, B, H);
    tg__linear_into(X, W_gg, NULL, NULL, B, rp);
    tg__linear_into(h, W, b, NULL, B, hp);
    fg_fwd ctx = {xp, c, {w_ci, w_cf, w_co}, hp, rp, out, B, H};
    tg__for_rows(B, 4 * H, fg_add_rows, &ctx); /* every row of xp is read before any gate is written */
    tg__for_rows(B, 4 * H, fg_fwd_rows, &ctx);
    tg_release(hp); tg_release(X); tg_release(rp);
    if (recorded) tg__record(TG_OP_LSTM_FGR_GATES, out, nin, in);
    return out;
}

typedef struct {
    const tg_tensor *c, *out, *g, *w[3];
    tg_tensor *D, *gc;
    bool ac;
    int64_t B, H;
} fg_bwd;

/* Rows [r0, r1) of the backward: with dI, dF, dG, dO the upstream gradient of the gates (from
 * tg_lstm_state, the next step's prev and the caller), c' = f ⊙ c + i ⊙ g recomputed:
 *   dpre_o = dO o(1 − o),  e = dpre_o w_co (o's peephole on c'),  di = dI + e g,  df = dF + e c,  dg = dG + e i
 *   dpre_i = di i(1 − i),  dpre_f = df f(1 − f),  dpre_g = dg (1 − g²),  dc (+)= e f + dpre_i w_ci + dpre_f w_cf
 * D [B,4H] = [dpre_i | dpre_f | dpre_g | dpre_o] row by row (xp's layout). */
static void fg_bwd_rows(void *p, int64_t r0, int64_t r1) {
    const fg_bwd *q = p;
    const int64_t B = q->B, H = q->H, BH = B * H;
    TG_DISPATCH(q->g->dtype, {
        const T *po = TG_PTR(q->out, T), *pg = TG_PTR(q->g, T), *pc = TG_PTR(q->c, T);
        const T *restrict wi = TG_PTR(q->w[0], T), *restrict wf = TG_PTR(q->w[1], T), *restrict wo = TG_PTR(q->w[2], T);
        T *pd = TG_PTR(q->D, T), *dc = q->gc ? TG_PTR(q->gc, T) : NULL;
        for (int64_t r = r0; r < r1; r++) {
            const int64_t e0 = r * H;
            const T *restrict i = po + e0, *restrict f = po + BH + e0, *restrict gg = po + 2 * BH + e0, *restrict o = po + 3 * BH + e0;
            const T *restrict dI = pg + e0, *restrict dF = pg + BH + e0, *restrict dG = pg + 2 * BH + e0, *restrict dO = pg + 3 * BH + e0;
            const T *restrict cr = pc + e0;
            T *restrict d = pd + r * 4 * H;
            for (int64_t j = 0; j < H; j++) {
                const T dpo = dO[j] * (o[j] * (1 - o[j])), e = dpo * wo[j];
                const T dpi = (dI[j] + e * gg[j]) * (i[j] * (1 - i[j]));
                const T dpf = (dF[j] + e * cr[j]) * (f[j] * (1 - f[j]));
                d[j] = dpi, d[H + j] = dpf, d[2 * H + j] = (dG[j] + e * i[j]) * (1 - gg[j] * gg[j]), d[3 * H + j] = dpo;
                if (!dc) continue;
                const T t = e * f[j] + dpi * wi[j] + dpf * wf[j];
                if (q->ac) dc[e0 + j] = t;
                else dc[e0 + j] += t;
            }
        }
    });
}

/* dw_ci += Σ_rows dpre_i c,  dw_cf += Σ_rows dpre_f c,  dw_co += Σ_rows dpre_o c' (one thread, rows in order) */
static void fg_peep_grads(tg_tensor *const *gw, const tg_tensor *D, const tg_tensor *c, const tg_tensor *out, int64_t B,
                          int64_t H) {
    TG_DISPATCH(D->dtype, {
        const T *pd = TG_PTR(D, T), *pc = TG_PTR(c, T), *po = TG_PTR(out, T);
        T *dwi = gw[0] ? TG_PTR(gw[0], T) : NULL, *dwf = gw[1] ? TG_PTR(gw[1], T) : NULL, *dwo = gw[2] ? TG_PTR(gw[2], T) : NULL;
        for (int64_t r = 0; r < B; r++) {
            const T *restrict d = pd + r * 4 * H, *restrict cr = pc + r * H;
            const T *restrict i = po + r * H, *restrict f = po + B * H + r * H, *restrict gg = po + 2 * B * H + r * H;
            if (dwi) for (int64_t j = 0; j < H; j++) dwi[j] += d[j] * cr[j];
            if (dwf) for (int64_t j = 0; j < H; j++) dwf[j] += d[H + j] * cr[j];
            if (dwo) for (int64_t j = 0; j < H; j++) dwo[j] += d[3 * H + j] * (f[j] * cr[j] + i[j] * gg[j]);
        }
    });
}

/* D as above;  dxp += D;  dh += D·W, dW += Dᵀ·h, db += Σ_rows D;  with D_ifo [B,3H] the i, f, o blocks of D:
 * dW_gg += D_ifoᵀ·X,  dprev (+)= D_ifo·W_gg scattered back to prev's blocks */
void tg__lstm_fgr_gates__backward(tg_record *r, const tg_tensor *g) {
    tg_tensor *xp = r->in[0], *c = r->in[3], *Wgg = r->in[7], *prev = r->in[8];
    tg_tensor *b = r->nin > 9 ? r->in[9] : NULL;
    const int64_t B = xp->shape[0], H = xp->shape[1] / 4;
    bool ac;
    tg_tensor *scratch, *D = tg__pre_grad_buffer(xp, &scratch);
    tg_tensor *gc = tg__grad_buf_assign(c, &ac);
    if (!D) return;
    fg_bwd ctx = {c, r->out, g, {r->in[4], r->in[5], r->in[6]}, D, gc, ac, B, H};
    tg__for_rows(B, 4 * H, fg_bwd_rows, &ctx);
    tg_tensor *gw[3] = {tg__grad_buf(r->in[4]), tg__grad_buf(r->in[5]), tg__grad_buf(r->in[6])};
    fg_peep_grads(gw, D, c, r->out, B, H);
    tg__step_matrix_backward(r->in[1], r->in[2], b, D);
    if (tg__needs_grad(Wgg) || tg__needs_grad(prev)) {
        int64_t xshape[2] = {B, 3 * H};
        const int dblk[3] = {0, 1, 3};
        int blk[3];
        fg_prev_blocks(prev, blk);
        tg_tensor *Dx = tg__alloc(g->dtype, 2, xshape), *X = tg__alloc(g->dtype, 2, xshape);
        tg_tensor *dX = tg__needs_grad(prev) ? tg__alloc(g->dtype, 2, xshape) : NULL;
        tg_tensor *gp = tg__grad_buf(prev);
        if (Dx && X && (dX || !tg__needs_grad(prev)) && (gp || !dX)) {
            /* D viewed gate-major for the gather: D's rows are [dpre_i | dpre_f | dpre_g | dpre_o] */
            TG_DISPATCH(g->dtype, {
                const T *pd = TG_PTR(D, T);
                T *px = TG_PTR(Dx, T);
                for (int64_t q = 0; q < B; q++)
                    for (int k = 0; k < 3; k++) memcpy(px + q * 3 * H + k * H, pd + q * 4 * H + dblk[k] * H, (size_t)H * sizeof(T));
            });
            fg_gather(X, prev, blk, B, H);
            tg__linear_grads_into(X, Wgg, NULL, Dx, dX, true);
            if (dX)
                TG_DISPATCH(g->dtype, {
                    const T *px = TG_PTR(dX, T);
                    T *pp = TG_PTR(gp, T);
                    for (int64_t q = 0; q < B; q++)
                        for (int k = 0; k < 3; k++) {
                            T *dst = pp + blk[k] * B * H + q * H;
                            const T *src = px + q * 3 * H + k * H;
                            for (int64_t j = 0; j < H; j++) dst[j] += src[j];
                        }
                });
        } else if (!tg_error_pending()) tg_error("tg_backward", "tg_lstm_fgr_gates_: out of memory");
        tg_release(Dx); tg_release(X); tg_release(dX);
    }
    if (scratch && xp->grad) tg_axpy_(xp->grad, 1.0, scratch);
    tg_release(scratch);
}
