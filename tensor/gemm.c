/* tensor/gemm.c - packed, cache-blocked GEMM in portable C (GCC/Clang vector extensions).
 *
 * Structure (GotoBLAS / BLIS):
 *   for jc in N step NC:                       B block  kc x nc  -> packed once per (jc, pc), L3
 *     for pc in K step KC:
 *       pack op(B)[pc:pc+kc, jc:jc+nc] into NR-wide column panels (k-major)
 *       for ic in M step MC:                   A block  mc x kc  -> L2
 *         pack op(A)[ic:ic+mc, pc:pc+kc] into MR-tall row panels (k-major)
 *         for jr in nc step NR:                B micro-panel kc x NR -> L1
 *           for ir in mc step MR:
 *             micro-kernel: MR x NR accumulators held in vector registers, C += Ap * Bp
 * Transposes are absorbed by the packing routines (op(B) = Bᵀ uses in-register VL x VL
 * transposes); nothing is ever transposed in memory. The micro-kernel is plain C on GCC/Clang
 * vector types sized to the target (AVX-512: 8 x 32 f32 / 8 x 16 f64; AVX2: 6 x 16 / 6 x 8;
 * SSE2/NEON: 6 x 8 / 6 x 4), which the compiler keeps entirely in registers.
 * Small problems, and op(A) with at most 4 rows (batch-1 recurrent steps), take a direct path
 * without packing. With tg_set_num_threads(n > 1), problems above ~1M multiply-adds are cut into
 * column (or row) chunks claimed dynamically by the caller and the persistent worker pool of tensor/pool.c.
 * Packing buffers are per thread, 64-byte aligned, grown on demand and kept for reuse.
 *
 * The type-generic part lives in the second half of this file, which includes itself twice
 * (once for float, once for double) with TG_GEMM_TEMPLATE defined.
 */
#ifndef TG_GEMM_TEMPLATE

#ifndef _POSIX_C_SOURCE
#define _POSIX_C_SOURCE 200809L
#endif

#include "tensor/gemm.h"
#include "tensor/pool.h"
#include "tensor/alloc.h"

#include <tapegrad/tensor.h>

#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* FMA contraction: -std=c11 implies -ffp-contract=off, which would turn every a*b+c into a
 * separate multiply and add. Re-enable contraction for this file only. */
#if defined(__clang__)
#pragma clang fp contract(fast)
#elif defined(__GNUC__)
#pragma GCC optimize("fp-contract=fast")
#endif

/* ---- vector width / register-tile shape --------------------------------------------------- */

#if defined(__AVX512F__)
#define TG_VBYTES 64
#define TG_NREGS 32
#elif defined(__AVX__)
#define TG_VBYTES 32
#define TG_NREGS 16
#elif defined(__aarch64__)
#define TG_VBYTES 16
#define TG_NREGS 32
#else
#define TG_VBYTES 16
#define TG_NREGS 16
#endif

/* Micro-tile: MR rows x (NV vectors) columns. 32 registers -> 8 x 2 or more; 16 -> 6 x 2. */
#ifndef TG_GEMM_MR
#if TG_NREGS >= 32
#define TG_GEMM_MR 8
#else
#define TG_GEMM_MR 6
#endif
#endif
#ifndef TG_GEMM_NV
#define TG_GEMM_NV 2
#endif
/* The F32 packed path's own tile (F64 and the direct path keep TG_GEMM_MR x TG_GEMM_NV). AVX-512:
 * 6 x 64 (24 accumulators, 4 vectors of B per k): on an Intel Xeon (family 6, 2 x 512-bit FMA) the
 * 8 x 32 tile's loop ran at ~86 % of the FMA limit even with both panels in L1, 6 x 64 at ~91 %
 * (docs/speed.md, session 4, h5gemm). Each C element is still one multiply-add chain in k order per
 * KC block, so the tile shape does not change any result. */
#ifndef TG_GEMM_MR_F32
#if defined(__AVX512F__)
#define TG_GEMM_MR_F32 6
#else
#define TG_GEMM_MR_F32 TG_GEMM_MR
#endif
#endif
#ifndef TG_GEMM_NV_F32
#if defined(__AVX512F__)
#define TG_GEMM_NV_F32 4
#else
#define TG_GEMM_NV_F32 TG_GEMM_NV
#endif
#endif

/* Cache blocking (elements): KC x NR micro-panel of B stays in L1, MC x KC block of A in L2,
 * KC x NC block of B in L3. MC must be a multiple of MR. Overridable with -D for tuning. */
#ifndef TG_GEMM_KC_F32
#define TG_GEMM_KC_F32 256
#endif
#ifndef TG_GEMM_MC_F32
#define TG_GEMM_MC_F32 192
#endif
#ifndef TG_GEMM_NC_F32
#define TG_GEMM_NC_F32 4096
#endif
#ifndef TG_GEMM_KC_F64
#define TG_GEMM_KC_F64 192
#endif
#ifndef TG_GEMM_MC_F64
#define TG_GEMM_MC_F64 144
#endif
#ifndef TG_GEMM_NC_F64
#define TG_GEMM_NC_F64 2048
#endif

typedef float tg_vf32_t __attribute__((vector_size(TG_VBYTES)));
typedef double tg_vf64_t __attribute__((vector_size(TG_VBYTES)));
typedef int32_t tg_vi32_t __attribute__((vector_size(TG_VBYTES)));
typedef int64_t tg_vi64_t __attribute__((vector_size(TG_VBYTES)));

/* Two-operand constant shuffles (used for in-register transposes when packing). GCC spells this
 * __builtin_shuffle; elsewhere the packing routines fall back to scalar loops. */
#if defined(__GNUC__) && !defined(__clang__)
#define TG_HAVE_SHUFFLE 1
#else
#define TG_HAVE_SHUFFLE 0
#endif
/* __builtin_shufflevector (GCC >= 12, Clang) extracts vector halves for horizontal sums. */
#if defined(__has_builtin)
#if __has_builtin(__builtin_shufflevector)
#define TG_HAVE_SHUFFLEVECTOR 1
#endif
#endif
#ifndef TG_HAVE_SHUFFLEVECTOR
#define TG_HAVE_SHUFFLEVECTOR 0
#endif
#define TG_IDX4_LO 0, 1
#define TG_IDX4_HI 2, 3
#define TG_IDX8_LO 0, 1, 2, 3
#define TG_IDX8_HI 4, 5, 6, 7
#define TG_IDX16_LO 0, 1, 2, 3, 4, 5, 6, 7
#define TG_IDX16_HI 8, 9, 10, 11, 12, 13, 14, 15

#define TG_CAT_(a, b) a##_##b
#define TG_CAT(a, b) TG_CAT_(a, b)

static inline int64_t tg_min64(int64_t a, int64_t b) { return a < b ? a : b; }

/* ---- per-thread packing workspace --------------------------------------------------------- */
/* Grown once per thread and reused; a pthread key destructor frees it when a thread exits. */

static _Thread_local void *tg_ws_ptr;
static _Thread_local size_t tg_ws_size;
static pthread_key_t tg_ws_key;
static pthread_once_t tg_ws_once = PTHREAD_ONCE_INIT;
static int tg_ws_key_ok;

