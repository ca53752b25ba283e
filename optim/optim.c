/* optim/optim.c - SGD, Adam, AdamW, RMSprop, Adagrad with torch.optim's single-tensor algorithms.
 *
 * Each update is one loop over the elements of a parameter, written in the parameter's dtype T with
 * the hyper-parameters rounded to T, and evaluating every torch tensor op of the reference algorithm
 * in the same order (mul_ then add_, addcmul = self + value·t1·t2, addcdiv = self + value·t1/t2), so
 * F64 trajectories agree with PyTorch's to rounding. The state tensors are created on a parameter's
 * first step and are plain tensors outside the tape. */
#include "optim/optim_internal.h"

#include <tapegrad/autograd.h>

#include <tgmath.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- kinds, defaults, validation ---------------------------------------------------------------- */

static const char *const kind_names[TG_OPTIM_KIND_COUNT] = {"sgd", "adam", "adamw", "rmsprop", "adagrad"};

static const char *const buf_names[TG_OPTIM_KIND_COUNT][TG_OPTIM_NBUF] = {
    [TG_OPTIM_SGD] = {"momentum_buffer", NULL, NULL},
    [TG_OPTIM_ADAM] = {"exp_avg", "exp_avg_sq", "max_exp_avg_sq"},
    [TG_OPTIM_ADAMW] = {"exp_avg", "exp_avg_sq", "max_exp_avg_sq"},
    [TG_OPTIM_RMSPROP] = {"square_avg", "momentum_buffer", "grad_avg"},
    [TG_OPTIM_ADAGRAD] = {"sum", NULL, NULL},
};

const char *tg_optim_kind_name(tg_optim_kind kind) {
    return (unsigned)kind < TG_OPTIM_KIND_COUNT ? kind_names[kind] : "unknown";
}

const char *tg__optim_buf_name(tg_optim_kind kind, int k) {
    if ((unsigned)kind >= TG_OPTIM_KIND_COUNT || k < 0 || k >= TG_OPTIM_NBUF) return NULL;
    return buf_names[kind][k];
}

tg_optim_opts tg_optim_defaults(tg_optim_kind kind) {
    tg_optim_opts o = {.lr = 1e-3, .beta1 = 0.9, .beta2 = 0.999, .eps = 1e-8, .alpha = 0.99};
    switch (kind) {
    case TG_OPTIM_ADAMW: o.weight_decay = 1e-2; break;
    case TG_OPTIM_RMSPROP: o.lr = 1e-2; break;
    case TG_OPTIM_ADAGRAD: o.lr = 1e-2; o.eps = 1e-10; break;
    default: break;
    }
    return o;
}

/* `!(x >= 0)` also rejects NaN. The wording follows torch's ValueError messages. */
bool tg__optim_validate(tg_optim_kind kind, const tg_optim_opts *o, char *msg, size_t size) {
    if ((unsigned)kind >= TG_OPTIM_KIND_COUNT) { snprintf(msg, size, "unknown optimizer kind %d", (int)kind); return false; }
    const char *k = kind_names[kind];
#define REQUIRE(cond, ...) do { if (!(cond)) { snprintf(msg, size, __VA_ARGS__); return false; } } while (0)
    REQUIRE(o->lr >= 0, "%s: invalid learning rate %g (must be >= 0)", k, o->lr);
    REQUIRE(o->weight_decay >= 0, "%s: invalid weight_decay %g (must be >= 0)", k, o->weight_decay);
    switch (kind) {
    case TG_OPTIM_SGD:
        REQUIRE(o->momentum >= 0, "sgd: invalid momentum %g (must be >= 0)", o->momentum);
        REQUIRE(isfinite(o->dampening), "sgd: invalid dampening %g", o->dampening);
        REQUIRE(!o->nesterov || (o->momentum > 0 && o->dampening == 0),
                "sgd: nesterov momentum requires a momentum > 0 and zero dampening (momentum %g, dampening %g)",
                o->momentum, o->dampening);
        break;
    case TG_OPTIM_ADAM:
    case TG_OPTIM_ADAMW:
        REQUIRE(o->eps >= 0, "%s: invalid eps %g (must be >= 0)", k, o->eps);
        REQUIRE(o->beta1 >= 0 && o->beta1 < 1, "%s: invalid beta1 %g (must be in [0, 1))", k, o->beta1);
        REQUIRE(o->beta2 >= 0 && o->beta2 < 1, "%s: invalid beta2 %g (must be in [0, 1))", k, o->beta2);
        break;
    case TG_OPTIM_RMSPROP:
        REQUIRE(o->eps >= 0, "rmsprop: invalid eps %g (must be >= 0)", o->eps);
        REQUIRE(o->momentum >= 0, "rmsprop: invalid momentum %g (must be >= 0)", o->momentum);
        REQUIRE(o->alpha >= 0, "rmsprop: invalid alpha %g (must be >= 0)", o->alpha);
        break;
    case TG_OPTIM_ADAGRAD:
        REQUIRE(o->eps >= 0, "adagrad: invalid eps %g (must be >= 0)", o->eps);
        REQUIRE(o->lr_decay >= 0, "adagrad: invalid lr_decay %g (must be >= 0)", o->lr_decay);
        REQUIRE(o->initial_accumulator_value >= 0, "adagrad: invalid initial_accumulator_value %g (must be >= 0)",
                o->initial_accumulator_value);
        break;
    default: break;
    }
#undef REQUIRE
    return true;
}

