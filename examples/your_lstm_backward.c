/* examples/your_lstm_backward.c - the classic exercise: write lstm_cell_forward / lstm_cell_backward by
 * hand (plain C loops on arrays, as a student would) and check it three ways, tensor by tensor:
 * your backward vs the tape's (the same step written with tapegrad ops), and both vs central finite
 * differences of the same loss L = Σ h'⊙dh' + Σ c'⊙dc'.
 *
 *     ./your_lstm_backward              # your backward, checked: exit 0 when every tensor agrees
 *     ./your_lstm_backward --bug sign   # a sign error in df: the check names the tensors it breaks
 *     ./your_lstm_backward --bug missing  # the upstream dc' term forgotten: likewise
 * With --bug the program exits 0 only when the check caught exactly the tensors the bug can reach
 * (so the test suite runs it both ways).
 *
 * Dimension letters: B batch, I input, H hidden. Gate order i, f, g, o (PyTorch): W_x [4H, I],
 * W_h [4H, H], b [4H]. Public API only. */
#include <tapegrad/tapegrad.h>

#include <math.h>
#include <stdio.h>
#include <string.h>

enum { B = 2, I = 3, H = 4, G4 = 4 * H };

typedef struct params { double Wx[G4][I], Wh[G4][H], b[G4]; } params;
typedef struct cache {   /* what lstm_cell_forward keeps for the backward */
    double x[B][I], h_prev[B][H], c_prev[B][H];
    double i[B][H], f[B][H], g[B][H], o[B][H], c[B][H], tc[B][H]; /* tc = tanh(c') */
} cache;
typedef struct grads { double dx[B][I], dh_prev[B][H], dc_prev[B][H], dWx[G4][I], dWh[G4][H], db[G4]; } grads;

static double sigm(double v) { return 1.0 / (1.0 + exp(-v)); }

/* ---- what the user writes ------------------------------------------------------------------------- */

static void lstm_cell_forward(const double x[B][I], const double h_prev[B][H], const double c_prev[B][H],
                              const params *p, double h_next[B][H], double c_next[B][H], cache *k) {
    memcpy(k->x, x, sizeof k->x);
    memcpy(k->h_prev, h_prev, sizeof k->h_prev);
    memcpy(k->c_prev, c_prev, sizeof k->c_prev);
    for (int n = 0; n < B; n++) {
        double a[G4];
        for (int r = 0; r < G4; r++) {   /* a = W_x x + W_h h + b */
            a[r] = p->b[r];
            for (int q = 0; q < I; q++) a[r] += p->Wx[r][q] * x[n][q];
            for (int q = 0; q < H; q++) a[r] += p->Wh[r][q] * h_prev[n][q];
        }
        for (int j = 0; j < H; j++) {
            k->i[n][j] = sigm(a[j]);
            k->f[n][j] = sigm(a[H + j]);
            k->g[n][j] = tanh(a[2 * H + j]);
            k->o[n][j] = sigm(a[3 * H + j]);
            c_next[n][j] = k->c[n][j] = k->f[n][j] * c_prev[n][j] + k->i[n][j] * k->g[n][j];
            k->tc[n][j] = tanh(k->c[n][j]);
            h_next[n][j] = k->o[n][j] * k->tc[n][j];
        }
    }
}

static const char *g_bug = NULL; /* "sign" or "missing": the deliberate mistakes */

