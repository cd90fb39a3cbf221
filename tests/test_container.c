/* Unit tests for the per-unit container (lib/airllm_container.c): layout,
 * encode/parse round trips, and a table of handcrafted corruptions that the
 * parser must refuse with a recognizable message. */
#include "airllm_container.h"
#include "airllm_quant.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "airllm_bytes.h"
#include "airllm_hash.h"
#include "test_util.h"

typedef struct {
    const char *name;
    airllm_dtype dtype;
    unsigned ndim;
    uint64_t shape[AIRLLM_MAX_DIMS];
    airllm_encoding enc;
    uint32_t p0, p1;
    uint64_t stored; /* for zstd; raw uses raw_len */
} spec;

/* When set, build() lays files out as format 1.0/1.1 (no check block), as
 * the files written before 1.2: the tests of the 1.0/1.1 rules use those. */
static int g_legacy;

/* Builds a laid-out header from specs (raw_len computed from the shape). */
static int build(airllm_ct_header *h, airllm_unit_kind kind, int32_t layer,
                 const spec *s, unsigned n)
{
    memset(h, 0, sizeof *h);
    h->unit_kind = kind;
    h->layer_index = layer;
    h->n_tensors = n;
    h->tensors = calloc(n ? n : 1, sizeof *h->tensors);
    for (unsigned i = 0; i < n; i++) {
        airllm_ct_tensor *t = &h->tensors[i];
        t->name = strdup(s[i].name);
        t->dtype = s[i].dtype;
        t->ndim = s[i].ndim;
        memcpy(t->shape, s[i].shape, sizeof t->shape);
        t->encoding = s[i].enc;
        t->enc_param[0] = s[i].p0;
        t->enc_param[1] = s[i].p1;
        if (airllm_shape_nbytes(t->dtype, t->shape, t->ndim, NULL, &t->raw_len) != 0)
            return -1;
        t->stored_len = t->encoding == AIRLLM_ENC_RAW ? t->raw_len : s[i].stored;
    }
    airllm_err err;
    if (airllm_ct_layout(h, &err) != 0) {
        printf("layout: %s\n", err.msg);
        return -1;
    }
    if (g_legacy) {
        h->version_minor = 0;
        for (unsigned i = 0; i < n; i++)
            if (airllm_encoding_is_quant(h->tensors[i].encoding))
                h->version_minor = 1;
        h->file_size = h->check_offset;
        h->check_offset = 0;
    }
    return 0;
}

/* Encodes h into a whole-file buffer (header region + zero data). */
static uint8_t *whole_file(const airllm_ct_header *h, size_t *len)
{
    airllm_err err;
    uint8_t *hdr;
    size_t hl;
    if (airllm_ct_encode(h, &hdr, &hl, &err) != 0) {
        printf("encode: %s\n", err.msg);
        return NULL;
    }
    uint8_t *f = calloc(1, h->file_size);
    memcpy(f, hdr, hl);
    free(hdr);
    *len = h->file_size;
    if (h->version_minor >= 2) {
        /* the data is zeros: record their XXH3, append the check block */
        airllm_ct_header c = *h;
        c.tensors = calloc(h->n_tensors ? h->n_tensors : 1, sizeof *c.tensors);
        memcpy(c.tensors, h->tensors, h->n_tensors * sizeof *c.tensors);
        for (uint32_t i = 0; i < h->n_tensors; i++)
            c.tensors[i].xxh3 = airllm_xxh3(f + h->tensors[i].offset,
                                            (size_t)h->tensors[i].stored_len);
        uint8_t *blk;
        size_t bl;
        if (airllm_ct_encode_checks(&c, &blk, &bl, &err) != 0) {
            printf("encode_checks: %s\n", err.msg);
            free(c.tensors);
            free(f);
            return NULL;
        }
        memcpy(f + h->check_offset, blk, bl);
        free(blk);
        free(c.tensors);
    }
    return f;
}

static int same_tensor(const airllm_ct_tensor *a, const airllm_ct_tensor *b)
{
    if (strcmp(a->name, b->name) || a->dtype != b->dtype || a->ndim != b->ndim ||
        a->encoding != b->encoding || a->offset != b->offset ||
        a->stored_len != b->stored_len || a->raw_len != b->raw_len)
        return 0;
    for (unsigned d = 0; d < a->ndim; d++)
        if (a->shape[d] != b->shape[d])
            return 0;
    return memcmp(a->enc_param, b->enc_param, sizeof a->enc_param) == 0;
}

static void test_names(void)
{
    airllm_unit_kind k;
    CHECK(strcmp(airllm_unit_kind_name(AIRLLM_UNIT_LM_HEAD), "lm_head") == 0, "lm_head");
    CHECK(airllm_unit_kind_from_name("norm", &k) == 0 && k == AIRLLM_UNIT_NORM, "norm");
    CHECK(airllm_unit_kind_from_name("nope", &k) == -1, "unknown kind");
    CHECK(airllm_unit_kind_name((airllm_unit_kind)9) == NULL, "kind 9");
    CHECK(strcmp(airllm_encoding_name(AIRLLM_ENC_ZSTD), "zstd") == 0, "zstd name");
    CHECK(strcmp(airllm_encoding_name(AIRLLM_ENC_INT8), "int8") == 0, "int8 name");
    CHECK(airllm_encoding_name((airllm_encoding)5) == NULL, "enc 5");
}

