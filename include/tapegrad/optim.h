/* tapegrad/optim.h - optimizers, gradient clipping, learning-rate schedules and optimizer checkpoints,
 * with torch.optim's exact update rules.
 *
 * Worked example (a training loop; params/n are the model's leaf tensors with requires_grad):
 *
 *     tg_optim_opts o = tg_optim_defaults(TG_OPTIM_ADAMW);       // torch's defaults
 *     o.lr = 3e-3;
 *     tg_optim *opt = tg_optim_new(TG_OPTIM_ADAMW, params, n, &o); // returns: new object (tg_optim_free)
 *     tg_sched *sched = tg_sched_cosine(opt, 100, 1e-5);          // T_max = 100 epochs, eta_min
 *     for (int epoch = 0; epoch < 100; epoch++) {
 *         for (each batch) {
 *             tg_optim_zero_grad(opt);
 *             tg_backward(tg_cross_entropy(model(x), target, NULL));
 *             tg_optim_clip_grad_norm(opt, 1.0, 2.0, false);       // returns the norm before clipping
 *             tg_optim_step(opt);                                 // no-grad; bumps version counters
 *             tg_tape_reset();
 *         }
 *         tg_sched_step(sched);                                   // sets every group's lr
 *     }
 *     tg_optim_save(opt, sched, "opt.safetensors");               // resume later with tg_optim_load
 *     tg_sched_free(sched); tg_optim_free(opt);
 *
 * Update rules (g = gradient, p = parameter, negated first when `maximize`; t = the parameter's step
 * count, from 1). These are torch.optim's single-tensor ("for-loop") algorithms, operation for
 * operation, in the parameter's dtype:
 *   SGD      g += wd p;  if momentum: b = (t == 1 ? g : μ b + (1-dampening) g),
 *                        g = nesterov ? g + μ b : b;            p -= lr g
 *   Adam     g += wd p;  m = β1 m + (1-β1) g;  v = β2 v + (1-β2) g²;  (amsgrad: v̂ = max(v̂, v), use v̂)
 *            p -= lr/(1-β1^t) · m / (√v / √(1-β2^t) + eps)
 *   AdamW    p *= 1 - lr wd, then Adam without the L2 term (decoupled weight decay)
 *   RMSprop  g += wd p;  s = α s + (1-α) g²;  centered: a = α a + (1-α) g, d = √(s - a²) + eps,
 *            else d = √s + eps (eps outside the root);  momentum: b = μ b + g/d, p -= lr b;
 *            else p -= lr g/d
 *   Adagrad  g += wd p;  clr = lr / (1 + (t-1) lr_decay);  S += g² (S starts at the
 *            initial_accumulator_value given to tg_optim_new, for every group: torch 1.13 fills the
 *            sums in its constructor, so a group's own value is kept but never read);
 *            p -= clr g / (√S + eps)
 *   NAdam    g += wd p (decoupled_weight_decay: p *= 1 - lr wd instead);  m, v as Adam;
 *            μ_t = β1 (1 - ½ 0.96^(t·momentum_decay));  Π = Π·μ_t (state mu_product, 0-d, from 1);
 *            Π' = Π·μ_t·μ_{t+1} (torch 1.13's formula; torch >= 2.0 uses Π·μ_{t+1}, pytorch#92699);
 *            d = √(v/(1-β2^t)) + eps;  p -= lr(1-μ_t)/(1-Π) · g/d;  p -= lr μ_{t+1}/(1-Π') · m/d
 *   RAdam    g += wd p (or decoupled as NAdam);  m, v as Adam;  ρ∞ = 2/(1-β2) - 1,
 *            ρ_t = ρ∞ - 2t β2^t/(1-β2^t);  ρ_t > 5: r = √((ρ_t-4)(ρ_t-2)ρ∞ / ((ρ∞-4)(ρ∞-2)ρ_t)),
 *            p -= m/(1-β1^t) · lr · √(1-β2^t)/(√v + eps) · r;  else p -= m/(1-β1^t) · lr
 *   Adamax   g += wd p;  m = β1 m + (1-β1) g;  u = max(β2 u, |g| + eps) (NaN propagates);
 *            p -= lr/(1-β1^t) · m/u
 *   Adadelta g += wd p;  s = ρ s + (1-ρ) g²;  δ = √(a + eps)/√(s + eps) · g;  a = ρ a + (1-ρ) δ²;
 *            p -= lr δ
 * maximize and decoupled_weight_decay of NAdam and RAdam are torch >= 2.1's options (torch 1.13 has
 * neither); every other rule and option is torch 1.13's.
 * A parameter without a gradient (tg_grad NULL) is skipped and its step count does not advance.
 *
 * Ownership: the optimizer keeps its own reference to every parameter (args: borrowed) and owns its
 * state tensors; tg_optim_state returns them borrowed. A schedule borrows its optimizer, which must
 * outlive it.
 *
 * Errors: invalid hyper-parameters, non-leaf or duplicated parameters are programming errors
 * reported through tg_error (default: print and abort; with a handler installed the function returns
 * NULL / -1). Checkpoint files are data: a bad file returns -1 with a message in tg_last_error() and
 * leaves the optimizer (and model) exactly as it was.
 */
