/* data/npy.c - NumPy .npy files (format versions 1.0, 2.0, 3.0): magic "\x93NUMPY", major, minor, a
 * little-endian header length (u16 for 1.x, u32 after), then a Python dict literal
 *     {'descr': '<f8', 'fortran_order': False, 'shape': (2, 3, 4), }
 * padded with spaces and a newline, then the C-order data. The dict is parsed strictly: exactly these
 * three keys, each once; descr one of <f4 <f8 <i8 <i4 |u1 (also |i1, <i2; '>' big-endian is refused:
 * the issue asks for little-endian files and numpy writes native order); fortran_order False;
 * at most 4 dimensions. The data must fill the rest of the file exactly (checked before anything is
 * allocated: the array is a view of the file image).
 */
#include "data/internal.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

typedef struct np_lex {
    const char *p, *begin, *end;
    const char *what;
    size_t base;                 /* file offset of begin */
} np_lex;

static int np_fail(const np_lex *l, char *err, size_t errlen, const char *msg) {
    return tgd_fail(err, errlen, "%s: byte %zu: npy header: %s", l->what, l->base + (size_t)(l->p - l->begin), msg);
}
static void np_ws(np_lex *l) {
    while (l->p < l->end && (*l->p == ' ' || *l->p == '\t' || *l->p == '\n' || *l->p == '\r')) l->p++;
}
static bool np_eat(np_lex *l, char c) {
    np_ws(l);
    if (l->p < l->end && *l->p == c) { l->p++; return true; }
    return false;
}
/* A quoted string 'abc' or "abc" (no escapes: none of the allowed values needs one) into buf. */
static bool np_string(np_lex *l, char *buf, size_t size) {
    np_ws(l);
    if (l->p >= l->end || (*l->p != '\'' && *l->p != '"')) return false;
    char q = *l->p++;
    size_t n = 0;
    while (l->p < l->end && *l->p != q) {
        if (*l->p == '\\' || n + 1 >= size) return false;
        buf[n++] = *l->p++;
    }
    if (l->p >= l->end) return false;
    l->p++;
    buf[n] = 0;
    return true;
}

