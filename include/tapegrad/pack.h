/* tapegrad/pack.h - variable-length sequences: torch.nn.utils.rnn's pad_sequence,
 * pack_padded_sequence, pad_packed_sequence and pack_sequence, on the tape (gradients flow back to
 * every input).
 *
 * Worked example (three sequences of lengths 3, 5, 2 with 4 features, into an LSTM and back):
 *
 *     tg_tensor *seqs[3] = {a, b, c};                               // [3,4], [5,4], [2,4]
 *     tg_tensor *x = tg_pad_sequence(3, seqs, false, 0.0);          // [5,3,4], tape-owned
 *     int64_t lengths[3] = {3, 5, 2};
 *     tg_packed_sequence p;
 *     tg_pack_padded_sequence(x, 3, lengths, false, false, &p);     // enforce_sorted = false
 *     // p.data [10,4], p.batch_sizes {3,3,2,1,1}, p.sorted_indices {1,0,2}, p.unsorted_indices {1,0,2}
 *     tg_packed_sequence y;
 *     tg_rnn_forward_packed(lstm, &p, NULL, &y, NULL);              // torch's LSTM on a PackedSequence
 *     int64_t out_len[3];
 *     tg_tensor *out = tg_pad_packed_sequence(&y, false, 0.0, 0, out_len); // [5,3,H], lengths back
 *     tg_packed_sequence_clear(&p); tg_packed_sequence_clear(&y);
 *
 * Layout, as torch's PackedSequence: data holds step 0 of every sequence, then step 1 of every
 * sequence still running, and so on, each step's sequences in sorted order (longest first; ties keep
 * their batch order, a stable sort); batch_sizes[t] is the number of sequences longer than t;
 * sorted_indices[k] is the batch index of the k-th longest sequence and unsorted_indices its inverse.
 * The shape rules and messages follow torch's (lengths > 0 and at most T, decreasing when
 * enforce_sorted, total_length >= the longest length). Errors: tg_error (default: print and abort; with
 * a handler the function returns NULL / -1 and out is left cleared).
 */
#ifndef TAPEGRAD_PACK_H
#define TAPEGRAD_PACK_H
#include <tapegrad/nn.h>
#include <tapegrad/tensor.h>

#ifdef __cplusplus
extern "C" {
#endif

/* n >= 1 sequences [L_i, *] (same trailing shape and dtype, L_i >= 0) padded with padding_value to
 * [T, n, *] ([n, T, *] when batch_first), T = max L_i. returns: tape-owned, or NULL after tg_error. */
tg_tensor *tg_pad_sequence(int n, tg_tensor *const *seqs, bool batch_first, double padding_value);

typedef struct tg_packed_sequence {
    tg_tensor *data;            /* [sum of lengths, *], tape-owned */
    int64_t *batch_sizes;       /* [max_len], owned */
    int64_t *sorted_indices;    /* [batch], owned; NULL when packed with enforce_sorted (identity) */
    int64_t *unsorted_indices;  /* [batch], owned; NULL when sorted_indices is */
    int64_t max_len, batch;     /* T and B */
} tg_packed_sequence;

/* input [T, B, *] ([B, T, *] when batch_first) and lengths[B] (each in 1..T) -> *out. enforce_sorted:
 * lengths must be non-increasing and no indices are kept; otherwise the batch is sorted by length.
 * Returns 0, or -1 after tg_error. args: borrowed. */
int tg_pack_padded_sequence(const tg_tensor *input, int64_t batch, const int64_t *lengths, bool batch_first,
                            bool enforce_sorted, tg_packed_sequence *out);
/* tg_pad_sequence then tg_pack_padded_sequence with the sequences' lengths (torch's pack_sequence). */
int tg_pack_sequence(int n, tg_tensor *const *seqs, bool enforce_sorted, tg_packed_sequence *out);
/* The inverse: [total_length, B, *] ([B, total_length, *] when batch_first) in the original batch
 * order, steps past a sequence's end = padding_value; total_length 0 means max_len, else it must be
 * >= max_len. lengths_out[B] (may be NULL) receives each sequence's length, in batch order.
 * returns: tape-owned, or NULL after tg_error. */
tg_tensor *tg_pad_packed_sequence(const tg_packed_sequence *p, bool batch_first, double padding_value,
                                  int64_t total_length, int64_t *lengths_out);
/* Frees the index arrays and zeroes *p (data belongs to the tape). NULL-safe. */
void tg_packed_sequence_clear(tg_packed_sequence *p);

/* The runner on a packed input, as torch.nn.LSTM/GRU/RNN(PackedSequence): runs tg_rnn_forward on
 * the padded batch with its lengths (opts->lengths and opts->batch_first are ignored: the packed
 * sequence carries them) and packs the output the same way into *y (y->data [sum, D·H]). out, when
 * given, receives the final states in the original batch order (as torch's h_n, c_n) and must be
 * cleared with tg_rnn_output_clear. Returns 0, or -1 after tg_error. */
int tg_rnn_forward_packed(const tg_rnn *m, const tg_packed_sequence *x, const tg_rnn_forward_opts *opts,
                          tg_packed_sequence *y, tg_rnn_output *out);

#ifdef __cplusplus
}
#endif
#endif
