/* tensor/steps.c - the pointwise part of a fused recurrent step and of its backward (see steps.h: why, and
 * why the results are those of the plain ops). Compiled once per CPU target like gemm.c and vmath.c.
 * No FMA contraction here (ISO C mode leaves -ffp-contract off): every a*b+c is a multiply and an add,
 * as in the plain ops. */
#include "tensor/steps.h"
#include "tensor/vmath.h"

#include <stddef.h>
#include <string.h>

#define TG_STEP_CHUNK 256 /* backward: tanh(c2) of this many elements at a time, on the stack */

#define DEFINE_LSTM_ROWS(T, SFX)                                                                           \
    void tg_lstm_fwd_rows_##SFX(T *A, T *restrict h2, T *restrict c2, T *restrict hp, const T *xp,           \
                                const T *restrict c, int64_t n, int64_t H) {                                 \
        const int64_t GH = 4 * H;                                                                            \
        for (int64_t k = 0; k < n * GH; k++) hp[k] = xp[k] + hp[k];                                          \
        for (int64_t r = 0; r < n; r++) {                                                                    \
            const T *restrict a = hp + r * GH;                                                               \
            T *restrict y = A + r * GH;                                                                      \
            tg_vsigmoid_##SFX(y, a, 2 * H);                                                                  \
            tg_vtanh_##SFX(y + 2 * H, a + 2 * H, H);                                                         \
            tg_vsigmoid_##SFX(y + 3 * H, a + 3 * H, H);                                                      \
            const T *restrict i = y, *restrict f = y + H, *restrict g = y + 2 * H;                           \
            T *restrict cr = c2 + r * H;                                                                     \
            const T *restrict cp = c + r * H;                                                                \
            for (int64_t j = 0; j < H; j++) cr[j] = f[j] * cp[j] + i[j] * g[j];                              \
        }                                                                                                    \
        tg_vtanh_##SFX(h2, c2, n * H);                                                                       \
        for (int64_t r = 0; r < n; r++) {                                                                    \
            const T *restrict o = A + r * GH + 3 * H;                                                        \
            T *restrict hr = h2 + r * H;                                                                     \
            for (int64_t j = 0; j < H; j++) hr[j] = o[j] * hr[j];                                            \
        }                                                                                                    \
    }                                                                                                        \
                                                                                                             \
    void tg_lstm_bwd_rows_##SFX(T *restrict D, T *restrict dc, int assign, const T *restrict A,              \
                                const T *restrict c, const T *restrict c2, const T *restrict gh,             \
                                const T *restrict gc, int64_t n, int64_t H) {                                \
        const int64_t GH = 4 * H;                                                                            \
        T tau[TG_STEP_CHUNK], dc2[TG_STEP_CHUNK];                                                            \
        for (int64_t r = 0; r < n; r++) {                                                                    \
            const T *restrict i = A + r * GH, *restrict f = i + H, *restrict g = i + 2 * H, *restrict o = i + 3 * H; \
            T *restrict di = D + r * GH, *restrict df = di + H, *restrict dg = di + 2 * H, *restrict dO = di + 3 * H; \
            for (int64_t j0 = 0; j0 < H; j0 += TG_STEP_CHUNK) {                                              \
                const int64_t m = H - j0 < TG_STEP_CHUNK ? H - j0 : TG_STEP_CHUNK, e = r * H + j0;           \
                const T *restrict gh_ = gh + e, *restrict gc_ = gc + e, *restrict c_ = c + e;                \
                const T *restrict i_ = i + j0, *restrict f_ = f + j0, *restrict g_ = g + j0, *restrict o_ = o + j0; \
                T *restrict di_ = di + j0, *restrict df_ = df + j0, *restrict dg_ = dg + j0, *restrict do_ = dO + j0; \
                tg_vtanh_##SFX(tau, c2 + e, m);                                                              \
                for (int64_t k = 0; k < m; k++) dc2[k] = gc_[k] + gh_[k] * o_[k] * (1 - tau[k] * tau[k]);    \
                for (int64_t k = 0; k < m; k++) {                                                            \
                    di_[k] = dc2[k] * g_[k] * (i_[k] * (1 - i_[k]));                                         \
                    df_[k] = dc2[k] * c_[k] * (f_[k] * (1 - f_[k]));                                         \
                    dg_[k] = dc2[k] * i_[k] * (1 - g_[k] * g_[k]);                                           \
                    do_[k] = gh_[k] * tau[k] * (o_[k] * (1 - o_[k]));                                        \
                }                                                                                            \
                if (dc) {                                                                                    \
                    T *restrict d = dc + e;                                                                  \
                    if (assign)                                                                              \
                        for (int64_t k = 0; k < m; k++) d[k] = dc2[k] * f_[k];                               \
                    else                                                                                     \
                        for (int64_t k = 0; k < m; k++) d[k] += dc2[k] * f_[k];                              \
                }                                                                                            \
            }                                                                                                \
        }                                                                                                    \
    }

