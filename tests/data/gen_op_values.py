#!/usr/bin/python3
"""Writes tests/data/op_values.h: forward values and gradients of every tapegrad op computed by PyTorch
(float64), the independent source the value tests in tests/test_ops.c compare against.

Run with Debian's python3-torch:  /usr/bin/python3 tests/data/gen_op_values.py > tests/data/op_values.h
The cases are not listed here: each is a gradcheck row of tests/test_ops.c that carries a torch
expression (its last field), read from that file, so an op's test is written once, in its row.
For each case: inputs (deterministic values of the row's shapes and range), a projection P of the
output's shape, the output, and the gradient of sum(output * P) with respect to every input."""
import ast
import math
import os
import re
import sys

import torch
import torch.nn.functional as F

torch.set_default_dtype(torch.float64)


def vals(shape, k, lo=-1.0, hi=1.0):
    n = math.prod(shape)
    v = [lo + (hi - lo) * (0.5 + 0.5 * math.sin(1.7 * i + 0.9 * k + 0.3)) for i in range(n)]
    return torch.tensor(v).reshape(shape)


M64 = (1 << 64) - 1


def tapegrad_uniforms(seed, n):
    """tapegrad's tg_rng (tensor/rng.c: xoshiro256** seeded by splitmix64), so that a dropout case can
    use the same mask as tg_dropout(x, p, true, rng seeded with `seed`)."""
    def splitmix(x):
        x = (x + 0x9e3779b97f4a7c15) & M64
        z = x
        z = ((z ^ (z >> 30)) * 0xbf58476d1ce4e5b9) & M64
        z = ((z ^ (z >> 27)) * 0x94d049bb133111eb) & M64
        return x, z ^ (z >> 31)

    def rotl(x, k):
        return ((x << k) | (x >> (64 - k))) & M64

    s, x = [], seed
    for _ in range(4):
        x, z = splitmix(x)
        s.append(z)
    out = []
    for _ in range(n):
        result = (rotl((s[1] * 5) & M64, 7) * 9) & M64
        t = (s[1] << 17) & M64
        s[2] ^= s[0]
        s[3] ^= s[1]
        s[1] ^= s[2]
        s[0] ^= s[3]
        s[2] ^= t
        s[3] = rotl(s[3], 45)
        out.append((result >> 11) * 2.0 ** -53)
    return out


def dropout(a, p=0.3, seed=7):
    """torch's dropout formula a * mask / (1 - p), with the keep/drop pattern of tapegrad's RNG."""
    u = torch.tensor(tapegrad_uniforms(seed, a.numel())).reshape(a.shape)
    return a * torch.where(u < p, torch.zeros_like(u), torch.full_like(u, 1.0 / (1.0 - p)))


def gates(a, acts):
    """tg_gates: the activations of acts ("s" σ, "t" tanh, "r" relu, "i" identity) on a's G blocks, gate-major"""
    f = {"s": torch.sigmoid, "t": torch.tanh, "r": torch.relu, "i": lambda v: v}
    H = a.shape[-1] // len(acts)
    return torch.stack([f[c](a[..., k * H:(k + 1) * H]) for k, c in enumerate(acts)])


def gru_gates(xp, hp):
    """PyTorch's GRU (reset-after): r = σ(x_r + h_r), z = σ(x_z + h_z), n = tanh(x_n + r ⊙ h_n)"""
    xr, xz, xn = xp.chunk(3, -1)
    hr, hz, hn = hp.chunk(3, -1)
    r = torch.sigmoid(xr + hr)
    z = torch.sigmoid(xz + hz)
    return torch.stack([r, z, torch.tanh(xn + r * hn)])


def lstm_state(gates, c):
    """c' = f ⊙ c + i ⊙ g, h' = o ⊙ tanh(c') from gate-major gates [4, ..., H]; the result [h'; c']"""
    i, f, g, o = gates
    c2 = f * c + i * g
    return torch.stack([o * torch.tanh(c2), c2])


