/* Unit tests for the int8-activation path of airllm_mm
 * (lib/airllm_matmul_q8.c): the activation quantizer on a hand-checked
 * group; the AVX512-VNNI kernel against the scalar reference bit for bit
 * (nf4, fp4, int8; partial panels of 1..31 rows, partial column chunks,
 * blocks of 32..4096, 1..33 tokens, row ranges not starting at 0); the
 * reference against the exact product of the dequantized weights within
 * the bound of its two roundings; airllm_mm's routing (it takes the path
 * at every token count, one token row-wise, with the same bits, and
 * AIRLLM_MM_Q8 / set_q8 turn it off); prepared activations; non-finite
 * inputs.
 *
 *   test_matmul_q8 */
#include "airllm_matmul.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "airllm_matmul_impl.h"
#include "airllm_quant.h"
#include "test_util.h"
#include "matmul_weights.h"

static const format *qformats[] = {&formats[3], &formats[4], &formats[5]}; /* nf4 fp4 int8 */

/* The kernel job for rows [r0, r1) of t's weight, as airllm_mm makes it. */
static mm_job job_of(const tweight *t, uint64_t r0, size_t ldx)
{
    mm_job j;
    memset(&j, 0, sizeof j);
    size_t cols = (size_t)t->w.cols;
    j.kind = t->w.enc == AIRLLM_ENC_INT8 ? MM_I8 : MM_Q4;
    j.w_stride = j.kind == MM_I8 ? cols : cols / 2;
    j.w = t->w.data + (size_t)r0 * j.w_stride;
    j.block = t->w.block;
    j.a_stride = cols / t->w.block;
    j.absmax = t->w.absmax + (size_t)r0 * j.a_stride;
    j.cb = t->w.enc == AIRLLM_ENC_NF4 ? airllm_nf4_code : airllm_fp4_code;
    j.cols = cols;
    j.ldx = ldx;
    return j;
}

static void quantize_hand(void)
{
    float x[64];
    for (int k = 0; k < 64; k++)
        x[k] = 0.0f;
    /* -63.5 -> -64 (even), 31.75 -> 32, 0.5 -> 0 */
    x[0] = 1.0f, x[1] = -0.5f, x[2] = 0.25f, x[3] = 1.0f / 254;
    x[4] = 3.0f / 254; /* 1.5 -> 2 */
    x[32] = -2.0f;     /* group 1: m = 2 */
    x[33] = 1.0f;      /* 63.5 -> 64 */
    int8_t a[64];
    float s[2];
    int32_t c[2];
    airllm_mm_q8_quantize(x, 1, 64, 64, a, s, c);
    CHECK(a[0] == 127 && a[1] == -64 && a[2] == 32 && a[3] == 0 && a[4] == 2 && a[5] == 0,
          "group 0: %d %d %d %d %d %d", a[0], a[1], a[2], a[3], a[4], a[5]);
    CHECK(s[0] == 1.0f / 16129.0f && c[0] == -128 * (127 - 64 + 32 + 2), "group 0 scale %g sum %d",
          s[0], c[0]);
    CHECK(a[32] == -127 && a[33] == 64 && s[1] == 2.0f / 16129.0f && c[1] == -128 * (64 - 127),
          "group 1: %d %d %g %d", a[32], a[33], s[1], c[1]);
    /* zeros, a tiny group and a non-finite one */
    for (int k = 0; k < 64; k++)
        x[k] = 0.0f;
    x[0] = 1e-35f;
    x[32] = NAN;
    airllm_mm_q8_quantize(x, 1, 64, 64, a, s, c);
    int zero = 1;
    for (int k = 0; k < 64; k++)
        zero &= a[k] == 0;
    CHECK(zero && s[0] == 0.0f && c[0] == 0 && isnan(s[1]) && c[1] == 0,
          "tiny and NaN groups: zeros, scales %g %g", s[0], s[1]);
}

