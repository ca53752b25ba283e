/* tensor/steps.h - the pointwise part of a fused recurrent step and of its backward, over rows
 * (internal; knows nothing of the tape): the LSTM's and the GRU's (autograd/ops_fused.c's tg_lstm_cell_,
 * tg_gru_cell_) and the zoo's GRU-like cells' (autograd/ops_zoo_gru.c's tg_gru_zoo_), called on blocks
 * of rows.
 *
 * Why kernels: the rest of the library is compiled for the baseline (SSE2 on x86-64), where these
 * loops ran as scalar or 4-lane code (~8 % of a 64,128,32,64 LSTM training step for the LSTM's
 * backward alone; 10 % of a 128,256,32,100 GRU step and 13 % of an MGU step for the GRU rows); as
 * dispatched kernels (tensor/dispatch.h) they run at the chosen target's vector width. The arithmetic
 * is written out exactly as before, operation by operation: no contraction into FMAs (ISO C mode) and
 * no reassociation, so on every target the results are those of the plain ops they fuse (tg_gates
 * "ssts" + tg_lstm_state, tg_gru_gates + tg_lerp, and their backwards), with tanh and sigmoid from the
 * same target's vmath, and those of the loops before they moved here.
 *
 * Dimension letters: n rows (of the batch), H hidden size; a row of gates holds the blocks i, f, g, o.
 * Outputs first, inputs const, sizes last. */
#ifndef TG_TENSOR_STEPS_H
#define TG_TENSOR_STEPS_H
#include <stdbool.h>
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

/* ---- GRU step (tg_gru_cell_, PyTorch's reset-after GRU) ----------------------------------------------
 * Forward of n rows (pointers at the first row): with xp, hp [n,3H] (hp = b + h·Wᵀ, blocks r, z, n),
 *   r = σ(xp_r + hp_r), z = σ(xp_z + hp_z) and n = tanh(xp_n + r ⊙ hp_n) into A [n,3H] (A may be xp
 *   itself: each element of xp is read before that element of A is written), hn = hp_n [n,H],
 *   h2 = n + z ⊙ (h − n) [n,H] (tg_lerp's order). */
void tg_gru_fwd_rows_f32(float *A, float *h2, float *hn, const float *xp, const float *hp, const float *h, int64_t n,
                         int64_t H);
void tg_gru_fwd_rows_f64(double *A, double *h2, double *hn, const double *xp, const double *hp, const double *h,
                         int64_t n, int64_t H);
/* Backward of n rows, gy, gn [n,H] the gradients of h2 and hn, A the gates, hn = hp_n, h the state:
 *   dn = gy − gy z,  dz = gy (h − n),  n~ = dn (1 − n²),  r~ = n~ hn r(1 − r),  z~ = dz z(1 − z)
 *   D = [r~ | z~ | n~],  dhp = [r~ | z~ | n~ r + gn]  [n,3H];  dh = gy z (assign) or dh += gy z (dh NULL: not wanted) */
void tg_gru_bwd_rows_f32(float *D, float *dhp, float *dh, int assign, const float *A, const float *hn, const float *h,
                         const float *gy, const float *gn, int64_t n, int64_t H);
void tg_gru_bwd_rows_f64(double *D, double *dhp, double *dh, int assign, const double *A, const double *hn,
                         const double *h, const double *gy, const double *gn, int64_t n, int64_t H);

/* ---- the zoo's GRU-like step (tg_gru_zoo_, autograd/ops_zoo_gru.c: the formulas and the layout are
 * explained there; these are its row passes, unchanged, on raw arrays of the step's dtype) ------------ */
/* Where each activation lives: its block in a row of xp / the stored activations [B,nx·H], or -1 (no xp
 * block: the activation is part k of the result [K,B,H], ks/kc = k >= 1, else 0). */
typedef struct tg_gz_layout {
    int nx, K;      /* xp blocks; parts of the result (1 + activations without a block) */
    int bu, bs, bc; /* blocks of u, s, h̃ in xp (-1: none) */
    int ks, kc;     /* part of the result holding s, h̃ (0: not there) */
    bool one, u_rec, u_tanh, s_x, c_x, shared, keep_h;
} tg_gz_layout;
/* The forward's arrays (of the step's dtype; NULL where the layout has none) */
typedef struct tg_gz_fwd {
    const void *xp, *x, *h, *pu, *ps, *pc; /* pu, ps: the gate products [B,H] or one shared [B,2H]; pc [B,H] */
    void *A, *out, *q;                     /* the activations [B,nx·H], the result [K,B,H], q = s ⊙ h [B,H] */
    tg_gz_layout L;
    int64_t B, H, ou, os, wg; /* offsets of u, s in a row of the products, their row width */
} tg_gz_fwd;
/* The backward's arrays (NULL where not wanted or not in the layout) */
typedef struct tg_gz_bwd {
    const void *aux, *out, *g, *h, *x, *dq; /* gates, result, its gradient [K,B,H], h, x, dq = Dc·W_c */
    void *Du, *Ds, *Dc, *q, *gh, *gx, *Dx;  /* [B,H] each but Dx (xp's gradient rows [B,nx·H]) */
    bool ah, ax;                            /* gh / gx to be assigned, not added to */
    tg_gz_layout L;
    int64_t B, H;
} tg_gz_bwd;
/* rows [r0, r1): gates u, s and q = s ⊙ h (first pass); candidate and blend (second pass) */
void tg_gz_gates_rows_f32(const tg_gz_fwd *c, int64_t r0, int64_t r1);
void tg_gz_gates_rows_f64(const tg_gz_fwd *c, int64_t r0, int64_t r1);
void tg_gz_blend_rows_f32(const tg_gz_fwd *c, int64_t r0, int64_t r1);
void tg_gz_blend_rows_f64(const tg_gz_fwd *c, int64_t r0, int64_t r1);
/* rows [r0, r1) of the backward: through the blend and the candidate's tanh; through s ⊙ h and the gates */
void tg_gz_bwd1_rows_f32(const tg_gz_bwd *c, int64_t r0, int64_t r1);
void tg_gz_bwd1_rows_f64(const tg_gz_bwd *c, int64_t r0, int64_t r1);
void tg_gz_bwd2_rows_f32(const tg_gz_bwd *c, int64_t r0, int64_t r1);
void tg_gz_bwd2_rows_f64(const tg_gz_bwd *c, int64_t r0, int64_t r1);
#endif
