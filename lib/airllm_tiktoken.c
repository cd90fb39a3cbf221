/* tiktoken ranks file, Qwen's split regex by hand, byte-level BPE by rank.
 * The reference is tiktoken's CoreBPE (src/lib.rs): byte_pair_encode,
 * encode_native, decode_bytes. */
#include "airllm_tiktoken.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "airllm_bytes.h"
#include "airllm_heap.h"
#include "airllm_io.h"
#include "airllm_pretok.h"

/* Ranks may leave holes, but not so many that a tiny file makes us allocate
 * gigabytes: the largest id must stay below the token count plus this. */
#define TT_ID_SLACK 65536u
#define TT_MAX_TOKEN 65536u

typedef struct {
    uint32_t off, len;
    bool used, special;
} tt_tok;

struct airllm_tiktoken {
    uint8_t *arena;
    size_t arena_n, arena_cap;
    tt_tok *tok; /* by id */
    size_t n_ids, n_ranks;
    uint32_t *map; /* bytes -> id + 1, 0 empty (ranks and specials) */
    size_t map_cap, map_n;
    int32_t *specials; /* ids of the special tokens */
    size_t n_specials;
    bool sp_first[256];
};

static uint64_t hash_bytes(const uint8_t *p, size_t n)
{
    uint64_t h = 1469598103934665603ull; /* FNV-1a */
    for (size_t i = 0; i < n; i++)
        h = (h ^ p[i]) * 1099511628211ull;
    return h ^ h >> 29;
}

int32_t airllm_tiktoken_id(const airllm_tiktoken *t, const void *s, size_t n)
{
    if (!t->map_cap)
        return -1;
    size_t mask = t->map_cap - 1;
    for (size_t i = hash_bytes(s, n) & mask;; i = (i + 1) & mask) {
        uint32_t v = t->map[i];
        if (!v)
            return -1;
        const tt_tok *k = &t->tok[v - 1];
        if (k->len == n && memcmp(t->arena + k->off, s, n) == 0)
            return (int32_t)(v - 1);
    }
}

/* Inserts id (already in tok[]); 1 if its bytes were there already. */
static int map_put(airllm_tiktoken *t, int32_t id)
{
    const tt_tok *k = &t->tok[id];
    const uint8_t *s = t->arena + k->off;
    size_t mask = t->map_cap - 1;
    size_t i = hash_bytes(s, k->len) & mask;
    for (; t->map[i]; i = (i + 1) & mask) {
        const tt_tok *o = &t->tok[t->map[i] - 1];
        if (o->len == k->len && memcmp(t->arena + o->off, s, k->len) == 0)
            return 1;
    }
    t->map[i] = (uint32_t)id + 1;
    t->map_n++;
    return 0;
}

static int rehash(airllm_tiktoken *t, size_t cap)
{
    uint32_t *old = t->map;
    size_t oc = t->map_cap;
    t->map = calloc(cap, sizeof *t->map);
    if (!t->map) {
        t->map = old;
        return -1;
    }
    t->map_cap = cap;
    t->map_n = 0;
    for (size_t i = 0; i < oc; i++)
        if (old[i])
            map_put(t, (int32_t)old[i] - 1);
    free(old);
    return 0;
}

/* ------------------------------------------------------------------------
 * Loading
 * ------------------------------------------------------------------------ */

static int b64val(uint8_t c)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    if (c == '+')
        return 62;
    if (c == '/')
        return 63;
    return -1;
}

