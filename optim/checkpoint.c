/* optim/checkpoint.c - model parameters and optimizer state to and from safetensors files.
 *
 * Both loaders follow docs/design.md §6 for data errors: read and validate the whole file first,
 * and only when nothing is wrong change the model / optimizer, so a bad file never half-overwrites
 * anything. Messages go through tg_error_quiet (readable with tg_last_error); nothing aborts.
 *
 * Optimizer file layout (all metadata values are strings; doubles use %.17g, which reads back exactly):
 *   format = tapegrad.optim.v1, kind = adam, groups = G, params = P
 *   group.<g>.size, group.<g>.<hyper-parameter> (every TG_OPTIM_FIELDS line), group.<g>.initial_lr
 *   param.<i>.shape = [2,3], param.<i>.dtype = F32, param.<i>.step
 *   sched.kind, sched.last_epoch, sched.best, sched.num_bad_epochs, sched.cooldown_counter (optional),
 *   sched.<counter> for each extra counter of the schedule's row (optim/schedule.c: warm restarts'
 *   T_cur, T_i), sched.members and per member k sched.<k>.kind, sched.<k>.last_epoch, sched.<k>.<counter>
 *   tensors state.<i>.<name> (torch's state keys: exp_avg, momentum_buffer, ...)
 */
#include "optim/optim_internal.h"
#include "optim/checkpoint.h"
#include "tensor/alloc.h"

#include <tapegrad/safetensors.h>

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define OPTIM_FORMAT "tapegrad.optim.v1"

/* ---- model parameters --------------------------------------------------------------------------- */

int tg_params_save(const tg_params *params, const char *path) {
    const char *fn = "tg_params_save";
    if (!params || !path) { tg_error_quiet(fn, "%s is NULL", !params ? "the parameter set" : "path"); return -1; }
    int n = tg_params_count(params);
    const char **names = tg_malloc((size_t)(n ? n : 1) * sizeof *names);
    tg_tensor **tensors = tg_malloc((size_t)(n ? n : 1) * sizeof *tensors);
    int rc = -1;
    if (!names || !tensors) {
        tg_error_quiet(fn, "%s: out of memory", path);
    } else {
        for (int i = 0; i < n; i++) {
            names[i] = tg_params_name_at(params, i);
            tensors[i] = tg_params_at(params, i);
        }
        const char *meta[2] = {"format", "pt"};
        rc = tg_st_save(path, n, names, tensors, 1, meta);
    }
    free(names);
    free(tensors);
    return rc;
}

/* Collects problems: the first one's text and how many there are. */
typedef struct problems {
    char first[384];
    int count;
} problems;

static void problem(problems *pr, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void problem(problems *pr, const char *fmt, ...) {
    if (pr->count++ == 0) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(pr->first, sizeof pr->first, fmt, ap);
        va_end(ap);
    }
}

static int report(const char *fn, const char *path, const problems *pr) {
    if (pr->count > 1) tg_error_quiet(fn, "%s: %s (and %d more problems)", path, pr->first, pr->count - 1);
    else tg_error_quiet(fn, "%s: %s", path, pr->first);
    return -1;
}

int tg_params_load(tg_params *params, const char *path) {
    const char *fn = "tg_params_load";
    if (!params || !path) { tg_error_quiet(fn, "%s is NULL", !params ? "the parameter set" : "path"); return -1; }
    tg_st_file *f = tg_st_load(path);
    if (!f) return -1; /* tg_st_load's message names the file and the problem */
    problems pr = {.count = 0};
    char s1[128], s2[128];
    int n = tg_params_count(params);
    for (int i = 0; i < n; i++) {
        const char *name = tg_params_name_at(params, i);
        tg_tensor *t = tg_params_at(params, i), *ft = tg_st_get(f, name);
        if (!ft) problem(&pr, "missing tensor '%s' %s %s", name, tg_shape_str(t, s1, sizeof s1), tg_dtype_name(tg_dtype_of(t)));
        else if (!tg_same_shape(t, ft))
            problem(&pr, "tensor '%s' has shape %s in the file, the model expects %s", name,
                    tg_shape_str(ft, s1, sizeof s1), tg_shape_str(t, s2, sizeof s2));
        else if (tg_dtype_of(t) != tg_dtype_of(ft))
            problem(&pr, "tensor '%s' has dtype %s in the file, the model expects %s", name,
                    tg_dtype_name(tg_dtype_of(ft)), tg_dtype_name(tg_dtype_of(t)));
    }
    for (int j = 0; j < tg_st_count(f); j++) {
        const char *name = tg_st_name_at(f, j);
        if (!tg_params_find(params, name))
            problem(&pr, "unexpected tensor '%s' %s (not a parameter of the model)", name,
                    tg_shape_str(tg_st_tensor_at(f, j), s1, sizeof s1));
    }
    if (pr.count) {
        tg_st_free(f);
        return report(fn, path, &pr);
    }
    for (int i = 0; i < n; i++) tg_copy_(tg_params_at(params, i), tg_st_get(f, tg_params_name_at(params, i)));
    tg_st_free(f);
    return 0;
}

