/* nn/compare.c - the gradient triple check (tape BPTT vs hand-derived BPTT vs central finite
 * differences) of any registered cell; see include/tapegrad/compare.h for what is computed.
 *
 * Dimension letters: T time steps, B batch, I input size, H hidden size, L layers, S state tensors
 * of the cell (h, or h and c, ...), G gates.
 *
 * Everything here is an ordinary user of the public API: a tg_rnn built from the seed, one forward
 * and backward on the tape, one run of the hand-derived reference on the very same parameter tensors,
 * and finite differences that perturb those tensors in place and re-run tg_rnn_forward under no-grad.
 * The three sets of gradients are then compared element by element. */
#include <tapegrad/autograd.h>
#include <tapegrad/compare.h>
#include <tapegrad/memory.h>
#include <tapegrad/manual.h>
#include <tapegrad/nn.h>
#include <tapegrad/ops.h>
#include "tensor/alloc.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define FN "tg_compare_cell"

static const char *const g_param_base[5] = {"weight_ih", "weight_hh", "bias_ih", "bias_hh", "weight_hr"};

tg_compare_opts tg_compare_defaults(void) {
    return (tg_compare_opts){.T = 5, .B = 3, .I = 4, .H = 6, .layers = 2, .seed = 1, .max_elems = 0,
                             .eps = 1e-6, .manual_tol = 1e-10, .fd_atol = 1e-6, .fd_rtol = 1e-5};
}

/* Everything one check holds; every tensor is a new ref released by ctx_free. */
typedef struct ctx {
    const tg_cell *cell;
    tg_compare_opts o;
    int S;                                   /* states of the cell */
    tg_rnn *m;
    tg_tensor *x;                            /* [T,B,I] */
    tg_tensor *init[TG_CELL_MAX_STATES];     /* [L,B,H] each */
    tg_tensor *dy;                           /* [T,B,H] */
    tg_tensor *dfinal[TG_CELL_MAX_STATES];   /* [L,B,H] each: upstream gradient of the final states */
    int n;                                   /* checked tensors: x, init[0..S-1], every parameter */
    tg_tensor **inputs;                      /* [n] borrowed (x, init, or the model's parameters) */
    tg_tensor **g_tape, **g_manual, **g_fd;  /* [n] gradients (g_fd: NaN where not computed) */
    int64_t *fd_count;                       /* [n] elements computed by FD */
    tg_tensor *out_tape[1 + TG_CELL_MAX_STATES]; /* y, final states: copies from the tape's run */
} ctx;

static void ctx_free(ctx *c) {
    tg_release(c->x);
    tg_release(c->dy);
    for (int s = 0; s < TG_CELL_MAX_STATES; s++) { tg_release(c->init[s]); tg_release(c->dfinal[s]); }
    for (int s = 0; s < 1 + TG_CELL_MAX_STATES; s++) tg_release(c->out_tape[s]);
    for (int i = 0; i < c->n; i++) {
        if (c->g_tape) tg_release(c->g_tape[i]);
        if (c->g_manual) tg_release(c->g_manual[i]);
        if (c->g_fd) tg_release(c->g_fd[i]);
    }
    free(c->inputs); free(c->g_tape); free(c->g_manual); free(c->g_fd); free(c->fd_count);
    tg_rnn_free(c->m);
}

/* loss = Σ y⊙dy + Σ_s final_s⊙dfinal_s, as a tape-owned 0-d tensor (NULL after an error).
 * With `keep`, copies of y and the final states are stored in c->out_tape. */
static tg_tensor *loss_of(ctx *c, bool keep) {
    tg_rnn_output out;
    tg_tensor *y = tg_rnn_forward(c->m, c->x, &(tg_rnn_forward_opts){.init = c->init}, &out);
    if (!y) return NULL;
    tg_tensor *loss = tg_sum(tg_mul(y, c->dy));
    for (int s = 0; s < c->S; s++) loss = tg_add(loss, tg_sum(tg_mul(out.final[s], c->dfinal[s])));
    if (keep && loss) {
        c->out_tape[0] = tg_copy(y);
        if (!c->out_tape[0]) loss = NULL; /* out of memory (tg_error said so): no output to compare */
        for (int s = 0; s < c->S; s++)
            if (!(c->out_tape[1 + s] = tg_copy(out.final[s]))) loss = NULL;
    }
    tg_rnn_output_clear(&out);
    return loss;
}

