/* autograd/ops_fused.c - whole recurrent steps as one op each, for tape memory and per-op overhead.
 *
 * Dimension letters: B rows (batch), H hidden size, R the width of h (H, or P with projections),
 * G gate blocks. xp [B, G·H] is the step's input projection x·W_ihᵀ + b_ih (the runner makes it for all
 * time steps with one GEMM, so xp is a view of that [T,B,G·H] result).
 *
 * Why: written with tg_linear_add + tg_gates + tg_lstm_state, an LSTM step keeps three [B,4H] buffers
 * on the tape (xp, the pre-activations, the gate activations) for the one that backward needs. The
 * fused op computes the pre-activations in a scratch buffer and, when xp is an op result of the
 * current tape (the runner's view of its input projection, which nothing reads after this step),
 * stores the gate activations over xp itself. Tape per LSTM step: 4 (gates, in xp) + 2 (h', c')
 * floats per batch x hidden element, instead of 4 + 4 + 4 + 2. One record instead of three.
 *
 * The arithmetic is that of the three ops it replaces, in the same order, so values and gradients are
 * bit-identical to them (tests/test_ops.c checks it). */
#include "autograd/ops_common.h"
#include "autograd/ops_step.h"
#include "tensor/pool.h"
#include "tensor/steps.h"
#include "tensor/vmath.h"

#include <math.h>
#include <stdatomic.h>

/* ---- rows on several threads --------------------------------------------------------------------
 * The pointwise part of a fused step (and of its backward) is independent row by row, so with
 * tg_set_num_threads(n > 1) its B rows are cut into one block per thread, claimed by the caller and
 * the GEMM's worker pool (tensor/pool.h). Each row is computed by the same code in the same order on
 * any thread, so results are identical to one thread. Below TG_ROWS_MT_MIN elements of work (per
 * step), or with the pool busy, the caller does every row. */
#define TG_ROWS_MT_MIN 16384
typedef void (*rows_fn)(void *ctx, int64_t r0, int64_t r1);
typedef struct {
    rows_fn fn;
    void *ctx;
    int64_t n, chunk;
    atomic_long next; /* next unclaimed block */
} rows_task;

static void rows_worker(void *p) {
    rows_task *t = p;
    for (;;) {
        const int64_t r0 = atomic_fetch_add_explicit(&t->next, 1, memory_order_relaxed) * t->chunk;
        if (r0 >= t->n) break;
        t->fn(t->ctx, r0, r0 + t->chunk < t->n ? r0 + t->chunk : t->n);
    }
}

/* fn(ctx, r0, r1) over the rows [0, n), each row_elems elements wide, on up to tg_get_num_threads() threads */
static void for_rows(int64_t n, int64_t row_elems, rows_fn fn, void *ctx) {
    int nt = tg_get_num_threads();
    if (nt > 1 && n >= 2 && n * row_elems >= TG_ROWS_MT_MIN) {
        if (nt > n) nt = (int)n;
        rows_task t = {fn, ctx, n, (n + nt - 1) / nt, 0};
        if (tg__pool_run(nt, rows_worker, &t)) return;
    }
    fn(ctx, 0, n);
}

/* ---- shared by the fused steps --------------------------------------------------------------------- */

/* Checks of (xp [B,G·H], h [B,R], W [G·H,R], b [G·H] or NULL, c [B,H] or NULL); H from xp. */
static bool step_args(const char *fn, int G, const tg_tensor *xp, const tg_tensor *h, const tg_tensor *W,
                      const tg_tensor *b, const tg_tensor *c) {
    if (!tg__check(fn, "xp", xp) || !tg__check(fn, "h", h) || !tg__check(fn, "W", W)) return false;
    if (!b && tg_error_pending()) return false; /* a NULL bias from a failed op, not "no bias" */
    if (b && !tg__check(fn, "b", b)) return false;
    if (G == 4 && !tg__check(fn, "c", c)) return false;
    if (!tg__same_dtype(fn, xp, h) || !tg__same_dtype(fn, xp, W) || (b && !tg__same_dtype(fn, xp, b)) ||
        (c && !tg__same_dtype(fn, xp, c)))
        return false;
    char s1[128], s2[128], s3[128], s4[128];
    bool ok = xp->ndim == 2 && h->ndim == 2 && W->ndim == 2 && xp->shape[1] % G == 0 && h->shape[0] == xp->shape[0] &&
              W->shape[0] == xp->shape[1] && W->shape[1] == h->shape[1] && (!b || (b->ndim == 1 && b->shape[0] == xp->shape[1]));
    int64_t H = xp->ndim == 2 ? xp->shape[1] / G : 0;
    if (ok && c) ok = c->ndim == 2 && c->shape[0] == xp->shape[0] && c->shape[1] == H;
    if (!ok)
        tg_error(fn, "xp %s, h %s, W %s%s%s: need xp [B,%d·H], h [B,R], W [%d·H,R]%s%s", tg_shape_str(xp, s1, sizeof s1),
                 tg_shape_str(h, s2, sizeof s2), tg_shape_str(W, s3, sizeof s3), c ? ", c " : "",
                 c ? tg_shape_str(c, s4, sizeof s4) : "", G, G, b ? ", b [G·H]" : "", c ? ", c [B,H]" : "");
    return ok;
}

