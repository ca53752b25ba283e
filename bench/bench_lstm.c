/* bench/bench_lstm.c - one LSTM training step through the generic runner and the tape, timed both by
 * the wall clock and by the thread's CPU clock.
 *
 * The step is the one of `tapegrad bench` and of bench/pytorch_lstm.py: forward over T steps, MSE
 * against a fixed random target on every output, backprop through time, one Adam update. The CPU-time
 * column exists because a shared machine (other builds and tests on the other core) makes wall-clock
 * medians jump by 30-50 %; the thread CPU time of a single-threaded step is far steadier and is what
 * docs/speed.md compares before/after. Dimension letters: T time, B batch, I input, H hidden.
 *
 * usage: ./build/bench/bench_lstm [I H B T [steps [f32|f64 [cell [optim]]]]]   (default 128 256 32 100 20 f32 lstm adam)
 * (cell: any registered cell, e.g. gru or lstm_ln; optim: any optimizer kind, e.g. rmsprop, with its
 * defaults; the line names both) */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <tapegrad/tapegrad.h>

#include "bench_common.h"

int main(int argc, char **argv) {
    long I = argc > 1 ? atol(argv[1]) : 128, H = argc > 2 ? atol(argv[2]) : 256;
    long B = argc > 3 ? atol(argv[3]) : 32, T = argc > 4 ? atol(argv[4]) : 100;
    int steps = argc > 5 ? atoi(argv[5]) : 20, warmup = 3;
    tg_dtype dt = argc > 6 && strcmp(argv[6], "f64") == 0 ? TG_F64 : TG_F32;
    const char *cell_name = argc > 7 ? argv[7] : "lstm";
    const tg_cell *cell = tg_cell_by_name(cell_name);
    const char *optim_name = argc > 8 ? argv[8] : "adam";
    const tg_optim_kind kind = tg_optim_kind_from_name(optim_name);
    if (I < 1 || H < 1 || B < 1 || T < 1 || steps < 1 || !cell || kind == TG_OPTIM_KIND_COUNT) {
        fprintf(stderr, "usage: bench_lstm [I H B T [steps [f32|f64 [cell [optim]]]]]\n");
        return 2;
    }
    tg_set_num_threads(1);
    tg_rng rng;
    tg_rng_seed(&rng, 1);
    tg_rnn_config rc = {.input_size = I, .hidden_size = H, .num_layers = 1, .dtype = dt};
    tg_rnn *rnn = tg_rnn_new(cell, &rc, &rng);
    tg_tensor *x = tg_rand_normal(&rng, dt, TG_SHAPE(T, B, I), 0, 1);
    tg_tensor *target = tg_rand_normal(&rng, dt, TG_SHAPE(T, B, H), 0, 0.5);
    tg_optim_opts oo = tg_optim_defaults(kind);
    tg_optim *opt = tg_optim_new_params(kind, rnn->params, &oo);
    double *wall = malloc((size_t)steps * sizeof *wall), *cpu = malloc((size_t)steps * sizeof *cpu);
    double loss0 = 0, loss = 0, tape = 0;
    /* the matrix weights (2-D parameters): a step's GEMM work is 6·T·B·(their element count) flops */
    int64_t matrix_weights = 0;
    for (int k = 0; k < tg_params_count(rnn->params); k++)
        if (tg_ndim(tg_params_at(rnn->params, k)) == 2) matrix_weights += tg_numel(tg_params_at(rnn->params, k));
    for (int i = 0; i < warmup + steps; i++) {
        double w0 = bench_clock_s(CLOCK_MONOTONIC), c0 = bench_clock_s(CLOCK_THREAD_CPUTIME_ID);
        tg_tensor *y = tg_rnn_forward(rnn, x, NULL, NULL);
        /* tape per step after the forward (first warm-up step, untimed figures only): floats per B·H and step */
        if (i == 0) tape = (double)tg_tape_bytes() / ((double)tg_itemsize(dt) * (double)(T * B * H));
        tg_tensor *l = tg_mse_loss(y, target, TG_REDUCE_MEAN);
        loss = tg_item(l);
        if (tg_backward(l) || tg_optim_step(opt)) { fprintf(stderr, "step failed: %s\n", tg_last_error()); return 1; }
        tg_optim_zero_grad(opt);
        tg_tape_reset();
        double w1 = bench_clock_s(CLOCK_MONOTONIC), c1 = bench_clock_s(CLOCK_THREAD_CPUTIME_ID);
        if (i == 0) loss0 = loss;
        if (i >= warmup) { wall[i - warmup] = 1e3 * (w1 - w0); cpu[i - warmup] = 1e3 * (c1 - c0); }
    }
    double mw = bench_median(wall, steps), mc = bench_median(cpu, steps);
    printf("bench_lstm %s%s%s %s I=%ld H=%ld B=%ld T=%ld: wall median %.2f ms (min %.2f), cpu median %.2f ms (min %.2f), "
           "%d steps; loss %.5f -> %.5f; kernels %s; tape %.2f floats per batch x hidden and step; matrix weights %lld\n",
           cell_name, argc > 8 ? " " : "", argc > 8 ? optim_name : "", tg_dtype_name(dt), I, H, B, T, mw, wall[0], mc,
           cpu[0], steps, loss0, loss, tg_kernel_target(), tape,
           (long long)matrix_weights);
    free(wall);
    free(cpu);
    tg_optim_free(opt);
    tg_rnn_free(rnn);
    tg_release(x);
    tg_release(target);
    return 0;
}
