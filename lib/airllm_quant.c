/* Scalar reference for block-wise NF4 / FP4 / int8 quantization and
 * bitsandbytes' double quantization (docs/quantization.md). Written to be
 * obviously right, one element at a time: it is the oracle that
 * lib/airllm_quant_simd.c and tests/test_quant.c are checked against.
 *
 * Bit-compatibility with bitsandbytes 0.50.2 on a CPU decides the details
 * that look odd: the 1e-38 floor on the scale, dividing (not multiplying by a
 * reciprocal) in a short last block, FP4's choice between its two zero codes.
 * Keep every float operation in its own statement: a fused multiply-add would
 * round once where bitsandbytes rounds twice. */
#include "airllm_quant.h"

#include "airllm_bytes.h"

#include <float.h>
#include <math.h>
#include <pthread.h>
#if defined(__SSE2__)
#include <emmintrin.h>
#elif defined(__aarch64__)
#include <arm_neon.h>
#endif
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------------ */
/* Codebooks                                                           */
/* ------------------------------------------------------------------ */

/* QLoRA's NormalFloat4 (bitsandbytes get_4bit_type("nf4")): quantiles of
 * N(0, 1) scaled to [-1, 1], with an exact 0. The literals are the float32
 * values bitsandbytes stores, written out in full so they round-trip. */
const float airllm_nf4_code[16] = {
    -1.0f,
    -0.6961928009986877f,
    -0.5250730514526367f,
    -0.39491748809814453f,
    -0.28444138169288635f,
    -0.18477343022823334f,
    -0.09105003625154495f,
    0.0f,
    0.07958029955625534f,
    0.16093020141124725f,
    0.24611230194568634f,
    0.33791524171829224f,
    0.44070982933044434f,
    0.5626170039176941f,
    0.7229568362236023f,
    1.0f,
};

/* bitsandbytes' FP4 (e2m1 with its own bias): the magnitudes for bit
 * patterns 000..111 are 0, 0.0625, 8, 12, 4, 6, 2, 3, divided by 12 in
 * float32; bit 3 is the sign. Code 8 is "-0" but bitsandbytes stores +0.0. */
const float airllm_fp4_code[16] = {
    0.0f,
    0.0052083334885537624f, /* 0.0625 / 12 */
    0.6666666865348816f,    /* 8 / 12 */
    1.0f,
    0.3333333432674408f, /* 4 / 12 */
    0.5f,
    0.1666666716337204f, /* 2 / 12 */
    0.25f,
    0.0f,
    -0.0052083334885537624f,
    -0.6666666865348816f,
    -1.0f,
    -0.3333333432674408f,
    -0.5f,
    -0.1666666716337204f,
    -0.25f,
};

/* FP4 codes by ascending value, as torch.argsort returns them inside
 * bitsandbytes: the two zeros come out as 0 then 8, so a scaled value in
 * (-1/384, 0] gets code 0 and one in (0, 1/384] gets code 8. Both decode
 * to 0.0; this only matters for byte-identical output. */
static const uint8_t fp4_sorted_code[16] = {11, 10, 13, 12, 15, 14, 9, 0,
                                            8,  1,  6,  7,  4,  5,  2, 3};

/* bitsandbytes clamps absmax to this before taking its reciprocal, so an
 * all-zero block never divides by zero. It is float32's (subnormal) 1e-38. */
#define SCALE_FLOOR 1e-38f

int airllm_quant4_tables(airllm_quant_type type, uint8_t sorted_code[16], float mid[15])
{
    const float *code;
    if (type == AIRLLM_QUANT_NF4) {
        code = airllm_nf4_code;
        for (int k = 0; k < 16; k++)
            sorted_code[k] = (uint8_t)k;
    } else if (type == AIRLLM_QUANT_FP4) {
        code = airllm_fp4_code;
        memcpy(sorted_code, fp4_sorted_code, 16);
    } else {
        return -1;
    }
    for (int k = 0; k < 15; k++) {
        float sum = code[sorted_code[k]] + code[sorted_code[k + 1]];
        mid[k] = sum / 2.0f;
    }
    return 0;
}

