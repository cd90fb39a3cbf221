/* The int8-activation path (airllm_matmul_q8.c) for two tokens or more on
 * CPUs with AMX-INT8 (Sapphire Rapids and later), where Linux grants the
 * tile state: one tdpbssd multiplies 16 weight rows by 32 columns by 16
 * tokens (8192 products) where vpdpbusd does 64. The arithmetic is the
 * one at the top of airllm_matmul_q8.c, so the bits are q8_rows_ref's:
 * d of a group is the exact integer sum of w a (signed by signed here,
 * where the VNNI kernels add 128 to w and take it back out), and the float
 * chain y = fma((float)d, absmax * s, y) runs over the groups in order.
 *
 * Layout, for 16 rows and a chunk of KA columns:
 *  - A [16 rows][KA] int8 weights: int8 rows read in place (tile loads
 *    take a row stride), 4-bit rows decoded into a buffer with each 8
 *    columns as their 4 even then 4 odd (the nibbles' order, act->eo's);
 *  - B, made once per product (act->bt, act->bt_eo): per block of 16
 *    tokens and per group, [8 quads][16 tokens][4 columns] (512 bytes),
 *    tokens past n zero;
 *  - C [16 rows][16 tokens] int32, one tile per group: stored, converted
 *    and folded into float sums [16 rows][16 tokens] that stay in a
 *    buffer across chunks; act->sT holds the scales by group and token.
 * The C, A and B tiles alternate between two sets (tiles 0-2 and 3-5), so
 * one group's store does not wait for the next group's product. */
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "airllm_matmul_impl.h"
#include "airllm_matmul_kernel.h"

#define G AIRLLM_MM_Q8_GROUP
#define KA 512 /* columns of A per chunk: 16 x 512 bytes, in L1 */

#if defined(MM_X86) && defined(__linux__)
#include <cpuid.h>
#include <pthread.h>
#include <sys/syscall.h>
#include <unistd.h>

#define ARCH_REQ_XCOMP_PERM 0x1023
#define XFEATURE_XTILEDATA 18

static pthread_once_t amx_once = PTHREAD_ONCE_INIT;
static int amx_ok; /* written once under amx_once */

/* The CPU has AMX-TILE and AMX-INT8, the OS enabled the tile state
 * (XCR0 bits 17, 18), and this process may use it (Linux 5.16: the
 * permission is per process, asked once). */
static void amx_probe(void)
{
    if (!airllm_mm_q8_vnni_available())
        return;
    unsigned a, b, c, d;
    if (!__get_cpuid_count(7, 0, &a, &b, &c, &d) || !(d & (1u << 24)) || !(d & (1u << 25)))
        return;
    if (!__get_cpuid(1, &a, &b, &c, &d) || !(c & (1u << 27))) /* OSXSAVE */
        return;
    uint32_t lo, hi;
    __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    if ((lo & (3u << 17)) != (3u << 17))
        return;
    if (syscall(SYS_arch_prctl, ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA) != 0)
        return;
    amx_ok = 1;
}

int airllm_mm_q8_amx_available(void)
{
    pthread_once(&amx_once, amx_probe);
    return amx_ok;
}

#define TAMX __attribute__((target("amx-tile,amx-int8,avx512f,avx512bw,avx2,fma,f16c")))

typedef struct {
    uint8_t palette, start_row, reserved[14];
    uint16_t colsb[16];
    uint8_t rows[16];
} amx_config;

/* Tiles t and t + 3: C [16][16] int32 (0, 3), A [16][32] int8 (1, 4),
 * B [8][64] int8 (2, 5). */
static void amx_config_make(amx_config *c)
{
    memset(c, 0, sizeof *c);
    c->palette = 1;
    for (int s = 0; s < 2; s++) {
        c->rows[3 * s] = 16, c->colsb[3 * s] = 64;
        c->rows[3 * s + 1] = 16, c->colsb[3 * s + 1] = G;
        c->rows[3 * s + 2] = G / 4, c->colsb[3 * s + 2] = 64;
    }
}

/* Columns [k0, k0 + kc) of 16 4-bit rows (rp) as signed weights, each 8
 * columns 4 even then 4 odd, into a[i][0 .. kc). tab: the weights of the
 * 16 codes in every 128-bit lane. */
TAMX static void decode_q4(const uint8_t *const rp[16], size_t k0, size_t kc, __m512i tab,
                           int8_t *a)
{
    /* dword d of hi: even columns 8d .. 8d + 6 of these 128; of lo: odd */
    const __m512i lo8 = _mm512_set_epi32(23, 7, 22, 6, 21, 5, 20, 4, 19, 3, 18, 2, 17, 1, 16, 0);
    const __m512i hi8 = _mm512_add_epi32(lo8, _mm512_set1_epi32(8));
    for (size_t s = 0; s < kc; s += 128) {
        size_t bytes = (kc - s) / 2 < 64 ? (kc - s) / 2 : 64;
        __mmask64 m = bytes >= 64 ? ~(__mmask64)0 : (((__mmask64)1 << bytes) - 1);
        for (unsigned i = 0; i < 16; i++) {
            /* the next chunk of this row (the hardware prefetcher does not
             * follow 16 streams far enough ahead) */
            _mm_prefetch((const char *)(rp[i] + (k0 + s) / 2 + KA / 2), _MM_HINT_T0);
            __m512i hi, lo;
            airllm_mm_nibbles(_mm512_maskz_loadu_epi8(m, rp[i] + (k0 + s) / 2), tab, &hi, &lo);
            /* past kc: zeros or garbage inside the row's KA, never read */
            _mm512_store_si512(a + i * KA + s, _mm512_permutex2var_epi32(hi, lo8, lo));
            _mm512_store_si512(a + i * KA + s + 64, _mm512_permutex2var_epi32(hi, hi8, lo));
        }
    }
}

