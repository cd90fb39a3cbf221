/* Unit tests for the manifest: a round trip through JSON is exact and
 * deterministic, and malformed manifests are refused with a useful message. */
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "airllm_index.h"
#include "airllm_manifest.h"

#include "test_util.h"

#define SHA_LIT "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
static const char *SHA = SHA_LIT;

static void build(airllm_manifest *m, airllm_mf_unit *units, airllm_mf_tensor *tensors,
                  airllm_mf_file *sources, airllm_mf_file *files)
{
    memset(m, 0, sizeof *m);
    m->version_major = 1;
    m->complete = true;
    m->tool_name = "airllm-split";
    m->tool_version = "0.1.0";
    m->options_json = "{\"compress\":\"none\"}";
    m->model.architecture = "LlamaForCausalLM";
    m->model.model_type = "llama";
    m->model.family = "llama";
    m->model.num_layers = 1;
    m->model.hidden_size = 4;
    m->model.vocab_size = -1;
    m->model.tie_word_embeddings = true;
    units[0] = (airllm_mf_unit){"embed", AIRLLM_UNIT_EMBED, -1, "embed.airc", 8192, {0}, NULL};
    units[1] = (airllm_mf_unit){"layer.0", AIRLLM_UNIT_LAYER, 0, "layer.00000.airc", 8192, {0},
                                NULL};
    units[2] = (airllm_mf_unit){"lm_head", AIRLLM_UNIT_LM_HEAD, -1, NULL, 0, {0},
                                "model.embed_tokens.weight"};
    memcpy(units[0].sha256, SHA, 65);
    memcpy(units[1].sha256, SHA, 65);
    static const uint64_t shape0[] = {8, 4}, shape1[] = {4};
    tensors[0] = (airllm_mf_tensor){"model.embed_tokens.weight", AIRLLM_DTYPE_F32, 2, shape0, 0,
                                    AIRLLM_ENC_RAW, 128, 128, "model.safetensors", 0, false, 0, 0, 0};
    tensors[1] = (airllm_mf_tensor){"model.layers.0.w", AIRLLM_DTYPE_BF16, 1, shape1, 1,
                                    AIRLLM_ENC_ZSTD, 8, 7, "model.safetensors", 0, false, 0, 0, 0};
    sources[0] = (airllm_mf_file){"model.safetensors", 300, {0}};
    memcpy(sources[0].sha256, SHA, 65);
    files[0] = (airllm_mf_file){"config.json", 10, {0}};
    memcpy(files[0].sha256, SHA, 65);
    m->units = units;
    m->n_units = 3;
    m->tensors = tensors;
    m->n_tensors = 2;
    m->sources = sources;
    m->n_sources = 1;
    m->files = files;
    m->n_files = 1;
}

static char *good_json(void)
{
    airllm_manifest m;
    airllm_mf_unit u[3];
    airllm_mf_tensor t[2];
    airllm_mf_file s[1], f[1];
    build(&m, u, t, s, f);
    char *json = NULL;
    airllm_err err;
    if (airllm_manifest_to_json(&m, &json, &err))
        printf("to_json: %s\n", err.msg);
    return json;
}

/* Replaces the first occurrence of from with to in a copy of s. */
/* noinline: gcc 12 reports a false -Wdangling-pointer when this is inlined. */
__attribute__((noinline)) static char *replace(const char *s, const char *from, const char *to)
{
    const char *hit = strstr(s, from);
    if (!hit)
        return NULL;
    size_t head = (size_t)(hit - s), nfrom = strlen(from), nto = strlen(to);
    size_t ntail = strlen(s) - head - nfrom;
    char *out = malloc(head + nto + ntail + 1);
    memcpy(out, s, head);
    memcpy(out + head, to, nto);
    memcpy(out + head + nto, s + head + nfrom, ntail + 1);
    return out;
}

