/* SentencePiece BPE encoder and streaming decoder over a model loaded by
 * airllm_spm.c. The reference is sentencepiece's normalizer.cc, bpe_model.cc
 * and sentencepiece_processor.cc; the comments name the step each function
 * mirrors. */
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "airllm_bytes.h"
#include "airllm_heap.h"
#include "airllm_spm_impl.h"

/* ------------------------------------------------------------------------
 * Encoding
 * ------------------------------------------------------------------------ */

typedef struct {
    uint8_t *p;
    size_t n, cap;
} sbuf;

static int sb_add(sbuf *b, const void *s, size_t n)
{
    if (n > SIZE_MAX / 4 - b->n)
        return -1;
    if (b->n + n > b->cap) {
        size_t cap = b->cap ? b->cap : 64;
        while (cap < b->n + n)
            cap *= 2;
        uint8_t *q = realloc(b->p, cap);
        if (!q)
            return -1;
        b->p = q;
        b->cap = cap;
    }
    if (n)
        memcpy(b->p + b->n, s, n);
    b->n += n;
    return 0;
}

/* Length of the UTF-8 character at s (already validated). */
static size_t char_len(uint8_t c)
{
    return c < 0x80 ? 1 : c < 0xE0 ? 2 : c < 0xF0 ? 3 : 4;
}

/* sentencepiece's PrefixMatcher: the longest user-defined symbol at s, or 0. */
static size_t ud_match(const airllm_spm *m, const uint8_t *s, size_t n)
{
    if (!m->ud_first[s[0]])
        return 0;
    for (size_t k = 0; k < m->n_ud_len; k++) {
        size_t l = m->ud_len[k];
        if (l > n)
            continue;
        int32_t id = airllm_spm_map_get(m, s, l);
        if (id >= 0 && m->pc[id].type == AIRLLM_SPM_USER_DEFINED)
            return l;
    }
    return 0;
}

/* normalizer.cc Normalizer::Normalize with an empty charsmap: each unit (a
 * user-defined symbol or one character) is copied, spaces escaped to "▁";
 * remove_extra_whitespaces drops leading and trailing spaces and collapses
 * runs; add_dummy_prefix puts one "▁" in front of non-empty text. Only ' '
 * counts as whitespace here (tabs and newlines are ordinary characters). */
static int normalize(const airllm_spm *m, const uint8_t *s, size_t n, sbuf *o)
{
    size_t i = 0;
    if (m->remove_ws)
        while (i < n && s[i] == ' ' && !ud_match(m, s + i, n - i))
            i++;
    if (i == n)
        return 0;
    const uint8_t *sp = m->escape_ws ? SPM_WS : (const uint8_t *)" ";
    size_t spn = m->escape_ws ? 3 : 1;
    if (m->add_dummy_prefix && sb_add(o, sp, spn))
        return -1;
    bool prev_space = m->remove_ws;
    while (i < n) {
        size_t l = ud_match(m, s + i, n - i);
        if (!l)
            l = char_len(s[i]);
        if (l > n - i)
            l = n - i;
        const uint8_t *u = s + i;
        size_t un = l;
        while (prev_space && un && u[0] == ' ') {
            u++;
            un--;
        }
        if (un) {
            for (size_t k = 0; k < un; k++)
                if (m->escape_ws && u[k] == ' ' ? sb_add(o, SPM_WS, 3) : sb_add(o, u + k, 1))
                    return -1;
            prev_space = u[un - 1] == ' ';
        }
        i += l;
        if (!m->remove_ws)
            prev_space = false;
    }
    if (m->remove_ws)
        while (o->n >= spn && memcmp(o->p + o->n - spn, sp, spn) == 0)
            o->n -= spn;
    return 0;
}

typedef struct {
    uint32_t off, len;
    int32_t prev, next;
    bool freeze;
} sym;

typedef struct {
    float score;
    int32_t left, right;
    uint32_t size;
} pair;

/* bpe_model.cc's agenda: highest score first, then leftmost. */
static bool pair_before(const void *va, const void *vb)
{
    const pair *a = va, *b = vb;
    return a->score > b->score || (a->score == b->score && a->left < b->left);
}

