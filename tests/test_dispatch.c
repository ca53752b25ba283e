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
#include "tensor/velem.h"

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

/* |a − b| <= tol (1 + |b|) over n floats, or the test fails naming what and where */
static void close_f32(const char *target, const char *what, const float *a, const float *b, int n, float tol) {
    for (int i = 0; i < n; i++)
        cr_assert(fabsf(a[i] - b[i]) <= tol * (1 + fabsf(b[i])), "%s vs generic: %s %d: %.9g vs %.9g", target, what, i,
                  a[i], b[i]);
}

/* The GRU step's pointwise kernels (tensor/steps.h) through target k and through generic: forward with
 * A over xp (the recorded case) and in a buffer of its own, backward with dh assigned, accumulated and
 * not wanted, H = 300 (not a multiple of any vector width). Only tanh and sigmoid differ between
 * targets (FMA), so the results agree to a few ulps. */
static void gru_rows_agree(const tg_kernels *k, const tg_kernels *g) {
    enum { R = 3, H = 300, GH = 3 * H };
    static float xp[R * GH], hp[R * GH], h[R * H], A1[R * GH], A2[R * GH], o1[2 * R * H], o2[2 * R * H];
    static float gy[2 * R * H], D1[R * GH], D2[R * GH], P1[R * GH], P2[R * GH], dh1[R * H], dh2[R * H];
    unsigned s = 13;
    for (int i = 0; i < R * GH; i++) xp[i] = (float)(frand(&s) * 4.0), hp[i] = (float)frand(&s);
    for (int i = 0; i < R * H; i++) h[i] = (float)frand(&s);
    for (int i = 0; i < 2 * R * H; i++) gy[i] = (float)frand(&s);
    for (int over = 0; over < 2; over++) { /* A in its own buffer, then over xp */
        if (over) memcpy(A1, xp, sizeof xp), memcpy(A2, xp, sizeof xp);
        k->tg_gru_fwd_rows_f32(A1, o1, o1 + R * H, over ? A1 : xp, hp, h, R, H);
        g->tg_gru_fwd_rows_f32(A2, o2, o2 + R * H, over ? A2 : xp, hp, h, R, H);
        close_f32(k->name, over ? "gru forward gates (over xp)" : "gru forward gates", A1, A2, R * GH, 1e-6f);
        close_f32(k->name, "gru forward h', hp_n", o1, o2, 2 * R * H, 1e-6f);
    }
    for (int i = 0; i < R * H; i++) cr_assert(o2[R * H + i] == hp[(i / H) * GH + 2 * H + i % H], "gru forward: hp_n kept");
    for (int mode = 0; mode < 3; mode++) { /* dh assigned, added to, not wanted */
        for (int i = 0; i < R * H; i++) dh1[i] = dh2[i] = (float)i / 100;
        k->tg_gru_bwd_rows_f32(D1, P1, mode < 2 ? dh1 : NULL, mode == 0, A2, o2 + R * H, h, gy, gy + R * H, R, H);
        g->tg_gru_bwd_rows_f32(D2, P2, mode < 2 ? dh2 : NULL, mode == 0, A2, o2 + R * H, h, gy, gy + R * H, R, H);
        cr_assert(memcmp(D1, D2, sizeof D1) == 0 && memcmp(P1, P2, sizeof P1) == 0 && memcmp(dh1, dh2, sizeof dh1) == 0,
                  "%s vs generic: gru backward (mode %d) differs: it has no tanh or sigmoid, so it is bit-identical", k->name, mode);
        if (mode < 2)
            for (int i = 0; i < R * H; i++) {
                const int r = i / H, j = i % H;
                const float z = A2[r * GH + H + j], want = mode == 0 ? gy[i] * z : (float)i / 100 + gy[i] * z;
                cr_assert(dh1[i] == want, "%s: gru backward dh %d (mode %d): %.9g, want %.9g", k->name, i, mode, dh1[i], want);
            }
    }
    static double xd[R * GH], hd[R * GH], h_d[R * H], Ad1[R * GH], Ad2[R * GH], od1[2 * R * H], od2[2 * R * H];
    static double Dd1[R * GH], Dd2[R * GH], Pd1[R * GH], Pd2[R * GH];
    for (int i = 0; i < R * GH; i++) xd[i] = frand(&s) * 4.0, hd[i] = frand(&s);
    for (int i = 0; i < R * H; i++) h_d[i] = frand(&s);
    k->tg_gru_fwd_rows_f64(Ad1, od1, od1 + R * H, xd, hd, h_d, R, H);
    g->tg_gru_fwd_rows_f64(Ad2, od2, od2 + R * H, xd, hd, h_d, R, H);
    k->tg_gru_bwd_rows_f64(Dd1, Pd1, NULL, 0, Ad2, od2 + R * H, h_d, od2, od2, R, H);
    g->tg_gru_bwd_rows_f64(Dd2, Pd2, NULL, 0, Ad2, od2 + R * H, h_d, od2, od2, R, H);
    for (int i = 0; i < R * GH; i++)
        cr_assert(fabs(Ad1[i] - Ad2[i]) <= 1e-15 && Dd1[i] == Dd2[i] && Pd1[i] == Pd2[i], "%s vs generic: gru F64 %d", k->name, i);
}

