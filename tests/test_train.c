/* tests/test_train.c - the library's training loop and checkpoints (<tapegrad/trainer.h>): a resumed run
 * equals an uninterrupted one bit for bit, bad checkpoints are refused with a message and change
 * nothing, early stopping keeps the best parameters, and failures name what failed. */
#include <criterion/criterion.h>

#include <math.h>
#include <stdio.h>
#include <string.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <tapegrad/tapegrad.h>

#include "helpers.h"

enum { T = 6, B = 8 };

/* The model of these tests: an LSTM (with dropout masks from the data stream) + a linear head that
 * predicts the mean of a sequence of numbers. */
typedef struct net {
    tg_rnn *rnn;
    tg_linear_layer *head;
    tg_params *params;
    tg_optim *opt;
    tg_sched *sched;
    tg_tensor *val_x, *val_y; /* a fixed validation batch */
    double *metrics;          /* evaluate: a scripted metric per epoch (NULL: the validation MSE) */
    int n_evals;
    bool nan_loss;            /* the loss hook returns NaN */
    double w_at[16];          /* after_epoch: head.weight[0] at the end of each epoch */
    double epoch_train_loss;  /* after_epoch: the sum of the epochs' mean training losses */
} net;

static tg_tensor *predict(const net *m, const tg_tensor *x, tg_rng *masks) {
    tg_tensor *y = tg_rnn_forward(m->rnn, x, &(tg_rnn_forward_opts){.train = masks != NULL, .rng = masks}, NULL);
    return tg_linear_layer_forward(m->head, tg_select(y, T - 1));
}

static tg_tensor *batch_loss(tg_trainer *tr, tg_rng *rng, void *user) {
    (void)tr;
    net *m = user;
    tg_tensor *x = tg_rand_uniform(rng, TG_F64, TG_SHAPE(T, B, 1), -1, 1);
    tg_tensor *loss = tg_mse_loss(predict(m, x, rng), tg_mean_axis(x, 0, false), TG_REDUCE_MEAN);
    tg_release(x);
    return m->nan_loss ? tg_mul_scalar(loss, NAN) : loss;
}

static int evaluate(tg_trainer *tr, double *metric, void *user) {
    (void)tr;
    net *m = user;
    if (m->metrics) {
        *metric = m->metrics[m->n_evals++];
        return 0;
    }
    tg_no_grad_begin();
    tg_tensor *l = tg_mse_loss(predict(m, m->val_x, NULL), m->val_y, TG_REDUCE_MEAN);
    *metric = l ? tg_item(l) : NAN;
    tg_no_grad_end();
    tg_tape_reset();
    return l ? 0 : -1;
}

/* seed: the initial parameters (a resumed run starts from other ones: the checkpoint replaces them). */
static void net_new(net *m, uint64_t seed, int64_t hidden) {
    memset(m, 0, sizeof *m);
    tg_rng rng;
    tg_rng_seed(&rng, seed);
    m->rnn = tg_rnn_new(tg_cell_by_name("lstm"),
                        &(tg_rnn_config){.input_size = 1, .hidden_size = hidden, .num_layers = 2, .dropout = 0.2,
                                         .dtype = TG_F64},
                        &rng);
    m->head = tg_linear_layer_new(hidden, 1, true, TG_F64, &rng);
    m->params = tg_params_new();
    tg_params_extend(m->params, "rnn.", m->rnn->params);
    tg_params_extend(m->params, "head.", m->head->params);
    tg_optim_opts o = tg_optim_defaults(TG_OPTIM_ADAM);
    o.lr = 1e-2;
    m->opt = tg_optim_new_params(TG_OPTIM_ADAM, m->params, &o);
    m->sched = tg_sched_cosine(m->opt, 40, 1e-4);
    m->val_x = tg_rand_uniform(&rng, TG_F64, TG_SHAPE(T, 16, 1), -1, 1);
    m->val_y = tg_retain(tg_mean_axis(m->val_x, 0, false)); /* kept past tg_tape_reset */
    cr_assert(m->rnn && m->head && m->opt && m->sched && m->val_y);
}

static void net_free(net *m) {
    tg_release(m->val_x);
    tg_release(m->val_y);
    tg_sched_free(m->sched);
    tg_optim_free(m->opt);
    tg_params_free(m->params);
    tg_linear_layer_free(m->head);
    tg_rnn_free(m->rnn);
}

static tg_train_opts opts_of(net *m) {
    return (tg_train_opts){.clip = 0.5, .sched = m->sched, .epoch_steps = 7, .patience = 50, .keep_best = true, .seed = 3};
}

static int record_epoch(tg_trainer *tr, const tg_epoch_report *r, void *user) {
    (void)tr;
    ((net *)user)->epoch_train_loss += r->train_loss; /* over the epochs this process ran */
    return 0;
}

static void trainer_new(tg_trainer *tr, net *m, const tg_train_opts *o) {
    cr_assert_eq(tg_trainer_init(tr, m->params, m->opt, o,
                                 &(tg_train_hooks){.loss = batch_loss, .evaluate = evaluate,
                                                   .after_epoch = record_epoch, .user = m}),
                 0, "%s", tg_last_error());
}

