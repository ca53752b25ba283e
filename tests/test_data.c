/* tests/test_data.c - the data API (include/tapegrad/data.h): datasets, readers, split, windows,
 * normalisation, batching.
 *
 * What is checked:
 *   - tg_dataset_from_tensor round trips (F32/F64, lengths, CLASS/TAG/VALUE labels) and its argument
 *     errors, each with its message;
 *   - .npy files written by numpy (tests/data/datasets, made by gen_data_fixtures.py) load with the values
 *     numpy wrote; files written here round-trip; a table of malformed files is rejected, each with
 *     its message (file name and byte offset included) and nothing leaked;
 *   - split (deterministic from the seed, disjoint, covering), subset, windows (targets), normalisation
 *     (statistics, text round trip, malformed strings);
 *   - batching: every sequence exactly once per epoch, zero padding past each length, lengths, labels
 *     (TAG padding = -100), same seed = same batches, restore continues identically.
 * Every test ends with: no tensor leaked and the error handler was never called (data errors are quiet).
 */
#define _POSIX_C_SOURCE 200809L
#include <criterion/criterion.h>
#include <tapegrad/data.h>

#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "data/internal.h"
#include "helpers.h"

#ifndef TG_TEST_DATA_DIR
#define TG_TEST_DATA_DIR "tests/data"
#endif
#define FIX TG_TEST_DATA_DIR "/datasets/"

/* ---- fixture: temp directory, live-tensor baseline, handler that must stay silent --------------- */

static char g_err[512];

static void setup(void) {
    th_quiet_start();
    th_dir_make();
    g_err[0] = 0;
}

static void teardown(void) {
    th_dir_remove();
    tg_set_error_handler(NULL, NULL);
}

TestSuite(data, .init = setup, .fini = teardown);

static const char *write_file(const char *name, const void *bytes, size_t n) {
    const char *p = th_path_in(name);
    FILE *f = fopen(p, "wb");
    cr_assert_not_null(f);
    cr_assert_eq(fwrite(bytes, 1, n, f), n);
    fclose(f);
    return p;
}

/* A .npy v1.0 image: header dict `dict` padded to 64 bytes, then `data`. Returns its length. */
static size_t npy_image(unsigned char *buf, const char *dict, const void *data, size_t n) {
    size_t dl = strlen(dict), hl = (10 + dl + 1 + 63) / 64 * 64 - 10;
    memcpy(buf, "\x93NUMPY\x01\x00", 8);
    buf[8] = (unsigned char)(hl & 0xff);
    buf[9] = (unsigned char)(hl >> 8);
    memcpy(buf + 10, dict, dl);
    memset(buf + 10 + dl, ' ', hl - dl - 1);
    buf[10 + hl - 1] = '\n';
    memcpy(buf + 10 + hl, data, n);
    return 10 + hl + n;
}

static const char *write_npy(const char *name, const char *dict, const void *data, size_t n) {
    static unsigned char buf[1 << 16];
    return write_file(name, buf, npy_image(buf, dict, data, n));
}

#define EXPECT_ERR(cond, ...)                                                                         \
    do {                                                                                              \
        cr_expect(cond, __VA_ARGS__);                                                                 \
    } while (0)
/* Asserts that err contains every one of the given fragments. */
static void expect_msg(const char *err, const char *a, const char *b) {
    cr_expect(strstr(err, a) != NULL, "message \"%s\" lacks \"%s\"", err, a);
    if (b) cr_expect(strstr(err, b) != NULL, "message \"%s\" lacks \"%s\"", err, b);
}

/* A [N,T,I] F64 tensor with x[n,t,i] = 100 n + 10 t + i. returns: new ref */
static tg_tensor *grid(int64_t N, int64_t T, int64_t I) {
    tg_tensor *x = tg_empty(TG_F64, TG_SHAPE(N, T, I));
    double *d = tg_f64(x);
    for (int64_t n = 0; n < N; n++)
        for (int64_t t = 0; t < T; t++)
            for (int64_t i = 0; i < I; i++) d[(n * T + t) * I + i] = 100.0 * n + 10.0 * t + i;
    return x;
}

/* ---- from_tensor and accessors ----------------------------------------------------------------- */

TH_TEST(data, from_tensor_round_trip_with_lengths_and_every_label_kind, th_quiet_check) {
    tg_tensor *x = grid(3, 4, 2);
    int64_t len[3] = {4, 2, 3};
    int64_t cls[3] = {1, 4, 0};
    int64_t tags[12] = {0, 1, 2, 3, 5, 5, 99, 99, 1, 1, 1, 99}; /* 99s are past the lengths: ignored */
    double vals[6] = {0.5, -1, 2, 3, 4, 5};
    for (int kind = TG_LABELS_NONE; kind <= TG_LABELS_VALUE; kind++) {
        const void *lab = kind == TG_LABELS_CLASS ? (const void *)cls : kind == TG_LABELS_TAG ? (const void *)tags
                        : kind == TG_LABELS_VALUE ? (const void *)vals : NULL;
        tg_dataset *ds = tg_dataset_from_tensor(x, len, (tg_label_kind)kind, lab, 2, g_err, sizeof g_err);
        cr_assert_not_null(ds, "%s", g_err);
        cr_expect_eq(tg_dataset_size(ds), 3);
        cr_expect_eq(tg_dataset_features(ds), 2);
        cr_expect_eq(tg_dataset_max_length(ds), 4);
        cr_expect_eq(tg_dataset_label_kind(ds), kind);
        for (int64_t n = 0; n < 3; n++) {
            cr_expect_eq(tg_dataset_length(ds, n), len[n]);
            const double *s = tg_dataset_seq(ds, n);
            for (int64_t t = 0; t < len[n]; t++)
                for (int64_t i = 0; i < 2; i++) cr_expect_eq(s[t * 2 + i], 100.0 * n + 10.0 * t + i);
        }
        cr_expect_str_eq(tg_dataset_feature_name(ds, 1), "x1");
        if (kind == TG_LABELS_CLASS) {
            cr_expect_eq(tg_dataset_classes(ds), 5);
            cr_expect_eq(tg_dataset_label(ds, 1), 4);
        }
        if (kind == TG_LABELS_TAG) {
            cr_expect_eq(tg_dataset_classes(ds), 6, "C = max tag within the lengths + 1 (the 99s are ignored)");
            cr_expect_eq(tg_dataset_tags(ds, 1)[1], 5);
            cr_expect_eq(tg_dataset_tags(ds, 2)[2], 1);
        }
        if (kind == TG_LABELS_VALUE) {
            cr_expect_eq(tg_dataset_outputs(ds), 2);
            cr_expect_eq(tg_dataset_values(ds, 2)[0], 4.0);
        }
        tg_dataset_free(ds);
    }
    tg_tensor *x32 = tg_to_dtype(x, TG_F32);
    tg_dataset *ds = tg_dataset_from_tensor(x32, NULL, TG_LABELS_NONE, NULL, 0, g_err, sizeof g_err);
    cr_assert_not_null(ds, "%s", g_err);
    cr_expect_eq(tg_dataset_length(ds, 2), 4);
    cr_expect_eq(tg_dataset_seq(ds, 2)[7], 231.0);
    tg_dataset_free(ds);
    tg_release(x32);
    tg_release(x);
    tg_dataset_free(NULL);
}

TH_TEST(data, from_tensor_rejects_bad_arguments_with_a_message, th_quiet_check) {
    tg_tensor *x = grid(2, 3, 1), *flat = tg_zeros(TG_F64, TG_SHAPE(6));
    int64_t bad_len[2] = {3, 4}, zero_len[2] = {0, 3}, neg[2] = {0, -1}, huge[2] = {0, TG_DATA_MAX_CLASSES};
    struct { const tg_tensor *x; const int64_t *len; tg_label_kind kind; const void *lab; int64_t O; const char *msg; } rows[] = {
        {NULL, NULL, TG_LABELS_NONE, NULL, 0, "x is NULL"},
        {flat, NULL, TG_LABELS_NONE, NULL, 0, "must be [N,T,I]"},
        {x, bad_len, TG_LABELS_NONE, NULL, 0, "lengths[1] = 4 is outside 1..3"},
        {x, zero_len, TG_LABELS_NONE, NULL, 0, "lengths[0] = 0 is outside 1..3"},
        {x, NULL, TG_LABELS_CLASS, NULL, 0, "needs labels"},
        {x, NULL, TG_LABELS_CLASS, neg, 0, "sequence 1: label -1 is outside"},
        {x, NULL, TG_LABELS_CLASS, huge, 0, "label 1000000 is outside"},
        {x, NULL, TG_LABELS_VALUE, neg, 0, "n_outputs >= 1"},
        {x, NULL, (tg_label_kind)9, NULL, 0, "unknown label kind 9"},
    };
    for (size_t k = 0; k < sizeof rows / sizeof *rows; k++) {
        g_err[0] = 0;
        tg_dataset *ds = tg_dataset_from_tensor(rows[k].x, rows[k].len, rows[k].kind, rows[k].lab, rows[k].O, g_err, sizeof g_err);
        cr_expect_null(ds, "row %zu accepted", k);
        tg_dataset_free(ds);
        expect_msg(g_err, rows[k].msg, NULL);
    }
    tg_set(x, 4, NAN);
    cr_expect_null(tg_dataset_from_tensor(x, NULL, TG_LABELS_NONE, NULL, 0, g_err, sizeof g_err));
    expect_msg(g_err, "sequence 1, step 1, feature 0 is nan", "finite");
    cr_expect_null(tg_dataset_from_tensor(x, NULL, TG_LABELS_NONE, NULL, 0, NULL, 0), "err may be NULL");
    tg_release(x);
    tg_release(flat);
}

/* ---- npy --------------------------------------------------------------------------------------- */

