/* examples/rnn_forward.c - a basic RNN step by step, in the shapes of the classic course exercise
 * ("Building your Recurrent Neural Network - Step by Step": rnn_cell_forward, rnn_forward,
 * rnn_backward), done three ways on the same parameters.
 *
 * Purpose: show how the course's notation maps onto tapegrad's, and that the hand-derived reference
 * (<tapegrad/manual.h>, no tape) and the tape-differentiated cell (<tapegrad/nn.h>) agree.
 *   course                                   tapegrad (PyTorch layout, time-major)
 *   x  (n_x, m, T_x) = (3, 10, 4)            x  [T, B, I] = [4, 10, 3]
 *   a  (n_a, m, T_x) = (5, 10, 4)            y  [T, B, H] = [4, 10, 5]     so a[i][b][t] = y[t][b][i]
 *   Wax (5, 3), Waa (5, 5), ba (5, 1)        weight_ih_l0 [5,3], weight_hh_l0 [5,5], bias_ih + bias_hh [5]
 *   a<t> = tanh(Waa a<t-1> + Wax x<t> + ba)  h_t = tanh(x_t W_ihᵀ + b_ih + h_{t-1} W_hhᵀ + b_hh)
 *   y_pred<t> = softmax(Wya a<t> + by)       a Linear(5 -> 2) and tg_softmax over the last axis
 * Steps: (1) one cell step with tg_manual_rnn_cell_forward; (2) the forward loop written out, then the
 * same as one call (tg_manual_rnn_forward) and through the generic runner on the tape (tg_rnn_forward);
 * (3) BPTT from an upstream gradient da on every hidden state, by hand (tg_manual_rnn_backward) and by
 * the tape (tg_backward_with). The numbers come from tapegrad's own seeded generator, so they differ
 * from the course's numpy values; the shapes and the agreement are the point.
 *
 * Run: build/examples/rnn_forward   (no training: --quick is accepted and changes nothing)
 */
#include <math.h>
#include <stdio.h>

#include <tapegrad/tapegrad.h>

enum { T = 4, B = 10, I = 3, H = 5, NY = 2 };

/* prints t's elements at flat offset + k·stride, k = 0..n-1 */
static void print_strided(const char *label, const tg_tensor *t, int64_t offset, int64_t stride, int n) {
    printf("%s = [", label);
    for (int k = 0; k < n; k++) printf("%s%9.6f", k ? ", " : "", tg_get(t, offset + k * stride));
    printf("]\n");
}

static double max_diff(const tg_tensor *a, const tg_tensor *b) {
    double m = 0;
    for (int64_t i = 0; i < tg_numel(a); i++) m = fmax(m, fabs(tg_get(a, i) - tg_get(b, i)));
    return m;
}

static const char *shape(const tg_tensor *t) {
    static char buf[4][32];
    static int k;
    k = (k + 1) % 4;
    return tg_shape_str(t, buf[k], sizeof buf[k]);
}