/* Strict standard base64 with padding; out has room for n / 4 * 3 bytes. */
static int b64decode(const uint8_t *s, size_t n, uint8_t *out, size_t *on)
{
    if (n == 0 || n % 4)
        return -1;
    size_t o = 0;
    for (size_t i = 0; i < n; i += 4) {
        int v[4];
        size_t pad = 0;
        for (int k = 0; k < 4; k++) {
            if (s[i + k] == '=' && i + 4 == n && k >= 2) {
                pad++;
                v[k] = 0;
                continue;
            }
            if (pad || (v[k] = b64val(s[i + k])) < 0)
                return -1;
        }
        uint32_t x = (uint32_t)v[0] << 18 | (uint32_t)v[1] << 12 | (uint32_t)v[2] << 6 |
                     (uint32_t)v[3];
        out[o++] = (uint8_t)(x >> 16);
        if (pad < 2)
            out[o++] = (uint8_t)(x >> 8);
        if (pad < 1)
            out[o++] = (uint8_t)x;
    }
    *on = o;
    return 0;
}

static bool is_ws(uint8_t c)
{
    return c == ' ' || c == '\t' || c == '\v' || c == '\f';
}

typedef struct {
    size_t tok_off, tok_len; /* base64 field in the file */
    uint64_t rank;
    size_t line;
} tt_line;

/* Splits the file into lines of two fields, checking each. */
static int scan_lines(const uint8_t *d, size_t len, tt_line *lines, size_t *count,
                      airllm_err *err)
{
    size_t n = 0, line = 0;
    for (size_t i = 0; i < len;) {
        size_t e = i;
        while (e < len && d[e] != '\n' && d[e] != '\r')
            e++;
        line++;
        size_t a = i;
        while (a < e && is_ws(d[a]))
            a++;
        if (a < e) {
            for (size_t k = i; k < e; k++)
                if (d[k] >= 0x7F || (d[k] < 0x20 && !is_ws(d[k])))
                    return airllm_errf(err, "line %zu: byte %zu is not printable ASCII (0x%02X)",
                                       line, k, d[k]);
            size_t b = a;
            while (b < e && !is_ws(d[b]))
                b++;
            size_t c = b;
            while (c < e && is_ws(d[c]))
                c++;
            size_t r = c;
            while (r < e && !is_ws(d[r]))
                r++;
            size_t z = r;
            while (z < e && is_ws(d[z]))
                z++;
            if (c == e || z != e)
                return airllm_errf(err, "line %zu: expected \"BASE64 RANK\"", line);
            uint64_t rank = 0;
            for (size_t k = c; k < r; k++) {
                if (d[k] < '0' || d[k] > '9')
                    return airllm_errf(err, "line %zu: the rank \"%.*s\" is not a decimal "
                                            "number", line, (int)(r - c < 20 ? r - c : 20),
                                       (const char *)d + c);
                rank = rank * 10 + (uint64_t)(d[k] - '0');
                if (rank > INT32_MAX - 1)
                    return airllm_errf(err, "line %zu: rank out of range (at most 2^31-2)",
                                       line);
            }
            if (b - a > TT_MAX_TOKEN)
                return airllm_errf(err, "line %zu: token longer than %u base64 bytes", line,
                                   TT_MAX_TOKEN);
            lines[n++] = (tt_line){a, b - a, rank, line};
        }
        /* \r, \n and \r\n end a line (the empty line inside \r\n is
         * skipped like any blank one) */
        i = e < len ? e + 1 : e;
    }
    *count = n;
    return 0;
}

