/* nn/cells.c - recurrent cells: one time step each, written with public ops only (no backward code:
 * the tape differentiates them), and their table (the registry is nn/cell_registry.c).
 *
 * Dimension letters: B batch, I input size, H hidden size, G gates.
 * Every step receives xproj [B, G·H] = x·W_ihᵀ + b_ih, computed for all time steps at once by the
 * runner, and adds the recurrent projection h·W_hhᵀ + b_hh itself. Gate order and equations follow
 * PyTorch: LSTM i,f,g,o; GRU r,z,n. W_hr, W_hz, W_hn below are the gate blocks of W_hh.
 *
 * The variants (peephole LSTM and the LSTM search space of Greff et al., MGU, MUT1-3, IndRNN, LN-LSTM)
 * live in nn/cells_zoo.c; adding one is a step function and a row there (recipe: docs/design.md,
 * "Adding a cell"). */
#include "nn/cells_internal.h"

#include <tapegrad/autograd.h>
#include <tapegrad/nn.h>
#include <tapegrad/ops.h>

#include <math.h>
#include <stdio.h>
#include <string.h>

/* ---- Elman RNN ----------------------------------------------------------------------------------- */

static int rnn_tanh_step(const tg_cell *cell, const tg_cell_params *p, const tg_tensor *x, const tg_tensor *xproj,
                         tg_tensor *const *state, tg_tensor **out) {
    (void)cell; (void)x;
    /* h' = tanh(x W_ihᵀ + b_ih + h W_hhᵀ + b_hh) */
    out[0] = tg_tanh(tg_linear_add(state[0], p->weight_hh, p->bias_hh, xproj)); /* = tg_add(xproj, tg_linear(..)), one op */
    return tg__cell_produced(out, 1);
}

static int rnn_relu_step(const tg_cell *cell, const tg_cell_params *p, const tg_tensor *x, const tg_tensor *xproj,
                         tg_tensor *const *state, tg_tensor **out) {
    (void)cell; (void)x;
    /* h' = relu(x W_ihᵀ + b_ih + h W_hhᵀ + b_hh) */
    out[0] = tg_relu(tg_linear_add(state[0], p->weight_hh, p->bias_hh, xproj));
    return tg__cell_produced(out, 1);
}

/* All T steps of a one-state recurrence at once (the runner's path when nothing happens between steps):
 * one tg_rnn_seq_ over the layer's input projection, which it overwrites with the outputs; the same
 * values and gradients as the steps above (and indrnn's in nn/cells_zoo.c), bit for bit. */
tg_tensor *tg__cell_rnn_sequence(const tg_cell_params *p, const tg_tensor *xproj, bool reverse, unsigned act,
                                 tg_tensor *const *state, tg_tensor **out) {
    tg_tensor *y = tg_rnn_seq_((tg_tensor *)xproj, state[0], p->weight_hh, p->bias_hh,
                               act | (reverse ? TG_RNNS_REVERSE : 0u));
    out[0] = y ? tg_select(y, reverse ? 0 : tg_dim(y, 0) - 1) : NULL; /* the final h */
    return out[0] ? y : NULL;
}

static tg_tensor *rnn_tanh_sequence(const tg_cell *cell, const tg_cell_params *p, const tg_tensor *xproj, bool reverse,
                                    tg_tensor *const *state, tg_tensor **out) {
    (void)cell;
    return tg__cell_rnn_sequence(p, xproj, reverse, 0, state, out);
}

static tg_tensor *rnn_relu_sequence(const tg_cell *cell, const tg_cell_params *p, const tg_tensor *xproj, bool reverse,
                                    tg_tensor *const *state, tg_tensor **out) {
    (void)cell;
    return tg__cell_rnn_sequence(p, xproj, reverse, TG_RNNS_RELU, state, out);
}

/* ---- LSTM (Hochreiter & Schmidhuber 1997, with the forget gate of Gers et al. 2000) -------------- */

