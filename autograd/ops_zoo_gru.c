/* autograd/ops_zoo_gru.c - one step of the zoo's GRU-like cells (MGU, MUT1-3, Cho's reset-before GRU) as
 * one op: gate(s), a candidate that reads (gate ⊙ h) through its own recurrent product, a blend.
 *
 * Dimension letters as in autograd/ops_fused.c: B rows, H hidden size (the width of h), n_x the blocks of
 * xp [B,n_x·H], the step's input projection x·W_ihᵀ + b_ih (the runner's view of its [T,B,n_x·H] result).
 * The two gates: u blends (MGU's f, MUT's z, the GRU's z), s scales h for the candidate (MGU's f again,
 * MUT's r, the GRU's r):
 *     u = σ(xp_u + h·W_uᵀ + b_u)         (or of tanh(h), or σ(xp_u) alone)
 *     s = σ(xp_s + h·W_sᵀ + b_s)         (or x in place of xp_s; MGU: s = u)
 *     h̃ = tanh(xp_c + (s ⊙ h)·W_cᵀ + b_c)  (or tanh(x) in place of xp_c)
 *     h' = h + u ⊙ (h̃ − h)                (or h̃ + u ⊙ (h − h̃): the GRU's z keeps h)
 *
 * Why: written with plain ops (tg_chunk, tg_linear on block views of weight_hh, tg_sigmoid, tg_mul, tg_tanh,
 * tg_lerp) such a step keeps 14-21 floats per batch x hidden element on the tape (every op keeps its
 * [B,H] result, the chunks copy xp) and makes 8-12 records. This op runs the same products (tg_linear's
 * GEMM, on the same block views, so they are packed once per forward and their dW staged over the steps)
 * with the pre-activations in scratch buffers, stores the activations u, s, h̃ over xp's blocks (an op
 * result of the current tape that nothing reads after this step) and keeps h': the minimum, one record.
 * An activation whose term has no xp block (MUT1's h̃, MUT2's r) is kept as a second part of the result.
 * Backward recomputes s ⊙ h (and tanh(h), tanh(x)) from the saved inputs. */
#include "autograd/ops_common.h"
#include "autograd/ops_step.h"
#include "tensor/steps.h"
#include "tensor/vmath.h"

#include <math.h>

#define GZ_KNOWN                                                                                                  \
    (TG_GRUZ_ONE_GATE | TG_GRUZ_U_INPUT_ONLY | TG_GRUZ_U_TANH_H | TG_GRUZ_S_PLUS_X | TG_GRUZ_C_TANH_X | \
     TG_GRUZ_SHARED | TG_GRUZ_S_FIRST | TG_GRUZ_KEEP_H)

/* Where each activation lives (tensor/steps.h, shared with the row kernels) */
typedef tg_gz_layout gz_layout;

static gz_layout gz_layout_of(unsigned flags) {
    gz_layout L = {.one = flags & TG_GRUZ_ONE_GATE, .u_rec = !(flags & TG_GRUZ_U_INPUT_ONLY),
                   .u_tanh = flags & TG_GRUZ_U_TANH_H, .s_x = flags & TG_GRUZ_S_PLUS_X, .c_x = flags & TG_GRUZ_C_TANH_X,
                   .shared = flags & TG_GRUZ_SHARED, .keep_h = flags & TG_GRUZ_KEEP_H};
    L.bu = L.bs = L.bc = -1;
    L.K = 1;
    const bool s_block = !L.one && !L.s_x;
    if ((flags & TG_GRUZ_S_FIRST) && s_block) L.bs = L.nx++;
    L.bu = L.nx++;
    if (!(flags & TG_GRUZ_S_FIRST) && s_block) L.bs = L.nx++;
    if (L.one) L.bs = L.bu;
    if (!L.c_x) L.bc = L.nx++;
    L.ks = L.bs < 0 ? L.K++ : 0;
    L.kc = L.bc < 0 ? L.K++ : 0;
    return L;
}

