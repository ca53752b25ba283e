/* tests/test_loss.c - MSE, cross-entropy, NLL and BCE-with-logits.
 *
 * Values and input gradients are compared with PyTorch's (tests/data/loss_golden.h, written by
 * tests/data/gen_optim_golden.py; torch's version is in its first line; L1, smooth L1, Huber, KL,
 * BCE on probabilities, CE with probability targets and on [N,C,d1,d2]: tests/data/loss_extra_golden.h
 * from gen_loss_extra_golden.py, NaN edge cases included; CTC: tests/data/ctc_golden.h from
 * gen_ctc_golden.py, impossible alignments included), every loss passes
 * tg_gradcheck in float64, logits of ±1e4 give finite, correct values in float32 and float64, and
 * misuse is reported with a message naming the function. Every test checks that the live tensor count
 * returns to its starting value. */
#include <criterion/criterion.h>
#include <math.h>
#include <string.h>

#include "data/ctc_golden.h"
#include "data/loss_extra_golden.h"
#include "data/loss_golden.h"
#include "data/parity_golden.h"
#include "helpers.h"

TestSuite(loss, .init = th_live_start);

#define N GOLDEN_LN
#define C GOLDEN_LC

/* The constants of the golden cases, in one dtype (new refs). */
typedef struct consts {
    tg_tensor *class_weight; /* [C] */
    tg_tensor *yb, *yb_ext;  /* [N,C] BCE / MSE targets */
    tg_tensor *wb, *pw;      /* [C] BCE weight and pos_weight */
} consts;

static consts consts_new(tg_dtype dt) {
    return (consts){
        .class_weight = tg_from_f64(dt, TG_SHAPE(C), golden_class_weight),
        .yb = tg_from_f64(dt, TG_SHAPE(N, C), golden_bce_target),
        .yb_ext = tg_from_f64(dt, TG_SHAPE(N, C), golden_bce_extreme_target),
        .wb = tg_from_f64(dt, TG_SHAPE(C), golden_bce_weight),
        .pw = tg_from_f64(dt, TG_SHAPE(C), golden_bce_pos_weight),
    };
}

static void consts_free(consts *k) {
    tg_release(k->class_weight);
    tg_release(k->yb);
    tg_release(k->yb_ext);
    tg_release(k->wb);
    tg_release(k->pw);
}

static bool is_extreme(const char *name) { return strstr(name, "extreme") != NULL; }

/* The tapegrad call matching each golden case (same arguments as the generator's torch call). */
static tg_tensor *golden_call(const char *name, const tg_tensor *x, const consts *k) {
    tg_cross_entropy_opts ce = tg_cross_entropy_defaults();
    if (strstr(name, "_sum")) ce.reduction = TG_REDUCE_SUM;
    if (strstr(name, "_none")) ce.reduction = TG_REDUCE_NONE;
    tg_bce_opts bce = {.reduction = ce.reduction};
    if (!strncmp(name, "ce_", 3) || !strncmp(name, "nll_", 4)) {
        const int64_t *target = is_extreme(name) ? golden_extreme_target : golden_target;
        if (strstr(name, "weight")) ce.weight = k->class_weight;
        if (!strcmp(name, "ce_ignore3_mean")) { target = golden_target_ign3; ce.ignore_index = 3; }
        if (!strcmp(name, "ce_smooth_weight_mean")) ce.label_smoothing = 0.1;
        if (!strcmp(name, "ce_smooth_none")) ce.label_smoothing = 0.2;
        if (!strcmp(name, "ce_smooth_mean")) ce.label_smoothing = 0.3;
        if (!strncmp(name, "nll_", 4)) return tg_nll_loss(tg_log_softmax(x, 1), target, &ce);
        return tg_cross_entropy(x, target, &ce);
    }
    if (!strncmp(name, "bce_", 4)) {
        if (!strncmp(name, "bce_weight", 10)) bce.weight = k->wb;
        if (strstr(name, "pos_weight")) bce.pos_weight = k->pw;
        return tg_bce_with_logits(x, is_extreme(name) ? k->yb_ext : k->yb, &bce);
    }
    return tg_mse_loss(x, k->yb, ce.reduction);
}

static void check_golden(tg_dtype dt, double atol, double rtol, bool extremes_only) {
    consts k = consts_new(dt);
    for (int c = 0; c < GOLDEN_N_LOSS_CASES; c++) {
        const golden_loss_case *gc = &golden_loss_cases[c];
        if (extremes_only && !is_extreme(gc->name)) continue;
        tg_tensor *x = tg_from_f64(dt, TG_SHAPE(N, C), is_extreme(gc->name) ? golden_extreme_logits : golden_logits);
        tg_set_requires_grad(x, true);
        tg_tensor *out = golden_call(gc->name, x, &k);
        cr_assert_not_null(out, "%s: %s", gc->name, tg_last_error());
        cr_assert_eq(tg_numel(out), gc->n_out, "%s", gc->name);
        bool per_row = !strncmp(gc->name, "ce", 2) || !strncmp(gc->name, "nll", 3);
        int rank = !strstr(gc->name, "none") ? 0 : per_row ? 1 : 2; /* 0-d, [N] or [N,C] */
        cr_expect_eq(tg_ndim(out), rank, "%s: result rank", gc->name);
        for (int i = 0; i < gc->n_out; i++) {
            double v = tg_get(out, i), r = gc->out[i];
            cr_expect(isfinite(v) && fabs(v - r) <= atol + rtol * fabs(r), "%s (%s) out[%d] = %.17g, torch %.17g",
                      gc->name, tg_dtype_name(dt), i, v, r);
        }
        cr_assert_eq(tg_backward(gc->n_out == 1 ? out : tg_sum(out)), 0, "%s", gc->name);
        for (int i = 0; i < N * C; i++) {
            double v = tg_get(tg_grad(x), i), r = gc->grad[i];
            cr_expect(isfinite(v) && fabs(v - r) <= atol + rtol * fabs(r), "%s (%s) grad[%d] = %.17g, torch %.17g",
                      gc->name, tg_dtype_name(dt), i, v, r);
        }
        tg_tape_reset();
        tg_release(x);
    }
    consts_free(&k);
}

