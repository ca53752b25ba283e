/* tests/fuzz/fuzz_safetensors.c - libFuzzer target for the safetensors reader (tensor/safetensors.c,
 * docs/design.md §9). Seeds: tests/fuzz/corpus/safetensors. See fuzz.h for the contract checked.
 *
 * Beyond fuzz.h: tg_st_parse fails with a message or succeeds with consistent contents (every name
 * found again by tg_st_get, every tensor's data readable, every metadata value found by its key), and
 * tg_st_free returns every tensor it created. */
#include "fuzz.h"

#include <tapegrad/safetensors.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    long live = fz_begin();
    tg_st_file *f = tg_st_parse(data, size);
    FZ_CHECK(f || tg_error_pending());                  /* failure without a message */
    if (!f) fz_check_message(tg_last_error());
    if (f) {
        FZ_CHECK(!tg_error_pending());                  /* success must not leave a message */
        for (int i = 0; i < tg_st_count(f); i++) {
            const char *name = tg_st_name_at(f, i);
            tg_tensor *t = tg_st_tensor_at(f, i);
            FZ_CHECK(name && name[0] && t && tg_st_get(f, name) == t);
            fz_touch(tg_cdata(t), (size_t)tg_numel(t) * tg_itemsize(tg_dtype_of(t)));
        }
        for (int i = 0; i < tg_st_meta_count(f); i++) {
            FZ_CHECK(strlen(tg_st_meta_key(f, i)) <= size);
            FZ_CHECK(tg_st_meta(f, tg_st_meta_key(f, i)) == tg_st_meta_value(f, i));
        }
    }
    tg_st_free(f);
    fz_end(live);
    return 0;
}
