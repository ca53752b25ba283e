#!/usr/bin/env python3
"""Every zoo cell's training step against its FLOP-equivalent built-in cell, one core, one command.

Runs build/bench/bench_lstm (forward over T, MSE on every output, BPTT, one Adam update; thread CPU
time per step, median of --steps) for every cell of `tapegrad cells` and for the built-in references,
interleaved: each round runs every program once, the order rotating from round to round, each pinned
to --cpu with taskset, so a busy moment of a shared machine hits all of them alike.

The FLOP-equivalent built-in of a cell with G gate blocks: lstm for G = 4, gru for G = 3 and G = 2,
rnn_relu for G = 1. A training step's GEMM work is 6·T·B·W flops, W = the matrix weights (every 2-D
parameter; bench_lstm prints W), so the equivalent time is the reference's time scaled by
W_cell / W_reference: 1 for a cell with the reference's matrices (the lstm_* family of G = 4 and
lstm_ln; gru_reset_before, mut3 and the G = 3 LSTM variants against gru), less for the G = 2 cells
(mgu: 2/3 of gru's matrices) and indrnn (no recurrent matrix), more for lstm_fgr (its 3H x 3H weight_gg)
and mut2 (its H x H weight_hn). ratio = cell time / equivalent time, the median of the per-round
ratios. The elementwise work does not scale with W, so for a cell with fewer matrices than its reference
the ratio is pessimistic (the reference's gates and state update are counted at W's scale).

mut1 and mut2 add x_t itself to an H-wide pre-activation and need I = H: they run at I = H, with their
reference at that shape too (the column "shape" says so).

Tape: bench_lstm's "tape N floats per batch x hidden and step" (tg_tape_bytes after the first forward /
(itemsize·T·B·H)); docs/speed.md ("Zoo cells") lists each cell's saved-activation minimum beside it.

--versus BUILD (another build directory, e.g. of the commit before a change): every run is paired with
the same run of BUILD's bench_lstm, back to back (which one first alternates by round), and the column
"vs" is the median of the per-round ratios this build / BUILD: an interleaved A/B of every cell.

usage: python3 bench/zoo_table.py [--build build] [--shape 128,256,32,100] [--rounds 3] [--steps 5]
         [--cpu 1] [--cells CELL ...] [--versus BUILD] [--markdown]
"""
import argparse
import os
import re
import subprocess
import sys

LINE = re.compile(r"cpu median ([\d.]+) ms.*tape ([\d.]+) floats per batch x hidden and step; matrix weights (\d+)")
MS = re.compile(r"cpu median ([\d.]+) ms")
REFERENCE = {4: "lstm", 3: "gru", 2: "gru", 1: "rnn_relu"}
NEEDS_I_EQ_H = {"mut1", "mut2"}  # make_params refuses I != H (the cell adds x_t to an H-wide sum)


def run(cmd):
    p = subprocess.run(cmd, capture_output=True, text=True)
    if p.returncode != 0:
        sys.exit(f"zoo_table: {' '.join(cmd)} failed ({p.returncode}): {p.stderr.strip()[-400:]}")
    return p.stdout


def cells_and_gates(tapegrad):
    """[(name, G)] from `tapegrad cells --markdown` (its rows: | `name` | G | S | ...)."""
    out = run([tapegrad, "cells", "--markdown"])
    rows = re.findall(r"^\| `([a-z0-9_]+)` \| (\d+) \|", out, re.M)
    if not rows:
        sys.exit("zoo_table: no cells in the output of `tapegrad cells --markdown`")
    return [(n, int(g)) for n, g in rows]


