/* tests/test_tape.c - the tape: accumulation semantics, no-grad, detach, reset, long chains,
 * in-place modification detection, ownership (the README's training loop leaks nothing). */
#include <criterion/criterion.h>
#include <math.h>
#include <pthread.h>
#include <string.h>

#include "autograd/tape_internal.h"
#include "helpers.h"

Test(tape, leaf_gradients_accumulate_until_zeroed) {
    long live = tg_live_tensors();
    tg_tensor *x = tg_full(TG_F64, TG_SHAPE(3), 2.0);
    tg_set_requires_grad(x, true);
    for (int k = 1; k <= 3; k++) {
        tg_tensor *y = tg_sum(tg_mul(x, x)); /* dy/dx = 2x = 4 */
        cr_assert_eq(tg_backward(y), 0);
        cr_expect_eq(tg_get(tg_grad(x), 0), 4.0 * k);
        tg_tape_reset();
    }
    tg_zero_grad(x);
    cr_expect_null(tg_grad(x));
    tg_release(x);
    cr_expect_eq(tg_live_tensors(), live);
}

Test(tape, intermediate_gradients_are_freed_unless_retained) {
    tg_tensor *x = tg_full(TG_F64, TG_SHAPE(2), 1.0);
    tg_set_requires_grad(x, true);
    tg_tensor *a = tg_exp(x), *b = tg_tanh(a);
    tg_retain_grad(b);
    tg_backward(tg_sum(tg_mul(a, b)));
    cr_expect_null(tg_grad(a));
    cr_expect_not_null(tg_grad(b));
    cr_expect_float_eq(tg_get(tg_grad(b), 0), exp(1.0), 1e-12);
    cr_expect(!tg_is_leaf(a));
    cr_expect(tg_is_leaf(x));
    tg_tape_reset();
    tg_release(x);
}

Test(tape, records_only_when_some_input_requires_grad) {
    tg_tape_reset();
    tg_tensor *x = tg_ones(TG_F64, TG_SHAPE(4)), *w = tg_ones(TG_F64, TG_SHAPE(4));
    tg_tensor *y = tg_mul(x, w);
    cr_expect_eq(tg_tape_records(), 0);
    cr_expect(!tg_requires_grad(y));
    tg_set_requires_grad(w, true);
    tg_no_grad_begin();
    cr_expect(!tg_grad_enabled());
    y = tg_mul(x, w);
    cr_expect_eq(tg_tape_records(), 0);
    tg_no_grad_end();
    y = tg_mul(x, w);
    cr_expect_eq(tg_tape_records(), 1);
    cr_expect(tg_requires_grad(y));
    cr_expect_eq(tg_tape_tensors(), 3);
    tg_tape_reset();
    cr_expect_eq(tg_tape_records(), 0);
    cr_expect_eq(tg_tape_tensors(), 0);
    tg_release(x);
    tg_release(w);
}

Test(tape, detach_cuts_the_graph_and_shares_storage) {
    tg_tensor *x = tg_full(TG_F64, TG_SHAPE(2), 3.0);
    tg_set_requires_grad(x, true);
    tg_tensor *h = tg_mul(x, x);
    tg_tensor *d = tg_detach(h); /* new ref */
    cr_expect(!tg_requires_grad(d));
    cr_expect(tg_shares_storage(d, h));
    tg_tensor *y = tg_sum(tg_mul(d, x)); /* dy/dx = d = 9, nothing flows through d */
    tg_backward(y);
    cr_expect_eq(tg_get(tg_grad(x), 0), 9.0);
    tg_tape_reset();
    cr_expect_eq(tg_get(d, 1), 9.0, "a detached tensor survives the reset");
    tg_release(d);
    tg_release(x);
}

Test(tape, result_kept_past_reset_becomes_a_plain_tensor) {
    long live = tg_live_tensors();
    tg_tensor *x = tg_full(TG_F64, TG_SHAPE(2), 1.0);
    tg_set_requires_grad(x, true);
    tg_tensor *h = tg_retain(tg_tanh(x));
    tg_tape_reset();
    cr_expect(!tg_requires_grad(h));
    cr_expect_float_eq(tg_get(h, 0), tanh(1.0), 1e-15);
    tg_tensor *y = tg_sum(tg_mul(h, x)); /* h is now a constant */
    tg_backward(y);
    cr_expect_float_eq(tg_get(tg_grad(x), 0), tanh(1.0), 1e-15);
    tg_tape_reset();
    tg_release(h);
    tg_release(x);
    cr_expect_eq(tg_live_tensors(), live);
}

