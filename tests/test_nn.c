/* tests/test_nn.c - parameter sets, init schemes, Linear/Embedding, the recurrent cells and the
 * generic runner. Everything runs in F64. Gradients are checked against central differences
 * (tg_gradcheck) rather than against stored numbers; forward values of one step are checked against
 * the equations written out as plain C loops below (independent of the tape and of the cells).
 * Dimension letters: T time, B batch, I input, H hidden, L layers, D directions, S states. */
#include "helpers.h"

#include <tapegrad/nn.h>

#include <criterion/criterion.h>
#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>

/* ---- helpers ----------------------------------------------------------------------------------- */

static double at3(const tg_tensor *t, int64_t i, int64_t j, int64_t k) {
    return tg_get(t, (i * tg_dim(t, 1) + j) * tg_dim(t, 2) + k);
}

static double sig(double v) { return 1 / (1 + exp(-v)); }

static const char *const all_cells[] = {"rnn_tanh", "rnn_relu", "lstm", "gru", "gru_reset_before"};
#define N_CELLS 5

/* ---- parameter sets ------------------------------------------------------------------------------ */

static int count_visits(const char *name, tg_tensor *t, void *user) {
    (void)name; (void)t;
    return ++*(int *)user == 2 ? 42 : 0;
}

Test(nn, params_add_find_count_iterate) {
    long base = tg_live_tensors();
    th_record_errors();
    tg_params *p = tg_params_new();
    tg_tensor *a = tg_zeros(TG_F64, TG_SHAPE(2, 3)), *b = tg_zeros(TG_F64, TG_SHAPE(4));
    cr_assert_eq(tg_params_add(p, "weight", a), 0);
    cr_assert_eq(tg_params_add(p, "bias", b), 0);
    tg_release(a); /* the list holds its own reference */
    tg_release(b);
    cr_assert_eq(tg_params_count(p), 2);
    cr_assert_eq(tg_params_numel(p), 10);
    cr_assert_eq(tg_params_find(p, "bias"), b);
    cr_assert_null(tg_params_find(p, "nope"));
    cr_assert_str_eq(tg_params_name_at(p, 0), "weight");
    cr_assert_eq(tg_params_at(p, 1), b);
    cr_assert_null(tg_params_at(p, 2));
    int visits = 0;
    cr_assert_eq(tg_params_foreach(p, count_visits, &visits), 42); /* stops at the first non-zero */
    cr_assert_eq(visits, 2);
    cr_assert_eq(th_error_count(), 0);
    cr_assert_eq(tg_params_add(p, "bias", a), -1);
    cr_assert(strstr(th_last_message(), "tg_params_add") && strstr(th_last_message(), "'bias'"), "%s",
              th_last_message());
    th_reset_errors();
    tg_params *outer = tg_params_new();
    cr_assert_eq(tg_params_extend(outer, "decoder.", p), 0);
    cr_assert_str_eq(tg_params_name_at(outer, 1), "decoder.bias");
    cr_assert_eq(tg_params_find(outer, "decoder.weight"), a);
    tg_params_free(p);
    cr_assert_eq(tg_live_tensors(), base + 2); /* still held by outer */
    tg_params_free(outer);
    tg_params_free(NULL);
    cr_assert_eq(tg_live_tensors(), base);
}

Test(nn, rnn_param_names_and_shapes_follow_pytorch) {
    tg_rnn *m = th_make_rnn("lstm", 5, 3, 2, true, 1);
    const char *expect[] = {"weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0",
                            "weight_ih_l0_reverse", "weight_hh_l0_reverse", "bias_ih_l0_reverse", "bias_hh_l0_reverse",
                            "weight_ih_l1", "weight_hh_l1", "bias_ih_l1", "bias_hh_l1",
                            "weight_ih_l1_reverse", "weight_hh_l1_reverse", "bias_ih_l1_reverse", "bias_hh_l1_reverse"};
    cr_assert_eq(tg_params_count(m->params), 16);
    for (int i = 0; i < 16; i++) cr_assert_str_eq(tg_params_name_at(m->params, i), expect[i]);
    const tg_tensor *w = tg_params_find(m->params, "weight_ih_l0");
    cr_assert(tg_dim(w, 0) == 12 && tg_dim(w, 1) == 5);
    w = tg_params_find(m->params, "weight_ih_l1_reverse"); /* layer 1 reads both directions: I = 2H */
    cr_assert(tg_dim(w, 0) == 12 && tg_dim(w, 1) == 6);
    w = tg_params_find(m->params, "weight_hh_l1");
    cr_assert(tg_dim(w, 0) == 12 && tg_dim(w, 1) == 3);
    cr_assert_eq(tg_numel(tg_params_find(m->params, "bias_hh_l0_reverse")), 12);
    cr_assert_eq(tg_rnn_layer(m, 1, 1)->weight_hh, tg_params_find(m->params, "weight_hh_l1_reverse"));
    cr_assert(tg_requires_grad(tg_params_at(m->params, 3)));
    /* PyTorch's LSTM(5, 3, num_layers=2, bidirectional=True) has 4·(12·5+12·3+24) + 4·(12·6+12·3+24) */
    cr_assert_eq(tg_params_numel(m->params), 2 * (60 + 36 + 24) + 2 * (72 + 36 + 24));
    tg_rnn_free(m);

    tg_rnn_config cfg = {.input_size = 4, .hidden_size = 2, .no_bias = true, .learn_init = true, .dtype = TG_F64};
    m = tg_rnn_new(tg_cell_by_name("gru"), &cfg, NULL);
    cr_assert_eq(tg_params_count(m->params), 3);
    cr_assert_str_eq(tg_params_name_at(m->params, 2), "h0");
    cr_assert_null(m->layers[0].bias_ih);
    tg_rnn_free(m);
}

/* ---- init schemes ------------------------------------------------------------------------------ */

Test(nn, default_init_is_uniform_within_one_over_sqrt_h) {
    tg_rnn *m = th_make_rnn("gru", 7, 16, 1, false, 3);
    for (int i = 0; i < tg_params_count(m->params); i++) {
        tg_tensor *t = tg_params_at(m->params, i);
        double lo = 1, hi = -1;
        for (int64_t j = 0; j < tg_numel(t); j++) { lo = fmin(lo, tg_get(t, j)); hi = fmax(hi, tg_get(t, j)); }
        cr_assert(lo >= -0.25 && hi <= 0.25 && hi - lo > 0.4, "%s in [%g, %g]", tg_params_name_at(m->params, i), lo, hi);
    }
    /* same seed, same weights */
    tg_rnn *m2 = th_make_rnn("gru", 7, 16, 1, false, 3);
    cr_assert_eq(th_max_diff(tg_params_at(m->params, 1), tg_params_at(m2->params, 1)), 0);
    tg_rnn_free(m);
    tg_rnn_free(m2);
}

Test(nn, orthogonal_blocks_are_orthonormal) {
    /* square gate blocks [H,H], wide [3,5] (orthonormal rows) and tall [5,3] (orthonormal columns) */
    const int64_t shapes[3][3] = {{4, 6, 6}, {2, 3, 5}, {1, 5, 3}}; /* blocks, R, C */
    for (int c = 0; c < 3; c++) {
        int blocks = (int)shapes[c][0];
        int64_t R = shapes[c][1], C = shapes[c][2];
        tg_tensor *w = tg_zeros(TG_F64, TG_SHAPE(blocks * R, C));
        tg_rng rng;
        tg_rng_seed(&rng, 11);
        cr_assert_eq(tg_init_orthogonal_(w, blocks, &rng, 2.0), 0);
        const double *p = tg_f64(w);
        for (int b = 0; b < blocks; b++) {
            const double *q = p + b * R * C;
            int64_t n = R <= C ? R : C; /* Q·Qᵀ = gain² I over rows, or Qᵀ·Q over columns */
            for (int64_t i = 0; i < n; i++)
                for (int64_t j = 0; j < n; j++) {
                    double dot = 0;
                    for (int64_t k = 0; k < (R <= C ? C : R); k++)
                        dot += R <= C ? q[i * C + k] * q[j * C + k] : q[k * C + i] * q[k * C + j];
                    cr_assert(fabs(dot - (i == j ? 4.0 : 0.0)) < 1e-12, "case %d block %d (%lld,%lld): %g", c, b,
                              (long long)i, (long long)j, dot);
                }
        }
        tg_release(w);
    }
}

