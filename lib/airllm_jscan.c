/* Strict JSON scanner; see airllm_jscan.h. */
#include "airllm_jscan.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static bool is_ws(uint8_t c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

static bool is_digit(uint8_t c)
{
    return c >= '0' && c <= '9';
}

/* Bytes that can continue a number or a literal token: the token is the
 * longest run of them, then judged whole (so "01" is a malformed number,
 * not "0" followed by an unexpected "1"). */
static bool is_token_byte(uint8_t c)
{
    return is_digit(c) || c == '-' || c == '+' || c == '.' || (c >= 'a' && c <= 'z') ||
           (c >= 'A' && c <= 'Z');
}

static int fail(airllm_js_error *e, size_t at, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e->what, sizeof e->what, fmt, ap);
    va_end(ap);
    e->at = at;
    return -1;
}

static int hex4(const uint8_t *b, size_t len, size_t i, unsigned *out)
{
    if (i > len || len - i < 4)
        return -1;
    unsigned v = 0;
    for (size_t k = 0; k < 4; k++) {
        uint8_t c = b[i + k];
        unsigned d;
        if (c >= '0' && c <= '9')
            d = c - '0';
        else if (c >= 'a' && c <= 'f')
            d = c - 'a' + 10;
        else if (c >= 'A' && c <= 'F')
            d = c - 'A' + 10;
        else
            return -1;
        v = v << 4 | d;
    }
    *out = v;
    return 0;
}

/* b[*pi] is '"': checks the string and moves *pi past its closing quote. */
static int check_string(const uint8_t *b, size_t len, size_t *pi, airllm_js_error *e)
{
    size_t i = *pi + 1;
    for (;;) {
        if (i >= len)
            return fail(e, *pi, "unterminated string");
        uint8_t c = b[i];
        if (c == '"') {
            *pi = i + 1;
            return 0;
        }
        if (c < 0x20)
            return fail(e, i, "control character 0x%02x inside a string", c);
        if (c != '\\') {
            i++;
            continue;
        }
        if (i + 1 >= len)
            return fail(e, *pi, "unterminated string");
        c = b[i + 1];
        if (c != 'u') {
            if (!c || !strchr("\"\\/bfnrt", c))
                return fail(e, i, "bad escape in a string");
            i += 2;
            continue;
        }
        unsigned u, lo;
        if (hex4(b, len, i + 2, &u))
            return fail(e, i, "bad \\u escape in a string");
        i += 6;
        if (u >= 0xDC00 && u <= 0xDFFF)
            return fail(e, i - 6, "unpaired surrogate in a string");
        if (u >= 0xD800 && u <= 0xDBFF) {
            if (i + 1 >= len || b[i] != '\\' || b[i + 1] != 'u' || hex4(b, len, i + 2, &lo) ||
                lo < 0xDC00 || lo > 0xDFFF)
                return fail(e, i - 6, "unpaired surrogate in a string");
            i += 6;
        }
    }
}

/* Strict number grammar -?(0|[1-9]\d*)(\.\d+)?([eE][+-]?\d+)? on s[0..n). */
static bool number_ok(const uint8_t *s, size_t n)
{
    size_t i = 0;
    if (i < n && s[i] == '-')
        i++;
    if (i < n && s[i] == '0')
        i++;
    else if (i < n && s[i] >= '1' && s[i] <= '9')
        while (i < n && is_digit(s[i]))
            i++;
    else
        return false;
    if (i < n && s[i] == '.') {
        i++;
        if (i >= n || !is_digit(s[i]))
            return false;
        while (i < n && is_digit(s[i]))
            i++;
    }
    if (i < n && (s[i] == 'e' || s[i] == 'E')) {
        i++;
        if (i < n && (s[i] == '+' || s[i] == '-'))
            i++;
        if (i >= n || !is_digit(s[i]))
            return false;
        while (i < n && is_digit(s[i]))
            i++;
    }
    return i == n;
}

static size_t skip_ws(const uint8_t *b, size_t len, size_t i)
{
    while (i < len && is_ws(b[i]))
        i++;
    return i;
}

