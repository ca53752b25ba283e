/* optim/sched_spec.c - schedules written as text ("cosine:T_max=100,eta_min=1e-5"), for command lines
 * and configuration files (optim.h, "schedules from text"). Each kind a spec can name is one row of
 * spec_rows below: its arguments under torch's names, their kinds, defaults and ranges. The parser, the
 * canonical form saved in checkpoints and the help text are all made from these rows. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <tapegrad/optim.h>
#include <tapegrad/tensor.h>

enum { A_INT, A_REAL, A_LIST, A_CHOICE, A_BOOL };
enum { D_VALUE, D_REQUIRED, D_LENGTH, D_METRIC }; /* where a default comes from */
#define MAX_ARGS 11
#define MAX_LIST 64

typedef struct spec_arg {
    const char *name;
    int type;
    int def_from;       /* D_VALUE: def; D_REQUIRED: none; D_LENGTH: the run's length; D_METRIC: mode_max */
    double def, lo, hi; /* value in [lo, hi] (A_INT, A_REAL, A_LIST items) */
    bool lo_open;       /* (lo, hi] instead */
    const char *choices;/* A_CHOICE: "a|b|c", the value is the index */
} spec_arg;

typedef struct spec_row {
    tg_sched_kind kind;
    bool per_step;      /* torch steps it after every batch (OneCycleLR, CyclicLR) */
    spec_arg args[MAX_ARGS];
} spec_row;

#define BIG 1e18
/* an argument in [lo, hi], one in (lo, hi], one of choices "a|b" (its index) */
#define ARG(name, type, from, def, lo, hi) {name, type, from, def, lo, hi, false, NULL}
#define ARG_GT(name, type, from, def, lo, hi) {name, type, from, def, lo, hi, true, NULL}
#define CHOICE(name, from, def, choices) {name, A_CHOICE, from, def, 0, 0, false, choices}
#define BOOL(name, def) {name, A_BOOL, D_VALUE, def, 0, 1, false, NULL}
static const spec_row spec_rows[] = {
    {TG_SCHED_STEP, false, {ARG("step_size", A_INT, D_REQUIRED, 0, 1, BIG), ARG("gamma", A_REAL, D_VALUE, 0.1, 0, BIG)}},
    {TG_SCHED_MULTISTEP, false,
     {ARG("milestones", A_LIST, D_REQUIRED, 0, 1, BIG), ARG("gamma", A_REAL, D_VALUE, 0.1, 0, BIG)}},
    {TG_SCHED_EXPONENTIAL, false, {ARG("gamma", A_REAL, D_REQUIRED, 0, 0, BIG)}},
    {TG_SCHED_COSINE, false, {ARG("T_max", A_INT, D_LENGTH, 0, 1, BIG), ARG("eta_min", A_REAL, D_VALUE, 0, 0, BIG)}},
    {TG_SCHED_LINEAR, false,
     {ARG_GT("start_factor", A_REAL, D_VALUE, 1.0 / 3, 0, 1), ARG("end_factor", A_REAL, D_VALUE, 1, 0, 1),
      ARG("total_iters", A_INT, D_VALUE, 5, 1, BIG)}},
    {TG_SCHED_PLATEAU, false,
     {CHOICE("mode", D_METRIC, 0, "min|max"), ARG("factor", A_REAL, D_VALUE, 0.1, 0, 1 - 1e-12),
      ARG("patience", A_INT, D_VALUE, 10, 0, BIG), ARG("threshold", A_REAL, D_VALUE, 1e-4, 0, BIG),
      CHOICE("threshold_mode", D_VALUE, 0, "rel|abs"), ARG("cooldown", A_INT, D_VALUE, 0, 0, BIG),
      ARG("min_lr", A_REAL, D_VALUE, 0, 0, BIG), ARG("eps", A_REAL, D_VALUE, 1e-8, 0, BIG)}},
    {TG_SCHED_ONECYCLE, true,
     {ARG_GT("max_lr", A_REAL, D_REQUIRED, 0, 0, BIG), ARG("total_steps", A_INT, D_LENGTH, 0, 1, BIG),
      ARG("pct_start", A_REAL, D_VALUE, 0.3, 0, 1), CHOICE("anneal_strategy", D_VALUE, 0, "cos|linear"),
      BOOL("cycle_momentum", 1), ARG("base_momentum", A_REAL, D_VALUE, 0.85, -BIG, BIG),
      ARG("max_momentum", A_REAL, D_VALUE, 0.95, -BIG, BIG), ARG_GT("div_factor", A_REAL, D_VALUE, 25, 0, BIG),
      ARG_GT("final_div_factor", A_REAL, D_VALUE, 1e4, 0, BIG), BOOL("three_phase", 0)}},
    {TG_SCHED_CYCLIC, true,
     {ARG("base_lr", A_REAL, D_REQUIRED, 0, 0, BIG), ARG("max_lr", A_REAL, D_REQUIRED, 0, 0, BIG),
      ARG("step_size_up", A_INT, D_VALUE, 2000, 1, BIG), ARG("step_size_down", A_INT, D_VALUE, 0, 0, BIG),
      CHOICE("mode", D_VALUE, 0, "triangular|triangular2|exp_range"), ARG_GT("gamma", A_REAL, D_VALUE, 1, 0, BIG),
      BOOL("cycle_momentum", 1), ARG("base_momentum", A_REAL, D_VALUE, 0.8, -BIG, BIG),
      ARG("max_momentum", A_REAL, D_VALUE, 0.9, -BIG, BIG)}},
    {TG_SCHED_WARM_RESTARTS, false,
     {ARG("T_0", A_INT, D_REQUIRED, 0, 1, BIG), ARG("T_mult", A_INT, D_VALUE, 1, 1, BIG),
      ARG("eta_min", A_REAL, D_VALUE, 0, 0, BIG)}},
};
#define N_ROWS ((int)(sizeof spec_rows / sizeof spec_rows[0]))

