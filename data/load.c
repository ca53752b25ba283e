/* data/load.c - tg_dataset_load: reads a file (decompressing gzip), recognises its format from one
 * table (content first, then extension), and turns typed arrays into a dataset by the shape rules
 * of data.h. Also the typed-array helpers the binary readers share.
 */
#include "data/internal.h"
#include "tensor/alloc.h"

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

/* ---- typed arrays ------------------------------------------------------------------------------ */

static const struct { const char *name; size_t size; bool integer; } k_elems[] = {
    [TGD_F32] = {"float32", 4, false}, [TGD_F64] = {"float64", 8, false}, [TGD_I64] = {"int64", 8, true},
    [TGD_I32] = {"int32", 4, true},    [TGD_I16] = {"int16", 2, true},    [TGD_I8] = {"int8", 1, true},
    [TGD_U8] = {"uint8", 1, true},
};
_Static_assert(sizeof k_elems / sizeof *k_elems == TGD_U8 + 1, "one row per element type");

size_t tgd_elem_size(tgd_elem e) { return k_elems[e].size; }
const char *tgd_elem_name(tgd_elem e) { return k_elems[e].name; }
bool tgd_elem_integer(tgd_elem e) { return k_elems[e].integer; }

static uint64_t load_bytes(const unsigned char *p, size_t n, bool big) {
    uint64_t v = 0;
    for (size_t k = 0; k < n; k++) v |= (uint64_t)p[big ? n - 1 - k : k] << (8 * k);
    return v;
}

int64_t tgd_array_get_int(const tgd_array *a, int64_t i) {
    size_t sz = k_elems[a->elem].size;
    uint64_t v = load_bytes(a->data + (size_t)i * sz, sz, a->big_endian);
    switch (a->elem) {
    case TGD_I64: return (int64_t)v;
    case TGD_I32: return (int32_t)(uint32_t)v;
    case TGD_I16: return (int16_t)(uint16_t)v;
    case TGD_I8: return (int8_t)(uint8_t)v;
    case TGD_U8: return (int64_t)v;
    default: return (int64_t)tgd_array_get(a, i);
    }
}

double tgd_array_get(const tgd_array *a, int64_t i) {
    size_t sz = k_elems[a->elem].size;
    uint64_t v = load_bytes(a->data + (size_t)i * sz, sz, a->big_endian);
    if (a->elem == TGD_F32) {
        uint32_t w = (uint32_t)v;
        float f;
        memcpy(&f, &w, 4);
        return f;
    }
    if (a->elem == TGD_F64) {
        double d;
        memcpy(&d, &v, 8);
        return d;
    }
    return (double)tgd_array_get_int(a, i);
}

/* dst[k] = scale * a[start + k] for k < count, the type switch outside the loop. */
static void array_copy(const tgd_array *a, int64_t start, int64_t count, double *dst, double scale) {
    if (a->elem == TGD_U8) {
        const unsigned char *p = a->data + start;
        for (int64_t k = 0; k < count; k++) dst[k] = scale * p[k];
        return;
    }
    for (int64_t k = 0; k < count; k++) dst[k] = scale * tgd_array_get(a, start + k);
}

static void shape_fmt(const tgd_array *a, char *buf, size_t size) {
    size_t n = (size_t)snprintf(buf, size, "(");
    for (int d = 0; d < a->ndim && n < size; d++)
        n += (size_t)snprintf(buf + n, size - n, "%s%" PRId64, d ? ", " : "", a->shape[d]);
    if (n < size) snprintf(buf + n, size - n, "%s)", a->ndim == 1 ? "," : "");
}