/* rev_merge: an UNUSED merged piece -> the two pieces it was last made of. */
typedef struct {
    uint32_t off, len, loff, llen, roff, rlen; /* into the normalized text; len 0: empty */
} rev_ent;

typedef struct {
    const airllm_spm *m;
    const uint8_t *t; /* normalized text */
    sym *sy;
    airllm_heap heap; /* of pair, pair_before */
    rev_ent *rev;
    size_t nrev, caprev;
    int32_t *ids;
    size_t nids, capids;
    bool last_unk;
} enc;

static rev_ent *rev_find(enc *c, const uint8_t *s, size_t n)
{
    for (size_t i = c->nrev; i-- > 0;)
        if (c->rev[i].len == n && memcmp(c->t + c->rev[i].off, s, n) == 0)
            return &c->rev[i];
    return NULL;
}

/* MaybeAddNewSymbolPair */
static int add_pair(enc *c, int32_t l, int32_t r)
{
    if (l < 0 || r < 0 || c->sy[l].freeze || c->sy[r].freeze)
        return 0;
    uint32_t size = c->sy[l].len + c->sy[r].len;
    int32_t id = airllm_spm_map_get(c->m, c->t + c->sy[l].off, size);
    if (id < 0)
        return 0;
    uint8_t ty = c->m->pc[id].type;
    if (ty != AIRLLM_SPM_NORMAL && ty != AIRLLM_SPM_USER_DEFINED && ty != AIRLLM_SPM_UNUSED)
        return 0;
    pair p = {c->m->pc[id].score, l, r, size};
    if (airllm_heap_push(&c->heap, &p))
        return -1;
    if (ty == AIRLLM_SPM_UNUSED) {
        /* a later pair for the same string overwrites the split, as the
         * map in bpe_model.cc does; the list is short (UNUSED pieces are rare) */
        rev_ent *e = rev_find(c, c->t + c->sy[l].off, size);
        if (!e) {
            rev_ent *q = airllm_grow(c->rev, &c->caprev, c->nrev, sizeof *q, 16);
            if (!q)
                return -1;
            c->rev = q;
            e = &c->rev[c->nrev++];
        }
        *e = (rev_ent){c->sy[l].off, size, c->sy[l].off, c->sy[l].len, c->sy[r].off,
                       c->sy[r].len};
    }
    return 0;
}

static int emit(enc *c, int32_t id)
{
    int32_t *q = airllm_grow(c->ids, &c->capids, c->nids, sizeof *q, 64);
    if (!q)
        return -1;
    c->ids = q;
    c->ids[c->nids++] = id;
    return 0;
}

/* sentencepiece_processor.cc's PopulateSentencePieceText for one piece: an
 * unknown piece becomes its bytes with byte_fallback, else joins a
 * preceding unknown piece. */
static int emit_piece(enc *c, const uint8_t *s, size_t n)
{
    const airllm_spm *m = c->m;
    int32_t id = airllm_spm_map_get(m, s, n);
    bool unk = id < 0 || m->pc[id].type == AIRLLM_SPM_UNKNOWN;
    if (!unk) {
        c->last_unk = false;
        return emit(c, id);
    }
    if (m->byte_fallback) {
        c->last_unk = false;
        for (size_t i = 0; i < n; i++)
            if (emit(c, m->byte_id[s[i]]))
                return -1;
        return 0;
    }
    if (c->last_unk)
        return 0;
    c->last_unk = true;
    return emit(c, m->unk);
}

/* bpe_model.cc's resegment: an UNUSED piece goes back to the two pieces it
 * was merged from, recursively (each step is strictly shorter, so the
 * explicit stack holds at most the piece's length in entries). */
