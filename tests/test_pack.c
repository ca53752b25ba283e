/* tests/test_pack.c - pad_sequence, pack_padded_sequence, pad_packed_sequence, pack_sequence and the
 * runner on packed input against torch.nn.utils.rnn (tests/data/pack_golden.h from
 * gen_pack_golden.py, torch 1.13): values, batch_sizes, sorted/unsorted indices (ties in torch's
 * order), total_length, the round trip's gradients, a 2-layer bidirectional LSTM on a PackedSequence;
 * torch's error rules. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "data/pack_golden.h"
#include "helpers.h"

#include <tapegrad/tapegrad.h>

TestSuite(pack, .init = th_live_start);

/* The golden sequences [L_i, 2, 3], F64, requires_grad; new refs. */
static void make_seqs(tg_tensor **s) {
    const double *v = pg_seqs;
    for (int i = 0; i < PG_B; i++) {
        s[i] = tg_from_f64(TG_F64, 3, (int64_t[]){pg_lengths[i], 2, 3}, v);
        tg_set_requires_grad(s[i], true);
        v += pg_lengths[i] * PG_F;
    }
}
static void free_seqs(tg_tensor **s) {
    for (int i = 0; i < PG_B; i++) tg_release(s[i]);
}

static void expect_values(const tg_tensor *t, const double *ref, int64_t n, double tol, const char *what) {
    cr_assert_not_null(t, "%s", what);
    cr_assert_eq(tg_numel(t), n, "%s: %lld elements, torch %lld", what, (long long)tg_numel(t), (long long)n);
    for (int64_t i = 0; i < n; i++)
        cr_assert(fabs(tg_get(t, i) - ref[i]) <= tol, "%s[%lld] = %.17g, torch %.17g", what, (long long)i, tg_get(t, i), ref[i]);
}

TH_TEST(pack, pad_sequence_matches_torch, th_live_check) {
    tg_tensor *s[PG_B];
    make_seqs(s);
    tg_tensor *x = tg_pad_sequence(PG_B, s, false, 0.25);
    cr_assert_eq(tg_ndim(x), 4);
    cr_expect(tg_shape(x)[0] == PG_T && tg_shape(x)[1] == PG_B && tg_shape(x)[2] == 2 && tg_shape(x)[3] == 3);
    expect_values(x, pg_padded, PG_T * PG_B * PG_F, 0, "pad_sequence");
    tg_tensor *xb = tg_pad_sequence(PG_B, s, true, -1.0);
    cr_expect(tg_shape(xb)[0] == PG_B && tg_shape(xb)[1] == PG_T);
    expect_values(xb, pg_padded_bf, PG_T * PG_B * PG_F, 0, "pad_sequence batch_first");
    free_seqs(s);
}

TH_TEST(pack, pack_and_pad_round_trip_matches_torch_with_gradients, th_live_check) {
    tg_tensor *s[PG_B];
    make_seqs(s);
    tg_packed_sequence p;
    cr_assert_eq(tg_pack_padded_sequence(tg_pad_sequence(PG_B, s, false, 0.25), PG_B, pg_lengths, false, false, &p), 0);
    expect_values(p.data, pg_packed_data, PG_N * PG_F, 0, "packed data");
    cr_expect(tg_ndim(p.data) == 3 && tg_shape(p.data)[0] == PG_N && tg_shape(p.data)[1] == 2);
    cr_expect_eq(p.max_len, PG_T);
    cr_expect_eq(p.batch, PG_B);
    for (int t = 0; t < PG_T; t++) cr_expect_eq(p.batch_sizes[t], pg_batch_sizes[t], "batch_sizes[%d]", t);
    for (int b = 0; b < PG_B; b++) {
        cr_expect_eq(p.sorted_indices[b], pg_sorted_indices[b], "sorted_indices[%d]", b);
        cr_expect_eq(p.unsorted_indices[b], pg_unsorted_indices[b], "unsorted_indices[%d]", b);
    }
    int64_t len[PG_B];
    tg_tensor *back = tg_pad_packed_sequence(&p, true, 9.0, PG_TOTAL, len);
    cr_assert(tg_shape(back)[0] == PG_B && tg_shape(back)[1] == PG_TOTAL);
    expect_values(back, pg_unpacked_bf, PG_B * PG_TOTAL * PG_F, 0, "pad_packed_sequence total_length 7");
    for (int b = 0; b < PG_B; b++) cr_expect_eq(len[b], pg_unpacked_lengths[b]);
    tg_tensor *w = tg_from_f64(TG_F64, 4, tg_shape(back), pg_round_trip_w);
    cr_assert_eq(tg_backward(tg_sum(tg_mul(back, w))), 0);
    const double *g = pg_round_trip_grad;
    for (int i = 0; i < PG_B; i++) {
        expect_values(tg_grad(s[i]), g, pg_lengths[i] * PG_F, 0, "round-trip gradient");
        g += pg_lengths[i] * PG_F;
    }
    tg_release(w);
    tg_packed_sequence_clear(&p);
    cr_expect_null(p.batch_sizes);
    free_seqs(s);
}

