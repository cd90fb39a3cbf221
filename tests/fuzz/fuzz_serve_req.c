/* libFuzzer target: airllm-serve's request parser and SSE writer must never
 * crash, leak or read out of bounds, whatever the bytes, and what they write
 * must hold its shape: an event is "data: " + one line of JSON + a blank
 * line, whose text reads back as the text given (when that is valid UTF-8
 * without NULs), and a stop string's position and hold-back are in range.
 *
 * Input: the first byte picks chat or completion; the rest is the body. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "serve_req.h"

static void check_event(const serve_req *r, const char *text, size_t len)
{
    size_t n = 0;
    char *ev = serve_sse_chunk(r, "id-1", 1, "model", text, len, true, NULL, false, 1, 2, &n);
    if (!ev)
        return;
    if (n < 8 || memcmp(ev, "data: ", 6) || memcmp(ev + n - 2, "\n\n", 2) ||
        memchr(ev, '\n', n - 2) || strlen(ev) != n)
        abort();
    bool plain = serve_utf8_valid(text, len) && !memchr(text, 0, len);
    ev[n - 2] = 0;
    cJSON *j = cJSON_Parse(ev + 6);
    if (!j)
        abort();
    const cJSON *c = cJSON_GetArrayItem(cJSON_GetObjectItem(j, "choices"), 0);
    const cJSON *t = r->kind == SERVE_CHAT
                         ? cJSON_GetObjectItem(cJSON_GetObjectItem(c, "delta"), "content")
                         : cJSON_GetObjectItem(c, "text");
    if (plain && (!cJSON_IsString(t) || strlen(t->valuestring) != len ||
                  memcmp(t->valuestring, text, len)))
        abort();
    cJSON_Delete(j);
    free(ev);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0)
        return 0;
    serve_kind kind = data[0] & 1 ? SERVE_CHAT : SERVE_COMPLETION;
    const char *body = (const char *)data + 1;
    size_t len = size - 1;
    serve_defaults d = {16, 0, 1, 0, 0};
    serve_req r;
    serve_error e;
    if (serve_req_parse(kind, body, len, &d, &r, &e) == 0) {
        size_t at = serve_stop_find(&r, body, len);
        size_t hold = serve_stop_holdback(&r, body, len);
        if (at > len || hold > len || (r.n_stop == 0 && (at != len || hold != 0)))
            abort();
        check_event(&r, body, len);
        free(serve_reply_json(&r, "id", 1, "m", body, len, "stop", 3, 4));
        serve_req_free(&r);
    } else {
        if (e.status < 400 || e.status > 599 || !e.message[0])
            abort();
        free(serve_error_json(&e));
        /* the writer on a request parsed from fixed good input */
        serve_req g;
        static const char good[] = "{\"prompt\":\"x\",\"stop\":[\"ab\",\"b\"]}";
        if (serve_req_parse(SERVE_COMPLETION, good, sizeof good - 1, &d, &g, &e))
            abort();
        check_event(&g, body, len);
        size_t at = serve_stop_find(&g, body, len), hold = serve_stop_holdback(&g, body, len);
        if (at > len || hold > 1 || (at < len && memcmp(body + at, "b", 1) && memcmp(body + at, "ab", 2)))
            abort();
        serve_req_free(&g);
    }
    return 0;
}
