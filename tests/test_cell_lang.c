/* tests/test_cell_lang.c - the cell language (nn/cell_lang.c).
 *
 * - Every definition in docs/cells/ equals its C cell (nn/cells.c, nn/cells_zoo.c) on the same
 *   parameters: outputs, final states and every gradient (x, initial states, each parameter) to 1e-12
 *   in F64, two layers, both directions (one for MUT1/MUT2, which need I = H), ragged lengths; with and without biases where the cell has them.
 *   The parameter lists (names and shapes) are the same. JANET, which has no C cell in the library,
 *   is compared with one written here in C from public ops.
 * - Typed cells pass the triple check's tape vs finite differences (tg_compare_cell), including a
 *   definition that uses every construct of the notation.
 * - Every documented error has its exact message with line and column (a table of bad definitions);
 *   bad definitions leak nothing; a size constraint (I = H) is reported by tg_rnn_new.
 * Dimension letters: T time, B batch, I input, H hidden, L layers, D directions, S states. */
#include "helpers.h"

#include <tapegrad/tapegrad.h>

#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CELLS_DIR TG_TEST_DATA_DIR "/../../docs/cells"

static char *read_text(const char *path) {
    FILE *f = fopen(path, "rb");
    cr_assert_not_null(f, "cannot open %s", path);
    static char buf[TG_CELL_DEF_MAX_SOURCE + 1];
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = 0;
    return buf;
}

static tg_cell_def *parse_file(const char *file, const char *name) {
    char path[512], err[256];
    snprintf(path, sizeof path, "%s/%s", CELLS_DIR, file);
    tg_cell_def *d = tg_cell_def_parse(name, read_text(path), err, sizeof err);
    cr_assert_not_null(d, "%s:%s", path, err);
    return d;
}

/* ---- JANET in C, as a user would write it, for the comparison ---------------------------------------- */

static int janet_step(const tg_cell *cell, const tg_cell_params *p, const tg_tensor *x, const tg_tensor *xproj,
                      tg_tensor *const *state, tg_tensor **out) {
    (void)cell; (void)x;
    tg_tensor *a[2];
    /* [a_f | a_c] = x W_ihᵀ + b_ih + h W_hhᵀ + b_hh */
    if (tg_chunk(tg_add(xproj, tg_linear(state[0], p->weight_hh, p->bias_hh)), 1, 2, a)) return -1;
    tg_tensor *f = tg_sigmoid(a[0]);
    /* c' = f ⊙ c + (1 − f) ⊙ tanh(a_c);  h' = c' */
    out[1] = tg_add(tg_mul(f, state[1]), tg_mul(tg_rsub_scalar(1.0, f), tg_tanh(a[1])));
    out[0] = out[1];
    return out[0] ? 0 : -1;
}
static const char *const hc[] = {"h", "c"};
static const tg_cell janet_c = {.name = "janet_c", .gates = 2, .n_states = 2, .state_names = hc, .forget_gate = 0,
                                .step = janet_step};

/* ---- equality with the C cells ---------------------------------------------------------------------- */

typedef struct pair { const char *file, *c_cell; } pair;
static const pair pairs[] = {
    {"rnn_tanh.cell", "rnn_tanh"},    {"rnn_relu.cell", "rnn_relu"},   {"lstm.cell", "lstm"},
    {"gru.cell", "gru"},              {"gru_reset_before.cell", "gru_reset_before"},
    {"lstm_peephole.cell", "lstm_peephole"}, {"lstm_cifg.cell", "lstm_cifg"}, {"lstm_nig.cell", "lstm_nig"},
    {"lstm_nfg.cell", "lstm_nfg"},    {"lstm_nog.cell", "lstm_nog"},   {"lstm_niaf.cell", "lstm_niaf"},
    {"lstm_noaf.cell", "lstm_noaf"},  {"lstm.cell", "lstm_np"},        {"mgu.cell", "mgu"},
    {"indrnn.cell", "indrnn"},        {"lstm_ln.cell", "lstm_ln"},     {"janet.cell", "janet_c"},
    {"mut1.cell", "mut1"},            {"mut2.cell", "mut2"},           {"mut3.cell", "mut3"},
    {"lstm_fgr.cell", "lstm_fgr"},
};
#define N_PAIRS ((int)(sizeof pairs / sizeof pairs[0]))


