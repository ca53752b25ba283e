/* examples/stream_stdin.c - a trained model run on a stream: one time step per line of stdin, one
 * output per step on stdout, the state carried from line to line (no tape, no allocation per step).
 *
 * Purpose: what serving a recurrent model looks like. Load a checkpoint written by `tapegrad train
 * --save FILE` (or tg_ckpt_save), make a one-row stream of it (tg_model_stream_new), and feed it
 * each time step as it arrives: the output for a step is ready before the next line is read.
 *
 * Input: one time step per line, the model's I input features comma-separated ("0.25,1"); a blank
 * line ends the sequence (the state starts over); lines beginning with '#' are skipped. A line that is
 * not I numbers is refused with its line number, and the program exits with status 1.
 * Output: "step T: y0,y1,..." per line read (the head's O outputs), flushed at once.
 * --check: at the end of each sequence, also runs the whole sequence through tg_model_forward (the
 * taped runner, every step) and prints the largest difference from what was streamed; exits with
 * status 1 if it exceeds 1e-5 (F32) or 1e-12 (F64).
 *
 * Run:
 *     tapegrad train --task adding --seq 10 --save add.safetensors
 *     printf '0.5,0\n0.25,1\n0.75,0\n0.5,1\n' | build/examples/stream_stdin add.safetensors --check
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <tapegrad/tapegrad.h>

enum { MAX_LINE = 1 << 16, MAX_CHECKED = 100000 };

/* Parses exactly n comma-separated numbers of line into v. Returns 0, or -1 with why in msg. */
static int parse_row(const char *line, int64_t n, double *v, char *msg, size_t size) {
    const char *p = line;
    for (int64_t k = 0; k < n; k++) {
        char *end;
        v[k] = strtod(p, &end);
        if (end == p || !isfinite(v[k])) {
            snprintf(msg, size, "expected %lld comma-separated numbers (the model's input size), field %lld is not a finite number",
                     (long long)n, (long long)k + 1);
            return -1;
        }
        p = end;
        while (*p == ' ' || *p == '\t') p++;
        if (k + 1 < n && *p++ != ',') {
            snprintf(msg, size, "expected %lld comma-separated numbers (the model's input size), got %lld", (long long)n,
                     (long long)k + 1);
            return -1;
        }
    }
    if (*p && *p != '\n' && *p != '\r') {
        snprintf(msg, size, "expected %lld comma-separated numbers (the model's input size), got more", (long long)n);
        return -1;
    }
    return 0;
}

/* The sequence kept for --check: inputs [T, I] and streamed outputs [T, O], row after row. */
typedef struct seq_log {
    double *x, *y;
    int64_t T, cap, I, O;
} seq_log;

static int log_step(seq_log *s, const double *x, const tg_tensor *y) {
    if (s->T == s->cap) {
        int64_t cap = s->cap ? 2 * s->cap : 64;
        if (cap > MAX_CHECKED) { fprintf(stderr, "stream_stdin: --check keeps at most %d steps per sequence\n", MAX_CHECKED); return -1; }
        double *nx = realloc(s->x, (size_t)(cap * s->I) * sizeof *nx);
        if (nx) s->x = nx;
        double *ny = nx ? realloc(s->y, (size_t)(cap * s->O) * sizeof *ny) : NULL;
        if (!ny) { fprintf(stderr, "stream_stdin: out of memory\n"); return -1; }
        s->y = ny;
        s->cap = cap;
    }
    memcpy(s->x + s->T * s->I, x, (size_t)s->I * sizeof *x);
    for (int64_t j = 0; j < s->O; j++) s->y[s->T * s->O + j] = tg_get(y, j);
    s->T++;
    return 0;
}