static void lstm_cell_backward(const double dh_next[B][H], const double dc_next[B][H], const cache *k,
                               const params *p, grads *d) {
    memset(d, 0, sizeof *d);
    for (int n = 0; n < B; n++) {
        double da[G4];
        for (int j = 0; j < H; j++) {
            double o = k->o[n][j], i = k->i[n][j], f = k->f[n][j], g = k->g[n][j], tc = k->tc[n][j];
            double d_o = dh_next[n][j] * tc;                                     /* h' = o tanh(c') */
            double upstream = g_bug && !strcmp(g_bug, "missing") ? 0.0 : dc_next[n][j];
            double dc = upstream + dh_next[n][j] * o * (1 - tc * tc);          /* c' feeds h' and L */
            double di = dc * g, df = dc * k->c_prev[n][j], dg = dc * i;        /* c' = f c + i g */
            d->dc_prev[n][j] = dc * f;
            da[j] = di * i * (1 - i);
            da[H + j] = (g_bug && !strcmp(g_bug, "sign") ? -1.0 : 1.0) * df * f * (1 - f);
            da[2 * H + j] = dg * (1 - g * g);
            da[3 * H + j] = d_o * o * (1 - o);
        }
        for (int r = 0; r < G4; r++) {   /* dW_x += da xᵀ, dW_h += da hᵀ, db += da, dx = W_xᵀ da, dh = W_hᵀ da */
            d->db[r] += da[r];
            for (int q = 0; q < I; q++) { d->dWx[r][q] += da[r] * k->x[n][q]; d->dx[n][q] += p->Wx[r][q] * da[r]; }
            for (int q = 0; q < H; q++) { d->dWh[r][q] += da[r] * k->h_prev[n][q]; d->dh_prev[n][q] += p->Wh[r][q] * da[r]; }
        }
    }
}

/* ---- the checks ----------------------------------------------------------------------------------------- */

typedef struct problem {
    double x[B][I], h[B][H], c[B][H], dh[B][H], dc[B][H];
    params p;
} problem;

static double loss_plain(const problem *pr) {
    double h2[B][H], c2[B][H], L = 0;
    cache k;
    lstm_cell_forward(pr->x, pr->h, pr->c, &pr->p, h2, c2, &k);
    for (int n = 0; n < B; n++)
        for (int j = 0; j < H; j++) L += h2[n][j] * pr->dh[n][j] + c2[n][j] * pr->dc[n][j];
    return L;
}

/* The six tensors by name: pointer to the problem's array, its size, and the manual gradient. */
#define N_T 6
static const char *const names[N_T] = {"x", "h_prev", "c_prev", "weight_ih", "weight_hh", "bias"};

static double *slot(problem *pr, int t, int *numel) {
    double *ptrs[N_T] = {&pr->x[0][0], &pr->h[0][0], &pr->c[0][0], &pr->p.Wx[0][0], &pr->p.Wh[0][0], pr->p.b};
    int sizes[N_T] = {B * I, B * H, B * H, G4 * I, G4 * H, G4};
    *numel = sizes[t];
    return ptrs[t];
}

static double *manual_slot(grads *d, int t) {
    double *ptrs[N_T] = {&d->dx[0][0], &d->dh_prev[0][0], &d->dc_prev[0][0], &d->dWx[0][0], &d->dWh[0][0], d->db};
    return ptrs[t];
}

/* The same step with tapegrad ops; grads of the six tensors into tape[t] (new refs). */
static void tape_grads(problem *pr, tg_tensor *tape[N_T]) {
    const int64_t shapes[N_T][2] = {{B, I}, {B, H}, {B, H}, {G4, I}, {G4, H}, {G4, 0}};
    tg_tensor *in[N_T];
    for (int t = 0; t < N_T; t++) {
        int n;
        in[t] = tg_from_array(TG_F64, t == 5 ? 1 : 2, shapes[t], slot(pr, t, &n));
        tg_set_requires_grad(in[t], true);
    }
    tg_tensor *gates[4];
    tg_chunk(tg_add(tg_linear(in[0], in[3], in[5]), tg_linear(in[1], in[4], NULL)), 1, 4, gates);
    tg_tensor *i = tg_sigmoid(gates[0]), *f = tg_sigmoid(gates[1]), *g = tg_tanh(gates[2]), *o = tg_sigmoid(gates[3]);
    tg_tensor *c2 = tg_add(tg_mul(f, in[2]), tg_mul(i, g)), *h2 = tg_mul(o, tg_tanh(c2));
    tg_tensor *dh = tg_from_array(TG_F64, 2, shapes[1], &pr->dh[0][0]), *dc = tg_from_array(TG_F64, 2, shapes[1], &pr->dc[0][0]);
    tg_backward(tg_add(tg_sum(tg_mul(h2, dh)), tg_sum(tg_mul(c2, dc))));
    for (int t = 0; t < N_T; t++) {
        tape[t] = tg_copy(tg_grad(in[t]));
        tg_release(in[t]);
    }
    tg_release(dh);
    tg_release(dc);
    tg_tape_reset();
}

