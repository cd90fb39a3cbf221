/* Text transforms that run before BPE: the normalizers of tokenizer.json
 * (Prepend, Replace, Strip, NFC: airllm_tok_normalize) and the pre-tokenizer
 * regexes that tokenizers runs through the `onig` engine, matched here by
 * hand (GPT-2's; Llama 3's and Qwen2's as airllm_pretok_llama3, which
 * airllm_tiktoken.c shares). NFC uses lib/airllm_unicode_tables.c. Which
 * steps run, in which order, is airllm_tok_encode.c's business. */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "airllm_pretok.h"
#include "airllm_tok_impl.h"
#include "airllm_unicode.h"

/* ------------------------------------------------------------------------
 * Normalizers
 * ------------------------------------------------------------------------ */

/* Leftmost non-overlapping occurrence of pat in s[from..n), or n. */
size_t airllm_tok_find_str(const uint8_t *s, size_t n, size_t from, const uint8_t *pat, size_t np)
{
    if (np == 0 || np > n)
        return n;
    for (size_t i = from; i + np <= n; i++) {
        const uint8_t *q = memchr(s + i, pat[0], n - np + 1 - i);
        if (!q)
            return n;
        i = (size_t)(q - s);
        if (memcmp(q, pat, np) == 0)
            return i;
    }
    return n;
}

/* -2 as soon as the output would pass max bytes (see airllm_tok_normalize). */
int airllm_tok_replace_all(const uint8_t *s, size_t n, const uint8_t *pat, size_t np,
                           const uint8_t *rep, size_t nr, buf *dst, size_t max)
{
    dst->n = 0;
    size_t i = 0;
    for (;;) {
        size_t j = airllm_tok_find_str(s, n, i, pat, np);
        if (j - i > max - dst->n)
            return -2;
        if (tok_buf_add(dst, s + i, j - i))
            return -1;
        if (j == n)
            return 0;
        if (nr > max - dst->n)
            return -2;
        if (tok_buf_add(dst, rep, nr))
            return -1;
        i = j + np;
    }
}

/* NFC, as tokenizers' NFC normalizer (the unicode-normalization crate)
 * does it: full canonical decomposition, canonical ordering of combining
 * marks, canonical composition (UAX #15). Hangul syllables are computed. */
enum { H_SBASE = 0xAC00, H_LBASE = 0x1100, H_VBASE = 0x1161, H_TBASE = 0x11A7,
       H_LCOUNT = 19, H_VCOUNT = 21, H_TCOUNT = 28, H_NCOUNT = 588, H_SCOUNT = 11172 };

static uint32_t compose(uint32_t a, uint32_t b)
{
    if (a >= H_LBASE && a < H_LBASE + H_LCOUNT && b >= H_VBASE && b < H_VBASE + H_VCOUNT)
        return H_SBASE + ((a - H_LBASE) * H_VCOUNT + (b - H_VBASE)) * H_TCOUNT;
    if (a >= H_SBASE && a < H_SBASE + H_SCOUNT && (a - H_SBASE) % H_TCOUNT == 0 &&
        b > H_TBASE && b < H_TBASE + H_TCOUNT)
        return a + (b - H_TBASE);
    return airllm_uni_compose(a, b);
}

/* Stable sort of a run of combining marks by combining class. Runs are
 * short in real text; a counting sort keeps a long hostile run linear. */
static int sort_marks(uint32_t *cp, size_t n)
{
    if (n <= 32) {
        for (size_t i = 1; i < n; i++) {
            uint32_t c = cp[i];
            int cc = airllm_uni_ccc(c);
            size_t j = i;
            for (; j > 0 && airllm_uni_ccc(cp[j - 1]) > cc; j--)
                cp[j] = cp[j - 1];
            cp[j] = c;
        }
        return 0;
    }
    size_t count[257] = {0};
    uint32_t *tmp = malloc(n * sizeof *tmp);
    if (!tmp)
        return -1;
    for (size_t i = 0; i < n; i++)
        count[airllm_uni_ccc(cp[i]) + 1]++;
    for (int k = 1; k < 257; k++)
        count[k] += count[k - 1];
    for (size_t i = 0; i < n; i++)
        tmp[count[airllm_uni_ccc(cp[i])]++] = cp[i];
    memcpy(cp, tmp, n * sizeof *tmp);
    free(tmp);
    return 0;
}

static int push_cp(buf *w, uint32_t c)
{
    return tok_buf_add(w, &c, sizeof c);
}

