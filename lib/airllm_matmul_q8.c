/* The int8-activation path of airllm_mm, at every token count (decode,
 * batch and prefill) with nf4, fp4 or int8 weights, on CPUs with
 * AVX512-VNNI, as llama.cpp's Q8_0 path does for its formats.
 *
 * The arithmetic (docs/runner.md, "int8 activations"), for token t, row i:
 *   - each token's activations are cut in groups of 32 columns; group g is
 *     a[t, k] = round(x[t, k] * 127 / m) with m = max |x[t, g]|, and its
 *     scale s[t, g] = m / 16129 (16129 = 127^2);
 *   - each weight is an integer w[i, k] in [-127, 127] times
 *     absmax[i, block] / 127: int8 the stored code; nf4/fp4
 *     round(127 * codebook[code]), the codebook rounded to 1/127;
 *   - y[t, i] = 0, then for each group in column order
 *       y = fma((float)d, absmax[i, block(g)] * s[t, g], y),
 *     with d = sum over the group of w[i, k] a[t, k], an exact integer.
 * vpdpbusd multiplies unsigned by signed bytes, so the kernels hold the
 * weights as w + 128 (1..255) and start each group's sum at
 * c[t, g] = -128 * sum_k a[t, k], which removes the offset exactly.
 * Every step is an integer sum or one float rounding in a fixed order, so
 * the AVX-512 kernel and the scalar reference here (q8_rows_ref) give the
 * same bits; tests/test_matmul_q8.c checks that, and the distance to the
 * float oracle against the bound of the two roundings.
 *
 * Layout of the AVX-512 path: panels of 32 rows (the last one may be
 * partial: masked loads and stores), chunks of 256 columns decoded into
 * wq [64 quads][32 rows][4 bytes] (8 KiB: 4 columns of a row are one
 * 32-bit lane, the layout vpdpbusd reads; for 4-bit weights quad 2q holds
 * the even and quad 2q + 1 the odd columns of 8q .. 8q + 7, as the nibbles
 * come, and the tokens' activations are reordered to match once per
 * product: act->eo) and the rows' scales per group;
 * then for each group of 32 columns the 16 weight vectors stay in
 * registers while every token adds its 16 vpdpbusd (each 64 products, the
 * token's 4 activations broadcast from memory) into two accumulators. */
#include <float.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "airllm_impl.h"
#include "airllm_matmul_impl.h"
#include "airllm_matmul_kernel.h"

#define MR 32 /* rows per panel */
#define KC 256 /* columns per decoded chunk */
#define G AIRLLM_MM_Q8_GROUP /* columns per activation scale */

_Static_assert(G == 32, "the kernels take a group as 8 quads of 4 columns");

/* Weight integer plus 128 of each code: int8 q -> q + 128; 4-bit
 * code c -> round(127 cb[c]) + 128. */
void airllm_mm_q8_code_table(const float *cb, uint8_t tab[16])
{
    for (unsigned c = 0; c < 16; c++) {
        float v = cb[c] * 127.0f;
        int q = (int)(v < 0 ? v - 0.5f : v + 0.5f); /* half away from zero; |cb| <= 1 */
        tab[c] = (uint8_t)(q + 128);
    }
}

/* ------------------------------------------------------------------ */
/* activations                                                         */
/* ------------------------------------------------------------------ */

/* Below this a group counts as zeros: 127 / m must stay finite. */
#define Q8_TINY 1e-30f

void airllm_mm_q8_quantize_ref(const float *x, size_t n, size_t ldx, size_t cols, int8_t *a,
                               float *s, int32_t *c)
{
    const size_t groups = cols / G;
    for (size_t t = 0; t < n; t++)
        for (size_t g = 0; g < groups; g++) {
            const float *xg = x + t * ldx + g * G;
            int8_t *ag = a + t * cols + g * G;
            float m = 0.0f;
            int finite = 1;
            for (unsigned k = 0; k < G; k++) {
                float v = xg[k] < 0 ? -xg[k] : xg[k];
                finite &= v <= FLT_MAX; /* false for inf and NaN */
                m = v > m ? v : m;
            }
            size_t o = t * groups + g;
            if (!finite || m < Q8_TINY) {
                /* a non-finite input makes the group's outputs NaN, as
                 * float sums would make them NaN or inf */
                memset(ag, 0, G);
                s[o] = finite ? 0.0f : __builtin_nanf("");
                c[o] = 0;
                continue;
            }
            const float inv = 127.0f / m;
            int32_t sum = 0;
            for (unsigned k = 0; k < G; k++) {
                /* round to nearest even, as cvtps2dq: adding and taking
                 * away 1.5 * 2^23 (|x * inv| <= 127 + an ulp) */
                float r = (xg[k] * inv + 12582912.0f) - 12582912.0f;
                int q = (int)r;
                ag[k] = (int8_t)q;
                sum += q;
            }
            s[o] = m / 16129.0f;
            c[o] = -128 * sum;
        }
}

