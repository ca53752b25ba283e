/* tools/cmd_train.c - `tapegrad train`: train a recurrent model on a task, with a live progress line,
 * a CSV log, an SVG learning curve, checkpoints that resume bit for bit, and a final test metric
 * against the task's baseline. */
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <tapegrad/tapegrad.h>

#include "tools/cli.h"
#include "tools/commands.h"
#include "tools/datatask.h"
#include "tools/initweights.h"
#include "tools/plot.h"
#include "tools/summary.h"
#include "tools/train_dist.h"
#include "tools/trainer.h"

/* Was option `name` given on the command line (as "--x v" or "--x=v")? */
static bool given(int argc, char **argv, const char *name) {
    size_t n = strlen(name);
    for (int i = 1; i < argc; i++)
        if (strncmp(argv[i], name, n) == 0 && (argv[i][n] == 0 || argv[i][n] == '=')) return true;
    return false;
}

/* Reads a curve back from a CSV log written by train (step,loss,seconds); for plots of resumed runs. */
static int read_csv_curve(const char *path, double **xs, double **ys) {
    FILE *f = fopen(path, "r");
    if (!f) return -1;
    int n = 0, cap = 256;
    double *x = malloc((size_t)cap * sizeof *x), *y = malloc((size_t)cap * sizeof *y);
    char line[256];
    while (x && y && fgets(line, sizeof line, f)) {
        double a, b;
        if (sscanf(line, "%lf,%lf", &a, &b) != 2) continue; /* the header */
        if (n == cap) {
            cap *= 2;
            double *nx = realloc(x, (size_t)cap * sizeof *x), *ny = realloc(y, (size_t)cap * sizeof *y);
            if (nx) x = nx;
            if (ny) y = ny;
            if (!nx || !ny) break;
        }
        x[n] = a;
        y[n++] = b;
    }
    fclose(f);
    *xs = x;
    *ys = y;
    return n;
}

/* Data tasks: the train and validation metric per epoch, read back from the CSV log when there is one
 * (a resumed run plots its whole history), else from this run's epochs. Returns 0 or -1 + err. */
static int plot_epochs(const char *path, const trainer *tr, const char *log, char *err, size_t errlen) {
    const data_src *d = task_data(tr->task);
    int cap = tr->epochs.n + 1, n = 0;
    FILE *f = log ? fopen(log, "r") : NULL;
    char line[512];
    if (f) {
        cap = 0;
        while (fgets(line, sizeof line, f)) cap++;
        rewind(f);
    }
    double *x = malloc((size_t)(cap + 1) * sizeof *x), *ytr = malloc((size_t)(cap + 1) * sizeof *ytr),
           *yva = malloc((size_t)(cap + 1) * sizeof *yva);
    int rc = -1;
    if (!x || !ytr || !yva) { snprintf(err, errlen, "out of memory"); goto done; }
    double k = data_metric_percent(d) ? 100 : 1;
    if (f) {
        while (n < cap && fgets(line, sizeof line, f)) {
            double e, st, sec, tl, tm, vl, vm;
            if (sscanf(line, "%lf,%lf,%lf,%lf,%lf,%lf,%lf", &e, &st, &sec, &tl, &tm, &vl, &vm) != 7) continue;
            x[n] = e, ytr[n] = k * tm, yva[n++] = k * vm;
        }
    } else {
        for (int i = 0; i < tr->epochs.n; i++, n++)
            x[n] = (double)tr->epochs.epoch[i], ytr[n] = k * tr->epochs.train_metric[i], yva[n] = k * tr->epochs.val_metric[i];
    }
    char title[256], tl[160], vl[160], ylabel[128];
    snprintf(title, sizeof title, "tapegrad train --data: target %s, %s %ld x %ld", data_target_name(d), tr->cfg.cell,
             tr->cfg.layers, tr->cfg.hidden);
    snprintf(tl, sizeof tl, "train (running mean over the epoch)");
    snprintf(vl, sizeof vl, "validation");
    snprintf(ylabel, sizeof ylabel, "%s%s", data_metric_short(d), data_metric_percent(d) ? " (%)" : "");
    plot_series s[2] = {{tl, x, ytr, n}, {vl, x, yva, data_size(d, DATA_VAL) ? n : 0}};
    plot_opts po = {title, "epoch", ylabel, true, k * data_baseline(d, DATA_VAL), data_baseline_desc(d)};
    po.has_baseline = isfinite(po.baseline);
    rc = plot_svg(path, &po, s, data_size(d, DATA_VAL) ? 2 : 1, err, errlen);
done:
    if (f) fclose(f);
    free(x);
    free(ytr);
    free(yva);
    return rc;
}