/* ---- metadata helpers --------------------------------------------------------------------------- */

typedef struct kv_list {
    char **items; /* key, value, key, value, ... (owned) */
    int n, cap;   /* strings */
    bool oom;
} kv_list;

static void kv_add(kv_list *m, const char *key, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void kv_add(kv_list *m, const char *key, const char *fmt, ...) {
    if (m->oom) return;
    if (m->n + 2 > m->cap) {
        int cap = m->cap ? 2 * m->cap : 64;
        char **p = tg_realloc(m->items, (size_t)cap * sizeof *p);
        if (!p) { m->oom = true; return; }
        m->items = p;
        m->cap = cap;
    }
    char value[160];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(value, sizeof value, fmt, ap);
    va_end(ap);
    char *k = tg_strdup(key), *v = tg_strdup(value);
    if (!k || !v) { free(k); free(v); m->oom = true; return; }
    m->items[m->n++] = k;
    m->items[m->n++] = v;
}

static void kv_free(kv_list *m) {
    for (int i = 0; i < m->n; i++) free(m->items[i]);
    free(m->items);
}

static bool parse_i64(const char *s, int64_t *out) {
    if (!s || !*s) return false;
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno || *end) return false;
    *out = v;
    return true;
}

static bool parse_f64(const char *s, double *out) {
    if (!s || !*s) return false;
    char *end;
    double v = strtod(s, &end);
    if (*end) return false;
    *out = v;
    return true;
}


/* ---- optimizer state ---------------------------------------------------------------------------- */

int tg_optim_save(const tg_optim *opt, const tg_sched *sched, const char *path) {
    return tg__optim_save_kv(opt, sched, path, 0, NULL);
}

