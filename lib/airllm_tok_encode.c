/* Encoding: text to ids. The added-token split (tokenizers'
 * AddedVocabulary, before and after the normalizer), the pre-tokenizer
 * steps (Split, Digits, Metaspace, ByteLevel with their
 * SplitDelimiterBehavior), and BPE on each word (tokenizers' BPE model:
 * merges by rank from a heap). A tokenizer read from tokenizer.model or
 * *.tiktoken hands the text between added tokens to lib/airllm_spm.c or
 * lib/airllm_tiktoken.c instead. All state is in one enc per call; the
 * tokenizer is only read. */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "airllm_bytes.h"
#include "airllm_heap.h"
#include "airllm_pretok.h"
#include "airllm_tok_impl.h"
#include "airllm_unicode.h"

typedef struct {
    size_t a, b;
    bool m; /* a match of the pattern (vs the text between matches) */
} piece;

typedef struct {
    piece *p;
    size_t n, cap;
} pieces;

static int pieces_add(pieces *v, size_t a, size_t b, bool m)
{
    piece *q = airllm_grow(v->p, &v->cap, v->n, sizeof *q, 64);
    if (!q)
        return -1;
    v->p = q;
    v->p[v->n++] = (piece){a, b, m};
    return 0;
}

typedef struct {
    uint32_t rank, pos;
    int32_t new_id;
} merge_ent;

typedef struct {
    int32_t id;
    int32_t prev, next;
    uint32_t len; /* 0: merged into its left neighbour */
} symbol;

typedef struct {
    const airllm_tokenizer *t;
    airllm_err *err;
    int32_t *ids;
    size_t n, cap;
    buf nx, ny, nw;                /* normalizer */
    buf lv[TOK_MAX_STEPS][2];      /* per pre-tokenizer step */
    pieces raw[TOK_MAX_STEPS], out[TOK_MAX_STEPS];
    symbol *sym;
    size_t sym_cap;
    airllm_heap heap; /* of merge_ent, merge_before */
    bool ordinary;    /* a model file's specials are plain text (encode_ordinary) */
} enc;

static int emit_id(enc *c, int32_t id)
{
    int32_t *q = airllm_grow(c->ids, &c->cap, c->n, sizeof *q, 256);
    if (!q)
        return airllm_errf(c->err, "out of memory");
    c->ids = q;
    c->ids[c->n++] = id;
    return 0;
}

/* BPE heap: lowest rank first, then leftmost (tokenizers' Merge ordering). */
static bool merge_before(const void *va, const void *vb)
{
    const merge_ent *a = va, *b = vb;
    return a->rank < b->rank || (a->rank == b->rank && a->pos < b->pos);
}

static int push_pair(enc *c, size_t pos)
{
    const symbol *a = &c->sym[pos];
    if (a->next < 0)
        return 0;
    uint64_t v;
    if (!airllm_tok_um_get(&c->t->merges,
                           (uint64_t)(uint32_t)a->id << 32 | (uint32_t)c->sym[a->next].id, &v))
        return 0;
    merge_ent e = {(uint32_t)(v >> 32), (uint32_t)pos, (int32_t)(uint32_t)v};
    return airllm_heap_push(&c->heap, &e);
}

static int add_symbol(enc *c, size_t *ns, int32_t id, size_t len)
{
    symbol *q = airllm_grow(c->sym, &c->sym_cap, *ns, sizeof *q, 256);
    if (!q)
        return -1;
    c->sym = q;
    if (*ns >= INT32_MAX - 1)
        return -1;
    c->sym[*ns] = (symbol){id, (int32_t)*ns - 1, (int32_t)*ns + 1, (uint32_t)len};
    (*ns)++;
    return 0;
}

