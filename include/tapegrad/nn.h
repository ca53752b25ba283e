/* tapegrad/nn.h - named parameter sets, init schemes, Linear, Embedding, recurrent cells and the
 * generic sequence runner (layers, directions, lengths, batch-first, truncated BPTT).
 *
 * Worked example: a 2-layer bidirectional LSTM over padded sequences, trained with truncated BPTT.
 *
 *     tg_rnn_config cfg = {.input_size = 8, .hidden_size = 16, .num_layers = 2,
 *                          .bidirectional = true, .dropout = 0.1, .dtype = TG_F32};
 *     tg_rnn *lstm = tg_rnn_new(tg_cell_by_name("lstm"), &cfg, NULL);   // returns: new object
 *     tg_rnn_init(lstm, &(tg_rnn_init_opts){.weight_hh = TG_INIT_ORTHOGONAL,
 *                                          .set_forget_bias = true, .forget_bias = 1.0}, NULL);
 *     tg_rnn_carry carry = {0};                        // detached h, c carried between chunks
 *     int64_t lengths[4] = {20, 17, 20, 9};            // per sequence of the batch (B = 4)
 *     for (int chunk = 0; chunk < n_chunks; chunk++) {
 *         tg_rnn_output out;                           // x: [T=20, B=4, I=8]
 *         tg_tensor *y = tg_rnn_forward(lstm, x[chunk], &(tg_rnn_forward_opts){
 *             .lengths = lengths, .init = carry.state, .train = true}, &out);   // y: tape-owned [20,4,32]
 *         tg_backward(tg_mean(tg_mul(y, y)));          // grads land in tg_params_find(lstm->params, ...)
 *         tg_rnn_carry_update(&carry, &out);           // new refs: survive the reset below
 *         tg_rnn_output_clear(&out);
 *         ... optimizer step on lstm->params ...
 *         tg_tape_reset();
 *     }
 *     tg_rnn_carry_clear(&carry);
 *     tg_rnn_free(lstm);
 *
 * Dimension letters: T time steps, B batch, I input size, H hidden size, G gates of a cell, S state
 * tensors of a cell (1 for h, 2 for LSTM's h and c), L layers, D directions (1 or 2).
 *
 * Ownership vocabulary (docs/design.md §3), on every prototype:
 *   returns: new ref    - release with tg_release
 *   returns: new object - free with the matching _free function
 *   returns: tape-owned - valid until tg_tape_reset
 *   returns: borrowed   - owned by the argument; do not release
 *   args: borrowed      - nothing here steals a reference
 * Errors (NULL, bad shapes, unknown names) go through tg_error with the function's name and the
 * operand shapes; the function then returns NULL / -1 and frees what it allocated. Nothing exits.
 *
 * Parameter names, shapes and equations follow PyTorch (docs/design.md §7): per layer k and
 * direction, weight_ih_l{k} [G·H, I_k], weight_hh_l{k} [G·H, H], bias_ih_l{k} [G·H],
 * bias_hh_l{k} [G·H], with the suffix _reverse for the backward direction. Gate order: LSTM i,f,g,o;
 * GRU r,z,n. An LSTM with proj_size P also has weight_hr_l{k} [P, H] after the biases, and its
 * weight_hh_l{k} is [4H, P], as torch.nn.LSTM(proj_size=P).
 */
#ifndef TAPEGRAD_NN_H
#define TAPEGRAD_NN_H
#include <tapegrad/tensor.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ---- named parameter sets ---------------------------------------------------------------------- */

/* An ordered list of (name, tensor); the list holds one reference to each tensor. */
typedef struct tg_params tg_params;