/* Options given together with --resume must agree with the checkpoint's (mine holds the command
 * line's values). returns: 0, or TG_EXIT_USAGE after naming the first that differs */
static int check_resume_agrees(const train_config *mine, const trainer *tr, int argc, char **argv, const cli_cmd *cmd) {
    char a[64], b[64];
    struct { const char *opt; bool differ; const char *a, *b; } chk[] = {
        {"--task", mine->task && strcmp(mine->task, tr->cfg.task), mine->task, tr->cfg.task},
        {"--cell", given(argc, argv, "--cell") && strcmp(mine->cell, tr->cfg.cell), mine->cell, tr->cfg.cell},
        {"--optim", given(argc, argv, "--optim") && strcmp(mine->optim, tr->cfg.optim), mine->optim, tr->cfg.optim},
    };
    if (mine->sched) { /* the same schedule, its defaults taken from the run it was made for */
        const data_src *d = task_data(tr->task);
        if (!tr->sched)
            return cli_fail(cmd, "--sched %s: the checkpoint was trained without a schedule (a resumed run keeps its "
                                 "settings)", mine->sched);
        if (!tg_sched_spec_matches(mine->sched, tr->sched_spec, d && !data_lower_better(d)))
            return cli_fail(cmd, "--sched %s differs from the checkpoint's %s (a resumed run keeps its settings)",
                            mine->sched, tr->sched_spec);
    }
    if (mine->sched_every != SCHED_AUTO && tr->sched &&
        (mine->sched_every == SCHED_EVERY_EPOCH) != tr->sched_per_epoch)
        return cli_fail(cmd, "--sched-every %s differs from the checkpoint's %s (a resumed run keeps its settings)",
                        sched_every_name(mine->sched_every), tr->sched_per_epoch ? "epoch" : "step");
    for (size_t i = 0; i < sizeof chk / sizeof chk[0]; i++)
        if (chk[i].differ)
            return cli_fail(cmd, "%s %s differs from the checkpoint's %s (a resumed run keeps its settings)", chk[i].opt,
                            chk[i].a, chk[i].b);
    struct { const char *opt; long v, stored; } nums[] = {
        {"--hidden", mine->hidden, tr->cfg.hidden}, {"--layers", mine->layers, tr->cfg.layers},
        {"--batch", mine->batch, tr->cfg.batch},    {"--seq", mine->seq, tr->cfg.seq},
        {"--proj", mine->proj, tr->cfg.proj},
    };
    for (size_t i = 0; i < sizeof nums / sizeof nums[0]; i++)
        if (given(argc, argv, nums[i].opt) && nums[i].v != nums[i].stored) {
            snprintf(a, sizeof a, "%ld", nums[i].v);
            snprintf(b, sizeof b, "%ld", nums[i].stored);
            return cli_fail(cmd, "%s %s differs from the checkpoint's %s (a resumed run keeps its settings)",
                            nums[i].opt, a, b);
        }
    struct { const char *opt; double v, stored; } reals[] = {
        {"--dropout", mine->dropout, tr->cfg.dropout}, {"--zoneout", mine->zoneout, tr->cfg.zoneout},
        {"--lr", mine->lr, tr->cfg.lr}};
    for (size_t i = 0; i < sizeof reals / sizeof reals[0]; i++)
        if (given(argc, argv, reals[i].opt) && reals[i].v != reals[i].stored)
            return cli_fail(cmd, "%s %g differs from the checkpoint's %g (a resumed run keeps its settings)",
                            reals[i].opt, reals[i].v, reals[i].stored);
    return 0;
}

/* The CSV log: a new file with its header, or appended to when a resumed run continues it.
 * returns: the file (NULL after a message) */
static FILE *open_log(const char *log, bool resumed, const trainer *tr, const cli_cmd *cmd) {
    bool fresh = access(log, F_OK) != 0 || !resumed;
    FILE *csv = fopen(log, fresh ? "w" : "a");
    if (!csv) {
        cli_fail(cmd, "cannot write '%s': %s", log, strerror(errno));
        return NULL;
    }
    if (fresh && task_data(tr->task)) /* lr: the learning rate of the row's last step */
        fprintf(csv, "epoch,step,seconds,train_loss,train_%s,val_loss,val_%s,lr\n", data_metric_short(task_data(tr->task)),
                data_metric_short(task_data(tr->task)));
    else if (fresh)
        fprintf(csv, "step,loss,seconds,lr\n");
    return csv;
}

/* After training: the best epoch's model back (early stopping), the checkpoint, the test metric
 * (rank 0). returns: the exit status */
