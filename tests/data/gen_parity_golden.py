#!/usr/bin/python3
"""Golden values for the PyTorch-parity tests (issue 12), computed by PyTorch.

Writes (next to this script):
  parity_golden.h  edge cases of cross-entropy / NLL (every target ignored), of clip_grad_norm_ (NaN
                   and inf gradients for every norm type, norms at and around the threshold), in
                   float64 and float32

Run: /usr/bin/python3 tests/data/gen_parity_golden.py   (Debian's python3-torch; the version used is
written into the header). The tests only read the header: no Python is needed at test time.
"""
import math
import os
import subprocess

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
TORCH = torch.__version__
try:
    TORCH += " (Debian python3-torch %s)" % subprocess.run(
        ["dpkg-query", "-W", "-f=${Version}", "python3-torch"], capture_output=True, text=True, check=True).stdout
except Exception:
    pass
F = torch.nn.functional


def c_double(x):
    x = float(x)
    if math.isnan(x):
        return "NAN"
    if math.isinf(x):
        return "INFINITY" if x > 0 else "-INFINITY"
    return repr(x)


def c_array(values):
    vals = [c_double(v) for v in values]
    if not vals:
        return "{0}"
    lines, line = [], ""
    for v in vals:
        piece = v + ", "
        if len(line) + len(piece) > 100:
            lines.append(line.rstrip())
            line = ""
        line += piece
    lines.append(line.rstrip().rstrip(","))
    return "{" + "\n    ".join(lines) + "}"


def c_ints(values):
    return "{" + ", ".join(str(int(v)) for v in values) + "}" if len(values) else "{0}"


def flat(t):
    return [float(v) for v in t.detach().reshape(-1).tolist()]


# ---- cross-entropy / NLL: every target ignored ---------------------------------------------------

def ce_section(out):
    """Each case: logits [N,C], int targets, options; torch's loss and d loss / d logits (f64, f32)."""
    gl = torch.Generator().manual_seed(12)
    N, C = 4, 3
    logits = torch.randn(N, C, generator=gl, dtype=torch.float64) * 2
    weight = torch.tensor([0.0, 0.7, 1.3], dtype=torch.float64)  # class 0 weighs 0
    cases = [
        # name, targets, kwargs for F.cross_entropy / F.nll_loss, use nll
        ("ce_all_ignored_mean", [-100, -100, -100, -100], dict(), False),
        ("ce_all_ignored_sum", [-100, -100, -100, -100], dict(reduction="sum"), False),
        ("ce_all_ignored_none", [-100, -100, -100, -100], dict(reduction="none"), False),
        ("ce_all_ignored_weight_mean", [-100, -100, -100, -100], dict(weight=weight), False),
        ("ce_all_ignored_smooth_mean", [-100, -100, -100, -100], dict(label_smoothing=0.2), False),
        ("ce_all_ignore_index2_mean", [2, 2, 2, 2], dict(ignore_index=2), False),
        ("nll_all_ignored_mean", [-100, -100, -100, -100], dict(), True),
        # zero total weight with rows that are not ignored: torch's gradient is NaN on those rows only
        ("ce_zero_weight_mean", [0, -100, 0, -100], dict(weight=weight), False),
        ("nll_zero_weight_mean", [0, -100, 0, -100], dict(weight=weight), True),
        # one real row among padding: ordinary mean
        ("ce_one_real_row_mean", [-100, 1, -100, -100], dict(), False),
    ]
    out.append("#define PG_CE_N %d" % N)
    out.append("#define PG_CE_C %d" % C)
    out.append("static const double pg_ce_logits[%d] = %s;" % (N * C, c_array(flat(logits))))
    out.append("static const double pg_ce_weight[%d] = %s;" % (C, c_array(flat(weight))))
    out.append("typedef struct pg_ce_case {")
    out.append("    const char *name;")
    out.append("    int64_t target[PG_CE_N];")
    out.append("    int64_t ignore_index;")
    out.append("    int reduction;             /* 0 mean, 1 sum, 2 none (tg_reduction order) */")
    out.append("    bool weight, nll;          /* class weights pg_ce_weight; nll: NLL with the logits as log-probs */")
    out.append("    double label_smoothing;")
    out.append("    int n_out;")
    out.append("    double out64[PG_CE_N], grad64[PG_CE_N * PG_CE_C]; /* d sum(out) / d logits, float64 */")
    out.append("    double out32[PG_CE_N], grad32[PG_CE_N * PG_CE_C]; /* the same in float32 */")
    out.append("} pg_ce_case;")
    out.append("static const pg_ce_case pg_ce_cases[] = {")
    red_index = {"mean": 0, "sum": 1, "none": 2}
    for name, tgt, kw, nll in cases:
        res = {}
        for dt in (torch.float64, torch.float32):
            x = logits.to(dt).clone().requires_grad_(True)
            k = dict(kw)
            if "weight" in k:
                k["weight"] = k["weight"].to(dt)
            t = torch.tensor(tgt, dtype=torch.int64)
            if nll:
                k.pop("label_smoothing", None)
                y = F.nll_loss(x, t, **k)  # the logits taken as log-probabilities
            else:
                y = F.cross_entropy(x, t, **k)
            y.sum().backward()
            res[dt] = (flat(y), flat(x.grad))
        o64, g64 = res[torch.float64]
        o32, g32 = res[torch.float32]
        out.append("    {\"%s\", %s, %d, %d, %s, %s, %s, %d,\n     %s, %s,\n     %s, %s}," % (
            name, c_ints(tgt), kw.get("ignore_index", -100), red_index[kw.get("reduction", "mean")],
            "true" if "weight" in kw else "false", "true" if nll else "false",
            c_double(kw.get("label_smoothing", 0.0)), len(o64), c_array(o64), c_array(g64), c_array(o32),
            c_array(g32)))
    out.append("};")
    out.append("#define PG_N_CE_CASES (int)(sizeof pg_ce_cases / sizeof pg_ce_cases[0])")
    out.append("")


