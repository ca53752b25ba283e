/* tapegrad/manual.h - hand-derived backprop-through-time references (no tape) for RNN, LSTM and GRU.
 *
 * These functions compute forward passes and their exact gradients by explicit, hand-derived formulas,
 * in the classic step-by-step decomposition (rnn_cell_forward / rnn_cell_backward / rnn_forward /
 * rnn_backward / lstm_cell_forward / ... ). They never touch the tape: they exist to check it, and to
 * serve `tapegrad grad --manual` (docs/design.md §8).
 *
 *     tg_manual_layer p = { w_ih, w_hh, b_ih, b_hh, NULL };  // borrowed PyTorch-layout parameters
 *     tg_manual_cache *cache;
 *     tg_tensor *hT, *cT;
 *     tg_tensor *y = tg_manual_lstm_forward(x, h0, c0, &p, &hT, &cT, &cache);   // y [T,B,H]: new ref
 *     tg_manual_layer g = {0};                               // NULL fields: allocated by the backward
 *     tg_tensor *dx, *dh0, *dc0;
 *     tg_manual_lstm_backward(cache, dy, dhT, dcT, &g, &dx, &dh0, &dc0);       // 0, or -1 on error
 *     ...
 *     tg_manual_layer_release(&g, 1); tg_manual_cache_free(cache);
 *     tg_release(y); tg_release(hT); tg_release(cT); tg_release(dx); tg_release(dh0); tg_release(dc0);
 *
 * Parameters follow PyTorch exactly (docs/design.md §7), G gates of size H stacked along dim 0:
 *   weight_ih [G*H, I], weight_hh [G*H, H], bias_ih [G*H], bias_hh [G*H]
 *   RNN  (G=1): h' = act(W_ih x + b_ih + W_hh h + b_hh), act = tanh or relu (relu'(0) = 0)
 *   LSTM (G=4, order i,f,g,o): c' = sigmoid(f) c + sigmoid(i) tanh(g); h' = sigmoid(o) tanh(c')
 *   GRU  (G=3, order r,z,n, "reset-after"): r = sigmoid(W_ir x + b_ir + W_hr h + b_hr), z likewise,
 *        n = tanh(W_in x + b_in + r * (W_hn h + b_hn)); h' = (1 - z) n + z h
 *   GRU reset-before (Cho et al. 2014, nn's "gru_reset_before"): as GRU but
 *        n = tanh(W_in x + b_in + W_hn (r * h) + b_hn); through tg_manual_stack_forward / _backward
 * (W x means x @ W^T.) Sequences are time-major: x [T,B,I], outputs y [T,B,H]. Stacked networks
 * ("_stack_" functions) have L layers; layer k > 0 reads layer k-1's outputs (I_k = H), states are
 * [L,B,H], and there is no dropout.
 *
 * Projections (LSTM with proj_size P, Sak et al. 2014, torch.nn.LSTM(proj_size=P)): the stack functions
 * (tg_manual_lstm_stack_* and tg_manual_stack_* with TG_MANUAL_LSTM) take params[k].weight_hr [P, H] on
 * every layer (all or none): h_t = W_hr (o ⊙ tanh(c_t)), so h0, hn, dh* and y are P wide ([L,B,P],
 * [T,B,P]), c0, cn, dc* stay [L,B,H], weight_hh is [4H, P] and layer k > 0 reads I_k = P; the gradient
 * comes back in grads[k].weight_hr. The one-step and one-sequence functions refuse a weight_hr.
 *
 * Dtypes: every tensor of one call shares one dtype, F32 or F64, and the computation runs in it
 * (F64 results agree with PyTorch's float64 to ~1e-12 relative).
 *
 * Ownership (docs/design.md §3): tensor arguments are borrowed. Returned tensors and tensors
 * written through `tg_tensor **` out-parameters are new references (tg_release). Caches are new
 * objects (tg_manual_cache_free). Every out-parameter may be NULL when the result is not wanted; on
 * failure every requested out-parameter is set to NULL.
 *
 * The cache keeps references to the inputs and parameters it was built from and remembers their
 * version counters: modifying any of them (or the returned y) in place before the backward makes the
 * backward fail with a message, instead of silently returning wrong gradients.
 *
 * Parameter gradients (`tg_manual_layer *grads`): a field that is NULL is allocated by the backward
 * (a new ref, filled with this call's gradient; release with tg_manual_layer_release); a field that is
 * already set must have the parameter's shape and dtype and is accumulated into (+=), PyTorch style.
 * grads == NULL skips the parameter gradients.
 *
 * Upstream gradients (dy, dh_*, dc_*) may be NULL, meaning zero; but a NULL given while an error is
 * pending is taken for the result of a failed call and fails quietly (the first message is kept).
 *
 * Errors (docs/design.md §6): a NULL or released argument, a shape mismatch, mixed dtypes, a cache
 * of the wrong kind or a stale cache are programming errors, reported through tg_error with one
 * message naming the function and the shapes, e.g.
 *   "tg_manual_lstm_forward: weight_hh [128,31] does not match [4*H,H] = [128,32] (H = 32)"
 * after which the function returns NULL / -1, having freed everything it allocated.
 */
