/* nn/runner.c - the generic sequence runner: any tg_cell over [T,B,I], with layers, two directions,
 * dropout between layers, per-sequence lengths, batch-first input, and the state carry of truncated
 * BPTT. Public ops only; the tape does backprop-through-time.
 *
 * Dimension letters: T time steps, B batch, I input size (I_k of layer k: I, then D·R), H hidden size,
 * R the width of h and of each direction's output (R = P with projections, proj_size, else H),
 * G gates, S state tensors of the cell, L layers, D directions.
 *
 * Per layer and direction the input projection x·W_ihᵀ + b_ih of all T steps is ONE tg_linear over
 * [T·B, I_k]; the loop then takes step t of it with tg_select (a zero-copy view), and only the
 * recurrent product h·W_hhᵀ stays inside the cell's step. Every step's result becomes the carried
 * state in one function, advance(), which is where zoneout and length masking happen. A cell with a
 * sequence function (rnn_tanh, rnn_relu, indrnn, lstm) runs all T steps in one call instead when none of
 * that is asked for (sequence_ok). */
#include "autograd/tape_internal.h"
#include "nn/cells_internal.h"
#include "tensor/alloc.h"

#include <tapegrad/autograd.h>
#include <tapegrad/memory.h>
#include <tapegrad/nn.h>
#include <tapegrad/ops.h>

#include <stdlib.h>
#include <string.h>

static const char *const g_default_state_names[TG_CELL_MAX_STATES] = {"h", "c", "s2", "s3", "s4"};

static const char *state_name(const tg_cell *cell, int s) {
    return cell->state_names ? cell->state_names[s] : g_default_state_names[s];
}

/* ---- construction -------------------------------------------------------------------------------- */

/* Files one new tensor under base + suffix ("weight_ih" + "_l0_reverse"); returns it borrowed, or NULL.
 * The list takes its own reference; ours is dropped either way. */
static tg_tensor *file_param(tg_params *params, const char *base, const char *suffix, tg_tensor *t) {
    if (!t) return NULL;
    char name[128];
    snprintf(name, sizeof name, "%s%s", base, suffix);
    int s = tg_params_add(params, name, t);
    tg_release(t);
    return s ? NULL : t;
}

static bool valid_cell(const char *fn, const tg_cell *cell) {
    if (!cell->step || cell->gates <= 0 || cell->n_states < 1 || cell->n_states > TG_CELL_MAX_STATES ||
        cell->n_extra < 0 || cell->n_extra > TG_CELL_MAX_EXTRA || (cell->n_extra && !cell->extra_names)) {
        tg_error(fn, "cell '%s' is malformed (%d gates, %d states, %d extra parameters, step %s)",
                 cell->name ? cell->name : "?", cell->gates, cell->n_states, cell->n_extra,
                 cell->step ? "set" : "NULL");
        return false;
    }
    return true;
}

/* proj_size as torch.nn.LSTM checks it (its messages, then ours naming the values). */
static bool proj_ok(const char *fn, const tg_cell *cell, const tg_rnn_config *cfg) {
    if (cfg->proj_size == 0) return true;
    if (!cell->proj) {
        tg_error(fn, "proj_size argument is only supported for LSTM, not RNN or GRU (cell '%s', proj_size %lld)",
                 cell->name, (long long)cfg->proj_size);
        return false;
    }
    if (cfg->proj_size < 0) {
        tg_error(fn, "proj_size should be a positive integer or zero to disable projections (proj_size %lld)",
                 (long long)cfg->proj_size);
        return false;
    }
    if (cfg->proj_size >= cfg->hidden_size) {
        tg_error(fn, "proj_size has to be smaller than hidden_size (proj_size %lld, hidden_size %lld)",
                 (long long)cfg->proj_size, (long long)cfg->hidden_size);
        return false;
    }
    if (cell->make_params || cell->n_extra) {
        tg_error(fn, "cell '%s' is marked .proj but has its own parameters (make_params or extras): a projected "
                 "cell uses the standard ones", cell->name);
        return false;
    }
    return true;
}