/* (a) the tape: one forward, one backward; gradients copied out, then dropped. */
static int run_tape(ctx *c) {
    for (int i = 0; i < 1 + c->S; i++) tg_set_requires_grad(c->inputs[i], true);
    tg_tensor *loss = loss_of(c, true);
    int status = loss ? tg_backward(loss) : -1;
    for (int i = 0; i < c->n && status == 0; i++) {
        tg_tensor *g = tg_grad(c->inputs[i]);
        c->g_tape[i] = g ? tg_copy(g) : tg_zeros_like(c->inputs[i]); /* no path to the loss: zero */
        if (!c->g_tape[i]) status = -1; /* out of memory, tg_error said so: never a gradient of zeros */
    }
    for (int i = 0; i < c->n; i++) tg_zero_grad(c->inputs[i]);
    for (int i = 0; i < 1 + c->S; i++) tg_set_requires_grad(c->inputs[i], false);
    tg_tape_reset();
    return status;
}

/* Row index of the checked tensor called `name` (a parameter name), or -1. */
static int find_param(const ctx *c, const char *name) {
    for (int i = 1 + c->S; i < c->n; i++)
        if (!strcmp(tg_params_name_at(c->m->params, i - 1 - c->S), name)) return i;
    return -1;
}

static void diff_update(tg_compare_diff *d, const tg_tensor *a, const tg_tensor *b, double *ref_max);

/* The forward outputs of (a) and (b), all together: the scale is the largest |output| of any of them. */
static void diff_forward(const ctx *c, tg_compare_diff *fwd, tg_tensor *const *outs, int n) {
    double ref_max = 0;
    *fwd = (tg_compare_diff){.done = true, .worst_index = -1};
    for (int s = 0; s < n; s++) diff_update(fwd, c->out_tape[s], outs[s], &ref_max);
    fwd->max_rel = fwd->max_abs / fmax(1.0, ref_max);
    fwd->pass = fwd->max_rel <= c->o.manual_tol;
}

/* (b) with the cell's own hook (cell->manual): tg_cell_manual_bptt on the same model and data. */
static int run_hook(ctx *c, tg_compare_diff *fwd) {
    tg_cell_manual_result res;
    if (tg_cell_manual_bptt(c->m, c->x, c->init, c->dy, c->dfinal, &res)) return -1;
    tg_tensor *outs[1 + TG_CELL_MAX_STATES] = {res.y};
    for (int s = 0; s < c->S; s++) outs[1 + s] = res.final[s];
    diff_forward(c, fwd, outs, 1 + c->S);
    c->g_manual[0] = res.dx;
    res.dx = NULL;
    for (int s = 0; s < c->S; s++) { c->g_manual[1 + s] = res.dinit[s]; res.dinit[s] = NULL; }
    for (int i = 1 + c->S; i < c->n; i++) {
        tg_tensor *g = tg_params_find(res.grads, tg_params_name_at(c->m->params, i - 1 - c->S));
        c->g_manual[i] = g ? tg_copy(g) : NULL; /* a parameter the hook gave no gradient: not compared */
        if (g && !c->g_manual[i]) { tg_cell_manual_result_clear(&res); return -1; } /* out of memory */
    }
    tg_cell_manual_result_clear(&res);
    return 0;
}

/* (b) the hand-derived reference, on the model's own parameter tensors. Fills g_manual and compares
 * the forward outputs into *fwd. Returns 1 when the cell has no reference, 0 when done, -1 on error. */
