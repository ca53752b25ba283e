/* tensor/dispatch.h - run-time choice of the CPU target for the hot kernels (internal).
 *
 * The kernel sources (tensor/gemm.c, tensor/vmath.c, tensor/steps.c, tensor/updates.c,
 * tensor/velem.c) are compiled once per CPU target from the same source (meson.build: one static
 * library per target with that target's -m flags, the functions renamed by tensor/ktarget.h): on
 * x86-64 "avx512" (AVX-512 F/BW/DQ/VL + AVX2 + FMA), "avx2" (AVX2 + FMA) and "generic" (the
 * compiler's baseline, SSE2 on x86-64); elsewhere "generic" only.
 * The first kernel call picks the best target the CPU reports (__builtin_cpu_supports, which also
 * checks that the OS saves the wide registers); TAPEGRAD_CPU=generic|avx2|avx512 forces one, and a
 * forced target this CPU cannot run falls back to the best one it can, with a message on stderr.
 * The choice is made once per process and never changes (packed GEMM operands are laid out for the
 * target that packed them). tg_kernel_target() (<tapegrad/tensor.h>) names it.
 *
 * The unsuffixed kernel names of gemm.h / vmath.h / steps.h / updates.h / velem.h are defined by tensor/dispatch.c and call the
 * chosen target's build through one table of function pointers. The thread pool (tensor/pool.c) is
 * compiled once and shared by all targets. */
#ifndef TG_TENSOR_DISPATCH_H
#define TG_TENSOR_DISPATCH_H
#include <stddef.h>
#include <stdint.h>

#include "tensor/steps.h"   /* the step kernels' argument structs */
#include "tensor/updates.h" /* tg_upd */

/* Every dispatched kernel: V(name, parameters, arguments) for void ones, R(type, name, ...) for the
 * others. Also listed (as renames) in tensor/ktarget.h. */
#define TG_GEMM_PARAMS(T)                                                                              \
    (int trans_a, int trans_b, int64_t M, int64_t N, int64_t K, const T *A, int64_t lda, const T *B,  \
     int64_t ldb, T beta, T *C, int64_t ldc)
#define TG_GEMM_ARGS (trans_a, trans_b, M, N, K, A, lda, B, ldb, beta, C, ldc)
#define TG_PREPACKED_PARAMS(T)                                                                         \
    (int trans_a, int trans_b, int64_t M, int64_t N, int64_t K, const T *A, int64_t lda, const T *B,  \
     int64_t ldb, const T *Bp, T beta, T *C, int64_t ldc)
#define TG_PREPACKED_ARGS (trans_a, trans_b, M, N, K, A, lda, B, ldb, Bp, beta, C, ldc)
#define TG_LINEAR_PARAMS(T)                                                                            \
    (int trans_a, int trans_b, int64_t M, int64_t N, int64_t K, const T *A, int64_t lda, const T *B,  \
     int64_t ldb, const T *Bp, const T *bias, const T *add, T *C, int64_t ldc)
#define TG_LINEAR_ARGS (trans_a, trans_b, M, N, K, A, lda, B, ldb, Bp, bias, add, C, ldc)
#define TG_LSTM_FWD_PARAMS(T) (T *A, T *h2, T *c2, T *hp, const T *xp, const T *c, int64_t n, int64_t H)
#define TG_LSTM_FWD_ARGS (A, h2, c2, hp, xp, c, n, H)
#define TG_LSTM_BWD_PARAMS(T)                                                                          \
    (T *D, T *dc, int assign, const T *A, const T *c, const T *c2, const T *gh, const T *gc, int64_t n, \
     int64_t H)
#define TG_LSTM_BWD_ARGS (D, dc, assign, A, c, c2, gh, gc, n, H)
#define TG_GRU_FWD_PARAMS(T) (T *A, T *h2, T *hn, const T *xp, const T *hp, const T *h, int64_t n, int64_t H)
#define TG_GRU_FWD_ARGS (A, h2, hn, xp, hp, h, n, H)
#define TG_GRU_BWD_PARAMS(T)                                                                           \
    (T *D, T *dhp, T *dh, int assign, const T *A, const T *hn, const T *h, const T *gy, const T *gn,    \
     int64_t n, int64_t H)
