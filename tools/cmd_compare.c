/* tools/cmd_compare.c - `tapegrad compare`: train several cells (and forget-gate biases) on one task
 * with the same budget, data and seeds; print a table of the test metric (mean ± sd over seeds),
 * parameter count and time per step; write every learning curve to one SVG and one CSV.
 *
 * Fairness: run (cell, seed) draws its initial weights from `seed` and its batches from a generator
 * seeded from `seed` alone, so every cell sees exactly the same examples in the same order, and is
 * tested on the task's fixed test set. */
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <tapegrad/tapegrad.h>

#include "tools/cli.h"
#include "tools/commands.h"
#include "tools/plot.h"
#include "tools/trainer.h"

#define MAX_CELLS 32
#define MAX_FB 8
#define MAX_SEEDS 64

typedef struct variant {
    char label[80];
    bool skipped;             /* the model could not be built for this task (message printed) */
    const char *cell;
    bool set_fb;
    double fb;
    double metric[MAX_SEEDS];
    int n_ok;                 /* seeds that trained */
    int n_beat;               /* seeds that beat the baseline */
    int64_t params;
    double ms_per_step;       /* mean over seeds */
    double *mean_loss;        /* [n_points] mean curve over seeds */
    double *xs;
    int n_points;
} variant;

static double mean_of(const double *v, int n) {
    double s = 0;
    for (int i = 0; i < n; i++) s += v[i];
    return n ? s / n : NAN;
}

static double sd_of(const double *v, int n) {
    if (n < 2) return 0;
    double m = mean_of(v, n), s = 0;
    for (int i = 0; i < n; i++) s += (v[i] - m) * (v[i] - m);
    return sqrt(s / (n - 1));
}