static void tg_ws_free(void *p) { free(p); }
static void tg_ws_make_key(void) { tg_ws_key_ok = pthread_key_create(&tg_ws_key, tg_ws_free) == 0; }

/* Returns a 64-byte aligned buffer of at least `bytes`, or NULL on allocation failure. */
static void *tg_ws_get(size_t bytes)
{
    if (bytes <= tg_ws_size) return tg_ws_ptr;
    pthread_once(&tg_ws_once, tg_ws_make_key);
    free(tg_ws_ptr);
    size_t sz = (bytes + 63) & ~(size_t)63;
    tg_ws_ptr = tg_aligned_alloc(64, sz);
    tg_ws_size = tg_ws_ptr ? sz : 0;
    if (tg_ws_key_ok) pthread_setspecific(tg_ws_key, tg_ws_ptr);
    return tg_ws_ptr;
}


/* f32 problems with fewer multiply-adds than this never use threads (f64: half of it, since a
 * multiply-add costs about twice as much). */
#ifndef TG_GEMM_MT_MIN_MACS_F32
#define TG_GEMM_MT_MIN_MACS_F32 ((int64_t)1 << 20)
#endif
/* op(A) with at most this many rows takes the direct path whatever the size. */
#ifndef TG_GEMM_DIRECT_M
#define TG_GEMM_DIRECT_M 4
#endif
/* Problems with fewer multiply-adds than this take the direct (unpacked) path. */
#ifndef TG_GEMM_SMALL_MACS
#define TG_GEMM_SMALL_MACS ((int64_t)16384)
#endif
/* Same for op(B) = Bᵀ, where the direct path is a set of dot products (weaker for tiny K). */
#ifndef TG_GEMM_SMALL_MACS_NT
#define TG_GEMM_SMALL_MACS_NT ((int64_t)2048)
#endif

int tg_gemm_packs(int trans_b, int64_t M, int64_t N, int64_t K)
{
    if (M <= 0 || N <= 0 || K <= 0) return 0;
    return !(M <= TG_GEMM_DIRECT_M || M * N * K < (trans_b ? TG_GEMM_SMALL_MACS_NT : TG_GEMM_SMALL_MACS));
}

/* ---- reference ---------------------------------------------------------------------------- */

void tg_gemm_ref_f64(int trans_a, int trans_b, int64_t M, int64_t N, int64_t K,
                     const double *A, int64_t lda, const double *B, int64_t ldb,
                     double beta, double *C, int64_t ldc)
{
    for (int64_t i = 0; i < M; i++) {
        for (int64_t j = 0; j < N; j++) {
            double s = 0.0;
            for (int64_t k = 0; k < K; k++) {
                double a = trans_a ? A[k * lda + i] : A[i * lda + k];
                double b = trans_b ? B[j * ldb + k] : B[k * ldb + j];
                s += a * b;
            }
            C[i * ldc + j] = beta == 0.0 ? s : beta * C[i * ldc + j] + s;
        }
    }
}

/* ---- instantiate the typed kernels --------------------------------------------------------- */

#define TG_GEMM_TEMPLATE 1

#define T float
#define V tg_vf32_t
#define VI tg_vi32_t
#define TG_ESIZE 4
#define TG_VLPP (TG_VBYTES / 4)
#define SFX f32
#define TG_KC TG_GEMM_KC_F32
#define TG_MC TG_GEMM_MC_F32
#define TG_NC TG_GEMM_NC_F32
#include "gemm.c"
#undef T
#undef V
#undef VI
#undef TG_ESIZE
#undef TG_VLPP
#undef SFX
#undef TG_KC
#undef TG_MC
#undef TG_NC

#define T double
#define V tg_vf64_t
#define VI tg_vi64_t
#define TG_ESIZE 8
#define TG_VLPP (TG_VBYTES / 8)
#define SFX f64
#define TG_KC TG_GEMM_KC_F64
#define TG_MC TG_GEMM_MC_F64
#define TG_NC TG_GEMM_NC_F64
#include "gemm.c"
#undef T
#undef V
#undef VI
#undef TG_ESIZE
#undef TG_VLPP
#undef SFX
#undef TG_KC
#undef TG_MC
#undef TG_NC

#else /* ======================== TG_GEMM_TEMPLATE: body for one element type T ========== */

#define FN(name) TG_CAT(name, SFX)
#define VL ((int)(TG_VBYTES / sizeof(T)))
#if TG_ESIZE == 4
#define MR TG_GEMM_MR_F32
#define NV TG_GEMM_NV_F32
#else
#define MR TG_GEMM_MR
#define NV TG_GEMM_NV
#endif
#define NR (NV * VL)
/* the direct path's tile: at most 4 rows of op(A) x DNV vectors */
#define DNV TG_GEMM_NV
#define DNR (DNV * VL)

/* C[M,N] = beta*C (beta == 0: overwrite, NaN-safe). */
static void FN(tg_scale_c)(int64_t M, int64_t N, T beta, T *C, int64_t ldc)
{
    for (int64_t i = 0; i < M; i++) {
        T *c = C + i * ldc;
        if (beta == (T)0) {
            for (int64_t j = 0; j < N; j++) c[j] = (T)0;
        } else if (beta != (T)1) {
            for (int64_t j = 0; j < N; j++) c[j] *= beta;
        }
    }
}

/* Horizontal sum of one vector: halve with __builtin_shufflevector down to two lanes. */
static inline T FN(tg_hsum)(V v)
{
#if TG_HAVE_SHUFFLEVECTOR
    typedef T H2 __attribute__((vector_size(2 * TG_ESIZE)));
#if TG_VLPP >= 4
    typedef T H4 __attribute__((vector_size(4 * TG_ESIZE)));
#endif
#if TG_VLPP >= 8
    typedef T H8 __attribute__((vector_size(8 * TG_ESIZE)));
#endif
#if TG_VLPP >= 16
    H8 v8 = __builtin_shufflevector(v, v, TG_IDX16_LO) + __builtin_shufflevector(v, v, TG_IDX16_HI);
#elif TG_VLPP == 8
    H8 v8 = v;
#endif
#if TG_VLPP >= 8
    H4 v4 = __builtin_shufflevector(v8, v8, TG_IDX8_LO) + __builtin_shufflevector(v8, v8, TG_IDX8_HI);
#elif TG_VLPP == 4
    H4 v4 = v;
#endif
#if TG_VLPP >= 4
    H2 v2 = __builtin_shufflevector(v4, v4, TG_IDX4_LO) + __builtin_shufflevector(v4, v4, TG_IDX4_HI);
#else
    H2 v2 = v;
#endif
    return v2[0] + v2[1];
#else
    T t[VL];
    memcpy(t, &v, sizeof(V));
    for (int w = VL / 2; w >= 1; w /= 2)
        for (int l = 0; l < w; l++) t[l] += t[l + w];
    return t[0];
#endif
}

static inline void FN(tg_store_c)(T *c, T s, T beta) { *c = beta == (T)0 ? s : beta * *c + s; }

/* Direct op(A)·Bᵀ block: C[i, j+n] = dot(arow[i][0:K], B[j+n, 0:K]) for i < dm, n < nb
 * (both compile-time after inlining). */