TH_TEST(loss, values_and_gradients_match_torch_f64, th_live_check) { check_golden(TG_F64, 1e-14, 1e-12, false); }

TH_TEST(loss, values_and_gradients_match_torch_f32, th_live_check) { check_golden(TG_F32, 1e-6, 1e-5, false); }

/* Logits of ±1e4: exp would overflow, yet every value and gradient is finite and right. */
TH_TEST(loss, extreme_logits_are_finite_and_exact, th_live_check) {
    check_golden(TG_F64, 1e-13, 1e-13, true);
    check_golden(TG_F32, 1e-6, 1e-6, true);
    /* the certain cases are exactly 0 */
    tg_tensor *x = tg_from_f64(TG_F32, TG_SHAPE(1, 2), (const double[]){1e4, -1e4});
    tg_tensor *y = tg_from_f64(TG_F32, TG_SHAPE(1, 2), (const double[]){1.0, 0.0});
    cr_expect_eq(tg_item(tg_bce_with_logits(x, y, NULL)), 0.0);
    cr_expect_eq(tg_item(tg_cross_entropy(x, (const int64_t[]){0}, NULL)), 0.0);
    cr_expect_eq(tg_item(tg_cross_entropy(x, (const int64_t[]){1}, NULL)), 2e4);
    tg_tape_reset();
    tg_release(x);
    tg_release(y);
}

/* ---- gradcheck ---------------------------------------------------------------------------------- */

typedef enum { L_CE, L_NLL, L_BCE, L_BCE_WEIGHTS, L_MSE } loss_kind;
typedef struct gc_case {
    loss_kind kind;
    tg_cross_entropy_opts ce;
    const int64_t *target;
    tg_reduction reduction;
} gc_case;

static tg_tensor *gc_fn(tg_tensor *const *in, int n, void *user) {
    const gc_case *c = user;
    (void)n;
    switch (c->kind) {
    case L_CE: return tg_cross_entropy(in[0], c->target, &c->ce);
    case L_NLL: return tg_nll_loss(tg_log_softmax(in[0], 1), c->target, &c->ce);
    case L_BCE: return tg_bce_with_logits(in[0], in[1], &(tg_bce_opts){.reduction = c->reduction});
    case L_BCE_WEIGHTS:
        return tg_bce_with_logits(in[0], in[1], &(tg_bce_opts){.reduction = c->reduction, .weight = in[2], .pos_weight = in[3]});
    default: return tg_mse_loss(in[0], in[1], c->reduction);
    }
}

TH_TEST(loss, every_loss_passes_gradcheck, th_live_check) {
    tg_tensor *x = tg_from_f64(TG_F64, TG_SHAPE(N, C), golden_logits);
    tg_tensor *y = tg_from_f64(TG_F64, TG_SHAPE(N, C), golden_bce_target);
    tg_tensor *w = tg_from_f64(TG_F64, TG_SHAPE(C), golden_bce_weight);
    tg_tensor *pw = tg_from_f64(TG_F64, TG_SHAPE(C), golden_bce_pos_weight);
    tg_tensor *cw = tg_from_f64(TG_F64, TG_SHAPE(C), golden_class_weight);
    tg_tensor *in[4] = {x, y, w, pw};
    for (int i = 0; i < 4; i++) tg_set_requires_grad(in[i], true);
    const tg_reduction reds[3] = {TG_REDUCE_MEAN, TG_REDUCE_SUM, TG_REDUCE_NONE};
    int checked = 0;
    for (int r = 0; r < 3; r++) {
        for (int variant = 0; variant < 4; variant++) {
            gc_case c = {.kind = L_CE, .ce = tg_cross_entropy_defaults(), .target = golden_target, .reduction = reds[r]};
            c.ce.reduction = reds[r];
            if (variant & 1) c.ce.weight = cw;
            if (variant & 2) c.ce.label_smoothing = 0.15;
            tg_gradcheck_input rep[1];
            cr_expect(tg_gradcheck(gc_fn, &c, in, 1, NULL, rep), "cross-entropy reduction %d variant %d: err %g", r,
                      variant, rep[0].max_abs_err);
            c.kind = L_NLL;
            cr_expect(tg_gradcheck(gc_fn, &c, in, 1, NULL, rep), "nll reduction %d variant %d", r, variant);
            checked += 2;
        }
        gc_case c = {.kind = L_BCE, .reduction = reds[r]};
        tg_gradcheck_input rep[4];
        cr_expect(tg_gradcheck(gc_fn, &c, in, 2, NULL, rep), "bce reduction %d: logits and targets", r);
        c.kind = L_BCE_WEIGHTS;
        cr_expect(tg_gradcheck(gc_fn, &c, in, 4, NULL, rep), "bce reduction %d: weight and pos_weight too", r);
        c.kind = L_MSE;
        cr_expect(tg_gradcheck(gc_fn, &c, in, 2, NULL, rep), "mse reduction %d", r);
        checked += 3;
    }
    cr_expect_eq(checked, 33);
    for (int i = 0; i < 4; i++) {
        cr_expect_null(tg_grad(in[i]), "gradcheck leaves no gradient");
        tg_release(in[i]);
    }
    tg_release(cw);
}

