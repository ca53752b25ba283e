#!/usr/bin/python3
"""Golden values for the losses added for PyTorch parity (tests/test_loss.c): L1, smooth L1, Huber,
KL divergence, binary cross-entropy on probabilities, cross-entropy with probability targets and
cross-entropy / NLL on [N,C,d1,...] inputs, computed by PyTorch in float64.

Run: /usr/bin/python3 tests/data/gen_loss_extra_golden.py   (writes loss_extra_golden.h beside it;
the torch version is written into the header). Tests only read the header.

Every case stores the input x, the target y (or class indices), the output and the gradients of
sum(output) with respect to x and, where torch differentiates it, y. Edge cases are part of the data:
NaN inputs, x == y (the kink of L1), beta = 0, zero targets of KL (whose target gradient is NaN in
torch), probabilities exactly 0 and 1 for BCE (torch clamps the log at -100 and divides the
gradient by max(x(1-x), 1e-12)), ignored targets in [N,C,d] inputs."""
import os
import sys

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from gen_optim_golden import TORCH, c_double, flat  # noqa: E402  (shared formatting, torch version)

F = torch.nn.functional
torch.set_default_dtype(torch.float64)
g = torch.Generator().manual_seed(20261202)


def rand(*shape, lo=-1.0, hi=1.0):
    return torch.rand(*shape, generator=g) * (hi - lo) + lo


def c_list(vals):
    return "{" + ", ".join(c_double(v) for v in vals) + "}"


N, C = 4, 3
x2 = rand(N, C, lo=-2, hi=2)
y2 = rand(N, C, lo=-2, hi=2)
# edge elements: a NaN in the input, x == y, a difference exactly at beta / delta = 0.5
x_edge = x2.clone()
y_edge = y2.clone()
x_edge[0, 1] = float("nan")
y_edge[1, 2] = x_edge[1, 2]
y_edge[2, 0] = x_edge[2, 0] - 0.5
logp = F.log_softmax(rand(N, C, lo=-2, hi=2), 1)
p_tgt = F.softmax(rand(N, C, lo=-2, hi=2), 1)
p_tgt_zero = p_tgt.clone()
p_tgt_zero[1, 0] = 0.0
p_tgt_zero[3, 2] = 0.0
logp_tgt = F.log_softmax(rand(N, C, lo=-2, hi=2), 1)
prob = rand(N, C, lo=0.02, hi=0.98)
prob_edge = prob.clone()
prob_edge[0, 0], prob_edge[1, 1], prob_edge[2, 2], prob_edge[3, 0] = 0.0, 1.0, 1e-30, 1.0 - 1e-15
bt = rand(N, C, lo=0, hi=1)
bw = rand(C, lo=0.5, hi=1.5)
cw = rand(C, lo=0.2, hi=1.2)
# [N,C,d1,d2] inputs
D1, D2 = 2, 3
x4 = rand(2, C, D1, D2, lo=-3, hi=3)
p4 = F.softmax(rand(2, C, D1, D2, lo=-2, hi=2), 1)
t4 = torch.randint(0, C, (2, D1, D2), generator=g)
t4[0, 1, 2] = -100
t4[1, 0, 0] = -100

# name, C call kind, reduction, param, x, y (tensor or class indices), weight, y differentiated, torch fn
R = {"mean": "TG_REDUCE_MEAN", "sum": "TG_REDUCE_SUM", "none": "TG_REDUCE_NONE", "batchmean": "TG_REDUCE_BATCHMEAN"}
CASES = []


def case(name, fn, red, param, x, y, w, ydiff, torch_fn):
    CASES.append((name, fn, red, param, x, y, w, ydiff, torch_fn))


for red in ("mean", "sum", "none"):
    case("l1_" + red, "l1", red, 0.0, x_edge, y_edge, None, True, lambda x, y, red=red: F.l1_loss(x, y, reduction=red))
case("smooth_l1_default_mean", "smooth_l1", "mean", 1.0, x_edge, y_edge, None, True,
     lambda x, y: F.smooth_l1_loss(x, y))