/* The zoo's GRU-like row kernels (tensor/steps.h) through target k and through generic, forward (A over
 * xp) and backward (gradients assigned, then added to), for four layouts written out here as
 * autograd/ops_zoo_gru.c's gz_layout_of makes them: MGU (one gate), MUT1 (u from xp alone, h̃ of tanh(x),
 * a kept part), MUT2 (one shared product, s of x, a kept part), Cho's GRU (s first, keep h). */
static void gruz_rows_agree(const tg_kernels *k, const tg_kernels *g) {
    enum { R = 3, H = 300, NX = 3, K = 2 };
    static const struct { const char *name; tg_gz_layout L; } cases[] = {
        {"mgu", {.nx = 2, .K = 1, .bu = 0, .bs = 0, .bc = 1, .one = true, .u_rec = true}},
        {"mut1", {.nx = 2, .K = 2, .bu = 0, .bs = 1, .bc = -1, .kc = 1, .u_rec = false, .c_x = true}},
        {"mut2", {.nx = 2, .K = 2, .bu = 0, .bs = -1, .bc = 1, .ks = 1, .u_rec = true, .s_x = true, .shared = true}},
        {"gru_reset_before", {.nx = 3, .K = 1, .bu = 1, .bs = 0, .bc = 2, .u_rec = true, .keep_h = true}},
    };
    static float xp[R * NX * H], x[R * H], h[R * H], pu[R * 2 * H], ps[R * 2 * H], pc[R * H], gr[K * R * H], dq[R * H];
    static float A[2][R * NX * H], out[2][K * R * H], q[2][R * H];
    static float Du[2][R * H], Ds[2][R * H], Dc[2][R * H], q2[2][R * H], gh[2][R * H], gx[2][R * H], Dx[2][R * NX * H];
    unsigned s = 17;
    for (int i = 0; i < R * NX * H; i++) xp[i] = (float)(frand(&s) * 4.0);
    for (int i = 0; i < R * H; i++) x[i] = (float)frand(&s), h[i] = (float)frand(&s), pc[i] = (float)frand(&s), dq[i] = (float)frand(&s);
    for (int i = 0; i < R * 2 * H; i++) pu[i] = (float)frand(&s), ps[i] = (float)frand(&s);
    for (int i = 0; i < K * R * H; i++) gr[i] = (float)frand(&s);
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        const tg_gz_layout L = cases[c].L;
        const char *nm = cases[c].name;
        const int64_t W = L.nx * H;
        for (int t = 0; t < 2; t++) {
            const tg_kernels *kt = t ? g : k;
            memcpy(A[t], xp, sizeof A[t]);
            memset(out[t], 0, sizeof out[t]);
            tg_gz_fwd f = {A[t], x, h, L.shared ? ps : L.u_rec ? pu : NULL, L.one ? NULL : ps, pc, A[t], out[t], q[t], L,
                           R, H, 0, L.shared ? H : 0, L.shared ? 2 * H : H};
            kt->tg_gz_gates_rows_f32(&f, 0, R);
            kt->tg_gz_blend_rows_f32(&f, 0, R);
        }
        char what[96];
        snprintf(what, sizeof what, "%s forward activations", nm);
        close_f32(k->name, what, A[0], A[1], (int)(R * W), 1e-6f);
        snprintf(what, sizeof what, "%s forward result", nm);
        close_f32(k->name, what, out[0], out[1], K * R * H, 1e-6f);
        snprintf(what, sizeof what, "%s forward s h", nm);
        close_f32(k->name, what, q[0], q[1], R * H, 1e-6f);
        for (int assign = 1; assign >= 0; assign--) {
            for (int t = 0; t < 2; t++) {
                const tg_kernels *kt = t ? g : k;
                for (int i = 0; i < R * H; i++) gh[t][i] = gx[t][i] = 0.25f;
                tg_gz_bwd b = {A[1], out[1], gr, h, x, dq, Du[t], L.one ? NULL : Ds[t], Dc[t], q2[t], gh[t], gx[t], Dx[t],
                               assign, assign, L, R, H};
                kt->tg_gz_bwd1_rows_f32(&b, 0, R);
                b.ah = false;
                kt->tg_gz_bwd2_rows_f32(&b, 0, R);
            }
            const struct { const char *n; const float *a, *b; int len; } outs[] = {
                {"Du", Du[0], Du[1], R * H}, {"Dc", Dc[0], Dc[1], R * H}, {"q", q2[0], q2[1], R * H},
                {"dh", gh[0], gh[1], R * H}, {"dx", gx[0], gx[1], R * H}, {"Dx", Dx[0], Dx[1], (int)(R * W)},
                {"Ds", L.one ? Du[0] : Ds[0], L.one ? Du[1] : Ds[1], R * H}};
            for (size_t o = 0; o < sizeof outs / sizeof outs[0]; o++) {
                snprintf(what, sizeof what, "%s backward %s (assign %d)", nm, outs[o].n, assign);
                close_f32(k->name, what, outs[o].a, outs[o].b, outs[o].len, L.c_x ? 4e-6f : 0);
            }
        }
    }
}

