/* tools/cmd_predict.c - `tapegrad predict --model M --data FILE [--out FILE.csv|.npy]`: the predictions of
 * a model trained by `train --data` for every sequence of a file, with the normalisation, window and
 * columns stored in M; class probabilities for class / tag targets; the metric when the file has labels.
 * `--split val` (or train) re-makes the training run's split of its own data file (same seed, same
 * fraction), so that predict reproduces the validation metric train reported. */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <tapegrad/tapegrad.h>

#include "tools/cli.h"
#include "tools/commands.h"
#include "tools/datatask.h"
#include <tapegrad/train.h>

static bool ends_with(const char *s, const char *suffix) {
    size_t n = strlen(s), k = strlen(suffix);
    return n >= k && strcmp(s + n - k, suffix) == 0;
}

/* A float64 C-order .npy file of the given shape (NumPy format 1.0). Returns 0 or -1. */
static int write_npy(const char *path, const double *v, int ndim, const int64_t *shape) {
    char dims[128] = "";
    size_t used = 0;
    int64_t n = 1;
    for (int d = 0; d < ndim; d++) {
        used += (size_t)snprintf(dims + used, sizeof dims - used, "%lld%s", (long long)shape[d], ndim == 1 || d + 1 < ndim ? ", " : "");
        n *= shape[d];
    }
    if (ndim == 1) dims[used - 1] = 0; /* "(N,)" */
    char header[256];
    int hl = snprintf(header, sizeof header, "{'descr': '<f8', 'fortran_order': False, 'shape': (%s), }", dims);
    int total = 10 + hl + 1, pad = (64 - total % 64) % 64;
    FILE *f = fopen(path, "wb");
    if (!f) return -1;
    unsigned short len = (unsigned short)(hl + pad + 1);
    unsigned char pre[10] = {0x93, 'N', 'U', 'M', 'P', 'Y', 1, 0, (unsigned char)(len & 0xff), (unsigned char)(len >> 8)};
    bool ok = fwrite(pre, 1, 10, f) == 10 && fwrite(header, 1, (size_t)hl, f) == (size_t)hl;
    for (int k = 0; ok && k < pad; k++) ok = fputc(' ', f) != EOF;
    ok = ok && fputc('\n', f) != EOF;
    /* the values, little-endian (this machine's order on every platform tapegrad builds for) */
    ok = ok && fwrite(v, sizeof *v, (size_t)n, f) == (size_t)n;
    ok = fclose(f) == 0 && ok;
    return ok ? 0 : -1;
}

static void softmax(const double *logits, int64_t C, double *p) {
    double mx = logits[0], s = 0;
    for (int64_t k = 1; k < C; k++) mx = logits[k] > mx ? logits[k] : mx;
    for (int64_t k = 0; k < C; k++) s += (p[k] = exp(logits[k] - mx));
    for (int64_t k = 0; k < C; k++) p[k] /= s;
}

static int64_t argmax(const double *v, int64_t n) {
    int64_t best = 0;
    for (int64_t k = 1; k < n; k++)
        if (v[k] > v[best]) best = k;
    return best;
}

/* Writes the predictions (CSV: one row per sequence, or per step for tag; .npy: probabilities or
 * values). Returns 0 or -1 + err. */
