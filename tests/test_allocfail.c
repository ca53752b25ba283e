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
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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
        tg__alloc_fail_at(-1, false);
        tg_tape_reset();
        cr_assert(n < f.allocations || failed == 0, "%s: run %lld made %lld allocations fail: the count changed",
                  what, (long long)n, (long long)failed);
        cr_assert(n == f.allocations || failed == 1, "%s: allocation %lld was never reached (%lld allocations "
                  "counted before): the count is not deterministic", what, (long long)n, (long long)tg__alloc_count());
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
    const char *csv = th_path_in("walks.csv");
    FILE *fp = fopen(csv, "w");
    cr_assert_not_null(fp);
    fputs("walk,\"speed, m/s\",temp,label\na,1.5,20,0\na,1.7,21,0\nb,0.5,19,1\nb,0.25,18,1\nb,0.5,17,1\n", fp);
    fclose(fp);
    const data_case cases[] = {
        {csv, NULL, {.seq_column = "walk", .label_column = "label"}},
        {FIX "x_f8.npy", FIX "y_i8.npy", {0}},
        {FIX "seqs.safetensors", NULL, {0}},
        {FIX "images-idx3-ubyte.gz", FIX "labels-idx1-ubyte.gz", {0}},
    };
    for (size_t k = 0; k < sizeof cases / sizeof *cases; k++) sweep(strrchr(cases[k].path, '/') + 1, data_load, &cases[k], NULL);
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