static inline __attribute__((always_inline)) void
FN(tg_direct_nt_block)(const int dm, const int nb, int64_t K, const T *const *arow, const T *B,
                       int64_t ldb, T beta, T *C, int64_t ldc)
{
    V acc[4][8];
    const T *brow[8];
#pragma GCC unroll 8
    for (int n = 0; n < nb; n++) brow[n] = B + n * ldb;
#pragma GCC unroll 8
    for (int i = 0; i < dm; i++) {
#pragma GCC unroll 8
        for (int n = 0; n < nb; n++) acc[i][n] = (V){0};
    }
    int64_t k = 0;
    for (; k + VL <= K; k += VL) {
        V a[4], b[8];
#pragma GCC unroll 8
        for (int i = 0; i < dm; i++) memcpy(&a[i], arow[i] + k, sizeof(V));
#pragma GCC unroll 8
        for (int n = 0; n < nb; n++) memcpy(&b[n], brow[n] + k, sizeof(V));
#pragma GCC unroll 8
        for (int i = 0; i < dm; i++) {
#pragma GCC unroll 8
            for (int n = 0; n < nb; n++) acc[i][n] += a[i] * b[n];
        }
    }
#pragma GCC unroll 8
    for (int i = 0; i < dm; i++) {
#pragma GCC unroll 8
        for (int n = 0; n < nb; n++) {
            T s = FN(tg_hsum)(acc[i][n]);
            for (int64_t kk = k; kk < K; kk++) s += arow[i][kk] * brow[n][kk];
            FN(tg_store_c)(C + i * ldc + n, s, beta);
        }
    }
}

/* dm rows of op(A) (contiguous row pointers) against all N rows of B, nb B rows at a time. */
static inline __attribute__((always_inline)) void
FN(tg_direct_nt_rows)(const int dm, const int nb, int64_t N, int64_t K, const T *const *arow,
                      const T *B, int64_t ldb, T beta, T *C, int64_t ldc)
{
    int64_t j = 0;
    for (; j + nb <= N; j += nb) FN(tg_direct_nt_block)(dm, nb, K, arow, B + j * ldb, ldb, beta, C + j, ldc);
    for (; j < N; j++) FN(tg_direct_nt_block)(dm, 1, K, arow, B + j * ldb, ldb, beta, C + j, ldc);
}

#if TG_HAVE_SHUFFLEVECTOR && (TG_VLPP == 16 || TG_VLPP == 8)
#define TG_DIRECT_NT_ROW 1
/* One row of op(A) against VL rows of B (op(B) = Bᵀ): the VL dot products of tg_direct_nt_block(1, nb,
 * ...) with its arithmetic, element by element (VL lanes of multiply-add chains over k, tg_hsum's tree
 * of halvings, then the tail of K in order), but the VL horizontal sums made together: each level of
 * the tree adds the two halves of two vectors into one vector (two shuffles of the pair and one add), so
 * the VL sums end in one vector after log2(VL) levels, 2·VL − 2 shuffles and VL − 1 adds where VL
 * separate tg_hsum took ~4·VL of each. Bit-identical to the block (tests/test_gemm.c one row against
 * the same row of a 2-row product). For the batch-1 recurrent product (1x64 · 64x256ᵀ) the separate
 * reductions were most of the work (K = 64 is only 4 multiply-adds per element). */
#if TG_VLPP == 16
#define TG_NTR_L1A 0, 1, 2, 3, 4, 5, 6, 7, 16, 17, 18, 19, 20, 21, 22, 23
#define TG_NTR_L1B 8, 9, 10, 11, 12, 13, 14, 15, 24, 25, 26, 27, 28, 29, 30, 31
#define TG_NTR_L2A 0, 1, 2, 3, 8, 9, 10, 11, 16, 17, 18, 19, 24, 25, 26, 27
#define TG_NTR_L2B 4, 5, 6, 7, 12, 13, 14, 15, 20, 21, 22, 23, 28, 29, 30, 31
#define TG_NTR_L3A 0, 1, 4, 5, 8, 9, 12, 13, 16, 17, 20, 21, 24, 25, 28, 29
#define TG_NTR_L3B 2, 3, 6, 7, 10, 11, 14, 15, 18, 19, 22, 23, 26, 27, 30, 31
#define TG_NTR_L4A 0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30
#define TG_NTR_L4B 1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31
#else
#define TG_NTR_L2A 0, 1, 2, 3, 8, 9, 10, 11
#define TG_NTR_L2B 4, 5, 6, 7, 12, 13, 14, 15
#define TG_NTR_L3A 0, 1, 4, 5, 8, 9, 12, 13
#define TG_NTR_L3B 2, 3, 6, 7, 10, 11, 14, 15
#define TG_NTR_L4A 0, 2, 4, 6, 8, 10, 12, 14
#define TG_NTR_L4B 1, 3, 5, 7, 9, 11, 13, 15
#endif
/* level: out[p] lanes hold, per source vector, the sums of its lane pairs (l, l + w) of the level's width */
#define TG_NTR_LEVEL(out, in, np, A_, B_)                                                              \
    for (int p = 0; p < (np); p++)                                                                     \
        out[p] = __builtin_shufflevector(in[2 * p], in[2 * p + 1], A_) +                               \
                 __builtin_shufflevector(in[2 * p], in[2 * p + 1], B_)

static inline __attribute__((always_inline)) void
FN(tg_direct_nt_row)(int64_t K, const T *arow, const T *B, int64_t ldb, T beta, T *C)
{
    V acc[VL];
#pragma GCC unroll 16
    for (int n = 0; n < VL; n++) acc[n] = (V){0};
    int64_t k = 0;
    for (; k + VL <= K; k += VL) {
        V a;
        memcpy(&a, arow + k, sizeof(V));
#pragma GCC unroll 16
        for (int n = 0; n < VL; n++) {
            V b;
            memcpy(&b, B + n * ldb + k, sizeof(V));
            acc[n] += a * b;
        }
    }
    V l2[VL / 2], l3[VL / 4], l4[VL / 8 > 0 ? VL / 8 : 1], sum;
#if TG_VLPP == 16
    V l1[8];
    TG_NTR_LEVEL(l1, acc, 8, TG_NTR_L1A, TG_NTR_L1B);
    TG_NTR_LEVEL(l2, l1, 4, TG_NTR_L2A, TG_NTR_L2B);
    TG_NTR_LEVEL(l3, l2, 2, TG_NTR_L3A, TG_NTR_L3B);
    TG_NTR_LEVEL(l4, l3, 1, TG_NTR_L4A, TG_NTR_L4B);
    sum = l4[0];
#else
    TG_NTR_LEVEL(l2, acc, 4, TG_NTR_L2A, TG_NTR_L2B);
    TG_NTR_LEVEL(l3, l2, 2, TG_NTR_L3A, TG_NTR_L3B);
    TG_NTR_LEVEL(l4, l3, 1, TG_NTR_L4A, TG_NTR_L4B);
    sum = l4[0];
#endif
    if (k == K && (beta == (T)0 || beta == (T)1)) { /* no tail: tg_store_c's s or 1·c + s, as one vector */
        V c = (V){0};
        if (beta == (T)1) memcpy(&c, C, sizeof(V));
        c = beta == (T)0 ? sum : c + sum;
        memcpy(C, &c, sizeof(V));
        return;
    }
    T out[VL];
    memcpy(out, &sum, sizeof(V));
    for (int n = 0; n < VL; n++) {
        T t = out[n];
        for (int64_t kk = k; kk < K; kk++) t += arow[kk] * B[n * ldb + kk];
        FN(tg_store_c)(C + n, t, beta);
    }
}
#endif

