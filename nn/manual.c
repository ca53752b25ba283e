/* nn/manual.c - hand-derived BPTT references for RNN, LSTM and GRU (no tape); see <tapegrad/manual.h>.
 *
 * This file validates arguments, manages caches and gradients, and dispatches on the dtype; the
 * arithmetic is in nn/manual_kernels.inc, compiled once for float and once for double.
 *
 * A cache holds one record per layer (a step and a sequence are one-layer caches; a step is a sequence
 * with T = 1 whose x is [B,I]). Each record keeps references to its inputs and parameters, their
 * version counters at forward time, and the tensors the backward needs (y, activated gates, cell
 * states, ...). A stacked layer k > 0 takes layer k-1's y as its x, by reference.
 */
#include "tensor/internal.h"
#include "tensor/gemm.h"
#include "tensor/alloc.h"

#include <tapegrad/manual.h>

#include <inttypes.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* ---- typed kernels ------------------------------------------------------------------------------ */

#define R float
#define SFX f32
#define EXP expf
#define TANH tanhf
#define GEMM tg_gemm_f32
#include "manual_kernels.inc"
#undef R
#undef SFX
#undef EXP
#undef TANH
#undef GEMM

#define R double
#define SFX f64
#define EXP exp
#define TANH tanh
#define GEMM tg_gemm_f64
#include "manual_kernels.inc"
#undef R
#undef SFX
#undef EXP
#undef TANH
#undef GEMM

/* ---- cache -------------------------------------------------------------------------------------- */

enum { K_STEP = 1, K_SEQ = 2, K_STACK = 3 };
enum { FAM_RNN = 0, FAM_LSTM = 1, FAM_GRU = 2 };
#define CACHE_MAGIC 0x6d616e75u  /* "manu" */
#define CACHE_DEAD 0x64656164u

#define NPARAM 5 /* weight_ih, weight_hh, bias_ih, bias_hh, weight_hr (projections only) */

typedef struct mlayer {
    int64_t I;                        /* input size of this layer */
    tg_tensor *x, *h0, *c0;           /* references: inputs (x of layer k > 0 is layer k-1's y) */
    tg_tensor *p[NPARAM];             /* references: weight_ih, weight_hh, bias_ih, bias_hh, weight_hr (or NULL) */
    uint64_t vx, vh0, vc0, vp[NPARAM], vy; /* their version counters after the forward */
    tg_tensor *y, *gates, *cs, *aux;  /* owned: what the backward needs (see manual_kernels.inc) */
    tg_tensor *mh;                    /* owned, projections only: o ⊙ tanh(c) [T,B,H] before W_hr */
} mlayer;

struct tg_manual_cache {
    uint32_t magic;
    tg_manual_cell cell;
    int kind;          /* K_STEP, K_SEQ, K_STACK */
    const char *maker; /* name of the forward function, for messages */
    int layers;
    int64_t T, B, I, H;
    int64_t P;         /* LSTM projections: h is P wide (0: none, h is H wide) */
    tg_dtype dtype;
    mlayer lay[];
};

static const char *const PNAME[NPARAM] = {"weight_ih", "weight_hh", "bias_ih", "bias_hh", "weight_hr"};

/* The parameter slots of one layer in PNAME order (a NULL weight_hr: no projection). */
static void layer_slots(tg_manual_layer *l, tg_tensor **slot[NPARAM]) {
    slot[0] = &l->weight_ih, slot[1] = &l->weight_hh, slot[2] = &l->bias_ih, slot[3] = &l->bias_hh;
    slot[4] = &l->weight_hr;
}

const char *tg_manual_cell_name(tg_manual_cell cell) {
    switch (cell) {
    case TG_MANUAL_RNN_TANH: return "rnn_tanh";
    case TG_MANUAL_RNN_RELU: return "rnn_relu";
    case TG_MANUAL_LSTM: return "lstm";
    case TG_MANUAL_GRU: return "gru";
    case TG_MANUAL_GRU_RESET_BEFORE: return "gru_reset_before";
    }
    return "?";
}

int tg_manual_cell_parse(const char *name, tg_manual_cell *cell) {
    static const tg_manual_cell all[5] = {TG_MANUAL_RNN_TANH, TG_MANUAL_RNN_RELU, TG_MANUAL_LSTM,
                                          TG_MANUAL_GRU, TG_MANUAL_GRU_RESET_BEFORE};
    if (!name) return -1;
    for (int i = 0; i < 5; i++)
        if (strcmp(name, tg_manual_cell_name(all[i])) == 0) {
            if (cell) *cell = all[i];
            return 0;
        }
    return -1;
}

int tg_manual_cell_gates(tg_manual_cell cell) {
    switch (cell) {
    case TG_MANUAL_RNN_TANH:
    case TG_MANUAL_RNN_RELU: return 1;
    case TG_MANUAL_LSTM: return 4;
    case TG_MANUAL_GRU:
    case TG_MANUAL_GRU_RESET_BEFORE: return 3;
    }
    return 0;
}

static int family(tg_manual_cell cell) {
    return cell == TG_MANUAL_LSTM                                       ? FAM_LSTM
           : cell == TG_MANUAL_GRU || cell == TG_MANUAL_GRU_RESET_BEFORE ? FAM_GRU
                                                                         : FAM_RNN;
}

static bool cell_valid(tg_manual_cell cell) {
    return cell == TG_MANUAL_RNN_TANH || cell == TG_MANUAL_RNN_RELU || cell == TG_MANUAL_LSTM ||
           cell == TG_MANUAL_GRU || cell == TG_MANUAL_GRU_RESET_BEFORE;
}

void tg_manual_cache_free(tg_manual_cache *c) {
    if (!c || c->magic != CACHE_MAGIC) return;
    for (int l = 0; l < c->layers; l++) {
        mlayer *m = &c->lay[l];
        tg_release(m->x);
        tg_release(m->h0);
        tg_release(m->c0);
        for (int i = 0; i < NPARAM; i++) tg_release(m->p[i]);
        tg_release(m->y);
        tg_release(m->gates);
        tg_release(m->cs);
        tg_release(m->aux);
        tg_release(m->mh);
    }
    c->magic = CACHE_DEAD;
    free(c);
}

