#!/usr/bin/python3
"""Fixtures of `tapegrad train --init` (tests/test_init.c), written by torch 1.13 in the safetensors
format (struct + json, the same bytes as safetensors.torch.save_file, which is not installed here):

  torch_lstm.safetensors      torch.nn.LSTM(2, 8, num_layers=2).state_dict() + torch.nn.Linear(8, 1)'s
                              "weight"/"bias": the bare names, no "rnn."/"head." prefix, F32
  torch_gru_f64.safetensors   a Module with .rnn = nn.GRU(2, 8) and .head = nn.Linear(8, 1): its
                              state_dict's "rnn.weight_ih_l0", ..., "head.bias", F64
  golden.safetensors          x [5, 3, 2] and each model's head(rnn(x)[-1]) ("lstm_y" F32, "gru_y" F64)

Run from the repository root: python3 tests/data/init/gen_init_torch.py"""
import json, os, struct
import torch

def write(path, tensors, meta=None):
    hdr, blobs, off = {}, [], 0
    if meta:
        hdr["__metadata__"] = meta
    for k, t in tensors.items():
        raw = t.detach().contiguous().numpy().tobytes()
        hdr[k] = {"dtype": {torch.float32: "F32", torch.float64: "F64"}[t.dtype], "shape": list(t.shape),
                  "data_offsets": [off, off + len(raw)]}
        blobs.append(raw)
        off += len(raw)
    h = json.dumps(hdr, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + b"".join(blobs))

here = os.path.dirname(os.path.abspath(__file__))
torch.manual_seed(18)
lstm, lin = torch.nn.LSTM(2, 8, num_layers=2), torch.nn.Linear(8, 1)
sd = dict(lstm.state_dict())
sd.update(lin.state_dict())                         # "weight", "bias"
write(os.path.join(here, "torch_lstm.safetensors"), sd, {"format": "pt"})

class Model(torch.nn.Module):                       # the module a command checkpoint loads into
    def __init__(self):
        super().__init__()
        self.rnn = torch.nn.GRU(2, 8)
        self.head = torch.nn.Linear(8, 1)
    def forward(self, x):
        y, _ = self.rnn(x)
        return self.head(y[-1])

gru = Model().double()
write(os.path.join(here, "torch_gru_f64.safetensors"), gru.state_dict(), {"format": "pt"})

x = torch.linspace(-1, 1, 30, dtype=torch.float64).reshape(5, 3, 2) * torch.tensor([1.0, -0.5], dtype=torch.float64)
with torch.no_grad():
    lstm_y = lin(lstm(x.float())[0][-1])
    gru_y = gru(x)
write(os.path.join(here, "golden.safetensors"), {"x": x, "lstm_y": lstm_y, "gru_y": gru_y},
      {"generator": "tests/data/init/gen_init_torch.py", "torch": torch.__version__})
print("wrote", sorted(sd), "and", sorted(gru.state_dict()))
