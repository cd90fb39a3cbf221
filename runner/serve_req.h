/* airllm-serve's request bodies and replies as bytes (serve_req.c): the
 * OpenAI request parser, error objects, and the JSON of replies and
 * server-sent-event chunks. No model and no sockets here, so the fuzz
 * target (tests/fuzz/fuzz_serve_req.c) drives it with arbitrary bytes.
 * Nothing here prints. */
#ifndef AIRLLM_SERVE_REQ_H
#define AIRLLM_SERVE_REQ_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <cjson/cJSON.h>

#include "rt_chat.h"

#define SERVE_MAX_STOP 4       /* OpenAI's limit on "stop" strings */
#define SERVE_STOP_LEN 256     /* bytes of one stop string */
#define SERVE_MAX_MESSAGES 256
#define SERVE_MAX_PROMPT_IDS 65536

typedef enum { SERVE_CHAT, SERVE_COMPLETION } serve_kind;

/* Defaults for fields a request leaves out (the server's options). */
typedef struct {
    long max_tokens;
    double temperature, top_p;
    long top_k;
    uint64_t seed;
} serve_defaults;

typedef struct {
    serve_kind kind;
    cJSON *root;            /* the parsed body; strings below point into it */
    char model[128];
    /* chat: messages; completion: prompt text or prompt ids */
    rt_chat_msg *msgs;
    size_t n_msgs;
    const char *prompt;
    size_t prompt_len;
    int32_t *prompt_ids;    /* a completion's prompt given as token ids */
    size_t n_prompt_ids;
    long max_tokens;        /* -1: not given (the server's default) */
    double temperature, top_p;
    long top_k;
    uint64_t seed;
    const char *stop[SERVE_MAX_STOP];
    size_t n_stop;
    bool stream, include_usage;
} serve_req;

/* An HTTP status and the OpenAI error object's fields. */
typedef struct {
    int status;
    const char *type;  /* invalid_request_error, ... */
    const char *code;  /* NULL, or e.g. context_length_exceeded */
    char param[64];
    char message[256];
} serve_error;

/* Whether len bytes are well-formed UTF-8 (no overlongs, surrogates, or
 * code points past U+10FFFF). */
bool serve_utf8_valid(const char *s, size_t len);

/* Parses a request body of len bytes (not NUL-terminated) for kind: 0 and
 * *r (free with serve_req_free), or -1 and *e (status 400; *r holds
 * nothing then). Unknown fields
 * are ignored; known fields of the wrong type or out of range are refused
 * naming the field. */
int serve_req_parse(serve_kind kind, const char *body, size_t len, const serve_defaults *d,
                    serve_req *r, serve_error *e);
void serve_req_free(serve_req *r);

/* Sets *e and returns -1. */
int serve_errorf(serve_error *e, int status, const char *type, const char *param,
                 const char *fmt, ...) __attribute__((format(printf, 5, 6)));
/* {"error": {"message", "type", "param", "code"}}: malloc'ed. */
char *serve_error_json(const serve_error *e);

/* Where the first of the stop strings starts in text[0, len), or len. */
size_t serve_stop_find(const serve_req *r, const char *text, size_t len);
/* Bytes at the end of text[0, len) that could start a stop string, held
 * back from a stream until the next token tells. */
size_t serve_stop_holdback(const serve_req *r, const char *text, size_t len);

/* A whole reply (stream false), malloc'ed JSON. */
char *serve_reply_json(const serve_req *r, const char *id, long created, const char *model,
                       const char *text, size_t len, const char *finish, size_t n_prompt,
                       size_t n_completion);
/* One server-sent event "data: {...}\n\n" of a stream, malloc'ed: a text
 * delta (first: with the assistant role), or, with finish, the last chunk;
 * usage (n_prompt, n_completion) only when usage is true (its own chunk). */
char *serve_sse_chunk(const serve_req *r, const char *id, long created, const char *model,
                      const char *text, size_t len, bool first, const char *finish, bool usage,
                      size_t n_prompt, size_t n_completion, size_t *out_len);

#endif