/* The SIMD quantizer (where built) gives the reference's bytes: random
 * groups, exact ties (k + 0.5 steps), zeros, -0, tiny, inf and NaN groups. */
static void quantize_same(void)
{
    enum { N = 7, COLS = 320, LDX = 333 };
    static float x[N * LDX];
    static int8_t a1[N * COLS], a2[N * COLS];
    static float s1[N * COLS / 32], s2[N * COLS / 32];
    static int32_t c1[N * COLS / 32], c2[N * COLS / 32];
    for (size_t i = 0; i < sizeof x / sizeof x[0]; i++)
        x[i] = gauss() * (float)(1 + i % 5);
    for (int k = 0; k < 32; k++) /* group (0, 1): ties at every other step */
        x[32 + k] = k == 0 ? 127.0f : (float)(k - 16) + 0.5f;
    for (int k = 0; k < 32; k++) /* (0, 2): zeros and -0 */
        x[64 + k] = k & 1 ? -0.0f : 0.0f;
    for (int k = 0; k < 32; k++) /* (1, 3): tiny */
        x[LDX + 96 + k] = 1e-32f * (float)k;
    x[2 * LDX + 5] = INFINITY;
    x[3 * LDX + 300] = NAN;
    x[4 * LDX + 31] = -INFINITY;
    airllm_mm_q8_quantize_ref(x, N, LDX, COLS, a1, s1, c1);
    airllm_mm_q8_quantize(x, N, LDX, COLS, a2, s2, c2);
    CHECK(!memcmp(a1, a2, sizeof a1) && !memcmp(s1, s2, sizeof s1) && !memcmp(c1, c2, sizeof c1),
          "quantizer: the reference's bytes");
    CHECK(a1[32] == 127 && a1[33] == -14 && a1[34] == -14 && a1[35] == -12 &&
              isnan(s1[2 * 10]) && isnan(s1[3 * 10 + 9]) && s1[10 + 3] == 0.0f,
          "ties to even, inf and NaN groups, tiny groups: %d %d %d %d", a1[32], a1[33], a1[34],
          a1[35]);
}

/* The even/odd order of 4-bit panels, against its definition, with
 * lengths that leave the vector loop a tail. */
static void even_odd(void)
{
    for (size_t len = 8; len <= 200; len += 8) {
        int8_t a[200], eo[208], want[200];
        for (size_t i = 0; i < len; i++)
            a[i] = (int8_t)(i * 37 + 11);
        memset(eo, 0x55, sizeof eo);
        airllm_mm_q8_even_odd(a, len, eo);
        for (size_t i = 0; i < len; i++) /* column 8q + b: even b in the first half */
            want[i / 8 * 8 + (i % 2) * 4 + i % 8 / 2] = a[i];
        int tail = 1;
        for (size_t i = len; i < sizeof eo; i++)
            tail &= eo[i] == 0x55;
        CHECK(!memcmp(eo, want, len) && tail, "even/odd order, %zu bytes", len);
    }
}

/* Sentinel-filled y [n][ldy] */
static float *new_y(size_t n, size_t ldy)
{
    float *y = malloc(n * ldy * sizeof *y);
    for (size_t i = 0; i < n * ldy; i++)
        y[i] = -777.0f;
    return y;
}

static float *new_x(size_t n, size_t ldx, size_t cols)
{
    float *x = malloc((n * ldx + 1) * sizeof *x);
    for (size_t i = 0; i < n * ldx; i++) /* a scale per token: groups differ */
        x[i] = (i % ldx) < cols ? gauss() * (float)(1 + i / ldx % 7) : NAN;
    return x;
}

