/* data/inflate.c - gzip (RFC 1952) around inflate (RFC 1951), so that .gz data sets (MNIST's IDX files
 * as distributed) load without zlib: the library's runtime dependencies stay libc, libm, pthreads.
 *
 * Decoder. Canonical Huffman codes are decoded the way Mark Adler's "puff" does (counts of codes per
 * length + symbols in code order, walked one bit at a time), with a first-level lookup table of
 * FAST_BITS bits that resolves the short (frequent) codes in one step. Every input read is bounds
 * checked (running out is an error, never a read past the end); every back-reference is checked
 * against what was already written; code-length sets that are over-subscribed, or incomplete where
 * RFC 1951 does not allow it, are rejected. The output grows geometrically and never beyond max_out,
 * so a "zip bomb" costs at most max_out bytes and then fails with a message.
 * Container: every member's header (flags, optional fields, header CRC) is parsed, its CRC-32 and
 * ISIZE are checked, members are concatenated (as gzip -d does), and anything after the last member
 * that is not another member is an error.
 * Messages: "<name>: byte <offset>: <problem>", the offset into the compressed file.
 */
#include "data/internal.h"
#include "tensor/alloc.h"

#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- CRC-32 (polynomial 0xEDB88320, reflected), table built once ------------------------------- */

static uint32_t g_crc_table[256];
static void crc_init(void) {
    for (uint32_t n = 0; n < 256; n++) {
        uint32_t c = n;
        for (int k = 0; k < 8; k++) c = c & 1 ? 0xedb88320u ^ (c >> 1) : c >> 1;
        g_crc_table[n] = c;
    }
}

static pthread_once_t g_crc_once = PTHREAD_ONCE_INIT;

uint32_t tg_crc32(uint32_t crc, const void *data, size_t len) {
    pthread_once(&g_crc_once, crc_init);
    const unsigned char *p = data;
    crc = ~crc;
    for (size_t k = 0; k < len; k++) crc = g_crc_table[(crc ^ p[k]) & 0xff] ^ (crc >> 8);
    return ~crc;
}

/* ---- state ------------------------------------------------------------------------------------- */

#define MAXBITS 15
#define FAST_BITS 9
#define MAXLCODES 286
#define MAXDCODES 30

typedef struct huffman {
    short count[MAXBITS + 1];    /* number of codes of each length */
    short symbol[288];           /* symbols in canonical order (the fixed code has 288) */
    /* fast[code of FAST_BITS bits, bit-reversed as read] = symbol << 4 | length, or 0 if longer */
    uint16_t fast[1 << FAST_BITS];
} huffman;

typedef struct inflater {
    const unsigned char *in;
    size_t in_len, pos;          /* next byte to load */
    uint64_t bitbuf;             /* bits not yet used, LSB first */
    int bitcnt;
    unsigned char *out;
    size_t out_len, out_cap, max_out;
    const char *name;
    char *err;
    size_t errlen;
    bool failed;
} inflater;

/* Offset of the byte holding the next unread bit. */
static size_t bit_offset(const inflater *s) { return s->pos - (size_t)(s->bitcnt / 8); }

static int fail_at(inflater *s, size_t offset, const char *msg) {
    if (!s->failed) tgd_fail(s->err, s->errlen, "%s: byte %zu: %s", s->name, offset, msg);
    s->failed = true;
    return -1;
}
static int fail(inflater *s, const char *msg) { return fail_at(s, bit_offset(s), msg); }

/* Makes at least `need` (<= 57) bits available; false at the end of the input. */
static bool refill(inflater *s, int need) {
    while (s->bitcnt < need) {
        if (s->pos >= s->in_len) return false;
        s->bitbuf |= (uint64_t)s->in[s->pos++] << s->bitcnt;
        s->bitcnt += 8;
    }
    return true;
}

static int bits(inflater *s, int need, unsigned *v) {
    if (!refill(s, need)) return fail(s, "unexpected end of the compressed data");
    *v = (unsigned)(s->bitbuf & ((1ull << need) - 1));
    s->bitbuf >>= need;
    s->bitcnt -= need;
    return 0;
}

