/* SIMD versions of airllm_quantize_ref / airllm_dequantize_ref and the
 * dispatch between them (docs/quantization.md, "Implementations").
 *
 * They must be bit-identical to the reference, so each makes the same
 * decisions with the same float operations:
 *   absmax   the integer maximum of (bits & 0x7FFFFFFF), which orders finite
 *            floats like fabsf does; a result >= 0x7F800000 means inf/NaN;
 *   scale    r = 1 / max(absmax, 1e-38) (4-bit) or 127 / absmax (int8),
 *            computed once per block with scalar code, then s = x * r;
 *   4-bit    code index = number of sorted midpoints < s (a tie goes low),
 *            then FP4's sorted-index -> code table;
 *   int8     round with the current rounding mode (cvtps/vrndi), like rintf.
 * Only full blocks are vectorized. The short last block (which divides
 * instead of multiplying), an int8 block with absmax below 2^-96, and any
 * block holding inf/NaN (for its error message) go to the reference.
 *
 * x86 kernels carry __attribute__((target(...))) so this file builds with
 * the default flags and the choice is made at run time; none enables FMA,
 * so the compiler cannot fuse a multiply and an add the reference rounds
 * separately. NEON is the aarch64 baseline and needs no check. */
#include "airllm_impl.h"
#include "airllm_quant.h"

#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#if defined(__x86_64__) || defined(__i386__)
#define AIRLLM_X86 1
#include <immintrin.h>
#endif
#if defined(__aarch64__)
#include <arm_neon.h>
#endif

/* What a kernel needs besides the data: the 4-bit decision tables and, for
 * dequantization, the codebook. Built once per call. */
typedef struct {
    airllm_quant_type type;
    uint8_t sorted_code[16]; /* (16) code of the k-th smallest value */
    float mid[16];           /* (15 + 1 pad) ascending midpoints */
    const float *code;       /* (16) codebook by code */
} kernel_tab;

static void kernel_tab_init(kernel_tab *t, airllm_quant_type type)
{
    memset(t, 0, sizeof *t);
    t->type = type;
    if (type != AIRLLM_QUANT_INT8) {
        airllm_quant4_tables(type, t->sorted_code, t->mid);
        t->mid[15] = 2.0f; /* never probed: above every scaled value */
        t->code = type == AIRLLM_QUANT_NF4 ? airllm_nf4_code : airllm_fp4_code;
    }
}

