/* airllm-run's inputs read from files (rt_prompts.c): a prompt file or
 * stdin, --ids lists, --messages conversations. Nothing here prints. */
#ifndef AIRLLM_RT_PROMPTS_H
#define AIRLLM_RT_PROMPTS_H

#include <stddef.h>
#include <stdint.h>

#include <cjson/cJSON.h>

#include "airllm_err.h"
#include "rt_chat.h"

/* Largest prompt file, --prompts file or --messages file read. */
#define RT_PROMPT_FILE_MAX (64u << 20)

/* The text of path ("-": stdin), NUL-terminated, CRLF line ends turned into
 * LF (a file written on Windows reads as the same prompt). A NUL byte is an
 * error naming its line: the text is used as a C string. */
int rt_read_text(const char *path, char **out, size_t *len, airllm_err *err);
/* "1,2,3" to ids; what names the list in messages (e.g. "--ids"). */
int rt_parse_ids(const char *s, const char *what, int32_t **ids, size_t *n, airllm_err *err);
/* A --messages file: a JSON array of {"role": "system"|"user"|"assistant",
 * "content": "...", optionally "metadata": "..." (ChatGLM3)}, as
 * transformers' apply_chat_template takes it. *msgs points into *root
 * (cJSON_Delete it after use, and free *msgs). */
int rt_messages_load(const char *path, cJSON **root, rt_chat_msg **msgs, size_t *n,
                     airllm_err *err);
/* The same from len bytes in memory (named name in messages). */
int rt_messages_parse(const char *text, size_t len, const char *name, cJSON **root,
                      rt_chat_msg **msgs, size_t *n, airllm_err *err);

#endif
