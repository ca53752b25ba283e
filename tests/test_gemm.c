/* tests/test_gemm.c - tg_gemm_f32 / tg_gemm_f64 against the reference triple loop. */
#include "tensor/gemm.h"

#include <tapegrad/tensor.h>

#include <criterion/criterion.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* ---- tiny local LCG ---------------------------------------------------------------------- */

static uint64_t lcg_state = 12345;

static double lcg_uniform(void) /* [-1, 1) */
{
    lcg_state = lcg_state * 6364136223846793005ULL + 1442695040888963407ULL;
    return (double)(lcg_state >> 11) * 0x1.0p-52 - 1.0;
}

static const double SENTINEL = 12345.5;

typedef struct {
    int64_t M, N, K;
} shape3;

/* Runs one case in f64 (prec 64) or f32 (prec 32) and checks every element of C, plus that the
 * padding columns of C (beyond N) are untouched. Returns the worst error / tolerance ratio. */
static double run_case(int prec, int ta, int tb, int64_t M, int64_t N, int64_t K, int64_t pad,
                       double beta)
{
    const int64_t arows = ta ? K : M, acols = ta ? M : K;
    const int64_t brows = tb ? N : K, bcols = tb ? K : N;
    const int64_t lda = acols + pad, ldb = bcols + pad, ldc = N + pad;
    const size_t na = (size_t)(arows * lda) + 1, nb = (size_t)(brows * ldb) + 1, nc = (size_t)(M * ldc) + 1;

    double *A = malloc(na * sizeof(double)), *B = malloc(nb * sizeof(double));
    double *Aabs = malloc(na * sizeof(double)), *Babs = malloc(nb * sizeof(double));
    double *C0 = malloc(nc * sizeof(double)), *Cref = malloc(nc * sizeof(double));
    double *Cbound = malloc(nc * sizeof(double));
    cr_assert(A && B && Aabs && Babs && C0 && Cref && Cbound);

    for (size_t i = 0; i < na; i++) A[i] = lcg_uniform();
    for (size_t i = 0; i < nb; i++) B[i] = lcg_uniform();
    for (int64_t i = 0; i < M; i++)
        for (int64_t j = 0; j < ldc; j++)
            C0[i * ldc + j] = j < N ? (beta == 0.0 ? NAN : lcg_uniform()) : SENTINEL;
    C0[nc - 1] = SENTINEL;

    if (prec == 32) { /* round the inputs so the reference sees exactly what f32 sees */
        for (size_t i = 0; i < na; i++) A[i] = (float)A[i];
        for (size_t i = 0; i < nb; i++) B[i] = (float)B[i];
        for (size_t i = 0; i < nc; i++) C0[i] = (float)C0[i];
    }
    for (size_t i = 0; i < na; i++) Aabs[i] = fabs(A[i]);
    for (size_t i = 0; i < nb; i++) Babs[i] = fabs(B[i]);

    memcpy(Cref, C0, nc * sizeof(double));
    tg_gemm_ref_f64(ta, tb, M, N, K, A, lda, B, ldb, beta, Cref, ldc);
    tg_gemm_ref_f64(ta, tb, M, N, K, Aabs, lda, Babs, ldb, 0.0, Cbound, ldc);

    double *Cout = malloc(nc * sizeof(double));
    cr_assert(Cout);
    if (prec == 64) {
        memcpy(Cout, C0, nc * sizeof(double));
        tg_gemm_f64(ta, tb, M, N, K, A, lda, B, ldb, beta, Cout, ldc);
    } else {
        float *Af = malloc(na * sizeof(float)), *Bf = malloc(nb * sizeof(float)), *Cf = malloc(nc * sizeof(float));
        cr_assert(Af && Bf && Cf);
        for (size_t i = 0; i < na; i++) Af[i] = (float)A[i];
        for (size_t i = 0; i < nb; i++) Bf[i] = (float)B[i];
        for (size_t i = 0; i < nc; i++) Cf[i] = (float)C0[i];
        tg_gemm_f32(ta, tb, M, N, K, Af, lda, Bf, ldb, (float)beta, Cf, ldc);
        for (size_t i = 0; i < nc; i++) Cout[i] = Cf[i];
        free(Af);
        free(Bf);
        free(Cf);
    }

    const double rel = prec == 64 ? 1e-12 : 1e-5;
    double worst = 0.0;
    for (int64_t i = 0; i < M; i++) {
        for (int64_t j = 0; j < ldc; j++) {
            const double got = Cout[i * ldc + j];
            if (j >= N) {
                cr_assert(got == SENTINEL, "f%d ta=%d tb=%d %ldx%ldx%ld: padding C[%ld,%ld] overwritten", prec,
                          ta, tb, (long)M, (long)N, (long)K, (long)i, (long)j);
                continue;
            }
            const double want = Cref[i * ldc + j];
            double scale = Cbound[i * ldc + j];
            if (beta != 0.0) scale += fabs(beta * C0[i * ldc + j]);
            const double tol = rel * scale + 1e-300;
            cr_assert(isfinite(got), "f%d ta=%d tb=%d %ldx%ldx%ld beta=%g: C[%ld,%ld] = %g not finite", prec, ta,
                      tb, (long)M, (long)N, (long)K, beta, (long)i, (long)j, got);
            const double ratio = fabs(got - want) / tol;
            cr_assert(ratio <= 1.0, "f%d ta=%d tb=%d %ldx%ldx%ld pad=%ld beta=%g: C[%ld,%ld] = %.17g want %.17g",
                      prec, ta, tb, (long)M, (long)N, (long)K, (long)pad, beta, (long)i, (long)j, got, want);
            if (ratio > worst) worst = ratio;
        }
    }
    cr_assert(Cout[nc - 1] == SENTINEL, "write past the end of C");

    free(A);
    free(B);
    free(Aabs);
    free(Babs);
    free(C0);
    free(Cref);
    free(Cbound);
    free(Cout);
    return worst;
}

