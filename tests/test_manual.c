/* tests/test_manual.c - the hand-derived BPTT references (<tapegrad/manual.h>), no tape involved.
 *
 * What is checked:
 *   (a) every conformance case in tests/data/conformance/ (PyTorch float64 references) with the manual
 *       stacked forward/backward, under the README's rule |r - ref| <= atol*S + rtol*|ref|,
 *       S = max(1, max|ref|) (F64: atol 1e-9, rtol 1e-7; F32: atol 2e-4, rtol 2e-3); the same cases
 *       again layer by layer through the single-layer sequence functions (layer k reads layer k-1's y);
 *   (b) central finite differences in F64 of loss = sum y*dy + sum hn*dhn (+ sum cn*dcn) for every
 *       element of x, h0, c0 and every parameter, for each cell: stacked (L = 2) and one step;
 *   (c) the sequence backward with T = 1 equals the one-step backward, and a T-step chain of one-step
 *       forwards/backwards (the classic rnn_backward built from rnn_cell_backward) equals the
 *       sequence functions;
 *   (d) gradients accumulate into given tensors; bad input (shapes, dtypes, NULL, wrong or stale cache)
 *       is reported with one message naming the function and the shapes, and nothing leaks.
 * Every test checks that no tensor leaked (tg_live_tensors back to its starting value).
 */
#define _POSIX_C_SOURCE 200809L
#include <criterion/criterion.h>
#include <tapegrad/manual.h>
#include <tapegrad/safetensors.h>

#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "helpers.h"

#define CONF_DIR TG_TEST_DATA_DIR "/conformance"

static void teardown(void) { tg_set_error_handler(NULL, NULL); }
TestSuite(manual, .init = th_quiet_start, .fini = teardown);

static const char *const PN[4] = {"weight_ih", "weight_hh", "bias_ih", "bias_hh"};
static tg_tensor **pfield(tg_manual_layer *p, int i) {
    return i == 0 ? &p->weight_ih : i == 1 ? &p->weight_hh : i == 2 ? &p->bias_ih : &p->bias_hh;
}

/* ---- (a) conformance ------------------------------------------------------------------------------ */

#define MAXOUT 40
typedef struct outset {
    int n;
    char name[MAXOUT][48];
    tg_tensor *t[MAXOUT];
} outset;

static void out_add(outset *o, const char *name, tg_tensor *t) { /* takes the reference */
    cr_assert_lt(o->n, MAXOUT);
    snprintf(o->name[o->n], sizeof o->name[0], "%s", name);
    o->t[o->n++] = t;
}
static void out_free(outset *o) {
    for (int i = 0; i < o->n; i++) tg_release(o->t[i]);
    o->n = 0;
}
static tg_tensor *out_get(const outset *o, const char *name) {
    for (int i = 0; i < o->n; i++)
        if (strcmp(o->name[i], name) == 0) return o->t[i];
    return NULL;
}

static int count_layers(const tg_st_file *cf) {
    int L = 0;
    char nm[48];
    for (;; L++) {
        snprintf(nm, sizeof nm, "weight_ih_l%d", L);
        if (!tg_st_get(cf, nm)) return L;
    }
}

static void case_params(const tg_st_file *cf, int L, tg_manual_layer *p) {
    char nm[48];
    for (int l = 0; l < L; l++)
        for (int i = 0; i < 4; i++) {
            snprintf(nm, sizeof nm, "%s_l%d", PN[i], l);
            *pfield(&p[l], i) = tg_st_get(cf, nm);
        }
}

/* The conformance command's computation through the stacked API. */
static void run_stack(const tg_st_file *cf, tg_manual_cell cell, int L, outset *o) {
    tg_manual_layer p[8] = {{0}}, g[8] = {{0}};
    cr_assert_leq(L, 8);
    case_params(cf, L, p);
    const bool lstm = cell == TG_MANUAL_LSTM;
    tg_tensor *hn = NULL, *cn = NULL, *dx = NULL, *dh0 = NULL, *dc0 = NULL;
    tg_manual_cache *cache = NULL;
    tg_tensor *y = tg_manual_stack_forward(cell, L, tg_st_get(cf, "x"), tg_st_get(cf, "h0"), tg_st_get(cf, "c0"),
                                           p, &hn, &cn, &cache);
    cr_assert_not_null(y, "%s", tg_last_error());
    int rc = tg_manual_stack_backward(cache, tg_st_get(cf, "dy"), tg_st_get(cf, "dhn"), tg_st_get(cf, "dcn"), g,
                                      &dx, &dh0, &dc0);
    cr_assert_eq(rc, 0, "%s", tg_last_error());
    tg_manual_cache_free(cache);
    out_add(o, "y", y);
    out_add(o, "hn", hn);
    out_add(o, "grad.x", dx);
    out_add(o, "grad.h0", dh0);
    if (lstm) {
        out_add(o, "cn", cn);
        out_add(o, "grad.c0", dc0);
    } else {
        cr_expect_null(cn);
        cr_expect_null(dc0);
    }
    char nm[64];
    for (int l = 0; l < L; l++)
        for (int i = 0; i < 4; i++) {
            snprintf(nm, sizeof nm, "grad.%s_l%d", PN[i], l);
            out_add(o, nm, *pfield(&g[l], i));
        }
}

