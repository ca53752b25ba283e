/* examples/your_lstm_backward.c - the classic exercise: write lstm_cell_forward / lstm_cell_backward by
 * hand (plain C loops on arrays, as a student would), hang them on a cell as its manual hook
 * (tg_cell.manual, <tapegrad/compare.h>) and let tg_compare_cell triple-check them over a whole stacked
 * network and sequence: the tape's BPTT vs YOUR BPTT (the library runs your step backward through
 * time and layers) vs central finite differences, tensor by tensor.
 *
 *     ./your_lstm_backward                 # your backward, checked: exit 0 when every tensor agrees
 *     ./your_lstm_backward --bug sign      # a sign error in da_f: caught, every tensor it reaches named
 *     ./your_lstm_backward --bug missing   # the upstream dc' term forgotten: likewise
 *     ./your_lstm_backward --bug bias      # db summed over the first batch row only: only the biases fail
 * With --bug the program exits 0 only when the check failed exactly the tensors the bug can reach
 * (the test suite runs it all four ways).
 *
 * Dimension letters: B batch, I input, H hidden. Gate order i, f, g, o (PyTorch): W_ih [4H, I],
 * W_hh [4H, H], b_ih, b_hh [4H]. Public API only. */
#include <tapegrad/tapegrad.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *g_bug = NULL; /* "sign", "missing" or "bias": the deliberate mistakes */

static double sigm(double v) { return 1.0 / (1.0 + exp(-v)); }

/* ---- what the user writes: one step forward and backward on plain arrays --------------------------- */

typedef struct cache {  /* what lstm_cell_forward keeps for the backward (arrays of B·I, B·H) */
    int B, I, H;
    double *x, *h_prev, *c_prev, *i, *f, *g, *o, *tc; /* tc = tanh(c') */
} cache;

static void cache_free(void *p) {
    cache *k = p;
    if (!k) return;
    free(k->x);   /* one block holds every array */
    free(k);
}

/* a = W_ih x + b_ih + W_hh h + b_hh;  c' = σ(a_f) c + σ(a_i) tanh(a_g);  h' = σ(a_o) tanh(c') */
static void lstm_cell_forward(int B, int I, int H, const double *x, const double *h_prev, const double *c_prev,
                              const double *W_ih, const double *W_hh, const double *b_ih, const double *b_hh,
                              double *h_next, double *c_next, cache *k) {
    memcpy(k->x, x, sizeof(double) * (size_t)(B * I));
    memcpy(k->h_prev, h_prev, sizeof(double) * (size_t)(B * H));
    memcpy(k->c_prev, c_prev, sizeof(double) * (size_t)(B * H));
    double *a = malloc(sizeof(double) * 4 * (size_t)H);
    for (int n = 0; n < B; n++) {
        for (int r = 0; r < 4 * H; r++) {
            a[r] = (b_ih ? b_ih[r] : 0) + (b_hh ? b_hh[r] : 0);
            for (int q = 0; q < I; q++) a[r] += W_ih[r * I + q] * x[n * I + q];
            for (int q = 0; q < H; q++) a[r] += W_hh[r * H + q] * h_prev[n * H + q];
        }
        for (int j = 0; j < H; j++) {
            int e = n * H + j;
            k->i[e] = sigm(a[j]);
            k->f[e] = sigm(a[H + j]);
            k->g[e] = tanh(a[2 * H + j]);
            k->o[e] = sigm(a[3 * H + j]);
            c_next[e] = k->f[e] * c_prev[e] + k->i[e] * k->g[e];
            k->tc[e] = tanh(c_next[e]);
            h_next[e] = k->o[e] * k->tc[e];
        }
    }
    free(a);
}

/* From dh', dc': dx, dh, dc and the parameter gradients (accumulated, +=). */
static void lstm_cell_backward(const cache *k, const double *dh_next, const double *dc_next, const double *W_ih,
                               const double *W_hh, double *dx, double *dh_prev, double *dc_prev, double *dW_ih,
                               double *dW_hh, double *db_ih, double *db_hh) {
    int B = k->B, I = k->I, H = k->H;
    double *da = malloc(sizeof(double) * 4 * (size_t)H);
    memset(dx, 0, sizeof(double) * (size_t)(B * I));
    memset(dh_prev, 0, sizeof(double) * (size_t)(B * H));
    for (int n = 0; n < B; n++) {
        for (int j = 0; j < H; j++) {
            int e = n * H + j;
            double o = k->o[e], i = k->i[e], f = k->f[e], g = k->g[e], tc = k->tc[e];
            double d_o = dh_next[e] * tc;                                      /* h' = o tanh(c') */
            double upstream = g_bug && !strcmp(g_bug, "missing") ? 0.0 : dc_next[e];
            double dc = upstream + dh_next[e] * o * (1 - tc * tc);             /* c' feeds h' and the next step */
            double di = dc * g, df = dc * k->c_prev[e], dg = dc * i;           /* c' = f c + i g */
            dc_prev[e] = dc * f;
            da[j] = di * i * (1 - i);
            da[H + j] = (g_bug && !strcmp(g_bug, "sign") ? -1.0 : 1.0) * df * f * (1 - f);
            da[2 * H + j] = dg * (1 - g * g);
            da[3 * H + j] = d_o * o * (1 - o);
        }
        /* dW_ih += da xᵀ, dW_hh += da hᵀ, db += da, dx = W_ihᵀ da, dh = W_hhᵀ da */
        for (int r = 0; r < 4 * H; r++) {
            if (db_ih && !(g_bug && !strcmp(g_bug, "bias") && n > 0)) { db_ih[r] += da[r]; db_hh[r] += da[r]; }
            for (int q = 0; q < I; q++) { dW_ih[r * I + q] += da[r] * k->x[n * I + q]; dx[n * I + q] += W_ih[r * I + q] * da[r]; }
            for (int q = 0; q < H; q++) { dW_hh[r * H + q] += da[r] * k->h_prev[n * H + q]; dh_prev[n * H + q] += W_hh[r * H + q] * da[r]; }
        }
    }
    free(da);
}