static bool check_opts(const char *fn, tg_optim_kind kind, const tg_optim_opts *o) {
    char msg[256];
    if (tg__optim_validate(kind, o, msg, sizeof msg)) return true;
    tg_error(fn, "%s", msg);
    return false;
}

/* ---- construction ------------------------------------------------------------------------------- */

tg_optim *tg_optim_new(tg_optim_kind kind, tg_tensor *const *params, int n, const tg_optim_opts *opts) {
    const char *fn = "tg_optim_new";
    tg_optim_opts o = opts ? *opts : tg_optim_defaults(kind);
    if (!check_opts(fn, kind, &o)) return NULL;
    tg_optim *opt = calloc(1, sizeof *opt);
    if (!opt) { tg_error(fn, "out of memory"); return NULL; }
    opt->kind = kind;
    opt->defaults = o;
    if (tg_optim_add_group(opt, params, n, &o) < 0) {
        tg_optim_free(opt);
        return NULL;
    }
    return opt;
}

static int find_param(const tg_optim *opt, const tg_tensor *p) {
    for (int i = 0; i < opt->n_params; i++)
        if (opt->params[i].param == p) return i;
    return -1;
}

int tg_optim_add_group(tg_optim *opt, tg_tensor *const *params, int n, const tg_optim_opts *opts) {
    const char *fn = "tg_optim_add_group";
    if (!opt) { tg_error(fn, "optimizer is NULL"); return -1; }
    tg_optim_opts o = opts ? *opts : opt->defaults;
    if (!check_opts(fn, opt->kind, &o)) return -1;
    if (n < 0 || (n > 0 && !params)) { tg_error(fn, "%d parameters at %p", n, (const void *)params); return -1; }
    char s[128];
    for (int i = 0; i < n; i++) {
        if (!params[i]) {
            if (!tg_error_pending()) tg_error(fn, "parameter %d is NULL", i); /* else: an earlier op failed */
            return -1;
        }
        if (!tg_is_leaf(params[i])) {
            tg_error(fn, "parameter %d '%s' %s is the result of an op, not a leaf (optimize leaves; use tg_detach)",
                     i, tg_name(params[i]), tg_shape_str(params[i], s, sizeof s));
            return -1;
        }
        bool dup = find_param(opt, params[i]) >= 0;
        for (int j = 0; j < i && !dup; j++) dup = params[j] == params[i];
        if (dup) {
            tg_error(fn, "parameter %d '%s' %s appears more than once (in this or another group)", i,
                     tg_name(params[i]), tg_shape_str(params[i], s, sizeof s));
            return -1;
        }
    }
    tg_optim_group_rec *g = realloc(opt->groups, (size_t)(opt->n_groups + 1) * sizeof *g);
    if (!g) { tg_error(fn, "out of memory"); return -1; }
    opt->groups = g;
    tg_optim_slot *p = realloc(opt->params, (size_t)(opt->n_params + n + 1) * sizeof *p);
    if (!p) { tg_error(fn, "out of memory"); return -1; }
    opt->params = p;
    int gi = opt->n_groups++;
    opt->groups[gi] = (tg_optim_group_rec){.opts = o, .initial_lr = NAN, .first = opt->n_params, .count = n};
    for (int i = 0; i < n; i++)
        opt->params[opt->n_params++] = (tg_optim_slot){.param = tg_retain(params[i]), .group = gi};
    return gi;
}

