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

/* What the forward's arguments fix (checked by the steps below, in this order). */
typedef struct fwd_dims {
    tg_manual_cell cell;
    int kind, L;           /* K_STEP, K_SEQ or K_STACK; layers */
    int64_t T, B, I, H, P; /* P > 0: LSTM projections, h is P wide */
    tg_dtype dt;
    bool lstm, proj;
} fwd_dims;

/* Step 1: the cell, the layer count, projections only on an LSTM stack, and x: [B,I] (K_STEP) or
 * [T,B,I], none of them empty. Sets cell, kind, L, lstm, proj, T, B, I, dt. */
static bool check_cell_and_x(const char *fn, tg_manual_cell cell, int kind, int L, const tg_tensor *x,
                             const tg_manual_layer *params, fwd_dims *d) {
    char a[96];
    if (!cell_valid(cell)) {
        tg_error(fn, "unknown cell %d (TG_MANUAL_RNN_TANH, _RNN_RELU, _LSTM, _GRU or _GRU_RESET_BEFORE)", (int)cell);
        return false;
    }
    d->cell = cell, d->kind = kind, d->L = L;
    d->lstm = cell == TG_MANUAL_LSTM;
    if (L < 1) {
        tg_error(fn, "layers = %d; need at least 1", L);
        return false;
    }
    /* projections (weight_hr on the layers): h is P wide, P from h0, H from c0 */
    d->proj = params && params[0].weight_hr;
    if (d->proj && (!d->lstm || kind != K_STACK)) {
        tg_error(fn, "weight_hr (projections, proj_size) is for the LSTM stack functions only, not %s",
                 d->lstm ? "one step or one sequence" : tg_manual_cell_name(cell));
        return false;
    }
    if (!need(fn, "x", x)) return false;
    const int xnd = kind == K_STEP ? 2 : 3;
    if (tg_ndim(x) != xnd) {
        tg_error(fn, "x is %s; expected %s", shp(x, a, sizeof a), kind == K_STEP ? "[B,I]" : "[T,B,I]");
        return false;
    }
    d->T = kind == K_STEP ? 1 : tg_dim(x, 0), d->B = tg_dim(x, -2), d->I = tg_dim(x, -1);
    if (d->T < 1 || d->B < 1 || d->I < 1) {
        tg_error(fn, "x %s is empty (T, B and I must be at least 1)", shp(x, a, sizeof a));
        return false;
    }
    d->dt = tg_dtype_of(x);
    return true;
}

/* Step 2: h0 [B,H] ([L,B,H] for K_STACK) in x's dtype and, for the LSTM, c0 of h0's shape; with
 * projections h0 is [L,B,P] and c0 [L,B,H] with H > P. Sets H and P. */
static bool check_states(const char *fn, const tg_tensor *x, const tg_tensor *h0, const tg_tensor *c0, fwd_dims *d) {
    char a[96], b[96], ctx[160];
    const int L = d->L;
    const int64_t B = d->B;
    if (!need(fn, "h0", h0) || !expect_dtype(fn, "h0", h0, d->dt, "x")) return false;
    const int hnd = d->kind == K_STACK ? 3 : 2;
    if (tg_ndim(h0) != hnd) {
        tg_error(fn, "h0 is %s; expected %s", shp(h0, a, sizeof a), d->kind == K_STACK ? "[L,B,H]" : "[B,H]");
        return false;
    }
    d->H = tg_dim(h0, -1), d->P = 0;
    if (d->H < 1) {
        tg_error(fn, "h0 %s is empty (H must be at least 1)", shp(h0, a, sizeof a));
        return false;
    }
    if (d->kind == K_STACK) {
        const int64_t hd[3] = {L, B, d->H};
        snprintf(ctx, sizeof ctx, "L = %d layers, B = %" PRId64 " from x %s", L, B, shp(x, a, sizeof a));
        if (!expect_shape(fn, "h0", h0, 3, hd, "[L,B,H]", ctx)) return false;
    } else {
        const int64_t hd[2] = {B, d->H};
        snprintf(ctx, sizeof ctx, "B = %" PRId64 " from x %s", B, shp(x, a, sizeof a));
        if (!expect_shape(fn, "h0", h0, 2, hd, "[B,H]", ctx)) return false;
    }
    if (!d->lstm) return true;
    if (!need(fn, "c0", c0) || !expect_dtype(fn, "c0", c0, d->dt, "x")) return false;
    if (d->proj) {
        if (tg_ndim(c0) != 3 || tg_dim(c0, 0) != L || tg_dim(c0, 1) != B || tg_dim(c0, 2) <= d->H) {
            tg_error(fn, "c0 %s: expected [L,B,H] with L = %d, B = %" PRId64 " and H above P = %" PRId64
                     " (h0 %s, projections)", shp(c0, a, sizeof a), L, B, d->H, shp(h0, b, sizeof b));
            return false;
        }
        d->P = d->H;
        d->H = tg_dim(c0, 2);
    } else if (!tg_same_shape(c0, h0)) {
        tg_error(fn, "c0 %s does not match h0 %s", shp(c0, a, sizeof a), shp(h0, b, sizeof b));
        return false;
    }
    return true;
}

