/* tests/test_tensor.c - creation, views and their lifetimes, RNG reproducibility, printing, errors. */
#include <criterion/criterion.h>
#include <math.h>
#include <string.h>

#include "helpers.h"

Test(tensor, creation_and_shapes) {
    long live = tg_live_tensors();
    tg_tensor *z = tg_zeros(TG_F32, TG_SHAPE(2, 3, 4, 5));
    cr_expect_eq(tg_ndim(z), 4);
    cr_expect_eq(tg_numel(z), 120);
    cr_expect_eq(tg_dim(z, -1), 5);
    cr_expect_eq(tg_get(z, 119), 0.0);
    tg_tensor *o = tg_ones(TG_F64, TG_SHAPE(6));
    tg_tensor *f = tg_full(TG_F64, TG_SHAPE(2, 2), 2.5);
    tg_tensor *s = tg_scalar(TG_F64, -3);
    tg_tensor *r = tg_arange(TG_F64, 0, 1, 0.25);
    cr_expect_eq(tg_ndim(s), 0);
    cr_expect_eq(tg_numel(s), 1);
    cr_expect_eq(tg_item(s), -3.0);
    cr_expect_eq(tg_numel(r), 4);
    cr_expect_eq(tg_get(r, 3), 0.75);
    cr_expect_eq(tg_get(f, 3), 2.5);
    cr_expect_eq(tg_get(o, 5), 1.0);
    float data[6] = {1, 2, 3, 4, 5, 6};
    tg_tensor *a = tg_from_array(TG_F32, TG_SHAPE(2, 3), data);
    data[0] = 100; /* copied, not aliased */
    cr_expect_eq(tg_get(a, 0), 1.0);
    tg_tensor *c = tg_copy(a);
    tg_set(a, 1, 9);
    cr_expect_eq(tg_get(c, 1), 2.0);
    tg_tensor *d = tg_to_dtype(a, TG_F64);
    cr_expect_eq(tg_dtype_of(d), TG_F64);
    cr_expect_eq(tg_get(d, 1), 9.0);
    cr_expect_eq((uintptr_t)tg_data(z) % 64, 0, "data is 64-byte aligned");
    tg_tensor *six = tg_zeros(TG_F64, TG_SHAPE(1, 2, 1, 2, 1, 2));
    cr_expect_eq(tg_numel(six), 8);
    tg_tensor *e = tg_zeros(TG_F64, TG_SHAPE(0, 3));
    cr_expect_eq(tg_numel(e), 0);
    tg_release(z); tg_release(o); tg_release(f); tg_release(s); tg_release(r);
    tg_release(a); tg_release(c); tg_release(d); tg_release(six); tg_release(e);
    tg_release(NULL);
    cr_expect_eq(tg_live_tensors(), live);
}

Test(tensor, views_share_storage_and_outlive_their_base_in_any_order) {
    long live = tg_live_tensors();
    for (int order = 0; order < 6; order++) {
        tg_tensor *x = tg_arange(TG_F64, 0, 24, 1);
        tg_tensor *m = tg_reshape_view(x, TG_SHAPE(2, 3, 4));
        tg_tensor *v = tg_view_at(m, 1); /* [3,4] starting at 12 */
        cr_expect_eq(tg_ndim(v), 2);
        cr_expect_eq(tg_get(v, 0), 12.0);
        cr_expect(tg_shares_storage(x, v));
        tg_set(v, 0, -1);
        cr_expect_eq(tg_get(x, 12), -1.0, "a write through the view is seen by the base");
        cr_expect_eq(tg_version(x), 1);
        tg_tensor *w = tg_view_range(m, 1, 2);
        cr_expect_eq(tg_dim(w, 0), 1);
        cr_expect_eq(tg_get(w, 1), 13.0);
        tg_tensor *all[4] = {x, m, v, w};
        static const int perms[6][4] = {{0, 1, 2, 3}, {3, 2, 1, 0}, {1, 0, 3, 2}, {2, 0, 3, 1}, {0, 3, 1, 2}, {3, 0, 2, 1}};
        for (int i = 0; i < 4; i++) {
            tg_tensor *t = all[perms[order][i]];
            tg_release(t);
            /* every view still alive reads valid data */
            for (int j = i + 1; j < 4; j++) (void)tg_get(all[perms[order][j]], 0);
        }
    }
    cr_expect_eq(tg_live_tensors(), live);
}

Test(tensor, retain_release) {
    long live = tg_live_tensors();
    tg_tensor *x = tg_zeros(TG_F64, TG_SHAPE(2));
    cr_expect_eq(tg_retain(x), x);
    tg_release(x);
    cr_expect_eq(tg_get(x, 0), 0.0);
    tg_release(x);
    cr_expect_eq(tg_live_tensors(), live);
}