/* The tensors of a parameter set as an array (malloc'd; borrowed pointers). */
static tg_tensor **params_array(const char *fn, const tg_params *ps, int *n) {
    *n = tg_params_count(ps);
    tg_tensor **a = malloc((size_t)(*n ? *n : 1) * sizeof *a);
    if (!a) { tg_error(fn, "out of memory"); return NULL; }
    for (int i = 0; i < *n; i++) a[i] = tg_params_at(ps, i);
    return a;
}

tg_optim *tg_optim_new_params(tg_optim_kind kind, const tg_params *params, const tg_optim_opts *opts) {
    if (!params) { tg_error("tg_optim_new_params", "the parameter set is NULL"); return NULL; }
    int n;
    tg_tensor **a = params_array("tg_optim_new_params", params, &n);
    tg_optim *opt = a ? tg_optim_new(kind, a, n, opts) : NULL;
    free(a);
    return opt;
}

int tg_optim_add_group_params(tg_optim *opt, const tg_params *params, const tg_optim_opts *opts) {
    if (!params) { tg_error("tg_optim_add_group_params", "the parameter set is NULL"); return -1; }
    int n;
    tg_tensor **a = params_array("tg_optim_add_group_params", params, &n);
    int g = a ? tg_optim_add_group(opt, a, n, opts) : -1;
    free(a);
    return g;
}

void tg_optim_free(tg_optim *opt) {
    if (!opt) return;
    for (int i = 0; i < opt->n_params; i++) {
        tg_release(opt->params[i].param);
        for (int k = 0; k < TG_OPTIM_NBUF; k++) tg_release(opt->params[i].buf[k]);
    }
    free(opt->params);
    free(opt->groups);
    free(opt);
}

/* ---- accessors ---------------------------------------------------------------------------------- */

static bool group_ok(const char *fn, const tg_optim *opt, int group) {
    if (!opt) { tg_error(fn, "optimizer is NULL"); return false; }
    if (group < 0 || group >= opt->n_groups) {
        tg_error(fn, "group %d out of range [0, %d)", group, opt->n_groups);
        return false;
    }
    return true;
}

tg_optim_kind tg_optim_kind_of(const tg_optim *opt) { return opt ? opt->kind : TG_OPTIM_KIND_COUNT; }
int tg_optim_num_groups(const tg_optim *opt) { return opt ? opt->n_groups : 0; }
int tg_optim_num_params(const tg_optim *opt) { return opt ? opt->n_params : 0; }
int tg_optim_group_size(const tg_optim *opt, int group) {
    return group_ok("tg_optim_group_size", opt, group) ? opt->groups[group].count : 0;
}
tg_tensor *tg_optim_param(const tg_optim *opt, int index) {
    if (!opt || index < 0 || index >= opt->n_params) {
        tg_error("tg_optim_param", "index %d out of range [0, %d)", index, opt ? opt->n_params : 0);
        return NULL;
    }
    return opt->params[index].param;
}
const tg_optim_opts *tg_optim_group_opts(const tg_optim *opt, int group) {
    return group_ok("tg_optim_group_opts", opt, group) ? &opt->groups[group].opts : NULL;
}
int tg_optim_set_group_opts(tg_optim *opt, int group, const tg_optim_opts *opts) {
    const char *fn = "tg_optim_set_group_opts";
    if (!group_ok(fn, opt, group)) return -1;
    if (!opts) { tg_error(fn, "opts is NULL"); return -1; }
    if (!check_opts(fn, opt->kind, opts)) return -1;
    opt->groups[group].opts = *opts;
    return 0;
}
double tg_optim_lr(const tg_optim *opt, int group) {
    return group_ok("tg_optim_lr", opt, group) ? opt->groups[group].opts.lr : NAN;
}
void tg_optim_set_lr(tg_optim *opt, int group, double lr) {
    if (!group_ok("tg_optim_set_lr", opt, group)) return;
    if (!(lr >= 0)) { tg_error("tg_optim_set_lr", "invalid learning rate %g (must be >= 0)", lr); return; }
    opt->groups[group].opts.lr = lr;
}