Test(nn, rnn_init_xavier_orthogonal_forget_bias) {
    tg_rnn *m = th_make_rnn("lstm", 5, 4, 1, false, 2);
    tg_rng rng;
    tg_rng_seed(&rng, 5);
    tg_rnn_init_opts o = {.weight_ih = TG_INIT_XAVIER_UNIFORM, .weight_hh = TG_INIT_ORTHOGONAL,
                          .set_forget_bias = true, .forget_bias = 1.0};
    cr_assert_eq(tg_rnn_init(m, &o, &rng), 0);
    const tg_cell_params *p = tg_rnn_layer(m, 0, 0);
    double bound = sqrt(6.0 / (4 + 5)); /* per gate block [H, I] */
    for (int64_t j = 0; j < tg_numel(p->weight_ih); j++) cr_assert(fabs(tg_get(p->weight_ih, j)) <= bound);
    for (int g = 0; g < 4; g++) /* each [H,H] gate block of W_hh is orthogonal */
        for (int i = 0; i < 4; i++) {
            double dot = 0;
            for (int k = 0; k < 4; k++) dot += pow(tg_get(p->weight_hh, (g * 4 + i) * 4 + k), 2);
            cr_assert(fabs(dot - 1) < 1e-12);
        }
    for (int j = 0; j < 4; j++) { /* the f block (gate 1) sums to 1 over the two biases */
        cr_assert_eq(tg_get(p->bias_ih, 4 + j), 1.0);
        cr_assert_eq(tg_get(p->bias_hh, 4 + j), 0.0);
        cr_assert_neq(tg_get(p->bias_ih, j), 1.0);
    }
    tg_rnn_free(m);
}

/* ---- Linear and Embedding ------------------------------------------------------------------------ */

static tg_tensor *linear_fn(tg_tensor *const *in, int n, void *user) {
    (void)in; (void)n;
    return tg_linear_layer_forward(user, in[0]);
}

Test(nn, linear_and_embedding_layers) {
    long base = tg_live_tensors();
    tg_linear_layer *lin = tg_linear_layer_new(3, 2, true, TG_F64, NULL);
    cr_assert_str_eq(tg_params_name_at(lin->params, 0), "weight");
    cr_assert_str_eq(tg_params_name_at(lin->params, 1), "bias");
    tg_tensor *x = th_rand(1, TG_SHAPE(4, 3), -1, 1);
    tg_tensor *y = tg_linear_layer_forward(lin, x);
    for (int r = 0; r < 4; r++)
        for (int o = 0; o < 2; o++) {
            double v = tg_get(lin->bias, o);
            for (int i = 0; i < 3; i++) v += tg_get(x, r * 3 + i) * tg_get(lin->weight, o * 3 + i);
            cr_assert(fabs(v - tg_get(y, r * 2 + o)) < 1e-14);
        }
    tg_set_requires_grad(x, true);
    tg_tensor *in[3] = {x, lin->weight, lin->bias};
    cr_assert(tg_gradcheck(linear_fn, lin, in, 3, NULL, NULL));

    tg_embedding_layer *emb = tg_embedding_layer_new(10, 4, TG_F64, NULL);
    int64_t idx[6] = {0, 9, 3, 3, 1, 0};
    tg_tensor *e = tg_embedding_layer_forward(emb, TG_SHAPE(2, 3), idx);
    cr_assert(tg_ndim(e) == 3 && tg_dim(e, 2) == 4);
    for (int k = 0; k < 6; k++)
        for (int j = 0; j < 4; j++) cr_assert_eq(tg_get(e, k * 4 + j), tg_get(emb->weight, idx[k] * 4 + j));
    tg_tape_reset();
    tg_release(x);
    tg_linear_layer_free(lin);
    tg_embedding_layer_free(emb);
    cr_assert_eq(tg_live_tensors(), base);
}

/* ---- one step against the equations ------------------------------------------------------------ */

/* Runs one step of `cell` (T = 1) from random h0 (c0) and compares with ref(), which writes h' and c'
 * for batch row b from plain arrays. */
typedef void (*step_ref_fn)(const tg_cell_params *p, const double *x, const double *h, const double *c, double *h1,
                            double *c1);

/* a[r] = (x W_ihᵀ + b_ih)[r] and hw[r] = (h W_hhᵀ + b_hh)[r] for r < G·H */
static void projections(const tg_cell_params *p, const double *x, const double *h, double *a, double *hw) {
    int64_t I = p->input_size, H = p->hidden_size, GH = tg_dim(p->weight_ih, 0);
    for (int64_t r = 0; r < GH; r++) {
        a[r] = tg_get(p->bias_ih, r);
        hw[r] = tg_get(p->bias_hh, r);
        for (int64_t i = 0; i < I; i++) a[r] += tg_get(p->weight_ih, r * I + i) * x[i];
        for (int64_t j = 0; j < H; j++) hw[r] += tg_get(p->weight_hh, r * H + j) * h[j];
    }
}

static void lstm_ref(const tg_cell_params *p, const double *x, const double *h, const double *c, double *h1,
                     double *c1) {
    int64_t H = p->hidden_size;
    double a[64], hw[64];
    projections(p, x, h, a, hw);
    for (int64_t j = 0; j < H; j++) {
        double i = sig(a[j] + hw[j]), f = sig(a[H + j] + hw[H + j]);
        double g = tanh(a[2 * H + j] + hw[2 * H + j]), o = sig(a[3 * H + j] + hw[3 * H + j]);
        c1[j] = f * c[j] + i * g;
        h1[j] = o * tanh(c1[j]);
    }
}

static void gru_ref(const tg_cell_params *p, const double *x, const double *h, const double *c, double *h1,
                    double *c1) {
    (void)c; (void)c1;
    int64_t H = p->hidden_size;
    double a[64], hw[64];
    projections(p, x, h, a, hw);
    for (int64_t j = 0; j < H; j++) {
        double r = sig(a[j] + hw[j]), z = sig(a[H + j] + hw[H + j]);
        double n = tanh(a[2 * H + j] + r * hw[2 * H + j]);
        h1[j] = (1 - z) * n + z * h[j];
    }
}

static void gru_reset_before_ref(const tg_cell_params *p, const double *x, const double *h, const double *c,
                                 double *h1, double *c1) {
    (void)c; (void)c1;
    int64_t H = p->hidden_size;
    double a[64], hw[64], rh[16];
    projections(p, x, h, a, hw);
    for (int64_t j = 0; j < H; j++) rh[j] = sig(a[j] + hw[j]) * h[j];
    for (int64_t j = 0; j < H; j++) {
        double z = sig(a[H + j] + hw[H + j]);
        double un = tg_get(p->bias_hh, 2 * H + j); /* (r ⊙ h) W_hnᵀ + b_hn */
        for (int64_t k = 0; k < H; k++) un += tg_get(p->weight_hh, (2 * H + j) * H + k) * rh[k];
        double n = tanh(a[2 * H + j] + un);
        h1[j] = (1 - z) * n + z * h[j];
    }
}

static void rnn_tanh_ref(const tg_cell_params *p, const double *x, const double *h, const double *c, double *h1,
                         double *c1) {
    (void)c; (void)c1;
    double a[64], hw[64];
    projections(p, x, h, a, hw);
    for (int64_t j = 0; j < p->hidden_size; j++) h1[j] = tanh(a[j] + hw[j]);
}

static void rnn_relu_ref(const tg_cell_params *p, const double *x, const double *h, const double *c, double *h1,
                         double *c1) {
    (void)c; (void)c1;
    double a[64], hw[64];
    projections(p, x, h, a, hw);
    for (int64_t j = 0; j < p->hidden_size; j++) h1[j] = fmax(a[j] + hw[j], 0);
}

static void check_one_step(const char *cell, step_ref_fn ref) {
    const int64_t B = 3, I = 4, H = 5;
    tg_rnn *m = th_make_rnn(cell, I, H, 1, false, 21);
    int S = m->cell->n_states;
    tg_tensor *x = th_rand(1, TG_SHAPE(1, B, I), -2, 2);
    tg_tensor *init[2] = {th_rand(2, TG_SHAPE(1, B, H), -1, 1), th_rand(3, TG_SHAPE(1, B, H), -1, 1)};
    tg_rnn_output out;
    cr_assert_not_null(tg_rnn_forward(m, x, &(tg_rnn_forward_opts){.init = init}, &out));
    for (int64_t b = 0; b < B; b++) {
        double xb[16], hb[16], cb[16], h1[16], c1[16];
        for (int64_t i = 0; i < I; i++) xb[i] = at3(x, 0, b, i);
        for (int64_t j = 0; j < H; j++) { hb[j] = at3(init[0], 0, b, j); cb[j] = at3(init[1], 0, b, j); }
        ref(tg_rnn_layer(m, 0, 0), xb, hb, cb, h1, c1);
        for (int64_t j = 0; j < H; j++) {
            cr_assert(fabs(at3(out.output, 0, b, j) - h1[j]) < 1e-13, "%s h[%lld,%lld]: %.15g vs %.15g", cell,
                      (long long)b, (long long)j, at3(out.output, 0, b, j), h1[j]);
            cr_assert_eq(at3(out.h_n, 0, b, j), at3(out.output, 0, b, j));
            if (S == 2) cr_assert(fabs(at3(out.c_n, 0, b, j) - c1[j]) < 1e-13, "%s c", cell);
        }
    }
    tg_rnn_output_clear(&out);
    tg_tape_reset();
    tg_release(x);
    tg_release(init[0]);
    tg_release(init[1]);
    tg_rnn_free(m);
}

