/* autograd/gradcheck.c - compare the tape's gradients with central finite differences, element by
 * element, signs included (a check that compares magnitudes only would pass a sign error). */
#include "autograd/tape_internal.h"
#include "tensor/alloc.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

tg_gradcheck_opts tg_gradcheck_defaults(void) {
    return (tg_gradcheck_opts){.eps = 1e-6, .atol = 1e-7, .rtol = 1e-5, .seed = 1, .verbose = false};
}

/* loss = Σ out ⊙ proj, with proj fixed random weights (so a non-scalar output is fully checked) */
static double eval_loss(tg_gradcheck_fn fn, void *user, tg_tensor *const *inputs, int n, tg_tensor **proj,
                        uint64_t seed, bool grad, int *status) {
    tg_tensor *out = fn(inputs, n, user);
    if (!out) { *status = -1; return NAN; }
    if (out->dtype != TG_F64) {
        tg_error("tg_gradcheck", "the function returned %s; gradcheck runs in F64", tg_dtype_name(out->dtype));
        *status = -1;
        return NAN;
    }
    if (!*proj) {
        tg_rng rng;
        tg_rng_seed(&rng, seed);
        *proj = tg_rand_uniform(&rng, TG_F64, out->ndim, out->shape, 0.5, 1.5);
    }
    if (!tg_same_shape(out, *proj)) {
        tg_error("tg_gradcheck", "the function's output shape changed between calls");
        *status = -1;
        return NAN;
    }
    if (grad) {
        if (!out->requires_grad) { /* nothing depends on a checked input: all gradients are zero */
            *status = 1;
            return 0;
        }
        if (tg_backward_with(out, *proj) != 0) { *status = -1; return NAN; }
        return 0;
    }
    double s = 0;
    const double *po = TG_PTR(out, double), *pp = TG_PTR(*proj, double);
    for (int64_t i = 0; i < out->numel; i++) s += po[i] * pp[i];
    return s;
}

bool tg_gradcheck(tg_gradcheck_fn fn, void *user, tg_tensor *const *inputs, int n,
                  const tg_gradcheck_opts *opts_in, tg_gradcheck_input *report) {
    tg_gradcheck_opts o = opts_in ? *opts_in : tg_gradcheck_defaults();
    if (!fn || n <= 0 || !inputs) { tg_error("tg_gradcheck", "needs a function and at least one input"); return false; }
    for (int i = 0; i < n; i++) {
        char nm[16];
        snprintf(nm, sizeof nm, "%d", i);
        if (!tg__check("tg_gradcheck", nm, inputs[i])) return false;
        if (inputs[i]->dtype != TG_F64) {
            tg_error("tg_gradcheck", "input %d is %s; gradcheck runs in F64", i, tg_dtype_name(inputs[i]->dtype));
            return false;
        }
    }
    tg_tape_reset();
    tg_tensor *proj = NULL;
    int status = 0;
    tg_tensor **analytic = tg_calloc((size_t)n, sizeof *analytic);
    if (!analytic) { tg_error("tg_gradcheck", "out of memory"); return false; }
    for (int i = 0; i < n; i++) tg_zero_grad(inputs[i]);
    eval_loss(fn, user, inputs, n, &proj, o.seed, true, &status);
    for (int i = 0; i < n; i++) {
        analytic[i] = inputs[i]->grad ? tg_copy(inputs[i]->grad) : tg_zeros_like(inputs[i]);
        tg_zero_grad(inputs[i]);
    }
    tg_tape_reset();
    bool all = status >= 0;
    for (int i = 0; i < n && status >= 0; i++) {
        tg_gradcheck_input rep = {0, 0, -1, 0, 0, true};
        if (inputs[i]->requires_grad) {
            double worst_excess = -INFINITY;
            double *x = TG_PTR(inputs[i], double);
            const double *an = TG_PTR(analytic[i], double);
            tg_no_grad_begin();
            for (int64_t j = 0; j < inputs[i]->numel && status >= 0; j++) {
                double x0 = x[j];
                x[j] = x0 + o.eps;
                double lp = eval_loss(fn, user, inputs, n, &proj, o.seed, false, &status);
                tg_tape_reset();
                x[j] = x0 - o.eps;
                double lm = eval_loss(fn, user, inputs, n, &proj, o.seed, false, &status);
                tg_tape_reset();
                x[j] = x0;
                double num = (lp - lm) / (2 * o.eps);
                double err = fabs(an[j] - num);
                double rel = err / fmax(fabs(num), 1e-300);
                if (err > rep.max_abs_err || isnan(err)) rep.max_abs_err = err;
                if (fabs(num) > 1e-12 && rel > rep.max_rel_err) rep.max_rel_err = rel;
                double excess = err - (o.atol + o.rtol * fabs(num));
                if (isnan(err)) excess = INFINITY;
                if (excess > worst_excess) {
                    worst_excess = excess;
                    rep.worst_index = j;
                    rep.analytic = an[j];
                    rep.numeric = num;
                }
                if (excess > 0) rep.pass = false;
            }
            tg_no_grad_end();
            if (o.verbose)
                fprintf(stderr, "gradcheck input %d %s: max abs err %.3e, max rel err %.3e, worst [%lld] analytic %.10g numeric %.10g %s\n",
                        i, inputs[i]->name, rep.max_abs_err, rep.max_rel_err, (long long)rep.worst_index, rep.analytic,
                        rep.numeric, rep.pass ? "ok" : "FAIL");
        }
        all &= rep.pass;
        if (report) report[i] = rep;
    }
    for (int i = 0; i < n; i++) tg_release(analytic[i]);
    free(analytic);
    tg_release(proj);
    tg_tape_reset();
    return all && status >= 0;
}