static int lstm_step(const tg_cell *cell, const tg_cell_params *p, const tg_tensor *x, const tg_tensor *xproj,
                     tg_tensor *const *state, tg_tensor **out) {
    (void)cell; (void)x;
    const tg_tensor *h = state[0], *c = state[1];
    /* [a_i | a_f | a_g | a_o] = x W_ihᵀ + b_ih + h W_hhᵀ + b_hh
     * [i; f; g; o] = [σ(a_i); σ(a_f); tanh(a_g); σ(a_o)]: input gate, forget gate, candidate cell, output gate
     * c' = f ⊙ c + i ⊙ g,  h' = o ⊙ tanh(c')
     * in one op (= tg_lstm_state(tg_gates(tg_linear_add(h, W_hh, b_hh, xproj), "ssts"), c), bit for bit),
     * h' and c' as views of its [2,B,H]. xproj is the runner's tape-owned view of this step's input
     * projection, read by nothing else: the op keeps the gate activations in its storage. */
    tg_tensor *hc = tg_lstm_cell_((tg_tensor *)xproj, h, p->weight_hh, p->bias_hh, c);
    out[0] = tg_select(hc, 0);
    out[1] = tg_select(hc, 1);
    /* with projections (proj_size P, Sak et al. 2014): h' = (o ⊙ tanh(c')) W_hrᵀ, [B,H] -> [B,P] */
    if (p->weight_hr) out[0] = tg_linear(out[0], p->weight_hr, NULL);
    return tg__cell_produced(out, 2);
}

/* All T steps at once (the runner's path when nothing happens between steps and there are no
 * projections): one tg_lstm_seq_ over the layer's input projection, which keeps the gates over it as the
 * steps do; the same values and gradients as lstm_step, bit for bit, with one record per layer and
 * direction instead of three per step and the stacked copy. */
static tg_tensor *lstm_sequence(const tg_cell *cell, const tg_cell_params *p, const tg_tensor *xproj, bool reverse,
                                tg_tensor *const *state, tg_tensor **out) {
    (void)cell;
    tg_tensor *hc = tg_lstm_seq_((tg_tensor *)xproj, state[0], p->weight_hh, p->bias_hh, state[1],
                                 reverse ? TG_LSTMS_REVERSE : 0u); /* [2,T,B,H] */
    if (!hc) return NULL;
    const int64_t last = reverse ? 0 : tg_dim(hc, 1) - 1;
    tg_tensor *y = tg_select(hc, 0); /* [T,B,H] */
    out[0] = y ? tg_select(y, last) : NULL;
    out[1] = tg_select(tg_select(hc, 1), last);
    return out[0] && out[1] ? y : NULL;
}

/* ---- GRU ------------------------------------------------------------------------------------------ */

/* PyTorch's GRU ("reset-after", as in cuDNN): the reset gate scales the recurrent projection. */
static int gru_step(const tg_cell *cell, const tg_cell_params *p, const tg_tensor *x, const tg_tensor *xproj,
                    tg_tensor *const *state, tg_tensor **out) {
    (void)cell; (void)x;
    const tg_tensor *h = state[0];
    /* [x_r | x_z | x_n] = x W_ihᵀ + b_ih (xproj, all steps at once);  [h_r | h_z | h_n] = h W_hhᵀ + b_hh
     * r = σ(x_r + h_r)                reset gate
     * z = σ(x_z + h_z)                update gate
     * n = tanh(x_n + r ⊙ h_n)         candidate
     * h' = (1 − z) ⊙ n + z ⊙ h  =  n + z ⊙ (h − n)
     * in one op (= tg_gru_gates(xproj, tg_linear(h, W_hh, b_hh)) and tg_lerp on its views, bit for bit);
     * the gates are kept in xproj's storage, the runner's view of this step's input projection */
    out[0] = tg_select(tg_gru_cell_((tg_tensor *)xproj, h, p->weight_hh, p->bias_hh), 0);
    return tg__cell_produced(out, 1);
}