TH_TEST(data, npy_files_written_by_numpy_load_with_numpys_values, th_quiet_check) {
    /* gen_data_fixtures.py: x = (arange(24).reshape(3,4,2) - 5.5) / 4 */
    const char *xs[] = {FIX "x_f8.npy", FIX "x_f4.npy"};
    for (int k = 0; k < 2; k++) {
        tg_dataset *ds = tg_dataset_load(xs[k], FIX "y_i8.npy", NULL, g_err, sizeof g_err);
        cr_assert_not_null(ds, "%s", g_err);
        cr_expect_eq(tg_dataset_size(ds), 3);
        cr_expect_eq(tg_dataset_max_length(ds), 4);
        cr_expect_eq(tg_dataset_features(ds), 2);
        for (int64_t n = 0; n < 3; n++)
            for (int64_t j = 0; j < 8; j++) cr_expect_eq(tg_dataset_seq(ds, n)[j], ((double)(n * 8 + j) - 5.5) / 4.0);
        cr_expect_eq(tg_dataset_label_kind(ds), TG_LABELS_CLASS, "int64 [N] labels = classes");
        cr_expect_eq(tg_dataset_label(ds, 0), 2);
        cr_expect_eq(tg_dataset_label(ds, 2), 1);
        cr_expect_eq(tg_dataset_classes(ds), 3);
        tg_dataset_free(ds);
    }
    tg_dataset *ds = tg_dataset_load(FIX "x_i8.npy", FIX "tags_i8.npy", NULL, g_err, sizeof g_err);
    cr_assert_not_null(ds, "%s", g_err);
    cr_expect_eq(tg_dataset_seq(ds, 2)[7], 16.0, "int64 inputs: arange(24) - 7");
    cr_expect_eq(tg_dataset_label_kind(ds), TG_LABELS_TAG, "int64 [N,T] labels = tags");
    cr_expect_eq(tg_dataset_tags(ds, 1)[1], 2);
    tg_dataset_free(ds);
    /* 2-D without labels = one series [T, I] */
    ds = tg_dataset_load(FIX "series_f8.npy", NULL, NULL, g_err, sizeof g_err);
    cr_assert_not_null(ds, "%s", g_err);
    cr_expect_eq(tg_dataset_size(ds), 1);
    cr_expect_eq(tg_dataset_length(ds, 0), 25);
    cr_expect_eq(tg_dataset_features(ds), 2);
    cr_expect_float_eq(tg_dataset_seq(ds, 0)[3], sin(3.0 / 5.0), 1e-15);
    tg_dataset_free(ds);
    /* forced [N, T] */
    ds = tg_dataset_load(FIX "series_f8.npy", NULL, &(tg_data_options){.layout2d = TG_2D_NT}, g_err, sizeof g_err);
    cr_assert_not_null(ds, "%s", g_err);
    cr_expect_eq(tg_dataset_size(ds), 25);
    cr_expect_eq(tg_dataset_features(ds), 1);
    tg_dataset_free(ds);
}

TH_TEST(data, npy_written_here_round_trips_every_dtype_and_layout, th_quiet_check) {
    double d[6] = {1.5, -2, 3, 4, 5, 6};
    float f[6] = {1.5f, -2, 3, 4, 5, 6};
    int64_t q[6] = {1, -2, 3, 4, 5, 6};
    int32_t w[6] = {1, -2, 3, 4, 5, 6};
    unsigned char u[6] = {1, 254, 3, 4, 5, 6};
    struct { const char *dict; const void *data; size_t n; double v1; } rows[] = {
        {"{'descr': '<f8', 'fortran_order': False, 'shape': (2, 3, 1), }", d, sizeof d, -2},
        {"{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3, 1), }", f, sizeof f, -2},
        {"{'descr': '<i8', 'fortran_order': False, 'shape': (2, 3, 1), }", q, sizeof q, -2},
        {"{'descr': '<i4', 'fortran_order': False, 'shape': (2, 3, 1), }", w, sizeof w, -2},
        {"{'descr': '|u1', 'fortran_order': False, 'shape': (2, 3, 1), }", u, sizeof u, 254},
        {"{\"shape\": (2,3,1), \"fortran_order\": False, \"descr\": \"<f8\"}", d, sizeof d, -2}, /* any key order */
    };
    for (size_t k = 0; k < sizeof rows / sizeof *rows; k++) {
        const char *p = write_npy("x.npy", rows[k].dict, rows[k].data, rows[k].n);
        tg_dataset *ds = tg_dataset_load(p, NULL, NULL, g_err, sizeof g_err);
        cr_assert_not_null(ds, "row %zu: %s", k, g_err);
        cr_expect_eq(tg_dataset_size(ds), 2);
        cr_expect_eq(tg_dataset_length(ds, 1), 3);
        cr_expect_eq(tg_dataset_seq(ds, 0)[1], rows[k].v1, "row %zu", k);
        cr_expect_eq(tg_dataset_seq(ds, 1)[2], 6.0, "row %zu", k);
        tg_dataset_free(ds);
    }
    /* [T] = one series of one feature; float labels [N] = values; [N,O] values */
    const char *p = write_npy("t.npy", "{'descr': '<f8', 'fortran_order': False, 'shape': (6,), }", d, sizeof d);
    tg_dataset *ds = tg_dataset_load(p, NULL, NULL, g_err, sizeof g_err);
    cr_assert_not_null(ds, "%s", g_err);
    cr_expect_eq(tg_dataset_size(ds), 1);
    cr_expect_eq(tg_dataset_length(ds, 0), 6);
    tg_dataset_free(ds);
    const char *xp = write_npy("x2.npy", "{'descr': '<f8', 'fortran_order': False, 'shape': (3, 2), }", d, sizeof d);
    const char *yp = write_npy("y2.npy", "{'descr': '<f8', 'fortran_order': False, 'shape': (3, 2), }", d, sizeof d);
    ds = tg_dataset_load(xp, yp, NULL, g_err, sizeof g_err);
    cr_assert_not_null(ds, "%s", g_err);
    cr_expect_eq(tg_dataset_size(ds), 3, "2-D with labels = [N, T]");
    cr_expect_eq(tg_dataset_label_kind(ds), TG_LABELS_VALUE);
    cr_expect_eq(tg_dataset_outputs(ds), 2);
    cr_expect_eq(tg_dataset_values(ds, 2)[1], 6.0);
    cr_expect_eq(tg_dataset_values(ds, 0)[0], 1.5);
    tg_dataset_free(ds);
}

TH_TEST(data, malformed_npy_files_are_rejected_with_file_offset_and_problem, th_quiet_check) {
    double d[6] = {1, 2, 3, 4, 5, 6};
    unsigned char img[4096];
    size_t n = npy_image(img, "{'descr': '<f8', 'fortran_order': False, 'shape': (2, 3, 1), }", d, sizeof d);
    struct { const char *name; const char *dict; size_t cut; const char *msg1, *msg2; } rows[] = {
        {"truncated.npy", "{'descr': '<f8', 'fortran_order': False, 'shape': (2, 3, 1), }", 8, "byte 128:", "needs 48 bytes but only 40 follow"},
        {"long.npy", "{'descr': '<f8', 'fortran_order': False, 'shape': (2, 2), }", 0, "holds 32 bytes", "file has 48"},
        {"dtype.npy", "{'descr': '<c16', 'fortran_order': False, 'shape': (2, 3, 1), }", 0, "byte 10:", "dtype '<c16' is not supported"},
        {"big.npy", "{'descr': '>f8', 'fortran_order': False, 'shape': (2, 3, 1), }", 0, "'>f8'", "big-endian"},
        {"fortran.npy", "{'descr': '<f8', 'fortran_order': True, 'shape': (2, 3, 1), }", 0, "fortran_order True", NULL},
        {"huge.npy", "{'descr': '<f8', 'fortran_order': False, 'shape': (100000000000, 28, 28), }", 0,
         "declared shape (100000000000, 28, 28) of float64 needs", "only 48 follow"},
        {"overflow.npy", "{'descr': '<f8', 'fortran_order': False, 'shape': (4294967296, 4294967296, 2), }", 0, "needs more than", NULL},
        {"nokey.npy", "{'descr': '<f8', 'shape': (2, 3, 1), }", 0, "missing 'fortran_order'", NULL},
        {"dupkey.npy", "{'descr': '<f8', 'descr': '<f8', 'fortran_order': False, 'shape': (6,), }", 0, "duplicate key 'descr'", NULL},
        {"extra.npy", "{'descr': '<f8', 'fortran_order': False, 'shape': (6,), 'x': 1}", 0, "unexpected key 'x'", NULL},
        {"struct.npy", "{'descr': [('a', '<f8')], 'fortran_order': False, 'shape': (6,), }", 0, "structured dtypes", NULL},
        {"negshape.npy", "{'descr': '<f8', 'fortran_order': False, 'shape': (-6,), }", 0, "non-negative integers", NULL},
        {"empty0.npy", "{'descr': '<f8', 'fortran_order': False, 'shape': (0, 3, 1), }", 0, "", NULL},
        {"dims5.npy", "{'descr': '<f8', 'fortran_order': False, 'shape': (1, 1, 1, 1, 6), }", 0, "more than 4 dimensions", NULL},
        {"dims0.npy", "{'descr': '<f8', 'fortran_order': False, 'shape': (), }", 0, "", NULL},
    };
    for (size_t k = 0; k < sizeof rows / sizeof *rows; k++) {
        unsigned char buf[4096];
        size_t m = npy_image(buf, rows[k].dict, d, sizeof d) - rows[k].cut;
        const char *p = write_file(rows[k].name, buf, m);
        g_err[0] = 0;
        tg_dataset *ds = tg_dataset_load(p, NULL, NULL, g_err, sizeof g_err);
        cr_expect_null(ds, "%s accepted", rows[k].name);
        tg_dataset_free(ds);
        cr_expect(strstr(g_err, rows[k].name) != NULL, "message \"%s\" does not name the file", g_err);
        expect_msg(g_err, rows[k].msg1, rows[k].msg2);
    }
    /* preamble-level damage */
    unsigned char bad[4096];
    memcpy(bad, img, n);
    bad[1] = 'X';
    tg_dataset *ds = tg_dataset_load(write_file("magic.npy", bad, n), NULL, NULL, g_err, sizeof g_err);
    cr_expect_null(ds);
    expect_msg(g_err, "magic.npy: byte 0: not a .npy file (no \\x93NUMPY magic)", NULL);
    memcpy(bad, img, n);
    bad[6] = 9;
    cr_expect_null(tg_dataset_load(write_file("version.npy", bad, n), NULL, NULL, g_err, sizeof g_err));
    expect_msg(g_err, "version.npy: byte 6: npy format version 9.0", NULL);
    memcpy(bad, img, n);
    bad[8] = 0xff, bad[9] = 0xff;
    cr_expect_null(tg_dataset_load(write_file("hlen.npy", bad, n), NULL, NULL, g_err, sizeof g_err));
    expect_msg(g_err, "header length 65535 exceeds the file", NULL);
    cr_expect_null(tg_dataset_load(write_file("short.npy", img, 9), NULL, NULL, g_err, sizeof g_err));
    expect_msg(g_err, "short.npy: byte 0: not a .npy file (shorter than the 10-byte preamble)", NULL);
    cr_expect_null(tg_dataset_load(write_file("empty.npy", img, 0), NULL, NULL, g_err, sizeof g_err));
    expect_msg(g_err, "empty.npy: empty file", NULL);
    cr_expect_null(tg_dataset_load(th_path_in("missing.npy"), NULL, NULL, g_err, sizeof g_err));
    expect_msg(g_err, "missing.npy: cannot open: No such file", NULL);
    cr_expect_null(tg_dataset_load(th_dir(), NULL, NULL, g_err, sizeof g_err));
    expect_msg(g_err, "not a regular file", NULL);
    /* a NaN value */
    double nan6[6] = {1, 2, NAN, 4, 5, 6};
    cr_expect_null(tg_dataset_load(write_npy("nan.npy", "{'descr': '<f8', 'fortran_order': False, 'shape': (2, 3, 1), }", nan6,
                                             sizeof nan6), NULL, NULL, g_err, sizeof g_err));
    expect_msg(g_err, "nan.npy: sequence 0, step 2, feature 0 is nan", NULL);
    /* the size limit */
    cr_expect_null(tg_dataset_load(FIX "x_f8.npy", NULL, &(tg_data_options){.max_bytes = 100}, g_err, sizeof g_err));
    expect_msg(g_err, "x_f8.npy: 320 bytes is more than the limit of 100", NULL);
}

