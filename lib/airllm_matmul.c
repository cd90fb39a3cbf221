/* Matrix kernels of the CPU runner: argument checks, the double-accumulated
 * oracle, the portable scalar tiles, the row/token blocking driver, the slow
 * path for quantization blocks that straddle rows, the row dequantizer and
 * the choice of implementation. The SIMD tiles are in airllm_matmul_simd.c.
 *
 * Blocking (docs/runner.md, "Matrix kernels"): rows are taken R at a time
 * (R = 4 for AVX-512, scalar and NEON, 2 for AVX2 and 4-bit NEON; for one
 * token 8 on AVX-512 for int8 and 4-bit, 4 on AVX2) and, for each group of R rows, tokens
 * T <= 4 at a time, so a group's weights come from memory once and from
 * L1/L2 for the following token groups; a tile keeps R x T dot products in
 * registers over the whole row. From airllm_mm_gemm_min() tokens on (10),
 * AVX-512 and scalar send whole panels of 32 rows to the GEMM path of
 * airllm_matmul_gemm.c, which decodes each weight once per call. */
#include "airllm_matmul.h"

#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "airllm_impl.h"
#include "airllm_matmul_impl.h"
#include "airllm_quant.h"

/* ------------------------------------------------------------------ */
/* checks                                                              */
/* ------------------------------------------------------------------ */

int airllm_mm_check(const airllm_mm_weight *w, airllm_err *err)
{
    if (!w)
        return airllm_errf(err, "NULL weight");
    if (w->enc == AIRLLM_ENC_RAW) {
        if (w->dtype != AIRLLM_DTYPE_F32 && w->dtype != AIRLLM_DTYPE_F16 &&
            w->dtype != AIRLLM_DTYPE_BF16) {
            const char *name = airllm_dtype_name(w->dtype);
            return airllm_errf(err, "matmul of dtype %s: only F32, F16 and BF16",
                               name ? name : "unknown");
        }
    } else if (airllm_encoding_is_quant(w->enc)) {
        if (airllm_quant_check_block(w->block, err))
            return -1;
    } else if (w->enc == AIRLLM_ENC_ZSTD) {
        return airllm_errf(err, "matmul of a zstd tensor: decode it first");
    } else {
        return airllm_errf(err, "matmul of unknown encoding %d", (int)w->enc);
    }
    /* rows * cols elements of up to 4 bytes, indexable with size_t */
    if (w->cols && w->rows > (uint64_t)(SIZE_MAX / 4) / w->cols)
        return airllm_errf(err, "matrix of %llu x %llu is too large",
                           (unsigned long long)w->rows, (unsigned long long)w->cols);
    if (w->rows && w->cols) {
        if (!w->data)
            return airllm_errf(err, "NULL weight data");
        if (airllm_encoding_is_quant(w->enc) && !w->absmax)
            return airllm_errf(err, "NULL absmax for a quantized weight");
    }
    return 0;
}

static int check_call(const airllm_mm_weight *w, const float *x, size_t n, size_t ldx,
                      const float *y, size_t ldy, uint64_t r0, uint64_t r1, airllm_err *err)
{
    if (airllm_mm_check(w, err))
        return -1;
    if (r0 > r1 || r1 > w->rows)
        return airllm_errf(err, "row range [%llu, %llu) outside [0, %llu)",
                           (unsigned long long)r0, (unsigned long long)r1,
                           (unsigned long long)w->rows);
    if (n == 0 || r0 == r1)
        return 0;
    if (!x || !y)
        return airllm_errf(err, "NULL %s", x ? "y" : "x");
    if (n > 1 && ldx < w->cols)
        return airllm_errf(err, "ldx %zu < cols %llu", ldx, (unsigned long long)w->cols);
    if (n > 1 && ldy < r1)
        return airllm_errf(err, "ldy %zu < row_end %llu", ldy, (unsigned long long)r1);
    return 0;
}

/* ------------------------------------------------------------------ */
/* element decoding (oracle, slow path, row lookup)                    */
/* ------------------------------------------------------------------ */

static const float *codebook(airllm_encoding e)
{
    return e == AIRLLM_ENC_NF4 ? airllm_nf4_code : airllm_fp4_code;
}

