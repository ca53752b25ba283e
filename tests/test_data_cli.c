/* tests/test_data_cli.c - the `tapegrad` commands that work on a model or on the user's own data, run as
 * a user runs them (the built binary, TG_TAPEGRAD_EXE), each in its own temporary directory:
 *   - summary: the table of a checkpoint (every parameter with its shape and count, the totals, the
 *     cell's equations) for any cell, and its errors;
 *   - every built-in and zoo cell gives summary some equations.
 *   - train --data from .npy, CSV (one series; sequences with a label column) and gzip'd IDX beats each
 *     target's baseline by a stated margin; predict, resume, early stopping and argument errors.
 * The data files the tests train on are written by the tests themselves. */
#include <criterion/criterion.h>
#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <tapegrad/tapegrad.h>

#include "helpers.h"

TestSuite(data_cli, .init = th_dir_make, .fini = th_dir_remove);

/* ---- summary -------------------------------------------------------------------------------------- */

/* The row of parameter `name` in a summary: its shape and count must be the tensor's. */
static void expect_param_row(const char *out, const char *name, const char *shape, const char *count) {
    const char *p = strstr(out, name);
    cr_assert(p, "summary lacks parameter %s:\n%s", name, out);
    const char *eol = strchr(p, '\n');
    char line[256];
    snprintf(line, sizeof line, "%.*s", (int)(eol ? eol - p : (long)strlen(p)), p);
    cr_expect(strstr(line, shape) != NULL, "row of %s lacks shape %s: '%s'", name, shape, line);
    size_t lc = strlen(line), cc = strlen(count);
    cr_expect(lc >= cc && strcmp(line + lc - cc, count) == 0, "row of %s does not end in count %s: '%s'", name, count,
              line);
}

Test(data_cli, summary_of_a_two_layer_gru) {
    th_run_result r = th_run("train --task adding --seq 5 --cell gru --layers 2 --hidden 8 --steps 2 --quiet --save m.safetensors");
    cr_assert_eq(r.status, 0, "%s", r.err);
    th_run_free(&r);
    r = th_run("summary --model m.safetensors");
    cr_assert_eq(r.status, 0, "%s", r.err);
    /* GRU: G = 3 blocks of H = 8; layer 0 sees I = 2, layer 1 sees H */
    expect_param_row(r.out, "rnn.weight_ih_l0", "[24, 2]", "48");
    expect_param_row(r.out, "rnn.weight_hh_l0", "[24, 8]", "192");
    expect_param_row(r.out, "rnn.weight_ih_l1", "[24, 8]", "192");
    expect_param_row(r.out, "rnn.bias_hh_l1", "[24]", "24");
    expect_param_row(r.out, "head.weight", "[1, 8]", "8");
    expect_param_row(r.out, "head.bias", "[1]", "1");
    /* 2·(48+192+24+24)... layer 0: 48+192+24+24 = 288, layer 1: 192+192+48 = 432, head 9 */
    cr_expect(strstr(r.out, "Total parameters: 729 (2,916 bytes as F32") != NULL, "%s", r.out);
    cr_expect(strstr(r.out, "rnn layer 1 (gru)") != NULL, "%s", r.out);
    cr_expect(strstr(r.out, "n = tanh(W_xn x + r⊙(W_hn h))") != NULL, "no GRU equations:\n%s", r.out);
    cr_expect(strstr(r.out, "task adding") != NULL && strstr(r.out, "step 2") != NULL, "%s", r.out);
    th_run_free(&r);
}

Test(data_cli, summary_errors) {
    th_expect_usage_error("summary", "--model is required", NULL);
    th_expect_usage_error("summary --model /nonexistent/m.safetensors", "cannot read model", "/nonexistent/m.safetensors");
    FILE *f = fopen(th_path_in("junk.safetensors"), "wb");
    cr_assert(f);
    fputs("not a checkpoint", f);
    fclose(f);
    th_expect_usage_error("summary --model junk.safetensors", "junk.safetensors", NULL);
    th_expect_usage_error("summary --model a --bogus", "unknown option '--bogus'", NULL);
}

/* Every cell (built-in and zoo) states its equations, so summary never prints an empty cell section. */
Test(data_cli, every_cell_has_equations) {
    for (int i = 0; i < tg_cell_count(); i++) {
        const tg_cell *c = tg_cell_at(i);
        cr_expect(c->equations && strstr(c->equations, "="), "cell %s gives no equations", c->name);
    }
}

/* ---- data files the tests write ------------------------------------------------------------------- */

/* A C-order little-endian .npy file: descr "<f8" or "<i8". */
#define N_SEQ 240
#define T_SEQ 10
#define I_SEQ 2

/* x [N,T,I] ~ N(0,1) from a fixed seed, and labels of each kind that need memory of the sequence:
 *   class:  1 if x[0][0] > 0 (the first step decides: remembered over T-1 steps), else 0;
 *   tag:    1 at step t if the running sum of feature 0 up to t is > 0;
 *   value:  3·Σ_t x[t][0] + 10 (the sum over the whole sequence). */