TH_TEST(data, npy_labels_that_do_not_fit_are_rejected, th_quiet_check) {
    double d[6] = {1, 2, 3, 4, 5, 6};
    int64_t y3[3] = {0, 1, 2}, y2[2] = {0, 5};
    double frac[2] = {0.5, 1};
    const char *x = write_npy("x.npy", "{'descr': '<f8', 'fortran_order': False, 'shape': (2, 3, 1), }", d, sizeof d);
    struct { const char *dict; const void *y; size_t n; tg_label_kind kind; const char *msg; } rows[] = {
        {"{'descr': '<i8', 'fortran_order': False, 'shape': (3,), }", y3, sizeof y3, TG_LABELS_NONE, "do not fit class labels for inputs of 2 sequences"},
        {"{'descr': '<i8', 'fortran_order': False, 'shape': (2,), }", y2, sizeof y2, TG_LABELS_TAG, "expected [N,T]"},
        {"{'descr': '<f8', 'fortran_order': False, 'shape': (2,), }", frac, sizeof frac, TG_LABELS_CLASS, "label 0 is 0.5, not a class index"},
        {"{'descr': '<f8', 'fortran_order': False, 'shape': (1, 2), }", frac, sizeof frac, TG_LABELS_VALUE, "expected [N] or [N,O]"},
    };
    for (size_t k = 0; k < sizeof rows / sizeof *rows; k++) {
        const char *y = write_npy("y.npy", rows[k].dict, rows[k].y, rows[k].n);
        tg_dataset *ds = tg_dataset_load(x, y, &(tg_data_options){.label_kind = rows[k].kind}, g_err, sizeof g_err);
        cr_expect_null(ds, "row %zu accepted", k);
        tg_dataset_free(ds);
        expect_msg(g_err, "y.npy", rows[k].msg);
    }
    /* labels as integers and CLASS from floats that are whole numbers */
    double whole[2] = {1, 0};
    const char *y = write_npy("yw.npy", "{'descr': '<f8', 'fortran_order': False, 'shape': (2,), }", whole, sizeof whole);
    tg_dataset *ds = tg_dataset_load(x, y, &(tg_data_options){.label_kind = TG_LABELS_CLASS}, g_err, sizeof g_err);
    cr_assert_not_null(ds, "%s", g_err);
    cr_expect_eq(tg_dataset_label(ds, 0), 1);
    tg_dataset_free(ds);
}

/* ---- split, subset, windows -------------------------------------------------------------------- */

static tg_dataset *class_dataset(int64_t N, int64_t T, int64_t I) {
    tg_tensor *x = grid(N, T, I);
    int64_t *len = malloc((size_t)N * sizeof *len), *cls = malloc((size_t)N * sizeof *cls);
    for (int64_t n = 0; n < N; n++) len[n] = 1 + n % T, cls[n] = n % 3;
    tg_dataset *ds = tg_dataset_from_tensor(x, len, TG_LABELS_CLASS, cls, 0, g_err, sizeof g_err);
    cr_assert_not_null(ds, "%s", g_err);
    free(len);
    free(cls);
    tg_release(x);
    return ds;
}

/* The sequence's identity: x[n,0,0] = 100 n in the grid. */
static int64_t ident(const tg_dataset *ds, int64_t k) { return (int64_t)(tg_dataset_seq(ds, k)[0] / 100); }

TH_TEST(data, split_is_seeded_disjoint_and_covering, th_quiet_check) {
    tg_dataset *all = class_dataset(50, 5, 2), *tr, *va, *tr2, *va2;
    cr_assert_eq(tg_dataset_split(all, 0.2, 7, &tr, &va, g_err, sizeof g_err), 0, "%s", g_err);
    cr_expect_eq(tg_dataset_size(va), 10);
    cr_expect_eq(tg_dataset_size(tr), 40);
    int seen[50] = {0};
    for (int64_t k = 0; k < 10; k++) seen[ident(va, k)]++;
    for (int64_t k = 0; k < 40; k++) {
        int64_t id = ident(tr, k);
        seen[id]++;
        cr_expect_eq(tg_dataset_length(tr, k), 1 + id % 5, "lengths travel with their sequence");
        cr_expect_eq(tg_dataset_label(tr, k), id % 3, "labels travel with their sequence");
    }
    for (int k = 0; k < 50; k++) cr_expect_eq(seen[k], 1, "sequence %d seen %d times", k, seen[k]);
    cr_expect_eq(tg_dataset_classes(va), 3);
    cr_assert_eq(tg_dataset_split(all, 0.2, 7, &tr2, &va2, g_err, sizeof g_err), 0);
    bool same = true, moved = false;
    for (int64_t k = 0; k < 10; k++) same = same && ident(va, k) == ident(va2, k);
    cr_expect(same, "same seed, same split");
    tg_dataset_free(tr2);
    tg_dataset_free(va2);
    cr_assert_eq(tg_dataset_split(all, 0.2, 8, &tr2, &va2, g_err, sizeof g_err), 0);
    for (int64_t k = 0; k < 10; k++) moved = moved || ident(va, k) != ident(va2, k);
    cr_expect(moved, "another seed, another split");
    tg_dataset_free(tr2);
    tg_dataset_free(va2);
    cr_assert_eq(tg_dataset_split(all, 0, 7, &tr2, &va2, g_err, sizeof g_err), 0);
    cr_expect_null(va2);
    cr_expect_eq(tg_dataset_size(tr2), 50);
    tg_dataset_free(tr2);
    struct { double f; const char *msg; } bad[] = {
        {0.001, "rounds to none"}, {0.999, "leaves none to train on"}, {1.0, "outside [0, 1)"}, {-0.1, "outside"}, {NAN, "outside"},
    };
    for (size_t k = 0; k < sizeof bad / sizeof *bad; k++) {
        tr2 = va2 = (tg_dataset *)1;
        cr_expect_eq(tg_dataset_split(all, bad[k].f, 7, &tr2, &va2, g_err, sizeof g_err), -1);
        cr_expect(tr2 == NULL && va2 == NULL, "outputs are NULL on failure");
        expect_msg(g_err, bad[k].msg, NULL);
    }
    tg_dataset_free(tr);
    tg_dataset_free(va);
    tg_dataset_free(all);
}

TH_TEST(data, subset_copies_and_checks_indices, th_quiet_check) {
    tg_dataset *all = class_dataset(6, 4, 1);
    int64_t idx[3] = {5, 0, 5};
    tg_dataset *s = tg_dataset_subset(all, idx, 3, g_err, sizeof g_err);
    cr_assert_not_null(s, "%s", g_err);
    cr_expect_eq(ident(s, 0), 5);
    cr_expect_eq(ident(s, 1), 0);
    cr_expect_eq(ident(s, 2), 5);
    cr_expect_eq(tg_dataset_length(s, 0), 2);
    tg_dataset_free(s);
    int64_t bad[2] = {1, 6};
    cr_expect_null(tg_dataset_subset(all, bad, 2, g_err, sizeof g_err));
    expect_msg(g_err, "index[1] = 6 is outside 0..5", NULL);
    cr_expect_null(tg_dataset_subset(all, idx, 0, g_err, sizeof g_err));
    expect_msg(g_err, "n = 0", NULL);
    tg_dataset_free(all);
}

TH_TEST(data, windows_cut_every_sequence_and_target_the_step_horizon_later, th_quiet_check) {
    /* two series: lengths 10 and 6, I = 2, x[n,t,i] = 100 n + 10 t + i */
    tg_tensor *x = grid(2, 10, 2);
    int64_t len[2] = {10, 6};
    tg_dataset *ds = tg_dataset_from_tensor(x, len, TG_LABELS_NONE, NULL, 0, g_err, sizeof g_err);
    cr_assert_not_null(ds, "%s", g_err);
    tg_dataset *w = tg_dataset_windows(ds, 3, 2, 1, g_err, sizeof g_err);
    cr_assert_not_null(w, "%s", g_err);
    /* series 0: starts 0..5 (6 windows), series 1: starts 0..1 (2 windows) */
    cr_assert_eq(tg_dataset_size(w), 8);
    cr_expect_eq(tg_dataset_label_kind(w), TG_LABELS_VALUE);
    cr_expect_eq(tg_dataset_outputs(w), 2);
    for (int64_t k = 0; k < 8; k++) {
        int64_t n = k < 6 ? 0 : 1, s = k < 6 ? k : k - 6;
        cr_expect_eq(tg_dataset_length(w, k), 3);
        cr_expect_eq(tg_dataset_seq(w, k)[0], 100.0 * n + 10.0 * s);
        cr_expect_eq(tg_dataset_seq(w, k)[5], 100.0 * n + 10.0 * (s + 2) + 1);
        cr_expect_eq(tg_dataset_values(w, k)[0], 100.0 * n + 10.0 * (s + 4), "target = step s+window-1+horizon");
        cr_expect_eq(tg_dataset_values(w, k)[1], 100.0 * n + 10.0 * (s + 4) + 1);
    }
    tg_dataset_free(w);
    w = tg_dataset_windows(ds, 3, 1, 3, g_err, sizeof g_err);
    cr_assert_not_null(w, "%s", g_err);
    cr_expect_eq(tg_dataset_size(w), 3 + 1, "stride 3: starts 0,3,6 and 0");
    tg_dataset_free(w);
    cr_expect_null(tg_dataset_windows(ds, 8, 3, 1, g_err, sizeof g_err));
    expect_msg(g_err, "needs 11 steps; the longest has 10", NULL);
    cr_expect_null(tg_dataset_windows(ds, 0, 1, 1, g_err, sizeof g_err));
    expect_msg(g_err, "must be >= 1", NULL);
    tg_dataset_free(ds);
    tg_release(x);
}

