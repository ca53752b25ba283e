/* nn/cellmod.c - cell modules (torch.nn.RNNCell / LSTMCell / GRUCell): one step of any tg_cell on
 * [B,I] or unbatched [I], with torch's shape rules and messages. The step is the cell's own step
 * function (the runner's), on x·W_ihᵀ + b_ih; the tape differentiates it.
 *
 * Dimension letters: B batch, I input size, H hidden size, G gates, S state tensors of the cell. */
#include <tapegrad/cellmod.h>
#include <tapegrad/autograd.h>
#include <tapegrad/ops.h>
#include "nn/cells_internal.h"
#include "tensor/alloc.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* torch's class for the standard cells (its messages start with it); other cells go by their name */
static const char *torch_name(const tg_cell *cell) {
    static const struct { const char *cell, *torch; } names[] = {
        {"rnn_tanh", "RNNCell"}, {"rnn_relu", "RNNCell"}, {"lstm", "LSTMCell"}, {"gru", "GRUCell"},
    };
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        if (strcmp(cell->name, names[i].cell) == 0) return names[i].torch;
    return cell->name;
}

tg_cellmod *tg_cellmod_new(const tg_cell *cell, const tg_cellmod_config *cfg, tg_rng *rng) {
    const char *fn = "tg_cellmod_new";
    if (!cell || !cfg) {
        if (!tg_error_pending()) tg_error(fn, "%s is NULL", !cell ? "cell" : "config");
        return NULL;
    }
    if (!cell->name || !cell->step || cell->gates <= 0 || cell->n_states < 1 || cell->n_states > TG_CELL_MAX_STATES ||
        cell->n_extra < 0 || cell->n_extra > TG_CELL_MAX_EXTRA || (cell->n_extra && !cell->extra_names)) {
        tg_error(fn, "cell '%s' is malformed (%d gates, %d states, %d extra parameters)",
                 cell->name ? cell->name : "?", cell->gates, cell->n_states, cell->n_extra);
        return NULL;
    }
    if (cfg->input_size <= 0 || cfg->hidden_size <= 0) {
        tg_error(fn, "%s: input size %lld, hidden size %lld: both must be positive", torch_name(cell),
                 (long long)cfg->input_size, (long long)cfg->hidden_size);
        return NULL;
    }
    if (cfg->dtype != TG_F32 && cfg->dtype != TG_F64) {
        tg_error(fn, "unknown dtype %d (TG_F32 or TG_F64)", (int)cfg->dtype);
        return NULL;
    }
    tg_cellmod *m = tg_calloc(1, sizeof *m);
    if (!m || !(m->params = tg_params_new())) {
        tg_error(fn, "out of memory");
        free(m);
        return NULL;
    }
    m->cell = cell;
    m->torch_name = torch_name(cell);
    m->input_size = cfg->input_size;
    m->hidden_size = cfg->hidden_size;
    m->bias = !cfg->no_bias;
    m->dtype = cfg->dtype;
    tg_cell_make_params_fn make = cell->make_params ? cell->make_params : tg_cell_standard_params;
    tg_cell_params fresh;
    memset(&fresh, 0, sizeof fresh);
    const char *caller = tg__params_caller_set(fn); /* the cells' messages name tg_cellmod_new */
    int failed = make(cell, m->input_size, m->hidden_size, m->bias, m->dtype, rng ? rng : tg_default_rng(), &fresh);
    tg__params_caller_set(caller);
    if (failed) {
        if (!tg_error_pending()) tg_error(fn, "cell '%s': make_params failed", cell->name);
        tg_cellmod_free(m);
        return NULL;
    }
    /* torch's names; the list takes a reference to each (even after a failure, so none leaks). As in
     * the runner, a cell may leave out its biases or extras (lstm_ln has LN shifts instead of biases). */
    tg_tensor *const made[4] = {fresh.weight_ih, fresh.weight_hh, fresh.bias_ih, fresh.bias_hh};
    static const char *const names[4] = {"weight_ih", "weight_hh", "bias_ih", "bias_hh"};
    bool ok = fresh.weight_ih && fresh.weight_hh;
    for (int i = 0; i < 4; i++)
        if (made[i]) ok &= tg_params_add(m->params, names[i], made[i]) == 0;
    for (int e = 0; e < cell->n_extra; e++) {
        if (fresh.extra[e]) ok &= tg_params_add(m->params, cell->extra_names[e], fresh.extra[e]) == 0;
        m->p.extra[e] = fresh.extra[e];
    }
    for (int i = 0; i < 4; i++) tg_release(made[i]);
    for (int e = 0; e < cell->n_extra; e++) tg_release(fresh.extra[e]);
    if (!ok) {
        if (!tg_error_pending()) tg_error(fn, "cell '%s': make_params gave no weight_ih/weight_hh", cell->name);
        tg_cellmod_free(m);
        return NULL;
    }
    m->p.input_size = m->input_size;
    m->p.hidden_size = m->hidden_size;
    m->p.weight_ih = fresh.weight_ih;
    m->p.weight_hh = fresh.weight_hh;
    m->p.bias_ih = fresh.bias_ih;
    m->p.bias_hh = fresh.bias_hh;
    tg_params_set_requires_grad(m->params, true);
    return m;
}

void tg_cellmod_free(tg_cellmod *m) {
    if (!m) return;
    tg_params_free(m->params);
    free(m);
}

