/* tests/helpers.c - see helpers.h. */
#ifndef _XOPEN_SOURCE
#define _XOPEN_SOURCE 700 /* nftw, mkdtemp */
#endif
#include "helpers.h"

#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <stdbool.h>
#include <string.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* ---- errors and leaks --------------------------------------------------------------------------- */

static int g_count;
static char g_first[512];

static void record(const char *msg, void *user) {
    (void)user;
    if (g_count++ == 0) snprintf(g_first, sizeof g_first, "%s", msg);
}
void th_record_errors(void) {
    tg_set_error_handler(record, NULL);
    th_reset_errors();
}
int th_error_count(void) { return g_count; }
const char *th_last_message(void) { return g_first; }
void th_reset_errors(void) {
    g_count = 0;
    g_first[0] = 0;
    tg_clear_error();
}

int th_child_stderr(void (*fn)(void), char *buf, size_t size) {
    int fd[2];
    buf[0] = 0;
    if (pipe(fd)) return -1;
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0) { close(fd[0]); close(fd[1]); return -1; }
    if (pid == 0) {
        close(fd[0]);
        dup2(fd[1], STDERR_FILENO);
        tg_set_error_handler(NULL, NULL);
        fn();
        _exit(0);
    }
    close(fd[1]);
    size_t n = 0;
    ssize_t got;
    while (n + 1 < size && (got = read(fd[0], buf + n, size - 1 - n)) > 0) n += (size_t)got;
    buf[n] = 0;
    close(fd[0]);
    int status = 0;
    if (waitpid(pid, &status, 0) != pid) return -1;
    return WIFSIGNALED(status) ? WTERMSIG(status) : 0;
}

static long g_live_at_start;
void th_live_start(void) { g_live_at_start = tg_live_tensors(); }
void th_live_check(void) {
    tg_tape_reset();
    cr_assert_eq(tg_live_tensors(), g_live_at_start, "live tensors: %ld at start, %ld at the end",
                 g_live_at_start, tg_live_tensors());
}

static int g_quiet_calls;
static void quiet_handler(const char *message, void *user) {
    (void)user;
    cr_log_error("error handler called: %s", message);
    g_quiet_calls++;
}
void th_quiet_handler(void) { tg_set_error_handler(quiet_handler, NULL); }
void th_quiet_start(void) {
    th_live_start();
    g_quiet_calls = 0;
    th_quiet_handler();
    tg_clear_error();
}
void th_quiet_check(void) {
    cr_assert_eq(tg_live_tensors(), g_live_at_start, "live tensors: %ld at start, %ld at the end",
                 g_live_at_start, tg_live_tensors());
    cr_assert_eq(g_quiet_calls, 0, "the error handler was called %d times (messages above)", g_quiet_calls);
}

/* ---- tensors ------------------------------------------------------------------------------------ */

tg_tensor *th_rand(uint64_t seed, int ndim, const int64_t *shape, double lo, double hi) {
    tg_rng rng;
    tg_rng_seed(&rng, seed);
    return tg_rand_uniform(&rng, TG_F64, ndim, shape, lo, hi);
}

double th_scaled_diff(const tg_tensor *a, const tg_tensor *b) {
    cr_assert(a && b && tg_numel(a) == tg_numel(b));
    double m = 0, scale = 1;
    for (int64_t i = 0; i < tg_numel(a); i++) {
        m = fmax(m, fabs(tg_get(a, i) - tg_get(b, i)));
        scale = fmax(scale, fabs(tg_get(b, i)));
    }
    return m / scale;
}

double th_max_diff(const tg_tensor *a, const tg_tensor *b) {
    cr_assert(tg_same_shape(a, b));
    double m = 0;
    for (int64_t i = 0; i < tg_numel(a); i++) m = fmax(m, fabs(tg_get(a, i) - tg_get(b, i)));
    return m;
}

/* ---- recurrent models --------------------------------------------------------------------------- */

tg_rnn *th_make_rnn(const char *cell, int64_t I, int64_t H, int L, bool bidir, uint64_t seed) {
    tg_rng rng;
    tg_rng_seed(&rng, seed);
    tg_rnn_config cfg = {.input_size = I, .hidden_size = H, .num_layers = L, .bidirectional = bidir, .dtype = TG_F64};
    tg_rnn *m = tg_rnn_new(tg_cell_by_name(cell), &cfg, &rng);
    cr_assert_not_null(m, "tg_rnn_new(%s): %s", cell, tg_last_error());
    return m;
}

