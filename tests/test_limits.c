/* tests/test_limits.c - bounded resources (include/tapegrad/memory.h) and files that must agree:
 *   - the estimate's tape term against the measured tg_tape_bytes of every built-in cell at sizes,
 *     layer counts and directions other than the probe's (within a stated factor);
 *   - the library's constructors refuse sizes that cannot fit, by name and size, without allocating;
 *   - the four commands of issue 16 end in under a second with a message naming the size, and
 *     --max-memory is honoured and validated;
 *   - a checkpoint whose metadata contradicts its tensors (hidden_size=1000000 over hidden 32, a
 *     wrong dtype, a wrong layer count) is refused naming the key and the tensor, before any model
 *     is built. */
#include <criterion/criterion.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <tapegrad/memory.h>
#include <tapegrad/tapegrad.h>

#include "helpers.h"

/* ---- the estimate against what the tape holds ----------------------------------------------------- */

/* The tape term without the backward allowance (the 1.25 of memory.h) vs tg_tape_bytes after a
 * forward, for every built-in cell, 2 layers x 2 directions, F64, sizes unlike the probe's. */
Test(limits, estimate_matches_measured_tape_of_every_cell) {
    th_record_errors();
    int64_t T = 7, B = 6, H = 40;
    double worst_lo = 1e9, worst_hi = 0;
    for (int c = 0; c < tg_cell_count(); c++) {
        const tg_cell *cell = tg_cell_at(c);
        for (int bidir = 0; bidir < 2; bidir++) {
            int64_t I = 24;
            tg_rnn_config rc = {.input_size = I, .hidden_size = H, .num_layers = 2, .bidirectional = bidir,
                                .dtype = TG_F64};
            tg_rnn *m = tg_rnn_new(cell, &rc, NULL);
            if (!m) { /* cells whose input must equal the hidden size */
                th_reset_errors();
                rc.input_size = I = H;
                m = tg_rnn_new(cell, &rc, NULL);
            }
            if (!m && bidir) { th_reset_errors(); continue; } /* a cell that cannot be stacked bidirectionally */
            cr_assert(m, "%s: %s", cell->name, th_last_message());
            tg_tensor *x = th_rand(3, TG_SHAPE(T, B, I), -1, 1);
            cr_assert(tg_rnn_forward(m, x, NULL, NULL), "%s: %s", cell->name, th_last_message());
            double measured = (double)tg_tape_bytes();
            tg_mem_estimate e;
            cr_assert_eq(tg_rnn_mem_estimate(cell, &rc, T, B, 2, &e), 0);
            double ratio = e.tape / 1.25 / measured;
            if (ratio < worst_lo) worst_lo = ratio;
            if (ratio > worst_hi) worst_hi = ratio;
            cr_expect(ratio > 0.6 && ratio < 1.6, "%s (bidirectional %d): estimate %.0f vs measured %.0f bytes (x%.2f)",
                      cell->name, bidir, e.tape / 1.25, measured, ratio);
            /* the parameter term is exact for the standard layouts */
            if (cell->n_extra == 0 && !cell->make_params)
                cr_expect_eq(e.params, 8.0 * (double)tg_params_numel(m->params), "%s: %.0f vs %lld", cell->name,
                             e.params / 8, (long long)tg_params_numel(m->params));
            tg_tape_reset();
            tg_release(x);
            tg_rnn_free(m);
        }
    }
    printf("estimate / measured tape over every built-in cell: %.2f .. %.2f\n", worst_lo, worst_hi);
    cr_expect_eq(tg_live_tensors(), 0);
}

/* Tape bytes per time step against the saved-activation minimum of each cell (docs/speed.md, "Tape
 * memory per step"): what BPTT must keep per batch x hidden element and step, in floats. The tape after a
 * one-layer forward (everything tg_tape_bytes counts: the input projection, the step results, the
 * stacked output; the input x and the parameters are not the tape's) must stay within 1.5x of it, so a
 * change that makes a cell keep more fails here with the cell's name and both figures. */
