/* optim/schedule.c - learning-rate schedules (torch.optim.lr_scheduler): StepLR, MultiStepLR,
 * ExponentialLR, CosineAnnealingLR, LinearLR, ReduceLROnPlateau, LambdaLR, MultiplicativeLR,
 * OneCycleLR, CyclicLR, CosineAnnealingWarmRestarts, SequentialLR and ChainedScheduler.
 *
 * tg_sched_step is torch's step(): epoch + 1, then get_lr(), which for the chainable schedules is the
 * recursive form on the group's current lr (so ChainedScheduler composes them as torch does);
 * step_to_epoch is torch's step(epoch) (used by SequentialLR at its milestones): the closed form
 * (_get_closed_form_lr) where torch has one, else get_lr(). Everything a schedule reads is its
 * counters, its constructor arguments and the optimizer's groups (lr, initial_lr, momentum), all of
 * which a checkpoint restores bit for bit, so a resumed run continues exactly. */
#include "optim/optim_internal.h"
#include "tensor/alloc.h"

#include <math.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

struct tg_sched {
    tg_sched_kind kind;
    tg_optim *opt;            /* borrowed */
    int64_t last_epoch;       /* torch's last_epoch: 0 after construction */
    double *base;             /* [n_base] torch's base_lrs: the groups' initial_lr at construction */
    int n_base;               /* groups when created (later groups keep their lr) */
    int64_t step_size;        /* STEP */
    double gamma;             /* STEP, MULTISTEP, EXPONENTIAL */
    int64_t *milestones;      /* MULTISTEP (sorted; duplicates count twice, like torch), SEQUENTIAL */
    int n_milestones;
    int64_t T_max;            /* COSINE */
    double eta_min;           /* COSINE, WARM_RESTARTS */
    double start_factor, end_factor; /* LINEAR */
    int64_t total_iters;      /* LINEAR */
    tg_plateau_opts plateau;  /* PLATEAU (plateau.min_lrs is NULL: see min_lrs) */
    double *min_lrs;          /* PLATEAU [n_base] */
    double best;              /* PLATEAU: best metric so far */
    int64_t num_bad_epochs;   /* PLATEAU */
    int64_t cooldown_counter; /* PLATEAU */
    tg_lr_lambda *lambda;     /* LAMBDA, MULTIPLICATIVE */
    void *lambda_user;
    tg_onecycle_opts onecycle;/* ONECYCLE (its max_lrs is NULL: see hi) */
    tg_cyclic_opts cyclic;    /* CYCLIC (base_lrs/max_lrs NULL: see base, hi) */
    double *hi;               /* ONECYCLE: max_lr, CYCLIC: max_lr, [n_base] */
    double *base_momentum;    /* CYCLIC: the groups' momentum at construction [n_base] */
    int momentum_field;       /* ONECYCLE, CYCLIC: index of the field cycled (momentum or beta1), -1 none */
    double total_size, step_ratio; /* CYCLIC */
    int64_t T_0, T_mult, T_cur, T_i; /* WARM_RESTARTS */
    tg_sched *members[TG_SCHED_MAX_MEMBERS]; /* SEQUENTIAL, CHAINED (borrowed) */
    int n_members;
};

static const char *const sched_names[TG_SCHED_KIND_COUNT] = {
#define SCHED_NAME(K, name) [TG_SCHED_##K] = #name,
    TG_SCHED_KINDS(SCHED_NAME)
#undef SCHED_NAME
};

const char *tg_sched_kind_name(tg_sched_kind kind) {
    return (unsigned)kind < TG_SCHED_KIND_COUNT ? sched_names[kind] : "unknown";
}

tg_sched_kind tg_sched_kind_from_name(const char *name) {
    for (int k = 0; name && k < TG_SCHED_KIND_COUNT; k++)
        if (strcmp(name, sched_names[k]) == 0) return (tg_sched_kind)k;
    return TG_SCHED_KIND_COUNT;
}

/* Python's a % b for b > 0 (never negative). */
static int64_t py_mod(int64_t a, int64_t b) { int64_t r = a % b; return r < 0 ? r + b : r; }

static double *field_ptr(tg_optim_opts *o, int field) {
    return (double *)(void *)((char *)o + tg__optim_fields[field].offset);
}

/* OneCycleLR's anneal_func */
static double anneal(const tg_sched *s, double start, double end, double pct) {
    if (s->onecycle.anneal_linear) return (end - start) * pct + start;
    double cos_out = cos(M_PI * pct) + 1;
    return end + (start - end) / 2.0 * cos_out;
}

/* OneCycleLR.get_lr for one group (also sets its momentum when cycled). */
static double onecycle_lr(tg_sched *s, int g) {
    const tg_onecycle_opts *o = &s->onecycle;
    tg_optim_group_rec *gr = &s->opt->groups[g];
    double T = (double)o->total_steps, initial = gr->initial_lr, max_lr = s->hi[g];
    double min_lr = initial / o->final_div_factor;
    /* phases: end step, start lr, end lr, start momentum, end momentum (torch's _schedule_phases) */
    double ph[3][5];
    int n;
    if (o->three_phase) {
        n = 3;
        double a[3][5] = {{o->pct_start * T - 1, initial, max_lr, o->max_momentum, o->base_momentum},
                          {2 * o->pct_start * T - 2, max_lr, initial, o->base_momentum, o->max_momentum},
                          {T - 1, initial, min_lr, o->max_momentum, o->max_momentum}};
        memcpy(ph, a, sizeof a);
    } else {
        n = 2;
        double a[2][5] = {{o->pct_start * T - 1, initial, max_lr, o->max_momentum, o->base_momentum},
                          {T - 1, max_lr, min_lr, o->base_momentum, o->max_momentum}};
        memcpy(ph, a, sizeof a);
    }
    double step_num = (double)s->last_epoch, start_step = 0, lr = gr->opts.lr;
    for (int i = 0; i < n; i++) {
        double end_step = ph[i][0];
        if (step_num <= end_step || i == n - 1) {
            double pct = (step_num - start_step) / (end_step - start_step);
            lr = anneal(s, ph[i][1], ph[i][2], pct);
            if (s->momentum_field >= 0) *field_ptr(&gr->opts, s->momentum_field) = anneal(s, ph[i][3], ph[i][4], pct);
            break;
        }
        start_step = end_step;
    }
    return lr;
}

