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

/* The command line of one compare run (every option's default is here). */
typedef struct compare_opts {
    const char *task, *cells, *optim, *text, *forget_bias, *svg, *csv, *dtype;
    long seeds, seed0, steps, hidden, layers, batch, seq, threads;
    double lr, clip, dropout, zoneout;
} compare_opts;

/* The messages after parsing need only the command's name (cli_fail prints "tapegrad compare: ..."). */
static const cli_cmd k_compare = {.name = "compare"};

/* Parses and checks argv into o. returns: -1 to go on, else the exit status (--help, a usage error) */
static int parse_options(compare_opts *o, int argc, char **argv) {
    *o = (compare_opts){.cells = "rnn_tanh,lstm,gru", .optim = "adam", .dtype = "f32", .seeds = 3, .seed0 = 1,
                        .layers = 1, .threads = 1, .clip = 1.0};
    char optim_help[160], task_help[256], hidden_help[200], batch_help[200], seq_help[240], steps_help[240], lr_help[240];
    task_defaults_help(hidden_help, sizeof hidden_help, "hidden units", 'h');
    task_defaults_help(batch_help, sizeof batch_help, "sequences per step", 'b');
    task_defaults_help(seq_help, sizeof seq_help, "the task's length", 's');
    task_defaults_help(lr_help, sizeof lr_help, "learning rate, above 0", 'l');
    task_defaults_help(steps_help, sizeof steps_help, "training steps per run", 't');
    const cli_opt opts[] = {
        {"--task", CLI_STR, &o->task, 0, 0, task_list_sep(task_help, sizeof task_help, " | ")},
        {"--cells", CLI_STR, &o->cells, 0, 0, "comma-separated cell names (tapegrad cells lists them)"},
        {"--seeds", CLI_INT, &o->seeds, 1, MAX_SEEDS, "seeds per cell: seed, seed+1, ..."},
        {"--seed", CLI_INT, &o->seed0, 0, 2147483647, "first seed"},
        {"--steps", CLI_INT, &o->steps, 1, 100000000, steps_help},
        {"--hidden", CLI_INT, &o->hidden, 1, 4096, hidden_help},
        {"--layers", CLI_INT, &o->layers, 1, 16, "stacked layers"},
        {"--batch", CLI_INT, &o->batch, 1, 4096, batch_help},
        {"--seq", CLI_INT, &o->seq, 1, 100000, seq_help},
        {"--lr", CLI_RATE, &o->lr, 0, 10, lr_help},
        {"--optim", CLI_STR, &o->optim, 0, 0, tg_optim_kind_list(optim_help, sizeof optim_help, " | ")},
        {"--clip", CLI_REAL, &o->clip, 0, 1e6, "clip the gradient norm to this (0: no clipping)"},
        {"--forget-bias", CLI_STR, &o->forget_bias, 0, 0, "comma-separated forget-gate biases: one row per cell with a "
                                                          "forget gate and value (default: PyTorch's init)"},
        {"--dropout", CLI_REAL, &o->dropout, 0, 0.99, "dropout between stacked layers while training (every cell)"},
        {"--zoneout", CLI_REAL, &o->zoneout, 0, 1, "zoneout on every state (every cell)"},
        {"--threads", CLI_INT, &o->threads, 1, 64, "GEMM threads"},
        {"--dtype", CLI_STR, &o->dtype, 0, 0, "f32 | f64"},
        {"--text", CLI_STR, &o->text, 0, 0, "charlm: a text file"},
        {"--plot", CLI_STR, &o->svg, 0, 0, "SVG of every learning curve (default compare_TASK.svg)"},
        {"--csv", CLI_STR, &o->csv, 0, 0, "CSV of every curve point (default compare_TASK.csv)"},
        {"--log", CLI_STR, &o->csv, 0, 0, "the same as --csv (its older name)"},
    };
    const cli_cmd cmd = {"compare", "--task T [--cells a,b,c --seeds K --steps N --hidden N --forget-bias 0,1 ...]",
                         "Trains every cell with the same budget, data and seeds, then prints the task's test\n"
                         "metric (mean and sd over seeds), the parameter count and the time per step, and\n"
                         "writes all learning curves (mean over seeds) to one SVG and every point to a CSV.",
                         opts, (int)(sizeof opts / sizeof opts[0]), false};
    int p = cli_parse(&cmd, argc, argv);
    if (p) return p == 1 ? TG_EXIT_OK : TG_EXIT_USAGE;
    if (!o->task) return cli_fail(&cmd, "--task is required (%s)", task_list());
    if (!task_known(o->task))
        return cli_fail(&cmd, "unknown task '%s'%s (known: %s)", o->task, cli_did_you_mean(cli_suggest_in(o->task, task_list())),
                        task_list());
    char optim_err[320];
    if (!optim_name_ok(o->optim, optim_err, sizeof optim_err)) return cli_fail(&cmd, "%s", optim_err);
    if (strcmp(o->dtype, "f32") && strcmp(o->dtype, "f64"))
        return cli_fail(&cmd, "--dtype must be f32 or f64, not '%s'", o->dtype);
    return -1;
}