/* Cho et al. 2014 ("reset-before"): the reset gate scales h before the recurrent product, so W_hn
 * cannot share one GEMM with W_hr, W_hz. Same parameters and shapes as "gru".
 *   r = σ(x_r + h W_hrᵀ + b_hr)          reset gate (tg_gru_zoo_'s s)
 *   z = σ(x_z + h W_hzᵀ + b_hz)          update gate (its u)
 *   n = tanh(x_n + (r ⊙ h) W_hnᵀ + b_hn)   candidate
 *   h' = (1 − z) ⊙ n + z ⊙ h  =  n + z ⊙ (h − n)
 * in one op (autograd/ops_zoo_gru.c) on block views of weight_hh (made once per tape); r, z, n are stored
 * over xproj, so the tape keeps 4 floats per step. The plain-op spelling is in tests/test_zoo.c. */
static int gru_reset_before_step(const tg_cell *cell, const tg_cell_params *p, const tg_tensor *x,
                                 const tg_tensor *xproj, tg_tensor *const *state, tg_tensor **out) {
    (void)cell; (void)x;
    const tg_tensor *wh = p->weight_hh, *bh = p->bias_hh;
    int64_t H = p->hidden_size;
    out[0] = tg_select(tg_gru_zoo_((tg_tensor *)xproj, NULL, state[0], tg__cell_block(wh, 3, 1, H), tg__cell_block(bh, 3, 1, H),
                                   tg__cell_block(wh, 3, 0, H), tg__cell_block(bh, 3, 0, H), tg__cell_block(wh, 3, 2, H),
                                   tg__cell_block(bh, 3, 2, H), TG_GRUZ_S_FIRST | TG_GRUZ_KEEP_H), 0);
    return tg__cell_produced(out, 1);
}

/* ---- standard parameters ----------------------------------------------------------------------------- */

static _Thread_local const char *g_params_caller; /* see tg__params_caller */

const char *tg__params_caller(const char *fallback) { return g_params_caller ? g_params_caller : fallback; }

const char *tg__params_caller_set(const char *fn) {
    const char *prev = g_params_caller;
    g_params_caller = fn;
    return prev;
}

int tg__cell_standard_params_proj(const tg_cell *cell, int64_t input_size, int64_t hidden_size, int64_t proj_size,
                                  bool bias, tg_dtype dtype, tg_rng *rng, tg_cell_params *out) {
    const char *fn = tg__params_caller("tg_cell_standard_params");
    if (!cell || !out) { tg_error(fn, "%s is NULL", !cell ? "cell" : "out"); return -1; }
    memset(out, 0, sizeof *out);
    if (input_size <= 0 || hidden_size <= 0 || cell->gates <= 0 || proj_size < 0 || proj_size >= hidden_size) {
        tg_error(fn, "cell '%s': input size %lld, hidden size %lld, %d gates must all be positive (proj size %lld: "
                 "0 or below the hidden size)", cell->name, (long long)input_size, (long long)hidden_size, cell->gates,
                 (long long)proj_size);
        return -1;
    }
    if (!rng) rng = tg_default_rng();
    int64_t GH = cell->gates * hidden_size, R = proj_size ? proj_size : hidden_size; /* the width of h */
    double k = 1.0 / sqrt((double)hidden_size); /* PyTorch: every parameter ~ U(-k, k), weight_hr too */
    out->input_size = input_size;
    out->hidden_size = hidden_size;
    out->proj_size = proj_size;
    out->weight_ih = tg_rand_uniform(rng, dtype, TG_SHAPE(GH, input_size), -k, k);
    out->weight_hh = tg_rand_uniform(rng, dtype, TG_SHAPE(GH, R), -k, k);
    if (bias) {
        out->bias_ih = tg_rand_uniform(rng, dtype, TG_SHAPE(GH), -k, k);
        out->bias_hh = tg_rand_uniform(rng, dtype, TG_SHAPE(GH), -k, k);
    }
    if (proj_size) out->weight_hr = tg_rand_uniform(rng, dtype, TG_SHAPE(proj_size, hidden_size), -k, k);
    if (!out->weight_ih || !out->weight_hh || (bias && (!out->bias_ih || !out->bias_hh)) ||
        (proj_size && !out->weight_hr)) {
        tg_release(out->weight_ih);
        tg_release(out->weight_hh);
        tg_release(out->bias_ih);
        tg_release(out->bias_hh);
        tg_release(out->weight_hr);
        memset(out, 0, sizeof *out);
        return -1;
    }
    return 0;
}

