/* tools/trainer.c - the training loop shared by train, compare and the main job (see trainer.h). */
#include "tools/trainer.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <tapegrad/autograd.h>
#include <tapegrad/ops.h>

#include "tools/cli.h"
#include "tools/train_dist.h"
#include "tools/datatask.h"

#define DATA_STREAM 0xda7a5eedULL  /* the data generator's seed is seed ^ this */

static tg_tensor *step_loss(tg_trainer *lt, tg_rng *rng, void *user);
static int step_scored(tg_trainer *lt, double *loss, void *user);

bool optim_name_ok(const char *name, char *err, size_t errlen) {
    if (tg_optim_kind_from_name(name) != TG_OPTIM_KIND_COUNT) return true;
    char known[256];
    snprintf(err, errlen, "unknown optimizer '%s' (known: %s)", name ? name : "(null)",
             tg_optim_kind_list(known, sizeof known, ", "));
    return false;
}

void train_config_fill_defaults(train_config *cfg) {
    task_defaults d = task_defaults_of(cfg->task);
    if (cfg->seq <= 0) cfg->seq = d.seq;
    if (cfg->hidden <= 0) cfg->hidden = d.hidden;
    if (cfg->batch <= 0) cfg->batch = d.batch;
    if (cfg->eval_batch <= 0) cfg->eval_batch = cfg->batch;
    if (cfg->steps <= 0) cfg->steps = d.steps;
    if (cfg->lr <= 0) cfg->lr = d.lr;
    if (cfg->layers <= 0) cfg->layers = 1;
    if (!cfg->optim) cfg->optim = "adam";
    if (!cfg->cell) cfg->cell = "lstm";
}

static void curve_free(train_curve *c) {
    free(c->step);
    free(c->loss);
    free(c->seconds);
    memset(c, 0, sizeof *c);
}

static int curve_push(train_curve *c, int64_t step, double loss, double secs) {
    if (c->n == c->cap) {
        int cap = c->cap ? 2 * c->cap : 256;
        int64_t *s = realloc(c->step, (size_t)cap * sizeof *s);
        if (s) c->step = s;
        double *l = realloc(c->loss, (size_t)cap * sizeof *l);
        if (l) c->loss = l;
        double *t = realloc(c->seconds, (size_t)cap * sizeof *t);
        if (t) c->seconds = t;
        if (!s || !l || !t) return -1;
        c->cap = cap;
    }
    c->step[c->n] = step;
    c->loss[c->n] = loss;
    c->seconds[c->n] = secs;
    c->n++;
    return 0;
}

static void lib_err(char *err, size_t n, const char *what) {
    snprintf(err, n, "%s%s%s", what, tg_error_pending() ? ": " : "", tg_error_pending() ? tg_last_error() : "");
    tg_clear_error();
}

static int make_optimizer(trainer *tr, char *err, size_t errlen) {
    if (!optim_name_ok(tr->cfg.optim, err, errlen)) return -1;
    tg_optim_kind kind = tg_optim_kind_from_name(tr->cfg.optim);
    tg_optim_opts o = tg_optim_defaults(kind);
    o.lr = tr->cfg.lr;
    tg_clear_error();
    tr->opt = tg_optim_new_params(kind, tr->model->params, &o);
    if (!tr->opt) { lib_err(err, errlen, "cannot create the optimizer"); return -1; }
    return 0;
}

const char *sched_every_name(sched_every e) {
    return e == SCHED_EVERY_STEP ? "step" : e == SCHED_EVERY_EPOCH ? "epoch" : "auto";
}

int sched_every_from_name(const char *name) {
    for (int e = SCHED_AUTO; name && e <= SCHED_EVERY_EPOCH; e++)
        if (strcmp(name, sched_every_name((sched_every)e)) == 0) return e;
    return SCHED_AUTO - 1;
}

/* The library's message without its "tg_sched_spec: " prefix (the spec's own checks). */
static void sched_err(char *err, size_t n, const char *spec) {
    const char *m = tg_error_pending() ? tg_last_error() : "out of memory";
    const char *pre = "tg_sched_spec: ";
    if (strncmp(m, pre, strlen(pre)) == 0) m += strlen(pre);
    snprintf(err, n, "--sched %s: %s", spec, m);
    tg_clear_error();
}

/* The schedule `spec` over the optimizer, stepped as `every` says, over this run's length (the default
 * of T_max, total_steps; a resumed run's canonical spec has them all). Returns 0 or -1 + err. */
static int sched_create(trainer *tr, const char *spec, sched_every every, char *err, size_t errlen) {
    data_src *d = task_data(tr->task);
    bool mode_max = d && !data_lower_better(d);
    tg_sched_kind kind;
    tg_clear_error();
    if (tg_sched_spec_check(spec, 1, mode_max, &kind, NULL, 0)) { sched_err(err, errlen, spec); return -1; }
    bool per_epoch = every == SCHED_EVERY_EPOCH || (every == SCHED_AUTO && d && !tg_sched_spec_per_step(kind));
    if (kind == TG_SCHED_PLATEAU) {
        if (!d) {
            snprintf(err, errlen, "--sched plateau lowers the lr when the validation metric stops improving: it needs "
                                  "--data with --val > 0 (task %s has no validation set)", tr->cfg.task);
            return -1;
        }
        if (data_size(d, DATA_VAL) == 0) {
            snprintf(err, errlen, "--sched plateau needs the validation metric: give --val > 0 (with --val 0 there is none)");
            return -1;
        }
        if (every == SCHED_EVERY_STEP) {
            snprintf(err, errlen, "--sched plateau steps at the end of each epoch, on the validation metric: not with "
                                  "--sched-every step");
            return -1;
        }
        per_epoch = true;
    }
    int64_t per = task_epoch_steps(tr->task, tr->cfg.batch);
    int64_t length = per_epoch ? (tr->cfg.steps + per - 1) / per : tr->cfg.steps;
    tr->sched = tg_sched_from_spec(tr->opt, spec, length, mode_max, tr->sched_spec, sizeof tr->sched_spec);
    if (!tr->sched) { sched_err(err, errlen, spec); return -1; }
    tr->sched_per_epoch = per_epoch;
    /* every step: the library's loop steps it right after the optimizer (<tapegrad/trainer.h>) */
    tr->loop.opts.sched = per_epoch ? NULL : tr->sched;
    tr->loop.opts.sched_per_epoch = false;
    return 0;
}