/* ---- normalisation ----------------------------------------------------------------------------- */

TH_TEST(data, norm_fits_every_real_step_and_round_trips_as_text, th_quiet_check) {
    tg_tensor *x = grid(2, 3, 2);
    int64_t len[2] = {3, 1};
    tg_dataset *ds = tg_dataset_from_tensor(x, len, TG_LABELS_NONE, NULL, 0, g_err, sizeof g_err);
    /* feature 1 real steps: 1, 11, 21, 101 -> mean 33.5, population std */
    tg_norm nm = {0};
    cr_assert_eq(tg_norm_fit(ds, &nm, g_err, sizeof g_err), 0, "%s", g_err);
    double v[4] = {1, 11, 21, 101}, mean = 33.5, var = 0;
    for (int k = 0; k < 4; k++) var += (v[k] - mean) * (v[k] - mean) / 4;
    cr_expect_float_eq(nm.mean[1], mean, 1e-12);
    cr_expect_float_eq(nm.std[1], sqrt(var), 1e-12);
    tg_norm_apply(ds, &nm);
    cr_expect_float_eq(tg_dataset_seq(ds, 1)[1], (101 - mean) / sqrt(var), 1e-12);
    tg_norm refit = {0};
    cr_assert_eq(tg_norm_fit(ds, &refit, g_err, sizeof g_err), 0);
    cr_expect_float_eq(refit.mean[0], 0, 1e-12);
    cr_expect_float_eq(refit.std[0], 1, 1e-12);
    tg_norm_clear(&refit);
    char *s = tg_norm_to_string(&nm);
    cr_assert_not_null(s);
    tg_norm back = {0};
    cr_assert_eq(tg_norm_from_string(s, &back, g_err, sizeof g_err), 0, "%s", g_err);
    cr_expect_eq(back.features, 2);
    for (int i = 0; i < 2; i++) {
        cr_expect_eq(back.mean[i], nm.mean[i], "%%.17g is exact");
        cr_expect_eq(back.std[i], nm.std[i]);
    }
    free(s);
    tg_norm_clear(&back);
    tg_norm_clear(&nm);
    tg_norm_clear(&nm);
    tg_norm_clear(NULL);
    /* a constant feature gets std 1 */
    tg_tensor *c = tg_full(TG_F64, TG_SHAPE(2, 2, 1), 3.0);
    tg_dataset *cd = tg_dataset_from_tensor(c, NULL, TG_LABELS_NONE, NULL, 0, g_err, sizeof g_err);
    cr_assert_eq(tg_norm_fit(cd, &nm, g_err, sizeof g_err), 0);
    cr_expect_eq(nm.std[0], 1.0);
    cr_expect_eq(nm.mean[0], 3.0);
    tg_norm_clear(&nm);
    tg_dataset_free(cd);
    tg_release(c);
    const char *bad[][2] = {
        {"1,2", "one ';'"}, {"1,2;3;4", "one ';'"}, {"1,2;3", "2 means but 1 stds"}, {"1,x;3,4", "mean 1 (at character 2)"},
        {"1,2;3,0", "std 1 is not positive"}, {"1,2;3,-1", "not positive"}, {"nan;1", "mean 0"}, {"1;inf", "std 0"},
        {";", "mean 0"}, {"1,;1,2", "mean 1"}, {"1; 2", "std 0"},
    };
    for (size_t k = 0; k < sizeof bad / sizeof *bad; k++) {
        tg_norm out = {0};
        cr_expect_eq(tg_norm_from_string(bad[k][0], &out, g_err, sizeof g_err), -1, "\"%s\" accepted", bad[k][0]);
        cr_expect_null(out.mean);
        expect_msg(g_err, bad[k][1], NULL);
    }
    tg_dataset_free(ds);
    tg_release(x);
}

TH_TEST(data, norm_apply_values_scales_forecasting_targets, th_quiet_check) {
    tg_tensor *x = grid(1, 12, 2);
    tg_dataset *ds = tg_dataset_from_tensor(x, NULL, TG_LABELS_NONE, NULL, 0, g_err, sizeof g_err);
    tg_norm nm = {0};
    cr_assert_eq(tg_norm_fit(ds, &nm, g_err, sizeof g_err), 0);
    cr_expect_eq(tg_norm_apply_values(ds, &nm, g_err, sizeof g_err), -1);
    expect_msg(g_err, "has none labels", NULL);
    tg_dataset *w = tg_dataset_windows(ds, 4, 1, 1, g_err, sizeof g_err);
    cr_assert_not_null(w, "%s", g_err);
    cr_assert_eq(tg_norm_apply_values(w, &nm, g_err, sizeof g_err), 0, "%s", g_err);
    tg_norm_apply(w, &nm);
    /* the target of window 0 is step 4, which is the input step 0 of window 1 after both scalings */
    cr_expect_float_eq(tg_dataset_values(w, 0)[1], tg_dataset_seq(w, 4)[1 + 2 * 0], 1e-12);
    tg_dataset_free(w);
    tg_norm_clear(&nm);
    tg_dataset_free(ds);
    tg_release(x);
}

/* ---- batching ---------------------------------------------------------------------------------- */

static void check_batch(const tg_dataset *ds, const tg_batch *b, tg_dtype dt) {
    const int64_t I = tg_dataset_features(ds);
    cr_assert_eq(tg_ndim(b->x), 3);
    cr_expect_eq(tg_dim(b->x, 0), b->T);
    cr_expect_eq(tg_dim(b->x, 1), b->B);
    cr_expect_eq(tg_dtype_of(b->x), dt);
    int64_t maxT = 0;
    for (int64_t r = 0; r < b->B; r++) {
        int64_t j = b->index[r], len = tg_dataset_length(ds, j);
        cr_expect_eq(b->lengths[r], len);
        if (len > maxT) maxT = len;
        for (int64_t t = 0; t < b->T; t++)
            for (int64_t i = 0; i < I; i++) {
                double v = tg_get(b->x, (t * b->B + r) * I + i);
                double want = t < len ? tg_dataset_seq(ds, j)[t * I + i] : 0.0;
                cr_expect_eq(v, want, "x[%lld,%lld,%lld] = %g, want %g", (long long)t, (long long)r, (long long)i, v, want);
            }
        if (tg_dataset_label_kind(ds) == TG_LABELS_CLASS) cr_expect_eq(tg_get(b->classes, r), (double)tg_dataset_label(ds, j));
        if (tg_dataset_label_kind(ds) == TG_LABELS_TAG)
            for (int64_t t = 0; t < b->T; t++)
                cr_expect_eq(tg_get(b->classes, t * b->B + r), t < len ? (double)tg_dataset_tags(ds, j)[t] : -100.0);
    }
    cr_expect_eq(b->T, maxT, "T is the longest in the batch");
}

TH_TEST(data, batcher_visits_every_sequence_once_per_epoch_padded_with_lengths, th_quiet_check) {
    tg_dataset *ds = class_dataset(23, 6, 3);
    tg_batcher *bt = tg_batcher_new(ds, 5, true, false, 11, TG_F32, g_err, sizeof g_err);
    cr_assert_not_null(bt, "%s", g_err);
    cr_expect_eq(tg_batcher_batches_per_epoch(bt), 5);
    tg_batch b = {0};
    int64_t first[2][23];
    for (int e = 0; e < 2; e++) {
        int seen[23] = {0}, batches = 0, rc;
        int64_t k = 0;
        while ((rc = tg_batcher_next(bt, &b, g_err, sizeof g_err)) == 1) {
            check_batch(ds, &b, TG_F32);
            cr_expect_eq(b.B, batches < 4 ? 5 : 3, "last batch smaller");
            for (int64_t r = 0; r < b.B; r++) seen[b.index[r]]++, first[e][k++] = b.index[r];
            batches++;
        }
        cr_assert_eq(rc, 0, "%s", g_err);
        cr_expect_eq(batches, 5);
        for (int n = 0; n < 23; n++) cr_expect_eq(seen[n], 1, "epoch %d: sequence %d seen %d times", e, n, seen[n]);
        cr_expect_eq(tg_batcher_epoch(bt), e + 1);
    }
    cr_expect(memcmp(first[0], first[1], sizeof first[0]) != 0, "a new permutation each epoch");
    tg_batch_clear(&b);
    tg_batcher_free(bt);
    /* without shuffle: 0..N-1; drop_last drops the short tail; F64; TAG labels padded with -100 */
    bt = tg_batcher_new(ds, 5, false, true, 0, TG_F64, g_err, sizeof g_err);
    int64_t next = 0;
    while (tg_batcher_next(bt, &b, g_err, sizeof g_err) == 1) {
        cr_expect_eq(b.B, 5);
        check_batch(ds, &b, TG_F64);
        for (int64_t r = 0; r < b.B; r++) cr_expect_eq(b.index[r], next++);
    }
    cr_expect_eq(next, 20);
    tg_batch_clear(&b);
    tg_batcher_free(bt);
    tg_tensor *x = grid(4, 5, 1);
    int64_t len[4] = {5, 2, 3, 1}, tags[20];
    for (int k = 0; k < 20; k++) tags[k] = k % 4;
    tg_dataset *td = tg_dataset_from_tensor(x, len, TG_LABELS_TAG, tags, 0, g_err, sizeof g_err);
    bt = tg_batcher_new(td, 3, true, false, 3, TG_F32, g_err, sizeof g_err);
    while (tg_batcher_next(bt, &b, g_err, sizeof g_err) == 1) check_batch(td, &b, TG_F32);
    tg_batch_clear(&b);
    tg_batcher_free(bt);
    double vals[4] = {1, 2, 3, 4};
    tg_dataset *vd = tg_dataset_from_tensor(x, len, TG_LABELS_VALUE, vals, 1, g_err, sizeof g_err);
    int64_t idx[2] = {3, 0};
    cr_assert_eq(tg_batch_make(vd, idx, 2, TG_F64, &b, g_err, sizeof g_err), 0, "%s", g_err);
    check_batch(vd, &b, TG_F64);
    cr_expect_eq(tg_get(b.values, 0), 4.0);
    cr_expect_eq(tg_get(b.values, 1), 1.0);
    tg_batch_clear(&b);
    tg_dataset_free(vd);
    tg_dataset_free(td);
    tg_release(x);
    tg_dataset_free(ds);
}