static void tmp_path(char *buf, size_t n, const char *name) {
    snprintf(buf, n, "/tmp/tg_train_%d_%s.safetensors", (int)getpid(), name);
}

static void remove_ckpt(const char *path) {
    char op[4096];
    remove(path);
    remove(tg_ckpt_optim_path(path, op, sizeof op));
}

static void expect_same_params(const tg_params *a, const tg_params *b) {
    cr_assert_eq(tg_params_count(a), tg_params_count(b));
    for (int i = 0; i < tg_params_count(a); i++) {
        const tg_tensor *x = tg_params_at(a, i), *y = tg_params_at(b, i);
        cr_expect_eq(memcmp(tg_cdata(x), tg_cdata(y), (size_t)tg_numel(x) * sizeof(double)), 0,
                     "parameter %s differs between the resumed and the uninterrupted run", tg_params_name_at(a, i));
    }
}

Test(train, resume_is_bit_identical) {
    th_record_errors();
    char path[256];
    tmp_path(path, sizeof path, "resume");
    net a, b;
    tg_trainer ta, tb;
    tg_train_opts oa, ob;
    /* uninterrupted: 40 steps */
    net_new(&a, 1, 8);
    oa = opts_of(&a);
    trainer_new(&ta, &a, &oa);
    cr_assert_eq(tg_trainer_run(&ta, 40), 0, "%s", tg_last_error());
    /* interrupted at step 17 (inside epoch 3), saved, everything freed, rebuilt from another seed */
    net_new(&b, 1, 8);
    ob = opts_of(&b);
    trainer_new(&tb, &b, &ob);
    cr_assert_eq(tg_trainer_run(&tb, 17), 0, "%s", tg_last_error());
    const char *meta[] = {"note", "mine"};
    cr_assert_eq(tg_trainer_save(&tb, path, 1, meta), 0, "%s", tg_last_error());
    double best = tb.best_metric, b_epochs = b.epoch_train_loss;
    tg_trainer_free(&tb);
    net_free(&b);
    net_new(&b, 99, 8);
    b.epoch_train_loss = b_epochs;
    ob = opts_of(&b);
    trainer_new(&tb, &b, &ob);
    tg_st_file *f = NULL;
    cr_assert_eq(tg_trainer_load(&tb, path, &f), 0, "%s", tg_last_error());
    cr_expect_str_eq(tg_st_meta(f, "note"), "mine");
    tg_st_free(f);
    cr_expect_eq(tb.step, 17);
    cr_expect_eq(tb.best_metric, best);
    cr_expect_eq(tb.epoch_batches, 3);
    cr_assert_eq(tg_trainer_run(&tb, 40), 0, "%s", tg_last_error());
    cr_expect_eq(tb.step, 40);
    expect_same_params(ta.params, tb.params);
    cr_expect_eq(ta.last_loss, tb.last_loss);
    cr_expect_eq(ta.best_epoch, tb.best_epoch);
    cr_expect_eq(a.epoch_train_loss, b.epoch_train_loss, "the epochs' training losses differ: %.17g vs %.17g",
                 a.epoch_train_loss, b.epoch_train_loss);
    cr_expect_eq(tg_optim_lr(a.opt, 0), tg_optim_lr(b.opt, 0), "the schedule's lr differs: %.17g vs %.17g",
                 tg_optim_lr(a.opt, 0), tg_optim_lr(b.opt, 0));
    cr_expect_eq(th_error_count(), 0, "%s", th_last_message());
    tg_trainer_free(&ta);
    tg_trainer_free(&tb);
    net_free(&a);
    net_free(&b);
    remove_ckpt(path);
}

/* Every refusal names the file and the problem and leaves the trainer, parameters and optimizer as
 * they were. */
static void expect_refused(tg_trainer *tr, net *m, const char *path, const char *named, const char *part) {
    tg_tensor *w = tg_params_find(m->params, "head.weight");
    double before = ((const double *)tg_cdata(w))[0];
    int64_t step = tr->step;
    th_reset_errors();
    cr_expect_eq(tg_trainer_load(tr, path, NULL), -1, "a bad checkpoint (%s) was accepted", part);
    cr_expect(strstr(tg_last_error(), part) != NULL, "the message '%s' does not say '%s'", tg_last_error(), part);
    cr_expect(strstr(tg_last_error(), named) != NULL, "the message '%s' does not name %s", tg_last_error(), named);
    cr_expect_eq(((const double *)tg_cdata(w))[0], before, "the parameters changed on a refused load");
    cr_expect_eq(tr->step, step);
    tg_clear_error();
}

