/* Unit tests for the matrix kernels (lib/airllm_matmul.c,
 * lib/airllm_matmul_simd.c): every implementation this build and CPU can
 * run against the double-accumulated oracle airllm_mm_ref, for every
 * encoding (F32, F16, BF16 raw; nf4, fp4, int8), token counts 1..17, shapes
 * with column tails, one row, rows shorter than a block, blocks straddling
 * rows, odd element counts, and row ranges that do not start at 0; the
 * quantized kernels also against airllm_dequantize_ref followed by a plain
 * dot product; the row dequantizer bit for bit; argument errors.
 *
 *   test_matmul
 * The tolerance is 1e-5 * sum_k |W x| + 1e-6 per output (float sums of up
 * to a few thousand terms, FMA or not). Throughput: tests/bench_matmul.c. */
#include "airllm_matmul.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "airllm_matmul_impl.h"
#include "airllm_quant.h"
#include "test_util.h"
#include "matmul_weights.h"

static const airllm_mm_impl all_impls[] = {AIRLLM_MM_IMPL_SCALAR, AIRLLM_MM_IMPL_AVX2,
                                           AIRLLM_MM_IMPL_AVX512, AIRLLM_MM_IMPL_NEON};
static airllm_mm_impl impls[4];
static int nimpls;

static int set_impl(airllm_mm_impl impl)
{
    airllm_err err;
    int rc = airllm_mm_set_impl(impl, &err);
    CHECK(rc == 0, "set_impl %s: %s", airllm_mm_impl_name(impl), err.msg);
    return rc;
}

#define PAD 3 /* extra floats per x and y row, checked to stay untouched */
static const float SENTINEL = -12345.5f;

/* One case: W (format f, rows x cols, block), n tokens, rows [r0, r1).
 * Every implementation and the oracle against a double dot product of the
 * dequantized weights, each within tol of it; the oracle within 1e-6
 * relative. Outputs outside [r0, r1) and the padding must stay untouched. */
static void check_case(const format *f, uint64_t rows, uint64_t cols, uint32_t block, size_t n,
                       uint64_t r0, uint64_t r1)
{
    tweight t = make_weight(f, rows, cols, block);
    size_t ldx = (size_t)cols + PAD, ldy = (size_t)rows + PAD;
    float *x = malloc((n * ldx + 1) * sizeof *x), *y = malloc((n * ldy + 1) * sizeof *y);
    double *want = malloc((n * rows + 1) * sizeof *want), *mag = malloc((n * rows + 1) * sizeof *mag);
    for (size_t i = 0; i < n * ldx; i++)
        x[i] = (i % ldx) < cols ? gauss() : NAN; /* padding must never be read */
    for (size_t tk = 0; tk < n; tk++)
        for (uint64_t r = 0; r < rows; r++) {
            double s = 0, m = 0;
            for (uint64_t k = 0; k < cols; k++) {
                double p = (double)t.deq[r * cols + k] * x[tk * ldx + k];
                s += p;
                m += fabs(p);
            }
            want[tk * rows + r] = s;
            mag[tk * rows + r] = m;
        }

    for (int v = -1; v < nimpls; v++) { /* -1: the oracle */
        airllm_err err;
        for (size_t i = 0; i < n * ldy; i++)
            y[i] = SENTINEL;
        int rc;
        if (v < 0) {
            rc = airllm_mm_ref(&t.w, x, n, ldx, y, ldy, r0, r1, &err);
        } else {
            if (set_impl(impls[v]))
                continue;
            rc = airllm_mm(&t.w, x, n, ldx, y, ldy, r0, r1, &err);
        }
        const char *iname = v < 0 ? "ref" : airllm_mm_impl_name(impls[v]);
        if (rc) {
            CHECK(0, "%s %s %llux%llu b%u n%zu: %s", iname, f->name, (unsigned long long)rows,
                  (unsigned long long)cols, block, n, err.msg);
            continue;
        }
        int bad = 0, touched = 0;
        double worst = 0;
        for (size_t tk = 0; tk < n; tk++)
            for (size_t r = 0; r < ldy; r++) {
                float got = y[tk * ldy + r];
                if (r < r0 || r >= r1) {
                    touched += got != SENTINEL;
                    continue;
                }
                double tol = v < 0 ? 1e-6 * mag[tk * rows + r] + 1e-30
                                   : 1e-5 * mag[tk * rows + r] + 1e-6;
                double d = fabs((double)got - want[tk * rows + r]);
                if (!(d <= tol)) {
                    if (!bad)
                        printf("  %s %s row %zu token %zu: got %.9g want %.9g (mag %.3g)\n", iname,
                               f->name, r, tk, got, want[tk * rows + r], mag[tk * rows + r]);
                    bad++;
                }
                if (mag[tk * rows + r] > 0)
                    worst = fmax(worst, d / mag[tk * rows + r]);
            }
        CHECK(!bad && !touched,
              "%s %s %llux%llu block %u n %zu rows [%llu,%llu): %d wrong, %d touched outside "
              "(worst %.2g)",
              iname, f->name, (unsigned long long)rows, (unsigned long long)cols, block, n,
              (unsigned long long)r0, (unsigned long long)r1, bad, touched, worst);
    }
    set_impl(AIRLLM_MM_IMPL_AUTO);

    /* the row dequantizer: bit for bit what dequantize_ref gives */
    float *row = malloc((cols + 1) * sizeof *row);
    int same = 1;
    for (uint64_t r = r0; r < r1; r++) {
        airllm_err err;
        if (airllm_mm_row_f32(&t.w, r, row, &err)) {
            same = 0;
            break;
        }
        same &= memcmp(row, t.deq + r * cols, (size_t)cols * sizeof *row) == 0;
    }
    CHECK(same, "row_f32 %s %llux%llu block %u", f->name, (unsigned long long)rows,
          (unsigned long long)cols, block);
    free(row);
    free(x);
    free(y);
    free(want);
    free(mag);
    free_weight(&t);
}

