/* tests/test_eval.c - the command's evaluation (tools/tasks.c task_evaluate) in pieces (issue 18.7).
 *
 * What is checked:
 *   - the metric evaluated in pieces of 256 steps (the state carried across) over the whole test batch
 *     equals, bit for bit, one forward over the whole sequences, computed here from the same test set
 *     (TASK_TEST_SEED, eval_adding's 8 batches of 250); in pieces of 7 and 64 sequences it equals it to
 *     1e-12 (F64: only the kernels' summation order over the batch rows differs), for a last-step task
 *     (adding) and an every-step one (copy, via two piece sizes against each other);
 *   - memory: evaluating the adding problem at T = 3000 (12 windows) in a child process whose address
 *     space is capped at its size before the evaluation + EVAL_BOUND_MB succeeds; keeping every step's
 *     results until the end (one whole forward, what evaluation did before) needs several times more
 *     and fails there (checked by making the window as long as the sequence).
 * The no-tape part: every piece runs under tg_no_grad_begin and ends with tg_tape_reset, so nothing is
 * recorded and nothing is left: the tape is empty after task_evaluate (checked).
 * Data tasks (`train --data`, tools/datatask.c data_predict) honour --eval-batch too (issue 10):
 *   - the validation metric and loss of a CSV of 150 sequences of 3..40 steps are the same in pieces of
 *     1, 7 and 64 sequences as in one piece of all (accuracy exactly, loss to 1e-12 in F64);
 *   - memory: evaluating 900 sequences of 400 steps in pieces of 8 raises the peak resident set by less
 *     than DATA_BOUND_MB, one piece of all 900 (11.5 MB of padded F64 input) by more than 3x that (the
 *     test fails when data_predict ignores eval_batch: checked). */
#include <criterion/criterion.h>

#include <malloc.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <tapegrad/tapegrad.h>

#include "helpers.h"
#include "tools/datatask.h"
#include "tools/tasks.h"

#define EVAL_BOUND_MB 128
#define DATA_BOUND_MB 3

static task *make_task(const char *name, long seq, tg_dtype dt, int64_t eval_batch) {
    char err[512];
    task *t = task_new(name, &(task_opts){.seq = seq, .dtype = dt, .eval_batch = eval_batch}, err, sizeof err);
    cr_assert_not_null(t, "%s", err);
    return t;
}

static tg_model *make_model(const task *t, const char *cell, int64_t H, tg_dtype dt) {
    char err[512];
    tg_model_config mc = {.input_size = task_input_size(t), .hidden_size = H, .output_size = task_output_size(t),
                          .layers = 2, .dtype = dt, .zoneout = 0.1};
    snprintf(mc.cell, sizeof mc.cell, "%s", cell);
    tg_model *m = tg_model_new(&mc, 5, err, sizeof err);
    cr_assert_not_null(m, "%s", err);
    return m;
}

static double metric_of(const char *name, long seq, int64_t eval_batch, const char *cell) {
    task *t = make_task(name, seq, TG_F64, eval_batch);
    tg_model *m = make_model(t, cell, 6, TG_F64);
    task_eval ev;
    cr_assert_eq(task_evaluate(t, m, false, &ev), 0, "%s", tg_last_error());
    cr_expect_eq(tg_tape_records(), 0, "evaluation left records on the tape");
    cr_expect_eq(tg_tape_tensors(), 0, "evaluation left results on the tape");
    tg_model_free(m);
    task_free(t);
    return ev.metric;
}

/* eval_adding's metric computed the old way: each test batch through one whole forward. */
static double adding_one_forward(long seq, const char *cell) {
    task *t = make_task("adding", seq, TG_F64, 0);
    tg_model *m = make_model(t, cell, 6, TG_F64);
    tg_rng rng;
    tg_rng_seed(&rng, TASK_TEST_SEED);
    double se = 0;
    int64_t n = 0;
    for (int rep = 0; rep < 8; rep++) {
        task_batch b;
        cr_assert_eq(task_make_batch(t, &rng, 250, &b), 0);
        tg_no_grad_begin();
        tg_tensor *p = tg_model_forward(m, b.x, false, NULL, NULL);
        cr_assert_not_null(p, "%s", tg_last_error());
        for (int64_t i = 0; i < b.B; i++) {
            double e = tg_get(p, i) - tg_get(b.target, i);
            se += e * e;
            n++;
        }
        tg_no_grad_end();
        tg_tape_reset();
        task_batch_clear(&b);
    }
    tg_model_free(m);
    task_free(t);
    return se / (double)n;
}