static int resegment(enc *c, uint32_t off, uint32_t len, uint32_t *stack, size_t cap)
{
    size_t sp = 0;
    stack[sp++] = off;
    stack[sp++] = len;
    while (sp) {
        uint32_t l = stack[--sp], o = stack[--sp];
        int32_t id = airllm_spm_map_get(c->m, c->t + o, l);
        rev_ent *e = NULL;
        if (id >= 0 && c->m->pc[id].type == AIRLLM_SPM_UNUSED)
            e = rev_find(c, c->t + o, l);
        if (!e || sp + 4 > cap) {
            if (emit_piece(c, c->t + o, l))
                return -1;
            continue;
        }
        /* right first: the stack pops the left one next */
        stack[sp++] = o + e->llen;
        stack[sp++] = e->rlen;
        stack[sp++] = o;
        stack[sp++] = e->llen;
    }
    return 0;
}

/* unigram_model.cc's EncodeOptimized: Viterbi over the normalized text.
 * Every piece (NORMAL, USER_DEFINED; UNUSED ones are skipped) ending at a
 * position extends the best path to its start; a user-defined piece scores
 * length * max_score - 0.1 so that it always wins; a character no piece
 * starts with one character is unknown, scored min_score - 10. Ties keep
 * the earlier start. */
typedef struct {
    int32_t id, start; /* start -1: no path ends here yet */
    float score;
} vnode;

static int unigram(enc *c, size_t n, airllm_err *err)
{
    const airllm_spm *m = c->m;
    vnode *best = malloc((n + 1) * sizeof *best);
    if (!best)
        return airllm_errf(err, "out of memory");
    for (size_t i = 0; i <= n; i++)
        best[i] = (vnode){-1, -1, 0.0f};
    const float unk_score = m->min_score - 10.0f;
    for (size_t st = 0; st < n;) {
        float here = best[st].score;
        size_t mb = char_len(c->t[st]);
        if (mb > n - st)
            mb = n - st;
        bool single = false;
        for (size_t len = 1; len <= m->max_len && st + len <= n; len++) {
            int32_t id = airllm_spm_map_get(m, c->t + st, len);
            if (id < 0)
                continue;
            uint8_t ty = m->pc[id].type;
            if (ty != AIRLLM_SPM_NORMAL && ty != AIRLLM_SPM_USER_DEFINED)
                continue;
            float sc = ty == AIRLLM_SPM_USER_DEFINED ? (float)len * m->max_score - 0.1f
                                                     : m->pc[id].score;
            float cand = sc + here;
            vnode *t = &best[st + len];
            if (t->start < 0 || cand > t->score)
                *t = (vnode){id, (int32_t)st, cand};
            if (len == mb)
                single = true;
        }
        if (!single) {
            vnode *t = &best[st + mb];
            float cand = unk_score + here;
            if (t->start < 0 || cand > t->score)
                *t = (vnode){m->unk, (int32_t)st, cand};
        }
        st += mb;
    }
    /* back-track, then emit front to back */
    size_t k = 0;
    for (size_t e = n; e > 0; e = (size_t)best[e].start)
        k++;
    uint32_t *cut = malloc((k + 1) * sizeof *cut);
    if (!cut) {
        free(best);
        return airllm_errf(err, "out of memory");
    }
    size_t j = k;
    cut[j] = (uint32_t)n;
    for (size_t e = n; e > 0; e = (size_t)best[e].start)
        cut[--j] = (uint32_t)best[e].start;
    int rc = 0;
    for (size_t i = 0; i < k && rc == 0; i++)
        rc = emit_piece(c, c->t + cut[i], cut[i + 1] - cut[i]);
    free(cut);
    free(best);
    return rc ? airllm_errf(err, "out of memory") : 0;
}

