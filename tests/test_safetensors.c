/* Unit tests for the safetensors header reader: valid files parse into the
 * right fields, and every kind of malformed header is refused with a
 * message that says what is wrong. Buffers are built in memory; the data
 * section is usually not materialised (the parser only needs the header
 * bytes plus the true file size). */
#include "airllm_safetensors.h"
#include "airllm_jscan.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "test_util.h"

/* Builds 8-byte length + header (hlen bytes) + data_len zero bytes. */
static uint8_t *build(const char *hdr, size_t hlen, size_t data_len, size_t *len)
{
    *len = 8 + hlen + data_len;
    uint8_t *b = calloc(1, *len ? *len : 1);
    if (!b) {
        perror("calloc");
        exit(2);
    }
    for (int i = 0; i < 8; i++)
        b[i] = (uint8_t)((uint64_t)hlen >> (8 * i));
    memcpy(b + 8, hdr, hlen);
    return b;
}

/* Parses hdr as a whole file with data_len data bytes. */
static int parse_str(const char *hdr, size_t data_len, airllm_st_file *f, airllm_err *e)
{
    size_t len;
    uint8_t *b = build(hdr, strlen(hdr), data_len, &len);
    int rc = airllm_st_parse(b, len, len, f, e);
    free(b);
    return rc;
}

static void expect_fail_buf(const char *what, const uint8_t *b, size_t len, uint64_t fsize,
                            const char *needle)
{
    airllm_st_file f;
    airllm_err e = {{0}};
    int rc = airllm_st_parse(b, len, fsize, &f, &e);
    CHECK(rc == -1, "%s: accepted, expected failure with '%s'", what, needle);
    if (rc == -1) {
        if (getenv("VERBOSE"))
            printf("%-28s %s\n", what, e.msg);
        CHECK(strstr(e.msg, needle) != NULL, "%s: message '%s' lacks '%s'", what, e.msg, needle);
        CHECK(f.n_tensors == 0 && f.tensors == NULL, "%s: output not left empty", what);
    } else {
        airllm_st_free(&f);
    }
}

static void expect_fail(const char *what, const char *hdr, size_t data_len, const char *needle)
{
    size_t len;
    uint8_t *b = build(hdr, strlen(hdr), data_len, &len);
    expect_fail_buf(what, b, len, len, needle);
    free(b);
}

/* ---------------------------------------------------------------- valid */

static void test_single(void)
{
    airllm_st_file f;
    airllm_err e = {{0}};
    const char *h = "{\"w\":{\"dtype\":\"F32\",\"shape\":[2,3],\"data_offsets\":[0,24]}}";
    int rc = parse_str(h, 24, &f, &e);
    CHECK(rc == 0, "single: %s", e.msg);
    if (rc)
        return;
    CHECK(f.n_tensors == 1, "single: n=%zu", f.n_tensors);
    CHECK(f.header_len == strlen(h), "single: header_len");
    CHECK(f.data_start == 8 + strlen(h), "single: data_start");
    CHECK(f.file_size == 8 + strlen(h) + 24, "single: file_size");
    airllm_st_tensor *t = &f.tensors[0];
    CHECK(strcmp(t->name, "w") == 0, "single: name %s", t->name);
    CHECK(t->dtype == AIRLLM_DTYPE_F32, "single: dtype");
    CHECK(t->ndim == 2 && t->shape[0] == 2 && t->shape[1] == 3, "single: shape");
    CHECK(t->begin == 0 && t->end == 24, "single: offsets");
    CHECK(airllm_st_find(&f, "w") == 0, "single: find");
    CHECK(airllm_st_find(&f, "x") == -1, "single: find missing");
    airllm_st_free(&f);
    CHECK(f.n_tensors == 0 && f.tensors == NULL, "free resets");
}