static void write_sequence_files(void) {
    static double x[N_SEQ * T_SEQ * I_SEQ], v[N_SEQ];
    static int64_t cls[N_SEQ], tags[N_SEQ * T_SEQ];
    tg_rng rng;
    tg_rng_seed(&rng, 77);
    for (int n = 0; n < N_SEQ; n++) {
        double run = 0;
        for (int t = 0; t < T_SEQ; t++) {
            for (int i = 0; i < I_SEQ; i++) x[(n * T_SEQ + t) * I_SEQ + i] = tg_rng_normal(&rng);
            run += x[(n * T_SEQ + t) * I_SEQ];
            tags[n * T_SEQ + t] = run > 0;
        }
        cls[n] = x[n * T_SEQ * I_SEQ] > 0;
        v[n] = 3 * run + 10;
    }
    th_write_npy("x.npy", "<f8", x, sizeof x[0], 3, (int64_t[]){N_SEQ, T_SEQ, I_SEQ});
    th_write_npy("class.npy", "<i8", cls, sizeof cls[0], 1, (int64_t[]){N_SEQ});
    th_write_npy("tags.npy", "<i8", tags, sizeof tags[0], 2, (int64_t[]){N_SEQ, T_SEQ});
    th_write_npy("value.npy", "<f8", v, sizeof v[0], 1, (int64_t[]){N_SEQ});
    /* the same sequences with one more feature (predict must refuse them) */
    static double x3[N_SEQ * T_SEQ * 3];
    for (int k = 0; k < N_SEQ * T_SEQ; k++) x3[3 * k] = x[2 * k], x3[3 * k + 1] = x[2 * k + 1], x3[3 * k + 2] = 1;
    th_write_npy("x3.npy", "<f8", x3, sizeof x3[0], 3, (int64_t[]){N_SEQ, T_SEQ, 3});
}

/* train (not --quiet) prints the same table before its first epoch: a data model with its 2 classes. */
Test(data_cli, train_starts_with_the_summary_table) {
    write_sequence_files();
    th_run_result r = th_run("train --data x.npy --labels class.npy --target class --hidden 8 --epochs 1");
    cr_assert(r.status == 0 || r.status == 1, "status %d: %s", r.status, r.err); /* 1: one epoch may not beat it */
    const char *table = strstr(r.out, "Layer (type)"), *epoch = strstr(r.out, "epoch 1/1");
    cr_expect(table && epoch && table < epoch, "no summary table before the first epoch:\n%s", r.out);
    expect_param_row(r.out, "rnn.weight_ih_l0", "[32, 2]", "64"); /* LSTM: 4 x 8 gates, 2 features */
    expect_param_row(r.out, "head.weight", "[2, 8]", "16");
    cr_expect(strstr(r.out, "Total parameters: 402 (") != NULL, "%s", r.out); /* 64+256+32+32 + 16+2 */
    th_run_free(&r);
}

/* summary's last line names what the model was trained on: a class checkpoint (whole sequences, no
 * --seq window; its metadata says seq 0) says so, not "seq 0"; a task's checkpoint keeps its --seq. */
static void expect_summary_says(const char *train, const char *want, const char *not_there) {
    th_run_result r = th_run_ok("train %s --hidden 4 --steps 1 --quiet --save s.safetensors", train);
    th_run_free(&r);
    r = th_run_ok("summary --model s.safetensors");
    const char *line = strstr(r.out, "Checkpoint s.safetensors: ");
    cr_assert(line, "%s", r.out);
    cr_expect(strstr(line, want) != NULL, "train %s: %s", train, line);
    cr_expect(strstr(line, not_there) == NULL, "train %s: %s", train, line);
    th_run_free(&r);
}

Test(data_cli, summary_of_a_whole_sequence_checkpoint) {
    write_sequence_files();
    expect_summary_says("--data x.npy --labels class.npy --target class",
                        "target class, data x.npy, step 1, optim adam, lr 0.001, batch 32, whole sequences, clip 1", "seq 0");
    expect_summary_says("--task adding --seq 5", ", batch 32, seq 5, clip 1", "whole sequences");
}

/* One long series: two sines and noise (persistence is a poor forecast of it). */
static void write_series_file(void) {
    static double s[1500];
    tg_rng rng;
    tg_rng_seed(&rng, 78);
    for (int t = 0; t < 1500; t++) s[t] = sin(0.3 * t) + 0.5 * sin(0.11 * t) + 0.05 * tg_rng_normal(&rng);
    th_write_npy("series.npy", "<f8", s, sizeof s[0], 1, (int64_t[]){1500});
}

/* The number after `key` in text (the last occurrence when last), NAN if absent. */
static double number_after(const char *text, const char *key, bool last) {
    const char *p = strstr(text, key), *q;
    if (!p) return NAN;
    while (last && (q = strstr(p + 1, key))) p = q;
    return strtod(p + strlen(key), NULL);
}

/* The last value of CSV column `col` (0-based) of a train --log file. */
static double last_csv_column(const char *name, int col) {
    char *s = th_slurp(th_path_in(name));
    char *line = NULL;
    for (char *l = strtok(s, "\n"); l; l = strtok(NULL, "\n")) line = l;
    double v = NAN;
    for (int c = 0; line && c <= col; c++) {
        v = strtod(line, &line);
        if (*line == ',') line++;
    }
    free(s);
    return v;
}

/* scripts/valgrind-tests.sh runs this suite under valgrind (~50x slower): there the trainings below run
 * 6 steps and their margins are not checked, and the resume test trains fewer steps (the memory checks
 * are the point); the normal and sanitizer builds train in full and check every margin. */
static bool under_valgrind(void) {
    const char *p = getenv("LD_PRELOAD");
    return p && strstr(p, "vgpreload");
}

/* train --data ... must beat the target's baseline by a margin: accuracy by `margin` points (absolute),
 * MSE by a factor `margin`. Returns the metric. Under valgrind: 6 steps, no margin. */
