/* tools/main.c - the `tapegrad` command: subcommand dispatch and the main job. */
#include <stdio.h>
#include <string.h>

#include <tapegrad/tapegrad.h>

#include "tools/celldef.h"
#include "tools/cli.h"
#include "tools/commands.h"

static const struct {
    const char *name;
    int (*run)(int argc, char **argv);
    const char *about;
} commands[] = {
    {"grad", cmd_grad, "conformance: run a cell on a case file, write outputs and gradients"},
    {"demo", cmd_demo, "the main job (also run by `tapegrad` alone): triple check, then an LSTM learns"},
    {"train", cmd_train, "train a recurrent network on a task; progress, CSV log, SVG curve, checkpoints"},
    {"sample", cmd_sample, "generate text from a character model saved by train --task charlm"},
    {"compare", cmd_compare, "train several cells on one task with the same data and seeds; table + SVG"},
    {"bench", cmd_bench, "time one training step (forward, BPTT, Adam); JSON on the last line"},
    {"predict", cmd_predict, "predictions (and class probabilities) of a train --data model for a data file"},
    {"summary", cmd_summary, "a checkpoint's model as a table: layers, parameters, shapes, counts, equations"},
    {"cells", cmd_cells, "every recurrent cell --cell accepts: gates, states, extras, equations, reference"},
    {"gradcheck", cmd_gradcheck, "triple check of a cell: tape vs hand-derived BPTT vs finite differences"},
};

static void usage(FILE *f) {
    fprintf(f, "usage: tapegrad [COMMAND] [OPTIONS]\n\n"
               "With no command: the main job (gradient triple check, then an LSTM trained on a task).\n"
               "'tapegrad --version' prints the version.\n\n"
               "commands:\n");
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        fprintf(f, "  %-10s %s\n", commands[i].name, commands[i].about);
    fprintf(f, "\n'tapegrad COMMAND --help' describes each command's options.\n"
               "Typed cells (docs/cell_lang.md): --cell @FILE, --cells lstm,@FILE or --cell-def FILE|'SOURCE'\n"
               "wherever a command takes --cell; checkpoints keep the definition.\n");
}

int main(int argc, char **argv) {
    if (argc < 2) return cmd_demo(argc, argv);
    if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") || !strcmp(argv[1], "help")) {
        usage(stdout);
        return 0;
    }
    if (!strcmp(argv[1], "--version")) {
        /* the command's own version (its headers) and the library it runs with */
        printf("tapegrad %s (library %s)\n", TG_VERSION_STRING, tg_version_string());
        /* the CPU kernels chosen at start-up (TAPEGRAD_CPU forces one) and those this build has */
        printf("kernels: %s (built: %s; TAPEGRAD_CPU=<name> forces one)\n", tg_kernel_target(), tg_kernel_targets());
        return 0;
    }
    char err[512];
    if (celldef_rewrite_args(argc, argv, err, sizeof err)) {
        fprintf(stderr, "tapegrad %s: %s\n", argv[1], err);
        return TG_EXIT_USAGE;
    }
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        if (!strcmp(argv[1], commands[i].name)) return commands[i].run(argc - 1, argv + 1);
    const char *names[sizeof commands / sizeof commands[0]];
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++) names[i] = commands[i].name;
    fprintf(stderr, "tapegrad: unknown command '%s'%s\n", argv[1],
            cli_did_you_mean(cli_suggest(argv[1], names, (int)(sizeof names / sizeof names[0]))));
    usage(stderr);
    return TG_EXIT_USAGE;
}
