/* Internal to lib/airllm_matmul*.c: the tile interface between the driver
 * (airllm_matmul.c: argument checks, row and token blocking, the slow path
 * for blocks that straddle rows) and the per-ISA kernels
 * (airllm_matmul_simd.c). Not an API. */
#ifndef AIRLLM_MATMUL_IMPL_H
#define AIRLLM_MATMUL_IMPL_H

#include <stddef.h>
#include <stdint.h>

#include "airllm_matmul.h"

/* What a kernel decodes. NF4 and FP4 differ only in their codebook. */
typedef enum {
    MM_F32 = 0,
    MM_F16 = 1,
    MM_BF16 = 2,
    MM_Q4 = 3, /* nf4 / fp4: two codes per byte, high nibble first */
    MM_I8 = 4,
    /* 4-bit read a vector of L 32-bit lanes (L = mm_isa.q4t_lanes: 16 for
     * AVX-512, 8 for AVX2) at a time, 8 L columns: shifting lane l right
     * by 4 s brings down the code of column 8 l + (s ^ 1) (low nibble
     * first), so the tile's x is given transposed per 8 L columns,
     * xt[c + L s + l] = x[c + 8 l + (s ^ 1)] for c a multiple of 8 L
     * (airllm_matmul.c makes it). Needs cols % (8 L) == 0. */
    MM_Q4T = 5,
    MM_NKIND
} mm_kind;

/* One call's matrix, already offset to its first row. For MM_Q4 and MM_I8
 * every row holds whole blocks (cols % block == 0), so row i's blocks are
 * absmax[i * a_stride ...] and the codes of a row start on a byte. */
typedef struct {
    mm_kind kind;
    const uint8_t *w;    /* first element of row 0 */
    size_t w_stride;     /* bytes from a row to the next */
    const float *absmax; /* quantized: first block scale of row 0 */
    size_t a_stride;     /* quantized: scales from a row to the next (a row's
                          * cols / block blocks, or more for a column slice) */
    size_t block;        /* quantized: elements per block, a multiple of 32 */
    const float *cb;     /* MM_Q4: the 16-entry codebook, by code */
    size_t cols;         /* columns taken from each row (a multiple of block) */
    size_t ldx; /* floats from a token's x row to the next */
} mm_job;

/* Dot products of R consecutive rows (from `row`) with T consecutive tokens
 * (x [T, cols], stride ldx): out[i * T + t] = sum_k W[row + i, k] x[t, k]. */
typedef void (*mm_tile_fn)(const mm_job *j, size_t row, const float *x, float *out);

/* An implementation: tiles of R = rows[kind] rows (tile[kind][1][T - 1])
 * and of one row (tile[kind][0][T - 1]), for T = 1..4 tokens; for one
 * token (n = 1) vtile[kind] takes vrows[kind] rows at a time (more rows:
 * more weight streams in flight, and x read once for all of them; NULL: use
 * tile). tile[MM_Q4T] is all NULL where the implementation has none. */
#define MM_TMAX 4
/* Attention kernels (airllm_attn_scores / airllm_attn_mix), arguments
 * checked by the caller. */
typedef void (*mm_scores_fn)(const float *q, const float *k, size_t kstride, size_t d, size_t n,
                             float scale, float *scores);
typedef void (*mm_mix_fn)(const float *p, const float *v, size_t vstride, size_t d, size_t n,
                          float *o);
typedef struct {
    unsigned rows[MM_NKIND];
    mm_tile_fn tile[MM_NKIND][2][MM_TMAX];
    unsigned vrows[MM_NKIND];
    mm_tile_fn vtile[MM_NKIND];
    unsigned q4t_lanes; /* MM_Q4T: lanes per vector (0: no MM_Q4T tiles) */
    size_t vtile_max_stride; /* vtile only for rows shorter than this many
                              * bytes (0: any) */
    mm_scores_fn scores;
    mm_mix_fn mix;
} mm_isa;

/* NULL-free tables, defined only where the build supports them. */
#if defined(__x86_64__) || defined(__i386__)
extern const mm_isa airllm_mm_isa_avx2;
extern const mm_isa airllm_mm_isa_avx512;
#endif
#if defined(__aarch64__)
extern const mm_isa airllm_mm_isa_neon;
#endif

/* Scalar decoding of elements [k0, k1) of one row of a non-quantized kind
 * (used by the SIMD kernels for column tails): acc[t] += sum w x[t]. */
void airllm_mm_tail_raw(mm_kind kind, const uint8_t *row, size_t k0, size_t k1, const float *x,
                        size_t ldx, unsigned T, float *acc);

/* ---- the GEMM path (airllm_matmul_gemm.c) ----
 * For n >= airllm_mm_gemm_min() tokens airllm_mm decodes each weight once
 * into a 32-row x 128-column buffer and multiplies it with every token. */

/* Rows [0, nrows - nrows % 32) of j (kind F32, F16, BF16, Q4 or I8) for n
 * tokens: y[t * ldy + i] = the dot product of row i and token t. Returns
 * the rows done (whole panels of 32); 0 where avx512 is asked for and the
 * build has no AVX-512 (x86 only). avx512 = 0: the portable reference. */
size_t airllm_mm_gemm(int avx512, const mm_job *j, size_t nrows, const float *x, size_t n,
                      float *y, size_t ldy, const float *xp);
/* xp: x packed by airllm_mm_gemm_pack for all n tokens, or NULL (packed
 * per call). airllm_mm_gemm_packed: the floats it takes (0 on overflow).
 * airllm_mm_gemm_wanted: 1 if airllm_mm takes the GEMM path for w at n
 * tokens under impl (whole-block quantized rows or raw, n >= gemm_min,
 * AVX-512 or scalar, not the int8 path). */