tg_rnn *tg_rnn_new(const tg_cell *cell, const tg_rnn_config *cfg, tg_rng *rng) {
    const char *fn = "tg_rnn_new";
    if (!cell || !cfg) {
        if (!tg_error_pending()) tg_error(fn, "%s is NULL", !cell ? "cell" : "config");
        return NULL;
    }
    if (!valid_cell(fn, cell)) return NULL;
    int L = cfg->num_layers ? cfg->num_layers : 1, D = cfg->bidirectional ? 2 : 1;
    if (cfg->input_size <= 0 || cfg->hidden_size <= 0 || L < 0) {
        tg_error(fn, "cell '%s': input size %lld, hidden size %lld, %d layers: all must be positive", cell->name,
                 (long long)cfg->input_size, (long long)cfg->hidden_size, cfg->num_layers);
        return NULL;
    }
    if (!(cfg->dropout >= 0 && cfg->dropout < 1)) {
        tg_error(fn, "dropout %g outside [0, 1)", cfg->dropout);
        return NULL;
    }
    if (cfg->dtype != TG_F32 && cfg->dtype != TG_F64) {
        tg_error(fn, "unknown dtype %d (TG_F32 or TG_F64)", (int)cfg->dtype);
        return NULL;
    }
    if (!proj_ok(fn, cell, cfg)) return NULL;
    /* parameters that cannot fit are refused before the first one is allocated */
    tg_mem_estimate est;
    tg_rnn_config pc = *cfg;
    if (tg_rnn_mem_estimate(cell, &pc, 0, 0, 0, &est)) return NULL;
    est.grads = 0; /* the parameters alone: gradients come later, if ever */
    tg_mem_sum(&est);
    char why[320];
    if (tg_mem_check(&est, 0, why, sizeof why)) { tg_error(fn, "cell '%s': %s", cell->name, why); return NULL; }
    tg_rnn *m = tg_calloc(1, sizeof *m);
    if (!m) { tg_error(fn, "out of memory"); return NULL; }
    m->cell = cell;
    m->input_size = cfg->input_size;
    m->hidden_size = cfg->hidden_size;
    m->num_layers = L;
    m->num_directions = D;
    m->batch_first = cfg->batch_first;
    m->bias = !cfg->no_bias;
    m->learn_init = cfg->learn_init;
    m->dropout = cfg->dropout;
    m->dtype = cfg->dtype;
    m->proj_size = cfg->proj_size;
    m->params = tg_params_new();
    m->layers = tg_calloc((size_t)(L * D), sizeof *m->layers);
    if (!m->params || !m->layers) {
        if (!tg_error_pending()) tg_error(fn, "out of memory");
        tg_rnn_free(m);
        return NULL;
    }
    if (!rng) rng = tg_default_rng();
    tg_cell_make_params_fn make = cell->make_params ? cell->make_params : tg_cell_standard_params;
    int64_t R = m->proj_size ? m->proj_size : m->hidden_size; /* the width of h and of each direction's output */
    for (int l = 0; l < L; l++) {
        for (int d = 0; d < D; d++) {
            char suffix[64];
            snprintf(suffix, sizeof suffix, "_l%d%s", l, d ? "_reverse" : "");
            int64_t I_k = l == 0 ? m->input_size : D * R;
            tg_cell_params fresh;
            memset(&fresh, 0, sizeof fresh);
            const char *caller = tg__params_caller_set(fn);
            int made = m->proj_size ? tg__cell_standard_params_proj(cell, I_k, m->hidden_size, m->proj_size, m->bias,
                                                                     m->dtype, rng, &fresh)
                                    : make(cell, I_k, m->hidden_size, m->bias, m->dtype, rng, &fresh);
            tg__params_caller_set(caller);
            if (made) {
                if (!tg_error_pending()) tg_error(fn, "cell '%s': make_params failed for layer %d", cell->name, l);
                tg_rnn_free(m);
                return NULL;
            }
            /* file every new ref (even after a failure, so that none leaks), then check */
            tg_cell_params *p = &m->layers[l * D + d];
            p->input_size = I_k;
            p->hidden_size = m->hidden_size;
            bool ok = true;
            ok &= (p->weight_ih = file_param(m->params, "weight_ih", suffix, fresh.weight_ih)) != NULL;
            ok &= (p->weight_hh = file_param(m->params, "weight_hh", suffix, fresh.weight_hh)) != NULL;
            p->bias_ih = file_param(m->params, "bias_ih", suffix, fresh.bias_ih);
            p->bias_hh = file_param(m->params, "bias_hh", suffix, fresh.bias_hh);
            ok &= !fresh.bias_ih == !p->bias_ih && !fresh.bias_hh == !p->bias_hh;
            p->proj_size = m->proj_size; /* torch's order: weight_hr after the biases */
            p->weight_hr = file_param(m->params, "weight_hr", suffix, fresh.weight_hr);
            ok &= !fresh.weight_hr == !p->weight_hr;
            for (int e = 0; e < cell->n_extra; e++) {
                p->extra[e] = file_param(m->params, cell->extra_names[e], suffix, fresh.extra[e]);
                ok &= !fresh.extra[e] == !p->extra[e];
            }
            if (!ok) {
                if (!tg_error_pending()) tg_error(fn, "cell '%s': make_params gave no weight_ih/weight_hh", cell->name);
                tg_rnn_free(m);
                return NULL;
            }
        }
    }
    if (m->learn_init) {
        for (int s = 0; s < cell->n_states; s++) {
            char name[64];
            snprintf(name, sizeof name, "%s0", state_name(cell, s));
            m->init[s] = file_param(m->params, name, "", tg_zeros(m->dtype, TG_SHAPE(L * D, s ? m->hidden_size : R)));
            if (!m->init[s]) { tg_rnn_free(m); return NULL; }
        }
    }
    tg_params_set_requires_grad(m->params, true);
    return m;
}

