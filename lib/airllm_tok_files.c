/* tokenizer.model (SentencePiece) and *.tiktoken, with their configs.
 *
 * Checkpoints without a tokenizer.json (ChatGLM, Baichuan, InternLM: a
 * SentencePiece tokenizer.model; Qwen v1: qwen.tiktoken) are encoded by
 * lib/airllm_spm.c and lib/airllm_tiktoken.c. This part fills the same id
 * tables as a tokenizer.json would (vocab, id -> token, specials, BOS/EOS),
 * adds the family's special tokens, tokenizer_config.json's
 * added_tokens_decoder and added_tokens.json (split out of the text first,
 * as transformers' slow tokenizers do); airllm_tok_encode.c hands the text
 * between them to the model file's encoder. */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "airllm_io.h"
#include "airllm_json.h"
#include "airllm_tok_impl.h"

/* ChatGLM2/3's specials, appended after the pieces by tokenization_chatglm.py
 * (not in any file). They are given as ids by the chat format, never matched
 * in text. */
static const char *const chatglm_specials[] = {"[MASK]", "[gMASK]", "[sMASK]", "sop", "eop",
                                               "<|system|>", "<|user|>", "<|assistant|>",
                                               "<|observation|>"};

/* One added token of a model file. match: split out of the text. A token
 * listed twice with the same id (the config and the family) is kept once. */
static int file_added(ld *L, const char *content, size_t len, int64_t id, bool special,
                      bool lstrip, bool rstrip, bool match, const char *where)
{
    airllm_tokenizer *t = L->t;
    if (id < 0 || id >= (int64_t)(t->n_vocab + TOK_ID_SLACK))
        return airllm_errf(L->err, "%s: id %lld is out of range (the model has %zu tokens)",
                           where, (long long)id, t->n_vocab);
    if (len == 0)
        return airllm_errf(L->err, "%s: empty token", where);
    if (t->n_added == t->cap_added) {
        size_t cap = t->cap_added ? t->cap_added * 2 : 16;
        added_tok *q = realloc(t->added, cap * sizeof *q);
        if (!q)
            return airllm_errf(L->err, "out of memory");
        t->added = q;
        t->cap_added = cap;
    }
    added_tok a = {0};
    if (airllm_tok_intern(L, content, len, &a.content, where))
        return -1;
    a.norm = a.content;
    a.id = (int32_t)id;
    a.special = special;
    a.lstrip = lstrip;
    a.rstrip = rstrip;
    int32_t old = airllm_tok_sm_put(&t->added_by, t->arena.p, a.content, (int32_t)t->n_added);
    if (old == -2)
        return airllm_errf(L->err, "out of memory");
    if (old >= 0) {
        if (t->added[old].id == a.id)
            return 0;
        return airllm_errf(L->err, "%s: \"%.*s\" has id %lld, but also %d", where, (int)len,
                           content, (long long)id, t->added[old].id);
    }
    if (match && airllm_tok_trie_add(&t->trie_raw, S(t, a.content), len, (int32_t)t->n_added) == -2)
        return airllm_errf(L->err, "out of memory");
    t->added[t->n_added++] = a;
    return 0;
}

/* tokenizer_config.json's added_tokens_decoder: {"ID": {"content": ...,
 * "lstrip", "rstrip", "special"}, ...}. InternLM2 renames pieces this way
 * (92543 "[UNUSED_TOKEN_145]" becomes "<|im_start|>"). */
static int file_config_added(ld *L, const cJSON *root)
{
    const cJSON *d = airllm_tok_jget(root, "added_tokens_decoder"), *e;
    if (!d || cJSON_IsNull(d))
        return 0;
    if (!cJSON_IsObject(d))
        return airllm_errf(L->err, "\"added_tokens_decoder\" is not an object");
    cJSON_ArrayForEach(e, d)
    {
        char where[96];
        snprintf(where, sizeof where, "added_tokens_decoder[\"%.40s\"]", e->string);
        char *endp;
        long long id = strtoll(e->string, &endp, 10);
        const char *content;
        bool special = false, lstrip = false, rstrip = false;
        if (!*e->string || *endp || id < 0)
            return airllm_errf(L->err, "%s: the key is not an id", where);
        if (!cJSON_IsObject(e))
            return airllm_errf(L->err, "%s is not an object", where);
        if (airllm_tok_jstr(L, e, "content", true, &content, where) ||
            airllm_tok_jbool(L, e, "special", false, &special, where) ||
            airllm_tok_jbool(L, e, "lstrip", false, &lstrip, where) ||
            airllm_tok_jbool(L, e, "rstrip", false, &rstrip, where) ||
            file_added(L, content, strlen(content), id, special, lstrip, rstrip, true, where))
            return -1;
    }
    return 0;
}

