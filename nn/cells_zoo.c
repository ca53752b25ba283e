/* nn/cells_zoo.c - the recurrent-architecture zoo: LSTM variants, minimal and evolved gated units,
 * IndRNN and the layer-normalised LSTM. Every cell is one forward time step written with public ops
 * (the tape differentiates it; there is no backward code here), a make_params when it has extra
 * parameters, and one row of tg__cells_zoo at the bottom (named fields, nn.h), which the registry
 * (nn/cell_registry.c) lists after the built-in cells. `tapegrad cells --markdown` prints the table
 * docs/cells.md shows, from these rows.
 *
 * Dimension letters: B batch, I input size (of this layer), H hidden size, G gate blocks.
 * As in nn/cells.c, a step receives xproj [B, G·H] = x W_ihᵀ + b_ih (one GEMM for all time steps, made
 * by the runner) and adds the recurrent part itself. a_i, a_f, a_g, a_o are gate pre-activations; ⊙ is
 * the elementwise product; σ the logistic sigmoid; W_h* are blocks of weight_hh, b_h* of bias_hh.
 *
 * Parameter layout (per layer k and direction, PyTorch-style names with the suffix _l{k}[_reverse]):
 * weight_ih [G·H, I], weight_hh [G·H, H], bias_ih, bias_hh [G·H], then the cell's extras, all
 * ~ U(±1/√H) like PyTorch unless a row says otherwise. Blocks are listed per cell below. */
#include "nn/cells_internal.h"

#include "autograd/tape_internal.h"

#include <tapegrad/autograd.h>
#include <tapegrad/nn.h>
#include <tapegrad/ops.h>

#include <math.h>
#include <string.h>

/* ---- gate blocks of a weight, one view per tape --------------------------------------------------- */

/* Why: a cell whose recurrent products cannot share one GEMM (mgu, mut1, mut3, gru_reset_before: a
 * later block reads a gate of an earlier one) multiplies by blocks of weight_hh. Made afresh at every
 * step, a block view is a new tensor each time, so the runner's pack scope repacks it at every step
 * (it caches by tensor), the staged dW of a backward pass cannot gather the steps (it stages by
 * tensor), and every step's select backward zero-fills and adds a gradient of the whole weight. One
 * view per (weight, block) per tape, reused by every step, is one reshape + select record for the
 * whole sequence, packed once, its dW one GEMM over the steps, and one gradient of the weight.
 *
 * The cache holds no reference: an entry is the index of the select record that made the view, and is
 * used only while that record of the current tape still has the same output and reads block k of a
 * reshape of w (everything checked through live records, so a reset tape or a reused address never
 * matches). Untaped (no grad) views are made afresh, as before. */
#define BLOCK_SLOTS 32
static _Thread_local struct block_slot {
    const tg_tensor *w, *view; /* compared, never dereferenced */
    size_t rec;                /* index of the select record on the tape */
    int G, k;
} g_blocks[BLOCK_SLOTS];
static _Thread_local int g_block_next;

static bool block_slot_live(const struct block_slot *e, const tg_tensor *w, int G, int k, int64_t H) {
    if (e->w != w || e->G != G || e->k != k || !e->view) return false;
    const tg_record *sel = tg__tape_record(e->rec);
    if (!sel || sel->op != TG_OP_SELECT || sel->out != e->view || sel->k[0] != k) return false;
    const tg_tensor *parts = sel->in[0];
    const tg_record *rs = tg__record_of(parts);
    return rs && rs->op == TG_OP_RESHAPE && rs->in[0] == w && parts->ndim >= 2 && parts->shape[0] == G &&
           parts->shape[1] == H;
}

tg_tensor *tg__cell_block(const tg_tensor *w, int G, int k, int64_t H) {
    if (!w) return NULL;
    for (int i = 0; i < BLOCK_SLOTS; i++)
        if (block_slot_live(&g_blocks[i], w, G, k, H)) return (tg_tensor *)g_blocks[i].view;
    tg_tensor *v = tg_ndim(w) == 2 ? tg_select(tg_reshape(w, TG_SHAPE(G, H, tg_dim(w, 1))), k)
                                   : tg_select(tg_reshape(w, TG_SHAPE(G, H)), k);
    size_t n = tg_tape_records();
    if (v && n > 0 && tg__record_of(v) == tg__tape_record(n - 1)) {
        g_blocks[g_block_next] = (struct block_slot){.w = w, .view = v, .rec = n - 1, .G = G, .k = k};
        g_block_next = (g_block_next + 1) % BLOCK_SLOTS;
    }
    return v;
}

/* ---- parameters ------------------------------------------------------------------------------------ */

static void release_params(tg_cell_params *p) {
    tg_release(p->weight_ih);
    tg_release(p->weight_hh);
    tg_release(p->bias_ih);
    tg_release(p->bias_hh);
    for (int e = 0; e < TG_CELL_MAX_EXTRA; e++) tg_release(p->extra[e]);
    memset(p, 0, sizeof *p);
}

