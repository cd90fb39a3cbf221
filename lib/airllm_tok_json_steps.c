/* tokenizer.json's "normalizer", "pre_tokenizer" and "decoder" sections
 * into the flat step lists the encoder (airllm_tok_norm.c,
 * airllm_tok_encode.c) and the streaming decoder (airllm_tok_decode.c) run.
 * Sequences are flattened (nested at most TOK_MAX_NEST deep, at most
 * TOK_MAX_STEPS steps); a component or an order those cannot run exactly is
 * refused with its name rather than approximated. */
#include <stdbool.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "airllm_bytes.h"
#include "airllm_tok_impl.h"

/* A single code point given as a JSON string (Metaspace replacement, Strip
 * content), as Rust's `char` fields are. */
static int jchar(ld *L, const cJSON *o, const char *k, uint32_t *cp, const char *where)
{
    const char *s;
    if (airllm_tok_jstr(L, o, k, true, &s, where))
        return -1;
    size_t n = strlen(s), l;
    if (n == 0 || airllm_utf8_check((const uint8_t *)s, n) ||
        (*cp = utf8_get((const uint8_t *)s, n, 0, &l), l != n))
        return airllm_errf(L->err, "%s: \"%s\" must be a single character", where, k);
    return 0;
}

/* {"String": s} or {"Regex": r}: *is_regex says which. */
static int jpattern(ld *L, const cJSON *o, const char **s, bool *is_regex, const char *where)
{
    const cJSON *p = airllm_tok_jget(o, "pattern");
    if (!cJSON_IsObject(p))
        return airllm_errf(L->err, "%s: \"pattern\" is missing or not an object", where);
    const cJSON *v = airllm_tok_jget(p, "String");
    *is_regex = false;
    if (!v) {
        v = airllm_tok_jget(p, "Regex");
        *is_regex = true;
    }
    if (!cJSON_IsString(v))
        return airllm_errf(L->err, "%s: \"pattern\" must hold a \"String\" or \"Regex\" string",
                           where);
    *s = v->valuestring;
    return 0;
}

/* ------------------------------------------------------------------------
 * normalizer
 * ------------------------------------------------------------------------ */

static int add_norm(ld *L, norm_step st)
{
    if (L->t->n_norm == TOK_MAX_STEPS)
        return airllm_errf(L->err, "normalizer: more than %d steps", TOK_MAX_STEPS);
    L->t->norm[L->t->n_norm++] = st;
    return 0;
}

int airllm_tok_load_normalizer(ld *L, const cJSON *n, int depth)
{
    if (!n || cJSON_IsNull(n))
        return 0;
    const char *ty = airllm_tok_jtype(L, n, "normalizer");
    if (!ty)
        return -1;
    norm_step st = {0};
    if (strcmp(ty, "Sequence") == 0) {
        const cJSON *list = airllm_tok_jget(n, "normalizers");
        if (!cJSON_IsArray(list))
            return airllm_errf(L->err, "normalizer Sequence: \"normalizers\" is not an array");
        if (depth >= TOK_MAX_NEST)
            return airllm_errf(L->err, "normalizer: Sequences nested too deep");
        const cJSON *e;
        cJSON_ArrayForEach(e, list) if (airllm_tok_load_normalizer(L, e, depth + 1)) return -1;
        return 0;
    }
    if (strcmp(ty, "Prepend") == 0) {
        const char *s;
        if (airllm_tok_jstr(L, n, "prepend", true, &s, "normalizer Prepend"))
            return -1;
        st.kind = NORM_PREPEND;
        if (airllm_tok_intern(L, s, strlen(s), &st.a, "normalizer Prepend string"))
            return -1;
        return add_norm(L, st);
    }
    if (strcmp(ty, "Replace") == 0) {
        const char *pat, *content;
        bool is_re;
        if (jpattern(L, n, &pat, &is_re, "normalizer Replace") ||
            airllm_tok_jstr(L, n, "content", true, &content, "normalizer Replace"))
            return -1;
        if (is_re)
            return airllm_errf(L->err, "normalizer Replace with a Regex pattern is not supported");
        if (!*pat)
            return airllm_errf(L->err, "normalizer Replace: empty pattern");
        st.kind = NORM_REPLACE;
        if (airllm_tok_intern(L, pat, strlen(pat), &st.a, "normalizer Replace pattern") ||
            airllm_tok_intern(L, content, strlen(content), &st.b, "normalizer Replace content"))
            return -1;
        return add_norm(L, st);
    }
    if (strcmp(ty, "NFC") == 0) {
        st.kind = NORM_NFC;
        return add_norm(L, st);
    }
    if (strcmp(ty, "Strip") == 0) {
        st.kind = NORM_STRIP;
        if (airllm_tok_jbool(L, n, "strip_left", false, &st.left, "normalizer Strip") ||
            airllm_tok_jbool(L, n, "strip_right", false, &st.right, "normalizer Strip"))
            return -1;
        return add_norm(L, st);
    }
    return airllm_errf(L->err, "normalizer \"%s\" is not supported (only Sequence, Prepend, "
                               "Replace, Strip and NFC)", ty);
}