static float f32_of(uint32_t u)
{
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

/* Quantizes one full block (block elements, a multiple of 32). Returns 0,
 * or 1 when the block must go to the reference (non-finite input, or an
 * int8 block too small for 127 / absmax). */
typedef int (*quant_block_fn)(const kernel_tab *t, const float *x, size_t block, uint8_t *codes,
                              float *absmax);
/* Dequantizes one full block. */
typedef void (*dequant_block_fn)(const kernel_tab *t, const uint8_t *codes, float absmax,
                                 size_t block, float *out);

/* ------------------------------------------------------------------ */
/* AVX2                                                                */
/* ------------------------------------------------------------------ */
#ifdef AIRLLM_X86

__attribute__((target("avx2"))) static uint32_t absbits_max_avx2(const float *x, size_t n)
{
    const __m256i mask = _mm256_set1_epi32(0x7FFFFFFF);
    __m256i m0 = _mm256_setzero_si256(), m1 = m0;
    for (size_t i = 0; i < n; i += 16) {
        __m256i a = _mm256_loadu_si256((const __m256i *)(x + i));
        __m256i b = _mm256_loadu_si256((const __m256i *)(x + i + 8));
        m0 = _mm256_max_epu32(m0, _mm256_and_si256(a, mask));
        m1 = _mm256_max_epu32(m1, _mm256_and_si256(b, mask));
    }
    __m256i m = _mm256_max_epu32(m0, m1);
    __m128i h = _mm_max_epu32(_mm256_castsi256_si128(m), _mm256_extracti128_si256(m, 1));
    h = _mm_max_epu32(h, _mm_shuffle_epi32(h, _MM_SHUFFLE(1, 0, 3, 2)));
    h = _mm_max_epu32(h, _mm_shuffle_epi32(h, _MM_SHUFFLE(2, 3, 0, 1)));
    return (uint32_t)_mm_cvtsi128_si32(h);
}

/* 8 scaled values -> 8 code indices (epi32): count of midpoints below s. */
__attribute__((target("avx2"))) static inline __m256i count_below_avx2(__m256 s,
                                                                       const __m256 *vmid)
{
    __m256i k = _mm256_setzero_si256();
    for (int j = 0; j < 15; j++) /* mask is all ones (-1) where mid < s */
        k = _mm256_sub_epi32(k, _mm256_castps_si256(_mm256_cmp_ps(vmid[j], s, _CMP_LT_OQ)));
    return k;
}

/* 32 bytes (one code each, in element order) -> 16 bytes, element 2i in the
 * high nibble. Seen as 16-bit lanes, lane i is (e[2i+1] << 8) | e[2i]. */
__attribute__((target("avx2"))) static inline __m128i pack_nibbles_avx2(__m256i e)
{
    __m256i hi = _mm256_and_si256(_mm256_slli_epi16(e, 4), _mm256_set1_epi16(0x00F0));
    __m256i lo = _mm256_srli_epi16(e, 8);
    __m256i w = _mm256_or_si256(hi, lo);
    return _mm_packus_epi16(_mm256_castsi256_si128(w), _mm256_extracti128_si256(w, 1));
}

/* Four vectors of 8 epi32 in [0, 255] -> 32 bytes in element order. */
__attribute__((target("avx2"))) static inline __m256i narrow_u8_avx2(__m256i a, __m256i b,
                                                                     __m256i c, __m256i d)
{
    /* packs work per 128-bit lane; the permute undoes the interleave */
    __m256i ab = _mm256_packs_epi32(a, b);
    __m256i cd = _mm256_packs_epi32(c, d);
    __m256i v = _mm256_packus_epi16(ab, cd);
    return _mm256_permutevar8x32_epi32(v, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
}

__attribute__((target("avx2"))) static int quant4_block_avx2(const kernel_tab *t, const float *x,
                                                             size_t block, uint8_t *codes,
                                                             float *absmax)
{
    uint32_t bits = absbits_max_avx2(x, block);
    if (bits >= 0x7F800000u)
        return 1;
    float a = f32_of(bits);
    float d = a > 1e-38f ? a : 1e-38f;
    const __m256 r = _mm256_set1_ps(1.0f / d);
    *absmax = a;
    __m256 vmid[15];
    for (int j = 0; j < 15; j++)
        vmid[j] = _mm256_set1_ps(t->mid[j]);
    const __m256i remap = _mm256_broadcastsi128_si256(
        _mm_loadu_si128((const __m128i *)t->sorted_code));
    for (size_t i = 0; i < block; i += 32) {
        __m256i k0 = count_below_avx2(_mm256_mul_ps(_mm256_loadu_ps(x + i), r), vmid);
        __m256i k1 = count_below_avx2(_mm256_mul_ps(_mm256_loadu_ps(x + i + 8), r), vmid);
        __m256i k2 = count_below_avx2(_mm256_mul_ps(_mm256_loadu_ps(x + i + 16), r), vmid);
        __m256i k3 = count_below_avx2(_mm256_mul_ps(_mm256_loadu_ps(x + i + 24), r), vmid);
        __m256i e = _mm256_shuffle_epi8(remap, narrow_u8_avx2(k0, k1, k2, k3));
        _mm_storeu_si128((__m128i *)(codes + i / 2), pack_nibbles_avx2(e));
    }
    return 0;
}

__attribute__((target("avx2"))) static int quant8_block_avx2(const kernel_tab *t, const float *x,
                                                             size_t block, uint8_t *codes,
                                                             float *absmax)
{
    (void)t;
    uint32_t bits = absbits_max_avx2(x, block);
    if (bits >= 0x7F800000u)
        return 1;
    float a = f32_of(bits);
    if (a == 0.0f) {
        *absmax = 0.0f;
        memset(codes, 0, block);
        return 0;
    }
    if (a < 0x1p-96f)
        return 1;
    *absmax = a;
    const __m256 r = _mm256_set1_ps(127.0f / a);
    for (size_t i = 0; i < block; i += 32) {
        /* cvtps rounds with MXCSR's mode, as rintf does; |s| <= 127.00003
         * so no value saturates */
        __m256i q0 = _mm256_cvtps_epi32(_mm256_mul_ps(_mm256_loadu_ps(x + i), r));
        __m256i q1 = _mm256_cvtps_epi32(_mm256_mul_ps(_mm256_loadu_ps(x + i + 8), r));
        __m256i q2 = _mm256_cvtps_epi32(_mm256_mul_ps(_mm256_loadu_ps(x + i + 16), r));
        __m256i q3 = _mm256_cvtps_epi32(_mm256_mul_ps(_mm256_loadu_ps(x + i + 24), r));
        __m256i v = _mm256_packs_epi16(_mm256_packs_epi32(q0, q1), _mm256_packs_epi32(q2, q3));
        v = _mm256_permutevar8x32_epi32(v, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
        _mm256_storeu_si256((__m256i *)(codes + i), v);
    }
    return 0;
}

__attribute__((target("avx2"))) static void dequant4_block_avx2(const kernel_tab *t,
                                                                const uint8_t *codes,
                                                                float absmax, size_t block,
                                                                float *out)
{
    const __m256 lo8 = _mm256_loadu_ps(t->code), hi8 = _mm256_loadu_ps(t->code + 8);
    const __m256 a = _mm256_set1_ps(absmax);
    const __m128i m4 = _mm_set1_epi8(0x0F);
    for (size_t i = 0; i < block; i += 32) {
        __m128i b = _mm_loadu_si128((const __m128i *)(codes + i / 2)); /* 32 codes */
        __m128i hi = _mm_and_si128(_mm_srli_epi16(b, 4), m4);
        __m128i lo = _mm_and_si128(b, m4);
        __m128i e[2] = {_mm_unpacklo_epi8(hi, lo), _mm_unpackhi_epi8(hi, lo)};
        for (int h = 0; h < 2; h++) {
            for (int q = 0; q < 2; q++) {
                __m256i k = _mm256_cvtepu8_epi32(q ? _mm_srli_si128(e[h], 8) : e[h]);
                /* bit 3 of k picks the upper half of the codebook */
                __m256 sel = _mm256_castsi256_ps(_mm256_slli_epi32(k, 28));
                __m256 v = _mm256_blendv_ps(_mm256_permutevar8x32_ps(lo8, k),
                                            _mm256_permutevar8x32_ps(hi8, k), sel);
                _mm256_storeu_ps(out + i + 16 * h + 8 * q, _mm256_mul_ps(v, a));
            }
        }
    }
}

__attribute__((target("avx2"))) static void dequant8_block_avx2(const kernel_tab *t,
                                                                const uint8_t *codes,
                                                                float absmax, size_t block,
                                                                float *out)
{
    (void)t;
    const __m256 s = _mm256_set1_ps(absmax / 127.0f);
    for (size_t i = 0; i < block; i += 8) {
        __m128i b = _mm_loadl_epi64((const __m128i *)(codes + i));
        __m256 v = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(b));
        _mm256_storeu_ps(out + i, _mm256_mul_ps(v, s));
    }
}

/* ------------------------------------------------------------------ */
/* AVX-512 (F + BW)                                                    */
/* ------------------------------------------------------------------ */

#define AVX512_TARGET __attribute__((target("avx512f,avx512bw")))

AVX512_TARGET static uint32_t absbits_max_avx512(const float *x, size_t n)
{
    const __m512i mask = _mm512_set1_epi32(0x7FFFFFFF);
    __m512i m0 = _mm512_setzero_si512(), m1 = m0;
    for (size_t i = 0; i < n; i += 32) {
        m0 = _mm512_max_epu32(m0, _mm512_and_si512(_mm512_loadu_si512(x + i), mask));
        m1 = _mm512_max_epu32(m1, _mm512_and_si512(_mm512_loadu_si512(x + i + 16), mask));
    }
    return _mm512_reduce_max_epu32(_mm512_max_epu32(m0, m1));
}

/* 16 scaled values -> 16 code indices: a branch-free binary search over the
 * 15 sorted midpoints (held in one register), which yields the same count
 * of midpoints below s as the reference's linear scan. */
AVX512_TARGET static inline __m512i count_below_avx512(__m512 s, __m512 vmid)
{
    __m512i k = _mm512_setzero_si512();
    for (int step = 8; step >= 1; step >>= 1) {
        __m512i probe = _mm512_add_epi32(k, _mm512_set1_epi32(step - 1));
        __mmask16 below = _mm512_cmp_ps_mask(_mm512_permutexvar_ps(probe, vmid), s, _CMP_LT_OQ);
        k = _mm512_mask_add_epi32(k, below, k, _mm512_set1_epi32(step));
    }
    return k;
}

AVX512_TARGET static int quant4_block_avx512(const kernel_tab *t, const float *x, size_t block,
                                             uint8_t *codes, float *absmax)
{
    uint32_t bits = absbits_max_avx512(x, block);
    if (bits >= 0x7F800000u)
        return 1;
    float a = f32_of(bits);
    float d = a > 1e-38f ? a : 1e-38f;
    const __m512 r = _mm512_set1_ps(1.0f / d);
    *absmax = a;
    const __m512 vmid = _mm512_loadu_ps(t->mid);
    const __m128i remap = _mm_loadu_si128((const __m128i *)t->sorted_code);
    const __m128i m4 = _mm_set1_epi16(0x00F0);
    for (size_t i = 0; i < block; i += 32) {
        __m512i k0 = count_below_avx512(_mm512_mul_ps(_mm512_loadu_ps(x + i), r), vmid);
        __m512i k1 = count_below_avx512(_mm512_mul_ps(_mm512_loadu_ps(x + i + 16), r), vmid);
        __m128i e0 = _mm_shuffle_epi8(remap, _mm512_cvtepi32_epi8(k0));
        __m128i e1 = _mm_shuffle_epi8(remap, _mm512_cvtepi32_epi8(k1));
        /* 16-bit lane i = (e[2i+1] << 8) | e[2i]; see pack_nibbles_avx2 */
        __m128i w0 = _mm_or_si128(_mm_and_si128(_mm_slli_epi16(e0, 4), m4), _mm_srli_epi16(e0, 8));
        __m128i w1 = _mm_or_si128(_mm_and_si128(_mm_slli_epi16(e1, 4), m4), _mm_srli_epi16(e1, 8));
        _mm_storeu_si128((__m128i *)(codes + i / 2), _mm_packus_epi16(w0, w1));
    }
    return 0;
}

AVX512_TARGET static int quant8_block_avx512(const kernel_tab *t, const float *x, size_t block,
                                             uint8_t *codes, float *absmax)
{
    (void)t;
    uint32_t bits = absbits_max_avx512(x, block);
    if (bits >= 0x7F800000u)
        return 1;
    float a = f32_of(bits);
    if (a == 0.0f) {
        *absmax = 0.0f;
        memset(codes, 0, block);
        return 0;
    }
    if (a < 0x1p-96f)
        return 1;
    *absmax = a;
    const __m512 r = _mm512_set1_ps(127.0f / a);
    for (size_t i = 0; i < block; i += 16) {
        __m512i q = _mm512_cvtps_epi32(_mm512_mul_ps(_mm512_loadu_ps(x + i), r));
        _mm_storeu_si128((__m128i *)(codes + i), _mm512_cvtsepi32_epi8(q));
    }
    return 0;
}

AVX512_TARGET static void dequant4_block_avx512(const kernel_tab *t, const uint8_t *codes,
                                                float absmax, size_t block, float *out)
{
    const __m512 cb = _mm512_loadu_ps(t->code);
    const __m512 a = _mm512_set1_ps(absmax);
    const __m128i m4 = _mm_set1_epi8(0x0F);
    for (size_t i = 0; i < block; i += 32) {
        __m128i b = _mm_loadu_si128((const __m128i *)(codes + i / 2));
        __m128i hi = _mm_and_si128(_mm_srli_epi16(b, 4), m4);
        __m128i lo = _mm_and_si128(b, m4);
        __m512i k0 = _mm512_cvtepu8_epi32(_mm_unpacklo_epi8(hi, lo));
        __m512i k1 = _mm512_cvtepu8_epi32(_mm_unpackhi_epi8(hi, lo));
        _mm512_storeu_ps(out + i, _mm512_mul_ps(_mm512_permutexvar_ps(k0, cb), a));
        _mm512_storeu_ps(out + i + 16, _mm512_mul_ps(_mm512_permutexvar_ps(k1, cb), a));
    }
}

AVX512_TARGET static void dequant8_block_avx512(const kernel_tab *t, const uint8_t *codes,
                                                float absmax, size_t block, float *out)
{
    (void)t;
    const __m512 s = _mm512_set1_ps(absmax / 127.0f);
    for (size_t i = 0; i < block; i += 16) {
        __m128i b = _mm_loadu_si128((const __m128i *)(codes + i));
        __m512 v = _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(b));
        _mm512_storeu_ps(out + i, _mm512_mul_ps(v, s));
    }
}

#endif /* AIRLLM_X86 */

/* ------------------------------------------------------------------ */
/* NEON (aarch64)                                                      */
/* ------------------------------------------------------------------ */
#ifdef __aarch64__

static uint32_t absbits_max_neon(const float *x, size_t n)
{
    const uint32x4_t mask = vdupq_n_u32(0x7FFFFFFFu);
    uint32x4_t m0 = vdupq_n_u32(0), m1 = m0;
    for (size_t i = 0; i < n; i += 8) {
        m0 = vmaxq_u32(m0, vandq_u32(vld1q_u32((const uint32_t *)(x + i)), mask));
        m1 = vmaxq_u32(m1, vandq_u32(vld1q_u32((const uint32_t *)(x + i + 4)), mask));
    }
    return vmaxvq_u32(vmaxq_u32(m0, m1));
}

static inline uint32x4_t count_below_neon(float32x4_t s, const float32x4_t *vmid)
{
    uint32x4_t k = vdupq_n_u32(0);
    for (int j = 0; j < 15; j++) /* all ones (-1) where mid < s */
        k = vsubq_u32(k, vcltq_f32(vmid[j], s));
    return k;
}

/* 16 bytes of codes in element order -> 8 bytes, element 2i high nibble. */
static inline uint8x8_t pack_nibbles_neon(uint8x16_t e)
{
    uint16x8_t w = vreinterpretq_u16_u8(e);
    uint16x8_t hi = vandq_u16(vshlq_n_u16(w, 4), vdupq_n_u16(0x00F0));
    return vmovn_u16(vorrq_u16(hi, vshrq_n_u16(w, 8)));
}

static int quant4_block_neon(const kernel_tab *t, const float *x, size_t block, uint8_t *codes,
                             float *absmax)
{
    uint32_t bits = absbits_max_neon(x, block);
    if (bits >= 0x7F800000u)
        return 1;
    float a = f32_of(bits);
    float d = a > 1e-38f ? a : 1e-38f;
    const float32x4_t r = vdupq_n_f32(1.0f / d);
    *absmax = a;
    float32x4_t vmid[15];
    for (int j = 0; j < 15; j++)
        vmid[j] = vdupq_n_f32(t->mid[j]);
    const uint8x16_t remap = vld1q_u8(t->sorted_code);
    for (size_t i = 0; i < block; i += 16) {
        uint32x4_t k[4];
        for (int q = 0; q < 4; q++)
            k[q] = count_below_neon(vmulq_f32(vld1q_f32(x + i + 4 * q), r), vmid);
        uint16x8_t k01 = vcombine_u16(vmovn_u32(k[0]), vmovn_u32(k[1]));
        uint16x8_t k23 = vcombine_u16(vmovn_u32(k[2]), vmovn_u32(k[3]));
        uint8x16_t e = vqtbl1q_u8(remap, vcombine_u8(vmovn_u16(k01), vmovn_u16(k23)));
        vst1_u8(codes + i / 2, pack_nibbles_neon(e));
    }
    return 0;
}

static int quant8_block_neon(const kernel_tab *t, const float *x, size_t block, uint8_t *codes,
                             float *absmax)
{
    (void)t;
    uint32_t bits = absbits_max_neon(x, block);
    if (bits >= 0x7F800000u)
        return 1;
    float a = f32_of(bits);
    if (a == 0.0f) {
        *absmax = 0.0f;
        memset(codes, 0, block);
        return 0;
    }
    if (a < 0x1p-96f)
        return 1;
    *absmax = a;
    const float32x4_t r = vdupq_n_f32(127.0f / a);
    for (size_t i = 0; i < block; i += 8) {
        /* vrndi rounds with FPCR's mode, as rintf; the result is integral so
         * the conversion is exact */
        int32x4_t q0 = vcvtq_s32_f32(vrndiq_f32(vmulq_f32(vld1q_f32(x + i), r)));
        int32x4_t q1 = vcvtq_s32_f32(vrndiq_f32(vmulq_f32(vld1q_f32(x + i + 4), r)));
        int8x8_t v = vmovn_s16(vcombine_s16(vmovn_s32(q0), vmovn_s32(q1)));
        vst1_s8((int8_t *)(codes + i), v);
    }
    return 0;
}

/* Gathers code[k] for 4 indices with a 64-byte table lookup: byte j of
 * lane l comes from byte 4 * k[l] + j of the codebook. */
static inline float32x4_t lookup4_neon(uint8x16x4_t cb, uint8x16_t e, int first)
{
    static const uint8_t rep[4][16] = {
        {0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3},
        {4, 4, 4, 4, 5, 5, 5, 5, 6, 6, 6, 6, 7, 7, 7, 7},
        {8, 8, 8, 8, 9, 9, 9, 9, 10, 10, 10, 10, 11, 11, 11, 11},
        {12, 12, 12, 12, 13, 13, 13, 13, 14, 14, 14, 14, 15, 15, 15, 15},
    };
    static const uint8_t byte_of[16] = {0, 1, 2, 3, 0, 1, 2, 3, 0, 1, 2, 3, 0, 1, 2, 3};
    uint8x16_t k = vqtbl1q_u8(e, vld1q_u8(rep[first]));
    uint8x16_t idx = vaddq_u8(vshlq_n_u8(k, 2), vld1q_u8(byte_of));
    return vreinterpretq_f32_u8(vqtbl4q_u8(cb, idx));
}

static void dequant4_block_neon(const kernel_tab *t, const uint8_t *codes, float absmax,
                                size_t block, float *out)
{
    uint8x16x4_t cb;
    cb.val[0] = vld1q_u8((const uint8_t *)t->code);
    cb.val[1] = vld1q_u8((const uint8_t *)t->code + 16);
    cb.val[2] = vld1q_u8((const uint8_t *)t->code + 32);
    cb.val[3] = vld1q_u8((const uint8_t *)t->code + 48);
    const float32x4_t a = vdupq_n_f32(absmax);
    for (size_t i = 0; i < block; i += 16) {
        uint8x8_t b = vld1_u8(codes + i / 2); /* 16 codes */
        uint8x8x2_t z = vzip_u8(vshr_n_u8(b, 4), vand_u8(b, vdup_n_u8(0x0F)));
        uint8x16_t e = vcombine_u8(z.val[0], z.val[1]);
        for (int q = 0; q < 4; q++)
            vst1q_f32(out + i + 4 * q, vmulq_f32(lookup4_neon(cb, e, q), a));
    }
}

static void dequant8_block_neon(const kernel_tab *t, const uint8_t *codes, float absmax,
                                size_t block, float *out)
{
    (void)t;
    const float32x4_t s = vdupq_n_f32(absmax / 127.0f);
    for (size_t i = 0; i < block; i += 8) {
        int16x8_t w = vmovl_s8(vld1_s8((const int8_t *)(codes + i)));
        float32x4_t v0 = vcvtq_f32_s32(vmovl_s16(vget_low_s16(w)));
        float32x4_t v1 = vcvtq_f32_s32(vmovl_s16(vget_high_s16(w)));
        vst1q_f32(out + i, vmulq_f32(v0, s));
        vst1q_f32(out + i + 4, vmulq_f32(v1, s));
    }
}

#endif /* __aarch64__ */

/* ------------------------------------------------------------------ */
/* Dispatch                                                            */
/* ------------------------------------------------------------------ */

static atomic_int forced_impl = AIRLLM_QUANT_IMPL_AUTO;

_Static_assert((int)AIRLLM_QUANT_IMPL_AUTO == AIRLLM_IMPL_AUTO &&
                   (int)AIRLLM_QUANT_IMPL_SCALAR == AIRLLM_IMPL_SCALAR &&
                   (int)AIRLLM_QUANT_IMPL_AVX2 == AIRLLM_IMPL_AVX2 &&
                   (int)AIRLLM_QUANT_IMPL_AVX512 == AIRLLM_IMPL_AVX512 &&
                   (int)AIRLLM_QUANT_IMPL_NEON == AIRLLM_IMPL_NEON,
               "airllm_quant_impl follows airllm_impl.h's numbering");

const char *airllm_quant_impl_name(airllm_quant_impl impl)
{
    return airllm_impl_name((int)impl);
}

int airllm_quant_impl_available(airllm_quant_impl impl)
{
    switch (impl) {
    case AIRLLM_QUANT_IMPL_AUTO:
    case AIRLLM_QUANT_IMPL_SCALAR:
        return 1;
#ifdef AIRLLM_X86
    case AIRLLM_QUANT_IMPL_AVX2:
        __builtin_cpu_init();
        return __builtin_cpu_supports("avx2") != 0;
    case AIRLLM_QUANT_IMPL_AVX512:
        __builtin_cpu_init();
        return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw");
#endif
#ifdef __aarch64__
    case AIRLLM_QUANT_IMPL_NEON:
        return 1;
#endif
    default:
        return 0;
    }
}

static int available(int impl)
{
    return airllm_quant_impl_available((airllm_quant_impl)impl);
}

int airllm_quant_set_impl(airllm_quant_impl impl, airllm_err *err)
{
    if (airllm_impl_check((int)impl, available, "quantization", err))
        return -1;
    atomic_store(&forced_impl, (int)impl);
    return 0;
}

int airllm_quant_impl_active(airllm_quant_impl *out, airllm_err *err)
{
    if (!out)
        return airllm_errf(err, "NULL argument");
    int impl = atomic_load(&forced_impl);
    /* The environment is read each time (not cached) so a test can change
     * it between calls. */
    if (impl == AIRLLM_QUANT_IMPL_AUTO &&
        airllm_impl_from_env("AIRLLM_QUANT_IMPL", available, &impl, err))
        return -1;
    *out = (airllm_quant_impl)(impl == AIRLLM_QUANT_IMPL_AUTO ? airllm_impl_best(available)
                                                              : impl);
    return 0;
}

/* ------------------------------------------------------------------ */
/* per-block error sums: the reference's 16 lanes in vector registers  */

void airllm_quant_block_stats_one(const float *x, const float *y, size_t m, float absmax,
                                  airllm_qblock_stats *o);
void airllm_quant_block_scale(float a, float *s, float *inv, int32_t *exp);

#ifdef AIRLLM_X86
/* The reference's lane reduction, on stored lanes. */
static void stats_finish(float e2[16], float x2[16], float ev[16], float v2[16],
                         const float me[16], const float mv[16], int32_t exp,
                         airllm_qblock_stats *o)
{
    float *acc[4] = {e2, x2, ev, v2};
    float res[4];
    for (int a = 0; a < 4; a++) {
        float *l = acc[a];
        for (int w = 8; w >= 1; w /= 2)
            for (int k = 0; k < w; k++)
                l[k] = l[k] + l[k + w];
        res[a] = l[0];
    }
    float m1 = me[0], m2 = mv[0];
    for (int k = 1; k < 16; k++) {
        m1 = me[k] > m1 ? me[k] : m1;
        m2 = mv[k] > m2 ? mv[k] : m2;
    }
    *o = (airllm_qblock_stats){res[0], res[1], res[2], res[3], m1, m2, exp};
}

/* Lanes 0..7 and 8..15 in two registers. m is a multiple of 16. */
__attribute__((target("avx2"))) static void stats_block_avx2(const float *x, const float *y,
                                                              size_t m, float absmax,
                                                              airllm_qblock_stats *o)
{
    float sc1, inv1;
    int32_t exp;
    airllm_quant_block_scale(absmax, &sc1, &inv1, &exp);
    __m256 inv = _mm256_set1_ps(inv1), sc = _mm256_set1_ps(sc1);
    __m256 absmask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7FFFFFFF));
    __m256 e2[2], x2[2], ev[2], v2[2], me[2], mv[2];
    for (int h = 0; h < 2; h++)
        e2[h] = x2[h] = ev[h] = v2[h] = me[h] = mv[h] = _mm256_setzero_ps();
    for (size_t i = 0; i < m; i += 16)
        for (int h = 0; h < 2; h++) {
            __m256 xv = _mm256_mul_ps(_mm256_loadu_ps(x + i + 8 * h), sc);
            __m256 yv = _mm256_mul_ps(_mm256_loadu_ps(y + i + 8 * h), sc);
            __m256 e = _mm256_sub_ps(xv, yv), v = _mm256_mul_ps(yv, inv);
            e2[h] = _mm256_add_ps(e2[h], _mm256_mul_ps(e, e));
            x2[h] = _mm256_add_ps(x2[h], _mm256_mul_ps(xv, xv));
            ev[h] = _mm256_add_ps(ev[h], _mm256_mul_ps(e, v));
            v2[h] = _mm256_add_ps(v2[h], _mm256_mul_ps(v, v));
            /* max(a, b) with the reference's "a > b ? a : b" order: maxps
             * returns the second operand when neither is greater. */
            me[h] = _mm256_max_ps(_mm256_and_ps(e, absmask), me[h]);
            mv[h] = _mm256_max_ps(_mm256_and_ps(v, absmask), mv[h]);
        }
    float l[6][16];
    __m256 *all[6] = {e2, x2, ev, v2, me, mv};
    for (int a = 0; a < 6; a++) {
        _mm256_storeu_ps(l[a], all[a][0]);
        _mm256_storeu_ps(l[a] + 8, all[a][1]);
    }
    stats_finish(l[0], l[1], l[2], l[3], l[4], l[5], exp, o);
}

