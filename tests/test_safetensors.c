/* tests/test_safetensors.c - safetensors reader and writer (docs/design.md §9).
 *
 * What is checked:
 *   - round trips of F32/F64, views (non-zero storage offset), 0-d scalars, zero-size dimensions,
 *     metadata, and names that need JSON escaping (quotes, backslash, control characters, non-ASCII);
 *   - the exact bytes tg_st_save writes for a small file (so other readers can load it);
 *   - a hand-written header exercising whitespace, key order, escapes and padding;
 *   - a table of malformed files, each rejected by tg_st_parse with the expected message;
 *   - argument errors of tg_st_save, which leave no file behind and an existing file untouched;
 *   - a save removes the temporaries that killed saves into the same file left (named exactly
 *     "<file>.tmp.XXXXXX", regular, not locked by a live save) and nothing else;
 *   - a PyTorch-written conformance case (known values read with Python's struct module:
 *     python3 -c "import struct,json; b=open(F,'rb').read(); n=struct.unpack('<Q',b[:8])[0]; ...").
 * Every test ends with the same check: no tensor leaked (tg_live_tensors back to its starting value) and
 * the error handler was never called (data errors are quiet).
 */
#define _POSIX_C_SOURCE 200809L
#include <criterion/criterion.h>
#include <tapegrad/safetensors.h>

#include <dirent.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "helpers.h"

#ifndef TG_TEST_DATA_DIR
#define TG_TEST_DATA_DIR "tests/data"
#endif
#define CASE_0002 TG_TEST_DATA_DIR "/conformance/0002_lstm_L2_f32_random.case.safetensors"
#define REF_0002 TG_TEST_DATA_DIR "/conformance/0002_lstm_L2_f32_random.ref.safetensors"

/* ---- fixture: temp directory, live-tensor baseline, handler that must stay silent --------------- */

static void setup(void) {
    th_quiet_start();
    th_dir_make();
}

static void teardown(void) {
    th_dir_remove();
    tg_set_error_handler(NULL, NULL);
}

TestSuite(safetensors, .init = setup, .fini = teardown);

static unsigned char *read_file(const char *path, size_t *size) {
    FILE *f = fopen(path, "rb");
    cr_assert_not_null(f, "cannot open %s", path);
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *b = malloc((size_t)n + 1);
    cr_assert_eq(fread(b, 1, (size_t)n, f), (size_t)n);
    fclose(f);
    *size = (size_t)n;
    return b;
}

/* Files in the temp directory other than `keep` (finds left-over temporaries). */
static int stray_files(const char *keep) {
    int n = 0;
    DIR *d = opendir(th_dir());
    struct dirent *e;
    while ((e = readdir(d)))
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..") && (!keep || strcmp(e->d_name, keep))) n++;
    closedir(d);
    return n;
}

/* u64 LE length + header + data_len bytes of data (0x11 each). */
static unsigned char *build(const char *header, size_t hlen, size_t data_len, size_t *size) {
    *size = 8 + hlen + data_len;
    unsigned char *b = malloc(*size + 1);
    for (int i = 0; i < 8; i++) b[i] = (unsigned char)((uint64_t)hlen >> (8 * i));
    memcpy(b + 8, header, hlen);
    memset(b + 8 + hlen, 0x11, data_len);
    return b;
}

static void assert_same_tensor(const tg_tensor *a, const tg_tensor *b, const char *what) {
    char sa[64], sb[64];
    cr_assert_not_null(b, "%s: missing", what);
    cr_assert_eq(tg_dtype_of(a), tg_dtype_of(b), "%s: dtype", what);
    cr_assert(tg_same_shape(a, b), "%s: shape %s vs %s", what, tg_shape_str(a, sa, 64), tg_shape_str(b, sb, 64));
    cr_assert_eq(memcmp(tg_cdata(a), tg_cdata(b), (size_t)tg_numel(a) * tg_itemsize(tg_dtype_of(a))), 0,
                 "%s: data differs", what);
}

/* Saves n tensors, loads them back, compares; returns the loaded file (caller frees). */
static tg_st_file *round_trip(int n, const char *const *names, tg_tensor *const *ts, int nmeta, const char *const *meta) {
    const char *path = th_path_in("rt.safetensors");
    cr_assert_eq(tg_st_save(path, n, names, ts, nmeta, meta), 0, "save: %s", tg_last_error());
    tg_st_file *f = tg_st_load(path);
    cr_assert_not_null(f, "load: %s", tg_last_error());
    cr_assert_eq(tg_st_count(f), n);
    for (int i = 0; i < n; i++) {
        cr_assert_str_eq(tg_st_name_at(f, i), names[i], "order of tensors");
        assert_same_tensor(ts[i], tg_st_get(f, names[i]), names[i]);
        cr_assert_eq(tg_st_tensor_at(f, i), tg_st_get(f, names[i]));
    }
    cr_assert_eq(tg_st_meta_count(f), nmeta);
    for (int i = 0; i < nmeta; i++) {
        cr_assert_str_eq(tg_st_meta_key(f, i), meta[2 * i]);
        cr_assert_str_eq(tg_st_meta_value(f, i), meta[2 * i + 1]);
        cr_assert_str_eq(tg_st_meta(f, meta[2 * i]), meta[2 * i + 1]);
    }
    /* the file is tiled exactly and its header padded: 8 + N is a multiple of 8 */
    size_t size;
    unsigned char *raw = read_file(path, &size);
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--) hlen = hlen << 8 | raw[i];
    cr_assert_eq(hlen % 8, 0, "header length %llu not padded", (unsigned long long)hlen);
    cr_assert_eq(raw[8], '{');
    free(raw);
    cr_assert_eq(stray_files("rt.safetensors"), 0, "temporary file left behind");
    return f;
}

/* ---- round trips ---------------------------------------------------------------------------------- */

TH_TEST(safetensors, round_trip_f32, th_quiet_check) {
    tg_rng rng;
    tg_rng_seed(&rng, 7);
    tg_tensor *a = tg_rand_normal(&rng, TG_F32, TG_SHAPE(2, 3), 0, 1);
    tg_tensor *b = tg_rand_uniform(&rng, TG_F32, TG_SHAPE(4, 1, 5), -1, 1);
    tg_tensor *c = tg_rand_uniform(&rng, TG_F32, TG_SHAPE(1, 2, 1, 2, 1, 2), -1, 1); /* TG_MAX_DIMS */
    const char *names[] = {"weight", "bias", "six_dims"};
    tg_tensor *ts[] = {a, b, c};
    tg_st_free(round_trip(3, names, ts, 0, NULL));
    tg_release(a); tg_release(b); tg_release(c);
}

