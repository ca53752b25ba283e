/* tests/test_stream.c - streaming inference (nn/stream.c, <tapegrad/stream.h>).
 *
 * - For every registered cell (built-in and zoo) and typed definitions (docs/cells/janet.cell,
 *   lstm.cell): T steps of tg_rnn_stream_step equal tg_rnn_forward over the whole sequence (+ the head),
 *   outputs and final states, to 1e-12 in F64 and 1e-6 in F32 (scaled: max|a-b| / max(1, max|b|));
 *   learned initial states are used.
 * - reset and per-row reset: a reset row equals a fresh run, the other rows go on as one long sequence.
 * - After creation a step calls malloc zero times (malloc/calloc/realloc/aligned_alloc counted by
 *   interposing them in this executable, on this thread); `tapegrad sample`'s and `predict`'s code
 *   (tools/tasks.c, tools/datatask.c) allocates no more for long inputs than for short ones. The counts
 *   are skipped, with a message, where malloc is not this executable's: under AddressSanitizer (build
 *   time) and valgrind (run time, from LD_PRELOAD); every other test runs there too.
 * - No tape records or tensors are left by a step; a non-empty tape, a bidirectional model, bad shapes
 *   and rows are refused with messages; nothing leaks.
 * Dimension letters: T time, B rows, I input, H hidden, L layers, O head outputs. */
#include "helpers.h"

#include <tapegrad/tapegrad.h>

#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tools/datatask.h"
#include "tools/tasks.h"

#if defined(__SANITIZE_ADDRESS__)
#define COUNT_MALLOC 0
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define COUNT_MALLOC 0
#endif
#endif
#ifndef COUNT_MALLOC
#define COUNT_MALLOC 1
#endif

#if COUNT_MALLOC
/* glibc's own entry points; these wrappers count calls made while g_counting is on (this thread). */
extern void *__libc_malloc(size_t);
extern void *__libc_calloc(size_t, size_t);
extern void *__libc_realloc(void *, size_t);
extern void *__libc_memalign(size_t, size_t);
extern void __libc_free(void *);
static _Thread_local bool g_counting;
static _Thread_local long g_mallocs;
void *malloc(size_t n) { g_mallocs += g_counting; return __libc_malloc(n); }
void *calloc(size_t a, size_t b) { g_mallocs += g_counting; return __libc_calloc(a, b); }
void *realloc(void *p, size_t n) { g_mallocs += g_counting; return __libc_realloc(p, n); }
void *aligned_alloc(size_t al, size_t n) { g_mallocs += g_counting; return __libc_memalign(al, n); }
int posix_memalign(void **out, size_t al, size_t n) {
    g_mallocs += g_counting;
    *out = __libc_memalign(al, n);
    return *out ? 0 : 12;
}
void free(void *p) { __libc_free(p); }

/* The interposed counter counts only where this executable's malloc is the one called: valgrind
 * replaces malloc everywhere (its preload is in LD_PRELOAD); AddressSanitizer does at build time. */
static bool counter_works(void) {
    const char *pre = getenv("LD_PRELOAD");
    return !(pre && strstr(pre, "vgpreload"));
}
#define COUNTED(n, ...) do { g_mallocs = 0; g_counting = true; __VA_ARGS__; g_counting = false; (n) = g_mallocs; } while (0)
#define SKIP_UNLESS_COUNTING() \
    do { if (!counter_works()) cr_skip_test("malloc is valgrind's here (its LD_PRELOAD): allocations not counted"); } while (0)
#else
#define SKIP_UNLESS_COUNTING() cr_skip_test("malloc is AddressSanitizer's here: allocations not counted")
#endif

#define CELLS_DIR TG_TEST_DATA_DIR "/../../docs/cells"