# ---- clip_grad_norm_: non-finite gradients and the threshold ---------------------------------------

def clip_section(out):
    """Two gradients g1 [3], g2 [2]; torch.nn.utils.clip_grad_norm_ in float64 and float32."""
    base1, base2 = [0.6, -0.8, 0.0], [0.0, 0.0]  # 2-norm 1, inf-norm 0.8, 1-norm 1.4
    cases = []
    for nt in (2.0, math.inf, 1.0, 3.0):
        for where in ("nan_first", "nan_last", "inf"):
            g1, g2 = [1.0, -2.0, 0.5], [3.0, -4.0]
            if where == "nan_first":
                g1[0] = math.nan
            elif where == "nan_last":
                g2[1] = math.nan
            else:
                g1[1] = -math.inf
            cases.append(("%s_norm%s" % (where, "inf" if math.isinf(nt) else "%g" % nt), g1, g2, 1.0, nt))
    # the threshold: a 2-norm of exactly 1 with max_norm 1, 1 + 5e-7, 1 - 5e-7, 1 + 1e-6, 1 - 2e-6
    for label, mx in (("at", 1.0), ("above5e7", 1.0 + 5e-7), ("below5e7", 1.0 - 5e-7), ("above1e6", 1.0 + 1e-6),
                      ("below2e6", 1.0 - 2e-6)):
        cases.append(("threshold_" + label, list(base1), list(base2), mx, 2.0))
    # a norm of 1e-6 and max_norm 1e-6: torch scales by 1e-6 / 2e-6 = 0.5
    cases.append(("tiny_norm", [6e-7, -8e-7, 0.0], [0.0, 0.0], 1e-6, 2.0))
    cases.append(("zero_grads", [0.0, 0.0, 0.0], [0.0, 0.0], 1.0, 2.0))
    cases.append(("max_norm_zero", [1.0, -2.0, 0.5], [3.0, -4.0], 0.0, 2.0))
    cases.append(("inf_norm_threshold", [0.6, -0.8, 0.0], [0.0, 0.0], 0.8, math.inf))
    out.append("typedef struct pg_clip_case {")
    out.append("    const char *name;")
    out.append("    double g1[3], g2[2];          /* gradients before clipping */")
    out.append("    double max_norm, norm_type;")
    out.append("    bool raises;                  /* error_if_nonfinite=True raises (nothing is scaled then) */")
    out.append("    double total64, g1_64[3], g2_64[2]; /* returned norm, gradients after clipping: float64 */")
    out.append("    double total32, g1_32[3], g2_32[2]; /* the same with float32 gradients */")
    out.append("} pg_clip_case;")
    out.append("static const pg_clip_case pg_clip_cases[] = {")
    for name, g1, g2, mx, nt in cases:
        res = {}
        for dt in (torch.float64, torch.float32):
            a = torch.zeros(3, dtype=dt, requires_grad=True)
            b = torch.zeros(2, dtype=dt, requires_grad=True)
            a.grad = torch.tensor(g1, dtype=dt)
            b.grad = torch.tensor(g2, dtype=dt)
            total = torch.nn.utils.clip_grad_norm_([a, b], mx, norm_type=nt)
            res[dt] = (float(total), flat(a.grad), flat(b.grad))
        a = torch.zeros(3, dtype=torch.float64, requires_grad=True)
        b = torch.zeros(2, dtype=torch.float64, requires_grad=True)
        a.grad = torch.tensor(g1, dtype=torch.float64)
        b.grad = torch.tensor(g2, dtype=torch.float64)
        try:
            torch.nn.utils.clip_grad_norm_([a, b], mx, norm_type=nt, error_if_nonfinite=True)
            raises = False
        except RuntimeError:
            raises = True
        t64, a64, b64 = res[torch.float64]
        t32, a32, b32 = res[torch.float32]
        out.append("    {\"%s\", %s, %s, %s, %s, %s,\n     %s, %s, %s,\n     %s, %s, %s}," % (
            name, c_array(g1), c_array(g2), c_double(mx), c_double(nt), "true" if raises else "false",
            c_double(t64), c_array(a64), c_array(b64), c_double(t32), c_array(a32), c_array(b32)))
    out.append("};")
    out.append("#define PG_N_CLIP_CASES (int)(sizeof pg_clip_cases / sizeof pg_clip_cases[0])")
    out.append("")


def main():
    torch.set_num_threads(1)
    out = ["/* tests/data/parity_golden.h - generated by gen_parity_golden.py with torch %s; do not edit." % TORCH,
           " * PyTorch-parity edge cases: cross-entropy with every target ignored, clip_grad_norm_ */",
           "#ifndef TG_PARITY_GOLDEN_H", "#define TG_PARITY_GOLDEN_H", "#include <math.h>", "#include <stdbool.h>",
           "#include <stdint.h>", "#define PG_TORCH_VERSION \"%s\"" % TORCH, ""]
    ce_section(out)
    clip_section(out)
    out.append("#endif")
    with open(os.path.join(HERE, "parity_golden.h"), "w") as f:
        f.write("\n".join(out) + "\n")
    print("wrote parity_golden.h with torch", TORCH)


if __name__ == "__main__":
    main()
