/* data/csv.c - CSV inputs: a header row, then one row per time step.
 *
 * Syntax: RFC 4180 (comma-separated; a field may be quoted with "...", "" inside for a quote, and may
 * then hold commas and newlines); CRLF or LF; an optional UTF-8 byte-order mark; blank lines only at
 * the end. Every row must have as many fields as the header.
 * Meaning (tg_data_options): seq_column names the sequence each row belongs to (any text; the rows of
 * one sequence are contiguous, a sequence that resumes later is an error), else the file is one long
 * series; label_column holds the label; feature_columns lists the inputs, else every other column
 * whose first data row is a number (so a date or name column is skipped). Feature cells must be finite
 * numbers: a missing value, text, NaN or an infinity is rejected with the line and the column.
 * Labels: CLASS integers constant within a sequence; TAG integers per row (step); VALUE a real
 * constant within a sequence. label_kind NONE with a label column: integers constant within every
 * sequence = CLASS, other integers = TAG, reals = VALUE.
 * Messages: "<file>: line <L>[, column '<name>']: <problem>", L the physical line where the row starts.
 */
#include "data/internal.h"
#include "tensor/alloc.h"

#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct csv_field { const char *p; size_t len; } csv_field;

typedef struct csv_reader {
    const char *p, *end;
    int64_t line;                /* physical line of p */
    const char *what;
    char *err;
    size_t errlen;
    csv_field *f;                /* fields of the current row */
    size_t nf, capf;
    char *scratch;               /* unquoted copies of quoted fields */
    size_t nscratch, capscratch;
} csv_reader;

static bool grow(void **p, size_t *cap, size_t need, size_t item) {
    if (need <= *cap) return true;
    size_t c = *cap ? *cap : 16;
    while (c < need) {
        if (c > SIZE_MAX / 2 / item) return false;
        c *= 2;
    }
    void *q = tg_realloc(*p, c * item);
    if (!q) return false;
    *p = q;
    *cap = c;
    return true;
}

/* Reads one row into r->f. Returns 1, 0 at the end of the input, -1 after a message. *line = its first line. */
static int read_row(csv_reader *r, int64_t *line) {
    r->nf = 0;
    r->nscratch = 0;
    if (r->p >= r->end) return 0;
    *line = r->line;
    /* quoted fields are unescaped into scratch; offsets first, pointers fixed up at the end */

    for (;;) {
        if (!grow((void **)&r->f, &r->capf, r->nf + 1, sizeof *r->f)) goto oom;
        csv_field *fd = &r->f[r->nf++];
        if (r->p < r->end && *r->p == '"') {
            r->p++;
            size_t start = r->nscratch;
            for (;;) {
                if (r->p >= r->end) {
                    tgd_fail(r->err, r->errlen, "%s: line %" PRId64 ": a quoted field is not closed", r->what, *line);
                    return -1;
                }
                char c = *r->p++;
                if (c == '"') {
                    if (r->p < r->end && *r->p == '"') r->p++;
                    else break;
                }
                if (c == '\n') r->line++;
                if (!grow((void **)&r->scratch, &r->capscratch, r->nscratch + 1, 1)) goto oom;
                r->scratch[r->nscratch++] = c;
            }
            fd->p = (const char *)(uintptr_t)start; /* fixed up below */
            fd->len = r->nscratch - start;
            fd->len |= (size_t)1 << (sizeof(size_t) * 8 - 1); /* mark: in scratch */
            if (r->p < r->end && *r->p != ',' && *r->p != '\n' && *r->p != '\r') {
                tgd_fail(r->err, r->errlen, "%s: line %" PRId64 ": text after a closing quote", r->what, r->line);
                return -1;
            }
        } else {
            const char *s = r->p;
            while (r->p < r->end && *r->p != ',' && *r->p != '\n' && *r->p != '\r') {
                if (*r->p == '"') {
                    tgd_fail(r->err, r->errlen, "%s: line %" PRId64 ": a quote inside an unquoted field", r->what, r->line);
                    return -1;
                }
                r->p++;
            }
            fd->p = s;
            fd->len = (size_t)(r->p - s);
        }
        if (r->p < r->end && *r->p == ',') { r->p++; continue; }
        if (r->p < r->end && *r->p == '\r') r->p++;
        if (r->p < r->end && *r->p == '\n') { r->p++; r->line++; }
        break;
    }

    const size_t mark = (size_t)1 << (sizeof(size_t) * 8 - 1);
    for (size_t k = 0; k < r->nf; k++)
        if (r->f[k].len & mark) {
            r->f[k].len &= ~mark;
            /* an empty quoted field ("") may leave scratch unallocated: NULL + 0 is UB */
            r->f[k].p = r->scratch ? r->scratch + (size_t)(uintptr_t)r->f[k].p : "";
        }
    return 1;
oom:
    tgd_fail(r->err, r->errlen, "%s: line %" PRId64 ": out of memory", r->what, *line);
    return -1;
}

