/* tensor/tensor.c - storage pool, tensor headers, creation, views, element access, in-place writes.
 *
 * Memory: data buffers come from per-thread free lists by size class (64, 128, 256 B, then four classes
 * per octave: 320, 384, 448, 512, 640, ... B, so a buffer is at most 25 % larger than asked; with
 * power-of-two classes a GRU's input projection [T,B,3H] sat in a buffer 4/3 to 2x its size), 64-byte
 * aligned, so a steady-state training loop that frees and reallocates the same shapes every
 * step never reaches malloc. Tensor headers and storage headers are pooled the same way. Headers are
 * never returned to the system while the program runs, which is what makes the "argument was
 * released" check (magic == TG_DEAD) safe to perform.
 */
#include "tensor/internal.h"
#include "tensor/alloc.h"

#include <tapegrad/memory.h>

#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

/* ---- errors ------------------------------------------------------------------------------------- */

static _Thread_local char g_err[512];
static _Thread_local bool g_err_pending;
static _Thread_local uint64_t g_err_count; /* errors reported on this thread (tg__error_count) */
static tg_error_handler g_handler;
static void *g_handler_user;

void tg_set_error_handler(tg_error_handler handler, void *user) {
    g_handler = handler;
    g_handler_user = user;
}
const char *tg_last_error(void) { return g_err_pending ? g_err : ""; }
bool tg_error_pending(void) { return g_err_pending; }
void tg_clear_error(void) { g_err_pending = false; g_err[0] = 0; }
uint64_t tg__error_count(void) { return g_err_count; }

/* Every new error is reported (and replaces the message); only failures caused by a NULL that an
 * earlier failed op produced stay silent (see tg__check), so an expression fails with one message. */
static void verror(bool quiet, const char *fn, const char *fmt, va_list ap) {
    int n = snprintf(g_err, sizeof g_err, "%s: ", fn);
    if (n < 0) n = 0;
    if ((size_t)n < sizeof g_err) vsnprintf(g_err + n, sizeof g_err - (size_t)n, fmt, ap);
    g_err_pending = true;
    g_err_count++;
    if (quiet) return;
    if (g_handler) {
        g_handler(g_err, g_handler_user);
    } else {
        fprintf(stderr, "tapegrad error: %s\n", g_err);
        fflush(stderr);
        abort();
    }
}
void tg_error(const char *fn, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    verror(false, fn, fmt, ap);
    va_end(ap);
}
void tg_error_quiet(const char *fn, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    verror(true, fn, fmt, ap);
    va_end(ap);
}

/* ---- pools -------------------------------------------------------------------------------------- */

#define N_CLASSES 128 /* classes up to 512 GiB (2^39 B); larger buffers go straight to malloc and free */
typedef struct free_node { struct free_node *next; } free_node;
static _Thread_local free_node *g_buf_free[N_CLASSES];
/* Released headers, linked through their `storage` field so that `magic` stays readable. */
static _Thread_local tg_tensor *g_tensor_free;
static _Thread_local free_node *g_storage_free;
static atomic_long g_live;

/* Thread exit: release the thread's tape (autograd registers the hook), then its cached buffers and
 * headers, so a worker thread that used tapegrad leaves nothing behind. */
static void (*g_thread_exit_hook)(void);
static pthread_key_t g_exit_key;
static pthread_once_t g_exit_once = PTHREAD_ONCE_INIT;
static _Thread_local bool g_exit_armed;
static void thread_exit(void *arg);
static void make_exit_key(void) { pthread_key_create(&g_exit_key, thread_exit); }
static void arm_thread_exit(void) {
    if (g_exit_armed) return;
    g_exit_armed = true;
    pthread_once(&g_exit_once, make_exit_key);
    pthread_setspecific(g_exit_key, (void *)1);
}
void tg__set_thread_exit_hook(void (*fn)(void)) { g_thread_exit_hook = fn; }

/* The class of a buffer of `bytes` and its capacity *cap: 64, 128, 256 (classes 0-2), then for the octave
 * (b, 2b] with b >= 256 the four sizes b + m·b/4, m = 1..4 (multiples of 64, as aligned_alloc needs).
 * A capacity is its own class's size, so buf_put finds the class from it. */
