/* autograd/ops_elementwise.c - broadcasting binary ops and one-tensor elementwise ops.
 * Each forward is followed by its backward; each backward accumulates (+=) and carries its adjoint.
 * Math functions come from <tgmath.h>, so one loop body serves float and double. */
#include "autograd/ops_common.h"
#include "tensor/pool.h"
#include "tensor/velem.h"
#include "tensor/vmath.h"

#include <tgmath.h>

/* ---- broadcasting ------------------------------------------------------------------------------- */

typedef struct bcast {
    int ndim;
    int64_t shape[TG_MAX_DIMS];   /* the result's shape */
    int64_t sa[TG_MAX_DIMS];      /* element strides of a in the result's index space (0: broadcast) */
    int64_t sb[TG_MAX_DIMS];
    int64_t n;                    /* result elements */
    int64_t row;                  /* > 0: b (kind B_ROW) or a (A_ROW) repeats every `row` elements */
    enum { SAME, B_ROW, A_ROW, GENERAL } kind;
} bcast;

static bool suffix_of(const tg_tensor *small, const bcast *bc, int64_t *row) {
    /* small's shape, aligned right, is ones followed by exactly the result's trailing dimensions */
    int off = bc->ndim - small->ndim;
    int first = 0;
    while (first < small->ndim && small->shape[first] == 1) first++;
    int64_t r = 1;
    for (int d = first; d < small->ndim; d++) {
        if (small->shape[d] != bc->shape[off + d]) return false;
        r *= small->shape[d];
    }
    *row = r;
    return true;
}

static bool broadcast(const char *fn, const tg_tensor *a, const tg_tensor *b, bcast *bc) {
    int nd = a->ndim > b->ndim ? a->ndim : b->ndim;
    bc->ndim = nd;
    bc->n = 1;
    for (int d = 0; d < nd; d++) {
        int da = d - (nd - a->ndim), db = d - (nd - b->ndim);
        int64_t ea = da >= 0 ? a->shape[da] : 1, eb = db >= 0 ? b->shape[db] : 1;
        if (ea != eb && ea != 1 && eb != 1) {
            char s1[128], s2[128];
            tg_error(fn, "%s and %s: dimension %d differs (%lld vs %lld) and neither is 1",
                     tg_shape_str(a, s1, sizeof s1), tg_shape_str(b, s2, sizeof s2), d, (long long)ea, (long long)eb);
            return false;
        }
        bc->shape[d] = ea == 1 ? eb : ea;
        bc->n *= bc->shape[d];
    }
    int64_t st_a = 1, st_b = 1;
    for (int d = nd - 1; d >= 0; d--) {
        int da = d - (nd - a->ndim), db = d - (nd - b->ndim);
        int64_t ea = da >= 0 ? a->shape[da] : 1, eb = db >= 0 ? b->shape[db] : 1;
        bc->sa[d] = ea == 1 ? 0 : st_a;
        bc->sb[d] = eb == 1 ? 0 : st_b;
        st_a *= ea;
        st_b *= eb;
    }
    bool a_full = a->numel == bc->n, b_full = b->numel == bc->n;
    if (a_full && b_full) bc->kind = SAME;
    else if (a_full && suffix_of(b, bc, &bc->row) && bc->row > 0) bc->kind = B_ROW;
    else if (b_full && suffix_of(a, bc, &bc->row) && bc->row > 0) bc->kind = A_ROW;
    else bc->kind = GENERAL;
    return true;
}

/* Runs BODY for every result element i with ia, ib the matching elements of a and b. */
#define BCAST_LOOP(bc, BODY) /* BODY may ignore ia or ib */                                                                      \
    do {                                                                                          \
        if ((bc)->kind == SAME) {                                                                 \
            for (int64_t i = 0; i < (bc)->n; i++) { const int64_t ia = i, ib = i; (void)ia; (void)ib; BODY; }         \
        } else if ((bc)->kind == B_ROW) {                                                         \
            const int64_t rw = (bc)->row;                                                         \
            for (int64_t r0 = 0; r0 < (bc)->n; r0 += rw)                                          \
                for (int64_t j = 0; j < rw; j++) { const int64_t i = r0 + j, ia = i, ib = j; (void)ia; (void)ib; BODY; } \
        } else if ((bc)->kind == A_ROW) {                                                         \
            const int64_t rw = (bc)->row;                                                         \
            for (int64_t r0 = 0; r0 < (bc)->n; r0 += rw)                                          \
                for (int64_t j = 0; j < rw; j++) { const int64_t i = r0 + j, ia = j, ib = i; (void)ia; (void)ib; BODY; } \
        } else {                                                                                  \
            int64_t ctr_[TG_MAX_DIMS] = {0}, oa_ = 0, ob_ = 0;                                       \
            for (int64_t i = 0; i < (bc)->n; i++) {                                               \
                { const int64_t ia = oa_, ib = ob_; (void)ia; (void)ib; BODY; }                                         \
                for (int d = (bc)->ndim - 1; d >= 0; d--) {                                       \
                    ctr_[d]++; oa_ += (bc)->sa[d]; ob_ += (bc)->sb[d];                               \
                    if (ctr_[d] < (bc)->shape[d]) break;                                           \
                    oa_ -= (bc)->sa[d] * (bc)->shape[d]; ob_ -= (bc)->sb[d] * (bc)->shape[d];       \
                    ctr_[d] = 0;                                                                   \
                }                                                                                 \
            }                                                                                     \
        }                                                                                         \
    } while (0)

/* Re-derives the broadcast of a record's two inputs (they are unchanged: shapes never change). */
static void record_bcast(const tg_record *r, bcast *bc) { broadcast("tg_backward", r->in[0], r->in[1], bc); }

/* Gradient buffer of operand t of a broadcast op. A full-size operand receives exactly one value per
 * element, so a new buffer can be written (=) without zeroing (*assign set); a broadcast operand sums
 * several values per element and gets a zeroed buffer to add into. */
static tg_tensor *operand_grad(tg_tensor *t, const bcast *bc, bool *assign) {
    tg_tensor *g = tg__grad_buf_assign(t, assign);
    if (g && *assign && t->numel != bc->n) {
        memset(tg__ptr(g), 0, (size_t)g->numel * tg_itemsize(g->dtype));
        *assign = false;
    }
    return g;
}