static tg_cell_def *typed(const char *file) {
    char path[512], err[256];
    snprintf(path, sizeof path, "%s/%s", CELLS_DIR, file);
    FILE *f = fopen(path, "rb");
    cr_assert_not_null(f, "%s", path);
    static char buf[TG_CELL_DEF_MAX_SOURCE + 1];
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = 0;
    tg_cell_def *d = tg_cell_def_parse(file, buf, err, sizeof err);
    cr_assert_not_null(d, "%s: %s", path, err);
    return d;
}


/* x[t] as a new [B, I] tensor */
static tg_tensor *row_at(const tg_tensor *x, int64_t t) {
    tg_tensor *v = tg_view_at(x, t), *c = tg_copy(v);
    tg_release(v);
    return c;
}

/* Stream vs full-sequence forward for one cell; returns the worst scaled difference. */
static double stream_vs_forward(const tg_cell *cell, tg_dtype dtype, bool learn_init) {
    int64_t T = 7, B = 3, I = 5, H = 5, O = 3;
    tg_rng rng;
    tg_rng_seed(&rng, 5);
    tg_rnn_config cfg = {.input_size = I, .hidden_size = H, .num_layers = 2, .learn_init = learn_init, .dtype = dtype};
    tg_rnn *m = tg_rnn_new(cell, &cfg, &rng);
    cr_assert_not_null(m, "%s: %s", cell->name, tg_last_error());
    for (int s = 0; learn_init && s < cell->n_states; s++) tg_uniform_(&rng, m->init[s], -0.5, 0.5);
    tg_linear_layer *head = tg_linear_layer_new(H, O, true, dtype, &rng);
    tg_tensor *x = tg_rand_uniform(&rng, dtype, TG_SHAPE(T, B, I), -1, 1);
    /* reference: the runner over the whole sequence, then the head, under no-grad */
    tg_no_grad_begin();
    tg_rnn_output out;
    tg_tensor *y = tg_rnn_forward(m, x, NULL, &out);
    cr_assert_not_null(y, "%s: %s", cell->name, tg_last_error());
    tg_tensor *ref = tg_copy(tg_linear_layer_forward(head, y)), *finals[TG_CELL_MAX_STATES];
    for (int s = 0; s < cell->n_states; s++) finals[s] = tg_copy(out.final[s]);
    tg_rnn_output_clear(&out);
    tg_no_grad_end();
    tg_tape_reset();

    tg_rnn_stream *st = tg_rnn_stream_new(m, head, B);
    cr_assert_not_null(st, "%s: %s", cell->name, tg_last_error());
    double worst = 0;
    for (int64_t t = 0; t < T; t++) {
        tg_tensor *xt = row_at(x, t), *want = row_at(ref, t);
        const tg_tensor *got = tg_rnn_stream_step(st, xt);
        cr_assert_not_null(got, "%s step %lld: %s", cell->name, (long long)t, tg_last_error());
        cr_assert_eq(tg_tape_records() + tg_tape_tensors(), 0, "%s: the step left the tape non-empty", cell->name);
        worst = fmax(worst, th_scaled_diff(got, want));
        tg_release(xt);
        tg_release(want);
    }
    for (int s = 0; s < cell->n_states; s++) {
        worst = fmax(worst, th_scaled_diff(tg_rnn_stream_state(st, s), finals[s]));
        tg_release(finals[s]);
    }
    cr_assert_eq(tg_rnn_stream_steps(st), T);
    tg_rnn_stream_free(st);
    tg_release(ref);
    tg_release(x);
    tg_linear_layer_free(head);
    tg_rnn_free(m);
    return worst;
}

