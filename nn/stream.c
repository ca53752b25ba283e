/* nn/stream.c - streaming inference (<tapegrad/stream.h>): step t of tg_rnn_forward for B rows at a
 * time, state carried between calls, no tape.
 *
 * Dimension letters: B rows, I input size (I_k of layer k: I, then H), H hidden size, G gates,
 * S states of the cell, L layers, O head outputs.
 *
 * One step, per layer k (as the runner's time loop, evaluation mode):
 *     xproj = x_k·W_ihᵀ + b_ih            [B, G·H]   (the runner does this for all T at once)
 *     s'    = cell->step(x_k, xproj, s)   S × [B, H]
 *     x_{k+1} = h'                        then the head: y = h_L·Wᵀ + b  [B, O]
 * The states live in stream-owned [L,B,H] tensors; the cell sees zero-copy views of layer k. Every
 * intermediate is a no-grad op result released by tg_tape_reset at the end of the step, back into the
 * thread's pools (tensor/tensor.c), so the steady state allocates nothing. */
#include <tapegrad/autograd.h>
#include <tapegrad/ops.h>
#include <tapegrad/stream.h>
#include "tensor/alloc.h"

#include <stdlib.h>
#include <string.h>

struct tg_rnn_stream {
    const tg_rnn *m;
    const tg_linear_layer *head;                      /* NULL: output = top h */
    int64_t B;
    int L, S;
    tg_tensor *state[TG_CELL_MAX_STATES];             /* [L, B, H] each, owned */
    tg_tensor **view;                                 /* [L·S] views [B, H] of state[s] layer k, at k·S + s */
    tg_tensor *out;                                   /* [B, O] or [B, H], owned */
    int64_t steps;
    double zoneout[TG_CELL_MAX_STATES];               /* evaluation zoneout per state (0: off) */
};

void tg_rnn_stream_free(tg_rnn_stream *s) {
    if (!s) return;
    for (int i = 0; s->view && i < s->L * s->S; i++) tg_release(s->view[i]);
    free(s->view);
    for (int i = 0; i < TG_CELL_MAX_STATES; i++) tg_release(s->state[i]);
    tg_release(s->out);
    free(s);
}

/* Row b of every layer's state to its initial value: the learned init (m->init[st] [L, H]) or 0. */
static int reset_rows(tg_rnn_stream *s, int64_t b0, int64_t b1) {
    const tg_rnn *m = s->m;
    for (int st = 0; st < s->S; st++)
        for (int k = 0; k < s->L; k++) {
            tg_tensor *layer = s->view[k * s->S + st];
            for (int64_t b = b0; b < b1; b++) {
                tg_tensor *row = tg_view_at(layer, b), *init = m->init[st] ? tg_view_at(m->init[st], k) : NULL;
                int rc = !row || (m->init[st] && !init) ? -1 : 0;
                if (rc == 0) {
                    if (init) rc = tg_copy_(row, init);
                    else tg_zero_(row);
                }
                tg_release(row);
                tg_release(init);
                if (rc) return -1;
            }
        }
    return 0;
}

int tg_rnn_stream_reset(tg_rnn_stream *s) {
    if (!s) { tg_error("tg_rnn_stream_reset", "stream is NULL"); return -1; }
    s->steps = 0;
    return reset_rows(s, 0, s->B);
}

int tg_rnn_stream_reset_row(tg_rnn_stream *s, int64_t b) {
    if (!s || b < 0 || b >= s->B) {
        if (!s) tg_error("tg_rnn_stream_reset_row", "stream is NULL");
        else tg_error("tg_rnn_stream_reset_row", "row %lld out of range (the stream has %lld rows)", (long long)b, (long long)s->B);
        return -1;
    }
    return reset_rows(s, b, b + 1);
}

tg_tensor *tg_rnn_stream_state(const tg_rnn_stream *s, int state) {
    if (!s || state < 0 || state >= s->S) {
        tg_error("tg_rnn_stream_state", "state %d out of range (the cell has %d)", state, s ? s->S : 0);
        return NULL;
    }
    return s->state[state];
}

int64_t tg_rnn_stream_steps(const tg_rnn_stream *s) { return s ? s->steps : 0; }

static int warm_up(tg_rnn_stream *s);

int tg_rnn_stream_set_zoneout(tg_rnn_stream *s, double zoneout_h, double zoneout_c) {
    if (!s || !(zoneout_h >= 0 && zoneout_h <= 1 && zoneout_c >= 0 && zoneout_c <= 1)) {
        if (!s) tg_error("tg_rnn_stream_set_zoneout", "stream is NULL");
        else tg_error("tg_rnn_stream_set_zoneout", "zoneout_h %g, zoneout_c %g: each must be in [0, 1]", zoneout_h, zoneout_c);
        return -1;
    }
    s->zoneout[0] = zoneout_h;
    if (s->S > 1) s->zoneout[1] = zoneout_c;
    return warm_up(s);
}