static void test_shapes(void)
{
    /* rows, cols, block (ignored for raw formats) */
    static const struct {
        uint64_t rows, cols;
        uint32_t block;
    } shapes[] = {
        {1, 1, 32},      /* one element: one 4-bit code, low nibble padding */
        {1, 7, 32},      {3, 15, 32},  {5, 16, 32},  {7, 17, 32},   /* column tails */
        {9, 33, 32},     /* odd total (297), blocks straddle rows */
        {2, 20, 64},     /* cols < block: several rows per block */
        {1, 64, 64},     /* one row, one block */
        {6, 64, 32},     {13, 128, 64}, {5, 96, 32},  /* whole blocks per row: the fast path */
        {9, 256, 32},    {8, 384, 128}, {17, 512, 256}, /* 4-bit by 128 columns, 1-4 scales */
        {11, 100, 64},   /* straddling, even cols */
        {10, 255, 32},   {9, 320, 64},  {4, 1000, 128}, {6, 1024, 1024},
        {3, 3000, 1024}, /* straddling with a big block */
        {5, 4096, 4096},
    };
    static const size_t ns[] = {1, 2, 3, 4, 5, 8, 16, 17};
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++)
        for (size_t fi = 0; fi < NFORMATS; fi++)
            for (size_t ni = 0; ni < sizeof ns / sizeof ns[0]; ni++) {
                uint64_t rows = shapes[s].rows;
                /* alternate full and partial row ranges */
                uint64_t r0 = 0, r1 = rows;
                switch ((s + ni) % 3) {
                case 1:
                    r0 = rows / 3;
                    r1 = rows - rows / 4;
                    break;
                case 2:
                    r0 = rows > 1 ? 1 : 0;
                    break;
                }
                check_case(&formats[fi], rows, shapes[s].cols, shapes[s].block, ns[ni], r0, r1);
            }
}

/* Larger matrices with realistic row lengths: 8- and 4-row tiles plus
 * leftovers, token tails; 4160 columns are a multiple of 64 but not of 128
 * (AVX-512 takes 4-bit codes a vector of 128 at a time, then the tail of
 * 64 in 8-byte loads), 4096 of both; 576 is SmolLM2's hidden size. */