/* Checks that extras 0..n-1 were all created; on failure releases everything. Returns 0 or -1. */
static int extras_made(tg_cell_params *out, int n) {
    for (int e = 0; e < n; e++)
        if (!out->extra[e]) {
            release_params(out);
            return -1;
        }
    return 0;
}

/* Standard parameters plus n_extra vectors [H] ~ U(±1/√H): the peepholes w_c* of the LSTM family
 * (PyTorch has no peephole; we use its default range for every weight). */
static int peephole_params(const tg_cell *cell, int64_t I, int64_t H, bool bias, tg_dtype dtype, tg_rng *rng,
                           tg_cell_params *out) {
    if (tg_cell_standard_params(cell, I, H, bias, dtype, rng, out)) return -1;
    if (!rng) rng = tg_default_rng();
    double k = 1.0 / sqrt((double)H);
    for (int e = 0; e < cell->n_extra; e++) out->extra[e] = tg_rand_uniform(rng, dtype, TG_SHAPE(H), -k, k);
    return extras_made(out, cell->n_extra);
}

/* ---- the LSTM family of Greff et al. 2017 ---------------------------------------------------------- */

/* "LSTM: A Search Space Odyssey" (Greff, Srivastava, Koutník, Steunebrink, Schmidhuber, IEEE TNNLS 2017)
 * starts from the "vanilla" LSTM, which has peepholes, and removes or changes one thing per variant.
 * One step function serves the family; a variant is a row of the description below. A gate that a
 * variant removes has no block in the projections (G = 3) and no peephole: no dead parameters, so
 * nothing for an optimizer or weight decay to chase. Kept blocks stay in PyTorch's order i, f, g, o. */
typedef struct lstm_variant {
    int i, f, g, o;     /* block of each gate in [B, G·H]; -1: the gate is absent (constant 1) */
    int ci, cf, co;     /* index in p->extra of the peephole w_ci, w_cf, w_co [H]; -1: none */
    bool coupled;       /* CIFG: f = 1 − i */
    bool linear_input;  /* NIAF: g = a_g */
    bool linear_output; /* NOAF: h' = o ⊙ c' */
} lstm_variant;

/* a + w ⊙ c, the peephole term of one gate (w [H] broadcast over the batch); a when k < 0 */
static tg_tensor *peep(tg_tensor *a, const tg_cell_params *p, int k, const tg_tensor *c) {
    return k < 0 ? a : tg_add(a, tg_mul(p->extra[k], c));
}

static int lstm_variant_step(const tg_cell *cell, const tg_cell_params *p, const tg_tensor *x,
                             const tg_tensor *xproj, tg_tensor *const *state, tg_tensor **out) {
    (void)x;
    const lstm_variant *v = cell->user;
    const tg_tensor *h = state[0], *c = state[1];
    /* [a_i | a_f | a_g | a_o] = x W_ihᵀ + b_ih + h W_hhᵀ + b_hh   (only the blocks the variant has) */
    tg_tensor *a[4];
    if (tg_chunk(tg_add(xproj, tg_linear(h, p->weight_hh, p->bias_hh)), 1, cell->gates, a)) return -1;
    /* i = σ(a_i + w_ci ⊙ c)   input gate, peephole on c_{t−1}.   NIG: i = 1 */
    tg_tensor *i = v->i < 0 ? NULL : tg_sigmoid(peep(a[v->i], p, v->ci, c));
    /* f = σ(a_f + w_cf ⊙ c)   forget gate, peephole on c_{t−1}.  NFG: f = 1.  CIFG: f = 1 − i */
    tg_tensor *f = v->coupled ? tg_rsub_scalar(1.0, i) : v->f < 0 ? NULL : tg_sigmoid(peep(a[v->f], p, v->cf, c));
    /* g = tanh(a_g)   block input.   NIAF: g = a_g */
    tg_tensor *g = v->linear_input ? a[v->g] : tg_tanh(a[v->g]);
    /* c' = f ⊙ c + i ⊙ g   (an absent gate is 1) */
    const tg_tensor *keep = v->f < 0 && !v->coupled ? c : tg_mul(f, c);
    out[1] = tg_add(keep, v->i < 0 ? g : tg_mul(i, g));
    /* o = σ(a_o + w_co ⊙ c')   output gate, peephole on the new c_t.   NOG: o = 1 */
    tg_tensor *o = v->o < 0 ? NULL : tg_sigmoid(peep(a[v->o], p, v->co, out[1]));
    /* h' = o ⊙ tanh(c')   NOAF: h' = o ⊙ c' */
    tg_tensor *act = v->linear_output ? out[1] : tg_tanh(out[1]);
    out[0] = v->o < 0 ? act : tg_mul(o, act);
    return tg__cell_produced(out, 2);
}

/* The same step as one op (tg_lstm_zoo_, autograd/ops_zoo_lstm.c): the variant's row as flags, its
 * peepholes, and the gate activations stored over xproj (the runner's view of this step's rows of the
 * input projection, read by nothing else), so the tape keeps G + 2 floats per step instead of every
 * plain op's result. Same values as lstm_variant_step within rounding (tests/test_zoo.c compares the
 * two spellings of every variant). lstm_np keeps the plain spelling: it is the plain-ops lstm. */
