/* tools/plot.c - learning curves as SVG, written by hand (see plot.h). */
#include "tools/plot.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#define W 860.0
#define H 520.0
#define LEFT 86.0
#define RIGHT 210.0  /* room for the legend */
#define TOP 52.0
#define BOTTOM 62.0

static const char *const palette[] = {"#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b",
                                      "#e377c2", "#17becf", "#bcbd22", "#7f7f7f", "#393b79", "#637939"};
#define N_COLORS (int)(sizeof palette / sizeof palette[0])

static void xml_text(FILE *f, const char *s) {
    for (; s && *s; s++) {
        switch (*s) {
        case '&': fputs("&amp;", f); break;
        case '<': fputs("&lt;", f); break;
        case '>': fputs("&gt;", f); break;
        case '"': fputs("&quot;", f); break;
        default: fputc(*s, f);
        }
    }
}

/* A "nice" tick step (1, 2 or 5 times a power of ten) giving about `want` intervals over span. */
static double nice_step(double span, int want) {
    double raw = span / want, p = pow(10, floor(log10(raw))), m = raw / p;
    return (m < 1.5 ? 1 : m < 3.5 ? 2 : m < 7.5 ? 5 : 10) * p;
}

static void fmt_num(char *buf, size_t n, double v) {
    double a = fabs(v);
    if (v == 0) snprintf(buf, n, "0");
    else if (a >= 1e5 || a < 1e-3) snprintf(buf, n, "%.0e", v);
    else snprintf(buf, n, "%g", v);
}

typedef struct axis {
    double lo, hi;
    bool log;
    double px0, px1; /* pixel positions of lo and hi */
} axis;

static double map(const axis *a, double v) {
    double t = a->log ? (log10(v) - log10(a->lo)) / (log10(a->hi) - log10(a->lo)) : (v - a->lo) / (a->hi - a->lo);
    return a->px0 + t * (a->px1 - a->px0);
}

