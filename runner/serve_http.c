/* airllm-serve's HTTP side: libmicrohttpd calls serve_handle on the
 * connection's own thread (thread-per-connection), so a handler may block
 * waiting for the engine's tokens without stalling other clients. Each
 * connection has a conn (below) that only its thread touches; the request
 * it shares with the engine (rt_breq) is guarded by the engine's lock. */
#include <poll.h>
#include <sys/socket.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli.h"
#include "serve.h"

typedef struct {
    serve_state *S;
    char path[64];
    bool counted;            /* in S->active */
    char *body;
    size_t len, cap;
    bool too_big;
    int status;              /* of the reply, for the log */
    /* generation */
    bool have_req, submitted, gen_done, stopped, sent_all, first_chunk;
    serve_req req;
    rt_breq br;
    airllm_tok_decoder *dec;
    char *text;              /* decoded so far (stop strings cut it) */
    size_t text_len, text_cap, sent, consumed, n_completion;
    const char *finish;
    char id[48];
    long created;
    int fd;
    double t0;
    /* a stream's pending bytes */
    char *pend;
    size_t pend_len, pend_off;
} conn;

static enum MHD_Result reply(struct MHD_Connection *mc, conn *c, int status, const char *type,
                             char *body)
{
    if (!body)
        return MHD_NO;
    struct MHD_Response *r =
        MHD_create_response_from_buffer(strlen(body), body, MHD_RESPMEM_MUST_FREE);
    if (!r) {
        free(body);
        return MHD_NO;
    }
    MHD_add_response_header(r, "Content-Type", type);
    c->status = status;
    enum MHD_Result ok = MHD_queue_response(mc, (unsigned)status, r);
    MHD_destroy_response(r);
    return ok;
}

static enum MHD_Result reply_error(struct MHD_Connection *mc, conn *c, const serve_error *e)
{
    return reply(mc, c, e->status, "application/json", serve_error_json(e));
}

static enum MHD_Result error_now(struct MHD_Connection *mc, conn *c, int status,
                                 const char *type, const char *param, const char *msg)
{
    serve_error e;
    serve_errorf(&e, status, type, param, "%s", msg);
    return reply_error(mc, c, &e);
}

/* A body still arriving after the deadline: libmicrohttpd (0.9.x) refuses
 * to queue a response while it is reading a body, and its own timeout only
 * counts idle seconds, so a client trickling a byte at a time would hold a
 * connection (and a thread) for ever. The 408 is written to the socket
 * here, once, before the handler returns MHD_NO and libmicrohttpd closes
 * the connection: best effort (a client that reads nothing loses it). */
static enum MHD_Result body_timeout(struct MHD_Connection *mc, conn *c)
{
    serve_error e;
    serve_errorf(&e, 408, "invalid_request_error", NULL,
                 "the request body did not arrive within %.0f seconds (--timeout)",
                 c->S->body_deadline_s);
    char *body = serve_error_json(&e);
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(mc, MHD_CONNECTION_INFO_CONNECTION_FD);
    c->status = 408;
    if (body && ci) {
        char head[160];
        int n = snprintf(head, sizeof head,
                         "HTTP/1.1 408 Request Timeout\r\nContent-Type: application/json\r\n"
                         "Content-Length: %zu\r\nConnection: close\r\n\r\n",
                         strlen(body));
        if (n > 0 && (size_t)n < sizeof head &&
            send(ci->connect_fd, head, (size_t)n, MSG_NOSIGNAL | MSG_DONTWAIT) == n) {
            ssize_t w = send(ci->connect_fd, body, strlen(body), MSG_NOSIGNAL | MSG_DONTWAIT);
            (void)w;
            shutdown(ci->connect_fd, SHUT_WR);
        }
    }
    free(body);
    return MHD_NO;
}

