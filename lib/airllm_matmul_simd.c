/* SIMD tiles of airllm_mm (the interface is lib/airllm_matmul_impl.h): a
 * tile computes the dot products of R weight rows with T tokens over whole
 * rows, R x T accumulators in registers, each weight decoded once per tile
 * and used for all T tokens. One token (n = 1) uses taller tiles (AVX-512 8
 * rows for int8 and 4-bit, AVX2 4): more weight streams in flight and x
 * loaded once for more rows.
 *
 * Decoding happens in registers, 16 (AVX-512), 8 (AVX2) or 4 (NEON)
 * weights per vector:
 *   F32   a load;  F16  vcvtph2ps / fcvtl;  BF16  zero-extend and shift by 16;
 *   int8  sign-extend, convert, times absmax / 127 (once per block);
 *   4-bit two layouts:
 *   MM_Q4  16 (8) codes from 8 (4) bytes: the bytes are broadcast, a byte
 *          shuffle puts byte i into 32-bit lanes 2i and 2i+1, a variable
 *          shift by (4, 0, 4, 0, ...) brings the high nibble (element 2i)
 *          down in the even lanes, and the codes index a codebook already
 *          multiplied by the block's absmax: vpermps (AVX-512), two vpermps
 *          and a blend (AVX2), byte-plane tbl and a byte interleave (NEON).
 *          vpermps only reads an index's low 4 (AVX2: 3) bits, so the rest
 *          of a lane need not be cleared.
 *   MM_Q4T a whole vector of codes (64 / 32 bytes) per load, plain shifts
 *          bring each nibble down in turn, and x is pre-arranged to match
 *          (airllm_matmul_impl.h); about half the shuffles of MM_Q4. Used
 *          when cols is a multiple of 128 (AVX-512) / 64 (AVX2).
 * The decoded values equal the reference's (value[code] * absmax,
 * q * (absmax / 127)); only the summation order and FMA differ.
 *
 * Weight rows are prefetched ahead (not float32; pf_dist says how far): with
 * decoding work per byte the hardware prefetcher alone keeps too few lines
 * in flight (measured: bf16 and int8 gained up to a third).
 *
 * x86 kernels carry __attribute__((target(...))) so this file builds with
 * the default flags; airllm_matmul.c picks one at run time. NEON is the
 * aarch64 baseline. */
#include <string.h>

#include "airllm_matmul_impl.h"
#include "airllm_matmul_kernel.h"

#if defined(__aarch64__)
#include <arm_neon.h>
#endif

/* The tile functions of one implementation: R = 1 and R = RM rows, T = 1..4
 * tokens, for one kind; ATTR is the target attribute. */
#define MM_TILE(pfx, ATTR, kind, R, T)                                                        \
    ATTR static void pfx##_##kind##_##R##_##T(const mm_job *j, size_t row, const float *x,    \
                                              float *out)                                     \
    {                                                                                         \
        pfx##_tile(kind, R, T, j, row, x, out);                                               \
    }
#define MM_TILES(pfx, ATTR, kind, RM)                                                         \
    MM_TILE(pfx, ATTR, kind, 1, 1)                                                            \
    MM_TILE(pfx, ATTR, kind, 1, 2)                                                            \
    MM_TILE(pfx, ATTR, kind, 1, 3)                                                            \
    MM_TILE(pfx, ATTR, kind, 1, 4)                                                            \
    MM_TILE(pfx, ATTR, kind, RM, 1)                                                           \
    MM_TILE(pfx, ATTR, kind, RM, 2)                                                           \
    MM_TILE(pfx, ATTR, kind, RM, 3)                                                           \
    MM_TILE(pfx, ATTR, kind, RM, 4)
#define MM_ROW(pfx, kind, RM)                                                                 \
    {{pfx##_##kind##_1_1, pfx##_##kind##_1_2, pfx##_##kind##_1_3, pfx##_##kind##_1_4},        \
     {pfx##_##kind##_##RM##_1, pfx##_##kind##_##RM##_2, pfx##_##kind##_##RM##_3,              \
      pfx##_##kind##_##RM##_4}}

/* ------------------------------------------------------------------ */
/* AVX-512 (F + BW): 16 floats per register, R = 4 rows (one token: 8) */
/* ------------------------------------------------------------------ */
#ifdef MM_X86

static inline uint32_t ld_u32(const uint8_t *p)
{
    uint32_t u;
    memcpy(&u, p, sizeof u);
    return u;
}
static inline uint64_t ld_u64(const uint8_t *p)
{
    uint64_t u;
    memcpy(&u, p, sizeof u);
    return u;
}

/* 16 weights of one row from column k (k + 16 <= cols). s: the block's
 * scale (int8) or scaled codebook (4-bit). */
T512 INLINE __m512 w16_512(const mm_kind kind, const uint8_t *p, size_t k, __m512 s)
{
    switch (kind) {
    case MM_F32:
        return _mm512_loadu_ps(p + 4 * k);
    case MM_F16:
        return _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(const void *)(p + 2 * k)));
    case MM_BF16: {
        __m256i h = _mm256_loadu_si256((const __m256i *)(const void *)(p + 2 * k));
        return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
    }
    case MM_I8: {
        __m128i q = _mm_loadu_si128((const __m128i *)(const void *)(p + k));
        return _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(q)), s);
    }
    default: { /* MM_Q4: 8 bytes, 16 codes */
        const __m512i ctrl = _mm512_setr_epi32(
            (int)0x80808000, (int)0x80808000, (int)0x80808001, (int)0x80808001,
            (int)0x80808002, (int)0x80808002, (int)0x80808003, (int)0x80808003,
            (int)0x80808004, (int)0x80808004, (int)0x80808005, (int)0x80808005,
            (int)0x80808006, (int)0x80808006, (int)0x80808007, (int)0x80808007);
        const __m512i shift = _mm512_setr_epi32(4, 0, 4, 0, 4, 0, 4, 0, 4, 0, 4, 0, 4, 0, 4, 0);
        __m512i b = _mm512_set1_epi64((long long)ld_u64(p + k / 2));
        __m512i idx = _mm512_srlv_epi32(_mm512_shuffle_epi8(b, ctrl), shift);
        return _mm512_permutexvar_ps(idx, s);
    }
    }
}

/* The first min(left, 16) of 16 lanes. */
static inline __mmask16 lanes16(size_t left)
{
    return left >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << left) - 1);
}