static int save_and_evaluate(trainer *tr, long patience, const char *save, const tg_dist *dist) {
    char err[1024];
    bool best_saved = false;
    if (patience > 0 && trainer_restore_best(tr)) {
        printf("kept the model of the best epoch, %lld%s%s\n", (long long)tr->best_epoch, save ? ", saved as " : "",
               save ? save : "");
        best_saved = save != NULL;
    }
    if (save && !best_saved) {
        if (trainer_save(tr, save, err, sizeof err)) {
            fprintf(stderr, "tapegrad train: %s\n", err);
            return TG_EXIT_FAIL;
        }
        char op[4096];
        printf("saved checkpoint %s (optimizer state: %s)\n", save, tg_ckpt_optim_path(save, op, sizeof op));
    }
    if (tg_dist_rank(dist) == 0) {
        task_eval ev;
        if (task_evaluate(tr->task, tr->model, true, &ev)) {
            fprintf(stderr, "tapegrad train: evaluation failed: %s\n",
                    *task_error(tr->task) ? task_error(tr->task) : tg_last_error());
            return TG_EXIT_FAIL;
        }
        print_eval(stdout, tr->task, &ev);
    }
    return TG_EXIT_OK;
}

/* Tasks: the training loss per logged step, read back from the CSV log when there is one (a resumed
 * run plots its whole history), else from this run's curve. Returns 0 or -1 + err. */
static int plot_steps(const char *path, const trainer *tr, const char *log, char *err, size_t errlen) {
    double *xs = NULL, *ys = NULL;
    int n = log ? read_csv_curve(log, &xs, &ys) : -1;
    if (n < 0) {
        n = tr->curve.n;
        xs = malloc((size_t)(n ? n : 1) * sizeof *xs);
        ys = malloc((size_t)(n ? n : 1) * sizeof *ys);
        for (int i = 0; xs && ys && i < n; i++) xs[i] = (double)tr->curve.step[i], ys[i] = tr->curve.loss[i];
    }
    char title[256], label[128], ylabel[128];
    snprintf(title, sizeof title, "tapegrad train: task %s (--seq %ld)", tr->cfg.task, task_seq(tr->task));
    snprintf(label, sizeof label, "%s, %ld x %ld", tr->cfg.cell, tr->cfg.layers, tr->cfg.hidden);
    snprintf(ylabel, sizeof ylabel, "training loss (%s)", loss_name(tr->task));
    plot_series s = {label, xs, ys, n};
    plot_opts po = {title, "step", ylabel, true, task_loss_baseline(tr->task), task_baseline_desc(tr->task)};
    int rc = -1;
    if (!xs || !ys) snprintf(err, errlen, "out of memory");
    else rc = plot_svg(path, &po, &s, 1, err, errlen);
    free(xs);
    free(ys);
    return rc;
}

/* Everything `tapegrad train` reads from its command line. parse_options fills it with the defaults
 * and declares each option once, as one row of opts (name, kind, the field it sets, range, help);
 * the parser (cli_parse) and the --help text (cli_usage) are both made from those rows. */
typedef struct train_args {
    int argc;
    char **argv;
    const char *task, *cell, *optim, *save, *resume, *log, *plot, *text, *fb, *dtype, *init;
    const char *sched, *sched_every; /* the learning-rate schedule and when it steps */
    long hidden, layers, batch, eval_batch, seq, epochs, steps, seed, threads;
    long proj;        /* lstm with projections: proj_size (0: none) */
    double lr, clip, dropout, zoneout;
    bool quiet, anomaly, check;
    long poll_sleep;  /* under mpirun */
    bool mpi_timing;
    /* --data and the options that apply to it only (the rows below --data's in opts) */
    const char *data, *labels, *target, *test_data, *test_labels, *seq_column, *label_column, *features;
    long horizon, patience;
    double val;
    bool idx_raw;
    /* help texts made from the task and optimizer tables */
    char optim_help[160], task_help[256], hidden_help[200], batch_help[200], seq_help[240], steps_help[240],
        lr_help[240], sched_help[1600];
    cli_opt opts[48];
    int first_data_only; /* opts[first_data_only..] apply to --data only */
    cli_cmd cmd;
} train_args;

enum { GO_ON = -1 }; /* a step's "carry on"; any other value is the command's exit status */