/* hx[s]'s name in torch's rank message: LSTMCell's tuple hx[0], hx[1]; one-state cells "hidden" */
static void hx_label(const tg_cellmod *m, int s, char *buf, size_t size) {
    if (m->cell->n_states == 1) snprintf(buf, size, "hidden");
    else snprintf(buf, size, "hx[%d]", s);
}

/* torch's checks, in its order: x's rank and input size, then each hx's rank, batch, hidden size. */
static bool check_step(const tg_cellmod *m, const tg_tensor *x, tg_tensor *const *hx) {
    const char *fn = "tg_cellmod_forward";
    char b1[96], b2[96];
    int nd = tg_ndim(x);
    if (nd != 1 && nd != 2) {
        tg_error(fn, "%s: Expected input to be 1-D or 2-D but received %d-D tensor (x %s)", m->torch_name, nd,
                 tg_shape_str(x, b1, sizeof b1));
        return false;
    }
    if (tg_dtype_of(x) != m->dtype) {
        tg_error(fn, "x is %s but the cell is %s", tg_dtype_name(tg_dtype_of(x)), tg_dtype_name(m->dtype));
        return false;
    }
    if (tg_dim(x, nd - 1) != m->input_size) {
        tg_error(fn, "input has inconsistent input_size: got %lld expected %lld", (long long)tg_dim(x, nd - 1),
                 (long long)m->input_size);
        return false;
    }
    int64_t B = nd == 2 ? tg_dim(x, 0) : 1; /* 0 is a batch too: torch returns [0,H] */
    for (int s = 0; hx && s < m->cell->n_states; s++) {
        const tg_tensor *h = hx[s];
        if (!h) continue;
        int hd = tg_ndim(h);
        if (hd != nd) {
            hx_label(m, s, b2, sizeof b2);
            tg_error(fn, "%s: Expected %s to be %dD (%s input), got %dD instead (%s)", m->torch_name, b2, nd,
                     nd == 1 ? "unbatched" : "batched", hd, tg_shape_str(h, b1, sizeof b1));
            return false;
        }
        if (tg_dtype_of(h) != m->dtype) {
            hx_label(m, s, b2, sizeof b2);
            tg_error(fn, "%s is %s but the cell is %s", b2, tg_dtype_name(tg_dtype_of(h)), tg_dtype_name(m->dtype));
            return false;
        }
        if (nd == 2 && tg_dim(h, 0) != B) {
            tg_error(fn, "Input batch size %lld doesn't match hidden%d batch size %lld", (long long)B, s,
                     (long long)tg_dim(h, 0));
            return false;
        }
        if (tg_dim(h, nd - 1) != m->hidden_size) {
            tg_error(fn, "hidden%d has inconsistent hidden_size: got %lld, expected %lld", s,
                     (long long)tg_dim(h, nd - 1), (long long)m->hidden_size);
            return false;
        }
    }
    return true;
}

int tg_cellmod_forward(const tg_cellmod *m, const tg_tensor *x, tg_tensor *const *hx, tg_tensor **out) {
    const char *fn = "tg_cellmod_forward";
    if (!m || !x || !out) {
        if (!tg_error_pending()) tg_error(fn, "%s is NULL", !m ? "the cell module" : !x ? "x" : "out");
        return -1;
    }
    if (!check_step(m, x, hx)) return -1;
    const tg_cell *cell = m->cell;
    int S = cell->n_states;
    bool unbatched = tg_ndim(x) == 1;
    int64_t B = unbatched ? 1 : tg_dim(x, 0), H = m->hidden_size;
    /* unbatched: x [I] -> [1,I], hx [H] -> [1,H] (torch's unsqueeze(0)), and back at the end */
    const tg_tensor *xb = unbatched ? tg_reshape(x, TG_SHAPE(1, m->input_size)) : x;
    tg_tensor *state[TG_CELL_MAX_STATES] = {0}, *next[TG_CELL_MAX_STATES] = {0};
    tg_tensor *zeros = NULL;
    for (int s = 0; s < S; s++) {
        if (hx && hx[s]) {
            state[s] = unbatched ? tg_reshape(hx[s], TG_SHAPE(1, H)) : hx[s];
        } else {
            if (!zeros) { /* a tape-owned copy, like the runner's: a step may return it as a state */
                tg_tensor *z = tg_zeros(m->dtype, TG_SHAPE(B, H));
                zeros = tg_add_scalar(z, 0.0);
                tg_release(z);
            }
            state[s] = zeros;
        }
        if (!state[s]) return -1;
    }
    tg_tensor *xproj = tg_linear(xb, m->p.weight_ih, m->p.bias_ih); /* [B, G·H] */
    if (!xb || !xproj) return -1;
    if (cell->step(cell, &m->p, cell->needs_input ? xb : NULL, xproj, state, next)) {
        if (!tg_error_pending()) tg_error(fn, "cell '%s' failed without a message", cell->name);
        return -1;
    }
    for (int s = 0; s < S; s++) {
        char b1[64];
        if (!next[s]) return -1;
        if (tg_ndim(next[s]) != 2 || tg_dim(next[s], 0) != B || tg_dim(next[s], 1) != H) {
            tg_error(fn, "cell '%s' returned state %d as %s, expected [%lld,%lld]", cell->name, s,
                     tg_shape_str(next[s], b1, sizeof b1), (long long)B, (long long)H);
            return -1;
        }
        if (unbatched && !(next[s] = tg_reshape(next[s], TG_SHAPE(H)))) return -1;
    }
    for (int s = 0; s < S; s++) out[s] = next[s];
    return 0;
}
