/* train/checkpoint.c - a checkpoint's two files, model and optimizer, written by one function and
 * read back only as a pair (see train/checkpoint.h). tg_ckpt_save / tg_ckpt_load_train_state
 * (train/model.c) and tg_trainer_save / tg_trainer_load (train/trainer.c) go through here. */
#include "train/checkpoint.h"

#include "optim/checkpoint.h"
#include "tensor/alloc.h"
#include <tapegrad/train.h>

#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define PREV_SUFFIX ".prev"

const char *tg_ckpt_optim_path(const char *path, char *buf, size_t size) {
    const char *suffix = ".safetensors";
    size_t n = strlen(path), k = strlen(suffix);
    if (n > k && strcmp(path + n - k, suffix) == 0)
        snprintf(buf, size, "%.*s.optim.safetensors", (int)(n - k), path);
    else
        snprintf(buf, size, "%s.optim.safetensors", path);
    return buf;
}

/* The optimizer file's path and that of the one kept during a save; -1 with a message if too long. */
enum { PATH_MAX_LEN = 4096 };
static int pair_paths(const char *fn, const char *path, char op[PATH_MAX_LEN], char prev[PATH_MAX_LEN + 8]) {
    if (strlen(path) + sizeof ".optim.safetensors" > PATH_MAX_LEN) {
        tg_error_quiet(fn, "%s: path too long", path);
        return -1;
    }
    tg_ckpt_optim_path(path, op, PATH_MAX_LEN);
    snprintf(prev, PATH_MAX_LEN + 8, "%s" PREV_SUFFIX, op);
    return 0;
}

/* ---- the pairing id: a hash of the model file's contents --------------------------------------------- */

static uint64_t mix(uint64_t h, uint64_t v) {
    h ^= v * 0x9e3779b97f4a7c15u;
    h = (h << 31) | (h >> 33);
    return h * 0xbf58476d1ce4e5b9u;
}

static uint64_t hash_bytes(uint64_t h, const void *p, size_t n) {
    const unsigned char *b = p;
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        uint64_t w;
        memcpy(&w, b + i, 8);
        h = mix(h, w);
    }
    uint64_t w = 0;
    memcpy(&w, b + i, n - i);
    return mix(mix(h, w), (uint64_t)n); /* the length: "ab" + "c" differs from "a" + "bc" */
}

static uint64_t hash_str(uint64_t h, const char *s) { return hash_bytes(h, s, strlen(s)); }

static void pair_id(const tg_params *params, int nkv, const char *const *kv, char out[17]) {
    uint64_t h = 0x74617065677261ddu;
    for (int i = 0; i < tg_params_count(params); i++) {
        tg_tensor *t = tg_params_at(params, i);
        h = hash_str(h, tg_params_name_at(params, i));
        h = mix(h, (uint64_t)tg_dtype_of(t));
        h = mix(h, (uint64_t)tg_ndim(t));
        for (int d = 0; d < tg_ndim(t); d++) h = mix(h, (uint64_t)tg_dim(t, d));
        h = hash_bytes(h, tg_data(t), (size_t)tg_numel(t) * tg_itemsize(tg_dtype_of(t)));
    }
    for (int i = 0; i < 2 * nkv; i++) h = hash_str(h, kv[i]);
    h ^= h >> 29; /* the last multiply's high bits reach the low ones */
    snprintf(out, 17, "%016" PRIx64, h);
}

/* Whether the model file at path and the optimizer file at op carry the same pairing id. */
static bool pair_on_disk(const char *path, const char *op) {
    tg_st_file *m = tg_st_load(path), *o = m ? tg_st_load(op) : NULL;
    const char *a = m ? tg_st_meta(m, TG_CKPT_PAIR_KEY) : NULL, *b = o ? tg_st_meta(o, TG_CKPT_PAIR_KEY) : NULL;
    bool same = a && b && strcmp(a, b) == 0;
    tg_st_free(m);
    tg_st_free(o);
    tg_clear_error();
    return same;
}

/* ---- writing ----------------------------------------------------------------------------------------- */