/* The name index: every name found at its first position, repeats
 * reported with the earlier one, absent names and NULL names skipped, and
 * growth far past the size it was made for. */
static void test_index(void)
{
    enum { N = 50000 };
    char (*names)[24] = malloc(N * sizeof *names);
    CHECK(names != NULL, "index: alloc");
    if (!names)
        return;
    airllm_index ix;
    airllm_err err;
    CHECK(airllm_index_init(&ix, 4, &err) == 0, "index: init");
    long prev = 0;
    int ok = 1;
    for (size_t i = 0; i < N; i++) {
        snprintf(names[i], sizeof names[i], "model.layers.%zu.w", i);
        ok &= airllm_index_add(&ix, names[i], i, &prev, &err) == 0 && prev == -1;
    }
    CHECK(ok && ix.n == N, "index: %d distinct names added", N);
    ok = 1;
    for (size_t i = 0; i < N; i++)
        ok &= airllm_index_find(&ix, names[i]) == (long)i;
    CHECK(ok, "index: every name found at its position");
    CHECK(airllm_index_add(&ix, "model.layers.7.w", N, &prev, &err) == 0 && prev == 7 &&
              airllm_index_find(&ix, "model.layers.7.w") == 7 && ix.n == N,
          "index: a repeat gives the first position and changes nothing");
    CHECK(airllm_index_find(&ix, "model.layers.50000.w") == -1 &&
              airllm_index_find(&ix, "") == -1 && airllm_index_find(&ix, NULL) == -1,
          "index: absent names");
    airllm_index_free(&ix);
    CHECK(airllm_index_find(&ix, "x") == -1, "index: a freed index is empty");

    struct rec {
        int pad;
        const char *name;
    } recs[] = {{0, "b"}, {1, NULL}, {2, "a"}, {3, "b"}};
    CHECK(airllm_index_build(&ix, recs, 4, sizeof recs[0], offsetof(struct rec, name), &err) ==
                  0 &&
              airllm_index_find(&ix, "a") == 2 && airllm_index_find(&ix, "b") == 0 &&
              ix.n == 2,
          "index: build skips NULL names and keeps the first of a repeat");
    airllm_index_free(&ix);
    free(names);
}