typedef struct run {
    tg_tensor *y, *finals[TG_CELL_MAX_STATES];
    tg_tensor *gx, *ginit[TG_CELL_MAX_STATES];
} run;

/* Forward + backward of loss = Σ y⊙dy + Σ_s final_s ⊙ ds; results copied (new refs). */
static run run_model(tg_rnn *m, const tg_tensor *x0, tg_tensor *const *init0, const int64_t *lengths, uint64_t seed) {
    run r = {0};
    int S = m->cell->n_states;
    tg_tensor *x = tg_copy(x0), *init[TG_CELL_MAX_STATES] = {0};
    tg_set_requires_grad(x, true);
    for (int s = 0; s < S; s++) {
        init[s] = tg_copy(init0[s]);
        tg_set_requires_grad(init[s], true);
    }
    tg_rnn_output out;
    tg_tensor *y = tg_rnn_forward(m, x, &(tg_rnn_forward_opts){.lengths = lengths, .init = init}, &out);
    cr_assert_not_null(y, "%s: %s", m->cell->name, tg_last_error());
    tg_tensor *dy = th_rand(seed, tg_ndim(y), tg_shape(y), -1, 1);
    tg_tensor *loss = tg_sum(tg_mul(y, dy));
    tg_tensor *ds[TG_CELL_MAX_STATES];
    for (int s = 0; s < S; s++) {
        ds[s] = th_rand(seed + 1 + (uint64_t)s, tg_ndim(out.final[s]), tg_shape(out.final[s]), -1, 1);
        loss = tg_add(loss, tg_sum(tg_mul(out.final[s], ds[s])));
    }
    cr_assert_eq(tg_backward(loss), 0, "%s", tg_last_error());
    r.y = tg_copy(y);
    r.gx = tg_copy(tg_grad(x));
    for (int s = 0; s < S; s++) {
        r.finals[s] = tg_copy(out.final[s]);
        r.ginit[s] = tg_copy(tg_grad(init[s]));
        tg_release(ds[s]);
        tg_release(init[s]);
    }
    tg_rnn_output_clear(&out);
    tg_release(dy);
    tg_release(x);
    tg_tape_reset();
    return r;
}

static void run_clear(run *r) {
    tg_release(r->y);
    tg_release(r->gx);
    for (int s = 0; s < TG_CELL_MAX_STATES; s++) { tg_release(r->finals[s]); tg_release(r->ginit[s]); }
}

