/* tokenizer.json (the Hugging Face `tokenizers` format) into an
 * airllm_tokenizer: the BPE model's vocab and merges, the added tokens and
 * the id tables built from both, and the post-processor's BOS/EOS. The
 * normalizer, pre-tokenizer and decoder sections are read by
 * airllm_tok_json_steps.c; the small checked JSON accessors here
 * (airllm_tok_j*) serve it and airllm_tok_files.c too. Every id, length
 * and count read is bounded before it is used. */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "airllm_bytes.h"
#include "airllm_tok_impl.h"

/* ------------------------------------------------------------------------
 * Checked JSON accessors
 * ------------------------------------------------------------------------ */


int airllm_tok_intern(ld *L, const char *s, size_t n, span *out, const char *what)
{
    if (n > TOK_MAX_STR)
        return airllm_errf(L->err, "%s is %zu bytes long (at most %u)", what, n, TOK_MAX_STR);
    if (airllm_utf8_check((const uint8_t *)s, n))
        return airllm_errf(L->err, "%s is not valid UTF-8", what);
    if (L->t->arena.n + n >= SPAN_NONE)
        return airllm_errf(L->err, "too much token text (over 4 GiB)");
    out->off = (uint32_t)L->t->arena.n;
    out->len = (uint32_t)n;
    if (tok_buf_add(&L->t->arena, s, n))
        return airllm_errf(L->err, "out of memory");
    return 0;
}

const cJSON *airllm_tok_jget(const cJSON *o, const char *k)
{
    return cJSON_GetObjectItemCaseSensitive(o, k);
}

/* Optional boolean: absent or null gives dflt. */
int airllm_tok_jbool(ld *L, const cJSON *o, const char *k, bool dflt, bool *out, const char *where)
{
    const cJSON *v = airllm_tok_jget(o, k);
    if (!v || cJSON_IsNull(v)) {
        *out = dflt;
        return 0;
    }
    if (!cJSON_IsBool(v))
        return airllm_errf(L->err, "%s: \"%s\" is not a boolean", where, k);
    *out = cJSON_IsTrue(v);
    return 0;
}

/* Optional string: absent or null gives NULL; required makes those errors. */
int airllm_tok_jstr(ld *L, const cJSON *o, const char *k, bool required, const char **out,
                    const char *where)
{
    const cJSON *v = airllm_tok_jget(o, k);
    *out = NULL;
    if (!v || cJSON_IsNull(v)) {
        if (required)
            return airllm_errf(L->err, "%s: \"%s\" is missing", where, k);
        return 0;
    }
    if (!cJSON_IsString(v))
        return airllm_errf(L->err, "%s: \"%s\" is not a string", where, k);
    *out = v->valuestring;
    return 0;
}

/* A JSON number that is an integer in [lo, hi]. */
int airllm_tok_jint(const cJSON *v, double lo, double hi, int64_t *out)
{
    if (!cJSON_IsNumber(v))
        return -1;
    double d = v->valuedouble;
    if (!(d >= lo && d <= hi) || d != (double)(int64_t)d)
        return -1;
    *out = (int64_t)d;
    return 0;
}

const char *airllm_tok_jtype(ld *L, const cJSON *o, const char *where)
{
    const char *ty = NULL;
    if (!cJSON_IsObject(o)) {
        airllm_errf(L->err, "%s is not an object", where);
        return NULL;
    }
    if (airllm_tok_jstr(L, o, "type", true, &ty, where))
        return NULL;
    return ty;
}

/* ------------------------------------------------------------------------
 * The model: vocab and merges
 * ------------------------------------------------------------------------ */