int main(void)
{
    test_index();
    char *json = good_json();
    CHECK(json != NULL, "serialize");
    airllm_manifest m;
    airllm_err err;
    int rc = airllm_manifest_parse(json, strlen(json), &m, &err);
    CHECK(rc == 0, "parse of our own output: %s", rc ? err.msg : "");
    if (rc == 0) {
        CHECK(m.n_units == 3 && m.n_tensors == 2 && m.n_sources == 1 && m.n_files == 1,
              "counts");
        CHECK(m.units[2].file == NULL && strcmp(m.units[2].tied_to, "model.embed_tokens.weight")
              == 0, "tied unit");
        CHECK(m.tensors[1].unit == 1 && m.tensors[1].encoding == AIRLLM_ENC_ZSTD &&
              m.tensors[1].stored_len == 7, "tensor fields");
        CHECK(m.model.vocab_size == -1 && m.model.num_layers == 1, "model fields");
        char *again;
        CHECK(airllm_manifest_to_json(&m, &again, &err) == 0 && strcmp(again, json) == 0,
              "re-serialization is byte-identical");
        free(again);
        airllm_manifest_free(&m);
    }

    static const struct {
        const char *from, *to, *expect;
    } bad[] = {
        {"\"format\":\t\"airllm\"", "\"format\":\t\"other\"", "format"},
        {"\"format_version\":\t\"1.0\"", "\"format_version\":\t\"2.0\"", "not supported"},
        {"\"format_version\":\t\"1.0\"", "\"format_version\":\t\"1\"", "format_version"},
        {"\"complete\":\ttrue", "\"complete\":\t1", "complete"},
        {"\"kind\":\t\"embed\"", "\"kind\":\t\"blob\"", "unit kind"},
        {"\"file\":\t\"embed.airc\"", "\"file\":\t\"../embed.airc\"", "unsafe"},
        {"\"file\":\t\"layer.00000.airc\"", "\"file\":\t\"embed.airc\"", "used twice"},
        {"\"dtype\":\t\"BF16\"", "\"dtype\":\t\"Q7\"", "unknown dtype"},
        {"\"bytes\":\t8,", "\"bytes\":\t9,", "does not match"},
        {"\"unit\":\t\"layer.0\"", "\"unit\":\t\"lm_head\"", "not a unit with a file"},
        {"\"unit\":\t\"layer.0\"", "\"unit\":\t\"nope\"", "not a unit"},
        {"\"encoding\":\t\"zstd\"", "\"encoding\":\t\"lzma\"", "unknown encoding"},
        {"\"name\":\t\"model.layers.0.w\"", "\"name\":\t\"model.embed_tokens.weight\"",
         "duplicate tensor"},
        {"\"name\":\t\"layer.0\"", "\"name\":\t\"embed\"", "duplicate unit"},
        {"\"size\":\t300", "\"size\":\t-1", "non-negative"},
        {"\"size\":\t300", "\"size\":\t1.5", "non-negative"},
        {"0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
         "0123456789ABCDEF0123456789abcdef0123456789abcdef0123456789abcdef", "sha256"},
        {"\"source\":\t\"model.safetensors\"", "\"source\":\t\"x.safetensors\"", "not in"},
        {"\"tied_to\":\t\"model.embed_tokens.weight\"", "\"tied_to\":\t5", "tied_to"},
        {"\"shape\":\t[4]", "\"shape\":\t[4, -2]", "shape"},
        {"\"shape\":\t[4]", "\"shape\":\t[1,1,1,1,1,1,1,1,4]", "shape"},
        {"\"layer\":\t0", "\"layer\":\t\"0\"", "layer"},
        {"\"tie_word_embeddings\":\ttrue", "\"tie_word_embeddings\":\t\"yes\"", "tie_word"},
        {"\"options\":\t{", "\"options\":\t\"x\", \"extra\":\t{", "options"},
        {"\"file\":\t\"config.json\"", "\"file\":\t\"layer.00000.airc\"", "also a unit file"},
        {"\"kind\":\t\"lm_head\"", "\"kind\":\t\"norm\"", "lm_head"},
        {"\"kind\":\t\"embed\",", "\"kind\":\t\"embed\", \"layer\": 3,", "only for layer"},
        {"\"tied_to\":\t\"model.embed_tokens.weight\"",
         "\"tied_to\":\t\"nope\"", "not a listed tensor"},
        {"\"tied_to\":\t\"model.embed_tokens.weight\"",
         "\"tied_to\":\t\"model.embed_tokens.weight\", \"size\": 5", "no file, size"},
        {"\"format_version\":\t\"1.0\"", "\"format_version\":\t\" 1.0\"", "format_version"},
        {"\"kind\":\t\"layer\",\n\t\t\t\"layer\":\t0,", "\"kind\":\t\"embed\",",
         "second embed"},
        /* Several checks against the same earlier unit: the message is the
         * one a scan of the earlier units gave (kind, then name, then file). */
        {"\"name\":\t\"layer.0\",\n\t\t\t\"kind\":\t\"layer\",\n\t\t\t\"layer\":\t0,",
         "\"name\":\t\"embed\",\n\t\t\t\"kind\":\t\"embed\",", "units[1]: a second embed unit"},
        {"\"name\":\t\"layer.0\",\n\t\t\t\"kind\":\t\"layer\",\n\t\t\t\"layer\":\t0,\n\t\t\t"
         "\"file\":\t\"layer.00000.airc\"",
         "\"name\":\t\"embed\",\n\t\t\t\"kind\":\t\"layer\",\n\t\t\t\"layer\":\t0,\n\t\t\t"
         "\"file\":\t\"embed.airc\"", "units[1]: duplicate unit \"embed\""},
        {"\"file\":\t\"model.safetensors\",\n\t\t\t\"size\":\t300",
         "\"file\":\t\"model.safetensors\",\n\t\t\t\"size\":\t300, \"sha256\": \"" SHA_LIT
         "\"}, {\"file\":\t\"model.safetensors\",\n\t\t\t\"size\":\t300",
         "sources[1]: duplicate file \"model.safetensors\""},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char *b = replace(json, bad[i].from, bad[i].to);
        if (!b) {
            CHECK(0, "case %zu: pattern '%s' not found", i, bad[i].from);
            continue;
        }
        rc = airllm_manifest_parse(b, strlen(b), &m, &err);
        CHECK(rc != 0 && strstr(err.msg, bad[i].expect), "case %zu (%s): rc=%d msg=%s", i,
              bad[i].to, rc, rc ? err.msg : "(accepted)");
        if (rc == 0)
            airllm_manifest_free(&m);
        free(b);
    }
    /* Read member by member, not as a tree: keys may be escaped, unknown
     * keys are ignored, the first of a repeated key wins (as cJSON's lookup
     * gave), and a string holding \u0000 is refused rather than cut. */
    static const struct {
        const char *from, *to, *expect; /* expect NULL: must parse */
    } more[] = {
        {"\"dtype\":\t\"BF16\"", "\"d\\u0074ype\":\t\"B\\u004616\"", NULL},
        {"\"dtype\":\t\"BF16\"", "\"dtype\":\t\"BF16\", \"future\": {\"x\": [1, {}]}", NULL},
        {"\"dtype\":\t\"BF16\"", "\"dtype\":\t\"BF16\", \"dtype\": \"Q7\"", NULL},
        {"\"name\":\t\"model.layers.0.w\"", "\"name\":\t\"model.layers.0.w\\u0000x\"",
         "contains a NUL"},
        {"\"encoding\":\t\"zstd\"", "\"encoding\":\t\"zstd\" ,,", "not valid JSON"},
        {"\"size\":\t300", "\"size\":\t0300", "malformed number"},
        {"\"size\":\t300", "\"size\":\t3e2", NULL},
    };
    for (size_t i = 0; i < sizeof more / sizeof more[0]; i++) {
        char *b = replace(json, more[i].from, more[i].to);
        if (!b) {
            CHECK(0, "more %zu: pattern '%s' not found", i, more[i].from);
            continue;
        }
        rc = airllm_manifest_parse(b, strlen(b), &m, &err);
        if (more[i].expect)
            CHECK(rc != 0 && strstr(err.msg, more[i].expect), "more %zu (%s): rc=%d msg=%s", i,
                  more[i].to, rc, rc ? err.msg : "(accepted)");
        else
            CHECK(rc == 0, "more %zu (%s): %s", i, more[i].to, err.msg);
        if (rc == 0) {
            CHECK(m.tensors[1].dtype == AIRLLM_DTYPE_BF16 && m.sources[0].size == 300 &&
                      m.tensors[1].source == m.sources[0].file && m.tensors[1].ndim == 1 &&
                      m.tensors[1].shape[0] == 4,
                  "more %zu: fields", i);
            airllm_manifest_free(&m);
        }
        free(b);
    }
    static const char *garbage[] = {"", "[]", "null", "{", "{\"format\":\t\"airllm\"}",
                                    "{} x", "\xff\xfe{}"};
    for (size_t i = 0; i < sizeof garbage / sizeof garbage[0]; i++) {
        rc = airllm_manifest_parse(garbage[i], strlen(garbage[i]), &m, &err);
        CHECK(rc != 0, "garbage %zu accepted", i);
        if (rc == 0)
            airllm_manifest_free(&m);
    }
    free(json);
    return test_summary();
}