static int unexpected(const uint8_t *b, size_t len, size_t i, const char *wanted,
                      airllm_js_error *e)
{
    if (i >= len)
        return fail(e, i, "unexpected end, expected %s", wanted);
    return fail(e, i, "unexpected %s 0x%02x, expected %s",
                b[i] < 0x20 ? "control character" : "byte", b[i], wanted);
}

/* A scalar at b[*pi] (not '{' or '['): checks it and moves past it. */
static int check_scalar(const uint8_t *b, size_t len, size_t *pi, airllm_js_error *e)
{
    size_t i = *pi;
    if (i < len && b[i] == '"')
        return check_string(b, len, pi, e);
    if (i >= len || !is_token_byte(b[i]))
        return unexpected(b, len, i, "a value", e);
    size_t j = i;
    while (j < len && is_token_byte(b[j]))
        j++;
    size_t n = j - i;
    int shown = n > 40 ? 40 : (int)n;
    if (!(b[i] >= 'a' && b[i] <= 'z') && !(b[i] >= 'A' && b[i] <= 'Z')) {
        if (!number_ok(b + i, n))
            return fail(e, i, "malformed number '%.*s'", shown, (const char *)b + i);
    } else if (!((n == 4 && memcmp(b + i, "true", 4) == 0) ||
                 (n == 5 && memcmp(b + i, "false", 5) == 0) ||
                 (n == 4 && memcmp(b + i, "null", 4) == 0))) {
        return fail(e, i, "unknown literal '%.*s'", shown, (const char *)b + i);
    }
    *pi = j;
    return 0;
}

int airllm_js_check(const uint8_t *b, size_t len, size_t *end, airllm_js_error *e)
{
    bool is_obj[AIRLLM_JS_MAX_DEPTH]; /* per open container: object or array */
    int d = 0;
    size_t i = skip_ws(b, len, 0);
    for (;;) {
        /* A value starts at i. */
        if (i < len && (b[i] == '{' || b[i] == '[')) {
            if (d == AIRLLM_JS_MAX_DEPTH)
                return fail(e, i, "nested more than %d deep", AIRLLM_JS_MAX_DEPTH);
            bool obj = b[i] == '{';
            is_obj[d++] = obj;
            i = skip_ws(b, len, i + 1);
            if (i < len && b[i] == (obj ? '}' : ']')) {
                i++;
                d--;
            } else {
                if (obj) {
                    if (i >= len || b[i] != '"')
                        return unexpected(b, len, i, "a key or '}'", e);
                    if (check_string(b, len, &i, e))
                        return -1;
                    i = skip_ws(b, len, i);
                    if (i >= len || b[i] != ':')
                        return unexpected(b, len, i, "':'", e);
                    i = skip_ws(b, len, i + 1);
                }
                continue;
            }
        } else if (check_scalar(b, len, &i, e)) {
            return -1;
        }
        /* After a value: close containers or go on to the next element. */
        for (;;) {
            if (d == 0) {
                *end = i;
                return 0;
            }
            bool obj = is_obj[d - 1];
            i = skip_ws(b, len, i);
            if (i < len && b[i] == (obj ? '}' : ']')) {
                i++;
                d--;
                continue;
            }
            if (i >= len || b[i] != ',')
                return unexpected(b, len, i, obj ? "',' or '}'" : "',' or ']'", e);
            i = skip_ws(b, len, i + 1);
            if (obj) {
                if (i >= len || b[i] != '"')
                    return unexpected(b, len, i, "a key", e);
                if (check_string(b, len, &i, e))
                    return -1;
                i = skip_ws(b, len, i);
                if (i >= len || b[i] != ':')
                    return unexpected(b, len, i, "':'", e);
                i = skip_ws(b, len, i + 1);
            }
            break;
        }
    }
}

/* ------------------------------------------------ walking a checked value */