/* id tables for a model file: the model's tokens, overridden by added ones. */
static int file_build_ids(ld *L)
{
    airllm_tokenizer *t = L->t;
    size_t n_ids = t->n_vocab;
    for (size_t i = 0; i < t->n_added; i++)
        if ((size_t)t->added[i].id + 1 > n_ids)
            n_ids = (size_t)t->added[i].id + 1;
    t->n_ids = n_ids;
    t->id_tok = malloc((n_ids ? n_ids : 1) * sizeof *t->id_tok);
    t->id_dec = malloc((n_ids ? n_ids : 1) * sizeof *t->id_dec);
    t->id_special = calloc(n_ids ? n_ids : 1, 1);
    t->id_added = calloc(n_ids ? n_ids : 1, 1);
    if (!t->id_tok || !t->id_dec || !t->id_special || !t->id_added)
        return airllm_errf(L->err, "out of memory");
    for (size_t i = 0; i < n_ids; i++)
        t->id_tok[i].off = SPAN_NONE;
    for (size_t i = 0; i < t->vocab.cap; i++)
        if (t->vocab.s[i].val >= 0)
            t->id_tok[t->vocab.s[i].val] = t->vocab.s[i].key;
    for (size_t i = 0; i < n_ids; i++)
        t->id_special[i] = t->spm && airllm_spm_type(t->spm, (int32_t)i) == AIRLLM_SPM_CONTROL;
    for (size_t i = 0; i < t->n_added; i++) {
        const added_tok *a = &t->added[i];
        span *o = &t->id_tok[a->id];
        bool same = o->off != SPAN_NONE && o->len == a->content.len &&
                    memcmp(S(t, *o), S(t, a->content), o->len) == 0;
        *o = a->content;
        t->id_added[a->id] = !same;
        t->id_special[a->id] = a->special || t->id_special[a->id];
    }
    memcpy(t->id_dec, t->id_tok, n_ids * sizeof *t->id_dec);
    return 0;
}

/* The model's tokens into the vocab map. Tiktoken tokens are raw bytes (a
 * piece of a UTF-8 character is a token), so they bypass airllm_tok_intern's check. */
static int file_vocab(ld *L)
{
    airllm_tokenizer *t = L->t;
    size_t n = t->spm ? airllm_spm_size(t->spm) : airllm_tiktoken_n_ranks(t->tt);
    size_t ids = t->spm ? n : airllm_tiktoken_vocab_size(t->tt), cap = 64;
    while (cap < 2 * n + 2)
        cap *= 2;
    if (airllm_tok_sm_alloc(&t->vocab, cap) || airllm_tok_sm_alloc(&t->added_by, 64) ||
        airllm_tok_trie_init(&t->trie_raw) || airllm_tok_trie_init(&t->trie_norm))
        return airllm_errf(L->err, "out of memory");
    for (size_t id = 0; id < ids; id++) {
        size_t len;
        int special = 0;
        const void *p = t->spm ? (const void *)airllm_spm_piece(t->spm, (int32_t)id, &len)
                               : (const void *)airllm_tiktoken_token(t->tt, (int32_t)id, &len,
                                                                     &special);
        if (!p || special)
            continue;
        if (t->arena.n + len >= SPAN_NONE)
            return airllm_errf(L->err, "too much token text (over 4 GiB)");
        span sp = {(uint32_t)t->arena.n, (uint32_t)len};
        if (tok_buf_add(&t->arena, p, len) ||
            airllm_tok_sm_put(&t->vocab, t->arena.p, sp, (int32_t)id) == -2)
            return airllm_errf(L->err, "out of memory");
        t->n_vocab = id + 1;
    }
    return 0;
}

/* cls: tokenizer_config.json's tokenizer_class, or NULL. */
static int file_family(ld *L, const char *cls)
{
    airllm_tokenizer *t = L->t;
    if (t->tt) {
        if (cls && strcmp(cls, "QWenTokenizer") != 0)
            return airllm_errf(L->err, "a tiktoken file with tokenizer_class \"%.60s\" is not "
                                       "supported (only QWenTokenizer)", cls);
        /* Qwen hard-codes 151643, which is qwen.tiktoken's rank count */
        int32_t start = (int32_t)airllm_tiktoken_n_ranks(t->tt);
        if (airllm_tiktoken_add_qwen_specials(t->tt, start, L->err))
            return -1;
        for (int32_t id = start; id < start + 208; id++) {
            size_t len;
            const uint8_t *p = airllm_tiktoken_token(t->tt, id, &len, NULL);
            if (file_added(L, (const char *)p, len, id, true, false, false, false, "Qwen"))
                return -1;
        }
        t->nfc = true;
        t->eos = start; /* <|endoftext|> */
        return 0;
    }
    t->bos = airllm_spm_bos_id(t->spm);
    t->eos = airllm_spm_eos_id(t->spm);
    if (cls && strcmp(cls, "ChatGLMTokenizer") == 0) {
        int64_t next = (int64_t)airllm_spm_size(t->spm);
        for (size_t i = 0; i < sizeof chatglm_specials / sizeof *chatglm_specials; i++)
            if (file_added(L, chatglm_specials[i], strlen(chatglm_specials[i]), next + (int64_t)i,
                           true, false, false, false, "ChatGLM"))
                return -1;
    }
    return 0;
}

