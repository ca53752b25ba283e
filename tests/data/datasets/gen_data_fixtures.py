#!/usr/bin/python3
"""Fixtures for tests/test_data.c, written by independent implementations (numpy's np.save, the
`gzip` program, and Python's struct for IDX). Run from the repository root:
    /usr/bin/python3 tests/data/datasets/gen_data_fixtures.py
numpy's version is recorded in VERSIONS.txt beside the files."""
import os
import subprocess

import numpy as np

here = os.path.dirname(os.path.abspath(__file__))


def out(name):
    return os.path.join(here, name)


# --- npy (numpy's own writer) ---
x = (np.arange(3 * 4 * 2, dtype=np.float64).reshape(3, 4, 2) - 5.5) / 4.0
np.save(out("x_f8.npy"), x)
np.save(out("x_f4.npy"), x.astype(np.float32))
np.save(out("x_i8.npy"), np.arange(3 * 4 * 2, dtype=np.int64).reshape(3, 4, 2) - 7)
np.save(out("y_i8.npy"), np.array([2, 0, 1], dtype=np.int64))
np.save(out("tags_i8.npy"), np.array([[0, 1, 1, 2], [2, 2, 0, 0], [1, 0, 1, 0]], dtype=np.int64))
np.save(out("series_f8.npy"), np.sin(np.arange(50, dtype=np.float64) / 5.0).reshape(25, 2))

with open(out("VERSIONS.txt"), "w") as f:
    f.write("numpy %s\n" % np.__version__)
    f.write(subprocess.run(["gzip", "--version"], capture_output=True, text=True).stdout.splitlines()[0] + "\n")

# --- gzip (the real gzip program), for tests/test_data.c's inflate tests ---
import random
import struct

rng = random.Random(10)
words = ["tapegrad", "sequence", "gradient", "tape", "lstm", "gru", "batch", "\n", " ", "0.5", "1e-3"]
text = "".join(rng.choice(words) for _ in range(1500)).encode()
noise = bytes(rng.randrange(256) for _ in range(1500))
payload = text + noise + text[:3000]
with open(out("payload.bin"), "wb") as f:
    f.write(payload)
for level in range(1, 10):
    subprocess.run("gzip -n -%d -c %s > %s" % (level, out("payload.bin"), out("payload.%d.gz" % level)), shell=True, check=True)
# incompressible data: gzip falls back to stored blocks
with open(out("random.bin"), "wb") as f:
    f.write(bytes(rng.randrange(256) for _ in range(3000)))
subprocess.run("gzip -n -9 -c %s > %s" % (out("random.bin"), out("random.gz")), shell=True, check=True)
# two members concatenated (gzip -d outputs both)
subprocess.run("(gzip -n -c %s; gzip -n -1 -c %s) > %s" % (out("random.bin"), out("payload.bin"), out("multi.gz")),
               shell=True, check=True)
# a header with FNAME (gzip without -n stores the name)
subprocess.run("cd %s && gzip -c random.bin > named.gz" % here, shell=True, check=True)
# IDX images [3, 4, 5] uint8 + labels [3], as Fashion-MNIST ships them (gzip'd)
img = bytes((7 * k) % 256 for k in range(60))
with open(out("images-idx3-ubyte"), "wb") as f:
    f.write(b"\0\0\x08\x03" + struct.pack(">III", 3, 4, 5) + img)
with open(out("labels-idx1-ubyte"), "wb") as f:
    f.write(b"\0\0\x08\x01" + struct.pack(">I", 3) + bytes([4, 0, 9]))
for name in ["images-idx3-ubyte", "labels-idx1-ubyte"]:
    subprocess.run("gzip -n -9 -c %s > %s.gz" % (out(name), out(name)), shell=True, check=True)
# a short input: gzip emits one fixed-Huffman block
subprocess.run("printf 'hello hello hello' | gzip -n -9 > %s" % out("tiny.gz"), shell=True, check=True)
# safetensors data file as PyTorch users make one: x float32 [3,4,2], y int64 [3], lengths int64 [3]
# (written with json + struct, which is the whole format; torch tensors give the bytes)
import json
import torch

def save_st(path, tensors):
    header, blobs, off = {}, [], 0
    for name, t in tensors.items():
        b = t.contiguous().numpy().tobytes()
        header[name] = {"dtype": {torch.float32: "F32", torch.float64: "F64", torch.int64: "I64"}[t.dtype],
                        "shape": list(t.shape), "data_offsets": [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    h = json.dumps(header).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + b"".join(blobs))

save_st(out("seqs.safetensors"), {"x": torch.from_numpy(x.astype(np.float32)),
                                  "y": torch.tensor([2, 0, 1], dtype=torch.int64),
                                  "lengths": torch.tensor([4, 2, 3], dtype=torch.int64)})