void tg_manual_layer_release(tg_manual_layer *layers, int n) {
    if (!layers) return;
    for (int l = 0; l < n; l++) {
        tg_tensor **slot[NPARAM];
        layer_slots(&layers[l], slot);
        for (int i = 0; i < NPARAM; i++) {
            tg_release(*slot[i]);
            *slot[i] = NULL;
        }
    }
}

int tg_manual_cache_info(const tg_manual_cache *c, tg_manual_cell *cell, int *layers, int64_t *T,
                         int64_t *B, int64_t *I, int64_t *H) {
    if (!c || c->magic != CACHE_MAGIC) {
        tg_error("tg_manual_cache_info", "cache is %s", c ? "freed or not a cache" : "NULL");
        return -1;
    }
    if (cell) *cell = c->cell;
    if (layers) *layers = c->layers;
    if (T) *T = c->T;
    if (B) *B = c->B;
    if (I) *I = c->I;
    if (H) *H = c->H;
    return 0;
}

/* ---- small helpers ------------------------------------------------------------------------------ */

static tg_tensor *mut(const tg_tensor *t) { return (tg_tensor *)(uintptr_t)t; }

static const char *shp(const tg_tensor *t, char *buf, size_t n) { return tg_shape_str(t, buf, n); }

static const char *dims_str(int nd, const int64_t *d, char *buf, size_t n) {
    return tg__shape_fmt(nd, d, buf, n);
}

static void pname(char *buf, size_t n, int which, int layer, bool stacked) {
    if (stacked) snprintf(buf, n, "%s_l%d", PNAME[which], layer);
    else snprintf(buf, n, "%s", PNAME[which]);
}

/* Checks t against the expected dims; on mismatch reports "fn: NAME [..] does not match SYM = [..]
 * (CTX)". */
static bool expect_shape(const char *fn, const char *name, const tg_tensor *t, int nd, const int64_t *d,
                         const char *sym, const char *ctx) {
    bool ok = tg_ndim(t) == nd;
    for (int i = 0; ok && i < nd; i++) ok = tg_dim(t, i) == d[i];
    if (!ok) {
        char a[96], b[96];
        tg_error(fn, "%s %s does not match %s = %s (%s)", name, shp(t, a, sizeof a), sym,
                 dims_str(nd, d, b, sizeof b), ctx);
    }
    return ok;
}

static bool expect_dtype(const char *fn, const char *name, const tg_tensor *t, tg_dtype dt,
                         const char *refname) {
    if (tg_dtype_of(t) != dt) {
        tg_error(fn, "mixed dtypes: %s is %s but %s is %s (all tensors must share one dtype)", name,
                 tg_dtype_name(tg_dtype_of(t)), refname, tg_dtype_name(dt));
        return false;
    }
    return true;
}

/* A required tensor argument: NULL keeps an earlier failure's message (tg__check), else reports. */
static bool need(const char *fn, const char *name, const tg_tensor *t) { return tg__check(fn, name, t); }

static tg_tensor *slice_copy(const tg_tensor *src, int64_t offset_elems, int nd, const int64_t *d) {
    tg_tensor *t = tg_empty(tg_dtype_of(src), nd, d);
    if (!t) return NULL;
    size_t isz = tg_itemsize(tg_dtype_of(src));
    memcpy(tg_data(t), (const char *)tg_cdata(src) + (size_t)offset_elems * isz, (size_t)tg_numel(t) * isz);
    return t;
}

/* ---- forward ------------------------------------------------------------------------------------ */

static void save_versions(mlayer *m) {
    m->vx = tg_version(m->x);
    m->vh0 = tg_version(m->h0);
    m->vc0 = m->c0 ? tg_version(m->c0) : 0;
    for (int i = 0; i < NPARAM; i++) m->vp[i] = m->p[i] ? tg_version(m->p[i]) : 0;
    m->vy = tg_version(m->y);
}

#define CD(t, R) ((t) ? (const R *)tg_cdata(t) : NULL)
#define DD(t, R) ((t) ? (R *)tg_data(t) : NULL)

/* One layer of the LSTM with projections (c->P > 0): m->y [T,B,P] is allocated, pp holds the five
 * parameters. Allocates what the backward needs and runs lstm_proj_fwd. */
static bool proj_layer_forward(tg_manual_cache *c, mlayer *m, tg_tensor *const *pp) {
    const int64_t sh[3] = {c->T, c->B, c->H}, shg[3] = {c->T, c->B, 4 * c->H};
    m->gates = tg_empty(c->dtype, 3, shg);
    m->cs = tg_empty(c->dtype, 3, sh);
    m->aux = tg_empty(c->dtype, 3, sh);
    m->mh = tg_empty(c->dtype, 3, sh);
    if (!m->gates || !m->cs || !m->aux || !m->mh) return false;
    if (c->dtype == TG_F32)
        lstm_proj_fwd_f32(c->T, c->B, m->I, c->H, c->P, CD(m->x, float), CD(m->h0, float), CD(m->c0, float),
                          CD(pp[0], float), CD(pp[1], float), CD(pp[2], float), CD(pp[3], float), CD(pp[4], float),
                          DD(m->y, float), DD(m->gates, float), DD(m->cs, float), DD(m->aux, float),
                          DD(m->mh, float));
    else
        lstm_proj_fwd_f64(c->T, c->B, m->I, c->H, c->P, CD(m->x, double), CD(m->h0, double), CD(m->c0, double),
                          CD(pp[0], double), CD(pp[1], double), CD(pp[2], double), CD(pp[3], double),
                          CD(pp[4], double), DD(m->y, double), DD(m->gates, double), DD(m->cs, double),
                          DD(m->aux, double), DD(m->mh, double));
    save_versions(m);
    return true;
}

