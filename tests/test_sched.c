/* tests/test_sched.c - the learning-rate schedules added for PyTorch parity: LambdaLR and
 * MultiplicativeLR (C callbacks), OneCycleLR (cos / linear, three-phase, per-group max_lr, momentum or
 * Adam's β1 cycled), CyclicLR (triangular, triangular2, exp_range), CosineAnnealingWarmRestarts,
 * SequentialLR, ChainedScheduler, and ReduceLROnPlateau's per-group min_lr.
 *
 * Both groups' lr and momentum over 30 epochs are compared with torch's (tests/data/parity_golden.h,
 * written by tests/data/gen_parity_golden.py with torch 1.13); a checkpoint taken mid-run resumes bit
 * for bit; bad arguments are reported with a message. (The older schedules are in test_optim.c.) */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "data/parity_golden.h"
#include "helpers.h"
#include "optim/optim_internal.h"

/* Two groups of one parameter each with lrs 0.1 and 0.05, SGD momentum 0.9 or Adam (torch's setup). */
static tg_optim *two_groups(bool adam, tg_tensor **w) {
    for (int g = 0; g < 2; g++) {
        w[g] = tg_zeros(TG_F64, TG_SHAPE(1));
        tg_set_requires_grad(w[g], true);
    }
    tg_optim_kind kind = adam ? TG_OPTIM_ADAM : TG_OPTIM_SGD;
    tg_optim_opts o = tg_optim_defaults(kind);
    if (!adam) o.momentum = 0.9;
    o.lr = pg_sched_base_lr[0];
    tg_optim *opt = tg_optim_new(kind, &w[0], 1, &o);
    o.lr = pg_sched_base_lr[1];
    tg_optim_add_group(opt, &w[1], 1, &o);
    return opt;
}

static double momentum_of(const tg_optim *opt, int g, bool adam) {
    const tg_optim_opts *o = tg_optim_group_opts(opt, g);
    return adam ? o->beta1 : o->momentum;
}

/* One case's schedule, its members and optimizer. */
typedef struct run {
    tg_tensor *w[2];
    tg_optim *opt;
    tg_sched *s, *m[TG_SCHED_MAX_MEMBERS];
} run;

static void run_start(run *r, const pg_sched_case *pc) {
    memset(r, 0, sizeof *r);
    r->opt = two_groups(pc->adam, r->w);
    r->s = pg_make_sched(pc->name, r->opt, r->m);
    cr_assert_not_null(r->s, "%s: %s", pc->name, tg_last_error());
}

static void run_step(run *r, const pg_sched_case *pc, int e) {
    if (strncmp(pc->name, "plateau", 7) == 0) tg_sched_step_metric(r->s, pg_plateau_metrics[e - 1]);
    else tg_sched_step(r->s);
}

static void run_free(run *r) {
    tg_sched_free(r->s);
    for (int k = 0; k < TG_SCHED_MAX_MEMBERS; k++) tg_sched_free(r->m[k]);
    tg_optim_free(r->opt);
    tg_release(r->w[0]);
    tg_release(r->w[1]);
}

static bool close_to(double v, double ref) { return fabs(v - ref) <= 1e-15 + 1e-13 * fabs(ref); }

Test(sched, schedules_match_torch) {
    for (int c = 0; c < PG_N_SCHED_CASES; c++) {
        const pg_sched_case *pc = &pg_sched_cases[c];
        run r;
        run_start(&r, pc);
        for (int e = 0; e < PG_SCHED_EPOCHS; e++) {
            if (e > 0) run_step(&r, pc, e);
            for (int g = 0; g < 2; g++) {
                double lr = tg_optim_lr(r.opt, g), ref = pc->lr[e][g];
                cr_expect(close_to(lr, ref), "%s epoch %d group %d: lr %.17g, torch %.17g", pc->name, e, g, lr, ref);
                double m = momentum_of(r.opt, g, pc->adam), mref = pc->momentum[e][g];
                cr_expect(close_to(m, mref), "%s epoch %d group %d: momentum %.17g, torch %.17g", pc->name, e, g, m,
                          mref);
            }
        }
        run_free(&r);
    }
}