int64_t tg_optim_step_count(const tg_optim *opt, const tg_tensor *param) {
    int i = opt ? find_param(opt, param) : -1;
    return i < 0 ? -1 : opt->params[i].step;
}

tg_tensor *tg_optim_state(const tg_optim *opt, const tg_tensor *param, const char *name) {
    int i = opt && name ? find_param(opt, param) : -1;
    if (i < 0) return NULL;
    for (int k = 0; k < TG_OPTIM_NBUF; k++) {
        const char *b = buf_names[opt->kind][k];
        if (b && strcmp(b, name) == 0) return opt->params[i].buf[k];
    }
    return NULL;
}

void tg_optim_zero_grad(tg_optim *opt) {
    if (!opt) return;
    for (int i = 0; i < opt->n_params; i++) tg_zero_grad(opt->params[i].param);
}

/* ---- update kernels ----------------------------------------------------------------------------- */

/* Runs the block with T = float or double. */
#define OPTIM_DISPATCH(dt, ...)                                     \
    do {                                                            \
        if ((dt) == TG_F32) { typedef float T; __VA_ARGS__ }        \
        else { typedef double T; __VA_ARGS__ }                      \
    } while (0)
#define PTR(t) ((T *)tg_data(t))

/* The state buffer k of a parameter, created with the given fill value on first use. */
static tg_tensor *state_buf(tg_optim_slot *ps, int k, double fill) {
    if (!ps->buf[k]) {
        tg_tensor *p = ps->param;
        ps->buf[k] = tg_full(tg_dtype_of(p), tg_ndim(p), tg_shape(p), fill);
    }
    return ps->buf[k];
}

/* SGD. torch: d_p = d_p.add(p, alpha=wd); buf = clone(d_p) | buf.mul_(μ).add_(d_p, alpha=1-damp);
 * d_p = d_p.add(buf, alpha=μ) (nesterov) | buf; p.add_(d_p, alpha=-lr) */
static void sgd_update(tg_optim_slot *ps, const tg_optim_opts *o, const tg_tensor *grad) {
    tg_tensor *p = ps->param;
    bool first = ps->buf[0] == NULL;
    tg_tensor *buf = o->momentum != 0 ? state_buf(ps, 0, 0.0) : NULL;
    int64_t n = tg_numel(p);
    OPTIM_DISPATCH(tg_dtype_of(p), {
        T *pp = PTR(p);
        const T *pg = (const T *)tg_cdata(grad);
        T *pb = buf ? PTR(buf) : NULL;
        const T wd = (T)o->weight_decay, mom = (T)o->momentum, damp1 = (T)(1.0 - o->dampening), neg_lr = (T)(-o->lr);
        for (int64_t i = 0; i < n; i++) {
            T d = o->maximize ? -pg[i] : pg[i];
            if (o->weight_decay != 0) d = d + wd * pp[i];
            if (pb) {
                pb[i] = first ? d : pb[i] * mom + damp1 * d;
                d = o->nesterov ? d + mom * pb[i] : pb[i];
            }
            pp[i] = pp[i] + neg_lr * d;
        }
    });
    if (buf) tg_bump_version(buf);
}

/* Adam / AdamW. torch: (AdamW: p.mul_(1 - lr·wd)) | grad = grad.add(p, alpha=wd);
 * exp_avg.mul_(β1).add_(grad, alpha=1-β1); exp_avg_sq.mul_(β2).addcmul_(grad, grad, value=1-β2);
 * step_size = lr / (1-β1^t); denom = (v.sqrt() / sqrt(1-β2^t)).add_(eps) (amsgrad: v̂ = max(v̂, v));
 * p.addcdiv_(exp_avg, denom, value=-step_size) */
