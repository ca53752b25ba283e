/* tests/test_usage.c - what a new user of the `tapegrad` command meets first (issue 18): --version,
 * sizes of 0 refused, messages without internal names, "did you mean" for typos, compare --csv,
 * train --init from tapegrad's and PyTorch's weights, bounded evaluation memory, and the clean-up of
 * temporaries a killed save left behind. Each test runs the built binary (TG_TAPEGRAD_EXE) in its own
 * temporary directory. */
#include <criterion/criterion.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <tapegrad/tapegrad.h>

#include "helpers.h"

TestSuite(usage, .init = th_dir_make, .fini = th_dir_remove);

/* ---- --version ----------------------------------------------------------------------------------- */

Test(usage, version_names_the_project_version) {
    th_run_result r = th_run("--version");
    char want[128];
    snprintf(want, sizeof want, "tapegrad %s (library %s)", TG_VERSION_STRING, tg_version_string());
    cr_expect_eq(r.status, 0, "exit %d: %s", r.status, r.err);
    cr_expect(strstr(r.out, want) == r.out, "--version printed '%s', want it to start with '%s'", r.out, want);
    char num[32];
    snprintf(num, sizeof num, "%d.%d.%d", TG_VERSION_MAJOR, TG_VERSION_MINOR, TG_VERSION_PATCH);
    cr_expect_str_eq(num, TG_VERSION_STRING);
    cr_expect_eq(TG_VERSION_NUMBER, TG_VERSION_MAJOR * 10000 + TG_VERSION_MINOR * 100 + TG_VERSION_PATCH);
    th_run_free(&r);
}