/* Step 1: the defaults, the option rows, and argv parsed by them. returns: GO_ON or the exit status */
static int parse_options(train_args *a, int argc, char **argv) {
    *a = (train_args){.argc = argc, .argv = argv, .cell = "lstm", .optim = "adam", .dtype = "f32", .layers = 1,
                      .seed = 1, .threads = 1, .clip = 1.0, .val = 0.1, .horizon = 1};
    task_defaults_help(a->hidden_help, sizeof a->hidden_help, "hidden units", 'h');
    task_defaults_help(a->batch_help, sizeof a->batch_help, "sequences per step", 'b');
    task_defaults_help(a->seq_help, sizeof a->seq_help, "the task's length: T, delay, bits, window", 's');
    task_defaults_help(a->lr_help, sizeof a->lr_help, "learning rate, above 0", 'l');
    task_defaults_help(a->steps_help, sizeof a->steps_help, "total optimizer steps", 't');
    { /* the kinds and their arguments come from the library's rows (tg_sched_spec_help) */
        int w = snprintf(a->sched_help, sizeof a->sched_help, "learning-rate schedule KIND[:name=value,...], torch's "
                                                               "names (default: none, a constant --lr); defaults shown:\n");
        if (w > 0 && (size_t)w < sizeof a->sched_help)
            tg_sched_spec_help(a->sched_help + w, sizeof a->sched_help - (size_t)w, "                           ");
    }
    const cli_opt opts[] = {
        {"--task", CLI_STR, &a->task, 0, 0, task_list_sep(a->task_help, sizeof a->task_help, " | ")},
        {"--cell", CLI_STR, &a->cell, 0, 0, "recurrent cell: rnn_tanh, lstm, gru, ... (tapegrad cells lists them)"},
        {"--hidden", CLI_INT, &a->hidden, 1, 4096, a->hidden_help},
        {"--layers", CLI_INT, &a->layers, 1, 16, "stacked layers"},
        {"--proj", CLI_INT, &a->proj, 1, 4095, "lstm with projections: h is P = proj_size wide, 1 <= P < --hidden "
                                               "(torch's proj_size; default: none)"},
        {"--batch", CLI_INT, &a->batch, 1, 4096, a->batch_help},
        {"--eval-batch", CLI_INT, &a->eval_batch, 1, 100000, "sequences per forward in evaluation, which records no "
                                                             "tape: the final one (256 steps at a time), and with --data "
                                                             "every epoch's validation too (default: --batch)"},
        {"--seq", CLI_INT, &a->seq, 1, 100000, a->seq_help},
        {"--lr", CLI_RATE, &a->lr, 0, 10, a->lr_help},
        {"--optim", CLI_STR, &a->optim, 0, 0, tg_optim_kind_list(a->optim_help, sizeof a->optim_help, " | ")},
        {"--sched", CLI_STR, &a->sched, 0, 0, a->sched_help},
        {"--sched-every", CLI_STR, &a->sched_every, 0, 0, "auto | step | epoch: when --sched steps (auto: every epoch "
                                                         "with --data, every step on the tasks and for onecycle, cyclic)"},
        {"--clip", CLI_REAL, &a->clip, 0, 1e6, "clip the gradient norm to this (0: no clipping)"},
        {"--epochs", CLI_INT, &a->epochs, 1, 1000000, "train this many epochs (charlm: passes over the text; "
                                                     "else 10,000 examples; default: --steps)"},
        {"--steps", CLI_INT, &a->steps, 1, 100000000, a->steps_help},
        {"--seed", CLI_INT, &a->seed, 0, 2147483647, "seed of the initial weights and of the data stream"},
        {"--threads", CLI_INT, &a->threads, 1, 64, "GEMM threads"},
        {"--dtype", CLI_STR, &a->dtype, 0, 0, "f32 | f64"},
        {"--forget-bias", CLI_STR, &a->fb, 0, 0, "set the forget gate's bias to this (default: PyTorch's init)"},
        {"--text", CLI_STR, &a->text, 0, 0, "charlm: a text file (default: " "/usr/share/common-licenses/GPL-3)"},
        {"--save", CLI_STR, &a->save, 0, 0, "write a checkpoint (FILE and FILE's .optim.safetensors)"},
        {"--resume", CLI_STR, &a->resume, 0, 0, "continue from a checkpoint, up to --steps in total"},
        {"--init", CLI_STR, &a->init, 0, 0, "start from the weights of a safetensors file whose names and shapes fit "
                                            "the model: a checkpoint, or a PyTorch state_dict (with or without the "
                                            "rnn./head. prefixes; F32 or F64)"},
        {"--log", CLI_STR, &a->log, 0, 0, "append the learning curve to a CSV file (step,loss,seconds,lr; --data: "
                                          "epoch,step,seconds,train_loss,train_M,val_loss,val_M,lr)"},
        {"--plot", CLI_STR, &a->plot, 0, 0, "write the learning curve as an SVG file"},
        {"--quiet", CLI_FLAG, &a->quiet, 0, 0, "no progress display"},
        {"--dropout", CLI_REAL, &a->dropout, 0, 0.99, "dropout between stacked layers while training"},
        {"--zoneout", CLI_REAL, &a->zoneout, 0, 1, "zoneout on every state (h, and c for LSTMs): keep each unit's old "
                                                   "value with this probability"},
        {"--detect-anomaly", CLI_FLAG, &a->anomaly, 0, 0, "stop at the op that makes the first NaN/inf (slower)"},
        {"--check", CLI_FLAG, &a->check, 0, 0, "print the parameters' hash at the end; under mpirun, check that every "
                                               "rank holds bit-identical parameters (after the broadcast and at the end)"},
        {"--mpi-poll-sleep", CLI_INT, &a->poll_sleep, 0, 1000000, "under mpirun: a waiting rank sleeps this many "
                                                                  "microseconds between tests instead of busy-polling "
                                                                  "(for ranks sharing cores with other work; 0: MPI's wait)"},
        {"--mpi-timing", CLI_FLAG, &a->mpi_timing, 0, 0, "under mpirun: time waiting for the slowest rank apart from the "
                                                     "all-reduce (a barrier before it) and print each rank's step split"},
        /* --data last: every row below it applies to --data only (check_options refuses them without it) */
        {"--data", CLI_STR, &a->data, 0, 0, "train on your sequences: .csv, .npy, .safetensors or IDX (.gz) (task data)"},
        {"--labels", CLI_STR, &a->labels, 0, 0, "data: the labels file (.npy [N] or [N,T], IDX), if not inside --data"},
        {"--target", CLI_STR, &a->target, 0, 0, "data: next | class | tag | value (required with --data)"},
        {"--horizon", CLI_INT, &a->horizon, 1, 100000, "next: predict this many steps after each window of --seq steps"},
        {"--val", CLI_REAL, &a->val, 0, 0.9, "data: fraction held out for validation (next: the last windows)"},
        {"--early-stop", CLI_INT, &a->patience, 0, 1000000, "data: stop after N epochs without a better validation "
                                                           "metric; --save keeps the best epoch's checkpoint"},
        {"--test-data", CLI_STR, &a->test_data, 0, 0, "data: a test set, scored at the end (with --test-labels)"},
        {"--test-labels", CLI_STR, &a->test_labels, 0, 0, "data: the test set's labels file"},
        {"--seq-column", CLI_STR, &a->seq_column, 0, 0, "CSV: the column naming each row's sequence (default: one series)"},
        {"--label-column", CLI_STR, &a->label_column, 0, 0, "CSV: the column holding the labels"},
        {"--features", CLI_STR, &a->features, 0, 0, "CSV: comma-separated feature columns (default: every other numeric one)"},
        {"--idx-raw", CLI_FLAG, &a->idx_raw, 0, 0, "IDX images: keep pixels 0..255 (default: divided by 255)"},
    };
    _Static_assert(sizeof opts / sizeof opts[0] <= sizeof a->opts / sizeof a->opts[0],
                   "train_args.opts has fewer slots than train has options");
    const int n = (int)(sizeof opts / sizeof opts[0]);
    memcpy(a->opts, opts, sizeof opts);
    for (int i = 0; i < n; i++)
        if (strcmp(opts[i].name, "--data") == 0) a->first_data_only = i + 1;
    a->cmd = (cli_cmd){"train", "--task T [--cell C --hidden N --steps N --save FILE --resume FILE --init FILE ...]",
                       "Trains a recurrent network (the cell, then a linear head) on a task, shows a progress\n"
                       "line, and ends with the task's test metric against its baseline. Checkpoints resume\n"
                       "bit for bit: --steps N --save a, then --resume a --steps 2N equals --steps 2N.",
                       a->opts, n, false};
    int p = cli_parse(&a->cmd, argc, argv);
    return p == 0 ? GO_ON : p == 1 ? TG_EXIT_OK : TG_EXIT_USAGE;
}