static int out_reserve(inflater *s, size_t more) {
    if (s->out_len + more <= s->out_cap) return 0;
    if (more > s->max_out - s->out_len) {
        char m[160];
        snprintf(m, sizeof m, "decompresses to more than the limit of %zu bytes", s->max_out);
        return fail(s, m);
    }
    size_t cap = s->out_cap ? s->out_cap : 65536;
    while (cap < s->out_len + more) cap = cap > s->max_out / 2 ? s->max_out : cap * 2;
    if (cap > s->max_out) cap = s->max_out; /* out_len + more <= max_out was checked above */
    unsigned char *p = tg_realloc(s->out, cap);
    if (!p) return fail(s, "out of memory for the decompressed data");
    s->out = p;
    s->out_cap = cap;
    return 0;
}

/* ---- Huffman codes ----------------------------------------------------------------------------- */

/* Builds h from n code lengths. Returns 0 for a complete code, > 0 for an incomplete one, < 0 for an
 * over-subscribed one (as puff's construct). */
static int construct(huffman *h, const short *length, int n) {
    short offs[MAXBITS + 1];
    memset(h->count, 0, sizeof h->count);
    for (int sym = 0; sym < n; sym++) h->count[length[sym]]++;
    if (h->count[0] == n) { memset(h->fast, 0, sizeof h->fast); return 0; } /* no codes: complete, decoding fails */
    int left = 1;
    for (int len = 1; len <= MAXBITS; len++) {
        left <<= 1;
        left -= h->count[len];
        if (left < 0) return left;
    }
    offs[1] = 0;
    for (int len = 1; len < MAXBITS; len++) offs[len + 1] = (short)(offs[len] + h->count[len]);
    for (int sym = 0; sym < n; sym++)
        if (length[sym] != 0) h->symbol[offs[length[sym]]++] = (short)sym;
    /* fast table: walk codes of length <= FAST_BITS in canonical order */
    memset(h->fast, 0, sizeof h->fast);
    int code = 0, index = 0;
    for (int len = 1; len <= FAST_BITS; len++) {
        for (int k = 0; k < h->count[len]; k++, code++, index++) {
            int rev = 0;
            for (int b = 0; b < len; b++) rev |= ((code >> b) & 1) << (len - 1 - b);
            for (int fill = rev; fill < (1 << FAST_BITS); fill += 1 << len)
                h->fast[fill] = (uint16_t)(h->symbol[index] << 4 | len);
        }
        code <<= 1;
    }
    return left;
}

/* One symbol; -1 after a message (no code matches, or the input ran out). */
static int decode(inflater *s, const huffman *h) {
    refill(s, MAXBITS); /* may come up short near the end; checked below */
    if (s->bitcnt > 0) {
        uint16_t e = h->fast[s->bitbuf & ((1u << FAST_BITS) - 1)];
        int len = e & 15;
        if (len && len <= s->bitcnt) {
            s->bitbuf >>= len;
            s->bitcnt -= len;
            return e >> 4;
        }
    }
    int code = 0, first = 0, index = 0;
    for (int len = 1; len <= MAXBITS; len++) {
        if (s->bitcnt == 0) return fail(s, "unexpected end of the compressed data");
        code |= (int)(s->bitbuf & 1);
        s->bitbuf >>= 1;
        s->bitcnt--;
        int count = h->count[len];
        if (code - count < first) return h->symbol[index + (code - first)];
        index += count;
        first += count;
        first <<= 1;
        code <<= 1;
    }
    return fail(s, "invalid Huffman code");
}

/* ---- blocks ------------------------------------------------------------------------------------ */

static const short k_len_base[29] = {3, 4, 5, 6, 7, 8, 9, 10, 11, 13, 15, 17, 19, 23, 27, 31,
                                     35, 43, 51, 59, 67, 83, 99, 115, 131, 163, 195, 227, 258};