static void test_multi_sorted(void)
{
    airllm_st_file f;
    airllm_err e = {{0}};
    /* Listed out of file order, with metadata, mixed dtypes, a scalar and
     * two zero-size tensors at the same offset. */
    const char *h = "{\"__metadata__\":{\"format\":\"pt\",\"x\":\"\"},"
                    "\"c\":{\"dtype\":\"BF16\",\"shape\":[4],\"data_offsets\":[16,24]},"
                    "\"z0\":{\"dtype\":\"I64\",\"shape\":[0,5],\"data_offsets\":[0,0]},"
                    "\"a\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]},"
                    "\"s\":{\"dtype\":\"U8\",\"shape\":[],\"data_offsets\":[24,25]},"
                    "\"e0\":{\"data_offsets\":[0,0],\"shape\":[0],\"dtype\":\"F16\"},"
                    "\"f4\":{\"dtype\":\"F4\",\"shape\":[2,3],\"data_offsets\":[25,28]}}";
    int rc = parse_str(h, 28, &f, &e);
    CHECK(rc == 0, "multi: %s", e.msg);
    if (rc)
        return;
    const char *order[] = {"e0", "z0", "a", "c", "s", "f4"};
    CHECK(f.n_tensors == 6, "multi: n=%zu", f.n_tensors);
    for (size_t i = 0; i < 6 && i < f.n_tensors; i++)
        CHECK(strcmp(f.tensors[i].name, order[i]) == 0, "multi: [%zu]=%s want %s", i,
              f.tensors[i].name, order[i]);
    long c = airllm_st_find(&f, "c");
    CHECK(c == 3 && f.tensors[c].dtype == AIRLLM_DTYPE_BF16 && f.tensors[c].begin == 16 &&
              f.tensors[c].end == 24,
          "multi: c fields");
    long s = airllm_st_find(&f, "s");
    CHECK(s == 4 && f.tensors[s].ndim == 0, "multi: scalar");
    long z = airllm_st_find(&f, "z0");
    CHECK(z == 1 && f.tensors[z].ndim == 2 && f.tensors[z].shape[1] == 5, "multi: zero-size");
    airllm_st_free(&f);
}

static void test_valid_misc(void)
{
    airllm_st_file f;
    airllm_err e = {{0}};
    size_t len;

    CHECK(parse_str("{}", 0, &f, &e) == 0 && f.n_tensors == 0, "empty object: %s", e.msg);
    airllm_st_free(&f);
    CHECK(parse_str("{\"__metadata__\":{}}", 0, &f, &e) == 0, "metadata only: %s", e.msg);
    airllm_st_free(&f);
    /* Space padding after the object (writers align the data to 8). */
    CHECK(parse_str("{\"t\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]}}     ", 1, &f,
                    &e) == 0,
          "space padding: %s", e.msg);
    airllm_st_free(&f);
    /* Whitespace inside the object is fine. */
    CHECK(parse_str("{ \"t\" : {\n\t\"dtype\" : \"U8\", \"shape\" : [ 1 ] ,\r\n"
                    "\"data_offsets\" : [ 0 , 1 ] } }",
                    1, &f, &e) == 0,
          "inner whitespace: %s", e.msg);
    airllm_st_free(&f);
    /* Escaped name decodes to UTF-8. */
    CHECK(parse_str("{\"caf\\u00e9\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]}}", 1,
                    &f, &e) == 0 &&
              f.n_tensors == 1 && strcmp(f.tensors[0].name, "caf\xc3\xa9") == 0,
          "escaped name: %s", e.msg);
    airllm_st_free(&f);
    /* 2^53 is the largest accepted integer; the data need not be in the
     * buffer, only counted in file_size. */
    const char *big = "{\"t\":{\"dtype\":\"U8\",\"shape\":[9007199254740992],"
                      "\"data_offsets\":[0,9007199254740992]}}";
    uint8_t *b = build(big, strlen(big), 0, &len);
    int rc = airllm_st_parse(b, len, len + 9007199254740992ull, &f, &e);
    CHECK(rc == 0 && f.tensors[0].end == 9007199254740992ull, "2^53: %s", e.msg);
    airllm_st_free(&f);
    free(b);
    /* Name of exactly the maximum length is accepted. */
    char *h = malloc(AIRLLM_ST_MAX_NAME + 100);
    memset(h, 0, AIRLLM_ST_MAX_NAME + 100);
    strcpy(h, "{\"");
    memset(h + 2, 'n', AIRLLM_ST_MAX_NAME);
    strcat(h, "\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]}}");
    CHECK(parse_str(h, 1, &f, &e) == 0, "max name: %s", e.msg);
    airllm_st_free(&f);
    free(h);
}

/* ------------------------------------------------------------ malformed */

#define T(dt, shape, off) "{\"dtype\":\"" dt "\",\"shape\":" shape ",\"data_offsets\":" off "}"

