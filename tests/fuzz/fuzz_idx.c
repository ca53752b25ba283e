/* tests/fuzz/fuzz_idx.c - libFuzzer target for IDX files (data/idx.c), gzip-compressed or not as
 * tg_dataset_load reads them: a gzip image is inflated first (data/inflate.c, at most 1 MiB out), then
 * parsed as IDX and turned into a dataset. Byte 0 the options (fuzz_data.h), the rest the file.
 * Seeds: tests/fuzz/corpus/idx (MNIST-format images and labels, plain and .gz). */
#include "fuzz_data.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1) return 0;
    long live = fz_begin();
    tg_data_options opt = fz_options(data[0]);
    unsigned char *img = fz_image(data + 1, size - 1), *raw = NULL;
    size_t len = size - 1;
    char err[512] = "";
    if (len >= 2 && img[0] == 0x1f && img[1] == 0x8b) {
        if (tg_gunzip(img, len, "fuzz.gz", opt.max_bytes, &raw, &len, err, sizeof err)) {
            FZ_CHECK(raw == NULL);
            fz_check_message(err);
            goto done;
        }
        FZ_CHECK(len <= opt.max_bytes);
        free(img);
        img = fz_image(raw, len);
    }
    tgd_array x;
    if (tgd_idx_parse(img, len, "fuzz-idx3-ubyte", &x, err, sizeof err) == 0) {
        fz_touch(x.data, (size_t)x.numel * tgd_elem_size(x.elem));
        double scale = x.elem == TGD_U8 ? 1.0 / 255.0 : 1.0;
        fz_check_dataset(tgd_from_arrays(&x, NULL, data[0] & 128 ? &x : NULL, &opt, scale, err, sizeof err), err);
    } else {
        fz_check_message(err);
    }
done:
    free(raw);
    free(img);
    fz_end(live);
    return 0;
}