TH_TEST(safetensors, round_trip_f64_and_views, th_quiet_check) {
    tg_tensor *base = tg_arange(TG_F64, 0, 12, 1);
    tg_tensor *m = tg_reshape_view(base, TG_SHAPE(4, 3));
    tg_tensor *row = tg_view_at(m, 2);          /* storage offset 6: {6, 7, 8} */
    tg_tensor *rows = tg_view_range(m, 1, 3);   /* [2,3] at offset 3 */
    const char *names[] = {"row", "rows", "m", "tiny"};
    tg_tensor *tiny = tg_from_f64(TG_F64, TG_SHAPE(2), (const double[]){1e-310, -0.0}); /* subnormal, -0 */
    tg_tensor *ts[] = {row, rows, m, tiny};
    tg_st_file *f = round_trip(4, names, ts, 0, NULL);
    tg_tensor *r = tg_st_get(f, "row");
    cr_assert_eq(tg_get(r, 0), 6.0);
    cr_assert_eq(tg_get(r, 2), 8.0);
    cr_assert_eq(tg_get(tg_st_get(f, "rows"), 0), 3.0);
    cr_assert(!tg_shares_storage(r, tg_st_get(f, "m")), "loaded tensors own their data");
    tg_st_free(f);
    tg_release(tiny); tg_release(rows); tg_release(row); tg_release(m); tg_release(base);
}

TH_TEST(safetensors, round_trip_scalars, th_quiet_check) {
    tg_tensor *s32 = tg_scalar(TG_F32, 2.5), *s64 = tg_scalar(TG_F64, -1.0 / 3.0);
    const char *names[] = {"s32", "s64"};
    tg_tensor *ts[] = {s32, s64};
    tg_st_file *f = round_trip(2, names, ts, 0, NULL);
    cr_assert_eq(tg_ndim(tg_st_get(f, "s32")), 0);
    cr_assert_eq(tg_item(tg_st_get(f, "s64")), -1.0 / 3.0);
    tg_st_free(f);
    tg_release(s32); tg_release(s64);
}

TH_TEST(safetensors, round_trip_zero_size_dims, th_quiet_check) {
    tg_tensor *a = tg_empty(TG_F32, TG_SHAPE(0));
    tg_tensor *b = tg_empty(TG_F64, TG_SHAPE(3, 0, 2));
    tg_tensor *c = tg_ones(TG_F32, TG_SHAPE(2));
    tg_tensor *d = tg_empty(TG_F32, TG_SHAPE(5, 0));
    const char *names[] = {"a", "b", "c", "d"}; /* empty tensors before, between and after data */
    tg_tensor *ts[] = {a, b, c, d};
    tg_st_file *f = round_trip(4, names, ts, 0, NULL);
    cr_assert_eq(tg_dim(tg_st_get(f, "b"), 1), 0);
    cr_assert_eq(tg_numel(tg_st_get(f, "d")), 0);
    tg_st_free(f);
    tg_release(a); tg_release(b); tg_release(c); tg_release(d);
}

TH_TEST(safetensors, round_trip_metadata, th_quiet_check) {
    tg_tensor *a = tg_ones(TG_F32, TG_SHAPE(1));
    const char *names[] = {"a"};
    tg_tensor *ts[] = {a};
    const char *meta[] = {"cell", "lstm", "empty", "", "", "empty key", "quote\"s", "back\\slash\n\ttab",
                          "unicode", "h\xc3\xa9llo \xe2\x82\xac \xf0\x9f\x98\x80", "ctl", "\x01\x1f\x7f"};
    tg_st_free(round_trip(1, names, ts, 6, meta));
    /* metadata without tensors */
    tg_st_free(round_trip(0, NULL, NULL, 1, meta));
    tg_release(a);
}

TH_TEST(safetensors, round_trip_names_needing_escapes, th_quiet_check) {
    const char *names[] = {"q\"uote", "back\\slash", "new\nline\r\t\b\f", "ctl\x01\x1f", "sl/ash",
                           "\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80", "__metadata", " "};
    tg_tensor *ts[8];
    for (int i = 0; i < 8; i++) ts[i] = tg_full(TG_F64, TG_SHAPE(i + 1), i);
    tg_st_file *f = round_trip(8, names, ts, 0, NULL);
    cr_assert_eq(tg_numel(tg_st_get(f, "new\nline\r\t\b\f")), 3);
    cr_assert_null(tg_st_get(f, "absent"));
    cr_assert_null(tg_st_name_at(f, 8));
    cr_assert_null(tg_st_tensor_at(f, -1));
    cr_assert(!tg_error_pending(), "lookups of absent names are not errors");
    tg_st_free(f);
    for (int i = 0; i < 8; i++) tg_release(ts[i]);
}

/* The exact bytes, so that Python/Rust readers (and diff-based tests) see the usual layout. */
TH_TEST(safetensors, save_writes_expected_bytes, th_quiet_check) {
    tg_tensor *a = tg_from_array(TG_F32, TG_SHAPE(2), (const float[]){1.5f, -2.0f});
    tg_tensor *s = tg_scalar(TG_F64, 1.0);
    const char *names[] = {"a\"b", "s"};
    tg_tensor *ts[] = {a, s};
    const char *meta[] = {"k", "v\n"};
    const char *path = th_path_in("exact.safetensors");
    cr_assert_eq(tg_st_save(path, 2, names, ts, 1, meta), 0, "%s", tg_last_error());
    const char *json = "{\"__metadata__\":{\"k\":\"v\\n\"},"
                       "\"a\\\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
                       "\"s\":{\"dtype\":\"F64\",\"shape\":[],\"data_offsets\":[8,16]}}";
    size_t jl = strlen(json), padded = (jl + 7) / 8 * 8, size;
    unsigned char *raw = read_file(path, &size);
    cr_assert_eq(size, 8 + padded + 16);
    cr_assert_eq(raw[0], (unsigned char)padded);
    for (int i = 1; i < 8; i++) cr_assert_eq(raw[i], 0);
    cr_assert_eq(memcmp(raw + 8, json, jl), 0, "header: %.*s", (int)padded, (const char *)raw + 8);
    for (size_t i = jl; i < padded; i++) cr_assert_eq(raw[8 + i], ' ', "padding is spaces");
    static const unsigned char data[16] = {0, 0, 0xc0, 0x3f, 0, 0, 0, 0xc0, /* 1.5f, -2.0f LE */
                                           0, 0, 0, 0, 0, 0, 0xf0, 0x3f};   /* 1.0 LE */
    cr_assert_eq(memcmp(raw + 8 + padded, data, 16), 0, "little-endian data");
    cr_assert_eq(stray_files("exact.safetensors"), 0);
    free(raw);
    tg_release(a); tg_release(s);
}

