/* optim/clip.c - gradient clipping by global norm and by value (torch.nn.utils.clip_grad_norm_ /
 * clip_grad_value_). Norms are accumulated in double whatever the gradients' dtype. */
#include "optim/optim_internal.h"
#include "tensor/alloc.h"

#include <tapegrad/autograd.h>

#include <math.h>
#include <stdlib.h>

/* The norm_type-norm of one tensor's elements (INFINITY: max |x|, NaN as soon as one element is NaN,
 * like torch's abs().max(); the loop stops there, since a later element would replace a NaN max). */
static double tensor_norm(const tg_tensor *g, double p) {
    int64_t n = tg_numel(g);
    double acc = 0;
    if (tg_dtype_of(g) == TG_F32) {
        const float *x = tg_cdata(g);
        if (isinf(p)) for (int64_t i = 0; i < n && !isnan(acc); i++) { double a = fabs((double)x[i]); if (!(a <= acc)) acc = a; }
        else if (p == 2) for (int64_t i = 0; i < n; i++) acc += (double)x[i] * (double)x[i];
        else for (int64_t i = 0; i < n; i++) acc += pow(fabs((double)x[i]), p);
    } else {
        const double *x = tg_cdata(g);
        if (isinf(p)) for (int64_t i = 0; i < n && !isnan(acc); i++) { double a = fabs(x[i]); if (!(a <= acc)) acc = a; }
        else if (p == 2) for (int64_t i = 0; i < n; i++) acc += x[i] * x[i];
        else for (int64_t i = 0; i < n; i++) acc += pow(fabs(x[i]), p);
    }
    if (isinf(p)) return acc;
    return p == 2 ? sqrt(acc) : pow(acc, 1.0 / p);
}

/* total = ‖(‖g_1‖, ‖g_2‖, ...)‖ as in torch: the norm of the per-tensor norms (a NaN anywhere makes it
 * NaN, for every norm_type). Then torch's rule exactly: every gradient is multiplied by
 *     clip_coef = min(1, max_norm / (total + 1e-6))
 * always (a factor of exactly 1 leaves the values bit for bit as they are), so gradients are scaled
 * from total > max_norm - 1e-6 on, and a NaN total scales them all to NaN (torch.clamp keeps NaN). */
double tg_clip_grad_norm_(tg_tensor *const *params, int n, double max_norm, double norm_type, bool error_if_nonfinite) {
    const char *fn = "tg_clip_grad_norm_";
    if (n < 0 || (n > 0 && !params)) { tg_error(fn, "%d parameters at %p", n, (const void *)params); return NAN; }
    if (!(max_norm >= 0)) { tg_error(fn, "max_norm %g must be >= 0", max_norm); return NAN; }
    if (!(norm_type > 0)) { tg_error(fn, "norm_type %g must be > 0 (2.0, or INFINITY for the max norm)", norm_type); return NAN; }
    double total = 0;
    bool any = false;
    for (int i = 0; i < n; i++) {
        if (!params[i]) {
            if (!tg_error_pending()) tg_error(fn, "parameter %d is NULL", i);
            return NAN;
        }
        tg_tensor *g = tg_grad(params[i]);
        if (!g) continue;
        any = true;
        double t = tensor_norm(g, norm_type);
        if (isinf(norm_type)) { if (!(t <= total) && !isnan(total)) total = t; } /* NaN sticks, as in torch.max */
        else total += norm_type == 2 ? t * t : pow(t, norm_type);
    }
    if (!any) return 0.0;
    if (!isinf(norm_type)) total = norm_type == 2 ? sqrt(total) : pow(total, 1.0 / norm_type);
    if (error_if_nonfinite && !isfinite(total)) {
        tg_error(fn, "the total norm of order %g of the gradients is %g (non-finite), so it cannot be clipped; "
                 "pass error_if_nonfinite = false to scale by it anyway", norm_type, total);
        return total;
    }
    double coef = max_norm / (total + 1e-6);
    if (coef > 1.0) coef = 1.0; /* torch.clamp(coef, max=1.0): NaN stays NaN */
    for (int i = 0; i < n; i++) {
        tg_tensor *g = tg_grad(params[i]);
        if (g) tg_scale_(g, coef);
    }
    return total;
}

void tg_clip_grad_value_(tg_tensor *const *params, int n, double clip_value) {
    const char *fn = "tg_clip_grad_value_";
    if (n < 0 || (n > 0 && !params)) { tg_error(fn, "%d parameters at %p", n, (const void *)params); return; }
    if (!(clip_value >= 0)) { tg_error(fn, "clip_value %g must be >= 0", clip_value); return; }
    for (int i = 0; i < n; i++) {
        if (!params[i]) {
            if (!tg_error_pending()) tg_error(fn, "parameter %d is NULL", i);
            return;
        }
        tg_tensor *g = tg_grad(params[i]);
        if (!g) continue;
        int64_t m = tg_numel(g);
        /* clamp(x, -c, c) keeps NaN, like torch.clamp */
        if (tg_dtype_of(g) == TG_F32) {
            float *x = tg_data(g), lo = (float)-clip_value, hi = (float)clip_value;
            for (int64_t k = 0; k < m; k++) x[k] = x[k] < lo ? lo : (x[k] > hi ? hi : x[k]);
        } else {
            double *x = tg_data(g), lo = -clip_value, hi = clip_value;
            for (int64_t k = 0; k < m; k++) x[k] = x[k] < lo ? lo : (x[k] > hi ? hi : x[k]);
        }
        tg_bump_version(g);
    }
}

/* The optimizer's parameters are contiguous in opt->params but not as a tg_tensor* array. */
static tg_tensor **param_array(const tg_optim *opt) {
    tg_tensor **a = tg_malloc((size_t)(opt->n_params ? opt->n_params : 1) * sizeof *a);
    if (a) for (int i = 0; i < opt->n_params; i++) a[i] = opt->params[i].param;
    return a;
}

double tg_optim_clip_grad_norm(tg_optim *opt, double max_norm, double norm_type, bool error_if_nonfinite) {
    if (!opt) { tg_error("tg_optim_clip_grad_norm", "optimizer is NULL"); return NAN; }
    tg_tensor **a = param_array(opt);
    if (!a) { tg_error("tg_optim_clip_grad_norm", "out of memory"); return NAN; }
    double total = tg_clip_grad_norm_(a, opt->n_params, max_norm, norm_type, error_if_nonfinite);
    free(a);
    return total;
}

void tg_optim_clip_grad_value(tg_optim *opt, double clip_value) {
    if (!opt) { tg_error("tg_optim_clip_grad_value", "optimizer is NULL"); return; }
    tg_tensor **a = param_array(opt);
    if (!a) { tg_error("tg_optim_clip_grad_value", "out of memory"); return; }
    tg_clip_grad_value_(a, opt->n_params, clip_value);
    free(a);
}