Test(train, bad_checkpoints_are_refused_with_a_message) {
    th_record_errors();
    char good[256], plain[256], other[256], meta[256];
    tmp_path(good, sizeof good, "good");
    tmp_path(plain, sizeof plain, "plain");
    tmp_path(other, sizeof other, "other");
    tmp_path(meta, sizeof meta, "meta");
    net m, o;
    tg_trainer tr, to;
    tg_train_opts oo;
    net_new(&m, 1, 8);
    oo = opts_of(&m);
    trainer_new(&tr, &m, &oo);
    cr_assert_eq(tg_trainer_run(&tr, 3), 0);
    cr_assert_eq(tg_trainer_save(&tr, good, 0, NULL), 0, "%s", tg_last_error());
    /* parameters only (tg_params_save): not a training checkpoint */
    cr_assert_eq(tg_params_save(m.params, plain), 0);
    expect_refused(&tr, &m, plain, plain, "not a training checkpoint");
    /* another model (hidden 4): a parameter of another shape */
    net_new(&o, 1, 4);
    tg_train_opts o2 = opts_of(&o);
    trainer_new(&to, &o, &o2);
    cr_assert_eq(tg_trainer_save(&to, other, 0, NULL), 0, "%s", tg_last_error());
    expect_refused(&tr, &m, other, other, "parameter 'rnn.weight_ih_l0' is F64 [16,1] in the file, F64 [32,1] in the model");
    /* a training state that does not parse */
    tg_tensor *ts[64];
    const char *names[64];
    int n = tg_params_count(m.params);
    for (int i = 0; i < n; i++) { ts[i] = tg_params_at(m.params, i); names[i] = tg_params_name_at(m.params, i); }
    const char *kv[] = {"tapegrad.train", "1", "step", "12x", "rng", "0 0 0 0 0 0", "epoch_acc", "0 0", "early", "nan 0 0"};
    cr_assert_eq(tg_st_save(meta, n, names, ts, 5, kv), 0);
    expect_refused(&tr, &m, meta, meta, "the training state (metadata step, rng, epoch_acc, early) is missing or invalid");
    /* the optimizer file is missing */
    char op[4096];
    remove(tg_ckpt_optim_path(good, op, sizeof op));
    expect_refused(&tr, &m, good, op, "cannot open");
    /* a file that is not there */
    remove(good);
    expect_refused(&tr, &m, good, good, "cannot open");
    /* the trainer's own metadata keys are refused on save */
    const char *mine[] = {"step", "5"};
    cr_expect_eq(tg_trainer_save(&tr, good, 1, mine), -1);
    cr_expect(strstr(tg_last_error(), "metadata key 'step' is the trainer's own") != NULL, "%s", tg_last_error());
    cr_expect_eq(access(good, F_OK), -1, "a refused save wrote a file");
    tg_trainer_free(&tr);
    tg_trainer_free(&to);
    net_free(&m);
    net_free(&o);
    remove_ckpt(plain);
    remove_ckpt(other);
    remove_ckpt(meta);
}

static int snapshot_epoch(tg_trainer *tr, const tg_epoch_report *r, void *user) {
    net *m = user;
    if (r->epoch < 16) m->w_at[r->epoch] = ((const double *)tg_cdata(tg_params_find(tr->params, "head.weight")))[0];
    return 0;
}

Test(train, early_stopping_keeps_the_best_epoch) {
    th_record_errors();
    net m;
    net_new(&m, 1, 8);
    double metrics[] = {0.5, 0.3, 0.4, 0.35, 0.31, 0.9, 0.1};
    m.metrics = metrics;
    tg_trainer tr;
    tg_train_opts o = {.epoch_steps = 2, .patience = 3, .keep_best = true, .seed = 1};
    tg_train_hooks h = {.loss = batch_loss, .evaluate = evaluate, .after_epoch = snapshot_epoch, .user = &m};
    cr_assert_eq(tg_trainer_init(&tr, m.params, m.opt, &o, &h), 0);
    cr_assert_eq(tg_trainer_run(&tr, 100), 0, "%s", tg_last_error());
    cr_expect(tr.stopped);
    cr_expect_eq(tr.step, 10, "stopped at step %lld, not after epoch 5 (3 epochs without a better metric)", (long long)tr.step);
    cr_expect_eq(tr.best_epoch, 2);
    cr_expect_eq(tr.best_metric, 0.3);
    cr_expect_eq(tr.bad_epochs, 3);
    cr_expect_eq(tg_trainer_run(&tr, 100), 0);
    cr_expect_eq(tr.step, 10, "a stopped trainer went on");
    const double *w = tg_cdata(tg_params_find(m.params, "head.weight"));
    cr_expect_neq(w[0], m.w_at[2]);
    cr_expect(tg_trainer_restore_best(&tr));
    cr_expect_eq(w[0], m.w_at[2], "restore_best did not bring back the parameters of epoch 2");
    tg_trainer_free(&tr);
    net_free(&m);
}

Test(train, higher_is_better_and_per_epoch_schedule) {
    th_record_errors();
    net m;
    net_new(&m, 1, 8);
    double metrics[] = {0.5, 0.6, 0.55};
    m.metrics = metrics;
    tg_plateau_opts po = tg_plateau_defaults();
    po.mode_max = true;
    po.patience = 0;
    po.factor = 0.5;
    tg_sched *plateau = tg_sched_plateau(m.opt, &po);
    cr_assert(plateau, "%s", tg_last_error());
    tg_trainer tr;
    tg_train_opts o = {.epoch_steps = 1, .higher_is_better = true, .sched = plateau, .sched_per_epoch = true};
    cr_assert_eq(tg_trainer_init(&tr, m.params, m.opt, &o, &(tg_train_hooks){.loss = batch_loss, .evaluate = evaluate, .user = &m}), 0);
    double lr0 = tg_optim_lr(m.opt, 0);
    cr_assert_eq(tg_trainer_run(&tr, 3), 0, "%s", tg_last_error());
    cr_expect_eq(tr.best_epoch, 2);
    cr_expect_eq(tr.best_metric, 0.6);
    cr_expect_eq(tg_optim_lr(m.opt, 0), lr0 / 2, "the plateau schedule did not see the worse metric of epoch 3");
    tg_trainer_free(&tr);
    tg_sched_free(plateau);
    net_free(&m);
}