#define TG_GRU_BWD_ARGS (D, dhp, dh, assign, A, hn, h, gy, gn, n, H)
#define TG_UPD_PARAMS(T) (T *p, T *s0, T *s1, T *s2, const T *g, int64_t n, const tg_upd *u)
#define TG_UPD_ARGS (p, s0, s1, s2, g, n, u)
#define TG_KERNELS(V, R)                                                                               \
    V(tg_gemm_f32, TG_GEMM_PARAMS(float), TG_GEMM_ARGS)                                                \
    V(tg_gemm_f64, TG_GEMM_PARAMS(double), TG_GEMM_ARGS)                                               \
    V(tg_gemm_ref_f64, TG_GEMM_PARAMS(double), TG_GEMM_ARGS)                                           \
    R(int, tg_gemm_packs, (int trans_b, int64_t M, int64_t N, int64_t K), (trans_b, M, N, K))          \
    R(size_t, tg_gemm_packed_b_size_f32, (int64_t N, int64_t K), (N, K))                               \
    R(size_t, tg_gemm_packed_b_size_f64, (int64_t N, int64_t K), (N, K))                               \
    V(tg_gemm_pack_b_f32, (int trans_b, int64_t N, int64_t K, const float *B, int64_t ldb, float *Bp), \
      (trans_b, N, K, B, ldb, Bp))                                                                     \
    V(tg_gemm_pack_b_f64, (int trans_b, int64_t N, int64_t K, const double *B, int64_t ldb, double *Bp), \
      (trans_b, N, K, B, ldb, Bp))                                                                     \
    V(tg_gemm_prepacked_f32, TG_PREPACKED_PARAMS(float), TG_PREPACKED_ARGS)                            \
    V(tg_gemm_prepacked_f64, TG_PREPACKED_PARAMS(double), TG_PREPACKED_ARGS)                           \
    V(tg_gemm_linear_f32, TG_LINEAR_PARAMS(float), TG_LINEAR_ARGS)                                     \
    V(tg_gemm_linear_f64, TG_LINEAR_PARAMS(double), TG_LINEAR_ARGS)                                    \
    V(tg_vexp_f32, (float *y, const float *x, int64_t n), (y, x, n))                                   \
    V(tg_vtanh_f32, (float *y, const float *x, int64_t n), (y, x, n))                                  \
    V(tg_vsigmoid_f32, (float *y, const float *x, int64_t n), (y, x, n))                               \
    V(tg_vexp_f64, (double *y, const double *x, int64_t n), (y, x, n))                                 \
    V(tg_vtanh_f64, (double *y, const double *x, int64_t n), (y, x, n))                                \
    V(tg_vsigmoid_f64, (double *y, const double *x, int64_t n), (y, x, n))                             \
    R(float, tg_vsum_f32, (const float *x, int64_t n), (x, n))                                         \
    R(double, tg_vsum_f64, (const double *x, int64_t n), (x, n))                                       \
    V(tg_lstm_fwd_rows_f32, TG_LSTM_FWD_PARAMS(float), TG_LSTM_FWD_ARGS)                               \
    V(tg_lstm_fwd_rows_f64, TG_LSTM_FWD_PARAMS(double), TG_LSTM_FWD_ARGS)                              \
    V(tg_lstm_bwd_rows_f32, TG_LSTM_BWD_PARAMS(float), TG_LSTM_BWD_ARGS)                               \
    V(tg_lstm_bwd_rows_f64, TG_LSTM_BWD_PARAMS(double), TG_LSTM_BWD_ARGS)                              \
    V(tg_gru_fwd_rows_f32, TG_GRU_FWD_PARAMS(float), TG_GRU_FWD_ARGS)                                  \
    V(tg_gru_fwd_rows_f64, TG_GRU_FWD_PARAMS(double), TG_GRU_FWD_ARGS)                                 \
    V(tg_gru_bwd_rows_f32, TG_GRU_BWD_PARAMS(float), TG_GRU_BWD_ARGS)                                  \
    V(tg_gru_bwd_rows_f64, TG_GRU_BWD_PARAMS(double), TG_GRU_BWD_ARGS)                                 \
    V(tg_gz_gates_rows_f32, (const tg_gz_fwd *c, int64_t r0, int64_t r1), (c, r0, r1))                 \
    V(tg_gz_gates_rows_f64, (const tg_gz_fwd *c, int64_t r0, int64_t r1), (c, r0, r1))                 \
    V(tg_gz_blend_rows_f32, (const tg_gz_fwd *c, int64_t r0, int64_t r1), (c, r0, r1))                 \
    V(tg_gz_blend_rows_f64, (const tg_gz_fwd *c, int64_t r0, int64_t r1), (c, r0, r1))                 \
    V(tg_gz_bwd1_rows_f32, (const tg_gz_bwd *c, int64_t r0, int64_t r1), (c, r0, r1))                  \
    V(tg_gz_bwd1_rows_f64, (const tg_gz_bwd *c, int64_t r0, int64_t r1), (c, r0, r1))                  \
    V(tg_gz_bwd2_rows_f32, (const tg_gz_bwd *c, int64_t r0, int64_t r1), (c, r0, r1))                  \
    V(tg_gz_bwd2_rows_f64, (const tg_gz_bwd *c, int64_t r0, int64_t r1), (c, r0, r1))                  \
    V(tg_upd_adam_f32, TG_UPD_PARAMS(float), TG_UPD_ARGS)                                                \
    V(tg_upd_adam_f64, TG_UPD_PARAMS(double), TG_UPD_ARGS)                                               \
    V(tg_upd_rmsprop_f32, TG_UPD_PARAMS(float), TG_UPD_ARGS)                                             \
    V(tg_upd_rmsprop_f64, TG_UPD_PARAMS(double), TG_UPD_ARGS)                                            \
    V(tg_upd_adagrad_f32, TG_UPD_PARAMS(float), TG_UPD_ARGS)                                             \
    V(tg_upd_adagrad_f64, TG_UPD_PARAMS(double), TG_UPD_ARGS)                                            \
    V(tg_upd_nadam_f32, TG_UPD_PARAMS(float), TG_UPD_ARGS)                                               \
    V(tg_upd_nadam_f64, TG_UPD_PARAMS(double), TG_UPD_ARGS)                                              \
    V(tg_upd_radam_f32, TG_UPD_PARAMS(float), TG_UPD_ARGS)                                               \
    V(tg_upd_radam_f64, TG_UPD_PARAMS(double), TG_UPD_ARGS)                                              \
    V(tg_upd_adadelta_f32, TG_UPD_PARAMS(float), TG_UPD_ARGS)                                            \
    V(tg_upd_adadelta_f64, TG_UPD_PARAMS(double), TG_UPD_ARGS)                                         \
    V(tg_upd_sgd_f32, TG_UPD_PARAMS(float), TG_UPD_ARGS)                                               \
    V(tg_upd_sgd_f64, TG_UPD_PARAMS(double), TG_UPD_ARGS)                                              \
    V(tg_upd_adamax_f32, TG_UPD_PARAMS(float), TG_UPD_ARGS)                                            \
    V(tg_upd_adamax_f64, TG_UPD_PARAMS(double), TG_UPD_ARGS)                                           \
    V(tg_vbin_f32, (int op, float *y, const float *a, const float *b, int64_t n), (op, y, a, b, n))     \
    V(tg_vbin_f64, (int op, double *y, const double *a, const double *b, int64_t n), (op, y, a, b, n))  \
    V(tg_vmul_acc_f32, (float *y, const float *a, const float *b, int64_t n), (y, a, b, n))             \
    V(tg_vmul_acc_f64, (double *y, const double *a, const double *b, int64_t n), (y, a, b, n))

/* One target's build of every kernel. */
#define TG_KFIELD_V(name, params, args) void(*name) params;
#define TG_KFIELD_R(type, name, params, args) type(*name) params;
typedef struct tg_kernels {
    const char *name; /* "avx512", "avx2", "generic" */
    TG_KERNELS(TG_KFIELD_V, TG_KFIELD_R)
} tg_kernels;
#undef TG_KFIELD_V
#undef TG_KFIELD_R

/* The chosen target's kernels (chosen on the first call, thread-safe). */
const tg_kernels *tg__kernels(void);
/* A target's kernels by name if it was built and this CPU can run it, else NULL (tests compare
 * every such target with "generic"). */
const tg_kernels *tg__kernels_named(const char *name);
#endif
