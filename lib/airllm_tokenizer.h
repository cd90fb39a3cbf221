/* The tokenizer for the runner: reads a Hugging Face tokenizer.json and
 * encodes text to ids and decodes ids to text exactly as the `tokenizers`
 * library does, for the BPE tokenizers that LLMs use:
 *
 * - SentencePiece-style BPE (Llama 1/2, Mistral, TinyLlama): spaces become
 *   "▁" through the normalizer (Prepend + Replace) or the Metaspace
 *   pre-tokenizer, characters outside the vocab fall back to <0xAB> byte
 *   tokens.
 * - GPT-2 byte-level BPE (Llama 3, Qwen2, SmolLM2, GPT-2): the ByteLevel
 *   pre-tokenizer's byte-to-unicode map, with the GPT-2 or Llama 3 / Qwen2
 *   split regex (implemented by hand, not with a regex library) and the
 *   Digits pre-tokenizer.
 *
 * Anything else in the file (another model type, a normalizer, pre-tokenizer,
 * decoder or post-processor this code does not implement, an unknown split
 * regex) is refused at load time with a message naming it, rather than
 * encoding differently from `tokenizers`.
 *
 * The file is not trusted: types, id ranges, duplicates and merges are
 * checked, and errors name the file and the problem. Like the rest of lib/,
 * nothing here prints or exits. */
#ifndef AIRLLM_TOKENIZER_H
#define AIRLLM_TOKENIZER_H

#include <stddef.h>
#include <stdint.h>

#include "airllm_err.h"

typedef struct airllm_tokenizer airllm_tokenizer;

/* Largest tokenizer.json accepted (real ones are 2-35 MB). */
#define AIRLLM_TOK_MAX_FILE (256u << 20)

/* Loads a tokenizer. path is a tokenizer.json, a SentencePiece *.model or a
 * tiktoken *.tiktoken file, or a checkpoint directory. In a directory the
 * first that exists is read: tokenizer.json, else tokenizer.model
 * (lib/airllm_spm.h: ChatGLM, Baichuan, InternLM), else qwen.tiktoken or the
 * only *.tiktoken file (lib/airllm_tiktoken.h: Qwen v1); then, when present,
 * tokenizer_config.json (airllm_tok_read_config: BOS/EOS, add_bos_token).
 *
 * For a model file, the directory's tokenizer_config.json also gives
 * added_tokens_decoder (tokens split out of the text before the model file's
 * encoder sees it, as transformers' slow tokenizers do; an id there that the
 * model gives to another piece takes the new text, as InternLM2 renames its
 * [UNUSED_TOKEN_n] pieces) and tokenizer_class picks the family's specials:
 * QWenTokenizer (also the default for *.tiktoken): <|endoftext|>,
 * <|im_start|>, <|im_end|>, <|extra_0..204|> from the first id after the
 * ranks, matched in text, NFC applied to the text first, EOS <|endoftext|>;
 * ChatGLMTokenizer: [MASK] [gMASK] [sMASK] sop eop <|system|> <|user|>
 * <|assistant|> <|observation|> after the pieces (ids only, never matched in
 * text); other SentencePiece classes (Baichuan, InternLM): bos/eos/unk/pad
 * tokens (default <s> </s> <unk>) matched in text, as slow tokenizers do,
 * and the tokens of the directory's added_tokens.json ({"text": id}). SentencePiece BOS/EOS are the model's <s> / </s>. Token strings of
 * a tiktoken file (airllm_tok_token, airllm_tok_id_of) are raw bytes, not
 * necessarily UTF-8. */
int airllm_tok_load(const char *path, airllm_tokenizer **out, airllm_err *err);
/* Parses tokenizer.json from memory (json need not be NUL-terminated). name
 * prefixes error messages (NULL: "tokenizer.json"). */
int airllm_tok_load_buffer(const char *json, size_t len, const char *name,
                           airllm_tokenizer **out, airllm_err *err);
void airllm_tok_free(airllm_tokenizer *tok);

/* Reads tokenizer_config.json: bos_token / eos_token (a string or an object
 * with "content", or null) become the BOS / EOS ids, and add_bos_token, when
 * present, the default for adding BOS. A token named there that is not in
 * the vocab is an error. */