#ifdef MM_X86
/* The same, 16 columns per vector: cvtps2dq rounds to nearest even like
 * the reference's 1.5 * 2^23 trick, and the maximum of finite values is
 * exact in any order, so the bytes are the reference's (test_matmul_q8). */
__attribute__((target("avx512f,avx512bw"))) static void
quantize_512(const float *x, size_t n, size_t ldx, size_t cols, int8_t *a, float *s, int32_t *c)
{
    const size_t groups = cols / G;
    const __m512 big = _mm512_set1_ps(FLT_MAX);
    for (size_t t = 0; t < n; t++)
        for (size_t g = 0; g < groups; g++) {
            const float *xg = x + t * ldx + g * G;
            int8_t *ag = a + t * cols + g * G;
            __m512 x0 = _mm512_loadu_ps(xg), x1 = _mm512_loadu_ps(xg + 16);
            __m512 b0 = _mm512_abs_ps(x0), b1 = _mm512_abs_ps(x1);
            /* false for inf and NaN */
            __mmask16 ok = _mm512_cmp_ps_mask(b0, big, _CMP_LE_OQ) &
                           _mm512_cmp_ps_mask(b1, big, _CMP_LE_OQ);
            float m = _mm512_reduce_max_ps(_mm512_max_ps(b0, b1));
            size_t o = t * groups + g;
            if (ok != 0xFFFF || m < Q8_TINY) {
                memset(ag, 0, G);
                s[o] = ok == 0xFFFF ? 0.0f : __builtin_nanf("");
                c[o] = 0;
                continue;
            }
            const __m512 inv = _mm512_set1_ps(127.0f / m);
            __m512i q0 = _mm512_cvtps_epi32(_mm512_mul_ps(x0, inv));
            __m512i q1 = _mm512_cvtps_epi32(_mm512_mul_ps(x1, inv));
            _mm_storeu_si128((__m128i *)ag, _mm512_cvtepi32_epi8(q0));
            _mm_storeu_si128((__m128i *)(ag + 16), _mm512_cvtepi32_epi8(q1));
            s[o] = m / 16129.0f;
            c[o] = -128 * _mm512_reduce_add_epi32(_mm512_add_epi32(q0, q1));
        }
}
#endif

void airllm_mm_q8_quantize(const float *x, size_t n, size_t ldx, size_t cols, int8_t *a,
                           float *s, int32_t *c)
{
#ifdef MM_X86
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw")) {
        quantize_512(x, n, ldx, cols, a, s, c);
        return;
    }
#endif
    airllm_mm_q8_quantize_ref(x, n, ldx, cols, a, s, c);
}

static void even_odd_ref(const int8_t *a, size_t len, int8_t *eo)
{
    for (size_t i = 0; i < len; i += 8)
        for (unsigned b = 0; b < 4; b++) {
            eo[i + b] = a[i + 2 * b];
            eo[i + 4 + b] = a[i + 2 * b + 1];
        }
}

#ifdef MM_X86
/* 64 bytes per vpshufb: 8-byte runs never cross a 16-byte lane. */
__attribute__((target("avx512f,avx512bw"))) static void even_odd_512(const int8_t *a,
                                                                    size_t len, int8_t *eo)
{
    const __m512i order = _mm512_broadcast_i32x4(
        _mm_setr_epi8(0, 2, 4, 6, 1, 3, 5, 7, 8, 10, 12, 14, 9, 11, 13, 15));
    size_t i = 0;
    for (; i + 64 <= len; i += 64)
        _mm512_storeu_si512(eo + i, _mm512_shuffle_epi8(_mm512_loadu_si512(a + i), order));
    even_odd_ref(a + i, len - i, eo + i);
}
#endif

