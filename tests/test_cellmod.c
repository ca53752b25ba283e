/* tests/test_cellmod.c - cell modules (<tapegrad/cellmod.h>) against torch.nn.RNNCell / LSTMCell /
 * GRUCell (tests/data/cellmod_golden.h from gen_cellmod_golden.py, torch 1.13): T chained steps,
 * batched and unbatched, hx given or zeros, bias or not; the values of every h_t (c_t) and the
 * gradients of x, hx and every parameter, F64 to 1e-12 and F32. Also: torch's init range and names,
 * a save/load round trip, torch's shape rules and messages, and every registered cell stepping like
 * one step of tg_rnn_forward. Then the runner on unbatched [T,I] sequences against torch.nn.RNN /
 * LSTM / GRU (tests/data/unbatched_golden.h from gen_unbatched_golden.py) and torch's hx rank rule.
 * Last, empty batches (x [0,I], [T,0,I]) and zero-length sequences as torch 1.13 has them
 * (tests/data/empty_golden.h from gen_empty_golden.py). */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "data/cellmod_golden.h"
#include "helpers.h"

#include <tapegrad/tapegrad.h>

static void setup(void) {
    th_live_start();
    th_dir_make();
}
TestSuite(cellmod, .init = setup, .fini = th_dir_remove);

static const char *const g_param_names[4] = {"weight_ih", "weight_hh", "bias_ih", "bias_hh"};

/* |t - ref| <= atol + rtol |ref| elementwise */
static void expect_close(const tg_tensor *t, const double *ref, double atol, double rtol, const char *what,
                         const char *name) {
    cr_assert_not_null(t, "%s: %s is NULL", name, what);
    for (int64_t i = 0; i < tg_numel(t); i++)
        cr_assert(fabs(tg_get(t, i) - ref[i]) <= atol + rtol * fabs(ref[i]), "%s: %s[%lld] = %.17g, torch %.17g", name,
                  what, (long long)i, tg_get(t, i), ref[i]);
}

static tg_tensor *leaf(tg_dtype dt, int ndim, const int64_t *shape, const double *v, bool grad) {
    tg_tensor *t = tg_from_f64(dt, ndim, shape, v);
    tg_set_requires_grad(t, grad);
    return t;
}

/* The parameter `name` of ps = torch's values v (the test fails if there is none). */
static void set_param(tg_params *ps, const char *name, const double *v, tg_dtype dt, const char *what) {
    tg_tensor *p = tg_params_find(ps, name);
    cr_assert_not_null(p, "%s: no parameter '%s'", what, name);
    tg_tensor *src = tg_from_f64(dt, tg_ndim(p), tg_shape(p), v);
    tg_copy_(p, src);
    tg_release(src);
}

/* One golden case in dtype dt; returns after checking everything. */
static void run_case(const cm_case *c, tg_dtype dt, double atol, double rtol) {
    tg_cellmod *m = tg_cellmod_new(tg_cell_by_name(c->cell),
                                   &(tg_cellmod_config){.input_size = CM_I, .hidden_size = CM_H, .no_bias = !c->bias,
                                                        .dtype = dt}, NULL);
    cr_assert_not_null(m, "%s", c->name);
    cr_assert_eq(tg_params_count(m->params), c->bias ? 4 : 2, "%s", c->name);
    for (int i = 0; i < 4; i++) {
        cr_assert_eq(tg_params_find(m->params, g_param_names[i]) != NULL, c->param[i] != NULL, "%s: %s", c->name,
                     g_param_names[i]);
        if (c->param[i]) set_param(m->params, g_param_names[i], c->param[i], dt, c->name);
    }
    int S = c->n_states;
    int nd = c->batched ? 2 : 1;                 /* a step's x [B,I] | [I], h [B,H] | [H] */
    int64_t xs[3] = {CM_T, CM_B, CM_I}, hs[2] = {CM_B, CM_H};
    if (!c->batched) xs[1] = CM_I;
    tg_tensor *x = leaf(dt, nd + 1, xs, c->x, true);
    tg_tensor *hx[2] = {NULL, NULL}, *w[2] = {NULL, NULL};
    int64_t ws[3] = {CM_T, CM_B, CM_H};
    if (!c->batched) ws[1] = CM_H;
    for (int s = 0; s < S; s++) {
        if (c->has_hx) hx[s] = leaf(dt, nd, c->batched ? hs : hs + 1, c->hx[s], true);
        w[s] = leaf(dt, nd + 1, ws, c->w[s], false);
    }
    tg_tensor *state[2] = {hx[0], hx[1]}, *outs[2][CM_T];
    tg_tensor *loss = NULL;
    for (int t = 0; t < CM_T; t++) {
        cr_assert_eq(tg_cellmod_forward(m, tg_select(x, t), c->has_hx || t ? state : NULL, state), 0, "%s step %d",
                     c->name, t);
        for (int s = 0; s < S; s++) {
            cr_assert_eq(tg_ndim(state[s]), nd, "%s: state %d has %d dims", c->name, s, tg_ndim(state[s]));
            outs[s][t] = state[s];
            tg_tensor *term = tg_sum(tg_mul(state[s], tg_select(w[s], t)));
            loss = loss ? tg_add(loss, term) : term;
        }
    }
    cr_assert_eq(tg_backward(loss), 0);
    for (int s = 0; s < S; s++) {
        char what[32];
        snprintf(what, sizeof what, "state %d", s);
        expect_close(tg_stack(CM_T, outs[s]), c->out[s], atol, rtol, what, c->name);
        if (c->has_hx) {
            snprintf(what, sizeof what, "grad hx[%d]", s);
            expect_close(tg_grad(hx[s]), c->grad_hx[s], atol, rtol, what, c->name);
        }
    }
    expect_close(tg_grad(x), c->grad_x, atol, rtol, "grad x", c->name);
    for (int i = 0; i < 4; i++)
        if (c->param[i])
            expect_close(tg_grad(tg_params_find(m->params, g_param_names[i])), c->grad_param[i], atol, rtol,
                         g_param_names[i], c->name);
    tg_tape_reset();
    for (int s = 0; s < 2; s++) {
        tg_release(hx[s]);
        tg_release(w[s]);
    }
    tg_release(x);
    tg_cellmod_free(m);
}

