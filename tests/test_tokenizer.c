/* Tests for lib/airllm_tokenizer.c and lib/airllm_tok_*.c.
 *
 * Conformance: every fixture in the data directory (made by
 * scripts/make_tokenizer_fixture.py with the Hugging Face `tokenizers`
 * library) gives strings with the ids tokenizers encodes them to, and id
 * sequences with the text it decodes them to. Encoding must give the same
 * ids; decoding, fed one id at a time through the streaming decoder, the
 * same text, and every piece it gives back must be whole UTF-8 characters.
 *
 * Robustness: malformed tokenizer.json files (bad types, missing parts,
 * out-of-range or duplicate ids, unsupported components) must give an error
 * that says what is wrong, never a crash.
 *
 *   test_tokenizer DATA_DIR [SHARED_DIR]
 * DATA_DIR is tests/data/tokenizer; SHARED_DIR (default DATA_DIR/../../../../shared)
 * holds the stories260K model. Prints (does not assert) load and encode times. */
#include "airllm_tokenizer.h"

#include <cjson/cJSON.h>
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <zstd.h>

#include "airllm_bytes.h"
#include "airllm_io.h"
#include "test_util.h"

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    return -1;
}

/* Hex string -> malloc'ed bytes (NUL-terminated too). */
static char *unhex(const char *h, size_t *n)
{
    size_t len = strlen(h) / 2;
    char *o = malloc(len + 1);
    for (size_t i = 0; i < len; i++)
        o[i] = (char)(hexval(h[2 * i]) * 16 + hexval(h[2 * i + 1]));
    o[len] = 0;
    *n = len;
    return o;
}

/* Reads a file, decompressing it when its name ends in .zst. */
static char *read_any(const char *path, size_t *len)
{
    char *raw;
    size_t n;
    airllm_err err;
    if (airllm_read_small_file(path, 512u << 20, &raw, &n, &err)) {
        printf("cannot read %s: %s\n", path, err.msg);
        return NULL;
    }
    size_t pl = strlen(path);
    if (pl < 4 || strcmp(path + pl - 4, ".zst") != 0) {
        *len = n;
        return raw;
    }
    unsigned long long size = ZSTD_getFrameContentSize(raw, n);
    if (size == ZSTD_CONTENTSIZE_ERROR || size == ZSTD_CONTENTSIZE_UNKNOWN || size > (1u << 30)) {
        printf("%s: not a zstd frame with a known size\n", path);
        free(raw);
        return NULL;
    }
    char *out = malloc(size + 1);
    size_t got = ZSTD_decompress(out, size, raw, n);
    free(raw);
    if (ZSTD_isError(got) || got != size) {
        printf("%s: zstd: %s\n", path, ZSTD_isError(got) ? ZSTD_getErrorName(got) : "short");
        free(out);
        return NULL;
    }
    out[size] = 0;
    *len = size;
    return out;
}

static void print_ids(const char *what, const int32_t *ids, size_t n)
{
    printf("    %s (%zu):", what, n);
    for (size_t i = 0; i < n && i < 40; i++)
        printf(" %d", ids[i]);
    printf("%s\n", n > 40 ? " ..." : "");
}

/* Decodes ids one at a time; checks each piece is whole UTF-8. */
static char *stream_decode(airllm_tok_decoder *d, const int32_t *ids, size_t n, size_t *len,
                           int *pieces_ok)
{
    size_t cap = 64, used = 0;
    char *all = malloc(cap);
    airllm_err err;
    *pieces_ok = 1;
    for (size_t i = 0; i <= n; i++) {
        const char *p;
        size_t k;
        int rc = i < n ? airllm_tok_decoder_feed(d, ids[i], &p, &k, &err)
                       : airllm_tok_decoder_flush(d, &p, &k, &err);
        if (rc) {
            printf("    decoder error: %s\n", err.msg);
            *pieces_ok = 0;
            break;
        }
        if (airllm_utf8_check((const uint8_t *)p, k))
            *pieces_ok = 0;
        while (used + k + 1 > cap)
            cap *= 2;
        all = realloc(all, cap);
        memcpy(all + used, p, k);
        used += k;
    }
    all[used] = 0;
    *len = used;
    return all;
}