Test(train, failures_name_what_failed) {
    th_record_errors();
    net m;
    net_new(&m, 1, 8);
    tg_trainer tr;
    cr_expect_eq(tg_trainer_init(&tr, m.params, m.opt, NULL, &(tg_train_hooks){.user = &m}), -1);
    cr_expect_str_eq(tg_last_error(), "tg_trainer_init: hooks->loss is NULL");
    cr_expect_eq(tg_trainer_init(&tr, m.params, m.opt, &(tg_train_opts){.patience = 2},
                                 &(tg_train_hooks){.loss = batch_loss, .user = &m}),
                 -1);
    cr_expect_str_eq(tg_last_error(), "tg_trainer_init: patience 2 needs epochs (epoch_steps > 0)");
    m.nan_loss = true;
    cr_assert_eq(tg_trainer_init(&tr, m.params, m.opt, NULL, &(tg_train_hooks){.loss = batch_loss, .user = &m}), 0);
    cr_expect_eq(tg_trainer_run(&tr, 5), -1);
    cr_expect_str_eq(tg_last_error(), "tg_trainer_step: the loss became nan at step 1");
    cr_expect(isnan(tr.last_loss));
    tg_trainer_free(&tr);
    cr_expect_eq(tg_trainer_step(NULL), -1);
    cr_expect_str_eq(tg_last_error(), "tg_trainer_step: the trainer is not set up (tg_trainer_init)");
    net_free(&m);
    tg_clear_error();
}

/* ---- the model and its checkpoints (<tapegrad/train.h>: tg_model, tg_ckpt_*) -------------------------- */

static char m_path[128];
static void m_make_path(void) { snprintf(m_path, sizeof m_path, "/tmp/tg_train_model_%ld.safetensors", (long)getpid()); }
static void m_remove_files(void) {
    char op[256];
    remove(m_path);
    remove(tg_ckpt_optim_path(m_path, op, sizeof op));
}
TestSuite(train_model, .init = m_make_path, .fini = m_remove_files);


static const tg_model_config mcfg = {.cell = "gru", .input_size = 2, .hidden_size = 5, .output_size = 2,
                                    .layers = 2, .dtype = TG_F64, .dropout = 0.2, .zoneout = 0.1};

static tg_optim *m_adam(tg_model *m) {
    tg_optim_opts o = tg_optim_defaults(TG_OPTIM_ADAM);
    o.lr = 1e-2;
    return tg_optim_new_params(TG_OPTIM_ADAM, m->params, &o);
}

/* Steps from *step to until on batches and masks drawn from rng (predict the sequence's last input). */
static void m_train(tg_model *m, tg_optim *opt, tg_rng *rng, int64_t *step, int64_t until) {
    while (*step < until) {
        tg_tensor *x = tg_rand_uniform(rng, TG_F64, TG_SHAPE(T, B, 2), -1, 1);
        tg_tensor *pred = tg_model_forward(m, x, false, NULL, rng);
        cr_assert_not_null(pred);
        cr_assert_eq(tg_backward(tg_mse_loss(pred, tg_select(x, T - 1), TG_REDUCE_MEAN)), 0);
        tg_optim_clip_grad_norm(opt, 0.5, 2.0, false);
        cr_assert_eq(tg_optim_step(opt), 0);
        tg_optim_zero_grad(opt);
        tg_tape_reset();
        tg_release(x);
        ++*step;
    }
}

static void m_expect_same(const tg_model *a, const tg_model *c) {
    cr_assert_eq(tg_params_count(a->params), tg_params_count(c->params));
    for (int i = 0; i < tg_params_count(a->params); i++) {
        tg_tensor *p = tg_params_at(a->params, i), *q = tg_params_find(c->params, tg_params_name_at(a->params, i));
        cr_assert_not_null(q, "%s missing after loading", tg_params_name_at(a->params, i));
        cr_expect(memcmp(tg_data(p), tg_data(q), (size_t)tg_numel(p) * sizeof(double)) == 0, "%s differs",
                  tg_params_name_at(a->params, i));
    }
}