static void every_cell(tg_dtype dtype, double tol) {
    long live = tg_live_tensors();
    int n = 0;
    for (int i = 0; i < tg_cell_count(); i++, n++) {
        const tg_cell *c = tg_cell_at(i);
        double d = stream_vs_forward(c, dtype, false);
        cr_expect_leq(d, tol, "%s %s: stream differs from the runner by %g", c->name, tg_dtype_name(dtype), d);
    }
    const char *files[] = {"janet.cell", "lstm.cell", "lstm_fgr.cell"};
    for (int f = 0; f < 3; f++, n++) {
        tg_cell_def *d = typed(files[f]);
        double e = stream_vs_forward(tg_cell_def_cell(d), dtype, false);
        cr_expect_leq(e, tol, "typed %s %s: stream differs by %g", files[f], tg_dtype_name(dtype), e);
        tg_cell_def_free(d);
    }
    double e = stream_vs_forward(tg_cell_by_name("lstm"), dtype, true);
    cr_expect_leq(e, tol, "lstm with learned initial states: %g", e);
    cr_expect_geq(n, 20, "every built-in and zoo cell");
    cr_assert_eq(tg_live_tensors(), live, "tensors leaked");
}

Test(stream, every_cell_equals_the_runner_f64) { every_cell(TG_F64, 1e-12); }
Test(stream, every_cell_equals_the_runner_f32) { every_cell(TG_F32, 1e-6); }

Test(stream, reset_and_per_row_reset) {
    int64_t T = 6, B = 3, I = 4, H = 6;
    tg_rng rng;
    tg_rng_seed(&rng, 9);
    tg_rnn_config cfg = {.input_size = I, .hidden_size = H, .num_layers = 2, .dtype = TG_F64};
    tg_rnn *m = tg_rnn_new(tg_cell_by_name("lstm"), &cfg, &rng);
    tg_tensor *a = tg_rand_uniform(&rng, TG_F64, TG_SHAPE(T, B, I), -1, 1);
    tg_tensor *b = tg_rand_uniform(&rng, TG_F64, TG_SHAPE(T, B, I), -1, 1);
    tg_tensor *ab_parts[2] = {a, b};
    tg_no_grad_begin();
    tg_tensor *ab = tg_copy(tg_concat(2, ab_parts, 0));
    tg_tensor *y_ab = tg_copy(tg_rnn_forward(m, ab, NULL, NULL)), *y_b = tg_copy(tg_rnn_forward(m, b, NULL, NULL));
    tg_no_grad_end();
    tg_tape_reset();
    tg_rnn_stream *st = tg_rnn_stream_new(m, NULL, B);
    cr_assert_not_null(st);
    for (int64_t t = 0; t < T; t++) {
        tg_tensor *xt = row_at(a, t);
        cr_assert_not_null(tg_rnn_stream_step(st, xt));
        tg_release(xt);
    }
    cr_assert_eq(tg_rnn_stream_reset_row(st, 1), 0);
    double worst = 0;
    for (int64_t t = 0; t < T; t++) {
        tg_tensor *xt = row_at(b, t), *go_on = row_at(y_ab, T + t), *fresh = row_at(y_b, t);
        const tg_tensor *got = tg_rnn_stream_step(st, xt);
        cr_assert_not_null(got);
        for (int64_t r = 0; r < B; r++)
            for (int64_t j = 0; j < H; j++) {
                double want = tg_get(r == 1 ? fresh : go_on, r * H + j);
                worst = fmax(worst, fabs(tg_get(got, r * H + j) - want));
            }
        tg_release(xt); tg_release(go_on); tg_release(fresh);
    }
    cr_expect_leq(worst, 1e-12, "row 1 fresh, rows 0 and 2 continued: %g", worst);
    /* a full reset: every row is a fresh run of b */
    cr_assert_eq(tg_rnn_stream_reset(st), 0);
    cr_expect_eq(tg_rnn_stream_steps(st), 0);
    worst = 0;
    for (int64_t t = 0; t < T; t++) {
        tg_tensor *xt = row_at(b, t), *fresh = row_at(y_b, t);
        worst = fmax(worst, th_scaled_diff(tg_rnn_stream_step(st, xt), fresh));
        tg_release(xt); tg_release(fresh);
    }
    cr_expect_leq(worst, 1e-12, "after reset: %g", worst);
    /* without the reset, the stream differs (the check can fail) */
    tg_tensor *xt = row_at(b, 0), *fresh = row_at(y_b, 0);
    cr_expect_gt(th_scaled_diff(tg_rnn_stream_step(st, xt), fresh), 1e-3);
    tg_release(xt); tg_release(fresh);
    tg_rnn_stream_free(st);
    tg_release(a); tg_release(b); tg_release(ab); tg_release(y_ab); tg_release(y_b);
    tg_rnn_free(m);
}