static void test_large(void)
{
    static const size_t ns[] = {1, 7};
    for (size_t fi = 0; fi < NFORMATS; fi++)
        for (size_t ni = 0; ni < 2; ni++) {
            check_case(&formats[fi], 23, 4160, 64, ns[ni], 2, 23);
            check_case(&formats[fi], 19, 4096, 32, ns[ni], 1, 19);
            /* chunks of 128 then a tail of whole blocks: 1, 1 and 3 */
            check_case(&formats[fi], 37, 576, 64, ns[ni], 0, 37);
            check_case(&formats[fi], 9, 160, 32, ns[ni], 0, 9);
            check_case(&formats[fi], 21, 224, 32, ns[ni], 3, 20);
        }
}

/* Quantized kernels against airllm_dequantize_ref then a plain float dot
 * product, with all-zero blocks and absmax 0 included. */
static void test_against_dequantize(void)
{
    for (size_t fi = 3; fi < NFORMATS; fi++) {
        const format *f = &formats[fi];
        uint64_t rows = 8, cols = 256;
        uint32_t block = 32;
        size_t n = 3;
        tweight t = make_weight(f, rows, cols, block);
        /* zero one whole block: its absmax becomes 0 */
        memset(t.data + (f->qt == AIRLLM_QUANT_INT8 ? 64 : 32), f->qt == AIRLLM_QUANT_NF4 ? 0x77 : 0,
               f->qt == AIRLLM_QUANT_INT8 ? 32 : 16);
        t.absmax[2] = 0.0f;
        size_t nel = (size_t)(rows * cols);
        float *deq = malloc(nel * sizeof *deq), *x = malloc(n * cols * sizeof *x);
        float *y = malloc(n * rows * sizeof *y);
        airllm_err err;
        CHECK(airllm_dequantize_ref(f->qt, t.data, airllm_quant_code_bytes(f->qt, nel), t.absmax,
                                    nel / block, nel, block, deq, &err) == 0,
              "dequantize %s", err.msg);
        for (size_t i = 0; i < n * cols; i++)
            x[i] = gauss();
        for (int v = 0; v < nimpls; v++) {
            set_impl(impls[v]);
            int rc = airllm_mm(&t.w, x, n, (size_t)cols, y, (size_t)rows, 0, rows, &err);
            CHECK(rc == 0, "mm: %s", err.msg);
            int bad = 0;
            for (size_t tk = 0; tk < n; tk++)
                for (size_t r = 0; r < rows; r++) {
                    float s = 0, m = 0;
                    for (size_t k = 0; k < cols; k++) {
                        s += deq[r * cols + k] * x[tk * cols + k];
                        m += fabsf(deq[r * cols + k] * x[tk * cols + k]);
                    }
                    bad += !(fabsf(y[tk * rows + r] - s) <= 2e-5f * m + 1e-6f);
                }
            CHECK(!bad, "%s %s vs dequantize_ref + dot: %d wrong", airllm_mm_impl_name(impls[v]),
                  f->name, bad);
        }
        set_impl(AIRLLM_MM_IMPL_AUTO);
        free(deq);
        free(x);
        free(y);
        free_weight(&t);
    }
}

/* Matrices of zeros and exact small integers give exact results whatever
 * the summation order. */