/* Where the gate activations of a step go: over xp itself when xp is an op result of the current tape
 * and the step will be recorded (xp's storage version is bumped, so an earlier op that saved it fails
 * in backward rather than reading gates), else a buffer of their own (*own, a new ref). */
static tg_tensor *gate_buffer(tg_tensor *xp, bool recorded, tg_tensor **own) {
    *own = NULL;
    if (recorded && tg__record_of(xp)) {
        tg_bump_version(xp);
        return xp;
    }
    *own = tg__alloc(xp->dtype, 2, xp->shape);
    return *own;
}

/* The matrix part of a step's backward, given G = dL/d(pre-activations) [B, G·H] of pre = xp + h·Wᵀ + b:
 * dh += G·W, dW += Gᵀ·h (staged inside tg_backward), db += Σ_rows G: tg_linear's backward on (h, W, b). */
static void step_matrix_backward(tg_tensor *h, tg_tensor *W, tg_tensor *b, const tg_tensor *G) {
    tg_record lin = {.op = TG_OP_LINEAR, .nin = b ? 3 : 2, .in_inline = {h, W, b}};
    lin.in = lin.in_inline;
    lin.in_version = lin.ver_inline;
    tg__linear_backward(&lin, G);
}

/* Where a backward stores dL/d(pre-activations) [B,G·H]: xp's new gradient buffer itself, or *scratch (a
 * new ref the caller adds into xp's existing gradient, if any, and releases). */
static tg_tensor *pre_grad_buffer(tg_tensor *xp, tg_tensor **scratch) {
    *scratch = NULL;
    bool store;
    tg_tensor *gx = tg__grad_buf_assign(xp, &store);
    if (gx && store) return gx;
    /* the kernel stores into a buffer of its own; an existing gradient is added after */
    *scratch = tg__alloc(xp->dtype, 2, xp->shape);
    return *scratch;
}

/* The helpers above for the other fused step ops (autograd/ops_step.h; the zoo's LSTM family) */
void tg__for_rows(int64_t n, int64_t row_elems, tg__rows_fn fn, void *ctx) { for_rows(n, row_elems, fn, ctx); }
bool tg__step_args(const char *fn, int G, const tg_tensor *xp, const tg_tensor *h, const tg_tensor *W,
                   const tg_tensor *b, const tg_tensor *c) { return step_args(fn, G, xp, h, W, b, c); }
tg_tensor *tg__gate_buffer(tg_tensor *xp, bool recorded, tg_tensor **own) { return gate_buffer(xp, recorded, own); }
void tg__step_matrix_backward(tg_tensor *h, tg_tensor *W, tg_tensor *b, const tg_tensor *G) { step_matrix_backward(h, W, b, G); }
tg_tensor *tg__pre_grad_buffer(tg_tensor *xp, tg_tensor **scratch) { return pre_grad_buffer(xp, scratch); }

/* What a fused step's forward holds between its prologue and its record. */
typedef struct step_fwd {
    tg_tensor *out;  /* [2,B,H] tape-owned result */
    tg_tensor *hp;   /* [B,G·H] scratch: b + h·Wᵀ (new ref) */
    tg_tensor *A;    /* [B,G·H] where the gate activations go: xp itself or own */
    tg_tensor *own;  /* new ref or NULL */
    bool recorded;
} step_fwd;

/* Checks the arguments, allocates the result [2,B,H] and the buffers, and computes hp = b + h·Wᵀ with
 * tg_linear's rounding. in[0..nin) are the record's inputs. Returns false (nothing held) on error. */
static bool step_begin(const char *fn, int G, tg_tensor *xp, const tg_tensor *h, const tg_tensor *W,
                       const tg_tensor *b, const tg_tensor *c, const tg_tensor *const *in, int nin, step_fwd *s) {
    memset(s, 0, sizeof *s);
    if (!step_args(fn, G, xp, h, W, b, c)) return false;
    int64_t shape[3] = {2, xp->shape[0], xp->shape[1] / G};
    s->out = tg__result(xp->dtype, 3, shape);
    if (!s->out) return false;
    s->recorded = false;
    for (int i = 0; i < nin && tg_grad_enabled(); i++) s->recorded |= tg__needs_grad(in[i]);
    s->hp = tg__alloc(xp->dtype, 2, xp->shape);
    s->A = s->hp ? gate_buffer(xp, s->recorded, &s->own) : NULL;
    if (!s->A) { tg_release(s->hp); return false; }
    tg__linear_into(h, W, b, NULL, xp->shape[0], s->hp);
    return true;
}

/* Records the step (the gates as aux: a view of xp when they were stored there) and frees the scratch. */
static tg_tensor *step_end(tg_op op, step_fwd *s, tg_tensor *xp, const tg_tensor *const *in, int nin) {
    tg_release(s->hp);
    tg_record *r = s->recorded ? tg__record(op, s->out, nin, in) : NULL;
    if (r) r->aux = s->own ? s->own : tg_reshape_view(xp, 2, xp->shape);
    else tg_release(s->own);
    return s->out;
}