TH_TEST(data, same_seed_same_batches_and_restore_continues_identically, th_quiet_check) {
    tg_dataset *ds = class_dataset(17, 4, 2);
    tg_batcher *a = tg_batcher_new(ds, 4, true, false, 99, TG_F32, g_err, sizeof g_err);
    tg_batcher *c = tg_batcher_new(ds, 4, true, false, 99, TG_F32, g_err, sizeof g_err);
    tg_batch ba = {0}, bc = {0};
    char *saved = NULL;
    /* run 3 epochs (5 batches + end each); save after 7 calls (mid epoch 2) */
    int64_t seq_a[64], na = 0, calls = 0;
    for (int step = 0; step < 18; step++) {
        int ra = tg_batcher_next(a, &ba, g_err, sizeof g_err), rc = tg_batcher_next(c, &bc, g_err, sizeof g_err);
        cr_assert_eq(ra, rc);
        if (ra == 1) {
            cr_expect_eq(memcmp(ba.index, bc.index, (size_t)ba.B * sizeof(int64_t)), 0, "same seed, same batches");
            if (calls >= 7) for (int64_t r = 0; r < ba.B; r++) seq_a[na++] = ba.index[r];
        } else if (calls >= 7) {
            seq_a[na++] = -1;
        }
        calls++;
        if (calls == 7) saved = tg_batcher_state(a);
    }
    cr_assert_not_null(saved);
    /* a fresh batcher with another seed, restored, gives exactly what `a` gave after the save */
    tg_batcher *r = tg_batcher_new(ds, 4, true, false, 12345, TG_F32, g_err, sizeof g_err);
    cr_assert_eq(tg_batcher_restore(r, saved, g_err, sizeof g_err), 0, "%s", g_err);
    cr_expect_eq(tg_batcher_epoch(r), 1);
    int64_t nr = 0;
    bool same = true;
    for (int step = 7; step < 18; step++) {
        int rr = tg_batcher_next(r, &ba, g_err, sizeof g_err);
        if (rr == 1) for (int64_t k = 0; k < ba.B; k++) same = same && seq_a[nr++] == ba.index[k];
        else same = same && seq_a[nr++] == -1;
    }
    cr_expect(same && nr == na, "restored batcher diverged");
    /* a state at an epoch boundary (not drawn yet) restores too */
    tg_batcher *fresh = tg_batcher_new(ds, 4, true, false, 99, TG_F32, g_err, sizeof g_err);
    char *s0 = tg_batcher_state(fresh);
    tg_batcher *r0 = tg_batcher_new(ds, 4, true, false, 1, TG_F32, g_err, sizeof g_err);
    cr_assert_eq(tg_batcher_restore(r0, s0, g_err, sizeof g_err), 0, "%s", g_err);
    cr_assert_eq(tg_batcher_next(fresh, &ba, g_err, sizeof g_err), 1);
    cr_assert_eq(tg_batcher_next(r0, &bc, g_err, sizeof g_err), 1);
    cr_expect_eq(memcmp(ba.index, bc.index, 4 * sizeof(int64_t)), 0);
    /* states that do not fit */
    tg_batcher *other = tg_batcher_new(ds, 5, true, false, 99, TG_F32, g_err, sizeof g_err);
    cr_expect_eq(tg_batcher_restore(other, saved, g_err, sizeof g_err), -1);
    expect_msg(g_err, "the state is for 17 sequences in batches of 4", "batches of 5");
    const char *bad[] = {"", "tg_batcher 2 17 4 1 0 0 0 0 1 1 1 1", "tg_batcher 1 17 4 1 0 0 5 0 1 1 1 1",
                         "tg_batcher 1 17 4 1 0 0 99 1 1 1 1 1", "tg_batcher 1 17 4 1 0 0 0 0 0 0 0 0",
                         "tg_batcher 1 17 4 1 0 0 0 0 1 1 1 1 trailing"};
    for (size_t k = 0; k < sizeof bad / sizeof *bad; k++) {
        cr_expect_eq(tg_batcher_restore(r, bad[k], g_err, sizeof g_err), -1, "\"%s\" accepted", bad[k]);
        cr_expect(strstr(g_err, "batcher state") != NULL, "%s", g_err);
    }
    free(saved);
    free(s0);
    tg_batch_clear(&ba);
    tg_batch_clear(&bc);
    tg_batcher_free(a);
    tg_batcher_free(c);
    tg_batcher_free(r);
    tg_batcher_free(r0);
    tg_batcher_free(fresh);
    tg_batcher_free(other);
    tg_dataset_free(ds);
}

TH_TEST(data, batcher_rejects_bad_arguments, th_quiet_check) {
    tg_dataset *ds = class_dataset(3, 2, 1);
    cr_expect_null(tg_batcher_new(ds, 0, true, false, 1, TG_F32, g_err, sizeof g_err));
    expect_msg(g_err, "batch size 0 < 1", NULL);
    cr_expect_null(tg_batcher_new(ds, 4, true, true, 1, TG_F32, g_err, sizeof g_err));
    expect_msg(g_err, "leaves no batch from 3 sequences", NULL);
    cr_expect_null(tg_batcher_new(ds, 2, true, true, 1, (tg_dtype)7, g_err, sizeof g_err));
    expect_msg(g_err, "neither F32 nor F64", NULL);
    cr_expect_null(tg_batcher_new(NULL, 2, true, true, 1, TG_F32, g_err, sizeof g_err));
    expect_msg(g_err, "dataset is NULL", NULL);
    tg_batch b = {0};
    int64_t idx[1] = {3};
    cr_expect_eq(tg_batch_make(ds, idx, 1, TG_F32, &b, g_err, sizeof g_err), -1);
    expect_msg(g_err, "index[0] = 3 is outside 0..2", NULL);
    tg_batcher_free(NULL);
    tg_batch_clear(NULL);
    tg_dataset_free(ds);
}

/* ---- gzip (fixtures made by the real gzip, see gen_data_fixtures.py) ---------------------------- */

static unsigned char *slurp(const char *path, size_t *n) {
    FILE *f = fopen(path, "rb");
    cr_assert_not_null(f, "cannot open %s", path);
    fseek(f, 0, SEEK_END);
    long len = ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *b = malloc((size_t)len + 1);
    cr_assert_eq(fread(b, 1, (size_t)len, f), (size_t)len);
    fclose(f);
    *n = (size_t)len;
    return b;
}

static void expect_gunzip_equals(const char *gz, const unsigned char *want, size_t want_len) {
    size_t n, out_len;
    unsigned char *in = slurp(gz, &n), *out;
    int rc = tg_gunzip(in, n, gz, 0, &out, &out_len, g_err, sizeof g_err);
    cr_expect_eq(rc, 0, "%s: %s", gz, g_err);
    if (rc == 0) {
        cr_expect_eq(out_len, want_len, "%s: %zu bytes, want %zu", gz, out_len, want_len);
        cr_expect(out_len == want_len && memcmp(out, want, want_len) == 0, "%s: content differs", gz);
        free(out);
    }
    free(in);
}

TH_TEST(data, crc32_check_value, th_quiet_check) {
    cr_expect_eq(tg_crc32(0, "123456789", 9), 0xcbf43926u, "the CRC-32 check value of RFC 3720 / zlib");
    cr_expect_eq(tg_crc32(tg_crc32(0, "1234", 4), "56789", 5), 0xcbf43926u, "continues from a previous crc");
}

TH_TEST(data, gunzip_matches_gzip_at_every_level_stored_fixed_and_multi_member, th_quiet_check) {
    size_t np, nr;
    unsigned char *payload = slurp(FIX "payload.bin", &np), *rnd = slurp(FIX "random.bin", &nr);
    for (int level = 1; level <= 9; level++) {
        char p[256];
        snprintf(p, sizeof p, FIX "payload.%d.gz", level);
        expect_gunzip_equals(p, payload, np);
    }
    /* the fixtures exercise each block type: check the first block's BTYPE bits */
    size_t n;
    unsigned char *b = slurp(FIX "random.gz", &n);
    cr_expect_eq((b[10] >> 1) & 3, 0, "random.gz starts with a stored block");
    free(b);
    b = slurp(FIX "tiny.gz", &n);
    cr_expect_eq((b[10] >> 1) & 3, 1, "tiny.gz is a fixed-Huffman block");
    free(b);
    b = slurp(FIX "payload.6.gz", &n);
    cr_expect_eq((b[10] >> 1) & 3, 2, "payload.6.gz is a dynamic-Huffman block");
    free(b);
    expect_gunzip_equals(FIX "random.gz", rnd, nr);
    expect_gunzip_equals(FIX "named.gz", rnd, nr);
    expect_gunzip_equals(FIX "tiny.gz", (const unsigned char *)"hello hello hello", 17);
    unsigned char *both = malloc(nr + np);
    memcpy(both, rnd, nr);
    memcpy(both + nr, payload, np);
    expect_gunzip_equals(FIX "multi.gz", both, nr + np);
    free(both);
    free(payload);
    free(rnd);
}