/* Whether the client has gone (closed or reset its side). */
static bool client_gone(int fd)
{
    if (fd < 0)
        return false;
    struct pollfd p = {fd, POLLRDHUP, 0};
    return poll(&p, 1, 0) > 0 && (p.revents & (POLLRDHUP | POLLHUP | POLLERR));
}

static int text_add(conn *c, const char *t, size_t n)
{
    if (c->text_len + n + 1 > c->text_cap) {
        size_t cap = (c->text_len + n + 1) * 2;
        char *p = realloc(c->text, cap);
        if (!p)
            return -1;
        c->text = p;
        c->text_cap = cap;
    }
    memcpy(c->text + c->text_len, t, n);
    c->text_len += n;
    c->text[c->text_len] = 0;
    return 0;
}

/* Takes the tokens the engine has made since the last call (waiting up to
 * timeout_s for one), decodes them and looks for stop strings; sets
 * gen_done when the sequence is over. */
static void advance(conn *c, double timeout_s)
{
    serve_state *S = c->S;
    bool done;
    size_t n = rt_batch_wait(S->batch, &c->br, c->consumed, &done, timeout_s);
    airllm_err err = {{0}};
    pthread_mutex_lock(&S->tok_lock);
    for (size_t k = c->consumed; k < n && !c->stopped; k++) {
        const char *t;
        size_t len = 0;
        c->n_completion = k + 1;
        if (c->dec && airllm_tok_decoder_feed(c->dec, c->br.out[k], &t, &len, &err) == 0 && len)
            text_add(c, t, len);
        size_t at = serve_stop_find(&c->req, c->text, c->text_len);
        if (at < c->text_len) {
            c->text_len = at;
            c->stopped = true;
        }
    }
    c->consumed = n;
    if (done && !c->stopped && c->dec) {
        const char *t;
        size_t len = 0;
        if (airllm_tok_decoder_flush(c->dec, &t, &len, &err) == 0 && len)
            text_add(c, t, len);
        size_t at = serve_stop_find(&c->req, c->text, c->text_len);
        if (at < c->text_len)
            c->text_len = at, c->stopped = true;
    }
    pthread_mutex_unlock(&S->tok_lock);
    if (c->stopped) {
        rt_batch_cancel(S->batch, &c->br);
        c->finish = "stop";
        c->gen_done = true;
    } else if (done) {
        c->gen_done = true;
        c->finish = c->br.finish == RT_FINISH_LENGTH ? "length" : "stop";
    }
}

/* The engine's error for a finished request, or NULL (read once done). */
static const char *gen_error(conn *c)
{
    return c->gen_done && !c->stopped && c->br.finish == RT_FINISH_ERROR ? c->br.error : NULL;
}

static int pend_add(conn *c, char *s, size_t n)
{
    if (!s)
        return -1;
    char *p = realloc(c->pend, c->pend_len + n);
    if (!p) {
        free(s);
        return -1;
    }
    c->pend = p;
    memcpy(c->pend + c->pend_len, s, n);
    c->pend_len += n;
    free(s);
    return 0;
}

/* Appends one event of serve_sse_chunk (same arguments after c). */
static int pend_chunk(conn *c, const char *text, size_t len, bool first, const char *finish,
                      bool usage)
{
    size_t n = 0;
    char *ev = serve_sse_chunk(&c->req, c->id, c->created, c->S->model_name, text, len, first,
                               finish, usage, c->br.n_prompt, c->n_completion, &n);
    return pend_add(c, ev, n);
}

/* libmicrohttpd asks for the next bytes of a stream (on the connection's
 * thread, which may block here). */
