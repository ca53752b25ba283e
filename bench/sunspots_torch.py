#!/usr/bin/python3
"""bench/sunspots_torch.py - the PyTorch side of bench/sunspots.sh (not needed by the tests).

The yearly sunspot numbers as `tapegrad train --data sunspots.csv --features SUNACTIVITY --target next
--seq 12 --val 0.2` trains them, step for step the same pipeline:
  - windows: every run of 12 consecutive years, target the year after (stride 1): 297 windows of the 309
    values 1700-2008;
  - split: chronological, the last round(0.2 * 297) = 59 windows validate (targets 1950-2008), the 238
    before them train;
  - normalisation: inputs standardised with the mean and population std over every step of every
    training window (tg_norm_fit), targets with the training targets' mean and population std; the loss
    is the MSE in those standard units, the reported metric the validation MSE in sunspot numbers squared;
  - model: nn.LSTM / nn.GRU (1 layer, --hidden) + nn.Linear on the last step's h, PyTorch's default init;
  - Adam (PyTorch's defaults but lr), gradient norm clipped at --clip (clip_grad_norm_), batch 32, a fresh
    shuffle every epoch with the last short batch kept (8 steps per epoch), --epochs epochs, F32, 1 thread.
The baseline is persistence (next year = this year) on the same validation windows.
Prints one line:
    torch <cell> hidden H epochs E steps N seed S val_mse M persistence P params K seconds W cpu_seconds C
(W, C: the training loop's wall and process CPU seconds, every thread).
Usage: sunspots_torch.py --csv bench-out/data/sunspots.csv --cell lstm|gru [--hidden 16 --epochs 100
       --lr 0.01 --clip 1 --batch 32 --seq 12 --val 0.2 --seed 1]
"""
import argparse, csv, time
import numpy as np
import torch


def windows(series, seq):
    """[N, seq] inputs and [N] targets: each window of seq values and the value right after it."""
    n = len(series) - seq
    x = np.stack([series[s:s + seq] for s in range(n)])
    return x, series[seq:seq + n]


class Net(torch.nn.Module):
    def __init__(self, cell, hidden):
        super().__init__()
        self.rnn = {"lstm": torch.nn.LSTM, "gru": torch.nn.GRU}[cell](1, hidden)
        self.head = torch.nn.Linear(hidden, 1)

    def forward(self, x):            # x [T, B, 1]
        out, _ = self.rnn(x)
        return self.head(out[-1])[:, 0]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--csv", default="bench-out/data/sunspots.csv")
    ap.add_argument("--column", default="SUNACTIVITY")
    ap.add_argument("--cell", default="lstm", choices=["lstm", "gru"])
    ap.add_argument("--hidden", type=int, default=16)
    ap.add_argument("--seq", type=int, default=12)
    ap.add_argument("--val", type=float, default=0.2)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--lr", type=float, default=0.01)
    ap.add_argument("--clip", type=float, default=1.0)
    ap.add_argument("--epochs", type=int, default=100)
    ap.add_argument("--seed", type=int, default=1)
    a = ap.parse_args()
    if a.hidden < 1 or a.seq < 1 or a.batch < 1 or a.epochs < 1 or a.lr <= 0 or not 0 < a.val < 1 or a.clip < 0:
        ap.error("--hidden, --seq, --batch and --epochs must be at least 1, --lr above 0, --val in (0, 1), --clip >= 0")
    torch.set_num_threads(1)
    torch.manual_seed(a.seed)
    with open(a.csv, newline="") as f:
        series = np.array([float(r[a.column]) for r in csv.DictReader(f)], dtype=np.float64)
    x, y = windows(series, a.seq)
    n_val = int(round(a.val * len(y)))
    n_tr = len(y) - n_val
    xtr, ytr, xva, yva = x[:n_tr], y[:n_tr], x[n_tr:], y[n_tr:]
    xm, xs = xtr.mean(), xtr.std()         # every step of every training window (one feature)
    ym, ys = ytr.mean(), ytr.std()
    persistence = float(np.mean((xva[:, -1] - yva) ** 2))

    def as_input(v):                       # [N, T] -> [T, N, 1] float32, standardised
        return torch.from_numpy(((v - xm) / xs).astype(np.float32)).t().unsqueeze(2).contiguous()

    Xtr, Xva = as_input(xtr), as_input(xva)
    Ytr = torch.from_numpy(((ytr - ym) / ys).astype(np.float32))
    net = Net(a.cell, a.hidden)
    opt = torch.optim.Adam(net.parameters(), lr=a.lr)
    t0, c0, step = time.perf_counter(), time.process_time(), 0
    for _ in range(a.epochs):
        net.train()
        perm = torch.randperm(n_tr)
        for s in range(0, n_tr, a.batch):
            b = perm[s:s + a.batch]
            loss = torch.nn.functional.mse_loss(net(Xtr[:, b]), Ytr[b])
            opt.zero_grad()
            loss.backward()
            if a.clip > 0:
                torch.nn.utils.clip_grad_norm_(net.parameters(), a.clip)
            opt.step()
            step += 1
    seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
    net.eval()
    with torch.no_grad():
        pred = net(Xva).double().numpy() * ys + ym
    mse = float(np.mean((pred - yva) ** 2))
    params = sum(p.numel() for p in net.parameters())
    print(f"torch {a.cell} hidden {a.hidden} epochs {a.epochs} steps {step} seed {a.seed} val_mse {mse:.1f} "
          f"persistence {persistence:.1f} params {params} seconds {seconds:.2f} cpu_seconds {cpu:.2f}", flush=True)


if __name__ == "__main__":
    main()
