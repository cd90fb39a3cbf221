/* Unit tests for block-wise quantization (lib/airllm_quant.c and
 * lib/airllm_quant_simd.c): the rounding rule and error bounds of the scalar
 * reference, zero and short blocks, every block size, argument checks,
 * bit-exactness of every SIMD implementation this CPU has against the
 * reference, double quantization, the bf16/f16 converters, and conformance
 * with outputs of bitsandbytes itself (tests/data/bnb_quant_fixture.json,
 * made by scripts/make_bnb_fixture.py).
 *
 *   test_quant [FIXTURE.json]
 * Without an argument the fixture is AIRLLM_QUANT_FIXTURE (a -D define with
 * the source-tree path), else tests/data/bnb_quant_fixture.json. Also prints
 * (does not assert) a throughput figure for each implementation. */
#include "airllm_quant.h"

#include <cjson/cJSON.h>
#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "test_util.h"

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#endif

static uint64_t rng = 0x2545F4914F6CDD1Dull;
static uint32_t rnd(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (uint32_t)(rng >> 16);
}
static double urand(void) /* [0, 1) */
{
    return rnd() / 4294967296.0;
}
static float gauss(void)
{
    double u = urand() + 1e-12, v = urand();
    return (float)(sqrt(-2.0 * log(u)) * cos(6.283185307179586 * v));
}