static int size_class(size_t bytes, size_t *cap) {
    if (bytes <= 256) {
        size_t c = 64;
        int k = 0;
        while (c < bytes) { c <<= 1; k++; }
        *cap = c;
        return k;
    }
    size_t b = 256;
    int k = 2;
    while (b < bytes / 2 + bytes % 2) { b <<= 1; k += 4; } /* b < bytes <= 2b */
    size_t step = b / 4, m = (bytes - b + step - 1) / step;
    *cap = b + m * step;
    return k + (int)m;
}

static void *buf_get(size_t bytes, size_t *cap) {
    arm_thread_exit();
    int k = size_class(bytes, cap);
    if (k < N_CLASSES && g_buf_free[k]) {
        free_node *n = g_buf_free[k];
        g_buf_free[k] = n->next;
        return n;
    }
    return tg_aligned_alloc(64, *cap);
}
static void buf_put(void *p, size_t cap) {
    size_t c2;
    int k = size_class(cap, &c2);
    if (k >= N_CLASSES) { free(p); return; }
    free_node *n = p;
    n->next = g_buf_free[k];
    g_buf_free[k] = n;
}

void *tg__scratch_get(size_t bytes, size_t *cap) { return buf_get(bytes ? bytes : 1, cap); }
void tg__scratch_put(void *p, size_t cap) { if (p) buf_put(p, cap); }

void tg_pool_trim(void) {
    for (int k = 0; k < N_CLASSES; k++)
        while (g_buf_free[k]) { free_node *n = g_buf_free[k]; g_buf_free[k] = n->next; free(n); }
    /* Headers are kept: see the comment at the top (released-tensor detection). Storage headers can
     * go, they are never inspected after release. */
    while (g_storage_free) { free_node *n = g_storage_free; g_storage_free = n->next; free(n); }
}

static tg_storage *storage_new(size_t bytes) {
    tg_storage *s;
    if (g_storage_free) { s = (tg_storage *)(void *)g_storage_free; g_storage_free = g_storage_free->next; }
    else s = tg_malloc(sizeof *s);
    if (!s) return NULL;
    s->data = buf_get(bytes ? bytes : 1, &s->capacity);
    if (!s->data) { free(s); return NULL; }
    s->refcount = 1;
    s->version = 0;
    s->saved_lo = s->saved_hi = 0;
    s->freed_by = NULL;
    s->sweep_slot = 0;
    return s;
}
size_t tg__storage_drop(tg_storage *s, const char *by) {
    if (!s->data) return 0;
    size_t cap = s->capacity;
    buf_put(s->data, cap);
    s->data = NULL;
    s->capacity = 0;
    s->freed_by = by ? by : "";
    return cap;
}
static void storage_release(tg_storage *s) {
    if (--s->refcount > 0) return;
    if (s->data) buf_put(s->data, s->capacity);
    free_node *n = (free_node *)(void *)s;
    n->next = g_storage_free;
    g_storage_free = n;
}

static tg_tensor *header_new(void) {
    tg_tensor *t;
    if (g_tensor_free) { t = g_tensor_free; g_tensor_free = (tg_tensor *)(void *)t->storage; }
    else t = tg_malloc(sizeof *t);
    if (!t) return NULL;
    memset(t, 0, sizeof *t);
    t->magic = TG_ALIVE;
    t->refcount = 1;
    atomic_fetch_add(&g_live, 1);
    return t;
}

/* Returns a header that never became a tensor (its storage failed) to the pool, uncounted. */
static void header_free(tg_tensor *t) {
    t->magic = TG_DEAD;
    t->storage = (tg_storage *)(void *)g_tensor_free;
    g_tensor_free = t;
    atomic_fetch_sub(&g_live, 1);
}

long tg_live_tensors(void) { return atomic_load(&g_live); }

/* ---- shapes ------------------------------------------------------------------------------------- */

char *tg__shape_fmt(int ndim, const int64_t *shape, char *buf, size_t size) {
    size_t n = 0;
    if (size == 0) return buf;
    n += (size_t)snprintf(buf + n, size - n, "[");
    for (int i = 0; i < ndim && n < size; i++)
        n += (size_t)snprintf(buf + n, size - n, i ? ",%lld" : "%lld", (long long)shape[i]);
    if (n < size) snprintf(buf + n, size - n, "]");
    return buf;
}
char *tg_shape_str(const tg_tensor *t, char *buf, size_t size) {
    if (!t) { snprintf(buf, size, "(null)"); return buf; }
    return tg__shape_fmt(t->ndim, t->shape, buf, size);
}

