/* tests/test_cli.c - the `tapegrad` command as a user runs it (the built binary, TG_TAPEGRAD_EXE):
 *   - bad arguments to every subcommand (unknown option, missing value, out-of-range value, unreadable
 *     or corrupt file, unknown task / cell) give exit status 2 and a message naming the problem;
 *   - every task trains to better than its baseline in a short run (small sizes, about a second each);
 *   - a checkpoint resumes bit for bit: N steps + save + resume to 2N == 2N steps in one go;
 *   - bench prints a valid JSON object with every field as its last line;
 *   - compare writes its SVG and CSV; train writes its CSV log and SVG curve; sample prints text;
 *   - the main job (no arguments) passes.
 * Every test runs the binary in its own temporary directory. */
#include <criterion/criterion.h>
#include <ctype.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <tapegrad/tapegrad.h>

#include "helpers.h"
#include "tools/tasks.h"
#include "tools/datatask.h"
#include "tools/trainer.h"

TestSuite(cli, .init = th_dir_make, .fini = th_dir_remove);

/* ---- bad arguments ------------------------------------------------------------------------------- */

Test(cli, unknown_option_every_subcommand) {
    const char *cmds[] = {"train", "sample", "bench", "compare", "demo", "grad", "gradcheck"};
    for (size_t i = 0; i < sizeof cmds / sizeof cmds[0]; i++) {
        char args[128];
        snprintf(args, sizeof args, "%s --bogus-option 1", cmds[i]);
        th_expect_usage_error(args, "unknown option '--bogus-option'", "usage: tapegrad");
    }
    th_expect_usage_error("no-such-command", "unknown command 'no-such-command'", NULL);
}

/* ---- docs made from tables ------------------------------------------------------------------------ */

/* docs/cells.md shows `tapegrad cells --markdown` between two marker lines: the documented table is
 * the registry's, and every cell the registry knows is also named in the README. */
Test(cli, docs_cells_table_is_the_registrys) {
    char path[1024];
    snprintf(path, sizeof path, "%s/docs/cells.md", TG_SOURCE_DIR);
    char *doc = th_slurp(path);
    cr_assert_not_null(doc, "cannot read %s", path);
    const char *begin_mark = "<!-- tapegrad cells --markdown: begin -->\n", *end_mark = "<!-- tapegrad cells --markdown: end -->";
    char *b = strstr(doc, begin_mark), *e = b ? strstr(b, end_mark) : NULL;
    cr_assert(b && e, "%s lacks the marker lines around the cells table", path);
    b += strlen(begin_mark);
    *e = '\0';
    th_run_result r = th_run("cells --markdown");
    cr_assert_eq(r.status, 0, "%s", r.err);
    cr_expect_str_eq(b, r.out, "docs/cells.md's table differs from `tapegrad cells --markdown`: paste the command's "
                               "output between the markers");
    snprintf(path, sizeof path, "%s/README.md", TG_SOURCE_DIR);
    char *readme = th_slurp(path);
    cr_assert_not_null(readme, "cannot read %s", path);
    for (int i = 0; i < tg_cell_count(); i++) {
        char quoted[64];
        snprintf(quoted, sizeof quoted, "`%s`", tg_cell_at(i)->name);
        cr_expect(strstr(readme, quoted) != NULL, "README.md does not name the cell %s", quoted);
    }
    free(readme);
    th_run_free(&r);
    free(doc);
}

/* The conformance command's contract: any bad input is ONE line on stderr, argument mistakes included. */
Test(cli, grad_argument_errors_are_one_line) {
    const char *bad[] = {"grad --cell lstm --case c.st --out o.st --bogus", "grad --cell lstm --case c.st --out o.st extra",
                         "grad --case c.st --out o.st --cell", "grad --cell lstm --case c.st --out o.st --manual=1",
                         "grad --cell lstm --out o.st", "grad --cell lstm --case c.st"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        th_run_result r = th_run("%s", bad[i]);
        cr_expect_eq(r.status, 2, "'%s' exited %d", bad[i], r.status);
        size_t lines = 0;
        for (const char *p = r.err; *p; p++) lines += *p == '\n';
        cr_expect_eq(lines, 1, "'%s': %zu lines on stderr: %s", bad[i], lines, r.err);
        cr_expect(strstr(r.err, "tapegrad grad: ") == r.err, "'%s': %s", bad[i], r.err);
        th_run_free(&r);
    }
}

Test(cli, help_on_every_subcommand) {
    const char *cmds[] = {"train", "sample", "bench", "compare", "demo"};
    for (size_t i = 0; i < sizeof cmds / sizeof cmds[0]; i++) {
        th_run_result r = th_run("%s --help", cmds[i]);
        cr_expect_eq(r.status, 0, "%s --help exited %d", cmds[i], r.status);
        cr_expect(strstr(r.out, "usage: tapegrad") != NULL, "%s --help: %s", cmds[i], r.out);
        th_run_free(&r);
    }
}

Test(cli, missing_values) {
    th_expect_usage_error("train --task", "option --task needs a value", NULL);
    th_expect_usage_error("train --task adding --steps", "option --steps needs a value", NULL);
    th_expect_usage_error("sample --model", "option --model needs a value", NULL);
    th_expect_usage_error("bench --H", "option --H needs a value", NULL);
    th_expect_usage_error("compare --task adding --cells", "option --cells needs a value", NULL);
    th_expect_usage_error("train", "--task is required", NULL);
    th_expect_usage_error("sample", "--model is required", NULL);
    th_expect_usage_error("compare", "--task is required", NULL);
}