/* The reference's pairwise lane sum in registers: lanes k + 8 onto k
 * (high 256 bits onto low), then k + 4, k + 2, k + 1: the same additions in
 * the same order. */
__attribute__((target("avx512f"))) static inline float lanes_sum_avx512(__m512 v)
{
    __m256 lo = _mm512_castps512_ps256(v);
    __m256 hi = _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(v), 1));
    __m256 s8 = _mm256_add_ps(lo, hi);
    __m128 s4 = _mm_add_ps(_mm256_castps256_ps128(s8), _mm256_extractf128_ps(s8, 1));
    __m128 s2 = _mm_add_ps(s4, _mm_movehl_ps(s4, s4));
    __m128 s1 = _mm_add_ss(s2, _mm_shuffle_ps(s2, s2, 1));
    return _mm_cvtss_f32(s1);
}

__attribute__((target("avx512f"))) static void stats_block_avx512(const float *x,
                                                                   const float *y, size_t m,
                                                                   float absmax,
                                                                   airllm_qblock_stats *o)
{
    float sc1, inv1;
    int32_t exp;
    airllm_quant_block_scale(absmax, &sc1, &inv1, &exp);
    __m512 inv = _mm512_set1_ps(inv1), sc = _mm512_set1_ps(sc1);
    __m512 e2 = _mm512_setzero_ps(), x2 = e2, ev = e2, v2 = e2, me = e2, mv = e2;
    for (size_t i = 0; i < m; i += 16) {
        __m512 xv = _mm512_mul_ps(_mm512_loadu_ps(x + i), sc);
        __m512 yv = _mm512_mul_ps(_mm512_loadu_ps(y + i), sc);
        __m512 e = _mm512_sub_ps(xv, yv), v = _mm512_mul_ps(yv, inv);
        e2 = _mm512_add_ps(e2, _mm512_mul_ps(e, e));
        x2 = _mm512_add_ps(x2, _mm512_mul_ps(xv, xv));
        ev = _mm512_add_ps(ev, _mm512_mul_ps(e, v));
        v2 = _mm512_add_ps(v2, _mm512_mul_ps(v, v));
        me = _mm512_max_ps(_mm512_abs_ps(e), me);
        mv = _mm512_max_ps(_mm512_abs_ps(v), mv);
    }
    /* Maxima of non-negative finite values: any order gives the same. */
    *o = (airllm_qblock_stats){lanes_sum_avx512(e2), lanes_sum_avx512(x2),
                               lanes_sum_avx512(ev), lanes_sum_avx512(v2),
                               _mm512_reduce_max_ps(me), _mm512_reduce_max_ps(mv), exp};
}
#endif