static const struct {
    const char *what, *hdr;
    size_t data_len;
    const char *needle;
} bad_json[] = {
    {"empty header", "", 0, "header is empty"},
    {"JSON array", "[]", 0, "not a JSON object"},
    {"JSON number", "42", 0, "not a JSON object"},
    {"JSON string", "\"x\"", 0, "not a JSON object"},
    {"leading space", " {}", 0, "not a JSON object"},
    {"UTF-8 BOM", "\xef\xbb\xbf{}", 0, "not a JSON object"},
    {"unparsable", "{\"a\":", 0, "not valid JSON"},
    {"trailing comma", "{\"a\":" T("U8", "[1]", "[0,1]") ",}", 1, "not valid JSON"},
    {"single quotes", "{'a':1}", 0, "not valid JSON"},
    {"lone surrogate", "{\"\\ud800\":1}", 0, "not valid JSON"},
    {"trailing junk", "{}x", 0, "unexpected data after the JSON object"},
    {"trailing newline", "{}\n", 0, "unexpected data after the JSON object"},
    {"second object", "{} {}", 0, "unexpected data after the JSON object"},
    {"NUL outside string", "{\"a\":" T("U8", "[1]", "[0,1]") "\x01}", 1, "control character"},
    {"control char in string", "{\"a\x01\":" T("U8", "[1]", "[0,1]") "}", 1,
     "control character"},
    {"leading-zero number", "{\"a\":" T("U8", "[01]", "[0,1]") "}", 1, "malformed number"},
    {"duplicate names",
     "{\"a\":" T("U8", "[1]", "[0,1]") ",\"a\":" T("U8", "[1]", "[1,2]") "}", 2,
     "duplicate tensor name 'a'"},
    {"duplicate metadata", "{\"__metadata__\":{},\"__metadata__\":{}}", 0,
     "duplicate \"__metadata__\""},
    {"unknown dtype", "{\"a\":" T("F17", "[1]", "[0,1]") "}", 1, "unknown dtype 'F17'"},
    {"dtype with NUL", "{\"a\":" T("U8\\u0000", "[1]", "[0,1]") "}", 1, "dtype contains a NUL"},
    {"dtype not string", "{\"a\":{\"dtype\":8,\"shape\":[1],\"data_offsets\":[0,1]}}", 1,
     "dtype is not a string"},
    {"size mismatch", "{\"a\":" T("F32", "[2,3]", "[0,20]") "}", 20,
     "needs 24 bytes but data_offsets [0, 20] span 20"},
    {"element overflow", "{\"a\":" T("U8", "[4294967296,4294967296,16]", "[0,16]") "}", 16,
     "overflows"},
    {"byte overflow", "{\"a\":" T("F64", "[4503599627370496,1024]", "[0,16]") "}", 16,
     "byte size of shape"},
    {"F4 odd elements", "{\"a\":" T("F4", "[3]", "[0,2]") "}", 2, "not a whole number of bytes"},
    {"negative dim", "{\"a\":" T("U8", "[-1]", "[0,1]") "}", 1, "shape[0] is negative (-1)"},
    {"negative zero", "{\"a\":" T("U8", "[-0]", "[0,0]") "}", 0, "is negative"},
    {"fractional dim", "{\"a\":" T("U8", "[1,2.5]", "[0,1]") "}", 1,
     "shape[1] is not an integer (2.5)"},
    {"1.0 dim", "{\"a\":" T("U8", "[1.0]", "[0,1]") "}", 1, "not an integer (1.0)"},
    {"exponent dim", "{\"a\":" T("U8", "[1e0]", "[0,1]") "}", 1, "not an integer (1e0)"},
    {"dim over 2^53", "{\"a\":" T("U8", "[9007199254740993]", "[0,1]") "}", 1, "too large"},
    {"dim of 20 digits", "{\"a\":" T("U8", "[18446744073709551616]", "[0,1]") "}", 1,
     "too large"},
    {"dim is string", "{\"a\":" T("U8", "[\"1\"]", "[0,1]") "}", 1, "shape[0] is not a number"},
    {"too many dims", "{\"a\":" T("U8", "[1,1,1,1,1,1,1,1,1]", "[0,1]") "}", 1,
     "9 dimensions"},
    {"shape not array", "{\"a\":" T("U8", "1", "[0,1]") "}", 1, "shape is not an array"},
    {"offsets not array", "{\"a\":" T("U8", "[1]", "{}") "}", 1, "data_offsets is not an array"},
    {"three offsets", "{\"a\":" T("U8", "[1]", "[0,1,1]") "}", 1, "has 3 elements, not 2"},
    {"one offset", "{\"a\":" T("U8", "[1]", "[0]") "}", 1, "has 1 elements, not 2"},
    {"negative offset", "{\"a\":" T("U8", "[1]", "[-1,0]") "}", 1,
     "data_offsets[0] is negative"},
    {"fractional offset", "{\"a\":" T("U8", "[1]", "[0,1.5]") "}", 1,
     "data_offsets[1] is not an integer"},
    {"begin > end", "{\"a\":" T("U8", "[0]", "[8,0]") "}", 0, "begin 8 > end 0"},
    {"end out of range", "{\"a\":" T("U8", "[1]", "[0,18446744073709551617]") "}", 1,
     "data_offsets[1] is too large"},
    {"overlap",
     "{\"a\":" T("U8", "[4]", "[0,4]") ",\"b\":" T("U8", "[4]", "[2,6]") "}", 6,
     "tensors 'a' [0, 4) and 'b' [2, 6) overlap"},
    {"zero-size inside another",
     "{\"a\":" T("U8", "[4]", "[0,4]") ",\"b\":" T("U8", "[0]", "[2,2]") "}", 4, "overlap"},
    {"gap",
     "{\"a\":" T("U8", "[4]", "[0,4]") ",\"b\":" T("U8", "[4]", "[6,10]") "}", 10,
     "gap of 2 bytes between tensors 'a' (ends at 4) and 'b' (begins at 6)"},
    {"first not at 0", "{\"a\":" T("U8", "[4]", "[2,6]") "}", 6,
     "first tensor 'a' begins at data offset 2"},
    {"data truncated", "{\"a\":" T("F32", "[4]", "[0,16]") "}", 8,
     "truncated: tensor 'a' ends at data offset 16"},
    {"trailing garbage", "{\"a\":" T("F32", "[4]", "[0,16]") "}", 20,
     "trailing garbage: 4 bytes after the last tensor"},
    {"garbage, no tensors", "{}", 3, "trailing garbage: 3 bytes after the header"},
    {"metadata non-string", "{\"__metadata__\":{\"format\":1}}", 0,
     "value for key 'format' is not a string"},
    {"metadata nested", "{\"__metadata__\":{\"k\":{\"a\":\"b\"}}}", 0, "is not a string"},
    {"metadata not object", "{\"__metadata__\":\"pt\"}", 0, "\"__metadata__\" is not an object"},
    {"metadata NUL value", "{\"__metadata__\":{\"k\":\"a\\u0000b\"}}", 0, "NUL"},
    {"missing dtype", "{\"a\":{\"shape\":[1],\"data_offsets\":[0,1]}}", 1,
     "missing \"dtype\""},
    {"missing shape", "{\"a\":{\"dtype\":\"U8\",\"data_offsets\":[0,1]}}", 1,
     "missing \"shape\""},
    {"missing offsets", "{\"a\":{\"dtype\":\"U8\",\"shape\":[1]}}", 1,
     "missing \"data_offsets\""},
    {"extra key",
     "{\"a\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1],\"foo\":1}}", 1,
     "unexpected key 'foo'"},
    {"duplicate key in entry",
     "{\"a\":{\"dtype\":\"U8\",\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]}}", 1,
     "duplicate key 'dtype'"},
    {"NUL in entry key",
     "{\"a\":{\"dtype\\u0000\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]}}", 1, "NUL"},
    {"entry not object", "{\"a\":[1]}", 0, "tensor 'a': entry is not an object"},
    {"empty name", "{\"\":" T("U8", "[1]", "[0,1]") "}", 1, "empty tensor name"},
    {"NUL in name", "{\"a\\u0000b\":" T("U8", "[1]", "[0,1]") "}", 1, "NUL character"},
    {"NUL-suffixed metadata key", "{\"__metadata__\\u0000\":{}}", 0, "NUL character"},
};