static int32_t *json_ids(const cJSON *a, size_t *n)
{
    *n = (size_t)cJSON_GetArraySize(a);
    int32_t *ids = malloc((*n + 1) * sizeof *ids);
    size_t i = 0;
    const cJSON *e;
    cJSON_ArrayForEach(e, a) ids[i++] = (int32_t)e->valuedouble;
    return ids;
}

/* One fixture: returns the number of mismatches. */
static void run_fixture(const char *data_dir, const char *shared_dir, const char *name)
{
    char path[8192], tpath[8192];
    snprintf(path, sizeof path, "%s/%s", data_dir, name);
    size_t len;
    char *text = read_any(path, &len);
    CHECK(text != NULL, "read fixture %s", path);
    if (!text)
        return;
    cJSON *fx = cJSON_ParseWithLength(text, len);
    free(text);
    CHECK(fx != NULL, "parse fixture %s", path);
    if (!fx)
        return;
    const char *rel = cJSON_GetObjectItem(fx, "tokenizer")->valuestring;
    if (strncmp(rel, "shared:", 7) == 0)
        snprintf(tpath, sizeof tpath, "%s/%s", shared_dir, rel + 7);
    else
        snprintf(tpath, sizeof tpath, "%s/%s", data_dir, rel);
    char *tj = read_any(tpath, &len);
    if (!tj) {
        printf("SKIP %s: tokenizer %s not available\n", name, tpath);
        cJSON_Delete(fx);
        return;
    }
    airllm_tokenizer *tok;
    airllm_err err;
    double t0 = now();
    int rc = airllm_tok_load_buffer(tj, len, tpath, &tok, &err);
    double t_load = now() - t0;
    free(tj);
    CHECK(rc == 0, "load %s: %s", tpath, rc ? err.msg : "");
    if (rc) {
        cJSON_Delete(fx);
        return;
    }

    int n_cases = 0, enc_ok = 0, n_dec = 0, dec_ok = 0, shown = 0;
    double t_enc = 0;
    size_t enc_bytes = 0;
    const cJSON *c;
    cJSON_ArrayForEach(c, cJSON_GetObjectItem(fx, "cases"))
    {
        size_t tn, want_n, got_n;
        char *s = unhex(cJSON_GetObjectItem(c, "hex")->valuestring, &tn);
        int bos = cJSON_IsTrue(cJSON_GetObjectItem(c, "bos"));
        int32_t *want = json_ids(cJSON_GetObjectItem(c, "ids"), &want_n), *got = NULL;
        double t1 = now();
        rc = airllm_tok_encode(tok, s, tn, bos, &got, &got_n, &err);
        t_enc += now() - t1;
        enc_bytes += tn;
        int same = rc == 0 && got_n == want_n &&
                   (want_n == 0 || memcmp(got, want, want_n * sizeof *got) == 0);
        n_cases++;
        enc_ok += same;
        if (!same && shown++ < 5) {
            printf("  %s: encode mismatch for \"%s\" (bos=%d)\n", name, s, bos);
            if (rc)
                printf("    error: %s\n", err.msg);
            print_ids("tokenizers", want, want_n);
            print_ids("airllm    ", got, got_n);
        }
        free(s);
        free(want);
        free(got);
    }
    airllm_tok_decoder *d[2];
    CHECK(airllm_tok_decoder_new(tok, 0, &d[0], &err) == 0, "decoder");
    CHECK(airllm_tok_decoder_new(tok, 1, &d[1], &err) == 0, "decoder");
    /* decodes: the cases' ids (both ways) and then the random sequences */
    const cJSON *lists[2] = {cJSON_GetObjectItem(fx, "cases"), cJSON_GetObjectItem(fx, "decodes")};
    for (int li = 0; li < 3; li++) /* cases without, then with skip_special; decodes */
    cJSON_ArrayForEach(c, lists[li == 2])
    {
        size_t n, wn, gn, whole_n;
        int skip = li == 2 ? cJSON_IsTrue(cJSON_GetObjectItem(c, "skip_special")) : li;
        const cJSON *hex = cJSON_GetObjectItem(c, li == 2 ? "hex" : li ? "dec_skip" : "dec");
        if (!hex) /* the add_special_tokens=True cases have no decodes */
            continue;
        int32_t *ids = json_ids(cJSON_GetObjectItem(c, "ids"), &n);
        char *want = unhex(hex->valuestring, &wn);
        int pieces_ok;
        char *got = stream_decode(d[skip], ids, n, &gn, &pieces_ok);
        char *whole = NULL;
        rc = airllm_tok_decode(tok, ids, n, skip, &whole, &whole_n, &err);
        int same = pieces_ok && gn == wn && memcmp(got, want, wn) == 0 && rc == 0 &&
                   whole_n == gn && memcmp(whole, got, gn) == 0;
        n_dec++;
        dec_ok += same;
        if (!same && shown++ < 10) {
            printf("  %s: decode mismatch (skip_special=%d, pieces whole UTF-8: %d)\n", name,
                   skip, pieces_ok);
            print_ids("ids", ids, n);
            printf("    tokenizers: \"%s\"\n    airllm:     \"%s\"\n", want, got);
        }
        free(ids);
        free(want);
        free(got);
        free(whole);
    }
    airllm_tok_decoder_free(d[0]);
    airllm_tok_decoder_free(d[1]);
    CHECK(enc_ok == n_cases, "%s: %d of %d encodings identical", name, enc_ok, n_cases);
    CHECK(dec_ok == n_dec, "%s: %d of %d decodings identical", name, dec_ok, n_dec);
    printf("%s: %d/%d encodings, %d/%d decodings identical to tokenizers; vocab %zu, load "
           "%.1f ms, encode %.1f MB/s\n", name, enc_ok, n_cases, dec_ok, n_dec,
           airllm_tok_vocab_size(tok), t_load * 1e3,
           t_enc > 0 ? enc_bytes / t_enc / 1e6 : 0.0);
    airllm_tok_free(tok);
    cJSON_Delete(fx);
}