static int load_vocab(ld *L, const cJSON *model)
{
    airllm_tokenizer *t = L->t;
    const cJSON *v = airllm_tok_jget(model, "vocab");
    if (!cJSON_IsObject(v))
        return airllm_errf(L->err, "model: \"vocab\" is missing or not an object");
    /* sized up front: no rehashing while 100k+ entries go in */
    size_t cap = 64, n = (size_t)cJSON_GetArraySize(v);
    const cJSON *merges = airllm_tok_jget(model, "merges");
    size_t nm = cJSON_IsArray(merges) ? (size_t)cJSON_GetArraySize(merges) : 0;
    while (cap < 2 * n + 2)
        cap *= 2;
    if (airllm_tok_sm_alloc(&t->vocab, cap))
        return airllm_errf(L->err, "out of memory");
    for (cap = 64; cap < 2 * nm + 2;)
        cap *= 2;
    if (airllm_tok_um_alloc(&t->merges, cap))
        return airllm_errf(L->err, "out of memory");
    const cJSON *e;
    cJSON_ArrayForEach(e, v)
    {
        int64_t id;
        span s;
        if (airllm_tok_jint(e, 0, 2147483646.0, &id))
            return airllm_errf(L->err, "model.vocab: the id of \"%.100s\" is not an integer in "
                                       "[0, 2^31-1)", e->string);
        if (airllm_tok_intern(L, e->string, strlen(e->string), &s, "a model.vocab token"))
            return -1;
        int32_t old = airllm_tok_sm_put(&t->vocab, t->arena.p, s, (int32_t)id);
        if (old == -2)
            return airllm_errf(L->err, "out of memory");
        if (old >= 0)
            return airllm_errf(L->err, "model.vocab: token \"%.100s\" appears twice", e->string);
        t->n_vocab++;
    }
    return 0;
}

static int load_model_options(ld *L, const cJSON *m)
{
    airllm_tokenizer *t = L->t;
    const char *ty = airllm_tok_jtype(L, m, "model");
    if (!ty)
        return -1;
    if (strcmp(ty, "BPE") != 0)
        return airllm_errf(L->err, "model type \"%s\" is not supported (only BPE)", ty);
    const cJSON *drop = airllm_tok_jget(m, "dropout");
    if (drop && !cJSON_IsNull(drop) && !(cJSON_IsNumber(drop) && drop->valuedouble == 0))
        return airllm_errf(L->err, "model: BPE dropout is not supported (it makes encoding "
                                   "random)");
    const char *prefix, *suffix;
    if (airllm_tok_jstr(L, m, "continuing_subword_prefix", false, &prefix, "model") ||
        airllm_tok_jstr(L, m, "end_of_word_suffix", false, &suffix, "model"))
        return -1;
    if ((prefix && *prefix) || (suffix && *suffix))
        return airllm_errf(L->err, "model: continuing_subword_prefix / end_of_word_suffix are "
                                   "not supported");
    return airllm_tok_jbool(L, m, "fuse_unk", false, &t->fuse_unk, "model") ||
           airllm_tok_jbool(L, m, "byte_fallback", false, &t->byte_fallback, "model") ||
           airllm_tok_jbool(L, m, "ignore_merges", false, &t->ignore_merges, "model");
}


static int add_merge(ld *L, size_t rank, const char *a, size_t na, const char *b, size_t nb)
{
    airllm_tokenizer *t = L->t;
    int32_t ia = airllm_tok_vocab_get(t, a, na), ib = airllm_tok_vocab_get(t, b, nb);
    if (ia < 0 || ib < 0)
        return airllm_errf(L->err, "model.merges[%zu]: \"%.*s\" is not in the vocab", rank,
                           (int)(ia < 0 ? (na < 100 ? na : 100) : (nb < 100 ? nb : 100)),
                           ia < 0 ? a : b);
    L->scratch.n = 0;
    if (tok_buf_add(&L->scratch, a, na) || tok_buf_add(&L->scratch, b, nb))
        return airllm_errf(L->err, "out of memory");
    int32_t ic = airllm_tok_vocab_get(t, L->scratch.p, L->scratch.n);
    if (ic < 0)
        return airllm_errf(L->err, "model.merges[%zu]: the merged token \"%.*s\" is not in the "
                                   "vocab", rank, (int)(L->scratch.n < 200 ? L->scratch.n : 200),
                           (const char *)L->scratch.p);
    /* A pair listed twice keeps its last rank, as tokenizers' HashMap does. */
    if (airllm_tok_um_put(&t->merges, (uint64_t)ia << 32 | (uint32_t)ib,
                          (uint64_t)rank << 32 | (uint32_t)ic))
        return airllm_errf(L->err, "out of memory");
    return 0;
}

/* merges: ["a b", ...] (the older form; "#version" lines skipped) or
 * [["a", "b"], ...]; the rank is the position in the list. */
