#!/usr/bin/python3
"""Generate extra conformance cases for `tapegrad grad`, in the format of tests/data/conformance
(see its README): other seeds (777001+) and sizes than the shared cases. References: torch 1.13.1
(Debian python3-torch) nn.RNN/LSTM/GRU in float64 with autograd, cross-checked against the cell
equations written out. tests/data/conformance_extra holds 158 cases of one run (every category, the
smaller files); the full run makes 344 cases (44 MB), all of which pass in both modes.

usage:
  /usr/bin/python3 tests/data/gen_conformance_extra.py [OUTDIR]           generate (default /tmp/extra/cases)
  /usr/bin/python3 tests/data/gen_conformance_extra.py --check-shared DIR  recompute refs of DIR/*.case.safetensors
"""
import json, os, struct, sys, glob
import numpy as np
import torch

torch.set_num_threads(1)
DT = {'F32': np.float32, 'F64': np.float64}
GATES = {'rnn_tanh': 1, 'rnn_relu': 1, 'lstm': 4, 'gru': 3}


# ---------------------------------------------------------------- safetensors I/O (hand-written)
def save_st(path, tensors, metadata):
    """tensors: list of (name, ndarray). Header: __metadata__ first, padded with spaces to 8."""
    hdr = {'__metadata__': {k: str(v) for k, v in metadata.items()}}
    off = 0
    blobs = []
    for name, a in tensors:
        a = np.ascontiguousarray(a)
        dt = {np.dtype(np.float32): 'F32', np.dtype(np.float64): 'F64'}[a.dtype]
        b = a.astype(a.dtype.newbyteorder('<')).tobytes()
        hdr[name] = {'dtype': dt, 'shape': list(a.shape), 'data_offsets': [off, off + len(b)]}
        off += len(b)
        blobs.append(b)
    h = json.dumps(hdr, separators=(',', ':')).encode()
    h += b' ' * ((-len(h)) % 8)
    with open(path, 'wb') as f:
        f.write(struct.pack('<Q', len(h)))
        f.write(h)
        for b in blobs:
            f.write(b)


def load_st(path):
    b = open(path, 'rb').read()
    n = struct.unpack('<Q', b[:8])[0]
    h = json.loads(b[8:8 + n])
    meta = h.pop('__metadata__', None)
    out = {}
    for k, v in h.items():
        s, e = v['data_offsets']
        out[k] = np.frombuffer(b[8 + n + s:8 + n + e], dtype=np.dtype(DT[v['dtype']]).newbyteorder('<')
                               ).reshape(v['shape']).astype(DT[v['dtype']])
    return meta, out, h


# ---------------------------------------------------------------- reference computation
def param_names(L):
    return [f'{p}_l{k}' for k in range(L) for p in ('weight_ih', 'weight_hh', 'bias_ih', 'bias_hh')]


def reference(cell, L, t):
    """t: dict of numpy inputs (any float dtype). Returns dict of float64 numpy outputs (torch.nn module)."""
    T64 = {k: torch.tensor(np.asarray(v, dtype=np.float64), dtype=torch.float64) for k, v in t.items()}
    I = T64['x'].shape[2]
    H = T64['h0'].shape[2]
    if cell in ('rnn_tanh', 'rnn_relu'):
        m = torch.nn.RNN(I, H, num_layers=L, nonlinearity=cell[4:], bias=True, batch_first=False)
    elif cell == 'lstm':
        m = torch.nn.LSTM(I, H, num_layers=L, bias=True, batch_first=False)
    else:
        m = torch.nn.GRU(I, H, num_layers=L, bias=True, batch_first=False)
    m = m.double()
    with torch.no_grad():
        for n in param_names(L):
            getattr(m, n).copy_(T64[n])
    x = T64['x'].clone().requires_grad_(True)
    h0 = T64['h0'].clone().requires_grad_(True)
    if cell == 'lstm':
        c0 = T64['c0'].clone().requires_grad_(True)
        y, (hn, cn) = m(x, (h0, c0))
        loss = (y * T64['dy']).sum() + (hn * T64['dhn']).sum() + (cn * T64['dcn']).sum()
    else:
        y, hn = m(x, h0)
        loss = (y * T64['dy']).sum() + (hn * T64['dhn']).sum()
    loss.backward()
    r = {'y': y, 'hn': hn}
    if cell == 'lstm':
        r['cn'] = cn
    r['grad.x'] = x.grad
    r['grad.h0'] = h0.grad
    if cell == 'lstm':
        r['grad.c0'] = c0.grad
    for n in param_names(L):
        r['grad.' + n] = getattr(m, n).grad
    return {k: v.detach().numpy().copy() for k, v in r.items()}


