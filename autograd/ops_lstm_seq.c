/* autograd/ops_lstm_seq.c - an LSTM layer and direction over a whole sequence as one op (the built-in
 * "lstm" cell's sequence function, nn/cells.c).
 *
 * Dimension letters: T time steps, B rows (batch), H hidden size. xp [T,B,4H] is one layer's input
 * projection x·W_ihᵀ + b_ih for all steps (the runner makes it with one GEMM); gate order i, f, g, o.
 *
 * Why one op for the T steps, not tg_lstm_cell_ per step: at small batches (B = 1) the time of a step
 * is bookkeeping as much as arithmetic: per step the step path makes a record, two tg_select records for
 * h' and c', the runner's tg_select of xp_t, a [B,4H] scratch and the [2,B,H] result, and tg_stack copies
 * the outputs into [T,B,H] at the end; backward walks all of these again. This op makes one record and
 * one result [2,T,B,H] (row 0 the h'_t, which is the layer output, row 1 the c'_t); the gate activations
 * are stored over xp as tg_lstm_cell_ stores them (one version bump of xp, before the record). Tape per
 * step: 4 (gates) + 2 (h', c') floats per batch x hidden element, as the step path minus tg_stack's copy.
 *
 * Forward and backward run each step with the arithmetic of tg_lstm_cell_ (the same product with
 * tg_linear's rounding, the same row kernels of tensor/steps.h, the same staged dW_hh and db_hh
 * accumulation in the same step order) and with the gradient plumbing of the records it replaces
 * (tg_select's "0 + g" and tg_stack's copies), so values and gradients are bit-identical to the step path
 * (tests/test_ops.c lstm_seq_equals_the_steps_it_replaces, tests/test_nn.c sequence_path_equals_the_step_path). */
#include "autograd/ops_common.h"
#include "autograd/ops_step.h"
#include "tensor/steps.h"

#define LS_KNOWN TG_LSTMS_REVERSE

static bool ls_args(const char *fn, const tg_tensor *xp, const tg_tensor *h0, const tg_tensor *W, const tg_tensor *b,
                    const tg_tensor *c0, unsigned flags) {
    if (flags & ~(unsigned)LS_KNOWN) {
        tg_error(fn, "flags 0x%x: unknown bits 0x%x (TG_LSTMS_REVERSE of <tapegrad/ops.h> only)", flags,
                 flags & ~(unsigned)LS_KNOWN);
        return false;
    }
    if (!tg__check(fn, "xp", xp) || !tg__check(fn, "h0", h0) || !tg__check(fn, "W", W)) return false;
    if (!b && tg_error_pending()) return false; /* a NULL bias from a failed op, not "no bias" */
    if (b && !tg__check(fn, "b", b)) return false;
    if (!tg__check(fn, "c0", c0)) return false;
    if (!tg__same_dtype(fn, xp, h0) || !tg__same_dtype(fn, xp, c0) || !tg__same_dtype(fn, xp, W) ||
        (b && !tg__same_dtype(fn, xp, b)))
        return false;
    const int64_t GH = xp->ndim == 3 ? xp->shape[2] : -1, H = GH / 4;
    bool ok = xp->ndim == 3 && GH % 4 == 0 && h0->ndim == 2 && h0->shape[0] == xp->shape[1] && h0->shape[1] == H &&
              c0->ndim == 2 && c0->shape[0] == xp->shape[1] && c0->shape[1] == H && W->ndim == 2 &&
              W->shape[0] == GH && W->shape[1] == H && (!b || (b->ndim == 1 && b->shape[0] == GH));
    if (!ok) {
        char s1[128], s2[128], s3[128], s4[128], s5[128];
        tg_error(fn, "xp %s, h0 %s, c0 %s, W %s%s%s: need xp [T,B,4·H], h0 [B,H], c0 [B,H], W [4·H,H]%s",
                 tg_shape_str(xp, s1, sizeof s1), tg_shape_str(h0, s2, sizeof s2), tg_shape_str(c0, s3, sizeof s3),
                 tg_shape_str(W, s4, sizeof s4), b ? ", b " : "", b ? tg_shape_str(b, s5, sizeof s5) : "",
                 b ? ", b [4·H]" : "");
    }
    return ok;
}