static void test_bad_json(void)
{
    for (size_t i = 0; i < sizeof bad_json / sizeof bad_json[0]; i++)
        expect_fail(bad_json[i].what, bad_json[i].hdr, bad_json[i].data_len,
                    bad_json[i].needle);
}

static void test_bad_framing(void)
{
    uint8_t small[3] = {1, 0, 0};
    expect_fail_buf("3-byte file", small, 3, 3, "too short");
    expect_fail_buf("empty file", small, 0, 0, "too short");

    /* Header length past the end of a 300-byte file. */
    uint8_t b[300] = {0};
    uint64_t n = 1234567890;
    for (int i = 0; i < 8; i++)
        b[i] = (uint8_t)(n >> (8 * i));
    expect_fail_buf("length past EOF", b, sizeof b, sizeof b,
                    "header length 1234567890 exceeds the file (300 bytes)");
    /* One byte past: 8 + 293 > 300. */
    n = 293;
    for (int i = 0; i < 8; i++)
        b[i] = (uint8_t)(n >> (8 * i));
    expect_fail_buf("length one past EOF", b, sizeof b, sizeof b, "exceeds the file");
    /* Huge length (all ones) must not overflow 8 + N. */
    memset(b, 0xff, 8);
    expect_fail_buf("length 2^64-1", b, sizeof b, sizeof b, "exceeds the file");

    /* Over the 100 MB cap, in a file large enough to hold it: only the
     * 8-byte length is in the buffer. */
    n = 150u * 1000u * 1000u;
    for (int i = 0; i < 8; i++)
        b[i] = (uint8_t)(n >> (8 * i));
    expect_fail_buf("over 100 MB", b, 8, 400u * 1000u * 1000u, "exceeds the limit");

    /* Buffer shorter than 8 + N although the file is big enough. */
    const char *h = "{\"a\":" T("U8", "[1]", "[0,1]") "}";
    size_t len;
    uint8_t *v = build(h, strlen(h), 1, &len);
    expect_fail_buf("buffer shorter than header", v, 8 + strlen(h) - 5, len,
                    "truncated: the header");
    expect_fail_buf("buffer of 5 bytes", v, 5, len, "truncated");
    expect_fail_buf("buffer longer than file", v, len, len - 1, "longer than the file");
    free(v);

    /* Header that is not UTF-8. */
    const char *bad_utf8[] = {
        "{\"a\xff\":" T("U8", "[1]", "[0,1]") "}",
        "{\"\xc0\xaf\":" T("U8", "[1]", "[0,1]") "}",         /* overlong '/' */
        "{\"\xed\xa0\x80\":" T("U8", "[1]", "[0,1]") "}",     /* surrogate */
        "{\"\xf4\x90\x80\x80\":" T("U8", "[1]", "[0,1]") "}", /* > U+10FFFF */
        "{\"a\":" T("U8", "[1]", "[0,1]") "}\xc3",            /* cut sequence */
    };
    for (size_t i = 0; i < sizeof bad_utf8 / sizeof bad_utf8[0]; i++) {
        char what[64];
        snprintf(what, sizeof what, "non-UTF-8 #%zu", i);
        expect_fail(what, bad_utf8[i], 1, "not valid UTF-8");
    }

    /* A raw NUL byte inside the JSON (valid UTF-8, invalid JSON). */
    const char nulhdr[] = "{\"a\":1\0}";
    uint8_t *z = build(nulhdr, sizeof nulhdr - 1, 0, &len);
    expect_fail_buf("raw NUL byte", z, len, len, "not valid JSON");
    free(z);

    /* Names longer than the limit. */
    char *long_hdr = malloc(AIRLLM_ST_MAX_NAME + 100);
    memset(long_hdr, 0, AIRLLM_ST_MAX_NAME + 100);
    strcpy(long_hdr, "{\"");
    memset(long_hdr + 2, 'n', AIRLLM_ST_MAX_NAME + 1);
    strcat(long_hdr, "\":" T("U8", "[1]", "[0,1]") "}");
    expect_fail("name too long", long_hdr, 1, "longer than the limit of 1024");
    free(long_hdr);

    /* Deep nesting in metadata: cJSON's nesting limit or our schema. */
    char deep[4000];
    size_t k = 0;
    k += (size_t)sprintf(deep, "{\"__metadata__\":{\"k\":");
    for (int i = 0; i < 1500; i++)
        deep[k++] = '[';
    for (int i = 0; i < 1500; i++)
        deep[k++] = ']';
    deep[k++] = '}';
    deep[k++] = '}';
    deep[k] = 0;
    expect_fail("deep nesting", deep, 0, "not valid JSON");
}

