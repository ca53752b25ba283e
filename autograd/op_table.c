/* autograd/op_table.c - the one table of ops: name, arity, what backward reads, backward function.
 * Adding an op: its forward + backward in an ops_*.c file, an enum entry, a row here, a gradcheck
 * row in tests/test_ops.c (which walks this table to make sure none is missing). */
#include "autograd/tape_internal.h"

#define IN0 0x1u
#define IN1 0x2u
#define IN2 0x4u
#define OUT TG_SAVES_OUT

const tg_op_info tg_op_table[] = {
    [TG_OP_ADD] = {"tg_add", 2, 0, tg__add_backward},
    [TG_OP_SUB] = {"tg_sub", 2, 0, tg__sub_backward},
    [TG_OP_MUL] = {"tg_mul", 2, IN0 | IN1, tg__mul_backward},
    [TG_OP_DIV] = {"tg_div", 2, IN0 | IN1, tg__div_backward},
    [TG_OP_AFFINE] = {"tg_affine", 1, 0, tg__affine_backward},
    [TG_OP_POW] = {"tg_pow_scalar", 1, IN0, tg__pow_backward},
    [TG_OP_EXP] = {"tg_exp", 1, OUT, tg__exp_backward},
    [TG_OP_LOG] = {"tg_log", 1, IN0, tg__log_backward},
    [TG_OP_SQRT] = {"tg_sqrt", 1, OUT, tg__sqrt_backward},
    [TG_OP_TANH] = {"tg_tanh", 1, OUT, tg__tanh_backward},
    [TG_OP_SIGMOID] = {"tg_sigmoid", 1, OUT, tg__sigmoid_backward},
    [TG_OP_RELU] = {"tg_relu", 1, OUT, tg__relu_backward},
    [TG_OP_LEAKY_RELU] = {"tg_leaky_relu", 1, IN0, tg__leaky_relu_backward},
    [TG_OP_SOFTPLUS] = {"tg_softplus", 1, IN0, tg__softplus_backward},
    [TG_OP_ABS] = {"tg_abs", 1, IN0, tg__abs_backward},
    [TG_OP_CLAMP] = {"tg_clamp", 1, IN0, tg__clamp_backward},
    [TG_OP_MATMUL] = {"tg_matmul", 2, IN0 | IN1, tg__matmul_backward},
    [TG_OP_LINEAR] = {"tg_linear", -1, IN0 | IN1, tg__linear_backward},
    [TG_OP_LINEAR_ADD] = {"tg_linear_add", -1, IN0 | IN1, tg__linear_add_backward},
    [TG_OP_TRANSPOSE] = {"tg_transpose", 1, 0, tg__transpose_backward},
    [TG_OP_RESHAPE] = {"tg_reshape", 1, 0, tg__reshape_backward},
    [TG_OP_SELECT] = {"tg_select", 1, 0, tg__select_backward},
    [TG_OP_SLICE] = {"tg_slice", 1, 0, tg__slice_backward},
    [TG_OP_CONCAT] = {"tg_concat", -1, 0, tg__concat_backward},
    [TG_OP_STACK] = {"tg_stack", -1, 0, tg__stack_backward},
    [TG_OP_SUM] = {"tg_sum", 1, 0, tg__sum_backward},
    [TG_OP_MAX] = {"tg_max_axis", 1, 0, tg__max_backward},
    [TG_OP_SOFTMAX] = {"tg_softmax", 1, OUT, tg__softmax_backward},
    [TG_OP_LOG_SOFTMAX] = {"tg_log_softmax", 1, OUT, tg__log_softmax_backward},
    [TG_OP_GATHER] = {"tg_gather_rows", 1, 0, tg__gather_backward},
    [TG_OP_DROPOUT] = {"tg_dropout", 1, 0, tg__dropout_backward},
    [TG_OP_MASK_ROWS] = {"tg_mask_rows", 1, 0, tg__mask_rows_backward},
    [TG_OP_GATES] = {"tg_gates", 1, OUT, tg__gates_backward},
    [TG_OP_GRU_GATES] = {"tg_gru_gates", 2, IN1 | OUT, tg__gru_gates_backward},
};

_Static_assert(sizeof tg_op_table / sizeof tg_op_table[0] == TG_OP_COUNT,
               "tg_op_table needs one row per tg_op");
