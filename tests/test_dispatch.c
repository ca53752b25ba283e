/* tests/test_dispatch.c - run-time CPU dispatch of the kernels (tensor/dispatch.h): every target this
 * CPU runs gives the generic build's results (within rounding: FMA and vector width change the order
 * of operations), TAPEGRAD_CPU picks the target, and the public names report it. The whole gemm and
 * vmath suites also run once per TAPEGRAD_CPU value (tests/meson.build). */
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <tapegrad/tapegrad.h>

#include "tensor/dispatch.h"

static const char *const targets[] = {"avx512", "avx2"};

static double frand(unsigned *s) {
    *s = *s * 1103515245u + 12345u;
    return (double)((*s >> 8) & 0xFFFF) / 32768.0 - 1.0;
}

/* op(A)·op(B) through target k and through generic, F32 and F64, beta 0 and 1, largest relative error
 * (to the largest |C|) reported. */
static void gemm_agrees(const tg_kernels *k, const tg_kernels *g, int ta, int tb, int64_t M, int64_t N, int64_t K) {
    unsigned s = (unsigned)(M * 131 + N * 17 + K + ta * 7 + tb);
    int64_t na = M * K, nb = K * N, nc = M * N;
    float *a = malloc(sizeof *a * na), *b = malloc(sizeof *b * nb), *c1 = malloc(sizeof *c1 * nc), *c2 = malloc(sizeof *c2 * nc);
    double *ad = malloc(sizeof *ad * na), *bd = malloc(sizeof *bd * nb), *d1 = malloc(sizeof *d1 * nc), *d2 = malloc(sizeof *d2 * nc);
    cr_assert(a && b && c1 && c2 && ad && bd && d1 && d2);
    for (int64_t i = 0; i < na; i++) ad[i] = a[i] = (float)frand(&s);
    for (int64_t i = 0; i < nb; i++) bd[i] = b[i] = (float)frand(&s);
    for (int beta = 0; beta < 2; beta++) {
        for (int64_t i = 0; i < nc; i++) d1[i] = d2[i] = c1[i] = c2[i] = (float)frand(&s);
        int64_t lda = ta ? M : K, ldb = tb ? K : N;
        k->tg_gemm_f32(ta, tb, M, N, K, a, lda, b, ldb, (float)beta, c1, N);
        g->tg_gemm_f32(ta, tb, M, N, K, a, lda, b, ldb, (float)beta, c2, N);
        k->tg_gemm_f64(ta, tb, M, N, K, ad, lda, bd, ldb, beta, d1, N);
        g->tg_gemm_f64(ta, tb, M, N, K, ad, lda, bd, ldb, beta, d2, N);
        double e32 = 0, e64 = 0, scale = 1;
        for (int64_t i = 0; i < nc; i++) scale = fmax(scale, fabs(d2[i]));
        for (int64_t i = 0; i < nc; i++) {
            e32 = fmax(e32, fabs((double)c1[i] - c2[i]) / scale);
            e64 = fmax(e64, fabs(d1[i] - d2[i]) / scale);
        }
        cr_expect(e32 < 1e-5 && e64 < 1e-13, "%s vs generic: gemm ta=%d tb=%d %ldx%ldx%ld beta=%d: F32 %.3g, F64 %.3g",
                  k->name, ta, tb, (long)M, (long)N, (long)K, beta, e32, e64);
    }
    /* pre-packed B: each target packs in its own layout, results as its plain gemm */
    if (k->tg_gemm_packs(tb, M, N, K)) {
        float *bp = aligned_alloc(64, (k->tg_gemm_packed_b_size_f32(N, K) + 63) / 64 * 64);
        cr_assert(bp);
        k->tg_gemm_pack_b_f32(tb, N, K, b, tb ? K : N, bp);
        k->tg_gemm_prepacked_f32(ta, tb, M, N, K, a, ta ? M : K, b, tb ? K : N, bp, 0.0f, c2, N);
        k->tg_gemm_f32(ta, tb, M, N, K, a, ta ? M : K, b, tb ? K : N, 0.0f, c1, N);
        cr_expect(memcmp(c1, c2, sizeof *c1 * nc) == 0, "%s: prepacked differs from gemm", k->name);
        free(bp);
    }
    free(a), free(b), free(c1), free(c2), free(ad), free(bd), free(d1), free(d2);
}