void tg_rnn_free(tg_rnn *m) {
    if (!m) return;
    tg_params_free(m->params);
    free(m->layers);
    free(m);
}

const tg_cell_params *tg_rnn_layer(const tg_rnn *m, int layer, int direction) {
    if (!m || layer < 0 || layer >= m->num_layers || direction < 0 || direction >= m->num_directions) {
        tg_error("tg_rnn_layer", "layer %d, direction %d out of range (%d layers, %d directions)", layer, direction,
                 m ? m->num_layers : 0, m ? m->num_directions : 0);
        return NULL;
    }
    return &m->layers[layer * m->num_directions + direction];
}

/* ---- forward ------------------------------------------------------------------------------------- */

typedef struct run_ctx {
    const tg_rnn *m;
    int64_t T, B;
    tg_tensor *zeros;        /* [B,H] tape-owned: the default initial state of c, s2, ... */
    tg_tensor *zeros_h;      /* [B,R] tape-owned: the default h0 and padded outputs (= zeros without proj) */
    tg_tensor **keep_mask;   /* [T] of [B] new refs: 1 where step t is inside sequence b; NULL: all are */
    tg_tensor **hold_mask;   /* [T] of [B] new refs: 1 - keep_mask[t] */
    int64_t *n_active;       /* [T]: sequences still running at step t */
    double zoneout[TG_CELL_MAX_STATES]; /* per state: probability of keeping the previous value; 0 = off */
    bool train;              /* zoneout: random masks (training) or the expectation (evaluation) */
    tg_rng *rng;             /* zoneout masks' generator */
} run_ctx;

/* Zoneout (Krueger et al. 2016) of one state: training s' = m ⊙ s + (1 − m) ⊙ s̃ with m ~ Bernoulli(z)
 * per unit, drawn from c->rng in row-major order; evaluation s' = z s + (1 − z) s̃. The masks are
 * constants (the gradient flows through m to s and through 1 − m to s̃). tape-owned, or NULL. */
static tg_tensor *zoneout(const run_ctx *c, double z, tg_tensor *prev, tg_tensor *next) {
    if (!c->train) return tg_add(tg_mul_scalar(prev, z), tg_mul_scalar(next, 1.0 - z));
    tg_tensor *keep = tg_empty(tg_dtype_of(next), tg_ndim(next), tg_shape(next)), *take = tg_zeros_like(next);
    if (!keep || !take) {
        tg_release(keep);
        tg_release(take);
        return NULL;
    }
    for (int64_t j = 0; j < tg_numel(next); j++) {
        double m = tg_rng_uniform(c->rng) < z ? 1.0 : 0.0;
        if (tg_dtype_of(next) == TG_F64) ((double *)tg_data(keep))[j] = m, ((double *)tg_data(take))[j] = 1.0 - m;
        else ((float *)tg_data(keep))[j] = (float)m, ((float *)tg_data(take))[j] = (float)(1.0 - m);
    }
    tg_tensor *r = tg_add(tg_mul(keep, prev), tg_mul(take, next)); /* the tape keeps what it saved */
    tg_release(keep);
    tg_release(take);
    return r;
}

/* The one place where a step's result becomes the carried state and the step's output. Zoneout first
 * mixes each zoned state with its previous value (the zoned h is also the output). Then rows whose
 * sequence has ended keep their state and output zero, which gives PyTorch's packed-sequence
 * semantics (the final state is the state at the last real step). */
static void advance(const run_ctx *c, int S, int64_t t, tg_tensor **state, tg_tensor *const *next_raw,
                    tg_tensor **output) {
    tg_tensor *next[TG_CELL_MAX_STATES] = {0}; /* (gcc -O3 without -march=native cannot see S <= the bound) */
    for (int s = 0; s < S; s++)
        next[s] = c->zoneout[s] > 0 ? zoneout(c, c->zoneout[s], state[s], next_raw[s]) : next_raw[s];
    if (!c->keep_mask || c->n_active[t] == c->B) {
        for (int s = 0; s < S; s++) state[s] = next[s];
        *output = next[0];
        return;
    }
    /* state' = keep ⊙ next + (1 - keep) ⊙ state;  output = keep ⊙ h_next */
    *output = tg_mask_rows(next[0], c->keep_mask[t]);
    state[0] = tg_add(*output, tg_mask_rows(state[0], c->hold_mask[t]));
    for (int s = 1; s < S; s++)
        state[s] = tg_add(tg_mask_rows(next[s], c->keep_mask[t]), tg_mask_rows(state[s], c->hold_mask[t]));
}

/* A step must return S tensors shaped like the states it was given ([B,H]); a user cell that gets
 * this wrong is caught here with its name rather than three ops later. Returns 0 or -1. */
