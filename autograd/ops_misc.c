/* autograd/ops_misc.c - row gather / embedding lookup, dropout, row masks for padded sequences.
 * Dimension letters: V vocabulary rows, D row width, B batch rows. */
#include "autograd/ops_common.h"
#include "tensor/alloc.h"

#include <stdlib.h>

TG_OP(GATHER, gather_rows, 1, 0) /* rows of weight; idx = indices */
tg_tensor *tg_gather_rows(const tg_tensor *weight, int64_t n, const int64_t *index) {
    const char *fn = "tg_gather_rows";
    if (!tg__check(fn, "weight", weight)) return NULL;
    char s[128];
    if (weight->ndim != 2) { tg_error(fn, "weight %s must be 2-D [V,D]", tg_shape_str(weight, s, sizeof s)); return NULL; }
    if (n < 0 || (n > 0 && !index)) { tg_error(fn, "%lld indices at %p", (long long)n, (const void *)index); return NULL; }
    int64_t V = weight->shape[0], D = weight->shape[1];
    for (int64_t i = 0; i < n; i++)
        if (index[i] < 0 || index[i] >= V) {
            tg_error(fn, "weight %s: index[%lld] = %lld out of range [0,%lld)", tg_shape_str(weight, s, sizeof s),
                     (long long)i, (long long)index[i], (long long)V);
            return NULL;
        }
    int64_t shape[2] = {n, D};
    tg_tensor *out = tg__result(weight->dtype, 2, shape);
    if (!out) return NULL;
    size_t row = (size_t)D * tg_itemsize(weight->dtype);
    for (int64_t i = 0; i < n; i++) memcpy((char *)tg__ptr(out) + (size_t)i * row, (char *)tg__ptr(weight) + (size_t)index[i] * row, row);
    const tg_tensor *in[1] = {weight};
    tg_record *r = tg__record(TG_OP_GATHER, out, 1, in);
    if (r) {
        r->idx = tg_malloc((size_t)(n ? n : 1) * sizeof *r->idx);
        if (!r->idx) { tg_error(fn, "out of memory saving %lld indices", (long long)n); return NULL; }
        if (n) memcpy(r->idx, index, (size_t)n * sizeof *r->idx);
        r->k[0] = n;
    }
    return out;
}
/* dW[index[i]] += g[i]  (scatter-add: repeated indices accumulate) */
void tg__gather_rows_backward(tg_record *r, const tg_tensor *g) {
    tg_tensor *gw = tg__grad_buf(r->in[0]);
    if (!gw) return;
    int64_t n = r->k[0], D = gw->shape[1];
    TG_DISPATCH(g->dtype, {
        const T *pg = TG_PTR(g, T);
        T *d = TG_PTR(gw, T);
        for (int64_t i = 0; i < n; i++)
            for (int64_t j = 0; j < D; j++) d[r->idx[i] * D + j] += pg[i * D + j];
    });
}

tg_tensor *tg_embedding(const tg_tensor *weight, int ndim, const int64_t *shape, const int64_t *index) {
    if (!tg__check("tg_embedding", "weight", weight)) return NULL;
    if (ndim < 0 || ndim >= TG_MAX_DIMS || (ndim && !shape)) {
        tg_error("tg_embedding", "index shape of %d dimensions (0..%d)", ndim, TG_MAX_DIMS - 1);
        return NULL;
    }
    if (!tg__check_shape("tg_embedding", ndim, shape)) return NULL;
    int64_t n = 1, full[TG_MAX_DIMS];
    for (int d = 0; d < ndim; d++) { n *= shape[d]; full[d] = shape[d]; }
    tg_tensor *rows = tg_gather_rows(weight, n, index);
    if (!rows || weight->ndim != 2) return NULL;
    full[ndim] = weight->shape[1];
    return tg_reshape(rows, ndim + 1, full);
}