/* bitsandbytes' create_dynamic_map(signed=True, max_exponent_bits=7,
 * total_bits=8). For i = 0..6 the decade [10^(i-6), 10^(i-5)) gets 2^i
 * values: the means of adjacent points of torch.linspace(0.1, 1, 2^i + 1)
 * times 10^(i-6), and their negatives; plus 0 and 1. 127 negative + 0 +
 * 127 positive + 1.0 = 256, sorted. Every step is float32 as in torch: its
 * CPU linspace computes start + step * k (k < steps / 2) and
 * end - step * (steps - 1 - k) (the rest) with one rounding (a fused
 * multiply-add), step = (end - start) / (steps - 1). */
static int cmp_float(const void *a, const void *b)
{
    float x = *(const float *)a, y = *(const float *)b;
    return (x > y) - (x < y);
}

void airllm_quant_dynamic_map(float map[256])
{
    static const double decade[7] = {1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1, 1.0};
    int m = 0;
    for (int i = 0; i < 7; i++) {
        int steps = (1 << i) + 1;
        const float start = 0.1f, end = 1.0f;
        float step = (end - start) / (float)(steps - 1);
        float pts[65];
        for (int k = 0; k < steps; k++)
            pts[k] = k < steps / 2 ? fmaf(step, (float)k, start)
                                   : fmaf(-step, (float)(steps - 1 - k), end);
        float scale = (float)decade[i];
        for (int k = 0; k + 1 < steps; k++) {
            float sum = pts[k] + pts[k + 1];
            float mean = sum / 2.0f;
            map[m++] = scale * mean;
            map[m++] = -scale * mean;
        }
    }
    map[m++] = 0.0f;
    map[m++] = 1.0f;
    qsort(map, 256, sizeof map[0], cmp_float);
}

/* ------------------------------------------------------------------ */
/* Names, sizes, argument checks                                       */
/* ------------------------------------------------------------------ */

const char *airllm_quant_type_name(airllm_quant_type type)
{
    switch (type) {
    case AIRLLM_QUANT_NF4:
        return "nf4";
    case AIRLLM_QUANT_FP4:
        return "fp4";
    case AIRLLM_QUANT_INT8:
        return "int8";
    }
    return NULL;
}

int airllm_quant_type_from_name(const char *name, airllm_quant_type *out)
{
    static const airllm_quant_type all[] = {AIRLLM_QUANT_NF4, AIRLLM_QUANT_FP4,
                                            AIRLLM_QUANT_INT8};
    if (!name || !out)
        return -1;
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) {
        if (strcmp(name, airllm_quant_type_name(all[i])) == 0) {
            *out = all[i];
            return 0;
        }
    }
    return -1;
}

int airllm_quant_check_block(size_t block, airllm_err *err)
{
    if (block < AIRLLM_QUANT_BLOCK_MIN || block > AIRLLM_QUANT_BLOCK_MAX ||
        (block & (block - 1)) != 0)
        return airllm_errf(err, "block size %zu is not a power of two in [%d, %d]", block,
                           AIRLLM_QUANT_BLOCK_MIN, AIRLLM_QUANT_BLOCK_MAX);
    return 0;
}

size_t airllm_quant_nblocks(size_t n, size_t block)
{
    if (block == 0)
        return 0;
    return n / block + (n % block != 0);
}

size_t airllm_quant_code_bytes(airllm_quant_type type, size_t n)
{
    switch (type) {
    case AIRLLM_QUANT_NF4:
    case AIRLLM_QUANT_FP4:
        return n / 2 + (n & 1);
    case AIRLLM_QUANT_INT8:
        return n;
    }
    return 0;
}

