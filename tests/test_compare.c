/* tests/test_compare.c - the triple check (tape vs hand-derived BPTT vs finite differences) as an API:
 * it passes for every cell with a hand-derived reference, covers every tensor, catches a wrong
 * gradient (a too-large FD step), rejects bad sizes, and leaks nothing. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <tapegrad/compare.h>
#include <tapegrad/manual.h>
#include <tapegrad/nn.h>
#include "helpers.h"

Test(compare, every_reference_cell_passes_all_three_ways) {
    long live = tg_live_tensors();
    /* every registered cell with a hand-derived BPTT (tg_manual_cell_parse); test_zoo checks the others */
    const char *cells[64];
    int n_cells = 0;
    for (int i = 0; i < tg_cell_count() && n_cells < 64; i++) {
        tg_manual_cell mc;
        if (tg_manual_cell_parse(tg_cell_at(i)->name, &mc) == 0) cells[n_cells++] = tg_cell_at(i)->name;
    }
    cr_expect_geq(n_cells, 5, "the five built-in cells have hand-derived references");
    for (int c = 0; c < n_cells; c++) {
        tg_compare_opts o = tg_compare_defaults();
        o.seed = 7 + (uint64_t)c;
        tg_compare_report *r = tg_compare_cell(cells[c], &o);
        cr_assert_not_null(r, "%s", cells[c]);
        cr_expect(r->has_manual);
        int want_rows = 1 + r->n_states + 4 * o.layers; /* x, states, 4 params per layer */
        cr_expect_eq(r->n_rows, want_rows, "%s: %d rows", cells[c], r->n_rows);
        for (int i = 0; i < r->n_rows; i++) {
            const tg_compare_row *row = &r->rows[i];
            cr_expect(row->tape_manual.done && row->tape_fd.done && row->manual_fd.done, "%s %s", cells[c], row->name);
            cr_expect_leq(row->tape_manual.max_rel, 1e-10, "%s %s tape vs manual %g", cells[c], row->name, row->tape_manual.max_rel);
            cr_expect(row->tape_fd.pass, "%s %s vs fd %g", cells[c], row->name, row->tape_fd.max_abs);
            cr_expect_gt(row->max_grad, 1e-3, "%s %s: gradients are not trivially zero", cells[c], row->name);
        }
        cr_expect(r->forward.pass);
        cr_expect(r->pass, "%s: %d failed comparisons", cells[c], r->n_fail);
        tg_compare_report_free(r);
    }
    cr_expect_eq(tg_live_tensors(), live);
}

Test(compare, a_coarse_finite_difference_step_is_reported_as_failing) {
    tg_compare_opts o = tg_compare_defaults();
    o.eps = 0.3; /* truncation error ~eps²: far outside the FD tolerance */
    tg_compare_report *r = tg_compare_cell("gru", &o);
    cr_assert_not_null(r);
    cr_expect_not(r->pass);
    cr_expect_gt(r->n_fail, 0);
    bool tape_manual_ok = true;
    for (int i = 0; i < r->n_rows; i++) tape_manual_ok &= r->rows[i].tape_manual.pass;
    cr_expect(tape_manual_ok, "tape and manual still agree");
    tg_compare_report_free(r);
}

Test(compare, subsampling_and_cells_without_a_reference) {
    tg_compare_opts o = tg_compare_defaults();
    o.max_elems = 5;
    tg_compare_report *r = tg_compare_cell("mgu", &o);
    cr_assert_not_null(r);
    cr_expect_not(r->has_manual);
    cr_expect(r->subsampled);
    for (int i = 0; i < r->n_rows; i++) {
        cr_expect_leq(r->rows[i].fd_elems, 5);
        cr_expect_not(r->rows[i].tape_manual.done);
        cr_expect(r->rows[i].tape_fd.pass, "%s", r->rows[i].name);
    }
    tg_compare_report_free(r);
}

Test(compare, bad_arguments) {
    th_record_errors();
    cr_expect_null(tg_compare_cell("nonsense", NULL));
    cr_expect(strstr(th_last_message(), "nonsense") != NULL, "%s", th_last_message());
    th_reset_errors();
    tg_compare_opts o = tg_compare_defaults();
    o.T = 0;
    cr_expect_null(tg_compare_cell("lstm", &o));
    cr_expect_gt(th_error_count(), 0);
    tg_set_error_handler(NULL, NULL);
}