int plot_svg(const char *path, const plot_opts *o, const plot_series *series, int n_series, char *err, size_t errlen) {
    double xmin = INFINITY, xmax = -INFINITY, ymin = INFINITY, ymax = -INFINITY;
    for (int s = 0; s < n_series; s++)
        for (int i = 0; i < series[s].n; i++) {
            double x = series[s].x[i], y = series[s].y[i];
            if (!isfinite(x) || !isfinite(y)) continue;
            xmin = fmin(xmin, x), xmax = fmax(xmax, x), ymin = fmin(ymin, y), ymax = fmax(ymax, y);
        }
    if (o->has_baseline && isfinite(o->baseline)) ymin = fmin(ymin, o->baseline), ymax = fmax(ymax, o->baseline);
    if (!isfinite(xmin)) xmin = 0, xmax = 1;
    if (!isfinite(ymin)) ymin = 0, ymax = 1;
    if (xmax <= xmin) xmax = xmin + 1;
    axis ax = {xmin, xmax, false, LEFT, W - RIGHT};
    axis ay = {ymin, ymax, false, H - BOTTOM, TOP};
    ay.log = ymin > 0 && ymax / ymin > 20;
    if (ay.log) {
        ay.lo = pow(10, floor(log10(ymin) * 10) / 10); /* a little margin, on a 0.1-decade grid */
        ay.hi = pow(10, ceil(log10(ymax) * 10) / 10);
    } else {
        if (ymax <= ymin) ymax = ymin + 1;
        double st = nice_step(ymax - ymin, 6);
        ay.lo = floor(ymin / st) * st;
        ay.hi = ceil(ymax / st) * st;
        if (ymin >= 0 && ay.lo < 0) ay.lo = 0;
    }
    {
        double st = nice_step(xmax - xmin, 8);
        ax.lo = floor(xmin / st) * st;
        ax.hi = ceil(xmax / st) * st;
    }

    FILE *f = fopen(path, "w");
    if (!f) { snprintf(err, errlen, "cannot write '%s': %s", path, strerror(errno)); return -1; }
    fprintf(f, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
               "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%.0f\" height=\"%.0f\" viewBox=\"0 0 %.0f %.0f\" "
               "font-family=\"Helvetica, Arial, sans-serif\" font-size=\"13\">\n",
            W, H, W, H);
    fprintf(f, "<rect width=\"100%%\" height=\"100%%\" fill=\"white\"/>\n");
    fprintf(f, "<text x=\"%.1f\" y=\"28\" font-size=\"17\" text-anchor=\"middle\" font-weight=\"bold\">",
            (LEFT + W - RIGHT) / 2);
    xml_text(f, o->title ? o->title : "");
    fprintf(f, "</text>\n");

    /* grid and ticks */
    char lab[32];
    fprintf(f, "<g stroke=\"#e4e4e4\" stroke-width=\"1\">\n");
    if (ay.log) {
        for (int e = (int)floor(log10(ay.lo)); e <= (int)ceil(log10(ay.hi)); e++)
            for (int m = 1; m <= 9; m++) {
                double v = m * pow(10, e);
                if (v < ay.lo * 0.999 || v > ay.hi * 1.001) continue;
                fprintf(f, "<line x1=\"%.1f\" x2=\"%.1f\" y1=\"%.1f\" y2=\"%.1f\"%s/>\n", LEFT, W - RIGHT, map(&ay, v),
                        map(&ay, v), m == 1 ? " stroke=\"#c8c8c8\"" : "");
            }
    } else {
        double st = nice_step(ay.hi - ay.lo, 6);
        for (double v = ay.lo; v <= ay.hi + st * 1e-6; v += st)
            fprintf(f, "<line x1=\"%.1f\" x2=\"%.1f\" y1=\"%.1f\" y2=\"%.1f\"/>\n", LEFT, W - RIGHT, map(&ay, v), map(&ay, v));
    }
    double xst = nice_step(ax.hi - ax.lo, 8);
    for (double v = ax.lo; v <= ax.hi + xst * 1e-6; v += xst)
        fprintf(f, "<line x1=\"%.1f\" x2=\"%.1f\" y1=\"%.1f\" y2=\"%.1f\"/>\n", map(&ax, v), map(&ax, v), TOP, H - BOTTOM);
    fprintf(f, "</g>\n");

    /* axes */
    fprintf(f, "<g stroke=\"black\" stroke-width=\"1.2\" fill=\"none\">\n"
               "<line x1=\"%.1f\" x2=\"%.1f\" y1=\"%.1f\" y2=\"%.1f\"/>\n"
               "<line x1=\"%.1f\" x2=\"%.1f\" y1=\"%.1f\" y2=\"%.1f\"/>\n</g>\n",
            LEFT, W - RIGHT, H - BOTTOM, H - BOTTOM, LEFT, LEFT, TOP, H - BOTTOM);
    fprintf(f, "<g font-size=\"12\" fill=\"#222\">\n");
    for (double v = ax.lo; v <= ax.hi + xst * 1e-6; v += xst) {
        fmt_num(lab, sizeof lab, fabs(v) < xst * 1e-9 ? 0 : v);
        fprintf(f, "<line x1=\"%.1f\" x2=\"%.1f\" y1=\"%.1f\" y2=\"%.1f\" stroke=\"black\"/>", map(&ax, v), map(&ax, v),
                H - BOTTOM, H - BOTTOM + 5);
        fprintf(f, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\">%s</text>\n", map(&ax, v), H - BOTTOM + 19, lab);
    }
    if (ay.log) {
        for (int e = (int)floor(log10(ay.lo)); e <= (int)ceil(log10(ay.hi)); e++)
            for (int m = 1; m <= 9; m++) {
                double v = m * pow(10, e);
                bool labelled = m == 1 || ((m == 2 || m == 5) && log10(ay.hi / ay.lo) < 3.5);
                if (v < ay.lo * 0.999 || v > ay.hi * 1.001 || !labelled) continue;
                fmt_num(lab, sizeof lab, v);
                fprintf(f, "<line x1=\"%.1f\" x2=\"%.1f\" y1=\"%.1f\" y2=\"%.1f\" stroke=\"black\"/>", LEFT - 5, LEFT,
                        map(&ay, v), map(&ay, v));
                fprintf(f, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"end\">%s</text>\n", LEFT - 8, map(&ay, v) + 4, lab);
            }
    } else {
        double st = nice_step(ay.hi - ay.lo, 6);
        for (double v = ay.lo; v <= ay.hi + st * 1e-6; v += st) {
            fmt_num(lab, sizeof lab, fabs(v) < st * 1e-9 ? 0 : v);
            fprintf(f, "<line x1=\"%.1f\" x2=\"%.1f\" y1=\"%.1f\" y2=\"%.1f\" stroke=\"black\"/>", LEFT - 5, LEFT,
                    map(&ay, v), map(&ay, v));
            fprintf(f, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"end\">%s</text>\n", LEFT - 8, map(&ay, v) + 4, lab);
        }
    }
    fprintf(f, "</g>\n");
    fprintf(f, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\">", (LEFT + W - RIGHT) / 2, H - 18);
    xml_text(f, o->xlabel ? o->xlabel : "");
    fprintf(f, "</text>\n<text transform=\"translate(22 %.1f) rotate(-90)\" text-anchor=\"middle\">", (TOP + H - BOTTOM) / 2);
    xml_text(f, o->ylabel ? o->ylabel : "");
    if (ay.log) fputs(" (log scale)", f);
    fprintf(f, "</text>\n");

    /* baseline */
    double ly = TOP + 8;
    if (o->has_baseline && isfinite(o->baseline)) {
        double y = map(&ay, o->baseline);
        fprintf(f, "<line x1=\"%.1f\" x2=\"%.1f\" y1=\"%.1f\" y2=\"%.1f\" stroke=\"#555\" stroke-width=\"1.5\" "
                   "stroke-dasharray=\"7 5\"/>\n",
                LEFT, W - RIGHT, y, y);
        fmt_num(lab, sizeof lab, o->baseline);
        fprintf(f, "<line x1=\"%.1f\" x2=\"%.1f\" y1=\"%.1f\" y2=\"%.1f\" stroke=\"#555\" stroke-width=\"1.5\" "
                   "stroke-dasharray=\"7 5\"/>\n<text x=\"%.1f\" y=\"%.1f\" font-size=\"12\">baseline %.4g</text>\n",
                W - RIGHT + 14, W - RIGHT + 40, ly, ly, W - RIGHT + 46, ly + 4, o->baseline);
        /* the label, wrapped at spaces into lines that fit the legend column */
        const char *rest = o->baseline_label;
        while (rest && *rest) {
            size_t len = strlen(rest), cut = len;
            if (len > 24) {
                cut = 24;
                while (cut > 0 && rest[cut] != ' ') cut--;
                if (cut == 0) cut = 24;
            }
            char piece[64];
            snprintf(piece, sizeof piece, "%.*s", (int)(cut < sizeof piece - 1 ? cut : sizeof piece - 1), rest);
            fprintf(f, "<text x=\"%.1f\" y=\"%.1f\" font-size=\"11\" fill=\"#555\">", W - RIGHT + 46, ly + 18);
            xml_text(f, piece);
            fprintf(f, "</text>\n");
            ly += 14;
            rest += cut;
            while (*rest == ' ') rest++;
        }
        ly += 24;
    }

    /* series, clipped to the plot area */
    fprintf(f, "<defs><clipPath id=\"area\"><rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\"/></clipPath></defs>\n",
            LEFT, TOP, W - RIGHT - LEFT, H - BOTTOM - TOP);
    for (int s = 0; s < n_series; s++) {
        const char *col = palette[s % N_COLORS];
        fprintf(f, "<polyline clip-path=\"url(#area)\" fill=\"none\" stroke=\"%s\" stroke-width=\"1.8\" "
                   "stroke-linejoin=\"round\" points=\"",
                col);
        for (int i = 0; i < series[s].n; i++) {
            double x = series[s].x[i], y = series[s].y[i];
            if (!isfinite(x) || !isfinite(y) || (ay.log && y <= 0)) continue;
            fprintf(f, "%.1f,%.1f ", map(&ax, x), map(&ay, y));
        }
        fprintf(f, "\"/>\n");
        fprintf(f, "<line x1=\"%.1f\" x2=\"%.1f\" y1=\"%.1f\" y2=\"%.1f\" stroke=\"%s\" stroke-width=\"3\"/>"
                   "<text x=\"%.1f\" y=\"%.1f\" font-size=\"12\">",
                W - RIGHT + 14, W - RIGHT + 40, ly, ly, col, W - RIGHT + 46, ly + 4);
        xml_text(f, series[s].label ? series[s].label : "");
        fprintf(f, "</text>\n");
        ly += 20;
    }
    fprintf(f, "</svg>\n");
    bool bad = ferror(f) != 0;
    if (fclose(f) != 0 || bad) {
        snprintf(err, errlen, "cannot write '%s': %s", path, strerror(errno));
        return -1;
    }
    return 0;
}