static void run_all_combos(int prec, int64_t M, int64_t N, int64_t K)
{
    static const int64_t pads[] = {0, 3};
    static const double betas[] = {0.0, 1.0};
    for (int ta = 0; ta < 2; ta++)
        for (int tb = 0; tb < 2; tb++)
            for (int p = 0; p < 2; p++)
                for (int b = 0; b < 2; b++) run_case(prec, ta, tb, M, N, K, pads[p], betas[b]);
}

static const shape3 small_shapes[] = {
    {1, 1, 1},   {1, 5, 3},    {5, 1, 3},    {2, 3, 4},    {3, 33, 5},   {5, 33, 1},   {4, 7, 33},
    {7, 13, 5},  {13, 7, 11},  {1, 128, 64}, {1, 64, 128}, {64, 1, 128}, {8, 32, 16},  {6, 16, 20},
    {9, 17, 23}, {16, 16, 64}, {1, 512, 128}, {31, 3, 200},
};

static const shape3 medium_shapes[] = {
    {33, 65, 17},  {17, 65, 257},  {9, 33, 385},  {32, 512, 128}, {32, 128, 512}, {48, 96, 64},
    {64, 64, 64},  {97, 101, 103}, {130, 70, 257}, {145, 33, 7},  {200, 5, 300},  {3, 300, 200},
};

Test(gemm, small_f64)
{
    for (size_t s = 0; s < sizeof small_shapes / sizeof small_shapes[0]; s++)
        run_all_combos(64, small_shapes[s].M, small_shapes[s].N, small_shapes[s].K);
}

Test(gemm, small_f32)
{
    for (size_t s = 0; s < sizeof small_shapes / sizeof small_shapes[0]; s++)
        run_all_combos(32, small_shapes[s].M, small_shapes[s].N, small_shapes[s].K);
}

Test(gemm, medium_f64)
{
    for (size_t s = 0; s < sizeof medium_shapes / sizeof medium_shapes[0]; s++)
        run_all_combos(64, medium_shapes[s].M, medium_shapes[s].N, medium_shapes[s].K);
}

