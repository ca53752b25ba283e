/* tests/test_optim.c - optimizers, gradient clipping, LR schedules and checkpoints.
 *
 * Known values come from PyTorch through tests/data/gen_optim_golden.py (torch's version is written
 * in tests/data/optim_golden.h): parameter trajectories of every optimizer in several configurations
 * over 25 steps of a fixed problem, in float64 (agreement to rounding) and float32; the lr of every
 * schedule at 30 epochs; clip_grad_norm_ results. Checkpoint tests check bit-for-bit resumption
 * against an uninterrupted run, and that a malformed file changes nothing. Every test checks that the
 * live tensor count returns to its starting value. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "data/optim_golden.h"
#include "data/parity_golden.h"
#include "helpers.h"
#include "optim/optim_internal.h"

static void setup(void) {
    th_live_start();
    th_dir_make();
}
TestSuite(optim, .init = setup, .fini = th_dir_remove);

/* ---- the golden problem ------------------------------------------------------------------------- */

typedef struct problem {
    tg_tensor *p[3];          /* p1 [2,3], p2 [4], p3 [2]: new refs, requires_grad */
    tg_tensor *a[3], *c[3];   /* constants, new refs */
} problem;

static void problem_init(problem *pb, tg_dtype dt) {
    const double *init[3] = {golden_p1_init, golden_p2_init, golden_p3_init};
    const double *a[3] = {golden_a1, golden_a2, golden_a3}, *c[3] = {golden_c1, golden_c2, golden_c3};
    const int64_t shapes[3][2] = {{2, 3}, {4, 0}, {2, 0}};
    const int ndims[3] = {2, 1, 1};
    for (int i = 0; i < 3; i++) {
        pb->p[i] = tg_from_f64(dt, ndims[i], shapes[i], init[i]);
        tg_set_requires_grad(pb->p[i], true);
        pb->a[i] = tg_from_f64(dt, ndims[i], shapes[i], a[i]);
        pb->c[i] = tg_from_f64(dt, ndims[i], shapes[i], c[i]);
    }
}

static void problem_free(problem *pb) {
    for (int i = 0; i < 3; i++) {
        tg_release(pb->p[i]);
        tg_release(pb->a[i]);
        tg_release(pb->c[i]);
    }
}

/* sum(a (p - c) (p - c)), evaluated in torch's order */
static tg_tensor *quad(const problem *pb, int i) {
    tg_tensor *d = tg_sub(pb->p[i], pb->c[i]);
    return tg_sum(tg_mul(tg_mul(pb->a[i], d), d));
}

/* loss(s) = quad1 + quad2 + 0.05 (sum p1^4 + sum p2^4) + [s even] quad3 */
static tg_tensor *problem_loss(const problem *pb, int step) {
    tg_tensor *loss = tg_add(quad(pb, 0), quad(pb, 1));
    tg_tensor *quartic = tg_add(tg_sum(tg_pow_scalar(pb->p[0], 4)), tg_sum(tg_pow_scalar(pb->p[1], 4)));
    loss = tg_add(loss, tg_mul_scalar(quartic, 0.05));
    if (step % 2 == 0) loss = tg_add(loss, quad(pb, 2));
    return loss;
}

static tg_optim *golden_optimizer(const golden_optim_case *gc, problem *pb) {
    if (gc->n_groups == 1) return tg_optim_new(gc->kind, pb->p, 3, &gc->opts[0]);
    tg_optim *opt = tg_optim_new(gc->kind, pb->p, 1, &gc->opts[0]);
    cr_assert_eq(tg_optim_add_group(opt, pb->p + 1, 2, &gc->opts[1]), 1);
    return opt;
}

/* Runs a golden case and returns the worst error measured as |x - ref| / (atol + rtol |ref|). */
static double run_golden(const golden_optim_case *gc, tg_dtype dt, double atol, double rtol) {
    problem pb;
    problem_init(&pb, dt);
    tg_optim *opt = golden_optimizer(gc, &pb);
    cr_assert_not_null(opt, "%s", gc->name);
    double worst = 0;
    for (int s = 0; s < GOLDEN_STEPS; s++) {
        tg_optim_zero_grad(opt);
        cr_assert_eq(tg_backward(problem_loss(&pb, s)), 0);
        cr_assert_eq(tg_optim_step(opt), 0);
        tg_tape_reset();
        const double *ref = dt == TG_F64 ? gc->f64[s] : gc->f32[s];
        int k = 0;
        for (int i = 0; i < 3; i++)
            for (int64_t j = 0; j < tg_numel(pb.p[i]); j++, k++) {
                double x = tg_get(pb.p[i], j), r = ref[k];
                double e = fabs(x - r) / (atol + rtol * fabs(r));
                cr_assert(e <= 1.0, "%s (%s): step %d element %d: %.17g, torch %.17g", gc->name,
                          tg_dtype_name(dt), s + 1, k, x, r);
                if (e > worst) worst = e;
            }
    }
    /* p3 has a gradient on even steps only: skipped steps do not count */
    cr_expect_eq(tg_optim_step_count(opt, pb.p[0]), GOLDEN_STEPS);
    cr_expect_eq(tg_optim_step_count(opt, pb.p[2]), (GOLDEN_STEPS + 1) / 2);
    tg_optim_free(opt);
    problem_free(&pb);
    return worst;
}

TH_TEST(optim, trajectories_match_torch_f64, th_live_check) {
    /* measured: worst relative difference 1.5e-13 (adagrad with lr_decay), most cases < 1e-14 */
    for (int c = 0; c < GOLDEN_N_OPTIM_CASES; c++) run_golden(&golden_optim_cases[c], TG_F64, 1e-15, 1e-12);
}

TH_TEST(optim, trajectories_match_torch_f32, th_live_check) {
    /* float32 rounding accumulates over 25 steps (torch's kernels use FMA, ours do not) */
    for (int c = 0; c < GOLDEN_N_OPTIM_CASES; c++) run_golden(&golden_optim_cases[c], TG_F32, 2e-6, 2e-5);
}

TH_TEST(optim, defaults_are_torchs, th_live_check) {
    /* every field a kind reads has torch's default (golden_defaults: torch's param_groups[0]; a field
     * torch 1.13 lacks, maximize of NAdam/RAdam and decoupled_weight_decay, is false there) */
    for (size_t i = 0; i < sizeof golden_defaults / sizeof golden_defaults[0]; i++) {
        tg_optim_kind k = golden_defaults[i].kind;
        tg_optim_opts o = tg_optim_defaults(k);
        for (int f = 0; f < tg_optim_num_fields(); f++)
            if (tg_optim_kind_uses(k, f))
                cr_expect_eq(tg_optim_field_get(&o, f), tg_optim_field_get(&golden_defaults[i].opts, f), "%s %s: %g, torch %g",
                             tg_optim_kind_name(k), tg_optim_field_name(f), tg_optim_field_get(&o, f),
                             tg_optim_field_get(&golden_defaults[i].opts, f));
    }
}

/* ---- behaviour ---------------------------------------------------------------------------------- */

TH_TEST(optim, step_bumps_versions_and_catches_stale_saved_parameters, th_live_check) {
    th_record_errors();
    tg_tensor *w = tg_full(TG_F64, TG_SHAPE(3), 0.5);
    tg_set_requires_grad(w, true);
    tg_optim_opts o = tg_optim_defaults(TG_OPTIM_SGD);
    o.lr = 0.1;
    tg_optim *opt = tg_optim_new(TG_OPTIM_SGD, &w, 1, &o);
    tg_backward(tg_sum(tg_mul(w, w)));
    tg_tape_reset();
    uint64_t v0 = tg_version(w);
    cr_assert_eq(tg_optim_step(opt), 0);
    cr_expect_gt(tg_version(w), v0);
    cr_expect_float_eq(tg_get(w, 0), 0.5 - 0.1 * 1.0, 1e-15);
    cr_expect(tg_grad_enabled(), "no-grad is scoped to the step");
    /* the classic bug: updating the weights between forward and backward */
    tg_tensor *y = tg_sum(tg_mul(w, w));
    tg_optim_step(opt);
    cr_expect_eq(tg_backward(y), -1);
    cr_expect(strstr(th_last_message(), "modified in place") != NULL, "%s", th_last_message());
    tg_tape_reset();
    tg_optim_free(opt);
    tg_release(w);
}

TH_TEST(optim, zero_grad_drops_gradients_and_gradless_parameters_are_skipped, th_live_check) {
    tg_tensor *a = tg_full(TG_F32, TG_SHAPE(2), 1.0), *b = tg_full(TG_F32, TG_SHAPE(2), 1.0);
    tg_set_requires_grad(a, true);
    tg_set_requires_grad(b, true);
    tg_tensor *ps[2] = {a, b};
    tg_optim *opt = tg_optim_new(TG_OPTIM_ADAM, ps, 2, NULL);
    tg_backward(tg_sum(tg_mul(a, a)));
    tg_tape_reset();
    cr_expect_null(tg_optim_state(opt, a, "exp_avg"), "state is created lazily");
    tg_optim_step(opt);
    cr_expect_eq(tg_optim_step_count(opt, a), 1);
    cr_expect_eq(tg_optim_step_count(opt, b), 0);
    cr_expect_eq(tg_get(b, 0), 1.0);
    cr_expect_not_null(tg_optim_state(opt, a, "exp_avg"));
    cr_expect_not_null(tg_optim_state(opt, a, "exp_avg_sq"));
    cr_expect_null(tg_optim_state(opt, a, "max_exp_avg_sq"), "only with amsgrad");
    cr_expect_null(tg_optim_state(opt, b, "exp_avg"));
    tg_optim_zero_grad(opt);
    cr_expect_null(tg_grad(a));
    tg_optim_free(opt);
    tg_release(a);
    tg_release(b);
}