/* One row of op(A) times B (op(B) = B), op(A)(0,k) = A[k*sak]: the arithmetic of tg_direct_nn_rows(1,
 * ...) element by element (C scaled by beta, then one chain of multiply-adds over k in order), with up to
 * 8 vectors of C accumulating side by side and no blocks of K (the chain is the same: C read once,
 * written once). tg_direct_nn_rows keeps NV = 2 vectors of a row in flight, so the batch-1 backward
 * product (1x256 · 256x64) ran 2 chains of 256 dependent multiply-adds per 32 columns: bound by their
 * latency. Bit-identical (tests/test_gemm.c one row against the same row of a 2-row product). */
static inline __attribute__((always_inline)) void
FN(tg_direct_nn_cols)(const int nv, int64_t K, const T *A, int64_t sak, const T *B, int64_t ldb, T *C)
{
    V acc[8];
#pragma GCC unroll 8
    for (int v = 0; v < nv; v++) memcpy(&acc[v], C + v * VL, sizeof(V));
    for (int64_t k = 0; k < K; k++) {
        const T a = A[k * sak];
        const T *b = B + k * ldb;
#pragma GCC unroll 8
        for (int v = 0; v < nv; v++) {
            V bv;
            memcpy(&bv, b + v * VL, sizeof(V));
            acc[v] += a * bv;
        }
    }
#pragma GCC unroll 8
    for (int v = 0; v < nv; v++) memcpy(C + v * VL, &acc[v], sizeof(V));
}

static void FN(tg_direct_nn_row)(int64_t N, int64_t K, const T *A, int64_t sak, const T *B, int64_t ldb, T beta, T *C)
{
    FN(tg_scale_c)(1, N, beta, C, N);
    int64_t j = 0;
    for (; j + 8 * VL <= N; j += 8 * VL) FN(tg_direct_nn_cols)(8, K, A, sak, B + j, ldb, C + j);
    if (j + 4 * VL <= N) { FN(tg_direct_nn_cols)(4, K, A, sak, B + j, ldb, C + j); j += 4 * VL; }
    if (j + 2 * VL <= N) { FN(tg_direct_nn_cols)(2, K, A, sak, B + j, ldb, C + j); j += 2 * VL; }
    if (j + VL <= N) { FN(tg_direct_nn_cols)(1, K, A, sak, B + j, ldb, C + j); j += VL; }
    for (; j < N; j++) {
        T s = C[j];
        for (int64_t k = 0; k < K; k++) s += A[k * sak] * B[k * ldb + j];
        C[j] = s;
    }
}

/* Direct op(A)·B for dm (compile-time) rows of op(A); op(A)(i,k) = A[i*sai + k*sak]. No packing:
 * C rows (scaled by beta first) accumulate TG_DIRECT_KB rows of B at a time, so B is read row by
 * row (contiguous, prefetch-friendly) while dm x NR accumulators stay in registers. */
#define TG_DIRECT_KB 16
#define TG_PACK_KB 8
static inline __attribute__((always_inline)) void
FN(tg_direct_nn_rows)(const int dm, int64_t N, int64_t K, const T *A, int64_t sai, int64_t sak,
                      const T *B, int64_t ldb, T beta, T *C, int64_t ldc)
{
    FN(tg_scale_c)(dm, N, beta, C, ldc);
    for (int64_t k0 = 0; k0 < K; k0 += TG_DIRECT_KB) {
        const int64_t kb = tg_min64(TG_DIRECT_KB, K - k0);
        const T *Ak = A + k0 * sak;
        const T *Bk = B + k0 * ldb;
        int64_t j = 0;
        for (; j + DNR <= N; j += DNR) {
            V acc[4][DNV];
#pragma GCC unroll 8
            for (int i = 0; i < dm; i++) {
#pragma GCC unroll 8
                for (int v = 0; v < DNV; v++) memcpy(&acc[i][v], C + i * ldc + j + v * VL, sizeof(V));
            }
            for (int64_t k = 0; k < kb; k++) {
                V b[DNV];
#pragma GCC unroll 8
                for (int v = 0; v < DNV; v++) memcpy(&b[v], Bk + k * ldb + j + v * VL, sizeof(V));
#pragma GCC unroll 8
                for (int i = 0; i < dm; i++) {
                    const T a = Ak[i * sai + k * sak];
#pragma GCC unroll 8
                    for (int v = 0; v < DNV; v++) acc[i][v] += a * b[v];
                }
            }
#pragma GCC unroll 8
            for (int i = 0; i < dm; i++) {
#pragma GCC unroll 8
                for (int v = 0; v < DNV; v++) memcpy(C + i * ldc + j + v * VL, &acc[i][v], sizeof(V));
            }
        }
        for (; j + VL <= N; j += VL) {
            V acc[4];
#pragma GCC unroll 8
            for (int i = 0; i < dm; i++) memcpy(&acc[i], C + i * ldc + j, sizeof(V));
            for (int64_t k = 0; k < kb; k++) {
                V b;
                memcpy(&b, Bk + k * ldb + j, sizeof(V));
#pragma GCC unroll 8
                for (int i = 0; i < dm; i++) acc[i] += Ak[i * sai + k * sak] * b;
            }
#pragma GCC unroll 8
            for (int i = 0; i < dm; i++) memcpy(C + i * ldc + j, &acc[i], sizeof(V));
        }
        for (; j < N; j++) {
#pragma GCC unroll 8
            for (int i = 0; i < dm; i++) {
                T s = C[i * ldc + j];
                for (int64_t k = 0; k < kb; k++) s += Ak[i * sai + k * sak] * Bk[k * ldb + j];
                C[i * ldc + j] = s;
            }
        }
    }
}