void airllm_mm_q8_even_odd(const int8_t *a, size_t len, int8_t *eo)
{
#ifdef MM_X86
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw")) {
        even_odd_512(a, len, eo);
        return;
    }
#endif
    even_odd_ref(a, len, eo);
}

/* ------------------------------------------------------------------ */
/* scalar reference                                                    */
/* ------------------------------------------------------------------ */

/* Weight integer + 128 of element k of row r (r relative to j). */
static int wq_ref(const mm_job *j, const uint8_t tab[16], size_t r, size_t k)
{
    const uint8_t *p = j->w + r * j->w_stride;
    if (j->kind == MM_I8)
        return (int)(int8_t)p[k] + 128;
    uint8_t b = p[k / 2];
    return tab[(k & 1) ? b & 0x0Fu : b >> 4];
}

/* Rows [r0, r1) of j for every token, by the formula at the top. */
static void q8_rows_ref(const mm_job *j, size_t r0, size_t r1, const airllm_mm_act *act,
                        float *y, size_t ldy)
{
    uint8_t tab[16] = {0};
    if (j->kind == MM_Q4)
        airllm_mm_q8_code_table(j->cb, tab);
    const size_t groups = j->cols / G;
    for (size_t t = 0; t < act->n; t++)
        for (size_t r = r0; r < r1; r++) {
            float acc = 0.0f;
            for (size_t g = 0; g < groups; g++) {
                const int8_t *ag = act->a + t * j->cols + g * G;
                int32_t d = act->c[t * groups + g];
                for (unsigned k = 0; k < G; k++)
                    d += wq_ref(j, tab, r, g * G + k) * ag[k];
                float scale = j->absmax[r * j->a_stride + g * G / j->block] *
                              act->s[t * groups + g];
                acc = __builtin_fmaf((float)d, scale, acc);
            }
            y[t * ldy + r] = acc;
        }
}

/* ------------------------------------------------------------------ */
/* AVX-512 VNNI                                                        */
/* ------------------------------------------------------------------ */
#ifdef MM_X86

#define TVNNI __attribute__((target("avx512f,avx512bw,avx512vnni,avx2,fma,f16c")))

/* Bytes ahead in each row that the decoder prefetches. */
#define Q8_PF 512

/* Columns [k0, k0 + kc) (kc a multiple of 32, at most KC) of the 16 rows
 * from `row` (rows past nr: row 0 again, their outputs never stored) into
 * wq[quad][h + lane][4], h = 0 or 16. */
TVNNI INLINE void panel16_q8(const mm_kind kind, const mm_job *j, size_t row, size_t nr,
                             size_t k0, size_t kc, __m512i tab, uint8_t *wq)
{
    const uint8_t *rp[16];
    airllm_mm_row_ptrs16(j, row, nr, rp);
    const size_t slab = kind == MM_Q4 ? 128 : 64; /* columns per 64 bytes */
    for (size_t s0 = 0; s0 < kc; s0 += slab) {
        size_t kk = k0 + s0;
        size_t off = kind == MM_Q4 ? kk / 2 : kk;
        size_t left = kind == MM_Q4 ? (kc - s0) / 2 : kc - s0; /* bytes */
        __mmask64 m = left >= 64 ? ~(__mmask64)0 : (((__mmask64)1 << left) - 1);
        __m512i r[16];
        UNROLL
        for (unsigned i = 0; i < 16; i++) {
            _mm_prefetch((const char *)(rp[i] + off + Q8_PF), _MM_HINT_T0);
            r[i] = _mm512_maskz_loadu_epi8(m, rp[i] + off);
        }
        airllm_mm_transpose16(r);
        /* r[c]: 32-bit word c of the slab, lane i = row i. All 16 words,
         * in a loop unrolled so that r stays in registers: past the chunk
         * they are zeros, stored inside wq (a slab starts at quad 0, 16,
         * 32 or 48 of its 64) and never read. */
        if (kind == MM_I8) {
            UNROLL
            for (unsigned c = 0; c < 16; c++)
                _mm512_store_si512(wq + (s0 / 4 + c) * 128,
                                   _mm512_xor_si512(r[c], _mm512_set1_epi8((char)0x80)));
        } else {
            UNROLL
            for (unsigned c = 0; c < 16; c++) {
                /* byte b of word c: columns 8c + 2b (high nibble) and
                 * 8c + 2b + 1; the even ones make quad 2c, the odd ones
                 * 2c + 1 (the order of act->eo), so no interleave */
                __m512i hi, lo;
                airllm_mm_nibbles(r[c], tab, &hi, &lo);
                _mm512_store_si512(wq + (s0 / 4 + 2 * c) * 128, hi);
                _mm512_store_si512(wq + (s0 / 4 + 2 * c + 1) * 128, lo);
            }
        }
    }
}