static uint32_t bits_of(float f)
{
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    return u;
}
static float float_of(uint32_t u)
{
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

static const airllm_quant_type all_types[] = {AIRLLM_QUANT_NF4, AIRLLM_QUANT_FP4,
                                              AIRLLM_QUANT_INT8};
#define NTYPES 3

static const float *codebook(airllm_quant_type t)
{
    return t == AIRLLM_QUANT_NF4 ? airllm_nf4_code : airllm_fp4_code;
}

static unsigned nib(const uint8_t *codes, size_t i)
{
    return (i & 1) == 0 ? codes[i / 2] >> 4 : codes[i / 2] & 0x0F;
}

/* Every implementation this build and CPU can run; [0] is scalar. */
static airllm_quant_impl impls[4];
static int nimpls;

static void find_impls(void)
{
    static const airllm_quant_impl all[] = {AIRLLM_QUANT_IMPL_SCALAR, AIRLLM_QUANT_IMPL_AVX2,
                                            AIRLLM_QUANT_IMPL_AVX512, AIRLLM_QUANT_IMPL_NEON};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
        if (airllm_quant_impl_available(all[i]))
            impls[nimpls++] = all[i];
}

static int force(airllm_quant_impl impl)
{
    airllm_err err;
    int rc = airllm_quant_set_impl(impl, &err);
    CHECK(rc == 0, "set_impl %s: %s", airllm_quant_impl_name(impl), err.msg);
    return rc;
}

/* A quantized tensor with its buffers. */
typedef struct {
    uint8_t *codes;
    float *absmax;
    size_t ncodes, nabs;
} qbuf;

static qbuf qbuf_new(airllm_quant_type t, size_t n, size_t block)
{
    qbuf q;
    q.ncodes = airllm_quant_code_bytes(t, n);
    q.nabs = airllm_quant_nblocks(n, block);
    q.codes = malloc(q.ncodes + 1);
    q.absmax = malloc((q.nabs + 1) * sizeof(float));
    return q;
}
static void qbuf_free(qbuf *q)
{
    free(q->codes);
    free(q->absmax);
}

/* ------------------------------------------------------------------ */

static void test_codebooks(void)
{
    /* NF4 ascending with exact -1, 0, 1; FP4 = bit-pattern magnitudes / 12 */
    int ok = 1;
    for (int i = 0; i < 15; i++)
        ok &= airllm_nf4_code[i] < airllm_nf4_code[i + 1];
    CHECK(ok && airllm_nf4_code[0] == -1.0f && airllm_nf4_code[7] == 0.0f &&
              airllm_nf4_code[15] == 1.0f,
          "nf4 codebook shape");
    CHECK(bits_of(airllm_nf4_code[1]) == 0xBF3239B1u && bits_of(airllm_nf4_code[8]) == 0x3DA2FAFFu,
          "nf4 values %08x %08x", bits_of(airllm_nf4_code[1]), bits_of(airllm_nf4_code[8]));
    static const float mag[8] = {0.0f, 0.0625f, 8.0f, 12.0f, 4.0f, 6.0f, 2.0f, 3.0f};
    ok = 1;
    for (int i = 0; i < 16; i++) {
        volatile float m = mag[i & 7];
        float v = m / 12.0f;
        ok &= bits_of(airllm_fp4_code[i]) == bits_of(i >= 8 && v != 0.0f ? -v : v);
    }
    CHECK(ok, "fp4 codebook = magnitude / 12");

    uint8_t sc[16];
    float mid[15];
    for (int t = 0; t < 2; t++) {
        airllm_quant_type ty = t ? AIRLLM_QUANT_FP4 : AIRLLM_QUANT_NF4;
        CHECK(airllm_quant4_tables(ty, sc, mid) == 0, "tables");
        ok = 1;
        for (int k = 0; k < 15; k++) {
            ok &= codebook(ty)[sc[k]] <= codebook(ty)[sc[k + 1]];
            ok &= k == 0 || mid[k - 1] <= mid[k];
        }
        CHECK(ok, "%s sorted order and midpoints ascend", airllm_quant_type_name(ty));
    }
    CHECK(airllm_quant4_tables(AIRLLM_QUANT_INT8, sc, mid) == -1, "no 4-bit tables for int8");

    float map[256];
    airllm_quant_dynamic_map(map);
    ok = 1;
    for (int i = 0; i < 255; i++)
        ok &= map[i] < map[i + 1];
    CHECK(ok && map[127] == 0.0f && map[255] == 1.0f, "dynamic map ascends, map[127] 0, map[255] 1");
    CHECK(bits_of(map[0]) == 0xBF7E3333u && bits_of(map[128]) == 0x3513A3B7u,
          "dynamic map ends %.9g %.9g", map[0], map[128]);
}

/* The scaled value the reference rounds (docs/quantization.md). */
static float scaled(float x, float a, int full)
{
    float d = fmaxf(a, 1e-38f);
    if (full) {
        float r = 1.0f / d;
        return x * r;
    }
    return x / d;
}

/* Half the largest gap between adjacent codebook values: the 4-bit error
 * bound in units of absmax (NF4: (0.6962 - 1) / 2 at the bottom, 0.1519;
 * FP4: (1 - 2/3) / 2, 0.1667). */
static double half_max_gap(airllm_quant_type t)
{
    uint8_t sc[16];
    float mid[15];
    airllm_quant4_tables(t, sc, mid);
    double g = 0;
    for (int k = 0; k < 15; k++)
        g = fmax(g, (double)codebook(t)[sc[k + 1]] - codebook(t)[sc[k]]);
    return g / 2;
}

/* Nearest-code property and error bounds of the reference, all block sizes. */
static void test_reference_rounding(void)
{
    CHECK(fabs(half_max_gap(AIRLLM_QUANT_NF4) - 0.1519036) < 1e-6 &&
              fabs(half_max_gap(AIRLLM_QUANT_FP4) - 1.0 / 6) < 1e-6,
          "largest codebook gaps");
    for (size_t block = 32; block <= 4096; block *= 2) {
        size_t n = 3 * block + 17; /* short last block, odd n */
        float *x = malloc(n * sizeof *x), *y = malloc(n * sizeof *y);
        for (size_t i = 0; i < n; i++)
            x[i] = gauss() * (float)pow(10.0, (double)(i / block) - 1.0);
        for (int ti = 0; ti < NTYPES; ti++) {
            airllm_quant_type t = all_types[ti];
            qbuf q = qbuf_new(t, n, block);
            airllm_err err;
            int rc = airllm_quantize_ref(t, x, n, block, q.codes, q.ncodes, q.absmax, q.nabs, &err);
            CHECK(rc == 0, "quantize_ref: %s", err.msg);
            rc = airllm_dequantize_ref(t, q.codes, q.ncodes, q.absmax, q.nabs, n, block, y, &err);
            CHECK(rc == 0, "dequantize_ref: %s", err.msg);
            int near_ok = 1, bound_ok = 1, abs_ok = 1;
            for (size_t b = 0; b < q.nabs; b++) {
                float a = 0.0f;
                for (size_t i = b * block; i < n && i < (b + 1) * block; i++)
                    a = fmaxf(a, fabsf(x[i]));
                abs_ok &= q.absmax[b] == a;
            }
            for (size_t i = 0; i < n; i++) {
                size_t b = i / block;
                float a = q.absmax[b];
                int full = (b + 1) * block <= n;
                if (t == AIRLLM_QUANT_INT8) {
                    double tol = a / 254.0 * (1.0 + 1e-5);
                    bound_ok &= fabs((double)x[i] - y[i]) <= tol;
                    double s = (double)x[i] * 127.0 / a;
                    near_ok &= fabs(s - (int8_t)q.codes[i]) <= 0.5 + 1e-4;
                    continue;
                }
                const float *cb = codebook(t);
                unsigned c = nib(q.codes, i);
                double s = scaled(x[i], a, full);
                double dc = fabs(s - cb[c]);
                for (int j = 0; j < 16; j++) {
                    double dj = fabs(s - cb[j]);
                    /* strictly nearest, or a tie won by the lower value */
                    if (dj < dc || (dj == dc && cb[j] < cb[c]))
                        near_ok = 0;
                }
                bound_ok &= fabs((double)x[i] - y[i]) <= (half_max_gap(t) + 1e-6) * a;
            }
            CHECK(abs_ok, "%s block %zu: absmax is max |x|", airllm_quant_type_name(t), block);
            CHECK(near_ok, "%s block %zu: every code is the nearest", airllm_quant_type_name(t),
                  block);
            CHECK(bound_ok, "%s block %zu: error within bound", airllm_quant_type_name(t), block);
            airllm_quant_stats st;
            CHECK(airllm_quant_error_stats(x, y, n, &st, &err) == 0, "stats: %s", err.msg);
            double lim = t == AIRLLM_QUANT_INT8 ? 0.02 : 0.2;
            CHECK(st.rel_fro > 0 && st.rel_fro < lim && st.max_abs >= st.rmse,
                  "%s block %zu: rel_fro %g", airllm_quant_type_name(t), block, st.rel_fro);
            if (t == AIRLLM_QUANT_NF4 && (n & 1))
                CHECK((q.codes[n / 2] & 0x0F) == 7, "odd n pads with the code of 0.0");
            qbuf_free(&q);
        }
        free(x);
        free(y);
    }
}

/* Ties: with absmax a power of two the scaled value is exact, so inputs on
 * a midpoint are true ties and must take the lower code. */
static void test_ties(void)
{
    for (int ti = 0; ti < 2; ti++) {
        airllm_quant_type t = all_types[ti];
        uint8_t sc[16];
        float mid[15];
        airllm_quant4_tables(t, sc, mid);
        float x[32];
        x[0] = 4.0f; /* absmax 4: scale 1/4 exact */
        for (int k = 0; k < 15; k++)
            x[1 + k] = mid[k] * 4.0f;
        for (int k = 16; k < 32; k++)
            x[k] = 0.0f;
        uint8_t codes[16];
        float a;
        airllm_err err;
        CHECK(airllm_quantize_ref(t, x, 32, 32, codes, 16, &a, 1, &err) == 0, "%s", err.msg);
        int ok = 1;
        for (int k = 0; k < 15; k++)
            ok &= nib(codes, 1 + (size_t)k) == sc[k];
        CHECK(ok, "%s: a value on midpoint k gets sorted code k (the lower)",
              airllm_quant_type_name(t));
    }
    /* int8: absmax 127 makes the scale exactly 1, so k + 0.5 ties to even */
    float x[32];
    for (int k = 0; k < 32; k++)
        x[k] = (float)(k - 16) + 0.5f;
    x[0] = 127.0f;
    uint8_t codes[32];
    float a;
    airllm_err err;
    CHECK(airllm_quantize_ref(AIRLLM_QUANT_INT8, x, 32, 32, codes, 32, &a, 1, &err) == 0, "%s",
          err.msg);
    int ok = 1;
    for (int k = 1; k < 32; k++)
        ok &= (int8_t)codes[k] == (int)rint(x[k]);
    CHECK(ok && (int8_t)codes[0] == 127 && (int8_t)codes[16] == 0 && (int8_t)codes[19] == 4,
          "int8 ties round half to even");
}

static void test_zero_and_short_blocks(void)
{
    float x[200];
    memset(x, 0, sizeof x);
    x[3] = -0.0f;
    for (int ti = 0; ti < NTYPES; ti++) {
        airllm_quant_type t = all_types[ti];
        for (int ii = 0; ii < nimpls; ii++) {
            if (force(impls[ii]))
                continue;
            /* 200 = 3 full blocks of 64 + a short block of 8, all zero */
            qbuf q = qbuf_new(t, 200, 64);
            float y[200];
            airllm_err err;
            CHECK(airllm_quantize(t, x, 200, 64, q.codes, q.ncodes, q.absmax, q.nabs, &err) == 0,
                  "%s", err.msg);
            uint8_t want = t == AIRLLM_QUANT_NF4 ? 0x77 : 0x00;
            int ok = 1;
            for (size_t i = 0; i < q.ncodes; i++)
                ok &= q.codes[i] == want;
            CHECK(ok, "%s %s: zero blocks get the code of 0.0", airllm_quant_type_name(t),
                  airllm_quant_impl_name(impls[ii]));
            CHECK(q.absmax[0] == 0.0f && q.absmax[2] == 0.0f && !signbit(q.absmax[0]),
                  "zero full block absmax +0");
            /* bitsandbytes floors the short block's absmax for 4-bit */
            float want_short = t == AIRLLM_QUANT_INT8 ? 0.0f : 1e-38f;
            CHECK(bits_of(q.absmax[3]) == bits_of(want_short), "%s short zero block absmax %g",
                  airllm_quant_type_name(t), q.absmax[3]);
            CHECK(airllm_dequantize(t, q.codes, q.ncodes, q.absmax, q.nabs, 200, 64, y, &err) == 0,
                  "%s", err.msg);
            ok = 1;
            for (int i = 0; i < 200; i++)
                ok &= y[i] == 0.0f;
            CHECK(ok, "zero blocks decode to 0");
            qbuf_free(&q);
        }
    }
    force(AIRLLM_QUANT_IMPL_AUTO);

    /* short last block: absmax over the real elements, padding code of 0.0 */
    float z[65];
    for (int i = 0; i < 64; i++)
        z[i] = 1.0f;
    z[64] = -0.3f;
    uint8_t c[33];
    float a[2];
    airllm_err err;
    CHECK(airllm_quantize_ref(AIRLLM_QUANT_NF4, z, 65, 64, c, 33, a, 2, &err) == 0, "%s", err.msg);
    CHECK(a[0] == 1.0f && a[1] == 0.3f, "short block absmax %g", a[1]);
    CHECK(c[32] == 0x07 && c[0] == 0xFF, "short block: -1 in high nibble, pad 7 low: %02x",
          c[32]);
    CHECK(airllm_quantize_ref(AIRLLM_QUANT_FP4, z, 65, 64, c, 33, a, 2, &err) == 0, "%s", err.msg);
    CHECK(c[32] == 0xB0 && c[0] == 0x33, "fp4 short block: -1 is code 11, pad 0: %02x", c[32]);

    /* FP4's two zero codes: tiny positive -> 8, tiny negative and 0 -> 0 */
    float f[32] = {1.0f, 0.001f, -0.001f, 0.0f, -0.0f, 0.003f, -0.003f};
    uint8_t fc[16];
    CHECK(airllm_quantize_ref(AIRLLM_QUANT_FP4, f, 32, 32, fc, 16, a, 1, &err) == 0, "%s", err.msg);
    CHECK(fc[0] == 0x38 && fc[1] == 0x00 && fc[2] == 0x01 && fc[3] == 0x90,
          "fp4 zero codes %02x %02x %02x %02x", fc[0], fc[1], fc[2], fc[3]);
}

static void test_arguments(void)
{
    airllm_err err;
    for (size_t b = 32; b <= 4096; b *= 2)
        CHECK(airllm_quant_check_block(b, &err) == 0, "block %zu valid", b);
    static const size_t bad[] = {0, 1, 16, 31, 48, 96, 8192, 5000};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        err.msg[0] = 0;
        CHECK(airllm_quant_check_block(bad[i], &err) == -1 && err.msg[0], "block %zu invalid",
              bad[i]);
    }
    CHECK(airllm_quant_nblocks(0, 64) == 0 && airllm_quant_nblocks(64, 64) == 1 &&
              airllm_quant_nblocks(65, 64) == 2,
          "nblocks");
    CHECK(airllm_quant_code_bytes(AIRLLM_QUANT_NF4, 5) == 3 &&
              airllm_quant_code_bytes(AIRLLM_QUANT_INT8, 5) == 5 &&
              airllm_quant_code_bytes((airllm_quant_type)9, 5) == 0,
          "code bytes");
    airllm_quant_type t;
    CHECK(airllm_quant_type_from_name("fp4", &t) == 0 && t == AIRLLM_QUANT_FP4 &&
              airllm_quant_type_from_name("nf5", &t) == -1,
          "type names");

    float x[64] = {1.0f};
    uint8_t c[64];
    float a[2];
    for (int ii = 0; ii < nimpls; ii++) {
        if (force(impls[ii]))
            continue;
        const char *in = airllm_quant_impl_name(impls[ii]);
        CHECK(airllm_quantize(AIRLLM_QUANT_NF4, x, 64, 64, c, 31, a, 1, &err) == -1,
              "%s: small codes cap", in);
        CHECK(airllm_quantize(AIRLLM_QUANT_NF4, x, 64, 32, c, 32, a, 1, &err) == -1,
              "%s: small absmax cap", in);
        CHECK(airllm_quantize(AIRLLM_QUANT_NF4, x, 64, 48, c, 32, a, 2, &err) == -1,
              "%s: bad block", in);
        CHECK(airllm_quantize((airllm_quant_type)0, x, 64, 64, c, 64, a, 1, &err) == -1,
              "%s: bad type", in);
        CHECK(airllm_quantize(AIRLLM_QUANT_INT8, NULL, 64, 64, c, 64, a, 1, &err) == -1,
              "%s: NULL input", in);
        CHECK(airllm_quantize(AIRLLM_QUANT_INT8, NULL, 0, 64, NULL, 0, NULL, 0, &err) == 0,
              "%s: empty tensor", in);
        CHECK(airllm_dequantize(AIRLLM_QUANT_FP4, c, 31, a, 1, 64, 64, x, &err) == -1,
              "%s: dequantize short codes", in);
        for (int ti = 0; ti < NTYPES; ti++) {
            float bad_vals[3] = {INFINITY, -INFINITY, NAN};
            for (int k = 0; k < 3; k++) {
                float v[128];
                for (int i = 0; i < 128; i++)
                    v[i] = (float)i;
                v[70] = bad_vals[k];
                uint8_t cc[128];
                float aa[2];
                err.msg[0] = 0;
                int rc = airllm_quantize(all_types[ti], v, 128, 64, cc, 128, aa, 2, &err);
                CHECK(rc == -1 && strstr(err.msg, "not finite"), "%s %s: rejects %g (%s)", in,
                      airllm_quant_type_name(all_types[ti]), bad_vals[k], err.msg);
            }
        }
    }
    force(AIRLLM_QUANT_IMPL_AUTO);
}

