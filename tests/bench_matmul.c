/* Micro-benchmark of the matrix kernels (lib/airllm_matmul.h), one thread:
 * GB/s of weight bytes (codes + absmax for the quantized formats) per
 * airllm_mm call, for every format, n = 1, 4, 16 tokens and every
 * implementation (plus the oracle airllm_mm_ref), with matrices out of
 * cache: each format gets enough copies of W to make at least 256 MiB, used
 * in turn. For comparison, the read bandwidth of a plain float sum over a
 * 256 MiB array with the widest vectors this CPU has.
 *
 *   bench_matmul [-r ROWS] [-c COLS] [-b BLOCK] [-t SECONDS] [-i IMPL] [-f FORMAT]
 *                [--hot] [--no-ref] [-g MIN_TOKENS] [--q8 0|1] [-n N,N,...]
 * --q8 0 keeps float activations at n = 16 (the int8 path of
 * airllm_matmul_q8.c is the default where the CPU has AVX512-VNNI).
 * -g sets the token count from which airllm_mm takes its GEMM path
 * (airllm_matmul_gemm.c; default 10; -g 1000 keeps the tiles, for an A/B).
 * -i / -f keep one implementation (ref, scalar, avx2, ...) / format; --hot
 * uses one copy of W (in cache if small: the kernels' compute limit). -n
 * replaces the token counts (up to 8 of them, each 1 to 64; the first is
 * the one the others' gains are relative to). Defaults: 4096 x 11008 (a 7B MLP down projection), block 64, 0.5 s per
 * figure. For n > 1 the figure in parentheses is the gain in tokens per
 * second over n = 1. Not run by ctest. */
#include "airllm_matmul.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "airllm_matmul_impl.h"
#include "airllm_quant.h"

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#endif
#if defined(__aarch64__)
#include <arm_neon.h>
#endif

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

static uint64_t rng = 0x2545F4914F6CDD1Dull;
static float frand(void) /* [-1, 1) */
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (float)((double)(rng >> 11) / 4503599627370496.0 - 1.0);
}

/* ---- plain float sum: the reference read bandwidth ---- */

#if defined(__x86_64__) || defined(__i386__)
__attribute__((target("avx512f"))) static float sum_avx512(const float *a, size_t n)
{
    __m512 s0 = _mm512_setzero_ps(), s1 = s0, s2 = s0, s3 = s0;
    for (size_t i = 0; i < n; i += 64) {
        s0 = _mm512_add_ps(s0, _mm512_loadu_ps(a + i));
        s1 = _mm512_add_ps(s1, _mm512_loadu_ps(a + i + 16));
        s2 = _mm512_add_ps(s2, _mm512_loadu_ps(a + i + 32));
        s3 = _mm512_add_ps(s3, _mm512_loadu_ps(a + i + 48));
    }
    return _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(s0, s1), _mm512_add_ps(s2, s3)));
}
__attribute__((target("avx"))) static float sum_avx(const float *a, size_t n)
{
    __m256 s0 = _mm256_setzero_ps(), s1 = s0, s2 = s0, s3 = s0;
    for (size_t i = 0; i < n; i += 32) {
        s0 = _mm256_add_ps(s0, _mm256_loadu_ps(a + i));
        s1 = _mm256_add_ps(s1, _mm256_loadu_ps(a + i + 8));
        s2 = _mm256_add_ps(s2, _mm256_loadu_ps(a + i + 16));
        s3 = _mm256_add_ps(s3, _mm256_loadu_ps(a + i + 24));
    }
    float l[8];
    _mm256_storeu_ps(l, _mm256_add_ps(_mm256_add_ps(s0, s1), _mm256_add_ps(s2, s3)));
    return l[0] + l[1] + l[2] + l[3] + l[4] + l[5] + l[6] + l[7];
}
#endif

/* n a multiple of 64 */
static float plain_sum(const float *a, size_t n, const char **how)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f")) {
        *how = "avx512";
        return sum_avx512(a, n);
    }
    if (__builtin_cpu_supports("avx")) {
        *how = "avx";
        return sum_avx(a, n);
    }
