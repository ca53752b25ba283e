/* tests/test_init.c - `tapegrad train --init FILE` (issue 18.6; tools/initweights.c).
 *
 * What is checked:
 *   - PyTorch's names: tests/data/init/torch_lstm.safetensors (torch.nn.LSTM(2, 8, 2)'s own state_dict
 *     + a Linear's "weight"/"bias", no prefixes, F32) and torch_gru_f64.safetensors (a Module's
 *     "rnn.*"/"head.*", F64, converted into an F32 and an F64 model) load, and the model then computes
 *     torch's outputs on the fixture's x (golden.safetensors, all written by gen_init_torch.py with
 *     torch 1.13): 1e-6 (F32) / 1e-12 (F64), so every tensor landed in its place;
 *   - tapegrad's own checkpoint (train --save) loads bit for bit, and the command trains from it;
 *   - refusals, nothing changed in the model: a wrong shape, a missing tensor, an unexpected one (with
 *     a suggestion), two tensors for one parameter, NaN, an F64 value beyond F32, an F16 tensor; and the
 *     command's: each named on stderr with exit status 2, --init with --resume or --forget-bias. */
#include <criterion/criterion.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <tapegrad/tapegrad.h>

#include "helpers.h"
#include "tools/initweights.h"

#define FIX TG_TEST_DATA_DIR "/init/"

TestSuite(init, .init = th_dir_make, .fini = th_dir_remove);

static tg_model *model(const char *cell, int layers, tg_dtype dt) {
    char err[256];
    tg_model_config mc = {.input_size = 2, .hidden_size = 8, .output_size = 1, .layers = layers, .dtype = dt};
    snprintf(mc.cell, sizeof mc.cell, "%s", cell);
    tg_model *m = tg_model_new(&mc, 3, err, sizeof err);
    cr_assert_not_null(m, "%s", err);
    return m;
}

/* max |head(rnn(x))[-1] - torch's| on the fixture's x */
static double diff_to_torch(const tg_model *m, const char *golden) {
    tg_st_file *g = tg_st_load(FIX "golden.safetensors");
    cr_assert_not_null(g, "%s", tg_last_error());
    tg_tensor *x = tg_to_dtype(tg_st_get(g, "x"), m->cfg.dtype), *want = tg_st_get(g, golden);
    cr_assert(x && want);
    tg_tensor *y = tg_model_forward(m, x, false, NULL, NULL);
    cr_assert_not_null(y, "%s", tg_last_error());
    double d = 0;
    for (int64_t k = 0; k < tg_numel(want); k++) d = fmax(d, fabs(tg_get(y, k) - tg_get(want, k)));
    tg_tape_reset();
    tg_release(x);
    tg_st_free(g);
    return d;
}

static void load_ok(tg_model *m, const char *path, int want_converted) {
    char err[1024];
    int conv = -1;
    cr_assert_eq(init_weights_load(m->params, path, &conv, err, sizeof err), 0, "%s", err);
    cr_expect_eq(conv, want_converted, "%s: %d tensors converted", path, conv);
}

Test(init, torch_names_give_torch_outputs) {
    tg_model *lstm = model("lstm", 2, TG_F32);
    cr_expect_gt(diff_to_torch(lstm, "lstm_y"), 1e-3, "the random init already gives torch's output?");
    load_ok(lstm, FIX "torch_lstm.safetensors", 0);
    double d = diff_to_torch(lstm, "lstm_y");
    cr_expect_leq(d, 1e-6, "LSTM from torch's bare names: %g from torch's output", d);
    tg_model_free(lstm);

    tg_model *gru = model("gru", 1, TG_F64);
    load_ok(gru, FIX "torch_gru_f64.safetensors", 0);
    d = diff_to_torch(gru, "gru_y");
    cr_expect_leq(d, 1e-12, "GRU F64 from rnn./head. names: %g from torch's output", d);
    tg_model_free(gru);

    tg_model *gru32 = model("gru", 1, TG_F32);
    load_ok(gru32, FIX "torch_gru_f64.safetensors", 6); /* every tensor F64 -> F32 */
    d = diff_to_torch(gru32, "gru_y");
    cr_expect_leq(d, 1e-6, "GRU F64 file into an F32 model: %g from torch's output", d);
    tg_model_free(gru32);
}

/* Writes the model's parameters to `name` under their names with rename(i) and an optional extra
 * tensor; returns the path. */