/* Step 3, one tensor: parameter i (PNAME order) of layer l is there, in x's dtype, and of its shape:
 * weight_ih [G*H, I] (layer 0) or [G*H, H or P], weight_hh [G*H, H or P], the biases [G*H],
 * weight_hr [P,H]. */
static bool check_param(const char *fn, const fwd_dims *d, int l, int i, const tg_tensor *t, const tg_tensor *h0,
                        const tg_tensor *c0) {
    char a[96], b[96], ctx[160], nm[32], sym[40], gh[16] = "H";
    const int64_t G = tg_manual_cell_gates(d->cell), GH = G * d->H, Rw = d->P ? d->P : d->H; /* Rw: h's width */
    const int64_t Il = l ? Rw : d->I;
    pname(nm, sizeof nm, i, l, d->kind == K_STACK);
    if (!need(fn, nm, t) || !expect_dtype(fn, nm, t, d->dt, "x")) return false;
    if (d->proj)
        snprintf(ctx, sizeof ctx, "lstm, P = %" PRId64 " from h0 %s, H = %" PRId64 " from c0 %s, %s = %" PRId64,
                 d->P, shp(h0, a, sizeof a), d->H, shp(c0, b, sizeof b), l ? "input P" : "I", Il);
    else
        snprintf(ctx, sizeof ctx, "%s, H = %" PRId64 " from h0 %s, %s = %" PRId64,
                 tg_manual_cell_name(d->cell), d->H, shp(h0, a, sizeof a), l ? "input H" : "I", Il);
    const char *hw = d->proj ? "P" : "H";
    int64_t dims[2] = {GH, i == 0 ? Il : Rw};
    if (G > 1) snprintf(gh, sizeof gh, "%d*H", (int)G);
    if (i == 4) dims[0] = d->P, dims[1] = d->H, snprintf(sym, sizeof sym, "[P,H]");
    else if (i < 2) snprintf(sym, sizeof sym, "[%s,%s]", gh, i == 0 ? (l ? hw : "I") : hw);
    else snprintf(sym, sizeof sym, "[%s]", gh);
    return expect_shape(fn, nm, t, i < 2 || i == 4 ? 2 : 1, dims, sym, ctx);
}

/* Step 3: every layer's parameters (weight_hr on every layer or none). */
static bool check_params(const char *fn, const fwd_dims *d, const tg_manual_layer *params, const tg_tensor *h0,
                         const tg_tensor *c0) {
    if (!params) {
        if (!tg_error_pending()) tg_error(fn, "params is NULL");
        return false;
    }
    for (int l = 0; l < d->L; l++) {
        const tg_manual_layer *p = &params[l];
        const tg_tensor *pp[NPARAM] = {p->weight_ih, p->weight_hh, p->bias_ih, p->bias_hh, p->weight_hr};
        if (!d->proj && p->weight_hr) {
            tg_error(fn, "weight_hr_l%d is set but weight_hr_l0 is not (projections on every layer or none)", l);
            return false;
        }
        for (int i = 0; i < (d->proj ? NPARAM : 4); i++)
            if (!check_param(fn, d, l, i, pp[i], h0, c0)) return false;
    }
    return true;
}

