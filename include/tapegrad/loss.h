/* tapegrad/loss.h - loss functions with PyTorch's semantics (torch.nn.functional), composed from the
 * public ops of <tapegrad/ops.h>, so their gradients come from the tape and nothing here has backward
 * code.
 *
 * Worked example (a classifier over the last hidden state h [B,H] of a recurrent layer):
 *
 *     tg_tensor *logits = tg_linear(h, W_out, b_out);              // [B,C], tape-owned
 *     int64_t target[B] = {...};                                   // class indices, or -100 = padding
 *     tg_tensor *loss = tg_cross_entropy(logits, target, NULL);    // 0-d mean over non-padding rows
 *     tg_backward(loss);
 *
 * Every function: args: borrowed; returns: tape-owned (NULL after reporting a programming error through
 * tg_error - shape or dtype mismatch, class index out of range - or when an argument is NULL because
 * an earlier op failed, keeping that op's message).
 *
 * Reductions (like PyTorch's `reduction=`): TG_REDUCE_MEAN gives a 0-d tensor, the mean over the
 * elements (cross-entropy: the weighted mean over non-ignored targets); TG_REDUCE_SUM a 0-d sum;
 * TG_REDUCE_NONE the per-element (cross-entropy: per-row) losses, shaped like the input (or [N]).
 */
#ifndef TAPEGRAD_LOSS_H
#define TAPEGRAD_LOSS_H
#include <tapegrad/tensor.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum tg_reduction {
    TG_REDUCE_MEAN = 0, /* 0-d mean (the default, like PyTorch) */
    TG_REDUCE_SUM,      /* 0-d sum                              */
    TG_REDUCE_NONE,     /* one loss per element / row           */
    TG_REDUCE_BATCHMEAN /* sum / N (the input's first dimension): tg_kl_div only, torch's 'batchmean' */
} tg_reduction;

/* Mean squared error: (input - target)², reduced. input and target: same shape and dtype (PyTorch
 * broadcasts with a warning; here differing shapes are an error). Both may require grad. */
tg_tensor *tg_mse_loss(const tg_tensor *input, const tg_tensor *target, tg_reduction reduction);

typedef struct tg_cross_entropy_opts {
    tg_reduction reduction;  /* default TG_REDUCE_MEAN */
    int64_t ignore_index;    /* targets equal to this contribute 0 and are left out of the mean (-100) */
    const tg_tensor *weight; /* [C] class weights (not differentiated) or NULL (all 1). The mean is
                              * Σ w[t_i] l_i / Σ w[t_i] over non-ignored rows, like PyTorch. */
    double label_smoothing;  /* ε in [0, 1]: the target becomes (1-ε) one-hot + ε/C uniform (0) */
} tg_cross_entropy_opts;

/* The defaults above: mean, ignore_index -100, no weights, no smoothing. */
tg_cross_entropy_opts tg_cross_entropy_defaults(void);

/* Cross-entropy from unnormalised logits [N,C] and N class indices in [0, C) (or ignore_index), or
 * from logits [N,C,d1,...] (classes on axis 1, like torch) and N·d1·... indices laid out as [N,d1,...]
 * (TG_REDUCE_NONE then gives [N,d1,...]):
 *   l_i = -w[t_i] log_softmax(logits)_i,t_i   (smoothing: -Σ_c m_ic w_c log_softmax_ic)
 * Stable for logits of ±1e4 (log_softmax subtracts the row maximum). With mean reduction and every
 * target ignored the result is NaN (0/0) but its gradient is exactly 0, as in PyTorch (an all-padding
 * batch does not poison the parameters); rows of zero weight that are not ignored get a NaN gradient. opts NULL = tg_cross_entropy_defaults(). */
tg_tensor *tg_cross_entropy(const tg_tensor *logits, const int64_t *target, const tg_cross_entropy_opts *opts);

/* Negative log-likelihood from log-probabilities [N,C] or [N,C,d1,...] (e.g. tg_log_softmax output):
 * the same as tg_cross_entropy without the log_softmax. */
tg_tensor *tg_nll_loss(const tg_tensor *log_probs, const int64_t *target, const tg_cross_entropy_opts *opts);

/* Cross-entropy with class probabilities as targets (torch's cross_entropy with a float target of
 * the input's shape): logits and target [N,C] or [N,C,d1,...], same dtype;
 *   l_n = -Σ_c w_c t'_nc log_softmax(logits)_nc,   t' = (1-ε) t + ε/C  (ε = label_smoothing)
 * mean = Σ_n l_n / (numel / C) (the weights are not in the denominator, as in torch); NONE gives
 * [N] or [N,d1,...]. opts: reduction, weight, label_smoothing (ignore_index is not used). Both logits
 * and target may require grad. */
tg_tensor *tg_cross_entropy_probs(const tg_tensor *logits, const tg_tensor *target, const tg_cross_entropy_opts *opts);

/* L1: |input - target| reduced (gradient sgn(input - target), 0 where they are equal). Same shape
 * and dtype; both may require grad. */
tg_tensor *tg_l1_loss(const tg_tensor *input, const tg_tensor *target, tg_reduction reduction);
/* Smooth L1 with d = input - target: |d| < β ? d²/(2β) : |d| - β/2 (torch's default β = 1); β < 0
 * is an error. β = 0 gives |d| with torch's gradient: sgn(d), but -1 at d = 0 (not tg_l1_loss's 0). */