#elif defined(__aarch64__)
    float32x4_t s0 = vdupq_n_f32(0), s1 = s0, s2 = s0, s3 = s0;
    for (size_t i = 0; i < n; i += 16) {
        s0 = vaddq_f32(s0, vld1q_f32(a + i));
        s1 = vaddq_f32(s1, vld1q_f32(a + i + 4));
        s2 = vaddq_f32(s2, vld1q_f32(a + i + 8));
        s3 = vaddq_f32(s3, vld1q_f32(a + i + 12));
    }
    *how = "neon";
    return vaddvq_f32(vaddq_f32(vaddq_f32(s0, s1), vaddq_f32(s2, s3)));
#endif
    float s[8] = {0};
    for (size_t i = 0; i < n; i += 8)
        for (int k = 0; k < 8; k++)
            s[k] += a[i + k];
    *how = "scalar";
    return s[0] + s[1] + s[2] + s[3] + s[4] + s[5] + s[6] + s[7];
}

static double sum_bandwidth(const char **how)
{
    size_t n = (size_t)64 << 20; /* 256 MiB */
    float *a = malloc(n * sizeof *a);
    if (!a)
        return 0;
    for (size_t i = 0; i < n; i++)
        a[i] = 1.0f;
    double best = 0;
    volatile float sink = 0;
    for (int rep = 0; rep < 5; rep++) {
        double t = now();
        sink += plain_sum(a, n, how);
        t = now() - t;
        best = fmax(best, (double)n * sizeof *a / t / 1e9);
    }
    (void)sink;
    free(a);
    return best;
}

/* ---- the formats ---- */

typedef struct {
    const char *name;
    airllm_encoding enc;
    airllm_dtype dtype;
    airllm_quant_type qt;
} format;

static const format formats[] = {
    {"f32", AIRLLM_ENC_RAW, AIRLLM_DTYPE_F32, 0},
    {"bf16", AIRLLM_ENC_RAW, AIRLLM_DTYPE_BF16, 0},
    {"f16", AIRLLM_ENC_RAW, AIRLLM_DTYPE_F16, 0},
    {"nf4", AIRLLM_ENC_NF4, AIRLLM_DTYPE_F32, AIRLLM_QUANT_NF4},
    {"fp4", AIRLLM_ENC_FP4, AIRLLM_DTYPE_F32, AIRLLM_QUANT_FP4},
    {"int8", AIRLLM_ENC_INT8, AIRLLM_DTYPE_F32, AIRLLM_QUANT_INT8},
};

/* Weight bytes of one copy: data, then (quantized) absmax. */
static size_t format_bytes(const format *f, size_t n, size_t block, size_t *data_bytes)
{
    if (f->enc == AIRLLM_ENC_RAW) {
        *data_bytes = n * (f->dtype == AIRLLM_DTYPE_F32 ? 4 : 2);
        return *data_bytes;
    }
    *data_bytes = airllm_quant_code_bytes(f->qt, n);
    return *data_bytes + airllm_quant_nblocks(n, block) * sizeof(float);
}

/* Fills one copy of W (data then absmax in buf). */
static int fill_weight(const format *f, const float *src, size_t n, size_t block, uint8_t *buf,
                       size_t data_bytes)
{
    if (f->enc == AIRLLM_ENC_RAW) {
        for (size_t i = 0; i < n; i++) {
            uint32_t u;
            memcpy(&u, &src[i], 4);
            if (f->dtype == AIRLLM_DTYPE_F32) {
                memcpy(buf + 4 * i, &u, 4);
            } else {
                /* bf16: truncation; f16: values in [-1, 1) are normal halves
                 * or small enough to flush, precision does not matter here */
                uint16_t h = (uint16_t)(u >> 16);
                if (f->dtype == AIRLLM_DTYPE_F16) {
                    int e = (int)((u >> 23) & 0xFF) - 112;
                    h = (uint16_t)(((u >> 16) & 0x8000u) |
                                   (e > 0 ? ((uint32_t)e << 10) | ((u >> 13) & 0x3FFu) : 0));
                }
                memcpy(buf + 2 * i, &h, 2);
            }
        }
        return 0;
    }
    airllm_err err;
    size_t nb = airllm_quant_nblocks(n, block);
    if (airllm_quantize(f->qt, src, n, block, buf, data_bytes, (float *)(void *)(buf + data_bytes),
                        nb, &err)) {
        fprintf(stderr, "quantize: %s\n", err.msg);
        return -1;
    }
    return 0;
}