static void check_pair(const pair *pc, bool bias) {
    const tg_cell *c_cell = strcmp(pc->c_cell, "janet_c") == 0 ? &janet_c : tg_cell_by_name(pc->c_cell);
    cr_assert_not_null(c_cell);
    tg_cell_def *def = parse_file(pc->file, "typed");
    const tg_cell *t_cell = tg_cell_def_cell(def);
    cr_assert_eq(t_cell->n_states, c_cell->n_states, "%s: states", pc->file);
    cr_assert_eq(t_cell->gates, c_cell->gates, "%s: gates", pc->file);
    cr_assert_eq(t_cell->forget_gate, c_cell->forget_gate, "%s: forget gate", pc->file);
    /* a cell that reads the raw x (MUT1, MUT2) adds it to an H-wide value: I = H in every layer, so one direction */
    bool square = c_cell->needs_input;
    int64_t T = 5, B = 3, I = square ? 5 : 4, H = 5;
    int L = 2, D = square ? 1 : 2;
    tg_rnn_config cfg = {.input_size = I, .hidden_size = H, .num_layers = L, .bidirectional = D == 2, .no_bias = !bias,
                         .dtype = TG_F64};
    tg_rng r1, r2;
    tg_rng_seed(&r1, 1);
    tg_rng_seed(&r2, 2);
    tg_rnn *mc = tg_rnn_new(c_cell, &cfg, &r1), *mt = tg_rnn_new(t_cell, &cfg, &r2);
    cr_assert(mc && mt, "%s: %s", pc->file, tg_last_error());
    /* the same parameter list, then the same values (moved off any gain of 1 / shift of 0) */
    cr_assert_eq(tg_params_count(mt->params), tg_params_count(mc->params), "%s: %d vs %d parameters", pc->file,
                 tg_params_count(mt->params), tg_params_count(mc->params));
    tg_rng pr;
    tg_rng_seed(&pr, 7);
    for (int i = 0; i < tg_params_count(mc->params); i++) {
        tg_tensor *a = tg_params_at(mc->params, i), *b = tg_params_at(mt->params, i);
        cr_assert_str_eq(tg_params_name_at(mt->params, i), tg_params_name_at(mc->params, i), "%s", pc->file);
        cr_assert(tg_same_shape(a, b), "%s: %s shapes differ", pc->file, tg_params_name_at(mc->params, i));
        tg_uniform_(&pr, a, -0.8, 0.8);
        cr_assert_eq(tg_copy_(b, a), 0);
    }
    tg_tensor *x = th_rand(11, TG_SHAPE(T, B, I), -1, 1), *init[TG_CELL_MAX_STATES];
    for (int s = 0; s < c_cell->n_states; s++) init[s] = th_rand(20 + (uint64_t)s, TG_SHAPE(L * D, B, H), -1, 1);
    int64_t lengths[] = {5, 2, 4};
    run rc = run_model(mc, x, init, lengths, 30), rt = run_model(mt, x, init, lengths, 30);
    double tol = 1e-12;
    cr_assert_leq(th_scaled_diff(rt.y, rc.y), tol, "%s: output differs by %g", pc->file, th_scaled_diff(rt.y, rc.y));
    cr_assert_leq(th_scaled_diff(rt.gx, rc.gx), tol, "%s: grad x", pc->file);
    for (int s = 0; s < c_cell->n_states; s++) {
        cr_assert_leq(th_scaled_diff(rt.finals[s], rc.finals[s]), tol, "%s: final state %d", pc->file, s);
        cr_assert_leq(th_scaled_diff(rt.ginit[s], rc.ginit[s]), tol, "%s: grad of initial state %d", pc->file, s);
    }
    for (int i = 0; i < tg_params_count(mc->params); i++) {
        const char *nm = tg_params_name_at(mc->params, i);
        tg_tensor *ga = tg_grad(tg_params_at(mt->params, i)), *gb = tg_grad(tg_params_at(mc->params, i));
        cr_assert(ga && gb, "%s: no gradient for %s", pc->file, nm);
        double dd = th_scaled_diff(ga, gb);
        cr_assert_leq(dd, tol, "%s: grad %s differs by %g", pc->file, nm, dd);
    }
    run_clear(&rc);
    run_clear(&rt);
    tg_release(x);
    for (int s = 0; s < c_cell->n_states; s++) tg_release(init[s]);
    tg_rnn_free(mc);
    tg_rnn_free(mt);
    tg_cell_def_free(def);
}

Test(cell_lang, every_definition_equals_its_c_cell) {
    long live = tg_live_tensors();
    for (int i = 0; i < N_PAIRS; i++) check_pair(&pairs[i], true);
    cr_assert_eq(tg_live_tensors(), live, "tensors leaked");
}

Test(cell_lang, every_definition_equals_its_c_cell_without_bias) {
    for (int i = 0; i < N_PAIRS; i++) check_pair(&pairs[i], false);
}

/* The other direction of the table: every file in docs/cells/ is one of the pairs above. */
Test(cell_lang, every_file_in_docs_is_tested) {
    FILE *p = popen("ls " CELLS_DIR, "r");
    cr_assert_not_null(p);
    char line[256];
    int files = 0;
    while (fgets(line, sizeof line, p)) {
        line[strcspn(line, "\n")] = 0;
        if (!strstr(line, ".cell")) continue;
        files++;
        bool found = false;
        for (int i = 0; i < N_PAIRS; i++) found |= strcmp(pairs[i].file, line) == 0;
        cr_assert(found, "docs/cells/%s has no comparison in this test", line);
    }
    pclose(p);
    cr_assert_geq(files, 16);
}

