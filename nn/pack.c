/* nn/pack.c - pad_sequence, pack_padded_sequence, pad_packed_sequence, pack_sequence and the runner
 * on packed input (include/tapegrad/pack.h).
 *
 * Every rearrangement is one tg_gather_rows over the inputs flattened to rows [rows, F] (F = the
 * product of the trailing dimensions), with one extra constant row holding the padding value where
 * padding is written; the gather's backward scatters the gradient back, so everything here is on the
 * tape with exact gradients. */
#include <tapegrad/pack.h>

#include <tapegrad/autograd.h>
#include <tapegrad/ops.h>
#include "tensor/alloc.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* x viewed as [rows, F] rows where rows = the product of the first `lead` dims. */
static tg_tensor *as_rows(const tg_tensor *x, int lead) {
    int64_t rows = 1, f = 1;
    for (int i = 0; i < tg_ndim(x); i++) *(i < lead ? &rows : &f) *= tg_shape(x)[i];
    return tg_reshape(x, 2, (int64_t[]){rows, f});
}

/* [rows, F] source rows plus one padding row appended (index = rows). */
static tg_tensor *with_pad_row(tg_tensor *rows, double padding_value) {
    if (!rows) return NULL;
    tg_tensor *pad = tg_full(tg_dtype_of(rows), 2, (int64_t[]){1, tg_shape(rows)[1]}, padding_value);
    if (!pad) return NULL;
    tg_tensor *both = tg_concat(2, (tg_tensor *[]){rows, pad}, 0);
    tg_release(pad);
    return both;
}

/* gather_rows(src, idx) reshaped to [lead0, lead1, trailing...] of `like` (its dims from `from`). */
static tg_tensor *gather_to(tg_tensor *src, int64_t n, const int64_t *idx, int64_t lead0, int64_t lead1,
                            const tg_tensor *like, int from) {
    tg_tensor *g = src ? tg_gather_rows(src, n, idx) : NULL;
    if (!g) return NULL;
    int64_t shape[TG_MAX_DIMS];
    int nd = 0;
    shape[nd++] = lead0;
    if (lead1 >= 0) shape[nd++] = lead1;
    for (int i = from; i < tg_ndim(like); i++) shape[nd++] = tg_shape(like)[i];
    return tg_reshape(g, nd, shape);
}

tg_tensor *tg_pad_sequence(int n, tg_tensor *const *seqs, bool batch_first, double padding_value) {
    const char *fn = "tg_pad_sequence";
    char s0[128], s1[128];
    if (n < 1 || !seqs) { tg_error(fn, "received an empty list of sequences (%d at %p)", n, (const void *)seqs); return NULL; }
    for (int i = 0; i < n; i++) {
        const tg_tensor *a = seqs[i], *b = seqs[0];
        if (!a) { if (!tg_error_pending()) tg_error(fn, "sequence %d is NULL", i); return NULL; }
        if (tg_ndim(a) < 1) { tg_error(fn, "sequence %d is 0-d; expected [L, *]", i); return NULL; }
        bool same = tg_ndim(a) == tg_ndim(b) && tg_dtype_of(a) == tg_dtype_of(b);
        for (int d = 1; same && d < tg_ndim(a); d++) same = tg_shape(a)[d] == tg_shape(b)[d];
        if (!same) {
            tg_error(fn, "sequence %d is %s %s, sequence 0 is %s %s: every sequence must be [L_i, *] with the same * and dtype",
                     i, tg_shape_str(a, s0, sizeof s0), tg_dtype_name(tg_dtype_of(a)), tg_shape_str(b, s1, sizeof s1),
                     tg_dtype_name(tg_dtype_of(b)));
            return NULL;
        }
    }
    int64_t T = 0, total = 0;
    for (int i = 0; i < n; i++) {
        if (tg_shape(seqs[i])[0] > T) T = tg_shape(seqs[i])[0];
        total += tg_shape(seqs[i])[0];
    }
    if (T == 0) { tg_error(fn, "all %d sequences are empty (length 0)", n); return NULL; }
    /* the non-empty sequences' rows one after the other, then the padding row */
    tg_tensor **parts = tg_malloc((size_t)(n + 1) * sizeof *parts);
    int64_t *start = tg_malloc((size_t)n * sizeof *start), *idx = tg_malloc((size_t)(T * n + 1) * sizeof *idx);
    tg_tensor *out = NULL;
    if (!parts || !start || !idx) { tg_error(fn, "out of memory"); goto done; }
    int np = 0;
    int64_t off = 0;
    for (int i = 0; i < n; i++) {
        start[i] = off;
        off += tg_shape(seqs[i])[0];
        if (tg_shape(seqs[i])[0] > 0 && !(parts[np++] = as_rows(seqs[i], 1))) goto done;
    }
    tg_tensor *src = with_pad_row(tg_concat(np, parts, 0), padding_value);
    for (int64_t t = 0; t < T; t++)
        for (int i = 0; i < n; i++) {
            int64_t k = batch_first ? i * T + t : t * n + i;
            idx[k] = t < tg_shape(seqs[i])[0] ? start[i] + t : total;
        }
    out = gather_to(src, T * n, idx, batch_first ? n : T, batch_first ? T : n, seqs[0], 1);
done:
    free(parts);
    free(start);
    free(idx);
    return out;
}

