#!/usr/bin/python3
"""Loads a tapegrad checkpoint (safetensors with PyTorch names) into torch.nn.LSTM and writes torch's
state back as safetensors, to check weights move both ways. Usage: check_torch_load.py IN OUT I H"""
import json, struct, sys
import torch

def read(path):
    b = open(path, "rb").read()
    n = struct.unpack("<Q", b[:8])[0]
    hdr = json.loads(b[8:8 + n])
    out = {}
    for k, v in hdr.items():
        if k == "__metadata__":
            continue
        s, e = v["data_offsets"]
        dt = {"F32": torch.float32, "F64": torch.float64}[v["dtype"]]
        out[k] = torch.frombuffer(bytearray(b[8 + n + s: 8 + n + e]), dtype=dt).reshape(v["shape"])
    return out

def write(path, tensors):
    hdr, blobs, off = {}, [], 0
    for k, t in tensors.items():
        raw = t.detach().contiguous().numpy().tobytes()
        hdr[k] = {"dtype": "F32" if t.dtype == torch.float32 else "F64", "shape": list(t.shape), "data_offsets": [off, off + len(raw)]}
        blobs.append(raw); off += len(raw)
    h = json.dumps(hdr).encode(); h += b" " * (-len(h) % 8)
    open(path, "wb").write(struct.pack("<Q", len(h)) + h + b"".join(blobs))

sd = read(sys.argv[1])
lstm = torch.nn.LSTM(int(sys.argv[3]), int(sys.argv[4]))
lstm.load_state_dict(sd, strict=True)
x = torch.linspace(-1, 1, 12).reshape(12, 1, 1)
y, _ = lstm(x)
print("torch.nn.LSTM loaded the tapegrad checkpoint; y[-1] =", float(y[-1, 0, 0]))
write(sys.argv[2], {k: v * 1.0 for k, v in lstm.state_dict().items()})