static float f32_le(const uint8_t *p)
{
    uint32_t u = (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
                 (uint32_t)p[3] << 24;
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

static uint16_t u16_le(const uint8_t *p)
{
    return (uint16_t)(p[0] | p[1] << 8);
}

/* Element i of the flattened matrix, decoded by the formulas of
 * docs/quantization.md (the block of element i is i / block). */
static float elem(const airllm_mm_weight *w, uint64_t i)
{
    switch (w->enc) {
    case AIRLLM_ENC_NF4:
    case AIRLLM_ENC_FP4: {
        uint8_t b = w->data[i / 2];
        unsigned code = (i & 1) ? b & 0x0Fu : b >> 4;
        return codebook(w->enc)[code] * w->absmax[i / w->block];
    }
    case AIRLLM_ENC_INT8:
        return (float)(int8_t)w->data[i] * (w->absmax[i / w->block] / 127.0f);
    default:
        break;
    }
    if (w->dtype == AIRLLM_DTYPE_F32)
        return f32_le(w->data + 4 * i);
    if (w->dtype == AIRLLM_DTYPE_F16)
        return airllm_f16_to_f32(u16_le(w->data + 2 * i));
    return airllm_bf16_to_f32(u16_le(w->data + 2 * i));
}

/* Elements [i0, i0 + len) of the flattened matrix into out, a run of
 * constant scale at a time. */
static void decode_span(const airllm_mm_weight *w, uint64_t i0, size_t len, float *out)
{
    if (w->enc == AIRLLM_ENC_RAW) {
        if (w->dtype == AIRLLM_DTYPE_F32)
            for (size_t k = 0; k < len; k++)
                out[k] = f32_le(w->data + 4 * (i0 + k));
        else if (w->dtype == AIRLLM_DTYPE_F16)
            airllm_f16_to_f32_array(w->data + 2 * i0, len, out);
        else
            airllm_bf16_to_f32_array(w->data + 2 * i0, len, out);
        return;
    }
    size_t k = 0;
    while (k < len) {
        uint64_t i = i0 + k, b = i / w->block;
        uint64_t end = (b + 1) * w->block - i;
        size_t m = end < len - k ? (size_t)end : len - k;
        float a = w->absmax[b];
        if (w->enc == AIRLLM_ENC_INT8) {
            float s = a / 127.0f;
            for (size_t j = 0; j < m; j++)
                out[k + j] = (float)(int8_t)w->data[i + j] * s;
        } else {
            const float *cb = codebook(w->enc);
            const uint8_t *c = w->data + i / 2;
            float *o = out + k;
            size_t j = 0;
            if (i & 1) /* starts on a low nibble */
                o[j++] = cb[*c++ & 0x0Fu] * a;
            for (; j + 2 <= m; j += 2, c++) {
                o[j] = cb[*c >> 4] * a;
                o[j + 1] = cb[*c & 0x0Fu] * a;
            }
            if (j < m) /* ends on a high nibble */
                o[j] = cb[*c >> 4] * a;
        }
        k += m;
    }
}

int airllm_mm_row_f32(const airllm_mm_weight *w, uint64_t r, float *out, airllm_err *err)
{
    if (airllm_mm_check(w, err))
        return -1;
    if (r >= w->rows)
        return airllm_errf(err, "row %llu of %llu", (unsigned long long)r,
                           (unsigned long long)w->rows);
    if (w->cols && !out)
        return airllm_errf(err, "NULL output row");
    decode_span(w, r * w->cols, (size_t)w->cols, out);
    return 0;
}

/* ------------------------------------------------------------------ */
/* the oracle                                                          */
/* ------------------------------------------------------------------ */

int airllm_mm_ref(const airllm_mm_weight *w, const float *x, size_t n, size_t ldx, float *y,
                  size_t ldy, uint64_t row_begin, uint64_t row_end, airllm_err *err)
{
    if (check_call(w, x, n, ldx, y, ldy, row_begin, row_end, err))
        return -1;
    if (row_begin == row_end)
        return 0;
    for (size_t t = 0; t < n; t++)
        for (uint64_t r = row_begin; r < row_end; r++) {
            double acc = 0.0; /* float * float is exact in double */
            for (uint64_t k = 0; k < w->cols; k++)
                acc += (double)elem(w, r * w->cols + k) * (double)x[t * ldx + k];
            y[t * ldy + r] = (float)acc;
        }
    return 0;
}

/* ------------------------------------------------------------------ */
/* portable tiles (AIRLLM_MM_IMPL=scalar)                              */
/* ------------------------------------------------------------------ */

/* 8 partial sums per output, so the sum is no worse than the SIMD kernels'
 * and the compiler may vectorize the lanes. */
#define SC_LANES 8

static inline __attribute__((always_inline)) float sc_load(mm_kind kind, const uint8_t *p,
                                                           size_t k)
{
    if (kind == MM_F32)
        return f32_le(p + 4 * k);
    if (kind == MM_F16)
        return airllm_f16_to_f32(u16_le(p + 2 * k));
    uint32_t u = (uint32_t)u16_le(p + 2 * k) << 16; /* bf16: the top half of a float */
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

static inline __attribute__((always_inline)) void sc_tile(const mm_kind kind, const unsigned R,
                                                          const unsigned T, const mm_job *j,
                                                          size_t row, const float *x,
                                                          float *out)
{
    float acc[4][MM_TMAX][SC_LANES];
    memset(acc, 0, sizeof acc);
    const uint8_t *p[4];
    for (unsigned i = 0; i < R; i++)
        p[i] = j->w + (row + i) * j->w_stride;
    size_t cols = j->cols;
    if (kind == MM_Q4 || kind == MM_I8) {
        size_t nb = j->cols / j->block;
        for (size_t b = 0; b < nb; b++) {
            float s[4];
            for (unsigned i = 0; i < R; i++) {
                float a = j->absmax[(row + i) * j->a_stride + b];
                s[i] = kind == MM_I8 ? a / 127.0f : a;
            }
            for (size_t k = b * j->block; k < (b + 1) * j->block; k += SC_LANES) {
                float wv[4][SC_LANES];
                for (unsigned i = 0; i < R; i++)
                    for (unsigned l = 0; l < SC_LANES; l++) {
                        size_t e = k + l;
                        if (kind == MM_I8) {
                            wv[i][l] = (float)(int8_t)p[i][e] * s[i];
                        } else {
                            uint8_t byte = p[i][e / 2];
                            wv[i][l] = j->cb[(e & 1) ? byte & 0x0Fu : byte >> 4] * s[i];
                        }
                    }
                for (unsigned t = 0; t < T; t++)
                    for (unsigned i = 0; i < R; i++)
                        for (unsigned l = 0; l < SC_LANES; l++)
                            acc[i][t][l] += wv[i][l] * x[t * j->ldx + k + l];
            }
        }
    } else {
        size_t k = 0;
        for (; k + SC_LANES <= cols; k += SC_LANES) {
            float wv[4][SC_LANES];
            for (unsigned i = 0; i < R; i++)
                for (unsigned l = 0; l < SC_LANES; l++)
                    wv[i][l] = sc_load(kind, p[i], k + l);
            for (unsigned t = 0; t < T; t++)
                for (unsigned i = 0; i < R; i++)
                    for (unsigned l = 0; l < SC_LANES; l++)
                        acc[i][t][l] += wv[i][l] * x[t * j->ldx + k + l];
        }
        for (; k < cols; k++)
            for (unsigned i = 0; i < R; i++) {
                float wk = sc_load(kind, p[i], k);
                for (unsigned t = 0; t < T; t++)
                    acc[i][t][0] += wk * x[t * j->ldx + k];
            }
    }
    for (unsigned i = 0; i < R; i++)
        for (unsigned t = 0; t < T; t++) {
            float *l = acc[i][t];
            out[i * T + t] = ((l[0] + l[4]) + (l[1] + l[5])) + ((l[2] + l[6]) + (l[3] + l[7]));
        }
}

#define SC_TILE(kind, R, T)                                                                  \
    static void sc_##kind##_##R##_##T(const mm_job *j, size_t row, const float *x, float *out) \
    {                                                                                        \
        sc_tile(kind, R, T, j, row, x, out);                                                 \
    }
#define SC_TILES(kind)                                                                       \
    SC_TILE(kind, 1, 1)                                                                      \
    SC_TILE(kind, 1, 2)                                                                      \
    SC_TILE(kind, 1, 3)                                                                      \
    SC_TILE(kind, 1, 4)                                                                      \
    SC_TILE(kind, 4, 1)                                                                      \
    SC_TILE(kind, 4, 2)                                                                      \
    SC_TILE(kind, 4, 3)                                                                      \
    SC_TILE(kind, 4, 4)
#define SC_ROW(kind)                                                                         \
    {{sc_##kind##_1_1, sc_##kind##_1_2, sc_##kind##_1_3, sc_##kind##_1_4},                  \
     {sc_##kind##_4_1, sc_##kind##_4_2, sc_##kind##_4_3, sc_##kind##_4_4}}

SC_TILES(MM_F32)
SC_TILES(MM_F16)
SC_TILES(MM_BF16)
SC_TILES(MM_Q4)
SC_TILES(MM_I8)

/* Attention, portable: eight partial sums per dot product (one running
 * sum is a chain of dependent adds); the mix adds one position's row at a
 * time into the outputs. */
static void scalar_scores(const float *q, const float *k, size_t kstride, size_t d, size_t n,
                          float scale, float *scores)
{
    for (size_t j = 0; j < n; j++) {
        const float *kj = k + j * kstride;
        float a[8] = {0};
        size_t i = 0;
        for (; i + 8 <= d; i += 8)
            for (int l = 0; l < 8; l++)
                a[l] += q[i + l] * kj[i + l];
        float sum = ((a[0] + a[4]) + (a[1] + a[5])) + ((a[2] + a[6]) + (a[3] + a[7]));
        for (; i < d; i++)
            sum += q[i] * kj[i];
        scores[j] = scale * sum;
    }
}

static void scalar_mix(const float *p, const float *v, size_t vstride, size_t d, size_t n,
                       float *o)
{
    memset(o, 0, d * sizeof *o);
    for (size_t j = 0; j < n; j++) {
        const float *vj = v + j * vstride;
        for (size_t i = 0; i < d; i++)
            o[i] += p[j] * vj[i];
    }
}

static const mm_isa isa_scalar = {
    {4, 4, 4, 4, 4, 0},
    {SC_ROW(MM_F32), SC_ROW(MM_F16), SC_ROW(MM_BF16), SC_ROW(MM_Q4), SC_ROW(MM_I8), {{NULL}}},
    {0},
    {NULL},
    0,
    0,
    scalar_scores,
    scalar_mix,
};

void airllm_mm_tail_raw(mm_kind kind, const uint8_t *row, size_t k0, size_t k1, const float *x,
                        size_t ldx, unsigned T, float *acc)
{
    for (size_t k = k0; k < k1; k++) {
        float wk = sc_load(kind, row, k);
        for (unsigned t = 0; t < T; t++)
            acc[t] += wk * x[t * ldx + k];
    }
}

/* ------------------------------------------------------------------ */
/* driver                                                              */
/* ------------------------------------------------------------------ */

/* Runs rows [0, nrows) of j for n tokens: y[t * ldy + i] = (or +=) the dot
 * product of row i and token t.
 * Tokens are taken in super-blocks of nb so that nb rows of x (nb * cols
 * floats) stay within about 1 MiB (L2): within a super-block each group of
 * rows is read from memory once and reused from cache for every group of
 * T tokens. nb >= 16, so up to 16 tokens read the weights exactly once.
 * One token uses the implementation's matrix-vector tiles where it has
 * them. */
static void run_job(const mm_isa *isa, const mm_job *j, size_t nrows, const float *x, size_t n,
                    float *y, size_t ldy, int accumulate)
{
    size_t nb = ((size_t)1 << 20) / (4 * (j->cols ? j->cols : 1));
    nb = nb < 16 ? 16 : nb & ~(size_t)3;
    const unsigned R = isa->rows[j->kind];
    float out[8 * MM_TMAX];
    if (n == 1 && isa->vtile[j->kind] &&
        (!isa->vtile_max_stride || j->w_stride < isa->vtile_max_stride)) {
        const unsigned V = isa->vrows[j->kind];
        for (size_t i = 0; i < nrows;) {
            unsigned r = nrows - i >= V ? V : 1;
            (r > 1 ? isa->vtile[j->kind] : isa->tile[j->kind][0][0])(j, i, x, out);
            for (unsigned a = 0; a < r; a++)
                y[i + a] = accumulate ? y[i + a] + out[a] : out[a];
            i += r;
        }
        return;
    }
    for (size_t t0 = 0; t0 < n; t0 += nb) {
        size_t t1 = n - t0 < nb ? n : t0 + nb;
        for (size_t i = 0; i < nrows;) {
            unsigned r = nrows - i >= R ? R : 1;
            const mm_tile_fn *tiles = isa->tile[j->kind][r > 1];
            for (size_t t = t0; t < t1;) {
                unsigned T = t1 - t >= MM_TMAX ? MM_TMAX : (unsigned)(t1 - t);
                tiles[T - 1](j, i, x + t * j->ldx, out);
                for (unsigned a = 0; a < r; a++)
                    for (unsigned b = 0; b < T; b++) {
                        float *d = &y[(t + b) * ldy + i + a];
                        *d = accumulate ? *d + out[a * T + b] : out[a * T + b];
                    }
                t += T;
            }
            i += r;
        }
    }
}

/* x [n, cols] (stride ldx) transposed per 8 L columns for the MM_Q4T tiles
 * of L lanes: xt[t * cols + c + L s + l] = x[t * ldx + c + 8 l + (s ^ 1)];
 * the columns after the last whole chunk (the MM_Q4 tail) as they are. */
static void transpose_q4t(const float *x, size_t n, size_t ldx, size_t cols, unsigned L,
                          float *xt)
{
    size_t body = cols - cols % (8 * L);
    for (size_t t = 0; t < n; t++) {
        for (size_t c = 0; c < body; c += 8 * L)
            for (unsigned s = 0; s < 8; s++)
                for (unsigned l = 0; l < L; l++)
                    xt[t * cols + c + L * s + l] = x[t * ldx + c + 8 * l + (s ^ 1)];
        memcpy(xt + t * cols + body, x + t * ldx + body, (cols - body) * sizeof *xt);
    }
}

/* Quantized matrices whose rows do not hold whole blocks (cols % block !=
 * 0): a block's scale may change inside a row and a 4-bit row may start in
 * the middle of a byte. Row r is the flat range [r cols, (r + 1) cols): the
 * whole blocks inside it (the body, starting on a block boundary, so on a
 * byte) go to the implementation's tiles as a one-row matrix; the partial
 * blocks at its two ends (together about one block) are decoded a chunk at
 * a time into a small stack buffer, which the float32 tiles multiply with
 * every token. */
#define MM_CHUNK 512

/* y[t * ldy] += sum over columns [k0, k1) of row r, decoded to float32. */
static void straddle_span(const mm_isa *isa, const airllm_mm_weight *w, uint64_t r, uint64_t k0,
                          uint64_t k1, const float *x, size_t n, size_t ldx, float *y,
                          size_t ldy)
{
    _Alignas(64) float buf[MM_CHUNK];
    for (; k0 < k1; k0 += MM_CHUNK) {
        size_t len = k1 - k0 < MM_CHUNK ? (size_t)(k1 - k0) : MM_CHUNK;
        decode_span(w, r * w->cols + k0, len, buf);
        mm_job jf = {MM_F32, (const uint8_t *)buf, 0, NULL, 0, 0, NULL, len, ldx};
        run_job(isa, &jf, 1, x + k0, n, y, ldy, 1);
    }
}

static void run_straddle(const mm_isa *isa, const airllm_mm_weight *w, const float *x, size_t n,
                         size_t ldx, float *y, size_t ldy, uint64_t r0, uint64_t r1)
{
    const uint64_t cols = w->cols, B = w->block;
    for (uint64_t r = r0; r < r1; r++) {
        for (size_t t = 0; t < n; t++)
            y[t * ldy + r] = 0.0f;
        uint64_t first = r * cols, end = first + cols;
        uint64_t b0 = (first + B - 1) / B, b1 = end / B; /* whole blocks [b0, b1) */
        if (b1 <= b0) {
            straddle_span(isa, w, r, 0, cols, x, n, ldx, y + r, ldy);
            continue;
        }
        uint64_t k0 = b0 * B - first, k1 = b1 * B - first; /* body columns */
        straddle_span(isa, w, r, 0, k0, x, n, ldx, y + r, ldy);
        mm_job j;
        memset(&j, 0, sizeof j);
        j.kind = airllm_mm_quant_kind(w->enc);
        j.w = w->data + (j.kind == MM_I8 ? b0 * B : b0 * B / 2);
        j.absmax = w->absmax + b0;
        j.a_stride = (size_t)(b1 - b0);
        j.block = (size_t)B;
        j.cb = j.kind == MM_Q4 ? codebook(w->enc) : NULL;
        j.cols = (size_t)(k1 - k0);
        j.ldx = ldx;
        run_job(isa, &j, 1, x + k0, n, y + r, ldy, 1);
        straddle_span(isa, w, r, k1, cols, x, n, ldx, y + r, ldy);
    }
}

/* ------------------------------------------------------------------ */
/* implementation choice                                               */
/* ------------------------------------------------------------------ */

#if defined(__x86_64__) || defined(__i386__)
#define MM_X86 1
#endif

static atomic_int forced_impl = AIRLLM_MM_IMPL_AUTO;
/* AIRLLM_MM_IMPL once read and valid (an impl, AUTO when unset), else -1 */
static atomic_int env_impl = -1;

_Static_assert((int)AIRLLM_MM_IMPL_AUTO == AIRLLM_IMPL_AUTO &&
                   (int)AIRLLM_MM_IMPL_SCALAR == AIRLLM_IMPL_SCALAR &&
                   (int)AIRLLM_MM_IMPL_AVX2 == AIRLLM_IMPL_AVX2 &&
                   (int)AIRLLM_MM_IMPL_AVX512 == AIRLLM_IMPL_AVX512 &&
                   (int)AIRLLM_MM_IMPL_NEON == AIRLLM_IMPL_NEON,
               "airllm_mm_impl follows airllm_impl.h's numbering");

const char *airllm_mm_impl_name(airllm_mm_impl impl)
{
    return airllm_impl_name((int)impl);
}

int airllm_mm_impl_available(airllm_mm_impl impl)
{
    switch (impl) {
    case AIRLLM_MM_IMPL_AUTO:
    case AIRLLM_MM_IMPL_SCALAR:
        return 1;
#ifdef MM_X86
    case AIRLLM_MM_IMPL_AVX2:
        __builtin_cpu_init();
        return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    case AIRLLM_MM_IMPL_AVX512:
        __builtin_cpu_init();
        return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw");
#endif
#ifdef __aarch64__
    case AIRLLM_MM_IMPL_NEON:
        return 1;
#endif
    default:
        return 0;
    }
}

static int available(int impl)
{
    return airllm_mm_impl_available((airllm_mm_impl)impl);
}

int airllm_mm_set_impl(airllm_mm_impl impl, airllm_err *err)
{
    if (airllm_impl_check((int)impl, available, "matmul", err))
        return -1;
    atomic_store(&forced_impl, (int)impl);
    return 0;
}

int airllm_mm_impl_active(airllm_mm_impl *out, airllm_err *err)
{
    if (!out)
        return airllm_errf(err, "NULL argument");
    int impl = atomic_load(&forced_impl);
    if (impl == AIRLLM_MM_IMPL_AUTO) {
        /* read once: getenv on every call would cost more than a small
         * matrix-vector product; an invalid value is read again (and
         * reported) every time */
        int e = atomic_load(&env_impl);
        if (e < 0) {
            if (airllm_impl_from_env("AIRLLM_MM_IMPL", available, &e, err))
                return -1;
            atomic_store(&env_impl, e);
        }
        impl = e;
    }
    *out = (airllm_mm_impl)(impl == AIRLLM_MM_IMPL_AUTO ? airllm_impl_best(available) : impl);
    return 0;
}

static const mm_isa *isa_of(airllm_mm_impl impl)
{
    switch (impl) {
#ifdef MM_X86
    case AIRLLM_MM_IMPL_AVX2:
        return &airllm_mm_isa_avx2;
    case AIRLLM_MM_IMPL_AVX512:
        return &airllm_mm_isa_avx512;
#endif
#ifdef __aarch64__
    case AIRLLM_MM_IMPL_NEON:
        return &airllm_mm_isa_neon;
#endif
    default:
        return &isa_scalar;
    }
}

/* ------------------------------------------------------------------ */
/* attention                                                           */
/* ------------------------------------------------------------------ */

void airllm_attn_scores_ref(const float *q, const float *k, size_t kstride, size_t d, size_t n,
                            float scale, float *scores)
{
    for (size_t j = 0; j < n; j++) {
        double sum = 0;
        for (size_t i = 0; i < d; i++)
            sum += (double)q[i] * k[j * kstride + i];
        scores[j] = (float)(scale * sum);
    }
}

void airllm_attn_mix_ref(const float *p, const float *v, size_t vstride, size_t d, size_t n,
                         float *o)
{
    for (size_t i = 0; i < d; i++) {
        double sum = 0;
        for (size_t j = 0; j < n; j++)
            sum += (double)p[j] * v[j * vstride + i];
        o[i] = (float)sum;
    }
}

/* out_len: the outputs written (n scores, d mixed values), even when the
 * sums are empty. */
static int attn_args(const void *a, const void *b, const void *out, size_t out_len,
                     size_t stride, size_t d, size_t n, const mm_isa **isa, airllm_err *err)
{
    if ((n && d && (!a || !b)) || (out_len && !out))
        return airllm_errf(err, "NULL argument");
    if (n > 1 && stride < d)
        return airllm_errf(err, "row stride %zu below the row length %zu", stride, d);
    airllm_mm_impl impl;
    if (airllm_mm_impl_active(&impl, err))
        return -1;
    *isa = isa_of(impl);
    return 0;
}

int airllm_attn_scores(const float *q, const float *k, size_t kstride, size_t d, size_t n,
                       float scale, float *scores, airllm_err *err)
{
    const mm_isa *isa = NULL; /* gcc 12 on aarch64 cannot see attn_args sets it */
    if (attn_args(q, k, scores, n, kstride, d, n, &isa, err))
        return -1;
    if (!n)
        return 0;
    if (!d) {
        memset(scores, 0, n * sizeof *scores);
        return 0;
    }
    isa->scores(q, k, kstride, d, n, scale, scores);
    return 0;
}

int airllm_attn_mix(const float *p, const float *v, size_t vstride, size_t d, size_t n, float *o,
                    airllm_err *err)
{
    const mm_isa *isa = NULL; /* gcc 12 on aarch64 cannot see attn_args sets it */
    if (attn_args(p, v, o, d, vstride, d, n, &isa, err))
        return -1;
    if (!d)
        return 0;
    if (!n) {
        memset(o, 0, d * sizeof *o);
        return 0;
    }
    isa->mix(p, v, vstride, d, n, o);
    return 0;
}

size_t airllm_mm_row_quantum(size_t n)
{
    /* the GEMM and int8 paths' panels are 32 rows (airllm_matmul_gemm.c,
     * airllm_matmul_q8.c), the tiles 16; from two tokens on, 32 serves both */
    return n > 1 ? 32 : 16;
}

int airllm_mm_gemm_wanted(const airllm_mm_weight *w, size_t n, airllm_mm_impl impl)
{
    if (n < airllm_mm_gemm_min() || !w->rows || !w->cols ||
        (impl != AIRLLM_MM_IMPL_AVX512 && impl != AIRLLM_MM_IMPL_SCALAR))
        return 0;
    return w->enc == AIRLLM_ENC_RAW ||
           (airllm_encoding_is_quant(w->enc) && w->cols % w->block == 0);
}

/* ------------------------------------------------------------------ */
/* entry point                                                         */
/* ------------------------------------------------------------------ */

int airllm_mm(const airllm_mm_weight *w, const float *x, size_t n, size_t ldx, float *y,
              size_t ldy, uint64_t row_begin, uint64_t row_end, airllm_err *err)
{
    return airllm_mm_prepared(w, NULL, x, n, ldx, y, ldy, row_begin, row_end, err);
}

int airllm_mm_prepared(const airllm_mm_weight *w, const airllm_mm_act *act, const float *x,
                       size_t n, size_t ldx, float *y, size_t ldy, uint64_t row_begin,
                       uint64_t row_end, airllm_err *err)
{
    if (check_call(w, x, n, ldx, y, ldy, row_begin, row_end, err))
        return -1;
    if (n == 0 || row_begin == row_end)
        return 0;
    if (n == 1) /* unused with one token; keeps the index arithmetic simple */
        ldx = (size_t)w->cols, ldy = (size_t)row_end;
    airllm_mm_impl impl;
    if (airllm_mm_impl_active(&impl, err))
        return -1;
    const mm_isa *isa = isa_of(impl);
    size_t nrows = (size_t)(row_end - row_begin), cols = (size_t)w->cols;
    if (cols == 0) {
        for (size_t t = 0; t < n; t++)
            memset(y + t * ldy + row_begin, 0, nrows * sizeof *y);
        return 0;
    }

    mm_job j;
    memset(&j, 0, sizeof j);
    j.cols = cols;
    j.ldx = ldx;
    if (w->enc == AIRLLM_ENC_RAW) {
        j.kind = w->dtype == AIRLLM_DTYPE_F32 ? MM_F32
                 : w->dtype == AIRLLM_DTYPE_F16 ? MM_F16
                                                : MM_BF16;
        size_t esz = j.kind == MM_F32 ? 4 : 2;
        j.w_stride = cols * esz;
        j.w = w->data + (size_t)row_begin * j.w_stride;
    } else {
        if (cols % w->block) {
            run_straddle(isa, w, x, n, ldx, y, ldy, row_begin, row_end);
            return 0;
        }
        j.kind = airllm_mm_quant_kind(w->enc);
        j.w_stride = j.kind == MM_I8 ? cols : cols / 2; /* cols is a multiple of 32 */
        j.w = w->data + (size_t)row_begin * j.w_stride;
        j.block = w->block;
        j.a_stride = cols / w->block;
        j.absmax = w->absmax + (size_t)row_begin * j.a_stride;
        j.cb = j.kind == MM_Q4 ? codebook(w->enc) : NULL;
        int q8 = airllm_mm_q8_wanted(w, impl, err);
        if (q8)
            return q8 < 0 ? -1 : airllm_mm_q8_run(&j, nrows, act, x, n, y + row_begin, ldy, err);
    }
    /* n >= airllm_mm_gemm_min(): whole panels of 32 rows through the GEMM
     * path (AVX-512 and scalar; AVX2 and NEON keep their tiles), the rows
     * after them below */
    if (airllm_mm_gemm_wanted(w, n, impl)) {
        const float *xp = NULL;
        if (act && act->xp) {
            if (airllm_mm_act_check(act, x, n, ldx, cols, err))
                return -1;
            xp = act->xp;
        }
        size_t done = airllm_mm_gemm(impl == AIRLLM_MM_IMPL_AVX512, &j, nrows, x, n,
                                     y + row_begin, ldy, xp);
        if (done == nrows)
            return 0;
        j.w += done * j.w_stride;
        if (j.absmax)
            j.absmax += done * j.a_stride;
        nrows -= done;
        row_begin += done;
    }
    /* 4-bit: the MM_Q4T tiles take the columns in chunks of 8 * lanes, then
     * a tail of whole blocks in MM_Q4 steps (SmolLM2's 576 columns on
     * AVX-512: 4 chunks of 128, then one block of 64). */
    float *xt = NULL;
    if (j.kind == MM_Q4 && isa->q4t_lanes && cols >= 8 * (size_t)isa->q4t_lanes &&
        cols % (8 * isa->q4t_lanes) % w->block == 0) {
        /* n * cols floats, the size of x: a per-call copy of the activations
         * in the order whole-vector code loads produce weights */
        xt = malloc(n * cols * sizeof *xt);
        if (!xt)
            return airllm_errf(err, "out of memory for %zu x %zu activations", n, cols);
        transpose_q4t(x, n, ldx, cols, isa->q4t_lanes, xt);
        j.kind = MM_Q4T;
        j.ldx = cols;
        x = xt;
    }
    run_job(isa, &j, nrows, x, n, y + row_begin, ldy, 0);
    free(xt);
    return 0;
}