static bool row_blank(const csv_reader *r) { return r->nf == 1 && r->f[0].len == 0; }

/* A finite number filling the whole field (surrounding spaces allowed). 0, or 1 empty, 2 not a number,
 * 3 not finite. */
static int parse_number(const csv_field *fd, double *v) {
    char buf[128];
    size_t a = 0, b = fd->len;
    while (a < b && (fd->p[a] == ' ' || fd->p[a] == '\t')) a++;
    while (b > a && (fd->p[b - 1] == ' ' || fd->p[b - 1] == '\t')) b--;
    if (a == b) return 1;
    if (b - a >= sizeof buf) return 2;
    memcpy(buf, fd->p + a, b - a);
    buf[b - a] = 0;
    char *end;
    *v = strtod(buf, &end);
    if (*end != 0 || end == buf) return 2;
    if (!isfinite(*v)) return 3;
    return 0;
}

static void field_text(const csv_field *fd, char *buf, size_t size) {
    size_t n = fd->len < size - 4 ? fd->len : size - 4;
    size_t k = 0;
    for (size_t i = 0; i < n; i++) buf[k++] = (fd->p[i] >= 32 && fd->p[i] < 127) ? fd->p[i] : '?';
    if (n < fd->len) buf[k++] = '.', buf[k++] = '.', buf[k++] = '.';
    buf[k] = 0;
}


typedef struct seq_run { int64_t first_row, line; char *name; } seq_run;

static int cmp_run(const void *a, const void *b) {
    const seq_run *x = a, *y = b;
    int c = strcmp(x->name, y->name);
    return c ? c : (x->line > y->line) - (x->line < y->line);
}