TH_TEST(cellmod, chained_steps_match_torch_f64, th_live_check) {
    /* measured: every value within 1e-15 + 1e-14 |torch| (e.g. 6.4e-16 on a weight gradient of 0.026) */
    for (int c = 0; c < CM_N_CASES; c++) run_case(&cm_cases[c], TG_F64, 1e-14, 1e-12);
}

TH_TEST(cellmod, chained_steps_match_torch_f32, th_live_check) {
    for (int c = 0; c < CM_N_CASES; c++) run_case(&cm_cases[c], TG_F32, 2e-6, 2e-5);
}

/* The golden table walks every torch class with both layouts, with and without hx and bias. */
TH_TEST(cellmod, golden_cases_cover_every_torch_cell, th_live_check) {
    const char *cells[] = {"rnn_tanh", "rnn_relu", "lstm", "gru"};
    for (size_t k = 0; k < sizeof cells / sizeof cells[0]; k++) {
        int seen = 0;
        for (int c = 0; c < CM_N_CASES; c++)
            if (strcmp(cm_cases[c].cell, cells[k]) == 0) seen |= 1 << (cm_cases[c].batched * 2 + cm_cases[c].has_hx) | (!cm_cases[c].bias) << 4;
        cr_expect_eq(seen & 0xf, 0xf, "%s: batched x hx combinations %#x", cells[k], seen);
        cr_expect(seen & 0x10, "%s: no case without bias", cells[k]);
    }
}

/* torch's reset_parameters: every parameter ~ U(-1/√H, 1/√H); names and shapes of its state_dict. */
TH_TEST(cellmod, init_is_torchs_uniform_with_torchs_names, th_live_check) {
    const struct { const char *cell; int G; } cells[] = {{"rnn_tanh", 1}, {"rnn_relu", 1}, {"lstm", 4}, {"gru", 3}};
    for (size_t k = 0; k < sizeof cells / sizeof cells[0]; k++) {
        tg_rng rng;
        tg_rng_seed(&rng, 7);
        tg_cellmod *m = tg_cellmod_new(tg_cell_by_name(cells[k].cell),
                                       &(tg_cellmod_config){.input_size = 40, .hidden_size = 25}, &rng);
        cr_assert_not_null(m);
        cr_expect_eq(m->dtype, TG_F32);
        cr_expect_eq(tg_params_count(m->params), 4);
        const int64_t rows = cells[k].G * 25, cols[4] = {40, 25, 0, 0};
        for (int i = 0; i < 4; i++) {
            tg_tensor *p = tg_params_at(m->params, i);
            cr_expect_str_eq(tg_params_name_at(m->params, i), g_param_names[i]);
            cr_expect_eq(tg_ndim(p), i < 2 ? 2 : 1, "%s %s", cells[k].cell, g_param_names[i]);
            cr_expect_eq(tg_dim(p, 0), rows);
            if (i < 2) cr_expect_eq(tg_dim(p, 1), cols[i]);
            cr_expect(tg_requires_grad(p));
            double lo = 1, hi = -1;
            for (int64_t j = 0; j < tg_numel(p); j++) {
                double v = tg_get(p, j);
                lo = fmin(lo, v);
                hi = fmax(hi, v);
            }
            /* k = 1/√25 = 0.2; the extremes of >= 25 uniform draws come close to it */
            cr_expect(lo >= -0.2 && hi <= 0.2, "%s %s: [%g, %g] outside ±0.2", cells[k].cell, g_param_names[i], lo, hi);
            cr_expect(lo < -0.15 && hi > 0.15, "%s %s: [%g, %g] is not U(±0.2)", cells[k].cell, g_param_names[i], lo, hi);
        }
        /* the same seed gives the same parameters */
        tg_rng_seed(&rng, 7);
        tg_cellmod *again = tg_cellmod_new(tg_cell_by_name(cells[k].cell),
                                           &(tg_cellmod_config){.input_size = 40, .hidden_size = 25}, &rng);
        for (int i = 0; i < 4; i++)
            cr_expect(memcmp(tg_cdata(tg_params_at(m->params, i)), tg_cdata(tg_params_at(again->params, i)),
                             (size_t)tg_numel(tg_params_at(m->params, i)) * 4) == 0);
        tg_cellmod_free(again);
        tg_cellmod_free(m);
    }
    tg_cellmod *nb = tg_cellmod_new(tg_cell_by_name("gru"),
                                    &(tg_cellmod_config){.input_size = 2, .hidden_size = 3, .no_bias = true}, NULL);
    cr_expect_eq(tg_params_count(nb->params), 2);
    cr_expect_null(nb->p.bias_ih);
    cr_expect_null(tg_params_find(nb->params, "bias_hh"));
    tg_cellmod_free(nb);
}