Test(stream, no_allocation_after_creation) {
    SKIP_UNLESS_COUNTING();
#if COUNT_MALLOC
    /* the counter does count: a tensor of a size never made before is seen */
    g_mallocs = 0;
    g_counting = true;
    tg_tensor *big = tg_zeros(TG_F32, TG_SHAPE(1 << 22));
    g_counting = false;
    cr_expect_gt(g_mallocs, 0, "the malloc counter saw a fresh 16 MB tensor");
    tg_release(big);
    const char *cells[] = {"lstm", "gru", "rnn_tanh", "lstm_fgr", "lstm_ln"};
    tg_cell_def *janet = typed("janet.cell");
    for (int c = 0; c < 6; c++) {
        const tg_cell *cell = c < 5 ? tg_cell_by_name(cells[c]) : tg_cell_def_cell(janet);
        tg_rnn_config cfg = {.input_size = 8, .hidden_size = 16, .num_layers = 2, .dtype = TG_F32};
        tg_rnn *m = tg_rnn_new(cell, &cfg, NULL);
        tg_linear_layer *head = tg_linear_layer_new(16, 4, true, TG_F32, NULL);
        tg_tensor *x = tg_rand_uniform(NULL, TG_F32, TG_SHAPE(4, 8), -1, 1);
        tg_rnn_stream *st = tg_rnn_stream_new(m, head, 4);
        cr_assert_not_null(st, "%s", tg_last_error());
        g_mallocs = 0;
        g_counting = true;
        for (int t = 0; t < 50; t++) tg_rnn_stream_step(st, x);
        cr_assert_eq(tg_rnn_stream_reset_row(st, 2), 0);
        for (int t = 0; t < 50; t++) tg_rnn_stream_step(st, x);
        g_counting = false;
        cr_expect_eq(g_mallocs, 0, "%s: %ld allocations in 100 steps", cell->name, g_mallocs);
        cr_expect_eq(tg_rnn_stream_steps(st), 100);
        tg_rnn_stream_free(st);
        tg_release(x);
        tg_linear_layer_free(head);
        tg_rnn_free(m);
    }
    tg_cell_def_free(janet);
#endif
}