#ifndef TAPEGRAD_OPTIM_H
#define TAPEGRAD_OPTIM_H
#include <tapegrad/nn.h>
#include <tapegrad/tensor.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ---- optimizers --------------------------------------------------------------------------------- */

/* The optimizers, one line each: X(KIND, name) makes the enum constant TG_OPTIM_<KIND> and the
 * lower-case name that tg_optim_kind_name / tg_optim_kind_from_name, the command line (--optim) and
 * checkpoints use. Everything else about an optimizer (its torch class, the hyper-parameters it
 * reads and their defaults, its state tensors, its update function) is its row `<name>_row` in
 * optim/optim.c; a line here without that row fails the build ("'<name>_row' undeclared"), a row
 * without a line here fails it too ("'<name>_row' defined but not used"). How to add one: the
 * recipe at the top of optim/optim.c (and docs/design.md). */
#define TG_OPTIM_KINDS(X)                           \
    X(SGD, sgd)         /* torch.optim.SGD     */   \
    X(ADAM, adam)       /* torch.optim.Adam    */   \
    X(ADAMW, adamw)     /* torch.optim.AdamW   */   \
    X(RMSPROP, rmsprop) /* torch.optim.RMSprop */   \
    X(ADAGRAD, adagrad) /* torch.optim.Adagrad */   \
    X(NADAM, nadam)     /* torch.optim.NAdam   */   \
    X(RADAM, radam)     /* torch.optim.RAdam   */   \
    X(ADAMAX, adamax)   /* torch.optim.Adamax  */   \
    X(ADADELTA, adadelta) /* torch.optim.Adadelta */

typedef enum tg_optim_kind {
#define TG__OPTIM_ENUM(K, name) TG_OPTIM_##K,
    TG_OPTIM_KINDS(TG__OPTIM_ENUM)
#undef TG__OPTIM_ENUM
    TG_OPTIM_KIND_COUNT
} tg_optim_kind;

/* The hyper-parameters of one parameter group, one line each: X(type, name, rule, meaning). The
 * struct tg_optim_opts below is made from these lines, and so are the checkpoint's group.<g>.<name>
 * fields (optim/checkpoint.c) and the validation: for the kinds whose row uses the field,
 * tg_optim_new checks its rule (GE0: >= 0 and not NaN; UNIT: in [0, 1); UNIT_CLOSED: in [0, 1];
 * FINITE: finite; BOOL: none; a bool field must have the rule BOOL, the build checks it). A new
 * hyper-parameter is one line here plus the rows that use it; checkpoints then carry it. */