Test(cli, out_of_range_and_malformed_values) {
    th_expect_usage_error("train --task adding --layers 0", "--layers", "out of range");
    th_expect_usage_error("train --task adding --lr -1", "--lr", "out of range");
    th_expect_usage_error("train --task adding --hidden abc", "--hidden", "not an integer");
    th_expect_usage_error("train --task adding --forget-bias x", "--forget-bias", "not a number");
    th_expect_usage_error("train --task adding --optim adamx", "unknown optimizer 'adamx'", NULL);
    th_expect_usage_error("train --task adding --dtype f16", "--dtype", NULL);
    th_expect_usage_error("train --task adding --seq 1", "--seq 1 is out of range", NULL);
    th_expect_usage_error("train --task nope", "unknown task 'nope'", NULL);
    th_expect_usage_error("train --task adding --cell nope", "unknown cell 'nope'", NULL);
    th_expect_usage_error("train --task adding --cell rnn_tanh --forget-bias 1", "no forget gate", NULL);
    th_expect_usage_error("sample --model x --temperature 0", "--temperature", "out of range");
    th_expect_usage_error("bench --H 0", "--H", "out of range");
    th_expect_usage_error("bench --impl fast", "--impl must be tape or manual", NULL);
    th_expect_usage_error("bench --cell nope", "unknown cell 'nope'", NULL);
    th_expect_usage_error("bench --cell mgu --impl manual", "--impl manual exists for", NULL);
    th_expect_usage_error("compare --task adding --seeds 0", "--seeds", "out of range");
    th_expect_usage_error("compare --task adding --cells lstm,nope", "unknown cell 'nope'", NULL);
    th_expect_usage_error("compare --task adding --forget-bias 1,x", "--forget-bias", NULL);
    th_expect_usage_error("compare --task nope", "unknown task 'nope'", NULL);
}

Test(cli, unreadable_and_corrupt_files) {
    th_expect_usage_error("train --task adding --resume /nonexistent/ckpt.safetensors", "cannot read checkpoint",
                          "/nonexistent/ckpt.safetensors");
    th_expect_usage_error("sample --model /nonexistent/m.safetensors", "cannot read model", "/nonexistent/m.safetensors");
    th_expect_usage_error("train --task charlm --text /nonexistent/t.txt", "cannot read text file", "/nonexistent/t.txt");
    th_expect_usage_error("compare --task charlm --text /nonexistent/t.txt", "cannot read text file", NULL);
    th_expect_usage_error("train --task adding --save /nonexistent/dir/a.safetensors", "cannot write", NULL);
    th_expect_usage_error("train --task adding --log /nonexistent/dir/a.csv", "cannot write", NULL);
    FILE *f = fopen(th_path_in("garbage.safetensors"), "wb");
    cr_assert(f);
    fputs("this is not a safetensors file at all", f);
    fclose(f);
    th_expect_usage_error("sample --model garbage.safetensors", "garbage.safetensors", NULL);
    th_expect_usage_error("train --resume garbage.safetensors", "garbage.safetensors", NULL);
    f = fopen(th_path_in("tiny.txt"), "wb");
    fputs("too short", f);
    fclose(f);
    th_expect_usage_error("train --task charlm --text tiny.txt", "too short", NULL);
}

/* ---- every task beats its baseline in a short run ------------------------------------------------- */

static void expect_beats(const char *args) {
    th_run_result r = th_run("train %s --quiet", args);
    cr_expect_eq(r.status, 0, "train %s exited %d: %s", args, r.status, r.err);
    cr_expect(strstr(r.out, "beats the baseline") != NULL, "train %s did not beat its baseline:\n%s", args, r.out);
    th_run_free(&r);
}

/* One short run per task (each its own Test, so they run in parallel); every task the table knows
 * must have one (every_task_has_a_beat_run reads the list from `train --help`, made from the rows). */
static const struct { const char *task, *args; } beat_runs[] = {
    {"arith", "--task arith --steps 400"},
    {"pattern", "--task pattern --seq 16 --steps 300"},
    {"adding", "--task adding --seq 10 --steps 500"},
    {"copy", "--task copy --seq 2 --hidden 32 --steps 1000"},
    {"binadd", "--task binadd --steps 300"},
    {"charlm", "--task charlm --hidden 64 --seq 32 --steps 200"},
};
#define N_BEAT_RUNS (int)(sizeof beat_runs / sizeof beat_runs[0])
Test(cli, arith_beats_baseline) { expect_beats(beat_runs[0].args); }
Test(cli, pattern_beats_baseline) { expect_beats(beat_runs[1].args); }
Test(cli, adding_beats_baseline) { expect_beats(beat_runs[2].args); }
Test(cli, copy_beats_baseline) { expect_beats(beat_runs[3].args); }
Test(cli, binadd_beats_baseline) { expect_beats(beat_runs[4].args); }
Test(cli, charlm_beats_baseline) { expect_beats(beat_runs[5].args); }

Test(cli, every_task_has_a_beat_run) {
    th_run_result r = th_run("train --help");
    cr_assert_eq(r.status, 0);
    const char *line = strstr(r.out, "\n  --task ");
    cr_assert_not_null(line, "train --help has no --task line: %s", r.out);
    line += 3;
    char names[512];
    const char *eol = strchr(line, '\n');
    size_t n = eol ? (size_t)(eol - line) : strlen(line);
    snprintf(names, sizeof names, "%.*s", (int)n, line);
    char *tok = strtok(names + strlen("--task"), " |");
    int seen = 0;
    for (; tok; tok = strtok(NULL, " |")) {
        if (!strcmp(tok, "S")) continue;  /* the option's value letter */
        if (tok[0] == '(') break;         /* "(default ...)" */
        if (!strcmp(tok, "data")) continue; /* the user's files: tests/test_data_cli.c trains each target */
        bool found = false;
        for (int i = 0; i < N_BEAT_RUNS && !found; i++) found = !strcmp(beat_runs[i].task, tok);
        cr_expect(found, "task %s has no short run in tests/test_cli.c's beat_runs[]", tok);
        seen++;
    }
    cr_expect_geq(seen, N_BEAT_RUNS, "read %d task names from: %.*s", seen, (int)n, line);
    th_run_free(&r);
}

