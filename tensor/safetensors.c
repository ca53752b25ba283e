/* tensor/safetensors.c - read and write the safetensors format (docs/design.md §9).
 *
 * Layout: u64 little-endian N | N bytes of JSON header | data area (little-endian, no alignment).
 *
 * Reader. The header is parsed by a schema-directed JSON parser: the format has exactly three levels
 * (top object -> tensor entry object -> integer array, or top object -> "__metadata__" -> strings), so
 * the parser is a handful of non-recursive functions that only accept what the format allows. Any other
 * value where a shape, offset, dtype or metadata value belongs is rejected with a message naming what
 * was found; nothing can nest deeper and there is no stack to exhaust. Strings are fully validated (UTF-8,
 * escapes, \uXXXX with surrogate pairs); \u0000 is rejected because names are C strings.
 * Once the whole header is parsed, the entries are checked as a set (unique names, known dtype, shape x
 * itemsize = offset span, offsets inside the data area, sorted offsets covering it exactly). Only then are
 * tensors allocated and filled, so a bad file costs no tensor allocations, and every error path goes
 * through tg_st_free, which releases whatever was built.
 *
 * Writer. Validates every argument first, builds the header in memory (keys in the caller's order,
 * "__metadata__" first as the Python writer does, padded with spaces to a multiple of 8 bytes), writes
 * to "<path>.tmp.XXXXXX" in the same directory, fsyncs, renames over <path> and fsyncs the directory
 * (so a power loss keeps the old or the new file under the name: tests/test_crashsafe.c). On any failure the
 * temporary file is unlinked and <path> is untouched. A save holds an exclusive flock on its temporary
 * until the rename; the next save into <path> removes the temporaries of saves into <path> that were
 * killed (the kernel drops a dead process's locks), and nothing else (remove_stale_temporaries). A symbolic link is written through (its target
 * is replaced, the link stays); a device or FIFO is written straight into, never replaced.
 *
 * All errors are data errors: reported with tg_error_quiet (never the abort handler), one line, naming
 * the file, the tensor and the problem. Names and paths are printed with control bytes escaped.
 */
#define _POSIX_C_SOURCE 200809L
#include "tensor/internal.h"
#include "tensor/alloc.h"

#include <tapegrad/safetensors.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

/* Same header limit as the reference (Rust) implementation. */
#define ST_MAX_HEADER 100000000ull
/* Room for one printed name (escaped, truncated with "..."). */
#define ST_NAMEBUF 72

/* ---- shared helpers ----------------------------------------------------------------------------- */

static bool host_is_little_endian(void) {
#if defined(__BYTE_ORDER__) && defined(__ORDER_LITTLE_ENDIAN__)
    return __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__;
#else
    const uint16_t one = 1;
    unsigned char b;
    memcpy(&b, &one, 1);
    return b == 1;
#endif
}

/* Reverses the bytes of each of `count` items of `itemsize` bytes (little <-> big endian). */
static void swap_items(unsigned char *p, size_t count, size_t itemsize) {
    for (size_t i = 0; i < count; i++, p += itemsize)
        for (size_t a = 0, b = itemsize - 1; a < b; a++, b--) {
            unsigned char tmp = p[a];
            p[a] = p[b];
            p[b] = tmp;
        }
}

/* Length of the well-formed UTF-8 sequence at p (at most `avail` bytes), 0 if malformed: no overlong
 * forms, no surrogates, nothing above U+10FFFF. */
static size_t utf8_seq(const unsigned char *p, size_t avail) {
    unsigned c = p[0];
    size_t len;
    unsigned lo = 0x80, hi = 0xbf; /* allowed range of the second byte */
    if (c < 0x80) return 1;
    else if (c >= 0xc2 && c <= 0xdf) len = 2;
    else if (c >= 0xe0 && c <= 0xef) { len = 3; if (c == 0xe0) lo = 0xa0; if (c == 0xed) hi = 0x9f; }
    else if (c >= 0xf0 && c <= 0xf4) { len = 4; if (c == 0xf0) lo = 0x90; if (c == 0xf4) hi = 0x8f; }
    else return 0;
    if (avail < len) return 0;
    if (p[1] < lo || p[1] > hi) return 0;
    for (size_t i = 2; i < len; i++)
        if (p[i] < 0x80 || p[i] > 0xbf) return 0;
    return len;
}

static bool utf8_valid(const char *s) {
    const unsigned char *p = (const unsigned char *)s;
    size_t avail = strlen(s);
    while (avail) {
        size_t len = utf8_seq(p, avail);
        if (!len) return false;
        p += len;
        avail -= len;
    }
    return true;
}

/* Copies s into buf for a one-line message: control bytes become \xNN, long strings end in "...". UTF-8
 * sequences are never cut in the middle. Returns buf. */
static const char *printable(char *buf, size_t size, const char *s) {
    static const char hex[] = "0123456789abcdef";
    size_t n = 0;
    if (!s) s = "(null)";
    for (const unsigned char *p = (const unsigned char *)s; *p;) {
        size_t len = utf8_seq(p, strnlen((const char *)p, 4)); /* 0: not UTF-8, escape the byte */
        bool esc = *p < 0x20 || *p == 0x7f || len == 0;
        if (esc) len = 1;
        size_t need = esc ? 4 : len;
        if (n + need + 4 > size) { /* keep room for "..." and the NUL */
            memcpy(buf + n, "...", 3);
            n += 3;
            break;
        }
        if (esc) {
            buf[n++] = '\\'; buf[n++] = 'x'; buf[n++] = hex[*p >> 4]; buf[n++] = hex[*p & 15];
        } else {
            memcpy(buf + n, p, len);
            n += len;
        }
        p += len;
    }
    buf[n] = 0;
    return buf;
}

/* ---- the loaded object -------------------------------------------------------------------------- */

typedef struct st_entry {
    char *name;                  /* decoded, NUL-free UTF-8 */
    char *dtype;                 /* as written in the header */
    int ndim;                    /* -1 until "shape" was seen */
    int64_t shape[TG_MAX_DIMS];
    int64_t begin, end;          /* data_offsets, relative to the data area */
    bool has_offsets;
    tg_tensor *tensor;           /* owned; NULL until allocated */
} st_entry;

struct tg_st_file {
    st_entry *entries;           /* in header order */
    int count, cap;
    char **meta_keys, **meta_values;
    int nmeta, meta_cap;
    bool has_meta;
};

void tg_st_free(tg_st_file *f) {
    if (!f) return;
    for (int i = 0; i < f->count; i++) {
        free(f->entries[i].name);
        free(f->entries[i].dtype);
        tg_release(f->entries[i].tensor);
    }
    for (int i = 0; i < f->nmeta; i++) {
        free(f->meta_keys[i]);
        free(f->meta_values[i]);
    }
    free(f->entries);
    free(f->meta_keys);
    free(f->meta_values);
    free(f);
}

