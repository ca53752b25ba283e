/* tools/triple.c - the compact gradient triple-check table of the main job: for each given cell, at
 * small seeded sizes in F64, the worst error per tensor of tape BPTT vs hand-derived BPTT vs central
 * finite differences (tg_compare_cell in <tapegrad/compare.h> does the work). Every element is
 * checked (no FD subsampling at these sizes); the whole table takes well under a second. */
#include <string.h>

#include <tapegrad/tapegrad.h>

#include "tools/cli.h"
#include "tools/commands.h"

/* "1.2e-16 " / "1.2e-04*" (a failed comparison) / "      - " (not computed) */
static void cell_err(FILE *f, const tg_compare_diff *d) {
    if (d->done) fprintf(f, "  %9.1e%c", d->max_rel, d->pass ? ' ' : '*');
    else fprintf(f, "  %9s ", "-");
}

int tg_print_triple_check(FILE *f, const char *const *cells, int n_cells, uint64_t seed) {
    if (!f) f = stdout;
    tg_compare_opts o = tg_compare_defaults(); /* T=5 B=3 I=4 H=6 L=2, every element */
    o.seed = seed;
    fprintf(f, "gradient triple check (F64, T=%lld B=%lld I=%lld H=%lld layers=%d, seed %llu): tape BPTT vs\n"
               "hand-derived BPTT vs central differences (eps %g) of sum(y*dy) + sum(hn*dhn) (+ sum(cn*dcn)).\n"
               "Worst scaled relative error max|a-b|/max(1,max|ref|) per tensor; pass: tape~manual <= %g,\n"
               "vs FD every element |a-n| <= %g + %g|n|; '*' marks a failure, '-' no hand-derived reference.\n\n",
            (long long)o.T, (long long)o.B, (long long)o.I, (long long)o.H, o.layers, (unsigned long long)seed, o.eps,
            o.manual_tol, o.fd_atol, o.fd_rtol);
    fprintf(f, "%-18s %-20s %-10s %11s %11s %11s   %s\n", "cell", "tensor", "shape", "tape~manual", "tape~FD",
            "manual~FD", "status");
    double t0 = cli_now();
    int failed_cells = 0;
    for (int c = 0; c < n_cells; c++) {
        tg_clear_error();
        bool known = false;
        for (int i = 0; i < tg_cell_count() && !known; i++) known = !strcmp(tg_cell_at(i)->name, cells[c]);
        if (!known) {
            fprintf(f, "%-18s unknown cell\n", cells[c]);
            failed_cells++;
            continue;
        }
        tg_compare_report *r = tg_compare_cell(cells[c], &o);
        if (!r) {
            fprintf(f, "%-18s could not run: %s\n", cells[c], tg_last_error());
            failed_cells++;
            continue;
        }
        for (int i = 0; i < r->n_rows; i++) {
            const tg_compare_row *row = &r->rows[i];
            char shape[48];
            size_t n = (size_t)snprintf(shape, sizeof shape, "[");
            for (int d = 0; d < row->ndim && n < sizeof shape; d++)
                n += (size_t)snprintf(shape + n, sizeof shape - n, d ? ",%lld" : "%lld", (long long)row->shape[d]);
            if (n < sizeof shape) snprintf(shape + n, sizeof shape - n, "]");
            fprintf(f, "%-18s %-20s %-10s", i ? "" : r->cell, row->name, shape);
            cell_err(f, &row->tape_manual);
            cell_err(f, &row->tape_fd);
            cell_err(f, &row->manual_fd);
            bool ok = row->tape_manual.pass && row->tape_fd.pass && row->manual_fd.pass;
            fprintf(f, "  %s\n", ok ? "ok" : "FAIL");
        }
        if (r->forward.done)
            fprintf(f, "%-18s %-20s %-10s  %9.1e%c %10s %11s    %s\n", "", "forward y,hn,cn", "", r->forward.max_rel,
                    r->forward.pass ? ' ' : '*', "", "", r->forward.pass ? "ok" : "FAIL");
        if (!r->pass) failed_cells++;
        tg_compare_report_free(r);
    }
    fprintf(f, "\ntriple check: %d of %d cells pass (%.2f s)\n", n_cells - failed_cells, n_cells, cli_now() - t0);
    return failed_cells ? 1 : 0;
}
