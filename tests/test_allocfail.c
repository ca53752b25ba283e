/* tests/test_allocfail.c - every allocation made to fail in turn (SQLite's malloc test; issue 16.3).
 *
 * Each scenario (a training step of every built-in cell, a checkpoint save, a checkpoint load, the
 * conformance computation of tools/grad.c, each data reader) first runs once without injection: the
 * hook of tensor/alloc.h counts its allocations, A. Then it runs A + 1 more times; run n makes
 * allocation n fail (n = 0 .. A - 1; run A fails nothing). Every run must
 *   - return success with the uninjected run's result, or an error with a message (err or tg_error);
 *   - leave no tensor alive after its own clean-up and tg_tape_reset (tg_live_tensors);
 *   - in the ASan stage, leak nothing LeakSanitizer can see at exit;
 * and a save that failed must leave the previous checkpoint loadable.
 * Each test prints its figures (allocations, runs ending in an error, distinct sites made to fail);
 * with TG_ALLOCFAIL_SITES=FILE each failed site ("file.c:line") is appended to FILE, so
 * `sort -u FILE | wc -l` counts the sites the whole suite covered (README, Reliability). */
#include <criterion/criterion.h>

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <tapegrad/data.h>
#include <tapegrad/loss.h>
#include <tapegrad/train.h>

#include "tensor/alloc.h"
#include "tests/helpers.h"
#include "tools/grad.h"

#define FIX TG_TEST_DATA_DIR "/datasets/"
#define CONF TG_TEST_DATA_DIR "/conformance/"

/* One operation under test: 0 and *result, or -1 with a message (in err or through tg_error). It must
 * release everything it made on both paths. */
typedef int (*scenario)(const void *arg, double *result, char *err, size_t errlen);
/* Called after each run with the hook off: a check of the state the run left (NULL: none). */
typedef void (*after_run)(const void *arg, const char *what, int64_t n);

typedef struct sweep_figures {
    int64_t allocations; /* A: allocations of one uninjected run */
    int64_t errors;      /* runs that ended in an error */
    int sites;           /* distinct call sites made to fail */
} sweep_figures;

static int site_seen(const char **sites, int n, const char *s) {
    for (int i = 0; i < n; i++)
        if (strcmp(sites[i], s) == 0) return 1;
    return 0;
}

static sweep_figures sweep(const char *what, scenario fn, const void *arg, after_run check) {
    char err[512] = "";
    double ref = 0, got = 0;
    th_record_errors();
    /* warm-up: the pools' headers, the tape's arrays, the cells' memory estimates, the GEMM workspace
     * are allocated once and then reused, so the count below is the same on every run */
    cr_assert_eq(fn(arg, &ref, err, sizeof err), 0, "%s without injection: %s", what, err[0] ? err : th_last_message());
    tg_tape_reset();
    tg_pool_trim();
    long live0 = tg_live_tensors();
    tg__alloc_fail_at(TG_ALLOC_NEVER, false);
    cr_assert_eq(fn(arg, &ref, err, sizeof err), 0, "%s (counting): %s", what, err);
    sweep_figures f = {.allocations = tg__alloc_count()};
    tg__alloc_fail_at(-1, false);
    cr_assert_gt(f.allocations, 0, "%s: no allocation counted (is the hook wired?)", what);

    const char *sites[512];
    FILE *out = getenv("TG_ALLOCFAIL_SITES") ? fopen(getenv("TG_ALLOCFAIL_SITES"), "a") : NULL;
    for (int64_t n = 0; n <= f.allocations; n++) {
        tg_tape_reset();
        tg_pool_trim();
        th_reset_errors();
        err[0] = 0;
        tg__alloc_fail_at(n, false);
        int rc = fn(arg, &got, err, sizeof err);
        int64_t failed = tg__alloc_failures();
        const char *site = tg__alloc_failed_site();
        int64_t counted = tg__alloc_count();
        tg__alloc_fail_at(-1, false);
        tg_tape_reset();
        cr_assert(n < f.allocations || failed == 0, "%s: run %lld made %lld allocations fail: the count changed",
                  what, (long long)n, (long long)failed);
        cr_assert(n == f.allocations || failed == 1, "%s: allocation %lld was never reached (%lld allocations "
                  "counted in this run): the count is not deterministic", what, (long long)n, (long long)counted);
        long live = tg_live_tensors();
        cr_assert_eq(live, live0, "%s, allocation %lld (%s) failed: %ld live tensors after clean-up, %ld before",
                     what, (long long)n, site ? site : "-", live, live0);
        if (rc != 0) {
            cr_assert(failed, "%s: failed with nothing injected: %s", what, err);
            cr_assert(err[0] || th_error_count() > 0, "%s, allocation %lld (%s) failed: an error without a message",
                      what, (long long)n, site);
            f.errors++;
        } else {
            cr_assert(got == ref, "%s, allocation %lld (%s) failed: success with another result (%.17g, not %.17g)",
                      what, (long long)n, site ? site : "-", got, ref);
        }
        if (check) check(arg, what, n);
        if (site && !site_seen(sites, f.sites, site) && f.sites < (int)(sizeof sites / sizeof *sites)) {
            sites[f.sites++] = site;
            if (out) fprintf(out, "%s\n", site);
        }
    }
    if (out) fclose(out);
    fprintf(stderr, "allocfail %s: %lld allocations, each made to fail in turn: %lld runs ended in an error, "
            "%lld succeeded anyway; %d distinct sites\n", what, (long long)f.allocations, (long long)f.errors,
            (long long)(f.allocations - f.errors), f.sites);
    return f;
}

/* A result to compare runs by: the bytes of a file hashed (FNV-1a), as a double. */
static double file_hash(const char *path) {
    FILE *fp = fopen(path, "rb");
    if (!fp) return -1;
    uint64_t h = 0xcbf29ce484222325ULL;
    int c;
    while ((c = fgetc(fp)) != EOF) h = (h ^ (uint64_t)c) * 0x100000001b3ULL;
    fclose(fp);
    return (double)(h >> 11);
}

