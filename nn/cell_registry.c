/* nn/cell_registry.c - finds a cell by name: the built-in cells (nn/cells.c), then the zoo
 * (nn/cells_zoo.c), then cells registered at run time (tg_cell_register). Names match exactly. */
#include "nn/cells_internal.h"

#include <tapegrad/tensor.h>

#include <stdio.h>
#include <string.h>

#define N_BUILTIN tg__cells_builtin_count

#define MAX_REGISTERED 64
static const tg_cell *g_registered[MAX_REGISTERED];
static int g_n_registered;

/* order: the built-in cells (nn/cells.c), the zoo (nn/cells_zoo.c), then the registered cells */
int tg_cell_count(void) { return N_BUILTIN + tg__cells_zoo_count + g_n_registered; }

const tg_cell *tg_cell_at(int i) {
    int n_zoo = tg__cells_zoo_count;
    if (i >= 0 && i < N_BUILTIN) return &tg__cells_builtin[i];
    if (i >= N_BUILTIN && i < N_BUILTIN + n_zoo) return &tg__cells_zoo[i - N_BUILTIN];
    if (i >= N_BUILTIN + n_zoo && i < N_BUILTIN + n_zoo + g_n_registered) return g_registered[i - N_BUILTIN - n_zoo];
    return NULL;
}

static const tg_cell *find(const char *name) {
    for (int i = 0; i < tg_cell_count(); i++)
        if (strcmp(tg_cell_at(i)->name, name) == 0) return tg_cell_at(i);
    return NULL;
}

const tg_cell *tg_cell_by_name(const char *name) {
    if (!name) { tg_error("tg_cell_by_name", "name is NULL"); return NULL; }
    const tg_cell *c = find(name);
    if (c) return c;
    char known[512];
    size_t n = 0;
    known[0] = 0;
    for (int i = 0; i < tg_cell_count() && n < sizeof known; i++)
        n += (size_t)snprintf(known + n, sizeof known - n, "%s%s", i ? ", " : "", tg_cell_at(i)->name);
    tg_error("tg_cell_by_name", "unknown cell '%s' (known: %s)", name, known);
    return NULL;
}

int tg_cell_register(const tg_cell *cell) {
    const char *fn = "tg_cell_register";
    if (!cell || !cell->name || !cell->name[0] || !cell->step) {
        tg_error(fn, "a cell needs a name and a step function");
        return -1;
    }
    if (cell->gates <= 0 || cell->n_states < 1 || cell->n_states > TG_CELL_MAX_STATES || cell->n_extra < 0 ||
        cell->n_extra > TG_CELL_MAX_EXTRA || (cell->n_extra && !cell->extra_names) ||
        cell->forget_gate >= cell->gates) {
        tg_error(fn, "cell '%s': %d gates, %d states (1..%d), %d extra parameters (0..%d, named), forget gate %d",
                 cell->name, cell->gates, cell->n_states, TG_CELL_MAX_STATES, cell->n_extra, TG_CELL_MAX_EXTRA,
                 cell->forget_gate);
        return -1;
    }
    if (find(cell->name)) { tg_error(fn, "a cell named '%s' is already registered", cell->name); return -1; }
    if (g_n_registered == MAX_REGISTERED) { tg_error(fn, "registry full (%d user cells)", MAX_REGISTERED); return -1; }
    g_registered[g_n_registered++] = cell;
    return 0;
}