static bool layer_forward(tg_manual_cache *c, int l, tg_tensor *x, tg_tensor *h0, tg_tensor *c0,
                          const tg_manual_layer *p) {
    mlayer *m = &c->lay[l];
    const tg_manual_cell cell = c->cell;
    const int64_t T = c->T, B = c->B, H = c->H, G = tg_manual_cell_gates(cell), GH = G * H;
    const int64_t Rw = c->P ? c->P : H; /* the width of h */
    m->I = l ? Rw : c->I;
    m->x = tg_retain(x);
    m->h0 = h0; /* already a new reference */
    m->c0 = c0;
    tg_tensor *pp[NPARAM] = {p->weight_ih, p->weight_hh, p->bias_ih, p->bias_hh, c->P ? p->weight_hr : NULL};
    for (int i = 0; i < NPARAM; i++) m->p[i] = pp[i] ? tg_retain(pp[i]) : NULL;

    const int64_t sh[3] = {T, B, H}, shg[3] = {T, B, GH}, shy[3] = {T, B, Rw};
    m->y = tg_empty(c->dtype, 3, shy);
    if (!m->y) return false;
    if (c->P) return proj_layer_forward(c, m, pp);
    if (family(cell) != FAM_RNN) {
        m->gates = tg_empty(c->dtype, 3, shg);
        m->aux = tg_empty(c->dtype, 3, sh);
        if (!m->gates || !m->aux) return false;
    }
    if (cell == TG_MANUAL_LSTM) {
        m->cs = tg_empty(c->dtype, 3, sh);
        if (!m->cs) return false;
    }
    void *scratch = NULL;
    if (family(cell) == FAM_GRU) {
        scratch = tg_malloc((size_t)(B * GH) * tg_itemsize(c->dtype));
        if (!scratch) {
            tg_error(c->maker, "out of memory");
            return false;
        }
    }
    if (c->dtype == TG_F32)
        layer_fwd_f32(cell, T, B, m->I, H, CD(x, float), CD(h0, float), CD(c0, float), CD(pp[0], float),
                      CD(pp[1], float), CD(pp[2], float), CD(pp[3], float), DD(m->y, float),
                      DD(m->gates, float), DD(m->cs, float), DD(m->aux, float), scratch);
    else
        layer_fwd_f64(cell, T, B, m->I, H, CD(x, double), CD(h0, double), CD(c0, double),
                      CD(pp[0], double), CD(pp[1], double), CD(pp[2], double), CD(pp[3], double),
                      DD(m->y, double), DD(m->gates, double), DD(m->cs, double), DD(m->aux, double),
                      scratch);
    free(scratch);
    save_versions(m);
    return true;
}

/* kind K_STEP: x [B,I], h0/c0 [B,H]; returns h_next [B,H], *c_out = c_next.
 * kind K_SEQ: x [T,B,I], h0/c0 [B,H]; returns y [T,B,H], *h_out / *c_out the last states [B,H].
 * kind K_STACK: x [T,B,I], h0/c0 [L,B,H]; returns y [T,B,H], *h_out / *c_out = hn / cn [L,B,H]. */