/* The example: StepLR + ExponentialLR chained gives torch's 0.0164025 at epoch 4, not the
 * 0.06561 of closed forms that overwrite each other. */
Test(sched, chained_step_and_exponential_is_torchs_value) {
    tg_tensor *w[2];
    tg_optim *opt = two_groups(false, w);
    tg_sched *m[2] = {tg_sched_step_lr(opt, 2, 0.5), tg_sched_exponential(opt, 0.9)};
    tg_sched *s = tg_sched_chained(2, m);
    for (int e = 0; e < 4; e++) tg_sched_step(s);
    cr_expect(fabs(tg_optim_lr(opt, 0) - 0.0164025) < 1e-15, "%.17g", tg_optim_lr(opt, 0));
    tg_sched_free(s);
    tg_sched_free(m[0]);
    tg_sched_free(m[1]);
    tg_optim_free(opt);
    tg_release(w[0]);
    tg_release(w[1]);
}

/* Every schedule kind is exercised: those of this file by a golden case here, the older ones by
 * test_optim.c's (a new kind without a golden case fails here). */
Test(sched, every_new_kind_has_a_golden_case) {
    bool seen[TG_SCHED_KIND_COUNT] = {false};
    for (int k = 0; k <= TG_SCHED_PLATEAU; k++) seen[k] = true; /* test_optim.c: schedules_match_torch */
    for (int c = 0; c < PG_N_SCHED_CASES; c++) {
        run r;
        run_start(&r, &pg_sched_cases[c]);
        seen[tg_sched_kind_of(r.s)] = true;
        run_free(&r);
    }
    for (int k = 0; k < TG_SCHED_KIND_COUNT; k++)
        cr_expect(seen[k], "schedule kind '%s' has no golden case", tg_sched_kind_name((tg_sched_kind)k));
}

/* Every kind of TG_SCHED_KINDS has a row with its step rule in optim/schedule.c (a kind without a
 * row does not build; a row without get_lr or step fails here, naming the kind). */
Test(sched, every_kind_has_a_row) {
    for (int k = 0; k < TG_SCHED_KIND_COUNT; k++)
        cr_expect(tg__sched_has_row((tg_sched_kind)k), "schedule kind '%s' has no step rule in optim/schedule.c's "
                  "sched_rows[] (row_%s: .get_lr or .step)", tg_sched_kind_name((tg_sched_kind)k),
                  tg_sched_kind_name((tg_sched_kind)k));
    cr_expect(!tg__sched_has_row(TG_SCHED_KIND_COUNT));
}

/* Save at epoch 11 (optimizer + schedule, members included), rebuild everything, load, continue:
 * every lr and momentum equals the uninterrupted run's bit for bit. */
Test(sched, checkpoint_resumes_bit_exact) {
    char dir[] = "/tmp/tg_test_sched_XXXXXX";
    cr_assert_not_null(mkdtemp(dir));
    char path[64];
    snprintf(path, sizeof path, "%s/opt.safetensors", dir);
    for (int c = 0; c < PG_N_SCHED_CASES; c++) {
        const pg_sched_case *pc = &pg_sched_cases[c];
        run a, b;
        run_start(&a, pc);
        double lr[PG_SCHED_EPOCHS][2], mom[PG_SCHED_EPOCHS][2];
        for (int e = 0; e < PG_SCHED_EPOCHS; e++) {
            if (e > 0) run_step(&a, pc, e);
            for (int g = 0; g < 2; g++) {
                lr[e][g] = tg_optim_lr(a.opt, g);
                mom[e][g] = momentum_of(a.opt, g, pc->adam);
            }
        }
        run_free(&a);
        run_start(&a, pc);
        for (int e = 1; e <= 11; e++) run_step(&a, pc, e);
        cr_assert_eq(tg_optim_save(a.opt, a.s, path), 0, "%s: %s", pc->name, tg_last_error());
        run_free(&a);
        run_start(&b, pc);
        cr_assert_eq(tg_optim_load(b.opt, b.s, path), 0, "%s: %s", pc->name, tg_last_error());
        for (int e = 12; e < PG_SCHED_EPOCHS; e++) {
            run_step(&b, pc, e);
            for (int g = 0; g < 2; g++) {
                cr_expect_eq(tg_optim_lr(b.opt, g), lr[e][g], "%s epoch %d group %d: %.17g after resume, %.17g", pc->name,
                             e, g, tg_optim_lr(b.opt, g), lr[e][g]);
                cr_expect_eq(momentum_of(b.opt, g, pc->adam), mom[e][g], "%s epoch %d group %d: momentum", pc->name, e, g);
            }
        }
        run_free(&b);
    }
    unlink(path);
    rmdir(dir);
}

