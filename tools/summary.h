/* tools/summary.h - the Keras-like table of a model that `tapegrad summary --model M` prints, and
 * `tapegrad train` at its start:
 *
 *     model_summary(stdout, m, false);      // layers, parameter names, shapes, counts, totals, equations
 *
 * One row per layer (the recurrent layers k = 0..L-1 and their reverse direction, then the linear head)
 * with its output shape and parameter count, under it one row per parameter (checkpoint name, shape,
 * count); then the total number of parameters and their bytes in the model's dtype; then the cell's
 * equations (tg_cell.equations). Dimension letters: T time steps, B batch, H hidden, O outputs. */
#ifndef TG_TOOLS_SUMMARY_H
#define TG_TOOLS_SUMMARY_H
#include <stdbool.h>
#include <stdio.h>

#include <tapegrad/train.h>

/* every_step: the head runs on every step ([T·B, O]) rather than on the last one ([B, O]).
 * Returns 0, or -1 (out of memory; nothing printed). */
int model_summary(FILE *f, const tg_model *m, bool every_step);
#endif
