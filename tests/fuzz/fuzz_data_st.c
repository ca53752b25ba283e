/* tests/fuzz/fuzz_data_st.c - libFuzzer target for datasets stored as safetensors (data/st.c: tensors
 * "x", "y", "lengths" in F32/F64/I64/I32/U8): byte 0 the options (fuzz_data.h), the rest the file.
 * Seeds: tests/fuzz/corpus/data_st. The safetensors parser itself has its own target. */
#include "fuzz_data.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1) return 0;
    long live = fz_begin();
    tg_data_options opt = fz_options(data[0]);
    unsigned char *img = fz_image(data + 1, size - 1);
    char err[512] = "";
    fz_check_dataset(tgd_st_parse(img, size - 1, "fuzz.safetensors", NULL, &opt, err, sizeof err), err);
    free(img);
    fz_end(live);
    return 0;
}
