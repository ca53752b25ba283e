/* data/batch.c - seeded mini-batches, padded time-major for the sequence runner, with a position that
 * can be saved in a checkpoint and restored.
 *
 * Order: epoch e uses a permutation drawn (Fisher-Yates, tg_rng_below) from one generator seeded once
 * at tg_batcher_new, at the first batch of the epoch; without shuffle the order is 0..N-1. The state
 * string keeps the generator as it was *before* the current epoch's permutation was drawn, so a
 * restored batcher redraws the same permutation and continues at the same offset.
 * Dimension letters: N sequences, B batch, T longest length in the batch, I features, O outputs.
 */
#include "data/internal.h"
#include "tensor/alloc.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct tg_batcher {
    const tg_dataset *ds;        /* borrowed */
    int64_t B;
    bool shuffle, drop_last;
    tg_dtype dtype;
    tg_rng rng;                  /* the generator; advanced by each epoch's permutation */
    tg_rng rng_epoch;            /* rng before this epoch's permutation was drawn */
    int64_t *perm;               /* [N] this epoch's order */
    bool drawn;                  /* perm holds this epoch's order */
    int64_t epoch, pos;          /* epochs completed; next row of perm */
};

void tg_batch_clear(tg_batch *b) {
    if (!b) return;
    tg_release(b->x);
    tg_release(b->classes);
    tg_release(b->values);
    free(b->lengths);
    free(b->index);
    memset(b, 0, sizeof *b);
}

int tg_batch_make(const tg_dataset *ds, const int64_t *index, int64_t B, tg_dtype dtype, tg_batch *b,
                  char *err, size_t errlen) {
    const char *fn = "tg_batch_make";
    if (!b) return tgd_fail(err, errlen, "%s: batch is NULL", fn);
    tg_batch_clear(b);
    if (!ds || !index) return tgd_fail(err, errlen, "%s: %s is NULL", fn, !ds ? "dataset" : "index");
    if (dtype != TG_F32 && dtype != TG_F64) return tgd_fail(err, errlen, "%s: dtype %d is neither F32 nor F64", fn, (int)dtype);
    if (B < 1) return tgd_fail(err, errlen, "%s: batch size %" PRId64 " < 1", fn, B);
    int64_t T = 0;
    for (int64_t r = 0; r < B; r++) {
        if (index[r] < 0 || index[r] >= ds->n)
            return tgd_fail(err, errlen, "%s: index[%" PRId64 "] = %" PRId64 " is outside 0..%" PRId64, fn, r, index[r], ds->n - 1);
        int64_t len = ds->offset[index[r] + 1] - ds->offset[index[r]];
        if (len > T) T = len;
    }
    const int64_t I = ds->features, O = ds->outputs;
    b->lengths = tg_malloc((size_t)B * sizeof *b->lengths);
    b->index = tg_malloc((size_t)B * sizeof *b->index);
    b->x = tg_zeros(dtype, TG_SHAPE(T, B, I));
    if (ds->kind == TG_LABELS_CLASS) b->classes = tg_empty(dtype, TG_SHAPE(B));
    if (ds->kind == TG_LABELS_TAG) b->classes = tg_full(dtype, TG_SHAPE(T * B), TG_IGNORE_INDEX);
    if (ds->kind == TG_LABELS_VALUE) b->values = tg_empty(dtype, TG_SHAPE(B, O));
    if (!b->lengths || !b->index || !b->x || (ds->kind == TG_LABELS_VALUE ? !b->values : ds->kind != TG_LABELS_NONE && !b->classes)) {
        tg_batch_clear(b);
        return tgd_fail(err, errlen, "%s: out of memory for a batch [%" PRId64 ",%" PRId64 ",%" PRId64 "]", fn, T, B, I);
    }
    b->B = B;
    b->T = T;
    void *xd = tg_data(b->x), *cd = b->classes ? tg_data(b->classes) : NULL, *vd = b->values ? tg_data(b->values) : NULL;
    const bool f64 = dtype == TG_F64;
    for (int64_t r = 0; r < B; r++) {
        int64_t j = index[r], s0 = ds->offset[j], len = ds->offset[j + 1] - s0;
        b->index[r] = j;
        b->lengths[r] = len;
        for (int64_t t = 0; t < len; t++) {
            const double *src = ds->x + (s0 + t) * I;
            size_t k = (size_t)((t * B + r) * I);
            if (f64) memcpy((double *)xd + k, src, (size_t)I * sizeof(double));
            else
                for (int64_t i = 0; i < I; i++) ((float *)xd)[k + (size_t)i] = (float)src[i];
            if (ds->kind == TG_LABELS_TAG) {
                double v = (double)ds->labels[s0 + t];
                if (f64) ((double *)cd)[t * B + r] = v;
                else ((float *)cd)[t * B + r] = (float)v;
            }
        }
        if (ds->kind == TG_LABELS_CLASS) {
            if (f64) ((double *)cd)[r] = (double)ds->labels[j];
            else ((float *)cd)[r] = (float)ds->labels[j];
        }
        if (ds->kind == TG_LABELS_VALUE)
            for (int64_t o = 0; o < O; o++) {
                if (f64) ((double *)vd)[r * O + o] = ds->values[j * O + o];
                else ((float *)vd)[r * O + o] = (float)ds->values[j * O + o];
            }
    }
    return 0;
}