typedef struct {
    const char *name;
    int ref; /* 1: airllm_mm_ref */
    airllm_mm_impl impl;
} variant;

int main(int argc, char **argv)
{
    uint64_t rows = 4096, cols = 11008;
    size_t block = 64;
    double seconds = 0.5;
    int with_ref = 1, hot = 0;
    const char *only_impl = NULL, *only_fmt = NULL;
    size_t ns[8] = {1, 4, 16}, nn = 3, nmax = 16;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "-r") && i + 1 < argc)
            rows = strtoull(argv[++i], NULL, 10);
        else if (!strcmp(argv[i], "-c") && i + 1 < argc)
            cols = strtoull(argv[++i], NULL, 10);
        else if (!strcmp(argv[i], "-b") && i + 1 < argc)
            block = strtoull(argv[++i], NULL, 10);
        else if (!strcmp(argv[i], "-t") && i + 1 < argc)
            seconds = atof(argv[++i]);
        else if (!strcmp(argv[i], "-i") && i + 1 < argc)
            only_impl = argv[++i];
        else if (!strcmp(argv[i], "-f") && i + 1 < argc)
            only_fmt = argv[++i];
        else if (!strcmp(argv[i], "--hot"))
            hot = 1;
        else if (!strcmp(argv[i], "-g") && i + 1 < argc)
            airllm_mm_gemm_set_min(strtoull(argv[++i], NULL, 10));
        else if (!strcmp(argv[i], "--q8") && i + 1 < argc)
            airllm_mm_set_q8(atoi(argv[++i]));
        else if (!strcmp(argv[i], "--no-ref"))
            with_ref = 0;
        else if (!strcmp(argv[i], "-n") && i + 1 < argc) {
            char *p = argv[++i];
            for (nn = 0, nmax = 1; *p && nn < 8; nn++) {
                char *e;
                ns[nn] = strtoull(p, &e, 10);
                if (e == p || ns[nn] < 1 || ns[nn] > 64 || (*e && *e != ','))
                    break;
                nmax = ns[nn] > nmax ? ns[nn] : nmax;
                p = *e ? e + 1 : e;
            }
            if (*p || !nn) { /* a bad count stops the loop on it */
                fprintf(stderr, "-n: up to 8 token counts, 1 to 64, comma separated\n");
                return 2;
            }
        }
        else {
            fprintf(stderr,
                    "usage: %s [-r ROWS] [-c COLS] [-b BLOCK] [-t SECONDS] [-i IMPL] [-f FORMAT] "
                    "[--hot] [--no-ref] [-g MIN_TOKENS] [--q8 0|1] [-n N,N,...]\n",
                    argv[0]);
            return 2;
        }
    }
    if (!rows || !cols || cols % 64) {
        fprintf(stderr, "rows and cols must be > 0, cols a multiple of 64\n");
        return 2;
    }
    size_t n_el = (size_t)(rows * cols);

    const char *how = "";
    double sum_bw = sum_bandwidth(&how);
    printf("weights %llu x %llu, block %zu, 1 thread; plain float sum (%s) over 256 MiB: "
           "%.1f GB/s\n",
           (unsigned long long)rows, (unsigned long long)cols, block, how, sum_bw);
    printf("GB/s of weight bytes per call; (xN): tokens/s relative to n = 1\n");
    printf("%-5s %-7s %8s", "fmt", "impl", "MB");
    for (size_t ni = 0; ni < nn; ni++) {
        char h[16];
        snprintf(h, sizeof h, "n=%zu", ns[ni]);
        printf(ni ? " %16s" : " %9s", h);
    }
    printf("\n");

    variant vs[8];
    int nv = 0;
    if (with_ref)
        vs[nv++] = (variant){"ref", 1, AIRLLM_MM_IMPL_SCALAR};
    static const airllm_mm_impl all[] = {AIRLLM_MM_IMPL_SCALAR, AIRLLM_MM_IMPL_AVX2,
                                         AIRLLM_MM_IMPL_AVX512, AIRLLM_MM_IMPL_NEON};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
        if (airllm_mm_impl_available(all[i]))
            vs[nv++] = (variant){airllm_mm_impl_name(all[i]), 0, all[i]};

    float *src = malloc(n_el * sizeof *src);
    float *x = malloc(nmax * cols * sizeof *x), *y = malloc(nmax * rows * sizeof *y);
    if (!src || !x || !y)
        return 1;
    for (size_t i = 0; i < n_el; i++)
        src[i] = frand();
    for (size_t i = 0; i < nmax * cols; i++)
        x[i] = frand();

    for (size_t fi = 0; fi < sizeof formats / sizeof formats[0]; fi++) {
        const format *f = &formats[fi];
        if (only_fmt && strcmp(only_fmt, f->name))
            continue;
        size_t data_bytes, bytes = format_bytes(f, n_el, block, &data_bytes);
        size_t stride = (bytes + 4095) & ~(size_t)4095;
        size_t copies = hot ? 1 : (((size_t)256 << 20) + bytes - 1) / bytes;
        uint8_t *buf = aligned_alloc(4096, stride * copies);
        if (!buf || fill_weight(f, src, n_el, block, buf, data_bytes))
            return 1;
        for (size_t c = 1; c < copies; c++)
            memcpy(buf + c * stride, buf, bytes);
        double gbs1 = 0;
        for (int v = 0; v < nv; v++) {
            if (only_impl && strcmp(only_impl, vs[v].name))
                continue;
            printf("%-5s %-7s %8.1f", f->name, vs[v].name, bytes / 1e6);
            fflush(stdout);
            airllm_err err;
            if (!vs[v].ref && airllm_mm_set_impl(vs[v].impl, &err)) {
                fprintf(stderr, "%s\n", err.msg);
                return 1;
            }
            for (size_t ni = 0; ni < nn; ni++) {
                size_t n = ns[ni];
                size_t calls = 0;
                double t0 = now(), t;
                do {
                    const uint8_t *base = buf + (calls % copies) * stride;
                    airllm_mm_weight w = {f->enc, f->dtype, base,
                                          (const float *)(const void *)(base + data_bytes),
                                          (uint32_t)block, rows, cols};
                    int rc = vs[v].ref
                                 ? airllm_mm_ref(&w, x, n, (size_t)cols, y, (size_t)rows, 0,
                                                 rows, &err)
                                 : airllm_mm(&w, x, n, (size_t)cols, y, (size_t)rows, 0, rows,
                                             &err);
                    if (rc) {
                        fprintf(stderr, "%s\n", err.msg);
                        return 1;
                    }
                    calls++;
                    t = now() - t0;
                } while (t < seconds);
                double gbs = (double)bytes * calls / t / 1e9;
                if (ni == 0) {
                    gbs1 = gbs;
                    printf(" %9.2f", gbs);
                } else {
                    printf(" %9.2f (x%4.1f)", gbs, gbs * n / ns[0] / gbs1);
                }
                fflush(stdout);
            }
            printf("\n");
        }
        free(buf);
    }
    airllm_err err;
    airllm_mm_set_impl(AIRLLM_MM_IMPL_AUTO, &err);
    free(src);
    free(x);
    free(y);
    return 0;
}