/* Step 2: the options that depend on each other (task or data, data-only options, resume and init).
 * returns: GO_ON or TG_EXIT_USAGE after the message */
static int check_options(train_args *a) {
    const cli_cmd *cmd = &a->cmd;
    if (a->data && a->task && strcmp(a->task, "data") != 0) return cli_fail(cmd, "give --task or --data, not both");
    if (a->data) a->task = "data";
    if (a->task && strcmp(a->task, "data") == 0 && !a->resume) {
        if (!a->data) return cli_fail(cmd, "task data needs --data FILE");
        if (!a->target) return cli_fail(cmd, "--data needs --target (%s)", data_target_list());
    }
    if (a->target && !data_target_known(a->target))
        return cli_fail(cmd, "unknown --target '%s' (known: %s)", a->target, data_target_list());
    for (int i = a->first_data_only; !a->data && !a->resume && i < cmd->n_opts; i++)
        if (given(a->argc, a->argv, a->opts[i].name)) return cli_fail(cmd, "%s applies to --data only", a->opts[i].name);
    if (a->test_labels && !a->test_data) return cli_fail(cmd, "--test-labels needs --test-data");
    if (a->patience && a->val == 0 && !a->resume)
        return cli_fail(cmd, "--early-stop needs a validation split (--val > 0)");
    if (a->data && a->val == 0 && !a->test_data && !a->resume)
        return cli_fail(cmd, "--val 0 leaves nothing to score the model on: give --test-data FILE (or --val > 0)");
    if (!a->task && !a->resume) return cli_fail(cmd, "--task is required (%s), or --data FILE", task_list());
    if (a->task && !task_known(a->task))
        return cli_fail(cmd, "unknown task '%s'%s (known: %s)", a->task,
                        cli_did_you_mean(cli_suggest_in(a->task, task_list())), task_list());
    char optim_err[320];
    if (!optim_name_ok(a->optim, optim_err, sizeof optim_err)) return cli_fail(cmd, "%s", optim_err);
    if (a->sched_every && sched_every_from_name(a->sched_every) < SCHED_AUTO)
        return cli_fail(cmd, "--sched-every must be auto, step or epoch, not '%s'", a->sched_every);
    if (a->sched_every && !a->sched && !a->resume) return cli_fail(cmd, "--sched-every needs --sched");
    if (a->sched && tg_sched_spec_check(a->sched, 1, false, NULL, NULL, 0)) {
        const char *m = tg_last_error(), *pre = "tg_sched_spec: ";
        if (strncmp(m, pre, strlen(pre)) == 0) m += strlen(pre);
        return cli_fail(cmd, "--sched %s: %s", a->sched, m);
    }
    if (strcmp(a->dtype, "f32") && strcmp(a->dtype, "f64"))
        return cli_fail(cmd, "--dtype must be f32 or f64, not '%s'", a->dtype);
    if (a->epochs && a->steps) return cli_fail(cmd, "give --epochs or --steps, not both");
    cli_record_errors();
    if (a->resume && a->data) return cli_fail(cmd, "--resume takes its data files from the checkpoint; leave out --data");
    if (a->init && a->resume)
        return cli_fail(cmd, "give --init or --resume, not both (--resume continues a run with its optimizer state; "
                             "--init starts a new run from the file's weights)");
    if (a->init && a->fb)
        return cli_fail(cmd, "--forget-bias sets an initial weight; with --init every weight comes from %s", a->init);
    if (a->init && access(a->init, R_OK) != 0)
        return cli_fail(cmd, "cannot read --init file '%s': %s", a->init, strerror(errno));
    return GO_ON;
}