/* d[IDX] = VALUE or d[IDX] += VALUE over the broadcast, for an operand gradient d */
#define BCAST_STORE(bc, assign, d, IDX, VALUE)                                  \
    do {                                                                        \
        if (assign) BCAST_LOOP(bc, d[IDX] = (VALUE));                           \
        else BCAST_LOOP(bc, d[IDX] += (VALUE));                                 \
    } while (0)

/* The dispatched elementwise kernels (tensor/velem.h) for T, inside TG_DISPATCH. Each element is the
 * one rounded operation of the loops they stand for, so the results are theirs on every target. */
#define VBIN(op, y, a, b, n) _Generic((T)0, float: tg_vbin_f32, default: tg_vbin_f64)(op, y, a, b, n)
#define VMUL_ACC(y, a, b, n) _Generic((T)0, float: tg_vmul_acc_f32, default: tg_vmul_acc_f64)(y, a, b, n)

/* Equal shapes, large: the kernel's calls cut into blocks for the pool's threads (tensor/pool.h). Each
 * element is still the one rounded operation, so the results do not depend on the thread count. */
#define TG_SAME_MT_MIN ((int64_t)1 << 15) /* elements per block at least (128 KB of F32) */
typedef struct {
    tg_dtype dt;
    int vop;    /* VBIN's operation, or -1: VMUL_ACC */
    void *y;
    const void *a, *b;
} vbin_job;
static void vbin_range(void *p, int64_t i0, int64_t i1) {
    const vbin_job *j = p;
    TG_DISPATCH(j->dt, {
        T *y = (T *)j->y + i0;
        const T *a = (const T *)j->a + i0, *b = (const T *)j->b + i0;
        if (j->vop < 0) VMUL_ACC(y, a, b, i1 - i0);
        else VBIN(j->vop, y, a, b, i1 - i0);
    });
}
static void vbin_split(tg_dtype dt, int vop, void *y, const void *a, const void *b, int64_t n) {
    vbin_job j = {dt, vop, y, a, b};
    tg__pool_for(n, TG_SAME_MT_MIN, 16, vbin_range, &j);
}

static tg_tensor *binary(tg_op op, const char *fn, const tg_tensor *a, const tg_tensor *b) {
    if (!tg__check(fn, "a", a) || !tg__check(fn, "b", b)) return NULL;
    if (!tg__same_dtype(fn, a, b)) return NULL;
    bcast bc;
    if (!broadcast(fn, a, b, &bc)) return NULL;
    tg_tensor *out = tg__result(a->dtype, bc.ndim, bc.shape);
    if (!out) return NULL;
    TG_DISPATCH(a->dtype, {
        const T *restrict pa = TG_PTR(a, T);
        const T *restrict pb = TG_PTR(b, T);
        T *restrict po = TG_PTR(out, T);
        if (bc.kind != GENERAL) { /* whole arrays or rows: the dispatched kernel (tensor/velem.h) */
            const int vop = op == TG_OP_ADD ? TG_VADD : op == TG_OP_SUB ? TG_VSUB : op == TG_OP_MUL ? TG_VMUL : TG_VDIV;
            if (bc.kind == SAME) vbin_split(a->dtype, vop, po, pa, pb, bc.n);
            else if (bc.kind == B_ROW) for (int64_t r0 = 0; r0 < bc.n; r0 += bc.row) VBIN(vop, po + r0, pa + r0, pb, bc.row);
            else for (int64_t r0 = 0; r0 < bc.n; r0 += bc.row) VBIN(vop, po + r0, pa, pb + r0, bc.row);
        } else switch (op) {
        case TG_OP_ADD: BCAST_LOOP(&bc, po[i] = pa[ia] + pb[ib]); break;
        case TG_OP_SUB: BCAST_LOOP(&bc, po[i] = pa[ia] - pb[ib]); break;
        case TG_OP_MUL: BCAST_LOOP(&bc, po[i] = pa[ia] * pb[ib]); break;
        default: BCAST_LOOP(&bc, po[i] = pa[ia] / pb[ib]); break;
        }
    });
    const tg_tensor *in[2] = {a, b};
    tg__record(op, out, 2, in);
    return out;
}

TG_OP(ADD, add, 2, 0) /* a + b (broadcast) */
tg_tensor *tg_add(const tg_tensor *a, const tg_tensor *b) { return binary(TG_OP_ADD, "tg_add", a, b); }
/* da += g (summed over a's broadcast axes); db += g */
void tg__add_backward(tg_record *r, const tg_tensor *g) {
    bcast bc;
    record_bcast(r, &bc);
    /* da = g exactly when a is full-size: a takes g itself if it can (no copy, tg__grad_share); g is
     * only read after that, and if b is the same tensor as a its += lands in g, giving 2g */
    bool shared = tg__grad_share(r, r->in[0], g);
    bool sa, sb; /* ga before gb: when a and b are one tensor, b then adds to what a stored */
    tg_tensor *ga = shared ? NULL : operand_grad(r->in[0], &bc, &sa);
    tg_tensor *gb = operand_grad(r->in[1], &bc, &sb);
    TG_DISPATCH(g->dtype, {
        const T *pg = TG_PTR(g, T);
        if (ga) { T *d = TG_PTR(ga, T); BCAST_STORE(&bc, sa, d, ia, pg[i]); }
        if (gb) { T *d = TG_PTR(gb, T); BCAST_STORE(&bc, sb, d, ib, pg[i]); }
    });
}

TG_OP(SUB, sub, 2, 0) /* a - b (broadcast) */
tg_tensor *tg_sub(const tg_tensor *a, const tg_tensor *b) { return binary(TG_OP_SUB, "tg_sub", a, b); }
/* da += g; db -= g */
void tg__sub_backward(tg_record *r, const tg_tensor *g) {
    bcast bc;
    record_bcast(r, &bc);
    bool shared = tg__grad_share(r, r->in[0], g); /* as in add: a may take g itself */
    bool sa, sb;
    tg_tensor *ga = shared ? NULL : operand_grad(r->in[0], &bc, &sa);
    tg_tensor *gb = operand_grad(r->in[1], &bc, &sb);
    TG_DISPATCH(g->dtype, {
        const T *pg = TG_PTR(g, T);
        if (ga) { T *d = TG_PTR(ga, T); BCAST_STORE(&bc, sa, d, ia, pg[i]); }
        if (gb) { T *d = TG_PTR(gb, T); if (sb) BCAST_LOOP(&bc, d[ib] = -pg[i]); else BCAST_LOOP(&bc, d[ib] -= pg[i]); }
    });
}