Test(train_model, resume_gives_bit_identical_parameters) {
    char err[512];
    tg_model *a = tg_model_new(&mcfg, 3, err, sizeof err), *b = tg_model_new(&mcfg, 3, err, sizeof err);
    cr_assert(a && b, "%s", err);
    tg_optim *oa = m_adam(a), *ob = m_adam(b);
    tg_rng ra, rb;
    tg_rng_seed(&ra, 5);
    tg_rng_seed(&rb, 5);
    int64_t sa = 0, sb = 0;
    m_train(a, oa, &ra, &sa, 30);
    m_train(b, ob, &rb, &sb, 13);
    cr_assert_eq(tg_ckpt_save(m_path, b, ob, sb, &rb, 0, NULL, err, sizeof err), 0, "%s", err);
    tg_optim_free(ob);
    tg_model_free(b);

    tg_st_file *f;
    tg_model *c = tg_ckpt_load_model(m_path, &f, err, sizeof err);
    cr_assert_not_null(c, "%s", err);
    cr_expect_str_eq(c->cfg.cell, "gru");
    cr_expect_eq(c->cfg.layers, 2);
    cr_expect_eq(c->cfg.dropout, 0.2);
    tg_optim *oc = m_adam(c);
    tg_rng rc;
    int64_t sc = -1;
    cr_assert_eq(tg_ckpt_load_train_state(m_path, f, oc, &sc, &rc, err, sizeof err), 0, "%s", err);
    /* step and rng are optional: NULL means not wanted (it used to dereference them) */
    cr_expect_eq(tg_ckpt_load_train_state(m_path, f, NULL, NULL, NULL, err, sizeof err), 0, "%s", err);
    tg_st_free(f);
    cr_expect_eq(sc, 13);
    m_train(c, oc, &rc, &sc, 30);
    m_expect_same(a, c);
    cr_expect(memcmp(ra.s, rc.s, sizeof ra.s) == 0, "the generators' states differ");
    tg_optim_free(oa);
    tg_optim_free(oc);
    tg_model_free(a);
    tg_model_free(c);
}

/* Writes m_path with the tensors of m and the metadata of a real checkpoint, key `key` set to `value`
 * (NULL: removed). */
static void m_write_with_meta(const tg_model *m, const char *key, const char *value) {
    char err[256];
    cr_assert_eq(tg_ckpt_save(m_path, m, NULL, 0, NULL, 0, NULL, err, sizeof err), 0, "%s", err);
    tg_st_file *f = tg_st_load(m_path);
    cr_assert_not_null(f);
    const char *kv[64];
    int n = 0;
    for (int i = 0; i < tg_st_meta_count(f) && n < 32; i++) {
        const char *k = tg_st_meta_key(f, i);
        if (strcmp(k, key) == 0 && !value) continue;
        kv[2 * n] = k;
        kv[2 * n + 1] = strcmp(k, key) == 0 ? value : tg_st_meta(f, k);
        n++;
    }
    int nt = tg_params_count(m->params);
    const char *names[16];
    tg_tensor *ts[16];
    for (int i = 0; i < nt; i++) { names[i] = tg_params_name_at(m->params, i); ts[i] = tg_params_at(m->params, i); }
    cr_assert_eq(tg_st_save(m_path, nt, names, ts, n, kv), 0, "%s", tg_last_error());
    tg_st_free(f);
}

static void m_expect_refused(const char *needle) {
    char err[512] = "";
    tg_model *m = tg_ckpt_load_model(m_path, NULL, err, sizeof err);
    cr_expect_null(m, "a checkpoint that should be refused (%s) loaded", needle);
    tg_model_free(m);
    cr_expect(strstr(err, needle) != NULL, "the message lacks '%s': %s", needle, err);
}

Test(train_model, bad_checkpoints_are_refused_with_a_message) {
    char err[512];
    tg_model *m = tg_model_new(&mcfg, 1, err, sizeof err);
    cr_assert_not_null(m, "%s", err);
    m_write_with_meta(m, "hidden_size", "1000000");
    m_expect_refused("metadata hidden_size=1000000 contradicts tensor 'head.weight'");
    m_write_with_meta(m, "layers", "3");
    m_expect_refused("metadata layers=3 contradicts the tensors");
    m_write_with_meta(m, "tapegrad", NULL);
    m_expect_refused("not a tapegrad checkpoint (metadata 'tapegrad' is missing)");
    m_write_with_meta(m, "cell", "no_such_cell");
    m_expect_refused("no_such_cell");
    m_write_with_meta(m, "rng", "12 zz");
    tg_st_file *f;
    tg_model *back = tg_ckpt_load_model(m_path, &f, err, sizeof err);
    cr_assert_not_null(back, "%s", err);
    int64_t step = 7;
    tg_rng r;
    cr_expect_eq(tg_ckpt_load_train_state(m_path, f, NULL, &step, &r, err, sizeof err), -1);
    cr_expect(strstr(err, "no valid 'step' / 'rng' metadata") != NULL, "%s", err);
    cr_expect_eq(step, 7, "a refused state changed the step");
    tg_st_free(f);
    /* the optimizer file is missing */
    tg_optim *opt = m_adam(back);
    cr_assert_eq(tg_ckpt_save(m_path, back, NULL, 3, NULL, 0, NULL, err, sizeof err), 0, "%s", err);
    tg_model *again = tg_ckpt_load_model(m_path, &f, err, sizeof err);
    cr_assert_not_null(again, "%s", err);
    cr_expect_eq(tg_ckpt_load_train_state(m_path, f, opt, &step, &r, err, sizeof err), -1);
    cr_expect(strstr(err, ".optim.safetensors: cannot open") != NULL, "%s", err);
    tg_st_free(f);
    tg_model_free(again);
    /* truncated */
    cr_assert_eq(truncate(m_path, 40), 0);
    m_expect_refused(m_path);
    cr_expect_null(tg_ckpt_load_model("/nonexistent/dir/x.safetensors", NULL, err, sizeof err));
    cr_expect(strstr(err, "/nonexistent/dir/x.safetensors") != NULL, "%s", err);
    tg_optim_free(opt);
    tg_model_free(back);
    tg_model_free(m);
}