int trainer_start_sched(trainer *tr, char *err, size_t errlen) {
    if (!tr->cfg.sched || tr->sched) return 0;
    return sched_create(tr, tr->cfg.sched, tr->cfg.sched_every, err, errlen) ||
                   trainer_check_sched_length(tr, NULL, err, errlen)
               ? -1
               : 0;
}

int trainer_check_sched_length(const trainer *tr, const char *resumed, char *err, size_t errlen) {
    if (!tr->sched) return 0;
    int64_t left = tg_sched_steps_left(tr->sched);
    if (left == INT64_MAX) return 0;
    int64_t per = tr->sched_per_epoch ? task_epoch_steps(tr->task, tr->cfg.batch) : 1;
    int64_t takes = tr->cfg.steps / per - tr->step / per; /* stepped at every multiple of per */
    if (takes <= left) return 0;
    int64_t most = (tr->step / per + left + 1) * per - 1; /* the largest --steps that fits */
    char every[64] = "every step";
    if (per > 1) snprintf(every, sizeof every, "every epoch: %lld steps", (long long)per);
    if (!resumed)
        snprintf(err, errlen, "--sched %s ends after %lld schedule steps (onecycle's total_steps), but this run steps it "
                              "%lld times (%s, up to --steps %lld): give total_steps=%lld or more, or --steps %lld at most",
                 tr->sched_spec, (long long)left, (long long)takes, every, (long long)tr->cfg.steps, (long long)takes,
                 (long long)most);
    else
        snprintf(err, errlen, "%s: the checkpoint's schedule %s has %lld schedule steps left (onecycle's total_steps) at "
                              "step %lld, but --steps %lld steps it %lld more times (%s): resume with --steps %lld at most",
                 resumed, tr->sched_spec, (long long)left, (long long)tr->step, (long long)tr->cfg.steps,
                 (long long)takes, every, (long long)most);
    return -1;
}

/* The estimate of a training step (memory.h): the recurrent stack, the head, the optimizer's state
 * (two slots per parameter: Adam's m and v, the most any built-in optimizer keeps), the tape over the
 * task's T steps (read from one batch of one sequence) and the batch itself. Refuses, before the
 * model exists, what does not fit in --max-memory or the machine. */
static int trainer_mem_check(trainer *tr, char *err, size_t errlen) {
    int64_t T, B = tr->cfg.batch;
    double per_seq;
    const data_src *d = task_data(tr->task);
    if (d) { /* the user's data: its longest sequence (a probe batch would move the saved batcher) */
        T = tg_dataset_max_length(data_part_set(d, DATA_TRAIN));
        per_seq = (double)(T * data_inputs(d)) + (double)(data_loss_kind(d) == TASK_LOSS_CE ? T : data_outputs(d));
    } else {
        task_batch one;
        tg_rng r;
        tg_rng_seed(&r, 1);
        if (task_make_batch(tr->task, &r, 1, &one)) { snprintf(err, errlen, "out of memory making a batch"); return -1; }
        T = tg_dim(one.x, 0);
        per_seq = (double)tg_numel(one.x) + (one.target ? (double)tg_numel(one.target) : (double)T);
        task_batch_clear(&one);
    }
    const tg_cell *cell = tg_cell_by_name(tr->cfg.cell);
    if (!cell) { cli_unknown_cell(err, errlen, tr->cfg.cell); return -1; }
    double item = (double)tg_itemsize(tr->cfg.dtype), O = (double)task_output_size(tr->task);
    double H = (double)(tr->cfg.proj ? tr->cfg.proj : tr->cfg.hidden); /* the head's input */
    tg_rnn_config rc = {.input_size = task_input_size(tr->task), .hidden_size = tr->cfg.hidden,
                        .num_layers = (int)tr->cfg.layers, .dtype = tr->cfg.dtype,
                        .proj_size = tr->cfg.proj > 0 && tr->cfg.proj < tr->cfg.hidden && cell->proj ? tr->cfg.proj : 0};
    tg_mem_estimate e;
    if (tg_rnn_mem_estimate(cell, &rc, T, B, 2, &e)) { lib_err(err, errlen, "bad sizes"); return -1; }
    double head = O * (H + 1) * item;
    e.params += head;
    e.grads += head;
    e.optim += 2 * head;
    e.tape += 3.0 * (double)T * (double)B * O * item; /* the head's output, the loss's saved tensors */
    e.data = per_seq * (double)B * item;
    tg_mem_sum(&e);
    return tg_mem_check(&e, cli_max_memory, err, errlen);
}

