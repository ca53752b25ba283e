#!/usr/bin/env python3
"""PyTorch reference for `tapegrad bench`: the time of one LSTM training step on one CPU thread.

One step = forward of nn.LSTM (PyTorch's fused module: one input-projection GEMM per layer, the
recurrent loop in C++) over T steps, MSE against a fixed random target on every output, backward
(BPTT), one Adam update -- the same work as `tapegrad bench --cell lstm`.

usage: /usr/bin/python3 bench/pytorch_lstm.py [--I 128 --H 256 --B 32 --T 100 --steps 20 --warmup 3
                                               --dtype f32|f64 --threads 1]
Prints a summary and, as its last line, one JSON object (median/min/max ms per step).
"""
import json
import time

import torch

import bench_common


def main():
    ap = bench_common.parser(__doc__)
    bench_common.add_shape_args(ap, I=128, H=256, B=32, T=100, steps=20, warmup=3)
    bench_common.add_torch_args(ap)
    a = ap.parse_args()

    dt = bench_common.torch_setup(a)
    lstm = torch.nn.LSTM(a.I, a.H, num_layers=1).to(dt)
    x = torch.randn(a.T, a.B, a.I, dtype=dt)
    target = 0.5 * torch.randn(a.T, a.B, a.H, dtype=dt)
    opt = torch.optim.Adam(lstm.parameters(), lr=1e-3)

    def step():
        y, _ = lstm(x)
        loss = torch.nn.functional.mse_loss(y, target)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return loss.item()

    # Wall clock and the process CPU clock (all threads: a BLAS could start its own); the
    # CPU time is the steadier figure on a machine shared with other jobs (see bench/bench_lstm.c).
    ms, cpu = [], []
    loss0 = loss = None
    for i in range(a.warmup + a.steps):
        t0, c0 = time.perf_counter(), time.process_time()
        loss = step()
        t1, c1 = time.perf_counter(), time.process_time()
        if i == 0:
            loss0 = loss
        if i >= a.warmup:
            ms.append(1e3 * (t1 - t0))
            cpu.append(1e3 * (c1 - c0))
    ms.sort()
    cpu.sort()
    n = len(ms)
    median, cpu_median = bench_common.median(ms), bench_common.median(cpu)
    G = 4
    flops = 3.0 * a.T * 2.0 * a.B * (a.I + a.H) * G * a.H
    blas = bench_common.blas_loaded()
    print(f"pytorch {torch.__version__} nn.LSTM: I={a.I} H={a.H} B={a.B} T={a.T} {a.dtype} "
          f"{torch.get_num_threads()} thread(s), BLAS {blas}")
    print(f"  median {median:.3f} ms   min {ms[0]:.3f}   max {ms[-1]:.3f}   over {n} steps after {a.warmup} warm-up")
    print(f"  process CPU time: median {cpu_median:.3f} ms   min {cpu[0]:.3f}")
    print(f"  {flops / (median * 1e-3) / 1e9:.2f} GFLOP/s  (3*T*2*B*(I+H)*G*H = {flops / 1e9:.3f} GFLOP per step)")
    print(f"  loss {loss0:.5f} at the first step, {loss:.5f} at the last")
    print(json.dumps({"impl": "pytorch", "torch": torch.__version__, "blas": blas, "dtype": a.dtype, "I": a.I,
                      "H": a.H, "B": a.B, "T": a.T, "threads": torch.get_num_threads(), "steps": n,
                      "median_ms": round(median, 4), "min_ms": round(ms[0], 4), "max_ms": round(ms[-1], 4),
                      "cpu_median_ms": round(cpu_median, 4), "cpu_min_ms": round(cpu[0], 4),
                      "gflops": round(flops / (median * 1e-3) / 1e9, 4)}))


if __name__ == "__main__":
    main()