int airllm_quant_check_args(airllm_quant_type type, size_t n, size_t block, size_t codes_cap,
                            size_t absmax_cap, airllm_err *err)
{
    if (!airllm_quant_type_name(type))
        return airllm_errf(err, "unknown quantization type %d", (int)type);
    if (airllm_quant_check_block(block, err))
        return -1;
    size_t need = airllm_quant_code_bytes(type, n);
    if (codes_cap < need)
        return airllm_errf(err, "codes buffer holds %zu bytes, %s of %zu elements needs %zu",
                           codes_cap, airllm_quant_type_name(type), n, need);
    size_t nb = airllm_quant_nblocks(n, block);
    if (absmax_cap < nb)
        return airllm_errf(err, "absmax buffer holds %zu floats, %zu elements in blocks of %zu need %zu",
                           absmax_cap, n, block, nb);
    return 0;
}

/* airllm_quant_check_args plus non-NULL buffers when there is work. */
static int check_buffers(airllm_quant_type type, size_t n, size_t block, const void *x,
                         const void *codes, size_t codes_cap, const void *absmax,
                         size_t absmax_cap, const void *out, airllm_err *err)
{
    if (airllm_quant_check_args(type, n, block, codes_cap, absmax_cap, err))
        return -1;
    if (n > 0 && (!x || !codes || !absmax || !out))
        return airllm_errf(err, "NULL buffer for %zu elements", n);
    return 0;
}

/* ------------------------------------------------------------------ */
/* Quantize / dequantize                                               */
/* ------------------------------------------------------------------ */

/* Largest |x| of a block; fails on inf or NaN (a NaN would otherwise be
 * skipped or kept depending on where it sits, and SIMD would disagree). */
static int block_absmax(const float *x, size_t len, size_t base, float *out, airllm_err *err)
{
    float a = 0.0f;
    for (size_t j = 0; j < len; j++) {
        float v = fabsf(x[j]);
        if (!(v <= FLT_MAX))
            return airllm_errf(err, "element %zu is not finite", base + j);
        if (v > a)
            a = v;
    }
    *out = a;
    return 0;
}

/* Element i's code: 2i in the high nibble, 2i+1 in the low one. Elements are
 * written in order, so the even one starts the byte and the odd one adds to
 * it (the caller's buffer is never read uninitialized). */
static void put_nibble(uint8_t *codes, size_t i, unsigned code)
{
    if ((i & 1) == 0)
        codes[i / 2] = (uint8_t)(code << 4);
    else
        codes[i / 2] = (uint8_t)(codes[i / 2] | code);
}

static unsigned nibble(const uint8_t *codes, size_t i)
{
    return (i & 1) == 0 ? codes[i / 2] >> 4 : codes[i / 2] & 0x0F;
}

/* One 4-bit block, x[0..len) of the tensor starting at element base.
 * full: len == block. A full block scales by the reciprocal, s = x * (1/a);
 * the short last block divides, s = x / a: that is what bitsandbytes' torch
 * kernel does, and the two can differ in the last bit of s. */
static int quant4_block(airllm_quant_type type, const float *x, size_t len, size_t base,
                        int full, uint8_t *codes, float *absmax, airllm_err *err)
{
    uint8_t sorted_code[16];
    float mid[15];
    if (airllm_quant4_tables(type, sorted_code, mid))
        return airllm_errf(err, "type %d is not a 4-bit type", (int)type);

    float a = 0.0f;
    if (block_absmax(x, len, base, &a, err))
        return -1;
    float d = fmaxf(a, SCALE_FLOOR);
    float r = 1.0f / d;
    /* bitsandbytes stores the floored absmax for the short block only, so an
     * all-zero short block records 1e-38 where a full one records 0. */
    *absmax = full ? a : d;
    for (size_t j = 0; j < len; j++) {
        float s = full ? x[j] * r : x[j] / d;
        /* s is within [-1, 1] but for the last bit; every midpoint is strictly
         * inside, so clamping would not change k. */
        unsigned k = 0;
        while (k < 15 && mid[k] < s)
            k++;
        put_nibble(codes, base + j, sorted_code[k]);
    }
    return 0;
}