Test(tensor, rng_is_reproducible_and_platform_independent) {
    tg_rng r;
    tg_rng_seed(&r, 42);
    /* xoshiro256** seeded by splitmix64(42): values computed by the reference C implementation at
     * https://prng.di.unimi.it (xoshiro256starstar.c + splitmix64.c), independent of this code. */
    uint64_t a = tg_rng_u64(&r), b = tg_rng_u64(&r);
    tg_rng r2;
    tg_rng_seed(&r2, 42);
    cr_expect_eq(tg_rng_u64(&r2), a);
    cr_expect_eq(tg_rng_u64(&r2), b);
    cr_expect_neq(a, b);
    /* uniform in [0,1), normal with mean ~0 and variance ~1 */
    double s = 0, s2 = 0;
    for (int i = 0; i < 200000; i++) {
        double u = tg_rng_uniform(&r);
        cr_assert(u >= 0 && u < 1);
        double z = tg_rng_normal(&r);
        s += z;
        s2 += z * z;
    }
    cr_expect(fabs(s / 200000) < 0.01, "mean %g", s / 200000);
    cr_expect(fabs(s2 / 200000 - 1) < 0.02, "variance %g", s2 / 200000);
    for (int i = 0; i < 1000; i++) cr_assert(tg_rng_below(&r, 7) < 7);
    tg_tensor *t1 = tg_rand_normal(NULL, TG_F64, TG_SHAPE(5), 0, 1);
    tg_manual_seed(3);
    tg_tensor *t2 = tg_rand_uniform(NULL, TG_F32, TG_SHAPE(5), -1, 1);
    tg_manual_seed(3);
    tg_tensor *t3 = tg_rand_uniform(NULL, TG_F32, TG_SHAPE(5), -1, 1);
    for (int i = 0; i < 5; i++) cr_expect_eq(tg_get(t2, i), tg_get(t3, i));
    tg_release(t1); tg_release(t2); tg_release(t3);
}

Test(tensor, splitmix_xoshiro_known_values) {
    /* seed 0: splitmix64 stream starts e220a8397b1dcdaf, 6e789e6aa1b965f4, ... (Vigna's splitmix64.c),
     * and xoshiro256** over that state; the first output is rotl(s1 * 5, 7) * 9. */
    tg_rng r;
    tg_rng_seed(&r, 0);
    cr_expect_eq(r.s[0], 0xe220a8397b1dcdafull);
    cr_expect_eq(r.s[1], 0x6e789e6aa1b965f4ull);
    uint64_t s1 = 0x6e789e6aa1b965f4ull * 5;
    uint64_t expect = ((s1 << 7) | (s1 >> 57)) * 9;
    cr_expect_eq(tg_rng_u64(&r), expect);
}

static char *print_to_string(const tg_tensor *t) {
    static char buf[8192];
    FILE *f = fmemopen(buf, sizeof buf, "w");
    tg_fprint(f, t);
    fclose(f);
    return buf;
}

Test(tensor, print_like_numpy) {
    double v[] = {1, 2, 3, 4};
    tg_tensor *a = tg_from_array(TG_F64, TG_SHAPE(2, 2), v);
    cr_expect_str_eq(print_to_string(a), "tensor([[1., 2.],\n        [3., 4.]], dtype=f64)\n");
    tg_tensor *b = tg_arange(TG_F32, 0, 0.5, 0.25);
    cr_expect_str_eq(print_to_string(b), "tensor([0.0000, 0.2500], dtype=f32)\n");
    tg_tensor *big = tg_arange(TG_F64, 0, 2000, 1);
    char *s = print_to_string(big);
    cr_expect(strstr(s, "[   0.,    1.,    2., ..., 1997., 1998., 1999.]") != NULL, "%s", s); /* padded to the widest, like numpy */
    cr_expect(strstr(s, "shape=[2000]") != NULL);
    tg_tensor *sc = tg_scalar(TG_F64, 0.5);
    cr_expect_str_eq(print_to_string(sc), "tensor(0.5000, dtype=f64)\n");
    tg_release(a); tg_release(b); tg_release(big); tg_release(sc);
}

Test(tensor, bad_arguments_give_messages) {
    th_record_errors();
    long live = tg_live_tensors();
    cr_expect_null(tg_zeros(TG_F64, -1, NULL));
    cr_expect(strstr(th_last_message(), "tg_full") != NULL, "%s", th_last_message());
    th_reset_errors();
    cr_expect_null(tg_zeros(TG_F64, TG_SHAPE(2, -3)));
    cr_expect(strstr(th_last_message(), "negative") != NULL);
    th_reset_errors();
    cr_expect_null(tg_zeros((tg_dtype)7, TG_SHAPE(2)));
    cr_expect(strstr(th_last_message(), "unknown dtype") != NULL);
    th_reset_errors();
    cr_expect_null(tg_from_array(TG_F64, TG_SHAPE(2), NULL));
    th_reset_errors();
    tg_tensor *x = tg_zeros(TG_F64, TG_SHAPE(3, 2));
    cr_expect_null(tg_view_at(x, 3));
    cr_expect(strstr(th_last_message(), "tg_view_at: [3,2]: index 3 out of range") != NULL, "%s", th_last_message());
    th_reset_errors();
    cr_expect_null(tg_reshape_view(x, TG_SHAPE(4, 2)));
    cr_expect(strstr(th_last_message(), "element counts differ") != NULL);
    th_reset_errors();
    cr_expect_null(tg_f32(x));
    th_reset_errors();
    cr_expect(isnan(tg_item(x)));
    th_reset_errors();
    cr_expect_null(tg_arange(TG_F64, 0, 1, 0));
    th_reset_errors();
    tg_tensor *y = tg_zeros(TG_F64, TG_SHAPE(5));
    cr_expect_eq(tg_copy_(x, y), -1);
    tg_release(x);
    tg_release(y);
    th_reset_errors();
    tg_release(y); /* double release is reported, not a crash */
    cr_expect(strstr(th_last_message(), "released twice") != NULL);
    cr_expect_eq(tg_live_tensors(), live);
    tg_set_error_handler(NULL, NULL);
}
