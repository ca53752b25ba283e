#!/usr/bin/python3
"""bench/fashion_mnist_torch.py - the PyTorch side of bench/fashion_mnist.sh (not needed by the tests).

Sequential Fashion-MNIST as `tapegrad train --data ... --target class` trains it: each image is 28 steps
of 28 pixels (scaled to [0, 1], then standardised per pixel column with the training images' mean and
population std), nn.LSTM or nn.GRU (1 layer, batch_first=False) + nn.Linear on the last step's h,
cross-entropy, Adam (PyTorch's defaults but lr), gradient norm clipped (clip_grad_norm_), a fresh
shuffle every epoch, the last short batch kept, torch.set_num_threads(THREADS). --layers L stacks L
layers with --dropout P between them (nn.LSTM/GRU's dropout, as tapegrad's --dropout). Reads the IDX
.gz files of Debian's dataset-fashion-mnist with gzip + numpy. Prints, flushed, one line per epoch as
its training ends (before any evaluation, so a driver that times epochs from outside sees the end):
    epoch E train_loss L seconds S cpu_seconds C
with S the epoch's wall (time.perf_counter) and C the process CPU time (time.process_time, every
thread) of the epoch, then the test accuracy (every epoch with --eval-every-epoch, else after the last)
and a last line
    torch <cell> epochs E steps N test_acc A seconds_per_epoch S cpu_seconds_per_epoch C
Run it on OpenBLAS (Debian's torch uses the reference BLAS by default, ~10x slower here):
    LD_LIBRARY_PATH=/tmp/oblas/usr/lib/x86_64-linux-gnu/openblas-openmp /usr/bin/python3 ...
Usage: fashion_mnist_torch.py --cell lstm|gru --hidden 128 [--layers 1 --dropout 0] --batch 64 --lr 0.002
       --clip 1 --epochs 2 [--threads 1] [--steps N] [--seed 1]
"""
import argparse, gzip, time
import numpy as np
import torch

DIR = "/usr/share/datasets/fashion-mnist/"


def idx(path):
    with gzip.open(path, "rb") as f:
        raw = f.read()
    ndim = raw[3]
    shape = [int.from_bytes(raw[4 + 4 * k:8 + 4 * k], "big") for k in range(ndim)]
    return np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim).reshape(shape)


class Net(torch.nn.Module):
    def __init__(self, cell, hidden, layers, dropout):
        super().__init__()
        self.rnn = {"lstm": torch.nn.LSTM, "gru": torch.nn.GRU}[cell](28, hidden, num_layers=layers,
                                                                     dropout=dropout)
        self.head = torch.nn.Linear(hidden, 10)

    def forward(self, x):            # x [T, B, 28]
        out, _ = self.rnn(x)
        return self.head(out[-1])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--cell", default="lstm")
    ap.add_argument("--hidden", type=int, default=128)
    ap.add_argument("--layers", type=int, default=1)
    ap.add_argument("--dropout", type=float, default=0.0, help="between stacked layers while training")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--lr", type=float, default=0.002)
    ap.add_argument("--clip", type=float, default=1.0)
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--steps", type=int, default=0, help="stop after this many steps (timing runs)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--eval-every-epoch", action="store_true", help="test accuracy after every epoch")
    a = ap.parse_args()
    if a.layers < 1 or a.hidden < 1 or a.batch < 1 or a.epochs < 1 or a.threads < 1 or a.lr <= 0:
        ap.error("--layers, --hidden, --batch, --epochs and --threads must be at least 1, --lr above 0")
    if not 0 <= a.dropout < 1 or a.clip < 0:
        ap.error("--dropout must be in [0, 1) and --clip at least 0")
    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    xtr = idx(DIR + "train-images-idx3-ubyte.gz").astype(np.float64) / 255
    ytr = idx(DIR + "train-labels-idx1-ubyte.gz").astype(np.int64)
    xte = idx(DIR + "t10k-images-idx3-ubyte.gz").astype(np.float64) / 255
    yte = idx(DIR + "t10k-labels-idx1-ubyte.gz").astype(np.int64)
    mean = xtr.reshape(-1, 28).mean(0)
    std = xtr.reshape(-1, 28).std(0)
    std[std == 0] = 1
    # [N, T, I] -> [T, N, I], float32
    xtr = torch.from_numpy(((xtr - mean) / std).astype(np.float32)).transpose(0, 1).contiguous()
    xte = torch.from_numpy(((xte - mean) / std).astype(np.float32)).transpose(0, 1).contiguous()
    ytr, yte = torch.from_numpy(ytr), torch.from_numpy(yte)
    print(f"data loaded: {ytr.shape[0]} training and {yte.shape[0]} test images", flush=True)
    net = Net(a.cell, a.hidden, a.layers, a.dropout)
    opt = torch.optim.Adam(net.parameters(), lr=a.lr)
    n = ytr.shape[0]
    step, per_epoch, cpu_epoch, acc = 0, [], [], float("nan")

    def test_accuracy():
        with torch.no_grad():
            net.eval()
            pred = torch.cat([net(xte[:, s:s + 1000]).argmax(1) for s in range(0, yte.shape[0], 1000)])
            return (pred == yte).double().mean().item()

    for epoch in range(1, a.epochs + 1):
        t0, c0 = time.perf_counter(), time.process_time()
        perm = torch.randperm(n)
        net.train()
        tot, seen = 0.0, 0
        for s in range(0, n, a.batch):
            b = perm[s:s + a.batch]
            loss = torch.nn.functional.cross_entropy(net(xtr[:, b]), ytr[b])
            opt.zero_grad()
            loss.backward()
            if a.clip > 0:
                torch.nn.utils.clip_grad_norm_(net.parameters(), a.clip)
            opt.step()
            tot += loss.item() * len(b)
            seen += len(b)
            step += 1
            if a.steps and step >= a.steps:
                break
        per_epoch.append(time.perf_counter() - t0)
        cpu_epoch.append(time.process_time() - c0)
        print(f"epoch {epoch} train_loss {tot / seen:.4f} seconds {per_epoch[-1]:.2f} cpu_seconds {cpu_epoch[-1]:.2f}",
              flush=True)
        last = epoch == a.epochs or (a.steps and step >= a.steps)
        if a.eval_every_epoch or last:
            acc = test_accuracy()
            print(f"epoch {epoch} test_acc {acc:.4f}", flush=True)
        if last:
            break
    print(f"torch {a.cell} epochs {len(per_epoch)} steps {step} test_acc {acc:.4f} "
          f"seconds_per_epoch {sum(per_epoch) / len(per_epoch):.2f} "
          f"cpu_seconds_per_epoch {sum(cpu_epoch) / len(cpu_epoch):.2f}", flush=True)


if __name__ == "__main__":
    main()