/* ---- lstm_cell_: one LSTM step ---------------------------------------------------------------------- */

typedef struct {
    const tg_tensor *xp, *c;
    tg_tensor *hp, *A, *out;
    int64_t B, H;
} lstm_fwd;

/* Rows [r0, r1) of the step: a = xp + (b + h·Wᵀ) (tg_linear_add's rounding), then the activations σ, σ,
 * tanh, σ of the blocks i, f, g, o (tg_gates "ssts") into A, c' = f ⊙ c + i ⊙ g (tg_lstm_state's order)
 * and h' = o ⊙ tanh(c') (the dispatched kernel of tensor/steps.h). A may be xp itself. */
static void lstm_fwd_rows(void *p, int64_t r0, int64_t r1) {
    const lstm_fwd *q = p;
    const int64_t B = q->B, H = q->H, GH = 4 * H;
    TG_DISPATCH(q->xp->dtype, {
        T *h2 = TG_PTR(q->out, T), *c2 = h2 + B * H;
        _Generic((T)0, float: tg_lstm_fwd_rows_f32, default: tg_lstm_fwd_rows_f64)(
            TG_PTR(q->A, T) + r0 * GH, h2 + r0 * H, c2 + r0 * H, TG_PTR(q->hp, T) + r0 * GH,
            TG_PTR(q->xp, T) + r0 * GH, TG_PTR(q->c, T) + r0 * H, r1 - r0, H);
    });
}

TG_OP(LSTM_CELL, lstm_cell_, -1, IN1 | IN2 | IN3 | OUT) /* LSTM step; in = xp, h, W, c[, b]; aux = gates */
tg_tensor *tg_lstm_cell_(tg_tensor *xp, const tg_tensor *h, const tg_tensor *W, const tg_tensor *b,
                         const tg_tensor *c) {
    const tg_tensor *in[5] = {xp, h, W, c, b};
    step_fwd s;
    if (!step_begin("tg_lstm_cell_", 4, xp, h, W, b, c, in, b ? 5 : 4, &s)) return NULL;
    lstm_fwd ctx = {xp, c, s.hp, s.A, s.out, xp->shape[0], xp->shape[1] / 4};
    for_rows(ctx.B, 4 * ctx.H, lstm_fwd_rows, &ctx);
    return step_end(TG_OP_LSTM_CELL, &s, xp, in, b ? 5 : 4);
}

typedef struct {
    const tg_tensor *aux, *c, *out, *g;
    tg_tensor *D, *gc;
    bool ac;
    int64_t B, H;
} lstm_bwd;

/* Rows [r0, r1) of the LSTM step's backward (the formulas below; the dispatched kernel of tensor/steps.h) */
static void lstm_bwd_rows(void *p, int64_t r0, int64_t r1) {
    const lstm_bwd *q = p;
    const int64_t B = q->B, H = q->H, GH = 4 * H;
    TG_DISPATCH(q->g->dtype, {
        const T *gh = TG_PTR(q->g, T);
        _Generic((T)0, float: tg_lstm_bwd_rows_f32, default: tg_lstm_bwd_rows_f64)(
            TG_PTR(q->D, T) + r0 * GH, q->gc ? TG_PTR(q->gc, T) + r0 * H : NULL, q->ac, TG_PTR(q->aux, T) + r0 * GH,
            TG_PTR(q->c, T) + r0 * H, TG_PTR(q->out, T) + B * H + r0 * H, gh + r0 * H, gh + B * H + r0 * H, r1 - r0, H);
    });
}

/* With g = [g_h; g_c], a = the gates (i, f, g, o per row), τ = tanh(c'):
 *   dc' = g_c + (g_h o)(1 − τ²),   dc += dc' f
 *   dpre_i = (dc' g) i(1 − i),  dpre_f = (dc' c) f(1 − f),  dpre_g = (dc' i)(1 − g²),  dpre_o = (g_h τ) o(1 − o)
 *   dxp += dpre;  dh += dpre·W,  dW += dpreᵀ·h,  db += Σ_rows dpre
 * (the order of tg_lstm_state's, tg_gates' and tg_linear_add's backwards) */
void tg__lstm_cell__backward(tg_record *r, const tg_tensor *g) {
    tg_tensor *xp = r->in[0], *c = r->in[3];
    const int64_t B = xp->shape[0], GH = xp->shape[1], H = GH / 4;
    bool ac;
    tg_tensor *scratch, *D = pre_grad_buffer(xp, &scratch);
    tg_tensor *gc = tg__grad_buf_assign(c, &ac);
    if (!D) return;
    lstm_bwd ctx = {r->aux, c, r->out, g, D, gc, ac, B, H};
    for_rows(B, GH, lstm_bwd_rows, &ctx);
    if (scratch && xp->grad) tg_axpy_(xp->grad, 1.0, scratch);
    step_matrix_backward(r->in[1], r->in[2], r->nin > 4 ? r->in[4] : NULL, D);
    tg_release(scratch);
}

