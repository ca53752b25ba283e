/* examples/ctc_digits.c - reading a digit sequence from a noisy per-step signal with an LSTM and CTC.
 *
 * Purpose: sequence labelling without alignments, the job CTC (tg_ctc_loss, torch.nn.CTCLoss) does
 * for speech. Each input is a 4-channel signal: every digit 1..5 of a random 2..5-digit sequence is
 * its own prototype vector held for 2..4 steps, digits are separated by 0..2 steps of silence (at
 * least 1 between equal digits, as a speaker would pause), and Gaussian noise (σ = 0.35) is added
 * everywhere (T = 36 steps, each sequence 5..35 of them). Nobody says at which step a digit starts: the model sees only the signal and the digit
 * string. A bidirectional LSTM reads the padded batch with its lengths, a Linear layer maps each step
 * to 6 classes (blank + 5 digits), and tg_ctc_loss on tg_log_softmax trains it with Adam. Greedy
 * decoding (best class per step, repeats merged, blanks dropped) is scored on held-out sequences by
 * the label error rate (edit distance / number of reference digits), printed before and during
 * training with a few decoded examples at the end. The exit status is non-zero if the loss did not
 * fall or the final label error rate is above 15 %.
 *
 * Run: build/examples/ctc_digits [--quick]   (--quick or TG_QUICK=1: 300 steps instead of 1200)
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <tapegrad/tapegrad.h>

enum { DIGITS = 5, C = DIGITS + 1, BLANK = 0, F = 4, S_MIN = 2, S_MAX = 5, T = 36, B = 16, N_TEST = 200, HIDDEN = 32 };
#define NOISE 0.35

static bool quick_mode(int argc, char **argv) {
    for (int i = 1; i < argc; i++)
        if (!strcmp(argv[i], "--quick")) return true;
    const char *e = getenv("TG_QUICK");
    return e && *e && strcmp(e, "0") != 0;
}

/* The prototype signal of each digit (row d-1), fixed. */
static const double proto[DIGITS][F] = {
    {1, 0, 0, 1}, {0, 1, 0, 1}, {0, 0, 1, 1}, {1, 1, 0, 0}, {0, 1, 1, 0},
};

/* n random utterances: x [T,n,F] (silence and noise past each length too), lengths [n], digit strings
 * padded [n,S_MAX] with their lengths. x: new ref. */
static tg_tensor *make_batch(tg_rng *rng, int n, int64_t *lengths, int64_t *targets, int64_t *target_lengths) {
    tg_tensor *x = tg_zeros(TG_F32, TG_SHAPE(T, n, F));
    float *px = tg_data(x);
    for (int b = 0; b < n; b++) {
        int s = S_MIN + (int)tg_rng_below(rng, S_MAX - S_MIN + 1), t = (int)tg_rng_below(rng, 2);
        for (int j = 0; j < s; j++) {
            int d = 1 + (int)tg_rng_below(rng, DIGITS);
            if (j > 0 && d == targets[b * S_MAX + j - 1]) t++; /* a pause between equal digits */
            targets[b * S_MAX + j] = d;
            int hold = 2 + (int)tg_rng_below(rng, 3);
            for (int k = 0; k < hold; k++, t++)
                for (int f = 0; f < F; f++) px[((int64_t)t * n + b) * F + f] = (float)proto[d - 1][f];
            t += (int)tg_rng_below(rng, 3); /* silence */
        }
        for (int j = s; j < S_MAX; j++) targets[b * S_MAX + j] = 0;
        lengths[b] = t; /* at most 1 + 5 digits x (4 held + 2 silent) + 4 pauses for repeats = 35 < T */
        target_lengths[b] = s;
    }
    for (int64_t i = 0; i < tg_numel(x); i++) px[i] += (float)(NOISE * tg_rng_normal(rng));
    tg_bump_version(x);
    return x;
}

typedef struct model {
    tg_rnn *lstm;
    tg_linear_layer *head;
} model;

/* log-probabilities [T,n,C]: tape-owned */
static tg_tensor *log_probs_of(const model *m, const tg_tensor *x, const int64_t *lengths) {
    tg_tensor *y = tg_rnn_forward(m->lstm, x, &(tg_rnn_forward_opts){.lengths = lengths}, NULL); /* [T,n,2H] */
    return tg_log_softmax(tg_linear_layer_forward(m->head, y), 2);
}