#define TG_OPTIM_FIELDS(X)                                                                              \
    X(double, lr, GE0, "learning rate")                                                                  \
    X(double, weight_decay, GE0, "L2 term added to g (AdamW: decoupled p *= 1 - lr wd)")                 \
    X(double, momentum, GE0, "momentum factor")                                                          \
    X(double, dampening, FINITE, "dampening of the momentum")                                            \
    X(bool, nesterov, BOOL, "Nesterov momentum; needs momentum > 0 and dampening = 0")                   \
    X(double, beta1, UNIT, "decay of the running mean of g")                                             \
    X(double, beta2, UNIT, "decay of the running mean of g^2")                                           \
    X(double, eps, GE0, "added to the denominator")                                                      \
    X(bool, amsgrad, BOOL, "use the maximum of the running means of g^2")                                \
    X(double, alpha, GE0, "smoothing constant of the running mean of g^2")                               \
    X(bool, centered, BOOL, "divide by the centred second moment")                                       \
    X(double, lr_decay, GE0, "learning-rate decay: lr / (1 + (t-1) lr_decay)")                           \
    X(double, initial_accumulator_value, GE0, "start value of the sum of g^2")                           \
    X(double, momentum_decay, GE0, "NAdam: mu_t = beta1 (1 - 0.5 * 0.96^(t momentum_decay))")            \
    X(bool, decoupled_weight_decay, BOOL, "NAdam, RAdam: p *= 1 - lr wd instead of g += wd p")           \
    X(double, rho, UNIT_CLOSED, "Adadelta: decay of the running means of g^2 and of the update^2")       \
    X(bool, maximize, BOOL, "ascend instead of descend")

/* One struct serves every kind; fields a kind does not use are ignored (and not validated); which
 * kind uses which field: tg_optim_kind_uses. */
typedef struct tg_optim_opts {
#define TG__OPTIM_FIELD(type, name, rule, meaning) type name;
    TG_OPTIM_FIELDS(TG__OPTIM_FIELD)
#undef TG__OPTIM_FIELD
} tg_optim_opts;

typedef struct tg_optim tg_optim;

/* torch's defaults: SGD lr 1e-3 (torch >= 2.0; required in 1.x), momentum 0; Adam lr 1e-3, betas
 * (0.9, 0.999), eps 1e-8, wd 0; AdamW the same with wd 1e-2; RMSprop lr 1e-2, alpha 0.99, eps 1e-8;
 * Adagrad lr 1e-2, eps 1e-10; NAdam lr 2e-3, betas (0.9, 0.999), eps 1e-8, momentum_decay 4e-3;
 * RAdam lr 1e-3, betas (0.9, 0.999), eps 1e-8; Adamax lr 2e-3, betas (0.9, 0.999), eps 1e-8;
 * Adadelta lr 1.0, rho 0.9, eps 1e-6. */
tg_optim_opts tg_optim_defaults(tg_optim_kind kind);
const char *tg_optim_kind_name(tg_optim_kind kind); /* "sgd", "adam", ...; "unknown" out of range */
/* The kind with exactly this name (as tg_optim_kind_name spells it), or TG_OPTIM_KIND_COUNT when no
 * optimizer has that name (or name is NULL). */
tg_optim_kind tg_optim_kind_from_name(const char *name);
/* Every optimizer's name, in enum order, joined by sep ("sgd, adam, adamw, ..."), written into
 * buf[size] (truncated if short; always terminated when size > 0). returns: buf. */
char *tg_optim_kind_list(char *buf, size_t size, const char *sep);
/* torch's class ("torch.optim.Adam"), or "unknown". returns: a static string. */
const char *tg_optim_kind_torch_name(tg_optim_kind kind);

/* The hyper-parameter fields of tg_optim_opts (TG_OPTIM_FIELDS order): their number, the name of
 * field i ("beta1"; NULL out of range), its meaning, whether it is a bool (else a double), and its
 * value in o as a double (bools as 0 / 1; NAN out of range or o NULL). */
int tg_optim_num_fields(void);
const char *tg_optim_field_name(int i);
const char *tg_optim_field_meaning(int i);
bool tg_optim_field_is_bool(int i);
double tg_optim_field_get(const tg_optim_opts *o, int i);
/* true when optimizers of this kind read field i (and tg_optim_new validates it). */
bool tg_optim_kind_uses(tg_optim_kind kind, int i);

/* An optimizer with one group holding params[0..n-1] (n may be 0: add groups later) and the given
 * hyper-parameters (NULL = tg_optim_defaults(kind)), which are also the defaults of later groups.
 * Parameters must be leaves and appear only once. returns: new object, or NULL after tg_error. */