static int lstm_fused_step(const tg_cell *cell, const tg_cell_params *p, const tg_tensor *x,
                           const tg_tensor *xproj, tg_tensor *const *state, tg_tensor **out) {
    (void)x;
    const lstm_variant *v = cell->user;
    unsigned flags = (v->i < 0 ? TG_LSTMZ_NO_I : 0) | (v->f < 0 && !v->coupled ? TG_LSTMZ_NO_F : 0) |
                     (v->o < 0 ? TG_LSTMZ_NO_O : 0) | (v->coupled ? TG_LSTMZ_COUPLED : 0) |
                     (v->linear_input ? TG_LSTMZ_LINEAR_G : 0) | (v->linear_output ? TG_LSTMZ_LINEAR_C : 0);
    const tg_tensor *w[3];
    const int at[3] = {v->ci, v->cf, v->co};
    for (int k = 0; k < 3; k++) w[k] = at[k] < 0 ? NULL : p->extra[at[k]];
    tg_tensor *hc = tg_lstm_zoo_((tg_tensor *)xproj, state[0], p->weight_hh, p->bias_hh, state[1], w[0], w[1], w[2], flags);
    out[0] = tg_select(hc, 0);
    out[1] = tg_select(hc, 1);
    return tg__cell_produced(out, 2);
}

/*                                     i   f   g   o  ci  cf  co coupled lin_in lin_out */
static const lstm_variant v_peephole = {0,  1,  2,  3,  0,  1,  2, false, false, false};
static const lstm_variant v_nig      = {-1, 0,  1,  2, -1,  0,  1, false, false, false};
static const lstm_variant v_nfg      = {0, -1,  1,  2,  0, -1,  1, false, false, false};
static const lstm_variant v_nog      = {0,  1,  2, -1,  0,  1, -1, false, false, false};
static const lstm_variant v_niaf     = {0,  1,  2,  3,  0,  1,  2, false, true,  false};
static const lstm_variant v_noaf     = {0,  1,  2,  3,  0,  1,  2, false, false, true};
static const lstm_variant v_np       = {0,  1,  2,  3, -1, -1, -1, false, false, false};
static const lstm_variant v_cifg     = {0, -1,  1,  2,  0, -1,  1, true,  false, false};

/* FGR, full gate recurrence (Greff et al.; the original LSTM of Hochreiter & Schmidhuber 1997 had it):
 * every gate also reads the previous step's i, f, o through 9 matrices R_{b→a} [H, H], held as the
 * blocks of one extra weight_gg [3H, 3H] (row block a ∈ {i, f, o} receives, column block b ∈ {i, f, o}
 * is read), so the 9 products are one GEMM. The previous gates are states 2, 3, 4 (zero at t = 0):
 *   [a_i | a_f | a_g | a_o] = x W_ihᵀ + b_ih + h W_hhᵀ + b_hh
 *   [r_i | r_f | r_o] = [i_{t−1} | f_{t−1} | o_{t−1}] W_ggᵀ,  r_a = Σ_b R_{b→a} b_{t−1}
 *   i = σ(a_i + w_ci ⊙ c + r_i),  f = σ(a_f + w_cf ⊙ c + r_f),  c' = f ⊙ c + i ⊙ tanh(a_g)
 *   o = σ(a_o + w_co ⊙ c' + r_o),  h' = o ⊙ tanh(c')
 * as two ops (h5fgr): tg_lstm_fgr_gates_ (autograd/ops_zoo_lstm.c) gives the gates [4,B,H] gate-major,
 * stored over xproj, and tg_lstm_state(gates, c) gives (h', c'). The gate states are tg_select views of
 * the gates, and when states 2..4 are exactly those views of the previous step's gates (no masking
 * between the steps), that result is passed whole as prev; otherwise (the initial states, rows of ended
 * sequences mixed in) they are stacked. Tape per step 4 + 2 floats per batch x hidden element instead of
 * 44.6 with plain ops; tests/test_zoo.c keeps the plain spelling and compares the two. */
static const tg_tensor *fgr_prev_gates(tg_tensor *const *state) {
    static const int at[3] = {0, 1, 3};
    const tg_tensor *G = NULL;
    for (int k = 0; k < 3; k++) {
        const tg_record *r = tg__record_of(state[2 + k]);
        if (!r || r->op != TG_OP_SELECT || r->k[0] != at[k] || (k > 0 && r->in[0] != G)) { G = NULL; break; }
        G = r->in[0];
    }
    const tg_record *rg = G ? tg__record_of(G) : NULL;
    if (rg && rg->op == TG_OP_LSTM_FGR_GATES) return G;
    return tg_stack(3, state + 2);
}