static void test_exact(void)
{
    uint64_t rows = 9, cols = 77;
    size_t n = 6;
    float *w = malloc(rows * cols * sizeof *w), *x = malloc(n * cols * sizeof *x);
    float *y = malloc(n * rows * sizeof *y);
    for (size_t i = 0; i < rows * cols; i++)
        w[i] = (float)((int)(rnd() % 9) - 4);
    for (size_t i = 0; i < n * cols; i++)
        x[i] = (float)((int)(rnd() % 7) - 3);
    airllm_mm_weight mw = {AIRLLM_ENC_RAW, AIRLLM_DTYPE_F32, (const uint8_t *)w, NULL, 0, rows,
                           cols};
    for (int v = 0; v < nimpls; v++) {
        airllm_err err;
        set_impl(impls[v]);
        int rc = airllm_mm(&mw, x, n, (size_t)cols, y, (size_t)rows, 0, rows, &err);
        int bad = rc != 0;
        for (size_t tk = 0; tk < n && !rc; tk++)
            for (size_t r = 0; r < rows; r++) {
                float s = 0;
                for (size_t k = 0; k < cols; k++)
                    s += w[r * cols + k] * x[tk * cols + k];
                bad += y[tk * rows + r] != s;
            }
        CHECK(!bad, "%s exact integer products", airllm_mm_impl_name(impls[v]));
    }
    set_impl(AIRLLM_MM_IMPL_AUTO);
    /* cols == 0: every output is 0 */
    mw.cols = 0;
    for (size_t i = 0; i < n * rows; i++)
        y[i] = 1.0f;
    airllm_err err;
    int rc = airllm_mm(&mw, x, n, 1, y, (size_t)rows, 0, rows, &err);
    int zeros = 1;
    for (size_t i = 0; i < n * rows; i++)
        zeros &= y[i] == 0.0f;
    CHECK(rc == 0 && zeros, "cols 0 gives zeros");
    free(w);
    free(x);
    free(y);
}

static void test_errors(void)
{
    float x[64] = {0}, y[64];
    uint8_t data[64] = {0};
    float absmax[4] = {1, 1, 1, 1};
    airllm_mm_weight ok = {AIRLLM_ENC_NF4, AIRLLM_DTYPE_F32, data, absmax, 32, 2, 32};
    airllm_err err;
#define EXPECT_FAIL(call, what)                                                                \
    do {                                                                                       \
        err.msg[0] = 0;                                                                        \
        int rc_ = (call);                                                                      \
        CHECK(rc_ == -1 && err.msg[0], "%s: rc %d msg '%s'", what, rc_, err.msg);              \
    } while (0)
    CHECK(airllm_mm(&ok, x, 1, 32, y, 2, 0, 2, &err) == 0, "good call: %s", err.msg);
    CHECK(airllm_mm_ref(&ok, x, 1, 32, y, 2, 0, 2, &err) == 0, "good ref call: %s", err.msg);
    EXPECT_FAIL(airllm_mm(NULL, x, 1, 32, y, 2, 0, 2, &err), "NULL weight");
    EXPECT_FAIL(airllm_mm(&ok, NULL, 1, 32, y, 2, 0, 2, &err), "NULL x");
    EXPECT_FAIL(airllm_mm(&ok, x, 1, 32, NULL, 2, 0, 2, &err), "NULL y");
    EXPECT_FAIL(airllm_mm(&ok, x, 1, 32, y, 2, 0, 3, &err), "row_end > rows");
    EXPECT_FAIL(airllm_mm(&ok, x, 1, 32, y, 2, 2, 1, &err), "row_begin > row_end");
    EXPECT_FAIL(airllm_mm(&ok, x, 2, 31, y, 2, 0, 2, &err), "ldx < cols");
    EXPECT_FAIL(airllm_mm(&ok, x, 2, 32, y, 1, 0, 2, &err), "ldy < row_end");
    EXPECT_FAIL(airllm_mm_ref(&ok, x, 1, 32, y, 2, 0, 3, &err), "ref: row_end > rows");
    airllm_mm_weight w = ok;
    w.data = NULL;
    EXPECT_FAIL(airllm_mm(&w, x, 1, 32, y, 2, 0, 2, &err), "NULL data");
    w = ok;
    w.absmax = NULL;
    EXPECT_FAIL(airllm_mm(&w, x, 1, 32, y, 2, 0, 2, &err), "NULL absmax");
    w = ok;
    w.block = 48;
    EXPECT_FAIL(airllm_mm(&w, x, 1, 32, y, 2, 0, 2, &err), "block 48");
    w.block = 0;
    EXPECT_FAIL(airllm_mm(&w, x, 1, 32, y, 2, 0, 2, &err), "block 0");
    w.block = 8192;
    EXPECT_FAIL(airllm_mm(&w, x, 1, 32, y, 2, 0, 2, &err), "block 8192");
    w = ok;
    w.enc = AIRLLM_ENC_ZSTD;
    EXPECT_FAIL(airllm_mm(&w, x, 1, 32, y, 2, 0, 2, &err), "zstd encoding");
    w.enc = (airllm_encoding)77;
    EXPECT_FAIL(airllm_mm(&w, x, 1, 32, y, 2, 0, 2, &err), "unknown encoding");
    w = ok;
    w.enc = AIRLLM_ENC_RAW;
    w.dtype = AIRLLM_DTYPE_I32;
    EXPECT_FAIL(airllm_mm(&w, x, 1, 32, y, 2, 0, 2, &err), "raw I32");
    w.dtype = AIRLLM_DTYPE_F64;
    EXPECT_FAIL(airllm_mm_row_f32(&w, 0, y, &err), "row_f32 raw F64");
    w = ok;
    w.rows = UINT64_MAX / 2;
    EXPECT_FAIL(airllm_mm(&w, x, 1, 32, y, 2, 0, 2, &err), "rows * cols overflow");
    EXPECT_FAIL(airllm_mm_row_f32(&ok, 2, y, &err), "row_f32 row out of range");
    EXPECT_FAIL(airllm_mm_row_f32(&ok, 0, NULL, &err), "row_f32 NULL out");
    EXPECT_FAIL(airllm_mm_row_f32(NULL, 0, y, &err), "row_f32 NULL weight");
    /* nothing to do is fine, even with NULL buffers */
    CHECK(airllm_mm(&ok, NULL, 0, 0, NULL, 0, 0, 2, &err) == 0, "n = 0");
    CHECK(airllm_mm(&ok, NULL, 1, 0, NULL, 0, 1, 1, &err) == 0, "empty range");

    EXPECT_FAIL(airllm_mm_set_impl((airllm_mm_impl)99, &err), "unknown impl");
    for (size_t i = 0; i < sizeof all_impls / sizeof all_impls[0]; i++)
        if (!airllm_mm_impl_available(all_impls[i]))
            EXPECT_FAIL(airllm_mm_set_impl(all_impls[i], &err), "unavailable impl");
    CHECK(airllm_mm_impl_name((airllm_mm_impl)99) == NULL, "name of unknown impl");
    airllm_mm_impl a;
    CHECK(airllm_mm_impl_active(&a, &err) == 0 && a == AIRLLM_MM_IMPL_SCALAR,
          "active impl: the environment's, remembered: %s", err.msg);
#undef EXPECT_FAIL
}