int airllm_spm_encode(const airllm_spm *m, const char *text, size_t len, int32_t **ids,
                      size_t *n, airllm_err *err)
{
    *ids = NULL;
    *n = 0;
    if (!text && len)
        return airllm_errf(err, "encode: no text");
    size_t bad = airllm_utf8_first_bad((const uint8_t *)text, len);
    if (bad < len)
        return airllm_errf(err, "encode: text is not valid UTF-8 (byte %zu)", bad);
    sbuf norm = {0};
    enc c = {.m = m};
    airllm_heap_init(&c.heap, sizeof(pair), pair_before);
    uint32_t *stack = NULL;
    int rc = -1;
    if (normalize(m, (const uint8_t *)text, len, &norm))
        goto oom;
    if (norm.n >= INT32_MAX / 2) {
        rc = airllm_errf(err, "encode: text too long");
        goto out;
    }
    c.t = norm.p;
    if (m->unigram) {
        rc = unigram(&c, norm.n, err);
        if (rc == 0) {
            *ids = c.ids;
            *n = c.nids;
            c.ids = NULL;
        }
        goto out;
    }
    size_t ns = 0;
    c.sy = malloc((norm.n ? norm.n : 1) * sizeof *c.sy);
    if (!c.sy)
        goto oom;
    for (size_t i = 0; i < norm.n;) {
        size_t l = ud_match(m, norm.p + i, norm.n - i);
        bool fr = l > 0;
        if (!l)
            l = char_len(norm.p[i]);
        if (l > norm.n - i)
            l = norm.n - i;
        c.sy[ns] = (sym){(uint32_t)i, (uint32_t)l, (int32_t)ns - 1, -1, fr};
        if (ns)
            c.sy[ns - 1].next = (int32_t)ns;
        ns++;
        i += l;
    }
    for (size_t i = 1; i < ns; i++)
        if (add_pair(&c, (int32_t)i - 1, (int32_t)i))
            goto oom;
    while (c.heap.n) {
        pair top;
        airllm_heap_pop(&c.heap, &top);
        sym *a = &c.sy[top.left], *b = &c.sy[top.right];
        if (a->len == 0 || b->len == 0 || a->len + b->len != top.size)
            continue; /* stale: one side changed since the pair was queued */
        a->len += b->len;
        a->next = b->next;
        if (b->next >= 0)
            c.sy[b->next].prev = top.left;
        b->len = 0;
        if (add_pair(&c, a->prev, top.left) || add_pair(&c, top.left, a->next))
            goto oom;
    }
    size_t maxlen = 0;
    for (int32_t i = ns ? 0 : -1; i >= 0; i = c.sy[i].next)
        if (c.sy[i].len > maxlen)
            maxlen = c.sy[i].len;
    stack = malloc((2 * maxlen + 8) * sizeof *stack);
    if (!stack)
        goto oom;
    for (int32_t i = ns ? 0 : -1; i >= 0; i = c.sy[i].next)
        if (resegment(&c, c.sy[i].off, c.sy[i].len, stack, 2 * maxlen + 8))
            goto oom;
    *ids = c.ids;
    *n = c.nids;
    c.ids = NULL;
    rc = 0;
    goto out;
oom:
    rc = airllm_errf(err, "out of memory");
out:
    free(norm.p);
    free(c.sy);
    airllm_heap_free(&c.heap);
    free(c.rev);
    free(c.ids);
    free(stack);
    return rc;
}

/* ------------------------------------------------------------------------
 * Decoding
 * ------------------------------------------------------------------------ */

static int out_add(char **out, size_t *len, size_t *cap, const void *s, size_t n)
{
    if (n > SIZE_MAX / 4 - *len)
        return -1;
    if (*len + n + 1 > *cap) {
        size_t c = *cap ? *cap : 64;
        while (c < *len + n + 1)
            c *= 2;
        char *q = realloc(*out, c);
        if (!q)
            return -1;
        *out = q;
        *cap = c;
    }
    if (n)
        memcpy(*out + *len, s, n);
    *len += n;
    (*out)[*len] = 0;
    return 0;
}

static const uint8_t FFFD[3] = {0xEF, 0xBF, 0xBD};

/* Ends a run of byte pieces: sentencepiece decodes the run one character at
 * a time from each offset, and an offset where no valid character starts
 * gives U+FFFD and moves one byte on. The held bytes are an incomplete
 * character, so each of them is such an offset. */
static int flush_bytes(airllm_spm_dec *d, char **out, size_t *len, size_t *cap)
{
    for (size_t i = 0; i < d->npend; i++)
        if (out_add(out, len, cap, FFFD, 3))
            return -1;
    d->npend = 0;
    return 0;
}