/* tg_params_save writes torch's names; another module loads them and steps identically; a file of
 * another shape is refused and leaves the module as it was. */
TH_TEST(cellmod, save_and_load_round_trip, th_live_check) {
    th_record_errors();
    tg_cellmod_config cfg = {.input_size = 3, .hidden_size = 4, .dtype = TG_F64};
    tg_rng rng;
    tg_rng_seed(&rng, 1);
    tg_cellmod *a = tg_cellmod_new(tg_cell_by_name("lstm"), &cfg, &rng), *b = tg_cellmod_new(tg_cell_by_name("lstm"), &cfg, &rng);
    const char *path = th_path_in("cell.safetensors");
    cr_assert_eq(tg_params_save(a->params, path), 0, "%s", tg_last_error());
    tg_st_file *f = tg_st_load(path);
    cr_assert_not_null(f, "%s", tg_last_error());
    cr_expect_eq(tg_st_count(f), 4);
    for (int i = 0; i < 4; i++) cr_expect_not_null(tg_st_get(f, g_param_names[i]), "no '%s' in the file", g_param_names[i]);
    tg_st_free(f);
    cr_assert_eq(tg_params_load(b->params, path), 0, "%s", tg_last_error());
    tg_tensor *x = th_rand(3, TG_SHAPE(2, 3), -1, 1);
    tg_tensor *ha[2], *hb[2];
    cr_assert_eq(tg_cellmod_forward(a, x, NULL, ha), 0);
    cr_assert_eq(tg_cellmod_forward(b, x, NULL, hb), 0);
    for (int s = 0; s < 2; s++)
        cr_expect(memcmp(tg_cdata(ha[s]), tg_cdata(hb[s]), 8 * 8) == 0, "state %d differs after loading", s);
    /* a GRUCell's file into the LSTMCell: refused, nothing changed */
    tg_cellmod *g = tg_cellmod_new(tg_cell_by_name("gru"), &cfg, &rng);
    cr_assert_eq(tg_params_save(g->params, path), 0);
    tg_tensor *before = tg_copy(b->p.weight_ih);
    th_reset_errors();
    cr_expect_eq(tg_params_load(b->params, path), -1);
    cr_expect(strstr(tg_last_error(), "'weight_ih' has shape [12,3] in the file, the model expects [16,3]") != NULL, "%s",
              tg_last_error());
    cr_expect(memcmp(tg_cdata(before), tg_cdata(b->p.weight_ih), 48 * 8) == 0);
    cr_expect_eq(th_error_count(), 0);
    tg_tape_reset();
    tg_release(before);
    tg_release(x);
    tg_cellmod_free(a);
    tg_cellmod_free(b);
    tg_cellmod_free(g);
}