/* Direct path: no packing. For tiny problems and for op(A) with only a few rows. */
static void FN(tg_gemm_direct)(int ta, int tb, int64_t M, int64_t N, int64_t K,
                               const T *A, int64_t lda, const T *B, int64_t ldb,
                               T beta, T *C, int64_t ldc)
{
    const int64_t sai = ta ? 1 : lda, sak = ta ? lda : 1;
    if (!tb) {
        int64_t i = 0;
        for (; i + 4 <= M; i += 4) FN(tg_direct_nn_rows)(4, N, K, A + i * sai, sai, sak, B, ldb, beta, C + i * ldc, ldc);
        for (; i + 2 <= M; i += 2) FN(tg_direct_nn_rows)(2, N, K, A + i * sai, sai, sak, B, ldb, beta, C + i * ldc, ldc);
        for (; i < M; i++) FN(tg_direct_nn_row)(N, K, A + i * sai, sak, B, ldb, beta, C + i * ldc);
        return;
    }
    /* op(B) = Bᵀ: dot products along contiguous B rows. op(A) rows must be contiguous too; for
     * op(A) = Aᵀ, gather up to 4 of its rows (columns of A) into the workspace. */
    T *abuf = NULL;
    if (ta) {
        abuf = tg_ws_get((size_t)(4 * K) * sizeof(T));
        if (!abuf) { /* out of memory: strided scalar fallback */
            for (int64_t i = 0; i < M; i++)
                for (int64_t j = 0; j < N; j++) {
                    T s = 0;
                    for (int64_t k = 0; k < K; k++) s += A[k * lda + i] * B[j * ldb + k];
                    FN(tg_store_c)(C + i * ldc + j, s, beta);
                }
            return;
        }
    }
    int64_t i = 0;
    while (i < M) {
        const int dm = M - i >= 4 ? 4 : M - i >= 2 ? 2 : 1;
        const T *arow[4];
        for (int r = 0; r < dm; r++) {
            if (ta) {
                T *dst = abuf + r * K;
                for (int64_t k = 0; k < K; k++) dst[k] = A[k * lda + i + r];
                arow[r] = dst;
            } else {
                arow[r] = A + (i + r) * lda;
            }
        }
        T *c = C + i * ldc;
        if (dm == 4) FN(tg_direct_nt_rows)(4, TG_NREGS >= 32 ? 4 : 2, N, K, arow, B, ldb, beta, c, ldc);
        else if (dm == 2) FN(tg_direct_nt_rows)(2, 4, N, K, arow, B, ldb, beta, c, ldc);
        else {
#ifdef TG_DIRECT_NT_ROW
            /* the blocks of VL rows of B in alternating order from one call to the next: a recurrent
             * product (the same B at every step, more than L1 holds) then starts on the rows the last
             * call read last, still in L1, instead of the ones it evicted first; each block's results
             * do not depend on the order */
            static _Thread_local unsigned flip;
            const int64_t nb = N / VL;
            flip ^= 1u;
            for (int64_t q = 0; q < nb; q++) {
                const int64_t j = (flip ? nb - 1 - q : q) * VL;
                FN(tg_direct_nt_row)(K, arow[0], B + j * ldb, ldb, beta, c + j);
            }
            if (nb * VL < N)
                FN(tg_direct_nt_rows)(1, 8, N - nb * VL, K, arow, B + nb * VL * ldb, ldb, beta, c + nb * VL, ldc);
#else
            FN(tg_direct_nt_rows)(1, 8, N, K, arow, B, ldb, beta, c, ldc);
#endif
        }
        i += dm;
    }
}

#if TG_HAVE_SHUFFLE
/* In-register transpose of a VL x VL block: x[r][l] -> x[l][r]. Stage h swaps the off-diagonal
 * h x h sub-blocks of every 2h x 2h block. */
static inline void FN(tg_transpose_masks)(VI lo[8], VI hi[8])
{
    VI iota;
    for (int l = 0; l < VL; l++) iota[l] = l;
    int s = 0;
    for (int h = VL / 2; h >= 1; h /= 2, s++) {
        const VI off = ((iota & h) != 0) & (VL - h); /* VL - h in lanes with bit h set, else 0 */
        lo[s] = iota + off;
        hi[s] = iota + h + off;
    }
}

static inline void FN(tg_transpose)(V x[VL], const VI lo[8], const VI hi[8])
{
    int s = 0;
#pragma GCC unroll 8
    for (int h = VL / 2; h >= 1; h /= 2, s++) {
#pragma GCC unroll 16
        for (int i = 0; i < VL; i++) {
            if (i & h) continue;
            const V a = x[i], b = x[i + h];
            x[i] = __builtin_shuffle(a, b, lo[s]);
            x[i + h] = __builtin_shuffle(a, b, hi[s]);
        }
    }
}
#endif

/* Pack op(A)[i0:i0+mc, p0:p0+kc] into MR-row panels: panel r holds Ap[k*MR + i]. Rows past mc
 * are zero. */
static void FN(tg_pack_a)(int ta, const T *A, int64_t lda, int64_t i0, int64_t p0, int64_t mc,
                          int64_t kc, T *restrict Ap)
{
    if (ta) {
        /* op(A)(i,k) = A[k*lda + i]: rows of A are contiguous; stream along them (see pack_b). */
        for (int64_t k0 = 0; k0 < kc; k0 += TG_PACK_KB) {
            const int64_t kb = tg_min64(TG_PACK_KB, kc - k0);
            for (int64_t ir = 0; ir < mc; ir += MR) {
                const int64_t mr = tg_min64(MR, mc - ir);
                T *restrict dst = Ap + ir * kc + k0 * MR;
                const T *src = A + (p0 + k0) * lda + i0 + ir;
                if (mr == MR) {
                    for (int64_t k = 0; k < kb; k++) memcpy(dst + k * MR, src + k * lda, MR * sizeof(T));
                } else {
                    for (int64_t k = 0; k < kb; k++) {
                        int64_t i = 0;
                        for (; i < mr; i++) dst[k * MR + i] = src[k * lda + i];
                        for (; i < MR; i++) dst[k * MR + i] = (T)0;
                    }
                }
            }
        }
        return;
    }
    /* op(A)(i,k) = A[i*lda + k]: interleave mr row streams */
    for (int64_t ir = 0; ir < mc; ir += MR) {
        const int64_t mr = tg_min64(MR, mc - ir);
        T *restrict dst = Ap + ir * kc;
        const T *src = A + (i0 + ir) * lda + p0;
        if (mr == MR) {
            const T *rows[MR];
            for (int i = 0; i < MR; i++) rows[i] = src + i * lda;
            int64_t k0 = 0;
#if TG_HAVE_SHUFFLE && TG_VLPP % MR == 0
            /* VL / MR strips of VL columns at once through one VL x VL in-register transpose: vector
             * j*MR + i is row i at columns k0 + j*VL ..; afterwards vector l holds, in its MR-lane
             * segment j, column k0 + j*VL + l of the MR rows, which is that column's panel entry.
             * The scalar loop below was ~5 % of a middle-sized LSTM step (dh = dpre·W packs A [B,4H]). */
            enum { STRIPS = VL / MR };
            VI lo[8], hi[8];
            FN(tg_transpose_masks)(lo, hi);
            for (; k0 + STRIPS * VL <= kc; k0 += STRIPS * VL) {
                V x[VL];
#pragma GCC unroll 16
                for (int j = 0; j < STRIPS; j++)
#pragma GCC unroll 16
                    for (int i = 0; i < MR; i++) memcpy(&x[j * MR + i], rows[i] + k0 + j * VL, sizeof(V));
                FN(tg_transpose)(x, lo, hi);
#pragma GCC unroll 16
                for (int l = 0; l < VL; l++)
#pragma GCC unroll 16
                    for (int j = 0; j < STRIPS; j++)
                        memcpy(dst + (k0 + j * VL + l) * MR, (const T *)&x[l] + j * MR, MR * sizeof(T));
            }
#endif
#if TG_HAVE_SHUFFLE && TG_VLPP == 16 && MR == 6
            /* 6 rows x 16 columns -> 16 panel columns of 6 (96 values = 6 vectors) with 18
             * two-source shuffles: first interleave row pairs (2p, 2p+1) into P[p][h] (lane m: row
             * 2p + (m & 1) at column 8h + m / 2), then out vector v (flat f = 16v + l holds row
             * f % 6 at column f / 6) picks pairs 0 and 1 from P[.][v / 3] and pair 2 into the rest.
             * The scalar loop below was 4.3 % of a 128,512,64,32 LSTM step (docs/speed.md). */
            {
                VI il[2], m1[6], m2[6];
                for (int m = 0; m < VL; m++) {
                    il[0][m] = (m & 1) * VL + m / 2;
                    il[1][m] = (m & 1) * VL + VL / 2 + m / 2;
                }
                for (int v = 0; v < 6; v++)
                    for (int l = 0; l < VL; l++) {
                        const int f = VL * v + l, k = f / 6, i = f % 6, p = i / 2;
                        const int m = 2 * (k - (VL / 2) * (v / 3)) + (i & 1);
                        m1[v][l] = p == 0 ? m : p == 1 ? VL + m : 0;
                        m2[v][l] = p == 2 ? VL + m : l;
                    }
                for (; k0 + VL <= kc; k0 += VL) {
                    V r[6], P[3][2];
#pragma GCC unroll 6
                    for (int i = 0; i < 6; i++) memcpy(&r[i], rows[i] + k0, sizeof(V));
#pragma GCC unroll 3
                    for (int q = 0; q < 3; q++) {
                        P[q][0] = __builtin_shuffle(r[2 * q], r[2 * q + 1], il[0]);
                        P[q][1] = __builtin_shuffle(r[2 * q], r[2 * q + 1], il[1]);
                    }
#pragma GCC unroll 6
                    for (int v = 0; v < 6; v++) {
                        const V t = __builtin_shuffle(P[0][v / 3], P[1][v / 3], m1[v]);
                        const V o = __builtin_shuffle(t, P[2][v / 3], m2[v]);
                        memcpy(dst + k0 * MR + v * VL, &o, sizeof(V));
                    }
                }
            }
#endif
            for (int64_t k = k0; k < kc; k++)
                for (int i = 0; i < MR; i++) dst[k * MR + i] = rows[i][k];
        } else {
            for (int64_t k = 0; k < kc; k++) {
                int64_t i = 0;
                for (; i < mr; i++) dst[k * MR + i] = src[i * lda + k];
                for (; i < MR; i++) dst[k * MR + i] = (T)0;
            }
        }
    }
}