/* tokenizers' BPE::merge_word + Word::merge_all. */
static int bpe_word(enc *c, const uint8_t *s, size_t n)
{
    const airllm_tokenizer *t = c->t;
    if (t->ignore_merges) { /* Llama 3: a word in the vocab is one token */
        int32_t id = airllm_tok_vocab_get(t, s, n);
        if (id >= 0)
            return emit_id(c, id);
    }
    size_t ns = 0, l;
    int32_t unk = -1;
    size_t unk_len = 0;
    for (size_t i = 0; i < n; i += l) {
        utf8_get(s, n, i, &l);
        int32_t id = airllm_tok_vocab_get(t, s + i, l);
        if (id >= 0) {
            if (unk >= 0 && add_symbol(c, &ns, unk, unk_len))
                goto oom;
            unk = -1;
            if (add_symbol(c, &ns, id, l))
                goto oom;
            continue;
        }
        if (t->byte_fallback) {
            bool all = true;
            for (size_t k = 0; k < l; k++)
                all = all && t->byte_id[s[i + k]] >= 0;
            if (all) {
                /* as in tokenizers, a pending unk is not flushed here */
                for (size_t k = 0; k < l; k++)
                    if (add_symbol(c, &ns, t->byte_id[s[i + k]], 1))
                        goto oom;
                continue;
            }
        }
        if (t->unk_id >= 0) {
            if (unk >= 0 && t->fuse_unk) {
                unk_len += l;
            } else {
                if (unk >= 0 && add_symbol(c, &ns, unk, unk_len))
                    goto oom;
                unk = t->unk_id;
                unk_len = l;
            }
        }
        /* no unk token: the character is dropped, as in tokenizers */
    }
    if (unk >= 0 && add_symbol(c, &ns, unk, unk_len))
        goto oom;
    if (ns == 0)
        return 0;
    c->sym[ns - 1].next = -1;

    c->heap.n = 0;
    for (size_t i = 0; i + 1 < ns; i++)
        if (push_pair(c, i))
            goto oom;
    while (c->heap.n) {
        merge_ent top;
        airllm_heap_pop(&c->heap, &top);
        symbol *a = &c->sym[top.pos];
        if (a->len == 0 || a->next < 0)
            continue;
        symbol *b = &c->sym[a->next];
        uint64_t v;
        /* a stale entry: the pair at pos changed since it was queued (the
         * same test as tokenizers: the merged id must still match) */
        if (!airllm_tok_um_get(&t->merges, (uint64_t)(uint32_t)a->id << 32 | (uint32_t)b->id, &v) ||
            (int32_t)(uint32_t)v != top.new_id)
            continue;
        a->id = top.new_id;
        a->len += b->len;
        b->len = 0;
        a->next = b->next;
        if (a->next >= 0)
            c->sym[a->next].prev = (int32_t)top.pos;
        if (a->prev >= 0 && push_pair(c, (size_t)a->prev))
            goto oom;
        if (push_pair(c, top.pos))
            goto oom;
    }
    for (int32_t i = 0; i >= 0; i = c->sym[i].next)
        if (emit_id(c, c->sym[i].id))
            return -1;
    return 0;
oom:
    return airllm_errf(c->err, "out of memory");
}

/* Applies a SplitDelimiterBehavior to the pattern's matches and the text
 * between them (tokenizers' NormalizedString::split). */
static int apply_behavior(const pieces *in, int behavior, pieces *out)
{
    out->n = 0;
    bool prev = false;
    switch (behavior) {
    case B_ISOLATED:
    case B_REMOVED:
        for (size_t i = 0; i < in->n; i++)
            if (!(behavior == B_REMOVED && in->p[i].m) &&
                pieces_add(out, in->p[i].a, in->p[i].b, false))
                return -1;
        return 0;
    case B_CONTIGUOUS:
    case B_MERGED_PREV:
        for (size_t i = 0; i < in->n; i++) {
            bool m = in->p[i].m;
            bool join = behavior == B_CONTIGUOUS ? m == prev : m && !prev;
            if (join && out->n)
                out->p[out->n - 1].b = in->p[i].b;
            else if (pieces_add(out, in->p[i].a, in->p[i].b, false))
                return -1;
            prev = m;
        }
        return 0;
    case B_MERGED_NEXT:
        for (size_t i = in->n; i-- > 0;) {
            bool m = in->p[i].m;
            if (m && !prev && out->n)
                out->p[out->n - 1].a = in->p[i].a;
            else if (pieces_add(out, in->p[i].a, in->p[i].b, false))
                return -1;
            prev = m;
        }
        for (size_t i = 0, j = out->n; i + 1 < j; i++, j--) {
            piece x = out->p[i];
            out->p[i] = out->p[j - 1];
            out->p[j - 1] = x;
        }
        return 0;
    }
    return -1;
}

