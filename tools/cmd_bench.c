/* tools/cmd_bench.c - `tapegrad bench`: the time of one training step of a recurrent layer.
 *
 * One step = forward over T steps, MSE against a fixed random target on every output, backprop
 * through time, one Adam update. --impl tape runs the generic runner and the tape; --impl manual the
 * hand-derived BPTT of manual.h on the same parameters (its gradients are handed to the same Adam with
 * tg_backward_with on each parameter). Dimension letters: T time, B batch, I input, H hidden, G gates.
 *
 * GFLOP/s counts the matrix products only: forward x·W_ihᵀ and h·W_hhᵀ (2·B·(I+H)·G·H per step), and
 * backward twice that (the gradients of the inputs and of the weights): 3·T·2·B·(I+H)·G·H per training
 * step, divided by the median step time. The last line printed is one JSON object.
 *
 * --mode infer times streaming inference instead (tg_rnn_stream, <tapegrad/stream.h>: one time step
 * at a time, state carried, no tape, no head): the latency of one step at B = 1 (median over every
 * timed step) and the throughput at B = --B (tokens/s = B·T / the median time of T steps). Its
 * GFLOP/s counts the step's two products, 2·B·(I+H)·G·H per step. bench/pytorch_infer.py does the
 * same with torch.nn.LSTM / GRU under torch.no_grad(); bench/infer_ab.py interleaves the two. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include <tapegrad/manual.h>
#include <tapegrad/tapegrad.h>

#include "tools/cli.h"
#include "tools/commands.h"

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double peak_rss_mb(void) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_maxrss / 1024.0; /* Linux: kilobytes */
}

typedef struct bench_ctx {
    tg_rnn *rnn;
    tg_optim *opt;
    tg_tensor *x, *target;      /* [T,B,I], [T,B,H] */
    tg_tensor *h0, *c0;         /* [1,B,H] zeros (manual) */
    bool manual;
    tg_manual_cell mcell;
    size_t tape_bytes;          /* largest tape seen at the end of a forward */
    double loss;
} bench_ctx;

/* One training step; returns 0 or -1 (message pending). */
static int step_tape(bench_ctx *c) {
    tg_tensor *y = tg_rnn_forward(c->rnn, c->x, NULL, NULL);
    tg_tensor *loss = tg_mse_loss(y, c->target, TG_REDUCE_MEAN);
    if (!loss) return -1;
    size_t tb = tg_tape_bytes();
    if (tb > c->tape_bytes) c->tape_bytes = tb;
    c->loss = tg_item(loss);
    if (tg_backward(loss)) return -1;
    int s = tg_optim_step(c->opt);
    tg_optim_zero_grad(c->opt);
    tg_tape_reset();
    return s;
}

static int step_manual(bench_ctx *c) {
    const tg_cell_params *p = tg_rnn_layer(c->rnn, 0, 0);
    tg_manual_layer layer = {p->weight_ih, p->weight_hh, p->bias_ih, p->bias_hh, NULL};
    tg_manual_cache *cache = NULL;
    tg_tensor *y = tg_manual_stack_forward(c->mcell, 1, c->x, c->h0, c->c0, &layer, NULL, NULL, &cache);
    if (!y) return -1;
    /* loss = mean((y - target)²);  dy = 2 (y - target) / N */
    int64_t n = tg_numel(y);
    tg_tensor *dy = tg_copy(y);
    tg_axpy_(dy, -1.0, c->target);
    double loss = 0;
    for (int64_t i = 0; i < n; i++) {
        double d = tg_get(dy, i);
        loss += d * d;
    }
    c->loss = loss / (double)n;
    tg_scale_(dy, 2.0 / (double)n);
    tg_manual_layer g = {0};
    int s = tg_manual_stack_backward(cache, dy, NULL, NULL, &g, NULL, NULL, NULL);
    if (s == 0) {
        tg_tensor *params[4] = {p->weight_ih, p->weight_hh, p->bias_ih, p->bias_hh};
        tg_tensor *grads[4] = {g.weight_ih, g.weight_hh, g.bias_ih, g.bias_hh};
        for (int k = 0; k < 4 && s == 0; k++) s = tg_backward_with(params[k], grads[k]);
    }
    if (s == 0) s = tg_optim_step(c->opt);
    tg_optim_zero_grad(c->opt);
    tg_manual_layer_release(&g, 1);
    tg_manual_cache_free(cache);
    tg_release(dy);
    tg_release(y);
    tg_tape_reset();
    return s;
}