/* The step proper, on the tape (no-grad); the caller resets the tape. Returns the output (tape-owned). */
static const tg_tensor *step_layers(tg_rnn_stream *s, const tg_tensor *x_t) {
    const tg_rnn *m = s->m;
    const tg_cell *cell = m->cell;
    const tg_tensor *in = x_t;
    for (int k = 0; k < s->L; k++) {
        const tg_cell_params *p = &m->layers[k];
        tg_tensor *const *state = s->view + k * s->S;
        tg_tensor *next[TG_CELL_MAX_STATES] = {0};
        tg_tensor *xproj = tg_linear(in, p->weight_ih, p->bias_ih);
        if (!xproj) return NULL;
        if (cell->step(cell, p, cell->needs_input ? in : NULL, xproj, state, next)) {
            if (!tg_error_pending()) tg_error("tg_rnn_stream_step", "cell '%s' failed at layer %d without a message", cell->name, k);
            return NULL;
        }
        for (int st = 0; st < s->S; st++)
            if (!next[st] || !tg_same_shape(next[st], state[st])) {
                char b1[64];
                if (!next[st] && tg_error_pending()) return NULL;
                tg_error("tg_rnn_stream_step", "cell '%s' returned state %d as %s at layer %d, expected [%lld,%lld]",
                         cell->name, st, next[st] ? tg_shape_str(next[st], b1, sizeof b1) : "NULL", k,
                         (long long)s->B, (long long)tg_dim(state[st], 1));
                return NULL;
            }
        /* zoneout in evaluation, as the runner's: s' = z s + (1 - z) s~ (the zoned h is the output too) */
        for (int st = 0; st < s->S; st++)
            if (s->zoneout[st] > 0 &&
                !(next[st] = tg_add(tg_mul_scalar(state[st], s->zoneout[st]), tg_mul_scalar(next[st], 1.0 - s->zoneout[st]))))
                return NULL;
        for (int st = 0; st < s->S; st++)
            if (tg_copy_(state[st], next[st])) return NULL;
        in = next[0];
    }
    return s->head ? tg_linear_layer_forward(s->head, in) : in;
}

const tg_tensor *tg_rnn_stream_step(tg_rnn_stream *s, const tg_tensor *x_t) {
    const char *fn = "tg_rnn_stream_step";
    if (!s || !x_t) {
        if (!tg_error_pending()) tg_error(fn, "%s is NULL", !s ? "stream" : "x_t");
        return NULL;
    }
    const tg_rnn *m = s->m;
    char b1[64];
    if (tg_ndim(x_t) != 2 || tg_dim(x_t, 0) != s->B || tg_dim(x_t, 1) != m->input_size || tg_dtype_of(x_t) != m->dtype) {
        tg_error(fn, "x_t %s %s: expected [%lld,%lld] %s (rows, input size)", tg_shape_str(x_t, b1, sizeof b1),
                 tg_dtype_name(tg_dtype_of(x_t)), (long long)s->B, (long long)m->input_size, tg_dtype_name(m->dtype));
        return NULL;
    }
    if (tg_tape_tensors() || tg_tape_records()) {
        tg_error(fn, "the tape holds %zu tensors and %zu records: a stream step clears the tape, so call it "
                 "after tg_tape_reset (not in the middle of a training step)", tg_tape_tensors(), tg_tape_records());
        return NULL;
    }
    tg_no_grad_begin();
    const tg_tensor *y = step_layers(s, x_t);
    int rc = y ? tg_copy_(s->out, y) : -1;
    tg_no_grad_end();
    tg_tape_reset();
    if (rc) return NULL;
    s->steps++;
    return s->out;
}

/* One step on zeros fills this thread's pools with what a step needs, then every row starts over. */
static int warm_up(tg_rnn_stream *s) {
    tg_tensor *x0 = tg_zeros(s->m->dtype, TG_SHAPE(s->B, s->m->input_size));
    bool ok = x0 && reset_rows(s, 0, s->B) == 0 && tg_rnn_stream_step(s, x0) != NULL && tg_rnn_stream_reset(s) == 0;
    tg_release(x0);
    return ok ? 0 : -1;
}

tg_rnn_stream *tg_rnn_stream_new(const tg_rnn *m, const tg_linear_layer *head, int64_t B) {
    const char *fn = "tg_rnn_stream_new";
    if (!m) {
        if (!tg_error_pending()) tg_error(fn, "model is NULL");
        return NULL;
    }
    if (m->num_directions != 1) {
        tg_error(fn, "cell '%s': a bidirectional model cannot stream (its reverse direction reads the future)", m->cell->name);
        return NULL;
    }
    if (B < 1 || B > (int64_t)1 << 24) {
        tg_error(fn, "B = %lld rows: must be in 1..%lld", (long long)B, (long long)1 << 24);
        return NULL;
    }
    int64_t H = m->hidden_size, R = m->proj_size ? m->proj_size : H; /* R: the width of h (proj_size) */
    if (head && (head->in_features != R || tg_dtype_of(head->weight) != m->dtype)) {
        tg_error(fn, "head [%lld -> %lld] %s does not take the model's h [B, %lld] %s", (long long)head->in_features,
                 (long long)head->out_features, tg_dtype_name(tg_dtype_of(head->weight)), (long long)R,
                 tg_dtype_name(m->dtype));
        return NULL;
    }
    tg_rnn_stream *s = tg_calloc(1, sizeof *s);
    if (!s) { tg_error(fn, "out of memory"); return NULL; }
    s->m = m;
    s->head = head;
    s->B = B;
    s->L = m->num_layers;
    s->S = m->cell->n_states;
    s->view = tg_calloc((size_t)(s->L * s->S), sizeof *s->view);
    s->out = tg_zeros(m->dtype, TG_SHAPE(B, head ? head->out_features : R));
    if (!s->view || !s->out) goto fail;
    for (int st = 0; st < s->S; st++) {
        if (!(s->state[st] = tg_zeros(m->dtype, TG_SHAPE(s->L, B, st ? H : R)))) goto fail;
        for (int k = 0; k < s->L; k++)
            if (!(s->view[k * s->S + st] = tg_view_at(s->state[st], k))) goto fail;
    }
    if (warm_up(s)) goto fail;
    return s;
fail:
    if (!tg_error_pending()) tg_error(fn, "out of memory for B = %lld, H = %lld", (long long)B, (long long)H);
    tg_rnn_stream_free(s);
    return NULL;
}