tg_batcher *tg_batcher_new(const tg_dataset *ds, int64_t B, bool shuffle, bool drop_last, uint64_t seed,
                           tg_dtype dtype, char *err, size_t errlen) {
    const char *fn = "tg_batcher_new";
    if (!ds) { tgd_fail(err, errlen, "%s: dataset is NULL", fn); return NULL; }
    if (B < 1) { tgd_fail(err, errlen, "%s: batch size %" PRId64 " < 1", fn, B); return NULL; }
    if (dtype != TG_F32 && dtype != TG_F64) { tgd_fail(err, errlen, "%s: dtype %d is neither F32 nor F64", fn, (int)dtype); return NULL; }
    if (drop_last && B > ds->n) {
        tgd_fail(err, errlen, "%s: batch size %" PRId64 " with drop_last leaves no batch from %" PRId64 " sequences", fn, B, ds->n);
        return NULL;
    }
    tg_batcher *bt = tg_calloc(1, sizeof *bt);
    if (bt) bt->perm = tg_malloc((size_t)ds->n * sizeof *bt->perm);
    if (!bt || !bt->perm) {
        free(bt);
        tgd_fail(err, errlen, "%s: out of memory", fn);
        return NULL;
    }
    bt->ds = ds;
    bt->B = B;
    bt->shuffle = shuffle;
    bt->drop_last = drop_last;
    bt->dtype = dtype;
    tg_rng_seed(&bt->rng, seed);
    return bt;
}

void tg_batcher_free(tg_batcher *bt) {
    if (!bt) return;
    free(bt->perm);
    free(bt);
}

int64_t tg_batcher_epoch(const tg_batcher *bt) { return bt ? bt->epoch : 0; }
int64_t tg_batcher_batches_per_epoch(const tg_batcher *bt) {
    if (!bt) return 0;
    return bt->drop_last ? bt->ds->n / bt->B : (bt->ds->n + bt->B - 1) / bt->B;
}

static void draw(tg_batcher *bt) {
    const int64_t N = bt->ds->n;
    bt->rng_epoch = bt->rng;
    for (int64_t i = 0; i < N; i++) bt->perm[i] = i;
    if (bt->shuffle)
        for (int64_t i = N - 1; i > 0; i--) {
            int64_t j = (int64_t)tg_rng_below(&bt->rng, (uint64_t)i + 1);
            int64_t tmp = bt->perm[i];
            bt->perm[i] = bt->perm[j];
            bt->perm[j] = tmp;
        }
    bt->drawn = true;
}

