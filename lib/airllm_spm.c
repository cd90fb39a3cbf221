/* SentencePiece tokenizer.model: the bounded protobuf reader and the checks
 * sentencepiece's ModelInterface::InitializePieces makes (the encoder and
 * decoder are in airllm_spm_encode.c). */
#include "airllm_spm.h"

#include <ctype.h>
#include <math.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "airllm_bytes.h"
#include "airllm_io.h"

#include "airllm_spm_impl.h"

/* Longest piece accepted; real ones are under 100 bytes. */
#define SPM_MAX_PIECE 65536u

/* ------------------------------------------------------------------------
 * Piece map
 * ------------------------------------------------------------------------ */

static uint64_t hash_bytes(const uint8_t *p, size_t n)
{
    uint64_t h = 1469598103934665603ull; /* FNV-1a */
    for (size_t i = 0; i < n; i++)
        h = (h ^ p[i]) * 1099511628211ull;
    return h ^ h >> 29;
}

int32_t airllm_spm_map_get(const airllm_spm *m, const uint8_t *s, size_t n)
{
    if (!m->map_cap)
        return -1;
    size_t mask = m->map_cap - 1;
    for (size_t i = hash_bytes(s, n) & mask;; i = (i + 1) & mask) {
        uint32_t v = m->map[i];
        if (!v)
            return -1;
        const spm_piece *p = &m->pc[v - 1];
        if (p->len == n && memcmp(m->arena + p->off, s, n) == 0)
            return (int32_t)(v - 1);
    }
}

/* ------------------------------------------------------------------------
 * Protobuf wire format, bounded
 * ------------------------------------------------------------------------ */

typedef struct {
    const uint8_t *base; /* start of the file, for offsets in messages */
    const uint8_t *p, *end;
    airllm_err *err;
} pb;

enum { WT_VARINT = 0, WT_I64 = 1, WT_LEN = 2, WT_I32 = 5 };

static int pb_varint(pb *r, uint64_t *v)
{
    uint64_t x = 0;
    for (int shift = 0; shift < 70; shift += 7) {
        if (r->p >= r->end)
            return airllm_errf(r->err, "truncated: a varint at byte %zu runs past the end",
                               (size_t)(r->p - r->base));
        uint8_t b = *r->p++;
        if (shift == 63 && b > 1)
            return airllm_errf(r->err, "a varint at byte %zu overflows 64 bits",
                               (size_t)(r->p - r->base));
        x |= (uint64_t)(b & 0x7F) << shift;
        if (!(b & 0x80)) {
            *v = x;
            return 0;
        }
    }
    return airllm_errf(r->err, "a varint at byte %zu is longer than 10 bytes",
                       (size_t)(r->p - r->base));
}

/* One field: its number, wire type, and its value (varint / fixed) or its
 * bytes (length-delimited, bounded by what remains of the enclosing
 * message). */
typedef struct {
    uint32_t num;
    int wt;
    uint64_t v;
    const uint8_t *data;
    size_t len;
} pb_field;

static int pb_next(pb *r, pb_field *f)
{
    uint64_t key;
    size_t at = (size_t)(r->p - r->base);
    f->data = NULL;
    f->len = 0;
    if (pb_varint(r, &key))
        return -1;
    f->num = (uint32_t)(key >> 3);
    f->wt = (int)(key & 7);
    if (key >> 3 == 0 || key >> 3 > 536870911u)
        return airllm_errf(r->err, "byte %zu: invalid field number %llu", at,
                           (unsigned long long)(key >> 3));
    size_t left;
    switch (f->wt) {
    case WT_VARINT:
        return pb_varint(r, &f->v);
    case WT_I64:
    case WT_I32: {
        size_t k = f->wt == WT_I64 ? 8 : 4;
        if ((size_t)(r->end - r->p) < k)
            return airllm_errf(r->err, "truncated: field %u at byte %zu needs %zu bytes, %zu "
                                       "left", f->num, at, k, (size_t)(r->end - r->p));
        f->v = k == 8 ? airllm_get_le64(r->p) : airllm_get_le32(r->p);
        f->data = r->p;
        r->p += k;
        return 0;
    }
    case WT_LEN:
        if (pb_varint(r, &f->v))
            return -1;
        left = (size_t)(r->end - r->p);
        if (f->v > left)
            return airllm_errf(r->err, "field %u at byte %zu: length %llu runs past the end "
                                       "(%zu bytes left)", f->num, at,
                               (unsigned long long)f->v, left);
        f->data = r->p;
        f->len = (size_t)f->v;
        r->p += f->len;
        return 0;
    default:
        return airllm_errf(r->err, "field %u at byte %zu: unsupported wire type %d", f->num,
                           at, f->wt);
    }
}

