/* airllm-run's --json lines (rt_json.c; the fields are in docs/json.md):
 * a "result" line for each sequence as it finishes (batch) or each answer
 * (-i), then one "summary" line. Like rt_interactive.c this is the tool's
 * user interface: it writes stdout. */
#ifndef AIRLLM_RT_JSON_H
#define AIRLLM_RT_JSON_H

#include <stdbool.h>
#include <stddef.h>

#include "airllm_tokenizer.h"
#include "rt.h"
#include "rt_chat.h"

struct cJSON;

/* Whether id ends a sequence, and why: "eos" (the model's end-of-sequence
 * token: config.json's eos_token_id or the tokenizer's), "stop" (a stop
 * token of the chat template, when chat is not NULL), or NULL. */
const char *rt_finish_reason(const rt_config *c, const airllm_tokenizer *tok,
                             const rt_chat *chat, int32_t id);

/* A result object for sequence s: index, prompt_tokens, generated_ids,
 * tokens_generated, text (when text is not NULL), finish_reason. The caller
 * adds its mode's fields and prints it with cli_json_emit. */
struct cJSON *rt_json_result(size_t index, const rt_seq *s, const char *text,
                             const char *finish_reason);

typedef struct {
    size_t sequences, steps, tokens_generated;
    double tokens_per_second;
    double total_s, load_s, prefill_s, generate_s;
} rt_json_totals;

/* Prints the summary line: status "ok" or "interrupted", the totals, the
 * store's I/O figures and, with a GPU, the device's. */
void rt_json_summary(const char *status, const rt_model *m, const rt_json_totals *t);

#endif