TH_TEST(pack, enforce_sorted_batch_first_and_pack_sequence, th_live_check) {
    tg_tensor *x = tg_from_f64(TG_F64, 3, (int64_t[]){4, 4, 3}, pg_sorted_x);
    tg_packed_sequence p;
    cr_assert_eq(tg_pack_padded_sequence(x, 4, pg_sorted_lengths, true, true, &p), 0);
    expect_values(p.data, pg_sorted_data, 11 * 3, 0, "enforce_sorted data");
    for (int t = 0; t < 4; t++) cr_expect_eq(p.batch_sizes[t], pg_sorted_batch_sizes[t]);
    cr_expect_null(p.sorted_indices, "enforce_sorted keeps no indices, like torch's None");
    tg_tensor *back = tg_pad_packed_sequence(&p, true, 0.0, 0, NULL);
    for (int b = 0; b < 4; b++) /* the real steps come back, the rest is padding */
        for (int t = 0; t < 4; t++)
            for (int f = 0; f < 3; f++) {
                int64_t i = (b * 4 + t) * 3 + f;
                cr_expect_eq(tg_get(back, i), t < pg_sorted_lengths[b] ? pg_sorted_x[i] : 0.0);
            }
    tg_packed_sequence_clear(&p);
    /* pack_sequence = pad_sequence + pack_padded_sequence */
    tg_tensor *s[PG_B];
    make_seqs(s);
    cr_assert_eq(tg_pack_sequence(PG_B, s, false, &p), 0);
    expect_values(p.data, pg_packed_data, PG_N * PG_F, 0, "pack_sequence");
    tg_packed_sequence_clear(&p);
    free_seqs(s);
    tg_release(x);
}

TH_TEST(pack, ties_are_ordered_like_torch_sort, th_live_check) {
    tg_tensor *x = tg_zeros(TG_F64, TG_SHAPE(3, 40, 1));
    tg_packed_sequence p;
    cr_assert_eq(tg_pack_padded_sequence(x, 40, pg_tie_lengths, false, false, &p), 0);
    for (int k = 0; k < 40; k++) cr_expect_eq(p.sorted_indices[k], pg_tie_sorted[k], "sorted_indices[%d]", k);
    tg_packed_sequence_clear(&p);
    tg_release(x);
}

TH_TEST(pack, lstm_on_a_packed_sequence_matches_torch, th_live_check) {
    tg_rng rng;
    tg_rng_seed(&rng, 1);
    tg_rnn *m = tg_rnn_new(tg_cell_by_name("lstm"), &(tg_rnn_config){.input_size = 6, .hidden_size = 4, .num_layers = 2,
                                                                      .bidirectional = true, .dtype = TG_F64}, &rng);
    cr_assert_not_null(m);
    int np = (int)(sizeof pg_lstm_params / sizeof pg_lstm_params[0]);
    cr_assert_eq(np, tg_params_count(m->params));
    for (int i = 0; i < np; i++) {
        tg_tensor *t = tg_params_find(m->params, pg_lstm_params[i].name);
        cr_assert_not_null(t, "%s", pg_lstm_params[i].name);
        cr_assert_eq(tg_numel(t), pg_lstm_params[i].n);
        for (int j = 0; j < pg_lstm_params[i].n; j++) tg_set(t, j, pg_lstm_params[i].v[j]);
    }
    tg_tensor *s[PG_B], *s6[PG_B];
    make_seqs(s);
    for (int i = 0; i < PG_B; i++) s6[i] = tg_reshape(s[i], 2, (int64_t[]){pg_lengths[i], 6});
    tg_packed_sequence x, y;
    cr_assert_eq(tg_pack_sequence(PG_B, s6, false, &x), 0);
    tg_rnn_output out = {0};
    cr_assert_eq(tg_rnn_forward_packed(m, &x, NULL, &y, &out), 0, "%s", tg_last_error());
    expect_values(y.data, pg_lstm_y, PG_N * 8, 1e-12, "packed LSTM output");
    for (int b = 0; b < PG_B; b++) cr_expect_eq(y.sorted_indices[b], x.sorted_indices[b]);
    expect_values(out.h_n, pg_lstm_h, 4 * PG_B * 4, 1e-12, "h_n");
    expect_values(out.c_n, pg_lstm_c, 4 * PG_B * 4, 1e-12, "c_n");
    tg_rnn_output_clear(&out);
    tg_packed_sequence_clear(&x);
    tg_packed_sequence_clear(&y);
    free_seqs(s);
    tg_rnn_free(m);
}

