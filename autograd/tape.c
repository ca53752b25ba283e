/* autograd/tape.c - the per-thread tape, the backward loop, no-grad, detach.
 *
 * The tape is an append-only array of records; forward order is a topological order, so backward is
 * one reverse loop over it. Op results live in an autorelease pool owned by the tape. */
#include "autograd/tape_internal.h"
#include "tensor/alloc.h"
#include "tensor/pool.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

typedef struct tg_tape {
    tg_record *rec;     /* [n_rec] */
    size_t n_rec, cap_rec;
    tg_tensor **pool;   /* [n_pool] op results owned by the tape */
    size_t n_pool, cap_pool;
    size_t *made;       /* [n_made] indices into pool of the results with a buffer of their own (tg__result),
                           not views: the buffers tg_tape_free_unsaved may give back early */
    size_t n_made, cap_made;
    bool keep_results;  /* tg_set_keep_results: tg_tape_free_unsaved frees nothing */
    uint64_t epoch;     /* bumped by reset: tensor->creator is only valid in its own epoch */
    int no_grad;        /* nesting depth of tg_no_grad_begin */
    bool anomaly;       /* tg_set_anomaly_mode: check results and gradients for NaN / inf */
    bool lost_record;   /* recording an op failed (out of memory) since the last reset: its result is
                           right but has no history, so a backward through it would be incomplete */
} tg_tape;

static _Thread_local tg_tape g_tape = {.epoch = 1};

/* ---- recording ---------------------------------------------------------------------------------- */

void tg__autorelease(tg_tensor *t) {
    if (!t) return;
    if (g_tape.n_pool == g_tape.cap_pool) {
        size_t cap = g_tape.cap_pool ? 2 * g_tape.cap_pool : 256;
        tg_tensor **p = tg_realloc(g_tape.pool, cap * sizeof *p);
        if (!p) { tg_error("tapegrad", "out of memory growing the tape"); tg_release(t); return; }
        g_tape.pool = p;
        g_tape.cap_pool = cap;
    }
    g_tape.pool[g_tape.n_pool++] = t;
}

tg_tensor *tg__result(tg_dtype dtype, int ndim, const int64_t *shape) {
    tg_tensor *t = tg__alloc(dtype, ndim, shape);
    if (!t) return NULL;
    tg__autorelease(t);
    if (g_tape.n_pool == 0 || g_tape.pool[g_tape.n_pool - 1] != t) return t; /* the pool could not grow */
    if (g_tape.n_made == g_tape.cap_made) { /* out of memory here only means it is never freed early */
        size_t cap = g_tape.cap_made ? 2 * g_tape.cap_made : 256;
        size_t *p = tg_realloc(g_tape.made, cap * sizeof *p);
        if (!p) return t;
        g_tape.made = p;
        g_tape.cap_made = cap;
    }
    g_tape.made[g_tape.n_made++] = g_tape.n_pool - 1;
    return t;
}

bool tg__needs_grad(const tg_tensor *t) { return t && t->requires_grad; }

/* ---- anomaly mode ------------------------------------------------------------------------------- */

void tg_set_anomaly_mode(bool on) { g_tape.anomaly = on; }
bool tg_anomaly_mode(void) { return g_tape.anomaly; }

/* Index of the first NaN / inf of t, or -1 when every element is finite (t NULL: -1). */
static int64_t first_nonfinite(const tg_tensor *t) {
    if (!t) return -1;
    TG_DISPATCH(t->dtype, {
        const T *p = TG_PTR(t, T);
        for (int64_t i = 0; i < t->numel; i++)
            if (!isfinite(p[i])) return i;
    });
    return -1;
}

/* "[3,4] 'weight_hh_l0'" or "[3,4]" */
static const char *describe(const tg_tensor *t, char *buf, size_t size) {
    char sh[96];
    tg_shape_str(t, sh, sizeof sh);
    if (t->name[0]) snprintf(buf, size, "%s '%s'", sh, t->name);
    else snprintf(buf, size, "%s", sh);
    return buf;
}

