/* train/model.c - the recurrent stack + linear head of <tapegrad/train.h> and its checkpoints (see
 * train.h). Dimension letters: T time, B batch, I input, H hidden, O output. */
#include <tapegrad/train.h>
#include "train/checkpoint.h"
#include "train/rng_text.h"
#include "tensor/alloc.h"
#include <tapegrad/cell_lang.h>

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <tapegrad/autograd.h>
#include <tapegrad/ops.h>

#include <stdbool.h>

#define CKPT_FORMAT "tapegrad-checkpoint-1"

static void set_err(char *err, size_t n, const char *fallback) {
    const char *m = tg_error_pending() ? tg_last_error() : fallback;
    snprintf(err, n, "%s", m && *m ? m : fallback);
    tg_clear_error();
}

/* ---- typed cells in checkpoints --------------------------------------------------------------------- */

#define MAX_DEFS 32
/* registered definitions: never freed (the registry keeps pointers to their cells until exit) */
static tg_cell_def *g_defs[MAX_DEFS];
static int g_n_defs;

const char *tg_cell_source(const char *cell_name) {
    for (int i = 0; cell_name && i < g_n_defs; i++)
        if (strcmp(tg_cell_def_cell(g_defs[i])->name, cell_name) == 0) return tg_cell_def_source(g_defs[i]);
    return NULL;
}

int tg_cell_register_source(const char *name, const char *src, const char *where, char *err, size_t errlen) {
    if (!name || !src || !where) { snprintf(err, errlen, "tg_cell_register_source: NULL argument"); return -1; }
    const char *have = tg_cell_source(name);
    if (have) {
        if (strcmp(have, src) == 0) return 0;
        snprintf(err, errlen, "%s: a different definition is already named '%s'", where, name);
        return -1;
    }
    tg_clear_error();
    for (int i = 0; i < tg_cell_count(); i++)
        if (strcmp(tg_cell_at(i)->name, name) == 0) {
            snprintf(err, errlen, "%s: '%s' is the name of a built-in cell", where, name);
            return -1;
        }
    if (g_n_defs == MAX_DEFS) { snprintf(err, errlen, "%s: more than %d typed cells", where, MAX_DEFS); return -1; }
    char msg[256];
    tg_cell_def *d = tg_cell_def_parse(name, src, msg, sizeof msg);
    if (!d) { snprintf(err, errlen, "%s:%s", where, msg); return -1; }
    if (tg_cell_register(tg_cell_def_cell(d))) {
        snprintf(err, errlen, "%s: %s", where, tg_last_error());
        tg_clear_error();
        tg_cell_def_free(d);
        return -1;
    }
    g_defs[g_n_defs++] = d;
    return 0;
}

/* ---- the model ------------------------------------------------------------------------------------ */

/* The registered cell of that name, or NULL with "unknown cell 'x' (known: ...)" in err: a name read
 * from a file is data, so it must not reach tg_cell_by_name's error handler (which may abort). */
static const tg_cell *find_cell(const char *name, char *err, size_t errlen) {
    for (int i = 0; name && i < tg_cell_count(); i++)
        if (strcmp(tg_cell_at(i)->name, name) == 0) return tg_cell_at(i);
    int n = snprintf(err, errlen, "unknown cell '%s' (known:", name ? name : "(null)");
    for (int i = 0; i < tg_cell_count() && n >= 0 && (size_t)n < errlen; i++)
        n += snprintf(err + n, errlen - (size_t)n, "%s %s", i ? "," : "", tg_cell_at(i)->name);
    if (n >= 0 && (size_t)n < errlen) snprintf(err + n, errlen - (size_t)n, ")");
    return NULL;
}

