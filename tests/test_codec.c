/* Unit tests for the zstd tensor encoding (lib/airllm_codec.c): byte
 * grouping, chunked compression round trips, determinism, the benefit of
 * grouping on bf16-like data, and refusal of malformed streams. */
#include "airllm_codec.h"

#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zstd.h>

#include "test_util.h"

static uint64_t rng = 0x9E3779B97F4A7C15ull;
static uint32_t rnd(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (uint32_t)(rng >> 11);
}

static void test_bytegroup(void)
{
    /* 7 elements of 2 bytes / 4 bytes: odd element counts */
    uint8_t src[28], g[28], back[28];
    for (int i = 0; i < 28; i++)
        src[i] = (uint8_t)(i + 1);
    airllm_bytegroup(g, src, 14, 2);
    /* plane 0 = bytes 0,2,4..., plane 1 = bytes 1,3,5... */
    int ok = 1;
    for (int i = 0; i < 7; i++)
        ok &= g[i] == src[2 * i] && g[7 + i] == src[2 * i + 1];
    CHECK(ok, "width 2 planes");
    airllm_byteungroup(back, g, 14, 2);
    CHECK(memcmp(back, src, 14) == 0, "width 2 round trip");

    airllm_bytegroup(g, src, 28, 4);
    ok = 1;
    for (int i = 0; i < 7; i++)
        for (int j = 0; j < 4; j++)
            ok &= g[j * 7 + i] == src[4 * i + j];
    CHECK(ok, "width 4 planes");
    airllm_byteungroup(back, g, 28, 4);
    CHECK(memcmp(back, src, 28) == 0, "width 4 round trip");

    airllm_bytegroup(g, src, 13, 0);
    CHECK(memcmp(g, src, 13) == 0, "width 0 copies");
    airllm_byteungroup(back, g, 13, 0);
    CHECK(memcmp(back, src, 13) == 0, "width 0 round trip");

    /* larger random buffers, odd element counts */
    size_t n = 4 * 100003;
    uint8_t *a = malloc(n), *b = malloc(n), *c = malloc(n);
    for (size_t i = 0; i < n; i++)
        a[i] = (uint8_t)rnd();
    for (unsigned w = 0; w <= 4; w += 2) {
        size_t m = w == 2 ? 2 * 100003 : n;
        airllm_bytegroup(b, a, m, w);
        airllm_byteungroup(c, b, m, w);
        CHECK(memcmp(a, c, m) == 0, "random round trip width %u", w);
    }
    free(a);
    free(b);
    free(c);
}

/* bf16 of a smooth float signal: the byte-group's intended case. */
static uint16_t to_bf16(float f)
{
    uint32_t u;
    memcpy(&u, &f, 4);
    return (uint16_t)(u >> 16);
}

static void fill_smooth_bf16(uint8_t *buf, size_t n_elems)
{
    for (size_t i = 0; i < n_elems; i++) {
        /* weight-like values: small Gaussian-ish noise around 0 */
        float x = 0.02f * (float)sin((double)i * 0.001) +
                  0.01f * (((float)(rnd() % 2001) - 1000.0f) / 1000.0f);
        uint16_t b = to_bf16(x);
        buf[2 * i] = (uint8_t)b;
        buf[2 * i + 1] = (uint8_t)(b >> 8);
    }
}

/* Compresses a whole tensor chunk by chunk into a malloc'ed stream. */
static uint8_t *encode_tensor(const uint8_t *src, size_t n, unsigned width,
                              uint32_t chunk, int level, size_t *out_len)
{
    size_t nchunks = (n + chunk - 1) / chunk;
    size_t cap = nchunks * airllm_zstd_chunk_bound(chunk) + 1;
    uint8_t *out = malloc(cap), *scratch = malloc(chunk);
    size_t pos = 0;
    airllm_err err;
    for (size_t off = 0; off < n; off += chunk) {
        size_t len = n - off < chunk ? n - off : chunk, got;
        if (airllm_zstd_chunk_compress(out + pos, cap - pos, &got, src + off, len, level,
                                       width, scratch, &err) != 0) {
            printf("compress: %s\n", err.msg);
            free(out);
            free(scratch);
            return NULL;
        }
        pos += got;
    }
    free(scratch);
    *out_len = pos;
    return out;
}

