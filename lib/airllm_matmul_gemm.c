/* GEMM path of airllm_mm for n >= airllm_mm_gemm_min tokens (batch and
 * prefill): each weight is decoded once per call into a small buffer and
 * used from there for every token, instead of once per group of 4 tokens
 * (the tiles of airllm_matmul_simd.c).
 *
 * Layout. Rows are taken in panels of MR = 32. A panel's columns go in
 * chunks of KC = 128: the chunk is decoded into buf [KC][MR] (column k of
 * the 32 rows contiguous, 16 KiB, L1-resident), then for every group of up
 * to NR = 8 tokens a micro-kernel keeps the 32 x NR outputs in registers
 * (AVX-512: 16 zmm), and per column loads two weight vectors and
 * broadcasts NR activations: 2 NR FMAs per 2 + NR loads, no horizontal
 * sums. Each chunk's sums are added into y (the first chunk writes it).
 *
 * Decoding, AVX-512: each of 16 rows gives 64 bytes (one load), a 16 x 16
 * transpose of 32-bit words turns them into 16 vectors of one word per row,
 * and a word holds 8 4-bit codes, 4 int8, 2 bf16/f16 or 1 f32 of that row:
 * shifts, a vpermps into the codebook (4-bit), a convert, and the
 * multiply by the rows' block scales give the weights column by column
 * with the rows in lanes. (Gathers would do the same with one instruction,
 * but are microcoded and slow on CPUs with the gather data sampling
 * mitigation.) Every decoded weight equals the reference's
 * (value[code] * absmax, q * (absmax / 127), the exact F16/BF16 widening);
 * only the summation order differs from airllm_mm_ref.
 *
 * The portable panel decoder and micro-kernel (gemm_panel_ref,
 * gemm_kernel_ref) are the scalar reference of these kernels and the
 * AIRLLM_MM_IMPL=scalar path; tests/test_matmul.c checks both against the
 * oracle and the AVX-512 decoder against the reference bit for bit. */
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "airllm_matmul_impl.h"
#include "airllm_quant.h"

#include "airllm_matmul_kernel.h"

#define MR 32
#define KC 128
#define NR 8

/* Tokens from which airllm_mm takes this path. Up to 4 tokens the tiles
 * already decode each weight once (they hold 4); measured (AVX-512, one
 * thread, 1024 x 4096 nf4 and int8, CPU time) this path is 0.9x the tiles
 * at 6 and 8 tokens, 1.05x at 10, 1.2x at 16 and 20, 1.5x at 64.
 * Process-wide; written only by tests and benchmarks (before they run
 * kernels), read by every airllm_mm call. */
static atomic_size_t gemm_min = 10;

void airllm_mm_gemm_set_min(size_t n)
{
    atomic_store(&gemm_min, n ? n : 1);
}

size_t airllm_mm_gemm_min(void)
{
    return atomic_load(&gemm_min);
}

/* ------------------------------------------------------------------ */
/* scalar reference                                                    */
/* ------------------------------------------------------------------ */