static int lstm_fgr_step(const tg_cell *cell, const tg_cell_params *p, const tg_tensor *x, const tg_tensor *xproj,
                         tg_tensor *const *state, tg_tensor **out) {
    (void)cell; (void)x;
    const tg_tensor *c = state[1];
    tg_tensor *G = tg_lstm_fgr_gates_((tg_tensor *)xproj, state[0], p->weight_hh, p->bias_hh, c, p->extra[0], p->extra[1],
                                      p->extra[2], p->extra[3], fgr_prev_gates(state));
    tg_tensor *hc = tg_lstm_state(G, c);
    out[0] = tg_select(hc, 0);
    out[1] = tg_select(hc, 1);
    out[2] = tg_select(G, 0);
    out[3] = tg_select(G, 1);
    out[4] = tg_select(G, 3);
    return tg__cell_produced(out, 5);
}

/* extras: w_ci, w_cf, w_co [H] and weight_gg [3H, 3H], all ~ U(±1/√H) */
static int lstm_fgr_params(const tg_cell *cell, int64_t I, int64_t H, bool bias, tg_dtype dtype, tg_rng *rng,
                           tg_cell_params *out) {
    if (tg_cell_standard_params(cell, I, H, bias, dtype, rng, out)) return -1;
    if (!rng) rng = tg_default_rng();
    double k = 1.0 / sqrt((double)H);
    for (int e = 0; e < 3; e++) out->extra[e] = tg_rand_uniform(rng, dtype, TG_SHAPE(H), -k, k);
    out->extra[3] = tg_rand_uniform(rng, dtype, TG_SHAPE(3 * H, 3 * H), -k, k);
    return extras_made(out, 4);
}

/* ---- minimal gated unit (Zhou, Wu, Zhang, Zhou 2016) ------------------------------------------------ */

/* G = 2, blocks (f, h̃) in both weight_ih and weight_hh. One op (tg_gru_zoo_, autograd/ops_zoo_gru.c):
 *   f = σ(W_f x + U_f h + b_f)   the only gate
 *   h̃ = tanh(W_h x + U_h (f ⊙ h) + b_h)
 *   h' = (1 − f) ⊙ h + f ⊙ h̃  =  h + f ⊙ (h̃ − h)
 * U_f, U_h are block views of weight_hh (once per tape); f and h̃ are stored over xproj (the runner's view
 * of this step's input projection), so the tape keeps 3 floats per step. tests/test_zoo.c holds the plain
 * op spelling (tg_sigmoid, tg_linear, tg_mul, tg_tanh, tg_lerp) and compares the two. */
static int mgu_step(const tg_cell *cell, const tg_cell_params *p, const tg_tensor *x, const tg_tensor *xproj,
                    tg_tensor *const *state, tg_tensor **out) {
    (void)cell; (void)x;
    const tg_tensor *wh = p->weight_hh, *bh = p->bias_hh;
    int64_t H = p->hidden_size;
    out[0] = tg_select(tg_gru_zoo_((tg_tensor *)xproj, NULL, state[0], tg__cell_block(wh, 2, 0, H), tg__cell_block(bh, 2, 0, H),
                                   NULL, NULL, tg__cell_block(wh, 2, 1, H), tg__cell_block(bh, 2, 1, H), TG_GRUZ_ONE_GATE), 0);
    return tg__cell_produced(out, 1);
}

/* ---- the three evolved architectures of Jozefowicz, Zaremba, Sutskever 2015 -------------------------- */

/* "An Empirical Exploration of Recurrent Network Architectures" (ICML 2015), section 3.4, written as in
 * the paper with h = h_t, h' = h_{t+1}. MUT1 and MUT2 add the raw input x_t to an H-wide
 * pre-activation, so they need I = H in every layer (make_params reports anything else). */
static int mut_same_width(const tg_cell *cell, int64_t I, int64_t H) {
    if (I == H) return 0;
    tg_error(tg__params_caller("tg_rnn_new"), "cell '%s': input size %lld must equal hidden size %lld (the cell adds x_t itself to an "
             "H-wide pre-activation)", cell->name, (long long)I, (long long)H);
    return -1;
}

/* MUT1: G = 2; weight_ih blocks (z, r), weight_hh blocks (r, h̃). */
static int mut1_params(const tg_cell *cell, int64_t I, int64_t H, bool bias, tg_dtype dtype, tg_rng *rng,
                       tg_cell_params *out) {
    memset(out, 0, sizeof *out);
    if (mut_same_width(cell, I, H)) return -1;
    return tg_cell_standard_params(cell, I, H, bias, dtype, rng, out);
}

/* One op (tg_gru_zoo_, as mgu_step; the plain-op spelling is in tests/test_zoo.c):
 *   z = sigm(W_xz x_t + b_z)                      u, without a recurrent product
 *   r = sigm(W_xr x_t + W_hr h_t + b_r)           s
 *   h̃ = tanh(W_hh (r ⊙ h_t) + tanh(x_t) + b_h)   kept as the result's second part (xproj has no h̃ block)
 *   h_{t+1} = h̃ ⊙ z + h_t ⊙ (1 − z)  =  h + z ⊙ (h̃ − h) */