tg_model *tg_model_new(const tg_model_config *cfg, uint64_t seed, char *err, size_t errlen) {
    if (!cfg) { snprintf(err, errlen, "tg_model_new: NULL config"); return NULL; }
    tg_clear_error();
    const tg_cell *cell = find_cell(cfg->cell, err, errlen);
    if (!cell) return NULL;
    if (cfg->set_forget_bias && cell->forget_gate < 0) {
        snprintf(err, errlen, "cell '%s' has no forget gate: --forget-bias does not apply to it", cfg->cell);
        return NULL;
    }
    if (cfg->input_size <= 0 || cfg->hidden_size <= 0 || cfg->output_size <= 0 || cfg->layers <= 0) {
        snprintf(err, errlen, "bad model sizes (input %lld, hidden %lld, output %lld, layers %d)",
                 (long long)cfg->input_size, (long long)cfg->hidden_size, (long long)cfg->output_size, cfg->layers);
        return NULL;
    }
    /* torch.nn.LSTM's rules for proj_size, checked here so that they are data errors with a message */
    if (cfg->proj_size && !cell->proj) {
        snprintf(err, errlen, "proj_size %lld: projections are only supported for LSTM, not cell '%s' (torch: "
                 "proj_size argument is only supported for LSTM, not RNN or GRU)", (long long)cfg->proj_size, cfg->cell);
        return NULL;
    }
    if (cfg->proj_size < 0 || cfg->proj_size >= cfg->hidden_size) {
        snprintf(err, errlen, "proj_size %lld must be in 1..%lld, below hidden_size %lld (torch: proj_size has to be "
                 "smaller than hidden_size; 0 means no projections)", (long long)cfg->proj_size,
                 (long long)cfg->hidden_size - 1, (long long)cfg->hidden_size);
        return NULL;
    }
    tg_model *m = tg_calloc(1, sizeof *m);
    if (!m) { snprintf(err, errlen, "out of memory"); return NULL; }
    m->cfg = *cfg;
    m->cell = cell;
    tg_rng rng;
    tg_rng_seed(&rng, seed);
    tg_rnn_config rc = {.input_size = cfg->input_size, .hidden_size = cfg->hidden_size,
                        .num_layers = cfg->layers, .dtype = cfg->dtype, .dropout = cfg->dropout,
                        .proj_size = cfg->proj_size};
    m->rnn = tg_rnn_new(cell, &rc, &rng);
    if (!m->rnn) goto fail;
    if (cfg->set_forget_bias &&
        tg_rnn_init(m->rnn, &(tg_rnn_init_opts){.set_forget_bias = true, .forget_bias = cfg->forget_bias}, &rng))
        goto fail;
    int64_t R = cfg->proj_size ? cfg->proj_size : cfg->hidden_size; /* the width of h: the head's input */
    m->head = tg_linear_layer_new(R, cfg->output_size, true, cfg->dtype, &rng);
    if (!m->head) goto fail;
    m->params = tg_params_new();
    if (!m->params || tg_params_extend(m->params, "rnn.", m->rnn->params) ||
        tg_params_extend(m->params, "head.", m->head->params))
        goto fail;
    return m;
fail:
    set_err(err, errlen, "could not build the model");
    tg_model_free(m);
    return NULL;
}

void tg_model_free(tg_model *m) {
    if (!m) return;
    tg_params_free(m->params);
    tg_linear_layer_free(m->head);
    tg_rnn_free(m->rnn);
    free(m);
}

int64_t tg_model_param_count(const tg_model *m) { return tg_params_numel(m->params); }

tg_tensor *tg_model_forward(const tg_model *m, const tg_tensor *x, bool every_step, tg_rnn_carry *carry, tg_rng *train_rng) {
    return tg_model_forward_len(m, x, NULL, every_step, carry, train_rng);
}

