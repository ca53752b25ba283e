/* tools/summary.c - the Keras-like table of a model (see summary.h).
 * Dimension letters: T time steps, B batch, H hidden, O outputs, D directions. */
#include "tools/summary.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* "1,234,567" */
static void grouped(char *buf, size_t n, int64_t v) {
    char raw[32];
    snprintf(raw, sizeof raw, "%lld", (long long)v);
    size_t len = strlen(raw), j = 0;
    for (size_t i = 0; i < len && j + 2 < n; i++) {
        buf[j++] = raw[i];
        if ((len - i - 1) % 3 == 0 && i + 1 < len && raw[i] != '-') buf[j++] = ',';
    }
    buf[j] = 0;
}

static void shape_str(char *buf, size_t n, const tg_tensor *t) {
    size_t used = (size_t)snprintf(buf, n, "[");
    for (int d = 0; d < tg_ndim(t) && used < n; d++)
        used += (size_t)snprintf(buf + used, n - used, "%s%lld", d ? ", " : "", (long long)tg_dim(t, d));
    if (used < n) snprintf(buf + used, n - used, "]");
}

/* The layer a parameter belongs to, from its checkpoint name: "rnn.weight_ih_l1_reverse" -> "rnn layer 1
 * reverse (lstm)", "head.bias" -> "head (linear)", "rnn.h0" -> "rnn initial states". */
static void layer_of(char *buf, size_t n, const char *name, const char *cell) {
    if (strncmp(name, "head.", 5) == 0) { snprintf(buf, n, "head (linear)"); return; }
    const char *base = strncmp(name, "rnn.", 4) == 0 ? name + 4 : name;
    const char *l = strrchr(base, '_');
    bool reverse = false;
    if (l && strcmp(l, "_reverse") == 0) {
        reverse = true;
        const char *p = l - 1;
        while (p > base && *p != '_') p--;
        l = p > base ? p : NULL;
    }
    char *end = NULL;
    long k = l && l[1] == 'l' ? strtol(l + 2, &end, 10) : -1;
    if (k >= 0 && end != l + 2 && (*end == 0 || *end == '_'))
        snprintf(buf, n, "rnn layer %ld%s (%s)", k, reverse ? " reverse" : "", cell);
    else
        snprintf(buf, n, "rnn (learned initial states)");
}

typedef struct row {
    char layer[96], out[48], name[96], shape[48], count[32];
    int64_t numel;
} row;