static double params_sum(const tg_params *p) {
    double s = 0;
    for (int i = 0; i < tg_params_count(p); i++) {
        const tg_tensor *t = tg_params_at(p, i);
        for (int64_t k = 0; k < tg_numel(t); k++) s += tg_get(t, k) * (double)(k + 1 + i);
    }
    return s;
}

/* ---- one training step of a cell ---------------------------------------------------------------- */

static tg_model_config small_config(const char *cell) {
    tg_model_config cfg = {.input_size = 4, .hidden_size = 4 /* I = H: mut1..3 */, .output_size = 2, .layers = 2, .dtype = TG_F64};
    snprintf(cfg.cell, sizeof cfg.cell, "%s", cell);
    return cfg;
}

static int train_step(const void *arg, double *result, char *err, size_t errlen) {
    tg_model_config cfg = small_config(arg);
    int rc = -1;
    tg_optim *opt = NULL;
    tg_tensor *x = NULL, *y = NULL;
    tg_model *m = tg_model_new(&cfg, 7, err, errlen);
    if (!m) return -1;
    if (!(opt = tg_optim_new_params(TG_OPTIM_ADAM, m->params, NULL))) goto done;
    double xv[3 * 2 * 4], yv[2 * 2];
    for (int i = 0; i < 24; i++) xv[i] = 0.1 * (i % 7) - 0.3;
    for (int i = 0; i < 4; i++) yv[i] = 0.25 * i;
    if (!(x = tg_from_f64(TG_F64, 3, (int64_t[]){3, 2, 4}, xv))) goto done;
    if (!(y = tg_from_f64(TG_F64, 2, (int64_t[]){2, 2}, yv))) goto done;
    tg_tensor *pred = tg_model_forward(m, x, false, NULL, NULL);
    tg_tensor *loss = pred ? tg_mse_loss(pred, y, TG_REDUCE_MEAN) : NULL;
    if (!loss || tg_backward(loss) != 0 || tg_optim_step(opt) != 0) goto done;
    *result = tg_item(loss) + params_sum(m->params);
    rc = 0;
done:
    tg_tape_reset();
    tg_release(x);
    tg_release(y);
    tg_optim_free(opt);
    tg_model_free(m);
    return rc;
}

Test(allocfail, training_step_of_every_builtin_cell, .timeout = 300) {
    int n = tg_cell_count();
    int64_t total = 0;
    cr_assert_gt(n, 3, "only %d cells registered", n);
    for (int i = 0; i < n; i++) {
        const char *name = tg_cell_at(i)->name;
        sweep_figures f = sweep(name, train_step, name, NULL);
        total += f.allocations;
    }
    fprintf(stderr, "allocfail: %d cells, %lld allocations swept\n", n, (long long)total);
}

/* ---- checkpoint save and load ------------------------------------------------------------------- */

typedef struct ckpt_case {
    tg_model *m;
    tg_optim *opt;
    char path[512];
    double old_sum, new_sum; /* params_sum of the checkpoint on disk before, and of m */
} ckpt_case;

static int ckpt_save(const void *arg, double *result, char *err, size_t errlen) {
    const ckpt_case *c = arg;
    tg_rng rng;
    tg_rng_seed(&rng, 5);
    const char *meta[] = {"task", "allocfail"};
    if (tg_ckpt_save(c->path, c->m, c->opt, 3, &rng, 1, meta, err, errlen) != 0) return -1;
    *result = 0;
    return 0;
}

static int ckpt_load(const void *arg, double *result, char *err, size_t errlen) {
    const ckpt_case *c = arg;
    tg_st_file *file = NULL;
    tg_optim *opt = NULL;
    int rc = -1;
    int64_t step = 0;
    tg_rng rng;
    tg_model *m = tg_ckpt_load_model(c->path, &file, err, errlen);
    if (!m) return -1;
    if (!(opt = tg_optim_new_params(TG_OPTIM_ADAM, m->params, NULL))) goto done;
    if (tg_ckpt_load_train_state(c->path, file, opt, &step, &rng, err, errlen) != 0) goto done;
    *result = params_sum(m->params) + (double)step + (double)(tg_rng_u64(&rng) >> 40);
    rc = 0;
done:
    tg_st_free(file);
    tg_optim_free(opt);
    tg_model_free(m);
    return rc;
}

/* After every save run: the checkpoint on disk loads, and it is the previous one or the new one. */
static void ckpt_still_loads(const void *arg, const char *what, int64_t n) {
    const ckpt_case *c = arg;
    char err[512];
    tg_model *m = tg_ckpt_load_model(c->path, NULL, err, sizeof err);
    cr_assert_not_null(m, "%s, allocation %lld failed: the checkpoint no longer loads: %s", what, (long long)n, err);
    double s = params_sum(m->params);
    cr_assert(s == c->old_sum || s == c->new_sum, "%s, allocation %lld failed: the checkpoint on disk is neither "
              "the previous one nor the new one", what, (long long)n);
    tg_model_free(m);
}

static tg_model *ckpt_model(uint64_t seed, tg_optim **opt) {
    tg_model_config cfg = small_config("lstm");
    char err[256];
    tg_model *m = tg_model_new(&cfg, seed, err, sizeof err);
    cr_assert_not_null(m, "%s", err);
    *opt = tg_optim_new_params(TG_OPTIM_ADAM, m->params, NULL);
    cr_assert_not_null(*opt);
    return m;
}

TH_TEST(allocfail, checkpoint_save_and_load, th_live_check) {
    th_record_errors();
    th_dir_make();
    ckpt_case c;
    snprintf(c.path, sizeof c.path, "%s", th_path_in("ck.safetensors"));
    tg_optim *old_opt;
    tg_model *old = ckpt_model(1, &old_opt);
    char err[512];
    cr_assert_eq(tg_ckpt_save(c.path, old, old_opt, 1, NULL, 0, NULL, err, sizeof err), 0, "%s", err);
    c.old_sum = params_sum(old->params);
    c.m = ckpt_model(2, &c.opt);
    c.new_sum = params_sum(c.m->params);
    cr_assert(c.old_sum != c.new_sum);
    sweep("checkpoint save", ckpt_save, &c, ckpt_still_loads);
    sweep("checkpoint load", ckpt_load, &c, NULL);
    tg_optim_free(old_opt);
    tg_model_free(old);
    tg_optim_free(c.opt);
    tg_model_free(c.m);
    th_dir_remove();
}

