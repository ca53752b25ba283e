/* tools/grad.c - the conformance computation behind `tapegrad grad` (docs/design.md §8).
 *
 * IN holds x [T,B,I], h0 [L,B,H], c0 [L,B,H] (lstm), per layer k weight_ih_l{k} [G·H, I_k],
 * weight_hh_l{k} [G·H, H], bias_ih_l{k} [G·H], bias_hh_l{k} [G·H], and upstream gradients
 * dy [T,B,H], dhn [L,B,H], dcn [L,B,H] (lstm). We run the stacked network in the input's dtype,
 * take loss = Σ y⊙dy + Σ hn⊙dhn (+ Σ cn⊙dcn), back-propagate (with the tape, or the hand-derived
 * BPTT for --manual) and write y, hn, cn, grad.x, grad.h0, grad.c0, grad.<param>.
 * An LSTM case holding weight_hr_l{k} [P, H] (torch.nn.LSTM(proj_size=P)) has projections: weight_hh
 * is [4H, P], h0 / hn / dhn are [L,B,P], dy [T,B,P], layer k > 0 reads P, and grad.weight_hr_l{k} is
 * written too.
 * Dimension letters: T time, B batch, I input size, H hidden size, P projection size, G gates, L layers. */
#include "tools/grad.h"

#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <errno.h>

#include <tapegrad/manual.h>
#include <tapegrad/nn.h>
#include <tapegrad/tapegrad.h>

#define MAX_LAYERS 64
#define NP_MAX 5 /* weight_ih, weight_hh, bias_ih, bias_hh, weight_hr (projections) */
#define MAX_OUT (8 + NP_MAX * MAX_LAYERS)

static const char *const param_base[NP_MAX] = {"weight_ih", "weight_hh", "bias_ih", "bias_hh", "weight_hr"};

typedef struct grad_case {
    tg_manual_cell cell;
    bool lstm;
    int L;
    int64_t T, B, I, H, G;
    int64_t P;                              /* proj_size (weight_hr_l0 present), else 0 */
    int np;                                 /* parameters per layer: 4, or 5 with weight_hr */
    tg_dtype dtype;
    tg_tensor *x, *h0, *c0, *dy, *dhn, *dcn; /* borrowed from the file */
    tg_manual_layer layer[MAX_LAYERS];      /* borrowed from the file */
} grad_case;

static int fail(char *err, size_t size, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int fail(char *err, size_t size, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, size, fmt, ap);
    va_end(ap);
    return -1;
}

static char *fmt_shape(int ndim, const int64_t *shape, char *buf, size_t size) {
    size_t n = (size_t)snprintf(buf, size, "[");
    for (int i = 0; i < ndim && n < size; i++) n += (size_t)snprintf(buf + n, size - n, i ? ",%lld" : "%lld", (long long)shape[i]);
    if (n < size) snprintf(buf + n, size - n, "]");
    return buf;
}

static int expect_shape(const tg_st_file *f, const char *name, int ndim, const int64_t *shape, tg_tensor **out,
                        char *err, size_t size) {
    tg_tensor *t = tg_st_get(f, name);
    char want[128], got[128];
    if (!t) return fail(err, size, "missing tensor '%s' (expected shape %s)", name, fmt_shape(ndim, shape, want, sizeof want));
    bool ok = tg_ndim(t) == ndim;
    for (int d = 0; ok && d < ndim; d++) ok = tg_shape(t)[d] == shape[d];
    if (!ok)
        return fail(err, size, "tensor '%s' has shape %s, expected %s", name, tg_shape_str(t, got, sizeof got),
                    fmt_shape(ndim, shape, want, sizeof want));
    *out = t;
    return 0;
}

