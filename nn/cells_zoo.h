/* nn/cells_zoo.h - internal: the table of nn/cells_zoo.c, consulted by the registry in nn/cells.c
 * (tg_cell_by_name, tg_cell_count, tg_cell_at) right after the built-in cells. Not installed. */
#ifndef TG_CELLS_ZOO_H
#define TG_CELLS_ZOO_H
#include <tapegrad/nn.h>

int tg__cell_zoo_count(void);            /* rows of the zoo table */
const tg_cell *tg__cell_zoo_at(int i);   /* returns: borrowed (static); NULL out of range */

#endif
