/* autograd/ops_reduce.c - sum, mean, max along an axis, softmax, log_softmax.
 * An axis is viewed as outer x n x inner over contiguous memory. */
#include "autograd/ops_common.h"
#include "tensor/pool.h"
#include "tensor/vmath.h"

#include <tgmath.h>

static bool reduced_shape(const tg_tensor *x, int a, bool keepdim, int *ndim, int64_t *shape) {
    int k = 0;
    for (int d = 0; d < x->ndim; d++) {
        if (d == a) { if (keepdim) shape[k++] = 1; }
        else shape[k++] = x->shape[d];
    }
    *ndim = k;
    return true;
}

static tg_tensor *sum_impl(const char *fn, const tg_tensor *x, int axis, bool all, bool keepdim, bool mean) {
    if (!tg__check(fn, "x", x)) return NULL;
    int a = -1;
    int ndim = 0;
    int64_t shape[TG_MAX_DIMS];
    int64_t outer = 1, n = x->numel, inner = 1;
    if (!all) {
        if ((a = tg__axis(fn, x, axis)) < 0) return NULL;
        reduced_shape(x, a, keepdim, &ndim, shape);
        tg__split_axis(x, a, &outer, &n, &inner);
    }
    tg_tensor *out = tg__result(x->dtype, ndim, shape);
    if (!out) return NULL;
    double scale = mean ? (n ? 1.0 / (double)n : NAN) : 1.0;
    TG_DISPATCH(x->dtype, {
        const T *px = TG_PTR(x, T);
        T *po = TG_PTR(out, T);
        for (int64_t o = 0; o < outer; o++) {
            if (inner == 1) { /* a contiguous run (the whole tensor for sum/mean): blocked pairwise sum */
                po[o] = (T)(_Generic((T)0, float: tg_vsum_f32, default: tg_vsum_f64)(px + o * n, n) * (T)scale);
                continue;
            }
            for (int64_t j = 0; j < inner; j++) po[o * inner + j] = 0;
            for (int64_t i = 0; i < n; i++)
                for (int64_t j = 0; j < inner; j++) po[o * inner + j] += px[(o * n + i) * inner + j];
            for (int64_t j = 0; j < inner; j++) po[o * inner + j] *= (T)scale;
        }
    });
    const tg_tensor *in[1] = {x};
    tg_record *r = tg__record(TG_OP_SUM, out, 1, in);
    if (r) { r->k[0] = a; r->f[0] = scale; }
    return out;
}

TG_OP(SUM, sum, 1, 0) /* over axis k[0] (-1: all); f[0] = 1 or 1/n (mean) */
tg_tensor *tg_sum(const tg_tensor *x) { return sum_impl("tg_sum", x, 0, true, false, false); }
tg_tensor *tg_mean(const tg_tensor *x) { return sum_impl("tg_mean", x, 0, true, false, true); }
tg_tensor *tg_sum_axis(const tg_tensor *x, int axis, bool keepdim) {
    return sum_impl("tg_sum_axis", x, axis, false, keepdim, false);
}
tg_tensor *tg_mean_axis(const tg_tensor *x, int axis, bool keepdim) {
    return sum_impl("tg_mean_axis", x, axis, false, keepdim, true);
}
/* dx[i] = v or dx[i] += v over [i0, i1), v = scale g[0] (the backward of a sum of everything) */
typedef struct {
    tg_tensor *gx;
    const tg_tensor *g;
    double scale; /* the record's f[0] */
    bool assign;
} fill_job;
static void fill_range(void *p, int64_t i0, int64_t i1) {
    const fill_job *j = p;
    TG_DISPATCH(j->g->dtype, {
        const T v = (T)j->scale * TG_PTR(j->g, T)[0];
        T *restrict d = TG_PTR(j->gx, T);
        if (j->assign) for (int64_t i = i0; i < i1; i++) d[i] = v;
        else for (int64_t i = i0; i < i1; i++) d[i] += v;
    });
}

