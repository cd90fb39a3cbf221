/* The tensor encoders (lib/airllm_encode.c): raw passes bytes through;
 * zstd's frames decode back to the input, do not depend on the jobs, and
 * fall back to raw for data they do not shrink; the quantizers' stored
 * codes and scales equal lib's scalar reference quantizer over the whole
 * tensor, whatever the feed sizes and jobs, with the error statistics of
 * the reference dequantization. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "airllm_bytes.h"
#include "airllm_codec.h"
#include "airllm_encode.h"
#include "test_util.h"

/* What an encoder stored: start's result and the bytes written. */
typedef struct {
    int starts;
    airllm_enc_result r;
    uint8_t *buf;
    size_t len, cap;
} sink;

static int sink_start(void *ctx, const airllm_enc_result *r, airllm_err *err)
{
    (void)err;
    sink *s = ctx;
    s->starts++;
    s->r = *r;
    return 0;
}

static int sink_write(void *ctx, const void *data, size_t n, airllm_err *err)
{
    sink *s = ctx;
    if (s->len + n > s->cap) {
        size_t cap = (s->len + n) * 2;
        uint8_t *b = realloc(s->buf, cap);
        if (!b)
            return airllm_errf(err, "out of memory");
        s->buf = b;
        s->cap = cap;
    }
    memcpy(s->buf + s->len, data, n);
    s->len += n;
    return 0;
}

/* Encodes data (len bytes) as tensor t with o, in feeds of piece bytes. */
static int encode(const airllm_enc_opts *o, const airllm_ct_tensor *t, const uint8_t *data,
                  size_t len, size_t piece, sink *s, airllm_enc_result *r, airllm_err *err)
{
    memset(s, 0, sizeof *s);
    airllm_encoder *e = airllm_enc_new(o, piece, err);
    if (!e)
        return -1;
    airllm_enc_out out = {s, sink_start, sink_write};
    int rc = airllm_enc_begin(e, t, "unit.airc", &out, err);
    for (size_t off = 0; !rc && off < len; off += piece)
        rc = airllm_enc_feed(e, data + off, len - off < piece ? len - off : piece, err);
    if (!rc)
        rc = airllm_enc_finish(e, r, err);
    airllm_enc_free(e);
    return rc;
}

static airllm_ct_tensor f32_tensor(uint64_t rows, uint64_t cols)
{
    airllm_ct_tensor t = {0};
    t.name = "model.layers.0.mlp.up_proj.weight";
    t.dtype = AIRLLM_DTYPE_F32;
    t.ndim = 2;
    t.shape[0] = rows;
    t.shape[1] = cols;
    t.raw_len = t.stored_len = rows * cols * 4;
    t.encoding = AIRLLM_ENC_RAW;
    return t;
}

static void test_raw(const uint8_t *data, size_t len)
{
    airllm_enc_opts o = {.kind = AIRLLM_ENC_KIND_RAW, .jobs = 1};
    airllm_ct_tensor t = f32_tensor(len / 4 / 64, 64);
    sink s;
    airllm_enc_result r;
    airllm_err err = {{0}};
    CHECK(encode(&o, &t, data, len, 10000, &s, &r, &err) == 0, "raw: %s", err.msg);
    CHECK(s.starts == 1 && s.r.encoding == AIRLLM_ENC_RAW && s.r.stored_len == len,
          "raw: start %d times, encoding %d, stored_len %llu", s.starts, (int)s.r.encoding,
          (unsigned long long)s.r.stored_len);
    CHECK(s.len == len && memcmp(s.buf, data, len) == 0, "raw: bytes changed");
    free(s.buf);
}

static void test_zstd(const uint8_t *smooth, const uint8_t *noise, size_t len)
{
    const uint32_t chunk = 16384;
    airllm_ct_tensor t = f32_tensor(len / 4 / 64, 64);
    airllm_err err = {{0}};
    sink s1, s3;
    airllm_enc_result r1, r3;
    airllm_enc_opts o = {.kind = AIRLLM_ENC_KIND_ZSTD, .jobs = 1, .level = 3, .chunk = chunk};
    CHECK(encode(&o, &t, smooth, len, chunk, &s1, &r1, &err) == 0, "zstd: %s", err.msg);
    CHECK(r1.encoding == AIRLLM_ENC_ZSTD && r1.enc_param[0] == 4 && r1.enc_param[1] == chunk,
          "zstd: encoding %d, width %u, chunk %u", (int)r1.encoding, r1.enc_param[0],
          r1.enc_param[1]);
    CHECK(s1.starts == 1 && s1.r.encoding == AIRLLM_ENC_ZSTD && s1.r.stored_len == s1.len &&
              r1.stored_len == s1.len && s1.len < len,
          "zstd: stored %zu bytes, start says %llu, of %zu", s1.len,
          (unsigned long long)s1.r.stored_len, len);
    uint8_t *back = malloc(len), *scratch = malloc(chunk);
    CHECK(airllm_zstd_tensor_decode(back, len, s1.buf, s1.len, 4, chunk, scratch, &err) == 0 &&
              memcmp(back, smooth, len) == 0,
          "zstd: frames do not decode to the input: %s", err.msg);
    /* 3 jobs, feeds of 3 chunks: the same frames */
    o.jobs = 3;
    CHECK(encode(&o, &t, smooth, len, 3 * chunk, &s3, &r3, &err) == 0, "zstd -j3: %s", err.msg);
    CHECK(s3.len == s1.len && memcmp(s3.buf, s1.buf, s1.len) == 0,
          "zstd: 3 jobs give other bytes");
    free(s3.buf);
    /* incompressible: stored raw, the input itself */
    CHECK(encode(&o, &t, noise, len, 3 * chunk, &s3, &r3, &err) == 0, "zstd noise: %s",
          err.msg);
    CHECK(r3.encoding == AIRLLM_ENC_RAW && s3.r.encoding == AIRLLM_ENC_RAW &&
              r3.stored_len == len && s3.len == len && memcmp(s3.buf, noise, len) == 0,
          "zstd: no raw fallback for noise (encoding %d, %zu bytes)", (int)r3.encoding, s3.len);
    free(s3.buf);
    free(s1.buf);
    free(back);
    free(scratch);
}

