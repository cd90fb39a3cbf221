/* The streaming decoder: ids to text one id at a time, giving out only
 * complete UTF-8 characters, with what tokenizers' decoders do to them
 * (ByteLevel, or per-token Replace / Metaspace / Strip, then ByteFallback,
 * Fuse and a leading Strip), or what sentencepiece and tiktoken do for a
 * model file. airllm_tok_decode is the same over a whole sequence. The
 * state is the decoder's own; the tokenizer is only read. */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "airllm_bytes.h"
#include "airllm_tok_impl.h"

struct airllm_tok_decoder {
    const airllm_tokenizer *t;
    bool skip_special;
    size_t count; /* tokens given to the decoder (Metaspace treats the first apart) */
    airllm_utf8_lossy u8; /* an incomplete UTF-8 character (lossy_byte, run_byte) */
    bool in_run, run_bad; /* inside a run of <0xAB> tokens; the run is invalid */
    size_t strip_done;
    bool strip_over;
    buf out, s1, s2;
    airllm_spm_dec sd; /* tokenizer.model: sentencepiece's decoding state */
};

static const uint8_t FFFD[3] = {0xEF, 0xBF, 0xBD};

/* Appends complete characters, after the post-Fuse Strip of leading ones. */
static int emit_text(airllm_tok_decoder *d, const uint8_t *p, size_t n)
{
    const airllm_tokenizer *t = d->t;
    if (!d->strip_over && n) {
        size_t i = 0, l;
        while (i < n && d->strip_done < t->dec_strip_n &&
               utf8_get(p, n, i, &l) == t->dec_strip_ch) {
            d->strip_done++;
            i += l;
        }
        p += i;
        n -= i;
        if (n || d->strip_done == t->dec_strip_n)
            d->strip_over = true;
    }
    return tok_buf_add(&d->out, p, n);
}

static int emit_fffd(airllm_tok_decoder *d, size_t k)
{
    for (size_t i = 0; i < k; i++)
        if (emit_text(d, FFFD, 3))
            return -1;
    return 0;
}

/* One byte of byte-level output: String::from_utf8_lossy over the whole
 * byte stream, which replaces each maximal invalid prefix with one U+FFFD. */
static int lossy_byte(airllm_tok_decoder *d, uint8_t b)
{
    uint8_t o[6];
    size_t n = airllm_utf8_lossy_byte(&d->u8, b, o);
    return n ? emit_text(d, o, n) : 0;
}

/* One <0xAB> token (tokenizers' ByteFallback decoder). It decodes a run of
 * byte tokens as one string when the run is valid UTF-8, and otherwise
 * gives one U+FFFD per byte token. Streaming cannot wait for the end of a
 * run, so characters are given out as they complete; once the run turns
 * invalid, the held bytes and every later byte of the run become U+FFFD.
 * That equals tokenizers except for a valid character that came earlier in
 * a run which later turns invalid. */
static int run_byte(airllm_tok_decoder *d, uint8_t b)
{
    d->in_run = true;
    if (d->run_bad)
        return emit_fffd(d, 1);
    if (d->u8.npend == 0) {
        if (b < 0x80)
            return emit_text(d, &b, 1);
        if (b >= 0xC2 && b <= 0xF4) {
            d->u8.pend[0] = b;
            d->u8.npend = 1;
            d->u8.need = b < 0xE0 ? 2 : b < 0xF0 ? 3 : 4;
            return 0;
        }
        d->run_bad = true;
        return emit_fffd(d, 1);
    }
    if (airllm_utf8_cont_ok(d->u8.pend[0], d->u8.npend, b)) {
        d->u8.pend[d->u8.npend++] = b;
        if (d->u8.npend < d->u8.need)
            return 0;
        d->u8.npend = 0;
        return emit_text(d, d->u8.pend, d->u8.need);
    }
    size_t k = d->u8.npend + 1u;
    d->u8.npend = 0;
    d->run_bad = true;
    return emit_fffd(d, k);
}

static int run_end(airllm_tok_decoder *d)
{
    if (!d->in_run)
        return 0;
    size_t k = d->u8.npend;
    d->u8.npend = 0;
    d->in_run = d->run_bad = false;
    return emit_fffd(d, k);
}

/* "<0xAB>" as tokenizers' ByteFallback recognizes it (u8::from_str_radix,
 * which also takes a '+' sign). */
static int hexval(uint8_t c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    c |= 0x20;
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    return -1;
}

static bool byte_token(const uint8_t *s, size_t n, uint8_t *b)
{
    if (n != 6 || memcmp(s, "<0x", 3) != 0 || s[5] != '>')
        return false;
    int hi = hexval(s[3]), lo = hexval(s[4]);
    if (s[3] == '+' && lo >= 0)
        hi = 0;
    if (hi < 0 || lo < 0)
        return false;
    *b = (uint8_t)(hi * 16 + lo);
    return true;
}

