/* autograd/ops_shape.c - transpose, reshape, select, slice, chunk, concat, stack.
 * Every axis is decomposed as outer x n x inner over contiguous memory, so one copy loop serves all. */
#include "autograd/ops_common.h"
#include "tensor/pool.h"

#include <stdlib.h>

/* Copies a block of `n x inner` elements from each of `outer` rows: dst row stride dn, src row stride sn. */
typedef struct {
    tg_dtype dt;
    void *dst;
    const void *src;
    int64_t dst_stride, src_stride, outer, len;
    bool accumulate;
} copy_job;

/* rows [o0, o1) of the job, or with one row, its elements [o0, o1) */
static void copy_range(void *p, int64_t o0, int64_t o1) {
    const copy_job *c = p;
    TG_DISPATCH(c->dt, {
        T *d = c->dst;
        const T *s = c->src;
        int64_t j0 = 0, len = c->len;
        if (c->outer == 1) { j0 = o0; len = o1; o0 = 0; o1 = 1; }
        for (int64_t o = o0; o < o1; o++) {
            T *restrict dr = d + o * c->dst_stride;
            const T *restrict sr = s + o * c->src_stride;
            if (c->accumulate)
                for (int64_t j = j0; j < len; j++) dr[j] += sr[j];
            else
                memcpy(dr + j0, sr + j0, (size_t)(len - j0) * sizeof(T));
        }
    });
}

/* Large copies (the stack of a sequence's outputs and its backward, the per-step gradient adds of a
 * select) run on the pool's threads: every element is still written once, by the same operation. */
static void copy_rows(tg_dtype dt, void *dst, int64_t dst_stride, const void *src, int64_t src_stride,
                      int64_t outer, int64_t len, bool accumulate) {
    copy_job c = {dt, dst, src, dst_stride, src_stride, outer, len, accumulate};
    const int64_t bytes = outer * len * (int64_t)tg_itemsize(dt);
    if (outer == 1) tg__pool_for(len, TG_POOL_MIN_BYTES / (int64_t)tg_itemsize(dt), 16, copy_range, &c);
    else if (bytes >= 2 * TG_POOL_MIN_BYTES) tg__pool_for(outer, outer * TG_POOL_MIN_BYTES / bytes + 1, 1, copy_range, &c);
    else copy_range(&c, 0, outer);
}

/* ---- transpose ---------------------------------------------------------------------------------- */

static void transpose_kernel(tg_dtype dt, void *dst, const void *src, int ndim, const int64_t *shape, int a0,
                             int a1, bool accumulate) {
    /* dst has shape with a0/a1 swapped; walk src in order and scatter */
    int64_t sstride[TG_MAX_DIMS] = {0}, dshape[TG_MAX_DIMS] = {0}, dstride[TG_MAX_DIMS] = {0};
    int64_t n = 1;
    for (int d = ndim - 1; d >= 0; d--) { sstride[d] = n; n *= shape[d]; }
    for (int d = 0; d < ndim; d++) dshape[d] = shape[d];
    dshape[a0] = shape[a1];
    dshape[a1] = shape[a0];
    int64_t m = 1;
    for (int d = ndim - 1; d >= 0; d--) { dstride[d] = m; m *= dshape[d]; }
    int64_t map[TG_MAX_DIMS]; /* dst stride for each src axis */
    for (int d = 0; d < ndim; d++) map[d] = dstride[d];
    map[a0] = dstride[a1];
    map[a1] = dstride[a0];
    (void)sstride;
    TG_DISPATCH(dt, {
        T *dp = dst;
        const T *sp = src;
        int64_t ctr[TG_MAX_DIMS] = {0}, off = 0;
        for (int64_t i = 0; i < n; i++) {
            if (accumulate) dp[off] += sp[i];
            else dp[off] = sp[i];
            for (int d = ndim - 1; d >= 0; d--) {
                ctr[d]++;
                off += map[d];
                if (ctr[d] < shape[d]) break;
                off -= map[d] * shape[d];
                ctr[d] = 0;
            }
        }
    });
}