bool tg__check_shape(const char *fn, int ndim, const int64_t *shape) {
    if (ndim < 0 || ndim > TG_MAX_DIMS) {
        tg_error(fn, "%d dimensions requested; tensors have 0..%d", ndim, TG_MAX_DIMS);
        return false;
    }
    if (ndim > 0 && !shape) { tg_error(fn, "shape is NULL"); return false; }
    int64_t n = 1;
    for (int i = 0; i < ndim; i++) {
        if (shape[i] < 0) {
            char b[128];
            tg_error(fn, "shape %s: dimension %d is negative", tg__shape_fmt(ndim, shape, b, sizeof b), i);
            return false;
        }
        if (shape[i] && n > INT64_MAX / 16 / shape[i]) {
            char b[128];
            tg_error(fn, "shape %s: too many elements", tg__shape_fmt(ndim, shape, b, sizeof b));
            return false;
        }
        n *= shape[i];
    }
    return true;
}

static inline bool check_alive(const char *fn, const char *argname, const tg_tensor *t) {
    if (!t) {
        /* A NULL produced by an earlier failed op keeps that op's message. */
        if (!g_err_pending) tg_error(fn, "argument %s is NULL", argname);
        return false;
    }
    if (t->magic != TG_ALIVE) {
        tg_error(fn, "argument %s was released (use after tg_release or tg_tape_reset)", argname);
        return false;
    }
    return true;
}

bool tg__check_header(const char *fn, const char *argname, const tg_tensor *t) { return check_alive(fn, argname, t); }

/* A read of data the tape freed early (autograd/tape.c tg_tape_free_unsaved); kept out of tg__check, which
 * every op calls for every argument. */
static __attribute__((noinline, cold)) bool refuse_freed(const char *fn, const char *argname, const tg_tensor *t) {
    char b[128];
    const char *by = t->storage->freed_by;
    tg_error(fn, "argument %s %s%s%s%s (%s%s) was freed by the tape because no backward needs it: it was made inside "
             "a step (or a tg_tape_free_unsaved scope) that has ended; to read it later, tg_retain it before the "
             "step returns (and tg_release it after), or call tg_set_keep_results(true)",
             argname, tg__shape_fmt(t->ndim, t->shape, b, sizeof b), t->name[0] ? " '" : "", t->name,
             t->name[0] ? "'" : "", by && by[0] ? "the result of " : "an op result", by ? by : "");
    return false;
}

bool tg__check(const char *fn, const char *argname, const tg_tensor *t) {
    if (!check_alive(fn, argname, t)) return false;
    if (!t->storage->data) return refuse_freed(fn, argname, t);
    return true;
}

tg_tensor *tg__alloc(tg_dtype dtype, int ndim, const int64_t *shape) {
    int64_t n = 1;
    for (int i = 0; i < ndim; i++) n *= shape[i];
    size_t bytes = (size_t)n * tg_itemsize(dtype);
    /* Refuse what cannot fit before asking for it: with overcommit, a huge buffer may be granted and
     * the process killed when it is touched. Checked only for large buffers (reads /proc). */
    if (bytes > ((size_t)1 << 30)) {
        char src[32], need[24], have[24], sh[128];
        double avail = tg_mem_available(src, sizeof src);
        if ((double)bytes > avail) {
            tg_error("tg_empty", "%s %s needs %s, more than the %s available (%s)", tg__shape_fmt(ndim, shape, sh, sizeof sh),
                     tg_dtype_name(dtype), tg_mem_format((double)bytes, need, sizeof need),
                     tg_mem_format(avail, have, sizeof have), src);
            return NULL;
        }
    }
    tg_tensor *t = header_new();
    if (!t) { tg_error("tg_empty", "out of memory for a tensor header"); return NULL; }
    t->storage = storage_new(bytes);
    if (!t->storage) {
        char need[24], sh[128];
        tg_error("tg_empty", "out of memory for %s %s (%s)", tg__shape_fmt(ndim, shape, sh, sizeof sh), tg_dtype_name(dtype),
                 tg_mem_format((double)bytes, need, sizeof need));
        header_free(t);
        return NULL;
    }
    t->dtype = dtype;
    t->ndim = ndim;
    for (int i = 0; i < ndim; i++) t->shape[i] = shape[i];
    t->numel = n;
    return t;
}