/* ------------------------------------------------------------------ */
/* SIMD against the reference                                          */
/* ------------------------------------------------------------------ */

enum { D_GAUSS, D_TIES, D_SUBNORMAL, D_ZEROS, D_HUGE, D_BITS, D_TINY, D_COUNT };

static void fill(float *x, size_t n, size_t block, int kind)
{
    uint8_t sc[16];
    float mid4[2][15];
    airllm_quant4_tables(AIRLLM_QUANT_NF4, sc, mid4[0]);
    airllm_quant4_tables(AIRLLM_QUANT_FP4, sc, mid4[1]);
    for (size_t i = 0; i < n; i++) {
        uint32_t u = rnd();
        switch (kind) {
        case D_GAUSS:
            x[i] = gauss() * (float)pow(10.0, (double)((i / block) % 9) - 4.0);
            break;
        case D_TIES: {
            /* a power-of-two absmax per block, every other value on a 4-bit
             * midpoint or an int8 half step */
            float p = ldexpf(1.0f, (int)((i / block) % 11) - 5);
            if (i % block == 0)
                x[i] = (u & 1) ? p : -p;
            else if (u % 3 == 0)
                x[i] = mid4[u & 1][(u >> 1) % 15] * p;
            else if (u % 3 == 1)
                x[i] = ((float)((int)(u >> 8) % 254 - 127) + 0.5f) / 127.0f * p;
            else
                x[i] = gauss() * p / 4;
            if (fabsf(x[i]) > p)
                x[i] = p;
            break;
        }
        case D_SUBNORMAL: /* subnormals, some blocks with a normal max */
            x[i] = float_of((u & 0x807FFFFFu) | 0u);
            if ((i / block) % 2 == 0 && u % 17 == 0)
                x[i] = gauss() * 1e-30f;
            break;
        case D_ZEROS:
            x[i] = (u & 1) ? -0.0f : 0.0f;
            if ((i / block) % 3 == 1 && u % 5 == 0)
                x[i] = gauss();
            break;
        case D_HUGE:
            x[i] = gauss() * 1e37f;
            if (u % 97 == 0)
                x[i] = (u & 2) ? FLT_MAX : -FLT_MAX;
            break;
        case D_BITS: /* any finite bit pattern */
            x[i] = float_of((u & 0x7F800000u) == 0x7F800000u ? u & 0xBFFFFFFFu : u);
            break;
        case D_TINY: /* blocks with absmax below 2^-96 (int8's slow path) */
            x[i] = gauss() * ((i / block) % 2 ? 1e-30f : 1e-3f);
            break;
        }
    }
}