/* The panel's block scales, transposed: st[b][i] = absmax of block b of
 * row i (rows past nr: row 0), b < nb; 16 x 16 transposes of 16 blocks
 * of 16 rows (a scalar copy per row and group cost half the decode). */
TVNNI static void panel_scales(const mm_job *j, size_t row, size_t nr, size_t nb, float *st)
{
    for (unsigned h = 0; h < MR; h += 16) {
        const float *ap[16];
        for (unsigned i = 0; i < 16; i++)
            ap[i] = j->absmax + (row + (h + i < nr ? h + i : 0)) * j->a_stride;
        for (size_t b0 = 0; b0 < nb; b0 += 16) {
            size_t left = nb - b0;
            __mmask16 m = left >= 16 ? 0xFFFF : (__mmask16)((1u << left) - 1);
            __m512i r[16];
            UNROLL
            for (unsigned i = 0; i < 16; i++)
                r[i] = _mm512_castps_si512(_mm512_maskz_loadu_ps(m, ap[i] + b0));
            airllm_mm_transpose16(r);
            UNROLL
            for (unsigned c = 0; c < 16; c++)
                if (c < left)
                    _mm512_store_si512(st + (b0 + c) * MR + h, r[c]);
        }
    }
}

/* Tokens t0 .. t0 + T - 1 of the chunk's kc / 32 groups into y[t][i],
 * i < nr (masks m0 | m1): the float sums stay in registers over the
 * chunk (y is read and written once per chunk, not per group: a masked
 * store read back soon after cannot be forwarded), and T tokens give 2 T
 * independent chains of 8 vpdpbusd (latency 5) per group. */
TVNNI INLINE void tokens_q8(const unsigned T, const uint8_t *wq, const float *const *ws, size_t g0,
                            size_t ng, const int8_t *restrict xa, const float *restrict xs,
                            const int32_t *restrict xc, size_t cols, size_t t0, __mmask16 m0,
                            __mmask16 m1, float *restrict y, size_t ldy)
{
    const size_t groups = cols / G;
    __m512 f[4][2];
    UNROLL
    for (unsigned u = 0; u < T; u++) {
        f[u][0] = _mm512_maskz_loadu_ps(m0, y + (t0 + u) * ldy);
        f[u][1] = _mm512_maskz_loadu_ps(m1, y + (t0 + u) * ldy + 16);
    }
    for (size_t g = 0; g < ng; g++) {
        const size_t gg = g0 + g;
        __m512i a[4][2];
        UNROLL
        for (unsigned u = 0; u < T; u++)
            a[u][0] = a[u][1] = _mm512_set1_epi32(xc[(t0 + u) * groups + gg]);
        UNROLL
        for (unsigned q = 0; q < 8; q++) {
            const __m512i w0 = _mm512_load_si512(wq + (g * 8 + q) * 128);
            const __m512i w1 = _mm512_load_si512(wq + (g * 8 + q) * 128 + 64);
            UNROLL
            for (unsigned u = 0; u < T; u++) {
                int32_t x4;
                memcpy(&x4, xa + (t0 + u) * cols + gg * G + 4 * q, 4);
                __m512i xv = _mm512_set1_epi32(x4);
                a[u][0] = _mm512_dpbusd_epi32(a[u][0], w0, xv);
                a[u][1] = _mm512_dpbusd_epi32(a[u][1], w1, xv);
            }
        }
        const __m512 s0 = _mm512_load_ps(ws[g]), s1 = _mm512_load_ps(ws[g] + 16);
        UNROLL
        for (unsigned u = 0; u < T; u++) {
            __m512 sx = _mm512_set1_ps(xs[(t0 + u) * groups + gg]);
            f[u][0] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(a[u][0]), _mm512_mul_ps(s0, sx), f[u][0]);
            f[u][1] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(a[u][1]), _mm512_mul_ps(s1, sx), f[u][1]);
        }
    }
    UNROLL
    for (unsigned u = 0; u < T; u++) {
        _mm512_mask_storeu_ps(y + (t0 + u) * ldy, m0, f[u][0]);
        _mm512_mask_storeu_ps(y + (t0 + u) * ldy + 16, m1, f[u][1]);
    }
}