static ssize_t stream_cb(void *cls, uint64_t pos, char *buf, size_t max)
{
    (void)pos;
    conn *c = cls;
    while (c->pend_off == c->pend_len) {
        if (c->sent_all)
            return MHD_CONTENT_READER_END_OF_STREAM;
        c->pend_off = c->pend_len = 0;
        size_t had = c->text_len;
        while (!c->gen_done) {
            advance(c, 0.25);
            if (c->text_len > had || c->gen_done)
                break;
            if (client_gone(c->fd))
                return MHD_CONTENT_READER_END_WITH_ERROR;
        }
        size_t hold = c->gen_done ? 0 : serve_stop_holdback(&c->req, c->text, c->text_len);
        size_t upto = c->text_len - hold;
        if (upto > c->sent &&
            pend_chunk(c, c->text + c->sent, upto - c->sent, c->first_chunk, NULL, false))
            return MHD_CONTENT_READER_END_WITH_ERROR;
        if (upto > c->sent) {
            c->sent = upto;
            c->first_chunk = false;
        }
        if (c->gen_done) {
            const char *msg = gen_error(c);
            if (msg) {
                serve_error e;
                serve_errorf(&e, 500, "server_error", NULL, "%s", msg);
                char *j = serve_error_json(&e);
                size_t l = j ? strlen(j) : 0;
                char *ev = j ? malloc(l + 9) : NULL;
                if (ev) {
                    snprintf(ev, l + 9, "data: %s\n\n", j);
                    pend_add(c, ev, l + 8);
                }
                free(j);
                c->status = 500;
            } else {
                if (pend_chunk(c, "", 0, c->first_chunk, c->finish, false) ||
                    (c->req.include_usage && pend_chunk(c, "", 0, false, NULL, true)))
                    return MHD_CONTENT_READER_END_WITH_ERROR;
            }
            pend_add(c, strdup("data: [DONE]\n\n"), 14);
            c->sent_all = true;
        }
    }
    size_t n = c->pend_len - c->pend_off < max ? c->pend_len - c->pend_off : max;
    memcpy(buf, c->pend + c->pend_off, n);
    c->pend_off += n;
    return (ssize_t)n;
}

/* Prompt ids of the parsed request: 0, or -1 with e set. */
static int prompt_ids(conn *c, int32_t **ids, size_t *n, serve_error *e)
{
    serve_state *S = c->S;
    serve_req *r = &c->req;
    airllm_err err = {{0}};
    *ids = NULL;
    *n = 0;
    if (r->prompt_ids) {
        *ids = malloc(sizeof(int32_t) * r->n_prompt_ids);
        if (!*ids)
            return serve_errorf(e, 500, "server_error", NULL, "out of memory");
        memcpy(*ids, r->prompt_ids, sizeof(int32_t) * r->n_prompt_ids);
        *n = r->n_prompt_ids;
    } else if (!S->tok) {
        return serve_errorf(e, 400, "invalid_request_error", "prompt",
                            "this model has no tokenizer: give the prompt as token ids");
    } else {
        int rc;
        pthread_mutex_lock(&S->tok_lock);
        if (r->kind == SERVE_CHAT)
            rc = S->chat ? rt_chat_encode(S->chat, S->tok, r->msgs, r->n_msgs, ids, n, &err)
                         : airllm_errf(&err, "this model has no chat template");
        else if (S->chat)
            rc = rt_chat_encode_plain(S->chat, S->tok, r->prompt, r->prompt_len, ids, n, &err);
        else
            rc = airllm_tok_encode(S->tok, r->prompt, r->prompt_len, 1, ids, n, &err);
        pthread_mutex_unlock(&S->tok_lock);
        if (rc)
            return serve_errorf(e, 400, "invalid_request_error",
                                r->kind == SERVE_CHAT ? "messages" : "prompt", "%s", err.msg);
    }
    const rt_config *cf = &S->m->cfg;
    for (size_t i = 0; i < *n; i++)
        if ((*ids)[i] < 0 || (*ids)[i] >= cf->vocab)
            return serve_errorf(e, 400, "invalid_request_error", "prompt",
                                "token id %d is outside the vocabulary (0..%d)", (*ids)[i],
                                cf->vocab - 1);
    if (*n == 0)
        return serve_errorf(e, 400, "invalid_request_error", "prompt",
                            "the prompt has no tokens");
    long max = r->max_tokens > 0 ? r->max_tokens : S->defaults.max_tokens;
    if (*n + (size_t)(r->max_tokens > 0 ? max : 1) > (size_t)cf->max_pos) {
        serve_errorf(e, 400, "invalid_request_error",
                     r->kind == SERVE_CHAT ? "messages" : "prompt",
                     "the prompt (%zu tokens) plus max_tokens (%ld) exceeds the model's "
                     "context of %d tokens",
                     *n, r->max_tokens > 0 ? max : 1, cf->max_pos);
        e->code = "context_length_exceeded";
        return -1;
    }
    /* Left unset, max_tokens is the server's default, within the context. */
    if (r->max_tokens <= 0 && *n + (size_t)max > (size_t)cf->max_pos)
        max = cf->max_pos - (long)*n;
    c->br.max_new = (size_t)max;
    return 0;
}