/* Messages must name the tensor even when the name is hostile. */
static void test_message_sanitised(void)
{
    airllm_st_file f;
    airllm_err e = {{0}};
    int rc = parse_str("{\"a\\nb\":" T("F17", "[1]", "[0,1]") "}", 1, &f, &e);
    CHECK(rc == -1 && strstr(e.msg, "'a?b'") && !strchr(e.msg, '\n'), "sanitised: %s", e.msg);
}

static void test_read_file(void)
{
    char path[] = "/tmp/airllm_test_st_XXXXXX";
    int fd = mkstemp(path);
    CHECK(fd >= 0, "mkstemp");
    if (fd < 0)
        return;
    const char *h = "{\"w\":" T("F16", "[3]", "[0,6]") "}";
    size_t len;
    uint8_t *b = build(h, strlen(h), 6, &len);
    CHECK(write(fd, b, len) == (ssize_t)len, "write");
    airllm_st_file f;
    airllm_err e = {{0}};
    int rc = airllm_st_read_file(path, &f, &e);
    CHECK(rc == 0 && f.n_tensors == 1 && f.tensors[0].dtype == AIRLLM_DTYPE_F16 &&
              f.file_size == len,
          "read_file: %s", e.msg);
    airllm_st_free(&f);

    /* Truncate the data: message names the file. */
    CHECK(ftruncate(fd, (off_t)len - 2) == 0, "ftruncate");
    rc = airllm_st_read_file(path, &f, &e);
    CHECK(rc == -1 && strncmp(e.msg, path, strlen(path)) == 0 && strstr(e.msg, "truncated"),
          "read_file truncated: %s", e.msg);
    /* Truncate into the header. */
    CHECK(ftruncate(fd, 20) == 0, "ftruncate");
    rc = airllm_st_read_file(path, &f, &e);
    CHECK(rc == -1 && strstr(e.msg, path) && strstr(e.msg, "exceeds the file (20 bytes)"),
          "read_file short header: %s", e.msg);
    CHECK(ftruncate(fd, 5) == 0, "ftruncate");
    rc = airllm_st_read_file(path, &f, &e);
    CHECK(rc == -1 && strstr(e.msg, path) && strstr(e.msg, "too short"),
          "read_file 5 bytes: %s", e.msg);
    close(fd);
    unlink(path);
    free(b);

    rc = airllm_st_read_file(path, &f, &e);
    CHECK(rc == -1 && strstr(e.msg, path) && strstr(e.msg, "cannot open"),
          "read_file missing: %s", e.msg);
    rc = airllm_st_read_file("/tmp", &f, &e);
    CHECK(rc == -1 && strstr(e.msg, "/tmp") && strstr(e.msg, "not a regular file"),
          "read_file dir: %s", e.msg);
}