void tg_packed_sequence_clear(tg_packed_sequence *p) {
    if (!p) return;
    free(p->batch_sizes);
    free(p->sorted_indices);
    free(p->unsorted_indices);
    memset(p, 0, sizeof *p);
}

/* Packed sorted: no index arrays (torch's enforce_sorted). */
static void drop_indices(tg_packed_sequence *p) {
    free(p->sorted_indices);
    free(p->unsorted_indices);
    p->sorted_indices = p->unsorted_indices = NULL;
}

/* Packs input [T,B,*] (or [B,T,*]) with the batch in the given order (order[k] = batch index of the
 * k-th sequence, lengths non-increasing along it; validated by the callers); out gets copies of the
 * order and its inverse. */
static int pack_ordered(const char *fn, const tg_tensor *input, int64_t B, const int64_t *lengths, bool batch_first,
                        const int64_t *order, tg_packed_sequence *out) {
    const int64_t T = tg_shape(input)[batch_first ? 1 : 0];
    int64_t *sorted = tg_malloc((size_t)B * sizeof *sorted), *inv = tg_malloc((size_t)B * sizeof *inv);
    int64_t *bs = tg_calloc((size_t)T, sizeof *bs);
    int64_t *idx = NULL, total = 0;
    if (!sorted || !inv || !bs) goto oom;
    for (int64_t k = 0; k < B; k++) {
        sorted[k] = order[k];
        inv[order[k]] = k;
        total += lengths[order[k]];
        for (int64_t t = 0; t < lengths[order[k]]; t++) bs[t]++;
    }
    if (!(idx = tg_malloc((size_t)total * sizeof *idx))) goto oom;
    int64_t n = 0;
    for (int64_t t = 0; t < T && bs[t]; t++)
        for (int64_t k = 0; k < bs[t]; k++) idx[n++] = batch_first ? order[k] * T + t : t * B + order[k];
    out->data = gather_to(as_rows(input, 2), total, idx, total, -1, input, 2);
    free(idx);
    if (!out->data) goto fail;
    out->batch_sizes = bs;
    out->sorted_indices = sorted;
    out->unsorted_indices = inv;
    out->max_len = lengths[order[0]];
    out->batch = B;
    return 0;
oom:
    tg_error(fn, "out of memory");
fail:
    free(sorted);
    free(inv);
    free(bs);
    return -1;
}

/* torch 1.13 sorts the lengths with torch.sort(descending=True), on the CPU std::sort of libstdc++
 * (introsort: median-of-three pivot, unguarded partition, insertion sort below 16 elements), which
 * does not keep ties in batch order once B > 16. The same algorithm over (length, index) pairs gives
 * torch's sorted_indices, ties included. (Its heap-sort fallback, after 2·log2(B) bad partitions,
 * cannot be reached here in practice; this one keeps partitioning.) */
#define LONGER(a, b) (lengths[a] > lengths[b])
static void swap_i64(int64_t *a, int64_t *b) { int64_t t = *a; *a = *b; *b = t; }
static void linear_insert(int64_t *i, const int64_t *lengths) {
    int64_t v = *i, *next = i - 1;
    while (LONGER(v, *next)) { *i = *next; i = next--; }
    *i = v;
}
static void sort_by_length(int64_t *first, int64_t n, const int64_t *lengths) {
    int64_t *last = first + n;
    while (last - first > 16) {
        int64_t *a = first + 1, *m = first + (last - first) / 2, *c = last - 1;
        if (LONGER(*a, *m)) swap_i64(first, LONGER(*m, *c) ? m : LONGER(*a, *c) ? c : a);
        else swap_i64(first, LONGER(*a, *c) ? a : LONGER(*m, *c) ? c : m);
        int64_t *lo = first + 1, *hi = last;
        for (;;) {
            while (LONGER(*lo, *first)) lo++;
            hi--;
            while (LONGER(*first, *hi)) hi--;
            if (!(lo < hi)) break;
            swap_i64(lo++, hi);
        }
        sort_by_length(lo, last - lo, lengths);
        last = lo;
    }
    int64_t *end = first + n, *guarded_end = n > 16 ? first + 16 : end;
    for (int64_t *i = first + 1; i < guarded_end; i++) {
        if (LONGER(*i, *first)) {
            int64_t v = *i;
            memmove(first + 1, first, (size_t)(i - first) * sizeof *first);
            *first = v;
        } else {
            linear_insert(i, lengths);
        }
    }
    for (int64_t *i = guarded_end; i < end; i++) linear_insert(i, lengths);
}
#undef LONGER