static int run_manual(ctx *c, tg_compare_diff *fwd) {
    if (c->cell->manual) return run_hook(c, fwd);
    tg_manual_cell mc;
    if (tg_manual_cell_parse(c->cell->name, &mc) != 0 || c->cell->n_extra != 0 || !c->m->bias) return 1;
    int L = c->o.layers;
    bool lstm = mc == TG_MANUAL_LSTM;
    tg_manual_layer *params = tg_calloc((size_t)L, sizeof *params), *grads = tg_calloc((size_t)L, sizeof *grads);
    if (!params || !grads) { free(params); free(grads); tg_error(FN, "out of memory"); return -1; }
    for (int k = 0; k < L; k++) {
        const tg_cell_params *p = tg_rnn_layer(c->m, k, 0);
        params[k] = (tg_manual_layer){p->weight_ih, p->weight_hh, p->bias_ih, p->bias_hh, p->weight_hr};
    }
    tg_tensor *hn = NULL, *cn = NULL, *dx = NULL, *dh0 = NULL, *dc0 = NULL;
    tg_manual_cache *cache = NULL;
    tg_tensor *y = tg_manual_stack_forward(mc, L, c->x, c->init[0], lstm ? c->init[1] : NULL, params, &hn,
                                           lstm ? &cn : NULL, &cache);
    int status = -1;
    if (y && tg_manual_stack_backward(cache, c->dy, c->dfinal[0], lstm ? c->dfinal[1] : NULL, grads, &dx, &dh0,
                                      lstm ? &dc0 : NULL) == 0) {
        tg_tensor *outs[3] = {y, hn, cn};
        diff_forward(c, fwd, outs, lstm ? 3 : 2);
        c->g_manual[0] = dx; dx = NULL;
        c->g_manual[1] = dh0; dh0 = NULL;
        if (lstm) { c->g_manual[2] = dc0; dc0 = NULL; }
        char name[64];
        for (int k = 0; k < L; k++) {
            tg_tensor **g[5] = {&grads[k].weight_ih, &grads[k].weight_hh, &grads[k].bias_ih, &grads[k].bias_hh,
                                &grads[k].weight_hr};
            for (int p = 0; p < 5; p++) {
                snprintf(name, sizeof name, "%s_l%d", g_param_base[p], k);
                int row = find_param(c, name);
                if (row >= 0) { c->g_manual[row] = *g[p]; *g[p] = NULL; }
            }
        }
        status = 0;
    }
    tg_manual_layer_release(grads, L);
    tg_manual_cache_free(cache);
    tg_release(y); tg_release(hn); tg_release(cn); tg_release(dx); tg_release(dh0); tg_release(dc0);
    free(params);
    free(grads);
    return status;
}

/* The loss in double, evaluated without recording. */
static double loss_value(ctx *c, int *status) {
    tg_tensor *loss = loss_of(c, false);
    double v = loss ? tg_item(loss) : NAN;
    if (!loss) *status = -1;
    tg_tape_reset();
    return v;
}

/* (c) central differences for the elements of input i (all, or a seeded subset of max_elems). */
static int run_fd(ctx *c, int i) {
    tg_tensor *t = c->inputs[i];
    int64_t numel = tg_numel(t);
    c->g_fd[i] = tg_full(TG_F64, tg_ndim(t), tg_shape(t), NAN);
    int64_t *order = tg_malloc((size_t)numel * sizeof *order);
    if (!c->g_fd[i] || !order) { free(order); tg_error(FN, "out of memory"); return -1; }
    for (int64_t j = 0; j < numel; j++) order[j] = j;
    int64_t count = numel;
    if (c->o.max_elems > 0 && numel > c->o.max_elems) {
        /* partial Fisher-Yates: the first max_elems entries become a uniform sample without repetition */
        tg_rng rng;
        tg_rng_seed(&rng, c->o.seed * 0x9E3779B97F4A7C15ull + (uint64_t)i + 1);
        count = c->o.max_elems;
        for (int64_t j = 0; j < count; j++) {
            int64_t k = j + (int64_t)tg_rng_below(&rng, (uint64_t)(numel - j));
            int64_t tmp = order[j]; order[j] = order[k]; order[k] = tmp;
        }
    }
    double *v = tg_f64(t), *fd = tg_f64(c->g_fd[i]);
    int status = 0;
    double eps = c->o.eps;
    tg_no_grad_begin();
    for (int64_t n = 0; n < count && status == 0; n++) {
        int64_t j = order[n];
        double v0 = v[j];
        v[j] = v0 + eps;
        tg_bump_version(t);
        double lp = loss_value(c, &status);
        v[j] = v0 - eps;
        tg_bump_version(t);
        double lm = loss_value(c, &status);
        v[j] = v0; /* restored exactly */
        tg_bump_version(t);
        fd[j] = (lp - lm) / (2 * eps);
    }
    tg_no_grad_end();
    c->fd_count[i] = count;
    free(order);
    return status;
}

