/* tests/fuzz/fuzz_data.h - shared by the data-reader targets (fuzz_csv, fuzz_npy, fuzz_idx, fuzz_data_st):
 * the options byte, the file image as the readers get it, and the checks on a dataset a reader accepted.
 *
 * Every data target reads its first byte as options (so the fuzzer explores them too) and the rest as
 * the file:
 *   bit 0   seq_column "s"            bit 1   label_column "y"
 *   bits 2-3 label_kind (NONE, CLASS, TAG, VALUE)
 *   bit 4   feature_columns {"a", "b"} bits 5-6 layout2d (AUTO, NT, TI; 3 = AUTO)
 *   bit 7   the array is also its own labels (npy, IDX: exercises the label-shape rules)
 * A dataset that loads must be consistent (lengths 1..max_len, labels within their classes, finite
 * values, a name per feature), fit a normalisation, and make a batch of its first sequences. */
#ifndef TG_FUZZ_DATA_H
#define TG_FUZZ_DATA_H
#include "fuzz.h"
#include "data/internal.h"

#include <math.h>
#include <stdlib.h>

static const char *const fz_features[] = {"a", "b", NULL};

static inline tg_data_options fz_options(unsigned char b) {
    tg_data_options o = {0};
    if (b & 1) o.seq_column = "s";
    if (b & 2) o.label_column = "y";
    o.label_kind = (tg_label_kind)((b >> 2) & 3);
    if (b & 16) o.feature_columns = fz_features;
    int l = (b >> 5) & 3;
    o.layout2d = l == 3 ? TG_2D_AUTO : (tg_layout2d)l;
    o.max_bytes = 1 << 20;
    return o;
}

/* The readers get a malloc'd image with a NUL after it (tgd_read_file); so do the targets, in a
 * buffer of exactly that size so ASan sees a read past it. returns: malloc'd (free) */
static inline unsigned char *fz_image(const uint8_t *data, size_t size) {
    unsigned char *b = malloc(size + 1);
    if (!b) abort();
    if (size) memcpy(b, data, size);
    b[size] = 0;
    return b;
}

/* NULL with a message, or a consistent dataset (freed here). */
static inline void fz_check_dataset(tg_dataset *ds, const char *err) {
    if (!ds) { fz_check_message(err); return; }
    int64_t N = tg_dataset_size(ds), I = tg_dataset_features(ds), T = tg_dataset_max_length(ds);
    FZ_CHECK(N >= 1 && I >= 1 && T >= 1);
    tg_label_kind kind = tg_dataset_label_kind(ds);
    int64_t C = tg_dataset_classes(ds), O = tg_dataset_outputs(ds);
    FZ_CHECK(kind == TG_LABELS_NONE || kind == TG_LABELS_VALUE ? C == 0 : C >= 1 && C <= TG_DATA_MAX_CLASSES);
    FZ_CHECK(kind == TG_LABELS_VALUE ? O >= 1 : O == 0);
    int64_t longest = 0;
    for (int64_t i = 0; i < I; i++) FZ_CHECK(tg_dataset_feature_name(ds, i) != NULL);
    for (int64_t n = 0; n < N; n++) {
        int64_t len = tg_dataset_length(ds, n);
        FZ_CHECK(len >= 1 && len <= T);
        if (len > longest) longest = len;
        const double *x = tg_dataset_seq(ds, n);
        for (int64_t k = 0; k < len * I; k++) FZ_CHECK(isfinite(x[k]));
        if (kind == TG_LABELS_CLASS) FZ_CHECK(tg_dataset_label(ds, n) >= 0 && tg_dataset_label(ds, n) < C);
        if (kind == TG_LABELS_TAG) {
            const int64_t *tags = tg_dataset_tags(ds, n);
            for (int64_t t = 0; t < len; t++) FZ_CHECK(tags[t] >= 0 && tags[t] < C);
        }
        if (kind == TG_LABELS_VALUE) {
            const double *v = tg_dataset_values(ds, n);
            for (int64_t o = 0; o < O; o++) FZ_CHECK(isfinite(v[o]));
        }
    }
    FZ_CHECK(longest == T);
    char e2[256] = "";
    tg_norm norm = {0};
    if (tg_norm_fit(ds, &norm, e2, sizeof e2) == 0) {
        for (int64_t i = 0; i < I; i++) FZ_CHECK(norm.std[i] > 0);
        tg_norm_clear(&norm);
    } else {
        fz_check_message(e2);
    }
    int64_t index[3], B = N < 3 ? N : 3;
    for (int64_t k = 0; k < B; k++) index[k] = N - 1 - k;
    tg_batch b = {0};
    if (tg_batch_make(ds, index, B, TG_F32, &b, e2, sizeof e2) == 0) {
        FZ_CHECK(b.B == B && b.x && tg_dim(b.x, 1) == B && tg_dim(b.x, 2) == I);
        fz_touch(tg_cdata(b.x), (size_t)tg_numel(b.x) * 4);
    } else {
        fz_check_message(e2);
    }
    tg_batch_clear(&b);
    tg_dataset_free(ds);
}
#endif