/* ---- semantics ---------------------------------------------------------------------------------- */

TH_TEST(loss, ignored_targets_and_weighted_mean, th_live_check) {
    tg_tensor *x = tg_from_f64(TG_F64, TG_SHAPE(N, C), golden_logits);
    tg_tensor *cw = tg_from_f64(TG_F64, TG_SHAPE(C), golden_class_weight);
    tg_cross_entropy_opts o = tg_cross_entropy_defaults();
    o.weight = cw;
    o.reduction = TG_REDUCE_NONE;
    tg_tensor *per = tg_cross_entropy(x, golden_target, &o);
    cr_expect_eq(tg_get(per, 2), 0.0, "an ignored row contributes 0");
    double num = 0, den = 0;
    for (int i = 0; i < N; i++) {
        num += tg_get(per, i);
        if (golden_target[i] != -100) den += golden_class_weight[golden_target[i]];
    }
    o.reduction = TG_REDUCE_MEAN;
    cr_expect_float_eq(tg_item(tg_cross_entropy(x, golden_target, &o)), num / den, 1e-14,
                       "mean = sum of weighted losses / sum of the weights of non-ignored targets");
    /* every target ignored: mean is NaN (0/0), sum is 0, like PyTorch */
    const int64_t all_ignored[N] = {-100, -100, -100, -100, -100};
    cr_expect(isnan(tg_item(tg_cross_entropy(x, all_ignored, NULL))));
    o.reduction = TG_REDUCE_SUM;
    cr_expect_eq(tg_item(tg_cross_entropy(x, all_ignored, &o)), 0.0);
    /* results are tape-owned: the reset frees them */
    cr_expect_gt(tg_tape_tensors(), 0);
    tg_tape_reset();
    cr_expect_eq(tg_tape_tensors(), 0);
    tg_release(x);
    tg_release(cw);
}

/* ---- every target ignored (tests/data/parity_golden.h) --------------------------------------------- */

/* Equal to torch's value, NaN where torch has NaN, to atol + rtol |r|. */
static bool close_or_both_nan(double v, double r, double atol, double rtol) {
    if (isnan(r)) return isnan(v);
    if (isinf(r)) return v == r;
    return fabs(v - r) <= atol + rtol * fabs(r);
}

/* torch: a mean over no (or zero-weight) targets is NaN, yet the ignored rows' gradient is exactly 0,
 * so a batch that is all padding cannot poison the parameters; zero-weight rows that are not ignored
 * get NaN, as in torch. Values and gradients in float64 and float32. */
static void check_ce_edge(tg_dtype dt, double atol, double rtol) {
    tg_tensor *w = tg_from_f64(dt, TG_SHAPE(PG_CE_C), pg_ce_weight);
    for (int c = 0; c < PG_N_CE_CASES; c++) {
        const pg_ce_case *pc = &pg_ce_cases[c];
        tg_tensor *x = tg_from_f64(dt, TG_SHAPE(PG_CE_N, PG_CE_C), pg_ce_logits);
        tg_set_requires_grad(x, true);
        tg_cross_entropy_opts o = tg_cross_entropy_defaults();
        o.reduction = (tg_reduction)pc->reduction;
        o.ignore_index = pc->ignore_index;
        o.weight = pc->weight ? w : NULL;
        o.label_smoothing = pc->label_smoothing;
        tg_tensor *y = pc->nll ? tg_nll_loss(x, pc->target, &o) : tg_cross_entropy(x, pc->target, &o);
        cr_assert_not_null(y, "%s: %s", pc->name, tg_last_error());
        cr_assert_eq(tg_numel(y), pc->n_out, "%s", pc->name);
        const double *ro = dt == TG_F64 ? pc->out64 : pc->out32, *rg = dt == TG_F64 ? pc->grad64 : pc->grad32;
        for (int i = 0; i < pc->n_out; i++)
            cr_expect(close_or_both_nan(tg_get(y, i), ro[i], atol, rtol), "%s (%s) out[%d] = %.17g, torch %.17g",
                      pc->name, tg_dtype_name(dt), i, tg_get(y, i), ro[i]);
        cr_assert_eq(tg_backward(pc->n_out == 1 ? y : tg_sum(y)), 0, "%s", pc->name);
        for (int i = 0; i < PG_CE_N * PG_CE_C; i++) {
            double v = tg_get(tg_grad(x), i);
            cr_expect(close_or_both_nan(v, rg[i], atol, rtol), "%s (%s) grad[%d] = %.17g, torch %.17g", pc->name,
                      tg_dtype_name(dt), i, v, rg[i]);
            if (rg[i] == 0.0) cr_expect(v == 0.0, "%s: an ignored row's gradient is exactly 0, not %g", pc->name, v);
        }
        tg_tape_reset();
        tg_release(x);
    }
    tg_release(w);
}

TH_TEST(loss, all_ignored_targets_match_torch_f64, th_live_check) { check_ce_edge(TG_F64, 1e-14, 1e-12); }
TH_TEST(loss, all_ignored_targets_match_torch_f32, th_live_check) { check_ce_edge(TG_F32, 1e-6, 1e-5); }

/* ---- misuse ------------------------------------------------------------------------------------- */