/* Folds |a - b| over the elements where b is not NaN into d (max_abs, worst_index) and max |b| into
 * *ref_max. The caller sets max_rel and pass. */
static void diff_update(tg_compare_diff *d, const tg_tensor *a, const tg_tensor *b, double *ref_max) {
    int64_t n = tg_numel(a);
    for (int64_t j = 0; j < n; j++) {
        double bj = tg_get(b, j);
        if (isnan(bj)) continue;
        double e = fabs(tg_get(a, j) - bj);
        if (isnan(e)) e = INFINITY;
        if (e > d->max_abs || d->worst_index < 0) { d->max_abs = e; d->worst_index = j; }
        if (fabs(bj) > *ref_max) *ref_max = fabs(bj);
    }
}

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static tg_compare_diff diff_manual(const ctx *c, const tg_tensor *a, const tg_tensor *b) {
    tg_compare_diff d = {.done = true, .worst_index = -1};
    double ref_max = 0;
    diff_update(&d, a, b, &ref_max);
    d.max_rel = d.max_abs / fmax(1.0, ref_max);
    d.pass = d.max_rel <= c->o.manual_tol;
    return d;
}

/* against FD (b may hold NaN where no FD was computed): per-element atol + rtol |n| */
static tg_compare_diff diff_fd(const ctx *c, const tg_tensor *a, const tg_tensor *fd) {
    tg_compare_diff d = {.done = true, .worst_index = -1, .pass = true};
    double ref_max = 0;
    diff_update(&d, a, fd, &ref_max);
    d.max_rel = d.max_abs / fmax(1.0, ref_max);
    int64_t n = tg_numel(a);
    for (int64_t j = 0; j < n; j++) {
        double nj = tg_get(fd, j);
        if (isnan(nj)) continue;
        double e = fabs(tg_get(a, j) - nj);
        if (!(e <= c->o.fd_atol + c->o.fd_rtol * fabs(nj))) d.pass = false;
    }
    return d;
}

static bool valid_opts(const tg_compare_opts *o) {
    if (o->proj_size < 0 || o->proj_size >= o->H) {
        tg_error(FN, "proj_size %lld: 0 (none) or in 1..H-1 = %lld", (long long)o->proj_size, (long long)o->H - 1);
        return false;
    }
    if (o->T < 1 || o->B < 1 || o->I < 1 || o->H < 1 || o->layers < 1 || o->max_elems < 0 || !(o->eps > 0) ||
        !(o->manual_tol >= 0) || !(o->fd_atol >= 0) || !(o->fd_rtol >= 0)) {
        tg_error(FN, "T %lld, B %lld, I %lld, H %lld, layers %d must be >= 1, max_elems %lld >= 0, eps %g > 0, "
                     "tolerances >= 0", (long long)o->T, (long long)o->B, (long long)o->I, (long long)o->H,
                 o->layers, (long long)o->max_elems, o->eps);
        return false;
    }
    return true;
}