/* A row left without a field gets 0 / NULL silently: a margin of 0 makes train's "beats the baseline"
 * mean "no worse than it" ("at least 0% below the baseline's"). Every row must say all of them. */
Test(cli, every_task_row_has_its_mandatory_fields) {
    int n = task_row_count();
    cr_assert_geq(n, N_BEAT_RUNS, "the table has %d rows, beat_runs[] %d", n, N_BEAT_RUNS);
    for (int i = 0; i < n; i++) {
        task_row_view r = task_row_at(i);
        cr_assert(r.name && r.name[0], "tools/tasks.c g_tasks[%d] has no .name", i);
        cr_expect(r.margin > 0 && r.margin < 1, "task %s: .margin = %g, must be > 0 and < 1 (tools/tasks.c)",
                  r.name, r.margin);
        cr_expect(r.setup, "task %s has no .setup (tools/tasks.c)", r.name);
        cr_expect(r.gen, "task %s has no .gen (tools/tasks.c)", r.name);
        cr_expect(r.eval, "task %s has no .eval (tools/tasks.c)", r.name);
        cr_expect(r.baseline_desc && r.baseline_desc[0], "task %s has no .baseline_desc (tools/tasks.c)", r.name);
        cr_expect(r.metric && r.metric[0], "task %s has no .metric (tools/tasks.c)", r.name);
    }
}

/* The margin is a guard that can fail: one step of training "beats" chance by 1.7 points, not by 50 %. */
Test(cli, one_step_does_not_beat_the_baseline_by_its_margin) {
    th_run_result r = th_run("train --task pattern --steps 1 --quiet");
    cr_expect(strstr(r.out, "does NOT beat the baseline") != NULL, "%s", r.out);
    cr_expect(strstr(r.out, "margin: the error rate (1 - accuracy) at least 50% below") != NULL, "%s", r.out);
    th_run_free(&r);
}

/* ---- checkpoints ----------------------------------------------------------------------------------- */

static void expect_same_tensors(const char *a, const char *b) {
    tg_st_file *fa = tg_st_load(th_path_in(a)), *fb = tg_st_load(th_path_in(b));
    cr_assert(fa && fb, "cannot load %s / %s: %s", a, b, tg_last_error());
    cr_assert_eq(tg_st_count(fa), tg_st_count(fb));
    for (int i = 0; i < tg_st_count(fa); i++) {
        const char *name = tg_st_name_at(fa, i);
        tg_tensor *ta = tg_st_tensor_at(fa, i), *tb = tg_st_get(fb, name);
        cr_assert(tb, "%s lacks '%s'", b, name);
        cr_assert(tg_same_shape(ta, tb) && tg_dtype_of(ta) == tg_dtype_of(tb));
        size_t bytes = (size_t)tg_numel(ta) * tg_itemsize(tg_dtype_of(ta));
        cr_expect(memcmp(tg_cdata(ta), tg_cdata(tb), bytes) == 0, "'%s' differs between %s and %s", name, a, b);
    }
    tg_st_free(fa);
    tg_st_free(fb);
}

static void resume_case(const char *task_args) {
    th_run_result r = th_run("train %s --steps 30 --save half.safetensors --quiet", task_args);
    cr_assert_eq(r.status, 0, "%s", r.err);
    th_run_free(&r);
    r = th_run("train %s --resume half.safetensors --steps 60 --save resumed.safetensors --quiet", task_args);
    cr_assert_eq(r.status, 0, "%s", r.err);
    cr_expect(strstr(r.out, "resumed from half.safetensors at step 30") != NULL, "%s", r.out);
    th_run_free(&r);
    r = th_run("train %s --steps 60 --save straight.safetensors --quiet", task_args);
    cr_assert_eq(r.status, 0, "%s", r.err);
    th_run_free(&r);
    expect_same_tensors("resumed.safetensors", "straight.safetensors");
    expect_same_tensors("resumed.optim.safetensors", "straight.optim.safetensors");
}

Test(cli, resume_is_bit_identical) { resume_case("--task adding --seq 20 --hidden 16"); }
Test(cli, resume_is_bit_identical_charlm_rmsprop) {
    resume_case("--task charlm --seq 16 --hidden 16 --optim rmsprop --batch 8");
}
Test(cli, resume_is_bit_identical_gru_two_layers_two_threads, .timeout = 400) {
    resume_case("--task copy --seq 3 --cell gru --layers 2 --hidden 16 --threads 2");
}

/* dropout and zoneout masks come from the saved data generator, so resuming stays exact */
Test(cli, resume_is_bit_identical_lstm_dropout_zoneout) {
    resume_case("--task adding --seq 12 --hidden 16 --layers 2 --dropout 0.2 --zoneout 0.1");
}

Test(cli, zoneout_changes_training_and_is_kept_by_a_checkpoint) {
    th_run_result r = th_run("train --task adding --seq 10 --hidden 8 --steps 20 --save plain.safetensors --quiet");
    cr_assert_eq(r.status, 0, "%s", r.err);
    th_run_free(&r);
    r = th_run("train --task adding --seq 10 --hidden 8 --steps 20 --zoneout 0.3 --save zo.safetensors --quiet");
    cr_assert_eq(r.status, 0, "%s", r.err);
    cr_expect(strstr(r.out, "zoneout 0.3 on every state") != NULL, "%s", r.out);
    th_run_free(&r);
    tg_st_file *a = tg_st_load(th_path_in("plain.safetensors")), *b = tg_st_load(th_path_in("zo.safetensors"));
    cr_assert(a && b);
    cr_expect_str_eq(tg_st_meta(b, "zoneout"), "0.29999999999999999");
    tg_tensor *wa = tg_st_get(a, "rnn.weight_hh_l0"), *wb = tg_st_get(b, "rnn.weight_hh_l0");
    cr_assert(wa && wb);
    cr_expect(memcmp(tg_cdata(wa), tg_cdata(wb), (size_t)tg_numel(wa) * tg_itemsize(tg_dtype_of(wa))) != 0,
              "zoneout did not change the training");
    tg_st_free(a);
    tg_st_free(b);
    th_expect_usage_error("train --resume zo.safetensors --zoneout 0.1 --steps 30", "--zoneout 0.1 differs", NULL);
    th_expect_usage_error("train --task adding --zoneout 1.5", "--zoneout", "out of range");
    th_expect_usage_error("train --task adding --dropout 1", "--dropout", "out of range");
}

