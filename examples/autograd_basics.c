/* examples/autograd_basics.c - the tape: requires_grad, backward, no-grad updates, tape reset.
 *
 * Purpose: the worked example at the top of <tapegrad/autograd.h>, run. A weight W [4,3] is trained
 * by plain gradient descent so that h = tanh(x·W + b) becomes small for a fixed batch x [8,4]: every
 * op appends one record to the thread's tape and returns a tape-owned result, tg_backward walks the
 * tape once in reverse and accumulates into W's gradient, the update runs under no-grad (so it
 * records nothing), and tg_tape_reset frees every intermediate at once. Then three things everybody
 * meets early: a gradient you can check by hand, gradients accumulating until zeroed, and the error
 * you get for modifying a tensor in place after the tape saved it for backward.
 *
 * Run: build/examples/autograd_basics [--quick]   (--quick: 30 steps instead of 100)
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <tapegrad/tapegrad.h>

static bool quick_mode(int argc, char **argv) {
    for (int i = 1; i < argc; i++)
        if (!strcmp(argv[i], "--quick")) return true;
    const char *e = getenv("TG_QUICK");
    return e && *e && strcmp(e, "0") != 0;
}

static double max_abs(const tg_tensor *t) {
    double m = 0;
    for (int64_t i = 0; i < tg_numel(t); i++) m = fabs(tg_get(t, i)) > m ? fabs(tg_get(t, i)) : m;
    return m;
}

static void on_error(const char *message, void *user) {
    (void)user;
    printf("  error handler got: %s\n", message);
}

int main(int argc, char **argv) {
    int steps = quick_mode(argc, argv) ? 30 : 100;
    tg_manual_seed(0);

    /* --- the worked example of autograd.h --- */
    tg_tensor *x = tg_rand_normal(NULL, TG_F64, TG_SHAPE(8, 4), 0, 1);  /* data: no gradient */
    tg_tensor *b = tg_full(TG_F64, TG_SHAPE(3), 0.1);
    tg_tensor *W = tg_rand_normal(NULL, TG_F64, TG_SHAPE(4, 3), 0, 1);  /* new ref */
    tg_set_requires_grad(W, true);
    printf("gradient descent on W [4,3] to shrink mean(tanh(x W + b)^2), lr 0.5:\n");
    for (int step = 0; step < steps; step++) {
        tg_tensor *h = tg_tanh(tg_add(tg_matmul(x, W), b));  /* every result: tape-owned */
        tg_tensor *loss = tg_mean(tg_mul(h, h));
        if (step == 0)
            printf("  tape after the forward: %zu records, %zu tensors, %zu bytes\n", tg_tape_records(),
                   tg_tape_tensors(), tg_tape_bytes());
        tg_backward(loss);                                    /* accumulates into W's grad */
        if (step % (steps / 5) == 0 || step == steps - 1)
            printf("  step %3d  loss %.6f  |dW|max %.4f\n", step, tg_item(loss), max_abs(tg_grad(W)));
        tg_no_grad_begin();
        tg_axpy_(W, -0.5, tg_grad(W));                        /* W -= lr dW, not recorded */
        tg_no_grad_end();
        tg_zero_grad(W);
        tg_tape_reset();                                      /* frees h and every intermediate */
    }
    printf("  tape after reset: %zu records\n", tg_tape_records());

    /* --- a gradient you can check by hand: d/dv sum(v*v + 3v) = 2v + 3 --- */
    tg_tensor *v = tg_from_array(TG_F64, TG_SHAPE(3), (double[]){1, -2, 0.5});
    tg_set_requires_grad(v, true);
    tg_backward(tg_sum(tg_add(tg_mul(v, v), tg_mul_scalar(v, 3))));
    printf("\nv = "); tg_print(v);
    printf("d/dv sum(v*v + 3v) = "); tg_print(tg_grad(v));
    /* fan-out: (v + v) * v uses v three times; d/dv sum = 4v */
    tg_zero_grad(v);
    tg_backward(tg_sum(tg_mul(tg_add(v, v), v)));
    printf("d/dv sum((v + v) * v) = "); tg_print(tg_grad(v));
    /* leaf gradients accumulate until zeroed (PyTorch semantics): run the same backward again */
    tg_backward(tg_sum(tg_mul(tg_add(v, v), v)));
    printf("after a second backward without zero_grad: "); tg_print(tg_grad(v));
    tg_zero_grad(v);
    tg_tape_reset();

    /* --- no-grad and detach: nothing is recorded --- */
    tg_no_grad_begin();
    tg_tensor *y = tg_mul(v, v);
    printf("\nunder no-grad: v*v requires grad? %s; tape records: %zu\n", tg_requires_grad(y) ? "yes" : "no",
           tg_tape_records());
    tg_no_grad_end();
    tg_tensor *d = tg_detach(v);  /* new ref sharing v's storage, a leaf without grad */
    printf("detach(v) is a leaf without grad: %s, shares storage: %s\n",
           tg_is_leaf(d) && !tg_requires_grad(d) ? "yes" : "no", tg_shares_storage(d, v) ? "yes" : "no");
    tg_release(d);
    tg_tape_reset();

    /* --- the classic bug: updating a weight between forward and backward --- */
    printf("\nmodify W in place after tanh(x W) saved it, then backward:\n");
    tg_set_error_handler(on_error, NULL);                     /* record instead of abort */
    tg_tensor *loss = tg_sum(tg_tanh(tg_matmul(x, W)));
    tg_scale_(W, 0.5);                                        /* bumps W's version counter */
    int status = tg_backward(loss);
    printf("  tg_backward returned %d\n", status);
    tg_set_error_handler(NULL, NULL);
    tg_clear_error();
    tg_zero_grad(W);
    tg_tape_reset();

    tg_release(v); tg_release(W); tg_release(b); tg_release(x);
    long live = tg_live_tensors();
    printf("\nlive tensors at the end: %ld\n", live);
    return live == 0 ? 0 : 1;
}
