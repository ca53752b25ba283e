/* examples/autograd_vs_manual.c - the tape's backprop-through-time against hand-derived BPTT.
 *
 * Purpose: the project's central claim in one screen. For each cell with a hand-derived reference
 * (rnn_tanh, rnn_relu, lstm, gru), a 2-layer network with PyTorch-layout parameters runs twice on the
 * same tensors: once through the generic runner (tg_rnn_forward; gradients from tg_backward, no
 * backward code anywhere in nn/) and once through tg_manual_stack_forward / _backward (the classic
 * rnn_backward / lstm_backward formulas written out by hand, no tape). Both take the loss
 *     L = Σ y⊙dy + Σ hn⊙dhn (+ Σ cn⊙dcn)
 * with random upstream gradients dy, dhn, dcn, i.e. exactly what `tapegrad grad` computes. The table
 * prints the largest absolute difference of every output and gradient (over both layers), in F64
 * (expect ~1e-15: the same arithmetic in another order) and in F32 (expect ~1e-6). At the end, the
 * library's own triple check (tg_compare_cell, also `tapegrad gradcheck`) adds finite differences.
 *
 * Run: build/examples/autograd_vs_manual   (fast: --quick is accepted and changes nothing)
 */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include <tapegrad/tapegrad.h>

enum { T = 6, B = 4, I = 5, H = 8, L = 2 };

static double max_diff(const tg_tensor *a, const tg_tensor *b) {
    double m = 0;
    for (int64_t i = 0; i < tg_numel(a); i++) m = fmax(m, fabs(tg_get(a, i) - tg_get(b, i)));
    return m;
}

/* Σ a⊙b, tape-owned */
static tg_tensor *dot(const tg_tensor *a, const tg_tensor *b) { return tg_sum(tg_mul(a, b)); }

/* columns of the table */
enum { C_Y, C_HN, C_CN, C_DX, C_DH0, C_DC0, C_DWIH, C_DWHH, C_DBIH, C_DBHH, NCOL };
static const char *const col_name[NCOL] = {"y", "hn", "cn", "dx", "dh0", "dc0", "dW_ih", "dW_hh", "db_ih", "db_hh"};