static int want(pb *r, const pb_field *f, int wt, const char *what)
{
    if (f->wt != wt)
        return airllm_errf(r->err, "%s (field %u at byte %zu) has wire type %d, expected %d",
                           what, f->num, (size_t)(f->data ? f->data - r->base : 0), f->wt, wt);
    return 0;
}

/* A sub-reader over a length-delimited field's bytes. */
static pb pb_sub(const pb *r, const pb_field *f)
{
    if (f->wt != WT_LEN || !f->data) /* callers check the wire type first */
        return (pb){r->base, r->p, r->p, r->err};
    return (pb){r->base, f->data, f->data + f->len, r->err};
}

/* ------------------------------------------------------------------------
 * Loading
 * ------------------------------------------------------------------------ */

typedef struct {
    const uint8_t *p;
    size_t n;
} str;

typedef struct {
    int model_type;
    bool byte_fallback, ws_suffix;
    str unk_piece, bos_piece, eos_piece, pad_piece, unk_surface;
    str norm_name, charsmap;
    bool add_dummy_prefix, remove_ws, escape_ws;
    str denorm_charsmap;
} spec;

static int read_str(pb *r, const pb_field *f, str *out, const char *what)
{
    if (want(r, f, WT_LEN, what))
        return -1;
    out->p = f->data;
    out->n = f->len;
    return 0;
}

static int read_bool(pb *r, const pb_field *f, bool *out, const char *what)
{
    if (want(r, f, WT_VARINT, what))
        return -1;
    *out = f->v != 0;
    return 0;
}

static int load_trainer(pb *r, spec *s)
{
    pb_field f;
    while (r->p < r->end) {
        if (pb_next(r, &f))
            return -1;
        int rc = 0;
        switch (f.num) {
        case 3:
            rc = want(r, &f, WT_VARINT, "trainer_spec.model_type");
            s->model_type = (int)(f.v > 100 ? 100 : f.v);
            break;
        case 24: rc = read_bool(r, &f, &s->ws_suffix, "treat_whitespace_as_suffix"); break;
        case 35: rc = read_bool(r, &f, &s->byte_fallback, "byte_fallback"); break;
        case 44: rc = read_str(r, &f, &s->unk_surface, "unk_surface"); break;
        case 45: rc = read_str(r, &f, &s->unk_piece, "unk_piece"); break;
        case 46: rc = read_str(r, &f, &s->bos_piece, "bos_piece"); break;
        case 47: rc = read_str(r, &f, &s->eos_piece, "eos_piece"); break;
        case 48: rc = read_str(r, &f, &s->pad_piece, "pad_piece"); break;
        default: break; /* training options: no effect on encoding */
        }
        if (rc)
            return -1;
    }
    return 0;
}

