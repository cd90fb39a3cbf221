/* Safetensors header reader; see airllm_safetensors.h for the format.
 *
 * JSON is parsed with cJSON, but cJSON is more lenient than the safetensors
 * reference reader (serde_json) and loses information we need: it converts
 * every number to a double (so 1.0, 1e3 and 2^53+1 look like integers), it
 * decodes "\u0000" into a string that strlen() silently truncates, and it
 * treats every byte <= 0x20 as whitespace. So after cJSON accepts the header
 * we lex the same bytes ourselves, in document order, and tie each token to
 * its cJSON node by a pre-order walk (which visits values in document order).
 * The lexer supplies what cJSON cannot: the exact integer value of a number,
 * whether it was written as a plain integer, and whether a string contained
 * an escaped NUL. */
#include "airllm_safetensors.h"

#include "airllm_bytes.h"
#include "airllm_io.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* Largest integer accepted in shape and data_offsets. The reference reader
 * is JSON-based and many JSON writers go through doubles, which are exact
 * only up to 2^53; anything larger cannot describe a real file anyway. */
#define ST_MAX_INT (UINT64_C(1) << 53)

/* -------------------------------------------------------- message helpers */

/* Names come from the file: they may hold escaped control characters or be
 * very long. Copy a printable, bounded form for messages (the input is
 * valid UTF-8, and we cut only at a character boundary). */
#define SHOW_MAX 128
static const char *show(char out[SHOW_MAX], const char *s)
{
    size_t n = strlen(s);
    bool cut = false;
    if (n > SHOW_MAX - 4) {
        n = SHOW_MAX - 4;
        while (n > 0 && ((uint8_t)s[n] & 0xC0) == 0x80)
            n--;
        cut = true;
    }
    for (size_t i = 0; i < n; i++) {
        uint8_t c = (uint8_t)s[i];
        out[i] = (c < 0x20 || c == 0x7F) ? '?' : (char)c;
    }
    if (cut)
        memcpy(out + n, "...", 3), n += 3;
    out[n] = '\0';
    return out;
}

/* ------------------------------------------------------------------ lexer */

enum { TOK_OBJ, TOK_ARR, TOK_KEY, TOK_STR, TOK_NUM, TOK_LIT };
/* Classification of a number token. */
enum { NUM_OK, NUM_NEG, NUM_FRAC, NUM_BIG };

typedef struct {
    uint32_t start, len; /* bytes of the token within the header */
    uint8_t kind;
    uint8_t num;   /* NUM_* for TOK_NUM */
    bool has_nul;  /* TOK_KEY / TOK_STR: contains \u0000 */
    uint64_t value; /* TOK_NUM with NUM_OK: the exact value */
} st_tok;