static void compare(const char *cell_name, tg_dtype dtype, tg_rng *rng, double *col) {
    tg_manual_cell mc;
    tg_manual_cell_parse(cell_name, &mc);
    bool lstm = mc == TG_MANUAL_LSTM;
    tg_rnn *m = tg_rnn_new(tg_cell_by_name(cell_name),
                           &(tg_rnn_config){.input_size = I, .hidden_size = H, .num_layers = L, .dtype = dtype}, rng);
    tg_tensor *x = tg_rand_normal(rng, dtype, TG_SHAPE(T, B, I), 0, 1);
    tg_tensor *h0 = tg_rand_uniform(rng, dtype, TG_SHAPE(L, B, H), -1, 1);
    tg_tensor *c0 = tg_rand_uniform(rng, dtype, TG_SHAPE(L, B, H), -1, 1);
    tg_tensor *dy = tg_rand_normal(rng, dtype, TG_SHAPE(T, B, H), 0, 1);
    tg_tensor *dhn = tg_rand_normal(rng, dtype, TG_SHAPE(L, B, H), 0, 1);
    tg_tensor *dcn = tg_rand_normal(rng, dtype, TG_SHAPE(L, B, H), 0, 1);

    /* (a) the tape: x, h0, c0 as leaves that require grad; parameters already do */
    tg_set_requires_grad(x, true);
    tg_set_requires_grad(h0, true);
    tg_set_requires_grad(c0, true);
    tg_rnn_output out;
    tg_tensor *y = tg_rnn_forward(m, x, &(tg_rnn_forward_opts){.init = (tg_tensor *[]){h0, lstm ? c0 : NULL}}, &out);
    tg_tensor *loss = tg_add(dot(y, dy), dot(out.h_n, dhn));
    if (lstm) loss = tg_add(loss, dot(out.c_n, dcn));
    tg_backward(loss);

    /* (b) by hand, on the very same parameter tensors */
    tg_manual_layer params[L], grads[L];
    memset(grads, 0, sizeof grads);
    for (int k = 0; k < L; k++) {
        const tg_cell_params *p = tg_rnn_layer(m, k, 0);
        params[k] = (tg_manual_layer){p->weight_ih, p->weight_hh, p->bias_ih, p->bias_hh, NULL};
    }
    tg_manual_cache *cache = NULL;
    tg_tensor *hn = NULL, *cn = NULL, *dx = NULL, *dh0 = NULL, *dc0 = NULL;
    tg_tensor *y_m = tg_manual_stack_forward(mc, L, x, h0, c0, params, &hn, &cn, &cache);
    tg_manual_stack_backward(cache, dy, dhn, dcn, grads, &dx, &dh0, &dc0);

    for (int i = 0; i < NCOL; i++) col[i] = NAN;
    col[C_Y] = max_diff(y, y_m);
    col[C_HN] = max_diff(out.h_n, hn);
    col[C_DX] = max_diff(tg_grad(x), dx);
    col[C_DH0] = max_diff(tg_grad(h0), dh0);
    if (lstm) {
        col[C_CN] = max_diff(out.c_n, cn);
        col[C_DC0] = max_diff(tg_grad(c0), dc0);
    }
    col[C_DWIH] = col[C_DWHH] = col[C_DBIH] = col[C_DBHH] = 0;
    for (int k = 0; k < L; k++) {
        col[C_DWIH] = fmax(col[C_DWIH], max_diff(tg_grad(params[k].weight_ih), grads[k].weight_ih));
        col[C_DWHH] = fmax(col[C_DWHH], max_diff(tg_grad(params[k].weight_hh), grads[k].weight_hh));
        col[C_DBIH] = fmax(col[C_DBIH], max_diff(tg_grad(params[k].bias_ih), grads[k].bias_ih));
        col[C_DBHH] = fmax(col[C_DBHH], max_diff(tg_grad(params[k].bias_hh), grads[k].bias_hh));
    }

    tg_rnn_output_clear(&out);
    tg_tape_reset();
    tg_manual_layer_release(grads, L);
    tg_manual_cache_free(cache);
    tg_release(y_m); tg_release(hn); tg_release(cn); tg_release(dx); tg_release(dh0); tg_release(dc0);
    tg_release(x); tg_release(h0); tg_release(c0); tg_release(dy); tg_release(dhn); tg_release(dcn);
    tg_rnn_free(m);
}

int main(void) {
    const char *cells[] = {"rnn_tanh", "rnn_relu", "lstm", "gru"};
    tg_rng rng;
    tg_rng_seed(&rng, 2024);
    printf("max |tape - hand-derived| over every element, T=%d B=%d I=%d H=%d, %d layers\n\n", T, B, I, H, L);
    printf("%-9s %-5s", "cell", "dtype");
    for (int i = 0; i < NCOL; i++) printf(" %8s", col_name[i]);
    printf("\n");
    double worst[2] = {0, 0};
    for (int d = 0; d < 2; d++) {
        tg_dtype dtype = d == 0 ? TG_F64 : TG_F32;
        for (size_t c = 0; c < sizeof cells / sizeof cells[0]; c++) {
            double col[NCOL];
            compare(cells[c], dtype, &rng, col);
            printf("%-9s %-5s", cells[c], tg_dtype_name(dtype));
            for (int i = 0; i < NCOL; i++) {
                if (isnan(col[i])) printf(" %8s", "-");
                else printf(" %8.1e", col[i]);
                if (!isnan(col[i])) worst[d] = fmax(worst[d], col[i]);
            }
            printf("\n");
        }
    }
    printf("\nworst difference: F64 %.1e, F32 %.1e\n", worst[0], worst[1]);

    /* the third opinion: central finite differences, via the library's triple check */
    tg_compare_report *r = tg_compare_cell("lstm", NULL);
    double tf = 0;
    for (int i = 0; i < r->n_rows; i++) tf = fmax(tf, r->rows[i].tape_fd.max_rel);
    printf("tg_compare_cell(\"lstm\"): tape vs finite differences, worst scaled error %.1e over %d tensors: %s\n",
           tf, r->n_rows, r->pass ? "PASS" : "FAIL");
    bool ok = r->pass && worst[0] < 1e-10 && worst[1] < 1e-3;
    tg_compare_report_free(r);

    long live = tg_live_tensors();
    printf("live tensors at the end: %ld\n", live);
    return ok && live == 0 ? 0 : 1;
}