static const short k_len_extra[29] = {0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3, 4, 4, 4, 4, 5, 5, 5, 5, 0};
static const short k_dist_base[30] = {1, 2, 3, 4, 5, 7, 9, 13, 17, 25, 33, 49, 65, 97, 129, 193, 257, 385, 513, 769,
                                      1025, 1537, 2049, 3073, 4097, 6145, 8193, 12289, 16385, 24577};
static const short k_dist_extra[30] = {0, 0, 0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7, 8, 8, 9, 9, 10, 10, 11, 11, 12, 12, 13, 13};

static int codes(inflater *s, const huffman *lencode, const huffman *distcode) {
    for (;;) {
        int sym = decode(s, lencode);
        if (sym < 0) return -1;
        if (sym < 256) {
            if (out_reserve(s, 1)) return -1;
            s->out[s->out_len++] = (unsigned char)sym;
        } else if (sym == 256) {
            return 0;
        } else {
            sym -= 257;
            if (sym >= 29) return fail(s, "invalid length symbol (286 or 287)");
            unsigned extra;
            if (bits(s, k_len_extra[sym], &extra)) return -1;
            size_t len = (size_t)k_len_base[sym] + extra;
            int dsym = decode(s, distcode);
            if (dsym < 0) return -1;
            if (dsym >= 30) return fail(s, "invalid distance symbol (30 or 31)");
            if (bits(s, k_dist_extra[dsym], &extra)) return -1;
            size_t dist = (size_t)k_dist_base[dsym] + extra;
            if (dist > s->out_len) {
                char m[160];
                snprintf(m, sizeof m, "distance %zu reaches before the start of the output (%zu bytes so far)", dist, s->out_len);
                return fail(s, m);
            }
            if (out_reserve(s, len)) return -1;
            unsigned char *o = s->out + s->out_len;
            const unsigned char *from = o - dist;
            for (size_t k = 0; k < len; k++) o[k] = from[k]; /* overlapping copies repeat, byte by byte */
            s->out_len += len;
        }
    }
}

static int stored(inflater *s) {
    /* drop to a byte boundary: the unused bits of the current byte */
    s->bitbuf >>= s->bitcnt & 7;
    s->bitcnt -= s->bitcnt & 7;
    unsigned len, nlen;
    if (bits(s, 16, &len) || bits(s, 16, &nlen)) return -1;
    if (len != (~nlen & 0xffff)) return fail(s, "stored block: LEN and NLEN do not match");
    /* whole bytes still in the bit buffer come first */
    while (len && s->bitcnt >= 8) {
        if (out_reserve(s, 1)) return -1;
        s->out[s->out_len++] = (unsigned char)(s->bitbuf & 0xff);
        s->bitbuf >>= 8;
        s->bitcnt -= 8;
        len--;
    }
    if (len > s->in_len - s->pos) return fail(s, "stored block runs past the end of the data");
    if (out_reserve(s, len)) return -1;
    if (len) memcpy(s->out + s->out_len, s->in + s->pos, len); /* an empty block: out may still be NULL */
    s->out_len += len;
    s->pos += len;
    return 0;
}

static huffman g_fixed_len, g_fixed_dist;
static pthread_once_t g_fixed_once = PTHREAD_ONCE_INIT;
static void build_fixed(void) {
    short lengths[288];
    int sym = 0;
    for (; sym < 144; sym++) lengths[sym] = 8;
    for (; sym < 256; sym++) lengths[sym] = 9;
    for (; sym < 280; sym++) lengths[sym] = 7;
    for (; sym < 288; sym++) lengths[sym] = 8;
    construct(&g_fixed_len, lengths, 288);
    for (sym = 0; sym < 30; sym++) lengths[sym] = 5;
    construct(&g_fixed_dist, lengths, 30);
}

static int fixed(inflater *s) {
    pthread_once(&g_fixed_once, build_fixed);
    return codes(s, &g_fixed_len, &g_fixed_dist);
}

