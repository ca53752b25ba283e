/* tests/test_proj.c - the LSTM with projections (proj_size, issue 12.2) against torch.nn.LSTM(proj_size=P)
 * (tests/data/proj_golden.h from gen_proj_golden.py, torch 1.13): one and two layers, bidirectional,
 * per-sequence lengths, batch_first, bias=False; y, h_n, c_n and the gradients of x, h0, c0 and every
 * parameter in F64 (1e-12) and F32; parameter names, order and shapes as torch's state_dict; torch's
 * constructor messages; learned initial states, streaming and tg_rnn_init with a projection. Then
 * `tapegrad train --proj P` (suite proj_cli): bit-exact resume, checkpoint metadata checked against the
 * tensors, refused values, summary / predict / sample of a projected model. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "data/proj_golden.h"
#include "helpers.h"

#include <tapegrad/tapegrad.h>

static long g_live_at_start;
static void live_start(void) { g_live_at_start = tg_live_tensors(); }
static void live_check(void) {
    tg_tape_reset();
    cr_expect_eq(tg_live_tensors(), g_live_at_start, "live tensors: %ld at start, %ld at the end", g_live_at_start,
                 tg_live_tensors());
}
TestSuite(proj, .init = live_start, .fini = live_check);

/* |a - ref| <= tol · max(1, |ref|) element by element */
static void expect_close(const tg_tensor *t, const double *ref, int64_t n, double tol, const char *what, const char *cs) {
    cr_assert_not_null(t, "%s: %s is NULL", cs, what);
    cr_assert_eq(tg_numel(t), n, "%s: %s has %lld elements, torch %lld", cs, what, (long long)tg_numel(t), (long long)n);
    for (int64_t i = 0; i < n; i++)
        cr_assert(fabs(tg_get(t, i) - ref[i]) <= tol * fmax(1.0, fabs(ref[i])), "%s: %s[%lld] = %.17g, torch %.17g", cs,
                  what, (long long)i, tg_get(t, i), ref[i]);
}

static tg_rnn *model_of(const pj_case *c, tg_dtype dt) {
    tg_rnn_config cfg = {.input_size = c->I, .hidden_size = c->H, .num_layers = c->L, .bidirectional = c->bidirectional,
                         .batch_first = c->batch_first, .no_bias = !c->bias, .dtype = dt, .proj_size = c->P};
    tg_rnn *m = tg_rnn_new(tg_cell_by_name("lstm"), &cfg, NULL);
    cr_assert_not_null(m, "%s: %s", c->name, tg_last_error());
    /* torch's state_dict: the same names in the same order */
    cr_assert_eq(tg_params_count(m->params), c->n_params, "%s: %d parameters, torch %d", c->name,
                 tg_params_count(m->params), c->n_params);
    for (int i = 0; i < c->n_params; i++) {
        cr_assert_str_eq(tg_params_name_at(m->params, i), c->params[i].name, "%s: parameter %d", c->name, i);
        tg_tensor *p = tg_params_at(m->params, i);
        cr_assert_eq(tg_numel(p), c->params[i].n, "%s: %s", c->name, c->params[i].name);
        for (int j = 0; j < c->params[i].n; j++) tg_set(p, j, c->params[i].v[j]);
    }
    return m;
}

