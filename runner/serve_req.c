/* airllm-serve's request parser and reply writer (see serve_req.h). */
#include "serve_req.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

bool serve_utf8_valid(const char *str, size_t len)
{
    const unsigned char *s = (const unsigned char *)str;
    size_t i = 0;
    while (i < len) {
        unsigned c = s[i];
        if (c < 0x80) {
            i++;
            continue;
        }
        size_t n;
        unsigned cp, min;
        if ((c & 0xe0) == 0xc0)
            n = 1, cp = c & 0x1f, min = 0x80;
        else if ((c & 0xf0) == 0xe0)
            n = 2, cp = c & 0x0f, min = 0x800;
        else if ((c & 0xf8) == 0xf0)
            n = 3, cp = c & 0x07, min = 0x10000;
        else
            return false;
        if (len - i <= n)
            return false;
        for (size_t k = 1; k <= n; k++) {
            if ((s[i + k] & 0xc0) != 0x80)
                return false;
            cp = cp << 6 | (s[i + k] & 0x3f);
        }
        if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
            return false;
        i += n + 1;
    }
    return true;
}

int serve_errorf(serve_error *e, int status, const char *type, const char *param,
                 const char *fmt, ...)
{
    e->status = status;
    e->type = type;
    e->code = NULL;
    snprintf(e->param, sizeof e->param, "%s", param ? param : "");
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e->message, sizeof e->message, fmt, ap);
    va_end(ap);
    return -1;
}

char *serve_error_json(const serve_error *e)
{
    cJSON *j = cJSON_CreateObject(), *o = cJSON_AddObjectToObject(j, "error");
    cJSON_AddStringToObject(o, "message", e->message);
    cJSON_AddStringToObject(o, "type", e->type ? e->type : "invalid_request_error");
    if (e->param[0])
        cJSON_AddStringToObject(o, "param", e->param);
    else
        cJSON_AddNullToObject(o, "param");
    if (e->code)
        cJSON_AddStringToObject(o, "code", e->code);
    else
        cJSON_AddNullToObject(o, "code");
    char *s = cJSON_PrintUnformatted(j);
    cJSON_Delete(j);
    return s;
}

static int bad(serve_error *e, const char *param, const char *what)
{
    return serve_errorf(e, 400, "invalid_request_error", param, "'%s' %s", param, what);
}

/* A number field in [lo, hi], or absent/null (keeps *out). */
static int get_num(const cJSON *root, const char *name, double lo, double hi, double *out,
                   serve_error *e)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(root, name);
    if (!v || cJSON_IsNull(v))
        return 0;
    if (!cJSON_IsNumber(v) || !isfinite(v->valuedouble))
        return bad(e, name, "must be a number");
    if (v->valuedouble < lo || v->valuedouble > hi)
        return serve_errorf(e, 400, "invalid_request_error", name, "'%s' must be in [%g, %g]",
                            name, lo, hi);
    *out = v->valuedouble;
    return 0;
}

static int get_int(const cJSON *root, const char *name, double lo, double hi, double *out,
                   serve_error *e)
{
    double v = *out;
    if (get_num(root, name, lo, hi, &v, e))
        return -1;
    if (v != floor(v))
        return bad(e, name, "must be an integer");
    *out = v;
    return 0;
}

static int get_bool(const cJSON *root, const char *name, bool *out, serve_error *e)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(root, name);
    if (!v || cJSON_IsNull(v))
        return 0;
    if (!cJSON_IsBool(v))
        return bad(e, name, "must be a boolean");
    *out = cJSON_IsTrue(v);
    return 0;
}

static int get_stop(const cJSON *root, serve_req *r, serve_error *e)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(root, "stop");
    if (!v || cJSON_IsNull(v))
        return 0;
    if (cJSON_IsString(v)) {
        r->stop[r->n_stop++] = v->valuestring;
    } else if (cJSON_IsArray(v)) {
        if (cJSON_GetArraySize(v) > SERVE_MAX_STOP)
            return serve_errorf(e, 400, "invalid_request_error", "stop",
                                "'stop' has more than %d strings", SERVE_MAX_STOP);
        const cJSON *s;
        cJSON_ArrayForEach(s, v) {
            if (!cJSON_IsString(s))
                return bad(e, "stop", "must be a string or an array of strings");
            r->stop[r->n_stop++] = s->valuestring;
        }
    } else {
        return bad(e, "stop", "must be a string or an array of strings");
    }
    for (size_t i = 0; i < r->n_stop; i++) {
        size_t l = strlen(r->stop[i]);
        if (l == 0 || l > SERVE_STOP_LEN)
            return serve_errorf(e, 400, "invalid_request_error", "stop",
                                "each 'stop' string must have 1 to %d bytes", SERVE_STOP_LEN);
    }
    return 0;
}