/* The row offset of the gate u or s in a shared product [B,2H] (block order of xp: s first with S_FIRST) */
static int64_t gz_shared_off(unsigned flags, bool gate_s, int64_t H) {
    return ((flags & TG_GRUZ_S_FIRST) != 0) == gate_s ? 0 : H;
}

/* Rows [r0, r1), first pass: u = σ(xp_u + p_u), s = σ(xp_s or x + p_s) into A (or the result's part),
 * q = s ⊙ h. A row of xp is read before that row of A is written (A may be xp itself). Second pass:
 * h̃ = tanh(xp_c or tanh(x) + p_c) into A (or the result's part), then h' = h + u ⊙ (h̃ − h) (keep_h:
 * h̃ + u ⊙ (h − h̃)), tg_lerp's rounding. The loops are the dispatched kernels of tensor/steps.h. */
typedef struct {
    tg_gz_fwd k;
    bool f64;
} gz_fwd;
static void gz_gates_rows(void *p, int64_t r0, int64_t r1) {
    const gz_fwd *c = p;
    if (c->f64) tg_gz_gates_rows_f64(&c->k, r0, r1);
    else tg_gz_gates_rows_f32(&c->k, r0, r1);
}
static void gz_blend_rows(void *p, int64_t r0, int64_t r1) {
    const gz_fwd *c = p;
    if (c->f64) tg_gz_blend_rows_f64(&c->k, r0, r1);
    else tg_gz_blend_rows_f32(&c->k, r0, r1);
}

/* A weight's checks: given exactly when the flags use it, [rows·H, H] of xp's dtype, its bias [rows·H]
 * or NULL (and no bias without its weight). */
static bool gz_weight_ok(const char *fn, const char *wname, const tg_tensor *W, const char *bname, const tg_tensor *b,
                         bool used, const char *why_not, int64_t rows, int64_t H, const tg_tensor *xp) {
    char s[128];
    if (!used) {
        const tg_tensor *t = W ? W : b;
        if (t) tg_error(fn, "%s %s given, but %s", W ? wname : bname, tg_shape_str(t, s, sizeof s), why_not);
        return !t && !tg_error_pending();
    }
    if (!tg__check(fn, wname, W)) return false;
    if (!b && tg_error_pending()) return false; /* a NULL bias from a failed op, not "no bias" */
    if (b && !tg__check(fn, bname, b)) return false;
    if (!tg__same_dtype(fn, xp, W) || (b && !tg__same_dtype(fn, xp, b))) return false;
    if (W->ndim != 2 || W->shape[0] != rows * H || W->shape[1] != H) {
        tg_error(fn, "%s %s: need [%lld,%lld]", wname, tg_shape_str(W, s, sizeof s), (long long)(rows * H), (long long)H);
        return false;
    }
    if (b && (b->ndim != 1 || b->shape[0] != rows * H)) {
        tg_error(fn, "%s %s: need [%lld]", bname, tg_shape_str(b, s, sizeof s), (long long)(rows * H));
        return false;
    }
    return true;
}