Test(cli, resume_refuses_other_settings) {
    th_run_result r = th_run("train --task adding --seq 10 --hidden 8 --steps 5 --save a.safetensors --quiet");
    cr_assert_eq(r.status, 0, "%s", r.err);
    th_run_free(&r);
    th_expect_usage_error("train --resume a.safetensors --cell gru --steps 10", "--cell gru differs", NULL);
    th_expect_usage_error("train --resume a.safetensors --hidden 9 --steps 10", "--hidden 9 differs", NULL);
    th_expect_usage_error("train --resume a.safetensors --steps 3", "already at step 5", NULL);
}

/* ---- learning-rate schedules (--sched) ------------------------------------------------------------ */

/* The lr column of a step log (step,loss,seconds,lr): lr[k] of step k + 1. Returns the row count. */
static int log_lrs(const char *name, double *lr, int max) {
    char *csv = th_slurp(th_path_in(name));
    cr_assert(csv, "no %s", name);
    cr_assert(strncmp(csv, "step,loss,seconds,lr\n", 21) == 0, "%.60s", csv);
    int n = 0;
    for (char *line = strchr(csv, '\n'); line && line[1] && n < max; line = strchr(line + 1, '\n')) {
        long long st;
        double loss, sec;
        cr_assert_eq(sscanf(line + 1, "%lld,%lf,%lf,%lf", &st, &loss, &sec, &lr[n]), 4, "row %d: %.60s", n, line + 1);
        cr_assert_eq(st, n + 1, "row %d is step %lld (a row per step expected)", n, st);
        n++;
    }
    free(csv);
    return n;
}

/* Every step's lr in the log is the schedule's closed form (optim.h) at that step's epoch e = step - 1
 * (the schedules step after every step on the synthetic tasks). */
Test(cli, sched_lr_follows_the_closed_form) {
    const double pi = 3.14159265358979323846;
    struct { const char *spec; int kind; } cases[] = {
        {"step:step_size=7,gamma=0.5", 0},
        {"cosine:T_max=40,eta_min=0.001", 1},
        {"linear:start_factor=0.25,total_iters=8", 2},
        {"multistep:milestones=5,12,30,gamma=0.2", 3},
        {"warm_restarts:T_0=5,T_mult=2,eta_min=0.002", 4},
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        th_run_result r = th_run("train --task adding --seq 10 --hidden 8 --steps 40 --lr 0.01 --sched %s --log s.csv "
                                 "--quiet", cases[c].spec);
        cr_assert_eq(r.status, 0, "%s: %s", cases[c].spec, r.err);
        cr_expect(strstr(r.out, "lr schedule ") && strstr(r.out, "stepped every step"), "%s", r.out);
        th_run_free(&r);
        double lr[64];
        int n = log_lrs("s.csv", lr, 64);
        cr_assert_eq(n, 40, "%s: %d rows", cases[c].spec, n);
        for (int k = 0; k < n; k++) {
            double e = k, want = 0;
            switch (cases[c].kind) {
            case 0: want = 0.01 * pow(0.5, floor(e / 7)); break;
            case 1: want = 0.001 + (0.01 - 0.001) * (1 + cos(pi * e / 40)) / 2; break;
            case 2: want = 0.01 * (0.25 + 0.75 * fmin(e, 8) / 8); break;
            case 3: want = 0.01 * pow(0.2, (e >= 5) + (e >= 12) + (e >= 30)); break;
            case 4: { /* cycles of 5, 10, 20 epochs */
                double t = e, Ti = 5;
                while (t >= Ti) t -= Ti, Ti *= 2;
                want = 0.002 + (0.01 - 0.002) * (1 + cos(pi * t / Ti)) / 2;
                break;
            }
            }
            cr_expect(fabs(lr[k] - want) <= 1e-7 * want, "%s: step %d lr %.10g, the closed form %.10g", cases[c].spec,
                      k + 1, lr[k], want);
        }
    }
}

/* N steps + save + resume to 2N == 2N in one go, with a schedule (its counters in the optimizer file:
 * warm restarts has two of its own) given again on the resumed command line (the same schedule). */
Test(cli, resume_is_bit_identical_with_a_schedule) {
    const char *scheds[] = {"warm_restarts:T_0=7,T_mult=2,eta_min=0.001", "step:step_size=9,gamma=0.7"};
    for (int i = 0; i < 2; i++) {
        char args[200];
        snprintf(args, sizeof args, "--task adding --seq 12 --hidden 16 --sched %s", scheds[i]);
        resume_case(args);
        tg_st_file *a = tg_st_load(th_path_in("resumed.optim.safetensors")),
                   *b = tg_st_load(th_path_in("straight.optim.safetensors"));
        cr_assert(a && b);
        const char *keys[] = {"sched.kind", "sched.last_epoch", "group.0.lr", "sched.T_cur", "sched.T_i"};
        for (int k = 0; k < (i == 0 ? 5 : 3); k++) {
            const char *va = tg_st_meta(a, keys[k]), *vb = tg_st_meta(b, keys[k]);
            cr_expect(va && vb && strcmp(va, vb) == 0, "%s: %s is %s after resume, %s in one go", scheds[i], keys[k],
                      va ? va : "missing", vb ? vb : "missing");
        }
        cr_expect(strcmp(tg_st_meta(a, "sched.last_epoch"), "60") == 0, "last_epoch %s", tg_st_meta(a, "sched.last_epoch"));
        tg_st_free(a);
        tg_st_free(b);
    }
    /* the resumed run keeps its schedule without --sched too */
    th_run_result r = th_run("train --resume half.safetensors --steps 60 --save again.safetensors --quiet");
    cr_assert_eq(r.status, 0, "%s", r.err);
    th_run_free(&r);
    expect_same_tensors("again.safetensors", "straight.safetensors");
}