def reference_explicit(cell, L, t):
    """Same thing with the cell equations of the README written out (cross-check of reference())."""
    P = {k: torch.tensor(np.asarray(v, dtype=np.float64), requires_grad=True) for k, v in t.items()
         if k not in ('dy', 'dhn', 'dcn')}
    D = {k: torch.tensor(np.asarray(t[k], dtype=np.float64)) for k in ('dy', 'dhn', 'dcn') if k in t}
    inp = P['x']
    hns, cns = [], []
    for k in range(L):
        Wi, Wh, bi, bh = (P[f'{p}_l{k}'] for p in ('weight_ih', 'weight_hh', 'bias_ih', 'bias_hh'))
        h = P['h0'][k]
        c = P['c0'][k] if cell == 'lstm' else None
        ys = []
        for s in range(inp.shape[0]):
            xs = inp[s]
            if cell == 'rnn_tanh':
                h = torch.tanh(xs @ Wi.T + bi + h @ Wh.T + bh)
            elif cell == 'rnn_relu':
                h = torch.relu(xs @ Wi.T + bi + h @ Wh.T + bh)
            elif cell == 'lstm':
                g = xs @ Wi.T + bi + h @ Wh.T + bh
                i, f, gg, o = g.chunk(4, dim=1)
                c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(gg)
                h = torch.sigmoid(o) * torch.tanh(c)
            else:
                xr, xz, xn = (xs @ Wi.T + bi).chunk(3, dim=1)
                hr, hz, hn_ = (h @ Wh.T + bh).chunk(3, dim=1)
                r = torch.sigmoid(xr + hr)
                z = torch.sigmoid(xz + hz)
                n = torch.tanh(xn + r * hn_)
                h = (1 - z) * n + z * h
            ys.append(h)
        inp = torch.stack(ys)
        hns.append(h)
        cns.append(c)
    y = inp
    hn = torch.stack(hns)
    loss = (y * D['dy']).sum() + (hn * D['dhn']).sum()
    r = {'y': y, 'hn': hn}
    if cell == 'lstm':
        cn = torch.stack(cns)
        loss = loss + (cn * D['dcn']).sum()
        r['cn'] = cn
    loss.backward()
    for k in ['x', 'h0'] + (['c0'] if cell == 'lstm' else []) + param_names(L):
        r['grad.' + k] = P[k].grad
    return {k: v.detach().numpy().copy() for k, v in r.items()}


def ref_order(cell, L):
    o = ['y', 'hn'] + (['cn'] if cell == 'lstm' else []) + ['grad.x', 'grad.h0'] + \
        (['grad.c0'] if cell == 'lstm' else [])
    return o + ['grad.' + n for n in param_names(L)]


def ref_meta(meta, cell):
    m = dict(meta)
    m['reference'] = 'torch %s float64, torch.nn.%s + autograd' % (
        torch.__version__, {'rnn_tanh': 'RNN', 'rnn_relu': 'RNN', 'lstm': 'LSTM', 'gru': 'GRU'}[cell])
    m['loss'] = 'sum(y*dy)+sum(hn*dhn)' + ('+sum(cn*dcn)' if cell == 'lstm' else '')
    return m


