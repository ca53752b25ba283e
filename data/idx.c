/* data/idx.c - the IDX format of MNIST and Fashion-MNIST (http://yann.lecun.com/exdb/mnist/):
 * bytes 0-1 zero, byte 2 the element type (0x08 uint8, 0x09 int8, 0x0B int16, 0x0C int32, 0x0D float32,
 * 0x0E float64), byte 3 the number of dimensions, then each dimension as a big-endian uint32, then the
 * big-endian data in C order. Images [N, R, C] become N sequences of R steps of C features (data.h).
 * The dimensions must describe exactly the bytes that follow them (checked before anything is
 * allocated: the array is a view of the file image, decompressed first if it was gzip).
 */
#include "data/internal.h"

#include <inttypes.h>
#include <string.h>

int tgd_idx_parse(const unsigned char *buf, size_t len, const char *what, tgd_array *out, char *err, size_t errlen) {
    static const struct { unsigned char code; tgd_elem elem; } k_types[] = {
        {0x08, TGD_U8}, {0x09, TGD_I8}, {0x0b, TGD_I16}, {0x0c, TGD_I32}, {0x0d, TGD_F32}, {0x0e, TGD_F64},
    };
    memset(out, 0, sizeof *out);
    out->what = what;
    out->big_endian = true;
    if (len < 4) return tgd_fail(err, errlen, "%s: byte 0: %zu bytes is shorter than the 4-byte IDX magic", what, len);
    if (buf[0] != 0 || buf[1] != 0)
        return tgd_fail(err, errlen, "%s: byte 0: not an IDX file (the magic starts with 00 00, found %02x %02x)", what, buf[0], buf[1]);
    bool found = false;
    for (size_t k = 0; k < sizeof k_types / sizeof *k_types; k++)
        if (buf[2] == k_types[k].code) { out->elem = k_types[k].elem; found = true; }
    if (!found) return tgd_fail(err, errlen, "%s: byte 2: unknown IDX element type 0x%02x", what, buf[2]);
    int ndim = buf[3];
    if (ndim < 1 || ndim > 4) return tgd_fail(err, errlen, "%s: byte 3: %d dimensions (1 to 4 are supported)", what, ndim);
    size_t data_at = 4 + 4 * (size_t)ndim;
    if (len < data_at) return tgd_fail(err, errlen, "%s: byte 4: truncated: %d dimensions need %zu header bytes, the file has %zu", what, ndim, data_at, len);
    out->ndim = ndim;
    for (int d = 0; d < ndim; d++) {
        const unsigned char *p = buf + 4 + 4 * d;
        out->shape[d] = (int64_t)((uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3]);
    }
    out->data = buf + data_at;
    out->base_offset = (int64_t)data_at;
    if (tgd_array_numel(out, (uint64_t)(len - data_at), err, errlen)) return -1;
    uint64_t need = (uint64_t)out->numel * tgd_elem_size(out->elem);
    if (need != len - data_at)
        return tgd_fail(err, errlen, "%s: byte %zu: the dimensions hold %" PRIu64 " bytes of data but %zu follow", what, data_at, need, len - data_at);
    return 0;
}
