/* tools/cli.c - argument parsing shared by the tapegrad subcommands. */
#include "tools/cli.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <tapegrad/tapegrad.h>

double cli_max_memory;

/* --max-memory is accepted by every command (parsed here, declared once) */
#define MAX_MEMORY_HELP "refuse to start when the estimate exceeds this (4G, 500M, ...; default: what the machine has)"

void cli_usage(const cli_cmd *cmd, FILE *f) {
    fprintf(f, "usage: tapegrad %s %s\n", cmd->name, cmd->synopsis);
}

static void print_help(const cli_cmd *cmd) {
    cli_usage(cmd, stdout);
    printf("\n%s\n\noptions:\n", cmd->about);
    for (int i = 0; i < cmd->n_opts; i++) {
        const cli_opt *o = &cmd->opts[i];
        char arg[32] = "";
        char def[96] = "";
        switch (o->kind) {
        case CLI_FLAG: break;
        case CLI_INT:
            snprintf(arg, sizeof arg, " N");
            /* a starting value outside the range means "not given": the help text says what then */
            if (*(long *)o->dest >= o->min && *(long *)o->dest <= o->max)
                snprintf(def, sizeof def, " (default %ld)", *(long *)o->dest);
            break;
        case CLI_REAL:
        case CLI_RATE: {
            snprintf(arg, sizeof arg, " X");
            double v = *(double *)o->dest;
            if ((o->kind == CLI_RATE ? v > o->min : v >= o->min) && v <= o->max)
                snprintf(def, sizeof def, " (default %g)", v);
            break;
        }
        case CLI_STR:
            snprintf(arg, sizeof arg, " S");
            if (*(const char **)o->dest) snprintf(def, sizeof def, " (default %s)", *(const char **)o->dest);
            break;
        }
        char left[64];
        snprintf(left, sizeof left, "%s%s", o->name, arg);
        printf("  %-22s %s%s\n", left, o->help, def);
    }
    printf("  %-22s %s\n", "--max-memory SIZE", MAX_MEMORY_HELP);
    printf("  %-22s %s\n", "--help", "show this help");
}

int cli_fail(const cli_cmd *cmd, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "tapegrad %s: ", cmd->name);
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n");
    va_end(ap);
    return TG_EXIT_USAGE;
}

/* A command-line mistake: the problem, then how to use the command. Two more lines (usage, --help
 * hint) normally; for commands whose contract is one line on stderr (grad), all on one line. */