tg_tensor *tg_smooth_l1_loss(const tg_tensor *input, const tg_tensor *target, tg_reduction reduction, double beta);
/* Huber: |d| < δ ? d²/2 : δ (|d| - δ/2) (torch's default δ = 1); δ must be > 0. For β > 0,
 * huber(δ = β) = β · smooth_l1(β). */
tg_tensor *tg_huber_loss(const tg_tensor *input, const tg_tensor *target, tg_reduction reduction, double delta);
/* Kullback-Leibler divergence of input x (log-probabilities) from target y, per element:
 *   log_target false: y (log y - x), 0 where y = 0 (torch's xlogy(y, y) - y x)
 *   log_target true:  e^y (y - x)    (y log-probabilities)
 * Reductions: TG_REDUCE_BATCHMEAN (Σ / N, the mathematically correct KL of a batch, torch's
 * 'batchmean'), TG_REDUCE_MEAN (Σ / numel, torch's default, which torch warns about), SUM, NONE.
 * The target's gradient follows torch's (NaN where y = 0 with log_target false). */
tg_tensor *tg_kl_div(const tg_tensor *input, const tg_tensor *target, tg_reduction reduction, bool log_target);

typedef struct tg_bce_opts {
    tg_reduction reduction;      /* default TG_REDUCE_MEAN */
    const tg_tensor *weight;     /* per-element rescaling, broadcast against the input, or NULL */
    const tg_tensor *pos_weight; /* weight of positive examples, broadcast (e.g. [C] for [N,C]), or NULL */
} tg_bce_opts;

/* Binary cross-entropy from logits x and targets y in [0, 1] of the same shape:
 *   l = softplus(x) - x·y                       (= -[y log σ(x) + (1-y) log(1-σ(x))])
 *   l = (1-y)·x + (1 + (pos_weight-1)·y)·softplus(-x)   with pos_weight
 * then multiplied by weight. softplus is evaluated stably, so logits of ±1e4 give finite, exact losses.
 * opts NULL = mean, no weights. */
tg_tensor *tg_bce_with_logits(const tg_tensor *logits, const tg_tensor *target, const tg_bce_opts *opts);

/* Binary cross-entropy on probabilities x in [0, 1] (torch's binary_cross_entropy; an element outside
 * [0, 1] or NaN is an error naming it), targets y of the same shape:
 *   l = -w [y max(log x, -100) + (1-y) max(log(1-x), -100)]
 * with torch's gradient w (x - y) / max(x (1-x), 1e-12), finite at x = 0 and 1. opts: reduction and
 * weight (pos_weight is only for tg_bce_with_logits); NULL = mean, no weight. Prefer
 * tg_bce_with_logits on logits: it is exact where σ(x) rounds to 0 or 1. */
tg_tensor *tg_binary_cross_entropy(const tg_tensor *input, const tg_tensor *target, const tg_bce_opts *opts);

typedef struct tg_ctc_opts {
    int64_t blank;          /* the blank class (0, like torch) */
    tg_reduction reduction; /* MEAN (default): mean over sequences of nll_n / max(target_length_n, 1) */
    bool zero_infinity;     /* impossible alignments (nll = inf) give 0 and a 0 gradient (false) */
} tg_ctc_opts;

/* Connectionist temporal classification (torch.nn.CTCLoss): log_probs [T,N,C] (log_softmax output
 * over C classes, blank included; or [T,C], one sequence, whose NONE result is 0-d), targets either
 * padded [N,S] (target_stride = S) or concatenated (target_stride = 0: sequence n's labels follow
 * sequence n-1's), input_lengths[n] <= T, target_lengths[n] (<= S when padded; 0 allowed). Computed
 * in log space (alpha-beta recursions, a fused op with torch's backward). Reductions: MEAN divides
 * each sequence's loss by its target length (at least 1) and averages over N; SUM; NONE gives [N].
 * An alignment that cannot exist (input too short for the labels and the blanks between repeats) has
 * loss +inf and a NaN gradient, as in torch; zero_infinity makes both 0. The gradient sent to
 * log_probs is the exact derivative; torch's differs from it by e^lp (it is the gradient of the
 * logits of a log_softmax, a known torch issue), so with tg_log_softmax in front, as torch requires,
 * the logits get torch's gradient. An input length of 0 gives 0 for an empty target and
 * +inf otherwise (torch reads uninitialised memory there). opts NULL = blank 0, mean, no
 * zero_infinity. */
tg_tensor *tg_ctc_loss(const tg_tensor *log_probs, const int64_t *targets, int64_t target_stride,
                       const int64_t *input_lengths, const int64_t *target_lengths, const tg_ctc_opts *opts);

/* Greedy (best-path) CTC decoding of one sequence: the most likely class at each of its `length`
 * steps of log_probs [T,N,C] (column n), repeats merged, blanks dropped. Writes at most `cap` labels
 * to out and returns how many there are (which may exceed cap), or -1 after tg_error. */
int64_t tg_ctc_greedy_decode(const tg_tensor *log_probs, int64_t n, int64_t length, int64_t blank, int64_t *out,
                             int64_t cap);

/* Levenshtein distance between two label sequences (insertions, deletions, substitutions cost 1), the
 * usual CTC metric (edit distance / reference length = label error rate). -1 if a length is negative
 * or an array NULL with a positive length, or when out of memory. */
int64_t tg_edit_distance(const int64_t *a, int64_t na, const int64_t *b, int64_t nb);

#ifdef __cplusplus
}
#endif
#endif
