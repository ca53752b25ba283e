/* tests/fuzz/fuzz_npy.c - libFuzzer target for the .npy reader (data/npy.c) and the shape rules that
 * turn an array into a dataset (data/load.c tgd_from_arrays): byte 0 the options (fuzz_data.h), the
 * rest the file. Seeds: tests/fuzz/corpus/npy. */
#include "fuzz_data.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1) return 0;
    long live = fz_begin();
    tg_data_options opt = fz_options(data[0]);
    unsigned char *img = fz_image(data + 1, size - 1);
    char err[512] = "";
    tgd_array x;
    if (tgd_npy_parse(img, size - 1, "fuzz.npy", &x, err, sizeof err) == 0) {
        fz_touch(x.data, (size_t)x.numel * tgd_elem_size(x.elem));
        fz_check_dataset(tgd_from_arrays(&x, NULL, data[0] & 128 ? &x : NULL, &opt, 1.0, err, sizeof err), err);
    } else {
        fz_check_message(err);
    }
    free(img);
    fz_end(live);
    return 0;
}
