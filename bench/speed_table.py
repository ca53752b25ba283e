#!/usr/bin/env python3
"""The table of docs/speed.md in one command: one LSTM (or GRU) training step on one core, tapegrad
(build/bench/bench_lstm) against PyTorch's nn.LSTM (bench/pytorch_lstm.py) and, when it was built,
oneDNN's fused RNN primitive (build/bench/bench_onednn), on the shapes of issue 14.

Every round runs each program once per shape, one after the other (interleaved, so a busy moment
of a shared machine hits all of them alike), pinned to one CPU with taskset. A program's figure is
the median over rounds of its per-run median thread/process CPU time per step; a ratio is the median
of the per-round ratios. FLOP per step = 3 * T * 2 * B * (I + H) * G * H (forward, and the two
backward products, of the input and the recurrent GEMMs); "of peak" divides the achieved rate by
--peak (GFLOP/s of one core, e.g. measured with an FMA probe; omitted when not given).

usage: python3 bench/speed_table.py [--build build] [--rounds 3] [--steps 10] [--cpu 1]
         [--peak 114] [--cell lstm|gru] [--openblas DIR] [--shapes I,H,B,T ...] [--no-torch]
         [--python /usr/bin/python3]
  --openblas DIR   LD_LIBRARY_PATH for PyTorch (Debian's torch uses whatever libblas.so.3 it finds;
                   e.g. an OpenBLAS unpacked from libopenblas0-pthread with dpkg -x)
"""
import argparse
import json
import os
import re
import statistics
import subprocess
import sys

ISSUE_SHAPES = ["64,128,32,64", "32,256,16,100", "16,64,1,50", "128,512,64,32", "128,256,32,100"]
LINE = re.compile(r"cpu median ([\d.]+) ms")


def run(cmd, env=None):
    p = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if p.returncode != 0:
        sys.exit(f"speed_table: {' '.join(cmd)} failed ({p.returncode}): {p.stderr.strip()[-400:]}")
    return p.stdout


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--build", default="build")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--cpu", default="1", help="the CPU to pin every program to (taskset -c)")
    ap.add_argument("--peak", type=float, default=0.0, help="FP32 GFLOP/s of one core")
    ap.add_argument("--cell", choices=["lstm", "gru"], default="lstm")
    ap.add_argument("--openblas", default="")
    ap.add_argument("--shapes", nargs="+", default=ISSUE_SHAPES)
    ap.add_argument("--no-torch", action="store_true")
    ap.add_argument("--python", default="/usr/bin/python3", help="a Python with torch (default /usr/bin/python3)")
    a = ap.parse_args()
    if a.rounds < 1 or a.steps < 1:
        sys.exit("speed_table: --rounds and --steps must be at least 1")
    shapes = []
    for s in a.shapes:
        try:
            v = [int(x) for x in s.split(",")]
        except ValueError:
            v = []
        if len(v) != 4 or min(v) < 1:
            sys.exit(f"speed_table: shape '{s}': expected I,H,B,T (four positive integers)")
        shapes.append(v)
    here = os.path.dirname(os.path.abspath(__file__))
    tg = os.path.join(a.build, "bench", "bench_lstm")
    dnnl = os.path.join(a.build, "bench", "bench_onednn")
    if not os.path.exists(tg):
        sys.exit(f"speed_table: {tg} not found (ninja -C {a.build})")
    have_dnnl = os.path.exists(dnnl)
    torch = not a.no_torch and a.cell == "lstm"  # bench/pytorch_lstm.py times nn.LSTM
    env = dict(os.environ)
    if a.openblas:
        env["LD_LIBRARY_PATH"] = a.openblas + (":" + env["LD_LIBRARY_PATH"] if env.get("LD_LIBRARY_PATH") else "")
    pin = ["taskset", "-c", a.cpu]
    G = 4 if a.cell == "lstm" else 3
    res = {tuple(s): {"tg": [], "torch": [], "dnnl": []} for s in shapes}
    blas = ""
    for r in range(a.rounds):
        for s in shapes:
            I, H, B, T = s
            dims = [str(I), str(H), str(B), str(T), str(a.steps)]
            out = run(pin + [tg] + dims + ["f32", a.cell])
            res[tuple(s)]["tg"].append(float(LINE.search(out).group(1)))
            if torch:
                out = run(pin + [a.python, os.path.join(here, "pytorch_lstm.py"), "--I", dims[0], "--H", dims[1],
                                 "--B", dims[2], "--T", dims[3], "--steps", dims[4]], env)
                j = json.loads(out.strip().splitlines()[-1])
                blas = j["blas"]
                res[tuple(s)]["torch"].append(j["cpu_median_ms"])
            if have_dnnl:
                out = run(pin + [dnnl] + dims + [a.cell])
                res[tuple(s)]["dnnl"].append(float(LINE.search(out).group(1)))
        print(f"round {r + 1}/{a.rounds} done", file=sys.stderr, flush=True)

    def ratio(x, y):
        return statistics.median(p / q for p, q in zip(x, y))

    peak = f" of {a.peak:g} GFLOP/s" if a.peak else ""
    head = f"| I,H,B,T | tapegrad ms | GFLOP/s | of peak |"
    sep = "|---|---:|---:|---:|"
    if torch:
        head += " torch ms | tapegrad/torch |"
        sep += "---:|---:|"
    if have_dnnl:
        head += " oneDNN ms | oneDNN of peak | tapegrad/oneDNN |"
        sep += "---:|---:|---:|"
    print(f"{a.cell} training step, one core (CPU {a.cpu}), CPU-time medians over {a.rounds} interleaved rounds "
          f"of {a.steps} steps{peak}")
    if torch:
        print(f"torch BLAS: {blas}")
    print(head)
    print(sep)
    for s in shapes:
        I, H, B, T = s
        d = res[tuple(s)]
        flop = 3.0 * T * 2.0 * B * (I + H) * G * H
        t = statistics.median(d["tg"])
        rate = flop / (t * 1e-3) / 1e9
        row = f"| {I},{H},{B},{T} | {t:.3f} | {rate:.1f} | {100 * rate / a.peak:.0f} % |" if a.peak else \
              f"| {I},{H},{B},{T} | {t:.3f} | {rate:.1f} | - |"
        if torch:
            row += f" {statistics.median(d['torch']):.3f} | {ratio(d['tg'], d['torch']):.2f} |"
        if have_dnnl:
            dm = statistics.median(d["dnnl"])
            dp = f"{100 * flop / (dm * 1e-3) / 1e9 / a.peak:.0f} %" if a.peak else "-"
            row += f" {dm:.3f} | {dp} | {ratio(d['tg'], d['dnnl']):.2f} |"
        print(row)


if __name__ == "__main__":
    main()