tg_params *tg_params_new(void);                 /* returns: new object (tg_params_free) */
void tg_params_free(tg_params *p);              /* releases every held tensor; NULL-safe */
/* Appends (name, t); the list retains t. args: borrowed. Returns 0, or -1 (NULL, duplicate name). */
int tg_params_add(tg_params *p, const char *name, tg_tensor *t);
/* Adds every entry of src as prefix + name (e.g. "rnn." + "weight_ih_l0"); 0 or -1. args: borrowed */
int tg_params_extend(tg_params *dst, const char *prefix, const tg_params *src);
tg_tensor *tg_params_find(const tg_params *p, const char *name); /* returns: borrowed; NULL if absent */
int tg_params_count(const tg_params *p);        /* number of entries */
int64_t tg_params_numel(const tg_params *p);    /* total elements over all entries */
const char *tg_params_name_at(const tg_params *p, int i); /* returns: borrowed; NULL out of range */
tg_tensor *tg_params_at(const tg_params *p, int i);       /* returns: borrowed; NULL out of range */
/* Calls fn(name, tensor, user) in order; stops at and returns the first non-zero result (else 0). */
typedef int (*tg_params_visit_fn)(const char *name, tg_tensor *t, void *user);
int tg_params_foreach(const tg_params *p, tg_params_visit_fn fn, void *user);
void tg_params_set_requires_grad(tg_params *p, bool on);
void tg_params_zero_grad(tg_params *p);         /* drops every gradient */

/* ---- init schemes (in place; bump the version; rng NULL = the thread's default) ---------------- */

/* t ~ U(lo, hi) */
void tg_init_uniform_(tg_tensor *t, tg_rng *rng, double lo, double hi);
/* t [blocks·R, C] viewed as `blocks` matrices [R, C] (fan_out R, fan_in C), each
 * U(±gain·√(6/(R+C))) - Glorot & Bengio 2010. blocks = 1: the whole matrix. Returns 0 or -1. */
int tg_init_xavier_uniform_(tg_tensor *t, int blocks, tg_rng *rng, double gain);
/* Each block [R, C] becomes gain·Q with orthonormal rows (R <= C) or columns (R > C), Q from
 * Gram-Schmidt (i.e. QR with positive diag(R)) of an N(0,1) matrix: Haar-distributed like PyTorch's
 * orthogonal_. Returns 0 or -1. */
int tg_init_orthogonal_(tg_tensor *t, int blocks, tg_rng *rng, double gain);

/* ---- Linear and Embedding ---------------------------------------------------------------------- */

typedef struct tg_linear_layer {
    int64_t in_features, out_features; /* I, O */
    tg_tensor *weight;                 /* [O, I], borrowed from params ("weight") */
    tg_tensor *bias;                   /* [O] or NULL, borrowed from params ("bias") */
    tg_params *params;                 /* owned */
} tg_linear_layer;

/* PyTorch's init: weight and bias ~ U(±1/√I); requires_grad on. returns: new object */
tg_linear_layer *tg_linear_layer_new(int64_t in_features, int64_t out_features, bool bias, tg_dtype dtype,
                                     tg_rng *rng);
void tg_linear_layer_free(tg_linear_layer *l);  /* NULL-safe */
/* x [..., I] -> [..., O] = x·Wᵀ + b. returns: tape-owned */
tg_tensor *tg_linear_layer_forward(const tg_linear_layer *l, const tg_tensor *x);

typedef struct tg_embedding_layer {
    int64_t num_embeddings, embedding_dim; /* V, E */
    tg_tensor *weight;                     /* [V, E] ~ N(0, 1) like PyTorch, borrowed from params */
    tg_params *params;                     /* owned ("weight") */
} tg_embedding_layer;

tg_embedding_layer *tg_embedding_layer_new(int64_t num_embeddings, int64_t embedding_dim, tg_dtype dtype,
                                           tg_rng *rng); /* returns: new object */
void tg_embedding_layer_free(tg_embedding_layer *e); /* NULL-safe */
/* index shaped ndim/shape -> [shape..., E]. returns: tape-owned */
tg_tensor *tg_embedding_layer_forward(const tg_embedding_layer *e, int ndim, const int64_t *shape,
                                      const int64_t *index);