static int load_normalizer(pb *r, spec *s, bool denorm)
{
    pb_field f;
    while (r->p < r->end) {
        if (pb_next(r, &f))
            return -1;
        int rc = 0;
        if (denorm) {
            if (f.num == 2)
                rc = read_str(r, &f, &s->denorm_charsmap, "denormalizer_spec.precompiled_charsmap");
        } else {
            switch (f.num) {
            case 1: rc = read_str(r, &f, &s->norm_name, "normalizer_spec.name"); break;
            case 2: rc = read_str(r, &f, &s->charsmap, "precompiled_charsmap"); break;
            case 3: rc = read_bool(r, &f, &s->add_dummy_prefix, "add_dummy_prefix"); break;
            case 4: rc = read_bool(r, &f, &s->remove_ws, "remove_extra_whitespaces"); break;
            case 5: rc = read_bool(r, &f, &s->escape_ws, "escape_whitespaces"); break;
            default: break;
            }
        }
        if (rc)
            return -1;
    }
    return 0;
}

/* The arena is sized up front from the file length (see load_model). */
static int arena_add(airllm_spm *m, const uint8_t *s, size_t n, uint32_t *off)
{
    *off = (uint32_t)m->arena_n;
    memcpy(m->arena + m->arena_n, s, n);
    m->arena_n += n;
    return 0;
}

static int load_piece(pb *r, airllm_spm *m, size_t idx, const pb_field *outer)
{
    pb sub = pb_sub(r, outer);
    pb_field f;
    str piece = {NULL, 0};
    bool have = false;
    spm_piece *p = &m->pc[idx];
    p->score = 0;
    p->type = AIRLLM_SPM_NORMAL;
    while (sub.p < sub.end) {
        if (pb_next(&sub, &f))
            return -1;
        if (f.num == 1) {
            if (read_str(&sub, &f, &piece, "piece"))
                return -1;
            have = true;
        } else if (f.num == 2) {
            if (want(&sub, &f, WT_I32, "score"))
                return -1;
            uint32_t u = (uint32_t)f.v;
            memcpy(&p->score, &u, 4);
            if (isnan(p->score))
                return airllm_errf(r->err, "piece %zu: the score is NaN", idx);
        } else if (f.num == 3) {
            if (want(&sub, &f, WT_VARINT, "type"))
                return -1;
            if (f.v < 1 || f.v > 6)
                return airllm_errf(r->err, "piece %zu: unknown type %llu", idx,
                                   (unsigned long long)f.v);
            p->type = (uint8_t)f.v;
        }
    }
    if (!have || piece.n == 0)
        return airllm_errf(r->err, "piece %zu is empty", idx);
    if (piece.n > SPM_MAX_PIECE)
        return airllm_errf(r->err, "piece %zu is %zu bytes long (at most %u)", idx, piece.n,
                           SPM_MAX_PIECE);
    size_t bad = airllm_utf8_first_bad(piece.p, piece.n);
    if (bad < piece.n)
        return airllm_errf(r->err, "piece %zu is not valid UTF-8 (byte %zu of the piece, "
                                   "byte %zu of the file)", idx, bad,
                           (size_t)(piece.p - r->base) + bad);
    p->len = (uint32_t)piece.n;
    return arena_add(m, piece.p, piece.n, &p->off);
}

int airllm_spm_byte_of_piece(const uint8_t *s, size_t n)
{
    static const char hex[] = "0123456789ABCDEF";
    if (n != 6 || memcmp(s, "<0x", 3) != 0 || s[5] != '>')
        return -1;
    const char *a = memchr(hex, s[3], 16), *b = memchr(hex, s[4], 16);
    if (!a || !b || !s[3] || !s[4])
        return -1;
    return (int)((a - hex) * 16 + (b - hex));
}

static int32_t named(const airllm_spm *m, str s, const char *dflt, bool control)
{
    const uint8_t *p = s.p ? s.p : (const uint8_t *)dflt;
    size_t n = s.p ? s.n : strlen(dflt);
    int32_t id = airllm_spm_map_get(m, p, n);
    if (id >= 0 && control && m->pc[id].type != AIRLLM_SPM_CONTROL &&
        m->pc[id].type != AIRLLM_SPM_USER_DEFINED)
        return -1;
    return id;
}