/* ---- the triple check (tape vs finite differences) on typed cells --------------------------------------- */

static void gradcheck_registered(const tg_cell_def *def) {
    cr_assert_eq(tg_cell_register(tg_cell_def_cell(def)), 0, "%s", tg_last_error());
    tg_compare_opts o = tg_compare_defaults();
    o.T = 3; o.B = 2; o.I = 3; o.H = 3;
    tg_compare_report *r = tg_compare_cell(tg_cell_def_cell(def)->name, &o);
    cr_assert_not_null(r, "%s", tg_last_error());
    if (!r->pass) tg_compare_report_print(stderr, r);
    cr_assert(r->pass, "%s: triple check failed", tg_cell_def_cell(def)->name);
    cr_assert(!r->has_manual);
    cr_assert_gt(r->n_rows, 4);
    tg_compare_report_free(r);
}

Test(cell_lang, janet_gradchecks) {
    tg_cell_def *d = parse_file("janet.cell", "@janet"); /* registered: lives until the process ends */
    gradcheck_registered(d);
}

/* Every construct of the notation at once: declarations, all functions, scalar forms, division,
 * unary minus, blocks of parameters, linear with a declared matrix, layernorm with and without a
 * shift, a third state, ';' separators and a statement spread over lines inside parentheses. */
static const char *k_everything =
    "# a cell that means nothing but uses everything\n"
    "gates a, b, q\n"
    "forget b\n"
    "states h, c, s\n"
    "param w [H] = uniform(-0.5, 0.5)\n"
    "param m [H, H]\n"
    "param mb [H] = constant(0.25)\n"
    "param v [G*H] = ones if bias\n"
    "param g [3H] = uniform\n"
    "t = (x.a + h.a) / 2 - -1; u = exp(-abs(t)) * sqrt(softplus(x.b) + 1)\n"
    "k = linear(tanh(h) * w, m, mb) + relu(x.q) + log(1 + sigmoid(h.q) * 2)\n"
    "z = layernorm(k, w) + layernorm(c, g.b, v.q) - 3 / (2 + abs(s))\n"
    "c' = (u * c\n"
    "      + z / 4)\n"
    "s' = 0.5 * (s + h.b) - c' * 1e-1; h' = tanh(c') * sigmoid(s')\n";

Test(cell_lang, every_construct_gradchecks) {
    char err[256];
    tg_cell_def *d = tg_cell_def_parse("@everything", k_everything, err, sizeof err);
    cr_assert_not_null(d, "%s", err);
    const tg_cell *c = tg_cell_def_cell(d);
    cr_assert_eq(c->gates, 3);
    cr_assert_eq(c->n_states, 3);
    cr_assert_str_eq(c->state_names[2], "s");
    cr_assert_eq(c->forget_gate, 1);
    cr_assert_eq(c->n_extra, 5);
    cr_assert_str_eq(c->extra_names[3], "v");
    cr_assert(!c->needs_input);
    gradcheck_registered(d);
}

Test(cell_lang, declared_init_and_shapes) {
    char err[256];
    tg_cell_def *d = tg_cell_def_parse("t", k_everything, err, sizeof err);
    cr_assert_not_null(d, "%s", err);
    tg_rnn_config cfg = {.input_size = 2, .hidden_size = 4, .dtype = TG_F64};
    tg_rnn *m = tg_rnn_new(tg_cell_def_cell(d), &cfg, NULL);
    cr_assert_not_null(m, "%s", tg_last_error());
    tg_tensor *mb = tg_params_find(m->params, "mb_l0"), *v = tg_params_find(m->params, "v_l0"),
              *w = tg_params_find(m->params, "w_l0"), *mm = tg_params_find(m->params, "m_l0");
    cr_assert(mb && v && w && mm);
    cr_assert_eq(tg_dim(v, 0), 12);
    cr_assert_eq(tg_ndim(mm), 2);
    cr_assert_eq(tg_get(mb, 3), 0.25);
    cr_assert_eq(tg_get(v, 11), 1.0);
    for (int i = 0; i < 4; i++) cr_assert(fabs(tg_get(w, i)) <= 0.5);
    tg_rnn_free(m);
    /* no bias: the `if bias` parameter and the standard biases are absent, and the cell still runs */
    cfg.no_bias = true;
    m = tg_rnn_new(tg_cell_def_cell(d), &cfg, NULL);
    cr_assert_not_null(m, "%s", tg_last_error());
    cr_assert_null(tg_params_find(m->params, "v_l0"));
    cr_assert_null(tg_params_find(m->params, "bias_hh_l0"));
    tg_tensor *x = th_rand(3, TG_SHAPE(3, 2, 2), -1, 1);
    cr_assert_not_null(tg_rnn_forward(m, x, NULL, NULL), "%s", tg_last_error());
    tg_tape_reset();
    tg_release(x);
    tg_rnn_free(m);
    tg_cell_def_free(d);
}