case("smooth_l1_b0.5_none", "smooth_l1", "none", 0.5, x_edge, y_edge, None, True,
     lambda x, y: F.smooth_l1_loss(x, y, reduction="none", beta=0.5))
case("smooth_l1_b0_none", "smooth_l1", "none", 0.0, x_edge, y_edge, None, True,
     lambda x, y: F.smooth_l1_loss(x, y, reduction="none", beta=0.0))
case("smooth_l1_b2.5_sum", "smooth_l1", "sum", 2.5, x2, y2, None, True,
     lambda x, y: F.smooth_l1_loss(x, y, reduction="sum", beta=2.5))
case("huber_default_mean", "huber", "mean", 1.0, x_edge, y_edge, None, True, lambda x, y: F.huber_loss(x, y))
case("huber_d0.5_none", "huber", "none", 0.5, x_edge, y_edge, None, True,
     lambda x, y: F.huber_loss(x, y, reduction="none", delta=0.5))
case("huber_d0.3_sum", "huber", "sum", 0.3, x2, y2, None, True,
     lambda x, y: F.huber_loss(x, y, reduction="sum", delta=0.3))
for red in ("batchmean", "mean", "sum", "none"):
    case("kl_" + red, "kl", red, 0.0, logp, p_tgt, None, True,
         lambda x, y, red=red: F.kl_div(x, y, reduction=red))
    case("kl_log_target_" + red, "kl_log", red, 0.0, logp, logp_tgt, None, True,
         lambda x, y, red=red: F.kl_div(x, y, reduction=red, log_target=True))
case("kl_zero_target_none", "kl", "none", 0.0, logp, p_tgt_zero, None, True,
     lambda x, y: F.kl_div(x, y, reduction="none"))
case("kl_zero_target_batchmean", "kl", "batchmean", 0.0, logp, p_tgt_zero, None, False,
     lambda x, y: F.kl_div(x, y, reduction="batchmean"))
for red in ("mean", "sum", "none"):
    case("bce_" + red, "bce", red, 0.0, prob, bt, None, True,
         lambda x, y, red=red: F.binary_cross_entropy(x, y, reduction=red))
case("bce_edge_none", "bce", "none", 0.0, prob_edge, bt, None, True,
     lambda x, y: F.binary_cross_entropy(x, y, reduction="none"))
case("bce_edge_weight_mean", "bce", "mean", 0.0, prob_edge, bt, bw, True,
     lambda x, y: F.binary_cross_entropy(x, y, weight=bw))
for red in ("mean", "sum", "none"):
    case("ce_probs_" + red, "ce_probs", red, 0.0, x2, p_tgt, None, True,
         lambda x, y, red=red: F.cross_entropy(x, y, reduction=red))
case("ce_probs_weight_smooth_mean", "ce_probs", "mean", 0.2, x2, p_tgt, cw, True,
     lambda x, y: F.cross_entropy(x, y, weight=cw, label_smoothing=0.2))
case("ce_probs_4d_none", "ce_probs", "none", 0.0, x4, p4, None, True,
     lambda x, y: F.cross_entropy(x, y, reduction="none"))
case("ce_probs_4d_weight_mean", "ce_probs", "mean", 0.0, x4, p4, cw, True,
     lambda x, y: F.cross_entropy(x, y, weight=cw))
case("ce_4d_mean", "ce_idx", "mean", 0.0, x4, t4, None, False, lambda x, y: F.cross_entropy(x, y))
case("ce_4d_sum", "ce_idx", "sum", 0.0, x4, t4, None, False, lambda x, y: F.cross_entropy(x, y, reduction="sum"))
case("ce_4d_none", "ce_idx", "none", 0.0, x4, t4, None, False, lambda x, y: F.cross_entropy(x, y, reduction="none"))
case("ce_4d_weight_smooth_mean", "ce_idx", "mean", 0.1, x4, t4, cw, False,
     lambda x, y: F.cross_entropy(x, y, weight=cw, label_smoothing=0.1))
case("nll_4d_weight_none", "nll_idx", "none", 0.0, F.log_softmax(x4, 1), t4, cw, False,
     lambda x, y: F.nll_loss(x, y, weight=cw, reduction="none"))
