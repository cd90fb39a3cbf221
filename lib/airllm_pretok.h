/* Internal to lib/ (airllm_tok_norm.c defines it, airllm_tiktoken.c uses
 * it too): the pre-tokenizer split of the GPT-4 / Llama 3 family. Not an
 * API. */
#ifndef AIRLLM_PRETOK_H
#define AIRLLM_PRETOK_H

#include <stddef.h>
#include <stdint.h>

/* The end of the leftmost-first match, at byte i of the valid UTF-8
 * s[0, n), of
 *   (?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,D}|
 *    ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+
 * with D = max_digits: 3 for Llama 3 / GPT-4, 1 for Qwen (tokenizer.json
 * of Qwen2, and Qwen v1's qwen.tiktoken). Every position matches some
 * branch, so the result is > i. */
size_t airllm_pretok_llama3(const uint8_t *s, size_t n, size_t i, size_t max_digits);

#endif
