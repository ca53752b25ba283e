/* examples/next_number.c - LSTM regression: predict the next number of an arithmetic sequence.
 *
 * Purpose: the "predict the next number" demo of the LSTM-from-scratch project, in tapegrad: a
 * 2-layer LSTM (Xavier-initialised input weights, orthogonal recurrent weights, forget-gate bias 1)
 * with a Linear head on the last hidden state reads 10 numbers a, a+d, ..., a+9d and predicts a+10d.
 * Training data are random integer sequences (start a in 0..40, step d in 1..3), scaled by 1/50 so
 * that the network sees values of order 1; the loss is MSE, the optimizer Adam from <tapegrad/optim.h>
 * with gradient-norm clipping, exactly the recipe of the original (Adam, clipping, stacked layers,
 * dense output). At the end it shows, in the original units,
 *     [0, 1, ..., 9]    -> ~10
 *     [15, 16, ..., 24] -> ~25
 * and a few sequences with other steps. Every forward and backward goes through the tape. The exit
 * status is non-zero if any of these predictions is off by 3 or more.
 *
 * Run: build/examples/next_number [--quick]   (--quick or TG_QUICK=1: 300 steps instead of 2000)
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <tapegrad/tapegrad.h>

enum { T = 10, B = 32, HIDDEN = 32, LAYERS = 2 };
#define SCALE 50.0 /* values are divided by this before they reach the network */

static bool quick_mode(int argc, char **argv) {
    for (int i = 1; i < argc; i++)
        if (!strcmp(argv[i], "--quick")) return true;
    const char *e = getenv("TG_QUICK");
    return e && *e && strcmp(e, "0") != 0;
}

/* n sequences given by start[b], step[b]: x [T,n,1] and target [n,1], scaled. New refs. */
static void make_batch(int n, const double *start, const double *step, tg_tensor **x, tg_tensor **target) {
    *x = tg_empty(TG_F32, TG_SHAPE(T, n, 1));
    *target = tg_empty(TG_F32, TG_SHAPE(n, 1));
    for (int b = 0; b < n; b++) {
        for (int t = 0; t < T; t++) tg_set(*x, t * n + b, (start[b] + t * step[b]) / SCALE);
        tg_set(*target, b, (start[b] + T * step[b]) / SCALE);
    }
}

static void random_batch(tg_rng *rng, tg_tensor **x, tg_tensor **target) {
    double start[B], step[B];
    for (int b = 0; b < B; b++) {
        start[b] = (double)tg_rng_below(rng, 41);    /* 0..40 */
        step[b] = 1.0 + (double)tg_rng_below(rng, 3); /* 1, 2, 3 */
    }
    make_batch(B, start, step, x, target);
}

/* [n,1] prediction from the top layer's last hidden state: tape-owned */
static tg_tensor *predict(const tg_rnn *lstm, const tg_linear_layer *head, const tg_tensor *x) {
    return tg_linear_layer_forward(head, tg_select(tg_rnn_forward(lstm, x, NULL, NULL), T - 1));
}

int main(int argc, char **argv) {
    int steps = quick_mode(argc, argv) ? 300 : 2000;
    tg_rng rng;
    tg_rng_seed(&rng, 3);
    tg_rnn *lstm = tg_rnn_new(tg_cell_by_name("lstm"),
                              &(tg_rnn_config){.input_size = 1, .hidden_size = HIDDEN, .num_layers = LAYERS}, &rng);
    tg_rnn_init(lstm, &(tg_rnn_init_opts){.weight_ih = TG_INIT_XAVIER_UNIFORM, .weight_hh = TG_INIT_ORTHOGONAL,
                                          .zero_bias = true, .set_forget_bias = true, .forget_bias = 1.0}, &rng);
    tg_linear_layer *head = tg_linear_layer_new(HIDDEN, 1, true, TG_F32, &rng);
    tg_params *params = tg_params_new();
    tg_params_extend(params, "lstm.", lstm->params);
    tg_params_extend(params, "head.", head->params);
    tg_optim_opts o = tg_optim_defaults(TG_OPTIM_ADAM);
    o.lr = 5e-3;
    tg_optim *opt = tg_optim_new_params(TG_OPTIM_ADAM, params, &o);
    tg_sched *sched = tg_sched_cosine(opt, steps, 1e-4);

    printf("2-layer LSTM (H=%d) + Linear, %lld parameters; Adam lr %g (cosine to 1e-4), %d steps of %d "
           "sequences, clip 1.0\n", HIDDEN, (long long)tg_params_numel(params), o.lr, steps, B);
    double running = 0;
    for (int step = 1; step <= steps; step++) {
        tg_tensor *x, *target;
        random_batch(&rng, &x, &target);
        tg_optim_zero_grad(opt);
        tg_tensor *loss = tg_mse_loss(predict(lstm, head, x), target, TG_REDUCE_MEAN);
        tg_backward(loss);
        tg_optim_clip_grad_norm(opt, 1.0, 2.0, false);
        tg_optim_step(opt);
        tg_sched_step(sched);
        running += tg_item(loss);
        tg_tape_reset();
        tg_release(x); tg_release(target);
        int every = steps / 10;
        if (step % every == 0) {
            /* RMSE in the original units: sqrt(mean squared error) * SCALE */
            printf("  step %5d  train RMSE %.3f\n", step, sqrt(running / every) * SCALE);
            running = 0;
        }
    }

    /* the demo sequences */
    double start[] = {0, 15, 2, 5, 30, 40};
    double stepv[] = {1, 1, 2, 3, 1, 2};
    int n = (int)(sizeof start / sizeof start[0]);
    tg_tensor *x, *target;
    make_batch(n, start, stepv, &x, &target);
    tg_no_grad_begin();
    tg_tensor *pred = predict(lstm, head, x);
    tg_no_grad_end();
    printf("\n");
    double worst = 0;
    for (int b = 0; b < n; b++) {
        printf("  Input: [");
        for (int t = 0; t < T; t++) printf("%s%g", t ? ", " : "", start[b] + t * stepv[b]);
        double p = tg_get(pred, b) * SCALE, want = start[b] + T * stepv[b];
        printf("] -> Predicted: %.2f (next: %g)\n", p, want);
        worst = fmax(worst, fabs(p - want));
    }
    printf("largest error on these: %.2f\n", worst);
    tg_tape_reset();
    tg_release(x); tg_release(target);

    tg_sched_free(sched);
    tg_optim_free(opt);
    tg_params_free(params);
    tg_linear_layer_free(head);
    tg_rnn_free(lstm);
    long live = tg_live_tensors();
    printf("live tensors at the end: %ld\n", live);
    /* the quick run is within ~1 of every answer; off by 3 or more, the example has failed */
    return live == 0 && worst < 3.0 ? 0 : 1;
}