static int check_model(pb *r, airllm_spm *m, const spec *s)
{
    static const char *types[] = {"?", "UNIGRAM", "BPE", "WORD", "CHAR"};
    if (s->model_type != 1 && s->model_type != 2)
        return airllm_errf(r->err, "unsupported model type %s (only BPE and UNIGRAM are "
                                   "implemented)",
                           s->model_type >= 1 && s->model_type <= 4 ? types[s->model_type]
                                                                     : "(unknown)");
    if (s->charsmap.n)
        return airllm_errf(r->err, "the normalizer \"%.*s\" uses a precompiled charsmap "
                                   "(%zu bytes), which this reader does not implement (only "
                                   "identity normalization)", (int)(s->norm_name.n < 64 ? s->norm_name.n : 64),
                           s->norm_name.p ? (const char *)s->norm_name.p : "", s->charsmap.n);
    if (s->denorm_charsmap.n)
        return airllm_errf(r->err, "a denormalizer charsmap is not supported");
    if (s->ws_suffix)
        return airllm_errf(r->err, "treat_whitespace_as_suffix is not supported");
    m->unigram = s->model_type == 1;
    m->byte_fallback = s->byte_fallback;
    m->add_dummy_prefix = s->add_dummy_prefix;
    m->remove_ws = s->remove_ws;
    m->escape_ws = s->escape_ws;
    m->unk = -1;
    for (int b = 0; b < 256; b++)
        m->byte_id[b] = -1;
    size_t maxlen = 0;
    for (size_t i = 0; i < m->n; i++) {
        const spm_piece *p = &m->pc[i];
        const uint8_t *ps = m->arena + p->off;
        if (p->type == AIRLLM_SPM_UNKNOWN) {
            if (m->unk >= 0)
                return airllm_errf(r->err, "pieces %d and %zu are both of type UNKNOWN", m->unk, i);
            m->unk = (int32_t)i;
        } else if (p->type == AIRLLM_SPM_BYTE) {
            int b = airllm_spm_byte_of_piece(ps, p->len);
            if (!s->byte_fallback)
                return airllm_errf(r->err, "piece %zu is a byte piece but byte_fallback is off", i);
            if (b < 0)
                return airllm_errf(r->err, "piece %zu (\"%.*s\") is of type BYTE but is not "
                                           "<0xAB>", i, (int)(p->len < 40 ? p->len : 40), ps);
            m->byte_id[b] = (int32_t)i;
        } else if (p->type == AIRLLM_SPM_USER_DEFINED) {
            m->ud_first[ps[0]] = true;
            if (p->len > maxlen)
                maxlen = p->len;
        }
    }
    if (m->unk < 0)
        return airllm_errf(r->err, "no piece of type UNKNOWN (<unk>)");
    if (s->byte_fallback)
        for (int b = 0; b < 256; b++)
            if (m->byte_id[b] < 0)
                return airllm_errf(r->err, "byte_fallback is on but the byte piece <0x%02X> is "
                                           "missing", b);
    /* distinct user-defined lengths, longest first, for the longest match */
    bool *seen = calloc(maxlen + 1, 1);
    m->ud_len = malloc((maxlen + 1) * sizeof *m->ud_len);
    if (!seen || !m->ud_len) {
        free(seen);
        return airllm_errf(r->err, "out of memory");
    }
    for (size_t i = 0; i < m->n; i++)
        if (m->pc[i].type == AIRLLM_SPM_USER_DEFINED)
            seen[m->pc[i].len] = true;
    m->min_score = 3.4028235e38f;
    m->max_score = 1.1754944e-38f; /* FLT_MIN, as sentencepiece starts from */
    for (size_t i = 0; i < m->n; i++) {
        const spm_piece *p = &m->pc[i];
        if (p->type == AIRLLM_SPM_NORMAL) {
            m->min_score = p->score < m->min_score ? p->score : m->min_score;
            m->max_score = p->score > m->max_score ? p->score : m->max_score;
        }
        if ((p->type == AIRLLM_SPM_NORMAL || p->type == AIRLLM_SPM_USER_DEFINED ||
             p->type == AIRLLM_SPM_UNUSED) && p->len > m->max_len)
            m->max_len = p->len;
    }
    for (size_t l = maxlen; l > 0; l--)
        if (seen[l])
            m->ud_len[m->n_ud_len++] = (uint32_t)l;
    free(seen);
    m->bos = named(m, s->bos_piece, "<s>", true);
    m->eos = named(m, s->eos_piece, "</s>", true);
    m->pad = named(m, s->pad_piece, "<pad>", true);
    return 0;
}