/* AIRLLM_MM_IMPL, before anything else has read it: a bad value fails
 * every call, a good one is used. */
static void test_env(void)
{
    airllm_err err;
    airllm_mm_impl a;
    float x[32] = {0}, y[1];
    float w[32] = {0};
    airllm_mm_weight mw = {AIRLLM_ENC_RAW, AIRLLM_DTYPE_F32, (const uint8_t *)w, NULL, 0, 1, 32};
    setenv("AIRLLM_MM_IMPL", "bogus", 1);
    CHECK(airllm_mm_impl_active(&a, &err) == -1 && strstr(err.msg, "bogus"),
          "bad AIRLLM_MM_IMPL refused: %s", err.msg);
    CHECK(airllm_mm(&mw, x, 1, 32, y, 1, 0, 1, &err) == -1, "airllm_mm fails with it");
    for (size_t i = 0; i < sizeof all_impls / sizeof all_impls[0]; i++)
        if (!airllm_mm_impl_available(all_impls[i])) {
            setenv("AIRLLM_MM_IMPL", airllm_mm_impl_name(all_impls[i]), 1);
            CHECK(airllm_mm_impl_active(&a, &err) == -1, "unavailable %s refused",
                  airllm_mm_impl_name(all_impls[i]));
        }
    setenv("AIRLLM_MM_IMPL", "scalar", 1);
    CHECK(airllm_mm_impl_active(&a, &err) == 0 && a == AIRLLM_MM_IMPL_SCALAR,
          "AIRLLM_MM_IMPL=scalar: %s", err.msg);
    CHECK(airllm_mm(&mw, x, 1, 32, y, 1, 0, 1, &err) == 0 && y[0] == 0.0f, "then it runs");
    unsetenv("AIRLLM_MM_IMPL");
    set_impl(AIRLLM_MM_IMPL_AUTO);
}

