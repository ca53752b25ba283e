#!/usr/bin/python3
"""Golden values for tests/test_optim.c and tests/test_loss.c, computed by PyTorch.

Writes (next to this script):
  optim_golden.h  optimizer trajectories (SGD, Adam, AdamW, RMSprop, Adagrad, NAdam, RAdam, Adamax,
                  Adadelta in several configurations, float64 and float32), LR-schedule values, gradient-clipping results
  loss_golden.h   MSE / cross-entropy / NLL / BCE-with-logits values and input gradients

Run: /usr/bin/python3 tests/data/gen_optim_golden.py   (Debian's python3-torch; the version used is
written into both headers). The tests only read the headers: no Python is needed at test time.

The optimizer problem is fixed and small: three parameters p1 [2,3], p2 [4], p3 [2] and
    loss(s) = sum(A1 (p1 - C1)^2) + sum(A2 (p2 - C2)^2) + 0.05 (sum p1^4 + sum p2^4)
              + [s even] sum(A3 (p3 - C3)^2)
so p3 only has a gradient on even steps (torch skips a parameter whose .grad is None; the
gradients are dropped with zero_grad(set_to_none=True) before every step).
"""
import math
import os

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
STEPS = 25
TORCH = torch.__version__
try:  # Debian's package version says more than the "1.13.0a0" the library reports
    import subprocess
    TORCH += " (Debian python3-torch %s)" % subprocess.run(
        ["dpkg-query", "-W", "-f=${Version}", "python3-torch"], capture_output=True, text=True, check=True).stdout
except Exception:
    pass


def c_double(x):
    x = float(x)
    if math.isnan(x):
        return "NAN"
    if math.isinf(x):
        return "INFINITY" if x > 0 else "-INFINITY"
    return repr(x)


def c_array(values, digits=None):
    """digits: significant digits (9 reproduce a float32 exactly); None: repr (exact for float64)."""
    vals = [c_double(v) if digits is None or not math.isfinite(v) else "%.*g" % (digits, v) for v in values]
    lines, line = [], ""
    for v in vals:
        piece = v + ", "
        if len(line) + len(piece) > 100:
            lines.append(line.rstrip())
            line = ""
        line += piece
    lines.append(line.rstrip().rstrip(","))
    return "{" + "\n    ".join(lines) + "}"


def flat(t):
    return [float(v) for v in t.detach().reshape(-1).tolist()]


# ---- the fixed optimizer problem ----------------------------------------------------------------

g = torch.Generator().manual_seed(1234)
P1_0 = torch.rand(2, 3, generator=g, dtype=torch.float64) * 2 - 1
P2_0 = torch.rand(4, generator=g, dtype=torch.float64) * 2 - 1
P3_0 = torch.rand(2, generator=g, dtype=torch.float64) * 2 - 1
A1 = torch.rand(2, 3, generator=g, dtype=torch.float64) + 0.5
A2 = torch.rand(4, generator=g, dtype=torch.float64) + 0.5
A3 = torch.rand(2, generator=g, dtype=torch.float64) + 0.5
C1 = torch.rand(2, 3, generator=g, dtype=torch.float64) * 4 - 2
C2 = torch.rand(4, generator=g, dtype=torch.float64) * 4 - 2
C3 = torch.rand(2, generator=g, dtype=torch.float64) * 4 - 2


def loss_fn(p1, p2, p3, s, dt):
    a1, a2, a3, c1, c2, c3 = (t.to(dt) for t in (A1, A2, A3, C1, C2, C3))
    loss = (a1 * (p1 - c1) * (p1 - c1)).sum() + (a2 * (p2 - c2) * (p2 - c2)).sum()
    loss = loss + 0.05 * ((p1 ** 4).sum() + (p2 ** 4).sum())
    if s % 2 == 0:
        loss = loss + (a3 * (p3 - c3) * (p3 - c3)).sum()
    return loss