static float ld_f32(const uint8_t *p)
{
    uint32_t u = (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
                 (uint32_t)p[3] << 24;
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

/* W[row + i, k] for one element (i < MR), decoded as airllm_mm_ref does. */
static float elem_ref(const mm_job *j, size_t row, size_t k)
{
    const uint8_t *p = j->w + row * j->w_stride;
    switch (j->kind) {
    case MM_F32:
        return ld_f32(p + 4 * k);
    case MM_F16:
        return airllm_f16_to_f32((uint16_t)(p[2 * k] | p[2 * k + 1] << 8));
    case MM_BF16:
        return airllm_bf16_to_f32((uint16_t)(p[2 * k] | p[2 * k + 1] << 8));
    case MM_I8:
        return (float)(int8_t)p[k] * (j->absmax[row * j->a_stride + k / j->block] / 127.0f);
    default: { /* MM_Q4 */
        uint8_t b = p[k / 2];
        return j->cb[(k & 1) ? b & 0x0Fu : b >> 4] * j->absmax[row * j->a_stride + k / j->block];
    }
    }
}

void airllm_mm_gemm_panel_ref(const mm_job *j, size_t row, size_t k0, size_t kc, float *buf)
{
    for (size_t k = 0; k < kc; k++)
        for (unsigned i = 0; i < MR; i++)
            buf[k * MR + i] = elem_ref(j, row + i, k0 + k);
}

/* y[t * ldy + i] (+)= sum_k buf[k][i] xp[k][t] for t < T, i < MR; xp is
 * the chunk's activations packed NR tokens per column (pack_x). */
static void gemm_kernel_ref(const float *buf, size_t kc, const float *xp, unsigned T, float *y,
                            size_t ldy, int accumulate)
{
    for (unsigned t = 0; t < T; t++) {
        float acc[MR] = {0};
        for (size_t k = 0; k < kc; k++) {
            float xv = xp[k * NR + t];
            for (unsigned i = 0; i < MR; i++)
                acc[i] += buf[k * MR + i] * xv;
        }
        for (unsigned i = 0; i < MR; i++)
            y[t * ldy + i] = accumulate ? y[t * ldy + i] + acc[i] : acc[i];
    }
}

/* ------------------------------------------------------------------ */
/* AVX-512                                                             */
/* ------------------------------------------------------------------ */
#ifdef MM_X86

/* Bytes ahead in each row that the panel decoder prefetches. */
#ifndef GEMM_PF
#define GEMM_PF 512
#endif

/* Columns [k0, k0 + kc) of rows row .. row + 15 into buf[k][h .. h + 15]
 * (buf's row stride MR). Quantized: kc and k0 are multiples of 8 (4-bit)
 * or 4 (int8), as every block is a multiple of 32 columns; raw: the part
 * of a slab past the chunk is loaded masked (zeros, their columns unused). */
T512 INLINE void panel16_512(const mm_kind kind, const mm_job *j, size_t row, size_t k0,
                             size_t kc, float *buf)
{
    const unsigned E = kind == MM_Q4 ? 8 : kind == MM_I8 ? 4 : kind == MM_F32 ? 1 : 2;
    const size_t slab = 16 * E; /* columns per 64 bytes */
    const size_t esz = kind == MM_F32 ? 4 : kind == MM_Q4 ? 1 : kind == MM_I8 ? 1 : 2;
    const uint8_t *base = j->w + row * j->w_stride;
    const __m512 cb = kind == MM_Q4 ? _mm512_loadu_ps(j->cb) : _mm512_setzero_ps();
    size_t cur_b = (size_t)-1; /* the block whose scales sc holds */
    unsigned lg = 0; /* block = 2^lg (quantized; a division per word cost a third) */
    while (((size_t)1 << lg) < j->block)
        lg++;
    __m512 sc = _mm512_setzero_ps();
    for (size_t s0 = 0; s0 < kc; s0 += slab) {
        size_t kk = k0 + s0; /* first column of the slab */
        size_t off = kind == MM_Q4 ? kk / 2 : kk * esz;
        size_t left = kind == MM_Q4 ? (kc - s0) / 2 : (kc - s0) * esz; /* bytes */
        __mmask64 m = left >= 64 ? ~(__mmask64)0 : (((__mmask64)1 << left) - 1);
        __m512i r[16];
        UNROLL
        for (unsigned i = 0; i < 16; i++) {
            /* the hardware prefetcher alone follows 32 row streams badly
             * (bf16 from memory ran slower than the tiles without this) */
            _mm_prefetch((const char *)(base + i * j->w_stride + off + GEMM_PF), _MM_HINT_T0);
            r[i] = _mm512_maskz_loadu_epi8(m, base + i * j->w_stride + off);
        }
        airllm_mm_transpose16(r);
        /* r[c]: word c of the slab, lane i = row i */
        size_t words = (kc - s0 + E - 1) / E;
        if (words > 16)
            words = 16;
        for (size_t c = 0; c < words; c++) {
            size_t k = s0 + c * E; /* column within the chunk */
            __m512i d = r[c];
            float *o = buf + k * MR;
            if (kind == MM_F32) {
                _mm512_storeu_ps(o, _mm512_castsi512_ps(d));
            } else if (kind == MM_BF16) {
                _mm512_storeu_ps(o, _mm512_castsi512_ps(_mm512_slli_epi32(d, 16)));
                _mm512_storeu_ps(o + MR, _mm512_castsi512_ps(_mm512_and_si512(
                                             d, _mm512_set1_epi32((int)0xFFFF0000u))));
            } else if (kind == MM_F16) {
                _mm512_storeu_ps(o, _mm512_cvtph_ps(_mm512_cvtepi32_epi16(d)));
                _mm512_storeu_ps(o + MR,
                                 _mm512_cvtph_ps(_mm512_cvtepi32_epi16(_mm512_srli_epi32(d, 16))));
            } else {
                /* the 16 rows' scales of this word's block (a word's
                 * columns lie in one block: blocks are multiples of 32) */
                size_t b = (k0 + k) >> lg;
                if (b != cur_b) {
                    float sv[16];
                    for (unsigned i = 0; i < 16; i++)
                        sv[i] = j->absmax[(row + i) * j->a_stride + b];
                    sc = _mm512_loadu_ps(sv);
                    if (kind == MM_I8) /* correctly rounded, as absmax / 127.0f */
                        sc = _mm512_div_ps(sc, _mm512_set1_ps(127.0f));
                    cur_b = b;
                }
                if (kind == MM_I8) {
                    UNROLL
                    for (unsigned e = 0; e < 4; e++) {
                        __m512i q = _mm512_srai_epi32(_mm512_slli_epi32(d, 24 - 8 * e), 24);
                        _mm512_storeu_ps(o + e * MR, _mm512_mul_ps(_mm512_cvtepi32_ps(q), sc));
                    }
                } else {
                    /* byte e holds column 2e (high nibble), 2e + 1 (low);
                     * vpermps reads only an index's low 4 bits */
                    UNROLL
                    for (unsigned e = 0; e < 8; e++) {
                        unsigned sh = 8 * (e / 2) + ((e & 1) ? 0 : 4);
                        __m512 w = _mm512_permutexvar_ps(_mm512_srli_epi32(d, sh), cb);
                        _mm512_storeu_ps(o + e * MR, _mm512_mul_ps(w, sc));
                    }
                }
            }
        }
    }
}

T512 static void panel_512(const mm_job *j, size_t row, size_t k0, size_t kc, float *buf)
{
    for (unsigned h = 0; h < MR; h += 16) {
        switch (j->kind) {
        case MM_F32:
            panel16_512(MM_F32, j, row + h, k0, kc, buf + h);
            break;
        case MM_F16:
            panel16_512(MM_F16, j, row + h, k0, kc, buf + h);
            break;
        case MM_BF16:
            panel16_512(MM_BF16, j, row + h, k0, kc, buf + h);
            break;
        case MM_I8:
            panel16_512(MM_I8, j, row + h, k0, kc, buf + h);
            break;
        default:
            panel16_512(MM_Q4, j, row + h, k0, kc, buf + h);
            break;
        }
    }
}

T512 INLINE void kernel512(const unsigned T, const float *buf, size_t kc, const float *xp,
                           float *y, size_t ldy, int accumulate)
{
    __m512 acc[NR][2];
    UNROLL
    for (unsigned t = 0; t < T; t++)
        acc[t][0] = acc[t][1] = _mm512_setzero_ps();
    for (size_t k = 0; k < kc; k++) {
        __m512 w0 = _mm512_load_ps(buf + k * MR), w1 = _mm512_load_ps(buf + k * MR + 16);
        UNROLL
        for (unsigned t = 0; t < T; t++) {
            __m512 xv = _mm512_set1_ps(xp[k * NR + t]);
            acc[t][0] = _mm512_fmadd_ps(w0, xv, acc[t][0]);
            acc[t][1] = _mm512_fmadd_ps(w1, xv, acc[t][1]);
        }
    }
    UNROLL
    for (unsigned t = 0; t < T; t++) {
        float *d = y + t * ldy;
        if (accumulate) {
            acc[t][0] = _mm512_add_ps(_mm512_loadu_ps(d), acc[t][0]);
            acc[t][1] = _mm512_add_ps(_mm512_loadu_ps(d + 16), acc[t][1]);
        }
        _mm512_storeu_ps(d, acc[t][0]);
        _mm512_storeu_ps(d + 16, acc[t][1]);
    }
}

T512 static void kernel_512(const float *buf, size_t kc, const float *xp, unsigned T, float *y,
                            size_t ldy, int accumulate)
{
    switch (T) {
    case 1: kernel512(1, buf, kc, xp, y, ldy, accumulate); break;
    case 2: kernel512(2, buf, kc, xp, y, ldy, accumulate); break;
    case 3: kernel512(3, buf, kc, xp, y, ldy, accumulate); break;
    case 4: kernel512(4, buf, kc, xp, y, ldy, accumulate); break;
    case 5: kernel512(5, buf, kc, xp, y, ldy, accumulate); break;
    case 6: kernel512(6, buf, kc, xp, y, ldy, accumulate); break;
    case 7: kernel512(7, buf, kc, xp, y, ldy, accumulate); break;
    default: kernel512(8, buf, kc, xp, y, ldy, accumulate); break;
    }
}

#endif /* MM_X86 */

/* ------------------------------------------------------------------ */
/* driver                                                              */
/* ------------------------------------------------------------------ */

typedef void (*panel_fn)(const mm_job *j, size_t row, size_t k0, size_t kc, float *buf);
typedef void (*kernel_fn)(const float *buf, size_t kc, const float *xp, unsigned T, float *y,
                          size_t ldy, int accumulate);

/* Token group g of n tokens in `groups` groups of at most NR: tokens
 * [first(g), first(g + 1)), sizes as even as possible (n = 12: 6 + 6, not
 * 8 + 4: a kernel with few tokens has too few FMA chains in flight). */
static size_t first(size_t g, size_t n, size_t groups)
{
    return g * n / groups;
}

/* x [n, cols] (stride ldx) as groups of tokens, each column's activations
 * of a group contiguous, NR apart: xp[g][k][t] = x[first(g) + t, k],
 * zeros past the group's end. Rows of x are typically 4096 floats apart,
 * so a kernel broadcasting 8 of them per column read 8 addresses 16 KiB
 * apart (one L1 set); packed, it reads 32 consecutive bytes. */
static void pack_x(const float *x, size_t n, size_t ldx, size_t cols, size_t groups, float *xp)
{
    for (size_t g = 0; g < groups; g++) {
        float *o = xp + g * cols * NR;
        size_t t0 = first(g, n, groups), T = first(g + 1, n, groups) - t0;
        /* a token row at a time: x read in order (token-major reads 8
         * rows a page apart per column cost as much as the multiply on
         * SmolLM2's small matrices) */
        for (size_t t = 0; t < T; t++) {
            const float *xr = x + (t0 + t) * ldx;
            for (size_t k = 0; k < cols; k++)
                o[k * NR + t] = xr[k];
        }
        if (T < NR)
            for (size_t k = 0; k < cols; k++)
                for (size_t t = T; t < NR; t++)
                    o[k * NR + t] = 0.0f;
    }
}

size_t airllm_mm_gemm_packed(size_t n, size_t cols)
{
    size_t groups = (n + NR - 1) / NR;
    if (!cols || groups > SIZE_MAX / NR / sizeof(float) / cols)
        return 0;
    return groups * NR * cols;
}

void airllm_mm_gemm_pack(const float *x, size_t n, size_t ldx, size_t cols, float *xp)
{
    pack_x(x, n, ldx, cols, (n + NR - 1) / NR, xp);
}

int airllm_mm_gemm_panel(int avx512, const mm_job *j, size_t row, size_t k0, size_t kc,
                         float *buf)
{
#ifdef MM_X86
    if (avx512) {
        panel_512(j, row, k0, kc, buf);
        return 0;
    }
#endif
    if (avx512)
        return -1;
    airllm_mm_gemm_panel_ref(j, row, k0, kc, buf);
    return 0;
}

size_t airllm_mm_gemm(int avx512, const mm_job *j, size_t nrows, const float *x, size_t n,
                      float *y, size_t ldy, const float *xp_given)
{
    panel_fn panel = airllm_mm_gemm_panel_ref;
    kernel_fn kernel = gemm_kernel_ref;
#ifdef MM_X86
    if (avx512) {
        panel = panel_512;
        kernel = kernel_512;
    }
#else
    if (avx512)
        return 0;
#endif
    /* Whole panels only; the caller runs the other rows (and all of them
     * when the packed activations cannot be allocated). */
    size_t panels = nrows / MR, groups = (n + NR - 1) / NR;
    if (!panels)
        return 0;
    const float *xp = xp_given;
    float *own = NULL;
    if (!xp) {
        size_t need = airllm_mm_gemm_packed(n, j->cols);
        own = need ? malloc(need * sizeof *own) : NULL;
        if (!own)
            return 0;
        pack_x(x, n, j->ldx, j->cols, groups, own);
        xp = own;
    }
    _Alignas(64) float buf[KC * MR];
    for (size_t p = 0; p < panels; p++) {
        size_t row = p * MR;
        for (size_t k0 = 0; k0 < j->cols; k0 += KC) {
            size_t kc = j->cols - k0 < KC ? j->cols - k0 : KC;
            panel(j, row, k0, kc, buf);
            for (size_t g = 0; g < groups; g++) {
                size_t t0 = first(g, n, groups);
                unsigned T = (unsigned)(first(g + 1, n, groups) - t0);
                kernel(buf, kc, xp + (g * j->cols + k0) * NR, T, y + t0 * ldy + row, ldy,
                       k0 > 0);
            }
        }
    }
    free(own);
    return panels * MR;
}