static int decode(const uint8_t *s, size_t sl, size_t raw_len, unsigned width,
                  uint32_t chunk, uint8_t *dst, airllm_err *err)
{
    uint8_t *scratch = malloc(chunk);
    int r = airllm_zstd_tensor_decode(dst, raw_len, s, sl, width, chunk, scratch, err);
    free(scratch);
    return r;
}

static void test_round_trips(void)
{
    const uint32_t chunk = 64 * 1024;
    size_t n = 3 * chunk + 4094; /* last chunk short, even: 2- and... */
    n -= n % 4;                 /* ...4-byte element multiples */
    uint8_t *rand_buf = malloc(n), *smooth = malloc(n), *dst = malloc(n);
    for (size_t i = 0; i < n; i++)
        rand_buf[i] = (uint8_t)rnd();
    fill_smooth_bf16(smooth, n / 2);
    airllm_err err;
    for (unsigned w = 0; w <= 4; w += 2) {
        const uint8_t *bufs[2] = {rand_buf, smooth};
        for (int k = 0; k < 2; k++) {
            size_t sl;
            uint8_t *s = encode_tensor(bufs[k], n, w, chunk, 3, &sl);
            CHECK(s != NULL, "encode");
            if (!s)
                continue;
            memset(dst, 0xEE, n);
            int r = decode(s, sl, n, w, chunk, dst, &err);
            CHECK(r == 0 && memcmp(dst, bufs[k], n) == 0, "round trip w=%u %s: %s", w,
                  k ? "smooth" : "random", r ? err.msg : "");
            /* determinism */
            size_t sl2;
            uint8_t *s2 = encode_tensor(bufs[k], n, w, chunk, 3, &sl2);
            CHECK(s2 && sl2 == sl && memcmp(s, s2, sl) == 0, "deterministic w=%u", w);
            free(s2);
            free(s);
        }
    }
    /* one frame at a time with frame_decode */
    size_t sl;
    uint8_t *s = encode_tensor(smooth, n, 2, chunk, 3, &sl);
    uint8_t *scratch = malloc(chunk);
    size_t in = 0, out = 0, frames = 0;
    int ok = 1;
    while (in < sl && ok) {
        size_t prod, cons;
        ok = airllm_zstd_frame_decode(dst + out, chunk, &prod, s + in, sl - in, &cons, 2,
                                      scratch, &err) == 0;
        in += cons;
        out += prod;
        frames++;
    }
    CHECK(ok && out == n && frames == 4 && memcmp(dst, smooth, n) == 0,
          "frame by frame: %s", ok ? "" : err.msg);

    /* empty tensor: no frames */
    CHECK(airllm_zstd_tensor_decode(dst, 0, s, 0, 2, chunk, scratch, &err) == 0,
          "empty tensor");

    /* grouping helps on bf16-like data */
    size_t l0, l2;
    uint8_t *s0 = encode_tensor(smooth, n, 0, chunk, 3, &l0);
    uint8_t *s2 = encode_tensor(smooth, n, 2, chunk, 3, &l2);
    printf("bf16-like %zu bytes: width 0 -> %zu (ratio %.3f), width 2 -> %zu (ratio "
           "%.3f)\n",
           n, l0, (double)n / (double)l0, l2, (double)n / (double)l2);
    CHECK(l2 < l0, "width 2 (%zu) should beat width 0 (%zu)", l2, l0);
    free(s0);
    free(s2);
    free(s);
    free(scratch);
    free(rand_buf);
    free(smooth);
    free(dst);

    /* bad parameters */
    uint8_t small[8] = {0}, out8[64];
    size_t got;
    CHECK(airllm_zstd_chunk_compress(out8, sizeof out8, &got, small, 8, 3, 3, small, &err) ==
                  -1 &&
              strstr(err.msg, "width 3"),
          "width 3 refused: %s", err.msg);
    CHECK(airllm_zstd_chunk_compress(out8, sizeof out8, &got, small, 6, 3, 4, out8, &err) ==
                  -1 &&
              strstr(err.msg, "multiple"),
          "ragged chunk refused: %s", err.msg);
    CHECK(airllm_zstd_chunk_compress(out8, sizeof out8, &got, small, 8, 999, 0, NULL,
                                     &err) == -1 &&
              strstr(err.msg, "level"),
          "bad level refused: %s", err.msg);
}