/* ---- recurrent cells ---------------------------------------------------------------------------- */

#define TG_CELL_MAX_STATES 5 /* lstm_fgr: h, c and the previous i, f, o */
#define TG_CELL_MAX_EXTRA 8

/* The parameters of one layer in one direction, as the step function sees them. The four standard
 * tensors are borrowed pointers into the model's tg_params; extras are cell-specific (peepholes,
 * layer-norm gains, ...) in the order of cell->extra_names. */
typedef struct tg_cell_params {
    int64_t input_size, hidden_size;      /* I_k, H */
    tg_tensor *weight_ih;                 /* [G·H, I_k] */
    tg_tensor *weight_hh;                 /* [G·H, H] (a variant may use another shape) */
    tg_tensor *bias_ih;                   /* [G·H], NULL when the model has bias = false */
    tg_tensor *bias_hh;                   /* [G·H], NULL when bias = false */
    tg_tensor *extra[TG_CELL_MAX_EXTRA];  /* cell->n_extra entries */
    /* LSTM with projections (Sak et al. 2014; torch.nn.LSTM(proj_size=P)): h' = W_hr (o ⊙ tanh(c')), so
     * state 0 (h) is [B,P], weight_hh is [G·H, P]; only cells with .proj set ever see these non-zero */
    int64_t proj_size;                    /* P, or 0: no projection */
    tg_tensor *weight_hr;                 /* [P, H] ("weight_hr_l{k}"), NULL when proj_size = 0 */
} tg_cell_params;

typedef struct tg_cell tg_cell;

/* Creates (and initialises) one layer's parameters, filling `out` with new refs (the runner files them
 * in its tg_params under PyTorch names and drops its own reference). Returns 0 or -1 (after tg_error,
 * with nothing left allocated). */
typedef int (*tg_cell_make_params_fn)(const tg_cell *cell, int64_t input_size, int64_t hidden_size, bool bias,
                                      tg_dtype dtype, tg_rng *rng, tg_cell_params *out);
/* One time step from public ops only: state_in[0..S-1] [B,H] -> state_out[0..S-1] [B,H] (tape-owned;
 * state 0 is h, the layer's output). xproj_t [B, G·H] = x_t·W_ihᵀ + b_ih, computed for all t by one
 * tg_linear before the loop. x_t [B, I_k] is the raw input row, passed only when cell->needs_input
 * (else NULL). Returns 0, or -1 when an op failed (its message is pending). */
typedef int (*tg_cell_step_fn)(const tg_cell *cell, const tg_cell_params *p, const tg_tensor *x_t,
                               const tg_tensor *xproj_t, tg_tensor *const *state_in, tg_tensor **state_out);

/* Optional: all T steps of one layer and direction in one call (one op on the tape instead of T steps'
 * worth), with the same values and gradients as step called for t = 0..T-1 (T-1..0 when reverse).
 * xproj [T,B,G·H] is x·W_ihᵀ + b_ih of every step (an op result nothing else reads: the function may
 * overwrite it, as tg_rnn_seq_ does); state_in as for step. Fills state_out with the final states and
 * returns the outputs [T,B,H] (state 0 after every step, tape-owned), or NULL when an op failed (its
 * message is pending). The runner uses it when nothing happens between steps: no per-sequence lengths,
 * no zoneout, no kept step states, no projections (proj_size). */
typedef tg_tensor *(*tg_cell_sequence_fn)(const tg_cell *cell, const tg_cell_params *p, const tg_tensor *xproj,
                                          bool reverse, tg_tensor *const *state_in, tg_tensor **state_out);

/* A cell is a table row: adding a variant is one of these (written with named fields, as in
 * nn/cells_zoo.c) plus its step function (and make_params when it has extra parameters). The runner
 * never changes. Recipe and checks: docs/design.md, "Adding a cell". */