/* ---- the conformance computation (tools/grad.c, `tapegrad grad`) -------------------------------- */

typedef struct grad_case {
    const char *cell, *name;
    bool manual;
    char out[512];
} grad_case;

static int grad_run(const void *arg, double *result, char *err, size_t errlen) {
    const grad_case *g = arg;
    char in[512];
    snprintf(in, sizeof in, CONF "%s.case.safetensors", g->name);
    remove(g->out);
    if (tg_grad_run(g->cell, in, g->out, g->manual, err, errlen) != 0) return -1;
    *result = file_hash(g->out);
    return 0;
}

TH_TEST(allocfail, conformance_cases, th_live_check) {
    th_dir_make();
    static const struct { const char *cell, *name; } cases[] = {
        {"lstm", "0010_lstm_L2_f32_edge-T1"},
        {"gru", "0011_gru_L1_f32_edge-B1"},
        {"rnn_tanh", "0012_rnn_tanh_L2_f64_edge-H1"},
        {"rnn_relu", "0013_rnn_relu_L1_f64_edge-I1"},
    };
    for (size_t k = 0; k < sizeof cases / sizeof *cases; k++)
        for (int manual = 0; manual < 2; manual++) {
            grad_case g = {.cell = cases[k].cell, .name = cases[k].name, .manual = manual};
            snprintf(g.out, sizeof g.out, "%s", th_path_in("out.safetensors"));
            char what[128];
            snprintf(what, sizeof what, "grad %s%s", g.name, manual ? " --manual" : "");
            sweep(what, grad_run, &g, NULL);
        }
    th_dir_remove();
}

/* ---- the data readers --------------------------------------------------------------------------- */

typedef struct data_case {
    const char *path, *labels;
    tg_data_options opt;
} data_case;

/* walks.csv in the test's directory (made there): two walks (sequences) of 2 and 3 steps, a quoted
 * column name, a class label; and how to read it. */
static data_case walks_csv(void) {
    const char *csv = th_path_in("walks.csv");
    FILE *fp = fopen(csv, "w");
    cr_assert_not_null(fp);
    fputs("walk,\"speed, m/s\",temp,label\na,1.5,20,0\na,1.7,21,0\nb,0.5,19,1\nb,0.25,18,1\nb,0.5,17,1\n", fp);
    fclose(fp);
    return (data_case){csv, NULL, {.seq_column = "walk", .label_column = "label"}};
}

static int data_load(const void *arg, double *result, char *err, size_t errlen) {
    const data_case *d = arg;
    tg_dataset *ds = tg_dataset_load(d->path, d->labels, &d->opt, err, errlen);
    if (!ds) return -1;
    double s = (double)tg_dataset_size(ds) * 1000 + (double)tg_dataset_features(ds);
    for (int64_t n = 0; n < tg_dataset_size(ds); n++) {
        const double *v = tg_dataset_seq(ds, n);
        for (int64_t k = 0; k < tg_dataset_length(ds, n) * tg_dataset_features(ds); k++) s += v[k] * (double)(k + 1);
        if (tg_dataset_label_kind(ds) == TG_LABELS_CLASS) s += (double)tg_dataset_label(ds, n);
    }
    for (int64_t i = 0; i < tg_dataset_features(ds); i++) s += (double)strlen(tg_dataset_feature_name(ds, i));
    tg_dataset_free(ds);
    *result = s;
    return 0;
}

TH_TEST(allocfail, data_readers, th_live_check) {
    th_dir_make();
    const data_case cases[] = {
        walks_csv(),
        {th_path_in("walks.csv"), NULL, {.label_column = "label"}}, /* no sequence column: one sequence */
        {FIX "x_f8.npy", FIX "y_i8.npy", {0}},
        {FIX "seqs.safetensors", NULL, {0}},
        {FIX "images-idx3-ubyte.gz", FIX "labels-idx1-ubyte.gz", {0}},
    };
    for (size_t k = 0; k < sizeof cases / sizeof *cases; k++) sweep(strrchr(cases[k].path, '/') + 1, data_load, &cases[k], NULL);
    th_dir_remove();
}

/* ---- building blocks beyond the training step (issue 16.3, the second sweep) -------------------- */

/* A small F64 model of a cell (NULL: tg_error already said why). */
static tg_rnn *small_rnn(const tg_cell *cell, int64_t I, int64_t H, int L, bool bidir, uint64_t seed) {
    tg_rng rng;
    tg_rng_seed(&rng, seed);
    tg_rnn_config cfg = {.input_size = I, .hidden_size = H, .num_layers = L, .bidirectional = bidir, .dtype = TG_F64};
    return tg_rnn_new(cell, &cfg, &rng);
}

/* [d0, d1, d2] (or [d0, d1] when d2 = 0) filled with a fixed pattern; requires_grad when grad. */
static tg_tensor *pattern(int64_t d0, int64_t d1, int64_t d2, double shift, bool grad) {
    int64_t n = d0 * d1 * (d2 ? d2 : 1);
    tg_tensor *t = d2 ? tg_zeros(TG_F64, TG_SHAPE(d0, d1, d2)) : tg_zeros(TG_F64, TG_SHAPE(d0, d1));
    if (!t) return NULL;
    for (int64_t k = 0; k < n; k++) tg_set(t, k, 0.37 * (double)(k % 7) - 0.9 + shift);
    if (grad) tg_set_requires_grad(t, true);
    return t;
}

/* Σ of every gradient of a parameter set, weighted by position (0 where there is none). */
static double grads_sum(const tg_params *p) {
    double s = 0;
    for (int i = 0; i < tg_params_count(p); i++) {
        const tg_tensor *g = tg_grad(tg_params_at(p, i));
        for (int64_t k = 0; g && k < tg_numel(g); k++) s += tg_get(g, k) * (double)(k + 2 + i);
    }
    return s;
}

