/* tools/cli.h - argument parsing shared by the tapegrad subcommands.
 * Every bad argument gives "tapegrad <cmd>: <problem>" plus a usage hint, and exit status 2. */
#ifndef TG_CLI_H
#define TG_CLI_H
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include <tapegrad/memory.h>
#include <tapegrad/train.h>

#define TG_EXIT_OK 0
#define TG_EXIT_FAIL 1  /* the computation ran but a check failed */
#define TG_EXIT_USAGE 2 /* bad arguments or bad input data */

/* CLI_RATE: a real that must be above min, not equal to it (a learning rate of 0 is refused). */
typedef enum { CLI_FLAG, CLI_INT, CLI_REAL, CLI_RATE, CLI_STR } cli_kind;

typedef struct cli_opt {
    const char *name;   /* "--hidden" */
    cli_kind kind;
    void *dest;         /* bool*, long*, double* (REAL, RATE), const char** */
    double min, max;    /* range for CLI_INT / CLI_REAL (inclusive), CLI_RATE (min, max] */
    const char *help;   /* one line; "(default ...)" is appended from the current value, except for a
                         * CLI_INT or CLI_RATE whose current value is outside its range ("not given":
                         * the help then states the default itself) */
} cli_opt;

typedef struct cli_cmd {
    const char *name;     /* "grad" */
    const char *synopsis; /* "--cell C --case IN --out OUT [--manual]" */
    const char *about;    /* paragraph shown by --help */
    const cli_opt *opts;
    int n_opts;
    bool one_line_errors; /* argument errors on one line (the usage hint appended) */
} cli_cmd;

/* Parses argv[1..] (argv[0] is the subcommand). Returns 0, 1 when --help was printed (exit 0), or
 * 2 after printing the problem and a usage hint to stderr. */
int cli_parse(const cli_cmd *cmd, int argc, char **argv);
void cli_usage(const cli_cmd *cmd, FILE *f);
/* "tapegrad <cmd>: <message>" on stderr; returns TG_EXIT_USAGE */
int cli_fail(const cli_cmd *cmd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Installs an error handler that records library errors instead of aborting (for data errors). */
void cli_record_errors(void);
/* Parses a comma-separated list into at most max entries (pointers into a static copy). */
int cli_split_list(const char *s, const char **out, int max);
/* --max-memory SIZE, accepted by every command: 0 = the machine's available memory */
extern double cli_max_memory;
/* 0 when the estimate fits (--max-memory, else what the machine has); otherwise prints
 * "tapegrad <cmd>: needs ~X: <why> (...), more than the Y available (...)" and returns TG_EXIT_USAGE. */
int cli_mem_guard(const cli_cmd *cmd, const tg_mem_estimate *e);
/* The same for a loaded model run without gradients (sample, predict): its parameters as loaded plus
 * `data` bytes the command is about to hold; why: "the model (N parameters)" is put in front of it. */
int cli_model_guard(const cli_cmd *cmd, const tg_model *m, double data, const char *why);
/* "Did you mean": the candidate closest to word (edit distance, case-insensitive) if it is close
 * enough to be a typo (at most 1 edit for short words, a third of the length for longer ones), else
 * NULL. cli_suggest_in takes the candidates as one list separated by commas and/or spaces ("a, b c")
 * and returns a pointer to a static copy of the chosen one. */
const char *cli_suggest(const char *word, const char *const *cands, int n);
const char *cli_suggest_in(const char *word, const char *list);
/* " (did you mean 'x'?)" or "" - for appending to an "unknown ..." message */
const char *cli_did_you_mean(const char *suggestion);
/* "unknown cell 'x' (did you mean 'y'?) (known: ...)" into buf, and the library's pending error
 * (tg_cell_by_name's, which names the function) cleared */
void cli_unknown_cell(char *buf, size_t n, const char *name);
/* cli_fail with that message; returns TG_EXIT_USAGE */
int cli_fail_unknown_cell(const cli_cmd *cmd, const char *name);
/* monotonic seconds */
double cli_now(void);
#endif