TG_OP(TRANSPOSE, transpose, 1, 0) /* swap axes k[0], k[1] */
tg_tensor *tg_transpose(const tg_tensor *x, int axis0, int axis1) {
    const char *fn = "tg_transpose";
    if (!tg__check(fn, "x", x)) return NULL;
    int a0 = tg__axis(fn, x, axis0), a1 = a0 < 0 ? -1 : tg__axis(fn, x, axis1);
    if (a0 < 0 || a1 < 0) return NULL;
    int64_t shape[TG_MAX_DIMS];
    memcpy(shape, x->shape, sizeof shape);
    shape[a0] = x->shape[a1];
    shape[a1] = x->shape[a0];
    tg_tensor *out = tg__result(x->dtype, x->ndim, shape);
    if (!out) return NULL;
    transpose_kernel(x->dtype, tg__ptr(out), tg__ptr(x), x->ndim, x->shape, a0, a1, false);
    const tg_tensor *in[1] = {x};
    tg_record *r = tg__record(TG_OP_TRANSPOSE, out, 1, in);
    if (r) { r->k[0] = a0; r->k[1] = a1; }
    return out;
}
/* dx += transpose(g) */
void tg__transpose_backward(tg_record *r, const tg_tensor *g) {
    bool assign; /* every element of dx receives one value: a new buffer is stored into, not zeroed */
    tg_tensor *gx = tg__grad_buf_assign(r->in[0], &assign);
    if (gx) transpose_kernel(g->dtype, tg__ptr(gx), tg__ptr(g), g->ndim, g->shape, (int)r->k[0], (int)r->k[1], !assign);
}

/* ---- reshape and select: views ------------------------------------------------------------------ */

TG_OP(RESHAPE, reshape, 1, 0) /* same data, new shape (a view) */
tg_tensor *tg_reshape(const tg_tensor *x, int ndim, const int64_t *shape) {
    if (!tg__check("tg_reshape", "x", x)) return NULL;
    tg_tensor *out = tg_reshape_view(x, ndim, shape);
    if (!out) return NULL;
    tg__autorelease(out);
    const tg_tensor *in[1] = {x};
    tg__record(TG_OP_RESHAPE, out, 1, in);
    return out;
}
/* dx += g (same elements, other shape) */
void tg__reshape_backward(tg_record *r, const tg_tensor *g) {
    bool assign;
    tg_tensor *gx = tg__grad_buf_assign(r->in[0], &assign);
    if (gx) copy_rows(g->dtype, tg__ptr(gx), 0, tg__ptr(g), 0, 1, g->numel, !assign);
}

TG_OP(SELECT, select, 1, 0) /* x[k[0]] along axis 0 (a view) */
tg_tensor *tg_select(const tg_tensor *x, int64_t index) {
    if (!tg__check("tg_select", "x", x)) return NULL;
    if (x->ndim < 1 || index < 0 || index >= x->shape[0]) {
        char s[128];
        tg_error("tg_select", "%s: index %lld out of range on the first axis", tg_shape_str(x, s, sizeof s),
                 (long long)index);
        return NULL;
    }
    tg_tensor *out = tg_view_at(x, index);
    if (!out) return NULL;
    tg__autorelease(out);
    const tg_tensor *in[1] = {x};
    tg_record *r = tg__record(TG_OP_SELECT, out, 1, in);
    if (r) r->k[0] = index;
    return out;
}
/* dx[index] += g */
void tg__select_backward(tg_record *r, const tg_tensor *g) {
    tg_tensor *gx = tg__grad_buf(r->in[0]);
    if (!gx) return;
    size_t off = (size_t)(r->k[0] * g->numel) * tg_itemsize(g->dtype);
    copy_rows(g->dtype, (char *)tg__ptr(gx) + off, 0, tg__ptr(g), 0, 1, g->numel, true);
}