/* dx[o, i, j] += scale g[o, j]  (scale = 1 for sum, 1/n for mean) */
void tg__sum_backward(tg_record *r, const tg_tensor *g) {
    bool assign; /* every element of dx receives one value: a new buffer is stored into, not zeroed */
    tg_tensor *gx = tg__grad_buf_assign(r->in[0], &assign);
    if (!gx) return;
    int64_t outer = 1, n = gx->numel, inner = 1;
    if (r->k[0] >= 0) tg__split_axis(gx, (int)r->k[0], &outer, &n, &inner);
    if (outer == 1 && inner == 1 && tg_get_num_threads() > 1) { /* sum/mean of everything: on the pool */
        fill_job j = {gx, g, r->f[0], assign};
        tg__pool_for(n, (int64_t)1 << 15, 16, fill_range, &j);
        return;
    }
    TG_DISPATCH(g->dtype, {
        const T *pg = TG_PTR(g, T);
        T *d = TG_PTR(gx, T);
        const T s = (T)r->f[0];
        if (inner == 1) {
            /* a contiguous run per output (sum/mean of everything): one flat loop that vectorises;
             * the general loop below would run an inner loop of length 1 per element */
            for (int64_t o = 0; o < outer; o++) {
                const T v = s * pg[o];
                T *restrict dr = d + o * n;
                if (assign) for (int64_t i = 0; i < n; i++) dr[i] = v;
                else for (int64_t i = 0; i < n; i++) dr[i] += v;
            }
        } else {
            for (int64_t o = 0; o < outer; o++)
                for (int64_t i = 0; i < n; i++)
                    if (assign)
                        for (int64_t j = 0; j < inner; j++) d[(o * n + i) * inner + j] = s * pg[o * inner + j];
                    else
                        for (int64_t j = 0; j < inner; j++) d[(o * n + i) * inner + j] += s * pg[o * inner + j];
        }
    });
}

TG_OP(MAX, max_axis, 1, 0) /* over axis k[0]; aux = argmax (F64 indices) */
tg_tensor *tg_max_axis(const tg_tensor *x, int axis, bool keepdim) {
    const char *fn = "tg_max_axis";
    if (!tg__check(fn, "x", x)) return NULL;
    int a = tg__axis(fn, x, axis);
    if (a < 0) return NULL;
    if (x->shape[a] == 0) {
        char s[128];
        tg_error(fn, "%s: axis %d is empty, the maximum is undefined", tg_shape_str(x, s, sizeof s), a);
        return NULL;
    }
    int ndim;
    int64_t shape[TG_MAX_DIMS], outer, n, inner;
    reduced_shape(x, a, keepdim, &ndim, shape);
    tg__split_axis(x, a, &outer, &n, &inner);
    tg_tensor *out = tg__result(x->dtype, ndim, shape);
    tg_tensor *arg = out ? tg__alloc(TG_F64, ndim, shape) : NULL; /* index of the first maximum */
    if (!arg) return NULL;
    TG_DISPATCH(x->dtype, {
        const T *px = TG_PTR(x, T);
        T *po = TG_PTR(out, T);
        double *pa = TG_PTR(arg, double);
        for (int64_t o = 0; o < outer; o++)
            for (int64_t j = 0; j < inner; j++) {
                int64_t best = 0;
                T bv = px[o * n * inner + j];
                for (int64_t i = 1; i < n; i++) {
                    T v = px[(o * n + i) * inner + j];
                    if (v > bv || (isnan(v) && !isnan(bv))) { bv = v; best = i; }
                }
                po[o * inner + j] = bv;
                pa[o * inner + j] = (double)best;
            }
    });
    const tg_tensor *in[1] = {x};
    tg_record *r = tg__record(TG_OP_MAX, out, 1, in);
    if (r) { r->k[0] = a; r->aux = arg; }
    else tg_release(arg);
    return out;
}
/* dx[o, argmax, j] += g[o, j] */
void tg__max_axis_backward(tg_record *r, const tg_tensor *g) {
    tg_tensor *gx = tg__grad_buf(r->in[0]);
    if (!gx) return;
    int64_t outer, n, inner;
    tg__split_axis(gx, (int)r->k[0], &outer, &n, &inner);
    const double *pa = TG_PTR(r->aux, double);
    TG_DISPATCH(g->dtype, {
        const T *pg = TG_PTR(g, T);
        T *d = TG_PTR(gx, T);
        for (int64_t o = 0; o < outer; o++)
            for (int64_t j = 0; j < inner; j++) d[(o * n + (int64_t)pa[o * inner + j]) * inner + j] += pg[o * inner + j];
    });
}

