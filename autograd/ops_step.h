/* autograd/ops_step.h - what the fused recurrent-step ops share (internal). autograd/ops_fused.c defines
 * these (its lstm_cell_ and gru_cell_ use them); autograd/ops_zoo_lstm.c's step of the zoo's LSTM family
 * uses them too. Dimension letters as in ops_fused.c: B rows, H hidden, R the width of h, G gate blocks. */
#ifndef TG_OPS_STEP_H
#define TG_OPS_STEP_H
#include "autograd/tape_internal.h"

/* fn(ctx, r0, r1) over the rows [0, n), each row_elems elements wide, on up to tg_get_num_threads()
 * threads (blocks of rows; every row runs the same code on any thread, so results do not depend on it) */
typedef void (*tg__rows_fn)(void *ctx, int64_t r0, int64_t r1);
void tg__for_rows(int64_t n, int64_t row_elems, tg__rows_fn fn, void *ctx);
/* Checks of (xp [B,G·H], h [B,R], W [G·H,R], b [G·H] or NULL, c [B,H] or NULL; c required when G = 4),
 * H from xp; reports under fn and returns false on any mismatch. */
bool tg__step_args(const char *fn, int G, const tg_tensor *xp, const tg_tensor *h, const tg_tensor *W,
                   const tg_tensor *b, const tg_tensor *c);
/* Where a step's gate activations go: over xp (version bumped) when xp is an op result of the current tape
 * and the step is recorded, else a new buffer *own (a new ref). */
tg_tensor *tg__gate_buffer(tg_tensor *xp, bool recorded, tg_tensor **own);
/* dh += D·W, dW += Dᵀ·h (staged), db += Σ_rows D for pre = xp + h·Wᵀ + b, D = dL/dpre [B,G·H]. */
void tg__step_matrix_backward(tg_tensor *h, tg_tensor *W, tg_tensor *b, const tg_tensor *D);
/* Where a backward stores dL/dpre: xp's new gradient buffer, or *scratch (a new ref; the caller adds it
 * into xp's existing gradient, if any, and releases it). */
tg_tensor *tg__pre_grad_buffer(tg_tensor *xp, tg_tensor **scratch);
#endif