int tg__optim_save_kv(const tg_optim *opt, const tg_sched *sched, const char *path, int nkv, const char *const *kv) {
    const char *fn = "tg_optim_save";
    if (!opt || !path) { tg_error_quiet(fn, "%s is NULL", !opt ? "the optimizer" : "path"); return -1; }
    kv_list m = {0};
    char key[96], shape[128];
    kv_add(&m, "format", "%s", OPTIM_FORMAT);
    kv_add(&m, "kind", "%s", tg_optim_kind_name(opt->kind));
    kv_add(&m, "groups", "%d", opt->n_groups);
    kv_add(&m, "params", "%d", opt->n_params);
    for (int g = 0; g < opt->n_groups; g++) {
        const tg_optim_group_rec *gr = &opt->groups[g];
        snprintf(key, sizeof key, "group.%d.size", g);
        kv_add(&m, key, "%d", gr->count);
        for (int h = 0; h < tg__optim_n_fields; h++) {
            const char *field = (const char *)&gr->opts + tg__optim_fields[h].offset;
            snprintf(key, sizeof key, "group.%d.%s", g, tg__optim_fields[h].name);
            if (tg__optim_fields[h].is_bool) kv_add(&m, key, "%d", *(const bool *)field ? 1 : 0);
            else kv_add(&m, key, "%.17g", *(const double *)field);
        }
        snprintf(key, sizeof key, "group.%d.initial_lr", g);
        kv_add(&m, key, "%.17g", gr->initial_lr);
    }
    int n_state = 0;
    for (int i = 0; i < opt->n_params; i++) {
        const tg_optim_slot *ps = &opt->params[i];
        snprintf(key, sizeof key, "param.%d.shape", i);
        kv_add(&m, key, "%s", tg_shape_str(ps->param, shape, sizeof shape));
        snprintf(key, sizeof key, "param.%d.dtype", i);
        kv_add(&m, key, "%s", tg_dtype_name(tg_dtype_of(ps->param)));
        snprintf(key, sizeof key, "param.%d.step", i);
        kv_add(&m, key, "%lld", (long long)ps->step);
        for (int k = 0; k < TG_OPTIM_NBUF; k++) n_state += ps->buf[k] != NULL;
    }
    if (sched) {
        tg_sched_state st;
        tg__sched_get_state(sched, &st);
        kv_add(&m, "sched.kind", "%s", tg_sched_kind_name(st.kind));
        kv_add(&m, "sched.last_epoch", "%lld", (long long)st.last_epoch);
        kv_add(&m, "sched.best", "%.17g", st.best);
        kv_add(&m, "sched.num_bad_epochs", "%lld", (long long)st.num_bad_epochs);
        kv_add(&m, "sched.cooldown_counter", "%lld", (long long)st.cooldown_counter);
        const tg_sched_extra *ex;
        for (int j = 0, n = tg__sched_extra(st.kind, &ex); j < n; j++) {
            snprintf(key, sizeof key, "sched.%s", ex[j].name);
            kv_add(&m, key, "%lld", (long long)st.extra[j]);
        }
        if (st.n_members) kv_add(&m, "sched.members", "%d", st.n_members);
        for (int k = 0; k < st.n_members; k++) {
            const tg_sched_member_state *ms = &st.members[k];
            snprintf(key, sizeof key, "sched.%d.kind", k);
            kv_add(&m, key, "%s", tg_sched_kind_name(ms->kind));
            snprintf(key, sizeof key, "sched.%d.last_epoch", k);
            kv_add(&m, key, "%lld", (long long)ms->last_epoch);
            for (int j = 0, n = tg__sched_extra(ms->kind, &ex); j < n; j++) {
                snprintf(key, sizeof key, "sched.%d.%s", k, ex[j].name);
                kv_add(&m, key, "%lld", (long long)ms->extra[j]);
            }
        }
    }
    for (int i = 0; i < nkv; i++) kv_add(&m, kv[2 * i], "%s", kv[2 * i + 1]);
    char **names = tg_calloc((size_t)n_state + 1, sizeof *names);
    tg_tensor **tensors = tg_malloc(((size_t)n_state + 1) * sizeof *tensors);
    int rc = -1, j = 0;
    if (m.oom || !names || !tensors) {
        tg_error_quiet(fn, "%s: out of memory", path);
        goto done;
    }
    for (int i = 0; i < opt->n_params; i++)
        for (int k = 0; k < TG_OPTIM_NBUF; k++) {
            if (!opt->params[i].buf[k]) continue;
            snprintf(key, sizeof key, "state.%d.%s", i, tg__optim_buf_name(opt->kind, k));
            if (!(names[j] = tg_strdup(key))) { tg_error_quiet(fn, "%s: out of memory", path); goto done; }
            tensors[j++] = opt->params[i].buf[k];
        }
    rc = tg_st_save(path, n_state, (const char *const *)names, tensors, m.n / 2, (const char *const *)m.items);
done:
    for (int i = 0; names && i < n_state; i++) free(names[i]);
    free(names);
    free(tensors);
    kv_free(&m);
    return rc;
}

/* Metadata lookups that record a problem when the key is absent or malformed. */
static const char *meta_str(const tg_st_file *f, problems *pr, const char *key) {
    const char *v = tg_st_meta(f, key);
    if (!v) problem(pr, "metadata '%s' is missing", key);
    return v;
}
static bool meta_i64(const tg_st_file *f, problems *pr, const char *key, int64_t *out) {
    const char *v = meta_str(f, pr, key);
    if (v && !parse_i64(v, out)) { problem(pr, "metadata '%s' = '%s' is not an integer", key, v); return false; }
    return v != NULL;
}
static bool meta_f64(const tg_st_file *f, problems *pr, const char *key, double *out) {
    const char *v = meta_str(f, pr, key);
    if (v && !parse_f64(v, out)) { problem(pr, "metadata '%s' = '%s' is not a number", key, v); return false; }
    return v != NULL;
}