static void test_round_trip(void)
{
    spec s[] = {
        {"model.layers.3.self_attn.q_proj.weight", AIRLLM_DTYPE_BF16, 2, {64, 96},
         AIRLLM_ENC_RAW, 0, 0, 0},
        {"model.layers.3.input_layernorm.weight", AIRLLM_DTYPE_F32, 1, {64},
         AIRLLM_ENC_ZSTD, 4, 4 << 20, 100},
        {"empty", AIRLLM_DTYPE_F16, 2, {0, 5}, AIRLLM_ENC_RAW, 0, 0, 0},
        {"empty.zstd", AIRLLM_DTYPE_BF16, 1, {0}, AIRLLM_ENC_ZSTD, 2, 4096, 0},
        {"scalar", AIRLLM_DTYPE_I64, 0, {0}, AIRLLM_ENC_RAW, 0, 0, 0},
        {"bits\xc3\xa9\xe2\x82\xac", AIRLLM_DTYPE_U8, 3, {3, 5, 7}, AIRLLM_ENC_RAW, 0,
         0, 0},
        {"f4", AIRLLM_DTYPE_F4, 1, {6}, AIRLLM_ENC_RAW, 0, 0, 0},
        {"f64.zstd", AIRLLM_DTYPE_F64, 8, {1, 2, 1, 2, 1, 2, 1, 3}, AIRLLM_ENC_ZSTD, 0,
         8192, 77},
    };
    unsigned n = sizeof s / sizeof s[0];
    airllm_ct_header h, p;
    airllm_err err;
    CHECK(build(&h, AIRLLM_UNIT_LAYER, 3, s, n) == 0, "build");
    CHECK(h.data_start == 4096, "data_start %llu", (unsigned long long)h.data_start);
    CHECK(h.tensors[0].offset == 4096, "first offset");
    CHECK(h.tensors[1].offset == 4096 + 12288, "second offset %llu",
          (unsigned long long)h.tensors[1].offset);
    /* zero-size tensors share the next aligned offset */
    CHECK(h.tensors[2].offset == 4096 + 12288 + 4096, "empty offset");
    CHECK(h.tensors[3].offset == h.tensors[2].offset, "empty zstd offset");
    CHECK(h.tensors[4].offset == h.tensors[2].offset, "scalar offset");
    CHECK(h.tensors[5].offset == h.tensors[4].offset + 4096, "u8 offset");
    CHECK(h.check_offset == h.tensors[7].offset + 4096 &&
              h.file_size == h.check_offset + 4096,
          "file size");
    size_t len;
    uint8_t *f = whole_file(&h, &len);
    CHECK(f != NULL, "whole file");
    if (!f)
        return;
    int r = airllm_ct_parse(f, len, len, &p, &err);
    CHECK(r == 0, "parse: %s", r ? err.msg : "");
    if (r == 0) {
        CHECK(p.n_tensors == n && p.unit_kind == AIRLLM_UNIT_LAYER && p.layer_index == 3 &&
                  p.version_major == 1 && p.version_minor == 2 && p.has_checks &&
                  p.header_bytes == h.header_bytes && p.data_start == h.data_start &&
                  p.file_size == h.file_size,
              "header fields");
        for (unsigned i = 0; i < n && i < p.n_tensors; i++)
            CHECK(same_tensor(&h.tensors[i], &p.tensors[i]), "tensor %u", i);
        CHECK(airllm_ct_find(&p, "scalar") == 4, "find");
        CHECK(airllm_ct_find(&p, "absent") == -1, "find absent");
        /* the header region alone parses too */
        airllm_ct_header q;
        CHECK(airllm_ct_parse(f, (size_t)h.data_start, len, &q, &err) == 0,
              "header only: %s", err.msg);
        airllm_ct_free(&q);
        /* re-encoding the parsed header gives the same bytes */
        uint8_t *again;
        size_t al;
        CHECK(airllm_ct_encode(&p, &again, &al, &err) == 0 && al == h.data_start &&
                  memcmp(again, f, al) == 0,
              "re-encode identical");
        free(again);
    }
    airllm_ct_free(&p);

    /* read_file on a real file */
    char path[] = "/tmp/test_container_XXXXXX";
    int fd = mkstemp(path);
    CHECK(fd >= 0, "mkstemp");
    if (fd >= 0) {
        CHECK(write(fd, f, len) == (ssize_t)len, "write");
        close(fd);
        r = airllm_ct_read_file(path, &p, &err);
        CHECK(r == 0 && p.n_tensors == n, "read_file: %s", r ? err.msg : "");
        airllm_ct_free(&p);
        /* truncated file: message names the path */
        CHECK(truncate(path, (off_t)len - 4096) == 0, "truncate");
        r = airllm_ct_read_file(path, &p, &err);
        CHECK(r == -1 && strstr(err.msg, path) && strstr(err.msg, "truncated"),
              "truncated file: %s", err.msg);
        CHECK(truncate(path, 10) == 0, "truncate 10");
        r = airllm_ct_read_file(path, &p, &err);
        CHECK(r == -1 && strstr(err.msg, path) && strstr(err.msg, "truncated"),
              "10-byte file: %s", err.msg);
        unlink(path);
        r = airllm_ct_read_file(path, &p, &err);
        CHECK(r == -1 && strstr(err.msg, path), "missing file: %s", err.msg);
    }
    free(f);
    airllm_ct_free(&h);

    /* no tensors at all */
    CHECK(build(&h, AIRLLM_UNIT_NORM, -1, NULL, 0) == 0, "build empty");
    CHECK(h.header_bytes == 64 && h.data_start == 4096 && h.check_offset == 4096 &&
              h.file_size == 8192,
          "empty layout");
    f = whole_file(&h, &len);
    CHECK(f && airllm_ct_parse(f, len, len, &p, &err) == 0 && p.n_tensors == 0,
          "empty parse");
    airllm_ct_free(&p);
    free(f);
    airllm_ct_free(&h);

    /* a header larger than one page */
    spec many[40];
    char names[40][200];
    for (int i = 0; i < 40; i++) {
        snprintf(names[i], sizeof names[i], "tensor.%03d.%0150d", i, 0);
        many[i] = (spec){names[i], AIRLLM_DTYPE_U8, 1, {(uint64_t)i * 1000}, AIRLLM_ENC_RAW,
                         0, 0, 0};
    }
    CHECK(build(&h, AIRLLM_UNIT_EMBED, -1, many, 40) == 0, "build many");
    CHECK(h.header_bytes > 4096 && h.data_start == 12288, "big header data_start %llu",
          (unsigned long long)h.data_start);
    f = whole_file(&h, &len);
    r = f ? airllm_ct_parse(f, len, len, &p, &err) : -1;
    CHECK(r == 0 && p.n_tensors == 40, "many parse: %s", r ? err.msg : "");
    airllm_ct_free(&p);
    free(f);
    airllm_ct_free(&h);

    /* encode refuses what parse would refuse */
    spec bad[] = {{"x", AIRLLM_DTYPE_F32, 1, {4}, AIRLLM_ENC_ZSTD, 2, 4096, 10}};
    CHECK(build(&h, AIRLLM_UNIT_EMBED, -1, bad, 1) == 0, "build bad");
    uint8_t *o;
    size_t ol;
    CHECK(airllm_ct_encode(&h, &o, &ol, &err) == -1 && strstr(err.msg, "width"),
          "encode refuses bad width: %s", err.msg);
    airllm_ct_free(&h);
    /* layout refuses empty names */
    spec noname[] = {{"x", AIRLLM_DTYPE_F32, 1, {4}, AIRLLM_ENC_RAW, 0, 0, 0}};
    build(&h, AIRLLM_UNIT_EMBED, -1, noname, 1);
    h.tensors[0].name[0] = '\0';
    CHECK(airllm_ct_layout(&h, &err) == -1 && strstr(err.msg, "name length"),
          "layout empty name: %s", err.msg);
    airllm_ct_free(&h);
    /* layout overflow */
    spec huge[] = {{"a", AIRLLM_DTYPE_U8, 1, {1}, AIRLLM_ENC_RAW, 0, 0, 0},
                   {"b", AIRLLM_DTYPE_U8, 1, {1}, AIRLLM_ENC_RAW, 0, 0, 0}};
    build(&h, AIRLLM_UNIT_EMBED, -1, huge, 2);
    h.tensors[0].stored_len = UINT64_MAX - 10000;
    CHECK(airllm_ct_layout(&h, &err) == -1 && strstr(err.msg, "overflow"),
          "layout overflow: %s", err.msg);
    airllm_ct_free(&h);
}

