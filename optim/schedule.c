/* optim/schedule.c - learning-rate schedules (torch.optim.lr_scheduler): StepLR, MultiStepLR,
 * ExponentialLR, CosineAnnealingLR, LinearLR and ReduceLROnPlateau.
 *
 * Epoch schedules use torch's closed forms (`_get_closed_form_lr`) from the group's initial_lr, so the
 * lr at epoch e depends only on e: a schedule restored from a checkpoint continues exactly. torch's
 * default step() uses the equivalent recursive ("chainable") forms, which agree to rounding. */
#include "optim/optim_internal.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

struct tg_sched {
    tg_sched_kind kind;
    tg_optim *opt;            /* borrowed */
    int64_t last_epoch;       /* torch's last_epoch: 0 after construction */
    int64_t step_size;        /* STEP */
    double gamma;             /* STEP, MULTISTEP, EXPONENTIAL */
    int64_t *milestones;      /* MULTISTEP, sorted, [n_milestones] (duplicates count twice, like torch) */
    int n_milestones;
    int64_t T_max;            /* COSINE */
    double eta_min;           /* COSINE */
    double start_factor, end_factor; /* LINEAR */
    int64_t total_iters;      /* LINEAR */
    tg_plateau_opts plateau;  /* PLATEAU */
    double best;              /* PLATEAU: best metric so far */
    int64_t num_bad_epochs;   /* PLATEAU */
    int64_t cooldown_counter; /* PLATEAU */
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

static double closed_form_lr(const tg_sched *s, double base) {
    const int64_t e = s->last_epoch;
    switch (s->kind) {
    case TG_SCHED_STEP: return base * pow(s->gamma, (double)(e / s->step_size));
    case TG_SCHED_MULTISTEP: {
        int passed = 0; /* bisect_right(milestones, e) */
        while (passed < s->n_milestones && s->milestones[passed] <= e) passed++;
        return base * pow(s->gamma, (double)passed);
    }
    case TG_SCHED_EXPONENTIAL: return base * pow(s->gamma, (double)e);
    case TG_SCHED_COSINE:
        return s->eta_min + (base - s->eta_min) * (1 + cos(M_PI * (double)e / (double)s->T_max)) / 2;
    case TG_SCHED_LINEAR: {
        int64_t k = e < s->total_iters ? e : s->total_iters;
        return base * (s->start_factor + (s->end_factor - s->start_factor) * (double)k / (double)s->total_iters);
    }
    default: return base;
    }
}

static void apply(tg_sched *s) {
    for (int g = 0; g < s->opt->n_groups; g++) {
        double lr = closed_form_lr(s, s->opt->groups[g].initial_lr);
        s->opt->groups[g].opts.lr = lr > 0 ? lr : 0.0; /* never negative (e.g. base < eta_min rounding) */
    }
}

static tg_sched *sched_new(const char *fn, tg_optim *opt, tg_sched_kind kind) {
    if (!opt) { tg_error(fn, "optimizer is NULL"); return NULL; }
    tg_sched *s = calloc(1, sizeof *s);
    if (!s) { tg_error(fn, "out of memory"); return NULL; }
    s->kind = kind;
    s->opt = opt;
    s->last_epoch = -1;
    return s;
}

/* torch's LRScheduler.__init__: initial_lr = lr where not set yet, then one step to epoch 0. */
static tg_sched *start(tg_sched *s) {
    for (int g = 0; g < s->opt->n_groups; g++)
        if (isnan(s->opt->groups[g].initial_lr)) s->opt->groups[g].initial_lr = s->opt->groups[g].opts.lr;
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
    s->milestones = malloc((size_t)(n ? n : 1) * sizeof *s->milestones);
    if (!s->milestones) { tg_error(fn, "out of memory"); free(s); return NULL; }
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
    s->plateau = o;
    s->last_epoch = 0;
    s->best = o.mode_max ? -INFINITY : INFINITY;
    return s;
}

void tg_sched_step(tg_sched *s) {
    if (!s) { tg_error("tg_sched_step", "schedule is NULL"); return; }
    if (s->kind == TG_SCHED_PLATEAU) {
        tg_error("tg_sched_step", "a plateau schedule needs the metric: use tg_sched_step_metric");
        return;
    }
    s->last_epoch++;
    apply(s);
}

/* torch's ReduceLROnPlateau.is_better */
static bool is_better(const tg_plateau_opts *o, double a, double best) {
    if (!o->mode_max) return o->threshold_abs ? a < best - o->threshold : a < best * (1 - o->threshold);
    return o->threshold_abs ? a > best + o->threshold : a > best * (o->threshold + 1);
}

void tg_sched_step_metric(tg_sched *s, double metric) {
    if (!s) { tg_error("tg_sched_step_metric", "schedule is NULL"); return; }
    if (s->kind != TG_SCHED_PLATEAU) { tg_sched_step(s); return; } /* epoch schedules ignore the metric */
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
        for (int g = 0; g < s->opt->n_groups; g++) {
            double old_lr = s->opt->groups[g].opts.lr;
            double new_lr = fmax(old_lr * o->factor, o->min_lr);
            if (old_lr - new_lr > o->eps) s->opt->groups[g].opts.lr = new_lr;
        }
        s->cooldown_counter = o->cooldown;
        s->num_bad_epochs = 0;
    }
}

int64_t tg_sched_epoch(const tg_sched *s) { return s ? s->last_epoch : -1; }
tg_sched_kind tg_sched_kind_of(const tg_sched *s) { return s ? s->kind : TG_SCHED_KIND_COUNT; }

void tg_sched_free(tg_sched *s) {
    if (!s) return;
    free(s->milestones);
    free(s);
}

void tg__sched_get_state(const tg_sched *s, tg_sched_state *st) {
    *st = (tg_sched_state){.kind = s->kind, .last_epoch = s->last_epoch, .best = s->best,
                           .num_bad_epochs = s->num_bad_epochs, .cooldown_counter = s->cooldown_counter};
}

void tg__sched_set_state(tg_sched *s, const tg_sched_state *st) {
    s->last_epoch = st->last_epoch;
    s->best = st->best;
    s->num_bad_epochs = st->num_bad_epochs;
    s->cooldown_counter = st->cooldown_counter;
}