/* y[t][row + i] for i < nr (the first chunk starts from zero): the sums of
 * the chunk's groups, for every token; xa the activations [n][cols] in
 * wq's column order (act->a for int8 weights, act->eo for 4-bit). */
TVNNI static void kernel_q8(const uint8_t *wq, const float *st, size_t block, size_t k0,
                            size_t kc, const airllm_mm_act *act, const int8_t *xa, size_t cols,
                            size_t nr, float *y, size_t ldy)
{
    const float *ws[KC / G]; /* each group's 32 scales */
    for (size_t g = 0; g < kc / G; g++)
        ws[g] = st + (k0 + g * G) / block * MR;
    const __mmask16 m0 = nr >= 16 ? 0xFFFF : (__mmask16)((1u << nr) - 1);
    const __mmask16 m1 = nr >= 32 ? 0xFFFF : nr <= 16 ? 0 : (__mmask16)((1u << (nr - 16)) - 1);
    const size_t g0 = k0 / G, ng = kc / G, n = act->n;
    const float *xs = act->s;
    const int32_t *xc = act->c;
    size_t t = 0;
    for (; t + 4 <= n; t += 4)
        tokens_q8(4, wq, ws, g0, ng, xa, xs, xc, cols, t, m0, m1, y, ldy);
    switch (n - t) {
    case 3: tokens_q8(3, wq, ws, g0, ng, xa, xs, xc, cols, t, m0, m1, y, ldy); break;
    case 2: tokens_q8(2, wq, ws, g0, ng, xa, xs, xc, cols, t, m0, m1, y, ldy); break;
    case 1: tokens_q8(1, wq, ws, g0, ng, xa, xs, xc, cols, t, m0, m1, y, ldy); break;
    default: break;
    }
}

/* Row-wise path for one token (decode), where decoding a panel into wq
 * would cost more than the products it serves. Each of 16 rows is read in
 * its own order: 64 weight bytes (64 int8 columns, or 128 nf4/fp4
 * columns) meet the matching activations in one or two vpdpbusd, lane l
 * of 128-bit block L holding a partial sum of group L (nf4: the high
 * nibbles, even columns, against the token's even activations, the low
 * ones against the odd) or of half a group (int8: group L / 2). reduce16
 * then adds each row's lanes per block, exactly, into vectors with one
 * row per lane, and the groups go through the same float chain as
 * tokens_q8: the same bits as the reference. bench_matmul --q8 1 -n 1,2,3
 * --hot, SmolLM2's 1536 x 576, one thread: one token 49 GB/s of int8
 * weights here against 22 with float activations; at two tokens the panel
 * path is as fast (int8) or 10% slower (nf4), at three it is 1.4x faster
 * (docs/runner.md). */

/* v[i] (row i; 4 blocks of 4 lanes) -> r[L], lane i = the sum of row i's
 * block L: pairs of rows, then quads, then a 4 x 4 transpose of blocks. */