int trainer_init(trainer *tr, const train_config *cfg, tg_model *preloaded, char *err, size_t errlen) {
    memset(tr, 0, sizeof *tr);
    tr->cfg = *cfg;
    train_config_fill_defaults(&tr->cfg);
    tr->task = task_new(tr->cfg.task, &(task_opts){.seq = tr->cfg.seq, .text = tr->cfg.text, .dtype = tr->cfg.dtype,
                                                    .eval_batch = tr->cfg.eval_batch, .data = tr->cfg.data},
                        err, errlen);
    if (!tr->task) { tg_model_free(preloaded); return -1; }
    if (trainer_mem_check(tr, err, errlen)) { tg_model_free(preloaded); trainer_free(tr); return -1; }
    if (preloaded) {
        tr->model = preloaded;
        if (preloaded->cfg.input_size != task_input_size(tr->task) ||
            preloaded->cfg.output_size != task_output_size(tr->task)) {
            snprintf(err, errlen, "the model has %lld inputs and %lld outputs, task %s needs %lld and %lld",
                     (long long)preloaded->cfg.input_size, (long long)preloaded->cfg.output_size, tr->cfg.task,
                     (long long)task_input_size(tr->task), (long long)task_output_size(tr->task));
            trainer_free(tr);
            return -1;
        }
    } else {
        tg_model_config mc = {.input_size = task_input_size(tr->task), .hidden_size = tr->cfg.hidden,
                           .output_size = task_output_size(tr->task), .layers = (int)tr->cfg.layers,
                           .dtype = tr->cfg.dtype, .set_forget_bias = tr->cfg.set_forget_bias,
                           .forget_bias = tr->cfg.forget_bias, .dropout = tr->cfg.dropout,
                           .zoneout = tr->cfg.zoneout, .proj_size = tr->cfg.proj};
        snprintf(mc.cell, sizeof mc.cell, "%s", tr->cfg.cell);
        tr->model = tg_model_new(&mc, (uint64_t)tr->cfg.seed, err, errlen);
        if (!tr->model) { trainer_free(tr); return -1; }
    }
    if (make_optimizer(tr, err, errlen)) { trainer_free(tr); return -1; }
    /* the step itself is the library's; hooks.user is set by trainer_run */
    tg_train_opts lo = {.clip = tr->cfg.clip, .seed = (uint64_t)tr->cfg.seed ^ DATA_STREAM};
    if (tg_trainer_init(&tr->loop, tr->model->params, tr->opt, &lo,
                        &(tg_train_hooks){.loss = step_loss, .after_backward = step_scored})) {
        lib_err(err, errlen, "cannot set up the training loop");
        trainer_free(tr);
        return -1;
    }
    if (tr->cfg.steps <= 0) tr->cfg.steps = 10 * task_epoch_steps(tr->task, tr->cfg.batch); /* data: 10 epochs */
    tr->log_every = tr->cfg.steps / 200 > 1 ? tr->cfg.steps / 200 : 1;
    tr->best_metric = NAN;
    return 0;
}

static void epochs_free(epoch_curve *c) {
    free(c->epoch);
    free(c->train_loss);
    free(c->train_metric);
    free(c->val_loss);
    free(c->val_metric);
    memset(c, 0, sizeof *c);
}

static int epochs_push(epoch_curve *c, int64_t epoch, double tl, double tm, double vl, double vm) {
    if (c->n == c->cap) {
        int cap = c->cap ? 2 * c->cap : 64;
        int64_t *e = realloc(c->epoch, (size_t)cap * sizeof *e);
        if (e) c->epoch = e;
        double **cols[4] = {&c->train_loss, &c->train_metric, &c->val_loss, &c->val_metric};
        bool ok = e != NULL;
        for (int k = 0; k < 4; k++) {
            double *v = realloc(*cols[k], (size_t)cap * sizeof *v);
            if (v) *cols[k] = v;
            else ok = false;
        }
        if (!ok) return -1;
        c->cap = cap;
    }
    c->epoch[c->n] = epoch;
    c->train_loss[c->n] = tl;
    c->train_metric[c->n] = tm;
    c->val_loss[c->n] = vl;
    c->val_metric[c->n] = vm;
    c->n++;
    return 0;
}

static void resume_strings_free(resume_strings *rs);

static void best_free(trainer *tr) {
    if (!tr->best_params) return;
    for (int i = 0; i < tg_params_count(tr->model->params); i++) free(tr->best_params[i]);
    free(tr->best_params);
    tr->best_params = NULL;
}

void trainer_free(trainer *tr) {
    if (!tr) return;
    if (tr->model) best_free(tr);
    epochs_free(&tr->epochs);
    tg_trainer_free(&tr->loop);
    tg_sched_free(tr->sched);
    tg_optim_free(tr->opt);
    tg_model_free(tr->model);
    task_free(tr->task);
    curve_free(&tr->curve);
    resume_strings_free(tr->resumed);
    memset(tr, 0, sizeof *tr);
}

progress_mode progress_auto(void) { return isatty(STDOUT_FILENO) ? PROGRESS_TTY : PROGRESS_LINES; }

static void fmt_time(char *buf, size_t n, double s) {
    if (!isfinite(s) || s < 0) snprintf(buf, n, "?");
    else if (s < 10) snprintf(buf, n, "%.1fs", s);
    else if (s < 60) snprintf(buf, n, "%.0fs", s);
    else if (s < 3600) snprintf(buf, n, "%dm%02ds", (int)(s / 60), (int)fmod(s, 60));
    else snprintf(buf, n, "%dh%02dm", (int)(s / 3600), (int)fmod(s / 60, 60));
}

static void show_progress(const trainer *tr, const progress *p, int64_t until, int64_t start_step, double elapsed,
                          bool final) {
    double rate = elapsed > 0 ? (double)(tr->step - start_step) / elapsed : 0;
    double loss = tr->window_n ? tr->window_sum / (double)tr->window_n : tr->last_loss;
    char eta[32];
    fmt_time(eta, sizeof eta, rate > 0 ? (double)(until - tr->step) / rate : NAN);
    int w = 1;
    for (int64_t u = until; u >= 10; u /= 10) w++;
    char line[256];
    snprintf(line, sizeof line, "%s%s%sstep %*lld/%lld  loss %-9.5g %6.0f steps/s  %s %s", p->label ? "[" : "",
             p->label ? p->label : "", p->label ? "] " : "", w, (long long)tr->step, (long long)until, loss, rate,
             final ? "took" : "ETA", final ? (fmt_time(eta, sizeof eta, elapsed), eta) : eta);
    if (p->mode == PROGRESS_TTY) {
        printf("\r%-78s%s", line, final ? "\n" : "");
    } else {
        printf("%s\n", line);
    }
    fflush(stdout);
}