/* ---- lifetime ----------------------------------------------------------------------------------- */

tg_tensor *tg_retain(tg_tensor *t) {
    if (t && tg__check_header("tg_retain", "t", t)) t->refcount++;
    return t;
}

void tg_release(tg_tensor *t) {
    if (!t) return;
    if (t->magic != TG_ALIVE) { tg_error("tg_release", "tensor released twice"); return; }
    if (--t->refcount > 0) return;
    tg_release(t->grad);
    storage_release(t->storage);
    t->magic = TG_DEAD;
    atomic_fetch_sub(&g_live, 1);
    t->storage = (tg_storage *)(void *)g_tensor_free;
    g_tensor_free = t;
}

/* ---- creation ----------------------------------------------------------------------------------- */

static bool check_dtype(const char *fn, tg_dtype dtype) {
    if (dtype != TG_F32 && dtype != TG_F64) {
        tg_error(fn, "unknown dtype %d (TG_F32 or TG_F64)", (int)dtype);
        return false;
    }
    return true;
}

size_t tg_itemsize(tg_dtype dtype) { return dtype == TG_F64 ? 8 : 4; }
const char *tg_dtype_name(tg_dtype dtype) { return dtype == TG_F64 ? "F64" : "F32"; }

tg_tensor *tg_empty(tg_dtype dtype, int ndim, const int64_t *shape) {
    if (!check_dtype("tg_empty", dtype) || !tg__check_shape("tg_empty", ndim, shape)) return NULL;
    return tg__alloc(dtype, ndim, shape);
}

tg_tensor *tg_full(tg_dtype dtype, int ndim, const int64_t *shape, double value) {
    if (!check_dtype("tg_full", dtype) || !tg__check_shape("tg_full", ndim, shape)) return NULL;
    tg_tensor *t = tg__alloc(dtype, ndim, shape);
    if (t) tg_fill_(t, value);
    if (t) t->storage->version = 0;
    return t;
}
tg_tensor *tg_zeros(tg_dtype dtype, int ndim, const int64_t *shape) {
    return tg_full(dtype, ndim, shape, 0.0);
}
tg_tensor *tg_ones(tg_dtype dtype, int ndim, const int64_t *shape) {
    return tg_full(dtype, ndim, shape, 1.0);
}
tg_tensor *tg_scalar(tg_dtype dtype, double value) { return tg_full(dtype, 0, NULL, value); }
tg_tensor *tg_zeros_like(const tg_tensor *t) {
    if (!tg__check("tg_zeros_like", "t", t)) return NULL;
    return tg_zeros(t->dtype, t->ndim, t->shape);
}

tg_tensor *tg_arange(tg_dtype dtype, double start, double stop, double step) {
    if (!(step != 0) || !isfinite(start) || !isfinite(stop) || !isfinite(step)) {
        tg_error("tg_arange", "start %g, stop %g, step %g: step must be finite and non-zero", start, stop, step);
        return NULL;
    }
    double nn = ceil((stop - start) / step);
    if (nn < 0) nn = 0;
    if (nn > 1e12) { tg_error("tg_arange", "%g elements requested", nn); return NULL; }
    int64_t n = (int64_t)nn;
    tg_tensor *t = tg_empty(dtype, 1, &n);
    if (!t) return NULL;
    TG_DISPATCH(dtype, T *p = TG_PTR(t, T); for (int64_t i = 0; i < n; i++) p[i] = (T)(start + (double)i * step););
    return t;
}

tg_tensor *tg_from_array(tg_dtype dtype, int ndim, const int64_t *shape, const void *data) {
    tg_tensor *t = tg_empty(dtype, ndim, shape);
    if (!t) return NULL;
    if (!data && t->numel) { tg_release(t); tg_error("tg_from_array", "data is NULL"); return NULL; }
    if (t->numel) memcpy(tg__ptr(t), data, (size_t)t->numel * tg_itemsize(dtype));
    return t;
}

