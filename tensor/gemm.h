/* tensor/gemm.h - general matrix multiply kernels (internal; knows nothing of the tape).
 *
 * Dimension letters: M rows of the result, N columns of the result, K the inner dimension.
 * All matrices are row-major with an explicit leading dimension (elements between rows).
 *
 *   C[M,N] = beta * C + op(A) · op(B)
 *   op(A) = A      (A is [M,K], lda >= K)   when trans_a == 0
 *         = Aᵀ     (A is [K,M], lda >= M)   when trans_a != 0
 *   op(B) = B      (B is [K,N], ldb >= N)   when trans_b == 0
 *         = Bᵀ     (B is [N,K], ldb >= K)   when trans_b != 0
 *
 * beta == 0 means C is overwritten (its old contents, even NaN, are ignored); beta == 1 accumulates,
 * which is how backward passes add into gradients. The three forms a linear layer needs (A·B, A·Bᵀ,
 * Aᵀ·B) run without materialising a transpose. Threads: tg_set_num_threads (tensor.h).
 */
#ifndef TG_GEMM_H
#define TG_GEMM_H
#include <stdint.h>

void tg_gemm_f32(int trans_a, int trans_b, int64_t M, int64_t N, int64_t K,
                 const float *A, int64_t lda, const float *B, int64_t ldb,
                 float beta, float *C, int64_t ldc);
void tg_gemm_f64(int trans_a, int trans_b, int64_t M, int64_t N, int64_t K,
                 const double *A, int64_t lda, const double *B, int64_t ldb,
                 double beta, double *C, int64_t ldc);
/* Straightforward triple loop with the same contract: the reference the tests compare against. */
void tg_gemm_ref_f64(int trans_a, int trans_b, int64_t M, int64_t N, int64_t K,
                     const double *A, int64_t lda, const double *B, int64_t ldb,
                     double beta, double *C, int64_t ldc);
#endif