TG_OP(MUL, mul, 2, IN0 | IN1) /* a ⊙ b (broadcast) */
tg_tensor *tg_mul(const tg_tensor *a, const tg_tensor *b) { return binary(TG_OP_MUL, "tg_mul", a, b); }
/* da += g ⊙ b; db += g ⊙ a */
void tg__mul_backward(tg_record *r, const tg_tensor *g) {
    bcast bc;
    record_bcast(r, &bc);
    bool sa, sb;
    tg_tensor *ga = operand_grad(r->in[0], &bc, &sa), *gb = operand_grad(r->in[1], &bc, &sb);
    TG_DISPATCH(g->dtype, {
        const T *pg = TG_PTR(g, T), *pa = TG_PTR(r->in[0], T), *pb = TG_PTR(r->in[1], T);
        if (bc.kind == SAME) { /* d (+)= g ⊙ operand, the dispatched kernels */
            if (ga) vbin_split(g->dtype, sa ? TG_VMUL : -1, TG_PTR(ga, T), pg, pb, bc.n);
            if (gb) vbin_split(g->dtype, sb ? TG_VMUL : -1, TG_PTR(gb, T), pg, pa, bc.n);
        } else {
            if (ga) { T *d = TG_PTR(ga, T); BCAST_STORE(&bc, sa, d, ia, pg[i] * pb[ib]); }
            if (gb) { T *d = TG_PTR(gb, T); BCAST_STORE(&bc, sb, d, ib, pg[i] * pa[ia]); }
        }
    });
}

TG_OP(DIV, div, 2, IN0 | IN1) /* a / b (broadcast) */
tg_tensor *tg_div(const tg_tensor *a, const tg_tensor *b) { return binary(TG_OP_DIV, "tg_div", a, b); }
/* da += g / b; db -= g ⊙ a / b² */
void tg__div_backward(tg_record *r, const tg_tensor *g) {
    bcast bc;
    record_bcast(r, &bc);
    bool sa, sb;
    tg_tensor *ga = operand_grad(r->in[0], &bc, &sa), *gb = operand_grad(r->in[1], &bc, &sb);
    TG_DISPATCH(g->dtype, {
        const T *pg = TG_PTR(g, T), *pa = TG_PTR(r->in[0], T), *pb = TG_PTR(r->in[1], T);
        if (ga) { T *d = TG_PTR(ga, T); BCAST_STORE(&bc, sa, d, ia, pg[i] / pb[ib]); }
        if (gb) {
            T *d = TG_PTR(gb, T);
            if (sb) BCAST_LOOP(&bc, d[ib] = -(pg[i] * pa[ia] / (pb[ib] * pb[ib])));
            else BCAST_LOOP(&bc, d[ib] -= pg[i] * pa[ia] / (pb[ib] * pb[ib]));
        }
    });
}

/* ---- one-tensor ops ------------------------------------------------------------------------------ */

/* Forward of a unary op: allocates, runs EXPR (reading v = x[i], params p0, p1) into y[i], records. */
#define UNARY_FORWARD(OP, FN, x, p0, p1, EXPR)                                    \
    do {                                                                          \
        if (!tg__check(FN, "x", x)) return NULL;                                  \
        tg_tensor *out = tg__result(x->dtype, x->ndim, x->shape);                 \
        if (!out) return NULL;                                                    \
        TG_DISPATCH(x->dtype, {                                                   \
            const T *restrict px = TG_PTR(x, T);                                  \
            T *restrict py = TG_PTR(out, T);                                      \
            const T P0 = (T)(p0), P1 = (T)(p1);                                   \
            (void)P0; (void)P1;                                                   \
            for (int64_t i = 0; i < x->numel; i++) { const T v = px[i]; py[i] = (EXPR); } \
        });                                                                       \
        const tg_tensor *in_[1] = {x};                                            \
        tg_record *rec_ = tg__record(OP, out, 1, in_);                            \
        if (rec_) { rec_->f[0] = (p0); rec_->f[1] = (p1); }                       \
        return out;                                                               \
    } while (0)

/* Forward of exp, tanh, sigmoid: one call to the array kernel of tensor/vmath.c (vectorised, a few ulp;
 * the libm calls per element they replace were a third of an LSTM training step). */
#define UNARY_FORWARD_KERNEL(OP, FN, x, KERNEL)                                   \
    do {                                                                          \
        if (!tg__check(FN, "x", x)) return NULL;                                  \
        tg_tensor *out = tg__result(x->dtype, x->ndim, x->shape);                 \
        if (!out) return NULL;                                                    \
        if (x->dtype == TG_F32) tg_v##KERNEL##_f32(TG_PTR(out, float), TG_PTR(x, float), x->numel); \
        else tg_v##KERNEL##_f64(TG_PTR(out, double), TG_PTR(x, double), x->numel); \
        const tg_tensor *in_[1] = {x};                                            \
        tg__record(OP, out, 1, in_);                                              \
        return out;                                                               \
    } while (0)

/* Backward of a unary op: dx[i] += g[i] * DERIV, where DERIV may read v = x[i], y = out[i], P0, P1
 * (dx[i] = ... when dx is new: see tg__grad_buf_assign). Returns from the backward function, as
 * UNARY_FORWARD returns from the forward one. */
/* The derivative goes through a variable: gcc 12 leaves a loop with a conditional DERIV (relu's
 * y > 0 ? 1 : 0, leaky_relu's, sign's, clamp's) inside the product as scalar code ("control flow in
 * loop") but vectorises it as a select when it is a value of its own. Same expression, same bits. */
