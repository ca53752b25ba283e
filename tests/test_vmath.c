/* tests/test_vmath.c - the vectorised exp / tanh / sigmoid kernels of tensor/vmath.c against libm.
 *
 * F32 is swept over every 997th bit pattern of the finite floats (~4 million values per function)
 * and compared, in units in the last place, with the double-precision libm result; F64 over random
 * values of many magnitudes against the long-double libm result. Special values (±0, ±inf, NaN,
 * overflow and underflow edges, subnormal results) must come out as libm gives them. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "tensor/vmath.h"

static double ulp_f32(float ref) {
    float a = fabsf(ref);
    return a < 1.17549435e-38f ? 1.40129846e-45 : (double)(nextafterf(a, INFINITY) - a);
}
static long double ulp_f64(double ref) {
    double a = fabs(ref);
    return a < 2.2250738585072014e-308 ? 4.9406564584124654e-324L : (long double)(nextafter(a, INFINITY) - a);
}
static long double sigmoid_ref(long double x) { return x >= 0 ? 1 / (1 + expl(-x)) : expl(x) / (1 + expl(x)); }

typedef void (*kernel_f32)(float *, const float *, int64_t);
typedef void (*kernel_f64)(double *, const double *, int64_t);

static long double ref_of(int f, long double x) { return f == 0 ? expl(x) : f == 1 ? tanhl(x) : sigmoid_ref(x); }

/* Largest error in ulp over the sweep; values whose true result overflows F32 must give +inf. */
static double sweep_f32(int f, kernel_f32 k) {
    enum { N = 1 << 16 };
    static float x[N], y[N];
    double worst = 0;
    for (uint64_t u = 0; u < 0xFF800000u;) {
        int n = 0;
        for (; n < N && u < 0xFF800000u; n++, u += 997) {
            uint32_t b = (uint32_t)u;
            memcpy(&x[n], &b, sizeof b);
        }
        k(y, x, n);
        for (int i = 0; i < n; i++) {
            if (isnan(x[i])) continue;
            long double r = ref_of(f, x[i]);
            float rf = (float)r;
            if (isinf(rf)) {
                cr_assert(isinf(y[i]) || fabsf(y[i]) > 3.39e38f, "f%d(%.9g) = %.9g, true value overflows", f, x[i], y[i]);
                continue;
            }
            double e = (double)(fabsl((long double)y[i] - r) / ulp_f32(rf));
            if (e > worst) worst = e;
        }
    }
    return worst;
}

static double sweep_f64(int f, kernel_f64 k) {
    enum { N = 1 << 16 };
    static double x[N], y[N];
    uint64_t s = 88172645463325252ULL;
    double worst = 0;
    for (int rep = 0; rep < 8; rep++) {
        for (int i = 0; i < N; i++) {
            s = s * 6364136223846793005ULL + 1442695040888963407ULL;
            double u = (double)(s >> 11) * 0x1.0p-53, sign = (s >> 3) & 1 ? -1.0 : 1.0;
            x[i] = rep < 4 ? sign * u * 3.0 * (rep + 1) : rep < 7 ? sign * pow(10.0, -300.0 * u) : (u - 0.5) * 1500;
        }
        k(y, x, N);
        for (int i = 0; i < N; i++) {
            long double r = ref_of(f, x[i]);
            double rd = (double)r;
            if (isinf(rd)) {
                cr_assert(isinf(y[i]), "f%d(%.17g) = %.17g, true value overflows", f, x[i], y[i]);
                continue;
            }
            double e = (double)(fabsl((long double)y[i] - r) / ulp_f64(rd));
            if (e > worst) worst = e;
        }
    }
    return worst;
}

Test(vmath, f32_within_a_few_ulp_of_libm) {
    double e0 = sweep_f32(0, tg_vexp_f32), e1 = sweep_f32(1, tg_vtanh_f32), e2 = sweep_f32(2, tg_vsigmoid_f32);
    cr_expect(e0 <= 2.0, "exp: %.3f ulp", e0);
    cr_expect(e1 <= 3.0, "tanh: %.3f ulp", e1);
    cr_expect(e2 <= 3.0, "sigmoid: %.3f ulp", e2);
}

Test(vmath, f64_within_a_few_ulp_of_libm) {
    double e0 = sweep_f64(0, tg_vexp_f64), e1 = sweep_f64(1, tg_vtanh_f64), e2 = sweep_f64(2, tg_vsigmoid_f64);
    cr_expect(e0 <= 3.0, "exp: %.3f ulp", e0);
    cr_expect(e1 <= 3.0, "tanh: %.3f ulp", e1);
    cr_expect(e2 <= 4.0, "sigmoid: %.3f ulp", e2);
}

/* NaN for NaN; exactly (sign included) where libm gives 0, ±inf or ±1; else within 4 ulp. */
static bool close_f64(double y, long double ref, bool f32) {
    double r = f32 ? (double)(float)ref : (double)ref;
    if (isnan(r)) return isnan(y);
    if (r == 0 || isinf(r) || fabs(r) == 1) return y == r && signbit(y) == signbit(r);
    double ulp = f32 ? ulp_f32((float)r) : (double)ulp_f64(r);
    return fabs(y - r) <= 4 * ulp;
}

Test(vmath, special_values_as_libm) {
    const double xs[] = {0.0, -0.0, INFINITY, -INFINITY, NAN, 1e-30, -1e-30, 88.72, 88.73, -103.0, -104.5,
                         709.7, 709.8, -745.0, -746.0, 1e-300, -1e-300, 0.6249, 0.6251, 40, -40};
    enum { N = sizeof xs / sizeof xs[0] };
    float xf[N], yf[N];
    double yd[N];
    for (int i = 0; i < N; i++) xf[i] = (float)xs[i];
    for (int f = 0; f < 3; f++) {
        (f == 0 ? tg_vexp_f32 : f == 1 ? tg_vtanh_f32 : tg_vsigmoid_f32)(yf, xf, N);
        (f == 0 ? tg_vexp_f64 : f == 1 ? tg_vtanh_f64 : tg_vsigmoid_f64)(yd, xs, N);
        for (int i = 0; i < N; i++) {
            cr_expect(close_f64(yf[i], ref_of(f, xf[i]), true), "F32 f%d(%g) = %.9g", f, xf[i], yf[i]);
            cr_expect(close_f64(yd[i], ref_of(f, xs[i]), false), "F64 f%d(%g) = %.17g", f, xs[i], yd[i]);
        }
        if (f == 2) { /* subnormal results are rounded, not flushed to zero */
            cr_expect(yf[9] > 0 && yf[9] < 1.2e-38f, "sigmoidf(-103) = %g", yf[9]);
            cr_expect(yd[13] > 0, "sigmoid(-745) = %g", yd[13]);
        }
    }
}
