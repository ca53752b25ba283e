/* tests/fuzz_safetensors.c - libFuzzer target for the safetensors reader (docs/design.md §9).
 *
 *   clang -std=c11 -g -O1 -fsanitize=fuzzer,address,undefined -Iinclude -I. \
 *         tensor/[a-z]*.c tests/fuzz_safetensors.c -lm -lpthread -o fuzz_safetensors
 *   mkdir -p corpus && cp tests/data/conformance/[0-9]*.safetensors corpus/
 *   ./fuzz_safetensors -max_total_time=180 -max_len=70000 corpus
 *
 * Beyond the sanitizers, each input checks the contract of tg_st_parse: it never calls the error handler
 * (data errors are quiet), it fails with a message or succeeds with consistent contents, and tg_st_free
 * returns every tensor it created (tg_live_tensors is back where it was; tensors are pooled, so
 * LeakSanitizer alone would not notice).
 */
#include <tapegrad/safetensors.h>

#include <stdlib.h>
#include <string.h>

static int g_handler_calls;

/* No-op handler: never aborts, but counts, because the reader must not call it at all. */
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
    tg_clear_error();
    long live = tg_live_tensors();

    tg_st_file *f = tg_st_parse(data, size);
    if (g_handler_calls) __builtin_trap();              /* a data error went through the handler */
    if (!f && !tg_error_pending()) __builtin_trap();     /* failure without a message */
    if (f) {
        if (tg_error_pending()) __builtin_trap();        /* success must not leave a message */
        for (int i = 0; i < tg_st_count(f); i++) {
            const char *name = tg_st_name_at(f, i);
            tg_tensor *t = tg_st_tensor_at(f, i);
            if (!name || !name[0] || !t || tg_st_get(f, name) != t) __builtin_trap();
            /* touch the data so ASan sees any out-of-bounds copy */
            volatile unsigned char sink = 0;
            const unsigned char *p = tg_cdata(t);
            size_t bytes = (size_t)tg_numel(t) * tg_itemsize(tg_dtype_of(t));
            for (size_t k = 0; k < bytes; k += 61) sink ^= p[k];
            (void)sink;
        }
        for (int i = 0; i < tg_st_meta_count(f); i++)
            if (strlen(tg_st_meta_key(f, i)) > size || tg_st_meta(f, tg_st_meta_key(f, i)) != tg_st_meta_value(f, i))
                __builtin_trap();
    }
    tg_st_free(f);
    if (tg_live_tensors() != live) __builtin_trap();     /* a tensor leaked */
    tg_clear_error();
    return 0;
}