int main(int argc, char **argv) {
    for (int a = 1; a < argc; a++) {
        if (!strcmp(argv[a], "--bug") && a + 1 < argc) g_bug = argv[++a];
        else if (strcmp(argv[a], "--quick")) { fprintf(stderr, "usage: %s [--bug sign|missing]\n", argv[0]); return 2; }
    }
    if (g_bug && strcmp(g_bug, "sign") && strcmp(g_bug, "missing")) { fprintf(stderr, "--bug: sign or missing\n"); return 2; }
    problem pr;
    tg_rng rng;
    tg_rng_seed(&rng, 3);
    double *all = (double *)&pr;
    for (size_t q = 0; q < sizeof pr / sizeof(double); q++) all[q] = tg_rng_uniform(&rng) * 2 - 1;

    /* 1. your backward */
    double h2[B][H], c2[B][H];
    cache k;
    grads d;
    lstm_cell_forward(pr.x, pr.h, pr.c, &pr.p, h2, c2, &k);
    lstm_cell_backward(pr.dh, pr.dc, &k, &pr.p, &d);
    /* 2. the tape */
    tg_tensor *tape[N_T];
    tape_grads(&pr, tape);
    /* 3. central differences, and the table */
    const double eps = 1e-6;
    printf("%-10s %8s  %11s %11s %11s   %s\n", "tensor", "elements", "yours~tape", "yours~FD", "tape~FD", "verdict");
    bool wrong[N_T] = {0}, tape_ok = true;
    for (int t = 0; t < N_T; t++) {
        int n;
        double *v = slot(&pr, t, &n), *mine = manual_slot(&d, t), e_mt = 0, e_mf = 0, e_tf = 0;
        for (int q = 0; q < n; q++) {
            double keep = v[q];
            v[q] = keep + eps; double lp = loss_plain(&pr);
            v[q] = keep - eps; double lm = loss_plain(&pr);
            v[q] = keep;
            double fd = (lp - lm) / (2 * eps), tp = tg_get(tape[t], q);
            e_mt = fmax(e_mt, fabs(mine[q] - tp));
            e_mf = fmax(e_mf, fabs(mine[q] - fd));
            e_tf = fmax(e_tf, fabs(tp - fd));
        }
        wrong[t] = e_mt > 1e-10 || e_mf > 1e-6;
        tape_ok &= e_tf <= 1e-6;
        printf("%-10s %8d  %11.1e %11.1e %11.1e   %s\n", names[t], n, e_mt, e_mf, e_tf,
               wrong[t] ? "YOUR BACKWARD IS WRONG HERE" : "ok");
        tg_release(tape[t]);
    }
    int n_wrong = 0;
    for (int t = 0; t < N_T; t++) n_wrong += wrong[t];
    if (!tape_ok) { printf("the tape disagrees with finite differences: a bug in tapegrad\n"); return 1; }
    if (!g_bug) {
        printf(n_wrong ? "%d tensor(s) wrong\n" : "your lstm_cell_backward agrees with the tape and with finite differences\n", n_wrong);
        return n_wrong ? 1 : 0;
    }
    /* the deliberate bugs: which tensors they reach. sign (in da_f): everything computed from da, i.e.
     * all but dc_prev; missing (dc' dropped): every tensor, dc_prev included. */
    bool expect[N_T];
    for (int t = 0; t < N_T; t++) expect[t] = !strcmp(g_bug, "missing") || t != 2;
    bool exact = true;
    for (int t = 0; t < N_T; t++) exact &= expect[t] == wrong[t];
    printf("--bug %s: the check %s\n", g_bug, exact ? "named exactly the tensors the bug reaches" : "did NOT catch it as expected");
    return exact ? 0 : 1;
}