Test(cell_lang, raw_input_needs_i_equal_h) {
    char err[256];
    tg_cell_def *d = tg_cell_def_parse("mut1ish", "gates z, r\nz = sigmoid(x.z)\nr = sigmoid(x.r + h.r)\n"
                                       "h' = h + z * (tanh(h.z + tanh(x)) - h)\n", err, sizeof err);
    cr_assert_not_null(d, "%s", err);
    cr_assert(tg_cell_def_cell(d)->needs_input);
    th_record_errors();
    tg_rnn_config cfg = {.input_size = 3, .hidden_size = 4, .dtype = TG_F64};
    cr_assert_null(tg_rnn_new(tg_cell_def_cell(d), &cfg, NULL));
    cr_assert(strstr(th_last_message(), "cell 'mut1ish', 4:24: needs H = I, but I = 3 and H = 4 in this layer"),
              "%s", th_last_message());
    th_reset_errors();
    cfg.input_size = 4;
    tg_rnn *m = tg_rnn_new(tg_cell_def_cell(d), &cfg, NULL);
    cr_assert_not_null(m, "%s", tg_last_error());
    tg_tensor *x = th_rand(3, TG_SHAPE(2, 2, 4), -1, 1);
    cr_assert_not_null(tg_rnn_forward(m, x, NULL, NULL), "%s", tg_last_error());
    tg_tape_reset();
    tg_release(x);
    tg_rnn_free(m);
    tg_cell_def_free(d);
}

/* ---- bad definitions: the exact message, with line and column ------------------------------------------ */