/* ~20,000 records, as a 1000-step LSTM would make: backward is a loop, not recursion. */
Test(tape, long_chain_of_twenty_thousand_records) {
    tg_tensor *h0 = tg_full(TG_F64, TG_SHAPE(1, 8), 0.1);
    tg_tensor *w = th_rand(3, TG_SHAPE(8, 8), -0.3, 0.3);
    tg_set_requires_grad(w, true);
    tg_set_requires_grad(h0, true);
    tg_tensor *h = h0;
    for (int t = 0; t < 1000; t++) {
        tg_tensor *a = tg_matmul(h, w);
        tg_tensor *g[4];
        for (int k = 0; k < 4; k++) g[k] = tg_sigmoid(tg_add_scalar(a, 0.1 * k));
        tg_tensor *c = tg_add(tg_mul(g[0], tg_tanh(a)), tg_mul(g[1], h));
        h = tg_mul(g[3], tg_tanh(tg_add(c, tg_mul_scalar(g[2], 0.01))));
    }
    cr_expect_gt(tg_tape_records(), 15000);
    cr_assert_eq(tg_backward(tg_sum(h)), 0);
    cr_expect(isfinite(tg_get(tg_grad(w), 0)));
    tg_tape_reset();
    tg_release(h0);
    tg_release(w);
}

Test(tape, in_place_change_of_a_saved_tensor_is_reported_by_name) {
    th_record_errors();
    tg_tensor *w = tg_full(TG_F64, TG_SHAPE(2), 2.0);
    tg_set_name(w, "weight_hh_l0");
    tg_set_requires_grad(w, true);
    tg_tensor *x = tg_full(TG_F64, TG_SHAPE(2), 3.0);
    tg_tensor *y = tg_sum(tg_mul(w, x));
    tg_fill_(x, 5); /* x was saved by tg_mul for w's gradient */
    cr_expect_eq(tg_backward(y), -1);
    const char *m = th_last_message();
    cr_expect(strstr(m, "tg_backward") && strstr(m, "tg_mul") && strstr(m, "modified in place"), "%s", m);
    tg_tape_reset();
    /* saved output: tanh keeps its result; changing it is caught too */
    th_reset_errors();
    tg_tensor *t = tg_tanh(w);
    tg_tensor *l = tg_sum(t);
    tg_fill_(t, 0);
    cr_expect_eq(tg_backward(l), -1);
    cr_expect(strstr(th_last_message(), "tg_tanh") != NULL, "%s", th_last_message());
    tg_tape_reset();
    /* the weight updated in place before backward, the classic bug */
    th_reset_errors();
    y = tg_sum(tg_mul(w, x));
    tg_no_grad_begin();
    tg_axpy_(w, -0.1, x);
    tg_no_grad_end();
    cr_expect_eq(tg_backward(y), -1);
    cr_expect(strstr(th_last_message(), "weight_hh_l0") != NULL, "%s", th_last_message());
    tg_tape_reset();
    tg_release(w);
    tg_release(x);
    tg_set_error_handler(NULL, NULL);
}

Test(tape, backward_from_a_non_scalar_with_upstream_gradient) {
    tg_tensor *x = th_rand(1, TG_SHAPE(2, 3), -1, 1);
    tg_set_requires_grad(x, true);
    tg_tensor *y = tg_mul_scalar(x, 3.0);
    tg_tensor *g = th_rand(2, TG_SHAPE(2, 3), -1, 1);
    cr_assert_eq(tg_backward_with(y, g), 0);
    for (int i = 0; i < 6; i++) cr_expect_float_eq(tg_get(tg_grad(x), i), 3 * tg_get(g, i), 1e-15);
    th_record_errors();
    cr_expect_eq(tg_backward(y), -1);
    cr_expect(strstr(th_last_message(), "non-scalar") != NULL);
    th_reset_errors();
    tg_tensor *bad = tg_zeros(TG_F64, TG_SHAPE(3, 2));
    cr_expect_eq(tg_backward_with(y, bad), -1);
    cr_expect(strstr(th_last_message(), "shapes or dtypes differ") != NULL);
    th_reset_errors();
    tg_tensor *c = tg_ones(TG_F64, TG_SHAPE(1));
    cr_expect_eq(tg_backward(c), -1);
    cr_expect(strstr(th_last_message(), "does not require grad") != NULL);
    tg_set_error_handler(NULL, NULL);
    tg_tape_reset();
    tg_release(x); tg_release(g); tg_release(bad); tg_release(c);
}