Test(gemm, medium_f32)
{
    for (size_t s = 0; s < sizeof medium_shapes / sizeof medium_shapes[0]; s++)
        run_all_combos(32, medium_shapes[s].M, medium_shapes[s].N, medium_shapes[s].K);
}

/* Larger than every blocking size (MC, KC, and several NR panels), all four transpose forms. */
Test(gemm, large_f64, .timeout = 120)
{
    for (int ta = 0; ta < 2; ta++)
        for (int tb = 0; tb < 2; tb++) {
            run_case(64, ta, tb, 300, 520, 600, ta + tb, 0.0);
            run_case(64, ta, tb, 300, 520, 600, 1, 1.0);
        }
}

Test(gemm, large_f32, .timeout = 120)
{
    for (int ta = 0; ta < 2; ta++)
        for (int tb = 0; tb < 2; tb++) {
            run_case(32, ta, tb, 300, 520, 600, ta + tb, 0.0);
            run_case(32, ta, tb, 300, 520, 600, 1, 1.0);
        }
}

Test(gemm, wide_n_over_nc)
{
    /* N beyond the column block size NC (4096 f32 / 2048 f64) */
    run_case(64, 0, 0, 9, 4200, 20, 1, 1.0);
    run_case(64, 1, 1, 9, 4200, 20, 0, 0.0);
    run_case(32, 0, 1, 9, 4200, 20, 2, 0.0);
    run_case(32, 1, 0, 9, 4200, 20, 0, 1.0);
}

Test(gemm, other_beta)
{
    for (int ta = 0; ta < 2; ta++)
        for (int tb = 0; tb < 2; tb++) {
            run_case(64, ta, tb, 7, 13, 5, 1, 0.5);
            run_case(64, ta, tb, 67, 45, 90, 0, -2.0);
            run_case(32, ta, tb, 7, 13, 5, 1, 0.5);
            run_case(32, ta, tb, 67, 45, 90, 0, -2.0);
        }
}

Test(gemm, two_threads, .timeout = 120)
{
    tg_set_num_threads(2);
    cr_assert_eq(tg_get_num_threads(), 2);
    for (int ta = 0; ta < 2; ta++)
        for (int tb = 0; tb < 2; tb++)
            for (int prec = 32; prec <= 64; prec += 32) {
                run_case(prec, ta, tb, 300, 520, 600, 1, 0.0);
                run_case(prec, ta, tb, 520, 40, 300, 0, 1.0); /* M-split */
                run_case(prec, ta, tb, 64, 1024, 256, 2, 1.0);
                run_case(prec, ta, tb, 33, 65, 17, 0, 0.0); /* too small to split */
                run_case(prec, ta, tb, 130, 300, 70, 1, 0.5); /* uneven chunks, beta 0.5 */
            }
    /* repeated calls reuse the pool */
    for (int r = 0; r < 20; r++) run_case(64, r & 1, (r >> 1) & 1, 96, 300, 128, 0, (double)(r & 1));
    tg_set_num_threads(1);
}

Test(gemm, thread_knob_clamps)
{
    cr_assert_eq(tg_get_num_threads(), 1);
    tg_set_num_threads(0);
    cr_assert_eq(tg_get_num_threads(), 1);
    tg_set_num_threads(-5);
    cr_assert_eq(tg_get_num_threads(), 1);
    tg_set_num_threads(1000);
    cr_assert_eq(tg_get_num_threads(), 64);
    tg_set_num_threads(3);
    cr_assert_eq(tg_get_num_threads(), 3);
    /* more threads than cores still computes the right answer */
    run_case(64, 0, 1, 200, 300, 100, 0, 0.0);
    run_case(32, 1, 0, 200, 300, 100, 0, 1.0);
    tg_set_num_threads(1);
}

