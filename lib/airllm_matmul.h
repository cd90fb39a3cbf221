/* Matrix kernels of the CPU runner: Y = X W^T for a weight W stored as the
 * container holds it (raw F32/F16/BF16, or block-quantized nf4/fp4/int8,
 * formats/container.md 7.3), and a single-row dequantizer for embedding
 * lookups. docs/runner.md "Matrix kernels" describes the design and the
 * measured speed.
 *
 * Quantized weights are decoded in registers, block by block, never widened
 * to a float32 copy of the matrix. n = 1 (decode) streams W once at memory
 * bandwidth; n > 1 (prefill) uses each loaded weight for several tokens.
 *
 * Threading is the caller's: split [0, rows) into row ranges, one call per
 * range. Every function here is thread-safe (the only global state is the
 * implementation choice). The host must be little-endian (x86-64, aarch64). */
#ifndef AIRLLM_MATMUL_H
#define AIRLLM_MATMUL_H

#include <stddef.h>
#include <stdint.h>

#include "airllm_container.h"
#include "airllm_dtype.h"
#include "airllm_err.h"

/* A weight matrix W [rows, cols], row-major. */
typedef struct {
    airllm_encoding enc; /* AIRLLM_ENC_RAW, NF4, FP4 or INT8 (not ZSTD: decode it first) */
    airllm_dtype dtype;  /* RAW: F32, F16 or BF16; quantized: ignored */
    const uint8_t *data; /* RAW: rows*cols little-endian elements [rows, cols];
                          * quantized: the codes, formats/container.md 7.3
                          * (4-bit: element 2i in the high nibble of byte i) */
    const float *absmax; /* quantized: ceil(rows*cols / block) floats, one per block of
                          * `block` consecutive elements of the flattened matrix (already
                          * decompressed if double-quantized); RAW: ignored */
    uint32_t block;      /* quantized: power of two in [32, 4096]; RAW: ignored */
    uint64_t rows, cols;
} airllm_mm_weight;

/* 0 if w describes a usable matrix (known encoding, dtype, block, non-NULL
 * pointers when it has elements, rows*cols without overflow), else -1 with a
 * message. */
int airllm_mm_check(const airllm_mm_weight *w, airllm_err *err);

/* Y[t, r] = sum_k W[r, k] * X[t, k] for t in [0, n), r in [row_begin, row_end):
 *   x: X [n, cols], row t at x + t * ldx (ldx >= cols when n > 1);
 *   y: Y [n, ldy],  Y[t, r] at y[t * ldy + r], r the absolute row index (so
 *      threads given disjoint row ranges write disjoint parts of one Y;
 *      ldy >= row_end when n > 1).
 * Only those n * (row_end - row_begin) outputs are written; x and y must not
 * overlap. n == 0 or an empty range does nothing. Float accumulation (FMA
 * where the CPU has it), in an order that differs between implementations:
 * compare results with a tolerance relative to sum_k |W[r,k] X[t,k]|.
 * Fails (-1, message) on NULL pointers, row_end > rows, row_begin > row_end,
 * ldx < cols or ldy < row_end with n > 1, or a weight airllm_mm_check
 * refuses. */
int airllm_mm(const airllm_mm_weight *w, const float *x, size_t n, size_t ldx, float *y,
              size_t ldy, uint64_t row_begin, uint64_t row_end, airllm_err *err);

/* ---- int8 activations with quantized weights ----
 * With nf4, fp4 or int8 weights whose rows hold whole blocks, the
 * AVX-512 implementation on a CPU with AVX512-VNNI multiplies in
 * integers, as llama.cpp's Q8_0 path does: each token's activations are rounded to int8 per 32 columns (scale
 * max |x| / 127), the nf4/fp4 codebook to multiples of 1/127, and 64
 * products go in one instruction instead of 16. The result is no longer
 * within the float tolerance of airllm_mm_ref: each product moves by up
 * to |W| s / 2 + |x| absmax / 254 (s the group's activation scale; the
 * second term for 4-bit only), the same order as the weights' own
 * rounding. docs/runner.md ("int8 activations") gives the measured effect.
 * Every implementation of this path gives the same bits (the scalar
 * reference included), at every token count: one token (decode) too,
 * where it reads each row once with 64 products per instruction.
 * Off by default: on the quantized goldens of tests/data/families it moves
 * logits by up to 0.06 and changes greedy ids of the tiny random models,
 * so it is the user's choice (airllm-run --int8-activations).
 * on = 1 uses int8 where the CPU has it; 0 keeps float activations;
 * AIRLLM_MM_Q8=0|1 in the environment sets it when this was not called. */
void airllm_mm_set_q8(int on);
/* 1 if airllm_mm takes the int8 path for w at n tokens with the active
 * implementation. Fails (-1) as airllm_mm_impl_active does, or on an
 * AIRLLM_MM_Q8 other than 0 or 1. */
int airllm_mm_q8_used(const airllm_mm_weight *w, size_t n, airllm_err *err);

/* x [n, cols] prepared once for several airllm_mm_prepared calls (the
 * threads of one matrix product each take rows; each would otherwise
 * quantize or pack the same x): int8 for the int8 path, packed for the
 * float GEMM path (n >= 10). Fields are the library's. */