/* One int8 block: q = round-half-even(x * (127 / a)). A block whose absmax is
 * below 2^-96 is first scaled by 2^100 (exact for floats), so 127 / a cannot
 * overflow; the result is what unlimited exponent range would give. */
static int quant8_block(const float *x, size_t len, size_t base, uint8_t *codes, float *absmax,
                        airllm_err *err)
{
    float a = 0.0f;
    if (block_absmax(x, len, base, &a, err))
        return -1;
    *absmax = a;
    if (a == 0.0f) {
        memset(codes + base, 0, len);
        return 0;
    }
    int tiny = a < 0x1p-96f;
    float pre = tiny ? 0x1p100f : 1.0f;
    float as = a * pre;
    float r = 127.0f / as;
    for (size_t j = 0; j < len; j++) {
        float xs = x[j] * pre;
        float s = xs * r;
        float q = rintf(s); /* current rounding mode: half-even by default */
        if (q > 127.0f)
            q = 127.0f;
        if (q < -127.0f)
            q = -127.0f;
        codes[base + j] = (uint8_t)(int8_t)q;
    }
    return 0;
}

int airllm_quantize_ref(airllm_quant_type type, const float *x, size_t n, size_t block,
                        uint8_t *codes, size_t codes_cap, float *absmax, size_t absmax_cap,
                        airllm_err *err)
{
    if (check_buffers(type, n, block, x, codes, codes_cap, absmax, absmax_cap, x, err))
        return -1;
    size_t nb = airllm_quant_nblocks(n, block);
    for (size_t b = 0; b < nb; b++) {
        size_t base = b * block;
        size_t len = n - base < block ? n - base : block;
        int rc = type == AIRLLM_QUANT_INT8
                     ? quant8_block(x + base, len, base, codes, &absmax[b], err)
                     : quant4_block(type, x + base, len, base, len == block, codes, &absmax[b],
                                    err);
        if (rc)
            return -1;
    }
    if (type != AIRLLM_QUANT_INT8 && (n & 1)) {
        /* Odd n: bitsandbytes pads the scaled values with one 0.0 before
         * packing, so the spare low nibble holds the code of 0.0. */
        uint8_t sorted_code[16];
        float mid[15];
        if (airllm_quant4_tables(type, sorted_code, mid))
            return airllm_errf(err, "type %d is not a 4-bit type", (int)type);
        unsigned k = 0;
        while (k < 15 && mid[k] < 0.0f)
            k++;
        put_nibble(codes, n, sorted_code[k]);
    }
    return 0;
}

int airllm_dequantize_ref(airllm_quant_type type, const uint8_t *codes, size_t codes_len,
                          const float *absmax, size_t absmax_len, size_t n, size_t block,
                          float *out, airllm_err *err)
{
    if (check_buffers(type, n, block, out, codes, codes_len, absmax, absmax_len, out, err))
        return -1;
    const float *code = type == AIRLLM_QUANT_NF4 ? airllm_nf4_code : airllm_fp4_code;
    for (size_t i = 0; i < n; i++) {
        float a = absmax[i / block];
        if (type == AIRLLM_QUANT_INT8) {
            float scale = a / 127.0f;
            out[i] = (float)(int8_t)codes[i] * scale;
        } else {
            out[i] = code[nibble(codes, i)] * a;
        }
    }
    return 0;
}

/* ------------------------------------------------------------------ */
/* 8-bit dynamic map and double quantization                           */
/* ------------------------------------------------------------------ */

/* Number of midpoints below v: the nearest map entry, ties to the lower. */
static unsigned dyn_nearest(const float mid[255], float v)
{
    unsigned lo = 0, hi = 255; /* answer in [lo, hi] */
    while (lo < hi) {
        unsigned m = (lo + hi) / 2;
        if (mid[m] < v)
            lo = m + 1;
        else
            hi = m;
    }
    return lo;
}

/* bitsandbytes' native CPU rounding: s is mapped to one of 65536 evenly
 * spaced bins over [-1, 1], and the bin's centre v is rounded to the
 * nearest entry. So s near a midpoint can take the farther entry. */