/* got [n][ldy] = ref bit for bit, padding included. */
static void same_bits(const char *what, const format *f, uint64_t rows, uint64_t cols,
                      uint32_t block, uint64_t r0, const float *ref, const float *got, size_t n,
                      size_t ldy)
{
    size_t diff = 0, first = (size_t)-1;
    for (size_t i = 0; i < n * ldy; i++)
        if (memcmp(&ref[i], &got[i], sizeof *ref)) {
            diff++;
            first = first == (size_t)-1 ? i : first;
        }
    CHECK(!diff, "%s %s %llux%llu block %u n %zu from row %llu: %zu outputs differ, first "
                 "[%zu][%zu] %.9g vs ref %.9g",
          what, f->name, (unsigned long long)rows, (unsigned long long)cols, block, n,
          (unsigned long long)r0, diff, diff ? first / ldy : 0, diff ? first % ldy : 0,
          diff ? got[first] : 0, diff ? ref[first] : 0);
}

/* One shape: VNNI = reference bit for bit (padding untouched), and the
 * reference within the rounding bound of the exact product. */
static void check_shape(const format *f, uint64_t rows, uint64_t cols, uint32_t block, size_t n,
                        uint64_t r0)
{
    tweight t = make_weight(f, rows, cols, block);
    size_t ldx = (size_t)cols + 3, nr = (size_t)(rows - r0), ldy = nr + 2;
    float *x = new_x(n, ldx, (size_t)cols);
    airllm_mm_act act;
    memset(&act, 0, sizeof act);
    act.x = x, act.n = n, act.ldx = ldx, act.cols = (size_t)cols;
    act.a = malloc(n * cols);
    act.s = malloc(n * (cols / 32) * sizeof *act.s);
    act.c = malloc(n * (cols / 32) * sizeof *act.c);
    airllm_mm_q8_quantize(x, n, ldx, (size_t)cols, act.a, act.s, act.c);
    mm_job j = job_of(&t, r0, ldx);
    float *ref = new_y(n, ldy);
    CHECK(airllm_mm_q8_rows(0, &j, nr, &act, ref, ldy) == 0, "reference runs");

    if (airllm_mm_q8_vnni_available()) {
        float *got = new_y(n, ldy);
        CHECK(airllm_mm_q8_rows(1, &j, nr, &act, got, ldy) == 0, "vnni runs");
        same_bits("vnni", f, rows, cols, block, r0, ref, got, n, ldy);
        /* activations reordered once by the caller (act.eo, as
         * airllm_mm_act_prepare makes them) instead of per call: the same */
        if (n > 1) {
            act.eo = malloc(n * cols);
            airllm_mm_q8_even_odd(act.a, n * (size_t)cols, act.eo);
            CHECK(airllm_mm_q8_rows(1, &j, nr, &act, got, ldy) == 0 &&
                      !memcmp(got, ref, n * ldy * sizeof *got),
                  "vnni %s %llux%llu n %zu, act.eo given: the reference's bits", f->name,
                  (unsigned long long)rows, (unsigned long long)cols, n);
        }
        /* AMX: B tiles made per call, then given in act, as
         * airllm_mm_act_prepare makes them */
        if (n > 1 && airllm_mm_q8_amx_available()) {
            for (int given = 0; given < 2; given++) {
                if (given) {
                    size_t nblk = (n + 15) / 16, groups = (size_t)cols / 32;
                    act.bt = malloc(nblk * 16 * cols);
                    act.bt_eo = malloc(nblk * 16 * cols);
                    act.sT = malloc(nblk * groups * 16 * sizeof *act.sT);
                    airllm_mm_q8_amx_pack(act.a, n, (size_t)cols, act.bt);
                    airllm_mm_q8_amx_pack(act.eo, n, (size_t)cols, act.bt_eo);
                    airllm_mm_q8_amx_scales(act.s, n, groups, act.sT);
                }
                float *amx = new_y(n, ldy);
                CHECK(airllm_mm_q8_rows_amx(&j, nr, &act, amx, ldy) == 0, "amx runs");
                same_bits(given ? "amx, tiles given" : "amx", f, rows, cols, block, r0, ref, amx,
                          n, ldy);
                free(amx);
            }
        }
        free(got);
    }

    /* the bound: per product |W| step / 2 (activation rounding, step =
     * m / 127 of its group) + |W - W'| |x'| (4-bit: the codebook rounded
     * to 1/127 moves a weight by up to absmax / 254), plus float slack */
    int bad = 0, pad = 0;
    double worst = 0, mean = 0;
    for (size_t tk = 0; tk < n; tk++) {
        for (size_t r = 0; r < nr; r++) {
            double exact = 0, bound = 0, mag = 0;
            for (size_t k = 0; k < cols; k++) {
                size_t e = (size_t)((r0 + r) * cols + k);
                double wv = t.deq[e], xv = x[tk * ldx + k];
                double step = act.s[tk * (cols / 32) + k / 32] * 127.0;
                double dw = f->enc == AIRLLM_ENC_INT8 ? 0 : t.absmax[e / block] / 254.0;
                exact += wv * xv;
                mag += fabs(wv * xv);
                bound += fabs(wv) * step * 0.5 + dw * (fabs(xv) + step * 0.5);
            }
            double d = fabs(ref[tk * ldy + r] - exact);
            bound = bound * 1.0001 + 1e-5 * mag + 1e-6;
            if (!(d <= bound)) {
                if (!bad)
                    printf("  %s row %zu token %zu: %.9g, exact %.9g, bound %.3g\n", f->name,
                           r, tk, ref[tk * ldy + r], exact, bound);
                bad++;
            }
            worst = fmax(worst, d / bound);
            mean += d / bound;
        }
        for (size_t r = nr; r < ldy; r++)
            pad += ref[tk * ldy + r] != -777.0f;
    }
    CHECK(!bad && !pad, "ref %s %llux%llu block %u n %zu: %d outside the bound (worst %.2f of "
                        "it), %d padding written",
          f->name, (unsigned long long)rows, (unsigned long long)cols, block, n, bad, worst, pad);
    /* the bound is not vacuous: errors use a fair part of it on average */
    mean /= (double)(n * nr);
    CHECK(mean > 0.005 && mean < 0.5, "%s: mean error %.4f of the bound", f->name, mean);
    airllm_mm_act_release(&act);
    free(ref);
    free(x);
    free_weight(&t);
}

