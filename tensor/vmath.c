/* tensor/vmath.c - vectorisable exp, tanh, sigmoid (see vmath.h for why and how accurate).
 *
 * Every function is branch-free straight-line code per element: both sides of each case are computed
 * and the answer is picked with a select, ranges are clamped instead of tested, 2^n is built from its
 * bit pattern. That is what lets gcc -O3 turn each array loop into SIMD code (the libm calls it replaces
 * could not be vectorised at all).
 *
 * exp: Cody-Waite reduction x = n ln2 + r, |r| <= ln2/2, with n = round(x log2 e) from the 1.5·2^p
 * "magic number" trick (the integer n is then the low bits of the sum); e^r by Cephes' polynomial
 * (F32, degree 6) or rational function (F64, 1 + 2 r P(r²) / (Q(r²) - r P(r²))); the scale 2^n is
 * applied as two factors 2^(n/2) · 2^(n - n/2), both normal numbers, so results that underflow into
 * subnormals are rounded once, like libm, instead of flushing to zero.
 * tanh: for |x| < 0.625 Cephes' odd polynomial (F32) or rational function (F64), which keeps full
 * relative accuracy near 0 where 1 - 2/(e^2x + 1) would cancel; above, 1 - 2/(e^(2|x|) + 1) with the
 * sign copied back.
 * sigmoid: e = e^-|x|, then 1/(1+e) for x >= 0 and e/(1+e) for x < 0 (the same formula as the scalar
 * code it replaces, so exp never overflows). */
#include "tensor/vmath.h"

#include <math.h>
#include <string.h>

/* Fused multiply-add where the hardware has it (one rounding, and gcc vectorises the builtin);
 * otherwise a plain multiply and add. */
#if defined(__FMA__) || defined(__aarch64__)
#define FMAF(a, b, c) __builtin_fmaf((a), (b), (c))
#define FMAD(a, b, c) __builtin_fma((a), (b), (c))
#else
#define FMAF(a, b, c) ((a) * (b) + (c))
#define FMAD(a, b, c) ((a) * (b) + (c))
#endif

static inline uint32_t bits_f32(float f) { uint32_t u; memcpy(&u, &f, sizeof u); return u; }
static inline float f32_bits(uint32_t u) { float f; memcpy(&f, &u, sizeof f); return f; }
static inline uint64_t bits_f64(double f) { uint64_t u; memcpy(&u, &f, sizeof u); return u; }
static inline double f64_bits(uint64_t u) { double f; memcpy(&f, &u, sizeof f); return f; }

/* ---- F32 --------------------------------------------------------------------------------------- */

static inline float exp_f32(float x) {
    /* e^88.8 overflows (ln FLT_MAX = 88.72), e^-104 rounds to 0 (below half the least subnormal);
     * clamping there keeps n within the two-factor scale. NaN fails both tests and stays NaN. */
    x = x > 88.8f ? 88.8f : x;
    x = x < -104.0f ? -104.0f : x;
    const float magic = 12582912.0f; /* 1.5·2^23: adding it rounds to an integer held in the low bits */
    float t = FMAF(x, 1.44269504088896341f, magic);
    float n = t - magic;
    int32_t ni = (int32_t)(bits_f32(t) - bits_f32(magic));
    float r = FMAF(n, -0.693359375f, x); /* ln2 = 0.693359375 - 2.12194440e-4, first part exact in n·C1 */
    r = FMAF(n, 2.12194440e-4f, r);
    float z = r * r;
    float p = 1.9875691500e-4f;
    p = FMAF(p, r, 1.3981999507e-3f);
    p = FMAF(p, r, 8.3334519073e-3f);
    p = FMAF(p, r, 4.1665795894e-2f);
    p = FMAF(p, r, 1.6666665459e-1f);
    p = FMAF(p, r, 5.0000001201e-1f);
    p = FMAF(p, z, r) + 1.0f;
    int32_t n1 = ni >> 1, n2 = ni - n1;
    return p * f32_bits((uint32_t)(n1 + 127) << 23) * f32_bits((uint32_t)(n2 + 127) << 23);
}

static inline float tanh_f32(float x) {
    float ax = fabsf(x);
    float e = exp_f32(2.0f * ax);
    float big = copysignf(1.0f - 2.0f / (e + 1.0f), x);
    float z = x * x;
    float p = -5.70498872745e-3f;
    p = FMAF(p, z, 2.06390887954e-2f);
    p = FMAF(p, z, -5.37397155531e-2f);
    p = FMAF(p, z, 1.33314422036e-1f);
    p = FMAF(p, z, -3.33332819422e-1f);
    float small = copysignf(FMAF(p * z, ax, ax), x); /* on |x|, then the sign: tanh(-0) = -0 */
    return ax < 0.625f ? small : big;
}