/* Keeps (copies of) the parameters' values: the model of the best epoch. */
static int best_keep(trainer *tr) {
    int n = tg_params_count(tr->model->params);
    if (!tr->best_params && !(tr->best_params = calloc((size_t)n, sizeof *tr->best_params))) return -1;
    for (int i = 0; i < n; i++) {
        tg_tensor *t = tg_params_at(tr->model->params, i);
        size_t bytes = (size_t)tg_numel(t) * tg_itemsize(tg_dtype_of(t));
        if (!tr->best_params[i] && !(tr->best_params[i] = malloc(bytes))) return -1;
        memcpy(tr->best_params[i], tg_data(t), bytes);
    }
    return 0;
}

int trainer_restore_best(trainer *tr) {
    if (!tr->best_params) return 0;
    for (int i = 0; i < tg_params_count(tr->model->params); i++) {
        tg_tensor *t = tg_params_at(tr->model->params, i);
        memcpy(tg_data(t), tr->best_params[i], (size_t)tg_numel(t) * tg_itemsize(tg_dtype_of(t)));
    }
    return 1;
}

/* The end of an epoch of a data task: validation metric, the epoch's line, CSV row, early stopping. */
static int epoch_end(trainer *tr, const progress *p, int64_t until, double seconds, char *err, size_t errlen) {
    data_src *d = task_data(tr->task);
    int64_t per = task_epoch_steps(tr->task, tr->cfg.batch), epoch = tr->step / per, epochs = (until + per - 1) / per;
    double tl = tr->ep_n > 0 ? tr->ep_loss / tr->ep_n : NAN, tm = tr->ep_den > 0 ? tr->ep_num / tr->ep_den : NAN;
    data_eval ve = {NAN, NAN, 0};
    bool has_val = data_size(d, DATA_VAL) > 0;
    if (has_val && data_evaluate(d, tr->model, DATA_VAL, &ve, err, errlen)) return -1;
    tr->ep_loss = tr->ep_n = tr->ep_num = tr->ep_den = 0;
    if (tr->sched && tr->sched_per_epoch) { /* before a best epoch's checkpoint, which must hold it stepped */
        tg_clear_error();
        tg_sched_step_metric(tr->sched, has_val ? ve.metric : tl); /* the metric: plateau's; the others ignore it */
        if (tg_error_pending()) { lib_err(err, errlen, "the learning-rate schedule's step failed"); return -1; }
    }
    if (epochs_push(&tr->epochs, epoch, tl, tm, ve.loss, ve.metric)) { snprintf(err, errlen, "out of memory"); return -1; }
    bool pct = data_metric_percent(d), lower = data_lower_better(d);
    bool better = has_val && (isnan(tr->best_metric) || (lower ? ve.metric < tr->best_metric : ve.metric > tr->best_metric));
    if (better) {
        tr->best_metric = ve.metric;
        tr->best_epoch = epoch;
        tr->bad_epochs = 0;
        if (tr->cfg.patience > 0) {
            if (best_keep(tr)) { snprintf(err, errlen, "out of memory"); return -1; }
            if (tr->cfg.best_path && trainer_save(tr, tr->cfg.best_path, err, errlen)) return -1;
        }
    } else if (has_val) {
        tr->bad_epochs++;
    }
    const char *m = data_metric_short(d);
    double k = pct ? 100 : 1;
    if (tr->csv) { /* flushed as the epoch ends: a run killed later keeps every finished epoch's row */
        fprintf(tr->csv, "%lld,%lld,%.4f,%.9g,%.9g,%.9g,%.9g,%.9g\n", (long long)epoch, (long long)tr->step, seconds, tl,
                tm, ve.loss, ve.metric, tr->step_lr);
        fflush(tr->csv);
    }
    if (p->mode != PROGRESS_OFF) {
        char line[320];
        int w = 1;
        for (int64_t u = epochs; u >= 10; u /= 10) w++;
        int n = snprintf(line, sizeof line, "epoch %*lld/%lld  loss %.4g  %s %.4g%s", w, (long long)epoch,
                         (long long)epochs, tl, m, k * tm, pct ? "%" : "");
        if (has_val && n > 0 && (size_t)n < sizeof line)
            n += snprintf(line + n, sizeof line - (size_t)n, "  val_loss %.4g  val_%s %.4g%s%s", ve.loss, m,
                          k * ve.metric, pct ? "%" : "", better ? "  (best)" : "");
        if (tr->sched && n > 0 && (size_t)n < sizeof line) snprintf(line + n, sizeof line - (size_t)n, "  lr %.4g", tr->step_lr);
        printf("%s%-78s\n", p->mode == PROGRESS_TTY ? "\r" : "", line);
    }
    if (tr->cfg.patience > 0 && tr->bad_epochs >= tr->cfg.patience) {
        tr->stopped = true;
        if (p->mode != PROGRESS_OFF)
            printf("early stop: no better val_%s for %ld epochs; the best was epoch %lld (val_%s %.4g%s)\n", m,
                   tr->cfg.patience, (long long)tr->best_epoch, m, k * tr->best_metric, pct ? "%" : "");
    }
    fflush(stdout);
    return 0;
}

/* What the library loop's hooks need during trainer_run. */
typedef struct run_ctx {
    trainer *tr;
    bool every, masks;        /* a prediction at every step; dropout/zoneout masks from the data stream */
    task_batch b;             /* the step's batch, cleared after the step */
    tg_tensor *pred;          /* its prediction (tape-owned) */
    bool have_batch;
    double share;             /* MPI: this rank's rows of the global batch, and their share of the loss */
    char *err;                /* the first error of a hook (else the library's message is used) */
    size_t errlen;
} run_ctx;