/* Pack op(B)[p0:p0+kc, j0:j0+nc] into NR-column panels: panel s holds Bp[k*NR + j]. Columns past
 * nc are zero. */
static void FN(tg_pack_b)(int tb, const T *B, int64_t ldb, int64_t p0, int64_t j0, int64_t kc,
                          int64_t nc, T *restrict Bp)
{
    if (!tb) {
        /* op(B)(k,j) = B[k*ldb + j]: rows of B are contiguous. Walk a few rows at a time across
         * all panels, so reads stream along B rows instead of striding down one panel. */
        for (int64_t k0 = 0; k0 < kc; k0 += TG_PACK_KB) {
            const int64_t kb = tg_min64(TG_PACK_KB, kc - k0);
            for (int64_t jr = 0; jr < nc; jr += NR) {
                const int64_t nr = tg_min64(NR, nc - jr);
                T *restrict dst = Bp + jr * kc + k0 * NR;
                const T *src = B + (p0 + k0) * ldb + j0 + jr;
                if (nr == NR) {
                    for (int64_t k = 0; k < kb; k++) memcpy(dst + k * NR, src + k * ldb, NR * sizeof(T));
                } else {
                    for (int64_t k = 0; k < kb; k++) {
                        int64_t j = 0;
                        for (; j < nr; j++) dst[k * NR + j] = src[k * ldb + j];
                        for (; j < NR; j++) dst[k * NR + j] = (T)0;
                    }
                }
            }
        }
        return;
    }
    /* op(B)(k,j) = B[j*ldb + k]: transpose nr row streams */
    for (int64_t jr = 0; jr < nc; jr += NR) {
        const int64_t nr = tg_min64(NR, nc - jr);
        T *restrict dst = Bp + jr * kc;
        const T *src = B + (j0 + jr) * ldb + p0;
        if (nr == NR) {
            int64_t k0 = 0;
#if TG_HAVE_SHUFFLE
            VI lo[8], hi[8];
            FN(tg_transpose_masks)(lo, hi);
            for (; k0 + VL <= kc; k0 += VL)
                for (int v = 0; v < NV; v++) {
                    V x[VL];
                    for (int r = 0; r < VL; r++) memcpy(&x[r], src + (v * VL + r) * ldb + k0, sizeof(V));
                    FN(tg_transpose)(x, lo, hi);
                    for (int r = 0; r < VL; r++) memcpy(dst + (k0 + r) * NR + v * VL, &x[r], sizeof(V));
                }
#endif
            for (; k0 < kc; k0 += 8) {
                const int64_t kb = tg_min64(8, kc - k0);
                for (int j = 0; j < NR; j++) {
                    const T *s = src + j * ldb + k0;
                    for (int64_t k = 0; k < kb; k++) dst[(k0 + k) * NR + j] = s[k];
                }
            }
        } else {
            for (int64_t k = 0; k < kc; k++) {
                int64_t j = 0;
                for (; j < nr; j++) dst[k * NR + j] = src[j * ldb + k];
                for (; j < NR; j++) dst[k * NR + j] = (T)0;
            }
        }
    }
}

/* Micro-kernel: acc[R][NR] = Ap(R of the panel's MR rows x kc) * Bp(kc x NR); then C[:mr,:nr] =
 * beta*C + acc, or, with a bias row (the first K block of tg_gemm_linear), C = bias + acc. R (compile
 * time) is MR, or fewer for the last panel of a block whose rows do not fill MR (mr <= R): the rows past
 * mr are zero padding, so skipping them changes no result. */
static inline __attribute__((always_inline)) void
FN(tg_kernel_rows)(const int R, int64_t kc, const T *restrict a, const T *restrict b, T *restrict C,
                   int64_t ldc, T beta, int64_t mr, int64_t nr, const T *bias)
{
    V acc[MR][NV];
    for (int i = 0; i < R; i++)
        for (int v = 0; v < NV; v++) acc[i][v] = (V){0};

    const V *restrict bv = (const V *)__builtin_assume_aligned(b, TG_VBYTES);
#pragma GCC unroll 4
    for (int64_t k = 0; k < kc; k++) {
        V bk[NV];
#pragma GCC unroll 8
        for (int v = 0; v < NV; v++) bk[v] = bv[k * NV + v];
#pragma GCC unroll 16
        for (int i = 0; i < R; i++) {
            const T ai = a[k * MR + i];
#pragma GCC unroll 8
            for (int v = 0; v < NV; v++) acc[i][v] += ai * bk[v];
        }
    }

    if (R == MR && mr == MR && nr == NR) {
        if (bias) {
            V bv0[NV];
            for (int v = 0; v < NV; v++) memcpy(&bv0[v], bias + v * VL, sizeof(V));
            for (int i = 0; i < R; i++)
                for (int v = 0; v < NV; v++) {
                    const V c = bv0[v] + acc[i][v];
                    memcpy(C + i * ldc + v * VL, &c, sizeof(V));
                }
        } else if (beta == (T)0) {
            for (int i = 0; i < R; i++)
                for (int v = 0; v < NV; v++) memcpy(C + i * ldc + v * VL, &acc[i][v], sizeof(V));
        } else if (beta == (T)1) {
            for (int i = 0; i < R; i++)
                for (int v = 0; v < NV; v++) {
                    V c;
                    memcpy(&c, C + i * ldc + v * VL, sizeof(V));
                    c += acc[i][v];
                    memcpy(C + i * ldc + v * VL, &c, sizeof(V));
                }
        } else {
            for (int i = 0; i < R; i++)
                for (int v = 0; v < NV; v++) {
                    V c;
                    memcpy(&c, C + i * ldc + v * VL, sizeof(V));
                    c = beta * c + acc[i][v];
                    memcpy(C + i * ldc + v * VL, &c, sizeof(V));
                }
        }
    } else {
        T tile[MR][NR] __attribute__((aligned(64)));
        memcpy(tile, acc, (size_t)R * sizeof(acc[0]));
        for (int64_t i = 0; i < mr; i++) {
            T *c = C + i * ldc;
            if (bias) {
                for (int64_t j = 0; j < nr; j++) c[j] = bias[j] + tile[i][j];
            } else if (beta == (T)0) {
                for (int64_t j = 0; j < nr; j++) c[j] = tile[i][j];
            } else {
                for (int64_t j = 0; j < nr; j++) c[j] = beta * c[j] + tile[i][j];
            }
        }
    }
}

