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

/* The ops. Each is declared once, on the line right above its forward in an autograd/ops_*.c file:
 *     TG_OP(ENUM, name, arity, saves)    followed by its meaning in a comment
 *     tg_tensor *tg_<name>(...) { ... tg__record(TG_OP_<ENUM>, ...) ... }
 *     void tg__<name>_backward(tg_record *r, const tg_tensor *g) { ... }
 *   ENUM   the record's op, TG_OP_<ENUM>
 *   name   the public function tg_<name> (ops.h): the op's name in messages, tape dumps and tests;
 *          its backward is tg__<name>_backward, defined right below the forward
 *   arity  number of inputs; -1: variadic (concat, stack) or optional ones (linear's bias)
 *   saves  what backward reads: IN0 .. IN15 (input i), OUT (the output), or 0. These tensors are
 *          version-checked by backward; tests/test_ops.c (saves_are_all_backward_reads) poisons
 *          every other input and the output after the forward and requires identical gradients.
 * The build collects those lines into the X-macro TG_OPS (autograd/gen_op_list.py writes
 * autograd/tg_op_list.h in the build directory; a malformed line or a name declared twice stops it
 * naming the file and line), and the enum, the op table (op_table.c) and the backward prototypes
 * below are made from it. A forward without its line does not build ("'TG_OP_<ENUM>' undeclared"),
 * a line without its backward does not link ("undefined reference to tg__<name>_backward"). Why the
 * line sits in the .c file rather than in a list here: docs/design.md §5. Recipe: §10, "Adding an op". */
#include "autograd/tg_op_list.h"

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
 * backward reads (bit i = input i for i < TG_SAVES_MAX_IN, TG_SAVES_OUT = the output; they are
 * version-checked), the backward function. */
typedef struct tg_op_info {
    const char *name;
    int arity;
    unsigned saves;
    tg_backward_fn backward;
} tg_op_info;
#define TG_SAVES_OUT 0x80000000u
#define TG_SAVES_MAX_IN 16 /* inputs that can be declared saved: IN0 .. IN15 */

extern const tg_op_info tg_op_table[TG_OP_COUNT];

/* Allocates an op result (tape-owned). */
tg_tensor *tg__result(tg_dtype dtype, int ndim, const int64_t *shape);
/* Adds a tensor to the tape's autorelease pool (takes the caller's reference). */
void tg__autorelease(tg_tensor *t);
/* Records op producing out from inputs, if recording is on and some input requires grad. Returns the
 * record (to fill f/k/aux) or NULL when nothing was recorded. */
tg_record *tg__record(tg_op op, tg_tensor *out, int nin, const tg_tensor *const *in);
/* An op's in-place write over the elements of t (a contiguous view), for an op whose writes never reach
 * beyond them: the storage version is bumped only when the write overlaps the hull of the element ranges
 * that records saved for backward (tg__record keeps one [lo, hi) per storage, of every input and output
 * its op's `saves` declares), and the hull is emptied with the bump (every earlier saver is stale now).
 * Why: the runner's input projection is one storage for all T steps; a step that stores its gates over
 * its own rows must not make the gates an earlier step saved look modified (lstm_fgr, h5fgr). Other
 * in-place writes bump the version whatever they touch (tg_bump_version), which stays sound: the hull
 * only ever covers more than what is still saved. */
void tg__write_over(tg_tensor *t);
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
/* The backward of out = x·Wᵀ + b for a fused op whose x is a scratch buffer of its own (not on the tape):
 * dx = G·W into dx [R,I] (stored when assign, else added; NULL: not wanted), dW += Gᵀ·x (staged inside a
 * defer scope, as tg_linear's), db += Σ_rows G (b NULL: none). */
void tg__linear_grads_into(const tg_tensor *x, tg_tensor *W, tg_tensor *b, const tg_tensor *G, tg_tensor *dx,
                           bool assign);
/* The record on the current tape that produced t, or NULL (a leaf, or a result of an older tape).
 * returns: tape-owned (for tests and tools that inspect the tape). */
const tg_record *tg__record_of(const tg_tensor *t);
/* Record i (0 <= i < tg_tape_records()) of the current tape, or NULL. returns: tape-owned. */
const tg_record *tg__tape_record(size_t i);

/* backward functions, each defined right below its forward */
#define TG__OP_BACKWARD_PROTO(E, name, arity, saves) void tg__##name##_backward(tg_record *r, const tg_tensor *g);
TG_OPS(TG__OP_BACKWARD_PROTO)
#undef TG__OP_BACKWARD_PROTO
/* An op's declaration line in its ops_*.c file: its backward's prototype, and a constant that needs
 * TG_OP_<ENUM>, so a line the generator did not read (a file missing from autograd/meson.build's
 * op_sources) fails the build naming the op. */
#define TG_OP(E, name, arity, saves) \
    enum { tg__op_declared_##E = TG_OP_##E };                                                          \
    void tg__##name##_backward(tg_record *r, const tg_tensor *g);
#endif