int cmd_compare(int argc, char **argv) {
    const char *tname = NULL, *cells_arg = "rnn_tanh,lstm,gru", *optim = "adam", *text = NULL, *fb_arg = NULL,
               *svg = NULL, *csv_path = NULL, *dtype = "f32";
    long seeds = 3, seed0 = 1, steps = 0, hidden = 0, layers = 1, batch = 0, seq = 0, threads = 1;
    double lr = 0, clip = 1.0, dropout = 0, zoneout = 0;
    char optim_help[160], task_help[256], hidden_help[200], batch_help[200], seq_help[240], steps_help[240], lr_help[240];
    task_defaults_help(hidden_help, sizeof hidden_help, "hidden units", 'h');
    task_defaults_help(batch_help, sizeof batch_help, "sequences per step", 'b');
    task_defaults_help(seq_help, sizeof seq_help, "the task's length", 's');
    task_defaults_help(lr_help, sizeof lr_help, "learning rate, above 0", 'l');
    task_defaults_help(steps_help, sizeof steps_help, "training steps per run", 't');
    const cli_opt opts[] = {
        {"--task", CLI_STR, &tname, 0, 0, task_list_sep(task_help, sizeof task_help, " | ")},
        {"--cells", CLI_STR, &cells_arg, 0, 0, "comma-separated cell names (tapegrad cells lists them)"},
        {"--seeds", CLI_INT, &seeds, 1, MAX_SEEDS, "seeds per cell: seed, seed+1, ..."},
        {"--seed", CLI_INT, &seed0, 0, 2147483647, "first seed"},
        {"--steps", CLI_INT, &steps, 1, 100000000, steps_help},
        {"--hidden", CLI_INT, &hidden, 1, 4096, hidden_help},
        {"--layers", CLI_INT, &layers, 1, 16, "stacked layers"},
        {"--batch", CLI_INT, &batch, 1, 4096, batch_help},
        {"--seq", CLI_INT, &seq, 1, 100000, seq_help},
        {"--lr", CLI_RATE, &lr, 0, 10, lr_help},
        {"--optim", CLI_STR, &optim, 0, 0, tg_optim_kind_list(optim_help, sizeof optim_help, " | ")},
        {"--clip", CLI_REAL, &clip, 0, 1e6, "clip the gradient norm to this (0: no clipping)"},
        {"--forget-bias", CLI_STR, &fb_arg, 0, 0, "comma-separated forget-gate biases: one row per cell with a "
                                                  "forget gate and value (default: PyTorch's init)"},
        {"--dropout", CLI_REAL, &dropout, 0, 0.99, "dropout between stacked layers while training (every cell)"},
        {"--zoneout", CLI_REAL, &zoneout, 0, 1, "zoneout on every state (every cell)"},
        {"--threads", CLI_INT, &threads, 1, 64, "GEMM threads"},
        {"--dtype", CLI_STR, &dtype, 0, 0, "f32 | f64"},
        {"--text", CLI_STR, &text, 0, 0, "charlm: a text file"},
        {"--plot", CLI_STR, &svg, 0, 0, "SVG of every learning curve (default compare_TASK.svg)"},
        {"--csv", CLI_STR, &csv_path, 0, 0, "CSV of every curve point (default compare_TASK.csv)"},
        {"--log", CLI_STR, &csv_path, 0, 0, "the same as --csv (its older name)"},
    };
    const cli_cmd cmd = {"compare", "--task T [--cells a,b,c --seeds K --steps N --hidden N --forget-bias 0,1 ...]",
                         "Trains every cell with the same budget, data and seeds, then prints the task's test\n"
                         "metric (mean and sd over seeds), the parameter count and the time per step, and\n"
                         "writes all learning curves (mean over seeds) to one SVG and every point to a CSV.",
                         opts, (int)(sizeof opts / sizeof opts[0]), false};
    int p = cli_parse(&cmd, argc, argv);
    if (p) return p == 1 ? TG_EXIT_OK : TG_EXIT_USAGE;
    if (!tname) return cli_fail(&cmd, "--task is required (%s)", task_list());
    if (!task_known(tname)) return cli_fail(&cmd, "unknown task '%s'%s (known: %s)", tname, cli_did_you_mean(cli_suggest_in(tname, task_list())), task_list());
    char optim_err[320];
    if (!optim_name_ok(optim, optim_err, sizeof optim_err)) return cli_fail(&cmd, "%s", optim_err);
    if (strcmp(dtype, "f32") && strcmp(dtype, "f64")) return cli_fail(&cmd, "--dtype must be f32 or f64, not '%s'", dtype);
    cli_record_errors();

    /* cells and forget-bias values -> variants */
    const char *cells[MAX_CELLS];
    int n_cells = cli_split_list(cells_arg, cells, MAX_CELLS);
    static char cell_copy[MAX_CELLS][48];
    if (n_cells == 0) return cli_fail(&cmd, "--cells is empty");
    for (int i = 0; i < n_cells; i++) {
        snprintf(cell_copy[i], sizeof cell_copy[i], "%s", cells[i]);
        cells[i] = cell_copy[i];
        if (!tg_cell_by_name(cells[i])) return cli_fail_unknown_cell(&cmd, cells[i]);
    }
    double fbs[MAX_FB];
    int n_fb = 0;
    if (fb_arg) {
        const char *parts[MAX_FB];
        int n = cli_split_list(fb_arg, parts, MAX_FB);
        for (int i = 0; i < n; i++) {
            char *end;
            fbs[n_fb] = strtod(parts[i], &end);
            if (end == parts[i] || *end || !isfinite(fbs[n_fb]) || fabs(fbs[n_fb]) > 100)
                return cli_fail(&cmd, "option --forget-bias: '%s' is not a number in [-100, 100]", parts[i]);
            n_fb++;
        }
        if (n_fb == 0) return cli_fail(&cmd, "option --forget-bias: no values");
    }
    variant *vs = calloc((size_t)n_cells * (size_t)(n_fb ? n_fb : 1), sizeof *vs);
    int nv = 0;
    for (int i = 0; vs && i < n_cells; i++) {
        bool has_fg = tg_cell_by_name(cells[i])->forget_gate >= 0;
        if (!n_fb || !has_fg) {
            vs[nv].cell = cells[i];
            snprintf(vs[nv].label, sizeof vs[nv].label, "%s", cells[i]);
            nv++;
            continue;
        }
        for (int k = 0; k < n_fb; k++) {
            vs[nv].cell = cells[i];
            vs[nv].set_fb = true;
            vs[nv].fb = fbs[k];
            snprintf(vs[nv].label, sizeof vs[nv].label, "%s fb=%g", cells[i], fbs[k]);
            nv++;
        }
    }
    if (!vs) return cli_fail(&cmd, "out of memory");

    char def_svg[128], def_csv[128];
    snprintf(def_svg, sizeof def_svg, "compare_%s.svg", tname);
    snprintf(def_csv, sizeof def_csv, "compare_%s.csv", tname);
    if (!svg) svg = def_svg;
    if (!csv_path) csv_path = def_csv;
    if (!writable_path(svg)) { free(vs); return cli_fail(&cmd, "cannot write '%s': %s", svg, strerror(errno)); }
    FILE *csv = fopen(csv_path, "w");
    if (!csv) { free(vs); return cli_fail(&cmd, "cannot write '%s': %s", csv_path, strerror(errno)); }
    fprintf(csv, "variant,cell,forget_bias,seed,step,loss,seconds\n");
    tg_set_num_threads((int)threads);

    train_config base = {.task = tname, .text = text, .seq = seq, .hidden = hidden, .layers = layers, .batch = batch,
                         .lr = lr, .optim = optim, .clip = clip, .steps = steps,
                         .dtype = strcmp(dtype, "f64") == 0 ? TG_F64 : TG_F32, .dropout = dropout, .zoneout = zoneout};
    train_config_fill_defaults(&base);
    task *probe = NULL;
    char err[1024];
    {
        /* one task instance for the header and the metric's name and baseline */
        probe = task_new(tname, &(task_opts){.seq = base.seq, .text = text, .dtype = base.dtype}, err, sizeof err);
        if (!probe) { fclose(csv); free(vs); return cli_fail(&cmd, "%s", err); }
    }
    printf("compare on task %s: %s\n  --seq %ld (%s); %ld steps, batch %ld, hidden %ld x %ld layer%s, %s lr %g, "
           "clip %g, seeds %ld..%ld\n",
           tname, task_about(probe), task_seq(probe), task_seq_meaning(tname), base.steps, base.batch, base.hidden,
           base.layers, base.layers == 1 ? "" : "s", base.optim, base.lr, base.clip, seed0, seed0 + seeds - 1);
    if (dropout > 0) printf("  dropout %g between layers%s\n", dropout, base.layers < 2 ? " (no effect with 1 layer)" : "");
    if (zoneout > 0) printf("  zoneout %g on every state\n", zoneout);
    fflush(stdout);

    int rc = TG_EXIT_OK, n_skipped = 0;
    progress_mode pm = progress_auto();
    for (int v = 0; v < nv && rc == TG_EXIT_OK; v++) {
        variant *V = &vs[v];
        double ms_sum = 0;
        for (long s = 0; s < seeds; s++) {
            train_config cfg = base;
            cfg.cell = V->cell;
            cfg.seed = seed0 + s;
            cfg.set_forget_bias = V->set_fb;
            cfg.forget_bias = V->fb;
            trainer tr;
            if (trainer_init(&tr, &cfg, NULL, err, sizeof err)) {
                /* e.g. a cell whose equations need input size = hidden size: skip it, keep the others */
                fprintf(stderr, "tapegrad compare: %s: %s (skipped)\n", V->label, err);
                V->skipped = true;
                n_skipped++;
                break;
            }
            V->params = tg_model_param_count(tr.model);
            char label[128];
            snprintf(label, sizeof label, "%s seed %ld", V->label, cfg.seed);
            progress pr = {pm == PROGRESS_TTY ? PROGRESS_TTY : PROGRESS_OFF, label};
            if (trainer_run(&tr, cfg.steps, &pr, err, sizeof err)) {
                /* a diverged run counts as not beating the baseline; the comparison goes on */
                printf("[%s] stopped: %s\n", label, err);
                trainer_free(&tr);
                continue;
            }
            task_eval ev;
            if (task_evaluate(tr.task, tr.model, false, &ev)) {
                fprintf(stderr, "tapegrad compare: evaluation failed: %s\n", tg_last_error());
                trainer_free(&tr);
                rc = TG_EXIT_FAIL;
                break;
            }
            double ms = 1e3 * tr.seconds / (double)(tr.step ? tr.step : 1);
            ms_sum += ms;
            V->metric[V->n_ok++] = ev.metric;
            V->n_beat += beats_baseline(tr.task, ev.metric);
            const char *unit;
            double shown = metric_display(tr.task, ev.metric, &unit);
            printf("[%s] %lld steps, %.2f ms/step: %s %.4g%s\n", label, (long long)tr.step, ms, task_metric_name(tr.task),
                   shown, unit);
            fflush(stdout);
            /* curve: CSV rows, and the running sum for the mean curve */
            if (!V->mean_loss) {
                V->n_points = tr.curve.n;
                V->mean_loss = calloc((size_t)(tr.curve.n ? tr.curve.n : 1), sizeof *V->mean_loss);
                V->xs = calloc((size_t)(tr.curve.n ? tr.curve.n : 1), sizeof *V->xs);
            }
            for (int i = 0; i < tr.curve.n; i++) {
                char fbs_s[32];
                if (V->set_fb) snprintf(fbs_s, sizeof fbs_s, "%g", V->fb);
                else snprintf(fbs_s, sizeof fbs_s, "default");
                fprintf(csv, "%s,%s,%s,%ld,%lld,%.9g,%.4f\n", V->label, V->cell, fbs_s, cfg.seed,
                        (long long)tr.curve.step[i], tr.curve.loss[i], tr.curve.seconds[i]);
                if (V->mean_loss && i < V->n_points) {
                    V->mean_loss[i] += tr.curve.loss[i];
                    V->xs[i] = (double)tr.curve.step[i];
                }
            }
            trainer_free(&tr);
        }
        if (V->n_ok) {
            V->ms_per_step = ms_sum / V->n_ok;
            for (int i = 0; V->mean_loss && i < V->n_points; i++) V->mean_loss[i] /= V->n_ok;
        }
    }
    fclose(csv);
    if (rc == TG_EXIT_OK && n_skipped == nv) {
        fprintf(stderr, "tapegrad compare: no cell could be trained on task %s\n", tname);
        rc = TG_EXIT_USAGE;
    }

    if (rc == TG_EXIT_OK) {
        const char *unit;
        double base_shown = metric_display(probe, task_metric_baseline(probe), &unit);
        printf("\n%s on task %s (--seq %ld), %ld steps, %ld seed%s; baseline %.4g%s (%s)\n", task_metric_name(probe), tname,
               task_seq(probe), base.steps, seeds, seeds == 1 ? "" : "s", base_shown, unit, task_baseline_desc(probe));
        printf("%-22s %10s %9s   %-26s %s\n", "cell", "params", "ms/step", task_metric_name(probe),
               "beat baseline");
        for (int v = 0; v < nv; v++) {
            variant *V = &vs[v];
            double shown[MAX_SEEDS];
            for (int i = 0; i < V->n_ok; i++) shown[i] = metric_display(probe, V->metric[i], &unit);
            char cellv[64];
            if (V->n_ok) snprintf(cellv, sizeof cellv, "%.4g ± %.2g%s", mean_of(shown, V->n_ok), sd_of(shown, V->n_ok), unit);
            else snprintf(cellv, sizeof cellv, V->skipped ? "(cannot run this task)" : "(diverged)");
            /* "±" is two bytes but one column: pad by display width */
            int pad = 26 + (strstr(cellv, "±") ? 1 : 0);
            if (V->skipped)
                printf("%-22s %10s %9s   %-*s -\n", V->label, "-", "-", pad, cellv);
            else
                printf("%-22s %10lld %9.2f   %-*s %d/%ld\n", V->label, (long long)V->params, V->ms_per_step, pad,
                       cellv, V->n_beat, seeds);
        }
        plot_series *ser = calloc((size_t)nv, sizeof *ser);
        int ns = 0;
        for (int v = 0; ser && v < nv; v++)
            if (vs[v].n_ok && vs[v].mean_loss) ser[ns++] = (plot_series){vs[v].label, vs[v].xs, vs[v].mean_loss, vs[v].n_points};
        char title[256], ylabel[128];
        snprintf(title, sizeof title, "tapegrad compare: task %s (--seq %ld), mean of %ld seed%s", tname, task_seq(probe),
                 seeds, seeds == 1 ? "" : "s");
        snprintf(ylabel, sizeof ylabel, "training loss (%s)", loss_name(probe));
        plot_opts po = {title, "step", ylabel, true, task_loss_baseline(probe), task_baseline_desc(probe)};
        if (ser && plot_svg(svg, &po, ser, ns, err, sizeof err) == 0) {
            printf("wrote %s and %s\n", svg, csv_path);
        } else {
            fprintf(stderr, "tapegrad compare: %s\n", ser ? err : "out of memory");
            rc = TG_EXIT_FAIL;
        }
        free(ser);
    }
    for (int v = 0; v < nv; v++) {
        free(vs[v].mean_loss);
        free(vs[v].xs);
    }
    free(vs);
    task_free(probe);
    return rc;
}
