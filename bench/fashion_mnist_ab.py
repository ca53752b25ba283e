#!/usr/bin/python3
"""bench/fashion_mnist_ab.py - tapegrad and PyTorch trained side by side on sequential Fashion-MNIST, their
epochs interleaved (not needed by the tests; bench/fashion_mnist.sh runs it).

Starts `tapegrad train --data ... --log CSV` and bench/fashion_mnist_torch.py with the same model and
settings, and lets only one of them run at a time: the other is held with SIGSTOP. Each runs one epoch,
then is stopped as soon as the epoch ends (tapegrad: its --log row, which it flushes per epoch; torch: its
flushed "epoch E ..." line), and the other runs its epoch; the order alternates (tapegrad first in odd
epochs, torch first in even ones). For every epoch it records, per framework, the wall time it was running
(from SIGCONT to the epoch's end, polled every 10 ms) and the process CPU time of that interval (utime +
stime of every thread, /proc/PID/stat), and the load average. After the last epoch each finishes its test
evaluation in turn. Writes the figures as JSON lines to OUT and a summary on stdout.

--mode together runs both at once instead (each sees the same load at the same time; on a loaded
machine the alternation would leave the held one's share to others); the same figures are recorded.

Usage: fashion_mnist_ab.py [--mode alternate|together] --cell gru --layers 2 --hidden 128 --dropout 0.2 --batch 64 --lr 0.002 --clip 1
       --epochs 8 --threads 2 --seed 1 --out FILE.jsonl [--tapegrad build/tools/tapegrad]
"""
import argparse, atexit, json, os, signal, subprocess, sys, time

F = "/usr/share/datasets/fashion-mnist/"
OBLAS = "/tmp/oblas/usr/lib/x86_64-linux-gnu/openblas-openmp"
TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK      # utime, stime (fields 14, 15 of proc(5))


def load():
    with open("/proc/loadavg") as f:
        return float(f.read().split()[0])


class Run:
    """One framework's process; done(e) says whether its epoch e has ended."""

    def __init__(self, name, argv, env, log=None, out=None):
        self.name, self.log = name, log
        self.out = open(out, "w")
        self.p = subprocess.Popen(argv, env=env, stdout=self.out, stderr=subprocess.STDOUT)
        self.outpath = out
        atexit.register(self.end)

    def end(self):
        """At the driver's exit (normal or not): a child still running is continued and ended."""
        if self.p.poll() is None:
            os.kill(self.p.pid, signal.SIGCONT)
            self.p.terminate()
            self.p.wait()

    def lines(self):
        with open(self.log if self.log else self.outpath) as f:
            return f.read().splitlines()

    def done(self, epoch):
        if self.log:  # tapegrad: the CSV's data rows, one per epoch
            return len(self.lines()) - 1 >= epoch if os.path.exists(self.log) else False
        return any(l.startswith(f"epoch {epoch} train_loss") for l in self.lines())

    def ready(self):
        if self.log:
            return True
        return any(l.startswith("data loaded") for l in self.lines())

    def check_alive(self):
        if self.p.poll() is not None and self.p.returncode != 0:
            sys.exit(f"fashion_mnist_ab: {self.name} exited with status {self.p.returncode}; see {self.outpath}")


def run_epoch(r, epoch, poll=0.01):
    """Lets r run until its epoch ends; returns (wall, cpu) of that interval."""
    c0, t0 = cpu_seconds(r.p.pid), time.perf_counter()
    os.kill(r.p.pid, signal.SIGCONT)
    while not r.done(epoch):
        r.check_alive()
        time.sleep(poll)
    os.kill(r.p.pid, signal.SIGSTOP)
    return time.perf_counter() - t0, cpu_seconds(r.p.pid) - c0