/* torch's checks and their messages (cellmod.h lists them); the call returns -1 and writes nothing. */
TH_TEST(cellmod, shape_rules_and_messages_are_torchs, th_live_check) {
    th_record_errors();
    tg_cellmod_config cfg = {.input_size = 4, .hidden_size = 3};
    tg_cellmod *rnn = tg_cellmod_new(tg_cell_by_name("rnn_relu"), &cfg, NULL);
    tg_cellmod *lstm = tg_cellmod_new(tg_cell_by_name("lstm"), &cfg, NULL);
    tg_cellmod *gru = tg_cellmod_new(tg_cell_by_name("gru"), &cfg, NULL);
    tg_tensor *x3 = tg_zeros(TG_F32, TG_SHAPE(2, 2, 4)), *x0 = tg_zeros(TG_F32, 0, NULL);
    tg_tensor *x2 = tg_zeros(TG_F32, TG_SHAPE(2, 4)), *x1 = tg_zeros(TG_F32, TG_SHAPE(4));
    tg_tensor *x5 = tg_zeros(TG_F32, TG_SHAPE(2, 5)), *x15 = tg_zeros(TG_F32, TG_SHAPE(5));
    tg_tensor *xd = tg_zeros(TG_F64, TG_SHAPE(2, 4)), *xe = tg_zeros(TG_F32, TG_SHAPE(0, 4));
    tg_tensor *h23 = tg_zeros(TG_F32, TG_SHAPE(2, 3)), *h33 = tg_zeros(TG_F32, TG_SHAPE(3, 3));
    tg_tensor *h22 = tg_zeros(TG_F32, TG_SHAPE(2, 2)), *h3 = tg_zeros(TG_F32, TG_SHAPE(3));
    tg_tensor *h13 = tg_zeros(TG_F32, TG_SHAPE(1, 3)), *h123 = tg_zeros(TG_F32, TG_SHAPE(1, 2, 3));
    tg_tensor *h2 = tg_zeros(TG_F32, TG_SHAPE(2)), *hd = tg_zeros(TG_F64, TG_SHAPE(2, 3));
    const struct {
        const tg_cellmod *m;
        tg_tensor *x, *h, *c;
        const char *msg;
    } cases[] = {
        {rnn, x3, NULL, NULL, "RNNCell: Expected input to be 1-D or 2-D but received 3-D tensor"},
        {lstm, x3, NULL, NULL, "LSTMCell: Expected input to be 1-D or 2-D but received 3-D tensor"},
        {gru, x0, NULL, NULL, "GRUCell: Expected input to be 1-D or 2-D but received 0-D tensor"},
        {rnn, x5, NULL, NULL, "input has inconsistent input_size: got 5 expected 4"},
        {lstm, x15, NULL, NULL, "input has inconsistent input_size: got 5 expected 4"},
        {gru, x2, h33, NULL, "Input batch size 2 doesn't match hidden0 batch size 3"},
        {lstm, x2, h33, h33, "Input batch size 2 doesn't match hidden0 batch size 3"},
        {lstm, x2, h23, h33, "Input batch size 2 doesn't match hidden1 batch size 3"},
        {rnn, x2, h22, NULL, "hidden0 has inconsistent hidden_size: got 2, expected 3"},
        {lstm, x2, h23, h22, "hidden1 has inconsistent hidden_size: got 2, expected 3"},
        {lstm, x1, h3, h2, "hidden1 has inconsistent hidden_size: got 2, expected 3"},
        {rnn, x1, h13, NULL, "RNNCell: Expected hidden to be 1D (unbatched input), got 2D instead"},
        {gru, x2, h3, NULL, "GRUCell: Expected hidden to be 2D (batched input), got 1D instead"},
        {gru, x2, h123, NULL, "GRUCell: Expected hidden to be 2D (batched input), got 3D instead"},
        {lstm, x1, h3, h13, "LSTMCell: Expected hx[1] to be 1D (unbatched input), got 2D instead"},
        {lstm, x2, h3, h3, "LSTMCell: Expected hx[0] to be 2D (batched input), got 1D instead"},
        {rnn, xd, NULL, NULL, "x is F64 but the cell is F32"},
        {lstm, x2, hd, NULL, "hx[0] is F64 but the cell is F32"},
        {gru, xe, h23, NULL, "Input batch size 0 doesn't match hidden0 batch size 2"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        tg_tensor *hx[2] = {cases[i].h, cases[i].c}, *out[2] = {x0, x0};
        th_reset_errors();
        cr_expect_eq(tg_cellmod_forward(cases[i].m, cases[i].x, hx, out), -1, "case %zu: %s", i, cases[i].msg);
        cr_expect_eq(th_error_count(), 1);
        cr_expect(strstr(th_last_message(), cases[i].msg) != NULL, "case %zu: got '%s', want '%s'", i, th_last_message(),
                  cases[i].msg);
        cr_expect(strncmp(th_last_message(), "tg_cellmod_forward", 18) == 0, "%s", th_last_message());
        cr_expect(out[0] == x0 && out[1] == x0, "case %zu: out written on failure", i);
    }
    /* what torch accepts: an unbatched step with hx [H], hx entries left NULL (zeros) */
    tg_tensor *out[2];
    th_reset_errors();
    cr_expect_eq(tg_cellmod_forward(lstm, x1, (tg_tensor *[]){h3, NULL}, out), 0, "%s", th_last_message());
    cr_expect(tg_ndim(out[0]) == 1 && tg_dim(out[0], 0) == 3 && tg_ndim(out[1]) == 1);
    cr_expect_eq(tg_cellmod_forward(gru, x2, NULL, out), 0);
    cr_expect(tg_ndim(out[0]) == 2 && tg_dim(out[0], 0) == 2 && tg_dim(out[0], 1) == 3);
    /* NULL arguments and a bad config */
    th_reset_errors();
    cr_expect_eq(tg_cellmod_forward(NULL, x2, NULL, out), -1);
    cr_expect(strstr(th_last_message(), "the cell module is NULL") != NULL, "%s", th_last_message());
    th_reset_errors();
    cr_expect_null(tg_cellmod_new(tg_cell_by_name("lstm"), &(tg_cellmod_config){.input_size = 0, .hidden_size = 3}, NULL));
    cr_expect(strstr(th_last_message(), "LSTMCell: input size 0, hidden size 3: both must be positive") != NULL, "%s",
              th_last_message());
    th_reset_errors();
    cr_expect_null(tg_cellmod_new(tg_cell_by_name("nope"), &cfg, NULL));
    cr_expect_eq(th_error_count(), 1, "only tg_cell_by_name's message");
    cr_expect(strstr(th_last_message(), "nope") != NULL, "%s", th_last_message());
    tg_cellmod_free(NULL);
    tg_tape_reset();
    tg_tensor *all[] = {x3, x0, x2, x1, x5, x15, xd, xe, h23, h33, h22, h3, h13, h123, h2, hd};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) tg_release(all[i]);
    tg_cellmod_free(rnn);
    tg_cellmod_free(lstm);
    tg_cellmod_free(gru);
}

/* A cell's parameter creation (make_params: the zoo's, a typed cell's, the standard one) names the
 * function the user called: tg_cellmod_new or tg_rnn_new, and tg_cell_standard_params when called
 * directly, also after a failed tg_cellmod_new (the name does not stick). */