Test(nn, lstm_one_step_matches_equations) { check_one_step("lstm", lstm_ref); }
Test(nn, gru_one_step_matches_equations) { check_one_step("gru", gru_ref); }
Test(nn, gru_reset_before_one_step_matches_equations) { check_one_step("gru_reset_before", gru_reset_before_ref); }
Test(nn, rnn_one_step_matches_equations) {
    check_one_step("rnn_tanh", rnn_tanh_ref);
    check_one_step("rnn_relu", rnn_relu_ref);
}

/* ---- gradients --------------------------------------------------------------------------------- */

/* Every cell over a 4-step sequence: d/dx, d/dh0 (d/dc0) and every parameter. */
Test(nn, gradcheck_every_cell_single_layer) {
    for (int c = 0; c < N_CELLS; c++) {
        tg_rnn *m = th_make_rnn(all_cells[c], 3, 4, 1, false, 100 + c);
        int S = m->cell->n_states;
        tg_tensor *x = th_rand(10, TG_SHAPE(4, 2, 3), -1.5, 1.5);
        tg_tensor *init[2] = {th_rand(11, TG_SHAPE(1, 2, 4), -1, 1), th_rand(12, TG_SHAPE(1, 2, 4), -1, 1)};
        tg_set_name(init[0], "h0");
        tg_set_name(init[1], "c0");
        th_rnn_case rc = {.m = m, .n_init = S};
        th_check_grads(&rc, x, init, all_cells[c]);
        tg_release(x);
        tg_release(init[0]);
        tg_release(init[1]);
        tg_rnn_free(m);
    }
}

/* Two layers, both directions, ragged lengths: the whole runner at once, for every cell. */
Test(nn, gradcheck_every_cell_two_layers_bidirectional_lengths) {
    int64_t lengths[3] = {5, 2, 4};
    for (int c = 0; c < N_CELLS; c++) {
        tg_rnn *m = th_make_rnn(all_cells[c], 3, 2, 2, true, 200 + c);
        int S = m->cell->n_states;
        tg_tensor *x = th_rand(20, TG_SHAPE(5, 3, 3), -1.5, 1.5);
        tg_tensor *init[2] = {th_rand(21, TG_SHAPE(4, 3, 2), -1, 1), th_rand(22, TG_SHAPE(4, 3, 2), -1, 1)};
        th_rnn_case rc = {.m = m, .n_init = S, .opts = {.lengths = lengths}};
        th_check_grads(&rc, x, init, all_cells[c]);
        tg_release(x);
        tg_release(init[0]);
        tg_release(init[1]);
        tg_rnn_free(m);
    }
}

Test(nn, gradcheck_learned_init_batch_first_no_bias_dropout) {
    tg_rng rng;
    tg_rng_seed(&rng, 4);
    tg_rnn_config cfg = {.input_size = 3, .hidden_size = 3, .num_layers = 2, .batch_first = true, .no_bias = true,
                         .learn_init = true, .dropout = 0.3, .dtype = TG_F64};
    tg_rnn *m = tg_rnn_new(tg_cell_by_name("lstm"), &cfg, &rng);
    /* learned h0/c0 start at zero; move them so that their gradient path is exercised off the origin */
    tg_uniform_(&rng, m->init[0], -1, 1);
    tg_uniform_(&rng, m->init[1], -1, 1);
    tg_tensor *x = th_rand(30, TG_SHAPE(2, 4, 3), -1, 1); /* [B,T,I] */
    th_rnn_case rc = {.m = m, .mask_seed = 7};
    th_check_grads(&rc, x, NULL, "lstm learned-init batch-first no-bias dropout");
    tg_release(x);
    tg_rnn_free(m);
}

/* ---- runner semantics ----------------------------------------------------------------------------- */

/* A cell with a sequence function (rnn_tanh, rnn_relu, indrnn: one tg_rnn_seq_ per layer and direction;
 * lstm: one tg_lstm_seq_) gives what its step function gives, bit for bit: the same run with
 * keep_step_states (which takes the step-by-step path) as reference; two layers, both directions, dropout
 * between them (one seed), batch first, h0 (and c0) given; F64 and F32. Outputs, final states and every
 * gradient (x, h0, c0, each parameter) equal. */
Test(nn, sequence_path_equals_the_step_path) {
    const char *names[] = {"rnn_tanh", "rnn_relu", "indrnn", "lstm"};
    const int64_t T = 5, B = 3, I = 4, H = 6;
    for (int c = 0; c < 4; c++)
        for (int dt = 0; dt < 2; dt++) {
            const tg_dtype dtype = dt ? TG_F32 : TG_F64;
            tg_rnn_config rc = {.input_size = I, .hidden_size = H, .num_layers = 2, .bidirectional = true,
                                .batch_first = true, .dropout = 0.3, .dtype = dtype};
            tg_rng seed;
            tg_rng_seed(&seed, 11);
            tg_rnn *m = tg_rnn_new(tg_cell_by_name(names[c]), &rc, &seed);
            cr_assert_not_null(m, "%s", tg_last_error());
            cr_assert_not_null(m->cell->sequence, "%s has no sequence function", names[c]);
            cr_assert_leq(tg_params_count(m->params) + 4, 32);
            tg_tensor *x64 = th_rand(12, TG_SHAPE(B, T, I), -1, 1), *h64 = th_rand(13, TG_SHAPE(4, B, H), -1, 1);
            tg_tensor *c64 = th_rand(15, TG_SHAPE(4, B, H), -1, 1);
            tg_tensor *x = tg_to_dtype(x64, dtype), *h0 = tg_to_dtype(h64, dtype), *c0 = tg_to_dtype(c64, dtype);
            tg_set_requires_grad(x, true);
            tg_set_requires_grad(h0, true);
            tg_set_requires_grad(c0, true);
            const bool two = m->cell->n_states == 2;
            double *got[2][32] = {{0}};
            int64_t len[32] = {0};
            int nt = 0;
            for (int path = 0; path < 2; path++) {
                tg_rng drop;
                tg_rng_seed(&drop, 14);
                tg_rnn_output out;
                tg_tensor *y = tg_rnn_forward(m, x, &(tg_rnn_forward_opts){.init = (tg_tensor *[]){h0, c0}, .train = true,
                                                                          .rng = &drop, .keep_step_states = path == 1},
                                              &out);
                cr_assert_not_null(y, "%s: %s", names[c], tg_last_error());
                tg_tensor *loss = tg_add(tg_sum(tg_mul(y, y)), tg_sum(tg_mul(out.h_n, out.h_n)));
                if (two) loss = tg_add(loss, tg_sum(tg_mul(out.c_n, h0)));
                cr_assert_eq(tg_backward(loss), 0, "%s", tg_last_error());
                const tg_tensor *t[32] = {y, out.h_n, tg_grad(x), tg_grad(h0)};
                nt = 4;
                if (two) { t[nt++] = out.c_n; t[nt++] = tg_grad(c0); }
                for (int i = 0; i < tg_params_count(m->params); i++) t[nt++] = tg_grad(tg_params_at(m->params, i));
                for (int i = 0; i < nt; i++) {
                    cr_assert_not_null(t[i], "%s: tensor %d missing", names[c], i);
                    len[i] = tg_numel(t[i]);
                    got[path][i] = malloc((size_t)len[i] * sizeof(double));
                    for (int64_t j = 0; j < len[i]; j++) got[path][i][j] = tg_get(t[i], j);
                }
                tg_rnn_output_clear(&out);
                tg_tape_reset();
                tg_params_zero_grad(m->params);
                tg_zero_grad(x);
                tg_zero_grad(h0);
                tg_zero_grad(c0);
            }
            for (int i = 0; i < nt; i++) {
                for (int64_t j = 0; j < len[i]; j++)
                    cr_expect_eq(got[0][i][j], got[1][i][j], "%s %s: tensor %d (y, h_n, dx, dh0, [c_n, dc0,] then the "
                                 "parameters' gradients) [%lld]: sequence %.17g, steps %.17g", names[c], dt ? "F32" : "F64", i,
                                 (long long)j, got[0][i][j], got[1][i][j]);
                free(got[0][i]);
                free(got[1][i]);
            }
            tg_release(x64);
            tg_release(h64);
            tg_release(c64);
            tg_release(x);
            tg_release(h0);
            tg_release(c0);
            tg_rnn_free(m);
        }
    cr_expect_eq(tg_live_tensors(), 0);
}

