/* tapegrad/cell_lang.h - recurrent cells typed as text: one time step in a small notation, read at run
 * time and turned into the same public tape ops a C cell uses (so the tape differentiates it, the
 * runner runs it with layers, directions, lengths and zoneout, and the triple check covers it).
 *
 * Worked example (JANET, the forget-gate-only LSTM of van der Westhuizen & Lasenby 2018):
 *
 *     const char *src =
 *         "gates f, c                        # blocks of x·W_ihᵀ + b_ih and h·W_hhᵀ + b_hh\n"
 *         "forget f\n"
 *         "f  = sigmoid(x.f + h.f)\n"
 *         "c' = f * c + (1 - f) * tanh(x.c + h.c)\n"
 *         "h' = c'\n";
 *     char err[256];
 *     tg_cell_def *def = tg_cell_def_parse("janet", src, err, sizeof err);  // returns: new object
 *     if (!def) { fprintf(stderr, "janet.cell:%s\n", err); return 2; }     // "3:14: unknown name 'q'"
 *     tg_rnn *m = tg_rnn_new(tg_cell_def_cell(def), &cfg, NULL);           // like any C cell
 *     ...
 *     tg_rnn_free(m);
 *     tg_cell_def_free(def);          // after every model that uses it
 *
 * The notation (docs/cell_lang.md has the full reference; docs/cells/ holds every built-in and zoo
 * cell written in it, tested equal to the C cells):
 *   gates a, b, ...        the G gate blocks (first statement); weight_ih is [G·H, I]
 *   forget a               the block tg_rnn_init's forget bias sets
 *   states h, c, ...       optional: the state order (else h, then the order of the primed assignments)
 *   bias none              no bias_ih / bias_hh, whatever the model's bias setting
 *   param NAME [dims] = init [if bias]   an extra parameter (dims: H, 4H, G*H, I, numbers; init:
 *                          uniform (±1/√H), uniform(lo, hi), zeros, ones, constant(v)); `if bias`:
 *                          absent (zero) when the model has no biases. `param weight_hh [H]` replaces
 *                          the recurrent matrix by a vector (IndRNN).
 *   name = expr            a local;  s' = expr  the new value of state s (h' is the layer output)
 * Expressions: numbers, + - * / and unary -, parentheses, sigmoid tanh relu exp log sqrt abs softplus,
 * linear(E, W[, b]) = E·Wᵀ + b, layernorm(E, gain[, shift]) (over the last axis, ε = 1e-5);
 * x = x_t [B, I]; x.a = block a of x·W_ihᵀ + b_ih; a state s = s_{t-1}, s' = s_t once assigned;
 * P.a = block a of a parameter with G·H rows; any other E.a = E·W_hh,aᵀ + b_hh,a (a block of the
 * recurrent projection, one GEMM for all blocks when every block of E is used).
 *
 * Ownership: tg_cell_def_parse returns: new object (tg_cell_def_free); the cell it holds is borrowed
 * and lives as long as the definition (register it with tg_cell_register only if the definition is
 * never freed). args: borrowed (name and source are copied).
 * Errors: a bad definition is a data error: NULL, and err receives one line "LINE:COL: message"
 * (never aborts, nothing leaked). At run time the step reports op errors through tg_error as any cell.
 */
#ifndef TAPEGRAD_CELL_LANG_H
#define TAPEGRAD_CELL_LANG_H
#include <tapegrad/nn.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct tg_cell_def tg_cell_def;

#define TG_CELL_DEF_MAX_SOURCE 65536 /* bytes of source accepted */

/* Parses `src` into a cell named `name` (1..47 bytes). returns: new object, or NULL with "LINE:COL:
 * message" in err (errlen may be 0). */
tg_cell_def *tg_cell_def_parse(const char *name, const char *src, char *err, size_t errlen);
void tg_cell_def_free(tg_cell_def *def);                 /* NULL-safe */
const tg_cell *tg_cell_def_cell(const tg_cell_def *def); /* returns: borrowed (lives with def) */
const char *tg_cell_def_source(const tg_cell_def *def);  /* returns: borrowed, the text as given */
/* The step as it runs: one line per operation after lowering (which projections became one GEMM,
 * which activations were fused into tg_gates). For `tapegrad summary` and debugging. */
void tg_cell_def_print(FILE *f, const tg_cell_def *def);

#ifdef __cplusplus
}
#endif
#endif