typedef void (*stats_block_fn)(const float *x, const float *y, size_t m, float absmax,
                               airllm_qblock_stats *o);

int airllm_quant_block_stats(const float *x, const float *y, size_t n, size_t block,
                             const float *absmax, airllm_qblock_stats *out, airllm_err *err)
{
    airllm_quant_impl impl;
    if (airllm_quant_check_block(block, err) || airllm_quant_impl_active(&impl, err))
        return -1;
    if (n && (!x || !y || !absmax || !out))
        return airllm_errf(err, "NULL buffer for %zu elements", n);
    stats_block_fn f = NULL;
#ifdef AIRLLM_X86
    if (impl == AIRLLM_QUANT_IMPL_AVX2)
        f = stats_block_avx2;
    else if (impl == AIRLLM_QUANT_IMPL_AVX512)
        f = stats_block_avx512;
#endif
    for (size_t b = 0, base = 0; base < n; b++, base += block) {
        size_t m = n - base < block ? n - base : block;
        /* Full blocks are multiples of 16 (block >= 32, a power of two); a
         * short last block goes to the reference. */
        if (f && m == block)
            f(x + base, y + base, m, absmax[b], &out[b]);
        else
            airllm_quant_block_stats_one(x + base, y + base, m, absmax[b], &out[b]);
    }
    return 0;
}