static void test_simd_exact(void)
{
    static const size_t sizes[] = {0,   1,   2,   31,   32,   33,   63,   64,   65,    127,
                                   128, 129, 255, 1000, 4095, 4096, 4097, 12345, 65543};
    float *x = malloc(65543 * sizeof *x), *y0 = malloc(65543 * sizeof *x),
          *y1 = malloc(65543 * sizeof *x);
    for (int ii = 1; ii < nimpls; ii++) {
        const char *in = airllm_quant_impl_name(impls[ii]);
        long cases = 0, bad = 0;
        for (int ti = 0; ti < NTYPES; ti++) {
            airllm_quant_type t = all_types[ti];
            for (size_t block = 32; block <= 4096; block *= 2) {
                for (size_t si = 0; si < sizeof sizes / sizeof sizes[0]; si++) {
                    size_t n = sizes[si];
                    if (n > 20000 && block != 64 && block != 4096)
                        continue;
                    for (int kind = 0; kind < D_COUNT; kind++) {
                        fill(x, n, block, kind);
                        qbuf r = qbuf_new(t, n, block), s = qbuf_new(t, n, block);
                        airllm_err err;
                        int rc0 = airllm_quantize_ref(t, x, n, block, r.codes, r.ncodes, r.absmax,
                                                      r.nabs, &err);
                        force(impls[ii]);
                        int rc1 = airllm_quantize(t, x, n, block, s.codes, s.ncodes, s.absmax,
                                                  s.nabs, &err);
                        int same = rc0 == 0 && rc1 == 0 &&
                                   (n == 0 || (memcmp(r.codes, s.codes, r.ncodes) == 0 &&
                                               memcmp(r.absmax, s.absmax, r.nabs * 4) == 0));
                        if (same && n) {
                            airllm_dequantize(t, s.codes, s.ncodes, s.absmax, s.nabs, n, block, y1,
                                              &err);
                            force(AIRLLM_QUANT_IMPL_SCALAR);
                            airllm_dequantize(t, r.codes, r.ncodes, r.absmax, r.nabs, n, block, y0,
                                              &err);
                            same = memcmp(y0, y1, n * sizeof(float)) == 0;
                        }
                        force(AIRLLM_QUANT_IMPL_AUTO);
                        cases++;
                        if (!same && bad++ < 5)
                            CHECK(0, "%s %s n %zu block %zu data %d differs from scalar", in,
                                  airllm_quant_type_name(t), n, block, kind);
                        qbuf_free(&r);
                        qbuf_free(&s);
                    }
                }
            }
        }
        CHECK(bad == 0, "%s: %ld of %ld cases differ from scalar", in, bad, cases);
        printf("%s: %ld quantize+dequantize cases bit-exact with scalar\n", in, cases - bad);
    }
    free(x);
    free(y0);
    free(y1);
}

/* ------------------------------------------------------------------ */
/* Double quantization                                                 */
/* ------------------------------------------------------------------ */

static void test_double_quant(void)
{
    float map[256];
    airllm_quant_dynamic_map(map);
    static const size_t sizes[] = {1, 2, 255, 256, 257, 1000, 4096};
    for (int mode = 0; mode < 2; mode++) {
        for (size_t si = 0; si < sizeof sizes / sizeof sizes[0]; si++) {
            size_t n = sizes[si], nb = airllm_quant_nblocks(n, 256);
            float *am = malloc(n * 4), *back = malloc(n * 4), *a2 = malloc(nb * 4);
            uint8_t *q = malloc(n);
            for (size_t i = 0; i < n; i++)
                am[i] = (float)(fabs(gauss()) * pow(10.0, -3.0 * urand()));
            float off;
            airllm_err err;
            int rc = airllm_dq_compress((airllm_dq_rounding)mode, am, n, NULL, q, n, a2, nb, &off,
                                        &err);
            CHECK(rc == 0, "dq_compress: %s", err.msg);
            double mean = 0;
            for (size_t i = 0; i < n; i++)
                mean += am[i];
            mean /= (double)n;
            CHECK(off == (float)mean, "offset is the mean");
            rc = airllm_dq_decompress(q, n, a2, nb, off, back, &err);
            CHECK(rc == 0, "dq_decompress: %s", err.msg);
            int ok = 1;
            for (size_t i = 0; i < n; i++) {
                /* half the largest map gap (0.00703), plus the LUT bin (1.5e-5) */
                double tol = 0.0071 * a2[i / 256] + 4 * FLT_EPSILON * (am[i] + fabs(off));
                ok &= fabs((double)back[i] - am[i]) <= tol;
            }
            CHECK(ok, "dq mode %d n %zu round trip within bound", mode, n);
            free(am);
            free(back);
            free(a2);
            free(q);
        }
    }
    /* equal absmax values: every y is 0, a zero 256-block */
    float am[300];
    for (int i = 0; i < 300; i++)
        am[i] = 0.5f;
    uint8_t q[300];
    float a2[2], off, back[300];
    airllm_err err;
    for (int mode = 0; mode < 2; mode++) {
        CHECK(airllm_dq_compress((airllm_dq_rounding)mode, am, 300, NULL, q, 300, a2, 2, &off,
                                 &err) == 0,
              "%s", err.msg);
        CHECK(q[0] == (mode == AIRLLM_DQ_NEAREST ? 127 : 0) && a2[0] == 0.0f,
              "zero dq block: code %d", q[0]);
        CHECK(airllm_dq_decompress(q, 300, a2, 2, off, back, &err) == 0 && back[0] == 0.5f &&
                  back[299] == 0.5f,
              "zero dq block decodes to the offset");
    }
    CHECK(airllm_dq_compress((airllm_dq_rounding)7, am, 300, NULL, q, 300, a2, 2, &off, &err) ==
              -1,
          "bad mode");
    CHECK(airllm_dq_compress(AIRLLM_DQ_NEAREST, am, 300, NULL, q, 300, a2, 1, &off, &err) == -1,
          "small absmax2 cap");
    CHECK(airllm_dq_decompress(q, 300, a2, 1, off, back, &err) == -1, "decompress small absmax2");
}