static void test_shapes(void)
{
    static const struct {
        uint64_t rows, cols;
        uint32_t block, r0;
    } shapes[] = {
        {32, 32, 32, 0},   {70, 256, 64, 0},   {97, 320, 64, 3},  {33, 1024, 128, 0},
        {16, 4096, 4096, 0}, {65, 160, 32, 1}, {40, 544, 32, 9},  {1, 96, 32, 0},
        {64, 768, 256, 0},
    };
    static const size_t ns[] = {1, 2, 3, 10, 16, 17, 33};
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++)
        for (size_t fi = 0; fi < 3; fi++)
            for (size_t ni = 0; ni < sizeof ns / sizeof ns[0]; ni++)
                check_shape(qformats[fi], shapes[s].rows, shapes[s].cols, shapes[s].block,
                            ns[ni], shapes[s].r0);
}

/* airllm_mm takes the path where VNNI is there, with the reference's bits,
 * for many tokens and for one (the row-wise kernel); with the path off,
 * the float kernels (within their tolerance of the oracle, not the same
 * bits). */
static void test_routing(void)
{
    if (!airllm_mm_q8_vnni_available() || !airllm_mm_impl_available(AIRLLM_MM_IMPL_AVX512)) {
        printf("no AVX512-VNNI: routing not checked\n");
        return;
    }
    airllm_err err;
    CHECK(airllm_mm_set_impl(AIRLLM_MM_IMPL_AVX512, &err) == 0, "avx512: %s", err.msg);
    const size_t rows = 100, cols = 512, n = 12, ldx = cols, ldy = rows;
    tweight t = make_weight(&formats[3], rows, cols, 64);
    float *x = new_x(n, ldx, cols), *y = new_y(n, ldy), *ref = new_y(n, ldy);
    airllm_mm_act act;
    memset(&act, 0, sizeof act);
    CHECK(airllm_mm_act_prepare(&act, &t.w, x, n, ldx, &err) == 0 && act.a && act.eo,
          "prepared, with the even/odd order: %s", err.msg);
    CHECK(!airllm_mm_q8_amx_available() || (act.bt_eo && act.sT && !act.bt),
          "prepared for AMX: the 4-bit order's B tiles only");
    mm_job j = job_of(&t, 0, ldx);
    airllm_mm_q8_rows(0, &j, rows, &act, ref, ldy);

    CHECK(airllm_mm_q8_used(&t.w, n, &err) == 1, "used at %zu tokens", n);
    CHECK(airllm_mm_q8_used(&t.w, 1, &err) == 1, "used at one token");
    CHECK(airllm_mm(&t.w, x, n, ldx, y, ldy, 5, 77, &err) == 0, "mm: %s", err.msg);
    int same = 1;
    for (size_t tk = 0; tk < n; tk++)
        same &= !memcmp(y + tk * ldy + 5, ref + tk * ldy + 5, 72 * sizeof *y);
    CHECK(same, "airllm_mm rows [5, 77) = the reference's");
    float *y2 = new_y(n, ldy);
    CHECK(airllm_mm_prepared(&t.w, &act, x, n, ldx, y2, ldy, 0, rows, &err) == 0, "prepared: %s",
          err.msg);
    CHECK(!memcmp(y2, ref, n * ldy * sizeof *y), "prepared activations: the same bits");
    CHECK(airllm_mm_prepared(&t.w, &act, x, n - 1, ldx, y2, ldy, 0, rows, &err) == -1 &&
              strstr(err.msg, "prepared for"),
          "activations prepared for other inputs are refused: %s", err.msg);

    /* one token, rows [5, 77): the reference's bits, prepared or not */
    {
        airllm_mm_act one;
        float *y1 = new_y(1, rows), *r1 = new_y(1, rows), *p1 = new_y(1, rows);
        CHECK(airllm_mm_act_prepare(&one, &t.w, x, 1, ldx, &err) == 0 && one.a,
              "one token prepared: %s", err.msg);
        airllm_mm_q8_rows(0, &j, rows, &one, r1, rows);
        CHECK(airllm_mm(&t.w, x, 1, ldx, y1, rows, 5, 77, &err) == 0, "mm 1: %s", err.msg);
        CHECK(!memcmp(y1 + 5, r1 + 5, 72 * sizeof *y1), "one token: the reference's bits");
        CHECK(airllm_mm_prepared(&t.w, &one, x, 1, ldx, p1, rows, 5, 77, &err) == 0 &&
                  !memcmp(p1 + 5, r1 + 5, 72 * sizeof *p1),
              "one token, prepared: the reference's bits");
        airllm_mm_set_q8(0);
        CHECK(airllm_mm(&t.w, x, 1, ldx, y1, rows, 5, 77, &err) == 0 &&
                  memcmp(y1 + 5, r1 + 5, 72 * sizeof *y1),
              "one token, off: float kernels, other bits");
        airllm_mm_set_q8(1);
        airllm_mm_act_release(&one);
        free(y1);
        free(r1);
        free(p1);
    }

    /* bf16 never takes it: no int8, x packed for the float GEMM path */
    tweight tb = make_weight(&formats[2], rows, cols, 64);
    airllm_mm_act none;
    CHECK(airllm_mm_act_prepare(&none, &tb.w, x, n, ldx, &err) == 0 && !none.a && none.xp,
          "bf16: packed for the float path, no int8");
    airllm_mm_act_release(&none);
    free_weight(&tb);

    airllm_mm_set_q8(0);
    CHECK(airllm_mm_q8_used(&t.w, n, &err) == 0, "off");
    CHECK(airllm_mm(&t.w, x, n, ldx, y2, ldy, 0, rows, &err) == 0, "mm off: %s", err.msg);
    CHECK(memcmp(y2, ref, n * ldy * sizeof *y), "off: float kernels, other bits");
    airllm_mm_set_q8(1);
    airllm_mm_act_release(&act);
    airllm_mm_set_impl(AIRLLM_MM_IMPL_AUTO, &err);
    free(x);
    free(y);
    free(y2);
    free(ref);
    free_weight(&t);
}