# Each case: (name, torch class, kind constant, options of group 0, options of group 1 or None).
# With group 1, p1 is in group 0 and p2, p3 in group 1; otherwise all three are in group 0.
OPTIM_CASES = [
    ("sgd_plain", torch.optim.SGD, "TG_OPTIM_SGD", dict(lr=0.1), None),
    ("sgd_momentum", torch.optim.SGD, "TG_OPTIM_SGD", dict(lr=0.05, momentum=0.9), None),
    ("sgd_dampening_wd", torch.optim.SGD, "TG_OPTIM_SGD",
     dict(lr=0.05, momentum=0.8, dampening=0.3, weight_decay=0.01), None),
    ("sgd_nesterov_wd", torch.optim.SGD, "TG_OPTIM_SGD",
     dict(lr=0.05, momentum=0.9, nesterov=True, weight_decay=0.05), None),
    ("sgd_maximize", torch.optim.SGD, "TG_OPTIM_SGD", dict(lr=0.002, momentum=0.5, maximize=True), None),
    ("sgd_groups", torch.optim.SGD, "TG_OPTIM_SGD", dict(lr=0.1, momentum=0.9),
     dict(lr=0.02, momentum=0.9, weight_decay=0.1)),
    ("adam_default", torch.optim.Adam, "TG_OPTIM_ADAM", dict(lr=0.05), None),
    ("adam_wd_amsgrad", torch.optim.Adam, "TG_OPTIM_ADAM", dict(lr=0.05, weight_decay=0.1, amsgrad=True), None),
    ("adam_betas_eps", torch.optim.Adam, "TG_OPTIM_ADAM", dict(lr=0.02, betas=(0.5, 0.9), eps=1e-6), None),
    ("adam_groups_maximize", torch.optim.Adam, "TG_OPTIM_ADAM", dict(lr=0.01, maximize=True),
     dict(lr=0.003, weight_decay=0.02, maximize=True)),
    ("adamw", torch.optim.AdamW, "TG_OPTIM_ADAMW", dict(lr=0.05, weight_decay=0.1), None),
    ("adamw_amsgrad_groups", torch.optim.AdamW, "TG_OPTIM_ADAMW", dict(lr=0.05, weight_decay=0.01, amsgrad=True),
     dict(lr=0.01, weight_decay=0.0, amsgrad=True)),
    ("rmsprop", torch.optim.RMSprop, "TG_OPTIM_RMSPROP", dict(lr=0.01), None),
    ("rmsprop_centered_momentum_wd", torch.optim.RMSprop, "TG_OPTIM_RMSPROP",
     dict(lr=0.01, alpha=0.9, centered=True, momentum=0.5, weight_decay=0.01), None),
    ("rmsprop_momentum_eps", torch.optim.RMSprop, "TG_OPTIM_RMSPROP", dict(lr=0.005, momentum=0.9, eps=1e-3), None),
    ("rmsprop_centered", torch.optim.RMSprop, "TG_OPTIM_RMSPROP", dict(lr=0.02, centered=True), None),
    ("adagrad", torch.optim.Adagrad, "TG_OPTIM_ADAGRAD", dict(lr=0.1), None),
    ("adagrad_decay_init_wd", torch.optim.Adagrad, "TG_OPTIM_ADAGRAD",
     dict(lr=0.1, lr_decay=0.05, initial_accumulator_value=0.1, weight_decay=0.01, eps=1e-6), None),
    # torch 1.13 fills every sum with the constructor's initial_accumulator_value (0.5) in __init__:
    # group 1's own 3.0 is kept in its param_group but never read
    ("adagrad_groups_initial_accumulator", torch.optim.Adagrad, "TG_OPTIM_ADAGRAD",
     dict(lr=0.1, initial_accumulator_value=0.5), dict(lr=0.05, lr_decay=0.02, initial_accumulator_value=3.0)),
    ("nadam_default", torch.optim.NAdam, "TG_OPTIM_NADAM", dict(lr=0.05), None),
    ("nadam_wd_betas_momentum_decay", torch.optim.NAdam, "TG_OPTIM_NADAM",
     dict(lr=0.02, betas=(0.8, 0.99), weight_decay=0.1, momentum_decay=0.01, eps=1e-6), None),
    ("nadam_groups", torch.optim.NAdam, "TG_OPTIM_NADAM", dict(lr=0.03), dict(lr=0.01, weight_decay=0.05)),
    ("nadam_decoupled", torch.optim.NAdam, "TG_OPTIM_NADAM", dict(lr=0.05, decoupled_weight_decay=0.1), None),
    ("nadam_maximize", torch.optim.NAdam, "TG_OPTIM_NADAM", dict(lr=0.01, maximize=True), None),
    ("radam_default", torch.optim.RAdam, "TG_OPTIM_RADAM", dict(lr=0.05), None),
    ("radam_wd_betas_eps", torch.optim.RAdam, "TG_OPTIM_RADAM",
     dict(lr=0.02, betas=(0.7, 0.9), weight_decay=0.05, eps=1e-6), None),
    ("radam_groups", torch.optim.RAdam, "TG_OPTIM_RADAM", dict(lr=0.05, betas=(0.9, 0.95)),
     dict(lr=0.01, betas=(0.9, 0.95), weight_decay=0.1)),
    ("radam_decoupled", torch.optim.RAdam, "TG_OPTIM_RADAM",
     dict(lr=0.05, betas=(0.9, 0.95), decoupled_weight_decay=0.2), None),
    ("radam_maximize", torch.optim.RAdam, "TG_OPTIM_RADAM", dict(lr=0.01, betas=(0.9, 0.9), maximize=True), None),
    ("adamax_default", torch.optim.Adamax, "TG_OPTIM_ADAMAX", dict(lr=0.05), None),
    ("adamax_wd_betas_eps", torch.optim.Adamax, "TG_OPTIM_ADAMAX",
     dict(lr=0.02, betas=(0.8, 0.95), weight_decay=0.1, eps=1e-3), None),
    ("adamax_groups_maximize", torch.optim.Adamax, "TG_OPTIM_ADAMAX", dict(lr=0.01, maximize=True),
     dict(lr=0.003, weight_decay=0.02, maximize=True)),
    ("adadelta_default", torch.optim.Adadelta, "TG_OPTIM_ADADELTA", dict(), None),
    ("adadelta_rho_eps_wd", torch.optim.Adadelta, "TG_OPTIM_ADADELTA",
     dict(lr=0.5, rho=0.6, eps=1e-4, weight_decay=0.05), None),
    ("adadelta_groups_maximize", torch.optim.Adadelta, "TG_OPTIM_ADADELTA", dict(lr=0.1, maximize=True),
     dict(lr=0.2, rho=0.95, maximize=True)),
    ("adadelta_rho_0_and_1", torch.optim.Adadelta, "TG_OPTIM_ADADELTA", dict(lr=0.3, rho=0.0),
     dict(lr=0.05, rho=1.0)),
]