/* Forward check of a new record's result: a non-finite value that this op produced from finite inputs
 * (or that came in through a leaf, which no op reports) is reported with the op's name. */
static void anomaly_forward(tg_op op, const tg_tensor *out, int nin, const tg_tensor *const *in) {
    int64_t at = first_nonfinite(out);
    if (at < 0) return;
    char a[160], b[160];
    for (int i = 0; i < nin; i++) {
        if (!in[i] || first_nonfinite(in[i]) < 0) continue;
        if (in[i]->creator != 0 && in[i]->tape_epoch == g_tape.epoch) return; /* reported where it arose */
        tg_error(tg_op_table[op].name, "anomaly: input %d %s (not produced on the tape) holds a non-finite value; "
                 "the result %s has %g at element %lld (record %zu)", i, describe(in[i], a, sizeof a),
                 describe(out, b, sizeof b), tg_get(out, at), (long long)at, g_tape.n_rec);
        return;
    }
    tg_error(tg_op_table[op].name, "anomaly: the result %s has %g at element %lld although every input is "
             "finite (record %zu)", describe(out, a, sizeof a), tg_get(out, at), (long long)at, g_tape.n_rec);
}

/* The hull of saved element ranges per storage (tg__write_over) takes in t's elements. */
static void saved_range(const tg_tensor *t) {
    tg_storage *s = t->storage;
    const int64_t lo = t->offset, hi = t->offset + t->numel;
    if (hi <= lo) return;
    if (s->saved_hi <= s->saved_lo) { s->saved_lo = lo; s->saved_hi = hi; return; }
    if (lo < s->saved_lo) s->saved_lo = lo;
    if (hi > s->saved_hi) s->saved_hi = hi;
}

void tg__write_over(tg_tensor *t) {
    tg_storage *s = t->storage;
    const int64_t lo = t->offset, hi = t->offset + t->numel;
    if (lo < s->saved_hi && s->saved_lo < hi) {
        s->version++;
        s->saved_lo = s->saved_hi = 0;
    }
}

tg_record *tg__record(tg_op op, tg_tensor *out, int nin, const tg_tensor *const *in) {
    if (g_tape.no_grad || !out) return NULL;
    if (g_tape.anomaly) anomaly_forward(op, out, nin, in);
    bool any = false;
    for (int i = 0; i < nin; i++) any |= tg__needs_grad(in[i]);
    if (!any) return NULL;
    if (g_tape.n_rec == g_tape.cap_rec) {
        size_t cap = g_tape.cap_rec ? 2 * g_tape.cap_rec : 256;
        tg_record *p = tg_realloc(g_tape.rec, cap * sizeof *p);
        if (!p) {
            g_tape.lost_record = true;
            tg_error(tg_op_table[op].name, "out of memory growing the tape");
            return NULL;
        }
        /* Records with few inputs point into themselves (in = in_inline); realloc moved them, so
         * re-aim those pointers at the new copies (the old block is freed). */
        for (size_t i = 0; i < g_tape.n_rec; i++)
            if (p[i].nin <= TG_REC_INLINE) { p[i].in = p[i].in_inline; p[i].in_version = p[i].ver_inline; }
        g_tape.rec = p;
        g_tape.cap_rec = cap;
    }
    tg_record *r = &g_tape.rec[g_tape.n_rec];
    memset(r, 0, sizeof *r);
    r->op = op;
    r->nin = nin;
    if (nin <= TG_REC_INLINE) {
        r->in = r->in_inline;
        r->in_version = r->ver_inline;
    } else {
        r->in = tg_malloc((size_t)nin * sizeof *r->in);
        r->in_version = tg_malloc((size_t)nin * sizeof *r->in_version);
        if (!r->in || !r->in_version) {
            free(r->in); free(r->in_version);
            g_tape.lost_record = true;
            tg_error(tg_op_table[op].name, "out of memory recording %d inputs", nin);
            return NULL;
        }
    }
    const unsigned saves = tg_op_table[op].saves;
    for (int i = 0; i < nin; i++) {
        r->in[i] = tg_retain((tg_tensor *)in[i]);
        r->in_version[i] = in[i] ? in[i]->storage->version : 0;
        if (in[i] && i < TG_SAVES_MAX_IN && (saves >> i & 1u)) saved_range(in[i]);
    }
    r->out = tg_retain(out);
    r->out_version = out->storage->version;
    if (saves & TG_SAVES_OUT) saved_range(out);
    g_tape.n_rec++;
    out->requires_grad = true;
    out->creator = g_tape.n_rec; /* index + 1 */
    out->tape_epoch = g_tape.epoch;
    return r;
}