#ifndef TAPEGRAD_MANUAL_H
#define TAPEGRAD_MANUAL_H
#include <tapegrad/tensor.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum tg_manual_cell {
    TG_MANUAL_RNN_TANH = 0,
    TG_MANUAL_RNN_RELU = 1,
    TG_MANUAL_LSTM = 2,
    TG_MANUAL_GRU = 3,
    TG_MANUAL_GRU_RESET_BEFORE = 4 /* Cho et al.'s GRU (nn's "gru_reset_before"); stack API only */
} tg_manual_cell;

typedef enum tg_manual_act { TG_MANUAL_TANH = 0, TG_MANUAL_RELU = 1 } tg_manual_act;

/* The four parameters (or their gradients) of one layer, with PyTorch's names. As an argument holding
 * parameters the pointers are borrowed; as a gradient output see "Parameter gradients" above. */
typedef struct tg_manual_layer {
    tg_tensor *weight_ih; /* [G*H, I] */
    tg_tensor *weight_hh; /* [G*H, H] */
    tg_tensor *bias_ih;   /* [G*H] */
    tg_tensor *bias_hh;   /* [G*H] */
    tg_tensor *weight_hr; /* LSTM with projections only: [P, H], or NULL (see "Projections" above) */
} tg_manual_layer;

/* What a forward pass saved for its backward (one step, one sequence, or a stack). Opaque. */
typedef struct tg_manual_cache tg_manual_cache;

/* ---- helpers ---------------------------------------------------------------------------------- */

const char *tg_manual_cell_name(tg_manual_cell cell);  /* "rnn_tanh", "rnn_relu", "lstm", "gru", "gru_reset_before" */
/* "rnn_tanh" | "rnn_relu" | "lstm" | "gru" | "gru_reset_before" -> *cell; returns 0, or -1 (no error reported). */
int tg_manual_cell_parse(const char *name, tg_manual_cell *cell);
int tg_manual_cell_gates(tg_manual_cell cell);        /* G: 1, 1, 4, 3, 3 */
void tg_manual_cache_free(tg_manual_cache *cache);    /* NULL-safe */
/* Releases the n layers' tensors and sets the fields to NULL (for gradients the backward allocated). */
void tg_manual_layer_release(tg_manual_layer *layers, int n);
/* Describes a cache: its cell, number of layers, and sizes (any pointer may be NULL). 0 or -1. */
int tg_manual_cache_info(const tg_manual_cache *cache, tg_manual_cell *cell, int *layers,
                         int64_t *T, int64_t *B, int64_t *I, int64_t *H);

/* ---- RNN (tanh or relu) ------------------------------------------------------------------------ */

/* One step. x [B,I], h [B,H]. returns: new ref h_next [B,H]; *cache: new object. */
tg_tensor *tg_manual_rnn_cell_forward(tg_manual_act act, const tg_tensor *x, const tg_tensor *h,
                                      const tg_manual_layer *p, tg_manual_cache **cache);
/* From dh_next [B,H]: dx [B,I], dh_prev [B,H] (new refs); parameter gradients into grads. 0 or -1. */
int tg_manual_rnn_cell_backward(const tg_manual_cache *cache, const tg_tensor *dh_next,
                                tg_manual_layer *grads, tg_tensor **dx, tg_tensor **dh_prev);
/* Sequence. x [T,B,I], h0 [B,H]. returns: new ref y [T,B,H] (all hidden states); *h_last [B,H]. */
tg_tensor *tg_manual_rnn_forward(tg_manual_act act, const tg_tensor *x, const tg_tensor *h0,
                                 const tg_manual_layer *p, tg_tensor **h_last, tg_manual_cache **cache);
/* BPTT from dy [T,B,H] and dh_last [B,H]: dx [T,B,I], dh0 [B,H], parameter gradients. 0 or -1. */
int tg_manual_rnn_backward(const tg_manual_cache *cache, const tg_tensor *dy, const tg_tensor *dh_last,
                           tg_manual_layer *grads, tg_tensor **dx, tg_tensor **dh0);
/* Stack of `layers` layers. x [T,B,I], h0 [L,B,H], params[L]. returns: new ref y [T,B,H] (last
 * layer); *hn [L,B,H]. */
tg_tensor *tg_manual_rnn_stack_forward(tg_manual_act act, int layers, const tg_tensor *x,
                                       const tg_tensor *h0, const tg_manual_layer *params,
                                       tg_tensor **hn, tg_manual_cache **cache);
/* From dy [T,B,H], dhn [L,B,H]: dx [T,B,I], dh0 [L,B,H], grads[L]. 0 or -1. */
int tg_manual_rnn_stack_backward(const tg_manual_cache *cache, const tg_tensor *dy, const tg_tensor *dhn,
                                 tg_manual_layer *grads, tg_tensor **dx, tg_tensor **dh0);