static int usage_error(const cli_cmd *cmd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int usage_error(const cli_cmd *cmd, const char *fmt, ...) {
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (cmd->one_line_errors) {
        fprintf(stderr, "tapegrad %s: %s (usage: tapegrad %s %s; see --help)\n", cmd->name, msg, cmd->name, cmd->synopsis);
    } else {
        fprintf(stderr, "tapegrad %s: %s\n", cmd->name, msg);
        cli_usage(cmd, stderr);
        fprintf(stderr, "try 'tapegrad %s --help' for more information\n", cmd->name);
    }
    return TG_EXIT_USAGE;
}

/* Optimal string alignment distance: insertions, deletions, substitutions and swaps of two
 * neighbours ("trian" -> "train") cost 1; letters compared case-insensitively. */
static size_t edit_distance(const char *a, const char *b) {
    size_t la = strlen(a), lb = strlen(b);
    if (la > 64 || lb > 64) return (size_t)-1;
    size_t d[65][65];
    for (size_t i = 0; i <= la; i++) d[i][0] = i;
    for (size_t j = 0; j <= lb; j++) d[0][j] = j;
    for (size_t i = 1; i <= la; i++)
        for (size_t j = 1; j <= lb; j++) {
            int ai = tolower((unsigned char)a[i - 1]), bj = tolower((unsigned char)b[j - 1]);
            size_t v = d[i - 1][j - 1] + (ai != bj);
            if (d[i - 1][j] + 1 < v) v = d[i - 1][j] + 1;
            if (d[i][j - 1] + 1 < v) v = d[i][j - 1] + 1;
            if (i > 1 && j > 1 && ai == tolower((unsigned char)b[j - 2]) && tolower((unsigned char)a[i - 2]) == bj &&
                d[i - 2][j - 2] + 1 < v)
                v = d[i - 2][j - 2] + 1;
            d[i][j] = v;
        }
    return d[la][lb];
}

const char *cli_suggest(const char *word, const char *const *cands, int n) {
    if (!word) return NULL;
    size_t len = strlen(word), limit = len <= 4 ? 1 : len / 3 > 1 ? len / 3 : 1, best = (size_t)-1;
    const char *pick = NULL;
    for (int i = 0; i < n; i++) {
        size_t d = edit_distance(word, cands[i]);
        if (d <= limit && d < best) best = d, pick = cands[i];
    }
    return pick;
}

const char *cli_suggest_in(const char *word, const char *list) {
    static char buf[4096];
    const char *tok[512];
    int n = 0;
    snprintf(buf, sizeof buf, "%s", list ? list : "");
    for (char *t = strtok(buf, ", "); t && n < 512; t = strtok(NULL, ", ")) tok[n++] = t;
    return cli_suggest(word, tok, n);
}

const char *cli_did_you_mean(const char *suggestion) {
    static char buf[160];
    if (!suggestion) return "";
    snprintf(buf, sizeof buf, " (did you mean '%s'?)", suggestion);
    return buf;
}

void cli_unknown_cell(char *buf, size_t n, const char *name) {
    tg_clear_error();
    char known[1024];
    size_t k = 0;
    known[0] = 0;
    for (int i = 0; i < tg_cell_count() && k < sizeof known; i++)
        k += (size_t)snprintf(known + k, sizeof known - k, "%s%s", i ? ", " : "", tg_cell_at(i)->name);
    snprintf(buf, n, "unknown cell '%s'%s (known: %s)", name, cli_did_you_mean(cli_suggest_in(name, known)), known);
}

int cli_fail_unknown_cell(const cli_cmd *cmd, const char *name) {
    char msg[1400];
    cli_unknown_cell(msg, sizeof msg, name);
    return cli_fail(cmd, "%s", msg);
}

int cli_parse(const cli_cmd *cmd, int argc, char **argv) {
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) { print_help(cmd); return 1; }
        const char *eq = strchr(a, '=');
        size_t len = eq ? (size_t)(eq - a) : strlen(a);
        if (len == strlen("--max-memory") && !strncmp(a, "--max-memory", len)) {
            const char *v = eq ? eq + 1 : (i + 1 < argc ? argv[++i] : NULL);
            if (!v) return usage_error(cmd, "option --max-memory needs a value");
            if (tg_mem_parse(v, &cli_max_memory))
                return usage_error(cmd, "option --max-memory: '%s' is not a size (e.g. 4G, 500M, 1.5T)", v);
            continue;
        }
        const cli_opt *o = NULL;
        for (int k = 0; k < cmd->n_opts; k++)
            if (strlen(cmd->opts[k].name) == len && !strncmp(cmd->opts[k].name, a, len)) o = &cmd->opts[k];
        if (!o) {
            if (a[0] != '-') return usage_error(cmd, "unexpected argument '%s'", a);
            const char *names[130];
            int n = 0;
            for (int k = 0; k < cmd->n_opts && n < 128; k++) names[n++] = cmd->opts[k].name;
            names[n++] = "--max-memory";
            names[n++] = "--help";
            char opt[128];
            snprintf(opt, sizeof opt, "%.*s", (int)(len < sizeof opt ? len : sizeof opt - 1), a);
            return usage_error(cmd, "unknown option '%s'%s", a, cli_did_you_mean(cli_suggest(opt, names, n)));
        }
        if (o->kind == CLI_FLAG) {
            if (eq) return usage_error(cmd, "option %s takes no value", o->name);
            *(bool *)o->dest = true;
            continue;
        }
        const char *v = eq ? eq + 1 : (i + 1 < argc ? argv[++i] : NULL);
        if (!v) return usage_error(cmd, "option %s needs a value", o->name);
        if (o->kind == CLI_STR) {
            if (!*v) return usage_error(cmd, "option %s needs a non-empty value", o->name);
            *(const char **)o->dest = v;
            continue;
        }
        char *end;
        errno = 0;
        double x = o->kind == CLI_INT ? (double)strtol(v, &end, 10) : strtod(v, &end);
        if (end == v || *end || errno || !isfinite(x)) {
            return usage_error(cmd, "option %s: '%s' is not %s", o->name, v, o->kind == CLI_INT ? "an integer" : "a number");
        }
        bool rate = o->kind == CLI_RATE;
        if (x < o->min || x > o->max || (rate && x == o->min)) {
            /* integers in full (1e+08 is not how a user writes 100000000) */
            if (o->kind == CLI_INT)
                return usage_error(cmd, "option %s: %s is out of range [%.0f, %.0f]", o->name, v, o->min, o->max);
            return usage_error(cmd, "option %s: %s is out of range %c%g, %g]", o->name, v, rate ? '(' : '[', o->min,
                               o->max);
        }
        if (o->kind == CLI_INT) *(long *)o->dest = (long)x;
        else *(double *)o->dest = x;
    }
    return 0;
}

static void record(const char *msg, void *user) { (void)msg; (void)user; }
void cli_record_errors(void) { tg_set_error_handler(record, NULL); }

int cli_split_list(const char *s, const char **out, int max) {
    static char buf[1024];
    snprintf(buf, sizeof buf, "%s", s);
    int n = 0;
    for (char *tok = strtok(buf, ","); tok && n < max; tok = strtok(NULL, ",")) out[n++] = tok;
    return n;
}

double cli_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

int cli_mem_guard(const cli_cmd *cmd, const tg_mem_estimate *e) {
    char msg[512];
    if (tg_mem_check(e, cli_max_memory, msg, sizeof msg) == 0) return 0;
    return cli_fail(cmd, "%s", msg);
}

int cli_model_guard(const cli_cmd *cmd, const tg_model *m, double data, const char *why) {
    tg_mem_estimate e = {.data = data};
    int64_t n = 0;
    for (int i = 0; i < tg_params_count(m->params); i++) {
        const tg_tensor *t = tg_params_at(m->params, i);
        n += tg_numel(t);
        e.params += (double)tg_numel(t) * (double)tg_itemsize(tg_dtype_of(t));
    }
    snprintf(e.why, sizeof e.why, "the model (%lld parameters) %s", (long long)n, why);
    tg_mem_sum(&e);
    return cli_mem_guard(cmd, &e);
}