/* A NaN or inf activation makes its token's outputs NaN (not a number
 * computed from clamped integers), in both implementations. */
static void test_nonfinite(void)
{
    const size_t rows = 40, cols = 256, n = 3;
    tweight t = make_weight(&formats[5], rows, cols, 64);
    float *x = new_x(n, cols, cols);
    x[1 * cols + 70] = INFINITY;
    airllm_mm_act act;
    memset(&act, 0, sizeof act);
    act.x = x, act.n = n, act.ldx = cols, act.cols = cols;
    act.a = malloc(n * cols);
    act.s = malloc(n * (cols / 32) * sizeof *act.s);
    act.c = malloc(n * (cols / 32) * sizeof *act.c);
    airllm_mm_q8_quantize(x, n, cols, cols, act.a, act.s, act.c);
    mm_job j = job_of(&t, 0, cols);
    for (int v = 0; v <= airllm_mm_q8_vnni_available(); v++) {
        float *y = new_y(n, rows);
        airllm_mm_q8_rows(v, &j, rows, &act, y, rows);
        int nan1 = 1, finite = 1;
        for (size_t r = 0; r < rows; r++) {
            nan1 &= isnan(y[rows + r]);
            finite &= isfinite(y[r]) && isfinite(y[2 * rows + r]);
        }
        CHECK(nan1 && finite, "%s: token 1 NaN, tokens 0 and 2 finite", v ? "vnni" : "ref");
        free(y);
    }
    airllm_mm_act_release(&act);
    free(x);
    free_weight(&t);
}