def median(v):
    v = sorted(v)
    n = len(v)
    return v[n // 2] if n % 2 else 0.5 * (v[n // 2 - 1] + v[n // 2])


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--build", default="build")
    ap.add_argument("--shape", default="128,256,32,100", help="I,H,B,T")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--cpu", default="1", help="the CPU to pin every run to (taskset -c)")
    ap.add_argument("--cells", nargs="+", help="only these cells (default: every registered cell)")
    ap.add_argument("--versus", help="another build directory: pair every run with its bench_lstm (A/B)")
    ap.add_argument("--markdown", action="store_true", help="print the table as Markdown")
    a = ap.parse_args()
    try:
        I, H, B, T = [int(x) for x in a.shape.split(",")]
    except ValueError:
        sys.exit(f"zoo_table: --shape '{a.shape}': expected I,H,B,T (four positive integers)")
    if min(I, H, B, T) < 1 or a.rounds < 1 or a.steps < 1:
        sys.exit("zoo_table: the shape, --rounds and --steps must be positive")
    bench = os.path.join(a.build, "bench", "bench_lstm")
    tapegrad = os.path.join(a.build, "tools", "tapegrad")
    other = os.path.join(a.versus, "bench", "bench_lstm") if a.versus else None
    for f in (bench, tapegrad) + ((other,) if other else ()):
        if not os.path.exists(f):
            sys.exit(f"zoo_table: {f} not found (ninja -C {a.build})")
    gates = dict(cells_and_gates(tapegrad))
    cells = a.cells or list(gates)
    for c in cells:
        if c not in gates:
            sys.exit(f"zoo_table: no cell '{c}' (tapegrad cells lists them)")

    def shape_of(cell):
        return (H, H, B, T) if cell in NEEDS_I_EQ_H else (I, H, B, T)

    # every (cell, shape) to run: the cells and their references at the cells' shapes
    jobs = []
    for c in cells:
        for job in ((c, shape_of(c)), (REFERENCE[min(gates[c], 4)], shape_of(c))):
            if job not in jobs:
                jobs.append(job)
    res = {j: [] for j in jobs}  # per round: (ms, tape, W)
    vs = {j: [] for j in jobs}  # per round: this build's ms / the other build's ms

    def one(prog, cell, s):
        out = run(["taskset", "-c", a.cpu, prog] + [str(v) for v in s] + [str(a.steps), "f32", cell])
        m = (LINE if prog == bench else MS).search(out)  # the other build's may predate the tape figure
        if not m:
            sys.exit(f"zoo_table: unexpected bench_lstm output of {prog}: {out.strip()}")
        return (float(m.group(1)), float(m.group(2)), int(m.group(3))) if prog == bench else (float(m.group(1)),)

    for r in range(a.rounds):
        k = r % len(jobs)
        for cell, s in jobs[k:] + jobs[:k]:
            if other and r % 2:
                theirs, mine = one(other, cell, s), one(bench, cell, s)
            else:
                mine = one(bench, cell, s)
                theirs = one(other, cell, s) if other else None
            res[(cell, s)].append(mine)
            if theirs:
                vs[(cell, s)].append(mine[0] / theirs[0])
    rows = []
    for c in cells:
        s = shape_of(c)
        ref = REFERENCE[min(gates[c], 4)]
        mine, theirs = res[(c, s)], res[(ref, s)]
        scale = mine[0][2] / theirs[0][2]
        ratios = [m[0] / (t[0] * scale) for m, t in zip(mine, theirs)]
        rows.append((c, gates[c], ",".join(str(v) for v in s), median([m[0] for m in mine]), ref, scale,
                     median([t[0] for t in theirs]) * scale, median(ratios), mine[0][1],
                     median(vs[(c, s)]) if other else None))
    hdr = ("cell", "G", "shape", "ms", "reference", "W/W_ref", "equivalent ms", "ratio", "tape floats/step", "vs")
    if a.markdown:
        print("| " + " | ".join(hdr[:9 + bool(other)]) + " |")
        print("|---|---:|---|---:|---|---:|---:|---:|---:|" + ("---:|" if other else ""))
        for r_ in rows:
            print(f"| {r_[0]} | {r_[1]} | {r_[2]} | {r_[3]:.2f} | {r_[4]} | {r_[5]:.3f} | {r_[6]:.2f} | {r_[7]:.3f} | "
                  f"{r_[8]:.2f} |" + (f" {r_[9]:.3f} |" if other else ""))
    else:
        print(f"{hdr[0]:<18} {hdr[1]:>2} {hdr[2]:<16} {hdr[3]:>8} {hdr[4]:<9} {hdr[5]:>7} {hdr[6]:>13} {hdr[7]:>6} "
              f"{hdr[8]:>16}" + (f" {hdr[9]:>6}" if other else ""))
        for r_ in rows:
            print(f"{r_[0]:<18} {r_[1]:>2} {r_[2]:<16} {r_[3]:>8.2f} {r_[4]:<9} {r_[5]:>7.3f} {r_[6]:>13.2f} "
                  f"{r_[7]:>6.3f} {r_[8]:>16.2f}" + (f" {r_[9]:>6.3f}" if other else ""))
    print(f"# bench_lstm thread CPU ms per training step (median of {a.steps}), {a.rounds} interleaved rounds, "
          f"taskset -c {a.cpu}; ratio = median over rounds of cell / (reference x W/W_ref); "
          + (f"vs = median over rounds of this build / {a.versus}; " if other else "") +
          f"load average {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