Test(stream, bad_use_gets_messages) {
    th_record_errors();
    long live = tg_live_tensors();
    tg_rnn_config cfg = {.input_size = 3, .hidden_size = 4, .bidirectional = true, .dtype = TG_F64};
    tg_rnn *bi = tg_rnn_new(tg_cell_by_name("gru"), &cfg, NULL);
    cr_expect_null(tg_rnn_stream_new(bi, NULL, 2));
    cr_expect(strstr(th_last_message(), "a bidirectional model cannot stream"), "%s", th_last_message());
    tg_rnn_free(bi);
    th_reset_errors();
    cfg.bidirectional = false;
    tg_rnn *m = tg_rnn_new(tg_cell_by_name("gru"), &cfg, NULL);
    cr_expect_null(tg_rnn_stream_new(m, NULL, 0));
    cr_expect(strstr(th_last_message(), "B = 0 rows: must be in 1.."), "%s", th_last_message());
    th_reset_errors();
    tg_linear_layer *head = tg_linear_layer_new(5, 2, true, TG_F64, NULL);
    cr_expect_null(tg_rnn_stream_new(m, head, 2));
    cr_expect(strstr(th_last_message(), "head [5 -> 2] F64 does not take the model's h [B, 4] F64"), "%s", th_last_message());
    tg_linear_layer_free(head);
    th_reset_errors();
    tg_rnn_stream *st = tg_rnn_stream_new(m, NULL, 2);
    cr_assert_not_null(st);
    tg_tensor *x = tg_zeros(TG_F64, TG_SHAPE(3, 3));
    cr_expect_null(tg_rnn_stream_step(st, x));
    cr_expect(strstr(th_last_message(), "x_t [3,3] F64: expected [2,3] F64 (rows, input size)"), "%s", th_last_message());
    tg_release(x);
    th_reset_errors();
    x = tg_zeros(TG_F64, TG_SHAPE(2, 3));
    tg_tensor *w = tg_zeros(TG_F64, TG_SHAPE(2));
    tg_set_requires_grad(w, true);
    tg_tensor *on_tape = tg_mul(w, w);
    cr_expect_null(tg_rnn_stream_step(st, x));
    cr_expect(strstr(th_last_message(), "a stream step clears the tape, so call it after tg_tape_reset"), "%s", th_last_message());
    cr_expect_not_null(on_tape);
    cr_expect_eq(tg_tape_records(), 1, "the user's tape was left alone");
    tg_tape_reset();
    th_reset_errors();
    cr_expect_not_null(tg_rnn_stream_step(st, x));
    cr_expect_eq(tg_rnn_stream_reset_row(st, 2), -1);
    cr_expect(strstr(th_last_message(), "row 2 out of range (the stream has 2 rows)"), "%s", th_last_message());
    cr_expect_null(tg_rnn_stream_state(st, 1));
    tg_rnn_stream_free(st);
    tg_rnn_stream_free(NULL);
    tg_release(x);
    tg_release(w);
    tg_rnn_free(m);
    cr_assert_eq(tg_live_tensors(), live, "tensors leaked");
}

/* ---- the commands' streams: tg_model_stream_new, `tapegrad sample` and `predict` (tools/) -------- */

/* A tg_model (2 layers, zoneout: the stream must apply its expectation) of I inputs, O outputs. */
static tg_model *small_model(const char *cell, int64_t I, int64_t O, tg_dtype dtype, double zoneout) {
    char err[256];
    tg_model_config cfg = {.input_size = I, .hidden_size = 8, .output_size = O, .layers = 2, .dtype = dtype,
                           .zoneout = zoneout};
    snprintf(cfg.cell, sizeof cfg.cell, "%s", cell);
    tg_model *m = tg_model_new(&cfg, 3, err, sizeof err);
    cr_assert_not_null(m, "%s", err);
    return m;
}

Test(stream, model_stream_equals_the_evaluation_forward_with_zoneout) {
    long live = tg_live_tensors();
    const char *cells[] = {"lstm", "gru", "rnn_tanh"};
    for (int c = 0; c < 3; c++)
        for (int f = 0; f < 2; f++) {
            tg_dtype dt = f ? TG_F32 : TG_F64;
            int64_t T = 6, B = 3, I = 4, O = 3;
            tg_model *m = small_model(cells[c], I, O, dt, 0.3);
            tg_tensor *x = th_rand(7, TG_SHAPE(T, B, I), -1, 1), *xd = tg_to_dtype(x, dt);
            tg_no_grad_begin();
            tg_tensor *ref = tg_copy(tg_model_forward(m, xd, true, NULL, NULL)); /* [T·B, O] */
            tg_no_grad_end();
            tg_tape_reset();
            tg_rnn_stream *st = tg_model_stream_new(m, B), *plain = tg_rnn_stream_new(m->rnn, m->head, B);
            cr_assert(st && plain, "%s", tg_last_error());
            double worst = 0, without = 0;
            for (int64_t t = 0; t < T; t++) {
                tg_tensor *xt = row_at(xd, t), *want = tg_view_range(ref, t * B, (t + 1) * B);
                worst = fmax(worst, th_scaled_diff(tg_rnn_stream_step(st, xt), want));
                without = fmax(without, th_scaled_diff(tg_rnn_stream_step(plain, xt), want));
                tg_release(xt);
                tg_release(want);
            }
            cr_expect_leq(worst, f ? 1e-6 : 1e-12, "%s %s: %g", cells[c], tg_dtype_name(dt), worst);
            cr_expect_gt(without, 1e-3, "%s: without zoneout the stream must differ (%g)", cells[c], without);
            tg_rnn_stream_free(st);
            tg_rnn_stream_free(plain);
            tg_release(ref);
            tg_release(x);
            tg_release(xd);
            tg_model_free(m);
        }
    th_record_errors();
    cr_expect_null(tg_model_stream_new(NULL, 1));
    cr_expect(strstr(th_last_message(), "model is NULL"), "%s", th_last_message());
    tg_model *m = small_model("gru", 2, 2, TG_F64, 0);
    tg_rnn_stream *st = tg_model_stream_new(m, 1);
    th_reset_errors();
    cr_expect_eq(tg_rnn_stream_set_zoneout(st, 1.5, 0), -1);
    cr_expect(strstr(th_last_message(), "zoneout_h 1.5, zoneout_c 0: each must be in [0, 1]"), "%s", th_last_message());
    tg_rnn_stream_free(st);
    tg_model_free(m);
    cr_assert_eq(tg_live_tensors(), live, "tensors leaked");
}