static int load(airllm_tiktoken *t, const uint8_t *d, size_t len, airllm_err *err)
{
    /* every line takes at least 4 bytes ("X 0\n"), so the count is bounded */
    tt_line *lines = malloc((len / 4 + 1) * sizeof *lines);
    if (!lines)
        return airllm_errf(err, "out of memory");
    size_t n = 0;
    int rc = -1;
    if (scan_lines(d, len, lines, &n, err))
        goto out;
    if (n == 0) {
        airllm_errf(err, "no ranks");
        goto out;
    }
    uint64_t max_rank = 0;
    for (size_t i = 0; i < n; i++)
        if (lines[i].rank > max_rank)
            max_rank = lines[i].rank;
    if (max_rank >= n + TT_ID_SLACK) {
        airllm_errf(err, "rank %llu is out of range: the file has %zu tokens, and ranks must "
                         "stay below %zu", (unsigned long long)max_rank, n, n + TT_ID_SLACK);
        goto out;
    }
    t->n_ids = (size_t)max_rank + 1;
    t->n_ranks = n;
    t->tok = calloc(t->n_ids, sizeof *t->tok);
    t->arena_cap = len + 64; /* decoded tokens are shorter than their base64 */
    t->arena = malloc(t->arena_cap);
    for (t->map_cap = 64; t->map_cap < 2 * n + 16;)
        t->map_cap *= 2;
    t->map = calloc(t->map_cap, sizeof *t->map);
    if (!t->tok || !t->arena || !t->map) {
        airllm_errf(err, "out of memory");
        goto out;
    }
    for (size_t i = 0; i < n; i++) {
        const tt_line *l = &lines[i];
        size_t on;
        uint8_t *o = t->arena + t->arena_n;
        if (b64decode(d + l->tok_off, l->tok_len, o, &on) || on == 0) {
            airllm_errf(err, "line %zu: \"%.*s\" is not valid base64", l->line,
                        (int)(l->tok_len < 40 ? l->tok_len : 40), (const char *)d + l->tok_off);
            goto out;
        }
        tt_tok *k = &t->tok[l->rank];
        if (k->used) {
            airllm_errf(err, "line %zu: rank %llu is given twice", l->line,
                        (unsigned long long)l->rank);
            goto out;
        }
        *k = (tt_tok){(uint32_t)t->arena_n, (uint32_t)on, true, false};
        if (map_put(t, (int32_t)l->rank)) {
            airllm_errf(err, "line %zu: token \"%.*s\" is listed twice", l->line,
                        (int)(l->tok_len < 40 ? l->tok_len : 40), (const char *)d + l->tok_off);
            goto out;
        }
        t->arena_n += on;
    }
    rc = 0;
out:
    free(lines);
    return rc;
}

int airllm_tiktoken_load_buffer(const char *data, size_t len, const char *name,
                                airllm_tiktoken **out, airllm_err *err)
{
    *out = NULL;
    if (!name)
        name = "qwen.tiktoken";
    if (!data && len)
        return airllm_errf(err, "%s: no data", name);
    if (len > AIRLLM_TIKTOKEN_MAX_FILE)
        return airllm_errf(err, "%s: %zu bytes is too large (at most %u)", name, len,
                           AIRLLM_TIKTOKEN_MAX_FILE);
    airllm_tiktoken *t = calloc(1, sizeof *t);
    if (!t)
        return airllm_errf(err, "out of memory");
    if (load(t, (const uint8_t *)data, len, err)) {
        airllm_err_prefix(err, "%s", name);
        airllm_tiktoken_free(t);
        return -1;
    }
    *out = t;
    return 0;
}

int airllm_tiktoken_load(const char *path, airllm_tiktoken **out, airllm_err *err)
{
    char *d;
    size_t len;
    *out = NULL;
    if (airllm_read_small_file(path, AIRLLM_TIKTOKEN_MAX_FILE, &d, &len, err))
        return -1;
    int rc = airllm_tiktoken_load_buffer(d, len, path, out, err);
    free(d);
    return rc;
}

void airllm_tiktoken_free(airllm_tiktoken *t)
{
    if (!t)
        return;
    free(t->arena);
    free(t->tok);
    free(t->map);
    free(t->specials);
    free(t);
}