/* loss = Σ y·w for a fixed w, backward, then the loss plus every gradient of m (and of x when given). */
static int backward_result(tg_tensor *y, const tg_rnn *m, const tg_tensor *x, double *result) {
    tg_tensor *w = y ? tg_zeros(TG_F64, tg_ndim(y), tg_shape(y)) : NULL;
    if (!w) return -1;
    for (int64_t k = 0; k < tg_numel(w); k++) tg_set(w, k, 0.5 - 0.125 * (double)(k % 9));
    tg_tensor *loss = tg_sum(tg_mul(y, w));
    tg_release(w);
    if (!loss || tg_backward(loss) != 0) return -1;
    double s = tg_item(loss) + grads_sum(m->params);
    const tg_tensor *gx = x ? tg_grad(x) : NULL;
    for (int64_t k = 0; gx && k < tg_numel(gx); k++) s += tg_get(gx, k) * (double)(k + 3);
    *result = s;
    return 0;
}

/* The common end of the scenarios on a model: the tape cleared, x released, the model freed; rc. */
static int model_done(int rc, tg_tensor *x, tg_rnn *m) {
    tg_tape_reset();
    tg_release(x);
    tg_rnn_free(m);
    return rc;
}

/* The runner's other paths: 2 bidirectional layers over sequences of different lengths, the step states
 * kept, dropout and zoneout in training (seeded), backward. */
static int runner_run(const void *arg, double *result, char *err, size_t errlen) {
    (void)arg, (void)err, (void)errlen;
    int rc = -1;
    tg_tensor *x = NULL;
    tg_rnn_output out = {0};
    tg_rnn *m = small_rnn(tg_cell_by_name("lstm"), 3, 2, 2, true, 11);
    if (!m || !(x = pattern(4, 3, 3, 0.1, true))) goto done;
    m->dropout = 0.25;
    tg_rng rng;
    tg_rng_seed(&rng, 12);
    const int64_t lengths[3] = {4, 2, 3};
    tg_rnn_forward_opts o = {.lengths = lengths, .train = true, .rng = &rng, .keep_step_states = true,
                             .zoneout_h = 0.2, .zoneout_c = 0.1};
    tg_tensor *y = tg_rnn_forward(m, x, &o, &out);
    tg_tensor *kept = y ? tg_rnn_step_state(&out, m, 1, 1, 1) : NULL;
    if (!kept || backward_result(tg_add(tg_sum(y), tg_sum(kept)), m, x, result)) goto done;
    rc = 0;
done:
    tg_rnn_output_clear(&out);
    return model_done(rc, x, m);
}

/* pad_sequence, pack_padded_sequence (unsorted, and sorted), the runner on the packed batches,
 * pad_packed_sequence, pack_sequence, backward into every sequence. */
static int packing_run(const void *arg, double *result, char *err, size_t errlen) {
    (void)arg, (void)err, (void)errlen;
    int rc = -1;
    tg_tensor *seqs[3] = {0};
    tg_packed_sequence p = {0}, y = {0}, q = {0}, ps = {0}, ys = {0};
    tg_rnn_output out = {0};
    const int64_t len[3] = {2, 4, 1};
    tg_rnn *m = small_rnn(tg_cell_by_name("gru"), 2, 3, 1, false, 5);
    if (!m) goto done;
    for (int i = 0; i < 3; i++)
        if (!(seqs[i] = pattern(len[i], 2, 0, 0.2 * i, true))) goto done;
    tg_tensor *x = tg_pad_sequence(3, seqs, false, 0.0);
    if (!x || tg_pack_padded_sequence(x, 3, len, false, false, &p) || tg_rnn_forward_packed(m, &p, NULL, &y, &out))
        goto done;
    int64_t back[3];
    tg_tensor *padded = tg_pad_packed_sequence(&y, true, -1.0, 5, back);
    if (!padded || tg_pack_sequence(3, seqs, false, &q)) goto done;
    /* the same padded batch packed as sorted (enforce_sorted: no indices kept) */
    if (tg_pack_padded_sequence(x, 3, (int64_t[]){4, 2, 1}, false, true, &ps) ||
        tg_rnn_forward_packed(m, &ps, NULL, &ys, NULL))
        goto done;
    tg_tensor *total = tg_add(tg_add(tg_add(tg_sum(padded), tg_sum(q.data)), tg_sum(out.h_n)), tg_sum(ys.data));
    if (backward_result(total, m, NULL, result)) goto done;
    for (int i = 0; i < 3; i++) {
        const tg_tensor *g = tg_grad(seqs[i]);
        for (int64_t k = 0; g && k < tg_numel(g); k++) *result += tg_get(g, k) * (double)(k + 1 + 10 * i);
        *result += (double)back[i] * (i + 1);
    }
    rc = 0;
done:
    tg_packed_sequence_clear(&p);
    tg_packed_sequence_clear(&y);
    tg_packed_sequence_clear(&q);
    tg_packed_sequence_clear(&ps);
    tg_packed_sequence_clear(&ys);
    tg_rnn_output_clear(&out);
    tg_tape_reset();
    for (int i = 0; i < 3; i++) tg_release(seqs[i]);
    return model_done(rc, NULL, m);
}

/* The cell language: JANET parsed and lowered, then a forward and backward of a model of it. */
static int cell_lang_run(const void *arg, double *result, char *err, size_t errlen) {
    (void)arg;
    static const char src[] = "gates f, c\n"
                              "forget f\n"
                              "f  = sigmoid(x.f + h.f)\n"
                              "c' = f * c + (1 - f) * tanh(x.c + h.c)\n"
                              "h' = c'\n";
    int rc = -1;
    tg_rnn *m = NULL;
    tg_tensor *x = NULL;
    tg_cell_def *def = tg_cell_def_parse("allocfail_janet", src, err, errlen);
    if (!def) return -1;
    if (!(m = small_rnn(tg_cell_def_cell(def), 3, 4, 2, false, 9)) || !(x = pattern(3, 2, 3, 0, true))) goto done;
    if (backward_result(tg_rnn_forward(m, x, NULL, NULL), m, x, result)) goto done;
    rc = 0;
done:
    rc = model_done(rc, x, m);
    tg_cell_def_free(def);
    return rc;
}