/* A checkpoint of one container does not load into another shape of container. */
Test(sched, checkpoint_of_other_members_is_rejected) {
    char dir[] = "/tmp/tg_test_sched_XXXXXX";
    cr_assert_not_null(mkdtemp(dir));
    char path[64];
    snprintf(path, sizeof path, "%s/opt.safetensors", dir);
    tg_tensor *w[2];
    tg_optim *opt = two_groups(false, w);
    tg_sched *m[2] = {tg_sched_step_lr(opt, 2, 0.5), tg_sched_exponential(opt, 0.9)};
    tg_sched *s = tg_sched_chained(2, m);
    cr_assert_eq(tg_optim_save(opt, s, path), 0, "%s", tg_last_error());
    tg_sched *m2[2] = {tg_sched_step_lr(opt, 2, 0.5), tg_sched_cosine(opt, 5, 0.0)};
    tg_sched *s2 = tg_sched_chained(2, m2);
    cr_expect_eq(tg_optim_load(opt, s2, path), -1);
    cr_expect(strstr(tg_last_error(), "member 1 is exponential, the given one is cosine") != NULL, "%s",
              tg_last_error());
    tg_sched *s3 = tg_sched_chained(1, m2);
    cr_expect_eq(tg_optim_load(opt, s3, path), -1);
    cr_expect(strstr(tg_last_error(), "2 members, the given one 1") != NULL, "%s", tg_last_error());
    tg_sched *all[] = {s, m[0], m[1], s2, m2[0], m2[1], s3};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) tg_sched_free(all[i]);
    tg_optim_free(opt);
    tg_release(w[0]);
    tg_release(w[1]);
    unlink(path);
    rmdir(dir);
}

static void expect_error(const void *result, const char *needle) {
    cr_expect_null(result, "should have failed: %s", needle);
    cr_expect_eq(th_error_count(), 1, "%d errors for '%s'", th_error_count(), needle);
    cr_expect(strstr(th_last_message(), needle) != NULL, "'%s' not in: %s", needle, th_last_message());
    th_reset_errors();
}