static int get_messages(const cJSON *root, serve_req *r, serve_error *e)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(root, "messages");
    if (!v)
        return serve_errorf(e, 400, "invalid_request_error", "messages",
                            "'messages' is required");
    if (!cJSON_IsArray(v))
        return bad(e, "messages", "must be an array");
    int n = cJSON_GetArraySize(v);
    if (n < 1 || n > SERVE_MAX_MESSAGES)
        return serve_errorf(e, 400, "invalid_request_error", "messages",
                            "'messages' must have 1 to %d entries", SERVE_MAX_MESSAGES);
    r->msgs = calloc((size_t)n, sizeof *r->msgs);
    if (!r->msgs)
        return serve_errorf(e, 500, "server_error", NULL, "out of memory");
    const cJSON *m;
    cJSON_ArrayForEach(m, v) {
        const cJSON *role = cJSON_GetObjectItemCaseSensitive(m, "role");
        const cJSON *content = cJSON_GetObjectItemCaseSensitive(m, "content");
        if (!cJSON_IsObject(m) || !cJSON_IsString(role))
            return bad(e, "messages", "entries must be objects with a string 'role'");
        if (strcmp(role->valuestring, "system") && strcmp(role->valuestring, "user") &&
            strcmp(role->valuestring, "assistant"))
            return serve_errorf(e, 400, "invalid_request_error", "messages",
                                "role must be system, user or assistant");
        if (!cJSON_IsString(content))
            return bad(e, "messages", "entries need a string 'content'");
        rt_chat_msg *x = &r->msgs[r->n_msgs++];
        x->role = role->valuestring;
        x->content = content->valuestring;
        x->metadata = NULL;
    }
    /* The templates end where the assistant answers the user's message. */
    if (strcmp(r->msgs[r->n_msgs - 1].role, "user"))
        return serve_errorf(e, 400, "invalid_request_error", "messages",
                            "the last message must be the user's");
    for (size_t i = 1; i < r->n_msgs; i++)
        if (strcmp(r->msgs[i].role, "system") == 0)
            return serve_errorf(e, 400, "invalid_request_error", "messages",
                                "only the first message may be the system's");
    return 0;
}

static int get_prompt(const cJSON *root, serve_req *r, serve_error *e)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(root, "prompt");
    if (!v)
        return serve_errorf(e, 400, "invalid_request_error", "prompt", "'prompt' is required");
    if (cJSON_IsString(v)) {
        r->prompt = v->valuestring;
        r->prompt_len = strlen(v->valuestring);
        if (!r->prompt_len)
            return bad(e, "prompt", "must not be empty");
        return 0;
    }
    /* A list of token ids (OpenAI's form for pre-tokenized prompts). */
    if (!cJSON_IsArray(v))
        return bad(e, "prompt", "must be a string or an array of token ids");
    int n = cJSON_GetArraySize(v);
    if (n < 1 || n > SERVE_MAX_PROMPT_IDS)
        return serve_errorf(e, 400, "invalid_request_error", "prompt",
                            "'prompt' must have 1 to %d token ids", SERVE_MAX_PROMPT_IDS);
    r->prompt_ids = malloc(sizeof(int32_t) * (size_t)n);
    if (!r->prompt_ids)
        return serve_errorf(e, 500, "server_error", NULL, "out of memory");
    const cJSON *x;
    cJSON_ArrayForEach(x, v) {
        if (!cJSON_IsNumber(x) || x->valuedouble != floor(x->valuedouble) ||
            x->valuedouble < 0 || x->valuedouble > INT32_MAX)
            return bad(e, "prompt", "must be a string or an array of token ids");
        r->prompt_ids[r->n_prompt_ids++] = (int32_t)x->valuedouble;
    }
    return 0;
}