tg_tensor *tg_from_f64(tg_dtype dtype, int ndim, const int64_t *shape, const double *data) {
    tg_tensor *t = tg_empty(dtype, ndim, shape);
    if (!t) return NULL;
    if (!data && t->numel) { tg_release(t); tg_error("tg_from_f64", "data is NULL"); return NULL; }
    TG_DISPATCH(dtype, T *p = TG_PTR(t, T); for (int64_t i = 0; i < t->numel; i++) p[i] = (T)data[i];);
    return t;
}

tg_tensor *tg_to_dtype(const tg_tensor *t, tg_dtype dtype) {
    if (!tg__check("tg_to_dtype", "t", t) || !check_dtype("tg_to_dtype", dtype)) return NULL;
    tg_tensor *r = tg__alloc(dtype, t->ndim, t->shape);
    if (!r) return NULL;
    tg_copy_(r, t);
    r->storage->version = 0;
    return r;
}
tg_tensor *tg_copy(const tg_tensor *t) {
    if (!tg__check("tg_copy", "t", t)) return NULL;
    return tg_to_dtype(t, t->dtype);
}

static tg_tensor *view_of(const tg_tensor *t, int ndim, const int64_t *shape, int64_t offset) {
    tg_tensor *v = header_new();
    if (!v) return NULL;
    v->dtype = t->dtype;
    v->ndim = ndim;
    v->numel = 1;
    for (int i = 0; i < ndim; i++) { v->shape[i] = shape[i]; v->numel *= shape[i]; }
    v->storage = t->storage;
    v->storage->refcount++;
    v->offset = t->offset + offset;
    return v;
}

tg_tensor *tg_view_at(const tg_tensor *t, int64_t index) {
    if (!tg__check("tg_view_at", "t", t)) return NULL;
    char b[128];
    if (t->ndim < 1) { tg_error("tg_view_at", "%s: a 0-d tensor has no first axis", tg_shape_str(t, b, sizeof b)); return NULL; }
    if (index < 0 || index >= t->shape[0]) {
        tg_error("tg_view_at", "%s: index %lld out of range [0,%lld)", tg_shape_str(t, b, sizeof b),
                 (long long)index, (long long)t->shape[0]);
        return NULL;
    }
    int64_t inner = t->shape[0] ? t->numel / t->shape[0] : 0;
    return view_of(t, t->ndim - 1, t->shape + 1, index * inner);
}

tg_tensor *tg_view_range(const tg_tensor *t, int64_t begin, int64_t end) {
    if (!tg__check("tg_view_range", "t", t)) return NULL;
    char b[128];
    if (t->ndim < 1 || begin < 0 || end < begin || end > t->shape[0]) {
        tg_error("tg_view_range", "%s: range [%lld,%lld) invalid on the first axis", tg_shape_str(t, b, sizeof b),
                 (long long)begin, (long long)end);
        return NULL;
    }
    int64_t shape[TG_MAX_DIMS];
    memcpy(shape, t->shape, sizeof shape);
    shape[0] = end - begin;
    int64_t inner = 1;
    for (int i = 1; i < t->ndim; i++) inner *= t->shape[i];
    return view_of(t, t->ndim, shape, begin * inner);
}

tg_tensor *tg_reshape_view(const tg_tensor *t, int ndim, const int64_t *shape) {
    if (!tg__check("tg_reshape_view", "t", t)) return NULL;
    if (ndim < 0 || ndim > TG_MAX_DIMS || (ndim && !shape)) {
        tg_error("tg_reshape_view", "invalid target of %d dimensions", ndim);
        return NULL;
    }
    int64_t s[TG_MAX_DIMS];
    int infer = -1;
    int64_t known = 1;
    char b1[128], b2[128];
    for (int i = 0; i < ndim; i++) {
        s[i] = shape[i];
        if (s[i] == -1 && infer < 0) { infer = i; continue; }
        if (s[i] < 0) {
            tg_error("tg_reshape_view", "%s -> %s: invalid dimension", tg_shape_str(t, b1, sizeof b1),
                     tg__shape_fmt(ndim, shape, b2, sizeof b2));
            return NULL;
        }
        known *= s[i];
    }
    if (infer >= 0) s[infer] = known ? t->numel / known : 0;
    int64_t n = 1;
    for (int i = 0; i < ndim; i++) n *= s[i];
    if (n != t->numel) {
        tg_error("tg_reshape_view", "%s -> %s: element counts differ (%lld vs %lld)", tg_shape_str(t, b1, sizeof b1),
                 tg__shape_fmt(ndim, shape, b2, sizeof b2), (long long)t->numel, (long long)n);
        return NULL;
    }
    return view_of(t, ndim, s, 0);
}