static tg_tensor *forward_core(const char *fn, tg_manual_cell cell, int kind, int L, const tg_tensor *x,
                               const tg_tensor *h0, const tg_tensor *c0, const tg_manual_layer *params,
                               tg_tensor **h_out, tg_tensor **c_out, tg_manual_cache **cache_out) {
    if (h_out) *h_out = NULL;
    if (c_out) *c_out = NULL;
    if (cache_out) *cache_out = NULL;
    char a[96], b[96], ctx[160], nm[32];

    if (!cell_valid(cell)) {
        tg_error(fn, "unknown cell %d (TG_MANUAL_RNN_TANH, _RNN_RELU, _LSTM, _GRU or _GRU_RESET_BEFORE)", (int)cell);
        return NULL;
    }
    const bool lstm = cell == TG_MANUAL_LSTM;
    if (L < 1) {
        tg_error(fn, "layers = %d; need at least 1", L);
        return NULL;
    }
    /* projections (weight_hr on the layers): h is P wide, P from h0, H from c0 */
    const bool proj = params && params[0].weight_hr;
    if (proj && (!lstm || kind != K_STACK)) {
        tg_error(fn, "weight_hr (projections, proj_size) is for the LSTM stack functions only, not %s",
                 lstm ? "one step or one sequence" : tg_manual_cell_name(cell));
        return NULL;
    }
    if (!need(fn, "x", x)) return NULL;
    const int xnd = kind == K_STEP ? 2 : 3;
    if (tg_ndim(x) != xnd) {
        tg_error(fn, "x is %s; expected %s", shp(x, a, sizeof a), kind == K_STEP ? "[B,I]" : "[T,B,I]");
        return NULL;
    }
    const int64_t T = kind == K_STEP ? 1 : tg_dim(x, 0), B = tg_dim(x, -2), I = tg_dim(x, -1);
    if (T < 1 || B < 1 || I < 1) {
        tg_error(fn, "x %s is empty (T, B and I must be at least 1)", shp(x, a, sizeof a));
        return NULL;
    }
    const tg_dtype dt = tg_dtype_of(x);

    if (!need(fn, "h0", h0) || !expect_dtype(fn, "h0", h0, dt, "x")) return NULL;
    const int hnd = kind == K_STACK ? 3 : 2;
    if (tg_ndim(h0) != hnd) {
        tg_error(fn, "h0 is %s; expected %s", shp(h0, a, sizeof a), kind == K_STACK ? "[L,B,H]" : "[B,H]");
        return NULL;
    }
    int64_t H = tg_dim(h0, -1), P = 0;
    if (H < 1) {
        tg_error(fn, "h0 %s is empty (H must be at least 1)", shp(h0, a, sizeof a));
        return NULL;
    }
    int64_t hd[3];
    if (kind == K_STACK) {
        hd[0] = L, hd[1] = B, hd[2] = H;
        snprintf(ctx, sizeof ctx, "L = %d layers, B = %" PRId64 " from x %s", L, B, shp(x, a, sizeof a));
        if (!expect_shape(fn, "h0", h0, 3, hd, "[L,B,H]", ctx)) return NULL;
    } else {
        hd[0] = B, hd[1] = H;
        snprintf(ctx, sizeof ctx, "B = %" PRId64 " from x %s", B, shp(x, a, sizeof a));
        if (!expect_shape(fn, "h0", h0, 2, hd, "[B,H]", ctx)) return NULL;
    }
    if (lstm) {
        if (!need(fn, "c0", c0) || !expect_dtype(fn, "c0", c0, dt, "x")) return NULL;
        if (proj) {
            if (tg_ndim(c0) != 3 || tg_dim(c0, 0) != L || tg_dim(c0, 1) != B || tg_dim(c0, 2) <= H) {
                tg_error(fn, "c0 %s: expected [L,B,H] with L = %d, B = %" PRId64 " and H above P = %" PRId64
                         " (h0 %s, projections)", shp(c0, a, sizeof a), L, B, H, shp(h0, b, sizeof b));
                return NULL;
            }
            P = H;
            H = tg_dim(c0, 2);
        } else if (!tg_same_shape(c0, h0)) {
            tg_error(fn, "c0 %s does not match h0 %s", shp(c0, a, sizeof a), shp(h0, b, sizeof b));
            return NULL;
        }
    }
    if (!params) {
        if (!tg_error_pending()) tg_error(fn, "params is NULL");
        return NULL;
    }
    const int64_t G = tg_manual_cell_gates(cell), GH = G * H, Rw = P ? P : H; /* Rw: the width of h */
    for (int l = 0; l < L; l++) {
        const tg_manual_layer *p = &params[l];
        const tg_tensor *pp[NPARAM] = {p->weight_ih, p->weight_hh, p->bias_ih, p->bias_hh, p->weight_hr};
        const int64_t Il = l ? Rw : I;
        if (!proj && p->weight_hr) {
            tg_error(fn, "weight_hr_l%d is set but weight_hr_l0 is not (projections on every layer or none)", l);
            return NULL;
        }
        for (int i = 0; i < (proj ? NPARAM : 4); i++) {
            pname(nm, sizeof nm, i, l, kind == K_STACK);
            if (!need(fn, nm, pp[i]) || !expect_dtype(fn, nm, pp[i], dt, "x")) return NULL;
            if (proj)
                snprintf(ctx, sizeof ctx, "lstm, P = %" PRId64 " from h0 %s, H = %" PRId64 " from c0 %s, %s = %" PRId64,
                         P, shp(h0, a, sizeof a), H, shp(c0, b, sizeof b), l ? "input P" : "I", Il);
            else
                snprintf(ctx, sizeof ctx, "%s, H = %" PRId64 " from h0 %s, %s = %" PRId64,
                         tg_manual_cell_name(cell), H, shp(h0, a, sizeof a), l ? "input H" : "I", Il);
            const char *hw = proj ? "P" : "H";
            int64_t d[2] = {GH, i == 0 ? Il : Rw};
            char sym[40], gh[16] = "H";
            if (G > 1) snprintf(gh, sizeof gh, "%d*H", (int)G);
            if (i == 4) d[0] = P, d[1] = H, snprintf(sym, sizeof sym, "[P,H]");
            else if (i < 2) snprintf(sym, sizeof sym, "[%s,%s]", gh, i == 0 ? (l ? hw : "I") : hw);
            else snprintf(sym, sizeof sym, "[%s]", gh);
            if (!expect_shape(fn, nm, pp[i], i < 2 || i == 4 ? 2 : 1, d, sym, ctx)) return NULL;
        }
    }

    tg_manual_cache *c = tg_calloc(1, sizeof *c + (size_t)L * sizeof(mlayer));
    if (!c) {
        tg_error(fn, "out of memory");
        return NULL;
    }
    c->magic = CACHE_MAGIC;
    c->cell = cell;
    c->kind = kind;
    c->maker = fn;
    c->layers = L;
    c->T = T, c->B = B, c->I = I, c->H = H, c->P = P;
    c->dtype = dt;
    bool ok = true;
    for (int l = 0; l < L && ok; l++) {
        tg_tensor *hl = kind == K_STACK ? tg_view_at(h0, l) : tg_retain(mut(h0));
        tg_tensor *cl = !lstm ? NULL : kind == K_STACK ? tg_view_at(c0, l) : tg_retain(mut(c0));
        ok = hl && (!lstm || cl) && layer_forward(c, l, l ? c->lay[l - 1].y : mut(x), hl, cl, &params[l]);
        if (!ok && !c->lay[l].h0) { /* not yet owned by the cache */
            tg_release(hl);
            tg_release(cl);
        }
    }
    tg_tensor *ret = NULL, *ho = NULL, *co = NULL;
    const int64_t BH = B * H;
    if (ok) {
        const mlayer *top = &c->lay[L - 1];
        const int64_t bh[2] = {B, H};
        if (kind == K_STEP) {
            ret = tg_reshape_view(top->y, 2, bh);
            if (c_out && lstm) co = slice_copy(top->cs, 0, 2, bh);
        } else {
            ret = tg_retain(top->y);
            if (kind == K_SEQ) {
                if (h_out) ho = slice_copy(top->y, (T - 1) * BH, 2, bh);
                if (c_out && lstm) co = slice_copy(top->cs, (T - 1) * BH, 2, bh);
            } else {
                const int64_t lbh[3] = {L, B, H}, lbr[3] = {L, B, Rw}, BR = B * Rw;
                size_t isz = tg_itemsize(dt);
                if (h_out && (ho = tg_empty(dt, 3, lbr)))
                    for (int l = 0; l < L; l++)
                        memcpy((char *)tg_data(ho) + (size_t)(l * BR) * isz,
                               (const char *)tg_cdata(c->lay[l].y) + (size_t)((T - 1) * BR) * isz,
                               (size_t)BR * isz);
                if (c_out && lstm && (co = tg_empty(dt, 3, lbh)))
                    for (int l = 0; l < L; l++)
                        memcpy((char *)tg_data(co) + (size_t)(l * BH) * isz,
                               (const char *)tg_cdata(c->lay[l].cs) + (size_t)((T - 1) * BH) * isz,
                               (size_t)BH * isz);
            }
        }
        ok = ret && (!h_out || kind == K_STEP || ho) && (!c_out || !lstm || co);
    }
    if (!ok) {
        tg_release(ret);
        tg_release(ho);
        tg_release(co);
        tg_manual_cache_free(c);
        return NULL;
    }
    if (h_out) *h_out = ho;
    if (c_out) *c_out = co;
    if (cache_out) *cache_out = c;
    else tg_manual_cache_free(c);
    return ret;
}