static const spec_row *row_of(tg_sched_kind kind) {
    for (int r = 0; r < N_ROWS; r++)
        if (spec_rows[r].kind == kind) return &spec_rows[r];
    return NULL;
}

static int n_args(const spec_row *row) {
    int n = 0;
    while (n < MAX_ARGS && row->args[n].name) n++;
    return n;
}

/* The parsed values of one spec. */
typedef struct parsed {
    const spec_row *row;
    double v[MAX_ARGS];
    bool given[MAX_ARGS];
    int64_t list[MAX_LIST];
    int n_list;
} parsed;

static bool choice_index(const char *choices, const char *s, size_t len, int *out) {
    int k = 0;
    for (const char *p = choices; *p; k++) {
        const char *bar = strchr(p, '|');
        size_t n = bar ? (size_t)(bar - p) : strlen(p);
        if (n == len && strncmp(p, s, len) == 0) { *out = k; return true; }
        if (!bar) break;
        p = bar + 1;
    }
    return false;
}

static void choice_name(const char *choices, int k, char *out, size_t n) {
    const char *p = choices;
    for (int i = 0; i < k && p; i++) p = strchr(p, '|') ? strchr(p, '|') + 1 : NULL;
    size_t len = p ? (strchr(p, '|') ? (size_t)(strchr(p, '|') - p) : strlen(p)) : 0;
    snprintf(out, n, "%.*s", (int)len, p ? p : "");
}

static const char *FN = "tg_sched_spec";

/* One number of arg a from s[0..len): into *out, or a message. */
static int read_number(const char *kind, const spec_arg *a, const char *s, size_t len, double *out) {
    char buf[64];
    if (len == 0 || len >= sizeof buf) {
        tg_error_quiet(FN, "%s: %s needs a value (%s=NUMBER)", kind, a->name, a->name);
        return -1;
    }
    memcpy(buf, s, len);
    buf[len] = 0;
    char *end;
    double v = strtod(buf, &end);
    bool integral = a->type != A_REAL;
    if (end == buf || *end || !isfinite(v) || (integral && v != floor(v))) {
        tg_error_quiet(FN, "%s: %s '%s' is not %s", kind, a->name, buf, integral ? "an integer" : "a number");
        return -1;
    }
    if (v > a->hi || (a->lo_open ? v <= a->lo : v < a->lo)) {
        char hi[32] = "";
        if (a->hi < BIG) snprintf(hi, sizeof hi, a->hi == 1 - 1e-12 ? ", below 1" : ", at most %g", a->hi);
        tg_error_quiet(FN, "%s: %s %s must be %s %g%s", kind, a->name, buf, a->lo_open ? ">" : ">=", a->lo, hi);
        return -1;
    }
    *out = v;
    return 0;
}