static void expect_error(tg_tensor *result, const char *fn, const char *needle) {
    cr_expect_null(result, "%s should have failed", fn);
    cr_expect_eq(th_error_count(), 1, "%s: %d errors", fn, th_error_count());
    cr_expect(strstr(th_last_message(), fn) == th_last_message(), "message starts with %s: %s", fn, th_last_message());
    cr_expect(strstr(th_last_message(), needle) != NULL, "'%s' not in: %s", needle, th_last_message());
    th_reset_errors();
}

TH_TEST(loss, misuse_is_reported_with_the_function_and_shapes, th_live_check) {
    th_record_errors();
    tg_tensor *a = tg_zeros(TG_F64, TG_SHAPE(2, 3)), *b = tg_zeros(TG_F64, TG_SHAPE(3, 2));
    tg_tensor *af = tg_zeros(TG_F32, TG_SHAPE(2, 3)), *x3 = tg_zeros(TG_F64, TG_SHAPE(2, 3, 1));
    tg_tensor *w2 = tg_ones(TG_F64, TG_SHAPE(2)), *w3 = tg_ones(TG_F64, TG_SHAPE(3)), *w23 = tg_ones(TG_F64, TG_SHAPE(2, 3));
    const int64_t t_ok[2] = {0, 2}, t_big[2] = {0, 3}, t_neg[2] = {-1, 0};
    expect_error(tg_mse_loss(a, b, TG_REDUCE_MEAN), "tg_mse_loss", "[2,3] F64 and target [3,2]");
    expect_error(tg_mse_loss(a, af, TG_REDUCE_MEAN), "tg_mse_loss", "F32");
    expect_error(tg_mse_loss(a, a, (tg_reduction)7), "tg_mse_loss", "reduction 7");
    tg_tensor *x1 = tg_zeros(TG_F64, TG_SHAPE(3));
    expect_error(tg_cross_entropy(x1, t_ok, NULL), "tg_cross_entropy", "[3] must be [N,C] or [N,C,d1,...]");
    tg_release(x1);
    expect_error(tg_cross_entropy(a, t_big, NULL), "tg_cross_entropy", "target[1] = 3 is outside [0, 3)");
    expect_error(tg_cross_entropy(a, t_neg, NULL), "tg_cross_entropy", "target[0] = -1");
    expect_error(tg_cross_entropy(a, NULL, NULL), "tg_cross_entropy", "target is NULL");
    tg_cross_entropy_opts o = tg_cross_entropy_defaults();
    o.weight = w2;
    expect_error(tg_cross_entropy(a, t_ok, &o), "tg_cross_entropy", "class weights [2] must be [3]");
    o = tg_cross_entropy_defaults();
    o.label_smoothing = 1.5;
    expect_error(tg_cross_entropy(a, t_ok, &o), "tg_cross_entropy", "label_smoothing");
    expect_error(tg_nll_loss(a, t_big, NULL), "tg_nll_loss", "target[1] = 3");
    expect_error(tg_bce_with_logits(a, b, NULL), "tg_bce_with_logits", "logits [2,3] F64 and target [3,2]");
    expect_error(tg_bce_with_logits(a, a, &(tg_bce_opts){.weight = w2}), "tg_bce_with_logits",
                 "weight [2] F64 does not broadcast to input [2,3]");
    expect_error(tg_bce_with_logits(a, a, &(tg_bce_opts){.pos_weight = x3}), "tg_bce_with_logits", "pos_weight [2,3,1]");
    /* broadcastable weights are fine */
    cr_expect_not_null(tg_bce_with_logits(a, a, &(tg_bce_opts){.weight = w3, .pos_weight = w23}));
    cr_expect_eq(th_error_count(), 0);
    /* a NULL from an earlier failed op: NULL again, the first message kept */
    tg_tensor *bad = tg_matmul(a, a);
    cr_expect_null(bad);
    cr_expect_null(tg_mse_loss(bad, a, TG_REDUCE_MEAN));
    cr_expect_null(tg_cross_entropy(bad, t_ok, NULL));
    cr_expect_null(tg_bce_with_logits(a, bad, NULL));
    cr_expect_eq(th_error_count(), 1);
    cr_expect(strncmp(th_last_message(), "tg_matmul", 9) == 0, "%s", th_last_message());
    th_reset_errors();
    tg_tape_reset();
    tg_tensor *all[] = {a, b, af, x3, w2, w3, w23};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) tg_release(all[i]);
}

/* ---- L1, smooth L1, Huber, KL, BCE on probabilities, CE with probabilities and on [N,C,d] ------- */

/* The tapegrad call of a golden_extra_loss case (same arguments as the generator's torch call). */
static tg_tensor *extra_call(const golden_extra_loss *gc, const tg_tensor *x, const tg_tensor *y, const tg_tensor *w) {
    const char *f = gc->fn;
    tg_cross_entropy_opts ce = tg_cross_entropy_defaults();
    ce.reduction = gc->reduction;
    ce.weight = w;
    ce.label_smoothing = gc->param;
    if (!strcmp(f, "l1")) return tg_l1_loss(x, y, gc->reduction);
    if (!strcmp(f, "smooth_l1")) return tg_smooth_l1_loss(x, y, gc->reduction, gc->param);
    if (!strcmp(f, "huber")) return tg_huber_loss(x, y, gc->reduction, gc->param);
    if (!strcmp(f, "kl")) return tg_kl_div(x, y, gc->reduction, false);
    if (!strcmp(f, "kl_log")) return tg_kl_div(x, y, gc->reduction, true);
    if (!strcmp(f, "bce")) return tg_binary_cross_entropy(x, y, &(tg_bce_opts){.reduction = gc->reduction, .weight = w});
    if (!strcmp(f, "ce_probs")) return tg_cross_entropy_probs(x, y, &ce);
    if (!strcmp(f, "ce_idx")) return tg_cross_entropy(x, gc->target, &ce);
    if (!strcmp(f, "nll_idx")) return tg_nll_loss(x, gc->target, &ce);
    cr_assert_fail("golden case %s: unknown function %s", gc->name, f);
    return NULL;
}