/* `tapegrad sample` before it streamed: the whole prime through tg_model_forward, then one character
 * per forward with the state carried (tg_rnn_carry), the tape reset after each. */
static void sample_with_the_runner(const tg_model *m, const unsigned char *vocab, int V, const char *prime,
                                   int length, double temperature, uint64_t seed, char *out) {
    tg_rng rng;
    tg_rng_seed(&rng, seed);
    tg_rnn_carry carry = {0};
    size_t np = strlen(prime), used = 0;
    double *x = calloc(np * (size_t)V, sizeof *x), prob[64];
    for (size_t k = 0; k < np; k++) {
        x[k * (size_t)V + (size_t)((const unsigned char *)memchr(vocab, prime[k], (size_t)V) - vocab)] = 1;
        out[used++] = prime[k];
    }
    int64_t steps = (int64_t)np;
    for (int c = 0; c < length; c++) {
        tg_no_grad_begin();
        tg_tensor *xt = tg_from_f64(m->cfg.dtype, TG_SHAPE(steps, 1, V), x);
        tg_tensor *logits = tg_model_forward(m, xt, true, &carry, NULL);
        cr_assert_not_null(logits, "%s", tg_last_error());
        double mx = -INFINITY, sum = 0;
        for (int k = 0; k < V; k++) mx = fmax(mx, prob[k] = tg_get(logits, (steps - 1) * V + k) / temperature);
        for (int k = 0; k < V; k++) sum += (prob[k] = exp(prob[k] - mx));
        double u = tg_rng_uniform(&rng) * sum;
        int pick = V - 1;
        for (int k = 0; k < V; k++) {
            if (u < prob[k]) { pick = k; break; }
            u -= prob[k];
        }
        out[used++] = (char)vocab[pick];
        memset(x, 0, (size_t)V * sizeof *x);
        x[pick] = 1;
        steps = 1;
        tg_release(xt);
        tg_no_grad_end();
        tg_tape_reset();
    }
    out[used] = 0;
    tg_rnn_carry_clear(&carry);
    free(x);
}


Test(stream, sample_streams_the_runners_text) {
    long live = tg_live_tensors();
    const unsigned char vocab[] = "\n .Tabcdeghilmnorstw";
    int V = (int)sizeof vocab - 1;
    for (int f = 0; f < 2; f++) {
        tg_model *m = small_model(f ? "lstm" : "gru", V, V, f ? TG_F32 : TG_F64, 0.1);
        for (int len = 40; len <= 400; len *= 10) {
            char got[512], want[512];
            cr_assert_eq(charlm_sample(m, vocab, V, "The cat", len, 0.8, 3, got, sizeof got), 0, "%s", tg_last_error());
            sample_with_the_runner(m, vocab, V, "The cat", len, 0.8, 3, want);
            cr_expect_str_eq(got, want, "%s: the streamed sample differs from the runner's", m->cfg.cell);
        }
        tg_model_free(m);
    }
    cr_assert_eq(tg_live_tensors(), live, "tensors leaked");
}