def main():
    signal.signal(signal.SIGTERM, lambda *_: sys.exit("fashion_mnist_ab: terminated"))
    ap = argparse.ArgumentParser()
    ap.add_argument("--cell", default="gru")
    ap.add_argument("--layers", type=int, default=2)
    ap.add_argument("--hidden", type=int, default=128)
    ap.add_argument("--dropout", type=float, default=0.2)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--lr", type=float, default=0.002)
    ap.add_argument("--clip", type=float, default=1.0)
    ap.add_argument("--epochs", type=int, default=8)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--tapegrad", default="build/tools/tapegrad")
    ap.add_argument("--out", required=True)
    ap.add_argument("--mode", choices=["alternate", "together"], default="alternate",
                    help="alternate: one runs while the other is held (SIGSTOP); together: both run at once")
    a = ap.parse_args()
    if not os.path.isdir(OBLAS):
        sys.exit(f"fashion_mnist_ab: no {OBLAS}: see docs/results.md (OpenBLAS for torch, unpacked, not installed)")
    base = os.path.splitext(a.out)[0]
    common = ["--cell", a.cell, "--layers", str(a.layers), "--hidden", str(a.hidden), "--dropout", str(a.dropout),
              "--batch", str(a.batch), "--lr", str(a.lr), "--clip", str(a.clip), "--epochs", str(a.epochs),
              "--threads", str(a.threads), "--seed", str(a.seed)]
    tg_argv = [a.tapegrad, "train", "--data", F + "train-images-idx3-ubyte.gz", "--labels",
               F + "train-labels-idx1-ubyte.gz", "--target", "class", "--val", "0",
               "--test-data", F + "t10k-images-idx3-ubyte.gz", "--test-labels", F + "t10k-labels-idx1-ubyte.gz",
               "--quiet", "--log", base + "_tg.csv"] + common
    torch_argv = ["/usr/bin/python3", os.path.join(os.path.dirname(os.path.abspath(__file__)), "fashion_mnist_torch.py")] + common
    env = dict(os.environ, LD_LIBRARY_PATH=OBLAS, OMP_NUM_THREADS=str(a.threads))
    if os.path.exists(base + "_tg.csv"):
        os.remove(base + "_tg.csv")
    # torch loads its data first and is held; then tapegrad starts (its data loading is not in the epochs)
    th = Run("torch", torch_argv, env, out=base + "_torch.txt")
    while not th.ready():
        th.check_alive()
        time.sleep(0.05)
    os.kill(th.p.pid, signal.SIGSTOP)
    tg = Run("tapegrad", tg_argv, os.environ, log=base + "_tg.csv", out=base + "_tg.txt")
    # tapegrad's data loading falls in its epoch 1 here (it cannot be held at the start of training from
    # outside), so the per-epoch figures of the summary are over epochs 2..E
    out = open(a.out, "w")
    out.write(json.dumps({"tapegrad": tg_argv, "torch": torch_argv}) + "\n")
    rows = []

    def record(r, e, wall, cpu, l0):
        row = {"framework": r.name, "epoch": e, "wall": round(wall, 3), "cpu": round(cpu, 3),
               "load_before": l0, "load_after": load()}
        if r is tg:
            csv = tg.lines()
            row["own_seconds"] = float(csv[e].split(",")[2]) - (float(csv[e - 1].split(",")[2]) if e > 1 else 0)
        rows.append(row)
        out.write(json.dumps(row) + "\n")
        out.flush()
        print(json.dumps(row), flush=True)

    if a.mode == "together":  # both run at once; each epoch's end is polled for both
        os.kill(th.p.pid, signal.SIGCONT)
        mark = {r.name: (time.perf_counter(), cpu_seconds(r.p.pid), load(), 1) for r in (tg, th)}
        while any(mark[r.name][3] <= a.epochs for r in (tg, th)):
            for r in (tg, th):
                t0, c0, l0, e = mark[r.name]
                if e <= a.epochs and r.done(e):
                    now, c = time.perf_counter(), cpu_seconds(r.p.pid)
                    record(r, e, now - t0, c - c0, l0)
                    mark[r.name] = (now, c, load(), e + 1)
                r.check_alive()
            time.sleep(0.01)
        for r in (tg, th):
            if r.p.poll() is None:
                os.kill(r.p.pid, signal.SIGSTOP)
    for e in range(1, a.epochs + 1 if a.mode == "alternate" else 1):
        order = [tg, th] if e % 2 else [th, tg]
        for r in order:
            l0 = load()
            wall, cpu = run_epoch(r, e)
            record(r, e, wall, cpu, l0)
    for r in (tg, th):  # the test evaluations, one at a time
        if r.p.poll() is None:
            os.kill(r.p.pid, signal.SIGCONT)
        r.p.wait()
        r.check_alive()
    acc = {}
    for l in open(base + "_tg.txt"):
        if l.startswith("test accuracy"):
            acc["tapegrad"] = l.split()[2]
    for l in open(base + "_torch.txt"):
        if l.startswith("torch "):
            acc["torch"] = l.split()[l.split().index("test_acc") + 1]
    summary = {"summary": True, "mode": a.mode, "epochs_timed": f"2..{a.epochs}" if a.epochs > 1 else "1", "cell": a.cell, "layers": a.layers, "hidden": a.hidden, "epochs": a.epochs,
               "threads": a.threads, "test_acc": acc}
    for name in ("tapegrad", "torch"):
        rs = [r for r in rows if r["framework"] == name and (r["epoch"] > 1 or a.epochs == 1)]
        summary[name] = {"wall_per_epoch": round(sum(r["wall"] for r in rs) / len(rs), 2),
                         "cpu_per_epoch": round(sum(r["cpu"] for r in rs) / len(rs), 2)}
    out.write(json.dumps(summary) + "\n")
    print(json.dumps(summary), flush=True)


if __name__ == "__main__":
    main()
