/* tools/cmd_bench.c - `tapegrad bench`: the time of one training step of a recurrent layer.
 *
 * One step = forward over T steps, MSE against a fixed random target on every output, backprop
 * through time, one Adam update. --impl tape runs the generic runner and the tape; --impl manual the
 * hand-derived BPTT of manual.h on the same parameters (its gradients are handed to the same Adam with
 * tg_backward_with on each parameter). Dimension letters: T time, B batch, I input, H hidden, G gates.
 *
 * GFLOP/s counts the matrix products only: forward x·W_ihᵀ and h·W_hhᵀ (2·B·(I+H)·G·H per step), and
 * backward twice that (the gradients of the inputs and of the weights): 3·T·2·B·(I+H)·G·H per training
 * step, divided by the median step time. The last line printed is one JSON object. */
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

int cmd_bench(int argc, char **argv) {
    const char *cell = "lstm", *impl = "tape", *dtype = "f32";
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
    };
    const cli_cmd cmd = {"bench", "[--cell C --I N --H N --B N --T N --threads N --steps N --impl tape|manual]",
                         "Times one training step of a one-layer recurrent network: forward over T steps, MSE\n"
                         "against a fixed random target on every output, BPTT, Adam. Prints a summary and, as\n"
                         "its last line, one JSON object (median/min/max ms, GFLOP/s of the matrix products\n"
                         "3*T*2*B*(I+H)*G*H per step, peak RSS, tape bytes per step).",
                         opts, (int)(sizeof opts / sizeof opts[0]), false};
    int p = cli_parse(&cmd, argc, argv);
    if (p) return p == 1 ? TG_EXIT_OK : TG_EXIT_USAGE;
    bool manual = strcmp(impl, "manual") == 0;
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
    qsort(ms, (size_t)steps, sizeof *ms, cmp_double);
    double median = steps % 2 ? ms[steps / 2] : 0.5 * (ms[steps / 2 - 1] + ms[steps / 2]);
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