Test(gemm, k_zero)
{
    for (int prec = 32; prec <= 64; prec += 32)
        for (int ta = 0; ta < 2; ta++)
            for (int tb = 0; tb < 2; tb++) {
                run_case(prec, ta, tb, 5, 7, 0, 1, 0.0); /* C was NaN, must become 0 */
                run_case(prec, ta, tb, 5, 7, 0, 0, 1.0); /* unchanged */
                run_case(prec, ta, tb, 40, 70, 0, 2, 0.5);
            }
    /* explicit: beta 0 overwrites NaN with zeros, no reads of A/B */
    double C[6];
    for (int i = 0; i < 6; i++) C[i] = NAN;
    tg_gemm_f64(0, 0, 2, 3, 0, NULL, 1, NULL, 3, 0.0, C, 3);
    for (int i = 0; i < 6; i++) cr_assert(C[i] == 0.0);
    float Cf[6];
    for (int i = 0; i < 6; i++) Cf[i] = 2.0f;
    tg_gemm_f32(1, 1, 2, 3, 0, NULL, 2, NULL, 1, 1.0f, Cf, 3);
    for (int i = 0; i < 6; i++) cr_assert(Cf[i] == 2.0f);
}

Test(gemm, empty_m_or_n)
{
    double C[4] = {1, 2, 3, 4};
    const double A[4] = {1, 1, 1, 1}, B[4] = {1, 1, 1, 1};
    tg_gemm_f64(0, 0, 0, 2, 2, A, 2, B, 2, 0.0, C, 2);
    tg_gemm_f64(0, 0, 2, 0, 2, A, 2, B, 1, 0.0, C, 2);
    tg_gemm_f64(0, 0, 0, 0, 0, NULL, 1, NULL, 1, 0.0, NULL, 1);
    for (int i = 0; i < 4; i++) cr_assert(C[i] == i + 1);
    float Cf[4] = {1, 2, 3, 4};
    const float Af[4] = {1, 1, 1, 1}, Bf[4] = {1, 1, 1, 1};
    tg_gemm_f32(1, 1, 0, 2, 2, Af, 2, Bf, 2, 0.0f, Cf, 2);
    tg_gemm_f32(1, 1, 2, 0, 2, Af, 2, Bf, 2, 0.0f, Cf, 2);
    for (int i = 0; i < 4; i++) cr_assert(Cf[i] == i + 1);
}

Test(gemm, known_values)
{
    /* [1 2; 3 4] · [5 6; 7 8] = [19 22; 43 50] in all four forms, using explicit transposes */
    const double A[4] = {1, 2, 3, 4}, At[4] = {1, 3, 2, 4};
    const double B[4] = {5, 6, 7, 8}, Bt[4] = {5, 7, 6, 8};
    const double want[4] = {19, 22, 43, 50};
    for (int ta = 0; ta < 2; ta++)
        for (int tb = 0; tb < 2; tb++) {
            double C[4] = {NAN, NAN, NAN, NAN};
            tg_gemm_f64(ta, tb, 2, 2, 2, ta ? At : A, 2, tb ? Bt : B, 2, 0.0, C, 2);
            for (int i = 0; i < 4; i++) cr_assert(C[i] == want[i], "ta=%d tb=%d", ta, tb);
            float Af[4], Bf[4], Cf[4] = {1, 1, 1, 1};
            for (int i = 0; i < 4; i++) {
                Af[i] = (float)(ta ? At : A)[i];
                Bf[i] = (float)(tb ? Bt : B)[i];
            }
            tg_gemm_f32(ta, tb, 2, 2, 2, Af, 2, Bf, 2, 1.0f, Cf, 2);
            for (int i = 0; i < 4; i++) cr_assert(Cf[i] == (float)want[i] + 1.0f, "ta=%d tb=%d", ta, tb);
        }
}

Test(gemm, recurrent_shapes)
{
    /* forward h·Wᵀ, and the two backward forms */
    for (int prec = 32; prec <= 64; prec += 32) {
        run_case(prec, 0, 1, 32, 512, 128, 0, 0.0);
        run_case(prec, 0, 1, 1, 512, 128, 0, 1.0);
        run_case(prec, 0, 1, 5, 512, 128, 0, 1.0);
        run_case(prec, 0, 0, 32, 128, 512, 0, 1.0);
        run_case(prec, 1, 0, 512, 128, 32, 0, 1.0);
        run_case(prec, 1, 0, 512, 128, 1, 0, 1.0);
    }
}