/* The LSTM step's pointwise kernels (tensor/steps.h) through target k and through generic: forward (A
 * over xp, as the runner calls it) and backward, both assign and accumulate into dc, H = 300 (more
 * than one 256-element chunk of the backward, and not a multiple of any vector width). Only tanh and
 * sigmoid differ between targets (FMA), so the results agree to a few ulps. */
static void lstm_rows_agree(const tg_kernels *k, const tg_kernels *g) {
    enum { R = 3, H = 300, GH = 4 * H };
    static float xp1[R * GH], xp2[R * GH], hp1[R * GH], hp2[R * GH], c[R * H], hc1[2 * R * H], hc2[2 * R * H];
    static float gh[2 * R * H], D1[R * GH], D2[R * GH], dc1[R * H], dc2[R * H];
    unsigned s = 11;
    for (int i = 0; i < R * GH; i++) xp1[i] = xp2[i] = (float)(frand(&s) * 4.0), hp1[i] = hp2[i] = (float)frand(&s);
    for (int i = 0; i < R * H; i++) c[i] = (float)frand(&s);
    for (int i = 0; i < 2 * R * H; i++) gh[i] = (float)frand(&s);
    k->tg_lstm_fwd_rows_f32(xp1, hc1, hc1 + R * H, hp1, xp1, c, R, H);
    g->tg_lstm_fwd_rows_f32(xp2, hc2, hc2 + R * H, hp2, xp2, c, R, H);
    for (int i = 0; i < R * GH; i++)
        cr_assert(fabsf(xp1[i] - xp2[i]) <= 1e-6f && hp1[i] == hp2[i], "%s vs generic: lstm forward gate %d: %.9g vs %.9g",
                  k->name, i, xp1[i], xp2[i]);
    for (int i = 0; i < 2 * R * H; i++)
        cr_assert(fabsf(hc1[i] - hc2[i]) <= 1e-6f, "%s vs generic: lstm forward h/c %d: %.9g vs %.9g", k->name, i,
                  hc1[i], hc2[i]);
    for (int assign = 1; assign >= 0; assign--) {
        k->tg_lstm_bwd_rows_f32(D1, dc1, assign, xp2, c, hc2 + R * H, gh, gh + R * H, R, H);
        g->tg_lstm_bwd_rows_f32(D2, dc2, assign, xp2, c, hc2 + R * H, gh, gh + R * H, R, H);
        for (int i = 0; i < R * GH; i++)
            cr_assert(fabsf(D1[i] - D2[i]) <= 1e-6f, "%s vs generic: lstm backward %d: %.9g vs %.9g", k->name, i, D1[i], D2[i]);
        for (int i = 0; i < R * H; i++)
            cr_assert(fabsf(dc1[i] - dc2[i]) <= 2e-6f, "%s vs generic: lstm backward dc %d (assign %d): %.9g vs %.9g", k->name,
                      i, assign, dc1[i], dc2[i]);
    }
    static double xd1[R * GH], xd2[R * GH], hd1[R * GH], hd2[R * GH], cd[R * H], od1[2 * R * H], od2[2 * R * H];
    static double Dd1[R * GH], Dd2[R * GH];
    for (int i = 0; i < R * GH; i++) xd1[i] = xd2[i] = frand(&s) * 4.0, hd1[i] = hd2[i] = frand(&s);
    for (int i = 0; i < R * H; i++) cd[i] = frand(&s);
    k->tg_lstm_fwd_rows_f64(xd1, od1, od1 + R * H, hd1, xd1, cd, R, H);
    g->tg_lstm_fwd_rows_f64(xd2, od2, od2 + R * H, hd2, xd2, cd, R, H);
    k->tg_lstm_bwd_rows_f64(Dd1, NULL, 0, xd2, cd, od2 + R * H, od2, od2, R, H);
    g->tg_lstm_bwd_rows_f64(Dd2, NULL, 0, xd2, cd, od2 + R * H, od2, od2, R, H);
    for (int i = 0; i < R * GH; i++)
        cr_assert(fabs(xd1[i] - xd2[i]) <= 1e-15 && fabs(Dd1[i] - Dd2[i]) <= 1e-15, "%s vs generic: lstm F64 %d", k->name, i);
}