/* Validates everything about the case before any computation. */
static int read_case(const tg_st_file *f, const char *cell_name, grad_case *c, char *err, size_t size) {
    memset(c, 0, sizeof *c);
    if (tg_manual_cell_parse(cell_name, &c->cell) != 0)
        return fail(err, size, "unknown cell '%s' (expected rnn_tanh, rnn_relu, lstm or gru, or gru_reset_before)", cell_name);
    c->lstm = c->cell == TG_MANUAL_LSTM;
    c->G = tg_manual_cell_gates(c->cell);
    const char *meta = tg_st_meta(f, "cell");
    if (meta && strcmp(meta, cell_name) != 0)
        return fail(err, size, "the case was made for cell '%s' (its metadata says so), not '%s'", meta, cell_name);
    if (tg_st_count(f) == 0) return fail(err, size, "the file holds no tensors");
    c->dtype = tg_dtype_of(tg_st_tensor_at(f, 0));
    for (int i = 1; i < tg_st_count(f); i++)
        if (tg_dtype_of(tg_st_tensor_at(f, i)) != c->dtype)
            return fail(err, size, "mixed dtypes: '%s' is %s but '%s' is %s", tg_st_name_at(f, 0), tg_dtype_name(c->dtype),
                        tg_st_name_at(f, i), tg_dtype_name(tg_dtype_of(tg_st_tensor_at(f, i))));
    c->x = tg_st_get(f, "x");
    char got[128];
    if (!c->x) return fail(err, size, "missing tensor 'x' (expected [T,B,I])");
    if (tg_ndim(c->x) != 3) return fail(err, size, "tensor 'x' has shape %s, expected 3 dimensions [T,B,I]", tg_shape_str(c->x, got, sizeof got));
    c->T = tg_shape(c->x)[0];
    c->B = tg_shape(c->x)[1];
    c->I = tg_shape(c->x)[2];
    if (c->T < 1 || c->B < 1 || c->I < 1) return fail(err, size, "tensor 'x' has shape %s: T, B and I must be at least 1", tg_shape_str(c->x, got, sizeof got));
    /* layers: weight_ih_l0, weight_ih_l1, ... without gaps */
    char name[64];
    for (c->L = 0; c->L < MAX_LAYERS; c->L++) {
        snprintf(name, sizeof name, "weight_ih_l%d", c->L);
        if (!tg_st_get(f, name)) break;
    }
    if (c->L == 0) return fail(err, size, "missing tensor 'weight_ih_l0' (no layers)");
    for (int i = 0; i < tg_st_count(f); i++) {
        const char *n = tg_st_name_at(f, i);
        for (int p = 0; p < NP_MAX; p++) {
            size_t bl = strlen(param_base[p]);
            if (!strncmp(n, param_base[p], bl) && !strncmp(n + bl, "_l", 2)) {
                long k = strtol(n + bl + 2, NULL, 10);
                if (k >= c->L) return fail(err, size, "tensor '%s' belongs to layer %ld but weight_ih_l%ld is missing (layers must be 0..L-1)", n, k, k);
            }
        }
    }
    tg_tensor *whh0 = tg_st_get(f, "weight_hh_l0");
    if (!whh0) return fail(err, size, "missing tensor 'weight_hh_l0'");
    if (tg_ndim(whh0) != 2) return fail(err, size, "tensor 'weight_hh_l0' has shape %s, expected [G*H,H]", tg_shape_str(whh0, got, sizeof got));
    c->H = tg_shape(whh0)[1];
    if (c->H < 1) return fail(err, size, "tensor 'weight_hh_l0' has shape %s: H must be at least 1", tg_shape_str(whh0, got, sizeof got));
    tg_tensor *whr0 = tg_st_get(f, "weight_hr_l0");
    c->np = 4;
    if (whr0) { /* projections: weight_hh_l0 [4H, P], weight_hr_l0 [P, H] */
        if (!c->lstm) return fail(err, size, "tensor 'weight_hr_l0' (projections, proj_size) is for cell lstm only, not '%s'", cell_name);
        if (tg_ndim(whr0) != 2 || tg_shape(whr0)[0] != c->H || tg_shape(whr0)[1] <= c->H)
            return fail(err, size, "tensor 'weight_hr_l0' has shape %s, expected [P,H] with P = %lld (weight_hh_l0's columns) < H",
                        tg_shape_str(whr0, got, sizeof got), (long long)c->H);
        c->P = c->H;
        c->H = tg_shape(whr0)[1];
        c->np = 5;
    }
    int64_t GH = c->G * c->H, Rw = c->P ? c->P : c->H; /* Rw: the width of h */
    for (int k = 0; k < c->L; k++) {
        int64_t Ik = k == 0 ? c->I : Rw;
        tg_tensor **slot[NP_MAX] = {&c->layer[k].weight_ih, &c->layer[k].weight_hh, &c->layer[k].bias_ih,
                                    &c->layer[k].bias_hh, &c->layer[k].weight_hr};
        int64_t shapes[NP_MAX][2] = {{GH, Ik}, {GH, Rw}, {GH, 0}, {GH, 0}, {c->P, c->H}};
        for (int p = 0; p < c->np; p++) {
            snprintf(name, sizeof name, "%s_l%d", param_base[p], k);
            if (expect_shape(f, name, p < 2 || p == 4 ? 2 : 1, shapes[p], slot[p], err, size)) return -1;
        }
        snprintf(name, sizeof name, "weight_hr_l%d", k);
        if (!c->P && tg_st_get(f, name)) return fail(err, size, "tensor '%s' is present but 'weight_hr_l0' is not (projections on every layer or none)", name);
    }
    int64_t LBH[3] = {c->L, c->B, c->H}, LBR[3] = {c->L, c->B, Rw}, TBR[3] = {c->T, c->B, Rw};
    if (expect_shape(f, "h0", 3, LBR, &c->h0, err, size) || expect_shape(f, "dy", 3, TBR, &c->dy, err, size) ||
        expect_shape(f, "dhn", 3, LBR, &c->dhn, err, size))
        return -1;
    if (c->lstm && (expect_shape(f, "c0", 3, LBH, &c->c0, err, size) || expect_shape(f, "dcn", 3, LBH, &c->dcn, err, size)))
        return -1;
    /* The tensors define the case; metadata is optional, but metadata that contradicts them means the
     * file was assembled from mismatched parts, so it is refused rather than silently ignored. Only
     * values that are plain integers (and dtype names) are compared. */
    const struct { const char *key; int64_t value; } dims[] = {{"layers", c->L}, {"T", c->T}, {"B", c->B}, {"I", c->I}, {"H", c->H},
                                                               {"proj_size", c->P}};
    for (size_t k = 0; k < sizeof dims / sizeof dims[0]; k++) {
        const char *v = tg_st_meta(f, dims[k].key);
        if (!v || !*v) continue;
        char *end;
        errno = 0;
        long long m = strtoll(v, &end, 10);
        if (*end || errno) continue;
        if (m != dims[k].value)
            return fail(err, size, "the metadata says %s = %s but the tensors give %s = %lld", dims[k].key, v, dims[k].key,
                        (long long)dims[k].value);
    }
    const char *md = tg_st_meta(f, "dtype");
    if (md) {
        bool f32 = !strcasecmp(md, "F32") || !strcasecmp(md, "float32"), f64 = !strcasecmp(md, "F64") || !strcasecmp(md, "float64");
        if ((f32 && c->dtype != TG_F32) || (f64 && c->dtype != TG_F64))
            return fail(err, size, "the metadata says dtype %s but the tensors are %s", md, tg_dtype_name(c->dtype));
    }
    return 0;
}