/* Checks of the flags and every argument; reports under fn. */
static bool gz_args(const char *fn, unsigned flags, const tg_tensor *xp, const tg_tensor *x, const tg_tensor *h,
                    const tg_tensor *W_u, const tg_tensor *b_u, const tg_tensor *W_s, const tg_tensor *b_s,
                    const tg_tensor *W_c, const tg_tensor *b_c) {
    if (flags & ~(unsigned)GZ_KNOWN) {
        tg_error(fn, "flags 0x%x: unknown bits 0x%x (TG_GRUZ_* of <tapegrad/ops.h> only)", flags, flags & ~(unsigned)GZ_KNOWN);
        return false;
    }
    static const struct { unsigned a, b; const char *why; } clash[] = {
        {TG_GRUZ_ONE_GATE, TG_GRUZ_S_PLUS_X | TG_GRUZ_SHARED | TG_GRUZ_S_FIRST | TG_GRUZ_U_INPUT_ONLY,
         "TG_GRUZ_ONE_GATE (s = u, one gate with a product) excludes TG_GRUZ_S_PLUS_X, _SHARED, _S_FIRST and _U_INPUT_ONLY"},
        {TG_GRUZ_U_INPUT_ONLY, TG_GRUZ_U_TANH_H | TG_GRUZ_SHARED,
         "TG_GRUZ_U_INPUT_ONLY (u without a product) excludes TG_GRUZ_U_TANH_H and TG_GRUZ_SHARED"},
        {TG_GRUZ_SHARED, TG_GRUZ_U_TANH_H, "TG_GRUZ_SHARED (u and s from one product of h) excludes TG_GRUZ_U_TANH_H"},
    };
    for (size_t k = 0; k < sizeof clash / sizeof clash[0]; k++)
        if ((flags & clash[k].a) && (flags & clash[k].b)) {
            tg_error(fn, "flags 0x%x: %s", flags, clash[k].why);
            return false;
        }
    if (!tg__check(fn, "xp", xp) || !tg__check(fn, "h", h) || !tg__same_dtype(fn, xp, h)) return false;
    const gz_layout L = gz_layout_of(flags);
    char s1[128], s2[128];
    if (xp->ndim != 2 || h->ndim != 2 || h->shape[0] != xp->shape[0] || xp->shape[1] != L.nx * h->shape[1]) {
        tg_error(fn, "xp %s, h %s: need xp [B,%d·H] and h [B,H] (flags 0x%x: %d blocks of xp)", tg_shape_str(xp, s1, sizeof s1),
                 tg_shape_str(h, s2, sizeof s2), L.nx, flags, L.nx);
        return false;
    }
    const int64_t H = h->shape[1];
    const bool wants_x = L.s_x || L.c_x;
    if (!wants_x && x) {
        tg_error(fn, "x %s given, but neither TG_GRUZ_S_PLUS_X nor TG_GRUZ_C_TANH_X reads it", tg_shape_str(x, s1, sizeof s1));
        return false;
    }
    if (wants_x) {
        if (!tg__check(fn, "x", x) || !tg__same_dtype(fn, xp, x)) return false;
        if (x->ndim != 2 || x->shape[0] != h->shape[0] || x->shape[1] != H) {
            tg_error(fn, "x %s, h %s: need x [B,H] like h (the cell adds x itself to an H-wide pre-activation)",
                     tg_shape_str(x, s1, sizeof s1), tg_shape_str(h, s2, sizeof s2));
            return false;
        }
    }
    return gz_weight_ok(fn, "W_u", W_u, "b_u", b_u, L.u_rec && !L.shared, L.shared ? "u reads the shared product W_s (TG_GRUZ_SHARED)"
                        : "u has no recurrent product (TG_GRUZ_U_INPUT_ONLY)", 1, H, xp) &&
           gz_weight_ok(fn, "W_s", W_s, "b_s", b_s, !L.one, "s is u (TG_GRUZ_ONE_GATE)", L.shared ? 2 : 1, H, xp) &&
           gz_weight_ok(fn, "W_c", W_c, "b_c", b_c, true, "", 1, H, xp);
}

/* Bits of k[1]: which optional inputs the record holds, in this order after xp, h, W_c */
enum { GZ_HAS_X = 1, GZ_HAS_WU = 2, GZ_HAS_WS = 4, GZ_HAS_BU = 8, GZ_HAS_BS = 16, GZ_HAS_BC = 32 };

