/* tools/cmd_summary.c - `tapegrad summary --model M`: the Keras-like table of a checkpoint's model
 * (tools/summary.h) and what it was trained on, from the checkpoint's metadata. */
#include <errno.h>
#include <string.h>
#include <unistd.h>

#include <tapegrad/tapegrad.h>

#include "tools/cli.h"
#include "tools/commands.h"
#include <tapegrad/train.h>
#include "tools/summary.h"
#include "tools/tasks.h"

int cmd_summary(int argc, char **argv) {
    const char *path = NULL;
    const cli_opt opts[] = {
        {"--model", CLI_STR, &path, 0, 0, "a checkpoint written by 'tapegrad train --save FILE'"},
    };
    const cli_cmd cmd = {"summary", "--model FILE",
                         "Prints the model of a checkpoint as a table: each layer with its output shape and\n"
                         "parameter count, each parameter's name, shape and count, the total parameters and\n"
                         "bytes, the cell's equations, and what the model was trained on.",
                         opts, (int)(sizeof opts / sizeof opts[0]), false};
    int p = cli_parse(&cmd, argc, argv);
    if (p) return p == 1 ? TG_EXIT_OK : TG_EXIT_USAGE;
    if (!path) return cli_fail(&cmd, "--model is required");
    if (access(path, R_OK) != 0) return cli_fail(&cmd, "cannot read model '%s': %s", path, strerror(errno));
    cli_record_errors();
    char err[1024];
    tg_st_file *f = NULL;
    tg_model *m = tg_ckpt_load_model(path, &f, err, sizeof err);
    if (!m) return cli_fail(&cmd, "%s", err);
    const char *task = tg_st_meta(f, "task");
    bool every = task && task_known(task) && task_every_step_of(task);
    int rc = model_summary(stdout, m, every) ? TG_EXIT_FAIL : TG_EXIT_OK;
    if (rc) fprintf(stderr, "tapegrad summary: out of memory\n");
    static const char *const keys[] = {"task", "target", "data", "step", "optim", "lr", "batch", "seq", "clip"};
    printf("Checkpoint %s:", path);
    const char *sep = " ";
    for (size_t k = 0; k < sizeof keys / sizeof keys[0]; k++) {
        const char *v = tg_st_meta(f, keys[k]);
        if (!v || !*v) continue;
        /* seq 0: a data task trained on whole sequences (class, tag, value targets), no --seq window */
        if (strcmp(keys[k], "seq") == 0 && strcmp(v, "0") == 0) printf("%swhole sequences", sep);
        else printf("%s%s %s", sep, keys[k], v);
        sep = ", ";
    }
    printf("\n");
    tg_st_free(f);
    tg_model_free(m);
    return rc;
}