/* The special tokens of a slow SentencePiece tokenizer (Llama-style:
 * Baichuan, InternLM 1/2): bos_token, eos_token, unk_token and pad_token of
 * tokenizer_config.json, else the classes' defaults <s> </s> <unk>. Their
 * text is split out of the text before SentencePiece sees it, as
 * transformers' PreTrainedTokenizer.tokenize does, so "<s>" written in a
 * prompt (InternLM's build_inputs writes it) is the BOS id. A name that is
 * not a piece of the model is left alone. ChatGLM's SPTokenizer encodes
 * with SentencePiece alone and is not given these, nor is a bare .model file
 * (no tokenizer_config.json: sentencepiece's own encoding). */
static int file_special_tokens(ld *L, const cJSON *root)
{
    static const char *const keys[] = {"bos_token", "eos_token", "unk_token", "pad_token"};
    static const char *const defaults[] = {"<s>", "</s>", "<unk>", NULL};
    for (size_t i = 0; i < sizeof keys / sizeof *keys; i++) {
        const cJSON *v = root ? airllm_tok_jget(root, keys[i]) : NULL;
        if (cJSON_IsObject(v))
            v = airllm_tok_jget(v, "content");
        const char *s = cJSON_IsString(v) ? v->valuestring : v ? NULL : defaults[i];
        if (!s || !*s)
            continue;
        int32_t id = airllm_tok_vocab_get(L->t, s, strlen(s));
        if (id >= 0 && file_added(L, s, strlen(s), id, true, false, false, true, keys[i]))
            return -1;
    }
    return 0;
}

/* added_tokens.json, the older form of added_tokens_decoder: {"text": id,
 * ...}. transformers' slow tokenizers add each as a token split out of the
 * text (not special). */
static int file_added_json(ld *L, const char *path)
{
    char *text;
    size_t len;
    cJSON *root;
    if (airllm_read_small_file(path, TOK_CONFIG_MAX, &text, &len, L->err))
        return -1;
    int rc = airllm_json_parse_object(text, len, path, &root, L->err);
    free(text);
    if (rc)
        return -1;
    const cJSON *e;
    cJSON_ArrayForEach(e, root)
    {
        char where[96];
        snprintf(where, sizeof where, "\"%.40s\"", e->string);
        if (!cJSON_IsNumber(e) || e->valuedouble != (double)(int64_t)e->valuedouble) {
            cJSON_Delete(root);
            return airllm_errf(L->err, "%s: the id of %s is not an integer", path, where);
        }
        if (file_added(L, e->string, strlen(e->string), (int64_t)e->valuedouble, false, false,
                       false, true, where)) {
            airllm_err_prefix(L->err, "%s", path);
            cJSON_Delete(root);
            return -1;
        }
    }
    cJSON_Delete(root);
    return 0;
}

/* Loads a tokenizer.model or .tiktoken file; config is tokenizer_config.json
 * or NULL. */
int airllm_tok_load_model_file(const char *file, bool spm, const char *config,
                               const char *added_json, airllm_tokenizer **out, airllm_err *err)
{
    *out = NULL;
    airllm_tokenizer *t = calloc(1, sizeof *t);
    cJSON *root = NULL;
    char *text = NULL;
    size_t len;
    ld L = {.t = t, .err = err};
    int rc = -1;
    if (!t || tok_buf_reserve(&t->arena, 4096)) {
        airllm_errf(err, "out of memory");
        goto out;
    }
    t->bos = t->eos = -1;
    if (spm ? airllm_spm_load(file, &t->spm, err) : airllm_tiktoken_load(file, &t->tt, err))
        goto out;
    const char *cls = NULL;
    if (config) {
        if (airllm_read_small_file(config, TOK_CONFIG_MAX, &text, &len, err) ||
            airllm_json_parse_object(text, len, config, &root, err))
            goto out;
        const cJSON *c = airllm_tok_jget(root, "tokenizer_class");
        cls = cJSON_IsString(c) ? c->valuestring : NULL;
    }
    if (file_vocab(&L) || file_family(&L, cls)) {
        airllm_err_prefix(err, "%s", file);
        goto out;
    }
    if (root && file_config_added(&L, root)) {
        airllm_err_prefix(err, "%s", config);
        goto out;
    }
    if (spm && root && !(cls && strcmp(cls, "ChatGLMTokenizer") == 0) &&
        file_special_tokens(&L, root)) {
        airllm_err_prefix(err, "%s", config);
        goto out;
    }
    if (spm && added_json && !(cls && strcmp(cls, "ChatGLMTokenizer") == 0) &&
        file_added_json(&L, added_json))
        goto out;
    if (file_build_ids(&L)) {
        airllm_err_prefix(err, "%s", file);
        goto out;
    }
    if (config && airllm_tok_read_config_buffer(t, text, len, config, err))
        goto out;
    rc = 0;
out:
    cJSON_Delete(root);
    free(text);
    tok_buf_free(&L.scratch);
    if (rc) {
        airllm_tok_free(t);
        return -1;
    }
    *out = t;
    return 0;
}