/* tg_gemm_prepacked_* reads op(B) packed once by tg_gemm_pack_b_* (the recurrent weight over the time
 * steps): every element must equal tg_gemm_*'s bit for bit, also with several K blocks (K > KC), several
 * N blocks (N > NC in f64), the unpacked direct path (tiny M: Bp is not read) and two threads (row split
 * over one shared packed op(B)). */
#define PP_CASE(TY, SFX)                                                                                      \
    static void prepacked_case_##SFX(int ta, int tb, int64_t M, int64_t N, int64_t K, TY beta)              \
    {                                                                                                         \
        const int64_t lda = ta ? M : K, ldb = tb ? K : N;                                                     \
        TY *A = malloc((size_t)(M * K) * sizeof(TY)), *B = malloc((size_t)(N * K) * sizeof(TY));              \
        TY *C1 = malloc((size_t)(M * N) * sizeof(TY)), *C2 = malloc((size_t)(M * N) * sizeof(TY));            \
        TY *Bp = aligned_alloc(64, (tg_gemm_packed_b_size_##SFX(N, K) + 63) / 64 * 64);                         \
        cr_assert(A && B && C1 && C2 && Bp);                                                                  \
        for (int64_t i = 0; i < M * K; i++) A[i] = (TY)lcg_uniform();                                        \
        for (int64_t i = 0; i < N * K; i++) B[i] = (TY)lcg_uniform();                                        \
        for (int64_t i = 0; i < M * N; i++) C1[i] = C2[i] = (TY)lcg_uniform();                               \
        tg_gemm_pack_b_##SFX(tb, N, K, B, ldb, Bp);                                                           \
        tg_gemm_##SFX(ta, tb, M, N, K, A, lda, B, ldb, beta, C1, N);                                          \
        tg_gemm_prepacked_##SFX(ta, tb, M, N, K, A, lda, B, ldb, Bp, beta, C2, N);                            \
        cr_assert(memcmp(C1, C2, (size_t)(M * N) * sizeof(TY)) == 0,                                          \
                  #SFX " ta=%d tb=%d %ldx%ldx%ld beta=%g: prepacked differs from tg_gemm", ta, tb, (long)M,   \
                  (long)N, (long)K, (double)beta);                                                            \
        free(A); free(B); free(C1); free(C2); free(Bp);                                                       \
    }
PP_CASE(float, f32)
PP_CASE(double, f64)

Test(gemm, prepacked_bit_identical, .timeout = 120)
{
    static const shape3 shapes[] = {{32, 1024, 256}, {32, 256, 1024}, {9, 2100, 300}, {3, 512, 128},
                                    {67, 45, 90},    {200, 40, 513}};
    for (int nt = 1; nt <= 2; nt++) {
        tg_set_num_threads(nt);
        for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++)
            for (int ta = 0; ta < 2; ta++)
                for (int tb = 0; tb < 2; tb++) {
                    const shape3 c = shapes[s];
                    prepacked_case_f32(ta, tb, c.M, c.N, c.K, (float)(tb ^ ta));
                    prepacked_case_f64(ta, tb, c.M, c.N, c.K, (double)(tb & ta));
                }
    }
    tg_set_num_threads(1);
    cr_assert(tg_gemm_packs(1, 32, 1024, 256) && !tg_gemm_packs(1, 1, 1024, 256) && !tg_gemm_packs(0, 8, 8, 8));
}

/* tg_gemm_linear_* (C = add + (bias + op(A)·op(B)), the bias applied in the micro-kernel's stores) must
 * equal, bit for bit, what linear did before: the bias written into every row of C, tg_gemm with beta 1
 * (0 without a bias), then C = add + C. Covers one and several K blocks (the bias belongs to the first
 * block only), partial tiles (M, N not multiples of the tile), the direct path (tiny M, small problems:
 * the unfused fallback), a pre-packed op(B) and two threads (column chunks with their slice of the bias,
 * row chunks). */
#define LIN_CASE(TY, SFX)                                                                                     \
    static void linear_case_##SFX(int ta, int tb, int64_t M, int64_t N, int64_t K, int use_bias, int use_add, \
                                  int use_bp)                                                                 \
    {                                                                                                         \
        const int64_t lda = ta ? M : K, ldb = tb ? K : N;                                                     \
        TY *A = malloc((size_t)(M * K + 1) * sizeof(TY)), *B = malloc((size_t)(N * K + 1) * sizeof(TY));              \
        TY *C1 = malloc((size_t)(M * N + 1) * sizeof(TY)), *C2 = malloc((size_t)(M * N + 1) * sizeof(TY));            \
        TY *D = malloc((size_t)(M * N + 1) * sizeof(TY)), *bias = malloc((size_t)(N + 1) * sizeof(TY));                 \
        TY *Bp = aligned_alloc(64, (tg_gemm_packed_b_size_##SFX(N, K) + 63) / 64 * 64 + 64);                  \
        cr_assert(A && B && C1 && C2 && D && bias && Bp);                                                     \
        for (int64_t i = 0; i < M * K; i++) A[i] = (TY)lcg_uniform();                                        \
        for (int64_t i = 0; i < N * K; i++) B[i] = (TY)lcg_uniform();                                        \
        for (int64_t i = 0; i < M * N; i++) { D[i] = (TY)lcg_uniform(); C1[i] = C2[i] = (TY)NAN; }           \
        for (int64_t j = 0; j < N; j++) bias[j] = (TY)(10 * lcg_uniform());                                  \
        tg_gemm_pack_b_##SFX(tb, N, K, B, ldb, Bp);                                                           \
        for (int64_t i = 0; use_bias && i < M; i++) memcpy(C1 + i * N, bias, (size_t)N * sizeof(TY));       \
        tg_gemm_##SFX(ta, tb, M, N, K, A, lda, B, ldb, use_bias ? (TY)1 : (TY)0, C1, N);                      \
        for (int64_t i = 0; use_add && i < M * N; i++) C1[i] = D[i] + C1[i];                                  \
        tg_gemm_linear_##SFX(ta, tb, M, N, K, A, lda, B, ldb, use_bp ? Bp : NULL, use_bias ? bias : NULL,     \
                             use_add ? D : NULL, C2, N);                                                      \
        cr_assert(memcmp(C1, C2, (size_t)(M * N) * sizeof(TY)) == 0,                                          \
                  #SFX " ta=%d tb=%d %ldx%ldx%ld bias=%d add=%d Bp=%d: tg_gemm_linear differs from bias rows " \
                  "+ tg_gemm + add", ta, tb, (long)M, (long)N, (long)K, use_bias, use_add, use_bp);          \
        free(A); free(B); free(C1); free(C2); free(D); free(bias); free(Bp);                                  \
    }
LIN_CASE(float, f32)
LIN_CASE(double, f64)

Test(gemm, linear_epilogue_bit_identical, .timeout = 120)
{
    static const shape3 shapes[] = {{64, 2048, 512}, {67, 45, 90}, {200, 40, 513}, {3, 512, 128},
                                    {9, 2100, 300}, {5, 7, 3},     {0, 8, 8},      {8, 8, 0}};
    for (int nt = 1; nt <= 2; nt++) {
        tg_set_num_threads(nt);
        for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++)
            for (int ta = 0; ta < 2; ta++)
                for (int tb = 0; tb < 2; tb++)
                    for (int mode = 0; mode < 8; mode++) {
                        const shape3 c = shapes[s];
                        linear_case_f32(ta, tb, c.M, c.N, c.K, mode & 1, (mode >> 1) & 1, (mode >> 2) & 1);
                        if (mode == 7 || s < 3) linear_case_f64(ta, tb, c.M, c.N, c.K, mode & 1, (mode >> 1) & 1, 1);
                    }
    }
    tg_set_num_threads(1);
}