/* ------------------------------------------------------------------------
 * pre_tokenizer
 * ------------------------------------------------------------------------ */

/* The split regexes of the tokenizers this code knows, matched by hand in
 * airllm_tok_match_gpt2 / airllm_pretok_llama3. */
static const char RE_GPT2_S[] =
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";
static const char RE_LLAMA3_S[] =
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| "
    "?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
static const char RE_QWEN2_S[] =
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| "
    "?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";

static int add_pt(ld *L, pt_step st)
{
    if (L->t->n_pt == TOK_MAX_STEPS)
        return airllm_errf(L->err, "pre_tokenizer: more than %d steps", TOK_MAX_STEPS);
    L->t->pt[L->t->n_pt++] = st;
    return 0;
}

static int parse_behavior(ld *L, const cJSON *o, int *b, const char *where)
{
    static const char *names[] = {"Removed", "Isolated", "MergedWithPrevious", "MergedWithNext",
                                  "Contiguous"};
    const char *s;
    if (airllm_tok_jstr(L, o, "behavior", true, &s, where))
        return -1;
    for (int i = 0; i < 5; i++)
        if (strcmp(s, names[i]) == 0) {
            *b = i;
            return 0;
        }
    return airllm_errf(L->err, "%s: unknown behavior \"%s\"", where, s);
}