static void test_utf8(void)
{
    static const struct {
        const char *s;
        int ok;
    } cases[] = {
        {"", 1},
        {"abc", 1},
        {"\xc3\xa9", 1},                 /* U+00E9 */
        {"\xe2\x82\xac", 1},             /* U+20AC */
        {"\xed\x9f\xbf", 1},             /* U+D7FF, just below surrogates */
        {"\xee\x80\x80", 1},             /* U+E000, just above */
        {"\xef\xbf\xbf", 1},             /* U+FFFF */
        {"\xf0\x90\x80\x80", 1},         /* U+10000 */
        {"\xf4\x8f\xbf\xbf", 1},         /* U+10FFFF */
        {"\x80", 0},                     /* lone continuation */
        {"\xbf", 0},
        {"\xc0\xaf", 0},                 /* overlong */
        {"\xc1\xbf", 0},                 /* overlong */
        {"\xe0\x80\xaf", 0},             /* overlong 3-byte */
        {"\xe0\x9f\xbf", 0},             /* overlong 3-byte */
        {"\xf0\x80\x80\xaf", 0},         /* overlong 4-byte */
        {"\xf0\x8f\xbf\xbf", 0},         /* overlong 4-byte */
        {"\xed\xa0\x80", 0},             /* U+D800 */
        {"\xed\xbf\xbf", 0},             /* U+DFFF */
        {"\xf4\x90\x80\x80", 0},         /* U+110000 */
        {"\xf5\x80\x80\x80", 0},
        {"\xff", 0},
        {"\xfe", 0},
        {"\xc3", 0},                     /* truncated */
        {"\xe2\x82", 0},                 /* truncated */
        {"\xf0\x90\x80", 0},             /* truncated */
        {"\xc3\x41", 0},                 /* bad continuation */
        {"\xe2\x82\x41", 0},
        {"\xf0\x90\x41\x80", 0},
        {"a\xc3\xa9z\xe2", 0},           /* valid then truncated */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        int rc = airllm_utf8_check((const uint8_t *)cases[i].s, strlen(cases[i].s));
        CHECK((rc == 0) == cases[i].ok, "utf8 case %zu: rc=%d want %s", i, rc,
              cases[i].ok ? "valid" : "invalid");
    }
    /* An embedded NUL is valid UTF-8 (U+0000). */
    CHECK(airllm_utf8_check((const uint8_t *)"a\0b", 3) == 0, "utf8 NUL");
}