struct tg_cell {
    const char *name;                 /* registry key, e.g. "lstm" */
    int gates;                        /* G: weight_ih has G·H rows */
    int n_states;                     /* S: 1 (h) or 2 (h, c), at most TG_CELL_MAX_STATES */
    const char *const *state_names;   /* S names ("h", "c"): learned initial states are "<name>0"; NULL = h,c,s2,s3,s4 */
    int forget_gate;                  /* gate block that tg_rnn_init's forget bias sets (LSTM: f = 1; GRU: z = 1,
                                         the gate that keeps the old state); -1: none */
    int n_extra;                      /* extra per-layer parameters, at most TG_CELL_MAX_EXTRA */
    const char *const *extra_names;   /* their base names ("weight_peephole" -> "weight_peephole_l0") */
    bool needs_input;                 /* the step reads x_t as well as xproj_t */
    tg_cell_make_params_fn make_params; /* NULL: tg_cell_standard_params */
    tg_cell_step_fn step;
    const void *user;                 /* constants for user cells sharing one step function */
    const char *equations;            /* the step's equations as text, one per line (shown by tapegrad summary);
                                         NULL = not given */
    const char *reference;            /* where the cell comes from (paper, year); shown by `tapegrad cells`;
                                         NULL = not given */
    const struct tg_cell_manual *manual; /* optional: the user's own hand-derived step forward + backward
                                         (<tapegrad/compare.h>); tg_compare_cell checks it as "manual" */
    tg_cell_sequence_fn sequence;     /* optional: every step at once (see tg_cell_sequence_fn); NULL: step by step */
    bool proj;                        /* accepts tg_rnn_config.proj_size: its step multiplies the new h by
                                         p->weight_hr when that is set (only "lstm"); such a cell uses the
                                         standard parameters (make_params NULL, no extras) */
};

/* The built-in cells (nn/cells.c: "rnn_tanh", "rnn_relu", "lstm", "gru" (PyTorch's reset-after),
 * "gru_reset_before"), the zoo (nn/cells_zoo.c) and any registered ones, by exact name; `tapegrad
 * cells` lists them all with equations and references (the table docs/cells.md shows).
 * returns: borrowed (static); NULL plus tg_error("tg_cell_by_name", ...) listing the known names
 * when unknown. */
const tg_cell *tg_cell_by_name(const char *name);
/* Makes a user cell findable by name. The struct must outlive its use (usually static). Call before
 * starting threads. args: borrowed. Returns 0, or -1 (invalid cell, name taken, registry full). */
int tg_cell_register(const tg_cell *cell);
int tg_cell_count(void);                        /* built-in + registered */
const tg_cell *tg_cell_at(int i);               /* returns: borrowed; NULL out of range */
/* The standard make_params: weight_ih [G·H, I], weight_hh [G·H, H], bias_ih/bias_hh [G·H] (if bias),
 * all ~ U(±1/√H) as in PyTorch; extras are left NULL. */
int tg_cell_standard_params(const tg_cell *cell, int64_t input_size, int64_t hidden_size, bool bias,
                            tg_dtype dtype, tg_rng *rng, tg_cell_params *out);

/* ---- the generic sequence runner ---------------------------------------------------------------- */

typedef struct tg_rnn_config {
    int64_t input_size;   /* I */
    int64_t hidden_size;  /* H */
    int num_layers;       /* L (0 means 1) */
    bool bidirectional;   /* D = 2: outputs [T,B,2H] = [forward | reverse] like PyTorch */
    bool batch_first;     /* x and output are [B,T,...] (states stay [L·D,B,H]) */
    bool no_bias;         /* PyTorch bias=False: no bias_ih / bias_hh */
    double dropout;       /* on the outputs of every layer but the last, when training */
    bool learn_init;      /* learned initial states: params "h0" [L·D, P or H] (and "c0" [L·D, H]) */
    tg_dtype dtype;       /* TG_F32 (0) or TG_F64 */
    int64_t proj_size;    /* P: LSTM with projections, 0 < P < H (torch.nn.LSTM(proj_size=P)); 0 = none.
                             Adds weight_hr_l{k}[_reverse] [P, H]; weight_hh is [4H, P]; h, h0, h_n and each
                             direction's output are P wide (layer k > 0 reads D·P), c stays H wide */
} tg_rnn_config;