tg_tensor *th_cat_flat(int n, tg_tensor *const *parts) {
    tg_tensor *flat[1 + TG_CELL_MAX_STATES];
    for (int i = 0; i < n; i++) flat[i] = tg_reshape(parts[i], TG_SHAPE(-1));
    return tg_concat(n, flat, 0);
}

/* inputs[0] = x, inputs[1..n_init] = initial states, the rest are the model's own parameters. */
static tg_tensor *rnn_case_fn(tg_tensor *const *in, int n, void *user) {
    (void)n;
    th_rnn_case *rc = user;
    tg_rnn_forward_opts o = rc->opts;
    tg_tensor *init[TG_CELL_MAX_STATES] = {0};
    for (int s = 0; s < rc->n_init; s++) init[s] = in[1 + s];
    if (rc->n_init) o.init = init;
    tg_rng rng;
    if (rc->mask_seed) {
        tg_rng_seed(&rng, rc->mask_seed);
        o.rng = &rng;
        o.train = true;
    }
    tg_rnn_output out;
    if (!tg_rnn_forward(rc->m, in[0], &o, &out)) return NULL;
    tg_tensor *parts[1 + TG_CELL_MAX_STATES] = {out.output};
    for (int s = 0; s < out.n_states; s++) parts[1 + s] = out.final[s];
    tg_tensor *r = th_cat_flat(1 + out.n_states, parts);
    tg_rnn_output_clear(&out);
    return r;
}

void th_check_grads(th_rnn_case *rc, tg_tensor *x, tg_tensor *const *init, const char *what) {
    enum { MAX_IN = 96 };
    tg_tensor *inputs[MAX_IN];
    int n = 0;
    inputs[n++] = x;
    tg_set_name(x, "x");
    for (int s = 0; s < rc->n_init; s++) inputs[n++] = init[s];
    cr_assert(n + tg_params_count(rc->m->params) <= MAX_IN);
    for (int i = 0; i < tg_params_count(rc->m->params); i++) inputs[n++] = tg_params_at(rc->m->params, i);
    for (int i = 0; i < n; i++) tg_set_requires_grad(inputs[i], true);
    tg_gradcheck_input rep[MAX_IN];
    bool ok = tg_gradcheck(rnn_case_fn, rc, inputs, n, NULL, rep);
    for (int i = 0; i < n; i++)
        if (!rep[i].pass)
            cr_log_error("%s: input %d '%s' worst [%lld] analytic %.12g numeric %.12g", what, i,
                         i < 1 + rc->n_init ? tg_name(inputs[i]) : tg_params_name_at(rc->m->params, i - 1 - rc->n_init),
                         (long long)rep[i].worst_index, rep[i].analytic, rep[i].numeric);
    cr_assert(ok, "%s: gradcheck failed %s", what, tg_last_error());
}

/* ---- files -------------------------------------------------------------------------------------- */

static char g_dir[64];

void th_dir_make(void) {
    snprintf(g_dir, sizeof g_dir, "/tmp/tg_test_XXXXXX");
    cr_assert(mkdtemp(g_dir) != NULL, "cannot make a temporary directory %s", g_dir);
}

static int remove_one(const char *path, const struct stat *st, int flag, struct FTW *ftw) {
    (void)st;
    (void)flag;
    (void)ftw;
    remove(path); /* best effort: a file the test made read-only still goes, a busy one stays */
    return 0;
}
void th_dir_remove(void) {
    if (g_dir[0]) nftw(g_dir, remove_one, 16, FTW_DEPTH | FTW_PHYS);
    g_dir[0] = 0;
}
const char *th_dir(void) { return g_dir; }

const char *th_path_in(const char *name) {
    static char buf[8][256];
    static int k;
    k = (k + 1) % 8;
    snprintf(buf[k], sizeof buf[k], "%s/%s", g_dir, name);
    return buf[k];
}

/* a NumPy v1 file: header dict with descr, C order, shape; then the raw data (see helpers.h) */
void th_write_npy(const char *name, const char *descr, const void *data, size_t elem, int ndim, const int64_t *shape) {
    char dims[128] = "", header[256];
    size_t used = 0, n = 1;
    for (int d = 0; d < ndim; d++) {
        used += (size_t)snprintf(dims + used, sizeof dims - used, "%lld,%s", (long long)shape[d], d + 1 < ndim ? " " : "");
        n *= (size_t)shape[d];
    }
    if (ndim > 1) dims[used - 1] = 0;
    int hl = snprintf(header, sizeof header, "{'descr': '%s', 'fortran_order': False, 'shape': (%s), }", descr, dims);
    int pad = (64 - (10 + hl + 1) % 64) % 64;
    FILE *f = fopen(th_path_in(name), "wb");
    cr_assert(f);
    unsigned short len = (unsigned short)(hl + pad + 1);
    unsigned char pre[10] = {0x93, 'N', 'U', 'M', 'P', 'Y', 1, 0, (unsigned char)(len & 0xff), (unsigned char)(len >> 8)};
    fwrite(pre, 1, 10, f);
    fwrite(header, 1, (size_t)hl, f);
    for (int k = 0; k < pad; k++) fputc(' ', f);
    fputc('\n', f);
    fwrite(data, elem, n, f);
    fclose(f);
}