TH_TEST(data, corrupt_gzip_is_rejected_with_offset_and_reason, th_quiet_check) {
    size_t n;
    unsigned char *good = slurp(FIX "payload.6.gz", &n), *bad = malloc(n + 16), *out;
    size_t out_len;
    struct { const char *what; size_t at; int xor_; size_t len_delta; const char *msg; } rows[] = {
        {"crc", 0, 0x01, 0, "CRC-32 mismatch"},       /* at = n - 8 below */
        {"isize", 0, 0x01, 0, "ISIZE mismatch"},       /* at = n - 4 */
        {"truncated trailer", 0, 0, (size_t)-3, "truncated gzip trailer"},
        {"truncated data", 0, 0, (size_t)-1000, "unexpected end of the compressed data"},
        {"method", 2, 0x01, 0, "byte 2: compression method is not deflate"},
        {"flags", 3, 0x80, 0, "byte 3: reserved header flag bits"},
        {"magic", 1, 0x01, 0, "byte 0: not a gzip member"},
        {"trailing", 0, 0, 5, "5 bytes of trailing data after the last gzip member"},
        {"tiny", 0, 0, (size_t)-(long)(n - 12), "truncated gzip member"},
    };
    for (size_t k = 0; k < sizeof rows / sizeof *rows; k++) {
        memcpy(bad, good, n);
        size_t m = n + rows[k].len_delta, at = rows[k].at;
        if (k == 0) at = n - 8;
        if (k == 1) at = n - 4;
        if (rows[k].len_delta == 5) memcpy(bad + n, "junk!", 5);
        bad[at] ^= (unsigned char)rows[k].xor_;
        g_err[0] = 0;
        cr_expect_eq(tg_gunzip(bad, m, "x.gz", 0, &out, &out_len, g_err, sizeof g_err), -1, "%s accepted", rows[k].what);
        cr_expect_null(out);
        expect_msg(g_err, "x.gz: byte ", rows[k].msg);
    }
    /* a damaged body: whatever the decoder notices first, it fails */
    memcpy(bad, good, n);
    bad[n / 2] ^= 0x55;
    cr_expect_eq(tg_gunzip(bad, n, "x.gz", 0, &out, &out_len, g_err, sizeof g_err), -1);
    expect_msg(g_err, "x.gz: byte ", NULL);
    /* a stored block whose NLEN is not ~LEN (random.gz: header 10 bytes, block byte 10, LEN at 11) */
    size_t sn;
    unsigned char *st = slurp(FIX "random.gz", &sn);
    st[13] ^= 0xff;
    cr_expect_eq(tg_gunzip(st, sn, "s.gz", 0, &out, &out_len, g_err, sizeof g_err), -1);
    expect_msg(g_err, "s.gz: byte ", "LEN and NLEN do not match");
    free(st);
    /* the size limit: a small max_out stops decompression with a message */
    cr_expect_eq(tg_gunzip(good, n, "x.gz", 1000, &out, &out_len, g_err, sizeof g_err), -1);
    expect_msg(g_err, "decompresses to more than the limit of 1000 bytes", NULL);
    cr_expect_eq(tg_gunzip(good, 0, "x.gz", 0, &out, &out_len, g_err, sizeof g_err), -1);
    expect_msg(g_err, "x.gz: byte 0: empty input", NULL);
    free(good);
    free(bad);
}

/* ---- IDX (MNIST format), raw and gzip'd ------------------------------------------------------- */

TH_TEST(data, idx_images_load_as_sequences_of_rows_with_labels_raw_and_gzipped, th_quiet_check) {
    const char *img[2] = {FIX "images-idx3-ubyte", FIX "images-idx3-ubyte.gz"};
    const char *lab[2] = {FIX "labels-idx1-ubyte", FIX "labels-idx1-ubyte.gz"};
    for (int k = 0; k < 2; k++) {
        tg_dataset *ds = tg_dataset_load(img[k], lab[k], NULL, g_err, sizeof g_err);
        cr_assert_not_null(ds, "%s", g_err);
        cr_expect_eq(tg_dataset_size(ds), 3);
        cr_expect_eq(tg_dataset_max_length(ds), 4, "R rows = steps");
        cr_expect_eq(tg_dataset_features(ds), 5, "C columns = features");
        for (int64_t n = 0; n < 3; n++)
            for (int64_t j = 0; j < 20; j++)
                cr_expect_float_eq(tg_dataset_seq(ds, n)[j], (double)((7 * (n * 20 + j)) % 256) / 255.0, 1e-15);
        cr_expect_eq(tg_dataset_label_kind(ds), TG_LABELS_CLASS);
        cr_expect_eq(tg_dataset_label(ds, 2), 9);
        cr_expect_eq(tg_dataset_classes(ds), 10);
        tg_dataset_free(ds);
    }
    tg_dataset *ds = tg_dataset_load(img[1], NULL, &(tg_data_options){.idx_no_scale = true}, g_err, sizeof g_err);
    cr_assert_not_null(ds, "%s", g_err);
    cr_expect_eq(tg_dataset_seq(ds, 1)[0], (double)(7 * 20));
    cr_expect_eq(tg_dataset_label_kind(ds), TG_LABELS_NONE);
    tg_dataset_free(ds);
}

TH_TEST(data, malformed_idx_files_are_rejected, th_quiet_check) {
    unsigned char good[76];
    size_t n;
    unsigned char *g = slurp(FIX "images-idx3-ubyte", &n);
    cr_assert_eq(n, sizeof good);
    memcpy(good, g, n);
    free(g);
    struct { const char *name; int at; unsigned char v; int cut; const char *msg; } rows[] = {
        {"trunc-ubyte", -1, 0, 1, "byte 16: declared shape (3, 4, 5) of uint8 needs 60 bytes but only 59 follow"},
        {"type-ubyte", 2, 0x0a, 0, "byte 2: unknown IDX element type 0x0a"},   /* by extension */
        {"ndim-ubyte", 3, 0, 0, "byte 3: 0 dimensions"},
        {"huge-ubyte", 4, 0xff, 0, "byte 16: declared shape (4278190083, 4, 5) of uint8 needs 85563801660 bytes but only 60 follow"},
        {"hdr-ubyte", -1, 0, 70, "byte 4: truncated"},
    };
    for (size_t k = 0; k < sizeof rows / sizeof *rows; k++) {
        unsigned char b[76];
        memcpy(b, good, sizeof b);
        if (rows[k].at >= 0) b[rows[k].at] = rows[k].v;
        const char *p = write_file(rows[k].name, b, sizeof b - (size_t)rows[k].cut);
        tg_dataset *ds = tg_dataset_load(p, NULL, NULL, g_err, sizeof g_err);
        cr_expect_null(ds, "%s accepted", rows[k].name);
        tg_dataset_free(ds);
        expect_msg(g_err, rows[k].name, rows[k].msg);
    }
    /* labels that do not match the images */
    unsigned char lab[12] = {0, 0, 8, 1, 0, 0, 0, 4, 1, 2, 3, 4};
    const char *lp = write_file("lab4-ubyte", lab, sizeof lab);
    cr_expect_null(tg_dataset_load(FIX "images-idx3-ubyte", lp, NULL, g_err, sizeof g_err));
    expect_msg(g_err, "lab4-ubyte: labels of shape (4,) do not fit class labels for inputs of 3 sequences", NULL);
    /* a corrupt .gz around IDX names the file */
    size_t gn;
    unsigned char *gz = slurp(FIX "images-idx3-ubyte.gz", &gn);
    gz[gn - 8] ^= 1;
    const char *gp = write_file("img.gz", gz, gn);
    free(gz);
    cr_expect_null(tg_dataset_load(gp, NULL, NULL, g_err, sizeof g_err));
    expect_msg(g_err, "img.gz: byte ", "CRC-32 mismatch");
}

/* ---- CSV --------------------------------------------------------------------------------------- */

static const char *write_text(const char *name, const char *text) { return write_file(name, text, strlen(text)); }

TH_TEST(data, csv_sequences_labels_and_features_round_trip, th_quiet_check) {
    /* CRLF, a BOM, a quoted header name with a comma, a skipped date column, spaces around numbers,
     * a trailing blank line */
    const char *p = write_text("walks.csv", "\xef\xbb\xbf" "date,walk,\"speed, m/s\",temp,label\r\n"
                                            "2024-01-01,a, 1.5 ,20,1\r\n"
                                            "2024-01-02,a,2.5,21,1\r\n"
                                            "2024-01-03,\"b\",-3,22e-1,0\r\n"
                                            "\r\n");
    tg_dataset *ds = tg_dataset_load(p, NULL, &(tg_data_options){.seq_column = "walk", .label_column = "label",
                                                                 .label_kind = TG_LABELS_CLASS}, g_err, sizeof g_err);
    cr_assert_not_null(ds, "%s", g_err);
    cr_expect_eq(tg_dataset_size(ds), 2);
    cr_expect_eq(tg_dataset_features(ds), 2, "date skipped (not a number), walk and label are not features");
    cr_expect_str_eq(tg_dataset_feature_name(ds, 0), "speed, m/s");
    cr_expect_str_eq(tg_dataset_feature_name(ds, 1), "temp");
    cr_expect_eq(tg_dataset_length(ds, 0), 2);
    cr_expect_eq(tg_dataset_length(ds, 1), 1);
    cr_expect_eq(tg_dataset_seq(ds, 0)[2], 2.5);
    cr_expect_eq(tg_dataset_seq(ds, 1)[1], 2.2);
    cr_expect_eq(tg_dataset_label(ds, 0), 1);
    cr_expect_eq(tg_dataset_label(ds, 1), 0);
    tg_dataset_free(ds);
    /* label kind inferred: constant integers per sequence = CLASS */
    ds = tg_dataset_load(p, NULL, &(tg_data_options){.seq_column = "walk", .label_column = "label"}, g_err, sizeof g_err);
    cr_assert_not_null(ds, "%s", g_err);
    cr_expect_eq(tg_dataset_label_kind(ds), TG_LABELS_CLASS);
    tg_dataset_free(ds);
    /* the same column as per-step tags, and as values; explicit feature list */
    ds = tg_dataset_load(p, NULL, &(tg_data_options){.seq_column = "walk", .label_column = "label",
                                                     .label_kind = TG_LABELS_TAG}, g_err, sizeof g_err);
    cr_assert_not_null(ds, "%s", g_err);
    cr_expect_eq(tg_dataset_tags(ds, 0)[1], 1);
    tg_dataset_free(ds);
    ds = tg_dataset_load(p, NULL, &(tg_data_options){.seq_column = "walk", .label_column = "temp", .label_kind = TG_LABELS_TAG,
                                                     .feature_columns = (const char *const[]){"label", NULL}}, g_err, sizeof g_err);
    cr_expect_null(ds, "temp 2.2 is not a class index");
    expect_msg(g_err, "walks.csv: line 4, column 'temp': label 2.2 is not a class index", NULL);
    ds = tg_dataset_load(p, NULL, &(tg_data_options){.label_column = "speed, m/s",
                                                     .feature_columns = (const char *const[]){"temp", NULL}}, g_err, sizeof g_err);
    cr_expect_null(ds, "real labels that vary along the one series are not one value per sequence");
    expect_msg(g_err, "line 3, column 'speed, m/s': label 2.5 differs from 1.5 at line 2", "(value labels are one per sequence)");
    ds = tg_dataset_load(p, NULL, &(tg_data_options){.label_column = "label",
                                                     .feature_columns = (const char *const[]){"temp", NULL}}, g_err, sizeof g_err);
    cr_assert_not_null(ds, "%s", g_err);
    cr_expect_eq(tg_dataset_size(ds), 1, "no seq column: one long series");
    cr_expect_eq(tg_dataset_length(ds, 0), 3);
    cr_expect_eq(tg_dataset_label_kind(ds), TG_LABELS_TAG, "integer labels without a seq column = per-step tags");
    cr_expect_eq(tg_dataset_tags(ds, 0)[2], 0);
    tg_dataset_free(ds);
}