Test(nn, state_shapes_and_step_states) {
    for (int c = 0; c < N_CELLS; c++) {
        tg_rnn *m = th_make_rnn(all_cells[c], 3, 4, 3, true, 300);
        int S = m->cell->n_states;
        tg_tensor *x = th_rand(1, TG_SHAPE(6, 2, 3), -1, 1);
        tg_rnn_output out;
        tg_tensor *y = tg_rnn_forward(m, x, &(tg_rnn_forward_opts){.keep_step_states = true}, &out);
        cr_assert(tg_ndim(y) == 3 && tg_dim(y, 0) == 6 && tg_dim(y, 1) == 2 && tg_dim(y, 2) == 8);
        cr_assert_eq(out.output, y);
        cr_assert_eq(out.n_states, S);
        for (int s = 0; s < S; s++)
            cr_assert(tg_ndim(out.final[s]) == 3 && tg_dim(out.final[s], 0) == 6 && tg_dim(out.final[s], 1) == 2 &&
                      tg_dim(out.final[s], 2) == 4);
        cr_assert_eq(out.h_n, out.final[0]);
        cr_assert((S == 2) == (out.c_n != NULL));
        cr_assert_eq(out.n_step_states, 3 * 2 * S);
        for (int l = 0; l < 3; l++)
            for (int d = 0; d < 2; d++) {
                tg_tensor *h = tg_rnn_step_state(&out, m, l, d, 0);
                cr_assert(tg_ndim(h) == 3 && tg_dim(h, 0) == 6 && tg_dim(h, 2) == 4);
                /* the top layer's step states are its outputs; the last step (first, in reverse) is h_n */
                int64_t last = d ? 0 : 5;
                for (int64_t b = 0; b < 2; b++)
                    for (int64_t j = 0; j < 4; j++) {
                        cr_assert_eq(at3(h, last, b, j), at3(out.h_n, l * 2 + d, b, j));
                        if (l == 2) cr_assert_eq(at3(h, 3, b, j), at3(y, 3, b, 4 * d + j));
                    }
            }
        tg_rnn_output_clear(&out);
        tg_tape_reset();
        tg_release(x);
        tg_rnn_free(m);
    }
}

/* Slices sequence b of x [T,B,I] to its own length: [len,1,I] (new ref). */
static tg_tensor *one_sequence(const tg_tensor *x, int64_t b, int64_t len) {
    int64_t B = tg_dim(x, 1), I = tg_dim(x, 2);
    tg_tensor *r = tg_zeros(TG_F64, TG_SHAPE(len, 1, I));
    for (int64_t t = 0; t < len; t++)
        for (int64_t i = 0; i < I; i++) tg_set(r, t * I + i, tg_get(x, (t * B + b) * I + i));
    return r;
}
static tg_tensor *one_state(const tg_tensor *h0, int64_t b) {
    int64_t K = tg_dim(h0, 0), B = tg_dim(h0, 1), H = tg_dim(h0, 2);
    tg_tensor *r = tg_zeros(TG_F64, TG_SHAPE(K, 1, H));
    for (int64_t k = 0; k < K; k++)
        for (int64_t j = 0; j < H; j++) tg_set(r, k * H + j, tg_get(h0, (k * B + b) * H + j));
    return r;
}

/* Padded batch == each sequence run alone at its own length (outputs, h_n, c_n), both directions,
 * two layers; outputs past the end are exactly zero. */
Test(nn, variable_lengths_match_sequences_run_alone) {
    const int64_t T = 6, B = 4, I = 3, H = 3, lengths[4] = {6, 2, 1, 4};
    const char *cells[2] = {"lstm", "gru"};
    for (int c = 0; c < 2; c++) {
        tg_rnn *m = th_make_rnn(cells[c], I, H, 2, true, 400);
        int S = m->cell->n_states;
        tg_tensor *x = th_rand(40, TG_SHAPE(T, B, I), -1, 1);
        tg_tensor *init[2] = {th_rand(41, TG_SHAPE(4, B, H), -1, 1), th_rand(42, TG_SHAPE(4, B, H), -1, 1)};
        tg_rnn_output out;
        tg_tensor *y = tg_rnn_forward(m, x, &(tg_rnn_forward_opts){.lengths = lengths, .init = init}, &out);
        cr_assert_not_null(y);
        for (int64_t b = 0; b < B; b++) {
            tg_tensor *xb = one_sequence(x, b, lengths[b]);
            tg_tensor *ib[2] = {one_state(init[0], b), one_state(init[1], b)};
            tg_rnn_output ob;
            cr_assert_not_null(tg_rnn_forward(m, xb, &(tg_rnn_forward_opts){.init = ib}, &ob));
            for (int64_t t = 0; t < T; t++)
                for (int64_t j = 0; j < 2 * H; j++) {
                    double v = at3(y, t, b, j);
                    if (t >= lengths[b]) cr_assert_eq(v, 0.0, "%s output[%lld,%lld] past the end", cells[c], (long long)t, (long long)b);
                    else cr_assert(fabs(v - at3(ob.output, t, 0, j)) < 1e-12, "%s output[%lld,%lld,%lld]", cells[c],
                                   (long long)t, (long long)b, (long long)j);
                }
            for (int s = 0; s < S; s++)
                for (int64_t k = 0; k < 4; k++)
                    for (int64_t j = 0; j < H; j++)
                        cr_assert(fabs(at3(out.final[s], k, b, j) - at3(ob.final[s], k, 0, j)) < 1e-12,
                                  "%s final state %d [%lld,%lld,%lld]", cells[c], s, (long long)k, (long long)b,
                                  (long long)j);
            tg_rnn_output_clear(&ob);
            tg_release(xb);
            tg_release(ib[0]);
            tg_release(ib[1]);
        }
        tg_rnn_output_clear(&out);
        tg_tape_reset();
        tg_release(x);
        tg_release(init[0]);
        tg_release(init[1]);
        tg_rnn_free(m);
    }
}

Test(nn, batch_first_equals_time_major_on_transposed_input) {
    tg_rnn *tm = th_make_rnn("gru", 3, 4, 2, true, 500);
    tg_rnn_config cfg = {.input_size = 3, .hidden_size = 4, .num_layers = 2, .bidirectional = true,
                         .batch_first = true, .dtype = TG_F64};
    tg_rng rng;
    tg_rng_seed(&rng, 500);
    tg_rnn *bf = tg_rnn_new(tg_cell_by_name("gru"), &cfg, &rng); /* same seed: same weights */
    int64_t lengths[2] = {5, 3};
    tg_tensor *x = th_rand(50, TG_SHAPE(5, 2, 3), -1, 1);
    tg_tensor *xt = tg_transpose(x, 0, 1); /* [B,T,I] */
    tg_rnn_output a, b;
    tg_tensor *ya = tg_rnn_forward(tm, x, &(tg_rnn_forward_opts){.lengths = lengths}, &a);
    tg_tensor *yb = tg_rnn_forward(bf, xt, &(tg_rnn_forward_opts){.lengths = lengths}, &b);
    cr_assert(tg_dim(yb, 0) == 2 && tg_dim(yb, 1) == 5 && tg_dim(yb, 2) == 8);
    cr_assert_eq(th_max_diff(tg_transpose(yb, 0, 1), ya), 0);
    cr_assert_eq(th_max_diff(a.h_n, b.h_n), 0);
    tg_rnn_output_clear(&a);
    tg_rnn_output_clear(&b);
    tg_tape_reset();
    tg_release(x);
    tg_rnn_free(tm);
    tg_rnn_free(bf);
}

/* Reset-before and reset-after differ on the same weights, and agree when r = 1 (a huge r bias). */
Test(nn, gru_reset_before_vs_after) {
    tg_rnn *after = th_make_rnn("gru", 3, 4, 1, false, 600);
    tg_rnn *before = th_make_rnn("gru_reset_before", 3, 4, 1, false, 601);
    for (int i = 0; i < tg_params_count(after->params); i++)
        tg_copy_(tg_params_at(before->params, i), tg_params_at(after->params, i));
    tg_tensor *x = th_rand(60, TG_SHAPE(5, 2, 3), -1, 1);
    tg_tensor *h0[1] = {th_rand(61, TG_SHAPE(1, 2, 4), -1, 1)};
    tg_rnn_forward_opts o = {.init = h0};
    double d = th_max_diff(tg_rnn_forward(after, x, &o, NULL), tg_rnn_forward(before, x, &o, NULL));
    cr_assert(d > 1e-3, "reset-before and reset-after should differ, max diff %g", d);
    for (int64_t j = 0; j < 4; j++) { /* r block of b_ih: σ(1000) = 1 exactly in double */
        tg_set(tg_rnn_layer(after, 0, 0)->bias_ih, j, 1000.0);
        tg_set(tg_rnn_layer(before, 0, 0)->bias_ih, j, 1000.0);
    }
    d = th_max_diff(tg_rnn_forward(after, x, &o, NULL), tg_rnn_forward(before, x, &o, NULL));
    cr_assert(d < 1e-14, "with r = 1 both GRUs are the same function, max diff %g", d);
    tg_tape_reset();
    tg_release(x);
    tg_release(h0[0]);
    tg_rnn_free(after);
    tg_rnn_free(before);
}