/* ---- backward ----------------------------------------------------------------------------------- */

/* An upstream gradient: NULL means zero, unless an error is pending (then it is a failed result). */
static bool upstream(const char *fn, const char *name, const tg_tensor *t, tg_dtype dt, int nd,
                     const int64_t *d, const char *sym, const char *ctx, bool *fail) {
    if (!t) {
        if (tg_error_pending()) *fail = true;
        return !*fail;
    }
    if (!need(fn, name, t) || !expect_dtype(fn, name, t, dt, "the cache") ||
        !expect_shape(fn, name, t, nd, d, sym, ctx))
        *fail = true;
    return !*fail;
}

static bool check_version(const char *fn, const char *what, const tg_tensor *t, uint64_t saved) {
    if (!t) return true;
    uint64_t v = tg_version(t);
    if (v != saved) {
        tg_error(fn, "%s was modified in place after the forward pass (version %" PRIu64
                 ", saved at %" PRIu64 "); the cached values are stale", what, v, saved);
        return false;
    }
    return true;
}

/* One layer of the LSTM with projections backward (lstm_proj_bwd); arguments as layer_bwd's, gw the
 * five gradients (all NULL or all set). */
static void proj_layer_backward(const tg_manual_cache *c, const mlayer *m, const void *dy, const void *dhT,
                                const void *dcT, tg_tensor *const *gw, void *dx, void *dh0, void *dc0, void *work) {
    if (c->dtype == TG_F32)
        lstm_proj_bwd_f32(c->T, c->B, m->I, c->H, c->P, CD(m->x, float), CD(m->h0, float), CD(m->c0, float),
                          CD(m->p[0], float), CD(m->p[1], float), CD(m->p[4], float), CD(m->y, float),
                          CD(m->gates, float), CD(m->cs, float), CD(m->aux, float), CD(m->mh, float), dy, dhT, dcT,
                          DD(gw[0], float), DD(gw[1], float), DD(gw[2], float), DD(gw[3], float), DD(gw[4], float),
                          dx, dh0, dc0, work);
    else
        lstm_proj_bwd_f64(c->T, c->B, m->I, c->H, c->P, CD(m->x, double), CD(m->h0, double), CD(m->c0, double),
                          CD(m->p[0], double), CD(m->p[1], double), CD(m->p[4], double), CD(m->y, double),
                          CD(m->gates, double), CD(m->cs, double), CD(m->aux, double), CD(m->mh, double), dy, dhT,
                          dcT, DD(gw[0], double), DD(gw[1], double), DD(gw[2], double), DD(gw[3], double),
                          DD(gw[4], double), dx, dh0, dc0, work);
}

