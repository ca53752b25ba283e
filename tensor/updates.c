/* tensor/updates.c - the optimizers' elementwise update loops (see updates.h: why, and why every
 * target gives the general loop's bits). Compiled once per CPU target like gemm.c, vmath.c, steps.c.
 * The loop bodies are in updates.inc, included once per element type. */
#include "tensor/updates.h"

#include <math.h>
#include <stdbool.h>
#include <stddef.h>

#define T float
#define SFX f32
#include "tensor/updates.inc"
#undef T
#undef SFX
#define T double
#define SFX f64
#include "tensor/updates.inc"
#undef T
#undef SFX
