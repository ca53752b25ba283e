/* examples/char_rnn.c - a character-level LSTM language model: train on a text file, then write.
 *
 * Purpose: the "char-rnn" demo. The text's distinct bytes form the vocabulary; an Embedding feeds an
 * LSTM whose every output goes through a Linear layer to logits over the vocabulary, and the loss is
 * the cross-entropy of the next character at every position (BPTT over windows of 64 characters
 * drawn at random from the first 90 % of the text). Afterwards it measures the loss on the last 10 %
 * (never trained on; read in order, the LSTM state carried from window to window, which is how a
 * language model is evaluated), compares it with the unigram baseline (a model that knows only the
 * characters' frequencies), and samples text: characters drawn one at a time from softmax(logits / τ),
 * each fed back as the next input, with the state carried, after a priming string.
 *
 * Run: build/examples/char_rnn [--quick] [FILE]
 *   FILE defaults to /usr/share/common-licenses/GPL-3, present on every Debian system; without it the
 *   program builds a small corpus of its own. --quick (or TG_QUICK=1): 200 steps of a 64-unit LSTM
 *   instead of 1000 steps of 128 units (more overfits the 35 KB licence). The exit status is 0 when
 *   the test loss beats the baseline.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <tapegrad/tapegrad.h>

enum { T = 64, B = 32, EMBED = 32, MAX_TEXT = 1 << 20 };

typedef struct corpus {
    unsigned char *text;
    long n;
    int vocab;
    unsigned char chars[256];  /* index -> byte */
    int index[256];            /* byte -> index, -1 if absent */
    int64_t *ids;              /* text as indices */
} corpus;

static bool quick_mode(int argc, char **argv) {
    for (int i = 1; i < argc; i++)
        if (!strcmp(argv[i], "--quick")) return true;
    const char *e = getenv("TG_QUICK");
    return e && *e && strcmp(e, "0") != 0;
}

/* Reads up to MAX_TEXT bytes of path; NULL if it cannot. */
static unsigned char *read_file(const char *path, long *n) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    unsigned char *buf = malloc(MAX_TEXT);
    *n = buf ? (long)fread(buf, 1, MAX_TEXT, f) : 0;
    fclose(f);
    if (buf && *n < 2 * T + 2) { free(buf); buf = NULL; }
    return buf;
}

/* A small corpus with structure to learn when no file is available: counting rhymes. */
static unsigned char *built_in_text(long *n) {
    static const char *nums[] = {"one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten"};
    unsigned char *buf = malloc(64 * 1024);
    long k = 0;
    for (int rep = 0; rep < 40; rep++)
        for (int i = 0; i < 10; i++)
            k += snprintf((char *)buf + k, (size_t)(64 * 1024 - k), "%s little %s, %s went to the %s.\n", nums[i],
                          i % 2 ? "rabbits" : "birds", nums[(i + rep) % 10], rep % 3 ? "market" : "river");
    *n = k;
    return buf;
}

static void build_vocab(corpus *c) {
    bool seen[256] = {false};
    for (long i = 0; i < c->n; i++) seen[c->text[i]] = true;
    c->vocab = 0;
    for (int ch = 0; ch < 256; ch++) {
        c->index[ch] = seen[ch] ? c->vocab : -1;
        if (seen[ch]) c->chars[c->vocab++] = (unsigned char)ch;
    }
    c->ids = malloc((size_t)c->n * sizeof *c->ids);
    for (long i = 0; i < c->n; i++) c->ids[i] = c->index[c->text[i]];
}

typedef struct model {
    tg_embedding_layer *embed;
    tg_rnn *lstm;
    tg_linear_layer *head;
} model;

/* ids [T,n] (time-major) -> logits [T·n, V], tape-owned; out receives the final states */
static tg_tensor *forward(const model *m, int steps, int n, const int64_t *ids, tg_tensor *const *init,
                          tg_rnn_output *out) {
    tg_tensor *e = tg_embedding_layer_forward(m->embed, 2, (int64_t[]){steps, n}, ids);
    tg_tensor *y = tg_rnn_forward(m->lstm, e, &(tg_rnn_forward_opts){.init = init}, out);
    return tg_linear_layer_forward(m->head, tg_reshape(y, TG_SHAPE(steps * n, tg_shape(y)[2])));
}

/* Cross-entropy (nats/char) of the text's ids[from, to) read in order, state carried. */
static double evaluate(const model *m, const int64_t *ids, long from, long to) {
    tg_rnn_carry carry = {0};
    double total = 0;
    long count = 0;
    tg_no_grad_begin();
    for (long s = from; s + 1 < to; s += T) {
        int steps = (int)(to - 1 - s < T ? to - 1 - s : T);
        tg_rnn_output out = {0};
        tg_tensor *logits = forward(m, steps, 1, ids + s, carry.n_states ? carry.state : NULL, &out);
        tg_cross_entropy_opts o = tg_cross_entropy_defaults();
        o.reduction = TG_REDUCE_SUM;
        total += tg_item(tg_cross_entropy(logits, ids + s + 1, &o));
        count += steps;
        tg_rnn_carry_update(&carry, &out);
        tg_rnn_output_clear(&out);
        tg_tape_reset();
    }
    tg_no_grad_end();
    tg_rnn_carry_clear(&carry);
    return total / (double)count;
}