static double expect_beats_by(const char *args, bool lower, double margin) {
    char quick[1024];
    const char *ep = strstr(args, "--epochs ");
    if (under_valgrind() && ep) {
        const char *rest = strchr(ep + strlen("--epochs "), ' ');
        snprintf(quick, sizeof quick, "%.*s--steps 6%s", (int)(ep - args), args, rest ? rest : "");
        args = quick;
    }
    th_run_result r = th_run("train %s --quiet", args);
    cr_assert_eq(r.status, 0, "train %s exited %d: %s\n%s", args, r.status, r.err, r.out);
    /* the final line: "val <metric> M vs baseline B (...)" */
    const char *vs = strstr(r.out, " vs baseline ");
    cr_assert(vs, "train %s: no metric line:\n%s", args, r.out);
    const char *num = vs;
    while (num > r.out && num[-1] != ' ') num--;
    double metric = strtod(num, NULL), base = strtod(vs + strlen(" vs baseline "), NULL);
    cr_assert(isfinite(metric) && isfinite(base), "train %s: unparsable metric line:\n%s", args, r.out);
    if (args != quick && lower)
        cr_expect(metric * margin < base, "train %s: MSE %g is not %gx below the baseline %g\n%s", args, metric, margin, base, r.out);
    else if (args != quick)
        cr_expect(metric > base + margin, "train %s: accuracy %g%% is not %g points above the baseline %g%%\n%s", args,
                  metric, margin, base, r.out);
    th_run_free(&r);
    return metric;
}

Test(data_cli, class_beats_the_majority_class) {
    write_sequence_files();
    expect_beats_by("--data x.npy --labels class.npy --target class --val 0.25 --hidden 16 --epochs 12 --lr 0.01",
                    false, 25);
}

Test(data_cli, tag_beats_the_per_step_majority) {
    write_sequence_files();
    expect_beats_by("--data x.npy --labels tags.npy --target tag --val 0.25 --hidden 16 --epochs 8 --lr 0.01", false, 25);
}

Test(data_cli, value_beats_the_mean) {
    write_sequence_files();
    expect_beats_by("--data x.npy --labels value.npy --target value --val 0.25 --hidden 16 --epochs 10 --lr 0.01",
                    true, 5);
}

Test(data_cli, next_beats_persistence) {
    write_series_file();
    expect_beats_by("--data series.npy --target next --seq 12 --val 0.2 --hidden 16 --epochs 3 --lr 0.01", true, 2);
}

/* The series of write_series_file as a CSV a user would have: a header, a time column and the value
 * (--features picks the value; the time column would otherwise be a feature too). */
static void write_series_csv(void) {
    tg_rng rng;
    tg_rng_seed(&rng, 78);
    FILE *f = fopen(th_path_in("series.csv"), "w");
    cr_assert(f);
    fputs("\"time\",\"value\"\n", f);
    for (int t = 0; t < 1500; t++) fprintf(f, "%d,%.6f\n", t, sin(0.3 * t) + 0.5 * sin(0.11 * t) + 0.05 * tg_rng_normal(&rng));
    fclose(f);
}

Test(data_cli, next_beats_persistence_from_csv) {
    write_series_csv();
    expect_beats_by("--data series.csv --features value --target next --seq 12 --val 0.2 --hidden 16 --epochs 3 --lr 0.01",
                    true, 2);
}

/* Sequences in one CSV: a column names each row's sequence, another its class (the sign of the first
 * step's feature a, as class.npy: remembered over the whole sequence). */
Test(data_cli, class_beats_the_majority_class_from_csv) {
    write_sequence_files();
    tg_rng rng;
    tg_rng_seed(&rng, 77);
    FILE *f = fopen(th_path_in("seqs.csv"), "w");
    cr_assert(f);
    fputs("recording,a,b,label\n", f);
    for (int n = 0; n < N_SEQ; n++) {
        double x[T_SEQ][I_SEQ];
        for (int t = 0; t < T_SEQ; t++)
            for (int i = 0; i < I_SEQ; i++) x[t][i] = tg_rng_normal(&rng);
        for (int t = 0; t < T_SEQ; t++) fprintf(f, "r%d,%.9g,%.9g,%d\n", n, x[t][0], x[t][1], x[0][0] > 0);
    }
    fclose(f);
    expect_beats_by("--data seqs.csv --seq-column recording --label-column label --target class --val 0.25 --hidden 16 "
                    "--epochs 12 --lr 0.01", false, 25);
}

/* An IDX file as MNIST's (big-endian sizes, u8 pixels), gzip-compressed by gzip itself: N images of
 * R rows x C columns, read as R steps of C features; class 1 when the first row is bright (so the
 * network must remember row 0 over the other R-1 rows), pixels elsewhere uniform noise. */
static void write_idx_images(const char *name, int n_img, uint64_t seed) {
    enum { R = 8, C = 6 };
    static unsigned char img[400][R][C], lab[400];
    cr_assert(n_img <= 400);
    tg_rng rng;
    tg_rng_seed(&rng, seed);
    for (int n = 0; n < n_img; n++) {
        lab[n] = tg_rng_uniform(&rng) < 0.5;
        for (int r = 0; r < R; r++)
            for (int c = 0; c < C; c++) {
                double u = tg_rng_uniform(&rng);
                img[n][r][c] = (unsigned char)(r == 0 ? (lab[n] ? 128 + 127 * u : 127 * u) : 255 * u);
            }
    }
    char file[64];
    snprintf(file, sizeof file, "%s-images", name);
    FILE *f = fopen(th_path_in(file), "wb");
    cr_assert(f);
    unsigned char head[16] = {0, 0, 0x08, 3, (unsigned char)(n_img >> 24), (unsigned char)(n_img >> 16), (unsigned char)(n_img >> 8),
                              (unsigned char)n_img, 0, 0, 0, R, 0, 0, 0, C};
    fwrite(head, 1, 16, f);
    fwrite(img, 1, (size_t)n_img * R * C, f);
    fclose(f);
    snprintf(file, sizeof file, "%s-labels", name);
    f = fopen(th_path_in(file), "wb");
    cr_assert(f);
    fwrite((unsigned char[]){0, 0, 0x08, 1}, 1, 4, f);
    fwrite(head + 4, 1, 4, f);
    fwrite(lab, 1, (size_t)n_img, f);
    fclose(f);
    char cmd[512];
    snprintf(cmd, sizeof cmd, "cd '%s' && gzip -9 %s-images %s-labels", th_dir(), name, name);
    cr_assert_eq(system(cmd), 0, "gzip failed: %s", cmd);
}