static enum MHD_Result generate(struct MHD_Connection *mc, conn *c, serve_kind kind)
{
    serve_state *S = c->S;
    serve_error e;
    if (c->too_big) {
        serve_errorf(&e, 413, "invalid_request_error", NULL,
                     "the request body is larger than %zu bytes", S->max_body);
        return reply_error(mc, c, &e);
    }
    if (serve_req_parse(kind, c->body ? c->body : "", c->len, &S->defaults, &c->req, &e)) {
        c->have_req = true;
        return reply_error(mc, c, &e);
    }
    c->have_req = true;
    int32_t *ids;
    size_t n;
    if (prompt_ids(c, &ids, &n, &e)) {
        free(ids);
        return reply_error(mc, c, &e);
    }
    c->br.ids = ids;
    c->br.n_prompt = n;
    c->br.smp.temperature = c->req.temperature;
    c->br.smp.top_k = c->req.top_k;
    c->br.smp.top_p = c->req.top_p;
    c->br.smp.rng = c->req.seed;
    airllm_err err = {{0}};
    if (S->tok) {
        pthread_mutex_lock(&S->tok_lock);
        int rc = airllm_tok_decoder_new(S->tok, 1, &c->dec, &err);
        pthread_mutex_unlock(&S->tok_lock);
        if (rc)
            return error_now(mc, c, 500, "server_error", NULL, err.msg);
    }
    if (rt_batch_submit(S->batch, &c->br, &err))
        return error_now(mc, c, 503, "server_error", NULL, err.msg);
    c->submitted = true;
    pthread_mutex_lock(&S->lock);
    c->created = (long)time(NULL);
    snprintf(c->id, sizeof c->id, "%s-%llu", kind == SERVE_CHAT ? "chatcmpl" : "cmpl",
             (unsigned long long)++S->next_id);
    pthread_mutex_unlock(&S->lock);
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(mc, MHD_CONNECTION_INFO_CONNECTION_FD);
    c->fd = ci ? ci->connect_fd : -1;
    if (c->req.stream) {
        c->first_chunk = true;
        struct MHD_Response *r =
            MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 4096, stream_cb, c, NULL);
        if (!r)
            return MHD_NO;
        MHD_add_response_header(r, "Content-Type", "text/event-stream");
        MHD_add_response_header(r, "Cache-Control", "no-cache");
        c->status = 200;
        enum MHD_Result ok = MHD_queue_response(mc, MHD_HTTP_OK, r);
        MHD_destroy_response(r);
        return ok;
    }
    while (!c->gen_done) {
        advance(c, 0.25);
        if (!c->gen_done && client_gone(c->fd))
            return MHD_NO; /* the slot is freed when the connection completes */
    }
    const char *msg = gen_error(c);
    if (msg)
        return error_now(mc, c, 500, "server_error", NULL, msg);
    return reply(mc, c, 200, "application/json",
                 serve_reply_json(&c->req, c->id, c->created, S->model_name, c->text ? c->text : "",
                                  c->text_len, c->finish, c->br.n_prompt, c->n_completion));
}

