/* tapegrad/cellmod.h - one-step recurrent cell modules: torch.nn.RNNCell, LSTMCell and GRUCell (and
 * any registered cell), on the tape, for a batch [B,I] or one unbatched sample [I].
 *
 * Worked example: an LSTMCell(10, 20) over a sequence held by the caller, hx starting at zeros.
 *
 *     tg_cellmod *cell = tg_cellmod_new(tg_cell_by_name("lstm"),
 *                                       &(tg_cellmod_config){.input_size = 10, .hidden_size = 20}, rng);
 *     tg_tensor *hc[2] = {NULL, NULL};                  // NULL: zeros (torch's hx=None)
 *     for (int t = 0; t < T; t++)                       // x[t]: [B=3, 10] (or [10]: then h, c are [20])
 *         if (tg_cellmod_forward(cell, x[t], hc, hc)) break;   // hc: tape-owned h', c' [3, 20]
 *     tg_backward(tg_sum(hc[0]));                       // grads in weight_ih, weight_hh, bias_ih, bias_hh
 *     tg_params_save(cell->params, "cell.safetensors"); // torch's state_dict names (<tapegrad/optim.h>)
 *     tg_tape_reset();
 *     tg_cellmod_free(cell);
 *
 * Dimension letters: B batch, I input size, H hidden size, G gates, S state tensors of the cell (1 for
 * h, 2 for LSTM's h and c).
 *
 * What a step computes is the cell's own step function (nn/cells.c, the one tg_rnn_forward runs) on
 * x·W_ihᵀ + b_ih, so RNNCell(nonlinearity='tanh'|'relu') is the cell "rnn_tanh" | "rnn_relu",
 * LSTMCell "lstm" (gates i,f,g,o) and GRUCell "gru" (r,z,n, reset-after), with torch's parameters:
 * weight_ih [G·H, I], weight_hh [G·H, H], bias_ih [G·H], bias_hh [G·H] (none with no_bias), all
 * ~ U(-1/√H, 1/√H) like torch's reset_parameters, under exactly those names (torch's state_dict keys),
 * so tg_params_save / tg_params_load of cell->params exchange them with torch (safetensors). Equal
 * to torch 1.13 to 1e-12 in F64 over chained steps, values and gradients of x, hx and every
 * parameter (tests/test_cellmod.c).
 *
 * Shape rules and messages follow torch (the text after "tg_cellmod_forward: "):
 *   x neither 1-D nor 2-D     "LSTMCell: Expected input to be 1-D or 2-D but received 3-D tensor"
 *   x's last dimension        "input has inconsistent input_size: got 5 expected 4"
 *   hx not of x's rank        "LSTMCell: Expected hx[1] to be 1D (unbatched input), got 2D instead",
 *                             "RNNCell: Expected hidden to be 2D (batched input), got 3D instead"
 *   hx batch                  "Input batch size 2 doesn't match hidden0 batch size 3"
 *   hx hidden size            "hidden1 has inconsistent hidden_size: got 2, expected 3"
 * The first, second and last two are torch 1.13's words. For hx of the wrong rank torch has no
 * message of its own (its 1-D/2-D check comes from torch >= 2.0, then the unsqueezed hx fails one of
 * the last two checks); hidden<s> numbers h 0 and LSTM's c 1 as torch >= 2.0 does (1.13: hidden0
 * for both). x or hx of another dtype than the cell: "x is F64 but the cell is F32".
 * An empty batch x [0,I] is a batch, as in torch 1.13: h' (c') are [0,H], they require grad, and
 * backward gives every parameter a gradient of zeros (hx, if given, is [0,H]).
 * Errors go through tg_error (default: print and abort; with a handler the call returns -1 / NULL).
 */
#ifndef TAPEGRAD_CELLMOD_H
#define TAPEGRAD_CELLMOD_H
#include <tapegrad/nn.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct tg_cellmod_config {
    int64_t input_size;   /* I */
    int64_t hidden_size;  /* H */
    bool no_bias;         /* torch's bias=False: no bias_ih / bias_hh */
    tg_dtype dtype;       /* TG_F32 (0) or TG_F64 */
} tg_cellmod_config;

typedef struct tg_cellmod {
    const tg_cell *cell;
    const char *torch_name;  /* "RNNCell", "LSTMCell", "GRUCell", or the cell's name: messages say it */
    int64_t input_size, hidden_size; /* I, H */
    bool bias;
    tg_dtype dtype;
    tg_params *params;       /* owned: weight_ih, weight_hh, bias_ih, bias_hh, then the cell's extras */
    tg_cell_params p;        /* the same tensors as the step sees them (borrowed from params) */
} tg_cellmod;

/* Creates the parameters with the cell's make_params (torch's init for the standard cells),
 * requires_grad on. cell NULL (a failed tg_cell_by_name) returns NULL keeping that message; rng NULL
 * = the thread's default. returns: new object (tg_cellmod_free) */
tg_cellmod *tg_cellmod_new(const tg_cell *cell, const tg_cellmod_config *cfg, tg_rng *rng);
void tg_cellmod_free(tg_cellmod *m);    /* NULL-safe */

/* One step: x [B,I] (or unbatched [I]); hx NULL (zeros) or S entries [B,H] ([H] for unbatched x), a
 * NULL entry meaning zeros; out[0..S-1] receive h', c', ... shaped like them (tape-owned). out may be
 * hx itself (the next step's state). args: borrowed. Returns 0, or -1 after tg_error with out
 * untouched. */
int tg_cellmod_forward(const tg_cellmod *m, const tg_tensor *x, tg_tensor *const *hx, tg_tensor **out);

#ifdef __cplusplus
}
#endif
#endif
