#!/usr/bin/python3
"""Writes tests/data/op_values.h: forward values and gradients of every tapegrad op computed by PyTorch
(float64), the independent source the value tests in tests/test_ops.c compare against.

Run with Debian's python3-torch:  /usr/bin/python3 tests/data/gen_op_values.py > tests/data/op_values.h
For each case: inputs (deterministic values), a projection P of the output's shape, the output, and
the gradient of sum(output * P) with respect to every input."""
import math
import torch

torch.set_default_dtype(torch.float64)


def vals(shape, k, lo=-1.0, hi=1.0):
    n = math.prod(shape)
    v = [lo + (hi - lo) * (0.5 + 0.5 * math.sin(1.7 * i + 0.9 * k + 0.3)) for i in range(n)]
    return torch.tensor(v).reshape(shape)


idx = [2, 0, 2, 4, 1, 2]
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


def gates(acts):
    f = {"s": torch.sigmoid, "t": torch.tanh, "r": torch.relu, "i": lambda v: v}

    def run(a):
        H = a.shape[-1] // len(acts)
        return torch.stack([f[c](a[..., k * H:(k + 1) * H]) for k, c in enumerate(acts)])
    return run


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
    i, f, g, o = (xp + torch.nn.functional.linear(h, w, b)).chunk(4, -1)
    return lstm_state((torch.sigmoid(i), torch.sigmoid(f), torch.tanh(g), torch.sigmoid(o)), c)


def gru_cell(xp, h, w, b):
    """the whole GRU step: gru_gates(xp, h Wᵀ + b), h' = n + z ⊙ (h − n); the result [h'; hp_n]"""
    hp = torch.nn.functional.linear(h, w, b)
    r, z, n = gru_gates(xp, hp)
    return torch.stack([torch.lerp(n, h, z), hp.chunk(3, -1)[2]])


