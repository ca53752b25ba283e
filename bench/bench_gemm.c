/* bench/bench_gemm.c - GFLOP/s of tg_gemm_f32 / tg_gemm_f64 for square and recurrent-step shapes.
 *
 * usage: bench_gemm [min_seconds [repeats]]
 *   min_seconds  each measurement repeats the call until at least this long (default 0.2)
 *   repeats      measurements per cell, the best is printed (default 1; use 3+ on a busy machine)
 */
#ifndef _POSIX_C_SOURCE
#define _POSIX_C_SOURCE 200809L
#endif

#include "tensor/gemm.h"

#include <tapegrad/tensor.h>

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "bench_common.h"

static uint64_t lcg = 88172645463325252ULL;
static double lcg_uniform(void)
{
    lcg = lcg * 6364136223846793005ULL + 1442695040888963407ULL;
    return (double)(lcg >> 11) * 0x1.0p-52 - 1.0;
}

static double min_time = 0.2;
static int repeats = 1;

/* Times C = op(A)·op(B) (beta = 0, C contiguous) and returns GFLOP/s. */
static double bench_one(int prec, int ta, int tb, int64_t M, int64_t N, int64_t K)
{
    const size_t esz = prec == 32 ? sizeof(float) : sizeof(double);
    const size_t na = (size_t)(M * K), nb = (size_t)(K * N), nc = (size_t)(M * N);
    void *A = malloc(na * esz), *B = malloc(nb * esz), *C = malloc(nc * esz);
    if (!A || !B || !C) {
        fprintf(stderr, "out of memory\n");
        exit(1);
    }
    for (size_t i = 0; i < na; i++) {
        if (prec == 32) ((float *)A)[i] = (float)lcg_uniform();
        else ((double *)A)[i] = lcg_uniform();
    }
    for (size_t i = 0; i < nb; i++) {
        if (prec == 32) ((float *)B)[i] = (float)lcg_uniform();
        else ((double *)B)[i] = lcg_uniform();
    }
    const int64_t lda = ta ? M : K, ldb = tb ? K : N, ldc = N;

    /* warm-up call (workspace allocation, worker start-up) */
    if (prec == 32) tg_gemm_f32(ta, tb, M, N, K, A, lda, B, ldb, 0.0f, C, ldc);
    else tg_gemm_f64(ta, tb, M, N, K, A, lda, B, ldb, 0.0, C, ldc);
    double best = 0.0;
    for (int r = 0; r < repeats; r++) {
        long reps = 0, batch = 1;
        const double t0 = bench_wall_now();
        double elapsed = 0.0;
        while (elapsed < min_time) {
            for (long q = 0; q < batch; q++) {
                if (prec == 32) tg_gemm_f32(ta, tb, M, N, K, A, lda, B, ldb, 0.0f, C, ldc);
                else tg_gemm_f64(ta, tb, M, N, K, A, lda, B, ldb, 0.0, C, ldc);
            }
            reps += batch;
            elapsed = bench_wall_now() - t0;
            if (elapsed < min_time / 8) batch *= 2;
        }
        const double gflops = 2.0 * (double)M * (double)N * (double)K * (double)reps / elapsed * 1e-9;
        if (gflops > best) best = gflops;
    }
    free(A);
    free(B);
    free(C);
    return best;
}

typedef struct {
    const char *label;
    int ta, tb;
    int64_t M, N, K;
} bcase;

static void run_table(const char *title, const bcase *cases, int ncases)
{
    printf("\n%s\n", title);
    printf("%-34s %6s %6s %6s | %9s %9s | %9s %9s\n", "case", "M", "N", "K", "f32 1T", "f32 2T", "f64 1T",
           "f64 2T");
    printf("%-34s %6s %6s %6s | %9s %9s | %9s %9s\n", "", "", "", "", "GFLOP/s", "GFLOP/s", "GFLOP/s", "GFLOP/s");
    for (int i = 0; i < ncases; i++) {
        const bcase *c = &cases[i];
        double g[4];
        int k = 0;
        for (int prec = 32; prec <= 64; prec += 32)
            for (int nt = 1; nt <= 2; nt++) {
                tg_set_num_threads(nt);
                g[k++] = bench_one(prec, c->ta, c->tb, c->M, c->N, c->K);
            }
        tg_set_num_threads(1);
        printf("%-34s %6ld %6ld %6ld | %9.1f %9.1f | %9.1f %9.1f\n", c->label, (long)c->M, (long)c->N, (long)c->K,
               g[0], g[1], g[2], g[3]);
        fflush(stdout);
    }
}

int main(int argc, char **argv)
{
    if (argc > 1) min_time = atof(argv[1]);
    if (min_time <= 0) min_time = 0.2;
    if (argc > 2) repeats = atoi(argv[2]);
    if (repeats < 1) repeats = 1;
    printf("tg_gemm benchmark: C = op(A).op(B), beta = 0, contiguous operands; >= %.2f s per measurement, "
           "best of %d\n", min_time, repeats);

    static const int sizes[] = {64, 128, 256, 512, 1024};
    static const char *forms[] = {"A.B", "A.Bt", "At.B"};
    static const int form_ta[] = {0, 0, 1}, form_tb[] = {0, 1, 0};
    bcase sq[3 * 5];
    char labels[3 * 5][40];
    int n = 0;
    for (int f = 0; f < 3; f++)
        for (int s = 0; s < 5; s++) {
            snprintf(labels[n], sizeof labels[n], "%-5s square %d", forms[f], sizes[s]);
            sq[n] = (bcase){labels[n], form_ta[f], form_tb[f], sizes[s], sizes[s], sizes[s]};
            n++;
        }
    run_table("Square GEMM, C = op(A).op(B), beta = 0", sq, n);

    static const bcase rnn[] = {
        {"fwd  [32,128].[512,128]t", 0, 1, 32, 512, 128},
        {"fwd  [64,256].[1024,256]t", 0, 1, 64, 1024, 256},
        {"fwd  [1,128].[512,128]t", 0, 1, 1, 512, 128},
        {"bwd dX [32,512].[512,128]", 0, 0, 32, 128, 512},
        {"bwd dW [32,512]t.[32,128]", 1, 0, 512, 128, 32},
        {"bwd dX [64,1024].[1024,256]", 0, 0, 64, 256, 1024},
        {"bwd dW [64,1024]t.[64,256]", 1, 0, 1024, 256, 64},
        {"bwd dX [1,512].[512,128]", 0, 0, 1, 128, 512},
        {"bwd dW [1,512]t.[1,128]", 1, 0, 512, 128, 1},
    };
    run_table("Recurrent-step shapes (t = transposed operand)", rnn, (int)(sizeof rnn / sizeof rnn[0]));
    return 0;
}