TH_TEST(optim, groups_and_lr_accessors, th_live_check) {
    tg_tensor *a = tg_zeros(TG_F64, TG_SHAPE(2)), *b = tg_zeros(TG_F64, TG_SHAPE(3));
    tg_tensor *ps[2] = {a, b};
    tg_optim *opt = tg_optim_new(TG_OPTIM_SGD, ps, 1, NULL);
    tg_optim_opts o = *tg_optim_group_opts(opt, 0);
    o.lr = 0.5;
    o.weight_decay = 0.1;
    cr_expect_eq(tg_optim_add_group(opt, ps + 1, 1, &o), 1);
    cr_expect_eq(tg_optim_num_groups(opt), 2);
    cr_expect_eq(tg_optim_num_params(opt), 2);
    cr_expect_eq(tg_optim_group_size(opt, 1), 1);
    cr_expect_eq(tg_optim_param(opt, 1), b);
    cr_expect_eq(tg_optim_lr(opt, 0), 1e-3);
    cr_expect_eq(tg_optim_lr(opt, 1), 0.5);
    tg_optim_set_lr(opt, 0, 0.25);
    cr_expect_eq(tg_optim_lr(opt, 0), 0.25);
    cr_expect_eq(tg_optim_group_opts(opt, 1)->weight_decay, 0.1);
    tg_optim_free(opt);
    tg_release(a);
    tg_release(b);
}

TH_TEST(optim, params_set_constructors, th_live_check) {
    tg_params *ps = tg_params_new();
    tg_tensor *w = tg_zeros(TG_F32, TG_SHAPE(2, 2)), *b = tg_zeros(TG_F32, TG_SHAPE(2));
    tg_params_add(ps, "weight", w);
    tg_params_add(ps, "bias", b);
    tg_release(w);
    tg_release(b);
    tg_optim *opt = tg_optim_new_params(TG_OPTIM_RMSPROP, ps, NULL);
    cr_assert_not_null(opt);
    cr_expect_eq(tg_optim_num_params(opt), 2);
    cr_expect_eq(tg_optim_param(opt, 0), tg_params_find(ps, "weight"));
    tg_optim_free(opt);
    opt = tg_optim_new(TG_OPTIM_SGD, NULL, 0, NULL);
    cr_expect_eq(tg_optim_add_group_params(opt, ps, NULL), 1);
    cr_expect_eq(tg_optim_group_size(opt, 0), 0);
    cr_expect_eq(tg_optim_group_size(opt, 1), 2);
    tg_optim_free(opt);
    tg_params_free(ps);
}