/* "state.<i>.<name>" -> parameter index i and buffer slot k for this kind; false if malformed. */
static bool parse_state_name(const char *name, tg_optim_kind kind, int n_params, int *index, int *slot) {
    if (strncmp(name, "state.", 6) != 0) return false;
    char *end;
    errno = 0;
    long i = strtol(name + 6, &end, 10);
    if (errno || end == name + 6 || *end != '.' || i < 0 || i >= n_params) return false;
    for (int k = 0; k < TG_OPTIM_NBUF; k++) {
        const char *b = tg__optim_buf_name(kind, k);
        if (b && strcmp(end + 1, b) == 0) {
            *index = (int)i;
            *slot = k;
            return true;
        }
    }
    return false;
}

int tg_optim_load(tg_optim *opt, tg_sched *sched, const char *path) {
    if (!opt || !path) { tg_error_quiet("tg_optim_load", "%s is NULL", !opt ? "the optimizer" : "path"); return -1; }
    tg_st_file *f = tg_st_load(path);
    if (!f) return -1;
    int rc = tg__optim_load_file(opt, sched, f, path);
    tg_st_free(f);
    return rc;
}

int tg__optim_load_file(tg_optim *opt, tg_sched *sched, const tg_st_file *f, const char *path) {
    const char *fn = "tg_optim_load";
    problems pr = {.count = 0};
    char key[96], shape[128];
    int64_t v;
    tg_optim_group_rec *groups = NULL;
    int64_t *steps = NULL;
    unsigned *present = NULL; /* [n_params]: bit k set when the file holds state.<i>.<buf k> */
    tg_tensor **bufs = NULL; /* [n_params · NBUF] new refs, the state to install */
    tg_sched_state st = {0};
    int P = opt->n_params;

    /* ---- validate everything */
    const char *format = tg_st_meta(f, "format");
    if (!format || strcmp(format, OPTIM_FORMAT) != 0) {
        problem(&pr, "not an optimizer checkpoint (metadata 'format' is %s%s%s, expected '" OPTIM_FORMAT "')",
                format ? "'" : "", format ? format : "missing", format ? "'" : "");
        goto fail;
    }
    const char *kind = meta_str(f, &pr, "kind");
    if (kind && strcmp(kind, tg_optim_kind_name(opt->kind)) != 0)
        problem(&pr, "the checkpoint is for a %s optimizer, this one is %s", kind, tg_optim_kind_name(opt->kind));
    if (meta_i64(f, &pr, "groups", &v) && v != opt->n_groups)
        problem(&pr, "the checkpoint has %lld parameter groups, the optimizer %d", (long long)v, opt->n_groups);
    if (meta_i64(f, &pr, "params", &v) && v != P)
        problem(&pr, "the checkpoint has %lld parameters, the optimizer %d", (long long)v, P);
    if (pr.count) goto fail;

    groups = tg_malloc((size_t)(opt->n_groups ? opt->n_groups : 1) * sizeof *groups);
    steps = tg_calloc((size_t)(P ? P : 1), sizeof *steps);
    present = tg_calloc((size_t)(P ? P : 1), sizeof *present);
    bufs = tg_calloc((size_t)(P ? P : 1) * TG_OPTIM_NBUF, sizeof *bufs);
    if (!groups || !steps || !present || !bufs) { problem(&pr, "out of memory"); goto fail; }

    for (int g = 0; g < opt->n_groups; g++) {
        groups[g] = opt->groups[g];
        snprintf(key, sizeof key, "group.%d.size", g);
        if (meta_i64(f, &pr, key, &v) && v != opt->groups[g].count)
            problem(&pr, "group %d has %lld parameters in the checkpoint, %d in the optimizer", g, (long long)v,
                    opt->groups[g].count);
        for (int h = 0; h < tg__optim_n_fields; h++) {
            char *field = (char *)&groups[g].opts + tg__optim_fields[h].offset;
            snprintf(key, sizeof key, "group.%d.%s", g, tg__optim_fields[h].name);
            /* a field this kind does not read may be absent (a file written before the field
             * existed): the group keeps its value */
            if (!tg_st_meta(f, key) && !tg_optim_kind_uses(opt->kind, h)) continue;
            if (tg__optim_fields[h].is_bool) {
                if (meta_i64(f, &pr, key, &v)) {
                    if (v != 0 && v != 1) problem(&pr, "metadata '%s' = %lld is not 0 or 1", key, (long long)v);
                    *(bool *)field = v == 1;
                }
            } else {
                meta_f64(f, &pr, key, (double *)field);
            }
        }
        snprintf(key, sizeof key, "group.%d.initial_lr", g);
        meta_f64(f, &pr, key, &groups[g].initial_lr);
        char msg[256];
        if (pr.count == 0 && !tg__optim_validate(opt->kind, &groups[g].opts, msg, sizeof msg))
            problem(&pr, "group %d: %s", g, msg);
    }
    for (int i = 0; i < P; i++) {
        const tg_tensor *p = opt->params[i].param;
        snprintf(key, sizeof key, "param.%d.shape", i);
        const char *s = meta_str(f, &pr, key);
        tg_shape_str(p, shape, sizeof shape);
        if (s && strcmp(s, shape) != 0)
            problem(&pr, "parameter %d '%s' is %s in the checkpoint, %s in the optimizer", i, tg_name(p), s, shape);
        snprintf(key, sizeof key, "param.%d.dtype", i);
        s = meta_str(f, &pr, key);
        if (s && strcmp(s, tg_dtype_name(tg_dtype_of(p))) != 0)
            problem(&pr, "parameter %d '%s' is %s in the checkpoint, %s in the optimizer", i, tg_name(p), s,
                    tg_dtype_name(tg_dtype_of(p)));
        snprintf(key, sizeof key, "param.%d.step", i);
        if (meta_i64(f, &pr, key, &steps[i]) && steps[i] < 0)
            problem(&pr, "metadata '%s' = %lld is negative", key, (long long)steps[i]);
    }
    for (int j = 0; j < tg_st_count(f); j++) {
        const char *name = tg_st_name_at(f, j);
        tg_tensor *t = tg_st_tensor_at(f, j);
        int i, k;
        if (!parse_state_name(name, opt->kind, P, &i, &k)) {
            problem(&pr, "unexpected tensor '%s' (not a state of this %s optimizer's %d parameters)", name,
                    tg_optim_kind_name(opt->kind), P);
            continue;
        }
        const tg_tensor *p = opt->params[i].param;
        char s1[128];
        present[i] |= 1u << k;
        if (tg__optim_buf_is_scalar(opt->kind, k)) {
            if (tg_ndim(t) != 0 || tg_dtype_of(t) != tg_dtype_of(p))
                problem(&pr, "state tensor '%s' is %s %s, expected a 0-d %s tensor (the dtype of its parameter '%s')",
                        name, tg_shape_str(t, s1, sizeof s1), tg_dtype_name(tg_dtype_of(t)),
                        tg_dtype_name(tg_dtype_of(p)), tg_name(p));
        } else if (!tg_same_shape(t, p) || tg_dtype_of(t) != tg_dtype_of(p)) {
            problem(&pr, "state tensor '%s' is %s %s, its parameter '%s' is %s %s", name, tg_shape_str(t, s1, sizeof s1),
                    tg_dtype_name(tg_dtype_of(t)), tg_name(p), tg_shape_str(p, shape, sizeof shape),
                    tg_dtype_name(tg_dtype_of(p)));
        }
    }
    /* a parameter that has taken steps needs its state back: recreating it (zeros, or 1 for
     * mu_product) would silently restart its moments */
    for (int i = 0; i < P; i++) {
        if (steps[i] <= 0) continue;
        unsigned missing = tg__optim_bufs_needed(opt->kind, &groups[opt->params[i].group].opts) & ~present[i];
        for (int k = 0; k < TG_OPTIM_NBUF; k++)
            if (missing >> k & 1u)
                problem(&pr, "parameter %d '%s' has taken %lld steps but the checkpoint has no state tensor 'state.%d.%s'",
                        i, tg_name(opt->params[i].param), (long long)steps[i], i, tg__optim_buf_name(opt->kind, k));
    }
    if (sched) {
        tg__sched_get_state(sched, &st);
        const char *sk = meta_str(f, &pr, "sched.kind");
        if (sk && strcmp(sk, tg_sched_kind_name(st.kind)) != 0)
            problem(&pr, "the checkpoint's schedule is %s, the given one is %s", sk, tg_sched_kind_name(st.kind));
        meta_i64(f, &pr, "sched.last_epoch", &st.last_epoch);
        meta_f64(f, &pr, "sched.best", &st.best);
        meta_i64(f, &pr, "sched.num_bad_epochs", &st.num_bad_epochs);
        meta_i64(f, &pr, "sched.cooldown_counter", &st.cooldown_counter);
        const tg_sched_extra *ex;
        const int n_ex = tg__sched_extra(st.kind, &ex);
        for (int j = 0; j < n_ex; j++) {
            snprintf(key, sizeof key, "sched.%s", ex[j].name);
            meta_i64(f, &pr, key, &st.extra[j]);
        }
        int64_t nm = 0;
        if (st.n_members && meta_i64(f, &pr, "sched.members", &nm) && nm != st.n_members)
            problem(&pr, "the checkpoint's schedule has %lld members, the given one %d", (long long)nm, st.n_members);
        for (int k = 0; k < st.n_members && nm == st.n_members; k++) {
            tg_sched_member_state *ms = &st.members[k];
            snprintf(key, sizeof key, "sched.%d.kind", k);
            const char *mk = meta_str(f, &pr, key);
            if (mk && strcmp(mk, tg_sched_kind_name(ms->kind)) != 0)
                problem(&pr, "the checkpoint's schedule member %d is %s, the given one is %s", k, mk,
                        tg_sched_kind_name(ms->kind));
            snprintf(key, sizeof key, "sched.%d.last_epoch", k);
            meta_i64(f, &pr, key, &ms->last_epoch);
            const tg_sched_extra *mex;
            for (int j = 0, n = tg__sched_extra(ms->kind, &mex); j < n; j++) {
                snprintf(key, sizeof key, "sched.%d.%s", k, mex[j].name);
                if (meta_i64(f, &pr, key, &ms->extra[j]) && mex[j].positive && ms->extra[j] <= 0)
                    problem(&pr, "metadata '%s' = %lld must be > 0", key, (long long)ms->extra[j]);
            }
        }
        for (int j = 0; j < n_ex; j++)
            if (ex[j].positive && st.extra[j] <= 0)
                problem(&pr, "metadata 'sched.%s' = %lld must be > 0", ex[j].name, (long long)st.extra[j]);
    }
    if (pr.count) goto fail;

    /* ---- build the new state (copies), then install it: nothing below can fail half-way */
    for (int j = 0; j < tg_st_count(f); j++) {
        int i, k;
        parse_state_name(tg_st_name_at(f, j), opt->kind, P, &i, &k);
        if (!(bufs[i * TG_OPTIM_NBUF + k] = tg_copy(tg_st_tensor_at(f, j)))) {
            problem(&pr, "out of memory copying '%s'", tg_st_name_at(f, j));
            goto fail;
        }
    }
    for (int g = 0; g < opt->n_groups; g++) opt->groups[g] = groups[g];
    for (int i = 0; i < P; i++) {
        opt->params[i].step = steps[i];
        for (int k = 0; k < TG_OPTIM_NBUF; k++) {
            tg_release(opt->params[i].buf[k]);
            opt->params[i].buf[k] = bufs[i * TG_OPTIM_NBUF + k];
        }
    }
    if (sched) tg__sched_set_state(sched, &st);
    free(groups);
    free(steps);
    free(present);
    free(bufs);
    return 0;

fail:
    for (int i = 0; bufs && i < P * TG_OPTIM_NBUF; i++) tg_release(bufs[i]);
    free(groups);
    free(steps);
    free(present);
    free(bufs);
    return report(fn, path, &pr);
}
