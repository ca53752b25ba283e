/* tools/cmd_gradcheck.c - `tapegrad gradcheck`: the triple check (tape BPTT vs hand-derived BPTT vs
 * central finite differences) of one or more registered cells, as an aligned table per cell
 * (tg_compare_cell in <tapegrad/compare.h>). Exit 0 when everything passes, 1 when a check fails,
 * 2 for bad arguments (including sizes a cell cannot run with, e.g. mut1 needs I == H). */
#include <string.h>

#include <tapegrad/tapegrad.h>

#include "tools/cli.h"
#include "tools/commands.h"

#define MAX_CELLS 128

static bool known_cell(const char *name) {
    for (int i = 0; i < tg_cell_count(); i++)
        if (!strcmp(tg_cell_at(i)->name, name)) return true;
    return false;
}

static void known_list(char *buf, size_t size) {
    size_t n = 0;
    buf[0] = 0;
    for (int i = 0; i < tg_cell_count() && n < size; i++)
        n += (size_t)snprintf(buf + n, size - n, "%s%s", i ? ", " : "", tg_cell_at(i)->name);
}

int cmd_gradcheck(int argc, char **argv) {
    tg_compare_opts d = tg_compare_defaults();
    const char *cells = NULL;
    long T = d.T, B = d.B, I = d.I, H = d.H, layers = d.layers, seed = (long)d.seed, max_elems = 256, proj = 0;
    double eps = d.eps;
    const cli_opt opts[] = {
        {"--cell", CLI_STR, &cells, 0, 0, "cell name, or a comma-separated list, or 'all'"},
        {"--T", CLI_INT, &T, 1, 10000, "time steps"},
        {"--B", CLI_INT, &B, 1, 4096, "batch size"},
        {"--I", CLI_INT, &I, 1, 4096, "input size"},
        {"--H", CLI_INT, &H, 1, 4096, "hidden size"},
        {"--layers", CLI_INT, &layers, 1, 64, "stacked layers"},
        {"--proj", CLI_INT, &proj, 0, 4095, "lstm with projections: proj_size P < H (0 = none)"},
        {"--seed", CLI_INT, &seed, 0, 9.2e18, "seed of parameters, inputs, upstream gradients, FD subsample"},
        {"--max-elems", CLI_INT, &max_elems, 0, 1e12, "finite differences on at most N elements per tensor, a seeded choice (0 = all)"},
        {"--eps", CLI_REAL, &eps, 1e-12, 1e-1, "central-difference step"},
    };
    const cli_cmd cmd = {"gradcheck", "--cell C [--T N --B N --I N --H N --layers N --seed N --max-elems N --eps X]",
                         "Checks the gradients of a stacked network of cell C in F64 three ways: the tape's\n"
                         "BPTT, the hand-derived BPTT (rnn_tanh, rnn_relu, lstm, gru, gru_reset_before) and central finite\n"
                         "differences of loss = sum(y*dy) + sum(hn*dhn) (+ sum(cn*dcn)), with random seeded\n"
                         "parameters, inputs, initial states and upstream gradients. Prints max abs / max rel\n"
                         "error per tensor. Exit status 0 when every comparison passes, 1 when one fails.",
                         opts, (int)(sizeof opts / sizeof opts[0]), false};
    int p = cli_parse(&cmd, argc, argv);
    if (p) return p == 1 ? TG_EXIT_OK : TG_EXIT_USAGE;
    char known[512];
    known_list(known, sizeof known);
    if (!cells) return cli_fail(&cmd, "--cell is required (one of: %s; or all)", known);

    const char *list[MAX_CELLS];
    int n = 0;
    if (!strcmp(cells, "all")) {
        for (int i = 0; i < tg_cell_count() && n < MAX_CELLS; i++) list[n++] = tg_cell_at(i)->name;
    } else {
        n = cli_split_list(cells, list, MAX_CELLS);
        if (n == 0) return cli_fail(&cmd, "--cell: no cell named");
        for (int i = 0; i < n; i++)
            if (!known_cell(list[i])) return cli_fail(&cmd, "unknown cell '%s'%s (known: %s)", list[i], cli_did_you_mean(cli_suggest_in(list[i], known)), known);
    }

    tg_compare_opts o = d;
    o.T = T; o.B = B; o.I = I; o.H = H;
    o.layers = (int)layers;
    o.proj_size = proj;
    o.seed = (uint64_t)seed;
    o.max_elems = max_elems;
    o.eps = eps;
    cli_record_errors();
    for (int i = 0; i < n; i++) {
        tg_mem_estimate est;
        if (tg_compare_mem_estimate(list[i], &o, &est)) return cli_fail(&cmd, "%s: %s", list[i], tg_last_error());
        if (cli_mem_guard(&cmd, &est)) return TG_EXIT_USAGE;
    }
    /* a cell that cannot run at these sizes (e.g. one that needs I == H) is a usage problem (2), but a
     * failed comparison anywhere (1) is the more important news */
    bool failed = false, unrunnable = false;
    for (int i = 0; i < n; i++) {
        tg_clear_error();
        tg_compare_report *r = tg_compare_cell(list[i], &o);
        if (i) printf("\n");
        if (!r) {
            fflush(stdout);
            fprintf(stderr, "tapegrad gradcheck: %s: %s\n", list[i], tg_last_error());
            unrunnable = true;
            continue;
        }
        tg_compare_report_print(stdout, r);
        failed |= !r->pass;
        tg_compare_report_free(r);
    }
    return failed ? TG_EXIT_FAIL : unrunnable ? TG_EXIT_USAGE : TG_EXIT_OK;
}