tg_tensor *tg_model_forward_len(const tg_model *m, const tg_tensor *x, const int64_t *lengths, bool every_step,
                             tg_rnn_carry *carry, tg_rng *train_rng) {
    tg_rnn_output out;
    /* the last real step of each sequence is the final state h_n of the last layer (packed semantics) */
    bool need_out = carry || (lengths && !every_step);
    tg_rnn_forward_opts o = {.lengths = lengths, .init = carry && carry->n_states ? carry->state : NULL,
                             .train = train_rng != NULL, .rng = train_rng, .zoneout_h = m->cfg.zoneout,
                             .zoneout_c = m->cfg.zoneout};
    tg_tensor *y = tg_rnn_forward(m->rnn, x, &o, need_out ? &out : NULL); /* [T,B,H] */
    if (!y) return NULL;
    tg_tensor *last = need_out && lengths ? tg_select(out.h_n, m->cfg.layers - 1) : NULL; /* [B,H] */
    if (carry) {
        int s = tg_rnn_carry_update(carry, &out);
        if (s) { tg_rnn_output_clear(&out); return NULL; }
    }
    if (need_out) tg_rnn_output_clear(&out);
    int64_t T = tg_dim(y, 0), B = tg_dim(y, 1), H = tg_dim(y, 2);
    tg_tensor *h = every_step ? tg_reshape(y, TG_SHAPE(T * B, H)) /* [T·B,H] */
                   : last     ? last                              /* [B,H] at each sequence's last step */
                              : tg_select(y, T - 1);              /* [B,H] */
    return tg_linear_layer_forward(m->head, h);                   /* [T·B,O] or [B,O] */
}

tg_rnn_stream *tg_model_stream_new(const tg_model *m, int64_t B) {
    if (!m) {
        tg_error("tg_model_stream_new", "model is NULL");
        return NULL;
    }
    tg_rnn_stream *s = tg_rnn_stream_new(m->rnn, m->head, B);
    if (s && m->cfg.zoneout > 0 && tg_rnn_stream_set_zoneout(s, m->cfg.zoneout, m->cfg.zoneout)) {
        tg_rnn_stream_free(s);
        return NULL;
    }
    return s;
}

/* ---- checkpoints ---------------------------------------------------------------------------------- */

void tg__rng_to_str(const tg_rng *r, char *buf, size_t n) {
    uint64_t spare;
    memcpy(&spare, &r->spare, sizeof spare);
    snprintf(buf, n, "%016" PRIx64 " %016" PRIx64 " %016" PRIx64 " %016" PRIx64 " %d %016" PRIx64, r->s[0], r->s[1],
             r->s[2], r->s[3], r->has_spare ? 1 : 0, spare);
}

bool tg__rng_from_str(const char *s, tg_rng *r) {
    uint64_t v[5];
    int has;
    if (!s || sscanf(s, "%" SCNx64 " %" SCNx64 " %" SCNx64 " %" SCNx64 " %d %" SCNx64, &v[0], &v[1], &v[2], &v[3],
                     &has, &v[4]) != 6)
        return false;
    for (int i = 0; i < 4; i++) r->s[i] = v[i];
    r->has_spare = has != 0;
    memcpy(&r->spare, &v[4], sizeof r->spare);
    return true;
}

int tg_ckpt_save(const char *path, const tg_model *m, const tg_optim *opt, int64_t step, const tg_rng *rng,
                 int nmeta, const char *const *meta, char *err, size_t errlen) {
    return tg_ckpt_save_sched(path, m, opt, NULL, step, rng, nmeta, meta, err, errlen);
}