/* ------------------------------------------------------------------ */
/* Converters and statistics                                           */
/* ------------------------------------------------------------------ */

#if defined(__x86_64__) || defined(__i386__)
__attribute__((target("f16c"))) static float f16c_convert(uint16_t h)
{
    return _cvtsh_ss(h);
}
#endif

static void test_converters(void)
{
    static const struct {
        uint16_t h;
        uint32_t f;
    } f16[] = {
        {0x0000, 0x00000000}, {0x8000, 0x80000000}, {0x3C00, 0x3F800000}, {0xC000, 0xC0000000},
        {0x7BFF, 0x477FE000}, /* 65504 */
        {0x0400, 0x38800000}, /* 2^-14, smallest normal */
        {0x0001, 0x33800000}, /* 2^-24, smallest subnormal */
        {0x03FF, 0x387FC000}, /* largest subnormal */
        {0x8001, 0xB3800000}, {0x3555, 0x3EAAA000}, {0x7C00, 0x7F800000}, {0xFC00, 0xFF800000},
        {0x7E00, 0x7FC00000}, /* quiet NaN */
        {0x7C01, 0x7F802000}, /* signalling NaN keeps its payload */
        {0xFE01, 0xFFC02000},
    };
    int ok = 1;
    for (size_t i = 0; i < sizeof f16 / sizeof f16[0]; i++)
        ok &= bits_of(airllm_f16_to_f32(f16[i].h)) == f16[i].f;
    CHECK(ok, "f16 known values");
    /* every finite half against sign * m * 2^e */
    ok = 1;
    for (uint32_t h = 0; h < 65536; h++) {
        unsigned e = (h >> 10) & 31, m = h & 1023;
        if (e == 31)
            continue;
        double v = e ? ldexp(1024 + m, (int)e - 25) : ldexp(m, -24);
        if (h & 0x8000)
            v = -v;
        ok &= bits_of(airllm_f16_to_f32((uint16_t)h)) == bits_of((float)v);
    }
    CHECK(ok, "f16: all 63488 finite values exact");
#if defined(__x86_64__) || defined(__i386__)
    /* every AVX2 CPU has F16C (and clang's builtin does not know "f16c") */
    if (__builtin_cpu_supports("avx2")) {
        ok = 1;
        for (uint32_t h = 0; h < 65536; h++) {
            if ((h & 0x7C00) == 0x7C00 && (h & 0x3FF) && !(h & 0x200))
                continue; /* F16C quietens signalling NaNs; we keep the bits */
            ok &= bits_of(airllm_f16_to_f32((uint16_t)h)) == bits_of(f16c_convert((uint16_t)h));
        }
        CHECK(ok, "f16 agrees with the F16C instruction");
    }
#endif
    CHECK(bits_of(airllm_bf16_to_f32(0x3F80)) == 0x3F800000 &&
              bits_of(airllm_bf16_to_f32(0xC040)) == 0xC0400000 &&
              bits_of(airllm_bf16_to_f32(0x7F80)) == 0x7F800000 &&
              bits_of(airllm_bf16_to_f32(0x0001)) == 0x00010000 &&
              bits_of(airllm_bf16_to_f32(0x8000)) == 0x80000000 &&
              bits_of(airllm_bf16_to_f32(0xFFC1)) == 0xFFC10000,
          "bf16 known values");
    uint8_t raw[6] = {0x00, 0x3C, 0x01, 0x80, 0xFF, 0x7B}; /* little-endian */
    float out[3];
    airllm_f16_to_f32_array(raw, 3, out);
    CHECK(out[0] == 1.0f && bits_of(out[1]) == 0xB3800000 && out[2] == 65504.0f, "f16 array");
    uint8_t rawb[4] = {0x80, 0x3F, 0x49, 0x40};
    airllm_bf16_to_f32_array(rawb, 2, out);
    CHECK(out[0] == 1.0f && out[1] == 3.140625f, "bf16 array");
}

static void test_stats(void)
{
    float x[4] = {3, 4, 0, 0}, y[4] = {3, 4, 0, 2};
    airllm_quant_stats st;
    airllm_err err;
    CHECK(airllm_quant_error_stats(x, y, 4, &st, &err) == 0, "%s", err.msg);
    CHECK(fabs(st.rmse - 1.0) < 1e-12 && st.max_abs == 2.0 && fabs(st.rel_fro - 0.4) < 1e-12,
          "stats rmse %g max %g rel %g", st.rmse, st.max_abs, st.rel_fro);
    float z[2] = {0, 0}, w[2] = {0, 1};
    CHECK(airllm_quant_error_stats(z, z, 2, &st, &err) == 0 && st.rel_fro == 0.0, "0 vs 0");
    CHECK(airllm_quant_error_stats(z, w, 2, &st, &err) == 0 && isinf(st.rel_fro), "0 vs 1");
    CHECK(airllm_quant_error_stats(x, y, 0, &st, &err) == -1, "n 0");
    CHECK(airllm_quant_error_stats(NULL, y, 4, &st, &err) == -1, "NULL");
    w[1] = NAN;
    CHECK(airllm_quant_error_stats(z, w, 2, &st, &err) == -1, "NaN");
}

/* Per-block error sums: every implementation bit-exact with the reference,
 * and the sums agree with the double-precision statistics. */