static void expect_fail(const char *what, const uint8_t *s, size_t sl, size_t raw_len,
                        unsigned w, uint32_t chunk, const char *substr)
{
    uint8_t *dst = malloc(raw_len ? raw_len : 1);
    airllm_err err;
    err.msg[0] = 0;
    int r = decode(s, sl, raw_len, w, chunk, dst, &err);
    CHECK(r == -1 && strstr(err.msg, substr), "%s: expected \"%s\", got r=%d \"%s\"",
          what, substr, r, err.msg);
    free(dst);
}

static void test_decode_errors(void)
{
    const uint32_t chunk = 8192;
    size_t n = 3 * chunk + 1000;
    uint8_t *raw = malloc(n);
    fill_smooth_bf16(raw, n / 2);
    size_t sl;
    uint8_t *s = encode_tensor(raw, n, 2, chunk, 3, &sl);
    uint8_t *t = malloc(sl + 100);

    /* truncated stream: every proper prefix must fail (no crash) */
    int accepted = 0;
    for (size_t l = 0; l < sl; l++)
        if (decode(s, l, n, 2, chunk, raw, NULL) == 0)
            accepted++;
    CHECK(accepted == 0, "%d truncations accepted", accepted);
    expect_fail("truncated frame", s, sl - 5, n, 2, chunk, "truncated");
    expect_fail("empty stream for nonempty tensor", s, 0, n, 2, chunk, "total size mismatch");

    /* trailing garbage */
    memcpy(t, s, sl);
    memset(t + sl, 0x5A, 20);
    expect_fail("trailing garbage", t, sl + 20, n, 2, chunk, "trailing");
    /* a whole extra frame */
    memcpy(t + sl, s, 20 < sl ? 20 : sl);
    expect_fail("trailing frame", t, sl + 20, n, 2, chunk, "trailing");

    /* frame content larger than the chunk: decode with a smaller chunk */
    expect_fail("frame > chunk", s, sl, n, 2, 4096, "exceeds the chunk size");
    /* total size mismatch: raw_len larger / smaller than the frames */
    expect_fail("raw_len too big", s, sl, n + 2, 2, chunk, "expected 1002");
    expect_fail("raw_len too small", s, sl, n - 2, 2, chunk, "total size mismatch");
    /* non-canonical chunking: a short frame in the middle */
    {
        size_t a, b;
        uint8_t *p1 = encode_tensor(raw, 4096, 2, 4096, 3, &a);
        uint8_t *p2 = encode_tensor(raw + 4096, 8192, 2, 8192, 3, &b);
        uint8_t *cat = malloc(a + b);
        memcpy(cat, p1, a);
        memcpy(cat + a, p2, b);
        expect_fail("short middle frame", cat, a + b, 12288, 2, 8192, "expected 8192");
        free(p1);
        free(p2);
        free(cat);
    }
    /* not a frame at all / a skippable frame */
    expect_fail("garbage", (const uint8_t *)"hello world, not zstd", 21, 16, 0, 4096,
                "not a valid zstd frame");
    {
        uint8_t skip[16] = {0x50, 0x2A, 0x4D, 0x18, 8, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8};
        expect_fail("skippable frame", skip, 16, 16, 0, 4096, "not a valid zstd frame");
    }
    /* corrupted byte in a frame: error or (rarely) wrong data, never a crash;
     * with grouping width the frame size must still match. Try many spots. */
    int errors = 0, silent = 0;
    uint8_t *dst = malloc(n);
    for (size_t i = 0; i < sl; i += 7) {
        memcpy(t, s, sl);
        t[i] ^= 0x41;
        if (decode(t, sl, n, 2, chunk, dst, NULL) != 0)
            errors++;
        else if (memcmp(dst, raw, n) != 0)
            silent++;
    }
    printf("corrupted-byte trials: %d refused, %d decoded to different bytes\n", errors,
           silent);
    CHECK(errors > 0, "some corruptions detected");
    /* a corruption in the first frame's block header is always detected */
    memcpy(t, s, sl);
    {
        /* find the first block header after the frame header: the frame
         * header of a single-segment frame is 4 magic + 1 FHD + FCS bytes */
        uint8_t fhd = t[4];
        size_t fcs_sizes[4] = {1, 2, 4, 8};
        size_t fh = 5 + fcs_sizes[fhd >> 6] + ((fhd & 0x20) ? 0 : 1);
        t[fh + 2] = 0xFF; /* block size huge, last-block flag soup */
        t[fh + 1] = 0xFF;
        expect_fail("bad block header", t, sl, n, 2, chunk, "frame 0");
    }
    /* frame_decode with a too-small buffer */
    {
        size_t prod, cons;
        airllm_err err;
        uint8_t *scr = malloc(chunk);
        CHECK(airllm_zstd_frame_decode(dst, 100, &prod, s, sl, &cons, 2, scr, &err) == -1 &&
                  strstr(err.msg, "exceeds"),
              "small dst: %s", err.msg);
        CHECK(airllm_zstd_frame_decode(dst, chunk, &prod, s, sl, &cons, 3, scr, &err) == -1,
              "frame width 3");
        free(scr);
    }
    /* width/element mismatch: width 4 on a frame of 8190 bytes */
    {
        size_t a;
        uint8_t *p = encode_tensor(raw, 8190, 2, 8192, 3, &a);
        expect_fail("content not multiple of width", p, a, 8190, 4, 8192, "multiple");
        free(p);
    }
    /* a frame without its content size in the header is refused */
    {
        ZSTD_CCtx *c = ZSTD_createCCtx();
        ZSTD_CCtx_setParameter(c, ZSTD_c_contentSizeFlag, 0);
        uint8_t fr[256];
        size_t fl = ZSTD_compress2(c, fr, sizeof fr, raw, 64);
        ZSTD_freeCCtx(c);
        CHECK(!ZSTD_isError(fl), "compress without content size");
        if (!ZSTD_isError(fl))
            expect_fail("unknown content size", fr, fl, 64, 0, 4096, "content size");
    }
    free(dst);
    free(t);
    free(s);
    free(raw);
}

