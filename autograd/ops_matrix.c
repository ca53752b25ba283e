/* autograd/ops_matrix.c - matrix products and the fused linear layer.
 * Dimension letters: M rows of the result, N columns, K the inner dimension; for linear,
 * R = rows of x (all leading dimensions flattened), I inputs, O outputs. */
#include "autograd/ops_common.h"
#include "tensor/gemm.h"
#include "tensor/alloc.h"
#include "tensor/pool.h"

#include <stdlib.h>

static void gemm(tg_dtype dt, int ta, int tb, int64_t M, int64_t N, int64_t K, const tg_tensor *A,
                 const tg_tensor *B, double beta, tg_tensor *C) {
    int64_t lda = ta ? M : K, ldb = tb ? K : N;
    if (dt == TG_F32)
        tg_gemm_f32(ta, tb, M, N, K, TG_PTR(A, float), lda, TG_PTR(B, float), ldb, (float)beta, TG_PTR(C, float), N);
    else
        tg_gemm_f64(ta, tb, M, N, K, TG_PTR(A, double), lda, TG_PTR(B, double), ldb, beta, TG_PTR(C, double), N);
}

/* ---- packed weights --------------------------------------------------------------------------
 * Inside a pack scope (tg__pack_scope_begin/end: the runner's loop over the time steps of one layer
 * and direction, and one tg_backward), a matrix met a second time as the B operand of a linear
 * product (W of x·Wᵀ forward, W of G·W backward: the recurrent weight at every time step) is packed
 * once (tensor/gemm.h, tg_gemm_pack_b_*) and the later products read the packed copy: bit-identical
 * results, without re-packing W_hh 2T times per training step. An entry holds a reference to its
 * tensor (so the key cannot be reused by another tensor) and the storage version it was packed at;
 * a write through an op bumps the version and the next use repacks. Everything is freed when the
 * outermost scope ends, so nothing packed outlives a forward or a backward (an optimizer step, or a
 * raw write through tg_data() between two passes, can never meet a stale copy). */
#define TG_PACK_SLOTS 4
typedef struct pack_entry {
    tg_tensor *W;      /* owned reference, or NULL: free slot */
    uint64_t version;  /* W's storage version when met / packed */
    int tb;
    void *packed;      /* NULL: met once so far */
} pack_entry;
static _Thread_local struct {
    int depth, next;
    pack_entry e[TG_PACK_SLOTS];
} g_pack;

static void pack_entry_clear(pack_entry *e) {
    tg_release(e->W);
    free(e->packed);
    memset(e, 0, sizeof *e);
}

void tg__pack_scope_begin(void) { g_pack.depth++; }

void tg__pack_scope_end(void) {
    if (g_pack.depth > 0 && --g_pack.depth == 0) {
        for (int i = 0; i < TG_PACK_SLOTS; i++) pack_entry_clear(&g_pack.e[i]);
        g_pack.next = 0; /* every scope fills the slots from 0, as the defer scope does (same reason) */
    }
}

/* The packed op(W) for a product C[M,N] = op(A)·op(W) with inner dimension K, or NULL (no scope, the
 * GEMM would not pack, W met for the first time, or out of memory: the caller runs the plain GEMM). */
static const void *packed_weight(const tg_tensor *W, int tb, int64_t M, int64_t N, int64_t K) {
    if (!g_pack.depth || !tg_gemm_packs(tb, M, N, K)) return NULL;
    uint64_t ver = W->storage->version;
    for (int i = 0; i < TG_PACK_SLOTS; i++) {
        pack_entry *e = &g_pack.e[i];
        if (e->W != W || e->tb != tb) continue;
        if (e->version != ver || !e->packed) {
            free(e->packed);
            e->packed = NULL;
            e->version = ver;
            size_t bytes = W->dtype == TG_F32 ? tg_gemm_packed_b_size_f32(N, K) : tg_gemm_packed_b_size_f64(N, K);
            e->packed = bytes ? tg_aligned_alloc(64, (bytes + 63) / 64 * 64) : NULL;
            if (!e->packed) return NULL;
            if (W->dtype == TG_F32) tg_gemm_pack_b_f32(tb, N, K, TG_PTR(W, float), tb ? K : N, e->packed);
            else tg_gemm_pack_b_f64(tb, N, K, TG_PTR(W, double), tb ? K : N, e->packed);
        }
        return e->packed;
    }
    pack_entry *e = &g_pack.e[g_pack.next];
    g_pack.next = (g_pack.next + 1) % TG_PACK_SLOTS;
    pack_entry_clear(e);
    e->W = tg_retain((tg_tensor *)W);
    e->version = ver;
    e->tb = tb;
    return NULL;
}

