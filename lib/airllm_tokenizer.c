/* The tokenizer's public entry points (lib/airllm_tokenizer.h): which file
 * of a checkpoint directory is read (tokenizer.json, else tokenizer.model,
 * else *.tiktoken), freeing, tokenizer_config.json's BOS/EOS, and the
 * lookups by id and by string. The work is done by the parts that
 * lib/airllm_tok_impl.h lists: the readers (airllm_tok_json.c,
 * airllm_tok_files.c), the encoder (airllm_tok_encode.c) and the streaming
 * decoder (airllm_tok_decode.c). */
#include "airllm_tokenizer.h"

#include <dirent.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <cjson/cJSON.h>

#include "airllm_io.h"
#include "airllm_json.h"
#include "airllm_tok_impl.h"

/* ------------------------------------------------------------------------
 * Loading and freeing
 * ------------------------------------------------------------------------ */

/* The *.tiktoken file of a directory: qwen.tiktoken, else the only one. */
static int find_tiktoken(const char *dir, char *file, size_t cap, airllm_err *err)
{
    DIR *d = opendir(dir);
    if (!d)
        return airllm_errf(err, "%s: cannot open the directory", dir);
    char found[256] = "";
    int n = 0;
    const struct dirent *e;
    while ((e = readdir(d))) {
        size_t l = strlen(e->d_name);
        if (l > 9 && strcmp(e->d_name + l - 9, ".tiktoken") == 0 && l < sizeof found) {
            if (n == 0 || strcmp(e->d_name, "qwen.tiktoken") == 0)
                snprintf(found, sizeof found, "%s", e->d_name);
            n++;
        }
    }
    closedir(d);
    if (n == 0)
        return airllm_errf(err, "%s: no tokenizer.json, tokenizer.model or *.tiktoken file", dir);
    if (n > 1 && strcmp(found, "qwen.tiktoken") != 0)
        return airllm_errf(err, "%s: %d *.tiktoken files and none is qwen.tiktoken: which one "
                                "is the tokenizer is unclear", dir, n);
    return airllm_path_join(file, cap, dir, found, err);
}

static bool ends_with(const char *s, const char *suffix)
{
    size_t a = strlen(s), b = strlen(suffix);
    return a >= b && strcmp(s + a - b, suffix) == 0;
}

int airllm_tok_load(const char *path, airllm_tokenizer **out, airllm_err *err)
{
    *out = NULL;
    struct stat st;
    if (!path || stat(path, &st))
        return airllm_errf(err, "%s: cannot access", path ? path : "(null)");
    char file[4096], config[4096];
    bool dir = S_ISDIR(st.st_mode);
    if (!dir) {
        if (snprintf(file, sizeof file, "%s", path) >= (int)sizeof file)
            return airllm_errf(err, "%s: path too long", path);
        if (ends_with(path, ".model") || ends_with(path, ".tiktoken"))
            return airllm_tok_load_model_file(file, ends_with(path, ".model"), NULL, NULL, out,
                                              err);
    } else {
        /* tokenizer.json first: it is what transformers' fast tokenizers
         * read, and it says everything (normalizer, added tokens) itself */
        if (airllm_path_join(file, sizeof file, path, "tokenizer.json", err) ||
            airllm_path_join(config, sizeof config, path, "tokenizer_config.json", err))
            return -1;
        if (stat(file, &st) != 0) {
            bool have_config = stat(config, &st) == 0;
            if (airllm_path_join(file, sizeof file, path, "tokenizer.model", err))
                return -1;
            bool spm = stat(file, &st) == 0;
            if (!spm && find_tiktoken(path, file, sizeof file, err))
                return -1;
            char added[4096];
            if (airllm_path_join(added, sizeof added, path, "added_tokens.json", err))
                return -1;
            bool have_added = stat(added, &st) == 0;
            return airllm_tok_load_model_file(file, spm, have_config ? config : NULL,
                                              have_added ? added : NULL, out, err);
        }
    }
    char *text;
    size_t len;
    if (airllm_read_small_file(file, AIRLLM_TOK_MAX_FILE, &text, &len, err))
        return -1;
    int rc = airllm_tok_load_buffer(text, len, file, out, err);
    free(text);
    if (rc || !dir)
        return rc;
    if (stat(config, &st) == 0) {
        if (airllm_tok_read_config(*out, config, err)) {
            airllm_tok_free(*out);
            *out = NULL;
            return -1;
        }
    }
    return 0;
}

void airllm_tok_free(airllm_tokenizer *t)
{
    if (!t)
        return;
    tok_buf_free(&t->arena);
    free(t->id_tok);
    free(t->id_dec);
    free(t->id_special);
    free(t->vocab.s);
    free(t->added_by.s);
    free(t->added);
    airllm_tok_trie_free(&t->trie_raw);
    airllm_tok_trie_free(&t->trie_norm);
    free(t->merges.s);
    airllm_spm_free(t->spm);
    airllm_tiktoken_free(t->tt);
    free(t->id_added);
    free(t);
}