/* Step 3: the trainer's configuration (cfg->data points at *dopt) and --forget-bias's number.
 * returns: GO_ON or TG_EXIT_USAGE after the message */
static int make_config(const train_args *a, train_config *cfg, data_opts *dopt) {
    const tg_dtype dt = strcmp(a->dtype, "f64") == 0 ? TG_F64 : TG_F32;
    *dopt = (data_opts){.path = a->data, .labels = a->labels, .test_path = a->test_data, .test_labels = a->test_labels,
                        .target = a->target, .window = a->seq, .horizon = a->horizon, .val = a->val,
                        .seed = (uint64_t)a->seed, .seq_column = a->seq_column, .label_column = a->label_column,
                        .feature_columns = a->features, .idx_no_scale = a->idx_raw, .dtype = dt};
    *cfg = (train_config){.task = a->task, .cell = a->cell, .text = a->text, .seq = a->seq, .hidden = a->hidden,
                          .layers = a->layers, .batch = a->batch, .eval_batch = a->eval_batch, .lr = a->lr,
                          .optim = a->optim, .clip = a->clip, .steps = a->steps, .seed = a->seed, .dtype = dt,
                          .dropout = a->dropout, .zoneout = a->zoneout, .proj = a->proj,
                          .data = a->data ? dopt : NULL,
                          .patience = a->patience, .best_path = a->patience ? a->save : NULL, .sched = a->sched,
                          .sched_every = a->sched_every ? (sched_every)sched_every_from_name(a->sched_every) : SCHED_AUTO};
    if (a->fb) {
        char *end;
        cfg->forget_bias = strtod(a->fb, &end);
        if (end == a->fb || *end || !isfinite(cfg->forget_bias) || fabs(cfg->forget_bias) > 100)
            return cli_fail(&a->cmd, "option --forget-bias: '%s' is not a number in [-100, 100]", a->fb);
        cfg->set_forget_bias = true;
    }
    return GO_ON;
}