/* ---- slice, chunk ------------------------------------------------------------------------------- */

TG_OP(SLICE, slice, 1, 0) /* x[k[1]:k[2]] along axis k[0] */
tg_tensor *tg_slice(const tg_tensor *x, int axis, int64_t begin, int64_t end) {
    const char *fn = "tg_slice";
    if (!tg__check(fn, "x", x)) return NULL;
    int a = tg__axis(fn, x, axis);
    if (a < 0) return NULL;
    if (begin < 0 || end < begin || end > x->shape[a]) {
        char s[128];
        tg_error(fn, "%s: range [%lld,%lld) invalid on axis %d of size %lld", tg_shape_str(x, s, sizeof s),
                 (long long)begin, (long long)end, a, (long long)x->shape[a]);
        return NULL;
    }
    int64_t outer, n, inner;
    tg__split_axis(x, a, &outer, &n, &inner);
    int64_t shape[TG_MAX_DIMS];
    memcpy(shape, x->shape, sizeof shape);
    shape[a] = end - begin;
    tg_tensor *out = tg__result(x->dtype, x->ndim, shape);
    if (!out) return NULL;
    size_t isz = tg_itemsize(x->dtype);
    copy_rows(x->dtype, tg__ptr(out), (end - begin) * inner, (char *)tg__ptr(x) + (size_t)(begin * inner) * isz,
              n * inner, outer, (end - begin) * inner, false);
    const tg_tensor *in[1] = {x};
    tg_record *r = tg__record(TG_OP_SLICE, out, 1, in);
    if (r) { r->k[0] = a; r->k[1] = begin; r->k[2] = end; }
    return out;
}
/* dx[..., begin:end, ...] += g */
void tg__slice_backward(tg_record *r, const tg_tensor *g) {
    tg_tensor *gx = tg__grad_buf(r->in[0]);
    if (!gx) return;
    int64_t outer, n, inner, begin = r->k[1], end = r->k[2];
    tg__split_axis(gx, (int)r->k[0], &outer, &n, &inner);
    size_t isz = tg_itemsize(g->dtype);
    copy_rows(g->dtype, (char *)tg__ptr(gx) + (size_t)(begin * inner) * isz, n * inner, tg__ptr(g),
              (end - begin) * inner, outer, (end - begin) * inner, true);
}

int tg_chunk(const tg_tensor *x, int axis, int n, tg_tensor **out) {
    const char *fn = "tg_chunk";
    if (!out) { tg_error(fn, "out is NULL"); return -1; }
    for (int i = 0; i < n; i++) out[i] = NULL;
    if (!tg__check(fn, "x", x)) return -1;
    int a = tg__axis(fn, x, axis);
    if (a < 0) return -1;
    if (n <= 0 || x->shape[a] % n) {
        char s[128];
        tg_error(fn, "%s: axis %d of size %lld does not split into %d equal parts", tg_shape_str(x, s, sizeof s), a,
                 (long long)x->shape[a], n);
        return -1;
    }
    int64_t part = x->shape[a] / n;
    for (int i = 0; i < n; i++)
        if (!(out[i] = tg_slice(x, a, i * part, (i + 1) * part))) return -1;
    return 0;
}

/* ---- concat, stack ------------------------------------------------------------------------------ */

static bool check_list(const char *fn, int n, tg_tensor *const *xs) {
    if (n <= 0 || !xs) { tg_error(fn, "needs at least one tensor (n = %d)", n); return false; }
    for (int i = 0; i < n; i++) {
        char nm[16];
        snprintf(nm, sizeof nm, "%d", i);
        if (!tg__check(fn, nm, xs[i])) return false;
        if (!tg__same_dtype(fn, xs[0], xs[i])) return false;
    }
    return true;
}