tg_optim *tg_optim_new(tg_optim_kind kind, tg_tensor *const *params, int n, const tg_optim_opts *opts);
void tg_optim_free(tg_optim *opt); /* releases its parameter references and state; NULL-safe */

/* Adds a parameter group with its own hyper-parameters (NULL = the optimizer's). Returns the group
 * index, or -1 after tg_error. args: borrowed. */
int tg_optim_add_group(tg_optim *opt, tg_tensor *const *params, int n, const tg_optim_opts *opts);
/* The same over every tensor of a named parameter set, in its order (nn.h). */
tg_optim *tg_optim_new_params(tg_optim_kind kind, const tg_params *params, const tg_optim_opts *opts);
int tg_optim_add_group_params(tg_optim *opt, const tg_params *params, const tg_optim_opts *opts);

/* One update of every parameter that has a gradient, under no-grad. Parameters' (and state tensors')
 * version counters are bumped, so a stale saved tensor is caught by the next backward. Returns 0, or
 * -1 after tg_error (a gradient whose shape or dtype differs from its parameter). */
int tg_optim_step(tg_optim *opt);
/* Drops every parameter's gradient (torch's zero_grad(set_to_none=True)). */
void tg_optim_zero_grad(tg_optim *opt);

tg_optim_kind tg_optim_kind_of(const tg_optim *opt);
int tg_optim_num_groups(const tg_optim *opt);
int tg_optim_num_params(const tg_optim *opt);            /* over all groups */
int tg_optim_group_size(const tg_optim *opt, int group);
tg_tensor *tg_optim_param(const tg_optim *opt, int index); /* returns: borrowed; index over all groups */
const tg_optim_opts *tg_optim_group_opts(const tg_optim *opt, int group); /* returns: borrowed */
/* Replaces a group's hyper-parameters (validated; returns 0 or -1 after tg_error). */
int tg_optim_set_group_opts(tg_optim *opt, int group, const tg_optim_opts *opts);
double tg_optim_lr(const tg_optim *opt, int group);
void tg_optim_set_lr(tg_optim *opt, int group, double lr); /* lr >= 0 */

/* The parameter's step count, or -1 if param is not in this optimizer. */
int64_t tg_optim_step_count(const tg_optim *opt, const tg_tensor *param);
/* The parameter's state tensor by torch's name ("momentum_buffer", "exp_avg", "exp_avg_sq",
 * "max_exp_avg_sq", "square_avg", "grad_avg", "sum", "mu_product" (NAdam; 0-d, in the parameter's
 * dtype, where torch's is in the default dtype), "exp_inf", "acc_delta"), or NULL if not created (yet).
 * returns: borrowed. */
tg_tensor *tg_optim_state(const tg_optim *opt, const tg_tensor *param, const char *name);

/* ---- gradient clipping (torch.nn.utils) --------------------------------------------------------- */

/* Exactly torch.nn.utils.clip_grad_norm_: total = the norm_type-norm (2.0, any p > 0, or INFINITY) of
 * all gradients together (tensors without a gradient are skipped; a NaN element makes total NaN for
 * every norm_type, INFINITY included). Then every gradient is multiplied by
 *     clip_coef = min(1, max_norm / (total + 1e-6))
 * unconditionally, as torch does: a factor of exactly 1 (total <= max_norm - 1e-6, roughly) leaves the
 * values bit for bit, a total within 1e-6 below max_norm is already scaled (relative change
 * 1e-6 / (total + 1e-6): 50 % when total = max_norm = 1e-6), and a NaN total makes every gradient NaN.
 * Returns total, the norm before clipping (0 when no gradients).
 * error_if_nonfinite: a NaN or infinite total is reported through tg_error and nothing is scaled.
 * max_norm must be >= 0. args: borrowed. */
double tg_clip_grad_norm_(tg_tensor *const *params, int n, double max_norm, double norm_type,
                          bool error_if_nonfinite);