TH_TEST(safetensors, save_overwrites_existing_file, th_quiet_check) {
    const char *path = th_path_in("w.safetensors");
    tg_tensor *a = tg_zeros(TG_F32, TG_SHAPE(3)), *b = tg_ones(TG_F64, TG_SHAPE(2, 2));
    const char *na[] = {"a"}, *nb[] = {"b"};
    cr_assert_eq(tg_st_save(path, 1, na, &a, 0, NULL), 0);
    cr_assert_eq(tg_st_save(path, 1, nb, &b, 0, NULL), 0);
    tg_st_file *f = tg_st_load(path);
    cr_assert_not_null(f, "%s", tg_last_error());
    cr_assert_null(tg_st_get(f, "a"));
    cr_assert_eq(tg_get(tg_st_get(f, "b"), 3), 1.0);
    tg_st_free(f);
    cr_assert_eq(stray_files("w.safetensors"), 0);
    tg_release(a); tg_release(b);
}

static void touch(const char *name) {
    FILE *f = fopen(th_path_in(name), "w");
    cr_assert_not_null(f, "cannot create %s", name);
    fputs("left by someone", f);
    fclose(f);
}

static bool exists(const char *name) {
    struct stat st;
    return lstat(th_path_in(name), &st) == 0;
}

TH_TEST(safetensors, save_removes_only_the_stale_temporaries_of_the_same_file, th_quiet_check) {
    /* what killed saves into m.safetensors leave (mkstemp's six characters), and look-alikes that are
     * not ours: other lengths and characters, another target, a directory, a link */
    const char *stale[] = {"m.safetensors.tmp.Ab3xYz", "m.safetensors.tmp.000000", "m.safetensors.tmp.zzZZ99"};
    const char *kept[] = {"m.safetensors.tmp.Ab3xY", "m.safetensors.tmp.Ab3xYz1", "m.safetensors.tmp.Ab-xYz",
                          "m.safetensors.tmp.Ab3xYz.keep", "m.safetensors.tmpAb3xYz", "n.safetensors.tmp.Ab3xYz",
                          "xm.safetensors.tmp.Ab3xYz", "m.safetensors.tmp.", "m.safetensors.TMP.Ab3xYz"};
    for (size_t i = 0; i < sizeof stale / sizeof *stale; i++) touch(stale[i]);
    for (size_t i = 0; i < sizeof kept / sizeof *kept; i++) touch(kept[i]);
    char dir[256], link[256], held[256];
    snprintf(dir, sizeof dir, "%s", th_path_in("m.safetensors.tmp.Dir123"));
    cr_assert_eq(mkdir(dir, 0700), 0);
    snprintf(link, sizeof link, "%s", th_path_in("m.safetensors.tmp.Lnk123"));
    cr_assert_eq(symlink(th_path_in(kept[0]), link), 0);
    /* a live save's temporary: a process holds the lock on it, as tg_st_save does until its rename */
    snprintf(held, sizeof held, "%s", th_path_in("m.safetensors.tmp.Live12"));
    int go[2];
    cr_assert_eq(pipe(go), 0);
    pid_t pid = fork();
    cr_assert(pid >= 0);
    if (pid == 0) {
        int fd = open(held, O_CREAT | O_RDWR, 0600);
        if (fd < 0 || flock(fd, LOCK_EX) != 0 || write(go[1], "l", 1) != 1) _exit(3);
        pause(); /* until killed */
        _exit(0);
    }
    char ch;
    cr_assert_eq(read(go[0], &ch, 1), 1, "the child could not lock its file");
    close(go[0]);
    close(go[1]);

    tg_tensor *a = tg_ones(TG_F32, TG_SHAPE(4));
    const char *na[] = {"a"};
    cr_assert_eq(tg_st_save(th_path_in("m.safetensors"), 1, na, &a, 0, NULL), 0, "%s", tg_last_error());
    for (size_t i = 0; i < sizeof stale / sizeof *stale; i++) cr_expect(!exists(stale[i]), "%s was left", stale[i]);
    for (size_t i = 0; i < sizeof kept / sizeof *kept; i++) cr_expect(exists(kept[i]), "%s was removed", kept[i]);
    struct stat st;
    cr_expect(stat(dir, &st) == 0 && S_ISDIR(st.st_mode), "the directory was removed");
    cr_expect(lstat(link, &st) == 0 && S_ISLNK(st.st_mode), "the link was removed");
    cr_expect(exists("m.safetensors.tmp.Live12"), "a live save's temporary (locked) was removed");
    /* once its process is dead the lock is gone: the next save takes it away */
    kill(pid, SIGKILL);
    int status;
    cr_assert_eq(waitpid(pid, &status, 0), pid);
    cr_assert_eq(tg_st_save(th_path_in("m.safetensors"), 1, na, &a, 0, NULL), 0, "%s", tg_last_error());
    cr_expect(!exists("m.safetensors.tmp.Live12"), "the dead save's temporary was left");
    /* saves into another file of the directory touch none of these */
    cr_assert_eq(tg_st_save(th_path_in("o.safetensors"), 1, na, &a, 0, NULL), 0, "%s", tg_last_error());
    for (size_t i = 0; i < sizeof kept / sizeof *kept; i++) cr_expect(exists(kept[i]), "%s was removed", kept[i]);
    tg_st_file *f = tg_st_load(th_path_in("m.safetensors"));
    cr_assert_not_null(f, "%s", tg_last_error());
    tg_st_free(f);
    tg_release(a);
}

