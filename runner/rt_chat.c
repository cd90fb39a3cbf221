/* Chat templates: each family's prompt layout, as its published code builds
 * it (docs/runner.md "Chat templates" lists them with their stop ids):
 *
 * - Qwen v1, qwen_generation_utils.make_context: every piece ("system",
 *   "\n", the content, "user", ...) is tokenized on its own and the ids
 *   joined, with <|im_start|> / <|im_end|> ids between; the system prompt
 *   defaults to "You are a helpful assistant." (chat()).
 * - ChatGLM3, tokenization_chatglm.build_chat_input: [gMASK] sop, then per
 *   message its role id, encode(metadata + "\n"), encode(content); then
 *   <|assistant|>. ChatGLM2, build_prompt: "[Round N]\n\n问：...\n\n答：" text
 *   after [gMASK] sop.
 * - Baichuan 1/2, generation_utils.build_chat_input: encode(system), then per
 *   message user_token_id / assistant_token_id and encode(content), then
 *   assistant_token_id (ids from generation_config.json).
 * - InternLM v1, build_inputs: "<|User|>:q<eoh>\n<|Bot|>:a<eoa>\n" text with
 *   BOS. InternLM2, build_inputs: ChatML text with BOS and chat()'s default
 *   meta_instruction.
 * - ChatML / Llama 3 / Llama 2 for tokenizer.json checkpoints: the text
 *   transformers' apply_chat_template renders, encoded at once without added
 *   specials; a ChatML chat_template's built-in system prompt is used too.
 *
 * The history's truncation to a window (Qwen's max_window_size, Baichuan's
 * model_max_length) is not done: airllm-run reports a full context instead. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "airllm_io.h"
#include "airllm_json.h"
#include "rt_chat.h"

#define CHAT_JSON_MAX (64u << 20)

static const char *const kind_names[] = {"chatml",   "llama3",   "llama2",
                                         "qwen",     "chatglm3", "chatglm2",
                                         "baichuan", "internlm", "internlm2"};

const char *rt_chat_name(rt_chat_kind k)
{
    return (size_t)k < sizeof kind_names / sizeof kind_names[0] ? kind_names[k] : "?";
}

/* ---- reading the checkpoint's files ---- */

/* dir/name parsed, or NULL (no error) when the file does not exist. */
static int load_json(const char *dir, const char *name, cJSON **out, airllm_err *err)
{
    char path[4096];
    *out = NULL;
    if (airllm_path_join(path, sizeof path, dir, name, err))
        return -1;
    FILE *f = fopen(path, "rb");
    if (!f)
        return 0;
    fclose(f);
    return airllm_json_load_object(path, CHAT_JSON_MAX, out, err);
}

