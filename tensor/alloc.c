/* tensor/alloc.c - the library's allocation entry point and its fault-injection hook (tensor/alloc.h). */
#include "tensor/alloc.h"

#include <errno.h>
#include <stdatomic.h>
#include <string.h>

static _Atomic int64_t g_fail_at = -1;   /* < 0: hook off */
static _Atomic int64_t g_count;          /* allocations counted since tg__alloc_fail_at */
static _Atomic int64_t g_failures;
static _Atomic bool g_persist;
static const char *_Atomic g_failed_site;

void tg__alloc_fail_at(int64_t n, bool persist) {
    atomic_store(&g_fail_at, -1);
    atomic_store(&g_count, 0);
    atomic_store(&g_failures, 0);
    atomic_store(&g_persist, persist);
    atomic_store(&g_failed_site, (const char *)NULL);
    atomic_store(&g_fail_at, n);
}
int64_t tg__alloc_count(void) { return atomic_load(&g_count); }
int64_t tg__alloc_failures(void) { return atomic_load(&g_failures); }
const char *tg__alloc_failed_site(void) { return atomic_load(&g_failed_site); }

/* true: this allocation must fail. */
static bool injected(const char *site) {
    int64_t at = atomic_load_explicit(&g_fail_at, memory_order_relaxed);
    if (at < 0) return false;
    int64_t k = atomic_fetch_add(&g_count, 1);
    if (k < at || (k > at && !atomic_load(&g_persist))) return false;
    if (atomic_fetch_add(&g_failures, 1) == 0) atomic_store(&g_failed_site, site);
    return true;
}

void *tg__malloc(size_t n, const char *site) { return injected(site) ? NULL : malloc(n); }
void *tg__calloc(size_t n, size_t size, const char *site) { return injected(site) ? NULL : calloc(n, size); }
void *tg__realloc(void *p, size_t n, const char *site) { return injected(site) ? NULL : realloc(p, n); }
void *tg__aligned_alloc(size_t align, size_t n, const char *site) {
    return injected(site) ? NULL : aligned_alloc(align, n);
}
char *tg__strdup(const char *s, const char *site) { return injected(site) ? NULL : strdup(s); }
char *tg__strndup(const char *s, size_t n, const char *site) { return injected(site) ? NULL : strndup(s, n); }
char *tg__realpath(const char *path, const char *site) {
    if (injected(site)) { errno = ENOMEM; return NULL; }
    return realpath(path, NULL);
}

static _Atomic int64_t g_io_fail_at[TG_IO_OPS] = {-1, -1, -1, -1};
static _Atomic int64_t g_io_count[TG_IO_OPS];
static _Atomic int g_io_errno[TG_IO_OPS];
_Static_assert(TG_IO_OPS == 4, "one initialiser per I/O op");

void tg__io_fail_at(tg_io_op op, int64_t n, int err) {
    atomic_store(&g_io_fail_at[op], -1);
    atomic_store(&g_io_count[op], 0);
    atomic_store(&g_io_errno[op], err);
    atomic_store(&g_io_fail_at[op], n);
}
int64_t tg__io_count(tg_io_op op) { return atomic_load(&g_io_count[op]); }
bool tg__io_injected(tg_io_op op) {
    int64_t at = atomic_load_explicit(&g_io_fail_at[op], memory_order_relaxed);
    if (at < 0) return false;
    if (atomic_fetch_add(&g_io_count[op], 1) != at) return false;
    errno = atomic_load(&g_io_errno[op]);
    return true;
}