int tg_ckpt_save_sched(const char *path, const tg_model *m, const tg_optim *opt, const tg_sched *sched, int64_t step,
                       const tg_rng *rng, int nmeta, const char *const *meta, char *err, size_t errlen) {
    enum { OWN = 14 };
    char vals[OWN][160];
    const char *keys[OWN] = {"format", "tapegrad", "cell", "input_size", "hidden_size", "output_size",
                             "layers", "dtype", "forget_bias", "step", "rng", "dropout", "zoneout", "proj_size"};
    snprintf(vals[0], sizeof vals[0], "pt");
    snprintf(vals[1], sizeof vals[1], CKPT_FORMAT);
    snprintf(vals[2], sizeof vals[2], "%s", m->cfg.cell);
    snprintf(vals[3], sizeof vals[3], "%lld", (long long)m->cfg.input_size);
    snprintf(vals[4], sizeof vals[4], "%lld", (long long)m->cfg.hidden_size);
    snprintf(vals[5], sizeof vals[5], "%lld", (long long)m->cfg.output_size);
    snprintf(vals[6], sizeof vals[6], "%d", m->cfg.layers);
    snprintf(vals[7], sizeof vals[7], "%s", tg_dtype_name(m->cfg.dtype));
    if (m->cfg.set_forget_bias) snprintf(vals[8], sizeof vals[8], "%.17g", m->cfg.forget_bias);
    else snprintf(vals[8], sizeof vals[8], "default");
    snprintf(vals[9], sizeof vals[9], "%lld", (long long)step);
    tg_rng zero = {{0}, 0, 0};
    tg__rng_to_str(rng ? rng : &zero, vals[10], sizeof vals[10]);
    snprintf(vals[11], sizeof vals[11], "%.17g", m->cfg.dropout);
    snprintf(vals[12], sizeof vals[12], "%.17g", m->cfg.zoneout);
    snprintf(vals[13], sizeof vals[13], "%lld", (long long)m->cfg.proj_size);

    const char *def = tg_cell_source(m->cfg.cell); /* a typed cell: its definition travels with the model */
    int nm = OWN + nmeta + (def ? 1 : 0);
    const char **kv = tg_malloc((size_t)nm * 2 * sizeof *kv);
    if (!kv) { snprintf(err, errlen, "%s: out of memory", path); return -1; }
    for (int i = 0; i < OWN; i++) { kv[2 * i] = keys[i]; kv[2 * i + 1] = vals[i]; }
    for (int i = 0; i < nmeta; i++) { kv[2 * (OWN + i)] = meta[2 * i]; kv[2 * (OWN + i) + 1] = meta[2 * i + 1]; }
    if (def) { kv[2 * (nm - 1)] = "cell_def"; kv[2 * (nm - 1) + 1] = def; }
    tg_clear_error();
    int rc = tg__ckpt_write("tg_ckpt_save", path, m->params, opt, opt ? sched : NULL, nm, kv);
    if (rc) set_err(err, errlen, "could not write the checkpoint");
    free(kv);
    return rc;
}

static bool meta_long(const tg_st_file *f, const char *key, long long *out) {
    const char *v = tg_st_meta(f, key);
    char *end;
    if (!v) return false;
    *out = strtoll(v, &end, 10);
    return end != v && !*end;
}

/* The metadata describes the model; the tensors are the model. Before anything is built from the
 * metadata, check it against the tensors' dtypes and shapes (which the reader has already checked
 * against the file's size), so a header saying hidden_size=1000000 over tensors of hidden 32 is
 * named as the contradiction it is instead of failing as an allocation. 0, or -1 with the key and the
 * tensor in err. */