#define UNARY_BACKWARD(r, g, DERIV)                                               \
    do {                                                                          \
        bool assign_;                                                             \
        tg_tensor *gx = tg__grad_buf_assign(r->in[0], &assign_);                  \
        if (!gx) return;                                                          \
        TG_DISPATCH(g->dtype, {                                                   \
            /* an operand the op does not save may have been freed (tape.c          \
             * tg_tape_free_unsaved): DERIV does not read it, so v / y load g */    \
            const T *restrict px = r->in[0]->storage->data ? TG_PTR(r->in[0], T) : TG_PTR(g, T); \
            const T *restrict py = r->out->storage->data ? TG_PTR(r->out, T) : TG_PTR(g, T);     \
            const T *restrict pg = TG_PTR(g, T);                                  \
            T *restrict d = TG_PTR(gx, T);                                        \
            const T P0 = (T)r->f[0], P1 = (T)r->f[1];                             \
            (void)P0; (void)P1; (void)px; (void)py;                               \
            if (assign_)                                                          \
                for (int64_t i = 0; i < g->numel; i++) {                          \
                    const T v = px[i], y = py[i];                                 \
                    (void)v; (void)y;                                             \
                    const T dv_ = (DERIV); /* a variable: see above */            \
                    d[i] = pg[i] * dv_;                                           \
                }                                                                 \
            else                                                                  \
                for (int64_t i = 0; i < g->numel; i++) {                          \
                    const T v = px[i], y = py[i];                                 \
                    (void)v; (void)y;                                             \
                    const T dv_ = (DERIV);                                        \
                    d[i] += pg[i] * dv_;                                          \
                }                                                                 \
        });                                                                       \
        return;                                                                   \
    } while (0)

TG_OP(AFFINE, affine, 1, 0) /* f[0] x + f[1]: neg, add/mul/rsub scalar */
tg_tensor *tg_affine(const tg_tensor *x, double alpha, double beta) {
    UNARY_FORWARD(TG_OP_AFFINE, "tg_affine", x, alpha, beta, P0 * v + P1);
}
/* dx += alpha g */
void tg__affine_backward(tg_record *r, const tg_tensor *g) { UNARY_BACKWARD(r, g, P0); }
tg_tensor *tg_neg(const tg_tensor *x) { return tg_affine(x, -1.0, 0.0); }
tg_tensor *tg_add_scalar(const tg_tensor *x, double s) { return tg_affine(x, 1.0, s); }
tg_tensor *tg_mul_scalar(const tg_tensor *x, double s) { return tg_affine(x, s, 0.0); }
tg_tensor *tg_rsub_scalar(double s, const tg_tensor *x) { return tg_affine(x, -1.0, s); }

TG_OP(POW, pow_scalar, 1, IN0) /* x^f[0] */
/* Squares (the common case: MSE, variances) skip pow(), which costs ~20x a multiply. */
tg_tensor *tg_pow_scalar(const tg_tensor *x, double p) {
    if (p == 2.0) UNARY_FORWARD(TG_OP_POW, "tg_pow_scalar", x, p, 0, v * v);
    UNARY_FORWARD(TG_OP_POW, "tg_pow_scalar", x, p, 0, pow(v, P0));
}
/* dx += g p x^(p-1) */
void tg__pow_scalar_backward(tg_record *r, const tg_tensor *g) {
    if (r->f[0] == 2.0) UNARY_BACKWARD(r, g, 2 * v); /* returns */
    UNARY_BACKWARD(r, g, P0 == 0 ? (T)0 : P0 * pow(v, P0 - 1));
}

TG_OP(EXP, exp, 1, OUT) /* e^x */
tg_tensor *tg_exp(const tg_tensor *x) { UNARY_FORWARD_KERNEL(TG_OP_EXP, "tg_exp", x, exp); }
/* dx += g e^x = g y */
void tg__exp_backward(tg_record *r, const tg_tensor *g) { UNARY_BACKWARD(r, g, y); }

TG_OP(LOG, log, 1, IN0) /* log x */
tg_tensor *tg_log(const tg_tensor *x) { UNARY_FORWARD(TG_OP_LOG, "tg_log", x, 0, 0, log(v)); }
/* dx += g / x */
void tg__log_backward(tg_record *r, const tg_tensor *g) { UNARY_BACKWARD(r, g, 1 / v); }

TG_OP(SQRT, sqrt, 1, OUT) /* √x */
tg_tensor *tg_sqrt(const tg_tensor *x) { UNARY_FORWARD(TG_OP_SQRT, "tg_sqrt", x, 0, 0, sqrt(v)); }
/* dx += g / (2 y) */
void tg__sqrt_backward(tg_record *r, const tg_tensor *g) { UNARY_BACKWARD(r, g, (T)0.5 / y); }

TG_OP(TANH, tanh, 1, OUT) /* tanh x */
tg_tensor *tg_tanh(const tg_tensor *x) { UNARY_FORWARD_KERNEL(TG_OP_TANH, "tg_tanh", x, tanh); }
/* dx += g (1 - y²) */
void tg__tanh_backward(tg_record *r, const tg_tensor *g) { UNARY_BACKWARD(r, g, 1 - y * y); }

TG_OP(SIGMOID, sigmoid, 1, OUT) /* σ(x) */
/* σ(x) written so that exp never overflows: for x < 0, e^x / (1 + e^x) (tensor/vmath.c). */
tg_tensor *tg_sigmoid(const tg_tensor *x) { UNARY_FORWARD_KERNEL(TG_OP_SIGMOID, "tg_sigmoid", x, sigmoid); }
/* dx += g y (1 - y) */
void tg__sigmoid_backward(tg_record *r, const tg_tensor *g) { UNARY_BACKWARD(r, g, y * (1 - y)); }

TG_OP(RELU, relu, 1, OUT) /* max(x, 0) */
tg_tensor *tg_relu(const tg_tensor *x) { UNARY_FORWARD(TG_OP_RELU, "tg_relu", x, 0, 0, v > 0 ? v : 0); }
/* dx += g [y > 0]  (relu'(0) = 0, like PyTorch) */
void tg__relu_backward(tg_record *r, const tg_tensor *g) { UNARY_BACKWARD(r, g, y > 0 ? (T)1 : (T)0); }

