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
#include <stddef.h>
#include <stdint.h>

void tg_gemm_f32(int trans_a, int trans_b, int64_t M, int64_t N, int64_t K,
                 const float *A, int64_t lda, const float *B, int64_t ldb,
                 float beta, float *C, int64_t ldc);
void tg_gemm_f64(int trans_a, int trans_b, int64_t M, int64_t N, int64_t K,
                 const double *A, int64_t lda, const double *B, int64_t ldb,
                 double beta, double *C, int64_t ldc);
/* Pre-packed op(B), for a B used in many products (a recurrent weight over the time steps):
 * tg_gemm_pack_b_* packs all of op(B) [K,N] into Bp (64-byte aligned, tg_gemm_packed_b_size_*
 * bytes), and tg_gemm_prepacked_* is tg_gemm_* reading the packed blocks from Bp instead of packing
 * them again. Results are bit-identical to tg_gemm_* on the same B (the same arithmetic in the same
 * order). B itself is still passed: the paths that do not pack (tg_gemm_packs false) read it. The
 * caller keeps Bp in step with B. tg_gemm_packs: whether tg_gemm packs op(B) for this problem. */
int tg_gemm_packs(int trans_b, int64_t M, int64_t N, int64_t K);
size_t tg_gemm_packed_b_size_f32(int64_t N, int64_t K);
size_t tg_gemm_packed_b_size_f64(int64_t N, int64_t K);
void tg_gemm_pack_b_f32(int trans_b, int64_t N, int64_t K, const float *B, int64_t ldb, float *Bp);
void tg_gemm_pack_b_f64(int trans_b, int64_t N, int64_t K, const double *B, int64_t ldb, double *Bp);
void tg_gemm_prepacked_f32(int trans_a, int trans_b, int64_t M, int64_t N, int64_t K,
                           const float *A, int64_t lda, const float *B, int64_t ldb, const float *Bp,
                           float beta, float *C, int64_t ldc);
void tg_gemm_prepacked_f64(int trans_a, int trans_b, int64_t M, int64_t N, int64_t K,
                           const double *A, int64_t lda, const double *B, int64_t ldb, const double *Bp,
                           double beta, double *C, int64_t ldc);
/* The linear layer's product in one pass: C = add + (bias + op(A)·op(B)), bias a row [N] broadcast over
 * the M rows, add [M,N] with C's leading dimension, either NULL (then that term is absent). The result
 * is bit-identical to writing the bias into every row of C, tg_gemm with beta 1 (beta 0 without a
 * bias), then C = add + C elementwise; but on the packed path the bias is added by the micro-kernel's
 * store of the first K block instead of being written into C first, and the addend pass runs in the
 * kernel build (vectorised for the CPU). Bp: NULL, or op(B) packed by tg_gemm_pack_b_* (as
 * tg_gemm_prepacked_*). add must not overlap C. */
void tg_gemm_linear_f32(int trans_a, int trans_b, int64_t M, int64_t N, int64_t K,
                        const float *A, int64_t lda, const float *B, int64_t ldb, const float *Bp,
                        const float *bias, const float *add, float *C, int64_t ldc);
void tg_gemm_linear_f64(int trans_a, int trans_b, int64_t M, int64_t N, int64_t K,
                        const double *A, int64_t lda, const double *B, int64_t ldb, const double *Bp,
                        const double *bias, const double *add, double *C, int64_t ldc);
/* Straightforward triple loop with the same contract: the reference the tests compare against. */
void tg_gemm_ref_f64(int trans_a, int trans_b, int64_t M, int64_t N, int64_t K,
                     const double *A, int64_t lda, const double *B, int64_t ldb,
                     double beta, double *C, int64_t ldc);
#endif
