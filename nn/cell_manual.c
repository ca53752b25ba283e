/* nn/cell_manual.c - BPTT with the user's own hand-derived step (tg_cell.manual, <tapegrad/compare.h>):
 * the hook's forward over T steps and L layers, keeping one cache per step, then its backward in reverse
 * time and reverse layer order. No tape: every tensor here is a plain new ref.
 *
 * Dimension letters: T time steps, B batch, I input size (I_k of layer k: I, then H), H hidden size,
 * S state tensors of the cell, L layers.
 *
 *   forward, layer k, step t:   (s_1..s_S)_t = hook.forward(x_t^k, (s_1..s_S)_{t-1}),  y_t^k = h_t
 *   backward, layer k, step t:  ds_t[h] += dy_t^k (the output of step t is its h);
 *                               (dx_t^k, ds_{t-1}) = hook.backward(cache_t, ds_t),  dy^{k-1} = dx^k */
#include <tapegrad/autograd.h>
#include <tapegrad/compare.h>
#include <tapegrad/nn.h>
#include "tensor/alloc.h"

#include <stdlib.h>
#include <string.h>

#define FN "tg_cell_manual_bptt"

static const char *const g_std_names[4] = {"weight_ih", "weight_hh", "bias_ih", "bias_hh"};

void tg_cell_manual_result_clear(tg_cell_manual_result *r) {
    if (!r) return;
    tg_release(r->y);
    tg_release(r->dx);
    for (int s = 0; s < TG_CELL_MAX_STATES; s++) { tg_release(r->final[s]); tg_release(r->dinit[s]); }
    tg_params_free(r->grads);
    memset(r, 0, sizeof *r);
}

/* The tensors of one layer's parameters (or their gradients) as an array: 4 standard, then extras. */
static tg_tensor **param_slot(tg_cell_params *p, int i) {
    tg_tensor **std[4] = {&p->weight_ih, &p->weight_hh, &p->bias_ih, &p->bias_hh};
    return i < 4 ? std[i] : &p->extra[i - 4];
}

/* Checks that a hook returned S tensors [B, w] in the model's dtype. Returns 0 or -1 (message). */
static int returned_ok(const tg_rnn *m, const char *what, const char *label, int layer, int64_t t,
                       tg_tensor *const *ts, int n, int64_t B, const int64_t *width) {
    for (int s = 0; s < n; s++) {
        const tg_tensor *v = ts[s];
        if (v && tg_ndim(v) == 2 && tg_dim(v, 0) == B && tg_dim(v, 1) == width[s] && tg_dtype_of(v) == m->dtype) continue;
        char b[64];
        if (!v && tg_error_pending()) return -1;
        tg_error(FN, "cell '%s': the manual %s at layer %d, step %lld returned %s[%d] as %s, expected [%lld,%lld] %s",
                 m->cell->name, what, layer, (long long)t, label, s,
                 v ? tg_shape_str(v, b, sizeof b) : "NULL", (long long)B, (long long)width[s], tg_dtype_name(m->dtype));
        return -1;
    }
    return 0;
}

static bool check_args(const tg_rnn *m, const tg_tensor *x, tg_tensor *const *init, const tg_tensor *dy,
                       tg_tensor *const *dfinal) {
    if (!m || !x) {
        if (!tg_error_pending()) tg_error(FN, "%s is NULL", !m ? "model" : "x");
        return false;
    }
    const tg_cell_manual *hk = m->cell->manual;
    if (!hk || !hk->forward || !hk->backward) {
        tg_error(FN, "cell '%s' has no manual hook (cell->manual with forward and backward)", m->cell->name);
        return false;
    }
    if (m->proj_size) {
        tg_error(FN, "cell '%s': a manual hook sees [B,H] states; a model with proj_size %lld is checked against "
                 "tg_manual_stack_* instead", m->cell->name, (long long)m->proj_size);
        return false;
    }
    if (m->num_directions != 1 || m->batch_first) {
        tg_error(FN, "cell '%s': only one direction, time-major (the model is %s%s)", m->cell->name,
                 m->num_directions == 2 ? "bidirectional" : "", m->batch_first ? " batch-first" : "");
        return false;
    }
    char b1[64];
    int64_t H = m->hidden_size, L = m->num_layers;
    if (tg_ndim(x) != 3 || tg_dim(x, 2) != m->input_size || tg_dim(x, 0) < 1 || tg_dim(x, 1) < 1 ||
        tg_dtype_of(x) != m->dtype) {
        tg_error(FN, "x %s %s: expected [T,B,%lld] %s", tg_shape_str(x, b1, sizeof b1), tg_dtype_name(tg_dtype_of(x)),
                 (long long)m->input_size, tg_dtype_name(m->dtype));
        return false;
    }
    int64_t T = tg_dim(x, 0), B = tg_dim(x, 1);
    int64_t sT[3] = {T, B, H}, sL[3] = {L, B, H};
    const tg_tensor *given[1 + 2 * TG_CELL_MAX_STATES];
    const int64_t *want[1 + 2 * TG_CELL_MAX_STATES];
    const char *what[1 + 2 * TG_CELL_MAX_STATES];
    int n = 0;
    given[n] = dy; want[n] = sT; what[n++] = "dy";
    for (int s = 0; s < m->cell->n_states; s++) {
        given[n] = init ? init[s] : NULL; want[n] = sL; what[n++] = "initial state";
        given[n] = dfinal ? dfinal[s] : NULL; want[n] = sL; what[n++] = "dfinal";
    }
    for (int i = 0; i < n; i++) {
        const tg_tensor *v = given[i];
        if (!v) continue;
        if (tg_ndim(v) == 3 && tg_dim(v, 0) == want[i][0] && tg_dim(v, 1) == want[i][1] && tg_dim(v, 2) == want[i][2] &&
            tg_dtype_of(v) == m->dtype)
            continue;
        tg_error(FN, "%s %s: expected [%lld,%lld,%lld] %s", what[i], tg_shape_str(v, b1, sizeof b1), (long long)want[i][0],
                 (long long)want[i][1], (long long)want[i][2], tg_dtype_name(m->dtype));
        return false;
    }
    return true;
}