static void run_case(const pj_case *c, tg_dtype dt, const pj_result *want, double tol) {
    tg_rnn *m = model_of(c, dt);
    int D = c->bidirectional ? 2 : 1, LD = c->L * D;
    int64_t xs[3] = {c->T, c->B, c->I}, ys[3] = {c->T, c->B, D * c->P};
    if (c->batch_first) xs[0] = ys[0] = c->B, xs[1] = ys[1] = c->T;
    tg_tensor *x = tg_from_f64(dt, 3, xs, c->x), *h0 = tg_from_f64(dt, TG_SHAPE(LD, c->B, c->P), c->h0);
    tg_tensor *c0 = tg_from_f64(dt, TG_SHAPE(LD, c->B, c->H), c->c0);
    tg_tensor *dy = tg_from_f64(dt, 3, ys, c->dy), *dhn = tg_from_f64(dt, TG_SHAPE(LD, c->B, c->P), c->dhn);
    tg_tensor *dcn = tg_from_f64(dt, TG_SHAPE(LD, c->B, c->H), c->dcn);
    tg_set_requires_grad(x, true);
    tg_set_requires_grad(h0, true);
    tg_set_requires_grad(c0, true);
    tg_tensor *init[2] = {h0, c0};
    tg_rnn_output out;
    tg_tensor *y = tg_rnn_forward(m, x, &(tg_rnn_forward_opts){.init = init, .lengths = c->lengths}, &out);
    cr_assert_not_null(y, "%s: %s", c->name, tg_last_error());
    const char *cs = c->name;
    expect_close(y, want->y, tg_numel(dy), tol, "y", cs);
    expect_close(out.h_n, want->hn, LD * c->B * c->P, tol, "h_n", cs);
    expect_close(out.c_n, want->cn, LD * c->B * c->H, tol, "c_n", cs);
    tg_tensor *loss = tg_add(tg_add(tg_sum(tg_mul(y, dy)), tg_sum(tg_mul(out.h_n, dhn))), tg_sum(tg_mul(out.c_n, dcn)));
    cr_assert_eq(tg_backward(loss), 0, "%s: %s", cs, tg_last_error());
    expect_close(tg_grad(x), want->grad_x, tg_numel(x), tol, "grad.x", cs);
    expect_close(tg_grad(h0), want->grad_h0, tg_numel(h0), tol, "grad.h0", cs);
    expect_close(tg_grad(c0), want->grad_c0, tg_numel(c0), tol, "grad.c0", cs);
    for (int i = 0; i < c->n_params; i++) {
        char what[64];
        snprintf(what, sizeof what, "grad.%s", want->grads[i].name);
        expect_close(tg_grad(tg_params_find(m->params, want->grads[i].name)), want->grads[i].v, want->grads[i].n, tol,
                     what, cs);
    }
    tg_rnn_output_clear(&out);
    tg_tape_reset();
    tg_release(x); tg_release(h0); tg_release(c0); tg_release(dy); tg_release(dhn); tg_release(dcn);
    tg_rnn_free(m);
}

Test(proj, values_and_gradients_match_torch_f64) {
    for (int i = 0; i < PJ_N_CASES; i++) run_case(&pj_cases[i], TG_F64, &pj_cases[i].f64, 1e-12);
}

/* torch's float32 run from the same values rounded to float32; other summation orders: 2e-5 */
Test(proj, values_and_gradients_match_torch_f32) {
    for (int i = 0; i < PJ_N_CASES; i++) run_case(&pj_cases[i], TG_F32, &pj_cases[i].f32, 2e-5);
}

Test(proj, torch_messages_for_bad_proj_size) {
    th_record_errors();
    for (size_t i = 0; i < sizeof pj_errors / sizeof pj_errors[0]; i++) {
        th_reset_errors();
        tg_rnn *m = tg_rnn_new(tg_cell_by_name(pj_errors[i].cell),
                               &(tg_rnn_config){.input_size = 3, .hidden_size = 5, .proj_size = pj_errors[i].proj_size},
                               NULL);
        cr_expect_null(m, "%s proj_size %d accepted", pj_errors[i].cell, pj_errors[i].proj_size);
        tg_rnn_free(m);
        cr_expect(strstr(th_last_message(), pj_errors[i].message) != NULL, "%s proj_size %d: '%s' lacks torch's '%s'",
                  pj_errors[i].cell, pj_errors[i].proj_size, th_last_message(), pj_errors[i].message);
    }
    /* every zoo cell but lstm refuses it too */
    for (int i = 0; i < tg_cell_count(); i++) {
        const tg_cell *cell = tg_cell_at(i);
        if (!strcmp(cell->name, "lstm")) continue;
        th_reset_errors();
        tg_rnn *m = tg_rnn_new(cell, &(tg_rnn_config){.input_size = 3, .hidden_size = 5, .proj_size = 2}, NULL);
        cr_expect_null(m, "cell %s accepted proj_size", cell->name);
        tg_rnn_free(m);
        cr_expect(strstr(th_last_message(), "only supported for LSTM") != NULL, "%s: %s", cell->name, th_last_message());
    }
}

Test(proj, initial_states_of_the_wrong_width_are_refused) {
    th_record_errors();
    tg_rnn *m = tg_rnn_new(tg_cell_by_name("lstm"),
                           &(tg_rnn_config){.input_size = 2, .hidden_size = 5, .proj_size = 3, .dtype = TG_F64}, NULL);
    cr_assert_not_null(m);
    tg_tensor *x = tg_zeros(TG_F64, TG_SHAPE(4, 2, 2));
    tg_tensor *h_wide = tg_zeros(TG_F64, TG_SHAPE(1, 2, 5)), *c_narrow = tg_zeros(TG_F64, TG_SHAPE(1, 2, 3));
    tg_tensor *init1[2] = {h_wide, NULL}, *init2[2] = {NULL, c_narrow};
    cr_expect_null(tg_rnn_forward(m, x, &(tg_rnn_forward_opts){.init = init1}, NULL));
    cr_expect(strstr(th_last_message(), "h0 [1,2,5]") && strstr(th_last_message(), "expected [1,2,3]") &&
                  strstr(th_last_message(), "proj_size"), "%s", th_last_message());
    th_reset_errors();
    cr_expect_null(tg_rnn_forward(m, x, &(tg_rnn_forward_opts){.init = init2}, NULL));
    cr_expect(strstr(th_last_message(), "c0 [1,2,3]") && strstr(th_last_message(), "expected [1,2,5]"), "%s",
              th_last_message());
    tg_release(x); tg_release(h_wide); tg_release(c_narrow);
    tg_rnn_free(m);
}