typedef struct bad { const char *src, *msg; } bad;
static const bad bads[] = {
    /* unknown name, undefined state, shape mismatch, state never produced, syntax */
    {"gates a\nh' = tanh(x.a + q)", "2:17: unknown name 'q'"},
    {"gates a\nh' = tanh(x.a + q')", "2:17: undefined state q' (no line assigns q')"},
    {"gates a\nh' = h' + x.a", "2:6: h' is used before it is assigned"},
    {"gates i, f\nparam w [4H]\nh' = tanh(x.i + w)", "3:15: shape mismatch: [B, H] + [4H]"},
    {"gates a\nparam m [H, H]\nh' = tanh(x.a + m)", "3:15: a matrix [H, H] cannot be used in '+'; use it in linear(E, W) or take a gate block of it"},
    {"gates a\nstates h, c\nh' = tanh(x.a)", "2:11: state c is never produced: no line assigns c'"},
    {"gates a\ny = x.a", "2:8: the definition never assigns h' (the layer output)"},
    {"gates a\nh' = tanh(x.a + )", "2:17: expected an expression, found ')'"},
    {"gates a\nh' = tanh(x.a", "2:14: expected ',' or ')' closing the call, found the end of the definition"},
    {"gates a\nh' = x.a x.a", "2:10: expected the end of the line, found 'x'"},
    {"gates a\nh' = x.a $", "2:10: unexpected character '$'"},
    {"gates a\nh' = x.a ⊙ h", "2:10: unexpected non-ASCII character (byte 0xe2); the notation is ASCII"},
    {"h' = x.a", "1:1: the first statement must be 'gates NAME, ...' (the gate blocks of the projections), found 'h''"},
    {"", "1:1: empty definition: it needs at least 'gates NAME' and h' = ..."},
    {"gates a\ngates b", "2:1: 'gates' declared twice"},
    {"gates a, a", "1:10: gate 'a' named twice"},
    {"gates a\nh' = tanh(x.b)", "2:13: unknown gate block 'b' (gates: a)"},
    {"gates a\nh' = tanh(x.a + h.)", "2:19: expected a gate block name after '.', found ')'"},
    {"gates a\nh' = sigmoidd(x.a)", "2:6: unknown function 'sigmoidd' (functions: sigmoid, tanh, relu, exp, log, sqrt, abs, softplus, linear, layernorm, concat, part)"},
    {"gates a\nh' = tanh(x.a, h)", "2:6: tanh takes 1 argument, got 2"},
    {"gates a\nh' = linear(h)", "2:6: linear takes 2 or 3 arguments (E, W[, b]), got 1"},
    {"gates a\nparam w [H]\nh' = linear(h, w)", "3:16: linear: W must be a matrix parameter, this is [H]"},
    {"gates a\nparam m [2H, H]\nh' = linear(h, m)", "3:1: shape mismatch: h' must be [B, H], this is [B, 2H]"},
    {"gates a\nparam m [H, 3]\nh' = linear(h, m)", "3:6: shape mismatch: linear([B, H], [H, 3]): E's width must be W's number of columns"},
    {"gates a\nparam g [2H]\nh' = layernorm(h, g)", "3:19: shape mismatch: layernorm of [B, H] with a gain [2H]"},
    {"gates a\nh' = layernorm(h, 1)", "2:19: layernorm: the gain must be a vector parameter, this is a number"},
    {"gates a, b\nparam w [H]\nh' = tanh(x.a + w.a)", "3:18: w is [H]: only a parameter with G·H = 2H rows has gate blocks"},
    {"gates a\nparam weight_hh [H]\nh' = tanh(x.a + h.a)", "3:18: '.a' projects through weight_hh, which this definition declares as a vector"},
    {"gates a\nh' = 2", "2:1: h' must be [B, H], this is a number"},
    {"gates a\nparam w [H]\nh' = w", "3:1: h' must be [B, H], this is [H]"},
    {"gates a\nh = tanh(x.a)\nh' = h", "2:1: 'h' is a state: write h' for its new value"},
    {"gates a\ny = x.a\ny = h\nh' = y", "3:1: 'y' is assigned twice (first on line 2)"},
    {"gates a\nh' = x.a\nh' = h", "3:1: h' is assigned twice (first on line 2)"},
    {"gates a\nstates h\nc' = x.a\nh' = h", "3:1: c' is not a state (states: see 'states')"},
    {"gates a\nstates c, h\nh' = h\nc' = c", "2:8: the first state must be h (the layer output), found 'c'"},
    {"gates a\nh' = x.a\nstates h", "3:1: 'states' must come before the equations"},
    {"gates a\nforget b", "2:8: unknown gate block 'b' (gates: a)"},
    {"gates a\nbias some", "2:6: expected 'none' after 'bias'"},
    {"gates a\nbias none\nh' = tanh(x.a + bias_hh)", "3:17: bias_hh does not exist: the definition says 'bias none'"},
    {"gates a\nparam w [H] = gaussian", "2:15: expected an initialiser (uniform, uniform(lo, hi), zeros, ones, constant(v)), found 'gaussian'"},
    {"gates a\nparam w [H] = uniform(1, 0)", "2:15: uniform(lo, hi) needs lo <= hi"},
    {"gates a\nparam w [H*I]", "2:12: a dimension is a number times H or I, not a product of both"},
    {"gates a\nparam w [0]", "2:10: a dimension must be a whole number 1..1000000"},
    {"gates a\nparam w [H, H, H]", "2:16: a parameter has 1 or 2 dimensions"},
    {"gates a\nparam w [H]\nparam w [H]", "3:7: parameter 'w' declared twice"},
    {"gates a\nparam bias_ih [H]", "2:7: 'bias_ih' is a standard parameter: only weight_hh can be redeclared"},
    {"gates a\nh' = tanh(x.a + weight_ih)", "2:17: weight_ih is used by the input projection only: write x.<gate>"},
    {"gates a\nh' = x.a / 0", "2:10: division by the constant 0"},
    {"gates a\nh' = x.a + log(0)", "2:12: log(0) is not finite"},
    {"gates a\nsigmoid = x.a", "2:1: 'sigmoid' is a reserved word"},
    {"gates a\nh' = x.a\nparam w [H]", "3:1: parameters must be declared before the equations"},
    {"gates a\nh' = x.a + 1e999", "2:12: number out of range"},
    {"gates a\nh' = part(concat(h, x), 0, 2)", "2:21: concat: widths H and I cannot be added (use one size letter)"},
    {"gates a\nh' = concat(h)", "2:6: concat takes 2 or 3 arguments, got 1"},
    {"gates a\nparam w [H]\nh' = part(concat(h, w), 0, 2)", "3:21: concat: each argument must be [B, w], this is [H]"},
    {"gates a\nh' = part(h, 0)", "2:6: part takes 3 arguments (E, k, n), got 2"},
    {"gates a\nh' = part(concat(h, h), 2, 2)", "2:25: part: k = 2 must be below n = 2"},
    {"gates a\nh' = part(concat(h, h), 0.5, 2)", "2:25: part: k must be a whole number in 0..1024"},
    {"gates a\nh' = part(concat(h, h, h), 0, 2)", "2:31: part: 3H does not split into 2 equal blocks"},
};
#define N_BAD ((int)(sizeof bads / sizeof bads[0]))