/* The README's loop: one expression per step, everything released by the reset. */
Test(tape, training_loop_in_one_expression_leaks_nothing) {
    long live = tg_live_tensors();
    tg_tensor *x = th_rand(1, TG_SHAPE(16, 8), -1, 1);
    tg_tensor *target = th_rand(2, TG_SHAPE(16, 4), -0.5, 0.5);
    tg_tensor *W = th_rand(3, TG_SHAPE(8, 4), -0.3, 0.3);
    tg_tensor *b = tg_zeros(TG_F64, TG_SHAPE(4));
    tg_set_requires_grad(W, true);
    tg_set_requires_grad(b, true);
    double first = 0, last = 0;
    for (int step = 0; step < 200; step++) {
        tg_tensor *h = tg_tanh(tg_add(tg_matmul(x, W), b));
        tg_tensor *loss = tg_mean(tg_pow_scalar(tg_sub(h, target), 2));
        if (step == 0) first = tg_item(loss);
        last = tg_item(loss);
        tg_backward(loss);
        tg_no_grad_begin();
        tg_axpy_(W, -0.5, tg_grad(W));
        tg_axpy_(b, -0.5, tg_grad(b));
        tg_no_grad_end();
        tg_zero_grad(W);
        tg_zero_grad(b);
        tg_tape_reset();
        if (step == 10) live = tg_live_tensors() - 4; /* steady state reached */
    }
    cr_expect_lt(last, first * 0.5, "loss %g -> %g", first, last);
    tg_release(x); tg_release(target); tg_release(W); tg_release(b);
    cr_expect_eq(tg_live_tensors(), live);
}

static void *count_records(void *arg) {
    *(size_t *)arg = tg_tape_records();
    tg_tensor *y = tg_ones(TG_F64, TG_SHAPE(2));
    tg_set_requires_grad(y, true);
    tg_backward(tg_sum(tg_exp(y))); /* a whole forward/backward on this thread's own tape */
    tg_tape_reset();
    tg_release(y);
    return NULL;
}
Test(tape, threads_have_their_own_tape) {
    tg_tensor *x = tg_ones(TG_F64, TG_SHAPE(2));
    tg_set_requires_grad(x, true);
    (void)tg_exp(x);
    cr_expect_eq(tg_tape_records(), 1);
    size_t seen = 99;
    pthread_t th;
    pthread_create(&th, NULL, count_records, &seen);
    pthread_join(th, NULL);
    cr_expect_eq(seen, 0, "a new thread starts with an empty tape");
    cr_expect_eq(tg_tape_records(), 1, "the other thread's work did not touch this tape");
    tg_tape_reset();
    tg_release(x);
}

Test(tape, tape_bytes_counts_each_buffer_once_views_included) {
    tg_tape_reset();
    cr_expect_eq(tg_tape_bytes(), 0);
    tg_tensor *w = tg_ones(TG_F64, TG_SHAPE(10, 100));     /* 8000 bytes, user-owned */
    tg_set_requires_grad(w, true);
    tg_tensor *y = tg_mul_scalar(w, 2.0);                 /* a new 8000-byte buffer on the tape */
    size_t one = tg_tape_bytes();
    cr_expect_geq(one, 8000);
    cr_expect_lt(one, 2 * 8000, "one buffer, rounded up to its size class at most: %zu", one);
    for (int t = 0; t < 10; t++) cr_assert_not_null(tg_select(y, t));   /* ten views of y: no new data */
    cr_expect_eq(tg_tape_bytes(), one);
    for (int t = 0; t < 10; t++) cr_assert_not_null(tg_select(w, t));   /* views of the leaf w: its buffer is the caller's */
    cr_expect_eq(tg_tape_bytes(), one, "a view of a leaf counted its buffer: %zu vs %zu", tg_tape_bytes(), one);
    tg_tensor *z = tg_exp(y);                             /* a second buffer (exp saves its output) */
    cr_assert_not_null(z);
    cr_expect_geq(tg_tape_bytes(), one + 8000);
    cr_expect_lt(tg_tape_bytes(), 2 * one + 1);
    tg_tape_reset();
    cr_expect_eq(tg_tape_bytes(), 0);
    tg_release(w);
}