/* ---- gru_cell_: one GRU step ------------------------------------------------------------------------ */

typedef struct {
    const tg_tensor *xp, *h, *hp;
    tg_tensor *A, *out;
    int64_t B, H;
} gru_fwd;

/* Rows [r0, r1) of the GRU step: r = σ(xp_r + hp_r), z = σ(xp_z + hp_z), n = tanh(xp_n + r ⊙ hp_n)
 * (tg_gru_gates), into A by rows; hp_n kept as the result's second half; h' = n + z ⊙ (h − n) (tg_lerp),
 * the dispatched kernel of tensor/steps.h. A may be xp itself. */
static void gru_fwd_rows(void *p, int64_t r0, int64_t r1) {
    const gru_fwd *q = p;
    const int64_t B = q->B, H = q->H, GH = 3 * H;
    TG_DISPATCH(q->xp->dtype, {
        T *h2 = TG_PTR(q->out, T), *hn = h2 + B * H;
        _Generic((T)0, float: tg_gru_fwd_rows_f32, default: tg_gru_fwd_rows_f64)(
            TG_PTR(q->A, T) + r0 * GH, h2 + r0 * H, hn + r0 * H, TG_PTR(q->xp, T) + r0 * GH, TG_PTR(q->hp, T) + r0 * GH,
            TG_PTR(q->h, T) + r0 * H, r1 - r0, H);
    });
}

TG_OP(GRU_CELL, gru_cell_, -1, IN1 | IN2 | OUT) /* GRU step; in = xp, h, W[, b]; aux = gates; out = h', hp_n */
tg_tensor *tg_gru_cell_(tg_tensor *xp, const tg_tensor *h, const tg_tensor *W, const tg_tensor *b) {
    const char *fn = "tg_gru_cell_";
    const tg_tensor *in[4] = {xp, h, W, b};
    if (!step_args(fn, 3, xp, h, W, b, NULL)) return NULL;
    if (h->shape[1] * 3 != xp->shape[1]) {
        char s1[128], s2[128];
        tg_error(fn, "xp %s, h %s: need xp [B,3·H] and h [B,H] (no projections)", tg_shape_str(xp, s1, sizeof s1),
                 tg_shape_str(h, s2, sizeof s2));
        return NULL;
    }
    step_fwd s;
    if (!step_begin(fn, 3, xp, h, W, b, NULL, in, b ? 4 : 3, &s)) return NULL;
    gru_fwd ctx = {xp, h, s.hp, s.A, s.out, xp->shape[0], xp->shape[1] / 3};
    for_rows(ctx.B, 3 * ctx.H, gru_fwd_rows, &ctx);
    return step_end(TG_OP_GRU_CELL, &s, xp, in, b ? 4 : 3);
}

typedef struct {
    const tg_tensor *aux, *out, *h, *g;
    tg_tensor *D, *dhp, *gh;
    bool ah;
    int64_t B, H;
} gru_bwd;

/* Rows [r0, r1) of the GRU step's backward (the formulas below; the dispatched kernel of tensor/steps.h) */
static void gru_bwd_rows(void *p, int64_t r0, int64_t r1) {
    const gru_bwd *q = p;
    const int64_t B = q->B, H = q->H, GH = 3 * H;
    TG_DISPATCH(q->g->dtype, {
        const T *gy = TG_PTR(q->g, T);
        _Generic((T)0, float: tg_gru_bwd_rows_f32, default: tg_gru_bwd_rows_f64)(
            TG_PTR(q->D, T) + r0 * GH, TG_PTR(q->dhp, T) + r0 * GH, q->gh ? TG_PTR(q->gh, T) + r0 * H : NULL, q->ah,
            TG_PTR(q->aux, T) + r0 * GH, TG_PTR(q->out, T) + B * H + r0 * H, TG_PTR(q->h, T) + r0 * H, gy + r0 * H,
            gy + B * H + r0 * H, r1 - r0, H);
    });
}

/* With g = [g_h; g_n] (g_n: of the kept hp_n, zero in a cell), the gates r, z, n and hp_n:
 *   dn = g_h − g_h z,  dz = g_h (h − n),  dh += g_h z                       (tg_lerp's backward)
 *   n~ = dn (1 − n²),  r~ = n~ hp_n r(1 − r),  z~ = dz z(1 − z)              (tg_gru_gates')
 *   dxp += [r~ | z~ | n~],  dhp = [r~ | z~ | n~ r + g_n]
 *   dh += dhp·W,  dW += dhpᵀ·h,  db += Σ_rows dhp                           (tg_linear's) */
void tg__gru_cell__backward(tg_record *r, const tg_tensor *g) {
    tg_tensor *xp = r->in[0], *h = r->in[1];
    const int64_t B = xp->shape[0], GH = xp->shape[1], H = GH / 3;
    bool ah;
    tg_tensor *scratch, *D = pre_grad_buffer(xp, &scratch);
    tg_tensor *dhp = tg__alloc(xp->dtype, 2, xp->shape);
    if (!D || !dhp) { tg_release(scratch); tg_release(dhp); return; }
    tg_tensor *gh = tg__grad_buf_assign(h, &ah);
    gru_bwd ctx = {r->aux, r->out, h, g, D, dhp, gh, ah, B, H};
    for_rows(B, GH, gru_bwd_rows, &ctx);
    if (scratch && xp->grad) tg_axpy_(xp->grad, 1.0, scratch);
    step_matrix_backward(h, r->in[2], r->nin > 3 ? r->in[3] : NULL, dhp);
    tg_release(scratch);
    tg_release(dhp);
}