/* One group's products into C tile tc (A tile ta, B tile tb: literal
 * numbers, as the intrinsics want). Stored apart (AMX_STORE) so that the
 * second group's product is issued before the first one's store waits. */
#define AMX_GROUP(tc, ta, tb, A, astride, B)                                                       \
    do {                                                                                           \
        _tile_zero(tc);                                                                            \
        _tile_loadd(ta, (A), (astride));                                                           \
        _tile_loadd(tb, (B), 64);                                                                  \
        _tile_dpbssd(tc, ta, tb);                                                                  \
    } while (0)
#define AMX_STORE(tc, cb) _tile_stored(tc, (cb), 64)

/* f[i] (lane t) = fma((float)cb[i][t], absmax of row i, block b * s[t],
 * f[i]): the reference's float step for one group. */
TAMX INLINE void fold16(const int32_t *cb, const float *const ap[16], size_t b, __m512 sx,
                        __m512 f[16])
{
    UNROLL
    for (unsigned i = 0; i < 16; i++) {
        __m512 sc = _mm512_mul_ps(_mm512_set1_ps(ap[i][b]), sx);
        f[i] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(_mm512_load_si512(cb + 16 * i)), sc, f[i]);
    }
}

TAMX static void rows_amx(const mm_job *j, size_t nrows, const airllm_mm_act *act,
                          const int8_t *bt, const float *st, int8_t *abuf, float *facc, float *y,
                          size_t ldy)
{
    const size_t cols = j->cols, groups = cols / G, n = act->n, nblk = (n + 15) / 16;
    _Alignas(64) int32_t cbuf[2][256];
    __m512i tab = _mm512_setzero_si512();
    if (j->kind == MM_Q4) {
        uint8_t t8[16];
        airllm_mm_q8_code_table(j->cb, t8);
        for (unsigned c = 0; c < 16; c++)
            t8[c] = (uint8_t)(t8[c] - 128); /* the signed weight */
        tab = _mm512_broadcast_i32x4(_mm_loadu_si128((const __m128i *)t8));
    }
    amx_config cfg;
    amx_config_make(&cfg);
    _tile_loadconfig(&cfg);
    for (size_t row = 0; row < nrows; row += 16) {
        const size_t nr = nrows - row < 16 ? nrows - row : 16;
        const uint8_t *rp[16];
        const float *ap[16];
        airllm_mm_row_ptrs16(j, row, nr, rp);
        for (unsigned i = 0; i < 16; i++) /* the same rows' scales */
            ap[i] = j->absmax + (row + (i < nr ? i : 0)) * j->a_stride;
        memset(facc, 0, nblk * 256 * sizeof *facc);
        for (size_t k0 = 0; k0 < cols; k0 += KA) {
            const size_t kc = cols - k0 < KA ? cols - k0 : KA, ng = kc / G;
            const int8_t *A;
            size_t astride;
            if (j->kind == MM_I8 && nr == 16) {
                A = (const int8_t *)rp[0] + k0; /* in place: 16 rows, w_stride apart */
                astride = j->w_stride;
            } else if (j->kind == MM_I8) {
                for (unsigned i = 0; i < 16; i++)
                    memcpy(abuf + i * KA, rp[i] + k0, kc);
                A = abuf;
                astride = KA;
            } else {
                decode_q4(rp, k0, kc, tab, abuf);
                A = abuf;
                astride = KA;
            }
            for (size_t blk = 0; blk < nblk; blk++) {
                const int8_t *B = bt + (blk * groups + k0 / G) * 512;
                const float *s = st + (blk * groups + k0 / G) * 16;
                __m512 f[16];
                UNROLL
                for (unsigned i = 0; i < 16; i++)
                    f[i] = _mm512_load_ps(facc + blk * 256 + 16 * i);
                size_t g = 0;
                for (; g + 2 <= ng; g += 2) {
                    AMX_GROUP(0, 1, 2, A + g * G, astride, B + g * 512);
                    AMX_GROUP(3, 4, 5, A + (g + 1) * G, astride, B + (g + 1) * 512);
                    AMX_STORE(0, cbuf[0]);
                    AMX_STORE(3, cbuf[1]);
                    fold16(cbuf[0], ap, (k0 + g * G) / j->block, _mm512_loadu_ps(s + g * 16), f);
                    fold16(cbuf[1], ap, (k0 + (g + 1) * G) / j->block,
                           _mm512_loadu_ps(s + (g + 1) * 16), f);
                }
                if (g < ng) {
                    AMX_GROUP(0, 1, 2, A + g * G, astride, B + g * 512);
                    AMX_STORE(0, cbuf[0]);
                    fold16(cbuf[0], ap, (k0 + g * G) / j->block, _mm512_loadu_ps(s + g * 16), f);
                }
                UNROLL
                for (unsigned i = 0; i < 16; i++)
                    _mm512_store_ps(facc + blk * 256 + 16 * i, f[i]);
            }
        }
        /* facc[blk][i][t] -> y[16 blk + t][row + i] */
        for (size_t blk = 0; blk < nblk; blk++) {
            __m512i r[16];
            for (unsigned i = 0; i < 16; i++)
                r[i] = _mm512_castps_si512(_mm512_load_ps(facc + blk * 256 + 16 * i));
            airllm_mm_transpose16(r);
            const __mmask16 m = nr >= 16 ? 0xFFFF : (__mmask16)((1u << nr) - 1);
            for (unsigned t = 0; t < 16 && blk * 16 + t < n; t++)
                _mm512_mask_storeu_ps(y + (blk * 16 + t) * ldy + row, m,
                                      _mm512_castsi512_ps(r[t]));
        }
    }
    _tile_release();
}