static const char *jstr(const cJSON *o, const char *key)
{
    const cJSON *v = o ? cJSON_GetObjectItemCaseSensitive(o, key) : NULL;
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

static int32_t jid(const cJSON *o, const char *key)
{
    const cJSON *v = o ? cJSON_GetObjectItemCaseSensitive(o, key) : NULL;
    if (cJSON_IsArray(v))
        v = cJSON_GetArrayItem(v, 0);
    return cJSON_IsNumber(v) && v->valuedouble >= 0 && v->valuedouble < 2147483647.0
               ? (int32_t)v->valuedouble
               : -1;
}

static int32_t tok_id(const airllm_tokenizer *tok, const char *s)
{
    return airllm_tok_id_of(tok, s, strlen(s));
}

/* The system prompt a ChatML chat_template writes when the conversation has
 * none: the literal after "<|im_start|>system\n" (a newline, or the two
 * characters \n of a Jinja string) up to "<|im_end|>", with no Jinja inside. */
char *rt_chat_template_system(const char *t)
{
    static const char head[] = "<|im_start|>system";
    for (const char *p = t ? strstr(t, head) : NULL; p; p = strstr(p + 1, head)) {
        const char *s = p + sizeof head - 1;
        if (*s == '\n')
            s++;
        else if (s[0] == '\\' && s[1] == 'n')
            s += 2;
        else
            continue;
        const char *e = strstr(s, "<|im_end|>");
        if (!e || e == s)
            continue;
        size_t n = (size_t)(e - s);
        if (memchr(s, '\'', n) || memchr(s, '"', n) || memchr(s, '{', n))
            continue;
        char *out = malloc(n + 1), *o = out;
        if (!out)
            return NULL;
        for (const char *q = s; q < e; q++) {
            if (q[0] == '\\' && q + 1 < e && q[1] == 'n') {
                *o++ = '\n';
                q++;
            } else {
                *o++ = *q;
            }
        }
        *o = '\0';
        return out;
    }
    return NULL;
}

static int pick_kind(const char *name, const cJSON *cfg, const cJSON *tcfg,
                     const airllm_tokenizer *tok, rt_chat_kind *k, airllm_err *err)
{
    if (name) {
        for (size_t i = 0; i < sizeof kind_names / sizeof kind_names[0]; i++)
            if (strcmp(name, kind_names[i]) == 0) {
                *k = (rt_chat_kind)i;
                return 0;
            }
        return airllm_errf(err, "unknown chat template '%s' (chatml, llama3, llama2, qwen, "
                                "chatglm3, chatglm2, baichuan, internlm, internlm2)",
                           name);
    }
    const char *mt = jstr(cfg, "model_type");
    if (mt && strcmp(mt, "qwen") == 0) {
        *k = RT_CHAT_QWEN;
    } else if (mt && strcmp(mt, "chatglm") == 0) {
        /* Nothing in config.json says 2 or 3 but the name it was saved
         * under; ChatGLM3's tokenizer has the role tokens build_chat_input
         * needs, and so does ours for any ChatGLMTokenizer: the name decides. */
        const char *nm = jstr(cfg, "_name_or_path");
        if (!nm)
            nm = jstr(tcfg, "name_or_path");
        *k = nm && strstr(nm, "chatglm2") ? RT_CHAT_CHATGLM2 : RT_CHAT_CHATGLM3;
    } else if (mt && strcmp(mt, "baichuan") == 0) {
        *k = RT_CHAT_BAICHUAN;
    } else if (mt && strcmp(mt, "internlm") == 0) {
        *k = RT_CHAT_INTERNLM;
    } else if (mt && strcmp(mt, "internlm2") == 0) {
        *k = RT_CHAT_INTERNLM2;
    } else if (tok_id(tok, "<|im_start|>") >= 0) {
        *k = RT_CHAT_CHATML;
    } else if (tok_id(tok, "<|start_header_id|>") >= 0) {
        *k = RT_CHAT_LLAMA3;
    } else {
        *k = RT_CHAT_LLAMA2;
    }
    return 0;
}

static int need(const airllm_tokenizer *tok, const char *s, int32_t *id, rt_chat_kind k,
                airllm_err *err)
{
    if ((*id = tok_id(tok, s)) < 0)
        return airllm_errf(err, "the %s chat template needs the token %s, which the tokenizer "
                                "lacks",
                           rt_chat_name(k), s);
    return 0;
}

static void add_stop(rt_chat *c, int32_t id)
{
    for (int i = 0; i < c->n_stop; i++)
        if (c->stop[i] == id)
            return;
    if (id >= 0 && c->n_stop < RT_CHAT_MAX_STOP)
        c->stop[c->n_stop++] = id;
}

static void token_text(const airllm_tokenizer *tok, int32_t id, char *out, size_t cap)
{
    size_t len = 0;
    const char *s = id >= 0 ? airllm_tok_token(tok, id, &len) : NULL;
    if (!s || len >= cap)
        len = 0;
    memcpy(out, s ? s : "", len);
    out[len] = '\0';
}

int rt_chat_open(rt_chat *c, const char *dir, const char *name, const airllm_tokenizer *tok,
                 airllm_err *err)
{
    memset(c, 0, sizeof *c);
    c->bos = c->eos = c->im_start = c->im_end = c->gmask = c->sop = -1;
    c->role_system = c->role_user = c->role_assistant = -1;
    c->user_token = c->assistant_token = -1;
    cJSON *cfg = NULL, *tcfg = NULL, *gen = NULL;
    int rc = load_json(dir, "config.json", &cfg, err) ||
                     load_json(dir, "tokenizer_config.json", &tcfg, err) ||
                     load_json(dir, "generation_config.json", &gen, err)
                 ? -1
                 : pick_kind(name, cfg, tcfg, tok, &c->kind, err);
    if (rc)
        goto out;
    rt_chat_kind k = c->kind;
    c->bos = airllm_tok_bos(tok);
    c->eos = airllm_tok_eos(tok);
    c->add_bos = airllm_tok_add_bos_default(tok);
    token_text(tok, c->bos, c->bos_text, sizeof c->bos_text);
    token_text(tok, c->eos, c->eos_text, sizeof c->eos_text);
    add_stop(c, c->eos);
    switch (k) {
    case RT_CHAT_QWEN:
    case RT_CHAT_CHATML:
    case RT_CHAT_INTERNLM2:
        rc = need(tok, "<|im_start|>", &c->im_start, k, err) ||
             need(tok, "<|im_end|>", &c->im_end, k, err);
        if (rc)
            break;
        add_stop(c, c->im_end);
        if (k == RT_CHAT_QWEN) {
            /* chat() stops on both (get_stop_words_ids) and on EOS */
            add_stop(c, c->im_start);
            add_stop(c, tok_id(tok, "<|endoftext|>"));
            c->default_system = strdup("You are a helpful assistant.");
        } else if (k == RT_CHAT_INTERNLM2) {
            c->default_system = strdup(
                "You are an AI assistant whose name is InternLM (书生·浦语).\n"
                "- InternLM (书生·浦语) is a conversational language model that is developed "
                "by Shanghai AI Laboratory (上海人工智能实验室). It is designed to be helpful, "
                "honest, and harmless.\n"
                "- InternLM (书生·浦语) can understand and communicate fluently in the language "
                "chosen by the user such as English and 中文.");
        } else {
            c->default_system = rt_chat_template_system(jstr(tcfg, "chat_template"));
        }
        if (k != RT_CHAT_CHATML && !c->default_system)
            rc = airllm_errf(err, "out of memory");
        if (k == RT_CHAT_INTERNLM2 && c->bos < 0)
            rc = airllm_errf(err, "the internlm2 chat template needs a BOS token");
        break;
    case RT_CHAT_LLAMA3:
        rc = need(tok, "<|eot_id|>", &c->im_end, k, err);
        add_stop(c, c->im_end);
        add_stop(c, tok_id(tok, "<|end_of_text|>"));
        break;
    case RT_CHAT_LLAMA2:
        break;
    case RT_CHAT_CHATGLM3:
        rc = need(tok, "<|system|>", &c->role_system, k, err) ||
             need(tok, "<|user|>", &c->role_user, k, err) ||
             need(tok, "<|assistant|>", &c->role_assistant, k, err);
        /* chat(): EOS, <|user|>, <|observation|> */
        add_stop(c, c->role_user);
        add_stop(c, tok_id(tok, "<|observation|>"));
        /* and the [gMASK] sop prefix of both */
        /* fall through */
    case RT_CHAT_CHATGLM2:
        rc = rc || need(tok, "[gMASK]", &c->gmask, k, err) || need(tok, "sop", &c->sop, k, err);
        break;
    case RT_CHAT_BAICHUAN:
        c->user_token = jid(gen, "user_token_id");
        c->assistant_token = jid(gen, "assistant_token_id");
        if (c->user_token < 0 || c->assistant_token < 0 ||
            (size_t)c->user_token >= airllm_tok_vocab_size(tok) ||
            (size_t)c->assistant_token >= airllm_tok_vocab_size(tok))
            rc = airllm_errf(err, "%s/generation_config.json: the baichuan chat template needs "
                                  "user_token_id and assistant_token_id inside the vocab",
                             dir);
        add_stop(c, jid(gen, "eos_token_id"));
        break;
    case RT_CHAT_INTERNLM:
        rc = need(tok, "<eoa>", &c->im_end, k, err);
        add_stop(c, c->im_end);
        break;
    }
out:
    cJSON_Delete(cfg);
    cJSON_Delete(tcfg);
    cJSON_Delete(gen);
    if (rc)
        rt_chat_free(c);
    return rc ? -1 : 0;
}

void rt_chat_free(rt_chat *c)
{
    if (!c)
        return;
    free(c->default_system);
    c->default_system = NULL;
}

bool rt_chat_is_stop(const rt_chat *c, int32_t id)
{
    for (int i = 0; i < c->n_stop; i++)
        if (c->stop[i] == id)
            return true;
    return false;
}

/* ---- building the ids ---- */

typedef struct {
    int32_t *v;
    size_t n, cap;
    const airllm_tokenizer *tok;
    airllm_err *err;
    int rc;
} idbuf;

static void put_id(idbuf *b, int32_t id)
{
    if (b->rc)
        return;
    if (b->n == b->cap) {
        size_t cap = b->cap ? b->cap * 2 : 256;
        int32_t *v = realloc(b->v, cap * sizeof *v);
        if (!v) {
            b->rc = airllm_errf(b->err, "out of memory");
            return;
        }
        b->v = v;
        b->cap = cap;
    }
    b->v[b->n++] = id;
}

/* tokenizer.encode(text) without specials, as one piece. */
static void put_text(idbuf *b, const char *text, size_t len, int add_bos)
{
    int32_t *ids = NULL;
    size_t n = 0;
    if (b->rc)
        return;
    if (airllm_tok_encode(b->tok, text, len, add_bos, &ids, &n, b->err)) {
        b->rc = -1;
        return;
    }
    for (size_t i = 0; i < n; i++)
        put_id(b, ids[i]);
    free(ids);
}

static void put_str(idbuf *b, const char *s)
{
    put_text(b, s, strlen(s), 0);
}

/* Qwen's tokenizer.encode(s, allowed_special=set()): special tokens written
 * in a message are plain text. */
static void put_ordinary(idbuf *b, const char *s)
{
    int32_t *ids = NULL;
    size_t n = 0;
    if (b->rc)
        return;
    if (airllm_tok_encode_ordinary(b->tok, s, strlen(s), &ids, &n, b->err)) {
        b->rc = -1;
        return;
    }
    for (size_t i = 0; i < n; i++)
        put_id(b, ids[i]);
    free(ids);
}

/* A growing text, for the templates the family renders as a string. */
typedef struct {
    char *s;
    size_t n, cap;
    int rc;
} strbuf;

static void cat(strbuf *t, const char *s)
{
    size_t l = strlen(s);
    if (t->rc)
        return;
    if (t->n + l + 1 > t->cap) {
        size_t cap = (t->n + l + 1) * 2;
        char *p = realloc(t->s, cap);
        if (!p) {
            t->rc = -1;
            return;
        }
        t->s = p;
        t->cap = cap;
    }
    memcpy(t->s + t->n, s, l + 1);
    t->n += l;
}

/* Python's str.strip() for the ASCII whitespace the templates meet. */
static void strip_into(strbuf *t, const char *s)
{
    size_t a = 0, e = strlen(s);
    while (a < e && strchr(" \t\n\r\f\v", s[a]))
        a++;
    while (e > a && strchr(" \t\n\r\f\v", s[e - 1]))
        e--;
    char *tmp = strndup(s + a, e - a);
    if (!tmp) {
        t->rc = -1;
        return;
    }
    cat(t, tmp);
    free(tmp);
}

static int check_turns(const rt_chat *c, const rt_chat_msg *m, size_t n, size_t first,
                       airllm_err *err)
{
    if (n <= first)
        return airllm_errf(err, "the conversation has no user message");
    for (size_t i = first; i < n; i++) {
        const char *want = (i - first) % 2 ? "assistant" : "user";
        if (!m[i].role || strcmp(m[i].role, want) != 0)
            return airllm_errf(err, "message %zu: role \"%s\" where \"%s\" was expected (the "
                                    "%s template takes an optional system message, then user "
                                    "and assistant in turn, the last one the user's)",
                               i + 1, m[i].role ? m[i].role : "(none)", want,
                               rt_chat_name(c->kind));
        if (!m[i].content)
            return airllm_errf(err, "message %zu has no content", i + 1);
    }
    if ((n - first) % 2 == 0)
        return airllm_errf(err, "the conversation ends with an assistant message: the last "
                                "message must be the user's");
    return 0;
}

static void render_text(const rt_chat *c, const rt_chat_msg *m, size_t n, const char *sys,
                        strbuf *t)
{
    switch (c->kind) {
    case RT_CHAT_CHATML:
    case RT_CHAT_INTERNLM2:
        if (c->kind == RT_CHAT_INTERNLM2 && !c->add_bos)
            cat(t, c->bos_text); /* build_inputs: the BOS text when not added */
        if (sys && (c->kind == RT_CHAT_CHATML || *sys)) {
            cat(t, "<|im_start|>system\n");
            cat(t, sys);
            cat(t, "<|im_end|>\n");
        }
        for (size_t i = 0; i < n; i++) {
            cat(t, "<|im_start|>");
            cat(t, m[i].role);
            cat(t, "\n");
            cat(t, m[i].content);
            cat(t, "<|im_end|>\n");
        }
        cat(t, "<|im_start|>assistant\n");
        break;
    case RT_CHAT_LLAMA3:
        cat(t, "<|begin_of_text|>");
        if (sys) {
            cat(t, "<|start_header_id|>system<|end_header_id|>\n\n");
            strip_into(t, sys);
            cat(t, "<|eot_id|>");
        }
        for (size_t i = 0; i < n; i++) {
            cat(t, "<|start_header_id|>");
            cat(t, m[i].role);
            cat(t, "<|end_header_id|>\n\n");
            strip_into(t, m[i].content);
            cat(t, "<|eot_id|>");
        }
        cat(t, "<|start_header_id|>assistant<|end_header_id|>\n\n");
        break;
    case RT_CHAT_LLAMA2:
        /* Llama 2 chat's template: the system prompt inside the first
         * [INST] block; each answer closed by EOS. */
        for (size_t i = 0; i < n; i++) {
            if (i % 2 == 0) {
                cat(t, c->bos_text);
                cat(t, "[INST] ");
                if (i == 0 && sys) {
                    /* the template strips the system block and the message
                     * as one string */
                    strbuf u = {0};
                    cat(&u, "<<SYS>>\n");
                    cat(&u, sys);
                    cat(&u, "\n<</SYS>>\n\n");
                    cat(&u, m[i].content);
                    if (u.rc)
                        t->rc = -1;
                    else
                        strip_into(t, u.s);
                    free(u.s);
                } else {
                    strip_into(t, m[i].content);
                }
                cat(t, " [/INST]");
            } else {
                cat(t, " ");
                strip_into(t, m[i].content);
                cat(t, " ");
                cat(t, c->eos_text);
            }
        }
        break;
    case RT_CHAT_INTERNLM:
        /* build_inputs writes "<s>" before each past turn, or once when
         * there is none; the tokenizer adds its BOS before that too */
        for (size_t i = 0; i < n; i++) {
            if (i % 2 == 0 && (i + 1 < n || n == 1))
                cat(t, c->bos_text);
            cat(t, i % 2 ? "" : "<|User|>:");
            cat(t, m[i].content);
            cat(t, i % 2 ? "<eoa>\n" : "<eoh>\n<|Bot|>:");
        }
        break;
    case RT_CHAT_CHATGLM2:
        for (size_t i = 0; i < n; i += 2) {
            char round[48];
            snprintf(round, sizeof round, "[Round %zu]\n\n问：", i / 2 + 1);
            cat(t, round);
            cat(t, m[i].content);
            cat(t, "\n\n答：");
            if (i + 1 < n) {
                cat(t, m[i + 1].content);
                cat(t, "\n\n");
            }
        }
        break;
    default:
        break;
    }
}

int rt_chat_encode(const rt_chat *c, const airllm_tokenizer *tok, const rt_chat_msg *msgs,
                   size_t n, int32_t **ids, size_t *n_ids, airllm_err *err)
{
    *ids = NULL;
    *n_ids = 0;
    size_t first = n && msgs[0].role && strcmp(msgs[0].role, "system") == 0;
    const char *sys = first ? msgs[0].content : c->default_system;
    if (check_turns(c, msgs, n, first, err))
        return -1;
    if (first && !sys)
        return airllm_errf(err, "message 1: the system message has no content");
    if (sys && (c->kind == RT_CHAT_INTERNLM || c->kind == RT_CHAT_CHATGLM2))
        return airllm_errf(err, "the %s chat template has no system prompt",
                           rt_chat_name(c->kind));
    const rt_chat_msg *m = msgs + first;
    n -= first;
    idbuf b = {.tok = tok, .err = err};
    switch (c->kind) {
    case RT_CHAT_QWEN: {
        /* make_context: system, then each past turn after "\n", then the
         * query and "assistant\n" */
        int32_t nl[8];
        int32_t *v;
        size_t k;
        if (airllm_tok_encode(tok, "\n", 1, 0, &v, &k, err))
            return -1;
        if (k > 8) {
            free(v);
            return airllm_errf(err, "qwen chat template: \"\\n\" encodes to %zu ids", k);
        }
        memcpy(nl, v, k * sizeof *nl);
        free(v);
#define NL() for (size_t j_ = 0; j_ < k; j_++) put_id(&b, nl[j_])
        put_id(&b, c->im_start);
        put_ordinary(&b, "system");
        NL();
        put_ordinary(&b, sys);
        put_id(&b, c->im_end);
        for (size_t i = 0; i < n; i++) {
            NL();
            put_id(&b, c->im_start);
            put_ordinary(&b, i % 2 ? "assistant" : "user");
            NL();
            put_ordinary(&b, m[i].content);
            put_id(&b, c->im_end);
        }
        NL();
        put_id(&b, c->im_start);
        put_str(&b, "assistant");
        NL();
#undef NL
        break;
    }
    case RT_CHAT_CHATGLM3:
        put_id(&b, c->gmask);
        put_id(&b, c->sop);
        for (size_t i = 0; i < n + (sys != NULL); i++) {
            const rt_chat_msg *x = sys ? (i ? &m[i - 1] : NULL) : &m[i];
            bool asst = x && (sys ? i - 1 : i) % 2 == 1;
            put_id(&b, !x ? c->role_system : asst ? c->role_assistant : c->role_user);
            const char *meta = x && x->metadata ? x->metadata : "";
            size_t ml = strlen(meta);
            char *line = malloc(ml + 2);
            if (!line) {
                b.rc = airllm_errf(err, "out of memory");
                break;
            }
            memcpy(line, meta, ml);
            memcpy(line + ml, "\n", 2);
            put_ordinary(&b, line);
            free(line);
            put_ordinary(&b, x ? x->content : sys);
        }
        put_id(&b, c->role_assistant);
        break;
    case RT_CHAT_BAICHUAN:
        /* each tokenizer.encode adds BOS when add_bos_token says so */
        put_text(&b, sys ? sys : "", sys ? strlen(sys) : 0, c->add_bos);
        for (size_t i = 0; i < n; i++) {
            put_id(&b, i % 2 ? c->assistant_token : c->user_token);
            put_text(&b, m[i].content, strlen(m[i].content), c->add_bos);
        }
        put_id(&b, c->assistant_token);
        break;
    case RT_CHAT_CHATGLM2:
        put_id(&b, c->gmask);
        put_id(&b, c->sop);
        /* fall through */
    default: {
        strbuf t = {0};
        render_text(c, m, n, sys, &t);
        if (t.rc) {
            free(t.s);
            free(b.v);
            return airllm_errf(err, "out of memory");
        }
        /* InternLM v1/v2: tokenizer([prompt]) adds BOS per add_bos_token;
         * the HF-template families bring theirs in the text. */
        int add_bos = (c->kind == RT_CHAT_INTERNLM || c->kind == RT_CHAT_INTERNLM2) && c->add_bos;
        put_text(&b, t.s ? t.s : "", t.n, add_bos);
        free(t.s);
        break;
    }
    }
    if (b.rc) {
        free(b.v);
        return -1;
    }
    *ids = b.v;
    *n_ids = b.n;
    return 0;
}

int rt_chat_encode_plain(const rt_chat *c, const airllm_tokenizer *tok, const char *text,
                         size_t len, int32_t **ids, size_t *n_ids, airllm_err *err)
{
    idbuf b = {.tok = tok, .err = err};
    bool glm = c && (c->kind == RT_CHAT_CHATGLM3 || c->kind == RT_CHAT_CHATGLM2);
    if (glm) {
        /* ChatGLMTokenizer.build_inputs_with_special_tokens: the prefix */
        put_id(&b, c->gmask);
        put_id(&b, c->sop);
    }
    put_text(&b, text, len, glm ? 0 : airllm_tok_add_bos_default(tok));
    if (b.rc) {
        free(b.v);
        return -1;
    }
    *ids = b.v;
    *n_ids = b.n;
    return 0;
}

void rt_chat_answer(const rt_chat *c, char *text, const char **content, const char **metadata)
{
    *content = text;
    *metadata = NULL;
    if (c->kind != RT_CHAT_CHATGLM3)
        return;
    /* process_response: "metadata\ncontent"; a blank metadata line means a
     * plain answer, kept stripped */
    char *nl = strchr(text, '\n');
    char *body = text;
    if (nl) {
        *nl = '\0';
        body = nl + 1;
        *metadata = text;
    } else {
        *metadata = "";
    }
    bool blank = true;
    for (const char *p = *metadata; *p; p++)
        blank = blank && strchr(" \t\n\r\f\v", *p);
    if (blank) {
        while (*body && strchr(" \t\n\r\f\v", *body))
            body++;
        size_t e = strlen(body);
        while (e && strchr(" \t\n\r\f\v", body[e - 1]))
            body[--e] = '\0';
    }
    *content = body;
}