/* The first m < 16 weights from column k (raw kinds), zeros after. */
T512 INLINE __m512 w16_512_mask(const mm_kind kind, const uint8_t *p, size_t k, __mmask16 m)
{
    if (kind == MM_F32)
        return _mm512_maskz_loadu_ps(m, p + 4 * k);
    __m256i h = _mm512_castsi512_si256(_mm512_maskz_loadu_epi16((__mmask32)m, p + 2 * k));
    if (kind == MM_F16)
        return _mm512_cvtph_ps(h);
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
}

/* Prefetch distance in bytes ahead in each weight row. The hardware
 * prefetcher alone keeps too few lines in flight once the decoding work per
 * byte grows (bf16, int8, 4-bit); float32 does better without. */
#ifndef MM_PF_DIST
#define MM_PF_DIST 2048
#endif

#ifndef MM_PF_TILE
#define MM_PF_TILE 16384
#endif

/* The prefetch distance of a tile of R rows, stride bytes apart. Rows are
 * contiguous, so the R rows after the tile are the next tile's: when they
 * are at most MM_PF_TILE bytes, prefetch the same column there, else
 * MM_PF_DIST ahead in the same row. For short rows a point MM_PF_DIST
 * ahead lands in a row this tile is already reading, and the next tile
 * starts cold. Measured, one thread, cold: 576-column SmolLM2 matrices
 * bf16 and int8 +15-25%, the 1536-column down projection bf16 +10% (n = 1)
 * and +70% (n = 4); 4096-column rows unchanged. */
static inline size_t pf_dist(unsigned R, size_t stride)
{
    if (R * stride <= MM_PF_TILE || stride < MM_PF_DIST)
        return R * stride;
    return MM_PF_DIST;
}

/* Up to 8 rows (the n = 1 tiles), 4 tokens, 2 accumulator sets. */
#define R512 8
typedef __m512 acc512[R512][MM_TMAX][2];

/* acc[i][t][u] += W[i, k..k+15] * x[t, k..k+15]; mask: columns present. */
T512 INLINE void step512(const mm_kind kind, const unsigned R, const unsigned T, unsigned u,
                         const uint8_t *const *p, size_t pf, size_t k, const __m512 *s,
                         const float *x, size_t ldx, acc512 acc, int masked, __mmask16 m)
{
    __m512 w[R512];
    if (kind != MM_F32 && !masked && u == 0 && MM_PF_DIST != 0) { /* once per 32 columns */
        size_t off = kind == MM_Q4 ? k / 2 : kind == MM_I8 ? k : 2 * k;
        UNROLL
        for (unsigned i = 0; i < R; i++)
            _mm_prefetch((const char *)(p[i] + off + pf), _MM_HINT_T0);
    }
    UNROLL
    for (unsigned i = 0; i < R; i++)
        w[i] = masked ? w16_512_mask(kind, p[i], k, m) : w16_512(kind, p[i], k, s[i]);
    UNROLL
    for (unsigned t = 0; t < T; t++) {
        __m512 xv = masked ? _mm512_maskz_loadu_ps(m, x + t * ldx + k)
                           : _mm512_loadu_ps(x + t * ldx + k);
        UNROLL
        for (unsigned i = 0; i < R; i++)
            acc[i][t][u] = _mm512_fmadd_ps(w[i], xv, acc[i][t][u]);
    }
}

/* The scales of the 16 lanes of a MM_Q4T chunk from a = absmax + k / block:
 * lane l holds columns 8l..8l+7, which lie in one block (block >= 32), so
 * sc[l] = a[8 l / block] = a[sidx[l]]: 1, 2 or 4 scales, all in the row
 * since cols % 128 == 0. (A masked load of them was 3x slower on Zen 5.) */
T512 INLINE __m512 scales512(const float *a, unsigned lg, __m512i sidx)
{
    if (lg >= 7)
        return _mm512_set1_ps(*a);
    if (lg == 6)
        return _mm512_permutexvar_ps(sidx, _mm512_castsi512_ps(_mm512_castsi128_si512(
                                               _mm_loadl_epi64((const __m128i *)(const void *)a))));
    return _mm512_permutexvar_ps(sidx, _mm512_castps128_ps512(_mm_loadu_ps(a)));
}

/* MM_Q4T: the 128 columns from k (64 bytes of codes per row), xt transposed
 * (see airllm_matmul_impl.h): one 64-byte load, 7 shifts, 8 vpermps and 8
 * multiplies by the lanes' scales (cb * sc, the reference's product) per
 * 128 weights, against 8 broadcasts, byte shuffles and variable shifts for
 * MM_Q4. With one token the scale is factored out (below). */
