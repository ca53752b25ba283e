/* tests/fuzz/fuzz.h - what every libFuzzer target here checks beyond the sanitizers.
 *
 * Built by meson with -Dfuzz=true (clang; see scripts/fuzz.sh and README "Hardening"). Each target feeds
 * one reader a hostile input and holds it to the library's contract for data errors (docs/design.md §6):
 *   - the error handler is never called (a bad file is a data error, reported quietly; the handler is
 *     for programming errors and may abort);
 *   - a failure always carries a message, a success never leaves one pending;
 *   - every tensor made while reading comes back (tg_live_tensors; tensors are pooled, so LeakSanitizer
 *     alone would not see one kept);
 *   - whatever is returned is touched in full, so ASan sees any read past what was allocated.
 * A broken contract is __builtin_trap(), which libFuzzer reports as a crash with the input saved. */
#ifndef TG_FUZZ_H
#define TG_FUZZ_H
#include <tapegrad/tapegrad.h>

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdint.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FZ_CHECK(cond) do { if (!(cond)) __builtin_trap(); } while (0)

static int fz_handler_calls;

static void fz_count_error(const char *message, void *user) {
    (void)message;
    (void)user;
    fz_handler_calls++;
}

/* Call at the start of every input: installs the counting handler once, clears the error state and
 * returns the live-tensor baseline for fz_end. */
static inline long fz_begin(void) {
    static int initialised;
    if (!initialised) {
        tg_set_error_handler(fz_count_error, NULL);
        initialised = 1;
    }
    fz_handler_calls = 0;
    tg_clear_error();
    return tg_live_tensors();
}

/* Call at the end of every input: nothing went through the handler, every tensor came back. */
static inline void fz_end(long live) {
    tg_tape_reset();
    FZ_CHECK(fz_handler_calls == 0);
    FZ_CHECK(tg_live_tensors() == live);
    tg_clear_error();
}

/* Reads every byte of [p, p + n) (ASan reports any of them outside an allocation). */
static inline void fz_touch(const void *p, size_t n) {
    volatile unsigned char sink = 0;
    const unsigned char *b = p;
    for (size_t k = 0; k < n; k++) sink ^= b[k];
    (void)sink;
}

/* A refusal's message: present, one line, printable. */
static inline void fz_check_message(const char *err) {
    bool ok = err && err[0] && !strchr(err, '\n');
    if (!ok) fprintf(stderr, "fuzz: bad message: '%s'\n", err ? err : "(NULL)");
    FZ_CHECK(ok);
}
#endif