Test(data_cli, class_beats_the_majority_class_from_idx_gz) {
    write_idx_images("train", 400, 91);
    write_idx_images("t10k", 200, 92);
    expect_beats_by("--data train-images.gz --labels train-labels.gz --target class --val 0.2 "
                                 "--test-data t10k-images.gz --test-labels t10k-labels.gz --hidden 16 --epochs 10 --lr 0.01",
                                 false, 30);
    /* the final metric is the test set's: 200 images */
    th_run_result r = th_run("train --data train-images.gz --labels train-labels.gz --target class --test-data t10k-images.gz "
                       "--test-labels t10k-labels.gz --hidden 4 --steps 2 --quiet");
    cr_assert_eq(r.status, 0, "%s", r.err);
    cr_expect(strstr(r.out, "on 200 test sequences") != NULL, "%s", r.out);
    cr_expect(strstr(r.out, "400 sequences (train 360, val 40, test 200), 6 features, 8 steps, 2 classes") != NULL, "%s", r.out);
    th_run_free(&r);
}

/* predict --split val re-makes the training run's split and normalisation: its metric and loss are the
 * validation figures of the run's last epoch (the CSV log), to the printed digits. */
Test(data_cli, predict_reproduces_the_validation_metric) {
    write_sequence_files();
    th_run_result r = th_run("train --data x.npy --labels class.npy --target class --val 0.25 --hidden 8 --epochs 3 --lr 0.01 --quiet "
                       "--log c.csv --save c.safetensors");
    cr_assert_eq(r.status, 0, "%s", r.err);
    th_run_free(&r);
    double val_loss = last_csv_column("c.csv", 5), val_acc = last_csv_column("c.csv", 6);
    r = th_run("predict --model c.safetensors --split val --out p.csv");
    cr_assert_eq(r.status, 0, "%s", r.err);
    double acc = number_after(r.out, "accuracy ", false), loss = number_after(r.out, "(loss ", false);
    cr_expect(fabs(acc / 100 - val_acc) < 1e-8, "predict accuracy %.10g%% vs train's %.10g\n%s", acc, val_acc, r.out);
    cr_expect(fabs(loss - val_loss) < 1e-8 * fabs(val_loss), "predict loss %.10g vs train's %.10g", loss, val_loss);
    cr_expect(strstr(r.out, "predicted 60 sequences") != NULL, "%s", r.out); /* 25% of 240 */
    th_run_free(&r);
    r = th_run("predict --model c.safetensors --split val --eval-batch 7"); /* pieces of 7 sequences, not 256 */
    cr_assert_eq(r.status, 0, "%s", r.err);
    cr_expect(number_after(r.out, "accuracy ", false) == acc, "--eval-batch 7: %s", r.out);
    cr_expect(fabs(number_after(r.out, "(loss ", false) - loss) < 1e-8 * fabs(loss), "--eval-batch 7: %s", r.out);
    th_run_free(&r);
    /* the CSV: a header and one row per sequence, probabilities summing to 1 */
    char *csv = th_slurp(th_path_in("p.csv"));
    cr_expect(strncmp(csv, "index,predicted,p0,p1,label\n", 28) == 0, "%.80s", csv);
    int rows = 0;
    for (char *p = csv; *p; p++) rows += *p == '\n';
    cr_expect_eq(rows, 61, "%d lines in p.csv", rows);
    long idx, pred, label;
    double p0, p1;
    cr_assert_eq(sscanf(strchr(csv, '\n') + 1, "%ld,%ld,%lf,%lf,%ld", &idx, &pred, &p0, &p1, &label), 5);
    cr_expect(fabs(p0 + p1 - 1) < 1e-5 && pred == (p1 > p0), "p0 %g p1 %g predicted %ld", p0, p1, pred);
    free(csv);
    /* the whole file, as .npy probabilities [N, C] */
    r = th_run("predict --model c.safetensors --data x.npy --out p.npy");
    cr_assert_eq(r.status, 0, "%s", r.err);
    cr_expect(strstr(r.out, "predicted 240 sequences") != NULL && strstr(r.out, "no labels") != NULL, "%s", r.out);
    th_run_free(&r);
    char *npy = th_slurp(th_path_in("p.npy"));
    cr_expect(strncmp(npy, "\x93NUMPY", 6) == 0 && strstr(npy + 10, "'shape': (240, 2)") != NULL, "%.100s", npy + 10);
    free(npy);
}

/* New recordings to predict on come without labels: predict on a CSV that lacks the training run's label
 * column gives the same predictions as on the labelled file, and says there is nothing to score (it was
 * refused: "no column 'label' (label_column not found ...)"). A file short of a feature is still refused. */