static int load_model(pb *r, airllm_spm *m)
{
    spec s = {.add_dummy_prefix = true, .remove_ws = true, .escape_ws = true};
    s.model_type = 1; /* the proto's default: UNIGRAM */
    pb_field f;
    /* first pass: count the pieces (each takes at least 2 bytes, so the
     * count is bounded by the file size) and read the specs */
    size_t count = 0;
    pb r1 = *r;
    while (r1.p < r1.end) {
        if (pb_next(&r1, &f))
            return -1;
        pb sub = pb_sub(&r1, &f); /* empty unless f is length-delimited */
        if (f.num == 1) {
            if (want(&r1, &f, WT_LEN, "a piece"))
                return -1;
            count++;
        } else if (f.num == 2) {
            if (want(&r1, &f, WT_LEN, "trainer_spec") || load_trainer(&sub, &s))
                return airllm_err_prefix(r->err, "trainer_spec");
        } else if (f.num == 3 || f.num == 5) {
            const char *w = f.num == 3 ? "normalizer_spec" : "denormalizer_spec";
            if (want(&r1, &f, WT_LEN, w) || load_normalizer(&sub, &s, f.num == 5))
                return airllm_err_prefix(r->err, "%s", w);
        }
    }
    if (count == 0)
        return airllm_errf(r->err, "no pieces");
    if (count > INT32_MAX - 1)
        return airllm_errf(r->err, "too many pieces");
    m->pc = calloc(count, sizeof *m->pc);
    /* pieces and unk_surface are disjoint substrings of the file; 8 more
     * bytes hold the default unk_surface: the arena never grows */
    m->arena = malloc((size_t)(r->end - r->p) + 8);
    for (m->map_cap = 64; m->map_cap < 2 * count;)
        m->map_cap *= 2;
    m->map = calloc(m->map_cap, sizeof *m->map);
    if (!m->pc || !m->arena || !m->map)
        return airllm_errf(r->err, "out of memory");
    while (r->p < r->end) {
        if (pb_next(r, &f))
            return -1;
        if (f.num != 1)
            continue;
        if (load_piece(r, m, m->n, &f))
            return -1;
        const spm_piece *p = &m->pc[m->n];
        const uint8_t *ps = m->arena + p->off;
        size_t mask = m->map_cap - 1, i = hash_bytes(ps, p->len) & mask;
        for (; m->map[i]; i = (i + 1) & mask) {
            const spm_piece *q = &m->pc[m->map[i] - 1];
            if (q->len == p->len && memcmp(m->arena + q->off, ps, p->len) == 0)
                return airllm_errf(r->err, "pieces %u and %zu are both \"%.*s\"", m->map[i] - 1,
                                   m->n, (int)(p->len < 60 ? p->len : 60), ps);
        }
        m->map[i] = (uint32_t)(m->n + 1);
        m->n++;
    }
    if (s.unk_surface.p) {
        if (airllm_utf8_check(s.unk_surface.p, s.unk_surface.n) || s.unk_surface.n > SPM_MAX_PIECE)
            return airllm_errf(r->err, "trainer_spec.unk_surface is not valid UTF-8");
    } else {
        s.unk_surface = (str){(const uint8_t *)" \xE2\x81\x87 ", 5};
    }
    m->unk_surface_len = (uint32_t)s.unk_surface.n;
    arena_add(m, s.unk_surface.p, s.unk_surface.n, &m->unk_surface_off);
    return check_model(r, m, &s);
}