TH_TEST(safetensors, save_writes_through_links_and_into_devices_never_replacing_them, th_quiet_check) {
    tg_tensor *a = tg_ones(TG_F32, TG_SHAPE(3));
    const char *na[] = {"a"};
    /* a symbolic link: the target gets the data, the link stays a link */
    char target[256], link[256];
    snprintf(target, sizeof target, "%s", th_path_in("target.safetensors"));
    snprintf(link, sizeof link, "%s", th_path_in("link.safetensors"));
    FILE *f0 = fopen(target, "w");
    cr_assert_not_null(f0);
    fclose(f0);
    cr_assert_eq(symlink(target, link), 0);
    cr_assert_eq(tg_st_save(link, 1, na, &a, 0, NULL), 0, "%s", tg_last_error());
    struct stat st;
    cr_assert_eq(lstat(link, &st), 0);
    cr_expect(S_ISLNK(st.st_mode), "the link was replaced by a file");
    tg_st_file *f = tg_st_load(target);
    cr_assert_not_null(f, "%s", tg_last_error());
    cr_expect_eq(tg_get(tg_st_get(f, "a"), 2), 1.0);
    tg_st_free(f);
    cr_expect_eq(stray_files(NULL), 2, "a temporary was left behind");
    /* a dangling link and a directory are errors, leaving nothing behind */
    char dangling[256];
    snprintf(dangling, sizeof dangling, "%s", th_path_in("dangling.safetensors"));
    cr_assert_eq(symlink("/nonexistent-dir-tg/x", dangling), 0);
    cr_expect_eq(tg_st_save(dangling, 1, na, &a, 0, NULL), -1);
    cr_expect(strstr(tg_last_error(), "symbolic link to a missing file") != NULL, "%s", tg_last_error());
    tg_clear_error();
    cr_expect_eq(tg_st_save(th_dir(), 1, na, &a, 0, NULL), -1);
    cr_expect(strstr(tg_last_error(), "is a directory") != NULL, "%s", tg_last_error());
    tg_clear_error();
    cr_expect_eq(stray_files(NULL), 3);
    /* a character device is written into, not renamed over (as root, rename would replace /dev/null) */
    if (lstat("/dev/null", &st) == 0 && S_ISCHR(st.st_mode)) {
        cr_expect_eq(tg_st_save("/dev/null", 1, na, &a, 0, NULL), 0, "%s", tg_last_error());
        cr_assert_eq(lstat("/dev/null", &st), 0);
        cr_expect(S_ISCHR(st.st_mode), "/dev/null is no longer a device");
    }
    if (lstat("/dev/full", &st) == 0 && S_ISCHR(st.st_mode)) {
        cr_expect_eq(tg_st_save("/dev/full", 1, na, &a, 0, NULL), -1);
        cr_expect(strstr(tg_last_error(), "write failed") != NULL, "%s", tg_last_error());
        tg_clear_error();
        cr_assert_eq(lstat("/dev/full", &st), 0);
        cr_expect(S_ISCHR(st.st_mode), "/dev/full is no longer a device");
    }
    tg_release(a);
}

/* ---- reading hand-written headers --------------------------------------------------------------- */

TH_TEST(safetensors, parse_accepts_valid_json_variants, th_quiet_check) {
    /* whitespace everywhere, keys in any order, metadata in the middle, escapes (\u00e9 = é, surrogate
     * pair = U+1F600), tensor order = header order (not offset order), zero-size tensors sharing an
     * offset, trailing padding of all JSON whitespace kinds. */
    const char *h = " {\"b\" : {\"shape\":[ 2 ],\r\n\"data_offsets\" :[8,16] ,\"dtype\":\"F32\"} ,\t"
                    "\"__metadata__\":{\"k\\u00e9\":\"\\ud83d\\ude00\\/\",\"x\":\"\\u20AC\\u00C9\\b\\f\"},"
                    "\"a\\u00e9\":{\"data_offsets\":[0,8],\"dtype\":\"F64\",\"shape\":[]},"
                    "\"z\":{\"dtype\":\"F32\",\"shape\":[0,7],\"data_offsets\":[8,8]},"
                    "\"y\":{\"dtype\":\"F64\",\"shape\":[3,0],\"data_offsets\":[8,8]}}   \n\t ";
    h++; /* the leading space above only shows that the header must start with '{': skip it */
    size_t size;
    unsigned char *b = build(h, strlen(h), 16, &size);
    /* data: a = 2.0 (F64 LE), b = {1.5f, -2.0f}; copied to an odd address to test unaligned reads */
    static const unsigned char data[16] = {0, 0, 0, 0, 0, 0, 0, 0x40, 0, 0, 0xc0, 0x3f, 0, 0, 0, 0xc0};
    memcpy(b + size - 16, data, 16);
    unsigned char *odd = malloc(size + 1);
    memcpy(odd + 1, b, size);
    tg_st_file *f = tg_st_parse(odd + 1, size);
    cr_assert_not_null(f, "%s", tg_last_error());
    cr_assert_eq(tg_st_count(f), 4);
    cr_assert_str_eq(tg_st_name_at(f, 0), "b");
    cr_assert_str_eq(tg_st_name_at(f, 1), "a\xc3\xa9");
    cr_assert_str_eq(tg_st_name_at(f, 2), "z");
    cr_assert_str_eq(tg_st_name_at(f, 3), "y");
    cr_assert_str_eq(tg_st_meta(f, "k\xc3\xa9"), "\xf0\x9f\x98\x80/");
    cr_assert_str_eq(tg_st_meta(f, "x"), "\xe2\x82\xac\xc3\x89\b\f");
    tg_tensor *tb = tg_st_get(f, "b"), *ta = tg_st_get(f, "a\xc3\xa9");
    cr_assert_eq(tg_dtype_of(tb), TG_F32);
    cr_assert_eq(tg_get(tb, 0), 1.5);
    cr_assert_eq(tg_get(tb, 1), -2.0);
    cr_assert_eq(tg_ndim(ta), 0);
    cr_assert_eq(tg_item(ta), 2.0);
    cr_assert_str_eq(tg_name(tb), "b", "loaded tensors carry their name");
    tg_st_free(f);
    free(odd);
    free(b);
    /* an empty file: header "{}" and no data */
    b = build("{}      ", 8, 0, &size);
    f = tg_st_parse(b, size);
    cr_assert_not_null(f, "%s", tg_last_error());
    cr_assert_eq(tg_st_count(f), 0);
    cr_assert_eq(tg_st_meta_count(f), 0);
    tg_st_free(f);
    free(b);
    tg_st_free(NULL);
}

/* ---- malformed files ---------------------------------------------------------------------------- */

#define T1 "{\"x\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}"  /* one valid entry, no '}' */
#define SPAN_MISMATCH "{\"x\":{\"dtype\":\"F32\",\"shape\":[2,3],\"data_offsets\":[0,20]}}"
#define L10 "aaaaaaaaaa"
#define L100 L10 L10 L10 L10 L10 L10 L10 L10 L10 L10
#define E(name, rest) "\"" name "\":{\"dtype\":\"F32\"," rest "}"            /* an F32 entry */

typedef struct bad_case {
    const char *what;
    const char *header;  /* JSON header (its strlen is N), or NULL: `raw` is the whole file */
    size_t data_len;     /* data bytes after the header */
    const char *raw;
    size_t raw_len;
    const char *expect;  /* substring of the message */
} bad_case;

