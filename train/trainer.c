/* train/trainer.c - the training loop and its checkpoints (see <tapegrad/trainer.h>). */
#include <tapegrad/trainer.h>
#include "tensor/alloc.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <tapegrad/autograd.h>
#include <tapegrad/train.h>

#include "train/checkpoint.h"
#include "train/rng_text.h"

#define FN_STEP "tg_trainer_step"
#define CKPT_MARK "tapegrad.train" /* metadata key naming a trainer checkpoint */

int tg_trainer_init(tg_trainer *tr, tg_params *params, tg_optim *opt, const tg_train_opts *opts,
                    const tg_train_hooks *hooks) {
    if (!tr) { tg_error_quiet("tg_trainer_init", "argument tr is NULL"); return -1; }
    memset(tr, 0, sizeof *tr);
    if (!params || !opt || !hooks || !hooks->loss) {
        tg_error_quiet("tg_trainer_init", "%s is NULL", !params ? "params" : !opt ? "opt" : !hooks ? "hooks" : "hooks->loss");
        return -1;
    }
    if (opts && (!(opts->clip >= 0) || opts->epoch_steps < 0 || opts->patience < 0)) {
        tg_error_quiet("tg_trainer_init", "bad options: clip %g, epoch_steps %lld, patience %lld (none may be negative)",
                       opts->clip, (long long)opts->epoch_steps, (long long)opts->patience);
        return -1;
    }
    if (opts && opts->patience > 0 && opts->epoch_steps == 0) {
        tg_error_quiet("tg_trainer_init", "patience %lld needs epochs (epoch_steps > 0)", (long long)opts->patience);
        return -1;
    }
    tr->params = params;
    tr->opt = opt;
    if (opts) tr->opts = *opts;
    tr->hooks = *hooks;
    tg_rng_seed(&tr->rng, tr->opts.seed);
    tr->best_metric = NAN;
    return 0;
}

static void best_free(tg_trainer *tr) {
    if (!tr->best_values) return;
    for (int i = 0; i < tg_params_count(tr->params); i++) free(tr->best_values[i]);
    free(tr->best_values);
    tr->best_values = NULL;
}

void tg_trainer_free(tg_trainer *tr) {
    if (!tr) return;
    if (tr->params) best_free(tr);
    memset(tr, 0, sizeof *tr);
}

static size_t param_bytes(const tg_tensor *t) { return (size_t)tg_numel(t) * tg_itemsize(tg_dtype_of(t)); }

/* Keeps (copies of) the parameters' values: the model of the best epoch. */
static int best_keep(tg_trainer *tr) {
    int n = tg_params_count(tr->params);
    if (!tr->best_values && !(tr->best_values = tg_calloc((size_t)n, sizeof *tr->best_values))) return -1;
    for (int i = 0; i < n; i++) {
        tg_tensor *t = tg_params_at(tr->params, i);
        if (!tr->best_values[i] && !(tr->best_values[i] = tg_malloc(param_bytes(t)))) return -1;
        memcpy(tr->best_values[i], tg_data(t), param_bytes(t));
    }
    return 0;
}

bool tg_trainer_restore_best(tg_trainer *tr) {
    if (!tr || !tr->best_values) return false;
    for (int i = 0; i < tg_params_count(tr->params); i++) {
        tg_tensor *t = tg_params_at(tr->params, i);
        memcpy(tg_data(t), tr->best_values[i], param_bytes(t));
        tg_bump_version(t);
    }
    return true;
}

/* A hook or library call failed: keep the message it left, else say which part failed. */
static int step_fail(const tg_trainer *tr, const char *what) {
    if (!tg_error_pending()) tg_error_quiet(FN_STEP, "step %lld: %s failed", (long long)tr->step + 1, what);
    return -1;
}

/* The end of an epoch: the metric, early stopping, the per-epoch schedule, hooks.after_epoch. */
static int epoch_end(tg_trainer *tr) {
    tg_epoch_report rep = {.epoch = tr->step / tr->opts.epoch_steps, .metric = NAN};
    rep.train_loss = tr->epoch_batches ? tr->epoch_loss / (double)tr->epoch_batches : NAN;
    tr->epoch_loss = 0;
    tr->epoch_batches = 0;
    if (tr->hooks.evaluate && tr->hooks.evaluate(tr, &rep.metric, tr->hooks.user)) return step_fail(tr, "evaluate");
    if (!isnan(rep.metric)) {
        bool hi = tr->opts.higher_is_better;
        rep.best = isnan(tr->best_metric) || (hi ? rep.metric > tr->best_metric : rep.metric < tr->best_metric);
        if (rep.best) {
            tr->best_metric = rep.metric;
            tr->best_epoch = rep.epoch;
            tr->bad_epochs = 0;
            if (tr->opts.keep_best && best_keep(tr)) {
                tg_error_quiet(FN_STEP, "out of memory keeping the best parameters");
                return -1;
            }
        } else {
            tr->bad_epochs++;
        }
    }
    rep.stop = tr->opts.patience > 0 && tr->bad_epochs >= tr->opts.patience;
    if (rep.stop) tr->stopped = true;
    if (tr->opts.sched && tr->opts.sched_per_epoch) {
        tg_clear_error();
        tg_sched_step_metric(tr->opts.sched, isnan(rep.metric) ? rep.train_loss : rep.metric);
        if (tg_error_pending()) return -1;
    }
    if (tr->hooks.after_epoch && tr->hooks.after_epoch(tr, &rep, tr->hooks.user)) return step_fail(tr, "after_epoch");
    return 0;
}