Test(data_cli, predict_on_a_csv_without_its_label_column) {
    FILE *f = fopen(th_path_in("rec.csv"), "w"), *g = fopen(th_path_in("new.csv"), "w"),
         *h = fopen(th_path_in("nofeat.csv"), "w");
    cr_assert(f && g && h);
    fputs("recording,a,b,label\n", f);
    fputs("recording,a,b\n", g);
    fputs("recording,a,label\n", h);
    tg_rng rng;
    tg_rng_seed(&rng, 79);
    for (int n = 0; n < 40; n++)
        for (int t = 0; t < 5; t++) {
            double a = tg_rng_normal(&rng), b = tg_rng_normal(&rng);
            fprintf(f, "r%d,%.9g,%.9g,%d\n", n, a, b, n % 3);
            fprintf(g, "r%d,%.9g,%.9g\n", n, a, b);
            fprintf(h, "r%d,%.9g,%d\n", n, a, n % 3);
        }
    fclose(f);
    fclose(g);
    fclose(h);
    th_run_result r = th_run("train --data rec.csv --seq-column recording --label-column label --target class --hidden 4 "
                             "--steps 3 --quiet --save m.safetensors");
    cr_assert_eq(r.status, 0, "%s", r.err);
    th_run_free(&r);
    r = th_run("predict --model m.safetensors --data rec.csv --out with.csv");
    cr_assert_eq(r.status, 0, "%s", r.err);
    cr_expect(strstr(r.out, "accuracy ") != NULL, "%s", r.out);
    th_run_free(&r);
    r = th_run("predict --model m.safetensors --data new.csv --out without.csv");
    cr_assert_eq(r.status, 0, "predict on a file without labels: %s", r.err);
    cr_expect(strstr(r.out, "predicted 40 sequences of new.csv") != NULL && strstr(r.out, "no labels") != NULL, "%s", r.out);
    th_run_free(&r);
    /* the same rows, the labelled file's with its label column at the end */
    char *a = th_slurp(th_path_in("with.csv")), *b = th_slurp(th_path_in("without.csv"));
    cr_expect(strncmp(a, "index,predicted,p0,p1,p2,label\n", 31) == 0, "%.60s", a);
    cr_expect(strncmp(b, "index,predicted,p0,p1,p2\n", 25) == 0, "%.60s", b);
    int rows = 0;
    char *sa, *sb;
    for (char *la = strtok_r(a, "\n", &sa), *lb = strtok_r(b, "\n", &sb); la && lb;
         la = strtok_r(NULL, "\n", &sa), lb = strtok_r(NULL, "\n", &sb), rows++)
        if (rows > 0) {
            char *comma = strrchr(la, ',');
            cr_assert(comma);
            *comma = 0;
            cr_expect_str_eq(la, lb, "row %d differs", rows);
        }
    cr_expect_eq(rows, 41, "%d lines", rows);
    free(a);
    free(b);
    /* a feature the model reads is still needed */
    r = th_run("predict --model m.safetensors --data nofeat.csv");
    cr_expect_eq(r.status, 2, "a file without feature 'b' was accepted: %s", r.out);
    cr_expect(strstr(r.err, "nofeat.csv has 1 features, the model was trained on 2") != NULL, "%s", r.err);
    th_run_free(&r);
}

/* Data rows of a train --log CSV (lines that start with a digit); *complete says whether the file ends
 * with a newline and every row has the header's 8 fields (the last: lr). */
static int log_rows(const char *name, bool *complete) {
    char *s = th_slurp(th_path_in(name));
    int rows = 0;
    size_t len = strlen(s);
    *complete = len > 0 && s[len - 1] == '\n';
    for (char *l = strtok(s, "\n"); l; l = strtok(NULL, "\n")) {
        if (*l < '0' || *l > '9') continue;
        rows++;
        int commas = 0;
        for (char *p = l; *p; p++) commas += *p == ',';
        if (commas != 7) *complete = false;
    }
    free(s);
    return rows;
}

/* --log with --data writes each epoch's row as the epoch ends (flushed): a run killed (SIGKILL, no exit
 * handlers) right after its first epochs keeps those rows, whole. Without the flush the rows waited in
 * stdio's buffer: nothing was in the file until some 70 rows filled it, and a kill lost the rest. */
Test(data_cli, log_rows_are_written_as_each_epoch_ends) {
    write_sequence_files();
    pid_t pid = fork();
    cr_assert(pid >= 0);
    if (pid == 0) {
        if (chdir(th_dir()) || !freopen("/dev/null", "w", stdout)) _exit(126);
        execl(TG_TAPEGRAD_EXE, TG_TAPEGRAD_EXE, "train", "--data", "x.npy", "--labels", "class.npy", "--target",
              "class", "--hidden", "64", "--epochs", "100000", "--quiet", "--log", "k.csv", (char *)NULL);
        _exit(127);
    }
    bool complete = false;
    int rows = 0;
    for (int k = 0; k < 12000 && rows < 1; k++) { /* up to 60 s (valgrind) for the first row */
        usleep(5000);
        if (access(th_path_in("k.csv"), F_OK) == 0) rows = log_rows("k.csv", &complete);
    }
    kill(pid, SIGKILL);
    int status;
    cr_assert_eq(waitpid(pid, &status, 0), pid);
    cr_assert(WIFSIGNALED(status), "the training ended by itself (status %d)", status);
    rows = log_rows("k.csv", &complete);
    cr_expect(rows >= 1 && rows < 40, "%d rows in the log of a run killed at its first rows: they are not written "
              "as each epoch ends", rows);
    cr_expect(complete, "the killed run's log ends in a partial row");
    char *s = th_slurp(th_path_in("k.csv"));
    cr_expect(strncmp(s, "epoch,step,seconds,train_loss,train_acc,val_loss,val_acc,lr\n", 59) == 0, "%.80s", s);
    free(s);
}

