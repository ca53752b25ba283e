/* tapegrad/ops.h - differentiable ops. Every function here: args: borrowed; returns: tape-owned
 * (the current thread's tape releases the result at tg_tape_reset; tg_retain to keep it longer).
 * Given a NULL argument they return NULL, keeping the first error message (so a whole expression
 * like tg_tanh(tg_add(tg_matmul(x, W), b)) fails once, with the message of the op that failed).
 *
 * Broadcasting (add, sub, mul, div) follows NumPy: shapes are aligned at the trailing end and each
 * dimension must be equal or 1 (a scalar, or a bias row [H] against [B,H], or [B,1] against [B,H]).
 * Both operands' gradients are summed back to their own shapes.
 *
 *     tg_tensor *h = tg_tanh(tg_linear(x, W, b));      // [B,H] = tanh(x·Wᵀ + b)
 */
#ifndef TAPEGRAD_OPS_H
#define TAPEGRAD_OPS_H
#include <tapegrad/tensor.h>

#ifdef __cplusplus
extern "C" {
#endif

/* elementwise, broadcasting */
tg_tensor *tg_add(const tg_tensor *a, const tg_tensor *b);      /* a + b */
tg_tensor *tg_sub(const tg_tensor *a, const tg_tensor *b);      /* a - b */
tg_tensor *tg_mul(const tg_tensor *a, const tg_tensor *b);      /* a ⊙ b */
tg_tensor *tg_div(const tg_tensor *a, const tg_tensor *b);      /* a / b */

/* elementwise, one tensor */
tg_tensor *tg_neg(const tg_tensor *x);                          /* -x */
tg_tensor *tg_add_scalar(const tg_tensor *x, double s);         /* x + s */
tg_tensor *tg_mul_scalar(const tg_tensor *x, double s);         /* s x */
tg_tensor *tg_rsub_scalar(double s, const tg_tensor *x);        /* s - x (e.g. 1 - z) */
tg_tensor *tg_affine(const tg_tensor *x, double alpha, double beta); /* alpha x + beta */
tg_tensor *tg_pow_scalar(const tg_tensor *x, double p);         /* x^p */
tg_tensor *tg_exp(const tg_tensor *x);
tg_tensor *tg_log(const tg_tensor *x);
tg_tensor *tg_sqrt(const tg_tensor *x);
tg_tensor *tg_tanh(const tg_tensor *x);
tg_tensor *tg_sigmoid(const tg_tensor *x);                      /* 1 / (1 + e^-x), stable both ways */
tg_tensor *tg_relu(const tg_tensor *x);                         /* max(x, 0); derivative 0 at 0 */
tg_tensor *tg_leaky_relu(const tg_tensor *x, double slope);     /* x > 0 ? x : slope x */
tg_tensor *tg_softplus(const tg_tensor *x);                     /* log(1 + e^x), stable */
tg_tensor *tg_abs(const tg_tensor *x);                          /* derivative sign(x), 0 at 0 */
tg_tensor *tg_clamp(const tg_tensor *x, double lo, double hi);  /* derivative 1 inside [lo, hi] */
/* The gate non-linearities of a recurrent cell in one pass. x is [..., G·H] with G = strlen(acts);
 * gate k is the column block x[..., k·H : (k+1)·H] and acts[k] says what to apply to it: 's' sigmoid,
 * 't' tanh, 'r' relu, 'i' identity (G <= 32). The result is gate-major [G, ..., H], so tg_select(y, k)
 * is gate k as a zero-copy view. For an LSTM ([B,4H] pre-activations, gates i,f,g,o):
 *     tg_tensor *y = tg_gates(pre, "ssts");   // i = tg_select(y, 0), ..., o = tg_select(y, 3)
 * Same values and gradients as tg_chunk + tg_sigmoid/tg_tanh, without the copies of the chunk. */
tg_tensor *tg_gates(const tg_tensor *x, const char *acts);
/* The three gates of PyTorch's ("reset-after") GRU in one pass, from the input projection xp and the
 * recurrent projection hp, both [..., 3H] with blocks [r | z | n]:
 *     r = σ(xp_r + hp_r),  z = σ(xp_z + hp_z),  n = tanh(xp_n + r ⊙ hp_n)
 * The result is gate-major [3, ..., H] (r, z, n = tg_select(y, 0..2), zero-copy views). Same values and
 * gradients as tg_chunk + tg_add + tg_sigmoid + tg_mul + tg_tanh, in one op without the copies. */
tg_tensor *tg_gru_gates(const tg_tensor *xp, const tg_tensor *hp);
/* The LSTM state update in one op, from gate-major gates [4, ..., H] (i, f, g, o, e.g. tg_gates(pre,
 * "ssts")) and the cell state c [..., H]:
 *     c' = f ⊙ c + i ⊙ g,   h' = o ⊙ tanh(c')
 * The result is [2, ..., H] with h' = tg_select(y, 0) and c' = tg_select(y, 1) (zero-copy views). Same
 * values and gradients as the five plain ops, with one record and a third of their tape memory. */
tg_tensor *tg_lstm_state(const tg_tensor *gates, const tg_tensor *c);
/* One whole LSTM step in one op (the built-in lstm cell's step), from the step's input projection xp
 * [B,4H] (x·W_ihᵀ + b_ih, gates i, f, g, o), the state h [B,R] and c [B,H], and W_hh [4H,R], b_hh [4H]
 * (or NULL):
 *     [a_i | a_f | a_g | a_o] = xp + h·Wᵀ + b,  i, f, o = σ(a_i, a_f, a_o),  g = tanh(a_g)
 *     c' = f ⊙ c + i ⊙ g,   h' = o ⊙ tanh(c')
 * The result is [2,B,H] with h' = tg_select(y, 0), c' = tg_select(y, 1). Same values and gradients as
 * tg_lstm_state(tg_gates(tg_linear_add(h, W, b, xp), "ssts"), c), bit for bit, with one record and a
 * third of their tape memory: in place (the trailing _), the gate activations are stored over xp when
 * xp is an op result of the current tape and the step is recorded (xp's values are gone afterwards and
 * its version is bumped); a leaf or an untaped xp is left alone. */
tg_tensor *tg_lstm_cell_(tg_tensor *xp, const tg_tensor *h, const tg_tensor *W, const tg_tensor *b, const tg_tensor *c);
/* One whole GRU step (PyTorch's reset-after form, the built-in gru cell's step) in one op, from xp [B,3H]
 * (x·W_ihᵀ + b_ih, blocks r, z, n), h [B,H], W_hh [3H,H], b_hh [3H] (or NULL), with hp = h·Wᵀ + b:
 *     r = σ(xp_r + hp_r),  z = σ(xp_z + hp_z),  n = tanh(xp_n + r ⊙ hp_n),  h' = n + z ⊙ (h − n)
 * The result is [2,B,H]: h' = tg_select(y, 0), and tg_select(y, 1) = hp_n, which backward reads.
 * Same values and gradients as tg_gru_gates(xp, tg_linear(h, W, b)) + tg_lerp, bit for bit; in place
 * on xp (the gates r, z, n are stored over it) exactly as tg_lstm_cell_. */
tg_tensor *tg_gru_cell_(tg_tensor *xp, const tg_tensor *h, const tg_tensor *W, const tg_tensor *b);
/* One step of the LSTM family of Greff et al. 2017 in one op (the zoo cells lstm_peephole, lstm_nig, lstm_nfg,
 * lstm_nog, lstm_niaf, lstm_noaf, lstm_cifg), from the step's input projection xp [B,G·H] (x·W_ihᵀ + b_ih),
 * h [B,R], W_hh [G·H,R], b_hh [G·H] (or NULL), the cell state c [B,H] and the peepholes w_ci, w_cf, w_co
 * [H] (each NULL: none). The G blocks of xp are the gates the variant keeps, in the order i, f, g, o:
 *     a = xp + h·Wᵀ + b,   i = σ(a_i + w_ci ⊙ c),  f = σ(a_f + w_cf ⊙ c),  g = tanh(a_g)
 *     c' = f ⊙ c + i ⊙ g,  o = σ(a_o + w_co ⊙ c'),  h' = o ⊙ tanh(c')
 * with flags (or'ed) changing one thing each: TG_LSTMZ_NO_I (no i block, i = 1), TG_LSTMZ_NO_F (f = 1),
 * TG_LSTMZ_NO_O (o = 1), TG_LSTMZ_COUPLED (no f block, f = 1 − i), TG_LSTMZ_LINEAR_G (g = a_g),
 * TG_LSTMZ_LINEAR_C (h' = o ⊙ c'). A peephole of an absent gate is refused. The result is [2,B,H] with
 * h' = tg_select(y, 0), c' = tg_select(y, 1); the same values as the plain ops (tg_sigmoid, tg_mul, tg_add,
 * ...) within rounding, with one record and G + 2 floats per batch x hidden element on the tape: in place
 * (the trailing _) exactly as tg_lstm_cell_, the gate activations are stored over xp. */
enum {
    TG_LSTMZ_NO_I = 1, TG_LSTMZ_NO_F = 2, TG_LSTMZ_NO_O = 4, TG_LSTMZ_COUPLED = 8, TG_LSTMZ_LINEAR_G = 16,
    TG_LSTMZ_LINEAR_C = 32
};
tg_tensor *tg_lstm_zoo_(tg_tensor *xp, const tg_tensor *h, const tg_tensor *W, const tg_tensor *b, const tg_tensor *c,
                        const tg_tensor *w_ci, const tg_tensor *w_cf, const tg_tensor *w_co, unsigned flags);
/* The gates of one lstm_fgr step (lstm_peephole plus full gate recurrence) in one op, from xp [B,4H] (x·W_ihᵀ
 * + b_ih, blocks i, f, g, o), h [B,R], c [B,H], W_hh [4H,R], b_hh [4H] (or NULL), the peepholes w_ci, w_cf,
 * w_co [H], W_gg [3H,3H] and the previous gates prev: [3,B,H] (i, f, o) or [4,B,H] (a result of this op):
 *     [r_i | r_f | r_o] = [i_{t−1} | f_{t−1} | o_{t−1}]·W_ggᵀ,   a = xp + h·Wᵀ + b
 *     i = σ(a_i + w_ci ⊙ c + r_i),  f = σ(a_f + w_cf ⊙ c + r_f),  g = tanh(a_g)
 *     c' = f ⊙ c + i ⊙ g,  o = σ(a_o + w_co ⊙ c' + r_o)
 * The result is the gates [4,B,H] (i, f, g, o gate-major; tg_select(y, k) are zero-copy views, the next
 * step's prev is y itself), and tg_lstm_state(y, c) gives (h', c'); together the same values as the plain
 * ops within rounding. In place (the trailing _): the gates are stored over xp when xp is an op result of
 * the current tape and the step is recorded (xp's values are gone afterwards; its version is bumped if a
 * record saved any of xp's elements); a leaf or an untaped xp is left alone. */
tg_tensor *tg_lstm_fgr_gates_(tg_tensor *xp, const tg_tensor *h, const tg_tensor *W, const tg_tensor *b, const tg_tensor *c,
                              const tg_tensor *w_ci, const tg_tensor *w_cf, const tg_tensor *w_co, const tg_tensor *W_gg,
                              const tg_tensor *prev);
/* One step of the zoo's GRU-like cells (mgu, mut1, mut2, mut3, gru_reset_before) in one op: two gates, u
 * (blends) and s (scales h for the candidate), a candidate that reads s ⊙ h through its own product, a
 * blend. From the step's input projection xp [B,n·H] (x·W_ihᵀ + b_ih; its blocks, in order: s if
 * TG_GRUZ_S_FIRST, u, s, h̃, each only where the flags give it one), h [B,H], the layer input x [B,H] (only
 * for TG_GRUZ_S_PLUS_X / TG_GRUZ_C_TANH_X, else NULL), weights W_* [H,H] and biases b_* [H] (or NULL):
 *     u = σ(xp_u + h·W_uᵀ + b_u),  s = σ(xp_s + h·W_sᵀ + b_s),  h̃ = tanh(xp_h̃ + (s ⊙ h)·W_cᵀ + b_c)
 *     h' = h + u ⊙ (h̃ − h)
 * with flags (or'ed) changing one thing each: TG_GRUZ_ONE_GATE (s = u, MGU: no W_s), TG_GRUZ_U_INPUT_ONLY
 * (u = σ(xp_u), MUT1: no W_u), TG_GRUZ_U_TANH_H (u's product reads tanh(h), MUT3), TG_GRUZ_S_PLUS_X (x in
 * place of xp_s, MUT2), TG_GRUZ_C_TANH_X (tanh(x) in place of xp_h̃, MUT1), TG_GRUZ_SHARED (u and s from one
 * product h·W_sᵀ + b_s with W_s [2H,H], b_s [2H], blocks in xp's order, MUT2: no W_u), TG_GRUZ_S_FIRST (s's
 * block before u's), TG_GRUZ_KEEP_H (h' = h̃ + u ⊙ (h − h̃), the GRU's z). A weight the flags do not read is
 * refused. The result is [K,B,H]: h' = tg_select(y, 0), then s and h̃ where they have no block of xp (MUT2's
 * r, MUT1's h̃; K = 1 otherwise). Same values as the plain ops (tg_linear, tg_sigmoid, tg_mul, tg_tanh,
 * tg_lerp) within rounding, one record, and in place (the trailing _) as tg_lstm_cell_: the activations
 * u, s, h̃ are stored over xp, so the tape keeps n + K floats per batch x hidden element. */
enum {
    TG_GRUZ_ONE_GATE = 1, TG_GRUZ_U_INPUT_ONLY = 2, TG_GRUZ_U_TANH_H = 4, TG_GRUZ_S_PLUS_X = 8, TG_GRUZ_C_TANH_X = 16,
    TG_GRUZ_SHARED = 32, TG_GRUZ_S_FIRST = 64, TG_GRUZ_KEEP_H = 128
};
tg_tensor *tg_gru_zoo_(tg_tensor *xp, const tg_tensor *x, const tg_tensor *h, const tg_tensor *W_u, const tg_tensor *b_u,
                       const tg_tensor *W_s, const tg_tensor *b_s, const tg_tensor *W_c, const tg_tensor *b_c,
                       unsigned flags);
/* The one-state recurrence of a whole layer and direction in one op (the built-in rnn_tanh and rnn_relu
 * cells and the zoo's indrnn), from the input projection xp [T,B,H] (x·W_ihᵀ + b_ih of every step), the
 * initial state h0 [B,H], W_hh [H,H] (or u [H], IndRNN's one weight per unit) and b_hh [H] (or NULL):
 *     h'_t = act(xp_t + h'_{t−1}·Wᵀ + b)    (act(xp_t + u ⊙ h'_{t−1} + b) with W [H]),   h'_{−1} = h0
 * act = tanh, or relu with TG_RNNS_RELU; TG_RNNS_REVERSE runs t = T−1 down to 0 (the reverse direction,
 * h'_T = h0). The result is [T,B,H], row t = h'_t (the final state is row T−1, row 0 reversed). Same
 * values and gradients as the per-step ops (tg_tanh(tg_linear_add(h, W, b, xp_t)), or tg_relu(tg_add(xp_t,
 * tg_add(tg_mul(u, h), b)))) stacked, bit for bit, with one record and 1 float per batch x hidden element
 * and step on the tape: in place (the trailing _), when xp is an op result of the current tape, the op is
 * recorded and no other argument shares xp's storage, the result is stored over xp and returned as a view
 * of it (xp's values are gone and its version is bumped); otherwise it gets a buffer of its own. */
enum { TG_RNNS_RELU = 1, TG_RNNS_REVERSE = 2 };
tg_tensor *tg_rnn_seq_(tg_tensor *xp, const tg_tensor *h0, const tg_tensor *W, const tg_tensor *b, unsigned flags);
/* An LSTM layer and direction over a whole sequence in one op (the built-in "lstm" cell without
 * projections), from the input projection xp [T,B,4H] (x·W_ihᵀ + b_ih of every step, gate order i,f,g,o),
 * the initial states h0, c0 [B,H], W_hh [4H,H] and b_hh [4H] (or NULL), in tg_lstm_cell_'s argument order;
 * per step the LSTM of tg_lstm_cell_,
 *     [i; f; g; o] = [σ; σ; tanh; σ](xp_t + h'_{t−1}·Wᵀ + b),  c'_t = f ⊙ c'_{t−1} + i ⊙ g,  h'_t = o ⊙ tanh(c'_t)
 * with h'_{−1} = h0, c'_{−1} = c0; TG_LSTMS_REVERSE runs t = T−1 down to 0. The result is [2,T,B,H]: row
 * 0 the h'_t (the layer's output [T,B,H]), row 1 the c'_t. Same values and gradients as tg_lstm_cell_ per
 * step with its h' stacked, bit for bit, with one record. In place (the trailing _), as tg_lstm_cell_:
 * when xp is an op result of the current tape, the op is recorded and no other argument shares xp's
 * storage, the gate activations are stored over xp (its values are gone and its version is bumped);
 * otherwise they get a buffer of their own. */
enum { TG_LSTMS_REVERSE = 1 };
tg_tensor *tg_lstm_seq_(tg_tensor *xp, const tg_tensor *h0, const tg_tensor *W, const tg_tensor *b, const tg_tensor *c0,
                        unsigned flags);
/* Layer normalisation (torch.nn.functional.layer_norm) over each of `blocks` equal parts of the last
 * axis of x [..., N]: part k of a row, a = x[..., k·n : (k+1)·n] with n = N / blocks, becomes
 *     (a − μ) / √(σ² + eps) ⊙ gain[k·n : (k+1)·n] + beta[k·n : (k+1)·n]
 * with μ and σ² (biased) the mean and variance of a. gain [N]; beta [N] or NULL (no shift); eps > 0
 * (torch's default is 1e-5). blocks = 1 is F.layer_norm(x, (N,), gain, beta, eps); blocks = 4 normalises
 * an LSTM's four gate blocks separately. One record; the tape keeps the result and two numbers per part. */
tg_tensor *tg_layer_norm(const tg_tensor *x, int blocks, const tg_tensor *gain, const tg_tensor *beta, double eps);
/* The gates of a layer-normalised LSTM (Ba et al. 2016) in one op: with G = strlen(acts) blocks of the
 * last axis N of x and y (one shape), gate k = act_k(LN(x_k; gain_x, beta_x) + LN(y_k; gain_y, beta_y)),
 * each LN over its block as tg_layer_norm(., G, ...) does it, acts as tg_gates takes them. The result is
 * gate-major [G, ..., N/G] (gate k = tg_select(y, k)), the values of tg_gates(tg_add(tg_layer_norm(x, G,
 * gain_x, beta_x, eps), tg_layer_norm(y, G, gain_y, beta_y, eps)), acts); one record, and the tape keeps
 * the gates and two numbers per part of x and of y where the four ops keep four results. Shifts may be
 * NULL. returns: tape-owned; args: borrowed */
tg_tensor *tg_ln_gates(const tg_tensor *x, const tg_tensor *y, const tg_tensor *gain_x, const tg_tensor *beta_x,
                       const tg_tensor *gain_y, const tg_tensor *beta_y, double eps, const char *acts);
/* a + w ⊙ (b − a) (torch.lerp; same shapes, no broadcasting): the GRU's h' = n + z ⊙ (h − n) in one op,
 * same values and gradients as tg_add(a, tg_mul(w, tg_sub(b, a))). */
tg_tensor *tg_lerp(const tg_tensor *a, const tg_tensor *b, const tg_tensor *w);

/* matrix products (2-D operands; transposes are never materialised) */
tg_tensor *tg_matmul(const tg_tensor *a, const tg_tensor *b);    /* [M,K]·[K,N] -> [M,N] */
tg_tensor *tg_matmul_nt(const tg_tensor *a, const tg_tensor *b); /* [M,K]·[N,K]ᵀ -> [M,N] */
tg_tensor *tg_matmul_tn(const tg_tensor *a, const tg_tensor *b); /* [K,M]ᵀ·[K,N] -> [M,N] */
/* x [..., I] · W[O, I]ᵀ + b[O] -> [..., O] in one op; b may be NULL (no bias) */
tg_tensor *tg_linear(const tg_tensor *x, const tg_tensor *W, const tg_tensor *b);
/* c + x·Wᵀ + b, c shaped like the result ([..., O]): a linear layer added to a tensor in one op, with
 * the same values (bit for bit) as tg_add(c, tg_linear(x, W, b)) but one tensor and one record less,
 * e.g. a recurrent projection added to the precomputed input projection:
 *     pre = tg_linear_add(h, W_hh, b_hh, xproj_t);   // = tg_add(xproj_t, tg_linear(h, W_hh, b_hh)) */
tg_tensor *tg_linear_add(const tg_tensor *x, const tg_tensor *W, const tg_tensor *b, const tg_tensor *c);

/* shapes */
tg_tensor *tg_transpose(const tg_tensor *x, int axis0, int axis1);  /* swaps two axes (a copy) */
tg_tensor *tg_reshape(const tg_tensor *x, int ndim, const int64_t *shape); /* shares storage; one -1 */
tg_tensor *tg_select(const tg_tensor *x, int64_t index);   /* x[index] on axis 0, zero-copy view */
tg_tensor *tg_slice(const tg_tensor *x, int axis, int64_t begin, int64_t end); /* x[..., begin:end, ...] */
/* Splits x along axis into n equal parts written to out[0..n-1] (each tape-owned). Returns 0 or -1. */
int tg_chunk(const tg_tensor *x, int axis, int n, tg_tensor **out);
tg_tensor *tg_concat(int n, tg_tensor *const *xs, int axis);   /* along an existing axis */
tg_tensor *tg_stack(int n, tg_tensor *const *xs);              /* along a new first axis */

/* reductions (axis may be negative) */
tg_tensor *tg_sum(const tg_tensor *x);                          /* 0-d */
tg_tensor *tg_mean(const tg_tensor *x);                         /* 0-d */
tg_tensor *tg_sum_axis(const tg_tensor *x, int axis, bool keepdim);
tg_tensor *tg_mean_axis(const tg_tensor *x, int axis, bool keepdim);
tg_tensor *tg_max_axis(const tg_tensor *x, int axis, bool keepdim); /* gradient to the first maximum */
tg_tensor *tg_softmax(const tg_tensor *x, int axis);
tg_tensor *tg_log_softmax(const tg_tensor *x, int axis);        /* stable for inputs of ±1e4 */

/* indexing, regularisation, masks */
/* rows weight[index[i]] -> [n, D]; backward scatter-adds into weight (repeated indices add up) */
tg_tensor *tg_gather_rows(const tg_tensor *weight, int64_t n, const int64_t *index);
/* embedding lookup: weight [V,D], indices shaped ndim/shape -> [shape..., D] */
tg_tensor *tg_embedding(const tg_tensor *weight, int ndim, const int64_t *shape, const int64_t *index);
/* Inverted dropout: in training zeroes each element with probability p and scales the rest by 1/(1-p);
 * in evaluation (train = false) or p = 0 returns x unchanged. rng NULL = the thread's default. */
tg_tensor *tg_dropout(const tg_tensor *x, double p, bool train, tg_rng *rng);
/* x [B, ...] with row b multiplied by mask[b] (mask [B], not differentiated): zeroes padded steps */
tg_tensor *tg_mask_rows(const tg_tensor *x, const tg_tensor *mask);

/* fused losses (autograd/ops_loss.c; <tapegrad/loss.h> builds the reduced losses on them) */
typedef enum tg_pointwise_kind {
    TG_PWL_L1,            /* |x - y|                                                        */
    TG_PWL_SMOOTH_L1,     /* |d| < β ? d²/(2β) : |d| - β/2, param β >= 0                    */
    TG_PWL_HUBER,         /* |d| < δ ? d²/2 : δ(|d| - δ/2), param δ > 0                     */
    TG_PWL_KL,            /* xlogy(y, y) - y x   (x log-probabilities, y probabilities)     */
    TG_PWL_KL_LOG_TARGET, /* e^y (y - x)         (y log-probabilities)                      */
    TG_PWL_BCE,           /* (y-1) max(log(1-x), -100) - y max(log x, -100), x in [0, 1]    */
    TG_PWL_COUNT
} tg_pointwise_kind;
/* The unreduced per-element loss of input x and target y (same shape and dtype), with torch's
 * forward and backward kernels (BCE's gradient (x-y)/max(x(1-x), 1e-12); NaN propagates as in torch).
 * Both inputs may require grad. */
tg_tensor *tg_pointwise_loss(const tg_tensor *x, const tg_tensor *y, tg_pointwise_kind kind, double param);
/* CTC negative log-likelihood per sequence -> [N] (torch's _ctc_loss; tg_ctc_loss in <tapegrad/loss.h>
 * adds the reductions). log_probs [T,N,C]; sequence n has input_lengths[n] <= T steps and
 * target_lengths[n] labels in [0, C), none the blank, read from targets + n·target_stride (padded
 * [N,S]: target_stride = S) or, with target_stride 0, one after another (concatenated). An
 * impossible alignment gives +inf (0 with zero_infinity, with a 0 gradient). The gradient is the
 * exact one (torch's differs by e^lp, see autograd/ops_loss.c; both agree through a log_softmax). */
tg_tensor *tg_ctc_nll(const tg_tensor *log_probs, const int64_t *targets, int64_t target_stride,
                      const int64_t *input_lengths, const int64_t *target_lengths, int64_t blank, bool zero_infinity);

#ifdef __cplusplus
}
#endif
#endif