static int produced_ok(const run_ctx *c, const tg_cell *cell, tg_tensor *const *next, tg_tensor *const *state) {
    (void)c;
    for (int s = 0; s < cell->n_states; s++) {
        if (!next[s]) return -1;
        if (!tg_same_shape(next[s], state[s])) {
            char b1[64], b2[64];
            tg_error("tg_rnn_forward", "cell '%s' returned state %d as %s, expected %s", cell->name, s,
                     tg_shape_str(next[s], b1, sizeof b1), tg_shape_str(state[s], b2, sizeof b2));
            return -1;
        }
    }
    return 0;
}

/* Runs layer/direction k over input [T,B,I_k]: outputs[t] [B,R], state[] in (initial) and out (final);
 * keep[s] (if not NULL) receives the state after every step. Returns 0 or -1. */
static int time_loop(const run_ctx *c, const tg_cell *cell, const tg_cell_params *p, bool reverse,
                     const tg_tensor *input, const tg_tensor *proj, tg_tensor **outputs, tg_tensor **state,
                     tg_tensor ***keep, bool *swept);

/* A cell's sequence function (all steps in one call) serves when nothing happens between its steps
 * that it would skip: no per-sequence lengths (masks), no zoneout, no kept step states, no projections
 * (proj_size: the step multiplies h' by weight_hr); and B > 0. */
static bool sequence_ok(const run_ctx *c, const tg_cell *cell, const tg_cell_params *p, bool keep) {
    if (!cell->sequence || keep || c->keep_mask || c->B == 0 || p->weight_hr) return false;
    for (int s = 0; s < cell->n_states; s++)
        if (c->zoneout[s] > 0) return false;
    return true;
}

/* All T steps of layer/direction k through the cell's sequence function: *dir_out [T,B,R], state[] in
 * and out as in time_loop. Returns 0 or -1. */
static int run_sequence(const run_ctx *c, const tg_cell *cell, const tg_cell_params *p, bool reverse,
                        const tg_tensor *proj, tg_tensor **state, tg_tensor **dir_out) {
    tg_tensor *next[TG_CELL_MAX_STATES] = {0};
    tg_tensor *y = cell->sequence(cell, p, proj, reverse, state, next);
    if (!y || produced_ok(c, cell, next, state) != 0) {
        if (!tg_error_pending())
            tg_error("tg_rnn_forward", "cell '%s' failed in its sequence function without a message", cell->name);
        return -1;
    }
    if (tg_ndim(y) != 3 || tg_dim(y, 0) != c->T || tg_dim(y, 1) != c->B || tg_dim(y, 2) != tg_dim(state[0], 1)) {
        char b1[64];
        tg_error("tg_rnn_forward", "cell '%s': its sequence function returned the outputs as %s, expected [%lld,%lld,%lld]",
                 cell->name, tg_shape_str(y, b1, sizeof b1), (long long)c->T, (long long)c->B,
                 (long long)tg_dim(state[0], 1));
        return -1;
    }
    for (int s = 0; s < cell->n_states; s++) state[s] = next[s];
    *dir_out = y;
    return 0;
}

/* Runs layer/direction k: *dir_out [T,B,R] (the step outputs stacked, or the sequence function's),
 * outputs[t] the step outputs (step by step only), state[] and keep as in time_loop. Returns 0 or -1. */
static int run_direction(const run_ctx *c, int k, bool reverse, const tg_tensor *input, tg_tensor **outputs,
                         tg_tensor **state, tg_tensor ***keep, tg_tensor **dir_out) {
    const tg_rnn *m = c->m;
    const tg_cell *cell = m->cell;
    const tg_cell_params *p = &m->layers[k];
    const tg_tape_mark mark = tg_tape_mark_here();
    /* x·W_ihᵀ + b_ih for every step at once: [T,B,I_k] -> [T,B,G·H] */
    tg_tensor *proj = tg_linear(input, p->weight_ih, p->bias_ih);
    if (!proj) return -1;
    tg__pack_scope_begin(); /* W_hh is packed once for all T steps, not at every step */
    int rc;
    bool swept = false;
    if (sequence_ok(c, cell, p, keep != NULL)) rc = run_sequence(c, cell, p, reverse, proj, state, dir_out);
    else {
        rc = time_loop(c, cell, p, reverse, input, proj, outputs, state, keep, &swept);
        if (rc == 0 && !(*dir_out = tg_stack((int)c->T, outputs))) rc = -1;                                /* [T,B,R] */
    }
    tg__pack_scope_end();
    if (rc == 0 && swept) { /* what the layer made is read on only through its output and final states (and
                               * kept rows): the input projection of a plain-op cell, what steps left */
        int S = cell->n_states;
        size_t n = (size_t)S + 1 + (keep ? (size_t)S * (size_t)c->T : 0);
        tg_tensor *local[TG_CELL_MAX_STATES + 1], **live = keep ? tg_malloc(n * sizeof *live) : local;
        if (live) { /* out of memory: nothing is freed early */
            live[0] = *dir_out;
            for (int s = 0; s < S; s++) live[1 + s] = state[s];
            for (int s = 0; keep && s < S; s++) memcpy(live + 1 + S + (size_t)s * c->T, keep[s], (size_t)c->T * sizeof *live);
            tg_tape_free_unsaved(mark, (int)n, live);
            if (live != local) free(live);
        }
    }
    return rc;
}