/* ---- the hook: tapegrad tensors in, the functions above, tensors out -------------------------------- */

static double *f64(const tg_tensor *t) { return t ? tg_f64((tg_tensor *)t) : NULL; }

static int hook_forward(const tg_cell *cell, const tg_cell_params *p, const tg_tensor *x, tg_tensor *const *state_in,
                        tg_tensor **state_out, void **cache_out) {
    (void)cell;
    int B = (int)tg_dim(x, 0), I = (int)p->input_size, H = (int)p->hidden_size;
    cache *k = calloc(1, sizeof *k);
    double *block = malloc(sizeof(double) * (size_t)(B * I + 7 * B * H));
    state_out[0] = tg_zeros(TG_F64, TG_SHAPE(B, H));
    state_out[1] = tg_zeros(TG_F64, TG_SHAPE(B, H));
    if (!k || !block || !state_out[0] || !state_out[1]) { free(k); free(block); return -1; }
    *k = (cache){.B = B, .I = I, .H = H, .x = block, .h_prev = block + B * I};
    double **arrays[] = {&k->c_prev, &k->i, &k->f, &k->g, &k->o, &k->tc};
    for (int a = 0; a < 6; a++) *arrays[a] = k->h_prev + (a + 1) * B * H;
    lstm_cell_forward(B, I, H, f64(x), f64(state_in[0]), f64(state_in[1]), f64(p->weight_ih), f64(p->weight_hh),
                      f64(p->bias_ih), f64(p->bias_hh), f64(state_out[0]), f64(state_out[1]), k);
    *cache_out = k;
    return 0;
}

static int hook_backward(const tg_cell *cell, const tg_cell_params *p, void *cache_in, tg_tensor *const *d_out,
                         tg_tensor **dx, tg_tensor **d_in, tg_cell_params *grads) {
    (void)cell;
    const cache *k = cache_in;
    *dx = tg_zeros(TG_F64, TG_SHAPE(k->B, k->I));
    d_in[0] = tg_zeros(TG_F64, TG_SHAPE(k->B, k->H));
    d_in[1] = tg_zeros(TG_F64, TG_SHAPE(k->B, k->H));
    if (!*dx || !d_in[0] || !d_in[1]) return -1;
    lstm_cell_backward(k, f64(d_out[0]), f64(d_out[1]), f64(p->weight_ih), f64(p->weight_hh), f64(*dx), f64(d_in[0]),
                       f64(d_in[1]), f64(grads->weight_ih), f64(grads->weight_hh), f64(grads->bias_ih),
                       f64(grads->bias_hh));
    return 0;
}

static const tg_cell_manual my_hook = {.forward = hook_forward, .backward = hook_backward, .free_cache = cache_free};

int main(int argc, char **argv) {
    for (int a = 1; a < argc; a++) {
        if (!strcmp(argv[a], "--bug") && a + 1 < argc) g_bug = argv[++a];
        else if (strcmp(argv[a], "--quick")) { fprintf(stderr, "usage: %s [--bug sign|missing|bias]\n", argv[0]); return 2; }
    }
    if (g_bug && strcmp(g_bug, "sign") && strcmp(g_bug, "missing") && strcmp(g_bug, "bias")) {
        fprintf(stderr, "--bug: sign, missing or bias\n");
        return 2;
    }
    /* the built-in LSTM (its tape step is what trains), with your backward hung on it */
    static tg_cell my_lstm;
    my_lstm = *tg_cell_by_name("lstm");
    my_lstm.name = "my_lstm";
    my_lstm.manual = &my_hook;
    if (tg_cell_register(&my_lstm)) { fprintf(stderr, "%s\n", tg_last_error()); return 1; }

    tg_compare_opts o = tg_compare_defaults(); /* T=5 B=3 I=4 H=6, 2 layers, F64, FD on every element */
    tg_compare_report *r = tg_compare_cell("my_lstm", &o);
    if (!r) { fprintf(stderr, "%s\n", tg_last_error()); return 1; }
    tg_compare_report_print(stdout, r);

    int status = 0;
    if (!g_bug) {
        status = r->pass ? 0 : 1;
        printf(r->pass ? "your lstm_cell_backward agrees with the tape and with finite differences\n"
                       : "your lstm_cell_backward is wrong in the rows marked FAIL\n");
    } else {
        /* which tensors each bug reaches: sign and missing, through BPTT, every one; bias only the biases.
         * The tape must still agree with finite differences everywhere (the check blames your code). */
        bool exact = r->forward.pass;
        for (int i = 0; i < r->n_rows; i++) {
            const tg_compare_row *row = &r->rows[i];
            bool expect_wrong = strcmp(g_bug, "bias") || strstr(row->name, "grad.bias_");
            bool wrong = !row->tape_manual.pass || !row->manual_fd.pass;
            exact &= expect_wrong == wrong && row->tape_fd.pass;
            if (wrong) printf("  caught: %s\n", row->name);
        }
        printf("--bug %s: the check %s\n", g_bug, exact ? "named exactly the tensors the bug reaches" : "did NOT catch it as expected");
        status = exact ? 0 : 1;
    }
    tg_compare_report_free(r);
    return status;
}