/* ---- corruption table ----
 * Base container: layer 5 with three tensors, whole file in memory. */
static const spec base_specs[] = {
    {"a", AIRLLM_DTYPE_F32, 1, {3}, AIRLLM_ENC_RAW, 0, 0, 0},
    {"b.weight", AIRLLM_DTYPE_BF16, 2, {3, 4}, AIRLLM_ENC_ZSTD, 2, 4096, 50},
    {"c", AIRLLM_DTYPE_I64, 0, {0}, AIRLLM_ENC_RAW, 0, 0, 0},
};
#define NT 3

typedef struct {
    uint8_t *f;
    size_t len;      /* bytes handed to the parser */
    uint64_t fsize;  /* file_size argument */
} image;

static uint8_t *ent(image *im, int i) { return im->f + 64 + 128 * i; }
static uint8_t *names_at(image *im) { return im->f + 64 + 128 * NT; }

static void c_magic(image *im) { im->f[0] = 'X'; }
static void c_major2(image *im) { airllm_put_le16(im->f + 8, 2); }
static void c_reserved(image *im) { im->f[50] = 1; }
static void c_kind(image *im) { airllm_put_le32(im->f + 16, 4); }
static void c_count_vs_hb(image *im) { airllm_put_le32(im->f + 12, 30); }
static void c_count_max(image *im) { airllm_put_le32(im->f + 12, AIRLLM_CT_MAX_TENSORS + 1); }
static void c_hb_past_file(image *im) { airllm_put_le64(im->f + 24, im->fsize + 8); }
static void c_hb_past_len(image *im) { im->len = 100; }
static void c_short(image *im) { im->len = 63; }
static void c_data_start(image *im) { airllm_put_le64(im->f + 32, 8192); }
static void c_fsize_mod(image *im)
{
    airllm_put_le64(im->f + 40, im->fsize + 1);
    im->fsize += 1;
}
static void c_fsize_small(image *im)
{
    airllm_put_le64(im->f + 40, im->fsize - 4096);
    im->fsize -= 4096;
    im->len -= 4096;
}
static void c_fsize_large(image *im)
{
    airllm_put_le64(im->f + 40, im->fsize + 4096);
    im->fsize += 4096;
}
static void c_fsize_mismatch(image *im) { im->fsize += 4096; }
static void c_name_off(image *im) { airllm_put_le64(ent(im, 1), 1000000); }
static void c_name_len0(image *im) { airllm_put_le32(ent(im, 0) + 8, 0); }
static void c_name_len_big(image *im) { airllm_put_le32(ent(im, 0) + 8, 1025); }
static void c_name_past(image *im) { airllm_put_le32(ent(im, 2) + 8, 2); }
static void c_names_gap(image *im)
{
    /* one more names byte than the names use (data_start unchanged) */
    airllm_put_le64(im->f + 24, airllm_get_le64(im->f + 24) + 1);
}
static void c_name_nul(image *im) { names_at(im)[2] = 0; }
static void c_name_utf8(image *im) { names_at(im)[2] = 0xC0; }
static void c_name_dup(image *im) { names_at(im)[9] = 'a'; }
static void c_dtype(image *im) { airllm_put_le16(ent(im, 1) + 12, AIRLLM_DTYPE_COUNT); }
static void c_encoding(image *im) { airllm_put_le16(ent(im, 1) + 14, 9); }
static void c_nf4(image *im) { airllm_put_le16(ent(im, 1) + 14, AIRLLM_ENC_NF4); }
static void c_int8(image *im) { airllm_put_le16(ent(im, 0) + 14, AIRLLM_ENC_INT8); }
static void c_ndim9(image *im) { airllm_put_le32(ent(im, 0) + 16, 9); }
static void c_entry_reserved(image *im) { airllm_put_le32(ent(im, 0) + 20, 1); }
static void c_unused_dim(image *im) { airllm_put_le64(ent(im, 0) + 24 + 8 * 5, 7); }
static void c_raw_len(image *im) { airllm_put_le64(ent(im, 1) + 104, 26); }
static void c_shape_overflow(image *im)
{
    airllm_put_le32(ent(im, 0) + 16, 2);
    airllm_put_le64(ent(im, 0) + 24, 1ull << 62);
    airllm_put_le64(ent(im, 0) + 32, 1ull << 62);
}
static void c_stored_raw(image *im) { airllm_put_le64(ent(im, 0) + 96, 13); }
static void c_raw_param(image *im) { airllm_put_le32(ent(im, 0) + 112 + 4, 4096); }
static void c_misaligned(image *im) { airllm_put_le64(ent(im, 1) + 88, airllm_get_le64(ent(im, 1) + 88) + 8); }
static void c_overlap(image *im) { airllm_put_le64(ent(im, 1) + 88, airllm_get_le64(ent(im, 0) + 88)); }
static void c_gap(image *im) { airllm_put_le64(ent(im, 1) + 88, airllm_get_le64(ent(im, 1) + 88) + 4096); }
static void c_past_eof(image *im) { airllm_put_le64(ent(im, 1) + 96, 3 * 4096); }
static void c_offset_overflow(image *im)
{
    airllm_put_le64(ent(im, 2) + 88, UINT64_MAX - 4095);
}
static void c_hdr_padding(image *im) { im->f[airllm_get_le64(im->f + 24) + 5] = 1; }
static void c_data_padding(image *im) { im->f[4096 + 12 + 3] = 1; }
static void c_tail_padding(image *im) { im->f[im->fsize - 1] = 1; }
static void c_layer_neg(image *im) { airllm_put_le32(im->f + 20, 0xFFFFFFFFu); }
static void c_embed_idx(image *im)
{
    airllm_put_le32(im->f + 16, AIRLLM_UNIT_EMBED);
    airllm_put_le32(im->f + 20, 3);
}
static void c_zstd_width3(image *im) { airllm_put_le32(ent(im, 1) + 112, 3); }
static void c_zstd_width4_bf16(image *im) { airllm_put_le32(ent(im, 1) + 112, 4); }
static void c_zstd_chunk_odd(image *im) { airllm_put_le32(ent(im, 1) + 116, 5000); }
static void c_zstd_chunk_zero(image *im) { airllm_put_le32(ent(im, 1) + 116, 0); }
static void c_zstd_chunk_huge(image *im) { airllm_put_le32(ent(im, 1) + 116, (256u << 20) + 4096); }
static void c_zstd_param2(image *im) { airllm_put_le32(ent(im, 1) + 120, 1); }
static void c_zstd_ratio(image *im)
{
    /* 3x4 bf16 = 24 bytes can't fit... so grow the shape instead */
    airllm_put_le64(ent(im, 1) + 24, 1ull << 30);
    airllm_put_le64(ent(im, 1) + 104, (1ull << 30) * 4 * 2);
}
static void c_zstd_empty_stored(image *im) { airllm_put_le64(ent(im, 1) + 96, 0); }

