/* tensor/updates.h - the optimizers' elementwise update loops as dispatched kernels (internal; knows
 * nothing of optimizers' state or options: optim/optim.c's update functions call them).
 *
 * Why kernels: optim/ is compiled for the baseline (SSE2 on x86-64), where these loops run 4 F32 lanes
 * wide (Adam was ~9 % of a B = 1 LSTM training step); as dispatched kernels (tensor/dispatch.h) they run
 * at the chosen target's width and TAPEGRAD_CPU steers them like every other kernel. Each loop is
 * written operation by operation as optim.c's general loop (torch's order of tensor ops): only
 * correctly rounded multiplies, adds, divides and square roots, no contraction into FMAs (ISO C mode)
 * and no reassociation, so every target gives the same bits, which are the general loop's (tests:
 * optim::fast_loops_equal_the_general_loop, dispatch::every_target_this_cpu_runs_agrees_with_generic).
 * The general loop stays for maximize, which none of these take. Every optimizer of optim.c has one.
 *
 * p the parameter, g its gradient, s0..s2 the state buffers named below, n elements. The constants of
 * tg_upd are values of the parameter's dtype (the caller rounds them to it; the kernel converts them
 * back, exactly). Outputs first, inputs const, sizes last. */
#ifndef TG_TENSOR_UPDATES_H
#define TG_TENSOR_UPDATES_H
#include <stdint.h>

enum {
    TG_UPD_L2 = 1,        /* d = g + wd p */
    TG_UPD_DECOUPLED = 2, /* p = p decay first (AdamW, decoupled NAdam / RAdam) */
    TG_UPD_AMSGRAD = 4,   /* Adam: v̂ = max(v̂, v) in s2, NaN propagating */
    TG_UPD_CENTERED = 8,  /* RMSprop: grad_avg in s2 */
    TG_UPD_MOMENTUM = 16, /* RMSprop: momentum_buffer in s1 */
    TG_UPD_RECTIFY = 32,  /* RAdam: ρ_t > 5 */
    TG_UPD_FIRST = 64,    /* SGD: the first step with momentum (buf = d) */
    TG_UPD_NESTEROV = 128 /* SGD: Nesterov momentum */
};

typedef struct tg_upd {
    unsigned flags; /* TG_UPD_* */
    double wd, decay;
    double b1, one_b1; /* m = m b1 + one_b1 d */
    double b2, one_b2; /* v = v b2 + one_b2 d d (RMSprop: α, 1 − α; Adadelta: ρ, 1 − ρ) */
    double eps, mom;
    double k1, k2, bc, bc2; /* per kernel, below */
} tg_upd;

/* Adam / AdamW, s0 = exp_avg m, s1 = exp_avg_sq v, s2 = max_exp_avg_sq (AMSGRAD): k1 = −lr/(1−β1^t),
 * bc = √(1−β2^t);  p = p + k1 m / (√v / bc + eps) */
void tg_upd_adam_f32(float *p, float *s0, float *s1, float *s2, const float *g, int64_t n, const tg_upd *u);
void tg_upd_adam_f64(double *p, double *s0, double *s1, double *s2, const double *g, int64_t n, const tg_upd *u);
/* RMSprop, s0 = square_avg, s1 = momentum_buffer (MOMENTUM), s2 = grad_avg (CENTERED), b2 = α, k1 = −lr:
 * avg = √(sq − ga²) + eps;  buf = buf mom + d / avg, p = p + k1 buf  (or p = p + k1 d / avg) */
void tg_upd_rmsprop_f32(float *p, float *s0, float *s1, float *s2, const float *g, int64_t n, const tg_upd *u);
void tg_upd_rmsprop_f64(double *p, double *s0, double *s1, double *s2, const double *g, int64_t n, const tg_upd *u);
/* Adagrad, s0 = sum, k1 = −clr:  sum = sum + d d, p = p + k1 d / (√sum + eps) */
void tg_upd_adagrad_f32(float *p, float *s0, float *s1, float *s2, const float *g, int64_t n, const tg_upd *u);
void tg_upd_adagrad_f64(double *p, double *s0, double *s1, double *s2, const double *g, int64_t n, const tg_upd *u);
/* NAdam, s0 = m, s1 = v, k1, k2 = torch's two addcdiv values, bc = 1−β2^t:
 * denom = √(v / bc) + eps, p = p + k1 d / denom, p = p + k2 m / denom */
void tg_upd_nadam_f32(float *p, float *s0, float *s1, float *s2, const float *g, int64_t n, const tg_upd *u);
void tg_upd_nadam_f64(double *p, double *s0, double *s1, double *s2, const double *g, int64_t n, const tg_upd *u);
/* RAdam, s0 = m, s1 = v, k1 = lr, k2 = the rectification r, bc = 1−β1^t, bc2 = √(1−β2^t):
 * m̂ = m / bc;  RECTIFY: p = p − m̂ k1 (1/(√v + eps) bc2) k2,  else p = p − m̂ k1 */
void tg_upd_radam_f32(float *p, float *s0, float *s1, float *s2, const float *g, int64_t n, const tg_upd *u);
void tg_upd_radam_f64(double *p, double *s0, double *s1, double *s2, const double *g, int64_t n, const tg_upd *u);
/* Adadelta, s0 = square_avg, s1 = acc_delta, b2 = ρ, k1 = −lr:  sq = sq ρ + (1−ρ) d d,
 * δ = √(acc + eps) / √(sq + eps) d,  acc = acc ρ + (1−ρ) δ δ,  p = p + k1 δ */
void tg_upd_adadelta_f32(float *p, float *s0, float *s1, float *s2, const float *g, int64_t n, const tg_upd *u);
void tg_upd_adadelta_f64(double *p, double *s0, double *s1, double *s2, const double *g, int64_t n, const tg_upd *u);
/* SGD, s0 = momentum_buffer (MOMENTUM), mom = μ, k1 = −lr, k2 = 1 − dampening:
 * buf = d (FIRST) or buf μ + k2 d;  d = d + μ buf (NESTEROV) or buf;  p = p + k1 d */
void tg_upd_sgd_f32(float *p, float *s0, float *s1, float *s2, const float *g, int64_t n, const tg_upd *u);
void tg_upd_sgd_f64(double *p, double *s0, double *s1, double *s2, const double *g, int64_t n, const tg_upd *u);
/* Adamax, s0 = exp_avg m, s1 = exp_inf u, k1 = −lr/(1−β1^t):  m = m β1 + (1−β1) d,
 * u = max(u β2, |d| + eps) (NaN propagating),  p = p + k1 m / u */
void tg_upd_adamax_f32(float *p, float *s0, float *s1, float *s2, const float *g, int64_t n, const tg_upd *u);
void tg_upd_adamax_f64(double *p, double *s0, double *s1, double *s2, const double *g, int64_t n, const tg_upd *u);
#endif