static unsigned dyn_bin(float s)
{
    /* std::clamp in bitsandbytes; a NaN (0 * inf when 1/absmax overflows)
     * ends up in bin 0 on x86, and fmaxf sends it there too. */
    s = fminf(fmaxf(s, -1.0f), 1.0f);
    float t = s + 1.0f;
    t = t * 0.5f;
    t = t * 65535.0f;
    t = t + 0.5f;
    return (unsigned)t;
}

static unsigned dyn_bin_code(const float mid[255], unsigned bin)
{
    float v = 2.0f * (float)bin;
    v = v / 65535.0f;
    v = -1.0f + v;
    return dyn_nearest(mid, v);
}

/* The code of each of the 65536 bins, built once: the per-value work is
 * then the bin arithmetic and one load (double quantization touches one
 * value per block of weights, 100 million for a 7B model). */
static uint8_t dyn_lut_table[65536];
static pthread_once_t dyn_lut_once = PTHREAD_ONCE_INIT;

static void dyn_midpoints(float mid[255]);
static void dyn_lut_init(void)
{
    float mid[255];
    dyn_midpoints(mid);
    for (unsigned bin = 0; bin < 65536; bin++)
        dyn_lut_table[bin] = (uint8_t)dyn_bin_code(mid, bin);
}

static unsigned dyn_lut(const float mid[255], float s)
{
    (void)mid;
    return dyn_lut_table[dyn_bin(s)];
}

static void dyn_midpoints(float mid[255])
{
    float map[256];
    airllm_quant_dynamic_map(map);
    for (int k = 0; k < 255; k++) {
        float sum = map[k] + map[k + 1];
        mid[k] = sum / 2.0f;
    }
}

/* One block of the dynamic-map quantizer. NEAREST follows bitsandbytes'
 * torch kernel (floor 1e-38, divide in the short last block, a zero block
 * gets the code of 0.0); BNB_LUT its native kernel (a zero block gets code 0,
 * i.e. -0.99297, which times absmax 0 still decodes to 0). */
static int dyn8_block(airllm_dq_rounding mode, const float mid[255], const float *x, size_t len,
                      size_t base, int full, uint8_t *codes, float *absmax, airllm_err *err)
{
    float a = 0.0f;
    if (block_absmax(x, len, base, &a, err))
        return -1;
    if (mode == AIRLLM_DQ_BNB_LUT) {
        pthread_once(&dyn_lut_once, dyn_lut_init);
        *absmax = a;
        if (a == 0.0f) {
            memset(codes, 0, len);
            return 0;
        }
        float r = 1.0f / a;
        for (size_t j = 0; j < len; j++) {
            float s = x[j] * r;
            codes[j] = (uint8_t)dyn_lut(mid, s);
        }
        return 0;
    }
    float d = fmaxf(a, SCALE_FLOOR);
    float r = 1.0f / d;
    *absmax = full ? a : d;
    for (size_t j = 0; j < len; j++) {
        float s = full ? x[j] * r : x[j] / d;
        s = fminf(fmaxf(s, -1.0f), 1.0f);
        codes[j] = (uint8_t)dyn_nearest(mid, s);
    }
    return 0;
}

static int check_mode(airllm_dq_rounding mode, airllm_err *err)
{
    if (mode != AIRLLM_DQ_NEAREST && mode != AIRLLM_DQ_BNB_LUT)
        return airllm_errf(err, "unknown double-quant rounding mode %d", (int)mode);
    return 0;
}