/* Step 4: an empty cache of d->L layer records. */
static tg_manual_cache *cache_new(const char *fn, const fwd_dims *d) {
    tg_manual_cache *c = tg_calloc(1, sizeof *c + (size_t)d->L * sizeof(mlayer));
    if (!c) {
        tg_error(fn, "out of memory");
        return NULL;
    }
    c->magic = CACHE_MAGIC;
    c->cell = d->cell;
    c->kind = d->kind;
    c->maker = fn;
    c->layers = d->L;
    c->T = d->T, c->B = d->B, c->I = d->I, c->H = d->H, c->P = d->P;
    c->dtype = d->dt;
    return c;
}

/* Step 5: runs the layers bottom-up, layer k > 0 on layer k-1's y, each on its own h0/c0 (a view of
 * layer k's slice for K_STACK), which the cache then owns. */
static bool run_layers(tg_manual_cache *c, const tg_tensor *x, const tg_tensor *h0, const tg_tensor *c0,
                       const tg_manual_layer *params) {
    const bool lstm = c->cell == TG_MANUAL_LSTM, stacked = c->kind == K_STACK;
    for (int l = 0; l < c->layers; l++) {
        tg_tensor *hl = stacked ? tg_view_at(h0, l) : tg_retain(mut(h0));
        tg_tensor *cl = !lstm ? NULL : stacked ? tg_view_at(c0, l) : tg_retain(mut(c0));
        bool ok = hl && (!lstm || cl) && layer_forward(c, l, l ? c->lay[l - 1].y : mut(x), hl, cl, &params[l]);
        if (!ok) {
            if (!c->lay[l].h0) { /* not yet owned by the cache */
                tg_release(hl);
                tg_release(cl);
            }
            return false;
        }
    }
    return true;
}

/* [L,B,W]: the last time step of every layer's y (or, cell_state, of its c), W wide. */
static tg_tensor *last_steps(const tg_manual_cache *c, bool cell_state, int64_t W) {
    const int64_t shape[3] = {c->layers, c->B, W}, BW = c->B * W;
    const size_t isz = tg_itemsize(c->dtype);
    tg_tensor *out = tg_empty(c->dtype, 3, shape);
    if (!out) return NULL;
    for (int l = 0; l < c->layers; l++)
        memcpy((char *)tg_data(out) + (size_t)(l * BW) * isz,
               (const char *)tg_cdata(cell_state ? c->lay[l].cs : c->lay[l].y) + (size_t)((c->T - 1) * BW) * isz,
               (size_t)BW * isz);
    return out;
}

/* Step 6: the results: K_STEP h_next [B,H] (a view of y) and c_next; K_SEQ y and the last h and c
 * [B,H]; K_STACK y and hn / cn [L,B,·]. The last states only where asked (want_h, want_c). On a
 * failure everything made here is released and false returned. */