static int mut1_step(const tg_cell *cell, const tg_cell_params *p, const tg_tensor *x, const tg_tensor *xproj,
                     tg_tensor *const *state, tg_tensor **out) {
    (void)cell;
    const tg_tensor *wh = p->weight_hh, *bh = p->bias_hh;
    int64_t H = p->hidden_size;
    out[0] = tg_select(tg_gru_zoo_((tg_tensor *)xproj, x, state[0], NULL, NULL, tg__cell_block(wh, 2, 0, H),
                                   tg__cell_block(bh, 2, 0, H), tg__cell_block(wh, 2, 1, H), tg__cell_block(bh, 2, 1, H),
                                   TG_GRUZ_U_INPUT_ONLY | TG_GRUZ_C_TANH_X), 0);
    return tg__cell_produced(out, 1);
}

/* MUT2: G = 2; weight_ih blocks (z, h̃), weight_hh blocks (z, r), extra weight_hn [H, H] = the W_hh of
 * h̃ (no bias of its own: b_h is bias_ih's block 1). */
static int mut2_params(const tg_cell *cell, int64_t I, int64_t H, bool bias, tg_dtype dtype, tg_rng *rng,
                       tg_cell_params *out) {
    memset(out, 0, sizeof *out);
    if (mut_same_width(cell, I, H)) return -1;
    if (tg_cell_standard_params(cell, I, H, bias, dtype, rng, out)) return -1;
    double k = 1.0 / sqrt((double)H);
    out->extra[0] = tg_rand_uniform(rng ? rng : tg_default_rng(), dtype, TG_SHAPE(H, H), -k, k);
    return extras_made(out, 1);
}

/* One op (tg_gru_zoo_, as mgu_step; the plain-op spelling is in tests/test_zoo.c), z and r from one GEMM:
 *   [h_z | h_r] = h W_hhᵀ + b_hh
 *   z = sigm(W_xz x_t + W_hz h_t + b_z)           u
 *   r = sigm(x_t + W_hr h_t + b_r)                s, kept as the result's second part
 *   h̃ = tanh(W_hh (r ⊙ h_t) + W_xh x_t + b_h)    W_hh here is weight_hn; b_h is bias_ih's block 1
 *   h_{t+1} = h̃ ⊙ z + h_t ⊙ (1 − z)  =  h + z ⊙ (h̃ − h) */
static int mut2_step(const tg_cell *cell, const tg_cell_params *p, const tg_tensor *x, const tg_tensor *xproj,
                     tg_tensor *const *state, tg_tensor **out) {
    (void)cell;
    out[0] = tg_select(tg_gru_zoo_((tg_tensor *)xproj, x, state[0], NULL, NULL, p->weight_hh, p->bias_hh, p->extra[0], NULL,
                                   TG_GRUZ_SHARED | TG_GRUZ_S_PLUS_X), 0);
    return tg__cell_produced(out, 1);
}

/* MUT3: G = 3, blocks (z, r, h̃) in both weight_ih and weight_hh. One op (tg_gru_zoo_, as mgu_step; the
 * plain-op spelling is in tests/test_zoo.c):
 *   z = sigm(W_xz x_t + W_hz tanh(h_t) + b_z)     u, its product of tanh(h)
 *   r = sigm(W_xr x_t + W_hr h_t + b_r)           s
 *   h̃ = tanh(W_hh (r ⊙ h_t) + W_xh x_t + b_h)
 *   h_{t+1} = h̃ ⊙ z + h_t ⊙ (1 − z)  =  h + z ⊙ (h̃ − h) */
static int mut3_step(const tg_cell *cell, const tg_cell_params *p, const tg_tensor *x, const tg_tensor *xproj,
                     tg_tensor *const *state, tg_tensor **out) {
    (void)cell; (void)x;
    const tg_tensor *wh = p->weight_hh, *bh = p->bias_hh;
    int64_t H = p->hidden_size;
    out[0] = tg_select(tg_gru_zoo_((tg_tensor *)xproj, NULL, state[0], tg__cell_block(wh, 3, 0, H), tg__cell_block(bh, 3, 0, H),
                                   tg__cell_block(wh, 3, 1, H), tg__cell_block(bh, 3, 1, H), tg__cell_block(wh, 3, 2, H),
                                   tg__cell_block(bh, 3, 2, H), TG_GRUZ_U_TANH_H), 0);
    return tg__cell_produced(out, 1);
}

/* ---- IndRNN (Li, Li, Cook, Zhu, Gao 2018) ------------------------------------------------------------ */

/* Each unit has its own recurrent weight u_j, so weight_hh is the vector u [H] instead of a matrix
 * (the runner files it as weight_hh_l{k} whatever its shape). */
typedef struct indrnn_consts {
    double max_steps; /* T of the init below: |u|^T <= 2 keeps a relu unit from exploding over T steps */
} indrnn_consts;

