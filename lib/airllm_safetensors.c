/* Safetensors header reader; see airllm_safetensors.h for the format.
 *
 * The header is read with airllm_jscan, not a JSON tree: a tree took about
 * 1 KiB per tensor (783 MiB to plan a million tiny tensors), while the
 * table here takes sizeof(airllm_st_tensor) plus the name. The scanner is
 * as strict as the reference reader (serde_json): numbers keep their exact
 * integer value and whether they were written as plain integers (1.0, 1e3
 * and 2^53+1 are refused), "\u0000" in a string is seen and refused, and
 * only the four JSON whitespace characters are whitespace. */
#include "airllm_safetensors.h"

#include "airllm_bytes.h"
#include "airllm_io.h"
#include "airllm_jscan.h"

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

/* ------------------------------------------------------------- validation */

/* Reads a non-negative integer (what, e.g. "shape[2]") for tensor tname. */
static int get_uint(const uint8_t *h, const airllm_js_val *v, const char *tname,
                    const char *what, uint64_t *out, airllm_err *err)
{
    char sn[SHOW_MAX];
    if (v->kind != AIRLLM_JS_NUMBER)
        return airllm_errf(err, "tensor '%s': %s is not a number", show(sn, tname), what);
    size_t len = v->end - v->start;
    int shown = len > 40 ? 40 : (int)len;
    const char *txt = (const char *)h + v->start;
    switch (airllm_js_uint(h, v, ST_MAX_INT, out)) {
    case AIRLLM_JS_NUM_NEG:
        return airllm_errf(err, "tensor '%s': %s is negative (%.*s)", show(sn, tname), what,
                           shown, txt);
    case AIRLLM_JS_NUM_FRAC:
        return airllm_errf(err, "tensor '%s': %s is not an integer (%.*s)", show(sn, tname),
                           what, shown, txt);
    case AIRLLM_JS_NUM_BIG:
        return airllm_errf(err, "tensor '%s': %s is too large (%.*s > 2^53)", show(sn, tname),
                           what, shown, txt);
    }
    return 0;
}

/* A string value decoded into a bounded buffer, for names in messages and
 * short values (dtype): longer text is cut, which only shortens a message
 * or makes an unknown dtype stay unknown. */
static const char *small_str(const uint8_t *h, const airllm_js_val *v, char out[SHOW_MAX],
                             bool *has_nul)
{
    char tmp[SHOW_MAX * 6 + 8];
    airllm_js_val w = *v;
    /* An escape cut in two decodes as '?': only the message shows it. */
    if (w.end - w.start > sizeof tmp - 1)
        w.end = w.start + sizeof tmp - 1;
    size_t n;
    bool nul;
    airllm_js_str(h, &w, tmp, &n, &nul);
    /* Judged on the whole string, not the part decoded. */
    if (has_nul)
        *has_nul = airllm_js_str_has_nul(h, v);
    n = strlen(tmp);
    if (n > SHOW_MAX - 1)
        n = SHOW_MAX - 1;
    memcpy(out, tmp, n);
    out[n] = '\0';
    return out;
}

