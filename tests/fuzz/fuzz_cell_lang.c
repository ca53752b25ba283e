/* tests/fuzz/fuzz_cell_lang.c - libFuzzer target for the cell language's parser (nn/cell_lang.c).
 * Seeds: tests/fuzz/corpus/cell_lang (the docs/cells .cell files); dictionary tests/fuzz/cell_lang.dict.
 *
 * Beyond fuzz.h: a failure always carries a "LINE:COL: " message, and a success gives a cell that
 * tg_rnn_new accepts or refuses with a message (a size constraint); when the definition declares no
 * parameter of its own (no '[' in it: a hostile shape could ask for gigabytes, which tg_rnn_new would
 * refuse only above its memory check), the model also runs two steps forward and backward. */
#include "fuzz.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size > 8192) return 0;
    char *src = malloc(size + 1);
    if (!src) return 0;
    memcpy(src, data, size);
    src[size] = 0;
    long live = fz_begin();
    char err[256] = "";
    tg_cell_def *d = tg_cell_def_parse("fuzz", src, err, sizeof err);
    FZ_CHECK(fz_handler_calls == 0);                               /* a data error went through the handler */
    if (!d) FZ_CHECK(isdigit((unsigned char)err[0]) && strchr(err, ':')); /* no LINE:COL: message */
    if (d) {
        const tg_cell *c = tg_cell_def_cell(d);
        FZ_CHECK(c->n_states >= 1 && c->n_states <= TG_CELL_MAX_STATES && c->gates >= 1 && c->step);
        FILE *null = fopen("/dev/null", "w");
        if (null) { tg_cell_def_print(null, d); fclose(null); }
        if (!memchr(data, '[', size)) {
            tg_rnn_config cfg = {.input_size = 3, .hidden_size = 3, .dtype = TG_F64};
            tg_rnn *m = tg_rnn_new(c, &cfg, NULL);
            if (m) {
                tg_tensor *x = tg_rand_uniform(NULL, TG_F64, TG_SHAPE(2, 2, 3), -1, 1);
                tg_tensor *y = tg_rnn_forward(m, x, NULL, NULL);
                if (y) tg_backward(tg_sum(y));                     /* op errors (log of a negative: NaN is fine) */
                tg_tape_reset();
                tg_release(x);
                tg_rnn_free(m);
            } else {
                FZ_CHECK(tg_error_pending());                      /* refused without a message */
            }
        }
    }
    tg_cell_def_free(d);
    free(src);
    fz_handler_calls = 0; /* op errors of a running definition (a bad shape) are reported, not data errors */
    fz_end(live);
    return 0;
}