/* [B, w] new ref: row block `index` of t (a [N, B, w] tensor), copied; zeros when t is NULL */
static tg_tensor *copy_row(const tg_rnn *m, const tg_tensor *t, int64_t index, int64_t B, int64_t w) {
    if (!t) return tg_zeros(m->dtype, TG_SHAPE(B, w));
    tg_tensor *v = tg_view_at(t, index), *c = v ? tg_copy(v) : NULL;
    tg_release(v);
    return c;
}

/* dst[index] = src (dst [N, ...], src shaped like dst[index]). Returns 0 or -1. */
static int store_row(tg_tensor *dst, int64_t index, const tg_tensor *src) {
    tg_tensor *v = tg_view_at(dst, index);
    int rc = v ? tg_copy_(v, src) : -1;
    tg_release(v);
    return rc;
}

/* One layer's zero gradients, shaped like its parameters. Returns 0 or -1. */
static int zero_grads(const tg_cell_params *p, int n_param, tg_cell_params *g) {
    memset(g, 0, sizeof *g);
    g->input_size = p->input_size;
    g->hidden_size = p->hidden_size;
    for (int i = 0; i < n_param; i++) {
        const tg_tensor *v = *param_slot((tg_cell_params *)p, i);
        if (v && !(*param_slot(g, i) = tg_zeros_like(v))) return -1;
    }
    return 0;
}

/* Files layer k's gradients in out->grads under the parameter names ("weight_ih_l0", ...); the list
 * takes the references. */
static int file_grads(const tg_rnn *m, int k, tg_cell_params *g, int n_param, tg_params *out) {
    int rc = 0;
    for (int i = 0; i < n_param; i++) {
        tg_tensor **slot = param_slot(g, i);
        if (!*slot) continue;
        char name[128];
        snprintf(name, sizeof name, "%s_l%d", i < 4 ? g_std_names[i] : m->cell->extra_names[i - 4], k);
        if (rc == 0 && tg_params_add(out, name, *slot)) rc = -1;
        tg_release(*slot);
        *slot = NULL;
    }
    return rc;
}

