/* tapegrad/compare.h - the gradient triple check: the tape's BPTT, the hand-derived BPTT and central
 * finite differences of the same loss, compared tensor by tensor for any registered cell.
 *
 * Worked example (what `tapegrad gradcheck --cell lstm` does):
 *
 *     tg_compare_opts o = tg_compare_defaults();      // T=5 B=3 I=4 H=6 L=2, seed 1, F64
 *     o.max_elems = 64;                                // finite differences on <= 64 elements per tensor
 *     tg_compare_report *r = tg_compare_cell("lstm", &o);   // returns: new object, NULL after tg_error
 *     tg_compare_report_print(stdout, r);             // an aligned table, one row per gradient
 *     bool ok = r->pass;
 *     tg_compare_report_free(r);
 *
 * What is computed, in F64, from one seeded generator: a model of `layers` layers of the cell
 * (tg_rnn_new, PyTorch's init U(±1/√H)), x [T,B,I] ~ N(0,1), initial states [L,B,H] ~ U(-1,1) and
 * upstream gradients dy [T,B,H], d<state>n [L,B,H] ~ N(0,1) (state = h, c, ... of the cell). The loss is
 *     loss = Σ y⊙dy + Σ hn⊙dhn (+ Σ cn⊙dcn, + one term per further state)
 * and its gradient with respect to x, every initial state and every parameter is obtained
 *   (a) "tape":   tg_rnn_forward + tg_backward;
 *   (b) "manual": the cell's own hook (cell->manual, a tg_cell_manual below: the user's hand-derived
 *                 step forward and backward, run over T steps and L layers by tg_cell_manual_bptt), or
 *                 else tg_manual_stack_forward / tg_manual_stack_backward for the cells that have a
 *                 hand-derived reference (rnn_tanh, rnn_relu, lstm, gru, gru_reset_before; standard parameters only;
 *                 lstm also with proj_size);
 *   (c) "fd":     (loss(v + eps) - loss(v - eps)) / (2 eps) per element, with the loss evaluated by
 *                 tg_rnn_forward under no-grad. With max_elems > 0 at most that many elements of each
 *                 tensor are perturbed, a seeded choice without repetition; the others are not compared
 *                 against FD (tape vs manual always covers every element).
 * The forward outputs y, hn (cn) of (a) and (b) are compared too.
 *
 * Errors, per tensor and comparison (reference b = manual, or fd):
 *   max_abs = max_i |a_i - b_i|                   (over the compared elements)
 *   max_rel = max_abs / max(1, max_i |b_i|)       (scaled relative error: robust to tiny elements)
 * Pass: tape vs manual (and the forward outputs): max_rel <= manual_tol (1e-10);
 *       vs fd: every compared element |a_i - b_i| <= fd_atol + fd_rtol |b_i| (1e-6, 1e-5: for eps 1e-6
 *       the truncation error is ~eps² and the rounding error ~1e-16·|loss|/eps ~ 1e-9 here).
 *
 * Ownership: returns: new object (tg_compare_report_free). args: borrowed. Like tg_gradcheck it resets
 * the current thread's tape on entry and on return.
 * Errors: an unknown cell or invalid sizes are programming errors reported through tg_error (the
 * default handler aborts; with a handler installed the function returns NULL).
 */
#ifndef TAPEGRAD_COMPARE_H
#define TAPEGRAD_COMPARE_H
#include <tapegrad/nn.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ---- the user's own hand-derived backward, as a hook on tg_cell ------------------------------------- */

/* Set cell->manual to one of these (examples/your_lstm_backward.c does it for the classic LSTM
 * exercise). Both functions see plain tensors (contiguous, the model's dtype) and must not use the tape
 * for their results; write them with loops over tg_data()/tg_f64() as on paper.
 *   forward:  x_t [B, I_k] and state_in[0..S-1] [B, H] -> state_out[0..S-1] [B, H] (new refs) and *cache
 *             (anything the backward needs; freed with free_cache). Returns 0, or -1 after tg_error.
 *   backward: d_out[0..S-1] = ∂loss/∂state_out [B, H] -> *dx [B, I_k] and d_in[0..S-1] = ∂loss/∂state_in
 *             (new refs), and the step's parameter gradients ADDED (+=) into grads (zero-filled tensors
 *             shaped like p's; NULL where p has none, e.g. biases of a model without them).
 * The cell's `step` (tape ops) stays what the runner trains with; the hook is what it is checked against. */
typedef struct tg_cell_manual {
    int (*forward)(const tg_cell *cell, const tg_cell_params *p, const tg_tensor *x_t, tg_tensor *const *state_in,
                   tg_tensor **state_out, void **cache);
    int (*backward)(const tg_cell *cell, const tg_cell_params *p, void *cache, tg_tensor *const *d_out,
                    tg_tensor **dx, tg_tensor **d_in, tg_cell_params *grads);
    void (*free_cache)(void *cache); /* NULL: free() */
} tg_cell_manual;