static int time_loop(const run_ctx *c, const tg_cell *cell, const tg_cell_params *p, bool reverse,
                     const tg_tensor *input, const tg_tensor *proj, tg_tensor **outputs, tg_tensor **state,
                     tg_tensor ***keep, bool *swept) {
    int S = cell->n_states;
    /* The step's results that no backward reads are freed after it (tg_tape_free_unsaved), and the
     * layer's once it ends (*swept). A cell whose first step leaves nothing to free (a fused op, whose
     * results backward reads) is swept neither after every step nor at the end: the cost of looking
     * (~1 % of a B = 1 step) buys nothing there. */
    bool sweep = true;
    *swept = true;
    for (int64_t i = 0; i < c->T; i++) {
        int64_t t = reverse ? c->T - 1 - i : i;
        if (c->n_active[t] == 0 && c->B > 0) { /* every sequence has ended (or, in reverse, not yet begun);
                                                 * an empty batch steps (torch: its results require grad) */
            outputs[t] = c->zeros_h;
        } else {
            tg_tensor *next[TG_CELL_MAX_STATES] = {0};
            const tg_tape_mark mark = tg_tape_mark_here();
            const tg_tensor *x_t = cell->needs_input ? tg_select(input, t) : NULL;
            const tg_tensor *xproj_t = tg_select(proj, t);
            if (!xproj_t || (cell->needs_input && !x_t)) return -1;
            if (cell->step(cell, p, x_t, xproj_t, state, next) || produced_ok(c, cell, next, state) != 0) {
                if (!tg_error_pending())
                    tg_error("tg_rnn_forward", "cell '%s' failed at step %lld without a message", cell->name,
                             (long long)t);
                return -1;
            }
            advance(c, S, t, state, next, &outputs[t]);
            if (!outputs[t]) return -1;
            /* the step's other results are dead for the forward: free those no backward reads */
            tg_tensor *live[TG_CELL_MAX_STATES + 1];
            for (int s = 0; s < S && sweep; s++) live[s] = state[s];
            live[S] = outputs[t];
            if (sweep && tg_tape_free_unsaved(mark, S + 1, live) == 0 && i == 0) sweep = *swept = false;
        }
        if (keep)
            for (int s = 0; s < S; s++) keep[s][t] = state[s];
    }
    return 0;
}

/* Validates the arguments of tg_rnn_forward before anything is allocated. */
/* torch's rank rule for hx: as many dimensions as x (3 batched, 2 unbatched), in its words. */
static bool init_ranks_ok(const tg_rnn *m, tg_tensor *const *init, int nd) {
    int S = m->cell->n_states;
    const char *what = nd == 3 ? "batched 3-D" : "unbatched 2-D";
    for (int s = 0; init && s < S; s++) {
        if (!init[s] || tg_ndim(init[s]) == nd) continue;
        if (S == 1)
            tg_error("tg_rnn_forward", "For %s input, hx should also be %d-D but got %d-D tensor", what, nd,
                     tg_ndim(init[s]));
        else if (S == 2 && init[0] && init[1])
            tg_error("tg_rnn_forward", "For %s input, hx and cx should also be %d-D but got (%d-D, %d-D) tensors", what,
                     nd, tg_ndim(init[0]), tg_ndim(init[1]));
        else
            tg_error("tg_rnn_forward", "For %s input, initial state %s0 should also be %d-D but got %d-D tensor", what,
                     state_name(m->cell, s), nd, tg_ndim(init[s]));
        return false;
    }
    return true;
}