/* --plot with --data: an SVG of the training and validation metric per epoch and the baseline. */
Test(data_cli, plot_shows_both_metrics_per_epoch_and_the_baseline) {
    write_sequence_files();
    th_run_result r = th_run("train --data x.npy --labels class.npy --target class --hidden 8 --epochs 3 --quiet "
                             "--plot p.svg");
    cr_assert_eq(r.status, 0, "%s", r.err);
    cr_expect(strstr(r.out, "wrote p.svg") != NULL, "%s", r.out);
    th_run_free(&r);
    char *svg = th_slurp(th_path_in("p.svg"));
    int lines = 0;
    for (const char *p = svg; (p = strstr(p, "<polyline")); p++) lines++;
    cr_expect(strstr(svg, "<svg") && strstr(svg, "</svg>"), "not an SVG: %.80s", svg);
    cr_expect_eq(lines, 2, "%d curves, expected the training and the validation metric", lines);
    cr_expect(strstr(svg, "train (running mean over the epoch)") && strstr(svg, "validation"), "curve labels missing");
    cr_expect(strstr(svg, "majority class") != NULL, "no baseline label");
    cr_expect(strstr(svg, "epoch") && strstr(svg, "acc (%)"), "axis labels missing");
    free(svg);
}

static void expect_same_files(const char *a, const char *b) {
    char cmd[512];
    snprintf(cmd, sizeof cmd, "cmp -s '%s' '%s'", th_path_in(a), th_path_in(b));
    cr_expect_eq(system(cmd), 0, "%s and %s differ", a, b);
}

/* --epochs 2 --save, then --resume --epochs 4 gives the files of --epochs 4 in one go (the batcher's
 * position, the epoch's running metric and the optimizer are in the checkpoint); also from the middle of
 * an epoch, with dropout and zoneout on a 2-layer GRU. */
Test(data_cli, resume_is_bit_identical_with_data_files) {
    write_sequence_files();
    const char *common = "--data x.npy --labels tags.npy --target tag --hidden 8 --quiet";
    const int e1 = under_valgrind() ? 1 : 2, s1 = under_valgrind() ? 7 : 17; /* valgrind: shorter runs */
    th_run_result r = th_run("train %s --epochs %d --save a.safetensors", common, e1);
    cr_assert_eq(r.status, 0, "%s", r.err);
    th_run_free(&r);
    r = th_run("train --resume a.safetensors --epochs %d --save b.safetensors --quiet", 2 * e1);
    cr_assert_eq(r.status, 0, "%s", r.err);
    th_run_free(&r);
    r = th_run("train %s --epochs %d --save c.safetensors", common, 2 * e1);
    cr_assert_eq(r.status, 0, "%s", r.err);
    th_run_free(&r);
    expect_same_files("b.safetensors", "c.safetensors");
    expect_same_files("b.optim.safetensors", "c.optim.safetensors");
    const char *gru = "--data x.npy --labels value.npy --target value --cell gru --layers 2 --hidden 8 --dropout 0.2 "
                      "--zoneout 0.1 --batch 16 --quiet";
    r = th_run("train %s --steps %d --save d.safetensors", gru, s1); /* 180 / 16: 12 steps per epoch */
    cr_assert_eq(r.status, 0, "%s", r.err);
    th_run_free(&r);
    r = th_run("train --resume d.safetensors --steps %d --save e.safetensors --quiet", 2 * s1 + 6);
    cr_assert_eq(r.status, 0, "%s", r.err);
    th_run_free(&r);
    r = th_run("train %s --steps %d --save f.safetensors", gru, 2 * s1 + 6);
    cr_assert_eq(r.status, 0, "%s", r.err);
    th_run_free(&r);
    expect_same_files("e.safetensors", "f.safetensors");
    expect_same_files("e.optim.safetensors", "f.optim.safetensors");
}

/* --early-stop P: training stops after P epochs without a better validation metric, and the model kept
 * (and saved) is the best epoch's: predict on the validation split gives that epoch's CSV figures. */
Test(data_cli, early_stop_keeps_the_best_epoch) {
    write_sequence_files();
    /* lr 0.05 on a tiny model: the validation MSE soon stops improving */
    th_run_result r = th_run("train --data x.npy --labels value.npy --target value --hidden 8 --epochs 60 --lr 0.05 "
                       "--early-stop 2 --log e.csv --save best.safetensors");
    cr_assert_eq(r.status, 0, "%s", r.err);
    cr_assert(strstr(r.out, "early stop: no better val_mse for 2 epochs") != NULL, "did not stop early:\n%s", r.out);
    long best = (long)number_after(r.out, "the best was epoch ", false);
    cr_expect(strstr(r.out, "kept the model of the best epoch") != NULL, "%s", r.out);
    th_run_free(&r);
    /* the best epoch's row of the CSV */
    char *csv = th_slurp(th_path_in("e.csv"));
    double best_val = NAN;
    int rows = 0;
    for (char *l = strtok(csv, "\n"); l; l = strtok(NULL, "\n")) {
        char *end;
        long e = strtol(l, &end, 10);
        if (end == l) continue;
        rows++;
        if (e == best) {
            for (int c = 0; c < 6; c++) l = strchr(l, ',') + 1;
            best_val = strtod(l, NULL);
        }
    }
    free(csv);
    cr_expect_eq(rows, best + 2, "%d epochs logged, best %ld, patience 2", rows, best);
    r = th_run("predict --model best.safetensors --split val");
    cr_assert_eq(r.status, 0, "%s", r.err);
    double mse = number_after(r.out, "MSE ", false);
    cr_expect(fabs(mse - best_val) < 1e-7 * best_val, "predict MSE %.10g vs the best epoch's %.10g", mse, best_val);
    th_run_free(&r);
}