TH_TEST(cellmod, parameter_errors_name_the_function_called, th_live_check) {
    th_record_errors();
    char err[256];
    tg_cell_def *d = tg_cell_def_parse("mut1ish", "gates z, r\nz = sigmoid(x.z)\nr = sigmoid(x.r + h.r)\n"
                                       "h' = h + z * (tanh(h.z + tanh(x)) - h)\n", err, sizeof err);
    cr_assert_not_null(d, "%s", err);
    const struct { const tg_cell *cell; bool module; const char *msg; } cases[] = {
        {tg_cell_by_name("mut1"), true, "tg_cellmod_new: cell 'mut1': input size 4 must equal hidden size 3"},
        {tg_cell_by_name("mut1"), false, "tg_rnn_new: cell 'mut1': input size 4 must equal hidden size 3"},
        {tg_cell_by_name("mut2"), true, "tg_cellmod_new: cell 'mut2': input size 4 must equal hidden size 3"},
        {tg_cell_def_cell(d), true, "tg_cellmod_new: cell 'mut1ish', 4:24: needs H = I, but I = 4 and H = 3"},
        {tg_cell_def_cell(d), false, "tg_rnn_new: cell 'mut1ish', 4:24: needs H = I, but I = 4 and H = 3"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        cr_assert_not_null(cases[i].cell, "case %zu", i);
        th_reset_errors();
        if (cases[i].module)
            cr_expect_null(tg_cellmod_new(cases[i].cell, &(tg_cellmod_config){.input_size = 4, .hidden_size = 3}, NULL));
        else
            cr_expect_null(tg_rnn_new(cases[i].cell, &(tg_rnn_config){.input_size = 4, .hidden_size = 3}, NULL));
        cr_expect_eq(th_error_count(), 1, "case %zu", i);
        cr_expect(strncmp(th_last_message(), cases[i].msg, strlen(cases[i].msg)) == 0, "case %zu: got '%s', want '%s'",
                  i, th_last_message(), cases[i].msg);
    }
    th_reset_errors();
    tg_cell_params p;
    cr_expect_eq(tg_cell_standard_params(tg_cell_by_name("gru"), 4, 0, true, TG_F32, NULL, &p), -1);
    cr_expect(strncmp(th_last_message(), "tg_cell_standard_params: cell 'gru': input size 4, hidden size 0", 64) == 0,
              "%s", th_last_message());
    tg_cell_def_free(d);
}

/* Every registered cell (built-in, zoo, ...): one module step equals one step of tg_rnn_forward on
 * the same parameters (the runner's layer 0, names without the _l0 suffix), batched and unbatched. */
TH_TEST(cellmod, every_cell_steps_like_the_runner, th_live_check) {
    for (int k = 0; k < tg_cell_count(); k++) {
        const tg_cell *cell = tg_cell_at(k);
        tg_rng rng;
        tg_rng_seed(&rng, 11 + (uint64_t)k);
        /* I = H: MUT1 adds x_t to an H-wide pre-activation */
        tg_rnn *r = tg_rnn_new(cell, &(tg_rnn_config){.input_size = 5, .hidden_size = 5, .dtype = TG_F64}, &rng);
        tg_cellmod *m = tg_cellmod_new(cell, &(tg_cellmod_config){.input_size = 5, .hidden_size = 5, .dtype = TG_F64}, &rng);
        cr_assert(r && m, "%s", cell->name);
        cr_assert_eq(tg_params_count(m->params), tg_params_count(r->params), "%s", cell->name);
        for (int i = 0; i < tg_params_count(m->params); i++) {
            char name[96];
            snprintf(name, sizeof name, "%s_l0", tg_params_name_at(m->params, i));
            tg_tensor *src = tg_params_find(r->params, name);
            cr_assert_not_null(src, "%s: the runner has no '%s'", cell->name, name);
            tg_copy_(tg_params_at(m->params, i), src);
        }
        tg_tensor *x = th_rand(5 + (uint64_t)k, TG_SHAPE(1, 2, 5), -1, 1); /* [T=1, B=2, I=5] */
        tg_rnn_output out;
        cr_assert_not_null(tg_rnn_forward(r, x, NULL, &out), "%s", cell->name);
        tg_tensor *next[TG_CELL_MAX_STATES];
        cr_assert_eq(tg_cellmod_forward(m, tg_select(x, 0), NULL, next), 0, "%s", cell->name);
        for (int s = 0; s < cell->n_states; s++) {
            tg_tensor *want = tg_select(out.final[s], 0); /* [B,H] */
            for (int64_t j = 0; j < tg_numel(want); j++)
                cr_expect(fabs(tg_get(next[s], j) - tg_get(want, j)) <= 1e-12, "%s state %d [%lld]: %.17g, runner %.17g",
                          cell->name, s, (long long)j, tg_get(next[s], j), tg_get(want, j));
        }
        /* unbatched: row 1 alone */
        tg_tensor *row = tg_select(tg_select(x, 0), 1);
        cr_assert_eq(tg_cellmod_forward(m, row, NULL, next), 0, "%s", cell->name);
        tg_tensor *want = tg_select(tg_select(out.final[0], 0), 1);
        cr_expect_eq(tg_ndim(next[0]), 1);
        for (int64_t j = 0; j < 5; j++)
            cr_expect(fabs(tg_get(next[0], j) - tg_get(want, j)) <= 1e-12, "%s unbatched [%lld]", cell->name, (long long)j);
        tg_rnn_output_clear(&out);
        tg_tape_reset();
        tg_release(x);
        tg_cellmod_free(m);
        tg_rnn_free(r);
    }
}

/* ---- unbatched sequences in the runner: x [T,I], h0 [L·D,H] (torch's 2-D input) ------------------ */

#include "data/unbatched_golden.h"

static void run_unbatched(const ub_case *c, tg_dtype dt, double atol, double rtol) {
    tg_rnn *m = tg_rnn_new(tg_cell_by_name(c->cell),
                           &(tg_rnn_config){.input_size = UB_I, .hidden_size = UB_H, .num_layers = c->layers,
                                            .bidirectional = c->bidirectional, .batch_first = c->batch_first,
                                            .dtype = dt}, NULL);
    cr_assert_not_null(m, "%s", c->name);
    cr_assert_eq(tg_params_count(m->params), c->n_params, "%s", c->name);
    for (int i = 0; i < c->n_params; i++) set_param(m->params, c->param_name[i], c->param[i], dt, c->name);
    int D = c->bidirectional ? 2 : 1, LD = c->layers * D, S = c->n_states;
    tg_tensor *x = leaf(dt, TG_SHAPE(UB_T, UB_I), c->x, true);
    tg_tensor *h0[2] = {NULL, NULL};
    for (int s = 0; s < S && c->has_h0; s++) h0[s] = leaf(dt, TG_SHAPE(LD, UB_H), c->h0[s], true);
    tg_rnn_output out;
    tg_tensor *y = tg_rnn_forward(m, x, &(tg_rnn_forward_opts){.init = c->has_h0 ? h0 : NULL, .keep_step_states = true},
                                  &out);
    cr_assert_not_null(y, "%s", c->name);
    cr_expect(tg_ndim(y) == 2 && tg_dim(y, 0) == UB_T && tg_dim(y, 1) == D * UB_H, "%s: output not [T,D·H]", c->name);
    tg_tensor *wy = tg_from_f64(dt, TG_SHAPE(UB_T, D * UB_H), c->wy);
    tg_tensor *loss = tg_sum(tg_mul(y, wy));
    for (int s = 0; s < S; s++) {
        cr_expect(tg_ndim(out.final[s]) == 2 && tg_dim(out.final[s], 0) == LD && tg_dim(out.final[s], 1) == UB_H,
                  "%s: final state %d not [L·D,H]", c->name, s);
        tg_tensor *w = tg_from_f64(dt, TG_SHAPE(LD, UB_H), c->wfinal[s]);
        loss = tg_add(loss, tg_sum(tg_mul(out.final[s], w)));
        tg_release(w);
        expect_close(out.final[s], c->final[s], atol, rtol, "final state", c->name);
    }
    cr_expect_eq(out.h_n, out.final[0]);
    tg_tensor *kept = tg_rnn_step_state(&out, m, 0, 0, 0);
    cr_expect(kept && tg_ndim(kept) == 2 && tg_dim(kept, 0) == UB_T && tg_dim(kept, 1) == UB_H, "%s: step states", c->name);
    expect_close(y, c->y, atol, rtol, "output", c->name);
    cr_assert_eq(tg_backward(loss), 0);
    expect_close(tg_grad(x), c->grad_x, atol, rtol, "grad x", c->name);
    for (int s = 0; s < S && c->has_h0; s++) expect_close(tg_grad(h0[s]), c->grad_h0[s], atol, rtol, "grad h0", c->name);
    for (int i = 0; i < c->n_params; i++)
        expect_close(tg_grad(tg_params_find(m->params, c->param_name[i])), c->grad_param[i], atol, rtol,
                     c->param_name[i], c->name);
    tg_rnn_output_clear(&out);
    tg_tape_reset();
    tg_release(wy);
    tg_release(x);
    for (int s = 0; s < 2; s++) tg_release(h0[s]);
    tg_rnn_free(m);
}

TH_TEST(cellmod, unbatched_sequences_match_torch_f64, th_live_check) {
    for (int c = 0; c < UB_N_CASES; c++) run_unbatched(&ub_cases[c], TG_F64, 1e-14, 1e-12);
}

TH_TEST(cellmod, unbatched_sequences_match_torch_f32, th_live_check) {
    for (int c = 0; c < UB_N_CASES; c++) run_unbatched(&ub_cases[c], TG_F32, 2e-6, 2e-5);
}

/* torch's hx rank rule both ways, in its words; a mis-sized h0 of unbatched input is refused with the
 * batch of one shown; an unbatched run equals the batched run of the same sequence. */
TH_TEST(cellmod, unbatched_rules_and_messages_are_torchs, th_live_check) {
    th_record_errors();
    tg_rnn *gru = th_make_rnn("gru", 3, 4, 2, false, 5), *lstm = th_make_rnn("lstm", 3, 4, 1, true, 6);
    tg_tensor *x2 = th_rand(1, TG_SHAPE(5, 3), -1, 1), *x3 = th_rand(2, TG_SHAPE(5, 1, 3), -1, 1);
    tg_tensor *h2 = tg_zeros(TG_F64, TG_SHAPE(2, 4)), *h3 = tg_zeros(TG_F64, TG_SHAPE(2, 1, 4));
    tg_tensor *h2x = tg_zeros(TG_F64, TG_SHAPE(3, 4)), *x4 = tg_zeros(TG_F64, TG_SHAPE(5, 1, 1, 3));
    const struct { tg_rnn *m; tg_tensor *x, *h, *c; const char *msg; } cases[] = {
        {gru, x2, h3, NULL, "For unbatched 2-D input, hx should also be 2-D but got 3-D tensor"},
        {gru, x3, h2, NULL, "For batched 3-D input, hx should also be 3-D but got 2-D tensor"},
        {lstm, x2, h2, h3, "For unbatched 2-D input, hx and cx should also be 2-D but got (2-D, 3-D) tensors"},
        {lstm, x3, h2, h2, "For batched 3-D input, hx and cx should also be 3-D but got (2-D, 2-D) tensors"},
        {lstm, x2, NULL, h3, "For unbatched 2-D input, initial state c0 should also be 2-D but got 3-D tensor"},
        {gru, x2, h2x, NULL, "initial state h0 [3,1,4] F64: expected [2,1,4] F64"},
        {gru, x4, NULL, NULL, "expected a 3-D tensor [T,B,I] (or an unbatched 2-D [T,I])"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        tg_tensor *init[2] = {cases[i].h, cases[i].c};
        th_reset_errors();
        cr_expect_null(tg_rnn_forward(cases[i].m, cases[i].x, &(tg_rnn_forward_opts){.init = init}, NULL), "case %zu", i);
        cr_expect_eq(th_error_count(), 1, "case %zu", i);
        cr_expect(strstr(th_last_message(), cases[i].msg) != NULL, "case %zu: got '%s', want '%s'", i, th_last_message(),
                  cases[i].msg);
    }
    /* the same sequence batched [T,1,I] and unbatched [T,I] */
    th_reset_errors();
    tg_tensor *hb = th_rand(3, TG_SHAPE(2, 1, 4), -1, 1);
    tg_rnn_output ob, ou;
    tg_tensor *yb = tg_rnn_forward(gru, x3, &(tg_rnn_forward_opts){.init = &hb}, &ob);
    tg_tensor *hu = tg_reshape(hb, TG_SHAPE(2, 4));
    tg_tensor *yu = tg_rnn_forward(gru, x2, &(tg_rnn_forward_opts){.init = &hu, .lengths = (int64_t[]){5}}, &ou);
    cr_assert(yb && yu, "%s", th_last_message());
    cr_expect(tg_ndim(yu) == 2 && tg_ndim(ou.h_n) == 2 && ou.c_n == NULL);
    /* x2 and x3 hold different numbers: compare x3's own unbatched run */
    tg_tensor *yu3 = tg_rnn_forward(gru, tg_reshape(x3, TG_SHAPE(5, 3)), &(tg_rnn_forward_opts){.init = &hu}, &ou);
    cr_assert_not_null(yu3);
    cr_expect(memcmp(tg_cdata(yu3), tg_cdata(yb), 5 * 4 * 8) == 0, "unbatched run differs from the batch of one");
    cr_expect(memcmp(tg_cdata(ou.h_n), tg_cdata(ob.h_n), 2 * 4 * 8) == 0);
    cr_expect_not_null(tg_rnn_forward(lstm, x2, NULL, NULL), "out NULL");
    cr_expect_eq(th_error_count(), 0, "%s", th_last_message());
    tg_rnn_output_clear(&ob);
    tg_rnn_output_clear(&ou);
    tg_tape_reset();
    tg_tensor *all[] = {x2, x3, h2, h3, h2x, x4, hb};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) tg_release(all[i]);
    tg_rnn_free(gru);
    tg_rnn_free(lstm);
}

/* ---- empty batches: torch's [0,H] results, which require grad and give zero gradients ------------- */

#include "data/empty_golden.h"

static void expect_shape(const tg_tensor *t, const eb_shape *want, const char *what, const char *name) {
    char b[64];
    cr_assert_not_null(t, "%s: %s is NULL", name, what);
    bool same = tg_ndim(t) == want->ndim;
    for (int d = 0; same && d < want->ndim; d++) same = tg_dim(t, d) == want->dim[d];
    cr_expect(same, "%s: %s is %s, torch's has %d dims [%lld,%lld,%lld]", name, what, tg_shape_str(t, b, sizeof b),
              want->ndim, (long long)want->dim[0], (long long)want->dim[1], (long long)want->dim[2]);
}

/* One case: forward on the empty batch, the shapes torch returned, backward of the sum of every result,
 * then every parameter's gradient exists and equals torch's (zeros) and x's gradient is [0,I]. The
 * gradients are first filled with 7 and dropped (tg_params_zero_grad), so a recycled buffer that
 * nothing wrote shows. */
static void run_empty(const eb_case *c, tg_dtype dt) {
    const tg_cell *cell = tg_cell_by_name(c->cell);
    tg_cellmod *cm = NULL;
    tg_rnn *r = NULL;
    if (c->module == 0)
        cm = tg_cellmod_new(cell, &(tg_cellmod_config){.input_size = EB_I, .hidden_size = EB_H, .no_bias = !c->bias,
                                                       .dtype = dt}, NULL);
    else
        r = tg_rnn_new(cell, &(tg_rnn_config){.input_size = EB_I, .hidden_size = EB_H, .num_layers = c->layers,
                                              .bidirectional = c->bidirectional, .batch_first = c->batch_first,
                                              .proj_size = c->proj_size, .dtype = dt}, NULL);
    tg_params *ps = cm ? cm->params : r ? r->params : NULL;
    cr_assert_not_null(ps, "%s", c->name);
    tg_params_set_requires_grad(ps, true);
    cr_assert_eq(tg_params_count(ps), c->n_params, "%s", c->name);
    for (int i = 0; i < c->n_params; i++) {
        cr_assert_str_eq(tg_params_name_at(ps, i), c->param_name[i], "%s: parameter %d", c->name, i);
        cr_assert_eq(tg_numel(tg_params_at(ps, i)), c->param_numel[i], "%s: %s", c->name, c->param_name[i]);
        cr_assert_eq(tg_backward(tg_sum(tg_mul_scalar(tg_params_at(ps, i), 7.0))), 0); /* grad = 7 everywhere */
    }
    tg_tape_reset();
    for (int i = 0; i < c->n_params; i++)
        cr_assert_eq(tg_get(tg_grad(tg_params_at(ps, i)), 0), 7.0, "%s: the poisoning did not reach %s", c->name,
                     c->param_name[i]);
    tg_params_zero_grad(ps);
    tg_tensor *x = tg_zeros(dt, c->x.ndim, c->x.dim);
    tg_set_requires_grad(x, true);
    tg_tensor *hx[2] = {NULL, NULL}, *res[3] = {NULL, NULL, NULL};
    int S = c->n_states;
    for (int s = 0; s < S && c->has_hx; s++) hx[s] = tg_zeros(dt, c->state[s].ndim, c->state[s].dim);
    if (cm) {
        cr_assert_eq(tg_cellmod_forward(cm, x, c->has_hx ? hx : NULL, res), 0, "%s", c->name);
    } else {
        tg_rnn_output out;
        res[0] = tg_rnn_forward(r, x, &(tg_rnn_forward_opts){.init = c->has_hx ? hx : NULL}, &out);
        cr_assert_not_null(res[0], "%s", c->name);
        for (int s = 0; s < S; s++) res[1 + s] = out.final[s];
        tg_rnn_output_clear(&out);
    }
    expect_shape(res[0], &c->y, cm ? "h'" : "output", c->name);
    tg_tensor *loss = NULL;
    for (int k = 0; k < (cm ? S : 1 + S); k++) {
        if (k >= (cm ? 0 : 1)) expect_shape(res[k], &c->state[k - (cm ? 0 : 1)], "state", c->name);
        cr_expect(tg_requires_grad(res[k]), "%s: result %d does not require grad (torch's does)", c->name, k);
        loss = loss ? tg_add(loss, tg_sum(res[k])) : tg_sum(res[k]);
    }
    cr_assert_eq(tg_backward(loss), 0, "%s", c->name);
    tg_tensor *gx = tg_grad(x);
    cr_expect(gx && tg_same_shape(gx, x), "%s: x has no gradient of its shape", c->name);
    for (int i = 0; i < c->n_params; i++) {
        tg_tensor *g = tg_grad(tg_params_at(ps, i));
        cr_assert_not_null(g, "%s: %s has no gradient", c->name, c->param_name[i]);
        for (int64_t j = 0; j < c->param_numel[i]; j++)
            cr_assert(tg_get(g, j) == c->grad_param[i][j], "%s: grad %s[%lld] = %g, torch %g", c->name,
                      c->param_name[i], (long long)j, tg_get(g, j), c->grad_param[i][j]);
    }
    tg_tape_reset();
    tg_release(x);
    for (int s = 0; s < 2; s++) tg_release(hx[s]);
    tg_cellmod_free(cm);
    tg_rnn_free(r);
}

TH_TEST(cellmod, empty_batch_matches_torch_f64, th_live_check) {
    th_record_errors();
    for (int c = 0; c < EB_N_CASES; c++) run_empty(&eb_cases[c], TG_F64);
}

TH_TEST(cellmod, empty_batch_matches_torch_f32, th_live_check) {
    th_record_errors();
    for (int c = 0; c < EB_N_CASES; c++) run_empty(&eb_cases[c], TG_F32);
}

/* A sequence of length 0 is torch's RuntimeError, batched, batch_first and unbatched; an empty batch
 * with an h0 of another batch is refused naming the expected [L·D,0,H]. */
TH_TEST(cellmod, zero_length_sequences_are_refused_in_torchs_words, th_live_check) {
    th_record_errors();
    tg_rnn *gru = th_make_rnn("gru", EB_I, EB_H, 1, false, 3);
    tg_tensor *xs[] = {tg_zeros(TG_F64, TG_SHAPE(0, 2, EB_I)), tg_zeros(TG_F64, TG_SHAPE(0, EB_I)),
                       tg_zeros(TG_F64, TG_SHAPE(0, 0, EB_I))};
    const char *shown[] = {"x [0,2,4] [T,B,I]", "x [0,4] [T,I]", "x [0,0,4] [T,B,I]"};
    for (size_t i = 0; i < sizeof xs / sizeof xs[0]; i++) {
        th_reset_errors();
        cr_expect_null(tg_rnn_forward(gru, xs[i], NULL, NULL), "case %zu", i);
        cr_expect_eq(th_error_count(), 1);
        cr_expect(strstr(th_last_message(), EB_T0_MESSAGE) && strstr(th_last_message(), shown[i]), "case %zu: %s", i,
                  th_last_message());
    }
    tg_rnn *bf = tg_rnn_new(tg_cell_by_name("gru"), &(tg_rnn_config){.input_size = EB_I, .hidden_size = EB_H,
                                                                      .batch_first = true, .dtype = TG_F64}, NULL);
    tg_tensor *xbf = tg_zeros(TG_F64, TG_SHAPE(2, 0, EB_I)), *h0 = tg_zeros(TG_F64, TG_SHAPE(1, 2, EB_H));
    tg_tensor *xe = tg_zeros(TG_F64, TG_SHAPE(5, 0, EB_I));
    th_reset_errors();
    cr_expect_null(tg_rnn_forward(bf, xbf, NULL, NULL));
    cr_expect(strstr(th_last_message(), "x [2,0,4] [B,T,I]: " EB_T0_MESSAGE), "%s", th_last_message());
    th_reset_errors();
    cr_expect_null(tg_rnn_forward(gru, xe, &(tg_rnn_forward_opts){.init = &h0}, NULL));
    cr_expect(strstr(th_last_message(), "initial state h0 [1,2,3] F64: expected [1,0,3] F64"), "%s", th_last_message());
    /* lengths with an empty batch: nothing to check, it runs */
    th_reset_errors();
    cr_expect_not_null(tg_rnn_forward(gru, xe, &(tg_rnn_forward_opts){.lengths = (int64_t[]){0}}, NULL), "%s",
                       th_last_message());
    tg_tape_reset();
    for (size_t i = 0; i < sizeof xs / sizeof xs[0]; i++) tg_release(xs[i]);
    tg_release(xbf);
    tg_release(h0);
    tg_release(xe);
    tg_rnn_free(gru);
    tg_rnn_free(bf);
}