/* Acceptance cases (not corruptions). */
/* A 1.0 file read as 1.1 is still valid; from 1.2 on a file must carry its
 * check block, so a 1.0 file that claims 1.7 is refused. */
static void c_minor1(image *im) { airllm_put_le16(im->f + 10, 1); }
static void c_minor7(image *im) { airllm_put_le16(im->f + 10, 7); }

typedef struct {
    const char *what;
    void (*mutate)(image *);
    const char *expect; /* NULL: must be accepted */
} corruption;

static const corruption table[] = {
    {"bad magic", c_magic, "magic"},
    {"major version 2", c_major2, "version 2.0"},
    {"minor version 1 accepted", c_minor1, NULL},
    {"minor version 7 without a check block", c_minor7, "check_offset 0, expected"},
    {"reserved nonzero", c_reserved, "reserved header byte 50"},
    {"unknown unit kind", c_kind, "unit kind 4"},
    {"count too large for header_bytes", c_count_vs_hb, "tensor table of 30 entries"},
    {"count above max", c_count_max, "too many tensors"},
    {"header_bytes past file", c_hb_past_file, "exceeds the file size"},
    {"header_bytes past buffer", c_hb_past_len, "truncated"},
    {"shorter than fixed header", c_short, "truncated"},
    {"data_start wrong", c_data_start, "data_start 8192"},
    {"file_size not multiple of 4096", c_fsize_mod, "not a multiple of 4096"},
    {"file_size too small", c_fsize_small, "runs past file_size"},
    {"file_size too large", c_fsize_large, "end of the last tensor"},
    {"file_size field vs actual", c_fsize_mismatch, "but the file has"},
    {"name offset out of range", c_name_off, "name_offset 1000000"},
    {"name_len 0", c_name_len0, "name length 0"},
    {"name_len too long", c_name_len_big, "name length 1025"},
    {"name past names area", c_name_past, "past the names area"},
    {"names area larger than names", c_names_gap, "names area has"},
    {"NUL in name", c_name_nul, "NUL"},
    {"invalid UTF-8 name", c_name_utf8, "UTF-8"},
    {"duplicate names", c_name_dup, "duplicate tensor name 'a'"},
    {"unknown dtype", c_dtype, "unknown dtype code 20"},
    {"unknown encoding", c_encoding, "tensor 'b.weight': unknown encoding 9"},
    {"nf4 refused", c_nf4, "encoding nf4 needs format 1.1, but the file says 1.0"},
    {"int8 refused", c_int8, "encoding int8 needs format 1.1"},
    {"ndim 9", c_ndim9, "ndim 9"},
    {"entry reserved nonzero", c_entry_reserved, "reserved entry field"},
    {"nonzero unused dim", c_unused_dim, "unused dimension 5"},
    {"raw_len != shape size", c_raw_len, "raw_len 26"},
    {"overflowing shape", c_shape_overflow, "overflows"},
    {"raw stored_len != raw_len", c_stored_raw, "stored_len 13"},
    {"raw nonzero enc_param", c_raw_param, "enc_param[1]"},
    {"misaligned offset", c_misaligned, "not a multiple of 4096"},
    {"overlapping tensors", c_overlap, "overlaps"},
    {"gap between tensors", c_gap, "expected"},
    {"offset past EOF", c_past_eof, "runs past file_size"},
    {"offset + len overflows", c_offset_overflow, "runs past file_size"},
    {"nonzero padding in header region", c_hdr_padding, "header padding byte"},
    {"nonzero padding between tensors", c_data_padding, "padding byte 4111 before"},
    {"nonzero trailing padding", c_tail_padding, "trailing padding"},
    {"layer kind with layer_index -1", c_layer_neg, "layer_index >= 0"},
    {"embed kind with layer_index 3", c_embed_idx, "layer_index -1, got 3"},
    {"zstd width 3", c_zstd_width3, "width 3"},
    {"zstd width 4 on bf16", c_zstd_width4_bf16, "16-bit dtype BF16"},
    {"zstd chunk not multiple of 4096", c_zstd_chunk_odd, "chunk size 5000"},
    {"zstd chunk 0", c_zstd_chunk_zero, "chunk size 0"},
    {"zstd chunk above 256 MiB", c_zstd_chunk_huge, "chunk size 268439552"},
    {"zstd enc_param[2]", c_zstd_param2, "enc_param[2..3]"},
    {"zstd impossible ratio", c_zstd_ratio, "cannot come from"},
    {"zstd empty stored", c_zstd_empty_stored, "empty iff"},
};