/* v equals torch's r: both NaN, equal infinities, or within atol + rtol |r|. */
static bool same_as_torch(double v, double r, double atol, double rtol) {
    if (isnan(r)) return isnan(v);
    if (isinf(r)) return v == r;
    return fabs(v - r) <= atol + rtol * fabs(r);
}

static void check_extra(tg_dtype dt, double atol, double rtol, const char *skip) {
    for (int c = 0; c < GOLDEN_N_EXTRA_LOSSES; c++) {
        const golden_extra_loss *gc = &golden_extra_losses[c];
        if (skip && strstr(gc->name, skip)) continue;
        int64_t n = 1, C_ = gc->shape[1];
        for (int d = 0; d < gc->ndim; d++) n *= gc->shape[d];
        tg_tensor *x = tg_from_f64(dt, gc->ndim, gc->shape, gc->x);
        tg_tensor *y = gc->target ? NULL : tg_from_f64(dt, gc->ndim, gc->shape, gc->y);
        tg_tensor *w = gc->weight ? tg_from_f64(dt, TG_SHAPE(C_), gc->weight) : NULL;
        tg_set_requires_grad(x, true);
        if (y && gc->gy) tg_set_requires_grad(y, true);
        tg_tensor *out = extra_call(gc, x, y, w);
        cr_assert_not_null(out, "%s: %s", gc->name, tg_last_error());
        cr_assert_eq(tg_numel(out), gc->n_out, "%s: %lld outputs, torch %d", gc->name, (long long)tg_numel(out), gc->n_out);
        cr_expect_eq(tg_ndim(out), gc->out_ndim, "%s: rank %d, torch %d", gc->name, tg_ndim(out), gc->out_ndim);
        for (int i = 0; i < gc->n_out; i++)
            cr_expect(same_as_torch(tg_get(out, i), gc->out[i], atol, rtol), "%s (%s) out[%d] = %.17g, torch %.17g",
                      gc->name, tg_dtype_name(dt), i, tg_get(out, i), gc->out[i]);
        cr_assert_eq(tg_backward(gc->n_out == 1 && gc->out_ndim == 0 ? out : tg_sum(out)), 0, "%s", gc->name);
        for (int64_t i = 0; i < n; i++) {
            double v = tg_grad(x) ? tg_get(tg_grad(x), i) : 0.0;
            cr_expect(same_as_torch(v, gc->gx[i], atol, rtol), "%s (%s) d input[%lld] = %.17g, torch %.17g", gc->name,
                      tg_dtype_name(dt), (long long)i, v, gc->gx[i]);
            if (!gc->gy) continue;
            v = tg_grad(y) ? tg_get(tg_grad(y), i) : 0.0;
            cr_expect(same_as_torch(v, gc->gy[i], atol, rtol), "%s (%s) d target[%lld] = %.17g, torch %.17g", gc->name,
                      tg_dtype_name(dt), (long long)i, v, gc->gy[i]);
        }
        tg_tape_reset();
        tg_release(x);
        tg_release(y);
        tg_release(w);
    }
}

TH_TEST(loss, new_losses_match_torch_f64, th_live_check) { check_extra(TG_F64, 1e-14, 1e-12, NULL); }

/* float32: torch's float64 values, to float32 accuracy (BCE's 1e-30 probability and 1 - 1e-15 round
 * to 0 and 1 in float32, where torch's float64 run keeps them apart: those cases are float64 only). */
TH_TEST(loss, new_losses_match_torch_f32, th_live_check) { check_extra(TG_F32, 1e-5, 1e-5, "bce_edge"); }

/* central differences in float64 on smooth points of each new loss, every reduction, both inputs */
typedef struct gc_extra { int which; tg_reduction red; const tg_tensor *w; } gc_extra;
static tg_tensor *gc_extra_fn(tg_tensor *const *in, int n, void *user) {
    const gc_extra *e = user;
    (void)n;
    tg_cross_entropy_opts ce = tg_cross_entropy_defaults();
    ce.reduction = e->red;
    ce.weight = e->w;
    switch (e->which) {
    case 0: return tg_l1_loss(in[0], in[1], e->red);
    case 1: return tg_smooth_l1_loss(in[0], in[1], e->red, 0.7);
    case 2: return tg_huber_loss(in[0], in[1], e->red, 0.4);
    case 3: return tg_kl_div(tg_log_softmax(in[0], 1), tg_softmax(in[1], 1), e->red, false);
    case 4: return tg_kl_div(tg_log_softmax(in[0], 1), tg_log_softmax(in[1], 1), e->red, true);
    case 5: return tg_binary_cross_entropy(tg_sigmoid(in[0]), tg_sigmoid(in[1]), &(tg_bce_opts){.reduction = e->red, .weight = e->w});
    default:
        ce.label_smoothing = 0.25;
        return tg_cross_entropy_probs(in[0], tg_softmax(in[1], 1), &ce);
    }
}