def lstm_cell(xp, h, w, b, c):
    """the whole LSTM step: [a_i | a_f | a_g | a_o] = xp + h Wᵀ + b, then lstm_state; the result [h'; c']"""
    i, f, g, o = (xp + F.linear(h, w, b)).chunk(4, -1)
    return lstm_state((torch.sigmoid(i), torch.sigmoid(f), torch.tanh(g), torch.sigmoid(o)), c)


def lstm_zoo(xp, h, w, b, c, wci, wcf, wco, flags):
    """tg_lstm_zoo_: the LSTM family's step; flags 1 no i, 2 no f, 4 no o, 8 coupled (f = 1 − i, no f block),
    16 g linear, 32 h' = o ⊙ c'; the blocks kept in the order i, f, g, o; the result [h'; c']"""
    no_i, no_f, no_o, coupled, lin_g, lin_c = [(flags >> k) & 1 for k in range(6)]
    kept = [n for n, gone in (("i", no_i), ("f", no_f or coupled), ("g", 0), ("o", no_o)) if not gone]
    a = dict(zip(kept, (xp + F.linear(h, w, b)).chunk(len(kept), -1)))
    i = torch.sigmoid(a["i"] + (wci * c if wci is not None else 0)) if "i" in a else 1
    f = 1 - i if coupled else torch.sigmoid(a["f"] + (wcf * c if wcf is not None else 0)) if "f" in a else 1
    g = a["g"] if lin_g else torch.tanh(a["g"])
    c2 = f * c + i * g
    o = torch.sigmoid(a["o"] + (wco * c2 if wco is not None else 0)) if "o" in a else 1
    return torch.stack([o * (c2 if lin_c else torch.tanh(c2)), c2])


def lstm_fgr_gates(xp, h, w, b, c, wci, wcf, wco, wgg, prev):
    """tg_lstm_fgr_gates_: lstm_fgr's gates with full gate recurrence r = [i | f | o]_prev W_ggᵀ (prev [3,B,H] i, f, o
    or [4,B,H] i, f, g, o); the result [i; f; g; o] gate-major"""
    r_i, r_f, r_o = F.linear(torch.cat([prev[0], prev[1], prev[-1]], -1), wgg).chunk(3, -1)
    a_i, a_f, a_g, a_o = (xp + F.linear(h, w, b)).chunk(4, -1)
    i = torch.sigmoid(a_i + wci * c + r_i)
    f = torch.sigmoid(a_f + wcf * c + r_f)
    g = torch.tanh(a_g)
    o = torch.sigmoid(a_o + wco * (f * c + i * g) + r_o)
    return torch.stack([i, f, g, o])


def gru_cell(xp, h, w, b):
    """the whole GRU step: gru_gates(xp, h Wᵀ + b), h' = n + z ⊙ (h − n); the result [h'; hp_n]"""
    hp = F.linear(h, w, b)
    r, z, n = gru_gates(xp, hp)
    return torch.stack([torch.lerp(n, h, z), hp.chunk(3, -1)[2]])


def gru_zoo(xp, x, h, wu, bu, ws, bs, wc, bc, flags):
    """tg_gru_zoo_: the GRU-like zoo cells' step; flags 1 one gate (s = u), 2 u = σ(xp_u) alone, 4 u's product
    of tanh(h), 8 s reads x (no xp block), 16 h̃ reads tanh(x) (no xp block), 32 u and s from one product
    h wsᵀ + bs, 64 s's block first, 128 h' = lerp(h̃, h, u); the result [h'; s if 8; h̃ if 16]"""
    one, u_in, u_tanh, s_x, c_x, shared, s_first, keep_h = [(flags >> k) & 1 for k in range(8)]
    s_block = not one and not s_x
    names = (["s"] if s_first and s_block else []) + ["u"] + (["s"] if s_block and not s_first else [])
    names += [] if c_x else ["c"]
    blk = dict(zip(names, xp.chunk(len(names), -1)))
    if shared:
        first, second = F.linear(h, ws, bs).chunk(2, -1)
        pu, ps = (second, first) if s_first else (first, second)
    else:
        pu = None if u_in else F.linear(torch.tanh(h) if u_tanh else h, wu, bu)
        ps = None if one else F.linear(h, ws, bs)
    u = torch.sigmoid(blk["u"] + (pu if pu is not None else 0))
    s = u if one else torch.sigmoid((x if s_x else blk["s"]) + ps)
    c = torch.tanh((torch.tanh(x) if c_x else blk["c"]) + F.linear(s * h, wc, bc))
    out = [torch.lerp(c, h, u) if keep_h else torch.lerp(h, c, u)]
    return torch.stack(out + ([s] if s_x else []) + ([c] if c_x else []))