# Options torch 1.13 lacks, emulated around its step (tapegrad follows torch >= 2.1's definition):
#   maximize (NAdam, RAdam): the step on the negated gradient;
#   decoupled_weight_decay=wd (NAdam, RAdam): p.mul_(1 - lr wd) before a step with weight_decay 0.
EMULATED = {torch.optim.NAdam: ("maximize", "decoupled_weight_decay"),
            torch.optim.RAdam: ("maximize", "decoupled_weight_decay")}

# torch name -> tg_optim_opts field
FIELD = {"lr": "lr", "momentum": "momentum", "dampening": "dampening", "nesterov": "nesterov",
         "weight_decay": "weight_decay", "eps": "eps", "amsgrad": "amsgrad", "alpha": "alpha",
         "centered": "centered", "lr_decay": "lr_decay", "initial_accumulator_value": "initial_accumulator_value",
         "maximize": "maximize", "momentum_decay": "momentum_decay", "rho": "rho",
         "decoupled_weight_decay": "decoupled_weight_decay"}


def c_group(group):
    """A complete tg_optim_opts initialiser from a torch param_group (defaults filled in by torch)."""
    parts = []
    for k, v in group.items():
        if k == "betas":
            parts.append(".beta1 = %s" % c_double(v[0]))
            parts.append(".beta2 = %s" % c_double(v[1]))
        elif k in FIELD:
            parts.append(".%s = %s" % (FIELD[k], ("true" if v else "false") if isinstance(v, bool) else c_double(v)))
    return "{" + ", ".join(parts) + "}"


def split_emulated(cls, opts):
    """(options for torch's constructor, the emulated ones) of a group."""
    emu = {k: opts[k] for k in EMULATED.get(cls, ()) if k in opts}
    return {k: v for k, v in opts.items() if k not in emu}, emu


