/* tools/plot.h - learning curves as a hand-written SVG file (axes, ticks, labels, one polyline per
 * series, a dashed baseline, a legend) that any browser opens.
 *
 *     plot_series s = {"lstm", steps, losses, n};
 *     plot_opts o = {.title = "adding, T = 50", .xlabel = "step", .ylabel = "training loss (MSE)",
 *                    .has_baseline = true, .baseline = 0.1667, .baseline_label = "always predict 1"};
 *     if (plot_svg("curve.svg", &o, &s, 1, err, sizeof err)) fprintf(stderr, "%s\n", err);
 *
 * The y axis is logarithmic when every value is positive and they span more than a factor of 20. */
#ifndef TG_TOOLS_PLOT_H
#define TG_TOOLS_PLOT_H
#include <stdbool.h>
#include <stddef.h>

typedef struct plot_series {
    const char *label;
    const double *x, *y;  /* n points, x increasing */
    int n;
} plot_series;

typedef struct plot_opts {
    const char *title, *xlabel, *ylabel;
    bool has_baseline;
    double baseline;               /* a horizontal dashed line */
    const char *baseline_label;
} plot_opts;

/* Writes the SVG. Returns 0, or -1 with a message in err (cannot write the file). */
int plot_svg(const char *path, const plot_opts *o, const plot_series *series, int n_series, char *err, size_t errlen);
#endif