def rnn_seq(xp, h0, w, b, flags):
    """tg_rnn_seq_: h'_t = act(xp_t + h'_{t-1} Wᵀ + b) (u ⊙ h'_{t-1} with w [H]), h'_{-1} = h0; flags 1 relu
    (else tanh), 2 reverse (t = T-1 down to 0); the result [T,B,H], row t = h'_t"""
    act = torch.relu if flags & 1 else torch.tanh
    steps = range(xp.shape[0] - 1, -1, -1) if flags & 2 else range(xp.shape[0])
    h, out = h0, [None] * xp.shape[0]
    for t in steps:
        rec = w * h if w.dim() == 1 else F.linear(h, w)
        h = act(xp[t] + rec + (b if b is not None else 0))
        out[t] = h
    return torch.stack(out)



def lstm_seq(xp, h0, w, b, c0, flags):
    """tg_lstm_seq_: lstm_cell over the steps of xp [T,B,4H] from (h0, c0); flags 1 reverse (t = T-1 down to
    0); the result [2,T,B,H], row 0 the h'_t, row 1 the c'_t"""
    steps = range(xp.shape[0] - 1, -1, -1) if flags & 1 else range(xp.shape[0])
    h, c, hs, cs = h0, c0, [None] * xp.shape[0], [None] * xp.shape[0]
    for t in steps:
        h, c = lstm_cell(xp[t], h, w, b, c)
        hs[t], cs[t] = h, c
    return torch.stack([torch.stack(hs), torch.stack(cs)])

def ctc(log_probs, targets, input_lengths, target_lengths):
    """torch's CTC loss per sequence (behind log_softmax its backward is the logits' gradient,
    pytorch/pytorch#52241)"""
    return F.ctc_loss(log_probs, torch.tensor(targets), torch.tensor(input_lengths), torch.tensor(target_lengths),
                      reduction="none")


def c_ints(src, name):
    """the values of `static const int64_t ... name[] = {...}` in test_ops.c (indices the rows use)"""
    m = re.search(r"\b" + name + r"\[\]\s*=\s*\{([^}]*)\}", src)
    if not m:
        sys.exit(f"gen_op_values.py: {TEST_OPS}: no int64_t array {name}")
    return [int(v) for v in m.group(1).split(",")]


# A gradcheck row of test_ops.c: {"op", fn, n, {ndims}, {{shape}, ...}, lo, hi, "torch expression" or NULL}
ROW = re.compile(r'^\s*\{"([^"]*)", (f_\w+), (\d+), \{([^}]*)\}, \{(.*)\}, (-?[0-9.]+), (-?[0-9.]+), '
                 r'(NULL|"([^"\\]*)")\},')


