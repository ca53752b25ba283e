/* tools/celldef.h - typed cells (the cell language, <tapegrad/cell_lang.h>) in the tapegrad command.
 *
 * `--cell @FILE`, `--cells lstm,@FILE` and `--cell-def FILE|SOURCE` are resolved in main() before any
 * command runs: the definition is parsed, registered under "@<file's base name>" ("@inline" for a
 * source given on the command line) and the argument replaced by that name, so every command finds
 * the cell with tg_cell_by_name. Checkpoints store the source (metadata "cell_def") and loading one
 * registers it again, so sample / predict / --resume / summary need no flag. */
#ifndef TAPEGRAD_TOOLS_CELLDEF_H
#define TAPEGRAD_TOOLS_CELLDEF_H
#include <stddef.h>

/* Rewrites the cell arguments of argv in place (strings it allocates live until exit). 0, or -1 with
 * the definition's "FILE:LINE:COL: message" in err. */
int celldef_rewrite_args(int argc, char **argv, char *err, size_t errlen);
/* The definitions live in the library: tg_cell_register_source / tg_cell_source (<tapegrad/train.h>). */
#endif
