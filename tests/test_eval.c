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
 * recorded and nothing is left: the tape is empty after task_evaluate (checked). */
#include <criterion/criterion.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <tapegrad/tapegrad.h>

#include "tools/tasks.h"

#define EVAL_BOUND_MB 128

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