static int write_out(const char *path, const data_src *d, data_part part, const data_pred *o, char *err, size_t errlen) {
    const tg_dataset *ds = data_part_set(d, part);
    bool ce = data_loss_kind(d) == TASK_LOSS_CE, every = data_every_step(d);
    bool labelled = tg_dataset_label_kind(ds) != TG_LABELS_NONE;
    int64_t W = o->width, N = o->n;
    if (ends_with(path, ".npy")) {
        int64_t T = 0;
        for (int64_t n = 0; n < N; n++) T = o->offset[n + 1] - o->offset[n] > T ? o->offset[n + 1] - o->offset[n] : T;
        int64_t rows = every ? N * T : N;
        double *v = calloc((size_t)(rows * W), sizeof *v);
        if (!v) { snprintf(err, errlen, "out of memory"); return -1; }
        for (int64_t n = 0; n < N; n++)
            for (int64_t r = o->offset[n]; r < o->offset[n + 1]; r++) {
                double *dst = v + ((every ? n * T + (r - o->offset[n]) : n) * W);
                if (ce) softmax(o->v + r * W, W, dst);
                else memcpy(dst, o->v + r * W, (size_t)W * sizeof *dst);
            }
        int64_t shape3[3] = {N, T, W}, shape2[2] = {N, W};
        int rc = every ? write_npy(path, v, 3, shape3) : write_npy(path, v, 2, shape2);
        free(v);
        if (rc) snprintf(err, errlen, "cannot write '%s': %s", path, strerror(errno));
        return rc;
    }
    FILE *f = fopen(path, "w");
    if (!f) { snprintf(err, errlen, "cannot write '%s': %s", path, strerror(errno)); return -1; }
    fprintf(f, "index%s", every ? ",step" : "");
    if (ce) {
        fprintf(f, ",predicted");
        for (int64_t k = 0; k < W; k++) fprintf(f, ",p%lld", (long long)k);
        if (labelled) fprintf(f, ",label");
    } else {
        for (int64_t k = 0; k < W; k++) fprintf(f, ",y%lld", (long long)k);
        for (int64_t k = 0; labelled && k < W; k++) fprintf(f, ",true%lld", (long long)k);
    }
    fprintf(f, "\n");
    double *p = malloc((size_t)W * sizeof *p);
    if (!p) { fclose(f); snprintf(err, errlen, "out of memory"); return -1; }
    for (int64_t n = 0; n < N; n++)
        for (int64_t r = o->offset[n]; r < o->offset[n + 1]; r++) {
            const double *v = o->v + r * W;
            int64_t t = r - o->offset[n];
            fprintf(f, "%lld", (long long)n);
            if (every) fprintf(f, ",%lld", (long long)t);
            if (ce) {
                softmax(v, W, p);
                fprintf(f, ",%lld", (long long)argmax(v, W));
                for (int64_t k = 0; k < W; k++) fprintf(f, ",%.6g", p[k]);
                if (labelled)
                    fprintf(f, ",%lld", (long long)(every ? tg_dataset_tags(ds, n)[t] : tg_dataset_label(ds, n)));
            } else {
                for (int64_t k = 0; k < W; k++) fprintf(f, ",%.9g", v[k]);
                for (int64_t k = 0; labelled && k < W; k++) fprintf(f, ",%.9g", tg_dataset_values(ds, n)[k]);
            }
            fprintf(f, "\n");
        }
    free(p);
    if (fclose(f) != 0) { snprintf(err, errlen, "cannot write '%s': %s", path, strerror(errno)); return -1; }
    return 0;
}