static void record_free(tg_record *r) {
    for (int i = 0; i < r->nin; i++) tg_release(r->in[i]);
    if (r->in != r->in_inline) { free(r->in); free(r->in_version); }
    if (r->out) {
        /* A result kept past the reset becomes a plain tensor with no history. */
        r->out->creator = 0;
        r->out->requires_grad = false;
        tg_release(r->out);
    }
    tg_release(r->aux);
    free(r->idx);
}

void tg_tape_reset(void) {
    for (size_t i = 0; i < g_tape.n_rec; i++) record_free(&g_tape.rec[i]);
    g_tape.n_rec = 0;
    /* Release in reverse creation order; any order is correct (views own their storage). */
    for (size_t i = g_tape.n_pool; i-- > 0;) tg_release(g_tape.pool[i]);
    g_tape.n_pool = 0;
    g_tape.n_made = 0;
    g_tape.epoch++;
    g_tape.lost_record = false;
}

size_t tg_tape_records(void) { return g_tape.n_rec; }
size_t tg_tape_tensors(void) { return g_tape.n_pool; }
static int cmp_ptr(const void *a, const void *b) {
    uintptr_t x = (uintptr_t)*(void *const *)a, y = (uintptr_t)*(void *const *)b;
    return (x > y) - (x < y);
}
/* Bytes of the buffers the tape keeps alive: every distinct storage of a tape-owned tensor or saved
 * auxiliary tensor, counted once at its allocated size (views share their base's storage), except the
 * storages of the tensors the tape did not make (parameters, the input, a kept state: the leaves among
 * the records' inputs), which a view made on the tape (a gate block of weight_hh, the runner's x_t)
 * shares: those buffers are the caller's, there with or without the tape. */
size_t tg_tape_bytes(void) {
    size_t n = 0, m = 0, cap = g_tape.n_pool + g_tape.n_rec, nleaf = 0;
    if (cap == 0) return 0;
    for (size_t i = 0; i < g_tape.n_rec; i++) nleaf += (size_t)g_tape.rec[i].nin;
    tg_storage **s = tg_malloc(cap * sizeof *s), **leaf = tg_malloc((nleaf ? nleaf : 1) * sizeof *leaf);
    if (!s || !leaf) { free(s); free(leaf); return 0; }
    for (size_t i = 0; i < g_tape.n_pool; i++) s[n++] = g_tape.pool[i]->storage;
    for (size_t i = 0; i < g_tape.n_rec; i++) {
        const tg_record *r = &g_tape.rec[i];
        if (r->aux) s[n++] = r->aux->storage;
        for (int k = 0; k < r->nin; k++)
            if (r->in[k] && !(r->in[k]->creator != 0 && r->in[k]->tape_epoch == g_tape.epoch)) leaf[m++] = r->in[k]->storage;
    }
    qsort(s, n, sizeof *s, cmp_ptr);
    qsort(leaf, m, sizeof *leaf, cmp_ptr);
    size_t b = 0;
    for (size_t i = 0, j = 0; i < n; i++) {
        if (i > 0 && s[i] == s[i - 1]) continue;
        while (j < m && (uintptr_t)leaf[j] < (uintptr_t)s[i]) j++;
        if (j < m && leaf[j] == s[i]) continue; /* a leaf's buffer, seen through a view */
        b += s[i]->capacity;
    }
    free(s);
    free(leaf);
    return b;
}

/* ---- freeing what no backward reads -------------------------------------------------------------- */