/* --forget-bias's values into fbs[MAX_FB]. returns: how many (0 without the option), -1 after a message */
static int parse_forget_biases(const char *arg, double *fbs) {
    if (!arg) return 0;
    const char *parts[MAX_FB];
    int n = cli_split_list(arg, parts, MAX_FB), n_fb = 0;
    for (int i = 0; i < n; i++) {
        char *end;
        fbs[n_fb] = strtod(parts[i], &end);
        if (end == parts[i] || *end || !isfinite(fbs[n_fb]) || fabs(fbs[n_fb]) > 100) {
            cli_fail(&k_compare, "option --forget-bias: '%s' is not a number in [-100, 100]", parts[i]);
            return -1;
        }
        n_fb++;
    }
    if (n_fb == 0) {
        cli_fail(&k_compare, "option --forget-bias: no values");
        return -1;
    }
    return n_fb;
}

/* One row per cell, or per (cell, forget bias) for the cells with a forget gate when --forget-bias is
 * given. returns: the rows (calloc'd, *nv of them), NULL after a message */
static variant *make_variants(const compare_opts *o, int *nv) {
    static char cell_copy[MAX_CELLS][48];
    const char *cells[MAX_CELLS];
    int n_cells = cli_split_list(o->cells, cells, MAX_CELLS);
    if (n_cells == 0) {
        cli_fail(&k_compare, "--cells is empty");
        return NULL;
    }
    for (int i = 0; i < n_cells; i++) {
        snprintf(cell_copy[i], sizeof cell_copy[i], "%s", cells[i]);
        cells[i] = cell_copy[i];
        if (!tg_cell_by_name(cells[i])) {
            cli_fail_unknown_cell(&k_compare, cells[i]);
            return NULL;
        }
    }
    double fbs[MAX_FB];
    int n_fb = parse_forget_biases(o->forget_bias, fbs);
    if (n_fb < 0) return NULL;
    variant *vs = calloc((size_t)n_cells * (size_t)(n_fb ? n_fb : 1), sizeof *vs);
    if (!vs) {
        cli_fail(&k_compare, "out of memory");
        return NULL;
    }
    *nv = 0;
    for (int i = 0; i < n_cells; i++) {
        bool has_fg = tg_cell_by_name(cells[i])->forget_gate >= 0;
        if (!n_fb || !has_fg) {
            vs[*nv].cell = cells[i];
            snprintf(vs[*nv].label, sizeof vs[*nv].label, "%s", cells[i]);
            (*nv)++;
            continue;
        }
        for (int k = 0; k < n_fb; k++) {
            variant *V = &vs[(*nv)++];
            V->cell = cells[i];
            V->set_fb = true;
            V->fb = fbs[k];
            snprintf(V->label, sizeof V->label, "%s fb=%g", cells[i], fbs[k]);
        }
    }
    return vs;
}

static void variants_free(variant *vs, int nv) {
    for (int v = 0; vs && v < nv; v++) {
        free(vs[v].mean_loss);
        free(vs[v].xs);
    }
    free(vs);
}

/* The SVG and CSV paths (compare_TASK.svg/.csv unless given, in def_svg/def_csv[128]); the CSV opened
 * with its header line. returns: the CSV, NULL after a message */
static FILE *open_outputs(compare_opts *o, char *def_svg, char *def_csv) {
    snprintf(def_svg, 128, "compare_%s.svg", o->task);
    snprintf(def_csv, 128, "compare_%s.csv", o->task);
    if (!o->svg) o->svg = def_svg;
    if (!o->csv) o->csv = def_csv;
    if (!writable_path(o->svg)) {
        cli_fail(&k_compare, "cannot write '%s': %s", o->svg, strerror(errno));
        return NULL;
    }
    FILE *csv = fopen(o->csv, "w");
    if (!csv) {
        cli_fail(&k_compare, "cannot write '%s': %s", o->csv, strerror(errno));
        return NULL;
    }
    fprintf(csv, "variant,cell,forget_bias,seed,step,loss,seconds\n");
    return csv;
}