int tg_pack_padded_sequence(const tg_tensor *input, int64_t batch, const int64_t *lengths, bool batch_first,
                            bool enforce_sorted, tg_packed_sequence *out) {
    const char *fn = "tg_pack_padded_sequence";
    char s[128];
    if (!out) { tg_error(fn, "out is NULL"); return -1; }
    memset(out, 0, sizeof *out);
    if (!input) { if (!tg_error_pending()) tg_error(fn, "input is NULL"); return -1; }
    if (!lengths) { tg_error(fn, "lengths is NULL"); return -1; }
    if (tg_ndim(input) < 2) {
        tg_error(fn, "input %s must be [T, B, *] (or [B, T, *] with batch_first)", tg_shape_str(input, s, sizeof s));
        return -1;
    }
    const int64_t T = tg_shape(input)[batch_first ? 1 : 0], B = tg_shape(input)[batch_first ? 0 : 1];
    if (batch != B) {
        tg_error(fn, "expected %lld lengths (the batch of input %s%s), got %lld", (long long)B,
                 tg_shape_str(input, s, sizeof s), batch_first ? ", batch_first" : "", (long long)batch);
        return -1;
    }
    if (B == 0) { /* torch 1.13's words; reading the first length of an empty batch overran the array */
        tg_error(fn, "input %s: Cannot pack empty tensors.", tg_shape_str(input, s, sizeof s));
        return -1;
    }
    for (int64_t b = 0; b < B; b++) {
        if (lengths[b] <= 0) {
            tg_error(fn, "Length of all samples has to be greater than 0, but found an element in 'lengths' that is <= 0 (lengths[%lld] = %lld)",
                     (long long)b, (long long)lengths[b]);
            return -1;
        }
        if (lengths[b] > T) {
            tg_error(fn, "lengths[%lld] = %lld exceeds the %lld steps of input %s", (long long)b, (long long)lengths[b],
                     (long long)T, tg_shape_str(input, s, sizeof s));
            return -1;
        }
        if (enforce_sorted && b > 0 && lengths[b] > lengths[b - 1]) {
            tg_error(fn, "`lengths` array must be sorted in decreasing order when `enforce_sorted` is True (lengths[%lld] = %lld > lengths[%lld] = %lld); pass enforce_sorted = false to sort it",
                     (long long)b, (long long)lengths[b], (long long)b - 1, (long long)lengths[b - 1]);
            return -1;
        }
    }
    int64_t *order = tg_malloc((size_t)B * sizeof *order);
    if (!order) { tg_error(fn, "out of memory"); return -1; }
    for (int64_t b = 0; b < B; b++) order[b] = b;
    sort_by_length(order, B, lengths);
    int rc = pack_ordered(fn, input, B, lengths, batch_first, order, out);
    if (rc == 0 && enforce_sorted) drop_indices(out);
    free(order);
    return rc;
}

int tg_pack_sequence(int n, tg_tensor *const *seqs, bool enforce_sorted, tg_packed_sequence *out) {
    const char *fn = "tg_pack_sequence";
    if (!out) { tg_error(fn, "out is NULL"); return -1; }
    memset(out, 0, sizeof *out);
    tg_tensor *x = tg_pad_sequence(n, seqs, false, 0.0);
    if (!x) return -1;
    int64_t *lengths = tg_malloc((size_t)n * sizeof *lengths);
    if (!lengths) { tg_error(fn, "out of memory"); return -1; }
    for (int i = 0; i < n; i++) lengths[i] = tg_shape(seqs[i])[0];
    int rc = tg_pack_padded_sequence(x, n, lengths, false, enforce_sorted, out);
    free(lengths);
    return rc;
}

