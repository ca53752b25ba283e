/* examples/lstm_forward_backward.c - an LSTM step by step, in the shapes of the classic course
 * exercise (lstm_cell_forward, lstm_forward, lstm_backward), by hand and on the tape.
 *
 * Purpose: map the course's notation onto tapegrad's and check that the hand-derived BPTT
 * (<tapegrad/manual.h>) and the tape-differentiated cell (<tapegrad/nn.h>) give the same numbers.
 *   course                                       tapegrad (PyTorch layout, time-major)
 *   x (n_x, m, T_x) = (3, 10, 7)                 x [T, B, I] = [7, 10, 3]
 *   a, c (n_a, m, T_x) = (5, 10, 7)              h, c [T, B, H] = [7, 10, 5]: a[i][b][t] = h[t][b][i]
 *   Wf, Wi, Wc, Wo (5, 8) on concat(a<t-1>, x<t>) weight_hh_l0 [4H, H] and weight_ih_l0 [4H, I], gate
 *                                                blocks in PyTorch's order i, f, g (= c̃), o:
 *                                                Wf = [W_hh rows H..2H | W_ih rows H..2H]
 *   bf, bi, bc, bo (5, 1)                        bias_ih_l0 + bias_hh_l0 [4H], same blocks
 *   Γf = σ(Wf[a,x] + bf), Γu = σ(Wi[a,x] + bi), c̃ = tanh(Wc[a,x] + bc), Γo = σ(Wo[a,x] + bo)
 *   c<t> = Γf c<t-1> + Γu c̃,  a<t> = Γo tanh(c<t>)   (the same equations)
 * Steps: (1) one step with tg_manual_lstm_cell_forward; (2) the loop over time by hand, keeping every
 * a and c, compared with tg_manual_lstm_forward and with the generic runner (tg_rnn_forward with
 * keep_step_states, which gives c at every step too); (3) BPTT from da on every hidden state by hand
 * (tg_manual_lstm_backward) and by the tape, with the course's gradient shapes (dWf (5, 8) etc.).
 * Values come from tapegrad's seeded generator, not numpy's, so they differ from the course's.
 * (The course's own lstm_backward check feeds a (5, 10, 4) da to a 7-step forward and so reports
 * dx.shape (3, 10, 4); here da matches the forward: [7, 10, 5].)
 *
 * Run: build/examples/lstm_forward_backward   (no training: --quick is accepted and changes nothing)
 */
#include <math.h>
#include <stdio.h>

#include <tapegrad/tapegrad.h>

enum { T = 7, B = 10, I = 3, H = 5 };

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

/* The course's dW<gate> (H, H + I): [dW_hh block | dW_ih block] of gate k (0 i, 1 f, 2 g, 3 o).
 * returns: tape-owned (nothing requires grad, so nothing is recorded) */
static tg_tensor *course_dW(const tg_tensor *dW_hh, const tg_tensor *dW_ih, int k) {
    tg_tensor *parts[2] = {tg_slice(dW_hh, 0, k * H, (k + 1) * H), tg_slice(dW_ih, 0, k * H, (k + 1) * H)};
    return tg_concat(2, parts, 1);
}