Test(cli, sched_argument_errors) {
    const char *t = "train --task adding --steps 20 --quiet";
    char cmd[400];
    struct { const char *args, *msg; } bad[] = {
        {"--sched step", "--sched step: step needs step_size=VALUE"},
        {"--sched foo", "unknown schedule 'foo' (known: step, multistep, exponential, cosine, linear, plateau"},
        {"--sched lambda", "schedule 'lambda' needs C"},
        {"--sched step:step_size=0", "step: step_size 0 must be >= 1"},
        {"--sched step:step_size=2.5", "step: step_size '2.5' is not an integer"},
        {"--sched step:step_size=3,gamma=x", "step: gamma 'x' is not a number"},
        {"--sched step:step_size=3,step_size=4", "step: step_size is given twice"},
        {"--sched step:size=3", "step has no argument 'size' (its arguments: step_size, gamma)"},
        {"--sched step:3", "step: '3' has no name"},
        {"--sched multistep:milestones=8,4", "multistep: milestones must increase (4 after 8)"},
        {"--sched linear:start_factor=0", "linear: start_factor 0 must be > 0"},
        {"--sched plateau", "--sched plateau lowers the lr when the validation metric stops improving: it needs --data"},
        {"--sched cyclic:base_lr=0.001,max_lr=0.01", "the adam optimizer has no momentum to cycle"},
        {"--sched onecycle:max_lr=0.01,cycle_momentum=2", "onecycle: cycle_momentum '2' is not one of 0|1|false|true"},
        {"--sched-every epoch", "--sched-every needs --sched"},
        {"--sched exponential:gamma=0.9 --sched-every often", "--sched-every must be auto, step or epoch, not 'often'"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        snprintf(cmd, sizeof cmd, "%s %s", t, bad[i].args);
        th_expect_usage_error(cmd, bad[i].msg, NULL);
    }
    th_run_result r = th_run("train --task adding --seq 10 --hidden 8 --steps 5 --save plain.safetensors --quiet");
    cr_assert_eq(r.status, 0, "%s", r.err);
    th_run_free(&r);
    r = th_run("train --task adding --seq 10 --hidden 8 --steps 5 --sched step:step_size=3 --save s.safetensors --quiet");
    cr_assert_eq(r.status, 0, "%s", r.err);
    th_run_free(&r);
    th_expect_usage_error("train --resume plain.safetensors --steps 10 --sched step:step_size=3",
                          "--sched step:step_size=3: the checkpoint was trained without a schedule", NULL);
    th_expect_usage_error("train --resume s.safetensors --steps 10 --sched step:step_size=4",
                          "--sched step:step_size=4 differs from the checkpoint's step:step_size=3,gamma=0.1",
                          NULL);
    th_expect_usage_error("train --resume s.safetensors --steps 10 --sched cosine",
                          "--sched cosine differs from the checkpoint's step:step_size=3", NULL);
    th_expect_usage_error("train --resume s.safetensors --steps 10 --sched-every epoch",
                          "--sched-every epoch differs from the checkpoint's step", NULL);
}

/* A onecycle run that would step past total_steps is refused before it trains (exit 2, naming
 * total_steps and the --steps that fit), fresh or resumed; up to total_steps it runs. */
Test(cli, onecycle_past_total_steps_is_refused_at_the_start) {
    const char *t = "train --task adding --seq 5 --hidden 4 --quiet";
    char cmd[300];
    snprintf(cmd, sizeof cmd, "%s --steps 6 --sched onecycle:max_lr=0.01,total_steps=4", t);
    th_expect_usage_error(cmd, "ends after 4 schedule steps (onecycle's total_steps), but this run steps it 6 times",
                          "give total_steps=6 or more, or --steps 4 at most");
    th_run_result r = th_run_ok("%s --steps 4 --sched onecycle:max_lr=0.01 --save o.safetensors", t);
    th_run_free(&r);
    th_expect_usage_error("train --resume o.safetensors --steps 6 --quiet",
                          "o.safetensors: the checkpoint's schedule onecycle:max_lr=0.01,total_steps=4,",
                          "has 0 schedule steps left (onecycle's total_steps) at step 4, but --steps 6 steps it 2 more "
                          "times (every step): resume with --steps 4 at most");
    r = th_run_ok("train --resume o.safetensors --steps 4 --quiet");
    th_run_free(&r);
}

/* ---- train's log and plot, sample ------------------------------------------------------------------ */

/* A diverging run: without the flag the loss is reported as inf; with it, the op that overflowed. */
Test(cli, train_detect_anomaly_names_the_op) {
    th_run_result r = th_run("train --task adding --optim sgd --lr 10 --clip 0 --steps 300 --quiet");
    cr_expect_eq(r.status, 1, "%s", r.err);
    cr_expect(strstr(r.err, "the loss became inf") != NULL, "%s", r.err);
    th_run_free(&r);
    r = th_run("train --task adding --optim sgd --lr 10 --clip 0 --steps 300 --quiet --detect-anomaly");
    cr_expect_eq(r.status, 1, "%s", r.err);
    cr_expect(strstr(r.err, "failed: tg_") && strstr(r.err, ": anomaly: the result"), "%s", r.err);
    th_run_free(&r);
}

Test(cli, train_writes_log_and_plot) {
    th_run_result r = th_run("train --task binadd --steps 100 --log curve.csv --plot curve.svg --quiet");
    cr_assert_eq(r.status, 0, "%s", r.err);
    th_run_free(&r);
    char *csv = th_slurp(th_path_in("curve.csv")), *svg = th_slurp(th_path_in("curve.svg"));
    cr_expect(strncmp(csv, "step,loss,seconds,lr\n", 21) == 0, "%s", csv);
    int lines = 0;
    for (char *c = csv; *c; c++) lines += *c == '\n';
    cr_expect_eq(lines, 101, "%d lines in the CSV", lines);
    cr_expect(strstr(svg, "<svg") && strstr(svg, "</svg>") && strstr(svg, "<polyline"), "not an SVG curve");
    cr_expect(strstr(svg, "baseline") != NULL);
    free(csv);
    free(svg);
}

Test(cli, sample_prints_text_from_a_char_model) {
    th_run_result r = th_run("train --task charlm --hidden 32 --seq 16 --steps 20 --save lm.safetensors --quiet");
    cr_assert_eq(r.status, 0, "%s", r.err);
    th_run_free(&r);
    r = th_run("sample --model lm.safetensors --length 50 --prime 'The '");
    cr_expect_eq(r.status, 0, "%s", r.err);
    cr_expect(strncmp(r.out, "The ", 4) == 0 && strlen(r.out) == 4 + 50 + 1, "[%s]", r.out);
    th_run_free(&r);
    th_expect_usage_error("sample --model lm.safetensors --prime \"$(printf '\\001')\"", "not in the model's vocabulary", NULL);
    r = th_run("train --task adding --steps 2 --save add.safetensors --quiet");
    th_run_free(&r);
    th_expect_usage_error("sample --model add.safetensors", "not a character model", NULL);
}

/* ---- bench: the last line is a JSON object with every field -------------------------------------- */

/* A minimal JSON check for a flat object of string -> number | string. Returns the number of keys,
 * or -1 on a syntax error. */
static int json_flat_object(const char *s) {
    int keys = 0;
    while (isspace((unsigned char)*s)) s++;
    if (*s++ != '{') return -1;
    for (;;) {
        while (isspace((unsigned char)*s)) s++;
        if (*s == '}' && keys == 0) { s++; break; }
        if (*s++ != '"') return -1;
        while (*s && *s != '"') s++;
        if (*s++ != '"') return -1;
        while (isspace((unsigned char)*s)) s++;
        if (*s++ != ':') return -1;
        while (isspace((unsigned char)*s)) s++;
        if (*s == '"') {
            s++;
            while (*s && *s != '"') s++;
            if (*s++ != '"') return -1;
        } else {
            char *end;
            double v = strtod(s, &end);
            if (end == s || !isfinite(v)) return -1;
            if (strncmp(s, "nan", 3) == 0 || strncmp(s, "inf", 3) == 0) return -1;
            s = end;
        }
        keys++;
        while (isspace((unsigned char)*s)) s++;
        if (*s == ',') { s++; continue; }
        if (*s++ != '}') return -1;
        break;
    }
    while (isspace((unsigned char)*s)) s++;
    return *s ? -1 : keys;
}

static double json_number(const char *s, const char *key) {
    char pat[64];
    snprintf(pat, sizeof pat, "\"%s\":", key);
    const char *p = strstr(s, pat);
    return p ? strtod(p + strlen(pat), NULL) : NAN;
}

/* Runs `tapegrad bench ARGS`, which must succeed; returns its last line (inside r->out). */
static const char *bench_last_line(th_run_result *r, const char *args) {
    *r = th_run("bench %s", args);
    cr_assert_eq(r->status, 0, "bench %s: %s", args, r->err);
    size_t n = strlen(r->out);
    cr_assert(n > 2 && r->out[n - 1] == '\n');
    r->out[n - 1] = 0;
    const char *last = strrchr(r->out, '\n');
    return last ? last + 1 : r->out;
}

static void bench_case(const char *args) {
    th_run_result r;
    const char *last = bench_last_line(&r, args);
    cr_expect(json_flat_object(last) >= 14, "bench %s: last line is not a JSON object: %s", args, last);
    const char *fields[] = {"cell", "I", "H", "B", "T", "threads", "steps", "median_ms", "min_ms", "max_ms", "gflops",
                            "peak_rss_mb", "tape_bytes_per_step"};
    for (size_t i = 0; i < sizeof fields / sizeof fields[0]; i++) {
        char pat[64];
        snprintf(pat, sizeof pat, "\"%s\":", fields[i]);
        cr_expect(strstr(last, pat) != NULL, "bench %s: JSON lacks %s: %s", args, fields[i], last);
    }
    double mn = json_number(last, "min_ms"), med = json_number(last, "median_ms"), mx = json_number(last, "max_ms");
    cr_expect(mn > 0 && mn <= med && med <= mx, "min %g median %g max %g", mn, med, mx);
    cr_expect(json_number(last, "gflops") > 0);
    cr_expect(json_number(last, "peak_rss_mb") > 0);
    cr_expect(json_number(last, "loss_last") < json_number(last, "loss_first"), "the loss did not fall: %s", last);
    th_run_free(&r);
}

Test(cli, bench_tape_json) {
    bench_case("--cell lstm --I 8 --H 16 --B 4 --T 10 --steps 5 --warmup 1");
    bench_case("--cell gru --I 8 --H 16 --B 4 --T 10 --steps 4 --threads 2 --dtype f64");
}
Test(cli, bench_manual_json) {
    bench_case("--cell rnn_tanh --I 8 --H 16 --B 4 --T 10 --steps 5 --impl manual");
    bench_case("--cell lstm --I 8 --H 16 --B 4 --T 10 --steps 3 --impl manual");
}

/* --mode infer: streaming latency at B = 1 and tokens/s at --B, one JSON object with its own fields */
static void bench_infer_case(const char *args) {
    char full[512];
    snprintf(full, sizeof full, "--mode infer %s", args);
    th_run_result r;
    const char *last = bench_last_line(&r, full);
    cr_expect(json_flat_object(last) >= 18, "bench --mode infer %s: last line is not a JSON object: %s", args, last);
    double us = json_number(last, "latency_us_b1"), us_min = json_number(last, "latency_min_us_b1");
    double block = json_number(last, "block_ms"), tokens = json_number(last, "tokens_per_s");
    double B = json_number(last, "B"), T = json_number(last, "T"), y = json_number(last, "check");
    cr_expect(us_min > 0 && us_min <= us, "latency min %g median %g", us_min, us);
    cr_expect(fabs(tokens - B * T / (block * 1e-3)) <= 1e-3 * tokens, "tokens/s %g vs B*T/block %g", tokens, B * T / (block * 1e-3));
    cr_expect(json_number(last, "gflops") > 0 && json_number(last, "gflops_b1") > 0, "%s", last);
    cr_expect(isfinite(y) && fabs(y) < 1, "h after the B=1 steps: %g", y);
    cr_expect(strstr(r.out, "tg_rnn_stream") && strstr(last, "\"mode\": \"infer\""), "%s", r.out);
    th_run_free(&r);
}

Test(cli, bench_infer_json) {
    bench_infer_case("--cell lstm --I 8 --H 16 --B 4 --T 10 --steps 5 --warmup 1");
    bench_infer_case("--cell gru --I 8 --H 16 --B 3 --T 7 --steps 4 --dtype f64");
    bench_infer_case("--cell @" TG_SOURCE_DIR "/docs/cells/janet.cell --I 8 --H 16 --B 2 --T 5 --steps 3");
    th_expect_usage_error("bench --mode fast", "--mode must be train or infer, not 'fast'", NULL);
    th_expect_usage_error("bench --mode infer --impl manual", "--mode infer streams the cell's own step", NULL);
}

/* ---- compare --------------------------------------------------------------------------------------- */

Test(cli, compare_writes_svg_and_csv) {
    th_run_result r = th_run("compare --task binadd --cells lstm,gru --seeds 2 --steps 60 --forget-bias 0,1 "
                       "--plot cmp.svg --log cmp.csv");
    cr_assert_eq(r.status, 0, "%s", r.err);
    cr_expect(strstr(r.out, "lstm fb=0") && strstr(r.out, "lstm fb=1") && strstr(r.out, "gru fb=1"), "%s", r.out);
    cr_expect(strstr(r.out, "params") && strstr(r.out, "ms/step"), "no table: %s", r.out);
    th_run_free(&r);
    char *csv = th_slurp(th_path_in("cmp.csv")), *svg = th_slurp(th_path_in("cmp.svg"));
    const char *header = "variant,cell,forget_bias,seed,step,loss,seconds\n";
    cr_expect(strncmp(csv, header, strlen(header)) == 0, "%.80s", csv);
    int lines = 0;
    for (char *c = csv; *c; c++) lines += *c == '\n';
    cr_expect_eq(lines, 1 + 4 * 2 * 60, "%d CSV lines", lines);
    int polylines = 0;
    for (char *p = svg; (p = strstr(p, "<polyline")); p++) polylines++;
    cr_expect_eq(polylines, 4, "%d curves in the SVG", polylines);
    cr_expect(strstr(svg, "</svg>") != NULL);
    free(csv);
    free(svg);
}

Test(cli, compare_skips_a_cell_that_cannot_run_the_task) {
    /* mut1 adds x_t to an H-wide pre-activation, so it needs input size = hidden size (binadd has 2) */
    th_run_result r = th_run("compare --task binadd --cells lstm,mut1 --seeds 1 --steps 20 --plot s.svg --log s.csv");
    cr_expect_eq(r.status, 0, "%s", r.err);
    cr_expect(strstr(r.err, "mut1") && strstr(r.err, "skipped"), "%s", r.err);
    cr_expect(strstr(r.out, "(cannot run this task)") != NULL, "%s", r.out);
    th_run_free(&r);
    th_expect_usage_error("compare --task binadd --cells mut1 --seeds 1 --steps 20 --plot s.svg --log s.csv",
                          "no cell could be trained", NULL);
}

/* ---- the main job ---------------------------------------------------------------------------------- */

Test(cli, main_job_passes, .timeout = 400) {
    th_run_result r = th_run("%s", "");
    cr_expect_eq(r.status, 0, "tapegrad exited %d: %s", r.status, r.err);
    cr_expect(strstr(r.out, "gradients: PASS") != NULL, "%s", r.out);
    cr_expect(strstr(r.out, "beats the baseline") != NULL, "%s", r.out);
    th_run_free(&r);
}

/* ---- typed cells (the cell language: --cell @FILE, --cells a,@FILE, --cell-def) ----------------------- */

#define JANET_CELL TG_TEST_DATA_DIR "/../../docs/cells/janet.cell"

/* train + save, then resume WITHOUT any cell flag (the checkpoint carries the definition), equals the
 * straight run bit for bit; summary of the checkpoint shows the typed definition */
Test(cli, typed_cell_resumes_bit_identical_without_the_flag) {
    const char *args = "--task adding --seq 12 --hidden 8";
    th_run_result r = th_run("train %s --cell-def '%s' --steps 20 --save half.safetensors --quiet", args, JANET_CELL);
    cr_assert_eq(r.status, 0, "%s", r.err);
    th_run_free(&r);
    r = th_run("train %s --resume half.safetensors --steps 40 --save resumed.safetensors --quiet", args);
    cr_assert_eq(r.status, 0, "%s", r.err);
    cr_expect(strstr(r.out, "resumed from half.safetensors at step 20") != NULL, "%s", r.out);
    th_run_free(&r);
    r = th_run("train %s --cell @'%s' --steps 40 --save straight.safetensors --quiet", args, JANET_CELL);
    cr_assert_eq(r.status, 0, "%s", r.err);
    th_run_free(&r);
    expect_same_tensors("resumed.safetensors", "straight.safetensors");
    expect_same_tensors("resumed.optim.safetensors", "straight.optim.safetensors");
    tg_st_file *f = tg_st_load(th_path_in("resumed.safetensors"));
    cr_assert_not_null(f);
    cr_expect_str_eq(tg_st_meta(f, "cell"), "@janet");
    cr_expect(tg_st_meta(f, "cell_def") && strstr(tg_st_meta(f, "cell_def"), "c' = f * c + (1 - f) * tanh(x.c + h.c)"));
    tg_st_free(f);
    r = th_run("summary --model resumed.safetensors");
    cr_expect_eq(r.status, 0, "%s", r.err);
    cr_expect(strstr(r.out, "@janet") && strstr(r.out, "tanh(x.c + h.c)"), "%s", r.out);
    th_run_free(&r);
}

Test(cli, typed_cells_in_compare_and_gradcheck) {
    th_run_result r = th_run("compare --task adding --seq 10 --hidden 8 --steps 20 --seeds 1 --cells lstm,@'%s'", JANET_CELL);
    cr_assert_eq(r.status, 0, "%s", r.err);
    cr_expect(strstr(r.out, "@janet") != NULL, "%s", r.out);
    th_run_free(&r);
    FILE *f = fopen(th_path_in("inline.txt"), "w");
    cr_assert_not_null(f);
    fputs("gates a\nh' = tanh(x.a + h.a) * sigmoid(x.a)\n", f);
    fclose(f);
    r = th_run("gradcheck --cell-def \"$(cat inline.txt)\" --T 3 --B 2 --I 2 --H 3");
    cr_expect_eq(r.status, 0, "%s%s", r.out, r.err);
    cr_expect(strstr(r.out, "@inline: PASS") != NULL, "%s", r.out);
    th_run_free(&r);
}

Test(cli, typed_cell_errors) {
    FILE *f = fopen(th_path_in("inline.txt"), "w");
    cr_assert_not_null(f);
    fputs("gates a\nh' = tanh(x.a + h.q)\n", f);
    fclose(f);
    th_expect_usage_error("gradcheck --cell-def \"$(cat inline.txt)\"", "<--cell-def>:2:19: unknown gate block 'q' (gates: a)", NULL);
    th_expect_usage_error("train --task adding --cell @/nonexistent/x.cell", "/nonexistent/x.cell: cannot open the cell definition", NULL);
    f = fopen(th_path_in("bad.cell"), "w");
    cr_assert_not_null(f);
    fputs("gates a\nh' = tanh(x.a + q)\n", f);
    fclose(f);
    th_expect_usage_error("compare --task adding --cells lstm,@bad.cell", "bad.cell:2:17: unknown name 'q'", NULL);
}

/* ---- trainer_resume (tools/trainer.c, compiled in): each resumed trainer owns its settings --------- */

static void write_wave_csv(const char *name, double freq) {
    FILE *f = fopen(th_path_in(name), "w");
    cr_assert(f);
    fputs("time,value\n", f);
    for (int t = 0; t < 300; t++) fprintf(f, "%d,%.6f\n", t, sin(freq * t));
    cr_assert_eq(fclose(f), 0);
}

/* The strings of a resumed run's settings (task, optimizer, cell, a data task's files) are the
 * trainer's own: resuming another checkpoint in the same process leaves the first trainer's alone. */
Test(cli, resumed_trainers_keep_their_own_settings) {
    write_wave_csv("a.csv", 0.3);
    write_wave_csv("b.csv", 0.2);
    char a_csv[512], b_csv[512], path[3][512];
    snprintf(a_csv, sizeof a_csv, "%s", th_path_in("a.csv"));
    snprintf(b_csv, sizeof b_csv, "%s", th_path_in("b.csv"));
    const char *names[3] = {"a.safetensors", "b.safetensors", "c.safetensors"};
    for (int i = 0; i < 3; i++) snprintf(path[i], sizeof path[i], "%s", th_path_in(names[i]));
    th_run_result r = th_run("train --data %s --features value --target next --seq 8 --val 0.2 --hidden 4 --epochs 1 "
                             "--cell gru --save a.safetensors --quiet", a_csv);
    cr_assert_eq(r.status, 0, "%s%s", r.out, r.err);
    th_run_free(&r);
    r = th_run("train --data %s --features value --target next --seq 6 --val 0.25 --hidden 5 --epochs 1 --optim sgd "
               "--save b.safetensors --quiet", b_csv);
    cr_assert_eq(r.status, 0, "%s%s", r.out, r.err);
    th_run_free(&r);
    r = th_run("train --task adding --seq 10 --hidden 4 --steps 2 --optim rmsprop --cell rnn_tanh --save c.safetensors --quiet");
    cr_assert_eq(r.status, 0, "%s%s", r.out, r.err);
    th_run_free(&r);
    trainer tr[3];
    train_config user = {0};
    char err[512];
    for (int i = 0; i < 3; i++) cr_assert_eq(trainer_resume(&tr[i], &user, path[i], err, sizeof err), 0, "%s: %s", path[i], err);
    const char *task[3] = {"data", "data", "adding"}, *optim[3] = {"adam", "sgd", "rmsprop"},
               *cell[3] = {"gru", "lstm", "rnn_tanh"}, *data[3] = {a_csv, b_csv, NULL};
    for (int i = 0; i < 3; i++) {
        cr_expect_str_eq(tr[i].cfg.task, task[i], "%s", names[i]);
        cr_expect_str_eq(tr[i].cfg.optim, optim[i], "%s", names[i]);
        cr_expect_str_eq(tr[i].cfg.cell, cell[i], "%s", names[i]);
        if (data[i]) {
            cr_assert_not_null(tr[i].cfg.data, "%s", names[i]);
            cr_expect_str_eq(tr[i].cfg.data->path, data[i], "%s", names[i]);
            cr_expect_str_eq(tr[i].cfg.data->target, "next", "%s", names[i]);
        } else {
            cr_expect_null(tr[i].cfg.data, "%s", names[i]);
        }
    }
    cr_expect_eq(tr[0].cfg.data->val, 0.2);
    cr_expect_eq(tr[1].cfg.data->val, 0.25);
    for (int i = 0; i < 3; i++) trainer_free(&tr[i]);
}