TH_TEST(loss, new_losses_pass_gradcheck, th_live_check) {
    tg_tensor *x = tg_from_f64(TG_F64, TG_SHAPE(N, C), golden_logits);
    tg_tensor *y = th_rand(11, TG_SHAPE(N, C), -3, 3); /* |x - y| stays away from 0, β and δ below */
    tg_tensor *x4 = th_rand(12, TG_SHAPE(2, 3, 2, 2), -2, 2), *y4 = th_rand(13, TG_SHAPE(2, 3, 2, 2), -2, 2);
    tg_tensor *w = tg_from_f64(TG_F64, TG_SHAPE(C), golden_bce_weight);
    tg_tensor *w3 = th_rand(14, TG_SHAPE(3), 0.5, 1.5);
    for (int64_t i = 0; i < N * C; i++) {
        double d = tg_get(x, i) - tg_get(y, i), a = fabs(d);
        if (a < 0.05 || fabs(a - 0.7) < 0.05 || fabs(a - 0.4) < 0.05) tg_set(y, i, tg_get(y, i) + 0.13);
    }
    tg_tensor *in[2] = {x, y}, *in4[2] = {x4, y4};
    for (int i = 0; i < 2; i++) { tg_set_requires_grad(in[i], true); tg_set_requires_grad(in4[i], true); }
    const tg_reduction reds[4] = {TG_REDUCE_MEAN, TG_REDUCE_SUM, TG_REDUCE_NONE, TG_REDUCE_BATCHMEAN};
    int checked = 0;
    for (int which = 0; which <= 6; which++)
        for (int r = 0; r < 4; r++) {
            if (r == 3 && which != 3 && which != 4) continue;
            tg_gradcheck_input rep[2];
            gc_extra e = {which, reds[r], which == 5 ? w : NULL};
            cr_expect(tg_gradcheck(gc_extra_fn, &e, in, 2, NULL, rep), "loss %d reduction %d: err %g / %g", which, r,
                      rep[0].max_abs_err, rep[1].max_abs_err);
            checked++;
            if (which == 6) { /* [N,C,d1,d2] with class weights */
                e.w = w3;
                cr_expect(tg_gradcheck(gc_extra_fn, &e, in4, 2, NULL, rep), "ce_probs 4-D reduction %d", r);
                checked++;
            }
        }
    cr_expect_eq(checked, 7 * 3 + 2 + 3);
    tg_release(x); tg_release(y); tg_release(x4); tg_release(y4); tg_release(w); tg_release(w3);
}

TH_TEST(loss, new_losses_report_misuse, th_live_check) {
    th_record_errors();
    tg_tensor *a = tg_full(TG_F64, TG_SHAPE(2, 3), 0.5), *b = tg_zeros(TG_F64, TG_SHAPE(3, 2));
    tg_tensor *p = tg_from_f64(TG_F64, TG_SHAPE(2, 3), (const double[]){0.1, 0.2, 1.5, 0.3, 0.4, 0.5});
    tg_tensor *pn = tg_from_f64(TG_F64, TG_SHAPE(2, 3), (const double[]){0.1, NAN, 0.5, 0.3, 0.4, 0.5});
    tg_tensor *w2 = tg_ones(TG_F64, TG_SHAPE(2)), *x1 = tg_zeros(TG_F64, TG_SHAPE(3));
    expect_error(tg_l1_loss(a, b, TG_REDUCE_MEAN), "tg_l1_loss", "input [2,3] F64 and target [3,2]");
    expect_error(tg_l1_loss(a, a, TG_REDUCE_BATCHMEAN), "tg_l1_loss", "only for tg_kl_div");
    expect_error(tg_smooth_l1_loss(a, a, TG_REDUCE_MEAN, -1), "tg_smooth_l1_loss", "beta -1");
    expect_error(tg_huber_loss(a, a, TG_REDUCE_MEAN, 0), "tg_huber_loss", "delta 0 must be finite and > 0");
    expect_error(tg_kl_div(a, b, TG_REDUCE_SUM, true), "tg_kl_div", "[3,2]");
    expect_error(tg_binary_cross_entropy(p, a, NULL), "tg_pointwise_loss", "element 2 is 1.5; all elements of input should be between 0 and 1");
    expect_error(tg_binary_cross_entropy(pn, a, NULL), "tg_pointwise_loss", "element 1 is nan");
    expect_error(tg_binary_cross_entropy(a, a, &(tg_bce_opts){.pos_weight = a}), "tg_binary_cross_entropy", "pos_weight");
    expect_error(tg_binary_cross_entropy(a, a, &(tg_bce_opts){.weight = w2}), "tg_binary_cross_entropy", "weight [2] F64 does not broadcast");
    expect_error(tg_cross_entropy_probs(a, b, NULL), "tg_cross_entropy_probs", "[3,2]");
    expect_error(tg_cross_entropy_probs(x1, x1, NULL), "tg_cross_entropy_probs", "[3] must be [N,C]");
    expect_error(tg_cross_entropy_probs(a, a, &(tg_cross_entropy_opts){.weight = w2}), "tg_cross_entropy_probs", "class weights [2]");
    expect_error(tg_pointwise_loss(a, a, TG_PWL_COUNT, 0), "tg_pointwise_loss", "unknown loss kind");
    cr_expect_eq(th_error_count(), 0);
    th_reset_errors();
    tg_tape_reset();
    tg_tensor *all[] = {a, b, p, pn, w2, x1};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) tg_release(all[i]);
}

/* ---- CTC ---------------------------------------------------------------------------------------- */