TVNNI INLINE void reduce16(const __m512i v[16], __m512i r[4])
{
    __m512i p[8], w[4];
    UNROLL
    for (unsigned q = 0; q < 8; q++) /* per block: [a0+a2, b0+b2, a1+a3, b1+b3] */
        p[q] = _mm512_add_epi32(_mm512_unpacklo_epi32(v[2 * q], v[2 * q + 1]),
                                _mm512_unpackhi_epi32(v[2 * q], v[2 * q + 1]));
    UNROLL
    for (unsigned q = 0; q < 4; q++) /* per block: rows 4q .. 4q + 3 */
        w[q] = _mm512_add_epi32(_mm512_unpacklo_epi64(p[2 * q], p[2 * q + 1]),
                                _mm512_unpackhi_epi64(p[2 * q], p[2 * q + 1]));
    /* x0 = [w0.0 w0.1 w1.0 w1.1], x1 = [w0.2 w0.3 w1.2 w1.3], x2, x3 the
     * same of w2, w3; then r[L] = [w0.L w1.L w2.L w3.L] */
    const __m512i x0 = _mm512_shuffle_i32x4(w[0], w[1], 0x44);
    const __m512i x1 = _mm512_shuffle_i32x4(w[0], w[1], 0xEE);
    const __m512i x2 = _mm512_shuffle_i32x4(w[2], w[3], 0x44);
    const __m512i x3 = _mm512_shuffle_i32x4(w[2], w[3], 0xEE);
    r[0] = _mm512_shuffle_i32x4(x0, x2, 0x88);
    r[1] = _mm512_shuffle_i32x4(x0, x2, 0xDD);
    r[2] = _mm512_shuffle_i32x4(x1, x3, 0x88);
    r[3] = _mm512_shuffle_i32x4(x1, x3, 0xDD);
}

/* y[i] = row + i of j for act's one token (i < nr; rows past nr read row
 * 0 and are not stored), st the half panel's transposed scales
 * (st[b * MR + i]). */
TVNNI INLINE void row16_q8(const mm_kind kind, const mm_job *j, size_t row, size_t nr,
                           const float *st, __m512i tab, const airllm_mm_act *act, float *y)
{
    const size_t cols = j->cols;
    const int8_t *xa = act->a;
    const float *xs = act->s;
    const int32_t *xc = act->c;
    const uint8_t *rp[16];
    airllm_mm_row_ptrs16(j, row, nr, rp);
    const size_t step = kind == MM_Q4 ? 128 : 64; /* columns per 64 weight bytes */
    const __m512i flip = _mm512_set1_epi8((char)0x80);
    __m512 f = _mm512_setzero_ps();
    for (size_t k = 0; k < cols; k += step) {
        const size_t kc = cols - k < step ? cols - k : step; /* a multiple of 32 */
        const size_t off = kind == MM_Q4 ? k / 2 : k, bytes = kind == MM_Q4 ? kc / 2 : kc;
        const __mmask64 m = bytes >= 64 ? ~(__mmask64)0 : (((__mmask64)1 << bytes) - 1);
        __m512i v[16], r[4];
        if (kind == MM_I8) {
            const __m512i a = _mm512_maskz_loadu_epi8(m, xa + k);
            UNROLL
            for (unsigned i = 0; i < 16; i++) {
                _mm_prefetch((const char *)(rp[i] + off + Q8_PF), _MM_HINT_T0);
                const __m512i w = _mm512_xor_si512(_mm512_maskz_loadu_epi8(m, rp[i] + off), flip);
                v[i] = _mm512_dpbusd_epi32(_mm512_setzero_si512(), w, a);
            }
        } else {
            /* the token's even and odd columns of these 128, as the high
             * and low nibbles hold them (masked-off bytes: zeros) */
            const __mmask64 m0 = kc >= 64 ? ~(__mmask64)0 : (((__mmask64)1 << kc) - 1);
            const __mmask64 m1 = kc >= 128 ? ~(__mmask64)0
                                 : kc <= 64 ? 0
                                            : (((__mmask64)1 << (kc - 64)) - 1);
            const __m512i a0 = _mm512_maskz_loadu_epi8(m0, xa + k);
            const __m512i a1 = _mm512_maskz_loadu_epi8(m1, xa + k + 64);
            const __m512i ae = _mm512_inserti64x4(_mm512_castsi256_si512(_mm512_cvtepi16_epi8(a0)),
                                                  _mm512_cvtepi16_epi8(a1), 1);
            const __m512i ao = _mm512_inserti64x4(
                _mm512_castsi256_si512(_mm512_cvtepi16_epi8(_mm512_srli_epi16(a0, 8))),
                _mm512_cvtepi16_epi8(_mm512_srli_epi16(a1, 8)), 1);
            UNROLL
            for (unsigned i = 0; i < 16; i++) {
                _mm_prefetch((const char *)(rp[i] + off + Q8_PF), _MM_HINT_T0);
                __m512i hi, lo;
                airllm_mm_nibbles(_mm512_maskz_loadu_epi8(m, rp[i] + off), tab, &hi, &lo);
                v[i] = _mm512_dpbusd_epi32(_mm512_dpbusd_epi32(_mm512_setzero_si512(), hi, ae),
                                           lo, ao);
            }
        }
        reduce16(v, r);
        if (kind == MM_I8) { /* blocks 0, 1: group k / 32; 2, 3: the next */
            r[0] = _mm512_add_epi32(r[0], r[1]);
            r[1] = _mm512_add_epi32(r[2], r[3]);
        }
        UNROLL
        for (unsigned g = 0; g < 4; g++) {
            if (g * G >= kc)
                break;
            const size_t gg = k / G + g;
            const __m512 sc = _mm512_mul_ps(_mm512_load_ps(st + (gg * G / j->block) * MR),
                                            _mm512_set1_ps(xs[gg]));
            const __m512i d = _mm512_add_epi32(r[g], _mm512_set1_epi32(xc[gg]));
            f = _mm512_fmadd_ps(_mm512_cvtepi32_ps(d), sc, f);
        }
    }
    _mm512_mask_storeu_ps(y, nr >= 16 ? 0xFFFF : (__mmask16)((1u << nr) - 1), f);
}