/* want_family < 0: any cell. */
static int backward_core(const char *fn, int want_family, int want_kind, const char *want_maker,
                         const tg_manual_cache *c, const tg_tensor *dy, const tg_tensor *dh,
                         const tg_tensor *dcell, tg_manual_layer *grads, tg_tensor **dx_out,
                         tg_tensor **dh0_out, tg_tensor **dc0_out) {
    if (dx_out) *dx_out = NULL;
    if (dh0_out) *dh0_out = NULL;
    if (dc0_out) *dc0_out = NULL;
    char ctx[160], nm[48];
    if (!c) {
        if (!tg_error_pending()) tg_error(fn, "cache is NULL");
        return -1;
    }
    if (c->magic != CACHE_MAGIC) {
        tg_error(fn, "cache was freed (or is not a tg_manual_cache)");
        return -1;
    }
    if (c->kind != want_kind || (want_family >= 0 && family(c->cell) != want_family)) {
        tg_error(fn, "cache was made by %s (%s); this function needs one made by %s", c->maker,
                 tg_manual_cell_name(c->cell), want_maker);
        return -1;
    }
    const int L = c->layers;
    const int64_t T = c->T, B = c->B, I = c->I, H = c->H, BH = B * H;
    const int64_t Rw = c->P ? c->P : H, BR = B * Rw; /* the width of h (P with projections) */
    const tg_dtype dt = c->dtype;
    const bool lstm = c->cell == TG_MANUAL_LSTM;
    const bool stacked = c->kind == K_STACK;

    for (int l = 0; l < L; l++) {
        const mlayer *m = &c->lay[l];
        bool ok = true;
        if (l == 0) ok = check_version(fn, "x", m->x, m->vx);
        snprintf(nm, sizeof nm, stacked ? "h0 (layer %d)" : "h0", l);
        ok = ok && check_version(fn, nm, m->h0, m->vh0);
        snprintf(nm, sizeof nm, stacked ? "c0 (layer %d)" : "c0", l);
        ok = ok && check_version(fn, nm, m->c0, m->vc0);
        for (int i = 0; ok && i < NPARAM; i++) {
            pname(nm, sizeof nm, i, l, stacked);
            ok = check_version(fn, nm, m->p[i], m->vp[i]);
        }
        if (ok) {
            snprintf(nm, sizeof nm, l == L - 1 ? "the output y" : "layer %d's output", l);
            ok = check_version(fn, nm, m->y, m->vy);
        }
        if (!ok) return -1;
    }

    /* upstream gradients */
    bool fail = false;
    const int64_t tbr[3] = {T, B, Rw}, lbr[3] = {L, B, Rw}, lbh[3] = {L, B, H}, bh[2] = {B, H};
    if (c->P)
        snprintf(ctx, sizeof ctx, "T = %" PRId64 ", B = %" PRId64 ", P = %" PRId64 ", H = %" PRId64 " from the forward",
                 T, B, c->P, H);
    else
        snprintf(ctx, sizeof ctx, "T = %" PRId64 ", B = %" PRId64 ", H = %" PRId64 " from the forward", T, B, H);
    const char *hname = c->kind == K_STEP ? "dh_next" : stacked ? "dhn" : "dh_last";
    const char *cname = c->kind == K_STEP ? "dc_next" : stacked ? "dcn" : "dc_last";
    if (c->kind != K_STEP) upstream(fn, "dy", dy, dt, 3, tbr, c->P ? "[T,B,P]" : "[T,B,H]", ctx, &fail);
    else dy = NULL;
    if (stacked) upstream(fn, hname, dh, dt, 3, lbr, c->P ? "[L,B,P]" : "[L,B,H]", ctx, &fail);
    else upstream(fn, hname, dh, dt, 2, bh, "[B,H]", ctx, &fail);
    if (lstm) {
        if (stacked) upstream(fn, cname, dcell, dt, 3, lbh, "[L,B,H]", ctx, &fail);
        else upstream(fn, cname, dcell, dt, 2, bh, "[B,H]", ctx, &fail);
    } else {
        dcell = NULL;
    }
    if (fail) return -1;

    /* parameter gradients: check the given ones, then allocate the missing ones */
    if (grads) {
        for (int l = 0; l < L; l++) {
            tg_tensor **g[NPARAM];
            layer_slots(&grads[l], g);
            for (int i = 0; i < NPARAM; i++) {
                const tg_tensor *p = c->lay[l].p[i];
                if (!*g[i] || !p) continue; /* (no weight_hr without projections) */
                pname(nm, sizeof nm, i, l, stacked);
                char gn[64];
                snprintf(gn, sizeof gn, "grads %s", nm);
                if (!need(fn, gn, *g[i]) || !expect_dtype(fn, gn, *g[i], dt, "the cache") ||
                    !expect_shape(fn, gn, *g[i], tg_ndim(p), tg_shape(p), "the parameter's shape", nm))
                    return -1;
            }
        }
    }
    bool *made = grads ? tg_calloc((size_t)L * NPARAM, sizeof(bool)) : NULL;
    int rc = -1;
    tg_tensor *dx = NULL, *dh0 = NULL, *dc0 = NULL;
    void *work = NULL, *bufa = NULL, *bufb = NULL;
    if (grads && !made) {
        tg_error(fn, "out of memory");
        return -1;
    }
    if (grads) {
        for (int l = 0; l < L; l++) {
            tg_tensor **g[NPARAM];
            layer_slots(&grads[l], g);
            for (int i = 0; i < NPARAM; i++) {
                const tg_tensor *p = c->lay[l].p[i];
                if (*g[i] || !p) continue;
                if (!(*g[i] = tg_zeros(dt, tg_ndim(p), tg_shape(p)))) goto done;
                made[l * NPARAM + i] = true;
            }
        }
    }
    /* outputs */
    if (dx_out) {
        const int64_t xs3[3] = {T, B, I}, xs2[2] = {B, I};
        if (!(dx = c->kind == K_STEP ? tg_empty(dt, 2, xs2) : tg_empty(dt, 3, xs3))) goto done;
    }
    if (dh0_out && !(dh0 = stacked ? tg_empty(dt, 3, lbr) : tg_empty(dt, 2, bh))) goto done;
    if (dc0_out && lstm && !(dc0 = stacked ? tg_empty(dt, 3, lbh) : tg_empty(dt, 2, bh))) goto done;

    {
        const int64_t G = tg_manual_cell_gates(c->cell), GH = G * H, TB = T * B;
        const size_t isz = tg_itemsize(dt);
        const size_t wn = c->P ? (size_t)(TB * (GH + c->P) + 2 * BH + 2 * BR) /* lstm_proj_bwd */
                               : (size_t)(TB * GH) * (family(c->cell) == FAM_GRU ? 2 : 1) + (size_t)(3 * BH);
        work = tg_malloc(wn * isz);
        if (L > 1) {
            bufa = tg_malloc((size_t)(TB * Rw) * isz);
            bufb = tg_malloc((size_t)(TB * Rw) * isz);
        }
        if (!work || (L > 1 && (!bufa || !bufb))) {
            tg_error(fn, "out of memory");
            goto done;
        }
        const void *dyl = dy ? tg_cdata(dy) : NULL;
        for (int l = L - 1; l >= 0; l--) {
            const mlayer *m = &c->lay[l];
            void *dxl = l ? bufa : (dx ? tg_data(dx) : NULL);
            const char *dhT = dh ? (const char *)tg_cdata(dh) + (size_t)(l * BR) * isz : NULL;
            const char *dcT = dcell ? (const char *)tg_cdata(dcell) + (size_t)(l * BH) * isz : NULL;
            char *dh0l = dh0 ? (char *)tg_data(dh0) + (size_t)(l * BR) * isz : NULL;
            char *dc0l = dc0 ? (char *)tg_data(dc0) + (size_t)(l * BH) * isz : NULL;
            tg_tensor *gw[NPARAM] = {NULL, NULL, NULL, NULL, NULL};
            if (grads) {
                gw[0] = grads[l].weight_ih, gw[1] = grads[l].weight_hh;
                gw[2] = grads[l].bias_ih, gw[3] = grads[l].bias_hh;
                gw[4] = c->P ? grads[l].weight_hr : NULL;
            }
            if (c->P)
                proj_layer_backward(c, m, dyl, dhT, dcT, gw, dxl, dh0l, dc0l, work);
            else if (dt == TG_F32)
                layer_bwd_f32(c->cell, T, B, m->I, H, CD(m->x, float), CD(m->h0, float), CD(m->c0, float),
                              CD(m->p[0], float), CD(m->p[1], float), CD(m->y, float), CD(m->gates, float),
                              CD(m->cs, float), CD(m->aux, float), dyl, (const float *)dhT,
                              (const float *)dcT, DD(gw[0], float), DD(gw[1], float), DD(gw[2], float),
                              DD(gw[3], float), dxl, (float *)dh0l, (float *)dc0l, work);
            else
                layer_bwd_f64(c->cell, T, B, m->I, H, CD(m->x, double), CD(m->h0, double),
                              CD(m->c0, double), CD(m->p[0], double), CD(m->p[1], double), CD(m->y, double),
                              CD(m->gates, double), CD(m->cs, double), CD(m->aux, double), dyl,
                              (const double *)dhT, (const double *)dcT, DD(gw[0], double),
                              DD(gw[1], double), DD(gw[2], double), DD(gw[3], double), dxl,
                              (double *)dh0l, (double *)dc0l, work);
            for (int i = 0; i < NPARAM; i++)
                if (gw[i]) tg_bump_version(gw[i]);
            if (l) { /* this layer's dx is the next (lower) layer's dy */
                dyl = bufa;
                void *t = bufa;
                bufa = bufb;
                bufb = t;
            }
        }
    }
    rc = 0;
done:
    free(work);
    free(bufa);
    free(bufb);
    if (rc != 0) {
        tg_release(dx);
        tg_release(dh0);
        tg_release(dc0);
        if (grads)
            for (int l = 0; l < L; l++) {
                tg_tensor **g[NPARAM];
                layer_slots(&grads[l], g);
                for (int i = 0; i < NPARAM; i++)
                    if (made[l * NPARAM + i]) {
                        tg_release(*g[i]);
                        *g[i] = NULL;
                    }
            }
    } else {
        if (dx_out) *dx_out = dx;
        if (dh0_out) *dh0_out = dh0;
        if (dc0_out) *dc0_out = dc0;
    }
    free(made);
    return rc;
}