/* ---- the user's own backward as a hook (tg_cell.manual) ----------------------------------------------- */

/* h' = tanh(W_ih x + b_ih + W_hh h + b_hh) by hand; g_rnn_bug: 0 right, 1 dW_hh forgotten (a missing
 * term that reaches weight_hh only), 2 dx returned with the wrong shape, 3 forward fails with a message */
static int g_rnn_bug;

static int rnn_forward(const tg_cell *cell, const tg_cell_params *p, const tg_tensor *x, tg_tensor *const *state_in,
                       tg_tensor **state_out, void **cache) {
    (void)cell;
    if (g_rnn_bug == 3) { tg_error("rnn_forward", "the user's forward refuses"); return -1; }
    int64_t B = tg_dim(x, 0), I = p->input_size, H = p->hidden_size;
    double *X = tg_f64((tg_tensor *)x), *Hp = tg_f64(state_in[0]), *Wi = tg_f64(p->weight_ih), *Wh = tg_f64(p->weight_hh);
    double *bi = tg_f64(p->bias_ih), *bh = tg_f64(p->bias_hh);
    double *k = malloc(sizeof(double) * (size_t)(B * (I + 2 * H))); /* x, h, h' */
    state_out[0] = tg_zeros(TG_F64, TG_SHAPE(B, H));
    double *Hn = tg_f64(state_out[0]);
    for (int64_t n = 0; n < B; n++)
        for (int64_t j = 0; j < H; j++) {
            double a = bi[j] + bh[j];
            for (int64_t q = 0; q < I; q++) a += Wi[j * I + q] * X[n * I + q];
            for (int64_t q = 0; q < H; q++) a += Wh[j * H + q] * Hp[n * H + q];
            Hn[n * H + j] = tanh(a);
        }
    memcpy(k, X, sizeof(double) * (size_t)(B * I));
    memcpy(k + B * I, Hp, sizeof(double) * (size_t)(B * H));
    memcpy(k + B * (I + H), Hn, sizeof(double) * (size_t)(B * H));
    *cache = k;
    return 0;
}

static int rnn_backward(const tg_cell *cell, const tg_cell_params *p, void *cache, tg_tensor *const *d_out,
                        tg_tensor **dx, tg_tensor **d_in, tg_cell_params *g) {
    (void)cell;
    int64_t H = p->hidden_size, I = p->input_size, B = tg_dim(d_out[0], 0);
    const double *X = cache, *Hp = X + B * I, *Hn = Hp + B * H, *dH = tg_f64(d_out[0]);
    double *Wi = tg_f64(p->weight_ih), *Wh = tg_f64(p->weight_hh);
    *dx = tg_zeros(TG_F64, TG_SHAPE(B, g_rnn_bug == 2 ? I + 1 : I));
    d_in[0] = tg_zeros(TG_F64, TG_SHAPE(B, H));
    if (g_rnn_bug == 2) return 0;
    double *dX = tg_f64(*dx), *dHp = tg_f64(d_in[0]);
    for (int64_t n = 0; n < B; n++)
        for (int64_t j = 0; j < H; j++) {
            double da = dH[n * H + j] * (1 - Hn[n * H + j] * Hn[n * H + j]); /* tanh' = 1 − h'² */
            tg_f64(g->bias_ih)[j] += da;
            tg_f64(g->bias_hh)[j] += da;
            for (int64_t q = 0; q < I; q++) {
                tg_f64(g->weight_ih)[j * I + q] += da * X[n * I + q];
                dX[n * I + q] += Wi[j * I + q] * da;
            }
            for (int64_t q = 0; q < H; q++) {
                if (g_rnn_bug != 1) tg_f64(g->weight_hh)[j * H + q] += da * Hp[n * H + q];
                dHp[n * H + q] += Wh[j * H + q] * da;
            }
        }
    return 0;
}

static const tg_cell_manual rnn_hook = {.forward = rnn_forward, .backward = rnn_backward};
static tg_cell hooked_rnn;

static void register_hooked_rnn(void) {
    if (hooked_rnn.name) return;
    hooked_rnn = *tg_cell_by_name("rnn_tanh");
    hooked_rnn.name = "test_hooked_rnn";
    hooked_rnn.manual = &rnn_hook;
    cr_assert_eq(tg_cell_register(&hooked_rnn), 0, "%s", tg_last_error());
}