static bool check_forward(const tg_rnn *m, const tg_tensor *x, const tg_rnn_forward_opts *o) {
    const char *fn = "tg_rnn_forward";
    if (!m) {
        if (!tg_error_pending()) tg_error(fn, "model is NULL");
        return false;
    }
    if (!x) {
        if (!tg_error_pending()) tg_error(fn, "x is NULL");
        return false;
    }
    char b1[128], b2[128];
    const char *layout = m->batch_first ? "[B,T,I]" : "[T,B,I]";
    if (tg_ndim(x) != 3) {
        tg_error(fn, "x %s: expected a 3-D tensor %s (or an unbatched 2-D [T,I])", tg_shape_str(x, b1, sizeof b1), layout);
        return false;
    }
    if (tg_dtype_of(x) != m->dtype) {
        tg_error(fn, "x %s is %s but the model is %s", tg_shape_str(x, b1, sizeof b1), tg_dtype_name(tg_dtype_of(x)),
                 tg_dtype_name(m->dtype));
        return false;
    }
    if (tg_dim(x, 2) != m->input_size) {
        tg_error(fn, "x %s: expected input size %lld (x is %s)", tg_shape_str(x, b1, sizeof b1),
                 (long long)m->input_size, layout);
        return false;
    }
    int64_t T = tg_dim(x, m->batch_first ? 1 : 0), B = tg_dim(x, m->batch_first ? 0 : 1);
    if (T == 0) { /* torch's words; an empty batch B = 0 runs (output [T,0,D·R], h_n [L·D,0,R]) */
        tg_error(fn, "x %s %s: Expected sequence length to be larger than 0 in RNN", tg_shape_str(x, b1, sizeof b1),
                 layout);
        return false;
    }
    if (o->lengths)
        for (int64_t b = 0; b < B; b++)
            if (o->lengths[b] < 1 || o->lengths[b] > T) {
                tg_error(fn, "x %s: lengths[%lld] = %lld outside 1..%lld", tg_shape_str(x, b1, sizeof b1),
                         (long long)b, (long long)o->lengths[b], (long long)T);
                return false;
            }
    int LD = m->num_layers * m->num_directions;
    if (!(o->zoneout_h >= 0 && o->zoneout_h <= 1 && o->zoneout_c >= 0 && o->zoneout_c <= 1)) {
        tg_error(fn, "zoneout_h %g, zoneout_c %g: each must be in [0, 1]", o->zoneout_h, o->zoneout_c);
        return false;
    }
    if (!init_ranks_ok(m, o->init, 3)) return false;
    for (int s = 0; o->init && s < m->cell->n_states; s++) {
        const tg_tensor *h0 = o->init[s];
        if (!h0) continue;
        int64_t W = s == 0 && m->proj_size ? m->proj_size : m->hidden_size;
        if (tg_ndim(h0) != 3 || tg_dim(h0, 0) != LD || tg_dim(h0, 1) != B || tg_dim(h0, 2) != W ||
            tg_dtype_of(h0) != m->dtype) {
            tg_error(fn, "initial state %s0 %s %s: expected [%d,%lld,%lld] %s (layers x directions, batch, %s)",
                     state_name(m->cell, s), tg_shape_str(h0, b2, sizeof b2), tg_dtype_name(tg_dtype_of(h0)), LD,
                     (long long)B, (long long)W, tg_dtype_name(m->dtype),
                     W == m->hidden_size ? "hidden" : "proj_size");
            return false;
        }
    }
    return true;
}

/* The initial value of state s for layer/direction k: given > learned > zeros. [B,R] (h) or [B,H],
 * tape-owned. */
static tg_tensor *initial_state(const run_ctx *c, const tg_rnn_forward_opts *o, int s, int k) {
    tg_tensor *zeros = s == 0 ? c->zeros_h : c->zeros;
    if (o->init && o->init[s]) return tg_select(o->init[s], k);
    if (c->m->init[s]) return tg_add(zeros, tg_select(c->m->init[s], k)); /* [R] or [H] broadcast over B */
    return zeros;
}

/* Builds the per-step masks when some sequence is shorter than T. Returns 0 or -1. */
static int make_masks(run_ctx *c, const int64_t *lengths) {
    c->n_active = tg_malloc((size_t)c->T * sizeof *c->n_active);
    if (!c->n_active) return -1;
    bool ragged = false;
    for (int64_t t = 0; t < c->T; t++) {
        c->n_active[t] = 0;
        for (int64_t b = 0; b < c->B; b++) c->n_active[t] += !lengths || t < lengths[b];
        ragged |= c->n_active[t] != c->B;
    }
    if (!ragged) return 0;
    c->keep_mask = tg_calloc((size_t)c->T, sizeof *c->keep_mask);
    c->hold_mask = tg_calloc((size_t)c->T, sizeof *c->hold_mask);
    if (!c->keep_mask || !c->hold_mask) return -1;
    for (int64_t t = 0; t < c->T; t++) {
        c->keep_mask[t] = tg_zeros(c->m->dtype, TG_SHAPE(c->B));
        c->hold_mask[t] = tg_zeros(c->m->dtype, TG_SHAPE(c->B));
        if (!c->keep_mask[t] || !c->hold_mask[t]) return -1;
        for (int64_t b = 0; b < c->B; b++) {
            tg_set(c->keep_mask[t], b, t < lengths[b] ? 1.0 : 0.0);
            tg_set(c->hold_mask[t], b, t < lengths[b] ? 0.0 : 1.0);
        }
    }
    return 0;
}