/* Streaming inference with a head: creation (warm-up step), 3 steps of 2 rows, a row reset, zoneout. */
static int stream_run(const void *arg, double *result, char *err, size_t errlen) {
    (void)arg, (void)err, (void)errlen;
    int rc = -1;
    tg_rng rng;
    tg_rng_seed(&rng, 4);
    tg_rnn_stream *s = NULL;
    tg_tensor *x = NULL;
    tg_linear_layer *head = NULL;
    tg_rnn *m = small_rnn(tg_cell_by_name("lstm"), 3, 4, 2, false, 3);
    if (!m || !(head = tg_linear_layer_new(4, 2, true, TG_F64, &rng)) || !(s = tg_rnn_stream_new(m, head, 2)) ||
        tg_rnn_stream_set_zoneout(s, 0.1, 0.2) || !(x = pattern(2, 3, 0, 0.3, false)))
        goto done;
    double sum = 0;
    for (int t = 0; t < 3; t++) {
        if (t == 2 && tg_rnn_stream_reset_row(s, 1)) goto done;
        const tg_tensor *y = tg_rnn_stream_step(s, x);
        if (!y) goto done;
        for (int64_t k = 0; k < tg_numel(y); k++) sum += tg_get(y, k) * (double)(k + 1 + t);
    }
    *result = sum + (double)tg_rnn_stream_steps(s);
    rc = 0;
done:
    tg_rnn_stream_free(s);
    tg_linear_layer_free(head);
    return model_done(rc, x, m);
}

/* The triple check (tg_compare_cell, what `tapegrad gradcheck` runs): lstm against its hand-derived
 * reference, and mgu (no reference: tape vs finite differences only, subsampled). */
static int compare_run(const void *arg, double *result, char *err, size_t errlen) {
    (void)err, (void)errlen;
    tg_compare_opts o = tg_compare_defaults();
    o.T = 2, o.B = 2, o.I = 2, o.H = 3, o.layers = 2, o.max_elems = 3;
    tg_compare_report *r = tg_compare_cell(arg, &o);
    if (!r) return -1;
    double s = r->n_fail + 100.0 * r->n_rows + (r->has_manual ? 1000 : 0);
    for (int i = 0; i < r->n_rows; i++) s += r->rows[i].max_grad * (i + 1) + (double)r->rows[i].fd_elems;
    tg_compare_report_free(r);
    *result = s;
    return 0;
}

/* A user's hand-derived backward as a cell hook (tg_cell_manual), here rnn_tanh's, run by
 * tg_cell_manual_bptt over T steps and 2 layers. Every tensor it makes is checked: under the sweep its
 * tg_zeros fail too. Its cache is the step's input, previous and new state. */
typedef struct hook_cache { tg_tensor *x, *h, *hn; } hook_cache;

static void hook_cache_free(void *p) {
    hook_cache *k = p;
    if (!k) return;
    tg_release(k->x);
    tg_release(k->h);
    tg_release(k->hn);
    free(k);
}

static int hook_forward(const tg_cell *cell, const tg_cell_params *p, const tg_tensor *x, tg_tensor *const *state_in,
                        tg_tensor **state_out, void **cache) {
    (void)cell;
    int64_t B = tg_dim(x, 0), I = p->input_size, H = p->hidden_size;
    hook_cache *k = calloc(1, sizeof *k);
    if (!k || !(state_out[0] = tg_zeros(TG_F64, TG_SHAPE(B, H)))) { free(k); return -1; }
    for (int64_t n = 0; n < B; n++)
        for (int64_t j = 0; j < H; j++) {
            double a = tg_get(p->bias_ih, j) + tg_get(p->bias_hh, j);
            for (int64_t q = 0; q < I; q++) a += tg_get(p->weight_ih, j * I + q) * tg_get(x, n * I + q);
            for (int64_t q = 0; q < H; q++) a += tg_get(p->weight_hh, j * H + q) * tg_get(state_in[0], n * H + q);
            tg_set(state_out[0], n * H + j, tanh(a));
        }
    k->x = tg_retain((tg_tensor *)x);
    k->h = tg_retain(state_in[0]);
    k->hn = tg_retain(state_out[0]);
    *cache = k;
    return 0;
}

static int hook_backward(const tg_cell *cell, const tg_cell_params *p, void *cache, tg_tensor *const *d_out,
                         tg_tensor **dx, tg_tensor **d_in, tg_cell_params *g) {
    (void)cell;
    const hook_cache *k = cache;
    int64_t B = tg_dim(d_out[0], 0), I = p->input_size, H = p->hidden_size;
    *dx = tg_zeros(TG_F64, TG_SHAPE(B, I));
    d_in[0] = tg_zeros(TG_F64, TG_SHAPE(B, H));
    if (!*dx || !d_in[0]) return -1;
    for (int64_t n = 0; n < B; n++)
        for (int64_t j = 0; j < H; j++) {
            double hn = tg_get(k->hn, n * H + j), da = tg_get(d_out[0], n * H + j) * (1 - hn * hn); /* tanh' */
            tg_set(g->bias_ih, j, tg_get(g->bias_ih, j) + da);
            tg_set(g->bias_hh, j, tg_get(g->bias_hh, j) + da);
            for (int64_t q = 0; q < I; q++) {
                tg_set(g->weight_ih, j * I + q, tg_get(g->weight_ih, j * I + q) + da * tg_get(k->x, n * I + q));
                tg_set(*dx, n * I + q, tg_get(*dx, n * I + q) + tg_get(p->weight_ih, j * I + q) * da);
            }
            for (int64_t q = 0; q < H; q++) {
                tg_set(g->weight_hh, j * H + q, tg_get(g->weight_hh, j * H + q) + da * tg_get(k->h, n * H + q));
                tg_set(d_in[0], n * H + q, tg_get(d_in[0], n * H + q) + tg_get(p->weight_hh, j * H + q) * da);
            }
        }
    return 0;
}