Test(tape, anomaly_mode_names_the_op_that_made_the_first_nan_or_inf) {
    th_record_errors();
    tg_tape_reset();
    const double xv[] = {1.0, 0.0, 4.0};
    tg_tensor *x = tg_from_array(TG_F64, TG_SHAPE(3), xv);
    tg_set_requires_grad(x, true);
    /* off (the default): nothing is checked */
    cr_expect_not(tg_anomaly_mode());
    cr_assert_not_null(tg_log(x));
    cr_expect_eq(th_error_count(), 0);
    tg_tape_reset();

    tg_set_anomaly_mode(true);
    cr_expect(tg_anomaly_mode());
    /* forward: log(0) = -inf from a finite input is reported with the op's name ... */
    tg_tensor *y = tg_log(x);
    cr_expect_eq(th_error_count(), 1);
    cr_expect(strstr(th_last_message(), "tg_log: anomaly: the result [3] has -inf at element 1 although every input is finite"),
              "%s", th_last_message());
    /* ... and ops that merely propagate it are not reported again */
    tg_tensor *z = tg_sum(tg_mul_scalar(y, 2.0));
    cr_expect_eq(th_error_count(), 1, "%s", th_last_message());
    (void)z;
    tg_tape_reset();
    th_reset_errors();

    /* backward: d sqrt(x)/dx at x = 0 is inf although the forward is finite */
    const double wv[] = {0.0, 1.0};
    tg_tensor *w = tg_from_array(TG_F64, TG_SHAPE(2), wv);
    tg_set_requires_grad(w, true);
    tg_tensor *loss = tg_sum(tg_sqrt(w));
    cr_expect_eq(th_error_count(), 0);
    cr_expect_eq(tg_backward(loss), -1);
    cr_expect(strstr(th_last_message(), "tg_backward: anomaly: the backward of tg_sqrt") &&
              strstr(th_last_message(), "from a finite upstream gradient"), "%s", th_last_message());
    tg_tape_reset();
    th_reset_errors();

    /* a NaN that comes in through a leaf is reported at the first op that reads it */
    tg_tensor *bad = tg_full(TG_F64, TG_SHAPE(2), NAN);
    tg_set_name(bad, "h0");
    cr_assert_not_null(tg_add(w, bad));
    cr_expect(strstr(th_last_message(), "tg_add: anomaly: input 1 [2] 'h0' (not produced on the tape)"), "%s",
              th_last_message());
    tg_set_anomaly_mode(false);
    tg_tape_reset();
    tg_release(x);
    tg_release(w);
    tg_release(bad);
    th_reset_errors();
    tg_set_error_handler(NULL, NULL);
}

Test(tape, tape_dump_lists_every_record_with_its_inputs) {
    tg_tape_reset();
    tg_tensor *W = tg_ones(TG_F64, TG_SHAPE(4, 3)), *x = tg_ones(TG_F64, TG_SHAPE(2, 4));
    tg_set_name(W, "weight");
    tg_set_requires_grad(W, true);
    tg_tensor *h = tg_tanh(tg_matmul(x, W));
    cr_assert_not_null(h);
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    cr_assert_not_null(f);
    tg_tape_dump(f);
    fclose(f);
    cr_expect(strstr(buf, "tape: 2 records"), "%s", buf);
    cr_expect(strstr(buf, "#0     tg_matmul       ([2,4] const, [4,3] 'weight' leaf) -> [2,3] F64"), "%s", buf);
    cr_expect(strstr(buf, "#1     tg_tanh         ([2,3] <- #0) -> [2,3] F64"), "%s", buf);
    free(buf);
    tg_tape_reset();
    tg_release(W);
    tg_release(x);
}

/* Inside a pack scope a weight used again is packed once (autograd/ops_matrix.c); the packed copy must
 * give exactly the unpacked result and must follow writes to the weight (its storage version). */
Test(tape, packed_weights_are_exact_and_follow_writes) {
    long live = tg_live_tensors();
    tg_rng rng;
    tg_rng_seed(&rng, 7);
    tg_tensor *x = tg_rand_normal(&rng, TG_F32, TG_SHAPE(32, 256), 0, 1);
    tg_tensor *W = tg_rand_normal(&rng, TG_F32, TG_SHAPE(1024, 256), 0, 1);
    tg_tensor *ref = tg_detach(tg_linear(x, W, NULL)); /* no scope: plain GEMM */
    tg__pack_scope_begin();
    for (int k = 0; k < 3; k++) { /* met, packed, read from the packed copy */
        tg_tensor *y = tg_linear(x, W, NULL);
        cr_assert(memcmp(tg_data(y), tg_data(ref), (size_t)tg_numel(ref) * sizeof(float)) == 0,
                  "use %d inside the scope differs", k);
    }
    tg_scale_(W, 2.0); /* a write between two uses inside one scope */
    tg_tensor *twice = tg_linear(x, W, NULL);
    for (int64_t i = 0; i < tg_numel(ref); i++)
        cr_assert_eq(tg_get(twice, i), 2 * tg_get(ref, i), "element %lld after the write", (long long)i);
    tg__pack_scope_end();
    tg_tape_reset();
    tg_release(ref);
    tg_release(x);
    tg_release(W);
    cr_expect_eq(tg_live_tensors(), live);
}

