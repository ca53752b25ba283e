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
    for (size_t i = 0; i < sizeof chk / sizeof chk[0]; i++)
        if (chk[i].differ)
            return cli_fail(cmd, "%s %s differs from the checkpoint's %s (a resumed run keeps its settings)", chk[i].opt,
                            chk[i].a, chk[i].b);
    struct { const char *opt; long v, stored; } nums[] = {
        {"--hidden", mine->hidden, tr->cfg.hidden}, {"--layers", mine->layers, tr->cfg.layers},
        {"--batch", mine->batch, tr->cfg.batch},    {"--seq", mine->seq, tr->cfg.seq},
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
    if (fresh && task_data(tr->task))
        fprintf(csv, "epoch,step,seconds,train_loss,train_%s,val_loss,val_%s\n", data_metric_short(task_data(tr->task)),
                data_metric_short(task_data(tr->task)));
    else if (fresh)
        fprintf(csv, "step,loss,seconds\n");
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

static int train_body(int argc, char **argv, tg_dist *dist) {
    const char *task = NULL, *cell = "lstm", *optim = "adam", *save = NULL, *resume = NULL, *log = NULL, *plot = NULL,
               *text = NULL, *fb = NULL, *dtype = "f32", *init = NULL;
    long hidden = 0, layers = 1, batch = 0, eval_batch = 0, seq = 0, epochs = 0, steps = 0, seed = 1, threads = 1, poll_sleep = 0;
    double lr = 0, clip = 1.0;
    bool quiet = false, anomaly = false, check = false, idx_raw = false, mpi_timing = false;
    double dropout = 0, zoneout = 0, val = 0.1;
    char optim_help[160], task_help[256], hidden_help[200], batch_help[200], seq_help[240], steps_help[240], lr_help[240];
    task_defaults_help(hidden_help, sizeof hidden_help, "hidden units", 'h');
    task_defaults_help(batch_help, sizeof batch_help, "sequences per step", 'b');
    task_defaults_help(seq_help, sizeof seq_help, "the task's length: T, delay, bits, window", 's');
    task_defaults_help(lr_help, sizeof lr_help, "learning rate, above 0", 'l');
    task_defaults_help(steps_help, sizeof steps_help, "total optimizer steps", 't');
    const char *data = NULL, *labels = NULL, *target = NULL, *test_data = NULL, *test_labels = NULL,
               *seq_column = NULL, *label_column = NULL, *features = NULL;
    long horizon = 1, patience = 0;
    const cli_opt opts[] = {
        {"--task", CLI_STR, &task, 0, 0, task_list_sep(task_help, sizeof task_help, " | ")},
        {"--cell", CLI_STR, &cell, 0, 0, "recurrent cell: rnn_tanh, lstm, gru, ... (tapegrad cells lists them)"},
        {"--hidden", CLI_INT, &hidden, 1, 4096, hidden_help},
        {"--layers", CLI_INT, &layers, 1, 16, "stacked layers"},
        {"--batch", CLI_INT, &batch, 1, 4096, batch_help},
        {"--eval-batch", CLI_INT, &eval_batch, 1, 100000, "sequences per forward in the final evaluation, which records no "
                                                          "tape and runs 256 steps at a time (default: --batch)"},
        {"--seq", CLI_INT, &seq, 1, 100000, seq_help},
        {"--lr", CLI_RATE, &lr, 0, 10, lr_help},
        {"--optim", CLI_STR, &optim, 0, 0, tg_optim_kind_list(optim_help, sizeof optim_help, " | ")},
        {"--clip", CLI_REAL, &clip, 0, 1e6, "clip the gradient norm to this (0: no clipping)"},
        {"--epochs", CLI_INT, &epochs, 1, 1000000, "train this many epochs (charlm: passes over the text; "
                                                  "else 10,000 examples; default: --steps)"},
        {"--steps", CLI_INT, &steps, 1, 100000000, steps_help},
        {"--seed", CLI_INT, &seed, 0, 2147483647, "seed of the initial weights and of the data stream"},
        {"--threads", CLI_INT, &threads, 1, 64, "GEMM threads"},
        {"--dtype", CLI_STR, &dtype, 0, 0, "f32 | f64"},
        {"--forget-bias", CLI_STR, &fb, 0, 0, "set the forget gate's bias to this (default: PyTorch's init)"},
        {"--text", CLI_STR, &text, 0, 0, "charlm: a text file (default: " "/usr/share/common-licenses/GPL-3)"},
        {"--save", CLI_STR, &save, 0, 0, "write a checkpoint (FILE and FILE's .optim.safetensors)"},
        {"--resume", CLI_STR, &resume, 0, 0, "continue from a checkpoint, up to --steps in total"},
        {"--init", CLI_STR, &init, 0, 0, "start from the weights of a safetensors file whose names and shapes fit the "
                                         "model: a checkpoint, or a PyTorch state_dict (with or without the rnn./head. "
                                         "prefixes; F32 or F64)"},
        {"--log", CLI_STR, &log, 0, 0, "append the learning curve to a CSV file (step,loss,seconds)"},
        {"--plot", CLI_STR, &plot, 0, 0, "write the learning curve as an SVG file"},
        {"--quiet", CLI_FLAG, &quiet, 0, 0, "no progress display"},
        {"--dropout", CLI_REAL, &dropout, 0, 0.99, "dropout between stacked layers while training"},
        {"--zoneout", CLI_REAL, &zoneout, 0, 1, "zoneout on every state (h, and c for LSTMs): keep each unit's old value with this probability"},
        {"--detect-anomaly", CLI_FLAG, &anomaly, 0, 0, "stop at the op that makes the first NaN/inf (slower)"},
        {"--check", CLI_FLAG, &check, 0, 0, "print the parameters' hash at the end; under mpirun, check that every "
                                            "rank holds bit-identical parameters (after the broadcast and at the end)"},
        {"--mpi-poll-sleep", CLI_INT, &poll_sleep, 0, 1000000, "under mpirun: a waiting rank sleeps this many "
                                                               "microseconds between tests instead of busy-polling "
                                                               "(for ranks sharing cores with other work; 0: MPI's wait)"},
        {"--mpi-timing", CLI_FLAG, &mpi_timing, 0, 0, "under mpirun: time waiting for the slowest rank apart from the "
                                                  "all-reduce (a barrier before it) and print each rank's step split"},
        {"--data", CLI_STR, &data, 0, 0, "train on your sequences: .csv, .npy, .safetensors or IDX (.gz) (task data)"},
        {"--labels", CLI_STR, &labels, 0, 0, "data: the labels file (.npy [N] or [N,T], IDX), if not inside --data"},
        {"--target", CLI_STR, &target, 0, 0, "data: next | class | tag | value (required with --data)"},
        {"--horizon", CLI_INT, &horizon, 1, 100000, "next: predict this many steps after each window of --seq steps"},
        {"--val", CLI_REAL, &val, 0, 0.9, "data: fraction held out for validation (next: the last windows)"},
        {"--early-stop", CLI_INT, &patience, 0, 1000000, "data: stop after N epochs without a better validation "
                                                        "metric; --save keeps the best epoch's checkpoint"},
        {"--test-data", CLI_STR, &test_data, 0, 0, "data: a test set, scored at the end (with --test-labels)"},
        {"--test-labels", CLI_STR, &test_labels, 0, 0, "data: the test set's labels file"},
        {"--seq-column", CLI_STR, &seq_column, 0, 0, "CSV: the column naming each row's sequence (default: one series)"},
        {"--label-column", CLI_STR, &label_column, 0, 0, "CSV: the column holding the labels"},
        {"--features", CLI_STR, &features, 0, 0, "CSV: comma-separated feature columns (default: every other numeric one)"},
        {"--idx-raw", CLI_FLAG, &idx_raw, 0, 0, "IDX images: keep pixels 0..255 (default: divided by 255)"},
    };
    const cli_cmd cmd = {"train", "--task T [--cell C --hidden N --steps N --save FILE --resume FILE --init FILE ...]",
                         "Trains a recurrent network (the cell, then a linear head) on a task, shows a progress\n"
                         "line, and ends with the task's test metric against its baseline. Checkpoints resume\n"
                         "bit for bit: --steps N --save a, then --resume a --steps 2N equals --steps 2N.",
                         opts, (int)(sizeof opts / sizeof opts[0]), false};
    int p = cli_parse(&cmd, argc, argv);
    if (p) return p == 1 ? TG_EXIT_OK : TG_EXIT_USAGE;
    if (data && task && strcmp(task, "data") != 0) return cli_fail(&cmd, "give --task or --data, not both");
    if (data) task = "data";
    if (task && strcmp(task, "data") == 0 && !resume) {
        if (!data) return cli_fail(&cmd, "task data needs --data FILE");
        if (!target) return cli_fail(&cmd, "--data needs --target (%s)", data_target_list());
    }
    if (target && !data_target_known(target))
        return cli_fail(&cmd, "unknown --target '%s' (known: %s)", target, data_target_list());
    if (!data && !resume) {
        const char *only[] = {"--labels", "--target", "--horizon", "--val", "--early-stop", "--test-data", "--test-labels",
                              "--seq-column", "--label-column", "--features", "--idx-raw"};
        for (size_t i = 0; i < sizeof only / sizeof only[0]; i++)
            if (given(argc, argv, only[i])) return cli_fail(&cmd, "%s applies to --data only", only[i]);
    }
    if (test_labels && !test_data) return cli_fail(&cmd, "--test-labels needs --test-data");
    if (patience && val == 0 && !resume) return cli_fail(&cmd, "--early-stop needs a validation split (--val > 0)");
    if (!task && !resume) return cli_fail(&cmd, "--task is required (%s), or --data FILE", task_list());
    if (task && !task_known(task)) return cli_fail(&cmd, "unknown task '%s'%s (known: %s)", task, cli_did_you_mean(cli_suggest_in(task, task_list())), task_list());
    char optim_err[320];
    if (!optim_name_ok(optim, optim_err, sizeof optim_err)) return cli_fail(&cmd, "%s", optim_err);
    if (strcmp(dtype, "f32") && strcmp(dtype, "f64")) return cli_fail(&cmd, "--dtype must be f32 or f64, not '%s'", dtype);
    if (epochs && steps) return cli_fail(&cmd, "give --epochs or --steps, not both");
    cli_record_errors();

    data_opts dopt = {.path = data, .labels = labels, .test_path = test_data, .test_labels = test_labels,
                      .target = target, .window = seq, .horizon = horizon, .val = val, .seed = (uint64_t)seed,
                      .seq_column = seq_column, .label_column = label_column, .feature_columns = features,
                      .idx_no_scale = idx_raw, .dtype = strcmp(dtype, "f64") == 0 ? TG_F64 : TG_F32};
    if (resume && data) return cli_fail(&cmd, "--resume takes its data files from the checkpoint; leave out --data");
    if (init && resume)
        return cli_fail(&cmd, "give --init or --resume, not both (--resume continues a run with its optimizer state; "
                              "--init starts a new run from the file's weights)");
    if (init && fb) return cli_fail(&cmd, "--forget-bias sets an initial weight; with --init every weight comes from %s", init);
    if (init && access(init, R_OK) != 0) return cli_fail(&cmd, "cannot read --init file '%s': %s", init, strerror(errno));
    train_config cfg = {.task = task, .cell = cell, .text = text, .seq = seq, .hidden = hidden, .layers = layers,
                        .batch = batch, .eval_batch = eval_batch, .lr = lr, .optim = optim, .clip = clip, .steps = steps, .seed = seed,
                        .dtype = strcmp(dtype, "f64") == 0 ? TG_F64 : TG_F32, .dropout = dropout,
                        .zoneout = zoneout, .data = data ? &dopt : NULL, .patience = patience,
                        .best_path = patience ? save : NULL};
    if (fb) {
        char *end;
        cfg.forget_bias = strtod(fb, &end);
        if (end == fb || *end || !isfinite(cfg.forget_bias) || fabs(cfg.forget_bias) > 100)
            return cli_fail(&cmd, "option --forget-bias: '%s' is not a number in [-100, 100]", fb);
        cfg.set_forget_bias = true;
    }
    if (!resume && !tg_cell_by_name(cell)) return cli_fail_unknown_cell(&cmd, cell);
    if (tg_dist_rank(dist) != 0) save = plot = log = NULL; /* rank 0 writes the files */
    const char *outs[3] = {save, plot, log};
    for (int i = 0; i < 3; i++)
        if (outs[i] && !writable_path(outs[i]))
            return cli_fail(&cmd, "cannot write '%s': %s", outs[i], strerror(errno));
    tg_set_num_threads((int)threads);

    char err[1024];
    trainer tr;
    if (resume) {
        if (access(resume, R_OK) != 0) return cli_fail(&cmd, "cannot read checkpoint '%s': %s", resume, strerror(errno));
        if (trainer_resume(&tr, &cfg, resume, err, sizeof err)) return cli_fail(&cmd, "%s", err);
        if (check_resume_agrees(&cfg, &tr, argc, argv, &cmd)) {
            trainer_free(&tr);
            return TG_EXIT_USAGE;
        }
        if (steps <= 0 && epochs <= 0) tr.cfg.steps = tr.cfg.steps > tr.step ? tr.cfg.steps : tr.step;
    } else {
        if (trainer_init(&tr, &cfg, NULL, err, sizeof err)) return cli_fail(&cmd, "%s", err);
    }
    int init_converted = 0;
    if (init && init_weights_load(tr.model->params, init, &init_converted, err, sizeof err)) {
        const tg_model_config *mc = &tr.model->cfg;
        cli_fail(&cmd, "--init %s (the model: --cell %s --hidden %lld --layers %d, %lld inputs, %lld outputs, %s)", err,
                 mc->cell, (long long)mc->hidden_size, mc->layers, (long long)mc->input_size,
                 (long long)mc->output_size, tg_dtype_name(mc->dtype));
        trainer_free(&tr);
        return TG_EXIT_USAGE;
    }
    if (epochs) tr.cfg.steps = epochs * task_epoch_steps(tr.task, tr.cfg.batch);
    else if (steps) tr.cfg.steps = steps;
    if (resume && tr.cfg.steps < tr.step) {
        long done = (long)tr.step;
        trainer_free(&tr);
        return cli_fail(&cmd, "the checkpoint is already at step %ld; --steps is the total to reach", done);
    }

    FILE *csv = NULL;
    if (log) {
        if (!(csv = open_log(log, resume != NULL, &tr, &cmd))) {
            trainer_free(&tr);
            return TG_EXIT_USAGE;
        }
        tr.csv = csv;
    }

    print_run_header(stdout, &tr, (int)threads);
    if (!quiet && model_summary(stdout, tr.model, task_every_step(tr.task))) {
        trainer_free(&tr);
        if (csv) fclose(csv);
        fprintf(stderr, "tapegrad train: out of memory\n");
        return TG_EXIT_FAIL;
    }
    if (resume) printf("resumed from %s at step %lld\n", resume, (long long)tr.step);
    if (init)
        printf("initial weights from %s: %d tensors%s%s\n", init, tg_params_count(tr.model->params),
               init_converted ? ", converted to " : "", init_converted ? tg_dtype_name(tr.model->cfg.dtype) : "");
    tr.dist = dist;
    train_dist_mark mark0 = {0};
    if (dist) {
        tg_dist_set_split_timing(dist, mpi_timing);
        tg_dist_set_poll_sleep(dist, (int)poll_sleep);
        if (train_dist_prepare(&tr, dist, check, err, sizeof err)) {
            if (csv) fclose(csv);
            trainer_free(&tr);
            fprintf(stderr, "tapegrad train: %s\n", err);
            return TG_EXIT_FAIL;
        }
        train_dist_mark_now(&tr, dist, &mark0);
    }
    int64_t step0 = tr.step;
    progress pr = {quiet ? PROGRESS_OFF : progress_auto(), NULL};
    tr.detect_anomaly = anomaly;
    int rc = TG_EXIT_OK;
    if (trainer_run(&tr, tr.cfg.steps, &pr, err, sizeof err)) {
        fprintf(stderr, "tapegrad train: %s\n", err);
        rc = TG_EXIT_FAIL;
    } else if (train_dist_report(&tr, dist, check, mpi_timing, (int)threads, tr.step - step0, &mark0, err, sizeof err)) {
        fprintf(stderr, "tapegrad train: %s\n", err);
        rc = TG_EXIT_FAIL;
    }
    if (csv) fclose(csv);
    if (rc == TG_EXIT_OK) rc = save_and_evaluate(&tr, patience, save, dist);
    if (plot) {
        int prc = task_data(tr.task) ? plot_epochs(plot, &tr, log, err, sizeof err)
                                     : plot_steps(plot, &tr, log, err, sizeof err);
        if (prc == 0) printf("wrote %s\n", plot);
        else { fprintf(stderr, "tapegrad train: %s\n", err); rc = TG_EXIT_FAIL; }
    }
    if (log && rc == TG_EXIT_OK) printf("wrote %s\n", log);
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