/* Sets up the model, data and the list of checked tensors. Returns 0 or -1. */
int tg_compare_mem_estimate(const char *cell_name, const tg_compare_opts *opts, tg_mem_estimate *out) {
    tg_compare_opts o = opts ? *opts : tg_compare_defaults();
    const tg_cell *cell = tg_cell_by_name(cell_name);
    if (!cell) return -1;
    if (!valid_opts(&o)) return -1;
    tg_rnn_config cfg = {.input_size = o.I, .hidden_size = o.H, .num_layers = o.layers, .dtype = TG_F64,
                         .proj_size = o.proj_size};
    /* two gradient copies besides the tape's (manual, finite differences): the optimizer slots */
    if (tg_rnn_mem_estimate(cell, &cfg, o.T, o.B, 2, out)) return -1;
    /* the manual cache is about one more tape; x and dy, the states */
    out->tape *= 2;
    out->data += 8.0 * ((double)o.T * (double)o.B * (double)o.H + 4.0 * cell->n_states * o.layers * (double)o.B * (double)o.H);
    tg_mem_sum(out);
    return 0;
}

static int ctx_init(ctx *c, const char *cell_name, const tg_compare_opts *opts) {
    memset(c, 0, sizeof *c);
    tg_compare_opts d = tg_compare_defaults();
    c->o = opts ? *opts : d;
    if (c->o.eps == 0) c->o.eps = d.eps;
    if (c->o.manual_tol == 0) c->o.manual_tol = d.manual_tol;
    if (c->o.fd_atol == 0) c->o.fd_atol = d.fd_atol;
    if (c->o.fd_rtol == 0) c->o.fd_rtol = d.fd_rtol;
    if (!valid_opts(&c->o)) return -1;
    c->cell = tg_cell_by_name(cell_name);
    if (!c->cell) return -1;
    c->S = c->cell->n_states;
    tg_mem_estimate est;
    char why[512];
    if (tg_compare_mem_estimate(cell_name, &c->o, &est)) return -1;
    if (tg_mem_check(&est, 0, why, sizeof why)) { tg_error(FN, "cell '%s': %s", c->cell->name, why); return -1; }
    tg_rng rng;
    tg_rng_seed(&rng, c->o.seed);
    const tg_compare_opts *o = &c->o;
    tg_rnn_config cfg = {.input_size = o->I, .hidden_size = o->H, .num_layers = o->layers, .dtype = TG_F64,
                         .proj_size = o->proj_size};
    c->m = tg_rnn_new(c->cell, &cfg, &rng);
    if (!c->m) return -1;
    c->x = tg_rand_normal(&rng, TG_F64, TG_SHAPE(o->T, o->B, o->I), 0, 1);
    int64_t Rw = o->proj_size ? o->proj_size : o->H; /* the width of h (and y) */
    c->dy = tg_rand_normal(&rng, TG_F64, TG_SHAPE(o->T, o->B, Rw), 0, 1);
    if (!c->x || !c->dy) return -1;
    for (int s = 0; s < c->S; s++) {
        int64_t w = s ? o->H : Rw;
        c->init[s] = tg_rand_uniform(&rng, TG_F64, TG_SHAPE(o->layers, o->B, w), -1, 1);
        c->dfinal[s] = tg_rand_normal(&rng, TG_F64, TG_SHAPE(o->layers, o->B, w), 0, 1);
        if (!c->init[s] || !c->dfinal[s]) return -1;
    }
    int P = tg_params_count(c->m->params);
    c->n = 1 + c->S + P;
    c->inputs = tg_calloc((size_t)c->n, sizeof *c->inputs);
    c->g_tape = tg_calloc((size_t)c->n, sizeof *c->g_tape);
    c->g_manual = tg_calloc((size_t)c->n, sizeof *c->g_manual);
    c->g_fd = tg_calloc((size_t)c->n, sizeof *c->g_fd);
    c->fd_count = tg_calloc((size_t)c->n, sizeof *c->fd_count);
    if (!c->inputs || !c->g_tape || !c->g_manual || !c->g_fd || !c->fd_count) {
        tg_error(FN, "out of memory");
        return -1;
    }
    c->inputs[0] = c->x;
    for (int s = 0; s < c->S; s++) c->inputs[1 + s] = c->init[s];
    for (int p = 0; p < P; p++) c->inputs[1 + c->S + p] = tg_params_at(c->m->params, p);
    return 0;
}