/* Σ a⊙b over all elements, as a tape-owned 0-d tensor */
static tg_tensor *dot(const tg_tensor *a, const tg_tensor *b) { return tg_sum(tg_mul(a, b)); }

static int run_tape(const grad_case *c, const char *cell_name, const char **names, tg_tensor **outs, int *n_out) {
    tg_rnn_config cfg = {.input_size = c->I, .hidden_size = c->H, .num_layers = c->L, .dtype = c->dtype,
                         .proj_size = c->P};
    tg_rnn *m = tg_rnn_new(tg_cell_by_name(cell_name), &cfg, NULL);
    if (!m) return -1;
    char name[64];
    for (int k = 0; k < c->L; k++) {
        const tg_tensor *src[NP_MAX] = {c->layer[k].weight_ih, c->layer[k].weight_hh, c->layer[k].bias_ih,
                                        c->layer[k].bias_hh, c->layer[k].weight_hr};
        for (int p = 0; p < c->np; p++) {
            snprintf(name, sizeof name, "%s_l%d", param_base[p], k);
            tg_tensor *dst = tg_params_find(m->params, name);
            if (!dst || tg_copy_(dst, src[p]) != 0) { tg_rnn_free(m); return -1; }
        }
    }
    tg_tensor *x = tg_copy(c->x), *h0 = tg_copy(c->h0), *c0 = c->lstm ? tg_copy(c->c0) : NULL;
    tg_set_requires_grad(x, true);
    tg_set_requires_grad(h0, true);
    if (c0) tg_set_requires_grad(c0, true);
    tg_tensor *init[2] = {h0, c0};
    tg_rnn_output out;
    int status = -1;
    tg_tensor *y = tg_rnn_forward(m, x, &(tg_rnn_forward_opts){.init = init}, &out);
    if (y) {
        tg_tensor *loss = tg_add(dot(y, c->dy), dot(out.h_n, c->dhn));
        if (c->lstm) loss = tg_add(loss, dot(out.c_n, c->dcn));
        if (loss && tg_backward(loss) == 0) {
            int n = 0;
            names[n] = "y"; outs[n++] = tg_retain(y);
            names[n] = "hn"; outs[n++] = tg_retain(out.h_n);
            if (c->lstm) { names[n] = "cn"; outs[n++] = tg_retain(out.c_n); }
            names[n] = "grad.x"; outs[n++] = tg_retain(tg_grad(x));
            names[n] = "grad.h0"; outs[n++] = tg_retain(tg_grad(h0));
            if (c->lstm) { names[n] = "grad.c0"; outs[n++] = tg_retain(tg_grad(c0)); }
            for (int k = 0; k < c->L; k++)
                for (int p = 0; p < c->np; p++) {
                    snprintf(name, sizeof name, "%s_l%d", param_base[p], k);
                    tg_tensor *g = tg_grad(tg_params_find(m->params, name));
                    names[n] = NULL; /* filled by the caller from the layer index */
                    outs[n++] = g ? tg_retain(g) : tg_zeros_like(tg_params_find(m->params, name));
                }
            *n_out = n;
            status = 0;
        }
        tg_rnn_output_clear(&out);
    }
    tg_tape_reset();
    tg_release(x); tg_release(h0); tg_release(c0);
    tg_rnn_free(m);
    return status;
}