# ---------------------------------------------------------------- case generation
def make_inputs(rng, cell, L, dtype, T, B, I, H, kind):
    G = GATES[cell]
    k = 1.0 / np.sqrt(H)
    t = []
    x = rng.standard_normal((T, B, I))
    h0 = rng.standard_normal((L, B, H))
    c0 = rng.standard_normal((L, B, H)) if cell == 'lstm' else None
    if kind.startswith('zero'):
        x[:] = 0
        if kind == 'zero-all':
            h0[:] = 0
            if c0 is not None:
                c0[:] = 0
    sat = 10.0 if kind == 'saturation' else 1.0
    t.append(('x', x * sat))
    t.append(('h0', h0))
    if c0 is not None:
        t.append(('c0', c0))
    for l in range(L):
        Ik = I if l == 0 else H
        t.append((f'weight_ih_l{l}', rng.uniform(-k, k, (G * H, Ik)) * sat))
        t.append((f'weight_hh_l{l}', rng.uniform(-k, k, (G * H, H))))
        t.append((f'bias_ih_l{l}', rng.uniform(-k, k, (G * H,)) * sat))
        t.append((f'bias_hh_l{l}', rng.uniform(-k, k, (G * H,)) * sat))
    t.append(('dy', rng.standard_normal((T, B, H))))
    t.append(('dhn', rng.standard_normal((L, B, H))))
    if cell == 'lstm':
        t.append(('dcn', rng.standard_normal((L, B, H))))
    return [(n, a.astype(DT[dtype])) for n, a in t]


def plan():
    """List of (cell, L, dtype, T, B, I, H, kind, seed)."""
    out = []
    base = 777000
    rng = np.random.default_rng(base)
    cells = ['rnn_tanh', 'rnn_relu', 'lstm', 'gru']
    for dtype in ('F32', 'F64'):
        for cell in cells:
            def add(kind, T, B, I, H, L=None):
                L = L if L is not None else int(rng.integers(1, 4))
                out.append((cell, L, dtype, T, B, I, H, kind))
            r = lambda lo, hi: int(rng.integers(lo, hi + 1))
            for _ in range(24):
                add('random', r(1, 40), r(1, 6), r(1, 20), r(1, 40))
            add('edge-T1', 1, r(1, 6), r(1, 20), r(1, 40))
            add('edge-B1', r(1, 40), 1, r(1, 20), r(1, 40))
            add('edge-H1', r(1, 40), r(1, 6), r(1, 20), 1)
            add('edge-I1', r(1, 40), r(1, 6), 1, r(1, 40))
            add('edge-all1', 1, 1, 1, 1)
            add('edge-all1', 1, 1, 1, 1, L=3)
            for L in (1, 2, 3, 3):
                add('saturation', r(1, 40), r(1, 6), r(1, 20), r(1, 40), L=L)
            add('zero-x', r(1, 40), r(1, 6), r(1, 20), r(1, 40))
            add('zero-x', r(1, 40), r(1, 6), r(1, 20), r(1, 40))
            add('zero-all', r(1, 40), r(1, 6), r(1, 20), r(1, 40))
            add('zero-all', r(1, 40), r(1, 6), r(1, 20), r(1, 40))
            add('long', 200, r(1, 4), r(1, 20), r(4, 40), L=1)
            add('long', 200, r(1, 4), r(1, 20), r(4, 40), L=2)
            add('bigH', r(2, 20), r(1, 4), r(1, 20), r(64, 128))
            add('bigH', r(2, 20), r(1, 4), r(1, 20), r(64, 128))
            add('bigH', r(2, 10), r(1, 3), r(1, 20), 128, L=1)
    return [p + (base + 1 + i,) for i, p in enumerate(out)]


