/* Internal to lib/airllm_tok*.c and lib/airllm_tokenizer.c: the loaded
 * tokenizer's layout and what its parts share. Not installed, not an API.
 *
 * The tokenizer reads a Hugging Face tokenizer.json, or a model file
 * (SentencePiece tokenizer.model, tiktoken *.tiktoken) with its configs, and
 * encodes and decodes as the `tokenizers` library (Rust) does: every step
 * mirrors one of its components, named in the comments, so that ids come
 * out identical. The encoding pipeline is theirs:
 *
 *   1. added tokens that are not `normalized` are split out of the raw text;
 *   2. each remaining piece is normalized, and `normalized` added tokens are
 *      split out of it;
 *   3. the pre-tokenizers cut each piece into words;
 *   4. BPE turns each word into ids.
 *
 * Pieces are processed depth-first (a piece goes through every
 * pre-tokenizer and BPE before the next piece starts), which gives the same
 * ids as tokenizers' breadth-first passes because every step works on one
 * piece at a time, and keeps memory to a few reusable buffers.
 *
 * Which file owns what:
 *   airllm_tokenizer.c      public entry points: airllm_tok_load (which file
 *                           a directory holds), free, tokenizer_config.json,
 *                           accessors
 *   airllm_tok_util.c       hash maps, added-token trie, GPT-2's
 *                           byte-to-unicode map
 *   airllm_tok_json.c       tokenizer.json: the model (vocab, merges), added
 *                           tokens, id tables, post-processor
 *   airllm_tok_json_steps.c tokenizer.json's normalizer, pre_tokenizer and
 *                           decoder sections into step lists
 *   airllm_tok_files.c      tokenizer.model / *.tiktoken and their configs
 *   airllm_tok_norm.c       normalizers (Replace, NFC, ...) and the
 *                           pre-tokenizer regexes matched by hand
 *   airllm_tok_encode.c     pre-tokenizer steps, BPE, added-token splitting
 *   airllm_tok_decode.c     the streaming decoder
 *
 * Cross-file functions carry the airllm_tok_ prefix like the public API
 * (libairllm.a and .so export only airllm_ names); this header, not the
 * name, says they are internal. Everything else stays static in its file.
 * The growable buffer (tok_buf_*) and the UTF-8 helpers are static inline
 * here because every part calls them a character at a time in its inner
 * loops. */
#ifndef AIRLLM_TOK_IMPL_H
#define AIRLLM_TOK_IMPL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "airllm_err.h"
#include "airllm_spm.h"
#include "airllm_tiktoken.h"
#include "airllm_tokenizer.h"

/* Longest token string accepted; real ones are under a few hundred bytes. */
#define TOK_MAX_STR 65536u
/* Ids may leave holes, but not so many that a tiny file makes us allocate
 * gigabytes: the largest id must stay below the token count plus this. */
#define TOK_ID_SLACK 65536u
/* Steps in a normalizer, pre-tokenizer or decoder, after flattening. */
#define TOK_MAX_STEPS 32
/* Nesting of Sequence inside Sequence. */
#define TOK_MAX_NEST 4
#define TOK_CONFIG_MAX (16u << 20)
#define SPAN_NONE UINT32_MAX

/* How far airllm_tok_normalize lets a text grow (see there). */
#define TOK_NORM_GROWTH 16
#define TOK_NORM_SLACK 4096

/* ------------------------------------------------------------------------
 * Small containers (the maps: airllm_tok_util.c)
 * ------------------------------------------------------------------------ */

/* A growable byte buffer; p is never NULL once something was reserved.
 * Inline, as the encoder and the decoder append a character at a time
 * (out of line, streaming decode was 7% slower). */
typedef struct {
    uint8_t *p;
    size_t n, cap;
} buf;

static inline int tok_buf_reserve(buf *b, size_t extra)
{
    if (extra > SIZE_MAX / 2 - b->n)
        return -1;
    size_t need = b->n + extra;
    if (b->p && need <= b->cap) /* allocates even for 0 bytes: p is never NULL after */
        return 0;
    size_t cap = b->cap ? b->cap : 64;
    while (cap < need)
        cap *= 2;
    uint8_t *q = realloc(b->p, cap);
    if (!q)
        return -1;
    b->p = q;
    b->cap = cap;
    return 0;
}