int airllm_tok_nfc(const uint8_t *s, size_t n, buf *dst, buf *w)
{
    size_t l;
    w->n = 0;
    for (size_t i = 0; i < n; i += l) {
        uint32_t c = utf8_get(s, n, i, &l);
        const uint32_t *d;
        size_t k;
        if (c >= H_SBASE && c < H_SBASE + H_SCOUNT) {
            uint32_t si = c - H_SBASE, tv = si % H_TCOUNT;
            if (push_cp(w, H_LBASE + si / H_NCOUNT) ||
                push_cp(w, H_VBASE + si % H_NCOUNT / H_TCOUNT) ||
                (tv && push_cp(w, H_TBASE + tv)))
                return -1;
        } else if ((k = airllm_uni_decompose(c, &d)) != 0) {
            for (size_t j = 0; j < k; j++)
                if (push_cp(w, d[j]))
                    return -1;
        } else if (push_cp(w, c)) {
            return -1;
        }
    }
    uint32_t *cp = (uint32_t *)(void *)w->p;
    size_t m = w->n / sizeof *cp;
    for (size_t i = 0; i < m;) {
        if (airllm_uni_ccc(cp[i]) == 0) {
            i++;
            continue;
        }
        size_t j = i;
        while (j < m && airllm_uni_ccc(cp[j]) != 0)
            j++;
        if (sort_marks(cp + i, j - i))
            return -1;
        i = j;
    }
    /* compose: a mark joins the last starter unless something between them
     * is a starter or has a class at least as high (is "blocking") */
    size_t o = 0, starter = SIZE_MAX;
    int last = 0;
    for (size_t i = 0; i < m; i++) {
        uint32_t c = cp[i], k;
        int cc = airllm_uni_ccc(c);
        if (starter != SIZE_MAX && (last < cc || last == 0) && (k = compose(cp[starter], c))) {
            cp[starter] = k;
            continue;
        }
        if (cc == 0)
            starter = o;
        last = cc;
        cp[o++] = c;
    }
    dst->n = 0;
    if (tok_buf_reserve(dst, 4 * o))
        return -1;
    for (size_t i = 0; i < o; i++)
        dst->n += utf8_put(dst->p + dst->n, cp[i]);
    return 0;
}

/* Runs the normalizer over s; the result lands in x or y (or is s itself);
 * w is scratch. -1: out of memory; -2: the text grew past
 * TOK_NORM_GROWTH times its length plus TOK_NORM_SLACK. Real normalizers
 * grow text by a few bytes per character at most (a Prepend, " " to the
 * 3-byte "\u2581", NFC's decompositions), while a kilobyte of chained
 * Replace steps, each multiplying the text, reaches gigabytes. */
int airllm_tok_normalize(const airllm_tokenizer *t, const uint8_t *s, size_t n, buf *x, buf *y,
                         buf *w, const uint8_t **out, size_t *on)
{
    const uint8_t *cur = s;
    size_t cn = n;
    size_t max = n > (SIZE_MAX - TOK_NORM_SLACK) / TOK_NORM_GROWTH
                     ? SIZE_MAX
                     : n * TOK_NORM_GROWTH + TOK_NORM_SLACK;
    for (size_t k = 0; k < t->n_norm; k++) {
        const norm_step *st = &t->norm[k];
        buf *dst = cur == x->p ? y : x;
        switch (st->kind) {
        case NORM_PREPEND: /* tokenizers' Prepend skips empty strings */
            if (cn == 0)
                continue;
            dst->n = 0;
            if (st->a.len > max - cn)
                return -2;
            if (tok_buf_add(dst, S(t, st->a), st->a.len) || tok_buf_add(dst, cur, cn))
                return -1;
            break;
        case NORM_REPLACE: {
            int rc = airllm_tok_replace_all(cur, cn, S(t, st->a), st->a.len, S(t, st->b), st->b.len,
                                            dst, max);
            if (rc)
                return rc;
            break;
        }
        case NORM_NFC: {
            /* everything below U+0300 (lead bytes below 0xCC) is NFC already */
            size_t i = 0;
            while (i < cn && cur[i] < 0xCC)
                i++;
            if (i == cn)
                continue;
            if (airllm_tok_nfc(cur, cn, dst, w))
                return -1;
            if (dst->n > max)
                return -2;
            break;
        }
        case NORM_STRIP: {
            size_t a = 0, b = cn, l;
            while (st->left && a < b && airllm_uni_is_space(utf8_get(cur, cn, a, &l)))
                a += l;
            while (st->right && b > a) {
                size_t p = utf8_prev(cur, b);
                if (!airllm_uni_is_space(utf8_get(cur, cn, p, &l)))
                    break;
                b = p;
            }
            cur += a;
            cn = b - a;
            continue;
        }
        }
        cur = dst->p;
        cn = dst->n;
    }
    *out = cur;
    *on = cn;
    return 0;
}

/* ------------------------------------------------------------------------
 * Pre-tokenizer regexes, by hand
 * ------------------------------------------------------------------------ */