static int load_merges(ld *L, const cJSON *model)
{
    const cJSON *m = airllm_tok_jget(model, "merges");
    if (!cJSON_IsArray(m))
        return airllm_errf(L->err, "model: \"merges\" is missing or not an array");
    const cJSON *first = m->child;
    bool legacy = first && cJSON_IsString(first);
    size_t rank = 0, idx = 0;
    const cJSON *e;
    cJSON_ArrayForEach(e, m)
    {
        if (legacy) {
            if (!cJSON_IsString(e))
                return airllm_errf(L->err, "model.merges[%zu] is not a string like the others",
                                   idx);
            const char *s = e->valuestring, *sp = strchr(s, ' ');
            idx++;
            if (strncmp(s, "#version", 8) == 0)
                continue;
            if (!sp || strchr(sp + 1, ' '))
                return airllm_errf(L->err, "model.merges[%zu]: \"%.100s\" is not two tokens "
                                           "separated by one space", idx - 1, s);
            if (add_merge(L, rank, s, (size_t)(sp - s), sp + 1, strlen(sp + 1)))
                return -1;
        } else {
            const cJSON *a = cJSON_GetArrayItem(e, 0), *b = cJSON_GetArrayItem(e, 1);
            if (!cJSON_IsArray(e) || cJSON_GetArraySize(e) != 2 || !cJSON_IsString(a) ||
                !cJSON_IsString(b))
                return airllm_errf(L->err, "model.merges[%zu] is not a pair of strings", idx);
            idx++;
            if (add_merge(L, rank, a->valuestring, strlen(a->valuestring), b->valuestring,
                          strlen(b->valuestring)))
                return -1;
        }
        rank++;
    }
    return 0;
}

/* ------------------------------------------------------------------------
 * Added tokens and the id tables
 * ------------------------------------------------------------------------ */

/* tokenizers' AddedVocabulary::add_tokens gives an added token the vocab's
 * id for the same string, else the next id from the vocab's size on. The
 * file's ids must agree, or our ids would differ from tokenizers'. */
static int load_added(ld *L, const cJSON *list)
{
    airllm_tokenizer *t = L->t;
    if (airllm_tok_sm_alloc(&t->added_by, 64) || airllm_tok_trie_init(&t->trie_raw) ||
        airllm_tok_trie_init(&t->trie_norm))
        return airllm_errf(L->err, "out of memory");
    if (!list || cJSON_IsNull(list))
        return 0;
    if (!cJSON_IsArray(list))
        return airllm_errf(L->err, "\"added_tokens\" is not an array");
    size_t n = (size_t)cJSON_GetArraySize(list);
    t->added = calloc(n ? n : 1, sizeof *t->added);
    if (!t->added)
        return airllm_errf(L->err, "out of memory");
    int64_t next_id = (int64_t)t->n_vocab;
    size_t i = 0;
    const cJSON *e;
    buf x = {0}, y = {0}, w = {0};
    int rc = -1;
    cJSON_ArrayForEach(e, list)
    {
        char where[64];
        snprintf(where, sizeof where, "added_tokens[%zu]", i++);
        if (!cJSON_IsObject(e)) {
            airllm_errf(L->err, "%s is not an object", where);
            goto out;
        }
        added_tok a = {0};
        int64_t id;
        const char *content;
        if (airllm_tok_jint(airllm_tok_jget(e, "id"), 0, 2147483646.0, &id)) {
            airllm_errf(L->err, "%s: \"id\" is missing or not an integer in [0, 2^31-1)", where);
            goto out;
        }
        if (airllm_tok_jstr(L, e, "content", true, &content, where) ||
            airllm_tok_jbool(L, e, "special", false, &a.special, where) ||
            airllm_tok_jbool(L, e, "single_word", false, &a.single_word, where) ||
            airllm_tok_jbool(L, e, "lstrip", false, &a.lstrip, where) ||
            airllm_tok_jbool(L, e, "rstrip", false, &a.rstrip, where) ||
            airllm_tok_jbool(L, e, "normalized", !a.special, &a.normalized, where))
            goto out;
        if (!*content) /* tokenizers ignores empty added tokens */
            continue;
        int32_t vid = airllm_tok_vocab_get(t, content, strlen(content));
        int64_t expect = vid >= 0 ? vid : next_id++;
        if (id != expect) {
            airllm_errf(L->err, "%s: \"%.100s\" has id %lld but tokenizers would give it %lld "
                                "(%s)", where, content, (long long)id, (long long)expect,
                        vid >= 0 ? "its vocab id" : "the next id after the vocab");
            goto out;
        }
        a.id = (int32_t)id;
        if (airllm_tok_intern(L, content, strlen(content), &a.content, where))
            goto out;
        a.norm = a.content;
        if (a.normalized && t->n_norm) {
            const uint8_t *ns;
            size_t nn;
            int nrc = airllm_tok_normalize(t, S(t, a.content), a.content.len, &x, &y, &w, &ns, &nn);
            if (nrc) {
                if (nrc == -2)
                    airllm_errf(L->err, "%s: the normalizer grows \"%.100s\" past %d times "
                                        "its length plus %d bytes",
                                where, content, TOK_NORM_GROWTH, TOK_NORM_SLACK);
                else
                    airllm_errf(L->err, "out of memory");
                goto out;
            }
            if (nn == 0) {
                airllm_errf(L->err, "%s: \"%.100s\" normalizes to nothing", where, content);
                goto out;
            }
            /* copy first: ns may point into x or y, and airllm_tok_intern may move the arena */
            L->scratch.n = 0;
            if (tok_buf_add(&L->scratch, ns, nn)) {
                airllm_errf(L->err, "out of memory");
                goto out;
            }
            if (airllm_tok_intern(L, (const char *)L->scratch.p, nn, &a.norm, where))
                goto out;
        }
        int32_t old = airllm_tok_sm_put(&t->added_by, t->arena.p, a.content, (int32_t)t->n_added);
        if (old == -2) {
            airllm_errf(L->err, "out of memory");
            goto out;
        }
        if (old >= 0) {
            airllm_errf(L->err, "%s: \"%.100s\" is listed twice", where, content);
            goto out;
        }
        trie *tr = a.normalized ? &t->trie_norm : &t->trie_raw;
        int prev = airllm_tok_trie_add(tr, S(t, a.norm), a.norm.len, (int32_t)t->n_added);
        if (prev == -2) {
            airllm_errf(L->err, "out of memory");
            goto out;
        }
        if (prev >= 0) {
            airllm_errf(L->err, "%s: \"%.100s\" matches the same text as \"%.*s\"", where,
                        content, (int)t->added[prev].content.len, S(t, t->added[prev].content));
            goto out;
        }
        t->added[t->n_added++] = a;
    }
    rc = 0;
out:
    tok_buf_free(&x);
    tok_buf_free(&y);
    tok_buf_free(&w);
    return rc;
}

