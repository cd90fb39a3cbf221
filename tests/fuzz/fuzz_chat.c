/* libFuzzer target: airllm-run's chat inputs must never crash, leak or read
 * out of bounds, whatever the bytes: a --messages file (rt_messages_parse)
 * and a tokenizer_config.json chat_template string searched for its default
 * system prompt (rt_chat_template_system).
 *
 * Input: the first byte picks the reader, the rest is its input. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "rt_chat.h"
#include "rt_prompts.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0)
        return 0;
    const char *text = (const char *)data + 1;
    size_t len = size - 1;
    airllm_err err;
    if (data[0] & 1) {
        cJSON *root;
        rt_chat_msg *m;
        size_t n;
        if (rt_messages_parse(text, len, "fuzz", &root, &m, &n, &err) == 0) {
            size_t sum = 0;
            for (size_t i = 0; i < n; i++)
                sum += strlen(m[i].role) + strlen(m[i].content) +
                       (m[i].metadata ? strlen(m[i].metadata) : 0);
            (void)sum;
            free(m);
            cJSON_Delete(root);
        }
    } else {
        char *s = malloc(len + 1);
        if (!s)
            return 0;
        memcpy(s, text, len);
        s[len] = '\0';
        free(rt_chat_template_system(s));
        free(s);
    }
    return 0;
}