int tgd_array_numel(tgd_array *a, uint64_t limit, char *err, size_t errlen) {
    uint64_t numel = 1, size = k_elems[a->elem].size;
    bool over = false;
    for (int d = 0; d < a->ndim; d++) {
        uint64_t s = (uint64_t)a->shape[d];
        if (a->shape[d] < 0) over = true;
        else if (s && numel > UINT64_MAX / size / s) over = true;
        else numel *= s;
    }
    if (!over) {
        for (int d = 0; d < a->ndim && !over; d++) if (a->shape[d] == 0) numel = 0;
    }
    if (over || numel * size > limit) {
        char sb[160];
        shape_fmt(a, sb, sizeof sb);
        return tgd_fail(err, errlen, "%s: byte %" PRId64 ": declared shape %s of %s needs %s%" PRIu64 " bytes but only %" PRIu64
                        " follow", a->what, a->base_offset, sb, k_elems[a->elem].name, over ? "more than " : "",
                        over ? UINT64_MAX : numel * size, limit);
    }
    a->numel = (int64_t)numel;
    return 0;
}

/* ---- arrays -> dataset ------------------------------------------------------------------------- */

/* Checks that every label is a whole number (integer types always are). */
static int labels_integral(const tgd_array *y, char *err, size_t errlen) {
    if (tgd_elem_integer(y->elem) || y->ints) return 0;
    for (int64_t k = 0; k < y->numel; k++) {
        double v = tgd_array_get(y, k);
        if (!(v == floor(v)) || fabs(v) > 9e15)
            return tgd_fail(err, errlen, "%s: label %" PRId64 " is %g, not a class index (use VALUE labels for real targets)",
                            y->what, k, v);
    }
    return 0;
}

tg_dataset *tgd_from_arrays(const tgd_array *x, const tgd_array *lengths, const tgd_array *y,
                            const tg_data_options *opt, double scale, char *err, size_t errlen) {
    static const tg_data_options none = {0};
    if (!opt) opt = &none;
    char sb[160];
    shape_fmt(x, sb, sizeof sb);
    int64_t N, T, I;
    if (x->ndim == 3) {
        N = x->shape[0], T = x->shape[1], I = x->shape[2];
    } else if (x->ndim == 2) {
        bool nt = opt->layout2d == TG_2D_NT || (opt->layout2d == TG_2D_AUTO && y);
        N = nt ? x->shape[0] : 1, T = nt ? x->shape[1] : x->shape[0], I = nt ? 1 : x->shape[1];
    } else if (x->ndim == 1) {
        N = 1, T = x->shape[0], I = 1;
    } else {
        tgd_fail(err, errlen, "%s: shape %s: inputs must be [N,T,I], [N,T], [T,I] or [T]", x->what, sb);
        return NULL;
    }
    if (N < 1 || T < 1 || I < 1) { tgd_fail(err, errlen, "%s: shape %s has an empty dimension", x->what, sb); return NULL; }

    int64_t *len = tg_malloc((size_t)N * sizeof *len);
    if (!len) { tgd_fail(err, errlen, "out of memory"); return NULL; }
    int64_t steps = 0;
    tg_dataset *ds = NULL;
    for (int64_t n = 0; n < N; n++) len[n] = T;
    if (lengths) {
        char lb[160];
        shape_fmt(lengths, lb, sizeof lb);
        if (lengths->ndim != 1 || lengths->shape[0] != N || !(tgd_elem_integer(lengths->elem) || lengths->ints)) {
            tgd_fail(err, errlen, "%s: shape %s of %s must be [N] = (%" PRId64 ",) integers", lengths->what, lb,
                     tgd_elem_name(lengths->elem), N);
            goto fail;
        }
        for (int64_t n = 0; n < N; n++) {
            len[n] = tgd_array_get_int(lengths, n);
            if (len[n] < 1 || len[n] > T) {
                tgd_fail(err, errlen, "%s: length %" PRId64 " of sequence %" PRId64 " is outside 1..%" PRId64, lengths->what,
                         len[n], n, T);
                goto fail;
            }
        }
    }
    for (int64_t n = 0; n < N; n++) steps += len[n];

    tg_label_kind kind = TG_LABELS_NONE;
    int64_t O = 0;
    if (y) {
        char yb[160];
        shape_fmt(y, yb, sizeof yb);
        bool integer = tgd_elem_integer(y->elem) || y->ints;
        kind = opt->label_kind;
        if (kind == TG_LABELS_NONE)
            kind = !integer ? TG_LABELS_VALUE : y->ndim == 2 && !(y->shape[1] == 1 && T != 1) ? TG_LABELS_TAG : TG_LABELS_CLASS;
        bool ok = y->ndim >= 1 && y->shape[0] == N;
        if (kind == TG_LABELS_CLASS) ok = ok && (y->ndim == 1 || (y->ndim == 2 && y->shape[1] == 1));
        if (kind == TG_LABELS_TAG) ok = ok && y->ndim == 2 && y->shape[1] == T;
        if (kind == TG_LABELS_VALUE) ok = ok && y->ndim <= 2;
        if (!ok) {
            tgd_fail(err, errlen, "%s: labels of shape %s do not fit %s labels for inputs of %" PRId64 " sequences x %" PRId64
                     " steps (expected %s)", y->what, yb, tg_label_kind_name(kind), N, T,
                     kind == TG_LABELS_CLASS ? "[N]" : kind == TG_LABELS_TAG ? "[N,T]" : "[N] or [N,O]");
            goto fail;
        }
        if (kind != TG_LABELS_VALUE && labels_integral(y, err, errlen)) goto fail;
        O = kind == TG_LABELS_VALUE ? (y->ndim == 2 ? y->shape[1] : 1) : 0;
        if (kind == TG_LABELS_VALUE && O < 1) { tgd_fail(err, errlen, "%s: labels of shape %s have no values", y->what, yb); goto fail; }
    }
    ds = tgd_alloc(N, I, steps, kind, O, err, errlen);
    if (!ds) goto fail;
    for (int64_t n = 0, s = 0; n < N; n++) {
        array_copy(x, n * T * I, len[n] * I, ds->x + s * I, scale);
        if (kind == TG_LABELS_TAG)
            for (int64_t t = 0; t < len[n]; t++) ds->labels[s + t] = tgd_array_get_int(y, n * T + t);
        if (kind == TG_LABELS_CLASS) ds->labels[n] = tgd_array_get_int(y, n);
        if (kind == TG_LABELS_VALUE)
            for (int64_t o = 0; o < O; o++) ds->values[n * O + o] = tgd_array_get(y, n * O + o);
        s += len[n];
        ds->offset[n + 1] = s;
    }
    free(len);
    if (tgd_finish(ds, x->what, err, errlen)) { tg_dataset_free(ds); return NULL; }
    return ds;
fail:
    free(len);
    tg_dataset_free(ds);
    return NULL;
}