static int is_fixture(const char *n)
{
    /* NAME.json; the tokenizers themselves are NAME.tokenizer*.json */
    size_t l = strlen(n);
    return l > 5 && strcmp(n + l - 5, ".json") == 0 && !strstr(n, ".tokenizer");
}

static int cmpstr(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static void run_fixtures(const char *data_dir, const char *shared_dir)
{
    DIR *dir = opendir(data_dir);
    CHECK(dir != NULL, "open %s", data_dir);
    if (!dir)
        return;
    char *names[256];
    int n = 0;
    struct dirent *e;
    while ((e = readdir(dir)) && n < 256)
        if (is_fixture(e->d_name))
            names[n++] = strdup(e->d_name);
    closedir(dir);
    qsort(names, (size_t)n, sizeof *names, cmpstr);
    CHECK(n >= 2, "fixtures found in %s: %d", data_dir, n);
    for (int i = 0; i < n; i++) {
        run_fixture(data_dir, shared_dir, names[i]);
        free(names[i]);
    }
}

/* ---- malformed files ---------------------------------------------------- */

/* A small valid byte-level tokenizer: "a", "b", "ab" and two specials. */
#define BL_HEAD "{\"version\":\"1.0\",\"added_tokens\":[" \
                "{\"id\":3,\"content\":\"<s>\",\"special\":true,\"normalized\":false}]," \
                "\"normalizer\":null,"
#define BL_PRE "\"pre_tokenizer\":{\"type\":\"ByteLevel\",\"add_prefix_space\":false}," \
               "\"decoder\":{\"type\":\"ByteLevel\"},\"post_processor\":null,"
#define BL_MODEL "\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0,\"b\":1,\"ab\":2}," \
                 "\"merges\":[\"a b\"]}}"

static airllm_tokenizer *load_str(const char *json, airllm_err *err)
{
    airllm_tokenizer *t = NULL;
    if (airllm_tok_load_buffer(json, strlen(json), "test.json", &t, err))
        return NULL;
    return t;
}

static void expect_error(const char *json, const char *needle)
{
    airllm_err err = {{0}};
    airllm_tokenizer *t = load_str(json, &err);
    CHECK(t == NULL, "should fail (%s): %s", needle, json);
    CHECK(strstr(err.msg, needle) != NULL, "error \"%s\" should mention \"%s\"", err.msg, needle);
    CHECK(strncmp(err.msg, "test.json: ", 11) == 0, "error names the file: %s", err.msg);
    airllm_tok_free(t);
}

static void test_malformed(void)
{
    airllm_err err;
    airllm_tokenizer *t = load_str(BL_HEAD BL_PRE BL_MODEL, &err);
    CHECK(t != NULL, "base tokenizer loads: %s", t ? "" : err.msg);
    if (t) {
        int32_t *ids;
        size_t n;
        CHECK(airllm_tok_encode(t, "abab<s>a", 8, 0, &ids, &n, &err) == 0, "encode");
        CHECK(n == 4 && ids[0] == 2 && ids[1] == 2 && ids[2] == 3 && ids[3] == 0,
              "abab<s>a -> 2 2 3 0 (got %zu ids)", n);
        free(ids);
        CHECK(airllm_tok_encode(t, "a\xff", 2, 0, &ids, &n, &err) == -1 &&
                  strstr(err.msg, "UTF-8"), "invalid UTF-8 input is an error");
        CHECK(airllm_tok_id_of(t, "ab", 2) == 2 && airllm_tok_id_of(t, "<s>", 3) == 3 &&
                  airllm_tok_id_of(t, "zz", 2) == -1, "id_of");
        CHECK(airllm_tok_vocab_size(t) == 4, "vocab size");
        CHECK(airllm_tok_is_special(t, 3) && !airllm_tok_is_special(t, 2), "is_special");
        CHECK(airllm_tok_bos(t) == -1 && airllm_tok_eos(t) == -1, "no BOS/EOS by default");
        CHECK(airllm_tok_set_bos(t, 3, &err) == 0 && airllm_tok_bos(t) == 3, "set_bos");
        CHECK(airllm_tok_set_bos(t, 99, &err) == -1, "set_bos out of range");
        CHECK(airllm_tok_encode(t, "a", 1, 1, &ids, &n, &err) == 0 && n == 2 && ids[0] == 3,
              "add_bos");
        free(ids);
        const char *cfg = "{\"bos_token\":{\"content\":\"<s>\"},\"eos_token\":\"ab\","
                          "\"add_bos_token\":false}";
        CHECK(airllm_tok_read_config_buffer(t, cfg, strlen(cfg), NULL, &err) == 0,
              "config: %s", err.msg);
        CHECK(airllm_tok_bos(t) == 3 && airllm_tok_eos(t) == 2 && !airllm_tok_add_bos_default(t),
              "config values");
        cfg = "{\"bos_token\":\"<nope>\"}";
        CHECK(airllm_tok_read_config_buffer(t, cfg, strlen(cfg), "cfg.json", &err) == -1 &&
                  strstr(err.msg, "cfg.json") && strstr(err.msg, "<nope>"),
              "unknown bos_token: %s", err.msg);
        cfg = "{\"bos_token\":5}";
        CHECK(airllm_tok_read_config_buffer(t, cfg, strlen(cfg), NULL, &err) == -1,
              "bos_token of the wrong type");
        cfg = "[1,2";
        CHECK(airllm_tok_read_config_buffer(t, cfg, strlen(cfg), NULL, &err) == -1,
              "config not JSON");
        size_t len;
        const char *tokstr = airllm_tok_token(t, 2, &len);
        CHECK(tokstr && len == 2 && memcmp(tokstr, "ab", 2) == 0, "token(2)");
        CHECK(airllm_tok_token(t, 4, &len) == NULL && airllm_tok_token(t, -1, &len) == NULL,
              "token out of range");
        airllm_tok_free(t);
    }

    expect_error("", "not valid JSON");
    expect_error("[1,2]", "not a JSON object");
    expect_error("{\"model\":null}", "\"model\" is missing");
    expect_error("{}", "\"model\" is missing");
    expect_error("{\"model\":{\"type\":\"WordPiece\",\"vocab\":{}}}", "\"WordPiece\"");
    expect_error("{\"model\":{\"type\":\"Unigram\"}}", "only BPE");
    expect_error("{\"model\":{\"vocab\":{}}}", "\"type\" is missing");
    expect_error("{\"model\":{\"type\":5}}", "\"type\" is not a string");
    expect_error("{\"model\":{\"type\":\"BPE\",\"merges\":[]}}", "\"vocab\"");
    expect_error("{\"model\":{\"type\":\"BPE\",\"vocab\":[],\"merges\":[]}}", "\"vocab\"");
    expect_error("{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0}}}", "\"merges\"");
    expect_error("{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":\"0\"},\"merges\":[]}}",
                 "not an integer");
    expect_error("{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":-1},\"merges\":[]}}",
                 "not an integer");
    expect_error("{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":1.5},\"merges\":[]}}",
                 "not an integer");
    expect_error("{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":1e12},\"merges\":[]}}",
                 "not an integer");
    expect_error("{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":5000000},\"merges\":[]}}",
                 "out of range");
    expect_error("{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0,\"b\":0},\"merges\":[]}}",
                 "id 0 is given to both");
    expect_error("{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0,\"a\":1},\"merges\":[]}}",
                 "appears twice");
    expect_error("{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0},\"merges\":[\"a c\"]}}",
                 "\"c\" is not in the vocab");
    expect_error("{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0},\"merges\":[\"a a\"]}}",
                 "merged token \"aa\"");
    expect_error("{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0},\"merges\":[\"a\"]}}",
                 "two tokens");
    expect_error("{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0},\"merges\":[\"a a a\"]}}",
                 "two tokens");
    expect_error("{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0},\"merges\":[[\"a\"]]}}",
                 "pair of strings");
    expect_error("{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0,\"aa\":1},\"merges\":[\"a a\","
                 "[\"a\",\"a\"]]}}", "not a string like the others");
    expect_error("{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\\u0000\":0},\"merges\":[]}}",
                 "\\u0000");
    expect_error("{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0},\"merges\":[],"
                 "\"unk_token\":\"<unk>\"}}", "unk_token");
    expect_error("{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0},\"merges\":[],"
                 "\"dropout\":0.1}}", "dropout");
    expect_error("{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0},\"merges\":[],"
                 "\"byte_fallback\":\"yes\"}}", "\"byte_fallback\" is not a boolean");
    expect_error("{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0},\"merges\":[],"
                 "\"continuing_subword_prefix\":\"##\"}}", "continuing_subword_prefix");
    expect_error("{\"version\":\"2.0\"," BL_MODEL, "version");
    /* added tokens */
    expect_error("{\"added_tokens\":{}," BL_MODEL, "\"added_tokens\" is not an array");
    expect_error("{\"added_tokens\":[5]," BL_MODEL, "added_tokens[0] is not an object");
    expect_error("{\"added_tokens\":[{\"content\":\"x\"}]," BL_MODEL, "\"id\"");
    expect_error("{\"added_tokens\":[{\"id\":3}]," BL_MODEL, "\"content\" is missing");
    expect_error("{\"added_tokens\":[{\"id\":9,\"content\":\"x\"}]," BL_MODEL,
                 "tokenizers would give it 3");
    expect_error("{\"added_tokens\":[{\"id\":1,\"content\":\"a\"}]," BL_MODEL,
                 "tokenizers would give it 0");
    expect_error("{\"added_tokens\":[{\"id\":3,\"content\":\"x\"},{\"id\":4,\"content\":\"x\"}],"
                 BL_MODEL, "listed twice");
    expect_error("{\"added_tokens\":[{\"id\":3,\"content\":\"x\",\"special\":1}]," BL_MODEL,
                 "\"special\" is not a boolean");
    /* components */
    expect_error("{\"normalizer\":{\"type\":\"NFKC\"}," BL_MODEL, "normalizer \"NFKC\"");
    expect_error("{\"normalizer\":{\"type\":\"Lowercase\"}," BL_MODEL, "\"Lowercase\"");
    expect_error("{\"normalizer\":{\"type\":\"Replace\",\"pattern\":{\"Regex\":\" +\"},"
                 "\"content\":\" \"}," BL_MODEL, "Regex pattern");
    expect_error("{\"normalizer\":{\"type\":\"Sequence\",\"normalizers\":5}," BL_MODEL,
                 "\"normalizers\"");
    expect_error("{\"normalizer\":[]," BL_MODEL, "normalizer is not an object");
    expect_error("{\"pre_tokenizer\":{\"type\":\"Whitespace\"}," BL_MODEL, "\"Whitespace\"");
    expect_error("{\"pre_tokenizer\":{\"type\":\"Split\",\"pattern\":{\"Regex\":\"\\\\w+\"},"
                 "\"behavior\":\"Isolated\",\"invert\":false}," BL_MODEL, "regex \"\\w+\"");
    expect_error("{\"pre_tokenizer\":{\"type\":\"Split\",\"pattern\":{\"String\":\"x\"},"
                 "\"behavior\":\"Sideways\",\"invert\":false}," BL_MODEL, "\"Sideways\"");
    expect_error("{\"pre_tokenizer\":{\"type\":\"Split\",\"pattern\":{\"String\":\"x\"},"
                 "\"behavior\":\"Isolated\",\"invert\":true}," BL_MODEL, "invert");
    expect_error("{\"pre_tokenizer\":{\"type\":\"Metaspace\",\"replacement\":\"ab\"}," BL_MODEL,
                 "single character");
    expect_error("{\"pre_tokenizer\":{\"type\":\"Sequence\",\"pretokenizers\":[{\"type\":"
                 "\"Sequence\",\"pretokenizers\":[{\"type\":\"Sequence\",\"pretokenizers\":[{"
                 "\"type\":\"Sequence\",\"pretokenizers\":[{\"type\":\"Sequence\","
                 "\"pretokenizers\":[]}]}]}]}]}," BL_MODEL, "nested too deep");
    expect_error("{\"decoder\":{\"type\":\"WordPiece\"}," BL_MODEL, "decoder \"WordPiece\"");
    expect_error("{\"decoder\":{\"type\":\"Sequence\",\"decoders\":[{\"type\":\"Fuse\"},"
                 "{\"type\":\"ByteFallback\"}]}," BL_MODEL, "ByteFallback after Fuse");
    expect_error("{\"decoder\":{\"type\":\"Sequence\",\"decoders\":[{\"type\":\"Fuse\"},"
                 "{\"type\":\"Strip\",\"content\":\" \",\"start\":0,\"stop\":1}]}," BL_MODEL,
                 "stop > 0");
    expect_error("{\"post_processor\":{\"type\":\"BertProcessing\"}," BL_MODEL,
                 "\"BertProcessing\"");
    expect_error("{\"post_processor\":{\"type\":\"TemplateProcessing\",\"single\":[{"
                 "\"SpecialToken\":{\"id\":\"<s>\",\"type_id\":0}}],\"special_tokens\":{\"<s>\":{"
                 "\"id\":\"<s>\",\"ids\":[77]}}}," BL_MODEL, "not in the vocab");
    expect_error("{\"model\":{\"type\":\"BPE\",\"vocab\":{\"\xc3\":0},\"merges\":[]}}",
                 "UTF-8");

    /* a template gives BOS and add_bos */
    t = load_str("{\"post_processor\":{\"type\":\"TemplateProcessing\",\"single\":[{"
                 "\"SpecialToken\":{\"id\":\"B\",\"type_id\":0}},{\"Sequence\":{\"id\":\"A\","
                 "\"type_id\":0}},{\"SpecialToken\":{\"id\":\"E\",\"type_id\":0}}],"
                 "\"special_tokens\":{\"B\":{\"id\":\"B\",\"ids\":[0]},\"E\":{\"id\":\"E\","
                 "\"ids\":[1]}}}," BL_MODEL, &err);
    CHECK(t && airllm_tok_bos(t) == 0 && airllm_tok_eos(t) == 1 && airllm_tok_add_bos_default(t),
          "template BOS/EOS: %s", t ? "" : err.msg);
    airllm_tok_free(t);

    /* Every truncation of a valid file fails cleanly (or, rarely, loads). */
    const char *full = BL_HEAD BL_PRE BL_MODEL;
    size_t fl = strlen(full);
    int clean = 1;
    for (size_t i = 0; i < fl; i++) {
        char *cut = malloc(i ? i : 1);
        memcpy(cut, full, i);
        airllm_tokenizer *x = NULL;
        if (airllm_tok_load_buffer(cut, i, NULL, &x, &err) == 0)
            airllm_tok_free(x);
        else if (strncmp(err.msg, "tokenizer.json: ", 16) != 0)
            clean = 0;
        free(cut);
    }
    CHECK(clean, "truncated files give errors that name the file");
}