static int ckpt_check_tensors(const char *path, const tg_st_file *f, const tg_model_config *cfg, char *err,
                              size_t errlen) {
    char sh[64];
    for (int i = 0; i < tg_st_count(f); i++) {
        const tg_tensor *t = tg_st_tensor_at(f, i);
        if (tg_dtype_of(t) != cfg->dtype) {
            snprintf(err, errlen, "%s: metadata dtype=%s contradicts tensor '%s' (%s)", path, tg_dtype_name(cfg->dtype),
                     tg_st_name_at(f, i), tg_dtype_name(tg_dtype_of(t)));
            return -1;
        }
    }
    char why[512];
    const tg_cell *cell = find_cell(cfg->cell, why, sizeof why);
    if (!cell) { snprintf(err, errlen, "%s: metadata cell: %s", path, why); return -1; }
    const char *need[] = {"head.weight", "rnn.weight_ih_l0"};
    for (int i = 0; i < 2; i++)
        if (!tg_st_get(f, need[i]) || tg_ndim(tg_st_get(f, need[i])) != 2) {
            snprintf(err, errlen, "%s: tensor '%s' is missing or not a matrix", path, need[i]);
            return -1;
        }
    const tg_tensor *hw = tg_st_get(f, "head.weight"), *w0 = tg_st_get(f, "rnn.weight_ih_l0");
    const tg_tensor *hr = tg_st_get(f, "rnn.weight_hr_l0"); /* [P,H]: projections */
    if (!cfg->proj_size != !hr || (hr && (tg_ndim(hr) != 2 || tg_dim(hr, 0) != cfg->proj_size ||
                                          tg_dim(hr, 1) != cfg->hidden_size))) {
        if (hr) snprintf(err, errlen, "%s: metadata proj_size=%lld, hidden_size=%lld contradict tensor 'rnn.weight_hr_l0' %s",
                         path, (long long)cfg->proj_size, (long long)cfg->hidden_size, tg_shape_str(hr, sh, sizeof sh));
        else snprintf(err, errlen, "%s: metadata proj_size=%lld but there is no tensor 'rnn.weight_hr_l0'", path,
                      (long long)cfg->proj_size);
        return -1;
    }
    struct { const char *key; long long meta, actual; const char *tensor; const tg_tensor *t; } chk[] = {
        {cfg->proj_size ? "proj_size" : "hidden_size", cfg->proj_size ? cfg->proj_size : cfg->hidden_size,
         tg_dim(hw, 1), "head.weight", hw},
        {"output_size", cfg->output_size, tg_dim(hw, 0), "head.weight", hw},
        {"input_size", cfg->input_size, tg_dim(w0, 1), "rnn.weight_ih_l0", w0},
        {"hidden_size", (long long)cell->gates * cfg->hidden_size, tg_dim(w0, 0), "rnn.weight_ih_l0", w0},
    };
    for (size_t i = 0; i < sizeof chk / sizeof chk[0]; i++)
        if (chk[i].meta != chk[i].actual) {
            long long v = i == 3 ? (long long)cfg->hidden_size : chk[i].meta;
            snprintf(err, errlen, "%s: metadata %s=%lld contradicts tensor '%s' %s%s", path, chk[i].key, v,
                     chk[i].tensor, tg_shape_str(chk[i].t, sh, sizeof sh),
                     i == 3 ? " (gates x hidden rows)" : "");
            return -1;
        }
    char name[64];
    snprintf(name, sizeof name, "rnn.weight_ih_l%d", cfg->layers - 1);
    bool last = tg_st_get(f, name) != NULL;
    snprintf(name, sizeof name, "rnn.weight_ih_l%d", cfg->layers);
    if (!last || tg_st_get(f, name)) {
        int k = 0;
        for (;; k++) {
            snprintf(name, sizeof name, "rnn.weight_ih_l%d", k);
            if (!tg_st_get(f, name)) break;
        }
        snprintf(err, errlen, "%s: metadata layers=%d contradicts the tensors (rnn.weight_ih_l0 .. rnn.weight_ih_l%d: %d layers)",
                 path, cfg->layers, k - 1, k);
        return -1;
    }
    return 0;
}

