/* tools/commands.h - one entry point per subcommand: int cmd_X(argc, argv) with argv[0] = "X".
 * Each returns the process exit status (0 ok, 1 a check failed, 2 bad arguments or input). */
#ifndef TG_COMMANDS_H
#define TG_COMMANDS_H
#include <stdint.h>
#include <stdio.h>

int cmd_demo(int argc, char **argv);      /* tools/cmd_demo.c: no arguments, the main job */
int cmd_grad(int argc, char **argv);      /* tools/cmd_grad.c: conformance */
int cmd_gradcheck(int argc, char **argv); /* tools/cmd_gradcheck.c: triple check of any cell */
int cmd_train(int argc, char **argv);     /* tools/cmd_train.c */
int cmd_sample(int argc, char **argv);    /* tools/cmd_sample.c */
int cmd_bench(int argc, char **argv);     /* tools/cmd_bench.c */
int cmd_compare(int argc, char **argv);   /* tools/cmd_compare.c */
int cmd_predict(int argc, char **argv);   /* tools/cmd_predict.c: a train --data model on a data file */
int cmd_summary(int argc, char **argv);   /* tools/cmd_summary.c: the table of a checkpoint's model */
int cmd_cells(int argc, char **argv);     /* tools/cmd_cells.c: the table of the cell registry */

/* tools/triple.c: prints the gradient triple-check table (tape vs hand-derived BPTT vs finite
 * differences, worst error per tensor) for the given cells at small seeded sizes in F64.
 * Returns 0 when every comparison is within tolerance, 1 otherwise. */
int tg_print_triple_check(FILE *f, const char *const *cells, int n_cells, uint64_t seed);
#endif
