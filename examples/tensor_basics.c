/* examples/tensor_basics.c - tensors: creation, views that share storage, printing, random numbers.
 *
 * Purpose: the worked example at the top of <tapegrad/tensor.h>, run and extended a little. A
 * tg_tensor is a reference-counted header over a reference-counted storage: constructors return a new
 * reference that you tg_release; views (tg_reshape_view, tg_view_at) are new headers over the same
 * storage, so writing through one is seen through the other, and the storage lives until the last
 * view is released, in any order. Every in-place write bumps the storage's version counter (which is
 * how the tape notices a tensor modified after it was saved for backward). The generator is
 * tapegrad's own xoshiro256**, so a seed gives the same numbers on every platform.
 *
 * Run: build/examples/tensor_basics   (it takes no arguments; --quick is accepted and ignored)
 */
#include <stdio.h>

#include <tapegrad/tapegrad.h>

int main(void) {
    /* --- the worked example of tensor.h --- */
    tg_tensor *x = tg_arange(TG_F64, 0, 6, 1);          /* new ref, [6] */
    tg_tensor *m = tg_reshape_view(x, TG_SHAPE(2, 3));  /* new ref, shares x's storage */
    tg_tensor *row = tg_view_at(m, 1);                  /* new ref, [3] = {3, 4, 5}, zero-copy */
    printf("x = "); tg_print(x);
    printf("m = "); tg_print(m);
    printf("m[1] = "); tg_print(row);

    /* writes through a view are seen through the base; the version counter records them */
    char shape[32];
    printf("\nm is %s, shares storage with x: %s, version %llu\n", tg_shape_str(m, shape, sizeof shape),
           tg_shares_storage(m, x) ? "yes" : "no", (unsigned long long)tg_version(x));
    tg_set(row, 0, 30.0);                               /* m[1][0] = 30, i.e. x[3] */
    tg_scale_(row, 0.5);                                /* m[1] *= 0.5 */
    printf("after m[1][0] = 30 and m[1] *= 0.5: x = "); tg_print(x);
    printf("version %llu (two in-place writes)\n", (unsigned long long)tg_version(x));

    tg_release(x);                                      /* any order: storage lives until the last view */
    printf("x released; m[1] still reads "); tg_print(row);
    tg_release(row);
    tg_release(m);

    /* --- creation from C arrays, copies, dtype conversion --- */
    double data[6] = {1, 2, 3, 4, 5, 6};
    tg_tensor *a = tg_from_array(TG_F64, TG_SHAPE(2, 3), data);
    tg_tensor *b = tg_copy(a);                          /* deep copy: independent storage */
    tg_fill_(b, 7);
    tg_tensor *f = tg_to_dtype(a, TG_F32);
    printf("\na = "); tg_print(a);
    printf("b = copy of a filled with 7 = "); tg_print(b);
    printf("a as F32 = "); tg_print(f);
    printf("a[1][2] = %g, numel %lld, %d dims, itemsize %zu (F64) / %zu (F32)\n", tg_get(a, 1 * 3 + 2),
           (long long)tg_numel(a), tg_ndim(a), tg_itemsize(TG_F64), tg_itemsize(TG_F32));
    tg_release(a); tg_release(b); tg_release(f);

    /* --- seeded random numbers: the same stream on every platform --- */
    tg_rng rng;
    tg_rng_seed(&rng, 42);
    tg_tensor *n = tg_rand_normal(&rng, TG_F64, TG_SHAPE(2, 4), 0, 1);
    tg_tensor *u = tg_rand_uniform(&rng, TG_F32, TG_SHAPE(5), -1, 1);
    printf("\nN(0,1) [2,4], seed 42 = "); tg_print(n);
    printf("U(-1,1) [5] = "); tg_print(u);
    tg_release(n); tg_release(u);

    /* --- big tensors print abbreviated, like numpy --- */
    tg_tensor *big = tg_arange(TG_F32, 0, 2000, 1);
    tg_tensor *big2 = tg_reshape_view(big, TG_SHAPE(40, 50));
    printf("\n[40,50] = "); tg_print(big2);
    tg_release(big2); tg_release(big);

    long live = tg_live_tensors();
    printf("\nlive tensors at the end: %ld\n", live);
    return live == 0 ? 0 : 1;
}