/* learned h0 is [L·D, P], c0 [L·D, H]; a 2-layer bidirectional model's next layer reads 2P */
Test(proj, shapes_with_learned_init_and_two_directions) {
    tg_rnn_config cfg = {.input_size = 3, .hidden_size = 6, .proj_size = 2, .num_layers = 2, .bidirectional = true,
                         .learn_init = true, .dtype = TG_F64};
    tg_rnn *m = tg_rnn_new(tg_cell_by_name("lstm"), &cfg, NULL);
    cr_assert_not_null(m, "%s", tg_last_error());
    struct { const char *name; int64_t r, c; } want[] = {
        {"weight_ih_l0", 24, 3}, {"weight_hh_l0", 24, 2}, {"weight_hr_l0", 2, 6}, {"weight_hr_l0_reverse", 2, 6},
        {"weight_ih_l1", 24, 4}, {"weight_hh_l1_reverse", 24, 2}, {"h0", 4, 2}, {"c0", 4, 6}};
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
        tg_tensor *p = tg_params_find(m->params, want[i].name);
        cr_assert_not_null(p, "%s", want[i].name);
        cr_expect(tg_ndim(p) == 2 && tg_dim(p, 0) == want[i].r && tg_dim(p, 1) == want[i].c, "%s", want[i].name);
    }
    tg_tensor *x = th_rand(3, TG_SHAPE(5, 2, 3), -1, 1);
    tg_rnn_output out;
    tg_tensor *y = tg_rnn_forward(m, x, &(tg_rnn_forward_opts){.lengths = (int64_t[]){5, 3}}, &out);
    cr_assert_not_null(y, "%s", tg_last_error());
    cr_expect(tg_dim(y, 2) == 4 && tg_dim(out.h_n, 2) == 2 && tg_dim(out.c_n, 2) == 6);
    /* past its length a sequence's output is 0 (both directions) */
    for (int64_t t = 3; t < 5; t++)
        for (int64_t j = 0; j < 4; j++) cr_expect_eq(tg_get(y, (t * 2 + 1) * 4 + j), 0.0);
    tg_backward(tg_sum(tg_mul(y, y)));
    cr_expect_not_null(tg_grad(tg_params_find(m->params, "h0")));
    cr_expect_not_null(tg_grad(tg_params_find(m->params, "weight_hr_l1_reverse")));
    tg_rnn_output_clear(&out);
    tg_tape_reset();
    tg_release(x);
    tg_rnn_free(m);
}

/* tg_rnn_init reaches weight_hr (orthogonal: rows of W_hr [P, H] orthonormal) */
Test(proj, init_schemes_reach_weight_hr) {
    tg_rnn *m = tg_rnn_new(tg_cell_by_name("lstm"),
                           &(tg_rnn_config){.input_size = 3, .hidden_size = 6, .proj_size = 2, .dtype = TG_F64}, NULL);
    cr_assert_not_null(m);
    cr_assert_eq(tg_rnn_init(m, &(tg_rnn_init_opts){.weight_hh = TG_INIT_ORTHOGONAL}, NULL), 0, "%s", tg_last_error());
    const tg_tensor *w = tg_params_find(m->params, "weight_hr_l0");
    for (int a = 0; a < 2; a++)
        for (int b = 0; b < 2; b++) {
            double d = 0;
            for (int j = 0; j < 6; j++) d += tg_get(w, a * 6 + j) * tg_get(w, b * 6 + j);
            cr_expect(fabs(d - (a == b)) < 1e-12, "W_hr W_hrᵀ[%d][%d] = %g", a, b, d);
        }
    tg_rnn_free(m);
}

