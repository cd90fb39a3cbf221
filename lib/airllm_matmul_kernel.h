/* Internal to the kernel files (airllm_matmul_simd.c, _gemm.c, _q8.c):
 * MM_X86, INLINE and UNROLL, and the AVX-512 16 x 16 transpose both GEMM
 * paths decode weight panels with. Not an API. */
#ifndef AIRLLM_MATMUL_KERNEL_H
#define AIRLLM_MATMUL_KERNEL_H

#include "airllm_matmul_impl.h"

#if defined(__x86_64__) || defined(__i386__)
#define MM_X86 1
#include <immintrin.h>
#endif

#define INLINE static inline __attribute__((always_inline))
/* The loops over rows, tokens and accumulators of a tile have constant
 * bounds once inlined; unrolled, their arrays live in registers. */
#if defined(__clang__)
#define UNROLL _Pragma("clang loop unroll(full) vectorize(disable)")
#else
#define UNROLL _Pragma("GCC unroll 16")
#endif

#ifdef MM_X86
/* AVX-512 kernels carry target attributes, so the files build with the
 * default flags and airllm_matmul.c picks an implementation at run time */
#define T512 __attribute__((target("avx512f,avx512bw,avx2,fma,f16c")))

/* r[i] word c <- r[c] word i (a 16 x 16 transpose of 32-bit words):
 * words of pairs, then pairs of pairs, then 128-bit lanes. The panel
 * decoders load 64 bytes of each of 16 rows and transpose them, so that
 * vector c holds word c of every row (rows in lanes). */
T512 INLINE void airllm_mm_transpose16(__m512i r[16])
{
    __m512i t[16], u[16];
    UNROLL
    for (unsigned i = 0; i < 8; i++) {
        t[2 * i] = _mm512_unpacklo_epi32(r[2 * i], r[2 * i + 1]);
        t[2 * i + 1] = _mm512_unpackhi_epi32(r[2 * i], r[2 * i + 1]);
    }
    /* u[4 g + c], 128-bit lane L: word 4 L + c of rows 4 g .. 4 g + 3 */
    UNROLL
    for (unsigned g = 0; g < 4; g++) {
        u[4 * g] = _mm512_unpacklo_epi64(t[4 * g], t[4 * g + 2]);
        u[4 * g + 1] = _mm512_unpackhi_epi64(t[4 * g], t[4 * g + 2]);
        u[4 * g + 2] = _mm512_unpacklo_epi64(t[4 * g + 1], t[4 * g + 3]);
        u[4 * g + 3] = _mm512_unpackhi_epi64(t[4 * g + 1], t[4 * g + 3]);
    }
    /* a 4 x 4 transpose of 128-bit lanes for each c */
    UNROLL
    for (unsigned c = 0; c < 4; c++) {
        __m512i v0 = _mm512_shuffle_i32x4(u[c], u[4 + c], 0x44);
        __m512i v1 = _mm512_shuffle_i32x4(u[c], u[4 + c], 0xEE);
        __m512i v2 = _mm512_shuffle_i32x4(u[8 + c], u[12 + c], 0x44);
        __m512i v3 = _mm512_shuffle_i32x4(u[8 + c], u[12 + c], 0xEE);
        r[c] = _mm512_shuffle_i32x4(v0, v2, 0x88);
        r[4 + c] = _mm512_shuffle_i32x4(v0, v2, 0xDD);
        r[8 + c] = _mm512_shuffle_i32x4(v1, v3, 0x88);
        r[12 + c] = _mm512_shuffle_i32x4(v1, v3, 0xDD);
    }
}

/* The 16 rows from `row` of j; rows past nr read row 0 again (their
 * outputs are never stored), so no load leaves the matrix. The int8
 * kernels' panels and rows (airllm_matmul_q8.c, _amx.c). */
INLINE void airllm_mm_row_ptrs16(const mm_job *j, size_t row, size_t nr, const uint8_t *rp[16])
{
    for (unsigned i = 0; i < 16; i++)
        rp[i] = j->w + (row + (i < nr ? i : 0)) * j->w_stride;
}

/* 64 bytes of 4-bit codes looked up in tab (16 bytes, in every 128-bit
 * lane), byte for byte: hi from the high nibbles (the even columns), lo
 * from the low (the odd). */
T512 INLINE void airllm_mm_nibbles(__m512i b, __m512i tab, __m512i *hi, __m512i *lo)
{
    const __m512i nib = _mm512_set1_epi8(0x0F);
    *hi = _mm512_shuffle_epi8(tab, _mm512_and_si512(_mm512_srli_epi16(b, 4), nib));
    *lo = _mm512_shuffle_epi8(tab, _mm512_and_si512(b, nib));
}
#endif /* MM_X86 */

#endif
