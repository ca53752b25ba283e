/* tensor/rng.c - xoshiro256** seeded by splitmix64: the same numbers on every platform.
 * Uniform doubles take the top 53 bits; normals use Box-Muller with the spare value cached. */
#include "tensor/internal.h"

#include <math.h>

static uint64_t splitmix64(uint64_t *x) {
    uint64_t z = (*x += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}
static inline uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

void tg_rng_seed(tg_rng *rng, uint64_t seed) {
    uint64_t x = seed;
    for (int i = 0; i < 4; i++) rng->s[i] = splitmix64(&x);
    rng->has_spare = 0;
    rng->spare = 0;
}

uint64_t tg_rng_u64(tg_rng *rng) {
    uint64_t *s = rng->s;
    uint64_t result = rotl(s[1] * 5, 7) * 9;
    uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return result;
}

double tg_rng_uniform(tg_rng *rng) { return (double)(tg_rng_u64(rng) >> 11) * 0x1.0p-53; }

double tg_rng_normal(tg_rng *rng) {
    if (rng->has_spare) { rng->has_spare = 0; return rng->spare; }
    double u1 = 1.0 - tg_rng_uniform(rng); /* (0, 1]: log is finite */
    double u2 = tg_rng_uniform(rng);
    double r = sqrt(-2.0 * log(u1));
    double th = 6.283185307179586 * u2;
    rng->spare = r * sin(th);
    rng->has_spare = 1;
    return r * cos(th);
}

uint64_t tg_rng_below(tg_rng *rng, uint64_t n) {
    if (n == 0) return 0;
    uint64_t limit = UINT64_MAX - UINT64_MAX % n; /* reject the uneven tail: no modulo bias */
    uint64_t x;
    do x = tg_rng_u64(rng); while (x >= limit);
    return x % n;
}

static _Thread_local tg_rng g_rng;
static _Thread_local int g_rng_ready;
tg_rng *tg_default_rng(void) {
    if (!g_rng_ready) { tg_rng_seed(&g_rng, 0); g_rng_ready = 1; }
    return &g_rng;
}
void tg_manual_seed(uint64_t seed) { tg_rng_seed(&g_rng, seed); g_rng_ready = 1; }

void tg_uniform_(tg_rng *rng, tg_tensor *t, double lo, double hi) {
    if (!tg__check("tg_uniform_", "t", t)) return;
    if (!rng) rng = tg_default_rng();
    TG_DISPATCH(t->dtype, T *p = TG_PTR(t, T);
                for (int64_t i = 0; i < t->numel; i++) p[i] = (T)(lo + (hi - lo) * tg_rng_uniform(rng)););
    tg_bump_version(t);
}
void tg_normal_(tg_rng *rng, tg_tensor *t, double mean, double std) {
    if (!tg__check("tg_normal_", "t", t)) return;
    if (!rng) rng = tg_default_rng();
    TG_DISPATCH(t->dtype, T *p = TG_PTR(t, T);
                for (int64_t i = 0; i < t->numel; i++) p[i] = (T)(mean + std * tg_rng_normal(rng)););
    tg_bump_version(t);
}
tg_tensor *tg_rand_uniform(tg_rng *rng, tg_dtype dtype, int ndim, const int64_t *shape, double lo, double hi) {
    tg_tensor *t = tg_empty(dtype, ndim, shape);
    if (t) { tg_uniform_(rng, t, lo, hi); }
    return t;
}
tg_tensor *tg_rand_normal(tg_rng *rng, tg_dtype dtype, int ndim, const int64_t *shape, double mean, double std) {
    tg_tensor *t = tg_empty(dtype, ndim, shape);
    if (t) { tg_normal_(rng, t, mean, std); }
    return t;
}