static const struct { const char *cell; double minimum; const char *kept; } tape_minimum[] = {
    {"lstm", 6, "i, f, g, o, c', h'"},
    {"gru", 5, "r, z, n, h_n = h W_hnᵀ + b_hn, h'"},
    /* the zoo's LSTM family on tg_lstm_zoo_ (h14lstmz): the kept gates, c', h' */
    {"lstm_peephole", 6, "i, f, g, o, c', h'"},
    {"lstm_niaf", 6, "i, f, g (= a_g), o, c', h'"},
    {"lstm_noaf", 6, "i, f, g, o, c', h'"},
    {"lstm_nig", 5, "f, g, o, c', h'"},
    {"lstm_nfg", 5, "i, g, o, c', h'"},
    {"lstm_nog", 5, "i, f, g, c', h'"},
    {"lstm_cifg", 5, "i, g, o, c', h' (f = 1 - i)"},
    /* the GRU-like cells on tg_gru_zoo_ (h14gruz): the gates, the candidate, h' */
    {"mgu", 3, "f, h̃, h'"},
    {"mut1", 4, "z, r, h̃, h'"},
    {"mut2", 4, "z, r, h̃, h'"},
    {"mut3", 4, "z, r, h̃, h'"},
    {"gru_reset_before", 4, "r, z, n, h'"},
    /* the one-state cells on tg_rnn_seq_ (h14rnn): h' over the input projection, which is the layer output */
    {"rnn_tanh", 1, "h' (tanh' = 1 - h'^2; dW_hh reads h)"},
    {"rnn_relu", 1, "h' (relu' from h' > 0)"},
    {"indrnn", 1, "h' (relu' from h' > 0; du reads h)"},
    /* lstm_ln on tg_ln_gates (h14fgr): what backward needs without redoing a matrix product is both LN
     * inputs (x̂ = (a − μ)/σ from them and two numbers per part), the gates, c' and h'; LN(c') and its
     * tanh are elementwise in c' and its two numbers per row */
    {"lstm_ln", 14, "x W_ihᵀ, h W_hhᵀ (4 + 4), i, f, g, o, c', h'"},
    /* lstm_fgr on tg_lstm_fgr_gates_ + tg_lstm_state (h5fgr): the gates, stored over the input projection,
     * are also the next step's states i, f, o (views); c' and h' */
    {"lstm_fgr", 6, "i, f, g, o (also the next step's states), c', h'"},
    /* lstm_np, the LSTM in plain ops (nn/cells_zoo.c lstm_variant_step), once the tape frees what no
     * backward reads (tg_tape_free_unsaved, h5np): the same minimum as lstm */
    {"lstm_np", 6, "i, f, g, o, c', h'"},
};

Test(limits, tape_per_step_within_1_5x_of_the_minimum) {
    const int64_t T = 16, B = 8, H = 32;
    for (size_t k = 0; k < sizeof tape_minimum / sizeof tape_minimum[0]; k++) {
        const tg_cell *cell = tg_cell_by_name(tape_minimum[k].cell);
        cr_assert_not_null(cell, "%s", tape_minimum[k].cell);
        tg_rnn_config rc = {.input_size = H, .hidden_size = H, .num_layers = 1, .dtype = TG_F32};
        tg_rnn *m = tg_rnn_new(cell, &rc, NULL);
        cr_assert_not_null(m);
        tg_tensor *x = th_rand(5, TG_SHAPE(T, B, H), -1, 1), *x32 = tg_to_dtype(x, TG_F32);
        cr_assert_not_null(tg_rnn_forward(m, x32, NULL, NULL), "%s: %s", cell->name, tg_last_error());
        double per_step = (double)tg_tape_bytes() / (4.0 * (double)(T * B * H));
        printf("tape per step, %s: %.2f floats per batch x hidden element (minimum %.0f: %s), x%.2f\n", cell->name,
               per_step, tape_minimum[k].minimum, tape_minimum[k].kept, per_step / tape_minimum[k].minimum);
        cr_expect(per_step <= 1.5 * tape_minimum[k].minimum,
                  "%s keeps %.2f floats per batch x hidden element and step on the tape, more than 1.5x its minimum "
                  "%.0f (%s)", cell->name, per_step, tape_minimum[k].minimum, tape_minimum[k].kept);
        tg_tape_reset();
        tg_release(x);
        tg_release(x32);
        tg_rnn_free(m);
    }
    cr_expect_eq(tg_live_tensors(), 0);
}