TVNNI static int q8_rows_vnni(const mm_job *j, size_t nrows, const airllm_mm_act *act, float *y,
                              size_t ldy)
{
    _Alignas(64) uint8_t wq[KC / 4 * 128];
    const size_t nb = j->cols / j->block;
    float *st = aligned_alloc(64, (nb * MR * sizeof *st + 63) / 64 * 64);
    if (!st)
        return -2;
    uint8_t tab8[16] = {0};
    if (j->kind == MM_Q4)
        airllm_mm_q8_code_table(j->cb, tab8);
    const __m512i tab = _mm512_broadcast_i32x4(_mm_loadu_si128((const __m128i *)tab8));
    /* 4-bit panels read the activations even/odd: act's, or made here when
     * the caller quantized without them */
    const int8_t *xa = act->a;
    int8_t *eo_local = NULL;
    if (j->kind == MM_Q4 && act->n > 1) {
        if (!act->eo) {
            eo_local = malloc(act->n * j->cols);
            if (!eo_local) {
                free(st);
                return -2;
            }
            airllm_mm_q8_even_odd(act->a, act->n * j->cols, eo_local);
        }
        xa = act->eo ? act->eo : eo_local;
    }
    for (size_t row = 0; row < nrows; row += MR) {
        size_t nr = nrows - row < MR ? nrows - row : MR;
        panel_scales(j, row, nr, nb, st);
        if (act->n == 1) {
            for (unsigned h = 0; h < nr; h += 16) {
                size_t hr = nr - h < 16 ? nr - h : 16;
                if (j->kind == MM_I8)
                    row16_q8(MM_I8, j, row + h, hr, st + h, tab, act, y + row + h);
                else
                    row16_q8(MM_Q4, j, row + h, hr, st + h, tab, act, y + row + h);
            }
            continue;
        }
        for (size_t t = 0; t < act->n; t++)
            memset(y + t * ldy + row, 0, nr * sizeof *y);
        for (size_t k0 = 0; k0 < j->cols; k0 += KC) {
            size_t kc = j->cols - k0 < KC ? j->cols - k0 : KC;
            for (unsigned h = 0; h < MR; h += 16) {
                size_t hr = nr > h ? nr - h : 0; /* valid rows of this half */
                if (j->kind == MM_I8)
                    panel16_q8(MM_I8, j, row + (hr ? h : 0), hr, k0, kc, tab, wq + h * 4);
                else
                    panel16_q8(MM_Q4, j, row + (hr ? h : 0), hr, k0, kc, tab, wq + h * 4);
            }
            kernel_q8(wq, st, j->block, k0, kc, act, xa, j->cols, nr, y + row, ldy);
        }
    }
    free(eo_local);
    free(st);
    return 0;
}