Test(eval, pieces_give_the_metric_of_one_whole_forward) {
    const char *cells[] = {"lstm", "gru"};
    for (int c = 0; c < 2; c++) {
        double ref = adding_one_forward(300, cells[c]); /* 2 windows of 256 steps: 256, 44 */
        double whole = metric_of("adding", 300, 0, cells[c]);
        cr_expect_eq(whole, ref, "%s: windows over the whole batch %.17g, one forward %.17g", cells[c], whole, ref);
        int64_t sizes[] = {7, 64};
        for (int k = c; k < 2; k++) { /* lstm: both; gru: 64 */
            double v = metric_of("adding", 300, sizes[k], cells[c]);
            cr_expect(fabs(v - ref) <= 1e-12 * fabs(ref), "%s, pieces of %lld: %.17g vs %.17g", cells[c],
                      (long long)sizes[k], v, ref);
        }
    }
    /* every step scored: copy with T + 20 = 320 steps (two windows) */
    double a = metric_of("copy", 300, 0, "lstm"), b = metric_of("copy", 300, 9, "lstm");
    cr_expect(fabs(a - b) <= 1e-12 * fabs(a), "copy: whole batch %.17g, pieces of 9 %.17g", a, b);
}

/* Bytes of address space this process has now (VmSize). */
static long vm_size_kb(void) {
    FILE *f = fopen("/proc/self/status", "r");
    long kb = -1;
    char line[256];
    while (f && fgets(line, sizeof line, f))
        if (sscanf(line, "VmSize: %ld kB", &kb) == 1) break;
    if (f) fclose(f);
    return kb;
}

Test(eval, memory_is_bounded_by_the_piece_not_the_sequence) {
    if (vm_size_kb() < 0) cr_skip_test("no /proc/self/status");
    pid_t pid = fork();
    cr_assert(pid >= 0);
    if (pid == 0) {
        tg_set_num_threads(1);
        task *t = make_task("adding", 3000, TG_F32, 0);   /* pieces of the whole test batch, 250 */
        tg_model *m = make_model(t, "lstm", 4, TG_F32);
        struct rlimit rl;
        rl.rlim_cur = rl.rlim_max = (rlim_t)(vm_size_kb() + EVAL_BOUND_MB * 1024L) * 1024;
        if (setrlimit(RLIMIT_AS, &rl)) _exit(4);
        task_eval ev;
        int rc = task_evaluate(t, m, false, &ev);
        _exit(rc == 0 ? 0 : 3);
    }
    int status;
    cr_assert_eq(waitpid(pid, &status, 0), pid);
    cr_expect(WIFEXITED(status) && WEXITSTATUS(status) == 0,
              "evaluating adding at T = 3000 (batch 250) did not fit in %d MB above the process's size "
              "(status %d): evaluation keeps more than a window of steps", EVAL_BOUND_MB, status);
}

/* ---- data tasks: --eval-batch applies to the validation and test evaluation ----------------------- */

/* A task "data" (target class) over a file in the test's directory, evaluated on its validation split. */
static task *make_data_task(const char *file, double val, int64_t eval_batch) {
    char err[512];
    data_opts o = {.path = th_path_in(file), .target = "class", .val = val, .seed = 3, .dtype = TG_F64,
                   .label_column = "label", .seq_column = "seq"};
    if (strstr(file, ".npy")) o.label_column = o.seq_column = NULL, o.labels = th_path_in("ybig.npy");
    task *t = task_new("data", &(task_opts){.dtype = TG_F64, .eval_batch = eval_batch, .data = &o}, err, sizeof err);
    cr_assert_not_null(t, "%s", err);
    return t;
}