static int dynamic(inflater *s) {
    static const short order[19] = {16, 17, 18, 0, 8, 7, 9, 6, 10, 5, 11, 4, 12, 3, 13, 2, 14, 1, 15};
    short lengths[MAXLCODES + MAXDCODES];
    huffman lencode, distcode;
    unsigned nlen, ndist, ncode;
    if (bits(s, 5, &nlen) || bits(s, 5, &ndist) || bits(s, 4, &ncode)) return -1;
    nlen += 257;
    ndist += 1;
    ncode += 4;
    if (nlen > MAXLCODES || ndist > MAXDCODES) return fail(s, "dynamic block: too many length or distance codes");
    unsigned index;
    for (index = 0; index < ncode; index++) {
        unsigned v;
        if (bits(s, 3, &v)) return -1;
        lengths[order[index]] = (short)v;
    }
    for (; index < 19; index++) lengths[order[index]] = 0;
    if (construct(&lencode, lengths, 19) != 0) return fail(s, "dynamic block: code-length code is incomplete or over-subscribed");
    for (index = 0; index < nlen + ndist;) {
        int sym = decode(s, &lencode);
        if (sym < 0) return -1;
        if (sym < 16) {
            lengths[index++] = (short)sym;
        } else {
            short len = 0;
            unsigned rep;
            if (sym == 16) {
                if (index == 0) return fail(s, "dynamic block: repeat of a previous length with no previous length");
                len = lengths[index - 1];
                if (bits(s, 2, &rep)) return -1;
                rep += 3;
            } else if (sym == 17) {
                if (bits(s, 3, &rep)) return -1;
                rep += 3;
            } else {
                if (bits(s, 7, &rep)) return -1;
                rep += 11;
            }
            if (index + rep > nlen + ndist) return fail(s, "dynamic block: code lengths repeat past the end");
            while (rep--) lengths[index++] = len;
        }
    }
    if (lengths[256] == 0) return fail(s, "dynamic block: no end-of-block code");
    int err = construct(&lencode, lengths, (int)nlen);
    /* an incomplete code is allowed only for a single code of one bit (RFC 1951, as puff and zlib) */
    if (err < 0 || (err > 0 && (int)nlen != lencode.count[0] + lencode.count[1]))
        return fail(s, "dynamic block: literal/length code is incomplete or over-subscribed");
    err = construct(&distcode, lengths + nlen, (int)ndist);
    if (err < 0 || (err > 0 && (int)ndist != distcode.count[0] + distcode.count[1]))
        return fail(s, "dynamic block: distance code is incomplete or over-subscribed");
    return codes(s, &lencode, &distcode);
}

/* One raw deflate stream starting at s->pos; on return s->pos is the byte after its last bit. */
static int inflate_stream(inflater *s) {
    unsigned last, type;
    do {
        if (bits(s, 1, &last) || bits(s, 2, &type)) return -1;
        int rc = type == 0 ? stored(s) : type == 1 ? fixed(s) : type == 2 ? dynamic(s) : fail(s, "invalid block type 3");
        if (rc) return -1;
    } while (!last);
    /* give back whole unused bytes of the bit buffer */
    s->pos -= (size_t)(s->bitcnt / 8);
    s->bitbuf = 0;
    s->bitcnt = 0;
    return 0;
}

/* ---- gzip members ------------------------------------------------------------------------------ */

static uint32_t le32(const unsigned char *p) { return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24; }