/* one step at a time without the tape = the whole sequence on it */
Test(proj, streaming_equals_the_runner) {
    tg_rnn *m = tg_rnn_new(tg_cell_by_name("lstm"),
                           &(tg_rnn_config){.input_size = 3, .hidden_size = 5, .proj_size = 2, .num_layers = 2,
                                            .dtype = TG_F64}, NULL);
    cr_assert_not_null(m);
    tg_tensor *x = th_rand(9, TG_SHAPE(6, 2, 3), -1, 1);
    tg_rnn_stream *s = tg_rnn_stream_new(m, NULL, 2);
    cr_assert_not_null(s, "%s", tg_last_error());
    tg_tensor *y = tg_rnn_forward(m, x, NULL, NULL);
    tg_tensor *yc = tg_copy(y);
    tg_tape_reset();
    for (int64_t t = 0; t < 6; t++) {
        tg_tensor *xt = tg_view_at(x, t), *xc = tg_copy(xt);
        const tg_tensor *h = tg_rnn_stream_step(s, xc);
        cr_assert_not_null(h, "%s", tg_last_error());
        cr_assert_eq(tg_dim(h, 1), 2);
        for (int j = 0; j < 4; j++) cr_expect(fabs(tg_get(h, j) - tg_get(yc, t * 4 + j)) < 1e-12, "t %lld", (long long)t);
        tg_release(xt);
        tg_release(xc);
    }
    cr_expect_eq(tg_dim(tg_rnn_stream_state(s, 0), 2), 2);
    cr_expect_eq(tg_dim(tg_rnn_stream_state(s, 1), 2), 5);
    tg_rnn_stream_free(s);
    tg_release(yc);
    tg_release(x);
    tg_rnn_free(m);
}

/* ---- the hand-derived BPTT with projections (tg_manual_stack_*) ---------------------------------------- */

#include <tapegrad/compare.h>
#include <tapegrad/manual.h>

/* the one-direction, time-major cases with biases straight against torch, without the tape */
static void manual_case(const pj_case *c, tg_dtype dt, const pj_result *want, double tol) {
    tg_tensor *params[2 * 5] = {0};
    tg_manual_layer lay[2] = {{0}}, grads[2] = {{0}};
    for (int i = 0; i < c->n_params; i++) {
        int k = c->params[i].name[strlen(c->params[i].name) - 1] - '0';
        const char *n = c->params[i].name;
        int64_t G4H = 4 * c->H, Ik = k ? c->P : c->I;
        tg_tensor *t = !strncmp(n, "weight_ih", 9) ? tg_from_f64(dt, TG_SHAPE(G4H, Ik), c->params[i].v)
                       : !strncmp(n, "weight_hh", 9) ? tg_from_f64(dt, TG_SHAPE(G4H, c->P), c->params[i].v)
                       : !strncmp(n, "weight_hr", 9) ? tg_from_f64(dt, TG_SHAPE(c->P, c->H), c->params[i].v)
                                                     : tg_from_f64(dt, TG_SHAPE(G4H), c->params[i].v);
        params[i] = t;
        if (!strncmp(n, "weight_ih", 9)) lay[k].weight_ih = t;
        else if (!strncmp(n, "weight_hh", 9)) lay[k].weight_hh = t;
        else if (!strncmp(n, "weight_hr", 9)) lay[k].weight_hr = t;
        else if (!strncmp(n, "bias_ih", 7)) lay[k].bias_ih = t;
        else lay[k].bias_hh = t;
    }
    tg_tensor *x = tg_from_f64(dt, TG_SHAPE(c->T, c->B, c->I), c->x);
    tg_tensor *h0 = tg_from_f64(dt, TG_SHAPE(c->L, c->B, c->P), c->h0), *c0 = tg_from_f64(dt, TG_SHAPE(c->L, c->B, c->H), c->c0);
    tg_tensor *dy = tg_from_f64(dt, TG_SHAPE(c->T, c->B, c->P), c->dy);
    tg_tensor *dhn = tg_from_f64(dt, TG_SHAPE(c->L, c->B, c->P), c->dhn), *dcn = tg_from_f64(dt, TG_SHAPE(c->L, c->B, c->H), c->dcn);
    tg_tensor *hn, *cn, *dx, *dh0, *dc0;
    tg_manual_cache *cache;
    tg_tensor *y = tg_manual_lstm_stack_forward(c->L, x, h0, c0, lay, &hn, &cn, &cache);
    cr_assert_not_null(y, "%s: %s", c->name, tg_last_error());
    expect_close(y, want->y, c->T * c->B * c->P, tol, "manual y", c->name);
    expect_close(hn, want->hn, c->L * c->B * c->P, tol, "manual h_n", c->name);
    expect_close(cn, want->cn, c->L * c->B * c->H, tol, "manual c_n", c->name);
    cr_assert_eq(tg_manual_lstm_stack_backward(cache, dy, dhn, dcn, grads, &dx, &dh0, &dc0), 0, "%s", tg_last_error());
    expect_close(dx, want->grad_x, c->T * c->B * c->I, tol, "manual grad.x", c->name);
    expect_close(dh0, want->grad_h0, c->L * c->B * c->P, tol, "manual grad.h0", c->name);
    expect_close(dc0, want->grad_c0, c->L * c->B * c->H, tol, "manual grad.c0", c->name);
    for (int i = 0; i < c->n_params; i++) {
        const char *n = want->grads[i].name;
        int k = n[strlen(n) - 1] - '0';
        tg_tensor *g = !strncmp(n, "weight_ih", 9) ? grads[k].weight_ih : !strncmp(n, "weight_hh", 9) ? grads[k].weight_hh
                       : !strncmp(n, "weight_hr", 9) ? grads[k].weight_hr : !strncmp(n, "bias_ih", 7) ? grads[k].bias_ih
                                                                                                 : grads[k].bias_hh;
        expect_close(g, want->grads[i].v, want->grads[i].n, tol, n, c->name);
    }
    tg_manual_layer_release(grads, c->L);
    tg_manual_cache_free(cache);
    tg_release(y); tg_release(hn); tg_release(cn); tg_release(dx); tg_release(dh0); tg_release(dc0);
    tg_release(x); tg_release(h0); tg_release(c0); tg_release(dy); tg_release(dhn); tg_release(dcn);
    for (int i = 0; i < c->n_params; i++) tg_release(params[i]);
}

