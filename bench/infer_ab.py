#!/usr/bin/env python3
"""Interleaved A/B rounds of streaming inference: `tapegrad bench --mode infer` (A) against
bench/pytorch_infer.py (B, torch.no_grad, nn.LSTM / nn.GRU step by step, one thread).

Each round runs A then B (odd rounds B then A, so that neither always runs first) for every cell, and
forms the per-pair ratios A/B of the B=1 step latency and of the B=--B block time (T steps). The
figures printed are the median over rounds of those ratios (< 1: tapegrad faster), next to each side's
median latency and tokens/s, and tapegrad's GFLOP/s at B=--B as a fraction of --peak.

usage: nice -n 19 /usr/bin/python3 bench/infer_ab.py [--tapegrad build/tools/tapegrad] [--rounds 5]
         [--cells lstm,gru] [--I 64 --H 128 --B 32 --T 50 --steps 10] [--peak 114] [--openblas DIR]
  --openblas DIR   LD_LIBRARY_PATH for PyTorch (Debian's torch uses whatever libblas.so.3 it finds;
                   docs/speed.md says how to unpack OpenBLAS without installing it)
Prints one line per round and a markdown table.
"""
import json
import os
import subprocess
import sys

from bench_common import add_shape_args, median, parser

HERE = os.path.dirname(os.path.abspath(__file__))


def run_json(cmd, env):
    out = subprocess.run(cmd, env=env, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main():
    ap = parser(__doc__)
    ap.add_argument("--tapegrad", default=os.path.join(HERE, "..", "build", "tools", "tapegrad"))
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--cells", default="lstm,gru")
    add_shape_args(ap, I=64, H=128, B=32, T=50, steps=10)
    ap.add_argument("--peak", type=float, default=114.0, help="FP32 FMA peak of one core, GFLOP/s")
    ap.add_argument("--openblas", default="")
    a = ap.parse_args()
    if a.rounds < 3:
        sys.exit("infer_ab: --rounds must be at least 3")
    shape = ["--I", str(a.I), "--H", str(a.H), "--B", str(a.B), "--T", str(a.T), "--steps", str(a.steps)]
    env = dict(os.environ)
    torch_env = dict(env)
    if a.openblas:
        torch_env["LD_LIBRARY_PATH"] = a.openblas + (":" + env["LD_LIBRARY_PATH"] if env.get("LD_LIBRARY_PATH") else "")
    rows = []
    for cell in a.cells.split(","):
        A = [a.tapegrad, "bench", "--mode", "infer", "--cell", cell] + shape
        B = [sys.executable, os.path.join(HERE, "pytorch_infer.py"), "--cell", cell] + shape
        pairs = []
        for r in range(a.rounds):
            if r % 2 == 0:
                ja, jb = run_json(A, env), run_json(B, torch_env)
            else:
                jb, ja = run_json(B, torch_env), run_json(A, env)
            pairs.append((ja, jb))
            print(f"round {r + 1} {cell}: B=1 {ja['latency_us_b1']:.2f} vs {jb['latency_us_b1']:.2f} us, "
                  f"B={a.B} {ja['tokens_per_s']:.0f} vs {jb['tokens_per_s']:.0f} tokens/s", flush=True)
        lat_ratio = median([ja["latency_us_b1"] / jb["latency_us_b1"] for ja, jb in pairs])
        blk_ratio = median([ja["block_ms"] / jb["block_ms"] for ja, jb in pairs])
        rows.append((cell, median([p[0]["latency_us_b1"] for p in pairs]), median([p[1]["latency_us_b1"] for p in pairs]),
                     lat_ratio, median([p[0]["tokens_per_s"] for p in pairs]), median([p[1]["tokens_per_s"] for p in pairs]),
                     blk_ratio, median([p[0]["gflops"] for p in pairs]), median([p[0]["gflops_b1"] for p in pairs]),
                     pairs[0][1].get("blas", "?")))
    print(f"\nI={a.I} H={a.H} T={a.T} F32, one thread, {a.rounds} interleaved rounds; ratios = median of per-pair "
          f"tapegrad/torch times (< 1: tapegrad faster); peak {a.peak:g} GFLOP/s")
    print(f"| cell | B=1 us/step tapegrad | torch | ratio | B={a.B} tokens/s tapegrad | torch | time ratio | "
          f"tapegrad GFLOP/s B={a.B} (of peak) | B=1 (of peak) |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for cell, la, lb, lr, ta, tb, br, gf, gf1, blas in rows:
        print(f"| {cell} | {la:.2f} | {lb:.2f} | {lr:.3f} | {ta:.0f} | {tb:.0f} | {br:.3f} | {gf:.1f} ({gf / a.peak:.1%}) | "
              f"{gf1:.1f} ({gf1 / a.peak:.1%}) |")
    print(f"torch BLAS: {rows[0][-1]}")


if __name__ == "__main__":
    main()