def run_case(cls, g0, g1, dt):
    # NAdam's mu_product and the step counters are created in the default dtype: the run's
    torch.set_default_dtype(dt)
    p1 = P1_0.to(dt).clone().requires_grad_(True)
    p2 = P2_0.to(dt).clone().requires_grad_(True)
    p3 = P3_0.to(dt).clone().requires_grad_(True)
    specs = [(g0, [p1, p2, p3])] if g1 is None else [(g0, [p1]), (g1, [p2, p3])]
    emus = [split_emulated(cls, g)[1] for g, _ in specs]
    # group 0's options are also the constructor's (tg_optim_new's): Adagrad reads
    # initial_accumulator_value only from there; every group 1 names the options group 0 sets
    if g1 is None:
        opt = cls([p1, p2, p3], foreach=False, **split_emulated(cls, g0)[0])
    else:
        opt = cls([dict(params=ps, **split_emulated(cls, g)[0]) for g, ps in specs], foreach=False,
                  **split_emulated(cls, g0)[0])
    groups = []
    for grp, emu in zip(opt.param_groups, emus):
        grp = dict(grp)
        if emu.get("maximize"):
            grp["maximize"] = True
        if "decoupled_weight_decay" in emu:
            grp["weight_decay"] = emu["decoupled_weight_decay"]
            grp["decoupled_weight_decay"] = True
        groups.append(c_group(grp))
    traj = []
    for s in range(STEPS):
        opt.zero_grad(set_to_none=True)
        loss_fn(p1, p2, p3, s, dt).backward()
        with torch.no_grad():
            for grp, emu in zip(opt.param_groups, emus):
                for p in grp["params"]:
                    if p.grad is None:
                        continue
                    if emu.get("maximize"):
                        p.grad.neg_()
                    if "decoupled_weight_decay" in emu:
                        p.mul_(1 - grp["lr"] * emu["decoupled_weight_decay"])
        opt.step()
        traj.append(flat(p1) + flat(p2) + flat(p3))
    torch.set_default_dtype(torch.float32)
    return groups, traj


def optim_section(out):
    out.append("/* The problem (see gen_optim_golden.py): p1 [2,3], p2 [4], p3 [2] */")
    for name, t in (("p1_init", P1_0), ("p2_init", P2_0), ("p3_init", P3_0), ("a1", A1), ("a2", A2),
                    ("a3", A3), ("c1", C1), ("c2", C2), ("c3", C3)):
        out.append("static const double golden_%s[%d] = %s;" % (name, t.numel(), c_array(flat(t))))
    out.append("")
    out.append("#define GOLDEN_STEPS %d" % STEPS)
    out.append("#define GOLDEN_NELEM 12 /* p1 (6), p2 (4), p3 (2), concatenated */")
    out.append("typedef struct golden_optim_case {")
    out.append("    const char *name;")
    out.append("    tg_optim_kind kind;")
    out.append("    int n_groups;                    /* 1: p1, p2, p3 in group 0; 2: p1 | p2, p3 */")
    out.append("    tg_optim_opts opts[2];           /* every group's hyper-parameters as torch filled them in */")
    out.append("    double f64[GOLDEN_STEPS][GOLDEN_NELEM]; /* parameters after each step, float64 run */")
    out.append("    double f32[GOLDEN_STEPS][GOLDEN_NELEM]; /* the same run in float32 */")
    out.append("} golden_optim_case;")
    out.append("static const golden_optim_case golden_optim_cases[] = {")
    for name, cls, kind, g0, g1 in OPTIM_CASES:
        groups, t64 = run_case(cls, g0, g1, torch.float64)
        _, t32 = run_case(cls, g0, g1, torch.float32)
        out.append("    {.name = \"%s\", .kind = %s, .n_groups = %d," % (name, kind, len(groups)))
        out.append("     .opts = {%s}," % ",\n              ".join(groups))
        out.append("     .f64 = {%s}," % ",\n      ".join(c_array(r) for r in t64))
        out.append("     .f32 = {%s}}," % ",\n      ".join(c_array(r, 9) for r in t32))
    out.append("};")
    out.append("#define GOLDEN_N_OPTIM_CASES (int)(sizeof golden_optim_cases / sizeof golden_optim_cases[0])")
    out.append("/* torch's constructor defaults (SGD's lr is required in torch 1.x, so it is passed as 1e-3) */")
    out.append("static const struct { tg_optim_kind kind; tg_optim_opts opts; } golden_defaults[] = {")
    w = torch.zeros(1, requires_grad=True)
    for kind, make in (("TG_OPTIM_SGD", lambda: torch.optim.SGD([w], lr=1e-3)),
                       ("TG_OPTIM_ADAM", lambda: torch.optim.Adam([w])),
                       ("TG_OPTIM_ADAMW", lambda: torch.optim.AdamW([w])),
                       ("TG_OPTIM_RMSPROP", lambda: torch.optim.RMSprop([w])),
                       ("TG_OPTIM_ADAGRAD", lambda: torch.optim.Adagrad([w])),
                       ("TG_OPTIM_NADAM", lambda: torch.optim.NAdam([w])),
                       ("TG_OPTIM_RADAM", lambda: torch.optim.RAdam([w])),
                       ("TG_OPTIM_ADAMAX", lambda: torch.optim.Adamax([w])),
                       ("TG_OPTIM_ADADELTA", lambda: torch.optim.Adadelta([w]))):
        out.append("    {%s, %s}," % (kind, c_group(make().param_groups[0])))
    out.append("};")
    out.append("")