Test(proj, manual_bptt_matches_torch) {
    int done = 0;
    for (int i = 0; i < PJ_N_CASES; i++) {
        const pj_case *c = &pj_cases[i];
        if (c->bidirectional || c->batch_first || c->lengths || !c->bias) continue;
        manual_case(c, TG_F64, &c->f64, 1e-12);
        manual_case(c, TG_F32, &c->f32, 2e-5);
        done++;
    }
    cr_expect_eq(done, 2, "the one- and two-layer cases");
}

/* tape vs hand-derived BPTT vs central differences, weight_hr_l{k} included */
Test(proj, triple_check_passes) {
    tg_compare_opts o = tg_compare_defaults();
    o.proj_size = 3;
    tg_compare_report *r = tg_compare_cell("lstm", &o);
    cr_assert_not_null(r, "%s", tg_last_error());
    cr_expect(r->has_manual && r->forward.done);
    int hr = 0;
    for (int i = 0; i < r->n_rows; i++) {
        hr += strstr(r->rows[i].name, "weight_hr") != NULL;
        cr_expect(r->rows[i].tape_manual.done, "%s", r->rows[i].name);
    }
    cr_expect_eq(hr, 2, "weight_hr of both layers checked");
    if (!r->pass) tg_compare_report_print(stderr, r);
    cr_expect(r->pass, "%d failed comparisons", r->n_fail);
    tg_compare_report_free(r);
}

