/* tensor/velem.c - the plain ops' elementwise arithmetic (see velem.h: why, and why every target
 * gives the same bits). Compiled once per CPU target like gemm.c, vmath.c, steps.c, updates.c. */
#include "tensor/velem.h"

/* One loop per operation; in place (y == a) gets its own copy so that the compiler sees the exact
 * overlap instead of one a run-time alias check would send to scalar code. */
#define DEFINE_VBIN(T, SFX)                                                                              \
    static inline void vbin_##SFX(int op, T *restrict y, const T *restrict a, const T *restrict b, int64_t n) { \
        switch (op) {                                                                                    \
        case TG_VADD: for (int64_t i = 0; i < n; i++) y[i] = a[i] + b[i]; break;                         \
        case TG_VSUB: for (int64_t i = 0; i < n; i++) y[i] = a[i] - b[i]; break;                         \
        case TG_VMUL: for (int64_t i = 0; i < n; i++) y[i] = a[i] * b[i]; break;                         \
        default: for (int64_t i = 0; i < n; i++) y[i] = a[i] / b[i]; break;                              \
        }                                                                                                \
    }                                                                                                    \
    static inline void vbin_inplace_##SFX(int op, T *restrict y, const T *restrict b, int64_t n) {      \
        switch (op) {                                                                                    \
        case TG_VADD: for (int64_t i = 0; i < n; i++) y[i] = y[i] + b[i]; break;                         \
        case TG_VSUB: for (int64_t i = 0; i < n; i++) y[i] = y[i] - b[i]; break;                         \
        case TG_VMUL: for (int64_t i = 0; i < n; i++) y[i] = y[i] * b[i]; break;                         \
        default: for (int64_t i = 0; i < n; i++) y[i] = y[i] / b[i]; break;                              \
        }                                                                                                \
    }                                                                                                    \
    void tg_vbin_##SFX(int op, T *y, const T *a, const T *b, int64_t n) {                                \
        if (y == a) vbin_inplace_##SFX(op, y, b, n);                                                     \
        else vbin_##SFX(op, y, a, b, n);                                                                 \
    }                                                                                                    \
    void tg_vmul_acc_##SFX(T *restrict y, const T *restrict a, const T *restrict b, int64_t n) {         \
        for (int64_t i = 0; i < n; i++) y[i] = y[i] + a[i] * b[i];                                       \
    }

DEFINE_VBIN(float, f32)
DEFINE_VBIN(double, f64)
