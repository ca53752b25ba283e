/* tools/initweights.c - `train --init FILE`: starting weights from a safetensors file (initweights.h).
 *
 * Two passes, like tg_params_load: first every file tensor is matched to a parameter (by its name, or
 * by the parameter's name without its "prefix.") and checked (shape, values), and every parameter must
 * have been matched once; only when there is no problem are the values copied (tg_copy_ converts F64
 * to F32 and back). */
#include "tools/initweights.h"

#include <float.h>
#include <math.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <tapegrad/safetensors.h>

#include "tools/cli.h"

#define SHOWN_PROBLEMS 4

typedef struct problems {
    char *buf;
    size_t size, len;
    int count;
} problems;

static void problem(problems *pr, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void problem(problems *pr, const char *fmt, ...) {
    if (pr->count++ >= SHOWN_PROBLEMS || pr->len >= pr->size) return;
    if (pr->count > 1) pr->len += (size_t)snprintf(pr->buf + pr->len, pr->size - pr->len, "; ");
    if (pr->len >= pr->size) return;
    va_list ap;
    va_start(ap, fmt);
    int w = vsnprintf(pr->buf + pr->len, pr->size - pr->len, fmt, ap);
    va_end(ap);
    if (w > 0) pr->len += (size_t)w;
}

/* A name from the file as one printable line: control bytes become '?', long names end in "...". */
static const char *printable(const char *s, char *buf, size_t size) {
    size_t k = 0;
    for (; s[k] && k + 4 < size; k++) buf[k] = (unsigned char)s[k] < 0x20 || s[k] == 0x7f ? '?' : s[k];
    if (s[k]) { memcpy(buf + k, "...", 3); k += 3; }
    buf[k] = 0;
    return buf;
}

/* The parameter's name without its first "prefix." ("rnn.weight_ih_l0" -> "weight_ih_l0"), or NULL. */
static const char *short_name(const char *name) {
    const char *dot = strchr(name, '.');
    return dot && dot[1] ? dot + 1 : NULL;
}

/* Index of the parameter that the file's tensor `name` fits, or -1. */
static int match(const tg_params *params, const char *name) {
    int n = tg_params_count(params);
    for (int i = 0; i < n; i++)
        if (strcmp(tg_params_name_at(params, i), name) == 0) return i;
    for (int i = 0; i < n; i++) {
        const char *s = short_name(tg_params_name_at(params, i));
        if (s && strcmp(s, name) == 0) return i;
    }
    return -1;
}

/* The first element of t that is not finite, or beyond F32's range when `f32`; -1 if none. */
static int64_t first_bad_value(const tg_tensor *t, bool f32, double *value) {
    int64_t n = tg_numel(t);
    for (int64_t k = 0; k < n; k++) {
        double v = tg_get(t, k);
        if (!isfinite(v) || (f32 && fabs(v) > FLT_MAX)) { *value = v; return k; }
    }
    return -1;
}

int init_weights_load(tg_params *params, const char *path, int *converted, char *err, size_t errlen) {
    if (converted) *converted = 0;
    int n = tg_params_count(params);
    if (!params || !path || n == 0) { snprintf(err, errlen, "no parameters or no file"); return -1; }
    tg_clear_error();
    tg_st_file *f = tg_st_load(path);
    if (!f) {
        snprintf(err, errlen, "%s", tg_error_pending() ? tg_last_error() : "cannot read the file");
        tg_clear_error();
        return -1;
    }
    int m = tg_st_count(f);
    int *from = malloc((size_t)n * sizeof *from);             /* parameter i <- file tensor from[i] */
    const char **cands = malloc((size_t)(2 * n) * sizeof *cands); /* names for "did you mean" */
    if (!from || !cands) {
        free(from);
        free(cands);
        tg_st_free(f);
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    int nc = 0;
    for (int i = 0; i < n; i++) {
        from[i] = -1;
        cands[nc++] = tg_params_name_at(params, i);
        if (short_name(tg_params_name_at(params, i))) cands[nc++] = short_name(tg_params_name_at(params, i));
    }
    int plen = snprintf(err, errlen, "%s: ", path);
    problems pr = {err, errlen, plen > 0 && (size_t)plen < errlen ? (size_t)plen : errlen, 0};
    char a[160], b[160], s1[96], s2[96];
    for (int j = 0; j < m; j++) {
        const char *name = tg_st_name_at(f, j);
        tg_tensor *ft = tg_st_tensor_at(f, j);
        int i = match(params, name);
        if (i < 0) {
            const char *near = cli_suggest(name, cands, nc);
            problem(&pr, "unexpected tensor '%s' %s (the model has no parameter of that name%s%s%s)",
                    printable(name, a, sizeof a), tg_shape_str(ft, s1, sizeof s1), near ? ": did you mean '" : "",
                    near ? near : "", near ? "'?" : "");
            continue;
        }
        const char *pname = tg_params_name_at(params, i);
        tg_tensor *pt = tg_params_at(params, i);
        if (from[i] >= 0) {
            problem(&pr, "tensors '%s' and '%s' both give parameter '%s'", printable(tg_st_name_at(f, from[i]), a, sizeof a),
                    printable(name, b, sizeof b), pname);
            continue;
        }
        from[i] = j;
        if (!tg_same_shape(ft, pt)) {
            problem(&pr, "tensor '%s' is %s in the file, the model's '%s' is %s", printable(name, a, sizeof a),
                    tg_shape_str(ft, s1, sizeof s1), pname, tg_shape_str(pt, s2, sizeof s2));
            continue;
        }
        double v;
        int64_t at = first_bad_value(ft, tg_dtype_of(pt) == TG_F32, &v);
        if (at >= 0)
            problem(&pr, "tensor '%s' holds %g at element %lld%s", printable(name, a, sizeof a), v, (long long)at,
                    isfinite(v) ? ", beyond F32's range" : "");
    }
    for (int i = 0; i < n; i++) {
        if (from[i] >= 0) continue;
        const char *pname = tg_params_name_at(params, i), *s = short_name(pname);
        problem(&pr, "missing tensor '%s' %s%s%s%s", pname, tg_shape_str(tg_params_at(params, i), s1, sizeof s1),
                s ? " (or '" : "", s ? s : "", s ? "')" : "");
    }
    int rc = -1;
    if (pr.count > SHOWN_PROBLEMS && pr.len < errlen)
        snprintf(err + pr.len, errlen - pr.len, "; and %d more problem%s", pr.count - SHOWN_PROBLEMS,
                 pr.count - SHOWN_PROBLEMS > 1 ? "s" : "");
    if (pr.count == 0) {
        rc = 0;
        for (int i = 0; i < n && rc == 0; i++) {
            tg_tensor *pt = tg_params_at(params, i), *ft = tg_st_tensor_at(f, from[i]);
            if (converted && tg_dtype_of(pt) != tg_dtype_of(ft)) (*converted)++;
            if (tg_copy_(pt, ft)) {
                snprintf(err, errlen, "%s: cannot copy '%s': %s", path, tg_params_name_at(params, i), tg_last_error());
                tg_clear_error();
                rc = -1;
            }
        }
    }
    free(from);
    free(cands);
    tg_st_free(f);
    return rc;
}