int tg_st_count(const tg_st_file *f) { return f ? f->count : 0; }
const char *tg_st_name_at(const tg_st_file *f, int i) {
    return f && i >= 0 && i < f->count ? f->entries[i].name : NULL;
}
tg_tensor *tg_st_tensor_at(const tg_st_file *f, int i) {
    return f && i >= 0 && i < f->count ? f->entries[i].tensor : NULL;
}
tg_tensor *tg_st_get(const tg_st_file *f, const char *name) {
    if (!f || !name) return NULL;
    for (int i = 0; i < f->count; i++)
        if (strcmp(f->entries[i].name, name) == 0) return f->entries[i].tensor;
    return NULL;
}
int tg_st_meta_count(const tg_st_file *f) { return f ? f->nmeta : 0; }
const char *tg_st_meta_key(const tg_st_file *f, int i) {
    return f && i >= 0 && i < f->nmeta ? f->meta_keys[i] : NULL;
}
const char *tg_st_meta_value(const tg_st_file *f, int i) {
    return f && i >= 0 && i < f->nmeta ? f->meta_values[i] : NULL;
}
const char *tg_st_meta(const tg_st_file *f, const char *key) {
    if (!f || !key) return NULL;
    for (int i = 0; i < f->nmeta; i++)
        if (strcmp(f->meta_keys[i], key) == 0) return f->meta_values[i];
    return NULL;
}

/* ---- error context ------------------------------------------------------------------------------ */

typedef struct st_ctx {
    const char *fn;   /* "tg_st_load" / "tg_st_parse" */
    const char *file; /* shown before the problem; NULL when parsing memory */
    unsigned flags;   /* TG_ST_* */
} st_ctx;

