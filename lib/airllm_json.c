#include "airllm_json.h"

#include <stdlib.h>

#include "airllm_bytes.h"
#include "airllm_io.h"

int airllm_json_parse_object(const char *text, size_t len, const char *name, cJSON **out,
                             airllm_err *err)
{
    *out = NULL;
    if (airllm_utf8_check((const uint8_t *)text, len))
        return airllm_errf(err, "%s: not valid UTF-8", name);
    const char *end = NULL;
    cJSON *j = cJSON_ParseWithLengthOpts(text, len, &end, 0);
    if (!j)
        return airllm_errf(err, "%s: not valid JSON (near byte %zu)", name,
                           end ? (size_t)(end - text) : (size_t)0);
    if (!cJSON_IsObject(j)) {
        cJSON_Delete(j);
        return airllm_errf(err, "%s: not a JSON object", name);
    }
    *out = j;
    return 0;
}

int airllm_json_load_object(const char *path, size_t max, cJSON **out, airllm_err *err)
{
    char *text;
    size_t len;
    *out = NULL;
    if (airllm_read_small_file(path, max, &text, &len, err))
        return -1;
    int rc = airllm_json_parse_object(text, len, path, out, err);
    free(text);
    return rc;
}