/* Attention kernels against their oracles: head sizes with and without
 * vector tails, strides wider than a row (the gaps hold NaN, so a read past
 * a row shows), outputs past n untouched; empty inputs and bad arguments. */
static void test_attention(void)
{
    static const size_t ds[] = {1, 3, 7, 8, 15, 16, 17, 31, 33, 64, 80, 128, 200};
    static const size_t ns[] = {1, 2, 3, 17, 100};
    airllm_err err;
    for (size_t di = 0; di < sizeof ds / sizeof ds[0]; di++)
        for (size_t ni = 0; ni < sizeof ns / sizeof ns[0]; ni++) {
            size_t d = ds[di], n = ns[ni], stride = d + 5;
            float *q = malloc(d * sizeof *q), *kv = malloc(n * stride * sizeof *kv);
            float *p = malloc(n * sizeof *p), *want = malloc((n + d) * sizeof *want);
            float *got = malloc((n + d + 1) * sizeof *got);
            double *mag = malloc((n + d) * sizeof *mag);
            for (size_t i = 0; i < d; i++)
                q[i] = gauss();
            for (size_t i = 0; i < n * stride; i++)
                kv[i] = i % stride < d ? gauss() : NAN;
            for (size_t j = 0; j < n; j++)
                p[j] = (float)(rnd() / 4294967296.0);
            for (size_t j = 0; j < n; j++) {
                mag[j] = 0;
                for (size_t i = 0; i < d; i++)
                    mag[j] += fabs((double)q[i] * kv[j * stride + i]) * 0.125;
            }
            for (size_t i = 0; i < d; i++) {
                mag[n + i] = 0;
                for (size_t j = 0; j < n; j++)
                    mag[n + i] += fabs((double)p[j] * kv[j * stride + i]);
            }
            airllm_attn_scores_ref(q, kv, stride, d, n, 0.125f, want);
            airllm_attn_mix_ref(p, kv, stride, d, n, want + n);
            for (int v = 0; v < nimpls; v++) {
                if (set_impl(impls[v]))
                    continue;
                got[n] = 12345.0f;
                CHECK(airllm_attn_scores(q, kv, stride, d, n, 0.125f, got, &err) == 0, "%s",
                      err.msg);
                CHECK(got[n] == 12345.0f, "%s d %zu n %zu: scores past n written",
                      airllm_mm_impl_name(impls[v]), d, n);
                got[n + d] = 12345.0f;
                CHECK(airllm_attn_mix(p, kv, stride, d, n, got + n, &err) == 0, "%s", err.msg);
                CHECK(got[n + d] == 12345.0f, "%s d %zu n %zu: mix past d written",
                      airllm_mm_impl_name(impls[v]), d, n);
                for (size_t i = 0; i < n + d; i++)
                    CHECK(fabs((double)got[i] - want[i]) <= 1e-5 * mag[i] + 1e-6,
                          "%s d %zu n %zu: %s[%zu] %g, want %g", airllm_mm_impl_name(impls[v]), d,
                          n, i < n ? "score" : "mix", i < n ? i : i - n, got[i], want[i]);
            }
            free(q), free(kv), free(p), free(want), free(got), free(mag);
        }
    set_impl(AIRLLM_MM_IMPL_AUTO);
    float x[4] = {1, 2, 3, 4}, out[4] = {7, 7, 7, 7};
    CHECK(airllm_attn_mix(x, x, 2, 2, 0, out, &err) == 0 && out[0] == 0 && out[1] == 0 &&
              out[2] == 7,
          "mix over no positions is zero");
    CHECK(airllm_attn_scores(x, x, 2, 2, 0, 1.0f, NULL, &err) == 0, "no positions, no output");
    CHECK(airllm_attn_scores(x, x, 1, 2, 2, 1.0f, out, &err) == -1 &&
              strstr(err.msg, "stride") != NULL,
          "a stride below the row is refused: %s", err.msg);
    CHECK(airllm_attn_mix(NULL, x, 2, 2, 2, out, &err) == -1, "NULL is refused");
    CHECK(airllm_attn_mix(x, x, 2, 2, 0, NULL, &err) == -1,
          "a NULL output is refused even over no positions");
    CHECK(airllm_attn_scores(x, x, 2, 0, 2, 1.0f, NULL, &err) == -1,
          "a NULL output is refused even for empty rows");
}