typedef struct tg_rnn {
    const tg_cell *cell;
    int64_t input_size, hidden_size;  /* I, H */
    int num_layers, num_directions;   /* L, D */
    bool batch_first, bias, learn_init;
    double dropout;
    tg_dtype dtype;
    tg_params *params;                /* owned: PyTorch names, layer by layer, forward then _reverse */
    tg_cell_params *layers;           /* [L·D], index l·D + d; tensors borrowed from params */
    tg_tensor *init[TG_CELL_MAX_STATES]; /* learned initial states [L·D, H] (borrowed from params) or NULL */
    int64_t proj_size;                /* P (0 = none): see tg_rnn_config */
} tg_rnn;

/* Creates the parameters of every layer and direction with cell->make_params (PyTorch default init
 * U(±1/√H)), requires_grad on. cell NULL (e.g. from a failed tg_cell_by_name) returns NULL keeping
 * that message. rng NULL = the thread's default. returns: new object (tg_rnn_free) */
tg_rnn *tg_rnn_new(const tg_cell *cell, const tg_rnn_config *cfg, tg_rng *rng);
void tg_rnn_free(tg_rnn *m);                     /* NULL-safe */
/* returns: borrowed; NULL (with an error) out of range. direction 1 = reverse. */
const tg_cell_params *tg_rnn_layer(const tg_rnn *m, int layer, int direction);

typedef enum tg_init_scheme {
    TG_INIT_PYTORCH = 0,      /* U(±1/√H), PyTorch's reset_parameters */
    TG_INIT_XAVIER_UNIFORM,   /* per gate block [H, fan_in]: U(±gain·√(6/(H + fan_in))) */
    TG_INIT_ORTHOGONAL        /* per gate block [H, fan_in]: gain · orthogonal */
} tg_init_scheme;

typedef struct tg_rnn_init_opts {   /* {0} = PyTorch's default for everything */
    tg_init_scheme weight_ih;       /* input weights */
    tg_init_scheme weight_hh;       /* recurrent weights (orthogonal is the usual choice) */
    double gain;                    /* for Xavier / orthogonal; 0 means 1 */
    bool zero_bias;                 /* biases 0 instead of U(±1/√H) */
    bool set_forget_bias;           /* Jozefowicz et al. 2015: */
    double forget_bias;             /*   bias_ih of cell->forget_gate's block = forget_bias, bias_hh's = 0 */
} tg_rnn_init_opts;

/* Re-initialises the four standard tensors of every layer, and weight_hr with weight_hh's scheme (as one
 * block), in place (extras are the cell's business).
 * opts NULL = PyTorch default. Returns 0 or -1 (e.g. forget bias on a cell without a forget gate). */
int tg_rnn_init(tg_rnn *m, const tg_rnn_init_opts *opts, tg_rng *rng);

typedef struct tg_rnn_forward_opts { /* {0} or NULL: zeros initial state, all lengths T, evaluation */
    const int64_t *lengths;          /* [B] or NULL; each in 1..T. Steps past a sequence's end give zero
                                        output and leave its state as it was (packed-sequence semantics;
                                        the reverse direction starts at each sequence's own last step) */
    tg_tensor *const *init;          /* NULL, or S entries [L·D,B,H] (h0, c0; h0 is [L·D,B,P] with
                                        proj_size P); a NULL entry uses the default (learned if
                                        cfg.learn_init, else zeros) */
    bool train;                      /* dropout between layers is active */
    tg_rng *rng;                     /* dropout's and zoneout's generator; NULL = the thread's default */
    bool keep_step_states;           /* fill out->step_states */
    /* Zoneout (Krueger et al. 2016), for any cell: each unit of a state keeps its previous value with
     * probability z. Training: s_t = m ⊙ s_{t−1} + (1 − m) ⊙ s̃_t, m ~ Bernoulli(z) per unit and step
     * (a constant mask drawn from `rng`, so a seeded generator repeats it); evaluation: s_t =
     * z s_{t−1} + (1 − z) s̃_t. 0 = off (exactly the plain run); 1 freezes the state. */
    double zoneout_h;                /* z of state 0 (h, which is also the output) */
    double zoneout_c;                /* z of state 1 (LSTM's c); ignored by one-state cells; later states
                                        (lstm_fgr's previous gates) are never zoned out */
} tg_rnn_forward_opts;