/* The first line is "BASE64 DIGITS". */
static bool looks_like_ranks(const uint8_t *d, size_t n)
{
    size_t i = 0;
    while (i < n && i < 1024 && (isalnum(d[i]) || d[i] == '+' || d[i] == '/' || d[i] == '='))
        i++;
    if (i == 0 || i >= n || d[i] != ' ')
        return false;
    size_t j = ++i;
    while (i < n && isdigit(d[i]))
        i++;
    return i > j && (i == n || d[i] == '\n' || d[i] == '\r');
}

int airllm_spm_load_buffer(const uint8_t *data, size_t len, const char *name, airllm_spm **out,
                           airllm_err *err)
{
    *out = NULL;
    if (!name)
        name = "tokenizer.model";
    if (!data && len)
        return airllm_errf(err, "%s: no data", name);
    if (len > AIRLLM_SPM_MAX_FILE)
        return airllm_errf(err, "%s: %zu bytes is too large (at most %u)", name, len,
                           AIRLLM_SPM_MAX_FILE);
    airllm_spm *m = calloc(1, sizeof *m);
    if (!m)
        return airllm_errf(err, "out of memory");
    pb r = {data, data, data + len, err};
    if (load_model(&r, m)) {
        /* GLM-4 names its tiktoken ranks file tokenizer.model: say so
         * rather than leave a protobuf error */
        if (looks_like_ranks(data, len))
            airllm_errf(err, "this is not a SentencePiece model but looks like a tiktoken "
                             "ranks file (\"BASE64 RANK\" lines, as GLM-4 ships under this "
                             "name), which is not supported as tokenizer.model");
        airllm_err_prefix(err, "%s", name);
        airllm_spm_free(m);
        return -1;
    }
    *out = m;
    return 0;
}

int airllm_spm_load(const char *path, airllm_spm **out, airllm_err *err)
{
    char *data;
    size_t len;
    *out = NULL;
    if (airllm_read_small_file(path, AIRLLM_SPM_MAX_FILE, &data, &len, err))
        return -1;
    int rc = airllm_spm_load_buffer((const uint8_t *)data, len, path, out, err);
    free(data);
    return rc;
}

void airllm_spm_free(airllm_spm *m)
{
    if (!m)
        return;
    free(m->arena);
    free(m->pc);
    free(m->map);
    free(m->ud_len);
    free(m);
}

size_t airllm_spm_size(const airllm_spm *m) { return m->n; }
int32_t airllm_spm_unk_id(const airllm_spm *m) { return m->unk; }
int32_t airllm_spm_bos_id(const airllm_spm *m) { return m->bos; }
int32_t airllm_spm_eos_id(const airllm_spm *m) { return m->eos; }
int32_t airllm_spm_pad_id(const airllm_spm *m) { return m->pad; }
int airllm_spm_byte_fallback(const airllm_spm *m) { return m->byte_fallback; }
int airllm_spm_add_dummy_prefix(const airllm_spm *m) { return m->add_dummy_prefix; }

const char *airllm_spm_piece(const airllm_spm *m, int32_t id, size_t *len)
{
    if (id < 0 || (size_t)id >= m->n)
        return NULL;
    *len = m->pc[id].len;
    return (const char *)m->arena + m->pc[id].off;
}

int airllm_spm_type(const airllm_spm *m, int32_t id)
{
    return id < 0 || (size_t)id >= m->n ? 0 : m->pc[id].type;
}

float airllm_spm_score(const airllm_spm *m, int32_t id)
{
    return id < 0 || (size_t)id >= m->n ? 0.0f : m->pc[id].score;
}

int32_t airllm_spm_piece_id(const airllm_spm *m, const char *piece, size_t len)
{
    return airllm_spm_map_get(m, (const uint8_t *)piece, len);
}