/* The paper's recommendation for relu: u ~ U(0, 2^{1/T}) (so |u|^T <= 2); weight_ih, biases U(±1/√H).
 * T = 100 in the registered "indrnn"; register a row with another indrnn_consts for longer sequences. */
static int indrnn_params(const tg_cell *cell, int64_t I, int64_t H, bool bias, tg_dtype dtype, tg_rng *rng,
                         tg_cell_params *out) {
    if (tg_cell_standard_params(cell, I, H, bias, dtype, rng, out)) return -1;
    const indrnn_consts *k = cell->user;
    tg_release(out->weight_hh);
    out->weight_hh = tg_rand_uniform(rng ? rng : tg_default_rng(), dtype, TG_SHAPE(H), 0.0, pow(2.0, 1.0 / k->max_steps));
    if (!out->weight_hh) { release_params(out); return -1; }
    return 0;
}

static int indrnn_step(const tg_cell *cell, const tg_cell_params *p, const tg_tensor *x, const tg_tensor *xproj,
                       tg_tensor *const *state, tg_tensor **out) {
    (void)cell; (void)x;
    const tg_tensor *h = state[0];
    /* h' = relu(W x + b_ih + u ⊙ h + b_hh)   u [H]: unit j only ever sees its own past */
    tg_tensor *rec = tg_mul(p->weight_hh, h);
    out[0] = tg_relu(tg_add(xproj, p->bias_hh ? tg_add(rec, p->bias_hh) : rec));
    return tg__cell_produced(out, 1);
}

/* all T steps at once (the runner's path when nothing happens between steps): the steps above in one op */
static tg_tensor *indrnn_sequence(const tg_cell *cell, const tg_cell_params *p, const tg_tensor *xproj, bool reverse,
                                  tg_tensor *const *state, tg_tensor **out) {
    (void)cell;
    return tg__cell_rnn_sequence(p, xproj, reverse, TG_RNNS_RELU, state, out);
}

static const indrnn_consts k_indrnn = {100.0};

/* ---- layer-normalised LSTM (Ba, Kiros, Hinton 2016) --------------------------------------------------- */

#define LN_EPS 1e-5 /* inside the square root, as PyTorch's LayerNorm */

/* G = 4 (i, f, g, o). No bias_ih / bias_hh: the runner adds b_ih to x W_ihᵀ before the step, inside where
 * the LN would cancel it. The biases are the LN shifts β (the paper's b only ever appears summed with
 * them). Extras: ln_ih_weight, ln_ih_bias, ln_hh_weight, ln_hh_bias [4H]; ln_c_weight, ln_c_bias [H];
 * gains start at 1, shifts at 0; with bias = false the three shifts are absent. */
static int lstm_ln_params(const tg_cell *cell, int64_t I, int64_t H, bool bias, tg_dtype dtype, tg_rng *rng,
                          tg_cell_params *out) {
    if (tg_cell_standard_params(cell, I, H, false, dtype, rng, out)) return -1;
    for (int e = 0; e < 6; e++) {
        int64_t n = e < 4 ? 4 * H : H;
        out->extra[e] = e % 2 == 0 ? tg_ones(dtype, TG_SHAPE(n)) : bias ? tg_zeros(dtype, TG_SHAPE(n)) : NULL;
    }
    for (int e = 0; e < 6; e++)
        if (!out->extra[e] && (e % 2 == 0 || bias)) {
            release_params(out);
            return -1;
        }
    return 0;
}

static int lstm_ln_step(const tg_cell *cell, const tg_cell_params *p, const tg_tensor *x, const tg_tensor *xproj,
                        tg_tensor *const *state, tg_tensor **out) {
    (void)cell; (void)x;
    const tg_tensor *h = state[0], *c = state[1];
    tg_tensor *const *ln = p->extra;
    /* [a_i | a_f | a_g | a_o] = LN(x W_ihᵀ; α_x, β_x) + LN(h W_hhᵀ; α_h, β_h), LN per gate block (the four
     * blocks normalised apart);  i = σ(a_i),  f = σ(a_f),  g = tanh(a_g),  o = σ(a_o)
     * (tg_ln_gates: one op, gate-major [4,B,H]; it keeps the gates and the LN statistics, not the LNs
     * and their sum, which tg_layer_norm x 2 + tg_add + tg_gates kept: tests/test_zoo.c compares them) */
    tg_tensor *gates = tg_ln_gates(xproj, tg_linear(h, p->weight_hh, NULL), ln[0], ln[1], ln[2], ln[3], LN_EPS, "ssts");
    /* c' = f ⊙ c + i ⊙ g   (tg_lstm_state's second half; its first, o ⊙ tanh(c'), is not this cell's h') */
    out[1] = tg_select(tg_lstm_state(gates, c), 1);
    /* h' = o ⊙ tanh(LN(c'; α_c, β_c)) */
    out[0] = tg_mul(tg_select(gates, 3), tg_tanh(tg_layer_norm(out[1], 1, ln[4], ln[5], LN_EPS)));
    return tg__cell_produced(out, 2);
}

/* ---- the table ------------------------------------------------------------------------------------- */