/* The same network layer by layer through the single-layer sequence functions. */
static void run_layers(const tg_st_file *cf, tg_manual_cell cell, int L, outset *o) {
    tg_manual_layer p[8] = {{0}};
    case_params(cf, L, p);
    const bool lstm = cell == TG_MANUAL_LSTM;
    const tg_tensor *x = tg_st_get(cf, "x"), *h0 = tg_st_get(cf, "h0"), *c0 = tg_st_get(cf, "c0");
    const tg_tensor *dy = tg_st_get(cf, "dy"), *dhn = tg_st_get(cf, "dhn"), *dcn = tg_st_get(cf, "dcn");
    const int64_t B = tg_dim(h0, 1), H = tg_dim(h0, 2);
    const tg_dtype dt = tg_dtype_of(x);
    const int64_t lbh[3] = {L, B, H};
    tg_tensor *hn = tg_empty(dt, 3, lbh), *cn = lstm ? tg_empty(dt, 3, lbh) : NULL;
    tg_tensor *dh0 = tg_empty(dt, 3, lbh), *dc0 = lstm ? tg_empty(dt, 3, lbh) : NULL;
    tg_manual_cache *cache[8] = {0};
    tg_tensor *ys[8] = {0};
    for (int l = 0; l < L; l++) {
        tg_tensor *h0l = tg_view_at(h0, l), *c0l = lstm ? tg_view_at(c0, l) : NULL, *hl = NULL, *cl = NULL;
        const tg_tensor *in = l ? ys[l - 1] : x;
        if (lstm) ys[l] = tg_manual_lstm_forward(in, h0l, c0l, &p[l], &hl, &cl, &cache[l]);
        else if (cell == TG_MANUAL_GRU) ys[l] = tg_manual_gru_forward(in, h0l, &p[l], &hl, &cache[l]);
        else
            ys[l] = tg_manual_rnn_forward(cell == TG_MANUAL_RNN_RELU ? TG_MANUAL_RELU : TG_MANUAL_TANH, in, h0l,
                                          &p[l], &hl, &cache[l]);
        cr_assert_not_null(ys[l], "%s", tg_last_error());
        tg_tensor *v = tg_view_at(hn, l);
        tg_copy_(v, hl);
        tg_release(v);
        if (lstm) {
            v = tg_view_at(cn, l);
            tg_copy_(v, cl);
            tg_release(v);
        }
        tg_release(h0l);
        tg_release(c0l);
        tg_release(hl);
        tg_release(cl);
    }
    char nm[64];
    tg_tensor *dyl = tg_retain((tg_tensor *)dy);
    for (int l = L - 1; l >= 0; l--) {
        tg_manual_layer g = {0};
        tg_tensor *dhl = tg_view_at(dhn, l), *dcl = lstm ? tg_view_at(dcn, l) : NULL;
        tg_tensor *dx = NULL, *dh = NULL, *dc = NULL;
        int rc;
        if (lstm) rc = tg_manual_lstm_backward(cache[l], dyl, dhl, dcl, &g, &dx, &dh, &dc);
        else if (cell == TG_MANUAL_GRU) rc = tg_manual_gru_backward(cache[l], dyl, dhl, &g, &dx, &dh);
        else rc = tg_manual_rnn_backward(cache[l], dyl, dhl, &g, &dx, &dh);
        cr_assert_eq(rc, 0, "%s", tg_last_error());
        tg_tensor *v = tg_view_at(dh0, l);
        tg_copy_(v, dh);
        tg_release(v);
        if (lstm) {
            v = tg_view_at(dc0, l);
            tg_copy_(v, dc);
            tg_release(v);
        }
        for (int i = 0; i < 4; i++) {
            snprintf(nm, sizeof nm, "grad.%s_l%d", PN[i], l);
            out_add(o, nm, *pfield(&g, i));
        }
        tg_release(dyl);
        dyl = dx;
        tg_release(dhl);
        tg_release(dcl);
        tg_release(dh);
        tg_release(dc);
        tg_manual_cache_free(cache[l]);
    }
    out_add(o, "y", tg_retain(ys[L - 1]));
    for (int l = 0; l < L; l++) tg_release(ys[l]);
    out_add(o, "grad.x", dyl);
    out_add(o, "hn", hn);
    out_add(o, "grad.h0", dh0);
    if (lstm) {
        out_add(o, "cn", cn);
        out_add(o, "grad.c0", dc0);
    }
}

typedef struct verdict {
    double worst;        /* largest |r - ref| / (atol*S + rtol*|ref|) over the case */
    double worst_abs;    /* largest |r - ref| */
    char worst_name[48];
    int missing;
} verdict;

static verdict compare_case(const tg_st_file *rf, const outset *o, double atol, double rtol) {
    verdict v = {0, 0, "", 0};
    for (int k = 0; k < tg_st_count(rf); k++) {
        const char *name = tg_st_name_at(rf, k);
        const tg_tensor *ref = tg_st_tensor_at(rf, k);
        const tg_tensor *res = out_get(o, name);
        if (!res || !tg_same_shape(res, ref) || tg_dtype_of(res) != tg_dtype_of(ref)) {
            char a[64] = "-", b[64];
            if (res) tg_shape_str(res, a, sizeof a);
            cr_log_error("%s: missing or mis-shaped (%s vs ref %s)", name, a, tg_shape_str(ref, b, sizeof b));
            v.missing++;
            continue;
        }
        double S = 1;
        const int64_t n = tg_numel(ref);
        for (int64_t i = 0; i < n; i++) S = fmax(S, fabs(tg_get(ref, i)));
        for (int64_t i = 0; i < n; i++) {
            const double r = tg_get(res, i), f = tg_get(ref, i), e = fabs(r - f);
            const double q = isfinite(r) ? e / (atol * S + rtol * fabs(f)) : INFINITY;
            if (e > v.worst_abs) v.worst_abs = e;
            if (!(q <= v.worst)) { /* also catches NaN */
                v.worst = isnan(q) ? INFINITY : q;
                snprintf(v.worst_name, sizeof v.worst_name, "%s", name);
            }
        }
    }
    if (o->n != tg_st_count(rf)) v.missing += abs(o->n - tg_st_count(rf)) > 0 && v.missing == 0;
    return v;
}

/* Runs every case of the given cell (NULL: all); returns the number of cases run. */
static int run_conformance(const char *cellname, bool layerwise) {
    DIR *d = opendir(CONF_DIR);
    cr_assert_not_null(d, "cannot open %s", CONF_DIR);
    char *names[256];
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        const char *s = strstr(e->d_name, ".case.safetensors");
        if (s && s[strlen(".case.safetensors")] == 0 && n < 256) names[n++] = strdup(e->d_name);
    }
    closedir(d);
    int ran = 0, failed = 0;
    double worst[2] = {0, 0}, worst_abs[2] = {0, 0};
    char worst_case[2][128] = {"", ""};
    for (int i = 0; i < n; i++) {
        char cpath[512], rpath[512];
        snprintf(cpath, sizeof cpath, "%s/%s", CONF_DIR, names[i]);
        snprintf(rpath, sizeof rpath, "%s/%.*s.ref.safetensors", CONF_DIR,
                 (int)(strlen(names[i]) - strlen(".case.safetensors")), names[i]);
        tg_st_file *cf = tg_st_load(cpath);
        cr_assert_not_null(cf, "%s", tg_last_error());
        const char *cell_meta = tg_st_meta(cf, "cell");
        cr_assert_not_null(cell_meta, "%s: no cell metadata", names[i]);
        if (cellname && strcmp(cell_meta, cellname) != 0) {
            tg_st_free(cf);
            continue;
        }
        tg_st_file *rf = tg_st_load(rpath);
        cr_assert_not_null(rf, "%s", tg_last_error());
        tg_manual_cell cell;
        cr_assert_eq(tg_manual_cell_parse(cell_meta, &cell), 0);
        const int L = count_layers(cf);
        const tg_dtype dt = tg_dtype_of(tg_st_get(cf, "x"));
        const double atol = dt == TG_F64 ? 1e-9 : 2e-4, rtol = dt == TG_F64 ? 1e-7 : 2e-3;
        outset o = {0};
        if (layerwise) run_layers(cf, cell, L, &o);
        else run_stack(cf, cell, L, &o);
        verdict v = compare_case(rf, &o, atol, rtol);
        out_free(&o);
        ran++;
        const int k = dt == TG_F64;
        if (v.missing || v.worst > 1) {
            failed++;
            cr_log_error("%s%s: FAIL worst %.3g of the budget (|err| %.3g) in %s, %d missing", names[i],
                         layerwise ? " (layerwise)" : "", v.worst, v.worst_abs, v.worst_name, v.missing);
        }
        if (v.worst > worst[k]) {
            worst[k] = v.worst;
            snprintf(worst_case[k], sizeof worst_case[k], "%.60s %.40s", names[i], v.worst_name);
        }
        if (v.worst_abs > worst_abs[k]) worst_abs[k] = v.worst_abs;
        tg_st_free(cf);
        tg_st_free(rf);
    }
    for (int i = 0; i < n; i++) free(names[i]);
    cr_log_info("%s%s: %d cases, %d failed; worst F32 %.3g of budget (max |err| %.3g, %s); worst F64 %.3g of "
                "budget (max |err| %.3g, %s)",
                cellname ? cellname : "all", layerwise ? " layerwise" : "", ran, failed, worst[0], worst_abs[0],
                worst_case[0], worst[1], worst_abs[1], worst_case[1]);
    fprintf(stderr,
            "[manual] %s%s: %d cases, %d failed; worst F32 %.3g of budget (|err| %.3g, %s); worst F64 %.3g of "
            "budget (|err| %.3g, %s)\n",
            cellname ? cellname : "all", layerwise ? " layerwise" : "", ran, failed, worst[0], worst_abs[0],
            worst_case[0], worst[1], worst_abs[1], worst_case[1]);
    cr_expect_eq(failed, 0, "%d of %d %s cases failed", failed, ran, cellname ? cellname : "");
    return ran;
}