int airllm_tiktoken_add_special(airllm_tiktoken *t, const char *s, size_t len, int32_t id,
                                airllm_err *err)
{
    if (len == 0 || len > TT_MAX_TOKEN || airllm_utf8_check((const uint8_t *)s, len))
        return airllm_errf(err, "special token: empty, too long or not UTF-8");
    if (id < 0 || (size_t)id >= t->n_ranks + 2 * TT_ID_SLACK)
        return airllm_errf(err, "special token \"%.*s\": id %d out of range", (int)len, s, id);
    if (airllm_tiktoken_id(t, s, len) >= 0)
        return airllm_errf(err, "special token \"%.*s\" is already a token", (int)len, s);
    if ((size_t)id < t->n_ids && t->tok[id].used)
        return airllm_errf(err, "special token \"%.*s\": id %d is taken", (int)len, s, id);
    if ((size_t)id >= t->n_ids) {
        tt_tok *q = realloc(t->tok, ((size_t)id + 1) * sizeof *q);
        if (!q)
            return airllm_errf(err, "out of memory");
        memset(q + t->n_ids, 0, ((size_t)id + 1 - t->n_ids) * sizeof *q);
        t->tok = q;
        t->n_ids = (size_t)id + 1;
    }
    if (t->arena_n + len > t->arena_cap) {
        size_t cap = (t->arena_n + len) * 2;
        uint8_t *q = realloc(t->arena, cap);
        if (!q)
            return airllm_errf(err, "out of memory");
        t->arena = q;
        t->arena_cap = cap;
    }
    int32_t *sp = realloc(t->specials, (t->n_specials + 1) * sizeof *sp);
    if (!sp)
        return airllm_errf(err, "out of memory");
    t->specials = sp;
    if ((t->map_n + 1) * 2 > t->map_cap && rehash(t, t->map_cap * 2))
        return airllm_errf(err, "out of memory");
    memcpy(t->arena + t->arena_n, s, len);
    t->tok[id] = (tt_tok){(uint32_t)t->arena_n, (uint32_t)len, true, true};
    t->arena_n += len;
    map_put(t, id);
    t->specials[t->n_specials++] = id;
    t->sp_first[(uint8_t)s[0]] = true;
    return 0;
}

int airllm_tiktoken_add_qwen_specials(airllm_tiktoken *t, int32_t start, airllm_err *err)
{
    static const char *first[] = {"<|endoftext|>", "<|im_start|>", "<|im_end|>"};
    char name[32];
    for (int i = 0; i < 3 + 205; i++) {
        if (i < 3)
            snprintf(name, sizeof name, "%s", first[i]);
        else
            snprintf(name, sizeof name, "<|extra_%d|>", i - 3);
        if (airllm_tiktoken_add_special(t, name, strlen(name), start + i, err))
            return -1;
    }
    return 0;
}

size_t airllm_tiktoken_n_ranks(const airllm_tiktoken *t) { return t->n_ranks; }
size_t airllm_tiktoken_vocab_size(const airllm_tiktoken *t) { return t->n_ids; }

const uint8_t *airllm_tiktoken_token(const airllm_tiktoken *t, int32_t id, size_t *len,
                                     int *special)
{
    if (id < 0 || (size_t)id >= t->n_ids || !t->tok[id].used)
        return NULL;
    *len = t->tok[id].len;
    if (special)
        *special = t->tok[id].special;
    return t->arena + t->tok[id].off;
}

/* ------------------------------------------------------------------------
 * Byte pair merging
 * ------------------------------------------------------------------------ */

typedef struct {
    uint32_t rank, start, end; /* the pair spans [start, end) */
} tt_pair;

typedef struct {
    const airllm_tiktoken *t;
    int32_t *ids;
    size_t n, cap;
    uint32_t *next; /* part start -> next part start (n: end) */
    uint8_t *alive;
    size_t part_cap;
    airllm_heap heap; /* of tt_pair, pair_before */
    airllm_err *err;
} tt_enc;

static bool pair_before(const void *va, const void *vb)
{
    const tt_pair *a = va, *b = vb;
    return a->rank < b->rank || (a->rank == b->rank && a->start < b->start);
}

static int emit(tt_enc *c, int32_t id)
{
    int32_t *q = airllm_grow(c->ids, &c->cap, c->n, sizeof *q, 64);
    if (!q)
        return airllm_errf(c->err, "out of memory");
    c->ids = q;
    c->ids[c->n++] = id;
    return 0;
}