static const char *const g_h[] = {"h"};
static const char *const g_hc[] = {"h", "c"};
static const char *const g_hc_gates[] = {"h", "c", "i", "f", "o"};
static const char *const x_ifo[] = {"weight_ci", "weight_cf", "weight_co"};
static const char *const x_fo[] = {"weight_cf", "weight_co"};
static const char *const x_io[] = {"weight_ci", "weight_co"};
static const char *const x_if[] = {"weight_ci", "weight_cf"};
static const char *const x_fgr[] = {"weight_ci", "weight_cf", "weight_co", "weight_gg"};
static const char *const x_mut2[] = {"weight_hn"};
static const char *const x_ln[] = {"ln_ih_weight", "ln_ih_bias", "ln_hh_weight", "ln_hh_bias", "ln_c_weight", "ln_c_bias"};

/* The equations as `tapegrad summary` prints them (docs/cells.md has them with references). */
static const char eq_lstm_peephole[] = "i = σ(W_xi x + W_hi h + w_ci⊙c), f = σ(W_xf x + W_hf h + w_cf⊙c), g = tanh(W_xg x + W_hg h)\nc' = f⊙c + i⊙g, o = σ(W_xo x + W_ho h + w_co⊙c'), h' = o⊙tanh(c')";
static const char eq_lstm_nig[] = "as lstm_peephole without the input gate (i = 1): c' = f⊙c + g";
static const char eq_lstm_nfg[] = "as lstm_peephole without the forget gate (f = 1): c' = c + i⊙g";
static const char eq_lstm_nog[] = "as lstm_peephole without the output gate (o = 1): h' = tanh(c')";
static const char eq_lstm_niaf[] = "as lstm_peephole without the input activation: g = W_xg x + W_hg h";
static const char eq_lstm_noaf[] = "as lstm_peephole without the output activation: h' = o⊙c'";
static const char eq_lstm_np[] = "as lstm_peephole without peepholes (exactly lstm):\ni = σ(W_xi x + W_hi h), f = σ(W_xf x + W_hf h), g = tanh(W_xg x + W_hg h), o = σ(W_xo x + W_ho h)\nc' = f⊙c + i⊙g, h' = o⊙tanh(c')";
static const char eq_lstm_cifg[] = "as lstm_peephole with coupled input and forget gates: f = 1 − i, c' = (1−i)⊙c + i⊙g";
static const char eq_lstm_fgr[] = "as lstm_peephole plus full gate recurrence: [r_i | r_f | r_o] = [i_{t−1} | f_{t−1} | o_{t−1}] W_ggᵀ\nadded inside the σ of i, f and o";
static const char eq_mgu[] = "f = σ(W_f x + U_f h + b_f), h̃ = tanh(W_h x + U_h (f⊙h) + b_h)\nh' = (1−f)⊙h + f⊙h̃";
static const char eq_mut1[] = "z = σ(W_xz x + b_z), r = σ(W_xr x + W_hr h + b_r)\nh' = tanh(W_hh (r⊙h) + tanh(x) + b_h)⊙z + h⊙(1−z)";
static const char eq_mut2[] = "z = σ(W_xz x + W_hz h + b_z), r = σ(x + W_hr h + b_r)\nh' = tanh(W_hh (r⊙h) + W_xh x + b_h)⊙z + h⊙(1−z)";
static const char eq_mut3[] = "z = σ(W_xz x + W_hz tanh(h) + b_z), r = σ(W_xr x + W_hr h + b_r)\nh' = tanh(W_hh (r⊙h) + W_xh x + b_h)⊙z + h⊙(1−z)";
static const char eq_indrnn[] = "h' = relu(W_ih x + b_ih + u⊙h + b_hh), u [H] a vector";
static const char eq_lstm_ln[] = "[a_i | a_f | a_g | a_o] = LN(W_ih x) + LN(W_hh h), per gate block\nc' = σ(a_f)⊙c + σ(a_i)⊙tanh(a_g), h' = σ(a_o)⊙tanh(LN(c'))\nLN(a; α, β) = (a − μ)/√(σ² + 10⁻⁵)⊙α + β";

/* forget: the block tg_rnn_init's forget bias sets, i.e. the gate whose large value keeps the state;
 * -1 where no block does that (NFG, CIFG: f = 1 − i; MGU/MUT: their gate's large value *replaces* the
 * state; LN-LSTM: its shifts are extras, set ln_ih_bias[H:2H] yourself).
 * (Rows use named fields; the meaning of each is in nn.h's struct tg_cell.) */