Test(stream, sample_allocates_nothing_per_character) {
    SKIP_UNLESS_COUNTING();
#if COUNT_MALLOC
    const unsigned char vocab[] = "\n .Tabcdeghilmnorstw";
    int V = (int)sizeof vocab - 1;
    tg_model *m = small_model("lstm", V, V, TG_F32, 0.1);
    char *buf = malloc(4096);
    long short_run, long_run, runner_short, runner_long;
    /* after one run has filled the pools, the allocations are those of setting the stream up: as many
     * for 2000 characters as for 20 (the taped runner's grow with the length: the check can fail) */
    charlm_sample(m, vocab, V, "The", 20, 0.8, 1, buf, 4096);
    COUNTED(short_run, charlm_sample(m, vocab, V, "The", 20, 0.8, 1, buf, 4096));
    COUNTED(long_run, charlm_sample(m, vocab, V, "The", 2000, 0.8, 1, buf, 4096));
    cr_expect_eq(long_run, short_run, "%ld allocations for 2000 characters, %ld for 20", long_run, short_run);
    cr_expect_gt(short_run, 0, "the counter saw the stream's set-up");
    sample_with_the_runner(m, vocab, V, "The", 20, 0.8, 1, buf);
    COUNTED(runner_short, sample_with_the_runner(m, vocab, V, "The", 20, 0.8, 1, buf));
    COUNTED(runner_long, sample_with_the_runner(m, vocab, V, "The", 2000, 0.8, 1, buf));
    cr_expect_gt(runner_long, runner_short + 1000, "the runner: %ld allocations for 2000, %ld for 20", runner_long, runner_short);
    free(buf);
    tg_model_free(m);
#endif
}

/* N sequences of lengths 3 + (n·7 mod span) as CSV (seq,a,b,label): label = n mod 2 at every row;
 * half of them validate (data_src's split). */
static void write_ragged_csv(const char *path, int N, int span) {
    FILE *f = fopen(path, "w");
    cr_assert_not_null(f, "%s", path);
    fprintf(f, "seq,a,b,label\n");
    tg_rng rng;
    tg_rng_seed(&rng, 11);
    for (int n = 0; n < N; n++)
        for (int t = 0; t < 3 + (n * 7) % span; t++)
            fprintf(f, "%d,%.6f,%.6f,%d\n", n, tg_rng_uniform(&rng) + 0.3 * (n % 2), tg_rng_uniform(&rng), n % 2);
    cr_assert_eq(fclose(f), 0);
}

static data_src *ragged_src(const char *path, const char *target, tg_dtype dtype) {
    char err[256];
    data_src *d = data_src_new(&(data_opts){.path = path, .target = target, .seq_column = "seq", .label_column = "label",
                                            .val = 0.5, .classes = 2, .dtype = dtype, .seed = 1},
                               err, sizeof err);
    cr_assert_not_null(d, "%s", err);
    return d;
}

