/* tapegrad/autograd.h - the dynamic tape: requires_grad, backward, no-grad, detach, gradcheck.
 *
 * Worked example (also built as examples/autograd_basics.c):
 *
 *     tg_tensor *W = tg_rand_normal(NULL, TG_F64, TG_SHAPE(4, 3), 0, 1);  // returns: new ref
 *     tg_set_requires_grad(W, true);
 *     for (int step = 0; step < 100; step++) {
 *         tg_tensor *h = tg_tanh(tg_add(tg_matmul(x, W), b));  // every result: tape-owned
 *         tg_backward(tg_mean(tg_mul(h, h)));                    // accumulates into W's grad
 *         ... update W under tg_no_grad_begin()/tg_no_grad_end(), tg_zero_grad(W) ...
 *         tg_tape_reset();                                       // frees h and every intermediate
 *     }
 *     tg_release(W);
 *
 * Rules (PyTorch's): an op appends a record to the current thread's tape only when recording is on
 * and some input requires grad. tg_backward walks the tape once, in reverse, in a loop (no recursion:
 * a 1000-step LSTM of ~20,000 records is fine). Leaf gradients accumulate across calls until zeroed;
 * gradients of intermediate tensors are freed as soon as they have been propagated (unless
 * tg_retain_grad). A tensor saved for backward that was modified in place afterwards makes backward
 * fail with a message naming the op and the tensor instead of returning wrong gradients.
 */
#ifndef TAPEGRAD_AUTOGRAD_H
#define TAPEGRAD_AUTOGRAD_H
#include <tapegrad/tensor.h>

#ifdef __cplusplus
extern "C" {
#endif

void tg_set_requires_grad(tg_tensor *t, bool on); /* leaves only */
bool tg_requires_grad(const tg_tensor *t);
bool tg_is_leaf(const tg_tensor *t);
tg_tensor *tg_grad(const tg_tensor *t);           /* returns: borrowed (NULL if no gradient yet) */
void tg_zero_grad(tg_tensor *t);                  /* drops the gradient (next backward starts at 0) */
void tg_retain_grad(tg_tensor *t);                /* keep a non-leaf's gradient after backward */

/* Backward from a one-element tensor (seed 1). Returns 0, or -1 after reporting an error (stale saved
 * tensor, non-scalar loss, NULL loss). */
int tg_backward(tg_tensor *loss);
/* Backward from any tensor with the given upstream gradient of the same shape and dtype. */
int tg_backward_with(tg_tensor *out, const tg_tensor *grad_out);

void tg_tape_reset(void);            /* releases every op result and record of this thread's tape */
size_t tg_tape_records(void);        /* records currently on the tape */
size_t tg_tape_tensors(void);        /* op results currently owned by the tape */
size_t tg_tape_bytes(void);          /* bytes of the distinct buffers the tape keeps alive (results, views, saved;
                                      * not a leaf's buffer seen through a view: parameters, inputs) */

/* Freeing what no backward needs, early. A result that no record's backward reads (tg_linear's,
 * tg_add's, a product whose backward needs only its inputs) is dead once the forward code that reads it
 * has run; the runner (tg_rnn_forward) says when: after each step of a cell, everything the step made
 * except the new states and the output, and after each layer and direction, everything but its output
 * and final states. The data of such a result is given back at once (tg_tape_bytes drops); its header,
 * shape, name and gradient slot stay, so backward is unchanged (gradients are bit-identical). A later
 * read of its data (tg_data, tg_get, an op taking it) fails with a message naming the tensor and the op
 * that made it. A result the caller holds a reference to (tg_retain, tg_detach, a view from
 * tg_reshape_view) is never freed: to print a cell's intermediate value after the step, tg_retain it
 * inside the step (and tg_release it when done), or turn the freeing off for this thread with
 * tg_set_keep_results(true) (every result then lives until tg_tape_reset, as before).
 * The same for a loop of your own: m = tg_tape_mark_here(); ... ops ...; tg_tape_free_unsaved(m, n, keep)
 * frees every buffer made since m that no record saves and that is not viewed by keep[0..n-1] (borrowed;
 * NULL entries skipped) or referenced from outside the tape. Returns the bytes freed (0 after a reset
 * since the mark, or with tg_set_keep_results(true)). */
typedef struct tg_tape_mark {
    uint64_t epoch;
    size_t records, tensors, made;
} tg_tape_mark;
tg_tape_mark tg_tape_mark_here(void);
size_t tg_tape_free_unsaved(tg_tape_mark since, int n, tg_tensor *const *keep);
void tg_set_keep_results(bool on);   /* this thread: true = tg_tape_free_unsaved frees nothing (default false) */
bool tg_keep_results(void);

void tg_no_grad_begin(void);         /* nestable; ops record nothing until the matching end */
void tg_no_grad_end(void);
bool tg_grad_enabled(void);

tg_tensor *tg_detach(const tg_tensor *t); /* returns: new ref sharing t's storage, a leaf without grad */

/* ---- debugging a new cell ------------------------------------------------------------------------ */

/* Anomaly mode for this thread (like torch.autograd.detect_anomaly): while on, every recorded op checks
 * its result and tg_backward checks every gradient it computes, and the first NaN or inf is reported
 * through the error handler, naming the op, its record index and the tensors (the default handler
 * aborts there; with a recording handler the forward goes on and tg_backward returns -1). A value
 * that only propagates an earlier NaN is not reported again. Costs one pass over every result and
 * gradient, so it is off by default. */
void tg_set_anomaly_mode(bool on);
bool tg_anomaly_mode(void);
/* Prints this thread's tape, one line per record: index, op, inputs (shape, name, which record made
 * them, or leaf / const), output shape and dtype, and whether it holds a gradient. f NULL = stdout. */
void tg_tape_dump(FILE *f);

/* ---- gradient checking (like torch.autograd.gradcheck) ------------------------------------------ */

/* A function of n tensors returning one tensor (tape-owned). Non-scalar outputs are reduced with a
 * fixed random projection, so every output element is checked. */
typedef tg_tensor *(*tg_gradcheck_fn)(tg_tensor *const *inputs, int n, void *user);

typedef struct tg_gradcheck_opts {
    double eps;   /* central-difference step (default 1e-6) */
    double atol;  /* default 1e-7 */
    double rtol;  /* default 1e-5 */
    uint64_t seed;/* projection seed (default 1) */
    bool verbose; /* print a row per input to stderr */
} tg_gradcheck_opts;

typedef struct tg_gradcheck_input {
    double max_abs_err;     /* max |analytic - numeric| over elements */
    double max_rel_err;     /* max |analytic - numeric| / max(|numeric|, tiny) */
    int64_t worst_index;    /* flat index of the worst element (by the pass criterion) */
    double analytic, numeric; /* the two values at worst_index, signs included */
    bool pass;              /* every element: |a - n| <= atol + rtol |n| */
} tg_gradcheck_input;

/* Inputs must be F64 leaves; those with requires_grad are checked (others are held constant).
 * report (may be NULL) receives n entries. Returns true when every checked input passes. The tape is
 * reset on return; inputs are left with no gradient and their values unchanged. */
bool tg_gradcheck(tg_gradcheck_fn fn, void *user, tg_tensor *const *inputs, int n,
                  const tg_gradcheck_opts *opts, tg_gradcheck_input *report);
tg_gradcheck_opts tg_gradcheck_defaults(void);

#ifdef __cplusplus
}
#endif
#endif