void tg_set_keep_results(bool on) { g_tape.keep_results = on; }
bool tg_keep_results(void) { return g_tape.keep_results; }

tg_tape_mark tg_tape_mark_here(void) {
    return (tg_tape_mark){.epoch = g_tape.epoch, .records = g_tape.n_rec, .tensors = g_tape.n_pool, .made = g_tape.n_made};
}

/* A buffer made since the mark: the result that made it; of the scope's pool tensors that view it, how
 * many (viewers), their references (refs) and how many of those the records hold (rec_refs); whether
 * something still needs its data. The storage points back at it through sweep_slot. */
typedef struct free_cand {
    tg_storage *s;
    const tg_tensor *maker;
    int viewers;
    long refs, rec_refs;
    bool keep;
} free_cand;
static free_cand *cand_of(free_cand *c, const tg_tensor *t) {
    return t && t->storage->sweep_slot ? &c[t->storage->sweep_slot - 1] : NULL;
}

/* Why it is safe: forward order is the only order in which a record can name a tensor, so after the
 * scope only keep[] (and what the caller holds a reference to) can still be read by a forward op, and a
 * backward reads exactly its TG_OP line's `saves` (tests/test_ops.c saves_are_all_backward_reads) and
 * aux. A storage is freed only when no record since the mark saves a tensor on it, no keep[] or aux
 * views it, and every tensor that views it is one of the scope's pool tensors holding no reference
 * beyond the tape's (pool + records): a tg_retain, a tg_detach or a view made outside the tape
 * (tg_reshape_view) keeps it. Headers stay, so shapes, names and gradients still work. */
size_t tg_tape_free_unsaved(tg_tape_mark since, int n, tg_tensor *const *keep) {
    if (n < 0 || (n > 0 && !keep)) {
        tg_error("tg_tape_free_unsaved", "%d tensors to keep given as %s", n, keep ? "a list" : "NULL");
        return 0;
    }
    if (g_tape.keep_results || since.epoch != g_tape.epoch || since.made >= g_tape.n_made ||
        since.records > g_tape.n_rec || since.tensors > g_tape.n_pool)
        return 0;
    size_t nc = g_tape.n_made - since.made, m = 0;
    if (nc >= UINT32_MAX) return 0;
    free_cand local[32], *c = nc <= 32 ? local : tg_malloc(nc * sizeof *c);
    if (!c) return 0; /* out of memory: nothing is freed early, which is always correct */
    for (size_t i = since.made; i < g_tape.n_made; i++) {
        const tg_tensor *t = g_tape.pool[g_tape.made[i]];
        if (!t->storage->data || t->storage->sweep_slot) continue;
        c[m] = (free_cand){.s = t->storage, .maker = t};
        t->storage->sweep_slot = (uint32_t)++m;
    }
    for (int i = 0; i < n; i++) {
        free_cand *f = keep[i] && keep[i]->magic == TG_ALIVE ? cand_of(c, keep[i]) : NULL;
        if (f) f->keep = true;
    }
    for (size_t j = since.records; j < g_tape.n_rec; j++) {
        const tg_record *r = &g_tape.rec[j];
        unsigned saves = tg_op_table[r->op].saves;
        free_cand *f;
        for (int k = 0; k < r->nin; k++)
            if ((f = cand_of(c, r->in[k]))) {
                f->rec_refs++;
                if (k < TG_SAVES_MAX_IN && (saves & (1u << k))) f->keep = true;
            }
        if ((f = cand_of(c, r->out))) {
            f->rec_refs++;
            if (saves & TG_SAVES_OUT) f->keep = true;
        }
        if ((f = cand_of(c, r->aux))) f->keep = true;
    }
    for (size_t p = since.tensors; p < g_tape.n_pool; p++) {
        free_cand *f = cand_of(c, g_tape.pool[p]);
        if (!f) continue;
        f->viewers++;
        f->refs += g_tape.pool[p]->refcount;
    }
    size_t freed = 0;
    for (size_t i = 0; i < m; i++) {
        c[i].s->sweep_slot = 0;
        /* a reference that is not the pool's or a record's (the caller's), or a view from outside */
        if (c[i].keep || c[i].refs > c[i].viewers + c[i].rec_refs || c[i].s->refcount > c[i].viewers) continue;
        const tg_record *r = tg__record_of(c[i].maker);
        freed += tg__storage_drop(c[i].s, r ? tg_op_table[r->op].name : "");
    }
    if (c != local) free(c);
    return freed;
}

