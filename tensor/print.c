/* tensor/print.c - numpy-like printing: tensor([[1., 2.], [3., 4.]], dtype=f64).
 * Tensors of more than 1000 elements show 3 items at each edge of every axis around "...". */
#include "tensor/internal.h"

#include <math.h>
#include <string.h>

#define EDGE 3
#define THRESHOLD 1000

static int format_num(char *buf, size_t size, double v, bool all_int) {
    if (isnan(v)) return snprintf(buf, size, "nan");
    if (isinf(v)) return snprintf(buf, size, v > 0 ? "inf" : "-inf");
    if (all_int) return snprintf(buf, size, "%.0f.", v);
    return snprintf(buf, size, "%.4f", v);
}

static void print_num(FILE *f, double v, bool all_int, int width) {
    char buf[64];
    format_num(buf, sizeof buf, v, all_int);
    fprintf(f, "%*s", width, buf);
}

static void print_rec(FILE *f, const tg_tensor *t, int axis, int64_t base, bool abbrev, bool all_int,
                      int width, int indent) {
    int64_t n = t->shape[axis];
    int64_t stride = 1;
    for (int i = axis + 1; i < t->ndim; i++) stride *= t->shape[i];
    fputc('[', f);
    for (int64_t i = 0; i < n; i++) {
        if (abbrev && n > 2 * EDGE && i == EDGE) {
            if (axis == t->ndim - 1) fprintf(f, "..., ");
            else fprintf(f, "...,\n%*s", indent + axis + 1, "");
            i = n - EDGE - 1;
            continue;
        }
        if (axis == t->ndim - 1) print_num(f, tg_get(t, base + i), all_int, width);
        else print_rec(f, t, axis + 1, base + i * stride, abbrev, all_int, width, indent);
        if (i + 1 < n) {
            if (axis == t->ndim - 1) fprintf(f, ", ");
            else {
                fputc(',', f);
                for (int k = axis; k < t->ndim - 1; k++) fputc('\n', f);
                fprintf(f, "%*s", indent + axis + 1, "");
            }
        }
    }
    fputc(']', f);
}

void tg_fprint(FILE *f, const tg_tensor *t) {
    if (!tg__check("tg_print", "t", t)) return;
    bool abbrev = t->numel > THRESHOLD;
    bool all_int = true;
    double maxabs = 0;
    for (int64_t i = 0; i < t->numel; i++) {
        double v = tg_get(t, i);
        if (isfinite(v)) {
            if (v != floor(v)) all_int = false;
            if (fabs(v) > maxabs) maxabs = fabs(v);
        }
    }
    (void)maxabs;
    int width = 1; /* numpy pads every element to the widest one */
    for (int64_t i = 0; i < t->numel; i++) {
        char buf[64];
        int w = format_num(buf, sizeof buf, tg_get(t, i), all_int);
        if (w > width) width = w;
    }
    const char *indent_txt = "tensor(";
    fprintf(f, "%s", indent_txt);
    if (t->ndim == 0) print_num(f, tg_get(t, 0), all_int, 1);
    else print_rec(f, t, 0, 0, abbrev, all_int, width, (int)strlen(indent_txt));
    char b[128];
    if (abbrev) fprintf(f, ", shape=%s", tg_shape_str(t, b, sizeof b));
    fprintf(f, ", dtype=%s", t->dtype == TG_F64 ? "f64" : "f32");
    if (t->name[0]) fprintf(f, ", name='%s'", t->name);
    fprintf(f, ")\n");
}

void tg_print(const tg_tensor *t) { tg_fprint(stdout, t); }