TG_OP(LEAKY_RELU, leaky_relu, 1, IN0) /* x>0 ? x : f[0] x */
tg_tensor *tg_leaky_relu(const tg_tensor *x, double slope) {
    UNARY_FORWARD(TG_OP_LEAKY_RELU, "tg_leaky_relu", x, slope, 0, v > 0 ? v : P0 * v);
}
/* dx += g (x > 0 ? 1 : slope) */
void tg__leaky_relu_backward(tg_record *r, const tg_tensor *g) { UNARY_BACKWARD(r, g, v > 0 ? (T)1 : P0); }

TG_OP(SOFTPLUS, softplus, 1, IN0) /* log(1+e^x) */
/* log(1 + e^x) = max(x, 0) + log1p(e^-|x|): exact for large |x| of either sign. */
tg_tensor *tg_softplus(const tg_tensor *x) {
    UNARY_FORWARD(TG_OP_SOFTPLUS, "tg_softplus", x, 0, 0, (v > 0 ? v : 0) + log1p(exp(-fabs(v))));
}
/* dx += g σ(x) */
void tg__softplus_backward(tg_record *r, const tg_tensor *g) {
    UNARY_BACKWARD(r, g, v >= 0 ? 1 / (1 + exp(-v)) : exp(v) / (1 + exp(v)));
}

TG_OP(ABS, abs, 1, IN0) /* |x| */
tg_tensor *tg_abs(const tg_tensor *x) { UNARY_FORWARD(TG_OP_ABS, "tg_abs", x, 0, 0, fabs(v)); }
/* dx += g sign(x)  (0 at 0, like PyTorch) */
void tg__abs_backward(tg_record *r, const tg_tensor *g) {
    UNARY_BACKWARD(r, g, v > 0 ? (T)1 : (v < 0 ? (T)-1 : (T)0));
}

TG_OP(CLAMP, clamp, 1, IN0) /* min(max(x, f[0]), f[1]) */
tg_tensor *tg_clamp(const tg_tensor *x, double lo, double hi) {
    if (x && !(lo <= hi)) {
        tg_error("tg_clamp", "bounds [%g, %g]: lo must not exceed hi", lo, hi);
        return NULL;
    }
    UNARY_FORWARD(TG_OP_CLAMP, "tg_clamp", x, lo, hi, v < P0 ? P0 : (v > P1 ? P1 : v));
}
/* dx += g [lo <= x <= hi] */
void tg__clamp_backward(tg_record *r, const tg_tensor *g) {
    UNARY_BACKWARD(r, g, (v >= P0 && v <= P1) ? (T)1 : (T)0);
}

/* ---- gates: a generic fused gate non-linearity ------------------------------------------------- */

/* Why an op: an LSTM step used to chunk its [B,4H] pre-activations into four copies and run four
 * activation ops on them (eight passes over the gate memory and eight tape tensors); this is one
 * pass and one tensor, and its gate-major result hands out the gates as views. */
enum { GATE_SIGMOID, GATE_TANH, GATE_RELU, GATE_IDENTITY };
#define GATES_MAX 32 /* 2-bit codes packed in one int64 of the record */

/* The activation letters of tg_gates (and tg_ln_gates): G (1..GATES_MAX) and their 2-bit codes, or 0
 * after reporting under fn. */
int tg__gate_codes(const char *fn, const char *acts, int64_t *codes) {
    size_t G = acts ? strlen(acts) : 0;
    if (G == 0 || G > GATES_MAX) {
        tg_error(fn, "acts \"%s\": one letter per gate (s sigmoid, t tanh, r relu, i identity), 1..%d gates",
                 acts ? acts : "(null)", GATES_MAX);
        return 0;
    }
    *codes = 0;
    for (size_t k = 0; k < G; k++) {
        const char *letters = "stri", *at = strchr(letters, acts[k]);
        if (!acts[k] || !at) {
            tg_error(fn, "acts \"%s\": letter '%c' of gate %zu is not s (sigmoid), t (tanh), r (relu) or i (identity)",
                     acts, acts[k], k);
            return 0;
        }
        *codes |= (int64_t)(at - letters) << (2 * k);
    }
    return (int)G;
}

/* y[0..n) = act(x[0..n)) for one gate block (the kernels of tg_sigmoid, tg_tanh, tg_relu, identity) */
void tg__gate_act(tg_dtype dt, int code, void *y, const void *x, int64_t n) {
    TG_DISPATCH(dt, {
        T *restrict ys = y;
        const T *restrict xs = x;
        switch (code) {
        case GATE_SIGMOID: _Generic((T)0, float: tg_vsigmoid_f32, default: tg_vsigmoid_f64)(ys, xs, n); break;
        case GATE_TANH: _Generic((T)0, float: tg_vtanh_f32, default: tg_vtanh_f64)(ys, xs, n); break;
        case GATE_RELU: for (int64_t j = 0; j < n; j++) ys[j] = xs[j] > 0 ? xs[j] : 0; break;
        default: memcpy(ys, xs, (size_t)n * sizeof(T)); break;
        }
    });
}

/* d[j] (+)= gy[j] DERIV over one gate block of one row (DERIV may read y[j]) */
#define GATE_BWD(DERIV)                                                          \
    do {                                                                         \
        if (assign) for (int64_t j = 0; j < n; j++) d[j] = gy[j] * (DERIV);      \
        else for (int64_t j = 0; j < n; j++) d[j] += gy[j] * (DERIV);            \
    } while (0)

/* d[0..n) (+)= gy act'(from y = act(x)): σ' = y (1 − y), tanh' = 1 − y², relu' = [y > 0], 1 */
void tg__gate_act_backward(tg_dtype dt, int code, void *dv, const void *gv, const void *yv, int64_t n, bool assign) {
    TG_DISPATCH(dt, {
        T *restrict d = dv;
        const T *restrict gy = gv, *restrict y = yv;
        switch (code) {
        case GATE_SIGMOID: GATE_BWD(y[j] * (1 - y[j])); break;
        case GATE_TANH: GATE_BWD(1 - y[j] * y[j]); break;
        case GATE_RELU: GATE_BWD(y[j] > 0 ? (T)1 : (T)0); break;
        default: GATE_BWD((T)1); break;
        }
    });
}