static inline int tok_buf_add(buf *b, const void *s, size_t n)
{
    if (tok_buf_reserve(b, n))
        return -1;
    if (n)
        memcpy(b->p + b->n, s, n);
    b->n += n;
    return 0;
}

static inline void tok_buf_free(buf *b)
{
    free(b->p);
    b->p = NULL;
    b->n = b->cap = 0;
}

/* A string stored in the tokenizer's arena (offsets, so the arena may move). */
typedef struct {
    uint32_t off, len;
} span;

/* string -> id and 64-bit key -> 64-bit value: open addressing, linear
 * probing, capacity a power of two, at most half full. */
typedef struct {
    span key; /* into the tokenizer's arena */
    int32_t val; /* -1: empty slot */
} sm_slot;

typedef struct {
    sm_slot *s;
    size_t cap, n;
} strmap;

int airllm_tok_sm_alloc(strmap *m, size_t cap);
/* The id stored for key, or -1. */
int32_t airllm_tok_sm_get(const strmap *m, const uint8_t *base, const void *key, size_t n);
/* Inserts key -> val unless the key is there; returns the id already there,
 * or -1 when inserted, or -2 when out of memory. */
int32_t airllm_tok_sm_put(strmap *m, const uint8_t *base, span key, int32_t val);

#define UM_EMPTY UINT64_MAX

typedef struct {
    uint64_t k, v;
} um_slot;

typedef struct {
    um_slot *s;
    size_t cap, n;
} u64map;

int airllm_tok_um_alloc(u64map *m, size_t cap);
/* 1 and *v set when k is there, else 0. */
int airllm_tok_um_get(const u64map *m, uint64_t k, uint64_t *v);
/* Inserts or overwrites; -1 when out of memory. */
int airllm_tok_um_put(u64map *m, uint64_t k, uint64_t v);

/* ------------------------------------------------------------------------
 * UTF-8
 * ------------------------------------------------------------------------ */

static inline size_t utf8_put(uint8_t *o, uint32_t cp)
{
    if (cp < 0x80) {
        o[0] = (uint8_t)cp;
        return 1;
    }
    if (cp < 0x800) {
        o[0] = (uint8_t)(0xC0 | cp >> 6);
        o[1] = (uint8_t)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        o[0] = (uint8_t)(0xE0 | cp >> 12);
        o[1] = (uint8_t)(0x80 | (cp >> 6 & 0x3F));
        o[2] = (uint8_t)(0x80 | (cp & 0x3F));
        return 3;
    }
    o[0] = (uint8_t)(0xF0 | cp >> 18);
    o[1] = (uint8_t)(0x80 | (cp >> 12 & 0x3F));
    o[2] = (uint8_t)(0x80 | (cp >> 6 & 0x3F));
    o[3] = (uint8_t)(0x80 | (cp & 0x3F));
    return 4;
}

/* Code point at s[i] of already-validated UTF-8; *len gets its byte count.
 * Stays in bounds even on bad input (a truncated sequence reads as one
 * U+FFFD byte) so that a bug elsewhere cannot turn into an overread. */
static inline uint32_t utf8_get(const uint8_t *s, size_t n, size_t i, size_t *len)
{
    uint8_t c = s[i];
    if (c < 0x80) {
        *len = 1;
        return c;
    }
    size_t k;
    uint32_t cp;
    if (c < 0xE0) {
        k = 2;
        cp = c & 0x1F;
    } else if (c < 0xF0) {
        k = 3;
        cp = c & 0x0F;
    } else {
        k = 4;
        cp = c & 0x07;
    }
    if (k > n - i) {
        *len = 1;
        return 0xFFFD;
    }
    for (size_t j = 1; j < k; j++)
        cp = cp << 6 | (s[i + j] & 0x3F);
    *len = k;
    return cp;
}

/* Start of the character that ends just before byte j (j > 0). */
static inline size_t utf8_prev(const uint8_t *s, size_t j)
{
    size_t k = j - 1;
    while (k > 0 && (s[k] & 0xC0) == 0x80)
        k--;
    return k;
}

/* ------------------------------------------------------------------------
 * The tokenizer
 * ------------------------------------------------------------------------ */

/* normalizers */
enum { NORM_PREPEND, NORM_REPLACE, NORM_STRIP, NORM_NFC };