/* ---- the two files of one checkpoint (train/checkpoint.c): one writer, a pairing id, the previous
 * pair kept while a save replaces them ---------------------------------------------------------------- */

static char p_a[128], p_b[128];
static char *p_opt(const char *path, char *buf, size_t n) { return (char *)tg_ckpt_optim_path(path, buf, n); }
static char *p_prev(const char *path, char *buf, size_t n) {
    char op[256];
    snprintf(buf, n, "%s.prev", p_opt(path, op, sizeof op));
    return buf;
}
static void p_make_paths(void) {
    snprintf(p_a, sizeof p_a, "/tmp/tg_pair_%ld_a.safetensors", (long)getpid());
    snprintf(p_b, sizeof p_b, "/tmp/tg_pair_%ld_b.safetensors", (long)getpid());
}
static void p_remove_files(void) {
    char buf[256];
    const char *paths[] = {p_a, p_b};
    for (int i = 0; i < 2; i++) {
        rmdir(paths[i]);
        remove(paths[i]);
        remove(p_opt(paths[i], buf, sizeof buf));
        remove(p_prev(paths[i], buf, sizeof buf));
    }
}
TestSuite(train_pair, .init = p_make_paths, .fini = p_remove_files);

static void p_copy(const char *from, const char *to) {
    FILE *in = fopen(from, "rb"), *out = fopen(to, "wb");
    cr_assert(in && out, "cannot copy %s to %s", from, to);
    char buf[4096];
    size_t n;
    while ((n = fread(buf, 1, sizeof buf, in)) > 0) cr_assert_eq(fwrite(buf, 1, n, out), n);
    fclose(in);
    cr_assert_eq(fclose(out), 0);
}

static bool p_same_bytes(const char *x, const char *y) {
    FILE *a = fopen(x, "rb"), *b = fopen(y, "rb");
    bool same = a && b;
    for (int c; same && (c = fgetc(a)) != EOF;) same = c == fgetc(b);
    same = same && fgetc(b) == EOF;
    if (a) fclose(a);
    if (b) fclose(b);
    return same;
}

/* One run: pair A (step 4) in p_a, pair B (the same run at step 7) in p_b; *run holds the run at 7. */
static void p_save_two_pairs(tg_model **run) {
    char err[512];
    tg_model *m = tg_model_new(&mcfg, 3, err, sizeof err);
    cr_assert_not_null(m, "%s", err);
    tg_optim *o = m_adam(m);
    tg_rng r;
    tg_rng_seed(&r, 5);
    int64_t s = 0;
    m_train(m, o, &r, &s, 4);
    cr_assert_eq(tg_ckpt_save(p_a, m, o, s, &r, 0, NULL, err, sizeof err), 0, "%s", err);
    m_train(m, o, &r, &s, 7);
    cr_assert_eq(tg_ckpt_save(p_b, m, o, s, &r, 0, NULL, err, sizeof err), 0, "%s", err);
    tg_optim_free(o);
    *run = m;
}

/* Loads the checkpoint at path with an Adam optimizer: 0 and *out, *opt, *step, *rng, or -1 and err. */
static int p_load(const char *path, tg_model **out, tg_optim **opt, int64_t *step, tg_rng *rng, char *err, size_t n) {
    tg_st_file *f;
    *out = tg_ckpt_load_model(path, &f, err, n);
    cr_assert_not_null(*out, "%s", err);
    *opt = m_adam(*out);
    int rc = tg_ckpt_load_train_state(path, f, *opt, step, rng, err, n);
    tg_st_free(f);
    return rc;
}