/* Matches of a one-character predicate (tokenizers' Pattern for Fn(char)):
 * each matching character alone, the text between them as one piece. */
static int char_matches(const uint8_t *s, size_t n, bool (*pred)(uint32_t, uint32_t),
                        uint32_t arg, pieces *v)
{
    v->n = 0;
    size_t last = 0, l;
    for (size_t i = 0; i < n; i += l) {
        uint32_t c = utf8_get(s, n, i, &l);
        if (!pred(c, arg))
            continue;
        if (last < i && pieces_add(v, last, i, false))
            return -1;
        if (pieces_add(v, i, i + l, true))
            return -1;
        last = i + l;
    }
    if (last < n && pieces_add(v, last, n, false))
        return -1;
    return 0;
}

static bool pred_numeric(uint32_t c, uint32_t arg)
{
    (void)arg;
    return airllm_uni_is_number(c);
}

static bool pred_eq(uint32_t c, uint32_t arg)
{
    return c == arg;
}

static int pretok(enc *c, size_t step, const uint8_t *s, size_t n, bool at_origin);

/* Runs every kept, non-empty piece through the next step. */
static int pretok_pieces(enc *c, size_t step, const uint8_t *s, const pieces *v, bool at_origin)
{
    for (size_t i = 0; i < v->n; i++) {
        if (v->p[i].b <= v->p[i].a)
            continue;
        if (pretok(c, step + 1, s + v->p[i].a, v->p[i].b - v->p[i].a,
                   at_origin && v->p[i].a == 0))
            return -1;
    }
    return 0;
}

/* Pre-tokenizer step `step` on one piece (non-empty), then the next steps,
 * then BPE. at_origin: the piece starts at offset 0 of the input, for
 * Metaspace's prepend_scheme "first". */
static int pretok(enc *c, size_t step, const uint8_t *s, size_t n, bool at_origin)
{
    const airllm_tokenizer *t = c->t;
    if (n == 0)
        return 0;
    if (step == t->n_pt)
        return bpe_word(c, s, n);
    const pt_step *st = &t->pt[step];
    buf *A = &c->lv[step][0], *B = &c->lv[step][1];
    pieces *raw = &c->raw[step], *out = &c->out[step];
    raw->n = 0;
    switch (st->kind) {
    case PT_SPLIT_RE:
    case PT_SPLIT_STR:
        if (st->kind == PT_SPLIT_RE) {
            for (size_t i = 0; i < n;) {
                size_t j = st->re == RE_GPT2
                               ? airllm_tok_match_gpt2(s, n, i)
                               : airllm_pretok_llama3(s, n, i, st->re == RE_LLAMA3 ? 3 : 1);
                if (pieces_add(raw, i, j, true))
                    goto oom;
                i = j;
            }
        } else {
            size_t i = 0;
            for (;;) {
                size_t j = airllm_tok_find_str(s, n, i, S(t, st->pat), st->pat.len);
                if (j > i && pieces_add(raw, i, j, false))
                    goto oom;
                if (j == n)
                    break;
                if (pieces_add(raw, j, j + st->pat.len, true))
                    goto oom;
                i = j + st->pat.len;
            }
        }
        if (apply_behavior(raw, st->behavior, out))
            goto oom;
        return pretok_pieces(c, step, s, out, at_origin);
    case PT_DIGITS:
        if (char_matches(s, n, pred_numeric, 0, raw) || apply_behavior(raw, st->behavior, out))
            goto oom;
        return pretok_pieces(c, step, s, out, at_origin);
    case PT_METASPACE: {
        A->n = 0;
        size_t l;
        bool starts = n > 0 && utf8_get(s, n, 0, &l) == st->repl;
        /* the replacement of the first space also counts as "starts with" */
        if (s[0] == ' ')
            starts = true;
        if (((st->scheme == PS_ALWAYS) || (st->scheme == PS_FIRST && at_origin)) && !starts &&
            tok_buf_add(A, S(t, st->repl_s), st->repl_s.len))
            goto oom;
        for (size_t i = 0; i < n; i++) {
            if (s[i] == ' ' ? tok_buf_add(A, S(t, st->repl_s), st->repl_s.len)
                            : tok_buf_add(A, s + i, 1))
                goto oom;
        }
        if (!st->split)
            return pretok(c, step + 1, A->p, A->n, at_origin);
        if (char_matches(A->p, A->n, pred_eq, st->repl, raw) ||
            apply_behavior(raw, B_MERGED_NEXT, out))
            goto oom;
        return pretok_pieces(c, step, A->p, out, at_origin);
    }
    case PT_BYTELEVEL: {
        const uint8_t *p = s;
        size_t pn = n;
        if (st->add_prefix_space && s[0] != ' ') {
            A->n = 0;
            if (tok_buf_add(A, " ", 1) || tok_buf_add(A, s, n))
                goto oom;
            p = A->p;
            pn = A->n;
        }
        size_t i = 0;
        while (i < pn) {
            size_t j = st->use_regex ? airllm_tok_match_gpt2(p, pn, i) : pn;
            /* map each byte to its visible character */
            B->n = 0;
            if (tok_buf_reserve(B, 2 * (j - i)))
                goto oom;
            for (size_t k = i; k < j; k++)
                B->n += utf8_put(B->p + B->n, airllm_tok_byte_char[p[k]]);
            if (pretok(c, step + 1, B->p, B->n, at_origin && i == 0))
                return -1;
            i = j;
        }
        return 0;
    }
    }
    return airllm_errf(c->err, "internal error: unknown pre-tokenizer step");
oom:
    return airllm_errf(c->err, "out of memory");
}