/* ---- files ------------------------------------------------------------------------------------- */

int tgd_read_file(const char *path, size_t max, unsigned char **buf, size_t *len, char *err, size_t errlen) {
    *buf = NULL;
    *len = 0;
    FILE *fp = fopen(path, "rb");
    if (!fp) return tgd_fail(err, errlen, "%s: cannot open: %s", path, strerror(errno));
    struct stat st;
    int rc = -1;
    if (fstat(fileno(fp), &st) != 0) { tgd_fail(err, errlen, "%s: cannot stat: %s", path, strerror(errno)); goto done; }
    if (!S_ISREG(st.st_mode)) { tgd_fail(err, errlen, "%s: not a regular file", path); goto done; }
    if (st.st_size == 0) { tgd_fail(err, errlen, "%s: empty file", path); goto done; }
    if ((uint64_t)st.st_size > max) {
        tgd_fail(err, errlen, "%s: %lld bytes is more than the limit of %zu", path, (long long)st.st_size, max);
        goto done;
    }
    size_t n = (size_t)st.st_size;
    unsigned char *b = tg_malloc(n + 1);
    if (!b) { tgd_fail(err, errlen, "%s: out of memory for %zu bytes", path, n); goto done; }
    if (fread(b, 1, n, fp) != n) {
        tgd_fail(err, errlen, "%s: %s while reading", path, ferror(fp) ? strerror(errno) : "unexpected end of file");
        free(b);
        goto done;
    }
    b[n] = 0;
    *buf = b;
    *len = n;
    rc = 0;
done:
    fclose(fp);
    return rc;
}