TH_TEST(data, csv_one_long_series_for_forecasting, th_quiet_check) {
    char text[4096] = "YEAR,SUNACTIVITY\n";
    for (int k = 0; k < 100; k++) snprintf(text + strlen(text), sizeof text - strlen(text), "%d.0,%.17g\n", 1700 + k, 50 + 40 * sin(k / 3.0));
    const char *p = write_text("sun.csv", text);
    tg_dataset *ds = tg_dataset_load(p, NULL, &(tg_data_options){.feature_columns = (const char *const[]){"SUNACTIVITY", NULL}},
                                     g_err, sizeof g_err);
    cr_assert_not_null(ds, "%s", g_err);
    cr_expect_eq(tg_dataset_size(ds), 1);
    cr_expect_eq(tg_dataset_length(ds, 0), 100);
    cr_expect_eq(tg_dataset_features(ds), 1);
    cr_expect_eq(tg_dataset_seq(ds, 0)[10], 50 + 40 * sin(10 / 3.0), "%.17g round-trips");
    tg_dataset *w = tg_dataset_windows(ds, 12, 1, 1, g_err, sizeof g_err);
    cr_assert_not_null(w, "%s", g_err);
    cr_expect_eq(tg_dataset_size(w), 88);
    tg_dataset_free(w);
    tg_dataset_free(ds);
}

TH_TEST(data, csv_label_column_optional_loads_new_data_without_labels, th_quiet_check) {
    const char *p = write_text("new.csv", "walk,a,b\nx,1,2\nx,3,4\ny,5,6\n");
    tg_data_options o = {.seq_column = "walk", .label_column = "label", .label_kind = TG_LABELS_CLASS};
    cr_expect_null(tg_dataset_load(p, NULL, &o, g_err, sizeof g_err), "a missing label column is an error by default");
    expect_msg(g_err, "new.csv: line 1: no column 'label' (label_column not found; the header has: walk, a, b)", NULL);
    o.label_column_optional = true;
    tg_dataset *ds = tg_dataset_load(p, NULL, &o, g_err, sizeof g_err);
    cr_assert_not_null(ds, "%s", g_err);
    cr_expect_eq(tg_dataset_label_kind(ds), TG_LABELS_NONE);
    cr_expect_eq(tg_dataset_size(ds), 2);
    cr_expect_eq(tg_dataset_features(ds), 2, "a and b, not the sequence column");
    cr_expect_eq(tg_dataset_seq(ds, 1)[1], 6);
    tg_dataset_free(ds);
    /* when the column is there, its labels are read as usual */
    p = write_text("lab.csv", "walk,a,label\nx,1,2\ny,5,0\n");
    ds = tg_dataset_load(p, NULL, &o, g_err, sizeof g_err);
    cr_assert_not_null(ds, "%s", g_err);
    cr_expect_eq(tg_dataset_label_kind(ds), TG_LABELS_CLASS);
    cr_expect_eq(tg_dataset_label(ds, 0), 2);
    tg_dataset_free(ds);
    /* it does not excuse a missing sequence column */
    o.seq_column = "id";
    cr_expect_null(tg_dataset_load(p, NULL, &o, g_err, sizeof g_err));
    expect_msg(g_err, "no column 'id' (seq_column not found", NULL);
}

TH_TEST(data, malformed_csv_is_rejected_with_line_and_column, th_quiet_check) {
    struct { const char *text; tg_data_options opt; const char *msg; } rows[] = {
        {"a,b\n1,2\n3\n", {0}, "line 3: 1 fields, the header has 2"},
        {"a,b\n1,2\n3,4,5\n", {0}, "line 3: 3 fields, the header has 2"},
        {"a,b\n1,2\n3,x\n", {0}, "line 3, column 'b': 'x' is not a number"},
        {"a,b\n1,2\n3,\n", {0}, "line 3, column 'b': missing value"},
        {"a,b\n1,2\nnan,4\n", {0}, "line 3, column 'a': 'nan' is not a finite number"},
        {"a,b\n1,2\n1e999,4\n", {0}, "line 3, column 'a': '1e999' is not a finite number"},
        {"a,b\n1,2\n-inf,4\n", {0}, "is not a finite number"},
        {"a,b\n1,2\n\n3,4\n", {0}, "line 3: empty line in the middle"},
        {"", {0}, "empty file"},
        {"\n", {0}, "line 1: no header row"},
        {"a,b\n", {0}, "no data rows after the header"},
        {"a,,b\n1,2,3\n", {0}, "line 1: column 2 has no name"},
        {"a,b,a\n1,2,3\n", {0}, "column name 'a' appears twice"},
        {"a,b\n1,2\n", {.seq_column = "id"}, "no column 'id' (seq_column not found; the header has: a, b)"},
        {"a,b\n1,2\n", {.label_column = "y"}, "no column 'y'"},
        {"a,b\n1,2\n", {.feature_columns = (const char *const[]){"c", NULL}}, "no feature column 'c'"},
        {"a,b\n1,2\n", {.label_column = "a", .feature_columns = (const char *const[]){"a", NULL}}, "both a feature and the label column"},
        {"s,a,y\nu,1,0\nu,2,1\n", {.seq_column = "s", .label_column = "y", .label_kind = TG_LABELS_CLASS},
         "line 3, column 'y': label 1 differs from 0 at line 2 of the same sequence 'u'"},
        {"s,a\nu,1\nv,2\nu,3\n", {.seq_column = "s"}, "line 4: sequence 'u' resumes after other rows (it started at line 2"},
        {"s,a,y\nu,1,-1\n", {.seq_column = "s", .label_column = "y", .label_kind = TG_LABELS_CLASS}, "label -1 is not a class index"},
        {"s,a,y\nu,1,2000000\n", {.seq_column = "s", .label_column = "y", .label_kind = TG_LABELS_TAG}, "label 2e+06 is not a class index"},
        {"s,a,y\nu,1,\n", {.seq_column = "s", .label_column = "y"}, "line 2, column 'y': label missing"},
        {"s,t\nu,v\n", {.seq_column = "s"}, "line 2: no numeric feature column"},
        {"a,b\n\"1,2\n", {0}, "line 2: a quoted field is not closed"},
        {"a,b\n\"1\"x,2\n", {0}, "line 2: text after a closing quote"},
        {"a,b\n1\"2,3\n", {0}, "line 2: a quote inside an unquoted field"},
    };
    for (size_t k = 0; k < sizeof rows / sizeof *rows; k++) {
        const char *p = write_text("bad.csv", rows[k].text);
        g_err[0] = 0;
        tg_dataset *ds = tg_dataset_load(p, NULL, &rows[k].opt, g_err, sizeof g_err);
        cr_expect_null(ds, "row %zu accepted: %s", k, rows[k].text);
        tg_dataset_free(ds);
        expect_msg(g_err, "bad.csv", rows[k].msg);
    }
    /* quoted fields may hold newlines: line numbers count physical lines */
    const char *p = write_text("q.csv", "s,a\n\"x\ny\",1\n\"x\ny\",2\nz,oops\n");
    cr_expect_null(tg_dataset_load(p, NULL, &(tg_data_options){.seq_column = "s"}, g_err, sizeof g_err));
    expect_msg(g_err, "q.csv: line 6, column 'a': 'oops' is not a number", NULL);
    /* an empty quoted field before any other quoted one: no unquoting buffer exists yet (UBSan caught
       NULL + 0 here); an empty name is a valid sequence id */
    p = write_text("e.csv", "s,a\n\"\",1\n\"\",2\n");
    tg_dataset *e = tg_dataset_load(p, NULL, &(tg_data_options){.seq_column = "s"}, g_err, sizeof g_err);
    cr_expect_not_null(e, "%s", g_err);
    if (e) cr_expect_eq(tg_dataset_length(e, 0), 2);
    tg_dataset_free(e);
    /* a CSV cannot take a labels file */
    cr_expect_null(tg_dataset_load(write_text("ok.csv", "a\n1\n"), FIX "y_i8.npy", NULL, g_err, sizeof g_err));
    expect_msg(g_err, "label column", NULL);
}

/* ---- safetensors data files -------------------------------------------------------------------- */

/* A safetensors image from a JSON header and raw data. */
static const char *write_st(const char *name, const char *json, const void *data, size_t n) {
    static unsigned char buf[1 << 14];
    size_t h = strlen(json);
    uint64_t hl = h;
    for (int k = 0; k < 8; k++) buf[k] = (unsigned char)(hl >> (8 * k));
    memcpy(buf + 8, json, h);
    memcpy(buf + 8 + h, data, n);
    return write_file(name, buf, 8 + h + n);
}

TH_TEST(data, safetensors_with_int64_labels_and_lengths_as_pytorch_writes_them, th_quiet_check) {
    tg_dataset *ds = tg_dataset_load(FIX "seqs.safetensors", NULL, NULL, g_err, sizeof g_err);
    cr_assert_not_null(ds, "%s", g_err);
    cr_expect_eq(tg_dataset_size(ds), 3);
    cr_expect_eq(tg_dataset_length(ds, 0), 4);
    cr_expect_eq(tg_dataset_length(ds, 1), 2);
    cr_expect_eq(tg_dataset_length(ds, 2), 3);
    cr_expect_eq(tg_dataset_seq(ds, 2)[5], ((double)(2 * 8 + 5) - 5.5) / 4.0);
    cr_expect_eq(tg_dataset_label_kind(ds), TG_LABELS_CLASS);
    cr_expect_eq(tg_dataset_label(ds, 0), 2);
    cr_expect_eq(tg_dataset_classes(ds), 3);
    tg_dataset_free(ds);
    /* tags [N,T] as I64, x as F64 written by tg_st_save's format */
    double xs[4] = {1, 2, 3, 4};
    int64_t tags[4] = {0, 3, 1, 1};
    unsigned char data[64];
    memcpy(data, xs, 32);
    memcpy(data + 32, tags, 32);
    const char *p = write_st("tags.safetensors", "{\"x\":{\"dtype\":\"F64\",\"shape\":[2,2],\"data_offsets\":[0,32]},"
                             "\"y\":{\"dtype\":\"I64\",\"shape\":[2,2],\"data_offsets\":[32,64]}}", data, 64);
    ds = tg_dataset_load(p, NULL, NULL, g_err, sizeof g_err);
    cr_assert_not_null(ds, "%s", g_err);
    cr_expect_eq(tg_dataset_size(ds), 2, "2-D x with labels = [N, T]");
    cr_expect_eq(tg_dataset_label_kind(ds), TG_LABELS_TAG);
    cr_expect_eq(tg_dataset_tags(ds, 0)[1], 3);
    cr_expect_eq(tg_dataset_classes(ds), 4);
    tg_dataset_free(ds);
}

