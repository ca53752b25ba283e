"""bench/bench_common.py - what the Python benchmark scripts of bench/ share: the problem-size options,
the PyTorch run options, the median, and the name of the BLAS library PyTorch actually loaded.

Used by pytorch_lstm.py, pytorch_infer.py and infer_ab.py (they import it from their own folder).
It imports torch only inside torch_setup, so a driver without torch (infer_ab.py) can use it too.
"""
import argparse


def parser(doc):
    """An ArgumentParser that prints `doc` (the calling script's docstring) as it is written."""
    return argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)


def add_shape_args(ap, I, H, B, T, steps, warmup=None):
    """--I --H --B --T --steps (and --warmup unless None) with the script's own defaults."""
    for name, default in (("I", I), ("H", H), ("B", B), ("T", T), ("steps", steps), ("warmup", warmup)):
        if default is not None:
            ap.add_argument("--" + name, type=int, default=default)


def add_torch_args(ap):
    """--dtype f32|f64, --threads (torch.set_num_threads) and --seed (torch.manual_seed)."""
    ap.add_argument("--dtype", choices=["f32", "f64"], default="f32")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--seed", type=int, default=1)


def torch_setup(a):
    """Applies --threads and --seed; returns the torch dtype of --dtype."""
    import torch
    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    return torch.float32 if a.dtype == "f32" else torch.float64


def median(v):
    """The median of v (the mean of the two middle values when len(v) is even); v is not changed."""
    v = sorted(v)
    n = len(v)
    return v[n // 2] if n % 2 else 0.5 * (v[n // 2 - 1] + v[n // 2])


def blas_loaded():
    """The BLAS libraries mapped into this process, comma-separated, or "?".

    BLAS_INFO says only "generic" on Debian's torch, which loads whatever libblas.so.3 the loader
    finds: netlib's reference BLAS by default, or OpenBLAS when LD_LIBRARY_PATH points at it. It
    decides the GEMM speed, so it is reported with the figures."""
    with open("/proc/self/maps") as f:
        libs = sorted({ln.split()[-1] for ln in f if "blas" in ln.split()[-1].rsplit("/", 1)[-1].lower()})
    return ",".join(libs) if libs else "?"