/* The kernels of one implementation; NULL members: use the reference. */
typedef struct {
    quant_block_fn quant4, quant8;
    dequant_block_fn dequant4, dequant8;
} kernel_set;

static kernel_set kernels_of(airllm_quant_impl impl)
{
    kernel_set k = {NULL, NULL, NULL, NULL};
    switch (impl) {
#ifdef AIRLLM_X86
    case AIRLLM_QUANT_IMPL_AVX2:
        k = (kernel_set){quant4_block_avx2, quant8_block_avx2, dequant4_block_avx2,
                         dequant8_block_avx2};
        break;
    case AIRLLM_QUANT_IMPL_AVX512:
        k = (kernel_set){quant4_block_avx512, quant8_block_avx512, dequant4_block_avx512,
                         dequant8_block_avx512};
        break;
#endif
#ifdef __aarch64__
    case AIRLLM_QUANT_IMPL_NEON:
        k = (kernel_set){quant4_block_neon, quant8_block_neon, dequant4_block_neon,
                         dequant8_block_neon};
        break;
#endif
    default:
        break;
    }
    return k;
}

/* Bytes of codes before element i (i at a block boundary, so even). */
static size_t code_offset(airllm_quant_type type, size_t i)
{
    return type == AIRLLM_QUANT_INT8 ? i : i / 2;
}