static int parse(const char *spec, int64_t length, bool mode_max, parsed *p) {
    memset(p, 0, sizeof *p);
    if (!spec || !*spec) { tg_error_quiet(FN, "the schedule is empty (give KIND[:name=value,...])"); return -1; }
    const char *colon = strchr(spec, ':');
    size_t klen = colon ? (size_t)(colon - spec) : strlen(spec);
    char kind[32];
    snprintf(kind, sizeof kind, "%.*s", (int)(klen < sizeof kind ? klen : sizeof kind - 1), spec);
    tg_sched_kind k = klen < sizeof kind ? tg_sched_kind_from_name(kind) : TG_SCHED_KIND_COUNT;
    char list[200];
    if (k == TG_SCHED_KIND_COUNT || !(p->row = row_of(k))) {
        if (k != TG_SCHED_KIND_COUNT)
            tg_error_quiet(FN, "schedule '%s' needs C (a callback or member schedules), not text (from text: %s)", kind,
                           tg_sched_spec_list(list, sizeof list, ", "));
        else tg_error_quiet(FN, "unknown schedule '%s' (known: %s)", kind, tg_sched_spec_list(list, sizeof list, ", "));
        return -1;
    }
    const spec_row *row = p->row;
    const int na = n_args(row);
    int last = -1; /* the argument a bare value continues (a list) */
    for (const char *s = colon ? colon + 1 : NULL; s;) {
        const char *comma = strchr(s, ',');
        size_t len = comma ? (size_t)(comma - s) : strlen(s);
        const char *eq = memchr(s, '=', len);
        int i = -1;
        const char *val = s;
        size_t vlen = len;
        if (eq) {
            for (int j = 0; j < na; j++)
                if (strlen(row->args[j].name) == (size_t)(eq - s) && strncmp(row->args[j].name, s, (size_t)(eq - s)) == 0)
                    i = j;
            if (i < 0) {
                char names[200] = "";
                for (int j = 0; j < na; j++)
                    snprintf(names + strlen(names), sizeof names - strlen(names), "%s%s", j ? ", " : "", row->args[j].name);
                tg_error_quiet(FN, "%s has no argument '%.*s' (its arguments: %s)", kind, (int)(eq - s), s, names);
                return -1;
            }
            if (p->given[i]) { tg_error_quiet(FN, "%s: %s is given twice", kind, row->args[i].name); return -1; }
            val = eq + 1;
            vlen = len - (size_t)(eq - s) - 1;
        } else if (last >= 0 && row->args[last].type == A_LIST) {
            i = last;
        } else {
            tg_error_quiet(FN, "%s: '%.*s' has no name (name=value; only a list such as milestones=30,60 continues "
                               "without one)", kind, (int)len, s);
            return -1;
        }
        const spec_arg *a = &row->args[i];
        p->given[i] = true;
        last = i;
        if (a->type == A_CHOICE || a->type == A_BOOL) {
            int c;
            const char *choices = a->type == A_BOOL ? "0|1" : a->choices;
            bool ok = choice_index(choices, val, vlen, &c) ||
                      (a->type == A_BOOL && (choice_index("false|true", val, vlen, &c) ||
                                             choice_index("False|True", val, vlen, &c)));
            if (!ok) {
                tg_error_quiet(FN, "%s: %s '%.*s' is not one of %s", kind, a->name, (int)vlen, val,
                               a->type == A_BOOL ? "0|1|false|true" : a->choices);
                return -1;
            }
            p->v[i] = c;
        } else {
            double v;
            if (read_number(kind, a, val, vlen, &v)) return -1;
            if (a->type == A_LIST) {
                if (p->n_list == MAX_LIST) { tg_error_quiet(FN, "%s: more than %d %s", kind, MAX_LIST, a->name); return -1; }
                p->list[p->n_list++] = (int64_t)v;
            } else {
                p->v[i] = v;
            }
        }
        s = comma ? comma + 1 : NULL;
    }
    for (int i = 0; i < na; i++) {
        const spec_arg *a = &row->args[i];
        if (p->given[i]) continue;
        if (a->def_from == D_VALUE) p->v[i] = a->def;
        else if (a->def_from == D_METRIC) p->v[i] = mode_max ? 1 : 0;
        else if (a->def_from == D_LENGTH && length > 0) p->v[i] = (double)length;
        else {
            tg_error_quiet(FN, "%s needs %s=%s", kind, a->name, a->type == A_LIST ? "N,N,..." : "VALUE");
            return -1;
        }
    }
    for (int i = 1; i < p->n_list; i++)
        if (p->list[i] <= p->list[i - 1]) {
            tg_error_quiet(FN, "%s: milestones must increase (%lld after %lld)", kind, (long long)p->list[i],
                           (long long)p->list[i - 1]);
            return -1;
        }
    return 0;
}