T512 INLINE void chunk512_q4t(const unsigned R, const unsigned T, const unsigned U,
                              const uint8_t *p0, size_t ws, size_t pf, const float *am0,
                              size_t as, size_t k, unsigned lg, __m512i sidx, __m512 cb,
                              const float *xt, size_t ldx, acc512 acc)
{
    __m512i v[R512];
    /* Rows as base + i * stride, the strides made opaque so that the
     * compiler recomputes i * stride here instead of keeping sixteen row
     * pointers live across the loop (more than the general registers: gcc
     * spilled them). */
    __asm__("" : "+r"(ws), "+r"(as), "+r"(pf));
    const uint8_t *c = p0 + k / 2;
    const float *a0 = am0 + (k >> lg);
    UNROLL
    for (unsigned i = 0; i < R; i++) {
        if (MM_PF_DIST != 0)
            _mm_prefetch((const char *)(c + i * ws + pf), _MM_HINT_T0);
        v[i] = _mm512_loadu_si512(c + i * ws);
    }
    if (T == 1) {
        /* One token: a lane's 8 columns lie in one block, so its scale
         * factors out of their sum: sum_s cb[code] * x, then one FMA by the
         * lanes' scales, 9 or 10 floating-point operations per 128 weights
         * instead of 16 (one token is compute-bound on 4-bit codes). 8 / R
         * partial sums per row keep 8 FMA chains in flight. */
        const unsigned C = R >= 8 ? 1 : R >= 4 ? 2 : 4;
        __m512 tmp[R512][4];
        UNROLL
        for (unsigned s = 0; s < 8; s++) {
            __m512 xv = _mm512_loadu_ps(xt + k + 16 * s);
            UNROLL
            for (unsigned i = 0; i < R; i++) {
                __m512 c = _mm512_permutexvar_ps(v[i], cb);
                v[i] = _mm512_srli_epi32(v[i], 4);
                tmp[i][s % C] = s < C ? _mm512_mul_ps(c, xv)
                                      : _mm512_fmadd_ps(c, xv, tmp[i][s % C]);
            }
        }
        UNROLL
        for (unsigned i = 0; i < R; i++) {
            __m512 t = tmp[i][0];
            UNROLL
            for (unsigned c = 1; c < C; c++)
                t = _mm512_add_ps(t, tmp[i][c]);
            acc[i][0][0] = _mm512_fmadd_ps(t, scales512(a0 + i * as, lg, sidx), acc[i][0][0]);
        }
        return;
    }
    __m512 sc[R512];
    UNROLL
    for (unsigned i = 0; i < R; i++)
        sc[i] = scales512(a0 + i * as, lg, sidx);
    UNROLL
    for (unsigned s = 0; s < 8; s++) {
        __m512 w[R512];
        UNROLL
        for (unsigned i = 0; i < R; i++) {
            w[i] = _mm512_mul_ps(_mm512_permutexvar_ps(v[i], cb), sc[i]);
            v[i] = _mm512_srli_epi32(v[i], 4);
        }
        UNROLL
        for (unsigned t = 0; t < T; t++) {
            __m512 xv = _mm512_loadu_ps(xt + t * ldx + k + 16 * s);
            UNROLL
            for (unsigned i = 0; i < R; i++)
                acc[i][t][s % U] = _mm512_fmadd_ps(w[i], xv, acc[i][t][s % U]);
        }
    }
}

T512 INLINE void avx512_tile(const mm_kind kind, const unsigned R, const unsigned T,
                             const mm_job *j, size_t row, const float *x, float *out)
{
    /* Two accumulator sets (even and odd 16-column halves) when there are
     * few outputs, so FMA latency does not limit them; more would spill. */
    const unsigned U = R * T <= 4 ? 2 : 1;
    acc512 acc;
    UNROLL
    for (unsigned i = 0; i < R; i++)
        UNROLL
        for (unsigned t = 0; t < T; t++)
            acc[i][t][0] = acc[i][t][1] = _mm512_setzero_ps();
    const uint8_t *p[R512];
    UNROLL
    for (unsigned i = 0; i < R; i++)
        p[i] = j->w + (row + i) * j->w_stride;
    const size_t pf = pf_dist(R, j->w_stride);
    const size_t ldx = j->ldx, cols = j->cols;
    __m512 s[R512];
    if (kind == MM_Q4T) {
        /* block = 2^lg; lane l's block within the chunk: 8 l / block (0 for
         * block >= 128) */
        unsigned lg = 0;
        while (((size_t)1 << lg) < j->block)
            lg++;
        const __m512i sidx = _mm512_srl_epi32(
            _mm512_setr_epi32(0, 8, 16, 24, 32, 40, 48, 56, 64, 72, 80, 88, 96, 104, 112, 120),
            _mm_cvtsi32_si128((int)lg));
        const __m512 cb = _mm512_loadu_ps(j->cb);
        const size_t body = cols / 128 * 128;
        for (size_t k = 0; k < body; k += 128)
            chunk512_q4t(R, T, U, p[0], j->w_stride, pf, j->absmax + row * j->a_stride, j->a_stride,
                         k, lg, sidx, cb, x, ldx, acc);
    }
    if (kind == MM_I8 && T == 1) {
        /* One token: the block's scale factors out of its sum, so each 16
         * weights cost a widening, a conversion and an FMA (no multiply by
         * the scale), and the block one FMA by absmax; the 1 / 127 waits
         * for the row's sum. */
        const float *am = j->absmax + row * j->a_stride;
        for (size_t b = 0; b < cols / j->block; b++) {
            __m512 t[R512];
            UNROLL
            for (unsigned i = 0; i < R; i++)
                t[i] = _mm512_setzero_ps();
            for (size_t k = b * j->block; k < (b + 1) * j->block; k += 16) {
                if (MM_PF_DIST != 0 && k % 32 == 0)
                    UNROLL
                    for (unsigned i = 0; i < R; i++)
                        _mm_prefetch((const char *)(p[i] + k + pf), _MM_HINT_T0);
                const __m512 xv = _mm512_loadu_ps(x + k);
                UNROLL
                for (unsigned i = 0; i < R; i++) {
                    __m128i q = _mm_loadu_si128((const __m128i *)(const void *)(p[i] + k));
                    t[i] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(q)), xv, t[i]);
                }
            }
            UNROLL
            for (unsigned i = 0; i < R; i++)
                acc[i][0][0] =
                    _mm512_fmadd_ps(t[i], _mm512_set1_ps(am[i * j->a_stride + b]), acc[i][0][0]);
        }
        UNROLL
        for (unsigned i = 0; i < R; i++)
            out[i] = _mm512_reduce_add_ps(acc[i][0][0]) / 127.0f;
        return;
    }
    if (kind == MM_Q4 || kind == MM_I8 || (kind == MM_Q4T && cols % 128)) {
        /* whole blocks; for MM_Q4T the tail after the last chunk of 128,
         * whose x is in column order (transpose_q4t) */
        const mm_kind sk = kind == MM_Q4T ? MM_Q4 : kind;
        const __m512 cb = sk == MM_Q4 ? _mm512_loadu_ps(j->cb) : _mm512_setzero_ps();
        const float *am = j->absmax + row * j->a_stride;
        for (size_t b = kind == MM_Q4T ? cols / 128 * 128 / j->block : 0; b < cols / j->block;
             b++) {
            UNROLL
            for (unsigned i = 0; i < R; i++) {
                float a = am[i * j->a_stride + b];
                s[i] = sk == MM_I8 ? _mm512_set1_ps(a / 127.0f)
                                   : _mm512_mul_ps(cb, _mm512_set1_ps(a));
            }
            for (size_t k = b * j->block; k < (b + 1) * j->block; k += 32) {
                step512(sk, R, T, 0, p, pf, k, s, x, ldx, acc, 0, 0);
                step512(sk, R, T, U - 1, p, pf, k + 16, s, x, ldx, acc, 0, 0);
            }
        }
    } else if (kind == MM_F32 || kind == MM_F16 || kind == MM_BF16) {
        UNROLL
        for (unsigned i = 0; i < R; i++)
            s[i] = _mm512_setzero_ps();
        size_t k = 0;
        for (; k + 32 <= cols; k += 32) {
            step512(kind, R, T, 0, p, pf, k, s, x, ldx, acc, 0, 0);
            step512(kind, R, T, U - 1, p, pf, k + 16, s, x, ldx, acc, 0, 0);
        }
        if (k + 16 <= cols) {
            step512(kind, R, T, 0, p, pf, k, s, x, ldx, acc, 0, 0);
            k += 16;
        }
        if (k < cols)
            step512(kind, R, T, 0, p, pf, k, s, x, ldx, acc, 1, lanes16(cols - k));
    }
    UNROLL
    for (unsigned i = 0; i < R; i++)
        UNROLL
        for (unsigned t = 0; t < T; t++)
            out[i * T + t] = _mm512_reduce_add_ps(
                U == 2 ? _mm512_add_ps(acc[i][t][0], acc[i][t][1]) : acc[i][t][0]);
}