static double median_of(double *v, long n) {
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

/* --mode infer: per-step latency of a one-row stream, then T-step blocks of a B-row stream. */
static int bench_infer(const char *cell, const tg_cell *tc, tg_dtype dt, long I, long H, long B, long T, long threads,
                       long steps, long warmup, uint64_t seed) {
    tg_rng rng;
    tg_rng_seed(&rng, seed);
    tg_rnn_config rc = {.input_size = I, .hidden_size = H, .num_layers = 1, .dtype = dt};
    tg_rnn *rnn = tg_rnn_new(tc, &rc, &rng);
    tg_tensor *x1 = tg_rand_normal(&rng, dt, TG_SHAPE(1, I), 0, 1), *xb = tg_rand_normal(&rng, dt, TG_SHAPE(B, I), 0, 1);
    tg_rnn_stream *s1 = rnn ? tg_rnn_stream_new(rnn, NULL, 1) : NULL, *sb = rnn ? tg_rnn_stream_new(rnn, NULL, B) : NULL;
    long n1 = steps * T; /* single steps timed at B = 1 */
    double *lat = malloc((size_t)n1 * sizeof *lat), *blk = malloc((size_t)steps * sizeof *blk);
    int rc_exit = TG_EXIT_OK;
    if (!rnn || !x1 || !xb || !s1 || !sb || !lat || !blk) {
        fprintf(stderr, "tapegrad bench: setup failed: %s\n", tg_error_pending() ? tg_last_error() : "out of memory");
        rc_exit = TG_EXIT_FAIL;
        goto done;
    }
    double check = 0;
    for (long i = 0; i < warmup * T + n1; i++) {
        double t0 = cli_now();
        const tg_tensor *y = tg_rnn_stream_step(s1, x1);
        double t1 = cli_now();
        if (!y) goto failed;
        if (i >= warmup * T) lat[i - warmup * T] = 1e6 * (t1 - t0);
        check = tg_get(y, 0);
    }
    for (long i = 0; i < warmup + steps; i++) {
        double t0 = cli_now();
        for (long t = 0; t < T; t++)
            if (!tg_rnn_stream_step(sb, xb)) goto failed;
        double t1 = cli_now();
        if (i >= warmup) blk[i - warmup] = t1 - t0;
        if (tg_rnn_stream_reset(sb)) goto failed;
    }
    double us = median_of(lat, n1), block = median_of(blk, steps), G = tc->gates;
    double flops1 = 2.0 * (double)(I + H) * G * (double)H, flopsb = flops1 * (double)B * (double)T;
    double gf1 = flops1 / (us * 1e-6) / 1e9, gfb = flopsb / block / 1e9, tokens = (double)B * (double)T / block;
    printf("tapegrad bench --mode infer: %s  I=%ld H=%ld  %s  %ld thread%s  kernels %s\n", cell, I, H, tg_dtype_name(dt),
           threads, threads == 1 ? "" : "s", tg_kernel_target());
    printf("  tg_rnn_stream: one time step at a time, state carried, no tape (products 2*B*(I+H)*G*H per step)\n");
    printf("  B=1:  median %.2f us per step (min %.2f, over %ld steps)   %.0f steps/s   %.2f GFLOP/s\n", us, lat[0], n1,
           1e6 / us, gf1);
    printf("  B=%ld: median %.3f ms per %ld steps (min %.3f, over %ld blocks)   %.0f tokens/s   %.2f GFLOP/s\n", B,
           1e3 * block, T, 1e3 * blk[0], steps, tokens, gfb);
    printf("{\"mode\": \"infer\", \"cell\": \"%s\", \"dtype\": \"%s\", \"I\": %ld, \"H\": %ld, \"B\": %ld, \"T\": %ld, "
           "\"threads\": %ld, \"steps\": %ld, \"warmup\": %ld, \"latency_us_b1\": %.6g, \"latency_min_us_b1\": %.6g, "
           "\"gflops_b1\": %.4f, \"block_ms\": %.6g, \"tokens_per_s\": %.1f, \"gflops\": %.4f, \"peak_rss_mb\": %.2f, "
           "\"check\": %.6g, \"kernels\": \"%s\"}\n",
           cell, tg_dtype_name(dt), I, H, B, T, threads, steps, warmup, us, lat[0], gf1, 1e3 * block, tokens, gfb,
           peak_rss_mb(), check, tg_kernel_target());
    goto done;
failed:
    fprintf(stderr, "tapegrad bench: streaming step failed: %s\n", tg_last_error());
    rc_exit = TG_EXIT_FAIL;
done:
    free(lat);
    free(blk);
    tg_rnn_stream_free(s1);
    tg_rnn_stream_free(sb);
    tg_release(x1);
    tg_release(xb);
    tg_rnn_free(rnn);
    return rc_exit;
}

int cmd_bench(int argc, char **argv) {
    const char *cell = "lstm", *impl = "tape", *dtype = "f32", *mode = "train";
    long I = 64, H = 128, B = 32, T = 50, threads = 1, steps = 10, warmup = 2, seed = 1;
    const cli_opt opts[] = {
        {"--cell", CLI_STR, &cell, 0, 0, "lstm | gru | rnn_tanh | any registered cell (tape only)"},
        {"--I", CLI_INT, &I, 1, 65536, "input size"},
        {"--H", CLI_INT, &H, 1, 65536, "hidden size"},
        {"--B", CLI_INT, &B, 1, 65536, "batch size"},
        {"--T", CLI_INT, &T, 1, 100000, "time steps"},
        {"--threads", CLI_INT, &threads, 1, 64, "GEMM threads (tg_set_num_threads)"},
        {"--steps", CLI_INT, &steps, 1, 100000, "timed training steps"},
        {"--warmup", CLI_INT, &warmup, 0, 1000, "untimed steps first"},
        {"--impl", CLI_STR, &impl, 0, 0, "tape (generic runner + tape) | manual (hand-derived BPTT)"},
        {"--dtype", CLI_STR, &dtype, 0, 0, "f32 | f64"},
        {"--seed", CLI_INT, &seed, 0, 2147483647, "seed of weights, input and target"},
        {"--mode", CLI_STR, &mode, 0, 0, "train (one training step) | infer (streaming: latency at B=1, tokens/s at --B)"},
    };
    const cli_cmd cmd = {"bench", "[--cell C --I N --H N --B N --T N --threads N --steps N --impl tape|manual --mode train|infer]",
                         "Times one training step of a one-layer recurrent network: forward over T steps, MSE\n"
                         "against a fixed random target on every output, BPTT, Adam. Prints a summary and, as\n"
                         "its last line, one JSON object (median/min/max ms, GFLOP/s of the matrix products\n"
                         "3*T*2*B*(I+H)*G*H per step, peak RSS, tape bytes per step).\n"
                         "--mode infer times streaming inference (tg_rnn_stream, no tape): the latency of one\n"
                         "step at B=1 over steps*T steps, and tokens/s at B=--B over blocks of T steps.",
                         opts, (int)(sizeof opts / sizeof opts[0]), false};
    int p = cli_parse(&cmd, argc, argv);
    if (p) return p == 1 ? TG_EXIT_OK : TG_EXIT_USAGE;
    bool manual = strcmp(impl, "manual") == 0, infer = strcmp(mode, "infer") == 0;
    if (!infer && strcmp(mode, "train")) return cli_fail(&cmd, "--mode must be train or infer, not '%s'", mode);
    if (infer && manual) return cli_fail(&cmd, "--mode infer streams the cell's own step: leave out --impl manual");
    if (!manual && strcmp(impl, "tape")) return cli_fail(&cmd, "--impl must be tape or manual, not '%s'", impl);
    if (strcmp(dtype, "f32") && strcmp(dtype, "f64")) return cli_fail(&cmd, "--dtype must be f32 or f64, not '%s'", dtype);
    cli_record_errors();
    const tg_cell *tc = tg_cell_by_name(cell);
    if (!tc) return cli_fail_unknown_cell(&cmd, cell);
    bench_ctx c = {.manual = manual};
    if (manual && tg_manual_cell_parse(cell, &c.mcell))
        return cli_fail(&cmd, "--impl manual exists for rnn_tanh, rnn_relu, lstm, gru and gru_reset_before only, not '%s'", cell);
    tg_dtype dt = strcmp(dtype, "f64") == 0 ? TG_F64 : TG_F32;
    tg_set_num_threads((int)threads);

    if (infer) return bench_infer(cell, tc, dt, I, H, B, T, threads, steps, warmup, (uint64_t)seed);

    tg_rnn_config rc = {.input_size = I, .hidden_size = H, .num_layers = 1, .dtype = dt};
    /* parameters, Adam's two slots, the tape (or the manual cache, about as large), x and the target */
    tg_mem_estimate est;
    if (tg_rnn_mem_estimate(tc, &rc, T, B, 2, &est)) return cli_fail(&cmd, "%s", tg_last_error());
    est.data += (double)T * (double)B * (double)H * (double)tg_itemsize(dt);
    tg_mem_sum(&est);
    if (cli_mem_guard(&cmd, &est)) return TG_EXIT_USAGE;

    tg_rng rng;
    tg_rng_seed(&rng, (uint64_t)seed);
    c.rnn = tg_rnn_new(tc, &rc, &rng);
    c.x = tg_rand_normal(&rng, dt, TG_SHAPE(T, B, I), 0, 1);
    c.target = tg_rand_normal(&rng, dt, TG_SHAPE(T, B, H), 0, 0.5);
    c.h0 = tg_zeros(dt, TG_SHAPE(1, B, H));
    c.c0 = tg_zeros(dt, TG_SHAPE(1, B, H));
    tg_optim_opts oo = tg_optim_defaults(TG_OPTIM_ADAM);
    c.opt = c.rnn ? tg_optim_new_params(TG_OPTIM_ADAM, c.rnn->params, &oo) : NULL;
    double *ms = malloc((size_t)steps * sizeof *ms);
    int rc_exit = TG_EXIT_OK;
    if (!c.rnn || !c.x || !c.target || !c.opt || !ms) {
        fprintf(stderr, "tapegrad bench: setup failed: %s\n", tg_error_pending() ? tg_last_error() : "out of memory");
        rc_exit = TG_EXIT_FAIL;
        goto done;
    }
    double loss0 = NAN;
    for (long i = 0; i < warmup + steps; i++) {
        double t0 = cli_now();
        int s = manual ? step_manual(&c) : step_tape(&c);
        double t1 = cli_now();
        if (s) {
            fprintf(stderr, "tapegrad bench: training step failed: %s\n", tg_last_error());
            rc_exit = TG_EXIT_FAIL;
            goto done;
        }
        if (i == 0) loss0 = c.loss;
        if (i >= warmup) ms[i - warmup] = 1e3 * (t1 - t0);
    }
    double median = median_of(ms, steps);
    double G = tc->gates, flops = 3.0 * (double)T * 2.0 * (double)B * (double)(I + H) * G * (double)H;
    double gflops = flops / (median * 1e-3) / 1e9, rss = peak_rss_mb();
    double tokens = (double)B * (double)T / (median * 1e-3);
    int64_t nparams = tg_params_numel(c.rnn->params);

    printf("tapegrad bench: %s  I=%ld H=%ld B=%ld T=%ld  %s  %ld thread%s  impl %s  kernels %s\n", cell, I, H, B, T,
           tg_dtype_name(dt), threads, threads == 1 ? "" : "s", impl, tg_kernel_target());
    printf("  one training step = forward over T, MSE on every output, BPTT, Adam (%lld parameters)\n",
           (long long)nparams);
    printf("  median %.3f ms   min %.3f   max %.3f   over %ld steps after %ld warm-up\n", median, ms[0], ms[steps - 1],
           steps, warmup);
    printf("  %.2f GFLOP/s  (matrix products 3*T*2*B*(I+H)*G*H = %.3f GFLOP per step)\n", gflops, flops / 1e9);
    printf("  %.0f tokens/s (B*T per step)\n", tokens);
    if (manual) printf("  tape: none (hand-derived BPTT); peak RSS %.1f MB\n", rss);
    else printf("  tape: %.2f MB per step; peak RSS %.1f MB\n", (double)c.tape_bytes / 1048576.0, rss);
    printf("  loss %.5f at the first step, %.5f at the last (it should fall)\n", loss0, c.loss);
    printf("{\"cell\": \"%s\", \"impl\": \"%s\", \"dtype\": \"%s\", \"I\": %ld, \"H\": %ld, \"B\": %ld, \"T\": %ld, "
           "\"threads\": %ld, \"steps\": %ld, \"warmup\": %ld, \"median_ms\": %.4f, \"min_ms\": %.4f, \"max_ms\": %.4f, "
           "\"gflops\": %.4f, \"tokens_per_s\": %.1f, \"peak_rss_mb\": %.2f, \"tape_bytes_per_step\": %zu, "
           "\"params\": %lld, \"loss_first\": %.6g, \"loss_last\": %.6g, \"estimate_bytes\": %.0f, \"kernels\": \"%s\"}\n",
           cell, impl, tg_dtype_name(dt), I, H, B, T, threads, steps, warmup, median, ms[0], ms[steps - 1], gflops, tokens,
           rss, manual ? (size_t)0 : c.tape_bytes, (long long)nparams, loss0, c.loss, est.total, tg_kernel_target());
done:
    free(ms);
    tg_optim_free(c.opt);
    tg_rnn_free(c.rnn);
    tg_release(c.x);
    tg_release(c.target);
    tg_release(c.h0);
    tg_release(c.c0);
    return rc_exit;
}