int main(void) {
    tg_rng rng;
    tg_rng_seed(&rng, 1);
    tg_rnn *lstm = tg_rnn_new(tg_cell_by_name("lstm"),
                              &(tg_rnn_config){.input_size = I, .hidden_size = H, .dtype = TG_F64}, &rng);
    const tg_cell_params *cp = tg_rnn_layer(lstm, 0, 0);
    tg_manual_layer p = {cp->weight_ih, cp->weight_hh, cp->bias_ih, cp->bias_hh, NULL}; /* borrowed; no projection */
    tg_tensor *x = tg_rand_normal(&rng, TG_F64, TG_SHAPE(T, B, I), 0, 1);
    tg_tensor *a0 = tg_rand_normal(&rng, TG_F64, TG_SHAPE(B, H), 0, 1);
    tg_tensor *c0 = tg_zeros(TG_F64, TG_SHAPE(B, H)); /* the course starts from c = 0 */
    printf("weight_ih_l0 %s, weight_hh_l0 %s, bias_ih_l0 %s, bias_hh_l0 %s (gate blocks i, f, g, o)\n\n",
           shape(p.weight_ih), shape(p.weight_hh), shape(p.bias_ih), shape(p.bias_hh));

    /* ---- 1. lstm_cell_forward ---- */
    tg_tensor *x0 = tg_view_at(x, 0);
    tg_manual_cache *cache = NULL;
    tg_tensor *c_next = NULL;
    tg_tensor *a_next = tg_manual_lstm_cell_forward(x0, a0, c0, &p, &c_next, &cache);
    printf("1. lstm_cell_forward\n");
    print_strided("a_next[4] (unit 4, batch 0..9)", a_next, 4, H, B);
    print_strided("c_next[2] (unit 2, batch 0..9)", c_next, 2, H, B);
    printf("a_next.shape = %s, c_next.shape = %s   (course: (5, 10) each)\n\n", shape(a_next), shape(c_next));
    tg_manual_cache_free(cache);
    tg_release(a_next); tg_release(c_next); tg_release(x0);

    /* ---- 2. lstm_forward: the loop, keeping a and c at every step ---- */
    tg_tensor *a = tg_zeros(TG_F64, TG_SHAPE(T, B, H)), *c = tg_zeros(TG_F64, TG_SHAPE(T, B, H));
    tg_tensor *a_prev = tg_retain(a0), *c_prev = tg_retain(c0);
    for (int t = 0; t < T; t++) {
        tg_tensor *xt = tg_view_at(x, t), *ct = NULL;
        tg_tensor *at = tg_manual_lstm_cell_forward(xt, a_prev, c_prev, &p, &ct, &cache);
        tg_tensor *sa = tg_view_at(a, t), *sc = tg_view_at(c, t);
        tg_copy_(sa, at);
        tg_copy_(sc, ct);
        tg_manual_cache_free(cache);
        tg_release(sa); tg_release(sc); tg_release(xt); tg_release(a_prev); tg_release(c_prev);
        a_prev = at;
        c_prev = ct;
    }
    tg_release(a_prev); tg_release(c_prev);
    printf("2. lstm_forward\n");
    printf("a[4][3][6] = h[6][3][4] = %.6f\n", tg_get(a, (6 * B + 3) * H + 4));
    printf("c[1][2][1] = c[1][2][1] = %.6f\n", tg_get(c, (1 * B + 2) * H + 1));
    printf("a.shape = %s, c.shape = %s   (course: (5, 10, 7))\n", shape(a), shape(c));

    tg_manual_cache *seq_cache = NULL;
    tg_tensor *h_last = NULL, *c_last = NULL;
    tg_tensor *a_manual = tg_manual_lstm_forward(x, a0, c0, &p, &h_last, &c_last, &seq_cache);
    /* the same on the tape: initial states are [L=1,B,H]; keep_step_states gives c at every step */
    tg_tensor *x_leaf = tg_copy(x);
    tg_tensor *h0 = tg_reshape_view(a0, TG_SHAPE(1, B, H)), *h0_leaf = tg_copy(h0);
    tg_tensor *c0_leaf = tg_zeros(TG_F64, TG_SHAPE(1, B, H));
    tg_set_requires_grad(x_leaf, true);
    tg_set_requires_grad(h0_leaf, true);
    tg_set_requires_grad(c0_leaf, true);
    tg_rnn_output out;
    tg_tensor *a_tape = tg_rnn_forward(lstm, x_leaf, &(tg_rnn_forward_opts){
        .init = (tg_tensor *[]){h0_leaf, c0_leaf}, .keep_step_states = true}, &out);
    tg_tensor *c_tape = tg_rnn_step_state(&out, lstm, 0, 0, 1); /* [T,B,H], borrowed */
    tg_tensor *c_T = tg_view_at(c, T - 1);
    printf("max |loop - tg_manual_lstm_forward|: a %.1e, c_last %.1e\n", max_diff(a, a_manual), max_diff(c_T, c_last));
    tg_release(c_T);
    printf("max |loop - tg_rnn_forward (tape)|:  a %.1e, c %.1e\n\n", max_diff(a, a_tape), max_diff(c, c_tape));

    /* ---- 3. lstm_backward from da [T,B,H] ---- */
    tg_tensor *da = tg_rand_normal(&rng, TG_F64, TG_SHAPE(T, B, H), 0, 1);
    tg_manual_layer g = {0};
    tg_tensor *dx = NULL, *da0 = NULL, *dc0 = NULL;
    tg_manual_lstm_backward(seq_cache, da, NULL, NULL, &g, &dx, &da0, &dc0);
    printf("3. lstm_backward (hand-derived)\n");
    print_strided("dx[1][2]  (feature 1, batch 2, t = 0..6)", dx, 2 * I + 1, B * I, T);
    printf("dx.shape = %s, da0.shape = %s, dc0.shape = %s\n", shape(dx), shape(da0), shape(dc0));
    printf("dW_ih = d weight_ih_l0 %s, dW_hh = d weight_hh_l0 %s, db = d bias_ih_l0 %s\n", shape(g.weight_ih),
           shape(g.weight_hh), shape(g.bias_ih));
    const char *gate[4] = {"dWi", "dWf", "dWc", "dWo"};
    for (int k = 0; k < 4; k++) {
        tg_tensor *dW = course_dW(g.weight_hh, g.weight_ih, k);
        printf("  %s = [dW_hh | dW_ih] block %d: shape %s   (course: (5, 8))\n", gate[k], k, shape(dW));
    }
    tg_tensor *dbf = tg_slice(g.bias_ih, 0, H, 2 * H);
    printf("  dbf = d bias block 1: shape %s   (course: (5, 1))\n", shape(dbf));

    tg_backward_with(a_tape, da);
    printf("tape vs hand-derived, max |difference|: dx %.1e, da0 %.1e, dc0 %.1e, dW_ih %.1e, dW_hh %.1e, "
           "db_ih %.1e, db_hh %.1e\n",
           max_diff(tg_grad(x_leaf), dx), max_diff(tg_grad(h0_leaf), da0), max_diff(tg_grad(c0_leaf), dc0),
           max_diff(tg_grad(p.weight_ih), g.weight_ih), max_diff(tg_grad(p.weight_hh), g.weight_hh),
           max_diff(tg_grad(p.bias_ih), g.bias_ih), max_diff(tg_grad(p.bias_hh), g.bias_hh));

    tg_rnn_output_clear(&out);
    tg_tape_reset();
    tg_manual_layer_release(&g, 1);
    tg_manual_cache_free(seq_cache);
    tg_release(dx); tg_release(da0); tg_release(dc0); tg_release(da);
    tg_release(a_manual); tg_release(h_last); tg_release(c_last);
    tg_release(a); tg_release(c);
    tg_release(x_leaf); tg_release(h0_leaf); tg_release(h0); tg_release(c0_leaf);
    tg_release(x); tg_release(a0); tg_release(c0);
    tg_rnn_free(lstm);
    long live = tg_live_tensors();
    printf("\nlive tensors at the end: %ld\n", live);
    return live == 0 ? 0 : 1;
}
