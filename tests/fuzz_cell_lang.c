/* tests/fuzz_cell_lang.c - libFuzzer target for the cell language's parser (nn/cell_lang.c).
 *
 *   clang -std=c11 -g -O1 -fsanitize=fuzzer,address,undefined -Iinclude -I. \
 *         tensor/[a-z]*.c autograd/[a-z]*.c nn/[a-z]*.c tests/fuzz_cell_lang.c -lm -lpthread -o fuzz_cell_lang
 *   mkdir -p corpus && cp docs/cells/?*.cell corpus/
 *   ./fuzz_cell_lang -max_total_time=180 -max_len=4096 -dict=tests/fuzz_cell_lang.dict corpus
 *
 * Beyond the sanitizers, each input checks the contract of tg_cell_def_parse: it never calls the error
 * handler (a bad definition is a data error), a failure always carries a "LINE:COL: " message, and a
 * success gives a cell that tg_rnn_new accepts or refuses with a message (a size constraint); when the
 * definition declares no parameter of its own (no '[' in it: a hostile shape could ask for gigabytes,
 * which tg_rnn_new would refuse only above 2^28 elements), the model also runs two steps forward and
 * backward, and every tensor comes back (tg_live_tensors).
 */
#include <tapegrad/tapegrad.h>

#include <ctype.h>
#include <stdlib.h>
#include <string.h>

static int g_handler_calls;

static void count_error(const char *message, void *user) {
    (void)message;
    (void)user;
    g_handler_calls++;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static int initialised;
    if (!initialised) {
        tg_set_error_handler(count_error, NULL);
        initialised = 1;
    }
    if (size > 8192) return 0;
    char *src = malloc(size + 1);
    if (!src) return 0;
    memcpy(src, data, size);
    src[size] = 0;
    tg_clear_error();
    long live = tg_live_tensors();
    g_handler_calls = 0;
    char err[256] = "";
    tg_cell_def *d = tg_cell_def_parse("fuzz", src, err, sizeof err);
    if (g_handler_calls) __builtin_trap();                       /* a data error went through the handler */
    if (!d && !(isdigit((unsigned char)err[0]) && strchr(err, ':'))) __builtin_trap(); /* no LINE:COL: message */
    if (d) {
        const tg_cell *c = tg_cell_def_cell(d);
        if (c->n_states < 1 || c->n_states > TG_CELL_MAX_STATES || c->gates < 1 || !c->step) __builtin_trap();
        FILE *null = fopen("/dev/null", "w");
        if (null) { tg_cell_def_print(null, d); fclose(null); }
        if (!memchr(data, '[', size)) {
            tg_rnn_config cfg = {.input_size = 3, .hidden_size = 3, .dtype = TG_F64};
            tg_rnn *m = tg_rnn_new(c, &cfg, NULL);
            if (m) {
                tg_tensor *x = tg_rand_uniform(NULL, TG_F64, TG_SHAPE(2, 2, 3), -1, 1);
                tg_tensor *y = tg_rnn_forward(m, x, NULL, NULL);
                if (y) tg_backward(tg_sum(y));                    /* op errors (e.g. log of a negative: NaN is fine) */
                tg_tape_reset();
                tg_release(x);
                tg_rnn_free(m);
            } else if (!tg_error_pending()) __builtin_trap();   /* refused without a message */
        }
    }
    tg_cell_def_free(d);
    free(src);
    tg_tape_reset();
    if (tg_live_tensors() != live) __builtin_trap();
    tg_clear_error();
    return 0;
}