/* ---- public entry points ------------------------------------------------------------------------ */

static tg_manual_cell rnn_cell(tg_manual_act act) {
    return act == TG_MANUAL_RELU ? TG_MANUAL_RNN_RELU : act == TG_MANUAL_TANH ? TG_MANUAL_RNN_TANH
                                                                               : (tg_manual_cell)-1;
}

#define BAD_ACT(fn, act)                                                                         \
    do {                                                                                         \
        if ((act) != TG_MANUAL_TANH && (act) != TG_MANUAL_RELU) {                                \
            tg_error(fn, "unknown activation %d (TG_MANUAL_TANH or TG_MANUAL_RELU)", (int)(act)); \
            return NULL;                                                                         \
        }                                                                                        \
    } while (0)

tg_tensor *tg_manual_rnn_cell_forward(tg_manual_act act, const tg_tensor *x, const tg_tensor *h,
                                      const tg_manual_layer *p, tg_manual_cache **cache) {
    if (cache) *cache = NULL;
    BAD_ACT("tg_manual_rnn_cell_forward", act);
    return forward_core("tg_manual_rnn_cell_forward", rnn_cell(act), K_STEP, 1, x, h, NULL, p, NULL, NULL,
                        cache);
}
int tg_manual_rnn_cell_backward(const tg_manual_cache *cache, const tg_tensor *dh_next,
                                tg_manual_layer *grads, tg_tensor **dx, tg_tensor **dh_prev) {
    return backward_core("tg_manual_rnn_cell_backward", FAM_RNN, K_STEP, "tg_manual_rnn_cell_forward", cache,
                         NULL, dh_next, NULL, grads, dx, dh_prev, NULL);
}
tg_tensor *tg_manual_rnn_forward(tg_manual_act act, const tg_tensor *x, const tg_tensor *h0,
                                 const tg_manual_layer *p, tg_tensor **h_last, tg_manual_cache **cache) {
    if (cache) *cache = NULL;
    if (h_last) *h_last = NULL;
    BAD_ACT("tg_manual_rnn_forward", act);
    return forward_core("tg_manual_rnn_forward", rnn_cell(act), K_SEQ, 1, x, h0, NULL, p, h_last, NULL, cache);
}
int tg_manual_rnn_backward(const tg_manual_cache *cache, const tg_tensor *dy, const tg_tensor *dh_last,
                           tg_manual_layer *grads, tg_tensor **dx, tg_tensor **dh0) {
    return backward_core("tg_manual_rnn_backward", FAM_RNN, K_SEQ, "tg_manual_rnn_forward", cache, dy, dh_last,
                         NULL, grads, dx, dh0, NULL);
}
tg_tensor *tg_manual_rnn_stack_forward(tg_manual_act act, int layers, const tg_tensor *x,
                                       const tg_tensor *h0, const tg_manual_layer *params, tg_tensor **hn,
                                       tg_manual_cache **cache) {
    if (cache) *cache = NULL;
    if (hn) *hn = NULL;
    BAD_ACT("tg_manual_rnn_stack_forward", act);
    return forward_core("tg_manual_rnn_stack_forward", rnn_cell(act), K_STACK, layers, x, h0, NULL, params, hn,
                        NULL, cache);
}
int tg_manual_rnn_stack_backward(const tg_manual_cache *cache, const tg_tensor *dy, const tg_tensor *dhn,
                                 tg_manual_layer *grads, tg_tensor **dx, tg_tensor **dh0) {
    return backward_core("tg_manual_rnn_stack_backward", FAM_RNN, K_STACK, "tg_manual_rnn_stack_forward",
                         cache, dy, dhn, NULL, grads, dx, dh0, NULL);
}