static void free_ctx(run_ctx *c) {
    for (int64_t t = 0; c->keep_mask && t < c->T; t++) tg_release(c->keep_mask[t]);
    for (int64_t t = 0; c->hold_mask && t < c->T; t++) tg_release(c->hold_mask[t]);
    free(c->keep_mask);
    free(c->hold_mask);
    free(c->n_active);
}

static tg_tensor *forward_batched(const tg_rnn *m, const tg_tensor *x, const tg_rnn_forward_opts *opts,
                                  tg_rnn_output *out) {
    const char *fn = "tg_rnn_forward";
    tg_rnn_forward_opts o = opts ? *opts : (tg_rnn_forward_opts){0};
    if (out) memset(out, 0, sizeof *out);
    if (!check_forward(m, x, &o)) return NULL;

    const tg_cell *cell = m->cell;
    int L = m->num_layers, D = m->num_directions, S = cell->n_states;
    int64_t H = m->hidden_size;
    run_ctx c = {.m = m, .train = o.train, .rng = o.rng ? o.rng : tg_default_rng()};
    c.zoneout[0] = o.zoneout_h;
    if (S > 1) c.zoneout[1] = o.zoneout_c;
    c.T = tg_dim(x, m->batch_first ? 1 : 0);
    c.B = tg_dim(x, m->batch_first ? 0 : 1);
    bool keep = o.keep_step_states && out;

    /* scratch: per-direction step outputs [D][T], final states [S][L·D], kept states [L·D·S][T] */
    size_t n_scratch = (size_t)(D * c.T + S * L * D + (keep ? L * D * S * c.T : 0));
    tg_tensor **scratch = tg_calloc(n_scratch, sizeof *scratch);
    tg_tensor ***keep_rows = keep ? tg_calloc((size_t)S, sizeof *keep_rows) : NULL;
    if (!scratch || (keep && !keep_rows) || make_masks(&c, o.lengths)) {
        if (!tg_error_pending()) tg_error(fn, "out of memory for T = %lld", (long long)c.T);
        goto fail;
    }
    tg_tensor **step_out = scratch, **finals = scratch + D * c.T, **kept = finals + S * L * D;
    if (keep) {
        out->step_states = tg_calloc((size_t)(L * D * S), sizeof *out->step_states);
        if (!out->step_states) { tg_error(fn, "out of memory"); goto fail; }
        out->n_step_states = L * D * S;
    }
    for (int w = 0; w < (m->proj_size ? 2 : 1); w++) {
        tg_tensor *z = tg_zeros(m->dtype, TG_SHAPE(c.B, w ? m->proj_size : H));
        tg_tensor *zt = tg_add_scalar(z, 0.0); /* a tape-owned copy: may be returned as a state or output */
        tg_release(z);
        if (!zt) goto fail;
        *(w ? &c.zeros_h : &c.zeros) = zt;
    }
    if (!m->proj_size) c.zeros_h = c.zeros;

    /* time-major from here on */
    const tg_tensor *input = m->batch_first ? tg_transpose(x, 0, 1) : x;
    tg_tensor *layer_out = NULL;
    for (int l = 0; l < L; l++) {
        tg_tensor *dir_out[2] = {NULL, NULL};
        for (int d = 0; d < D; d++) {
            int k = l * D + d;
            tg_tensor *state[TG_CELL_MAX_STATES];
            for (int s = 0; s < S; s++)
                if (!(state[s] = initial_state(&c, &o, s, k))) goto fail;
            for (int s = 0; keep && s < S; s++) keep_rows[s] = kept + (size_t)((k * S + s) * c.T);
            if (run_direction(&c, k, d == 1, input, step_out + d * c.T, state, keep ? keep_rows : NULL, &dir_out[d]))
                goto fail;                                                                             /* [T,B,R] */
            for (int s = 0; s < S; s++) finals[s * L * D + k] = state[s];
            for (int s = 0; keep && s < S; s++)
                if (!(out->step_states[k * S + s] = tg_stack((int)c.T, keep_rows[s]))) goto fail;   /* [T,B,H] */
        }
        layer_out = D == 2 ? tg_concat(2, dir_out, 2) : dir_out[0];                                    /* [T,B,D·R] */
        if (!layer_out) goto fail;
        /* dropout between layers, as PyTorch: on every layer's output but the last */
        input = l + 1 < L && m->dropout > 0 ? tg_dropout(layer_out, m->dropout, o.train, o.rng) : layer_out;
        if (!input) goto fail;
    }
    tg_tensor *output = m->batch_first ? tg_transpose(layer_out, 0, 1) : layer_out;
    if (!output) goto fail;
    if (out) {
        out->output = output;
        out->n_states = S;
        for (int s = 0; s < S; s++)
            if (!(out->final[s] = tg_stack(L * D, finals + s * L * D))) goto fail;                  /* [L·D,B,H] */
        out->h_n = out->final[0];
        out->c_n = S > 1 ? out->final[1] : NULL;
    }
    free(scratch);
    free(keep_rows);
    free_ctx(&c);
    return output;

fail:
    free(scratch);
    free(keep_rows);
    free_ctx(&c);
    tg_rnn_output_clear(out);
    return NULL;
}