TG_OP(GATES, gates, 1, OUT) /* [..,G·H] -> [G,..,H]; k[0] = G, k[1] = codes */
tg_tensor *tg_gates(const tg_tensor *x, const char *acts) {
    const char *fn = "tg_gates";
    if (!tg__check(fn, "x", x)) return NULL;
    int64_t codes;
    const size_t G = (size_t)tg__gate_codes(fn, acts, &codes);
    if (!G) return NULL;
    char sh[128];
    if (x->ndim < 1 || x->ndim >= TG_MAX_DIMS || x->shape[x->ndim - 1] % (int64_t)G) {
        tg_error(fn, "x %s, %zu gates (\"%s\"): x must have 1..%d dimensions and a last dimension divisible by %zu",
                 tg_shape_str(x, sh, sizeof sh), G, acts, TG_MAX_DIMS - 1, G);
        return NULL;
    }
    int64_t GH = x->shape[x->ndim - 1], H = GH / (int64_t)G, R = GH ? x->numel / GH : 0;
    if (!GH) { R = 1; for (int d = 0; d < x->ndim - 1; d++) R *= x->shape[d]; }
    int64_t shape[TG_MAX_DIMS];
    shape[0] = (int64_t)G;
    for (int d = 0; d < x->ndim - 1; d++) shape[d + 1] = x->shape[d];
    shape[x->ndim] = H;
    tg_tensor *out = tg__result(x->dtype, x->ndim + 1, shape);
    if (!out) return NULL;
    TG_DISPATCH(x->dtype, {
        const T *px = TG_PTR(x, T);
        T *py = TG_PTR(out, T);
        for (int64_t r0 = 0; r0 < R; r0++)
            for (int64_t k = 0; k < (int64_t)G; k++) {
                const T *restrict xs = px + r0 * GH + k * H;
                T *restrict ys = py + (k * R + r0) * H;
                tg__gate_act(x->dtype, tg__gate_code(codes, (int)k), ys, xs, H);
            }
    });
    const tg_tensor *in[1] = {x};
    tg_record *rec = tg__record(TG_OP_GATES, out, 1, in);
    if (rec) { rec->k[0] = (int64_t)G; rec->k[1] = codes; }
    return out;
}

/* dx[..., k·H + j] += g[k, ..., j] act_k'(y[k, ..., j]), with the derivatives of tg_sigmoid (y (1 - y)),
 * tg_tanh (1 - y²), tg_relu ([y > 0]) and identity (1). */
void tg__gates_backward(tg_record *r, const tg_tensor *g) {
    bool assign; /* every element of dx receives one value: a new buffer is stored into */
    tg_tensor *gx = tg__grad_buf_assign(r->in[0], &assign);
    if (!gx) return;
    int64_t G = r->k[0], codes = r->k[1], GH = gx->shape[gx->ndim - 1], H = GH / G;
    int64_t R = g->shape[0] ? g->numel / G / (H ? H : 1) : 0;
    if (!H) { R = 1; for (int d = 1; d < g->ndim - 1; d++) R *= g->shape[d]; }
    TG_DISPATCH(g->dtype, {
        const T *pg = TG_PTR(g, T), *py = TG_PTR(r->out, T);
        T *pd = TG_PTR(gx, T);
        for (int64_t r0 = 0; r0 < R; r0++)
            for (int64_t k = 0; k < G; k++) {
                const T *restrict gy = pg + (k * R + r0) * H, *restrict y = py + (k * R + r0) * H;
                T *restrict d = pd + r0 * GH + k * H;
                tg__gate_act_backward(g->dtype, tg__gate_code(codes, (int)k), d, gy, y, H, assign);
            }
    });
}

/* ---- gru_gates: the GRU's three gates in one pass ------------------------------------------------ */

TG_OP(GRU_GATES, gru_gates, 2, IN1 | OUT) /* GRU r, z, n: [..,3H] x 2 -> [3,..,H] */
/* Why an op: PyTorch's GRU step written with plain ops chunks both projections into three copies
 * each and runs seven small ops on the pieces; this reads both projections once and writes r, z, n
 * gate-major, so the cell takes them as views (the same idea as tg_gates). */
tg_tensor *tg_gru_gates(const tg_tensor *xp, const tg_tensor *hp) {
    const char *fn = "tg_gru_gates";
    if (!tg__check(fn, "xp", xp) || !tg__check(fn, "hp", hp)) return NULL;
    char sa[128], sb[128];
    if (!tg__same_dtype(fn, xp, hp)) return NULL;
    if (!tg_same_shape(xp, hp)) {
        tg_error(fn, "xp %s and hp %s: the two projections must have the same shape [..., 3H]",
                 tg_shape_str(xp, sa, sizeof sa), tg_shape_str(hp, sb, sizeof sb));
        return NULL;
    }
    if (xp->ndim < 1 || xp->ndim >= TG_MAX_DIMS || xp->shape[xp->ndim - 1] % 3) {
        tg_error(fn, "xp %s: must have 1..%d dimensions and a last dimension 3H (gates r, z, n)",
                 tg_shape_str(xp, sa, sizeof sa), TG_MAX_DIMS - 1);
        return NULL;
    }
    const int64_t GH = xp->shape[xp->ndim - 1], H = GH / 3;
    int64_t R = 1;
    for (int d = 0; d < xp->ndim - 1; d++) R *= xp->shape[d];
    int64_t shape[TG_MAX_DIMS];
    shape[0] = 3;
    for (int d = 0; d < xp->ndim - 1; d++) shape[d + 1] = xp->shape[d];
    shape[xp->ndim] = H;
    tg_tensor *out = tg__result(xp->dtype, xp->ndim + 1, shape);
    if (!out) return NULL;
    TG_DISPATCH(xp->dtype, {
        const T *px = TG_PTR(xp, T), *ph = TG_PTR(hp, T);
        T *py = TG_PTR(out, T);
        for (int64_t r0 = 0; r0 < R; r0++) {
            const T *restrict x = px + r0 * GH, *restrict h = ph + r0 * GH;
            T *restrict rr = py + r0 * H, *restrict zz = py + (R + r0) * H, *restrict nn = py + (2 * R + r0) * H;
            for (int64_t j = 0; j < H; j++) {      /* pre-activations first, then vector activations */
                rr[j] = x[j] + h[j];
                zz[j] = x[H + j] + h[H + j];
            }
            _Generic((T)0, float: tg_vsigmoid_f32, default: tg_vsigmoid_f64)(rr, rr, H);
            _Generic((T)0, float: tg_vsigmoid_f32, default: tg_vsigmoid_f64)(zz, zz, H);
            for (int64_t j = 0; j < H; j++) nn[j] = x[2 * H + j] + rr[j] * h[2 * H + j];
            _Generic((T)0, float: tg_vtanh_f32, default: tg_vtanh_f64)(nn, nn, H);
        }
    });
    const tg_tensor *in[2] = {xp, hp};
    tg__record(TG_OP_GRU_GATES, out, 2, in);
    return out;
}