TH_TEST(manual, conformance_rnn_tanh, th_quiet_check) { cr_expect_gt(run_conformance("rnn_tanh", false), 0); }
TH_TEST(manual, conformance_rnn_relu, th_quiet_check) { cr_expect_gt(run_conformance("rnn_relu", false), 0); }
TH_TEST(manual, conformance_lstm, th_quiet_check) { cr_expect_gt(run_conformance("lstm", false), 0); }
TH_TEST(manual, conformance_gru, th_quiet_check) { cr_expect_gt(run_conformance("gru", false), 0); }
TH_TEST(manual, conformance_layerwise, th_quiet_check) {
    cr_expect_geq(run_conformance(NULL, true), 64, "expected the 64 shipped conformance cases");
}

/* ---- random F64 networks ------------------------------------------------------------------------ */

typedef struct net {
    tg_manual_cell cell;
    int L;
    int64_t T, B, I, H;
    tg_tensor *x, *h0, *c0, *dy, *dhn, *dcn; /* h0/c0/dhn/dcn [L,B,H] */
    tg_manual_layer p[3];
} net;

static void net_make(net *n, tg_manual_cell cell, int L, int64_t T, int64_t B, int64_t I, int64_t H,
                     uint64_t seed) {
    memset(n, 0, sizeof *n);
    n->cell = cell, n->L = L, n->T = T, n->B = B, n->I = I, n->H = H;
    const int64_t G = tg_manual_cell_gates(cell);
    n->x = th_rand(seed + 1, 3, (int64_t[]){T, B, I}, -1.5, 1.5);
    n->h0 = th_rand(seed + 2, 3, (int64_t[]){L, B, H}, -0.9, 0.9);
    n->c0 = th_rand(seed + 3, 3, (int64_t[]){L, B, H}, -1.5, 1.5);
    n->dy = th_rand(seed + 4, 3, (int64_t[]){T, B, H}, -1, 1);
    n->dhn = th_rand(seed + 5, 3, (int64_t[]){L, B, H}, -1, 1);
    n->dcn = th_rand(seed + 6, 3, (int64_t[]){L, B, H}, -1, 1);
    const double k = 1.0; /* larger than PyTorch's 1/sqrt(H): keeps the non-linearities busy */
    for (int l = 0; l < L; l++) {
        n->p[l].weight_ih = th_rand(seed + 10 + 4 * l, 2, (int64_t[]){G * H, l ? H : I}, -k, k);
        n->p[l].weight_hh = th_rand(seed + 11 + 4 * l, 2, (int64_t[]){G * H, H}, -k, k);
        n->p[l].bias_ih = th_rand(seed + 12 + 4 * l, 1, (int64_t[]){G * H}, -k, k);
        n->p[l].bias_hh = th_rand(seed + 13 + 4 * l, 1, (int64_t[]){G * H}, -k, k);
    }
}
static void net_free(net *n) {
    tg_release(n->x), tg_release(n->h0), tg_release(n->c0);
    tg_release(n->dy), tg_release(n->dhn), tg_release(n->dcn);
    tg_manual_layer_release(n->p, n->L);
}

static double dot(const tg_tensor *a, const tg_tensor *b) {
    cr_assert(tg_same_shape(a, b));
    double s = 0;
    for (int64_t i = 0; i < tg_numel(a); i++) s += tg_get(a, i) * tg_get(b, i);
    return s;
}

static double stack_loss(const net *n) {
    tg_tensor *hn, *cn;
    tg_tensor *y = tg_manual_stack_forward(n->cell, n->L, n->x, n->h0, n->c0, n->p, &hn, &cn, NULL);
    cr_assert_not_null(y, "%s", tg_last_error());
    double s = dot(y, n->dy) + dot(hn, n->dhn) + (cn ? dot(cn, n->dcn) : 0);
    tg_release(y), tg_release(hn), tg_release(cn);
    return s;
}

/* Compares the analytic gradient `an` of tensor `t` against central differences of loss(). Returns the
 * number of elements checked. */
typedef double (*loss_fn)(const void *ctx);
static int fd_check(const char *what, tg_tensor *t, const tg_tensor *an, loss_fn loss, const void *ctx,
                    int *sign_agree, int *sign_total, double *worst) {
    cr_assert_not_null(an, "%s: no gradient", what);
    cr_assert(tg_same_shape(t, an), "%s: gradient shape", what);
    const double eps = 1e-6;
    double *v = tg_f64(t);
    for (int64_t i = 0; i < tg_numel(t); i++) {
        const double keep = v[i];
        v[i] = keep + eps;
        const double lp = loss(ctx);
        v[i] = keep - eps;
        const double lm = loss(ctx);
        v[i] = keep;
        const double fd = (lp - lm) / (2 * eps), a = tg_get(an, i);
        const double err = fabs(fd - a) / (1e-7 + 1e-6 * fabs(a));
        if (err > *worst) *worst = err;
        cr_expect(err <= 1, "%s[%ld]: analytic %.12g vs finite difference %.12g", what, (long)i, a, fd);
        if (fabs(fd) > 1e-4) {
            (*sign_total)++;
            *sign_agree += (fd > 0) == (a > 0);
        }
    }
    return (int)tg_numel(t);
}

static double stack_loss_ctx(const void *ctx) { return stack_loss((const net *)ctx); }

static void fd_stack(tg_manual_cell cell, uint64_t seed) {
    net n;
    net_make(&n, cell, 2, 4, 2, 3, 4, seed);
    tg_manual_cache *cache;
    tg_manual_layer g[2] = {{0}};
    tg_tensor *dx, *dh0, *dc0;
    tg_tensor *y = tg_manual_stack_forward(cell, 2, n.x, n.h0, n.c0, n.p, NULL, NULL, &cache);
    cr_assert_not_null(y);
    cr_assert_eq(tg_manual_stack_backward(cache, n.dy, n.dhn, n.dcn, g, &dx, &dh0, &dc0), 0, "%s", tg_last_error());
    tg_manual_cache_free(cache);
    tg_release(y);
    int agree = 0, total = 0, checked = 0;
    double worst = 0;
    checked += fd_check("x", n.x, dx, stack_loss_ctx, &n, &agree, &total, &worst);
    checked += fd_check("h0", n.h0, dh0, stack_loss_ctx, &n, &agree, &total, &worst);
    if (cell == TG_MANUAL_LSTM) checked += fd_check("c0", n.c0, dc0, stack_loss_ctx, &n, &agree, &total, &worst);
    else cr_expect_null(dc0);
    char nm[48];
    for (int l = 0; l < 2; l++)
        for (int i = 0; i < 4; i++) {
            snprintf(nm, sizeof nm, "%s_l%d", PN[i], l);
            checked += fd_check(nm, *pfield(&n.p[l], i), *pfield(&g[l], i), stack_loss_ctx, &n, &agree, &total,
                                &worst);
        }
    cr_expect_gt(total, checked / 2, "too few non-negligible gradients (%d of %d): the test is vacuous", total,
                 checked);
    cr_expect_eq(agree, total, "signs agree for %d of %d gradients", agree, total);
    cr_log_info("%s stack: %d elements, worst %.3g of tolerance", tg_manual_cell_name(cell), checked, worst);
    tg_release(dx), tg_release(dh0), tg_release(dc0);
    tg_manual_layer_release(g, 2);
    net_free(&n);
}

