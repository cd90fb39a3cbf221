/* Activations prepared once for several airllm_mm_prepared calls on the
 * same x (the row jobs of one matrix product, on every thread): int8 for
 * the int8 path (airllm_matmul_q8.c), or packed in groups of tokens for the
 * float GEMM path (airllm_matmul_gemm.c). Each call would otherwise redo
 * it for its own rows: a sixth of the int8 path's matrix time at 16
 * tokens, and as much as the multiply itself for the small matrices of
 * SmolLM2-135M at a 128-token prefill (jobs of 64 rows). */
#include <stdlib.h>
#include <string.h>

#include "airllm_matmul_impl.h"

void airllm_mm_act_release(airllm_mm_act *act)
{
    if (!act)
        return;
    free(act->a);
    free(act->eo);
    free(act->bt);
    free(act->bt_eo);
    free(act->sT);
    free(act->s);
    free(act->c);
    free(act->xp);
    memset(act, 0, sizeof *act);
}

static void act_set(airllm_mm_act *act, const float *x, size_t n, size_t ldx, size_t cols)
{
    act->x = x;
    act->n = n;
    act->ldx = ldx;
    act->cols = cols;
}

int airllm_mm_act_q8(airllm_mm_act *act, const float *x, size_t n, size_t ldx, size_t cols,
                     mm_kind kind, airllm_err *err)
{
    memset(act, 0, sizeof *act);
    size_t groups = cols / AIRLLM_MM_Q8_GROUP;
    if (n > SIZE_MAX / cols / sizeof(float))
        return airllm_errf(err, "%zu x %zu activations are too many", n, cols);
    act->a = malloc(n * cols);
    act->s = malloc(n * groups * sizeof *act->s);
    act->c = malloc(n * groups * sizeof *act->c);
    if (!act->a || !act->s || !act->c) {
        airllm_mm_act_release(act);
        return airllm_errf(err, "out of memory for %zu x %zu int8 activations", n, cols);
    }
    act_set(act, x, n, ldx, cols);
    airllm_mm_q8_quantize(x, n, ldx, cols, act->a, act->s, act->c);
    /* the 4-bit panels' order, made once here rather than per row job */
    if (kind == MM_Q4 && n > 1 && airllm_mm_q8_vnni_available()) {
        act->eo = malloc(n * cols);
        if (!act->eo) {
            airllm_mm_act_release(act);
            return airllm_errf(err, "out of memory for %zu x %zu int8 activations", n, cols);
        }
        airllm_mm_q8_even_odd(act->a, n * cols, act->eo);
    }
    /* and the AMX kernels' B tiles in the order of kind's weights, also
     * once here */
    int amx = n > 1 ? airllm_mm_q8_amx_used(err) : 0;
    if (amx < 0) {
        airllm_mm_act_release(act);
        return -1;
    }
    if (amx) {
        size_t nblk = (n + 15) / 16, groups = cols / AIRLLM_MM_Q8_GROUP;
        int8_t **bt = kind == MM_Q4 ? &act->bt_eo : &act->bt;
        *bt = malloc(nblk * 16 * cols);
        act->sT = malloc(nblk * groups * 16 * sizeof *act->sT);
        if (!*bt || !act->sT) {
            airllm_mm_act_release(act);
            return airllm_errf(err, "out of memory for %zu x %zu int8 activations", n, cols);
        }
        airllm_mm_q8_amx_pack(kind == MM_Q4 ? act->eo : act->a, n, cols, *bt);
        airllm_mm_q8_amx_scales(act->s, n, groups, act->sT);
    }
    return 0;
}

int airllm_mm_act_check(const airllm_mm_act *act, const float *x, size_t n, size_t ldx,
                        size_t cols, airllm_err *err)
{
    /* (one token's ldx is unused: airllm_mm sets it to cols) */
    if (act->x != x || act->n != n || (n > 1 && act->ldx != ldx) || act->cols != cols)
        return airllm_errf(err, "activations prepared for %zu x %zu at %p (ldx %zu), "
                                "used for %zu x %zu at %p (ldx %zu)",
                           act->n, act->cols, (const void *)act->x, act->ldx, n, cols,
                           (const void *)x, ldx);
    return 0;
}

int airllm_mm_act_prepare(airllm_mm_act *act, const airllm_mm_weight *w, const float *x,
                          size_t n, size_t ldx, airllm_err *err)
{
    if (!act)
        return airllm_errf(err, "NULL activations");
    memset(act, 0, sizeof *act);
    airllm_mm_impl impl;
    if (airllm_mm_check(w, err) || airllm_mm_impl_active(&impl, err))
        return -1;
    int q8 = airllm_mm_q8_wanted(w, impl, err);
    if (q8 < 0)
        return -1;
    if (!q8 && !airllm_mm_gemm_wanted(w, n, impl))
        return 0; /* nothing to share */
    if (!x)
        return airllm_errf(err, "NULL x");
    if (n > 1 && ldx < w->cols)
        return airllm_errf(err, "ldx %zu < cols %llu", ldx, (unsigned long long)w->cols);
    size_t cols = (size_t)w->cols;
    if (q8)
        return airllm_mm_act_q8(act, x, n, ldx, cols, airllm_mm_quant_kind(w->enc), err);
    size_t need = airllm_mm_gemm_packed(n, cols);
    act->xp = need ? malloc(need * sizeof *act->xp) : NULL;
    if (!act->xp) /* the GEMM path packs per call then */
        return 0;
    act_set(act, x, n, ldx, cols);
    airllm_mm_gemm_pack(x, n, ldx, cols, act->xp);
    return 0;
}