/* The GEMM path (lib/airllm_matmul_gemm.c), forced from one token on so
 * that n = 1, 2, 3 reach it too: whole panels of 32 rows plus leftover
 * rows, column chunks of 128 with partial last chunks, raw column tails of
 * odd length (a half-used 32-bit word), 1-4 block scales per chunk, row
 * ranges that start inside a panel; n = 16 and 64 give full and partial
 * groups of 8 tokens. Every implementation against the oracle. */
static void test_gemm(void)
{
    static const struct {
        uint64_t rows, cols;
        uint32_t block;
        uint64_t r0, r1;
    } shapes[] = {
        {32, 128, 32, 0, 32},    {70, 200, 64, 0, 70},   {97, 320, 64, 3, 97},
        {64, 576, 64, 0, 64},    {33, 1024, 128, 0, 33}, {96, 17, 32, 0, 96},
        {40, 384, 128, 5, 39},   {65, 160, 32, 1, 65},   {35, 4096, 4096, 0, 35},
    };
    static const size_t ns[] = {1, 2, 3, 13, 16, 17, 64};
    size_t saved = airllm_mm_gemm_min();
    airllm_mm_gemm_set_min(1);
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++)
        for (size_t fi = 0; fi < NFORMATS; fi++)
            for (size_t ni = 0; ni < sizeof ns / sizeof ns[0]; ni++)
                check_case(&formats[fi], shapes[s].rows, shapes[s].cols, shapes[s].block, ns[ni],
                           shapes[s].r0, shapes[s].r1);
    airllm_mm_gemm_set_min(saved);
}

/* The AVX-512 panel decoder against the reference decoder bit for bit:
 * every decoded weight is the reference's value. Column offsets inside the
 * row, a partial last chunk, odd raw chunk lengths. */
static void test_gemm_panel(void)
{
    if (!airllm_mm_impl_available(AIRLLM_MM_IMPL_AVX512))
        return;
    static const struct {
        uint64_t rows, cols;
        uint32_t block;
    } shapes[] = {{32, 128, 32}, {64, 448, 64}, {33, 1024, 1024}, {32, 37, 32}};
    static float a[128 * 32], b[128 * 32];
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++)
        for (size_t fi = 0; fi < NFORMATS; fi++) {
            const format *f = &formats[fi];
            uint64_t rows = shapes[s].rows, cols = shapes[s].cols;
            int quant = f->enc != AIRLLM_ENC_RAW;
            if (quant && cols % shapes[s].block)
                continue; /* rows must hold whole blocks */
            tweight t = make_weight(f, rows, cols, shapes[s].block);
            mm_job j;
            memset(&j, 0, sizeof j);
            j.kind = !quant ? (f->dtype == AIRLLM_DTYPE_F32   ? MM_F32
                               : f->dtype == AIRLLM_DTYPE_F16 ? MM_F16
                                                              : MM_BF16)
                     : f->enc == AIRLLM_ENC_INT8 ? MM_I8
                                                 : MM_Q4;
            j.w = t.data;
            j.w_stride = !quant ? (size_t)cols * (j.kind == MM_F32 ? 4 : 2)
                                : j.kind == MM_I8 ? (size_t)cols : (size_t)cols / 2;
            j.absmax = t.absmax;
            j.a_stride = quant ? (size_t)(cols / shapes[s].block) : 0;
            j.block = quant ? shapes[s].block : 0;
            j.cb = f->enc == AIRLLM_ENC_NF4 ? airllm_nf4_code : airllm_fp4_code;
            j.cols = (size_t)cols;
            j.ldx = (size_t)cols;
            int same = 1;
            for (size_t row = 0; row + 32 <= rows; row += 32)
                for (size_t k0 = 0; k0 < cols; k0 += 128) {
                    size_t kc = cols - k0 < 128 ? (size_t)(cols - k0) : 128;
                    memset(a, 0, sizeof a);
                    memset(b, 0, sizeof b);
                    airllm_mm_gemm_panel_ref(&j, row, k0, kc, a);
                    CHECK(airllm_mm_gemm_panel(1, &j, row, k0, kc, b) == 0, "avx512 panel");
                    same &= memcmp(a, b, kc * 32 * sizeof *a) == 0;
                    /* the reference decoder is the oracle's element */
                    for (size_t k = 0; k < kc; k++)
                        for (size_t i = 0; i < 32; i++)
                            same &= a[k * 32 + i] == t.deq[(row + i) * cols + k0 + k];
                }
            CHECK(same, "gemm panel avx512 %s %llux%llu block %u: differs from the reference",
                  f->name, (unsigned long long)rows, (unsigned long long)cols, shapes[s].block);
            free_weight(&t);
        }
}