TG_OP(GRU_ZOO, gru_zoo_, -1, IN1 | IN2 | IN3 | IN4 | IN5 | OUT) /* GRU-like step; in = xp, h, W_c, then x, W_u, W_s, b_u, b_s, b_c present; k[0] flags, k[1] which; aux = activations */
tg_tensor *tg_gru_zoo_(tg_tensor *xp, const tg_tensor *x, const tg_tensor *h, const tg_tensor *W_u, const tg_tensor *b_u,
                       const tg_tensor *W_s, const tg_tensor *b_s, const tg_tensor *W_c, const tg_tensor *b_c,
                       unsigned flags) {
    const char *fn = "tg_gru_zoo_";
    if (!gz_args(fn, flags, xp, x, h, W_u, b_u, W_s, b_s, W_c, b_c)) return NULL;
    const gz_layout L = gz_layout_of(flags);
    const int64_t B = xp->shape[0], H = h->shape[1];
    const tg_tensor *opt[6] = {x, W_u, W_s, b_u, b_s, b_c}, *in[9] = {xp, h, W_c};
    int nin = 3, which = 0;
    for (int k = 0; k < 6; k++)
        if (opt[k]) in[nin++] = opt[k], which |= 1 << k;
    int64_t shape[3] = {L.K, B, H};
    tg_tensor *out = tg__result(xp->dtype, 3, shape);
    if (!out) return NULL;
    bool recorded = false;
    for (int k = 0; k < nin && tg_grad_enabled(); k++) recorded |= tg__needs_grad(in[k]);
    /* scratch: the gate products (one shared [B,2H], or [B,H] each), tanh(h), s ⊙ h, the candidate's product */
    const int64_t bh[2] = {B, H}, b2h[2] = {B, 2 * H};
    tg_tensor *pu = L.u_rec && !L.shared ? tg__alloc(xp->dtype, 2, bh) : NULL;
    tg_tensor *ps = L.one ? NULL : tg__alloc(xp->dtype, 2, L.shared ? b2h : bh);
    tg_tensor *th = L.u_tanh ? tg__alloc(xp->dtype, 2, bh) : NULL;
    tg_tensor *q = tg__alloc(xp->dtype, 2, bh), *pc = tg__alloc(xp->dtype, 2, bh), *own = NULL;
    tg_tensor *A = (!L.u_rec || L.shared || pu) && (L.one || ps) && (!L.u_tanh || th) && q && pc
                       ? tg__gate_buffer(xp, recorded, &own) : NULL;
    if (A) {
        if (th) {
            TG_DISPATCH(xp->dtype, { _Generic((T)0, float: tg_vtanh_f32, default: tg_vtanh_f64)(TG_PTR(th, T), TG_PTR(h, T), B * H); });
        }
        if (pu) tg__linear_into(th ? th : h, W_u, b_u, NULL, B, pu);
        if (ps) tg__linear_into(h, W_s, b_s, NULL, B, ps);
        /* u reads pu, or its half of the shared product, or nothing (σ(xp_u) alone) */
        const tg_tensor *gu = L.shared ? ps : pu;
        gz_fwd ctx = {{tg__ptr(xp), x ? tg__ptr(x) : NULL, tg__ptr(h), gu ? tg__ptr(gu) : NULL, ps ? tg__ptr(ps) : NULL,
                       tg__ptr(pc), tg__ptr(A), tg__ptr(out), tg__ptr(q), L, B, H, 0, 0, L.shared ? 2 * H : H},
                      xp->dtype == TG_F64};
        if (L.shared) ctx.k.ou = gz_shared_off(flags, false, H), ctx.k.os = gz_shared_off(flags, true, H);
        tg__for_rows(B, L.nx * H, gz_gates_rows, &ctx);
        tg__linear_into(q, W_c, b_c, NULL, B, pc);
        tg__for_rows(B, L.nx * H, gz_blend_rows, &ctx);
    }
    tg_release(pu), tg_release(ps), tg_release(th), tg_release(q), tg_release(pc);
    if (!A) return NULL;
    tg_record *r = recorded ? tg__record(TG_OP_GRU_ZOO, out, nin, in) : NULL;
    if (r) {
        r->aux = own ? own : tg_reshape_view(xp, 2, xp->shape);
        r->k[0] = (int64_t)flags;
        r->k[1] = which;
    } else tg_release(own);
    return out;
}