/* ---- layer_norm: layer normalisation over equal blocks of the last axis ------------------------------ */

/* acc[0..LN_LANES) = partial sums of EXPR (of j) over j < n, lane j % LN_LANES: independent sums the
 * compiler vectorises (one sum would be a serial chain); ln_total adds the lanes. Uses n from scope. */
#define LN_LANES 16
#define LN_SUM(acc, EXPR)                                                                 \
    do {                                                                                  \
        for (int l_ = 0; l_ < LN_LANES; l_++) acc[l_] = 0;                                \
        int64_t j = 0;                                                                    \
        for (; j + LN_LANES <= n; j += LN_LANES) {                                        \
            const int64_t j0_ = j;                                                        \
            for (int l_ = 0; l_ < LN_LANES; l_++) { j = j0_ + l_; acc[l_] += (EXPR); }    \
            j = j0_;                                                                      \
        }                                                                                 \
        for (; j < n; j++) acc[j % LN_LANES] += (EXPR);                                   \
    } while (0)
#define ln_total(acc) _Generic((acc)[0], float: ln_total_f32, default: ln_total_f64)(acc)
static inline float ln_total_f32(const float *a) {
    float s = 0;
    for (int l = 0; l < LN_LANES; l++) s += a[l];
    return s;
}
static inline double ln_total_f64(const double *a) {
    double s = 0;
    for (int l = 0; l < LN_LANES; l++) s += a[l];
    return s;
}

/* One part a[0..n) (n and eps from scope, inside TG_DISPATCH): m = μ and rs = 1/√(σ² + ε) (biased, two
 * passes, each sum in LN_LANES partial sums); y = (a − μ)·rs ⊙ w [+ b] */
#define LN_STATS(a, m, rs)                                                        \
    do {                                                                          \
        T acc_[LN_LANES];                                                         \
        LN_SUM(acc_, (a)[j]);                                                     \
        m = ln_total(acc_) / (T)n;                                                \
        LN_SUM(acc_, ((a)[j] - m) * ((a)[j] - m));                                \
        rs = (T)(1.0 / sqrt((double)ln_total(acc_) / (double)n + eps));           \
    } while (0)
#define LN_APPLY(y, a, m, rs, w, b)                                                                 \
    do {                                                                                            \
        if (b) for (int64_t j = 0; j < n; j++) (y)[j] = ((a)[j] - m) * rs * (w)[j] + (b)[j];         \
        else for (int64_t j = 0; j < n; j++) (y)[j] = ((a)[j] - m) * rs * (w)[j];                    \
    } while (0)
/* Backward of one part given its upstream gy: dw += gy ⊙ x̂, db += gy (either may be NULL), and
 * d (=, or += unless assign) rs (d̂ − mean(d̂) − x̂ mean(d̂ ⊙ x̂)) with x̂ = (a − μ)·rs, d̂ = gy ⊙ w */
#define LN_PARAM_GRADS(dw, db, gy, a, m, rs)                                                  \
    do {                                                                                      \
        T *dw_ = (dw), *db_ = (db);                                                           \
        if (dw_) for (int64_t j = 0; j < n; j++) dw_[j] += (gy)[j] * (((a)[j] - m) * rs);     \
        if (db_) for (int64_t j = 0; j < n; j++) db_[j] += (gy)[j];                           \
    } while (0)
#define LN_DX(d, assign, gy, w, a, m, rs)                                                                   \
    do {                                                                                                    \
        T acc_[LN_LANES]; /* Σ d̂, Σ d̂ x̂ */                                                                \
        LN_SUM(acc_, (gy)[j] * (w)[j]);                                                                     \
        const T m1_ = ln_total(acc_) / (T)n;                                                                \
        LN_SUM(acc_, (gy)[j] * (w)[j] * (((a)[j] - m) * rs));                                               \
        const T m2_ = ln_total(acc_) / (T)n;                                                                \
        T *restrict d_ = (d);                                                                               \
        if (assign) for (int64_t j = 0; j < n; j++) d_[j] = rs * ((gy)[j] * (w)[j] - m1_ - (((a)[j] - m) * rs) * m2_);  \
        else for (int64_t j = 0; j < n; j++) d_[j] += rs * ((gy)[j] * (w)[j] - m1_ - (((a)[j] - m) * rs) * m2_);       \
    } while (0)

/* Why an op: written with plain ops (reshape, two means, sub, mul, add_scalar, pow, two muls, add) a
 * layer norm is ~10 records and ~6 tensors of x's size on the tape; this is one record, keeps only its
 * result (x is saved, it is on the tape anyway) and the two statistics of each block, and its backward
 * is two passes over each block. */