typedef struct {
    int kind;
    span a, b;        /* PREPEND: a; REPLACE: pattern a -> content b */
    bool left, right; /* STRIP */
} norm_step;

/* pre-tokenizers */
enum { PT_SPLIT_RE, PT_SPLIT_STR, PT_BYTELEVEL, PT_DIGITS, PT_METASPACE };
/* the split regexes implemented by hand */
enum { RE_GPT2, RE_LLAMA3, RE_QWEN2 };
/* tokenizers' SplitDelimiterBehavior */
enum { B_REMOVED, B_ISOLATED, B_MERGED_PREV, B_MERGED_NEXT, B_CONTIGUOUS };
/* Metaspace prepend_scheme */
enum { PS_ALWAYS, PS_FIRST, PS_NEVER };

typedef struct {
    int kind;
    int re;        /* PT_SPLIT_RE */
    int behavior;  /* PT_SPLIT_*; PT_DIGITS uses Isolated or Contiguous */
    span pat;      /* PT_SPLIT_STR */
    bool add_prefix_space, use_regex; /* PT_BYTELEVEL */
    uint32_t repl; /* PT_METASPACE */
    span repl_s;
    int scheme;
    bool split;
} pt_step;

/* per-token decoder stages (before ByteFallback / Fuse) */
enum { DS_REPLACE, DS_METASPACE, DS_STRIP };

typedef struct {
    int kind;
    span pat, content; /* DS_REPLACE */
    uint32_t ch;       /* DS_METASPACE: replacement; DS_STRIP: content */
    int scheme;        /* DS_METASPACE */
    size_t start, stop; /* DS_STRIP */
} dec_stage;

typedef struct {
    span content;
    span norm; /* content after the normalizer, for `normalized` tokens */
    int32_t id;
    bool single_word, lstrip, rstrip, normalized, special;
} added_tok;

/* Byte trie of added tokens, for the leftmost-longest match that
 * tokenizers' Aho-Corasick automaton (MatchKind::LeftmostLongest) finds. */
typedef struct {
    u64map edges;  /* node << 8 | byte -> child node */
    int32_t *term; /* node -> index in added[], or -1 */
    size_t n_nodes, cap_nodes;
    bool first[256]; /* bytes some token starts with: skips most positions */
    bool empty;
} trie;

int airllm_tok_trie_init(trie *tr);
void airllm_tok_trie_free(trie *tr);
/* Returns the index already stored for this exact string, -1 when added,
 * -2 when out of memory. */
int airllm_tok_trie_add(trie *tr, const uint8_t *s, size_t n, int32_t idx);
/* The longest token starting at s[p]: its index in added[] (and *len), or -1. */
int32_t airllm_tok_trie_longest(const trie *tr, const uint8_t *s, size_t n, size_t p, size_t *len);

struct airllm_tokenizer {
    buf arena; /* every string; spans point into it */

    size_t n_ids;       /* largest id + 1 */
    span *id_tok;       /* id -> token string (off == SPAN_NONE: unused id) */
    span *id_dec;       /* id -> what decoding starts from */
    uint8_t *id_special;

    strmap vocab;    /* model vocab */
    size_t n_vocab;
    strmap added_by; /* added token content -> index in added[] */
    added_tok *added;
    size_t n_added;
    trie trie_raw, trie_norm;

    u64map merges; /* left id << 32 | right id -> rank << 32 | merged id */
    int32_t unk_id;
    bool byte_fallback, fuse_unk, ignore_merges;
    int32_t byte_id[256]; /* <0xAB> tokens, -1 if absent */

    norm_step norm[TOK_MAX_STEPS];
    size_t n_norm;
    pt_step pt[TOK_MAX_STEPS];
    size_t n_pt;

    bool dec_byte_level, dec_byte_fallback, dec_join_space;
    dec_stage dstage[TOK_MAX_STEPS];
    size_t n_dstage;
    uint32_t dec_strip_ch; /* Strip after Fuse: leading characters of the text */
    size_t dec_strip_n;

    int32_t bos, eos;
    bool add_bos;

    /* read from tokenizer.model / *.tiktoken instead of tokenizer.json */
    airllm_spm *spm;
    airllm_tiktoken *tt;
    bool nfc;          /* Qwen normalizes text to NFC before tiktoken */
    size_t cap_added;
    uint8_t *id_added; /* id decodes as an added token, not the model's piece */
};