/* Step s (in the order of the recurrence) reads and writes row ls_t(s) of the sequence. */
static inline int64_t ls_t(int64_t s, int64_t steps, bool reverse) { return reverse ? steps - 1 - s : s; }

/* One step's pointwise part over rows [r0, r1) (tensor/steps.h), as tg_lstm_cell_ runs it: raw pointers
 * to the step's rows; the fields a kernel does not use are NULL. */
typedef struct {
    tg_dtype dt;
    void *A, *h2, *c2, *hp, *D, *dc;
    const void *xp, *c, *gh, *gc;
    int assign;
    int64_t H;
} ls_rows;

#define LS_AT(p, T, r, w) ((p) ? (T *)(p) + (r) * (w) : NULL)

static void ls_fwd_rows(void *p, int64_t r0, int64_t r1) {
    const ls_rows *q = p;
    const int64_t H = q->H, GH = 4 * H;
    TG_DISPATCH(q->dt, {
        _Generic((T)0, float: tg_lstm_fwd_rows_f32, default: tg_lstm_fwd_rows_f64)(
            LS_AT(q->A, T, r0, GH), LS_AT(q->h2, T, r0, H), LS_AT(q->c2, T, r0, H), LS_AT(q->hp, T, r0, GH),
            LS_AT(q->xp, const T, r0, GH), LS_AT(q->c, const T, r0, H), r1 - r0, H);
    });
}

static void ls_bwd_rows(void *p, int64_t r0, int64_t r1) {
    const ls_rows *q = p;
    const int64_t H = q->H, GH = 4 * H;
    TG_DISPATCH(q->dt, {
        _Generic((T)0, float: tg_lstm_bwd_rows_f32, default: tg_lstm_bwd_rows_f64)(
            LS_AT(q->D, T, r0, GH), LS_AT(q->dc, T, r0, H), q->assign, LS_AT(q->A, const T, r0, GH),
            LS_AT(q->c, const T, r0, H), LS_AT(q->c2, const T, r0, H), LS_AT(q->gh, const T, r0, H),
            LS_AT(q->gc, const T, r0, H), r1 - r0, H);
    });
}