int airllm_quantize(airllm_quant_type type, const float *x, size_t n, size_t block,
                    uint8_t *codes, size_t codes_cap, float *absmax, size_t absmax_cap,
                    airllm_err *err)
{
    airllm_quant_impl impl;
    if (airllm_quant_check_args(type, n, block, codes_cap, absmax_cap, err) ||
        airllm_quant_impl_active(&impl, err))
        return -1;
    kernel_set ks = kernels_of(impl);
    quant_block_fn f = type == AIRLLM_QUANT_INT8 ? ks.quant8 : ks.quant4;
    if (!f || n < block)
        return airllm_quantize_ref(type, x, n, block, codes, codes_cap, absmax, absmax_cap, err);
    if (!x || !codes || !absmax)
        return airllm_errf(err, "NULL buffer for %zu elements", n);

    kernel_tab t;
    kernel_tab_init(&t, type);
    size_t nfull = n / block;
    for (size_t b = 0; b < nfull; b++) {
        size_t base = b * block;
        uint8_t *c = codes + code_offset(type, base);
        if (f(&t, x + base, block, c, &absmax[b]) &&
            airllm_quantize_ref(type, x + base, block, block, c, codes_cap - code_offset(type, base),
                                &absmax[b], 1, err))
            return airllm_err_prefix(err, "block %zu", b);
    }
    size_t base = nfull * block;
    if (base < n &&
        airllm_quantize_ref(type, x + base, n - base, block, codes + code_offset(type, base),
                            codes_cap - code_offset(type, base), &absmax[nfull], 1, err))
        return airllm_err_prefix(err, "block %zu", nfull);
    return 0;
}