/* The optimizers' update kernels (tensor/updates.h) through target k and through generic: only
 * correctly rounded operations without contraction, so the bits must be equal, for every flag of each
 * kernel, F32 and F64, n = 37 (a vector tail on every target), state that has been updated before,
 * a NaN in the gradient and one in the state. */
static void updates_agree(const tg_kernels *k, const tg_kernels *g) {
    enum { N = 37 };
    typedef void (*upd32)(float *, float *, float *, float *, const float *, int64_t, const tg_upd *);
    typedef void (*upd64)(double *, double *, double *, double *, const double *, int64_t, const tg_upd *);
    const struct { const char *name; upd32 k32, g32; upd64 k64, g64; unsigned flags; bool s0_mean; } kernels[] = {
#define UPD_ROW(name, flags, s0_mean) \
    {#name, k->tg_upd_##name##_f32, g->tg_upd_##name##_f32, k->tg_upd_##name##_f64, g->tg_upd_##name##_f64, flags, s0_mean}
        UPD_ROW(adam, TG_UPD_L2 | TG_UPD_DECOUPLED | TG_UPD_AMSGRAD, true),
        UPD_ROW(rmsprop, TG_UPD_L2 | TG_UPD_MOMENTUM | TG_UPD_CENTERED, false), UPD_ROW(adagrad, TG_UPD_L2, false),
        UPD_ROW(nadam, TG_UPD_L2 | TG_UPD_DECOUPLED, true), UPD_ROW(radam, TG_UPD_L2 | TG_UPD_DECOUPLED | TG_UPD_RECTIFY, true),
        UPD_ROW(adadelta, TG_UPD_L2, false),
        UPD_ROW(sgd, TG_UPD_L2 | TG_UPD_MOMENTUM | TG_UPD_FIRST | TG_UPD_NESTEROV, true), UPD_ROW(adamax, TG_UPD_L2, true),
#undef UPD_ROW
    };
    /* constants as optim.c makes them for step 3 with torch's defaults (any finite values would do) */
    const tg_upd base = {.wd = 0.01, .decay = 0.9999, .b1 = 0.9, .one_b1 = 0.1, .b2 = 0.999, .one_b2 = 0.001,
                         .eps = 1e-8, .mom = 0.9, .k1 = -0.0037, .k2 = -0.0011, .bc = 0.0548, .bc2 = 0.0547};
    for (size_t q = 0; q < sizeof kernels / sizeof kernels[0]; q++)
        for (unsigned f = 0; f < 256; f++) {
            if (f & ~kernels[q].flags) continue;
            tg_upd u = base;
            u.flags = f;
            static float p[2][N], s0[2][N], s1[2][N], s2[2][N], gr[N];
            static double pd[2][N], sd0[2][N], sd1[2][N], sd2[2][N], grd[N];
            unsigned s = 23 + f;
            const bool s0_mean = kernels[q].s0_mean; /* s0 a mean of g (may be < 0), else of g² */
            for (int i = 0; i < N; i++) {
                gr[i] = (float)(grd[i] = frand(&s));
                const double a = frand(&s), m = s0_mean ? frand(&s) * 0.1 : fabs(frand(&s)) * 0.1, v = fabs(frand(&s)) * 0.01 + 0.001, vm = fabs(frand(&s)) * 0.01;
                for (int t = 0; t < 2; t++) {
                    pd[t][i] = a, sd0[t][i] = m, sd1[t][i] = v, sd2[t][i] = vm;
                    p[t][i] = (float)a, s0[t][i] = (float)m, s1[t][i] = (float)v, s2[t][i] = (float)vm;
                }
            }
            /* RMSprop's s0 is the square average, its s2 the mean: keep s0 >= s2² so that the root is real */
            if (!strcmp(kernels[q].name, "rmsprop"))
                for (int t = 0; t < 2; t++)
                    for (int i = 0; i < N; i++) s0[t][i] = s1[t][i] + 1, sd0[t][i] = sd1[t][i] + 1, s2[t][i] *= 10, sd2[t][i] *= 10;
            /* NaN goes through every target alike: in a gradient, and in the state s1 (Adamax's exp_inf, whose
             * max must keep it; amsgrad's v) */
            gr[5] = NAN, grd[5] = NAN;
            for (int t = 0; t < 2; t++) s1[t][9] = NAN, sd1[t][9] = NAN;
            kernels[q].k32(p[0], s0[0], s1[0], s2[0], gr, N, &u);
            kernels[q].g32(p[1], s0[1], s1[1], s2[1], gr, N, &u);
            kernels[q].k64(pd[0], sd0[0], sd1[0], sd2[0], grd, N, &u);
            kernels[q].g64(pd[1], sd0[1], sd1[1], sd2[1], grd, N, &u);
            /* the same bits, or NaN on both (a NaN's payload may depend on the operand order) */
#define SAME_OR_NAN(x, y) (memcmp(&(x), &(y), sizeof(x)) == 0 || ((x) != (x) && (y) != (y)))
            for (int i = 0; i < N; i++) {
                cr_assert(SAME_OR_NAN(p[0][i], p[1][i]) && SAME_OR_NAN(s0[0][i], s0[1][i]) && SAME_OR_NAN(s1[0][i], s1[1][i]) &&
                              SAME_OR_NAN(s2[0][i], s2[1][i]),
                          "%s vs generic: tg_upd_%s_f32 (flags 0x%x) differs at %d (p %.9g vs %.9g)", k->name, kernels[q].name,
                          f, i, p[0][i], p[1][i]);
                cr_assert(SAME_OR_NAN(pd[0][i], pd[1][i]) && SAME_OR_NAN(sd0[0][i], sd0[1][i]) &&
                              SAME_OR_NAN(sd1[0][i], sd1[1][i]) && SAME_OR_NAN(sd2[0][i], sd2[1][i]),
                          "%s vs generic: tg_upd_%s_f64 (flags 0x%x) differs at %d", k->name, kernels[q].name, f, i);
                cr_assert(i == 5 || i == 9 || (isfinite(p[0][i]) && isfinite(pd[0][i])), "%s %s flags 0x%x: p[%d] not finite", k->name,
                          kernels[q].name, f, i);
            }
            cr_assert(isnan(p[0][5]) && isnan(pd[0][5]), "%s %s flags 0x%x: a NaN gradient should give a NaN parameter",
                      k->name, kernels[q].name, f);
#undef SAME_OR_NAN
        }
}

/* The plain ops' elementwise kernels (tensor/velem.h) through target k and through generic: one
 * rounded operation per element (two for vmul_acc), so the bits must be equal; in place too, F32 and
 * F64, n = 1001 (a vector tail everywhere), and against the scalar operation itself. */
static void velem_agree(const tg_kernels *k, const tg_kernels *g) {
    enum { N = 1001 };
    static float a[N], b[N], y[2][N];
    static double ad[N], bd[N], yd[2][N];
    unsigned s = 29;
    for (int i = 0; i < N; i++) ad[i] = a[i] = (float)(frand(&s) * 3), bd[i] = b[i] = (float)(frand(&s) + 1.5);
    for (int op = TG_VADD; op <= TG_VDIV; op++)
        for (int inplace = 0; inplace < 2; inplace++) {
            for (int t = 0; t < 2; t++) {
                const tg_kernels *kt = t ? g : k;
                if (inplace) memcpy(y[t], a, sizeof a), memcpy(yd[t], ad, sizeof ad);
                kt->tg_vbin_f32(op, y[t], inplace ? y[t] : a, b, N);
                kt->tg_vbin_f64(op, yd[t], inplace ? yd[t] : ad, bd, N);
            }
            cr_assert(memcmp(y[0], y[1], sizeof y[0]) == 0 && memcmp(yd[0], yd[1], sizeof yd[0]) == 0,
                      "%s vs generic: tg_vbin op %d (in place %d) differs", k->name, op, inplace);
            for (int i = 0; i < N; i++) {
                const float want = op == TG_VADD ? a[i] + b[i] : op == TG_VSUB ? a[i] - b[i] : op == TG_VMUL ? a[i] * b[i] : a[i] / b[i];
                cr_assert(y[0][i] == want, "%s: tg_vbin op %d at %d: %.9g, want %.9g", k->name, op, i, y[0][i], want);
            }
        }
    for (int t = 0; t < 2; t++) {
        const tg_kernels *kt = t ? g : k;
        for (int i = 0; i < N; i++) y[t][i] = (float)i / 7, yd[t][i] = i / 7.0;
        kt->tg_vmul_acc_f32(y[t], a, b, N);
        kt->tg_vmul_acc_f64(yd[t], ad, bd, N);
    }
    cr_assert(memcmp(y[0], y[1], sizeof y[0]) == 0 && memcmp(yd[0], yd[1], sizeof yd[0]) == 0, "%s vs generic: tg_vmul_acc differs",
              k->name);
    for (int i = 0; i < N; i++) {
        const float p = a[i] * b[i], want = (float)i / 7 + p; /* the product rounded, then the sum: no FMA */
        cr_assert(y[0][i] == want, "%s: tg_vmul_acc at %d: %.9g, want %.9g", k->name, i, y[0][i], want);
    }
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
        gru_rows_agree(k, g);
        gruz_rows_agree(k, g);
        updates_agree(k, g);
        velem_agree(k, g);
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
