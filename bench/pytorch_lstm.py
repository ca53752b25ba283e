#!/usr/bin/env python3
"""PyTorch reference for `tapegrad bench`: the time of one LSTM training step on one CPU thread.

One step = forward of nn.LSTM (PyTorch's fused module: one input-projection GEMM per layer, the
recurrent loop in C++) over T steps, MSE against a fixed random target on every output, backward
(BPTT), one Adam update -- the same work as `tapegrad bench --cell lstm`.

usage: /usr/bin/python3 bench/pytorch_lstm.py [--I 128 --H 256 --B 32 --T 100 --steps 20 --warmup 3
                                               --dtype f32|f64 --threads 1]
Prints a summary and, as its last line, one JSON object (median/min/max ms per step).
"""
import argparse
import json
import time

import torch


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--I", type=int, default=128)
    ap.add_argument("--H", type=int, default=256)
    ap.add_argument("--B", type=int, default=32)
    ap.add_argument("--T", type=int, default=100)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--dtype", choices=["f32", "f64"], default="f32")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--seed", type=int, default=1)
    a = ap.parse_args()

    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    dt = torch.float32 if a.dtype == "f32" else torch.float64
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
    median = ms[n // 2] if n % 2 else 0.5 * (ms[n // 2 - 1] + ms[n // 2])
    cpu_median = cpu[n // 2] if n % 2 else 0.5 * (cpu[n // 2 - 1] + cpu[n // 2])
    G = 4
    flops = 3.0 * a.T * 2.0 * a.B * (a.I + a.H) * G * a.H
    # The BLAS library actually mapped (BLAS_INFO says only "generic" on Debian's build, which loads
    # whatever libblas.so.3 the loader finds: netlib's reference BLAS by default, or OpenBLAS when
    # LD_LIBRARY_PATH points at it). It decides the GEMM speed, so it is reported with the figures.
    blas = "?"
    with open("/proc/self/maps") as f:
        libs = sorted({ln.split()[-1] for ln in f if "blas" in ln.split()[-1].rsplit("/", 1)[-1].lower()})
    if libs:
        blas = ",".join(libs)
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
