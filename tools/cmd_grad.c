/* tools/cmd_grad.c - `tapegrad grad`: the conformance command (docs/design.md §8). */
#include <tapegrad/tapegrad.h>

#include "tools/cli.h"
#include "tools/commands.h"
#include "tools/grad.h"

int cmd_grad(int argc, char **argv) {
    const char *cell = NULL, *in = NULL, *out = NULL;
    bool manual = false;
    const cli_opt opts[] = {
        {"--cell", CLI_STR, &cell, 0, 0, "rnn_tanh | rnn_relu | lstm | gru"},
        {"--case", CLI_STR, &in, 0, 0, "input case (safetensors: x, h0, [c0], weights [+ weight_hr_l{k}: lstm with projections], dy, dhn, [dcn])"},
        {"--out", CLI_STR, &out, 0, 0, "output file (safetensors: y, hn, [cn], grad.*)"},
        {"--manual", CLI_FLAG, &manual, 0, 0, "use the hand-derived BPTT instead of the tape"},
    };
    const cli_cmd cmd = {"grad", "--cell C --case IN --out OUT [--manual]",
                         "Runs the stacked network of the case in its dtype (F32 or F64), takes\n"
                         "loss = sum(y*dy) + sum(hn*dhn) (+ sum(cn*dcn)), back-propagates and writes the\n"
                         "outputs and every gradient. Bad input: one line on stderr, exit status 2.",
                         opts, (int)(sizeof opts / sizeof opts[0]), .one_line_errors = true};
    int p = cli_parse(&cmd, argc, argv);
    if (p) return p == 1 ? TG_EXIT_OK : TG_EXIT_USAGE;
    if (!cell) return cli_fail(&cmd, "--cell is required (rnn_tanh, rnn_relu, lstm or gru)");
    if (!in) return cli_fail(&cmd, "--case is required");
    if (!out) return cli_fail(&cmd, "--out is required");
    cli_record_errors();
    char err[600];
    if (tg_grad_run(cell, in, out, manual, err, sizeof err) != 0) return cli_fail(&cmd, "%s", err);
    return TG_EXIT_OK;
}