static tg_tensor *step_loss(tg_trainer *lt, tg_rng *rng, void *user) {
    (void)lt;
    run_ctx *c = user;
    trainer *tr = c->tr;
    c->share = 1;
    tr->step_lr = tg_optim_lr(tr->opt, 0);
    if (task_make_batch(tr->task, rng, tr->cfg.batch, &c->b)) {
        snprintf(c->err, c->errlen, "%s", *task_error(tr->task) ? task_error(tr->task) : "out of memory");
        return NULL;
    }
    c->have_batch = true;
    if (tr->dist && train_dist_slice(tr->dist, &c->b, c->every, &c->share)) {
        snprintf(c->err, c->errlen, "%s", *task_error(tr->task) ? task_error(tr->task) : "out of memory");
        return NULL;
    }
    c->pred = tg_model_forward_len(tr->model, c->b.x, c->b.lengths, c->every, NULL, c->masks ? rng : NULL);
    return task_loss_of(tr->task, c->pred, &c->b);
}

static int step_scored(tg_trainer *lt, double *loss, void *user) {
    (void)lt;
    run_ctx *c = user;
    trainer *tr = c->tr;
    if (tr->dist && tg_dist_allreduce_grads(tr->dist, tr->model->params, c->share, loss)) { /* loss: the global one */
        lib_err(c->err, c->errlen, "gradient all-reduce failed");
        return -1;
    }
    data_src *data = task_data(tr->task);
    if (data) data_batch_score(data, c->pred, &c->b, &tr->ep_num, &tr->ep_den);
    return 0;
}

int trainer_run(trainer *tr, int64_t until, const progress *p, char *err, size_t errlen) {
    progress none = {PROGRESS_OFF, NULL};
    if (!p) p = &none;
    int64_t start_step = tr->step, total = until - start_step;
    int64_t line_every = total / 10 > 0 ? total / 10 : 1;
    double t0 = cli_now(), last_shown = t0;
    int64_t B = tr->cfg.batch;
    bool every = task_every_step(tr->task);
    data_src *data = task_data(tr->task);
    int64_t epoch_steps = task_epoch_steps(tr->task, B);
    run_ctx ctx = {.tr = tr, .every = every, .err = err, .errlen = errlen};
    /* dropout / zoneout masks come from the data stream's generator, which checkpoints save */
    ctx.masks = tr->cfg.dropout > 0 || tr->cfg.zoneout > 0;
    tr->loop.hooks.user = &ctx;
    tr->loop.opts.detect_anomaly = tr->detect_anomaly;
    tr->loop.step = tr->step;
    err[0] = 0;
    while (tr->step < until && !tr->stopped) {
        /* one step of the library's loop (<tapegrad/trainer.h>): the hooks below make the batch and score it */
        int rc = tg_trainer_step(&tr->loop);
        if (ctx.have_batch) task_batch_clear(&ctx.b);
        ctx.have_batch = false;
        if (rc && tr->loop.step == tr->step) { /* the step did not complete */
            if (p->mode == PROGRESS_TTY) printf("\n");
            if (!err[0]) {
                char what[64];
                snprintf(what, sizeof what, "training step %lld failed", (long long)tr->step + 1);
                lib_err(err, errlen, what);
            }
            return -1;
        }
        tr->step = tr->loop.step;
        double lv = tr->last_loss = tr->loop.last_loss;
        if (rc && isfinite(lv)) { /* completed, then the per-step schedule failed */
            if (p->mode == PROGRESS_TTY) printf("\n");
            lib_err(err, errlen, "the learning-rate schedule's step failed");
            return -1;
        }
        if (rc) { /* completed with a loss that is not finite */
            tg_clear_error();
            if (p->mode == PROGRESS_TTY) printf("\n");
            snprintf(err, errlen, "the loss became %g at step %lld (try a smaller --lr or --clip 1)", lv,
                     (long long)tr->step);
            return -1;
        }
        tr->window_sum += lv;
        tr->window_n++;
        tr->ep_loss += lv;
        tr->ep_n += 1;
        double now = cli_now();
        if (data && tr->step % epoch_steps == 0) {
            if (epoch_end(tr, p, until, tr->seconds + (now - t0), err, errlen)) return -1;
            now = cli_now();
            if (tr->stopped) {
                until = tr->step;
                if (p->mode == PROGRESS_TTY) last_shown = 0;
            }
        } else if (!data && tr->sched && tr->sched_per_epoch && tr->step % epoch_steps == 0) {
            tg_clear_error();
            tg_sched_step(tr->sched);
            if (tg_error_pending()) { lib_err(err, errlen, "the learning-rate schedule's step failed"); return -1; }
        }
        if (tr->step % tr->log_every == 0) {
            double mean = tr->window_sum / (double)tr->window_n;
            if (curve_push(&tr->curve, tr->step, mean, tr->seconds + (now - t0))) {
                snprintf(err, errlen, "out of memory");
                return -1;
            }
            if (tr->csv && !data)
                fprintf(tr->csv, "%lld,%.9g,%.4f,%.9g\n", (long long)tr->step, mean, tr->seconds + (now - t0), tr->step_lr);
            tr->window_sum = 0;
            tr->window_n = 0;
        }
        if (p->mode == PROGRESS_TTY && (now - last_shown > 0.1 || tr->step == until)) {
            show_progress(tr, p, until, start_step, now - t0, false);
            last_shown = now;
        } else if (p->mode == PROGRESS_LINES && ((tr->step - start_step) % line_every == 0 || tr->step == until)) {
            show_progress(tr, p, until, start_step, now - t0, false);
        }
    }
    double elapsed = cli_now() - t0;
    tr->seconds += elapsed;
    if (p->mode == PROGRESS_TTY && total > 0) show_progress(tr, p, until, start_step, elapsed, true);
    if (tr->csv) fflush(tr->csv);
    return 0;
}

