/* Tests for lib/airllm_spm.c (SentencePiece tokenizer.model) and
 * lib/airllm_tiktoken.c (tiktoken ranks files).
 *
 * Conformance: each fixture in DATA_DIR (tests/data/tokenizer/files, made by
 * scripts/make_spm_fixtures.py with the PyPI sentencepiece / tiktoken
 * packages) lists strings with the reference ids and decode, and id
 * sequences with the reference decode; the C readers must give the same,
 * both directly and through airllm_tok_load on a directory holding the file.
 *
 * Robustness: truncated files, lengths past the end, invalid UTF-8 pieces,
 * unsupported model types give an error naming the file, never a crash.
 *
 *   test_spm DATA_DIR */
#include "airllm_spm.h"
#include "airllm_tiktoken.h"
#include "airllm_tokenizer.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "airllm_bytes.h"
#include "airllm_io.h"
#include "test_util.h"

static int hexval(char c)
{
    return c >= '0' && c <= '9' ? c - '0' : c - 'a' + 10;
}

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

static int32_t *json_ids(const cJSON *a, size_t *n)
{
    *n = (size_t)cJSON_GetArraySize(a);
    int32_t *ids = malloc((*n + 1) * sizeof *ids);
    size_t i = 0;
    const cJSON *e;
    cJSON_ArrayForEach(e, a) ids[i++] = (int32_t)e->valuedouble;
    return ids;
}

static char *slurp(const char *path, size_t *len)
{
    char *d;
    airllm_err err;
    if (airllm_read_small_file(path, 64u << 20, &d, len, &err)) {
        printf("cannot read %s: %s\n", path, err.msg);
        return NULL;
    }
    return d;
}

static void print_ids(const char *what, const int32_t *ids, size_t n)
{
    printf("    %s (%zu):", what, n);
    for (size_t i = 0; i < n && i < 40; i++)
        printf(" %d", ids[i]);
    printf("%s\n", n > 40 ? " ..." : "");
}

static int same_ids(const int32_t *a, size_t na, const int32_t *b, size_t nb)
{
    return na == nb && (na == 0 || memcmp(a, b, na * sizeof *a) == 0);
}

/* The encoders under test, behind one signature. */
typedef struct {
    airllm_spm *spm;
    airllm_tiktoken *tt;
    airllm_tokenizer *tok; /* the generic interface over the same file */
    int nfc;               /* tok applies NFC (Qwen) */
} model;

static int enc_direct(const model *m, const char *s, size_t n, int32_t **ids, size_t *k,
                      airllm_err *err)
{
    return m->spm ? airllm_spm_encode(m->spm, s, n, ids, k, err)
                  : airllm_tiktoken_encode(m->tt, s, n, ids, k, err);
}

static int dec_direct(const model *m, const int32_t *ids, size_t n, char **s, size_t *k,
                      airllm_err *err)
{
    return m->spm ? airllm_spm_decode(m->spm, ids, n, s, k, err)
                  : airllm_tiktoken_decode(m->tt, ids, n, s, k, err);
}

/* Copies the model file into a fresh directory so that airllm_tok_load
 * picks it up by name. */
static int load_generic(const char *data_dir, const char *file, const char *as, model *m)
{
    char dir[4096], src[8192], dst[8192];
    snprintf(dir, sizeof dir, "%s/test_spm.%d.%s", P_tmpdir, (int)getpid(), as);
    mkdir(dir, 0755);
    snprintf(src, sizeof src, "%s/%s", data_dir, file);
    snprintf(dst, sizeof dst, "%s/%s", dir, as);
    size_t len;
    char *d = slurp(src, &len);
    if (!d)
        return -1;
    FILE *f = fopen(dst, "wb");
    fwrite(d, 1, len, f);
    fclose(f);
    free(d);
    airllm_err err;
    int rc = airllm_tok_load(dir, &m->tok, &err);
    CHECK(rc == 0, "airllm_tok_load(%s): %s", dir, rc ? err.msg : "");
    unlink(dst);
    rmdir(dir);
    return rc;
}