/* What tg_cell_manual_bptt computes (every tensor a new ref; tg_cell_manual_result_clear). */
typedef struct tg_cell_manual_result {
    tg_tensor *y;                            /* [T,B,H] outputs of the last layer */
    tg_tensor *final[TG_CELL_MAX_STATES];    /* [L,B,H] final states */
    tg_tensor *dx;                           /* [T,B,I] */
    tg_tensor *dinit[TG_CELL_MAX_STATES];    /* [L,B,H] gradients of the initial states */
    tg_params *grads;                        /* owned: the parameter gradients under m->params' names */
} tg_cell_manual_result;

/* Forward and BPTT of model m (one direction, time-major, no dropout) with m->cell->manual instead of
 * the tape: x [T,B,I], init[s] [L,B,H] (NULL entries or init NULL: zeros), upstream dy [T,B,H] and
 * dfinal[s] [L,B,H] (NULL: zero). The loss the gradients belong to is Σ y⊙dy + Σ_s final_s⊙dfinal_s.
 * args: borrowed. Returns 0, or -1 after tg_error (no hook, bidirectional model, shapes, a hook that
 * failed or returned a wrong shape: named with layer and step); out is then cleared. */
int tg_cell_manual_bptt(const tg_rnn *m, const tg_tensor *x, tg_tensor *const *init, const tg_tensor *dy,
                        tg_tensor *const *dfinal, tg_cell_manual_result *out);
void tg_cell_manual_result_clear(tg_cell_manual_result *r); /* releases everything; NULL-safe */

/* ---- the triple check -------------------------------------------------------------------------------- */

typedef struct tg_compare_opts {
    int64_t T, B, I, H;   /* time steps, batch, input size, hidden size (each >= 1) */
    int layers;           /* L >= 1 */
    uint64_t seed;        /* one generator for parameters, inputs, upstream gradients, FD subsampling */
    int64_t max_elems;    /* FD on at most this many elements per tensor; 0 = every element */
    double eps;           /* central-difference step (1e-6) */
    double manual_tol;    /* tape vs manual: max scaled relative error (1e-10) */
    double fd_atol;       /* vs FD: per element |a - n| <= fd_atol + fd_rtol |n| (1e-6) */
    double fd_rtol;       /* (1e-5) */
    int64_t proj_size;    /* P: an LSTM with projections (0 < P < H; weight_hr_l{k} is checked too, and h0,
                             dhn, dy are P wide); 0 = none */
} tg_compare_opts;

/* T=5 B=3 I=4 H=6 L=2, seed 1, max_elems 0 (all), eps 1e-6, tolerances as above. */
tg_compare_opts tg_compare_defaults(void);

typedef struct tg_compare_diff {
    bool done;            /* false: not computed (no manual reference, or FD skipped) */
    double max_abs;       /* max |a - b| */
    double max_rel;       /* max_abs / max(1, max |b|) */
    int64_t worst_index;  /* flat index of the largest |a - b| */
    bool pass;            /* against the tolerance of this comparison (true when !done) */
} tg_compare_diff;

typedef struct tg_compare_row {
    char name[64];              /* "grad.x", "grad.h0", "grad.c0", "grad.weight_ih_l0", ... */
    int ndim;
    int64_t shape[TG_MAX_DIMS];
    int64_t numel;
    int64_t fd_elems;           /* elements compared against FD (numel unless subsampled) */
    double max_grad;            /* max |tape gradient| (context for the errors) */
    tg_compare_diff tape_manual, tape_fd, manual_fd;
} tg_compare_row;

typedef struct tg_compare_report {
    char cell[48];
    tg_compare_opts opts;       /* as used (defaults filled in) */
    int n_states;               /* S: rows 1..S are the initial states grad.<state>0 */
    bool has_manual;            /* a hand-derived reference exists for this cell */
    bool manual_hook;           /* ... and it is the cell's own hook (cell->manual) */
    tg_compare_diff forward;    /* y, hn (, cn): tape vs manual, all outputs together */
    int n_rows;
    tg_compare_row *rows;       /* owned: x, the initial states, then every parameter in tg_params order */
    bool subsampled;            /* some tensor had more than max_elems elements */
    int n_fail;                 /* failed comparisons (rows x columns, plus the forward) */
    bool pass;                  /* n_fail == 0 */
    double seconds;             /* wall time of the whole check */
} tg_compare_report;

/* What tg_compare_cell needs for these sizes (<tapegrad/memory.h>); tg_compare_cell refuses, with that
 * message, what the machine cannot hold. Returns 0, or -1 after tg_error (unknown cell, bad opts). */
struct tg_mem_estimate;
int tg_compare_mem_estimate(const char *cell, const tg_compare_opts *opts, struct tg_mem_estimate *out);
/* Runs the triple check of one registered cell (tg_cell_by_name). opts NULL = tg_compare_defaults();
 * zero eps / tolerances are replaced by the defaults. returns: new object, or NULL after tg_error. */
tg_compare_report *tg_compare_cell(const char *cell, const tg_compare_opts *opts);
void tg_compare_report_free(tg_compare_report *r); /* NULL-safe */

/* An aligned table: a header with the cell, sizes and tolerances, one row per gradient with max abs
 * and max rel of tape-manual, tape-fd, manual-fd and pass/FAIL, then the forward check and a verdict. */
void tg_compare_report_print(FILE *f, const tg_compare_report *r);

#ifdef __cplusplus
}
#endif
#endif