static bool collect_outputs(const tg_manual_cache *c, bool want_h, bool want_c, tg_tensor **ret, tg_tensor **ho,
                            tg_tensor **co) {
    const mlayer *top = &c->lay[c->layers - 1];
    const bool lstm = c->cell == TG_MANUAL_LSTM;
    const int64_t BH = c->B * c->H, bh[2] = {c->B, c->H};
    *ret = *ho = *co = NULL;
    if (c->kind == K_STEP) {
        *ret = tg_reshape_view(top->y, 2, bh);
        if (want_c && lstm) *co = slice_copy(top->cs, 0, 2, bh);
    } else if (c->kind == K_SEQ) {
        *ret = tg_retain(top->y);
        if (want_h) *ho = slice_copy(top->y, (c->T - 1) * BH, 2, bh);
        if (want_c && lstm) *co = slice_copy(top->cs, (c->T - 1) * BH, 2, bh);
    } else {
        *ret = tg_retain(top->y);
        if (want_h) *ho = last_steps(c, false, c->P ? c->P : c->H);
        if (want_c && lstm) *co = last_steps(c, true, c->H);
    }
    if (*ret && (!want_h || c->kind == K_STEP || *ho) && (!want_c || !lstm || *co)) return true;
    tg_release(*ret);
    tg_release(*ho);
    tg_release(*co);
    *ret = *ho = *co = NULL;
    return false;
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
    fwd_dims d = {0};
    if (!check_cell_and_x(fn, cell, kind, L, x, params, &d) || !check_states(fn, x, h0, c0, &d) ||
        !check_params(fn, &d, params, h0, c0))
        return NULL;
    tg_manual_cache *c = cache_new(fn, &d);
    if (!c) return NULL;
    tg_tensor *ret, *ho, *co;
    if (!run_layers(c, x, h0, c0, params) || !collect_outputs(c, h_out != NULL, c_out != NULL, &ret, &ho, &co)) {
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

/* Step 1: a live cache made by the forward this backward belongs to (want_family < 0: any cell). */
static bool check_cache(const char *fn, int want_family, int want_kind, const char *want_maker,
                        const tg_manual_cache *c) {
    if (!c) {
        if (!tg_error_pending()) tg_error(fn, "cache is NULL");
        return false;
    }
    if (c->magic != CACHE_MAGIC) {
        tg_error(fn, "cache was freed (or is not a tg_manual_cache)");
        return false;
    }
    if (c->kind != want_kind || (want_family >= 0 && family(c->cell) != want_family)) {
        tg_error(fn, "cache was made by %s (%s); this function needs one made by %s", c->maker,
                 tg_manual_cell_name(c->cell), want_maker);
        return false;
    }
    return true;
}

/* Step 2: nothing the cache refers to was written in place since the forward. */
static bool check_versions(const char *fn, const tg_manual_cache *c) {
    char nm[48];
    const bool stacked = c->kind == K_STACK;
    for (int l = 0; l < c->layers; l++) {
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
            snprintf(nm, sizeof nm, l == c->layers - 1 ? "the output y" : "layer %d's output", l);
            ok = check_version(fn, nm, m->y, m->vy);
        }
        if (!ok) return false;
    }
    return true;
}

/* Step 3: the upstream gradients (each NULL = zero): dy [T,B,H or P] (none for K_STEP: *dy becomes
 * NULL), dh [B,H] or [L,B,H or P], and for the LSTM dcell [B,H] or [L,B,H] (else *dcell becomes NULL). */
static bool check_upstream(const char *fn, const tg_manual_cache *c, const tg_tensor **dy, const tg_tensor *dh,
                           const tg_tensor **dcell) {
    char ctx[160];
    const int64_t T = c->T, B = c->B, H = c->H, Rw = c->P ? c->P : H;
    const tg_dtype dt = c->dtype;
    const bool stacked = c->kind == K_STACK;
    bool fail = false;
    const int64_t tbr[3] = {T, B, Rw}, lbr[3] = {c->layers, B, Rw}, lbh[3] = {c->layers, B, H}, bh[2] = {B, H};
    if (c->P)
        snprintf(ctx, sizeof ctx, "T = %" PRId64 ", B = %" PRId64 ", P = %" PRId64 ", H = %" PRId64 " from the forward",
                 T, B, c->P, H);
    else
        snprintf(ctx, sizeof ctx, "T = %" PRId64 ", B = %" PRId64 ", H = %" PRId64 " from the forward", T, B, H);
    const char *hname = c->kind == K_STEP ? "dh_next" : stacked ? "dhn" : "dh_last";
    const char *cname = c->kind == K_STEP ? "dc_next" : stacked ? "dcn" : "dc_last";
    if (c->kind != K_STEP) upstream(fn, "dy", *dy, dt, 3, tbr, c->P ? "[T,B,P]" : "[T,B,H]", ctx, &fail);
    else *dy = NULL;
    if (stacked) upstream(fn, hname, dh, dt, 3, lbr, c->P ? "[L,B,P]" : "[L,B,H]", ctx, &fail);
    else upstream(fn, hname, dh, dt, 2, bh, "[B,H]", ctx, &fail);
    if (c->cell != TG_MANUAL_LSTM) *dcell = NULL;
    else if (stacked) upstream(fn, cname, *dcell, dt, 3, lbh, "[L,B,H]", ctx, &fail);
    else upstream(fn, cname, *dcell, dt, 2, bh, "[B,H]", ctx, &fail);
    return !fail;
}

/* Step 4: the parameter gradients the caller gave (accumulated into) match their parameters. */
static bool check_grads(const char *fn, const tg_manual_cache *c, tg_manual_layer *grads) {
    char nm[48], gn[64];
    for (int l = 0; grads && l < c->layers; l++) {
        tg_tensor **g[NPARAM];
        layer_slots(&grads[l], g);
        for (int i = 0; i < NPARAM; i++) {
            const tg_tensor *p = c->lay[l].p[i];
            if (!*g[i] || !p) continue; /* (no weight_hr without projections) */
            pname(nm, sizeof nm, i, l, c->kind == K_STACK);
            snprintf(gn, sizeof gn, "grads %s", nm);
            if (!need(fn, gn, *g[i]) || !expect_dtype(fn, gn, *g[i], c->dtype, "the cache") ||
                !expect_shape(fn, gn, *g[i], tg_ndim(p), tg_shape(p), "the parameter's shape", nm))
                return false;
        }
    }
    return true;
}

/* Step 5: zero gradients in the slots the caller left NULL, each marked in made[l * NPARAM + i];
 * release_made undoes exactly those. */
static bool alloc_grads(const tg_manual_cache *c, tg_manual_layer *grads, bool *made) {
    for (int l = 0; l < c->layers; l++) {
        tg_tensor **g[NPARAM];
        layer_slots(&grads[l], g);
        for (int i = 0; i < NPARAM; i++) {
            const tg_tensor *p = c->lay[l].p[i];
            if (*g[i] || !p) continue;
            if (!(*g[i] = tg_zeros(c->dtype, tg_ndim(p), tg_shape(p)))) return false;
            made[l * NPARAM + i] = true;
        }
    }
    return true;
}

static void release_made(const tg_manual_cache *c, tg_manual_layer *grads, const bool *made) {
    for (int l = 0; l < c->layers; l++) {
        tg_tensor **g[NPARAM];
        layer_slots(&grads[l], g);
        for (int i = 0; i < NPARAM; i++)
            if (made[l * NPARAM + i]) {
                tg_release(*g[i]);
                *g[i] = NULL;
            }
    }
}

/* Step 6: the input gradients asked for: dx [B,I] or [T,B,I], dh0 [B,H] or [L,B,H or P], dc0 (LSTM). */
static bool alloc_outputs(const tg_manual_cache *c, bool want_dx, bool want_dh0, bool want_dc0, tg_tensor **dx,
                          tg_tensor **dh0, tg_tensor **dc0) {
    const tg_dtype dt = c->dtype;
    const bool stacked = c->kind == K_STACK;
    const int64_t Rw = c->P ? c->P : c->H;
    const int64_t lbr[3] = {c->layers, c->B, Rw}, lbh[3] = {c->layers, c->B, c->H}, bh[2] = {c->B, c->H};
    if (want_dx) {
        const int64_t xs3[3] = {c->T, c->B, c->I}, xs2[2] = {c->B, c->I};
        if (!(*dx = c->kind == K_STEP ? tg_empty(dt, 2, xs2) : tg_empty(dt, 3, xs3))) return false;
    }
    if (want_dh0 && !(*dh0 = stacked ? tg_empty(dt, 3, lbr) : tg_empty(dt, 2, bh))) return false;
    if (want_dc0 && c->cell == TG_MANUAL_LSTM && !(*dc0 = stacked ? tg_empty(dt, 3, lbh) : tg_empty(dt, 2, bh)))
        return false;
    return true;
}

/* One layer's backward (layer_bwd or lstm_proj_bwd in the cache's dtype); gw: its parameter
 * gradients (all NULL or all set), dy/dhT/dcT its upstream, dx/dh0/dc0 where its input gradients go. */
static void layer_backward(const tg_manual_cache *c, const mlayer *m, const void *dy, const void *dhT,
                           const void *dcT, tg_tensor *const *gw, void *dx, void *dh0, void *dc0, void *work) {
    if (c->P)
        proj_layer_backward(c, m, dy, dhT, dcT, gw, dx, dh0, dc0, work);
    else if (c->dtype == TG_F32)
        layer_bwd_f32(c->cell, c->T, c->B, m->I, c->H, CD(m->x, float), CD(m->h0, float), CD(m->c0, float),
                      CD(m->p[0], float), CD(m->p[1], float), CD(m->y, float), CD(m->gates, float),
                      CD(m->cs, float), CD(m->aux, float), dy, (const float *)dhT, (const float *)dcT,
                      DD(gw[0], float), DD(gw[1], float), DD(gw[2], float), DD(gw[3], float), dx, (float *)dh0,
                      (float *)dc0, work);
    else
        layer_bwd_f64(c->cell, c->T, c->B, m->I, c->H, CD(m->x, double), CD(m->h0, double), CD(m->c0, double),
                      CD(m->p[0], double), CD(m->p[1], double), CD(m->y, double), CD(m->gates, double),
                      CD(m->cs, double), CD(m->aux, double), dy, (const double *)dhT, (const double *)dcT,
                      DD(gw[0], double), DD(gw[1], double), DD(gw[2], double), DD(gw[3], double), dx,
                      (double *)dh0, (double *)dc0, work);
}

/* Step 7: the layers top-down, each layer's dx the next lower layer's dy (two ping-pong buffers). */
static bool run_backward(const char *fn, const tg_manual_cache *c, const tg_tensor *dy, const tg_tensor *dh,
                         const tg_tensor *dcell, const tg_manual_layer *grads, tg_tensor *dx, tg_tensor *dh0,
                         tg_tensor *dc0) {
    const int L = c->layers;
    const int64_t H = c->H, BH = c->B * H, Rw = c->P ? c->P : H, BR = c->B * Rw; /* h is Rw wide */
    const int64_t GH = tg_manual_cell_gates(c->cell) * H, TB = c->T * c->B;
    const size_t isz = tg_itemsize(c->dtype);
    const size_t wn = c->P ? (size_t)(TB * (GH + c->P) + 2 * BH + 2 * BR) /* lstm_proj_bwd */
                           : (size_t)(TB * GH) * (family(c->cell) == FAM_GRU ? 2 : 1) + (size_t)(3 * BH);
    void *work = tg_malloc(wn * isz), *bufa = NULL, *bufb = NULL;
    if (L > 1) {
        bufa = tg_malloc((size_t)(TB * Rw) * isz);
        bufb = tg_malloc((size_t)(TB * Rw) * isz);
    }
    bool ok = work && (L == 1 || (bufa && bufb));
    if (!ok) tg_error(fn, "out of memory");
    const void *dyl = dy ? tg_cdata(dy) : NULL;
    for (int l = L - 1; ok && l >= 0; l--) {
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
        layer_backward(c, &c->lay[l], dyl, dhT, dcT, gw, dxl, dh0l, dc0l, work);
        for (int i = 0; i < NPARAM; i++)
            if (gw[i]) tg_bump_version(gw[i]);
        if (l) { /* this layer's dx is the next (lower) layer's dy */
            dyl = bufa;
            void *t = bufa;
            bufa = bufb;
            bufb = t;
        }
    }
    free(work);
    free(bufa);
    free(bufb);
    return ok;
}

static int backward_core(const char *fn, int want_family, int want_kind, const char *want_maker,
                         const tg_manual_cache *c, const tg_tensor *dy, const tg_tensor *dh,
                         const tg_tensor *dcell, tg_manual_layer *grads, tg_tensor **dx_out,
                         tg_tensor **dh0_out, tg_tensor **dc0_out) {
    if (dx_out) *dx_out = NULL;
    if (dh0_out) *dh0_out = NULL;
    if (dc0_out) *dc0_out = NULL;
    if (!check_cache(fn, want_family, want_kind, want_maker, c) || !check_versions(fn, c) ||
        !check_upstream(fn, c, &dy, dh, &dcell) || !check_grads(fn, c, grads))
        return -1;
    bool *made = grads ? tg_calloc((size_t)c->layers * NPARAM, sizeof(bool)) : NULL;
    if (grads && !made) {
        tg_error(fn, "out of memory");
        return -1;
    }
    tg_tensor *dx = NULL, *dh0 = NULL, *dc0 = NULL;
    bool ok = (!grads || alloc_grads(c, grads, made)) &&
              alloc_outputs(c, dx_out != NULL, dh0_out != NULL, dc0_out != NULL, &dx, &dh0, &dc0) &&
              run_backward(fn, c, dy, dh, dcell, grads, dx, dh0, dc0);
    if (ok) {
        if (dx_out) *dx_out = dx;
        if (dh0_out) *dh0_out = dh0;
        if (dc0_out) *dc0_out = dc0;
    } else {
        tg_release(dx);
        tg_release(dh0);
        tg_release(dc0);
        if (grads) release_made(c, grads, made);
    }
    free(made);
    return ok ? 0 : -1;
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