TG_OP(LSTM_SEQ, lstm_seq_, -1, IN1 | IN2 | IN3 | OUT) /* LSTM layer over T steps; in = xp, h0, W, c0[, b]; k[0] flags; aux = gates [T,B,4H]; out = [h'; c'] [2,T,B,H] */
tg_tensor *tg_lstm_seq_(tg_tensor *xp, const tg_tensor *h0, const tg_tensor *W, const tg_tensor *b, const tg_tensor *c0,
                        unsigned flags) {
    const char *fn = "tg_lstm_seq_";
    if (!ls_args(fn, xp, h0, W, b, c0, flags)) return NULL;
    const tg_tensor *in[5] = {xp, h0, W, c0, b};
    const int nin = b ? 5 : 4;
    bool recorded = false;
    for (int i = 0; i < nin && tg_grad_enabled(); i++) recorded |= tg__needs_grad(in[i]);
    const int64_t nT = xp->shape[0], B = xp->shape[1], GH = xp->shape[2], H = GH / 4, n = B * H;
    const bool reverse = flags & TG_LSTMS_REVERSE;
    /* the gates over xp only when it is an op result of this tape and no other input shares its storage
     * (h0, c0, W, b are read after xp's rows are overwritten); recorded elsewhere: a [T,B,4H] buffer of
     * their own; not recorded: nothing keeps them, one step's [B,4H] is reused */
    const bool over = recorded && tg__record_of(xp) && h0->storage != xp->storage && c0->storage != xp->storage &&
                      W->storage != xp->storage && (!b || b->storage != xp->storage);
    const int64_t oshape[4] = {2, nT, B, H};
    tg_tensor *out = tg__result(xp->dtype, 4, oshape);
    if (!out) return NULL;
    tg_tensor *own = over ? NULL : tg__alloc(xp->dtype, recorded ? 3 : 2, recorded ? xp->shape : xp->shape + 1);
    tg_tensor *hp = tg__alloc(xp->dtype, 2, xp->shape + 1); /* [B,4H] scratch: b + h·Wᵀ of a step */
    tg_tensor *Y = tg_view_at(out, 0);                       /* [T,B,H]: the h'_t */
    if ((!over && !own) || !hp || !Y) goto fail;
    if (over) tg_bump_version(xp);
    const size_t isz = tg_itemsize(xp->dtype);
    char *pA = tg__ptr(over ? xp : own), *po = tg__ptr(out);
    const char *px = tg__ptr(xp);
    for (int64_t s = 0; s < nT; s++) {
        const int64_t t = ls_t(s, nT, reverse), tp = s ? ls_t(s - 1, nT, reverse) : 0;
        tg_tensor *hv = s ? tg_view_at(Y, tp) : NULL; /* h'_{t−1} */
        if (s && !hv) goto fail;
        tg__linear_into(s ? hv : h0, W, b, NULL, B, hp);
        tg_release(hv);
        ls_rows q = {.dt = xp->dtype, .A = pA + (size_t)((recorded ? t : 0) * B * GH) * isz,
                     .h2 = po + (size_t)(t * n) * isz, .c2 = po + (size_t)((nT + t) * n) * isz, .hp = tg__ptr(hp),
                     .xp = px + (size_t)(t * B * GH) * isz,
                     .c = s ? (const void *)(po + (size_t)((nT + tp) * n) * isz) : tg__ptr(c0), .H = H};
        tg__for_rows(B, GH, ls_fwd_rows, &q);
    }
    tg_release(hp);
    tg_release(Y);
    hp = Y = NULL;
    /* the gates for backward: their own buffer, or a view of xp (made before the record, so that a failed
     * allocation leaves no record without them) */
    if (recorded && !own && !(own = tg_reshape_view(xp, 3, xp->shape))) goto fail;
    tg_record *r = recorded ? tg__record(TG_OP_LSTM_SEQ, out, nin, in) : NULL;
    if (r) {
        r->k[0] = (int64_t)flags;
        r->aux = own;
    } else tg_release(own);
    return out;
fail:
    tg_release(own);
    tg_release(hp);
    tg_release(Y);
    return NULL;
}

/* Per step, from the last to the first, with g = [g_h; g_c] the upstream gradient of [h'; c'] and the
 * step's gates a (aux), c'_{t−1} (c0 first), τ = tanh(c'_t):
 *   gh_t = 0 + (g_h,t + dh'_t),  gc_t = 0 + (g_c,t + dc'_t)     dh'_t, dc'_t from step t+1 (tg_select's "0 +")
 *   dpre_t = the LSTM step's backward (tensor/steps.h) of (gh_t, gc_t);  dc'_{t−1} = dc'·f
 *   dxp_t += dpre_t
 *   dh'_{t−1} = g_h,t−1 + dpre_t·W,  dW += dpre_tᵀ·h'_{t−1} (staged),  db += Σ_rows dpre_t   (tg_linear's)
 * with h'_{−1} = h0, c'_{−1} = c0 (dh0, dc0 += ...); "t − 1" is the step before in the recurrence's order. */