Test(cell_lang, bad_definitions_give_exact_messages) {
    long live = tg_live_tensors();
    for (int i = 0; i < N_BAD; i++) {
        char err[256] = "untouched";
        tg_cell_def *d = tg_cell_def_parse("bad", bads[i].src, err, sizeof err);
        cr_expect_null(d, "row %d parsed: %s", i, bads[i].src);
        tg_cell_def_free(d);
        cr_expect_str_eq(err, bads[i].msg, "row %d (%s): got \"%s\"", i, bads[i].src, err);
    }
    cr_assert_eq(tg_live_tensors(), live);
}

Test(cell_lang, bad_arguments) {
    char err[128];
    cr_assert_null(tg_cell_def_parse(NULL, "gates a\nh' = x.a", err, sizeof err));
    cr_assert_str_eq(err, "1:1: the cell's name must be 1..47 characters");
    cr_assert_null(tg_cell_def_parse("a", NULL, err, sizeof err));
    cr_assert_str_eq(err, "1:1: no definition (NULL)");
    cr_assert_null(tg_cell_def_parse("a", "gates a\nh' = x.a(", NULL, 0)); /* no room for a message: still fine */
    static char big[TG_CELL_DEF_MAX_SOURCE + 10];
    memset(big, ' ', sizeof big - 1);
    cr_assert_null(tg_cell_def_parse("a", big, err, sizeof err));
    cr_assert_str_eq(err, "1:1: definition longer than 65536 bytes");
    /* deep nesting is refused, not recursed into */
    static char deep[4000];
    size_t n = (size_t)snprintf(deep, sizeof deep, "gates a\nh' = ");
    for (int i = 0; i < 1000; i++) deep[n++] = '(';
    deep[n] = 0;
    cr_assert_null(tg_cell_def_parse("a", deep, err, sizeof err));
    cr_assert_str_eq(err, "2:54: expression nested deeper than 48");
    tg_cell_def_free(NULL);
    cr_assert_null(tg_cell_def_cell(NULL));
}

Test(cell_lang, lowering_fuses_the_lstm_like_the_c_cell) {
    tg_cell_def *d = parse_file("lstm.cell", "l");
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    tg_cell_def_print(f, d);
    fclose(f);
    /* one tg_linear_add onto xproj and one tg_gates with the four activations, as nn/cells.c does */
    cr_assert(strstr(buf, "tg_linear_add(%2, weight_hh, bias_hh, xproj)"), "%s", buf);
    cr_assert(strstr(buf, "tg_gates(%24, \"ssts\")"), "%s", buf);
    cr_assert(strstr(buf, "13 operations per step"), "%s", buf);
    free(buf);
    tg_cell_def_free(d);
}