int tg_trainer_step(tg_trainer *tr) {
    if (!tr || !tr->params || !tr->hooks.loss) { tg_error_quiet(FN_STEP, "the trainer is not set up (tg_trainer_init)"); return -1; }
    tg_clear_error();
    /* anomaly mode covers this step's forward and backward only */
    if (tr->opts.detect_anomaly) tg_set_anomaly_mode(true);
    tg_tensor *loss = tr->hooks.loss(tr, &tr->rng, tr->hooks.user);
    bool anomaly = tr->opts.detect_anomaly && tg_error_pending(); /* the forward made a NaN/inf */
    bool failed = !loss || anomaly || tg_backward(loss);
    if (tr->opts.detect_anomaly) tg_set_anomaly_mode(false);
    double lv = failed ? NAN : tg_item(loss);
    if (!failed && tr->hooks.after_backward && tr->hooks.after_backward(tr, &lv, tr->hooks.user)) {
        tg_optim_zero_grad(tr->opt);
        tg_tape_reset();
        return step_fail(tr, "after_backward");
    }
    if (failed) {
        tg_optim_zero_grad(tr->opt);
        tg_tape_reset();
        return step_fail(tr, loss ? "the backward" : "the loss");
    }
    if (tr->opts.clip > 0) tg_optim_clip_grad_norm(tr->opt, tr->opts.clip, 2.0, false);
    int s = tg_optim_step(tr->opt);
    tg_optim_zero_grad(tr->opt);
    tg_tape_reset();
    if (s) return step_fail(tr, "the optimizer step");
    tr->step++;
    tr->last_loss = lv;
    if (!isfinite(lv)) {
        tg_error_quiet(FN_STEP, "the loss became %g at step %lld", lv, (long long)tr->step);
        return -1;
    }
    tr->epoch_loss += lv;
    tr->epoch_batches++;
    if (tr->opts.sched && !tr->opts.sched_per_epoch) {
        tg_sched_step(tr->opts.sched);
        if (tg_error_pending()) return -1;
    }
    if (tr->opts.epoch_steps > 0 && tr->step % tr->opts.epoch_steps == 0 && epoch_end(tr)) return -1;
    if (tr->hooks.after_step && tr->hooks.after_step(tr, tr->hooks.user)) return step_fail(tr, "after_step");
    return 0;
}

int tg_trainer_run(tg_trainer *tr, int64_t until) {
    if (!tr) return tg_trainer_step(tr); /* reports the NULL */
    while (tr->step < until && !tr->stopped)
        if (tg_trainer_step(tr)) return -1;
    return 0;
}

/* ---- checkpoints --------------------------------------------------------------------------------- */

/* The metadata keys the trainer writes itself. */
static const char *const own_keys[] = {"format", CKPT_MARK, "step", "rng", "epoch_acc", "early"};
enum { N_OWN = sizeof own_keys / sizeof own_keys[0] };