static void st_fail(const st_ctx *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void st_fail(const st_ctx *c, const char *fmt, ...) {
    char msg[400];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (c->file) {
        char pb[160];
        tg_error_quiet(c->fn, "%s: %s", printable(pb, sizeof pb, c->file), msg);
    } else {
        tg_error_quiet(c->fn, "%s", msg);
    }
}

/* ---- JSON lexing -------------------------------------------------------------------------------- */

typedef struct st_lex {
    const unsigned char *begin, *p, *end;
    const st_ctx *c;
} st_lex;

static size_t lex_pos(const st_lex *l) { return (size_t)(l->p - l->begin); }
static int lex_peek(const st_lex *l) { return l->p < l->end ? *l->p : -1; }
static void lex_ws(st_lex *l) {
    while (l->p < l->end && (*l->p == ' ' || *l->p == '\t' || *l->p == '\n' || *l->p == '\r')) l->p++;
}
static bool is_num_char(int ch) {
    return (ch >= '0' && ch <= '9') || ch == '-' || ch == '+' || ch == '.' || ch == 'e' || ch == 'E';
}

/* What is at the current position, for "found ..." in messages. */
static const char *lex_describe(const st_lex *l, char *buf, size_t size) {
    static const char *const literals[] = {"true", "false", "null"};
    int ch = lex_peek(l);
    size_t avail = (size_t)(l->end - l->p);
    if (ch < 0) return "the end of the header";
    if (ch == '"') return "a string";
    if (ch == '{') return "an object";
    if (ch == '[') return "an array";
    for (int i = 0; i < 3; i++) {
        size_t n = strlen(literals[i]);
        if (avail >= n && memcmp(l->p, literals[i], n) == 0) {
            snprintf(buf, size, "'%s'", literals[i]);
            return buf;
        }
    }
    if (is_num_char(ch)) {
        size_t n = 0;
        while (n < avail && n < 24 && is_num_char(l->p[n])) n++;
        snprintf(buf, size, "'%.*s'%s", (int)n, (const char *)l->p, n == 24 ? "..." : "");
        return buf;
    }
    if (ch >= 0x20 && ch < 0x7f) snprintf(buf, size, "'%c'", ch);
    else snprintf(buf, size, "byte 0x%02x", (unsigned)ch);
    return buf;
}

/* Skips whitespace and consumes `ch`; `after` completes "expected 'x' <after>". */
static bool lex_expect(st_lex *l, char ch, const char *after) {
    lex_ws(l);
    if (lex_peek(l) == ch) { l->p++; return true; }
    char db[48];
    st_fail(l->c, "header byte %zu: expected '%c' %s, found %s", lex_pos(l), ch, after,
            lex_describe(l, db, sizeof db));
    return false;
}

static int hex4(const unsigned char *p) {
    int v = 0;
    for (int i = 0; i < 4; i++) {
        int ch = p[i], d;
        if (ch >= '0' && ch <= '9') d = ch - '0';
        else if (ch >= 'a' && ch <= 'f') d = ch - 'a' + 10;
        else if (ch >= 'A' && ch <= 'F') d = ch - 'A' + 10;
        else return -1;
        v = v * 16 + d;
    }
    return v;
}

static size_t utf8_put(unsigned char *o, unsigned cp) {
    if (cp < 0x80) { o[0] = (unsigned char)cp; return 1; }
    if (cp < 0x800) { o[0] = (unsigned char)(0xc0 | cp >> 6); o[1] = (unsigned char)(0x80 | (cp & 63)); return 2; }
    if (cp < 0x10000) {
        o[0] = (unsigned char)(0xe0 | cp >> 12);
        o[1] = (unsigned char)(0x80 | ((cp >> 6) & 63));
        o[2] = (unsigned char)(0x80 | (cp & 63));
        return 3;
    }
    o[0] = (unsigned char)(0xf0 | cp >> 18);
    o[1] = (unsigned char)(0x80 | ((cp >> 12) & 63));
    o[2] = (unsigned char)(0x80 | ((cp >> 6) & 63));
    o[3] = (unsigned char)(0x80 | (cp & 63));
    return 4;
}

/* Parses a JSON string (after optional whitespace) into a new NUL-terminated UTF-8 string (free it), or
 * returns NULL with a message. `what` names the expected thing, e.g. "a tensor name". */
static char *lex_string(st_lex *l, const char *what) {
    char db[48];
    lex_ws(l);
    if (lex_peek(l) != '"') {
        st_fail(l->c, "header byte %zu: expected %s (a string), found %s", lex_pos(l), what,
                lex_describe(l, db, sizeof db));
        return NULL;
    }
    const unsigned char *start = ++l->p, *q = start;
    while (q < l->end && *q != '"') {
        if (*q == '\\' && q + 1 < l->end) q += 2;
        else q++;
    }
    if (q >= l->end) {
        st_fail(l->c, "header byte %zu: unterminated string", (size_t)(start - 1 - l->begin));
        return NULL;
    }
    /* Escapes never expand: \uXXXX (6 bytes) gives at most 3, a surrogate pair (12) gives 4. */
    unsigned char *out = tg_malloc((size_t)(q - start) + 1), *o = out;
    if (!out) { st_fail(l->c, "out of memory"); return NULL; }
    for (const unsigned char *p = start; p < q;) {
        size_t at = (size_t)(p - l->begin);
        if (*p < 0x20) {
            st_fail(l->c, "header byte %zu: control character 0x%02x inside a string (must be escaped)", at, *p);
            goto fail;
        }
        if (*p >= 0x80) {
            size_t len = utf8_seq(p, (size_t)(q - p));
            if (!len) { st_fail(l->c, "header byte %zu: invalid UTF-8 in a string", at); goto fail; }
            memcpy(o, p, len);
            o += len;
            p += len;
            continue;
        }
        if (*p != '\\') { *o++ = *p++; continue; }
        /* the scan above guarantees p + 1 < q */
        switch (p[1]) {
        case '"': *o++ = '"'; p += 2; continue;
        case '\\': *o++ = '\\'; p += 2; continue;
        case '/': *o++ = '/'; p += 2; continue;
        case 'b': *o++ = '\b'; p += 2; continue;
        case 'f': *o++ = '\f'; p += 2; continue;
        case 'n': *o++ = '\n'; p += 2; continue;
        case 'r': *o++ = '\r'; p += 2; continue;
        case 't': *o++ = '\t'; p += 2; continue;
        case 'u': break;
        default:
            st_fail(l->c, "header byte %zu: invalid escape '\\%c' in a string", at,
                    p[1] >= 0x20 && p[1] < 0x7f ? p[1] : '?');
            goto fail;
        }
        int cp = q - p >= 6 ? hex4(p + 2) : -1;
        if (cp < 0) { st_fail(l->c, "header byte %zu: \\u must be followed by 4 hex digits", at); goto fail; }
        p += 6;
        if (cp >= 0xdc00 && cp <= 0xdfff) {
            st_fail(l->c, "header byte %zu: unpaired surrogate \\u%04x in a string", at, (unsigned)cp);
            goto fail;
        }
        if (cp >= 0xd800 && cp <= 0xdbff) {
            int lo = q - p >= 6 && p[0] == '\\' && p[1] == 'u' ? hex4(p + 2) : -1;
            if (lo < 0xdc00 || lo > 0xdfff) {
                st_fail(l->c, "header byte %zu: unpaired surrogate \\u%04x in a string", at, (unsigned)cp);
                goto fail;
            }
            cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
            p += 6;
        }
        if (cp == 0) {
            st_fail(l->c, "header byte %zu: \\u0000 (NUL) is not allowed in names and metadata", at);
            goto fail;
        }
        o += utf8_put(o, (unsigned)cp);
    }
    *o = 0;
    l->p = q + 1;
    return (char *)out;
fail:
    free(out);
    return NULL;
}

/* Parses a non-negative JSON integer that fits in int64_t. `what` is e.g. "tensor 'x': shape". */
static bool lex_int(st_lex *l, const char *what, int64_t *out) {
    char db[48];
    lex_ws(l);
    const unsigned char *t = l->p;
    size_t n = 0;
    while (t + n < l->end && is_num_char(t[n])) n++;
    size_t digits0 = n > 0 && t[0] == '-' ? 1 : 0;
    bool integer = n > digits0 && (t[digits0] != '0' || n == digits0 + 1);
    for (size_t i = digits0; integer && i < n; i++) integer = t[i] >= '0' && t[i] <= '9';
    if (!integer) {
        st_fail(l->c, "%s must hold integers, found %s at header byte %zu", what, lex_describe(l, db, sizeof db),
                lex_pos(l));
        return false;
    }
    if (digits0) {
        st_fail(l->c, "%s must not be negative, found %s", what, lex_describe(l, db, sizeof db));
        return false;
    }
    int64_t v = 0;
    for (size_t i = 0; i < n; i++) {
        int d = t[i] - '0';
        if (v > (INT64_MAX - d) / 10) {
            st_fail(l->c, "%s: %s is too large", what, lex_describe(l, db, sizeof db));
            return false;
        }
        v = v * 10 + d;
    }
    l->p += n;
    *out = v;
    return true;
}

/* Parses [int, ...] with at most `maxn` entries; returns the count or -1 after a message. */
static int lex_int_array(st_lex *l, const char *what, int64_t *out, int maxn, const char *too_many) {
    char db[48];
    lex_ws(l);
    if (lex_peek(l) != '[') {
        st_fail(l->c, "%s must be an array of integers, found %s", what, lex_describe(l, db, sizeof db));
        return -1;
    }
    l->p++;
    lex_ws(l);
    if (lex_peek(l) == ']') { l->p++; return 0; }
    int n = 0;
    for (;;) {
        if (n == maxn) { st_fail(l->c, "%s %s", what, too_many); return -1; }
        if (!lex_int(l, what, &out[n])) return -1;
        n++;
        lex_ws(l);
        int ch = lex_peek(l);
        if (ch == ']') { l->p++; return n; }
        if (ch != ',') {
            st_fail(l->c, "header byte %zu: %s: expected ',' or ']', found %s", lex_pos(l), what,
                    lex_describe(l, db, sizeof db));
            return -1;
        }
        l->p++;
    }
}

/* ---- header structure --------------------------------------------------------------------------- */

static bool meta_push(tg_st_file *f, char *key, char *value) {
    if (f->nmeta == f->meta_cap) {
        int cap = f->meta_cap ? 2 * f->meta_cap : 8;
        char **k = tg_realloc(f->meta_keys, (size_t)cap * sizeof *k);
        if (!k) return false;
        f->meta_keys = k;
        char **v = tg_realloc(f->meta_values, (size_t)cap * sizeof *v);
        if (!v) return false;
        f->meta_values = v;
        f->meta_cap = cap;
    }
    f->meta_keys[f->nmeta] = key;
    f->meta_values[f->nmeta] = value;
    f->nmeta++;
    return true;
}

/* "__metadata__": {"key": "value", ...} */
static bool parse_meta(st_lex *l, tg_st_file *f) {
    char db[48], nb[ST_NAMEBUF];
    lex_ws(l);
    if (lex_peek(l) != '{') {
        st_fail(l->c, "'__metadata__' must be an object of strings, found %s", lex_describe(l, db, sizeof db));
        return false;
    }
    l->p++;
    lex_ws(l);
    if (lex_peek(l) == '}') { l->p++; return true; }
    for (;;) {
        char *key = lex_string(l, "a metadata key");
        if (!key) return false;
        if (!lex_expect(l, ':', "after a metadata key")) { free(key); return false; }
        lex_ws(l);
        if (lex_peek(l) != '"') {
            st_fail(l->c, "__metadata__: value of '%s' must be a string, found %s",
                    printable(nb, sizeof nb, key), lex_describe(l, db, sizeof db));
            free(key);
            return false;
        }
        char *value = lex_string(l, "a metadata value");
        if (!value) { free(key); return false; }
        if (!meta_push(f, key, value)) {
            free(key);
            free(value);
            st_fail(l->c, "out of memory");
            return false;
        }
        lex_ws(l);
        int ch = lex_peek(l);
        if (ch == '}') { l->p++; return true; }
        if (ch != ',') {
            st_fail(l->c, "header byte %zu: __metadata__: expected ',' or '}', found %s", lex_pos(l),
                    lex_describe(l, db, sizeof db));
            return false;
        }
        l->p++;
    }
}

/* "name": {"dtype": "F32", "shape": [...], "data_offsets": [begin, end]}, keys in any order, each once. */
static bool parse_entry(st_lex *l, st_entry *e) {
    char db[48], nb[ST_NAMEBUF], what[ST_NAMEBUF + 32];
    printable(nb, sizeof nb, e->name);
    lex_ws(l);
    if (lex_peek(l) != '{') {
        st_fail(l->c, "tensor '%s': expected an object with dtype, shape, data_offsets, found %s", nb,
                lex_describe(l, db, sizeof db));
        return false;
    }
    l->p++;
    lex_ws(l);
    if (lex_peek(l) == '}') l->p++;
    else for (;;) {
        char *key = lex_string(l, "a key (dtype, shape or data_offsets)");
        if (!key) return false;
        bool ok = lex_expect(l, ':', "after a key");
        bool dup = false;
        if (ok && strcmp(key, "dtype") == 0) {
            if (e->dtype) dup = true;
            else {
                lex_ws(l);
                if (lex_peek(l) != '"') {
                    st_fail(l->c, "tensor '%s': dtype must be a string, found %s", nb, lex_describe(l, db, sizeof db));
                    ok = false;
                } else {
                    e->dtype = lex_string(l, "a dtype");
                    ok = e->dtype != NULL;
                }
            }
        } else if (ok && strcmp(key, "shape") == 0) {
            if (e->ndim >= 0) dup = true;
            else {
                snprintf(what, sizeof what, "tensor '%s': shape", nb);
                char too_many[40];
                snprintf(too_many, sizeof too_many, "has more than %d dimensions", TG_MAX_DIMS);
                e->ndim = lex_int_array(l, what, e->shape, TG_MAX_DIMS, too_many);
                ok = e->ndim >= 0;
            }
        } else if (ok && strcmp(key, "data_offsets") == 0) {
            if (e->has_offsets) dup = true;
            else {
                int64_t off[2] = {0, 0};
                snprintf(what, sizeof what, "tensor '%s': data_offsets", nb);
                int n = lex_int_array(l, what, off, 2, "must be [begin, end]");
                if (n >= 0 && n != 2) st_fail(l->c, "%s must be [begin, end], found %d entries", what, n);
                ok = n == 2;
                e->begin = off[0];
                e->end = off[1];
                e->has_offsets = ok;
            }
        } else if (ok) {
            char kb[ST_NAMEBUF];
            st_fail(l->c, "tensor '%s': unexpected key '%s' (allowed: dtype, shape, data_offsets)", nb,
                    printable(kb, sizeof kb, key));
            ok = false;
        }
        if (dup) {
            st_fail(l->c, "tensor '%s': duplicate key '%s'", nb, key); /* key is one of the three */
            ok = false;
        }
        free(key);
        if (!ok) return false;
        lex_ws(l);
        int ch = lex_peek(l);
        if (ch == '}') { l->p++; break; }
        if (ch != ',') {
            st_fail(l->c, "header byte %zu: tensor '%s': expected ',' or '}', found %s", lex_pos(l), nb,
                    lex_describe(l, db, sizeof db));
            return false;
        }
        l->p++;
    }
    const char *missing = !e->dtype ? "dtype" : e->ndim < 0 ? "shape" : !e->has_offsets ? "data_offsets" : NULL;
    if (missing) { st_fail(l->c, "tensor '%s': missing \"%s\"", nb, missing); return false; }
    return true;
}

static st_entry *entry_push(tg_st_file *f, char *name) {
    if (f->count == f->cap) {
        if (f->cap > INT_MAX / 2) return NULL;
        int cap = f->cap ? 2 * f->cap : 16;
        st_entry *e = tg_realloc(f->entries, (size_t)cap * sizeof *e);
        if (!e) return NULL;
        f->entries = e;
        f->cap = cap;
    }
    st_entry *e = &f->entries[f->count++];
    memset(e, 0, sizeof *e);
    e->name = name;
    e->ndim = -1;
    return e;
}

/* The whole header: {"name": entry, ..., "__metadata__": {...}} followed only by whitespace. */
static bool parse_header(st_lex *l, tg_st_file *f) {
    char db[48], nb[ST_NAMEBUF];
    if (lex_peek(l) != '{') {
        st_fail(l->c, "header must start with '{', found %s", lex_describe(l, db, sizeof db));
        return false;
    }
    l->p++;
    lex_ws(l);
    bool last_was_meta = false;
    if (lex_peek(l) == '}') l->p++;
    else for (;;) {
        size_t at = lex_pos(l);
        char *key = lex_string(l, "a tensor name");
        if (!key) return false;
        if (!lex_expect(l, ':', "after a tensor name")) { free(key); return false; }
        if (strcmp(key, "__metadata__") == 0) {
            free(key);
            if (f->has_meta) { st_fail(l->c, "duplicate key '__metadata__'"); return false; }
            f->has_meta = last_was_meta = true;
            if (!parse_meta(l, f)) return false;
        } else {
            if (!key[0]) { st_fail(l->c, "header byte %zu: empty tensor name", at); free(key); return false; }
            st_entry *e = entry_push(f, key);
            if (!e) { free(key); st_fail(l->c, "out of memory"); return false; }
            if (!parse_entry(l, e)) return false;
            last_was_meta = false;
        }
        lex_ws(l);
        int ch = lex_peek(l);
        if (ch == '}') { l->p++; break; }
        if (ch != ',') {
            st_fail(l->c, "header byte %zu: expected ',' or '}' after the entry of '%s', found %s", lex_pos(l),
                    last_was_meta ? "__metadata__" : printable(nb, sizeof nb, f->entries[f->count - 1].name),
                    lex_describe(l, db, sizeof db));
            return false;
        }
        l->p++;
    }
    lex_ws(l); /* the format pads the header with spaces */
    if (l->p != l->end) {
        st_fail(l->c, "header byte %zu: trailing garbage after the JSON object (%s)", lex_pos(l),
                lex_describe(l, db, sizeof db));
        return false;
    }
    return true;
}

/* ---- validation --------------------------------------------------------------------------------- */

static const char *const k_known_dtypes[] = {
    "BOOL", "U8", "I8", "U16", "I16", "U32", "I32", "U64", "I64", "F16", "BF16", "F32", "F64", "C64",
    "F8_E4M3", "F8_E5M2", "F8_E8M0", "F6_E2M3", "F6_E3M2", "F4",
};

/* Integer dtypes loaded as F64 with TG_ST_INTEGERS_AS_F64 (little-endian, two's complement). */
static const struct { const char *name; size_t size; bool is_signed; } k_int_dtypes[] = {
    {"BOOL", 1, false}, {"U8", 1, false}, {"I8", 1, true}, {"U16", 2, false}, {"I16", 2, true},
    {"U32", 4, false}, {"I32", 4, true}, {"U64", 8, false}, {"I64", 8, true},
};
static int int_dtype(const char *dtype) {
    for (int k = 0; k < (int)(sizeof k_int_dtypes / sizeof *k_int_dtypes); k++)
        if (strcmp(dtype, k_int_dtypes[k].name) == 0) return k;
    return -1;
}
/* Item size of an accepted dtype, 0 if it is not loaded under these flags. */
static size_t loaded_itemsize(const char *dtype, unsigned flags) {
    if (strcmp(dtype, "F32") == 0) return 4;
    if (strcmp(dtype, "F64") == 0) return 8;
    int k = flags & TG_ST_INTEGERS_AS_F64 ? int_dtype(dtype) : -1;
    return k >= 0 ? k_int_dtypes[k].size : 0;
}

static int cmp_strptr(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* First name that occurs twice in names[0..n), or NULL. */
static const char *find_duplicate(const char **names, int n) {
    if (n < 2) return NULL;
    qsort(names, (size_t)n, sizeof *names, cmp_strptr);
    for (int i = 1; i < n; i++)
        if (strcmp(names[i - 1], names[i]) == 0) return names[i];
    return NULL;
}

/* Stable merge sort of entry indices by (begin, end); qsort would need a global for the entries. */
static void sort_by_offset(const st_entry *e, int *idx, int *tmp, int n) {
    if (n < 2) return;
    int h = n / 2;
    sort_by_offset(e, idx, tmp, h);
    sort_by_offset(e, idx + h, tmp, n - h);
    int a = 0, b = h, k = 0;
    while (a < h && b < n) {
        const st_entry *x = &e[idx[a]], *y = &e[idx[b]];
        bool take_b = y->begin < x->begin || (y->begin == x->begin && y->end < x->end);
        tmp[k++] = take_b ? idx[b++] : idx[a++];
    }
    while (a < h) tmp[k++] = idx[a++];
    while (b < n) tmp[k++] = idx[b++];
    memcpy(idx, tmp, (size_t)n * sizeof *idx);
}

/* Checks the entries as a set; on success fills order[] with entry indices sorted by data offset. */
static bool validate(const st_ctx *c, tg_st_file *f, uint64_t data_size, int *order) {
    char nb[ST_NAMEBUF], db[ST_NAMEBUF], sb[160];
    const char **names = tg_malloc(((size_t)(f->count > f->nmeta ? f->count : f->nmeta) + 1) * sizeof *names);
    int *tmp = tg_malloc(((size_t)f->count + 1) * sizeof *tmp);
    bool ok = false;
    if (!names || !tmp) { st_fail(c, "out of memory"); goto done; }

    for (int i = 0; i < f->count; i++) names[i] = f->entries[i].name;
    const char *dup = find_duplicate(names, f->count);
    if (dup) { st_fail(c, "duplicate tensor name '%s'", printable(nb, sizeof nb, dup)); goto done; }
    for (int i = 0; i < f->nmeta; i++) names[i] = f->meta_keys[i];
    dup = find_duplicate(names, f->nmeta);
    if (dup) { st_fail(c, "__metadata__: duplicate key '%s'", printable(nb, sizeof nb, dup)); goto done; }

    for (int i = 0; i < f->count; i++) {
        st_entry *e = &f->entries[i];
        printable(nb, sizeof nb, e->name);
        bool known = false;
        for (size_t k = 0; k < sizeof k_known_dtypes / sizeof *k_known_dtypes; k++)
            known = known || strcmp(e->dtype, k_known_dtypes[k]) == 0;
        if (!known) {
            st_fail(c, "tensor '%s': unknown dtype '%s'", nb, printable(db, sizeof db, e->dtype));
            goto done;
        }
        size_t itemsize = loaded_itemsize(e->dtype, c->flags);
        if (!itemsize) {
            st_fail(c, "tensor '%s': dtype %s is not supported (tapegrad loads F32 and F64%s)", nb, e->dtype,
                    c->flags & TG_ST_INTEGERS_AS_F64 ? " and integers" : "");
            goto done;
        }
        tg__shape_fmt(e->ndim, e->shape, sb, sizeof sb);
        /* Same bound as tg_empty (product of the non-zero dims x 16 fits in int64), so the allocation
         * below cannot fail its shape check; the numel of the zero-dim case is 0. */
        int64_t nz = 1, numel = 1;
        for (int d = 0; d < e->ndim; d++) {
            if (e->shape[d] == 0) { numel = 0; continue; }
            if (nz > INT64_MAX / 16 / e->shape[d]) { st_fail(c, "tensor '%s': shape %s is too large", nb, sb); goto done; }
            nz *= e->shape[d];
        }
        if (numel) numel = nz;
        if (e->begin > e->end) {
            st_fail(c, "tensor '%s': data_offsets [%lld, %lld] have begin > end", nb, (long long)e->begin,
                    (long long)e->end);
            goto done;
        }
        int64_t bytes = numel * (int64_t)itemsize;
        if (bytes != e->end - e->begin) {
            st_fail(c, "tensor '%s': shape %s x %zu bytes = %lld but data_offsets span %lld", nb, sb, itemsize,
                    (long long)bytes, (long long)(e->end - e->begin));
            goto done;
        }
        if ((uint64_t)e->end > data_size) {
            st_fail(c, "tensor '%s': data_offsets [%lld, %lld] extend past the end of the data area (%llu bytes)", nb,
                    (long long)e->begin, (long long)e->end, (unsigned long long)data_size);
            goto done;
        }
    }

    /* Sorted by offset, each tensor must start exactly where the previous one ended. */
    for (int i = 0; i < f->count; i++) order[i] = i;
    sort_by_offset(f->entries, order, tmp, f->count);
    int64_t pos = 0;
    const st_entry *prev = NULL;
    for (int k = 0; k < f->count; k++) {
        const st_entry *e = &f->entries[order[k]];
        if (e->begin < pos) {
            st_fail(c, "tensors '%s' [%lld, %lld] and '%s' [%lld, %lld] overlap", printable(nb, sizeof nb, prev->name),
                    (long long)prev->begin, (long long)prev->end, printable(db, sizeof db, e->name),
                    (long long)e->begin, (long long)e->end);
            goto done;
        }
        if (e->begin > pos) {
            st_fail(c, "hole in the data area: bytes [%lld, %lld) belong to no tensor (next is '%s')", (long long)pos,
                    (long long)e->begin, printable(nb, sizeof nb, e->name));
            goto done;
        }
        pos = e->end;
        if (e->end > e->begin) prev = e;
    }
    if ((uint64_t)pos != data_size) {
        st_fail(c, "data area has %llu bytes but the tensors cover only %lld (bytes [%lld, %llu) belong to no tensor)",
                (unsigned long long)data_size, (long long)pos, (long long)pos, (unsigned long long)data_size);
        goto done;
    }
    ok = true;
done:
    free(names);
    free(tmp);
    return ok;
}

/* ---- decoding ----------------------------------------------------------------------------------- */

/* Converts little-endian integers `raw` into e's F64 tensor; values beyond 2^53 in magnitude (not exact
 * as doubles) are rejected by name. */
static bool ints_to_f64(const st_ctx *c, st_entry *e, size_t size, bool is_signed, const unsigned char *raw) {
    double *out = tg_data(e->tensor);
    int64_t n = tg_numel(e->tensor);
    for (int64_t k = 0; k < n; k++) {
        uint64_t v = 0;
        for (size_t b = 0; b < size; b++) v |= (uint64_t)raw[(size_t)k * size + b] << (8 * b);
        double d;
        if (is_signed && size < 8 && (v >> (8 * size - 1)) & 1) v |= ~0ull << (8 * size); /* sign-extend */
        if (is_signed) {
            int64_t sv = (int64_t)v;
            if (sv > (1ll << 53) || sv < -(1ll << 53)) goto inexact;
            d = (double)sv;
        } else {
            if (v > (1ull << 53)) goto inexact;
            d = (double)v;
        }
        out[k] = d;
        continue;
    inexact:;
        char nb[ST_NAMEBUF];
        st_fail(c, "tensor '%s': element %lld of dtype %s does not fit a double exactly (|v| > 2^53)",
                printable(nb, sizeof nb, e->name), (long long)k, e->dtype);
        return false;
    }
    return true;
}

/* Parses and validates the header, then allocates the tensors and fills them from `mem` (the data area
 * in memory) or, if mem is NULL, by reading `fp` (positioned at the start of the data area). */
static tg_st_file *st_decode(const st_ctx *c, const unsigned char *hdr, size_t hlen, uint64_t data_size,
                             const unsigned char *mem, FILE *fp) {
    tg_st_file *f = tg_calloc(1, sizeof *f);
    int *order = NULL;
    if (!f) { st_fail(c, "out of memory"); return NULL; }
    st_lex lex = {hdr, hdr, hdr + hlen, c};
    if (!parse_header(&lex, f)) goto fail;
    order = tg_malloc(((size_t)f->count + 1) * sizeof *order);
    if (!order) { st_fail(c, "out of memory"); goto fail; }
    if (!validate(c, f, data_size, order)) goto fail;

    for (int i = 0; i < f->count; i++) {
        st_entry *e = &f->entries[i];
        e->tensor = tg_empty(strcmp(e->dtype, "F32") == 0 ? TG_F32 : TG_F64, e->ndim, e->shape);
        if (!e->tensor) { st_fail(c, "out of memory for tensor of %lld bytes", (long long)(e->end - e->begin)); goto fail; }
        tg_set_name(e->tensor, e->name);
    }
    /* In offset order the tensors tile the data area, so a file is read front to back. */
    for (int k = 0; k < f->count; k++) {
        st_entry *e = &f->entries[order[k]];
        size_t bytes = (size_t)(e->end - e->begin);
        if (!bytes) continue;
        int ik = int_dtype(e->dtype);
        /* integers: the raw bytes go to a temporary first (never larger than the file), then convert */
        unsigned char *dst = ik < 0 ? tg_data(e->tensor) : tg_malloc(bytes);
        if (!dst) { st_fail(c, "out of memory for tensor of %zu bytes", bytes); goto fail; }
        if (mem) {
            memcpy(dst, mem + e->begin, bytes);
        } else if (fread(dst, 1, bytes, fp) != bytes) {
            char nb[ST_NAMEBUF];
            st_fail(c, "tensor '%s': %s while reading its data", printable(nb, sizeof nb, e->name),
                    ferror(fp) ? strerror(errno) : "unexpected end of file");
            if (ik >= 0) free(dst);
            goto fail;
        }
        if (ik >= 0) {
            bool ok = ints_to_f64(c, e, k_int_dtypes[ik].size, k_int_dtypes[ik].is_signed, dst);
            free(dst);
            if (!ok) goto fail;
            continue;
        }
        if (!host_is_little_endian()) swap_items(dst, (size_t)tg_numel(e->tensor), tg_itemsize(tg_dtype_of(e->tensor)));
    }
    free(order);
    return f;
fail:
    free(order);
    tg_st_free(f);
    return NULL;
}

static uint64_t read_le64(const unsigned char *b) {
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--) v = v << 8 | b[i];
    return v;
}

/* Checks the 8-byte length against the total size; returns false after a message. */
static bool check_header_length(const st_ctx *c, uint64_t n, uint64_t total) {
    if (n > total - 8) {
        st_fail(c, "header length %llu exceeds the file: only %llu bytes follow the 8-byte length",
                (unsigned long long)n, (unsigned long long)(total - 8));
        return false;
    }
    if (n > ST_MAX_HEADER) {
        st_fail(c, "header length %llu is larger than the limit of %llu bytes", (unsigned long long)n, ST_MAX_HEADER);
        return false;
    }
    if (n == 0) { st_fail(c, "header is empty (length 0)"); return false; }
    return true;
}

tg_st_file *tg_st_parse(const void *bytes, size_t size) { return tg_st_parse_flags(bytes, size, 0); }
tg_st_file *tg_st_load(const char *path) { return tg_st_load_flags(path, 0); }

const char *tg_st_dtype_at(const tg_st_file *f, int i) {
    return f && i >= 0 && i < f->count ? f->entries[i].dtype : NULL;
}

tg_st_file *tg_st_parse_flags(const void *bytes, size_t size, unsigned flags) {
    const st_ctx c = {"tg_st_parse", NULL, flags};
    const unsigned char *b = bytes;
    if (!b && size) { st_fail(&c, "bytes is NULL"); return NULL; }
    if (size < 8) { st_fail(&c, "%zu bytes is shorter than the 8-byte header length", size); return NULL; }
    uint64_t n = read_le64(b);
    if (!check_header_length(&c, n, size)) return NULL;
    return st_decode(&c, b + 8, (size_t)n, size - 8 - n, b + 8 + n, NULL);
}

tg_st_file *tg_st_load_flags(const char *path, unsigned flags) {
    st_ctx c = {"tg_st_load", path, flags};
    if (!path) { c.file = NULL; st_fail(&c, "path is NULL"); return NULL; }
    unsigned char len8[8], *hdr = NULL;
    tg_st_file *f = NULL;
    FILE *fp = fopen(path, "rb");
    if (!fp) { st_fail(&c, "cannot open: %s", strerror(errno)); return NULL; }
    struct stat st;
    if (fstat(fileno(fp), &st) != 0) { st_fail(&c, "cannot stat: %s", strerror(errno)); goto done; }
    if (!S_ISREG(st.st_mode)) { st_fail(&c, "not a regular file"); goto done; }
    uint64_t total = (uint64_t)st.st_size;
    if (total < 8) {
        st_fail(&c, "file is %llu bytes, shorter than the 8-byte header length", (unsigned long long)total);
        goto done;
    }
    if (fread(len8, 1, 8, fp) != 8) { st_fail(&c, "cannot read the header length"); goto done; }
    uint64_t n = read_le64(len8);
    if (!check_header_length(&c, n, total)) goto done;
    hdr = tg_malloc((size_t)n);
    if (!hdr) { st_fail(&c, "out of memory for a header of %llu bytes", (unsigned long long)n); goto done; }
    if (fread(hdr, 1, (size_t)n, fp) != (size_t)n) {
        st_fail(&c, "%s while reading the header", ferror(fp) ? strerror(errno) : "unexpected end of file");
        goto done;
    }
    f = st_decode(&c, hdr, (size_t)n, total - 8 - n, NULL, fp);
done:
    free(hdr);
    fclose(fp);
    return f;
}

/* ---- writing ------------------------------------------------------------------------------------ */

typedef struct st_buf { char *p; size_t len, cap; bool oom; } st_buf;

static void buf_add(st_buf *b, const char *s, size_t n) {
    if (b->oom) return;
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->len + n + 1) cap *= 2;
        char *p = tg_realloc(b->p, cap);
        if (!p) { b->oom = true; return; }
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = 0;
}
static void buf_str(st_buf *b, const char *s) { buf_add(b, s, strlen(s)); }
static void buf_int(st_buf *b, long long v) {
    char t[24];
    buf_add(b, t, (size_t)snprintf(t, sizeof t, "%lld", v));
}
/* A JSON string literal: escapes quote, backslash and control characters; UTF-8 passes through. */
static void buf_json(st_buf *b, const char *s) {
    buf_add(b, "\"", 1);
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        char t[8];
        switch (*p) {
        case '"': buf_add(b, "\\\"", 2); break;
        case '\\': buf_add(b, "\\\\", 2); break;
        case '\n': buf_add(b, "\\n", 2); break;
        case '\r': buf_add(b, "\\r", 2); break;
        case '\t': buf_add(b, "\\t", 2); break;
        case '\b': buf_add(b, "\\b", 2); break;
        case '\f': buf_add(b, "\\f", 2); break;
        default:
            if (*p < 0x20) buf_add(b, t, (size_t)snprintf(t, sizeof t, "\\u%04x", *p));
            else buf_add(b, (const char *)p, 1);
        }
    }
    buf_add(b, "\"", 1);
}