static int parse(serve_kind kind, const char *body, size_t len, const serve_defaults *d,
                 serve_req *r, serve_error *e)
{
    memset(r, 0, sizeof *r);
    memset(e, 0, sizeof *e);
    r->kind = kind;
    r->max_tokens = -1;
    r->temperature = d->temperature;
    r->top_p = d->top_p;
    r->top_k = d->top_k;
    r->seed = d->seed;
    if (!serve_utf8_valid(body, len))
        return serve_errorf(e, 400, "invalid_request_error", NULL,
                            "the body is not valid UTF-8");
    r->root = cJSON_ParseWithLength(body, len);
    if (!r->root)
        return serve_errorf(e, 400, "invalid_request_error", NULL,
                            "the body is not valid JSON");
    const cJSON *root = r->root;
    if (!cJSON_IsObject(root))
        return serve_errorf(e, 400, "invalid_request_error", NULL,
                            "the body must be a JSON object");
    const cJSON *model = cJSON_GetObjectItemCaseSensitive(root, "model");
    if (model && !cJSON_IsNull(model)) {
        if (!cJSON_IsString(model))
            return bad(e, "model", "must be a string");
        snprintf(r->model, sizeof r->model, "%s", model->valuestring);
    }
    double v = -1;
    if (get_int(root, "max_tokens", 1, 1 << 24, &v, e))
        return -1;
    if (kind == SERVE_CHAT && get_int(root, "max_completion_tokens", 1, 1 << 24, &v, e))
        return -1;
    r->max_tokens = (long)v;
    if (get_num(root, "temperature", 0, 2, &r->temperature, e) ||
        get_num(root, "top_p", 0, 1, &r->top_p, e))
        return -1;
    if (r->top_p <= 0)
        return serve_errorf(e, 400, "invalid_request_error", "top_p", "'top_p' must be > 0");
    v = (double)r->top_k;
    if (get_int(root, "top_k", 0, 1 << 24, &v, e))
        return -1;
    r->top_k = (long)v;
    /* Seeds up to 2^53: every such integer is exact in a JSON double. */
    v = (double)r->seed;
    if (get_int(root, "seed", 0, 9007199254740992.0, &v, e))
        return -1;
    r->seed = (uint64_t)v;
    v = 1;
    if (get_int(root, "n", 1, 1, &v, e))
        return -1;
    if (get_bool(root, "stream", &r->stream, e) || get_stop(root, r, e))
        return -1;
    const cJSON *so = cJSON_GetObjectItemCaseSensitive(root, "stream_options");
    if (so && !cJSON_IsNull(so)) {
        if (!cJSON_IsObject(so))
            return bad(e, "stream_options", "must be an object");
        if (get_bool(so, "include_usage", &r->include_usage, e))
            return -1;
    }
    return kind == SERVE_CHAT ? get_messages(root, r, e) : get_prompt(root, r, e);
}

int serve_req_parse(serve_kind kind, const char *body, size_t len, const serve_defaults *d,
                    serve_req *r, serve_error *e)
{
    if (parse(kind, body, len, d, r, e) == 0)
        return 0;
    serve_req_free(r);
    return -1;
}

void serve_req_free(serve_req *r)
{
    cJSON_Delete(r->root);
    free(r->msgs);
    free(r->prompt_ids);
    memset(r, 0, sizeof *r);
}

size_t serve_stop_find(const serve_req *r, const char *text, size_t len)
{
    size_t best = len;
    for (size_t i = 0; i < r->n_stop; i++) {
        size_t l = strlen(r->stop[i]);
        for (size_t p = 0; p + l <= len && p < best; p++)
            if (memcmp(text + p, r->stop[i], l) == 0) {
                best = p;
                break;
            }
    }
    return best;
}

size_t serve_stop_holdback(const serve_req *r, const char *text, size_t len)
{
    size_t hold = 0;
    for (size_t i = 0; i < r->n_stop; i++) {
        size_t l = strlen(r->stop[i]);
        /* the longest proper prefix of the stop string ending text */
        for (size_t k = l - 1; k > hold; k--)
            if (k <= len && memcmp(text + len - k, r->stop[i], k) == 0) {
                hold = k;
                break;
            }
    }
    return hold;
}

