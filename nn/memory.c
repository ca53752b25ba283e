/* nn/memory.c - the memory estimate of a recurrent model and of one training step over T steps
 * (<tapegrad/memory.h>): parameters counted from the layouts, the tape from coefficients measured
 * once per cell. Dimension letters: T time, B batch, I input, H hidden, G gates, L layers, D directions. */
#include <tapegrad/autograd.h>
#include <tapegrad/memory.h>

#include <pthread.h>
#include <stdio.h>
#include <string.h>

/* ---- per-cell tape coefficients, measured --------------------------------------------------------- */

enum { PROBE_T = 4, PROBE_H = 16, PROBE_CACHE = 256 };

typedef struct probe_job {
    const tg_cell *cell;
    int64_t B;
    double bytes; /* tg_tape_bytes after the forward; < 0 failed */
} probe_job;

/* Runs in a thread of its own, so the tape it records is not the caller's. */
static void *probe_run(void *arg) {
    probe_job *j = arg;
    j->bytes = -1;
    tg_rng rng;
    tg_rng_seed(&rng, 1);
    tg_rnn_config rc = {.input_size = PROBE_H, .hidden_size = PROBE_H, .num_layers = 1, .dtype = TG_F32};
    tg_rnn *m = tg_rnn_new(j->cell, &rc, &rng);
    tg_tensor *x = m ? tg_rand_normal(&rng, TG_F32, TG_SHAPE(PROBE_T, j->B, PROBE_H), 0, 1) : NULL;
    tg_tensor *y = x ? tg_rnn_forward(m, x, NULL, NULL) : NULL;
    if (y) j->bytes = (double)tg_tape_bytes();
    tg_tape_reset();
    tg_release(x);
    tg_rnn_free(m);
    tg_clear_error();
    return NULL;
}

static pthread_mutex_t g_cache_lock = PTHREAD_MUTEX_INITIALIZER;
static struct { const tg_cell *cell; double a, b; } g_cache[PROBE_CACHE];
static int g_cached;

int tg_cell_tape_coefficients(const tg_cell *cell, double *a, double *b) {
    /* the fallback, if the probe cannot run: generous per-gate and per-state counts, no H² term */
    *a = cell ? 6.0 * cell->gates + 4.0 * cell->n_states + 4 : 32;
    *b = 0;
    if (!cell) return -1;
    pthread_mutex_lock(&g_cache_lock);
    for (int i = 0; i < g_cached; i++)
        if (g_cache[i].cell == cell) {
            *a = g_cache[i].a;
            *b = g_cache[i].b;
            pthread_mutex_unlock(&g_cache_lock);
            return 0;
        }
    probe_job jobs[2] = {{cell, 2, -1}, {cell, 4, -1}};
    int rc = 0;
    for (int k = 0; k < 2; k++) {
        pthread_t th;
        if (pthread_create(&th, NULL, probe_run, &jobs[k]) != 0) { rc = -1; break; }
        pthread_join(th, NULL);
        if (jobs[k].bytes < 0) { rc = -1; break; }
    }
    if (rc == 0) {
        /* bytes / (T·itemsize) − B·I (the input, counted apart) = a·B·H + b·H² at B = 2 and B = 4 */
        double r[2];
        for (int k = 0; k < 2; k++)
            r[k] = jobs[k].bytes / (PROBE_T * 4.0) - (double)jobs[k].B * PROBE_H;
        double av = (r[1] - r[0]) / (2.0 * PROBE_H);
        double bv = (r[0] - av * 2.0 * PROBE_H) / ((double)PROBE_H * PROBE_H);
        if (av < 1) av = 1;
        if (bv < 0) bv = 0;
        *a = av;
        *b = bv;
        if (g_cached < PROBE_CACHE) {
            g_cache[g_cached].cell = cell;
            g_cache[g_cached].a = av;
            g_cache[g_cached].b = bv;
            g_cached++;
        }
    }
    pthread_mutex_unlock(&g_cache_lock);
    return rc;
}

