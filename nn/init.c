/* nn/init.c - initialisation schemes: uniform, Xavier/Glorot uniform, orthogonal (Gram-Schmidt on our
 * seeded generator, so the same seed gives the same weights on every platform), and the recurrent
 * model's re-initialisation with per-gate blocks and the forget-gate bias.
 * Dimension letters: G gates, H hidden size, R rows and C columns of one block. */
#include <tapegrad/nn.h>
#include "tensor/alloc.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* Writes vals (R·C doubles) into block b of t (viewed as [blocks·R, C]); converts to t's dtype. */
static void write_block(tg_tensor *t, int64_t offset, const double *vals, int64_t n) {
    if (tg_dtype_of(t) == TG_F64) {
        memcpy((double *)tg_data(t) + offset, vals, (size_t)n * sizeof *vals);
    } else {
        float *p = (float *)tg_data(t) + offset;
        for (int64_t i = 0; i < n; i++) p[i] = (float)vals[i];
    }
}

void tg_init_uniform_(tg_tensor *t, tg_rng *rng, double lo, double hi) { tg_uniform_(rng, t, lo, hi); }

/* Validates t as [blocks·R, C]; returns false after reporting. */
static bool block_shape(const char *fn, const tg_tensor *t, int blocks, int64_t *R, int64_t *C) {
    if (!t) {
        if (!tg_error_pending()) tg_error(fn, "tensor is NULL");
        return false;
    }
    char s[128];
    if (tg_ndim(t) != 2 || blocks <= 0 || tg_dim(t, 0) % blocks != 0) {
        tg_error(fn, "%s into %d blocks: needs a 2-D tensor whose rows split evenly", tg_shape_str(t, s, sizeof s),
                 blocks);
        return false;
    }
    *R = tg_dim(t, 0) / blocks;
    *C = tg_dim(t, 1);
    return true;
}

int tg_init_xavier_uniform_(tg_tensor *t, int blocks, tg_rng *rng, double gain) {
    int64_t R, C;
    if (!block_shape("tg_init_xavier_uniform_", t, blocks, &R, &C)) return -1;
    if (!rng) rng = tg_default_rng();
    double a = (R + C) > 0 ? gain * sqrt(6.0 / (double)(R + C)) : 0;
    tg_uniform_(rng, t, -a, a); /* every block has the same fan_in, fan_out: one draw covers all */
    return 0;
}

/* Modified Gram-Schmidt, applied twice ("twice is enough", Giraud et al. 2005), on n vectors of length
 * m (n <= m) stored as rows of v. A vector that collapses (numerically dependent) is redrawn. */
static void orthonormalise(double *v, int64_t n, int64_t m, tg_rng *rng) {
    for (int64_t i = 0; i < n; i++) {
        double *vi = v + i * m;
        for (int attempt = 0;; attempt++) {
            double before = 0;
            for (int64_t k = 0; k < m; k++) before += vi[k] * vi[k];
            for (int pass = 0; pass < 2; pass++)
                for (int64_t j = 0; j < i; j++) {
                    const double *vj = v + j * m;
                    double dot = 0;
                    for (int64_t k = 0; k < m; k++) dot += vi[k] * vj[k];
                    for (int64_t k = 0; k < m; k++) vi[k] -= dot * vj[k];
                }
            double norm = 0;
            for (int64_t k = 0; k < m; k++) norm += vi[k] * vi[k];
            if (norm > 1e-20 * before && norm > 0) {
                norm = sqrt(norm);
                for (int64_t k = 0; k < m; k++) vi[k] /= norm;
                break;
            }
            for (int64_t k = 0; k < m; k++) vi[k] = tg_rng_normal(rng);
            if (attempt > 100) break; /* unreachable in practice: a Gaussian vector is independent a.s. */
        }
    }
}