Test(proj, manual_refusals_name_the_problem) {
    th_record_errors();
    tg_tensor *x = tg_zeros(TG_F64, TG_SHAPE(3, 2, 4)), *h0 = tg_zeros(TG_F64, TG_SHAPE(1, 2, 2));
    tg_tensor *c0 = tg_zeros(TG_F64, TG_SHAPE(1, 2, 5)), *c0bad = tg_zeros(TG_F64, TG_SHAPE(1, 2, 2));
    tg_tensor *wih = tg_zeros(TG_F64, TG_SHAPE(20, 4)), *whh = tg_zeros(TG_F64, TG_SHAPE(20, 2));
    tg_tensor *b = tg_zeros(TG_F64, TG_SHAPE(20)), *whr = tg_zeros(TG_F64, TG_SHAPE(2, 5)), *whr_bad = tg_zeros(TG_F64, TG_SHAPE(5, 2));
    tg_manual_layer ok = {wih, whh, b, b, whr}, bad = {wih, whh, b, b, whr_bad};
    struct { const char *what; tg_tensor *y; const char *msg; } cases[3];
    th_reset_errors();
    cases[0].y = tg_manual_lstm_stack_forward(1, x, h0, c0, &bad, NULL, NULL, NULL);
    cases[0].what = "weight_hr transposed", cases[0].msg = "weight_hr_l0 [5,2] does not match [P,H] = [2,5]";
    char m0[256];
    snprintf(m0, sizeof m0, "%s", th_last_message());
    th_reset_errors();
    cases[1].y = tg_manual_lstm_stack_forward(1, x, h0, c0bad, &ok, NULL, NULL, NULL);
    cases[1].what = "c0 as narrow as h0", cases[1].msg = "H above P = 2";
    char m1[256];
    snprintf(m1, sizeof m1, "%s", th_last_message());
    th_reset_errors();
    tg_tensor *h0s = tg_zeros(TG_F64, TG_SHAPE(2, 2)), *c0s = tg_zeros(TG_F64, TG_SHAPE(2, 5));
    cases[2].y = tg_manual_lstm_forward(x, h0s, c0s, &ok, NULL, NULL, NULL);
    cases[2].what = "one sequence", cases[2].msg = "stack functions only";
    char m2[256];
    snprintf(m2, sizeof m2, "%s", th_last_message());
    const char *msgs[3] = {m0, m1, m2};
    for (int i = 0; i < 3; i++) {
        cr_expect_null(cases[i].y, "%s accepted", cases[i].what);
        tg_release(cases[i].y);
        cr_expect(strstr(msgs[i], cases[i].msg) != NULL, "%s: '%s' lacks '%s'", cases[i].what, msgs[i], cases[i].msg);
    }
    /* weight_hr on a GRU */
    th_reset_errors();
    tg_tensor *y = tg_manual_stack_forward(TG_MANUAL_GRU, 1, x, h0, NULL, &ok, NULL, NULL, NULL);
    cr_expect_null(y);
    cr_expect(strstr(th_last_message(), "not gru") != NULL, "%s", th_last_message());
    tg_release(x); tg_release(h0); tg_release(c0); tg_release(c0bad); tg_release(wih); tg_release(whh); tg_release(b);
    tg_release(whr); tg_release(whr_bad); tg_release(h0s); tg_release(c0s);
}

/* ---- `tapegrad train --proj P`: the model (train/), its checkpoints and the commands that read them -- */

TestSuite(proj_cli, .init = th_dir_make, .fini = th_dir_remove);

#define PROJ_RUN "train --task adding --seq 12 --hidden 16 --proj 4 --quiet"

/* Every tensor of a and b (files in the test's directory) is the same, bit for bit. */
static void expect_same_files(const char *a, const char *b) {
    tg_st_file *fa = tg_st_load(th_path_in(a)), *fb = tg_st_load(th_path_in(b));
    cr_assert(fa && fb, "cannot load %s / %s: %s", a, b, tg_last_error());
    cr_assert_eq(tg_st_count(fa), tg_st_count(fb), "%s and %s hold different tensors", a, b);
    for (int i = 0; i < tg_st_count(fa); i++) {
        const tg_tensor *ta = tg_st_tensor_at(fa, i), *tb = tg_st_get(fb, tg_st_name_at(fa, i));
        cr_assert(tb && tg_same_shape(ta, tb), "%s: '%s' missing or of another shape", b, tg_st_name_at(fa, i));
        cr_expect(memcmp(tg_cdata(ta), tg_cdata(tb), (size_t)tg_numel(ta) * tg_itemsize(tg_dtype_of(ta))) == 0,
                  "'%s' differs between %s and %s", tg_st_name_at(fa, i), a, b);
    }
    tg_st_free(fa);
    tg_st_free(fb);
}

/* 10 steps + save + resume to 20 == 20 steps in one go; the file holds torch's weight_hr_l0 [P,H], a
 * P-wide weight_hh and head, and proj_size in its metadata; summary and the run header show it. */