TH_TEST(manual, finite_differences_stack_rnn_tanh, th_quiet_check) { fd_stack(TG_MANUAL_RNN_TANH, 100); }
TH_TEST(manual, finite_differences_stack_rnn_relu, th_quiet_check) { fd_stack(TG_MANUAL_RNN_RELU, 200); }
TH_TEST(manual, finite_differences_stack_lstm, th_quiet_check) { fd_stack(TG_MANUAL_LSTM, 300); }
TH_TEST(manual, finite_differences_stack_gru, th_quiet_check) { fd_stack(TG_MANUAL_GRU, 400); }
TH_TEST(manual, finite_differences_stack_gru_reset_before, th_quiet_check) { fd_stack(TG_MANUAL_GRU_RESET_BEFORE, 450); }

/* The two GRU forms share parameters but not equations: same inputs, different outputs and gradients. */
TH_TEST(manual, reset_before_and_reset_after_gru_differ, th_quiet_check) {
    net n;
    net_make(&n, TG_MANUAL_GRU, 2, 4, 2, 3, 4, 460);
    tg_tensor *y[2], *dx[2];
    const tg_manual_cell cells[2] = {TG_MANUAL_GRU, TG_MANUAL_GRU_RESET_BEFORE};
    for (int k = 0; k < 2; k++) {
        tg_manual_cache *cache;
        y[k] = tg_manual_stack_forward(cells[k], 2, n.x, n.h0, NULL, n.p, NULL, NULL, &cache);
        cr_assert_not_null(y[k], "%s", tg_last_error());
        cr_assert_eq(tg_manual_stack_backward(cache, n.dy, n.dhn, NULL, NULL, &dx[k], NULL, NULL), 0, "%s",
                     tg_last_error());
        tg_manual_cache_free(cache);
    }
    double dy_max = 0, dg_max = 0;
    for (int64_t i = 0; i < tg_numel(y[0]); i++) dy_max = fmax(dy_max, fabs(tg_get(y[0], i) - tg_get(y[1], i)));
    for (int64_t i = 0; i < tg_numel(dx[0]); i++) dg_max = fmax(dg_max, fabs(tg_get(dx[0], i) - tg_get(dx[1], i)));
    cr_expect_gt(dy_max, 1e-3, "outputs differ by only %g", dy_max);
    cr_expect_gt(dg_max, 1e-3, "input gradients differ by only %g", dg_max);
    for (int k = 0; k < 2; k++) tg_release(y[k]), tg_release(dx[k]);
    net_free(&n);
}

/* One step through the cell functions: loss = sum h' * dy[0] (+ sum c' * dcn[0]). */
static tg_tensor *cell_fwd(tg_manual_cell cell, const tg_tensor *x, const tg_tensor *h, const tg_tensor *c,
                           const tg_manual_layer *p, tg_tensor **c_next, tg_manual_cache **cache) {
    if (c_next) *c_next = NULL;
    switch (cell) {
    case TG_MANUAL_LSTM: return tg_manual_lstm_cell_forward(x, h, c, p, c_next, cache);
    case TG_MANUAL_GRU: return tg_manual_gru_cell_forward(x, h, p, cache);
    case TG_MANUAL_RNN_RELU: return tg_manual_rnn_cell_forward(TG_MANUAL_RELU, x, h, p, cache);
    default: return tg_manual_rnn_cell_forward(TG_MANUAL_TANH, x, h, p, cache);
    }
}
static int cell_bwd(tg_manual_cell cell, const tg_manual_cache *cache, const tg_tensor *dh, const tg_tensor *dc,
                    tg_manual_layer *g, tg_tensor **dx, tg_tensor **dh_prev, tg_tensor **dc_prev) {
    if (dc_prev) *dc_prev = NULL;
    switch (cell) {
    case TG_MANUAL_LSTM: return tg_manual_lstm_cell_backward(cache, dh, dc, g, dx, dh_prev, dc_prev);
    case TG_MANUAL_GRU: return tg_manual_gru_cell_backward(cache, dh, g, dx, dh_prev);
    default: return tg_manual_rnn_cell_backward(cache, dh, g, dx, dh_prev);
    }
}
static tg_tensor *seq_fwd(tg_manual_cell cell, const tg_tensor *x, const tg_tensor *h0, const tg_tensor *c0,
                          const tg_manual_layer *p, tg_tensor **h_last, tg_tensor **c_last, tg_manual_cache **cache) {
    if (c_last) *c_last = NULL;
    switch (cell) {
    case TG_MANUAL_LSTM: return tg_manual_lstm_forward(x, h0, c0, p, h_last, c_last, cache);
    case TG_MANUAL_GRU: return tg_manual_gru_forward(x, h0, p, h_last, cache);
    case TG_MANUAL_RNN_RELU: return tg_manual_rnn_forward(TG_MANUAL_RELU, x, h0, p, h_last, cache);
    default: return tg_manual_rnn_forward(TG_MANUAL_TANH, x, h0, p, h_last, cache);
    }
}
static int seq_bwd(tg_manual_cell cell, const tg_manual_cache *cache, const tg_tensor *dy, const tg_tensor *dh,
                   const tg_tensor *dc, tg_manual_layer *g, tg_tensor **dx, tg_tensor **dh0, tg_tensor **dc0) {
    if (dc0) *dc0 = NULL;
    switch (cell) {
    case TG_MANUAL_LSTM: return tg_manual_lstm_backward(cache, dy, dh, dc, g, dx, dh0, dc0);
    case TG_MANUAL_GRU: return tg_manual_gru_backward(cache, dy, dh, g, dx, dh0);
    default: return tg_manual_rnn_backward(cache, dy, dh, g, dx, dh0);
    }
}

typedef struct step_ctx {
    tg_manual_cell cell;
    tg_tensor *x, *h, *c, *dh, *dc; /* [B,I], [B,H] ... */
    tg_manual_layer *p;
} step_ctx;

static double step_loss(const void *vctx) {
    const step_ctx *s = vctx;
    tg_tensor *cn;
    tg_tensor *hn = cell_fwd(s->cell, s->x, s->h, s->c, s->p, &cn, NULL);
    cr_assert_not_null(hn, "%s", tg_last_error());
    double v = dot(hn, s->dh) + (cn ? dot(cn, s->dc) : 0);
    tg_release(hn), tg_release(cn);
    return v;
}

