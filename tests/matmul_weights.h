/* Random weights in every format the matrix kernels take, with their
 * dequantized values, for tests/test_matmul.c and tests/test_matmul_q8.c.
 * Include after test_util.h. */
#ifndef AIRLLM_MATMUL_WEIGHTS_H
#define AIRLLM_MATMUL_WEIGHTS_H

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "airllm_matmul.h"
#include "airllm_quant.h"

static uint64_t rng = 0x9E3779B97F4A7C15ull;
static uint32_t rnd(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (uint32_t)(rng >> 16);
}
static float gauss(void)
{
    double u = (rnd() + 1.0) / 4294967297.0, v = rnd() / 4294967296.0;
    return (float)(sqrt(-2.0 * log(u)) * cos(6.283185307179586 * v));
}

/* The six weight formats. */
typedef struct {
    const char *name;
    airllm_encoding enc;
    airllm_dtype dtype;
    airllm_quant_type qt; /* quantized: its quant type */
} format;

static const format formats[] = {
    {"f32", AIRLLM_ENC_RAW, AIRLLM_DTYPE_F32, 0},
    {"f16", AIRLLM_ENC_RAW, AIRLLM_DTYPE_F16, 0},
    {"bf16", AIRLLM_ENC_RAW, AIRLLM_DTYPE_BF16, 0},
    {"nf4", AIRLLM_ENC_NF4, AIRLLM_DTYPE_F32, AIRLLM_QUANT_NF4},
    {"fp4", AIRLLM_ENC_FP4, AIRLLM_DTYPE_F32, AIRLLM_QUANT_FP4},
    {"int8", AIRLLM_ENC_INT8, AIRLLM_DTYPE_F32, AIRLLM_QUANT_INT8},
};
#define NFORMATS (sizeof formats / sizeof formats[0])

/* A weight with its own buffers and its dequantized values (double). */
typedef struct {
    airllm_mm_weight w;
    uint8_t *data;
    float *absmax;
    float *deq; /* rows * cols, from airllm_dequantize_ref / the widening */
} tweight;

/* float -> IEEE half (round to nearest even), for normal-range values. */
static uint16_t f32_to_f16(float f)
{
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    uint32_t sign = (u >> 16) & 0x8000u;
    int e = (int)((u >> 23) & 0xFF) - 127 + 15;
    uint32_t m = u & 0x7FFFFFu;
    if (e <= 0) /* tiny: flush to zero (the generator keeps values away from this) */
        return (uint16_t)sign;
    if (e >= 31)
        return (uint16_t)(sign | 0x7BFFu);
    uint32_t h = sign | (uint32_t)e << 10 | m >> 13, rest = m & 0x1FFFu;
    if (rest > 0x1000u || (rest == 0x1000u && (h & 1)))
        h++;
    return (uint16_t)h;
}

/* Random rows x cols weight in format f (block for the quantized ones).
 * Values are Gaussian with a scale that changes every 37 elements, so
 * blocks have different absmax; a few exact zeros. */
static tweight make_weight(const format *f, uint64_t rows, uint64_t cols, uint32_t block)
{
    tweight t;
    memset(&t, 0, sizeof t);
    size_t n = (size_t)(rows * cols);
    float *src = malloc((n + 1) * sizeof *src);
    for (size_t i = 0; i < n; i++)
        src[i] = (rnd() % 97 == 0) ? 0.0f : gauss() * (float)(0.25 + (i / 37 % 5));
    t.deq = malloc((n + 1) * sizeof *t.deq);
    t.w.enc = f->enc;
    t.w.dtype = f->dtype;
    t.w.rows = rows;
    t.w.cols = cols;
    if (f->enc == AIRLLM_ENC_RAW) {
        size_t esz = f->dtype == AIRLLM_DTYPE_F32 ? 4 : 2;
        t.data = malloc(n * esz);
        for (size_t i = 0; i < n; i++) {
            if (f->dtype == AIRLLM_DTYPE_F32) {
                memcpy(t.data + 4 * i, &src[i], 4);
                t.deq[i] = src[i];
            } else {
                uint16_t h;
                if (f->dtype == AIRLLM_DTYPE_F16) {
                    h = f32_to_f16(src[i]);
                    t.deq[i] = airllm_f16_to_f32(h);
                } else {
                    uint32_t u;
                    memcpy(&u, &src[i], 4);
                    h = (uint16_t)(u >> 16);
                    t.deq[i] = airllm_bf16_to_f32(h);
                }
                t.data[2 * i] = (uint8_t)h;
                t.data[2 * i + 1] = (uint8_t)(h >> 8);
            }
        }
    } else {
        airllm_err err;
        size_t nc = airllm_quant_code_bytes(f->qt, n), nb = airllm_quant_nblocks(n, block);
        t.data = malloc(nc); /* exact: ASan sees any over-read */
        t.absmax = malloc(nb * sizeof *t.absmax);
        int rc = airllm_quantize_ref(f->qt, src, n, block, t.data, nc, t.absmax, nb, &err);
        CHECK(rc == 0, "quantize %s: %s", f->name, err.msg);
        rc = airllm_dequantize_ref(f->qt, t.data, nc, t.absmax, nb, n, block, t.deq, &err);
        CHECK(rc == 0, "dequantize %s: %s", f->name, err.msg);
        t.w.absmax = t.absmax;
        t.w.block = block;
    }
    t.w.data = t.data;
    free(src);
    return t;
}

static void free_weight(tweight *t)
{
    free(t->data);
    free(t->absmax);
    free(t->deq);
}

#endif
