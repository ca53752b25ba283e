#include "helpers.h"

#include <stdio.h>
#include <string.h>

static int g_count;
static char g_first[512];

static void record(const char *msg, void *user) {
    (void)user;
    if (g_count++ == 0) snprintf(g_first, sizeof g_first, "%s", msg);
}
void th_record_errors(void) {
    tg_set_error_handler(record, NULL);
    th_reset_errors();
}
int th_error_count(void) { return g_count; }
const char *th_last_message(void) { return g_first; }
void th_reset_errors(void) {
    g_count = 0;
    g_first[0] = 0;
    tg_clear_error();
}
tg_tensor *th_rand(uint64_t seed, int ndim, const int64_t *shape, double lo, double hi) {
    tg_rng rng;
    tg_rng_seed(&rng, seed);
    return tg_rand_uniform(&rng, TG_F64, ndim, shape, lo, hi);
}
