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

#ifndef TG_TAPEGRAD_EXE
#error "TG_TAPEGRAD_EXE must name the built tapegrad binary"
#endif

static char g_dir[64];

static void make_dir(void) {
    snprintf(g_dir, sizeof g_dir, "/tmp/tg_usage_XXXXXX");
    cr_assert(mkdtemp(g_dir) != NULL);
}

static void remove_dir(void) {
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_dir);
    if (system(cmd) != 0) { /* best effort */ }
}

TestSuite(usage, .init = make_dir, .fini = remove_dir);

static char *slurp(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) return strdup("");
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *s = malloc((size_t)n + 1);
    size_t got = fread(s, 1, (size_t)n, f);
    s[got] = 0;
    fclose(f);
    return s;
}

static const char *path_in(const char *name) {
    static char buf[4][256];
    static int k;
    k = (k + 1) % 4;
    snprintf(buf[k], sizeof buf[k], "%s/%s", g_dir, name);
    return buf[k];
}

typedef struct run_result {
    int status; /* exit status, or -1 if it did not exit normally */
    char *out;  /* stdout (malloc'd) */
    char *err;  /* stderr (malloc'd) */
} run_result;

/* Runs `PREFIX tapegrad ARGS` in the test's directory; prefix is a shell fragment ("" or e.g.
 * "ulimit -v 400000;"), args a shell-quoted argument string. */
static run_result run_with(const char *prefix, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static run_result run_with(const char *prefix, const char *fmt, ...) {
    char args[2048], cmd[4096];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(args, sizeof args, fmt, ap);
    va_end(ap);
    snprintf(cmd, sizeof cmd, "cd '%s' && %s '%s' %s </dev/null >stdout.txt 2>stderr.txt", g_dir, prefix,
             TG_TAPEGRAD_EXE, args);
    int s = system(cmd);
    run_result r = {WIFEXITED(s) ? WEXITSTATUS(s) : -1, slurp(path_in("stdout.txt")), slurp(path_in("stderr.txt"))};
    return r;
}
#define run(...) run_with("", __VA_ARGS__)

static void run_free(run_result *r) {
    free(r->out);
    free(r->err);
}

/* ---- --version ----------------------------------------------------------------------------------- */

Test(usage, version_names_the_project_version) {
    run_result r = run("--version");
    char want[128];
    snprintf(want, sizeof want, "tapegrad %s (library %s)", TG_VERSION_STRING, tg_version_string());
    cr_expect_eq(r.status, 0, "exit %d: %s", r.status, r.err);
    cr_expect(strstr(r.out, want) == r.out, "--version printed '%s', want it to start with '%s'", r.out, want);
    char num[32];
    snprintf(num, sizeof num, "%d.%d.%d", TG_VERSION_MAJOR, TG_VERSION_MINOR, TG_VERSION_PATCH);
    cr_expect_str_eq(num, TG_VERSION_STRING);
    cr_expect_eq(TG_VERSION_NUMBER, TG_VERSION_MAJOR * 10000 + TG_VERSION_MINOR * 100 + TG_VERSION_PATCH);
    run_free(&r);
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
        run_result r = run("%s", cases[i].args);
        cr_expect_eq(r.status, 2, "%s: exit %d", cases[i].args, r.status);
        cr_expect(strstr(r.err, cases[i].want) != NULL, "%s: stderr '%s' lacks \"%s\"", cases[i].args, r.err, cases[i].want);
        cr_expect(strstr(r.err, "tg_cell_by_name") == NULL, "%s: internal name in '%s'", cases[i].args, r.err);
        run_free(&r);
    }
    run_result r = run("train --task adding --zzzzzz 1");
    cr_expect(strstr(r.err, "unknown option '--zzzzzz'\n") != NULL, "no guess expected: %s", r.err);
    run_free(&r);
}

/* --version names the CPU kernels chosen at start-up, and TAPEGRAD_CPU changes them. */
Test(usage, version_names_the_cpu_kernels) {
    run_result r = run_with("TAPEGRAD_CPU=generic", "--version");
    cr_expect(strstr(r.out, "kernels: generic (built: ") != NULL, "%s", r.out);
    run_free(&r);
    r = run_with("TAPEGRAD_CPU=nosuch", "--version");
    cr_expect(strstr(r.err, "TAPEGRAD_CPU=nosuch: unknown (this build has: ") != NULL, "%s", r.err);
    run_free(&r);
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
        run_result r = run("%s", cases[i].args);
        cr_expect_eq(r.status, 2, "%s: exit %d", cases[i].args, r.status);
        cr_expect(strstr(r.err, cases[i].want) != NULL, "%s: stderr '%s' lacks \"%s\"", cases[i].args, r.err, cases[i].want);
        run_free(&r);
    }
    static const char *const helps[] = {"train --help", "compare --help"};
    for (size_t i = 0; i < 2; i++) {
        run_result r = run("%s", helps[i]);
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
        run_free(&r);
    }
}

/* ---- compare --csv ------------------------------------------------------------------------------- */

/* --csv FILE names the CSV (--log is its older name); without it, compare_TASK.csv and .svg. */
Test(usage, compare_csv_names_the_file) {
    run_result r = run("compare --task binadd --cells lstm --seeds 1 --steps 5 --csv mine.csv --plot mine.svg");
    cr_expect_eq(r.status, 0, "exit %d: %s", r.status, r.err);
    cr_expect(strstr(r.out, "wrote mine.svg and mine.csv") != NULL, "%s", r.out);
    char *csv = slurp(path_in("mine.csv"));
    cr_expect(strncmp(csv, "variant,cell,forget_bias,seed,step,loss,seconds\n", 48) == 0, "mine.csv: '%.80s'", csv);
    free(csv);
    run_free(&r);
    r = run("compare --task binadd --cells lstm --seeds 1 --steps 5");
    cr_expect_eq(r.status, 0, "exit %d: %s", r.status, r.err);
    cr_expect(strstr(r.out, "wrote compare_binadd.svg and compare_binadd.csv") != NULL, "%s", r.out);
    cr_expect(access(path_in("compare_binadd.csv"), R_OK) == 0 && access(path_in("compare_binadd.svg"), R_OK) == 0);
    run_free(&r);
    r = run("compare --help");
    cr_expect(strstr(r.out, "--csv S") != NULL && strstr(r.out, "(default compare_TASK.csv)") != NULL, "%s", r.out);
    run_free(&r);
}