/* CyclicLR.get_lr for one group (also sets its momentum when cycled). */
static double cyclic_lr(tg_sched *s, int g) {
    const tg_cyclic_opts *o = &s->cyclic;
    double e = (double)s->last_epoch;
    double cycle = floor(1 + e / s->total_size);
    double x = 1. + e / s->total_size - cycle;
    double scale_factor = x <= s->step_ratio ? x / s->step_ratio : (x - 1) / (s->step_ratio - 1);
    double scale = o->mode == TG_CYCLIC_TRIANGULAR ? 1.0
                   : o->mode == TG_CYCLIC_TRIANGULAR2 ? 1 / pow(2., cycle - 1)
                                                       : pow(o->gamma, e); /* exp_range: scale_mode "iterations" */
    double base_height = (s->hi[g] - s->base[g]) * scale_factor;
    double lr = s->base[g] + base_height * scale;
    if (s->momentum_field >= 0) {
        double mh = (o->max_momentum - s->base_momentum[g]) * scale_factor;
        *field_ptr(&s->opt->groups[g].opts, s->momentum_field) = o->max_momentum - mh * scale;
    }
    return lr;
}

/* ---- one row per schedule --------------------------------------------------------------------
 * Each kind of TG_SCHED_KINDS (include/tapegrad/optim.h) has a row `row_<name>` below its functions,
 * and sched_rows[] takes every row's address through the same X-macro: a kind without a row fails the
 * build ("'row_<name>' undeclared"), one whose row lacks a step rule fails test_sched's
 * every_kind_has_a_row naming it. A new schedule touches its TG_SCHED_KINDS line, its constructor with
 * its row here, and its golden case. */
typedef struct sched_row {
    /* torch's get_lr() for group g, lr = the group's current lr (the chainable, recursive form) */
    double (*get_lr)(tg_sched *s, int g, double lr);
    /* torch's _get_closed_form_lr, used by step(epoch); NULL where torch has none (get_lr is used) */
    double (*closed_form)(const tg_sched *s, double base);
    /* step() when it is not "last_epoch + 1, then get_lr for every group"; NULL: that */
    void (*step)(tg_sched *s);
    /* step(epoch) when it is not "last_epoch = epoch, then the closed form"; NULL: that */
    void (*step_to)(tg_sched *s, int64_t epoch);
    bool needs_metric; /* stepped by tg_sched_step_metric only (plateau) */
    bool composite;    /* made of other schedules (sequential, chained) */
    /* counters of its own that a checkpoint must carry (beyond last_epoch); SCHED_EXTRA(array) */
    const tg_sched_extra *extra;
    int n_extra;
} sched_row;