/* softmax along an axis: y = e^(x - max) / Σ e^(x - max); log_softmax: y = x - max - log Σ e^(x - max).
 * Subtracting the maximum keeps every exponent <= 0, so inputs of ±1e4 are exact. */
static tg_tensor *softmax_impl(const char *fn, tg_op op, const tg_tensor *x, int axis) {
    if (!tg__check(fn, "x", x)) return NULL;
    int a = tg__axis(fn, x, axis);
    if (a < 0) return NULL;
    int64_t outer, n, inner;
    tg__split_axis(x, a, &outer, &n, &inner);
    tg_tensor *out = tg__result(x->dtype, x->ndim, x->shape);
    if (!out) return NULL;
    bool logsm = op == TG_OP_LOG_SOFTMAX;
    TG_DISPATCH(x->dtype, {
        const T *px = TG_PTR(x, T);
        T *po = TG_PTR(out, T);
        for (int64_t o = 0; o < outer; o++)
            for (int64_t j = 0; j < inner; j++) {
                const T *xr = px + o * n * inner + j;
                T *yr = po + o * n * inner + j;
                T m = xr[0];
                for (int64_t i = 1; i < n; i++) m = xr[i * inner] > m ? xr[i * inner] : m;
                T s = 0;
                for (int64_t i = 0; i < n; i++) s += exp(xr[i * inner] - m);
                if (logsm) {
                    T ls = log(s);
                    for (int64_t i = 0; i < n; i++) yr[i * inner] = xr[i * inner] - m - ls;
                } else {
                    for (int64_t i = 0; i < n; i++) yr[i * inner] = exp(xr[i * inner] - m) / s;
                }
            }
    });
    const tg_tensor *in[1] = {x};
    tg_record *r = tg__record(op, out, 1, in);
    if (r) r->k[0] = a;
    return out;
}

TG_OP(SOFTMAX, softmax, 1, OUT) /* along axis k[0] */
tg_tensor *tg_softmax(const tg_tensor *x, int axis) { return softmax_impl("tg_softmax", TG_OP_SOFTMAX, x, axis); }
/* dx += y ⊙ (g - Σ_axis g ⊙ y) */
void tg__softmax_backward(tg_record *r, const tg_tensor *g) {
    tg_tensor *gx = tg__grad_buf(r->in[0]);
    if (!gx) return;
    int64_t outer, n, inner;
    tg__split_axis(gx, (int)r->k[0], &outer, &n, &inner);
    TG_DISPATCH(g->dtype, {
        const T *pg = TG_PTR(g, T), *py = TG_PTR(r->out, T);
        T *d = TG_PTR(gx, T);
        for (int64_t o = 0; o < outer; o++)
            for (int64_t j = 0; j < inner; j++) {
                int64_t base = o * n * inner + j;
                T dot = 0;
                for (int64_t i = 0; i < n; i++) dot += pg[base + i * inner] * py[base + i * inner];
                for (int64_t i = 0; i < n; i++) d[base + i * inner] += py[base + i * inner] * (pg[base + i * inner] - dot);
            }
    });
}

TG_OP(LOG_SOFTMAX, log_softmax, 1, OUT) /* along axis k[0] */
tg_tensor *tg_log_softmax(const tg_tensor *x, int axis) {
    return softmax_impl("tg_log_softmax", TG_OP_LOG_SOFTMAX, x, axis);
}
/* dx += g - e^y Σ_axis g */
void tg__log_softmax_backward(tg_record *r, const tg_tensor *g) {
    tg_tensor *gx = tg__grad_buf(r->in[0]);
    if (!gx) return;
    int64_t outer, n, inner;
    tg__split_axis(gx, (int)r->k[0], &outer, &n, &inner);
    TG_DISPATCH(g->dtype, {
        const T *pg = TG_PTR(g, T), *py = TG_PTR(r->out, T);
        T *d = TG_PTR(gx, T);
        for (int64_t o = 0; o < outer; o++)
            for (int64_t j = 0; j < inner; j++) {
                int64_t base = o * n * inner + j;
                T s = 0;
                for (int64_t i = 0; i < n; i++) s += pg[base + i * inner];
                for (int64_t i = 0; i < n; i++) d[base + i * inner] += pg[base + i * inner] - exp(py[base + i * inner]) * s;
            }
    });
}