int model_summary(FILE *f, const tg_model *m, bool every_step) {
    int np = tg_params_count(m->params);
    row *rows = calloc((size_t)np + 1, sizeof *rows);
    if (!rows) return -1;
    int64_t total = 0;
    for (int i = 0; i < np; i++) {
        const tg_tensor *t = tg_params_at(m->params, i);
        row *r = &rows[i];
        layer_of(r->layer, sizeof r->layer, tg_params_name_at(m->params, i), m->cfg.cell);
        snprintf(r->name, sizeof r->name, "%s", tg_params_name_at(m->params, i));
        shape_str(r->shape, sizeof r->shape, t);
        r->numel = tg_numel(t);
        grouped(r->count, sizeof r->count, r->numel);
        total += r->numel;
        if (strncmp(r->layer, "head", 4) == 0)
            snprintf(r->out, sizeof r->out, every_step ? "[T·B, %lld]" : "[B, %lld]", (long long)m->cfg.output_size);
        else if (strncmp(r->layer, "rnn layer", 9) == 0)
            snprintf(r->out, sizeof r->out, "[T, B, %lld]",
                     (long long)(m->cfg.proj_size ? m->cfg.proj_size : m->cfg.hidden_size));
    }
    /* column widths from the content (names, shapes and counts of any size fit) */
    int wl = (int)strlen("Layer (type)"), wo = (int)strlen("Output shape"), wn = (int)strlen("Parameter"),
        ws = (int)strlen("Shape"), wc = (int)strlen("Count");
    for (int i = 0; i < np; i++) {
        row *r = &rows[i];
        int a = (int)strlen(r->layer), b = (int)strlen(r->out), c = (int)strlen(r->name) + 2,
            d = (int)strlen(r->shape), e = (int)strlen(r->count);
        wl = a > wl ? a : wl, wo = b > wo ? b : wo, wn = c > wn ? c : wn, ws = d > ws ? d : ws, wc = e > wc ? e : wc;
    }
    char tot[32];
    grouped(tot, sizeof tot, total);
    wc = (int)strlen(tot) > wc ? (int)strlen(tot) : wc;
    /* "·" is two bytes but one column: pad the output-shape column by hand */
    int width = wl + wo + wn + ws + wc + 8;
    char proj[48] = "";
    if (m->cfg.proj_size) snprintf(proj, sizeof proj, " projected to %lld", (long long)m->cfg.proj_size);
    fprintf(f, "Model: %s, %d layer%s x %lld hidden%s + linear head, %lld input%s -> %lld output%s, %s\n", m->cfg.cell,
            m->cfg.layers, m->cfg.layers == 1 ? "" : "s", (long long)m->cfg.hidden_size, proj,
            (long long)m->cfg.input_size, m->cfg.input_size == 1 ? "" : "s", (long long)m->cfg.output_size,
            m->cfg.output_size == 1 ? "" : "s", tg_dtype_name(m->cfg.dtype));
    for (int k = 0; k < width; k++) fputc('=', f);
    fprintf(f, "\n%-*s  %-*s  %-*s  %-*s  %*s\n", wl, "Layer (type)", wo, "Output shape", wn, "Parameter", ws, "Shape",
            wc, "Count");
    for (int k = 0; k < width; k++) fputc('-', f);
    fputc('\n', f);
    for (int i = 0; i < np;) {
        int j = i;
        int64_t sub = 0;
        while (j < np && strcmp(rows[j].layer, rows[i].layer) == 0) sub += rows[j++].numel;
        char subs[32];
        grouped(subs, sizeof subs, sub);
        int pad = wo + (strstr(rows[i].out, "·") ? 1 : 0);
        fprintf(f, "%-*s  %-*s  %-*s  %-*s  %*s\n", wl, rows[i].layer, pad, rows[i].out, wn, "", ws, "", wc, subs);
        for (int k = i; k < j; k++)
            fprintf(f, "%-*s  %-*s    %-*s  %-*s  %*s\n", wl, "", wo, "", wn - 2, rows[k].name, ws, rows[k].shape, wc,
                    rows[k].count);
        i = j;
    }
    for (int k = 0; k < width; k++) fputc('=', f);
    int64_t bytes = total * (int64_t)(m->cfg.dtype == TG_F64 ? 8 : 4);
    char bs[32];
    grouped(bs, sizeof bs, bytes);
    fprintf(f, "\nTotal parameters: %s (%s bytes as %s, %.1f KiB), all trainable\n", tot, bs,
            tg_dtype_name(m->cfg.dtype), (double)bytes / 1024.0);
    if (m->cfg.dropout > 0) fprintf(f, "Dropout %g between layers while training\n", m->cfg.dropout);
    if (m->cfg.zoneout > 0) fprintf(f, "Zoneout %g on every state while training\n", m->cfg.zoneout);
    fprintf(f, "Cell %s (%d gate block%s, %d state%s) at every step and layer:\n", m->cell->name, m->cell->gates,
            m->cell->gates == 1 ? "" : "s", m->cell->n_states, m->cell->n_states == 1 ? "" : "s");
    const char *eq = m->cell->equations;
    if (!eq || !*eq) {
        fprintf(f, "  (the cell gives no equations)\n");
    } else {
        while (*eq) {
            const char *nl = strchr(eq, '\n');
            int len = nl ? (int)(nl - eq) : (int)strlen(eq);
            fprintf(f, "  %.*s\n", len, eq);
            eq += len + (nl ? 1 : 0);
        }
    }
    if (m->cfg.proj_size)
        fprintf(f, "Projection (Sak et al. 2014, torch's proj_size %lld): h = W_hr (o * tanh(c)), weight_hr [%lld, %lld]\n",
                (long long)m->cfg.proj_size, (long long)m->cfg.proj_size, (long long)m->cfg.hidden_size);
    fprintf(f, "Head: y = W h + b on the last layer's h%s\n", every_step ? " at every step" : " at the last step");
    free(rows);
    return 0;
}