static void run_fixture(const char *data_dir, const char *name)
{
    char path[8192];
    snprintf(path, sizeof path, "%s/%s", data_dir, name);
    size_t len;
    char *text = slurp(path, &len);
    CHECK(text != NULL, "read fixture %s", path);
    if (!text)
        return;
    cJSON *fx = cJSON_ParseWithLength(text, len);
    free(text);
    const char *file = cJSON_GetObjectItem(fx, "model")->valuestring;
    int is_spm = strcmp(cJSON_GetObjectItem(fx, "kind")->valuestring, "spm") == 0;
    model m = {0};
    airllm_err err;
    snprintf(path, sizeof path, "%s/%s", data_dir, file);
    int rc = is_spm ? airllm_spm_load(path, &m.spm, &err) : airllm_tiktoken_load(path, &m.tt, &err);
    CHECK(rc == 0, "load %s: %s", path, rc ? err.msg : "");
    if (rc) {
        cJSON_Delete(fx);
        return;
    }
    if (!is_spm) {
        int32_t start = (int32_t)cJSON_GetObjectItem(fx, "special_start")->valuedouble;
        rc = airllm_tiktoken_add_qwen_specials(m.tt, start, &err);
        CHECK(rc == 0, "qwen specials: %s", rc ? err.msg : "");
        m.nfc = 1;
    }
    load_generic(data_dir, file, is_spm ? "tokenizer.model" : "qwen.tiktoken", &m);

    int n_cases = 0, enc_ok = 0, gen_ok = 0, dec_ok = 0, n_dec = 0, shown = 0;
    const cJSON *c;
    cJSON_ArrayForEach(c, cJSON_GetObjectItem(fx, "cases"))
    {
        size_t tn, want_n, got_n = 0, dn;
        char *s = unhex(cJSON_GetObjectItem(c, "hex")->valuestring, &tn);
        int32_t *want = json_ids(cJSON_GetObjectItem(c, "ids"), &want_n), *got = NULL;
        rc = enc_direct(&m, s, tn, &got, &got_n, &err);
        int ok = rc == 0 && same_ids(got, got_n, want, want_n);
        n_cases++;
        enc_ok += ok;
        if (!ok && shown++ < 6) {
            printf("  %s: encode mismatch for \"%s\"\n", name, s);
            if (rc)
                printf("    error: %s\n", err.msg);
            print_ids("want", want, want_n);
            print_ids("got ", got, got_n);
        }
        /* decode of the reference ids */
        char *want_dec = unhex(cJSON_GetObjectItem(c, "dec")->valuestring, &dn), *out = NULL;
        size_t on = 0;
        rc = dec_direct(&m, want, want_n, &out, &on, &err);
        ok = rc == 0 && on == dn && memcmp(out, want_dec, dn) == 0;
        dec_ok += ok;
        n_dec++;
        if (!ok && shown++ < 6)
            printf("  %s: decode mismatch for \"%s\": got \"%s\"\n", name, want_dec,
                   rc ? err.msg : out);
        free(out);
        /* the generic interface: same ids (Qwen's NFC'd ids), same text */
        if (m.tok) {
            size_t wn = want_n;
            int32_t *w2 = want;
            if (m.nfc)
                w2 = json_ids(cJSON_GetObjectItem(c, "nfc_ids"), &wn);
            int32_t *g2 = NULL;
            size_t g2n = 0;
            rc = airllm_tok_encode(m.tok, s, tn, 0, &g2, &g2n, &err);
            char *o2 = NULL;
            size_t o2n = 0;
            int ok2 = rc == 0 && same_ids(g2, g2n, w2, wn);
            if (ok2 && airllm_tok_decode(m.tok, want, want_n, 0, &o2, &o2n, &err) == 0)
                ok2 = o2n == dn && memcmp(o2, want_dec, dn) == 0;
            else
                ok2 = 0;
            gen_ok += ok2;
            if (!ok2 && shown++ < 6) {
                printf("  %s: airllm_tok mismatch for \"%s\"%s%s\n", name, s, rc ? ": " : "",
                       rc ? err.msg : "");
                print_ids("want", w2, wn);
                print_ids("got ", g2, g2n);
            }
            if (w2 != want)
                free(w2);
            free(g2);
            free(o2);
        }
        free(want_dec);
        free(s);
        free(want);
        free(got);
    }
    cJSON_ArrayForEach(c, cJSON_GetObjectItem(fx, "decodes"))
    {
        size_t n, dn, on = 0, o2n = 0;
        int32_t *ids = json_ids(cJSON_GetObjectItem(c, "ids"), &n);
        char *want = unhex(cJSON_GetObjectItem(c, "hex")->valuestring, &dn), *out = NULL, *o2 = NULL;
        rc = dec_direct(&m, ids, n, &out, &on, &err);
        int ok = rc == 0 && on == dn && memcmp(out, want, dn) == 0;
        if (ok && m.tok) /* streamed one id at a time through the generic decoder */
            ok = airllm_tok_decode(m.tok, ids, n, 0, &o2, &o2n, &err) == 0 && o2n == dn &&
                 memcmp(o2, want, dn) == 0;
        n_dec++;
        dec_ok += ok;
        if (!ok && shown++ < 8) {
            printf("  %s: decode mismatch: want \"%s\" got \"%s\" / \"%s\"\n", name, want,
                   out ? out : err.msg, o2 ? o2 : "");
            print_ids("ids", ids, n);
        }
        free(ids);
        free(want);
        free(out);
        free(o2);
    }
    printf("%s: %d/%d encodes match %s %s, %d/%d via airllm_tok; %d/%d decodes match\n",
           name, enc_ok, n_cases, is_spm ? "sentencepiece" : "tiktoken",
           cJSON_GetObjectItem(fx, "version")->valuestring, gen_ok, n_cases, dec_ok, n_dec);
    CHECK(enc_ok == n_cases, "%s: every encode matches", name);
    CHECK(gen_ok == n_cases, "%s: every airllm_tok encode/decode matches", name);
    CHECK(dec_ok == n_dec, "%s: every decode matches", name);
    airllm_spm_free(m.spm);
    airllm_tiktoken_free(m.tt);
    airllm_tok_free(m.tok);
    cJSON_Delete(fx);
}

