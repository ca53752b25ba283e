/* tensor/internal.h - the tensor header and storage layout, shared by tensor/ and autograd/.
 * Not installed: users go through the accessor functions of <tapegrad/tensor.h>. */
#ifndef TG_INTERNAL_H
#define TG_INTERNAL_H
#include <stdatomic.h>
#include <tapegrad/tensor.h>

#define TG_ALIVE 0x7467616cu /* "tgal": header in use */
#define TG_DEAD 0x64656164u  /* "dead": header released (kept in a pool, so reading it is safe) */

typedef struct tg_storage {
    void *data;        /* 64-byte aligned, capacity bytes, from the size-class pool */
    size_t capacity;   /* bytes actually allocated (the size class) */
    int refcount;      /* views and the base share one storage */
    uint64_t version;  /* bumped by every in-place write; saved tensors remember it */
    int64_t saved_lo, saved_hi; /* hull [lo, hi) of the elements records saved (tg__write_over); empty: hi <= lo */
    const char *freed_by; /* NULL, or the data was given back early by the tape (tg__storage_drop): data is
                           * NULL and this names the op that made it ("" unknown), for the message */
    uint32_t sweep_slot;  /* while tg_tape_free_unsaved runs: 1 + this buffer's index in its list; else 0 */
} tg_storage;

struct tg_tensor {
    uint32_t magic;            /* TG_ALIVE or TG_DEAD */
    int refcount;
    tg_dtype dtype;
    int ndim;
    int64_t shape[TG_MAX_DIMS];
    int64_t numel;
    tg_storage *storage;       /* owned reference */
    int64_t offset;            /* in elements, into storage->data */
    bool requires_grad;
    bool retain_grad;          /* keep the gradient of a non-leaf after backward */
    tg_tensor *grad;           /* owned; same shape and dtype; NULL until first accumulation */
    uint64_t creator;          /* index+1 of the tape record that produced this tensor (0: leaf) */
    uint64_t tape_epoch;       /* tape epoch in which `creator` is valid */
    char name[48];
};

static inline void *tg__ptr(const tg_tensor *t) {
    return (char *)t->storage->data + (size_t)t->offset * tg_itemsize(t->dtype);
}
#define TG_PTR(t, T) ((T *)tg__ptr(t))

/* Run the statement block twice-instantiated: once with T = float, once with T = double. */
#define TG_DISPATCH(dt, ...)                                                  \
    do {                                                                      \
        if ((dt) == TG_F32) { typedef float T; __VA_ARGS__ }                  \
        else { typedef double T; __VA_ARGS__ }                                \
    } while (0)

/* New tensor with uninitialised data (no checks: the shape was validated by the caller). */
tg_tensor *tg__alloc(tg_dtype dtype, int ndim, const int64_t *shape);
/* Raw scratch memory from this thread's buffer pool (64-byte aligned, uninitialised; NULL when out of
 * memory, with no error reported): for buffers that live for one pass and are needed again by the next
 * (the staged dW rows of a backward), which malloc + free would fault in afresh every time. Give it back
 * with tg__scratch_put(p, *cap) on the same thread. */
void *tg__scratch_get(size_t bytes, size_t *cap);
void tg__scratch_put(void *p, size_t cap);
/* Validates a tensor argument: NULL, released. Reports "<fn>: argument <argname> ..." and returns false. */
bool tg__check(const char *fn, const char *argname, const tg_tensor *t);
/* The same for a function that reads only the header (shape, dtype, name, grad, refcount), which also
 * works on a result whose data the tape freed early. */
bool tg__check_header(const char *fn, const char *argname, const tg_tensor *t);
/* Gives the storage's buffer back to the pool now, though tensors still view it (autograd/tape.c, for
 * results no backward reads): data becomes NULL, capacity 0, and tg__check refuses every later read,
 * naming `by` (the op that made it; "" unknown). Returns the bytes given back. */
size_t tg__storage_drop(tg_storage *s, const char *by);
/* Shape check of user-given shapes; reports and returns false. */
bool tg__check_shape(const char *fn, int ndim, const int64_t *shape);
/* Called on every thread's exit (and at process exit) before its pools are freed. */
void tg__set_thread_exit_hook(void (*fn)(void));
/* Errors reported on the calling thread so far (tg_error and tg_error_quiet): a caller that runs code
 * which cannot return a status (an op's backward) sees whether it failed. */
uint64_t tg__error_count(void);
char *tg__shape_fmt(int ndim, const int64_t *shape, char *buf, size_t size);
#endif
