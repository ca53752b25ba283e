/* tools/celldef.c - typed cells in the tapegrad command (see celldef.h). */
#include "tools/celldef.h"

#include <tapegrad/cell_lang.h>
#include <tapegrad/nn.h>
#include <tapegrad/train.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* "@path/to/janet.cell" -> "@janet" */
static void name_of_file(const char *path, char *name, size_t n) {
    const char *base = strrchr(path, '/');
    base = base ? base + 1 : path;
    size_t len = strlen(base);
    if (len > 5 && strcmp(base + len - 5, ".cell") == 0) len -= 5;
    if (len > 40) len = 40;
    snprintf(name, n, "@%.*s", (int)len, base);
}

static bool looks_inline(const char *s) { return strchr(s, '\n') || strchr(s, '='); }

/* One cell spec: "@FILE" or (for --cell-def) FILE or SOURCE. Writes the registered name. */
static int resolve(const char *spec, bool def_flag, char *name, size_t n, char *err, size_t errlen) {
    if (!def_flag && spec[0] != '@') { snprintf(name, n, "%s", spec); return 0; }
    const char *path = spec[0] == '@' ? spec + 1 : spec;
    if (def_flag && spec[0] != '@' && looks_inline(spec)) {
        snprintf(name, n, "@inline");
        return tg_cell_register_source(name, spec, "<--cell-def>", err, errlen);
    }
    FILE *f = fopen(path, "rb");
    if (!f) { snprintf(err, errlen, "%s: cannot open the cell definition", path); return -1; }
    char *buf = malloc(TG_CELL_DEF_MAX_SOURCE + 2);
    size_t len = buf ? fread(buf, 1, TG_CELL_DEF_MAX_SOURCE + 1, f) : 0;
    fclose(f);
    if (!buf) { snprintf(err, errlen, "out of memory"); return -1; }
    if (len > TG_CELL_DEF_MAX_SOURCE) {
        snprintf(err, errlen, "%s: larger than %d bytes", path, TG_CELL_DEF_MAX_SOURCE);
        free(buf);
        return -1;
    }
    buf[len] = 0;
    if (strlen(buf) != len) { snprintf(err, errlen, "%s: contains a NUL byte (not a text file)", path); free(buf); return -1; }
    name_of_file(path, name, n);
    int rc = tg_cell_register_source(name, buf, path, err, errlen);
    free(buf);
    return rc;
}

int celldef_rewrite_args(int argc, char **argv, char *err, size_t errlen) {
    for (int i = 1; i + 1 < argc; i++) {
        bool def = strcmp(argv[i], "--cell-def") == 0;
        if (!def && strcmp(argv[i], "--cell") && strcmp(argv[i], "--cells")) continue;
        const char *v = argv[i + 1];
        if (!def && !strchr(v, '@')) continue;
        size_t cap = strlen(v) + 64 * 8 + 64;
        char *out = malloc(cap), *list = strdup(v);
        if (!out || !list) { free(out); free(list); snprintf(err, errlen, "out of memory"); return -1; }
        out[0] = 0;
        if (def) {
            char name[64];
            if (resolve(v, true, name, sizeof name, err, errlen)) { free(out); free(list); return -1; }
            snprintf(out, cap, "%s", name);
            argv[i] = "--cell";
        } else {
            size_t o = 0;
            for (char *save = NULL, *tok = strtok_r(list, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
                char name[64];
                if (resolve(tok, false, name, sizeof name, err, errlen)) { free(out); free(list); return -1; }
                o += (size_t)snprintf(out + o, cap - o, "%s%s", o ? "," : "", name);
                if (o >= cap) { snprintf(err, errlen, "--cells: list too long"); free(out); free(list); return -1; }
            }
        }
        free(list);
        argv[i + 1] = out; /* lives until exit, like argv */
        i++;
    }
    return 0;
}
