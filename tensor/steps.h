/* tensor/steps.h - the pointwise part of a fused LSTM step and of its backward, over rows (internal;
 * knows nothing of the tape; autograd/ops_fused.c's tg_lstm_cell_ calls them on blocks of rows).
 *
 * Why kernels: the rest of the library is compiled for the baseline (SSE2 on x86-64), where these
 * loops ran as scalar code (~8 % of a 64,128,32,64 LSTM training step for the backward alone); as
 * dispatched kernels (tensor/dispatch.h) they run at the chosen target's vector width. The arithmetic
 * is written out exactly as before, operation by operation: no contraction into FMAs (ISO C mode) and
 * no reassociation, so on every target the results are those of the plain ops they fuse (tg_gates
 * "ssts" + tg_lstm_state, and their backwards), with tanh and sigmoid from the same target's vmath.
 *
 * Dimension letters: n rows (of the batch), H hidden size; a row of gates holds the blocks i, f, g, o.
 * Outputs first, inputs const, sizes last. */
#ifndef TG_TENSOR_STEPS_H
#define TG_TENSOR_STEPS_H
#include <stdint.h>

/* Forward of n rows. hp [n,4H] holds b + h·Wᵀ and becomes a = xp + hp; the gate activations
 * σ(a_i), σ(a_f), tanh(a_g), σ(a_o) go to A [n,4H], which may be xp itself (each row of xp is read
 * before that row of A is written); c2 = f ⊙ c + i ⊙ g [n,H], h2 = o ⊙ tanh(c2) [n,H]. */
void tg_lstm_fwd_rows_f32(float *A, float *h2, float *c2, float *hp, const float *xp, const float *c, int64_t n,
                          int64_t H);
void tg_lstm_fwd_rows_f64(double *A, double *h2, double *c2, double *hp, const double *xp, const double *c,
                          int64_t n, int64_t H);

/* Backward of n rows, τ = tanh(c2), gh, gc the gradients of h2 and c2 [n,H]:
 *   dc' = gc + (gh o)(1 − τ²);   dc = dc' f (assign) or dc += dc' f (dc NULL: not wanted)
 *   D = (dc' g) i(1 − i) | (dc' c) f(1 − f) | (dc' i)(1 − g²) | (gh τ) o(1 − o)   [n,4H]
 * A [n,4H] the gate activations, c [n,H] the state before the step. */
void tg_lstm_bwd_rows_f32(float *D, float *dc, int assign, const float *A, const float *c, const float *c2,
                          const float *gh, const float *gc, int64_t n, int64_t H);
void tg_lstm_bwd_rows_f64(double *D, double *dc, int assign, const double *A, const double *c, const double *c2,
                          const double *gh, const double *gc, int64_t n, int64_t H);
#endif