TG_OP(LAYER_NORM, layer_norm, -1, IN0 | IN1) /* LN over k[0] blocks of the last axis, f[0] = ε; in = x, gain[, beta]; aux = μ, 1/σ */
tg_tensor *tg_layer_norm(const tg_tensor *x, int blocks, const tg_tensor *gain, const tg_tensor *beta, double eps) {
    const char *fn = "tg_layer_norm";
    if (!tg__check(fn, "x", x) || !tg__check(fn, "gain", gain)) return NULL;
    if (!beta && tg_error_pending()) return NULL; /* a NULL shift from a failed op, not "no shift" */
    if (beta && !tg__check(fn, "beta", beta)) return NULL;
    if (!tg__same_dtype(fn, x, gain) || (beta && !tg__same_dtype(fn, x, beta))) return NULL;
    char s1[128], s2[128], s3[128];
    const int64_t N = x->ndim >= 1 ? x->shape[x->ndim - 1] : 0;
    if (x->ndim < 1 || blocks < 1 || N % blocks || N == 0 || gain->ndim != 1 || gain->shape[0] != N ||
        (beta && (beta->ndim != 1 || beta->shape[0] != N))) {
        tg_error(fn, "x %s, %d blocks, gain %s%s%s: need x [..., N] with N a positive multiple of blocks (>= 1), "
                 "gain [N]%s", tg_shape_str(x, s1, sizeof s1), blocks, tg_shape_str(gain, s2, sizeof s2),
                 beta ? ", beta " : "", beta ? tg_shape_str(beta, s3, sizeof s3) : "", beta ? ", beta [N]" : "");
        return NULL;
    }
    if (!(eps > 0) || !isfinite(eps)) {
        tg_error(fn, "eps %g: must be positive and finite", eps);
        return NULL;
    }
    const int64_t R = x->numel / N, n = N / blocks, groups = R * blocks;
    tg_tensor *out = tg__result(x->dtype, x->ndim, x->shape);
    if (!out) return NULL;
    const tg_tensor *in[3] = {x, gain, beta};
    const int nin = beta ? 3 : 2;
    bool recorded = false;
    for (int i = 0; i < nin && tg_grad_enabled(); i++) recorded |= tg__needs_grad(in[i]);
    /* per block: its mean and 1/√(σ² + ε), kept for backward when the op is recorded */
    tg_tensor *stats = recorded ? tg__alloc(x->dtype, 2, (int64_t[]){groups, 2}) : NULL;
    if (recorded && !stats) return NULL;
    TG_DISPATCH(x->dtype, {
        const T *px = TG_PTR(x, T), *pw = TG_PTR(gain, T), *pb = beta ? TG_PTR(beta, T) : NULL;
        T *py = TG_PTR(out, T), *ps = stats ? TG_PTR(stats, T) : NULL;
        for (int64_t q = 0; q < groups; q++) {
            const T *restrict a = px + q * n;
            const T *restrict w = pw + (q % blocks) * n, *restrict b = pb ? pb + (q % blocks) * n : NULL;
            T *restrict y = py + q * n;
            T m, rs;
            LN_STATS(a, m, rs);
            LN_APPLY(y, a, m, rs, w, b);
            if (ps) ps[2 * q] = m, ps[2 * q + 1] = rs;
        }
    });
    tg_record *r = recorded ? tg__record(TG_OP_LAYER_NORM, out, nin, in) : NULL;
    if (r) {
        r->aux = stats;
        r->k[0] = blocks;
        r->f[0] = eps;
    } else tg_release(stats);
    return out;
}

/* Per block of n elements, with x̂ = (x − μ)·s, s = 1/√(σ² + ε), d̂ = g ⊙ α:
 *   dx = s (d̂ − mean(d̂) − x̂ mean(d̂ ⊙ x̂)),   dα += Σ_rows g ⊙ x̂,   dβ += Σ_rows g */
void tg__layer_norm_backward(tg_record *r, const tg_tensor *g) {
    tg_tensor *x = r->in[0], *gain = r->in[1], *beta = r->nin > 2 ? r->in[2] : NULL;
    const int blocks = (int)r->k[0];
    const int64_t N = x->shape[x->ndim - 1], R = x->numel / N, n = N / blocks, groups = R * blocks;
    bool ax;
    tg_tensor *gx = tg__grad_buf_assign(x, &ax), *gw = tg__grad_buf(gain), *gb = beta ? tg__grad_buf(beta) : NULL;
    TG_DISPATCH(g->dtype, {
        const T *px = TG_PTR(x, T), *pw = TG_PTR(gain, T), *pg = TG_PTR(g, T), *ps = TG_PTR(r->aux, T);
        T *dx = gx ? TG_PTR(gx, T) : NULL, *dw = gw ? TG_PTR(gw, T) : NULL, *db = gb ? TG_PTR(gb, T) : NULL;
        for (int64_t q = 0; q < groups; q++) {
            const T *restrict a = px + q * n, *restrict gy = pg + q * n;
            const int64_t off = (q % blocks) * n;
            const T m = ps[2 * q], rs = ps[2 * q + 1];
            LN_PARAM_GRADS(dw ? dw + off : NULL, db ? db + off : NULL, gy, a, m, rs);
            if (dx) LN_DX(dx + q * n, ax, gy, pw + off, a, m, rs);
        }
    });
}