int airllm_quantize_dynamic8_ref(airllm_dq_rounding mode, const float *x, size_t n,
                                 size_t block, uint8_t *codes, size_t codes_cap,
                                 float *absmax, size_t absmax_cap, airllm_err *err)
{
    if (check_mode(mode, err) ||
        check_buffers(AIRLLM_QUANT_INT8, n, block, x, codes, codes_cap, absmax, absmax_cap, x,
                      err))
        return -1;
    float mid[255];
    dyn_midpoints(mid);
    size_t nb = airllm_quant_nblocks(n, block);
    for (size_t b = 0; b < nb; b++) {
        size_t base = b * block;
        size_t len = n - base < block ? n - base : block;
        if (dyn8_block(mode, mid, x + base, len, base, len == block, codes + base, &absmax[b],
                       err))
            return -1;
    }
    return 0;
}

int airllm_dequantize_dynamic8_ref(const uint8_t *codes, size_t n, const float *absmax,
                                   size_t absmax_len, size_t block, float *out,
                                   airllm_err *err)
{
    if (check_buffers(AIRLLM_QUANT_INT8, n, block, out, codes, n, absmax, absmax_len, out, err))
        return -1;
    float map[256];
    airllm_quant_dynamic_map(map);
    for (size_t i = 0; i < n; i++)
        out[i] = map[codes[i]] * absmax[i / block];
    return 0;
}

int airllm_dq_compress(airllm_dq_rounding mode, const float *absmax, size_t n,
                       const float *offset_in, uint8_t *q, size_t q_cap, float *absmax2,
                       size_t absmax2_cap, float *offset_out, airllm_err *err)
{
    const size_t block = AIRLLM_QUANT_DQ_BLOCK;
    if (check_mode(mode, err) ||
        check_buffers(AIRLLM_QUANT_INT8, n, block, absmax, q, q_cap, absmax2, absmax2_cap,
                      absmax, err))
        return -1;
    if (!offset_out)
        return airllm_errf(err, "NULL offset_out");
    float offset;
    if (offset_in) {
        offset = *offset_in;
        if (!isfinite(offset))
            return airllm_errf(err, "offset is not finite");
    } else {
        double sum = 0.0;
        for (size_t i = 0; i < n; i++) {
            if (!isfinite(absmax[i]))
                return airllm_errf(err, "absmax %zu is not finite", i);
            sum += absmax[i];
        }
        offset = n ? (float)(sum / (double)n) : 0.0f;
    }
    *offset_out = offset;

    float mid[255];
    dyn_midpoints(mid);
    float y[AIRLLM_QUANT_DQ_BLOCK]; /* (256) absmax - offset of one block */
    size_t nb = airllm_quant_nblocks(n, block);
    for (size_t b = 0; b < nb; b++) {
        size_t base = b * block;
        size_t len = n - base < block ? n - base : block;
        for (size_t j = 0; j < len; j++)
            y[j] = absmax[base + j] - offset;
        if (dyn8_block(mode, mid, y, len, base, len == block, q + base, &absmax2[b], err))
            return -1;
    }
    return 0;
}

int airllm_dq_decompress(const uint8_t *q, size_t n, const float *absmax2, size_t absmax2_len,
                         float offset, float *absmax_out, airllm_err *err)
{
    const size_t block = AIRLLM_QUANT_DQ_BLOCK;
    if (check_buffers(AIRLLM_QUANT_INT8, n, block, absmax_out, q, n, absmax2, absmax2_len,
                      absmax_out, err))
        return -1;
    float map[256];
    airllm_quant_dynamic_map(map);
    for (size_t i = 0; i < n; i++) {
        /* volatile keeps the product rounded before the add: bitsandbytes
         * does these as two tensor operations, never a fused multiply-add. */
        volatile float t = map[q[i]] * absmax2[i / block];
        absmax_out[i] = t + offset;
    }
    return 0;
}

/* ------------------------------------------------------------------ */
/* bf16 / f16 input                                                    */
/* ------------------------------------------------------------------ */