/* gemm() with B = W, a weight that may be met again in this pack scope */
static void gemm_w(tg_dtype dt, int ta, int tb, int64_t M, int64_t N, int64_t K, const tg_tensor *A,
                   const tg_tensor *W, double beta, tg_tensor *C) {
    const void *Wp = packed_weight(W, tb, M, N, K);
    if (!Wp) { gemm(dt, ta, tb, M, N, K, A, W, beta, C); return; }
    int64_t lda = ta ? M : K, ldb = tb ? K : N;
    if (dt == TG_F32)
        tg_gemm_prepacked_f32(ta, tb, M, N, K, TG_PTR(A, float), lda, TG_PTR(W, float), ldb, Wp, (float)beta,
                              TG_PTR(C, float), N);
    else
        tg_gemm_prepacked_f64(ta, tb, M, N, K, TG_PTR(A, double), lda, TG_PTR(W, double), ldb, Wp, beta,
                              TG_PTR(C, double), N);
}

/* ---- deferred weight gradients ------------------------------------------------------------------
 * Backward through the T recurrent products h_t·W_hhᵀ gives dW_hh = Σ_t G_tᵀ·h_t: T GEMMs with inner
 * dimension K = B (32 or 1), each of which reads and writes the whole [O,I] gradient for only 2·O·I·B
 * flops. Inside a defer scope (tg__defer_scope_begin/end: one tg_backward pass), a linear's dW with
 * few rows is instead staged: its G rows and x rows are copied into two buffers, and one GEMM with
 * K = all staged rows adds them into W's gradient when the buffers are full, when the backward loop
 * reaches the record that produced W (tg__defer_flush_for), and at the end of the pass. Results equal
 * the per-step sum up to the order of the additions (a GEMM over K sums in its own order). */
#define TG_DEFER_SLOTS 4
#define TG_DEFER_MAX_ROWS 128 /* a product with more rows is efficient on its own */
#define TG_DEFER_CAP_ROWS 512 /* staged rows per weight (2 K blocks of the F32 GEMM) */
typedef struct defer_entry {
    tg_tensor *W;       /* owned reference, or NULL: free slot */
    void *G, *X;        /* [cap, O] and [cap, I] staged rows (this thread's buffer pool: reused by the
                         * next pass instead of faulted in afresh) */
    size_t Gcap, Xcap;  /* their pool capacities */
    int64_t rows, cap;
} defer_entry;
static _Thread_local struct {
    int depth, next;
    defer_entry e[TG_DEFER_SLOTS];
} g_defer;

/* Adds the staged rows of e into its weight's gradient and empties e (the buffers stay). */
static void defer_flush(defer_entry *e) {
    if (!e->W || e->rows == 0) return;
    tg_tensor *W = e->W;
    int64_t O = W->shape[0], I = W->shape[1];
    bool s;
    tg_tensor *gW = tg__grad_buf_assign(W, &s);
    if (gW) {
        if (W->dtype == TG_F32)
            tg_gemm_f32(1, 0, O, I, e->rows, e->G, O, e->X, I, s ? 0.0f : 1.0f, TG_PTR(gW, float), I);
        else
            tg_gemm_f64(1, 0, O, I, e->rows, e->G, O, e->X, I, s ? 0.0 : 1.0, TG_PTR(gW, double), I);
    }
    e->rows = 0;
}