static void fd_step(tg_manual_cell cell, uint64_t seed) {
    net n;
    net_make(&n, cell, 1, 1, 3, 4, 5, seed);
    step_ctx s = {cell, tg_view_at(n.x, 0), tg_view_at(n.h0, 0), tg_view_at(n.c0, 0), tg_view_at(n.dy, 0),
                  tg_view_at(n.dcn, 0), n.p};
    tg_manual_cache *cache;
    tg_tensor *cn;
    tg_tensor *hn = cell_fwd(cell, s.x, s.h, s.c, n.p, &cn, &cache);
    cr_assert_not_null(hn, "%s", tg_last_error());
    tg_manual_layer g = {0};
    tg_tensor *dx, *dh, *dc;
    cr_assert_eq(cell_bwd(cell, cache, s.dh, s.dc, &g, &dx, &dh, &dc), 0, "%s", tg_last_error());
    tg_manual_cache_free(cache);
    int agree = 0, total = 0, checked = 0;
    double worst = 0;
    checked += fd_check("x", s.x, dx, step_loss, &s, &agree, &total, &worst);
    checked += fd_check("h", s.h, dh, step_loss, &s, &agree, &total, &worst);
    if (cell == TG_MANUAL_LSTM) checked += fd_check("c", s.c, dc, step_loss, &s, &agree, &total, &worst);
    for (int i = 0; i < 4; i++)
        checked += fd_check(PN[i], *pfield(&n.p[0], i), *pfield(&g, i), step_loss, &s, &agree, &total, &worst);
    cr_expect_gt(total, checked / 2, "too few non-negligible gradients (%d of %d)", total, checked);
    cr_expect_eq(agree, total, "signs agree for %d of %d gradients", agree, total);
    tg_release(hn), tg_release(cn), tg_release(dx), tg_release(dh), tg_release(dc);
    tg_release(s.x), tg_release(s.h), tg_release(s.c), tg_release(s.dh), tg_release(s.dc);
    tg_manual_layer_release(&g, 1);
    net_free(&n);
}

TH_TEST(manual, finite_differences_step_rnn_tanh, th_quiet_check) { fd_step(TG_MANUAL_RNN_TANH, 500); }
TH_TEST(manual, finite_differences_step_rnn_relu, th_quiet_check) { fd_step(TG_MANUAL_RNN_RELU, 600); }
TH_TEST(manual, finite_differences_step_lstm, th_quiet_check) { fd_step(TG_MANUAL_LSTM, 700); }
TH_TEST(manual, finite_differences_step_gru, th_quiet_check) { fd_step(TG_MANUAL_GRU, 800); }

/* ---- (c) one step vs sequence -------------------------------------------------------------------- */

static double maxdiff(const tg_tensor *a, const tg_tensor *b) {
    cr_assert_not_null(a);
    cr_assert_not_null(b);
    cr_assert_eq(tg_numel(a), tg_numel(b));
    double m = 0;
    for (int64_t i = 0; i < tg_numel(a); i++) m = fmax(m, fabs(tg_get(a, i) - tg_get(b, i)));
    return m;
}

/* T = 1: the sequence backward from (dy[0], dh_last) equals the step backward from dh = dy[0] + dh_last. */
static void step_equals_seq(tg_manual_cell cell, uint64_t seed) {
    const bool lstm = cell == TG_MANUAL_LSTM;
    net n;
    net_make(&n, cell, 1, 1, 3, 4, 5, seed);
    tg_tensor *h0 = tg_view_at(n.h0, 0), *c0 = tg_view_at(n.c0, 0), *x0 = tg_view_at(n.x, 0);
    tg_tensor *dhl = tg_view_at(n.dhn, 0), *dcl = tg_view_at(n.dcn, 0), *dy0 = tg_view_at(n.dy, 0);
    /* sequence */
    tg_manual_cache *cs, *cc;
    tg_tensor *hl, *cl;
    tg_tensor *y = seq_fwd(cell, n.x, h0, c0, n.p, &hl, &cl, &cs);
    cr_assert_not_null(y, "%s", tg_last_error());
    tg_manual_layer gs = {0}, gc = {0};
    tg_tensor *dxs, *dhs, *dcs;
    cr_assert_eq(seq_bwd(cell, cs, n.dy, dhl, dcl, &gs, &dxs, &dhs, &dcs), 0, "%s", tg_last_error());
    /* one step */
    tg_tensor *cn;
    tg_tensor *hn = cell_fwd(cell, x0, h0, c0, n.p, &cn, &cc);
    cr_assert_not_null(hn, "%s", tg_last_error());
    tg_tensor *dh = tg_copy(dy0);
    tg_axpy_(dh, 1.0, dhl);
    tg_tensor *dxc, *dhc, *dcc;
    cr_assert_eq(cell_bwd(cell, cc, dh, dcl, &gc, &dxc, &dhc, &dcc), 0, "%s", tg_last_error());

    cr_expect_eq(tg_ndim(dxs), 3);
    cr_expect_eq(tg_ndim(dxc), 2);
    const double tol = 1e-14;
    cr_expect_leq(maxdiff(y, hn), tol);
    cr_expect_leq(maxdiff(hl, hn), tol);
    cr_expect_leq(maxdiff(dxs, dxc), tol, "dx");
    cr_expect_leq(maxdiff(dhs, dhc), tol, "dh0");
    if (lstm) {
        cr_expect_leq(maxdiff(cl, cn), tol);
        cr_expect_leq(maxdiff(dcs, dcc), tol, "dc0");
    }
    for (int i = 0; i < 4; i++) cr_expect_leq(maxdiff(*pfield(&gs, i), *pfield(&gc, i)), tol, "%s", PN[i]);

    tg_manual_cache_free(cs), tg_manual_cache_free(cc);
    tg_manual_layer_release(&gs, 1), tg_manual_layer_release(&gc, 1);
    tg_release(y), tg_release(hl), tg_release(cl), tg_release(hn), tg_release(cn), tg_release(dh);
    tg_release(dxs), tg_release(dhs), tg_release(dcs), tg_release(dxc), tg_release(dhc), tg_release(dcc);
    tg_release(h0), tg_release(c0), tg_release(x0), tg_release(dhl), tg_release(dcl), tg_release(dy0);
    net_free(&n);
}

TH_TEST(manual, step_equals_sequence_T1_rnn_tanh, th_quiet_check) { step_equals_seq(TG_MANUAL_RNN_TANH, 900); }
TH_TEST(manual, step_equals_sequence_T1_rnn_relu, th_quiet_check) { step_equals_seq(TG_MANUAL_RNN_RELU, 910); }
TH_TEST(manual, step_equals_sequence_T1_lstm, th_quiet_check) { step_equals_seq(TG_MANUAL_LSTM, 920); }
TH_TEST(manual, step_equals_sequence_T1_gru, th_quiet_check) { step_equals_seq(TG_MANUAL_GRU, 930); }

/* T steps of cell_forward, then T cell_backwards from the last step down (accumulating the parameter
 * gradients in one tg_manual_layer) equal the sequence forward / backward. */