# ---- LR schedules -------------------------------------------------------------------------------

SCHED_EPOCHS = 30
BASE_LRS = (0.1, 0.05)
PLATEAU_METRICS = [1.0, 0.9, 0.95, 0.91, 0.92, 0.93, 0.85, 0.86, 0.87, 0.88, 0.89, 0.849, 0.8, 0.8, 0.8,
                   0.8, 0.8, 0.8, 0.7, 0.7, 0.7, 0.7, 0.7, 0.7, 0.7, 0.7, 0.7, 0.7, 0.7, 0.7]
SCHED_CASES = [
    # name, C constructor call (opt is the optimizer), torch constructor
    ("step", "tg_sched_step_lr(opt, 3, 0.5)", lambda o: torch.optim.lr_scheduler.StepLR(o, 3, 0.5)),
    ("multistep", "tg_sched_multistep(opt, 4, (const int64_t[]){9, 2, 5, 5}, 0.3)",
     lambda o: torch.optim.lr_scheduler.MultiStepLR(o, [9, 2, 5, 5], 0.3)),
    ("exponential", "tg_sched_exponential(opt, 0.9)", lambda o: torch.optim.lr_scheduler.ExponentialLR(o, 0.9)),
    ("cosine", "tg_sched_cosine(opt, 10, 0.001)",
     lambda o: torch.optim.lr_scheduler.CosineAnnealingLR(o, T_max=10, eta_min=0.001)),
    ("cosine_T7_eta0", "tg_sched_cosine(opt, 7, 0.0)",
     lambda o: torch.optim.lr_scheduler.CosineAnnealingLR(o, T_max=7, eta_min=0.0)),
    ("linear_warmup", "tg_sched_linear(opt, 0.25, 1.0, 4)",
     lambda o: torch.optim.lr_scheduler.LinearLR(o, start_factor=0.25, end_factor=1.0, total_iters=4)),
    ("linear_decay", "tg_sched_linear(opt, 1.0 / 3, 0.5, 5)",
     lambda o: torch.optim.lr_scheduler.LinearLR(o, start_factor=1.0 / 3, end_factor=0.5, total_iters=5)),
    ("plateau_min_rel", "tg_sched_plateau(opt, &(tg_plateau_opts){.factor = 0.5, .patience = 2, "
     ".threshold = 1e-2, .cooldown = 1, .min_lr = 0.01, .eps = 1e-8})",
     lambda o: torch.optim.lr_scheduler.ReduceLROnPlateau(o, mode="min", factor=0.5, patience=2, threshold=1e-2,
                                                          threshold_mode="rel", cooldown=1, min_lr=0.01)),
    ("plateau_max_abs", "tg_sched_plateau(opt, &(tg_plateau_opts){.mode_max = true, .factor = 0.3, "
     ".patience = 1, .threshold = 0.05, .threshold_abs = true, .cooldown = 0, .min_lr = 0.0, .eps = 1e-8})",
     lambda o: torch.optim.lr_scheduler.ReduceLROnPlateau(o, mode="max", factor=0.3, patience=1, threshold=0.05,
                                                          threshold_mode="abs")),
    ("plateau_defaults", "tg_sched_plateau(opt, NULL)",
     lambda o: torch.optim.lr_scheduler.ReduceLROnPlateau(o)),
]


