/* tests/consumers/app.c - a program outside tapegrad that uses it as a library (built by
 * scripts/ci-consumers.sh through pkg-config, a Meson subproject and a CMake package).
 * It checks one gradient by hand: for loss = sum(tanh(w * x)), dloss/dw_i = x_i (1 - tanh(w_i x_i)^2).
 * Exit status 0 when the tape agrees with the formula and the headers match the library. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include <tapegrad/tapegrad.h>

int main(void) {
    if (strcmp(TG_VERSION_STRING, tg_version_string()) != 0) {
        fprintf(stderr, "app: headers %s, library %s\n", TG_VERSION_STRING, tg_version_string());
        return 1;
    }
    const double xs[3] = {0.5, -1.0, 2.0}, ws[3] = {0.3, 0.7, -0.2};
    tg_tensor *x = tg_from_array(TG_F64, TG_SHAPE(3), xs);
    tg_tensor *w = tg_from_array(TG_F64, TG_SHAPE(3), ws);
    tg_set_requires_grad(w, true);
    tg_tensor *loss = tg_sum(tg_tanh(tg_mul(w, x)));  /* tape-owned */
    tg_backward(loss);
    double worst = 0;
    for (int i = 0; i < 3; i++) {
        double t = tanh(ws[i] * xs[i]);
        double err = fabs(tg_get(tg_grad(w), i) - xs[i] * (1 - t * t));
        worst = err > worst ? err : worst;
    }
    tg_tape_reset();
    tg_release(x);
    tg_release(w);
    printf("tapegrad %s: gradient of sum(tanh(w*x)) off by %.1e\n", tg_version_string(), worst);
    return worst < 1e-12 ? 0 : 1;
}