/* Like clip_grad_value_: clamps every gradient element into [-clip_value, clip_value] (clip_value >= 0). */
void tg_clip_grad_value_(tg_tensor *const *params, int n, double clip_value);
/* The same over every parameter of an optimizer. */
double tg_optim_clip_grad_norm(tg_optim *opt, double max_norm, double norm_type, bool error_if_nonfinite);
void tg_optim_clip_grad_value(tg_optim *opt, double clip_value);

/* ---- learning-rate schedules (torch.optim.lr_scheduler) ----------------------------------------- */

/* A schedule sets every group's lr from the group's base lr (base: the group's initial_lr when the
 * schedule was created; initial_lr is the group's lr when the first schedule was attached, like torch)
 * and its epoch counter e. Creating one applies epoch 0 at once (as torch's constructor does); each
 * tg_sched_step advances one epoch and computes the new lr exactly as torch's step() does: from the
 * group's current lr by torch's recursive ("chainable") get_lr where torch has one (STEP: lr·γ at
 * multiples of step_size, EXPONENTIAL: lr·γ, ...), so schedules compose like torch's (CHAINED) and an
 * lr set by hand is carried on. The values, base = the schedule's base lr:
 *   STEP         base · γ^⌊e / step_size⌋
 *   MULTISTEP    base · γ^(number of milestones <= e)
 *   EXPONENTIAL  base · γ^e
 *   COSINE       eta_min + (base - eta_min)(1 + cos(π e / T_max)) / 2   (CosineAnnealingLR)
 *   LINEAR       base · (start + (end - start) · min(e, total_iters) / total_iters)   (LinearLR warm-up)
 *   LAMBDA       base · f(e, group)                      (LambdaLR, f a C callback)
 *   MULTIPLICATIVE  lr · f(e, group) for e > 0          (MultiplicativeLR)
 *   ONECYCLE     OneCycleLR: from max_lr/div_factor up to max_lr over pct_start·total_steps steps, then
 *                down to initial/final_div_factor (three_phase: up, down to the start, then to the
 *                minimum), cosine or linear; momentum (or Adam's β1) cycled the other way
 *   CYCLIC       CyclicLR: between base_lr and max_lr in cycles of step_size_up + step_size_down
 *                steps, amplitude ·1 (triangular), ·2^-(cycle-1) (triangular2), ·γ^e (exp_range);
 *                momentum cycled the other way
 *   WARM_RESTARTS  CosineAnnealingWarmRestarts: cosine from base to eta_min over T_i epochs, then a
 *                restart with T_i ·= T_mult
 *   SEQUENTIAL   SequentialLR: member k drives epochs [milestone k-1, milestone k), restarted at 0 there
 *   CHAINED      ChainedScheduler: every member steps in turn, each on the lr the previous one left
 *                (StepLR(2, 0.5) + ExponentialLR(0.9) at epoch 4 from lr 0.1: 0.1·0.5²·0.9⁴ = 0.0164025)
 *   PLATEAU      ReduceLROnPlateau: driven by tg_sched_step_metric; after more than `patience` epochs
 *                without improvement lr = max(lr · factor, min_lr of the group) (skipped if the change
 *                <= eps), then `cooldown` epochs during which bad epochs are not counted.
 * Invalid arguments are reported through tg_error and the constructor returns NULL.
 * All constructors: args: borrowed (opt must outlive the schedule); returns: new object (tg_sched_free). */
/* The schedules, one line each: X(KIND, name) makes TG_SCHED_<KIND> and the name checkpoints use. */
#define TG_SCHED_KINDS(X)            \
    X(STEP, step)                    \
    X(MULTISTEP, multistep)          \
    X(EXPONENTIAL, exponential)      \
    X(COSINE, cosine)                \
    X(LINEAR, linear)                \
    X(PLATEAU, plateau)              \
    X(LAMBDA, lambda)                \
    X(MULTIPLICATIVE, multiplicative) \
    X(ONECYCLE, onecycle)            \
    X(CYCLIC, cyclic)                \
    X(WARM_RESTARTS, warm_restarts)  \
    X(SEQUENTIAL, sequential)        \
    X(CHAINED, chained)