/* Moves *pi past the string starting at b[*pi] == '"'. */
static int skip_string(const uint8_t *b, size_t len, size_t *pi)
{
    size_t i = *pi + 1;
    while (i < len && b[i] != '"')
        i += b[i] == '\\' ? 2 : 1;
    if (i >= len)
        return -1;
    *pi = i + 1;
    return 0;
}

int airllm_js_value_at(const uint8_t *b, size_t len, size_t pos, airllm_js_val *v)
{
    size_t i = skip_ws(b, len, pos);
    if (i >= len)
        return -1;
    v->start = i;
    uint8_t c = b[i];
    if (c == '"') {
        v->kind = AIRLLM_JS_STRING;
        if (skip_string(b, len, &i))
            return -1;
    } else if (c == '{' || c == '[') {
        v->kind = c == '{' ? AIRLLM_JS_OBJECT : AIRLLM_JS_ARRAY;
        /* Brackets inside strings are skipped with the strings; the
         * document was checked, so counting both kinds together is enough. */
        size_t depth = 0;
        do {
            if (i >= len)
                return -1;
            c = b[i];
            if (c == '"') {
                if (skip_string(b, len, &i))
                    return -1;
                continue;
            }
            if (c == '{' || c == '[')
                depth++;
            else if (c == '}' || c == ']')
                depth--;
            i++;
        } while (depth > 0);
    } else if (is_token_byte(c)) {
        v->kind = c == 't' ? AIRLLM_JS_TRUE
                  : c == 'f' ? AIRLLM_JS_FALSE
                  : c == 'n' ? AIRLLM_JS_NULL
                             : AIRLLM_JS_NUMBER;
        while (i < len && is_token_byte(b[i]))
            i++;
    } else {
        return -1;
    }
    v->end = i;
    return 0;
}

void airllm_js_iter_init(airllm_js_iter *it, const uint8_t *buf, const airllm_js_val *v)
{
    it->buf = buf;
    it->pos = v->start + 1;
    it->end = v->end;
    it->object = v->kind == AIRLLM_JS_OBJECT;
    it->first = true;
    if (v->kind != AIRLLM_JS_OBJECT && v->kind != AIRLLM_JS_ARRAY)
        it->pos = it->end; /* a scalar has no members */
}

int airllm_js_iter_next(airllm_js_iter *it, airllm_js_val *key, airllm_js_val *val)
{
    const uint8_t *b = it->buf;
    size_t end = it->end;
    size_t i = skip_ws(b, end, it->pos);
    if (i >= end)
        return 0;
    uint8_t close = it->object ? '}' : ']';
    if (b[i] == close) {
        it->pos = end;
        return 0;
    }
    if (!it->first) {
        if (b[i] != ',')
            return -1;
        i++;
    }
    it->first = false;
    if (it->object) {
        if (airllm_js_value_at(b, end, i, key) || key->kind != AIRLLM_JS_STRING)
            return -1;
        i = skip_ws(b, end, key->end);
        if (i >= end || b[i] != ':')
            return -1;
        i++;
    }
    if (airllm_js_value_at(b, end, i, val))
        return -1;
    it->pos = val->end;
    return 1;
}

/* ------------------------------------------------------ decoding scalars */