static void tape_free(void) {
    tg_tape_reset();
    free(g_tape.rec);
    free(g_tape.pool);
    free(g_tape.made);
    g_tape.rec = NULL; g_tape.pool = NULL; g_tape.made = NULL;
    g_tape.cap_rec = g_tape.cap_pool = g_tape.cap_made = 0;
}
/* The tensor layer calls this at every thread exit, before it frees the pools. */
__attribute__((constructor)) static void tape_hook_install(void) { tg__set_thread_exit_hook(tape_free); }

void tg_no_grad_begin(void) { g_tape.no_grad++; }
void tg_no_grad_end(void) {
    if (g_tape.no_grad == 0) { tg_error("tg_no_grad_end", "called without a matching tg_no_grad_begin"); return; }
    g_tape.no_grad--;
}
bool tg_grad_enabled(void) { return g_tape.no_grad == 0; }

/* ---- leaves and gradients ----------------------------------------------------------------------- */

static bool is_live_record(const tg_tensor *t) {
    return t->creator != 0 && t->tape_epoch == g_tape.epoch && t->creator <= g_tape.n_rec &&
           g_tape.rec[t->creator - 1].out == t;
}

const tg_record *tg__record_of(const tg_tensor *t) {
    return t && is_live_record(t) ? &g_tape.rec[t->creator - 1] : NULL;
}

const tg_record *tg__tape_record(size_t i) { return i < g_tape.n_rec ? &g_tape.rec[i] : NULL; }

void tg_set_requires_grad(tg_tensor *t, bool on) {
    if (!tg__check_header("tg_set_requires_grad", "t", t)) return;
    if (is_live_record(t)) {
        tg_error("tg_set_requires_grad", "tensor %s is the result of %s, not a leaf (use tg_detach first)",
                 t->name, tg_op_table[g_tape.rec[t->creator - 1].op].name);
        return;
    }
    if (on && t->creator) t->creator = 0; /* a kept result from an old tape becomes a leaf */
    t->requires_grad = on;
}
bool tg_requires_grad(const tg_tensor *t) { return tg__check_header("tg_requires_grad", "t", t) && t->requires_grad; }
bool tg_is_leaf(const tg_tensor *t) { return tg__check_header("tg_is_leaf", "t", t) && !is_live_record(t); }
tg_tensor *tg_grad(const tg_tensor *t) { return tg__check_header("tg_grad", "t", t) ? t->grad : NULL; }
void tg_zero_grad(tg_tensor *t) {
    if (!tg__check_header("tg_zero_grad", "t", t)) return;
    tg_release(t->grad);
    t->grad = NULL;
}
void tg_retain_grad(tg_tensor *t) {
    if (tg__check_header("tg_retain_grad", "t", t)) t->retain_grad = true;
}

tg_tensor *tg__grad_buf(tg_tensor *t) {
    if (!t || !t->requires_grad) return NULL;
    if (!t->grad) {
        t->grad = tg__alloc(t->dtype, t->ndim, t->shape);
        if (t->grad) tg__pool_zero(tg__ptr(t->grad), (size_t)t->numel * tg_itemsize(t->dtype)); /* threads when large */
    }
    return t->grad;
}

tg_tensor *tg__grad_buf_assign(tg_tensor *t, bool *assign) {
    *assign = false;
    if (!t || !t->requires_grad) return NULL;
    if (!t->grad) {
        t->grad = tg__alloc(t->dtype, t->ndim, t->shape);
        *assign = t->grad != NULL;
    }
    return t->grad;
}