/* ---- streaming ---------------------------------------------------------- */

static void test_streaming(void)
{
    /* Byte-level: the emoji U+1F600 (F0 9F 98 80) split over two tokens. The
     * byte map sends F0 -> "ð", 9F -> "Ł" (U+0141), 98 -> "ĺ" (U+013A), 80 -> "Ģ" (U+0122). */
    const char *json =
        "{\"pre_tokenizer\":{\"type\":\"ByteLevel\",\"add_prefix_space\":false},"
        "\"decoder\":{\"type\":\"ByteLevel\"},\"model\":{\"type\":\"BPE\",\"vocab\":{"
        "\"\xc3\xb0\xc5\x81\":0,\"\xc4\xba\xc4\xa2\":1,\"a\":2,\"\xc4\xa2\":3},\"merges\":[]}}";
    airllm_err err;
    airllm_tokenizer *t = load_str(json, &err);
    CHECK(t != NULL, "byte-level stream tokenizer: %s", t ? "" : err.msg);
    if (!t)
        return;
    airllm_tok_decoder *d;
    const char *p;
    size_t n;
    CHECK(airllm_tok_decoder_new(t, 0, &d, &err) == 0, "decoder");
    CHECK(airllm_tok_decoder_feed(d, 0, &p, &n, &err) == 0 && n == 0, "half an emoji: nothing");
    CHECK(airllm_tok_decoder_feed(d, 1, &p, &n, &err) == 0 && n == 4 &&
              memcmp(p, "\xf0\x9f\x98\x80", 4) == 0, "the rest: the whole emoji");
    CHECK(airllm_tok_decoder_feed(d, 2, &p, &n, &err) == 0 && n == 1 && p[0] == 'a', "a");
    CHECK(airllm_tok_decoder_feed(d, 0, &p, &n, &err) == 0 && n == 0, "half again");
    CHECK(airllm_tok_decoder_feed(d, 2, &p, &n, &err) == 0 && n == 4 &&
              memcmp(p, "\xef\xbf\xbd" "a", 4) == 0, "broken by 'a': U+FFFD a");
    CHECK(airllm_tok_decoder_feed(d, 3, &p, &n, &err) == 0 && n == 3 &&
              memcmp(p, "\xef\xbf\xbd", 3) == 0, "lone continuation byte: U+FFFD");
    CHECK(airllm_tok_decoder_feed(d, 0, &p, &n, &err) == 0 && n == 0, "half at the end");
    CHECK(airllm_tok_decoder_flush(d, &p, &n, &err) == 0 && n == 3, "flush: U+FFFD");
    CHECK(airllm_tok_decoder_feed(d, 12345, &p, &n, &err) == 0 && n == 0, "unknown id: nothing");
    airllm_tok_decoder_free(d);
    airllm_tok_free(t);
}