static bool ends_with(const char *s, const char *suffix) {
    size_t a = strlen(s), b = strlen(suffix);
    if (a < b) return false;
    for (size_t k = 0; k < b; k++)
        if ((s[a - b + k] | 0x20) != (suffix[k] | 0x20)) return false;
    return true;
}

/* One file image in memory (decompressed if it was gzip) with its name for messages. */
typedef struct loaded {
    unsigned char *buf;
    size_t len;
    char name[512];              /* the path; for gzip: "path (decompressed)" */
    bool gz;
    const char *path;
} loaded;

static int load_image(const char *path, size_t max, loaded *f, char *err, size_t errlen) {
    memset(f, 0, sizeof *f);
    f->path = path;
    snprintf(f->name, sizeof f->name, "%s", path);
    if (tgd_read_file(path, max, &f->buf, &f->len, err, errlen)) return -1;
    if (f->len >= 2 && f->buf[0] == 0x1f && f->buf[1] == 0x8b) {
        unsigned char *out;
        size_t out_len;
        int rc = tg_gunzip(f->buf, f->len, path, max, &out, &out_len, err, errlen);
        free(f->buf);
        f->buf = NULL;
        if (rc) return -1;
        f->buf = out;
        f->len = out_len;
        f->gz = true;
        snprintf(f->name, sizeof f->name, "%s (decompressed)", path);
        if (out_len == 0) { tgd_fail(err, errlen, "%s: decompresses to nothing", path); free(out); f->buf = NULL; return -1; }
    }
    return 0;
}

/* ---- the format table (STYLE habit 11: a data format is one row) -------------------------------- */

typedef struct data_format {
    const char *name;
    const char *ext;             /* with the dot; also matched before a trailing .gz */
    bool (*probe)(const unsigned char *b, size_t n); /* recognises the content; NULL: by extension only */
    bool text;                   /* the fallback for text files without a known extension */
    double u8_scale;             /* factor for uint8 inputs unless idx_no_scale (IDX images: 1/255); 0 = 1 */
    /* formats that hold one array (inputs, or a labels file) */
    int (*parse_array)(const unsigned char *buf, size_t len, const char *what, tgd_array *out, char *err, size_t errlen);
    /* formats with their own structure (columns, named tensors); labels: from a labels file or NULL */
    tg_dataset *(*parse_dataset)(const unsigned char *buf, size_t len, const char *what, const tgd_array *labels,
                                 const tg_data_options *opt, char *err, size_t errlen);
    /* its fuzz target tests/fuzz/fuzz_<fuzz>.c (seeds in tests/fuzz/corpus/<fuzz>/); test_data's
     * every_format_has_its_tests_and_a_fuzz_target checks that they and a malformed_<name> test exist */
    const char *fuzz;
} data_format;

static bool probe_npy(const unsigned char *b, size_t n) { return n >= 6 && memcmp(b, "\x93NUMPY", 6) == 0; }

static bool probe_idx(const unsigned char *b, size_t n) {
    return n >= 4 && b[0] == 0 && b[1] == 0 && (b[2] == 0x08 || b[2] == 0x09 || (b[2] >= 0x0b && b[2] <= 0x0e)) &&
           b[3] >= 1 && b[3] <= 4;
}

static bool probe_st(const unsigned char *b, size_t n) {
    if (n < 10) return false;
    uint64_t h = load_bytes(b, 8, false);
    return h >= 2 && h <= n - 8 && b[8] == '{';
}

static const data_format k_formats[] = {
    {"npy", ".npy", probe_npy, false, 0, tgd_npy_parse, NULL, "npy"},
    {"idx", "-ubyte", probe_idx, false, 1.0 / 255.0, tgd_idx_parse, NULL, "idx"},
    {"safetensors", ".safetensors", probe_st, false, 0, NULL, tgd_st_parse, "data_st"},
    {"csv", ".csv", NULL, true, 0, NULL, tgd_csv_parse, "csv"},
};
enum { N_FORMATS = sizeof k_formats / sizeof *k_formats };

