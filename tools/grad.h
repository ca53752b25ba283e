/* tools/grad.h - the conformance computation (docs/design.md §8), shared by `tapegrad grad` and the
 * conformance tests. */
#ifndef TG_TOOLS_GRAD_H
#define TG_TOOLS_GRAD_H
#include <stdbool.h>
#include <stddef.h>

/* Reads the case at in_path, runs cell ("rnn_tanh", "rnn_relu", "lstm", "gru") forward and backward
 * (hand-derived BPTT when manual) and writes the results to out_path. Returns 0, or -1 with a one-line
 * message in err (no output file is left behind). */
int tg_grad_run(const char *cell, const char *in_path, const char *out_path, bool manual, char *err, size_t size);
#endif