static void adam_update(tg_optim_slot *ps, const tg_optim_opts *o, const tg_tensor *grad, bool decoupled) {
    tg_tensor *p = ps->param;
    tg_tensor *m = state_buf(ps, 0, 0.0), *v = state_buf(ps, 1, 0.0);
    tg_tensor *vmax = o->amsgrad ? state_buf(ps, 2, 0.0) : NULL;
    const double t = (double)ps->step;
    const double bias_correction1 = 1 - pow(o->beta1, t);
    const double bias_correction2 = 1 - pow(o->beta2, t);
    const double step_size = o->lr / bias_correction1;
    const double bias_correction2_sqrt = sqrt(bias_correction2);
    int64_t n = tg_numel(p);
    const bool maximize = o->maximize, wd_on = o->weight_decay != 0;
    OPTIM_DISPATCH(tg_dtype_of(p), {
        T *restrict pp = PTR(p), *restrict pm = PTR(m), *restrict pv = PTR(v), *restrict pvmax = vmax ? PTR(vmax) : NULL;
        const T *restrict pg = (const T *)tg_cdata(grad);
        const T decay = (T)(1.0 - o->lr * o->weight_decay), wd = (T)o->weight_decay;
        const T b1 = (T)o->beta1, one_b1 = (T)(1.0 - o->beta1), b2 = (T)o->beta2, one_b2 = (T)(1.0 - o->beta2);
        const T bc2s = (T)bias_correction2_sqrt, eps = (T)o->eps, neg_step = (T)(-step_size);
        if (!maximize && !pvmax && (decoupled || !wd_on)) {
            /* Adam, or AdamW: the same operations as the general loop below, without its per-element
             * tests, on restrict arrays, so that it vectorises (with -fno-math-errno, see meson.build,
             * the sqrt too); it was 2 % of an LSTM training step as scalar code. */
            for (int64_t i = 0; i < n; i++) {
                const T d = pg[i];
                const T p0 = decoupled ? pp[i] * decay : pp[i];
                pm[i] = pm[i] * b1 + one_b1 * d;
                pv[i] = pv[i] * b2 + one_b2 * d * d;
                T denom = sqrt(pv[i]) / bc2s + eps;
                pp[i] = p0 + neg_step * pm[i] / denom;
            }
            n = 0; /* done: skip the general loop */
        }
        for (int64_t i = 0; i < n; i++) {
            T d = maximize ? -pg[i] : pg[i];
            if (decoupled) pp[i] = pp[i] * decay;
            else if (wd_on) d = d + wd * pp[i];
            pm[i] = pm[i] * b1 + one_b1 * d;
            pv[i] = pv[i] * b2 + one_b2 * d * d;
            T vv = pv[i];
            if (pvmax) {
                if (pvmax[i] < vv || vv != vv) pvmax[i] = vv; /* torch.maximum propagates NaN */
                vv = pvmax[i];
            }
            T denom = sqrt(vv) / bc2s + eps;
            pp[i] = pp[i] + neg_step * pm[i] / denom;
        }
    });
    tg_bump_version(m);
    tg_bump_version(v);
    if (vmax) tg_bump_version(vmax);
}

/* RMSprop. torch: grad = grad.add(p, alpha=wd); square_avg.mul_(α).addcmul_(grad, grad, value=1-α);
 * centered: grad_avg.mul_(α).add_(grad, alpha=1-α); avg = square_avg.addcmul(grad_avg, grad_avg,
 * value=-1).sqrt_() | avg = square_avg.sqrt(); avg = avg.add_(eps);
 * momentum: buf.mul_(μ).addcdiv_(grad, avg); p.add_(buf, alpha=-lr) | p.addcdiv_(grad, avg, value=-lr) */