Test(data_cli, data_argument_errors) {
    write_sequence_files();
    th_expect_usage_error("train --data x.npy --labels class.npy", "--data needs --target", "next, class, tag, value");
    th_expect_usage_error("train --data x.npy --target klass", "unknown --target 'klass'", NULL);
    th_expect_usage_error("train --task adding --labels class.npy", "--labels applies to --data only", NULL);
    th_expect_usage_error("train --task adding --data x.npy --target class", "give --task or --data, not both", NULL);
    th_expect_usage_error("train --data x.npy --labels class.npy --target class --val 0 --early-stop 2",
                          "--early-stop needs a validation split", NULL);
    th_expect_usage_error("train --data x.npy --labels class.npy --target class --val 0", "--val 0 leaves nothing to score",
                          "--test-data");
    th_expect_usage_error("train --data x.npy --labels class.npy --target class --val 0.95", "--val", "out of range");
    th_expect_usage_error("train --data x.npy --labels tags.npy --target class", "tags.npy", "class labels");
    th_expect_usage_error("train --data x.npy --target value", "--target value needs value labels", "--labels");
    th_expect_usage_error("train --data /nonexistent/x.npy --target next", "/nonexistent/x.npy", NULL);
    FILE *f = fopen(th_path_in("bad.npy"), "wb");
    cr_assert(f);
    fputs("\x93NUMPY garbage", f);
    fclose(f);
    th_expect_usage_error("train --data bad.npy --target next", "bad.npy", NULL);
    th_expect_usage_error("train --data x.npy --labels class.npy --target class --test-labels class.npy",
                          "--test-labels needs --test-data", NULL);
}

/* ---- learning-rate schedules (--sched) on data files ------------------------------------------------ */

typedef struct epoch_row { double val_metric, lr; } epoch_row;

/* The rows of an epoch log (epoch,step,seconds,train_loss,train_M,val_loss,val_M,lr). Returns the count. */
static int epoch_rows(const char *name, epoch_row *rows, int max) {
    char *csv = th_slurp(th_path_in(name));
    cr_assert(csv, "no %s", name);
    const char *nl = strchr(csv, '\n');
    cr_assert(nl && nl - csv > 3 && strncmp(nl - 3, ",lr", 3) == 0, "no lr column: %.80s", csv);
    int n = 0;
    for (const char *line = nl; line && line[1] && n < max; line = strchr(line + 1, '\n')) {
        long long e, st;
        double sec, tl, tm, vl;
        cr_assert_eq(sscanf(line + 1, "%lld,%lld,%lf,%lf,%lf,%lf,%lf,%lf", &e, &st, &sec, &tl, &tm, &vl,
                            &rows[n].val_metric, &rows[n].lr), 8, "row %d: %.80s", n, line + 1);
        cr_assert_eq(e, n + 1);
        n++;
    }
    free(csv);
    return n;
}

/* On data files the schedule steps once per epoch (torch's habit): the lr of epoch e is ExponentialLR's
 * lr · γ^(e-1); with --sched-every step it moves every step: epoch e ends at step e · (steps per epoch). */
Test(data_cli, sched_steps_every_epoch_on_data) {
    write_sequence_files();
    const int epochs = under_valgrind() ? 2 : 4;
    th_run_result r = th_run("train --data x.npy --labels class.npy --target class --hidden 4 --epochs %d --lr 0.01 "
                             "--sched exponential:gamma=0.5 --log e.csv --quiet", epochs);
    cr_assert(r.status == 0 || r.status == 1, "status %d: %s", r.status, r.err);
    cr_expect(strstr(r.out, "lr schedule exponential:gamma=0.5, stepped every epoch") != NULL, "%s", r.out);
    th_run_free(&r);
    epoch_row rows[16];
    int n = epoch_rows("e.csv", rows, 16);
    cr_assert_eq(n, epochs);
    for (int e = 1; e <= n; e++)
        cr_expect(fabs(rows[e - 1].lr - 0.01 * pow(0.5, e - 1)) <= 1e-9, "epoch %d: lr %.10g", e, rows[e - 1].lr);
    /* 216 training sequences (--val 0.1), batch 64 (the last short batch kept): 4 steps per epoch */
    r = th_run("train --data x.npy --labels class.npy --target class --hidden 4 --epochs 2 --lr 0.01 --batch 64 "
               "--sched exponential:gamma=0.5 --sched-every step --log s.csv --quiet");
    cr_assert(r.status == 0 || r.status == 1, "status %d: %s", r.status, r.err);
    th_run_free(&r);
    n = epoch_rows("s.csv", rows, 16);
    cr_assert_eq(n, 2);
    for (int e = 1; e <= n; e++) /* the lr of the epoch's last step, step 4e: 0.01 · 0.5^(4e - 1) */
        cr_expect(fabs(rows[e - 1].lr - 0.01 * pow(0.5, 4 * e - 1)) <= 1e-9 * rows[e - 1].lr, "epoch %d: lr %.10g", e,
                  rows[e - 1].lr);
}

/* plateau on the validation metric: an accuracy, so mode max by default; with patience 0 every epoch
 * that does not raise the best validation accuracy (by threshold 1e-4, relative) halves the lr. */