Test(proj_cli, train_with_proj_resumes_bit_for_bit, .timeout = 120) {
    th_run_result r = th_run(PROJ_RUN " --steps 10 --save half.safetensors");
    cr_assert_eq(r.status, 0, "%s", r.err);
    cr_expect(strstr(r.out, "model: lstm, 1 layer x 16 hidden projected to 4 + linear head, 581 parameters"), "%s", r.out);
    th_run_free(&r);
    r = th_run(PROJ_RUN " --resume half.safetensors --steps 20 --save resumed.safetensors");
    cr_assert_eq(r.status, 0, "%s", r.err);
    cr_expect(strstr(r.out, "resumed from half.safetensors at step 10"), "%s", r.out);
    th_run_free(&r);
    r = th_run(PROJ_RUN " --steps 20 --save straight.safetensors");
    cr_assert_eq(r.status, 0, "%s", r.err);
    th_run_free(&r);
    expect_same_files("resumed.safetensors", "straight.safetensors");
    expect_same_files("resumed.optim.safetensors", "straight.optim.safetensors");
    tg_st_file *f = tg_st_load(th_path_in("resumed.safetensors"));
    cr_assert_not_null(f, "%s", tg_last_error());
    cr_expect_str_eq(tg_st_meta(f, "proj_size"), "4");
    const struct { const char *name; int64_t rows, cols; } shapes[] = {
        {"rnn.weight_hr_l0", 4, 16}, {"rnn.weight_hh_l0", 64, 4}, {"head.weight", 1, 4}};
    for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++) {
        const tg_tensor *t = tg_st_get(f, shapes[i].name);
        cr_expect(t && tg_ndim(t) == 2 && tg_dim(t, 0) == shapes[i].rows && tg_dim(t, 1) == shapes[i].cols,
                  "%s is not [%lld,%lld]", shapes[i].name, (long long)shapes[i].rows, (long long)shapes[i].cols);
    }
    tg_st_free(f);
    r = th_run("summary --model resumed.safetensors");
    cr_assert_eq(r.status, 0, "%s", r.err);
    cr_expect(strstr(r.out, "x 16 hidden projected to 4 + linear head") && strstr(r.out, "rnn.weight_hr_l0  [4, 16]") &&
              strstr(r.out, "[T, B, 4]") && strstr(r.out, "torch's proj_size 4"), "%s", r.out);
    th_run_free(&r);
    /* a resumed run keeps its projection; --init needs the same model */
    th_expect_usage_error("train --resume half.safetensors --proj 3 --steps 15", "--proj 3 differs from the checkpoint's 4",
                          NULL);
    th_expect_usage_error("train --task adding --seq 12 --hidden 16 --init half.safetensors --steps 3",
                          "unexpected tensor 'rnn.weight_hr_l0' [4,16]", "(the model: --cell lstm --hidden 16 --layers 1");
    th_expect_usage_error("train --task adding --seq 12 --hidden 16 --proj 5 --init half.safetensors --steps 3",
                          "'rnn.weight_hr_l0' is [4,16] in the file", "--hidden 16 --proj 5 --layers 1");
    r = th_run(PROJ_RUN " --init half.safetensors --steps 3");
    cr_expect_eq(r.status, 0, "%s", r.err);
    cr_expect(strstr(r.out, "initial weights from half.safetensors: 7 tensors"), "%s", r.out);
    th_run_free(&r);
}

/* torch's rules for proj_size, named by the options: 0 (no meaning as a projection: leave --proj out),
 * negative, >= --hidden (also the task's default hidden size), on a cell other than lstm. */
Test(proj_cli, bad_proj_values_are_refused_naming_them) {
    th_expect_usage_error("train --task adding --hidden 16 --proj 0", "option --proj: 0 is out of range [1, 4095]", NULL);
    th_expect_usage_error("train --task adding --hidden 16 --proj -2", "option --proj: -2 is out of range", NULL);
    th_expect_usage_error("train --task adding --hidden 16 --proj 16", "--proj 16 must be below --hidden 16",
                          "proj_size has to be smaller than hidden_size");
    th_expect_usage_error("train --task adding --proj 4000", "--proj 4000 must be below --hidden", NULL);
    th_expect_usage_error("train --task adding --hidden 16 --proj 4 --cell gru", "--proj applies to --cell lstm only, not gru",
                          "proj_size argument is only supported for LSTM");
    th_expect_usage_error("train --task adding --hidden 16 --proj 4 --cell rnn_tanh", "not rnn_tanh", NULL);
    th_expect_usage_error("train --task adding --hidden 16 --proj 4 --cell lstm_ln", "not lstm_ln", NULL);
}

/* Rewrites the first `from` in a file's header to `to` (same length, so the file stays valid). */
static void patch_file(const char *src, const char *dst, const char *from, const char *to) {
    FILE *f = fopen(th_path_in(src), "rb");
    cr_assert_not_null(f);
    static char buf[1 << 16];
    size_t n = fread(buf, 1, sizeof buf, f);
    fclose(f);
    cr_assert(n > 0 && n < sizeof buf && strlen(from) == strlen(to));
    size_t k = strlen(from), at = 0;
    while (at + k <= n && memcmp(buf + at, from, k) != 0) at++;
    cr_assert(at + k <= n, "%s has no '%s'", src, from);
    memcpy(buf + at, to, k);
    f = fopen(th_path_in(dst), "wb");
    cr_assert(f && fwrite(buf, 1, n, f) == n);
    fclose(f);
}

/* The model's loader checks proj_size against the tensors (summary, predict, sample and --resume use
 * it): metadata that contradicts weight_hr_l0 is named; a checkpoint written before proj_size existed
 * (no key) is a model without projections; tg_model_new refuses what torch refuses. */