MM_TILES(avx512, T512, MM_F32, 4)
MM_TILES(avx512, T512, MM_F16, 4)
MM_TILES(avx512, T512, MM_BF16, 4)
MM_TILES(avx512, T512, MM_Q4, 4)
MM_TILES(avx512, T512, MM_I8, 4)
MM_TILES(avx512, T512, MM_Q4T, 4)
/* One token: 8-row tiles for the formats whose decoding costs most per byte
 * (more streams in flight), for rows under vtile_max_stride bytes (below);
 * the 4-row tiles for the 16- and 32-bit ones (8 rows were 10% slower at
 * 4096 columns). */
MM_TILE(avx512, T512, MM_Q4, 8, 1)
MM_TILE(avx512, T512, MM_I8, 8, 1)
MM_TILE(avx512, T512, MM_Q4T, 8, 1)

/* Attention: a dot product per position (two accumulators, masked tail,
 * one horizontal sum); the mix keeps 64 outputs in 4 registers while it
 * runs over the positions. */
T512 static void avx512_scores(const float *q, const float *k, size_t kstride, size_t d, size_t n,
                               float scale, float *scores)
{
    for (size_t j = 0; j < n; j++) {
        const float *kj = k + j * kstride;
        __m512 a0 = _mm512_setzero_ps(), a1 = _mm512_setzero_ps();
        size_t i = 0;
        for (; i + 32 <= d; i += 32) {
            a0 = _mm512_fmadd_ps(_mm512_loadu_ps(q + i), _mm512_loadu_ps(kj + i), a0);
            a1 = _mm512_fmadd_ps(_mm512_loadu_ps(q + i + 16), _mm512_loadu_ps(kj + i + 16), a1);
        }
        for (; i < d; i += 16) {
            __mmask16 m = lanes16(d - i);
            a0 = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, q + i), _mm512_maskz_loadu_ps(m, kj + i),
                                 a0);
        }
        scores[j] = scale * _mm512_reduce_add_ps(_mm512_add_ps(a0, a1));
    }
}

T512 static void avx512_mix(const float *p, const float *v, size_t vstride, size_t d, size_t n,
                            float *o)
{
    for (size_t c = 0; c < d; c += 64) {
        __mmask16 m[4];
        for (unsigned u = 0; u < 4; u++)
            m[u] = c + 16 * u >= d ? 0 : lanes16(d - c - 16 * u);
        __m512 a[4] = {_mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps(),
                       _mm512_setzero_ps()};
        for (size_t j = 0; j < n; j++) {
            __m512 pj = _mm512_set1_ps(p[j]);
            const float *vj = v + j * vstride + c;
            UNROLL
            for (unsigned u = 0; u < 4; u++)
                a[u] = _mm512_fmadd_ps(pj, _mm512_maskz_loadu_ps(m[u], vj + 16 * u), a[u]);
        }
        UNROLL
        for (unsigned u = 0; u < 4; u++)
            _mm512_mask_storeu_ps(o + c + 16 * u, m[u], a[u]);
    }
}

const mm_isa airllm_mm_isa_avx512 = {
    {4, 4, 4, 4, 4, 4},
    {MM_ROW(avx512, MM_F32, 4), MM_ROW(avx512, MM_F16, 4), MM_ROW(avx512, MM_BF16, 4),
     MM_ROW(avx512, MM_Q4, 4), MM_ROW(avx512, MM_I8, 4), MM_ROW(avx512, MM_Q4T, 4)},
    {4, 4, 4, 8, 8, 8},
    {avx512_MM_F32_4_1, avx512_MM_F16_4_1, avx512_MM_BF16_4_1, avx512_MM_Q4_8_1,
     avx512_MM_I8_8_1, avx512_MM_Q4T_8_1},
    16,
    /* 8 rows only for rows under 2 KiB: longer rows read faster 4 at a time
     * with the next tile prefetched (pf_dist). Measured, one thread, cold,
     * 4096 columns: int8 19 -> 34 GB/s, nf4 18.5 -> 22.5; 11008 columns
     * int8 24.5 -> 28; 576 columns (SmolLM2) better with 8 rows (int8 35
     * against 27). On AVX2 (4 rows against 2) no such rule held: int8 and
     * 11008-column bf16 lost 10-20% with 2-row tiles. */
    2048,
    avx512_scores,
    avx512_mix,
};

/* ------------------------------------------------------------------ */
/* AVX2 + FMA + F16C: 8 floats per register, R = 2 rows (one token: 4)  */
/* ------------------------------------------------------------------ */

#define T256 __attribute__((target("avx2,fma,f16c")))

/* Scales of a block: int8 s0 = absmax / 127; 4-bit s0, s1 = codebook
 * entries 0..7 and 8..15 times absmax. */
typedef struct {
    __m256 s0, s1;
} scale256;

