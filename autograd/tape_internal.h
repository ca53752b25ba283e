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

typedef enum tg_op {
    TG_OP_ADD,        /* a + b (broadcast)                */
    TG_OP_SUB,        /* a - b (broadcast)                */
    TG_OP_MUL,        /* a ⊙ b (broadcast)                */
    TG_OP_DIV,        /* a / b (broadcast)                */
    TG_OP_AFFINE,     /* f[0] x + f[1]: neg, add/mul/rsub scalar */
    TG_OP_POW,        /* x^f[0]                           */
    TG_OP_EXP,        /* e^x (saves output)               */
    TG_OP_LOG,        /* log x                            */
    TG_OP_SQRT,       /* √x (saves output)                */
    TG_OP_TANH,       /* tanh x (saves output)            */
    TG_OP_SIGMOID,    /* σ(x) (saves output)              */
    TG_OP_RELU,       /* max(x, 0) (saves output)         */
    TG_OP_LEAKY_RELU, /* x>0 ? x : f[0] x                 */
    TG_OP_SOFTPLUS,   /* log(1+e^x)                       */
    TG_OP_ABS,        /* |x|                              */
    TG_OP_CLAMP,      /* min(max(x, f[0]), f[1])          */
    TG_OP_MATMUL,     /* op(a)·op(b); k[0] = trans_a, k[1] = trans_b */
    TG_OP_LINEAR,     /* x·Wᵀ + b                         */
    TG_OP_LINEAR_ADD, /* c + x·Wᵀ + b; in = x, W, c[, b]  */
    TG_OP_TRANSPOSE,  /* swap axes k[0], k[1]             */
    TG_OP_RESHAPE,    /* same data, new shape (a view)    */
    TG_OP_SELECT,     /* x[k[0]] along axis 0 (a view)    */
    TG_OP_SLICE,      /* x[k[1]:k[2]] along axis k[0]     */
    TG_OP_CONCAT,     /* along axis k[0]                  */
    TG_OP_STACK,      /* along a new axis 0               */
    TG_OP_SUM,        /* over axis k[0] (k[0] = -1: all); f[0] = scale (1 or 1/n for mean) */
    TG_OP_MAX,        /* over axis k[0]; aux = argmax (F64 indices) */
    TG_OP_SOFTMAX,    /* along axis k[0] (saves output)   */
    TG_OP_LOG_SOFTMAX,/* along axis k[0] (saves output)   */
    TG_OP_GATHER,     /* rows of weight; idx = indices    */
    TG_OP_DROPOUT,    /* x ⊙ mask / (1-p); aux = scaled mask */
    TG_OP_MASK_ROWS,  /* x[b] ⊙ mask[b]; aux = mask       */
    TG_OP_GATES,      /* per-gate non-linearity, [..,G·H] -> [G,..,H]; k[0] = G, k[1] = 2-bit codes (saves output) */
    TG_OP_GRU_GATES,  /* GRU r, z, n from the two projections [..,3H] -> [3,..,H] (saves hp and output) */
    TG_OP_COUNT
} tg_op;

#define TG_REC_INLINE 4 /* inputs held in the record itself (linear_add has 4); more go to the heap */

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

/* One row per op: its name, how many inputs (-1: variadic), which tensors backward reads (bit i =
 * input i, bit 7 = output; they are version-checked), and the backward function. */
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

/* backward functions, each defined right below its forward */
void tg__add_backward(tg_record *r, const tg_tensor *g);
void tg__sub_backward(tg_record *r, const tg_tensor *g);
void tg__mul_backward(tg_record *r, const tg_tensor *g);
void tg__div_backward(tg_record *r, const tg_tensor *g);
void tg__affine_backward(tg_record *r, const tg_tensor *g);
void tg__pow_backward(tg_record *r, const tg_tensor *g);
void tg__exp_backward(tg_record *r, const tg_tensor *g);
void tg__log_backward(tg_record *r, const tg_tensor *g);
void tg__sqrt_backward(tg_record *r, const tg_tensor *g);
void tg__tanh_backward(tg_record *r, const tg_tensor *g);
void tg__sigmoid_backward(tg_record *r, const tg_tensor *g);
void tg__relu_backward(tg_record *r, const tg_tensor *g);
void tg__leaky_relu_backward(tg_record *r, const tg_tensor *g);
void tg__softplus_backward(tg_record *r, const tg_tensor *g);
void tg__abs_backward(tg_record *r, const tg_tensor *g);
void tg__clamp_backward(tg_record *r, const tg_tensor *g);
void tg__matmul_backward(tg_record *r, const tg_tensor *g);
void tg__linear_backward(tg_record *r, const tg_tensor *g);
void tg__linear_add_backward(tg_record *r, const tg_tensor *g);
void tg__transpose_backward(tg_record *r, const tg_tensor *g);
void tg__reshape_backward(tg_record *r, const tg_tensor *g);
void tg__select_backward(tg_record *r, const tg_tensor *g);
void tg__slice_backward(tg_record *r, const tg_tensor *g);
void tg__concat_backward(tg_record *r, const tg_tensor *g);
void tg__stack_backward(tg_record *r, const tg_tensor *g);
void tg__sum_backward(tg_record *r, const tg_tensor *g);
void tg__max_backward(tg_record *r, const tg_tensor *g);
void tg__softmax_backward(tg_record *r, const tg_tensor *g);
void tg__log_softmax_backward(tg_record *r, const tg_tensor *g);
void tg__gather_backward(tg_record *r, const tg_tensor *g);
void tg__dropout_backward(tg_record *r, const tg_tensor *g);
void tg__mask_rows_backward(tg_record *r, const tg_tensor *g);
void tg__gates_backward(tg_record *r, const tg_tensor *g);
void tg__gru_gates_backward(tg_record *r, const tg_tensor *g);
#endif