static void rmsprop_update(tg_optim_slot *ps, const tg_optim_opts *o, const tg_tensor *grad) {
    tg_tensor *p = ps->param;
    tg_tensor *sq = state_buf(ps, 0, 0.0);
    tg_tensor *buf = o->momentum > 0 ? state_buf(ps, 1, 0.0) : NULL;
    tg_tensor *ga = o->centered ? state_buf(ps, 2, 0.0) : NULL;
    int64_t n = tg_numel(p);
    OPTIM_DISPATCH(tg_dtype_of(p), {
        T *pp = PTR(p), *psq = PTR(sq), *pb = buf ? PTR(buf) : NULL, *pga = ga ? PTR(ga) : NULL;
        const T *pg = (const T *)tg_cdata(grad);
        const T wd = (T)o->weight_decay, alpha = (T)o->alpha, one_alpha = (T)(1.0 - o->alpha);
        const T eps = (T)o->eps, mom = (T)o->momentum, neg_lr = (T)(-o->lr), minus_one = (T)-1, one = (T)1;
        for (int64_t i = 0; i < n; i++) {
            T d = o->maximize ? -pg[i] : pg[i];
            if (o->weight_decay != 0) d = d + wd * pp[i];
            psq[i] = psq[i] * alpha + one_alpha * d * d;
            T avg;
            if (pga) {
                pga[i] = pga[i] * alpha + one_alpha * d;
                avg = sqrt(psq[i] + minus_one * pga[i] * pga[i]);
            } else {
                avg = sqrt(psq[i]);
            }
            avg = avg + eps;
            if (pb) {
                pb[i] = pb[i] * mom + one * d / avg;
                pp[i] = pp[i] + neg_lr * pb[i];
            } else {
                pp[i] = pp[i] + neg_lr * d / avg;
            }
        }
    });
    tg_bump_version(sq);
    if (buf) tg_bump_version(buf);
    if (ga) tg_bump_version(ga);
}

/* Adagrad. torch: grad = grad.add(p, alpha=wd); clr = lr / (1 + (t-1)·lr_decay);
 * state_sum.addcmul_(grad, grad, value=1); std = state_sum.sqrt().add_(eps); p.addcdiv_(grad, std, value=-clr) */
static void adagrad_update(tg_optim_slot *ps, const tg_optim_opts *o, const tg_tensor *grad) {
    tg_tensor *p = ps->param;
    tg_tensor *sum = state_buf(ps, 0, o->initial_accumulator_value);
    const double clr = o->lr / (1 + (double)(ps->step - 1) * o->lr_decay);
    int64_t n = tg_numel(p);
    OPTIM_DISPATCH(tg_dtype_of(p), {
        T *pp = PTR(p), *ps_ = PTR(sum);
        const T *pg = (const T *)tg_cdata(grad);
        const T wd = (T)o->weight_decay, eps = (T)o->eps, neg_clr = (T)(-clr), one = (T)1;
        for (int64_t i = 0; i < n; i++) {
            T d = o->maximize ? -pg[i] : pg[i];
            if (o->weight_decay != 0) d = d + wd * pp[i];
            ps_[i] = ps_[i] + one * d * d;
            T std_ = sqrt(ps_[i]) + eps;
            pp[i] = pp[i] + neg_clr * d / std_;
        }
    });
    tg_bump_version(sum);
}

int tg_optim_step(tg_optim *opt) {
    const char *fn = "tg_optim_step";
    if (!opt) { tg_error(fn, "optimizer is NULL"); return -1; }
    /* Check every gradient first, so that a bad one leaves the whole model unchanged. */
    for (int i = 0; i < opt->n_params; i++) {
        tg_tensor *p = opt->params[i].param, *g = tg_grad(p);
        if (g && (!tg_same_shape(p, g) || tg_dtype_of(p) != tg_dtype_of(g))) {
            char s1[128], s2[128];
            tg_error(fn, "parameter %d '%s' %s %s has a gradient %s %s", i, tg_name(p), tg_shape_str(p, s1, sizeof s1),
                     tg_dtype_name(tg_dtype_of(p)), tg_shape_str(g, s2, sizeof s2), tg_dtype_name(tg_dtype_of(g)));
            return -1;
        }
    }
    tg_no_grad_begin();
    for (int i = 0; i < opt->n_params; i++) {
        tg_optim_slot *ps = &opt->params[i];
        tg_tensor *g = tg_grad(ps->param);
        if (!g) continue;
        const tg_optim_opts *o = &opt->groups[ps->group].opts;
        ps->step++;
        switch (opt->kind) {
        case TG_OPTIM_SGD: sgd_update(ps, o, g); break;
        case TG_OPTIM_ADAM: adam_update(ps, o, g, false); break;
        case TG_OPTIM_ADAMW: adam_update(ps, o, g, true); break;
        case TG_OPTIM_RMSPROP: rmsprop_update(ps, o, g); break;
        case TG_OPTIM_ADAGRAD: adagrad_update(ps, o, g); break;
        default: break;
        }
        tg_bump_version(ps->param);
    }
    tg_no_grad_end();
    return 0;
}
