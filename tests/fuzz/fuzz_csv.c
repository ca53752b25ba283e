/* tests/fuzz/fuzz_csv.c - libFuzzer target for the CSV reader (data/csv.c): byte 0 the options
 * (fuzz_data.h), the rest the file. Seeds: tests/fuzz/corpus/csv. */
#include "fuzz_data.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1) return 0;
    long live = fz_begin();
    tg_data_options opt = fz_options(data[0]);
    unsigned char *img = fz_image(data + 1, size - 1);
    char err[512] = "";
    fz_check_dataset(tgd_csv_parse(img, size - 1, "fuzz.csv", NULL, &opt, err, sizeof err), err);
    free(img);
    fz_end(live);
    return 0;
}