Test(stream, predict_streams_ragged_sequences_like_the_runner) {
    long live = tg_live_tensors();
    char path[64], path_long[64];
    snprintf(path, sizeof path, "/tmp/tg_stream_%d.csv", (int)getpid());
    snprintf(path_long, sizeof path_long, "/tmp/tg_stream_long_%d.csv", (int)getpid());
    write_ragged_csv(path, 40, 15);
    write_ragged_csv(path_long, 40, 600);
    const char *targets[] = {"class", "tag"};
    for (int k = 0; k < 4; k++) {
        tg_dtype dt = k % 2 ? TG_F32 : TG_F64;
        bool every = k >= 2;
        tg_model *m = small_model("lstm", 2, 2, dt, 0.2);
        data_src *d = ragged_src(path, targets[every], dt);
        char err[256];
        data_pred o;
        cr_assert_eq(data_predict(d, m, DATA_VAL, &o, err, sizeof err), 0, "%s", err);
        /* reference: the runner over the padded batch, each sequence's last step (or every real step) */
        const tg_dataset *ds = data_part_set(d, DATA_VAL);
        int64_t N = tg_dataset_size(ds), idx[64];
        cr_assert(N >= 15 && N <= 25, "%lld validation sequences", (long long)N);
        for (int64_t n = 0; n < N; n++) idx[n] = n;
        tg_batch bb = {0};
        cr_assert_eq(tg_batch_make(ds, idx, N, dt, &bb, err, sizeof err), 0, "%s", err);
        tg_no_grad_begin();
        tg_tensor *ref = tg_copy(tg_model_forward_len(m, bb.x, bb.lengths, every, NULL, NULL));
        tg_no_grad_end();
        tg_tape_reset();
        double worst = 0, scale = 1;
        for (int64_t n = 0; n < N; n++)
            for (int64_t t = 0; t < (every ? bb.lengths[n] : 1); t++)
                for (int64_t j = 0; j < 2; j++) {
                    double want = tg_get(ref, ((every ? t * N : 0) + n) * 2 + j);
                    worst = fmax(worst, fabs(o.v[(o.offset[n] + t) * 2 + j] - want));
                    scale = fmax(scale, fabs(want));
                }
        cr_expect_leq(worst / scale, dt == TG_F64 ? 1e-12 : 1e-6, "%s %s: %g", targets[every], tg_dtype_name(dt), worst);
        int64_t rows = 0;
        for (int64_t n = 0; n < N; n++) rows += every ? bb.lengths[n] : 1;
        cr_expect_eq(o.offset[N], rows);
        tg_release(ref);
        tg_batch_clear(&bb);
        data_pred_clear(&o);
        data_src_free(d);
        tg_model_free(m);
    }
    remove(path);
    remove(path_long);
    cr_assert_eq(tg_live_tensors(), live, "tensors leaked");
}

Test(stream, predict_allocates_nothing_per_step) {
    SKIP_UNLESS_COUNTING();
#if COUNT_MALLOC
    char path[64], path_long[64], err[256];
    snprintf(path, sizeof path, "/tmp/tg_stream_short_%d.csv", (int)getpid());
    snprintf(path_long, sizeof path_long, "/tmp/tg_stream_long_%d.csv", (int)getpid());
    write_ragged_csv(path, 40, 15);
    write_ragged_csv(path_long, 40, 600); /* n·7 mod 600 for n < 40: up to 276 steps */
    const char *targets[] = {"class", "tag"};
    for (int every = 0; every < 2; every++) {
        tg_model *m = small_model("lstm", 2, 2, TG_F32, 0.2);
        data_src *d = ragged_src(path, targets[every], TG_F32), *dl = ragged_src(path_long, targets[every], TG_F32);
        data_pred o;
        long short_run, long_run;
        /* sequences of up to 17 steps, then up to 276: the allocations do not grow with the length (the
         * taped runner's do: 1672 then 23580 for class, 1044 then 14798 for tag, measured; the pools start empty) */
        tg_pool_trim();
        COUNTED(short_run, data_predict(d, m, DATA_VAL, &o, err, sizeof err));
        data_pred_clear(&o);
        COUNTED(long_run, data_predict(dl, m, DATA_VAL, &o, err, sizeof err));
        data_pred_clear(&o);
        cr_expect_leq(long_run, short_run, "%s: %ld allocations for sequences up to 276 steps, %ld up to 17",
                      targets[every], long_run, short_run);
        cr_expect_gt(short_run, 0, "the counter saw the set-up");
        data_src_free(dl);
        data_src_free(d);
        tg_model_free(m);
    }
    remove(path);
    remove(path_long);
#endif
}