/* id -> string tables, once vocab and added tokens are known. */
static int build_ids(ld *L)
{
    airllm_tokenizer *t = L->t;
    int64_t max_id = -1;
    for (size_t i = 0; i < t->vocab.cap; i++)
        if (t->vocab.s[i].val > max_id)
            max_id = t->vocab.s[i].val;
    for (size_t i = 0; i < t->n_added; i++)
        if (t->added[i].id > max_id)
            max_id = t->added[i].id;
    size_t count = t->n_vocab + t->n_added;
    if (max_id >= (int64_t)count + TOK_ID_SLACK)
        return airllm_errf(L->err, "id %lld is out of range: the file has %zu tokens, and ids "
                                   "must stay below %zu", (long long)max_id, count,
                           count + TOK_ID_SLACK);
    t->n_ids = (size_t)(max_id + 1);
    t->id_tok = malloc((t->n_ids ? t->n_ids : 1) * sizeof *t->id_tok);
    t->id_dec = malloc((t->n_ids ? t->n_ids : 1) * sizeof *t->id_dec);
    t->id_special = calloc(t->n_ids ? t->n_ids : 1, 1);
    if (!t->id_tok || !t->id_dec || !t->id_special)
        return airllm_errf(L->err, "out of memory");
    for (size_t i = 0; i < t->n_ids; i++)
        t->id_tok[i].off = SPAN_NONE;
    for (size_t i = 0; i < t->vocab.cap; i++) {
        const sm_slot *e = &t->vocab.s[i];
        if (e->val < 0)
            continue;
        span *o = &t->id_tok[e->val];
        if (o->off != SPAN_NONE)
            return airllm_errf(L->err, "model.vocab: id %d is given to both \"%.*s\" and \"%.*s\"",
                               e->val, (int)o->len, S(t, *o), (int)e->key.len, S(t, e->key));
        *o = e->key;
    }
    memcpy(t->id_dec, t->id_tok, t->n_ids * sizeof *t->id_dec);
    for (size_t i = 0; i < t->n_added; i++) {
        const added_tok *a = &t->added[i];
        span *o = &t->id_tok[a->id];
        if (o->off == SPAN_NONE)
            *o = a->content;
        else if (o->len != a->content.len ||
                 memcmp(S(t, *o), S(t, a->content), o->len) != 0)
            return airllm_errf(L->err, "added token \"%.*s\" has id %d, which the vocab gives "
                                       "to \"%.*s\"", (int)a->content.len, S(t, a->content),
                               a->id, (int)o->len, S(t, *o));
        /* tokenizers decodes an added token from its normalized form */
        t->id_dec[a->id] = a->normalized ? a->norm : a->content;
    }
    /* tokenizers' skip_special_tokens tests the decoded string against the
     * special tokens' contents, not the id. */
    for (size_t id = 0; id < t->n_ids; id++) {
        if (t->id_dec[id].off == SPAN_NONE)
            continue;
        int32_t k = airllm_tok_sm_get(&t->added_by, t->arena.p, S(t, t->id_dec[id]),
                                      t->id_dec[id].len);
        t->id_special[id] = k >= 0 && t->added[k].special;
    }
    if (t->byte_fallback)
        for (int b = 0; b < 256; b++) {
            char name[8];
            snprintf(name, sizeof name, "<0x%02X>", b);
            t->byte_id[b] = airllm_tok_vocab_get(t, name, 6);
        }
    return 0;
}