case("nll_4d_all_ignored_mean", "nll_idx", "mean", 0.0, F.log_softmax(x4, 1), torch.full_like(t4, -100), None,
     False, lambda x, y: F.nll_loss(x, y))


def main():
    out = ["/* tests/data/loss_extra_golden.h - generated by gen_loss_extra_golden.py with torch %s; do not edit." % TORCH,
           " * L1, smooth L1, Huber, KL, BCE on probabilities, CE with probability targets and on [N,C,d1,d2]:",
           " * values and gradients of sum(output) with respect to input and target (float64) */",
           "#ifndef TG_LOSS_EXTRA_GOLDEN_H", "#define TG_LOSS_EXTRA_GOLDEN_H", "#include <math.h>",
           "#include <stdint.h>", "#include <tapegrad/loss.h>", ""]
    rows = []
    for k, (name, fn, red, param, x0, y0, w, ydiff, tfn) in enumerate(CASES):
        x = x0.clone().requires_grad_(True)
        is_idx = y0.dtype == torch.int64
        y = y0.clone() if is_idx else y0.clone().requires_grad_(ydiff)
        o = tfn(x, y)
        o.sum().backward()
        out.append("static const double ex%d_x[] = %s;" % (k, c_list(flat(x))))
        if is_idx:
            out.append("static const int64_t ex%d_t[] = {%s};" % (k, ", ".join(str(int(v)) for v in y.reshape(-1))))
            out.append("static const double ex%d_y[] = {0};" % k)
        else:
            out.append("static const double ex%d_y[] = %s;" % (k, c_list(flat(y))))
        out.append("static const double ex%d_out[] = %s;" % (k, c_list(flat(o))))
        out.append("static const double ex%d_gx[] = %s;" % (k, c_list(flat(x.grad))))
        if ydiff:
            out.append("static const double ex%d_gy[] = %s;" % (k, c_list(flat(y.grad))))
        if w is not None:
            out.append("static const double ex%d_w[] = %s;" % (k, c_list(flat(w))))
        shape = ", ".join(str(d) for d in x.shape)
        rows.append('    {"%s", "%s", %s, %s, %d, {%s}, ex%d_x, ex%d_y, %s, %s, %d, ex%d_out, ex%d_gx, %s, %d},' % (
            name, fn, R[red], c_double(param), x.dim(), shape, k, k, "ex%d_t" % k if is_idx else "NULL",
            "ex%d_w" % k if w is not None else "NULL", o.numel(), k, k, "ex%d_gy" % k if ydiff else "NULL",
            o.dim()))
    out.append("typedef struct golden_extra_loss {")
    out.append("    const char *name, *fn;   /* fn: l1 smooth_l1 huber kl kl_log bce ce_probs ce_idx nll_idx */")
    out.append("    tg_reduction reduction;")
    out.append("    double param;            /* beta, delta or label_smoothing */")
    out.append("    int ndim;")
    out.append("    int64_t shape[4];        /* of the input */")
    out.append("    const double *x, *y;     /* input, target (probabilities or values; unused for class indices) */")
    out.append("    const int64_t *target;   /* class indices ([N,d1,...]) or NULL */")
    out.append("    const double *weight;    /* [C] or NULL */")
    out.append("    int n_out;")
    out.append("    const double *out;")
    out.append("    const double *gx, *gy;   /* d sum(out) / d input, / d target (NULL: target not differentiated) */")
    out.append("    int out_ndim;")
    out.append("} golden_extra_loss;")
    out.append("static const golden_extra_loss golden_extra_losses[] = {")
    out.extend(rows)
    out.append("};")
    out.append("#define GOLDEN_N_EXTRA_LOSSES (int)(sizeof golden_extra_losses / sizeof golden_extra_losses[0])")
    out.append("#endif")
    with open(os.path.join(HERE, "loss_extra_golden.h"), "w") as f:
        f.write("\n".join(out) + "\n")
    print("wrote loss_extra_golden.h: %d cases, torch %s" % (len(CASES), TORCH))


if __name__ == "__main__":
    main()