size_t airllm_mm_gemm_packed(size_t n, size_t cols);
void airllm_mm_gemm_pack(const float *x, size_t n, size_t ldx, size_t cols, float *xp);
int airllm_mm_gemm_wanted(const airllm_mm_weight *w, size_t n, airllm_mm_impl impl);
/* The panel decoder alone, for tests: columns [k0, k0 + kc) (kc <= 128)
 * of rows row .. row + 31 into buf [kc][32]; -1 where avx512 is asked for
 * and not built. The reference: airllm_mm_gemm_panel_ref. */
int airllm_mm_gemm_panel(int avx512, const mm_job *j, size_t row, size_t k0, size_t kc,
                         float *buf);
void airllm_mm_gemm_panel_ref(const mm_job *j, size_t row, size_t k0, size_t kc, float *buf);
/* The token count from which airllm_mm takes the GEMM path (default 10;
 * tests set it to 1 or 2 to reach the kernels with few tokens). */
void airllm_mm_gemm_set_min(size_t n);
size_t airllm_mm_gemm_min(void);

/* ---- int8 activations (airllm_matmul_q8.c) ----
 * Columns per activation scale. */
#define AIRLLM_MM_Q8_GROUP 32
/* x [n, cols] (cols a multiple of 32) as airllm_mm_act's a [n][cols],
 * s and c [n][cols / 32] (the formulas at the top of airllm_matmul_q8.c). */
void airllm_mm_q8_quantize(const float *x, size_t n, size_t ldx, size_t cols, int8_t *a,
                           float *s, int32_t *c);
/* The scalar reference of it (the same bytes). */
void airllm_mm_q8_quantize_ref(const float *x, size_t n, size_t ldx, size_t cols, int8_t *a,
                               float *s, int32_t *c);
/* eo[8i .. 8i + 7] = a[8i], a[8i + 2], a[8i + 4], a[8i + 6], a[8i + 1],
 * a[8i + 3], a[8i + 5], a[8i + 7] for len bytes (a multiple of 8): the
 * activations in the order the VNNI kernels hold 4-bit weights for more
 * than one token (a group's sum is the same in any order). */
void airllm_mm_q8_even_odd(const int8_t *a, size_t len, int8_t *eo);
/* The 16 weights + 128 of a 4-bit codebook (round(127 cb[c]) + 128). */
void airllm_mm_q8_code_table(const float *cb, uint8_t tab[16]);
/* A 0/1 switch from environment variable name: dflt when unset or
 * empty, -1 (message) on another value; the first valid reading is kept
 * in *cache (-1 before) and returned from then on. */
int airllm_mm_env_switch(const char *name, int dflt, _Atomic int *cache, airllm_err *err);
/* The kernels' kind of a quantized encoding. */
static inline mm_kind airllm_mm_quant_kind(airllm_encoding e)
{
    return e == AIRLLM_ENC_INT8 ? MM_I8 : MM_Q4;
}
/* AMX (airllm_matmul_amx.c): 1 if the CPU has AMX-INT8 and this process
 * may use the tile state; _used also reads AIRLLM_MM_AMX (0 turns AMX
 * off, 1 or unset leaves it on; read once valid): 1, 0, or -1 on another
 * value. */
int airllm_mm_q8_amx_available(void);
int airllm_mm_q8_amx_used(airllm_err *err);
/* xa [n][cols] as B tiles [ceil(n / 16)][cols / 32][8][16][4] (tokens past
 * n zero), and s [n][groups] as [ceil(n / 16)][groups][16]. */
void airllm_mm_q8_amx_pack(const int8_t *xa, size_t n, size_t cols, int8_t *bt);
void airllm_mm_q8_amx_scales(const float *s, size_t n, size_t groups, float *st);
/* airllm_mm_q8_rows with AMX, for act->n >= 2: 0, -1 where there is none
 * or n < 2, -2 out of memory. The same bits as the reference. */
int airllm_mm_q8_rows_amx(const mm_job *j, size_t nrows, const airllm_mm_act *act, float *y,
                          size_t ldy);
/* Rows [0, nrows) of j (MM_Q4 or MM_I8, cols % 32 == 0) for act's tokens:
 * y[t * ldy + i]. vnni = 0: the scalar reference; 1: AVX512-VNNI, -1
 * where the build has none, -2 out of memory. Both give the same bits. */
int airllm_mm_q8_rows(int vnni, const mm_job *j, size_t nrows, const airllm_mm_act *act,
                      float *y, size_t ldy);
/* 1 if this build and CPU run the VNNI kernels. */
int airllm_mm_q8_vnni_available(void);
/* 1 if airllm_mm takes the int8 path for w (checked) under impl, at any
 * token count; -1 on an invalid AIRLLM_MM_Q8. */
int airllm_mm_q8_wanted(const airllm_mm_weight *w, airllm_mm_impl impl, airllm_err *err);
/* act as the int8 path's quantized x [n, cols], made now, with the
 * orders the kernels for kind's weights (MM_Q4 or MM_I8) read. */
int airllm_mm_act_q8(airllm_mm_act *act, const float *x, size_t n, size_t ldx, size_t cols,
                     mm_kind kind, airllm_err *err);
/* -1 (message) unless act was prepared for this x, n, ldx and cols. */
int airllm_mm_act_check(const airllm_mm_act *act, const float *x, size_t n, size_t ldx,
                        size_t cols, airllm_err *err);
/* airllm_mm's int8 path for j's nrows rows: act (checked against x, n
 * and j->ldx) or, when NULL or empty, activations quantized here. */
int airllm_mm_q8_run(const mm_job *j, size_t nrows, const airllm_mm_act *act, const float *x,
                     size_t n, float *y, size_t ldy, airllm_err *err);

#endif