static void print_header(const compare_opts *o, const train_config *base, const task *probe) {
    printf("compare on task %s: %s\n  --seq %ld (%s); %ld steps, batch %ld, hidden %ld x %ld layer%s, %s lr %g, "
           "clip %g, seeds %ld..%ld\n",
           o->task, task_about(probe), task_seq(probe), task_seq_meaning(o->task), base->steps, base->batch,
           base->hidden, base->layers, base->layers == 1 ? "" : "s", base->optim, base->lr, base->clip, o->seed0,
           o->seed0 + o->seeds - 1);
    if (o->dropout > 0)
        printf("  dropout %g between layers%s\n", o->dropout, base->layers < 2 ? " (no effect with 1 layer)" : "");
    if (o->zoneout > 0) printf("  zoneout %g on every state\n", o->zoneout);
    fflush(stdout);
}

/* A finished run's curve: its CSV rows, and its losses added to the variant's running sum (the mean
 * curve over seeds, divided when every seed has run). */
static void record_curve(variant *V, const trainer *tr, long seed, FILE *csv) {
    if (!V->mean_loss) {
        V->n_points = tr->curve.n;
        V->mean_loss = calloc((size_t)(tr->curve.n ? tr->curve.n : 1), sizeof *V->mean_loss);
        V->xs = calloc((size_t)(tr->curve.n ? tr->curve.n : 1), sizeof *V->xs);
    }
    char fbs_s[32];
    if (V->set_fb) snprintf(fbs_s, sizeof fbs_s, "%g", V->fb);
    else snprintf(fbs_s, sizeof fbs_s, "default");
    for (int i = 0; i < tr->curve.n; i++) {
        fprintf(csv, "%s,%s,%s,%ld,%lld,%.9g,%.4f\n", V->label, V->cell, fbs_s, seed, (long long)tr->curve.step[i],
                tr->curve.loss[i], tr->curve.seconds[i]);
        if (V->mean_loss && i < V->n_points) {
            V->mean_loss[i] += tr->curve.loss[i];
            V->xs[i] = (double)tr->curve.step[i];
        }
    }
}

/* What one (variant, seed) run ended in. */
typedef enum { RUN_DONE, RUN_DIVERGED, RUN_SKIP_VARIANT, RUN_FAILED } run_end;

/* Trains variant V with seed `seed`, evaluates it and records its metric, time and curve. */
static run_end run_seed(variant *V, const train_config *base, long seed, progress_mode pm, FILE *csv, double *ms) {
    char err[1024];
    train_config cfg = *base;
    cfg.cell = V->cell;
    cfg.seed = seed;
    cfg.set_forget_bias = V->set_fb;
    cfg.forget_bias = V->fb;
    trainer tr;
    if (trainer_init(&tr, &cfg, NULL, err, sizeof err)) {
        /* e.g. a cell whose equations need input size = hidden size: skip it, keep the others */
        fprintf(stderr, "tapegrad compare: %s: %s (skipped)\n", V->label, err);
        return RUN_SKIP_VARIANT;
    }
    V->params = tg_model_param_count(tr.model);
    char label[128];
    snprintf(label, sizeof label, "%s seed %ld", V->label, cfg.seed);
    progress pr = {pm == PROGRESS_TTY ? PROGRESS_TTY : PROGRESS_OFF, label};
    if (trainer_run(&tr, cfg.steps, &pr, err, sizeof err)) {
        /* a diverged run counts as not beating the baseline; the comparison goes on */
        printf("[%s] stopped: %s\n", label, err);
        trainer_free(&tr);
        return RUN_DIVERGED;
    }
    task_eval ev;
    if (task_evaluate(tr.task, tr.model, false, &ev)) {
        fprintf(stderr, "tapegrad compare: evaluation failed: %s\n", tg_last_error());
        trainer_free(&tr);
        return RUN_FAILED;
    }
    *ms = 1e3 * tr.seconds / (double)(tr.step ? tr.step : 1);
    V->metric[V->n_ok++] = ev.metric;
    V->n_beat += beats_baseline(tr.task, ev.metric);
    const char *unit;
    double shown = metric_display(tr.task, ev.metric, &unit);
    printf("[%s] %lld steps, %.2f ms/step: %s %.4g%s\n", label, (long long)tr.step, *ms, task_metric_name(tr.task),
           shown, unit);
    fflush(stdout);
    record_curve(V, &tr, cfg.seed, csv);
    trainer_free(&tr);
    return RUN_DONE;
}

/* Every seed of variant V; its mean time per step and mean curve. returns: false when a run failed */
static bool run_variant(variant *V, const compare_opts *o, const train_config *base, progress_mode pm, FILE *csv) {
    double ms_sum = 0;
    for (long s = 0; s < o->seeds; s++) {
        double ms = 0;
        run_end e = run_seed(V, base, o->seed0 + s, pm, csv, &ms);
        if (e == RUN_FAILED) return false;
        if (e == RUN_SKIP_VARIANT) {
            V->skipped = true;
            break;
        }
        if (e == RUN_DONE) ms_sum += ms;
    }
    if (V->n_ok) {
        V->ms_per_step = ms_sum / V->n_ok;
        for (int i = 0; V->mean_loss && i < V->n_points; i++) V->mean_loss[i] /= V->n_ok;
    }
    return true;
}