Test(train_pair, another_saves_optimizer_file_is_refused_naming_both_files) {
    tg_model *run, *m;
    tg_optim *o;
    p_save_two_pairs(&run);
    char err[1024], opa[256], opb[256];
    p_opt(p_a, opa, sizeof opa);
    p_opt(p_b, opb, sizeof opb);
    /* pair A, then only the model half of pair B written over it */
    p_copy(p_b, p_a);
    int64_t step = 99;
    tg_rng r;
    cr_expect_eq(p_load(p_a, &m, &o, &step, &r, err, sizeof err), -1, "model B + optimizer A loaded");
    cr_expect(strstr(err, p_a) && strstr(err, opa) && strstr(err, "are not one checkpoint"), "%s", err);
    cr_expect_eq(step, 99, "a refused pair changed the step");
    cr_expect_null(tg_optim_state(o, tg_params_at(m->params, 0), "exp_avg"), "a refused pair changed the optimizer");
    tg_optim_free(o);
    tg_model_free(m);
    /* the other way round: model A, the optimizer file of B */
    tg_model_free(run);
    p_save_two_pairs(&run);
    p_copy(opb, opa);
    cr_expect_eq(p_load(p_a, &m, &o, &step, &r, err, sizeof err), -1, "model A + optimizer B loaded");
    cr_expect(strstr(err, p_a) && strstr(err, opa) && strstr(err, "are not one checkpoint"), "%s", err);
    tg_optim_free(o);
    tg_model_free(m);
    /* the library's trainer checks the same pairing (tg_trainer_load) */
    net n1, n2;
    net_new(&n1, 1, 6);
    net_new(&n2, 2, 6);
    tg_trainer t1, t2;
    tg_train_opts o1 = opts_of(&n1), o2 = opts_of(&n2);
    trainer_new(&t1, &n1, &o1);
    trainer_new(&t2, &n2, &o2);
    cr_assert_eq(tg_trainer_run(&t1, 3), 0, "%s", tg_last_error());
    cr_assert_eq(tg_trainer_save(&t1, p_a, 0, NULL), 0, "%s", tg_last_error());
    cr_assert_eq(tg_trainer_run(&t1, 5), 0, "%s", tg_last_error());
    cr_assert_eq(tg_trainer_save(&t1, p_b, 0, NULL), 0, "%s", tg_last_error());
    p_copy(p_b, p_a);
    cr_expect_eq(tg_trainer_load(&t2, p_a, NULL), -1, "a trainer loaded model B + optimizer A");
    cr_expect(strstr(tg_last_error(), p_a) && strstr(tg_last_error(), opa) &&
                  strstr(tg_last_error(), "are not one checkpoint"), "%s", tg_last_error());
    cr_expect_eq(t2.step, 0);
    tg_clear_error();
    cr_expect_eq(tg_trainer_load(&t2, p_b, NULL), 0, "%s", tg_last_error());
    cr_expect_eq(t2.step, 5);
    tg_trainer_free(&t1);
    tg_trainer_free(&t2);
    net_free(&n1);
    net_free(&n2);
    tg_model_free(run);
}

Test(train_pair, a_save_interrupted_between_the_two_files_loads_the_previous_pair) {
    tg_model *run, *m;
    tg_optim *o;
    p_save_two_pairs(&run);
    char err[1024], opa[256], opb[256], prev[256];
    p_opt(p_a, opa, sizeof opa);
    p_opt(p_b, opb, sizeof opb);
    p_prev(p_a, prev, sizeof prev);
    /* what a save of B over A leaves when killed after the optimizer file's rename: model A, the
     * optimizer file of B, and A's optimizer file kept as .prev */
    cr_assert_eq(rename(opa, prev), 0);
    p_copy(opb, opa);
    int64_t step = -1;
    tg_rng r;
    cr_assert_eq(p_load(p_a, &m, &o, &step, &r, err, sizeof err), 0, "%s", err);
    cr_expect_eq(step, 4);
    /* A's optimizer state it is: 3 more steps give run's parameters (step 7) bit for bit */
    m_train(m, o, &r, &step, 7);
    m_expect_same(run, m);
    /* the next save replaces the interrupted pair and removes .prev */
    cr_assert_eq(tg_ckpt_save(p_a, m, o, step, &r, 0, NULL, err, sizeof err), 0, "%s", err);
    cr_expect_neq(access(prev, F_OK), 0, "%s is left after a complete save", prev);
    cr_expect(p_same_bytes(p_a, p_b) && p_same_bytes(opa, opb), "the same state saved twice differs");
    tg_optim_free(o);
    tg_model_free(m);
    tg_model_free(run);
}

Test(train_pair, a_failed_model_write_keeps_the_previous_pair) {
    tg_model *run, *m;
    tg_optim *o;
    p_save_two_pairs(&run);
    char err[1024], opa[256], prev[256], keep[160];
    p_opt(p_a, opa, sizeof opa);
    p_prev(p_a, prev, sizeof prev);
    snprintf(keep, sizeof keep, "%s.keep", p_a);
    /* the model file cannot be replaced (a directory stands at its path); the optimizer file can */
    char a_opt_bytes[160]; /* a copy of A's optimizer file to compare with */
    snprintf(a_opt_bytes, sizeof a_opt_bytes, "%s.optkeep", p_a);
    p_copy(p_a, keep);
    p_copy(opa, a_opt_bytes);
    cr_assert_eq(remove(p_a), 0);
    cr_assert_eq(mkdir(p_a, 0700), 0);
    tg_optim *ob = m_adam(run);
    cr_expect_eq(tg_ckpt_save(p_a, run, ob, 7, NULL, 0, NULL, err, sizeof err), -1, "a save onto a directory succeeded");
    cr_expect(strstr(err, p_a) != NULL, "%s", err);
    cr_expect(p_same_bytes(opa, a_opt_bytes), "a failed save left another optimizer file than the previous one");
    cr_expect_neq(access(prev, F_OK), 0, "%s is left after a failed save", prev);
    cr_assert_eq(rmdir(p_a), 0);
    cr_assert_eq(rename(keep, p_a), 0);
    int64_t step = -1;
    tg_rng r;
    cr_expect_eq(p_load(p_a, &m, &o, &step, &r, err, sizeof err), 0, "%s", err);
    cr_expect_eq(step, 4);
    tg_optim_free(o);
    tg_model_free(m);
    /* a first save that fails leaves no optimizer file behind */
    remove(a_opt_bytes);
    remove(p_a);
    remove(opa);
    cr_assert_eq(mkdir(p_a, 0700), 0);
    cr_expect_eq(tg_ckpt_save(p_a, run, ob, 7, NULL, 0, NULL, err, sizeof err), -1);
    cr_expect_neq(access(opa, F_OK), 0, "a failed first save left %s", opa);
    tg_optim_free(ob);
    tg_model_free(run);
}