typedef enum tg_sched_kind {
#define TG__SCHED_ENUM(K, name) TG_SCHED_##K,
    TG_SCHED_KINDS(TG__SCHED_ENUM)
#undef TG__SCHED_ENUM
    TG_SCHED_KIND_COUNT
} tg_sched_kind;

const char *tg_sched_kind_name(tg_sched_kind kind); /* "step", "plateau", ...; "unknown" out of range */
/* The kind with exactly this name, or TG_SCHED_KIND_COUNT (unknown name or NULL). */
tg_sched_kind tg_sched_kind_from_name(const char *name);

typedef struct tg_sched tg_sched;

tg_sched *tg_sched_step_lr(tg_optim *opt, int64_t step_size, double gamma);           /* step_size > 0 */
/* milestones in any order (copied; a repeated milestone decays twice, like torch's Counter) */
tg_sched *tg_sched_multistep(tg_optim *opt, int n, const int64_t *milestones, double gamma);
tg_sched *tg_sched_exponential(tg_optim *opt, double gamma);
tg_sched *tg_sched_cosine(tg_optim *opt, int64_t T_max, double eta_min);              /* T_max > 0 */
/* start_factor in (0, 1], end_factor in [0, 1], total_iters > 0 (torch: 1/3, 1.0, 5) */
tg_sched *tg_sched_linear(tg_optim *opt, double start_factor, double end_factor, int64_t total_iters);

typedef struct tg_plateau_opts {
    bool mode_max;       /* false: "min" (a loss), true: "max" (an accuracy) */
    double factor;       /* in [0, 1) (0.1) */
    int64_t patience;    /* >= 0 (10) */
    double threshold;    /* >= 0 (1e-4) */
    bool threshold_abs;  /* false: "rel" (best·(1 ∓ threshold)), true: "abs" (best ∓ threshold) */
    int64_t cooldown;    /* >= 0 (0) */
    double min_lr;       /* >= 0 (0), for every group without its own */
    const double *min_lrs; /* NULL, or one min_lr >= 0 per group ([number of groups when the schedule
                            * is created], copied; torch's min_lr list) (NULL) */
    double eps;          /* minimal change of lr (1e-8) */
} tg_plateau_opts;
tg_plateau_opts tg_plateau_defaults(void);
tg_sched *tg_sched_plateau(tg_optim *opt, const tg_plateau_opts *opts); /* opts NULL = defaults */

/* The factor of LAMBDA (lr = base · f) and MULTIPLICATIVE (lr = lr · f) at epoch e for group g;
 * user is the pointer given to the constructor. Called with e = 0 by LAMBDA's constructor. */
typedef double tg_lr_lambda(int64_t epoch, int group, void *user);
tg_sched *tg_sched_lambda(tg_optim *opt, tg_lr_lambda *f, void *user);
tg_sched *tg_sched_multiplicative(tg_optim *opt, tg_lr_lambda *f, void *user);

typedef struct tg_onecycle_opts {
    double max_lr;          /* > 0, every group without its own */
    const double *max_lrs;  /* NULL or one per group (copied) */
    int64_t total_steps;    /* > 0: tg_sched_step may be called total_steps times, no more */
    double pct_start;       /* in [0, 1] (0.3) */
    bool anneal_linear;     /* false: cosine ("cos"), true: "linear" */
    bool cycle_momentum;    /* true: momentum (SGD, RMSprop) or β1 (Adam family) from max_momentum
                             * down to base_momentum and back; needs an optimizer that has one */
    double base_momentum, max_momentum; /* 0.85, 0.95 */
    double div_factor;      /* initial lr = max_lr / div_factor (25) */
    double final_div_factor;/* min lr = initial lr / final_div_factor (1e4) */
    bool three_phase;       /* false */
} tg_onecycle_opts;
tg_onecycle_opts tg_onecycle_defaults(double max_lr, int64_t total_steps); /* torch's defaults */
/* Sets every group's initial_lr to max_lr / div_factor (like torch). */
tg_sched *tg_sched_onecycle(tg_optim *opt, const tg_onecycle_opts *opts);