static void check_ctc(tg_dtype dt, double atol, double rtol, const char *skip) {
    for (int c = 0; c < GOLDEN_N_CTC_CASES; c++) {
        const golden_ctc_case *gc = &golden_ctc_cases[c];
        if (skip && strstr(gc->name, skip)) continue;
        tg_tensor *x = tg_from_f64(dt, gc->ndim, gc->shape, gc->logits);
        tg_set_requires_grad(x, true);
        tg_ctc_opts o = {.blank = gc->blank, .reduction = gc->reduction, .zero_infinity = gc->zero_infinity};
        tg_tensor *loss = tg_ctc_loss(tg_log_softmax(x, -1), gc->targets, gc->stride, gc->input_lengths,
                                      gc->target_lengths, &o);
        cr_assert_not_null(loss, "%s: %s", gc->name, tg_last_error());
        cr_assert_eq(tg_numel(loss), gc->n_out, "%s", gc->name);
        cr_expect_eq(tg_ndim(loss), gc->reduction == TG_REDUCE_NONE && gc->ndim == 3 ? 1 : 0, "%s: rank", gc->name);
        for (int i = 0; i < gc->n_out; i++)
            cr_expect(same_as_torch(tg_get(loss, i), gc->out[i], atol, rtol), "%s (%s) loss[%d] = %.17g, torch %.17g",
                      gc->name, tg_dtype_name(dt), i, tg_get(loss, i), gc->out[i]);
        cr_assert_eq(tg_backward(tg_ndim(loss) == 0 ? loss : tg_sum(loss)), 0, "%s", gc->name);
        for (int64_t i = 0; i < tg_numel(x); i++) {
            double v = tg_get(tg_grad(x), i);
            cr_expect(same_as_torch(v, gc->grad[i], atol, rtol), "%s (%s) d logits[%lld] = %.17g, torch %.17g", gc->name,
                      tg_dtype_name(dt), (long long)i, v, gc->grad[i]);
        }
        tg_tape_reset();
        tg_release(x);
    }
}

TH_TEST(loss, ctc_matches_torch_f64, th_live_check) { check_ctc(TG_F64, 1e-13, 1e-12, NULL); }
/* float32 against torch's float64: the sharp case's log-likelihoods of ~-800 carry an absolute float32
 * error of ~5e-5, which e^(lcab + nll - lp) turns into a relative error of the gradient of that size,
 * so it is float64 only. */
TH_TEST(loss, ctc_matches_torch_f32, th_live_check) { check_ctc(TG_F32, 1e-5, 2e-5, "sharp"); }

/* The op's gradient is the exact derivative with respect to log_probs (central differences), also
 * with a zero-length target and padded targets; through log_softmax too. */
typedef struct ctc_gc { const int64_t *targets, *il, *tl; int64_t stride, blank; bool log_softmax; tg_reduction red; } ctc_gc;
static tg_tensor *ctc_gc_fn(tg_tensor *const *in, int n, void *user) {
    const ctc_gc *c = user;
    (void)n;
    const tg_tensor *lp = c->log_softmax ? tg_log_softmax(in[0], 2) : in[0];
    return tg_ctc_loss(lp, c->targets, c->stride, c->il, c->tl,
                       &(tg_ctc_opts){.blank = c->blank, .reduction = c->red});
}

TH_TEST(loss, ctc_passes_gradcheck, th_live_check) {
    tg_tensor *x = th_rand(21, TG_SHAPE(6, 3, 4), -2, 1);
    tg_set_requires_grad(x, true);
    static const int64_t padded[] = {1, 2, 2, 3, 3, 3, 0, 0, 0}, il[] = {6, 5, 4}, tl[] = {3, 2, 0};
    static const int64_t padded_b3[] = {0, 1, 1, 2, 0, 0, 0, 0, 0};
    int checked = 0;
    const tg_reduction reds[3] = {TG_REDUCE_MEAN, TG_REDUCE_SUM, TG_REDUCE_NONE};
    for (int r = 0; r < 3; r++)
        for (int ls = 0; ls < 2; ls++) {
            ctc_gc c = {padded, il, tl, 3, 0, ls, reds[r]};
            tg_gradcheck_input rep[1];
            cr_expect(tg_gradcheck(ctc_gc_fn, &c, &x, 1, NULL, rep), "ctc reduction %d log_softmax %d: err %g", r, ls,
                      rep[0].max_abs_err);
            c.targets = padded_b3;
            c.blank = 3;
            cr_expect(tg_gradcheck(ctc_gc_fn, &c, &x, 1, NULL, rep), "ctc blank 3 reduction %d log_softmax %d", r, ls);
            checked += 2;
        }
    cr_expect_eq(checked, 12);
    tg_release(x);
}

/* Hand-checkable values: one step, one label: -log p(label); an empty target: -Σ_t log p_t(blank);
 * input length 0 with an empty target: 0, with a label: inf. */