/* The stored tensor against the reference quantizer over all of x. */
static void test_quant(airllm_quant_type qt, const float *x, const uint8_t *data, size_t n)
{
    const uint32_t block = 64;
    airllm_err err = {{0}};
    airllm_ct_tensor t = f32_tensor(n / 256, 256);
    t.encoding = airllm_quant_encoding(qt);
    t.enc_param[0] = block;
    airllm_ct_qlayout l;
    CHECK(airllm_ct_tensor_qlayout(&t, &l, &err) == 0, "layout: %s", err.msg);
    t.stored_len = l.stored_len;
    size_t nb = airllm_quant_nblocks(n, block), cb = airllm_quant_code_bytes(qt, n);
    uint8_t *codes = malloc(cb);
    float *absmax = malloc(nb * sizeof *absmax), *y = malloc(n * sizeof *y);
    CHECK(airllm_quantize_ref(qt, x, n, block, codes, cb, absmax, nb, &err) == 0 &&
              airllm_dequantize_ref(qt, codes, cb, absmax, nb, n, block, y, &err) == 0,
          "reference: %s", err.msg);
    airllm_quant_stats want;
    CHECK(airllm_quant_error_stats(x, y, n, &want, &err) == 0, "stats: %s", err.msg);
    /* odd feeds (not a multiple of an element or a slice), 1 and 3 jobs */
    size_t pieces[2] = {100003, 4u << 20};
    unsigned jobs[2] = {3, 1};
    for (int k = 0; k < 2; k++) {
        airllm_enc_opts o = {.kind = AIRLLM_ENC_KIND_QUANT, .jobs = jobs[k]};
        sink s;
        airllm_enc_result r;
        const char *name = airllm_quant_type_name(qt);
        CHECK(encode(&o, &t, data, n * 4, pieces[k], &s, &r, &err) == 0, "%s: %s", name,
              err.msg);
        CHECK(s.starts == 1 && s.len == l.stored_len && r.stored_len == l.stored_len,
              "%s: stored %zu bytes, layout says %llu", name, s.len,
              (unsigned long long)l.stored_len);
        if (s.len != l.stored_len) {
            free(s.buf);
            continue;
        }
        CHECK(memcmp(s.buf, codes, cb) == 0, "%s (jobs %u): codes differ from the reference",
              name, jobs[k]);
        bool scales = true;
        for (size_t b = 0; b < nb; b++)
            scales &= airllm_get_lef32(s.buf + l.scales_off + 4 * b) == absmax[b];
        CHECK(scales, "%s (jobs %u): scales differ from the reference", name, jobs[k]);
        CHECK(r.has_stats && fabs(r.stats.rmse - want.rmse) <= 1e-6 * want.rmse &&
                  fabs(r.stats.rel_fro - want.rel_fro) <= 1e-6 * want.rel_fro &&
                  fabs(r.stats.max_abs - want.max_abs) <= 1e-6 * want.max_abs,
              "%s: stats rmse %g max %g rel %g, reference %g %g %g", name, r.stats.rmse,
              r.stats.max_abs, r.stats.rel_fro, want.rmse, want.max_abs, want.rel_fro);
        free(s.buf);
    }
    free(codes);
    free(absmax);
    free(y);
}

int main(void)
{
    /* [256, 1000] f32: 1 MB, over 3 quantization slices and 15 zstd chunks;
     * the element count is not a multiple of a slice */
    const size_t n = 256 * 1000, len = n * 4;
    float *x = malloc(len);
    uint8_t *smooth = malloc(len), *noise = malloc(len);
    uint32_t st = 12345;
    for (size_t i = 0; i < n; i++) {
        st = st * 1103515245u + 12345u;
        x[i] = (float)sin((double)i * 0.001) * 0.05f + (float)((st >> 8) & 0xff) * 1e-5f;
        airllm_put_lef32(smooth + 4 * i, x[i]);
    }
    for (size_t i = 0; i < len; i++) {
        st = st * 1103515245u + 12345u;
        noise[i] = (uint8_t)(st >> 24);
    }
    test_raw(smooth, len);
    test_zstd(smooth, noise, len);
    test_quant(AIRLLM_QUANT_NF4, x, smooth, n);
    test_quant(AIRLLM_QUANT_FP4, x, smooth, n);
    test_quant(AIRLLM_QUANT_INT8, x, smooth, n);
    free(x);
    free(smooth);
    free(noise);
    return test_summary();
}
