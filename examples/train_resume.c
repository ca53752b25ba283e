/* examples/train_resume.c - the library's training loop (<tapegrad/trainer.h>): epochs with a validation
 * metric, early stopping, an LR schedule, and a checkpoint from which a restarted program continues
 * exactly where the first one stopped.
 *
 * Purpose: what you write yourself is the model and one function that draws a batch and returns the
 * loss; tg_trainer_* does the rest. The task: read 12 numbers, predict their mean. The program trains
 * half the steps, saves, throws everything away, rebuilds the model from another seed, loads the
 * checkpoint and trains on; then it checks that the result equals one uninterrupted run bit for bit.
 * Run: build/examples/train_resume [--quick]
 */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include <tapegrad/tapegrad.h>

enum { T = 12, B = 32, H = 24 };

typedef struct model {
    tg_rnn *lstm;
    tg_linear_layer *head;
    tg_params *params;        /* what the trainer saves, under PyTorch names */
    tg_optim *opt;
    tg_sched *sched;
    tg_tensor *val_x, *val_y; /* a fixed validation set */
} model;

static tg_tensor *predict(const model *m, const tg_tensor *x) {
    tg_tensor *y = tg_rnn_forward(m->lstm, x, &(tg_rnn_forward_opts){.train = true}, NULL);
    return tg_linear_layer_forward(m->head, tg_select(y, T - 1)); /* the last step: [B,1] */
}

/* One batch from the trainer's data stream (saved in checkpoints), forward, loss. */
static tg_tensor *batch_loss(tg_trainer *tr, tg_rng *rng, void *user) {
    (void)tr;
    model *m = user;
    tg_tensor *x = tg_rand_uniform(rng, TG_F32, TG_SHAPE(T, B, 1), -1, 1);
    tg_tensor *loss = tg_mse_loss(predict(m, x), tg_mean_axis(x, 0, false), TG_REDUCE_MEAN);
    tg_release(x);
    return loss;
}

static int validate(tg_trainer *tr, double *metric, void *user) {
    (void)tr;
    model *m = user;
    tg_no_grad_begin();
    tg_tensor *l = tg_mse_loss(predict(m, m->val_x), m->val_y, TG_REDUCE_MEAN);
    *metric = l ? tg_item(l) : NAN;
    tg_no_grad_end();
    tg_tape_reset();
    return l ? 0 : -1;
}

static int show_epoch(tg_trainer *tr, const tg_epoch_report *r, void *user) {
    (void)user;
    printf("  epoch %2lld  step %4lld  train MSE %.3e  val MSE %.3e%s\n", (long long)r->epoch, (long long)tr->step,
           r->train_loss, r->metric, r->best ? "  (best)" : "");
    return 0;
}

static void model_new(model *m, uint64_t seed, int64_t total_steps) {
    tg_rng rng;
    tg_rng_seed(&rng, seed);
    m->lstm = tg_rnn_new(tg_cell_by_name("lstm"), &(tg_rnn_config){.input_size = 1, .hidden_size = H, .dtype = TG_F32},
                         &rng);
    m->head = tg_linear_layer_new(H, 1, true, TG_F32, &rng);
    m->params = tg_params_new();
    tg_params_extend(m->params, "lstm.", m->lstm->params);
    tg_params_extend(m->params, "head.", m->head->params);
    tg_optim_opts o = tg_optim_defaults(TG_OPTIM_ADAM);
    o.lr = 1e-2;
    m->opt = tg_optim_new_params(TG_OPTIM_ADAM, m->params, &o);
    m->sched = tg_sched_cosine(m->opt, total_steps, 1e-4); /* stepped after every training step */
    tg_rng vr;
    tg_rng_seed(&vr, 1234); /* the same validation set whatever the model's seed */
    m->val_x = tg_rand_uniform(&vr, TG_F32, TG_SHAPE(T, 256, 1), -1, 1);
    m->val_y = tg_retain(tg_mean_axis(m->val_x, 0, false)); /* kept past tg_tape_reset */
}

static void model_free(model *m) {
    tg_release(m->val_x);
    tg_release(m->val_y);
    tg_sched_free(m->sched);
    tg_optim_free(m->opt);
    tg_params_free(m->params);
    tg_linear_layer_free(m->head);
    tg_rnn_free(m->lstm);
}

/* A model and a trainer over it, trained until step `until`: from a checkpoint if `resume` is set. */
static int train(model *m, tg_trainer *tr, uint64_t seed, int64_t steps, int64_t until, const char *resume, bool verbose) {
    model_new(m, seed, steps);
    tg_train_opts o = {.clip = 1.0, .sched = m->sched, .epoch_steps = steps / 10, .patience = 3, .keep_best = true,
                       .seed = 7};
    tg_train_hooks h = {.loss = batch_loss, .evaluate = validate, .after_epoch = verbose ? show_epoch : NULL, .user = m};
    if (tg_trainer_init(tr, m->params, m->opt, &o, &h)) return -1;
    if (resume && tg_trainer_load(tr, resume, NULL)) return -1;
    if (resume) printf("resumed from %s at step %lld\n", resume, (long long)tr->step);
    return tg_trainer_run(tr, until);
}

int main(int argc, char **argv) {
    const int64_t steps = argc > 1 && !strcmp(argv[1], "--quick") ? 100 : 400;
    const char *ckpt = "/tmp/tapegrad_train_resume.safetensors";
    model a, b, c;
    tg_trainer ta, tb, tc;

    printf("first run: steps 0..%lld\n", (long long)steps / 2);
    if (train(&a, &ta, 1, steps, steps / 2, NULL, true) || tg_trainer_save(&ta, ckpt, 0, NULL)) goto fail;
    printf("saved %s\n", ckpt);
    tg_trainer_free(&ta);
    model_free(&a);

    /* a new program: another initialisation, replaced by the checkpoint's parameters */
    if (train(&b, &tb, 99, steps, steps, ckpt, true)) goto fail;
    /* the reference: one run that never stopped */
    if (train(&c, &tc, 1, steps, steps, NULL, false)) goto fail;
    bool same = tb.step == tc.step && tb.stopped == tc.stopped;
    for (int i = 0; same && i < tg_params_count(b.params); i++) {
        const tg_tensor *x = tg_params_at(b.params, i), *y = tg_params_at(c.params, i);
        same = memcmp(tg_cdata(x), tg_cdata(y), (size_t)tg_numel(x) * sizeof(float)) == 0;
    }
    printf("%s at step %lld; best val MSE %.3e at epoch %lld (predicting 0: %.3e)\n",
           tb.stopped ? "early stop" : "done", (long long)tb.step, tb.best_metric, (long long)tb.best_epoch, 1.0 / 3 / T);
    printf("resumed run %s the uninterrupted one\n", same ? "is bit-identical to" : "DIFFERS from");
    bool learned = tb.best_metric < 0.25 / 3 / T; /* at least 4x better than predicting 0 */
    tg_trainer_free(&tb);
    tg_trainer_free(&tc);
    model_free(&b);
    model_free(&c);
    char op[4096];
    remove(ckpt);
    remove(tg_ckpt_optim_path(ckpt, op, sizeof op));
    return same && learned && tg_live_tensors() == 0 ? 0 : 1;
fail:
    fprintf(stderr, "train_resume: %s\n", tg_last_error());
    return 1;
}