Test(proj_cli, checkpoint_proj_size_is_checked_against_the_tensors) {
    th_run_result r = th_run(PROJ_RUN " --steps 2 --save p.safetensors");
    cr_assert_eq(r.status, 0, "%s", r.err);
    th_run_free(&r);
    r = th_run("train --task adding --seq 12 --hidden 16 --quiet --steps 2 --save n.safetensors");
    cr_assert_eq(r.status, 0, "%s", r.err);
    th_run_free(&r);
    patch_file("p.safetensors", "p0.safetensors", "\"proj_size\":\"4\"", "\"proj_size\":\"0\"");
    patch_file("p.safetensors", "p9.safetensors", "\"proj_size\":\"4\"", "\"proj_size\":\"9\"");
    patch_file("p.safetensors", "px.safetensors", "\"proj_size\":\"4\"", "\"proj_size\":\"x\"");
    patch_file("n.safetensors", "n5.safetensors", "\"proj_size\":\"0\"", "\"proj_size\":\"5\"");
    patch_file("n.safetensors", "old.safetensors", "\"proj_size\":\"0\"", "\"proj_sizz\":\"0\"");
    const struct { const char *file, *msg; } bad[] = {
        {"p0.safetensors", "metadata proj_size=0, hidden_size=16 contradict tensor 'rnn.weight_hr_l0' [4,16]"},
        {"p9.safetensors", "metadata proj_size=9, hidden_size=16 contradict tensor 'rnn.weight_hr_l0' [4,16]"},
        {"px.safetensors", "the checkpoint's proj_size 'x' is not in 0..15"},
        {"n5.safetensors", "metadata proj_size=5 but there is no tensor 'rnn.weight_hr_l0'"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char args[128];
        snprintf(args, sizeof args, "summary --model %s", bad[i].file);
        th_expect_usage_error(args, bad[i].msg, NULL);
    }
    r = th_run("summary --model old.safetensors");
    cr_expect_eq(r.status, 0, "%s", r.err);
    cr_expect(strstr(r.out, "x 16 hidden + linear head"), "%s", r.out);
    th_run_free(&r);
    char err[512];
    tg_model_config mc = {.cell = "gru", .input_size = 2, .hidden_size = 8, .output_size = 1, .layers = 1, .proj_size = 3};
    cr_expect_null(tg_model_new(&mc, 1, err, sizeof err));
    cr_expect(strstr(err, "proj_size 3: projections are only supported for LSTM, not cell 'gru'"), "%s", err);
    snprintf(mc.cell, sizeof mc.cell, "lstm");
    mc.proj_size = 8;
    cr_expect_null(tg_model_new(&mc, 1, err, sizeof err));
    cr_expect(strstr(err, "proj_size 8 must be in 1..7, below hidden_size 8"), "%s", err);
    mc.proj_size = 3;
    tg_model *m = tg_model_new(&mc, 1, err, sizeof err);
    cr_assert_not_null(m, "%s", err);
    cr_expect_eq(tg_dim(m->head->weight, 1), 3);
    tg_model_free(m);
}

/* predict and sample run a checkpoint with projections: predict names the model, sample streams it. */
Test(proj_cli, predict_and_sample_take_a_proj_model, .timeout = 120) {
    FILE *f = fopen(th_path_in("s.csv"), "w");
    cr_assert_not_null(f);
    fprintf(f, "v\n");
    for (int i = 0; i < 200; i++) fprintf(f, "%.4f\n", sin(0.3 * i));
    fclose(f);
    th_run_result r = th_run("train --data s.csv --target next --seq 8 --hidden 8 --proj 3 --epochs 1 --quiet "
                             "--save d.safetensors");
    cr_assert_eq(r.status, 0, "%s", r.err);
    th_run_free(&r);
    r = th_run("predict --model d.safetensors --split val");
    cr_assert_eq(r.status, 0, "%s", r.err);
    cr_expect(strstr(r.out, "model: lstm, 1 layer x 8 hidden projected to 3, F32") && strstr(r.out, "MSE "), "%s", r.out);
    th_run_free(&r);
    r = th_run("train --task charlm --seq 16 --hidden 16 --proj 8 --batch 8 --steps 4 --quiet --save c.safetensors");
    cr_assert_eq(r.status, 0, "%s", r.err);
    th_run_free(&r);
    r = th_run("sample --model c.safetensors --length 40 --seed 3");
    cr_assert_eq(r.status, 0, "%s", r.err);
    cr_expect_geq(strlen(r.out), 40, "%s", r.out);
    th_run_free(&r);
}