static int byte_in(airllm_spm_dec *d, uint8_t b, char **out, size_t *len, size_t *cap)
{
    if (d->npend) {
        if (airllm_utf8_cont_ok(d->pend[0], d->npend, b)) {
            d->pend[d->npend++] = b;
            if (d->npend < d->need)
                return 0;
            d->npend = 0;
            return out_add(out, len, cap, d->pend, d->need);
        }
        if (flush_bytes(d, out, len, cap))
            return -1;
    }
    if (b < 0x80)
        return out_add(out, len, cap, &b, 1);
    if (b >= 0xC2 && b <= 0xF4) {
        d->pend[0] = b;
        d->npend = 1;
        d->need = b < 0xE0 ? 2 : b < 0xF0 ? 3 : 4;
        return 0;
    }
    return out_add(out, len, cap, FFFD, 3);
}

int airllm_spm_decode_step(const airllm_spm *m, airllm_spm_dec *d, int32_t id, char **out,
                           size_t *len, size_t *cap, airllm_err *err)
{
    if (id < 0 || (size_t)id >= m->n)
        return 0;
    const spm_piece *p = &m->pc[id];
    const uint8_t *s = m->arena + p->off;
    size_t n = p->len, before = *len;
    int rc = 0;
    if (p->type == AIRLLM_SPM_BYTE) {
        rc = byte_in(d, (uint8_t)airllm_spm_byte_of_piece(s, n), out, len, cap);
        goto done;
    }
    if (flush_bytes(d, out, len, cap))
        return airllm_errf(err, "out of memory");
    /* sentencepiece_processor.cc Decode: the leading "▁" is consumed until
     * text appears or a piece had one consumed (never with
     * remove_extra_whitespaces, which strips every leading one) */
    if (d->ws_seen || d->text_seen || *len > before)
        d->bos_done = 1;
    d->ws_seen = 0;
    if (p->type == AIRLLM_SPM_CONTROL)
        goto done; /* invisible */
    if (p->type == AIRLLM_SPM_UNKNOWN) {
        rc = out_add(out, len, cap, m->arena + m->unk_surface_off, m->unk_surface_len);
        goto done;
    }
    if (!d->bos_done && (m->add_dummy_prefix || m->remove_ws) && n >= 3 &&
        memcmp(s, SPM_WS, 3) == 0) {
        s += 3;
        n -= 3;
        d->ws_seen = !m->remove_ws;
    }
    for (size_t i = 0; i < n && rc == 0;) {
        if (i + 3 <= n && memcmp(s + i, SPM_WS, 3) == 0) {
            rc = out_add(out, len, cap, " ", 1);
            i += 3;
        } else {
            size_t j = i + 1;
            while (j < n && !(j + 3 <= n && memcmp(s + j, SPM_WS, 3) == 0))
                j++;
            rc = out_add(out, len, cap, s + i, j - i);
            i = j;
        }
    }
done:
    if (rc)
        return airllm_errf(err, "out of memory");
    if (*len > before)
        d->text_seen = 1;
    return 0;
}

int airllm_spm_decode_end(const airllm_spm *m, airllm_spm_dec *d, char **out, size_t *len,
                          size_t *cap, airllm_err *err)
{
    (void)m;
    int rc = flush_bytes(d, out, len, cap);
    memset(d, 0, sizeof *d);
    if (rc == 0 && !*out)
        rc = out_add(out, len, cap, "", 0);
    return rc ? airllm_errf(err, "out of memory") : 0;
}

int airllm_spm_decode(const airllm_spm *m, const int32_t *ids, size_t n, char **text,
                      size_t *len, airllm_err *err)
{
    airllm_spm_dec d = {0};
    char *out = NULL;
    size_t l = 0, cap = 0;
    *text = NULL;
    *len = 0;
    for (size_t i = 0; i < n; i++)
        if (airllm_spm_decode_step(m, &d, ids[i], &out, &l, &cap, err)) {
            free(out);
            return -1;
        }
    if (airllm_spm_decode_end(m, &d, &out, &l, &cap, err)) {
        free(out);
        return -1;
    }
    *text = out;
    *len = l;
    return 0;
}
