#!/usr/bin/env python3
"""PyTorch reference for `tapegrad bench --mode infer`: streaming inference, one time step at a time.

A one-layer torch.nn.LSTM or nn.GRU (PyTorch's fused module) under torch.no_grad(), on one thread,
fed one time step [1, B, I] per call with its state carried from call to call -- the same work as
tg_rnn_stream_step (x_t W_ih^T + b_ih, h W_hh^T + b_hh, the gates; no head):
  - latency: each of steps*T single steps at B = 1 timed alone, median in microseconds;
  - throughput: blocks of T steps at B = --B, tokens/s = B*T / the median block time.
GFLOP/s counts the two products, 2*B*(I+H)*G*H per step (G = 4 for LSTM, 3 for GRU).

usage: /usr/bin/python3 bench/pytorch_infer.py [--cell lstm|gru --I 64 --H 128 --B 32 --T 50
                                                --steps 20 --warmup 2 --dtype f32|f64 --threads 1]
Prints a summary and, as its last line, one JSON object with the fields tapegrad's JSON has.
Debian's torch uses whatever libblas.so.3 the loader finds; LD_LIBRARY_PATH=.../openblas-pthread
gives it OpenBLAS (docs/speed.md). The BLAS actually loaded is printed.
"""
import json
import time

import torch

import bench_common


def main():
    ap = bench_common.parser(__doc__)
    ap.add_argument("--cell", choices=["lstm", "gru"], default="lstm")
    bench_common.add_shape_args(ap, I=64, H=128, B=32, T=50, steps=10, warmup=2)
    bench_common.add_torch_args(ap)
    a = ap.parse_args()

    dt = bench_common.torch_setup(a)
    mod = (torch.nn.LSTM if a.cell == "lstm" else torch.nn.GRU)(a.I, a.H, num_layers=1).to(dt).eval()
    G = 4 if a.cell == "lstm" else 3
    x1 = torch.randn(1, 1, a.I, dtype=dt)
    xb = torch.randn(1, a.B, a.I, dtype=dt)

    lat, blk = [], []
    with torch.no_grad():
        state = None
        for i in range(a.warmup * a.T + a.steps * a.T):
            t0 = time.perf_counter()
            y, state = mod(x1, state)
            t1 = time.perf_counter()
            if i >= a.warmup * a.T:
                lat.append(1e6 * (t1 - t0))
        check = float(y[0, 0, 0])
        for i in range(a.warmup + a.steps):
            state = None
            t0 = time.perf_counter()
            for _ in range(a.T):
                y, state = mod(xb, state)
            t1 = time.perf_counter()
            if i >= a.warmup:
                blk.append(t1 - t0)

    us, block = bench_common.median(lat), bench_common.median(blk)
    flops1 = 2.0 * (a.I + a.H) * G * a.H
    tokens = a.B * a.T / block
    blas = bench_common.blas_loaded()
    print(f"pytorch {torch.__version__} nn.{a.cell.upper()} under no_grad, step by step: I={a.I} H={a.H} {a.dtype} "
          f"{torch.get_num_threads()} thread(s), BLAS {blas}")
    print(f"  B=1:  median {us:.2f} us per step (min {min(lat):.2f}, over {len(lat)} steps)   "
          f"{1e6 / us:.0f} steps/s   {flops1 / (us * 1e-6) / 1e9:.2f} GFLOP/s")
    print(f"  B={a.B}: median {1e3 * block:.3f} ms per {a.T} steps (min {1e3 * min(blk):.3f}, over {len(blk)} blocks)   "
          f"{tokens:.0f} tokens/s   {flops1 * a.B * a.T / block / 1e9:.2f} GFLOP/s")
    print(json.dumps({"mode": "infer", "impl": "pytorch", "cell": a.cell, "dtype": a.dtype.upper(), "I": a.I, "H": a.H,
                      "B": a.B, "T": a.T, "threads": torch.get_num_threads(), "steps": a.steps, "warmup": a.warmup,
                      "latency_us_b1": round(us, 4), "latency_min_us_b1": round(min(lat), 4),
                      "gflops_b1": round(flops1 / (us * 1e-6) / 1e9, 4), "block_ms": round(1e3 * block, 4),
                      "tokens_per_s": round(tokens, 1), "gflops": round(flops1 * a.B * a.T / block / 1e9, 4),
                      "check": check, "torch": torch.__version__, "blas": blas}))


if __name__ == "__main__":
    main()