static inline float sigmoid_f32(float x) {
    float e = exp_f32(-fabsf(x));
    return (x >= 0 ? 1.0f : e) / (1.0f + e);
}

void tg_vexp_f32(float *restrict y, const float *restrict x, int64_t n) {
    for (int64_t i = 0; i < n; i++) y[i] = exp_f32(x[i]);
}
void tg_vtanh_f32(float *restrict y, const float *restrict x, int64_t n) {
    for (int64_t i = 0; i < n; i++) y[i] = tanh_f32(x[i]);
}
void tg_vsigmoid_f32(float *restrict y, const float *restrict x, int64_t n) {
    for (int64_t i = 0; i < n; i++) y[i] = sigmoid_f32(x[i]);
}

/* ---- F64 --------------------------------------------------------------------------------------- */

static inline double exp_f64(double x) {
    /* ln DBL_MAX = 709.78; below -745.2 the result rounds to 0 */
    x = x > 709.79 ? 709.79 : x;
    x = x < -745.2 ? -745.2 : x;
    const double magic = 6755399441055744.0; /* 1.5·2^52 */
    double t = FMAD(x, 1.4426950408889634073599, magic);
    double n = t - magic;
    int64_t ni = (int64_t)(bits_f64(t) - bits_f64(magic));
    double r = FMAD(n, -6.93145751953125e-1, x); /* ln2 = C1 + C2, n·C1 exact */
    r = FMAD(n, -1.42860682030941723212e-6, r);
    double xx = r * r;
    double px = r * FMAD(FMAD(1.26177193074810590878e-4, xx, 3.02994407707441961300e-2), xx,
                         9.99999999999999999910e-1);
    double qx = FMAD(FMAD(FMAD(3.00198505138664455042e-6, xx, 2.52448340349684104192e-3), xx,
                          2.27265548208155028766e-1), xx, 2.00000000000000000009e0);
    double e = FMAD(2.0, px / (qx - px), 1.0);
    int64_t n1 = ni >> 1, n2 = ni - n1;
    return e * f64_bits((uint64_t)(n1 + 1023) << 52) * f64_bits((uint64_t)(n2 + 1023) << 52);
}

static inline double tanh_f64(double x) {
    double ax = fabs(x);
    double e = exp_f64(2.0 * ax);
    double big = copysign(1.0 - 2.0 / (e + 1.0), x);
    double z = x * x;
    double p = FMAD(FMAD(-9.64399179425052238628e-1, z, -9.92877231001918586564e1), z, -1.61468768441708447952e3);
    double q = FMAD(FMAD(z + 1.12811678491632931402e2, z, 2.23548839060100448583e3), z, 4.84406305325125486048e3);
    double small = copysign(FMAD(ax * z, p / q, ax), x); /* tanh(-0) = -0 */
    return ax < 0.625 ? small : big;
}

static inline double sigmoid_f64(double x) {
    double e = exp_f64(-fabs(x));
    return (x >= 0 ? 1.0 : e) / (1.0 + e);
}

void tg_vexp_f64(double *restrict y, const double *restrict x, int64_t n) {
    for (int64_t i = 0; i < n; i++) y[i] = exp_f64(x[i]);
}
void tg_vtanh_f64(double *restrict y, const double *restrict x, int64_t n) {
    for (int64_t i = 0; i < n; i++) y[i] = tanh_f64(x[i]);
}
void tg_vsigmoid_f64(double *restrict y, const double *restrict x, int64_t n) {
    for (int64_t i = 0; i < n; i++) y[i] = sigmoid_f64(x[i]);
}

/* ---- sums -------------------------------------------------------------------------------------- */

#define SUM_LANES 16
#define SUM_BLOCK 256 /* a multiple of SUM_LANES */

#define DEFINE_SUM(NAME, T)                                                                   \
    static T NAME##_block(const T *x, int64_t n) {                                            \
        T acc[SUM_LANES] = {0}, tail = 0;                                                     \
        int64_t i = 0;                                                                        \
        for (; i + SUM_LANES <= n; i += SUM_LANES)                                            \
            for (int j = 0; j < SUM_LANES; j++) acc[j] += x[i + j];                           \
        for (; i < n; i++) tail += x[i];                                                      \
        for (int w = SUM_LANES / 2; w >= 1; w /= 2)                                           \
            for (int j = 0; j < w; j++) acc[j] += acc[j + w];                                 \
        return acc[0] + tail;                                                                 \
    }                                                                                         \
    T NAME(const T *x, int64_t n) {                                                           \
        if (n <= SUM_BLOCK) return NAME##_block(x, n);                                        \
        int64_t half = (n / SUM_BLOCK + 1) / 2 * SUM_BLOCK; /* whole blocks on the left */    \
        return NAME(x, half) + NAME(x + half, n - half);                                      \
    }

DEFINE_SUM(tg_vsum_f32, float)
DEFINE_SUM(tg_vsum_f64, double)