/* dW of the recurrent products is staged and added by one GEMM over many steps (ops_matrix.c, defer
 * scope). Anomaly mode runs every product unstaged, so it is the reference: the same gradients up to
 * the order of the additions, for a leaf weight that also gets a direct gradient (W ⊙ W), a non-leaf
 * weight (a slice, whose own backward needs the staged rows first), and more rows than the staging
 * buffer holds (a flush in the middle of the pass). */
static void recurrent_grads(bool anomaly, tg_tensor *h0, tg_tensor *W, tg_tensor *Wbig) {
    tg_set_anomaly_mode(anomaly);
    tg_tensor *h = h0, *Wn = tg_slice(Wbig, 0, 4, 9);
    for (int t = 0; t < 300; t++) h = tg_tanh(tg_linear_add(h, W, NULL, tg_linear(h, Wn, NULL)));
    tg_tensor *loss = tg_add(tg_sum(h), tg_sum(tg_mul(W, W)));
    cr_assert(tg_backward(loss) == 0, "%s", tg_last_error());
    tg_set_anomaly_mode(false);
    tg_tape_reset();
}

Test(tape, staged_weight_grads_equal_per_step_ones) {
    long live = tg_live_tensors();
    tg_rng rng;
    tg_rng_seed(&rng, 11);
    tg_tensor *h0 = tg_rand_normal(&rng, TG_F64, TG_SHAPE(3, 5), 0, 1);
    tg_tensor *W = tg_rand_normal(&rng, TG_F64, TG_SHAPE(5, 5), 0, 0.4);
    tg_tensor *Wbig = tg_rand_normal(&rng, TG_F64, TG_SHAPE(12, 5), 0, 0.4);
    tg_tensor *p[3] = {h0, W, Wbig}, *ref[3];
    for (int i = 0; i < 3; i++) tg_set_requires_grad(p[i], true);
    recurrent_grads(true, h0, W, Wbig);
    for (int i = 0; i < 3; i++) {
        ref[i] = tg_detach(tg_grad(p[i]));
        tg_zero_grad(p[i]);
    }
    recurrent_grads(false, h0, W, Wbig);
    for (int i = 0; i < 3; i++) {
        cr_assert(tg_grad(p[i]), "tensor %d has no gradient", i);
        double worst = 0, scale = 0;
        for (int64_t j = 0; j < tg_numel(ref[i]); j++) {
            double d = fabs(tg_get(tg_grad(p[i]), j) - tg_get(ref[i], j));
            worst = d > worst ? d : worst;
            scale = fmax(scale, fabs(tg_get(ref[i], j)));
        }
        cr_assert(scale > 0 && worst <= 1e-12 * scale, "tensor %d: staged and per-step gradients differ by %g (scale %g)",
                  i, worst, scale);
        tg_release(ref[i]);
        tg_zero_grad(p[i]);
    }
    for (int i = 0; i < 3; i++) tg_release(p[i]);
    cr_expect_eq(tg_live_tensors(), live);
}

/* ---- freeing what no backward reads (tg_tape_free_unsaved) ---------------------------------------- */

/* y = Σ (exp(tanh(x + x)) + e) with intermediates that backward reads (tanh's and exp's outputs: OUT)
 * and ones it does not (x + x: add saves nothing, and tanh reads its output, not its input). */
static void free_scope(tg_tensor *x, tg_tensor **a, tg_tensor **b, tg_tensor **d, tg_tensor **e, tg_tensor **f,
                       tg_tensor **g, tg_tensor **view, size_t *freed) {
    tg_tape_mark m = tg_tape_mark_here();
    *a = tg_add(x, x);
    *b = tg_tanh(*a);
    *d = tg_exp(*b);
    *e = tg_retain(tg_add(*b, *b)); /* the caller's reference keeps it */
    *f = tg_add(*b, *b);
    *view = tg_detach(*f);          /* a view made outside the tape keeps its buffer */
    *g = tg_add(*b, *b);            /* nothing keeps it */
    *freed = tg_tape_free_unsaved(m, 1, d);
}

