/* Weight decoding and the per-lane share of a row's dot product, written once
 * for the CUDA kernels (runner/cuda/rt_cuda.cu, compiled by nvcc as device
 * code) and for the host (tests/test_gpu_plan.c checks them against the CPU
 * kernels' oracle on machines without a GPU). Plain C that nvcc also
 * accepts; on the device, loads become 16/8/4-byte vector loads.
 *
 * A weight is W [rows, cols], row-major, flattened for quantization: block b
 * covers elements [b * block, (b + 1) * block) of the whole matrix, so a row
 * may start inside a block (docs/quantization.md 3). */
#ifndef AIRLLM_RT_DECODE_H
#define AIRLLM_RT_DECODE_H

#include <stdint.h>
#include <string.h>

#ifdef __CUDACC__
#define RT_HD static __host__ __device__ __forceinline__
#else
#define RT_HD static inline
#endif

/* Weight kinds the kernels know. */
enum { RT_W_F32, RT_W_F16, RT_W_BF16, RT_W_INT8, RT_W_NF4, RT_W_FP4 };

/* Tokens one matrix-vector kernel serves at once (decode of a batch). */
#define RT_MAXT 8

typedef struct {
    const uint8_t *data;  /* elements, or codes */
    const float *absmax;  /* quantized: one per block */
    uint64_t rows, cols;
    uint32_t block;       /* quantized */
    int kind;             /* RT_W_* */
} rt_dmat;

RT_HD float rt_bits_f32(uint32_t u)
{
#ifdef __CUDA_ARCH__
    return __uint_as_float(u);
#else
    float f;
    memcpy(&f, &u, 4);
    return f;
#endif
}

RT_HD float rt_bf16_f32(uint32_t b)
{
    return rt_bits_f32(b << 16);
}

/* IEEE half to float, exact for every input (as airllm_f16_to_f32). */
RT_HD float rt_f16_f32(uint32_t h)
{
    uint32_t sign = (h & 0x8000u) << 16, e = (h >> 10) & 31u, m = h & 0x3ffu;
    if (e == 31)
        return rt_bits_f32(sign | 0x7f800000u | (m << 13));
    if (e == 0) {
        /* zero or subnormal: m * 2^-24, exact in float */
        float v = (float)m * (1.0f / 16777216.0f);
        return sign ? -v : v;
    }
    return rt_bits_f32(sign | ((e + 112) << 23) | (m << 13));
}

/* Loads of 16, 8 and 4 bytes at an address aligned to them. */
RT_HD void rt_ld16(const uint8_t *p, uint32_t w[4])
{
#ifdef __CUDA_ARCH__
    uint4 v = __ldg((const uint4 *)(const void *)p);
    w[0] = v.x, w[1] = v.y, w[2] = v.z, w[3] = v.w;
#else
    memcpy(w, p, 16);
#endif
}

RT_HD void rt_ld8(const uint8_t *p, uint32_t w[2])
{
#ifdef __CUDA_ARCH__
    uint2 v = __ldg((const uint2 *)(const void *)p);
    w[0] = v.x, w[1] = v.y;
#else
    memcpy(w, p, 8);
#endif
}

RT_HD uint32_t rt_ld4(const uint8_t *p)
{
#ifdef __CUDA_ARCH__
    return __ldg((const unsigned int *)(const void *)p);
#else
    uint32_t w;
    memcpy(&w, p, 4);
    return w;
#endif
}

/* Eight floats of an activation row at p, 32-byte aligned on the device
 * (work buffers come from cudaMalloc and rows are a multiple of 8 floats
 * long in the 8-wide path). */
RT_HD void rt_ldx8(const float *p, float v[8])
{
#ifdef __CUDA_ARCH__
    float4 a = *(const float4 *)p, b = *(const float4 *)(p + 4);
    v[0] = a.x, v[1] = a.y, v[2] = a.z, v[3] = a.w;
    v[4] = b.x, v[5] = b.y, v[6] = b.z, v[7] = b.w;
#else
    memcpy(v, p, 32);
#endif
}

/* Element e of the flattened matrix; book: the 16-entry codebook of a 4-bit
 * kind. The same formulas as airllm_mm_row_f32: value[code] * absmax,
 * q * (absmax / 127), exact widening. */