static void test_block_stats(void)
{
    enum { N = 20000 + 37 };
    float *x = malloc(N * sizeof *x), *y = malloc(N * sizeof *y), absmax[N / 32 + 1];
    uint8_t *codes = malloc(N);
    airllm_qblock_stats *r = malloc((N / 32 + 1) * sizeof *r), *o = malloc((N / 32 + 1) * sizeof *o);
    airllm_err err;
    long bad = 0, cases = 0;
    for (int ti = 0; ti < NTYPES; ti++)
        for (size_t block = 32; block <= 4096; block *= 4) {
            airllm_quant_type t = all_types[ti];
            fill(x, N, block, ti % D_COUNT);
            size_t nb = airllm_quant_nblocks(N, block);
            airllm_quantize_ref(t, x, N, block, codes, N, absmax, nb, &err);
            airllm_dequantize_ref(t, codes, N, absmax, nb, N, block, y, &err);
            CHECK(airllm_quant_block_stats_ref(x, y, N, block, absmax, r, &err) == 0, "%s",
                  err.msg);
            double e2 = 0, x2 = 0, me = 0;
            for (size_t b = 0; b < nb; b++) {
                e2 += ldexp(r[b].e2, 2 * r[b].exp);
                x2 += ldexp(r[b].x2, 2 * r[b].exp);
                double mb = ldexp(r[b].max_e, r[b].exp);
                me = mb > me ? mb : me;
            }
            airllm_quant_stats st;
            airllm_quant_error_stats(x, y, N, &st, &err);
            CHECK(fabs(sqrt(e2 / N) - st.rmse) <= 1e-4 * st.rmse + 1e-30 &&
                      me == st.max_abs &&
                      fabs(sqrt(e2 / x2) - st.rel_fro) <= 1e-4 * st.rel_fro + 1e-30,
                  "%s block %zu: block sums disagree with the statistics",
                  airllm_quant_type_name(t), block);
            for (int ii = 1; ii < nimpls; ii++) {
                force(impls[ii]);
                memset(o, 0xA5, nb * sizeof *o);
                airllm_quant_block_stats(x, y, N, block, absmax, o, &err);
                force(AIRLLM_QUANT_IMPL_AUTO);
                cases++;
                if (memcmp(r, o, nb * sizeof *o) != 0 && bad++ < 3)
                    CHECK(0, "%s: block stats differ from the reference (%s block %zu)",
                          airllm_quant_impl_name(impls[ii]), airllm_quant_type_name(t), block);
            }
        }
    CHECK(bad == 0, "%ld of %ld block-stats cases differ", bad, cases);
    printf("block stats: %ld cases bit-exact with the reference\n", cases - bad);
    free(x);
    free(y);
    free(codes);
    free(r);
    free(o);
}

static void test_dispatch(void)
{
    airllm_err err;
    airllm_quant_impl impl;
    force(AIRLLM_QUANT_IMPL_AUTO);
    setenv("AIRLLM_QUANT_IMPL", "scalar", 1);
    CHECK(airllm_quant_impl_active(&impl, &err) == 0 && impl == AIRLLM_QUANT_IMPL_SCALAR,
          "env scalar");
    setenv("AIRLLM_QUANT_IMPL", "bogus", 1);
    CHECK(airllm_quant_impl_active(&impl, &err) == -1 && strstr(err.msg, "bogus"), "env bogus");
    float x[64] = {1};
    uint8_t c[32];
    float a;
    CHECK(airllm_quantize(AIRLLM_QUANT_NF4, x, 64, 64, c, 32, &a, 1, &err) == -1,
          "quantize refuses a bad AIRLLM_QUANT_IMPL");
    /* an explicit choice overrides the environment */
    CHECK(airllm_quant_set_impl(AIRLLM_QUANT_IMPL_SCALAR, &err) == 0 &&
              airllm_quant_impl_active(&impl, &err) == 0 && impl == AIRLLM_QUANT_IMPL_SCALAR,
          "set_impl over env");
    force(AIRLLM_QUANT_IMPL_AUTO);
    setenv("AIRLLM_QUANT_IMPL", "auto", 1);
    CHECK(airllm_quant_impl_active(&impl, &err) == 0 && impl == impls[nimpls - 1],
          "auto picks %s", airllm_quant_impl_name(impls[nimpls - 1]));
    for (int k = 2; k <= 4; k++) {
        airllm_quant_impl i = (airllm_quant_impl)k;
        setenv("AIRLLM_QUANT_IMPL", airllm_quant_impl_name(i), 1);
        int rc = airllm_quant_impl_active(&impl, &err);
        if (airllm_quant_impl_available(i))
            CHECK(rc == 0 && impl == i, "env %s", airllm_quant_impl_name(i));
        else
            CHECK(rc == -1 && airllm_quant_set_impl(i, &err) == -1, "%s unavailable refused",
                  airllm_quant_impl_name(i));
    }
    CHECK(airllm_quant_set_impl((airllm_quant_impl)9, &err) == -1, "unknown impl");
    unsetenv("AIRLLM_QUANT_IMPL");
    printf("implementations here:");
    for (int i = 0; i < nimpls; i++)
        printf(" %s", airllm_quant_impl_name(impls[i]));
    printf(" (auto: %s)\n", airllm_quant_impl_name(impls[nimpls - 1]));
}

/* ------------------------------------------------------------------ */
/* Conformance with bitsandbytes                                       */
/* ------------------------------------------------------------------ */

/* Decodes a hex string into a new buffer; *len gets the byte count. */
static uint8_t *unhex(const cJSON *j, size_t *len)
{
    const char *s = cJSON_GetStringValue(j);
    if (!s)
        return NULL;
    size_t n = strlen(s) / 2;
    uint8_t *b = malloc(n + 1);
    for (size_t i = 0; i < n; i++) {
        unsigned v;
        if (sscanf(s + 2 * i, "%2x", &v) != 1) {
            free(b);
            return NULL;
        }
        b[i] = (uint8_t)v;
    }
    *len = n;
    return b;
}

/* Little-endian float32 array from hex (this test runs on little-endian
 * hosts, like the fixture maker). */
static float *unhexf(const cJSON *j, size_t *count)
{
    size_t len = 0;
    uint8_t *b = unhex(j, &len);
    *count = len / 4;
    return (float *)b;
}

static const cJSON *get(const cJSON *o, const char *k)
{
    return cJSON_GetObjectItemCaseSensitive(o, k);
}

static size_t getz(const cJSON *o, const char *k)
{
    return (size_t)cJSON_GetNumberValue(get(o, k));
}

static airllm_quant_type type_of(const cJSON *o)
{
    airllm_quant_type t = (airllm_quant_type)0;
    airllm_quant_type_from_name(cJSON_GetStringValue(get(o, "type")), &t);
    return t;
}

/* How many float32 steps apart a and b are. */
static long ulps(float a, float b)
{
    int32_t ia = (int32_t)bits_of(a), ib = (int32_t)bits_of(b);
    if (ia < 0)
        ia = INT32_MIN - ia;
    if (ib < 0)
        ib = INT32_MIN - ib;
    return labs((long)ia - (long)ib);
}