DEFINE_LSTM_ROWS(float, f32)
DEFINE_LSTM_ROWS(double, f64)

/* ---- GRU step (tg_gru_cell_): the loops of autograd/ops_fused.c's gru_fwd_rows / gru_bwd_rows,
 * unchanged. When A is xp (the recorded case) the row body is given one pointer for both, so that the
 * compiler sees the exact overlap (an element read before the same element is written) instead of
 * an overlap that a run-time alias check would send to scalar code. */
#define DEFINE_GRU_ROWS(T, SFX)                                                                            \
    static inline void gru_fwd_row_##SFX(T *rr, const T *x, const T *restrict hr, T *restrict hn,          \
                                         T *restrict h2, const T *restrict hv, int64_t H) {                \
        T *zz = rr + H, *nn = rr + 2 * H;                                                                  \
        for (int64_t j = 0; j < H; j++) {                                                                  \
            rr[j] = x[j] + hr[j];                                                                          \
            zz[j] = x[H + j] + hr[H + j];                                                                  \
        }                                                                                                  \
        tg_vsigmoid_##SFX(rr, rr, 2 * H);                                                                  \
        for (int64_t j = 0; j < H; j++) {                                                                  \
            hn[j] = hr[2 * H + j];                                                                         \
            nn[j] = x[2 * H + j] + rr[j] * hr[2 * H + j];                                                  \
        }                                                                                                  \
        tg_vtanh_##SFX(nn, nn, H);                                                                         \
        for (int64_t j = 0; j < H; j++) h2[j] = nn[j] + zz[j] * (hv[j] - nn[j]);                           \
    }                                                                                                      \
                                                                                                           \
    void tg_gru_fwd_rows_##SFX(T *A, T *restrict h2, T *restrict hn, const T *xp, const T *restrict hp,    \
                               const T *restrict h, int64_t n, int64_t H) {                                \
        const int64_t GH = 3 * H;                                                                          \
        for (int64_t r = 0; r < n; r++) {                                                                  \
            if ((const T *)A == xp)                                                                        \
                gru_fwd_row_##SFX(A + r * GH, A + r * GH, hp + r * GH, hn + r * H, h2 + r * H, h + r * H, H); \
            else                                                                                           \
                gru_fwd_row_##SFX(A + r * GH, xp + r * GH, hp + r * GH, hn + r * H, h2 + r * H, h + r * H, H); \
        }                                                                                                  \
    }                                                                                                      \
                                                                                                           \
    void tg_gru_bwd_rows_##SFX(T *restrict D, T *restrict dhp, T *restrict dh, int assign, const T *restrict A, \
                               const T *restrict hn, const T *restrict h, const T *restrict gy,            \
                               const T *restrict gn, int64_t n, int64_t H) {                               \
        const int64_t GH = 3 * H;                                                                          \
        for (int64_t row = 0; row < n; row++) {                                                            \
            const T *restrict rr = A + row * GH, *restrict zz = rr + H, *restrict nn = rr + 2 * H;         \
            T *restrict xrow = D + row * GH, *restrict prow = dhp + row * GH;                              \
            const T *restrict g_ = gy + row * H, *restrict gn_ = gn + row * H;                             \
            const T *restrict hv = h + row * H, *restrict hn_ = hn + row * H;                              \
            for (int64_t j = 0; j < H; j++) {                                                              \
                const T dn = g_[j] - g_[j] * zz[j], dz = g_[j] * (hv[j] - nn[j]);                          \
                const T n_ = dn * (1 - nn[j] * nn[j]);                                                     \
                const T r_ = n_ * hn_[j] * (rr[j] * (1 - rr[j]));                                          \
                const T z_ = dz * (zz[j] * (1 - zz[j]));                                                   \
                xrow[j] = r_, xrow[H + j] = z_, xrow[2 * H + j] = n_;                                      \
                prow[j] = r_, prow[H + j] = z_, prow[2 * H + j] = n_ * rr[j] + gn_[j];                     \
            }                                                                                              \
            if (dh) {                                                                                      \
                T *restrict d = dh + row * H;                                                              \
                if (assign)                                                                                \
                    for (int64_t j = 0; j < H; j++) d[j] = g_[j] * zz[j];                                  \
                else                                                                                       \
                    for (int64_t j = 0; j < H; j++) d[j] = d[j] + g_[j] * zz[j];                           \
            }                                                                                              \
        }                                                                                                  \
    }

DEFINE_GRU_ROWS(float, f32)
DEFINE_GRU_ROWS(double, f64)

/* ---- the zoo's GRU-like step (tg_gru_zoo_) ------------------------------------------------------------ */
#define T float
#define SFX f32
#include "tensor/steps_gruz.inc"
#undef T
#undef SFX
#define T double
#define SFX f64
#include "tensor/steps_gruz.inc"
#undef T
#undef SFX