Test(sched, bad_arguments_are_reported) {
    th_record_errors();
    tg_tensor *w[2];
    tg_optim *opt = two_groups(false, w);
    tg_tensor *q = tg_zeros(TG_F64, TG_SHAPE(1));
    tg_set_requires_grad(q, true);
    tg_optim *adagrad = tg_optim_new(TG_OPTIM_ADAGRAD, &q, 1, NULL);
    tg_optim *adam = tg_optim_new(TG_OPTIM_ADAM, &q, 1, NULL);
    expect_error(tg_sched_lambda(opt, NULL, NULL), "tg_sched_lambda: the lambda is NULL");
    tg_onecycle_opts oc = tg_onecycle_defaults(1.0, 0);
    expect_error(tg_sched_onecycle(opt, &oc), "total_steps 0 must be > 0");
    oc = tg_onecycle_defaults(1.0, 10);
    oc.pct_start = 1.5;
    expect_error(tg_sched_onecycle(opt, &oc), "pct_start 1.5 must be in [0, 1]");
    oc = tg_onecycle_defaults(-1.0, 10);
    expect_error(tg_sched_onecycle(opt, &oc), "max_lr -1 (group 0) must be finite and >= 0");
    oc = tg_onecycle_defaults(1.0, 10);
    expect_error(tg_sched_onecycle(adagrad, &oc), "a adagrad optimizer has no momentum or beta1 to cycle");
    tg_cyclic_opts cy = tg_cyclic_defaults(0.01, 0.1);
    expect_error(tg_sched_cyclic(adam, &cy), "a adam optimizer has no momentum to cycle");
    cy.step_size_up = 0;
    expect_error(tg_sched_cyclic(opt, &cy), "step_size_up 0 must be > 0");
    expect_error(tg_sched_warm_restarts(opt, 0, 1, 0.0), "T_0 0 must be > 0 and T_mult 1 >= 1");
    expect_error(tg_sched_warm_restarts(opt, 3, 0, 0.0), "T_mult 0 >= 1");
    tg_plateau_opts po = tg_plateau_defaults();
    po.min_lrs = (const double[]){0.1, -1.0};
    expect_error(tg_sched_plateau(opt, &po), "min_lr -1 (group 1) must be finite and >= 0");
    /* containers */
    tg_sched *st = tg_sched_step_lr(opt, 2, 0.5), *ex = tg_sched_exponential(opt, 0.9);
    tg_sched *pl = tg_sched_plateau(opt, NULL), *other = tg_sched_exponential(adam, 0.9);
    cr_assert_eq(th_error_count(), 0, "%s", th_last_message());
    expect_error(tg_sched_chained(0, (tg_sched *[]){st}), "0 schedules");
    expect_error(tg_sched_chained(2, (tg_sched *[]){st, pl}), "schedule 1 is a plateau schedule, which cannot be a member");
    expect_error(tg_sched_chained(2, (tg_sched *[]){st, other}), "schedule 1 belongs to another optimizer");
    expect_error(tg_sched_chained(2, (tg_sched *[]){st, st}), "schedule 1 is also schedule 0");
    expect_error(tg_sched_sequential(opt, 2, (tg_sched *[]){st, ex}, NULL), "2 schedules need 1 milestones");
    tg_sched *ex2 = tg_sched_exponential(opt, 0.5);
    expect_error(tg_sched_sequential(opt, 3, (tg_sched *[]){st, ex, ex2}, (const int64_t[]){5, 5}),
                 "milestones must increase: milestone 1 = 5 after 5");
    expect_error(tg_sched_sequential(adam, 2, (tg_sched *[]){st, ex}, (const int64_t[]){3}),
                 "schedule 0 belongs to another optimizer");
    tg_sched *ch = tg_sched_chained(2, (tg_sched *[]){st, ex});
    expect_error(tg_sched_chained(1, (tg_sched *[]){ch}), "chained schedule, which cannot be a member");
    /* OneCycleLR steps total_steps times at most, like torch */
    oc = tg_onecycle_defaults(1.0, 3);
    tg_sched *one = tg_sched_onecycle(opt, &oc);
    for (int i = 0; i < 3; i++) tg_sched_step(one);
    cr_expect_eq(th_error_count(), 0, "%s", th_last_message());
    tg_sched_step(one);
    cr_expect_eq(th_error_count(), 1);
    cr_expect(strstr(th_last_message(), "tried to step 5 times, total_steps is 3") != NULL, "%s", th_last_message());
    th_reset_errors();
    tg_sched *all[] = {st, ex, ex2, pl, other, ch, one};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) tg_sched_free(all[i]);
    tg_optim_free(opt);
    tg_optim_free(adagrad);
    tg_optim_free(adam);
    tg_release(w[0]);
    tg_release(w[1]);
    tg_release(q);
}

/* tg_sched_steps_left is where the schedule refuses: that many steps pass, the next one is refused
 * (OneCycleLR alone, as a SequentialLR member restarted at its milestone, or chained); a schedule
 * without an end says INT64_MAX and takes any number. */