Test(nn, dropout_only_between_layers_and_only_in_training) {
    tg_rnn_config cfg = {.input_size = 3, .hidden_size = 4, .num_layers = 2, .dropout = 0.5, .dtype = TG_F64};
    tg_rng r1, r2;
    tg_rng_seed(&r1, 9);
    tg_rng_seed(&r2, 9);
    tg_rnn *m = tg_rnn_new(tg_cell_by_name("lstm"), &cfg, &r1);
    cfg.dropout = 0;
    tg_rnn *plain = tg_rnn_new(tg_cell_by_name("lstm"), &cfg, &r2);
    tg_tensor *x = th_rand(70, TG_SHAPE(4, 2, 3), -1, 1);
    cr_assert_eq(th_max_diff(tg_rnn_forward(m, x, NULL, NULL), tg_rnn_forward(plain, x, NULL, NULL)), 0);
    tg_rng d1, d2;
    tg_rng_seed(&d1, 1);
    tg_rng_seed(&d2, 1);
    tg_tensor *t1 = tg_rnn_forward(m, x, &(tg_rnn_forward_opts){.train = true, .rng = &d1}, NULL);
    tg_tensor *t2 = tg_rnn_forward(m, x, &(tg_rnn_forward_opts){.train = true, .rng = &d2}, NULL);
    cr_assert_eq(th_max_diff(t1, t2), 0);                                     /* seeded: reproducible */
    cr_assert(th_max_diff(t1, tg_rnn_forward(plain, x, NULL, NULL)) > 1e-6); /* and actually dropping */
    tg_tape_reset();
    tg_release(x);
    tg_rnn_free(m);
    tg_rnn_free(plain);
}

/* ---- truncated BPTT ------------------------------------------------------------------------------- */

/* Copies steps [t0, t1) of x [T,B,I]. returns: new ref */
static tg_tensor *time_range(const tg_tensor *x, int64_t t0, int64_t t1) {
    tg_tensor *v = tg_view_range(x, t0, t1), *c = tg_copy(v);
    tg_release(v);
    return c;
}

Test(nn, tbptt_carry_reproduces_the_unchunked_forward) {
    long base = tg_live_tensors();
    const int64_t T = 7, B = 3;
    int64_t lengths[3] = {7, 7, 7};
    tg_rnn *m = th_make_rnn("lstm", 3, 4, 2, false, 700);
    tg_tensor *x = th_rand(71, TG_SHAPE(T, B, 3), -1, 1);
    tg_rnn_output full;
    tg_rnn_forward(m, x, &(tg_rnn_forward_opts){.lengths = lengths}, &full);
    tg_tensor *y_full = tg_copy(full.output), *h_full = tg_copy(full.h_n), *c_full = tg_copy(full.c_n);
    tg_rnn_output_clear(&full);
    tg_tape_reset();

    const int64_t cuts[4] = {0, 3, 5, 7};
    tg_rnn_carry carry = {0};
    for (int k = 0; k < 3; k++) {
        tg_tensor *xc = time_range(x, cuts[k], cuts[k + 1]);
        tg_rnn_output out;
        tg_tensor *y = tg_rnn_forward(m, xc, &(tg_rnn_forward_opts){.init = carry.state}, &out);
        cr_assert_not_null(y);
        tg_backward(tg_sum(tg_mul(y, y))); /* a training step's backward stops at the carried state */
        for (int64_t t = 0; t < cuts[k + 1] - cuts[k]; t++)
            for (int64_t j = 0; j < B * 4; j++)
                cr_assert_eq(tg_get(y, t * B * 4 + j), tg_get(y_full, (cuts[k] + t) * B * 4 + j));
        cr_assert_eq(tg_rnn_carry_update(&carry, &out), 0);
        tg_rnn_output_clear(&out);
        tg_tape_reset(); /* the carried state survives this */
        tg_release(xc);
        cr_assert_eq(carry.n_states, 2);
        cr_assert(!tg_requires_grad(carry.state[0]) && tg_is_leaf(carry.state[0]));
    }
    cr_assert_eq(th_max_diff(carry.state[0], h_full), 0);
    cr_assert_eq(th_max_diff(carry.state[1], c_full), 0);
    tg_rnn_carry_clear(&carry);
    tg_release(x);
    tg_release(y_full);
    tg_release(h_full);
    tg_release(c_full);
    tg_rnn_free(m);
    cr_assert_eq(tg_live_tensors(), base);
}

typedef struct chunk_case {
    tg_rnn *m;
    tg_tensor *const *carried; /* detached state from the previous chunk */
} chunk_case;

/* inputs: x1 (chunk 1), x2 (chunk 2), then the parameters. Chunk 2 starts from the detached state
 * carried from a chunk-1 run made before the check - as a training loop does. */
static tg_tensor *two_chunks_fn(tg_tensor *const *in, int n, void *user) {
    (void)n;
    chunk_case *cc = user;
    tg_tensor *y1 = tg_rnn_forward(cc->m, in[0], NULL, NULL);
    tg_rnn_output o2;
    if (!tg_rnn_forward(cc->m, in[1], &(tg_rnn_forward_opts){.init = cc->carried}, &o2)) return NULL;
    tg_tensor *parts[4] = {y1, o2.output, o2.final[0], o2.final[1]};
    tg_rnn_output_clear(&o2);
    return th_cat_flat(4, parts);
}

/* Sum of (proj ⊙ y) losses backwarded chunk by chunk: the accumulated parameter gradients (new refs). */
static void chunked_grads(tg_rnn *m, tg_tensor *x1, tg_tensor *x2, tg_tensor **grads) {
    tg_params_zero_grad(m->params);
    tg_rnn_carry carry = {0};
    tg_tensor *xs[2] = {x1, x2};
    for (int k = 0; k < 2; k++) {
        tg_rnn_output out;
        tg_rnn_forward(m, xs[k], &(tg_rnn_forward_opts){.init = carry.state}, &out);
        tg_tensor *loss = tg_sum(tg_mul(out.output, out.output));
        if (k == 1) loss = tg_add(loss, tg_add(tg_sum(out.h_n), tg_sum(out.c_n)));
        cr_assert_eq(tg_backward(loss), 0);
        tg_rnn_carry_update(&carry, &out);
        tg_rnn_output_clear(&out);
        tg_tape_reset();
    }
    tg_rnn_carry_clear(&carry);
    for (int i = 0; i < tg_params_count(m->params); i++) grads[i] = tg_copy(tg_grad(tg_params_at(m->params, i)));
    tg_params_zero_grad(m->params);
}

Test(nn, tbptt_gradcheck_of_a_chunked_run) {
    long base = tg_live_tensors();
    tg_rnn *m = th_make_rnn("lstm", 3, 3, 1, false, 800);
    tg_tensor *x1 = th_rand(81, TG_SHAPE(3, 2, 3), -1, 1), *x2 = th_rand(82, TG_SHAPE(4, 2, 3), -1, 1);
    tg_rnn_carry carry = {0};
    tg_rnn_output o1;
    tg_rnn_forward(m, x1, NULL, &o1);
    tg_rnn_carry_update(&carry, &o1);
    tg_rnn_output_clear(&o1);
    tg_tape_reset();

    /* gradcheck: chunk 1 from zeros, chunk 2 from the carried (constant) state */
    chunk_case cc = {m, carry.state};
    tg_tensor *inputs[16] = {x1, x2};
    int n = 2;
    for (int i = 0; i < tg_params_count(m->params); i++) inputs[n++] = tg_params_at(m->params, i);
    tg_set_requires_grad(x1, true);
    tg_set_requires_grad(x2, true);
    cr_assert(tg_gradcheck(two_chunks_fn, &cc, inputs, n, NULL, NULL));

    /* the chunked training loop's gradients are exactly those of that function (carry = constant) */
    tg_tensor *tb[8];
    chunked_grads(m, x1, x2, tb);
    tg_tensor *y1 = tg_rnn_forward(m, x1, NULL, NULL);
    tg_rnn_output o2;
    tg_rnn_forward(m, x2, &(tg_rnn_forward_opts){.init = carry.state}, &o2);
    tg_tensor *loss = tg_add(tg_add(tg_sum(tg_mul(y1, y1)), tg_sum(tg_mul(o2.output, o2.output))),
                             tg_add(tg_sum(o2.h_n), tg_sum(o2.c_n)));
    tg_rnn_output_clear(&o2);
    cr_assert_eq(tg_backward(loss), 0);
    for (int i = 0; i < tg_params_count(m->params); i++) {
        cr_assert(th_max_diff(tb[i], tg_grad(tg_params_at(m->params, i))) < 1e-12, "%s",
                  tg_params_name_at(m->params, i));
        tg_release(tb[i]);
    }
    tg_tape_reset();
    tg_rnn_carry_clear(&carry);
    tg_release(x1);
    tg_release(x2);
    tg_rnn_free(m);
    cr_assert_eq(tg_live_tensors(), base);
}

