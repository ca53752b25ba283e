/* tensor/ktarget.h - renames the kernels of one CPU target's build (internal; see tensor/dispatch.h).
 *
 * meson compiles the kernel sources (gemm.c, vmath.c, steps.c, updates.c, velem.c) once per CPU target with
 * `-include tensor/ktarget.h -DTG_KSUFFIX=_avx2` (and that target's -m flags), so that each build
 * defines tg_gemm_f32_avx2, tg_vexp_f32_avx2, ... instead of tg_gemm_f32, tg_vexp_f32; tensor/dispatch.c
 * defines the unsuffixed names, which call the build chosen at start-up. A kernel missing here is
 * defined twice (by dispatch.c and by every target's build): the link fails, so it cannot be forgotten
 * silently. The list is TG_KERNELS in tensor/dispatch.h; keep the two in step. */
#ifndef TG_TENSOR_KTARGET_H
#define TG_TENSOR_KTARGET_H
#ifndef TG_KSUFFIX
#error "tensor/ktarget.h is for the per-target kernel builds (meson passes -DTG_KSUFFIX=_<target>)"
#endif
#define TG_KCAT_(a, b) a##b
#define TG_KCAT(a, b) TG_KCAT_(a, b)
#define TG_KNAME(name) TG_KCAT(name, TG_KSUFFIX)

#define tg_gemm_f32 TG_KNAME(tg_gemm_f32)
#define tg_gemm_f64 TG_KNAME(tg_gemm_f64)
#define tg_gemm_packs TG_KNAME(tg_gemm_packs)
#define tg_gemm_packed_b_size_f32 TG_KNAME(tg_gemm_packed_b_size_f32)
#define tg_gemm_packed_b_size_f64 TG_KNAME(tg_gemm_packed_b_size_f64)
#define tg_gemm_pack_b_f32 TG_KNAME(tg_gemm_pack_b_f32)
#define tg_gemm_pack_b_f64 TG_KNAME(tg_gemm_pack_b_f64)
#define tg_gemm_prepacked_f32 TG_KNAME(tg_gemm_prepacked_f32)
#define tg_gemm_prepacked_f64 TG_KNAME(tg_gemm_prepacked_f64)
#define tg_gemm_linear_f32 TG_KNAME(tg_gemm_linear_f32)
#define tg_gemm_linear_f64 TG_KNAME(tg_gemm_linear_f64)
#define tg_gemm_ref_f64 TG_KNAME(tg_gemm_ref_f64)
#define tg_vexp_f32 TG_KNAME(tg_vexp_f32)
#define tg_vtanh_f32 TG_KNAME(tg_vtanh_f32)
#define tg_vsigmoid_f32 TG_KNAME(tg_vsigmoid_f32)
#define tg_vexp_f64 TG_KNAME(tg_vexp_f64)
#define tg_vtanh_f64 TG_KNAME(tg_vtanh_f64)
#define tg_vsigmoid_f64 TG_KNAME(tg_vsigmoid_f64)
#define tg_vsum_f32 TG_KNAME(tg_vsum_f32)
#define tg_vsum_f64 TG_KNAME(tg_vsum_f64)
#define tg_lstm_fwd_rows_f32 TG_KNAME(tg_lstm_fwd_rows_f32)
#define tg_lstm_fwd_rows_f64 TG_KNAME(tg_lstm_fwd_rows_f64)
#define tg_lstm_bwd_rows_f32 TG_KNAME(tg_lstm_bwd_rows_f32)
#define tg_lstm_bwd_rows_f64 TG_KNAME(tg_lstm_bwd_rows_f64)
#define tg_gru_fwd_rows_f32 TG_KNAME(tg_gru_fwd_rows_f32)
#define tg_gru_fwd_rows_f64 TG_KNAME(tg_gru_fwd_rows_f64)
#define tg_gru_bwd_rows_f32 TG_KNAME(tg_gru_bwd_rows_f32)
#define tg_gru_bwd_rows_f64 TG_KNAME(tg_gru_bwd_rows_f64)
#define tg_gz_gates_rows_f32 TG_KNAME(tg_gz_gates_rows_f32)
#define tg_gz_gates_rows_f64 TG_KNAME(tg_gz_gates_rows_f64)
#define tg_gz_blend_rows_f32 TG_KNAME(tg_gz_blend_rows_f32)
#define tg_gz_blend_rows_f64 TG_KNAME(tg_gz_blend_rows_f64)
#define tg_gz_bwd1_rows_f32 TG_KNAME(tg_gz_bwd1_rows_f32)
#define tg_gz_bwd1_rows_f64 TG_KNAME(tg_gz_bwd1_rows_f64)
#define tg_gz_bwd2_rows_f32 TG_KNAME(tg_gz_bwd2_rows_f32)
#define tg_gz_bwd2_rows_f64 TG_KNAME(tg_gz_bwd2_rows_f64)
#define tg_upd_adam_f32 TG_KNAME(tg_upd_adam_f32)
#define tg_upd_adam_f64 TG_KNAME(tg_upd_adam_f64)
#define tg_upd_rmsprop_f32 TG_KNAME(tg_upd_rmsprop_f32)
#define tg_upd_rmsprop_f64 TG_KNAME(tg_upd_rmsprop_f64)
#define tg_upd_adagrad_f32 TG_KNAME(tg_upd_adagrad_f32)
#define tg_upd_adagrad_f64 TG_KNAME(tg_upd_adagrad_f64)
#define tg_upd_nadam_f32 TG_KNAME(tg_upd_nadam_f32)
#define tg_upd_nadam_f64 TG_KNAME(tg_upd_nadam_f64)
#define tg_upd_radam_f32 TG_KNAME(tg_upd_radam_f32)
#define tg_upd_radam_f64 TG_KNAME(tg_upd_radam_f64)
#define tg_upd_adadelta_f32 TG_KNAME(tg_upd_adadelta_f32)
#define tg_upd_adadelta_f64 TG_KNAME(tg_upd_adadelta_f64)
#define tg_upd_sgd_f32 TG_KNAME(tg_upd_sgd_f32)
#define tg_upd_sgd_f64 TG_KNAME(tg_upd_sgd_f64)
#define tg_upd_adamax_f32 TG_KNAME(tg_upd_adamax_f32)
#define tg_upd_adamax_f64 TG_KNAME(tg_upd_adamax_f64)
#define tg_vbin_f32 TG_KNAME(tg_vbin_f32)
#define tg_vbin_f64 TG_KNAME(tg_vbin_f64)
#define tg_vmul_acc_f32 TG_KNAME(tg_vmul_acc_f32)
#define tg_vmul_acc_f64 TG_KNAME(tg_vmul_acc_f64)
#endif