/* A ranked (non-special) token's id, or -1. */
static int32_t rank_of(const airllm_tiktoken *t, const uint8_t *s, size_t n)
{
    int32_t id = airllm_tiktoken_id(t, s, n);
    return id >= 0 && !t->tok[id].special ? id : -1;
}

static int push_pair(tt_enc *c, const uint8_t *s, size_t n, uint32_t a)
{
    uint32_t b = c->next[a];
    if (b >= n)
        return 0;
    uint32_t e = c->next[b];
    int32_t r = rank_of(c->t, s + a, e - a);
    if (r < 0)
        return 0;
    tt_pair p = {(uint32_t)r, a, e};
    return airllm_heap_push(&c->heap, &p);
}

/* tiktoken's byte_pair_encode: the whole piece if it is a token, else merge
 * the lowest-ranked adjacent pair, leftmost on ties, until none has a rank.
 * A heap of pairs replaces tiktoken's linear scans; an entry is stale when
 * its left part has gone or no longer ends where the pair's right part
 * ended (parts only grow, so equal bounds mean the same pair). */
static int bpe_piece(tt_enc *c, const uint8_t *s, size_t n)
{
    int32_t id = rank_of(c->t, s, n);
    if (id >= 0)
        return emit(c, id);
    if (n + 1 > c->part_cap) {
        uint32_t *nx = realloc(c->next, (n + 1) * sizeof *nx);
        if (!nx)
            return airllm_errf(c->err, "out of memory");
        c->next = nx;
        uint8_t *al = realloc(c->alive, n + 1);
        if (!al)
            return airllm_errf(c->err, "out of memory");
        c->alive = al;
        c->part_cap = n + 1;
    }
    for (size_t i = 0; i < n; i++) {
        c->next[i] = (uint32_t)i + 1;
        c->alive[i] = 1;
    }
    c->heap.n = 0;
    for (size_t i = 0; i + 1 < n; i++)
        if (push_pair(c, s, n, (uint32_t)i))
            return airllm_errf(c->err, "out of memory");
    while (c->heap.n) {
        tt_pair p;
        airllm_heap_pop(&c->heap, &p);
        if (!c->alive[p.start] || c->next[p.start] >= n || c->next[c->next[p.start]] != p.end)
            continue;
        uint32_t b = c->next[p.start];
        c->alive[b] = 0;
        c->next[p.start] = p.end;
        /* the pair ending at p.start, and the one starting there, change */
        if (p.start > 0) {
            uint32_t a = p.start - 1;
            while (!c->alive[a])
                a--;
            if (push_pair(c, s, n, a))
                return airllm_errf(c->err, "out of memory");
        }
        if (push_pair(c, s, n, p.start))
            return airllm_errf(c->err, "out of memory");
    }
    for (uint32_t a = 0; a < n; a = c->next[a]) {
        id = rank_of(c->t, s + a, c->next[a] - a);
        if (id < 0)
            return airllm_errf(c->err, "encode: the byte 0x%02X has no rank in the file, so "
                                       "the text cannot be encoded", s[a]);
        if (emit(c, id))
            return -1;
    }
    return 0;
}

static int encode_ordinary(tt_enc *c, const uint8_t *s, size_t n)
{
    for (size_t i = 0; i < n;) {
        size_t e = airllm_pretok_llama3(s, n, i, 1);
        if (bpe_piece(c, s + i, e - i))
            return -1;
        i = e;
    }
    return 0;
}

/* The leftmost special token in s, longest at that position; -1 if none. */
static int32_t find_special(const airllm_tiktoken *t, const uint8_t *s, size_t n, size_t *at)
{
    for (size_t i = 0; i < n; i++) {
        if (!t->sp_first[s[i]])
            continue;
        int32_t best = -1;
        for (size_t k = 0; k < t->n_specials; k++) {
            const tt_tok *sp = &t->tok[t->specials[k]];
            if (sp->len <= n - i && memcmp(s + i, t->arena + sp->off, sp->len) == 0 &&
                (best < 0 || sp->len > t->tok[best].len))
                best = t->specials[k];
        }
        if (best >= 0) {
            *at = i;
            return best;
        }
    }
    return -1;
}