TG_OP(DROPOUT, dropout, 1, 0) /* x ⊙ mask / (1-p); aux = scaled mask */
tg_tensor *tg_dropout(const tg_tensor *x, double p, bool train, tg_rng *rng) {
    const char *fn = "tg_dropout";
    if (!tg__check(fn, "x", x)) return NULL;
    if (!(p >= 0 && p < 1)) { tg_error(fn, "probability %g outside [0, 1)", p); return NULL; }
    if (!train || p == 0) return (tg_tensor *)x; /* identity: no copy, no record */
    if (!rng) rng = tg_default_rng();
    tg_tensor *out = tg__result(x->dtype, x->ndim, x->shape);
    tg_tensor *mask = out ? tg__alloc(x->dtype, x->ndim, x->shape) : NULL; /* 0 or 1/(1-p) */
    if (!mask) return NULL;
    double keep = 1.0 / (1.0 - p);
    TG_DISPATCH(x->dtype, {
        const T *px = TG_PTR(x, T);
        T *po = TG_PTR(out, T), *pm = TG_PTR(mask, T);
        for (int64_t i = 0; i < x->numel; i++) {
            pm[i] = tg_rng_uniform(rng) < p ? (T)0 : (T)keep;
            po[i] = px[i] * pm[i];
        }
    });
    const tg_tensor *in[1] = {x};
    tg_record *r = tg__record(TG_OP_DROPOUT, out, 1, in);
    if (r) r->aux = mask;
    else tg_release(mask);
    return out;
}
/* dx += g ⊙ mask / (1-p) */
void tg__dropout_backward(tg_record *r, const tg_tensor *g) {
    tg_tensor *gx = tg__grad_buf(r->in[0]);
    if (!gx) return;
    TG_DISPATCH(g->dtype, {
        const T *pg = TG_PTR(g, T), *pm = TG_PTR(r->aux, T);
        T *d = TG_PTR(gx, T);
        for (int64_t i = 0; i < g->numel; i++) d[i] += pg[i] * pm[i];
    });
}

TG_OP(MASK_ROWS, mask_rows, 1, 0) /* x[b] ⊙ mask[b]; aux = mask */
tg_tensor *tg_mask_rows(const tg_tensor *x, const tg_tensor *mask) {
    const char *fn = "tg_mask_rows";
    if (!tg__check(fn, "x", x) || !tg__check(fn, "mask", mask)) return NULL;
    char s1[128], s2[128];
    if (x->ndim < 1 || mask->ndim != 1 || mask->shape[0] != x->shape[0]) {
        tg_error(fn, "x %s, mask %s: mask must be [%lld] (one entry per row of x)", tg_shape_str(x, s1, sizeof s1),
                 tg_shape_str(mask, s2, sizeof s2), x->ndim ? (long long)x->shape[0] : 0LL);
        return NULL;
    }
    if (!tg__same_dtype(fn, x, mask)) return NULL;
    tg_tensor *out = tg__result(x->dtype, x->ndim, x->shape);
    tg_tensor *m = out ? tg_copy(mask) : NULL; /* saved by value: later edits of mask cannot leak in */
    if (!m) return NULL;
    int64_t B = x->shape[0], inner = B ? x->numel / B : 0;
    TG_DISPATCH(x->dtype, {
        const T *px = TG_PTR(x, T), *pm = TG_PTR(m, T);
        T *po = TG_PTR(out, T);
        for (int64_t b = 0; b < B; b++)
            for (int64_t j = 0; j < inner; j++) po[b * inner + j] = px[b * inner + j] * pm[b];
    });
    const tg_tensor *in[1] = {x};
    tg_record *r = tg__record(TG_OP_MASK_ROWS, out, 1, in);
    if (r) r->aux = m;
    else tg_release(m);
    return out;
}
/* dx[b] += g[b] mask[b] */
void tg__mask_rows_backward(tg_record *r, const tg_tensor *g) {
    tg_tensor *gx = tg__grad_buf(r->in[0]);
    if (!gx) return;
    int64_t B = g->shape[0], inner = B ? g->numel / B : 0;
    TG_DISPATCH(g->dtype, {
        const T *pg = TG_PTR(g, T), *pm = TG_PTR(r->aux, T);
        T *d = TG_PTR(gx, T);
        for (int64_t b = 0; b < B; b++)
            for (int64_t j = 0; j < inner; j++) d[b * inner + j] += pg[b * inner + j] * pm[b];
    });
}
