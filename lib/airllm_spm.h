/* SentencePiece tokenizer.model reader and BPE encoder/decoder, matching the
 * `sentencepiece` library (the Python package's SentencePieceProcessor) id
 * for id. ChatGLM2/3, Baichuan 1/2 and InternLM 1/2 ship this file instead of
 * a tokenizer.json.
 *
 * The file is a serialized protobuf ModelProto. It is parsed from memory by a
 * bounded wire-format reader: every length and count is checked against the
 * bytes that remain before anything is allocated or indexed, and unknown
 * fields are skipped. What is supported:
 *
 * - model_type BPE (merge the adjacent pair whose merged piece has the
 *   highest score, leftmost on ties, as sentencepiece's bpe_model does;
 *   user-defined symbols never merged, UNUSED pieces re-split into the
 *   pieces they were merged from) and UNIGRAM (unigram_model's Viterbi:
 *   highest total score, user-defined symbols always chosen, unknown
 *   characters scored min_score - 10, UNUSED pieces never used); unknown
 *   characters (consecutive ones fused into one <unk>) or byte fallback to
 *   <0xAB> pieces;
 * - normalizer_spec without a precompiled charsmap ("identity", what these
 *   families use): add_dummy_prefix, remove_extra_whitespaces,
 *   escape_whitespaces.
 *
 * Refused with a message naming the file: WORD and CHAR models, a
 * non-empty precompiled_charsmap (nmt_nfkc and other normalization rules),
 * treat_whitespace_as_suffix, and malformed files (truncated, a length past
 * the end, invalid UTF-8 in a piece, duplicate pieces, no <unk>, byte pieces
 * missing while byte_fallback is on). Like the rest of lib/, nothing here
 * prints or exits. */
#ifndef AIRLLM_SPM_H
#define AIRLLM_SPM_H

#include <stddef.h>
#include <stdint.h>

#include "airllm_err.h"

typedef struct airllm_spm airllm_spm;

/* Largest tokenizer.model accepted (real ones are 0.5-2 MB). */
#define AIRLLM_SPM_MAX_FILE (64u << 20)

/* ModelProto.SentencePiece.Type */
enum {
    AIRLLM_SPM_NORMAL = 1,
    AIRLLM_SPM_UNKNOWN = 2,
    AIRLLM_SPM_CONTROL = 3,
    AIRLLM_SPM_USER_DEFINED = 4,
    AIRLLM_SPM_UNUSED = 5,
    AIRLLM_SPM_BYTE = 6,
};

/* name prefixes error messages (NULL: "tokenizer.model"). */
int airllm_spm_load_buffer(const uint8_t *data, size_t len, const char *name, airllm_spm **out,
                           airllm_err *err);
int airllm_spm_load(const char *path, airllm_spm **out, airllm_err *err);
void airllm_spm_free(airllm_spm *m);

/* Number of pieces; ids are 0 .. size-1. */
size_t airllm_spm_size(const airllm_spm *m);
/* The piece of an id (UTF-8, "▁" for spaces, not NUL-terminated), or NULL. */
const char *airllm_spm_piece(const airllm_spm *m, int32_t id, size_t *len);
/* The type of an id (AIRLLM_SPM_*), 0 if out of range. */
int airllm_spm_type(const airllm_spm *m, int32_t id);
float airllm_spm_score(const airllm_spm *m, int32_t id);
/* The id of a piece, or -1. */
int32_t airllm_spm_piece_id(const airllm_spm *m, const char *piece, size_t len);
/* As sentencepiece's unk_id() / bos_id() / eos_id() / pad_id(): the
 * trainer_spec's unk/bos/eos/pad piece names looked up in the pieces (bos,
 * eos and pad must be CONTROL or USER_DEFINED pieces), or -1. */
int32_t airllm_spm_unk_id(const airllm_spm *m);
int32_t airllm_spm_bos_id(const airllm_spm *m);
int32_t airllm_spm_eos_id(const airllm_spm *m);
int32_t airllm_spm_pad_id(const airllm_spm *m);
int airllm_spm_byte_fallback(const airllm_spm *m);
int airllm_spm_add_dummy_prefix(const airllm_spm *m);

/* Encodes len bytes of UTF-8 text (invalid UTF-8 is an error) as
 * sentencepiece's encode(text) does: no BOS/EOS. *ids is malloc'ed (free it),
 * *n may be 0. */
int airllm_spm_encode(const airllm_spm *m, const char *text, size_t len, int32_t **ids,
                      size_t *n, airllm_err *err);

/* Streaming decoder state, as sentencepiece's decode(ids): control pieces
 * give nothing, <unk> the unk_surface (" ⁇ "), "▁" a space, and runs of byte
 * pieces their bytes, each byte that does not start a valid UTF-8 character
 * becoming U+FFFD. While no text has come out, a piece loses one leading "▁"
 * (when add_dummy_prefix or remove_extra_whitespaces); with add_dummy_prefix
 * alone only the first such "▁" goes, with remove_extra_whitespaces every one
 * until text appears. Zero it to start a sequence. */
typedef struct {
    int text_seen;    /* some text came out */
    int ws_seen;      /* the last piece had its leading "▁" consumed */
    int bos_done;     /* no more leading "▁" to consume */
    uint8_t pend[4];  /* a character begun by byte pieces */
    uint8_t npend, need;
} airllm_spm_dec;

/* Appends the text that id completes to *out (*len bytes used of *cap; the
 * buffer is realloc'ed as needed). Ids out of range give nothing. */
int airllm_spm_decode_step(const airllm_spm *m, airllm_spm_dec *d, int32_t id, char **out,
                           size_t *len, size_t *cap, airllm_err *err);
/* End of sequence: a pending incomplete character becomes U+FFFD per byte;
 * the state is reset. */
int airllm_spm_decode_end(const airllm_spm *m, airllm_spm_dec *d, char **out, size_t *len,
                          size_t *cap, airllm_err *err);
/* Whole sequence; *text is malloc'ed and NUL-terminated. */
int airllm_spm_decode(const airllm_spm *m, const int32_t *ids, size_t n, char **text,
                      size_t *len, airllm_err *err);

#endif