/* ---- checkpoints ---------------------------------------------------------------------------------- */

int trainer_save(const trainer *tr, const char *path, char *err, size_t errlen) {
    enum { OWN = 11, DATA_MAX = 24, EXTRA = 4, SCHED = 2 };
    char vals[OWN][600];
    const char *keys[OWN] = {"task", "seq", "batch", "optim", "lr", "clip", "seed", "steps", "log_every", "text",
                             "vocab"};
    snprintf(vals[0], sizeof vals[0], "%s", tr->cfg.task);
    snprintf(vals[1], sizeof vals[1], "%ld", task_seq(tr->task));
    snprintf(vals[2], sizeof vals[2], "%ld", tr->cfg.batch);
    snprintf(vals[3], sizeof vals[3], "%s", tr->cfg.optim);
    snprintf(vals[4], sizeof vals[4], "%.17g", tr->cfg.lr);
    snprintf(vals[5], sizeof vals[5], "%.17g", tr->cfg.clip);
    snprintf(vals[6], sizeof vals[6], "%ld", tr->cfg.seed);
    snprintf(vals[7], sizeof vals[7], "%ld", tr->cfg.steps);
    snprintf(vals[8], sizeof vals[8], "%lld", (long long)tr->log_every);
    snprintf(vals[9], sizeof vals[9], "%s", tr->cfg.text ? tr->cfg.text : "");
    int V = 0;
    const unsigned char *vocab = task_vocab(tr->task, &V);
    vals[10][0] = 0;
    for (int k = 0; vocab && k < V; k++) snprintf(vals[10] + 2 * k, 3, "%02x", vocab[k]);
    const char *meta[2 * (OWN + DATA_MAX + EXTRA + SCHED)];
    int n = 0;
    for (int i = 0; i < OWN; i++, n++) { meta[2 * n] = keys[i]; meta[2 * n + 1] = vals[i]; }
    /* the schedule (its counters go into the optimizer file): rebuilt from its canonical spec on resume */
    const char *sk[SCHED] = {"sched", "sched_every"};
    const char *sv[SCHED] = {tr->sched_spec, sched_every_name(tr->sched_per_epoch ? SCHED_EVERY_EPOCH : SCHED_EVERY_STEP)};
    for (int i = 0; tr->sched && i < SCHED; i++, n++) { meta[2 * n] = sk[i]; meta[2 * n + 1] = sv[i]; }
    /* data tasks: the source's options and statistics, the batcher's position, the epoch in progress and
     * early stopping, so that a resumed run continues exactly */
    data_src *d = task_data(tr->task);
    char *bstate = NULL, epoch_acc[200], early[120], patience[32];
    if (d) {
        n += data_meta(d, meta + 2 * n, DATA_MAX);
        bstate = data_batcher_state(d);
        if (!bstate) { snprintf(err, errlen, "out of memory"); return -1; }
        snprintf(epoch_acc, sizeof epoch_acc, "%.17g %.17g %.17g %.17g", tr->ep_loss, tr->ep_n, tr->ep_num, tr->ep_den);
        snprintf(early, sizeof early, "%.17g %lld %lld", tr->best_metric, (long long)tr->best_epoch,
                 (long long)tr->bad_epochs);
        snprintf(patience, sizeof patience, "%ld", tr->cfg.patience);
        const char *ek[EXTRA] = {"batcher", "epoch_acc", "early", "patience"};
        const char *ev[EXTRA] = {bstate, epoch_acc, early, patience};
        for (int i = 0; i < EXTRA; i++, n++) { meta[2 * n] = ek[i]; meta[2 * n + 1] = ev[i]; }
    }
    int rc = tg_ckpt_save_sched(path, tr->model, tr->opt, tr->sched, tr->step, &tr->loop.rng, n, meta, err, errlen);
    free(bstate);
    return rc;
}

/* The strings a resumed run's train_config points at (read from the checkpoint), owned by its trainer. */
enum { RS_TASK, RS_OPTIM, RS_TEXT, RS_CELL, RS_DATA, N_DATA_KEYS = 12, RS_COUNT = RS_DATA + N_DATA_KEYS };
struct resume_strings {
    char *s[RS_COUNT]; /* task, optim, text ("" for none), cell, then a data task's files, columns, statistics */
    data_opts dopt;    /* a data task's options, over s[RS_DATA..] */
};

static void resume_strings_free(resume_strings *rs) {
    for (int k = 0; rs && k < RS_COUNT; k++) free(rs->s[k]);
    free(rs);
}