int airllm_tok_load_pretok(ld *L, const cJSON *p, int depth)
{
    if (!p || cJSON_IsNull(p))
        return 0;
    const char *ty = airllm_tok_jtype(L, p, "pre_tokenizer");
    if (!ty)
        return -1;
    pt_step st = {0};
    if (strcmp(ty, "Sequence") == 0) {
        const cJSON *list = airllm_tok_jget(p, "pretokenizers");
        if (!cJSON_IsArray(list))
            return airllm_errf(L->err, "pre_tokenizer Sequence: \"pretokenizers\" is not an array");
        if (depth >= TOK_MAX_NEST)
            return airllm_errf(L->err, "pre_tokenizer: Sequences nested too deep");
        const cJSON *e;
        cJSON_ArrayForEach(e, list) if (airllm_tok_load_pretok(L, e, depth + 1)) return -1;
        return 0;
    }
    if (strcmp(ty, "Split") == 0) {
        const char *pat;
        bool is_re = false, invert = false;
        if (jpattern(L, p, &pat, &is_re, "pre_tokenizer Split") ||
            parse_behavior(L, p, &st.behavior, "pre_tokenizer Split") ||
            airllm_tok_jbool(L, p, "invert", false, &invert, "pre_tokenizer Split"))
            return -1;
        if (invert)
            return airllm_errf(L->err, "pre_tokenizer Split with invert=true is not supported");
        if (is_re) {
            st.kind = PT_SPLIT_RE;
            if (strcmp(pat, RE_GPT2_S) == 0)
                st.re = RE_GPT2;
            else if (strcmp(pat, RE_LLAMA3_S) == 0)
                st.re = RE_LLAMA3;
            else if (strcmp(pat, RE_QWEN2_S) == 0)
                st.re = RE_QWEN2;
            else
                return airllm_errf(L->err,
                                   "pre_tokenizer Split: regex \"%.200s\" is not supported (only "
                                   "the GPT-2, Llama 3 and Qwen2 patterns are implemented)",
                                   pat);
        } else {
            if (!*pat)
                return airllm_errf(L->err, "pre_tokenizer Split: empty pattern");
            st.kind = PT_SPLIT_STR;
            if (airllm_tok_intern(L, pat, strlen(pat), &st.pat, "pre_tokenizer Split pattern"))
                return -1;
        }
        return add_pt(L, st);
    }
    if (strcmp(ty, "ByteLevel") == 0) {
        st.kind = PT_BYTELEVEL;
        if (airllm_tok_jbool(L, p, "add_prefix_space", true, &st.add_prefix_space,
                             "pre_tokenizer ByteLevel") ||
            airllm_tok_jbool(L, p, "use_regex", true, &st.use_regex, "pre_tokenizer ByteLevel"))
            return -1;
        return add_pt(L, st);
    }
    if (strcmp(ty, "Digits") == 0) {
        bool individual = false;
        if (airllm_tok_jbool(L, p, "individual_digits", false, &individual, "pre_tokenizer Digits"))
            return -1;
        st.kind = PT_DIGITS;
        st.behavior = individual ? B_ISOLATED : B_CONTIGUOUS;
        return add_pt(L, st);
    }
    if (strcmp(ty, "Metaspace") == 0) {
        const char *where = "pre_tokenizer Metaspace", *scheme;
        const cJSON *aps_v = airllm_tok_jget(p, "add_prefix_space");
        bool aps_given = aps_v && !cJSON_IsNull(aps_v);
        bool aps = false;
        st.kind = PT_METASPACE;
        if (jchar(L, p, "replacement", &st.repl, where) ||
            airllm_tok_jbool(L, p, "add_prefix_space", true, &aps, where) ||
            airllm_tok_jstr(L, p, "prepend_scheme", false, &scheme, where) ||
            airllm_tok_jbool(L, p, "split", true, &st.split, where))
            return -1;
        st.scheme = PS_ALWAYS;
        if (scheme) {
            if (strcmp(scheme, "always") == 0)
                st.scheme = PS_ALWAYS;
            else if (strcmp(scheme, "first") == 0)
                st.scheme = PS_FIRST;
            else if (strcmp(scheme, "never") == 0)
                st.scheme = PS_NEVER;
            else
                return airllm_errf(L->err, "%s: unknown prepend_scheme \"%s\"", where, scheme);
        }
        /* The legacy add_prefix_space=false means "never", as in tokenizers. */
        if (aps_given && !aps) {
            if (st.scheme != PS_NEVER && scheme)
                return airllm_errf(L->err, "%s: add_prefix_space does not match prepend_scheme",
                                   where);
            st.scheme = PS_NEVER;
        }
        const char *r = airllm_tok_jget(p, "replacement")->valuestring;
        if (airllm_tok_intern(L, r, strlen(r), &st.repl_s, where))
            return -1;
        return add_pt(L, st);
    }
    return airllm_errf(L->err, "pre_tokenizer \"%s\" is not supported (only Sequence, Split, "
                               "ByteLevel, Digits and Metaspace)", ty);
}

/* ------------------------------------------------------------------------
 * decoder
 * ------------------------------------------------------------------------ */

static int add_dstage(ld *L, dec_stage st)
{
    if (L->t->n_dstage == TOK_MAX_STEPS)
        return airllm_errf(L->err, "decoder: more than %d steps", TOK_MAX_STEPS);
    L->t->dstage[L->t->n_dstage++] = st;
    return 0;
}

/* What the streaming decoder can do: per-token stages (Replace, Metaspace,
 * Strip), then ByteFallback, then Fuse, then a Strip of leading characters
 * of the whole text. That covers the SentencePiece-style decoders in the
 * wild; other orders would need the whole token list and are refused.
 * phase: 0 per-token, 1 after ByteFallback, 2 after Fuse, 3 after the last Strip. */