/* ------------------------------------------------------------------------
 * Bad files
 * ------------------------------------------------------------------------ */

static void expect_spm_error(const uint8_t *d, size_t n, const char *needle, const char *what)
{
    airllm_spm *m = NULL;
    airllm_err err = {{0}};
    int rc = airllm_spm_load_buffer(d, n, "bad/tokenizer.model", &m, &err);
    CHECK(rc != 0 && m == NULL, "%s: refused", what);
    CHECK(strstr(err.msg, "bad/tokenizer.model") != NULL, "%s: \"%s\" names the file", what,
          err.msg);
    CHECK(!needle || strstr(err.msg, needle), "%s: \"%s\" mentions \"%s\"", what, err.msg,
          needle);
    airllm_spm_free(m);
}

/* A minimal protobuf writer for hand-made models. */
typedef struct {
    uint8_t b[4096];
    size_t n;
} pbw;

static void put_varint(pbw *w, uint64_t v)
{
    do {
        w->b[w->n++] = (uint8_t)((v & 0x7F) | (v > 0x7F ? 0x80 : 0));
        v >>= 7;
    } while (v);
}

static void put_bytes(pbw *w, unsigned field, const void *s, size_t n)
{
    put_varint(w, field << 3 | 2);
    put_varint(w, n);
    memcpy(w->b + w->n, s, n);
    w->n += n;
}

static void put_piece(pbw *w, const char *s, size_t n, float score, int type)
{
    pbw p = {.n = 0};
    put_bytes(&p, 1, s, n);
    put_varint(&p, 2 << 3 | 5);
    memcpy(p.b + p.n, &score, 4);
    p.n += 4;
    put_varint(&p, 3 << 3 | 0);
    put_varint(&p, (uint64_t)type);
    put_bytes(w, 1, p.b, p.n);
}

static size_t tiny_model(pbw *w, int model_type, const char *bad_piece)
{
    w->n = 0;
    put_piece(w, "<unk>", 5, 0, 2);
    put_piece(w, "<s>", 3, 0, 3);
    put_piece(w, "a", 1, -1, 1);
    put_piece(w, "b", 1, -2, 1);
    put_piece(w, "ab", 2, -0.5f, 1);
    if (bad_piece)
        put_piece(w, bad_piece, strlen(bad_piece), -3, 1);
    pbw t = {.n = 0};
    put_varint(&t, 3 << 3 | 0);
    put_varint(&t, (uint64_t)model_type);
    put_bytes(w, 2, t.b, t.n);
    pbw ns = {.n = 0};
    put_bytes(&ns, 1, "identity", 8);
    put_bytes(w, 3, ns.b, ns.n);
    return w->n;
}