Test(tape, free_unsaved_frees_only_what_no_backward_reads) {
    tg_tensor *x = th_rand(40, TG_SHAPE(100), -1, 1), *grads[2];
    tg_set_requires_grad(x, true);
    size_t freed[2], kept_bytes = 0;
    for (int keep_all = 1; keep_all >= 0; keep_all--) {
        tg_set_keep_results(keep_all);
        tg_tensor *a, *b, *d, *e, *f, *g, *view;
        free_scope(x, &a, &b, &d, &e, &f, &g, &view, &freed[keep_all]);
        size_t bytes = tg_tape_bytes();
        if (!keep_all) {
            /* a (add) and g (add) are freed: 2 buffers of 100 doubles */
            cr_expect_eq(freed[0], 2 * e->storage->capacity, "freed %zu bytes", freed[0]);
            cr_expect(a->storage->data == NULL, "x + x kept its data");
            cr_expect(g->storage->data == NULL, "an unreferenced add kept its data");
            cr_expect(b->storage->data && d->storage->data && e->storage->data && f->storage->data,
                      "a saved (b), kept (d), retained (e) or detached (f) result lost its data");
            /* the header stays: shape, gradient slot */
            cr_expect_eq(tg_numel(a), 100);
            cr_expect(tg_requires_grad(a) && !tg_is_leaf(a));
        } else {
            cr_expect_eq(freed[1], 0, "tg_set_keep_results(true) freed %zu bytes", freed[1]);
        }
        tg_tensor *loss = tg_sum(tg_add(d, e));
        cr_assert_eq(tg_backward(loss), 0, "%s", tg_last_error());
        grads[keep_all] = tg_copy(tg_grad(x));
        tg_zero_grad(x);
        tg_release(e);
        tg_release(view);
        if (keep_all) {
            kept_bytes = bytes;
        } else {
            cr_expect_lt(bytes, kept_bytes, "tape %zu bytes, %zu with every result kept", bytes, kept_bytes);
            cr_expect_eq(bytes + freed[0], kept_bytes, "tg_tape_bytes did not fall by the freed %zu bytes", freed[0]);
        }
        tg_tape_reset();
    }
    tg_set_keep_results(false);
    cr_expect(memcmp(tg_cdata(grads[0]), tg_cdata(grads[1]), 100 * sizeof(double)) == 0,
              "the gradient changed when the tape freed what no backward reads");
    tg_release(grads[0]);
    tg_release(grads[1]);
    tg_release(x);
    cr_expect_eq(tg_live_tensors(), 0);
}

Test(tape, a_freed_result_is_refused_by_name_never_read) {
    th_record_errors();
    tg_tensor *x = th_rand(41, TG_SHAPE(2, 3), -1, 1);
    tg_set_requires_grad(x, true);
    tg_tape_mark m = tg_tape_mark_here();
    tg_tensor *a = tg_add(x, x), *b = tg_tanh(a);
    tg_set_name(a, "pre");
    cr_assert_gt(tg_tape_free_unsaved(m, 1, &b), 0);
    const char *want = "argument t [2,3] 'pre' (the result of tg_add) was freed by the tape because no backward needs it";
    cr_expect(isnan(tg_get(a, 0)));
    cr_expect(strstr(th_last_message(), "tg_get: ") && strstr(th_last_message(), want), "%s", th_last_message());
    cr_expect(strstr(th_last_message(), "tg_retain it before the step returns") &&
              strstr(th_last_message(), "tg_set_keep_results(true)"), "%s", th_last_message());
    th_reset_errors();
    cr_expect_null(tg_data(a));
    cr_expect(strstr(th_last_message(), "tg_data: argument t [2,3] 'pre' (the result of tg_add) was freed"), "%s", th_last_message());
    th_reset_errors();
    cr_expect_null(tg_mul(a, x)); /* an op given it */
    cr_expect(strstr(th_last_message(), "tg_mul: argument a [2,3] 'pre' (the result of tg_add) was freed"), "%s", th_last_message());
    th_reset_errors();
    cr_expect_null(tg_detach(a));
    cr_expect(strstr(th_last_message(), "was freed by the tape"), "%s", th_last_message());
    th_reset_errors();
    /* a result made with no record (nothing required grad): the op is not known */
    tg_tensor *c = tg_ones(TG_F64, TG_SHAPE(4));
    m = tg_tape_mark_here();
    tg_tensor *k = tg_mul_scalar(c, 2.0);
    tg_tape_free_unsaved(m, 0, NULL);
    cr_expect(isnan(tg_item(tg_sum(k))));
    cr_expect(strstr(th_last_message(), "tg_sum: argument x [4] (an op result) was freed by the tape"), "%s", th_last_message());
    th_reset_errors();
    /* the header still answers, and the tape dump says which results were freed */
    cr_expect_eq(tg_dim(a, 1), 3);
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    tg_tape_dump(f);
    fclose(f);
    cr_expect(strstr(buf, "-> [2,3] 'pre' F64 (freed)"), "%s", buf);
    free(buf);
    cr_expect_eq(th_error_count(), 0, "%s", th_last_message());
    /* misuse of the call itself */
    tg_tape_free_unsaved(m, -1, NULL);
    cr_expect(strstr(th_last_message(), "tg_tape_free_unsaved: -1 tensors to keep"), "%s", th_last_message());
    th_reset_errors();
    /* a mark from before a reset frees nothing */
    tg_tape_reset();
    tg_tensor *z = tg_add(x, x);
    cr_expect_eq(tg_tape_free_unsaved(m, 0, NULL), 0);
    cr_expect_not_null(tg_data(z));
    tg_tape_reset();
    tg_release(c);
    tg_release(x);
    cr_expect_eq(tg_live_tensors(), 0);
}