/* Checks a list of n strings (names or metadata keys/values, `stride` apart): non-NULL, UTF-8. */
static bool check_strings(const st_ctx *c, const char *kind, const char *const *s, int n, int stride) {
    char nb[ST_NAMEBUF];
    for (int i = 0; i < n; i++) {
        const char *x = s[(size_t)i * (size_t)stride];
        if (!x) { st_fail(c, "%s %d is NULL", kind, i); return false; }
        if (!utf8_valid(x)) { st_fail(c, "%s %d ('%s') is not valid UTF-8", kind, i, printable(nb, sizeof nb, x)); return false; }
    }
    return true;
}

/* Permissions for a new file: those of the file being replaced, else 0666 minus the umask (read from
 * /proc, because umask() can only be read by changing it, which races with other threads). */
static mode_t new_file_mode(const char *path) {
    struct stat st;
    if (stat(path, &st) == 0 && S_ISREG(st.st_mode)) return st.st_mode & 07777;
    mode_t mask = 022;
    FILE *p = fopen("/proc/self/status", "r");
    if (p) {
        char line[128];
        while (fgets(line, sizeof line, p)) {
            unsigned m;
            if (sscanf(line, "Umask: %o", &m) == 1) { mask = (mode_t)m; break; }
        }
        fclose(p);
    }
    return 0666 & ~mask;
}

