/* tensor/velem.h - elementwise arithmetic of the plain ops over contiguous arrays (internal; knows
 * nothing of the tape; autograd/ops_elementwise.c's tg_add, tg_sub, tg_mul, tg_div and the backwards
 * of tg_add and tg_mul call them on whole same-shape operands and on the rows of a row broadcast).
 *
 * Why kernels: autograd/ is compiled for the baseline (SSE2 on x86-64, 4 F32 lanes); these loops are
 * most of what a cell written with plain ops spends outside its GEMMs (lstm_np at 128,256,32,100:
 * binary 7.1 %, tg__mul_backward 4.2 %, perf), and as dispatched kernels (tensor/dispatch.h) they run
 * at the chosen target's width. Each element is one correctly rounded operation (two for the
 * accumulating forms: a multiply, then an add, never contracted into an FMA in ISO C mode), so every
 * target gives the bits of the scalar loops they replace.
 *
 * y may be a (in place: y[i] = y[i] op b[i]); otherwise the arrays do not overlap. n elements. */
#ifndef TG_TENSOR_VELEM_H
#define TG_TENSOR_VELEM_H
#include <stdint.h>

enum { TG_VADD, TG_VSUB, TG_VMUL, TG_VDIV }; /* the operation of tg_vbin */

/* y = a op b */
void tg_vbin_f32(int op, float *y, const float *a, const float *b, int64_t n);
void tg_vbin_f64(int op, double *y, const double *a, const double *b, int64_t n);
/* y = y + a ⊙ b (the product rounded, then the sum) */
void tg_vmul_acc_f32(float *y, const float *a, const float *b, int64_t n);
void tg_vmul_acc_f64(double *y, const double *a, const double *b, int64_t n);
#endif