static const tg_cell_manual g_hook = {.forward = hook_forward, .backward = hook_backward, .free_cache = hook_cache_free};

static int cell_manual_run(const void *arg, double *result, char *err, size_t errlen) {
    (void)err, (void)errlen;
    const tg_cell *cell = arg;
    int rc = -1;
    tg_tensor *x = NULL, *dy = NULL;
    tg_cell_manual_result r = {0};
    tg_rnn *m = small_rnn(cell, 2, 3, 2, false, 6);
    if (!m || !(x = pattern(3, 2, 2, 0.05, false)) || !(dy = pattern(3, 2, 3, -0.1, false))) goto done;
    if (tg_cell_manual_bptt(m, x, NULL, dy, NULL, &r)) goto done;
    double s = 0;
    for (int64_t k = 0; k < tg_numel(r.dx); k++) s += tg_get(r.dx, k) * (double)(k + 1);
    for (int64_t k = 0; k < tg_numel(r.y); k++) s += tg_get(r.y, k) * (double)(k + 2);
    for (int i = 0; i < tg_params_count(r.grads); i++)
        for (int64_t k = 0; k < tg_numel(tg_params_at(r.grads, i)); k++) s += tg_get(tg_params_at(r.grads, i), k) * (i + 3);
    *result = s;
    rc = 0;
done:
    tg_cell_manual_result_clear(&r);
    tg_release(dy);
    return model_done(rc, x, m);
}

/* Every learning-rate schedule made and stepped 4 epochs on one SGD optimizer (two parameter groups);
 * SEQUENTIAL and CHAINED over two members each. The result: every lr seen. */
static double lr_half(int64_t epoch, int group, void *user) {
    (void)user;
    return 1.0 / (1.0 + 0.5 * (double)epoch + group);
}

static int schedules_run(const void *arg, double *result, char *err, size_t errlen) {
    (void)arg, (void)err, (void)errlen;
    int rc = -1;
    tg_clear_error(); /* the steps are checked through tg_error_pending */
    tg_optim *opt = NULL;
    tg_sched *s[TG_SCHED_KIND_COUNT + 4] = {0};
    tg_tensor *w = pattern(2, 2, 0, 0, true), *v = pattern(3, 1, 0, 0, true);
    if (!w || !v || !(opt = tg_optim_new(TG_OPTIM_SGD, &w, 1, &(tg_optim_opts){.lr = 0.1, .momentum = 0.9})) ||
        tg_optim_add_group(opt, &v, 1, &(tg_optim_opts){.lr = 0.2, .momentum = 0.9}) < 0)
        goto done;
    tg_onecycle_opts oc = tg_onecycle_defaults(0.5, 10);
    tg_cyclic_opts cy = tg_cyclic_defaults(0.01, 0.1);
    cy.step_size_up = 2;
    int k = 0;
    s[k++] = tg_sched_step_lr(opt, 2, 0.5);
    s[k++] = tg_sched_multistep(opt, 3, (int64_t[]){3, 1, 3}, 0.5);
    s[k++] = tg_sched_exponential(opt, 0.9);
    s[k++] = tg_sched_cosine(opt, 5, 0.001);
    s[k++] = tg_sched_linear(opt, 0.5, 1.0, 3);
    s[k++] = tg_sched_plateau(opt, &(tg_plateau_opts){.factor = 0.5, .patience = 1, .min_lrs = (double[]){0.01, 0.02},
                                                      .eps = 1e-8});
    s[k++] = tg_sched_lambda(opt, lr_half, NULL);
    s[k++] = tg_sched_multiplicative(opt, lr_half, NULL);
    s[k++] = tg_sched_onecycle(opt, &oc);
    s[k++] = tg_sched_cyclic(opt, &cy);
    s[k++] = tg_sched_warm_restarts(opt, 2, 2, 0.001);
    int epoch_kinds = k; /* the schedules stepped directly; the members after them only through containers */
    tg_sched *seq_members[2] = {tg_sched_exponential(opt, 0.8), tg_sched_step_lr(opt, 1, 0.9)};
    tg_sched *chain_members[2] = {tg_sched_exponential(opt, 0.95), tg_sched_multistep(opt, 1, (int64_t[]){2}, 0.5)};
    s[k++] = seq_members[0], s[k++] = seq_members[1], s[k++] = chain_members[0], s[k++] = chain_members[1];
    for (int i = 0; i < k; i++)
        if (!s[i]) goto done;
    tg_sched *seq = s[k++] = tg_sched_sequential(opt, 2, seq_members, (int64_t[]){2});
    tg_sched *chain = s[k++] = tg_sched_chained(2, chain_members);
    if (!seq || !chain) goto done;
    _Static_assert(sizeof s / sizeof *s >= TG_SCHED_KIND_COUNT + 4, "every kind and the four members");
    tg_sched *stepped[TG_SCHED_KIND_COUNT];
    int n_stepped = 0;
    for (int i = 0; i < epoch_kinds; i++) stepped[n_stepped++] = s[i];
    stepped[n_stepped++] = seq;
    stepped[n_stepped++] = chain;
    double sum = 0;
    for (int e = 0; e < 4; e++)
        for (int i = 0; i < n_stepped; i++) {
            if (tg_sched_kind_of(stepped[i]) == TG_SCHED_PLATEAU) tg_sched_step_metric(stepped[i], 1.0);
            else tg_sched_step(stepped[i]);
            if (tg_error_pending()) goto done;
            sum += (tg_optim_lr(opt, 0) + 2 * tg_optim_lr(opt, 1)) * (double)(i + 1) + (double)tg_sched_epoch(stepped[i]);
        }
    *result = sum;
    rc = 0;
done:
    for (int i = (int)(sizeof s / sizeof *s) - 1; i >= 0; i--) tg_sched_free(s[i]);
    tg_optim_free(opt);
    tg_release(w);
    tg_release(v);
    return rc;
}