bool tg__grad_share(const tg_record *r, tg_tensor *t, const tg_tensor *g) {
    /* Why: a backward that would copy g whole into a new buffer (add, linear_add) can hand over g
     * instead; it is garbage the moment this record is done, unless the user asked to keep it. */
    if (!t || !t->requires_grad || t->grad || r->out->retain_grad || r->out->grad != g) return false;
    if (t->dtype != g->dtype || !tg_same_shape(t, g)) return false;
    t->grad = tg_retain((tg_tensor *)g);
    return true;
}

tg_tensor *tg_detach(const tg_tensor *t) {
    if (!tg__check("tg_detach", "t", t)) return NULL;
    tg_tensor *d = tg_reshape_view(t, t->ndim, t->shape);
    if (d) snprintf(d->name, sizeof d->name, "%s", t->name);
    return d;
}

/* ---- backward ----------------------------------------------------------------------------------- */

static bool stale(const tg_record *r, char *msg, size_t size) {
    const tg_op_info *info = &tg_op_table[r->op];
    char b[128];
    for (int i = 0; i < r->nin && i < TG_SAVES_MAX_IN; i++) {
        if (!(info->saves & (1u << i)) || !r->in[i]) continue;
        if (r->in[i]->storage->version != r->in_version[i]) {
            snprintf(msg, size,
                     "input %d%s%s%s %s of %s was modified in place after it was saved for backward "
                     "(version %llu, now %llu); compute gradients before updating it, or copy it",
                     i, r->in[i]->name[0] ? " '" : "", r->in[i]->name, r->in[i]->name[0] ? "'" : "",
                     tg_shape_str(r->in[i], b, sizeof b), info->name, (unsigned long long)r->in_version[i],
                     (unsigned long long)r->in[i]->storage->version);
            return true;
        }
    }
    if ((info->saves & TG_SAVES_OUT) && r->out->storage->version != r->out_version) {
        snprintf(msg, size,
                 "the output%s%s%s %s of %s was modified in place after it was saved for backward "
                 "(version %llu, now %llu)",
                 r->out->name[0] ? " '" : "", r->out->name, r->out->name[0] ? "'" : "",
                 tg_shape_str(r->out, b, sizeof b), info->name, (unsigned long long)r->out_version,
                 (unsigned long long)r->out->storage->version);
        return true;
    }
    return false;
}