char *th_slurp(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) return strdup("");
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    if (n < 0) n = 0;
    char *s = malloc((size_t)n + 1);
    cr_assert(s != NULL, "no memory for %ld bytes of %s", n, path);
    size_t got = fread(s, 1, (size_t)n, f);
    s[got] = 0;
    fclose(f);
    return s;
}

/* ---- the tapegrad command ----------------------------------------------------------------------- */

double th_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

#ifndef TG_TAPEGRAD_EXE
#error "TG_TAPEGRAD_EXE must name the built tapegrad binary (tests/meson.build test_args)"
#endif

/* Plain arguments (no prefix, no shell metacharacter): tapegrad is exec'd directly, split at spaces, so
 * that valgrind --trace-children (which skips /bin/sh: scripts/valgrind-tests.sh) traces the command
 * itself; anything else goes through the shell. */
static bool plain_args(const char *prefix, const char *args) {
    return !*prefix && !strpbrk(args, "'\"\\$`;|&<>*?()[]{}~#\t\n");
}

static int exec_in_dir(char *args) {
    char *argv[256];
    int n = 0;
    argv[n++] = (char *)TG_TAPEGRAD_EXE;
    for (char *tok = strtok(args, " "); tok && n < 255; tok = strtok(NULL, " ")) argv[n++] = tok;
    argv[n] = NULL;
    fflush(NULL);
    pid_t pid = fork();
    cr_assert(pid >= 0, "fork: %s", strerror(errno));
    if (pid == 0) {
        int in = open("/dev/null", O_RDONLY);
        if (chdir(g_dir) != 0 || in < 0) _exit(126);
        int out = open("stdout.txt", O_WRONLY | O_CREAT | O_TRUNC, 0644),
            err = open("stderr.txt", O_WRONLY | O_CREAT | O_TRUNC, 0644);
        if (out < 0 || err < 0) _exit(126);
        dup2(in, 0);
        dup2(out, 1);
        dup2(err, 2);
        execv(argv[0], argv);
        _exit(127);
    }
    int s = 0;
    while (waitpid(pid, &s, 0) < 0) cr_assert(errno == EINTR, "waitpid: %s", strerror(errno));
    return s;
}

th_run_result th_run_with(const char *prefix, const char *fmt, ...) {
    char args[4096], cmd[8192];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(args, sizeof args, fmt, ap);
    va_end(ap);
    double t0 = th_now();
    int s;
    if (plain_args(prefix, args)) {
        s = exec_in_dir(args);
    } else {
        snprintf(cmd, sizeof cmd, "cd '%s' && %s '%s' %s </dev/null >stdout.txt 2>stderr.txt", g_dir, prefix,
                 TG_TAPEGRAD_EXE, args);
        s = system(cmd);
    }
    th_run_result r = {WIFEXITED(s) ? WEXITSTATUS(s) : -1, th_now() - t0, th_slurp(th_path_in("stdout.txt")),
                       th_slurp(th_path_in("stderr.txt"))};
    return r;
}

th_run_result th_run_ok(const char *fmt, ...) {
    char args[4096];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(args, sizeof args, fmt, ap);
    va_end(ap);
    th_run_result r = th_run("%s", args);
    cr_assert_eq(r.status, 0, "'tapegrad %s' exited %d: %s", args, r.status, r.err);
    return r;
}

void th_expect_usage_error(const char *args, const char *needle1, const char *needle2) {
    th_run_result r = th_run("%s", args);
    cr_expect_eq(r.status, 2, "'tapegrad %s' exited %d, expected 2; stderr: %s", args, r.status, r.err);
    cr_expect(strstr(r.err, needle1) != NULL, "'tapegrad %s': stderr lacks '%s': %s", args, needle1, r.err);
    if (needle2) cr_expect(strstr(r.err, needle2) != NULL, "'tapegrad %s': stderr lacks '%s': %s", args, needle2, r.err);
    cr_expect(strchr(r.err, '\n') != NULL, "'tapegrad %s': no message", args);
    th_run_free(&r);
}

void th_run_free(th_run_result *r) {
    free(r->out);
    free(r->err);
    r->out = r->err = NULL;
}