TH_TEST(data, malformed_safetensors_data_files_are_rejected, th_quiet_check) {
    double xs[4] = {1, 2, 3, 4};
    int64_t big[2] = {(int64_t)1 << 60, 0}, len_bad[2] = {1, 3};
    unsigned char d[64];
    struct { const char *json; const void *a; size_t na; const void *b; size_t nb; const char *msg; } rows[] = {
        {"{\"z\":{\"dtype\":\"F64\",\"shape\":[4],\"data_offsets\":[0,32]}}", xs, 32, NULL, 0, "unexpected tensor 'z'"},
        {"{\"y\":{\"dtype\":\"F64\",\"shape\":[4],\"data_offsets\":[0,32]}}", xs, 32, NULL, 0, "no tensor 'x'"},
        {"{\"x\":{\"dtype\":\"F64\",\"shape\":[2,2],\"data_offsets\":[0,32]},\"y\":{\"dtype\":\"I64\",\"shape\":[2],\"data_offsets\":[32,48]}}",
         xs, 32, big, 16, "tensor 'y': element 0 of dtype I64 does not fit a double exactly"},
        {"{\"x\":{\"dtype\":\"F64\",\"shape\":[2,2,1],\"data_offsets\":[0,32]},\"lengths\":{\"dtype\":\"I64\",\"shape\":[2],\"data_offsets\":[32,48]}}",
         xs, 32, len_bad, 16, "tensor 'lengths': length 3 of sequence 1 is outside 1..2"},
        {"{\"x\":{\"dtype\":\"F64\",\"shape\":[2,2,1],\"data_offsets\":[0,32]},\"lengths\":{\"dtype\":\"F64\",\"shape\":[2],\"data_offsets\":[32,48]}}",
         xs, 32, xs, 16, "tensor 'lengths': shape (2,) of float64 must be [N] = (2,) integers"},
        {"{\"x\":{\"dtype\":\"F64\",\"shape\":[2,2],\"data_offsets\":[0,40]}}", xs, 32, xs, 8, "data_offsets span 40"},
        {"{\"x\":{\"dtype\":\"F16\",\"shape\":[2],\"data_offsets\":[0,4]}}", xs, 4, NULL, 0, "dtype F16 is not supported"},
        {"{\"x\":{\"dtype\":\"F64\",\"shape\":[100000000000],\"data_offsets\":[0,800000000000]}}", xs, 32, NULL, 0, "extend past the end"},
    };
    for (size_t k = 0; k < sizeof rows / sizeof *rows; k++) {
        memcpy(d, rows[k].a, rows[k].na);
        if (rows[k].b) memcpy(d + rows[k].na, rows[k].b, rows[k].nb);
        const char *p = write_st("bad.safetensors", rows[k].json, d, rows[k].na + rows[k].nb);
        g_err[0] = 0;
        tg_dataset *ds = tg_dataset_load(p, NULL, NULL, g_err, sizeof g_err);
        cr_expect_null(ds, "row %zu accepted", k);
        tg_dataset_free(ds);
        expect_msg(g_err, "bad.safetensors", rows[k].msg);
        cr_expect_str_eq(tg_last_error(), "", "no pending library error is left behind");
    }
    /* truncated: the header length points past the end */
    size_t n;
    unsigned char *b = slurp(FIX "seqs.safetensors", &n);
    const char *p = write_file("cut.safetensors", b, 40);
    free(b);
    cr_expect_null(tg_dataset_load(p, NULL, NULL, g_err, sizeof g_err));
    expect_msg(g_err, "cut.safetensors", NULL);
    /* y in the file and a labels file too */
    cr_expect_null(tg_dataset_load(FIX "seqs.safetensors", FIX "y_i8.npy", NULL, g_err, sizeof g_err));
    expect_msg(g_err, "labels file was given too", NULL);
    /* a NaN value, and empty files of the two binary formats without a magic of their own */
    double nan4[4] = {1, 2, NAN, 4};
    p = write_st("nan.safetensors", "{\"x\":{\"dtype\":\"F64\",\"shape\":[2,2,1],\"data_offsets\":[0,32]}}", nan4, 32);
    cr_expect_null(tg_dataset_load(p, NULL, NULL, g_err, sizeof g_err));
    expect_msg(g_err, "nan.safetensors: tensor 'x': sequence 1, step 0, feature 0 is nan", NULL);
    cr_expect_null(tg_dataset_load(write_file("empty.safetensors", "", 0), NULL, NULL, g_err, sizeof g_err));
    expect_msg(g_err, "empty.safetensors: empty file", NULL);
    cr_expect_null(tg_dataset_load(write_file("empty-idx3-ubyte", "", 0), NULL, NULL, g_err, sizeof g_err));
    expect_msg(g_err, "empty-idx3-ubyte: empty file", NULL);
}

/* ---- damaged files: every fixture, mutated, is read or refused with a message, never a crash ---- */

TH_TEST(data, mutated_fixtures_are_loaded_or_refused_with_a_message, th_quiet_check) {
    /* a small seeded mutation sweep (bit flips, byte overwrites, truncation, all three); memory errors
     * would show under ASan/valgrind, which run this suite too */
    const char *files[][2] = {
        {"x_f8.npy", NULL}, {"tags_i8.npy", NULL}, {"images-idx3-ubyte", NULL}, {"images-idx3-ubyte.gz", NULL},
        {"seqs.safetensors", NULL}, {"payload.1.gz", "gz"}, {"payload.9.gz", "gz"}, {"random.gz", "gz"}, {"tiny.gz", "gz"},
        {"multi.gz", "gz"},
    };
    const char *csv = "walk,a,b,label\nx,1,2,0\nx,3,\"4\",0\ny,5,6e-1,1\n";
    tg_rng rng;
    tg_rng_seed(&rng, 5);
    int refused = 0, total = 0, rounds = getenv("TG_VALGRIND") ? 8 : 40; /* valgrind: fewer rounds */
    for (size_t f = 0; f <= sizeof files / sizeof *files; f++) {
        size_t n;
        unsigned char *orig;
        char name[64];
        if (f < sizeof files / sizeof *files) {
            char p[512];
            snprintf(p, sizeof p, FIX "%s", files[f][0]);
            orig = slurp(p, &n);
            snprintf(name, sizeof name, "m_%s", files[f][0]);
        } else {
            n = strlen(csv);
            orig = malloc(n);
            memcpy(orig, csv, n);
            snprintf(name, sizeof name, "m.csv");
        }
        unsigned char *b = malloc(n);
        for (int k = 0; k < rounds; k++) {
            memcpy(b, orig, n);
            size_t m = n;
            int how = (int)tg_rng_below(&rng, 4);
            if (how == 0 || how == 3) b[tg_rng_below(&rng, n)] ^= (unsigned char)(1u << tg_rng_below(&rng, 8));
            if (how == 1 || how == 3) b[tg_rng_below(&rng, n)] = (unsigned char)tg_rng_below(&rng, 256);
            if (how == 2 || how == 3) m = (size_t)tg_rng_below(&rng, n);
            g_err[0] = 0;
            total++;
            if (files[f < sizeof files / sizeof *files ? f : 0][1] && f < sizeof files / sizeof *files) {
                unsigned char *out = NULL;
                size_t out_len;
                int rc = tg_gunzip(b, m, name, 1 << 20, &out, &out_len, g_err, sizeof g_err);
                if (rc) {
                    refused++;
                    cr_expect(strstr(g_err, name) != NULL, "message \"%s\" lacks the name", g_err);
                    cr_expect_null(out);
                }
                free(out);
                continue;
            }
            const char *p = write_file(name, b, m);
            tg_dataset *ds = tg_dataset_load(p, NULL, f == sizeof files / sizeof *files ?
                                             &(tg_data_options){.seq_column = "walk", .label_column = "label"} : NULL,
                                             g_err, sizeof g_err);
            if (!ds) {
                refused++;
                cr_expect(g_err[0] != 0 && strstr(g_err, name) != NULL, "refused without naming the file: \"%s\"", g_err);
            }
            tg_dataset_free(ds);
        }
        free(b);
        free(orig);
    }
    cr_expect_gt(refused, total / 4, "most damage is noticed (%d of %d refused)", refused, total);
    cr_log_info("%d of %d mutated files refused", refused, total);
}

/* A data format is a row of data/load.c's k_formats; what the build cannot see, this checks for every
 * row: a malformed_<name> test in this file, its fuzz target tests/fuzz/fuzz_<fuzz>.c listed in
 * tests/fuzz/meson.build's fuzz_targets, and at least one seed in tests/fuzz/corpus/<fuzz>/. */
static int seeds_in(const char *dir) {
    DIR *d = opendir(dir);
    if (!d) return 0;
    int n = 0;
    for (struct dirent *e; (e = readdir(d));)
        if (e->d_name[0] != '.') n++;
    closedir(d);
    return n;
}

TH_TEST(data, every_format_has_its_tests_and_a_fuzz_target, th_quiet_check) {
    const char *tests = TG_TEST_DATA_DIR "/..";
    char path[1024], want[256];
    cr_assert_gt(tgd_format_count(), 0);
    for (int k = 0; k < tgd_format_count(); k++) {
        const char *name = tgd_format_name(k), *fz = tgd_format_fuzz(k);
        cr_assert_not_null(fz, "format %s has no .fuzz in data/load.c's k_formats", name);
        snprintf(path, sizeof path, "%s/test_data.c", tests);
        char *src = th_slurp(path);
        cr_assert_not_null(src, "cannot read %s", path);
        snprintf(want, sizeof want, "TH_TEST(data, malformed_%s", name);
        cr_expect(strstr(src, want) != NULL, "format %s has no test '%s...' in tests/test_data.c", name, want);
        free(src);
        snprintf(path, sizeof path, "%s/fuzz/fuzz_%s.c", tests, fz);
        struct stat st;
        cr_expect(stat(path, &st) == 0, "format %s has no fuzz target tests/fuzz/fuzz_%s.c", name, fz);
        snprintf(path, sizeof path, "%s/fuzz/meson.build", tests);
        src = th_slurp(path);
        cr_assert_not_null(src, "cannot read %s", path);
        snprintf(want, sizeof want, "'%s' :", fz);
        cr_expect(strstr(src, want) != NULL, "format %s: fuzz_%s is not in tests/fuzz/meson.build's fuzz_targets",
                  name, fz);
        free(src);
        snprintf(path, sizeof path, "%s/fuzz/corpus/%s", tests, fz);
        cr_expect(seeds_in(path) > 0, "format %s has no seeds in tests/fuzz/corpus/%s/", name, fz);
    }
}