typedef struct {
    const float *x; /* what it was made from */
    size_t n, ldx, cols;
    int8_t *a;  /* [n][cols] */
    int8_t *eo; /* [n][cols]: a with each 8 columns as their 4 even then 4
                 * odd, the order of the 4-bit panels (4-bit weights, n > 1,
                 * where the VNNI kernels run; else NULL) */
    float *s;   /* [n][cols / 32] */
    int32_t *c; /* [n][cols / 32] */
    /* where the AMX kernels run (n > 1): a (int8 weights) or eo (4-bit)
     * as B tiles, and s by group, per block of 16 tokens
     * (airllm_matmul_amx.c); else NULL */
    int8_t *bt, *bt_eo;
    float *sT;
    float *xp;  /* or x packed for the float GEMM path */
} airllm_mm_act;
/* Prepares act for x [n, w->cols] when airllm_mm at n tokens takes the
 * int8 path (airllm_mm_q8_used) or the float GEMM path; else leaves it
 * empty, which airllm_mm_prepared accepts. -1 on errors (out of memory
 * for the int8 path: a message). Release with airllm_mm_act_release. */
int airllm_mm_act_prepare(airllm_mm_act *act, const airllm_mm_weight *w, const float *x,
                          size_t n, size_t ldx, airllm_err *err);
void airllm_mm_act_release(airllm_mm_act *act);
/* airllm_mm with activations prepared for this x, n and ldx (or NULL or
 * empty: quantized here when needed). A prepared act for other inputs
 * is an error. */
int airllm_mm_prepared(const airllm_mm_weight *w, const airllm_mm_act *act, const float *x,
                       size_t n, size_t ldx, float *y, size_t ldy, uint64_t row_begin,
                       uint64_t row_end, airllm_err *err);
/* The row count that the kernels take whole at n tokens (16 or 32): a
 * caller that splits one product into row ranges (one per thread) should
 * cut them at multiples of it, since the rows of a call past its last
 * multiple go through slower code (for many tokens, the one-token-order
 * tiles, which also lay x out again per call). */
size_t airllm_mm_row_quantum(size_t n);

/* The oracle: same contract, one element at a time (each weight decoded by
 * the formula of docs/quantization.md from its own block), products summed
 * in double and rounded once. Slow. */
int airllm_mm_ref(const airllm_mm_weight *w, const float *x, size_t n, size_t ldx, float *y,
                  size_t ldy, uint64_t row_begin, uint64_t row_end, airllm_err *err);

/* Row r of W as cols floats in out (an embedding lookup): the exact decoded
 * values (value[code] * absmax, q * (absmax / 127), the F16/BF16 widening),
 * identical to airllm_dequantize_ref / airllm_ct_dequantize. */
int airllm_mm_row_f32(const airllm_mm_weight *w, uint64_t r, float *out, airllm_err *err);

/* ---- attention over cached positions (one query head at a time) ----
 * K and V rows are d floats, kstride / vstride floats apart (a KV cache of
 * [position][kv_heads * head_dim]: stride kv_heads * head_dim). Same
 * implementation choice, accumulation and tolerance as airllm_mm. Fail
 * (-1, message) on a NULL output where there are outputs (n scores, d
 * mixed values), NULL inputs with n and d > 0, a stride below d with
 * n > 1, or an implementation error. */

/* scores[j] = scale * sum_i q[i] K[j, i], for j < n, i < d. */
int airllm_attn_scores(const float *q, const float *k, size_t kstride, size_t d, size_t n,
                       float scale, float *scores, airllm_err *err);
/* o[i] = sum_j p[j] V[j, i], for i < d, j < n (o is overwritten). */
int airllm_attn_mix(const float *p, const float *v, size_t vstride, size_t d, size_t n, float *o,
                    airllm_err *err);
/* The oracles: products summed in double, rounded once. */
void airllm_attn_scores_ref(const float *q, const float *k, size_t kstride, size_t d, size_t n,
                            float scale, float *scores);
void airllm_attn_mix_ref(const float *p, const float *v, size_t vstride, size_t d, size_t n,
                         float *o);

/* ---- implementation choice (as airllm_quant_impl) ---- */

typedef enum {
    AIRLLM_MM_IMPL_AUTO = 0,   /* the fastest available */
    AIRLLM_MM_IMPL_SCALAR = 1, /* portable C (not the oracle: float sums) */
    AIRLLM_MM_IMPL_AVX2 = 2,   /* avx2 + fma + f16c */
    AIRLLM_MM_IMPL_AVX512 = 3, /* avx512f + avx512bw */
    AIRLLM_MM_IMPL_NEON = 4,
} airllm_mm_impl;

/* "auto", "scalar", "avx2", "avx512", "neon"; NULL for an unknown value. */
const char *airllm_mm_impl_name(airllm_mm_impl impl);
/* 1 if this build and this CPU can run impl (AUTO and SCALAR: always). */
int airllm_mm_impl_available(airllm_mm_impl impl);
/* Forces an implementation for this process (AUTO: back to the default).
 * Fails if it is not available. Takes precedence over the environment. */
int airllm_mm_set_impl(airllm_mm_impl impl, airllm_err *err);
/* The implementation airllm_mm uses: the forced one, else
 * AIRLLM_MM_IMPL=scalar|avx2|avx512|neon|auto from the environment, else the
 * fastest available. The variable is read until it has been found valid (or
 * unset) once, then remembered; an unknown or unavailable value is an error
 * (airllm_mm fails with it), not a silent fallback. */
int airllm_mm_impl_active(airllm_mm_impl *out, airllm_err *err);

#endif