/* ---- the estimate ---------------------------------------------------------------------------------- */

int tg_rnn_mem_estimate(const tg_cell *cell, const tg_rnn_config *cfg, int64_t T, int64_t B, int optim_slots,
                        tg_mem_estimate *out) {
    const char *fn = "tg_rnn_mem_estimate";
    if (!out || !cfg || !cell) {
        if (!tg_error_pending()) tg_error(fn, "%s is NULL", !out ? "out" : !cfg ? "config" : "cell");
        return -1;
    }
    memset(out, 0, sizeof *out);
    if (cfg->input_size <= 0 || cfg->hidden_size <= 0 || cfg->num_layers < 0 || T < 0 || B < 0 || optim_slots < 0) {
        tg_error(fn, "input %lld, hidden %lld, %d layers, T %lld, B %lld, %d optimizer slots: sizes must be positive",
                 (long long)cfg->input_size, (long long)cfg->hidden_size, cfg->num_layers, (long long)T,
                 (long long)B, optim_slots);
        return -1;
    }
    double item = (double)tg_itemsize(cfg->dtype == TG_F64 ? TG_F64 : TG_F32);
    double G = cell->gates > 0 ? cell->gates : 1, H = (double)cfg->hidden_size, I = (double)cfg->input_size;
    int L = cfg->num_layers ? cfg->num_layers : 1, D = cfg->bidirectional ? 2 : 1;
    /* weight_ih [G·H, I_k] + weight_hh [G·H, H] + two biases [G·H]; extras (peepholes, gains) are
     * vectors or per-gate blocks: counted as G·H each */
    double n = 0, P = cfg->proj_size > 0 ? (double)cfg->proj_size : 0, R = P > 0 ? P : H; /* R: the width of h */
    for (int l = 0; l < L; l++) {
        double Ik = l == 0 ? I : D * R;
        n += D * (G * H * (Ik + R) + P * H + (cfg->no_bias ? 0 : 2 * G * H) + cell->n_extra * G * H);
    }
    if (cfg->learn_init) n += cell->n_states * L * D * H;
    out->params = n * item;
    out->grads = out->params;
    out->optim = optim_slots * out->params;
    if (T > 0 && B > 0) {
        double a, b;
        tg_cell_tape_coefficients(cell, &a, &b);
        /* two directions also keep each direction's output and their concatenation: about 2.5 [T,B,H]
         * per direction and layer (measured on rnn_tanh's step path); a cell with a sequence function
         * (tg_cell.sequence) returns its output as the stored projection, so only the concatenation, 1 */
        double bidir = D > 1 ? (cell->sequence ? 1.0 : 2.5) * (double)B * H : 0;
        out->tape = 1.25 * ((double)L * D * (double)T * (a * (double)B * H + b * H * H + bidir) + (double)T * (double)B * I) * item;
        out->data = (double)T * (double)B * I * item;
    }
    tg_mem_sum(out);
    if (out->tape >= out->params + out->grads + out->optim) {
        snprintf(out->why, sizeof out->why, "hidden %lld x batch %lld x seq %lld%s", (long long)cfg->hidden_size,
                 (long long)B, (long long)T, "");
        if (L * D > 1) {
            size_t k = strlen(out->why);
            snprintf(out->why + k, sizeof out->why - k, " x %d layer%s", L * D, D > 1 ? "s (both directions)" : "s");
        }
    } else {
        snprintf(out->why, sizeof out->why, "%.0f parameters: hidden %lld x (input %lld + hidden %lld) x %d gates%s",
                 n, (long long)cfg->hidden_size, (long long)cfg->input_size, (long long)cfg->hidden_size, (int)G, "");
        if (L * D > 1) {
            size_t k = strlen(out->why);
            snprintf(out->why + k, sizeof out->why - k, " x %d layers", L * D);
        }
    }
    return 0;
}
