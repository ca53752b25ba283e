/* autograd/tape_internal.h - tape records and the op table (internal).
 *
 * Ownership runs one way: tape -> record -> (inputs, output, aux). A tensor points back to the record
 * that made it only by index (tensor->creator), never by ownership, so ops that save their own output
 * (tanh, sigmoid, exp) make no reference cycle. */
#ifndef TG_TAPE_INTERNAL_H
#define TG_TAPE_INTERNAL_H
#include "tensor/internal.h"
#include <tapegrad/autograd.h>
#include <tapegrad/ops.h>

/* The ops, one line each: X(ENUM, name, arity, saves) and the op's meaning in a comment.
 *   ENUM   the record's op, TG_OP_<ENUM>
 *   name   the public function tg_<name> (ops.h): the op's name in messages, tape dumps and tests;
 *          its backward is tg__<name>_backward, defined right below the forward in an ops_*.c file
 *   arity  number of inputs; -1: variadic (concat, stack) or optional ones (linear's bias)
 *   saves  what backward reads: IN0, IN1, IN2 (input i), OUT (the output), or 0. These tensors are
 *          version-checked by backward; tests/test_ops.c (saves_are_all_backward_reads) poisons
 *          every other input and the output after the forward and requires identical gradients.
 * The enum, the op table (op_table.c) and the backward prototypes below are made from these lines,
 * so a missing backward fails the link ("undefined reference to tg__<name>_backward"). An X-macro
 * rather than a table of designated initialisers because the enum and the prototypes must follow
 * from the same line, which a C initialiser cannot give. Recipe: docs/design.md, "Adding an op". */
#define TG_OPS(X) \
    X(ADD, add, 2, 0)                        /* a + b (broadcast) */                                \
    X(SUB, sub, 2, 0)                        /* a - b (broadcast) */                                \
    X(MUL, mul, 2, IN0 | IN1)                /* a ⊙ b (broadcast) */                                \
    X(DIV, div, 2, IN0 | IN1)                /* a / b (broadcast) */                                \
    X(AFFINE, affine, 1, 0)                  /* f[0] x + f[1]: neg, add/mul/rsub scalar */          \
    X(POW, pow_scalar, 1, IN0)               /* x^f[0] */                                           \
    X(EXP, exp, 1, OUT)                      /* e^x */                                              \
    X(LOG, log, 1, IN0)                      /* log x */                                            \
    X(SQRT, sqrt, 1, OUT)                    /* √x */                                               \
    X(TANH, tanh, 1, OUT)                    /* tanh x */                                           \
    X(SIGMOID, sigmoid, 1, OUT)              /* σ(x) */                                             \
    X(RELU, relu, 1, OUT)                    /* max(x, 0) */                                        \
    X(LEAKY_RELU, leaky_relu, 1, IN0)        /* x>0 ? x : f[0] x */                                 \
    X(SOFTPLUS, softplus, 1, IN0)            /* log(1+e^x) */                                       \
    X(ABS, abs, 1, IN0)                      /* |x| */                                              \
    X(CLAMP, clamp, 1, IN0)                  /* min(max(x, f[0]), f[1]) */                          \
    X(MATMUL, matmul, 2, IN0 | IN1)          /* op(a)·op(b); k[0] = trans_a, k[1] = trans_b */      \
    X(LINEAR, linear, -1, IN0 | IN1)         /* x·Wᵀ + b; in = x, W[, b] */                         \
    X(LINEAR_ADD, linear_add, -1, IN0 | IN1) /* c + x·Wᵀ + b; in = x, W, c[, b] */                  \
    X(TRANSPOSE, transpose, 1, 0)            /* swap axes k[0], k[1] */                             \
    X(RESHAPE, reshape, 1, 0)                /* same data, new shape (a view) */                    \
    X(SELECT, select, 1, 0)                  /* x[k[0]] along axis 0 (a view) */                    \
    X(SLICE, slice, 1, 0)                    /* x[k[1]:k[2]] along axis k[0] */                     \
    X(CONCAT, concat, -1, 0)                 /* along axis k[0] */                                  \
    X(STACK, stack, -1, 0)                   /* along a new axis 0 */                               \
    X(SUM, sum, 1, 0)                        /* over axis k[0] (-1: all); f[0] = 1 or 1/n (mean) */ \
    X(MAX, max_axis, 1, 0)                   /* over axis k[0]; aux = argmax (F64 indices) */       \
    X(SOFTMAX, softmax, 1, OUT)              /* along axis k[0] */                                  \
    X(LOG_SOFTMAX, log_softmax, 1, OUT)      /* along axis k[0] */                                  \
    X(GATHER, gather_rows, 1, 0)             /* rows of weight; idx = indices */                    \
    X(DROPOUT, dropout, 1, 0)                /* x ⊙ mask / (1-p); aux = scaled mask */              \
    X(MASK_ROWS, mask_rows, 1, 0)            /* x[b] ⊙ mask[b]; aux = mask */                       \
    X(GATES, gates, 1, OUT)                  /* [..,G·H] -> [G,..,H]; k[0] = G, k[1] = codes */     \
    X(GRU_GATES, gru_gates, 2, IN1 | OUT)    /* GRU r, z, n: [..,3H] x 2 -> [3,..,H] */     \
    X(LSTM_STATE, lstm_state, 2, IN0 | IN1 | OUT) /* (h', c') of gates [4,..,H] and c: [2,..,H] */ \
    X(LERP, lerp, 3, IN0 | IN1 | IN2)        /* a + w ⊙ (b - a) */                                  \
    X(LSTM_CELL, lstm_cell_, -1, IN1 | IN2 | IN3 | OUT) /* LSTM step; in = xp, h, W, c[, b]; aux = gates */ \
    X(GRU_CELL, gru_cell_, -1, IN1 | IN2 | OUT) /* GRU step; in = xp, h, W[, b]; aux = gates; out = h', hp_n */ \
    X(POINTWISE_LOSS, pointwise_loss, 2, IN0 | IN1) /* loss(x, y) per element; k[0] kind, f[0] β/δ */ \
    X(CTC, ctc_nll, 1, IN0)                  /* CTC -log p per sequence; aux = α, nll; idx = lengths, targets */