def sched_section(out):
    out.append("#define GOLDEN_SCHED_EPOCHS %d" % SCHED_EPOCHS)
    out.append("static const double golden_sched_base_lr[2] = %s;" % c_array(BASE_LRS))
    # max mode sees the negated metric so that it has something to climb
    out.append("static const double golden_plateau_metrics[GOLDEN_SCHED_EPOCHS] = %s;" % c_array(PLATEAU_METRICS))
    out.append("typedef struct golden_sched_case {")
    out.append("    const char *name;")
    out.append("    double lr[GOLDEN_SCHED_EPOCHS][2]; /* both groups' lr at epochs 0 (creation) .. EPOCHS-1 */")
    out.append("} golden_sched_case;")
    out.append("/* plateau cases are stepped with golden_plateau_metrics[e - 1] (max mode: its negation) */")
    out.append("static const golden_sched_case golden_sched_cases[] = {")
    ctor_lines = []
    for name, c_call, make in SCHED_CASES:
        w = torch.zeros(1, requires_grad=True)
        v = torch.zeros(1, requires_grad=True)
        opt = torch.optim.SGD([dict(params=[w], lr=BASE_LRS[0]), dict(params=[v], lr=BASE_LRS[1])])
        sch = make(opt)
        lrs = [[grp["lr"] for grp in opt.param_groups]]
        for e in range(1, SCHED_EPOCHS):
            opt.step()
            if name.startswith("plateau"):
                m = PLATEAU_METRICS[e - 1]
                sch.step(-m if "max" in name else m)
            else:
                sch.step()
            lrs.append([grp["lr"] for grp in opt.param_groups])
        out.append("    {\"%s\", {%s}}," % (name, ", ".join("{%s, %s}" % (c_double(a), c_double(b)) for a, b in lrs)))
        ctor_lines.append("    if (strcmp(name, \"%s\") == 0) return %s;" % (name, c_call))
    out.append("};")
    out.append("#define GOLDEN_N_SCHED_CASES (int)(sizeof golden_sched_cases / sizeof golden_sched_cases[0])")
    out.append("/* The tapegrad schedule matching each case. */")
    out.append("static inline tg_sched *golden_make_sched(const char *name, tg_optim *opt) {")
    out.extend(ctor_lines)
    out.append("    return NULL;")
    out.append("}")
    out.append("")


# ---- gradient clipping --------------------------------------------------------------------------

CLIP_CASES = [(100.0, 2.0), (1.0, 2.0), (0.5, math.inf), (2.0, 1.0), (1.0, 3.0), (3.3, 2.0)]


def clip_section(out):
    gg = torch.Generator().manual_seed(99)
    G1 = torch.randn(2, 3, generator=gg, dtype=torch.float64)
    G2 = torch.randn(4, generator=gg, dtype=torch.float64)
    out.append("static const double golden_clip_g1[6] = %s;" % c_array(flat(G1)))
    out.append("static const double golden_clip_g2[4] = %s;" % c_array(flat(G2)))
    out.append("typedef struct golden_clip_case {")
    out.append("    double max_norm, norm_type, total_norm;")
    out.append("    double g1[6], g2[4]; /* gradients after clipping */")
    out.append("} golden_clip_case;")
    out.append("static const golden_clip_case golden_clip_cases[] = {")
    for max_norm, norm_type in CLIP_CASES:
        a = torch.zeros(2, 3, dtype=torch.float64, requires_grad=True)
        b = torch.zeros(4, dtype=torch.float64, requires_grad=True)
        a.grad = G1.clone()
        b.grad = G2.clone()
        total = torch.nn.utils.clip_grad_norm_([a, b], max_norm, norm_type=norm_type)
        out.append("    {%s, %s, %s, %s, %s}," % (c_double(max_norm), c_double(norm_type), c_double(total),
                                                 c_array(flat(a.grad)), c_array(flat(b.grad))))
    out.append("};")
    out.append("#define GOLDEN_N_CLIP_CASES (int)(sizeof golden_clip_cases / sizeof golden_clip_cases[0])")
    out.append("")