/* 8 weights of one row from column k (k + 8 <= cols). */
T256 INLINE __m256 w8_256(const mm_kind kind, const uint8_t *p, size_t k, scale256 s)
{
    switch (kind) {
    case MM_F32:
        return _mm256_loadu_ps((const float *)(const void *)(p + 4 * k));
    case MM_F16:
        return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(const void *)(p + 2 * k)));
    case MM_BF16: {
        __m128i h = _mm_loadu_si128((const __m128i *)(const void *)(p + 2 * k));
        return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
    }
    case MM_I8: {
        __m128i q = _mm_loadl_epi64((const __m128i *)(const void *)(p + k));
        return _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(q)), s.s0);
    }
    default: { /* MM_Q4: 4 bytes, 8 codes */
        const __m256i ctrl = _mm256_setr_epi32((int)0x80808000, (int)0x80808000,
                                               (int)0x80808001, (int)0x80808001,
                                               (int)0x80808002, (int)0x80808002,
                                               (int)0x80808003, (int)0x80808003);
        const __m256i shift = _mm256_setr_epi32(4, 0, 4, 0, 4, 0, 4, 0);
        __m256i b = _mm256_set1_epi32((int)ld_u32(p + k / 2));
        __m256i idx = _mm256_srlv_epi32(_mm256_shuffle_epi8(b, ctrl), shift);
        /* bits 0..2 pick within a half, bit 3 (moved to the sign) the half */
        __m256 lo = _mm256_permutevar8x32_ps(s.s0, idx);
        __m256 hi = _mm256_permutevar8x32_ps(s.s1, idx);
        return _mm256_blendv_ps(lo, hi, _mm256_castsi256_ps(_mm256_slli_epi32(idx, 28)));
    }
    }
}

/* Up to 4 rows (the n = 1 tiles), 4 tokens, 2 accumulator sets. */
#define R256 4
typedef __m256 acc256[R256][MM_TMAX][2];

T256 INLINE void step256(const mm_kind kind, const unsigned R, const unsigned T, unsigned u,
                         const uint8_t *const *p, size_t pf, size_t k, const scale256 *s,
                         const float *x, size_t ldx, acc256 acc)
{
    __m256 w[R256];
    if (kind != MM_F32 && u == 0 && MM_PF_DIST != 0) { /* once per 16 columns */
        size_t off = kind == MM_Q4 ? k / 2 : kind == MM_I8 ? k : 2 * k;
        UNROLL
        for (unsigned i = 0; i < R; i++)
            _mm_prefetch((const char *)(p[i] + off + pf), _MM_HINT_T0);
    }
    UNROLL
    for (unsigned i = 0; i < R; i++)
        w[i] = w8_256(kind, p[i], k, s[i]);
    UNROLL
    for (unsigned t = 0; t < T; t++) {
        __m256 xv = _mm256_loadu_ps(x + t * ldx + k);
        UNROLL
        for (unsigned i = 0; i < R; i++)
            acc[i][t][u] = _mm256_fmadd_ps(w[i], xv, acc[i][t][u]);
    }
}

/* MM_Q4T with 8 lanes: the 64 columns from k (32 bytes of codes per row),
 * x transposed per 64 columns (xt[c + 8 s + l] = x[c + 8 l + (s ^ 1)]).
 * Shifting lane l right by 4 s gives the code of column 8 l + (s ^ 1): its
 * bits 0..2 index a half of the codebook (vpermps), and the same lane
 * shifted left by 28 - 4 s puts bit 3 in the sign, which picks the half
 * (blendv). Two vpermps per 8 weights instead of a byte shuffle and two
 * vpermps. The scale of lane l is absmax[(k + 8 l) / block]: one scale per
 * chunk, or two (block 32: lanes 0..3 and 4..7). */
T256 INLINE void chunk256_q4t(const unsigned R, const unsigned T, const unsigned U,
                              const uint8_t *p0, size_t ws, size_t pf, const float *am0,
                              size_t as, size_t k, unsigned lg, __m256 cb0, __m256 cb1,
                              const float *xt, size_t ldx, acc256 acc)
{
    __m256i v[R256];
    __m256 sc[R256];
    __asm__("" : "+r"(ws), "+r"(as), "+r"(pf)); /* see chunk512_q4t */
    const uint8_t *c = p0 + k / 2;
    const float *a0 = am0 + (k >> lg);
    UNROLL
    for (unsigned i = 0; i < R; i++) {
        if (MM_PF_DIST != 0)
            _mm_prefetch((const char *)(c + i * ws + pf), _MM_HINT_T0);
        v[i] = _mm256_loadu_si256((const __m256i *)(const void *)(c + i * ws));
        const float *a = a0 + i * as;
        sc[i] = lg >= 6 ? _mm256_set1_ps(a[0])
                        : _mm256_blend_ps(_mm256_set1_ps(a[0]), _mm256_set1_ps(a[1]), 0xF0);
    }
    UNROLL
    for (unsigned s = 0; s < 8; s++) {
        __m256 w[R256];
        UNROLL
        for (unsigned i = 0; i < R; i++) {
            __m256i idx = s ? _mm256_srli_epi32(v[i], (int)(4 * s)) : v[i];
            __m256 sel = _mm256_castsi256_ps(
                s < 7 ? _mm256_slli_epi32(v[i], (int)(28 - 4 * s)) : v[i]);
            __m256 val = _mm256_blendv_ps(_mm256_permutevar8x32_ps(cb0, idx),
                                          _mm256_permutevar8x32_ps(cb1, idx), sel);
            w[i] = _mm256_mul_ps(val, sc[i]);
        }
        UNROLL
        for (unsigned t = 0; t < T; t++) {
            __m256 xv = _mm256_loadu_ps(xt + t * ldx + k + 8 * s);
            UNROLL
            for (unsigned i = 0; i < R; i++)
                acc[i][t][s % U] = _mm256_fmadd_ps(w[i], xv, acc[i][t][s % U]);
        }
    }
}

/* Sum of the 8 lanes. */
T256 INLINE float hsum256(__m256 v)
{
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_shuffle_ps(s, s, 1));
    return _mm_cvtss_f32(s);
}

