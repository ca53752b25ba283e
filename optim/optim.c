/* optim/optim.c - SGD, Adam, AdamW, RMSprop, Adagrad, NAdam, RAdam, Adamax, Adadelta with
 * torch.optim's single-tensor algorithms (torch 1.13).
 *
 * Each update is one loop over the elements of a parameter, written in the parameter's dtype T with
 * the hyper-parameters rounded to T, and evaluating every torch tensor op of the reference algorithm
 * in the same order (mul_ then add_, addcmul = self + value·t1·t2, addcdiv = self + value·t1/t2), so
 * F64 trajectories agree with PyTorch's to rounding. The state tensors are created on a parameter's
 * first step and are plain tensors outside the tape. */
#include "optim/optim_internal.h"
#include "tensor/internal.h"
#include "tensor/alloc.h"
#include "tensor/updates.h"

#include <tapegrad/autograd.h>

#include <tgmath.h>
#include <stdio.h>
#include <stdlib.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

/* ---- the rows: kinds, fields, defaults, validation ----------------------------------------------
 *
 * Adding an optimizer (Adamax, torch.optim.Adamax, was added this way; its row is below):
 *   1. include/tapegrad/optim.h: one line X(ADAMAX, adamax) in TG_OPTIM_KINDS (the enum constant
 *      and the name "adamax" for --optim and checkpoints), and one line in TG_OPTIM_FIELDS for each
 *      hyper-parameter no existing optimizer has (checkpoints then carry it, nothing else to do).
 *   2. This file: its update function and, right below it, its row
 *          static const tg_optim_row adamax_row = {
 *              .torch = "torch.optim.Adamax",
 *              .uses = ALL_KINDS | F(beta1) | F(beta2) | F(eps),   // validated, shown, documented
 *              .defaults = {.lr = 2e-3, .beta1 = 0.9, .beta2 = 0.999, .eps = 1e-8},
 *              .state = {"exp_avg", "exp_inf"},                    // torch's state keys, buf[0], buf[1]
 *              .scalar = 0,                                        // bit k: buf[k] is 0-d (state_scalar)
 *              .update = adamax_update,
 *              .check = NULL,                                      // cross-field rules, if any
 *              .needs = NULL,              // buffers the options use (NULL: all of .state); checkpoints
 *                                          // of a parameter with step > 0 must hold each of them
 *          };
 *   3. tests: its golden trajectories (tests/data/gen_optim_golden.py) and its defaults.
 * The rows array at the end of this file is made from TG_OPTIM_KINDS, so a missing row or a row
 * without its line fails the build; tests/test_optim.c walks every kind (names, defaults against
 * torch, state names, a save/load round trip), so a kind missing there fails a test that names it.
 * More than TG_OPTIM_NBUF state tensors: raise it in optim_internal.h (the initialiser otherwise
 * fails the build with "excess elements"). */

/* bit of field f (a TG_OPTIM_FIELDS name) in a row's .uses */
enum {
#define FIELD_INDEX(type, name, rule, meaning) FIELD_##name,
    TG_OPTIM_FIELDS(FIELD_INDEX)
#undef FIELD_INDEX
    N_FIELDS
};
_Static_assert(N_FIELDS <= 64, "a row's .uses is a 64-bit mask: widen it for more hyper-parameters");
#define F(f) (UINT64_C(1) << FIELD_##f)
#define ALL_KINDS (F(lr) | F(weight_decay) | F(maximize))

typedef enum { RULE_GE0, RULE_UNIT, RULE_UNIT_CLOSED, RULE_FINITE, RULE_BOOL } field_rule;

