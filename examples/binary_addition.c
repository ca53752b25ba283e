/* examples/binary_addition.c - an LSTM learns binary addition bit by bit, then adds longer numbers.
 *
 * Purpose: the classic "RNN learns to add" demo (the NumPy seed's binary-addition network), with a
 * forward-only LSTM. At step t the network reads bit t of a and bit t of b (least significant first)
 * and must emit bit t of a + b, so it has to carry: the carry is the one thing it must remember from
 * one step to the next. It is trained on 8-bit numbers only (9 steps: the last step reads 0, 0 and
 * emits the final carry), with binary cross-entropy on every step's logit. Because the learned rule
 * is the same at every step, it then adds numbers of any length: the program asks it for
 *     400958 + 737471
 * over 21 steps and prints its answer, 1138429 when training worked, then checks 1000 random sums
 * of 20-bit numbers. The exit status is 0 only if the answer is right.
 *
 * Run: build/examples/binary_addition [--quick]   (the full run takes well under a second; --quick
 * or TG_QUICK=1 is accepted for symmetry with the other examples and changes nothing)
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include <tapegrad/tapegrad.h>

enum { TRAIN_BITS = 8, B = 32, HIDDEN = 16, STEPS = 800 };

/* x [T,n,2] (bit t of a[b], of b[b]) and y [T,n,1] (bit t of the sum), LSB first. New refs. */
static void make_batch(int T, int n, const uint64_t *a, const uint64_t *b, tg_tensor **x, tg_tensor **y) {
    *x = tg_empty(TG_F32, TG_SHAPE(T, n, 2));
    *y = tg_empty(TG_F32, TG_SHAPE(T, n, 1));
    for (int i = 0; i < n; i++) {
        uint64_t s = a[i] + b[i];
        for (int t = 0; t < T; t++) {
            tg_set(*x, ((int64_t)t * n + i) * 2 + 0, (double)((a[i] >> t) & 1));
            tg_set(*x, ((int64_t)t * n + i) * 2 + 1, (double)((b[i] >> t) & 1));
            tg_set(*y, (int64_t)t * n + i, (double)((s >> t) & 1));
        }
    }
}

/* logits [T,n,1]: tape-owned */
static tg_tensor *logits_of(const tg_rnn *lstm, const tg_linear_layer *head, const tg_tensor *x) {
    return tg_linear_layer_forward(head, tg_rnn_forward(lstm, x, NULL, NULL));
}

/* the network's sum of a[i] + b[i] read from logits [T,n,1] (bit = logit > 0) */
static uint64_t read_sum(const tg_tensor *logits, int T, int n, int i) {
    uint64_t s = 0;
    for (int t = 0; t < T; t++)
        if (tg_get(logits, (int64_t)t * n + i) > 0) s |= (uint64_t)1 << t;
    return s;
}

static void print_bits(const char *label, uint64_t v, int T) {
    printf("  %s ", label);
    for (int t = T - 1; t >= 0; t--) putchar((v >> t) & 1 ? '1' : '0');
    printf("  (%llu)\n", (unsigned long long)v);
}

int main(void) {
    tg_rng rng;
    tg_rng_seed(&rng, 1);
    tg_rnn *lstm = tg_rnn_new(tg_cell_by_name("lstm"), &(tg_rnn_config){.input_size = 2, .hidden_size = HIDDEN}, &rng);
    tg_linear_layer *head = tg_linear_layer_new(HIDDEN, 1, true, TG_F32, &rng);
    tg_params *params = tg_params_new();
    tg_params_extend(params, "lstm.", lstm->params);
    tg_params_extend(params, "head.", head->params);
    tg_optim_opts o = tg_optim_defaults(TG_OPTIM_ADAM);
    o.lr = 1e-2;
    tg_optim *opt = tg_optim_new_params(TG_OPTIM_ADAM, params, &o);
    printf("LSTM (H=%d) + Linear, %lld parameters; trained on %d-bit numbers, %d steps of %d sums, Adam lr %g\n",
           HIDDEN, (long long)tg_params_numel(params), TRAIN_BITS, STEPS, B, o.lr);

    const int T = TRAIN_BITS + 1;
    double running = 0;
    for (int step = 1; step <= STEPS; step++) {
        uint64_t a[B], b[B];
        for (int i = 0; i < B; i++) {
            a[i] = tg_rng_below(&rng, 1u << TRAIN_BITS);
            b[i] = tg_rng_below(&rng, 1u << TRAIN_BITS);
        }
        tg_tensor *x, *y;
        make_batch(T, B, a, b, &x, &y);
        tg_optim_zero_grad(opt);
        tg_tensor *loss = tg_bce_with_logits(logits_of(lstm, head, x), y, NULL);
        tg_backward(loss);
        tg_optim_clip_grad_norm(opt, 1.0, 2.0, false);
        tg_optim_step(opt);
        running += tg_item(loss);
        tg_tape_reset();
        tg_release(x);
        tg_release(y);
        if (step % (STEPS / 8) == 0) {
            printf("  step %4d  mean BCE per bit %.4f\n", step, running / (STEPS / 8));
            running = 0;
        }
    }

    /* the question: 400958 + 737471, 21 steps (20-bit operands, 21-bit sum) */
    const int TQ = 21;
    uint64_t qa = 400958, qb = 737471;
    tg_tensor *x, *y;
    make_batch(TQ, 1, &qa, &qb, &x, &y);
    tg_no_grad_begin();
    uint64_t answer = read_sum(logits_of(lstm, head, x), TQ, 1, 0);
    tg_no_grad_end();
    tg_tape_reset();
    tg_release(x);
    tg_release(y);
    printf("\n");
    print_bits("  ", qa, TQ);
    print_bits("+ ", qb, TQ);
    print_bits("= ", answer, TQ);
    printf("  %llu + %llu = %llu  (%s)\n\n", (unsigned long long)qa, (unsigned long long)qb,
           (unsigned long long)answer, answer == qa + qb ? "right" : "WRONG");

    /* 1000 random sums of 20-bit numbers, never seen in training */
    enum { N = 1000 };
    static uint64_t ta[N], tb[N];
    for (int i = 0; i < N; i++) {
        ta[i] = tg_rng_below(&rng, 1u << 20);
        tb[i] = tg_rng_below(&rng, 1u << 20);
    }
    make_batch(TQ, N, ta, tb, &x, &y);
    tg_no_grad_begin();
    tg_tensor *lg = logits_of(lstm, head, x);
    tg_no_grad_end();
    int right = 0;
    for (int i = 0; i < N; i++) right += read_sum(lg, TQ, N, i) == ta[i] + tb[i];
    printf("20-bit sums right: %d of %d (trained on %d-bit numbers)\n", right, N, TRAIN_BITS);
    tg_tape_reset();
    tg_release(x);
    tg_release(y);

    tg_optim_free(opt);
    tg_params_free(params);
    tg_linear_layer_free(head);
    tg_rnn_free(lstm);
    long live = tg_live_tensors();
    printf("live tensors at the end: %ld\n", live);
    return answer == qa + qb && live == 0 ? 0 : 1;
}