/* Contexts are per thread: concurrent compressions must not interfere and
 * must give the same bytes as a single-threaded run. */
typedef struct {
    const uint8_t *src;
    size_t n;
    uint8_t *out;
    size_t out_len;
    int ok;
} job;

static void *worker(void *arg)
{
    job *j = arg;
    for (int rep = 0; rep < 3; rep++) {
        free(j->out);
        j->out = encode_tensor(j->src, j->n, 2, 16384, 5, &j->out_len);
        uint8_t *d = malloc(j->n);
        airllm_err err;
        j->ok = j->out && decode(j->out, j->out_len, j->n, 2, 16384, d, &err) == 0 &&
                memcmp(d, j->src, j->n) == 0;
        free(d);
        if (!j->ok)
            break;
    }
    return NULL;
}

static void test_threads(void)
{
    size_t n = 100000;
    uint8_t *src = malloc(n);
    fill_smooth_bf16(src, n / 2);
    size_t ref_len;
    uint8_t *ref = encode_tensor(src, n, 2, 16384, 5, &ref_len);
    job jobs[4];
    pthread_t th[4];
    for (int i = 0; i < 4; i++) {
        jobs[i] = (job){src, n, NULL, 0, 0};
        pthread_create(&th[i], NULL, worker, &jobs[i]);
    }
    for (int i = 0; i < 4; i++) {
        pthread_join(th[i], NULL);
        CHECK(jobs[i].ok && jobs[i].out_len == ref_len &&
                  memcmp(jobs[i].out, ref, ref_len) == 0,
              "thread %d", i);
        free(jobs[i].out);
    }
    free(ref);
    free(src);
}

int main(void)
{
    test_threads();
    test_bytegroup();
    test_round_trips();
    test_decode_errors();
    return test_summary();
}