TH_TEST(loss, ctc_small_cases_by_hand, th_live_check) {
    const double p[] = {0.2, 0.5, 0.3, 0.6, 0.1, 0.3};
    tg_tensor *pr = tg_from_f64(TG_F64, TG_SHAPE(2, 1, 3), p);
    tg_tensor *lp = tg_log(pr);
    const int64_t one[] = {1}, il2[] = {2}, il1[] = {1}, il0[] = {0}, tl1[] = {1}, tl0[] = {0};
    tg_ctc_opts none = {.reduction = TG_REDUCE_NONE};
    /* T=1: only the path "1" */
    cr_expect_float_eq(tg_item(tg_ctc_loss(lp, one, 0, il1, tl1, &none)), -log(0.5), 1e-15);
    /* T=2, label 1: paths 11, b1, 1b -> 0.5·0.1 + 0.2·0.1 + 0.5·0.6 */
    cr_expect_float_eq(tg_item(tg_ctc_loss(lp, one, 0, il2, tl1, &none)), -log(0.05 + 0.02 + 0.3), 1e-15);
    cr_expect_float_eq(tg_item(tg_ctc_loss(lp, one, 0, il2, tl0, &none)), -log(0.2 * 0.6), 1e-15);
    cr_expect_eq(tg_item(tg_ctc_loss(lp, one, 0, il0, tl0, &none)), 0.0);
    cr_expect(isinf(tg_item(tg_ctc_loss(lp, one, 0, il0, tl1, &none))));
    /* mean divides by the target length, at least 1 */
    const int64_t two[] = {1, 2};
    const int64_t tl2[] = {2};
    double s = tg_item(tg_ctc_loss(lp, two, 0, il2, tl2, &(tg_ctc_opts){.reduction = TG_REDUCE_SUM}));
    cr_expect_float_eq(s, -log(0.5 * 0.3), 1e-15);
    cr_expect_float_eq(tg_item(tg_ctc_loss(lp, two, 0, il2, tl2, NULL)), s / 2, 1e-15);
    tg_tape_reset();
    tg_release(pr);
}

TH_TEST(loss, ctc_decoding_and_edit_distance, th_live_check) {
    /* best path b 1 1 b 2 2 b 1 -> 1 2 1 */
    const int64_t path[] = {0, 1, 1, 0, 2, 2, 0, 1};
    tg_tensor *lp = tg_full(TG_F64, TG_SHAPE(8, 1, 3), -5.0);
    for (int t = 0; t < 8; t++) tg_set(lp, t * 3 + path[t], -0.1);
    int64_t out[8];
    cr_assert_eq(tg_ctc_greedy_decode(lp, 0, 8, 0, out, 8), 3);
    cr_expect(out[0] == 1 && out[1] == 2 && out[2] == 1);
    cr_expect_eq(tg_ctc_greedy_decode(lp, 0, 3, 0, out, 8), 1, "length 3 stops after 'b 1 1'");
    cr_expect_eq(tg_ctc_greedy_decode(lp, 0, 8, 0, out, 1), 3, "the count even when cap is short");
    const int64_t a[] = {1, 2, 3, 4}, b[] = {1, 3, 4, 5, 6};
    cr_expect_eq(tg_edit_distance(a, 4, b, 5), 3); /* delete 2, insert 5 6 */
    cr_expect_eq(tg_edit_distance(a, 4, a, 4), 0);
    cr_expect_eq(tg_edit_distance(a, 0, b, 5), 5);
    cr_expect_eq(tg_edit_distance(a, -1, b, 5), -1);
    th_record_errors();
    cr_expect_eq(tg_ctc_greedy_decode(lp, 1, 8, 0, out, 8), -1);
    cr_expect(strstr(th_last_message(), "tg_ctc_greedy_decode") != NULL, "%s", th_last_message());
    th_reset_errors();
    tg_release(lp);
}

TH_TEST(loss, ctc_misuse_is_reported, th_live_check) {
    th_record_errors();
    tg_tensor *lp = tg_zeros(TG_F64, TG_SHAPE(4, 2, 3)), *x4 = tg_zeros(TG_F64, TG_SHAPE(4, 2, 3, 1));
    const int64_t t[] = {1, 2, 1, 2}, il[] = {4, 4}, il_big[] = {4, 5}, tl[] = {2, 2}, tl_big[] = {2, 3};
    const int64_t t_blank[] = {1, 0, 1, 2}, t_big[] = {1, 3, 1, 2};
    expect_error(tg_ctc_loss(x4, t, 2, il, tl, NULL), "tg_ctc_loss", "[4,2,3,1] must be [T,N,C] or [T,C]");
    expect_error(tg_ctc_loss(lp, t, 2, il_big, tl, NULL), "tg_ctc_nll", "input_lengths[1] = 5 is outside [0, 4]");
    expect_error(tg_ctc_loss(lp, t, 2, il, tl_big, NULL), "tg_ctc_nll", "target_lengths[1] = 3 is outside [0, 2]");
    expect_error(tg_ctc_loss(lp, t_blank, 2, il, tl, NULL), "tg_ctc_nll", "target 1 of sequence 0 is 0");
    expect_error(tg_ctc_loss(lp, t_big, 0, il, tl, NULL), "tg_ctc_nll", "is 3: labels must be in [0, 3)");
    expect_error(tg_ctc_loss(lp, t, 2, il, tl, &(tg_ctc_opts){.blank = 3}), "tg_ctc_nll", "blank 3 is outside [0, 3)");
    expect_error(tg_ctc_loss(lp, NULL, 2, il, tl, NULL), "tg_ctc_nll", "targets is NULL");
    expect_error(tg_ctc_loss(lp, t, 2, NULL, tl, NULL), "tg_ctc_nll", "input_lengths or target_lengths is NULL");
    expect_error(tg_ctc_loss(lp, t, 2, il, tl, &(tg_ctc_opts){.reduction = TG_REDUCE_BATCHMEAN}), "tg_ctc_loss", "reduction");
    const int64_t tl_huge[] = {1, INT64_C(1) << 40};
    expect_error(tg_ctc_loss(lp, t, 0, il, tl_huge, NULL), "tg_ctc_nll", "absurdly large");
    const int64_t tl_many[] = {1, INT64_C(1) << 25};
    expect_error(tg_ctc_loss(lp, t, 0, il, tl_many, NULL), "tg_ctc_nll", "alignment states is too many");
    cr_expect_eq(th_error_count(), 0);
    th_reset_errors();
    tg_tape_reset();
    tg_release(lp);
    tg_release(x4);
}