/* ---- LSTM (gates i, f, g, o) ------------------------------------------------------------------- */

/* One step. x [B,I], h, c [B,H]. returns: new ref h_next [B,H]; *c_next [B,H]; *cache. */
tg_tensor *tg_manual_lstm_cell_forward(const tg_tensor *x, const tg_tensor *h, const tg_tensor *c,
                                       const tg_manual_layer *p, tg_tensor **c_next, tg_manual_cache **cache);
/* From dh_next, dc_next [B,H]: dx [B,I], dh_prev, dc_prev [B,H], parameter gradients. 0 or -1. */
int tg_manual_lstm_cell_backward(const tg_manual_cache *cache, const tg_tensor *dh_next,
                                 const tg_tensor *dc_next, tg_manual_layer *grads, tg_tensor **dx,
                                 tg_tensor **dh_prev, tg_tensor **dc_prev);
/* Sequence. x [T,B,I], h0, c0 [B,H]. returns: new ref y [T,B,H]; *h_last, *c_last [B,H]. */
tg_tensor *tg_manual_lstm_forward(const tg_tensor *x, const tg_tensor *h0, const tg_tensor *c0,
                                  const tg_manual_layer *p, tg_tensor **h_last, tg_tensor **c_last,
                                  tg_manual_cache **cache);
/* BPTT from dy [T,B,H], dh_last, dc_last [B,H]: dx [T,B,I], dh0, dc0 [B,H], grads. 0 or -1. */
int tg_manual_lstm_backward(const tg_manual_cache *cache, const tg_tensor *dy, const tg_tensor *dh_last,
                            const tg_tensor *dc_last, tg_manual_layer *grads, tg_tensor **dx,
                            tg_tensor **dh0, tg_tensor **dc0);
/* Stack. x [T,B,I], h0, c0 [L,B,H]. returns: new ref y [T,B,H]; *hn, *cn [L,B,H]. */
tg_tensor *tg_manual_lstm_stack_forward(int layers, const tg_tensor *x, const tg_tensor *h0,
                                        const tg_tensor *c0, const tg_manual_layer *params,
                                        tg_tensor **hn, tg_tensor **cn, tg_manual_cache **cache);
int tg_manual_lstm_stack_backward(const tg_manual_cache *cache, const tg_tensor *dy, const tg_tensor *dhn,
                                  const tg_tensor *dcn, tg_manual_layer *grads, tg_tensor **dx,
                                  tg_tensor **dh0, tg_tensor **dc0);

/* ---- GRU (gates r, z, n; reset-after) ---------------------------------------------------------- */

tg_tensor *tg_manual_gru_cell_forward(const tg_tensor *x, const tg_tensor *h, const tg_manual_layer *p,
                                      tg_manual_cache **cache);
int tg_manual_gru_cell_backward(const tg_manual_cache *cache, const tg_tensor *dh_next,
                                tg_manual_layer *grads, tg_tensor **dx, tg_tensor **dh_prev);
tg_tensor *tg_manual_gru_forward(const tg_tensor *x, const tg_tensor *h0, const tg_manual_layer *p,
                                 tg_tensor **h_last, tg_manual_cache **cache);
int tg_manual_gru_backward(const tg_manual_cache *cache, const tg_tensor *dy, const tg_tensor *dh_last,
                           tg_manual_layer *grads, tg_tensor **dx, tg_tensor **dh0);
tg_tensor *tg_manual_gru_stack_forward(int layers, const tg_tensor *x, const tg_tensor *h0,
                                       const tg_manual_layer *params, tg_tensor **hn,
                                       tg_manual_cache **cache);
int tg_manual_gru_stack_backward(const tg_manual_cache *cache, const tg_tensor *dy, const tg_tensor *dhn,
                                 tg_manual_layer *grads, tg_tensor **dx, tg_tensor **dh0);

/* ---- any cell (what `tapegrad grad --manual` needs) ------------------------------------------- */

/* Stack forward for any cell. c0 and cn are for TG_MANUAL_LSTM only: for the other cells c0 is
 * ignored and *cn is set to NULL. */
tg_tensor *tg_manual_stack_forward(tg_manual_cell cell, int layers, const tg_tensor *x,
                                   const tg_tensor *h0, const tg_tensor *c0, const tg_manual_layer *params,
                                   tg_tensor **hn, tg_tensor **cn, tg_manual_cache **cache);
/* Stack backward for a cache made by any *_stack_forward; dcn / dc0 are for LSTM only (ignored /
 * set to NULL otherwise). */
int tg_manual_stack_backward(const tg_manual_cache *cache, const tg_tensor *dy, const tg_tensor *dhn,
                             const tg_tensor *dcn, tg_manual_layer *grads, tg_tensor **dx,
                             tg_tensor **dh0, tg_tensor **dc0);

#ifdef __cplusplus
}
#endif
#endif