/* "grad.x", "grad.<state>0" (state names as the runner's: the cell's, else h, c, s2, s3, ...),
 * "grad.<parameter>" */
static void row_name(const ctx *c, int i, char *buf, size_t size) {
    if (i == 0) snprintf(buf, size, "grad.x");
    else if (i <= c->S && c->cell->state_names) snprintf(buf, size, "grad.%s0", c->cell->state_names[i - 1]);
    else if (i <= c->S) snprintf(buf, size, i == 1 ? "grad.h0" : i == 2 ? "grad.c0" : "grad.s%d0", i - 1);
    else snprintf(buf, size, "grad.%s", tg_params_name_at(c->m->params, i - 1 - c->S));
}

tg_compare_report *tg_compare_cell(const char *cell, const tg_compare_opts *opts) {
    if (!cell) { tg_error(FN, "cell name is NULL"); return NULL; }
    double t0 = now();
    tg_tape_reset();
    ctx c;
    tg_compare_report *r = NULL;
    if (ctx_init(&c, cell, opts) != 0) goto fail;
    r = tg_calloc(1, sizeof *r);
    if (r) r->rows = tg_calloc((size_t)c.n, sizeof *r->rows);
    if (!r || !r->rows) { tg_error(FN, "out of memory"); goto fail; }
    snprintf(r->cell, sizeof r->cell, "%s", c.cell->name);
    r->opts = c.o;
    r->n_rows = c.n;
    r->n_states = c.S;
    if (run_tape(&c) != 0) goto fail;
    int m = run_manual(&c, &r->forward);
    if (m < 0) goto fail;
    r->has_manual = m == 0;
    r->manual_hook = r->has_manual && c.cell->manual;
    for (int i = 0; i < c.n; i++)
        if (run_fd(&c, i) != 0) goto fail;
    for (int i = 0; i < c.n; i++) {
        tg_compare_row *row = &r->rows[i];
        const tg_tensor *t = c.inputs[i];
        row_name(&c, i, row->name, sizeof row->name);
        row->ndim = tg_ndim(t);
        memcpy(row->shape, tg_shape(t), (size_t)row->ndim * sizeof row->shape[0]);
        row->numel = tg_numel(t);
        row->fd_elems = c.fd_count[i];
        if (row->fd_elems < row->numel) r->subsampled = true;
        for (int64_t j = 0; j < row->numel; j++) row->max_grad = fmax(row->max_grad, fabs(tg_get(c.g_tape[i], j)));
        row->tape_fd = diff_fd(&c, c.g_tape[i], c.g_fd[i]);
        if (c.g_manual[i]) {
            row->tape_manual = diff_manual(&c, c.g_tape[i], c.g_manual[i]);
            row->manual_fd = diff_fd(&c, c.g_manual[i], c.g_fd[i]);
        } else {
            row->tape_manual.pass = row->manual_fd.pass = true; /* not computed */
        }
        r->n_fail += !row->tape_manual.pass + !row->tape_fd.pass + !row->manual_fd.pass;
    }
    if (r->forward.done && !r->forward.pass) r->n_fail++;
    if (r->has_manual && !r->forward.done) r->n_fail++;
    r->pass = r->n_fail == 0;
    ctx_free(&c);
    tg_tape_reset();
    r->seconds = now() - t0;
    return r;
fail:
    if (!tg_error_pending()) tg_error(FN, "cell '%s': the check could not run", cell);
    ctx_free(&c);
    tg_tape_reset();
    tg_compare_report_free(r);
    return NULL;
}

void tg_compare_report_free(tg_compare_report *r) {
    if (!r) return;
    free(r->rows);
    free(r);
}

/* ---- printing ------------------------------------------------------------------------------------ */

static void fmt_shape(const tg_compare_row *row, char *buf, size_t size) {
    size_t n = (size_t)snprintf(buf, size, "[");
    for (int d = 0; d < row->ndim && n < size; d++)
        n += (size_t)snprintf(buf + n, size - n, d ? ",%lld" : "%lld", (long long)row->shape[d]);
    if (n < size) snprintf(buf + n, size - n, "]");
}