/* .extra and .n_extra of a row from a static array of its counters */
#define SCHED_EXTRA(fields) .extra = (fields), .n_extra = (int)(sizeof(fields) / sizeof((fields)[0]))
/* one counter of struct tg_sched: it must be an int64_t (anything else does not build) */
#define SCHED_COUNTER(field, positive) \
    {#field, positive, _Generic(((struct tg_sched *)0)->field, int64_t: offsetof(struct tg_sched, field))}

static const sched_row *row_of(tg_sched_kind kind);
static void step_to_epoch(tg_sched *s, int64_t epoch);

/* Writes the lr of every group the schedule knows. */
static void apply(tg_sched *s, bool closed) {
    const sched_row *r = row_of(s->kind);
    int n = s->n_base < s->opt->n_groups ? s->n_base : s->opt->n_groups;
    for (int g = 0; g < n; g++) {
        double lr = s->opt->groups[g].opts.lr;
        lr = closed ? r->closed_form(s, s->base[g]) : r->get_lr(s, g, lr);
        s->opt->groups[g].opts.lr = lr > 0 ? lr : 0.0; /* never negative (e.g. base < eta_min rounding) */
    }
}

/* StepLR */
static double step_get_lr(tg_sched *s, int g, double lr) {
    (void)g;
    const int64_t e = s->last_epoch;
    return e == 0 || e % s->step_size != 0 ? lr : lr * s->gamma;
}
static double step_closed(const tg_sched *s, double base) {
    return base * pow(s->gamma, (double)(s->last_epoch / s->step_size));
}
static const sched_row row_step = {.get_lr = step_get_lr, .closed_form = step_closed};

/* MultiStepLR */
static double multistep_get_lr(tg_sched *s, int g, double lr) {
    (void)g;
    int count = 0; /* milestones[e] of torch's Counter */
    for (int i = 0; i < s->n_milestones; i++) count += s->milestones[i] == s->last_epoch;
    return count == 0 ? lr : lr * pow(s->gamma, (double)count);
}
static double multistep_closed(const tg_sched *s, double base) {
    int passed = 0; /* bisect_right(milestones, e) */
    while (passed < s->n_milestones && s->milestones[passed] <= s->last_epoch) passed++;
    return base * pow(s->gamma, (double)passed);
}
static const sched_row row_multistep = {.get_lr = multistep_get_lr, .closed_form = multistep_closed};

/* ExponentialLR */
static double exponential_get_lr(tg_sched *s, int g, double lr) {
    (void)g;
    return s->last_epoch == 0 ? lr : lr * s->gamma;
}
static double exponential_closed(const tg_sched *s, double base) { return base * pow(s->gamma, (double)s->last_epoch); }
static const sched_row row_exponential = {.get_lr = exponential_get_lr, .closed_form = exponential_closed};

/* CosineAnnealingLR */
static double cosine_get_lr(tg_sched *s, int g, double lr) {
    const int64_t e = s->last_epoch;
    const double T = (double)s->T_max, base = s->base[g];
    if (e == 0) return lr;
    if (py_mod(e - 1 - s->T_max, 2 * s->T_max) == 0) return lr + (base - s->eta_min) * (1 - cos(M_PI / T)) / 2;
    return (1 + cos(M_PI * (double)e / T)) / (1 + cos(M_PI * (double)(e - 1) / T)) * (lr - s->eta_min) + s->eta_min;
}
static double cosine_closed(const tg_sched *s, double base) {
    return s->eta_min + (base - s->eta_min) * (1 + cos(M_PI * (double)s->last_epoch / (double)s->T_max)) / 2;
}
static const sched_row row_cosine = {.get_lr = cosine_get_lr, .closed_form = cosine_closed};

/* LinearLR */
static double linear_get_lr(tg_sched *s, int g, double lr) {
    (void)g;
    const int64_t e = s->last_epoch;
    if (e == 0) return lr * s->start_factor;
    if (e > s->total_iters) return lr;
    return lr * (1. + (s->end_factor - s->start_factor) /
                          ((double)s->total_iters * s->start_factor + (double)(e - 1) * (s->end_factor - s->start_factor)));
}
static double linear_closed(const tg_sched *s, double base) {
    const int64_t e = s->last_epoch, k = e < s->total_iters ? e : s->total_iters;
    return base * (s->start_factor + (s->end_factor - s->start_factor) * (double)k / (double)s->total_iters);
}
static const sched_row row_linear = {.get_lr = linear_get_lr, .closed_form = linear_closed};

/* ReduceLROnPlateau: tg_sched_step_metric below */
static void plateau_step(tg_sched *s) {
    (void)s;
    tg_error("tg_sched_step", "a plateau schedule needs the metric: use tg_sched_step_metric");
}
static const sched_row row_plateau = {.step = plateau_step, .needs_metric = true};

/* LambdaLR, MultiplicativeLR */
static double lambda_get_lr(tg_sched *s, int g, double lr) {
    (void)lr;
    return s->base[g] * s->lambda(s->last_epoch, g, s->lambda_user);
}
static const sched_row row_lambda = {.get_lr = lambda_get_lr};
static double multiplicative_get_lr(tg_sched *s, int g, double lr) {
    return s->last_epoch > 0 ? lr * s->lambda(s->last_epoch, g, s->lambda_user) : lr;
}
static const sched_row row_multiplicative = {.get_lr = multiplicative_get_lr};

/* OneCycleLR */
static double onecycle_get_lr(tg_sched *s, int g, double lr) {
    (void)lr;
    return onecycle_lr(s, g);
}
static void onecycle_step(tg_sched *s) {
    if (s->last_epoch + 1 > s->onecycle.total_steps) {
        tg_error("tg_sched_step", "one-cycle schedule: tried to step %lld times, total_steps is %lld",
                 (long long)(s->last_epoch + 2), (long long)s->onecycle.total_steps);
        return;
    }
    s->last_epoch++;
    apply(s, false);
}
static const sched_row row_onecycle = {.get_lr = onecycle_get_lr, .step = onecycle_step};

/* CyclicLR */
static double cyclic_get_lr(tg_sched *s, int g, double lr) {
    (void)lr;
    return cyclic_lr(s, g);
}
static const sched_row row_cyclic = {.get_lr = cyclic_get_lr};

/* CosineAnnealingWarmRestarts */
static double warm_restarts_get_lr(tg_sched *s, int g, double lr) {
    (void)lr;
    return s->eta_min + (s->base[g] - s->eta_min) * (1 + cos(M_PI * (double)s->T_cur / (double)s->T_i)) / 2;
}
/* torch's CosineAnnealingWarmRestarts.step(epoch) with an integer epoch (torch's float logarithm,
 * replaced by integer arithmetic; SequentialLR only ever restarts at 0). */
static void warm_restarts_to(tg_sched *s, int64_t epoch) {
    if (epoch >= s->T_0) {
        if (s->T_mult == 1) {
            s->T_cur = epoch % s->T_0;
        } else { /* the restart in which epoch falls */
            int64_t start = 0, len = s->T_0;
            while (epoch - start >= len) { start += len; len *= s->T_mult; }
            s->T_cur = epoch - start;
            s->T_i = len;
        }
    } else {
        s->T_i = s->T_0;
        s->T_cur = epoch;
    }
    s->last_epoch = epoch;
    apply(s, false);
}
static void warm_restarts_step(tg_sched *s) {
    if (s->last_epoch < 0) { warm_restarts_to(s, 0); return; }
    s->last_epoch++;
    if (++s->T_cur >= s->T_i) {
        s->T_cur -= s->T_i;
        s->T_i *= s->T_mult;
    }
    apply(s, false);
}
static const tg_sched_extra warm_restarts_extra[] = {SCHED_COUNTER(T_cur, false), SCHED_COUNTER(T_i, true)};
_Static_assert(sizeof warm_restarts_extra / sizeof warm_restarts_extra[0] <= TG_SCHED_MAX_EXTRA,
               "warm_restarts_extra: more counters than TG_SCHED_MAX_EXTRA");
static const sched_row row_warm_restarts = {.get_lr = warm_restarts_get_lr, .step = warm_restarts_step,
                                            .step_to = warm_restarts_to, SCHED_EXTRA(warm_restarts_extra)};

/* SequentialLR */
static void sequential_step(tg_sched *s) {
    s->last_epoch++;
    int idx = 0; /* bisect_right(milestones, last_epoch) */
    while (idx < s->n_milestones && s->milestones[idx] <= s->last_epoch) idx++;
    if (idx > 0 && s->milestones[idx - 1] == s->last_epoch) step_to_epoch(s->members[idx], 0);
    else tg_sched_step(s->members[idx]);
}
static const sched_row row_sequential = {.step = sequential_step, .composite = true};

/* ChainedScheduler */
static void chained_step(tg_sched *s) {
    for (int k = 0; k < s->n_members; k++) tg_sched_step(s->members[k]);
    s->last_epoch++;
}
static const sched_row row_chained = {.step = chained_step, .composite = true};

static const sched_row *const sched_rows[TG_SCHED_KIND_COUNT] = {
#define SCHED_ROW(K, name) [TG_SCHED_##K] = &row_##name,
    TG_SCHED_KINDS(SCHED_ROW)
#undef SCHED_ROW
};

static const sched_row *row_of(tg_sched_kind kind) { return sched_rows[kind]; }

/* (optim_internal.h) */
int tg__sched_extra(tg_sched_kind kind, const tg_sched_extra **fields) {
    const sched_row *r = (unsigned)kind < TG_SCHED_KIND_COUNT ? sched_rows[kind] : NULL;
    *fields = r ? r->extra : NULL;
    return r && r->n_extra <= TG_SCHED_MAX_EXTRA ? r->n_extra : 0;
}

/* The extra counter `f` of s. */
static int64_t *extra_at(const tg_sched *s, const tg_sched_extra *f) {
    return (int64_t *)(uintptr_t)((const char *)s + f->offset);
}

/* (optim_internal.h) */
bool tg__sched_has_row(tg_sched_kind kind) {
    const sched_row *r = (unsigned)kind < TG_SCHED_KIND_COUNT ? sched_rows[kind] : NULL;
    return r && (r->get_lr || r->step);
}

/* torch's step(epoch): SequentialLR's restart of a member at epoch 0. */
static void step_to_epoch(tg_sched *s, int64_t epoch) {
    const sched_row *r = row_of(s->kind);
    if (r->step_to) { r->step_to(s, epoch); return; }
    s->last_epoch = epoch;
    apply(s, r->closed_form != NULL);
}

static tg_sched *sched_new(const char *fn, tg_optim *opt, tg_sched_kind kind) {
    if (!opt) { tg_error(fn, "optimizer is NULL"); return NULL; }
    tg_sched *s = tg_calloc(1, sizeof *s);
    if (!s) { tg_error(fn, "out of memory"); return NULL; }
    s->kind = kind;
    s->opt = opt;
    s->last_epoch = -1;
    s->momentum_field = -1;
    s->n_base = opt->n_groups;
    s->base = tg_calloc((size_t)(s->n_base ? s->n_base : 1), sizeof *s->base);
    if (!s->base) { tg_error(fn, "out of memory"); free(s); return NULL; }
    return s;
}

/* A per-group array: values[g] when values is given, else v for every group (torch's _format_param).
 * returns: malloc'd [n_base], or NULL after tg_error. */
static double *per_group(const char *fn, const tg_sched *s, const char *what, const double *values, double v) {
    double *a = tg_malloc((size_t)(s->n_base ? s->n_base : 1) * sizeof *a);
    if (!a) { tg_error(fn, "out of memory"); return NULL; }
    for (int g = 0; g < s->n_base; g++) {
        a[g] = values ? values[g] : v;
        if (!(a[g] >= 0 && isfinite(a[g]))) {
            tg_error(fn, "%s %g (group %d) must be finite and >= 0", what, a[g], g);
            free(a);
            return NULL;
        }
    }
    return a;
}

/* torch's LRScheduler.__init__: initial_lr = lr where not set yet, base_lrs = initial_lr, then one
 * step to epoch 0. */
static tg_sched *start(tg_sched *s) {
    for (int g = 0; g < s->opt->n_groups; g++)
        if (isnan(s->opt->groups[g].initial_lr)) s->opt->groups[g].initial_lr = s->opt->groups[g].opts.lr;
    for (int g = 0; g < s->n_base; g++) s->base[g] = s->opt->groups[g].initial_lr;
    tg_sched_step(s);
    return s;
}

tg_sched *tg_sched_step_lr(tg_optim *opt, int64_t step_size, double gamma) {
    const char *fn = "tg_sched_step_lr";
    if (step_size <= 0) { tg_error(fn, "step_size %lld must be > 0", (long long)step_size); return NULL; }
    if (!(gamma >= 0 && isfinite(gamma))) { tg_error(fn, "gamma %g must be finite and >= 0", gamma); return NULL; }
    tg_sched *s = sched_new(fn, opt, TG_SCHED_STEP);
    if (!s) return NULL;
    s->step_size = step_size;
    s->gamma = gamma;
    return start(s);
}

static int cmp_i64(const void *a, const void *b) {
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

tg_sched *tg_sched_multistep(tg_optim *opt, int n, const int64_t *milestones, double gamma) {
    const char *fn = "tg_sched_multistep";
    if (n < 0 || (n > 0 && !milestones)) { tg_error(fn, "%d milestones at %p", n, (const void *)milestones); return NULL; }
    if (!(gamma >= 0 && isfinite(gamma))) { tg_error(fn, "gamma %g must be finite and >= 0", gamma); return NULL; }
    tg_sched *s = sched_new(fn, opt, TG_SCHED_MULTISTEP);
    if (!s) return NULL;
    s->milestones = tg_malloc((size_t)(n ? n : 1) * sizeof *s->milestones);
    if (!s->milestones) { tg_error(fn, "out of memory"); tg_sched_free(s); return NULL; /* s->base too */ }
    if (n) memcpy(s->milestones, milestones, (size_t)n * sizeof *milestones);
    qsort(s->milestones, (size_t)n, sizeof *s->milestones, cmp_i64);
    s->n_milestones = n;
    s->gamma = gamma;
    return start(s);
}

tg_sched *tg_sched_exponential(tg_optim *opt, double gamma) {
    const char *fn = "tg_sched_exponential";
    if (!(gamma >= 0 && isfinite(gamma))) { tg_error(fn, "gamma %g must be finite and >= 0", gamma); return NULL; }
    tg_sched *s = sched_new(fn, opt, TG_SCHED_EXPONENTIAL);
    if (!s) return NULL;
    s->gamma = gamma;
    return start(s);
}

tg_sched *tg_sched_cosine(tg_optim *opt, int64_t T_max, double eta_min) {
    const char *fn = "tg_sched_cosine";
    if (T_max <= 0) { tg_error(fn, "T_max %lld must be > 0", (long long)T_max); return NULL; }
    if (!(eta_min >= 0 && isfinite(eta_min))) { tg_error(fn, "eta_min %g must be finite and >= 0", eta_min); return NULL; }
    tg_sched *s = sched_new(fn, opt, TG_SCHED_COSINE);
    if (!s) return NULL;
    s->T_max = T_max;
    s->eta_min = eta_min;
    return start(s);
}

tg_sched *tg_sched_linear(tg_optim *opt, double start_factor, double end_factor, int64_t total_iters) {
    const char *fn = "tg_sched_linear";
    if (!(start_factor > 0 && start_factor <= 1)) {
        tg_error(fn, "start_factor %g must be in (0, 1]", start_factor);
        return NULL;
    }
    if (!(end_factor >= 0 && end_factor <= 1)) { tg_error(fn, "end_factor %g must be in [0, 1]", end_factor); return NULL; }
    if (total_iters <= 0) { tg_error(fn, "total_iters %lld must be > 0", (long long)total_iters); return NULL; }
    tg_sched *s = sched_new(fn, opt, TG_SCHED_LINEAR);
    if (!s) return NULL;
    s->start_factor = start_factor;
    s->end_factor = end_factor;
    s->total_iters = total_iters;
    return start(s);
}

tg_plateau_opts tg_plateau_defaults(void) {
    return (tg_plateau_opts){.mode_max = false, .factor = 0.1, .patience = 10, .threshold = 1e-4,
                             .threshold_abs = false, .cooldown = 0, .min_lr = 0.0, .eps = 1e-8};
}

tg_sched *tg_sched_plateau(tg_optim *opt, const tg_plateau_opts *opts) {
    const char *fn = "tg_sched_plateau";
    tg_plateau_opts o = opts ? *opts : tg_plateau_defaults();
    if (!(o.factor >= 0 && o.factor < 1)) { tg_error(fn, "factor %g must be in [0, 1)", o.factor); return NULL; }
    if (o.patience < 0 || o.cooldown < 0) {
        tg_error(fn, "patience %lld and cooldown %lld must be >= 0", (long long)o.patience, (long long)o.cooldown);
        return NULL;
    }
    if (!(o.threshold >= 0) || !(o.min_lr >= 0) || !(o.eps >= 0)) {
        tg_error(fn, "threshold %g, min_lr %g and eps %g must be >= 0", o.threshold, o.min_lr, o.eps);
        return NULL;
    }
    tg_sched *s = sched_new(fn, opt, TG_SCHED_PLATEAU);
    if (!s) return NULL;
    if (!(s->min_lrs = per_group(fn, s, "min_lr", o.min_lrs, o.min_lr))) { tg_sched_free(s); return NULL; }
    o.min_lrs = NULL; /* not kept: the copy is s->min_lrs */
    s->plateau = o;
    s->last_epoch = 0;
    s->best = o.mode_max ? -INFINITY : INFINITY;
    return s;
}

void tg_sched_step(tg_sched *s) {
    if (!s) { tg_error("tg_sched_step", "schedule is NULL"); return; }
    const sched_row *r = row_of(s->kind);
    if (r->step) { r->step(s); return; }
    s->last_epoch++;
    apply(s, false);
}

/* torch's ReduceLROnPlateau.is_better */
static bool is_better(const tg_plateau_opts *o, double a, double best) {
    if (!o->mode_max) return o->threshold_abs ? a < best - o->threshold : a < best * (1 - o->threshold);
    return o->threshold_abs ? a > best + o->threshold : a > best * (o->threshold + 1);
}

void tg_sched_step_metric(tg_sched *s, double metric) {
    if (!s) { tg_error("tg_sched_step_metric", "schedule is NULL"); return; }
    if (!row_of(s->kind)->needs_metric) { tg_sched_step(s); return; } /* epoch schedules ignore the metric */
    const tg_plateau_opts *o = &s->plateau;
    s->last_epoch++;
    if (is_better(o, metric, s->best)) {
        s->best = metric;
        s->num_bad_epochs = 0;
    } else {
        s->num_bad_epochs++;
    }
    if (s->cooldown_counter > 0) { /* in cooldown: bad epochs are not counted */
        s->cooldown_counter--;
        s->num_bad_epochs = 0;
    }
    if (s->num_bad_epochs > o->patience) {
        int n = s->n_base < s->opt->n_groups ? s->n_base : s->opt->n_groups;
        for (int g = 0; g < n; g++) {
            double old_lr = s->opt->groups[g].opts.lr;
            double new_lr = fmax(old_lr * o->factor, s->min_lrs[g]);
            if (old_lr - new_lr > o->eps) s->opt->groups[g].opts.lr = new_lr;
        }
        s->cooldown_counter = o->cooldown;
        s->num_bad_epochs = 0;
    }
}

int64_t tg_sched_epoch(const tg_sched *s) { return s ? s->last_epoch : -1; }

/* How many steps a schedule takes from its epoch 0 before it refuses one: OneCycleLR's total_steps. */
static int64_t step_limit(const tg_sched *s) { return s->kind == TG_SCHED_ONECYCLE ? s->onecycle.total_steps : INT64_MAX; }

int64_t tg_sched_steps_left(const tg_sched *s) {
    if (!s) return 0;
    int64_t left = INT64_MAX;
    if (s->kind == TG_SCHED_CHAINED) {
        for (int k = 0; k < s->n_members; k++) {
            int64_t lim = step_limit(s->members[k]);
            if (lim != INT64_MAX && lim - s->members[k]->last_epoch < left) left = lim - s->members[k]->last_epoch;
        }
    } else if (s->kind == TG_SCHED_SEQUENTIAL) {
        /* member k drives epochs [start, end), at its own epoch E - start (restarted at 0 at its milestone):
         * a limited member refuses the step to epoch start + limit + 1 if that comes before its end */
        for (int k = 0; k < s->n_members; k++) {
            int64_t lim = step_limit(s->members[k]), start = k ? s->milestones[k - 1] : 0;
            int64_t end = k < s->n_milestones ? s->milestones[k] : INT64_MAX;
            if (lim == INT64_MAX || start > INT64_MAX - lim - 1) continue;
            int64_t fails = start + lim + 1;
            if (fails < end && fails - 1 - s->last_epoch < left) left = fails - 1 - s->last_epoch; /* < 0: refused */
        }
    } else if (step_limit(s) != INT64_MAX) {
        left = step_limit(s) - s->last_epoch;
    }
    return left < 0 ? 0 : left;
}
tg_sched_kind tg_sched_kind_of(const tg_sched *s) { return s ? s->kind : TG_SCHED_KIND_COUNT; }

void tg_sched_free(tg_sched *s) {
    if (!s) return;
    free(s->milestones);
    free(s->base);
    free(s->hi);
    free(s->base_momentum);
    free(s->min_lrs);
    free(s);
}

/* ---- LambdaLR, MultiplicativeLR --------------------------------------------------------------- */

static tg_sched *lambda_new(const char *fn, tg_optim *opt, tg_sched_kind kind, tg_lr_lambda *f, void *user) {
    if (!f) { tg_error(fn, "the lambda is NULL"); return NULL; }
    tg_sched *s = sched_new(fn, opt, kind);
    if (!s) return NULL;
    s->lambda = f;
    s->lambda_user = user;
    return start(s);
}
tg_sched *tg_sched_lambda(tg_optim *opt, tg_lr_lambda *f, void *user) {
    return lambda_new("tg_sched_lambda", opt, TG_SCHED_LAMBDA, f, user);
}
tg_sched *tg_sched_multiplicative(tg_optim *opt, tg_lr_lambda *f, void *user) {
    return lambda_new("tg_sched_multiplicative", opt, TG_SCHED_MULTIPLICATIVE, f, user);
}

/* ---- OneCycleLR, CyclicLR ---------------------------------------------------------------------- */

/* The field a cycling schedule moves: beta1 when the optimizer has betas (torch's use_beta1) and
 * that is allowed, else momentum; -1 when it has neither. */
static int momentum_field_of(const tg_optim *opt, bool allow_beta1) {
    int beta1 = -1, momentum = -1;
    for (int i = 0; i < tg_optim_num_fields(); i++) {
        if (!tg_optim_kind_uses(opt->kind, i)) continue;
        if (strcmp(tg_optim_field_name(i), "beta1") == 0) beta1 = i;
        if (strcmp(tg_optim_field_name(i), "momentum") == 0) momentum = i;
    }
    return allow_beta1 && beta1 >= 0 ? beta1 : momentum;
}

tg_onecycle_opts tg_onecycle_defaults(double max_lr, int64_t total_steps) {
    return (tg_onecycle_opts){.max_lr = max_lr, .total_steps = total_steps, .pct_start = 0.3, .cycle_momentum = true,
                              .base_momentum = 0.85, .max_momentum = 0.95, .div_factor = 25., .final_div_factor = 1e4};
}

tg_sched *tg_sched_onecycle(tg_optim *opt, const tg_onecycle_opts *opts) {
    const char *fn = "tg_sched_onecycle";
    if (!opts) { tg_error(fn, "opts is NULL (start from tg_onecycle_defaults)"); return NULL; }
    tg_onecycle_opts o = *opts;
    if (o.total_steps <= 0) { tg_error(fn, "total_steps %lld must be > 0", (long long)o.total_steps); return NULL; }
    if (!(o.pct_start >= 0 && o.pct_start <= 1)) { tg_error(fn, "pct_start %g must be in [0, 1]", o.pct_start); return NULL; }
    if (!(o.div_factor > 0 && isfinite(o.div_factor)) || !(o.final_div_factor > 0 && isfinite(o.final_div_factor))) {
        tg_error(fn, "div_factor %g and final_div_factor %g must be finite and > 0", o.div_factor, o.final_div_factor);
        return NULL;
    }
    if (!isfinite(o.base_momentum) || !isfinite(o.max_momentum)) {
        tg_error(fn, "base_momentum %g and max_momentum %g must be finite", o.base_momentum, o.max_momentum);
        return NULL;
    }
    tg_sched *s = sched_new(fn, opt, TG_SCHED_ONECYCLE);
    if (!s) return NULL;
    if (o.cycle_momentum && (s->momentum_field = momentum_field_of(opt, true)) < 0) {
        tg_error(fn, "a %s optimizer has no momentum or beta1 to cycle: set cycle_momentum = false",
                 tg_optim_kind_name(opt->kind));
        tg_sched_free(s);
        return NULL;
    }
    if (!(s->hi = per_group(fn, s, "max_lr", o.max_lrs, o.max_lr))) { tg_sched_free(s); return NULL; }
    o.max_lrs = NULL; /* the copy is s->hi */
    s->onecycle = o;
    for (int g = 0; g < s->n_base; g++) { /* torch: initial_lr = max_lr / div_factor, momentum = max_momentum */
        tg_optim_group_rec *gr = &opt->groups[g];
        gr->initial_lr = s->hi[g] / o.div_factor;
        if (s->momentum_field >= 0) *field_ptr(&gr->opts, s->momentum_field) = o.max_momentum;
    }
    return start(s);
}

tg_cyclic_opts tg_cyclic_defaults(double base_lr, double max_lr) {
    return (tg_cyclic_opts){.base_lr = base_lr, .max_lr = max_lr, .step_size_up = 2000, .mode = TG_CYCLIC_TRIANGULAR,
                            .gamma = 1.0, .cycle_momentum = true, .base_momentum = 0.8, .max_momentum = 0.9};
}

tg_sched *tg_sched_cyclic(tg_optim *opt, const tg_cyclic_opts *opts) {
    const char *fn = "tg_sched_cyclic";
    if (!opts) { tg_error(fn, "opts is NULL (start from tg_cyclic_defaults)"); return NULL; }
    tg_cyclic_opts o = *opts;
    if (o.step_size_up <= 0 || o.step_size_down < 0) {
        tg_error(fn, "step_size_up %lld must be > 0 and step_size_down %lld >= 0 (0: = step_size_up)",
                 (long long)o.step_size_up, (long long)o.step_size_down);
        return NULL;
    }
    if ((unsigned)o.mode > TG_CYCLIC_EXP_RANGE) { tg_error(fn, "mode %d is not a tg_cyclic_mode", (int)o.mode); return NULL; }
    if (!(o.gamma > 0 && isfinite(o.gamma))) { tg_error(fn, "gamma %g must be finite and > 0", o.gamma); return NULL; }
    if (!isfinite(o.base_momentum) || !isfinite(o.max_momentum)) {
        tg_error(fn, "base_momentum %g and max_momentum %g must be finite", o.base_momentum, o.max_momentum);
        return NULL;
    }
    tg_sched *s = sched_new(fn, opt, TG_SCHED_CYCLIC);
    if (!s) return NULL;
    /* torch 1.13's CyclicLR cycles 'momentum' only (not Adam's betas) */
    if (o.cycle_momentum && (s->momentum_field = momentum_field_of(opt, false)) < 0) {
        tg_error(fn, "a %s optimizer has no momentum to cycle: set cycle_momentum = false",
                 tg_optim_kind_name(opt->kind));
        tg_sched_free(s);
        return NULL;
    }
    double *base = per_group(fn, s, "base_lr", o.base_lrs, o.base_lr);
    if (!base || !(s->hi = per_group(fn, s, "max_lr", o.max_lrs, o.max_lr)) ||
        (s->momentum_field >= 0 && !(s->base_momentum = per_group(fn, s, "base_momentum", NULL, o.base_momentum)))) {
        free(base);
        tg_sched_free(s);
        return NULL;
    }
    o.base_lrs = o.max_lrs = NULL;
    s->cyclic = o;
    double up = (double)o.step_size_up, down = o.step_size_down ? (double)o.step_size_down : up;
    s->total_size = up + down;
    s->step_ratio = up / s->total_size;
    for (int g = 0; g < s->n_base; g++) { /* torch: lr = base_lr, momentum = base_momentum at once */
        opt->groups[g].opts.lr = base[g];
        if (s->momentum_field >= 0) *field_ptr(&opt->groups[g].opts, s->momentum_field) = s->base_momentum[g];
    }
    /* torch: super().__init__ (initial_lr where unset, one step), then base_lrs = base_lr; the first
     * step only reads base_lrs through the values below, so they are put in place before it */
    for (int g = 0; g < opt->n_groups; g++)
        if (isnan(opt->groups[g].initial_lr)) opt->groups[g].initial_lr = opt->groups[g].opts.lr;
    memcpy(s->base, base, (size_t)s->n_base * sizeof *base);
    free(base);
    tg_sched_step(s);
    return s;
}

/* ---- CosineAnnealingWarmRestarts ---------------------------------------------------------------- */

tg_sched *tg_sched_warm_restarts(tg_optim *opt, int64_t T_0, int64_t T_mult, double eta_min) {
    const char *fn = "tg_sched_warm_restarts";
    if (T_0 <= 0 || T_mult < 1) {
        tg_error(fn, "T_0 %lld must be > 0 and T_mult %lld >= 1", (long long)T_0, (long long)T_mult);
        return NULL;
    }
    if (!(eta_min >= 0 && isfinite(eta_min))) { tg_error(fn, "eta_min %g must be finite and >= 0", eta_min); return NULL; }
    tg_sched *s = sched_new(fn, opt, TG_SCHED_WARM_RESTARTS);
    if (!s) return NULL;
    s->T_0 = s->T_i = T_0;
    s->T_mult = T_mult;
    s->eta_min = eta_min;
    s->T_cur = -1;
    return start(s);
}

/* ---- SequentialLR, ChainedScheduler ------------------------------------------------------------- */

static bool members_ok(const char *fn, const tg_optim *opt, int n, tg_sched *const *members) {
    if (n < 1 || n > TG_SCHED_MAX_MEMBERS || !members) {
        tg_error(fn, "%d schedules at %p: between 1 and %d are needed", n, (const void *)members, TG_SCHED_MAX_MEMBERS);
        return false;
    }
    for (int k = 0; k < n; k++) {
        const tg_sched *m = members[k];
        if (!m) { tg_error(fn, "schedule %d is NULL", k); return false; }
        if (row_of(m->kind)->composite || row_of(m->kind)->needs_metric) {
            tg_error(fn, "schedule %d is a %s schedule, which cannot be a member", k, tg_sched_kind_name(m->kind));
            return false;
        }
        if (m->opt != (opt ? opt : members[0]->opt)) {
            tg_error(fn, "schedule %d belongs to another optimizer", k);
            return false;
        }
        for (int j = 0; j < k; j++)
            if (members[j] == m) { tg_error(fn, "schedule %d is also schedule %d", k, j); return false; }
    }
    return true;
}

tg_sched *tg_sched_sequential(tg_optim *opt, int n, tg_sched *const *members, const int64_t *milestones) {
    const char *fn = "tg_sched_sequential";
    if (!opt) { tg_error(fn, "optimizer is NULL"); return NULL; }
    if (!members_ok(fn, opt, n, members)) return NULL;
    if (n > 1 && !milestones) { tg_error(fn, "%d schedules need %d milestones, got NULL", n, n - 1); return NULL; }
    for (int k = 1; k + 1 < n; k++)
        if (milestones[k] <= milestones[k - 1]) {
            tg_error(fn, "milestones must increase: milestone %d = %lld after %lld", k, (long long)milestones[k],
                     (long long)milestones[k - 1]);
            return NULL;
        }
    tg_sched *s = sched_new(fn, opt, TG_SCHED_SEQUENTIAL);
    if (!s) return NULL;
    s->milestones = tg_malloc((size_t)(n > 1 ? n - 1 : 1) * sizeof *s->milestones);
    if (!s->milestones) { tg_error(fn, "out of memory"); tg_sched_free(s); return NULL; }
    if (n > 1) memcpy(s->milestones, milestones, (size_t)(n - 1) * sizeof *milestones);
    s->n_milestones = n - 1;
    s->n_members = n;
    memcpy(s->members, members, (size_t)n * sizeof *members);
    s->last_epoch = 0;
    /* torch: reset lr to initial_lr, undo the members' initial steps, the first one's initial step */
    for (int g = 0; g < opt->n_groups; g++) opt->groups[g].opts.lr = opt->groups[g].initial_lr;
    for (int k = 0; k < n; k++) members[k]->last_epoch--;
    tg_sched_step(members[0]); /* (a warm-restarts member at last_epoch -1 restarts at 0, as in torch) */
    return s;
}

tg_sched *tg_sched_chained(int n, tg_sched *const *members) {
    const char *fn = "tg_sched_chained";
    if (!members_ok(fn, NULL, n, members)) return NULL;
    tg_sched *s = sched_new(fn, members[0]->opt, TG_SCHED_CHAINED);
    if (!s) return NULL;
    s->n_members = n;
    memcpy(s->members, members, (size_t)n * sizeof *members);
    s->last_epoch = 0;
    return s;
}


void tg__sched_get_state(const tg_sched *s, tg_sched_state *st) {
    *st = (tg_sched_state){.kind = s->kind, .last_epoch = s->last_epoch, .best = s->best,
                           .num_bad_epochs = s->num_bad_epochs, .cooldown_counter = s->cooldown_counter,
                           .n_members = s->n_members};
    const sched_row *r = row_of(s->kind);
    for (int j = 0; j < r->n_extra; j++) st->extra[j] = *extra_at(s, &r->extra[j]);
    for (int k = 0; k < s->n_members; k++) {
        const tg_sched *m = s->members[k];
        const sched_row *mr = row_of(m->kind);
        st->members[k] = (tg_sched_member_state){.kind = m->kind, .last_epoch = m->last_epoch};
        for (int j = 0; j < mr->n_extra; j++) st->members[k].extra[j] = *extra_at(m, &mr->extra[j]);
    }
}

void tg__sched_set_state(tg_sched *s, const tg_sched_state *st) {
    s->last_epoch = st->last_epoch;
    s->best = st->best;
    s->num_bad_epochs = st->num_bad_epochs;
    s->cooldown_counter = st->cooldown_counter;
    const sched_row *r = row_of(s->kind);
    for (int j = 0; j < r->n_extra; j++) *extra_at(s, &r->extra[j]) = st->extra[j];
    for (int k = 0; k < s->n_members && k < st->n_members; k++) {
        tg_sched *m = s->members[k];
        const sched_row *mr = row_of(m->kind);
        m->last_epoch = st->members[k].last_epoch;
        for (int j = 0; j < mr->n_extra; j++) *extra_at(m, &mr->extra[j]) = st->members[k].extra[j];
    }
}