def read_cases(path):
    """The value cases: the gradcheck rows of tests/test_ops.c that carry a torch expression, in order:
    (fn name, row line, expression, input shapes, (lo, hi))."""
    src = open(path, encoding="utf-8").read()
    cases = []
    for n, line in enumerate(src.split("\n"), 1):
        if not line.lstrip().startswith('{"'):
            continue
        m = ROW.match(line)
        if not m:
            if re.match(r'^\s*\{"[^"]*", f_\w+,', line):
                sys.exit(f"{path}:{n}: error: a gradcheck row this script cannot read (want "
                         f'{{"op", fn, n, {{ndims}}, {{{{shape}}, ...}}, lo, hi, "torch expression" or NULL}}): {line.strip()}')
            continue
        _, fn, k, ndims, shapes, lo, hi, _, expr = m.groups()
        if expr is None:
            continue
        ndims = [int(v) for v in ndims.split(",")]
        shapes = ast.literal_eval("[" + shapes.replace("{", "[").replace("}", "]") + "]")
        shapes = [tuple(s[:d]) for s, d in zip(shapes, ndims)]
        if len(shapes) != int(k):
            sys.exit(f"{path}:{n}: error: {fn}: {k} inputs but {len(shapes)} shapes")
        cases.append((fn, n, expr, shapes, (float(lo), float(hi))))
    if not cases:
        sys.exit(f"gen_op_values.py: no gradcheck row with a torch expression in {path}")
    return src, cases


TEST_OPS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "test_ops.c")
SRC, CASES = read_cases(TEST_OPS)
NAMES = {"torch": torch, "F": F, "gates": gates, "gru_gates": gru_gates, "lstm_state": lstm_state,
         "lstm_cell": lstm_cell, "lstm_zoo": lstm_zoo, "lstm_fgr_gates": lstm_fgr_gates, "gru_zoo": gru_zoo, "gru_cell": gru_cell, "rnn_seq": rnn_seq, "lstm_seq": lstm_seq, "ctc": ctc, "dropout": dropout,
         "gather_idx": c_ints(SRC, "gather_idx"), "ctc_targets": c_ints(SRC, "ctc_targets"),
         "ctc_il": c_ints(SRC, "ctc_il"), "ctc_tl": c_ints(SRC, "ctc_tl")}


def torch_fn(fn_name, line, expr):
    code = compile(f"lambda a=None, b=None, c=None, d=None, e=None, f=None, g=None, h=None: ({expr})", f"test_ops.c:{line} ({fn_name})", "eval")
    return eval(code, dict(NAMES))


def c_array(name, t):
    flat = t.reshape(-1).tolist()
    body = ", ".join(repr(float(v)) for v in flat) if flat else "0"
    return f"static const double {name}[] = {{{body}}};"


print("/* Generated by tests/data/gen_op_values.py with torch %s (float64). Do not edit. */" % torch.__version__)
print("#define TORCH_VERSION_OF_OP_VALUES \"%s\"" % torch.__version__)
rows = []
for k, (fn_name, line, expr, shapes, (lo, hi)) in enumerate(CASES):
    fn = torch_fn(fn_name, line, expr)
    ins = [vals(s, 10 * k + i, lo, hi).requires_grad_(True) for i, s in enumerate(shapes)]
    out = fn(*ins)
    proj = vals(tuple(out.shape), 1000 + k, 0.5, 1.5)
    (out * proj).sum().backward()
    for i, t in enumerate(ins):
        print(c_array(f"c{k}_in{i}", t.detach()))
        print(c_array(f"c{k}_grad{i}", t.grad))
        print(f"static const int64_t c{k}_shape{i}[] = {{{', '.join(str(d) for d in t.shape) or '0'}}};")
    print(c_array(f"c{k}_proj", proj))
    print(c_array(f"c{k}_out", out.detach()))
    print(f"static const int64_t c{k}_outshape[] = {{{', '.join(str(d) for d in out.shape) or '0'}}};")
    n = len(shapes)
    ins_c = ", ".join(f"c{k}_in{i}" for i in range(n))
    grads_c = ", ".join(f"c{k}_grad{i}" for i in range(n))
    shp_c = ", ".join(f"c{k}_shape{i}" for i in range(n))
    nd_c = ", ".join(str(len(s)) for s in shapes)
    rows.append(f'    {{"{fn_name}", {fn_name}, {n}, {{{nd_c}}}, {{{shp_c}}}, {{{ins_c}}}, {{{grads_c}}}, '
                f'c{k}_proj, c{k}_out, {out.dim()}, c{k}_outshape}},')
print("static const value_case value_cases[] = {")
print("\n".join(rows))
print("};")