/* ---- ln_gates: the gate activations of LN(x) + LN(y), block by block ------------------------------- */

/* Why an op: the layer-normalised LSTM's gates act_k(LN(x W_ihᵀ) + LN(h W_hhᵀ)) written as
 * tg_layer_norm x 2 + tg_add + tg_gates keep four [B,G·H] results per step on the tape (both LNs, their
 * sum, the gates) beside the two inputs, where backward needs only the inputs (x̂ from them and the
 * statistics) and the gates. One record here: the gates, gate-major as tg_gates gives them, and μ, 1/σ
 * of x and y per part. The arithmetic is the four ops' (each LN rounded, then the sum, then the
 * activation), so the values are theirs. */
TG_OP(LN_GATES, ln_gates, -1, IN0 | IN1 | IN2 | IN3 | OUT) /* act_k(LN(x) + LN(y)) per block k, gate-major; in = x, y, gain_x, gain_y[, beta_x][, beta_y]; k[0] G, k[1] codes, k[2] shifts (1 x, 2 y); f[0] ε; aux = μ, 1/σ of x, of y per part */
tg_tensor *tg_ln_gates(const tg_tensor *x, const tg_tensor *y, const tg_tensor *gain_x, const tg_tensor *beta_x,
                       const tg_tensor *gain_y, const tg_tensor *beta_y, double eps, const char *acts) {
    const char *fn = "tg_ln_gates";
    if (!tg__check(fn, "x", x) || !tg__check(fn, "y", y) || !tg__check(fn, "gain_x", gain_x) ||
        !tg__check(fn, "gain_y", gain_y))
        return NULL;
    if ((!beta_x || !beta_y) && tg_error_pending()) return NULL; /* a NULL shift from a failed op, not "no shift" */
    if ((beta_x && !tg__check(fn, "beta_x", beta_x)) || (beta_y && !tg__check(fn, "beta_y", beta_y))) return NULL;
    const tg_tensor *in[6] = {x, y, gain_x, gain_y}, *vec[4] = {gain_x, gain_y, beta_x, beta_y};
    for (int k = 0; k < 4; k++)
        if ((k == 0 && !tg__same_dtype(fn, x, y)) || (vec[k] && !tg__same_dtype(fn, x, vec[k]))) return NULL;
    int64_t codes;
    const int G = tg__gate_codes(fn, acts, &codes);
    if (!G) return NULL;
    char s1[128], s2[128];
    const int64_t N = x->ndim >= 1 ? x->shape[x->ndim - 1] : 0;
    if (x->ndim < 1 || x->ndim >= TG_MAX_DIMS || !tg_same_shape(x, y) || N == 0 || N % G) {
        tg_error(fn, "x %s, y %s, %d gates (\"%s\"): need x and y of one shape [..., N], N a positive multiple of %d",
                 tg_shape_str(x, s1, sizeof s1), tg_shape_str(y, s2, sizeof s2), G, acts, G);
        return NULL;
    }
    static const char *const vec_names[4] = {"gain_x", "gain_y", "beta_x", "beta_y"};
    for (int k = 0; k < 4; k++)
        if (vec[k] && (vec[k]->ndim != 1 || vec[k]->shape[0] != N)) {
            tg_error(fn, "%s %s: need [N] = [%lld] (the last axis of x)", vec_names[k], tg_shape_str(vec[k], s1, sizeof s1),
                     (long long)N);
            return NULL;
        }
    if (!(eps > 0) || !isfinite(eps)) {
        tg_error(fn, "eps %g: must be positive and finite", eps);
        return NULL;
    }
    const int64_t R = x->numel / N, n = N / G;
    int64_t shape[TG_MAX_DIMS];
    shape[0] = G;
    for (int d = 0; d < x->ndim - 1; d++) shape[d + 1] = x->shape[d];
    shape[x->ndim] = n;
    tg_tensor *out = tg__result(x->dtype, x->ndim + 1, shape);
    if (!out) return NULL;
    int nin = 4;
    if (beta_x) in[nin++] = beta_x;
    if (beta_y) in[nin++] = beta_y;
    bool recorded = false;
    for (int i = 0; i < nin && tg_grad_enabled(); i++) recorded |= tg__needs_grad(in[i]);
    /* per part q = row·G + k: μ_x, 1/σ_x, μ_y, 1/σ_y, kept when the op is recorded */
    tg_tensor *stats = recorded ? tg__alloc(x->dtype, 2, (int64_t[]){R * G, 4}) : NULL;
    tg_tensor *tmp = tg__alloc(x->dtype, 1, (int64_t[]){2 * n});
    if ((recorded && !stats) || !tmp) { tg_release(stats); tg_release(tmp); return NULL; }
    TG_DISPATCH(x->dtype, {
        const T *px = TG_PTR(x, T), *py = TG_PTR(y, T), *pwx = TG_PTR(gain_x, T), *pwy = TG_PTR(gain_y, T);
        const T *pbx = beta_x ? TG_PTR(beta_x, T) : NULL, *pby = beta_y ? TG_PTR(beta_y, T) : NULL;
        T *po = TG_PTR(out, T), *ps = stats ? TG_PTR(stats, T) : NULL, *sx = TG_PTR(tmp, T), *sy = sx + n;
        for (int64_t r0 = 0; r0 < R; r0++)
            for (int k = 0; k < G; k++) {
                const int64_t q = r0 * G + k, off = (int64_t)k * n;
                const T *restrict a = px + q * n, *restrict b = py + q * n;
                T mx, rx, my, ry;
                LN_STATS(a, mx, rx);
                LN_STATS(b, my, ry);
                /* LN(x) and LN(y), each rounded as tg_layer_norm's result, then their sum (tg_add) */
                LN_APPLY(sx, a, mx, rx, pwx + off, pbx ? pbx + off : NULL);
                LN_APPLY(sy, b, my, ry, pwy + off, pby ? pby + off : NULL);
                for (int64_t j = 0; j < n; j++) sx[j] = sx[j] + sy[j];
                tg__gate_act(x->dtype, tg__gate_code(codes, k), po + ((int64_t)k * R + r0) * n, sx, n);
                if (ps) ps[4 * q] = mx, ps[4 * q + 1] = rx, ps[4 * q + 2] = my, ps[4 * q + 3] = ry;
            }
    });
    tg_release(tmp);
    tg_record *r = recorded ? tg__record(TG_OP_LN_GATES, out, nin, in) : NULL;
    if (r) {
        r->aux = stats;
        r->k[0] = G;
        r->k[1] = codes;
        r->k[2] = (beta_x ? 1 : 0) | (beta_y ? 2 : 0);
        r->f[0] = eps;
    } else tg_release(stats);
    return out;
}