typedef enum tg_cyclic_mode { TG_CYCLIC_TRIANGULAR = 0, TG_CYCLIC_TRIANGULAR2, TG_CYCLIC_EXP_RANGE } tg_cyclic_mode;
typedef struct tg_cyclic_opts {
    double base_lr, max_lr;            /* >= 0, every group (sets the groups' lr to base_lr at once) */
    const double *base_lrs, *max_lrs;  /* NULL or one per group (copied) */
    int64_t step_size_up;              /* > 0 (2000) */
    int64_t step_size_down;            /* > 0, or 0 = step_size_up (0) */
    tg_cyclic_mode mode;               /* TG_CYCLIC_TRIANGULAR */
    double gamma;                      /* exp_range: amplitude · gamma^e (1.0) */
    bool cycle_momentum;               /* true (needs an optimizer with momentum: SGD, RMSprop) */
    double base_momentum, max_momentum;/* 0.8, 0.9 */
} tg_cyclic_opts;
tg_cyclic_opts tg_cyclic_defaults(double base_lr, double max_lr); /* torch's defaults */
tg_sched *tg_sched_cyclic(tg_optim *opt, const tg_cyclic_opts *opts);

/* T_0 > 0, T_mult >= 1, eta_min >= 0 */
tg_sched *tg_sched_warm_restarts(tg_optim *opt, int64_t T_0, int64_t T_mult, double eta_min);

/* SequentialLR / ChainedScheduler over n >= 1 schedules created on opt, in order (members: borrowed;
 * they must outlive the container and be stepped only through it; PLATEAU, SEQUENTIAL and CHAINED
 * cannot be members; at most TG_SCHED_MAX_MEMBERS). SEQUENTIAL takes n - 1 increasing milestones and,
 * like torch, resets every group's lr to its initial_lr and restarts the first member at epoch 0. */
#define TG_SCHED_MAX_MEMBERS 8
tg_sched *tg_sched_sequential(tg_optim *opt, int n, tg_sched *const *members, const int64_t *milestones);
tg_sched *tg_sched_chained(int n, tg_sched *const *members);

void tg_sched_step(tg_sched *s);                      /* epoch schedules (PLATEAU: an error, it needs the metric) */
/* PLATEAU; the epoch schedules accept it too and ignore the metric, so a loop can treat all alike. */
void tg_sched_step_metric(tg_sched *s, double metric);
int64_t tg_sched_epoch(const tg_sched *s);            /* torch's last_epoch: 0 right after creation */
/* How many more times tg_sched_step may be called before the schedule refuses a step: ONECYCLE's
 * total_steps - epoch; SEQUENTIAL and CHAINED as their members allow (a OneCycleLR member, restarted at
 * its milestone); INT64_MAX for schedules without an end; 0 for NULL. For a caller to refuse a run
 * that would step past the end before it starts. */
int64_t tg_sched_steps_left(const tg_sched *s);
tg_sched_kind tg_sched_kind_of(const tg_sched *s);
void tg_sched_free(tg_sched *s);                      /* NULL-safe; leaves the optimizer's lr as it is */

/* ---- schedules from text (command lines, configuration files) ----------------------------------- */

/* A schedule written as text: "KIND" or "KIND:name=value,...", the arguments under torch's names; a
 * value without a name continues the list before it. E.g. "step:step_size=30,gamma=0.1",
 * "multistep:milestones=30,60,80", "cosine:T_max=100,eta_min=1e-5", "plateau:patience=2,factor=0.5",
 * "linear:start_factor=0.1,total_iters=5" (a warm-up), "onecycle:max_lr=0.01". The kinds a spec can name
 * and their arguments with defaults: tg_sched_spec_list, tg_sched_spec_help (lambda, multiplicative,
 * sequential and chained need C: a callback or member schedules).
 * length: the run's length in schedule steps, the default of cosine's T_max and onecycle's total_steps
 * (0: none, then they must be given). mode_max: plateau's default mode ("max": an accuracy).
 * canon (may be NULL): the spec with every argument written out, defaults filled in (numbers in the
 * fewest of 15-17 digits that read back exactly), e.g. "cosine:T_max=8,eta_min=0": tg_sched_from_spec(opt, canon, ...) builds the same schedule
 * whatever length and mode_max are then (what a checkpoint keeps).
 * returns: new object (tg_sched_free), or NULL with a message naming the problem (tg_last_error; a data
 * error: never aborts, e.g. "tg_sched_spec: step needs step_size=VALUE"). args: borrowed. */