/* ---- user cells ------------------------------------------------------------------------------------ */

static const char *const leaky_extra[] = {"leak"};

/* A user-defined cell: h' = σ(a) ⊙ tanh(x W_ihᵀ + b_ih + h W_hhᵀ + b_hh) + (1 − σ(a)) ⊙ x, with a
 * learned per-unit leak a [H] (an extra parameter) and a skip from the raw input (needs I == H). */
static int leaky_make(const tg_cell *cell, int64_t I, int64_t H, bool bias, tg_dtype dt, tg_rng *rng,
                      tg_cell_params *out) {
    if (I != H) { tg_error("leaky_make", "input size %lld must equal hidden size %lld", (long long)I, (long long)H); return -1; }
    if (tg_cell_standard_params(cell, I, H, bias, dt, rng, out)) return -1;
    out->extra[0] = tg_rand_uniform(rng, dt, TG_SHAPE(H), -1, 1);
    return 0;
}
static int leaky_step(const tg_cell *cell, const tg_cell_params *p, const tg_tensor *x, const tg_tensor *xproj,
                      tg_tensor *const *state, tg_tensor **out) {
    (void)cell;
    /* u = tanh(x W_ihᵀ + b_ih + h W_hhᵀ + b_hh) */
    tg_tensor *u = tg_tanh(tg_add(xproj, tg_linear(state[0], p->weight_hh, p->bias_hh)));
    /* k = σ(a) */
    tg_tensor *k = tg_sigmoid(p->extra[0]);
    /* h' = k ⊙ u + (1 − k) ⊙ x */
    out[0] = tg_add(tg_mul(k, u), tg_mul(tg_rsub_scalar(1.0, k), x));
    return out[0] ? 0 : -1;
}
static const tg_cell leaky_cell = {
    .name = "leaky_skip", .gates = 1, .n_states = 1, .forget_gate = -1, .n_extra = 1, .extra_names = leaky_extra,
    .needs_input = true, .make_params = leaky_make, .step = leaky_step};

Test(nn, user_cell_registers_and_runs_without_touching_the_runner) {
    int before = tg_cell_count();
    cr_assert_eq(tg_cell_register(&leaky_cell), 0);
    cr_assert_eq(tg_cell_count(), before + 1);
    cr_assert_eq(tg_cell_by_name("leaky_skip"), &leaky_cell);
    tg_rnn *m = th_make_rnn("leaky_skip", 3, 3, 2, false, 900);
    cr_assert_not_null(tg_params_find(m->params, "leak_l1"));
    cr_assert_eq(tg_rnn_layer(m, 1, 0)->extra[0], tg_params_find(m->params, "leak_l1"));
    tg_tensor *x = th_rand(90, TG_SHAPE(4, 2, 3), -1, 1);
    tg_tensor *h0[1] = {th_rand(91, TG_SHAPE(2, 2, 3), -1, 1)};
    int64_t lengths[2] = {4, 2};
    th_rnn_case rc = {.m = m, .n_init = 1, .opts = {.lengths = lengths}};
    th_check_grads(&rc, x, h0, "user cell");
    tg_release(x);
    tg_release(h0[0]);
    tg_rnn_free(m);
}

/* ---- misuse and leaks -------------------------------------------------------------------------------- */

Test(nn, errors_name_the_function_and_leak_nothing) {
    long base = tg_live_tensors();
    th_record_errors();
    tg_rnn *m = th_make_rnn("lstm", 8, 4, 1, false, 1);
    tg_tensor *x = th_rand(1, TG_SHAPE(5, 3, 7), -1, 1);

    cr_assert_null(tg_rnn_forward(m, x, NULL, NULL));
    cr_assert(strstr(th_last_message(), "tg_rnn_forward: x [5,3,7]: expected input size 8"), "%s", th_last_message());
    th_reset_errors();

    cr_assert_null(tg_cell_by_name("lstmm"));
    cr_assert(strstr(th_last_message(), "tg_cell_by_name") && strstr(th_last_message(), "'lstmm'") &&
              strstr(th_last_message(), "gru_reset_before"), "%s", th_last_message());
    /* a constructor given the failed lookup adds no message of its own: one per lookup */
    cr_assert_null(tg_rnn_new(tg_cell_by_name("lstmm"), &(tg_rnn_config){.input_size = 1, .hidden_size = 1}, NULL));
    cr_assert_eq(th_error_count(), 2);
    cr_assert(strstr(th_last_message(), "tg_cell_by_name"), "%s", th_last_message());
    th_reset_errors();

    tg_tensor *x8 = th_rand(2, TG_SHAPE(5, 3, 8), -1, 1);
    int64_t bad_len[3] = {5, 0, 2};
    cr_assert_null(tg_rnn_forward(m, x8, &(tg_rnn_forward_opts){.lengths = bad_len}, NULL));
    cr_assert(strstr(th_last_message(), "tg_rnn_forward") && strstr(th_last_message(), "lengths[1] = 0"), "%s",
              th_last_message());
    th_reset_errors();

    tg_tensor *h0 = th_rand(3, TG_SHAPE(1, 2, 4), -1, 1);
    tg_tensor *init[2] = {h0, NULL};
    tg_rnn_output out;
    cr_assert_null(tg_rnn_forward(m, x8, &(tg_rnn_forward_opts){.init = init}, &out));
    cr_assert(strstr(th_last_message(), "tg_rnn_forward: initial state h0 [1,2,4]"), "%s", th_last_message());
    cr_assert_null(out.output);
    th_reset_errors();

    cr_assert_null(tg_rnn_forward(m, NULL, NULL, NULL));
    cr_assert(strstr(th_last_message(), "tg_rnn_forward"), "%s", th_last_message());
    th_reset_errors();

    tg_tensor *x32 = tg_zeros(TG_F32, TG_SHAPE(5, 3, 8));
    cr_assert_null(tg_rnn_forward(m, x32, NULL, NULL));
    cr_assert(strstr(th_last_message(), "F32") && strstr(th_last_message(), "F64"), "%s", th_last_message());
    th_reset_errors();

    cr_assert_null(tg_rnn_new(tg_cell_by_name("gru"), &(tg_rnn_config){.input_size = 3, .hidden_size = 0}, NULL));
    cr_assert(strstr(th_last_message(), "tg_rnn_new") && strstr(th_last_message(), "hidden size 0"), "%s",
              th_last_message());
    th_reset_errors();

    cr_assert_eq(tg_rnn_init(m, &(tg_rnn_init_opts){.set_forget_bias = true, .forget_bias = 1}, NULL), 0);
    tg_rnn *rnn = th_make_rnn("rnn_tanh", 2, 2, 1, false, 1);
    cr_assert_eq(tg_rnn_init(rnn, &(tg_rnn_init_opts){.set_forget_bias = true, .forget_bias = 1}, NULL), -1);
    cr_assert(strstr(th_last_message(), "tg_rnn_init") && strstr(th_last_message(), "rnn_tanh"), "%s",
              th_last_message());
    th_reset_errors();

    cr_assert_eq(tg_cell_register(tg_cell_by_name("lstm")), -1); /* name taken */
    cr_assert(strstr(th_last_message(), "tg_cell_register"), "%s", th_last_message());
    th_reset_errors();

    /* a user cell whose make_params fails: nothing half-built is left behind */
    cr_assert_eq(tg_cell_register(&leaky_cell), 0);
    cr_assert_null(tg_rnn_new(tg_cell_by_name("leaky_skip"), &(tg_rnn_config){.input_size = 3, .hidden_size = 4}, NULL));
    cr_assert(strstr(th_last_message(), "leaky_make"), "%s", th_last_message());
    th_reset_errors();

    cr_assert_eq(tg_init_orthogonal_(h0, 1, NULL, 1), -1);
    cr_assert(strstr(th_last_message(), "tg_init_orthogonal_: [1,2,4]"), "%s", th_last_message());
    th_reset_errors();

    tg_tape_reset();
    tg_release(x);
    tg_release(x8);
    tg_release(x32);
    tg_release(h0);
    tg_rnn_free(m);
    tg_rnn_free(rnn);
    tg_rnn_free(NULL);
    cr_assert_eq(tg_live_tensors(), base);
}

Test(nn, bad_input_aborts_with_the_default_handler, .signal = SIGABRT) {
    tg_rnn *m = th_make_rnn("gru", 8, 4, 1, false, 1);
    tg_tensor *x = tg_zeros(TG_F64, TG_SHAPE(5, 3, 7));
    tg_rnn_forward(m, x, NULL, NULL);
}