TG_OP(CONCAT, concat, -1, 0) /* along axis k[0] */
tg_tensor *tg_concat(int n, tg_tensor *const *xs, int axis) {
    const char *fn = "tg_concat";
    if (!check_list(fn, n, xs)) return NULL;
    int a = tg__axis(fn, xs[0], axis);
    if (a < 0) return NULL;
    int64_t shape[TG_MAX_DIMS];
    memcpy(shape, xs[0]->shape, sizeof shape);
    shape[a] = 0;
    for (int i = 0; i < n; i++) {
        bool ok = xs[i]->ndim == xs[0]->ndim;
        for (int d = 0; ok && d < xs[0]->ndim; d++) ok = d == a || xs[i]->shape[d] == xs[0]->shape[d];
        if (!ok) {
            char s1[128], s2[128];
            tg_error(fn, "tensor 0 %s and tensor %d %s differ outside axis %d", tg_shape_str(xs[0], s1, sizeof s1), i,
                     tg_shape_str(xs[i], s2, sizeof s2), a);
            return NULL;
        }
        shape[a] += xs[i]->shape[a];
    }
    tg_tensor *out = tg__result(xs[0]->dtype, xs[0]->ndim, shape);
    if (!out) return NULL;
    int64_t outer, total, inner;
    tg__split_axis(out, a, &outer, &total, &inner);
    size_t isz = tg_itemsize(out->dtype);
    int64_t at = 0;
    for (int i = 0; i < n; i++) {
        int64_t w = xs[i]->shape[a] * inner;
        copy_rows(out->dtype, (char *)tg__ptr(out) + (size_t)at * isz, total * inner, tg__ptr(xs[i]), w, outer, w, false);
        at += w;
    }
    tg_record *r = tg__record(TG_OP_CONCAT, out, n, (const tg_tensor *const *)xs);
    if (r) r->k[0] = a;
    return out;
}
/* dx_i += g[..., offset_i : offset_i + n_i, ...] */
void tg__concat_backward(tg_record *r, const tg_tensor *g) {
    int a = (int)r->k[0];
    int64_t outer, total, inner;
    tg__split_axis(g, a, &outer, &total, &inner);
    size_t isz = tg_itemsize(g->dtype);
    int64_t at = 0;
    for (int i = 0; i < r->nin; i++) {
        int64_t w = r->in[i]->shape[a] * inner;
        bool assign; /* input i's block covers all of dx_i: a new buffer is copied into */
        tg_tensor *gx = tg__grad_buf_assign(r->in[i], &assign);
        if (gx) copy_rows(g->dtype, tg__ptr(gx), w, (const char *)tg__ptr(g) + (size_t)at * isz, total * inner, outer, w, !assign);
        at += w;
    }
}

/* The copies of a stack and of its backward: input i is the block [i·m, (i+1)·m) of the stacked tensor. */
typedef struct {
    tg_dtype dt;
    char *big;                 /* the stacked tensor's data (forward: the result; backward: its gradient) */
    tg_tensor *const *xs;      /* forward: the inputs, else NULL */
    tg_tensor **gx;            /* backward: the inputs' gradient buffers (NULL: none) */
    const bool *acc;           /* backward: add (true) or store */
    int64_t m;                 /* elements per input */
} stack_job;

static void stack_range(void *p, int64_t i0, int64_t i1) {
    const stack_job *j = p;
    const size_t isz = tg_itemsize(j->dt);
    for (int64_t i = i0; i < i1; i++) {
        char *blk = j->big + (size_t)(i * j->m) * isz;
        copy_job c = {j->dt, blk, NULL, 0, 0, 1, j->m, false};
        if (j->xs) c.src = tg__ptr(j->xs[i]);
        else if (j->gx[i]) { c.dst = tg__ptr(j->gx[i]); c.src = blk; c.accumulate = j->acc[i]; }
        else continue;
        copy_range(&c, 0, j->m);
    }
}