int main(void) {
    tg_rng rng;
    tg_rng_seed(&rng, 1);
    /* the parameters: an Elman RNN (rnn_tanh) and a Linear(H -> NY) for the predictions, in F64 */
    tg_rnn *rnn = tg_rnn_new(tg_cell_by_name("rnn_tanh"),
                             &(tg_rnn_config){.input_size = I, .hidden_size = H, .dtype = TG_F64}, &rng);
    tg_linear_layer *out = tg_linear_layer_new(H, NY, true, TG_F64, &rng);
    const tg_cell_params *cp = tg_rnn_layer(rnn, 0, 0);
    tg_manual_layer p = {cp->weight_ih, cp->weight_hh, cp->bias_ih, cp->bias_hh, NULL}; /* borrowed; no projection */
    tg_tensor *x = tg_rand_normal(&rng, TG_F64, TG_SHAPE(T, B, I), 0, 1);
    tg_tensor *a0 = tg_rand_normal(&rng, TG_F64, TG_SHAPE(B, H), 0, 1);
    printf("Wax = weight_ih_l0 %s, Waa = weight_hh_l0 %s, ba = bias_ih_l0 + bias_hh_l0 %s, Wya %s\n\n",
           shape(p.weight_ih), shape(p.weight_hh), shape(p.bias_ih), shape(out->weight));

    /* ---- 1. rnn_cell_forward: one time step ---- */
    tg_tensor *x0 = tg_view_at(x, 0); /* [B,I], zero-copy */
    tg_manual_cache *cache = NULL;
    tg_tensor *a_next = tg_manual_rnn_cell_forward(TG_MANUAL_TANH, x0, a0, &p, &cache);
    tg_tensor *yt_pred = tg_softmax(tg_linear_layer_forward(out, a_next), -1); /* tape-owned */
    printf("1. rnn_cell_forward\n");
    print_strided("a_next[4]     (hidden unit 4, batch 0..9)", a_next, 4, H, B);
    printf("a_next.shape  = %s   (course: (5, 10))\n", shape(a_next));
    print_strided("yt_pred[1]    (class 1, batch 0..9)      ", yt_pred, 1, NY, B);
    printf("yt_pred.shape = %s   (course: (2, 10))\n\n", shape(yt_pred));
    tg_manual_cache_free(cache);
    tg_release(a_next);
    tg_release(x0);

    /* ---- 2. rnn_forward: the loop over time, then the same in one call, then on the tape ---- */
    tg_tensor *a = tg_zeros(TG_F64, TG_SHAPE(T, B, H));
    tg_tensor *a_prev = tg_retain(a0);
    for (int t = 0; t < T; t++) {
        tg_tensor *xt = tg_view_at(x, t);
        tg_tensor *at = tg_manual_rnn_cell_forward(TG_MANUAL_TANH, xt, a_prev, &p, &cache);
        tg_tensor *slot = tg_view_at(a, t);
        tg_copy_(slot, at); /* a[:, :, t] = a_next */
        tg_manual_cache_free(cache);
        tg_release(slot); tg_release(xt); tg_release(a_prev);
        a_prev = at;
    }
    tg_release(a_prev);
    tg_tensor *y_pred = tg_softmax(tg_linear_layer_forward(out, a), -1); /* [T,B,NY] */
    printf("2. rnn_forward\n");
    print_strided("a[4][1]       (unit 4, batch 1, t = 0..3) ", a, 1 * H + 4, B * H, T);
    printf("a.shape       = %s  (course: (5, 10, 4))\n", shape(a));
    print_strided("y_pred[1][3]  (class 1, batch 3, t = 0..3)", y_pred, 3 * NY + 1, B * NY, T);
    printf("y_pred.shape  = %s  (course: (2, 10, 4))\n", shape(y_pred));

    tg_manual_cache *seq_cache = NULL;
    tg_tensor *a_last = NULL;
    tg_tensor *a_manual = tg_manual_rnn_forward(TG_MANUAL_TANH, x, a0, &p, &a_last, &seq_cache);
    tg_tensor *x_leaf = tg_copy(x), *h0 = tg_reshape_view(a0, TG_SHAPE(1, B, H)); /* [L=1,B,H] */
    tg_tensor *h0_leaf = tg_copy(h0);
    tg_set_requires_grad(x_leaf, true);
    tg_set_requires_grad(h0_leaf, true);
    tg_tensor *a_tape = tg_rnn_forward(rnn, x_leaf, &(tg_rnn_forward_opts){.init = (tg_tensor *[]){h0_leaf}}, NULL);
    printf("max |loop - tg_manual_rnn_forward| = %.1e\n", max_diff(a, a_manual));
    printf("max |loop - tg_rnn_forward (tape)| = %.1e\n\n", max_diff(a, a_tape));

    /* ---- 3. rnn_backward: BPTT from da, the gradient on every hidden state ---- */
    tg_tensor *da = tg_rand_normal(&rng, TG_F64, TG_SHAPE(T, B, H), 0, 1);
    tg_manual_layer g = {0}; /* NULL fields: allocated by the backward */
    tg_tensor *dx = NULL, *da0 = NULL;
    tg_manual_rnn_backward(seq_cache, da, NULL, &g, &dx, &da0);
    printf("3. rnn_backward (hand-derived)\n");
    print_strided("dx[1][2]      (feature 1, batch 2, t = 0..3)", dx, 2 * I + 1, B * I, T);
    printf("dx.shape      = %s   (course: (3, 10, 4))\n", shape(dx));
    print_strided("da0[2]        (unit 2, batch 0..4)          ", da0, 2, H, 5);
    printf("da0.shape     = %s      (course: (5, 10))\n", shape(da0));
    printf("dWax.shape    = %s       (course: (5, 3))\n", shape(g.weight_ih));
    printf("dWaa.shape    = %s       (course: (5, 5))\n", shape(g.weight_hh));
    printf("dba.shape     = %s         (course: (5, 1); dba = d bias_ih = d bias_hh)\n", shape(g.bias_ih));

    tg_backward_with(a_tape, da); /* the tape's BPTT from the same upstream gradient */
    printf("tape vs hand-derived, max |difference|: dx %.1e, da0 %.1e, dWax %.1e, dWaa %.1e, dba %.1e\n",
           max_diff(tg_grad(x_leaf), dx), max_diff(tg_grad(h0_leaf), da0), max_diff(tg_grad(p.weight_ih), g.weight_ih),
           max_diff(tg_grad(p.weight_hh), g.weight_hh), max_diff(tg_grad(p.bias_ih), g.bias_ih));

    tg_tape_reset();
    tg_manual_layer_release(&g, 1);
    tg_manual_cache_free(seq_cache);
    tg_release(dx); tg_release(da0); tg_release(da);
    tg_release(a_manual); tg_release(a_last); tg_release(a);
    tg_release(x_leaf); tg_release(h0_leaf); tg_release(h0);
    tg_release(x); tg_release(a0);
    tg_linear_layer_free(out);
    tg_rnn_free(rnn);
    long live = tg_live_tensors();
    printf("\nlive tensors at the end: %ld\n", live);
    return live == 0 ? 0 : 1;
}