/* torch's unbatched input: x [T,I] runs as a batch of one (torch's unsqueeze at the batch axis, so
 * batch_first does not matter), each initial state [L·D,W] as [L·D,1,W]; the batch axis is dropped
 * again from the output [T,D·W], the final states [L·D,W] and the kept step states [T,W]. */
tg_tensor *tg_rnn_forward(const tg_rnn *m, const tg_tensor *x, const tg_rnn_forward_opts *opts,
                          tg_rnn_output *out) {
    if (!m || !x || tg_ndim(x) != 2) return forward_batched(m, x, opts, out); /* it checks everything */
    if (tg_dim(x, 0) == 0) { /* before the batch of one is added, so the message shows the caller's x */
        char b[64];
        tg_error("tg_rnn_forward", "x %s [T,I]: Expected sequence length to be larger than 0 in RNN",
                 tg_shape_str(x, b, sizeof b));
        if (out) memset(out, 0, sizeof *out);
        return NULL;
    }
    if (out) memset(out, 0, sizeof *out);
    tg_rnn_forward_opts o = opts ? *opts : (tg_rnn_forward_opts){0};
    int S = m->cell->n_states;
    if (!init_ranks_ok(m, o.init, 2)) return NULL;
    tg_tensor *init[TG_CELL_MAX_STATES] = {0};
    for (int s = 0; o.init && s < S; s++)
        if (o.init[s] && !(init[s] = tg_reshape(o.init[s], TG_SHAPE(tg_dim(o.init[s], 0), 1, tg_dim(o.init[s], 1)))))
            return NULL;
    if (o.init) o.init = init;
    int64_t T = tg_dim(x, 0), I = tg_dim(x, 1);
    tg_tensor *xb = m->batch_first ? tg_reshape(x, TG_SHAPE(1, T, I)) : tg_reshape(x, TG_SHAPE(T, 1, I));
    tg_rnn_output full;
    tg_tensor *y = xb ? forward_batched(m, xb, &o, &full) : NULL;
    if (!y) return NULL;
    y = tg_reshape(y, TG_SHAPE(T, tg_dim(y, 2)));
    bool ok = y != NULL;
    for (int s = 0; s < S; s++)
        ok &= (full.final[s] = tg_reshape(full.final[s], TG_SHAPE(tg_dim(full.final[s], 0), tg_dim(full.final[s], 2)))) != NULL;
    for (int k = 0; k < full.n_step_states; k++)
        ok &= (full.step_states[k] = tg_reshape(full.step_states[k], TG_SHAPE(T, tg_dim(full.step_states[k], 2)))) != NULL;
    full.output = y;
    full.h_n = full.final[0];
    full.c_n = S > 1 ? full.final[1] : NULL;
    if (!ok || !out) tg_rnn_output_clear(&full);
    else *out = full;
    return ok ? y : NULL;
}

void tg_rnn_output_clear(tg_rnn_output *out) {
    if (!out) return;
    free(out->step_states);
    memset(out, 0, sizeof *out);
}

tg_tensor *tg_rnn_step_state(const tg_rnn_output *out, const tg_rnn *m, int layer, int direction, int state) {
    if (!out || !m || !out->step_states || layer < 0 || layer >= m->num_layers || direction < 0 ||
        direction >= m->num_directions || state < 0 || state >= m->cell->n_states)
        return NULL;
    return out->step_states[(layer * m->num_directions + direction) * m->cell->n_states + state];
}

/* ---- truncated BPTT ------------------------------------------------------------------------------- */

int tg_rnn_carry_update(tg_rnn_carry *carry, const tg_rnn_output *out) {
    const char *fn = "tg_rnn_carry_update";
    if (!carry || !out || out->n_states < 1) {
        if (!tg_error_pending()) tg_error(fn, "%s", !carry ? "carry is NULL" : "no final states (forward failed?)");
        return -1;
    }
    tg_tensor *fresh[TG_CELL_MAX_STATES] = {0};
    for (int s = 0; s < out->n_states; s++)
        if (!(fresh[s] = tg_detach(out->final[s]))) {
            for (int r = 0; r < s; r++) tg_release(fresh[r]);
            return -1;
        }
    tg_rnn_carry_clear(carry);
    for (int s = 0; s < out->n_states; s++) carry->state[s] = fresh[s];
    carry->n_states = out->n_states;
    return 0;
}

void tg_rnn_carry_clear(tg_rnn_carry *carry) {
    if (!carry) return;
    for (int s = 0; s < TG_CELL_MAX_STATES; s++) tg_release(carry->state[s]);
    memset(carry, 0, sizeof *carry);
}
