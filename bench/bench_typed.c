/* bench/bench_typed.c - a typed cell (the cell language, docs/cells/) against the same cell written
 * in C, interleaved in one process: the issue-11 bar is "within 1.3x of C".
 *
 * Pairs: janet.cell vs a C JANET written here with public ops, as a user would write it (one
 * tg_linear_add for both blocks, tg_gates "st", tg_lerp); lstm.cell and gru.cell vs the built-in C
 * lstm and gru. Both models of a pair get the same weights (the same seed) and the same data.
 * Measured per pair, alternating C, typed, typed, C, ... so that load changes hit both alike:
 *   train: one training step as `tapegrad bench` times it (forward over T, MSE on every output, BPTT,
 *          Adam), thread CPU time;
 *   infer: T steps of a B-row tg_rnn_stream (no tape), thread CPU time.
 * Printed: each side's median and the median of the per-pair ratios typed / C (> 1: typed slower).
 * First each pair's forwards are checked to agree (max |y_C - y_typed| <= 1e-5), so both are one cell.
 *
 * Run: nice -n 19 build/bench/bench_typed [rounds [I H B T]]   (default 15 rounds, 64 128 32 50, F32)
 */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <tapegrad/tapegrad.h>

#include "bench_common.h"

#ifndef TG_SOURCE_DIR
#define TG_SOURCE_DIR "."
#endif

/* JANET (van der Westhuizen & Lasenby 2018) in C: [a_f | a_c] = x W_ihᵀ + b_ih + h W_hhᵀ + b_hh,
 * f = σ(a_f), c' = f ⊙ c + (1 − f) ⊙ tanh(a_c), h' = c'. One state here (h = c). */
static int janet_step(const tg_cell *cell, const tg_cell_params *p, const tg_tensor *x, const tg_tensor *xproj,
                      tg_tensor *const *state, tg_tensor **out) {
    (void)cell; (void)x;
    tg_tensor *g = tg_gates(tg_linear_add(state[0], p->weight_hh, p->bias_hh, xproj), "st"); /* [2,B,H] */
    /* tanh(a_c) + f ⊙ (c − tanh(a_c)) = f ⊙ c + (1 − f) ⊙ tanh(a_c) */
    out[0] = tg_lerp(tg_select(g, 1), state[0], tg_select(g, 0));
    return out[0] ? 0 : -1;
}

static const char *const g_states[] = {"h"};
static const tg_cell g_janet_c = {.name = "janet_c", .gates = 2, .n_states = 1, .state_names = g_states,
                                  .forget_gate = 0, .step = janet_step,
                                  .equations = "f = σ(W_xf x + W_hf h), h' = f⊙h + (1−f)⊙tanh(W_xc x + W_hc h)",
                                  .reference = "bench/bench_typed.c (the C twin of docs/cells/janet.cell)"};

typedef struct side {
    tg_rnn *rnn;
    tg_optim *opt;
    tg_rnn_stream *stream;
} side;

static int side_new(side *s, const tg_cell *cell, int64_t I, int64_t H, int64_t B) {
    tg_rng rng;
    tg_rng_seed(&rng, 1);
    s->rnn = tg_rnn_new(cell, &(tg_rnn_config){.input_size = I, .hidden_size = H, .num_layers = 1, .dtype = TG_F32}, &rng);
    tg_optim_opts o = tg_optim_defaults(TG_OPTIM_ADAM);
    s->opt = s->rnn ? tg_optim_new_params(TG_OPTIM_ADAM, s->rnn->params, &o) : NULL;
    s->stream = s->rnn ? tg_rnn_stream_new(s->rnn, NULL, B) : NULL;
    return s->opt && s->stream ? 0 : -1;
}

static void side_free(side *s) {
    tg_rnn_stream_free(s->stream);
    tg_optim_free(s->opt);
    tg_rnn_free(s->rnn);
}

/* One training step; returns its thread CPU seconds (or -1). */
static double train_step(side *s, const tg_tensor *x, const tg_tensor *target) {
    double t0 = bench_cpu_now();
    tg_tensor *loss = tg_mse_loss(tg_rnn_forward(s->rnn, x, NULL, NULL), target, TG_REDUCE_MEAN);
    int rc = loss ? tg_backward(loss) : -1;
    if (rc == 0) rc = tg_optim_step(s->opt);
    tg_optim_zero_grad(s->opt);
    tg_tape_reset();
    return rc ? -1 : bench_cpu_now() - t0;
}

/* T stream steps of B rows; returns their thread CPU seconds (or -1). */
static double infer_block(side *s, const tg_tensor *xt, int64_t T) {
    double t0 = bench_cpu_now();
    for (int64_t t = 0; t < T; t++)
        if (!tg_rnn_stream_step(s->stream, xt)) return -1;
    double dt = bench_cpu_now() - t0;
    return tg_rnn_stream_reset(s->stream) ? -1 : dt;
}

static tg_cell_def *load_def(const char *file) {
    char path[512], err[256];
    snprintf(path, sizeof path, "%s/docs/cells/%s", TG_SOURCE_DIR, file);
    FILE *f = fopen(path, "rb");
    if (!f) { fprintf(stderr, "bench_typed: cannot read %s\n", path); return NULL; }
    static char src[TG_CELL_DEF_MAX_SOURCE + 1];
    size_t n = fread(src, 1, sizeof src - 1, f);
    fclose(f);
    src[n] = 0;
    tg_cell_def *d = tg_cell_def_parse(file, src, err, sizeof err);
    if (!d) fprintf(stderr, "bench_typed: %s: %s\n", path, err);
    return d;
}