static void defer_clear(defer_entry *e) {
    defer_flush(e);
    tg_release(e->W);
    tg__scratch_put(e->G, e->Gcap);
    tg__scratch_put(e->X, e->Xcap);
    memset(e, 0, sizeof *e);
}

void tg__defer_scope_begin(void) { g_defer.depth++; }

void tg__defer_scope_end(void) {
    if (g_defer.depth > 0 && --g_defer.depth == 0) {
        for (int i = 0; i < TG_DEFER_SLOTS; i++) defer_clear(&g_defer.e[i]);
        /* every pass fills the slots from 0: which slot a weight gets decides the order in which the
         * staging buffers go back to the buffer pool, and so which later allocations reuse them; a
         * round-robin carried over from the previous pass made the allocation count of identical passes
         * differ (tests/test_allocfail.c needs it fixed) */
        g_defer.next = 0;
    }
}

void tg__defer_flush_for(const tg_tensor *t) {
    for (int i = 0; g_defer.depth && i < TG_DEFER_SLOTS; i++)
        if (g_defer.e[i].W == t) defer_flush(&g_defer.e[i]);
}

/* Stages dW += Gᵀ·x (G [R,O], x [R,I], both contiguous) for later; false: the caller runs the GEMM now
 * (no scope, too many rows, or out of memory). */
static bool defer_weight_grad(tg_tensor *W, const tg_tensor *g, const tg_tensor *x, int64_t R) {
    if (!g_defer.depth || R > TG_DEFER_MAX_ROWS || R == 0 || tg_anomaly_mode()) return false;
    int64_t O = W->shape[0], I = W->shape[1];
    size_t item = tg_itemsize(W->dtype);
    defer_entry *e = NULL;
    for (int i = 0; i < TG_DEFER_SLOTS && !e; i++)
        if (g_defer.e[i].W == W) e = &g_defer.e[i];
    if (!e) {
        e = &g_defer.e[g_defer.next];
        g_defer.next = (g_defer.next + 1) % TG_DEFER_SLOTS;
        defer_clear(e);
        e->cap = TG_DEFER_CAP_ROWS;
        e->G = tg__scratch_get((size_t)(e->cap * O) * item, &e->Gcap);
        e->X = tg__scratch_get((size_t)(e->cap * I) * item, &e->Xcap);
        if (!e->G || !e->X) { defer_clear(e); return false; }
        e->W = tg_retain(W);
    }
    if (e->rows + R > e->cap) defer_flush(e);
    tg__pool_copy((char *)e->G + (size_t)(e->rows * O) * item, tg__ptr(g), (size_t)(R * O) * item);
    tg__pool_copy((char *)e->X + (size_t)(e->rows * I) * item, tg__ptr(x), (size_t)(R * I) * item);
    e->rows += R;
    return true;
}

static tg_tensor *matmul(const char *fn, const tg_tensor *a, const tg_tensor *b, int ta, int tb) {
    if (!tg__check(fn, "a", a) || !tg__check(fn, "b", b)) return NULL;
    char s1[128], s2[128];
    if (a->ndim != 2 || b->ndim != 2) {
        tg_error(fn, "%s @ %s: both operands must be 2-D", tg_shape_str(a, s1, sizeof s1), tg_shape_str(b, s2, sizeof s2));
        return NULL;
    }
    if (!tg__same_dtype(fn, a, b)) return NULL;
    int64_t M = ta ? a->shape[1] : a->shape[0], Ka = ta ? a->shape[0] : a->shape[1];
    int64_t N = tb ? b->shape[0] : b->shape[1], Kb = tb ? b->shape[1] : b->shape[0];
    if (Ka != Kb) {
        tg_error(fn, "%s @ %s%s: inner dimensions differ", tg_shape_str(a, s1, sizeof s1),
                 tg_shape_str(b, s2, sizeof s2), ta ? " (a transposed)" : tb ? " (b transposed)" : "");
        return NULL;
    }
    int64_t shape[2] = {M, N};
    tg_tensor *out = tg__result(a->dtype, 2, shape);
    if (!out) return NULL;
    gemm(a->dtype, ta, tb, M, N, Ka, a, b, 0.0, out);
    const tg_tensor *in[2] = {a, b};
    tg_record *r = tg__record(TG_OP_MATMUL, out, 2, in);
    if (r) { r->k[0] = ta; r->k[1] = tb; }
    return out;
}