tg_sched *tg_sched_from_spec(tg_optim *opt, const char *spec, int64_t length, bool mode_max, char *canon,
                             size_t canon_size);
/* The same checks without an optimizer: 0 (the kind in *kind, may be NULL; canon as above) or -1 + message. */
int tg_sched_spec_check(const char *spec, int64_t length, bool mode_max, tg_sched_kind *kind, char *canon,
                        size_t canon_size);
/* Does spec name the schedule canon (a canonical spec) describes: the same kind, every argument it gives
 * equal, the others at their defaults (those defaulting to the run's length: canon's, whatever it is)?
 * For a resumed run's command line. */
bool tg_sched_spec_matches(const char *spec, const char *canon, bool mode_max);
/* Is kind one that torch steps after every batch (OneCycleLR, CyclicLR) rather than every epoch? */
bool tg_sched_spec_per_step(tg_sched_kind kind);
/* "step, multistep, ...": the kinds a spec can name, joined by sep. returns: buf */
char *tg_sched_spec_list(char *buf, size_t size, const char *sep);
/* One line per kind (each after indent, may be NULL): "step:step_size=N,gamma=0.1", defaults shown,
 * N / X where an argument is required. returns: buf */
char *tg_sched_spec_help(char *buf, size_t size, const char *indent);

/* ---- checkpoints --------------------------------------------------------------------------------- */

/* Writes every (name, tensor) of the set to a safetensors file under its PyTorch name, in its dtype,
 * with metadata {"format": "pt"} (loads with safetensors.torch.load_file into a state_dict).
 * Returns 0, or -1 with a message (tg_last_error; a data error: never aborts). args: borrowed. */
int tg_params_save(const tg_params *params, const char *path);
/* Loads a file written by tg_params_save (or by PyTorch's safetensors) into an existing set, like
 * torch's load_state_dict(strict=True) but without dtype conversion: every tensor of the set must be
 * in the file with the same shape and dtype, and the file must hold no other tensor. Everything is
 * checked before anything is copied: on failure it returns -1 with a message naming the first
 * offending tensor (and how many problems there are), and the set is left untouched. On success the
 * values are copied in place (version counters bumped; the tensors keep their identity, so optimizers
 * holding them stay valid). */
int tg_params_load(tg_params *params, const char *path);


/* Writes the optimizer's complete state to a safetensors file: every state tensor as
 * "state.<i>.<name>" (i = parameter index over all groups, names as in tg_optim_state) in its exact
 * dtype and bits, and as metadata the kind, every group's hyper-parameters and initial_lr (printed
 * with 17 significant digits, so they read back bit for bit), the parameters' shapes and step counts,
 * and, when sched is not NULL, the schedule's kind and counters. Returns 0, or -1 with a message
 * (tg_last_error; data error: nothing aborts). */
int tg_optim_save(const tg_optim *opt, const tg_sched *sched, const char *path);
/* Restores a state saved by tg_optim_save into an optimizer built the same way (same kind, groups of
 * the same sizes over parameters of the same shapes and dtypes) and, when sched is not NULL, into a
 * schedule of the same kind created on it beforehand. Everything is validated before anything is
 * changed: on any problem (unreadable file, other kind, group or parameter mismatch, unknown or
 * mis-shaped state tensor, bad metadata, a parameter with step > 0 whose state tensor the file
 * lacks: "parameter 3 'rnn.bias' has taken 6 steps but the checkpoint has no state tensor
 * 'state.3.exp_avg'"; which tensors a step needs depends on the options, e.g. SGD's momentum_buffer
 * only with momentum) it returns -1 with a message naming it and leaves opt and sched untouched. With the parameters restored too (tg_params_load), training then continues bit for
 * bit as if it had never stopped. */
int tg_optim_load(tg_optim *opt, tg_sched *sched, const char *path);

#ifdef __cplusplus
}
#endif
#endif