Test(nn, live_tensors_return_to_start_after_training_steps) {
    long base = tg_live_tensors();
    for (int c = 0; c < N_CELLS; c++) {
        tg_rnn_config cfg = {.input_size = 3, .hidden_size = 4, .num_layers = 2, .bidirectional = true,
                             .dropout = 0.2, .learn_init = true, .dtype = TG_F64};
        tg_rnn *m = tg_rnn_new(tg_cell_by_name(all_cells[c]), &cfg, NULL);
        tg_tensor *x = th_rand(1, TG_SHAPE(5, 2, 3), -1, 1);
        tg_set_requires_grad(x, true);
        int64_t lengths[2] = {3, 5};
        tg_rnn_carry carry = {0};
        for (int step = 0; step < 3; step++) {
            tg_rnn_output out;
            tg_tensor *y = tg_rnn_forward(m, x, &(tg_rnn_forward_opts){.lengths = lengths, .init = carry.state,
                                                                       .train = true, .keep_step_states = true}, &out);
            cr_assert_eq(tg_backward(tg_mean(tg_mul(y, y))), 0);
            cr_assert_not_null(tg_grad(tg_params_at(m->params, 0)));
            tg_rnn_carry_update(&carry, &out);
            tg_rnn_output_clear(&out);
            tg_tape_reset();
        }
        tg_rnn_carry_clear(&carry);
        tg_release(x);
        tg_rnn_free(m);
    }
    cr_assert_eq(tg_live_tensors(), base);
}

/* ---- PyTorch conformance cases ------------------------------------------------------------------ */

/* One case of tests/data/conformance (PyTorch 1.13 references, see ../shared/conformance/README.md):
 * run the stacked network through tg_rnn_forward, back-propagate loss = Σ y⊙dy + Σ hn⊙dhn (+ Σ cn⊙dcn)
 * and compare every tensor of the ref file with its pass rule. Returns the worst error / budget. */
static double run_conformance(const char *case_path, const char *ref_path) {
    tg_st_file *cf = tg_st_load(case_path), *rf = tg_st_load(ref_path);
    cr_assert(cf && rf, "%s: %s", case_path, tg_last_error());
    const char *cell = tg_st_meta(cf, "cell");
    int L = atoi(tg_st_meta(cf, "layers"));
    tg_tensor *x = tg_st_get(cf, "x"), *h0 = tg_st_get(cf, "h0"), *c0 = tg_st_get(cf, "c0");
    tg_dtype dt = tg_dtype_of(x);
    tg_rnn_config cfg = {.input_size = tg_dim(x, 2), .hidden_size = tg_dim(h0, 2), .num_layers = L, .dtype = dt};
    tg_rnn *m = tg_rnn_new(tg_cell_by_name(cell), &cfg, NULL);
    cr_assert_not_null(m);
    for (int i = 0; i < tg_params_count(m->params); i++) {
        tg_tensor *src = tg_st_get(cf, tg_params_name_at(m->params, i));
        cr_assert(src && tg_same_shape(src, tg_params_at(m->params, i)), "%s: %s", case_path,
                  tg_params_name_at(m->params, i));
        tg_copy_(tg_params_at(m->params, i), src);
    }
    tg_set_requires_grad(x, true);
    tg_set_requires_grad(h0, true);
    if (c0) tg_set_requires_grad(c0, true);
    tg_tensor *init[2] = {h0, c0};
    tg_rnn_output out;
    tg_tensor *y = tg_rnn_forward(m, x, &(tg_rnn_forward_opts){.init = init}, &out);
    cr_assert_not_null(y, "%s", case_path);
    tg_tensor *loss = tg_add(tg_sum(tg_mul(y, tg_st_get(cf, "dy"))), tg_sum(tg_mul(out.h_n, tg_st_get(cf, "dhn"))));
    if (out.c_n) loss = tg_add(loss, tg_sum(tg_mul(out.c_n, tg_st_get(cf, "dcn"))));
    cr_assert_eq(tg_backward(loss), 0);
    double atol = dt == TG_F64 ? 1e-9 : 2e-4, rtol = dt == TG_F64 ? 1e-7 : 2e-3, worst = 0;
    for (int i = 0; i < tg_st_count(rf); i++) {
        const char *name = tg_st_name_at(rf, i);
        tg_tensor *ref = tg_st_tensor_at(rf, i), *got = NULL;
        if (!strcmp(name, "y")) got = y;
        else if (!strcmp(name, "hn")) got = out.h_n;
        else if (!strcmp(name, "cn")) got = out.c_n;
        else if (!strncmp(name, "grad.", 5)) {
            tg_tensor *leaf = !strcmp(name + 5, "x") ? x : !strcmp(name + 5, "h0") ? h0 : !strcmp(name + 5, "c0") ? c0
                            : tg_params_find(m->params, name + 5);
            got = leaf ? tg_grad(leaf) : NULL;
        }
        cr_assert(got && tg_same_shape(got, ref) && tg_dtype_of(got) == tg_dtype_of(ref), "%s: %s missing or mis-shaped",
                  case_path, name);
        double scale = 1;
        for (int64_t j = 0; j < tg_numel(ref); j++) scale = fmax(scale, fabs(tg_get(ref, j)));
        for (int64_t j = 0; j < tg_numel(ref); j++) {
            double r = tg_get(ref, j), budget = atol * scale + rtol * fabs(r), err = fabs(tg_get(got, j) - r);
            worst = fmax(worst, err / budget);
            cr_assert(err <= budget, "%s: %s[%lld] = %.17g, reference %.17g", case_path, name, (long long)j,
                      tg_get(got, j), r);
        }
    }
    tg_rnn_output_clear(&out);
    tg_tape_reset();
    tg_rnn_free(m);
    tg_st_free(cf);
    tg_st_free(rf);
    return worst;
}

Test(nn, conformance_cases_match_pytorch, .timeout = 300) {
    const char *dir = TG_TEST_DATA_DIR "/conformance";
    DIR *d = opendir(dir);
    cr_assert_not_null(d, "cannot open %s", dir);
    int n = 0;
    double worst = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        size_t len = strlen(e->d_name), suf = strlen(".case.safetensors");
        if (len <= suf || strcmp(e->d_name + len - suf, ".case.safetensors")) continue;
        char case_path[1024], ref_path[1024];
        snprintf(case_path, sizeof case_path, "%s/%s", dir, e->d_name);
        snprintf(ref_path, sizeof ref_path, "%s/%.*s.ref.safetensors", dir, (int)(len - suf), e->d_name);
        worst = fmax(worst, run_conformance(case_path, ref_path));
        n++;
    }
    closedir(d);
    cr_log_info("%d conformance cases, worst error %.1f%% of the budget", n, 100 * worst);
    cr_assert_geq(n, 1);
}

/* The fused LSTM and GRU steps' pointwise part runs its rows on the GEMM's worker threads when the step
 * is large enough (autograd/ops_fused.c, for_rows): one and two threads must give bit-identical outputs
 * and gradients. B = 8, H = 512: 8 x 2048 (LSTM) or 8 x 1536 (GRU: under the threshold of 16384, so the
 * GRU runs B = 16) elements per step. */
static void step_run(const char *cell, int64_t B, int threads, tg_tensor **y_out, tg_tensor **grads) {
    tg_set_num_threads(threads);
    tg_rng rng;
    tg_rng_seed(&rng, 3);
    tg_rnn_config rc = {.input_size = 16, .hidden_size = 512, .num_layers = 1, .dtype = TG_F32};
    tg_rnn *rnn = tg_rnn_new(tg_cell_by_name(cell), &rc, &rng);
    cr_assert_not_null(rnn);
    tg_tensor *x = tg_rand_normal(&rng, TG_F32, TG_SHAPE(4, B, 16), 0, 1);
    tg_tensor *y = tg_rnn_forward(rnn, x, NULL, NULL);
    cr_assert_not_null(y, "%s", tg_last_error());
    cr_assert_eq(tg_backward(tg_sum(tg_mul(y, y))), 0, "%s", tg_last_error());
    *y_out = tg_add_scalar(y, 0.0);
    tg_retain(*y_out);
    const char *names[4] = {"weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0"};
    for (int k = 0; k < 4; k++) {
        const tg_tensor *w = tg_params_find(rnn->params, names[k]);
        cr_assert(w && tg_grad(w), "%s", names[k]);
        grads[k] = tg_retain((tg_tensor *)tg_grad(w));
    }
    tg_tape_reset();
    tg_release(x);
    tg_rnn_free(rnn);
    tg_set_num_threads(1);
}