/* ---- BOS / EOS from the real files -------------------------------------- */

static void test_configs(const char *data_dir, const char *shared_dir)
{
    char path[8192];
    airllm_tokenizer *t;
    airllm_err err;
    /* a checkpoint directory: tokenizer.json + tokenizer_config.json
     * (add_bos_token true, bos "<s>", eos "</s>") */
    snprintf(path, sizeof path, "%s/models/stories260K", shared_dir);
    if (airllm_tok_load(path, &t, &err) == 0) {
        CHECK(airllm_tok_bos(t) == 1 && airllm_tok_eos(t) == 2 && airllm_tok_add_bos_default(t),
              "stories260K: bos %d eos %d add_bos %d", airllm_tok_bos(t), airllm_tok_eos(t),
              airllm_tok_add_bos_default(t));
        int32_t *ids;
        size_t n;
        CHECK(airllm_tok_encode(t, "Hello", 5, 1, &ids, &n, &err) == 0 && n > 1 && ids[0] == 1,
              "stories260K: add_bos puts <s> first");
        free(ids);
        airllm_tok_free(t);
    } else {
        printf("SKIP stories260K directory: %s\n", err.msg);
    }
    /* SmolLM2: no template, so no BOS from tokenizer.json; tokenizer_config
     * says bos "<|im_start|>", eos "<|im_end|>", add_bos_token false */
    snprintf(path, sizeof path, "%s/smollm2-135m-instruct.tokenizer.json.zst", data_dir);
    size_t len;
    char *json = read_any(path, &len);
    if (!json)
        return;
    CHECK(airllm_tok_load_buffer(json, len, path, &t, &err) == 0, "load %s", path);
    free(json);
    CHECK(airllm_tok_bos(t) == -1 && airllm_tok_eos(t) == -1 && !airllm_tok_add_bos_default(t),
          "SmolLM2 tokenizer.json alone: no BOS/EOS");
    snprintf(path, sizeof path, "%s/smollm2-135m-instruct.tokenizer_config.json", data_dir);
    CHECK(airllm_tok_read_config(t, path, &err) == 0, "read %s: %s", path, err.msg);
    CHECK(airllm_tok_bos(t) == 1 && airllm_tok_eos(t) == 2 && !airllm_tok_add_bos_default(t),
          "SmolLM2 config: bos %d eos %d", airllm_tok_bos(t), airllm_tok_eos(t));
    airllm_tok_free(t);
}