TG_OP(MATMUL, matmul, 2, IN0 | IN1) /* op(a)·op(b); k[0] = trans_a, k[1] = trans_b */
tg_tensor *tg_matmul(const tg_tensor *a, const tg_tensor *b) { return matmul("tg_matmul", a, b, 0, 0); }
tg_tensor *tg_matmul_nt(const tg_tensor *a, const tg_tensor *b) { return matmul("tg_matmul_nt", a, b, 0, 1); }
tg_tensor *tg_matmul_tn(const tg_tensor *a, const tg_tensor *b) { return matmul("tg_matmul_tn", a, b, 1, 0); }

/* C = A·B:   dA += G·Bᵀ,  dB += Aᵀ·G
 * C = A·Bᵀ:  dA += G·B,   dB += Gᵀ·A
 * C = Aᵀ·B:  dA += B·Gᵀ,  dB += A·G   */
void tg__matmul_backward(tg_record *r, const tg_tensor *g) {
    const tg_tensor *A = r->in[0], *B = r->in[1];
    int ta = (int)r->k[0], tb = (int)r->k[1];
    int64_t M = g->shape[0], N = g->shape[1], K = ta ? A->shape[0] : A->shape[1];
    /* a new gradient buffer is written by the GEMM (beta 0) instead of zeroed and added to */
    bool sA, sB;
    tg_tensor *gA = tg__grad_buf_assign(r->in[0], &sA);
    if (gA) {
        if (!ta) gemm(g->dtype, 0, !tb, M, K, N, g, B, sA ? 0.0 : 1.0, gA);   /* [M,K] */
        else gemm(g->dtype, tb, 1, K, M, N, B, g, sA ? 0.0 : 1.0, gA);        /* [K,M] = B·Gᵀ (B [K,N]) */
    }
    tg_tensor *gB = tg__grad_buf_assign(r->in[1], &sB); /* after gA: a·a adds to what gA stored */
    if (gB) {
        if (!tb) gemm(g->dtype, !ta, 0, K, N, M, A, g, sB ? 0.0 : 1.0, gB);   /* [K,N] */
        else gemm(g->dtype, 1, ta, N, K, M, g, A, sB ? 0.0 : 1.0, gB);        /* [N,K] = Gᵀ·A */
    }
}

void tg__linear_into(const tg_tensor *x, const tg_tensor *W, const tg_tensor *b, const tg_tensor *c, int64_t R,
                     tg_tensor *out) {
    int64_t I = W->shape[1], O = W->shape[0];
    /* the bias (and c) applied as the GEMM stores its tiles, not in extra passes over out */
    const void *Wp = packed_weight(W, 1, R, O, I);
    if (x->dtype == TG_F32)
        tg_gemm_linear_f32(0, 1, R, O, I, TG_PTR(x, float), I, TG_PTR(W, float), I, Wp, b ? TG_PTR(b, float) : NULL,
                           c ? TG_PTR(c, float) : NULL, TG_PTR(out, float), O);
    else
        tg_gemm_linear_f64(0, 1, R, O, I, TG_PTR(x, double), I, TG_PTR(W, double), I, Wp,
                           b ? TG_PTR(b, double) : NULL, c ? TG_PTR(c, double) : NULL, TG_PTR(out, double), O);
}