Test(dispatch, every_target_this_cpu_runs_agrees_with_generic) {
    const tg_kernels *g = tg__kernels_named("generic");
    if (!g) g = tg__kernels_named("native"); /* a -Dnative=true build has nothing else */
    cr_assert_not_null(g);
    int compared = 0;
    for (size_t t = 0; t < sizeof targets / sizeof targets[0]; t++) {
        const tg_kernels *k = tg__kernels_named(targets[t]);
        if (!k) {
            cr_log_info("%s: not built or not run by this CPU, not compared", targets[t]);
            continue;
        }
        compared++;
        static const int64_t shapes[][3] = {{1, 7, 5}, {3, 33, 17}, {32, 1024, 256}, {37, 130, 300}, {200, 96, 64}};
        for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++)
            for (int ta = 0; ta < 2; ta++)
                for (int tb = 0; tb < 2; tb++) gemm_agrees(k, g, ta, tb, shapes[i][0], shapes[i][1], shapes[i][2]);
        enum { N = 4099 };
        static float x[N], y1[N], y2[N];
        static double xd[N], z1[N], z2[N];
        unsigned s = 7;
        for (int i = 0; i < N; i++) xd[i] = x[i] = (float)(frand(&s) * 30.0);
        void (*f32k[3])(float *, const float *, int64_t) = {k->tg_vexp_f32, k->tg_vtanh_f32, k->tg_vsigmoid_f32};
        void (*f32g[3])(float *, const float *, int64_t) = {g->tg_vexp_f32, g->tg_vtanh_f32, g->tg_vsigmoid_f32};
        void (*f64k[3])(double *, const double *, int64_t) = {k->tg_vexp_f64, k->tg_vtanh_f64, k->tg_vsigmoid_f64};
        void (*f64g[3])(double *, const double *, int64_t) = {g->tg_vexp_f64, g->tg_vtanh_f64, g->tg_vsigmoid_f64};
        for (int f = 0; f < 3; f++) {
            f32k[f](y1, x, N), f32g[f](y2, x, N), f64k[f](z1, xd, N), f64g[f](z2, xd, N);
            for (int i = 0; i < N; i++) {
                cr_assert(fabsf(y1[i] - y2[i]) <= 4e-7f * fabsf(y2[i]), "%s vs generic: vmath %d at %.9g: %.9g vs %.9g",
                          k->name, f, x[i], y1[i], y2[i]);
                cr_assert(fabs(z1[i] - z2[i]) <= 1e-15 * fabs(z2[i]), "%s vs generic: vmath %d F64 at %.17g: %.17g vs %.17g",
                          k->name, f, xd[i], z1[i], z2[i]);
            }
        }
        lstm_rows_agree(k, g);
        float s1 = k->tg_vsum_f32(x, N), s2 = g->tg_vsum_f32(x, N);
        cr_expect(fabsf(s1 - s2) <= 1e-4f, "%s vs generic: sum %.9g vs %.9g", k->name, s1, s2);
        cr_expect(fabs(k->tg_vsum_f64(xd, N) - g->tg_vsum_f64(xd, N)) <= 1e-11, "%s vs generic: sum F64", k->name);
    }
    cr_log_info("%d target(s) compared with generic", compared);
}

/* TAPEGRAD_CPU (set by the meson test runs) is obeyed when the CPU can run that target. */
Test(dispatch, forced_target_is_the_one_used) {
    const char *want = getenv("TAPEGRAD_CPU");
    const char *got = tg_kernel_target();
    cr_assert(strstr(tg_kernel_targets(), got) != NULL, "chosen %s is not among the built: %s", got, tg_kernel_targets());
    if (!want || !*want || !strcmp(want, "auto")) {
        /* the best this CPU runs: the first of the built list that tg__kernels_named accepts */
        char list[64];
        snprintf(list, sizeof list, "%s", tg_kernel_targets());
        char *first = NULL;
        for (char *p = strtok(list, " "); p && !first; p = strtok(NULL, " "))
            if (tg__kernels_named(p)) first = p;
        cr_assert_not_null(first);
        cr_expect_str_eq(got, first);
    } else if (tg__kernels_named(want)) {
        cr_expect_str_eq(got, want, "TAPEGRAD_CPU=%s but the kernels used are %s", want, got);
    } else {
        cr_log_info("TAPEGRAD_CPU=%s: not run by this CPU, %s used", want, got);
    }
    cr_expect_eq(tg__kernels(), tg__kernels_named(got));
}