static void test_bad_spm(const char *data_dir)
{
    pbw w;
    size_t n = tiny_model(&w, 2, NULL);
    airllm_spm *m;
    airllm_err err;
    int rc = airllm_spm_load_buffer(w.b, n, "tiny", &m, &err);
    CHECK(rc == 0, "hand-made BPE model loads: %s", rc ? err.msg : "");
    if (rc == 0) {
        int32_t *ids;
        size_t k;
        rc = airllm_spm_encode(m, "ab ba", 5, &ids, &k, &err);
        /* "▁ab▁ba": ▁ unknown -> <unk>, ab, <unk>, b, a */
        int32_t want[] = {0, 4, 0, 3, 2};
        CHECK(rc == 0 && same_ids(ids, k, want, 5), "hand-made model encodes \"ab ba\"");
        if (rc == 0)
            free(ids);
        airllm_spm_free(m);
    }
    /* every truncation of a real model is refused cleanly */
    char path[8192];
    snprintf(path, sizeof path, "%s/spm-fallback.model", data_dir);
    size_t len;
    uint8_t *d = (uint8_t *)slurp(path, &len);
    if (d) {
        int all = 1, named = 1;
        for (size_t cut = 0; cut < len; cut += (cut < 200 ? 1 : 37)) {
            airllm_spm *x = NULL;
            err.msg[0] = 0;
            if (airllm_spm_load_buffer(d, cut, "cut/tokenizer.model", &x, &err) == 0) {
                /* a cut at a field boundary is a valid, shorter model only
                 * when it still has everything; it cannot here: byte pieces
                 * come first and the unk piece is id 0, so check the size */
                all = all && airllm_spm_size(x) < 700;
                airllm_spm_free(x);
            } else {
                named = named && strstr(err.msg, "cut/tokenizer.model") != NULL;
            }
        }
        CHECK(all && named, "truncated tokenizer.model: refused or shorter, errors name the file");
        /* the last piece cut in half */
        expect_spm_error(d, len - 3, NULL, "truncated tail");
        free(d);
    }
    /* a length past the end: the first piece's length bumped */
    n = tiny_model(&w, 2, NULL);
    w.b[1] = 0x7F;
    expect_spm_error(w.b, n, "past the end", "length past the end");
    /* a varint that never ends */
    uint8_t v[12];
    memset(v, 0xFF, sizeof v);
    v[0] = 0x08;
    expect_spm_error(v, sizeof v, "varint", "endless varint");
    /* invalid UTF-8 in a piece */
    n = tiny_model(&w, 2, "x\xC3(");
    expect_spm_error(w.b, n, "UTF-8", "invalid UTF-8 piece");
    n = tiny_model(&w, 3, NULL);
    expect_spm_error(w.b, n, "WORD", "word model");
    n = tiny_model(&w, 4, NULL);
    expect_spm_error(w.b, n, "CHAR", "char model");
    n = tiny_model(&w, 2, "ab");
    expect_spm_error(w.b, n, "both", "duplicate piece");
    expect_spm_error((const uint8_t *)"", 0, "no pieces", "empty file");
    const char *ranks = "IQ== 0\nIg== 1\n";
    expect_spm_error((const uint8_t *)ranks, strlen(ranks), "tiktoken", "a ranks file");
    /* wire type 3 (groups) */
    uint8_t g[] = {0x0B, 0x0C};
    expect_spm_error(g, sizeof g, "wire type", "group wire type");
}

static void expect_tt_error(const char *s, const char *needle, const char *what)
{
    airllm_tiktoken *t = NULL;
    airllm_err err = {{0}};
    int rc = airllm_tiktoken_load_buffer(s, strlen(s), "bad/qwen.tiktoken", &t, &err);
    CHECK(rc != 0 && t == NULL, "%s: refused", what);
    CHECK(strstr(err.msg, "bad/qwen.tiktoken") != NULL, "%s: \"%s\" names the file", what,
          err.msg);
    CHECK(!needle || strstr(err.msg, needle), "%s: \"%s\" mentions \"%s\"", what, err.msg,
          needle);
    airllm_tiktoken_free(t);
}