/* tokenizers' AddedVocabulary::find_matches + split_with_indices: added
 * tokens found leftmost-longest, with their single_word / lstrip / rstrip
 * rules; calls `text` for the pieces between them. */
typedef int (*piece_fn)(enc *c, const uint8_t *s, size_t n, bool at_origin);

static bool word_before(const uint8_t *s, size_t i)
{
    size_t l;
    return i > 0 && airllm_uni_is_word(utf8_get(s, i, utf8_prev(s, i), &l));
}

static int split_added(enc *c, const trie *tr, const uint8_t *s, size_t n, bool at_origin,
                       piece_fn text)
{
    const airllm_tokenizer *t = c->t;
    if (n == 0)
        return 0;
    if (tr->empty)
        return text(c, s, n, at_origin);
    size_t start_offset = 0, pos = 0, l;
    while (pos < n) {
        size_t mlen = 0;
        int32_t k = -1;
        size_t p = pos;
        for (; p < n; p++)
            if (tr->first[s[p]] && (k = airllm_tok_trie_longest(tr, s, n, p, &mlen)) >= 0)
                break;
        if (k < 0)
            break;
        const added_tok *a = &t->added[k];
        size_t start = p, stop = p + mlen;
        pos = stop; /* the automaton goes on after the match itself */
        if (a->single_word) {
            bool start_space = start == 0 || !word_before(s, start);
            bool stop_space = stop == n || !airllm_uni_is_word(utf8_get(s, n, stop, &l));
            if (!start_space || !stop_space)
                continue;
        }
        if (a->lstrip) {
            size_t ns = start;
            while (ns > 0) {
                size_t q = utf8_prev(s, ns);
                if (!airllm_uni_is_space(utf8_get(s, ns, q, &l)))
                    break;
                ns = q;
            }
            start = ns > start_offset ? ns : start_offset;
        }
        if (a->rstrip)
            while (stop < n && airllm_uni_is_space(utf8_get(s, n, stop, &l)))
                stop += l;
        if (start_offset < start &&
            text(c, s + start_offset, start - start_offset, at_origin && start_offset == 0))
            return -1;
        if (emit_id(c, a->id))
            return -1;
        start_offset = stop;
    }
    if (start_offset < n)
        return text(c, s + start_offset, n - start_offset, at_origin && start_offset == 0);
    return 0;
}

static int pass2_text(enc *c, const uint8_t *s, size_t n, bool at_origin)
{
    return pretok(c, 0, s, n, at_origin);
}

/* A piece of raw text between non-normalized added tokens: normalize it,
 * then split out the normalized added tokens. */