int tg__ckpt_write(const char *fn, const char *path, tg_params *params, const tg_optim *opt, const tg_sched *sched,
                   int nkv, const char *const *kv) {
    char op[PATH_MAX_LEN], prev[PATH_MAX_LEN + 8];
    if (!path || !params) { tg_error_quiet(fn, "%s is NULL", !path ? "path" : "params"); return -1; }
    if (pair_paths(fn, path, op, prev)) return -1;
    for (int i = 0; i < nkv; i++)
        if (strcmp(kv[2 * i], TG_CKPT_PAIR_KEY) == 0) {
            tg_error_quiet(fn, "metadata key '" TG_CKPT_PAIR_KEY "' is the checkpoint's own");
            return -1;
        }
    int n = tg_params_count(params);
    const char **names = tg_malloc((size_t)(n ? n : 1) * sizeof *names);
    tg_tensor **tensors = tg_malloc((size_t)(n ? n : 1) * sizeof *tensors);
    const char **all = tg_malloc((size_t)(nkv + 1) * 2 * sizeof *all);
    int rc = -1;
    if (!names || !tensors || !all) { tg_error_quiet(fn, "%s: out of memory", path); goto done; }
    for (int i = 0; i < n; i++) {
        names[i] = tg_params_name_at(params, i);
        tensors[i] = tg_params_at(params, i);
    }
    char id[17];
    pair_id(params, nkv, kv, id);
    memcpy(all, kv, (size_t)nkv * 2 * sizeof *all);
    all[2 * nkv] = TG_CKPT_PAIR_KEY;
    all[2 * nkv + 1] = id;
    /* The optimizer file first. The previous one stays reachable as .prev (a second name of the same
     * file) until the model file is replaced too: a failure or a crash in between leaves the previous
     * model file and, in .prev, its optimizer file. Without hard links (some file systems) a failure in
     * between leaves a pair that loading refuses. */
    bool had = false, made = false, kept = false; /* kept: .prev pairs with the model file on disk */
    if (opt) {
        had = access(op, F_OK) == 0;
        if (access(prev, F_OK) == 0 && !pair_on_disk(path, op)) {
            kept = true; /* an earlier save was interrupted: .prev is the pair of the model file */
        } else {
            unlink(prev);
            kept = made = had && link(op, prev) == 0;
        }
        tg_clear_error();
        if (tg__optim_save_kv(opt, sched, op, 1, all + 2 * nkv)) {
            if (made) unlink(prev);
            goto done;
        }
    }
    if (tg_st_save(path, n, names, tensors, nkv + 1, all)) {
        if (kept) rename(prev, op); /* the previous pair again */
        else if (opt && !had) unlink(op); /* there was no pair before */
        goto done;
    }
    if (kept) unlink(prev);
    rc = 0;
done:
    free(names);
    free(tensors);
    free(all);
    return rc;
}

/* ---- reading ----------------------------------------------------------------------------------------- */

/* The file at p if its pairing id is want, else NULL (not readable, or another id in *got_id). */
static tg_st_file *open_paired(const char *p, const char *want, char *got_id, size_t n) {
    tg_st_file *g = tg_st_load(p);
    if (!g) return NULL;
    const char *got = tg_st_meta(g, TG_CKPT_PAIR_KEY);
    snprintf(got_id, n, "%s", got ? got : "none");
    if (got && strcmp(got, want) == 0) return g;
    tg_st_free(g);
    return NULL;
}

int tg__ckpt_read_optim(const char *fn, const char *path, const tg_st_file *f, tg_optim *opt, tg_sched *sched) {
    char op[PATH_MAX_LEN], prev[PATH_MAX_LEN + 8], got[64] = "", msg[600] = "";
    if (pair_paths(fn, path, op, prev)) return -1;
    const char *want = tg_st_meta(f, TG_CKPT_PAIR_KEY);
    if (!want) {
        tg_error_quiet(fn, "%s: no pairing id (metadata '" TG_CKPT_PAIR_KEY "'), so no optimizer file can be "
                           "matched with it (a checkpoint of an older tapegrad: resave it)", path);
        return -1;
    }
    tg_clear_error();
    const char *used = op;
    tg_st_file *g = open_paired(op, want, got, sizeof got);
    if (!g) {
        bool unreadable = !got[0];
        if (unreadable) snprintf(msg, sizeof msg, "%.500s", tg_error_pending() ? tg_last_error() : op);
        tg_clear_error();
        char prev_got[64] = "";
        used = prev;
        g = open_paired(prev, want, prev_got, sizeof prev_got); /* a save interrupted between the renames */
        tg_clear_error();
        if (!g) {
            if (unreadable) tg_error_quiet(fn, "%s: its optimizer file cannot be read: %s", path, msg);
            else
                tg_error_quiet(fn, "%s and %s are not one checkpoint: pairing id %s in the model file, %s in the "
                                   "optimizer file (the optimizer file of another save or run); refused",
                               path, op, want, got);
            return -1;
        }
    }
    int rc = tg__optim_load_file(opt, sched, g, used);
    tg_st_free(g);
    return rc;
}