static void chain_equals_seq(tg_manual_cell cell, uint64_t seed) {
    const bool lstm = cell == TG_MANUAL_LSTM;
    enum { T = 6 };
    net n;
    net_make(&n, cell, 1, T, 2, 3, 4, seed);
    tg_tensor *h0 = tg_view_at(n.h0, 0), *c0 = tg_view_at(n.c0, 0);
    tg_tensor *dhl = tg_view_at(n.dhn, 0), *dcl = tg_view_at(n.dcn, 0);
    tg_manual_cache *cs;
    tg_tensor *hl, *cl;
    tg_tensor *y = seq_fwd(cell, n.x, h0, c0, n.p, &hl, &cl, &cs);
    cr_assert_not_null(y, "%s", tg_last_error());
    tg_manual_layer gs = {0}, gc = {0};
    tg_tensor *dxs, *dhs, *dcs;
    cr_assert_eq(seq_bwd(cell, cs, n.dy, dhl, dcl, &gs, &dxs, &dhs, &dcs), 0, "%s", tg_last_error());

    tg_manual_cache *caches[T];
    tg_tensor *hs[T + 1], *css[T + 1];
    hs[0] = tg_retain(h0);
    css[0] = lstm ? tg_retain(c0) : NULL;
    for (int t = 0; t < T; t++) {
        tg_tensor *xt = tg_view_at(n.x, t);
        hs[t + 1] = cell_fwd(cell, xt, hs[t], css[t], n.p, &css[t + 1], &caches[t]);
        cr_assert_not_null(hs[t + 1], "%s", tg_last_error());
        tg_tensor *yt = tg_view_at(y, t);
        cr_expect_leq(maxdiff(yt, hs[t + 1]), 1e-14, "y[%d]", t);
        tg_release(yt);
        tg_release(xt);
    }
    const int64_t B = n.B, I = n.I, H = n.H;
    tg_tensor *dx = tg_zeros(TG_F64, 3, (int64_t[]){T, B, I});
    tg_tensor *dh = tg_copy(dhl), *dc = lstm ? tg_copy(dcl) : NULL;
    for (int t = T - 1; t >= 0; t--) {
        tg_tensor *dyt = tg_view_at(n.dy, t);
        tg_axpy_(dh, 1.0, dyt);
        tg_tensor *dxt, *dhp, *dcp;
        cr_assert_eq(cell_bwd(cell, caches[t], dh, dc, &gc, &dxt, &dhp, &dcp), 0, "%s", tg_last_error());
        tg_tensor *v = tg_view_at(dx, t);
        tg_copy_(v, dxt);
        tg_release(v), tg_release(dxt), tg_release(dyt);
        tg_release(dh), tg_release(dc);
        dh = dhp, dc = dcp;
        tg_manual_cache_free(caches[t]);
    }
    const double tol = 1e-12;
    cr_expect_leq(maxdiff(dxs, dx), tol, "dx");
    cr_expect_leq(maxdiff(dhs, dh), tol, "dh0");
    if (lstm) cr_expect_leq(maxdiff(dcs, dc), tol, "dc0");
    for (int i = 0; i < 4; i++) cr_expect_leq(maxdiff(*pfield(&gs, i), *pfield(&gc, i)), tol, "%s", PN[i]);
    (void)H;

    for (int t = 0; t <= T; t++) tg_release(hs[t]), tg_release(css[t]);
    tg_release(dx), tg_release(dh), tg_release(dc);
    tg_manual_cache_free(cs);
    tg_manual_layer_release(&gs, 1), tg_manual_layer_release(&gc, 1);
    tg_release(y), tg_release(hl), tg_release(cl), tg_release(dxs), tg_release(dhs), tg_release(dcs);
    tg_release(h0), tg_release(c0), tg_release(dhl), tg_release(dcl);
    net_free(&n);
}

TH_TEST(manual, step_chain_equals_sequence_rnn_tanh, th_quiet_check) { chain_equals_seq(TG_MANUAL_RNN_TANH, 1000); }
TH_TEST(manual, step_chain_equals_sequence_rnn_relu, th_quiet_check) { chain_equals_seq(TG_MANUAL_RNN_RELU, 1010); }
TH_TEST(manual, step_chain_equals_sequence_lstm, th_quiet_check) { chain_equals_seq(TG_MANUAL_LSTM, 1020); }
TH_TEST(manual, step_chain_equals_sequence_gru, th_quiet_check) { chain_equals_seq(TG_MANUAL_GRU, 1030); }

/* The per-cell stack functions agree with the generic ones; F32 runs in float and stays close to F64. */
TH_TEST(manual, per_cell_stack_and_f32, th_quiet_check) {
    const tg_manual_cell cells[4] = {TG_MANUAL_RNN_TANH, TG_MANUAL_RNN_RELU, TG_MANUAL_LSTM, TG_MANUAL_GRU};
    for (int ci = 0; ci < 4; ci++) {
        const tg_manual_cell cell = cells[ci];
        const bool lstm = cell == TG_MANUAL_LSTM;
        net n;
        net_make(&n, cell, 3, 5, 2, 3, 4, 1100 + (uint64_t)ci);
        tg_manual_cache *c1, *c2;
        tg_tensor *hn1, *cn1 = NULL, *hn2, *cn2;
        tg_tensor *y1;
        if (lstm) y1 = tg_manual_lstm_stack_forward(3, n.x, n.h0, n.c0, n.p, &hn1, &cn1, &c1);
        else if (cell == TG_MANUAL_GRU) y1 = tg_manual_gru_stack_forward(3, n.x, n.h0, n.p, &hn1, &c1);
        else
            y1 = tg_manual_rnn_stack_forward(cell == TG_MANUAL_RNN_RELU ? TG_MANUAL_RELU : TG_MANUAL_TANH, 3, n.x,
                                             n.h0, n.p, &hn1, &c1);
        tg_tensor *y2 = tg_manual_stack_forward(cell, 3, n.x, n.h0, n.c0, n.p, &hn2, &cn2, &c2);
        cr_assert_not_null(y1);
        cr_assert_not_null(y2);
        cr_expect_eq(maxdiff(y1, y2), 0);
        cr_expect_eq(maxdiff(hn1, hn2), 0);
        tg_manual_layer g1[3] = {{0}}, g2[3] = {{0}};
        tg_tensor *dx1, *dh1, *dc1 = NULL, *dx2, *dh2, *dc2;
        int rc;
        if (lstm) rc = tg_manual_lstm_stack_backward(c1, n.dy, n.dhn, n.dcn, g1, &dx1, &dh1, &dc1);
        else if (cell == TG_MANUAL_GRU) rc = tg_manual_gru_stack_backward(c1, n.dy, n.dhn, g1, &dx1, &dh1);
        else rc = tg_manual_rnn_stack_backward(c1, n.dy, n.dhn, g1, &dx1, &dh1);
        cr_assert_eq(rc, 0, "%s", tg_last_error());
        cr_assert_eq(tg_manual_stack_backward(c2, n.dy, n.dhn, n.dcn, g2, &dx2, &dh2, &dc2), 0);
        cr_expect_eq(maxdiff(dx1, dx2), 0);
        cr_expect_eq(maxdiff(dh1, dh2), 0);
        if (lstm) cr_expect_eq(maxdiff(dc1, dc2), 0);
        for (int l = 0; l < 3; l++)
            for (int i = 0; i < 4; i++) cr_expect_eq(maxdiff(*pfield(&g1[l], i), *pfield(&g2[l], i)), 0);

        /* the same network in F32 */
        net f = n;
        f.x = tg_to_dtype(n.x, TG_F32), f.h0 = tg_to_dtype(n.h0, TG_F32), f.c0 = tg_to_dtype(n.c0, TG_F32);
        f.dy = tg_to_dtype(n.dy, TG_F32), f.dhn = tg_to_dtype(n.dhn, TG_F32), f.dcn = tg_to_dtype(n.dcn, TG_F32);
        for (int l = 0; l < 3; l++)
            for (int i = 0; i < 4; i++) *pfield(&f.p[l], i) = tg_to_dtype(*pfield(&n.p[l], i), TG_F32);
        tg_manual_cache *c3;
        tg_tensor *hn3, *cn3;
        tg_tensor *y3 = tg_manual_stack_forward(cell, 3, f.x, f.h0, f.c0, f.p, &hn3, &cn3, &c3);
        cr_assert_not_null(y3, "%s", tg_last_error());
        cr_expect_eq(tg_dtype_of(y3), TG_F32);
        tg_manual_layer g3[3] = {{0}};
        tg_tensor *dx3, *dh3, *dc3;
        cr_assert_eq(tg_manual_stack_backward(c3, f.dy, f.dhn, f.dcn, g3, &dx3, &dh3, &dc3), 0);
        cr_expect_eq(tg_dtype_of(dx3), TG_F32);
        cr_expect_eq(tg_dtype_of(g3[2].weight_hh), TG_F32);
        cr_expect_leq(maxdiff(y3, y2), 1e-4);
        cr_expect_leq(maxdiff(dx3, dx2), 1e-3);
        cr_expect_leq(maxdiff(g3[0].weight_ih, g2[0].weight_ih), 1e-3);

        tg_manual_cache_free(c1), tg_manual_cache_free(c2), tg_manual_cache_free(c3);
        tg_manual_layer_release(g1, 3), tg_manual_layer_release(g2, 3), tg_manual_layer_release(g3, 3);
        tg_release(y1), tg_release(y2), tg_release(y3), tg_release(hn1), tg_release(hn2), tg_release(hn3);
        tg_release(cn1), tg_release(cn2), tg_release(cn3);
        tg_release(dx1), tg_release(dx2), tg_release(dx3), tg_release(dh1), tg_release(dh2), tg_release(dh3);
        tg_release(dc1), tg_release(dc2), tg_release(dc3);
        net_free(&f);
        net_free(&n);
    }
}