/* Prepared activations for the float GEMM path (airllm_matmul_act.c):
 * packed once, the same bits as packing per call, for every
 * implementation that has the path and row ranges inside panels; a
 * prepared x used with other inputs is refused. */
static void test_prepared(void)
{
    const size_t rows = 100, cols = 512, n = 12, ldx = cols + 5, ldy = rows + 1;
    float *x = malloc(n * ldx * sizeof *x), *y1 = malloc(n * ldy * sizeof *y1),
          *y2 = malloc(n * ldy * sizeof *y2);
    for (size_t i = 0; i < n * ldx; i++)
        x[i] = gauss();
    for (size_t fi = 0; fi < NFORMATS; fi++) {
        tweight t = make_weight(&formats[fi], rows, cols, 64);
        for (int v = 0; v < nimpls; v++) {
            airllm_err err;
            if (set_impl(impls[v]))
                continue;
            airllm_mm_act act;
            CHECK(airllm_mm_act_prepare(&act, &t.w, x, n, ldx, &err) == 0, "prepare: %s",
                  err.msg);
            int gemm = impls[v] == AIRLLM_MM_IMPL_AVX512 || impls[v] == AIRLLM_MM_IMPL_SCALAR;
            CHECK(!act.xp == !gemm, "%s %s: packed only for the GEMM path",
                  airllm_mm_impl_name(impls[v]), formats[fi].name);
            memset(y1, 0, n * ldy * sizeof *y1);
            memset(y2, 0, n * ldy * sizeof *y2);
            int rc = airllm_mm(&t.w, x, n, ldx, y1, ldy, 7, 90, &err);
            rc |= airllm_mm_prepared(&t.w, &act, x, n, ldx, y2, ldy, 7, 90, &err);
            CHECK(rc == 0 && !memcmp(y1, y2, n * ldy * sizeof *y1), "%s %s: prepared = not",
                  airllm_mm_impl_name(impls[v]), formats[fi].name);
            if (act.xp)
                CHECK(airllm_mm_prepared(&t.w, &act, x + 1, n, ldx, y2, ldy, 0, rows,
                                         &err) == -1 &&
                          strstr(err.msg, "prepared for"),
                      "another x refused: %s", err.msg);
            airllm_mm_act_release(&act);
        }
        set_impl(AIRLLM_MM_IMPL_AUTO);
        free_weight(&t);
    }
    free(x);
    free(y1);
    free(y2);
}

int main(void)
{
    for (size_t i = 0; i < sizeof all_impls / sizeof all_impls[0]; i++)
        if (airllm_mm_impl_available(all_impls[i]))
            impls[nimpls++] = all_impls[i];
    printf("implementations:");
    for (int i = 0; i < nimpls; i++)
        printf(" %s", airllm_mm_impl_name(impls[i]));
    printf("\n");
    /* the float kernels: the int8-activation path has its own test
     * (test_matmul_q8) and a looser contract */
    airllm_mm_set_q8(0);
    test_env();
    test_errors();
    test_exact();
    test_against_dequantize();
    test_shapes();
    test_large();
    test_gemm();
    test_gemm_panel();
    test_prepared();
    test_attention();
    return test_summary();
}