# ---- losses -------------------------------------------------------------------------------------

def loss_header():
    F = torch.nn.functional
    gl = torch.Generator().manual_seed(7)
    N, C = 5, 4
    logits = torch.randn(N, C, generator=gl, dtype=torch.float64) * 3
    target = [1, 3, -100, 0, 2]
    target_ign3 = [1, 3, 2, 0, 3]  # ignore_index = 3
    weight = torch.rand(C, generator=gl, dtype=torch.float64) + 0.2
    yb = torch.rand(N, C, generator=gl, dtype=torch.float64)   # BCE / MSE targets
    wb = torch.rand(C, generator=gl, dtype=torch.float64) + 0.5  # BCE weight (broadcast over rows)
    pw = torch.rand(C, generator=gl, dtype=torch.float64) * 3    # BCE pos_weight
    ext = torch.tensor([[1e4, -1e4, 0.0, 5.0], [-1e4, 1e4, 1e4, -3.0], [-1e4, -1e4, -1e4, -1e4],
                        [1e4, 1e4, -1e4, 1e4], [0.5, -1e4, 2.0, 1e4]], dtype=torch.float64)
    ext_target = [0, 1, 2, 2, 1]
    yb_ext = torch.tensor([[1.0, 0.0, 0.5, 1.0], [1.0, 1.0, 0.0, 0.0], [0.0, 1.0, 0.5, 0.0],
                           [1.0, 0.0, 0.0, 0.5], [0.25, 0.0, 1.0, 1.0]], dtype=torch.float64)

    def t64(vals):
        return torch.tensor(vals, dtype=torch.int64)

    # name, input, function(input) -> output
    cases = [
        ("ce_mean", logits, lambda x: F.cross_entropy(x, t64(target))),
        ("ce_sum", logits, lambda x: F.cross_entropy(x, t64(target), reduction="sum")),
        ("ce_none", logits, lambda x: F.cross_entropy(x, t64(target), reduction="none")),
        ("ce_weight_mean", logits, lambda x: F.cross_entropy(x, t64(target), weight=weight)),
        ("ce_weight_sum", logits, lambda x: F.cross_entropy(x, t64(target), weight=weight, reduction="sum")),
        ("ce_weight_none", logits, lambda x: F.cross_entropy(x, t64(target), weight=weight, reduction="none")),
        ("ce_ignore3_mean", logits, lambda x: F.cross_entropy(x, t64(target_ign3), ignore_index=3)),
        ("ce_smooth_weight_mean", logits,
         lambda x: F.cross_entropy(x, t64(target), weight=weight, label_smoothing=0.1)),
        ("ce_smooth_none", logits, lambda x: F.cross_entropy(x, t64(target), reduction="none", label_smoothing=0.2)),
        ("ce_smooth_mean", logits, lambda x: F.cross_entropy(x, t64(target), label_smoothing=0.3)),
        ("nll_weight_mean", logits,
         lambda x: F.nll_loss(F.log_softmax(x, 1), t64(target), weight=weight)),
        ("ce_extreme_mean", ext, lambda x: F.cross_entropy(x, t64(ext_target))),
        ("ce_extreme_none", ext, lambda x: F.cross_entropy(x, t64(ext_target), reduction="none")),
        ("bce_mean", logits, lambda x: F.binary_cross_entropy_with_logits(x, yb)),
        ("bce_sum", logits, lambda x: F.binary_cross_entropy_with_logits(x, yb, reduction="sum")),
        ("bce_none", logits, lambda x: F.binary_cross_entropy_with_logits(x, yb, reduction="none")),
        ("bce_weight_mean", logits, lambda x: F.binary_cross_entropy_with_logits(x, yb, weight=wb)),
        ("bce_pos_weight_mean", logits, lambda x: F.binary_cross_entropy_with_logits(x, yb, pos_weight=pw)),
        ("bce_weight_pos_weight_none", logits,
         lambda x: F.binary_cross_entropy_with_logits(x, yb, weight=wb, pos_weight=pw, reduction="none")),
        ("bce_extreme_none", ext, lambda x: F.binary_cross_entropy_with_logits(x, yb_ext, reduction="none")),
        ("bce_extreme_pos_weight_mean", ext,
         lambda x: F.binary_cross_entropy_with_logits(x, yb_ext, pos_weight=pw)),
        ("mse_mean", logits, lambda x: F.mse_loss(x, yb)),
        ("mse_sum", logits, lambda x: F.mse_loss(x, yb, reduction="sum")),
        ("mse_none", logits, lambda x: F.mse_loss(x, yb, reduction="none")),
    ]
    out = header_start("loss_golden.h", "losses: values and input gradients (backward of sum(output))")
    out.append("#define GOLDEN_LN %d" % N)
    out.append("#define GOLDEN_LC %d" % C)
    out.append("static const double golden_logits[%d] = %s;" % (N * C, c_array(flat(logits))))
    out.append("static const double golden_extreme_logits[%d] = %s;" % (N * C, c_array(flat(ext))))
    out.append("static const int64_t golden_target[%d] = {%s};" % (N, ", ".join(map(str, target))))
    out.append("static const int64_t golden_target_ign3[%d] = {%s};" % (N, ", ".join(map(str, target_ign3))))
    out.append("static const int64_t golden_extreme_target[%d] = {%s};" % (N, ", ".join(map(str, ext_target))))
    out.append("static const double golden_class_weight[%d] = %s;" % (C, c_array(flat(weight))))
    out.append("static const double golden_bce_target[%d] = %s;" % (N * C, c_array(flat(yb))))
    out.append("static const double golden_bce_extreme_target[%d] = %s;" % (N * C, c_array(flat(yb_ext))))
    out.append("static const double golden_bce_weight[%d] = %s;" % (C, c_array(flat(wb))))
    out.append("static const double golden_bce_pos_weight[%d] = %s;" % (C, c_array(flat(pw))))
    out.append("typedef struct golden_loss_case {")
    out.append("    const char *name;")
    out.append("    int n_out;                         /* 1 for mean/sum, else the output's numel */")
    out.append("    double out[%d];" % (N * C))
    out.append("    double grad[%d];                   /* d sum(output) / d input */" % (N * C))
    out.append("} golden_loss_case;")
    out.append("static const golden_loss_case golden_loss_cases[] = {")
    for name, inp, fn in cases:
        x = inp.clone().requires_grad_(True)
        y = fn(x)
        y.sum().backward()
        out.append("    {\"%s\", %d, %s,\n     %s}," % (name, y.numel(), c_array(flat(y)), c_array(flat(x.grad))))
    out.append("};")
    out.append("#define GOLDEN_N_LOSS_CASES (int)(sizeof golden_loss_cases / sizeof golden_loss_cases[0])")
    out.append("#endif")
    return out


def header_start(fname, what):
    guard = "TG_" + fname.replace(".", "_").upper()
    return ["/* tests/data/%s - generated by gen_optim_golden.py with torch %s; do not edit." % (fname, TORCH),
            " * %s */" % what,
            "#ifndef %s" % guard, "#define %s" % guard, "#include <math.h>", "#include <stdint.h>",
            "#include <string.h>", ""]


def main():
    torch.set_num_threads(1)
    out = header_start("optim_golden.h", "optimizer trajectories, LR schedules, gradient clipping")
    out.append("#include <tapegrad/optim.h>")
    out.append("#define GOLDEN_TORCH_VERSION \"%s\"" % TORCH)
    out.append("")
    optim_section(out)
    sched_section(out)
    clip_section(out)
    out.append("#endif")
    with open(os.path.join(HERE, "optim_golden.h"), "w") as f:
        f.write("\n".join(out) + "\n")
    with open(os.path.join(HERE, "loss_golden.h"), "w") as f:
        f.write("\n".join(loss_header()) + "\n")
    print("wrote optim_golden.h and loss_golden.h with torch", TORCH)


if __name__ == "__main__":
    main()