/* The whole logged sequence through the taped runner; prints and returns the largest difference. */
static double check_sequence(const tg_model *m, const seq_log *s, int seq) {
    tg_tensor *x = tg_from_f64(m->cfg.dtype, TG_SHAPE(s->T, 1, s->I), s->x);
    tg_no_grad_begin();
    tg_tensor *y = x ? tg_model_forward(m, x, true, NULL, NULL) : NULL; /* [T·1, O] */
    double worst = y ? 0 : INFINITY;
    for (int64_t i = 0; y && i < s->T * s->O; i++) worst = fmax(worst, fabs(tg_get(y, i) - s->y[i]));
    tg_no_grad_end();
    tg_tape_reset();
    tg_release(x);
    printf("check: sequence %d, %lld steps: max |stream - tg_model_forward| = %.3g\n", seq, (long long)s->T, worst);
    return worst;
}

/* Library errors are printed once, here, and the call returns NULL / -1 (the default handler aborts). */
static void print_error(const char *msg, void *user) {
    (void)user;
    fprintf(stderr, "stream_stdin: %s\n", msg);
}

int main(int argc, char **argv) {
    if (argc < 2 || argc > 3 || (argc == 3 && strcmp(argv[2], "--check"))) {
        fprintf(stderr, "usage: %s MODEL.safetensors [--check] < steps.csv\n", argv[0]);
        return 2;
    }
    bool check = argc == 3;
    tg_set_error_handler(print_error, NULL);
    char err[512];
    tg_model *m = tg_ckpt_load_model(argv[1], NULL, err, sizeof err);
    if (!m) { fprintf(stderr, "stream_stdin: %s\n", err); return 1; }
    int64_t I = m->cfg.input_size, O = m->cfg.output_size;
    tg_rnn_stream *s = tg_model_stream_new(m, 1);
    tg_tensor *x = tg_zeros(m->cfg.dtype, TG_SHAPE(1, I)); /* filled in place each step */
    double *row = malloc((size_t)I * sizeof *row);
    char *line = malloc(MAX_LINE);
    if (!s || !x || !row || !line) {
        if (!tg_error_pending()) fprintf(stderr, "stream_stdin: out of memory\n");
        return 1;
    }
    fprintf(stderr, "%s: %s, %d layer%s x %lld hidden, %lld inputs -> %lld outputs, %s; one step per line\n", argv[1],
            m->cfg.cell, m->cfg.layers, m->cfg.layers == 1 ? "" : "s", (long long)m->cfg.hidden_size, (long long)I,
            (long long)O, tg_dtype_name(m->cfg.dtype));
    double tol = m->cfg.dtype == TG_F64 ? 1e-12 : 1e-5;
    seq_log log = {.I = I, .O = O};
    int status = 0, seq = 1;
    long lineno = 0;
    for (bool more = true; more && status == 0;) {
        more = fgets(line, MAX_LINE, stdin) != NULL;
        lineno += more;
        if (more && line[0] == '#') continue;
        if (more && strchr(line, '\n') == NULL && !feof(stdin)) {
            fprintf(stderr, "stream_stdin: line %ld: longer than %d bytes\n", lineno, MAX_LINE - 1);
            status = 1;
            break;
        }
        bool blank = more && strspn(line, " \t\r\n") == strlen(line);
        if (!more || blank) { /* the end of a sequence: check it, start over */
            if (check && log.T > 0 && check_sequence(m, &log, seq) > tol) status = 1;
            if (log.T > 0 || tg_rnn_stream_steps(s) > 0) seq++;
            log.T = 0;
            if (tg_rnn_stream_reset(s)) status = 1;
            continue;
        }
        if (parse_row(line, I, row, err, sizeof err)) {
            fprintf(stderr, "stream_stdin: line %ld: %s\n", lineno, err);
            status = 1;
            break;
        }
        for (int64_t k = 0; k < I; k++) tg_set(x, k, row[k]);
        const tg_tensor *y = tg_rnn_stream_step(s, x); /* [1, O], the stream's own */
        if (!y || (check && log_step(&log, row, y))) { status = 1; break; }
        printf("step %lld:", (long long)tg_rnn_stream_steps(s));
        for (int64_t j = 0; j < O; j++) printf("%s%.6g", j ? "," : " ", tg_get(y, j));
        printf("\n");
        fflush(stdout);
    }
    free(log.x);
    free(log.y);
    free(line);
    free(row);
    tg_release(x);
    tg_rnn_stream_free(s);
    tg_model_free(m);
    return status;
}