typedef struct tg_rnn_output {       /* every tensor here: tape-owned */
    tg_tensor *output;               /* [T,B,D·H] ([B,T,D·H] when batch_first); D·P with proj_size P */
    tg_tensor *final[TG_CELL_MAX_STATES]; /* [L·D,B,H] each: the state at each sequence's last real step
                                        (h_n: [L·D,B,P] with proj_size P) */
    tg_tensor *h_n, *c_n;            /* final[0], final[1] (c_n NULL for one-state cells) */
    int n_states;                    /* S */
    /* keep_step_states: the carried state after every step, [T,B,H] (time-major, time order for both
     * directions; padded steps repeat the frozen state), at index (l·D + d)·S + s. Else NULL. */
    tg_tensor **step_states;         /* owned array (tg_rnn_output_clear), tape-owned tensors */
    int n_step_states;               /* L·D·S */
} tg_rnn_output;

/* Runs the model over x [T,B,I] ([B,T,I] when batch_first). out may be NULL when only the output
 * matters; when given it must be cleared with tg_rnn_output_clear. args: borrowed.
 * Unbatched input, as torch: x [T,I] (batch_first or not) is one sequence; the initial states are
 * then [L·D,H] and the output [T,D·H], final states [L·D,H], step states [T,H]; lengths, if given,
 * has one entry. hx must have x's rank: "For unbatched 2-D input, hx should also be 2-D but got 3-D
 * tensor" (LSTM: "hx and cx should also be 2-D but got (2-D, 3-D) tensors"), and the same for
 * batched 3-D input, torch's messages. As torch 1.13: an empty batch (B = 0) runs, giving output
 * [T,0,D·H] and final states [L·D,0,H] that require grad (backward: zero parameter gradients); a
 * sequence of length 0 (T = 0, batched or unbatched) is refused: "x [0,2,4] [T,B,I]: Expected
 * sequence length to be larger than 0 in RNN".
 * returns: tape-owned output, or NULL after tg_error("tg_rnn_forward", ...). */
tg_tensor *tg_rnn_forward(const tg_rnn *m, const tg_tensor *x, const tg_rnn_forward_opts *opts,
                          tg_rnn_output *out);
/* Frees out->step_states (not the tensors, which the tape owns) and zeroes out. NULL-safe. */
void tg_rnn_output_clear(tg_rnn_output *out);
/* borrowed, the step states of one layer/direction/state ([T,B,H]); NULL if not kept */
tg_tensor *tg_rnn_step_state(const tg_rnn_output *out, const tg_rnn *m, int layer, int direction, int state);

/* Truncated BPTT: the final states of one chunk, detached (no history, sharing storage), held as new
 * refs that survive tg_tape_reset; pass `carry.state` as opts.init of the next chunk. */
typedef struct tg_rnn_carry {
    tg_tensor *state[TG_CELL_MAX_STATES]; /* new refs [L·D,B,H] or NULL */
    int n_states;
} tg_rnn_carry;
/* Releases the previous state and keeps tg_detach(out->final[s]). Returns 0 or -1. */
int tg_rnn_carry_update(tg_rnn_carry *carry, const tg_rnn_output *out);
void tg_rnn_carry_clear(tg_rnn_carry *carry);   /* releases the held state; NULL-safe */

#ifdef __cplusplus
}
#endif
#endif