/* AIRLLM_MM_Q8 is read until found valid; anything but 0 and 1 is an
 * error, not a silent default. Runs before any airllm_mm_set_q8. */
static void test_env(void)
{
    tweight t = make_weight(&formats[3], 32, 64, 32);
    airllm_err err;
    /* (off when unset: the family goldens of tests/run_*.sh hold that) */
    setenv("AIRLLM_MM_Q8", "yes", 1);
    int used = airllm_mm_q8_used(&t.w, 64, &err);
    if (airllm_mm_q8_vnni_available() && airllm_mm_impl_available(AIRLLM_MM_IMPL_AVX512))
        CHECK(used == -1 && strstr(err.msg, "AIRLLM_MM_Q8"), "AIRLLM_MM_Q8=yes refused: %s",
              used ? err.msg : "accepted");
    setenv("AIRLLM_MM_Q8", "1", 1);
    int on = airllm_mm_q8_vnni_available() && airllm_mm_impl_available(AIRLLM_MM_IMPL_AVX512);
    CHECK(airllm_mm_q8_used(&t.w, 64, &err) == on, "AIRLLM_MM_Q8=1: on where VNNI is");
    setenv("AIRLLM_MM_Q8", "0", 1);
    CHECK(airllm_mm_q8_used(&t.w, 64, &err) == on, "remembered once valid");
    unsetenv("AIRLLM_MM_Q8");
    airllm_mm_set_q8(1); /* the call wins over the environment */
    CHECK(airllm_mm_q8_used(&t.w, 64, &err) ==
              (airllm_mm_q8_vnni_available() &&
               airllm_mm_impl_available(AIRLLM_MM_IMPL_AVX512)),
          "set_q8(1): on where VNNI is");
    free_weight(&t);
}

int main(void)
{
    printf("AVX512-VNNI kernels: %s; AMX: %s\n", airllm_mm_q8_vnni_available() ? "yes" : "no",
           airllm_mm_q8_amx_available() ? "yes" : "no");
    test_env();
    quantize_hand();
    quantize_same();
    even_odd();
    test_shapes();
    test_routing();
    test_nonfinite();
    return test_summary();
}