static int tt_encode(const airllm_tiktoken *t, const char *text, size_t len, bool specials,
                     int32_t **ids, size_t *n, airllm_err *err);

int airllm_tiktoken_encode(const airllm_tiktoken *t, const char *text, size_t len, int32_t **ids,
                           size_t *n, airllm_err *err)
{
    return tt_encode(t, text, len, true, ids, n, err);
}

int airllm_tiktoken_encode_ordinary(const airllm_tiktoken *t, const char *text, size_t len,
                                    int32_t **ids, size_t *n, airllm_err *err)
{
    return tt_encode(t, text, len, false, ids, n, err);
}

static int tt_encode(const airllm_tiktoken *t, const char *text, size_t len, bool specials,
                     int32_t **ids, size_t *n, airllm_err *err)
{
    *ids = NULL;
    *n = 0;
    if (!text && len)
        return airllm_errf(err, "encode: no text");
    size_t bad = airllm_utf8_first_bad((const uint8_t *)text, len);
    if (bad < len)
        return airllm_errf(err, "encode: text is not valid UTF-8 (byte %zu)", bad);
    if (len >= UINT32_MAX)
        return airllm_errf(err, "encode: text too long");
    tt_enc c = {.t = t, .err = err};
    airllm_heap_init(&c.heap, sizeof(tt_pair), pair_before);
    const uint8_t *s = (const uint8_t *)text;
    int rc = 0;
    /* as tiktoken: the regex runs over the text between specials only */
    for (size_t i = 0; i < len && rc == 0;) {
        size_t at = len;
        int32_t sp = specials && t->n_specials ? find_special(t, s + i, len - i, &at) : -1;
        size_t end = sp >= 0 ? i + at : len;
        rc = encode_ordinary(&c, s + i, end - i);
        if (rc == 0 && sp >= 0)
            rc = emit(&c, sp);
        i = sp >= 0 ? end + t->tok[sp].len : len;
    }
    free(c.next);
    free(c.alive);
    airllm_heap_free(&c.heap);
    if (rc) {
        free(c.ids);
        return -1;
    }
    *ids = c.ids;
    *n = c.n;
    return 0;
}

/* ------------------------------------------------------------------------
 * Decoding
 * ------------------------------------------------------------------------ */

int airllm_tiktoken_decode(const airllm_tiktoken *t, const int32_t *ids, size_t n, char **text,
                           size_t *len, airllm_err *err)
{
    *text = NULL;
    *len = 0;
    size_t total = 0;
    for (size_t i = 0; i < n; i++)
        if (ids[i] >= 0 && (size_t)ids[i] < t->n_ids && t->tok[ids[i]].used)
            total += t->tok[ids[i]].len;
    /* at most 3 bytes out per byte in, plus the 6 bytes of room
     * airllm_utf8_lossy_byte asks for and the NUL */
    if (total > (SIZE_MAX - 7) / 3)
        return airllm_errf(err, "decode: too long");
    uint8_t *out = malloc(3 * total + 7);
    if (!out)
        return airllm_errf(err, "out of memory");
    /* the bytes of all the tokens as one stream, as Python's decoder
     * replaces invalid UTF-8 in the joined bytes */
    airllm_utf8_lossy u = {0};
    size_t o = 0;
    for (size_t i = 0; i < n; i++)
        if (ids[i] >= 0 && (size_t)ids[i] < t->n_ids && t->tok[ids[i]].used) {
            const uint8_t *p = t->arena + t->tok[ids[i]].off;
            for (size_t j = 0; j < t->tok[ids[i]].len; j++)
                o += airllm_utf8_lossy_byte(&u, p[j], out + o);
        }
    o += airllm_utf8_lossy_end(&u, out + o);
    out[o] = 0;
    *text = (char *)out;
    *len = o;
    return 0;
}