int airllm_mm_q8_rows_amx(const mm_job *j, size_t nrows, const airllm_mm_act *act, float *y,
                          size_t ldy)
{
    if (!airllm_mm_q8_amx_available() || act->n < 2)
        return -1;
    const size_t cols = j->cols, groups = cols / G, n = act->n, nblk = (n + 15) / 16;
    /* act's tiles and scales, or made here for a caller that quantized
     * without them */
    const int8_t *bt = j->kind == MM_Q4 ? act->bt_eo : act->bt;
    const float *st = act->sT;
    int8_t *own_bt = NULL, *own_eo = NULL;
    float *own_st = NULL;
    int rc = -2;
    if (!bt) {
        const int8_t *xa = act->a;
        if (j->kind == MM_Q4 && !(xa = act->eo)) {
            if (!(own_eo = malloc(n * cols)))
                goto out;
            airllm_mm_q8_even_odd(act->a, n * cols, own_eo);
            xa = own_eo;
        }
        if (!(own_bt = malloc(nblk * 16 * cols)))
            goto out;
        airllm_mm_q8_amx_pack(xa, n, cols, own_bt);
        bt = own_bt;
    }
    if (!st) {
        if (!(own_st = malloc(nblk * groups * 16 * sizeof *own_st)))
            goto out;
        airllm_mm_q8_amx_scales(act->s, n, groups, own_st);
        st = own_st;
    }
    int8_t *abuf = aligned_alloc(64, 16 * KA);
    float *facc = aligned_alloc(64, nblk * 256 * sizeof *facc);
    if (abuf && facc) {
        rows_amx(j, nrows, act, bt, st, abuf, facc, y, ldy);
        rc = 0;
    }
    free(abuf);
    free(facc);
out:
    free(own_bt);
    free(own_eo);
    free(own_st);
    return rc;
}

#else /* no AMX in this build */

int airllm_mm_q8_amx_available(void)
{
    return 0;
}

int airllm_mm_q8_rows_amx(const mm_job *j, size_t nrows, const airllm_mm_act *act, float *y,
                          size_t ldy)
{
    (void)j, (void)nrows, (void)act, (void)y, (void)ldy;
    return -1;
}

#endif

/* AIRLLM_MM_AMX, -1 until read valid once; then every call (each row
 * job) reads the remembered value. */
static _Atomic int amx_env = -1;

int airllm_mm_q8_amx_used(airllm_err *err)
{
    int on = airllm_mm_env_switch("AIRLLM_MM_AMX", 1, &amx_env, err);
    return on < 0 ? -1 : on && airllm_mm_q8_amx_available();
}

void airllm_mm_q8_amx_pack(const int8_t *xa, size_t n, size_t cols, int8_t *bt)
{
    const size_t groups = cols / G, nblk = (n + 15) / 16;
    for (size_t blk = 0; blk < nblk; blk++)
        for (size_t t = 0; t < 16; t++) {
            size_t tt = blk * 16 + t;
            for (size_t g = 0; g < groups; g++) {
                int8_t *dst = bt + (blk * groups + g) * 512 + t * 4;
                for (unsigned q = 0; q < G / 4; q++) /* quad q: 4 columns, row q of B */
                    if (tt < n)
                        memcpy(dst + q * 64, xa + tt * cols + g * G + q * 4, 4);
                    else
                        memset(dst + q * 64, 0, 4);
            }
        }
}

void airllm_mm_q8_amx_scales(const float *s, size_t n, size_t groups, float *st)
{
    const size_t nblk = (n + 15) / 16;
    for (size_t blk = 0; blk < nblk; blk++)
        for (size_t g = 0; g < groups; g++)
            for (size_t t = 0; t < 16; t++) {
                size_t tt = blk * 16 + t;
                st[(blk * groups + g) * 16 + t] = tt < n ? s[tt * groups + g] : 0.0f;
            }
}
