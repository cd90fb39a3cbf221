/* tiktoken ranks file reader (Qwen v1's qwen.tiktoken) and byte-level BPE
 * encoder/decoder, matching the `tiktoken` package id for id.
 *
 * The file is text, one "BASE64 RANK" line per token (standard base64 with
 * padding, rank a decimal integer; blank lines skipped), as tiktoken's
 * load_tiktoken_bpe and Qwen's _load_tiktoken_bpe read it. The token's id is
 * its rank. It is parsed from memory; every line is checked (ASCII only,
 * exactly two fields, valid base64, rank in range, no token or rank twice),
 * and errors name the file and the line.
 *
 * Encoding: special tokens are found in the text first (every one is
 * allowed, as Qwen's tokenizer passes allowed_special="all"), the text
 * between them is split by Qwen's pre-tokenizer regex
 *   (?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}|
 *    ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+
 * (matched by hand, with lib/airllm_unicode_tables.c's classes), and each
 * piece is merged by tiktoken's rule: the adjacent pair whose concatenated
 * bytes have the lowest rank, leftmost on ties, until no pair has a rank.
 * Qwen's own NFC normalization is not applied here (airllm_tokenizer does it).
 * Like the rest of lib/, nothing here prints or exits. */
#ifndef AIRLLM_TIKTOKEN_H
#define AIRLLM_TIKTOKEN_H

#include <stddef.h>
#include <stdint.h>

#include "airllm_err.h"

typedef struct airllm_tiktoken airllm_tiktoken;

/* Largest ranks file accepted (qwen.tiktoken is 2.5 MB). */
#define AIRLLM_TIKTOKEN_MAX_FILE (64u << 20)

/* name prefixes error messages (NULL: "qwen.tiktoken"). */
int airllm_tiktoken_load_buffer(const char *data, size_t len, const char *name,
                                airllm_tiktoken **out, airllm_err *err);
int airllm_tiktoken_load(const char *path, airllm_tiktoken **out, airllm_err *err);
void airllm_tiktoken_free(airllm_tiktoken *t);

/* tiktoken's encode(text, allowed_special=set(), disallowed_special=()):
 * the text of a special token is ordinary text. */
int airllm_tiktoken_encode_ordinary(const airllm_tiktoken *t, const char *text, size_t len,
                                    int32_t **ids, size_t *n, airllm_err *err);

/* Adds a special token (UTF-8 text, matched in encoded text) with its id,
 * which must not be a rank or another special's. */
int airllm_tiktoken_add_special(airllm_tiktoken *t, const char *s, size_t len, int32_t id,
                                airllm_err *err);
/* Qwen v1's specials (tokenization_qwen.py): <|endoftext|>, <|im_start|>,
 * <|im_end|>, <|extra_0|> .. <|extra_204|>, ids start, start+1, ... (Qwen
 * hard-codes 151643, the number of ranks in qwen.tiktoken). */
int airllm_tiktoken_add_qwen_specials(airllm_tiktoken *t, int32_t start, airllm_err *err);

/* Number of ranks in the file. */
size_t airllm_tiktoken_n_ranks(const airllm_tiktoken *t);
/* One more than the largest id (ranks and specials). */
size_t airllm_tiktoken_vocab_size(const airllm_tiktoken *t);
/* The bytes of an id (raw bytes, not necessarily UTF-8) or NULL if unused;
 * *special is set to whether it is a special token. */
const uint8_t *airllm_tiktoken_token(const airllm_tiktoken *t, int32_t id, size_t *len,
                                     int *special);
/* The id of a token's bytes (a rank or a special), or -1. */
int32_t airllm_tiktoken_id(const airllm_tiktoken *t, const void *s, size_t len);

/* Encodes UTF-8 text (invalid UTF-8 is an error), as tiktoken's
 * encode(text, allowed_special="all"). *ids is malloc'ed. */
int airllm_tiktoken_encode(const airllm_tiktoken *t, const char *text, size_t len, int32_t **ids,
                           size_t *n, airllm_err *err);
/* Concatenated token bytes decoded as Python's bytes.decode("utf-8",
 * errors="replace") does (each maximal invalid subsequence becomes one
 * U+FFFD). Ids that are not tokens are skipped. *text is malloc'ed and
 * NUL-terminated. */
int airllm_tiktoken_decode(const airllm_tiktoken *t, const int32_t *ids, size_t n, char **text,
                           size_t *len, airllm_err *err);

#endif