/* tg_linear (c NULL) and tg_linear_add: out = [c +] x·Wᵀ + b */
static tg_tensor *linear_impl(const char *fn, const tg_tensor *x, const tg_tensor *W, const tg_tensor *b,
                              const tg_tensor *c, bool add) {
    if (!tg__check(fn, "x", x) || !tg__check(fn, "W", W)) return NULL;
    if (add && !tg__check(fn, "c", c)) return NULL;
    if (!b && tg_error_pending()) return NULL; /* a NULL bias from a failed op, not "no bias" */
    if (b && !tg__check(fn, "b", b)) return NULL;
    char s1[128], s2[128], s3[128];
    if (W->ndim != 2 || x->ndim < 1) {
        tg_error(fn, "x %s, W %s: W must be 2-D [O,I] and x at least 1-D", tg_shape_str(x, s1, sizeof s1),
                 tg_shape_str(W, s2, sizeof s2));
        return NULL;
    }
    if (!tg__same_dtype(fn, x, W) || (b && !tg__same_dtype(fn, x, b)) || (add && !tg__same_dtype(fn, x, c))) return NULL;
    int64_t I = x->shape[x->ndim - 1], O = W->shape[0];
    if (W->shape[1] != I) {
        tg_error(fn, "x %s · W %sᵀ: inner dimensions differ (%lld vs %lld)", tg_shape_str(x, s1, sizeof s1),
                 tg_shape_str(W, s2, sizeof s2), (long long)I, (long long)W->shape[1]);
        return NULL;
    }
    if (b && (b->ndim != 1 || b->shape[0] != O)) {
        tg_error(fn, "x %s, W %s, b %s: bias must be [%lld]", tg_shape_str(x, s1, sizeof s1),
                 tg_shape_str(W, s2, sizeof s2), tg_shape_str(b, s3, sizeof s3), (long long)O);
        return NULL;
    }
    int64_t shape[TG_MAX_DIMS];
    memcpy(shape, x->shape, sizeof shape);
    shape[x->ndim - 1] = O;
    bool c_ok = !add || c->ndim == x->ndim;
    for (int d = 0; add && c_ok && d < x->ndim; d++) c_ok = c->shape[d] == shape[d];
    if (!c_ok) {
        char s4[128];
        tg_error(fn, "x %s · W %sᵀ is %s, c %s: c must have the shape of the result",
                 tg_shape_str(x, s1, sizeof s1), tg_shape_str(W, s2, sizeof s2),
                 tg__shape_fmt(x->ndim, shape, s3, sizeof s3), tg_shape_str(c, s4, sizeof s4));
        return NULL;
    }
    int64_t R = I ? x->numel / I : 0;
    if (!I) { R = 1; for (int d = 0; d < x->ndim - 1; d++) R *= x->shape[d]; }
    tg_tensor *out = tg__result(x->dtype, x->ndim, shape);
    if (!out) return NULL;
    /* out = c + (b + x·Wᵀ) in one GEMM (tensor/gemm.h, tg_gemm_linear): the rounding of tg_add(c,
     * tg_linear(x, W, b)), so the fused op gives bit-identical results */
    tg__linear_into(x, W, b, add ? c : NULL, R, out);
    if (add) {
        const tg_tensor *in[4] = {x, W, c, b};
        tg__record(TG_OP_LINEAR_ADD, out, b ? 4 : 3, in);
    } else {
        const tg_tensor *in[3] = {x, W, b};
        tg__record(TG_OP_LINEAR, out, b ? 3 : 2, in);
    }
    return out;
}

TG_OP(LINEAR, linear, -1, IN0 | IN1) /* x·Wᵀ + b; in = x, W[, b] */
tg_tensor *tg_linear(const tg_tensor *x, const tg_tensor *W, const tg_tensor *b) {
    return linear_impl("tg_linear", x, W, b, NULL, false);
}
TG_OP(LINEAR_ADD, linear_add, -1, IN0 | IN1) /* c + x·Wᵀ + b; in = x, W, c[, b] */
tg_tensor *tg_linear_add(const tg_tensor *x, const tg_tensor *W, const tg_tensor *b, const tg_tensor *c) {
    return linear_impl("tg_linear_add", x, W, b, c, true);
}