int tg_init_orthogonal_(tg_tensor *t, int blocks, tg_rng *rng, double gain) {
    const char *fn = "tg_init_orthogonal_";
    int64_t R, C;
    if (!block_shape(fn, t, blocks, &R, &C)) return -1;
    if (!rng) rng = tg_default_rng();
    if (R * C == 0) return 0;
    /* n vectors of length m: rows when R <= C, else columns (orthonormal columns) */
    int64_t n = R <= C ? R : C, m = R <= C ? C : R;
    double *v = tg_malloc((size_t)(R * C) * sizeof *v), *block = tg_malloc((size_t)(R * C) * sizeof *block);
    if (!v || !block) {
        free(v);
        free(block);
        tg_error(fn, "out of memory");
        return -1;
    }
    for (int b = 0; b < blocks; b++) {
        for (int64_t i = 0; i < n * m; i++) v[i] = tg_rng_normal(rng);
        orthonormalise(v, n, m, rng);
        for (int64_t r = 0; r < R; r++)
            for (int64_t c = 0; c < C; c++)
                block[r * C + c] = gain * (R <= C ? v[r * m + c] : v[c * m + r]);
        write_block(t, (int64_t)b * R * C, block, R * C);
    }
    free(v);
    free(block);
    tg_bump_version(t);
    return 0;
}

/* ---- the recurrent model ------------------------------------------------------------------------- */

static int init_weight(tg_tensor *w, tg_init_scheme scheme, int gates, double gain, double bound, tg_rng *rng) {
    if (!w) return 0;
    switch (scheme) {
    case TG_INIT_PYTORCH: tg_uniform_(rng, w, -bound, bound); return 0;
    case TG_INIT_XAVIER_UNIFORM: return tg_init_xavier_uniform_(w, gates, rng, gain);
    case TG_INIT_ORTHOGONAL: return tg_init_orthogonal_(w, gates, rng, gain);
    }
    tg_error("tg_rnn_init", "unknown init scheme %d", (int)scheme);
    return -1;
}

/* Sets block `gate` ([H] entries) of a [G·H] bias to value. */
static void fill_gate(tg_tensor *b, int gate, int64_t H, double value) {
    if (!b) return;
    for (int64_t j = 0; j < H; j++) tg_set(b, gate * H + j, value);
}

int tg_rnn_init(tg_rnn *m, const tg_rnn_init_opts *opts, tg_rng *rng) {
    const char *fn = "tg_rnn_init";
    if (!m) {
        if (!tg_error_pending()) tg_error(fn, "model is NULL");
        return -1;
    }
    tg_rnn_init_opts o = opts ? *opts : (tg_rnn_init_opts){0};
    if (!rng) rng = tg_default_rng();
    double gain = o.gain == 0 ? 1.0 : o.gain, bound = 1.0 / sqrt((double)m->hidden_size);
    int G = m->cell->gates;
    if (o.set_forget_bias && (m->cell->forget_gate < 0 || m->cell->forget_gate >= G)) {
        tg_error(fn, "cell '%s' has no forget gate for forget_bias %g", m->cell->name, o.forget_bias);
        return -1;
    }
    if (o.set_forget_bias && !m->bias) {
        tg_error(fn, "forget_bias %g on a model without biases (no_bias)", o.forget_bias);
        return -1;
    }
    for (int k = 0; k < m->num_layers * m->num_directions; k++) {
        tg_cell_params *p = &m->layers[k];
        /* a projection weight_hr [P, H] (NULL without) is one block under weight_hh's scheme */
        if (init_weight(p->weight_ih, o.weight_ih, G, gain, bound, rng) ||
            init_weight(p->weight_hh, o.weight_hh, G, gain, bound, rng) ||
            init_weight(p->weight_hr, o.weight_hh, 1, gain, bound, rng))
            return -1;
        tg_tensor *biases[2] = {p->bias_ih, p->bias_hh};
        for (int i = 0; i < 2; i++) {
            if (!biases[i]) continue;
            if (o.zero_bias) tg_zero_(biases[i]);
            else tg_uniform_(rng, biases[i], -bound, bound);
        }
        if (o.set_forget_bias) {
            /* the gate sees b_ih + b_hh: put the whole value in b_ih */
            fill_gate(p->bias_ih, m->cell->forget_gate, m->hidden_size, o.forget_bias);
            fill_gate(p->bias_hh, m->cell->forget_gate, m->hidden_size, 0.0);
        }
    }
    return 0;
}