static const char *write_params(const tg_model *m, const char *name, const char *(*rename)(const char *, int),
                                const char *extra, tg_tensor *extra_t) {
    int n = tg_params_count(m->params), k = 0;
    const char *names[64];
    tg_tensor *ts[64];
    for (int i = 0; i < n; i++) {
        const char *nm = rename ? rename(tg_params_name_at(m->params, i), i) : tg_params_name_at(m->params, i);
        if (!nm) continue;
        names[k] = nm;
        ts[k++] = tg_params_at(m->params, i);
    }
    if (extra) { names[k] = extra; ts[k++] = extra_t; }
    const char *path = th_path_in(name);
    cr_assert_eq(tg_st_save(path, k, names, ts, 0, NULL), 0, "%s", tg_last_error());
    return path;
}

static const char *drop_head_bias(const char *name, int i) { (void)i; return strcmp(name, "head.bias") ? name : NULL; }
static const char *strip_some(const char *name, int i) { return i % 2 && strchr(name, '.') ? strchr(name, '.') + 1 : name; }

/* init_weights_load must fail, leave the model as it was and name every needle. */
static void refused(tg_model *m, const char *path, const char *needle1, const char *needle2) {
    tg_tensor *before = tg_copy(tg_params_at(m->params, 0));
    char err[1024];
    cr_expect_eq(init_weights_load(m->params, path, NULL, err, sizeof err), -1, "%s loaded", path);
    cr_expect(strstr(err, needle1) != NULL, "'%s' lacks '%s'", err, needle1);
    if (needle2) cr_expect(strstr(err, needle2) != NULL, "'%s' lacks '%s'", err, needle2);
    cr_expect(strchr(err, '\n') == NULL, "not one line: %s", err);
    cr_expect_eq(memcmp(tg_cdata(before), tg_cdata(tg_params_at(m->params, 0)), (size_t)tg_numel(before) * 4), 0,
                 "the model changed although the file was refused");
    tg_release(before);
}

Test(init, mismatches_are_named_and_change_nothing) {
    tg_model *src = model("lstm", 1, TG_F32), *m = model("lstm", 1, TG_F32);
    /* a mix of prefixed and bare names fits */
    load_ok(m, write_params(src, "mixed.safetensors", strip_some, NULL, NULL), 0);
    for (int i = 0; i < tg_params_count(m->params); i++)
        cr_expect_eq(memcmp(tg_cdata(tg_params_at(m->params, i)), tg_cdata(tg_params_at(src->params, i)),
                            (size_t)tg_numel(tg_params_at(m->params, i)) * 4), 0, "%s not copied bit for bit",
                     tg_params_name_at(m->params, i));
    tg_model *m2 = model("lstm", 1, TG_F32);
    refused(m2, write_params(src, "missing.safetensors", drop_head_bias, NULL, NULL), "missing tensor 'head.bias' [1]",
            "(or 'bias')");
    tg_tensor *extra = tg_zeros(TG_F32, TG_SHAPE(3));
    refused(m2, write_params(src, "extra.safetensors", NULL, "rnn.weight_ih_l1", extra), "unexpected tensor 'rnn.weight_ih_l1' [3]",
            "did you mean 'rnn.weight_ih_l0'?");
    refused(m2, write_params(src, "twice.safetensors", NULL, "weight_hh_l0", tg_params_at(src->params, 1)),
            "tensors 'rnn.weight_hh_l0' and 'weight_hh_l0' both give parameter 'rnn.weight_hh_l0'", NULL);
    tg_release(extra);
    /* a wrong shape: torch's 2-layer LSTM of hidden 8 into one of hidden 8 x 1 layer is extra layers */
    refused(m2, FIX "torch_lstm.safetensors", "unexpected tensor 'weight_ih_l1' [32,8]", NULL);
    tg_model *wide = model("gru", 1, TG_F32);
    refused(wide, FIX "torch_lstm.safetensors", "tensor 'weight_ih_l0' is [32,2] in the file, the model's 'rnn.weight_ih_l0' is [24,2]",
            "and ");
    /* values: NaN, and an F64 value no F32 can hold */
    tg_tensor *w = tg_to_dtype(tg_params_at(src->params, 0), TG_F64);
    tg_set(w, 5, NAN);
    const char *nm[] = {"rnn.weight_ih_l0"};
    cr_assert_eq(tg_st_save(th_path_in("one.safetensors"), 1, nm, &w, 0, NULL), 0);
    refused(m2, th_path_in("one.safetensors"), "tensor 'rnn.weight_ih_l0' holds nan at element 5", NULL);
    tg_set(w, 5, 1e300);
    cr_assert_eq(tg_st_save(th_path_in("one.safetensors"), 1, nm, &w, 0, NULL), 0);
    refused(m2, th_path_in("one.safetensors"), "holds 1e+300 at element 5, beyond F32's range", NULL);
    tg_release(w);
    /* an F16 tensor: refused by the reader, naming the dtype */
    FILE *f = fopen(th_path_in("f16.safetensors"), "wb");
    const char hdr[] = "{\"w\":{\"dtype\":\"F16\",\"shape\":[2],\"data_offsets\":[0,4]}}   ";
    unsigned char len8[8] = {(unsigned char)(sizeof hdr - 1)};
    fwrite(len8, 1, 8, f);
    fwrite(hdr, 1, sizeof hdr - 1, f);
    fwrite("\0\0\0\0", 1, 4, f);
    fclose(f);
    refused(m2, th_path_in("f16.safetensors"), "F16", NULL);
    tg_clear_error();
    tg_model_free(src);
    tg_model_free(m);
    tg_model_free(m2);
    tg_model_free(wide);
}