int trainer_resume(trainer *tr, const train_config *user, const char *path, char *err, size_t errlen) {
    memset(tr, 0, sizeof *tr);
    tg_st_file *f = NULL;
    tg_model *m = tg_ckpt_load_model(path, &f, err, errlen);
    if (!m) return -1;
    train_config cfg = *user;
    const char *task = tg_st_meta(f, "task"), *optim = tg_st_meta(f, "optim"), *text = tg_st_meta(f, "text");
    const char *v;
    if (!task || !task_known(task) || tg_optim_kind_from_name(optim) == TG_OPTIM_KIND_COUNT) {
        snprintf(err, errlen, "%s: the checkpoint does not say which task / optimizer it was trained with", path);
        tg_model_free(m);
        tg_st_free(f);
        return -1;
    }
    /* the strings must outlive f: copies owned by the trainer (tr->resumed, freed by trainer_free) */
    resume_strings *rs = calloc(1, sizeof *rs);
    const char *dk[N_DATA_KEYS] = {"target", "data", "labels", "test_data", "test_labels", "seq_column",
                                   "label_column", "feature_columns", "norm", "ynorm", "val", "window"};
    bool data = strcmp(task, "data") == 0;
    for (int k = 0; data && rs && k < N_DATA_KEYS; k++)
        if (!tg_st_meta(f, dk[k])) {
            snprintf(err, errlen, "%s: the checkpoint's data description ('%s') is missing", path, dk[k]);
            resume_strings_free(rs);
            tg_model_free(m);
            tg_st_free(f);
            return -1;
        }
    const char *from[RS_COUNT] = {task, optim, text ? text : "", m->cfg.cell};
    for (int k = 0; data && k < N_DATA_KEYS; k++) from[RS_DATA + k] = tg_st_meta(f, dk[k]);
    for (int k = 0; rs && k < RS_COUNT; k++)
        if (from[k] && !(rs->s[k] = strdup(from[k]))) {
            resume_strings_free(rs);
            rs = NULL;
        }
    if (!rs) {
        snprintf(err, errlen, "out of memory");
        tg_model_free(m);
        tg_st_free(f);
        return -1;
    }
    cfg.task = rs->s[RS_TASK];
    cfg.optim = rs->s[RS_OPTIM];
    cfg.text = rs->s[RS_TEXT][0] ? rs->s[RS_TEXT] : NULL;
    cfg.cell = rs->s[RS_CELL];
    cfg.hidden = (long)m->cfg.hidden_size;
    cfg.layers = m->cfg.layers;
    cfg.dtype = m->cfg.dtype;
    cfg.set_forget_bias = m->cfg.set_forget_bias;
    cfg.forget_bias = m->cfg.forget_bias;
    cfg.dropout = m->cfg.dropout;
    cfg.zoneout = m->cfg.zoneout;
    cfg.proj = (long)m->cfg.proj_size;
    if ((v = tg_st_meta(f, "seq"))) cfg.seq = atol(v);
    if ((v = tg_st_meta(f, "batch"))) cfg.batch = atol(v);
    if ((v = tg_st_meta(f, "lr"))) cfg.lr = strtod(v, NULL);
    if ((v = tg_st_meta(f, "clip"))) cfg.clip = strtod(v, NULL);
    if ((v = tg_st_meta(f, "seed"))) cfg.seed = atol(v);
    int64_t log_every = (v = tg_st_meta(f, "log_every")) ? atoll(v) : 0;
    /* data tasks: the files, columns and statistics the checkpoint was trained with */
    if (data) {
        char **d = rs->s + RS_DATA;
        const char *hz = tg_st_meta(f, "horizon"), *ns = tg_st_meta(f, "idx_no_scale"), *pa = tg_st_meta(f, "patience"),
                   *nc = tg_st_meta(f, "classes");
        rs->dopt = (data_opts){.target = d[0], .path = d[1], .labels = d[2][0] ? d[2] : NULL,
                               .test_path = d[3][0] ? d[3] : NULL, .test_labels = d[4][0] ? d[4] : NULL,
                               .seq_column = d[5][0] ? d[5] : NULL, .label_column = d[6][0] ? d[6] : NULL,
                               .feature_columns = d[7][0] ? d[7] : NULL, .norm = d[8][0] ? d[8] : NULL,
                               .ynorm = d[9][0] ? d[9] : NULL, .val = strtod(d[10], NULL),
                               .window = atol(d[11]), .horizon = hz ? atol(hz) : 1,
                               .idx_no_scale = ns && strcmp(ns, "1") == 0, .seed = (uint64_t)cfg.seed,
                               .classes = nc ? atoll(nc) : 0,
                               .dtype = m->cfg.dtype};
        cfg.data = &rs->dopt;
        if (pa && !user->patience) cfg.patience = atol(pa);
    }
    if (trainer_init(tr, &cfg, m, err, errlen)) {
        resume_strings_free(rs);
        tg_st_free(f);
        return -1;
    }
    tr->resumed = rs;
    if (task_data(tr->task)) {
        const char *acc = tg_st_meta(f, "epoch_acc"), *early = tg_st_meta(f, "early");
        long long be = 0, bad = 0;
        if (!acc || sscanf(acc, "%lf %lf %lf %lf", &tr->ep_loss, &tr->ep_n, &tr->ep_num, &tr->ep_den) != 4 || !early ||
            sscanf(early, "%lf %lld %lld", &tr->best_metric, &be, &bad) != 3 ||
            data_batcher_restore(task_data(tr->task), tr->cfg.batch, tg_st_meta(f, "batcher"), err, errlen)) {
            if (!*err) snprintf(err, errlen, "%s: the checkpoint's training position (batcher, epoch) is invalid", path);
            tg_st_free(f);
            trainer_free(tr);
            return -1;
        }
        tr->best_epoch = be;
        tr->bad_epochs = bad;
    }
    if (log_every > 0) tr->log_every = log_every;
    /* charlm: the text must still give the vocabulary the model was trained on */
    int V = 0;
    const unsigned char *vocab = task_vocab(tr->task, &V);
    const char *hex = tg_st_meta(f, "vocab");
    if (vocab) {
        char now[520] = "";
        for (int k = 0; k < V; k++) snprintf(now + 2 * k, 3, "%02x", vocab[k]);
        if (!hex || strcmp(hex, now) != 0) {
            snprintf(err, errlen, "%s: the text file's characters differ from those the model was trained on", path);
            tg_st_free(f);
            trainer_free(tr);
            return -1;
        }
    }
    const char *sp = tg_st_meta(f, "sched"), *se = tg_st_meta(f, "sched_every");
    if (sp && *sp) { /* the schedule it was trained with, from its canonical spec; its state comes next */
        int every = sched_every_from_name(se);
        if (every <= SCHED_AUTO) {
            snprintf(err, errlen, "%s: the checkpoint's schedule has no valid 'sched_every' (%s)", path,
                     se ? se : "missing");
            tg_st_free(f);
            trainer_free(tr);
            return -1;
        }
        char serr[900];
        if (sched_create(tr, sp, (sched_every)every, serr, sizeof serr)) {
            snprintf(err, errlen, "%s: the checkpoint's schedule: %s", path, serr);
            tg_st_free(f);
            trainer_free(tr);
            return -1;
        }
    }
    int rc = tg_ckpt_load_train_state_sched(path, f, tr->opt, tr->sched, &tr->step, &tr->loop.rng, err, errlen);
    tg_st_free(f);
    if (rc) trainer_free(tr);
    return rc;
}

