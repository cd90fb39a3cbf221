/* Reading a small JSON document that must be one object (config.json,
 * tokenizer_config.json, an index): the checks every reader of such a file
 * applies, in one place. The parsed tree is cJSON's. */
#ifndef AIRLLM_JSON_H
#define AIRLLM_JSON_H

#include <stddef.h>

#include <cjson/cJSON.h>

#include "airllm_err.h"

/* Parses len bytes (not NUL-terminated) as one JSON object: valid UTF-8,
 * valid JSON, an object at the top. Messages start with name. On success
 * *out is the tree (cJSON_Delete it). */
int airllm_json_parse_object(const char *text, size_t len, const char *name, cJSON **out,
                             airllm_err *err);
/* Reads path (at most max bytes) and parses it as above, naming the path. */
int airllm_json_load_object(const char *path, size_t max, cJSON **out, airllm_err *err);

#endif