/* ---- the runner frees what no backward reads: same results, smaller tape --------------------------- */

/* A GRU (PyTorch's reset-after) in plain ops, the way examples/custom_cell.c writes a cell. A second
 * spelling keeps its candidate n with tg_retain (g_kept), as a user who wants to look at it would. */
static tg_tensor *g_kept, *g_loose;
static int plain_gru_step(const tg_cell *cell, const tg_cell_params *p, const tg_tensor *x, const tg_tensor *xproj,
                          tg_tensor *const *state, tg_tensor **out) {
    (void)x;
    tg_tensor *xa[3], *ha[3];
    if (tg_chunk(xproj, 1, 3, xa) || tg_chunk(tg_linear(state[0], p->weight_hh, p->bias_hh), 1, 3, ha)) return -1;
    tg_tensor *r = tg_sigmoid(tg_add(xa[0], ha[0])), *z = tg_sigmoid(tg_add(xa[1], ha[1]));
    tg_tensor *n = tg_tanh(tg_add(xa[2], tg_mul(r, ha[2])));          /* n = tanh(x_n + r ⊙ h_n) */
    tg_tensor *pre = tg_add(xa[2], ha[2]);                            /* read by nothing after the step */
    if (cell->user) { tg_release(g_kept); g_kept = tg_retain(pre); }  /* ... unless retained */
    if (cell->user) g_loose = tg_add(pre, pre);                       /* (a pointer alone keeps nothing) */
    out[0] = tg_add(n, tg_mul(z, tg_sub(state[0], n)));               /* h' = (1 − z) ⊙ n + z ⊙ h */
    return out[0] ? 0 : -1;
}
static const tg_cell g_plain_gru = {.name = "plain_gru", .gates = 3, .n_states = 1, .forget_gate = 1,
                                    .step = plain_gru_step};
static const tg_cell g_plain_gru_keep = {.name = "plain_gru_keep", .gates = 3, .n_states = 1, .forget_gate = 1,
                                         .step = plain_gru_step, .user = "keep"};

#define FREE_MAX 160
/* One forward + backward of cell over x [5,3,4] (F64, hidden 6): two layers, both directions, lengths
 * 5, 3, 4, zoneout (train, seeded masks), kept step states (cfg 0); one layer, nothing else (cfg 1).
 * res receives copies of the output, the final and kept states and every gradient. Returns the count. */
static int free_run(const tg_cell *cell, int cfg, tg_tensor **res, size_t *bytes) {
    tg_rng rng;
    tg_rng_seed(&rng, 77);
    tg_rnn_config rc = {.input_size = 4, .hidden_size = 6, .num_layers = cfg ? 1 : 2, .bidirectional = !cfg,
                        .dtype = TG_F64};
    tg_rnn *m = tg_rnn_new(cell, &rc, &rng);
    cr_assert_not_null(m, "%s: %s", cell->name, tg_last_error());
    tg_tensor *x = th_rand(78, TG_SHAPE(5, 3, 4), -1, 1);
    tg_set_requires_grad(x, true);
    static const int64_t lengths[3] = {5, 3, 4};
    tg_rng_seed(&rng, 79);
    tg_rnn_forward_opts o = {0};
    if (cfg == 0)
        o = (tg_rnn_forward_opts){.lengths = lengths, .train = true, .rng = &rng, .keep_step_states = true,
                                  .zoneout_h = 0.3, .zoneout_c = 0.2};
    tg_rnn_output out;
    tg_tensor *y = tg_rnn_forward(m, x, &o, &out);
    cr_assert_not_null(y, "%s: %s", cell->name, tg_last_error());
    *bytes = tg_tape_bytes();
    int n = 0;
    res[n++] = tg_copy(y);
    for (int s = 0; s < out.n_states; s++) res[n++] = tg_copy(out.final[s]);
    for (int k = 0; k < out.n_step_states; k++) res[n++] = tg_copy(out.step_states[k]);
    tg_tensor *w = th_rand(80, 3, tg_shape(y), -1, 1);
    tg_tensor *hn = out.final[out.n_states - 1];
    cr_assert_eq(tg_backward(tg_add(tg_sum(tg_mul(y, w)), tg_sum(tg_mul(hn, hn)))), 0, "%s: %s", cell->name, tg_last_error());
    for (int i = 0; i < tg_params_count(m->params); i++) res[n++] = tg_copy(tg_grad(tg_params_at(m->params, i)));
    res[n++] = tg_copy(tg_grad(x));
    cr_assert_leq(n, FREE_MAX);
    tg_rnn_output_clear(&out);
    tg_tape_reset();
    tg_release(w);
    tg_release(x);
    tg_rnn_free(m);
    return n;
}