/* The bytes of a span of t's arena. */
static inline const uint8_t *S(const airllm_tokenizer *t, span s)
{
    return t->arena.p + s.off;
}

/* GPT-2's byte-to-unicode map (tokenizers' bytes_char): printable bytes map
 * to themselves, the others to U+0100 upwards, so every byte is a visible
 * character in the vocab. Written once by airllm_tok_init_byte_map (under
 * pthread_once: tokenizers may be loaded from several threads at once),
 * read-only after; every loader calls it before a tokenizer exists. */
extern uint32_t airllm_tok_byte_char[256];
extern int16_t airllm_tok_char_byte[324]; /* inverse, for code points below 324 */
void airllm_tok_init_byte_map(void);

/* The model vocab's id of a string, or -1 (airllm_tokenizer.c). */
int32_t airllm_tok_vocab_get(const airllm_tokenizer *t, const void *s, size_t n);

/* ------------------------------------------------------------------------
 * Loading (airllm_tok_json.c, airllm_tok_json_steps.c, airllm_tok_files.c)
 * ------------------------------------------------------------------------ */

/* A loader's state: the tokenizer being filled, where errors go, and a
 * scratch buffer. */
typedef struct {
    airllm_tokenizer *t;
    airllm_err *err;
    buf scratch;
} ld;

/* Copies s[0..n) (checked: UTF-8, at most TOK_MAX_STR bytes) into the
 * arena; what names it in an error. */
int airllm_tok_intern(ld *L, const char *s, size_t n, span *out, const char *what);
const cJSON *airllm_tok_jget(const cJSON *o, const char *k);
/* Optional boolean: absent or null gives dflt. */
int airllm_tok_jbool(ld *L, const cJSON *o, const char *k, bool dflt, bool *out, const char *where);
/* Optional string: absent or null gives NULL; required makes those errors. */
int airllm_tok_jstr(ld *L, const cJSON *o, const char *k, bool required, const char **out,
                    const char *where);
/* A JSON number that is an integer in [lo, hi]. */
int airllm_tok_jint(const cJSON *v, double lo, double hi, int64_t *out);
/* The "type" of an object, or NULL with the error set. */
const char *airllm_tok_jtype(ld *L, const cJSON *o, const char *where);

/* tokenizer.json's "normalizer", "pre_tokenizer" and "decoder" (null or
 * absent: none) into t->norm, t->pt and the decoder fields. */
int airllm_tok_load_normalizer(ld *L, const cJSON *n, int depth);
int airllm_tok_load_pretok(ld *L, const cJSON *p, int depth);
int airllm_tok_load_decoder(ld *L, const cJSON *d);

/* A tokenizer.model (spm) or *.tiktoken file, with tokenizer_config.json
 * and added_tokens.json when not NULL. */
int airllm_tok_load_model_file(const char *file, bool spm, const char *config,
                               const char *added_json, airllm_tokenizer **out, airllm_err *err);

/* ------------------------------------------------------------------------
 * Text (airllm_tok_norm.c)
 * ------------------------------------------------------------------------ */

/* Leftmost non-overlapping occurrence of pat in s[from..n), or n. */
size_t airllm_tok_find_str(const uint8_t *s, size_t n, size_t from, const uint8_t *pat, size_t np);
/* Every pat in s replaced by rep, into dst; -2 as soon as the output would
 * pass max bytes, -1 when out of memory. */
int airllm_tok_replace_all(const uint8_t *s, size_t n, const uint8_t *pat, size_t np,
                           const uint8_t *rep, size_t nr, buf *dst, size_t max);
/* NFC of valid UTF-8 s into dst; w is scratch. -1: out of memory. */
int airllm_tok_nfc(const uint8_t *s, size_t n, buf *dst, buf *w);
/* Runs the normalizer over s; the result lands in x or y (or is s itself);
 * w is scratch. -1: out of memory; -2: the text grew past
 * TOK_NORM_GROWTH times its length plus TOK_NORM_SLACK. */
int airllm_tok_normalize(const airllm_tokenizer *t, const uint8_t *s, size_t n, buf *x, buf *y,
                         buf *w, const uint8_t **out, size_t *on);
/* The end of GPT-2's pre-tokenizer regex match at s[i] (i < n). */
size_t airllm_tok_match_gpt2(const uint8_t *s, size_t n, size_t i);

#endif