static bool json_ws(uint8_t c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

static bool is_digit(uint8_t c)
{
    return c >= '0' && c <= '9';
}

/* Checks the strict JSON number grammar -?(0|[1-9]\d*)(\.\d+)?([eE][+-]?\d+)?
 * on s[0..n) and classifies it. cJSON accepts more (leading zeros, "1."). */
static int classify_number(const uint8_t *s, size_t n, st_tok *t)
{
    size_t i = 0;
    bool neg = false, frac = false;
    if (i < n && s[i] == '-')
        neg = true, i++;
    size_t int_start = i;
    if (i < n && s[i] == '0') {
        i++;
    } else if (i < n && s[i] >= '1' && s[i] <= '9') {
        while (i < n && is_digit(s[i]))
            i++;
    } else {
        return -1;
    }
    size_t int_len = i - int_start;
    if (i < n && s[i] == '.') {
        frac = true;
        i++;
        if (i >= n || !is_digit(s[i]))
            return -1;
        while (i < n && is_digit(s[i]))
            i++;
    }
    if (i < n && (s[i] == 'e' || s[i] == 'E')) {
        frac = true;
        i++;
        if (i < n && (s[i] == '+' || s[i] == '-'))
            i++;
        if (i >= n || !is_digit(s[i]))
            return -1;
        while (i < n && is_digit(s[i]))
            i++;
    }
    if (i != n)
        return -1;
    t->value = 0;
    if (neg) {
        t->num = NUM_NEG;
    } else if (frac) {
        t->num = NUM_FRAC;
    } else if (int_len > 16) { /* 2^53 has 16 digits */
        t->num = NUM_BIG;
    } else {
        uint64_t v = 0;
        for (size_t k = 0; k < int_len; k++)
            v = v * 10 + (uint64_t)(s[int_start + k] - '0');
        t->num = v > ST_MAX_INT ? NUM_BIG : NUM_OK;
        t->value = v;
    }
    return 0;
}

/* Lexes h[0..n), a JSON text cJSON has already accepted, into tokens: one per
 * value (object, array, string, number, literal) and one per object key, in
 * document order. With toks == NULL it only counts. Rejects what cJSON lets
 * through but JSON forbids: control characters outside the four whitespace
 * characters or inside strings, and malformed numbers. */
static int lex(const uint8_t *h, size_t n, st_tok *toks, size_t *count, airllm_err *err)
{
    size_t nt = 0;
    size_t i = 0;
    while (i < n) {
        uint8_t c = h[i];
        st_tok t = {0};
        t.start = (uint32_t)i;
        if (json_ws(c) || c == ',' || c == ':' || c == '}' || c == ']') {
            i++;
            continue;
        } else if (c == '{' || c == '[') {
            t.kind = c == '{' ? TOK_OBJ : TOK_ARR;
            i++;
        } else if (c == '"') {
            i++;
            while (i < n && h[i] != '"') {
                if (h[i] < 0x20)
                    return airllm_errf(err,
                                       "header is not valid JSON: control character 0x%02x "
                                       "inside a string at header byte %zu",
                                       h[i], i);
                if (h[i] == '\\') {
                    if (i + 1 < n && h[i + 1] == 'u' && i + 5 < n &&
                        memcmp(h + i + 2, "0000", 4) == 0)
                        t.has_nul = true;
                    i++; /* the escaped character; cJSON validated the rest */
                }
                i++;
            }
            if (i >= n)
                return airllm_errf(err, "header is not valid JSON: unterminated string");
            i++;
            size_t j = i;
            while (j < n && json_ws(h[j]))
                j++;
            t.kind = (j < n && h[j] == ':') ? TOK_KEY : TOK_STR;
        } else if (c == '-' || is_digit(c)) {
            while (i < n && (is_digit(h[i]) || h[i] == '-' || h[i] == '+' || h[i] == '.' ||
                             h[i] == 'e' || h[i] == 'E'))
                i++;
            t.kind = TOK_NUM;
            if (classify_number(h + t.start, i - t.start, &t) < 0)
                return airllm_errf(err,
                                   "header is not valid JSON: malformed number '%.*s' at "
                                   "header byte %" PRIu32,
                                   (int)((i - t.start) > 40 ? 40 : (i - t.start)),
                                   (const char *)h + t.start, t.start);
        } else if (c == 't' || c == 'f' || c == 'n') {
            while (i < n && h[i] >= 'a' && h[i] <= 'z')
                i++;
            t.kind = TOK_LIT;
        } else {
            return airllm_errf(err,
                               "header is not valid JSON: unexpected %s 0x%02x at header "
                               "byte %zu",
                               c < 0x20 ? "control character" : "byte", c, i);
        }
        t.len = (uint32_t)(i - t.start);
        if (toks)
            toks[nt] = t;
        nt++;
    }
    *count = nt;
    return 0;
}

/* Ties tokens to nodes: walks the tree in pre-order (document order) and
 * stores each node's token index in node->valueint. The tree is private to
 * this file and deleted after validation, so reusing valueint (which cJSON
 * only fills as a lossy copy of valuedouble) is harmless. A key's token is
 * the one just before its value's. Recursion depth is bounded by cJSON's
 * nesting limit, which it enforced while parsing. */
static int annotate(cJSON *node, const st_tok *toks, size_t nt, size_t *cur)
{
    if (*cur >= nt)
        return -1;
    uint8_t k = toks[*cur].kind;
    bool ok = (cJSON_IsObject(node) && k == TOK_OBJ) || (cJSON_IsArray(node) && k == TOK_ARR) ||
              (cJSON_IsString(node) && k == TOK_STR) || (cJSON_IsNumber(node) && k == TOK_NUM) ||
              ((cJSON_IsBool(node) || cJSON_IsNull(node)) && k == TOK_LIT);
    if (!ok)
        return -1;
    node->valueint = (int)*cur;
    (*cur)++;
    bool obj = cJSON_IsObject(node);
    for (cJSON *c = node->child; c; c = c->next) {
        if (obj) {
            if (*cur >= nt || toks[*cur].kind != TOK_KEY || !c->string)
                return -1;
            (*cur)++;
        }
        if (annotate(c, toks, nt, cur) < 0)
            return -1;
    }
    return 0;
}

/* ------------------------------------------------------------- validation */

typedef struct {
    const uint8_t *hdr;
    const st_tok *toks;
} st_ctx;

static const st_tok *tok_of(const st_ctx *cx, const cJSON *node)
{
    return &cx->toks[node->valueint];
}

static const st_tok *key_tok_of(const st_ctx *cx, const cJSON *node)
{
    return &cx->toks[node->valueint - 1];
}

/* Reads a non-negative integer (what, e.g. "shape[2]") for tensor tname. */
static int get_uint(const st_ctx *cx, const cJSON *node, const char *tname, const char *what,
                    uint64_t *out, airllm_err *err)
{
    char sn[SHOW_MAX];
    if (!cJSON_IsNumber(node))
        return airllm_errf(err, "tensor '%s': %s is not a number", show(sn, tname), what);
    const st_tok *t = tok_of(cx, node);
    int shown = t->len > 40 ? 40 : (int)t->len;
    const char *txt = (const char *)cx->hdr + t->start;
    switch (t->num) {
    case NUM_NEG:
        return airllm_errf(err, "tensor '%s': %s is negative (%.*s)", show(sn, tname), what,
                           shown, txt);
    case NUM_FRAC:
        return airllm_errf(err, "tensor '%s': %s is not an integer (%.*s)", show(sn, tname),
                           what, shown, txt);
    case NUM_BIG:
        return airllm_errf(err, "tensor '%s': %s is too large (%.*s > 2^53)", show(sn, tname),
                           what, shown, txt);
    }
    *out = t->value;
    return 0;
}

static int check_name(const st_ctx *cx, const cJSON *entry, airllm_err *err)
{
    char sn[SHOW_MAX];
    const char *name = entry->string;
    if (key_tok_of(cx, entry)->has_nul)
        return airllm_errf(err, "tensor name '%s' contains a NUL character", show(sn, name));
    size_t n = strlen(name);
    if (n == 0)
        return airllm_errf(err, "empty tensor name");
    if (n > AIRLLM_ST_MAX_NAME)
        return airllm_errf(err, "tensor name '%s' is %zu bytes, longer than the limit of %d",
                           show(sn, name), n, AIRLLM_ST_MAX_NAME);
    return 0;
}

static int check_metadata(const st_ctx *cx, const cJSON *md, airllm_err *err)
{
    char sn[SHOW_MAX];
    if (!cJSON_IsObject(md))
        return airllm_errf(err, "\"__metadata__\" is not an object");
    for (const cJSON *c = md->child; c; c = c->next) {
        if (key_tok_of(cx, c)->has_nul)
            return airllm_errf(err, "\"__metadata__\" key '%s' contains a NUL character",
                               show(sn, c->string));
        if (!cJSON_IsString(c))
            return airllm_errf(err, "\"__metadata__\" value for key '%s' is not a string",
                               show(sn, c->string));
        if (tok_of(cx, c)->has_nul)
            return airllm_errf(err,
                               "\"__metadata__\" value for key '%s' contains a NUL character",
                               show(sn, c->string));
    }
    return 0;
}

static void format_shape(char *buf, size_t cap, const uint64_t *shape, unsigned ndim)
{
    size_t n = 0;
    n += (size_t)snprintf(buf + n, cap - n, "[");
    for (unsigned i = 0; i < ndim && n < cap; i++)
        n += (size_t)snprintf(buf + n, cap - n, "%s%" PRIu64, i ? ", " : "", shape[i]);
    if (n < cap)
        snprintf(buf + n, cap - n, "]");
}

static int parse_tensor(const st_ctx *cx, const cJSON *entry, airllm_st_tensor *t,
                        airllm_err *err)
{
    char sn[SHOW_MAX];
    const char *name = entry->string;
    if (check_name(cx, entry, err) < 0)
        return -1;
    if (!cJSON_IsObject(entry))
        return airllm_errf(err, "tensor '%s': entry is not an object", show(sn, name));

    const cJSON *dtype = NULL, *shape = NULL, *offs = NULL;
    for (const cJSON *c = entry->child; c; c = c->next) {
        const cJSON **slot;
        if (strcmp(c->string, "dtype") == 0)
            slot = &dtype;
        else if (strcmp(c->string, "shape") == 0)
            slot = &shape;
        else if (strcmp(c->string, "data_offsets") == 0)
            slot = &offs;
        else
            return airllm_errf(err, "tensor '%s': unexpected key '%s'", show(sn, name),
                               show((char[SHOW_MAX]){0}, c->string));
        /* A NUL-escaped key such as "dtype\u0000x" compares equal above. */
        if (key_tok_of(cx, c)->has_nul)
            return airllm_errf(err, "tensor '%s': a key contains a NUL character",
                               show(sn, name));
        if (*slot)
            return airllm_errf(err, "tensor '%s': duplicate key '%s'", show(sn, name),
                               c->string);
        *slot = c;
    }
    if (!dtype)
        return airllm_errf(err, "tensor '%s': missing \"dtype\"", show(sn, name));
    if (!shape)
        return airllm_errf(err, "tensor '%s': missing \"shape\"", show(sn, name));
    if (!offs)
        return airllm_errf(err, "tensor '%s': missing \"data_offsets\"", show(sn, name));

    if (!cJSON_IsString(dtype))
        return airllm_errf(err, "tensor '%s': dtype is not a string", show(sn, name));
    if (tok_of(cx, dtype)->has_nul)
        return airllm_errf(err, "tensor '%s': dtype contains a NUL character", show(sn, name));
    if (airllm_dtype_from_name(dtype->valuestring, &t->dtype) < 0)
        return airllm_errf(err, "tensor '%s': unknown dtype '%s'", show(sn, name),
                           show((char[SHOW_MAX]){0}, dtype->valuestring));

    if (!cJSON_IsArray(shape))
        return airllm_errf(err, "tensor '%s': shape is not an array", show(sn, name));
    int nd = cJSON_GetArraySize(shape);
    if (nd > AIRLLM_MAX_DIMS)
        return airllm_errf(err, "tensor '%s': shape has %d dimensions, more than the limit of %d",
                           show(sn, name), nd, AIRLLM_MAX_DIMS);
    t->ndim = (unsigned)nd;
    unsigned d = 0;
    for (const cJSON *c = shape->child; c; c = c->next, d++) {
        char what[32];
        snprintf(what, sizeof what, "shape[%u]", d);
        if (get_uint(cx, c, name, what, &t->shape[d], err) < 0)
            return -1;
    }

    if (!cJSON_IsArray(offs))
        return airllm_errf(err, "tensor '%s': data_offsets is not an array", show(sn, name));
    if (cJSON_GetArraySize(offs) != 2)
        return airllm_errf(err, "tensor '%s': data_offsets has %d elements, not 2",
                           show(sn, name), cJSON_GetArraySize(offs));
    if (get_uint(cx, offs->child, name, "data_offsets[0]", &t->begin, err) < 0 ||
        get_uint(cx, offs->child->next, name, "data_offsets[1]", &t->end, err) < 0)
        return -1;
    if (t->begin > t->end)
        return airllm_errf(err, "tensor '%s': data_offsets begin %" PRIu64 " > end %" PRIu64,
                           show(sn, name), t->begin, t->end);

    /* Size check, with distinct messages for the two ways it can fail. */
    char shp[200];
    format_shape(shp, sizeof shp, t->shape, t->ndim);
    uint64_t ne = 1;
    for (unsigned i = 0; i < t->ndim; i++) {
        if (t->shape[i] != 0 && ne > UINT64_MAX / t->shape[i])
            return airllm_errf(err, "tensor '%s': element count of shape %s overflows",
                               show(sn, name), shp);
        ne *= t->shape[i];
    }
    uint64_t nbytes;
    if (airllm_shape_nbytes(t->dtype, t->shape, t->ndim, NULL, &nbytes) < 0) {
        if (ne > UINT64_MAX / airllm_dtype_bits(t->dtype))
            return airllm_errf(err, "tensor '%s': byte size of shape %s of %s overflows",
                               show(sn, name), shp, airllm_dtype_name(t->dtype));
        return airllm_errf(err, "tensor '%s': shape %s of %s is not a whole number of bytes",
                           show(sn, name), shp, airllm_dtype_name(t->dtype));
    }
    if (nbytes != t->end - t->begin)
        return airllm_errf(err,
                           "tensor '%s': shape %s of %s needs %" PRIu64
                           " bytes but data_offsets [%" PRIu64 ", %" PRIu64 "] span %" PRIu64,
                           show(sn, name), shp, airllm_dtype_name(t->dtype), nbytes, t->begin,
                           t->end, t->end - t->begin);

    t->name = strdup(name);
    if (!t->name)
        return airllm_errf(err, "out of memory");
    return 0;
}

static int cmp_name(const void *a, const void *b)
{
    const airllm_st_tensor *x = a, *y = b;
    return strcmp(x->name, y->name);
}

static int cmp_offset(const void *a, const void *b)
{
    const airllm_st_tensor *x = a, *y = b;
    if (x->begin != y->begin)
        return x->begin < y->begin ? -1 : 1;
    if (x->end != y->end)
        return x->end < y->end ? -1 : 1;
    return strcmp(x->name, y->name);
}

/* Checks the tensors (sorted by offset) tile [0, data_len) exactly. */
static int check_coverage(const airllm_st_tensor *ts, size_t n, uint64_t data_len,
                          uint64_t data_start, airllm_err *err)
{
    char sa[SHOW_MAX], sb[SHOW_MAX];
    uint64_t pos = 0;
    for (size_t i = 0; i < n; i++) {
        const airllm_st_tensor *t = &ts[i];
        if (t->begin < pos)
            return airllm_errf(err,
                               "tensors '%s' [%" PRIu64 ", %" PRIu64 ") and '%s' [%" PRIu64
                               ", %" PRIu64 ") overlap",
                               show(sa, ts[i - 1].name), ts[i - 1].begin, ts[i - 1].end,
                               show(sb, t->name), t->begin, t->end);
        if (t->begin > pos) {
            if (i == 0)
                return airllm_errf(err,
                                   "gap: the first tensor '%s' begins at data offset %" PRIu64
                                   ", not 0",
                                   show(sa, t->name), t->begin);
            return airllm_errf(err,
                               "gap of %" PRIu64 " bytes between tensors '%s' (ends at %" PRIu64
                               ") and '%s' (begins at %" PRIu64 ")",
                               t->begin - pos, show(sa, ts[i - 1].name), pos,
                               show(sb, t->name), t->begin);
        }
        pos = t->end;
    }
    if (pos < data_len) {
        if (n == 0)
            return airllm_errf(err, "trailing garbage: %" PRIu64
                                    " bytes after the header, which lists no tensors",
                               data_len);
        return airllm_errf(err, "trailing garbage: %" PRIu64 " bytes after the last tensor",
                           data_len - pos);
    }
    if (pos > data_len)
        return airllm_errf(err,
                           "truncated: tensor '%s' ends at data offset %" PRIu64
                           " (file byte %" PRIu64 ") but the file has only %" PRIu64
                           " data bytes",
                           show(sa, ts[n - 1].name), pos, data_start + pos, data_len);
    return 0;
}

void airllm_st_free(airllm_st_file *f)
{
    if (!f)
        return;
    for (size_t i = 0; i < f->n_tensors; i++)
        free(f->tensors[i].name);
    free(f->tensors);
    memset(f, 0, sizeof *f);
}

/* Validates the parsed, annotated root object and fills out. */
static int build(const st_ctx *cx, const cJSON *root, airllm_st_file *out, airllm_err *err)
{
    size_t count = 0, n_meta = 0;
    for (const cJSON *c = root->child; c; c = c->next) {
        if (strcmp(c->string, "__metadata__") == 0 && !key_tok_of(cx, c)->has_nul)
            n_meta++;
        else
            count++;
    }
    if (n_meta > 1)
        return airllm_errf(err, "duplicate \"__metadata__\"");
    if (count) {
        out->tensors = calloc(count, sizeof *out->tensors);
        if (!out->tensors)
            return airllm_errf(err, "out of memory for %zu tensors", count);
    }
    for (const cJSON *c = root->child; c; c = c->next) {
        if (strcmp(c->string, "__metadata__") == 0 && !key_tok_of(cx, c)->has_nul) {
            if (check_metadata(cx, c, err) < 0)
                return -1;
            continue;
        }
        /* n_tensors counts only fully built entries, so that
         * airllm_st_free releases exactly what was allocated. */
        if (parse_tensor(cx, c, &out->tensors[out->n_tensors], err) < 0)
            return -1;
        out->n_tensors++;
    }
    /* cJSON keeps duplicate keys, so find them by sorting by name. */
    if (out->n_tensors > 1) {
        qsort(out->tensors, out->n_tensors, sizeof *out->tensors, cmp_name);
        for (size_t i = 1; i < out->n_tensors; i++)
            if (strcmp(out->tensors[i - 1].name, out->tensors[i].name) == 0)
                return airllm_errf(err, "duplicate tensor name '%s'",
                                   show((char[SHOW_MAX]){0}, out->tensors[i].name));
        qsort(out->tensors, out->n_tensors, sizeof *out->tensors, cmp_offset);
    }
    return check_coverage(out->tensors, out->n_tensors, out->file_size - out->data_start,
                          out->data_start, err);
}

int airllm_st_parse(const uint8_t *buf, size_t len, uint64_t file_size, airllm_st_file *out,
                    airllm_err *err)
{
    memset(out, 0, sizeof *out);
    if (file_size < 8)
        return airllm_errf(err,
                           "file is %" PRIu64 " bytes, too short for the 8-byte header length",
                           file_size);
    if (len > file_size)
        return airllm_errf(err, "buffer of %zu bytes is longer than the file size %" PRIu64,
                           len, file_size);
    if (len < 8)
        return airllm_errf(err, "truncated: only %zu bytes of the 8-byte header length", len);

    uint64_t n = 0;
    for (int i = 7; i >= 0; i--)
        n = (n << 8) | buf[i];
    if (n > file_size - 8)
        return airllm_errf(err, "header length %" PRIu64 " exceeds the file (%" PRIu64 " bytes)",
                           n, file_size);
    if (n > AIRLLM_ST_MAX_HEADER)
        return airllm_errf(err, "header length %" PRIu64 " exceeds the limit of %u bytes", n,
                           AIRLLM_ST_MAX_HEADER);
    if (len - 8 < n)
        return airllm_errf(err,
                           "truncated: the header is %" PRIu64
                           " bytes but only %zu bytes of it were read",
                           n, len - 8);
    const uint8_t *hdr = buf + 8;
    size_t hlen = (size_t)n;

    size_t bad = airllm_utf8_first_bad(hdr, hlen);
    if (bad != hlen)
        return airllm_errf(err, "header is not valid UTF-8 (bad byte 0x%02x at header byte %zu)",
                           hdr[bad], bad);
    if (hlen == 0)
        return airllm_errf(err, "header is empty (expected a JSON object)");
    /* The spec requires the header to start with '{'; this also rejects a
     * UTF-8 BOM and leading whitespace, which cJSON would skip. */
    if (hdr[0] != '{')
        return airllm_errf(err, "header is not a JSON object (it starts with '%c')",
                           hdr[0] >= 0x20 && hdr[0] < 0x7F ? hdr[0] : '?');

    const char *end = NULL;
    cJSON *root = cJSON_ParseWithLengthOpts((const char *)hdr, hlen, &end, 0);
    if (!root) {
        size_t at = (end && end >= (const char *)hdr) ? (size_t)(end - (const char *)hdr) : 0;
        return airllm_errf(err, "header is not valid JSON (error near header byte %zu)", at);
    }
    int rc = -1;
    st_tok *toks = NULL;
    size_t jlen = (size_t)(end - (const char *)hdr);
    /* The spec allows padding the header with spaces, nothing else. */
    for (size_t i = jlen; i < hlen; i++) {
        if (hdr[i] != ' ') {
            airllm_errf(err,
                        "header has unexpected data after the JSON object (byte 0x%02x at "
                        "header byte %zu; only space padding is allowed)",
                        hdr[i], i);
            goto done;
        }
    }
    if (!cJSON_IsObject(root)) {
        airllm_errf(err, "header is not a JSON object");
        goto done;
    }
    size_t nt = 0;
    if (lex(hdr, jlen, NULL, &nt, err) < 0)
        goto done;
    toks = malloc(nt * sizeof *toks);
    if (!toks) {
        airllm_errf(err, "out of memory lexing the header");
        goto done;
    }
    size_t cur = 0;
    if (lex(hdr, jlen, toks, &nt, err) < 0)
        goto done;
    if (annotate(root, toks, nt, &cur) < 0 || cur != nt) {
        airllm_errf(err, "internal error: header lexer disagrees with the JSON parser");
        goto done;
    }
    out->header_len = n;
    out->data_start = 8 + n;
    out->file_size = file_size;
    st_ctx cx = {hdr, toks};
    rc = build(&cx, root, out, err);
done:
    free(toks);
    cJSON_Delete(root);
    if (rc < 0)
        airllm_st_free(out);
    return rc;
}

int airllm_st_read_file(const char *path, airllm_st_file *out, airllm_err *err)
{
    memset(out, 0, sizeof *out);
    int fd = airllm_open_input(path, 0, err);
    if (fd < 0)
        return -1;
    int rc = -1;
    uint8_t *buf = NULL;
    struct stat st;
    if (fstat(fd, &st) < 0) {
        airllm_errf(err, "%s: cannot stat: %s", path, strerror(errno));
        goto done;
    }
    if (!S_ISREG(st.st_mode)) {
        airllm_errf(err, "%s: not a regular file", path);
        goto done;
    }
    uint64_t size = (uint64_t)st.st_size;
    uint8_t lenbuf[8];
    size_t got = size < 8 ? (size_t)size : 8;
    if (airllm_pread_full(fd, lenbuf, got, 0, path, err))
        goto done;
    uint64_t n = got == 8 ? airllm_get_le64(lenbuf) : 0;
    /* Read the header only if its length is plausible; otherwise let the
     * parser report the bad length from the 8 bytes alone. */
    if (got == 8 && n <= size - 8 && n <= AIRLLM_ST_MAX_HEADER) {
        buf = malloc(8 + (size_t)n);
        if (!buf) {
            airllm_errf(err, "%s: out of memory for a %" PRIu64 "-byte header", path, n);
            goto done;
        }
        memcpy(buf, lenbuf, 8);
        if (airllm_pread_full(fd, buf + 8, (size_t)n, 8, path, err))
            goto done;
        rc = airllm_st_parse(buf, 8 + (size_t)n, size, out, err);
    } else {
        rc = airllm_st_parse(lenbuf, got, size, out, err);
    }
    if (rc < 0)
        airllm_err_prefix(err, "%s", path);
done:
    free(buf);
    close(fd);
    return rc;
}

long airllm_st_find(const airllm_st_file *f, const char *name)
{
    for (size_t i = 0; i < f->n_tensors; i++)
        if (strcmp(f->tensors[i].name, name) == 0)
            return (long)i;
    return -1;
}
