/* autograd/ops_common.h - helpers shared by the ops_*.c files (internal). */
#ifndef TG_OPS_COMMON_H
#define TG_OPS_COMMON_H
#include "autograd/tape_internal.h"

#include <string.h>

static inline bool tg__same_dtype(const char *fn, const tg_tensor *a, const tg_tensor *b) {
    if (a->dtype == b->dtype) return true;
    char s1[128], s2[128];
    tg_error(fn, "%s %s and %s %s: dtypes differ", tg_shape_str(a, s1, sizeof s1), tg_dtype_name(a->dtype),
             tg_shape_str(b, s2, sizeof s2), tg_dtype_name(b->dtype));
    return false;
}

/* Normalises a possibly negative axis; reports and returns -1 when out of range. */
static inline int tg__axis(const char *fn, const tg_tensor *x, int axis) {
    int a = axis < 0 ? axis + x->ndim : axis;
    if (a < 0 || a >= x->ndim) {
        char s[128];
        tg_error(fn, "%s: axis %d out of range for %d dimensions", tg_shape_str(x, s, sizeof s), axis, x->ndim);
        return -1;
    }
    return a;
}

/* outer x axis x inner decomposition of a contiguous shape around one axis */
static inline void tg__split_axis(const tg_tensor *x, int axis, int64_t *outer, int64_t *n, int64_t *inner) {
    *outer = 1;
    *inner = 1;
    for (int d = 0; d < axis; d++) *outer *= x->shape[d];
    for (int d = axis + 1; d < x->ndim; d++) *inner *= x->shape[d];
    *n = x->shape[axis];
}
/* tg_gates' activations (autograd/ops_elementwise.c), shared with tg_ln_gates: the letters of acts (s σ,
 * t tanh, r relu, i identity) as 2-bit codes, gate k at bits 2k; returns G, or 0 after reporting under fn */
int tg__gate_codes(const char *fn, const char *acts, int64_t *codes);
static inline int tg__gate_code(int64_t codes, int k) { return (int)((codes >> (2 * k)) & 3); }
/* y = act(x) over n elements of dtype dt; d (+)= gy · act'(y) (stored when assign) */
void tg__gate_act(tg_dtype dt, int code, void *y, const void *x, int64_t n);
void tg__gate_act_backward(tg_dtype dt, int code, void *d, const void *gy, const void *y, int64_t n, bool assign);
#endif