static int pass1_text(enc *c, const uint8_t *s, size_t n, bool at_origin)
{
    const uint8_t *ns;
    size_t nn;
    int rc = airllm_tok_normalize(c->t, s, n, &c->nx, &c->ny, &c->nw, &ns, &nn);
    if (rc == -2)
        return airllm_errf(c->err, "encode: tokenizer.json's normalizer grows %zu bytes of "
                                   "text past %d times that length plus %d bytes: refused",
                           n, TOK_NORM_GROWTH, TOK_NORM_SLACK);
    if (rc)
        return airllm_errf(c->err, "out of memory");
    return split_added(c, &c->t->trie_norm, ns, nn, at_origin, pass2_text);
}

/* Text between added tokens, for a tokenizer.model / *.tiktoken file. */
static int file_text(enc *c, const uint8_t *s, size_t n, bool at_origin)
{
    const airllm_tokenizer *t = c->t;
    int32_t *ids;
    size_t k;
    (void)at_origin;
    int rc;
    if (t->spm) {
        rc = airllm_spm_encode(t->spm, (const char *)s, n, &ids, &k, c->err);
    } else {
        if (t->nfc && n) {
            if (airllm_tok_nfc(s, n, &c->nx, &c->nw))
                return airllm_errf(c->err, "out of memory");
            s = c->nx.p;
            n = c->nx.n;
        }
        rc = c->ordinary ? airllm_tiktoken_encode_ordinary(t->tt, (const char *)s, n, &ids, &k,
                                                           c->err)
                         : airllm_tiktoken_encode(t->tt, (const char *)s, n, &ids, &k, c->err);
    }
    if (rc)
        return -1;
    for (size_t i = 0; i < k && rc == 0; i++)
        rc = emit_id(c, ids[i]);
    free(ids);
    return rc;
}

static int encode(const airllm_tokenizer *t, const char *text, size_t len, int add_bos,
                  bool split, int32_t **ids, size_t *n, airllm_err *err);

int airllm_tok_encode(const airllm_tokenizer *t, const char *text, size_t len, int add_bos,
                      int32_t **ids, size_t *n, airllm_err *err)
{
    return encode(t, text, len, add_bos, true, ids, n, err);
}

int airllm_tok_encode_ordinary(const airllm_tokenizer *t, const char *text, size_t len,
                               int32_t **ids, size_t *n, airllm_err *err)
{
    /* only a model file's encoder can run without the added-token split */
    return encode(t, text, len, 0, !(t->spm || t->tt), ids, n, err);
}

static int encode(const airllm_tokenizer *t, const char *text, size_t len, int add_bos,
                  bool split, int32_t **ids, size_t *n, airllm_err *err)
{
    *ids = NULL;
    *n = 0;
    if (!text && len)
        return airllm_errf(err, "encode: no text");
    size_t bad = airllm_utf8_first_bad((const uint8_t *)text, len);
    if (bad < len)
        return airllm_errf(err, "encode: text is not valid UTF-8 (byte %zu)", bad);
    enc c;
    memset(&c, 0, sizeof c);
    c.t = t;
    c.err = err;
    c.ordinary = !split;
    airllm_heap_init(&c.heap, sizeof(merge_ent), merge_before);
    int rc = 0;
    if (add_bos && t->bos >= 0)
        rc = emit_id(&c, t->bos);
    if (rc == 0 && len && !split)
        rc = file_text(&c, (const uint8_t *)text, len, true);
    else if (rc == 0 && len)
        rc = split_added(&c, &t->trie_raw, (const uint8_t *)text, len, true,
                         t->spm || t->tt ? file_text : pass1_text);
    tok_buf_free(&c.nx);
    tok_buf_free(&c.ny);
    tok_buf_free(&c.nw);
    for (size_t i = 0; i < TOK_MAX_STEPS; i++) {
        tok_buf_free(&c.lv[i][0]);
        tok_buf_free(&c.lv[i][1]);
        free(c.raw[i].p);
        free(c.out[i].p);
    }
    free(c.sym);
    airllm_heap_free(&c.heap);
    if (rc) {
        free(c.ids);
        return -1;
    }
    *ids = c.ids;
    *n = c.n;
    return 0;
}
