/* autograd/op_table.c - the op table, made from the ops' TG_OP(...) declaration lines (each above its
 * forward in an autograd/ops_*.c file, collected into TG_OPS by the build: autograd/tape_internal.h;
 * the recipe for a new op is in docs/design.md §10). */
#include "autograd/tape_internal.h"

#define IN0 0x1u
#define IN1 0x2u
#define IN2 0x4u
#define IN3 0x8u
#define IN4 0x10u
#define IN5 0x20u
#define IN6 0x40u
#define IN7 0x80u
#define IN8 0x100u
#define IN9 0x200u
#define IN10 0x400u
#define IN11 0x800u
#define IN12 0x1000u
#define IN13 0x2000u
#define IN14 0x4000u
#define IN15 0x8000u
#define OUT TG_SAVES_OUT

const tg_op_info tg_op_table[TG_OP_COUNT] = {
#define OP_ROW(E, name, arity, saves) [TG_OP_##E] = {"tg_" #name, arity, saves, tg__##name##_backward},
    TG_OPS(OP_ROW)
#undef OP_ROW
};