static void test_corruptions(void)
{
    airllm_ct_header h;
    g_legacy = 1; /* the 1.0/1.1 rules; test_checks covers 1.2 */
    int b = build(&h, AIRLLM_UNIT_LAYER, 5, base_specs, NT);
    g_legacy = 0;
    if (b != 0) {
        CHECK(0, "build base");
        return;
    }
    size_t len;
    uint8_t *good = whole_file(&h, &len);
    /* a at 4096 (12 B), b at 8192 (50 B stored), c at 12288 (8 B) */
    CHECK(good && len == 4 * 4096, "base file %zu", len);
    if (!good)
        return;
    image im = {NULL, len, len};
    airllm_err err;
    airllm_ct_header p;
    CHECK(airllm_ct_parse(good, len, len, &p, &err) == 0, "base parses");
    airllm_ct_free(&p);
    unsigned ncase = sizeof table / sizeof table[0];
    unsigned nreject = 0;
    for (unsigned i = 0; i < ncase; i++) {
        /* room for cases that grow file_size beyond the buffer */
        im.f = calloc(1, len + 8192);
        memcpy(im.f, good, len);
        im.len = len;
        im.fsize = len;
        table[i].mutate(&im);
        err.msg[0] = 0;
        memset(&p, 0xAB, sizeof p); /* parse must reset *out on failure */
        int r = airllm_ct_parse(im.f, im.len, im.fsize, &p, &err);
        if (!table[i].expect) {
            CHECK(r == 0, "%s: should be accepted, got: %s", table[i].what, err.msg);
        } else {
            nreject++;
            CHECK(r == -1 && strstr(err.msg, table[i].expect) != NULL,
                  "%s: expected failure containing \"%s\", got r=%d \"%s\"",
                  table[i].what, table[i].expect, r, err.msg);
            CHECK(p.tensors == NULL && p.n_tensors == 0, "%s: out not reset",
                  table[i].what);
        }
        airllm_ct_free(&p);
        free(im.f);
    }
    CHECK(nreject >= 25, "only %u corruptions", nreject);
    printf("corruption table: %u cases\n", ncase);
    free(good);
    airllm_ct_free(&h);
}