int tg_cell_standard_params(const tg_cell *cell, int64_t input_size, int64_t hidden_size, bool bias,
                            tg_dtype dtype, tg_rng *rng, tg_cell_params *out) {
    return tg__cell_standard_params_proj(cell, input_size, hidden_size, 0, bias, dtype, rng, out);
}

/* ---- the table --------------------------------------------------------------------------------------- */

static const char *const g_h[] = {"h"};
static const char *const g_hc[] = {"h", "c"};

/* The equations as `tapegrad summary` prints them (W_x· x includes its block of bias_ih, W_h· h its
 * block of bias_hh; docs/cells.md has the same with references). */
static const char eq_rnn_tanh[] = "h' = tanh(W_ih x + W_hh h)";
static const char eq_rnn_relu[] = "h' = relu(W_ih x + W_hh h)";
static const char eq_lstm[] = "i = σ(W_xi x + W_hi h), f = σ(W_xf x + W_hf h), g = tanh(W_xg x + W_hg h), "
                              "o = σ(W_xo x + W_ho h)\n"
                              "c' = f⊙c + i⊙g, h' = o⊙tanh(c')";
static const char eq_gru[] = "r = σ(W_xr x + W_hr h), z = σ(W_xz x + W_hz h)\n"
                             "n = tanh(W_xn x + r⊙(W_hn h)), h' = (1−z)⊙n + z⊙h";
static const char eq_gru_rb[] = "r = σ(W_xr x + W_hr h), z = σ(W_xz x + W_hz h)\n"
                                "n = tanh(W_xn x + W_hn (r⊙h) + b_hn), h' = (1−z)⊙n + z⊙h";

/* One row per cell, with named fields (nn.h documents each); the registry (nn/cell_registry.c) lists
 * these first. */
const tg_cell tg__cells_builtin[] = {
    {.name = "rnn_tanh", .gates = 1, .n_states = 1, .state_names = g_h, .forget_gate = -1, .step = rnn_tanh_step,
     .sequence = rnn_tanh_sequence, .equations = eq_rnn_tanh, .reference = "Elman, \"Finding structure in time\", Cognitive Science 1990"},
    {.name = "rnn_relu", .gates = 1, .n_states = 1, .state_names = g_h, .forget_gate = -1, .step = rnn_relu_step,
     .sequence = rnn_relu_sequence, .equations = eq_rnn_relu, .reference = "Elman 1990 (PyTorch's nonlinearity='relu')"},
    {.name = "lstm", .gates = 4, .n_states = 2, .state_names = g_hc, .forget_gate = 1, .step = lstm_step, .proj = true,
     .sequence = lstm_sequence,     .equations = eq_lstm, .reference = "Hochreiter & Schmidhuber 1997; forget gate: Gers, Schmidhuber & Cummins 2000"},
    {.name = "gru", .gates = 3, .n_states = 1, .state_names = g_h, .forget_gate = 1, .step = gru_step,
     .equations = eq_gru, .reference = "Cho et al. 2014, the \"reset-after\" form of cuDNN / PyTorch"},
    {.name = "gru_reset_before", .gates = 3, .n_states = 1, .state_names = g_h, .forget_gate = 1, .step = gru_reset_before_step,
     .equations = eq_gru_rb, .reference = "Cho et al., \"Learning phrase representations using RNN encoder-decoder\", 2014"},
};
const int tg__cells_builtin_count = (int)(sizeof tg__cells_builtin / sizeof tg__cells_builtin[0]);