static void FN(tg_kernel)(int64_t kc, const T *restrict a, const T *restrict b, T *restrict C,
                          int64_t ldc, T beta, int64_t mr, int64_t nr, const T *bias)
{
#if MR > 4
    if (mr <= 2) FN(tg_kernel_rows)(2, kc, a, b, C, ldc, beta, mr, nr, bias);
    else if (mr <= 4) FN(tg_kernel_rows)(4, kc, a, b, C, ldc, beta, mr, nr, bias);
    else
#endif
        FN(tg_kernel_rows)(MR, kc, a, b, C, ldc, beta, mr, nr, bias);
}

/* Packed, blocked single-thread GEMM. ws: 64-byte aligned, size FN(tg_ws_elems)(M,N,K). */
static size_t FN(tg_ws_elems)(int64_t M, int64_t N, int64_t K)
{
    const int64_t kc = tg_min64(K, TG_KC);
    const int64_t mc = (tg_min64(M, TG_MC) + MR - 1) / MR * MR;
    const int64_t nc = (tg_min64(N, TG_NC) + NR - 1) / NR * NR;
    /* keep Bp 64-byte aligned after Ap */
    const int64_t a_elems = (mc * kc * (int64_t)sizeof(T) + 63) / 64 * 64 / (int64_t)sizeof(T);
    return (size_t)(a_elems + kc * nc);
}

/* Elements of the whole op(B) [K,N] packed block by block in the order tg_gemm_packed visits the
 * blocks (jc outer, pc inner), each block kc x nc rounded up to NR columns. */
static size_t FN(tg_packed_b_elems)(int64_t N, int64_t K)
{
    size_t n = 0;
    for (int64_t jc = 0; jc < N; jc += TG_NC) {
        const int64_t ncr = (tg_min64(TG_NC, N - jc) + NR - 1) / NR * NR;
        for (int64_t pc = 0; pc < K; pc += TG_KC) n += (size_t)(tg_min64(TG_KC, K - pc) * ncr);
    }
    return n;
}

/* Bpre: NULL, or all of op(B) packed by tg_gemm_pack_b (then ws needs only the A part, and the
 * products are bit-identical to packing each block here: the arithmetic is the same). bias: NULL, or
 * tg_gemm_linear's bias row [N] (added in the first K block instead of beta*C). */
static void FN(tg_gemm_packed)(int ta, int tb, int64_t M, int64_t N, int64_t K,
                               const T *A, int64_t lda, const T *B, int64_t ldb,
                               T beta, T *C, int64_t ldc, T *ws, const T *Bpre, const T *bias)
{
    const int64_t kcmax = tg_min64(K, TG_KC);
    const int64_t mcmax = (tg_min64(M, TG_MC) + MR - 1) / MR * MR;
    const int64_t a_elems = (mcmax * kcmax * (int64_t)sizeof(T) + 63) / 64 * 64 / (int64_t)sizeof(T);
    T *Ap = ws;
    T *Bp = ws + a_elems;
    size_t boff = 0;

    for (int64_t jc = 0; jc < N; jc += TG_NC) {
        const int64_t nc = tg_min64(TG_NC, N - jc);
        for (int64_t pc = 0; pc < K; pc += TG_KC) {
            const int64_t kc = tg_min64(TG_KC, K - pc);
            const T b = pc == 0 ? beta : (T)1;
            if (Bpre) {
                Bp = (T *)Bpre + boff;
                boff += (size_t)(kc * ((nc + NR - 1) / NR * NR));
            } else {
                FN(tg_pack_b)(tb, B, ldb, pc, jc, kc, nc, Bp);
            }
            for (int64_t ic = 0; ic < M; ic += TG_MC) {
                const int64_t mc = tg_min64(TG_MC, M - ic);
                FN(tg_pack_a)(ta, A, lda, ic, pc, mc, kc, Ap);
                for (int64_t jr = 0; jr < nc; jr += NR) {
                    const int64_t nr = tg_min64(NR, nc - jr);
                    for (int64_t ir = 0; ir < mc; ir += MR) {
                        const int64_t mr = tg_min64(MR, mc - ir);
                        FN(tg_kernel)(kc, Ap + ir * kc, Bp + jr * kc, C + (ic + ir) * ldc + jc + jr, ldc,
                                      b, mr, nr, bias && pc == 0 ? bias + jc + jr : NULL);
                    }
                }
            }
        }
    }
}

/* tg_gemm_linear on the paths without the fused bias (direct, out of memory): the bias rows are
 * written into C and the product accumulated onto them (beta 1), which is what the packed path's
 * kernel computes too (bias + acc). tg_add_rows: C = add + C, tg_gemm_linear's last step. */
static void FN(tg_bias_rows)(int64_t M, int64_t N, const T *bias, T *C, int64_t ldc)
{
    for (int64_t i = 0; i < M; i++) memcpy(C + i * ldc, bias, (size_t)N * sizeof(T));
}
static void FN(tg_add_rows)(int64_t M, int64_t N, const T *add, T *C, int64_t ldc)
{
    for (int64_t i = 0; i < M; i++) {
        T *restrict c = C + i * ldc;
        const T *restrict d = add + i * ldc;
        for (int64_t j = 0; j < N; j++) c[j] = d[j] + c[j];
    }
}

/* Single-thread dispatch: trivial cases, direct path, or packed path (bias: see tg_gemm_packed). */
static void FN(tg_gemm_serial)(int ta, int tb, int64_t M, int64_t N, int64_t K,
                               const T *A, int64_t lda, const T *B, int64_t ldb,
                               T beta, T *C, int64_t ldc, const T *Bpre, const T *bias)
{
    if (M <= 0 || N <= 0) return;
    T *ws = NULL;
    /* with Bpre the whole problem packs (tg_gemm_prepacked checked it): a thread's chunk of a few
     * rows stays on the packed path, so its results do not depend on the split */
    if (K > 0 && (Bpre || tg_gemm_packs(tb, M, N, K))) ws = tg_ws_get(FN(tg_ws_elems)(M, N, K) * sizeof(T));
    if (ws) {
        FN(tg_gemm_packed)(ta, tb, M, N, K, A, lda, B, ldb, beta, C, ldc, ws, Bpre, bias);
        return;
    }
    if (bias) {
        FN(tg_bias_rows)(M, N, bias, C, ldc);
        beta = (T)1;
    }
    if (K <= 0) FN(tg_scale_c)(M, N, beta, C, ldc);
    else FN(tg_gemm_direct)(ta, tb, M, N, K, A, lda, B, ldb, beta, C, ldc);
}