Test(init, the_command_starts_from_a_checkpoint_or_torch_weights) {
    th_run_result r = th_run("train --task adding --hidden 8 --steps 30 --quiet --save a.safetensors");
    cr_assert_eq(r.status, 0, "%s", r.err);
    th_run_free(&r);
    /* the checkpoint's weights, not a fresh init: --init a with a vanishing lr ends where a ended */
    r = th_run("train --task adding --hidden 8 --steps 1 --lr 1e-12 --quiet --init a.safetensors --save b.safetensors");
    cr_assert_eq(r.status, 0, "%s", r.err);
    cr_expect(strstr(r.out, "initial weights from a.safetensors: 6 tensors\n") != NULL, "%s", r.out);
    th_run_free(&r);
    tg_st_file *a = tg_st_load(th_path_in("a.safetensors")), *b = tg_st_load(th_path_in("b.safetensors"));
    cr_assert(a && b, "%s", tg_last_error());
    for (int i = 0; i < tg_st_count(a); i++) {
        tg_tensor *ta = tg_st_tensor_at(a, i), *tb = tg_st_get(b, tg_st_name_at(a, i));
        cr_assert_not_null(tb);
        for (int64_t k = 0; k < tg_numel(ta); k++)
            cr_expect_leq(fabs(tg_get(ta, k) - tg_get(tb, k)), 1e-9, "%s[%lld] moved", tg_st_name_at(a, i), (long long)k);
    }
    cr_expect_str_eq(tg_st_meta(b, "step"), "1", "an --init run starts at step 0");
    tg_st_free(a);
    tg_st_free(b);
    /* torch's weights, converted from F64 */
    r = th_run("train --task adding --cell gru --hidden 8 --steps 5 --quiet --init " FIX "torch_gru_f64.safetensors");
    cr_expect_eq(r.status, 0, "%s", r.err);
    cr_expect(strstr(r.out, "6 tensors, converted to F32") != NULL, "%s", r.out);
    th_run_free(&r);
    th_expect_usage_error("train --task adding --hidden 16 --layers 2 --steps 5 --init " FIX "torch_lstm.safetensors",
                          "tensor 'weight_ih_l0' is [32,2] in the file, the model's 'rnn.weight_ih_l0' is [64,2]",
                          "(the model: --cell lstm --hidden 16 --layers 2, 2 inputs, 1 outputs, F32)");
    th_expect_usage_error("train --task copy --hidden 8 --layers 2 --steps 5 --init " FIX "torch_lstm.safetensors",
                          "the model's 'rnn.weight_ih_l0' is [32,10]", NULL);
    th_expect_usage_error("train --task adding --init a.safetensors --resume a.safetensors", "give --init or --resume, not both", NULL);
    th_expect_usage_error("train --task adding --hidden 8 --init a.safetensors --forget-bias 1", "--forget-bias sets an initial weight", NULL);
    th_expect_usage_error("train --task adding --init nothere.safetensors", "cannot read --init file 'nothere.safetensors'", NULL);
}