/* Writes the data of t in little-endian order. */
static bool write_data(FILE *fp, const tg_tensor *t) {
    size_t itemsize = tg_itemsize(tg_dtype_of(t)), count = (size_t)tg_numel(t);
    const unsigned char *src = tg_cdata(t);
    if (!count) return true;
    if (host_is_little_endian()) return fwrite(src, itemsize, count, fp) == count;
    unsigned char chunk[8192];
    size_t per = sizeof chunk / itemsize;
    for (size_t i = 0; i < count; i += per) {
        size_t m = count - i < per ? count - i : per;
        memcpy(chunk, src + i * itemsize, m * itemsize);
        swap_items(chunk, m, itemsize);
        if (fwrite(chunk, itemsize, m, fp) != m) return false;
    }
    return true;
}

/* The 8-byte length, the header and every tensor's data, flushed; false after a message. */
static bool write_all(const st_ctx *c, FILE *fp, const st_buf *hb, int n, tg_tensor *const *tensors) {
    unsigned char len8[8];
    for (int i = 0; i < 8; i++) len8[i] = (unsigned char)((uint64_t)hb->len >> (8 * i));
    bool ok = !tg__io_injected(TG_IO_WRITE) && fwrite(len8, 1, 8, fp) == 8 && fwrite(hb->p, 1, hb->len, fp) == hb->len;
    for (int i = 0; ok && i < n; i++) ok = !tg__io_injected(TG_IO_WRITE) && write_data(fp, tensors[i]);
    ok = ok && fflush(fp) == 0;
    if (!ok) st_fail(c, "write failed: %s", strerror(errno));
    return ok;
}