int airllm_tok_read_config(airllm_tokenizer *tok, const char *path, airllm_err *err);
int airllm_tok_read_config_buffer(airllm_tokenizer *tok, const char *json, size_t len,
                                  const char *name, airllm_err *err);

/* BOS / EOS ids, -1 when unknown. Before any config is read they come from
 * tokenizer.json's TemplateProcessing post-processor: the one special token
 * before the sequence is BOS, the one after it EOS. The caller may override
 * BOS (e.g. from config.json's bos_token_id); -1 clears. */
int32_t airllm_tok_bos(const airllm_tokenizer *tok);
int32_t airllm_tok_eos(const airllm_tokenizer *tok);
int airllm_tok_set_bos(airllm_tokenizer *tok, int32_t id, airllm_err *err);
/* Whether the files ask for BOS to be added when encoding a prompt
 * (add_bos_token, else whether the post-processor template starts with one). */
int airllm_tok_add_bos_default(const airllm_tokenizer *tok);

/* One more than the largest id (vocab and added tokens). */
size_t airllm_tok_vocab_size(const airllm_tokenizer *tok);
/* The id of a token string (an added token or a vocab entry, byte-level
 * tokens in their mapped form, e.g. "Ġthe"), or -1. */
int32_t airllm_tok_id_of(const airllm_tokenizer *tok, const char *token, size_t len);
/* The token string of an id (not NUL-terminated), or NULL if the id is unused. */
const char *airllm_tok_token(const airllm_tokenizer *tok, int32_t id, size_t *len);
/* 1 if id is an added token marked special (skipped by skip_special). */
int airllm_tok_is_special(const airllm_tokenizer *tok, int32_t id);

/* Encodes len bytes of UTF-8 text (NULs allowed; invalid UTF-8 is an error).
 * Added/special tokens written in the text (e.g. "<|im_start|>") become their
 * ids. add_bos prepends the BOS id when one is known. *ids is malloc'ed (free
 * it); *n may be 0. Same result as tokenizers' encode(text,
 * add_special_tokens=False), with BOS in front when asked. */
int airllm_tok_encode(const airllm_tokenizer *tok, const char *text, size_t len, int add_bos,
                      int32_t **ids, size_t *n, airllm_err *err);

/* The same without splitting added tokens out of the text first: for a
 * tokenizer.model or *.tiktoken file, its own encoder on the whole text, so
 * that "<|im_end|>" written in a user's message is plain text (Qwen v1's
 * make_context encodes messages with allowed_special=set()). No BOS. For a
 * tokenizer.json it is airllm_tok_encode. */
int airllm_tok_encode_ordinary(const airllm_tokenizer *tok, const char *text, size_t len,
                               int32_t **ids, size_t *n, airllm_err *err);

/* Streaming decoder: feed ids one at a time as they are generated; each call
 * gives back only complete UTF-8 characters. Bytes of a character split
 * across tokens (byte-level tokens, <0xAB> byte-fallback tokens) are held
 * until it is complete; invalid bytes become U+FFFD as tokenizers' decode
 * gives them. The concatenated output of all feeds plus the final flush
 * equals tokenizers' decode(ids, skip_special_tokens). Ids outside the vocab
 * produce nothing (tokenizers skips them too). */
typedef struct airllm_tok_decoder airllm_tok_decoder;

int airllm_tok_decoder_new(const airllm_tokenizer *tok, int skip_special,
                           airllm_tok_decoder **out, airllm_err *err);
/* *text / *len: the bytes this id completes; valid until the next call on
 * this decoder. */
int airllm_tok_decoder_feed(airllm_tok_decoder *d, int32_t id, const char **text,
                            size_t *len, airllm_err *err);
/* End of the sequence: whatever is still held (an incomplete character
 * becomes U+FFFD). The decoder is then reset for a new sequence. */
int airllm_tok_decoder_flush(airllm_tok_decoder *d, const char **text, size_t *len,
                             airllm_err *err);
/* Starts a new sequence, dropping anything held. */
void airllm_tok_decoder_reset(airllm_tok_decoder *d);
void airllm_tok_decoder_free(airllm_tok_decoder *d);

/* Whole-sequence decode through the streaming decoder; *text is malloc'ed
 * and NUL-terminated (the text itself may hold NULs: use *len). */
int airllm_tok_decode(const airllm_tokenizer *tok, const int32_t *ids, size_t n,
                      int skip_special, char **text, size_t *len, airllm_err *err);

#endif