/* The scanner under both readers (lib/airllm_jscan.c): what it accepts and
 * refuses, how it decodes strings and numbers, and how it walks members. */
static void test_jscan(void)
{
    static const struct {
        const char *doc;
        int ok;
        const char *needle; /* in the error, when refused */
    } cases[] = {
        {"{}", 1, NULL},
        {" [1, 2.5e-3, -0, true, false, null, \"\"] ", 1, NULL},
        {"{\"a\":{\"b\":[{\"c\":[]}]}}", 1, NULL},
        {"\"\\ud83d\\ude00\\u00e9\\n\"", 1, NULL},
        {"", 0, "unexpected end"},
        {"{", 0, "unexpected end"},
        {"[1,]", 0, "expected a value"},
        {"{\"a\":1,}", 0, "expected a key"},
        {"{\"a\" 1}", 0, "expected ':'"},
        {"[1 2]", 0, "expected ',' or ']'"},
        {"{'a':1}", 0, "unexpected byte 0x27"},
        {"[01]", 0, "malformed number '01'"},
        {"[1.]", 0, "malformed number"},
        {"[.5]", 0, "malformed number"},
        {"[+1]", 0, "malformed number"},
        {"[1e]", 0, "malformed number"},
        {"[tru]", 0, "unknown literal"},
        {"[True]", 0, "unknown literal"},
        {"[\"a\x01\"]", 0, "control character 0x01 inside a string"},
        {"[\"\\x\"]", 0, "bad escape"},
        {"[\"\\u12G4\"]", 0, "bad \\u escape"},
        {"[\"\\ud800\"]", 0, "unpaired surrogate"},
        {"[\"\\udc00\"]", 0, "unpaired surrogate"},
        {"[\"\\ud800\\u0041\"]", 0, "unpaired surrogate"},
        {"[\"abc", 0, "unterminated string"},
        {"[\x01]", 0, "unexpected control character 0x01"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        size_t end = 0;
        airllm_js_error e = {0};
        const uint8_t *d = (const uint8_t *)cases[i].doc;
        int rc = airllm_js_check(d, strlen(cases[i].doc), &end, &e);
        CHECK((rc == 0) == cases[i].ok, "jscan case %zu (%s): rc %d (%s)", i, cases[i].doc, rc,
              rc ? e.what : "accepted");
        if (rc && cases[i].needle)
            CHECK(strstr(e.what, cases[i].needle) != NULL, "jscan case %zu: '%s' lacks '%s'", i,
                  e.what, cases[i].needle);
    }
    /* Nesting is bounded: 64 levels pass, 65 do not. */
    char deep[200];
    memset(deep, '[', 65);
    memset(deep + 65, ']', 65);
    size_t end;
    airllm_js_error e;
    CHECK(airllm_js_check((const uint8_t *)deep + 1, 128, &end, &e) == 0, "64 levels");
    CHECK(airllm_js_check((const uint8_t *)deep, 130, &end, &e) < 0 &&
              strstr(e.what, "nested") != NULL, "65 levels refused");
    /* One value, then whatever follows is the caller's. */
    CHECK(airllm_js_check((const uint8_t *)"{} x", 4, &end, &e) == 0 && end == 2, "end offset");

    /* Walk an object: spans, first-class kinds, string decoding. */
    const char *doc = "{\"k\\u0065y\": \"a\\u0000b\\ud83d\\ude00\", \"n\": [18446744073709551615,"
                      " 9007199254740993, 12, -1, 1.0, 1e2], \"t\": true}";
    const uint8_t *d = (const uint8_t *)doc;
    CHECK(airllm_js_check(d, strlen(doc), &end, &e) == 0, "walk doc: %s", e.what);
    airllm_js_val root, k, v, num;
    CHECK(airllm_js_value_at(d, end, 0, &root) == 0 && root.kind == AIRLLM_JS_OBJECT &&
              root.end == end, "root span");
    airllm_js_iter it;
    airllm_js_iter_init(&it, d, &root);
    CHECK(airllm_js_iter_next(&it, &k, &v) == 1 && airllm_js_str_eq(d, &k, "key"),
          "escaped key compares decoded");
    char buf[64];
    size_t n;
    bool nul;
    airllm_js_str(d, &v, buf, &n, &nul);
    CHECK(nul && n == 7 && memcmp(buf, "a\0b\xf0\x9f\x98\x80", 7) == 0, "decoded NUL and pair");
    CHECK(!airllm_js_str_eq(d, &v, "a"), "a string with NUL equals no literal");
    CHECK(airllm_js_str_has_nul(d, &v) && !airllm_js_str_has_nul(d, &k), "has_nul");
    /* \\u0000 is a backslash and "u0000", not an escaped NUL. */
    const char *esc = "\"a\\\\u0000\"";
    airllm_js_val ev;
    CHECK(airllm_js_value_at((const uint8_t *)esc, strlen(esc), 0, &ev) == 0 &&
              !airllm_js_str_has_nul((const uint8_t *)esc, &ev), "escaped backslash is no NUL");
    /* A NUL far into a long metadata value or name is still found (the
     * messages decode only the first few hundred bytes). */
    char *hdr = malloc(8000);
    snprintf(hdr, 8000, "{\"__metadata__\":{\"k\":\"%05000d\\u0000\"}}", 0);
    expect_fail("NUL after 5000 bytes of a metadata value", hdr, 0, "NUL");
    snprintf(hdr, 8000, "{\"__metadata__\":{\"%05000d\\u0000\":\"v\"}}", 0);
    expect_fail("NUL after 5000 bytes of a metadata key", hdr, 0, "NUL");
    free(hdr);
    CHECK(airllm_js_iter_next(&it, &k, &v) == 1 && v.kind == AIRLLM_JS_ARRAY, "array member");
    airllm_js_iter a;
    airllm_js_iter_init(&a, d, &v);
    static const int want[] = {AIRLLM_JS_NUM_BIG, AIRLLM_JS_NUM_BIG, AIRLLM_JS_NUM_OK,
                               AIRLLM_JS_NUM_NEG, AIRLLM_JS_NUM_FRAC, AIRLLM_JS_NUM_FRAC};
    uint64_t u;
    for (size_t i = 0; i < 6; i++) {
        CHECK(airllm_js_iter_next(&a, NULL, &num) == 1 && num.kind == AIRLLM_JS_NUMBER,
              "number %zu", i);
        CHECK(airllm_js_uint(d, &num, UINT64_C(1) << 53, &u) == want[i], "number %zu class", i);
    }
    CHECK(airllm_js_uint(d, &(airllm_js_val){AIRLLM_JS_NUMBER, 0, 0}, 10, &u) ==
              AIRLLM_JS_NUM_OK && u == 0, "empty digits read as 0");
    CHECK(airllm_js_iter_next(&a, NULL, &num) == 0, "array end");
    CHECK(airllm_js_iter_next(&it, &k, &v) == 1 && v.kind == AIRLLM_JS_TRUE, "literal member");
    CHECK(airllm_js_iter_next(&it, &k, &v) == 0 && airllm_js_iter_next(&it, &k, &v) == 0,
          "object end, and it stays ended");
    const char *flt = "[1e2, 0.25]";
    airllm_js_val arr;
    CHECK(airllm_js_value_at((const uint8_t *)flt, strlen(flt), 0, &arr) == 0, "float array");
    airllm_js_iter_init(&a, (const uint8_t *)flt, &arr);
    CHECK(airllm_js_iter_next(&a, NULL, &num) == 1 &&
              airllm_js_double((const uint8_t *)flt, &num) == 100.0, "double 1e2");
    CHECK(airllm_js_iter_next(&a, NULL, &num) == 1 &&
              airllm_js_double((const uint8_t *)flt, &num) == 0.25, "double 0.25");
}

int main(void)
{
    test_jscan();
    test_single();
    test_multi_sorted();
    test_valid_misc();
    test_bad_json();
    test_bad_framing();
    test_message_sanitised();
    test_read_file();
    test_utf8();
    return test_summary();
}
