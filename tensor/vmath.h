/* tensor/vmath.h - exp, tanh and sigmoid over arrays, written so that the compiler vectorises them
 * (internal; knows nothing of the tape).
 *
 * Why: libm's expf/tanhf are scalar calls (one call, one branchy evaluation per element); in an LSTM
 * training step they were a third of the time. These kernels are straight-line polynomial code over
 * contiguous arrays, which gcc -O3 turns into SIMD loops (AVX2/AVX-512 with -march=native).
 *
 * Accuracy (measured by tests/test_tensor.c against libm in double precision):
 *   F32: exp <= 2 ulp, tanh <= 3 ulp, sigmoid <= 3 ulp (Cephes-style polynomials, Cody-Waite reduction)
 *   F64: exp, tanh, sigmoid within a few units of 1e-16 relative (Cephes rational approximations)
 * Special values follow libm: exp(-inf) = 0, exp(+inf) = +inf, overflow to +inf, gradual underflow
 * to subnormals and 0, NaN in -> NaN out; tanh(±inf) = ±1, tanh(-0) = -0; sigmoid(±inf) = 1, 0.
 *
 * Layout: outputs first, inputs const, sizes last; y and x must not overlap. */
#ifndef TG_VMATH_H
#define TG_VMATH_H
#include <stdint.h>

void tg_vexp_f32(float *y, const float *x, int64_t n);
void tg_vtanh_f32(float *y, const float *x, int64_t n);
void tg_vsigmoid_f32(float *y, const float *x, int64_t n);
void tg_vexp_f64(double *y, const double *x, int64_t n);
void tg_vtanh_f64(double *y, const double *x, int64_t n);
void tg_vsigmoid_f64(double *y, const double *x, int64_t n);

/* Sum of x[0..n-1], accumulated in the element type: 16 independent lanes inside blocks of 256
 * (vectorised), blocks combined pairwise. Error O(log n) ulps instead of the O(n) of one running sum,
 * and no chain of dependent additions (the running sum over a [T,B,H] MSE was 4 % of an LSTM step). */
float tg_vsum_f32(const float *x, int64_t n);
double tg_vsum_f64(const double *x, int64_t n);
#endif
