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
    TG_REDUCE_NONE      /* one loss per element / row           */
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

/* Cross-entropy from unnormalised logits [N,C] and N class indices in [0, C) (or ignore_index):
 *   l_i = -w[t_i] log_softmax(logits)_i,t_i   (smoothing: -Σ_c m_ic w_c log_softmax_ic)
 * Stable for logits of ±1e4 (log_softmax subtracts the row maximum). With mean reduction and every
 * target ignored the result is NaN (0/0) but its gradient is exactly 0, as in PyTorch (an all-padding
 * batch does not poison the parameters); rows of zero weight that are not ignored get a NaN gradient. opts NULL = tg_cross_entropy_defaults(). */
tg_tensor *tg_cross_entropy(const tg_tensor *logits, const int64_t *target, const tg_cross_entropy_opts *opts);

/* Negative log-likelihood from log-probabilities [N,C] (e.g. tg_log_softmax output): the same as
 * tg_cross_entropy without the log_softmax. */
tg_tensor *tg_nll_loss(const tg_tensor *log_probs, const int64_t *target, const tg_cross_entropy_opts *opts);

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

#ifdef __cplusplus
}
#endif
#endif