/* Every invalid configuration is refused with a message through the error handler. */
TH_TEST(optim, invalid_hyper_parameters_are_rejected, th_live_check) {
    th_record_errors();
    tg_tensor *w = tg_zeros(TG_F64, TG_SHAPE(2));
    struct { tg_optim_kind kind; const char *field; double value; bool nesterov; const char *needle; } bad[] = {
        {TG_OPTIM_SGD, "lr", -0.1, false, "learning rate"},
        {TG_OPTIM_SGD, "lr", NAN, false, "learning rate"},
        {TG_OPTIM_SGD, "momentum", -0.5, false, "momentum"},
        {TG_OPTIM_SGD, "weight_decay", -1e-4, false, "weight_decay"},
        {TG_OPTIM_SGD, "momentum", 0.0, true, "nesterov"},        /* nesterov without momentum */
        {TG_OPTIM_SGD, "dampening", 0.1, true, "nesterov"},       /* nesterov with dampening (momentum 0.9) */
        {TG_OPTIM_ADAM, "beta1", 1.0, false, "beta1"},
        {TG_OPTIM_ADAM, "beta1", -0.1, false, "beta1"},
        {TG_OPTIM_ADAMW, "beta2", 1.5, false, "beta2"},
        {TG_OPTIM_ADAM, "eps", -1e-8, false, "eps"},
        {TG_OPTIM_ADAMW, "weight_decay", -0.01, false, "weight_decay"},
        {TG_OPTIM_RMSPROP, "alpha", -0.1, false, "alpha"},
        {TG_OPTIM_RMSPROP, "momentum", -0.1, false, "momentum"},
        {TG_OPTIM_RMSPROP, "eps", -1.0, false, "eps"},
        {TG_OPTIM_ADAGRAD, "lr_decay", -0.1, false, "lr_decay"},
        {TG_OPTIM_ADAGRAD, "initial_accumulator_value", -0.1, false, "initial_accumulator_value"},
        {TG_OPTIM_ADAGRAD, "eps", -1e-10, false, "eps"},
        {TG_OPTIM_NADAM, "momentum_decay", -4e-3, false, "momentum_decay"},
        {TG_OPTIM_NADAM, "beta1", 1.0, false, "beta1"},
        {TG_OPTIM_RADAM, "beta2", 1.0, false, "beta2"},
        {TG_OPTIM_RADAM, "eps", -1e-8, false, "eps"},
        {TG_OPTIM_ADAMAX, "beta2", -0.5, false, "beta2"},
        {TG_OPTIM_ADAMAX, "weight_decay", NAN, false, "weight_decay"},
        {TG_OPTIM_ADADELTA, "rho", 1.5, false, "rho"},
        {TG_OPTIM_ADADELTA, "rho", NAN, false, "rho"},
        {TG_OPTIM_ADADELTA, "lr", -1.0, false, "learning rate"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        tg_optim_opts o = tg_optim_defaults(bad[i].kind);
        if (bad[i].nesterov) { o.nesterov = true; o.momentum = 0.9; }
        double *f = !strcmp(bad[i].field, "lr") ? &o.lr : !strcmp(bad[i].field, "momentum") ? &o.momentum
                  : !strcmp(bad[i].field, "weight_decay") ? &o.weight_decay : !strcmp(bad[i].field, "dampening") ? &o.dampening
                  : !strcmp(bad[i].field, "beta1") ? &o.beta1 : !strcmp(bad[i].field, "beta2") ? &o.beta2
                  : !strcmp(bad[i].field, "eps") ? &o.eps : !strcmp(bad[i].field, "alpha") ? &o.alpha
                  : !strcmp(bad[i].field, "lr_decay") ? &o.lr_decay : !strcmp(bad[i].field, "rho") ? &o.rho
                  : !strcmp(bad[i].field, "momentum_decay") ? &o.momentum_decay : &o.initial_accumulator_value;
        *f = bad[i].value;
        th_reset_errors();
        cr_expect_null(tg_optim_new(bad[i].kind, &w, 1, &o), "case %zu", i);
        cr_expect_eq(th_error_count(), 1, "case %zu", i);
        cr_expect(strstr(th_last_message(), "tg_optim_new") && strstr(th_last_message(), bad[i].needle),
                  "case %zu: %s", i, th_last_message());
    }
    /* a group's own options and later changes are validated too */
    th_reset_errors();
    tg_optim *opt = tg_optim_new(TG_OPTIM_ADAM, NULL, 0, NULL);
    tg_optim_opts o = tg_optim_defaults(TG_OPTIM_ADAM);
    o.lr = -1;
    cr_expect_eq(tg_optim_add_group(opt, &w, 1, &o), -1);
    cr_expect(strstr(th_last_message(), "learning rate") != NULL, "%s", th_last_message());
    th_reset_errors();
    cr_expect_eq(tg_optim_set_group_opts(opt, 0, &o), -1);
    th_reset_errors();
    tg_optim_set_lr(opt, 0, -0.5);
    cr_expect_eq(th_error_count(), 1);
    cr_expect_eq(tg_optim_lr(opt, 0), 1e-3);
    tg_optim_free(opt);
    tg_release(w);
}

TH_TEST(optim, non_leaf_and_duplicate_parameters_are_rejected, th_live_check) {
    th_record_errors();
    tg_tensor *w = tg_zeros(TG_F64, TG_SHAPE(2));
    tg_set_requires_grad(w, true);
    tg_tensor *y = tg_mul_scalar(w, 2.0);
    cr_expect_null(tg_optim_new(TG_OPTIM_SGD, &y, 1, NULL));
    cr_expect(strstr(th_last_message(), "not a leaf") != NULL, "%s", th_last_message());
    tg_tape_reset();
    th_reset_errors();
    tg_tensor *twice[2] = {w, w};
    cr_expect_null(tg_optim_new(TG_OPTIM_SGD, twice, 2, NULL));
    cr_expect(strstr(th_last_message(), "more than once") != NULL, "%s", th_last_message());
    th_reset_errors();
    tg_optim *opt = tg_optim_new(TG_OPTIM_SGD, &w, 1, NULL);
    cr_expect_eq(tg_optim_add_group(opt, &w, 1, NULL), -1, "a parameter in two groups");
    cr_expect_eq(tg_optim_num_groups(opt), 1);
    tg_optim_free(opt);
    tg_release(w);
}

/* ---- gradient clipping -------------------------------------------------------------------------- */

static void set_grads(tg_tensor *a, tg_tensor *b, const double *ga, const double *gb) {
    /* a gradient equal to g: backward of sum(x ⊙ g) */
    tg_tensor *ca = tg_from_f64(tg_dtype_of(a), tg_ndim(a), tg_shape(a), ga);
    tg_tensor *cb = tg_from_f64(tg_dtype_of(b), tg_ndim(b), tg_shape(b), gb);
    tg_zero_grad(a);
    tg_zero_grad(b);
    tg_backward(tg_add(tg_sum(tg_mul(a, ca)), tg_sum(tg_mul(b, cb))));
    tg_tape_reset();
    tg_release(ca);
    tg_release(cb);
}

TH_TEST(optim, clip_grad_norm_matches_torch, th_live_check) {
    tg_tensor *a = tg_zeros(TG_F64, TG_SHAPE(2, 3)), *b = tg_zeros(TG_F64, TG_SHAPE(4));
    tg_set_requires_grad(a, true);
    tg_set_requires_grad(b, true);
    tg_tensor *ps[2] = {a, b};
    for (int c = 0; c < GOLDEN_N_CLIP_CASES; c++) {
        const golden_clip_case *gc = &golden_clip_cases[c];
        set_grads(a, b, golden_clip_g1, golden_clip_g2);
        double total = tg_clip_grad_norm_(ps, 2, gc->max_norm, gc->norm_type, true);
        cr_expect_float_eq(total, gc->total_norm, 1e-13 * gc->total_norm, "case %d: %.17g vs %.17g", c, total,
                           gc->total_norm);
        for (int i = 0; i < 6; i++)
            cr_expect_float_eq(tg_get(tg_grad(a), i), gc->g1[i], 1e-14, "case %d g1[%d]", c, i);
        for (int i = 0; i < 4; i++)
            cr_expect_float_eq(tg_get(tg_grad(b), i), gc->g2[i], 1e-14, "case %d g2[%d]", c, i);
    }
    /* well below the threshold torch multiplies by exactly 1: the values stay bit for bit */
    set_grads(a, b, golden_clip_g1, golden_clip_g2);
    tg_clip_grad_norm_(ps, 2, 1e3, 2.0, false);
    for (int i = 0; i < 6; i++) cr_expect_eq(tg_get(tg_grad(a), i), golden_clip_g1[i]);
    /* no gradients at all: norm 0 */
    tg_zero_grad(a);
    tg_zero_grad(b);
    cr_expect_eq(tg_clip_grad_norm_(ps, 2, 1.0, 2.0, true), 0.0);
    tg_release(a);
    tg_release(b);
}

TH_TEST(optim, clip_grad_norm_non_finite, th_live_check) {
    th_record_errors();
    tg_tensor *a = tg_zeros(TG_F32, TG_SHAPE(3)), *b = tg_zeros(TG_F32, TG_SHAPE(2));
    tg_set_requires_grad(a, true);
    tg_set_requires_grad(b, true);
    tg_tensor *ps[2] = {a, b};
    const double ga[3] = {1.0, NAN, 2.0}, gb[2] = {3.0, 4.0};
    set_grads(a, b, ga, gb);
    th_reset_errors();
    double total = tg_clip_grad_norm_(ps, 2, 1.0, 2.0, true);
    cr_expect(isnan(total));
    cr_expect_eq(th_error_count(), 1);
    cr_expect(strstr(th_last_message(), "non-finite") != NULL, "%s", th_last_message());
    cr_expect_eq(tg_get(tg_grad(b), 0), 3.0, "nothing scaled when the error is raised");
    /* without the error: torch scales by the NaN coefficient */
    th_reset_errors();
    total = tg_clip_grad_norm_(ps, 2, 1.0, 2.0, false);
    cr_expect(isnan(total));
    cr_expect_eq(th_error_count(), 0);
    cr_expect(isnan(tg_get(tg_grad(b), 0)));
    /* an infinite gradient: infinite norm, coefficient 0 */
    const double gi[3] = {1.0, INFINITY, 2.0};
    set_grads(a, b, gi, gb);
    th_reset_errors();
    total = tg_clip_grad_norm_(ps, 2, 1.0, 2.0, true);
    cr_expect(isinf(total));
    cr_expect_eq(th_error_count(), 1);
    th_reset_errors();
    cr_expect(isinf(tg_clip_grad_norm_(ps, 2, 1.0, INFINITY, false)));
    cr_expect_eq(tg_get(tg_grad(b), 1), 0.0);
    tg_release(a);
    tg_release(b);
}

/* tests/data/parity_golden.h: NaN / inf gradients under every norm type (torch's inf norm is NaN as
 * soon as one element is NaN, scales everything to NaN, and raises with error_if_nonfinite), and torch's
 * rule at the threshold: coefficient min(1, max_norm / (norm + 1e-6)), applied always. */
static void check_clip_edge(tg_dtype dt, double rtol) {
    th_record_errors();
    tg_tensor *a = tg_zeros(dt, TG_SHAPE(3)), *b = tg_zeros(dt, TG_SHAPE(2));
    tg_set_requires_grad(a, true);
    tg_set_requires_grad(b, true);
    tg_tensor *ps[2] = {a, b};
    for (int c = 0; c < PG_N_CLIP_CASES; c++) {
        const pg_clip_case *pc = &pg_clip_cases[c];
        for (int raise = 0; raise < 2; raise++) {
            set_grads(a, b, pc->g1, pc->g2);
            th_reset_errors();
            double total = tg_clip_grad_norm_(ps, 2, pc->max_norm, pc->norm_type, raise);
            double rt = dt == TG_F64 ? pc->total64 : pc->total32;
            bool ok = isnan(rt) ? isnan(total) : isinf(rt) ? total == rt : fabs(total - rt) <= rtol * fabs(rt);
            cr_expect(ok, "%s (%s): norm %.17g, torch %.17g", pc->name, tg_dtype_name(dt), total, rt);
            bool raised = raise && pc->raises;
            cr_expect_eq(th_error_count(), raised ? 1 : 0, "%s: raise %d, errors %d", pc->name, raise,
                         th_error_count());
            if (raised) cr_expect(strstr(th_last_message(), "non-finite") != NULL, "%s", th_last_message());
            const double *r1 = raised ? pc->g1 : dt == TG_F64 ? pc->g1_64 : pc->g1_32;
            const double *r2 = raised ? pc->g2 : dt == TG_F64 ? pc->g2_64 : pc->g2_32;
            for (int i = 0; i < 5; i++) {
                double v = tg_get(i < 3 ? tg_grad(a) : tg_grad(b), i < 3 ? i : i - 3), r = i < 3 ? r1[i] : r2[i - 3];
                bool same = isnan(r) ? isnan(v) : isinf(r) ? v == r : fabs(v - r) <= rtol * fabs(r);
                cr_expect(same, "%s (%s, raise %d) grad %d = %.17g, torch %.17g", pc->name, tg_dtype_name(dt), raise,
                          i, v, r);
            }
        }
    }
    th_reset_errors();
    tg_release(a);
    tg_release(b);
}

TH_TEST(optim, clip_grad_norm_edges_match_torch_f64, th_live_check) { check_clip_edge(TG_F64, 1e-15); }
TH_TEST(optim, clip_grad_norm_edges_match_torch_f32, th_live_check) { check_clip_edge(TG_F32, 1e-6); }

TH_TEST(optim, clip_grad_value_and_optimizer_versions, th_live_check) {
    tg_tensor *a = tg_zeros(TG_F64, TG_SHAPE(3)), *b = tg_zeros(TG_F64, TG_SHAPE(2)), *c = tg_zeros(TG_F64, TG_SHAPE(1));
    tg_set_requires_grad(a, true);
    tg_set_requires_grad(b, true);
    tg_set_requires_grad(c, true);
    tg_tensor *ps[3] = {a, b, c};
    const double ga[3] = {-3.0, 0.5, NAN}, gb[2] = {2.0, -0.25};
    set_grads(a, b, ga, gb);
    tg_clip_grad_value_(ps, 3, 1.0); /* c has no gradient: skipped */
    cr_expect_eq(tg_get(tg_grad(a), 0), -1.0);
    cr_expect_eq(tg_get(tg_grad(a), 1), 0.5);
    cr_expect(isnan(tg_get(tg_grad(a), 2)), "clamp keeps NaN, like torch.clamp");
    cr_expect_eq(tg_get(tg_grad(b), 0), 1.0);
    cr_expect_eq(tg_get(tg_grad(b), 1), -0.25);
    cr_expect_null(tg_grad(c));
    /* through an optimizer: same as over the array */
    tg_optim *opt = tg_optim_new(TG_OPTIM_SGD, ps, 3, NULL);
    const double ga2[3] = {3.0, 4.0, 0.0}, gb2[2] = {0.0, 12.0};
    set_grads(a, b, ga2, gb2);
    double total = tg_optim_clip_grad_norm(opt, 6.5, 2.0, false); /* (not inside a macro: evaluated twice) */
    cr_expect_float_eq(total, 13.0, 1e-12);
    cr_expect_float_eq(tg_get(tg_grad(b), 1), 12.0 * 6.5 / (13.0 + 1e-6), 1e-12);
    /* torch's threshold is norm + 1e-6: clipping again still scales by 6.5 / (6.5 - 5e-7 + 1e-6) */
    total = tg_optim_clip_grad_norm(opt, 6.5, 2.0, false);
    cr_expect_float_eq(total, 13.0 * 6.5 / (13.0 + 1e-6), 1e-12);
    tg_optim_clip_grad_value(opt, 0.5);
    cr_expect_eq(tg_get(tg_grad(b), 1), 0.5);
    tg_optim_free(opt);
    tg_release(a);
    tg_release(b);
    tg_release(c);
}

/* ---- LR schedules ------------------------------------------------------------------------------- */

static tg_optim *two_group_sgd(tg_tensor **w) {
    w[0] = tg_zeros(TG_F64, TG_SHAPE(1));
    w[1] = tg_zeros(TG_F64, TG_SHAPE(1));
    tg_optim_opts o = tg_optim_defaults(TG_OPTIM_SGD);
    o.lr = golden_sched_base_lr[0];
    tg_optim *opt = tg_optim_new(TG_OPTIM_SGD, w, 1, &o);
    o.lr = golden_sched_base_lr[1];
    tg_optim_add_group(opt, w + 1, 1, &o);
    return opt;
}

TH_TEST(optim, schedules_match_torch, th_live_check) {
    for (int c = 0; c < GOLDEN_N_SCHED_CASES; c++) {
        const golden_sched_case *gc = &golden_sched_cases[c];
        tg_tensor *w[2];
        tg_optim *opt = two_group_sgd(w);
        tg_sched *s = golden_make_sched(gc->name, opt);
        cr_assert_not_null(s, "%s", gc->name);
        bool plateau = strncmp(gc->name, "plateau", 7) == 0, max_mode = strstr(gc->name, "max") != NULL;
        for (int e = 0; e < GOLDEN_SCHED_EPOCHS; e++) {
            if (e > 0) {
                if (plateau) tg_sched_step_metric(s, max_mode ? -golden_plateau_metrics[e - 1] : golden_plateau_metrics[e - 1]);
                else tg_sched_step(s);
            }
            cr_expect_eq(tg_sched_epoch(s), e);
            for (int g = 0; g < 2; g++) {
                double lr = tg_optim_lr(opt, g), ref = gc->lr[e][g];
                cr_expect(fabs(lr - ref) <= 1e-15 + 1e-13 * fabs(ref), "%s epoch %d group %d: %.17g, torch %.17g",
                          gc->name, e, g, lr, ref);
            }
        }
        tg_sched_free(s);
        tg_optim_free(opt);
        tg_release(w[0]);
        tg_release(w[1]);
    }
}

TH_TEST(optim, schedules_keep_the_first_base_lr_and_reject_bad_arguments, th_live_check) {
    th_record_errors();
    tg_tensor *w[2];
    tg_optim *opt = two_group_sgd(w);
    tg_sched *s = tg_sched_exponential(opt, 0.5);
    tg_sched_step(s);
    tg_sched_step(s);
    cr_expect_float_eq(tg_optim_lr(opt, 0), 0.025, 1e-15);
    tg_sched_free(s);
    /* like torch (checked with torch 1.13): a second schedule's base is initial_lr (group.setdefault),
     * but its steps continue from the current lr: StepLR(10, 0.1) keeps 0.025, then 0.0025 at epoch 10 */
    s = tg_sched_step_lr(opt, 10, 0.1);
    cr_expect_eq(tg_optim_lr(opt, 0), 0.025);
    for (int e = 0; e < 10; e++) tg_sched_step(s);
    cr_expect_float_eq(tg_optim_lr(opt, 0), 0.0025, 1e-17);
    tg_sched_free(s);
    struct { tg_sched *s; const char *needle; } bad[] = {
        {NULL, "step_size"}, {NULL, "gamma"}, {NULL, "T_max"}, {NULL, "start_factor"}, {NULL, "end_factor"},
        {NULL, "total_iters"}, {NULL, "factor"}, {NULL, "patience"},
    };
    const int nbad = (int)(sizeof bad / sizeof bad[0]);
    for (int i = 0; i < nbad; i++) {
        th_reset_errors();
        switch (i) {
        case 0: bad[i].s = tg_sched_step_lr(opt, 0, 0.5); break;
        case 1: bad[i].s = tg_sched_exponential(opt, -1.0); break;
        case 2: bad[i].s = tg_sched_cosine(opt, 0, 0.0); break;
        case 3: bad[i].s = tg_sched_linear(opt, 0.0, 1.0, 5); break;
        case 4: bad[i].s = tg_sched_linear(opt, 0.5, 1.5, 5); break;
        case 5: bad[i].s = tg_sched_linear(opt, 0.5, 1.0, 0); break;
        case 6: bad[i].s = tg_sched_plateau(opt, &(tg_plateau_opts){.factor = 1.0, .patience = 1}); break;
        case 7: bad[i].s = tg_sched_plateau(opt, &(tg_plateau_opts){.factor = 0.5, .patience = -1}); break;
        }
        cr_expect_null(bad[i].s, "case %d", i);
        cr_expect(strstr(th_last_message(), bad[i].needle) != NULL, "case %d: %s", i, th_last_message());
    }
    th_reset_errors();
    s = tg_sched_plateau(opt, NULL);
    tg_sched_step(s);
    cr_expect_eq(th_error_count(), 1, "a plateau schedule needs a metric");
    tg_sched_free(s);
    tg_optim_free(opt);
    tg_release(w[0]);
    tg_release(w[1]);
}

/* ---- checkpoints -------------------------------------------------------------------------------- */

/* A tiny recurrent model from raw tensors: h_t = tanh(x_t W_xᵀ + h_{t-1} W_hᵀ + b), logits = h_T V ᵀ. */
typedef struct tiny_model {
    tg_params *params; /* "rnn.weight_ih" [4,3], "rnn.weight_hh" [4,4], "rnn.bias" [4], "out.weight" [2,4] */
} tiny_model;

static tiny_model tiny_new(tg_dtype dt, uint64_t seed) {
    tiny_model m = {tg_params_new()};
    const char *names[4] = {"rnn.weight_ih", "rnn.weight_hh", "rnn.bias", "out.weight"};
    const int64_t shapes[4][2] = {{4, 3}, {4, 4}, {4, 0}, {2, 4}};
    const int ndims[4] = {2, 2, 1, 2};
    tg_rng rng;
    tg_rng_seed(&rng, seed);
    for (int i = 0; i < 4; i++) {
        tg_tensor *t = tg_rand_uniform(&rng, dt, ndims[i], shapes[i], -0.5, 0.5);
        tg_set_requires_grad(t, true);
        tg_params_add(m.params, names[i], t);
        tg_release(t);
    }
    return m;
}

/* Batch b (deterministic from the step number) of 3 sequences of length 5, cross-entropy on 2 classes. */
static tg_tensor *tiny_loss(const tiny_model *m, int step) {
    tg_tensor *Wx = tg_params_at(m->params, 0), *Wh = tg_params_at(m->params, 1);
    tg_tensor *b = tg_params_at(m->params, 2), *V = tg_params_at(m->params, 3);
    tg_dtype dt = tg_dtype_of(Wx);
    tg_rng rng;
    tg_rng_seed(&rng, 1000 + (uint64_t)step);
    tg_tensor *h = NULL;
    for (int t = 0; t < 5; t++) {
        tg_tensor *x = tg_rand_normal(&rng, dt, TG_SHAPE(3, 3), 0, 1);
        tg_tensor *pre = tg_linear(x, Wx, b);
        if (h) pre = tg_add(pre, tg_matmul_nt(h, Wh));
        h = tg_tanh(pre);
        tg_release(x); /* the op that saved it holds its own reference */
    }
    int64_t target[3] = {step % 2, (step / 2) % 2, 1};
    return tg_cross_entropy(tg_matmul_nt(h, V), target, NULL);
}

typedef struct run_cfg {
    tg_optim_kind kind;
    tg_optim_opts opts;
    int sched; /* 0 none, 1 cosine, 2 plateau, 3 step */
} run_cfg;

static tg_sched *make_sched(const run_cfg *rc, tg_optim *opt) {
    switch (rc->sched) {
    case 1: return tg_sched_cosine(opt, 7, 1e-4);
    case 2: return tg_sched_plateau(opt, &(tg_plateau_opts){.factor = 0.5, .patience = 0, .threshold = 1e-1,
                                                            .min_lr = 1e-5, .eps = 1e-12});
    case 3: return tg_sched_step_lr(opt, 2, 0.7);
    default: return NULL;
    }
}

/* One training step: clip, step, schedule (plateau sees the loss). */
static void train_step(tiny_model *m, tg_optim *opt, tg_sched *s, int step) {
    tg_optim_zero_grad(opt);
    tg_tensor *loss = tiny_loss(m, step);
    cr_assert_not_null(loss);
    double l = tg_item(loss);
    cr_assert_eq(tg_backward(loss), 0);
    tg_optim_clip_grad_norm(opt, 0.5, 2.0, false);
    cr_assert_eq(tg_optim_step(opt), 0);
    if (s) tg_sched_step_metric(s, l);
    tg_tape_reset();
}

static void snapshot(const tiny_model *m, double *out) {
    int k = 0;
    for (int i = 0; i < tg_params_count(m->params); i++)
        for (int64_t j = 0; j < tg_numel(tg_params_at(m->params, i)); j++) out[k++] = tg_get(tg_params_at(m->params, i), j);
}

/* Train N steps, checkpoint, train M more = the uninterrupted run; then fresh objects restored from
 * the checkpoint train the same M steps and must agree bit for bit. */
static void resume_round_trip(const run_cfg *rc, tg_dtype dt) {
    enum { N = 6, M = 7, NP = 12 + 16 + 4 + 8 };
    char pfile[512], ofile[512];
    snprintf(pfile, sizeof pfile, "%s", th_path_in("model.safetensors"));
    snprintf(ofile, sizeof ofile, "%s", th_path_in("optim.safetensors"));

    tiny_model a = tiny_new(dt, 5);
    tg_optim *oa = tg_optim_new_params(rc->kind, a.params, &rc->opts);
    cr_assert_not_null(oa);
    tg_sched *sa = make_sched(rc, oa);
    for (int s = 0; s < N; s++) train_step(&a, oa, sa, s);
    cr_assert_eq(tg_params_save(a.params, pfile), 0, "%s", tg_last_error());
    cr_assert_eq(tg_optim_save(oa, sa, ofile), 0, "%s", tg_last_error());
    for (int s = N; s < N + M; s++) train_step(&a, oa, sa, s);

    tiny_model b = tiny_new(dt, 77); /* different initial values: everything must come from the files */
    tg_optim *ob = tg_optim_new_params(rc->kind, b.params, &rc->opts);
    tg_sched *sb = make_sched(rc, ob);
    cr_assert_eq(tg_params_load(b.params, pfile), 0, "%s", tg_last_error());
    cr_assert_eq(tg_optim_load(ob, sb, ofile), 0, "%s", tg_last_error());
    for (int s = N; s < N + M; s++) train_step(&b, ob, sb, s);

    double pa[NP], pb[NP];
    snapshot(&a, pa);
    snapshot(&b, pb);
    cr_expect(memcmp(pa, pb, sizeof pa) == 0, "%s %s sched %d: resumed run differs", tg_optim_kind_name(rc->kind),
              tg_dtype_name(dt), rc->sched);
    cr_expect_eq(tg_optim_lr(oa, 0), tg_optim_lr(ob, 0));
    for (int i = 0; i < tg_optim_num_params(oa); i++)
        cr_expect_eq(tg_optim_step_count(oa, tg_optim_param(oa, i)), tg_optim_step_count(ob, tg_optim_param(ob, i)));
    if (sa) cr_expect_eq(tg_sched_epoch(sa), tg_sched_epoch(sb));
    tg_sched_free(sa);
    tg_sched_free(sb);
    tg_optim_free(oa);
    tg_optim_free(ob);
    tg_params_free(a.params);
    tg_params_free(b.params);
    unlink(pfile);
    unlink(ofile);
}

TH_TEST(optim, checkpoint_resume_is_bit_identical, th_live_check) {
    run_cfg cfgs[10];
    cfgs[0] = (run_cfg){TG_OPTIM_ADAM, tg_optim_defaults(TG_OPTIM_ADAM), 1};
    cfgs[0].opts.lr = 0.05;
    cfgs[0].opts.amsgrad = true;
    cfgs[0].opts.weight_decay = 0.01;
    cfgs[1] = (run_cfg){TG_OPTIM_SGD, tg_optim_defaults(TG_OPTIM_SGD), 3};
    cfgs[1].opts.lr = 0.3;
    cfgs[1].opts.momentum = 0.9;
    cfgs[1].opts.nesterov = true;
    cfgs[2] = (run_cfg){TG_OPTIM_RMSPROP, tg_optim_defaults(TG_OPTIM_RMSPROP), 2};
    cfgs[2].opts.centered = true;
    cfgs[2].opts.momentum = 0.5;
    cfgs[3] = (run_cfg){TG_OPTIM_ADAGRAD, tg_optim_defaults(TG_OPTIM_ADAGRAD), 0};
    cfgs[3].opts.lr = 0.2;
    cfgs[3].opts.lr_decay = 0.01;
    cfgs[4] = (run_cfg){TG_OPTIM_ADAMW, tg_optim_defaults(TG_OPTIM_ADAMW), 2};
    cfgs[4].opts.lr = 0.05;
    cfgs[5] = (run_cfg){TG_OPTIM_SGD, tg_optim_defaults(TG_OPTIM_SGD), 1};
    cfgs[5].opts.lr = 0.5;
    cfgs[6] = (run_cfg){TG_OPTIM_NADAM, tg_optim_defaults(TG_OPTIM_NADAM), 1};
    cfgs[6].opts.lr = 0.05;
    cfgs[6].opts.weight_decay = 0.1;
    cfgs[6].opts.decoupled_weight_decay = true;
    cfgs[7] = (run_cfg){TG_OPTIM_RADAM, tg_optim_defaults(TG_OPTIM_RADAM), 3}; /* rectified from step 6 */
    cfgs[7].opts.lr = 0.05;
    cfgs[7].opts.weight_decay = 0.01;
    cfgs[8] = (run_cfg){TG_OPTIM_ADAMAX, tg_optim_defaults(TG_OPTIM_ADAMAX), 2};
    cfgs[8].opts.weight_decay = 0.01;
    cfgs[9] = (run_cfg){TG_OPTIM_ADADELTA, tg_optim_defaults(TG_OPTIM_ADADELTA), 1};
    cfgs[9].opts.rho = 0.8;
    for (int i = 0; i < 10; i++) {
        resume_round_trip(&cfgs[i], TG_F32);
        resume_round_trip(&cfgs[i], TG_F64);
    }
}

/* The optimizer table walked in both directions: every kind (TG_OPTIM_KINDS) has a name that parses
 * back, torch's class, defaults that tg_optim_new accepts, golden defaults and trajectories from
 * torch, and a checkpoint round trip that resumes bit for bit, so a new optimizer that misses any of
 * these fails here with its name. */
TH_TEST(optim, every_kind_is_complete, th_live_check) {
    char list[256];
    tg_optim_kind_list(list, sizeof list, ", ");
    /* the names in TG_OPTIM_KINDS order, from its lines (optim.h): "sgd, adam, ..., " */
#define KIND_AND_SEP(K, name) #name ", "
    static const char every_kind[] = TG_OPTIM_KINDS(KIND_AND_SEP);
#undef KIND_AND_SEP
    cr_assert_lt(strlen(every_kind), sizeof list, "the list buffer is too short for every kind");
    cr_expect_eq(strlen(list) + 2, strlen(every_kind), "%s", list);
    cr_expect(strncmp(list, every_kind, strlen(every_kind) - 2) == 0, "actual=`%s` expected=`%.*s`", list,
              (int)strlen(every_kind) - 2, every_kind);
    for (int k = 0; k < TG_OPTIM_KIND_COUNT; k++) {
        const char *name = tg_optim_kind_name((tg_optim_kind)k);
        cr_expect_neq(strcmp(name, "unknown"), 0, "optimizer kind %d has no name", k);
        cr_expect_eq(tg_optim_kind_from_name(name), (tg_optim_kind)k, "'%s' does not parse back to kind %d", name, k);
        cr_expect(strstr(list, name) != NULL, "'%s' missing from tg_optim_kind_list: %s", name, list);
        cr_expect(strncmp(tg_optim_kind_torch_name((tg_optim_kind)k), "torch.optim.", 12) == 0,
                  "optimizer '%s' has no torch class in its row (optim/optim.c)", name);
        bool has_defaults = false, has_trajectory = false;
        for (size_t i = 0; i < sizeof golden_defaults / sizeof golden_defaults[0]; i++)
            has_defaults |= golden_defaults[i].kind == (tg_optim_kind)k;
        for (int c = 0; c < GOLDEN_N_OPTIM_CASES; c++) has_trajectory |= golden_optim_cases[c].kind == (tg_optim_kind)k;
        cr_expect(has_defaults, "optimizer '%s' has no golden defaults (tests/data/gen_optim_golden.py)", name);
        cr_expect(has_trajectory, "optimizer '%s' has no golden trajectory (tests/data/gen_optim_golden.py)", name);
        int uses = 0;
        for (int i = 0; i < tg_optim_num_fields(); i++) uses += tg_optim_kind_uses((tg_optim_kind)k, i);
        cr_expect_gt(uses, 0, "optimizer '%s' uses no hyper-parameter (its row's .uses)", name);
        run_cfg rc = {(tg_optim_kind)k, tg_optim_defaults((tg_optim_kind)k), 0};
        rc.opts.lr = 0.05;
        resume_round_trip(&rc, TG_F64);
    }
    cr_expect_eq(tg_optim_kind_from_name("adamx"), TG_OPTIM_KIND_COUNT);
    cr_expect_eq(tg_optim_kind_from_name("Adam"), TG_OPTIM_KIND_COUNT, "names match exactly");
    cr_expect_eq(tg_optim_kind_from_name(NULL), TG_OPTIM_KIND_COUNT);
    char tiny[8];
    cr_expect_str_eq(tg_optim_kind_list(tiny, sizeof tiny, ", "), "sgd, ad", "a short buffer truncates");
    for (int k = 0; k < TG_SCHED_KIND_COUNT; k++)
        cr_expect_eq(tg_sched_kind_from_name(tg_sched_kind_name((tg_sched_kind)k)), (tg_sched_kind)k,
                     "schedule kind %d ('%s') does not parse back", k, tg_sched_kind_name((tg_sched_kind)k));
    cr_expect_eq(tg_sched_kind_from_name("cos"), TG_SCHED_KIND_COUNT);
}

/* Every hyper-parameter field (TG_OPTIM_FIELDS) is in the checkpoint, with every digit. */
TH_TEST(optim, checkpoint_carries_every_hyper_parameter, th_live_check) {
    tiny_model a = tiny_new(TG_F64, 5);
    tg_optim_opts o = tg_optim_defaults(TG_OPTIM_SGD);
    o.lr = 0.1 / 3;
    tg_optim *opt = tg_optim_new_params(TG_OPTIM_SGD, a.params, &o);
    cr_assert_not_null(opt);
    const char *path = th_path_in("hp.safetensors");
    cr_assert_eq(tg_optim_save(opt, NULL, path), 0, "%s", tg_last_error());
    tg_st_file *f = tg_st_load(path);
    cr_assert_not_null(f);
    for (int i = 0; i < tg_optim_num_fields(); i++) {
        char key[96];
        snprintf(key, sizeof key, "group.0.%s", tg_optim_field_name(i));
        const char *v = tg_st_meta(f, key);
        cr_expect_not_null(v, "hyper-parameter '%s' is not in the checkpoint", tg_optim_field_name(i));
        if (v) cr_expect_eq(strtod(v, NULL), tg_optim_field_get(&o, i), "%s = %s", key, v);
    }
    tg_st_free(f);
    tg_optim_free(opt);
    tg_params_free(a.params);
    unlink(path);
}

TH_TEST(optim, params_round_trip_keeps_names_and_bits, th_live_check) {
    tiny_model a = tiny_new(TG_F32, 1), b = tiny_new(TG_F32, 2);
    const char *path = th_path_in("p.safetensors");
    cr_assert_eq(tg_params_save(a.params, path), 0);
    tg_st_file *f = tg_st_load(path);
    cr_assert_not_null(f);
    cr_expect_eq(tg_st_count(f), 4);
    cr_expect_not_null(tg_st_get(f, "rnn.weight_hh"));
    cr_expect_str_eq(tg_st_meta(f, "format"), "pt");
    tg_st_free(f);
    tg_tensor *w = tg_params_find(b.params, "rnn.weight_ih");
    uint64_t v = tg_version(w);
    cr_assert_eq(tg_params_load(b.params, path), 0);
    cr_expect_gt(tg_version(w), v);
    for (int i = 0; i < 4; i++) {
        tg_tensor *x = tg_params_at(a.params, i), *y = tg_params_at(b.params, i);
        cr_expect(memcmp(tg_cdata(x), tg_cdata(y), (size_t)tg_numel(x) * 4) == 0);
    }
    tg_params_free(a.params);
    tg_params_free(b.params);
    unlink(path);
}

/* A copy of every parameter's bytes, to prove that a failed load changed nothing. */
static void expect_untouched(const tiny_model *m, const tiny_model *ref, const char *what) {
    for (int i = 0; i < tg_params_count(m->params); i++) {
        tg_tensor *x = tg_params_at(m->params, i), *y = tg_params_at(ref->params, i);
        cr_expect(memcmp(tg_cdata(x), tg_cdata(y), (size_t)tg_numel(x) * tg_itemsize(tg_dtype_of(x))) == 0,
                  "%s: parameter %d was modified", what, i);
    }
}

TH_TEST(optim, malformed_params_checkpoint_is_rejected_and_model_untouched, th_live_check) {
    th_record_errors();
    tiny_model m = tiny_new(TG_F32, 3), ref = tiny_new(TG_F32, 3);
    const char *path = th_path_in("bad.safetensors");
    struct { const char *what; const char *needle; } cases[] = {
        {"missing", "missing tensor 'out.weight'"},
        {"extra", "unexpected tensor 'extra.bias'"},
        {"shape", "'rnn.bias' has shape [5]"},
        {"dtype", "'rnn.weight_hh' has dtype F64"},
        {"garbage", "bad.safetensors"},
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        /* the file: the right tensors (from another model), one of them spoiled */
        tiny_model src = tiny_new(TG_F32, 9);
        const char *names[5];
        tg_tensor *ts[5];
        int n = 0;
        for (int i = 0; i < 4; i++) {
            names[n] = tg_params_name_at(src.params, i);
            ts[n] = tg_retain(tg_params_at(src.params, i));
            if (c == 0 && i == 3) { tg_release(ts[n]); continue; }
            if (c == 2 && i == 2) { tg_release(ts[n]); ts[n] = tg_zeros(TG_F32, TG_SHAPE(5)); }
            if (c == 3 && i == 1) { tg_tensor *t = tg_to_dtype(ts[n], TG_F64); tg_release(ts[n]); ts[n] = t; }
            n++;
        }
        if (c == 1) { names[n] = "extra.bias"; ts[n++] = tg_zeros(TG_F32, TG_SHAPE(2)); }
        th_reset_errors();
        if (c == 4) {
            FILE *fp = fopen(path, "wb");
            fputs("\x10\x00\x00\x00\x00\x00\x00\x00{\"a\": nonsense}", fp);
            fclose(fp);
        } else {
            cr_assert_eq(tg_st_save(path, n, names, ts, 0, NULL), 0, "%s", tg_last_error());
        }
        th_reset_errors();
        cr_expect_eq(tg_params_load(m.params, path), -1, "%s", cases[c].what);
        cr_expect(strstr(tg_last_error(), cases[c].needle) != NULL, "%s: %s", cases[c].what, tg_last_error());
        cr_expect_eq(th_error_count(), 0, "a data error never reaches the abort handler");
        expect_untouched(&m, &ref, cases[c].what);
        for (int i = 0; i < n; i++) tg_release(ts[i]);
        tg_params_free(src.params);
    }
    /* several problems at once: the first is named and the rest counted */
    {
        tiny_model other = tiny_new(TG_F64, 4);
        cr_assert_eq(tg_params_save(other.params, path), 0);
        th_reset_errors();
        cr_expect_eq(tg_params_load(m.params, path), -1);
        cr_expect(strstr(tg_last_error(), "and 3 more problems") != NULL, "%s", tg_last_error());
        expect_untouched(&m, &ref, "all dtypes wrong");
        tg_params_free(other.params);
    }
    th_reset_errors();
    cr_expect_eq(tg_params_load(m.params, th_path_in("does_not_exist.safetensors")), -1);
    cr_expect(tg_last_error()[0] != 0);
    tg_params_free(m.params);
    tg_params_free(ref.params);
    unlink(path);
}

/* Rewrites a checkpoint with one change: a tensor added or a metadata value replaced / removed. */
static void rewrite(const char *src, const char *dst, const char *meta_key, const char *meta_value,
                    const char *extra_tensor, tg_tensor *reshape_state) {
    tg_st_file *f = tg_st_load(src);
    cr_assert_not_null(f, "%s", tg_last_error());
    int n = tg_st_count(f), nm = tg_st_meta_count(f);
    const char **names = calloc((size_t)n + 1, sizeof *names);
    tg_tensor **ts = calloc((size_t)n + 1, sizeof *ts);
    const char **meta = calloc(2 * (size_t)nm + 2, sizeof *meta);
    for (int i = 0; i < n; i++) {
        names[i] = tg_st_name_at(f, i);
        ts[i] = tg_st_tensor_at(f, i);
        if (reshape_state && i == 0) ts[i] = reshape_state;
    }
    if (extra_tensor) { names[n] = extra_tensor; ts[n] = tg_st_tensor_at(f, 0); n++; }
    int k = 0;
    for (int i = 0; i < nm; i++) {
        const char *key = tg_st_meta_key(f, i), *val = tg_st_meta_value(f, i);
        if (meta_key && strcmp(key, meta_key) == 0) {
            if (!meta_value) continue; /* removed */
            val = meta_value;
        }
        meta[2 * k] = key;
        meta[2 * k + 1] = val;
        k++;
    }
    cr_assert_eq(tg_st_save(dst, n, names, ts, k, meta), 0, "%s", tg_last_error());
    free(names);
    free(ts);
    free(meta);
    tg_st_free(f);
}

TH_TEST(optim, malformed_optimizer_checkpoint_is_rejected_and_state_untouched, th_live_check) {
    th_record_errors();
    tiny_model m = tiny_new(TG_F64, 3);
    tg_optim_opts o = tg_optim_defaults(TG_OPTIM_ADAM);
    o.amsgrad = true;
    tg_optim *opt = tg_optim_new_params(TG_OPTIM_ADAM, m.params, &o);
    tg_sched *s = tg_sched_cosine(opt, 10, 0.0);
    for (int i = 0; i < 3; i++) { train_step(&m, opt, s, i); }
    char good[512], bad[512];
    snprintf(good, sizeof good, "%s", th_path_in("good.safetensors"));
    snprintf(bad, sizeof bad, "%s", th_path_in("bad_optim.safetensors"));
    cr_assert_eq(tg_optim_save(opt, s, good), 0);
    for (int i = 3; i < 5; i++) train_step(&m, opt, s, i); /* state now differs from the file */

    /* what must not change */
    tg_tensor *p0 = tg_optim_param(opt, 0);
    tg_tensor *m0 = tg_copy(tg_optim_state(opt, p0, "exp_avg"));
    double lr0 = tg_optim_lr(opt, 0);
    int64_t steps0 = tg_optim_step_count(opt, p0), epoch0 = tg_sched_epoch(s);

    tg_tensor *wrong_shape = tg_zeros(TG_F64, TG_SHAPE(3, 3));
    struct { const char *what; const char *key, *value, *extra; tg_tensor *reshape; const char *needle; } cases[] = {
        {"extra tensor", NULL, NULL, "state.0.bogus", NULL, "unexpected tensor 'state.0.bogus'"},
        {"extra index", NULL, NULL, "state.9.exp_avg", NULL, "unexpected tensor 'state.9.exp_avg'"},
        {"mis-shaped state", NULL, NULL, NULL, wrong_shape, "is [3,3] F64"},
        {"missing step", "param.1.step", NULL, NULL, NULL, "'param.1.step' is missing"},
        {"bad number", "group.0.lr", "fast", NULL, NULL, "'group.0.lr' = 'fast'"},
        {"invalid hyper-parameter", "group.0.beta2", "1.5", NULL, NULL, "beta2"},
        {"other kind", "kind", "sgd", NULL, NULL, "for a sgd optimizer"},
        {"other group count", "groups", "2", NULL, NULL, "2 parameter groups"},
        {"other shape", "param.2.shape", "[5]", NULL, NULL, "is [5] in the checkpoint"},
        {"other schedule", "sched.kind", "step", NULL, NULL, "schedule is step"},
        {"not an optimizer file", "format", "pt", NULL, NULL, "not an optimizer checkpoint"},
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        rewrite(good, bad, cases[c].key, cases[c].value, cases[c].extra, cases[c].reshape);
        th_reset_errors();
        cr_expect_eq(tg_optim_load(opt, s, bad), -1, "%s", cases[c].what);
        cr_expect(strstr(tg_last_error(), cases[c].needle) != NULL, "%s: %s", cases[c].what, tg_last_error());
        cr_expect_eq(th_error_count(), 0);
        tg_tensor *m_now = tg_optim_state(opt, p0, "exp_avg");
        cr_expect(memcmp(tg_cdata(m_now), tg_cdata(m0), (size_t)tg_numel(m0) * 8) == 0, "%s", cases[c].what);
        cr_expect_eq(tg_optim_lr(opt, 0), lr0);
        cr_expect_eq(tg_optim_step_count(opt, p0), steps0);
        cr_expect_eq(tg_sched_epoch(s), epoch0);
    }
    /* a checkpoint of another optimizer kind and of a model file */
    tg_optim *sgd = tg_optim_new_params(TG_OPTIM_SGD, m.params, NULL);
    th_reset_errors();
    cr_expect_eq(tg_optim_load(sgd, NULL, good), -1);
    cr_expect(strstr(tg_last_error(), "adam") != NULL, "%s", tg_last_error());
    tg_optim_free(sgd);
    cr_assert_eq(tg_params_save(m.params, bad), 0);
    th_reset_errors();
    cr_expect_eq(tg_optim_load(opt, s, bad), -1);
    cr_expect(strstr(tg_last_error(), "not an optimizer checkpoint") != NULL, "%s", tg_last_error());
    /* and the good file still loads */
    th_reset_errors();
    cr_expect_eq(tg_optim_load(opt, s, good), 0, "%s", tg_last_error());
    cr_expect_eq(tg_optim_step_count(opt, p0), 3);
    cr_expect_eq(tg_sched_epoch(s), 3);
    tg_release(wrong_shape);
    tg_release(m0);
    tg_sched_free(s);
    tg_optim_free(opt);
    tg_params_free(m.params);
    unlink(good);
    unlink(bad);
}

/* A schedule's extra counters (its row's .extra in optim/schedule.c: warm restarts' T_cur and T_i, also
 * as a member of a sequential schedule) are in the checkpoint, required, and T_i must be > 0. */
TH_TEST(optim, schedule_extra_counters_are_saved_and_checked, th_live_check) {
    th_record_errors();
    tiny_model m = tiny_new(TG_F64, 3);
    tg_optim *opt = tg_optim_new_params(TG_OPTIM_SGD, m.params, NULL);
    tg_sched *w = tg_sched_warm_restarts(opt, 2, 2, 0.001);
    for (int i = 0; i < 3; i++) train_step(&m, opt, w, i);
    char good[512], bad[512];
    snprintf(good, sizeof good, "%s", th_path_in("warm.safetensors"));
    snprintf(bad, sizeof bad, "%s", th_path_in("warm_bad.safetensors"));
    cr_assert_eq(tg_optim_save(opt, w, good), 0, "%s", tg_last_error());
    tg_st_file *f = tg_st_load(good);
    cr_assert_not_null(f);
    cr_expect_str_eq(tg_st_meta(f, "sched.T_cur"), "1");
    cr_expect_str_eq(tg_st_meta(f, "sched.T_i"), "4"); /* T_0 2, then 2·2 after the restart at epoch 2 */
    tg_st_free(f);
    struct { const char *key, *value, *needle; } cases[] = {
        {"sched.T_i", "0", "metadata 'sched.T_i' = 0 must be > 0"},
        {"sched.T_i", NULL, "'sched.T_i' is missing"},
        {"sched.T_cur", NULL, "'sched.T_cur' is missing"},
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        rewrite(good, bad, cases[c].key, cases[c].value, NULL, NULL);
        th_reset_errors();
        cr_expect_eq(tg_optim_load(opt, w, bad), -1, "%s", cases[c].needle);
        cr_expect(strstr(tg_last_error(), cases[c].needle) != NULL, "%s: %s", cases[c].needle, tg_last_error());
    }
    th_reset_errors();
    cr_expect_eq(tg_optim_load(opt, w, good), 0, "%s", tg_last_error());
    unlink(good);
    unlink(bad);
    tg_sched_free(w);
    tg_optim_free(opt);
    tg_params_free(m.params);
}

TH_TEST(optim, checkpoint_without_state_or_schedule, th_live_check) {
    tiny_model m = tiny_new(TG_F32, 3);
    tg_optim *opt = tg_optim_new_params(TG_OPTIM_SGD, m.params, NULL);
    const char *path = th_path_in("empty.safetensors");
    cr_assert_eq(tg_optim_save(opt, NULL, path), 0, "%s", tg_last_error()); /* no state tensors yet */
    tg_optim_free(opt);
    opt = tg_optim_new_params(TG_OPTIM_SGD, m.params, NULL);
    cr_expect_eq(tg_optim_load(opt, NULL, path), 0, "%s", tg_last_error());
    tg_sched *s = tg_sched_step_lr(opt, 3, 0.5);
    th_record_errors();
    cr_expect_eq(tg_optim_load(opt, s, path), -1, "the file has no schedule");
    cr_expect(strstr(tg_last_error(), "sched.kind") != NULL, "%s", tg_last_error());
    /* an unwritable path is a data error: -1 and a message, never the abort handler */
    th_reset_errors();
    cr_expect_eq(tg_optim_save(opt, s, "/nonexistent-dir/optim.safetensors"), -1);
    cr_expect_eq(tg_params_save(m.params, "/nonexistent-dir/model.safetensors"), -1);
    cr_expect(strstr(tg_last_error(), "nonexistent-dir") != NULL, "%s", tg_last_error());
    cr_expect_eq(th_error_count(), 0);
    tg_sched_free(s);
    tg_optim_free(opt);
    tg_params_free(m.params);
    unlink(path);
}

/* NAdam's mu_product is a 0-d state tensor (torch's state['mu_product']) holding ∏ μ_t, saved and
 * checked as one; Adamax's exp_inf is torch.amax's, so a NaN gradient element stays NaN there. */
TH_TEST(optim, nadam_mu_product_is_a_scalar_state, th_live_check) {
    th_record_errors();
    tiny_model m = tiny_new(TG_F64, 3);
    tg_optim_opts o = tg_optim_defaults(TG_OPTIM_NADAM);
    o.momentum_decay = 0.05;
    tg_optim *opt = tg_optim_new_params(TG_OPTIM_NADAM, m.params, &o);
    for (int i = 0; i < 3; i++) train_step(&m, opt, NULL, i);
    tg_tensor *p0 = tg_optim_param(opt, 0), *mp = tg_optim_state(opt, p0, "mu_product");
    cr_assert_not_null(mp);
    cr_expect_eq(tg_ndim(mp), 0);
    double prod = 1;
    for (int t = 1; t <= 3; t++) prod *= 0.9 * (1 - 0.5 * pow(0.96, t * 0.05));
    cr_expect(fabs(tg_item(mp) - prod) <= 1e-15, "mu_product %.17g, expected %.17g", tg_item(mp), prod);
    cr_expect_not_null(tg_optim_state(opt, p0, "exp_avg_sq"));

    char good[512], bad[512];
    snprintf(good, sizeof good, "%s", th_path_in("nadam.safetensors"));
    snprintf(bad, sizeof bad, "%s", th_path_in("nadam_bad.safetensors"));
    cr_assert_eq(tg_optim_save(opt, NULL, good), 0, "%s", tg_last_error());
    /* state.0.mu_product [4,3] instead of 0-d: refused, state untouched */
    tg_st_file *f = tg_st_load(good);
    cr_assert_not_null(f);
    cr_assert_str_eq(tg_st_name_at(f, 0), "state.0.exp_avg");
    tg_st_free(f);
    tg_tensor *wrong = tg_zeros(TG_F64, TG_SHAPE(4, 3));
    rewrite(good, bad, NULL, NULL, NULL, NULL);
    {
        /* rename: put a [4,3] tensor under the mu_product name */
        tg_st_file *g = tg_st_load(bad);
        int n = tg_st_count(g), nm = tg_st_meta_count(g);
        const char **names = calloc((size_t)n, sizeof *names), **meta = calloc(2 * (size_t)nm, sizeof *meta);
        tg_tensor **ts = calloc((size_t)n, sizeof *ts);
        for (int i = 0; i < n; i++) {
            names[i] = tg_st_name_at(g, i);
            ts[i] = strcmp(names[i], "state.0.mu_product") == 0 ? wrong : tg_st_tensor_at(g, i);
        }
        for (int i = 0; i < nm; i++) { meta[2 * i] = tg_st_meta_key(g, i); meta[2 * i + 1] = tg_st_meta_value(g, i); }
        cr_assert_eq(tg_st_save(bad, n, names, ts, nm, meta), 0, "%s", tg_last_error());
        free(names);
        free(meta);
        free(ts);
        tg_st_free(g);
    }
    double before = tg_item(mp);
    train_step(&m, opt, NULL, 3);
    double after = tg_item(tg_optim_state(opt, p0, "mu_product"));
    cr_expect_neq(before, after);
    th_reset_errors();
    cr_expect_eq(tg_optim_load(opt, NULL, bad), -1);
    cr_expect(strstr(tg_last_error(), "'state.0.mu_product' is [4,3] F64, expected a 0-d F64") != NULL, "%s",
              tg_last_error());
    cr_expect_eq(tg_item(tg_optim_state(opt, p0, "mu_product")), after);
    cr_expect_eq(tg_optim_load(opt, NULL, good), 0, "%s", tg_last_error());
    cr_expect_eq(tg_item(tg_optim_state(opt, p0, "mu_product")), before);
    cr_expect_eq(th_error_count(), 0);
    tg_release(wrong);
    tg_optim_free(opt);
    tg_params_free(m.params);
    unlink(good);
    unlink(bad);
}

/* A file written before a hyper-parameter existed lacks its key: fine for a kind that does not read
 * it, an error for one that does. */
TH_TEST(optim, checkpoint_without_a_field_the_kind_does_not_read, th_live_check) {
    th_record_errors();
    tiny_model m = tiny_new(TG_F32, 3);
    tg_optim *opt = tg_optim_new_params(TG_OPTIM_ADAM, m.params, NULL);
    train_step(&m, opt, NULL, 0);
    char good[512], old[512];
    snprintf(good, sizeof good, "%s", th_path_in("adam.safetensors"));
    snprintf(old, sizeof old, "%s", th_path_in("adam_old.safetensors"));
    cr_assert_eq(tg_optim_save(opt, NULL, good), 0, "%s", tg_last_error());
    rewrite(good, old, "group.0.rho", NULL, NULL, NULL);
    cr_expect_eq(tg_optim_load(opt, NULL, old), 0, "%s", tg_last_error());
    rewrite(good, old, "group.0.beta2", NULL, NULL, NULL);
    cr_expect_eq(tg_optim_load(opt, NULL, old), -1);
    cr_expect(strstr(tg_last_error(), "'group.0.beta2' is missing") != NULL, "%s", tg_last_error());
    tg_optim_free(opt);
    opt = tg_optim_new_params(TG_OPTIM_ADADELTA, m.params, NULL);
    train_step(&m, opt, NULL, 0);
    cr_assert_eq(tg_optim_save(opt, NULL, good), 0, "%s", tg_last_error());
    rewrite(good, old, "group.0.rho", NULL, NULL, NULL);
    cr_expect_eq(tg_optim_load(opt, NULL, old), -1);
    cr_expect(strstr(tg_last_error(), "'group.0.rho' is missing") != NULL, "%s", tg_last_error());
    cr_expect_eq(th_error_count(), 0);
    tg_optim_free(opt);
    tg_params_free(m.params);
    unlink(good);
    unlink(old);
}

/* torch 1.13: Adamax([p], lr=0.1) with gradient [1, nan, -2], then [1, 1, -2]:
 * exp_inf [1+1e-8, nan, 2+1e-8] after both, p [-0.1, nan, 0.1] then [-0.2, nan, 0.2] */
TH_TEST(optim, adamax_nan_gradient_stays_in_exp_inf_like_torch_amax, th_live_check) {
    tg_tensor *p = tg_zeros(TG_F64, TG_SHAPE(3));
    tg_set_requires_grad(p, true);
    tg_optim_opts o = tg_optim_defaults(TG_OPTIM_ADAMAX);
    o.lr = 0.1;
    tg_optim *opt = tg_optim_new(TG_OPTIM_ADAMAX, &p, 1, &o);
    const double g[2][3] = {{1, NAN, -2}, {1, 1, -2}};
    for (int s = 0; s < 2; s++) {
        tg_tensor *w = tg_from_f64(TG_F64, 1, (int64_t[]){3}, g[s]);
        tg_backward(tg_sum(tg_mul(p, w)));
        tg_release(w);
        cr_assert_eq(tg_optim_step(opt), 0);
        tg_optim_zero_grad(opt);
        tg_tape_reset();
        tg_tensor *u = tg_optim_state(opt, p, "exp_inf");
        cr_expect(isnan(tg_get(u, 1)), "step %d: exp_inf[1] = %g, torch nan", s + 1, tg_get(u, 1));
        cr_expect(isnan(tg_get(p, 1)));
        cr_expect(fabs(tg_get(p, 0) + 0.1 * (s + 1)) < 1e-8 && fabs(tg_get(p, 2) - 0.1 * (s + 1)) < 1e-8, /* eps in exp_inf */
                  "step %d: p %g %g", s + 1, tg_get(p, 0), tg_get(p, 2));
    }
    tg_optim_free(opt);
    tg_release(p);
}

/* ---- a checkpoint must carry the state of every parameter that has taken steps --------------------- */

/* A copy of src without tensor `drop`. */
static void drop_tensor(const char *src, const char *dst, const char *drop) {
    tg_st_file *f = tg_st_load(src);
    cr_assert_not_null(f, "%s", tg_last_error());
    int n = tg_st_count(f), nm = tg_st_meta_count(f), k = 0;
    const char **names = calloc((size_t)n + 1, sizeof *names), **meta = calloc(2 * (size_t)nm + 2, sizeof *meta);
    tg_tensor **ts = calloc((size_t)n + 1, sizeof *ts);
    for (int i = 0; i < n; i++)
        if (strcmp(tg_st_name_at(f, i), drop) != 0) names[k] = tg_st_name_at(f, i), ts[k++] = tg_st_tensor_at(f, i);
    cr_assert_eq(k, n - 1, "%s has no tensor '%s'", src, drop);
    for (int i = 0; i < nm; i++) meta[2 * i] = tg_st_meta_key(f, i), meta[2 * i + 1] = tg_st_meta_value(f, i);
    cr_assert_eq(tg_st_save(dst, k, names, ts, nm, meta), 0, "%s", tg_last_error());
    free(names);
    free(meta);
    free(ts);
    tg_st_free(f);
}

/* The number of state tensors the kind's row (optim/optim.c, .state) names: torch's state keys. */
static int row_state_count(tg_optim_kind kind) {
    int n = 0;
    while (n < TG_OPTIM_NBUF && tg__optim_buf_name(kind, n)) n++;
    return n;
}

/* Walks one configuration both ways: each state tensor the optimizer holds after 3 steps is required
 * (the file without it is refused, naming the parameter and the tensor, and the optimizer keeps its
 * state), and nothing it does not hold is (the whole file loads). The names walked are the row's
 * (the one declaration of an optimizer's states). Returns the number of states held. */
static int check_required_states(tg_optim_kind kind, const tg_optim_opts *o) {
    tiny_model m = tiny_new(TG_F64, 3);
    tg_optim *opt = tg_optim_new_params(kind, m.params, o);
    cr_assert_not_null(opt);
    for (int s = 0; s < 3; s++) train_step(&m, opt, NULL, s);
    char good[512], bad[512], key[64];
    snprintf(good, sizeof good, "%s", th_path_in("states.safetensors"));
    snprintf(bad, sizeof bad, "%s", th_path_in("states_missing.safetensors"));
    cr_assert_eq(tg_optim_save(opt, NULL, good), 0, "%s", tg_last_error());
    th_reset_errors();
    cr_expect_eq(tg_optim_load(opt, NULL, good), 0, "%s: %s", tg_optim_kind_name(kind), tg_last_error());
    tg_tensor *p0 = tg_optim_param(opt, 0);
    int held = 0;
    for (int k = 0; k < row_state_count(kind); k++) {
        const char *name = tg__optim_buf_name(kind, k);
        tg_tensor *st = tg_optim_state(opt, p0, name);
        if (!st) continue;
        held++;
        tg_tensor *before = tg_copy(st);
        train_step(&m, opt, NULL, 3); /* the optimizer now differs from the file */
        tg_tensor *now = tg_copy(tg_optim_state(opt, p0, name));
        snprintf(key, sizeof key, "state.0.%s", name);
        drop_tensor(good, bad, key);
        th_reset_errors();
        cr_expect_eq(tg_optim_load(opt, NULL, bad), -1, "%s without '%s' loaded", tg_optim_kind_name(kind), key);
        char want[160];
        snprintf(want, sizeof want, "parameter 0 '%s' has taken 3 steps but the checkpoint has no state tensor '%s'",
                 tg_name(p0), key);
        cr_expect(strstr(tg_last_error(), want) != NULL, "%s: %s", tg_optim_kind_name(kind), tg_last_error());
        cr_expect_eq(th_error_count(), 0);
        cr_expect_eq(tg_optim_step_count(opt, p0), 4, "a refused load changed the step count");
        tg_tensor *kept = tg_optim_state(opt, p0, name);
        cr_assert_not_null(kept, "%s: the load dropped '%s'", tg_optim_kind_name(kind), name);
        cr_expect(memcmp(tg_cdata(kept), tg_cdata(now), (size_t)tg_numel(now) * 8) == 0,
                  "%s: a refused load changed '%s'", tg_optim_kind_name(kind), name);
        cr_expect_eq(tg_optim_load(opt, NULL, good), 0, "%s", tg_last_error());
        cr_expect(memcmp(tg_cdata(tg_optim_state(opt, p0, name)), tg_cdata(before), (size_t)tg_numel(before) * 8) == 0);
        tg_release(before);
        tg_release(now);
    }
    tg_optim_free(opt);
    tg_params_free(m.params);
    unlink(good);
    unlink(bad);
    return held;
}

TH_TEST(optim, checkpoint_missing_state_of_a_stepped_parameter_is_refused, th_live_check) {
    th_record_errors();
    for (int k = 0; k < TG_OPTIM_KIND_COUNT; k++) {
        tg_optim_opts o = tg_optim_defaults((tg_optim_kind)k);
        o.momentum = 0.5; /* every state a kind can have: SGD's and RMSprop's momentum_buffer */
        o.amsgrad = true;
        o.centered = true;
        int held = check_required_states((tg_optim_kind)k, &o);
        int names = row_state_count((tg_optim_kind)k);
        cr_expect_eq(held, names, "%s holds %d of its %d states", tg_optim_kind_name((tg_optim_kind)k), held, names);
    }
    /* options that use fewer: nothing more is asked for */
    tg_optim_opts o = tg_optim_defaults(TG_OPTIM_SGD);
    cr_expect_eq(check_required_states(TG_OPTIM_SGD, &o), 0);
    o = tg_optim_defaults(TG_OPTIM_ADAM);
    cr_expect_eq(check_required_states(TG_OPTIM_ADAM, &o), 2);
    o = tg_optim_defaults(TG_OPTIM_RMSPROP);
    cr_expect_eq(check_required_states(TG_OPTIM_RMSPROP, &o), 1);
    o.centered = true;
    cr_expect_eq(check_required_states(TG_OPTIM_RMSPROP, &o), 2);
}

/* The optimizers' dispatched loops (tensor/updates.h, run unless maximize is set) must give the bits of
 * the general loops of optim/optim.c: maximize on the negated loss takes the general loop with the same
 * gradient. Every option the kernels take as a flag (L2 or decoupled decay, amsgrad, momentum, centred,
 * RAdam's rectified steps from step 6 on, SGD's first momentum step, dampening, Nesterov), F32 and F64, 37 elements (not a multiple of any vector
 * width), 7 steps. */
TH_TEST(optim, fast_loops_equal_the_general_loop, th_live_check) {
    enum { N = 37, STEPS = 7 };
    static const struct {
        tg_optim_kind kind;
        double wd, momentum, lr_decay, dampening;
        bool amsgrad, centered, decoupled, nesterov;
    } cases[] = {
        {.kind = TG_OPTIM_ADAM}, {.kind = TG_OPTIM_ADAM, .wd = 0.1}, {.kind = TG_OPTIM_ADAM, .amsgrad = true},
        {.kind = TG_OPTIM_ADAM, .wd = 0.1, .amsgrad = true}, {.kind = TG_OPTIM_ADAMW}, {.kind = TG_OPTIM_ADAMW, .wd = 0.1, .amsgrad = true},
        {.kind = TG_OPTIM_RMSPROP}, {.kind = TG_OPTIM_RMSPROP, .wd = 0.1}, {.kind = TG_OPTIM_RMSPROP, .momentum = 0.9},
        {.kind = TG_OPTIM_RMSPROP, .centered = true}, {.kind = TG_OPTIM_RMSPROP, .wd = 0.1, .momentum = 0.9, .centered = true},
        {.kind = TG_OPTIM_ADAGRAD}, {.kind = TG_OPTIM_ADAGRAD, .wd = 0.1, .lr_decay = 0.01},
        {.kind = TG_OPTIM_NADAM}, {.kind = TG_OPTIM_NADAM, .wd = 0.1}, {.kind = TG_OPTIM_NADAM, .wd = 0.1, .decoupled = true},
        {.kind = TG_OPTIM_RADAM}, {.kind = TG_OPTIM_RADAM, .wd = 0.1}, {.kind = TG_OPTIM_RADAM, .wd = 0.1, .decoupled = true},
        {.kind = TG_OPTIM_ADADELTA}, {.kind = TG_OPTIM_ADADELTA, .wd = 0.1},
        {.kind = TG_OPTIM_SGD}, {.kind = TG_OPTIM_SGD, .wd = 0.1}, {.kind = TG_OPTIM_SGD, .momentum = 0.9},
        {.kind = TG_OPTIM_SGD, .wd = 0.1, .momentum = 0.9, .dampening = 0.1}, {.kind = TG_OPTIM_SGD, .momentum = 0.9, .nesterov = true},
        {.kind = TG_OPTIM_ADAMAX}, {.kind = TG_OPTIM_ADAMAX, .wd = 0.1},
    };
    double w0[N], c[N];
    for (int i = 0; i < N; i++) w0[i] = 0.3 * (i % 7) - 0.8, c[i] = 0.05 * ((i * 5) % 11) - 0.2;
    float w0f[N], cf[N];
    for (int i = 0; i < N; i++) w0f[i] = (float)w0[i], cf[i] = (float)c[i];
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++)
        for (int f64 = 0; f64 < 2; f64++) {
            const tg_dtype dt = f64 ? TG_F64 : TG_F32;
            const char *name = tg_optim_kind_name(cases[k].kind);
            tg_tensor *w[2], *cc = tg_from_array(dt, TG_SHAPE(N), f64 ? (const void *)c : (const void *)cf);
            tg_optim *opt[2];
            for (int m = 0; m < 2; m++) {
                w[m] = tg_from_array(dt, TG_SHAPE(N), f64 ? (const void *)w0 : (const void *)w0f);
                tg_set_requires_grad(w[m], true);
                tg_optim_opts o = tg_optim_defaults(cases[k].kind);
                o.lr = 0.01, o.maximize = m == 1;
                if (cases[k].wd) o.weight_decay = cases[k].wd;
                o.momentum = cases[k].momentum, o.lr_decay = cases[k].lr_decay, o.dampening = cases[k].dampening;
                o.nesterov = cases[k].nesterov;
                o.amsgrad = cases[k].amsgrad, o.centered = cases[k].centered, o.decoupled_weight_decay = cases[k].decoupled;
                opt[m] = tg_optim_new(cases[k].kind, &w[m], 1, &o);
                cr_assert_not_null(opt[m], "%s: %s", name, tg_last_error());
            }
            for (int step = 0; step < STEPS; step++) {
                for (int m = 0; m < 2; m++) {
                    tg_tensor *loss = tg_sum(tg_mul(tg_mul(w[m], w[m]), cc)); /* grad 2 w c */
                    tg_backward(m ? tg_neg(loss) : loss);
                    cr_assert_eq(tg_optim_step(opt[m]), 0);
                    tg_optim_zero_grad(opt[m]);
                    tg_tape_reset();
                }
                cr_assert(memcmp(tg_data(w[0]), tg_data(w[1]), tg_itemsize(dt) * N) == 0,
                          "%s case %zu %s step %d: the dispatched loop (%s) differs from the general loop (w[0] %.17g vs %.17g)",
                          name, k, tg_dtype_name(dt), step + 1, tg_kernel_target(), tg_get(w[0], 0), tg_get(w[1], 0));
            }
            cr_assert(tg_get(w[0], 0) != (f64 ? w0[0] : (double)w0f[0]), "%s case %zu: the parameter did not move", name, k);
            for (int m = 0; m < 2; m++) tg_optim_free(opt[m]), tg_release(w[m]);
            tg_release(cc);
        }
}