/* Step 4: the cell exists (and takes --proj, which is below --hidden), and the files this rank writes
 * (rank 0 writes them all) can be written.
 * returns: GO_ON or TG_EXIT_USAGE after the message */
static int check_outputs(train_args *a, const tg_dist *dist) {
    if (!a->resume && !tg_cell_by_name(a->cell)) return cli_fail_unknown_cell(&a->cmd, a->cell);
    if (a->proj && !a->resume) { /* torch.nn.LSTM's rules for proj_size, in the options' names */
        train_config filled = {.task = a->task, .hidden = a->hidden};
        train_config_fill_defaults(&filled);
        if (!tg_cell_by_name(a->cell)->proj)
            return cli_fail(&a->cmd, "--proj applies to --cell lstm only, not %s (torch: proj_size argument is only "
                                     "supported for LSTM, not RNN or GRU)", a->cell);
        if (a->proj >= filled.hidden)
            return cli_fail(&a->cmd, "--proj %ld must be below --hidden %ld (torch: proj_size has to be smaller than "
                                     "hidden_size)", a->proj, filled.hidden);
    }
    if (tg_dist_rank(dist) != 0) a->save = a->plot = a->log = NULL;
    const char *outs[3] = {a->save, a->plot, a->log};
    for (int i = 0; i < 3; i++)
        if (outs[i] && !writable_path(outs[i]))
            return cli_fail(&a->cmd, "cannot write '%s': %s", outs[i], strerror(errno));
    return GO_ON;
}

/* Step 5: a new trainer, or one resumed from --resume (its settings checked against the command
 * line's); --init's weights; the total step count. returns: GO_ON (tr is live) or the exit status
 * (tr freed) */
static int start_trainer(const train_args *a, const train_config *cfg, trainer *tr, int *init_converted) {
    char err[1024];
    const cli_cmd *cmd = &a->cmd;
    if (a->resume) {
        if (access(a->resume, R_OK) != 0)
            return cli_fail(cmd, "cannot read checkpoint '%s': %s", a->resume, strerror(errno));
        if (trainer_resume(tr, cfg, a->resume, err, sizeof err)) return cli_fail(cmd, "%s", err);
        if (check_resume_agrees(cfg, tr, a->argc, a->argv, cmd)) {
            trainer_free(tr);
            return TG_EXIT_USAGE;
        }
        if (a->steps <= 0 && a->epochs <= 0) tr->cfg.steps = tr->cfg.steps > tr->step ? tr->cfg.steps : tr->step;
    } else if (trainer_init(tr, cfg, NULL, err, sizeof err)) {
        return cli_fail(cmd, "%s", err);
    }
    *init_converted = 0;
    if (a->init && init_weights_load(tr->model->params, a->init, init_converted, err, sizeof err)) {
        const tg_model_config *mc = &tr->model->cfg;
        char pj[40] = "";
        if (mc->proj_size) snprintf(pj, sizeof pj, " --proj %lld", (long long)mc->proj_size);
        cli_fail(cmd, "--init %s (the model: --cell %s --hidden %lld%s --layers %d, %lld inputs, %lld outputs, %s)", err,
                 mc->cell, (long long)mc->hidden_size, pj, mc->layers, (long long)mc->input_size,
                 (long long)mc->output_size, tg_dtype_name(mc->dtype));
        trainer_free(tr);
        return TG_EXIT_USAGE;
    }
    if (a->epochs) tr->cfg.steps = a->epochs * task_epoch_steps(tr->task, tr->cfg.batch);
    else if (a->steps) tr->cfg.steps = a->steps;
    if (a->resume && tr->cfg.steps < tr->step) {
        long done = (long)tr->step;
        trainer_free(tr);
        return cli_fail(cmd, "the checkpoint is already at step %ld; --steps is the total to reach", done);
    }
    if (a->resume ? trainer_check_sched_length(tr, a->resume, err, sizeof err)
                  : trainer_start_sched(tr, err, sizeof err)) { /* over the run's steps, now known */
        trainer_free(tr);
        return cli_fail(cmd, "%s", err);
    }
    return GO_ON;
}

/* Step 6: the run's header, the model summary, where it resumed or its weights came from.
 * returns: GO_ON or TG_EXIT_FAIL (out of memory) */