/* ---- speed (printed only) ------------------------------------------------ */

static void bench(const char *data_dir)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/llama3-synth.tokenizer.json", data_dir);
    airllm_tokenizer *t;
    airllm_err err;
    if (airllm_tok_load(path, &t, &err)) {
        printf("bench: %s\n", err.msg);
        return;
    }
    const char *para = "Once upon a time, there was a little girl named Lily. She loved to "
                       "play outside in the sunshine 1234567 times!\n\t  ";
    size_t pl = strlen(para), total = 1u << 20;
    char *big = malloc(total);
    for (size_t i = 0; i < total; i++)
        big[i] = para[i % pl];
    /* keep it valid UTF-8 (the paragraph is ASCII) */
    int32_t *ids;
    size_t n;
    double t0 = now();
    int rc = airllm_tok_encode(t, big, total, 0, &ids, &n, &err);
    double dt = now() - t0;
    CHECK(rc == 0, "bench encode: %s", rc ? err.msg : "");
    if (rc == 0)
        printf("bench: encoded 1 MiB into %zu ids in %.1f ms\n", n, dt * 1e3);
    free(ids);
    /* one long word without a pre-tokenizer split is the worst case for BPE */
    memset(big, 'a', total);
    t0 = now();
    rc = airllm_tok_encode(t, big, total, 0, &ids, &n, &err);
    CHECK(rc == 0, "bench encode a*: %s", rc ? err.msg : "");
    printf("bench: 1 MiB of 'a' (one word) into %zu ids in %.1f ms\n", n, (now() - t0) * 1e3);
    free(ids);
    free(big);
    airllm_tok_free(t);
}

int main(int argc, char **argv)
{
    const char *data_dir = argc > 1 ? argv[1] : "tests/data/tokenizer";
    char shared[4096];
    if (argc > 2)
        snprintf(shared, sizeof shared, "%s", argv[2]);
    else
        snprintf(shared, sizeof shared, "%s/../../../../shared", data_dir);
    test_malformed();
    test_streaming();
    test_configs(data_dir, shared);
    run_fixtures(data_dir, shared);
    bench(data_dir);
    return test_summary();
}
