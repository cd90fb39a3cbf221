/* libFuzzer target: the JSON scanner (lib/airllm_jscan.c) must never crash
 * or read out of bounds, whatever the bytes. Differential checks against
 * cJSON, which is more lenient: what the scanner accepts cJSON accepts too,
 * and every string the walk decodes fits the bound the header promises. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "airllm_jscan.h"

static void walk(const uint8_t *b, const airllm_js_val *v, int depth)
{
    if (depth > AIRLLM_JS_MAX_DEPTH)
        abort(); /* the check bounds nesting */
    if (v->kind == AIRLLM_JS_STRING) {
        size_t cap = v->end - v->start - 1, n;
        char *s = malloc(cap);
        bool nul;
        airllm_js_str(b, v, s, &n, &nul);
        if (n >= cap || s[n] != '\0' || (!nul && strlen(s) != n))
            abort();
        free(s);
        return;
    }
    if (v->kind == AIRLLM_JS_NUMBER) {
        uint64_t u;
        (void)airllm_js_uint(b, v, UINT64_C(1) << 53, &u);
        (void)airllm_js_double(b, v);
        return;
    }
    airllm_js_iter it;
    airllm_js_val k, e;
    int r;
    airllm_js_iter_init(&it, b, v);
    while ((r = airllm_js_iter_next(&it, &k, &e)) > 0) {
        if (v->kind == AIRLLM_JS_OBJECT)
            walk(b, &k, depth + 1);
        walk(b, &e, depth + 1);
    }
    if (r < 0)
        abort(); /* a checked document never loses the iterator */
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    size_t end;
    airllm_js_error e;
    if (airllm_js_check(data, size, &end, &e) < 0) {
        if (e.at > size)
            abort();
        return 0;
    }
    if (end > size)
        abort();
    cJSON *j = cJSON_ParseWithLength((const char *)data, end);
    if (!j)
        abort();
    cJSON_Delete(j);
    airllm_js_val root;
    if (airllm_js_value_at(data, end, 0, &root) < 0 || root.end != end)
        abort();
    walk(data, &root, 0);
    return 0;
}