/* The per-token stages (Replace, Metaspace, Strip) on one token. */
static int token_stages(airllm_tok_decoder *d, const uint8_t **ps, size_t *pn)
{
    const airllm_tokenizer *t = d->t;
    const uint8_t *s = *ps;
    size_t n = *pn, l;
    for (size_t k = 0; k < t->n_dstage; k++) {
        const dec_stage *st = &t->dstage[k];
        buf *dst = s == d->s1.p ? &d->s2 : &d->s1;
        dst->n = 0;
        if (st->kind == DS_REPLACE) {
            if (airllm_tok_replace_all(s, n, S(t, st->pat), st->pat.len, S(t, st->content),
                                       st->content.len, dst, SIZE_MAX))
                return -1;
        } else if (st->kind == DS_METASPACE) {
            /* tokenizers drops every replacement character of the first
             * token (not only a leading one) unless prepend_scheme is never */
            bool drop = d->count == 0 && st->scheme != PS_NEVER;
            for (size_t i = 0; i < n; i += l) {
                uint32_t c = utf8_get(s, n, i, &l);
                if (c != st->ch ? tok_buf_add(dst, s + i, l) : drop ? 0 : tok_buf_add(dst, " ", 1))
                    return -1;
            }
        } else { /* DS_STRIP */
            size_t a = 0, b = n, cut = 0;
            while (cut < st->start && a < b && utf8_get(s, n, a, &l) == st->ch) {
                a += l;
                cut++;
            }
            for (cut = 0; cut < st->stop && b > a; cut++) {
                size_t q = utf8_prev(s, b);
                if (utf8_get(s, n, q, &l) != st->ch)
                    break;
                b = q;
            }
            if (tok_buf_add(dst, s + a, b - a))
                return -1;
        }
        s = dst->p ? dst->p : (const uint8_t *)"";
        n = dst->n;
    }
    *ps = s;
    *pn = n;
    return 0;
}

/* tokenizer.model / *.tiktoken ids. tiktoken: the token's bytes, invalid
 * UTF-8 replaced as Python's decode(errors="replace") does (maximal
 * subparts, like lossy_byte). SentencePiece: sentencepiece's decode, with
 * added tokens as their text. */
static int decode_file(airllm_tok_decoder *d, int32_t id)
{
    const airllm_tokenizer *t = d->t;
    if (id < 0 || (size_t)id >= t->n_ids || t->id_dec[id].off == SPAN_NONE)
        return 0;
    if (d->skip_special && t->id_special[id])
        return 0;
    const uint8_t *s = S(t, t->id_dec[id]);
    size_t n = t->id_dec[id].len;
    d->count++;
    if (t->tt) {
        for (size_t i = 0; i < n; i++)
            if (lossy_byte(d, s[i]))
                return -1;
        return 0;
    }
    char *p = (char *)d->s1.p;
    size_t len = 0, cap = d->s1.cap;
    int rc;
    if (t->id_added[id]) {
        /* ends a run of byte pieces; it is text, so no leading "▁" is
         * consumed after it */
        airllm_spm_dec keep = d->sd;
        rc = airllm_spm_decode_end(t->spm, &d->sd, &p, &len, &cap, NULL);
        d->sd = keep;
        d->sd.npend = 0;
        d->sd.text_seen = 1;
        if (rc == 0)
            rc = tok_buf_add(&d->s2, s, n) ? -1 : 0;
    } else {
        rc = airllm_spm_decode_step(t->spm, &d->sd, id, &p, &len, &cap, NULL);
    }
    d->s1.p = (uint8_t *)p;
    d->s1.cap = cap;
    if (rc || emit_text(d, d->s1.p, len))
        return -1;
    if (t->id_added[id]) {
        rc = emit_text(d, d->s2.p, d->s2.n);
        d->s2.n = 0;
    }
    return rc;
}

static int decode_one(airllm_tok_decoder *d, int32_t id)
{
    const airllm_tokenizer *t = d->t;
    if (t->spm || t->tt)
        return decode_file(d, id);
    if (id < 0 || (size_t)id >= t->n_ids || t->id_dec[id].off == SPAN_NONE)
        return 0; /* tokenizers' decode skips unknown ids too */
    if (d->skip_special && t->id_special[id])
        return 0;
    const uint8_t *s = S(t, t->id_dec[id]);
    size_t n = t->id_dec[id].len, l;
    if (t->dec_byte_level) {
        /* tokenizers' ByteLevel decoder: each character back to its byte; a
         * token with a character outside the map (an added token in another
         * script) contributes its UTF-8 bytes as they are */
        bool mapped = true;
        for (size_t i = 0; i < n && mapped; i += l) {
            uint32_t c = utf8_get(s, n, i, &l);
            mapped = c < 324 && airllm_tok_char_byte[c] >= 0;
        }
        for (size_t i = 0; i < n; i += mapped ? l : 1) {
            uint8_t b = s[i];
            if (mapped)
                b = (uint8_t)airllm_tok_char_byte[utf8_get(s, n, i, &l)];
            if (lossy_byte(d, b))
                return -1;
        }
        d->count++;
        return 0;
    }
    if (token_stages(d, &s, &n))
        return -1;
    d->count++;
    uint8_t b;
    if (t->dec_byte_fallback && byte_token(s, n, &b))
        return run_byte(d, b);
    if (run_end(d))
        return -1;
    if (t->dec_join_space && d->count > 1 && emit_text(d, (const uint8_t *)" ", 1))
        return -1;
    return emit_text(d, s, n);
}

