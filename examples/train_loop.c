/* examples/train_loop.c - the complete training loop of the README: an LSTM regressor trained with
 * Adam, gradient clipping and a cosine schedule, checkpointed in safetensors with PyTorch names.
 *
 * Purpose: show every piece a training loop needs besides the model, in the order you write them:
 * model (tg_rnn + a Linear head), loss (tg_mse_loss), optimizer (tg_optim_new_params), clipping,
 * LR schedule, tape reset, checkpoint save/load. The task: read 12 numbers, predict their mean.
 * Run: build/examples/train_loop [--quick]
 */
#include <stdio.h>
#include <string.h>

#include <tapegrad/tapegrad.h>

int main(int argc, char **argv) {
    int steps = argc > 1 && !strcmp(argv[1], "--quick") ? 150 : 600;
    const int64_t T = 12, B = 32, H = 32;
    tg_rng rng;
    tg_rng_seed(&rng, 1);

    tg_rnn *lstm = tg_rnn_new(tg_cell_by_name("lstm"),
                              &(tg_rnn_config){.input_size = 1, .hidden_size = H, .dtype = TG_F32}, &rng);
    tg_linear_layer *head = tg_linear_layer_new(H, 1, true, TG_F32, &rng);
    tg_params *params = tg_params_new();                      /* everything the optimizer updates */
    tg_params_extend(params, "lstm.", lstm->params);
    tg_params_extend(params, "head.", head->params);

    tg_optim_opts o = tg_optim_defaults(TG_OPTIM_ADAM);
    o.lr = 1e-2;
    tg_optim *opt = tg_optim_new_params(TG_OPTIM_ADAM, params, &o);
    tg_sched *sched = tg_sched_cosine(opt, steps, 1e-4);

    double first = 0, last = 0;
    for (int step = 0; step < steps; step++) {
        tg_tensor *x = tg_rand_uniform(&rng, TG_F32, TG_SHAPE(T, B, 1), -1, 1);     /* new ref */
        tg_tensor *target = tg_mean_axis(x, 0, false);                              /* [B,1] */
        tg_tensor *y = tg_rnn_forward(lstm, x, &(tg_rnn_forward_opts){.train = true}, NULL);
        tg_tensor *pred = tg_linear_layer_forward(head, tg_select(y, T - 1));       /* last step */
        tg_tensor *loss = tg_mse_loss(pred, target, TG_REDUCE_MEAN);
        if (step == 0) first = tg_item(loss);
        last = tg_item(loss);
        tg_optim_zero_grad(opt);
        tg_backward(loss);
        tg_optim_clip_grad_norm(opt, 1.0, 2.0, false);
        tg_optim_step(opt);
        tg_sched_step(sched);
        tg_tape_reset();                                      /* frees y, pred, loss, target */
        tg_release(x);
    }
    printf("MSE %.3e -> %.3e after %d steps (predicting 0 scores %.3e)\n", first, last, steps, 1.0 / 3 / (double)T);

    /* checkpoint: parameters with PyTorch names, optimizer state for an exact resume */
    int ok = tg_params_save(lstm->params, "/tmp/tapegrad_lstm.safetensors") == 0 &&
             tg_optim_save(opt, sched, "/tmp/tapegrad_adam.safetensors") == 0 &&
             tg_params_load(lstm->params, "/tmp/tapegrad_lstm.safetensors") == 0;
    printf("checkpoint %s\n", ok ? "saved and reloaded" : tg_last_error());

    tg_sched_free(sched);
    tg_optim_free(opt);
    tg_params_free(params);
    tg_linear_layer_free(head);
    tg_rnn_free(lstm);
    return ok && last < first / 4 && tg_live_tensors() == 0 ? 0 : 1;
}