Test(eval, data_pieces_give_the_same_metric, .init = th_dir_make, .fini = th_dir_remove) {
    FILE *f = fopen(th_path_in("seqs.csv"), "w");
    cr_assert(f);
    fprintf(f, "seq,a,b,label\n");
    for (int n = 0; n < 150; n++)
        for (int t = 0; t < 3 + (n * 7) % 38; t++) /* lengths 3..40: every piece is padded differently */
            fprintf(f, "s%d,%.6f,%.6f,%d\n", n, sin(0.37 * n + t), cos(0.11 * n * t), n % 3);
    fclose(f);
    double acc[4], loss[4];
    const int64_t sizes[4] = {1, 7, 64, 1000};
    for (int k = 0; k < 4; k++) {
        task *t = make_data_task("seqs.csv", 0.5, sizes[k]);
        tg_model *m = make_model(t, "gru", 6, TG_F64);
        task_eval ev;
        cr_assert_eq(task_evaluate(t, m, false, &ev), 0, "%s", tg_last_error());
        acc[k] = ev.metric, loss[k] = ev.loss;
        tg_model_free(m);
        task_free(t);
    }
    for (int k = 0; k < 3; k++) {
        cr_expect_eq(acc[k], acc[3], "pieces of %lld: accuracy %.17g, one piece %.17g", (long long)sizes[k], acc[k], acc[3]);
        cr_expect(fabs(loss[k] - loss[3]) <= 1e-12 * fabs(loss[3]), "pieces of %lld: loss %.17g, one piece %.17g",
                  (long long)sizes[k], loss[k], loss[3]);
    }
}

/* kB of this process's peak resident set (VmHWM) or current one (VmRSS); -1 if unknown. */
static long status_kb(const char *key) {
    FILE *f = fopen("/proc/self/status", "r");
    long kb = -1;
    char line[256], fmt[64];
    snprintf(fmt, sizeof fmt, "%s: %%ld kB", key);
    while (f && fgets(line, sizeof line, f))
        if (sscanf(line, fmt, &kb) == 1) break;
    if (f) fclose(f);
    return kb;
}

/* How far evaluating the validation split of xbig.npy (900 of 1000 sequences, 400 steps, 4 features,
 * F64) in pieces of eval_batch raises the peak resident set above where it starts, in kB; -1 when the
 * peak cannot be reset (/proc/self/clear_refs). The resident set is the measure, not the address
 * space: a thread's malloc arena reserves 64 MB at once, so an address-space cap does not see a piece. */
static long data_eval_peak_kb(int64_t eval_batch) {
    task *t = make_data_task("xbig.npy", 0.9, eval_batch);
    tg_model *m = make_model(t, "lstm", 4, TG_F64);
    tg_pool_trim(); /* cached buffers and free heap pages back to the system: the start is the floor */
    malloc_trim(0);
    FILE *f = fopen("/proc/self/clear_refs", "w");
    bool reset = f && fputs("5", f) >= 0; /* 5: reset the peak resident set to the current one */
    if (f && fclose(f)) reset = false;
    long start = status_kb("VmRSS");
    task_eval ev;
    cr_assert_eq(task_evaluate(t, m, false, &ev), 0, "%s", tg_last_error());
    long peak = status_kb("VmHWM");
    tg_model_free(m);
    task_free(t);
    return reset && start >= 0 && peak >= 0 ? peak - start : -1;
}

Test(eval, data_memory_is_bounded_by_eval_batch, .init = th_dir_make, .fini = th_dir_remove) {
    if (vm_size_kb() < 0) cr_skip_test("no /proc/self/status");
    enum { N = 1000, T = 400, I = 4 };
    double *x = malloc(sizeof(double) * N * T * I);
    int64_t *y = malloc(sizeof(int64_t) * N);
    cr_assert(x && y);
    for (int k = 0; k < N * T * I; k++) x[k] = sin(0.001 * k);
    for (int n = 0; n < N; n++) y[n] = n % 2;
    th_write_npy("xbig.npy", "<f8", x, sizeof *x, 3, (int64_t[]){N, T, I});
    th_write_npy("ybig.npy", "<i8", y, sizeof *y, 1, (int64_t[]){N});
    free(x);
    free(y);
    tg_set_num_threads(1);
    long small = data_eval_peak_kb(8), whole = data_eval_peak_kb(N);
    if (small < 0 || whole < 0) cr_skip_test("the peak resident set cannot be reset here");
    cr_expect(small < DATA_BOUND_MB * 1024L, "evaluating 900 sequences of %d steps in pieces of 8 raised the peak "
              "resident set by %ld kB (bound %d MB): data_predict keeps more than a piece", T, small, DATA_BOUND_MB);
    cr_expect(whole > 3 * DATA_BOUND_MB * 1024L, "one piece of all 900 sequences (11.5 MB of padded input) raised the "
              "peak by only %ld kB: the measure does not see a piece", whole);
}
