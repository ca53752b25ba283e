/* tests/test_compare.c - the triple check (tape vs hand-derived BPTT vs finite differences) as an API:
 * it passes for every cell with a hand-derived reference, covers every tensor, catches a wrong
 * gradient (a too-large FD step), rejects bad sizes, and leaks nothing. */
#include <criterion/criterion.h>
#include <math.h>
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
