/* bench/bench_tape.c - what the tape itself costs: nanoseconds per small op, forward + backward,
 * measured on tensors so small (8 elements) that the arithmetic is negligible, plus the same chain on
 * [32,256] tensors where the kernels dominate. Run with `meson test -C build --benchmark` or directly:
 * ./build/bench/bench_tape */
#include <stdio.h>

#include <tapegrad/tapegrad.h>

#include "bench_common.h"

/* One step: 8 recorded ops (mul, add, tanh, sigmoid, mul, sub, pow, mean) then backward and reset. */
static int chain(tg_tensor *x, tg_tensor *w, tg_tensor *b, bool backward) {
    tg_tensor *h = tg_tanh(tg_add(tg_mul(x, w), b));
    tg_tensor *g = tg_sigmoid(h);
    tg_tensor *loss = tg_mean(tg_pow_scalar(tg_sub(tg_mul(g, h), x), 2.0));
    if (backward) tg_backward(loss);
    tg_tape_reset();
    return 8;
}

static void run(tg_dtype dt, int64_t rows, int64_t cols, bool backward) {
    tg_tensor *x = tg_rand_uniform(NULL, dt, TG_SHAPE(rows, cols), -1, 1);
    tg_tensor *w = tg_rand_uniform(NULL, dt, TG_SHAPE(rows, cols), -1, 1);
    tg_tensor *b = tg_rand_uniform(NULL, dt, TG_SHAPE(cols), -1, 1);
    tg_set_requires_grad(w, true);
    tg_set_requires_grad(b, true);
    for (int i = 0; i < 1000; i++) chain(x, w, b, backward); /* warm the buffer pools */
    long iters = 0, ops = 0;
    double t0 = bench_wall_now(), t1;
    do {
        for (int i = 0; i < 1000; i++) { ops += chain(x, w, b, backward); iters++; }
        t1 = bench_wall_now();
    } while (t1 - t0 < 0.5);
    printf("  %-4s [%3lld,%3lld]  %-18s %8.1f ns/op   (%ld steps of 8 ops)\n", dt == TG_F32 ? "f32" : "f64",
           (long long)rows, (long long)cols, backward ? "forward+backward" : "forward only", 1e9 * (t1 - t0) / (double)ops,
           iters);
    tg_release(x);
    tg_release(w);
    tg_release(b);
}

int main(void) {
    printf("tape cost per op (each op: allocate from the pool, compute, record; backward: one reverse loop)\n");
    run(TG_F32, 1, 8, false);
    run(TG_F32, 1, 8, true);
    run(TG_F64, 1, 8, true);
    run(TG_F32, 32, 256, true);
    run(TG_F64, 32, 256, true);
    return 0;
}