int tg_cell_manual_bptt(const tg_rnn *m, const tg_tensor *x, tg_tensor *const *init, const tg_tensor *dy,
                        tg_tensor *const *dfinal, tg_cell_manual_result *out) {
    if (out) memset(out, 0, sizeof *out);
    if (!out) { tg_error(FN, "out is NULL"); return -1; }
    if (!check_args(m, x, init, dy, dfinal)) return -1;
    const tg_cell *cell = m->cell;
    const tg_cell_manual *hk = cell->manual;
    int L = m->num_layers, S = cell->n_states, n_param = 4 + cell->n_extra;
    int64_t T = tg_dim(x, 0), B = tg_dim(x, 1), H = m->hidden_size;
    int64_t widths[TG_CELL_MAX_STATES];
    for (int s = 0; s < S; s++) widths[s] = H;
    void **caches = tg_calloc((size_t)(L * T), sizeof *caches);
    tg_tensor **ys = tg_calloc((size_t)L, sizeof *ys); /* [T,B,H] outputs per layer */
    tg_tensor *state[TG_CELL_MAX_STATES] = {0}, *next[TG_CELL_MAX_STATES] = {0}, *x_t = NULL, *dx_t = NULL;
    tg_tensor *d_below = NULL; /* dx of the layer being differentiated: dy of the layer below */
    tg_cell_params g;
    memset(&g, 0, sizeof g);
    int rc = -1;
    out->grads = tg_params_new();
    if (!caches || !ys || !out->grads) { tg_error(FN, "out of memory for T = %lld, L = %d", (long long)T, L); goto done; }
    for (int s = 0; s < S; s++)
        if (!(out->final[s] = tg_zeros(m->dtype, TG_SHAPE(L, B, H))) || !(out->dinit[s] = tg_zeros(m->dtype, TG_SHAPE(L, B, H))))
            goto done;

    tg_no_grad_begin(); /* whatever the hook does, nothing is recorded */
    for (int k = 0; k < L; k++) {
        const tg_cell_params *p = &m->layers[k];
        const tg_tensor *in = k == 0 ? x : ys[k - 1];
        int64_t I_k = p->input_size;
        if (!(ys[k] = tg_zeros(m->dtype, TG_SHAPE(T, B, H)))) goto fwd_fail;
        for (int s = 0; s < S; s++)
            if (!(state[s] = copy_row(m, init ? init[s] : NULL, k, B, H))) goto fwd_fail;
        for (int64_t t = 0; t < T; t++) {
            if (!(x_t = copy_row(m, in, t, B, I_k))) goto fwd_fail;
            memset(next, 0, sizeof next);
            if (hk->forward(cell, p, x_t, state, next, &caches[k * T + t]) != 0) {
                if (!tg_error_pending())
                    tg_error(FN, "cell '%s': the manual forward failed at layer %d, step %lld", cell->name, k, (long long)t);
                goto fwd_fail;
            }
            if (returned_ok(m, "forward", "state_out", k, t, next, S, B, widths)) goto fwd_fail;
            if (store_row(ys[k], t, next[0])) goto fwd_fail;
            for (int s = 0; s < S; s++) { tg_release(state[s]); state[s] = next[s]; next[s] = NULL; }
            tg_release(x_t);
            x_t = NULL;
        }
        for (int s = 0; s < S; s++) {
            tg_tensor *v = tg_view_at(out->final[s], k);
            int c = v ? tg_copy_(v, state[s]) : -1;
            tg_release(v);
            tg_release(state[s]);
            state[s] = NULL;
            if (c) goto fwd_fail;
        }
    }
    tg_no_grad_end();

    tg_no_grad_begin();
    for (int k = L - 1; k >= 0; k--) {
        const tg_cell_params *p = &m->layers[k];
        int64_t I_k = p->input_size;
        const tg_tensor *d_out = k == L - 1 ? dy : d_below; /* ∂loss/∂y^k [T,B,H] (NULL: zero) */
        tg_tensor *d_in = tg_zeros(m->dtype, TG_SHAPE(T, B, I_k));
        if (!d_in || zero_grads(p, n_param, &g)) { tg_release(d_in); goto fwd_fail; }
        for (int s = 0; s < S; s++)
            if (!(state[s] = copy_row(m, dfinal ? dfinal[s] : NULL, k, B, H))) { tg_release(d_in); goto fwd_fail; }
        for (int64_t t = T - 1; t >= 0; t--) {
            if (d_out) { /* ds_t[h] += dy_t */
                tg_tensor *v = tg_view_at(d_out, t);
                if (!v) { tg_release(d_in); goto fwd_fail; }
                tg_axpy_(state[0], 1.0, v);
                tg_release(v);
            }
            memset(next, 0, sizeof next);
            dx_t = NULL;
            if (hk->backward(cell, p, caches[k * T + t], state, &dx_t, next, &g) != 0) {
                if (!tg_error_pending())
                    tg_error(FN, "cell '%s': the manual backward failed at layer %d, step %lld", cell->name, k, (long long)t);
                tg_release(d_in);
                goto fwd_fail;
            }
            int64_t wx = I_k;
            if (returned_ok(m, "backward", "dx", k, t, &dx_t, 1, B, &wx) ||
                returned_ok(m, "backward", "d_in", k, t, next, S, B, widths) ||
                store_row(d_in, t, dx_t)) {
                tg_release(d_in);
                goto fwd_fail;
            }
            tg_release(dx_t);
            dx_t = NULL;
            for (int s = 0; s < S; s++) { tg_release(state[s]); state[s] = next[s]; next[s] = NULL; }
        }
        for (int s = 0; s < S; s++) {
            int c = store_row(out->dinit[s], k, state[s]);
            tg_release(state[s]);
            state[s] = NULL;
            if (c) { tg_release(d_in); goto fwd_fail; }
        }
        if (file_grads(m, k, &g, n_param, out->grads)) { tg_release(d_in); goto fwd_fail; }
        tg_release(d_below);
        d_below = d_in;
    }
    tg_no_grad_end();
    out->dx = d_below;
    d_below = NULL;
    out->y = ys[L - 1];
    ys[L - 1] = NULL;
    rc = 0;
    goto done;

fwd_fail:
    tg_no_grad_end();
done:
    for (int i = 0; caches && i < L * T; i++)
        if (caches[i]) (hk->free_cache ? hk->free_cache : free)(caches[i]);
    free(caches);
    for (int k = 0; ys && k < L; k++) tg_release(ys[k]);
    free(ys);
    for (int s = 0; s < TG_CELL_MAX_STATES; s++) { tg_release(state[s]); tg_release(next[s]); }
    for (int i = 0; i < n_param; i++) tg_release(*param_slot(&g, i));
    tg_release(x_t);
    tg_release(dx_t);
    tg_release(d_below);
    if (rc) tg_cell_manual_result_clear(out);
    return rc;
}