Test(allocfail, packing_runner_cell_language_stream_schedules, .timeout = 300) {
    sweep("runner (lengths, bidirectional, step states, dropout, zoneout)", runner_run, NULL, NULL);
    sweep("pad/pack/pad_packed/pack_sequence", packing_run, NULL, NULL);
    sweep("cell language (janet parsed, forward, backward)", cell_lang_run, NULL, NULL);
    sweep("stream (lstm + head)", stream_run, NULL, NULL);
    sweep("schedules (every kind)", schedules_run, NULL, NULL);
    th_live_check();
}

Test(allocfail, compare_and_the_manual_hook, .timeout = 300) {
    sweep("compare lstm", compare_run, "lstm", NULL);
    sweep("compare mgu", compare_run, "mgu", NULL);
    static tg_cell hooked;
    hooked = *tg_cell_by_name("rnn_tanh");
    hooked.name = "allocfail_hooked_rnn";
    hooked.manual = &g_hook;
    cr_assert_eq(tg_cell_register(&hooked), 0, "%s", tg_last_error());
    sweep("cell_manual_bptt (a user's hook)", cell_manual_run, &hooked, NULL);
    sweep("compare with the hook", compare_run, "allocfail_hooked_rnn", NULL);
    th_live_check();
}

/* Smaller building blocks, one run: an embedding layer (gather), a cell module (torch.nn.LSTMCell),
 * orthogonal init, CTC loss and edit distance, tg_gradcheck, clipping over an optimizer, saving the
 * parameters (through a symbolic link) and the optimizer state, and the data pipeline (split, normalisation, batcher and its state) over the CSV fixture of data_readers. */
static tg_tensor *gc_square(tg_tensor *const *in, int n, void *user) {
    (void)n, (void)user;
    return tg_sum(tg_mul(tg_tanh(in[0]), in[0]));
}

static int blocks_run(const void *arg, double *result, char *err, size_t errlen) {
    int rc = -1;
    tg_rng rng;
    tg_rng_seed(&rng, 8);
    tg_embedding_layer *emb = NULL;
    tg_cellmod *cm = NULL;
    tg_rnn *m = NULL;
    tg_optim *opt = NULL;
    tg_tensor *lp_in = NULL, *g = NULL;
    tg_dataset *ds = NULL, *train = NULL, *val = NULL;
    tg_norm norm = {0};
    tg_batcher *bt = NULL;
    tg_batch b = {0};
    char *state = NULL, *norm_text = NULL;
    double s = 0;
    tg_clear_error();
    /* embedding + cell module + backward */
    if (!(emb = tg_embedding_layer_new(5, 3, TG_F64, &rng)) ||
        !(cm = tg_cellmod_new(tg_cell_by_name("gru"), &(tg_cellmod_config){.input_size = 3, .hidden_size = 2,
                                                                              .dtype = TG_F64}, &rng)))
        goto done;
    tg_tensor *e = tg_embedding_layer_forward(emb, 1, (int64_t[]){4}, (int64_t[]){1, 4, 1, 0});
    tg_tensor *h[1] = {NULL};
    if (!e || tg_cellmod_forward(cm, e, h, h) || !(opt = tg_optim_new_params(TG_OPTIM_ADAM, emb->params, NULL)))
        goto done;
    tg_tensor *loss = tg_sum(tg_mul(h[0], h[0]));
    if (!loss || tg_backward(loss)) goto done;
    s += tg_optim_clip_grad_norm(opt, 0.1, 2.0, false);
    if (tg_error_pending() || tg_optim_step(opt)) goto done;
    s += grads_sum(emb->params) + grads_sum(cm->params);
    tg_tape_reset();
    /* the parameters saved through a symbolic link (its target replaced), the optimizer state beside */
    char link[300], opt_path[300]; /* not th_path_in: its buffers are reused, and the CSV's path is one */
    snprintf(link, sizeof link, "%s/link.safetensors", th_dir());
    snprintf(opt_path, sizeof opt_path, "%s/opt.safetensors", th_dir());
    if (tg_params_save(cm->params, link) || tg_optim_save(opt, NULL, opt_path)) {
        snprintf(err, errlen, "%s", tg_last_error());
        goto done;
    }
    /* orthogonal recurrent weights */
    if (!(m = small_rnn(tg_cell_by_name("lstm"), 2, 3, 1, false, 2)) ||
        tg_rnn_init(m, &(tg_rnn_init_opts){.weight_hh = TG_INIT_ORTHOGONAL}, &rng))
        goto done;
    s += params_sum(m->params);
    /* CTC over log_softmax, and the edit distance of two label strings */
    if (!(lp_in = pattern(4, 2, 3, 0, true))) goto done;
    tg_tensor *ctc = tg_ctc_loss(tg_log_softmax(lp_in, 2), (int64_t[]){1, 2, 2, 0}, 2, (int64_t[]){4, 3},
                                 (int64_t[]){2, 1}, NULL);
    if (!ctc || tg_backward(ctc)) goto done;
    s += tg_item(ctc) + tg_get(tg_grad(lp_in), 5);
    tg_tape_reset();
    int64_t d = tg_edit_distance((int64_t[]){1, 2, 3, 2}, 4, (int64_t[]){1, 3, 2}, 3);
    if (d < 0) { snprintf(err, errlen, "tg_edit_distance failed"); goto done; }
    s += (double)d;
    /* a gradient check */
    if (!(g = pattern(2, 3, 0, 0.1, true))) goto done;
    tg_gradcheck_opts go = tg_gradcheck_defaults();
    bool ok = tg_gradcheck(gc_square, NULL, &g, 1, &go, NULL);
    if (!ok) { if (!tg_error_pending()) snprintf(err, errlen, "tg_gradcheck failed"); goto done; }
    /* the data pipeline */
    const data_case *dc = arg;
    if (!(ds = tg_dataset_load(dc->path, dc->labels, &dc->opt, err, errlen)) ||
        tg_dataset_split(ds, 0.5, 3, &train, &val, err, errlen) || tg_norm_fit(train, &norm, err, errlen))
        goto done;
    tg_norm_apply(train, &norm);
    if (!(norm_text = tg_norm_to_string(&norm))) { snprintf(err, errlen, "tg_norm_to_string failed"); goto done; }
    if (!(bt = tg_batcher_new(train, 1, true, false, 4, TG_F64, err, errlen))) goto done;
    int got;
    while ((got = tg_batcher_next(bt, &b, err, errlen)) == 1)
        for (int64_t k = 0; k < tg_numel(b.x); k++) s += tg_get(b.x, k) * (double)(k + 1);
    if (got < 0 || !(state = tg_batcher_state(bt))) { if (!err[0]) snprintf(err, errlen, "tg_batcher_state failed"); goto done; }
    s += (double)strlen(state) + (double)strlen(norm_text) + (double)tg_dataset_size(val);
    *result = s;
    rc = 0;
done:
    free(state);
    free(norm_text);
    tg_batch_clear(&b);
    tg_batcher_free(bt);
    tg_norm_clear(&norm);
    tg_dataset_free(train);
    tg_dataset_free(val);
    tg_dataset_free(ds);
    tg_tape_reset();
    tg_release(lp_in);
    tg_release(g);
    tg_optim_free(opt);
    tg_rnn_free(m);
    tg_cellmod_free(cm);
    tg_embedding_layer_free(emb);
    return rc;
}