/* p's fields hold together (a packed sequence from elsewhere, or filled by hand): false + tg_error. */
static bool packed_ok(const char *fn, const tg_packed_sequence *p) {
    char s[128];
    if (!p || !p->data || !p->batch_sizes) {
        if (!tg_error_pending()) tg_error(fn, "the packed sequence is %s", !p ? "NULL" : "empty (no data or batch_sizes)");
        return false;
    }
    int64_t total = 0;
    for (int64_t t = 0; t < p->max_len; t++) {
        if (p->batch_sizes[t] < 1 || p->batch_sizes[t] > p->batch || (t && p->batch_sizes[t] > p->batch_sizes[t - 1])) {
            tg_error(fn, "batch_sizes[%lld] = %lld: must be in 1..%lld and non-increasing", (long long)t,
                     (long long)p->batch_sizes[t], (long long)p->batch);
            return false;
        }
        total += p->batch_sizes[t];
    }
    if (p->max_len < 1 || p->batch_sizes[0] != p->batch || tg_ndim(p->data) < 1 || tg_shape(p->data)[0] != total) {
        tg_error(fn, "data %s does not hold the %lld steps that batch_sizes counts (batch %lld, max_len %lld)",
                 tg_shape_str(p->data, s, sizeof s), (long long)total, (long long)p->batch, (long long)p->max_len);
        return false;
    }
    if (!p->sorted_indices != !p->unsorted_indices) { tg_error(fn, "sorted_indices and unsorted_indices: both or neither"); return false; }
    for (int64_t b = 0; p->sorted_indices && b < p->batch; b++) {
        int64_t k = p->unsorted_indices[b];
        if (k < 0 || k >= p->batch || p->sorted_indices[k] != b) {
            tg_error(fn, "unsorted_indices[%lld] = %lld is not the inverse of sorted_indices", (long long)b, (long long)k);
            return false;
        }
    }
    return true;
}

tg_tensor *tg_pad_packed_sequence(const tg_packed_sequence *p, bool batch_first, double padding_value,
                                  int64_t total_length, int64_t *lengths_out) {
    const char *fn = "tg_pad_packed_sequence";
    if (!packed_ok(fn, p)) return NULL;
    if (total_length == 0) total_length = p->max_len;
    if (total_length < p->max_len) {
        tg_error(fn, "Expected total_length to be at least the length of the longest sequence in input, but got total_length=%lld and max sequence length being %lld",
                 (long long)total_length, (long long)p->max_len);
        return NULL;
    }
    const int64_t B = p->batch, T = total_length, N = tg_shape(p->data)[0];
    int64_t *offset = tg_malloc((size_t)p->max_len * sizeof *offset), *idx = tg_malloc((size_t)(T * B) * sizeof *idx);
    tg_tensor *out = NULL;
    if (!offset || !idx) { tg_error(fn, "out of memory"); goto done; }
    for (int64_t t = 0, o = 0; t < p->max_len; o += p->batch_sizes[t], t++) offset[t] = o;
    for (int64_t b = 0; b < B; b++) {
        int64_t k = p->unsorted_indices ? p->unsorted_indices[b] : b, len = 0; /* sorted position of b */
        while (len < p->max_len && p->batch_sizes[len] > k) len++;
        if (lengths_out) lengths_out[b] = len;
        for (int64_t t = 0; t < T; t++)
            idx[batch_first ? b * T + t : t * B + b] = t < len ? offset[t] + k : N;
    }
    out = gather_to(with_pad_row(as_rows(p->data, 1), padding_value), T * B, idx, batch_first ? B : T,
                    batch_first ? T : B, p->data, 1);
done:
    free(offset);
    free(idx);
    return out;
}

int tg_rnn_forward_packed(const tg_rnn *m, const tg_packed_sequence *x, const tg_rnn_forward_opts *opts,
                          tg_packed_sequence *y, tg_rnn_output *out) {
    const char *fn = "tg_rnn_forward_packed";
    if (!y) { tg_error(fn, "y is NULL"); return -1; }
    memset(y, 0, sizeof *y);
    if (!m) { tg_error(fn, "the model is NULL"); return -1; }
    if (!packed_ok(fn, x)) return -1;
    int64_t *lengths = tg_malloc((size_t)x->batch * sizeof *lengths);
    if (!lengths) { tg_error(fn, "out of memory"); return -1; }
    int rc = -1;
    tg_tensor *padded = tg_pad_packed_sequence(x, m->batch_first, 0.0, 0, lengths);
    tg_rnn_forward_opts o = opts ? *opts : (tg_rnn_forward_opts){0};
    o.lengths = lengths;
    tg_tensor *h = padded ? tg_rnn_forward(m, padded, &o, out) : NULL;
    if (h) {
        int64_t *order = x->sorted_indices;
        if (!order && (order = tg_malloc((size_t)x->batch * sizeof *order)))
            for (int64_t b = 0; b < x->batch; b++) order[b] = b;
        if (!order) tg_error(fn, "out of memory");
        else rc = pack_ordered(fn, h, x->batch, lengths, m->batch_first, order, y);
        if (order && !x->sorted_indices) {
            free(order);
            if (rc == 0) drop_indices(y); /* as the input: packed sorted, no indices */
        }
    }
    free(lengths);
    return rc;
}