const tg_optim_field tg__optim_fields[] = {
#define FIELD_ROW(type, name, rule, meaning) \
    {#name, meaning, offsetof(tg_optim_opts, name), RULE_##rule == RULE_BOOL, (int)RULE_##rule},
    TG_OPTIM_FIELDS(FIELD_ROW)
#undef FIELD_ROW
};
const int tg__optim_n_fields = N_FIELDS;
#define FIELD_TYPE_CHECK(type, name, rule, meaning)                                                   \
    _Static_assert((RULE_##rule == RULE_BOOL) == _Generic(((tg_optim_opts *)0)->name, bool: 1, default: 0), \
                   "TG_OPTIM_FIELDS: " #name " must be bool exactly when its rule is BOOL");
TG_OPTIM_FIELDS(FIELD_TYPE_CHECK)
#undef FIELD_TYPE_CHECK

/* The values of the fields a kind does not use (what tg_optim_defaults of any kind holds there), so
 * that the defaults of one kind are a valid start for another. */
static const tg_optim_opts unused_values = {.lr = 1e-3, .beta1 = 0.9, .beta2 = 0.999, .eps = 1e-8, .alpha = 0.99,
                                            .momentum_decay = 4e-3, .rho = 0.9};

static const tg_optim_row *row_of(tg_optim_kind kind); /* NULL when out of range; defined at the end */

static const char *const kind_names[TG_OPTIM_KIND_COUNT] = {
#define KIND_NAME(K, name) [TG_OPTIM_##K] = #name,
    TG_OPTIM_KINDS(KIND_NAME)
#undef KIND_NAME
};

const char *tg_optim_kind_name(tg_optim_kind kind) {
    return (unsigned)kind < TG_OPTIM_KIND_COUNT ? kind_names[kind] : "unknown";
}

const char *tg_optim_kind_torch_name(tg_optim_kind kind) {
    const tg_optim_row *r = row_of(kind);
    return r ? r->torch : "unknown";
}

tg_optim_kind tg_optim_kind_from_name(const char *name) {
    for (int k = 0; name && k < TG_OPTIM_KIND_COUNT; k++)
        if (strcmp(name, kind_names[k]) == 0) return (tg_optim_kind)k;
    return TG_OPTIM_KIND_COUNT;
}

char *tg_optim_kind_list(char *buf, size_t size, const char *sep) {
    if (!buf || size == 0) return buf;
    buf[0] = '\0';
    size_t len = 0;
    for (int k = 0; k < TG_OPTIM_KIND_COUNT && len < size; k++) {
        int w = snprintf(buf + len, size - len, "%s%s", k ? (sep ? sep : "") : "", kind_names[k]);
        if (w < 0) break;
        len += (size_t)w;
    }
    return buf;
}

int tg_optim_num_fields(void) { return N_FIELDS; }
const char *tg_optim_field_name(int i) { return i >= 0 && i < N_FIELDS ? tg__optim_fields[i].name : NULL; }
const char *tg_optim_field_meaning(int i) { return i >= 0 && i < N_FIELDS ? tg__optim_fields[i].meaning : NULL; }
bool tg_optim_field_is_bool(int i) { return i >= 0 && i < N_FIELDS && tg__optim_fields[i].is_bool; }
double tg_optim_field_get(const tg_optim_opts *o, int i) {
    if (!o || i < 0 || i >= N_FIELDS) return NAN;
    const char *f = (const char *)o + tg__optim_fields[i].offset;
    return tg__optim_fields[i].is_bool ? (*(const bool *)f ? 1.0 : 0.0) : *(const double *)f;
}
bool tg_optim_kind_uses(tg_optim_kind kind, int i) {
    const tg_optim_row *r = row_of(kind);
    return r && i >= 0 && i < N_FIELDS && (r->uses >> i & 1u);
}

const char *tg__optim_buf_name(tg_optim_kind kind, int k) {
    const tg_optim_row *r = row_of(kind);
    return r && k >= 0 && k < TG_OPTIM_NBUF ? r->state[k] : NULL;
}

unsigned tg__optim_bufs_needed(tg_optim_kind kind, const tg_optim_opts *o) {
    const tg_optim_row *r = row_of(kind);
    if (!r) return 0;
    if (r->needs) return r->needs(o);
    unsigned all = 0;
    for (int k = 0; k < TG_OPTIM_NBUF; k++)
        if (r->state[k]) all |= 1u << k;
    return all;
}

bool tg__optim_buf_is_scalar(tg_optim_kind kind, int k) {
    const tg_optim_row *r = row_of(kind);
    return r && k >= 0 && k < TG_OPTIM_NBUF && (r->scalar >> k & 1u);
}

/* dst's field i = src's */
static void copy_field(tg_optim_opts *dst, const tg_optim_opts *src, int i) {
    size_t off = tg__optim_fields[i].offset;
    memcpy((char *)dst + off, (const char *)src + off, tg__optim_fields[i].is_bool ? sizeof(bool) : sizeof(double));
}

/* The row's defaults for the fields it uses, unused_values for the others. */
tg_optim_opts tg_optim_defaults(tg_optim_kind kind) {
    tg_optim_opts o = unused_values;
    const tg_optim_row *r = row_of(kind);
    if (!r) return o;
    for (int i = 0; i < N_FIELDS; i++) {
        if (r->uses >> i & 1u) copy_field(&o, &r->defaults, i);
    }
    return o;
}

/* Each used field against its rule, then the row's cross-field check. `!(x >= 0)` also rejects
 * NaN. The wording follows torch's ValueError messages. */
bool tg__optim_validate(tg_optim_kind kind, const tg_optim_opts *o, char *msg, size_t size) {
    const tg_optim_row *r = row_of(kind);
    if (!r) { snprintf(msg, size, "unknown optimizer kind %d", (int)kind); return false; }
    const char *k = kind_names[kind];
    for (int i = 0; i < N_FIELDS; i++) {
        if (!(r->uses >> i & 1u) || tg__optim_fields[i].is_bool) continue;
        double x = tg_optim_field_get(o, i);
        const char *name = i == FIELD_lr ? "learning rate" : tg__optim_fields[i].name;
        switch ((field_rule)tg__optim_fields[i].rule) {
        case RULE_GE0:
            if (!(x >= 0)) { snprintf(msg, size, "%s: invalid %s %g (must be >= 0)", k, name, x); return false; }
            break;
        case RULE_UNIT:
            if (!(x >= 0 && x < 1)) { snprintf(msg, size, "%s: invalid %s %g (must be in [0, 1))", k, name, x); return false; }
            break;
        case RULE_UNIT_CLOSED:
            if (!(x >= 0 && x <= 1)) { snprintf(msg, size, "%s: invalid %s %g (must be in [0, 1])", k, name, x); return false; }
            break;
        case RULE_FINITE:
            if (!isfinite(x)) { snprintf(msg, size, "%s: invalid %s %g (must be finite)", k, name, x); return false; }
            break;
        case RULE_BOOL: break;
        }
    }
    return r->check ? r->check(o, msg, size) : true;
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
    tg_optim *opt = tg_calloc(1, sizeof *opt);
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
    tg_optim_group_rec *g = tg_realloc(opt->groups, (size_t)(opt->n_groups + 1) * sizeof *g);
    if (!g) { tg_error(fn, "out of memory"); return -1; }
    opt->groups = g;
    tg_optim_slot *p = tg_realloc(opt->params, (size_t)(opt->n_params + n + 1) * sizeof *p);
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
    tg_tensor **a = tg_malloc((size_t)(*n ? *n : 1) * sizeof *a);
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
        const char *b = row_of(opt->kind)->state[k];
        if (b && strcmp(b, name) == 0) return opt->params[i].buf[k];
    }
    return NULL;
}

void tg_optim_zero_grad(tg_optim *opt) {
    if (!opt) return;
    for (int i = 0; i < opt->n_params; i++) tg_zero_grad(opt->params[i].param);
}

/* ---- update kernels ----------------------------------------------------------------------------- */

/* TG_DISPATCH (tensor/internal.h) runs a block with T = float or double, as the ops do. */
#define PTR(t) ((T *)tg_data(t))

/* The state buffer k of a parameter, [param's shape] and created with the given fill value on first use. */
static tg_tensor *state_buf(tg_optim_slot *ps, int k, double fill) {
    if (!ps->buf[k]) {
        tg_tensor *p = ps->param;
        ps->buf[k] = tg_full(tg_dtype_of(p), tg_ndim(p), tg_shape(p), fill);
    }
    return ps->buf[k];
}

/* A 0-d state buffer k in the parameter's dtype (a row's .scalar bit k), created as fill. */
static tg_tensor *state_scalar(tg_optim_slot *ps, int k, double fill) {
    if (!ps->buf[k]) ps->buf[k] = tg_full(tg_dtype_of(ps->param), 0, NULL, fill);
    return ps->buf[k];
}

/* Every update below runs its loop as a dispatched kernel (tensor/updates.h: the chosen CPU target's
 * vector width, TAPEGRAD_CPU steers it) unless maximize is set: the kernel is this file's general
 * loop with the options as compile-time flags, the same operations in the same order (correctly
 * rounded mul, add, div, sqrt; no contraction in ISO C mode), so it gives the general loop's bits
 * (test optim::fast_loops_equal_the_general_loop, which reaches the general loop through maximize on
 * the negated loss). The general loops stay as the reference and for maximize. optim/ itself is built
 * for the baseline target (SSE2 on x86-64), where Adam's loop was 8.9 % of a B = 1 LSTM step. */
#define UPD_KERNEL(name, pp) _Generic((pp), float *: tg_upd_##name##_f32, double *: tg_upd_##name##_f64)

/* SGD. torch: d_p = d_p.add(p, alpha=wd); buf = clone(d_p) | buf.mul_(μ).add_(d_p, alpha=1-damp);
 * d_p = d_p.add(buf, alpha=μ) (nesterov) | buf; p.add_(d_p, alpha=-lr) */
static void sgd_update(tg_optim_slot *ps, const tg_optim_opts *o, const tg_tensor *grad) {
    tg_tensor *p = ps->param;
    bool first = ps->buf[0] == NULL;
    tg_tensor *buf = o->momentum != 0 ? state_buf(ps, 0, 0.0) : NULL;
    if (o->momentum != 0 && !buf) return; /* no state: out of memory (reported) */
    int64_t n = tg_numel(p);
    TG_DISPATCH(tg_dtype_of(p), {
        T *pp = PTR(p);
        const T *pg = (const T *)tg_cdata(grad);
        T *pb = buf ? PTR(buf) : NULL;
        const T wd = (T)o->weight_decay, mom = (T)o->momentum, damp1 = (T)(1.0 - o->dampening), neg_lr = (T)(-o->lr);
        if (!o->maximize) {
            const tg_upd u = {.flags = (o->weight_decay != 0 ? TG_UPD_L2 : 0u) | (pb ? TG_UPD_MOMENTUM : 0u) |
                                       (pb && first ? TG_UPD_FIRST : 0u) | (pb && o->nesterov ? TG_UPD_NESTEROV : 0u),
                              .wd = wd, .mom = mom, .k1 = neg_lr, .k2 = damp1};
            UPD_KERNEL(sgd, pp)(pp, pb, NULL, NULL, pg, n, &u);
            n = 0; /* done: skip the general loop */
        }
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

static bool sgd_check(const tg_optim_opts *o, char *msg, size_t size) {
    if (o->nesterov && !(o->momentum > 0 && o->dampening == 0)) {
        snprintf(msg, size, "sgd: nesterov momentum requires a momentum > 0 and zero dampening (momentum %g, dampening %g)",
                 o->momentum, o->dampening);
        return false;
    }
    return true;
}

/* momentum_buffer only with momentum (torch: None without) */
static unsigned sgd_needs(const tg_optim_opts *o) { return o->momentum != 0 ? 1u : 0u; }

static const tg_optim_row sgd_row = {
    .torch = "torch.optim.SGD",
    .uses = ALL_KINDS | F(momentum) | F(dampening) | F(nesterov),
    .needs = sgd_needs,
    .defaults = {.lr = 1e-3}, /* torch >= 2.0; required in 1.x */
    .state = {"momentum_buffer"},
    .update = sgd_update,
    .check = sgd_check,
};

/* Adam / AdamW. torch: (AdamW: p.mul_(1 - lr·wd)) | grad = grad.add(p, alpha=wd);
 * exp_avg.mul_(β1).add_(grad, alpha=1-β1); exp_avg_sq.mul_(β2).addcmul_(grad, grad, value=1-β2);
 * step_size = lr / (1-β1^t); denom = (v.sqrt() / sqrt(1-β2^t)).add_(eps) (amsgrad: v̂ = max(v̂, v));
 * p.addcdiv_(exp_avg, denom, value=-step_size) */

static void adam_any_update(tg_optim_slot *ps, const tg_optim_opts *o, const tg_tensor *grad, bool decoupled) {
    tg_tensor *p = ps->param;
    tg_tensor *m = state_buf(ps, 0, 0.0), *v = state_buf(ps, 1, 0.0);
    tg_tensor *vmax = o->amsgrad ? state_buf(ps, 2, 0.0) : NULL;
    if (!m || !v || (o->amsgrad && !vmax)) return; /* no state: out of memory (reported) */
    const double t = (double)ps->step;
    const double bias_correction1 = 1 - pow(o->beta1, t);
    const double bias_correction2 = 1 - pow(o->beta2, t);
    const double step_size = o->lr / bias_correction1;
    const double bias_correction2_sqrt = sqrt(bias_correction2);
    int64_t n = tg_numel(p);
    const bool maximize = o->maximize, wd_on = o->weight_decay != 0;
    TG_DISPATCH(tg_dtype_of(p), {
        T *restrict pp = PTR(p), *restrict pm = PTR(m), *restrict pv = PTR(v), *restrict pvmax = vmax ? PTR(vmax) : NULL;
        const T *restrict pg = (const T *)tg_cdata(grad);
        const T decay = (T)(1.0 - o->lr * o->weight_decay), wd = (T)o->weight_decay;
        const T b1 = (T)o->beta1, one_b1 = (T)(1.0 - o->beta1), b2 = (T)o->beta2, one_b2 = (T)(1.0 - o->beta2);
        const T bc2s = (T)bias_correction2_sqrt, eps = (T)o->eps, neg_step = (T)(-step_size);
        if (!maximize) {
            const tg_upd u = {.flags = (decoupled ? TG_UPD_DECOUPLED : wd_on ? TG_UPD_L2 : 0u) | (pvmax ? TG_UPD_AMSGRAD : 0u),
                              .wd = wd, .decay = decay, .b1 = b1, .one_b1 = one_b1, .b2 = b2, .one_b2 = one_b2,
                              .eps = eps, .k1 = neg_step, .bc = bc2s};
            UPD_KERNEL(adam, pp)(pp, pm, pv, pvmax, pg, n, &u);
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

static void adam_update(tg_optim_slot *ps, const tg_optim_opts *o, const tg_tensor *grad) {
    adam_any_update(ps, o, grad, false);
}
static void adamw_update(tg_optim_slot *ps, const tg_optim_opts *o, const tg_tensor *grad) {
    adam_any_update(ps, o, grad, true);
}

/* exp_avg, exp_avg_sq (+ max_exp_avg_sq with amsgrad) */
static unsigned adam_needs(const tg_optim_opts *o) { return o->amsgrad ? 7u : 3u; }

static const tg_optim_row adam_row = {
    .torch = "torch.optim.Adam",
    .uses = ALL_KINDS | F(beta1) | F(beta2) | F(eps) | F(amsgrad),
    .defaults = {.lr = 1e-3, .beta1 = 0.9, .beta2 = 0.999, .eps = 1e-8},
    .state = {"exp_avg", "exp_avg_sq", "max_exp_avg_sq"},
    .needs = adam_needs,
    .update = adam_update,
};

static const tg_optim_row adamw_row = {
    .torch = "torch.optim.AdamW",
    .uses = ALL_KINDS | F(beta1) | F(beta2) | F(eps) | F(amsgrad),
    .defaults = {.lr = 1e-3, .weight_decay = 1e-2, .beta1 = 0.9, .beta2 = 0.999, .eps = 1e-8},
    .state = {"exp_avg", "exp_avg_sq", "max_exp_avg_sq"},
    .needs = adam_needs,
    .update = adamw_update,
};

/* RMSprop. torch: grad = grad.add(p, alpha=wd); square_avg.mul_(α).addcmul_(grad, grad, value=1-α);
 * centered: grad_avg.mul_(α).add_(grad, alpha=1-α); avg = square_avg.addcmul(grad_avg, grad_avg,
 * value=-1).sqrt_() | avg = square_avg.sqrt(); avg = avg.add_(eps);
 * momentum: buf.mul_(μ).addcdiv_(grad, avg); p.add_(buf, alpha=-lr) | p.addcdiv_(grad, avg, value=-lr) */
static void rmsprop_update(tg_optim_slot *ps, const tg_optim_opts *o, const tg_tensor *grad) {
    tg_tensor *p = ps->param;
    tg_tensor *sq = state_buf(ps, 0, 0.0);
    tg_tensor *buf = o->momentum > 0 ? state_buf(ps, 1, 0.0) : NULL;
    tg_tensor *ga = o->centered ? state_buf(ps, 2, 0.0) : NULL;
    if (!sq || (o->momentum > 0 && !buf) || (o->centered && !ga)) return; /* no state: out of memory (reported) */
    int64_t n = tg_numel(p);
    TG_DISPATCH(tg_dtype_of(p), {
        T *pp = PTR(p), *psq = PTR(sq), *pb = buf ? PTR(buf) : NULL, *pga = ga ? PTR(ga) : NULL;
        const T *pg = (const T *)tg_cdata(grad);
        const T wd = (T)o->weight_decay, alpha = (T)o->alpha, one_alpha = (T)(1.0 - o->alpha);
        const T eps = (T)o->eps, mom = (T)o->momentum, neg_lr = (T)(-o->lr), minus_one = (T)-1, one = (T)1;
        if (!o->maximize) {
            const tg_upd u = {.flags = (o->weight_decay != 0 ? TG_UPD_L2 : 0u) | (pb ? TG_UPD_MOMENTUM : 0u) |
                                       (pga ? TG_UPD_CENTERED : 0u),
                              .wd = wd, .b2 = alpha, .one_b2 = one_alpha, .eps = eps, .mom = mom, .k1 = neg_lr};
            UPD_KERNEL(rmsprop, pp)(pp, psq, pb, pga, pg, n, &u);
            n = 0; /* done: skip the general loop */
        }
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

/* square_avg, momentum_buffer with momentum > 0, grad_avg when centered */
static unsigned rmsprop_needs(const tg_optim_opts *o) {
    return 1u | (o->momentum > 0 ? 2u : 0u) | (o->centered ? 4u : 0u);
}

static const tg_optim_row rmsprop_row = {
    .torch = "torch.optim.RMSprop",
    .uses = ALL_KINDS | F(momentum) | F(eps) | F(alpha) | F(centered),
    .defaults = {.lr = 1e-2, .alpha = 0.99, .eps = 1e-8},
    .state = {"square_avg", "momentum_buffer", "grad_avg"},
    .needs = rmsprop_needs,
    .update = rmsprop_update,
};

/* Adagrad. torch: grad = grad.add(p, alpha=wd); clr = lr / (1 + (t-1)·lr_decay);
 * state_sum.addcmul_(grad, grad, value=1); std = state_sum.sqrt().add_(eps); p.addcdiv_(grad, std, value=-clr) */
static void adagrad_update(tg_optim_slot *ps, const tg_optim_opts *o, const tg_tensor *grad) {
    tg_tensor *p = ps->param;
    tg_tensor *sum = state_buf(ps, 0, o->initial_accumulator_value);
    if (!sum) return; /* no state: out of memory (reported) */
    const double clr = o->lr / (1 + (double)(ps->step - 1) * o->lr_decay);
    int64_t n = tg_numel(p);
    TG_DISPATCH(tg_dtype_of(p), {
        T *pp = PTR(p), *ps_ = PTR(sum);
        const T *pg = (const T *)tg_cdata(grad);
        const T wd = (T)o->weight_decay, eps = (T)o->eps, neg_clr = (T)(-clr), one = (T)1;
        if (!o->maximize) {
            const tg_upd u = {.flags = o->weight_decay != 0 ? TG_UPD_L2 : 0u, .wd = wd, .eps = eps, .k1 = neg_clr};
            UPD_KERNEL(adagrad, pp)(pp, ps_, NULL, NULL, pg, n, &u);
            n = 0; /* done: skip the general loop */
        }
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

static const tg_optim_row adagrad_row = {
    .torch = "torch.optim.Adagrad",
    .uses = ALL_KINDS | F(eps) | F(lr_decay) | F(initial_accumulator_value),
    .from_constructor = F(initial_accumulator_value), /* a group's own value is ignored, as in torch 1.13 */
    .defaults = {.lr = 1e-2, .eps = 1e-10},
    .state = {"sum"},
    .update = adagrad_update,
};

/* NAdam (torch 1.13). torch: g = g.add(p, alpha=wd) (decoupled: p.mul_(1 - lr·wd) instead);
 * μ_t = β1 (1 - 0.5·0.96^(t·ψ)), μ_{t+1} likewise (ψ = momentum_decay); mu_product *= μ_t (a 0-d
 * tensor); mu_product_next = mu_product · μ_t · μ_{t+1} (sic: torch 1.13 multiplies μ_t in a second
 * time; torch >= 2.0 dropped it, pytorch/pytorch#92699); m, v as Adam;
 * denom = (v / (1-β2^t)).sqrt() + eps; p.addcdiv_(g, denom, value=-lr(1-μ_t)/(1-mu_product));
 * p.addcdiv_(m, denom, value=-lr·μ_{t+1}/(1-mu_product_next)) */
static void nadam_update(tg_optim_slot *ps, const tg_optim_opts *o, const tg_tensor *grad) {
    tg_tensor *p = ps->param;
    tg_tensor *m = state_buf(ps, 0, 0.0), *v = state_buf(ps, 1, 0.0), *mu_prod = state_scalar(ps, 2, 1.0);
    if (!m || !v || !mu_prod) return; /* no state: out of memory (reported) */
    const double t = (double)ps->step;
    const double bias_correction2 = 1 - pow(o->beta2, t);
    const double mu = o->beta1 * (1. - 0.5 * pow(0.96, t * o->momentum_decay));
    const double mu_next = o->beta1 * (1. - 0.5 * pow(0.96, (t + 1) * o->momentum_decay));
    const bool decoupled = o->decoupled_weight_decay && o->weight_decay != 0;
    const bool l2 = !o->decoupled_weight_decay && o->weight_decay != 0;
    int64_t n = tg_numel(p);
    TG_DISPATCH(tg_dtype_of(p), {
        T *pmp = PTR(mu_prod);
        *pmp = *pmp * (T)mu;                             /* in the state's dtype, as torch's tensor op */
        const T mu_product_next = *pmp * (T)mu * (T)mu_next;
        const T v1 = (T)(-o->lr * (1. - mu) / (1. - (double)*pmp));
        const T v2 = (T)(-o->lr * mu_next / (1. - (double)mu_product_next));
        T *pp = PTR(p), *pm = PTR(m), *pv = PTR(v);
        const T *pg = (const T *)tg_cdata(grad);
        const T decay = (T)(1.0 - o->lr * o->weight_decay), wd = (T)o->weight_decay;
        const T b1 = (T)o->beta1, one_b1 = (T)(1.0 - o->beta1), b2 = (T)o->beta2, one_b2 = (T)(1.0 - o->beta2);
        const T bc2 = (T)bias_correction2, eps = (T)o->eps;
        if (!o->maximize) {
            const tg_upd u = {.flags = decoupled ? TG_UPD_DECOUPLED : l2 ? TG_UPD_L2 : 0u, .wd = wd, .decay = decay,
                              .b1 = b1, .one_b1 = one_b1, .b2 = b2, .one_b2 = one_b2, .eps = eps, .k1 = v1, .k2 = v2,
                              .bc = bc2};
            UPD_KERNEL(nadam, pp)(pp, pm, pv, NULL, pg, n, &u);
            n = 0; /* done: skip the general loop */
        }
        for (int64_t i = 0; i < n; i++) {
            T d = o->maximize ? -pg[i] : pg[i];
            if (decoupled) pp[i] = pp[i] * decay;
            else if (l2) d = d + wd * pp[i];
            pm[i] = pm[i] * b1 + one_b1 * d;
            pv[i] = pv[i] * b2 + one_b2 * d * d;
            const T denom = sqrt(pv[i] / bc2) + eps;
            pp[i] = pp[i] + v1 * d / denom;
            pp[i] = pp[i] + v2 * pm[i] / denom;
        }
    });
    tg_bump_version(m);
    tg_bump_version(v);
    tg_bump_version(mu_prod);
}

static const tg_optim_row nadam_row = {
    .torch = "torch.optim.NAdam",
    .uses = ALL_KINDS | F(beta1) | F(beta2) | F(eps) | F(momentum_decay) | F(decoupled_weight_decay),
    .defaults = {.lr = 2e-3, .beta1 = 0.9, .beta2 = 0.999, .eps = 1e-8, .momentum_decay = 4e-3},
    .state = {"exp_avg", "exp_avg_sq", "mu_product"},
    .scalar = 1u << 2,
    .update = nadam_update,
};

/* RAdam (torch 1.13). torch: g += wd p (decoupled: p.mul_(1 - lr·wd) instead); m, v as Adam;
 * m̂ = m / (1-β1^t); ρ∞ = 2/(1-β2) - 1; ρ_t = ρ∞ - 2t·β2^t/(1-β2^t);
 * ρ_t > 5: r = √((ρ_t-4)(ρ_t-2)ρ∞ / ((ρ∞-4)(ρ∞-2)ρ_t)), a = (√v + eps).reciprocal() · √(1-β2^t)
 * (torch's scalar / tensor), p.add_(m̂ · lr · a · r, alpha=-1); else p.add_(m̂ · lr, alpha=-1) */
static void radam_update(tg_optim_slot *ps, const tg_optim_opts *o, const tg_tensor *grad) {
    tg_tensor *p = ps->param;
    tg_tensor *m = state_buf(ps, 0, 0.0), *v = state_buf(ps, 1, 0.0);
    if (!m || !v) return; /* no state: out of memory (reported) */
    const double t = (double)ps->step;
    const double bias_correction1 = 1 - pow(o->beta1, t);
    const double bias_correction2 = 1 - pow(o->beta2, t);
    const double rho_inf = 2 / (1 - o->beta2) - 1;
    const double rho_t = rho_inf - 2 * t * pow(o->beta2, t) / bias_correction2;
    const bool rectify = rho_t > 5.;
    const double rect = rectify ? sqrt((rho_t - 4) * (rho_t - 2) * rho_inf / ((rho_inf - 4) * (rho_inf - 2) * rho_t)) : 0;
    const bool decoupled = o->decoupled_weight_decay && o->weight_decay != 0;
    const bool l2 = !o->decoupled_weight_decay && o->weight_decay != 0;
    int64_t n = tg_numel(p);
    TG_DISPATCH(tg_dtype_of(p), {
        T *pp = PTR(p), *pm = PTR(m), *pv = PTR(v);
        const T *pg = (const T *)tg_cdata(grad);
        const T decay = (T)(1.0 - o->lr * o->weight_decay), wd = (T)o->weight_decay;
        const T b1 = (T)o->beta1, one_b1 = (T)(1.0 - o->beta1), b2 = (T)o->beta2, one_b2 = (T)(1.0 - o->beta2);
        const T bc1 = (T)bias_correction1, bc2_sqrt = (T)sqrt(bias_correction2), eps = (T)o->eps;
        const T lr = (T)o->lr, r = (T)rect, one = (T)1, minus_one = (T)-1;
        if (!o->maximize) {
            const tg_upd u = {.flags = (decoupled ? TG_UPD_DECOUPLED : l2 ? TG_UPD_L2 : 0u) | (rectify ? TG_UPD_RECTIFY : 0u),
                              .wd = wd, .decay = decay, .b1 = b1, .one_b1 = one_b1, .b2 = b2, .one_b2 = one_b2,
                              .eps = eps, .k1 = lr, .k2 = r, .bc = bc1, .bc2 = bc2_sqrt};
            UPD_KERNEL(radam, pp)(pp, pm, pv, NULL, pg, n, &u);
            n = 0; /* done: skip the general loop */
        }
        for (int64_t i = 0; i < n; i++) {
            T d = o->maximize ? -pg[i] : pg[i];
            if (decoupled) pp[i] = pp[i] * decay;
            else if (l2) d = d + wd * pp[i];
            pm[i] = pm[i] * b1 + one_b1 * d;
            pv[i] = pv[i] * b2 + one_b2 * d * d;
            const T m_hat = pm[i] / bc1;
            if (rectify) {
                const T adaptive_lr = one / (sqrt(pv[i]) + eps) * bc2_sqrt;
                pp[i] = pp[i] + minus_one * (m_hat * lr * adaptive_lr * r);
            } else {
                pp[i] = pp[i] + minus_one * (m_hat * lr);
            }
        }
    });
    tg_bump_version(m);
    tg_bump_version(v);
}

static const tg_optim_row radam_row = {
    .torch = "torch.optim.RAdam",
    .uses = ALL_KINDS | F(beta1) | F(beta2) | F(eps) | F(decoupled_weight_decay),
    .defaults = {.lr = 1e-3, .beta1 = 0.9, .beta2 = 0.999, .eps = 1e-8},
    .state = {"exp_avg", "exp_avg_sq"},
    .update = radam_update,
};

/* Adamax. torch: g += wd p; exp_avg.mul_(β1).add_(g, alpha=1-β1);
 * exp_inf = amax(exp_inf·β2, |g| + eps) (NaN propagates); p.addcdiv_(exp_avg, exp_inf, value=-lr/(1-β1^t)) */
static void adamax_update(tg_optim_slot *ps, const tg_optim_opts *o, const tg_tensor *grad) {
    tg_tensor *p = ps->param;
    tg_tensor *m = state_buf(ps, 0, 0.0), *u = state_buf(ps, 1, 0.0);
    if (!m || !u) return; /* no state: out of memory (reported) */
    const double clr = o->lr / (1 - pow(o->beta1, (double)ps->step));
    int64_t n = tg_numel(p);
    TG_DISPATCH(tg_dtype_of(p), {
        T *pp = PTR(p), *pm = PTR(m), *pu = PTR(u);
        const T *pg = (const T *)tg_cdata(grad);
        const T wd = (T)o->weight_decay, b1 = (T)o->beta1, one_b1 = (T)(1.0 - o->beta1), b2 = (T)o->beta2;
        const T eps = (T)o->eps, neg_clr = (T)(-clr);
        if (!o->maximize) {
            const tg_upd u = {.flags = o->weight_decay != 0 ? TG_UPD_L2 : 0u, .wd = wd, .b1 = b1, .one_b1 = one_b1, .b2 = b2,
                              .eps = eps, .k1 = neg_clr};
            UPD_KERNEL(adamax, pp)(pp, pm, pu, NULL, pg, n, &u);
            n = 0; /* done: skip the general loop */
        }
        for (int64_t i = 0; i < n; i++) {
            T d = o->maximize ? -pg[i] : pg[i];
            if (o->weight_decay != 0) d = d + wd * pp[i];
            pm[i] = pm[i] * b1 + one_b1 * d;
            const T a = pu[i] * b2, b = fabs(d) + eps;
            pu[i] = a != a ? a : b != b ? b : a > b ? a : b; /* torch.amax propagates NaN */
            pp[i] = pp[i] + neg_clr * pm[i] / pu[i];
        }
    });
    tg_bump_version(m);
    tg_bump_version(u);
}

static const tg_optim_row adamax_row = {
    .torch = "torch.optim.Adamax",
    .uses = ALL_KINDS | F(beta1) | F(beta2) | F(eps),
    .defaults = {.lr = 2e-3, .beta1 = 0.9, .beta2 = 0.999, .eps = 1e-8},
    .state = {"exp_avg", "exp_inf"},
    .update = adamax_update,
};

/* Adadelta. torch: g += wd p; square_avg.mul_(ρ).addcmul_(g, g, value=1-ρ);
 * std = square_avg.add(eps).sqrt_(); delta = acc_delta.add(eps).sqrt_().div_(std).mul_(g);
 * acc_delta.mul_(ρ).addcmul_(delta, delta, value=1-ρ); p.add_(delta, alpha=-lr) */
static void adadelta_update(tg_optim_slot *ps, const tg_optim_opts *o, const tg_tensor *grad) {
    tg_tensor *p = ps->param;
    tg_tensor *sq = state_buf(ps, 0, 0.0), *acc = state_buf(ps, 1, 0.0);
    if (!sq || !acc) return; /* no state: out of memory (reported) */
    int64_t n = tg_numel(p);
    TG_DISPATCH(tg_dtype_of(p), {
        T *pp = PTR(p), *psq = PTR(sq), *pacc = PTR(acc);
        const T *pg = (const T *)tg_cdata(grad);
        const T wd = (T)o->weight_decay, rho = (T)o->rho, one_rho = (T)(1.0 - o->rho);
        const T eps = (T)o->eps, neg_lr = (T)(-o->lr);
        if (!o->maximize) {
            const tg_upd u = {.flags = o->weight_decay != 0 ? TG_UPD_L2 : 0u, .wd = wd, .b2 = rho, .one_b2 = one_rho,
                              .eps = eps, .k1 = neg_lr};
            UPD_KERNEL(adadelta, pp)(pp, psq, pacc, NULL, pg, n, &u);
            n = 0; /* done: skip the general loop */
        }
        for (int64_t i = 0; i < n; i++) {
            T d = o->maximize ? -pg[i] : pg[i];
            if (o->weight_decay != 0) d = d + wd * pp[i];
            psq[i] = psq[i] * rho + one_rho * d * d;
            const T std_ = sqrt(psq[i] + eps);
            const T delta = sqrt(pacc[i] + eps) / std_ * d;
            pacc[i] = pacc[i] * rho + one_rho * delta * delta;
            pp[i] = pp[i] + neg_lr * delta;
        }
    });
    tg_bump_version(sq);
    tg_bump_version(acc);
}

static const tg_optim_row adadelta_row = {
    .torch = "torch.optim.Adadelta",
    .uses = ALL_KINDS | F(rho) | F(eps),
    .defaults = {.lr = 1.0, .rho = 0.9, .eps = 1e-6},
    .state = {"square_avg", "acc_delta"},
    .update = adadelta_update,
};

/* The rows in enum order, made from TG_OPTIM_KINDS. */
static const tg_optim_row *const rows[TG_OPTIM_KIND_COUNT] = {
#define KIND_ROW(K, name) [TG_OPTIM_##K] = &name##_row,
    TG_OPTIM_KINDS(KIND_ROW)
#undef KIND_ROW
};

static const tg_optim_row *row_of(tg_optim_kind kind) {
    return (unsigned)kind < TG_OPTIM_KIND_COUNT ? rows[kind] : NULL;
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
    const tg_optim_row *row = rows[opt->kind];
    tg_no_grad_begin();
    const uint64_t errors_before = tg__error_count();
    for (int i = 0; i < opt->n_params; i++) {
        tg_optim_slot *ps = &opt->params[i];
        tg_tensor *g = tg_grad(ps->param);
        if (!g) continue;
        tg_optim_opts o = opt->groups[ps->group].opts;
        for (int f = 0; row->from_constructor && f < N_FIELDS; f++) /* the group's value does not count */
            if (row->from_constructor >> f & 1u) copy_field(&o, &opt->defaults, f);
        ps->step++;
        row->update(ps, &o, g);
        if (tg__error_count() != errors_before) { /* its state could not be created: it is unchanged */
            ps->step--;
            tg_no_grad_end();
            tg_error(fn, "parameter %d '%s' not updated (no memory for its state); parameters 0..%d were", i,
                     tg_name(ps->param), i - 1);
            return -1;
        }
        tg_bump_version(ps->param);
    }
    tg_no_grad_end();
    return 0;
}