/* After the rename: fsync the directory, so the new name (not only the data) survives a power loss.
 * Best effort: some file systems refuse fsync on a directory, and the data is already safe. */
static void sync_parent_dir(const char *path) {
    const char *slash = strrchr(path, '/');
    char *dir = slash ? tg_strndup(path, slash == path ? 1 : (size_t)(slash - path)) : tg_strdup(".");
    if (!dir) return;
    int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd >= 0) {
        (void)fsync(dfd);
        close(dfd);
    }
    free(dir);
}

/* "<base>.tmp.XXXXXX" exactly: the six characters mkstemp puts in place of the X's ([A-Za-z0-9]). */
static bool is_temporary_of(const char *entry, const char *base, size_t blen) {
    static const char tag[] = ".tmp.";
    if (strncmp(entry, base, blen) != 0 || strncmp(entry + blen, tag, sizeof tag - 1) != 0) return false;
    const char *x = entry + blen + sizeof tag - 1;
    for (int i = 0; i < 6; i++) {
        char ch = x[i];
        if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9'))) return false;
    }
    return x[6] == 0;
}

/* Removes what killed saves into `path` left behind: entries of its directory named as our temporaries
 * of the same target (is_temporary_of), regular files of this user that no process holds locked (a live
 * save holds its lock until the rename; a killed one lost it with its process). Another program's files,
 * other targets' temporaries, links and directories are left alone. Best effort: errors are ignored. */
