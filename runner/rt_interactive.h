/* airllm-run -i: a multi-turn chat on the terminal (rt_interactive.c). This
 * is the tool's user interface: unlike the rest of runner/, it reads stdin
 * and writes stdout/stderr. */
#ifndef AIRLLM_RT_INTERACTIVE_H
#define AIRLLM_RT_INTERACTIVE_H

#include <stdbool.h>
#include <stdio.h>

#include "rt.h"
#include "rt_chat.h"
#include "rt_json.h"

typedef struct {
    const char *system; /* --system, or NULL: the template's default */
    long max_new;       /* tokens per answer at most */
    size_t ctx;         /* positions of the KV cache kept across turns */
    bool json;          /* one JSON line per answer instead of streamed text */
    rt_json_totals *totals; /* if not NULL: answers, steps, tokens and time generating
                               are added to it, for the --json summary */
} rt_interactive_opts;

/* Reads user lines from in until EOF or /exit; /reset starts a new
 * conversation. Each turn re-renders the whole conversation with the
 * template, keeps the KV cache of the longest prefix it shares with what the
 * cache holds (all of the past turns, unless the answer re-tokenizes
 * differently) and prefills only the rest, so an answer is the one a
 * single-shot run of the conversation gives. SIGINT stops the answer being
 * generated. Returns 0, or -1 with err on a failure of the model. */
int rt_interactive(rt_model *m, const airllm_tokenizer *tok, const rt_chat *chat,
                   rt_sampler *smp, const rt_interactive_opts *o, FILE *in, airllm_err *err);

#endif