tg_dataset *tgd_csv_parse(const unsigned char *ubuf, size_t len, const char *what, const tgd_array *labels,
                          const tg_data_options *opt, char *err, size_t errlen) {
    static const tg_data_options none = {0};
    if (!opt) opt = &none;
    const char *buf = (const char *)ubuf;
    if (labels) {
        tgd_fail(err, errlen, "%s: CSV labels come from a label column (label_column), not a labels file", what);
        return NULL;
    }
    csv_reader r = {buf, buf + len, 1, what, err, errlen, NULL, 0, 0, NULL, 0, 0};
    if (len >= 3 && memcmp(buf, "\xef\xbb\xbf", 3) == 0) r.p += 3;
    tg_dataset *ds = NULL;
    char **names = NULL;
    int64_t ncols = 0, *feat = NULL, nfeat = 0, seq_col = -1, lab_col = -1;
    double *x = NULL, *lab = NULL;
    int64_t *lab_line = NULL;
    size_t capx = 0, caplab = 0, caplabl = 0, caprun = 0;
    seq_run *runs = NULL;
    int64_t nruns = 0, rows = 0, line = 0;
    char fb[64], cb[64];

    int rc = read_row(&r, &line);
    if (rc < 0) goto fail;
    if (rc == 0 || row_blank(&r)) { tgd_fail(err, errlen, "%s: line 1: no header row", what); goto fail; }
    ncols = (int64_t)r.nf;
    names = tg_calloc((size_t)ncols, sizeof *names);
    if (!names) goto oom;
    for (int64_t c = 0; c < ncols; c++) {
        csv_field *fd = &r.f[c];
        size_t a = 0, b = fd->len;
        while (a < b && fd->p[a] == ' ') a++;
        while (b > a && fd->p[b - 1] == ' ') b--;
        if (a == b) { tgd_fail(err, errlen, "%s: line 1: column %" PRId64 " has no name", what, c + 1); goto fail; }
        if (!(names[c] = tg_strndup(fd->p + a, b - a))) goto oom;
        for (int64_t d = 0; d < c; d++)
            if (strcmp(names[d], names[c]) == 0) {
                tgd_fail(err, errlen, "%s: line 1: column name '%.40s' appears twice", what, names[c]);
                goto fail;
            }
    }
    /* resolve the named columns */
    const char *want[2] = {opt->seq_column, opt->label_column};
    int64_t *where[2] = {&seq_col, &lab_col};
    for (int k = 0; k < 2; k++) {
        if (!want[k]) continue;
        for (int64_t c = 0; c < ncols; c++)
            if (strcmp(names[c], want[k]) == 0) *where[k] = c;
        if (*where[k] < 0 && k == 1 && opt->label_column_optional) continue; /* no labels: predicting */
        if (*where[k] < 0) {
            char list[200] = "";
            for (int64_t c = 0; c < ncols && strlen(list) < sizeof list - 50; c++)
                snprintf(list + strlen(list), sizeof list - strlen(list), "%s%.40s", c ? ", " : "", names[c]);
            tgd_fail(err, errlen, "%s: line 1: no column '%.40s' (%s %s; the header has: %s)", what, want[k],
                     k ? "label_column" : "seq_column", "not found", list);
            goto fail;
        }
    }
    if (seq_col >= 0 && seq_col == lab_col) { tgd_fail(err, errlen, "%s: the sequence and label columns are the same", what); goto fail; }
    if (!(feat = tg_malloc((size_t)ncols * sizeof *feat))) goto oom;
    if (opt->feature_columns) {
        for (const char *const *fc = opt->feature_columns; *fc; fc++) {
            int64_t c = -1;
            for (int64_t k = 0; k < ncols; k++)
                if (strcmp(names[k], *fc) == 0) c = k;
            if (c < 0) { tgd_fail(err, errlen, "%s: line 1: no feature column '%.40s'", what, *fc); goto fail; }
            if (c == seq_col || c == lab_col) {
                tgd_fail(err, errlen, "%s: column '%.40s' cannot be both a feature and the %s column", what, *fc,
                         c == seq_col ? "sequence" : "label");
                goto fail;
            }
            for (int64_t k = 0; k < nfeat; k++)
                if (feat[k] == c) { tgd_fail(err, errlen, "%s: feature column '%.40s' is listed twice", what, *fc); goto fail; }
            if (nfeat == ncols) break;
            feat[nfeat++] = c;
        }
        if (nfeat == 0) { tgd_fail(err, errlen, "%s: the list of feature columns is empty", what); goto fail; }
    }

    /* the rows */
    const char *cur_seq = NULL;
    size_t cur_seq_len = 0;
    for (;;) {
        rc = read_row(&r, &line);
        if (rc < 0) goto fail;
        if (rc == 0) break;
        if (row_blank(&r)) {
            /* only blank lines may follow */
            int64_t bl = line;
            while ((rc = read_row(&r, &line)) == 1 && row_blank(&r)) {}
            if (rc < 0) goto fail;
            if (rc == 1) { tgd_fail(err, errlen, "%s: line %" PRId64 ": empty line in the middle of the data", what, bl); goto fail; }
            break;
        }
        if ((int64_t)r.nf != ncols) {
            tgd_fail(err, errlen, "%s: line %" PRId64 ": %zu fields, the header has %" PRId64, what, line, r.nf, ncols);
            goto fail;
        }
        if (rows == 0 && !opt->feature_columns) {
            for (int64_t c = 0; c < ncols; c++) {
                double v;
                if (c != seq_col && c != lab_col && parse_number(&r.f[c], &v) == 0) feat[nfeat++] = c;
            }
            if (nfeat == 0) {
                tgd_fail(err, errlen, "%s: line %" PRId64 ": no numeric feature column (every other column's first value is not a number)", what, line);
                goto fail;
            }
        }
        if (!grow((void **)&x, &capx, (size_t)(rows + 1) * (size_t)nfeat, sizeof *x)) goto oom;
        for (int64_t k = 0; k < nfeat; k++) {
            const csv_field *fd = &r.f[feat[k]];
            int bad = parse_number(fd, &x[rows * nfeat + k]);
            if (bad) {
                field_text(fd, fb, sizeof fb);
                tgd_fail(err, errlen, "%s: line %" PRId64 ", column '%.40s': %s%s%s", what, line, names[feat[k]],
                         bad == 1 ? "missing value" : "'", bad == 1 ? "" : fb,
                         bad == 1 ? "" : bad == 2 ? "' is not a number" : "' is not a finite number");
                goto fail;
            }
        }
        if (lab_col >= 0) {
            if (!grow((void **)&lab, &caplab, (size_t)rows + 1, sizeof *lab) ||
                !grow((void **)&lab_line, &caplabl, (size_t)rows + 1, sizeof *lab_line)) goto oom;
            int bad = parse_number(&r.f[lab_col], &lab[rows]);
            if (bad) {
                field_text(&r.f[lab_col], fb, sizeof fb);
                tgd_fail(err, errlen, "%s: line %" PRId64 ", column '%.40s': label %s%s%s", what, line, names[lab_col],
                         bad == 1 ? "missing" : "'", bad == 1 ? "" : fb, bad == 1 ? "" : "' is not a finite number");
                goto fail;
            }
            lab_line[rows] = line;
        }
        if (seq_col >= 0) {
            const csv_field *fd = &r.f[seq_col];
            if (!cur_seq || fd->len != cur_seq_len || memcmp(fd->p, cur_seq, cur_seq_len) != 0) {
                if (!grow((void **)&runs, &caprun, (size_t)nruns + 1, sizeof *runs)) goto oom;
                /* not strndup: a NUL byte inside the field would make the copy shorter than
                   cur_seq_len, and the memcmp above would read past it */
                char *name = tg_malloc(fd->len + 1);
                if (!name) goto oom;
                memcpy(name, fd->p, fd->len);
                name[fd->len] = 0;
                runs[nruns] = (seq_run){rows, line, name};
                cur_seq = runs[nruns].name;
                cur_seq_len = fd->len;
                nruns++;
            }
        } else if (nruns == 0) {
            if (!grow((void **)&runs, &caprun, 1, sizeof *runs)) goto oom;
            runs[0] = (seq_run){0, line, tg_strdup("")};
            if (!runs[0].name) goto oom;
            nruns = 1;
        }
        rows++;
    }
    if (rows == 0) { tgd_fail(err, errlen, "%s: no data rows after the header", what); goto fail; }
    /* a sequence may not resume after another one */
    {
        seq_run *sorted = tg_malloc((size_t)nruns * sizeof *sorted);
        if (!sorted) goto oom;
        memcpy(sorted, runs, (size_t)nruns * sizeof *sorted);
        qsort(sorted, (size_t)nruns, sizeof *sorted, cmp_run);
        for (int64_t k = 1; k < nruns; k++)
            if (strcmp(sorted[k].name, sorted[k - 1].name) == 0) {
                snprintf(cb, sizeof cb, "%.40s", sorted[k].name);
                tgd_fail(err, errlen, "%s: line %" PRId64 ": sequence '%s' resumes after other rows (it started at line %"
                         PRId64 "; the rows of a sequence must be contiguous)", what, sorted[k].line, cb, sorted[k - 1].line);
                free(sorted);
                goto fail;
            }
        free(sorted);
    }
    /* the label kind, and per-sequence labels constant within their sequence */
    tg_label_kind kind = lab_col >= 0 ? opt->label_kind : TG_LABELS_NONE;
    if (lab_col >= 0) {
        bool integral = true, constant = true;
        for (int64_t k = 0; k < rows; k++) integral = integral && lab[k] == floor(lab[k]) && fabs(lab[k]) < 9e15;
        for (int64_t q = 0; q < nruns; q++) {
            int64_t a = runs[q].first_row, b = q + 1 < nruns ? runs[q + 1].first_row : rows;
            for (int64_t k = a + 1; k < b; k++) constant = constant && lab[k] == lab[a];
        }
        if (kind == TG_LABELS_NONE) kind = !integral ? TG_LABELS_VALUE : constant && seq_col >= 0 ? TG_LABELS_CLASS : TG_LABELS_TAG;
        if (kind != TG_LABELS_VALUE)
            for (int64_t k = 0; k < rows; k++)
                if (!(lab[k] == floor(lab[k])) || lab[k] < 0 || lab[k] >= TG_DATA_MAX_CLASSES) {
                    tgd_fail(err, errlen, "%s: line %" PRId64 ", column '%.40s': label %g is not a class index (0..%d)", what,
                             lab_line[k], names[lab_col], lab[k], TG_DATA_MAX_CLASSES - 1);
                    goto fail;
                }
        if (kind != TG_LABELS_TAG)
            for (int64_t q = 0; q < nruns; q++) {
                int64_t a = runs[q].first_row, b = q + 1 < nruns ? runs[q + 1].first_row : rows;
                for (int64_t k = a + 1; k < b; k++)
                    if (lab[k] != lab[a]) {
                        snprintf(cb, sizeof cb, "%.40s", runs[q].name);
                        tgd_fail(err, errlen, "%s: line %" PRId64 ", column '%.40s': label %g differs from %g at line %" PRId64
                                 " of the same sequence '%s' (%s labels are one per sequence)", what, lab_line[k],
                                 names[lab_col], lab[k], lab[a], lab_line[a], cb, tg_label_kind_name(kind));
                        goto fail;
                    }
            }
    }
    ds = tgd_alloc(nruns, nfeat, rows, kind, kind == TG_LABELS_VALUE ? 1 : 0, err, errlen);
    if (!ds) goto fail;
    memcpy(ds->x, x, (size_t)(rows * nfeat) * sizeof *x);
    for (int64_t q = 0; q < nruns; q++) {
        int64_t a = runs[q].first_row, b = q + 1 < nruns ? runs[q + 1].first_row : rows;
        ds->offset[q + 1] = b;
        if (kind == TG_LABELS_CLASS) ds->labels[q] = (int64_t)lab[a];
        if (kind == TG_LABELS_VALUE) ds->values[q] = lab[a];
    }
    if (kind == TG_LABELS_TAG)
        for (int64_t k = 0; k < rows; k++) ds->labels[k] = (int64_t)lab[k];
    if (!(ds->names = tg_calloc((size_t)nfeat, sizeof *ds->names))) goto oom;
    for (int64_t k = 0; k < nfeat; k++)
        if (!(ds->names[k] = tg_strdup(names[feat[k]]))) goto oom;
    if (tgd_finish(ds, what, err, errlen)) goto fail;
    goto done;
oom:
    tgd_fail(err, errlen, "%s: out of memory", what);
fail:
    tg_dataset_free(ds);
    ds = NULL;
done:
    if (names)
        for (int64_t c = 0; c < ncols; c++) free(names[c]);
    free(names);
    for (int64_t q = 0; q < nruns; q++) free(runs[q].name);
    free(runs);
    free(feat);
    free(x);
    free(lab);
    free(lab_line);
    free(r.f);
    free(r.scratch);
    return ds;
}