/* ---- (d) accumulation, errors ------------------------------------------------------------------- */

TH_TEST(manual, gradients_accumulate_and_null_upstream_is_zero, th_quiet_check) {
    net n;
    net_make(&n, TG_MANUAL_GRU, 1, 3, 2, 3, 4, 1200);
    tg_tensor *h0 = tg_view_at(n.h0, 0);
    tg_manual_cache *c;
    tg_tensor *y = tg_manual_gru_forward(n.x, h0, n.p, NULL, &c);
    cr_assert_not_null(y);
    tg_manual_layer g = {0}, g1 = {0};
    cr_assert_eq(tg_manual_gru_backward(c, n.dy, NULL, &g1, NULL, NULL), 0);
    cr_assert_eq(tg_manual_gru_backward(c, n.dy, NULL, &g, NULL, NULL), 0);
    cr_assert_eq(tg_manual_gru_backward(c, n.dy, NULL, &g, NULL, NULL), 0); /* accumulates: 2 x g1 */
    for (int i = 0; i < 4; i++) {
        tg_tensor *twice = tg_copy(*pfield(&g1, i));
        tg_scale_(twice, 2.0);
        cr_expect_leq(maxdiff(twice, *pfield(&g, i)), 1e-14, "%s", PN[i]);
        tg_release(twice);
    }
    /* NULL upstream gradients are zeros: all-zero gradients */
    tg_manual_layer gz = {0};
    tg_tensor *dx, *dh;
    cr_assert_eq(tg_manual_gru_backward(c, NULL, NULL, &gz, &dx, &dh), 0);
    tg_tensor *z = tg_zeros_like(dx);
    cr_expect_eq(maxdiff(dx, z), 0);
    tg_release(z);
    z = tg_zeros_like(dh);
    cr_expect_eq(maxdiff(dh, z), 0);
    tg_release(z);
    for (int i = 0; i < 4; i++) {
        z = tg_zeros_like(*pfield(&gz, i));
        cr_expect_eq(maxdiff(*pfield(&gz, i), z), 0);
        tg_release(z);
    }
    tg_release(dx), tg_release(dh);
    tg_manual_layer_release(&gz, 1);
    tg_manual_layer_release(&g, 1), tg_manual_layer_release(&g1, 1);
    tg_manual_cache_free(c);
    tg_release(y), tg_release(h0);
    net_free(&n);
}

static void expect_msg(const char *fn, const char *part1, const char *part2) {
    const char *m = th_last_message();
    cr_expect_eq(th_error_count(), 1, "expected one error, got %d (%s)", th_error_count(), m);
    cr_expect(strncmp(m, fn, strlen(fn)) == 0 && m[strlen(fn)] == ':', "message %s does not start with %s", m, fn);
    if (part1) cr_expect(strstr(m, part1) != NULL, "message \"%s\" lacks \"%s\"", m, part1);
    if (part2) cr_expect(strstr(m, part2) != NULL, "message \"%s\" lacks \"%s\"", m, part2);
    th_reset_errors();
}

