/* nn/params.c - named parameter sets: an ordered list of (name, tensor) holding one reference to each
 * tensor. Lookup is a linear scan: models have tens to hundreds of parameters, and the order (the
 * order of creation, like PyTorch's named_parameters) is what optimizers and checkpoints rely on. */
#include <tapegrad/autograd.h>
#include <tapegrad/nn.h>
#include "tensor/alloc.h"

#include <stdlib.h>
#include <string.h>

typedef struct tg_param_entry {
    char *name;       /* owned copy */
    tg_tensor *value; /* owned reference */
} tg_param_entry;

struct tg_params {
    tg_param_entry *entries; /* [count] */
    int count, capacity;
};

tg_params *tg_params_new(void) {
    tg_params *p = tg_calloc(1, sizeof *p);
    if (!p) tg_error("tg_params_new", "out of memory");
    return p;
}

void tg_params_free(tg_params *p) {
    if (!p) return;
    for (int i = 0; i < p->count; i++) {
        free(p->entries[i].name);
        tg_release(p->entries[i].value);
    }
    free(p->entries);
    free(p);
}

int tg_params_add(tg_params *p, const char *name, tg_tensor *t) {
    const char *fn = "tg_params_add";
    if (!p || !name || !name[0]) {
        tg_error(fn, "%s is NULL or empty", !p ? "the parameter list" : "the name");
        return -1;
    }
    if (!t) {
        if (!tg_error_pending()) tg_error(fn, "tensor for '%s' is NULL", name);
        return -1;
    }
    if (tg_params_find(p, name)) {
        tg_error(fn, "a parameter named '%s' already exists", name);
        return -1;
    }
    if (p->count == p->capacity) {
        int cap = p->capacity ? 2 * p->capacity : 16;
        tg_param_entry *e = tg_realloc(p->entries, (size_t)cap * sizeof *e);
        if (!e) { tg_error(fn, "out of memory adding '%s'", name); return -1; }
        p->entries = e;
        p->capacity = cap;
    }
    size_t len = strlen(name);
    char *copy = tg_malloc(len + 1);
    if (!copy) { tg_error(fn, "out of memory adding '%s'", name); return -1; }
    memcpy(copy, name, len + 1);
    if (!tg_retain(t)) { free(copy); return -1; } /* a released tensor: tg_retain reported it */
    if (!tg_name(t)[0]) tg_set_name(t, name);     /* shows up in error messages and prints */
    p->entries[p->count++] = (tg_param_entry){copy, t};
    return 0;
}

int tg_params_extend(tg_params *dst, const char *prefix, const tg_params *src) {
    if (!dst || !src) { tg_error("tg_params_extend", "%s is NULL", !dst ? "dst" : "src"); return -1; }
    if (!prefix) prefix = "";
    for (int i = 0; i < src->count; i++) {
        size_t n = strlen(prefix) + strlen(src->entries[i].name) + 1;
        char *full = tg_malloc(n);
        if (!full) { tg_error("tg_params_extend", "out of memory"); return -1; }
        snprintf(full, n, "%s%s", prefix, src->entries[i].name);
        int s = tg_params_add(dst, full, src->entries[i].value);
        free(full);
        if (s) return -1;
    }
    return 0;
}

tg_tensor *tg_params_find(const tg_params *p, const char *name) {
    if (!p || !name) return NULL;
    for (int i = 0; i < p->count; i++)
        if (strcmp(p->entries[i].name, name) == 0) return p->entries[i].value;
    return NULL;
}

int tg_params_count(const tg_params *p) { return p ? p->count : 0; }

int64_t tg_params_numel(const tg_params *p) {
    int64_t n = 0;
    for (int i = 0; p && i < p->count; i++) n += tg_numel(p->entries[i].value);
    return n;
}

const char *tg_params_name_at(const tg_params *p, int i) {
    return p && i >= 0 && i < p->count ? p->entries[i].name : NULL;
}

tg_tensor *tg_params_at(const tg_params *p, int i) {
    return p && i >= 0 && i < p->count ? p->entries[i].value : NULL;
}

int tg_params_foreach(const tg_params *p, tg_params_visit_fn fn, void *user) {
    if (!p || !fn) { tg_error("tg_params_foreach", "%s is NULL", !p ? "the parameter list" : "fn"); return -1; }
    for (int i = 0; i < p->count; i++) {
        int r = fn(p->entries[i].name, p->entries[i].value, user);
        if (r) return r;
    }
    return 0;
}

void tg_params_set_requires_grad(tg_params *p, bool on) {
    for (int i = 0; p && i < p->count; i++) tg_set_requires_grad(p->entries[i].value, on);
}

void tg_params_zero_grad(tg_params *p) {
    for (int i = 0; p && i < p->count; i++) tg_zero_grad(p->entries[i].value);
}