/* Typos get the nearest name; a far-off word gets no guess; library function names stay out. */
Test(usage, typos_get_a_suggestion) {
    static const struct { const char *args, *want; } cases[] = {
        {"trian --task adding", "unknown command 'trian' (did you mean 'train'?)"},
        {"train --task adding --hiden 8", "unknown option '--hiden' (did you mean '--hidden'?)"},
        {"train --task addng --steps 1", "unknown task 'addng' (did you mean 'adding'?)"},
        {"train --task adding --cell lstmm --steps 1", "unknown cell 'lstmm' (did you mean 'lstm'?)"},
        {"compare --task adding --cells lstm,grux --steps 1", "unknown cell 'grux' (did you mean 'gru'?)"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        th_run_result r = th_run("%s", cases[i].args);
        cr_expect_eq(r.status, 2, "%s: exit %d", cases[i].args, r.status);
        cr_expect(strstr(r.err, cases[i].want) != NULL, "%s: stderr '%s' lacks \"%s\"", cases[i].args, r.err, cases[i].want);
        cr_expect(strstr(r.err, "tg_cell_by_name") == NULL, "%s: internal name in '%s'", cases[i].args, r.err);
        th_run_free(&r);
    }
    th_run_result r = th_run("train --task adding --zzzzzz 1");
    cr_expect(strstr(r.err, "unknown option '--zzzzzz'\n") != NULL, "no guess expected: %s", r.err);
    th_run_free(&r);
}

/* --version names the CPU kernels chosen at start-up, and TAPEGRAD_CPU changes them. */
Test(usage, version_names_the_cpu_kernels) {
    th_run_result r = th_run_with("TAPEGRAD_CPU=generic", "--version");
    cr_expect(strstr(r.out, "kernels: generic (built: ") != NULL, "%s", r.out);
    th_run_free(&r);
    r = th_run_with("TAPEGRAD_CPU=nosuch", "--version");
    cr_expect(strstr(r.err, "TAPEGRAD_CPU=nosuch: unknown (this build has: ") != NULL, "%s", r.err);
    th_run_free(&r);
}

/* ---- sizes of 0 ------------------------------------------------------------------------------------ */

/* A size of 0 is refused with the option and its range (from 1); leaving the option out is the task's
 * default, which --help shows. */
Test(usage, size_zero_is_refused) {
    static const struct { const char *args, *want; } cases[] = {
        {"train --task adding --hidden 0 --steps 1", "option --hidden: 0 is out of range [1, 4096]"},
        {"train --task adding --batch 0 --steps 1", "option --batch: 0 is out of range [1, 4096]"},
        {"train --task adding --seq 0 --steps 1", "option --seq: 0 is out of range [1, 100000]"},
        {"train --task adding --steps 0", "option --steps: 0 is out of range [1, 100000000]"},
        {"train --task adding --epochs 0", "option --epochs: 0 is out of range [1, 1000000]"},
        {"compare --task adding --hidden 0 --steps 1", "option --hidden: 0 is out of range [1, 4096]"},
        {"compare --task adding --batch=0 --steps 1", "option --batch: 0 is out of range [1, 4096]"},
        {"compare --task adding --seq 0 --steps 1", "option --seq: 0 is out of range [1, 100000]"},
        {"compare --task adding --steps 0", "option --steps: 0 is out of range [1, 100000000]"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        th_run_result r = th_run("%s", cases[i].args);
        cr_expect_eq(r.status, 2, "%s: exit %d", cases[i].args, r.status);
        cr_expect(strstr(r.err, cases[i].want) != NULL, "%s: stderr '%s' lacks \"%s\"", cases[i].args, r.err, cases[i].want);
        th_run_free(&r);
    }
    static const char *const helps[] = {"train --help", "compare --help"};
    for (size_t i = 0; i < 2; i++) {
        th_run_result r = th_run("%s", helps[i]);
        cr_expect_eq(r.status, 0, "%s: exit %d", helps[i], r.status);
        cr_expect(strstr(r.out, "hidden units (default: the task's: arith 32, pattern 32, adding 32, copy 128, binadd 16,") != NULL,
                  "%s: %s", helps[i], r.out);
        cr_expect(strstr(r.out, "sequences per step (default: the task's, 32 for every task)") != NULL, "%s: %s", helps[i], r.out);
        cr_expect(strstr(r.out, "adding 2000") != NULL && strstr(r.out, "data 10 epochs") != NULL, "%s: %s", helps[i], r.out);
        static const char *const sizes[] = {"  --hidden N", "  --batch N", "  --seq N", "  --steps N", "  --epochs N"};
        for (size_t k = 0; k < sizeof sizes / sizeof sizes[0]; k++) {
            const char *line = strstr(r.out, sizes[k]);
            if (!line) continue; /* compare has no --epochs */
            const char *end = strchr(line, '\n');
            size_t n = end ? (size_t)(end - line) : strlen(line);
            char one[512];
            snprintf(one, sizeof one, "%.*s", (int)n, line);
            cr_expect(strstr(one, "(default 0)") == NULL, "%s: %s", helps[i], one);
        }
        th_run_free(&r);
    }
}

/* ---- compare --csv ------------------------------------------------------------------------------- */

/* --csv FILE names the CSV (--log is its older name); without it, compare_TASK.csv and .svg. */
Test(usage, compare_csv_names_the_file) {
    th_run_result r = th_run("compare --task binadd --cells lstm --seeds 1 --steps 5 --csv mine.csv --plot mine.svg");
    cr_expect_eq(r.status, 0, "exit %d: %s", r.status, r.err);
    cr_expect(strstr(r.out, "wrote mine.svg and mine.csv") != NULL, "%s", r.out);
    char *csv = th_slurp(th_path_in("mine.csv"));
    cr_expect(strncmp(csv, "variant,cell,forget_bias,seed,step,loss,seconds\n", 48) == 0, "mine.csv: '%.80s'", csv);
    free(csv);
    th_run_free(&r);
    r = th_run("compare --task binadd --cells lstm --seeds 1 --steps 5");
    cr_expect_eq(r.status, 0, "exit %d: %s", r.status, r.err);
    cr_expect(strstr(r.out, "wrote compare_binadd.svg and compare_binadd.csv") != NULL, "%s", r.out);
    cr_expect(access(th_path_in("compare_binadd.csv"), R_OK) == 0 && access(th_path_in("compare_binadd.svg"), R_OK) == 0);
    th_run_free(&r);
    r = th_run("compare --help");
    cr_expect(strstr(r.out, "--csv S") != NULL && strstr(r.out, "(default compare_TASK.csv)") != NULL, "%s", r.out);
    th_run_free(&r);
}

/* --lr 0 used to mean "the task's default" silently; now a rate is above 0, and leaving it out gives
 * the task's default, which --help lists per task. */
Test(usage, lr_zero_is_refused_and_the_default_listed) {
    static const char *const cmds[] = {"train --task adding --steps 1 --lr 0", "compare --task adding --steps 1 --lr=0",
                                       "train --task adding --steps 1 --lr -0.1"};
    for (size_t i = 0; i < sizeof cmds / sizeof cmds[0]; i++) {
        th_run_result r = th_run("%s", cmds[i]);
        cr_expect_eq(r.status, 2, "%s: exit %d", cmds[i], r.status);
        cr_expect(strstr(r.err, "option --lr: ") && strstr(r.err, "is out of range (0, 10]"), "%s: %s", cmds[i], r.err);
        th_run_free(&r);
    }
    static const char *const helps[] = {"train --help", "compare --help"};
    for (size_t i = 0; i < 2; i++) {
        th_run_result r = th_run("%s", helps[i]);
        const char *line = strstr(r.out, "  --lr X");
        cr_assert_not_null(line, "%s: %s", helps[i], r.out);
        const char *end = strchr(line, '\n');
        cr_expect(strstr(line, "learning rate, above 0 (default: the task's: arith 0.01, pattern 0.01, adding 0.01, copy 0.003,") == line + 25,
                  "%s: %.*s", helps[i], (int)(end - line), line);
        cr_expect(!strstr(line, "(default 0)") || strstr(line, "(default 0)") > end, "%s still says default 0", helps[i]);
        th_run_free(&r);
    }
    th_run_result r = th_run("train --task copy --steps 1 --quiet");
    cr_expect(strstr(r.out, "training: adam lr 0.003,") != NULL, "copy's default lr: %s", r.out);
    th_run_free(&r);
}