/* Per part (row, block k), with ds = g_k ⊙ act_k'(gate) the gradient of the sum LN(x) + LN(y), which
 * both LNs receive: dx, dα_x, dβ_x and dy, dα_y, dβ_y as tg_layer_norm's backward gives them for ds. */
void tg__ln_gates_backward(tg_record *r, const tg_tensor *g) {
    tg_tensor *x = r->in[0], *y = r->in[1], *wx = r->in[2], *wy = r->in[3];
    tg_tensor *bx = (r->k[2] & 1) ? r->in[4] : NULL, *by = (r->k[2] & 2) ? r->in[(r->k[2] & 1) ? 5 : 4] : NULL;
    const int G = (int)r->k[0];
    const int64_t codes = r->k[1], N = x->shape[x->ndim - 1], R = x->numel / N, n = N / G;
    bool ax, ay; /* x's buffer first: with y = x the second call adds into what the first stored */
    tg_tensor *gx = tg__grad_buf_assign(x, &ax), *gy = tg__grad_buf_assign(y, &ay);
    tg_tensor *gwx = tg__grad_buf(wx), *gwy = tg__grad_buf(wy), *gbx = bx ? tg__grad_buf(bx) : NULL;
    tg_tensor *gby = by ? tg__grad_buf(by) : NULL, *tmp = tg__alloc(g->dtype, 1, (int64_t[]){n});
    if (!tmp) return;
    TG_DISPATCH(g->dtype, {
        const T *px = TG_PTR(x, T), *py = TG_PTR(y, T), *pwx = TG_PTR(wx, T), *pwy = TG_PTR(wy, T);
        const T *pg = TG_PTR(g, T), *po = TG_PTR(r->out, T), *ps = TG_PTR(r->aux, T);
        T *dx = gx ? TG_PTR(gx, T) : NULL, *dy = gy ? TG_PTR(gy, T) : NULL, *ds = TG_PTR(tmp, T);
        T *dwx = gwx ? TG_PTR(gwx, T) : NULL, *dwy = gwy ? TG_PTR(gwy, T) : NULL;
        T *dbx = gbx ? TG_PTR(gbx, T) : NULL, *dby = gby ? TG_PTR(gby, T) : NULL;
        for (int64_t r0 = 0; r0 < R; r0++)
            for (int k = 0; k < G; k++) {
                const int64_t q = r0 * G + k, off = (int64_t)k * n, at = ((int64_t)k * R + r0) * n;
                tg__gate_act_backward(g->dtype, tg__gate_code(codes, k), ds, pg + at, po + at, n, true);
                const T *restrict a = px + q * n, *restrict b = py + q * n;
                const T mx = ps[4 * q], rx = ps[4 * q + 1], my = ps[4 * q + 2], ry = ps[4 * q + 3];
                LN_PARAM_GRADS(dwx ? dwx + off : NULL, dbx ? dbx + off : NULL, ds, a, mx, rx);
                if (dx) LN_DX(dx + q * n, ax, ds, pwx + off, a, mx, rx);
                LN_PARAM_GRADS(dwy ? dwy + off : NULL, dby ? dby + off : NULL, ds, b, my, ry);
                if (dy) LN_DX(dy + q * n, ay, ds, pwy + off, b, my, ry);
            }
    });
    tg_release(tmp);
}