RT_HD float rt_w_elem(const rt_dmat *w, uint64_t e, const float *book)
{
    const uint8_t *d = w->data;
    switch (w->kind) {
    case RT_W_F32: return rt_bits_f32(rt_ld4(d + 4 * e));
    case RT_W_F16: return rt_f16_f32((uint32_t)d[2 * e] | (uint32_t)d[2 * e + 1] << 8);
    case RT_W_BF16: return rt_bf16_f32((uint32_t)d[2 * e] | (uint32_t)d[2 * e + 1] << 8);
    case RT_W_INT8: return (float)(int8_t)d[e] * (w->absmax[e / w->block] / 127.0f);
    default: {
        uint32_t byte = d[e >> 1];
        uint32_t code = (e & 1) ? (byte & 15u) : (byte >> 4);
        return book[code] * w->absmax[e / w->block];
    }
    }
}

/* Elements e .. e+7, e a multiple of 8 (so, with block >= 32, one block). */
RT_HD void rt_w_dec8(const rt_dmat *w, uint64_t e, const float *book, float out[8])
{
    const uint8_t *d = w->data;
    uint32_t v[4];
    switch (w->kind) {
    case RT_W_F32:
        rt_ld16(d + 4 * e, v);
        for (int i = 0; i < 4; i++)
            out[i] = rt_bits_f32(v[i]);
        rt_ld16(d + 4 * e + 16, v);
        for (int i = 0; i < 4; i++)
            out[4 + i] = rt_bits_f32(v[i]);
        break;
    case RT_W_F16:
    case RT_W_BF16:
        rt_ld16(d + 2 * e, v);
        for (int i = 0; i < 4; i++) {
            uint32_t lo = v[i] & 0xffffu, hi = v[i] >> 16;
            out[2 * i] = w->kind == RT_W_F16 ? rt_f16_f32(lo) : rt_bf16_f32(lo);
            out[2 * i + 1] = w->kind == RT_W_F16 ? rt_f16_f32(hi) : rt_bf16_f32(hi);
        }
        break;
    case RT_W_INT8: {
        float s = w->absmax[e / w->block] / 127.0f;
        rt_ld8(d + e, v);
        for (int i = 0; i < 8; i++)
            out[i] = (float)(int8_t)(uint8_t)(v[i / 4] >> (8 * (i % 4))) * s;
        break;
    }
    default: {
        float a = w->absmax[e / w->block];
        uint32_t c = rt_ld4(d + e / 2);
        for (int i = 0; i < 4; i++) {
            uint32_t byte = (c >> (8 * i)) & 0xffu;
            out[2 * i] = book[byte >> 4] * a;
            out[2 * i + 1] = book[byte & 15u] * a;
        }
    }
    }
}

/* Whether rows decode 8 elements at a time: each row starts on a multiple of
 * 8 (so 16-byte loads stay aligned) and blocks hold whole groups of 8. */
RT_HD int rt_w_vec8(const rt_dmat *w)
{
    return w->cols % 8 == 0 && (w->kind <= RT_W_BF16 || w->block % 8 == 0);
}

/* Lane `lane` of `lanes`' share of the dot products of row r with the nt
 * (<= RT_MAXT) vectors x + t * ldx, added to acc[t]: groups of 8 columns go
 * to the lanes in turn (neighbouring lanes read neighbouring bytes), or,
 * when rows do not split into groups of 8, single columns. The kernel sums
 * the lanes' acc. In the 8-wide path x and ldx keep each group of 8 floats
 * 32-byte aligned on the device (rt_ldx8). */
RT_HD void rt_row_dot_part(const rt_dmat *w, uint64_t r, const float *x, int nt, uint64_t ldx,
                           int lane, int lanes, const float *book, float *acc)
{
    uint64_t base = r * w->cols;
    if (rt_w_vec8(w)) {
        for (uint64_t c = (uint64_t)lane * 8; c < w->cols; c += (uint64_t)lanes * 8) {
            float wv[8];
            rt_w_dec8(w, base + c, book, wv);
            for (int t = 0; t < RT_MAXT; t++) {
                if (t >= nt)
                    break;
                float xv[8];
                rt_ldx8(x + (uint64_t)t * ldx + c, xv);
                float s = acc[t];
                for (int i = 0; i < 8; i++)
                    s += wv[i] * xv[i];
                acc[t] = s;
            }
        }
    } else {
        for (uint64_t c = (uint64_t)lane; c < w->cols; c += (uint64_t)lanes) {
            float wv = rt_w_elem(w, base + c, book);
            for (int t = 0; t < RT_MAXT; t++) {
                if (t >= nt)
                    break;
                acc[t] += wv * x[(uint64_t)t * ldx + c];
            }
        }
    }
}

#endif