/* Feeds the prime, then draws `length` characters at temperature tau, printing them. */
static void sample(const model *m, const corpus *c, const char *prime, int length, double tau, tg_rng *rng) {
    tg_rnn_carry carry = {0};
    int64_t id = c->index[(unsigned char)prime[0]] >= 0 ? c->index[(unsigned char)prime[0]] : 0;
    size_t np = strlen(prime);
    fputs(prime, stdout);
    tg_no_grad_begin();
    double *p = malloc((size_t)c->vocab * sizeof *p);
    for (size_t k = 1; k < np + (size_t)length; k++) {
        tg_rnn_output out = {0};
        tg_tensor *logits = forward(m, 1, 1, &id, carry.n_states ? carry.state : NULL, &out);
        tg_rnn_carry_update(&carry, &out);
        tg_rnn_output_clear(&out);
        if (k < np) {  /* still reading the prime */
            int next = c->index[(unsigned char)prime[k]];
            id = next >= 0 ? next : id;
        } else {       /* p ∝ exp(logit / τ); draw by inverting the cumulative sum */
            double mx = -INFINITY, z = 0;
            for (int v = 0; v < c->vocab; v++) mx = fmax(mx, tg_get(logits, v) / tau);
            for (int v = 0; v < c->vocab; v++) z += p[v] = exp(tg_get(logits, v) / tau - mx);
            double u = tg_rng_uniform(rng) * z;
            int v = 0;
            while (v < c->vocab - 1 && (u -= p[v]) > 0) v++;
            id = v;
            putchar(c->chars[v]);
        }
        tg_tape_reset();
    }
    putchar('\n');
    free(p);
    tg_no_grad_end();
    tg_rnn_carry_clear(&carry);
}

int main(int argc, char **argv) {
    bool quick = quick_mode(argc, argv);
    const char *path = "/usr/share/common-licenses/GPL-3";
    for (int i = 1; i < argc; i++)
        if (strcmp(argv[i], "--quick") != 0) path = argv[i];
    corpus c = {0};
    c.text = read_file(path, &c.n);
    if (!c.text) {
        fprintf(stderr, "char_rnn: cannot read %s (or it has fewer than %d bytes); using a built-in corpus\n", path,
                2 * T + 2);
        c.text = built_in_text(&c.n);
        path = "(built-in counting rhymes)";
    }
    build_vocab(&c);
    long split = c.n * 9 / 10;
    int hidden = quick ? 64 : 128, steps = quick ? 200 : 1000;

    tg_rng rng;
    tg_rng_seed(&rng, 1);
    model m = {
        .embed = tg_embedding_layer_new(c.vocab, EMBED, TG_F32, &rng),
        .lstm = tg_rnn_new(tg_cell_by_name("lstm"), &(tg_rnn_config){.input_size = EMBED, .hidden_size = hidden}, &rng),
        .head = tg_linear_layer_new(hidden, c.vocab, true, TG_F32, &rng),
    };
    tg_params *params = tg_params_new();
    tg_params_extend(params, "embed.", m.embed->params);
    tg_params_extend(params, "lstm.", m.lstm->params);
    tg_params_extend(params, "head.", m.head->params);
    tg_optim_opts o = tg_optim_defaults(TG_OPTIM_ADAM);
    o.lr = 3e-3;
    tg_optim *opt = tg_optim_new_params(TG_OPTIM_ADAM, params, &o);
    printf("%s: %ld characters, %d distinct; training on the first %ld\n", path, c.n, c.vocab, split);
    printf("Embedding(%d) -> LSTM(%d) -> Linear(%d), %lld parameters; %d steps of %d windows of %d, Adam lr %g\n",
           EMBED, hidden, c.vocab, (long long)tg_params_numel(params), steps, B, T, o.lr);

    int64_t *in = malloc((size_t)T * B * sizeof *in), *next = malloc((size_t)T * B * sizeof *next);
    double running = 0;
    for (int step = 1; step <= steps; step++) {
        for (int b = 0; b < B; b++) {  /* a random window per sequence, stored time-major */
            long s = (long)tg_rng_below(&rng, (uint64_t)(split - T - 1));
            for (int t = 0; t < T; t++) {
                in[t * B + b] = c.ids[s + t];
                next[t * B + b] = c.ids[s + t + 1];
            }
        }
        tg_optim_zero_grad(opt);
        tg_tensor *loss = tg_cross_entropy(forward(&m, T, B, in, NULL, NULL), next, NULL);
        tg_backward(loss);
        tg_optim_clip_grad_norm(opt, 1.0, 2.0, false);
        tg_optim_step(opt);
        running += tg_item(loss);
        tg_tape_reset();
        if (step % (steps / 10) == 0) {
            printf("  step %5d  train nats/char %.3f\n", step, running / (steps / 10));
            running = 0;
        }
    }
    free(in);
    free(next);

    /* unigram baseline: the training part's character frequencies (add-one smoothed) on the test part */
    double *freq = calloc((size_t)c.vocab, sizeof *freq), base = 0;
    for (long i = 0; i < split; i++) freq[c.ids[i]] += 1;
    for (long i = split + 1; i < c.n; i++) base -= log((freq[c.ids[i]] + 1) / (double)(split + c.vocab));
    base /= (double)(c.n - split - 1);
    free(freq);
    double test = evaluate(&m, c.ids, split, c.n);
    printf("\ntest nats/char %.3f vs %.3f for the unigram baseline (%s)\n\n", test, base,
           test < base ? "beats it" : "does NOT beat it");
    sample(&m, &c, "The ", quick ? 200 : 600, 0.7, &rng);

    tg_optim_free(opt);
    tg_params_free(params);
    tg_linear_layer_free(m.head);
    tg_rnn_free(m.lstm);
    tg_embedding_layer_free(m.embed);
    free(c.ids);
    free(c.text);
    long live = tg_live_tensors();
    printf("live tensors at the end: %ld\n", live);
    return test < base && live == 0 ? 0 : 1;
}