static const bad_case k_bad[] = {
    {"empty file", NULL, 0, "", 0, "0 bytes is shorter than the 8-byte header length"},
    {"truncated header length", NULL, 0, "\x10\0\0\0\0\0", 6, "shorter than the 8-byte header length"},
    {"N larger than the file", NULL, 0, "\x64\0\0\0\0\0\0\0{}", 10, "header length 100 exceeds the file: only 2 bytes"},
    {"N absurd (2^63)", NULL, 0, "\0\0\0\0\0\0\0\x80{}", 10, "exceeds the file"},
    {"N = 0", NULL, 0, "\0\0\0\0\0\0\0\0", 8, "header is empty"},
    {"header not an object", "[]", 0, NULL, 0, "header must start with '{', found an array"},
    {"leading whitespace", " {}", 0, NULL, 0, "header must start with '{', found ' '"},
    {"truncated JSON", "{", 0, NULL, 0, "expected a tensor name (a string), found the end of the header"},
    {"truncated after key", "{\"x\":", 0, NULL, 0, "tensor 'x': expected an object with dtype, shape, data_offsets, found the end"},
    {"unterminated string", "{\"x", 0, NULL, 0, "header byte 1: unterminated string"},
    {"unterminated after escape", "{\"x\\", 0, NULL, 0, "unterminated string"},
    {"trailing comma", T1 ",}", 8, NULL, 0, "expected a tensor name (a string), found '}'"},
    {"missing colon", "{\"x\" {}}", 0, NULL, 0, "header byte 5: expected ':' after a tensor name, found an object"},
    {"single-quoted name", "{'x':1}", 0, NULL, 0, "expected a tensor name (a string), found '''"},
    {"number as name", "{1:{}}", 0, NULL, 0, "expected a tensor name (a string), found '1'"},
    {"missing comma between entries", T1 " \"y\":{}}", 8, NULL, 0, "expected ',' or '}' after the entry of 'x', found a string"},
    {"trailing garbage", T1 "} x", 8, NULL, 0, "trailing garbage after the JSON object ('x')"},
    {"two objects", "{}{}", 0, NULL, 0, "header byte 2: trailing garbage"},
    {"NUL padding", NULL, 0, "\x08\0\0\0\0\0\0\0{}\0\0\0\0\0\0", 16, "trailing garbage after the JSON object (byte 0x00)"},
    {"raw control character in a name", "{\"a\nb\":{}}", 0, NULL, 0, "control character 0x0a inside a string"},
    {"invalid escape", "{\"a\\qb\":{}}", 0, NULL, 0, "invalid escape '\\q'"},
    {"lone high surrogate", "{\"a\\ud83d\":{}}", 0, NULL, 0, "unpaired surrogate \\ud83d"},
    {"high surrogate + non-low", "{\"a\\ud83d\\u0041\":{}}", 0, NULL, 0, "unpaired surrogate \\ud83d"},
    {"lone low surrogate", "{\"a\\ude00\":{}}", 0, NULL, 0, "unpaired surrogate \\ude00"},
    {"short \\u escape", "{\"a\\u12\":{}}", 0, NULL, 0, "\\u must be followed by 4 hex digits"},
    {"\\u0000 in a name", "{\"a\\u0000\":{}}", 0, NULL, 0, "\\u0000 (NUL) is not allowed"},
    {"invalid UTF-8 byte", "{\"a\xff\":{}}", 0, NULL, 0, "header byte 3: invalid UTF-8"},
    {"overlong UTF-8", "{\"\xc0\xaf\":{}}", 0, NULL, 0, "invalid UTF-8"},
    {"UTF-8 surrogate", "{\"\xed\xa0\x80\":{}}", 0, NULL, 0, "invalid UTF-8"},
    {"empty tensor name", "{\"\":{}}", 0, NULL, 0, "empty tensor name"},
    {"entry not an object", "{\"x\":[1]}", 0, NULL, 0, "tensor 'x': expected an object with dtype, shape, data_offsets, found an array"},
    {"unknown dtype", "{\"x\":{\"dtype\":\"F33\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4, NULL, 0, "tensor 'x': unknown dtype 'F33'"},
    {"unsupported dtype I64", "{\"x\":{\"dtype\":\"I64\",\"shape\":[1],\"data_offsets\":[0,8]}}", 8, NULL, 0, "tensor 'x': dtype I64 is not supported"},
    {"unsupported dtype BF16", "{\"w\":{\"dtype\":\"BF16\",\"shape\":[2],\"data_offsets\":[0,4]}}", 4, NULL, 0, "tensor 'w': dtype BF16 is not supported"},
    {"dtype not a string", "{\"x\":{\"dtype\":32,\"shape\":[1],\"data_offsets\":[0,4]}}", 4, NULL, 0, "tensor 'x': dtype must be a string, found '32'"},
    {"shape x itemsize != span", SPAN_MISMATCH, 20, NULL, 0,
     "tensor 'x': shape [2,3] x 4 bytes = 24 but data_offsets span 20"},
    {"F64 span mismatch", "{\"d\":{\"dtype\":\"F64\",\"shape\":[2],\"data_offsets\":[0,8]}}", 8, NULL, 0, "shape [2] x 8 bytes = 16 but data_offsets span 8"},
    {"overlapping offsets", "{" E("a", "\"shape\":[4],\"data_offsets\":[0,16]") "," E("b", "\"shape\":[4],\"data_offsets\":[8,24]") "}", 24, NULL, 0,
     "tensors 'a' [0, 16] and 'b' [8, 24] overlap"},
    {"same offsets twice", "{" E("a", "\"shape\":[2],\"data_offsets\":[0,8]") "," E("b", "\"shape\":[2],\"data_offsets\":[0,8]") "}", 8, NULL, 0,
     "tensors 'a' [0, 8] and 'b' [0, 8] overlap"},
    {"hole between tensors", "{" E("a", "\"shape\":[2],\"data_offsets\":[0,8]") "," E("b", "\"shape\":[2],\"data_offsets\":[16,24]") "}", 24, NULL, 0,
     "hole in the data area: bytes [8, 16) belong to no tensor"},
    {"hole at the start", "{" E("a", "\"shape\":[2],\"data_offsets\":[4,12]") "}", 12, NULL, 0, "bytes [0, 4) belong to no tensor"},
    {"unused bytes at the end", "{" E("a", "\"shape\":[2],\"data_offsets\":[0,8]") "}", 12, NULL, 0, "data area has 12 bytes but the tensors cover only 8"},
    {"offsets past the end", "{" E("a", "\"shape\":[2],\"data_offsets\":[0,8]") "}", 4, NULL, 0,
     "tensor 'a': data_offsets [0, 8] extend past the end of the data area (4 bytes)"},
    {"begin > end", "{" E("a", "\"shape\":[0],\"data_offsets\":[8,0]") "}", 8, NULL, 0, "data_offsets [8, 0] have begin > end"},
    {"negative dimension", "{" E("a", "\"shape\":[-1],\"data_offsets\":[0,0]") "}", 0, NULL, 0, "tensor 'a': shape must not be negative, found '-1'"},
    {"negative offset", "{" E("a", "\"shape\":[1],\"data_offsets\":[-4,0]") "}", 0, NULL, 0, "tensor 'a': data_offsets must not be negative"},
    {"float dimension", "{" E("a", "\"shape\":[2.0],\"data_offsets\":[0,8]") "}", 8, NULL, 0, "tensor 'a': shape must hold integers, found '2.0'"},
    {"exponent offset", "{" E("a", "\"shape\":[2],\"data_offsets\":[0,8e0]") "}", 8, NULL, 0, "data_offsets must hold integers, found '8e0'"},
    {"leading zero", "{" E("a", "\"shape\":[02],\"data_offsets\":[0,8]") "}", 8, NULL, 0, "shape must hold integers, found '02'"},
    {"boolean dimension", "{" E("a", "\"shape\":[true],\"data_offsets\":[0,4]") "}", 4, NULL, 0, "shape must hold integers, found 'true'"},
    {"string dimension", "{" E("a", "\"shape\":[\"2\"],\"data_offsets\":[0,8]") "}", 8, NULL, 0, "shape must hold integers, found a string"},
    {"nested array in shape", "{" E("a", "\"shape\":[[2]],\"data_offsets\":[0,8]") "}", 8, NULL, 0, "shape must hold integers, found an array"},
    {"null offsets", "{" E("a", "\"shape\":[2],\"data_offsets\":null") "}", 8, NULL, 0, "data_offsets must be an array of integers, found 'null'"},
    {"integer overflow", "{" E("a", "\"shape\":[99999999999999999999],\"data_offsets\":[0,0]") "}", 0, NULL, 0, "'99999999999999999999' is too large"},
    {"shape product overflow", "{" E("a", "\"shape\":[4294967296,4294967296],\"data_offsets\":[0,0]") "}", 0, NULL, 0,
     "shape [4294967296,4294967296] is too large"},
    {"too many dimensions", "{" E("a", "\"shape\":[1,1,1,1,1,1,1],\"data_offsets\":[0,4]") "}", 4, NULL, 0, "tensor 'a': shape has more than 6 dimensions"},
    {"three offsets", "{" E("a", "\"shape\":[1],\"data_offsets\":[0,4,4]") "}", 4, NULL, 0, "data_offsets must be [begin, end]"},
    {"one offset", "{" E("a", "\"shape\":[1],\"data_offsets\":[4]") "}", 4, NULL, 0, "data_offsets must be [begin, end], found 1 entries"},
    {"shape without ']'", "{" E("a", "\"shape\":[1 \"data_offsets\":[0,4]") "}", 4, NULL, 0, "tensor 'a': shape: expected ',' or ']', found a string"},
    {"missing data_offsets", "{\"a\":{\"dtype\":\"F32\",\"shape\":[1]}}", 0, NULL, 0, "tensor 'a': missing \"data_offsets\""},
    {"missing dtype", "{\"a\":{}}", 0, NULL, 0, "tensor 'a': missing \"dtype\""},
    {"extra key in entry", "{" E("a", "\"shape\":[1],\"data_offsets\":[0,4],\"extra\":{}") "}", 4, NULL, 0,
     "tensor 'a': unexpected key 'extra' (allowed: dtype, shape, data_offsets)"},
    {"duplicate key in entry", "{" E("a", "\"shape\":[1],\"shape\":[1],\"data_offsets\":[0,4]") "}", 4, NULL, 0, "tensor 'a': duplicate key 'shape'"},
    {"duplicate tensor name", "{" E("x", "\"shape\":[1],\"data_offsets\":[0,4]") "," E("x", "\"shape\":[1],\"data_offsets\":[4,8]") "}", 8, NULL, 0,
     "duplicate tensor name 'x'"},
    {"duplicate name via escape", "{" E("x", "\"shape\":[1],\"data_offsets\":[0,4]") "," E("\\u0078", "\"shape\":[1],\"data_offsets\":[4,8]") "}", 8,
     NULL, 0, "duplicate tensor name 'x'"},
    {"metadata value not a string", "{\"__metadata__\":{\"a\":1}}", 0, NULL, 0, "__metadata__: value of 'a' must be a string, found '1'"},
    {"metadata value null", "{\"__metadata__\":{\"a\":null}}", 0, NULL, 0, "value of 'a' must be a string, found 'null'"},
    {"nested metadata", "{\"__metadata__\":{\"a\":{\"b\":\"c\"}}}", 0, NULL, 0, "value of 'a' must be a string, found an object"},
    {"metadata not an object", "{\"__metadata__\":[\"a\"]}", 0, NULL, 0, "'__metadata__' must be an object of strings, found an array"},
    {"duplicate metadata key", "{\"__metadata__\":{\"k\":\"1\",\"k\":\"2\"}}", 0, NULL, 0, "__metadata__: duplicate key 'k'"},
    {"duplicate __metadata__", "{\"__metadata__\":{},\"__metadata__\":{}}", 0, NULL, 0, "duplicate key '__metadata__'"},
    {"missing comma after metadata", "{\"__metadata__\":{} \"x\":{}}", 0, NULL, 0, "after the entry of '__metadata__', found a string"},
    {"metadata missing comma", "{\"__metadata__\":{\"a\":\"b\" \"c\":\"d\"}}", 0, NULL, 0, "header byte 25: __metadata__: expected ',' or '}', found a string"},
    {"entry missing comma", "{\"a\":{\"dtype\":\"F32\" \"shape\":[1]}}", 0, NULL, 0, "tensor 'a': expected ',' or '}', found a string"},
    {"long name is shortened in messages", "{\"" L100 L100 "\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]}}", 1, NULL, 0,
     "tensor '" L10 L10 L10 L10 L10 L10 "aaaaaaaa...': dtype U8 is not supported"},
    {"name with control char is printed escaped", "{\"a\\u0001\":{\"dtype\":\"F16\",\"shape\":[1],\"data_offsets\":[0,2]}}", 2, NULL, 0,
     "tensor 'a\\x01': dtype F16 is not supported"},
};

TH_TEST(safetensors, parse_rejects_malformed_files, th_quiet_check) {
    int n = (int)(sizeof k_bad / sizeof *k_bad);
    cr_assert_geq(n, 25);
    for (int i = 0; i < n; i++) {
        const bad_case *c = &k_bad[i];
        size_t size;
        unsigned char *b;
        if (c->header) {
            b = build(c->header, strlen(c->header), c->data_len, &size);
        } else {
            size = c->raw_len;
            b = malloc(size + 1);
            memcpy(b, c->raw, size);
        }
        tg_clear_error();
        tg_st_file *f = tg_st_parse(b, size);
        const char *msg = tg_last_error();
        cr_expect_null(f, "case '%s' was accepted", c->what);
        tg_st_free(f);
        cr_expect(strncmp(msg, "tg_st_parse: ", 13) == 0, "case '%s': message '%s'", c->what, msg);
        cr_expect(strstr(msg, c->expect) != NULL, "case '%s':\n  message  %s\n  expected ...%s...", c->what, msg, c->expect);
        cr_expect(strchr(msg, '\n') == NULL, "case '%s': message is not one line", c->what);
        free(b);
    }
    tg_clear_error();
    cr_assert_null(tg_st_parse(NULL, 0));
    cr_assert(strstr(tg_last_error(), "shorter than the 8-byte") != NULL, "%s", tg_last_error());
    tg_clear_error();
    cr_assert_null(tg_st_parse(NULL, 16));
    cr_assert(strstr(tg_last_error(), "bytes is NULL") != NULL, "%s", tg_last_error());
    tg_clear_error();
}

/* The limit applies before anything is read: the buffer is not even touched beyond the length. */
TH_TEST(safetensors, parse_rejects_huge_header_length, th_quiet_check) {
    size_t size = 100000000 + 64;
    unsigned char *b = malloc(size);
    cr_assert_not_null(b);
    uint64_t n = 100000001;
    for (int i = 0; i < 8; i++) b[i] = (unsigned char)(n >> (8 * i));
    cr_assert_null(tg_st_parse(b, size));
    cr_assert(strstr(tg_last_error(), "header length 100000001 is larger than the limit") != NULL, "%s", tg_last_error());
    tg_clear_error();
    free(b);
}

/* Every strict prefix of a valid file is rejected (and none leaks or crashes). */
TH_TEST(safetensors, parse_rejects_every_truncation, th_quiet_check) {
    tg_tensor *a = tg_ones(TG_F32, TG_SHAPE(2, 2)), *s = tg_scalar(TG_F64, 3);
    const char *names[] = {"a", "s"}, *meta[] = {"k", "v"};
    tg_tensor *ts[] = {a, s};
    const char *path = th_path_in("t.safetensors");
    cr_assert_eq(tg_st_save(path, 2, names, ts, 1, meta), 0);
    size_t size;
    unsigned char *raw = read_file(path, &size);
    for (size_t cut = 0; cut < size; cut++) {
        tg_clear_error();
        tg_st_file *f = tg_st_parse(raw, cut);
        cr_assert_null(f, "prefix of %zu bytes accepted", cut);
        cr_assert(tg_error_pending());
    }
    tg_clear_error();
    tg_st_file *f = tg_st_parse(raw, size);
    cr_assert_not_null(f, "%s", tg_last_error());
    tg_st_free(f);
    /* and the same truncation on disk goes through tg_st_load's file checks */
    FILE *out = fopen(path, "wb");
    fwrite(raw, 1, size - 3, out);
    fclose(out);
    cr_assert_null(tg_st_load(path));
    cr_assert(strstr(tg_last_error(), path) && strstr(tg_last_error(), "tg_st_load: "), "%s", tg_last_error());
    tg_clear_error();
    free(raw);
    tg_release(a); tg_release(s);
}

TH_TEST(safetensors, load_reports_file_errors, th_quiet_check) {
    const char *missing = th_path_in("missing.safetensors");
    cr_assert_null(tg_st_load(missing));
    cr_assert(strstr(tg_last_error(), "missing.safetensors: cannot open: No such file") != NULL, "%s", tg_last_error());
    tg_clear_error();
    cr_assert_null(tg_st_load(th_dir()));
    cr_assert(strstr(tg_last_error(), "not a regular file") != NULL, "%s", tg_last_error());
    tg_clear_error();
    const char *empty = th_path_in("empty.safetensors");
    fclose(fopen(empty, "wb"));
    cr_assert_null(tg_st_load(empty));
    cr_assert(strstr(tg_last_error(), "empty.safetensors: file is 0 bytes, shorter than the 8-byte header length") != NULL,
              "%s", tg_last_error());
    tg_clear_error();
    /* a bad header names the file and the tensor */
    const char *bad = th_path_in("case.safetensors");
    size_t size;
    unsigned char *b = build(SPAN_MISMATCH, strlen(SPAN_MISMATCH), 20, &size);
    FILE *out = fopen(bad, "wb");
    fwrite(b, 1, size, out);
    fclose(out);
    free(b);
    cr_assert_null(tg_st_load(bad));
    char expect[400];
    snprintf(expect, sizeof expect, "tg_st_load: %s: tensor 'x': shape [2,3] x 4 bytes = 24 but data_offsets span 20", bad);
    cr_assert_str_eq(tg_last_error(), expect);
    tg_clear_error();
    cr_assert_null(tg_st_load(NULL));
    tg_clear_error();
}

/* ---- save argument errors ------------------------------------------------------------------------ */

TH_TEST(safetensors, save_rejects_bad_arguments, th_quiet_check) {
    const char *path = th_path_in("out.safetensors");
    tg_tensor *a = tg_ones(TG_F32, TG_SHAPE(2)), *b = tg_zeros(TG_F64, TG_SHAPE(1));
    tg_tensor *dead = tg_ones(TG_F32, TG_SHAPE(1));
    tg_release(dead); /* headers are pooled, so a released one is still readable (magic == dead) */
    tg_tensor *ab[] = {a, b}, *anull[] = {a, NULL}, *adead[] = {a, dead};
    const char *n_ok[] = {"a", "b"}, *n_dup[] = {"a", "a"}, *n_empty[] = {"a", ""}, *n_null[] = {"a", NULL};
    const char *n_meta[] = {"a", "__metadata__"}, *n_utf8[] = {"a", "b\xff"};
    const char *m_dup[] = {"k", "1", "k", "2"}, *m_null[] = {"k", NULL}, *m_utf8[] = {"k", "\xc3"};
    struct {
        const char *what, *path;
        int n;
        const char *const *names;
        tg_tensor *const *tensors;
        int nmeta;
        const char *const *meta;
        const char *expect;
    } cases[] = {
        {"NULL path", NULL, 2, n_ok, ab, 0, NULL, "tg_st_save: path is NULL"},
        {"empty path", "", 2, n_ok, ab, 0, NULL, "path is empty"},
        {"negative n", path, -1, n_ok, ab, 0, NULL, "negative count"},
        {"NULL names", path, 2, NULL, ab, 0, NULL, "names is NULL"},
        {"NULL tensors", path, 2, n_ok, NULL, 0, NULL, "tensors is NULL"},
        {"NULL meta", path, 2, n_ok, ab, 1, NULL, "meta is NULL"},
        {"duplicate names", path, 2, n_dup, ab, 0, NULL, "duplicate tensor name 'a'"},
        {"empty name", path, 2, n_empty, ab, 0, NULL, "name 1 is empty"},
        {"NULL name", path, 2, n_null, ab, 0, NULL, "name 1 is NULL"},
        {"reserved name", path, 2, n_meta, ab, 0, NULL, "'__metadata__' is reserved"},
        {"non-UTF-8 name", path, 2, n_utf8, ab, 0, NULL, "name 1 ('b\\xff') is not valid UTF-8"},
        {"NULL tensor", path, 2, n_ok, anull, 0, NULL, "tensor 'b' is NULL"},
        {"released tensor", path, 2, n_ok, adead, 0, NULL, "tensor 'b' was released"},
        {"duplicate metadata key", path, 2, n_ok, ab, 2, m_dup, "duplicate metadata key 'k'"},
        {"NULL metadata value", path, 2, n_ok, ab, 1, m_null, "metadata value 0 is NULL"},
        {"non-UTF-8 metadata", path, 2, n_ok, ab, 1, m_utf8, "metadata value 0 ('\\xc3') is not valid UTF-8"},
        {"missing directory", "/nonexistent-dir-tg/x.safetensors", 2, n_ok, ab, 0, NULL, "cannot create a temporary file"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        tg_clear_error();
        int rc = tg_st_save(cases[i].path, cases[i].n, cases[i].names, cases[i].tensors, cases[i].nmeta, cases[i].meta);
        cr_expect_eq(rc, -1, "case '%s' succeeded", cases[i].what);
        cr_expect(strstr(tg_last_error(), cases[i].expect) != NULL, "case '%s': message '%s', expected ...%s...",
                  cases[i].what, tg_last_error(), cases[i].expect);
        cr_expect_eq(stray_files(NULL), 0, "case '%s' left a file", cases[i].what);
    }
    tg_clear_error();
    /* a failed save leaves an existing file untouched */
    cr_assert_eq(tg_st_save(path, 1, n_ok, ab, 0, NULL), 0);
    size_t before_size, after_size;
    unsigned char *before = read_file(path, &before_size);
    cr_assert_eq(tg_st_save(path, 2, n_dup, ab, 0, NULL), -1);
    tg_clear_error();
    unsigned char *after = read_file(path, &after_size);
    cr_assert(before_size == after_size && memcmp(before, after, before_size) == 0, "existing file was modified");
    cr_assert_eq(stray_files("out.safetensors"), 0);
    free(before);
    free(after);
    tg_release(a); tg_release(b);
}

/* ---- conformance fixture written by PyTorch tooling ----------------------------------------------- */

TH_TEST(safetensors, load_conformance_case, th_quiet_check) {
    tg_st_file *f = tg_st_load(CASE_0002);
    cr_assert_not_null(f, "%s (TG_TEST_DATA_DIR = %s)", tg_last_error(), TG_TEST_DATA_DIR);
    static const char *const order[] = {"x", "h0", "c0", "weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0",
                                        "weight_ih_l1", "weight_hh_l1", "bias_ih_l1", "bias_hh_l1", "dy", "dhn", "dcn"};
    cr_assert_eq(tg_st_count(f), 14);
    for (int i = 0; i < 14; i++) {
        cr_assert_str_eq(tg_st_name_at(f, i), order[i], "file order");
        cr_assert_eq(tg_dtype_of(tg_st_tensor_at(f, i)), TG_F32);
    }
    char b[64];
    tg_tensor *x = tg_st_get(f, "x"), *w = tg_st_get(f, "weight_ih_l0"), *dcn = tg_st_get(f, "dcn");
    cr_assert_str_eq(tg_shape_str(x, b, sizeof b), "[9,2,15]"); /* [T,B,I] */
    cr_assert_str_eq(tg_shape_str(w, b, sizeof b), "[128,15]"); /* [4H,I] */
    cr_assert_str_eq(tg_shape_str(tg_st_get(f, "h0"), b, sizeof b), "[2,2,32]");
    cr_assert_str_eq(tg_st_meta(f, "cell"), "lstm");
    cr_assert_str_eq(tg_st_meta(f, "layers"), "2");
    cr_assert_str_eq(tg_st_meta(f, "H"), "32");
    cr_assert_eq(tg_st_meta_count(f), 8);
    cr_assert_null(tg_st_meta(f, "absent"));
    /* values read independently with Python's struct module (float32 LE) */
    cr_assert_eq(tg_get(x, 0), (double)1.146164894104004f);
    cr_assert_eq(tg_get(x, 1), (double)0.6285727620124817f);
    cr_assert_eq(tg_get(x, 269), (double)0.3835192918777466f);
    cr_assert_eq(tg_get(w, 0), (double)-0.11870565265417099f);
    cr_assert_eq(tg_get(w, 1919), (double)-0.04561704024672508f);
    cr_assert_eq(tg_get(dcn, 127), (double)-0.48882630467414856f);
    /* tg_st_parse on the same bytes gives the same tensors */
    size_t size;
    unsigned char *raw = read_file(CASE_0002, &size);
    tg_st_file *g = tg_st_parse(raw, size);
    cr_assert_not_null(g, "%s", tg_last_error());
    for (int i = 0; i < 14; i++) assert_same_tensor(tg_st_tensor_at(f, i), tg_st_tensor_at(g, i), order[i]);
    tg_st_free(g);
    free(raw);
    /* saving and reloading reproduces every tensor and the metadata */
    const char *names[14], *meta[16];
    tg_tensor *ts[14];
    for (int i = 0; i < 14; i++) { names[i] = tg_st_name_at(f, i); ts[i] = tg_st_tensor_at(f, i); }
    for (int i = 0; i < 8; i++) { meta[2 * i] = tg_st_meta_key(f, i); meta[2 * i + 1] = tg_st_meta_value(f, i); }
    tg_st_free(round_trip(14, names, ts, 8, meta));
    tg_st_free(f);
}

/* The reference file's header is padded with spaces by its writer. */
TH_TEST(safetensors, load_conformance_ref_with_padding, th_quiet_check) {
    tg_st_file *f = tg_st_load(REF_0002);
    cr_assert_not_null(f, "%s", tg_last_error());
    char b[64];
    cr_assert_str_eq(tg_shape_str(tg_st_get(f, "grad.x"), b, sizeof b), "[9,2,15]");
    cr_assert_str_eq(tg_shape_str(tg_st_get(f, "cn"), b, sizeof b), "[2,2,32]");
    cr_assert_str_eq(tg_st_meta(f, "cell"), "lstm");
    tg_st_free(f);
}

/* Every fixture in the conformance directory loads (F32 and F64 cases, all four cells). */
TH_TEST(safetensors, load_all_conformance_files, th_quiet_check) {
    DIR *d = opendir(TG_TEST_DATA_DIR "/conformance");
    cr_assert_not_null(d, "no directory %s/conformance", TG_TEST_DATA_DIR);
    int loaded = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        size_t len = strlen(e->d_name);
        if (len < 12 || strcmp(e->d_name + len - 12, ".safetensors") != 0) continue;
        char path[512];
        snprintf(path, sizeof path, "%s/conformance/%s", TG_TEST_DATA_DIR, e->d_name);
        tg_st_file *f = tg_st_load(path);
        cr_expect_not_null(f, "%s", tg_last_error());
        tg_clear_error();
        loaded += f != NULL;
        tg_st_free(f);
    }
    closedir(d);
    cr_assert_gt(loaded, 0);
}