def generate(outdir):
    os.makedirs(outdir, exist_ok=True)
    index = []
    worst_x = 0.0
    for idx, (cell, L, dtype, T, B, I, H, kind, seed) in enumerate(plan()):
        rng = np.random.default_rng(seed)
        tens = make_inputs(rng, cell, L, dtype, T, B, I, H, kind)
        name = f'x{idx:04d}_{cell}_L{L}_{dtype.lower()}_{kind}'
        meta = {'cell': cell, 'layers': L, 'dtype': dtype, 'T': T, 'B': B, 'I': I, 'H': H, 'kind': kind}
        save_st(os.path.join(outdir, name + '.case.safetensors'), tens, meta)
        # reference from exactly the stored values (re-read the file: F32 values cast up)
        m2, t2, _ = load_st(os.path.join(outdir, name + '.case.safetensors'))
        ref = reference(cell, L, t2)
        if T * L <= 600 and H <= 64:   # cross-check nn module vs explicit equations
            ex = reference_explicit(cell, L, t2)
            for k in ref:
                S = max(1.0, float(np.abs(ref[k]).max()) if ref[k].size else 1.0)
                d = float(np.abs(ref[k] - ex[k]).max() / S) if ref[k].size else 0.0
                worst_x = max(worst_x, d)
                assert d < 1e-10, (name, k, d)
        for k, v in ref.items():
            assert np.all(np.isfinite(v)), (name, k)
        save_st(os.path.join(outdir, name + '.ref.safetensors'),
                [(k, ref[k].astype(DT[dtype])) for k in ref_order(cell, L)], ref_meta(meta, cell))
        j = {'cell': cell, 'layers': L, 'dtype': dtype, 'T': T, 'B': B, 'I': I, 'H': H, 'name': name,
             'category': kind.split('-')[0] if kind.startswith(('edge', 'zero')) else kind,
             'kind': kind, 'seed': seed, 'index': idx, 'attempt': 0}
        with open(os.path.join(outdir, name + '.json'), 'w') as f:
            json.dump(j, f, indent=1)
            f.write('\n')
        index.append(j)
    with open(os.path.join(outdir, 'index.json'), 'w') as f:
        json.dump(index, f, indent=1)
    print(f'{len(index)} cases in {outdir}; worst nn-module vs explicit-equation scaled diff {worst_x:.3e}')


def check_shared(d):
    worst = {}
    n = 0
    for cf in sorted(glob.glob(os.path.join(d, '*.case.safetensors'))):
        rf = cf.replace('.case.', '.ref.')
        meta, t, _ = load_st(cf)
        rmeta, r, rh = load_st(rf)
        cell, L, dtype = meta['cell'], int(meta['layers']), meta['dtype']
        mine = reference(cell, L, t)
        assert list(rh.keys()) == ref_order(cell, L), (cf, list(rh.keys()))
        for k in r:
            assert r[k].dtype == DT[dtype] and r[k].shape == mine[k].shape, (cf, k)
            a = mine[k].astype(DT[dtype]).astype(np.float64)      # rounded like the stored ref
            ref = r[k].astype(np.float64)
            S = max(1.0, float(np.abs(ref).max()) if ref.size else 1.0)
            # compare unrounded float64 result with stored ref, in ulps of the stored dtype
            e = float(np.max(np.abs(mine[k] - ref) / S)) if ref.size else 0.0
            eq = float(np.max(np.abs(a - ref) / S)) if ref.size else 0.0
            w = worst.setdefault(dtype, [0, 0, '', 0])
            if e > w[0]:
                w[0], w[2] = e, os.path.basename(cf) + ':' + k
            w[1] = max(w[1], eq)
            w[3] += int(np.sum(a != ref))
        n += 1
    print(f'checked {n} shared cases')
    for dt, (e, eq, where, nd) in worst.items():
        print(f'  {dt}: worst |mine64 - ref|/S = {e:.3e} ({where}); after rounding to {dt}: {eq:.3e}, '
              f'{nd} elements differ')


if __name__ == '__main__':
    if len(sys.argv) >= 2 and sys.argv[1] == '--check-shared':
        check_shared(sys.argv[2] if len(sys.argv) > 2 else '/work/shared/conformance')
    else:
        generate(sys.argv[1] if len(sys.argv) > 1 else '/tmp/extra/cases')