static int load_decoder_step(ld *L, const cJSON *d, int *phase)
{
    airllm_tokenizer *t = L->t;
    const char *ty = airllm_tok_jtype(L, d, "decoder");
    if (!ty)
        return -1;
    dec_stage st = {0};
    if (strcmp(ty, "Replace") == 0 || strcmp(ty, "Metaspace") == 0 ||
        strcmp(ty, "Strip") == 0) {
        if (strcmp(ty, "Strip") == 0) {
            int64_t a, b;
            if (jchar(L, d, "content", &st.ch, "decoder Strip"))
                return -1;
            if (airllm_tok_jint(airllm_tok_jget(d, "start"), 0, 1e6, &a) ||
                airllm_tok_jint(airllm_tok_jget(d, "stop"), 0, 1e6, &b))
                return airllm_errf(L->err, "decoder Strip: \"start\"/\"stop\" must be small "
                                           "non-negative integers");
            if (*phase == 2) {
                /* After Fuse there is one token, the whole text: its leading
                 * characters can be stripped as the text streams out; its
                 * trailing ones could not. */
                if (b != 0)
                    return airllm_errf(L->err, "decoder Strip after Fuse with stop > 0 is not "
                                               "supported (cannot stream)");
                t->dec_strip_ch = st.ch;
                t->dec_strip_n = (size_t)a;
                *phase = 3;
                return 0;
            }
            st.kind = DS_STRIP;
            st.start = (size_t)a;
            st.stop = (size_t)b;
        } else if (strcmp(ty, "Replace") == 0) {
            const char *pat, *content;
            bool is_re;
            if (jpattern(L, d, &pat, &is_re, "decoder Replace") ||
                airllm_tok_jstr(L, d, "content", true, &content, "decoder Replace"))
                return -1;
            if (is_re)
                return airllm_errf(L->err, "decoder Replace with a Regex pattern is not supported");
            if (!*pat)
                return airllm_errf(L->err, "decoder Replace: empty pattern");
            st.kind = DS_REPLACE;
            if (airllm_tok_intern(L, pat, strlen(pat), &st.pat, "decoder Replace pattern") ||
                airllm_tok_intern(L, content, strlen(content), &st.content,
                                  "decoder Replace content"))
                return -1;
        } else {
            const char *scheme;
            bool aps = false;
            st.kind = DS_METASPACE;
            if (jchar(L, d, "replacement", &st.ch, "decoder Metaspace") ||
                airllm_tok_jstr(L, d, "prepend_scheme", false, &scheme, "decoder Metaspace") ||
                airllm_tok_jbool(L, d, "add_prefix_space", true, &aps, "decoder Metaspace"))
                return -1;
            st.scheme = scheme && strcmp(scheme, "never") == 0 ? PS_NEVER : PS_ALWAYS;
            if (!aps)
                st.scheme = PS_NEVER;
        }
        if (*phase != 0)
            return airllm_errf(L->err, "decoder %s after ByteFallback or Fuse is not supported",
                               ty);
        return add_dstage(L, st);
    }
    if (strcmp(ty, "ByteFallback") == 0) {
        if (*phase != 0)
            return airllm_errf(L->err, "decoder ByteFallback after Fuse is not supported");
        t->dec_byte_fallback = true;
        *phase = 1;
        return 0;
    }
    if (strcmp(ty, "Fuse") == 0) {
        if (*phase >= 2)
            return airllm_errf(L->err, "decoder: Fuse twice");
        *phase = 2;
        return 0;
    }
    if (strcmp(ty, "ByteLevel") == 0)
        return airllm_errf(L->err, "decoder ByteLevel combined with other decoders is not "
                                   "supported");
    return airllm_errf(L->err, "decoder \"%s\" is not supported (only ByteLevel, Metaspace, "
                               "Replace, ByteFallback, Fuse and Strip)", ty);
}

int airllm_tok_load_decoder(ld *L, const cJSON *d)
{
    airllm_tokenizer *t = L->t;
    if (!d || cJSON_IsNull(d)) {
        t->dec_join_space = true; /* tokenizers joins tokens with spaces */
        return 0;
    }
    const char *ty = airllm_tok_jtype(L, d, "decoder");
    if (!ty)
        return -1;
    int phase = 0;
    if (strcmp(ty, "ByteLevel") == 0) {
        t->dec_byte_level = true;
        return 0;
    }
    if (strcmp(ty, "Sequence") != 0)
        return load_decoder_step(L, d, &phase);
    const cJSON *list = airllm_tok_jget(d, "decoders");
    if (!cJSON_IsArray(list))
        return airllm_errf(L->err, "decoder Sequence: \"decoders\" is not an array");
    if (cJSON_GetArraySize(list) == 1) {
        const char *ty1 = airllm_tok_jtype(L, cJSON_GetArrayItem(list, 0), "decoder");
        if (!ty1)
            return -1;
        if (strcmp(ty1, "ByteLevel") == 0) {
            t->dec_byte_level = true;
            return 0;
        }
    }
    const cJSON *e;
    cJSON_ArrayForEach(e, list) if (load_decoder_step(L, e, &phase)) return -1;
    return 0;
}