tg_model *tg_ckpt_load_model(const char *path, tg_st_file **file, char *err, size_t errlen) {
    if (!path) { snprintf(err, errlen, "tg_ckpt_load_model: NULL path"); return NULL; }
    tg_clear_error();
    if (file) *file = NULL;
    tg_st_file *f = tg_st_load(path);
    if (!f) { set_err(err, errlen, "cannot read the checkpoint"); return NULL; }
    const char *fmt = tg_st_meta(f, "tapegrad");
    if (!fmt || strcmp(fmt, CKPT_FORMAT) != 0) {
        snprintf(err, errlen, "%s: not a tapegrad checkpoint (metadata 'tapegrad' is %s)", path,
                 fmt ? fmt : "missing");
        tg_st_free(f);
        return NULL;
    }
    tg_model_config cfg = {0};
    long long in, hid, outs, layers;
    const char *cell = tg_st_meta(f, "cell"), *dt = tg_st_meta(f, "dtype"), *fb = tg_st_meta(f, "forget_bias");
    if (!cell || !dt || !fb || !meta_long(f, "input_size", &in) || !meta_long(f, "hidden_size", &hid) ||
        !meta_long(f, "output_size", &outs) || !meta_long(f, "layers", &layers) || in <= 0 || hid <= 0 ||
        outs <= 0 || layers <= 0 || layers > 64 || (strcmp(dt, "F32") && strcmp(dt, "F64"))) {
        snprintf(err, errlen, "%s: the checkpoint's model description (metadata) is incomplete or invalid", path);
        tg_st_free(f);
        return NULL;
    }
    snprintf(cfg.cell, sizeof cfg.cell, "%s", cell);
    const char *def = tg_st_meta(f, "cell_def");
    if (def && tg_cell_register_source(cell, def, path, err, errlen)) {
        tg_st_free(f);
        return NULL;
    }
    cfg.input_size = in;
    cfg.hidden_size = hid;
    cfg.output_size = outs;
    cfg.layers = (int)layers;
    cfg.dtype = strcmp(dt, "F64") == 0 ? TG_F64 : TG_F32;
    if (strcmp(fb, "default") != 0) {
        cfg.set_forget_bias = true;
        cfg.forget_bias = strtod(fb, NULL);
    }
    /* absent in checkpoints written before these options existed: off */
    const char *dr = tg_st_meta(f, "dropout"), *zo = tg_st_meta(f, "zoneout");
    long long proj = 0;
    if (tg_st_meta(f, "proj_size") && (!meta_long(f, "proj_size", &proj) || proj < 0 || proj >= hid)) {
        snprintf(err, errlen, "%s: the checkpoint's proj_size '%s' is not in 0..%lld (below hidden_size %lld)", path,
                 tg_st_meta(f, "proj_size"), hid - 1, hid);
        tg_st_free(f);
        return NULL;
    }
    cfg.proj_size = proj;
    cfg.dropout = dr ? strtod(dr, NULL) : 0;
    cfg.zoneout = zo ? strtod(zo, NULL) : 0;
    if (!(cfg.dropout >= 0 && cfg.dropout < 1) || !(cfg.zoneout >= 0 && cfg.zoneout <= 1)) {
        snprintf(err, errlen, "%s: the checkpoint's dropout %s / zoneout %s are out of range", path, dr ? dr : "0",
                 zo ? zo : "0");
        tg_st_free(f);
        return NULL;
    }
    if (ckpt_check_tensors(path, f, &cfg, err, errlen)) { tg_st_free(f); return NULL; }
    tg_model *m = tg_model_new(&cfg, 0, err, errlen);
    if (!m) { tg_st_free(f); return NULL; }
    if (tg_params_load(m->params, path)) {
        set_err(err, errlen, "cannot load the checkpoint's parameters");
        tg_model_free(m);
        tg_st_free(f);
        return NULL;
    }
    if (file) *file = f;
    else tg_st_free(f);
    return m;
}

int tg_ckpt_load_train_state(const char *path, const tg_st_file *file, tg_optim *opt, int64_t *step, tg_rng *rng,
                             char *err, size_t errlen) {
    return tg_ckpt_load_train_state_sched(path, file, opt, NULL, step, rng, err, errlen);
}

int tg_ckpt_load_train_state_sched(const char *path, const tg_st_file *file, tg_optim *opt, tg_sched *sched,
                                   int64_t *step, tg_rng *rng, char *err, size_t errlen) {
    long long s;
    tg_rng r;
    if (!meta_long(file, "step", &s) || s < 0 || !tg__rng_from_str(tg_st_meta(file, "rng"), &r)) {
        snprintf(err, errlen, "%s: the checkpoint has no valid 'step' / 'rng' metadata", path);
        return -1;
    }
    tg_clear_error();
    if (opt && tg__ckpt_read_optim("tg_ckpt_load_train_state", path, file, opt, sched)) {
        set_err(err, errlen, "cannot load the optimizer state");
        return -1;
    }
    if (step) *step = s;
    if (rng) *rng = r;
    return 0;
}