static int run_manual(const grad_case *c, const char **names, tg_tensor **outs, int *n_out) {
    tg_tensor *hn = NULL, *cn = NULL, *dx = NULL, *dh0 = NULL, *dc0 = NULL;
    tg_manual_cache *cache = NULL;
    tg_manual_layer grads[MAX_LAYERS];
    memset(grads, 0, sizeof grads);
    tg_tensor *y = tg_manual_stack_forward(c->cell, c->L, c->x, c->h0, c->c0, c->layer, &hn, c->lstm ? &cn : NULL, &cache);
    int status = -1;
    if (y && tg_manual_stack_backward(cache, c->dy, c->dhn, c->dcn, grads, &dx, &dh0, c->lstm ? &dc0 : NULL) == 0) {
        int n = 0;
        names[n] = "y"; outs[n++] = y; y = NULL;
        names[n] = "hn"; outs[n++] = hn; hn = NULL;
        if (c->lstm) { names[n] = "cn"; outs[n++] = cn; cn = NULL; }
        names[n] = "grad.x"; outs[n++] = dx; dx = NULL;
        names[n] = "grad.h0"; outs[n++] = dh0; dh0 = NULL;
        if (c->lstm) { names[n] = "grad.c0"; outs[n++] = dc0; dc0 = NULL; }
        for (int k = 0; k < c->L; k++) {
            tg_tensor *g[NP_MAX] = {grads[k].weight_ih, grads[k].weight_hh, grads[k].bias_ih, grads[k].bias_hh,
                                    grads[k].weight_hr};
            for (int p = 0; p < c->np; p++) { names[n] = NULL; outs[n++] = tg_retain(g[p]); }
        }
        *n_out = n;
        status = 0;
    }
    tg_manual_layer_release(grads, c->L);
    tg_manual_cache_free(cache);
    tg_release(y); tg_release(hn); tg_release(cn); tg_release(dx); tg_release(dh0); tg_release(dc0);
    return status;
}

int tg_grad_run(const char *cell, const char *in_path, const char *out_path, bool manual, char *err, size_t size) {
    tg_clear_error();
    tg_st_file *f = tg_st_load(in_path);
    if (!f) return fail(err, size, "%s", tg_last_error());
    grad_case c;
    if (read_case(f, cell, &c, err, size) != 0) { tg_st_free(f); return -1; }
    const char *names[MAX_OUT];
    tg_tensor *outs[MAX_OUT];
    int n = 0;
    int s = manual ? run_manual(&c, names, outs, &n) : run_tape(&c, cell, names, outs, &n);
    if (s != 0) {
        fail(err, size, "computation failed: %s", tg_error_pending() ? tg_last_error() : "unknown error");
        tg_st_free(f);
        return -1;
    }
    static char pnames[NP_MAX * MAX_LAYERS][48];
    int first_param = n - c.np * c.L;
    for (int k = 0; k < c.L; k++)
        for (int p = 0; p < c.np; p++) {
            int i = c.np * k + p;
            snprintf(pnames[i], sizeof pnames[0], "grad.%s_l%d", param_base[p], k);
            names[first_param + i] = pnames[i];
        }
    const char *meta[] = {"producer", manual ? "tapegrad grad --manual (hand-derived BPTT)" : "tapegrad grad (tape)",
                          "cell", cell};
    int w = tg_st_save(out_path, n, names, outs, 2, meta);
    if (w != 0) fail(err, size, "%s", tg_last_error());
    for (int i = 0; i < n; i++) tg_release(outs[i]);
    tg_st_free(f);
    return w;
}