static void test_bad_tiktoken(const char *data_dir)
{
    /* every truncation: an error naming the file, or (cut at a line end,
     * which the format cannot tell) fewer ranks; only the final newline
     * may go unnoticed */
    char path[8192];
    snprintf(path, sizeof path, "%s/tiny.tiktoken", data_dir);
    size_t len;
    char *d = slurp(path, &len);
    if (d) {
        int ok = 1;
        for (size_t cut = 0; cut < len; cut++) {
            airllm_tiktoken *t = NULL;
            airllm_err err = {{0}};
            if (airllm_tiktoken_load_buffer(d, cut, "cut/qwen.tiktoken", &t, &err) == 0)
                ok = ok && (airllm_tiktoken_n_ranks(t) < 547 || cut == len - 1);
            else
                ok = ok && strstr(err.msg, "cut/qwen.tiktoken") != NULL;
            airllm_tiktoken_free(t);
        }
        CHECK(ok, "truncated .tiktoken: refused naming the file, or fewer ranks");
        free(d);
    }
    expect_tt_error("", "no ranks", "empty file");
    expect_tt_error("YQ== 0\nYg==\n", "line 2", "missing rank");
    expect_tt_error("YQ== 0\nY!== 1\n", "base64", "bad base64");
    expect_tt_error("YQ== 0\nYg== 99999999999\n", "rank", "rank out of range");
    expect_tt_error("YQ== 0\nYQ== 1\n", "twice", "duplicate token");
    expect_tt_error("YQ== 0\nYg== 0\n", "rank 0", "duplicate rank");
    expect_tt_error("YQ== 0\n\xC3\xA9 1\n", "line 2", "non-ASCII byte");
}

/* ------------------------------------------------------------------------
 * Checkpoint directories: which file is read, tokenizer_config.json
 * ------------------------------------------------------------------------ */

static void put_file(const char *dir, const char *name, const void *d, size_t n)
{
    char p[8192];
    snprintf(p, sizeof p, "%s/%s", dir, name);
    FILE *f = fopen(p, "wb");
    fwrite(d, 1, n, f);
    fclose(f);
}

static void copy_in(const char *data_dir, const char *src, const char *dir, const char *as)
{
    char p[8192];
    size_t n;
    snprintf(p, sizeof p, "%s/%s", data_dir, src);
    char *d = slurp(p, &n);
    if (d)
        put_file(dir, as, d, n);
    free(d);
}

static void clear_dir(const char *dir)
{
    const char *names[] = {"tokenizer.model", "tokenizer.json", "tokenizer_config.json",
                           "qwen.tiktoken", "other.tiktoken"};
    char p[8192];
    for (size_t i = 0; i < sizeof names / sizeof *names; i++) {
        snprintf(p, sizeof p, "%s/%s", dir, names[i]);
        unlink(p);
    }
}

static int ids_are(airllm_tokenizer *t, const char *text, int bos, const int32_t *want, size_t n)
{
    int32_t *ids;
    size_t k;
    airllm_err err;
    if (airllm_tok_encode(t, text, strlen(text), bos, &ids, &k, &err)) {
        printf("    encode: %s\n", err.msg);
        return 0;
    }
    int ok = same_ids(ids, k, want, n);
    if (!ok) {
        print_ids("want", want, n);
        print_ids("got ", ids, k);
    }
    free(ids);
    return ok;
}

static int decodes_to(airllm_tokenizer *t, const int32_t *ids, size_t n, int skip, const char *want)
{
    char *s;
    size_t k;
    airllm_err err;
    if (airllm_tok_decode(t, ids, n, skip, &s, &k, &err))
        return 0;
    int ok = k == strlen(want) && memcmp(s, want, k) == 0;
    if (!ok)
        printf("    decoded \"%s\", want \"%s\"\n", s, want);
    free(s);
    return ok;
}