int tgd_format_count(void) { return N_FORMATS; }
const char *tgd_format_name(int k) { return k >= 0 && k < N_FORMATS ? k_formats[k].name : NULL; }
const char *tgd_format_fuzz(int k) { return k >= 0 && k < N_FORMATS ? k_formats[k].fuzz : NULL; }

static const data_format *find_format(const loaded *f) {
    for (int k = 0; k < N_FORMATS; k++)
        if (k_formats[k].probe && k_formats[k].probe(f->buf, f->len)) return &k_formats[k];
    char stem[512];
    snprintf(stem, sizeof stem, "%s", f->path);
    if (ends_with(stem, ".gz")) stem[strlen(stem) - 3] = 0;
    for (int k = 0; k < N_FORMATS; k++)
        if (ends_with(stem, k_formats[k].ext)) return &k_formats[k];
    return NULL;
}

static bool is_text(const loaded *f) {
    for (size_t k = 0; k < f->len && k < 4096; k++)
        if (f->buf[k] == 0) return false;
    return true;
}

static const data_format *format_of(const loaded *f, char *err, size_t errlen) {
    const data_format *fmt = find_format(f);
    for (int k = 0; !fmt && k < N_FORMATS; k++)
        if (k_formats[k].text && is_text(f)) fmt = &k_formats[k];
    if (!fmt) {
        char names[128] = "";
        for (int k = 0; k < N_FORMATS; k++)
            snprintf(names + strlen(names), sizeof names - strlen(names), "%s%s", k ? ", " : "", k_formats[k].name);
        tgd_fail(err, errlen, "%s: byte 0: unknown format (known: %s)", f->name, names);
    }
    return fmt;
}

/* Labels from a second file: one array (npy, IDX, or a safetensors file's "y" / only tensor). */
static int load_labels(const char *path, const tg_data_options *opt, loaded *lf, tgd_array *y, char *err, size_t errlen) {
    size_t max = opt->max_bytes ? opt->max_bytes : TG_DATA_MAX_BYTES;
    if (load_image(path, max, lf, err, errlen)) return -1;
    const data_format *fmt = format_of(lf, err, errlen);
    if (!fmt) return -1;
    if (!fmt->parse_array)
        return tgd_fail(err, errlen, "%s: a labels file holds one array (npy, IDX); %s labels come from the inputs "
                        "file (CSV label_column, safetensors \"y\")", path, fmt->name);
    return fmt->parse_array(lf->buf, lf->len, lf->name, y, err, errlen);
}

tg_dataset *tg_dataset_load(const char *path, const char *labels_path, const tg_data_options *opt,
                            char *err, size_t errlen) {
    static const tg_data_options none = {0};
    if (!opt) opt = &none;
    if (!path) { tgd_fail(err, errlen, "tg_dataset_load: path is NULL"); return NULL; }
    if (opt->label_kind < TG_LABELS_NONE || opt->label_kind > TG_LABELS_VALUE) {
        tgd_fail(err, errlen, "tg_dataset_load: unknown label kind %d", (int)opt->label_kind);
        return NULL;
    }
    size_t max = opt->max_bytes ? opt->max_bytes : TG_DATA_MAX_BYTES;
    loaded f, lf = {0};
    tg_dataset *ds = NULL;
    if (load_image(path, max, &f, err, errlen)) return NULL;
    const data_format *fmt = format_of(&f, err, errlen);
    if (!fmt) goto done;
    tgd_array y, *yp = NULL;
    if (labels_path) {
        if (load_labels(labels_path, opt, &lf, &y, err, errlen)) goto done;
        yp = &y;
    }
    if (fmt->parse_array) {
        tgd_array x;
        if (fmt->parse_array(f.buf, f.len, f.name, &x, err, errlen)) goto done;
        double scale = x.elem == TGD_U8 && fmt->u8_scale && !opt->idx_no_scale ? fmt->u8_scale : 1.0;
        ds = tgd_from_arrays(&x, NULL, yp, opt, scale, err, errlen);
    } else {
        ds = fmt->parse_dataset(f.buf, f.len, f.name, yp, opt, err, errlen);
    }
done:
    free(f.buf);
    free(lf.buf);
    return ds;
}