const tg_cell tg__cells_zoo[] = {
    {.name = "lstm_peephole", .gates = 4, .n_states = 2, .state_names = g_hc, .forget_gate = 1, .n_extra = 3,
     .extra_names = x_ifo, .make_params = peephole_params, .step = lstm_fused_step, .user = &v_peephole,
     .equations = eq_lstm_peephole,
     .reference = "Gers & Schmidhuber 2000 (peepholes); the vanilla LSTM of Greff et al., \"LSTM: A Search Space Odyssey\", 2017"},
    {.name = "lstm_nig", .gates = 3, .n_states = 2, .state_names = g_hc, .forget_gate = 0, .n_extra = 2,
     .extra_names = x_fo, .make_params = peephole_params, .step = lstm_fused_step, .user = &v_nig,
     .equations = eq_lstm_nig, .reference = "Greff et al. 2017 (NIG)"},
    {.name = "lstm_nfg", .gates = 3, .n_states = 2, .state_names = g_hc, .forget_gate = -1, .n_extra = 2,
     .extra_names = x_io, .make_params = peephole_params, .step = lstm_fused_step, .user = &v_nfg,
     .equations = eq_lstm_nfg, .reference = "Greff et al. 2017 (NFG)"},
    {.name = "lstm_nog", .gates = 3, .n_states = 2, .state_names = g_hc, .forget_gate = 1, .n_extra = 2,
     .extra_names = x_if, .make_params = peephole_params, .step = lstm_fused_step, .user = &v_nog,
     .equations = eq_lstm_nog, .reference = "Greff et al. 2017 (NOG)"},
    {.name = "lstm_niaf", .gates = 4, .n_states = 2, .state_names = g_hc, .forget_gate = 1, .n_extra = 3,
     .extra_names = x_ifo, .make_params = peephole_params, .step = lstm_fused_step, .user = &v_niaf,
     .equations = eq_lstm_niaf, .reference = "Greff et al. 2017 (NIAF)"},
    {.name = "lstm_noaf", .gates = 4, .n_states = 2, .state_names = g_hc, .forget_gate = 1, .n_extra = 3,
     .extra_names = x_ifo, .make_params = peephole_params, .step = lstm_fused_step, .user = &v_noaf,
     .equations = eq_lstm_noaf, .reference = "Greff et al. 2017 (NOAF)"},
    {.name = "lstm_np", .gates = 4, .n_states = 2, .state_names = g_hc, .forget_gate = 1,
     .step = lstm_variant_step, .user = &v_np, .equations = eq_lstm_np, .reference = "Greff et al. 2017 (NP)"},
    {.name = "lstm_cifg", .gates = 3, .n_states = 2, .state_names = g_hc, .forget_gate = -1, .n_extra = 2,
     .extra_names = x_io, .make_params = peephole_params, .step = lstm_fused_step, .user = &v_cifg,
     .equations = eq_lstm_cifg, .reference = "Greff et al. 2017 (CIFG)"},
    {.name = "lstm_fgr", .gates = 4, .n_states = 5, .state_names = g_hc_gates, .forget_gate = 1, .n_extra = 4,
     .extra_names = x_fgr, .make_params = lstm_fgr_params, .step = lstm_fgr_step, .equations = eq_lstm_fgr,
     .reference = "Greff et al. 2017 (FGR)"},
    {.name = "mgu", .gates = 2, .n_states = 1, .state_names = g_h, .forget_gate = -1, .step = mgu_step,
     .equations = eq_mgu,
     .reference = "Zhou, Wu, Zhang & Zhou, \"Minimal gated unit for recurrent neural networks\", 2016"},
    {.name = "mut1", .gates = 2, .n_states = 1, .state_names = g_h, .forget_gate = -1, .needs_input = true,
     .make_params = mut1_params, .step = mut1_step, .equations = eq_mut1,
     .reference = "Jozefowicz, Zaremba & Sutskever, \"An empirical exploration of recurrent network architectures\", ICML 2015 (MUT1)"},
    {.name = "mut2", .gates = 2, .n_states = 1, .state_names = g_h, .forget_gate = -1, .n_extra = 1,
     .extra_names = x_mut2, .needs_input = true, .make_params = mut2_params, .step = mut2_step,
     .equations = eq_mut2, .reference = "Jozefowicz et al. 2015 (MUT2)"},
    {.name = "mut3", .gates = 3, .n_states = 1, .state_names = g_h, .forget_gate = -1, .step = mut3_step,
     .equations = eq_mut3, .reference = "Jozefowicz et al. 2015 (MUT3)"},
    {.name = "indrnn", .gates = 1, .n_states = 1, .state_names = g_h, .forget_gate = -1,
     .make_params = indrnn_params, .step = indrnn_step, .sequence = indrnn_sequence, .user = &k_indrnn, .equations = eq_indrnn,
     .reference = "Li, Li, Cook, Zhu & Gao, \"Independently recurrent neural network (IndRNN)\", CVPR 2018"},
    {.name = "lstm_ln", .gates = 4, .n_states = 2, .state_names = g_hc, .forget_gate = -1, .n_extra = 6,
     .extra_names = x_ln, .make_params = lstm_ln_params, .step = lstm_ln_step, .equations = eq_lstm_ln,
     .reference = "Ba, Kiros & Hinton, \"Layer normalization\", 2016"},
};
const int tg__cells_zoo_count = (int)(sizeof tg__cells_zoo / sizeof tg__cells_zoo[0]);