void airllm_tok_decoder_reset(airllm_tok_decoder *d)
{
    d->count = 0;
    memset(&d->u8, 0, sizeof d->u8);
    d->in_run = d->run_bad = false;
    d->strip_done = 0;
    d->strip_over = d->t->dec_strip_n == 0;
    d->out.n = 0;
    memset(&d->sd, 0, sizeof d->sd);
}

int airllm_tok_decoder_new(const airllm_tokenizer *t, int skip_special,
                           airllm_tok_decoder **out, airllm_err *err)
{
    airllm_tok_decoder *d = calloc(1, sizeof *d);
    *out = NULL;
    if (!d)
        return airllm_errf(err, "out of memory");
    d->t = t;
    d->skip_special = skip_special != 0;
    airllm_tok_decoder_reset(d);
    *out = d;
    return 0;
}

void airllm_tok_decoder_free(airllm_tok_decoder *d)
{
    if (!d)
        return;
    tok_buf_free(&d->out);
    tok_buf_free(&d->s1);
    tok_buf_free(&d->s2);
    free(d);
}

static int give(airllm_tok_decoder *d, const char **text, size_t *len, airllm_err *err)
{
    /* a terminating NUL, not counted, so the text is also a C string */
    if (tok_buf_reserve(&d->out, 1))
        return airllm_errf(err, "out of memory");
    d->out.p[d->out.n] = 0;
    *text = (const char *)d->out.p;
    *len = d->out.n;
    return 0;
}

int airllm_tok_decoder_feed(airllm_tok_decoder *d, int32_t id, const char **text, size_t *len,
                            airllm_err *err)
{
    d->out.n = 0;
    if (decode_one(d, id))
        return airllm_errf(err, "out of memory");
    return give(d, text, len, err);
}

int airllm_tok_decoder_flush(airllm_tok_decoder *d, const char **text, size_t *len,
                             airllm_err *err)
{
    d->out.n = 0;
    int rc;
    if (d->t->spm) {
        char *p = (char *)d->s1.p;
        size_t len = 0, cap = d->s1.cap;
        rc = airllm_spm_decode_end(d->t->spm, &d->sd, &p, &len, &cap, NULL);
        d->s1.p = (uint8_t *)p;
        d->s1.cap = cap;
        if (rc == 0)
            rc = emit_text(d, d->s1.p, len);
    } else if (d->t->dec_byte_level || d->t->tt) {
        uint8_t o[3];
        size_t n = airllm_utf8_lossy_end(&d->u8, o);
        rc = n ? emit_text(d, o, n) : 0;
    } else {
        rc = run_end(d);
    }
    if (rc)
        return airllm_errf(err, "out of memory");
    /* keep the output, reset everything else for the next sequence */
    buf keep = d->out;
    airllm_tok_decoder_reset(d);
    d->out = keep;
    return give(d, text, len, err);
}

int airllm_tok_decode(const airllm_tokenizer *t, const int32_t *ids, size_t n, int skip_special,
                      char **text, size_t *len, airllm_err *err)
{
    *text = NULL;
    *len = 0;
    airllm_tok_decoder *d;
    if (airllm_tok_decoder_new(t, skip_special, &d, err))
        return -1;
    buf all = {0};
    const char *p;
    size_t k;
    int rc = 0;
    for (size_t i = 0; i <= n && rc == 0; i++) {
        rc = i < n ? airllm_tok_decoder_feed(d, ids[i], &p, &k, err)
                   : airllm_tok_decoder_flush(d, &p, &k, err);
        if (rc == 0 && tok_buf_add(&all, p, k))
            rc = airllm_errf(err, "out of memory");
    }
    if (rc == 0 && tok_buf_add(&all, "", 1))
        rc = airllm_errf(err, "out of memory");
    airllm_tok_decoder_free(d);
    if (rc) {
        tok_buf_free(&all);
        return -1;
    }
    *text = (char *)all.p;
    *len = all.n - 1;
    return 0;
}