Test(tape, runner_results_and_gradients_bit_identical_with_and_without_freeing) {
    char err[256];
    tg_cell_def *janet = tg_cell_def_parse("janet", "gates f, c\nforget f\nf = sigmoid(x.f + h.f)\n"
                                           "c' = f * c + (1 - f) * tanh(x.c + h.c)\nh' = c'\n", err, sizeof err);
    cr_assert_not_null(janet, "%s", err);
    const tg_cell *cells[] = {tg_cell_by_name("lstm_np"), tg_cell_by_name("lstm_fgr"), &g_plain_gru,
                              tg_cell_def_cell(janet), tg_cell_by_name("lstm"), tg_cell_by_name("gru")};
    const bool plain[] = {true, false, true, true, false, false}; /* lstm_fgr: fused since 7ff0d95 */
    for (size_t c = 0; c < sizeof cells / sizeof cells[0]; c++) {
        for (int cfg = 0; cfg < 2; cfg++) {
            tg_tensor *kept[FREE_MAX], *freed[FREE_MAX];
            size_t bytes_kept, bytes_freed;
            tg_set_keep_results(true);
            int n = free_run(cells[c], cfg, kept, &bytes_kept);
            tg_set_keep_results(false);
            int n2 = free_run(cells[c], cfg, freed, &bytes_freed);
            cr_assert_eq(n, n2);
            for (int i = 0; i < n; i++) {
                cr_assert(kept[i] && freed[i], "%s cfg %d: result %d missing", cells[c]->name, cfg, i);
                cr_expect(tg_numel(kept[i]) == tg_numel(freed[i]) &&
                          memcmp(tg_cdata(kept[i]), tg_cdata(freed[i]), (size_t)tg_numel(kept[i]) * sizeof(double)) == 0,
                          "%s cfg %d: result %d (output, states, then the gradients) differs when the tape frees "
                          "what no backward reads", cells[c]->name, cfg, i);
                tg_release(kept[i]);
                tg_release(freed[i]);
            }
            if (plain[c])
                cr_expect_lt((double)bytes_freed, 0.6 * (double)bytes_kept, "%s cfg %d: tape %zu bytes, %zu with every result kept",
                             cells[c]->name, cfg, bytes_freed, bytes_kept);
            else
                cr_expect_leq(bytes_freed, bytes_kept, "%s cfg %d", cells[c]->name, cfg);
        }
    }
    tg_cell_def_free(janet);
    cr_expect_eq(tg_live_tensors(), 0);
}

/* An intermediate of a step is freed when the step returns unless the cell retained it; the retained
 * one reads back after the forward, an unretained one is refused naming it. */
Test(tape, a_step_intermediate_is_freed_unless_retained) {
    th_record_errors();
    tg_rng rng;
    tg_rng_seed(&rng, 81);
    tg_rnn_config rc = {.input_size = 4, .hidden_size = 6, .num_layers = 1, .dtype = TG_F64};
    tg_rnn *m = tg_rnn_new(&g_plain_gru_keep, &rc, &rng);
    cr_assert_not_null(m, "%s", tg_last_error());
    tg_tensor *x = th_rand(82, TG_SHAPE(5, 3, 4), -1, 1);
    tg_set_requires_grad(x, true);
    cr_assert_not_null(tg_rnn_forward(m, x, NULL, NULL), "%s", tg_last_error());
    cr_assert_not_null(g_kept);
    cr_expect(isfinite(tg_get(g_kept, 17)), "%s", th_last_message()); /* the last step's, retained */
    cr_expect_eq(th_error_count(), 0, "%s", th_last_message());
    cr_expect(isnan(tg_get(g_loose, 0)));
    cr_expect(strstr(th_last_message(), "tg_get: argument t [3,6] (the result of tg_add) was freed by the tape because no "
                                        "backward needs it"), "%s", th_last_message());
    th_reset_errors();
    /* and the tape holds more such results, one per product or sum whose backward needs only inputs */
    size_t freed_results = 0;
    for (size_t i = 0; i < tg_tape_records(); i++) {
        const tg_record *r = tg__tape_record(i);
        if (r->out->storage->data == NULL) freed_results++;
    }
    cr_expect_gt(freed_results, 0);
    tg_release(g_kept);
    g_kept = NULL;
    tg_tape_reset();
    tg_release(x);
    tg_rnn_free(m);
    cr_expect_eq(tg_live_tensors(), 0);
}