Test(limits, constructors_refuse_what_cannot_fit) {
    th_record_errors();
    tg_rnn_config rc = {.input_size = 1, .hidden_size = 1 << 22, .num_layers = 1};
    cr_assert_null(tg_rnn_new(tg_cell_by_name("lstm"), &rc, NULL));
    cr_expect(strstr(th_last_message(), "tg_rnn_new: cell 'lstm': needs ~") != NULL, "%s", th_last_message());
    cr_expect(strstr(th_last_message(), "TB") && strstr(th_last_message(), "hidden 4194304"), "%s", th_last_message());
    th_reset_errors();
    cr_assert_null(tg_zeros(TG_F64, TG_SHAPE(1 << 20, 1 << 20, 8)));
    cr_expect(strstr(th_last_message(), "tg_empty: [1048576,1048576,8] F64 needs 70 TB, more than the") != NULL, "%s",
              th_last_message());
    cr_expect_eq(tg_live_tensors(), 0);
}

Test(limits, sizes_format_and_parse) {
    char b[32];
    cr_expect_str_eq(tg_mem_format(3.1e12, b, sizeof b), "3.1 TB");
    cr_expect_str_eq(tg_mem_format(537e6, b, sizeof b), "537 MB");
    cr_expect_str_eq(tg_mem_format(999, b, sizeof b), "999 B");
    double v;
    cr_expect(tg_mem_parse("4G", &v) == 0 && v == 4e9);
    cr_expect(tg_mem_parse("1.5TB", &v) == 0 && v == 1.5e12);
    cr_expect(tg_mem_parse("500k", &v) == 0 && v == 5e5);
    cr_expect(tg_mem_parse("0", &v) != 0);
    cr_expect(tg_mem_parse("-3G", &v) != 0);
    cr_expect(tg_mem_parse("0.4e308T", &v) != 0); /* overflowed to infinity (found by tests/fuzz/fuzz_cli.c) */
    cr_expect(tg_mem_parse("1e-9", &v) != 0);
    cr_expect(tg_mem_parse("4Q", &v) != 0);
    cr_expect(tg_mem_parse("", &v) != 0);
    tg_mem_estimate e = {.tape = 2e9, .params = 1e6};
    tg_mem_sum(&e);
    snprintf(e.why, sizeof e.why, "hidden 1 x batch 2 x seq 3");
    char err[512];
    cr_expect_eq(tg_mem_check(&e, 3e9, err, sizeof err), 0);
    cr_expect_eq(tg_mem_check(&e, 1e9, err, sizeof err), -1);
    cr_expect_str_eq(err, "needs ~2.0 GB: hidden 1 x batch 2 x seq 3 (tape 2.0 GB, parameters 1.0 MB), more than the "
                          "1.0 GB available (--max-memory)");
}

/* ---- the commands ------------------------------------------------------------------------------- */

TestSuite(limits_cli, .init = th_dir_make, .fini = th_dir_remove);

/* The four commands of the issue: refused in well under a second (valgrind runs get more time),
 * exit status 2, one line naming the need, the sizes and what is available. */
