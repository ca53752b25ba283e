/* tests/helpers.h - shared test utilities: a recording error handler, leak baseline, random tensors. */
#ifndef TG_TEST_HELPERS_H
#define TG_TEST_HELPERS_H
#include <tapegrad/tapegrad.h>

#ifndef TG_TEST_DATA_DIR
#define TG_TEST_DATA_DIR "tests/data"
#endif

/* Installs a handler that records messages instead of aborting; returns the number of errors seen. */
void th_record_errors(void);
int th_error_count(void);
const char *th_last_message(void); /* the first message since th_record_errors / th_reset_errors */
void th_reset_errors(void);
/* F64 tensor with uniform values in [lo, hi) from a seeded generator. returns: new ref */
tg_tensor *th_rand(uint64_t seed, int ndim, const int64_t *shape, double lo, double hi);
/* Runs fn() in a forked child with the default error handler and catches its stderr in buf[size]
 * (NUL-terminated, truncated). returns: the signal that ended the child (SIGABRT for the default
 * handler), or 0 if it exited (normally, or -1 when the fork or pipe failed). */
int th_child_stderr(void (*fn)(void), char *buf, size_t size);
#endif