TH_TEST(allocfail, embedding_cellmod_init_ctc_gradcheck_clip_data_pipeline, th_live_check) {
    th_dir_make();
    FILE *target = fopen(th_path_in("cell.safetensors"), "w"); /* a link to a regular file is written through */
    cr_assert_not_null(target);
    fclose(target);
    cr_assert_eq(symlink("cell.safetensors", th_path_in("link.safetensors")), 0);
    data_case dc = walks_csv(); /* its path: the last th_path_in */
    sweep("building blocks and the data pipeline", blocks_run, &dc, NULL);
    th_dir_remove();
}

/* ---- injected I/O failures during a checkpoint save (issue 16.4) -------------------------------- */

static int temporaries_in(const char *dir) {
    char cmd[600];
    snprintf(cmd, sizeof cmd, "ls -a '%s' | grep -c '\\.tmp\\.' || true", dir);
    FILE *p = popen(cmd, "r");
    int n = -1;
    if (p) {
        if (fscanf(p, "%d", &n) != 1) n = -1;
        pclose(p);
    }
    return n;
}

/* Each write (header, every tensor's data), the fsync, the close and the rename of both files of a
 * checkpoint pair made to fail in turn, with ENOSPC / EIO: the save reports the failing call, the
 * previous pair loads whole (model, optimizer state, step), no temporary is left behind. */
TH_TEST(iofail, failed_writes_fsyncs_closes_renames_keep_the_previous_checkpoint, th_live_check) {
    static const struct { tg_io_op op; const char *name, *msg; int err; } ops[] = {
        {TG_IO_WRITE, "write", "write failed: No space left on device", ENOSPC},
        {TG_IO_FSYNC, "fsync", "fsync failed: Input/output error", EIO},
        {TG_IO_CLOSE, "close", "close failed: Input/output error", EIO},
        {TG_IO_RENAME, "rename", "cannot rename the temporary file into place: Input/output error", EIO},
    };
    _Static_assert(sizeof ops / sizeof *ops == TG_IO_OPS, "every I/O op is tested");
    th_record_errors();
    th_dir_make();
    ckpt_case c;
    snprintf(c.path, sizeof c.path, "%s", th_path_in("io.safetensors"));
    tg_optim *old_opt;
    tg_model *old = ckpt_model(1, &old_opt);
    char err[512];
    cr_assert_eq(tg_ckpt_save(c.path, old, old_opt, 1, NULL, 0, NULL, err, sizeof err), 0, "%s", err);
    double ref = 0;
    cr_assert_eq(ckpt_load(&c, &ref, err, sizeof err), 0, "%s", err);
    c.m = ckpt_model(2, &c.opt);
    int total = 0;
    for (size_t k = 0; k < sizeof ops / sizeof *ops; k++) {
        tg__io_fail_at(ops[k].op, INT64_MAX, 0); /* count the calls of one save of the pair */
        cr_assert_eq(tg_ckpt_save(th_path_in("count.safetensors"), c.m, c.opt, 3, NULL, 0, NULL, err, sizeof err), 0, "%s", err);
        int64_t calls = tg__io_count(ops[k].op);
        tg__io_fail_at(ops[k].op, -1, 0);
        cr_assert_geq(calls, 2, "%s: %lld calls in a save of two files", ops[k].name, (long long)calls);
        for (int64_t n = 0; n < calls; n++, total++) {
            err[0] = 0;
            tg__io_fail_at(ops[k].op, n, ops[k].err);
            int rc = tg_ckpt_save(c.path, c.m, c.opt, 3, NULL, 0, NULL, err, sizeof err);
            tg__io_fail_at(ops[k].op, -1, 0);
            cr_assert_eq(rc, -1, "%s %lld failed: the save reported success", ops[k].name, (long long)n);
            cr_assert(strstr(err, ops[k].msg), "%s %lld failed: message '%s' does not say '%s'", ops[k].name,
                      (long long)n, err, ops[k].msg);
            double got = 0;
            cr_assert_eq(ckpt_load(&c, &got, err, sizeof err), 0, "%s %lld failed: the previous checkpoint does not "
                         "load: %s", ops[k].name, (long long)n, err);
            cr_assert(got == ref, "%s %lld failed: what loads is not the previous checkpoint", ops[k].name, (long long)n);
            cr_assert_eq(temporaries_in(th_dir()), 0, "%s %lld failed: a temporary was left", ops[k].name, (long long)n);
        }
    }
    cr_assert_eq(tg_ckpt_save(c.path, c.m, c.opt, 3, NULL, 0, NULL, err, sizeof err), 0, "%s", err);
    double now = 0;
    cr_assert_eq(ckpt_load(&c, &now, err, sizeof err), 0, "%s", err);
    cr_assert(now != ref, "the new checkpoint loads after the failures");
    fprintf(stderr, "iofail: %d injected write/fsync/close/rename failures, previous checkpoint kept each time\n", total);
    tg_optim_free(old_opt);
    tg_model_free(old);
    tg_optim_free(c.opt);
    tg_model_free(c.m);
    th_dir_remove();
}