int main(int argc, char **argv) {
    int rounds = argc > 1 ? atoi(argv[1]) : 15;
    int64_t I = argc > 5 ? atoll(argv[2]) : 64, H = argc > 5 ? atoll(argv[3]) : 128;
    int64_t B = argc > 5 ? atoll(argv[4]) : 32, T = argc > 5 ? atoll(argv[5]) : 50;
    if (rounds < 3 || I < 1 || H < 1 || B < 1 || T < 1) {
        fprintf(stderr, "usage: %s [rounds >= 3 [I H B T]]\n", argv[0]);
        return 2;
    }
    if (tg_cell_register(&g_janet_c)) return 1;
    const char *files[] = {"janet.cell", "lstm.cell", "gru.cell"}, *c_cells[] = {"janet_c", "lstm", "gru"};
    tg_rng rng;
    tg_rng_seed(&rng, 2);
    tg_tensor *x = tg_rand_normal(&rng, TG_F32, TG_SHAPE(T, B, I), 0, 1);
    tg_tensor *target = tg_rand_normal(&rng, TG_F32, TG_SHAPE(T, B, H), 0, 0.5), *xt = tg_view_at(x, 0);
    printf("typed cell vs the same cell in C: I=%lld H=%lld B=%lld T=%lld F32, 1 thread, kernels %s, %d interleaved rounds\n",
           (long long)I, (long long)H, (long long)B, (long long)T, tg_kernel_target(), rounds);
    printf("thread CPU ms, medians; ratio = median of per-pair typed/C (> 1: typed slower; the bar is 1.3)\n");
    printf("| cell | train C | train typed | ratio | infer C (T steps) | infer typed | ratio |\n|---|---:|---:|---:|---:|---:|---:|\n");
    int status = 0;
    for (int p = 0; p < 3; p++) {
        tg_cell_def *def = load_def(files[p]);
        side c = {0}, ty = {0};
        if (!def || side_new(&c, tg_cell_by_name(c_cells[p]), I, H, B) || side_new(&ty, tg_cell_def_cell(def), I, H, B)) {
            fprintf(stderr, "bench_typed: setup of %s failed: %s\n", files[p], tg_last_error());
            return 1;
        }
        /* the same cell: the two forwards agree (same weights, same data) */
        tg_no_grad_begin();
        tg_tensor *ya = tg_rnn_forward(c.rnn, x, NULL, NULL), *yb = tg_rnn_forward(ty.rnn, x, NULL, NULL);
        double diff = 0;
        for (int64_t i = 0; ya && yb && i < tg_numel(ya); i++) {
            double d = tg_get(ya, i) - tg_get(yb, i);
            diff = d > diff ? d : -d > diff ? -d : diff;
        }
        tg_no_grad_end();
        tg_tape_reset();
        if (!ya || !yb || diff > 1e-5) {
            fprintf(stderr, "bench_typed: %s and %s differ (max |y_C - y_typed| = %g)\n", c_cells[p], files[p], diff);
            return 1;
        }
        double *v = calloc((size_t)(6 * rounds), sizeof *v), *tc = v, *tt = v + rounds, *tr = v + 2 * rounds;
        double *ic = v + 3 * rounds, *it = v + 4 * rounds, *ir = v + 5 * rounds;
        for (int r = -2; r < rounds; r++) { /* two warm-up rounds */
            double a, b, e, f; /* odd rounds run the typed side first */
            if (r % 2 == 0) a = train_step(&c, x, target), b = train_step(&ty, x, target);
            else b = train_step(&ty, x, target), a = train_step(&c, x, target);
            if (r % 2 == 0) e = infer_block(&c, xt, T), f = infer_block(&ty, xt, T);
            else f = infer_block(&ty, xt, T), e = infer_block(&c, xt, T);
            if (a < 0 || b < 0 || e < 0 || f < 0) { fprintf(stderr, "bench_typed: %s\n", tg_last_error()); return 1; }
            if (r < 0) continue;
            tc[r] = 1e3 * a, tt[r] = 1e3 * b, tr[r] = b / a;
            ic[r] = 1e3 * e, it[r] = 1e3 * f, ir[r] = f / e;
        }
        double train_ratio = bench_median(tr, rounds), infer_ratio = bench_median(ir, rounds);
        printf("| %s vs %s | %.3f | %.3f | %.3f | %.3f | %.3f | %.3f |\n", files[p], c_cells[p], bench_median(tc, rounds),
               bench_median(tt, rounds), train_ratio, bench_median(ic, rounds), bench_median(it, rounds), infer_ratio);
        if (train_ratio > 1.3 || infer_ratio > 1.3) status = 3;
        free(v);
        side_free(&c);
        side_free(&ty);
        tg_cell_def_free(def);
    }
    tg_release(xt);
    tg_release(x);
    tg_release(target);
    if (status) printf("a typed cell is more than 1.3x slower than its C twin\n");
    return status;
}
