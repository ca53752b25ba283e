/* tests/helpers.h - shared test utilities: a recording error handler, leak baseline, random tensors,
 * comparisons, a temporary directory per test and runs of the built `tapegrad` command. Every test
 * executable links tests/helpers.c (tests/meson.build). */
#ifndef TG_TEST_HELPERS_H
#define TG_TEST_HELPERS_H
#include <stdbool.h>
#include <stddef.h>
#include <tapegrad/nn.h>
#include <tapegrad/tapegrad.h>

#ifndef TG_TEST_DATA_DIR
#define TG_TEST_DATA_DIR "tests/data"
#endif

/* ---- errors and leaks --------------------------------------------------------------------------- */

/* Installs a handler that records messages instead of aborting; returns the number of errors seen. */
void th_record_errors(void);
int th_error_count(void);
const char *th_last_message(void); /* the first message since th_record_errors / th_reset_errors */
void th_reset_errors(void);
/* Runs fn() in a forked child with the default error handler and catches its stderr in buf[size]
 * (NUL-terminated, truncated). returns: the signal that ended the child (SIGABRT for the default
 * handler), or 0 if it exited (normally, or -1 when the fork or pipe failed). */
int th_child_stderr(void (*fn)(void), char *buf, size_t size);
/* th_live_start (a suite's .init) remembers tg_live_tensors(); th_live_check resets the tape and
 * requires the same count again ("live tensors: N at start, M at the end"). Run it inside the test with
 * TH_TEST: Criterion reports an assertion in a suite's .fini but does not fail the test for it. */
void th_live_start(void);
void th_live_check(void);
/* For suites whose library calls must not fail: th_quiet_start (in .init) is th_live_start plus a handler
 * that logs every message and counts it (th_quiet_handler installs it again after a test changed it);
 * th_quiet_check requires no leak (without resetting the tape) and no message. */
void th_quiet_start(void);
void th_quiet_handler(void);
void th_quiet_check(void);
/* Test(suite, name) whose body is followed by check() inside the test, so that a failed check fails
 * the test (Criterion 2.4 ignores assertions and even crashes in a suite's .fini). */
#define TH_TEST(suite, name, check)            \
    static void th_body_##suite##_##name(void); \
    Test(suite, name) {                         \
        th_body_##suite##_##name();             \
        check();                                \
    }                                           \
    static void th_body_##suite##_##name(void)

/* ---- tensors ------------------------------------------------------------------------------------ */

/* F64 tensor with uniform values in [lo, hi) from a seeded generator. returns: new ref */
tg_tensor *th_rand(uint64_t seed, int ndim, const int64_t *shape, double lo, double hi);
/* max |a - b| / max(1, max |b|) over the elements (a and b must have as many; the test fails if not).
 * args: borrowed */
double th_scaled_diff(const tg_tensor *a, const tg_tensor *b);

/* max |a - b| over the elements (shapes must match; the test fails if not). args: borrowed */
double th_max_diff(const tg_tensor *a, const tg_tensor *b);

/* ---- recurrent models (F64) --------------------------------------------------------------------- */

/* An F64 model of the named cell, its parameters from a generator seeded with seed (the test fails if
 * tg_rnn_new refuses). returns: new model */
tg_rnn *th_make_rnn(const char *cell, int64_t I, int64_t H, int L, bool bidir, uint64_t seed);
/* Each part flattened to 1-D, concatenated: one output covering output and states (n <= 1 + TG_CELL_MAX_STATES).
 * returns: tape-owned */
tg_tensor *th_cat_flat(int n, tg_tensor *const *parts);
/* A forward to gradcheck: x, the given initial states and every parameter of m as inputs; the output
 * and the final states flattened into one output. */
typedef struct th_rnn_case {
    tg_rnn *m;
    tg_rnn_forward_opts opts;
    int n_init;         /* initial states given as gradcheck inputs[1 .. n_init] */
    uint64_t mask_seed; /* != 0: train, with a generator seeded afresh on every call (same masks each time) */
} th_rnn_case;
/* Gradchecks rc w.r.t. x, init[0 .. n_init-1] and every parameter of the model; the test fails naming
 * each input that does not pass, prefixed by `what`. */
void th_check_grads(th_rnn_case *rc, tg_tensor *x, tg_tensor *const *init, const char *what);

/* ---- files -------------------------------------------------------------------------------------- */

/* A suite's .init / .fini pair: a fresh directory /tmp/tg_test_XXXXXX (the test fails if it cannot be
 * made), and its removal with everything in it. */
void th_dir_make(void);
void th_dir_remove(void);
const char *th_dir(void);
/* "DIR/name" in the test's directory; the last 8 results stay valid. */
const char *th_path_in(const char *name);
/* Writes DIR/name as a NumPy v1 .npy of ndim dimensions `shape` and dtype `descr` ("<f8", "<i8", ...)
 * holding the elements of data (elem bytes each, C order); the test fails if it cannot. */
void th_write_npy(const char *name, const char *descr, const void *data, size_t elem, int ndim, const int64_t *shape);
/* The whole file as a NUL-terminated string, "" if it cannot be read. returns: malloc'd */
char *th_slurp(const char *path);

/* ---- the tapegrad command (TG_TAPEGRAD_EXE) ----------------------------------------------------- */

typedef struct th_run_result {
    int status;     /* exit status; -1 if it did not exit normally (a signal, a watchdog) */
    double seconds; /* wall time of the run */
    char *out;      /* stdout (malloc'd) */
    char *err;      /* stderr (malloc'd) */
} th_run_result;

/* Runs `PREFIX tapegrad ARGS` through the shell in the test's directory, stdin /dev/null, stdout and
 * stderr to stdout.txt / stderr.txt there. prefix is a shell fragment ("" or e.g. "ulimit -v 400000;"),
 * ARGS a shell-quoted argument string from fmt. */
th_run_result th_run_with(const char *prefix, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
#define th_run(...) th_run_with("", __VA_ARGS__)
void th_run_free(th_run_result *r);
/* th_run that must succeed: asserts exit status 0 (the message names the arguments and stderr). */
th_run_result th_run_ok(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Bad usage: `tapegrad ARGS` exits with status 2 and a message (a line) on stderr that contains needle1
 * and, unless NULL, needle2. */
void th_expect_usage_error(const char *args, const char *needle1, const char *needle2);
/* seconds on a monotonic clock */
double th_now(void);
#endif