static void test_fixture(const char *path)
{
    FILE *f = fopen(path, "rb");
    CHECK(f != NULL, "cannot open fixture %s", path);
    if (!f)
        return;
    fseek(f, 0, SEEK_END);
    long sz = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *text = malloc((size_t)sz + 1);
    size_t got = fread(text, 1, (size_t)sz, f);
    fclose(f);
    text[got] = 0;
    cJSON *root = cJSON_Parse(text);
    free(text);
    CHECK(root != NULL, "fixture is JSON");
    if (!root)
        return;
    printf("fixture: bitsandbytes %s, torch %s\n",
           cJSON_GetStringValue(get(root, "bitsandbytes")), cJSON_GetStringValue(get(root, "torch")));

    size_t n_in = 0, len = 0;
    float *input = unhexf(get(root, "input"), &n_in);
    CHECK(input && n_in == 4096, "fixture input");
    if (!input) {
        cJSON_Delete(root);
        return;
    }
    float *cb = unhexf(get(root, "nf4_code"), &len);
    CHECK(cb && len == 16 && memcmp(cb, airllm_nf4_code, 64) == 0, "nf4 codebook == bitsandbytes");
    free(cb);
    cb = unhexf(get(root, "fp4_code"), &len);
    CHECK(cb && len == 16 && memcmp(cb, airllm_fp4_code, 64) == 0, "fp4 codebook == bitsandbytes");
    free(cb);
    float map[256];
    airllm_quant_dynamic_map(map);
    cb = unhexf(get(root, "dynamic_map"), &len);
    CHECK(cb && len == 256 && memcmp(cb, map, sizeof map) == 0,
          "create_dynamic_map == bitsandbytes");
    free(cb);

    /* quantize_4bit and int8_vectorwise_quant: codes and absmax, every impl.
     * One documented exception: an int8 block whose absmax is below
     * 127 / FLT_MAX (3.7e-37), where bitsandbytes' 127 / absmax overflows to
     * inf and its codes come out 0; ours are round(x * 127 / absmax). */
    const char *groups[2] = {"quant4", "int8"};
    int cases = 0, exact = 0, skipped_blocks = 0;
    for (int g = 0; g < 2; g++) {
        const cJSON *c;
        cJSON_ArrayForEach(c, get(root, groups[g]))
        {
            airllm_quant_type t = g ? AIRLLM_QUANT_INT8 : type_of(c);
            size_t n = getz(c, "n"), block = getz(c, "blocksize"), nc = 0, na = 0;
            uint8_t *want_c = unhex(get(c, "codes"), &nc);
            float *want_a = unhexf(get(c, "absmax"), &na);
            for (int ii = 0; ii < nimpls; ii++) {
                qbuf q = qbuf_new(t, n, block);
                airllm_err err;
                force(impls[ii]);
                int rc = airllm_quantize(t, input, n, block, q.codes, q.ncodes, q.absmax, q.nabs,
                                         &err);
                int same = rc == 0 && want_c && want_a && nc == q.ncodes && na == q.nabs &&
                           memcmp(want_a, q.absmax, na * 4) == 0;
                size_t diff = 0, first = 0;
                for (size_t i = 0; same && i < nc; i++) {
                    size_t b = (t == AIRLLM_QUANT_INT8 ? i : 2 * i) / block;
                    if (t == AIRLLM_QUANT_INT8 && want_a[b] > 0.0f && want_a[b] < 127.0f / FLT_MAX) {
                        skipped_blocks += ii == 0 && i % block == 0;
                        continue;
                    }
                    if (want_c[i] != q.codes[i] && diff++ == 0)
                        first = i;
                }
                same &= diff == 0;
                cases++;
                exact += same;
                CHECK(same, "%s %s block %zu n %zu: %zu code bytes differ (first %zu: %02x vs %02x)",
                      airllm_quant_impl_name(impls[ii]), airllm_quant_type_name(t), block, n, diff,
                      first, want_c ? want_c[first] : 0, q.codes[first]);
                qbuf_free(&q);
            }
            free(want_c);
            free(want_a);
        }
    }
    force(AIRLLM_QUANT_IMPL_AUTO);
    CHECK(cases > 0 && exact == cases, "quantize conformance");
    printf("conformance: %d/%d quantize cases (nf4, fp4, int8 x implementations) byte-identical"
           " (int8: %d blocks with absmax < 127/FLT_MAX excluded)\n",
           exact, cases, skipped_blocks);

    /* double quant inside quantize_4bit(compress_statistics=True) */
    const cJSON *c;
    int dq_cases = 0, dq_exact = 0;
    long worst_ulp = 0;
    cJSON *dql = cJSON_CreateArray();
    cJSON_AddItemReferenceToArray(dql, (cJSON *)get(root, "dq_large"));
    const cJSON *lists[2] = {get(root, "quant4_dq"), dql};
    for (int li = 0; li < 2; li++) {
        cJSON_ArrayForEach(c, lists[li])
        {
            size_t na = 0, nq = 0, na2 = 0, no = 0;
            float *am = unhexf(get(c, "absmax"), &na);
            uint8_t *wq = unhex(get(c, "qabsmax"), &nq);
            float *wa2 = unhexf(get(c, "absmax2"), &na2);
            float *woff = unhexf(get(c, "offset"), &no);
            if (li == 0) { /* our 4-bit absmax first: the input of the double quant */
                airllm_quant_type t = type_of(c);
                size_t n = getz(c, "n"), block = getz(c, "blocksize");
                qbuf q = qbuf_new(t, n, block);
                airllm_err err;
                airllm_quantize(t, input, n, block, q.codes, q.ncodes, q.absmax, q.nabs, &err);
                size_t ncodes;
                uint8_t *wc = unhex(get(c, "codes"), &ncodes);
                CHECK(q.nabs == na && memcmp(q.absmax, am, na * 4) == 0 && wc &&
                          memcmp(wc, q.codes, ncodes) == 0,
                      "dq case: 4-bit part");
                free(wc);
                qbuf_free(&q);
            }
            uint8_t *q = malloc(na);
            float a2[64], off;
            airllm_err err;
            if (!isfinite(woff[0])) {
                /* bitsandbytes' float32 mean overflowed (absmax values near
                 * FLT_MAX): its offset is inf and its codes are garbage. We
                 * refuse such an offset and compute a finite one ourselves. */
                int rc = airllm_dq_compress(AIRLLM_DQ_BNB_LUT, am, na, woff, q, na, a2, 64, &off,
                                            &err);
                CHECK(rc == -1, "a non-finite offset is refused");
                rc = airllm_dq_compress(AIRLLM_DQ_BNB_LUT, am, na, NULL, q, na, a2, 64, &off, &err);
                CHECK(rc == 0 && isfinite(off), "own offset finite where bitsandbytes' is inf");
                printf("conformance: double quant of %zu absmax values: bitsandbytes' offset "
                       "overflows to inf (ours %.6g); not comparable\n",
                       na, off);
            } else {
                int rc = airllm_dq_compress(AIRLLM_DQ_BNB_LUT, am, na, woff, q, na, a2, 64, &off,
                                            &err);
                int same = rc == 0 && nq == na && na2 == airllm_quant_nblocks(na, 256) &&
                           memcmp(q, wq, na) == 0 && memcmp(a2, wa2, na2 * 4) == 0;
                CHECK(same, "double quant with bitsandbytes' offset: %zu values", na);
                dq_cases++;
                dq_exact += same;
                /* our own offset: the exact mean, rounded once */
                rc = airllm_dq_compress(AIRLLM_DQ_BNB_LUT, am, na, NULL, q, na, a2, 64, &off,
                                        &err);
                long u = ulps(off, woff[0]);
                worst_ulp = u > worst_ulp ? u : worst_ulp;
                CHECK(rc == 0 && u <= 2, "own offset %.9g vs bitsandbytes %.9g: %ld ulp", off,
                      woff[0], u);
            }
            free(am);
            free(wq);
            free(wa2);
            free(woff);
            free(q);
        }
    }
    cJSON_Delete(dql);
    printf("conformance: %d/%d double-quant cases byte-identical (given bitsandbytes' offset; "
           "own mean within %ld ulp)\n",
           dq_exact, dq_cases, worst_ulp);

    /* the dynamic-map quantizer alone: both bitsandbytes CPU kernels */
    const cJSON *d = get(root, "dynamic8");
    size_t nd = 0, n1 = 0, n2 = 0, n3 = 0, n4 = 0;
    float *dx = unhexf(get(d, "input"), &nd);
    uint8_t *lc = unhex(get(d, "lut_codes"), &n1), *nc = unhex(get(d, "nearest_codes"), &n2);
    float *la = unhexf(get(d, "lut_absmax"), &n3), *na_ = unhexf(get(d, "nearest_absmax"), &n4);
    size_t nb = airllm_quant_nblocks(nd, 256);
    uint8_t *q = malloc(nd);
    float *a = malloc(nb * 4);
    airllm_err err;
    int rc = airllm_quantize_dynamic8_ref(AIRLLM_DQ_BNB_LUT, dx, nd, 256, q, nd, a, nb, &err);
    CHECK(rc == 0 && n1 == nd && memcmp(q, lc, nd) == 0 && n3 == nb && memcmp(a, la, nb * 4) == 0,
          "dynamic8 BNB_LUT == bitsandbytes native CPU kernel");
    rc = airllm_quantize_dynamic8_ref(AIRLLM_DQ_NEAREST, dx, nd, 256, q, nd, a, nb, &err);
    CHECK(rc == 0 && n2 == nd && memcmp(q, nc, nd) == 0 && n4 == nb && memcmp(a, na_, nb * 4) == 0,
          "dynamic8 NEAREST == bitsandbytes default kernel");
    size_t lut_vs_near = 0;
    for (size_t i = 0; i < nd; i++)
        lut_vs_near += lc[i] != nc[i];
    printf("conformance: dynamic 8-bit, %zu values: both kernels byte-identical; they differ "
           "from each other in %zu codes (256 of them the zero block)\n",
           nd, lut_vs_near);
    float *back = malloc(nd * 4);
    CHECK(airllm_dequantize_dynamic8_ref(q, nd, a, nb, 256, back, &err) == 0, "%s", err.msg);
    free(back);
    free(dx);
    free(lc);
    free(nc);
    free(la);
    free(na_);
    free(q);
    free(a);

    /* dequantize_4bit output, through double-quant decompression */
    cJSON_ArrayForEach(c, get(root, "dequant4"))
    {
        airllm_quant_type t = type_of(c);
        size_t n = getz(c, "n"), block = getz(c, "blocksize"), ncd = 0, nout = 0, k = 0;
        uint8_t *codes = unhex(get(c, "codes"), &ncd);
        float *want = unhexf(get(c, "out"), &nout);
        size_t nbk = airllm_quant_nblocks(n, block);
        float *am = malloc(nbk * 4), *y = malloc(n * 4);
        if (get(c, "qabsmax")) {
            uint8_t *qa = unhex(get(c, "qabsmax"), &k);
            float *a2 = unhexf(get(c, "absmax2"), &k);
            float *off = unhexf(get(c, "offset"), &k);
            CHECK(airllm_dq_decompress(qa, nbk, a2, airllm_quant_nblocks(nbk, 256), off[0], am,
                                       &err) == 0,
                  "%s", err.msg);
            free(qa);
            free(a2);
            free(off);
        } else {
            float *w = unhexf(get(c, "absmax"), &k);
            memcpy(am, w, nbk * 4);
            free(w);
        }
        for (int ii = 0; ii < nimpls; ii++) {
            force(impls[ii]);
            rc = airllm_dequantize(t, codes, ncd, am, nbk, n, block, y, &err);
            CHECK(rc == 0 && nout == n && memcmp(y, want, n * 4) == 0,
                  "%s %s: dequantize_4bit output identical", airllm_quant_impl_name(impls[ii]),
                  airllm_quant_type_name(t));
        }
        force(AIRLLM_QUANT_IMPL_AUTO);
        free(codes);
        free(want);
        free(am);
        free(y);
    }
    free(input);
    cJSON_Delete(root);
}