typedef enum tg_op {
#define TG__OP_ENUM(E, name, arity, saves) TG_OP_##E,
    TG_OPS(TG__OP_ENUM)
#undef TG__OP_ENUM
    TG_OP_COUNT
} tg_op;

#define TG_REC_INLINE 5 /* inputs held in the record itself (lstm_cell_ has 5); more go to the heap */

typedef struct tg_record {
    tg_op op;
    int nin;
    tg_tensor *in_inline[TG_REC_INLINE];
    uint64_t ver_inline[TG_REC_INLINE];
    tg_tensor **in;         /* owned refs: in_inline, or heap for concat/stack */
    uint64_t *in_version;   /* storage versions of the inputs when recorded */
    tg_tensor *out;         /* owned ref */
    uint64_t out_version;
    tg_tensor *aux;         /* owned ref or NULL: mask, argmax, ... */
    int64_t *idx;           /* owned heap array or NULL (gather indices) */
    double f[2];
    int64_t k[4];
} tg_record;

typedef void (*tg_backward_fn)(tg_record *r, const tg_tensor *gout);

/* One row per op, made from its TG_OPS line: its name, how many inputs (-1: variadic), which tensors
 * backward reads (bit i = input i, bit 7 = output; they are version-checked), the backward function. */
typedef struct tg_op_info {
    const char *name;
    int arity;
    unsigned saves;
    tg_backward_fn backward;
} tg_op_info;
#define TG_SAVES_OUT 0x80u

extern const tg_op_info tg_op_table[TG_OP_COUNT];

/* Allocates an op result (tape-owned). */
tg_tensor *tg__result(tg_dtype dtype, int ndim, const int64_t *shape);
/* Adds a tensor to the tape's autorelease pool (takes the caller's reference). */
void tg__autorelease(tg_tensor *t);
/* Records op producing out from inputs, if recording is on and some input requires grad. Returns the
 * record (to fill f/k/aux) or NULL when nothing was recorded. */
tg_record *tg__record(tg_op op, tg_tensor *out, int nin, const tg_tensor *const *in);
/* The gradient buffer of an input, allocated zeroed on first use; NULL if t needs no gradient. */
tg_tensor *tg__grad_buf(tg_tensor *t);
/* The same for a backward that writes EVERY element of the gradient: a buffer allocated now is left
 * uninitialised and *assign is set, so the caller stores (=) instead of adding (+=) into zeros. That
 * saves a memset and a read of every element for the first contribution, which for most tensors of a
 * training step is the only one. *assign is false when the buffer already held a gradient. */
tg_tensor *tg__grad_buf_assign(tg_tensor *t, bool *assign);
/* Gives t the upstream gradient g itself (a new reference, no copy) when t needs a gradient, has none
 * yet, has g's shape and dtype, and g is the gradient of r's output that the backward loop drops right
 * after this record (the output is not retain_grad). Returns true if it did. Only one input of a record
 * may take g: later contributions are added into t's gradient, which is then g's storage. */
bool tg__grad_share(const tg_record *r, tg_tensor *t, const tg_tensor *g);
bool tg__needs_grad(const tg_tensor *t);
/* A pack scope (autograd/ops_matrix.c): inside it, a weight used again as the B operand of linear /
 * linear_add is packed once and reused; everything packed is freed when the outermost scope ends.
 * The runner opens one around the time loop of each layer and direction, tg_backward one per pass.
 * Calls nest; every begin needs its end. */
void tg__pack_scope_begin(void);
void tg__pack_scope_end(void);
/* A defer scope (autograd/ops_matrix.c): inside it, the weight gradient dW += Gᵀ·x of a linear /
 * linear_add with few rows (a recurrent step) is staged and added with one GEMM over many steps: when
 * the staging buffer is full, at tg__defer_flush_for(W), and when the outermost scope ends. tg_backward
 * opens one per pass and flushes before the backward of the record that produced a staged weight. */
void tg__defer_scope_begin(void);
void tg__defer_scope_end(void);
void tg__defer_flush_for(const tg_tensor *t);
/* out [R,O] = [c +] b + x·Wᵀ (x [R,I] and W [O,I] contiguous, b [O] or NULL, c [R,O] or NULL), no record: the forward product
 * of tg_linear (autograd/ops_matrix.c) for the fused ops of autograd/ops_fused.c, reusing a packed W
 * inside a pack scope; same rounding as tg_linear. */
void tg__linear_into(const tg_tensor *x, const tg_tensor *W, const tg_tensor *b, const tg_tensor *c, int64_t R,
                     tg_tensor *out);
/* The record on the current tape that produced t, or NULL (a leaf, or a result of an older tape).
 * returns: tape-owned (for tests and tools that inspect the tape). */
const tg_record *tg__record_of(const tg_tensor *t);
/* Record i (0 <= i < tg_tape_records()) of the current tape, or NULL. returns: tape-owned. */
const tg_record *tg__tape_record(size_t i);

/* backward functions, each defined right below its forward */
#define TG__OP_BACKWARD_PROTO(E, name, arity, saves) void tg__##name##_backward(tg_record *r, const tg_tensor *g);
TG_OPS(TG__OP_BACKWARD_PROTO)
#undef TG__OP_BACKWARD_PROTO
#endif