static int announce(const train_args *a, const trainer *tr, int init_converted) {
    print_run_header(stdout, tr, (int)a->threads);
    if (!a->quiet && model_summary(stdout, tr->model, task_every_step(tr->task))) {
        fprintf(stderr, "tapegrad train: out of memory\n");
        return TG_EXIT_FAIL;
    }
    if (a->resume) printf("resumed from %s at step %lld\n", a->resume, (long long)tr->step);
    if (a->init)
        printf("initial weights from %s: %d tensors%s%s\n", a->init, tg_params_count(tr->model->params),
               init_converted ? ", converted to " : "", init_converted ? tg_dtype_name(tr->model->cfg.dtype) : "");
    return GO_ON;
}

/* Step 7, under mpirun: the ranks agree on the starting state; *mark0 the traffic and timings so far.
 * returns: GO_ON or TG_EXIT_FAIL after the message */
static int prepare_dist(const train_args *a, trainer *tr, tg_dist *dist, train_dist_mark *mark0) {
    char err[1024];
    tr->dist = dist;
    *mark0 = (train_dist_mark){0};
    if (!dist) return GO_ON;
    tg_dist_set_split_timing(dist, a->mpi_timing);
    tg_dist_set_poll_sleep(dist, (int)a->poll_sleep);
    if (train_dist_prepare(tr, dist, a->check, err, sizeof err)) {
        fprintf(stderr, "tapegrad train: %s\n", err);
        return TG_EXIT_FAIL;
    }
    train_dist_mark_now(tr, dist, mark0);
    return GO_ON;
}

/* Step 8: the training steps, then (under mpirun) the traffic report.
 * returns: TG_EXIT_OK or TG_EXIT_FAIL after the message */
static int run_training(const train_args *a, trainer *tr, tg_dist *dist, const train_dist_mark *mark0) {
    char err[1024];
    int64_t step0 = tr->step;
    progress pr = {a->quiet ? PROGRESS_OFF : progress_auto(), NULL};
    tr->detect_anomaly = a->anomaly;
    if (trainer_run(tr, tr->cfg.steps, &pr, err, sizeof err) ||
        train_dist_report(tr, dist, a->check, a->mpi_timing, (int)a->threads, tr->step - step0, mark0, err,
                          sizeof err)) {
        fprintf(stderr, "tapegrad train: %s\n", err);
        return TG_EXIT_FAIL;
    }
    return TG_EXIT_OK;
}

/* Step 9 (the log closed): after a good run the checkpoint and the test metric; the plot in any
 * case; the log's name. returns: the exit status */
static int finish(const train_args *a, trainer *tr, int rc, const tg_dist *dist) {
    char err[1024];
    if (rc == TG_EXIT_OK) rc = save_and_evaluate(tr, a->patience, a->save, dist);
    if (a->plot) {
        int prc = task_data(tr->task) ? plot_epochs(a->plot, tr, a->log, err, sizeof err)
                                      : plot_steps(a->plot, tr, a->log, err, sizeof err);
        if (prc == 0) printf("wrote %s\n", a->plot);
        else { fprintf(stderr, "tapegrad train: %s\n", err); rc = TG_EXIT_FAIL; }
    }
    if (a->log && rc == TG_EXIT_OK) printf("wrote %s\n", a->log);
    return rc;
}

static int train_body(int argc, char **argv, tg_dist *dist) {
    train_args a;
    train_config cfg;
    data_opts dopt;
    int rc = parse_options(&a, argc, argv);
    if (rc == GO_ON) rc = check_options(&a);
    if (rc == GO_ON) rc = make_config(&a, &cfg, &dopt);
    if (rc == GO_ON) rc = check_outputs(&a, dist);
    if (rc != GO_ON) return rc;
    tg_set_num_threads((int)a.threads);
    trainer tr;
    int init_converted;
    if ((rc = start_trainer(&a, &cfg, &tr, &init_converted)) != GO_ON) return rc;
    FILE *csv = NULL;
    if (a.log && !(csv = open_log(a.log, a.resume != NULL, &tr, &a.cmd))) rc = TG_EXIT_USAGE;
    if (csv) tr.csv = csv;
    train_dist_mark mark0;
    bool ran = false;
    if (rc == GO_ON) rc = announce(&a, &tr, init_converted);
    if (rc == GO_ON) rc = prepare_dist(&a, &tr, dist, &mark0);
    if (rc == GO_ON) rc = run_training(&a, &tr, dist, &mark0), ran = true;
    if (csv) fclose(csv);
    if (ran) rc = finish(&a, &tr, rc, dist); /* not after a failure before the run */
    trainer_free(&tr);
    return rc;
}

/* Under mpirun each rank runs this; train_dist.h says who does what. */
int cmd_train(int argc, char **argv) {
    tg_dist *dist;
    int rc = train_dist_begin(&dist, "train", &argc, &argv);
    if (rc == 0) rc = train_body(argc, argv, dist);
    return train_dist_end(dist, "train", rc);
}