int tg_batcher_next(tg_batcher *bt, tg_batch *b, char *err, size_t errlen) {
    if (!bt || !b) return tgd_fail(err, errlen, "tg_batcher_next: %s is NULL", !bt ? "batcher" : "batch");
    tg_batch_clear(b);
    const int64_t N = bt->ds->n;
    if (!bt->drawn) draw(bt);
    int64_t left = N - bt->pos;
    if (left == 0 || (bt->drop_last && left < bt->B)) {
        bt->epoch++;
        bt->pos = 0;
        bt->drawn = false;
        return 0;
    }
    int64_t B = left < bt->B ? left : bt->B;
    if (tg_batch_make(bt->ds, bt->perm + bt->pos, B, bt->dtype, b, err, errlen)) return -1;
    bt->pos += B;
    return 1;
}

/* "tg_batcher 1 N B shuffle drop_last epoch pos drawn s0 s1 s2 s3" (rng words in hex) */
#define STATE_FMT "tg_batcher 1 %" PRId64 " %" PRId64 " %d %d %" PRId64 " %" PRId64 " %d %016" PRIx64 " %016" PRIx64 \
                  " %016" PRIx64 " %016" PRIx64

char *tg_batcher_state(const tg_batcher *bt) {
    if (!bt) return NULL;
    const tg_rng *r = bt->drawn ? &bt->rng_epoch : &bt->rng;
    char *s = tg_malloc(256);
    if (!s) return NULL;
    snprintf(s, 256, STATE_FMT, bt->ds->n, bt->B, (int)bt->shuffle, (int)bt->drop_last, bt->epoch, bt->pos,
             (int)bt->drawn, r->s[0], r->s[1], r->s[2], r->s[3]);
    return s;
}

int tg_batcher_restore(tg_batcher *bt, const char *state, char *err, size_t errlen) {
    const char *fn = "tg_batcher_restore";
    if (!bt || !state) return tgd_fail(err, errlen, "%s: %s is NULL", fn, !bt ? "batcher" : "state");
    int64_t n, B, epoch, pos;
    int shuffle, drop_last, drawn, used = 0;
    uint64_t w[4];
    if (sscanf(state, "tg_batcher 1 %" SCNd64 " %" SCNd64 " %d %d %" SCNd64 " %" SCNd64 " %d %" SCNx64 " %" SCNx64
               " %" SCNx64 " %" SCNx64 "%n", &n, &B, &shuffle, &drop_last, &epoch, &pos, &drawn, &w[0], &w[1], &w[2],
               &w[3], &used) != 11 || state[used] != '\0')
        return tgd_fail(err, errlen, "%s: not a batcher state: \"%.60s\"", fn, state);
    if (n != bt->ds->n || B != bt->B || shuffle != (int)bt->shuffle || drop_last != (int)bt->drop_last)
        return tgd_fail(err, errlen, "%s: the state is for %" PRId64 " sequences in batches of %" PRId64 " (shuffle %d, "
                        "drop_last %d), this batcher has %" PRId64 " in batches of %" PRId64 " (shuffle %d, drop_last %d)",
                        fn, n, B, shuffle, drop_last, bt->ds->n, bt->B, (int)bt->shuffle, (int)bt->drop_last);
    if (epoch < 0 || pos < 0 || pos > n || (drawn != 0 && drawn != 1) || (!drawn && pos != 0) ||
        (w[0] | w[1] | w[2] | w[3]) == 0)
        return tgd_fail(err, errlen, "%s: inconsistent batcher state (epoch %" PRId64 ", offset %" PRId64 ")", fn, epoch, pos);
    memcpy(bt->rng.s, w, sizeof w);
    bt->rng.has_spare = 0;
    bt->rng.spare = 0;
    bt->epoch = epoch;
    bt->pos = pos;
    bt->drawn = false;
    if (drawn) draw(bt);
    return 0;
}