/* With g = [g_r; g_z; g_n] and y = [r; z; n]:
 *   n~ = g_n (1 - n²)            dxp_n = n~,   dhp_n = n~ r
 *   r~ = (g_r + n~ h_n) r (1 - r) dxp_r = dhp_r = r~
 *   z~ = g_z z (1 - z)            dxp_z = dhp_z = z~ */
void tg__gru_gates_backward(tg_record *r, const tg_tensor *g) {
    bool ax = false, ah = false;
    tg_tensor *gx = tg__grad_buf_assign(r->in[0], &ax), *gh = tg__grad_buf_assign(r->in[1], &ah);
    if (!gx && !gh) return;
    const tg_tensor *hp = r->in[1];
    const int64_t GH = hp->shape[hp->ndim - 1], H = GH / 3;
    const int64_t R = GH ? hp->numel / GH : 0;
    TG_DISPATCH(g->dtype, {
        const T *pg = TG_PTR(g, T), *py = TG_PTR(r->out, T), *ph = TG_PTR(hp, T);
        T *dx = gx ? TG_PTR(gx, T) : NULL, *dh = gh ? TG_PTR(gh, T) : NULL;
        for (int64_t r0 = 0; r0 < R; r0++) {
            const T *gr = pg + r0 * H, *gz = pg + (R + r0) * H, *gn = pg + (2 * R + r0) * H;
            const T *rr = py + r0 * H, *zz = py + (R + r0) * H, *nn = py + (2 * R + r0) * H;
            const T *hn = ph + r0 * GH + 2 * H;
            T *xrow = dx ? dx + r0 * GH : NULL, *hrow = dh ? dh + r0 * GH : NULL;
            for (int64_t j = 0; j < H; j++) {
                const T dn = gn[j] * (1 - nn[j] * nn[j]);
                const T drp = (gr[j] + dn * hn[j]) * (rr[j] * (1 - rr[j]));
                const T dzp = gz[j] * (zz[j] * (1 - zz[j]));
                if (xrow) {
                    if (ax) { xrow[j] = drp; xrow[H + j] = dzp; xrow[2 * H + j] = dn; }
                    else { xrow[j] += drp; xrow[H + j] += dzp; xrow[2 * H + j] += dn; }
                }
                if (hrow) {
                    if (ah) { hrow[j] = drp; hrow[H + j] = dzp; hrow[2 * H + j] = dn * rr[j]; }
                    else { hrow[j] += drp; hrow[H + j] += dzp; hrow[2 * H + j] += dn * rr[j]; }
                }
            }
        }
    });
}

/* ---- lstm_state: the LSTM state update in one op ------------------------------------------------- */

/* Why an op: c' = f ⊙ c + i ⊙ g and h' = o ⊙ tanh(c') written with plain ops are five records and five
 * [B,H] results on the tape (f⊙c, i⊙g, c', tanh c', h'); this is one record and one [2,B,H] result
 * (h', c' as views), and the backward recomputes tanh(c') instead of keeping it. The arithmetic is
 * that of the plain ops in the same order (no contraction in this file), so values and gradients are
 * bit-identical to them. */
static bool lstm_state_shapes(const char *fn, const tg_tensor *gates, const tg_tensor *c) {
    char s1[128], s2[128];
    bool ok = gates->ndim == c->ndim + 1 && gates->shape[0] == 4;
    for (int d = 0; ok && d < c->ndim; d++) ok = gates->shape[d + 1] == c->shape[d];
    if (!ok)
        tg_error(fn, "gates %s, c %s: gates must be [4, ...] with ... the shape of c (i, f, g, o gate-major, "
                 "as tg_gates gives them)", tg_shape_str(gates, s1, sizeof s1), tg_shape_str(c, s2, sizeof s2));
    return ok;
}

TG_OP(LSTM_STATE, lstm_state, 2, IN0 | IN1 | OUT) /* (h', c') of gates [4,..,H] and c: [2,..,H] */
tg_tensor *tg_lstm_state(const tg_tensor *gates, const tg_tensor *c) {
    const char *fn = "tg_lstm_state";
    if (!tg__check(fn, "gates", gates) || !tg__check(fn, "c", c)) return NULL;
    if (!tg__same_dtype(fn, gates, c) || !lstm_state_shapes(fn, gates, c)) return NULL;
    int64_t shape[TG_MAX_DIMS];
    memcpy(shape, gates->shape, sizeof shape);
    shape[0] = 2;
    tg_tensor *out = tg__result(c->dtype, gates->ndim, shape);
    if (!out) return NULL;
    const int64_t n = c->numel;
    TG_DISPATCH(c->dtype, {
        const T *restrict pg = TG_PTR(gates, T), *restrict pc = TG_PTR(c, T);
        const T *restrict i = pg, *restrict f = pg + n, *restrict g = pg + 2 * n, *restrict o = pg + 3 * n;
        T *restrict h2 = TG_PTR(out, T), *restrict c2 = h2 + n;
        for (int64_t j = 0; j < n; j++) c2[j] = f[j] * pc[j] + i[j] * g[j];
        _Generic((T)0, float: tg_vtanh_f32, default: tg_vtanh_f64)(h2, c2, n);
        for (int64_t j = 0; j < n; j++) h2[j] = o[j] * h2[j];
    });
    const tg_tensor *in[2] = {gates, c};
    tg__record(TG_OP_LSTM_STATE, out, 2, in);
    return out;
}

/* With g = [g_h; g_c], τ = tanh(c'):
 *   dc' = g_c + (g_h o)(1 − τ²)      (the plain ops' order: g_c first, then tanh's backward adds)
 *   di = dc' g,  df = dc' c,  dg = dc' i,  do = g_h τ,  dc = dc' f */