mask = torch.tensor([1.0, 0.0, 1.0, 0.5])
CASES = [
    # name (FN in test_ops.c), torch function, input shapes, range
    ("f_add", lambda a, b: a + b, [(2, 3, 4), (4,)], (-1, 1)),
    ("f_add", lambda a, b: a + b, [(3, 1), (1, 4)], (-1, 1)),
    ("f_sub", lambda a, b: a - b, [(4,), (3, 4)], (-1, 1)),
    ("f_mul", lambda a, b: a * b, [(3, 4), (3, 1)], (-1, 1)),
    ("f_div", lambda a, b: a / b, [(3, 4), (4,)], (0.5, 2)),
    ("f_neg", lambda a: -a, [(5,)], (-1, 1)),
    ("f_affine", lambda a: -1.5 * a + 0.25, [(5,)], (-1, 1)),
    ("f_rsub", lambda a: 1.0 - a, [(5,)], (-1, 1)),
    ("f_pow", lambda a: a ** 2.5, [(6,)], (0.5, 2)),
    ("f_pow_neg", lambda a: a ** -1.5, [(6,)], (0.5, 2)),
    ("f_exp", torch.exp, [(6,)], (-2, 2)),
    ("f_log", torch.log, [(6,)], (0.2, 3)),
    ("f_sqrt", torch.sqrt, [(6,)], (0.2, 3)),
    ("f_tanh", torch.tanh, [(6,)], (-3, 3)),
    ("f_sigmoid", torch.sigmoid, [(6,)], (-5, 5)),
    ("f_relu", torch.relu, [(6,)], (-1, 1)),
    ("f_leaky", lambda a: torch.nn.functional.leaky_relu(a, 0.1), [(6,)], (-1, 1)),
    ("f_softplus", torch.nn.functional.softplus, [(6,)], (-5, 5)),
    ("f_abs", torch.abs, [(6,)], (-1, 1)),
    ("f_clamp", lambda a: torch.clamp(a, -0.5, 0.5), [(6,)], (-1, 1)),
    ("f_matmul", torch.matmul, [(3, 5), (5, 4)], (-1, 1)),
    ("f_matmul_nt", lambda a, b: a @ b.T, [(3, 5), (4, 5)], (-1, 1)),
    ("f_matmul_tn", lambda a, b: a.T @ b, [(5, 3), (5, 4)], (-1, 1)),
    ("f_linear", torch.nn.functional.linear, [(2, 3, 5), (4, 5), (4,)], (-1, 1)),
    ("f_transpose", lambda a: a.transpose(0, 2), [(2, 3, 4)], (-1, 1)),
    ("f_reshape", lambda a: a.reshape(4, -1), [(2, 3, 4)], (-1, 1)),
    ("f_select", lambda a: a[1], [(3, 2, 4)], (-1, 1)),
    ("f_slice1", lambda a: a[:, 2:5, :], [(2, 6, 3)], (-1, 1)),
    ("f_concat1", lambda a, b: torch.cat([a, b, a], 1), [(2, 1, 3), (2, 4, 3)], (-1, 1)),
    ("f_stack", lambda a, b: torch.stack([a, b, a]), [(2, 3), (2, 3)], (-1, 1)),
    ("f_sum", torch.sum, [(2, 3, 4)], (-1, 1)),
    ("f_mean", torch.mean, [(3, 4)], (-1, 1)),
    ("f_sum1k", lambda a: a.sum(1, keepdim=True), [(2, 3, 4)], (-1, 1)),
    ("f_mean_last", lambda a: a.mean(-1), [(2, 3, 4)], (-1, 1)),
    ("f_max0", lambda a: a.max(0).values, [(3, 4, 2)], (-1, 1)),
    ("f_softmax", lambda a: torch.softmax(a, -1), [(3, 5)], (-2, 2)),
    ("f_log_softmax1", lambda a: torch.log_softmax(a, 1), [(2, 4, 3)], (-2, 2)),
    ("f_gather", lambda w: w[idx], [(5, 3)], (-1, 1)),
    ("f_embedding", lambda w: torch.nn.functional.embedding(torch.tensor(idx).reshape(2, 3), w), [(5, 3)], (-1, 1)),
    ("f_mask_rows", lambda a: a * mask.reshape(4, 1, 1), [(4, 2, 3)], (-1, 1)),
    ("f_xx_times_x", lambda a: (a + a) * a, [(3, 4)], (-1, 1)),
    # added with the check that every op has a case (the earlier cases keep their numbers)
    ("f_linear_add", lambda x, w, c: c + torch.nn.functional.linear(x, w), [(3, 5), (4, 5), (3, 4)], (-1, 1)),
    ("f_gates_all", gates("tris"), [(2, 3, 12)], (-2, 2)),
    ("f_gru_gates", gru_gates, [(3, 12), (3, 12)], (-2, 2)),
    ("f_dropout", dropout, [(6, 5)], (-1, 1)),
    ("f_lstm_state", lstm_state, [(4, 3, 5), (3, 5)], (-1, 1)),
    ("f_lerp", torch.lerp, [(3, 4), (3, 4), (3, 4)], (-1, 1)),
    # the fused per-element losses (autograd/ops_loss.c), unreduced
    ("f_pwl_l1", lambda a, b: torch.nn.functional.l1_loss(a, b, reduction="none"), [(6,), (6,)], (-1, 1)),
    ("f_pwl_smooth", lambda a, b: torch.nn.functional.smooth_l1_loss(a, b, reduction="none", beta=0.6),
     [(6,), (6,)], (-1, 1)),
    ("f_pwl_huber", lambda a, b: torch.nn.functional.huber_loss(a, b, reduction="none", delta=0.4), [(6,), (6,)], (-1, 1)),
    ("f_pwl_kl", lambda a, b: torch.nn.functional.kl_div(a, b, reduction="none"), [(6,), (6,)], (0.1, 0.9)),
    ("f_pwl_kl_log", lambda a, b: torch.nn.functional.kl_div(a, b, reduction="none", log_target=True),
     [(6,), (6,)], (-1, 1)),
    ("f_pwl_bce", lambda a, b: torch.nn.functional.binary_cross_entropy(a, b, reduction="none"), [(6,), (6,)], (0.1, 0.9)),
    # CTC behind log_softmax: torch's backward returns the logits' gradient (pytorch/pytorch#52241)
    ("f_ctc_log_softmax", lambda a: torch.nn.functional.ctc_loss(
        torch.log_softmax(a, 2), torch.tensor([1, 1, 3, 2, 1]), torch.tensor([5, 4]), torch.tensor([2, 3]),
        reduction="none"), [(5, 2, 4)], (-2, 2)),
    # the fused recurrent steps (autograd/ops_fused.c); h of width R = 4 < H = 5 (projections)
    ("f_lstm_cell", lstm_cell, [(3, 20), (3, 4), (20, 4), (20,), (3, 5)], (-1, 1)),
    ("f_gru_cell", gru_cell, [(3, 12), (3, 4), (12, 4), (12,)], (-1, 1)),
]


def c_array(name, t):
    flat = t.reshape(-1).tolist()
    body = ", ".join(repr(float(v)) for v in flat) if flat else "0"
    return f"static const double {name}[] = {{{body}}};"


print("/* Generated by tests/data/gen_op_values.py with torch %s (float64). Do not edit. */" % torch.__version__)
print("#define TORCH_VERSION_OF_OP_VALUES \"%s\"" % torch.__version__)
rows = []
for k, (fn_name, fn, shapes, (lo, hi)) in enumerate(CASES):
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