static size_t put_utf8(char *o, unsigned cp)
{
    if (cp < 0x80) {
        o[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        o[0] = (char)(0xC0 | cp >> 6);
        o[1] = (char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        o[0] = (char)(0xE0 | cp >> 12);
        o[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
        o[2] = (char)(0x80 | (cp & 0x3F));
        return 3;
    }
    o[0] = (char)(0xF0 | cp >> 18);
    o[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
    o[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
    o[3] = (char)(0x80 | (cp & 0x3F));
    return 4;
}

void airllm_js_str(const uint8_t *b, const airllm_js_val *v, char *out, size_t *n,
                   bool *has_nul)
{
    size_t o = 0;
    bool nul = false;
    size_t i = v->start + 1, end = v->end - 1; /* inside the quotes */
    while (i < end) {
        uint8_t c = b[i];
        if (c != '\\') {
            out[o++] = (char)c;
            i++;
            continue;
        }
        c = i + 1 < end ? b[i + 1] : 0;
        if (c != 'u') {
            static const char from[] = "\"\\/bfnrt", to[] = "\"\\/\b\f\n\r\t";
            const char *p = c ? strchr(from, c) : NULL;
            out[o++] = p ? to[p - from] : '?';
            i += 2;
            continue;
        }
        /* Checked: 4 hex digits, and a high surrogate is followed by a low
         * one. On unchecked input a malformed escape decodes as '?' and a lone
         * surrogate as U+FFFD (3 bytes for 6). */
        unsigned cp, lo;
        if (hex4(b, end, i + 2, &cp)) {
            out[o++] = '?'; /* so that the text never grows */
            i += 2;
            continue;
        }
        i += 6;
        if (cp >= 0xD800 && cp <= 0xDBFF && i + 1 < end && b[i] == '\\' && b[i + 1] == 'u' &&
            hex4(b, end, i + 2, &lo) == 0 && lo >= 0xDC00 && lo <= 0xDFFF) {
            cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
            i += 6;
        } else if (cp >= 0xD800 && cp <= 0xDFFF) {
            cp = 0xFFFD;
        }
        nul |= cp == 0;
        /* \uXXXX is 6 bytes and gives at most 3; a pair is 12 and gives 4. */
        o += put_utf8(out + o, cp);
    }
    out[o] = '\0';
    *n = o;
    if (has_nul)
        *has_nul = nul;
}

int airllm_js_str_has_nul(const uint8_t *b, const airllm_js_val *v)
{
    size_t end = v->end - 1;
    for (size_t i = v->start + 1; i < end; i++) {
        if (b[i] != '\\')
            continue;
        unsigned cp;
        if (i + 1 < end && b[i + 1] == 'u' && hex4(b, end, i + 2, &cp) == 0 && cp == 0)
            return 1;
        i++; /* the escaped character; a \uXXXX's digits are not backslashes */
    }
    return 0;
}

int airllm_js_str_eq(const uint8_t *b, const airllm_js_val *v, const char *lit)
{
    if (v->kind != AIRLLM_JS_STRING)
        return 0;
    size_t raw = v->end - v->start - 2, n = strlen(lit);
    if (raw < n)
        return 0; /* decoding never grows the text */
    if (!memchr(b + v->start + 1, '\\', raw))
        return raw == n && memcmp(b + v->start + 1, lit, n) == 0;
    char tmp[128];
    if (raw >= sizeof tmp)
        return 0; /* escapes shrink by at most 6x; our keys are short */
    size_t got;
    bool nul;
    airllm_js_str(b, v, tmp, &got, &nul);
    return !nul && got == n && memcmp(tmp, lit, n) == 0;
}

int airllm_js_uint(const uint8_t *b, const airllm_js_val *v, uint64_t max, uint64_t *out)
{
    const uint8_t *s = b + v->start;
    size_t n = v->end - v->start;
    *out = 0;
    if (n && s[0] == '-')
        return AIRLLM_JS_NUM_NEG;
    for (size_t i = 0; i < n; i++)
        if (!is_digit(s[i]))
            return AIRLLM_JS_NUM_FRAC;
    uint64_t x = 0;
    for (size_t i = 0; i < n; i++) {
        uint64_t d = (uint64_t)(s[i] - '0');
        if (d > max || x > (max - d) / 10)
            return AIRLLM_JS_NUM_BIG;
        x = x * 10 + d;
    }
    *out = x;
    return AIRLLM_JS_NUM_OK;
}

double airllm_js_double(const uint8_t *b, const airllm_js_val *v)
{
    /* Real numbers in our documents are %.17g at most; a longer token is
     * refused as NaN rather than copied to the heap. */
    char tmp[400];
    size_t n = v->end - v->start;
    if (v->kind != AIRLLM_JS_NUMBER || n >= sizeof tmp)
        return NAN;
    memcpy(tmp, b + v->start, n);
    tmp[n] = '\0';
    return strtod(tmp, NULL);
}
