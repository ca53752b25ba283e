/* nn/cells_internal.h - what the cell files share (internal, not installed): the two tables of cells,
 * which the registry (nn/cell_registry.c) lists in this order, and the helpers their steps use.
 * nn/cells.c and nn/cells_zoo.c know nothing of each other or of the registry. */
#ifndef TG_CELLS_INTERNAL_H
#define TG_CELLS_INTERNAL_H
#include <tapegrad/nn.h>
#include <tapegrad/ops.h>

#include <string.h>

extern const tg_cell tg__cells_builtin[]; /* nn/cells.c: rnn_tanh, rnn_relu, lstm, gru, gru_reset_before */
extern const int tg__cells_builtin_count;
extern const tg_cell tg__cells_zoo[];     /* nn/cells_zoo.c: the variants */
extern const int tg__cells_zoo_count;

/* tg_cell_standard_params with projections (proj_size P > 0, LSTM): weight_hh [G·H, P] and weight_hr
 * [P, H] ~ U(±1/√H) as well; P = 0 is tg_cell_standard_params. Returns 0 or -1 (nothing allocated). */
int tg__cell_standard_params_proj(const tg_cell *cell, int64_t input_size, int64_t hidden_size, int64_t proj_size,
                                  bool bias, tg_dtype dtype, tg_rng *rng, tg_cell_params *out);

/* The public function that is creating parameters on this thread (tg_rnn_new, tg_cellmod_new), so
 * that a make_params message names the function the user called; `fallback` when none is.
 * tg__params_caller_set returns the previous name (restore it after the make_params call). */
const char *tg__params_caller(const char *fallback);
const char *tg__params_caller_set(const char *fn);

/* 0 when every state output was produced, -1 when an op failed (its message is already pending). */
static inline int tg__cell_produced(tg_tensor **state_out, int n) {
    for (int s = 0; s < n; s++)
        if (!state_out[s]) return -1;
    return 0;
}

/* The outputs [T,B,H] of all T steps of a one-state recurrence h' = act(xproj_t + h·W_hhᵀ + b_hh) (or u ⊙ h
 * with weight_hh [H]) in one tg_rnn_seq_ (act 0: tanh, TG_RNNS_RELU: relu), stored over xproj; out[0]
 * the final h. A tg_cell_sequence_fn's body for rnn_tanh, rnn_relu and indrnn. tape-owned, or NULL. */
tg_tensor *tg__cell_rnn_sequence(const tg_cell_params *p, const tg_tensor *xproj, bool reverse, unsigned act,
                                 tg_tensor *const *state, tg_tensor **out);

/* Gate block k ([H, C] or [H]) of a weight [G·H, C] or bias [G·H]; NULL (no bias) stays NULL.
 * A zero-copy view recorded on the tape, so the block's gradient lands in the whole tensor. Made once
 * per tape and reused by every later step (nn/cells_zoo.c says why). */
tg_tensor *tg__cell_block(const tg_tensor *w, int G, int k, int64_t H);
#endif