static void canonical(const parsed *p, char *out, size_t n) {
    if (!out || n == 0) return;
    const spec_row *row = p->row;
    size_t len = (size_t)snprintf(out, n, "%s", tg_sched_kind_name(row->kind));
    for (int i = 0; i < n_args(row) && len < n; i++) {
        const spec_arg *a = &row->args[i];
        char v[1024];
        if (a->type == A_LIST) {
            size_t l = 0;
            v[0] = 0;
            for (int j = 0; j < p->n_list && l < sizeof v; j++)
                l += (size_t)snprintf(v + l, sizeof v - l, "%s%lld", j ? "," : "", (long long)p->list[j]);
        } else if (a->type == A_CHOICE) {
            choice_name(a->choices, (int)p->v[i], v, sizeof v);
        } else if (a->type == A_INT || a->type == A_BOOL) {
            snprintf(v, sizeof v, "%lld", (long long)p->v[i]);
        } else { /* the shortest of 15..17 digits that reads back to the same double */
            for (int digits = 15; digits <= 17; digits++) {
                snprintf(v, sizeof v, "%.*g", digits, p->v[i]);
                if (strtod(v, NULL) == p->v[i]) break;
            }
        }
        len += (size_t)snprintf(out + len, n - len, "%c%s=%s", i ? ',' : ':', a->name, v);
    }
}

int tg_sched_spec_check(const char *spec, int64_t length, bool mode_max, tg_sched_kind *kind, char *canon,
                        size_t canon_size) {
    parsed p;
    if (parse(spec, length, mode_max, &p)) return -1;
    if (kind) *kind = p.row->kind;
    canonical(&p, canon, canon_size);
    return 0;
}

bool tg_sched_spec_matches(const char *spec, const char *canon, bool mode_max) {
    parsed a, c;
    if (parse(canon, 0, mode_max, &c) || parse(spec, 1, mode_max, &a)) { tg_clear_error(); return false; }
    if (a.row != c.row) return false;
    for (int i = 0; i < n_args(a.row); i++)
        if (a.row->args[i].def_from == D_LENGTH && !a.given[i]) a.v[i] = c.v[i];
    char ca[1200], cc[1200];
    canonical(&a, ca, sizeof ca);
    canonical(&c, cc, sizeof cc);
    return strcmp(ca, cc) == 0;
}

/* Does the optimizer have the field a cycling schedule moves (momentum; beta1 too when allowed)? */
static bool has_momentum(const tg_optim *opt, bool allow_beta1) {
    for (int i = 0; i < tg_optim_num_fields(); i++)
        if (tg_optim_kind_uses(tg_optim_kind_of(opt), i) &&
            (strcmp(tg_optim_field_name(i), "momentum") == 0 ||
             (allow_beta1 && strcmp(tg_optim_field_name(i), "beta1") == 0)))
            return true;
    return false;
}