static void test_dirs(const char *data_dir)
{
    char dir[4096];
    snprintf(dir, sizeof dir, "%s/test_spm_dirs.%d", P_tmpdir, (int)getpid());
    mkdir(dir, 0755);
    airllm_tokenizer *t;
    airllm_err err;
    char path[8192];
    snprintf(path, sizeof path, "%s/spm-fallback.model", data_dir);
    airllm_spm *m;
    if (airllm_spm_load(path, &m, &err)) {
        CHECK(0, "load %s", path);
        return;
    }
    int32_t *hi;
    size_t nhi;
    airllm_spm_encode(m, "hi", 2, &hi, &nhi, &err);

    /* InternLM2-like: BOS added, added_tokens_decoder renames piece 3 (<ctl>)
     * and adds a token after the pieces */
    clear_dir(dir);
    copy_in(data_dir, "spm-fallback.model", dir, "tokenizer.model");
    const char *cfg = "{\"tokenizer_class\": \"InternLM2Tokenizer\", \"add_bos_token\": true, "
                      "\"bos_token\": \"<s>\", \"eos_token\": \"</s>\", \"added_tokens_decoder\": {"
                      "\"3\": {\"content\": \"<|im_start|>\", \"special\": true},"
                      "\"700\": {\"content\": \"<|new|>\", \"special\": false, \"rstrip\": true}}}";
    put_file(dir, "tokenizer_config.json", cfg, strlen(cfg));
    int rc = airllm_tok_load(dir, &t, &err);
    CHECK(rc == 0, "InternLM2-like directory loads: %s", rc ? err.msg : "");
    if (rc == 0) {
        CHECK(airllm_tok_bos(t) == 1 && airllm_tok_eos(t) == 2 && airllm_tok_add_bos_default(t),
              "bos/eos/add_bos from the model and tokenizer_config.json");
        CHECK(airllm_tok_id_of(t, "<|im_start|>", 12) == 3 && airllm_tok_vocab_size(t) == 701,
              "added_tokens_decoder renames id 3 and adds id 700");
        int32_t want[16] = {1, 3};
        memcpy(want + 2, hi, nhi * sizeof *hi);
        CHECK(ids_are(t, "<|im_start|>hi", 1, want, 2 + nhi), "added token split out first");
        want[0] = 700;
        memcpy(want + 1, hi, nhi * sizeof *hi);
        CHECK(ids_are(t, "<|new|>   hi", 0, want, 1 + nhi), "rstrip eats the spaces after it");
        int32_t d[] = {1, 3, 700};
        CHECK(decodes_to(t, d, 3, 0, "<|im_start|><|new|>"), "added tokens decode as their text");
        CHECK(decodes_to(t, d, 3, 1, "<|new|>"), "skip_special drops <s> and <|im_start|>");
        airllm_tok_free(t);
    }

    /* ChatGLM: specials after the pieces, ids only */
    const char *glm = "{\"tokenizer_class\": \"ChatGLMTokenizer\"}";
    put_file(dir, "tokenizer_config.json", glm, strlen(glm));
    rc = airllm_tok_load(dir, &t, &err);
    CHECK(rc == 0, "ChatGLM-like directory loads: %s", rc ? err.msg : "");
    if (rc == 0) {
        int32_t n = (int32_t)airllm_spm_size(m);
        CHECK(airllm_tok_id_of(t, "[gMASK]", 7) == n + 1 && airllm_tok_id_of(t, "sop", 3) == n + 3 &&
              airllm_tok_id_of(t, "<|observation|>", 15) == n + 8,
              "ChatGLM specials follow the pieces");
        int32_t *a, *b;
        size_t na, nb;
        airllm_spm_encode(m, "[gMASK]sop", 10, &a, &na, &err);
        CHECK(airllm_tok_encode(t, "[gMASK]sop", 10, 0, &b, &nb, &err) == 0 &&
              same_ids(a, na, b, nb), "ChatGLM specials are not matched in text");
        int32_t d[] = {n + 1, n + 3};
        CHECK(decodes_to(t, d, 2, 0, "[gMASK]sop") && decodes_to(t, d, 2, 1, ""),
              "ChatGLM specials decode (and are skipped as special)");
        free(a);
        free(b);
        airllm_tok_free(t);
    }

    /* tokenizer.json wins over tokenizer.model */
    snprintf(path, sizeof path, "%s/../metaspace-synth.tokenizer.json", data_dir);
    size_t jn;
    char *json = slurp(path, &jn);
    if (json) {
        put_file(dir, "tokenizer.json", json, jn);
        unlink(strcat(strcpy(path, dir), "/tokenizer_config.json"));
        airllm_tokenizer *j;
        CHECK(airllm_tok_load_buffer(json, jn, NULL, &j, &err) == 0, "metaspace json loads");
        rc = airllm_tok_load(dir, &t, &err);
        CHECK(rc == 0 && airllm_tok_vocab_size(t) == airllm_tok_vocab_size(j),
              "tokenizer.json has priority over tokenizer.model");
        if (rc == 0)
            airllm_tok_free(t);
        airllm_tok_free(j);
        free(json);
    }

    /* a corrupt tokenizer.model: the error names it */
    clear_dir(dir);
    put_file(dir, "tokenizer.model", "\x0a\x7f", 2);
    rc = airllm_tok_load(dir, &t, &err);
    CHECK(rc != 0 && strstr(err.msg, "tokenizer.model") && strstr(err.msg, "past the end"),
          "corrupt tokenizer.model in a directory: \"%s\"", rc ? err.msg : "");

    /* Qwen: qwen.tiktoken picked over another .tiktoken; EOS <|endoftext|> */
    clear_dir(dir);
    copy_in(data_dir, "tiny.tiktoken", dir, "qwen.tiktoken");
    put_file(dir, "other.tiktoken", "YQ== 0\n", 7);
    const char *qcfg = "{\"tokenizer_class\": \"QWenTokenizer\"}";
    put_file(dir, "tokenizer_config.json", qcfg, strlen(qcfg));
    rc = airllm_tok_load(dir, &t, &err);
    CHECK(rc == 0, "Qwen directory loads: %s", rc ? err.msg : "");
    if (rc == 0) {
        int32_t eos = airllm_tok_eos(t);
        CHECK(eos == 547 && airllm_tok_id_of(t, "<|im_end|>", 10) == 549 &&
              airllm_tok_id_of(t, "<|extra_204|>", 13) == 547 + 207 && airllm_tok_bos(t) == -1,
              "Qwen specials follow the ranks (eos %d)", eos);
        int32_t d[] = {548, 549};
        CHECK(decodes_to(t, d, 2, 0, "<|im_start|><|im_end|>") && decodes_to(t, d, 2, 1, ""),
              "Qwen specials decode, and are skipped as special");
        airllm_tok_free(t);
    }
    const char *bad = "{\"tokenizer_class\": \"ChatGLM4Tokenizer\"}";
    put_file(dir, "tokenizer_config.json", bad, strlen(bad));
    rc = airllm_tok_load(dir, &t, &err);
    CHECK(rc != 0 && strstr(err.msg, "qwen.tiktoken") && strstr(err.msg, "ChatGLM4Tokenizer"),
          "a tiktoken file of another family is refused: \"%s\"", rc ? err.msg : "");
    /* two .tiktoken files, neither qwen.tiktoken */
    clear_dir(dir);
    put_file(dir, "other.tiktoken", "YQ== 0\n", 7);
    put_file(dir, "more.tiktoken", "YQ== 0\n", 7);
    rc = airllm_tok_load(dir, &t, &err);
    CHECK(rc != 0 && strstr(err.msg, "unclear"), "ambiguous .tiktoken files: \"%s\"",
          rc ? err.msg : "");
    snprintf(path, sizeof path, "%s/more.tiktoken", dir);
    unlink(path);
    clear_dir(dir);
    rc = airllm_tok_load(dir, &t, &err);
    CHECK(rc != 0 && strstr(err.msg, "no tokenizer.json, tokenizer.model or *.tiktoken"),
          "empty directory: \"%s\"", rc ? err.msg : "");
    rmdir(dir);
    free(hi);
    airllm_spm_free(m);
}

int main(int argc, char **argv)
{
    const char *data_dir = argc > 1 ? argv[1] : "tests/data/tokenizer/files";
    const char *fixtures[] = {"spm-fallback.json", "spm-plain.json", "spm-unused.json",
                              "spm-noescape.json", "spm-unigram.json",
                              "spm-unigram-plain.json", "tiny-tiktoken.json"};
    for (size_t i = 0; i < sizeof fixtures / sizeof *fixtures; i++)
        run_fixture(data_dir, fixtures[i]);
    test_bad_spm(data_dir);
    test_bad_tiktoken(data_dir);
    test_dirs(data_dir);
    return test_summary();
}