static float f32_from_bits(uint32_t u)
{
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

float airllm_bf16_to_f32(uint16_t b)
{
    /* bfloat16 is the top half of a float32. */
    return f32_from_bits((uint32_t)b << 16);
}

float airllm_f16_to_f32(uint16_t h)
{
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    uint32_t exp = (h >> 10) & 0x1Fu;
    uint32_t man = h & 0x3FFu;
    if (exp == 0x1F) /* inf, NaN: keep the payload (and its quiet bit) */
        return f32_from_bits(sign | 0x7F800000u | (man << 13));
    if (exp != 0) /* normal: rebias 15 -> 127 */
        return f32_from_bits(sign | ((exp + 112) << 23) | (man << 13));
    if (man == 0)
        return f32_from_bits(sign);
    /* subnormal, man * 2^-24: normalize so the leading 1 becomes implicit */
    int e = -14;
    while (!(man & 0x400u)) {
        man <<= 1;
        e--;
    }
    man &= 0x3FFu;
    return f32_from_bits(sign | ((uint32_t)(e + 127) << 23) | (man << 13));
}

void airllm_f16_to_f32_array(const uint8_t *src, size_t n, float *dst)
{
    for (size_t i = 0; i < n; i++)
        dst[i] = airllm_f16_to_f32((uint16_t)(src[2 * i] | (src[2 * i + 1] << 8)));
}

void airllm_bf16_to_f32_array(const uint8_t *src, size_t n, float *dst)
{
    /* The bits of x moved up 16: interleave zero low halves. SSE2 and NEON
     * are the baselines of x86-64 and aarch64 (both little-endian, as the
     * bytes are), so no dispatch is needed; the loop is the definition. */
    size_t i = 0;
#if defined(__SSE2__)
    const __m128i zero = _mm_setzero_si128();
    for (; i + 8 <= n; i += 8) {
        __m128i v = _mm_loadu_si128((const __m128i *)(const void *)(src + 2 * i));
        _mm_storeu_si128((__m128i *)(void *)(dst + i), _mm_unpacklo_epi16(zero, v));
        _mm_storeu_si128((__m128i *)(void *)(dst + i + 4), _mm_unpackhi_epi16(zero, v));
    }
#elif defined(__aarch64__)
    for (; i + 8 <= n; i += 8) {
        uint16x8_t v = vld1q_u16((const uint16_t *)(const void *)(src + 2 * i));
        vst1q_u32((uint32_t *)(void *)(dst + i), vshll_n_u16(vget_low_u16(v), 16));
        vst1q_u32((uint32_t *)(void *)(dst + i + 4), vshll_high_n_u16(v, 16));
    }
#endif
    for (; i < n; i++) {
        uint32_t u = ((uint32_t)src[2 * i] | (uint32_t)src[2 * i + 1] << 8) << 16;
        memcpy(&dst[i], &u, sizeof u);
    }
}

int airllm_float_to_f32_array(airllm_dtype dt, const uint8_t *src, size_t n, float *dst,
                              airllm_err *err)
{
    switch (dt) {
    case AIRLLM_DTYPE_BF16: airllm_bf16_to_f32_array(src, n, dst); return 0;
    case AIRLLM_DTYPE_F16: airllm_f16_to_f32_array(src, n, dst); return 0;
    case AIRLLM_DTYPE_F32:
        for (size_t i = 0; i < n; i++)
            dst[i] = airllm_get_lef32(src + 4 * i);
        return 0;
    default:
        return airllm_errf(err, "dtype %s is not F32, F16 or BF16", airllm_dtype_name(dt));
    }
}

/* ------------------------------------------------------------------ */
/* Error statistics                                                    */
/* ------------------------------------------------------------------ */

int airllm_quant_error_stats(const float *x, const float *y, size_t n, airllm_quant_stats *out,
                             airllm_err *err)
{
    if (!x || !y || !out)
        return airllm_errf(err, "NULL argument");
    if (n == 0)
        return airllm_errf(err, "no elements");
    double se = 0.0, sx = 0.0, mx = 0.0;
    for (size_t i = 0; i < n; i++) {
        if (!isfinite(x[i]) || !isfinite(y[i]))
            return airllm_errf(err, "element %zu is not finite", i);
        double d = (double)x[i] - (double)y[i];
        se += d * d;
        sx += (double)x[i] * (double)x[i];
        if (fabs(d) > mx)
            mx = fabs(d);
    }
    out->rmse = sqrt(se / (double)n);
    out->max_abs = mx;
    out->rel_fro = sx > 0.0 ? sqrt(se / sx) : (se > 0.0 ? INFINITY : 0.0);
    return 0;
}

/* ---- per-block error sums ---- */

static float lanes_sum(float l[16])
{
    for (int w = 8; w >= 1; w /= 2)
        for (int k = 0; k < w; k++)
            l[k] = l[k] + l[k + w];
    return l[0];
}

static float lanes_max(const float l[16])
{
    float m = l[0];
    for (int k = 1; k < 16; k++)
        m = l[k] > m ? l[k] : m;
    return m;
}

/* The block's power-of-two scale: *s = 2^-exp, exp = E - 126 for a's biased
 * exponent E (so a * 2^-exp is in [0.5, 1) for a normal a), clamped to
 * [-126, 126] so that 2^-exp stays a normal float (a subnormal a then
 * scales to below 0.5, a >= 2^127 to below 4: harmless). *inv = 1 / (a s),
 * 0 for a == 0. Bit operations, not frexpf: this runs once per block.
 * Shared with the SIMD file. */
void airllm_quant_block_scale(float a, float *s, float *inv, int32_t *exp);
void airllm_quant_block_scale(float a, float *s, float *inv, int32_t *exp)
{
    uint32_t bits;
    memcpy(&bits, &a, 4);
    int32_t e = (int32_t)((bits >> 23) & 0xFF) - 126;
    e = e < -126 ? -126 : e > 126 ? 126 : e;
    if (!(a > 0) || !isfinite(a))
        e = 0;
    uint32_t sb = (uint32_t)(127 - e) << 23;
    memcpy(s, &sb, 4);
    *exp = e;
    *inv = a > 0 && isfinite(a) ? 1.0f / (a * *s) : 0.0f;
}

void airllm_quant_block_stats_one(const float *x, const float *y, size_t m, float absmax,
                                  airllm_qblock_stats *o);
void airllm_quant_block_stats_one(const float *x, const float *y, size_t m, float absmax,
                                  airllm_qblock_stats *o)
{
    float e2[16] = {0}, x2[16] = {0}, ev[16] = {0}, v2[16] = {0}, me[16] = {0}, mv[16] = {0};
    float sc, inv;
    int32_t exp;
    airllm_quant_block_scale(absmax, &sc, &inv, &exp);
    for (size_t i = 0; i < m; i++) {
        int l = (int)(i % 16);
        float xs = x[i] * sc, ys = y[i] * sc;
        float e = xs - ys;
        float v = ys * inv;
        float ee = e * e, xx = xs * xs, evv = e * v, vv = v * v;
        e2[l] = e2[l] + ee;
        x2[l] = x2[l] + xx;
        ev[l] = ev[l] + evv;
        v2[l] = v2[l] + vv;
        float ae = fabsf(e), av = fabsf(v);
        me[l] = ae > me[l] ? ae : me[l];
        mv[l] = av > mv[l] ? av : mv[l];
    }
    o->e2 = lanes_sum(e2);
    o->x2 = lanes_sum(x2);
    o->ev = lanes_sum(ev);
    o->v2 = lanes_sum(v2);
    o->max_e = lanes_max(me);
    o->max_v = lanes_max(mv);
    o->exp = exp;
}

int airllm_quant_block_stats_ref(const float *x, const float *y, size_t n, size_t block,
                                 const float *absmax, airllm_qblock_stats *out, airllm_err *err)
{
    if (airllm_quant_check_block(block, err))
        return -1;
    if (n && (!x || !y || !absmax || !out))
        return airllm_errf(err, "NULL buffer for %zu elements", n);
    for (size_t b = 0, base = 0; base < n; b++, base += block)
        airllm_quant_block_stats_one(x + base, y + base, n - base < block ? n - base : block,
                                     absmax[b], &out[b]);
    return 0;
}