#define LSTM_STATE_CHUNK 256
void tg__lstm_state_backward(tg_record *r, const tg_tensor *g) {
    bool ag, ac;
    tg_tensor *gG = tg__grad_buf_assign(r->in[0], &ag);
    tg_tensor *gc = tg__grad_buf_assign(r->in[1], &ac);
    if (!gG && !gc) return;
    const int64_t n = r->in[1]->numel;
    TG_DISPATCH(g->dtype, {
        const T *pg = TG_PTR(r->in[0], T), *pc = TG_PTR(r->in[1], T), *c2 = TG_PTR(r->out, T) + n;
        const T *i = pg, *f = pg + n, *gg = pg + 2 * n, *o = pg + 3 * n;
        const T *gh = TG_PTR(g, T), *gcv = gh + n;
        T *dG = gG ? TG_PTR(gG, T) : NULL, *dc = gc ? TG_PTR(gc, T) : NULL;
        T tau[LSTM_STATE_CHUNK], dc2[LSTM_STATE_CHUNK];
        for (int64_t j0 = 0; j0 < n; j0 += LSTM_STATE_CHUNK) {
            const int64_t m = n - j0 < LSTM_STATE_CHUNK ? n - j0 : LSTM_STATE_CHUNK;
            _Generic((T)0, float: tg_vtanh_f32, default: tg_vtanh_f64)(tau, c2 + j0, m);
            for (int64_t k = 0; k < m; k++) {
                const int64_t j = j0 + k;
                dc2[k] = gcv[j] + gh[j] * o[j] * (1 - tau[k] * tau[k]);
            }
            if (dG) {
                T *di = dG + j0, *df = dG + n + j0, *dg = dG + 2 * n + j0, *dO = dG + 3 * n + j0;
                if (ag)
                    for (int64_t k = 0; k < m; k++) {
                        const int64_t j = j0 + k;
                        di[k] = dc2[k] * gg[j], df[k] = dc2[k] * pc[j], dg[k] = dc2[k] * i[j], dO[k] = gh[j] * tau[k];
                    }
                else
                    for (int64_t k = 0; k < m; k++) {
                        const int64_t j = j0 + k;
                        di[k] += dc2[k] * gg[j], df[k] += dc2[k] * pc[j], dg[k] += dc2[k] * i[j], dO[k] += gh[j] * tau[k];
                    }
            }
            if (dc) {
                if (ac) for (int64_t k = 0; k < m; k++) dc[j0 + k] = dc2[k] * f[j0 + k];
                else for (int64_t k = 0; k < m; k++) dc[j0 + k] += dc2[k] * f[j0 + k];
            }
        }
    });
}

/* ---- lerp: a + w ⊙ (b − a) --------------------------------------------------------------------------- */

TG_OP(LERP, lerp, 3, IN0 | IN1 | IN2) /* a + w ⊙ (b - a) */
/* Why an op: the GRU and its relatives (MGU, MUT1-3) end with h' = n + z ⊙ (h − n) (or h + f ⊙ (h̃ − h)):
 * three records and three results with plain ops, one here; same rounding as tg_add(a, tg_mul(w,
 * tg_sub(b, a))), so values and gradients are bit-identical to them. */
tg_tensor *tg_lerp(const tg_tensor *a, const tg_tensor *b, const tg_tensor *w) {
    const char *fn = "tg_lerp";
    if (!tg__check(fn, "a", a) || !tg__check(fn, "b", b) || !tg__check(fn, "w", w)) return NULL;
    if (!tg__same_dtype(fn, a, b) || !tg__same_dtype(fn, a, w)) return NULL;
    if (!tg_same_shape(a, b) || !tg_same_shape(a, w)) {
        char s1[128], s2[128], s3[128];
        tg_error(fn, "a %s, b %s, w %s: the three must have one shape (no broadcasting)", tg_shape_str(a, s1, sizeof s1),
                 tg_shape_str(b, s2, sizeof s2), tg_shape_str(w, s3, sizeof s3));
        return NULL;
    }
    tg_tensor *out = tg__result(a->dtype, a->ndim, a->shape);
    if (!out) return NULL;
    TG_DISPATCH(a->dtype, {
        const T *restrict pa = TG_PTR(a, T), *restrict pb = TG_PTR(b, T), *restrict pw = TG_PTR(w, T);
        T *restrict po = TG_PTR(out, T);
        for (int64_t j = 0; j < a->numel; j++) po[j] = pa[j] + pw[j] * (pb[j] - pa[j]);
    });
    const tg_tensor *in[3] = {a, b, w};
    tg__record(TG_OP_LERP, out, 3, in);
    return out;
}

/* da += g − g w (as add then sub: (da + g) − g w),  db += g w,  dw += g (b − a). Each gradient buffer is
 * fetched right before its pass, so an input given twice adds to what the first pass stored. */
void tg__lerp_backward(tg_record *r, const tg_tensor *g) {
    const int64_t n = g->numel;
    bool s;
    tg_tensor *d;
    TG_DISPATCH(g->dtype, {
        const T *pa = TG_PTR(r->in[0], T), *pb = TG_PTR(r->in[1], T), *pw = TG_PTR(r->in[2], T), *pg = TG_PTR(g, T);
        if ((d = tg__grad_buf_assign(r->in[0], &s))) {
            T *dd = TG_PTR(d, T);
            if (s) for (int64_t j = 0; j < n; j++) dd[j] = pg[j] - pg[j] * pw[j];
            else for (int64_t j = 0; j < n; j++) dd[j] = (dd[j] + pg[j]) - pg[j] * pw[j];
        }
        if ((d = tg__grad_buf_assign(r->in[1], &s))) {
            T *dd = TG_PTR(d, T);
            if (s) for (int64_t j = 0; j < n; j++) dd[j] = pg[j] * pw[j];
            else for (int64_t j = 0; j < n; j++) dd[j] += pg[j] * pw[j];
        }
        if ((d = tg__grad_buf_assign(r->in[2], &s))) {
            T *dd = TG_PTR(d, T);
            if (s) for (int64_t j = 0; j < n; j++) dd[j] = pg[j] * (pb[j] - pa[j]);
            else for (int64_t j = 0; j < n; j++) dd[j] += pg[j] * (pb[j] - pa[j]);
        }
    });
}