/* Every truncation of a valid header must be refused without a crash, and
 * every single-byte flip must be refused or accepted without a crash. */
static void test_truncations_and_flips(void)
{
    airllm_ct_header h;
    g_legacy = 1;
    build(&h, AIRLLM_UNIT_LAYER, 5, base_specs, NT);
    g_legacy = 0;
    size_t len;
    uint8_t *good = whole_file(&h, &len);
    airllm_err err;
    airllm_ct_header p;
    int bad = 0;
    for (size_t l = 0; l < h.header_bytes; l++) {
        uint8_t *cp = malloc(l ? l : 1);
        memcpy(cp, good, l);
        if (airllm_ct_parse(cp, l, len, &p, &err) == 0)
            bad++;
        airllm_ct_free(&p);
        free(cp);
    }
    CHECK(bad == 0, "%d truncations accepted", bad);
    for (size_t i = 0; i < h.header_bytes; i++) {
        for (int bit = 0; bit < 8; bit++) {
            good[i] ^= (uint8_t)(1u << bit);
            if (airllm_ct_parse(good, len, len, &p, &err) == 0) {
                /* only these fields may change and stay valid */
                size_t e1 = 64 + 128, e2 = 64 + 256;
                int ok = (i == 10 || i == 11) ||             /* minor version */
                         (i >= 20 && i < 24) ||              /* layer index */
                         (i >= 64 + 128 * NT) ||             /* name bytes */
                         (i >= e1 + 96 && i < e1 + 104) ||   /* zstd stored_len */
                         (i >= e1 + 112 && i < e1 + 120) ||  /* zstd width, chunk */
                         (i == e2 + 12);                     /* I64 <-> F64 */
                if (!ok) {
                    bad++;
                    printf("flip of byte %zu bit %d accepted\n", i, bit);
                }
            }
            airllm_ct_free(&p);
            good[i] ^= (uint8_t)(1u << bit);
        }
    }
    CHECK(bad == 0, "%d unexpected flips accepted", bad);
    free(good);
    airllm_ct_free(&h);
}

/* Format 1.1: quantized tensors. Layout rule, validation, and a round trip
 * through airllm_ct_dequantize against the quantizer's own output. */