/* text[0, len) as a cJSON string (NUL bytes end it: JSON text from cJSON
 * is NUL-terminated). */
static cJSON *text_item(const char *text, size_t len)
{
    char *t = malloc(len + 1);
    if (!t)
        return NULL;
    memcpy(t, text, len);
    t[len] = 0;
    cJSON *s = cJSON_CreateString(t);
    free(t);
    return s;
}

static void add_usage(cJSON *j, size_t n_prompt, size_t n_completion)
{
    cJSON *u = cJSON_AddObjectToObject(j, "usage");
    cJSON_AddNumberToObject(u, "prompt_tokens", (double)n_prompt);
    cJSON_AddNumberToObject(u, "completion_tokens", (double)n_completion);
    cJSON_AddNumberToObject(u, "total_tokens", (double)(n_prompt + n_completion));
}

static cJSON *reply_head(const serve_req *r, const char *id, long created, const char *model,
                         bool chunk)
{
    cJSON *j = cJSON_CreateObject();
    cJSON_AddStringToObject(j, "id", id);
    cJSON_AddStringToObject(j, "object",
                            r->kind == SERVE_CHAT ? (chunk ? "chat.completion.chunk"
                                                           : "chat.completion")
                                                  : "text_completion");
    cJSON_AddNumberToObject(j, "created", (double)created);
    cJSON_AddStringToObject(j, "model", model);
    return j;
}

char *serve_reply_json(const serve_req *r, const char *id, long created, const char *model,
                       const char *text, size_t len, const char *finish, size_t n_prompt,
                       size_t n_completion)
{
    cJSON *j = reply_head(r, id, created, model, false);
    cJSON *ch = cJSON_AddArrayToObject(j, "choices"), *c = cJSON_CreateObject();
    cJSON_AddItemToArray(ch, c);
    cJSON_AddNumberToObject(c, "index", 0);
    if (r->kind == SERVE_CHAT) {
        cJSON *m = cJSON_AddObjectToObject(c, "message");
        cJSON_AddStringToObject(m, "role", "assistant");
        cJSON_AddItemToObject(m, "content", text_item(text, len));
    } else {
        cJSON_AddItemToObject(c, "text", text_item(text, len));
        cJSON_AddNullToObject(c, "logprobs");
    }
    cJSON_AddStringToObject(c, "finish_reason", finish);
    add_usage(j, n_prompt, n_completion);
    char *s = cJSON_PrintUnformatted(j);
    cJSON_Delete(j);
    return s;
}

char *serve_sse_chunk(const serve_req *r, const char *id, long created, const char *model,
                      const char *text, size_t len, bool first, const char *finish, bool usage,
                      size_t n_prompt, size_t n_completion, size_t *out_len)
{
    cJSON *j = reply_head(r, id, created, model, true);
    cJSON *ch = cJSON_AddArrayToObject(j, "choices");
    if (!usage) {
        cJSON *c = cJSON_CreateObject();
        cJSON_AddItemToArray(ch, c);
        cJSON_AddNumberToObject(c, "index", 0);
        if (r->kind == SERVE_CHAT) {
            cJSON *dl = cJSON_AddObjectToObject(c, "delta");
            if (first)
                cJSON_AddStringToObject(dl, "role", "assistant");
            if (len || !finish)
                cJSON_AddItemToObject(dl, "content", text_item(text, len));
        } else {
            cJSON_AddItemToObject(c, "text", text_item(text, len));
            cJSON_AddNullToObject(c, "logprobs");
        }
        if (finish)
            cJSON_AddStringToObject(c, "finish_reason", finish);
        else
            cJSON_AddNullToObject(c, "finish_reason");
    } else {
        add_usage(j, n_prompt, n_completion);
    }
    char *s = cJSON_PrintUnformatted(j);
    cJSON_Delete(j);
    if (!s)
        return NULL;
    size_t l = strlen(s);
    char *out = malloc(l + 9);
    if (out) {
        memcpy(out, "data: ", 6);
        memcpy(out + 6, s, l);
        memcpy(out + 6 + l, "\n\n", 3);
        *out_len = l + 8;
    }
    free(s);
    return out;
}