static int member(inflater *s) {
    const unsigned char *in = s->in;
    size_t start = s->pos, n = s->in_len;
    if (n - start < 18) return fail_at(s, start, "truncated gzip member (shorter than its 18-byte header and trailer)");
    if (in[start] != 0x1f || in[start + 1] != 0x8b) return fail_at(s, start, "not a gzip member (no 1f 8b magic)");
    if (in[start + 2] != 8) return fail_at(s, start + 2, "compression method is not deflate (8)");
    unsigned flg = in[start + 3];
    if (flg & 0xe0) return fail_at(s, start + 3, "reserved header flag bits are set");
    size_t p = start + 10;
    if (flg & 4) { /* FEXTRA */
        if (n - p < 2) return fail_at(s, p, "truncated extra field length");
        size_t xlen = (size_t)in[p] | (size_t)in[p + 1] << 8;
        p += 2;
        if (n - p < xlen) return fail_at(s, p, "extra field runs past the end");
        p += xlen;
    }
    for (unsigned bit = 8; bit <= 16; bit <<= 1) /* FNAME, FCOMMENT: zero-terminated */
        if (flg & bit) {
            const unsigned char *z = memchr(in + p, 0, n - p);
            if (!z) return fail_at(s, p, bit == 8 ? "file name field is not terminated" : "comment field is not terminated");
            p = (size_t)(z - in) + 1;
        }
    if (flg & 2) { /* FHCRC: low 16 bits of the CRC-32 of the header so far */
        if (n - p < 2) return fail_at(s, p, "truncated header CRC");
        unsigned want = (unsigned)in[p] | (unsigned)in[p + 1] << 8;
        if ((tg_crc32(0, in + start, p - start) & 0xffff) != want) return fail_at(s, p, "header CRC does not match");
        p += 2;
    }
    s->pos = p;
    size_t out0 = s->out_len;
    if (inflate_stream(s)) return -1;
    if (s->in_len - s->pos < 8) return fail_at(s, s->pos, "truncated gzip trailer (CRC-32 and ISIZE)");
    uint32_t crc = le32(in + s->pos), isize = le32(in + s->pos + 4);
    uint32_t got = s->out_len > out0 ? tg_crc32(0, s->out + out0, s->out_len - out0) : 0; /* out NULL when empty */
    if (got != crc) {
        char m[160];
        snprintf(m, sizeof m, "CRC-32 mismatch: the trailer says %08" PRIx32 ", the data gives %08" PRIx32, crc, got);
        return fail_at(s, s->pos, m);
    }
    if (isize != (uint32_t)(s->out_len - out0)) {
        char m[160];
        snprintf(m, sizeof m, "ISIZE mismatch: the trailer says %" PRIu32 " bytes, the member has %zu", isize, s->out_len - out0);
        return fail_at(s, s->pos + 4, m);
    }
    s->pos += 8;
    return 0;
}

int tg_gunzip(const void *in, size_t in_len, const char *name, size_t max_out, unsigned char **out,
              size_t *out_len, char *err, size_t errlen) {
    if (out) *out = NULL;
    if (out_len) *out_len = 0;
    if (!name) name = "gzip data";
    if (!in || !out || !out_len) return tgd_fail(err, errlen, "%s: tg_gunzip: %s is NULL", name, !in ? "in" : !out ? "out" : "out_len");
    inflater s = {.in = in, .in_len = in_len, .max_out = max_out ? max_out : TG_DATA_MAX_BYTES, .name = name,
                  .err = err, .errlen = errlen};
    if (in_len == 0) return tgd_fail(err, errlen, "%s: byte 0: empty input", name);
    /* first guess of the size from the last ISIZE, bounded by what deflate can expand (1032:1) */
    if (in_len >= 18) {
        size_t hint = le32((const unsigned char *)in + in_len - 4);
        size_t bound = in_len > SIZE_MAX / 1032 ? SIZE_MAX : in_len * 1032;
        if (hint > bound) hint = bound;
        if (hint > s.max_out) hint = s.max_out;
        if (hint && out_reserve(&s, hint)) goto fail;
    }
    do {
        if (member(&s)) goto fail;
        if (s.pos < s.in_len && (s.in_len - s.pos < 2 || s.in[s.pos] != 0x1f || s.in[s.pos + 1] != 0x8b)) {
            char m[96];
            snprintf(m, sizeof m, "%zu bytes of trailing data after the last gzip member", s.in_len - s.pos);
            fail_at(&s, s.pos, m);
            goto fail;
        }
    } while (s.pos < s.in_len);
    *out = s.out ? s.out : tg_malloc(1);
    if (!*out) return tgd_fail(err, errlen, "%s: out of memory", name);
    *out_len = s.out_len;
    return 0;
fail:
    free(s.out);
    return -1;
}