int tg_backward_with(tg_tensor *out, const tg_tensor *grad_out) {
    if (!tg__check("tg_backward", "out", out) || !tg__check("tg_backward", "grad_out", grad_out)) return -1;
    char b1[128], b2[128];
    if (!tg_same_shape(out, grad_out) || out->dtype != grad_out->dtype) {
        tg_error("tg_backward", "output %s %s, upstream gradient %s %s: shapes or dtypes differ",
                 tg_shape_str(out, b1, sizeof b1), tg_dtype_name(out->dtype),
                 tg_shape_str(grad_out, b2, sizeof b2), tg_dtype_name(grad_out->dtype));
        return -1;
    }
    if (!out->requires_grad) {
        tg_error("tg_backward", "%s does not require grad: no input of the computation had requires_grad "
                 "(or it ran under no-grad, or the tape was reset)", tg_shape_str(out, b1, sizeof b1));
        return -1;
    }
    if (g_tape.anomaly && first_nonfinite(grad_out) >= 0) {
        tg_error("tg_backward", "anomaly: the upstream gradient %s holds a non-finite value",
                 tg_shape_str(grad_out, b1, sizeof b1));
        return -1;
    }
    if (g_tape.lost_record) {
        tg_error("tg_backward", "an op could not be recorded since the last tg_tape_reset (out of memory): "
                 "the gradients would be incomplete");
        return -1;
    }
    tg_tensor *g = tg__grad_buf(out);
    if (!g) return -1;
    tg_axpy_(g, 1.0, grad_out);
    if (!is_live_record(out)) return 0; /* a leaf: its gradient is the upstream gradient */

    int status = 0;
    char msg[512];
    /* a backward cannot return a status: one that failed (out of memory for a gradient) has reported
     * an error, and the gradients would be incomplete */
    const uint64_t errors_before = tg__error_count();
    tg__pack_scope_begin(); /* W_hh is packed once for all time steps (ops_matrix.c) */
    tg__defer_scope_begin(); /* and dW_hh is one GEMM over many time steps */
    for (size_t i = out->creator; i-- > 0;) {
        tg_record *r = &g_tape.rec[i];
        tg_tensor *o = r->out;
        tg__defer_flush_for(o); /* a non-leaf weight's staged dW is complete before its own backward */
        if (!o->grad) continue;
        if (status == 0 && stale(r, msg, sizeof msg)) {
            tg_error("tg_backward", "%s", msg);
            status = -1;
        }
        if (status == 0) tg_op_table[r->op].backward(r, o->grad);
        if (status == 0 && tg__error_count() != errors_before) status = -1;
        if (status == 0 && g_tape.anomaly) {
            for (int k = 0; k < r->nin && status == 0; k++) {
                const tg_tensor *x = r->in[k];
                int64_t at = x ? first_nonfinite(x->grad) : -1;
                if (at < 0) continue;
                char a[160], b[160];
                tg_error("tg_backward", "anomaly: the backward of %s (record %zu, output %s) gave input %d %s a "
                         "gradient with %g at element %lld%s", tg_op_table[r->op].name, i, describe(o, a, sizeof a),
                         k, describe(x, b, sizeof b), tg_get(x->grad, at), (long long)at,
                         first_nonfinite(o->grad) >= 0 ? " (its upstream gradient was already non-finite)"
                                                       : " from a finite upstream gradient");
                status = -1;
            }
        }
        if (!o->retain_grad) { tg_release(o->grad); o->grad = NULL; }
    }
    tg__defer_scope_end();
    tg__pack_scope_end();
    if (status == 0 && tg__error_count() != errors_before) status = -1; /* a deferred dW_hh GEMM */
    return status;
}

int tg_backward(tg_tensor *loss) {
    if (!tg__check("tg_backward", "loss", loss)) return -1;
    if (loss->numel != 1) {
        char b[128];
        tg_error("tg_backward", "loss %s has %lld elements; backward from a non-scalar needs "
                 "tg_backward_with and an upstream gradient", tg_shape_str(loss, b, sizeof b), (long long)loss->numel);
        return -1;
    }
    tg_tensor *one = tg_full(loss->dtype, loss->ndim, loss->shape, 1.0);
    int s = tg_backward_with(loss, one);
    tg_release(one);
    return s;
}

/* ---- tape dump ---------------------------------------------------------------------------------- */

void tg_tape_dump(FILE *f) {
    if (!f) f = stdout;
    fprintf(f, "tape: %zu records, %zu tensors, %.1f KB of buffers%s%s\n", g_tape.n_rec, g_tape.n_pool,
            (double)tg_tape_bytes() / 1024.0, g_tape.no_grad ? ", recording off (no-grad)" : "",
            g_tape.anomaly ? ", anomaly mode on" : "");
    char a[160];
    for (size_t i = 0; i < g_tape.n_rec; i++) {
        const tg_record *r = &g_tape.rec[i];
        fprintf(f, "  #%-5zu %-15s (", i, tg_op_table[r->op].name);
        for (int k = 0; k < r->nin; k++) {
            const tg_tensor *x = r->in[k];
            if (k) fputs(", ", f);
            if (!x) { fputs("-", f); continue; }
            fputs(describe(x, a, sizeof a), f);
            if (x->creator != 0 && x->tape_epoch == g_tape.epoch && x->creator <= g_tape.n_rec)
                fprintf(f, " <- #%llu", (unsigned long long)(x->creator - 1));
            else fputs(x->requires_grad ? " leaf" : " const", f);
        }
        fprintf(f, ") -> %s %s%s%s\n", describe(r->out, a, sizeof a), tg_dtype_name(r->out->dtype),
                r->out->storage->data ? "" : " (freed)", r->out->grad ? " (has grad)" : "");
    }
}