TH_TEST(manual, bad_input_is_reported_and_nothing_leaks, th_quiet_check) {
    th_record_errors();
    net n;
    net_make(&n, TG_MANUAL_LSTM, 2, 3, 2, 3, 4, 1300);
    tg_tensor *h0 = tg_view_at(n.h0, 0), *c0 = tg_view_at(n.c0, 0);
    tg_tensor *hl = (tg_tensor *)1, *cl = (tg_tensor *)1;
    tg_manual_cache *c = (tg_manual_cache *)1;

    /* weight_hh of the wrong shape */
    tg_tensor *bad = tg_zeros(TG_F64, 2, (int64_t[]){16, 3});
    tg_manual_layer p = n.p[0];
    p.weight_hh = bad;
    cr_expect_null(tg_manual_lstm_forward(n.x, h0, c0, &p, &hl, &cl, &c));
    cr_expect_null(hl);
    cr_expect_null(cl);
    cr_expect_null(c);
    expect_msg("tg_manual_lstm_forward", "weight_hh [16,3]", "[4*H,H] = [16,4]");
    tg_release(bad);

    /* stacked: a layer-1 weight_ih of the wrong shape, named with its suffix */
    p = n.p[1];
    bad = tg_zeros(TG_F64, 2, (int64_t[]){16, 3});
    tg_manual_layer p2[2] = {n.p[0], n.p[1]};
    p2[1].weight_ih = bad;
    cr_expect_null(tg_manual_lstm_stack_forward(2, n.x, n.h0, n.c0, p2, NULL, NULL, NULL));
    expect_msg("tg_manual_lstm_stack_forward", "weight_ih_l1 [16,3]", "[16,4]");
    tg_release(bad);

    /* h0 with the wrong number of layers */
    cr_expect_null(tg_manual_lstm_stack_forward(2, n.x, h0, n.c0, n.p, NULL, NULL, NULL));
    expect_msg("tg_manual_lstm_stack_forward", "h0 is [2,4]", "[L,B,H]");
    tg_tensor *h3 = tg_zeros(TG_F64, 3, (int64_t[]){3, 2, 4});
    cr_expect_null(tg_manual_gru_stack_forward(2, n.x, h3, n.p, NULL, NULL));
    expect_msg("tg_manual_gru_stack_forward", "h0 [3,2,4]", "[2,2,4]");
    tg_release(h3);

    /* mixed dtypes */
    tg_tensor *x32 = tg_to_dtype(n.x, TG_F32);
    cr_expect_null(tg_manual_lstm_forward(x32, h0, c0, &n.p[0], NULL, NULL, NULL));
    expect_msg("tg_manual_lstm_forward", "mixed dtypes", "F32");
    tg_release(x32);

    /* x of the wrong rank, c0 not matching h0 */
    cr_expect_null(tg_manual_lstm_cell_forward(n.x, h0, c0, &n.p[0], NULL, NULL));
    expect_msg("tg_manual_lstm_cell_forward", "x is [3,2,3]", "[B,I]");
    cr_expect_null(tg_manual_lstm_forward(n.x, h0, n.c0, &n.p[0], NULL, NULL, NULL));
    expect_msg("tg_manual_lstm_forward", "c0 [2,2,4]", "h0 [2,4]");

    /* NULL arguments; a NULL from an earlier failure keeps the first message */
    cr_expect_null(tg_manual_rnn_forward(TG_MANUAL_TANH, NULL, h0, &n.p[0], NULL, NULL));
    expect_msg("tg_manual_rnn_forward", "x is NULL", NULL);
    cr_expect_null(tg_manual_gru_forward(n.x, h0, NULL, NULL, NULL));
    expect_msg("tg_manual_gru_forward", "params is NULL", NULL);
    tg_error("earlier_op", "first failure");
    cr_expect_null(tg_manual_lstm_forward(NULL, h0, c0, &n.p[0], NULL, NULL, NULL));
    cr_expect_eq(tg_manual_lstm_backward(NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL), -1);
    expect_msg("earlier_op", "first failure", NULL);

    /* a good LSTM sequence cache, then misuse it */
    tg_tensor *y = tg_manual_lstm_forward(n.x, h0, c0, &n.p[0], NULL, NULL, &c);
    cr_assert_not_null(y, "%s", th_last_message());
    tg_tensor *dx = (tg_tensor *)1, *dh = (tg_tensor *)1, *dc = (tg_tensor *)1;
    tg_manual_layer g = {0};
    cr_expect_eq(tg_manual_gru_backward(c, n.dy, NULL, &g, &dx, &dh), -1);
    cr_expect_null(dx);
    cr_expect_null(dh);
    cr_expect_null(g.weight_ih);
    expect_msg("tg_manual_gru_backward", "tg_manual_lstm_forward", "tg_manual_gru_forward");
    cr_expect_eq(tg_manual_lstm_cell_backward(c, NULL, NULL, &g, &dx, &dh, &dc), -1);
    expect_msg("tg_manual_lstm_cell_backward", "tg_manual_lstm_cell_forward", NULL);
    tg_tensor *dyb = tg_zeros(TG_F64, 3, (int64_t[]){3, 2, 5});
    cr_expect_eq(tg_manual_lstm_backward(c, dyb, NULL, NULL, &g, &dx, &dh, &dc), -1);
    expect_msg("tg_manual_lstm_backward", "dy [3,2,5]", "[T,B,H] = [3,2,4]");
    tg_release(dyb);
    tg_tensor *dcb = tg_zeros(TG_F32, 2, (int64_t[]){2, 4});
    cr_expect_eq(tg_manual_lstm_backward(c, n.dy, NULL, dcb, &g, &dx, &dh, &dc), -1);
    expect_msg("tg_manual_lstm_backward", "mixed dtypes", "dc_last");
    tg_release(dcb);
    g.bias_hh = tg_zeros(TG_F64, 1, (int64_t[]){15});
    cr_expect_eq(tg_manual_lstm_backward(c, n.dy, NULL, NULL, &g, &dx, &dh, &dc), -1);
    expect_msg("tg_manual_lstm_backward", "grads bias_hh [15]", "[16]");
    cr_expect_null(g.weight_ih, "nothing allocated on failure");
    tg_release(g.bias_hh);
    g.bias_hh = NULL;
    /* stale: the weights changed in place after the forward */
    tg_scale_(n.p[0].weight_hh, 1.0);
    cr_expect_eq(tg_manual_lstm_backward(c, n.dy, NULL, NULL, &g, &dx, &dh, &dc), -1);
    expect_msg("tg_manual_lstm_backward", "weight_hh was modified in place", NULL);
    tg_manual_cache_free(c);
    tg_release(y);

    /* the output y changed in place */
    y = tg_manual_lstm_forward(n.x, h0, c0, &n.p[0], NULL, NULL, &c);
    tg_scale_(y, 2.0);
    cr_expect_eq(tg_manual_lstm_backward(c, n.dy, NULL, NULL, &g, &dx, &dh, &dc), -1);
    expect_msg("tg_manual_lstm_backward", "output y was modified in place", NULL);
    tg_manual_cache_free(c);
    tg_release(y);

    /* bad enums and layer counts */
    cr_expect_null(tg_manual_stack_forward((tg_manual_cell)9, 1, n.x, h0, c0, n.p, NULL, NULL, NULL));
    expect_msg("tg_manual_stack_forward", "unknown cell 9", NULL);
    cr_expect_null(tg_manual_rnn_forward((tg_manual_act)7, n.x, h0, n.p, NULL, NULL));
    expect_msg("tg_manual_rnn_forward", "unknown activation 7", NULL);
    cr_expect_null(tg_manual_gru_stack_forward(0, n.x, n.h0, n.p, NULL, NULL));
    expect_msg("tg_manual_gru_stack_forward", "layers = 0", NULL);

    tg_release(h0), tg_release(c0);
    net_free(&n);
    th_quiet_handler();
    th_reset_errors();
}

TH_TEST(manual, helpers, th_quiet_check) {
    tg_manual_cell c = TG_MANUAL_RNN_TANH;
    cr_expect_eq(tg_manual_cell_parse("gru", &c), 0);
    cr_expect_eq(c, TG_MANUAL_GRU);
    cr_expect_eq(tg_manual_cell_parse("gru_reset_before", &c), 0);
    cr_expect_eq(c, TG_MANUAL_GRU_RESET_BEFORE);
    cr_expect_eq(tg_manual_cell_gates(c), 3);
    cr_expect_str_eq(tg_manual_cell_name(c), "gru_reset_before");
    cr_expect_eq(tg_manual_cell_parse("lstm", &c), 0);
    cr_expect_eq(c, TG_MANUAL_LSTM);
    cr_expect_eq(tg_manual_cell_parse("rnn_relu", &c), 0);
    cr_expect_eq(c, TG_MANUAL_RNN_RELU);
    cr_expect_eq(tg_manual_cell_parse("rnn", &c), -1);
    cr_expect_eq(tg_manual_cell_parse(NULL, &c), -1);
    cr_expect_str_eq(tg_manual_cell_name(TG_MANUAL_RNN_TANH), "rnn_tanh");
    cr_expect_eq(tg_manual_cell_gates(TG_MANUAL_LSTM), 4);
    cr_expect_eq(tg_manual_cell_gates(TG_MANUAL_GRU), 3);
    cr_expect_eq(tg_manual_cell_gates(TG_MANUAL_RNN_RELU), 1);
    net n;
    net_make(&n, TG_MANUAL_GRU, 2, 5, 3, 2, 4, 1400);
    tg_manual_cache *cache;
    tg_tensor *y = tg_manual_gru_stack_forward(2, n.x, n.h0, n.p, NULL, &cache);
    int L;
    int64_t T, B, I, H;
    cr_assert_eq(tg_manual_cache_info(cache, &c, &L, &T, &B, &I, &H), 0);
    cr_expect(c == TG_MANUAL_GRU && L == 2 && T == 5 && B == 3 && I == 2 && H == 4);
    tg_manual_cache_free(cache);
    tg_manual_cache_free(NULL);
    tg_release(y);
    net_free(&n);
}