Test(limits_cli, issue_commands_refused_quickly_with_the_size) {
    struct { const char *args, *want; } cases[] = {
        {"train --task adding --hidden 4096 --batch 4096 --seq 100000 --steps 1",
         "tapegrad train: needs ~42 TB: hidden 4096 x batch 4096 x seq 100000 (tape 42 TB"},
        {"train --task adding --hidden 4096 --layers 16",
         "tapegrad train: needs ~36 GB: 2080931840 parameters: hidden 4096 x (input 2 + hidden 4096) x 4 gates x 16 layers"},
        {"gradcheck --cell lstm --T 10000 --H 4096 --B 4096 --I 4096",
         "tapegrad gradcheck: needs ~40 TB: hidden 4096 x batch 4096 x seq 10000 x 2 layers"},
        {"bench --I 65536 --H 65536 --B 65536 --T 100000", "tapegrad bench: needs ~16 PB: hidden 65536 x batch 65536 x seq 100000"},
    };
    double limit = getenv("TG_VALGRIND") ? 20.0 : 1.0;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        th_run_result r = th_run("%s --max-memory 16G", cases[i].args);
        cr_expect_eq(r.status, 2, "%s: status %d", cases[i].args, r.status);
        cr_expect(strstr(r.err, cases[i].want) != NULL, "%s:\n%s", cases[i].args, r.err);
        cr_expect(strstr(r.err, "more than the ") != NULL && strchr(r.err, '\n') == r.err + strlen(r.err) - 1,
                  "one line: %s", r.err);
        cr_expect(r.seconds < limit, "%s took %.2f s", cases[i].args, r.seconds);
        th_run_free(&r);
    }
}

Test(limits_cli, max_memory_is_honoured_and_validated) {
    th_run_result r = th_run("train --task adding --steps 2 --quiet --max-memory 1M");
    cr_expect_eq(r.status, 2);
    cr_expect(strstr(r.err, "more than the 1.0 MB available (--max-memory)") != NULL, "%s", r.err);
    th_run_free(&r);
    r = th_run("train --task adding --steps 2 --quiet --max-memory 2G");
    cr_expect_eq(r.status, 0, "%s", r.err);
    th_run_free(&r);
    r = th_run("bench --T 2 --steps 1 --warmup 0 --max-memory=lots");
    cr_expect_eq(r.status, 2);
    cr_expect(strstr(r.err, "option --max-memory: 'lots' is not a size") != NULL, "%s", r.err);
    th_run_free(&r);
    const char *cmds[] = {"compare --task adding --cells lstm --steps 2", "gradcheck --cell gru",
                          "bench --T 2 --steps 1 --warmup 0"};
    for (size_t i = 0; i < sizeof cmds / sizeof cmds[0]; i++) {
        r = th_run("%s --max-memory 10k", cmds[i]);
        cr_expect_neq(r.status, 0, "%s", cmds[i]);
        cr_expect(strstr(r.err, "available (--max-memory)") != NULL, "%s: %s", cmds[i], r.err);
        th_run_free(&r);
    }
}

/* sample and predict run a loaded model without gradients: its parameters and the data it is about to
 * hold are checked against --max-memory too (issue 16.1, "in every subcommand"). */
