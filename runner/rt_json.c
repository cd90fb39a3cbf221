/* airllm-run's --json lines: see rt_json.h and docs/json.md. */
#include <cjson/cJSON.h>

#include "cli.h"
#include "rt_cuda.h"
#include "rt_json.h"

const char *rt_finish_reason(const rt_config *c, const airllm_tokenizer *tok,
                             const rt_chat *chat, int32_t id)
{
    for (int i = 0; i < c->n_eos; i++)
        if (c->eos_ids[i] == id)
            return "eos";
    if (tok && airllm_tok_eos(tok) == id)
        return "eos";
    return chat && rt_chat_is_stop(chat, id) ? "stop" : NULL;
}

cJSON *rt_json_result(size_t index, const rt_seq *s, const char *text,
                      const char *finish_reason)
{
    cJSON *r = cli_json_new("result", "ok");
    cJSON_AddNumberToObject(r, "index", (double)index);
    cJSON_AddNumberToObject(r, "prompt_tokens", (double)s->n_prompt);
    cJSON *gi = cJSON_AddArrayToObject(r, "generated_ids");
    for (size_t k = s->n_prompt; k < s->n_ids; k++)
        cJSON_AddItemToArray(gi, cJSON_CreateNumber(s->ids[k]));
    cJSON_AddNumberToObject(r, "tokens_generated", (double)(s->n_ids - s->n_prompt));
    if (text)
        cJSON_AddStringToObject(r, "text", text);
    cJSON_AddStringToObject(r, "finish_reason", finish_reason);
    return r;
}

void rt_json_summary(const char *status, const rt_model *m, const rt_json_totals *t)
{
    cJSON *j = cli_json_new("summary", status);
    cJSON_AddStringToObject(j, "out_dir", m->store.dir);
    cJSON_AddNumberToObject(j, "sequences", (double)t->sequences);
    cJSON_AddNumberToObject(j, "steps", (double)t->steps);
    cJSON_AddNumberToObject(j, "tokens_generated", (double)t->tokens_generated);
    cJSON_AddNumberToObject(j, "tokens_per_second", t->tokens_per_second);
    cJSON_AddNumberToObject(j, "bytes_read", (double)m->store.bytes_read);
    cJSON_AddNumberToObject(j, "resident_bytes", (double)m->store.resident_bytes);
    /* seconds only: every field of timings is a duration */
    cJSON *tm = cJSON_AddObjectToObject(j, "timings");
    cJSON_AddNumberToObject(tm, "total_s", t->total_s);
    cJSON_AddNumberToObject(tm, "load_s", t->load_s);
    cJSON_AddNumberToObject(tm, "prefill_s", t->prefill_s);
    cJSON_AddNumberToObject(tm, "generate_s", t->generate_s);
    cJSON_AddNumberToObject(tm, "read_s", m->store.read_s);
    cJSON_AddNumberToObject(tm, "decode_s", m->store.decode_s);
    cJSON_AddNumberToObject(tm, "io_wait_s", m->store.wait_s);
    if (m->gpu) {
        rt_cuda_info gi;
        rt_cuda_get_info(m->gpu, &gi);
        cJSON *g = cJSON_AddObjectToObject(j, "gpu");
        cJSON_AddStringToObject(g, "device", gi.device);
        cJSON_AddBoolToObject(g, "unified", gi.unified);
        cJSON_AddNumberToObject(g, "budget", (double)gi.budget);
        cJSON_AddNumberToObject(g, "held_bytes", (double)gi.held_bytes);
        cJSON_AddNumberToObject(g, "stream_buffer_bytes", (double)gi.stream_bytes);
        cJSON_AddNumberToObject(g, "units_held", (double)gi.n_held);
        cJSON_AddNumberToObject(g, "units_streamed", (double)gi.n_streamed);
        cJSON_AddNumberToObject(g, "kv_bytes", (double)gi.kv_bytes);
        cJSON_AddNumberToObject(g, "work_bytes", (double)gi.work_bytes);
        cJSON_AddNumberToObject(g, "peak_bytes", (double)gi.peak_bytes);
        cJSON_AddNumberToObject(g, "peak_device_used", (double)gi.peak_used);
        cJSON_AddNumberToObject(g, "h2d_bytes", (double)gi.h2d_bytes);
        cJSON_AddNumberToObject(g, "h2d_s", gi.h2d_s);
    }
    cli_json_emit(j);
}