static char *metrics_text(serve_state *S)
{
    rt_batch_stats st;
    rt_batch_get_stats(S->batch, &st);
    pthread_mutex_lock(&S->lock);
    long active = S->active;
    pthread_mutex_unlock(&S->lock);
    char *s = malloc(1024);
    if (s)
        snprintf(s, 1024,
                 "# airllm-serve counters since start\n"
                 "airllm_steps_total %llu\n"
                 "airllm_generated_tokens_total %llu\n"
                 "airllm_prompt_tokens_total %llu\n"
                 "airllm_requests_total %llu\n"
                 "airllm_rejected_total %llu\n"
                 "airllm_bytes_read_total %llu\n"
                 "airllm_running %zu\n"
                 "airllm_queued %zu\n"
                 "airllm_connections_active %ld\n",
                 (unsigned long long)st.steps, (unsigned long long)st.tokens,
                 (unsigned long long)st.prompt_tokens, (unsigned long long)st.requests,
                 (unsigned long long)st.rejected, (unsigned long long)st.bytes_read, st.running,
                 st.queued, active);
    return s;
}

static bool authorized(serve_state *S, struct MHD_Connection *mc)
{
    if (!S->api_key)
        return true;
    const char *h = MHD_lookup_connection_value(mc, MHD_HEADER_KIND, "Authorization");
    return h && strncmp(h, "Bearer ", 7) == 0 && strcmp(h + 7, S->api_key) == 0;
}

enum MHD_Result serve_handle(void *cls, struct MHD_Connection *mc, const char *url,
                             const char *method, const char *version, const char *upload,
                             size_t *upload_size, void **con_cls)
{
    (void)version;
    serve_state *S = cls;
    conn *c = *con_cls;
    if (!c) {
        if (!(c = calloc(1, sizeof *c)))
            return MHD_NO;
        c->S = S;
        c->fd = -1;
        c->t0 = airllm_now();
        snprintf(c->path, sizeof c->path, "%s", url);
        pthread_mutex_lock(&S->lock);
        S->active++;
        pthread_mutex_unlock(&S->lock);
        c->counted = true;
        *con_cls = c;
        /* A declared body over the limit is refused before it is read. */
        const char *cl = MHD_lookup_connection_value(mc, MHD_HEADER_KIND, "Content-Length");
        if (cl && strtoull(cl, NULL, 10) > S->max_body)
            c->too_big = true;
        return MHD_YES;
    }
    if (*upload_size) {
        if (airllm_now() - c->t0 > S->body_deadline_s)
            return body_timeout(mc, c);
        if (!c->too_big && c->len + *upload_size > S->max_body)
            c->too_big = true;
        if (!c->too_big) {
            if (c->len + *upload_size + 1 > c->cap) {
                size_t cap = (c->len + *upload_size + 1) * 2;
                char *p = realloc(c->body, cap > S->max_body + 1 ? S->max_body + 1 : cap);
                if (!p)
                    return MHD_NO;
                c->body = p;
                c->cap = cap > S->max_body + 1 ? S->max_body + 1 : cap;
            }
            memcpy(c->body + c->len, upload, *upload_size);
            c->len += *upload_size;
        }
        *upload_size = 0;
        return MHD_YES;
    }
    bool get = strcmp(method, "GET") == 0, post = strcmp(method, "POST") == 0;
    if (strcmp(url, "/health") == 0) {
        if (!get)
            return error_now(mc, c, 405, "invalid_request_error", NULL, "use GET");
        rt_batch_stats st;
        rt_batch_get_stats(S->batch, &st);
        return st.failed ? reply(mc, c, 503, "application/json",
                                 strdup("{\"status\":\"failed\"}"))
                         : reply(mc, c, 200, "application/json", strdup("{\"status\":\"ok\"}"));
    }
    if (strcmp(url, "/metrics") == 0)
        return get ? reply(mc, c, 200, "text/plain; version=0.0.4", metrics_text(S))
                   : error_now(mc, c, 405, "invalid_request_error", NULL, "use GET");
    bool chat = strcmp(url, "/v1/chat/completions") == 0;
    bool compl = strcmp(url, "/v1/completions") == 0, models = strcmp(url, "/v1/models") == 0;
    if (!chat && !compl && !models)
        return error_now(mc, c, 404, "invalid_request_error", NULL, "no such endpoint");
    if (!authorized(S, mc)) {
        serve_error e;
        serve_errorf(&e, 401, "invalid_request_error", NULL,
                     "a valid 'Authorization: Bearer' API key is required");
        e.code = "invalid_api_key";
        return reply_error(mc, c, &e);
    }
    if (models) {
        if (!get)
            return error_now(mc, c, 405, "invalid_request_error", NULL, "use GET");
        cJSON *j = cJSON_CreateObject(), *d = cJSON_AddArrayToObject(j, "data");
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(j, "object", "list");
        cJSON_AddStringToObject(o, "id", S->model_name);
        cJSON_AddStringToObject(o, "object", "model");
        cJSON_AddNumberToObject(o, "created", 0);
        cJSON_AddStringToObject(o, "owned_by", "airllm");
        cJSON_AddItemToArray(d, o);
        char *s = cJSON_PrintUnformatted(j);
        cJSON_Delete(j);
        return reply(mc, c, 200, "application/json", s);
    }
    if (!post)
        return error_now(mc, c, 405, "invalid_request_error", NULL, "use POST");
    return generate(mc, c, chat ? SERVE_CHAT : SERVE_COMPLETION);
}

