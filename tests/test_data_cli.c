/* tests/test_data_cli.c - the `tapegrad` commands that work on a model or on the user's own data, run as
 * a user runs them (the built binary, TG_TAPEGRAD_EXE), each in its own temporary directory:
 *   - summary: the table of a checkpoint (every parameter with its shape and count, the totals, the
 *     cell's equations) for any cell, and its errors;
 *   - every built-in and zoo cell gives summary some equations.
 * The data files the tests train on are written by the tests themselves. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <tapegrad/tapegrad.h>

#ifndef TG_TAPEGRAD_EXE
#error "TG_TAPEGRAD_EXE must name the built tapegrad binary"
#endif

/* ---- running the binary ------------------------------------------------------------------------- */

typedef struct run_result {
    int status;   /* exit status, or -1 if it did not exit normally */
    char *out;    /* stdout (malloc'd) */
    char *err;    /* stderr (malloc'd) */
} run_result;

static char g_dir[64];

static void make_dir(void) {
    snprintf(g_dir, sizeof g_dir, "/tmp/tg_dcli_XXXXXX");
    cr_assert(mkdtemp(g_dir) != NULL);
}

static void remove_dir(void) {
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_dir);
    if (system(cmd) != 0) { /* best effort */ }
}

TestSuite(data_cli, .init = make_dir, .fini = remove_dir);

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

static char *path_in(const char *name) {
    static char buf[4][256];
    static int k;
    k = (k + 1) % 4;
    snprintf(buf[k], sizeof buf[k], "%s/%s", g_dir, name);
    return buf[k];
}

/* Runs `tapegrad ARGS` (a shell-quoted argument string) in the test's directory. */
static run_result run(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static run_result run(const char *fmt, ...) {
    char args[4096], cmd[8192];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(args, sizeof args, fmt, ap);
    va_end(ap);
    snprintf(cmd, sizeof cmd, "cd '%s' && '%s' %s </dev/null >stdout.txt 2>stderr.txt", g_dir, TG_TAPEGRAD_EXE, args);
    int s = system(cmd);
    run_result r = {WIFEXITED(s) ? WEXITSTATUS(s) : -1, slurp(path_in("stdout.txt")), slurp(path_in("stderr.txt"))};
    return r;
}

static void run_free(run_result *r) {
    free(r->out);
    free(r->err);
}

/* Bad usage: exit status 2, and stderr names the problem (each needle must appear). */
static void expect_usage_error(const char *args, const char *needle1, const char *needle2) {
    run_result r = run("%s", args);
    cr_expect_eq(r.status, 2, "'tapegrad %s' exited %d, expected 2; stderr: %s", args, r.status, r.err);
    cr_expect(strstr(r.err, needle1) != NULL, "'tapegrad %s': stderr lacks '%s': %s", args, needle1, r.err);
    if (needle2) cr_expect(strstr(r.err, needle2) != NULL, "'tapegrad %s': stderr lacks '%s': %s", args, needle2, r.err);
    run_free(&r);
}

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
    run_result r = run("train --task adding --seq 5 --cell gru --layers 2 --hidden 8 --steps 2 --quiet --save m.safetensors");
    cr_assert_eq(r.status, 0, "%s", r.err);
    run_free(&r);
    r = run("summary --model m.safetensors");
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
    run_free(&r);
}

Test(data_cli, summary_errors) {
    expect_usage_error("summary", "--model is required", NULL);
    expect_usage_error("summary --model /nonexistent/m.safetensors", "cannot read model", "/nonexistent/m.safetensors");
    FILE *f = fopen(path_in("junk.safetensors"), "wb");
    cr_assert(f);
    fputs("not a checkpoint", f);
    fclose(f);
    expect_usage_error("summary --model junk.safetensors", "junk.safetensors", NULL);
    expect_usage_error("summary --model a --bogus", "unknown option '--bogus'", NULL);
}

/* Every cell (built-in and zoo) states its equations, so summary never prints an empty cell section. */
Test(data_cli, every_cell_has_equations) {
    for (int i = 0; i < tg_cell_count(); i++) {
        const tg_cell *c = tg_cell_at(i);
        cr_expect(c->equations && strstr(c->equations, "="), "cell %s gives no equations", c->name);
    }
}
