/* autograd/ops_matrix.c - matrix products and the fused linear layer.
 * Dimension letters: M rows of the result, N columns, K the inner dimension; for linear,
 * R = rows of x (all leading dimensions flattened), I inputs, O outputs. */
#include "autograd/ops_common.h"
#include "tensor/gemm.h"

static void gemm(tg_dtype dt, int ta, int tb, int64_t M, int64_t N, int64_t K, const tg_tensor *A,
                 const tg_tensor *B, double beta, tg_tensor *C) {
    int64_t lda = ta ? M : K, ldb = tb ? K : N;
    if (dt == TG_F32)
        tg_gemm_f32(ta, tb, M, N, K, TG_PTR(A, float), lda, TG_PTR(B, float), ldb, (float)beta, TG_PTR(C, float), N);
    else
        tg_gemm_f64(ta, tb, M, N, K, TG_PTR(A, double), lda, TG_PTR(B, double), ldb, beta, TG_PTR(C, double), N);
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
    tg_tensor *gA = tg__grad_buf(r->in[0]), *gB = tg__grad_buf(r->in[1]);
    if (gA) {
        if (!ta) gemm(g->dtype, 0, !tb, M, K, N, g, B, 1.0, gA);   /* [M,K] */
        else gemm(g->dtype, tb, 1, K, M, N, B, g, 1.0, gA);        /* [K,M] = B·Gᵀ (B [K,N]) */
    }
    if (gB) {
        if (!tb) gemm(g->dtype, !ta, 0, K, N, M, A, g, 1.0, gB);   /* [K,N] */
        else gemm(g->dtype, 1, ta, N, K, M, g, A, 1.0, gB);        /* [N,K] = Gᵀ·A */
    }
}

tg_tensor *tg_linear(const tg_tensor *x, const tg_tensor *W, const tg_tensor *b) {
    const char *fn = "tg_linear";
    if (!tg__check(fn, "x", x) || !tg__check(fn, "W", W)) return NULL;
    if (!b && tg_error_pending()) return NULL; /* a NULL bias from a failed op, not "no bias" */
    if (b && !tg__check(fn, "b", b)) return NULL;
    char s1[128], s2[128], s3[128];
    if (W->ndim != 2 || x->ndim < 1) {
        tg_error(fn, "x %s, W %s: W must be 2-D [O,I] and x at least 1-D", tg_shape_str(x, s1, sizeof s1),
                 tg_shape_str(W, s2, sizeof s2));
        return NULL;
    }
    if (!tg__same_dtype(fn, x, W) || (b && !tg__same_dtype(fn, x, b))) return NULL;
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
    int64_t R = I ? x->numel / I : 0;
    if (!I) { R = 1; for (int d = 0; d < x->ndim - 1; d++) R *= x->shape[d]; }
    tg_tensor *out = tg__result(x->dtype, x->ndim, shape);
    if (!out) return NULL;
    /* out = broadcast(b), then out += x·Wᵀ */
    TG_DISPATCH(x->dtype, {
        T *po = TG_PTR(out, T);
        if (b) {
            const T *pb = TG_PTR(b, T);
            for (int64_t r0 = 0; r0 < R; r0++) memcpy(po + r0 * O, pb, (size_t)O * sizeof(T));
        }
    });
    gemm(x->dtype, 0, 1, R, O, I, x, W, b ? 1.0 : 0.0, out);
    const tg_tensor *in[3] = {x, W, b};
    tg__record(TG_OP_LINEAR, out, b ? 3 : 2, in);
    return out;
}

/* y = x·Wᵀ + b:  dx += G·W,  dW += Gᵀ·x,  db += Σ_rows G */
void tg__linear_backward(tg_record *r, const tg_tensor *g) {
    const tg_tensor *x = r->in[0], *W = r->in[1];
    int64_t O = W->shape[0], I = W->shape[1], R = O ? g->numel / O : 0;
    if (!O) { R = 1; for (int d = 0; d < g->ndim - 1; d++) R *= g->shape[d]; }
    tg_tensor *gx = tg__grad_buf(r->in[0]), *gW = tg__grad_buf(r->in[1]);
    tg_tensor *gb = r->nin > 2 ? tg__grad_buf(r->in[2]) : NULL;
    if (gx) gemm(g->dtype, 0, 0, R, I, O, g, W, 1.0, gx);
    if (gW) gemm(g->dtype, 1, 0, O, I, R, g, x, 1.0, gW);
    if (gb) {
        TG_DISPATCH(g->dtype, {
            const T *pg = TG_PTR(g, T);
            T *d = TG_PTR(gb, T);
            for (int64_t r0 = 0; r0 < R; r0++)
                for (int64_t o = 0; o < O; o++) d[o] += pg[r0 * O + o];
        });
    }
}