T256 INLINE void avx2_tile(const mm_kind kind, const unsigned R, const unsigned T,
                           const mm_job *j, size_t row, const float *x, float *out)
{
    const unsigned U = R * T <= 2 ? 2 : 1;
    acc256 acc;
    UNROLL
    for (unsigned i = 0; i < R; i++)
        UNROLL
        for (unsigned t = 0; t < T; t++)
            acc[i][t][0] = acc[i][t][1] = _mm256_setzero_ps();
    float tail[R256][MM_TMAX];
    memset(tail, 0, sizeof tail);
    const uint8_t *p[R256];
    UNROLL
    for (unsigned i = 0; i < R; i++)
        p[i] = j->w + (row + i) * j->w_stride;
    const size_t pf = pf_dist(R, j->w_stride);
    const size_t ldx = j->ldx, cols = j->cols;
    scale256 s[R256];
    if (kind == MM_Q4T) {
        unsigned lg = 0; /* block = 2^lg */
        while (((size_t)1 << lg) < j->block)
            lg++;
        const __m256 cb0 = _mm256_loadu_ps(j->cb), cb1 = _mm256_loadu_ps(j->cb + 8);
        const size_t body = cols / 64 * 64;
        for (size_t k = 0; k < body; k += 64)
            chunk256_q4t(R, T, U, p[0], j->w_stride, pf, j->absmax + row * j->a_stride, j->a_stride,
                         k, lg, cb0, cb1, x, ldx, acc);
    }
    if (kind == MM_Q4 || kind == MM_I8 || (kind == MM_Q4T && cols % 64)) {
        /* whole blocks; for MM_Q4T the tail after the last chunk of 64 */
        const mm_kind sk = kind == MM_Q4T ? MM_Q4 : kind;
        const __m256 cb0 = sk == MM_Q4 ? _mm256_loadu_ps(j->cb) : _mm256_setzero_ps();
        const __m256 cb1 = sk == MM_Q4 ? _mm256_loadu_ps(j->cb + 8) : _mm256_setzero_ps();
        const float *am = j->absmax + row * j->a_stride;
        for (size_t b = kind == MM_Q4T ? cols / 64 * 64 / j->block : 0; b < cols / j->block;
             b++) {
            UNROLL
            for (unsigned i = 0; i < R; i++) {
                float a = am[i * j->a_stride + b];
                if (sk == MM_I8) {
                    s[i].s0 = s[i].s1 = _mm256_set1_ps(a / 127.0f);
                } else {
                    s[i].s0 = _mm256_mul_ps(cb0, _mm256_set1_ps(a));
                    s[i].s1 = _mm256_mul_ps(cb1, _mm256_set1_ps(a));
                }
            }
            for (size_t k = b * j->block; k < (b + 1) * j->block; k += 16) {
                step256(sk, R, T, 0, p, pf, k, s, x, ldx, acc);
                step256(sk, R, T, U - 1, p, pf, k + 8, s, x, ldx, acc);
            }
        }
    } else if (kind == MM_F32 || kind == MM_F16 || kind == MM_BF16) {
        UNROLL
        for (unsigned i = 0; i < R; i++)
            s[i].s0 = s[i].s1 = _mm256_setzero_ps();
        size_t k = 0;
        for (; k + 16 <= cols; k += 16) {
            step256(kind, R, T, 0, p, pf, k, s, x, ldx, acc);
            step256(kind, R, T, U - 1, p, pf, k + 8, s, x, ldx, acc);
        }
        if (k + 8 <= cols) {
            step256(kind, R, T, 0, p, pf, k, s, x, ldx, acc);
            k += 8;
        }
        if (k < cols)
            for (unsigned i = 0; i < R; i++)
                airllm_mm_tail_raw(kind, p[i], k, cols, x, ldx, T, tail[i]);
    }
    UNROLL
    for (unsigned i = 0; i < R; i++)
        UNROLL
        for (unsigned t = 0; t < T; t++)
            out[i * T + t] =
                hsum256(U == 2 ? _mm256_add_ps(acc[i][t][0], acc[i][t][1]) : acc[i][t][0]) +
                tail[i][t];
}

MM_TILES(avx2, T256, MM_F32, 2)
MM_TILES(avx2, T256, MM_F16, 2)
MM_TILES(avx2, T256, MM_BF16, 2)
MM_TILES(avx2, T256, MM_Q4, 2)
MM_TILES(avx2, T256, MM_I8, 2)
MM_TILES(avx2, T256, MM_Q4T, 2)
MM_TILE(avx2, T256, MM_F32, 4, 1)
MM_TILE(avx2, T256, MM_F16, 4, 1)
MM_TILE(avx2, T256, MM_BF16, 4, 1)
MM_TILE(avx2, T256, MM_Q4, 4, 1)
MM_TILE(avx2, T256, MM_I8, 4, 1)
MM_TILE(avx2, T256, MM_Q4T, 4, 1)

/* Attention (as avx512_scores / avx512_mix), scalar column tails. */
T256 static void avx2_scores(const float *q, const float *k, size_t kstride, size_t d, size_t n,
                             float scale, float *scores)
{
    for (size_t j = 0; j < n; j++) {
        const float *kj = k + j * kstride;
        __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps();
        size_t i = 0;
        for (; i + 16 <= d; i += 16) {
            a0 = _mm256_fmadd_ps(_mm256_loadu_ps(q + i), _mm256_loadu_ps(kj + i), a0);
            a1 = _mm256_fmadd_ps(_mm256_loadu_ps(q + i + 8), _mm256_loadu_ps(kj + i + 8), a1);
        }
        if (i + 8 <= d) {
            a0 = _mm256_fmadd_ps(_mm256_loadu_ps(q + i), _mm256_loadu_ps(kj + i), a0);
            i += 8;
        }
        float sum = hsum256(_mm256_add_ps(a0, a1));
        for (; i < d; i++)
            sum += q[i] * kj[i];
        scores[j] = scale * sum;
    }
}

T256 static void avx2_mix(const float *p, const float *v, size_t vstride, size_t d, size_t n,
                          float *o)
{
    size_t c = 0;
    for (; c + 32 <= d; c += 32) {
        __m256 a[4] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(),
                       _mm256_setzero_ps()};
        for (size_t j = 0; j < n; j++) {
            __m256 pj = _mm256_set1_ps(p[j]);
            const float *vj = v + j * vstride + c;
            UNROLL
            for (unsigned u = 0; u < 4; u++)
                a[u] = _mm256_fmadd_ps(pj, _mm256_loadu_ps(vj + 8 * u), a[u]);
        }
        UNROLL
        for (unsigned u = 0; u < 4; u++)
            _mm256_storeu_ps(o + c + 8 * u, a[u]);
    }
    for (; c + 8 <= d; c += 8) {
        __m256 a = _mm256_setzero_ps();
        for (size_t j = 0; j < n; j++)
            a = _mm256_fmadd_ps(_mm256_set1_ps(p[j]), _mm256_loadu_ps(v + j * vstride + c), a);
        _mm256_storeu_ps(o + c, a);
    }
    for (; c < d; c++) {
        float a = 0;
        for (size_t j = 0; j < n; j++)
            a += p[j] * v[j * vstride + c];
        o[c] = a;
    }
}