int airllm_dequantize(airllm_quant_type type, const uint8_t *codes, size_t codes_len,
                      const float *absmax, size_t absmax_len, size_t n, size_t block,
                      float *out, airllm_err *err)
{
    airllm_quant_impl impl;
    if (airllm_quant_check_args(type, n, block, codes_len, absmax_len, err) ||
        airllm_quant_impl_active(&impl, err))
        return -1;
    kernel_set ks = kernels_of(impl);
    dequant_block_fn f = type == AIRLLM_QUANT_INT8 ? ks.dequant8 : ks.dequant4;
    if (!f || n < block)
        return airllm_dequantize_ref(type, codes, codes_len, absmax, absmax_len, n, block, out,
                                     err);
    if (!codes || !absmax || !out)
        return airllm_errf(err, "NULL buffer for %zu elements", n);

    kernel_tab t;
    kernel_tab_init(&t, type);
    size_t nfull = n / block;
    for (size_t b = 0; b < nfull; b++)
        f(&t, codes + code_offset(type, b * block), absmax[b], block, out + b * block);
    size_t base = nfull * block;
    if (base < n)
        return airllm_dequantize_ref(type, codes + code_offset(type, base),
                                     codes_len - code_offset(type, base), &absmax[nfull], 1,
                                     n - base, block, out + base, err);
    return 0;
}
