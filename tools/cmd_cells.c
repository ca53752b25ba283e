/* tools/cmd_cells.c - `tapegrad cells [--markdown]`: the table of every cell the registry knows (the
 * built-in cells, the zoo, and any registered ones), made from the cells' rows (struct tg_cell).
 * docs/cells.md embeds the --markdown output between two marker lines, and tests/test_cli.c fails
 * when the two differ, so the documented table is the registry's. */
#include <stdio.h>
#include <string.h>

#include <tapegrad/nn.h>

#include "tools/cli.h"
#include "tools/commands.h"

/* s with newlines as `nl` and, in markdown, '|' escaped; NULL as "—". */
static void put_text(FILE *f, const char *s, const char *nl, bool markdown) {
    if (!s) { fputs("—", f); return; }
    for (; *s; s++) {
        if (*s == '\n') fputs(nl, f);
        else if (markdown && *s == '|') fputs("\\|", f);
        else fputc(*s, f);
    }
}

static void put_states(FILE *f, const tg_cell *c) {
    static const char *const dflt[] = {"h", "c", "s2", "s3", "s4"};
    fprintf(f, "%d (", c->n_states);
    for (int s = 0; s < c->n_states; s++)
        fprintf(f, "%s%s", s ? ", " : "", c->state_names ? c->state_names[s] : dflt[s < 5 ? s : 4]);
    fputc(')', f);
}

static void put_extras(FILE *f, const tg_cell *c) {
    if (c->n_extra == 0) { fputs("—", f); return; }
    for (int e = 0; e < c->n_extra; e++) fprintf(f, "%s%s", e ? ", " : "", c->extra_names[e]);
}

int cmd_cells(int argc, char **argv) {
    bool markdown = false;
    const cli_opt opts[] = {
        {"--markdown", CLI_FLAG, &markdown, 0, 0, "print the table as Markdown (the one docs/cells.md shows)"},
    };
    const cli_cmd cmd = {"cells", "[--markdown]",
                         "Lists every recurrent cell --cell accepts: its gate blocks G, its states S, the gate\n"
                         "block a forget bias sets, its extra parameters, its equations and its reference.",
                         opts, (int)(sizeof opts / sizeof opts[0]), false};
    int p = cli_parse(&cmd, argc, argv);
    if (p) return p == 1 ? TG_EXIT_OK : TG_EXIT_USAGE;
    FILE *f = stdout;
    if (markdown) {
        fputs("| name | G | S | forget | extras | equations | reference |\n|---|---|---|---|---|---|---|\n", f);
        for (int i = 0; i < tg_cell_count(); i++) {
            const tg_cell *c = tg_cell_at(i);
            fprintf(f, "| `%s` | %d | ", c->name, c->gates);
            put_states(f, c);
            if (c->forget_gate >= 0) fprintf(f, " | %d | ", c->forget_gate);
            else fputs(" | — | ", f);
            put_extras(f, c);
            fputs(" | ", f);
            put_text(f, c->equations, "<br>", true);
            fputs(" | ", f);
            put_text(f, c->reference, " ", true);
            fputs(" |\n", f);
        }
        return TG_EXIT_OK;
    }
    for (int i = 0; i < tg_cell_count(); i++) {
        const tg_cell *c = tg_cell_at(i);
        fprintf(f, "%s\n  G %d, S ", c->name, c->gates);
        put_states(f, c);
        if (c->forget_gate >= 0) fprintf(f, ", forget bias on block %d", c->forget_gate);
        fputs(", extras: ", f);
        put_extras(f, c);
        fputs("\n  ", f);
        put_text(f, c->equations, "\n  ", false);
        fputs("\n  reference: ", f);
        put_text(f, c->reference, " ", false);
        fputs("\n", f);
    }
    return TG_EXIT_OK;
}