Test(sched, steps_left_is_where_the_schedule_refuses) {
    th_record_errors();
    for (int c = 0; c < 6; c++) {
        run r = {0};
        tg_optim *opt = r.opt = two_groups(false, r.w);
        tg_onecycle_opts o4 = tg_onecycle_defaults(1.0, 4), o3 = tg_onecycle_defaults(1.0, 3);
        tg_sched **m = r.m, *s = NULL;
        int64_t want = 0;
        switch (c) {
        case 0: s = tg_sched_onecycle(opt, &o4), want = 4; break;
        case 1: /* the one-cycle member starts at epoch 3 and takes 4 steps: epochs 4..7 */
            m[0] = tg_sched_linear(opt, 1.0 / 3, 1, 2), m[1] = tg_sched_onecycle(opt, &o4);
            s = tg_sched_sequential(opt, 2, m, (const int64_t[]){3}), want = 7;
            break;
        case 2: /* the one-cycle member would need epoch 4 before its milestone 5 */
            m[0] = tg_sched_onecycle(opt, &o3), m[1] = tg_sched_exponential(opt, 0.9);
            s = tg_sched_sequential(opt, 2, m, (const int64_t[]){5}), want = 3;
            break;
        case 3: /* ... but not before milestone 4: the exponential member goes on for ever */
            m[0] = tg_sched_onecycle(opt, &o3), m[1] = tg_sched_exponential(opt, 0.9);
            s = tg_sched_sequential(opt, 2, m, (const int64_t[]){4}), want = INT64_MAX;
            break;
        case 4:
            m[0] = tg_sched_exponential(opt, 0.9), m[1] = tg_sched_onecycle(opt, &o4);
            s = tg_sched_chained(2, m), want = 4;
            break;
        case 5: s = tg_sched_cosine(opt, 3, 0), want = INT64_MAX; break;
        }
        cr_assert_not_null(s, "case %d: %s", c, tg_last_error());
        cr_expect_eq(tg_sched_steps_left(s), want, "case %d: %lld steps left", c, (long long)tg_sched_steps_left(s));
        int64_t n = want == INT64_MAX ? 40 : want;
        for (int64_t i = 0; i < n; i++) {
            tg_sched_step(s);
            if (want != INT64_MAX)
                cr_expect_eq(tg_sched_steps_left(s), want - i - 1, "case %d after %lld steps", c, (long long)i + 1);
        }
        cr_expect_eq(th_error_count(), 0, "case %d: %s", c, th_last_message());
        if (want != INT64_MAX) {
            tg_sched_step(s);
            cr_expect_eq(th_error_count(), 1, "case %d: step %lld was taken", c, (long long)want + 1);
            cr_expect_eq(tg_sched_steps_left(s), 0);
        }
        th_reset_errors();
        r.s = s;
        run_free(&r);
    }
    cr_expect_eq(tg_sched_steps_left(NULL), 0);
}

/* ---- schedules from text (tg_sched_from_spec, optim/sched_spec.c) -------------------------------- */

/* A spec builds the schedule its constructor builds: both groups' lr (and momentum) equal bit for bit
 * over 25 epochs; the canonical spec builds it again, whatever length is then, and matches the spec. */