Test(limits_cli, sample_and_predict_check_the_model_and_the_data) {
    FILE *fp = fopen(th_path_in("d.csv"), "w");
    cr_assert_not_null(fp);
    fputs("s,x,label\n", fp);
    for (int q = 0; q < 10; q++)
        for (int k = 0; k < 3; k++) fprintf(fp, "q%d,%g,%d\n", q, 0.1 * k + 0.05 * q, q % 2);
    fclose(fp);
    const char *setup[] = {"train --task charlm --steps 2 --quiet --save c.safetensors",
                           "train --data d.csv --seq-column s --label-column label --target class --steps 2 --quiet "
                           "--save d.safetensors"};
    for (int i = 0; i < 2; i++) {
        th_run_result r = th_run("%s", setup[i]);
        cr_assert_eq(r.status, 0, "%s: %s", setup[i], r.err);
        th_run_free(&r);
    }
    struct { const char *args, *want; } cases[] = {
        {"sample --model c.safetensors --length 5", "tapegrad sample: needs ~"},
        {"predict --model d.safetensors", "tapegrad predict: needs ~"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        th_run_result r = th_run("%s --max-memory 10k", cases[i].args);
        cr_expect_eq(r.status, 2, "%s: status %d", cases[i].args, r.status);
        cr_expect(strstr(r.err, cases[i].want) && strstr(r.err, "the model (") &&
                      strstr(r.err, "more than the 10 kB available (--max-memory)"), "%s: %s", cases[i].args, r.err);
        th_run_free(&r);
        r = th_run("%s --max-memory 1G", cases[i].args);
        cr_expect_eq(r.status, 0, "%s --max-memory 1G: %s", cases[i].args, r.err);
        th_run_free(&r);
    }
}

/* ---- checkpoint metadata against the tensors -------------------------------------------------- */

/* Copies checkpoint `src` to `dst` with metadata key = value (tensors unchanged). */
static void rewrite_meta(const char *src, const char *dst, const char *key, const char *value) {
    tg_st_file *f = tg_st_load(src);
    cr_assert(f, "%s", tg_last_error());
    int n = tg_st_count(f), nm = tg_st_meta_count(f);
    const char **names = malloc((size_t)n * sizeof *names), **meta = malloc((size_t)nm * 2 * sizeof *meta);
    tg_tensor **ts = malloc((size_t)n * sizeof *ts);
    for (int i = 0; i < n; i++) { names[i] = tg_st_name_at(f, i); ts[i] = tg_st_tensor_at(f, i); }
    for (int i = 0; i < nm; i++) {
        meta[2 * i] = tg_st_meta_key(f, i);
        meta[2 * i + 1] = strcmp(meta[2 * i], key) ? tg_st_meta_value(f, i) : value;
    }
    cr_assert_eq(tg_st_save(dst, n, names, ts, nm, meta), 0, "%s", tg_last_error());
    free(names);
    free(meta);
    free(ts);
    tg_st_free(f);
}

Test(limits_cli, checkpoint_metadata_contradicting_tensors_is_named) {
    th_run_result r = th_run("train --task adding --hidden 32 --steps 2 --quiet --save a.safetensors");
    cr_assert_eq(r.status, 0, "%s", r.err);
    th_run_free(&r);
    char a[128], b[128], ao[160], bo[512];
    snprintf(a, sizeof a, "%s/a.safetensors", th_dir());
    snprintf(b, sizeof b, "%s/b.safetensors", th_dir());
    snprintf(ao, sizeof ao, "%s/a.optim.safetensors", th_dir());
    snprintf(bo, sizeof bo, "cp '%s' '%s/b.optim.safetensors'", ao, th_dir());
    cr_assert_eq(system(bo), 0);
    struct { const char *key, *value, *want; } cases[] = {
        {"hidden_size", "1000000", "metadata hidden_size=1000000 contradicts tensor 'head.weight' [1,32]"},
        {"input_size", "7", "metadata input_size=7 contradicts tensor 'rnn.weight_ih_l0' [128,2]"},
        {"output_size", "3", "metadata output_size=3 contradicts tensor 'head.weight' [1,32]"},
        {"dtype", "F64", "metadata dtype=F64 contradicts tensor 'rnn.weight_ih_l0' (F32)"},
        {"layers", "3", "metadata layers=3 contradicts the tensors (rnn.weight_ih_l0 .. rnn.weight_ih_l0: 1 layers)"},
        {"cell", "gru", "metadata hidden_size=32 contradicts tensor 'rnn.weight_ih_l0' [128,2] (gates x hidden rows)"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        rewrite_meta(a, b, cases[i].key, cases[i].value);
        const char *cmds[] = {"train --resume b.safetensors --steps 4 --quiet", "sample --model b.safetensors"};
        for (int k = 0; k < 2; k++) {
            if (k == 1 && strcmp(cases[i].key, "hidden_size")) continue;
            r = th_run("%s", cmds[k]);
            cr_expect_eq(r.status, 2, "%s %s: %d", cases[i].key, cmds[k], r.status);
            cr_expect(strstr(r.err, cases[i].want) != NULL, "%s: %s", cases[i].key, r.err);
            cr_expect(strstr(r.err, "out of memory") == NULL, "%s", r.err);
            th_run_free(&r);
        }
    }
}