/* ---- inspection --------------------------------------------------------------------------------- */

int tg_ndim(const tg_tensor *t) { return tg__check_header("tg_ndim", "t", t) ? t->ndim : -1; }
int64_t tg_dim(const tg_tensor *t, int axis) {
    if (!tg__check_header("tg_dim", "t", t)) return -1;
    int a = axis < 0 ? axis + t->ndim : axis;
    if (a < 0 || a >= t->ndim) {
        char b[128];
        tg_error("tg_dim", "%s: axis %d out of range", tg_shape_str(t, b, sizeof b), axis);
        return -1;
    }
    return t->shape[a];
}
const int64_t *tg_shape(const tg_tensor *t) { return tg__check_header("tg_shape", "t", t) ? t->shape : NULL; }
int64_t tg_numel(const tg_tensor *t) { return tg__check_header("tg_numel", "t", t) ? t->numel : 0; }
tg_dtype tg_dtype_of(const tg_tensor *t) { return tg__check_header("tg_dtype_of", "t", t) ? t->dtype : TG_F64; }
void *tg_data(tg_tensor *t) { return tg__check("tg_data", "t", t) ? tg__ptr(t) : NULL; }
const void *tg_cdata(const tg_tensor *t) { return tg__check("tg_cdata", "t", t) ? tg__ptr(t) : NULL; }
float *tg_f32(tg_tensor *t) {
    if (!tg__check("tg_f32", "t", t)) return NULL;
    if (t->dtype != TG_F32) { tg_error("tg_f32", "tensor is %s, not F32", tg_dtype_name(t->dtype)); return NULL; }
    return TG_PTR(t, float);
}
double *tg_f64(tg_tensor *t) {
    if (!tg__check("tg_f64", "t", t)) return NULL;
    if (t->dtype != TG_F64) { tg_error("tg_f64", "tensor is %s, not F64", tg_dtype_name(t->dtype)); return NULL; }
    return TG_PTR(t, double);
}
double tg_get(const tg_tensor *t, int64_t i) {
    if (!tg__check("tg_get", "t", t)) return NAN;
    if (i < 0 || i >= t->numel) {
        char b[128];
        tg_error("tg_get", "%s: flat index %lld out of range", tg_shape_str(t, b, sizeof b), (long long)i);
        return NAN;
    }
    return t->dtype == TG_F32 ? (double)TG_PTR(t, float)[i] : TG_PTR(t, double)[i];
}
double tg_item(const tg_tensor *t) {
    if (!tg__check("tg_item", "t", t)) return NAN;
    if (t->numel != 1) {
        char b[128];
        tg_error("tg_item", "%s: tensor has %lld elements, not 1", tg_shape_str(t, b, sizeof b), (long long)t->numel);
        return NAN;
    }
    return tg_get(t, 0);
}
bool tg_same_shape(const tg_tensor *a, const tg_tensor *b) {
    if (!a || !b || a->ndim != b->ndim) return false;
    for (int i = 0; i < a->ndim; i++)
        if (a->shape[i] != b->shape[i]) return false;
    return true;
}
bool tg_shares_storage(const tg_tensor *a, const tg_tensor *b) { return a && b && a->storage == b->storage; }
uint64_t tg_version(const tg_tensor *t) { return tg__check_header("tg_version", "t", t) ? t->storage->version : 0; }
void tg_set_name(tg_tensor *t, const char *name) {
    if (!tg__check_header("tg_set_name", "t", t)) return;
    snprintf(t->name, sizeof t->name, "%s", name ? name : "");
}
const char *tg_name(const tg_tensor *t) { return t ? t->name : ""; }