static int is_L(uint32_t c) { return airllm_uni_is_letter(c); }
static int is_N(uint32_t c) { return airllm_uni_is_number(c); }
static int is_S(uint32_t c) { return airllm_uni_is_space(c); }
/* [^\s\p{L}\p{N}] */
static int is_P(uint32_t c) { return !is_S(c) && !is_L(c) && !is_N(c); }

static size_t run_of(const uint8_t *s, size_t n, size_t i, int (*pred)(uint32_t))
{
    size_t l;
    while (i < n && pred(utf8_get(s, n, i, &l)))
        i += l;
    return i;
}

/* `\s+(?!\S)|\s+` at a whitespace character: the run, less its last
 * character when a non-space follows, so that " word" keeps its space. */
static size_t ws_tail(const uint8_t *s, size_t n, size_t i)
{
    size_t j = run_of(s, n, i, is_S);
    if (j == n)
        return j;
    size_t k = utf8_prev(s, j);
    return k > i ? k : j;
}

/* GPT-2: 's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
 * Returns the end of the match at i; every position matches one branch. */
size_t airllm_tok_match_gpt2(const uint8_t *s, size_t n, size_t i)
{
    if (s[i] == '\'' && i + 1 < n) {
        uint8_t a = s[i + 1];
        if (a == 's' || a == 't' || a == 'm' || a == 'd')
            return i + 2;
        if (i + 2 < n && (((a == 'r' || a == 'v') && s[i + 2] == 'e') ||
                          (a == 'l' && s[i + 2] == 'l')))
            return i + 3;
    }
    size_t l;
    uint32_t c = utf8_get(s, n, i, &l);
    if (c == ' ' && i + 1 < n) {
        uint32_t d = utf8_get(s, n, i + 1, &l);
        if (is_L(d))
            return run_of(s, n, i + 1, is_L);
        if (is_N(d))
            return run_of(s, n, i + 1, is_N);
        if (is_P(d))
            return run_of(s, n, i + 1, is_P);
    }
    if (is_L(c))
        return run_of(s, n, i, is_L);
    if (is_N(c))
        return run_of(s, n, i, is_N);
    if (is_P(c))
        return run_of(s, n, i, is_P);
    return ws_tail(s, n, i);
}

/* Simple case folding for the (?i:...) contractions: ASCII, plus U+017F
 * LATIN SMALL LETTER LONG S, which folds to 's' (and U+212A KELVIN SIGN). */
static uint32_t fold(uint32_t c)
{
    if (c >= 'A' && c <= 'Z')
        return c + 32;
    if (c == 0x17F)
        return 's';
    if (c == 0x212A)
        return 'k';
    return c;
}

/* Llama 3 (max_digits 3) and Qwen2 (max_digits 1):
 * (?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}|
 *  ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+ */
size_t airllm_pretok_llama3(const uint8_t *s, size_t n, size_t i, size_t max_digits)
{
    size_t l, l2, l3;
    uint32_t c = utf8_get(s, n, i, &l);
    if (c == '\'' && i + 1 < n) {
        uint32_t a = fold(utf8_get(s, n, i + 1, &l2));
        size_t e = i + 1 + l2;
        if (a == 's' || a == 't' || a == 'm' || a == 'd')
            return e;
        if (e < n) {
            uint32_t b = fold(utf8_get(s, n, e, &l3));
            if (((a == 'r' || a == 'v') && b == 'e') || (a == 'l' && b == 'l'))
                return e + l3;
        }
    }
    /* [^\r\n\p{L}\p{N}]?\p{L}+ : one leading non-letter (a space, a quote)
     * may join the word */
    if (c != '\r' && c != '\n' && !is_L(c) && !is_N(c) && i + l < n &&
        is_L(utf8_get(s, n, i + l, &l2)))
        return run_of(s, n, i + l, is_L);
    if (is_L(c))
        return run_of(s, n, i, is_L);
    if (is_N(c)) {
        size_t j = i;
        for (size_t k = 0; k < max_digits && j < n && is_N(utf8_get(s, n, j, &l2)); k++)
            j += l2;
        return j;
    }
    /*  ?[^\s\p{L}\p{N}]+[\r\n]* */
    size_t p = SIZE_MAX;
    if (c == ' ' && i + 1 < n && is_P(utf8_get(s, n, i + 1, &l2)))
        p = i + 1;
    else if (is_P(c))
        p = i;
    if (p != SIZE_MAX) {
        size_t j = run_of(s, n, p, is_P);
        while (j < n && (s[j] == '\r' || s[j] == '\n'))
            j++;
        return j;
    }
    /* \s*[\r\n]+ : the whitespace run up to its last line break */
    size_t j = run_of(s, n, i, is_S), last = SIZE_MAX;
    for (size_t k = i; k < j; k++) /* \r and \n never occur inside a multibyte character */
        if (s[k] == '\r' || s[k] == '\n')
            last = k;
    if (last != SIZE_MAX)
        return last + 1;
    return ws_tail(s, n, i);
}