static void test_quantized(void)
{
    airllm_err err;
    airllm_ct_qlayout l;
    /* nf4, 6400 elements, block 64: codes 3200 (align 64: 3200), 100 scales */
    CHECK(airllm_ct_qlayout_make(AIRLLM_ENC_NF4, 6400, 64, 0, &l, &err) == 0 &&
              l.nblocks == 100 && l.codes_len == 3200 && l.scales_off == 3200 &&
              l.stored_len == 3600,
          "nf4 layout %llu", (unsigned long long)l.stored_len);
    /* int8, 150 elements, block 32, double quant: codes 150 -> scales at 192,
     * 5 q bytes, offset at align4(197) = 200, absmax2 at 204, one of them */
    CHECK(airllm_ct_qlayout_make(AIRLLM_ENC_INT8, 150, 32, 1, &l, &err) == 0 &&
              l.nblocks == 5 && l.scales_off == 192 && l.dq_offset_off == 200 &&
              l.dq_absmax2_off == 204 && l.nblocks2 == 1 && l.stored_len == 208,
          "int8 dq layout %llu", (unsigned long long)l.stored_len);
    /* odd n, 4-bit: the last byte holds one code */
    CHECK(airllm_ct_qlayout_make(AIRLLM_ENC_FP4, 33, 32, 0, &l, &err) == 0 && l.codes_len == 17 &&
              l.scales_off == 64 && l.stored_len == 72,
          "fp4 odd layout");
    CHECK(airllm_ct_qlayout_make(AIRLLM_ENC_NF4, 64, 48, 0, &l, &err) == -1, "block 48 refused");
    CHECK(airllm_ct_qlayout_make(AIRLLM_ENC_ZSTD, 64, 64, 0, &l, &err) == -1, "zstd is not quant");

    spec qs[] = {
        {"q.weight", AIRLLM_DTYPE_F32, 2, {64, 100}, AIRLLM_ENC_NF4, 64, 0, 3600},
        {"n.weight", AIRLLM_DTYPE_F32, 1, {64}, AIRLLM_ENC_RAW, 0, 0, 0},
        {"k.weight", AIRLLM_DTYPE_BF16, 2, {3, 50}, AIRLLM_ENC_INT8, 32, 1, 208},
    };
    airllm_ct_header h;
    CHECK(build(&h, AIRLLM_UNIT_LAYER, 0, qs, 3) == 0, "quantized header builds");
    CHECK(h.version_minor == 2, "a new unit is written as 1.%u", h.version_minor);
    airllm_ct_free(&h);
    /* the field cases below are the 1.1 rules, on a file as 1.1 wrote it */
    g_legacy = 1;
    CHECK(build(&h, AIRLLM_UNIT_LAYER, 0, qs, 3) == 0 && h.version_minor == 1,
          "quantized 1.1 header builds");
    g_legacy = 0;
    size_t len;
    uint8_t *f = whole_file(&h, &len);
    airllm_ct_header p;
    CHECK(f && airllm_ct_parse(f, len, len, &p, &err) == 0, "quantized parses: %s", err.msg);
    airllm_ct_free(&p);
    struct {
        const char *what;
        size_t at;
        unsigned width;
        uint64_t value;
        const char *expect;
    } cases[] = {
        {"stored_len one short", 64 + 96, 8, 3599, "takes 3600 bytes"},
        {"unknown flag", 64 + 116, 4, 2, "unknown quantization flags"},
        {"block 48", 64 + 112, 4, 48, "power of two"},
        {"block 8192", 64 + 112, 4, 8192, "power of two"},
        {"enc_param[2]", 64 + 120, 4, 1, "enc_param[2..3]"},
        {"I32 source dtype", 64 + 12, 2, AIRLLM_DTYPE_I32, "F32, F16 or BF16"},
        {"minor version 0", 10, 2, 0, "needs format 1.1, but the file says 1.0"},
        {"dq flag dropped", 64 + 256 + 116, 4, 0, "takes 212 bytes"},
    };
    for (size_t i = 0; f && i < sizeof cases / sizeof cases[0]; i++) {
        uint8_t *c = malloc(len);
        memcpy(c, f, len);
        if (cases[i].width == 8)
            airllm_put_le64(c + cases[i].at, cases[i].value);
        else if (cases[i].width == 4)
            airllm_put_le32(c + cases[i].at, (uint32_t)cases[i].value);
        else
            airllm_put_le16(c + cases[i].at, (uint16_t)cases[i].value);
        err.msg[0] = 0;
        int r = airllm_ct_parse(c, len, len, &p, &err);
        CHECK(r == -1 && strstr(err.msg, cases[i].expect), "%s: got %d \"%s\"", cases[i].what,
              r, err.msg);
        airllm_ct_free(&p);
        free(c);
    }
    free(f);
    airllm_ct_free(&h);

    /* Round trip: stored bytes laid out by hand from airllm_quantize and
     * airllm_dq_compress decode to what airllm_dequantize gives. */
    enum { N = 1001, B = 32 };
    float x[N], want[N], got[N], absmax[32], a2[1], off, dq[32];
    uint8_t codes[N], q[32];
    for (int i = 0; i < N; i++)
        x[i] = (float)((i * 37 % 101) - 50) * (1.0f + (float)(i % 7)) / 64.0f;
    for (int dbl = 0; dbl < 2; dbl++) {
        airllm_encoding encs[3] = {AIRLLM_ENC_NF4, AIRLLM_ENC_FP4, AIRLLM_ENC_INT8};
        airllm_quant_type types[3] = {AIRLLM_QUANT_NF4, AIRLLM_QUANT_FP4, AIRLLM_QUANT_INT8};
        for (int k = 0; k < 3; k++) {
            CHECK(airllm_ct_qlayout_make(encs[k], N, B, dbl, &l, &err) == 0, "layout");
            CHECK(airllm_quantize(types[k], x, N, B, codes, sizeof codes, absmax, 32, &err) == 0,
                  "quantize");
            uint8_t *st = calloc(1, l.stored_len);
            memcpy(st, codes, l.codes_len);
            const float *use = absmax;
            if (dbl) {
                CHECK(airllm_dq_compress(AIRLLM_DQ_BNB_LUT, absmax, l.nblocks, NULL, q, 32, a2, 1,
                                         &off, &err) == 0 &&
                          airllm_dq_decompress(q, l.nblocks, a2, 1, off, dq, &err) == 0,
                      "dq");
                memcpy(st + l.scales_off, q, l.nblocks);
                airllm_put_lef32(st + l.dq_offset_off, off);
                airllm_put_lef32(st + l.dq_absmax2_off, a2[0]);
                use = dq;
            } else {
                for (uint64_t b = 0; b < l.nblocks; b++)
                    airllm_put_lef32(st + l.scales_off + 4 * b, absmax[b]);
            }
            CHECK(airllm_dequantize(types[k], codes, l.codes_len, use, l.nblocks, N, B, want,
                                    &err) == 0 &&
                      airllm_ct_dequantize(encs[k], &l, st, got, &err) == 0 &&
                      memcmp(want, got, sizeof want) == 0,
                  "%s%s: container round trip", airllm_encoding_name(encs[k]),
                  dbl ? " dq" : "");
            free(st);
        }
    }
}

/* Format 1.2: the check block. Every single-bit flip anywhere in a file is
 * refused by the parser or by the per-tensor XXH3 check, and a flip inside
 * a tensor's entry, name or data is pinned on that tensor. */