TH_TEST(pack, padding_does_not_reach_the_gradient, th_live_check) {
    tg_tensor *s[PG_B];
    make_seqs(s);
    tg_tape_reset();
    tg_packed_sequence p;
    cr_assert_eq(tg_pack_sequence(PG_B, s, false, &p), 0);
    tg_tensor *y = tg_pad_packed_sequence(&p, false, 3.0, 6, NULL);
    tg_tensor *loss = tg_sum(tg_mul(y, y));
    cr_assert_eq(tg_backward(loss), 0);
    /* d sum(y²)/d s = 2 s: padding does not leak into the gradient */
    for (int i = 0; i < PG_B; i++)
        for (int64_t j = 0; j < tg_numel(s[i]); j++) cr_expect_eq(tg_get(tg_grad(s[i]), j), 2 * tg_get(s[i], j));
    tg_packed_sequence_clear(&p);
    free_seqs(s);
}

TH_TEST(pack, bad_arguments_are_refused_with_torchs_messages, th_live_check) {
    th_record_errors();
    tg_tensor *x = tg_zeros(TG_F64, TG_SHAPE(4, 3, 2));
    tg_packed_sequence p;
    struct { int64_t lengths[3]; int64_t batch; bool sorted; const char *needle; } bad[] = {
        {{4, 0, 1}, 3, false, "greater than 0"},
        {{4, 5, 1}, 3, false, "exceeds the 4 steps"},
        {{2, 3, 1}, 3, true, "sorted in decreasing order when `enforce_sorted` is True"},
        {{2, 3, 1}, 2, false, "expected 3 lengths"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        th_reset_errors();
        cr_expect_eq(tg_pack_padded_sequence(x, bad[i].batch, bad[i].lengths, false, bad[i].sorted, &p), -1);
        cr_expect(strstr(th_last_message(), bad[i].needle) != NULL, "case %zu: %s", i, th_last_message());
        cr_expect_null(p.batch_sizes);
    }
    th_reset_errors();
    tg_tensor *flat = tg_zeros(TG_F64, TG_SHAPE(4));
    cr_expect_eq(tg_pack_padded_sequence(flat, 3, (int64_t[]){1, 1, 1}, false, false, &p), -1);
    tg_release(flat);
    cr_expect(strstr(th_last_message(), "must be [T, B, *]") != NULL, "%s", th_last_message());
    /* an empty batch: torch 1.13's RuntimeError "Cannot pack empty tensors." (ASan: no read past lengths) */
    tg_tensor *empty = tg_zeros(TG_F64, TG_SHAPE(4, 0, 2));
    int64_t *no_lengths = malloc(1); /* a live pointer to nothing the function may read */
    th_reset_errors();
    cr_expect_eq(tg_pack_padded_sequence(empty, 0, no_lengths, false, false, &p), -1);
    cr_expect(strstr(th_last_message(), "input [4,0,2]: Cannot pack empty tensors.") != NULL, "%s", th_last_message());
    cr_expect_null(p.batch_sizes);
    free(no_lengths);
    tg_release(empty);
    cr_assert_eq(tg_pack_padded_sequence(x, 3, (int64_t[]){4, 2, 3}, false, false, &p), 0);
    th_reset_errors();
    cr_expect_null(tg_pad_packed_sequence(&p, false, 0.0, 3, NULL));
    cr_expect(strstr(th_last_message(), "total_length=3 and max sequence length being 4") != NULL, "%s", th_last_message());
    p.batch_sizes[3] = 3; /* tampered: more sequences at step 3 than at step 2 */
    th_reset_errors();
    cr_expect_null(tg_pad_packed_sequence(&p, false, 0.0, 0, NULL));
    cr_expect(strstr(th_last_message(), "batch_sizes[3] = 3") != NULL, "%s", th_last_message());
    tg_packed_sequence_clear(&p);
    /* pad_sequence: empty list, mismatched trailing shape or dtype */
    tg_tensor *a = tg_zeros(TG_F64, TG_SHAPE(2, 3)), *b = tg_zeros(TG_F64, TG_SHAPE(2, 4)), *c = tg_zeros(TG_F32, TG_SHAPE(1, 3));
    th_reset_errors();
    cr_expect_null(tg_pad_sequence(0, NULL, false, 0));
    cr_expect(strstr(th_last_message(), "empty list") != NULL, "%s", th_last_message());
    th_reset_errors();
    cr_expect_null(tg_pad_sequence(2, (tg_tensor *[]){a, b}, false, 0));
    cr_expect(strstr(th_last_message(), "sequence 1 is [2,4] F64, sequence 0 is [2,3] F64") != NULL, "%s", th_last_message());
    th_reset_errors();
    cr_expect_null(tg_pad_sequence(2, (tg_tensor *[]){a, c}, false, 0));
    cr_expect(strstr(th_last_message(), "F32") != NULL, "%s", th_last_message());
    tg_release(a);
    tg_release(b);
    tg_release(c);
    tg_release(x);
}