static int check_metadata(const uint8_t *h, const airllm_js_val *md, airllm_err *err)
{
    char sn[SHOW_MAX];
    if (md->kind != AIRLLM_JS_OBJECT)
        return airllm_errf(err, "\"__metadata__\" is not an object");
    airllm_js_iter it;
    airllm_js_val k, v;
    int r;
    airllm_js_iter_init(&it, h, md);
    while ((r = airllm_js_iter_next(&it, &k, &v)) > 0) {
        bool nul;
        small_str(h, &k, sn, &nul);
        if (nul)
            return airllm_errf(err, "\"__metadata__\" key '%s' contains a NUL character",
                               show((char[SHOW_MAX]){0}, sn));
        if (v.kind != AIRLLM_JS_STRING)
            return airllm_errf(err, "\"__metadata__\" value for key '%s' is not a string",
                               show((char[SHOW_MAX]){0}, sn));
        small_str(h, &v, (char[SHOW_MAX]){0}, &nul);
        if (nul)
            return airllm_errf(err,
                               "\"__metadata__\" value for key '%s' contains a NUL character",
                               show((char[SHOW_MAX]){0}, sn));
    }
    return r < 0 ? airllm_errf(err, "internal error: header scanner lost its place") : 0;
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

/* Checks one entry and fills t; t->name is already set (decoded into the
 * arena by the caller), name_nul says whether it held \u0000. */
static int parse_tensor(const uint8_t *h, const airllm_js_val *entry, bool name_nul,
                        airllm_st_tensor *t, airllm_err *err)
{
    char sn[SHOW_MAX];
    const char *name = t->name;
    if (name_nul)
        return airllm_errf(err, "tensor name '%s' contains a NUL character", show(sn, name));
    size_t n = strlen(name);
    if (n == 0)
        return airllm_errf(err, "empty tensor name");
    if (n > AIRLLM_ST_MAX_NAME)
        return airllm_errf(err, "tensor name '%s' is %zu bytes, longer than the limit of %d",
                           show(sn, name), n, AIRLLM_ST_MAX_NAME);
    if (entry->kind != AIRLLM_JS_OBJECT)
        return airllm_errf(err, "tensor '%s': entry is not an object", show(sn, name));

    airllm_js_val dtype = {0}, shape = {0}, offs = {0}, k, v;
    bool have_dtype = false, have_shape = false, have_offs = false;
    airllm_js_iter it;
    int r;
    airllm_js_iter_init(&it, h, entry);
    while ((r = airllm_js_iter_next(&it, &k, &v)) > 0) {
        char key[SHOW_MAX];
        bool nul;
        small_str(h, &k, key, &nul);
        airllm_js_val *slot;
        bool *have;
        /* A NUL-escaped key such as "dtype\u0000x" reads as "dtype" here,
         * as a C string; it is refused just below. */
        if (strcmp(key, "dtype") == 0)
            slot = &dtype, have = &have_dtype;
        else if (strcmp(key, "shape") == 0)
            slot = &shape, have = &have_shape;
        else if (strcmp(key, "data_offsets") == 0)
            slot = &offs, have = &have_offs;
        else
            return airllm_errf(err, "tensor '%s': unexpected key '%s'", show(sn, name),
                               show((char[SHOW_MAX]){0}, key));
        if (nul)
            return airllm_errf(err, "tensor '%s': a key contains a NUL character",
                               show(sn, name));
        if (*have)
            return airllm_errf(err, "tensor '%s': duplicate key '%s'", show(sn, name), key);
        *slot = v;
        *have = true;
    }
    if (r < 0)
        return airllm_errf(err, "internal error: header scanner lost its place");
    if (!have_dtype)
        return airllm_errf(err, "tensor '%s': missing \"dtype\"", show(sn, name));
    if (!have_shape)
        return airllm_errf(err, "tensor '%s': missing \"shape\"", show(sn, name));
    if (!have_offs)
        return airllm_errf(err, "tensor '%s': missing \"data_offsets\"", show(sn, name));

    if (dtype.kind != AIRLLM_JS_STRING)
        return airllm_errf(err, "tensor '%s': dtype is not a string", show(sn, name));
    char dt[SHOW_MAX];
    bool dt_nul;
    small_str(h, &dtype, dt, &dt_nul);
    if (dt_nul)
        return airllm_errf(err, "tensor '%s': dtype contains a NUL character", show(sn, name));
    if (airllm_dtype_from_name(dt, &t->dtype) < 0)
        return airllm_errf(err, "tensor '%s': unknown dtype '%s'", show(sn, name),
                           show((char[SHOW_MAX]){0}, dt));

    if (shape.kind != AIRLLM_JS_ARRAY)
        return airllm_errf(err, "tensor '%s': shape is not an array", show(sn, name));
    /* Counted first, so that the message gives the true count. */
    int nd = 0;
    airllm_js_iter_init(&it, h, &shape);
    while ((r = airllm_js_iter_next(&it, NULL, &v)) > 0)
        nd += nd < INT32_MAX;
    if (r < 0)
        return airllm_errf(err, "internal error: header scanner lost its place");
    if (nd > AIRLLM_MAX_DIMS)
        return airllm_errf(err, "tensor '%s': shape has %d dimensions, more than the limit of %d",
                           show(sn, name), nd, AIRLLM_MAX_DIMS);
    t->ndim = (unsigned)nd;
    unsigned d = 0;
    airllm_js_iter_init(&it, h, &shape);
    while (airllm_js_iter_next(&it, NULL, &v) > 0) {
        char what[32];
        snprintf(what, sizeof what, "shape[%u]", d);
        if (get_uint(h, &v, name, what, &t->shape[d], err) < 0)
            return -1;
        d++;
    }

    if (offs.kind != AIRLLM_JS_ARRAY)
        return airllm_errf(err, "tensor '%s': data_offsets is not an array", show(sn, name));
    airllm_js_val ov[2];
    int no = 0;
    airllm_js_iter_init(&it, h, &offs);
    while ((r = airllm_js_iter_next(&it, NULL, &v)) > 0) {
        if (no < 2)
            ov[no] = v;
        no += no < INT32_MAX;
    }
    if (r < 0)
        return airllm_errf(err, "internal error: header scanner lost its place");
    if (no != 2)
        return airllm_errf(err, "tensor '%s': data_offsets has %d elements, not 2",
                           show(sn, name), no);
    if (get_uint(h, &ov[0], name, "data_offsets[0]", &t->begin, err) < 0 ||
        get_uint(h, &ov[1], name, "data_offsets[1]", &t->end, err) < 0)
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
    free(f->names);
    free(f->tensors);
    memset(f, 0, sizeof *f);
}

/* Validates the checked root object and fills out. A first walk counts the
 * entries and the bytes their names need, so that the table and the name
 * arena are each allocated once, to size: per tensor, sizeof(airllm_st_tensor)
 * plus its name and a NUL. */
static int build(const uint8_t *h, const airllm_js_val *root, airllm_st_file *out,
                 airllm_err *err)
{
    size_t count = 0, n_meta = 0, name_bytes = 0;
    airllm_js_iter it;
    airllm_js_val k, v;
    int r;
    airllm_js_iter_init(&it, h, root);
    while ((r = airllm_js_iter_next(&it, &k, &v)) > 0) {
        if (airllm_js_str_eq(h, &k, "__metadata__")) {
            n_meta++;
        } else {
            count++;
            name_bytes += k.end - k.start - 1; /* decoded text + NUL fits */
        }
    }
    if (r < 0)
        return airllm_errf(err, "internal error: header scanner lost its place");
    if (n_meta > 1)
        return airllm_errf(err, "duplicate \"__metadata__\"");
    if (count) {
        out->tensors = calloc(count, sizeof *out->tensors);
        out->names = malloc(name_bytes);
        if (!out->tensors || !out->names)
            return airllm_errf(err, "out of memory for %zu tensors", count);
    }
    size_t used = 0;
    airllm_js_iter_init(&it, h, root);
    while (airllm_js_iter_next(&it, &k, &v) > 0) {
        if (airllm_js_str_eq(h, &k, "__metadata__")) {
            if (check_metadata(h, &v, err) < 0)
                return -1;
            continue;
        }
        airllm_st_tensor *t = &out->tensors[out->n_tensors];
        size_t nlen;
        bool nul;
        t->name = out->names + used;
        airllm_js_str(h, &k, t->name, &nlen, &nul);
        used += nlen + 1;
        if (parse_tensor(h, &v, nul, t, err) < 0)
            return -1;
        out->n_tensors++;
    }
    /* Duplicate keys are legal JSON, so find them by sorting by name. */
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

    /* One walk checks the grammar (before any entry is looked at, so that a
     * syntax error is reported as one wherever it is); a second builds. */
    size_t jlen;
    airllm_js_error je;
    if (airllm_js_check(hdr, hlen, &jlen, &je) < 0)
        return airllm_errf(err, "header is not valid JSON: %s at header byte %zu", je.what,
                           je.at);
    /* The spec allows padding the header with spaces, nothing else. */
    for (size_t i = jlen; i < hlen; i++)
        if (hdr[i] != ' ')
            return airllm_errf(err,
                               "header has unexpected data after the JSON object (byte 0x%02x "
                               "at header byte %zu; only space padding is allowed)",
                               hdr[i], i);
    airllm_js_val root = {AIRLLM_JS_OBJECT, 0, jlen};
    out->header_len = n;
    out->data_start = 8 + n;
    out->file_size = file_size;
    int rc = build(hdr, &root, out, err);
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