Test(train_pair, the_pairing_id_is_in_both_files_and_required) {
    tg_model *run, *m;
    tg_optim *o;
    p_save_two_pairs(&run);
    char err[1024], opa[256];
    tg_st_file *fm = tg_st_load(p_a), *fo = tg_st_load(p_opt(p_a, opa, sizeof opa));
    cr_assert(fm && fo, "%s", tg_last_error());
    const char *id = tg_st_meta(fm, "pair_id");
    cr_assert_not_null(id);
    cr_expect_eq(strlen(id), 16, "pair_id '%s' is not 16 hex digits", id);
    cr_expect_str_eq(tg_st_meta(fo, "pair_id"), id);
    tg_st_free(fm);
    tg_st_free(fo);
    /* a model file without one (the tests' rewrite drops the key) matches no optimizer file */
    snprintf(m_path, sizeof m_path, "%s", p_a);
    m_write_with_meta(run, "pair_id", NULL);
    tg_optim *ob = m_adam(run);
    int64_t step;
    tg_rng r;
    cr_expect_eq(p_load(p_a, &m, &o, &step, &r, err, sizeof err), -1);
    cr_expect(strstr(err, "no pairing id") != NULL, "%s", err);
    tg_optim_free(o);
    tg_model_free(m);
    /* the key is the checkpoint's own */
    const char *meta[] = {"pair_id", "0123456789abcdef"};
    cr_expect_eq(tg_ckpt_save(p_a, run, ob, 7, NULL, 1, meta, err, sizeof err), -1);
    cr_expect(strstr(err, "'pair_id' is the checkpoint's own") != NULL, "%s", err);
    tg_optim_free(ob);
    tg_model_free(run);
}

/* A process that trains and saves pair after pair into p_a, killed with SIGKILL at 60 random moments:
 * each time the checkpoint then loads as one whole pair: the optimizer's step count of every
 * parameter is the model file's step (an independent check: the optimizer file of another save has
 * another count). Some kills land between the two renames (the model file and the optimizer file
 * then differ, and .prev is what loads): the test requires at least one. */
Test(train_pair, killed_saves_always_leave_one_whole_pair, .timeout = 120) {
    enum { KILLS = 60 };
    int between = 0;
    tg_rng pick;
    tg_rng_seed(&pick, 11);
    for (int k = 0; k < KILLS; k++) {
        int fd[2];
        cr_assert_eq(pipe(fd), 0);
        pid_t pid = fork();
        cr_assert_neq(pid, -1);
        if (pid == 0) {
            close(fd[0]);
            char err[512];
            tg_model *m = tg_model_new(&mcfg, 3, err, sizeof err);
            tg_optim *o = m ? m_adam(m) : NULL;
            tg_rng r;
            tg_rng_seed(&r, 5 + (uint64_t)k);
            for (int64_t s = 0; o;) {
                m_train(m, o, &r, &s, s + 1);
                if (tg_ckpt_save(p_a, m, o, s, &r, 0, NULL, err, sizeof err)) _exit(3);
                if (s == 1 && write(fd[1], "s", 1) != 1) _exit(4); /* one whole pair is on disk */
            }
            _exit(2);
        }
        close(fd[1]);
        char c;
        cr_assert_eq(read(fd[0], &c, 1), 1, "the saving process died before its first save");
        close(fd[0]);
        usleep((useconds_t)(tg_rng_uniform(&pick) * 20000));
        kill(pid, SIGKILL);
        int status;
        waitpid(pid, &status, 0);
        cr_assert(WIFSIGNALED(status), "the saving process ended by itself (status %d)", status);

        char opa[256];
        tg_st_file *fm = tg_st_load(p_a), *fo = tg_st_load(p_opt(p_a, opa, sizeof opa));
        cr_assert(fm && fo, "kill %d: %s", k, tg_last_error());
        between += strcmp(tg_st_meta(fm, "pair_id"), tg_st_meta(fo, "pair_id")) != 0;
        tg_st_free(fm);
        tg_st_free(fo);
        tg_model *m;
        tg_optim *o;
        int64_t step = -1;
        tg_rng r;
        char err[1024];
        cr_assert_eq(p_load(p_a, &m, &o, &step, &r, err, sizeof err), 0, "kill %d: %s", k, err);
        cr_assert_geq(step, 1);
        for (int i = 0; i < tg_params_count(m->params); i++)
            cr_assert_eq(tg_optim_step_count(o, tg_params_at(m->params, i)), step,
                         "kill %d: the optimizer state of %s is of another step than the model file's %lld", k,
                         tg_params_name_at(m->params, i), (long long)step);
        tg_optim_free(o);
        tg_model_free(m);
    }
    cr_log_info("%d kills, %d between the two renames", KILLS, between);
    cr_expect_gt(between, 0, "no kill landed between the two renames: the test did not test that window");
}