Test(compare, a_manual_hook_is_checked_and_a_wrong_one_is_named_per_tensor) {
    register_hooked_rnn();
    long live = tg_live_tensors();
    tg_compare_opts o = tg_compare_defaults();
    g_rnn_bug = 0;
    tg_compare_report *r = tg_compare_cell("test_hooked_rnn", &o);
    cr_assert_not_null(r, "%s", tg_last_error());
    cr_expect(r->has_manual && r->manual_hook);
    for (int i = 0; i < r->n_rows; i++)
        cr_expect(r->rows[i].tape_manual.done && r->rows[i].tape_manual.max_rel <= 1e-12, "%s: %g", r->rows[i].name,
                  r->rows[i].tape_manual.max_rel);
    cr_expect(r->forward.done && r->forward.pass);
    cr_expect(r->pass, "%d failed comparisons", r->n_fail);
    tg_compare_report_free(r);

    g_rnn_bug = 1; /* dW_hh never accumulated: weight_hh_l0 and _l1 fail, and nothing else */
    r = tg_compare_cell("test_hooked_rnn", &o);
    cr_assert_not_null(r);
    cr_expect(!r->pass);
    int failed = 0;
    for (int i = 0; i < r->n_rows; i++) {
        const tg_compare_row *row = &r->rows[i];
        bool hh = strstr(row->name, "weight_hh") != NULL;
        cr_expect_eq(!row->tape_manual.pass, hh, "%s: tape vs manual %s", row->name, row->tape_manual.pass ? "passed" : "failed");
        cr_expect_eq(!row->manual_fd.pass, hh, "%s: manual vs FD", row->name);
        cr_expect(row->tape_fd.pass, "%s: the tape is right", row->name);
        failed += hh;
    }
    cr_expect_eq(failed, o.layers);
    char *text = NULL;
    size_t len = 0;
    FILE *mem = open_memstream(&text, &len);
    tg_compare_report_print(mem, r);
    fclose(mem);
    char *row = strstr(text, "grad.weight_hh_l0");
    cr_assert_not_null(row);
    char *eol = strchr(row, '\n');
    cr_expect(eol && eol - row > 4 && !strncmp(eol - 4, "FAIL", 4), "the printed row says FAIL: %.*s", (int)(eol - row), row);
    cr_expect(strstr(text, "its tg_cell_manual hook"));
    free(text);
    tg_compare_report_free(r);
    g_rnn_bug = 0;
    cr_assert_eq(tg_live_tensors(), live, "tensors leaked");
}

Test(compare, a_broken_manual_hook_gets_a_message) {
    register_hooked_rnn();
    th_record_errors();
    long live = tg_live_tensors();
    tg_compare_opts o = tg_compare_defaults();
    g_rnn_bug = 2;
    cr_expect_null(tg_compare_cell("test_hooked_rnn", &o));
    cr_expect(strstr(th_last_message(), "the manual backward at layer 1, step 4 returned dx[0] as [3,7], expected [3,6] F64"),
              "%s", th_last_message());
    th_reset_errors();
    g_rnn_bug = 3;
    cr_expect_null(tg_compare_cell("test_hooked_rnn", &o));
    cr_expect(strstr(th_last_message(), "the user's forward refuses"), "%s", th_last_message());
    g_rnn_bug = 0;
    th_reset_errors();
    /* a model the hook driver does not run, and a cell without a hook */
    tg_rnn_config cfg = {.input_size = 3, .hidden_size = 4, .bidirectional = true, .dtype = TG_F64};
    tg_rnn *m = tg_rnn_new(&hooked_rnn, &cfg, NULL);
    tg_tensor *x = tg_zeros(TG_F64, TG_SHAPE(2, 1, 3));
    tg_cell_manual_result res;
    cr_expect_eq(tg_cell_manual_bptt(m, x, NULL, NULL, NULL, &res), -1);
    cr_expect(strstr(th_last_message(), "only one direction"), "%s", th_last_message());
    tg_rnn_free(m);
    th_reset_errors();
    cfg.bidirectional = false;
    m = tg_rnn_new(tg_cell_by_name("gru"), &cfg, NULL);
    cr_expect_eq(tg_cell_manual_bptt(m, x, NULL, NULL, NULL, &res), -1);
    cr_expect(strstr(th_last_message(), "cell 'gru' has no manual hook"), "%s", th_last_message());
    tg_rnn_free(m);
    tg_release(x);
    cr_assert_eq(tg_live_tensors(), live, "tensors leaked");
}
