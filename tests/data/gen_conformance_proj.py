#!/usr/bin/python3
"""Conformance cases for `tapegrad grad` with LSTM projections (issue 12.2), in the format of
tests/data/conformance (see its README) plus weight_hr_l{k} [P, H]: torch.nn.LSTM(proj_size=P) then has
weight_hh_l{k} [4H, P], h0 / hn / dhn [L,B,P], dy [T,B,P], c0 / cn / dcn [L,B,H]. References: torch 1.13
float64 (torch.nn.LSTM + autograd) from exactly the stored values (F32 inputs cast up), stored in the
case's dtype; loss = sum(y*dy) + sum(hn*dhn) + sum(cn*dcn).

usage: /usr/bin/python3 tests/data/gen_conformance_proj.py [OUTDIR]   (default: tests/data/conformance_proj)
"""
import json
import os
import sys

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from gen_conformance_extra import save_st  # noqa: E402

DT = {'F32': np.float32, 'F64': np.float64}
# dtype, layers, T, B, I, H, P
PLAN = [('F64', 1, 6, 3, 4, 5, 2), ('F64', 2, 5, 2, 3, 7, 4), ('F64', 3, 4, 2, 2, 4, 1), ('F64', 1, 1, 1, 1, 2, 1),
        ('F32', 1, 8, 4, 5, 6, 3), ('F32', 2, 6, 3, 4, 8, 5), ('F32', 3, 3, 1, 3, 3, 2), ('F32', 2, 20, 2, 6, 16, 8)]


def names(L):
    return ['%s_l%d' % (b, k) for k in range(L) for b in ('weight_ih', 'weight_hh', 'bias_ih', 'bias_hh', 'weight_hr')]


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(HERE, 'conformance_proj')
    os.makedirs(out, exist_ok=True)
    for i, (dtype, L, T, B, I, H, P) in enumerate(PLAN):
        rng = np.random.default_rng(880001 + i)
        dt = DT[dtype]
        k = 1 / np.sqrt(H)
        t = {'x': rng.standard_normal((T, B, I)), 'h0': rng.uniform(-1, 1, (L, B, P)), 'c0': rng.uniform(-1, 1, (L, B, H))}
        for layer in range(L):
            Ik = I if layer == 0 else P
            for n, shape in (('weight_ih', (4 * H, Ik)), ('weight_hh', (4 * H, P)), ('bias_ih', (4 * H,)),
                             ('bias_hh', (4 * H,)), ('weight_hr', (P, H))):
                t['%s_l%d' % (n, layer)] = rng.uniform(-k, k, shape)
        t.update({'dy': rng.standard_normal((T, B, P)), 'dhn': rng.standard_normal((L, B, P)),
                  'dcn': rng.standard_normal((L, B, H))})
        t = {n: v.astype(dt) for n, v in t.items()}  # the stored values; the reference starts from them
        order = ['x', 'h0', 'c0'] + names(L) + ['dy', 'dhn', 'dcn']
        name = 'p%04d_lstm_L%d_%s_proj%d' % (i + 1, L, dtype.lower(), P)
        meta = {'cell': 'lstm', 'layers': L, 'dtype': dtype, 'T': T, 'B': B, 'I': I, 'H': H, 'proj_size': P,
                'name': name}
        save_st(os.path.join(out, name + '.case.safetensors'), [(n, t[n]) for n in order], meta)
        T64 = {n: torch.tensor(v.astype(np.float64)) for n, v in t.items()}
        lstm = torch.nn.LSTM(I, H, num_layers=L, proj_size=P, dtype=torch.float64)
        with torch.no_grad():
            for n, p in lstm.named_parameters():
                p.copy_(T64[n])
        x, h0, c0 = (T64[n].clone().requires_grad_(True) for n in ('x', 'h0', 'c0'))
        y, (hn, cn) = lstm(x, (h0, c0))
        ((y * T64['dy']).sum() + (hn * T64['dhn']).sum() + (cn * T64['dcn']).sum()).backward()
        ref = [('y', y), ('hn', hn), ('cn', cn), ('grad.x', x.grad), ('grad.h0', h0.grad), ('grad.c0', c0.grad)]
        ref += [('grad.' + n, p.grad) for n, p in lstm.named_parameters()]
        rmeta = dict(meta, reference='torch %s float64, torch.nn.LSTM(proj_size=%d) + autograd' % (torch.__version__, P),
                     loss='sum(y*dy)+sum(hn*dhn)+sum(cn*dcn)')
        save_st(os.path.join(out, name + '.ref.safetensors'),
                [(n, v.detach().numpy().astype(dt)) for n, v in ref], rmeta)
        with open(os.path.join(out, name + '.json'), 'w') as f:
            json.dump(dict(meta, seed=880001 + i), f, indent=1)
    print('%d cases in %s' % (len(PLAN), out))


if __name__ == '__main__':
    main()