const mm_isa airllm_mm_isa_avx2 = {
    {2, 2, 2, 2, 2, 2},
    {MM_ROW(avx2, MM_F32, 2), MM_ROW(avx2, MM_F16, 2), MM_ROW(avx2, MM_BF16, 2),
     MM_ROW(avx2, MM_Q4, 2), MM_ROW(avx2, MM_I8, 2), MM_ROW(avx2, MM_Q4T, 2)},
    {4, 4, 4, 4, 4, 4},
    {avx2_MM_F32_4_1, avx2_MM_F16_4_1, avx2_MM_BF16_4_1, avx2_MM_Q4_4_1, avx2_MM_I8_4_1,
     avx2_MM_Q4T_4_1},
    8,
    0,
    avx2_scores,
    avx2_mix,
};

#endif /* MM_X86 */

/* ------------------------------------------------------------------ */
/* NEON (aarch64): 4 floats per register, R = 4 rows (4-bit: 2)        */
/* ------------------------------------------------------------------ */
#ifdef __aarch64__

/* A block's scale: int8 s = absmax / 127 (all lanes); 4-bit: the scaled
 * codebook as four byte planes (plane b holds byte b of the 16 floats), so
 * that a lookup is four 16-byte tbl. */
typedef struct {
    float32x4_t s;
    uint8x16x4_t planes;
} scale_neon;

INLINE void planes_neon(const float *cb, float a, scale_neon *out)
{
    float v[16];
    UNROLL
    for (int q = 0; q < 4; q++)
        vst1q_f32(v + 4 * q, vmulq_n_f32(vld1q_f32(cb + 4 * q), a));
    out->planes = vld4q_u8((const uint8_t *)v); /* de-interleaves bytes 0,1,2,3 */
}

/* 16 weights of one row from column k into w[0..3] (4 each). */
INLINE void w16_neon(const mm_kind kind, const uint8_t *p, size_t k, const scale_neon *s,
                     float32x4_t w[4])
{
    switch (kind) {
    case MM_F32:
        UNROLL
        for (int q = 0; q < 4; q++)
            w[q] = vreinterpretq_f32_u8(vld1q_u8(p + 4 * (k + 4 * q)));
        break;
    case MM_F16:
        UNROLL
        for (int q = 0; q < 4; q++)
            w[q] = vcvt_f32_f16(vreinterpret_f16_u8(vld1_u8(p + 2 * (k + 4 * q))));
        break;
    case MM_BF16:
        UNROLL
        for (int q = 0; q < 4; q++)
            w[q] = vreinterpretq_f32_u32(
                vshll_n_u16(vreinterpret_u16_u8(vld1_u8(p + 2 * (k + 4 * q))), 16));
        break;
    case MM_I8: {
        int8x16_t b = vld1q_s8((const int8_t *)(p + k));
        int16x8_t lo = vmovl_s8(vget_low_s8(b)), hi = vmovl_high_s8(b);
        w[0] = vmulq_f32(vcvtq_f32_s32(vmovl_s16(vget_low_s16(lo))), s->s);
        w[1] = vmulq_f32(vcvtq_f32_s32(vmovl_high_s16(lo)), s->s);
        w[2] = vmulq_f32(vcvtq_f32_s32(vmovl_s16(vget_low_s16(hi))), s->s);
        w[3] = vmulq_f32(vcvtq_f32_s32(vmovl_high_s16(hi)), s->s);
        break;
    }
    default: { /* MM_Q4: 8 bytes, 16 codes */
        uint8x8_t b = vld1_u8(p + k / 2);
        uint8x8x2_t z = vzip_u8(vshr_n_u8(b, 4), vand_u8(b, vdup_n_u8(0x0F)));
        uint8x16_t e = vcombine_u8(z.val[0], z.val[1]); /* codes in element order */
        uint8x16_t b0 = vqtbl1q_u8(s->planes.val[0], e), b1 = vqtbl1q_u8(s->planes.val[1], e);
        uint8x16_t b2 = vqtbl1q_u8(s->planes.val[2], e), b3 = vqtbl1q_u8(s->planes.val[3], e);
        /* bytes (b0, b1, b2, b3) of element l become float l */
        uint8x16x2_t z01 = vzipq_u8(b0, b1), z23 = vzipq_u8(b2, b3);
        uint16x8x2_t f0 = vzipq_u16(vreinterpretq_u16_u8(z01.val[0]),
                                    vreinterpretq_u16_u8(z23.val[0]));
        uint16x8x2_t f1 = vzipq_u16(vreinterpretq_u16_u8(z01.val[1]),
                                    vreinterpretq_u16_u8(z23.val[1]));
        w[0] = vreinterpretq_f32_u16(f0.val[0]);
        w[1] = vreinterpretq_f32_u16(f0.val[1]);
        w[2] = vreinterpretq_f32_u16(f1.val[0]);
        w[3] = vreinterpretq_f32_u16(f1.val[1]);
        break;
    }
    }
}

/* 4 weights from column k (raw kinds, k + 4 <= cols). */
INLINE float32x4_t w4_neon(const mm_kind kind, const uint8_t *p, size_t k)
{
    if (kind == MM_F32)
        return vreinterpretq_f32_u8(vld1q_u8(p + 4 * k));
    if (kind == MM_F16)
        return vcvt_f32_f16(vreinterpret_f16_u8(vld1_u8(p + 2 * k)));
    return vreinterpretq_f32_u32(vshll_n_u16(vreinterpret_u16_u8(vld1_u8(p + 2 * k)), 16));
}

/* acc[i][t][q % U] += W[i, k+4q..] x[t, k+4q..] for the 16 columns from k. */
INLINE void step_neon(const mm_kind kind, const unsigned R, const unsigned T, const unsigned U,
                      const uint8_t *const *p, size_t k, const scale_neon *s, const float *x,
                      size_t ldx, float32x4_t acc[4][MM_TMAX][4])
{
    float32x4_t w[4][4];
    UNROLL
    for (unsigned i = 0; i < R; i++)
        w16_neon(kind, p[i], k, &s[i], w[i]);
    UNROLL
    for (unsigned q = 0; q < 4; q++)
        UNROLL
        for (unsigned t = 0; t < T; t++) {
            float32x4_t xv = vld1q_f32(x + t * ldx + k + 4 * q);
            UNROLL
            for (unsigned i = 0; i < R; i++)
                acc[i][t][q % U] = vfmaq_f32(acc[i][t][q % U], w[i][q], xv);
        }
}