Test(sched, spec_builds_what_the_constructor_builds) {
    struct { const char *spec; bool adam; int kind; } cases[] = {
        {"step:step_size=3,gamma=0.5", false, 0}, {"multistep:milestones=2,5,9", false, 1},
        {"exponential:gamma=0.9", true, 2},       {"cosine", true, 3},
        {"linear:start_factor=0.2,total_iters=4", true, 4},
        {"onecycle:max_lr=0.4,pct_start=0.25,anneal_strategy=linear", true, 5},
        {"cyclic:base_lr=0.01,max_lr=0.1,step_size_up=4,mode=triangular2", false, 6},
        {"warm_restarts:T_0=3,T_mult=2,eta_min=0.001", false, 7},
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        tg_tensor *w[2], *v[2], *u[2];
        tg_optim *a = two_groups(cases[c].adam, w), *b = two_groups(cases[c].adam, v), *d = two_groups(cases[c].adam, u);
        char canon[600], again[600];
        tg_sched *sa = tg_sched_from_spec(a, cases[c].spec, 25, false, canon, sizeof canon), *sb = NULL;
        cr_assert(sa, "%s: %s", cases[c].spec, tg_last_error());
        tg_sched *sd = tg_sched_from_spec(d, canon, 7, true, again, sizeof again); /* another length: no matter */
        cr_assert(sd, "%s: %s", canon, tg_last_error());
        cr_expect_str_eq(again, canon);
        cr_expect(tg_sched_spec_matches(cases[c].spec, canon, false), "%s does not match its canonical %s",
                  cases[c].spec, canon);
        switch (cases[c].kind) {
        case 0: sb = tg_sched_step_lr(b, 3, 0.5); break;
        case 1: sb = tg_sched_multistep(b, 3, (int64_t[]){2, 5, 9}, 0.1); break;
        case 2: sb = tg_sched_exponential(b, 0.9); break;
        case 3: sb = tg_sched_cosine(b, 25, 0); break;
        case 4: sb = tg_sched_linear(b, 0.2, 1, 4); break;
        case 5: {
            tg_onecycle_opts o = tg_onecycle_defaults(0.4, 25);
            o.pct_start = 0.25;
            o.anneal_linear = true;
            sb = tg_sched_onecycle(b, &o);
            break;
        }
        case 6: {
            tg_cyclic_opts o = tg_cyclic_defaults(0.01, 0.1);
            o.step_size_up = 4;
            o.mode = TG_CYCLIC_TRIANGULAR2;
            sb = tg_sched_cyclic(b, &o);
            break;
        }
        case 7: sb = tg_sched_warm_restarts(b, 3, 2, 0.001); break;
        }
        cr_assert(sb);
        for (int e = 0; e <= 25; e++) {
            for (int g = 0; g < 2; g++) {
                cr_expect(tg_optim_lr(a, g) == tg_optim_lr(b, g) && tg_optim_lr(d, g) == tg_optim_lr(b, g),
                          "%s epoch %d group %d: lr %.17g from the spec, %.17g from its canonical form, %.17g from the "
                          "constructor", cases[c].spec, e, g, tg_optim_lr(a, g), tg_optim_lr(d, g), tg_optim_lr(b, g));
                cr_expect(momentum_of(a, g, cases[c].adam) == momentum_of(b, g, cases[c].adam), "%s: momentum", cases[c].spec);
            }
            if (e == 25) break;
            tg_sched_step(sa);
            tg_sched_step(sb);
            tg_sched_step(sd);
        }
        tg_sched_free(sa);
        tg_sched_free(sb);
        tg_sched_free(sd);
        tg_optim_free(a);
        tg_optim_free(b);
        tg_optim_free(d);
        for (int g = 0; g < 2; g++) tg_release(w[g]), tg_release(v[g]), tg_release(u[g]);
    }
}

Test(sched, spec_errors_name_the_problem) {
    struct { const char *spec; const char *msg; } bad[] = {
        {"", "the schedule is empty"},
        {"cosine", "cosine needs T_max=VALUE"}, /* length 0: no run to default to */
        {"plateau:mode=up", "plateau: mode 'up' is not one of min|max"},
        {"plateau:factor=1", "plateau: factor 1 must be >= 0, below 1"},
        {"exponential:gamma=-1", "exponential: gamma -1 must be >= 0"},
        {"step:step_size=", "step: step_size needs a value"},
        {"sequential", "schedule 'sequential' needs C"},
        {"onecycle:max_lr=0", "onecycle: max_lr 0 must be > 0"},
    };
    tg_tensor *w[2];
    tg_optim *opt = two_groups(false, w);
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        tg_clear_error();
        cr_expect_null(tg_sched_from_spec(opt, bad[i].spec, 0, false, NULL, 0), "%s was accepted", bad[i].spec);
        cr_expect(strstr(tg_last_error(), bad[i].msg) != NULL, "%s: '%s', expected '%s'", bad[i].spec, tg_last_error(),
                  bad[i].msg);
        cr_expect_eq(tg_sched_spec_check(bad[i].spec, 0, false, NULL, NULL, 0), -1, "%s", bad[i].spec);
    }
    tg_clear_error();
    cr_expect(!tg_sched_spec_matches("step:step_size=4", "step:step_size=3,gamma=0.1", false));
    cr_expect(tg_sched_spec_matches("step:step_size=3", "step:step_size=3,gamma=0.1", false));
    cr_expect(!tg_sched_spec_matches("cosine", "step:step_size=3,gamma=0.1", false));
    tg_optim_free(opt);
    for (int g = 0; g < 2; g++) tg_release(w[g]);
}