/* ------------------------------------------------------------------ */
/* Throughput (printed, not asserted)                                  */
/* ------------------------------------------------------------------ */

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static void bench(void)
{
    const size_t n = (size_t)1 << 22; /* 16 MiB of float32 */
    float *x = malloc(n * 4), *y = malloc(n * 4);
    for (size_t i = 0; i < n; i++)
        x[i] = gauss();
    for (int ti = 0; ti < NTYPES; ti++) {
        airllm_quant_type t = all_types[ti];
        qbuf q = qbuf_new(t, n, 64);
        printf("throughput %-4s block 64 (MB/s of float32):", airllm_quant_type_name(t));
        for (int ii = 0; ii < nimpls; ii++) {
            airllm_err err;
            force(impls[ii]);
            double bq = 1e9, bd = 1e9;
            for (int rep = 0; rep < 3; rep++) {
                double t0 = now();
                airllm_quantize(t, x, n, 64, q.codes, q.ncodes, q.absmax, q.nabs, &err);
                double t1 = now();
                airllm_dequantize(t, q.codes, q.ncodes, q.absmax, q.nabs, n, 64, y, &err);
                double t2 = now();
                bq = fmin(bq, t1 - t0);
                bd = fmin(bd, t2 - t1);
            }
            printf("  %s quant %.0f dequant %.0f", airllm_quant_impl_name(impls[ii]),
                   n * 4 / bq / 1e6, n * 4 / bd / 1e6);
        }
        printf("\n");
        qbuf_free(&q);
    }
    force(AIRLLM_QUANT_IMPL_AUTO);
    free(x);
    free(y);
}

int main(int argc, char **argv)
{
#ifdef AIRLLM_QUANT_FIXTURE
    const char *fixture = AIRLLM_QUANT_FIXTURE;
#else
    const char *fixture = "tests/data/bnb_quant_fixture.json";
#endif
    if (argc > 1)
        fixture = argv[1];
    unsetenv("AIRLLM_QUANT_IMPL");
    find_impls();

    test_codebooks();
    test_reference_rounding();
    test_ties();
    test_zero_and_short_blocks();
    test_arguments();
    test_simd_exact();
    test_double_quant();
    test_converters();
    test_stats();
    test_block_stats();
    test_dispatch();
    test_fixture(fixture);
    bench();
    return test_summary();
}