tg_sched *tg_sched_from_spec(tg_optim *opt, const char *spec, int64_t length, bool mode_max, char *canon,
                             size_t canon_size) {
    parsed p;
    if (!opt) { tg_error_quiet(FN, "optimizer is NULL"); return NULL; }
    if (parse(spec, length, mode_max, &p)) return NULL;
    const double *v = p.v;
    const char *kind = tg_sched_kind_name(p.row->kind);
    tg_sched *s = NULL;
    switch (p.row->kind) {
    case TG_SCHED_STEP: s = tg_sched_step_lr(opt, (int64_t)v[0], v[1]); break;
    case TG_SCHED_MULTISTEP: s = tg_sched_multistep(opt, p.n_list, p.list, v[1]); break;
    case TG_SCHED_EXPONENTIAL: s = tg_sched_exponential(opt, v[0]); break;
    case TG_SCHED_COSINE: s = tg_sched_cosine(opt, (int64_t)v[0], v[1]); break;
    case TG_SCHED_LINEAR: s = tg_sched_linear(opt, v[0], v[1], (int64_t)v[2]); break;
    case TG_SCHED_PLATEAU: {
        tg_plateau_opts o = tg_plateau_defaults();
        o.mode_max = v[0] == 1;
        o.factor = v[1];
        o.patience = (int64_t)v[2];
        o.threshold = v[3];
        o.threshold_abs = v[4] == 1;
        o.cooldown = (int64_t)v[5];
        o.min_lr = v[6];
        o.eps = v[7];
        s = tg_sched_plateau(opt, &o);
        break;
    }
    case TG_SCHED_ONECYCLE: {
        if (v[4] == 1 && !has_momentum(opt, true)) {
            tg_error_quiet(FN, "%s: the %s optimizer has no momentum or beta1 to cycle: give cycle_momentum=0", kind,
                           tg_optim_kind_name(tg_optim_kind_of(opt)));
            return NULL;
        }
        tg_onecycle_opts o = tg_onecycle_defaults(v[0], (int64_t)v[1]);
        o.pct_start = v[2];
        o.anneal_linear = v[3] == 1;
        o.cycle_momentum = v[4] == 1;
        o.base_momentum = v[5];
        o.max_momentum = v[6];
        o.div_factor = v[7];
        o.final_div_factor = v[8];
        o.three_phase = v[9] == 1;
        s = tg_sched_onecycle(opt, &o);
        break;
    }
    case TG_SCHED_CYCLIC: {
        if (v[6] == 1 && !has_momentum(opt, false)) {
            tg_error_quiet(FN, "%s: the %s optimizer has no momentum to cycle (torch's CyclicLR cycles momentum only): "
                               "give cycle_momentum=0", kind, tg_optim_kind_name(tg_optim_kind_of(opt)));
            return NULL;
        }
        tg_cyclic_opts o = tg_cyclic_defaults(v[0], v[1]);
        o.step_size_up = (int64_t)v[2];
        o.step_size_down = (int64_t)v[3];
        o.mode = (tg_cyclic_mode)(int)v[4];
        o.gamma = v[5];
        o.cycle_momentum = v[6] == 1;
        o.base_momentum = v[7];
        o.max_momentum = v[8];
        s = tg_sched_cyclic(opt, &o);
        break;
    }
    case TG_SCHED_WARM_RESTARTS: s = tg_sched_warm_restarts(opt, (int64_t)v[0], (int64_t)v[1], v[2]); break;
    default: break; /* no row: parse refused it */
    }
    if (s) canonical(&p, canon, canon_size);
    return s;
}

bool tg_sched_spec_per_step(tg_sched_kind kind) {
    const spec_row *row = row_of(kind);
    return row && row->per_step;
}

char *tg_sched_spec_list(char *buf, size_t size, const char *sep) {
    if (!buf || size == 0) return buf;
    size_t len = 0;
    buf[0] = 0;
    for (int r = 0; r < N_ROWS && len < size; r++)
        len += (size_t)snprintf(buf + len, size - len, "%s%s", r ? (sep ? sep : "") : "",
                                tg_sched_kind_name(spec_rows[r].kind));
    return buf;
}

char *tg_sched_spec_help(char *buf, size_t size, const char *indent) {
    if (!buf || size == 0) return buf;
    size_t len = 0;
    buf[0] = 0;
    for (int r = 0; r < N_ROWS && len < size; r++) {
        const spec_row *row = &spec_rows[r];
        len += (size_t)snprintf(buf + len, size - len, "%s%s%s", r ? "\n" : "", indent ? indent : "",
                                tg_sched_kind_name(row->kind));
        for (int i = 0; i < n_args(row) && len < size; i++) {
            const spec_arg *a = &row->args[i];
            char d[64];
            switch (a->def_from) {
            case D_REQUIRED: snprintf(d, sizeof d, a->type == A_LIST ? "N,N,..." : a->type == A_INT ? "N" : "X"); break;
            case D_LENGTH: snprintf(d, sizeof d, "(the run)"); break;
            case D_METRIC: snprintf(d, sizeof d, "(the metric's)"); break;
            default:
                if (a->type == A_CHOICE) choice_name(a->choices, (int)a->def, d, sizeof d);
                else snprintf(d, sizeof d, "%.4g", a->def);
            }
            char c[64] = "";
            if (a->type == A_CHOICE) snprintf(c, sizeof c, " (%s)", a->choices);
            len += (size_t)snprintf(buf + len, size - len, "%c%s=%s%s", i ? ',' : ':', a->name, d, c);
        }
    }
    return buf;
}
