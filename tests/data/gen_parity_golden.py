#!/usr/bin/python3
"""Golden values for the PyTorch-parity tests (issue 12), computed by PyTorch.

Writes (next to this script):
  parity_golden.h  edge cases of cross-entropy / NLL (every target ignored), of clip_grad_norm_ (NaN
                   and inf gradients for every norm type, norms at and around the threshold), in
                   float64 and float32; LR schedules (LambdaLR, MultiplicativeLR, OneCycleLR, CyclicLR,
                   CosineAnnealingWarmRestarts, SequentialLR, ChainedScheduler, per-group min_lr of
                   ReduceLROnPlateau): both groups' lr and momentum over 30 epochs

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


# ---- LR schedules -----------------------------------------------------------------------------------

SCHED_EPOCHS = 30
SCHED_BASE = (0.1, 0.05)
PLATEAU_METRICS = [1.0, 0.9, 0.95, 0.91, 0.92, 0.93, 0.85, 0.86, 0.87, 0.88, 0.89, 0.849, 0.8, 0.8, 0.8,
                   0.8, 0.8, 0.8, 0.7, 0.7, 0.7, 0.7, 0.7, 0.7, 0.7, 0.7, 0.7, 0.7, 0.7, 0.7]
LS = torch.optim.lr_scheduler


def lam0(e):
    return 1.0 / (1.0 + e)


def lam1(e):
    return 0.9 ** e


def mul0(e):
    return 0.95


def mul1(e):
    return 1.0 - 0.01 * e


# name, optimizer ("sgd": SGD momentum 0.9, "adam": Adam), C body building the schedule into m[] and
# returning it (members first, in order: each constructor steps the lr, like torch's), torch builder
SCHED_CASES = [
    ("lambda", "sgd", "return tg_sched_lambda(opt, pg_lambda, NULL);",
     lambda o: LS.LambdaLR(o, [lam0, lam1])),
    ("multiplicative", "sgd", "return tg_sched_multiplicative(opt, pg_mult, NULL);",
     lambda o: LS.MultiplicativeLR(o, [mul0, mul1])),
    ("onecycle_cos", "sgd", "tg_onecycle_opts o = tg_onecycle_defaults(1.0, 30); return tg_sched_onecycle(opt, &o);",
     lambda o: LS.OneCycleLR(o, max_lr=1.0, total_steps=30)),
    ("onecycle_linear_three_phase_adam", "adam",
     "tg_onecycle_opts o = tg_onecycle_defaults(0.5, 40); o.anneal_linear = true; o.three_phase = true; "
     "o.pct_start = 0.25; return tg_sched_onecycle(opt, &o);",
     lambda o: LS.OneCycleLR(o, max_lr=0.5, total_steps=40, anneal_strategy="linear", three_phase=True,
                             pct_start=0.25)),
    ("onecycle_groups_no_momentum", "sgd",
     "tg_onecycle_opts o = tg_onecycle_defaults(0, 31); o.max_lrs = (const double[]){1.0, 0.5}; "
     "o.cycle_momentum = false; o.div_factor = 10; o.final_div_factor = 100; o.pct_start = 0.4; "
     "return tg_sched_onecycle(opt, &o);",
     lambda o: LS.OneCycleLR(o, max_lr=[1.0, 0.5], total_steps=31, cycle_momentum=False, div_factor=10,
                             final_div_factor=100, pct_start=0.4)),
    ("cyclic_triangular", "sgd",
     "tg_cyclic_opts o = tg_cyclic_defaults(0.01, 0.1); o.step_size_up = 4; o.step_size_down = 3; "
     "return tg_sched_cyclic(opt, &o);",
     lambda o: LS.CyclicLR(o, base_lr=0.01, max_lr=0.1, step_size_up=4, step_size_down=3)),
    ("cyclic_triangular2", "sgd",
     "tg_cyclic_opts o = tg_cyclic_defaults(0.01, 0.1); o.step_size_up = 3; o.mode = TG_CYCLIC_TRIANGULAR2; "
     "o.base_lrs = (const double[]){0.01, 0.02}; return tg_sched_cyclic(opt, &o);",
     lambda o: LS.CyclicLR(o, base_lr=[0.01, 0.02], max_lr=0.1, step_size_up=3, mode="triangular2")),
    ("cyclic_exp_range", "sgd",
     "tg_cyclic_opts o = tg_cyclic_defaults(0.001, 0.2); o.step_size_up = 2; o.step_size_down = 4; "
     "o.mode = TG_CYCLIC_EXP_RANGE; o.gamma = 0.9; o.cycle_momentum = false; return tg_sched_cyclic(opt, &o);",
     lambda o: LS.CyclicLR(o, base_lr=0.001, max_lr=0.2, step_size_up=2, step_size_down=4, mode="exp_range",
                           gamma=0.9, cycle_momentum=False)),
    ("warm_restarts", "sgd", "return tg_sched_warm_restarts(opt, 5, 1, 0.001);",
     lambda o: LS.CosineAnnealingWarmRestarts(o, T_0=5, T_mult=1, eta_min=0.001)),
    ("warm_restarts_mult2", "sgd", "return tg_sched_warm_restarts(opt, 3, 2, 0.0);",
     lambda o: LS.CosineAnnealingWarmRestarts(o, T_0=3, T_mult=2)),
    ("sequential_warmup_cosine", "sgd",
     "m[0] = tg_sched_linear(opt, 0.1, 1.0, 5); m[1] = tg_sched_cosine(opt, 10, 0.001); "
     "return tg_sched_sequential(opt, 2, m, (const int64_t[]){5});",
     lambda o: LS.SequentialLR(o, [LS.LinearLR(o, 0.1, 1.0, 5), LS.CosineAnnealingLR(o, 10, 0.001)], [5])),
    ("sequential_three", "sgd",
     "m[0] = tg_sched_exponential(opt, 0.9); m[1] = tg_sched_step_lr(opt, 3, 0.5); "
     "m[2] = tg_sched_warm_restarts(opt, 4, 2, 0.0); return tg_sched_sequential(opt, 3, m, (const int64_t[]){4, 10});",
     lambda o: LS.SequentialLR(o, [LS.ExponentialLR(o, 0.9), LS.StepLR(o, 3, 0.5),
                                   LS.CosineAnnealingWarmRestarts(o, 4, 2)], [4, 10])),
    ("chained_step_exponential", "sgd",
     "m[0] = tg_sched_step_lr(opt, 2, 0.5); m[1] = tg_sched_exponential(opt, 0.9); return tg_sched_chained(2, m);",
     lambda o: LS.ChainedScheduler([LS.StepLR(o, 2, 0.5), LS.ExponentialLR(o, 0.9)])),
    ("chained_linear_cosine_multistep", "sgd",
     "m[0] = tg_sched_linear(opt, 0.5, 1.0, 4); m[1] = tg_sched_cosine(opt, 8, 0.0); "
     "m[2] = tg_sched_multistep(opt, 2, (const int64_t[]){6, 12}, 0.3); return tg_sched_chained(3, m);",
     lambda o: LS.ChainedScheduler([LS.LinearLR(o, 0.5, 1.0, 4), LS.CosineAnnealingLR(o, 8, 0.0),
                                    LS.MultiStepLR(o, [6, 12], 0.3)])),
    ("plateau_group_min_lr", "sgd",
     "tg_plateau_opts o = tg_plateau_defaults(); o.factor = 0.5; o.patience = 1; "
     "o.min_lrs = (const double[]){0.02, 0.03}; return tg_sched_plateau(opt, &o);",
     lambda o: LS.ReduceLROnPlateau(o, factor=0.5, patience=1, min_lr=[0.02, 0.03])),
]


def sched_section(out):
    out.append("#define PG_SCHED_EPOCHS %d" % SCHED_EPOCHS)
    out.append("static const double pg_sched_base_lr[2] = %s;" % c_array(SCHED_BASE))
    out.append("static const double pg_plateau_metrics[PG_SCHED_EPOCHS] = %s;" % c_array(PLATEAU_METRICS))
    out.append("typedef struct pg_sched_case {")
    out.append("    const char *name;")
    out.append("    bool adam;                            /* Adam (betas 0.9, 0.999), else SGD momentum 0.9 */")
    out.append("    double lr[PG_SCHED_EPOCHS][2];        /* both groups' lr at epochs 0 (creation) .. EPOCHS-1 */")
    out.append("    double momentum[PG_SCHED_EPOCHS][2];  /* SGD's momentum / Adam's beta1 */")
    out.append("} pg_sched_case;")
    out.append("/* plateau cases are stepped with pg_plateau_metrics[e - 1] */")
    out.append("static const pg_sched_case pg_sched_cases[] = {")
    makers = []
    for name, kind, body, make in SCHED_CASES:
        w = torch.zeros(1, requires_grad=True)
        v = torch.zeros(1, requires_grad=True)
        groups = [dict(params=[w], lr=SCHED_BASE[0]), dict(params=[v], lr=SCHED_BASE[1])]
        opt = torch.optim.Adam(groups) if kind == "adam" else torch.optim.SGD(groups, momentum=0.9)

        def mom():
            return [g["betas"][0] if kind == "adam" else g["momentum"] for g in opt.param_groups]
        sch = make(opt)
        lrs, moms = [[g["lr"] for g in opt.param_groups]], [mom()]
        for e in range(1, SCHED_EPOCHS):
            opt.step()
            if name.startswith("plateau"):
                sch.step(PLATEAU_METRICS[e - 1])
            else:
                sch.step()
            lrs.append([g["lr"] for g in opt.param_groups])
            moms.append(mom())
        pair = lambda rows: ", ".join("{%s, %s}" % (c_double(a), c_double(b)) for a, b in rows)
        out.append("    {\"%s\", %s,\n     {%s},\n     {%s}}," % (name, "true" if kind == "adam" else "false",
                                                             pair(lrs), pair(moms)))
        makers.append("    if (strcmp(name, \"%s\") == 0) { %s }" % (name, body))
    out.append("};")
    out.append("#define PG_N_SCHED_CASES (int)(sizeof pg_sched_cases / sizeof pg_sched_cases[0])")
    out.append("/* The lambdas of the lambda / multiplicative cases, as torch's lists [f0, f1] (one per group). */")
    out.append("static inline double pg_lambda(int64_t e, int g, void *u) { (void)u; return g == 0 ? 1.0 / (1.0 + (double)e) : pow(0.9, (double)e); }")
    out.append("static inline double pg_mult(int64_t e, int g, void *u) { (void)u; return g == 0 ? 0.95 : 1.0 - 0.01 * (double)e; }")
    out.append("/* The tapegrad schedule of each case; members of a container go to m[] (freed by the caller). */")
    out.append("static inline tg_sched *pg_make_sched(const char *name, tg_optim *opt, tg_sched **m) {")
    out.extend(makers)
    out.append("    return NULL;")
    out.append("}")
    out.append("")


def main():
    torch.set_num_threads(1)
    out = ["/* tests/data/parity_golden.h - generated by gen_parity_golden.py with torch %s; do not edit." % TORCH,
           " * PyTorch-parity cases: cross-entropy with every target ignored, clip_grad_norm_, LR schedules */",
           "#ifndef TG_PARITY_GOLDEN_H", "#define TG_PARITY_GOLDEN_H", "#include <math.h>", "#include <stdbool.h>",
           "#include <stdint.h>", "#include <string.h>", "#include <tapegrad/optim.h>",
           "#define PG_TORCH_VERSION \"%s\"" % TORCH, ""]
    ce_section(out)
    clip_section(out)
    sched_section(out)
    out.append("#endif")
    with open(os.path.join(HERE, "parity_golden.h"), "w") as f:
        f.write("\n".join(out) + "\n")
    print("wrote parity_golden.h with torch", TORCH)


if __name__ == "__main__":
    main()