/* ------------------------------------------------------------------------
 * Post-processor and the whole file
 * ------------------------------------------------------------------------ */

/* TemplateProcessing's "single" template: special tokens before $A give BOS,
 * after it EOS (when there is exactly one on that side). */
static int load_template(ld *L, const cJSON *p)
{
    airllm_tokenizer *t = L->t;
    const cJSON *single = airllm_tok_jget(p, "single");
    const cJSON *specials = airllm_tok_jget(p, "special_tokens");
    if (!cJSON_IsArray(single) || !cJSON_IsObject(specials))
        return airllm_errf(L->err, "post_processor TemplateProcessing: \"single\" or "
                                   "\"special_tokens\" missing");
    int32_t side_ids[2][2];
    size_t side_n[2] = {0, 0};
    int side = 0;
    const cJSON *e;
    cJSON_ArrayForEach(e, single)
    {
        const cJSON *seq = airllm_tok_jget(e, "Sequence"), *sp = airllm_tok_jget(e, "SpecialToken");
        if (cJSON_IsObject(seq)) {
            side = 1;
            continue;
        }
        const cJSON *name = cJSON_IsObject(sp) ? airllm_tok_jget(sp, "id") : NULL;
        if (!cJSON_IsString(name))
            return airllm_errf(L->err, "post_processor TemplateProcessing: a \"single\" item is "
                                       "neither Sequence nor SpecialToken");
        const cJSON *def = airllm_tok_jget(specials, name->valuestring);
        const cJSON *ids = cJSON_IsObject(def) ? airllm_tok_jget(def, "ids") : NULL;
        if (!cJSON_IsArray(ids))
            return airllm_errf(L->err, "post_processor TemplateProcessing: special token "
                                       "\"%.100s\" has no \"ids\"", name->valuestring);
        const cJSON *v;
        cJSON_ArrayForEach(v, ids)
        {
            int64_t id;
            if (airllm_tok_jint(v, 0, 2147483646.0, &id) || (size_t)id >= t->n_ids ||
                t->id_tok[id].off == SPAN_NONE)
                return airllm_errf(L->err, "post_processor TemplateProcessing: special token "
                                           "\"%.100s\" has an id that is not in the vocab",
                                   name->valuestring);
            if (side_n[side] < 2)
                side_ids[side][side_n[side]] = (int32_t)id;
            side_n[side]++;
        }
    }
    if (side_n[0] == 1)
        t->bos = side_ids[0][0];
    if (side_n[1] == 1)
        t->eos = side_ids[1][0];
    t->add_bos = side_n[0] == 1;
    return 0;
}

static int load_postproc(ld *L, const cJSON *p, int depth)
{
    if (!p || cJSON_IsNull(p))
        return 0;
    const char *ty = airllm_tok_jtype(L, p, "post_processor");
    if (!ty)
        return -1;
    if (strcmp(ty, "ByteLevel") == 0) /* offsets only */
        return 0;
    if (strcmp(ty, "TemplateProcessing") == 0)
        return load_template(L, p);
    if (strcmp(ty, "Sequence") == 0) {
        const cJSON *list = airllm_tok_jget(p, "processors"), *e;
        if (!cJSON_IsArray(list))
            return airllm_errf(L->err, "post_processor Sequence: \"processors\" is not an array");
        if (depth >= TOK_MAX_NEST)
            return airllm_errf(L->err, "post_processor: Sequences nested too deep");
        cJSON_ArrayForEach(e, list) if (load_postproc(L, e, depth + 1)) return -1;
        return 0;
    }
    return airllm_errf(L->err, "post_processor \"%s\" is not supported (only ByteLevel, "
                               "TemplateProcessing and Sequence)", ty);
}

