/* Reading airllm-run's prompt inputs: files or stdin, id lists, JSON
 * conversations. */
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "airllm_io.h"
#include "airllm_json.h"
#include "rt_prompts.h"

static int read_stream(FILE *f, const char *name, char **out, size_t *len, airllm_err *err)
{
    size_t cap = 1 << 16, n = 0;
    char *b = malloc(cap);
    while (b) {
        if (n + 1 == cap) {
            if (cap >= RT_PROMPT_FILE_MAX) {
                free(b);
                return airllm_errf(err, "%s: more than %u MiB", name, RT_PROMPT_FILE_MAX >> 20);
            }
            char *nb = realloc(b, cap * 2);
            if (!nb)
                break;
            b = nb;
            cap *= 2;
        }
        size_t got = fread(b + n, 1, cap - 1 - n, f);
        n += got;
        if (got == 0) {
            if (ferror(f)) {
                free(b);
                return airllm_errf(err, "%s: read error: %s", name, strerror(errno));
            }
            b[n] = '\0';
            *out = b;
            *len = n;
            return 0;
        }
    }
    free(b);
    return airllm_errf(err, "out of memory");
}

int rt_read_text(const char *path, char **out, size_t *len, airllm_err *err)
{
    char *t;
    size_t n;
    const char *name = strcmp(path, "-") == 0 ? "(stdin)" : path;
    if (strcmp(path, "-") == 0 ? read_stream(stdin, name, &t, &n, err)
                               : airllm_read_small_file(path, RT_PROMPT_FILE_MAX, &t, &n, err))
        return -1;
    /* The text is used as a C string: a NUL would silently end it there. */
    const char *nul = memchr(t, '\0', n);
    if (nul) {
        size_t line = 1;
        for (const char *q = t; q < nul; q++)
            line += *q == '\n';
        free(t);
        return airllm_errf(err, "%s: line %zu holds a NUL byte (prompts are text)", name, line);
    }
    size_t o = 0;
    for (size_t i = 0; i < n; i++)
        if (!(t[i] == '\r' && i + 1 < n && t[i + 1] == '\n'))
            t[o++] = t[i];
    t[o] = '\0';
    *out = t;
    *len = o;
    return 0;
}

int rt_parse_ids(const char *s, const char *what, int32_t **ids, size_t *n, airllm_err *err)
{
    size_t cap = 16, k = 0;
    int32_t *v = malloc(cap * sizeof *v);
    const char *p = s;
    while (v && *p) {
        char *end;
        errno = 0;
        long x = strtol(p, &end, 10);
        if (end == p || errno || x < 0 || x > INT32_MAX) {
            free(v);
            return airllm_errf(err, "%s: bad id list '%s'", what, s);
        }
        if (k == cap) {
            int32_t *nv = realloc(v, (cap *= 2) * sizeof *v);
            if (!nv) {
                free(v);
                v = NULL;
                break;
            }
            v = nv;
        }
        v[k++] = (int32_t)x;
        p = end;
        if (*p == ',')
            p++;
        else if (*p) {
            free(v);
            return airllm_errf(err, "%s: bad id list '%s'", what, s);
        }
    }
    if (!v)
        return airllm_errf(err, "out of memory");
    *ids = v;
    *n = k;
    return 0;
}

int rt_messages_load(const char *path, cJSON **root, rt_chat_msg **msgs, size_t *n,
                     airllm_err *err)
{
    char *t;
    size_t len;
    *root = NULL;
    *msgs = NULL;
    *n = 0;
    if (rt_read_text(path, &t, &len, err))
        return -1;
    int rc = rt_messages_parse(t, len, strcmp(path, "-") == 0 ? "(stdin)" : path, root, msgs, n,
                               err);
    free(t);
    return rc;
}

int rt_messages_parse(const char *t, size_t len, const char *name, cJSON **root,
                      rt_chat_msg **msgs, size_t *n, airllm_err *err)
{
    *root = NULL;
    *msgs = NULL;
    *n = 0;
    const char *end = NULL;
    cJSON *r = cJSON_ParseWithLengthOpts(t, len, &end, 0);
    while (r && end && end < t + len && strchr(" \t\n\r", *end))
        end++;
    bool trailing = r && end && end < t + len;
    if (!r || !cJSON_IsArray(r) || trailing) {
        cJSON_Delete(r);
        return airllm_errf(err, "%s: not a JSON array of {\"role\": ..., \"content\": ...} "
                                "messages",
                           name);
    }
    size_t cnt = (size_t)cJSON_GetArraySize(r), i = 0;
    rt_chat_msg *m = calloc(cnt ? cnt : 1, sizeof *m);
    if (!m) {
        cJSON_Delete(r);
        return airllm_errf(err, "out of memory");
    }
    const cJSON *e;
    cJSON_ArrayForEach(e, r)
    {
        const cJSON *role = cJSON_GetObjectItemCaseSensitive(e, "role");
        const cJSON *content = cJSON_GetObjectItemCaseSensitive(e, "content");
        const cJSON *meta = cJSON_GetObjectItemCaseSensitive(e, "metadata");
        if (!cJSON_IsString(role) || !cJSON_IsString(content) ||
            (meta && !cJSON_IsString(meta))) {
            free(m);
            cJSON_Delete(r);
            return airllm_errf(err, "%s: message %zu needs string \"role\" and \"content\"",
                               name, i + 1);
        }
        m[i].role = role->valuestring;
        m[i].content = content->valuestring;
        m[i].metadata = meta ? meta->valuestring : NULL;
        i++;
    }
    *root = r;
    *msgs = m;
    *n = cnt;
    return 0;
}