/* Rows [r0, r1), first pass (through the blend and the candidate's tanh):
 *   h' = h + u(h̃ − h): dh̃ = g u,  du = g (h̃ − h),  dh = g − g u   (keep_h: dh̃ = g − g u, du = g (h − h̃), dh = g u)
 *   dh̃ += g_h̃ (a kept part of the result),  Dc = dh̃ (1 − h̃²);  q = s ⊙ h again, du into Du for now
 * Second pass (through s ⊙ h and the gates), dq = Dc·W_c given:
 *   ds = dq ⊙ h [+ g_s],  dh += dq ⊙ s,  Ds = ds s(1 − s),  Du = du u(1 − u)   (one gate: Du = (du + ds) u(1 − u))
 *   into xp's gradient rows Dx: the blocks of u, s, h̃;  dx += Ds (S_PLUS_X),  dx += Dc (1 − tanh² x) (C_TANH_X)
 * The loops are the dispatched kernels of tensor/steps.h. */
typedef struct {
    tg_gz_bwd k;
    bool f64;
} gz_bwd;
static void gz_bwd1_rows(void *p, int64_t r0, int64_t r1) {
    const gz_bwd *c = p;
    if (c->f64) tg_gz_bwd1_rows_f64(&c->k, r0, r1);
    else tg_gz_bwd1_rows_f32(&c->k, r0, r1);
}
static void gz_bwd2_rows(void *p, int64_t r0, int64_t r1) {
    const gz_bwd *c = p;
    if (c->f64) tg_gz_bwd2_rows_f64(&c->k, r0, r1);
    else tg_gz_bwd2_rows_f32(&c->k, r0, r1);
}

/* The formulas above gz_bwd1_rows and gz_bwd2_rows, then the products' backwards (tg_linear's):
 *   dq = Dc·W_c, dW_c += Dcᵀ·q, db_c += Σ_rows Dc    (q = s ⊙ h, a scratch recomputed)
 *   dh += Ds·W_s, dW_s += Dsᵀ·h, db_s += Σ_rows Ds   (shared: [Du | Ds] against W_s [2H,H])
 *   dh += Du·W_u, ...   (of tanh(h): dt = Du·W_u, dW_u += Duᵀ·tanh(h), dh += dt (1 − tanh² h))
 *   dxp += [Du | Ds | Dc] in xp's block order */