INLINE void neon_tile(const mm_kind kind, const unsigned R, const unsigned T, const mm_job *j,
                      size_t row, const float *x, float *out)
{
    /* independent accumulators: enough in flight to hide FMA latency */
    const unsigned U = R * T <= 4 ? 4 : R * T <= 8 ? 2 : 1;
    float32x4_t acc[4][MM_TMAX][4];
    UNROLL
    for (unsigned i = 0; i < R; i++)
        UNROLL
        for (unsigned t = 0; t < T; t++)
            UNROLL
            for (unsigned u = 0; u < U; u++)
                acc[i][t][u] = vdupq_n_f32(0.0f);
    float tail[4][MM_TMAX] = {{0}};
    const uint8_t *p[4];
    UNROLL
    for (unsigned i = 0; i < R; i++)
        p[i] = j->w + (row + i) * j->w_stride;
    const size_t ldx = j->ldx, cols = j->cols;
    scale_neon s[4];
    if (kind == MM_Q4 || kind == MM_I8) {
        const float *am = j->absmax + row * j->a_stride;
        for (size_t b = 0; b < j->cols / j->block; b++) {
            UNROLL
            for (unsigned i = 0; i < R; i++) {
                float a = am[i * j->a_stride + b];
                if (kind == MM_I8)
                    s[i].s = vdupq_n_f32(a / 127.0f);
                else
                    planes_neon(j->cb, a, &s[i]);
            }
            for (size_t k = b * j->block; k < (b + 1) * j->block; k += 16)
                step_neon(kind, R, T, U, p, k, s, x, ldx, acc);
        }
    } else {
        size_t k = 0;
        for (; k + 16 <= cols; k += 16)
            step_neon(kind, R, T, U, p, k, s, x, ldx, acc);
        for (; k + 4 <= cols; k += 4)
            UNROLL
            for (unsigned t = 0; t < T; t++) {
                float32x4_t xv = vld1q_f32(x + t * ldx + k);
                UNROLL
                for (unsigned i = 0; i < R; i++)
                    acc[i][t][0] = vfmaq_f32(acc[i][t][0], w4_neon(kind, p[i], k), xv);
            }
        if (k < cols)
            UNROLL
            for (unsigned i = 0; i < R; i++)
                airllm_mm_tail_raw(kind, p[i], k, cols, x, ldx, T, tail[i]);
    }
    UNROLL
    for (unsigned i = 0; i < R; i++)
        UNROLL
        for (unsigned t = 0; t < T; t++) {
            float32x4_t v = acc[i][t][0];
            UNROLL
            for (unsigned u = 1; u < U; u++)
                v = vaddq_f32(v, acc[i][t][u]);
            out[i * T + t] = vaddvq_f32(v) + tail[i][t];
        }
}

#define NEON_ATTR
MM_TILES(neon, NEON_ATTR, MM_F32, 4)
MM_TILES(neon, NEON_ATTR, MM_F16, 4)
MM_TILES(neon, NEON_ATTR, MM_BF16, 4)
MM_TILES(neon, NEON_ATTR, MM_Q4, 2)
MM_TILES(neon, NEON_ATTR, MM_I8, 4)

/* Attention (as avx512_scores / avx512_mix), scalar column tails. */
static void neon_scores(const float *q, const float *k, size_t kstride, size_t d, size_t n,
                        float scale, float *scores)
{
    for (size_t j = 0; j < n; j++) {
        const float *kj = k + j * kstride;
        float32x4_t a0 = vdupq_n_f32(0.0f), a1 = vdupq_n_f32(0.0f);
        size_t i = 0;
        for (; i + 8 <= d; i += 8) {
            a0 = vfmaq_f32(a0, vld1q_f32(q + i), vld1q_f32(kj + i));
            a1 = vfmaq_f32(a1, vld1q_f32(q + i + 4), vld1q_f32(kj + i + 4));
        }
        if (i + 4 <= d) {
            a0 = vfmaq_f32(a0, vld1q_f32(q + i), vld1q_f32(kj + i));
            i += 4;
        }
        float sum = vaddvq_f32(vaddq_f32(a0, a1));
        for (; i < d; i++)
            sum += q[i] * kj[i];
        scores[j] = scale * sum;
    }
}

static void neon_mix(const float *p, const float *v, size_t vstride, size_t d, size_t n, float *o)
{
    size_t c = 0;
    for (; c + 16 <= d; c += 16) {
        float32x4_t a[4] = {vdupq_n_f32(0.0f), vdupq_n_f32(0.0f), vdupq_n_f32(0.0f),
                            vdupq_n_f32(0.0f)};
        for (size_t j = 0; j < n; j++) {
            const float *vj = v + j * vstride + c;
            UNROLL
            for (unsigned u = 0; u < 4; u++)
                a[u] = vfmaq_n_f32(a[u], vld1q_f32(vj + 4 * u), p[j]);
        }
        UNROLL
        for (unsigned u = 0; u < 4; u++)
            vst1q_f32(o + c + 4 * u, a[u]);
    }
    for (; c + 4 <= d; c += 4) {
        float32x4_t a = vdupq_n_f32(0.0f);
        for (size_t j = 0; j < n; j++)
            a = vfmaq_n_f32(a, vld1q_f32(v + j * vstride + c), p[j]);
        vst1q_f32(o + c, a);
    }
    for (; c < d; c++) {
        float a = 0;
        for (size_t j = 0; j < n; j++)
            a += p[j] * v[j * vstride + c];
        o[c] = a;
    }
}

const mm_isa airllm_mm_isa_neon = {
    {4, 4, 4, 2, 4, 0},
    {MM_ROW(neon, MM_F32, 4), MM_ROW(neon, MM_F16, 4), MM_ROW(neon, MM_BF16, 4),
     MM_ROW(neon, MM_Q4, 2), MM_ROW(neon, MM_I8, 4), {{NULL}}},
    {0},
    {NULL},
    0,
    0,
    neon_scores,
    neon_mix,
};

#endif /* __aarch64__ */