static void step_two_threads_bit_identical(const char *cell, int64_t B) {
    tg_tensor *y1, *y2, *g1[4] = {0}, *g2[4] = {0};
    step_run(cell, B, 1, &y1, g1);
    step_run(cell, B, 2, &y2, g2);
    cr_assert_eq(memcmp(tg_data(y1), tg_data(y2), (size_t)tg_numel(y1) * sizeof(float)), 0, "%s: outputs differ", cell);
    for (int k = 0; k < 4; k++) {
        cr_assert(g1[k] && g2[k]);
        cr_expect_eq(memcmp(tg_data(g1[k]), tg_data(g2[k]), (size_t)tg_numel(g1[k]) * sizeof(float)), 0,
                     "%s: gradient %d differs", cell, k);
        tg_release(g1[k]);
        tg_release(g2[k]);
    }
    tg_release(y1);
    tg_release(y2);
}

Test(nn, lstm_step_two_threads_bit_identical) { step_two_threads_bit_identical("lstm", 8); }
Test(nn, gru_step_two_threads_bit_identical) { step_two_threads_bit_identical("gru", 16); }
/* lstm_fgr's gates (tg_lstm_fgr_gates_, autograd/ops_zoo_lstm.c) cut their rows the same way: 8 x 2048 */
Test(nn, lstm_fgr_step_two_threads_bit_identical) { step_two_threads_bit_identical("lstm_fgr", 8); }

/* A whole training step's serial parts also run on two threads when large (tensor/pool.h tg__pool_for):
 * the stack of the outputs and its backward, the loss's sub/mul/mean and their backwards, the bias
 * sums, the zero-fill of the input projection's gradient. T = 32, B = 8, H = 512 is over every
 * threshold (the stack: 32 inputs of 16 KB; the loss: 131072 elements); one and two threads must give
 * the same loss, output and gradients, bit for bit. */
static void mse_step_run(int threads, tg_tensor **y_out, double *loss, tg_tensor **grads) {
    tg_set_num_threads(threads);
    tg_rng rng;
    tg_rng_seed(&rng, 5);
    tg_rnn_config rc = {.input_size = 16, .hidden_size = 512, .num_layers = 1, .dtype = TG_F32};
    tg_rnn *rnn = tg_rnn_new(tg_cell_by_name("lstm"), &rc, &rng);
    cr_assert_not_null(rnn);
    tg_tensor *x = tg_rand_normal(&rng, TG_F32, TG_SHAPE(32, 8, 16), 0, 1);
    tg_tensor *target = tg_rand_normal(&rng, TG_F32, TG_SHAPE(32, 8, 512), 0, 0.5);
    tg_tensor *y = tg_rnn_forward(rnn, x, NULL, NULL);
    cr_assert_not_null(y, "%s", tg_last_error());
    tg_tensor *l = tg_mse_loss(y, target, TG_REDUCE_MEAN);
    cr_assert_not_null(l, "%s", tg_last_error());
    *loss = tg_item(l);
    cr_assert_eq(tg_backward(l), 0, "%s", tg_last_error());
    *y_out = tg_add_scalar(y, 0.0);
    tg_retain(*y_out);
    const char *names[4] = {"weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0"};
    for (int k = 0; k < 4; k++) {
        const tg_tensor *w = tg_params_find(rnn->params, names[k]);
        cr_assert(w && tg_grad(w), "%s", names[k]);
        grads[k] = tg_retain((tg_tensor *)tg_grad(w));
    }
    tg_tape_reset();
    tg_release(x);
    tg_release(target);
    tg_rnn_free(rnn);
    tg_set_num_threads(1);
}

Test(nn, mse_training_step_two_threads_bit_identical) {
    tg_tensor *y1, *y2, *g1[4] = {0}, *g2[4] = {0};
    double l1, l2;
    mse_step_run(1, &y1, &l1, g1);
    mse_step_run(2, &y2, &l2, g2);
    cr_assert_eq(memcmp(&l1, &l2, sizeof l1), 0, "loss differs: %.17g vs %.17g", l1, l2);
    cr_assert_eq(memcmp(tg_data(y1), tg_data(y2), (size_t)tg_numel(y1) * sizeof(float)), 0, "outputs differ");
    for (int k = 0; k < 4; k++) {
        cr_assert(g1[k] && g2[k]);
        cr_expect_eq(memcmp(tg_data(g1[k]), tg_data(g2[k]), (size_t)tg_numel(g1[k]) * sizeof(float)), 0,
                     "gradient %d differs", k);
        tg_release(g1[k]);
        tg_release(g2[k]);
    }
    tg_release(y1);
    tg_release(y2);
}

/* Ops that split their work over the pool, at 1 and 2 threads: the mean's backward, and a stack of 40
 * inputs of 16 KB with one input stacked twice (its two copies add into one gradient) and one that
 * needs no gradient; with add, sub, mul, div of equal shapes around them (100003 elements: not a
 * multiple of any block; a and b distinct, and a op a, where both gradients land in one buffer). */
static void pool_ops_run(int threads, double *out, int64_t n_out) {
    tg_set_num_threads(threads);
    tg_rng rng;
    tg_rng_seed(&rng, 11);
    tg_tensor *a = tg_rand_normal(&rng, TG_F32, TG_SHAPE(100003), 0, 1);
    tg_tensor *b = tg_rand_uniform(&rng, TG_F32, TG_SHAPE(100003), 0.5, 2);
    tg_set_requires_grad(a, true);
    tg_set_requires_grad(b, true);
    tg_tensor *xs[40];
    for (int i = 0; i < 40; i++) {
        xs[i] = tg_rand_normal(&rng, TG_F32, TG_SHAPE(64, 64), 0, 1);
        tg_set_requires_grad(xs[i], i != 9);
    }
    tg_tensor *list[40];
    for (int i = 0; i < 40; i++) list[i] = xs[i == 7 ? 3 : i];
    tg_tensor *s = tg_stack(40, list);
    tg_tensor *w = tg_rand_normal(&rng, TG_F32, TG_SHAPE(40, 64, 64), 0, 1);
    tg_tensor *terms[6] = {tg_sum(tg_mul(tg_add(a, b), a)), tg_sum(tg_sub(a, b)), tg_sum(tg_div(a, b)),
                           tg_sum(tg_mul(b, b)), tg_mean(tg_add(a, a)), tg_sum(tg_mul(s, w))};
    tg_tensor *total = terms[0];
    for (int i = 1; i < 6; i++) total = tg_add(total, terms[i]);
    cr_assert_not_null(total, "%s", tg_last_error());
    cr_assert_eq(tg_backward(total), 0, "%s", tg_last_error());
    int64_t k = 0;
    out[k++] = tg_item(total);
    const tg_tensor *grads[3] = {tg_grad(a), tg_grad(b), NULL};
    for (int t = 0; t < 2; t++)
        for (int64_t i = 0; i < 100003; i++) out[k++] = tg_get(grads[t], i);
    for (int i = 0; i < 40; i++) {
        cr_assert_eq(tg_grad(xs[i]) == NULL, i == 9 || i == 7, "input %d's gradient", i);
        if (tg_grad(xs[i]))
            for (int64_t e = 0; e < 64 * 64; e++) out[k++] = tg_get(tg_grad(xs[i]), e);
    }
    for (int64_t e = 0; e < 40 * 64 * 64; e++) out[k++] = tg_get(s, e);
    /* the input stacked at 3 and 7 gets both blocks of d(s ⊙ w)/ds = w, added in float */
    for (int64_t e = 0; e < 64 * 64; e++) {
        const float want = (float)tg_get(w, 3 * 4096 + e) + (float)tg_get(w, 7 * 4096 + e);
        cr_assert_eq((float)tg_get(tg_grad(xs[3]), e), want, "%d threads: the twice-stacked input's gradient %lld",
                     threads, (long long)e);
    }
    cr_assert_eq(k, n_out);
    tg_tape_reset();
    tg_release(a);
    tg_release(b);
    tg_release(w);
    for (int i = 0; i < 40; i++) tg_release(xs[i]);
    tg_set_num_threads(1);
}

Test(nn, pool_split_ops_two_threads_bit_identical) {
    const int64_t n = 1 + 2 * 100003 + 38 * 64 * 64 + 40 * 64 * 64;
    double *o1 = malloc((size_t)n * sizeof *o1), *o2 = malloc((size_t)n * sizeof *o2);
    cr_assert(o1 && o2);
    pool_ops_run(1, o1, n);
    pool_ops_run(2, o2, n);
    int64_t first = -1;
    for (int64_t i = 0; i < n && first < 0; i++)
        if (memcmp(&o1[i], &o2[i], sizeof o1[i])) first = i;
    cr_assert_eq(first, -1, "value %lld differs: %.9g vs %.9g", (long long)first, first >= 0 ? o1[first] : 0,
                 first >= 0 ? o2[first] : 0);
    free(o1);
    free(o2);
}