/* The table: one row per variant with its parameters, time per step, metric (mean ± sd over seeds) and
 * how many seeds beat the baseline. */
static void print_table(const variant *vs, int nv, const compare_opts *o, long steps, const task *probe) {
    const char *unit;
    double base_shown = metric_display(probe, task_metric_baseline(probe), &unit);
    printf("\n%s on task %s (--seq %ld), %ld steps, %ld seed%s; baseline %.4g%s (%s)\n", task_metric_name(probe), o->task,
           task_seq(probe), steps, o->seeds, o->seeds == 1 ? "" : "s", base_shown, unit, task_baseline_desc(probe));
    printf("%-22s %10s %9s   %-26s %s\n", "cell", "params", "ms/step", task_metric_name(probe), "beat baseline");
    for (int v = 0; v < nv; v++) {
        const variant *V = &vs[v];
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
            printf("%-22s %10lld %9.2f   %-*s %d/%ld\n", V->label, (long long)V->params, V->ms_per_step, pad, cellv,
                   V->n_beat, o->seeds);
    }
}

/* Every variant's mean curve into the SVG. returns: the exit status */
static int write_plot(const variant *vs, int nv, const compare_opts *o, const task *probe) {
    char err[1024];
    plot_series *ser = calloc((size_t)nv, sizeof *ser);
    int ns = 0;
    for (int v = 0; ser && v < nv; v++)
        if (vs[v].n_ok && vs[v].mean_loss) ser[ns++] = (plot_series){vs[v].label, vs[v].xs, vs[v].mean_loss, vs[v].n_points};
    char title[256], ylabel[128];
    snprintf(title, sizeof title, "tapegrad compare: task %s (--seq %ld), mean of %ld seed%s", o->task, task_seq(probe),
             o->seeds, o->seeds == 1 ? "" : "s");
    snprintf(ylabel, sizeof ylabel, "training loss (%s)", loss_name(probe));
    plot_opts po = {title, "step", ylabel, true, task_loss_baseline(probe), task_baseline_desc(probe)};
    int rc = TG_EXIT_OK;
    if (ser && plot_svg(o->svg, &po, ser, ns, err, sizeof err) == 0) {
        printf("wrote %s and %s\n", o->svg, o->csv);
    } else {
        fprintf(stderr, "tapegrad compare: %s\n", ser ? err : "out of memory");
        rc = TG_EXIT_FAIL;
    }
    free(ser);
    return rc;
}

int cmd_compare(int argc, char **argv) {
    compare_opts o;
    int rc = parse_options(&o, argc, argv);
    if (rc >= 0) return rc;
    cli_record_errors();
    int nv = 0;
    variant *vs = make_variants(&o, &nv);
    if (!vs) return TG_EXIT_USAGE;
    char def_svg[128], def_csv[128];
    FILE *csv = open_outputs(&o, def_svg, def_csv);
    if (!csv) {
        free(vs);
        return TG_EXIT_USAGE;
    }
    tg_set_num_threads((int)o.threads);

    train_config base = {.task = o.task, .text = o.text, .seq = o.seq, .hidden = o.hidden, .layers = o.layers,
                         .batch = o.batch, .lr = o.lr, .optim = o.optim, .clip = o.clip, .steps = o.steps,
                         .dtype = strcmp(o.dtype, "f64") == 0 ? TG_F64 : TG_F32, .dropout = o.dropout,
                         .zoneout = o.zoneout};
    train_config_fill_defaults(&base);
    /* one task instance for the header and the metric's name and baseline */
    char err[1024];
    task *probe = task_new(o.task, &(task_opts){.seq = base.seq, .text = o.text, .dtype = base.dtype}, err, sizeof err);
    if (!probe) {
        fclose(csv);
        free(vs);
        return cli_fail(&k_compare, "%s", err);
    }
    print_header(&o, &base, probe);

    rc = TG_EXIT_OK;
    int n_skipped = 0;
    progress_mode pm = progress_auto();
    for (int v = 0; v < nv && rc == TG_EXIT_OK; v++) {
        if (!run_variant(&vs[v], &o, &base, pm, csv)) rc = TG_EXIT_FAIL;
        n_skipped += vs[v].skipped;
    }
    fclose(csv);
    if (rc == TG_EXIT_OK && n_skipped == nv) {
        fprintf(stderr, "tapegrad compare: no cell could be trained on task %s\n", o.task);
        rc = TG_EXIT_USAGE;
    }
    if (rc == TG_EXIT_OK) {
        print_table(vs, nv, &o, base.steps, probe);
        rc = write_plot(vs, nv, &o, probe);
    }
    variants_free(vs, nv);
    task_free(probe);
    return rc;
}