/* ---- reporting ------------------------------------------------------------------------------------ */

double metric_display(const task *t, double metric, const char **unit) {
    bool pct = task_metric_percent(t);
    if (unit) *unit = pct ? "%" : "";
    return pct ? 100 * metric : metric;
}

/* The error (metric, or 1 - accuracy) at least the task's margin below the baseline's. */
bool beats_baseline(const task *t, double metric) {
    bool lower = task_metric_lower_better(t);
    double err = lower ? metric : 1 - metric, base = lower ? task_metric_baseline(t) : 1 - task_metric_baseline(t);
    return err <= (1 - task_margin(t)) * base;
}

void format_metric(const task *t, double metric, char *buf, size_t n) {
    const char *u;
    double v = metric_display(t, metric, &u), b = metric_display(t, task_metric_baseline(t), &u);
    double base = task_metric_baseline(t);
    char rel[64] = "";
    if (task_metric_lower_better(t) && metric > 0 && metric < base) snprintf(rel, sizeof rel, "%.3gx lower, ", base / metric);
    snprintf(buf, n, "%s %.4g%s vs baseline %.4g%s (%s): %s%s (margin: %s at least %g%% below the baseline's)", task_metric_name(t),
             v, u, b, u, task_baseline_desc(t), rel, beats_baseline(t, metric) ? "beats the baseline" : "does NOT beat the baseline",
             task_metric_lower_better(t) ? task_metric_name(t) : "the error rate (1 - accuracy)", 100 * task_margin(t));
}

const char *loss_name(const task *t) {
    switch (task_loss_kind(t)) {
    case TASK_LOSS_MSE: return "MSE";
    case TASK_LOSS_CE: return "cross-entropy";
    case TASK_LOSS_BCE: return "binary cross-entropy";
    }
    return "?";
}

static void group_digits(char *buf, size_t n, int64_t v) {
    char raw[32];
    snprintf(raw, sizeof raw, "%lld", (long long)v);
    size_t len = strlen(raw), j = 0;
    for (size_t i = 0; i < len && j + 2 < n; i++) {
        buf[j++] = raw[i];
        if ((len - i - 1) % 3 == 0 && i + 1 < len) buf[j++] = ',';
    }
    buf[j] = 0;
}

void print_run_header(FILE *f, const trainer *tr, int threads) {
    char np[32];
    group_digits(np, sizeof np, tg_model_param_count(tr->model));
    data_src *d = task_data(tr->task);
    if (d) {
        const char *u;
        double b = metric_display(tr->task, task_metric_baseline(tr->task), &u);
        fprintf(f, "data, target %s: %s\n  %s\n  baseline: %s, %s %.4g%s\n", data_target_name(d),
                task_about(tr->task), task_data_desc(tr->task), data_baseline_desc(d), task_metric_name(tr->task), b, u);
    }
    else
        fprintf(f, "task %s: %s\n  --seq %ld (%s); data: %s\n", tr->cfg.task, task_about(tr->task), task_seq(tr->task),
                task_seq_meaning(tr->cfg.task), task_data_desc(tr->task));
    char proj[48] = "";
    if (tr->cfg.proj) snprintf(proj, sizeof proj, " projected to %ld", tr->cfg.proj);
    fprintf(f, "model: %s, %ld layer%s x %ld hidden%s + linear head, %s parameters, %s\n", tr->cfg.cell, tr->cfg.layers,
            tr->cfg.layers == 1 ? "" : "s", tr->cfg.hidden, proj, np, tg_dtype_name(tr->cfg.dtype));
    fprintf(f, "training: %s lr %g, clip %g, batch %ld, %ld steps, seed %ld, %d thread%s\n", tr->cfg.optim, tr->cfg.lr,
            tr->cfg.clip, tr->cfg.batch, tr->cfg.steps, tr->cfg.seed, threads, threads == 1 ? "" : "s");
    if (tr->sched)
        fprintf(f, "  lr schedule %s, stepped every %s\n", tr->sched_spec, tr->sched_per_epoch ? "epoch" : "step");
    if (tr->cfg.set_forget_bias) fprintf(f, "  forget-gate bias set to %g\n", tr->cfg.forget_bias);
    if (tr->cfg.dropout > 0)
        fprintf(f, "  dropout %g between layers%s\n", tr->cfg.dropout, tr->cfg.layers < 2 ? " (no effect with 1 layer)" : "");
    if (tr->cfg.zoneout > 0) fprintf(f, "  zoneout %g on every state (Krueger et al. 2016)\n", tr->cfg.zoneout);
    fflush(f);
}

void print_eval(FILE *f, const task *t, const task_eval *ev) {
    char line[512];
    format_metric(t, ev->metric, line, sizeof line);
    fprintf(f, "%s\n", line);
    if (ev->detail[0]) fprintf(f, "%s", ev->detail);
    fflush(f);
}

bool writable_path(const char *path) {
    char dir[4096];
    snprintf(dir, sizeof dir, "%s", path);
    char *slash = strrchr(dir, '/');
    if (!slash) snprintf(dir, sizeof dir, ".");
    else if (slash == dir) dir[1] = 0;
    else *slash = 0;
    if (access(dir, W_OK) != 0) return false;
    if (access(path, F_OK) == 0 && access(path, W_OK) != 0) return false;
    return true;
}