/* "  1.2e-16  3.4e-17" or "        -        -" */
static void print_pair(FILE *f, const tg_compare_diff *d) {
    if (d->done) fprintf(f, " %9.1e %9.1e%s", d->max_abs, d->max_rel, d->pass ? " " : "*");
    else fprintf(f, " %9s %9s ", "-", "-");
}

void tg_compare_report_print(FILE *f, const tg_compare_report *r) {
    if (!f) f = stdout;
    if (!r) { fprintf(f, "(no report)\n"); return; }
    const tg_compare_opts *o = &r->opts;
    fprintf(f, "triple check of '%s' in F64: T=%lld B=%lld I=%lld H=%lld", r->cell, (long long)o->T, (long long)o->B,
            (long long)o->I, (long long)o->H);
    if (o->proj_size) fprintf(f, " proj_size=%lld", (long long)o->proj_size);
    fprintf(f, " layers=%d seed=%llu\n", o->layers, (unsigned long long)o->seed);
    fprintf(f, "  loss = sum(y*dy)");
    for (int s = 1; s <= r->n_states && s < r->n_rows; s++) { /* row "grad.h0" -> " + sum(hn*dhn)" */
        const char *st = r->rows[s].name + 5;
        int len = (int)strlen(st) - 1;
        fprintf(f, " + sum(%.*sn*d%.*sn)", len, st, len, st);
    }
    fprintf(f, "; FD: central, eps %g, %s\n", o->eps,
            o->max_elems > 0 ? "at most max_elems elements per tensor (seeded choice)" : "every element");
    if (o->max_elems > 0) fprintf(f, "  max_elems = %lld%s\n", (long long)o->max_elems,
                                  r->subsampled ? " (some tensors subsampled: see the FD column)" : " (nothing subsampled)");
    fprintf(f, "  pass: tape~manual  max|a-b|/max(1,max|ref|) <= %g;  vs FD  |a-n| <= %g + %g|n| per element\n",
            o->manual_tol, o->fd_atol, o->fd_rtol);
    if (!r->has_manual) fprintf(f, "  (no hand-derived reference for '%s': tape vs FD only)\n", r->cell);
    if (r->manual_hook) fprintf(f, "  manual = the cell's own hand-derived step backward (its tg_cell_manual hook)\n");
    fprintf(f, "\n%-24s %-10s %9s %9s | %-19s | %-19s | %-19s | %s\n", "", "", "FD", "", "   tape vs manual",
            "     tape vs FD", "    manual vs FD", "");
    fprintf(f, "%-24s %-10s %9s %9s | %9s %9s | %9s %9s | %9s %9s | %s\n", "tensor", "shape", "elements", "max|grad|",
            "max abs", "max rel", "max abs", "max rel", "max abs", "max rel", "status");
    for (int i = 0; i < r->n_rows; i++) {
        const tg_compare_row *row = &r->rows[i];
        char shape[64], els[32];
        fmt_shape(row, shape, sizeof shape);
        snprintf(els, sizeof els, "%lld/%lld", (long long)row->fd_elems, (long long)row->numel);
        fprintf(f, "%-24s %-10s %9s %9.2e |", row->name, shape, els, row->max_grad);
        print_pair(f, &row->tape_manual);
        fprintf(f, "|");
        print_pair(f, &row->tape_fd);
        fprintf(f, "|");
        print_pair(f, &row->manual_fd);
        bool ok = row->tape_manual.pass && row->tape_fd.pass && row->manual_fd.pass;
        fprintf(f, "| %s\n", ok ? "ok" : "FAIL");
    }
    if (r->forward.done)
        fprintf(f, "\nforward outputs (y, final states) tape vs manual: max abs %.1e, max rel %.1e  %s\n",
                r->forward.max_abs, r->forward.max_rel, r->forward.pass ? "ok" : "FAIL");
    fprintf(f, "%s: %s (%d failed comparison%s, %.2f s)\n", r->cell, r->pass ? "PASS" : "FAIL", r->n_fail,
            r->n_fail == 1 ? "" : "s", r->seconds);
}