int airllm_mm_q8_vnni_available(void)
{
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
           __builtin_cpu_supports("avx512vnni");
}

#else

int airllm_mm_q8_vnni_available(void)
{
    return 0;
}

#endif /* MM_X86 */

/* ------------------------------------------------------------------ */
/* driver                                                              */
/* ------------------------------------------------------------------ */

int airllm_mm_q8_rows(int vnni, const mm_job *j, size_t nrows, const airllm_mm_act *act,
                      float *y, size_t ldy)
{
#ifdef MM_X86
    if (vnni)
        return q8_rows_vnni(j, nrows, act, y, ldy);
#endif
    if (vnni)
        return -1;
    q8_rows_ref(j, 0, nrows, act, y, ldy);
    return 0;
}

/* ------------------------------------------------------------------ */
/* when, and the prepared activations                                  */
/* ------------------------------------------------------------------ */

/* airllm_mm_set_q8's value, -1 before any call; then AIRLLM_MM_Q8, read
 * until found valid once. Process-wide: set by tools and tests before
 * they run kernels, read by every call. */
static atomic_int q8_forced = -1;
static atomic_int q8_env = -1;

void airllm_mm_set_q8(int on)
{
    atomic_store(&q8_forced, on ? 1 : 0);
}

int airllm_mm_env_switch(const char *name, int dflt, _Atomic int *cache, airllm_err *err)
{
    int on = atomic_load(cache);
    if (on >= 0)
        return on;
    const char *e = getenv(name);
    if (!e || !*e)
        on = dflt;
    else if (!strcmp(e, "0"))
        on = 0;
    else if (!strcmp(e, "1"))
        on = 1;
    else
        return airllm_errf(err, "%s='%s' is not 0 or 1", name, e);
    atomic_store(cache, on);
    return on;
}

static int q8_enabled(airllm_err *err)
{
    int on = atomic_load(&q8_forced);
    if (on >= 0)
        return on;
    return airllm_mm_env_switch("AIRLLM_MM_Q8", 0, &q8_env, err);
}

int airllm_mm_q8_wanted(const airllm_mm_weight *w, airllm_mm_impl impl, airllm_err *err)
{
    if (!airllm_encoding_is_quant(w->enc) || !w->cols || w->cols % w->block ||
        impl != AIRLLM_MM_IMPL_AVX512 || !airllm_mm_q8_vnni_available())
        return 0;
    return q8_enabled(err);
}

int airllm_mm_q8_used(const airllm_mm_weight *w, size_t n, airllm_err *err)
{
    airllm_mm_impl impl;
    if (airllm_mm_check(w, err) || airllm_mm_impl_active(&impl, err))
        return -1;
    (void)n; /* every count: row16_q8 for one token, panels for more */
    return airllm_mm_q8_wanted(w, impl, err);
}

int airllm_mm_q8_run(const mm_job *j, size_t nrows, const airllm_mm_act *act, const float *x,
                     size_t n, float *y, size_t ldy, airllm_err *err)
{
    airllm_mm_act local;
    if (act && act->a) {
        if (airllm_mm_act_check(act, x, n, j->ldx, j->cols, err))
            return -1;
    } else {
        if (airllm_mm_act_q8(&local, x, n, j->ldx, j->cols, j->kind, err))
            return -1;
        act = &local;
    }
    int amx = n > 1 ? airllm_mm_q8_amx_used(err) : 0;
    if (amx < 0) {
        if (act == &local)
            airllm_mm_act_release(&local);
        return -1;
    }
    int rc = amx ? airllm_mm_q8_rows_amx(j, nrows, act, y, ldy) : -1;
    if (rc == -1) /* no AMX: the VNNI kernels */
        rc = airllm_mm_q8_rows(1, j, nrows, act, y, ldy);
    if (act == &local)
        airllm_mm_act_release(&local);
    if (rc == -2)
        return airllm_errf(err, "out of memory for the block scales of %zu columns", j->cols);
    return rc ? airllm_errf(err, "no AVX512-VNNI kernels in this build") : 0;
}
