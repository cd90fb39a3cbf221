/* Chat templates and the family's prompt prefixes (rt_chat.c), sampling
 * (rt_sample.c) and the interactive loop (rt_interactive.c) of airllm-run.
 *
 * A template turns a conversation (system, user, assistant, ... user) into
 * the prompt ids the family's own code gives it, ending where the assistant
 * answers, and says which ids end an answer. It is chosen from the
 * checkpoint's files (config.json model_type, _name_or_path,
 * tokenizer_config.json chat_template, generation_config.json) without
 * running the model, so it can be tested on tokenizer fixtures alone.
 * Nothing here prints. */
#ifndef AIRLLM_RT_CHAT_H
#define AIRLLM_RT_CHAT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "airllm_err.h"
#include "airllm_tokenizer.h"

typedef enum {
    RT_CHAT_CHATML,    /* <|im_start|>role\n...<|im_end|>\n (Qwen2, SmolLM2; HF template) */
    RT_CHAT_LLAMA3,    /* <|start_header_id|>role<|end_header_id|>\n\n...<|eot_id|> */
    RT_CHAT_LLAMA2,    /* <s>[INST] ... [/INST] answer </s> (Llama 2, Mistral) */
    RT_CHAT_QWEN,      /* Qwen v1 make_context: ChatML pieces tokenized one by one */
    RT_CHAT_CHATGLM3,  /* [gMASK]sop<|user|>\n...<|assistant|> (build_chat_input) */
    RT_CHAT_CHATGLM2,  /* [gMASK]sop [Round 1]\n\n问：...\n\n答： (build_prompt) */
    RT_CHAT_BAICHUAN,  /* user_token_id ... assistant_token_id (build_chat_input) */
    RT_CHAT_INTERNLM,  /* <s><|User|>:...<eoh>\n<|Bot|>: (build_inputs) */
    RT_CHAT_INTERNLM2, /* <s><|im_start|>system\n...: ChatML with BOS (build_inputs) */
} rt_chat_kind;

/* One message. role: "system", "user" or "assistant". metadata: ChatGLM3's
 * text after the role token (NULL: ""). */
typedef struct {
    const char *role, *content, *metadata;
} rt_chat_msg;

#define RT_CHAT_MAX_STOP 8

typedef struct {
    rt_chat_kind kind;
    /* The system prompt used when a conversation has none (malloc'ed, NULL:
     * none): Qwen's and InternLM2's chat() defaults, or the one a ChatML
     * chat_template writes in (SmolLM2). */
    char *default_system;
    /* Ids that end an answer, besides the model's EOS. */
    int32_t stop[RT_CHAT_MAX_STOP];
    int n_stop;
    /* Family ids the templates use; -1 when the template does not. */
    int32_t bos, eos, im_start, im_end, gmask, sop, role_system, role_user, role_assistant;
    int32_t user_token, assistant_token; /* Baichuan */
    int add_bos;                         /* the tokenizer's add_bos_token */
    char bos_text[32], eos_text[32];     /* token strings, for text templates */
} rt_chat;

/* Picks the template of the checkpoint in dir (see the top of this file;
 * name, when not NULL, forces one: chatml, llama3, llama2, qwen, chatglm3,
 * chatglm2, baichuan, internlm, internlm2) and resolves its ids in tok. An
 * id the template needs that the tokenizer lacks is an error naming it. */
int rt_chat_open(rt_chat *c, const char *dir, const char *name, const airllm_tokenizer *tok,
                 airllm_err *err);
void rt_chat_free(rt_chat *c);
const char *rt_chat_name(rt_chat_kind k);

/* The prompt of a conversation: msgs[0] may be the system message (else the
 * default system prompt is used, where the family has one), then user and
 * assistant messages in turn, the last one the user's. *ids is malloc'ed. */
int rt_chat_encode(const rt_chat *c, const airllm_tokenizer *tok, const rt_chat_msg *msgs,
                   size_t n, int32_t **ids, size_t *n_ids, airllm_err *err);
/* A plain (not chat) prompt with the family's prefix: ChatGLM's [gMASK] sop,
 * else BOS when the tokenizer adds one. */
int rt_chat_encode_plain(const rt_chat *c, const airllm_tokenizer *tok, const char *text,
                         size_t len, int32_t **ids, size_t *n_ids, airllm_err *err);
/* The system prompt a ChatML chat_template string writes when a
 * conversation has none (malloc'ed), or NULL. */
char *rt_chat_template_system(const char *chat_template);
/* Whether id ends an answer under this template. */
bool rt_chat_is_stop(const rt_chat *c, int32_t id);
/* An answer as the family's chat() keeps it in the history: ChatGLM3 splits
 * the metadata line off and strips the content (process_response); the
 * others keep the decoded text. *content and *metadata point into text,
 * which is modified in place. */
void rt_chat_answer(const rt_chat *c, char *text, const char **content, const char **metadata);

/* ---- sampling (rt_sample.c) ---- */

typedef struct {
    double temperature; /* 0: greedy */
    long top_k;         /* 0: all */
    double top_p;       /* 1: all */
    uint64_t rng;       /* splitmix64 state, from --seed */
    void *buf;          /* vocab candidates, rt_sampler_init */
    /* --repeat-penalty, as llama.cpp: each distinct token among the last
     * repeat_last_n of the context has its logit divided by the penalty
     * when positive, multiplied when negative. 0 or 1: off. */
    double repeat_penalty;
    size_t repeat_last_n;
    uint8_t *seen; /* [vocab / 8 + 1] bits, all clear between calls */
} rt_sampler;

int rt_sampler_init(rt_sampler *s, int vocab, airllm_err *err);
void rt_sampler_free(rt_sampler *s);
int32_t rt_sample(rt_sampler *s, const float *logits, int vocab);
/* Applies s's repeat penalty to logits [vocab] in place, for the context
 * ids [n] (prompt and generated so far); ids outside the vocabulary are
 * ignored. */
void rt_repeat_penalty(rt_sampler *s, float *logits, int vocab, const int32_t *ids, size_t n);

#endif