/* ---- in-place writes ---------------------------------------------------------------------------- */

void tg_bump_version(tg_tensor *t) {
    if (tg__check("tg_bump_version", "t", t)) t->storage->version++;
}
void tg_set(tg_tensor *t, int64_t i, double v) {
    if (!tg__check("tg_set", "t", t)) return;
    if (i < 0 || i >= t->numel) {
        char b[128];
        tg_error("tg_set", "%s: flat index %lld out of range", tg_shape_str(t, b, sizeof b), (long long)i);
        return;
    }
    if (t->dtype == TG_F32) TG_PTR(t, float)[i] = (float)v;
    else TG_PTR(t, double)[i] = v;
    t->storage->version++;
}
void tg_fill_(tg_tensor *t, double v) {
    if (!tg__check("tg_fill_", "t", t)) return;
    TG_DISPATCH(t->dtype, T *p = TG_PTR(t, T); T x = (T)v; for (int64_t i = 0; i < t->numel; i++) p[i] = x;);
    t->storage->version++;
}
void tg_zero_(tg_tensor *t) {
    if (!tg__check("tg_zero_", "t", t)) return;
    memset(tg__ptr(t), 0, (size_t)t->numel * tg_itemsize(t->dtype));
    t->storage->version++;
}
int tg_copy_(tg_tensor *dst, const tg_tensor *src) {
    if (!tg__check("tg_copy_", "dst", dst) || !tg__check("tg_copy_", "src", src)) return -1;
    if (dst->numel != src->numel) {
        char b1[128], b2[128];
        tg_error("tg_copy_", "dst %s, src %s: element counts differ", tg_shape_str(dst, b1, sizeof b1),
                 tg_shape_str(src, b2, sizeof b2));
        return -1;
    }
    int64_t n = src->numel;
    if (dst->dtype == src->dtype) memmove(tg__ptr(dst), tg__ptr(src), (size_t)n * tg_itemsize(src->dtype));
    else if (dst->dtype == TG_F32) {
        float *d = TG_PTR(dst, float);
        const double *s = TG_PTR(src, double);
        for (int64_t i = 0; i < n; i++) d[i] = (float)s[i];
    } else {
        double *d = TG_PTR(dst, double);
        const float *s = TG_PTR(src, float);
        for (int64_t i = 0; i < n; i++) d[i] = s[i];
    }
    dst->storage->version++;
    return 0;
}
void tg_axpy_(tg_tensor *y, double alpha, const tg_tensor *x) {
    if (!tg__check("tg_axpy_", "y", y) || !tg__check("tg_axpy_", "x", x)) return;
    if (y->numel != x->numel || y->dtype != x->dtype) {
        char b1[128], b2[128];
        tg_error("tg_axpy_", "y %s %s, x %s %s: element counts or dtypes differ", tg_shape_str(y, b1, sizeof b1),
                 tg_dtype_name(y->dtype), tg_shape_str(x, b2, sizeof b2), tg_dtype_name(x->dtype));
        return;
    }
    TG_DISPATCH(y->dtype, T *py = TG_PTR(y, T); const T *px = TG_PTR(x, T); T a = (T)alpha;
                for (int64_t i = 0; i < y->numel; i++) py[i] += a * px[i];);
    y->storage->version++;
}
void tg_scale_(tg_tensor *t, double alpha) {
    if (!tg__check("tg_scale_", "t", t)) return;
    TG_DISPATCH(t->dtype, T *p = TG_PTR(t, T); T a = (T)alpha; for (int64_t i = 0; i < t->numel; i++) p[i] *= a;);
    t->storage->version++;
}

static void free_thread_pools(void) {
    tg_pool_trim();
    while (g_tensor_free) {
        tg_tensor *t = g_tensor_free;
        g_tensor_free = (tg_tensor *)(void *)t->storage;
        free(t);
    }
}

static void thread_exit(void *arg) {
    (void)arg;
    if (g_thread_exit_hook) g_thread_exit_hook();
    free_thread_pools();
}

/* At exit, hand the main thread's tape, cached buffers and headers back so that leak checkers see
 * nothing outstanding but what the program itself still holds. */
__attribute__((destructor)) static void pools_at_exit(void) { thread_exit(NULL); }