/* all n inputs' copies, whole inputs on the pool's threads when there is enough to copy */
static void stack_copies(stack_job *j, int n) {
    const int64_t bytes = j->m * (int64_t)tg_itemsize(j->dt);
    if (n == 1 || bytes >= 2 * TG_POOL_MIN_BYTES) {
        for (int i = 0; i < n; i++) { /* large inputs: each copy splits itself */
            copy_job c = {j->dt, NULL, NULL, 0, 0, 1, j->m, false};
            char *blk = j->big + (size_t)(i * j->m) * tg_itemsize(j->dt);
            if (j->xs) { c.dst = blk; c.src = tg__ptr(j->xs[i]); }
            else if (j->gx[i]) { c.dst = tg__ptr(j->gx[i]); c.src = blk; c.accumulate = j->acc[i]; }
            else continue;
            copy_rows(c.dt, c.dst, 0, c.src, 0, 1, c.len, c.accumulate);
        }
        return;
    }
    tg__pool_for(n, bytes ? (TG_POOL_MIN_BYTES + bytes - 1) / bytes : n, 1, stack_range, j);
}

TG_OP(STACK, stack, -1, 0) /* along a new axis 0 */
tg_tensor *tg_stack(int n, tg_tensor *const *xs) {
    const char *fn = "tg_stack";
    if (!check_list(fn, n, xs)) return NULL;
    for (int i = 1; i < n; i++)
        if (!tg_same_shape(xs[0], xs[i])) {
            char s1[128], s2[128];
            tg_error(fn, "tensor 0 %s and tensor %d %s: shapes differ", tg_shape_str(xs[0], s1, sizeof s1), i,
                     tg_shape_str(xs[i], s2, sizeof s2));
            return NULL;
        }
    if (xs[0]->ndim >= TG_MAX_DIMS) { tg_error(fn, "result would exceed %d dimensions", TG_MAX_DIMS); return NULL; }
    int64_t shape[TG_MAX_DIMS];
    shape[0] = n;
    for (int d = 0; d < xs[0]->ndim; d++) shape[d + 1] = xs[0]->shape[d];
    tg_tensor *out = tg__result(xs[0]->dtype, xs[0]->ndim + 1, shape);
    if (!out) return NULL;
    stack_job j = {out->dtype, tg__ptr(out), xs, NULL, NULL, xs[0]->numel};
    stack_copies(&j, n);
    tg__record(TG_OP_STACK, out, n, (const tg_tensor *const *)xs);
    return out;
}
/* dx_i += g[i] */
void tg__stack_backward(tg_record *r, const tg_tensor *g) {
    enum { GROUP = 128 }; /* inputs per group: their buffers are fetched first, then copied together */
    const int64_t m = r->in[0]->numel;
    const size_t isz = tg_itemsize(g->dtype);
    tg_tensor *gx[GROUP];
    bool acc[GROUP];
    for (int i0 = 0; i0 < r->nin; i0 += GROUP) {
        const int k = r->nin - i0 < GROUP ? r->nin - i0 : GROUP;
        /* fetching a buffer does not depend on the copies, so fetching a group first and copying it
         * after keeps the order of the operations on every buffer */
        bool distinct = true;
        for (int i = 0; i < k; i++) {
            bool assign; /* g[i] is all of dx_i: a new buffer is copied into */
            gx[i] = tg__grad_buf_assign(r->in[i0 + i], &assign);
            acc[i] = !assign;
            /* an input stacked twice adds into one buffer twice: then the copies stay on one thread */
            for (int q = 0; gx[i] && acc[i] && distinct && q < i; q++) distinct = gx[q] != gx[i];
        }
        stack_job j = {g->dtype, (char *)tg__ptr(g) + (size_t)(i0 * m) * isz, NULL, gx, acc, m};
        if (distinct) stack_copies(&j, k);
        else stack_range(&j, 0, k);
    }
}
