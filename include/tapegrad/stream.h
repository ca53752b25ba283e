/* tapegrad/stream.h - streaming inference: a trained model fed one time step of B rows at a time,
 * holding its state between calls, without the tape (nothing is recorded, nothing to backward).
 *
 * Worked example (examples/stream_stdin.c runs a checkpoint on numbers read from stdin):
 *
 *     tg_rnn_stream *s = tg_rnn_stream_new(m, head, 1);        // returns: new object; m, head borrowed
 *     while (read_row(x_t)) {                                  // x_t [B=1, I], the model's dtype
 *         const tg_tensor *y = tg_rnn_stream_step(s, x_t);     // returns: borrowed [B, O] (or [B, H])
 *         ... use y until the next step ...
 *     }
 *     tg_rnn_stream_reset_row(s, 0);                           // row 0 starts a new sequence
 *     tg_rnn_stream_free(s);
 *
 * Dimension letters: B rows (independent streams), I input size, H hidden size, O head outputs,
 * L layers, S state tensors of the cell.
 *
 * What a step computes is exactly step t of tg_rnn_forward in evaluation mode for any cell (built-in,
 * zoo, typed): per layer x_t·W_ihᵀ + b_ih, then the cell's own step function, the new state carried
 * to the next call; then the head (y = h_L·Wᵀ + b) when one is given. Outputs equal tg_rnn_forward's
 * (+ the head) over the whole sequence to 1e-12 in F64 and 1e-6 in F32 (tests/test_stream.c, every
 * registered cell and typed definitions). The initial state is the model's learned one (learn_init)
 * or zeros; to start from another (tg_rnn_forward_opts.init), tg_copy_ it into tg_rnn_stream_state.
 *
 * Memory: the stream owns its states [L,B,H] (h: [L,B,P] with proj_size P) and output [B,O]; a step runs the cell under no-grad and
 * returns every intermediate to the thread's tensor pools before it returns, so after creation (which
 * runs one warm-up step and resets) a step on the same thread never calls malloc (counted in the test).
 * Because it clears the thread's tape after each step, a step refuses to run while the tape holds
 * anything (e.g. in the middle of a training step): call it between tg_tape_reset and the next forward.
 * Not thread-safe per stream; different streams on different threads are fine.
 *
 * Limits: one direction only (a bidirectional layer needs the future); no dropout or zoneout masks
 * (evaluation; zoneout's expectation with tg_rnn_stream_set_zoneout). Errors go through tg_error naming the function and the shapes; functions return
 * NULL / -1.
 */
#ifndef TAPEGRAD_STREAM_H
#define TAPEGRAD_STREAM_H
#include <tapegrad/nn.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct tg_rnn_stream tg_rnn_stream;

/* A stream of B rows over model m (and the optional head, NULL for none: then the output is the top
 * layer's h). The model's parameters are read at every step (train it further and the stream follows);
 * m and head must outlive the stream. returns: new object (tg_rnn_stream_free), or NULL after tg_error. */
tg_rnn_stream *tg_rnn_stream_new(const tg_rnn *m, const tg_linear_layer *head, int64_t B);
void tg_rnn_stream_free(tg_rnn_stream *s); /* NULL-safe */

/* One time step: x_t [B, I] in the model's dtype. returns: borrowed [B, O] ([B, H] without a head),
 * owned by the stream and overwritten by the next step; NULL after tg_error. */
const tg_tensor *tg_rnn_stream_step(tg_rnn_stream *s, const tg_tensor *x_t);
/* Every row back to the initial state (learned or zeros). Returns 0 or -1. */
int tg_rnn_stream_reset(tg_rnn_stream *s);
/* Row b only (0 <= b < B): it starts a new sequence, the others go on. Returns 0 or -1. */
int tg_rnn_stream_reset_row(tg_rnn_stream *s, int64_t b);
/* The carried state s of the cell (0 = h, 1 = c, ...) as [L, B, H]. returns: borrowed (the stream's
 * own tensor: writing it with tg_copy_ sets the state), NULL out of range. */
tg_tensor *tg_rnn_stream_state(const tg_rnn_stream *s, int state);
int64_t tg_rnn_stream_steps(const tg_rnn_stream *s); /* steps since creation or the last full reset */
/* Zoneout as tg_rnn_forward applies it in evaluation (tg_rnn_forward_opts.zoneout_h/_c, train off):
 * state' = z·state + (1 − z)·new for h (state 0) and c (state 1; ignored by one-state cells). A model
 * trained with zoneout (tg_model_config.zoneout) streams equal to its evaluation only with this set.
 * Each in [0, 1]; 0 = off (the default). Like creation it runs one warm-up step and resets every row
 * (call it before the first step). Returns 0 or -1. */
int tg_rnn_stream_set_zoneout(tg_rnn_stream *s, double zoneout_h, double zoneout_c);

#ifdef __cplusplus
}
#endif
#endif