void tg__lstm_seq__backward(tg_record *r, const tg_tensor *g) {
    tg_tensor *xp = r->in[0], *h0 = r->in[1], *W = r->in[2], *c0 = r->in[3], *b = r->nin > 4 ? r->in[4] : NULL;
    const tg_tensor *out = r->out, *A = r->aux;
    const unsigned flags = (unsigned)r->k[0];
    const bool reverse = flags & TG_LSTMS_REVERSE;
    const int64_t nT = out->shape[1], B = out->shape[2], H = out->shape[3], GH = 4 * H, n = B * H;
    const size_t isz = tg_itemsize(g->dtype), row = (size_t)n * isz;
    if (nT == 0) return;
    bool ax;
    tg_tensor *gx = tg__grad_buf_assign(xp, &ax);
    const int64_t bh[2] = {B, H};
    /* dL/dh' of the current step (carry) and of the one before (next), the kernel's gh and gc (0 + ...),
     * dc'_{t−1} from the kernel; dpre in gx's row (a new dxp) or D */
    tg_tensor *carry = tg__alloc(g->dtype, 2, bh), *next = tg__alloc(g->dtype, 2, bh);
    tg_tensor *gh = tg__alloc(g->dtype, 2, bh), *gc = tg__alloc(g->dtype, 2, bh), *dcp = tg__alloc(g->dtype, 2, bh);
    tg_tensor *D = gx && ax ? NULL : tg__alloc(g->dtype, 2, (const int64_t[]){B, GH});
    tg_tensor *Y = tg_view_at(out, 0);
    if (!carry || !next || !gh || !gc || !dcp || (!D && !(gx && ax)) || !Y) goto done;
    const char *pg = tg__ptr(g), *po = tg__ptr(out), *pA = tg__ptr(A);
    memcpy(tg__ptr(carry), pg + (size_t)ls_t(nT - 1, nT, reverse) * row, row);
    for (int64_t s = nT - 1; s >= 0; s--) {
        const int64_t t = ls_t(s, nT, reverse), tp = s ? ls_t(s - 1, nT, reverse) : -1;
        tg_tensor *Dv = D ? tg_retain(D) : tg_view_at(gx, t);
        tg_tensor *hv = s ? tg_view_at(Y, tp) : tg_retain(h0); /* h'_{t−1} */
        if (!Dv || !hv) { tg_release(Dv); tg_release(hv); goto done; }
        if (s) memcpy(tg__ptr(next), pg + (size_t)tp * row, row);
        /* the step's [g_h; g_c] as tg_lstm_cell_'s backward sees it: tg_select's backward adds the views'
         * gradients into a zeroed buffer; c'_t's gradient is dc'_t from step t+1 (none at the last) */
        const bool last = s == nT - 1;
        TG_DISPATCH(g->dtype, {
            const T *restrict ch = TG_PTR(carry, T), *restrict gcu = (const T *)(pg + (size_t)(nT + t) * row);
            const T *restrict dc = TG_PTR(dcp, T);
            T *restrict ph = TG_PTR(gh, T), *restrict pc = TG_PTR(gc, T);
            for (int64_t i = 0; i < n; i++) ph[i] = (T)0 + ch[i];
            if (last) for (int64_t i = 0; i < n; i++) pc[i] = (T)0 + gcu[i];
            else for (int64_t i = 0; i < n; i++) pc[i] = (T)0 + (dc[i] + gcu[i]);
        });
        bool ac = true;
        tg_tensor *gc0 = s ? NULL : tg__grad_buf_assign(c0, &ac);
        ls_rows q = {.dt = g->dtype, .D = tg__ptr(Dv), .dc = s ? tg__ptr(dcp) : gc0 ? tg__ptr(gc0) : NULL,
                     .assign = ac, .A = (void *)(pA + (size_t)(t * B * GH) * isz),
                     .c = s ? (const void *)(po + (size_t)(nT + tp) * row) : tg__ptr(c0),
                     .c2 = (void *)(po + (size_t)(nT + t) * row), .gh = tg__ptr(gh), .gc = tg__ptr(gc), .H = H};
        tg__for_rows(B, GH, ls_bwd_rows, &q);
        /* h'_{t−1}'s gradient is the upstream one plus dpre·W, added by tg_linear's backward */
        if (s) { hv->requires_grad = true; hv->grad = next; }
        tg__step_matrix_backward(hv, W, b, Dv);
        if (s) hv->grad = NULL;
        if (gx) /* tg_select's backward adds into a zeroed gradient: 0 + dpre (so −0 becomes +0 as there) */
            TG_DISPATCH(g->dtype, {
                T *dx = TG_PTR(gx, T) + t * B * GH;
                const T *d = TG_PTR(Dv, T); /* dx's row itself when ax */
                if (ax) for (int64_t i = 0; i < B * GH; i++) dx[i] = (T)0 + dx[i];
                else for (int64_t i = 0; i < B * GH; i++) dx[i] += d[i];
            });
        tg_release(Dv);
        tg_release(hv);
        tg_tensor *tmp = carry;
        carry = next, next = tmp;
    }
done:
    tg_release(carry);
    tg_release(next);
    tg_release(gh);
    tg_release(gc);
    tg_release(dcp);
    tg_release(D);
    tg_release(Y);
}