void serve_completed(void *cls, struct MHD_Connection *mc, void **con_cls,
                     enum MHD_RequestTerminationCode toe)
{
    (void)mc;
    serve_state *S = cls;
    conn *c = *con_cls;
    if (!c)
        return;
    *con_cls = NULL;
    if (c->submitted)
        rt_batch_release(S->batch, &c->br); /* a client gone: its slot is freed */
    bool ok = toe == MHD_REQUEST_TERMINATED_COMPLETED_OK;
    if (S->json_log) {
        const rt_breq *b = &c->br;
        double end = airllm_now();
        /* one JSON Lines object per request (docs/json.md, airllm-serve) */
        cJSON *j = cli_json_new("request", ok && c->status < 400 ? "ok" : "error");
        cJSON_AddStringToObject(j, "path", c->path);
        cJSON_AddNumberToObject(j, "http_status", c->status);
        cJSON_AddBoolToObject(j, "completed", ok);
        cJSON_AddStringToObject(j, "id", c->id);
        cJSON_AddNumberToObject(j, "prompt_tokens", (double)(c->submitted ? b->n_prompt : 0));
        cJSON_AddNumberToObject(j, "completion_tokens", (double)c->n_completion);
        cJSON_AddStringToObject(j, "finish_reason", c->finish ? c->finish : "");
        cJSON *tm = cJSON_AddObjectToObject(j, "timings");
        cJSON_AddNumberToObject(tm, "queue_s",
                                c->submitted && b->t_start > 0 ? b->t_start - b->t_submit : 0);
        cJSON_AddNumberToObject(tm, "first_token_s",
                                c->submitted && b->t_first > 0 ? b->t_first - b->t_submit : 0);
        cJSON_AddNumberToObject(tm, "total_s", end - c->t0);
        pthread_mutex_lock(&S->log_lock);
        cli_json_emit(j);
        pthread_mutex_unlock(&S->log_lock);
    }
    if (c->counted) {
        pthread_mutex_lock(&S->lock);
        S->served++;
        S->failed += !ok || c->status >= 400;
        if (--S->active == 0)
            pthread_cond_broadcast(&S->idle);
        pthread_mutex_unlock(&S->lock);
    }
    if (c->have_req)
        serve_req_free(&c->req);
    airllm_tok_decoder_free(c->dec);
    free(c->br.ids);
    free(c->body);
    free(c->text);
    free(c->pend);
    free(c);
}