/* One row of op(A) takes its own direct paths (tensor/gemm.c tg_direct_nt_row: the VL dot products
 * reduced together; tg_direct_nn_row: up to 8 vectors of C in flight): each row must equal, bit for
 * bit, the same row computed inside a 2-row product (tg_direct_nt_block / tg_direct_nn_rows with dm =
 * 2, the arithmetic the one-row paths had before). All four transposes, K and N with and without vector
 * tails, beta 0, 1 and 0.75 over a C that holds values; run once per kernel target (tests/meson.build). */
#define ROW_CASE(TY, SFX)                                                                                      \
    static void one_row_case_##SFX(int ta, int tb, int64_t N, int64_t K, TY beta)                              \
    {                                                                                                          \
        const int64_t M = 2, lda = ta ? M : K, ldb = tb ? K : N;                                               \
        TY *A = malloc((size_t)(M * K) * sizeof(TY)), *A1 = malloc((size_t)K * sizeof(TY));                    \
        TY *B = malloc((size_t)(N * K) * sizeof(TY)), *C0 = malloc((size_t)(M * N) * sizeof(TY));              \
        TY *C2 = malloc((size_t)(M * N) * sizeof(TY)), *C1 = malloc((size_t)N * sizeof(TY));                   \
        cr_assert(A && A1 && B && C0 && C2 && C1);                                                             \
        for (int64_t i = 0; i < M * K; i++) A[i] = (TY)lcg_uniform();                                         \
        for (int64_t i = 0; i < N * K; i++) B[i] = (TY)lcg_uniform();                                         \
        for (int64_t i = 0; i < M * N; i++) C0[i] = C2[i] = (TY)lcg_uniform();                                \
        tg_gemm_##SFX(ta, tb, M, N, K, A, lda, B, ldb, beta, C2, N);                                           \
        for (int64_t r = 0; r < M; r++) {                                                                      \
            for (int64_t k = 0; k < K; k++) A1[k] = ta ? A[k * M + r] : A[r * K + k]; /* row r of op(A) */    \
            memcpy(C1, C0 + r * N, (size_t)N * sizeof(TY));                                                   \
            tg_gemm_##SFX(ta, tb, 1, N, K, A1, ta ? 1 : K, B, ldb, beta, C1, N);                               \
            for (int64_t j = 0; j < N; j++)                                                                    \
                cr_assert(memcmp(&C1[j], &C2[r * N + j], sizeof(TY)) == 0,                                     \
                          #SFX " ta=%d tb=%d N=%ld K=%ld beta=%g: row %ld [%ld] alone %.17g, in 2 rows %.17g", \
                          ta, tb, (long)N, (long)K, (double)beta, (long)r, (long)j, (double)C1[j],            \
                          (double)C2[r * N + j]);                                                              \
        }                                                                                                      \
        free(A); free(A1); free(B); free(C0); free(C2); free(C1);                                              \
    }
ROW_CASE(float, f32)
ROW_CASE(double, f64)

Test(gemm, one_row_equals_the_same_row_of_two_rows)
{
    static const int64_t Ns[] = {1, 5, 8, 16, 17, 33, 64, 100, 130, 256, 300};
    static const int64_t Ks[] = {1, 3, 8, 16, 17, 40, 64, 100, 256};
    static const double betas[] = {0.0, 1.0, 0.75};
    for (size_t n = 0; n < sizeof Ns / sizeof Ns[0]; n++)
        for (size_t k = 0; k < sizeof Ks / sizeof Ks[0]; k++)
            for (size_t b = 0; b < 3; b++)
                for (int ta = 0; ta < 2; ta++)
                    for (int tb = 0; tb < 2; tb++) {
                        one_row_case_f32(ta, tb, Ns[n], Ks[k], (float)betas[b]);
                        one_row_case_f64(ta, tb, Ns[n], Ks[k], betas[b]);
                    }
}