/* label error rate of greedy decoding on the test set; prints `show` decoded examples */
static double label_error_rate(const model *m, const tg_tensor *x, const int64_t *len, const int64_t *tgt,
                               const int64_t *tl, int show) {
    tg_no_grad_begin();
    tg_tensor *lp = log_probs_of(m, x, len);
    tg_no_grad_end();
    int64_t errors = 0, total = 0;
    for (int b = 0; b < N_TEST; b++) {
        int64_t out[T];
        int64_t n = tg_ctc_greedy_decode(lp, b, len[b], BLANK, out, T);
        errors += tg_edit_distance(out, n, tgt + b * S_MAX, tl[b]);
        total += tl[b];
        if (b < show) {
            printf("    said ");
            for (int j = 0; j < tl[b]; j++) printf("%lld", (long long)tgt[b * S_MAX + j]);
            printf("%*s read ", (int)(S_MAX - tl[b]), "");
            for (int j = 0; j < n; j++) printf("%lld", (long long)out[j]);
            printf("\n");
        }
    }
    tg_tape_reset();
    return (double)errors / (double)total;
}

int main(int argc, char **argv) {
    int steps = quick_mode(argc, argv) ? 300 : 1200;
    tg_rng rng;
    tg_rng_seed(&rng, 2026);
    model m = {
        .lstm = tg_rnn_new(tg_cell_by_name("lstm"), &(tg_rnn_config){.input_size = F, .hidden_size = HIDDEN,
                                                                     .bidirectional = true}, &rng),
        .head = tg_linear_layer_new(2 * HIDDEN, C, true, TG_F32, &rng),
    };
    tg_params *params = tg_params_new();
    tg_params_extend(params, "lstm.", m.lstm->params);
    tg_params_extend(params, "head.", m.head->params);
    tg_optim_opts o = tg_optim_defaults(TG_OPTIM_ADAM);
    o.lr = 1e-2;
    tg_optim *opt = tg_optim_new_params(TG_OPTIM_ADAM, params, &o);

    int64_t test_len[N_TEST], test_tgt[N_TEST * S_MAX], test_tl[N_TEST];
    tg_tensor *test_x = make_batch(&rng, N_TEST, test_len, test_tgt, test_tl);
    printf("%d-%d digits of 1..%d, each held 2-4 steps, pauses 0-2 steps, noise sigma %.2f, T <= %d;\n"
           "bidirectional LSTM H=%d + Linear to %d classes (blank 0), CTC, %lld parameters; Adam lr %g, %d steps of %d\n",
           S_MIN, S_MAX, DIGITS, NOISE, T, HIDDEN, C, (long long)tg_params_numel(params), o.lr, steps, B);
    double ler0 = label_error_rate(&m, test_x, test_len, test_tgt, test_tl, 0);
    printf("  step %4d  label error rate %5.1f%% on %d held-out sequences\n", 0, 100 * ler0, N_TEST);
    double running = 0, first_loss = NAN, last_loss = NAN;
    int every = steps / 5;
    for (int step = 1; step <= steps; step++) {
        int64_t len[B], tgt[B * S_MAX], tl[B];
        tg_tensor *x = make_batch(&rng, B, len, tgt, tl);
        tg_optim_zero_grad(opt);
        /* mean over the batch of -log p(digits | signal) / number of digits */
        tg_tensor *loss = tg_ctc_loss(log_probs_of(&m, x, len), tgt, S_MAX, len, tl, NULL);
        tg_backward(loss);
        tg_optim_clip_grad_norm(opt, 5.0, 2.0, false);
        tg_optim_step(opt);
        running += tg_item(loss);
        tg_tape_reset();
        tg_release(x);
        if (step % every == 0) {
            double mean = running / every;
            if (step == every) first_loss = mean;
            last_loss = mean;
            printf("  step %4d  label error rate %5.1f%%   train CTC loss %.4f\n", step,
                   100 * label_error_rate(&m, test_x, test_len, test_tgt, test_tl, 0), mean);
            running = 0;
        }
    }
    printf("some held-out sequences:\n");
    double ler = label_error_rate(&m, test_x, test_len, test_tgt, test_tl, 6);
    printf("final label error rate: %.1f%% (%.1f%% before training)\n", 100 * ler, 100 * ler0);

    tg_release(test_x);
    tg_optim_free(opt);
    tg_params_free(params);
    tg_linear_layer_free(m.head);
    tg_rnn_free(m.lstm);
    long live = tg_live_tensors();
    printf("live tensors at the end: %ld\n", live);
    return live == 0 && last_loss < first_loss && ler <= 0.15 ? 0 : 1;
}