void tg__gru_zoo__backward(tg_record *r, const tg_tensor *g) {
    tg_tensor *xp = r->in[0], *h = r->in[1], *W_c = r->in[2];
    const unsigned flags = (unsigned)r->k[0], which = (unsigned)r->k[1];
    const gz_layout L = gz_layout_of(flags);
    tg_tensor *opt[6] = {NULL};
    for (int k = 0, i = 3; k < 6; k++)
        if (which & (1u << k)) opt[k] = r->in[i++];
    tg_tensor *x = opt[0], *W_u = opt[1], *W_s = opt[2], *b_u = opt[3], *b_s = opt[4], *b_c = opt[5];
    const int64_t B = xp->shape[0], H = h->shape[1];
    const int64_t bh[2] = {B, H}, b2h[2] = {B, 2 * H};
    /* Du, Ds [B,H] each, and for a shared product also side by side in one [B,2H] (its G) */
    tg_tensor *Du = tg__alloc(g->dtype, 2, bh), *Ds = L.one ? NULL : tg__alloc(g->dtype, 2, bh);
    tg_tensor *Dus = L.shared ? tg__alloc(g->dtype, 2, b2h) : NULL;
    tg_tensor *Dc = tg__alloc(g->dtype, 2, bh), *q = tg__alloc(g->dtype, 2, bh), *dq = tg__alloc(g->dtype, 2, bh);
    tg_tensor *th = L.u_tanh ? tg__alloc(g->dtype, 2, bh) : NULL, *dt = L.u_tanh ? tg__alloc(g->dtype, 2, bh) : NULL;
    tg_tensor *scratch = NULL, *Dx = tg__needs_grad(xp) ? tg__pre_grad_buffer(xp, &scratch) : NULL;
    bool ok = Du && (L.one || Ds) && Dc && q && dq && (!L.u_tanh || (th && dt)) && (!L.shared || Dus) &&
              (!tg__needs_grad(xp) || Dx);
    if (ok) {
        gz_bwd ctx = {{tg__ptr(r->aux), tg__ptr(r->out), tg__ptr(g), tg__ptr(h), x ? tg__ptr(x) : NULL, tg__ptr(dq),
                       tg__ptr(Du), Ds ? tg__ptr(Ds) : NULL, tg__ptr(Dc), tg__ptr(q), NULL, NULL, Dx ? tg__ptr(Dx) : NULL,
                       false, false, L, B, H},
                      g->dtype == TG_F64};
        tg_tensor *gh = tg__grad_buf_assign(h, &ctx.k.ah);
        ctx.k.gh = gh ? tg__ptr(gh) : NULL;
        tg__for_rows(B, L.nx * H, gz_bwd1_rows, &ctx);
        tg__linear_grads_into(q, W_c, b_c, Dc, dq, true);
        if (ctx.k.gh) ctx.k.ah = false;
        tg_tensor *gx = x ? tg__grad_buf_assign(x, &ctx.k.ax) : NULL;
        ctx.k.gx = gx ? tg__ptr(gx) : NULL;
        tg__for_rows(B, L.nx * H, gz_bwd2_rows, &ctx);
        if (scratch && xp->grad) tg_axpy_(xp->grad, 1.0, scratch);
        if (L.shared) {
            TG_DISPATCH(g->dtype, {
                const T *pu = TG_PTR(Du, T), *ps = TG_PTR(Ds, T);
                T *d = TG_PTR(Dus, T);
                const int64_t ou = gz_shared_off(flags, false, H), os = gz_shared_off(flags, true, H);
                for (int64_t i = 0; i < B; i++) {
                    memcpy(d + i * 2 * H + ou, pu + i * H, (size_t)H * sizeof(T));
                    memcpy(d + i * 2 * H + os, ps + i * H, (size_t)H * sizeof(T));
                }
            });
            tg__step_matrix_backward(h, W_s, b_s, Dus);
        } else {
            if (!L.one) tg__step_matrix_backward(h, W_s, b_s, Ds);
            if (W_u && !L.u_tanh) tg__step_matrix_backward(h, W_u, b_u, Du);
            if (W_u && L.u_tanh) {
                /* t = tanh(h): dt = Du·W_u (stored), dW_u += Duᵀ·t, then dh += dt (1 − t²) */
                TG_DISPATCH(g->dtype, {
                    T *pt = TG_PTR(th, T);
                    _Generic((T)0, float: tg_vtanh_f32, default: tg_vtanh_f64)(pt, TG_PTR(h, T), B * H);
                });
                tg__linear_grads_into(th, W_u, b_u, Du, dt, true);
                tg_tensor *gh = tg__grad_buf(h);
                if (gh) {
                    TG_DISPATCH(g->dtype, {
                        const T *pt = TG_PTR(th, T), *pd = TG_PTR(dt, T);
                        T *d = TG_PTR(gh, T);
                        for (int64_t i = 0; i < B * H; i++) d[i] += pd[i] * (1 - pt[i] * pt[i]);
                    });
                }
            }
        }
    }
    tg_release(Dus), tg_release(Du), tg_release(Ds), tg_release(Dc), tg_release(q), tg_release(dq);
    tg_release(th), tg_release(dt), tg_release(scratch);
}