int tgd_npy_parse(const unsigned char *buf, size_t len, const char *what, tgd_array *out, char *err, size_t errlen) {
    memset(out, 0, sizeof *out);
    out->what = what;
    static const unsigned char magic[6] = {0x93, 'N', 'U', 'M', 'P', 'Y'};
    if (len < 10 || memcmp(buf, magic, 6) != 0)
        return tgd_fail(err, errlen, "%s: byte 0: not a .npy file (%s)", what,
                        len < 10 ? "shorter than the 10-byte preamble" : "no \\x93NUMPY magic");
    unsigned major = buf[6], minor = buf[7];
    size_t hlen, hstart;
    if (major == 1) {
        hlen = (size_t)buf[8] | (size_t)buf[9] << 8;
        hstart = 10;
    } else if (major == 2 || major == 3) {
        if (len < 12) return tgd_fail(err, errlen, "%s: byte 8: truncated header length", what);
        hlen = (size_t)buf[8] | (size_t)buf[9] << 8 | (size_t)buf[10] << 16 | (size_t)buf[11] << 24;
        hstart = 12;
    } else {
        return tgd_fail(err, errlen, "%s: byte 6: npy format version %u.%u is not supported (1.0, 2.0, 3.0 are)", what,
                        major, minor);
    }
    if (hlen > len - hstart)
        return tgd_fail(err, errlen, "%s: byte %zu: header length %zu exceeds the file (%zu bytes follow)", what,
                        hstart - 2 - (major > 1) * 2, hlen, len - hstart);
    np_lex lx = {(const char *)buf + hstart, (const char *)buf + hstart, (const char *)buf + hstart + hlen, what, hstart};
    np_lex *l = &lx;
    char descr[16] = "";
    bool have_descr = false, have_order = false, have_shape = false;
    if (!np_eat(l, '{')) return np_fail(l, err, errlen, "expected '{'");
    for (;;) {
        if (np_eat(l, '}')) break;
        char key[32];
        if (!np_string(l, key, sizeof key)) return np_fail(l, err, errlen, "expected a quoted key");
        if (!np_eat(l, ':')) return np_fail(l, err, errlen, "expected ':' after a key");
        if (strcmp(key, "descr") == 0) {
            if (have_descr) return np_fail(l, err, errlen, "duplicate key 'descr'");
            if (!np_string(l, descr, sizeof descr)) return np_fail(l, err, errlen, "descr must be a simple type string like '<f8' (structured dtypes are not supported)");
            have_descr = true;
        } else if (strcmp(key, "fortran_order") == 0) {
            if (have_order) return np_fail(l, err, errlen, "duplicate key 'fortran_order'");
            np_ws(l);
            if ((size_t)(l->end - l->p) >= 5 && memcmp(l->p, "False", 5) == 0) l->p += 5;
            else if ((size_t)(l->end - l->p) >= 4 && memcmp(l->p, "True", 4) == 0)
                return np_fail(l, err, errlen, "fortran_order True is not supported (save with C order: np.ascontiguousarray)");
            else return np_fail(l, err, errlen, "fortran_order must be False");
            have_order = true;
        } else if (strcmp(key, "shape") == 0) {
            if (have_shape) return np_fail(l, err, errlen, "duplicate key 'shape'");
            if (!np_eat(l, '(')) return np_fail(l, err, errlen, "shape must be a tuple");
            out->ndim = 0;
            for (;;) {
                if (np_eat(l, ')')) break;
                np_ws(l);
                if (l->p >= l->end || *l->p < '0' || *l->p > '9') return np_fail(l, err, errlen, "shape entries must be non-negative integers");
                int64_t v = 0;
                while (l->p < l->end && *l->p >= '0' && *l->p <= '9') {
                    if (v > (INT64_MAX - 9) / 10) return np_fail(l, err, errlen, "shape entry does not fit in 64 bits");
                    v = v * 10 + (*l->p++ - '0');
                }
                if (out->ndim == 4) return np_fail(l, err, errlen, "more than 4 dimensions");
                out->shape[out->ndim++] = v;
                if (!np_eat(l, ',')) {
                    if (np_eat(l, ')')) break;
                    return np_fail(l, err, errlen, "expected ',' or ')' in shape");
                }
            }
            have_shape = true;
        } else {
            char m[128];
            snprintf(m, sizeof m, "unexpected key '%.30s' (allowed: descr, fortran_order, shape)", key);
            return np_fail(l, err, errlen, m);
        }
        if (!np_eat(l, ',')) {
            if (np_eat(l, '}')) break;
            return np_fail(l, err, errlen, "expected ',' or '}'");
        }
    }
    np_ws(l);
    if (l->p != l->end) return np_fail(l, err, errlen, "trailing bytes after the dict");
    if (!have_descr || !have_order || !have_shape)
        return np_fail(l, err, errlen, !have_descr ? "missing 'descr'" : !have_order ? "missing 'fortran_order'" : "missing 'shape'");
    static const struct { const char *descr; tgd_elem elem; } k_descr[] = {
        {"<f4", TGD_F32}, {"<f8", TGD_F64}, {"<i8", TGD_I64}, {"<i4", TGD_I32}, {"<i2", TGD_I16},
        {"|i1", TGD_I8}, {"|u1", TGD_U8}, {"<u1", TGD_U8}, {"|b1", TGD_U8},
    };
    bool found = false;
    for (size_t k = 0; k < sizeof k_descr / sizeof *k_descr; k++)
        if (strcmp(descr, k_descr[k].descr) == 0) { out->elem = k_descr[k].elem; found = true; }
    if (!found) {
        l->p = l->begin;
        char m[160];
        snprintf(m, sizeof m, "dtype '%s' is not supported (%s)", descr,
                 descr[0] == '>' ? "big-endian; save little-endian data" : "float32, float64, int64, int32, int16, int8, uint8 are");
        return np_fail(l, err, errlen, m);
    }
    size_t data_at = hstart + hlen;
    out->data = buf + data_at;
    out->base_offset = (int64_t)data_at;
    if (tgd_array_numel(out, (uint64_t)(len - data_at), err, errlen)) return -1;
    uint64_t need = (uint64_t)out->numel * tgd_elem_size(out->elem);
    if (need != len - data_at)
        return tgd_fail(err, errlen, "%s: byte %zu: the header's shape holds %" PRIu64 " bytes of data but the file has %zu"
                        " after the header%s", what, data_at, need, len - data_at, need > len - data_at ? " (truncated?)" : "");
    return 0;
}