static void remove_stale_temporaries(const char *path) {
    const char *slash = strrchr(path, '/');
    const char *base = slash ? slash + 1 : path;
    char *dir = slash ? tg_strndup(path, slash == path ? 1 : (size_t)(slash - path)) : tg_strdup(".");
    DIR *d = dir ? opendir(dir) : NULL;
    free(dir);
    if (!d) return;
    size_t blen = strlen(base);
    int dfd = dirfd(d);
    for (struct dirent *e; (e = readdir(d));) {
        if (!is_temporary_of(e->d_name, base, blen)) continue;
        struct stat st, now;
        if (fstatat(dfd, e->d_name, &st, AT_SYMLINK_NOFOLLOW) != 0 || !S_ISREG(st.st_mode)) continue; /* never open a device */
        int fd = openat(dfd, e->d_name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
        if (fd < 0) continue;
        /* locked by us, and still the file under that name: unlink it while the lock keeps a new save
         * from taking it (tg_st_save re-checks its temporary's name after taking the lock) */
        if (fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && st.st_uid == geteuid() && flock(fd, LOCK_EX | LOCK_NB) == 0 &&
            fstatat(dfd, e->d_name, &now, AT_SYMLINK_NOFOLLOW) == 0 && now.st_ino == st.st_ino && now.st_dev == st.st_dev)
            (void)unlinkat(dfd, e->d_name, 0);
        close(fd);
    }
    closedir(d);
}

/* Creates and locks "<path>.tmp.XXXXXX" (its name in tmp[plen + 12]). Returns the descriptor, or -1 with
 * errno. A cleaner that locked the new file first (remove_stale_temporaries of a concurrent save) has
 * unlinked it by the time we hold the lock: then the name no longer leads to our file, and we retry. */
static int create_locked_temporary(char *tmp, size_t plen) {
    for (int attempt = 0; attempt < 8; attempt++) {
        memcpy(tmp + plen, ".tmp.XXXXXX", sizeof ".tmp.XXXXXX");
        int fd = mkstemp(tmp);
        if (fd < 0) return -1;
        if (flock(fd, LOCK_EX) != 0) return fd; /* a file system without locks: an unlocked temporary */
        struct stat mine, named;
        if (fstat(fd, &mine) != 0) return fd;
        if (stat(tmp, &named) == 0 && mine.st_ino == named.st_ino && mine.st_dev == named.st_dev) return fd;
        close(fd); /* unlinked under us: take another name */
    }
    errno = EEXIST;
    return -1;
}

int tg_st_save(const char *path, int n, const char *const *names, tg_tensor *const *tensors, int nmeta,
               const char *const *meta) {
    st_ctx c = {"tg_st_save", path, 0};
    char nb[ST_NAMEBUF];
    st_buf hb = {0};
    const char **sorted = NULL;
    char *tmp = NULL, *resolved = NULL;
    FILE *fp = NULL;
    int fd = -1, lock_fd = -1, rc = -1;
    bool created = false; /* tmp exists on disk and must go unless renamed */

    /* ---- arguments */
    if (!path || !path[0]) { c.file = NULL; st_fail(&c, "path is %s", path ? "empty" : "NULL"); return -1; }
    if (n < 0 || nmeta < 0) { st_fail(&c, "negative count (n %d, nmeta %d)", n, nmeta); return -1; }
    if ((n && (!names || !tensors)) || (nmeta && !meta)) {
        st_fail(&c, "%s is NULL", n && !names ? "names" : n && !tensors ? "tensors" : "meta");
        return -1;
    }
    if (!check_strings(&c, "name", names, n, 1) || !check_strings(&c, "metadata key", meta, nmeta, 2) ||
        !check_strings(&c, "metadata value", meta ? meta + 1 : NULL, nmeta, 2))
        return -1;
    for (int i = 0; i < n; i++) {
        const tg_tensor *t = tensors[i];
        printable(nb, sizeof nb, names[i]);
        if (!names[i][0]) { st_fail(&c, "name %d is empty", i); return -1; }
        if (strcmp(names[i], "__metadata__") == 0) { st_fail(&c, "'__metadata__' is reserved, not a tensor name"); return -1; }
        if (!t) { st_fail(&c, "tensor '%s' is NULL", nb); return -1; }
        if (t->magic != TG_ALIVE) { st_fail(&c, "tensor '%s' was released", nb); return -1; }
        if (t->dtype != TG_F32 && t->dtype != TG_F64) { st_fail(&c, "tensor '%s' has an unknown dtype", nb); return -1; }
    }
    sorted = tg_malloc(((size_t)(n > nmeta ? n : nmeta) + 1) * sizeof *sorted);
    if (!sorted) { st_fail(&c, "out of memory"); return -1; }
    if (n) memcpy(sorted, names, (size_t)n * sizeof *sorted);
    const char *dupname = find_duplicate(sorted, n);
    if (dupname) { st_fail(&c, "duplicate tensor name '%s'", printable(nb, sizeof nb, dupname)); goto done; }
    for (int i = 0; i < nmeta; i++) sorted[i] = meta[2 * i];
    dupname = find_duplicate(sorted, nmeta);
    if (dupname) { st_fail(&c, "duplicate metadata key '%s'", printable(nb, sizeof nb, dupname)); goto done; }

    /* ---- header */
    buf_str(&hb, "{");
    if (nmeta) {
        buf_str(&hb, "\"__metadata__\":{");
        for (int i = 0; i < nmeta; i++) {
            if (i) buf_str(&hb, ",");
            buf_json(&hb, meta[2 * i]);
            buf_str(&hb, ":");
            buf_json(&hb, meta[2 * i + 1]);
        }
        buf_str(&hb, "}");
    }
    uint64_t offset = 0;
    for (int i = 0; i < n; i++) {
        const tg_tensor *t = tensors[i];
        uint64_t bytes = (uint64_t)t->numel * tg_itemsize(t->dtype);
        if (nmeta || i) buf_str(&hb, ",");
        buf_json(&hb, names[i]);
        buf_str(&hb, ":{\"dtype\":\"");
        buf_str(&hb, tg_dtype_name(t->dtype));
        buf_str(&hb, "\",\"shape\":[");
        for (int d = 0; d < t->ndim; d++) {
            if (d) buf_str(&hb, ",");
            buf_int(&hb, (long long)t->shape[d]);
        }
        buf_str(&hb, "],\"data_offsets\":[");
        buf_int(&hb, (long long)offset);
        buf_str(&hb, ",");
        buf_int(&hb, (long long)(offset + bytes));
        buf_str(&hb, "]}");
        offset += bytes;
    }
    buf_str(&hb, "}");
    while (!hb.oom && hb.len % 8) buf_str(&hb, " "); /* data starts 8-byte aligned */
    if (hb.oom) { st_fail(&c, "out of memory building the header"); goto done; }

    /* ---- where to write. A regular file (or none yet) is replaced atomically: a temporary in the same
     * directory, then rename. A symbolic link is written through (its target replaced, the link kept).
     * A device or FIFO (/dev/null, a pipe from the shell) is written straight into, never renamed over;
     * a directory is an error. */
    bool direct = false;
    struct stat ls, ts;
    if (lstat(path, &ls) == 0) {
        if (S_ISLNK(ls.st_mode) && stat(path, &ts) == 0 && S_ISREG(ts.st_mode)) {
            resolved = tg_realpath(path);
            if (!resolved) { st_fail(&c, "cannot resolve the symbolic link: %s", strerror(errno)); goto done; }
            path = resolved;
        } else if (S_ISLNK(ls.st_mode) && stat(path, &ts) != 0) {
            st_fail(&c, "is a symbolic link to a missing file (%s)", strerror(errno));
            goto done;
        } else {
            const struct stat *st = S_ISLNK(ls.st_mode) ? &ts : &ls;
            if (S_ISDIR(st->st_mode)) { st_fail(&c, "is a directory"); goto done; }
            direct = !S_ISREG(st->st_mode);
        }
    }
    if (direct) {
        fd = open(path, O_WRONLY | O_CLOEXEC);
        if (fd < 0) { st_fail(&c, "cannot open for writing: %s", strerror(errno)); goto done; }
        fp = fdopen(fd, "wb");
        if (!fp) { st_fail(&c, "cannot open for writing: %s", strerror(errno)); goto done; }
        fd = -1;
        if (!write_all(&c, fp, &hb, n, tensors)) goto done;
        int close_rc = fclose(fp);
        fp = NULL;
        if (close_rc != 0) { st_fail(&c, "write failed: %s", strerror(errno)); goto done; }
        rc = 0;
        goto done;
    }

    /* ---- file: temporary in the same directory, then rename */
    size_t plen = strlen(path);
    tmp = tg_malloc(plen + sizeof ".tmp.XXXXXX");
    if (!tmp) { st_fail(&c, "out of memory"); goto done; }
    memcpy(tmp, path, plen);
    mode_t mode = new_file_mode(path);
    remove_stale_temporaries(path);
    fd = create_locked_temporary(tmp, plen);
    if (fd < 0) { st_fail(&c, "cannot create a temporary file: %s", strerror(errno)); goto done; }
    created = true;
    lock_fd = dup(fd); /* keeps the lock (one open file) from fclose until after the rename */
    if (fchmod(fd, mode) != 0) { st_fail(&c, "cannot set permissions: %s", strerror(errno)); goto done; }
    fp = fdopen(fd, "wb");
    if (!fp) { st_fail(&c, "cannot open the temporary file: %s", strerror(errno)); goto done; }
    fd = -1; /* owned by fp now */
    if (!write_all(&c, fp, &hb, n, tensors)) goto done;
    if (tg__io_injected(TG_IO_FSYNC) || fsync(fileno(fp)) != 0) { st_fail(&c, "fsync failed: %s", strerror(errno)); goto done; }
    int close_rc = fclose(fp);
    fp = NULL;
    if (close_rc == 0 && tg__io_injected(TG_IO_CLOSE)) close_rc = -1; /* closed, but reports a failure */
    if (close_rc != 0) { st_fail(&c, "close failed: %s", strerror(errno)); goto done; }
    if (tg__io_injected(TG_IO_RENAME) || rename(tmp, path) != 0) { st_fail(&c, "cannot rename the temporary file into place: %s", strerror(errno)); goto done; }
    created = false; /* renamed: nothing to unlink */
    sync_parent_dir(path);
    rc = 0;
done:
    if (fp) fclose(fp);
    if (fd >= 0) close(fd);
    if (created) unlink(tmp);
    if (lock_fd >= 0) close(lock_fd);
    free(tmp);
    free(resolved);
    free(hb.p);
    free(sorted);
    return rc;
}