/* ------------------------------------------------------------------------
 * tokenizer_config.json, BOS / EOS
 * ------------------------------------------------------------------------ */

int32_t airllm_tok_id_of(const airllm_tokenizer *t, const char *token, size_t len)
{
    int32_t k = airllm_tok_sm_get(&t->added_by, t->arena.p, token, len);
    if (k >= 0)
        return t->added[k].id;
    return airllm_tok_vocab_get(t, token, len);
}

/* bos_token / eos_token: "text", {"content": "text", ...} or null. */
static int config_token(const cJSON *root, const char *key, int32_t *id,
                        const airllm_tokenizer *t, airllm_err *err)
{
    const cJSON *v = airllm_tok_jget(root, key);
    if (!v)
        return 0;
    if (cJSON_IsNull(v)) {
        *id = -1;
        return 0;
    }
    if (cJSON_IsObject(v))
        v = airllm_tok_jget(v, "content");
    if (!cJSON_IsString(v))
        return airllm_errf(err, "\"%s\" is neither a string nor {\"content\": string}", key);
    int32_t k = airllm_tok_id_of(t, v->valuestring, strlen(v->valuestring));
    if (k < 0)
        return airllm_errf(err, "%s \"%.100s\" is not in the tokenizer's vocab", key,
                           v->valuestring);
    *id = k;
    return 0;
}

int airllm_tok_read_config_buffer(airllm_tokenizer *t, const char *json, size_t len,
                                  const char *name, airllm_err *err)
{
    if (!name)
        name = "tokenizer_config.json";
    cJSON *root;
    if (airllm_json_parse_object(json, len, name, &root, err))
        return -1;
    int32_t bos = t->bos, eos = t->eos;
    bool add_bos = t->add_bos;
    int rc = -1;
    const cJSON *ab = airllm_tok_jget(root, "add_bos_token");
    if (config_token(root, "bos_token", &bos, t, err) ||
             config_token(root, "eos_token", &eos, t, err))
        ;
    else if (ab && !cJSON_IsNull(ab) && !cJSON_IsBool(ab))
        airllm_errf(err, "\"add_bos_token\" is not a boolean");
    else
        rc = 0;
    if (rc == 0) {
        if (cJSON_IsBool(ab))
            add_bos = cJSON_IsTrue(ab);
        t->bos = bos;
        t->eos = eos;
        t->add_bos = add_bos;
    } else {
        airllm_err_prefix(err, "%s", name);
    }
    cJSON_Delete(root);
    return rc;
}

int airllm_tok_read_config(airllm_tokenizer *t, const char *path, airllm_err *err)
{
    char *text;
    size_t len;
    if (airllm_read_small_file(path, TOK_CONFIG_MAX, &text, &len, err))
        return -1;
    int rc = airllm_tok_read_config_buffer(t, text, len, path, err);
    free(text);
    return rc;
}

int32_t airllm_tok_bos(const airllm_tokenizer *t) { return t->bos; }
int32_t airllm_tok_eos(const airllm_tokenizer *t) { return t->eos; }
int airllm_tok_add_bos_default(const airllm_tokenizer *t) { return t->add_bos; }
size_t airllm_tok_vocab_size(const airllm_tokenizer *t) { return t->n_ids; }

static int set_special(airllm_tokenizer *t, int32_t id, int32_t *dst, const char *what,
                       airllm_err *err)
{
    if (id < -1 || (id >= 0 && ((size_t)id >= t->n_ids || t->id_tok[id].off == SPAN_NONE)))
        return airllm_errf(err, "%s id %d is not in the tokenizer's vocab", what, id);
    *dst = id;
    return 0;
}

int airllm_tok_set_bos(airllm_tokenizer *t, int32_t id, airllm_err *err)
{
    return set_special(t, id, &t->bos, "BOS", err);
}

const char *airllm_tok_token(const airllm_tokenizer *t, int32_t id, size_t *len)
{
    if (id < 0 || (size_t)id >= t->n_ids || t->id_tok[id].off == SPAN_NONE)
        return NULL;
    *len = t->id_tok[id].len;
    return (const char *)S(t, t->id_tok[id]);
}

int airllm_tok_is_special(const airllm_tokenizer *t, int32_t id)
{
    return id >= 0 && (size_t)id < t->n_ids && t->id_special[id];
}

/* The model vocab's id of a string, or -1. */
int32_t airllm_tok_vocab_get(const airllm_tokenizer *t, const void *s, size_t n)
{
    return airllm_tok_sm_get(&t->vocab, t->arena.p, s, n);
}
