/* tensor/dispatch.c - chooses the CPU target of the hot kernels once and forwards every kernel call to
 * it (see tensor/dispatch.h). */
#include "tensor/dispatch.h"

#include <tapegrad/tensor.h>

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tensor/gemm.h"
#include "tensor/steps.h"
#include "tensor/updates.h"
#include "tensor/velem.h"
#include "tensor/vmath.h"

/* meson defines TG_KT_AVX512 / TG_KT_AVX2 when it built those targets (x86-64 compilers that take
 * the flags) and TG_KT_BASE, the name of the build that is always there and runs anywhere the library
 * does: "generic", or "native" in a -Dnative=true build (then the only one, for this CPU). */
#ifndef TG_KT_BASE
#define TG_KT_BASE "generic"
#endif
#define TG_KCAT_(a, b) a##b
#define TG_KCAT(a, b) TG_KCAT_(a, b)
#define TG_KDECL_V(name, params, args) void TG_KCAT(name, TG_KSFX) params;
#define TG_KDECL_R(type, name, params, args) type TG_KCAT(name, TG_KSFX) params;
#define TG_KINIT_V(name, params, args) .name = TG_KCAT(name, TG_KSFX),
#define TG_KINIT_R(type, name, params, args) .name = TG_KCAT(name, TG_KSFX),
#define TG_KDECLARE TG_KERNELS(TG_KDECL_V, TG_KDECL_R)
#define TG_KTABLE(label) {.name = label, TG_KERNELS(TG_KINIT_V, TG_KINIT_R)}

#if TG_KT_AVX512
#define TG_KSFX _avx512
TG_KDECLARE
#undef TG_KSFX
#endif
#if TG_KT_AVX2
#define TG_KSFX _avx2
TG_KDECLARE
#undef TG_KSFX
#endif
#define TG_KSFX _generic
TG_KDECLARE
#undef TG_KSFX

/* Best first. */
static const tg_kernels tg_targets[] = {
#if TG_KT_AVX512
#define TG_KSFX _avx512
    TG_KTABLE("avx512"),
#undef TG_KSFX
#endif
#if TG_KT_AVX2
#define TG_KSFX _avx2
    TG_KTABLE("avx2"),
#undef TG_KSFX
#endif
#define TG_KSFX _generic
    TG_KTABLE(TG_KT_BASE),
#undef TG_KSFX
};
enum { TG_NTARGETS = sizeof tg_targets / sizeof tg_targets[0] };

/* What the flags of each target's build let the compiler use (meson.build) must be what we check. */
static int tg_cpu_runs(const char *name)
{
#if TG_KT_AVX2 || TG_KT_AVX512
    __builtin_cpu_init();
    int avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    if (!strcmp(name, "avx2")) return avx2;
    if (!strcmp(name, "avx512"))
        return avx2 && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
               __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vl");
#endif
    return !strcmp(name, TG_KT_BASE);
}

static const tg_kernels *tg_chosen;
static pthread_once_t tg_choose_once = PTHREAD_ONCE_INIT;

static void tg_choose(void)
{
    const char *want = getenv("TAPEGRAD_CPU");
    if (want && *want && strcmp(want, "auto")) {
        int known = 0;
        for (int i = 0; i < TG_NTARGETS; i++) {
            if (strcmp(want, tg_targets[i].name)) continue;
            known = 1;
            if (tg_cpu_runs(want)) {
                tg_chosen = &tg_targets[i];
                return;
            }
        }
        for (int i = 0; i < TG_NTARGETS && !tg_chosen; i++)
            if (tg_cpu_runs(tg_targets[i].name)) tg_chosen = &tg_targets[i];
        if (known)
            fprintf(stderr, "tapegrad: TAPEGRAD_CPU=%s: this CPU cannot run those kernels; using %s\n", want,
                    tg_chosen->name);
        else
            fprintf(stderr, "tapegrad: TAPEGRAD_CPU=%s: unknown (this build has: %s); using %s\n", want,
                    tg_kernel_targets(), tg_chosen->name);
        return;
    }
    for (int i = 0; i < TG_NTARGETS && !tg_chosen; i++)
        if (tg_cpu_runs(tg_targets[i].name)) tg_chosen = &tg_targets[i];
}

const tg_kernels *tg__kernels(void)
{
    pthread_once(&tg_choose_once, tg_choose);
    return tg_chosen;
}

const tg_kernels *tg__kernels_named(const char *name)
{
    for (int i = 0; i < TG_NTARGETS; i++)
        if (name && !strcmp(name, tg_targets[i].name)) return tg_cpu_runs(name) ? &tg_targets[i] : NULL;
    return NULL;
}

const char *tg_kernel_target(void) { return tg__kernels()->name; }

const char *tg_kernel_targets(void)
{
    static const char all[] =
#if TG_KT_AVX512
        "avx512 "
#endif
#if TG_KT_AVX2
        "avx2 "
#endif
        TG_KT_BASE;
    return all;
}

/* The kernels' public names: forward to the chosen target. */
#define TG_KFWD_V(name, params, args) \
    void name params { tg__kernels()->name args; }
#define TG_KFWD_R(type, name, params, args) \
    type name params { return tg__kernels()->name args; }
TG_KERNELS(TG_KFWD_V, TG_KFWD_R)