int tg_trainer_save(const tg_trainer *tr, const char *path, int nmeta, const char *const *meta) {
    static const char *fn = "tg_trainer_save";
    if (!tr || !tr->params || !path || nmeta < 0 || (nmeta > 0 && !meta)) {
        tg_error_quiet(fn, "%s", !tr || !tr->params ? "the trainer is not set up" : !path ? "path is NULL" : "bad meta arguments");
        return -1;
    }
    for (int i = 0; i < nmeta; i++) {
        if (!meta[2 * i] || !meta[2 * i + 1]) { tg_error_quiet(fn, "meta pair %d has a NULL key or value", i); return -1; }
        for (int k = 0; k < N_OWN; k++)
            if (strcmp(meta[2 * i], own_keys[k]) == 0) {
                tg_error_quiet(fn, "metadata key '%s' is the trainer's own", meta[2 * i]);
                return -1;
            }
    }
    char vals[N_OWN][160];
    snprintf(vals[0], sizeof vals[0], "pt");
    snprintf(vals[1], sizeof vals[1], "1");
    snprintf(vals[2], sizeof vals[2], "%lld", (long long)tr->step);
    tg__rng_to_str(&tr->rng, vals[3], sizeof vals[3]);
    snprintf(vals[4], sizeof vals[4], "%.17g %lld", tr->epoch_loss, (long long)tr->epoch_batches);
    snprintf(vals[5], sizeof vals[5], "%.17g %lld %lld", tr->best_metric, (long long)tr->best_epoch,
             (long long)tr->bad_epochs);
    int nm = N_OWN + nmeta;
    const char **kv = tg_malloc((size_t)nm * 2 * sizeof *kv);
    if (!kv) { tg_error_quiet(fn, "%s: out of memory", path); return -1; }
    for (int i = 0; i < N_OWN; i++) { kv[2 * i] = own_keys[i]; kv[2 * i + 1] = vals[i]; }
    for (int i = 0; i < 2 * nmeta; i++) kv[2 * N_OWN + i] = meta[i];
    tg_clear_error();
    int rc = tg__ckpt_write(fn, path, tr->params, tr->opt, tr->opts.sched, nm, kv);
    free(kv);
    return rc;
}

/* Every parameter is in the file with its shape and dtype, and the file holds nothing else. */
static int check_params(const tg_trainer *tr, const tg_st_file *f, const char *path) {
    char a[64], b[64];
    int n = tg_params_count(tr->params);
    for (int i = 0; i < n; i++) {
        const char *name = tg_params_name_at(tr->params, i);
        const tg_tensor *p = tg_params_at(tr->params, i), *t = tg_st_get(f, name);
        if (!t) { tg_error_quiet("tg_trainer_load", "%s: parameter '%s' is missing", path, name); return -1; }
        if (tg_dtype_of(t) != tg_dtype_of(p) || !tg_same_shape(t, p)) {
            tg_error_quiet("tg_trainer_load", "%s: parameter '%s' is %s %s in the file, %s %s in the model", path, name,
                           tg_dtype_name(tg_dtype_of(t)), tg_shape_str(t, a, sizeof a), tg_dtype_name(tg_dtype_of(p)),
                           tg_shape_str(p, b, sizeof b));
            return -1;
        }
    }
    if (tg_st_count(f) != n) {
        tg_error_quiet("tg_trainer_load", "%s: the file holds %d tensors, the model %d parameters", path, tg_st_count(f), n);
        return -1;
    }
    return 0;
}

int tg_trainer_load(tg_trainer *tr, const char *path, tg_st_file **meta) {
    static const char *fn = "tg_trainer_load";
    if (meta) *meta = NULL;
    if (!tr || !tr->params || !path) {
        tg_error_quiet(fn, "%s", !path ? "path is NULL" : "the trainer is not set up");
        return -1;
    }
    tg_clear_error();
    tg_st_file *f = tg_st_load(path);
    if (!f) return -1;
    const char *mark = tg_st_meta(f, CKPT_MARK), *st = tg_st_meta(f, "step"), *acc = tg_st_meta(f, "epoch_acc"),
               *early = tg_st_meta(f, "early");
    long long step = -1, eb = -1, be = -1, bad = -1;
    double el = 0, bm = 0;
    tg_rng r;
    int used = 0;
    if (!mark || strcmp(mark, "1") != 0) {
        tg_error_quiet(fn, "%s: not a training checkpoint (metadata '" CKPT_MARK "' is %s)", path, mark ? mark : "missing");
        goto fail;
    }
    if (!st || sscanf(st, "%lld%n", &step, &used) != 1 || st[used] || step < 0 || !tg__rng_from_str(tg_st_meta(f, "rng"), &r) ||
        !acc || sscanf(acc, "%lf %lld", &el, &eb) != 2 || eb < 0 || !early ||
        sscanf(early, "%lf %lld %lld", &bm, &be, &bad) != 3 || be < 0 || bad < 0) {
        tg_error_quiet(fn, "%s: the training state (metadata step, rng, epoch_acc, early) is missing or invalid", path);
        goto fail;
    }
    if (check_params(tr, f, path)) goto fail;
    /* validated in full by each call before it changes anything: the optimizer (and schedule), then
     * the parameters (checked above, so this copy cannot fail on a mismatch) */
    if (tg__ckpt_read_optim(fn, path, f, tr->opt, tr->opts.sched) || tg_params_load(tr->params, path)) goto fail;
    tr->step = step;
    tr->rng = r;
    tr->epoch_loss = el;
    tr->epoch_batches = eb;
    tr->best_metric = bm;
    tr->best_epoch = be;
    tr->bad_epochs = bad;
    tr->stopped = false;
    if (meta) *meta = f;
    else tg_st_free(f);
    return 0;
fail:
    tg_st_free(f);
    return -1;
}