/* Multi-threaded GEMM: one dimension (N or M) is cut into tile-aligned chunks that the threads
 * claim dynamically, so a worker that starts late (or shares its core) just takes fewer chunks.
 * Each chunk is an independent serial GEMM; the price is that the operand not being split is
 * packed once per chunk, which is why chunks are kept at least TG_MT_MIN_CHUNK long. */
#define TG_MT_MIN_CHUNK (1024 / TG_ESIZE)

typedef struct {
    int ta, tb;
    int64_t M, N, K;
    const T *A;
    int64_t lda;
    const T *B;
    int64_t ldb;
    T beta;
    T *C;
    int64_t ldc;
    const T *Bpre;    /* all of op(B) pre-packed (then split_n is 0), or NULL */
    const T *bias;    /* tg_gemm_linear's bias row [N], or NULL */
    int split_n;      /* 1: chunks of columns of C, 0: chunks of rows */
    int64_t chunk;    /* chunk length along the split dimension */
    int64_t nchunks;
    atomic_long next; /* next unclaimed chunk */
} FN(tg_gemm_mt);

static void FN(tg_gemm_mt_run)(void *p)
{
    FN(tg_gemm_mt) *t = p;
    for (;;) {
        const int64_t c = atomic_fetch_add_explicit(&t->next, 1, memory_order_relaxed);
        if (c >= t->nchunks) break;
        const int64_t start = c * t->chunk;
        if (t->split_n) {
            const int64_t len = tg_min64(t->chunk, t->N - start);
            FN(tg_gemm_serial)(t->ta, t->tb, t->M, len, t->K, t->A, t->lda,
                               t->tb ? t->B + start * t->ldb : t->B + start, t->ldb, t->beta, t->C + start,
                               t->ldc, NULL, t->bias ? t->bias + start : NULL);
        } else {
            const int64_t len = tg_min64(t->chunk, t->M - start);
            FN(tg_gemm_serial)(t->ta, t->tb, len, t->N, t->K, t->ta ? t->A + start : t->A + start * t->lda,
                               t->lda, t->B, t->ldb, t->beta, t->C + start * t->ldc, t->ldc, t->Bpre, t->bias);
        }
    }
}

static void FN(tg_gemm_any)(int trans_a, int trans_b, int64_t M, int64_t N, int64_t K,
                            const T *A, int64_t lda, const T *B, int64_t ldb,
                            T beta, T *C, int64_t ldc, const T *Bpre, const T *bias)
{
    if (M <= 0 || N <= 0) return;
    int nt = tg_get_num_threads();
    if (nt > 1 && K > 0 && M * N * K >= TG_GEMM_MT_MIN_MACS_F32 * 4 / TG_ESIZE) {
        /* Split the larger dimension (either choice repacks the same amount per chunk); with a
         * pre-packed op(B), the rows, so that every chunk reads the one shared packed op(B). */
        const int split_n = !Bpre && N >= M;
        const int64_t dim = split_n ? N : M, unit = split_n ? NR : MR;
        const int64_t target = (dim + 4 * nt - 1) / (4 * nt);           /* ~4 chunks per thread */
        const int64_t even = (dim + nt - 1) / nt;                         /* 1 chunk per thread */
        int64_t chunk = target > TG_MT_MIN_CHUNK ? target : tg_min64(TG_MT_MIN_CHUNK, even);
        chunk = (chunk + unit - 1) / unit * unit;
        const int64_t nchunks = (dim + chunk - 1) / chunk;
        if (nchunks >= 2) {
            if (nt > nchunks) nt = (int)nchunks;
            FN(tg_gemm_mt) task = {trans_a, trans_b, M, N, K, A, lda, B, ldb, beta, C, ldc, Bpre,
                                   bias, split_n, chunk, nchunks, 0};
            if (tg__pool_run(nt, FN(tg_gemm_mt_run), &task)) return;
        }
    }
    FN(tg_gemm_serial)(trans_a, trans_b, M, N, K, A, lda, B, ldb, beta, C, ldc, Bpre, bias);
}

void FN(tg_gemm)(int trans_a, int trans_b, int64_t M, int64_t N, int64_t K,
                 const T *A, int64_t lda, const T *B, int64_t ldb,
                 T beta, T *C, int64_t ldc)
{
    FN(tg_gemm_any)(trans_a, trans_b, M, N, K, A, lda, B, ldb, beta, C, ldc, NULL, NULL);
}

size_t FN(tg_gemm_packed_b_size)(int64_t N, int64_t K)
{
    return N > 0 && K > 0 ? FN(tg_packed_b_elems)(N, K) * sizeof(T) : 0;
}

void FN(tg_gemm_pack_b)(int trans_b, int64_t N, int64_t K, const T *B, int64_t ldb, T *Bp)
{
    for (int64_t jc = 0; jc < N; jc += TG_NC) {
        const int64_t nc = tg_min64(TG_NC, N - jc);
        for (int64_t pc = 0; pc < K; pc += TG_KC) {
            const int64_t kc = tg_min64(TG_KC, K - pc);
            FN(tg_pack_b)(trans_b, B, ldb, pc, jc, kc, nc, Bp);
            Bp += kc * ((nc + NR - 1) / NR * NR);
        }
    }
}

void FN(tg_gemm_prepacked)(int trans_a, int trans_b, int64_t M, int64_t N, int64_t K,
                           const T *A, int64_t lda, const T *B, int64_t ldb, const T *Bp,
                           T beta, T *C, int64_t ldc)
{
    FN(tg_gemm_any)(trans_a, trans_b, M, N, K, A, lda, B, ldb, beta, C, ldc,
                    tg_gemm_packs(trans_b, M, N, K) ? Bp : NULL, NULL);
}

void FN(tg_gemm_linear)(int trans_a, int trans_b, int64_t M, int64_t N, int64_t K,
                        const T *A, int64_t lda, const T *B, int64_t ldb, const T *Bp,
                        const T *bias, const T *add, T *C, int64_t ldc)
{
    /* the addend in a pass over the C just written (it stays in cache), not in the kernel's stores:
     * measured faster, the strided tile reads of add slowed the micro-kernel */
    FN(tg_gemm_any)(trans_a, trans_b, M, N, K, A, lda, B, ldb, (T)0, C, ldc,
                    Bp && tg_gemm_packs(trans_b, M, N, K) ? Bp : NULL, bias);
    if (add && M > 0) FN(tg_add_rows)(M, N, add, C, ldc);
}

#undef FN
#undef VL
#undef MR
#undef NV
#undef NR
#undef DNV
#undef DNR
#undef TG_DIRECT_NT_ROW
#undef TG_NTR_LEVEL
#undef TG_NTR_L1A
#undef TG_NTR_L1B
#undef TG_NTR_L2A
#undef TG_NTR_L2B
#undef TG_NTR_L3A
#undef TG_NTR_L3B
#undef TG_NTR_L4A
#undef TG_NTR_L4B

#endif /* TG_GEMM_TEMPLATE */