Test(data_cli, plateau_follows_the_validation_metric) {
    write_sequence_files();
    const int epochs = under_valgrind() ? 3 : 10;
    th_run_result r = th_run("train --data x.npy --labels class.npy --target class --hidden 4 --epochs %d --lr 0.02 "
                             "--batch 64 --sched plateau:patience=0,factor=0.5 --log p.csv --quiet", epochs);
    cr_assert(r.status == 0 || r.status == 1, "status %d: %s", r.status, r.err);
    cr_expect(strstr(r.out, "lr schedule plateau:mode=max,factor=0.5,patience=0,") != NULL, "%s", r.out);
    th_run_free(&r);
    epoch_row rows[16];
    int n = epoch_rows("p.csv", rows, 16), cuts = 0;
    cr_assert_eq(n, epochs);
    double best = -INFINITY;
    for (int e = 0; e + 1 < n; e++) {
        bool better = rows[e].val_metric > best * (1 + 1e-4);
        if (better) best = rows[e].val_metric;
        double want = better ? rows[e].lr : rows[e].lr * 0.5;
        cuts += !better;
        cr_expect(fabs(rows[e + 1].lr - want) <= 1e-9 * want, "epoch %d: lr %.10g after val_acc %.6g (best %.6g), "
                  "expected %.10g", e + 2, rows[e + 1].lr, rows[e].val_metric, best, want);
    }
    if (!under_valgrind()) cr_expect(cuts > 0, "no epoch without a better val_acc in %d: the test checks nothing", n);
    th_expect_usage_error("train --data x.npy --labels class.npy --target class --val 0 --test-data x.npy "
                          "--test-labels class.npy --sched plateau", "--sched plateau needs the validation metric",
                          "--val > 0");
    th_expect_usage_error("train --data x.npy --labels class.npy --target class --sched plateau --sched-every step",
                          "--sched plateau steps at the end of each epoch", NULL);
}

/* --epochs 2 --save, --resume --epochs 4 == --epochs 4 with plateau (its best and bad-epoch counters are in
 * the optimizer file), and from the middle of an epoch with a per-step cosine. */
Test(data_cli, resume_is_bit_identical_with_a_schedule_on_data) {
    write_sequence_files();
    const int e1 = under_valgrind() ? 1 : 2;
    const char *common = "--data x.npy --labels class.npy --target class --hidden 8 --batch 32 --lr 0.02 "
                         "--sched plateau:patience=0,factor=0.5 --quiet";
    th_run_result r = th_run("train %s --epochs %d --save a.safetensors", common, e1);
    cr_assert(r.status == 0 || r.status == 1, "%s", r.err);
    th_run_free(&r);
    r = th_run("train --resume a.safetensors --epochs %d --save b.safetensors --quiet", 2 * e1);
    cr_assert(r.status == 0 || r.status == 1, "%s", r.err);
    th_run_free(&r);
    r = th_run("train %s --epochs %d --save c.safetensors", common, 2 * e1);
    cr_assert(r.status == 0 || r.status == 1, "%s", r.err);
    th_run_free(&r);
    expect_same_files("b.safetensors", "c.safetensors");
    expect_same_files("b.optim.safetensors", "c.optim.safetensors");
    const char *cos = "--data x.npy --labels value.npy --target value --hidden 8 --batch 32 "
                      "--sched cosine:T_max=40,eta_min=0.0001 --sched-every step --quiet";
    r = th_run("train %s --steps 10 --save d.safetensors", cos); /* 7 steps per epoch: stops in epoch 2 */
    cr_assert_eq(r.status, 0, "%s", r.err);
    th_run_free(&r);
    r = th_run("train --resume d.safetensors --steps 24 --save e.safetensors --quiet");
    cr_assert_eq(r.status, 0, "%s", r.err);
    th_run_free(&r);
    r = th_run("train %s --steps 24 --save f.safetensors", cos);
    cr_assert_eq(r.status, 0, "%s", r.err);
    th_run_free(&r);
    expect_same_files("e.safetensors", "f.safetensors");
    expect_same_files("e.optim.safetensors", "f.optim.safetensors");
}

Test(data_cli, predict_errors) {
    write_sequence_files();
    th_run_result r = th_run("train --data x.npy --labels class.npy --target class --hidden 4 --steps 2 --quiet --save m.safetensors");
    cr_assert_eq(r.status, 0, "%s", r.err);
    th_run_free(&r);
    r = th_run("train --task adding --seq 5 --hidden 4 --steps 2 --quiet --save adding.safetensors");
    cr_assert_eq(r.status, 0, "%s", r.err);
    th_run_free(&r);
    th_expect_usage_error("predict", "--model is required", NULL);
    th_expect_usage_error("predict --model m.safetensors --data x3.npy", "x3.npy has 3 features",
                          "the model was trained on 2");
    th_expect_usage_error("predict --model adding.safetensors --data x.npy", "trained on task adding",
                          "predict needs a model from 'train --data'");
    th_expect_usage_error("predict --model m.safetensors --out p.txt", "--out must end in .csv or .npy", NULL);
    th_expect_usage_error("predict --model m.safetensors --split middle", "--split must be all, val, train or test", NULL);
    th_expect_usage_error("predict --model m.safetensors --split test", "trained without --test-data", NULL);
    th_expect_usage_error("predict --model m.safetensors --data /nonexistent.npy", "cannot read data '/nonexistent.npy'", NULL);
    th_expect_usage_error("predict --model m.safetensors --split val --data x.npy", "leave out --data", NULL);
}