int cmd_predict(int argc, char **argv) {
    const char *path = NULL, *data = NULL, *labels = NULL, *out = NULL, *split = "all", *seq_column = NULL,
               *label_column = NULL, *features = NULL;
    long threads = 1, eval_batch = DATA_EVAL_BATCH;
    const cli_opt opts[] = {
        {"--model", CLI_STR, &path, 0, 0, "a checkpoint written by 'tapegrad train --data ... --save FILE'"},
        {"--data", CLI_STR, &data, 0, 0, "the sequences to predict (default: the training run's data file)"},
        {"--labels", CLI_STR, &labels, 0, 0, "their labels, to score the predictions (if not inside --data)"},
        {"--out", CLI_STR, &out, 0, 0, "write the predictions: FILE.csv (with class probabilities) or FILE.npy"},
        {"--split", CLI_STR, &split, 0, 0, "all | val | train | test: the training run's split of its data file "
                                           "(val, train) or its --test-data (test)"},
        {"--seq-column", CLI_STR, &seq_column, 0, 0, "CSV: the sequence column (default: the training run's)"},
        {"--label-column", CLI_STR, &label_column, 0, 0, "CSV: the label column (default: the training run's)"},
        {"--features", CLI_STR, &features, 0, 0, "CSV: the feature columns (default: the training run's)"},
        {"--threads", CLI_INT, &threads, 1, 64, "GEMM threads"},
        {"--eval-batch", CLI_INT, &eval_batch, 1, 100000, "sequences per forward (memory beyond the predictions is "
                                                          "bounded by these; the results do not depend on it)"},
    };
    const cli_cmd cmd = {"predict", "--model FILE [--data FILE --labels FILE --out FILE.csv|.npy --split all|val|train|test --eval-batch N]",
                         "Runs a model trained with 'tapegrad train --data' on every sequence of a file, with the\n"
                         "normalisation, window and columns stored in the model, and writes the predictions (and the\n"
                         "class probabilities). With labels it prints the metric against the target's baseline.\n"
                         "A file with other features than the model was trained on is refused.",
                         opts, (int)(sizeof opts / sizeof opts[0]), false};
    int p = cli_parse(&cmd, argc, argv);
    if (p) return p == 1 ? TG_EXIT_OK : TG_EXIT_USAGE;
    if (!path) return cli_fail(&cmd, "--model is required");
    static const char *const splits[] = {"all", "val", "train", "test"};
    int which = -1;
    for (int k = 0; k < 4; k++)
        if (strcmp(split, splits[k]) == 0) which = k;
    if (which < 0) return cli_fail(&cmd, "--split must be all, val, train or test, not '%s'", split);
    if (which > 0 && (data || labels)) return cli_fail(&cmd, "--split %s re-makes the training run's split: leave out --data", split);
    if (access(path, R_OK) != 0) return cli_fail(&cmd, "cannot read model '%s': %s", path, strerror(errno));
    if (data && access(data, R_OK) != 0) return cli_fail(&cmd, "cannot read data '%s': %s", data, strerror(errno));
    if (out && !ends_with(out, ".csv") && !ends_with(out, ".npy"))
        return cli_fail(&cmd, "--out must end in .csv or .npy, not '%s'", out);
    cli_record_errors();
    tg_set_num_threads((int)threads);

    char err[1024];
    tg_st_file *f = NULL;
    tg_model *m = tg_ckpt_load_model(path, &f, err, sizeof err);
    if (!m) return cli_fail(&cmd, "%s", err);
    int rc = TG_EXIT_USAGE;
    data_src *d = NULL;
    data_pred o = {0};
    const char *task = tg_st_meta(f, "task");
    if (!task || strcmp(task, "data") != 0) {
        cli_fail(&cmd, "%s was trained on task %s, not on data files: predict needs a model from 'train --data'", path,
                 task ? task : "(unknown)");
        goto done;
    }
    const char *mk[] = {"target", "data", "labels", "test_data", "test_labels", "seq_column", "label_column",
                        "feature_columns", "norm", "ynorm", "val", "window", "horizon", "features", "classes", "seed",
                        "idx_no_scale"};
    const char *mv[sizeof mk / sizeof mk[0]];
    for (size_t k = 0; k < sizeof mk / sizeof mk[0]; k++)
        if (!(mv[k] = tg_st_meta(f, mk[k]))) {
            cli_fail(&cmd, "%s: the checkpoint lacks its data description ('%s')", path, mk[k]);
            goto done;
        }
#define META(i) (mv[i][0] ? mv[i] : NULL)
    data_opts dopt = {.target = mv[0], .norm = META(8), .ynorm = META(9), .window = atol(mv[11]),
                      .horizon = atol(mv[12]), .classes = atoll(mv[14]), .seed = (uint64_t)atoll(mv[15]),
                      .idx_no_scale = strcmp(mv[16], "1") == 0, .dtype = m->cfg.dtype, .eval_batch = eval_batch,
                      .seq_column = seq_column ? seq_column : META(5),
                      .label_column = label_column ? label_column : META(6),
                      .feature_columns = features ? features : META(7)};
    data_part part = DATA_VAL;
    if (which == 0) { /* everything in one file */
        dopt.path = data ? data : mv[1];
        dopt.labels = data ? labels : META(2);
        dopt.no_split = true;
    } else if (which == 3) {
        if (!META(3)) { cli_fail(&cmd, "%s was trained without --test-data", path); goto done; }
        dopt.path = mv[3];
        dopt.labels = META(4);
        dopt.no_split = true;
    } else {
        dopt.path = mv[1];
        dopt.labels = META(2);
        dopt.val = strtod(mv[10], NULL);
        part = which == 1 ? DATA_VAL : DATA_TRAIN;
        if (part == DATA_VAL && dopt.val == 0) { cli_fail(&cmd, "%s was trained with --val 0: no validation split", path); goto done; }
    }
#undef META
    d = data_src_new(&dopt, err, sizeof err);
    if (!d) { cli_fail(&cmd, "%s", err); goto done; }
    if (data_inputs(d) != m->cfg.input_size || strcmp(data_feature_names(d), mv[13]) != 0) {
        cli_fail(&cmd, "%s has features (%s), the model was trained on (%s)", dopt.path, data_feature_names(d), mv[13]);
        goto done;
    }
    if (data_outputs(d) != m->cfg.output_size) {
        cli_fail(&cmd, "%s gives %lld outputs, the model has %lld", dopt.path, (long long)data_outputs(d),
                 (long long)m->cfg.output_size);
        goto done;
    }
    const tg_dataset *ds = data_part_set(d, part);
    if (ds) { /* the data held (and one batch of it at most as large), the predictions to be made */
        int64_t steps = 0, N = tg_dataset_size(ds);
        for (int64_t n = 0; n < N; n++) steps += tg_dataset_length(ds, n);
        double rows = data_every_step(d) ? (double)steps : (double)N;
        char why[160];
        snprintf(why, sizeof why, "and %lld sequences (%lld steps) x %lld features", (long long)N, (long long)steps,
                 (long long)data_inputs(d));
        if (cli_model_guard(&cmd, m, 16.0 * (double)steps * (double)data_inputs(d) +
                                         8.0 * rows * (double)data_outputs(d), why))
            goto done;
    }
    rc = TG_EXIT_FAIL;
    if (data_predict(d, m, part, &o, err, sizeof err)) { fprintf(stderr, "tapegrad predict: %s\n", err); goto done; }
    printf("predicted %lld %s of %s (%s, target %s)\n", (long long)o.n,
           strcmp(data_target_name(d), "next") == 0 ? "windows" : "sequences", dopt.path, splits[which],
           data_target_name(d));
    char proj[48] = "";
    if (m->cfg.proj_size) snprintf(proj, sizeof proj, " projected to %lld", (long long)m->cfg.proj_size);
    printf("model: %s, %d layer%s x %lld hidden%s, %s\n", m->cfg.cell, m->cfg.layers, m->cfg.layers == 1 ? "" : "s",
           (long long)m->cfg.hidden_size, proj, tg_dtype_name(m->cfg.dtype));
    data_eval ev;
    if (data_score(d, part, &o, &ev) == 0) {
        bool pct = data_metric_percent(d);
        double k = pct ? 100 : 1, base = data_baseline(d, part);
        printf("%s %.10g%s (loss %.10g)", data_target_name(d)[0] == 'c' || data_target_name(d)[0] == 't' ? "accuracy" : "MSE",
               k * ev.metric, pct ? "%" : "", ev.loss);
        if (isfinite(base)) printf("; baseline (%s) %.10g%s", data_baseline_desc(d), k * base, pct ? "%" : "");
        printf("\n");
    } else {
        printf("no labels: nothing to score\n");
    }
    if (out) {
        if (write_out(out, d, part, &o, err, sizeof err)) { fprintf(stderr, "tapegrad predict: %s\n", err); goto done; }
        printf("wrote %s\n", out);
    }
    rc = TG_EXIT_OK;
done:
    data_pred_clear(&o);
    data_src_free(d);
    tg_st_free(f);
    tg_model_free(m);
    return rc;
}