static int load_root(ld *L, const cJSON *root)
{
    airllm_tokenizer *t = L->t;
    if (!cJSON_IsObject(root))
        return airllm_errf(L->err, "not a JSON object");
    const cJSON *ver = airllm_tok_jget(root, "version");
    if (ver && !(cJSON_IsString(ver) && strcmp(ver->valuestring, "1.0") == 0))
        return airllm_errf(L->err, "unknown tokenizer.json \"version\" (expected \"1.0\")");
    const cJSON *model = airllm_tok_jget(root, "model");
    if (!model || cJSON_IsNull(model))
        return airllm_errf(L->err, "\"model\" is missing");
    const char *unk;
    if (load_model_options(L, model) ||
        airllm_tok_jstr(L, model, "unk_token", false, &unk, "model") ||
        airllm_tok_load_normalizer(L, airllm_tok_jget(root, "normalizer"), 0) ||
        load_vocab(L, model) || load_added(L, airllm_tok_jget(root, "added_tokens")) ||
        build_ids(L) || load_merges(L, model) ||
        airllm_tok_load_pretok(L, airllm_tok_jget(root, "pre_tokenizer"), 0) ||
        airllm_tok_load_decoder(L, airllm_tok_jget(root, "decoder")) ||
        load_postproc(L, airllm_tok_jget(root, "post_processor"), 0))
        return -1;
    t->unk_id = -1;
    if (unk) {
        t->unk_id = airllm_tok_vocab_get(t, unk, strlen(unk));
        if (t->unk_id < 0)
            return airllm_errf(L->err, "model: unk_token \"%.100s\" is not in the vocab", unk);
    }
    return 0;
}

/* Offset of a \u0000 escape in the JSON text, or len. cJSON keeps strings
 * NUL-terminated, so such a string would silently lose its tail (a vocab
 * entry "\u0000" would become ""): refuse instead. An escape is a
 * backslash preceded by an even number of backslashes. */
static size_t nul_escape(const char *json, size_t len)
{
    for (size_t i = 0; i + 6 <= len; i++) {
        if (json[i] != '\\' || memcmp(json + i + 1, "u0000", 5) != 0)
            continue;
        size_t k = i;
        while (k > 0 && json[k - 1] == '\\')
            k--;
        if ((i - k) % 2 == 0)
            return i;
    }
    return len;
}

int airllm_tok_load_buffer(const char *json, size_t len, const char *name,
                           airllm_tokenizer **out, airllm_err *err)
{
    *out = NULL;
    if (!name)
        name = "tokenizer.json";
    if (!json && len)
        return airllm_errf(err, "%s: no data", name);
    if (len > AIRLLM_TOK_MAX_FILE)
        return airllm_errf(err, "%s: %zu bytes is too large (at most %u)", name, len,
                           AIRLLM_TOK_MAX_FILE);
    size_t bad = airllm_utf8_first_bad((const uint8_t *)json, len);
    if (bad < len)
        return airllm_errf(err, "%s: not valid UTF-8 (byte %zu)", name, bad);
    if (len && memchr(json, 0, len))
        return airllm_errf(err, "%s: holds a NUL byte", name);
    bad = nul_escape(json, len);
    if (bad < len)
        return airllm_errf(err, "%s: a string holds \\u0000 (byte %zu), which this reader "
                                "cannot represent", name, bad);
    airllm_tok_init_byte_map();
    const char *end = NULL;
    cJSON *root = cJSON_ParseWithLengthOpts(json ? json : "", len, &end, 0);
    if (!root)
        return airllm_errf(err, "%s: not valid JSON (near byte %zu)", name,
                           end && json ? (size_t)(end - json) : (size_t)0);
    airllm_tokenizer *t = calloc(1, sizeof *t);
    ld L = {.t = t, .err = err};
    int rc = -1;
    if (!t || tok_buf_reserve(&t->arena, 4096)) {
        airllm_errf(err, "out of memory");
    } else {
        t->bos = t->eos = -1;
        rc = load_root(&L, root);
        if (rc)
            airllm_err_prefix(err, "%s", name);
    }
    cJSON_Delete(root);
    tok_buf_free(&L.scratch);
    if (rc) {
        airllm_tok_free(t);
        return -1;
    }
    *out = t;
    return 0;
}