/* db += Σ_rows G (db = when assign) over the columns [o0, o1) */
typedef struct {
    const tg_tensor *g;
    tg_tensor *gb;
    int64_t R, O;
    bool assign;
} bias_job;
static void bias_cols(void *p, int64_t o0, int64_t o1) {
    const bias_job *j = p;
    const int64_t R = j->R, O = j->O;
    TG_DISPATCH(j->g->dtype, {
        const T *pg = TG_PTR(j->g, T);
        T *d = TG_PTR(j->gb, T);
        int64_t r0 = 0;
        if (j->assign) {
            if (R == 0) memset(d + o0, 0, (size_t)(o1 - o0) * sizeof(T));
            else { memcpy(d + o0, pg + o0, (size_t)(o1 - o0) * sizeof(T)); r0 = 1; }
        }
        for (; r0 < R; r0++)
            for (int64_t o = o0; o < o1; o++) d[o] += pg[r0 * O + o];
    });
}

/* dx += G·W (gx: stored when sx), dW += Gᵀ·x, db += Σ_rows G for x, W and bias b (NULL: none) */
static void linear_grads_to(const tg_tensor *x, tg_tensor *W, tg_tensor *bias, const tg_tensor *g, tg_tensor *gx,
                            bool sx) {
    int64_t O = W->shape[0], I = W->shape[1], R = O ? g->numel / O : 0;
    if (!O) { R = 1; for (int d = 0; d < g->ndim - 1; d++) R *= g->shape[d]; }
    /* a new gradient buffer is written by the GEMM (beta 0) instead of zeroed and added to; each
     * buffer is fetched right before its use, so an input passed twice adds to what was stored */
    bool sW, sb;
    if (gx) gemm_w(g->dtype, 0, 0, R, I, O, g, W, sx ? 0.0 : 1.0, gx);
    if (tg__needs_grad(W) && !defer_weight_grad(W, g, x, R)) {
        tg_tensor *gW = tg__grad_buf_assign(W, &sW);
        if (gW) gemm(g->dtype, 1, 0, O, I, R, g, x, sW ? 0.0 : 1.0, gW);
    }
    tg_tensor *gb = tg__grad_buf_assign(bias, &sb);
    if (gb) {
        bias_job j = {g, gb, R, O, sb};
        /* columns on the pool's threads when there are many rows: each column is summed in the same
         * order on any thread */
        tg__pool_for(O, R > 0 ? (TG_POOL_MIN_BYTES / 4 + R - 1) / R : O, 16, bias_cols, &j);
    }
}

/* for the inputs x, W and bias b (NULL: none) of a linear record */
static void linear_grads(const tg_record *r, const tg_tensor *g, tg_tensor *bias) {
    bool sx;
    tg_tensor *gx = tg__grad_buf_assign(r->in[0], &sx);
    linear_grads_to(r->in[0], r->in[1], bias, g, gx, sx);
}

void tg__linear_grads_into(const tg_tensor *x, tg_tensor *W, tg_tensor *b, const tg_tensor *G, tg_tensor *dx,
                           bool assign) {
    linear_grads_to(x, W, b, G, dx, assign);
}

/* y = x·Wᵀ + b:  dx += G·W,  dW += Gᵀ·x,  db += Σ_rows G */
void tg__linear_backward(tg_record *r, const tg_tensor *g) { linear_grads(r, g, r->nin > 2 ? r->in[2] : NULL); }

/* y = c + x·Wᵀ + b: as linear, and dc += G. dc comes last: it may take G itself (tg__grad_share), after
 * which G must not be read as the gradient of the other inputs any more. */
void tg__linear_add_backward(tg_record *r, const tg_tensor *g) {
    linear_grads(r, g, r->nin > 3 ? r->in[3] : NULL);
    tg_tensor *c = r->in[2];
    if (tg__grad_share(r, c, g)) return;
    bool assign;
    tg_tensor *gc = tg__grad_buf_assign(c, &assign);
    if (!gc) return;
    if (assign) memcpy(tg__ptr(gc), tg__ptr(g), (size_t)g->numel * tg_itemsize(g->dtype));
    else tg_axpy_(gc, 1.0, g);
}