tg_tensor *tg_manual_lstm_cell_forward(const tg_tensor *x, const tg_tensor *h, const tg_tensor *c,
                                       const tg_manual_layer *p, tg_tensor **c_next, tg_manual_cache **cache) {
    return forward_core("tg_manual_lstm_cell_forward", TG_MANUAL_LSTM, K_STEP, 1, x, h, c, p, NULL, c_next,
                        cache);
}
int tg_manual_lstm_cell_backward(const tg_manual_cache *cache, const tg_tensor *dh_next,
                                 const tg_tensor *dc_next, tg_manual_layer *grads, tg_tensor **dx,
                                 tg_tensor **dh_prev, tg_tensor **dc_prev) {
    return backward_core("tg_manual_lstm_cell_backward", FAM_LSTM, K_STEP, "tg_manual_lstm_cell_forward",
                         cache, NULL, dh_next, dc_next, grads, dx, dh_prev, dc_prev);
}
tg_tensor *tg_manual_lstm_forward(const tg_tensor *x, const tg_tensor *h0, const tg_tensor *c0,
                                  const tg_manual_layer *p, tg_tensor **h_last, tg_tensor **c_last,
                                  tg_manual_cache **cache) {
    return forward_core("tg_manual_lstm_forward", TG_MANUAL_LSTM, K_SEQ, 1, x, h0, c0, p, h_last, c_last, cache);
}
int tg_manual_lstm_backward(const tg_manual_cache *cache, const tg_tensor *dy, const tg_tensor *dh_last,
                            const tg_tensor *dc_last, tg_manual_layer *grads, tg_tensor **dx,
                            tg_tensor **dh0, tg_tensor **dc0) {
    return backward_core("tg_manual_lstm_backward", FAM_LSTM, K_SEQ, "tg_manual_lstm_forward", cache, dy,
                         dh_last, dc_last, grads, dx, dh0, dc0);
}
tg_tensor *tg_manual_lstm_stack_forward(int layers, const tg_tensor *x, const tg_tensor *h0,
                                        const tg_tensor *c0, const tg_manual_layer *params, tg_tensor **hn,
                                        tg_tensor **cn, tg_manual_cache **cache) {
    return forward_core("tg_manual_lstm_stack_forward", TG_MANUAL_LSTM, K_STACK, layers, x, h0, c0, params,
                        hn, cn, cache);
}
int tg_manual_lstm_stack_backward(const tg_manual_cache *cache, const tg_tensor *dy, const tg_tensor *dhn,
                                  const tg_tensor *dcn, tg_manual_layer *grads, tg_tensor **dx,
                                  tg_tensor **dh0, tg_tensor **dc0) {
    return backward_core("tg_manual_lstm_stack_backward", FAM_LSTM, K_STACK, "tg_manual_lstm_stack_forward",
                         cache, dy, dhn, dcn, grads, dx, dh0, dc0);
}

tg_tensor *tg_manual_gru_cell_forward(const tg_tensor *x, const tg_tensor *h, const tg_manual_layer *p,
                                      tg_manual_cache **cache) {
    return forward_core("tg_manual_gru_cell_forward", TG_MANUAL_GRU, K_STEP, 1, x, h, NULL, p, NULL, NULL,
                        cache);
}
int tg_manual_gru_cell_backward(const tg_manual_cache *cache, const tg_tensor *dh_next,
                                tg_manual_layer *grads, tg_tensor **dx, tg_tensor **dh_prev) {
    return backward_core("tg_manual_gru_cell_backward", FAM_GRU, K_STEP, "tg_manual_gru_cell_forward", cache,
                         NULL, dh_next, NULL, grads, dx, dh_prev, NULL);
}
tg_tensor *tg_manual_gru_forward(const tg_tensor *x, const tg_tensor *h0, const tg_manual_layer *p,
                                 tg_tensor **h_last, tg_manual_cache **cache) {
    return forward_core("tg_manual_gru_forward", TG_MANUAL_GRU, K_SEQ, 1, x, h0, NULL, p, h_last, NULL, cache);
}
int tg_manual_gru_backward(const tg_manual_cache *cache, const tg_tensor *dy, const tg_tensor *dh_last,
                           tg_manual_layer *grads, tg_tensor **dx, tg_tensor **dh0) {
    return backward_core("tg_manual_gru_backward", FAM_GRU, K_SEQ, "tg_manual_gru_forward", cache, dy, dh_last,
                         NULL, grads, dx, dh0, NULL);
}
tg_tensor *tg_manual_gru_stack_forward(int layers, const tg_tensor *x, const tg_tensor *h0,
                                       const tg_manual_layer *params, tg_tensor **hn, tg_manual_cache **cache) {
    return forward_core("tg_manual_gru_stack_forward", TG_MANUAL_GRU, K_STACK, layers, x, h0, NULL, params,
                        hn, NULL, cache);
}
int tg_manual_gru_stack_backward(const tg_manual_cache *cache, const tg_tensor *dy, const tg_tensor *dhn,
                                 tg_manual_layer *grads, tg_tensor **dx, tg_tensor **dh0) {
    return backward_core("tg_manual_gru_stack_backward", FAM_GRU, K_STACK, "tg_manual_gru_stack_forward",
                         cache, dy, dhn, NULL, grads, dx, dh0, NULL);
}

tg_tensor *tg_manual_stack_forward(tg_manual_cell cell, int layers, const tg_tensor *x, const tg_tensor *h0,
                                   const tg_tensor *c0, const tg_manual_layer *params, tg_tensor **hn,
                                   tg_tensor **cn, tg_manual_cache **cache) {
    if (cn) *cn = NULL;
    return forward_core("tg_manual_stack_forward", cell, K_STACK, layers, x, h0,
                        cell == TG_MANUAL_LSTM ? c0 : NULL, params, hn, cell == TG_MANUAL_LSTM ? cn : NULL,
                        cache);
}
int tg_manual_stack_backward(const tg_manual_cache *cache, const tg_tensor *dy, const tg_tensor *dhn,
                             const tg_tensor *dcn, tg_manual_layer *grads, tg_tensor **dx, tg_tensor **dh0,
                             tg_tensor **dc0) {
    return backward_core("tg_manual_stack_backward", -1, K_STACK, "a *_stack_forward function", cache, dy, dhn,
                         dcn, grads, dx, dh0, dc0);
}