static void test_checks(void)
{
    spec s[] = {
        {"a.weight", AIRLLM_DTYPE_BF16, 2, {8, 16}, AIRLLM_ENC_RAW, 0, 0, 0},
        {"b", AIRLLM_DTYPE_U8, 1, {0}, AIRLLM_ENC_RAW, 0, 0, 0},
        {"c.q", AIRLLM_DTYPE_F32, 2, {2, 64}, AIRLLM_ENC_NF4, 64, 0, 72},
    };
    airllm_ct_header h, p;
    airllm_err err;
    CHECK(build(&h, AIRLLM_UNIT_LAYER, 1, s, 3) == 0, "build 1.2");
    size_t len = (size_t)h.file_size;
    uint8_t *f = calloc(1, len);
    uint8_t *hdr, *blk;
    size_t hl, bl;
    CHECK(airllm_ct_encode(&h, &hdr, &hl, &err) == 0, "encode: %s", err.msg);
    memcpy(f, hdr, hl);
    free(hdr);
    for (uint32_t i = 0; i < h.n_tensors; i++) {
        for (uint64_t k = 0; k < h.tensors[i].stored_len; k++)
            f[h.tensors[i].offset + k] = (uint8_t)(k * 7 + i + 1);
        h.tensors[i].xxh3 = airllm_xxh3(f + h.tensors[i].offset, h.tensors[i].stored_len);
    }
    /* the nf4 scales must be finite for nothing else to fail: absmax 1.0 */
    CHECK(airllm_ct_encode_checks(&h, &blk, &bl, &err) == 0 &&
              bl == h.file_size - h.check_offset,
          "encode_checks: %s", err.msg);
    memcpy(f + h.check_offset, blk, bl);
    free(blk);
    int r = airllm_ct_parse(f, len, len, &p, &err);
    CHECK(r == 0 && p.has_checks && p.check_offset == h.check_offset, "parse 1.2: %s",
          r ? err.msg : "");
    for (uint32_t i = 0; r == 0 && i < p.n_tensors; i++)
        CHECK(p.tensors[i].xxh3 == h.tensors[i].xxh3 &&
                  airllm_ct_check_tensor(&p, i, f + p.tensors[i].offset, &err) == 0,
              "tensor %u checks", i);
    airllm_ct_free(&p);
    /* header region alone: no checks until the block is applied */
    r = airllm_ct_parse(f, (size_t)h.data_start, len, &p, &err);
    CHECK(r == 0 && !p.has_checks, "header only: %s", r ? err.msg : "");
    CHECK(r == 0 &&
              airllm_ct_apply_checks(&p, f, (size_t)h.data_start, f + h.check_offset,
                                     len - (size_t)h.check_offset, &err) == 0 &&
              p.has_checks && p.tensors[2].xxh3 == h.tensors[2].xxh3,
          "apply_checks: %s", err.msg);
    airllm_ct_free(&p);

    int missed = 0, unnamed = 0;
    for (size_t at = 0; at < len; at++) {
        for (int bit = 0; bit < 8; bit++) {
            f[at] ^= (uint8_t)(1u << bit);
            err.msg[0] = 0;
            int bad = airllm_ct_parse(f, len, len, &p, &err) != 0;
            long culprit = -1;
            for (uint32_t i = 0; !bad && i < p.n_tensors; i++)
                if (airllm_ct_check_tensor(&p, i, f + p.tensors[i].offset, &err) != 0) {
                    bad = 1;
                    culprit = (long)i;
                }
            airllm_ct_free(&p);
            f[at] ^= (uint8_t)(1u << bit);
            if (!bad) {
                if (missed++ < 5)
                    printf("flip at %zu bit %d accepted\n", at, bit);
                continue;
            }
            /* inside tensor i's data or table entry: the message is about i */
            for (uint32_t i = 0; i < h.n_tensors; i++) {
                const airllm_ct_tensor *t = &h.tensors[i];
                size_t e = 64 + 128 * (size_t)i;
                bool in_data = at >= t->offset && at < t->offset + t->stored_len;
                bool in_entry = at >= e + 24 && at < e + 128 && at != e + 12 && at != e + 13;
                if ((in_data || in_entry) && culprit >= 0 && culprit != (long)i)
                    unnamed++;
                if (in_data && culprit != (long)i)
                    unnamed++;
            }
        }
    }
    CHECK(missed == 0, "%d single-bit flips accepted", missed);
    CHECK(unnamed == 0, "%d flips blamed on the wrong tensor", unnamed);
    free(f);
    airllm_ct_free(&h);

    /* a 1.1 file parses without checks */
    g_legacy = 1;
    CHECK(build(&h, AIRLLM_UNIT_LAYER, 1, s, 3) == 0, "build 1.1");
    g_legacy = 0;
    f = whole_file(&h, &len);
    r = f ? airllm_ct_parse(f, len, len, &p, &err) : -1;
    CHECK(r == 0 && p.version_minor == 1 && !p.has_checks && p.check_offset == 0,
          "1.1 parses unchecked: %s", r ? err.msg : "");
    airllm_ct_free(&p);
    free(f);
    airllm_ct_free(&h);
}

int main(void)
{
    test_checks();
    test_quantized();
    test_names();
    test_round_trip();
    test_corruptions();
    test_truncations_and_flips();
    return test_summary();
}
