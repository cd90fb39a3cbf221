/* Reading manifest.json (airllm_manifest.h) without a JSON tree.
 *
 * A cJSON tree of a million-tensor manifest took about 1.9 KiB per tensor
 * (1.85 GiB for airllm-verify and airllm-run). Here the text is checked
 * once by airllm_jscan, then each member is read where it lies: per tensor
 * the table keeps sizeof(airllm_mf_tensor) (96 bytes), its shape (8 bytes a
 * dimension) and its name, in one arena; the source is a pointer to the
 * sources entry's name, not a copy. Objects are read by one walk over their
 * members that keeps the first value of each wanted key (as cJSON's lookup
 * finds the first), so unknown keys are still ignored. */
#include "airllm_manifest.h"
#include "airllm_quant.h"

#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "airllm_bytes.h"
#include "airllm_index.h"
#include "airllm_io.h"
#include "airllm_jscan.h"

/* ---- the string arena: blocks that never move, freed together ---- */

typedef struct mf_block {
    struct mf_block *next;
    size_t used, cap;
    _Alignas(8) char data[];
} mf_block;

#define MF_BLOCK_BYTES ((size_t)1 << 20)

void airllm_manifest_free(airllm_manifest *m)
{
    if (!m)
        return;
    free(m->options_json);
    free(m->units);
    free(m->tensors);
    free(m->sources);
    free(m->files);
    for (mf_block *b = m->arena, *next; b; b = next) {
        next = b->next;
        free(b);
    }
    memset(m, 0, sizeof *m);
}

/* n bytes aligned to 8, from the manifest's arena. */
static void *arena_alloc(airllm_manifest *m, size_t n)
{
    mf_block *b = m->arena;
    size_t need = (n + 7) & ~(size_t)7;
    if (!b || b->cap - b->used < need) {
        size_t cap = need > MF_BLOCK_BYTES ? need : MF_BLOCK_BYTES;
        mf_block *nb = malloc(sizeof *nb + cap);
        if (!nb)
            return NULL;
        nb->used = 0;
        nb->cap = cap;
        if (b && need > MF_BLOCK_BYTES) {
            /* A big string gets a block of its own behind the current one,
             * which keeps filling. */
            nb->next = b->next;
            b->next = nb;
            nb->used = need;
            return nb->data;
        }
        nb->next = b;
        m->arena = b = nb;
    }
    void *p = b->data + b->used;
    b->used += need;
    return p;
}

/* ---- reading members ---- */

typedef struct {
    const uint8_t *b;  /* the document */
    airllm_manifest *m;
    char *scratch;     /* for strings looked at but not kept */
    size_t scratch_cap;
} mp;

typedef struct {
    bool has;
    airllm_js_val v;
} fld;

static int lost(airllm_err *err)
{
    return airllm_errf(err, "internal error: manifest scanner lost its place");
}

/* The first value of each of keys[0..n) among obj's members. */
static int fields(const mp *p, const airllm_js_val *obj, const char *const *keys, size_t n,
                  fld *out, airllm_err *err)
{
    memset(out, 0, n * sizeof *out);
    airllm_js_iter it;
    airllm_js_val k, v;
    int r;
    airllm_js_iter_init(&it, p->b, obj);
    while ((r = airllm_js_iter_next(&it, &k, &v)) > 0)
        for (size_t i = 0; i < n; i++)
            if (!out[i].has && airllm_js_str_eq(p->b, &k, keys[i])) {
                out[i] = (fld){true, v};
                break;
            }
    return r < 0 ? lost(err) : 0;
}

static int count_elems(const mp *p, const airllm_js_val *arr, size_t *n, airllm_err *err)
{
    airllm_js_iter it;
    airllm_js_val v;
    int r;
    *n = 0;
    airllm_js_iter_init(&it, p->b, arr);
    while ((r = airllm_js_iter_next(&it, NULL, &v)) > 0)
        (*n)++;
    return r < 0 ? lost(err) : 0;
}

static bool is_str(const fld *f)
{
    return f->has && f->v.kind == AIRLLM_JS_STRING;
}

/* Decodes a string value into the arena (keep) or the scratch buffer. A
 * string holding \u0000 is refused: as a C string it would silently lose
 * its tail. */
static int str_of(mp *p, const fld *f, bool keep, const char *where, const char *key,
                  char **out, airllm_err *err)
{
    size_t cap = f->v.end - f->v.start - 1, n;
    char *dst;
    if (keep) {
        dst = arena_alloc(p->m, cap);
    } else {
        if (p->scratch_cap < cap) {
            char *s = realloc(p->scratch, cap);
            if (!s)
                return airllm_errf(err, "out of memory");
            p->scratch = s;
            p->scratch_cap = cap;
        }
        dst = p->scratch;
    }
    if (!dst)
        return airllm_errf(err, "out of memory");
    bool nul;
    airllm_js_str(p->b, &f->v, dst, &n, &nul);
    if (nul)
        return airllm_errf(err, "%s: \"%s\" contains a NUL character", where, key);
    *out = dst;
    return 0;
}

static int get_str(mp *p, const fld *f, const char *key, const char *where, bool keep,
                   char **out, airllm_err *err)
{
    if (!f->has)
        return airllm_errf(err, "%s: missing \"%s\"", where, key);
    if (f->v.kind != AIRLLM_JS_STRING)
        return airllm_errf(err, "%s: \"%s\" must be a string", where, key);
    return str_of(p, f, keep, where, key, out, err);
}

/* JSON numbers are doubles (as cJSON reads them): integers are exact up to
 * 2^53, which bounds every size and count we record. */
static int as_u64(const mp *p, const fld *f, uint64_t *out)
{
    if (!f->has || f->v.kind != AIRLLM_JS_NUMBER)
        return -1;
    double d = airllm_js_double(p->b, &f->v);
    if (!(d >= 0) || d > 9007199254740992.0 || floor(d) != d)
        return -1;
    *out = (uint64_t)d;
    return 0;
}

static int get_u64(const mp *p, const fld *f, const char *key, const char *where,
                   uint64_t *out, airllm_err *err)
{
    if (!f->has)
        return airllm_errf(err, "%s: missing \"%s\"", where, key);
    if (as_u64(p, f, out))
        return airllm_errf(err, "%s: \"%s\" must be a non-negative integer", where, key);
    return 0;
}

static int get_i64_opt(const mp *p, const fld *f, const char *key, const char *where,
                       int64_t *out, airllm_err *err)
{
    *out = -1;
    if (!f->has || f->v.kind == AIRLLM_JS_NULL)
        return 0;
    uint64_t u;
    if (as_u64(p, f, &u))
        return airllm_errf(err, "%s: \"%s\" must be a non-negative integer", where, key);
    *out = (int64_t)u;
    return 0;
}

static bool is_bool(const fld *f)
{
    return f->has && (f->v.kind == AIRLLM_JS_TRUE || f->v.kind == AIRLLM_JS_FALSE);
}

static int get_sha(const mp *p, const fld *f, const char *where, char out[AIRLLM_SHA256_HEX],
                   airllm_err *err)
{
    if (!f->has)
        return airllm_errf(err, "%s: missing \"sha256\"", where);
    size_t n;
    bool nul;
    /* 64 digits, possibly written as escapes: at most 6 bytes each. */
    char hex[64 * 6 + 2];
    if (f->v.kind != AIRLLM_JS_STRING || f->v.end - f->v.start - 1 > sizeof hex)
        return airllm_errf(err, "%s: \"sha256\" must be 64 lower-case hex digits", where);
    airllm_js_str(p->b, &f->v, hex, &n, &nul);
    if (nul || n != 64 || !airllm_sha256_hex_valid(hex))
        return airllm_errf(err, "%s: \"sha256\" must be 64 lower-case hex digits", where);
    memcpy(out, hex, AIRLLM_SHA256_HEX);
    return 0;
}

static int get_array(const fld *f, const char *key, const char *where, airllm_err *err)
{
    if (!f->has)
        return airllm_errf(err, "%s: missing \"%s\"", where, key);
    if (f->v.kind != AIRLLM_JS_ARRAY)
        return airllm_errf(err, "%s: \"%s\" must be an array", where, key);
    return 0;
}

/* ---- the parts of the manifest ---- */

/* A quantized tensor's "quant" object: block size, double quantization and
 * the error statistics, finite and non-negative. */
static int parse_quant(const mp *p, const fld *q, const char *where, airllm_mf_tensor *t,
                       airllm_err *err)
{
    if (!q->has || q->v.kind != AIRLLM_JS_OBJECT)
        return airllm_errf(err, "%s (%s): a quantized tensor needs a \"quant\" object", where,
                           t->name);
    static const char *const keys[] = {"block_size", "double_quant", "rmse", "max_abs_error",
                                       "rel_frobenius_error"};
    fld f[5];
    if (fields(p, &q->v, keys, 5, f, err))
        return -1;
    uint64_t block = 0;
    if (get_u64(p, &f[0], "block_size", where, &block, err))
        return -1;
    if (block > UINT32_MAX || airllm_quant_check_block((size_t)block, err))
        return airllm_errf(err, "%s (%s): bad quant block_size %llu", where, t->name,
                           (unsigned long long)block);
    t->quant_block = (uint32_t)block;
    if (!is_bool(&f[1]))
        return airllm_errf(err, "%s (%s): quant \"double_quant\" must be true or false", where,
                           t->name);
    t->quant_double = f[1].v.kind == AIRLLM_JS_TRUE;
    double *vals[3] = {&t->quant_rmse, &t->quant_max_abs, &t->quant_rel_fro};
    for (int k = 0; k < 3; k++) {
        double d = f[2 + k].has ? airllm_js_double(p->b, &f[2 + k].v) : NAN;
        if (!isfinite(d) || d < 0)
            return airllm_errf(err, "%s (%s): quant \"%s\" must be a non-negative number",
                               where, t->name, keys[2 + k]);
        *vals[k] = d;
    }
    return 0;
}

static int parse_file_list(mp *p, const fld *list, const char *key, airllm_mf_file **out,
                           size_t *n_out, airllm_err *err)
{
    size_t n;
    if (get_array(list, key, "manifest", err) || count_elems(p, &list->v, &n, err))
        return -1;
    *out = calloc(n ? n : 1, sizeof **out);
    if (!*out)
        return airllm_errf(err, "out of memory");
    *n_out = n;
    /* Names seen so far: a scan of the earlier entries per entry would be
     * quadratic in the list's length. */
    airllm_index seen;
    if (airllm_index_init(&seen, n, err))
        return -1;
    static const char *const keys[] = {"file", "size", "sha256"};
    size_t i = 0;
    airllm_js_iter it;
    airllm_js_val v;
    airllm_js_iter_init(&it, p->b, &list->v);
    int rc = 0;
    while (!rc && airllm_js_iter_next(&it, NULL, &v) > 0) {
        char where[64];
        snprintf(where, sizeof where, "%s[%zu]", key, i);
        airllm_mf_file *f = &(*out)[i++];
        fld fl[3];
        if (v.kind != AIRLLM_JS_OBJECT) {
            rc = airllm_errf(err, "%s: must be an object", where);
            break;
        }
        if (fields(p, &v, keys, 3, fl, err) ||
            get_str(p, &fl[0], "file", where, true, &f->file, err) ||
            get_u64(p, &fl[1], "size", where, &f->size, err) ||
            get_sha(p, &fl[2], where, f->sha256, err)) {
            rc = -1;
            break;
        }
        if (!airllm_safe_filename(f->file)) {
            rc = airllm_errf(err, "%s: unsafe file name \"%s\"", where, f->file);
            break;
        }
        long prev;
        if (airllm_index_add(&seen, f->file, i - 1, &prev, err))
            rc = -1;
        else if (prev >= 0)
            rc = airllm_errf(err, "%s: duplicate file \"%s\"", where, f->file);
    }
    airllm_index_free(&seen);
    return rc;
}

/* names and files: the unit names and files seen so far; first_of_kind: the
 * first unit of each kind, -1 before one is seen. */
static int parse_units_in(mp *p, const fld *list, airllm_index *names, airllm_index *files,
                          long *first_of_kind, airllm_err *err)
{
    airllm_manifest *m = p->m;
    size_t n;
    if (get_array(list, "units", "manifest", err) || count_elems(p, &list->v, &n, err))
        return -1;
    m->units = calloc(n ? n : 1, sizeof *m->units);
    if (!m->units)
        return airllm_errf(err, "out of memory");
    m->n_units = n;
    enum { NAME, KIND, LAYER, TIED, FILE_, SIZE, SHA, NKEYS };
    static const char *const keys[NKEYS] = {"name", "kind", "layer", "tied_to",
                                            "file", "size", "sha256"};
    size_t i = 0;
    airllm_js_iter it;
    airllm_js_val v;
    airllm_js_iter_init(&it, p->b, &list->v);
    while (airllm_js_iter_next(&it, NULL, &v) > 0) {
        char where[64];
        snprintf(where, sizeof where, "units[%zu]", i);
        airllm_mf_unit *u = &m->units[i++];
        u->layer = -1;
        char *kind = NULL;
        fld f[NKEYS];
        if (v.kind != AIRLLM_JS_OBJECT)
            return airllm_errf(err, "%s: must be an object", where);
        if (fields(p, &v, keys, NKEYS, f, err) ||
            get_str(p, &f[NAME], "name", where, true, &u->name, err) ||
            get_str(p, &f[KIND], "kind", where, false, &kind, err))
            return -1;
        if (airllm_unit_kind_from_name(kind, &u->kind))
            return airllm_errf(err, "%s: unknown unit kind", where);
        if (u->kind != AIRLLM_UNIT_LAYER && f[LAYER].has)
            return airllm_errf(err, "%s: \"layer\" is only for layer units", where);
        if (u->kind == AIRLLM_UNIT_LAYER) {
            uint64_t layer = 0;
            if (get_u64(p, &f[LAYER], "layer", where, &layer, err))
                return -1;
            if (layer > 1000000)
                return airllm_errf(err, "%s: layer %llu out of range", where,
                                   (unsigned long long)layer);
            u->layer = (int32_t)layer;
        }
        if (f[TIED].has) {
            if (u->kind != AIRLLM_UNIT_LM_HEAD || !is_str(&f[TIED]) ||
                f[TIED].v.end - f[TIED].v.start == 2)
                return airllm_errf(err, "%s: \"tied_to\" is only for the lm_head unit and must "
                                        "name a tensor", where);
            if (f[FILE_].has || f[SIZE].has || f[SHA].has)
                return airllm_errf(err, "%s: a tied unit has no file, size or sha256", where);
            if (str_of(p, &f[TIED], true, where, "tied_to", &u->tied_to, err))
                return -1;
        } else {
            if (get_str(p, &f[FILE_], "file", where, true, &u->file, err) ||
                get_u64(p, &f[SIZE], "size", where, &u->size, err) ||
                get_sha(p, &f[SHA], where, u->sha256, err))
                return -1;
            if (!airllm_safe_filename(u->file))
                return airllm_errf(err, "%s: unsafe file name \"%s\"", where, u->file);
        }
        /* Each check has at most one earlier unit it can trip on (earlier
         * units passed them too); report the earliest, as a scan of the
         * earlier units would. */
        long j_kind = u->kind != AIRLLM_UNIT_LAYER ? first_of_kind[u->kind] : -1;
        long j_name, j_file = -1;
        if (airllm_index_add(names, u->name, i - 1, &j_name, err) ||
            (u->file && airllm_index_add(files, u->file, i - 1, &j_file, err)))
            return -1;
        if (j_kind >= 0 && (j_name < 0 || j_kind <= j_name) && (j_file < 0 || j_kind <= j_file))
            return airllm_errf(err, "%s: a second %s unit", where,
                               airllm_unit_kind_name(u->kind));
        if (j_name >= 0 && (j_file < 0 || j_name <= j_file))
            return airllm_errf(err, "%s: duplicate unit \"%s\"", where, u->name);
        if (j_file >= 0)
            return airllm_errf(err, "%s: file \"%s\" used twice", where, u->file);
        if (first_of_kind[u->kind] < 0)
            first_of_kind[u->kind] = (long)(i - 1);
    }
    size_t heads = 0;
    for (size_t j = 0; j < n; j++)
        heads += m->units[j].kind == AIRLLM_UNIT_LM_HEAD;
    if (heads != 1)
        return airllm_errf(err, "units: there must be exactly one lm_head unit");
    return 0;
}

static int parse_units(mp *p, const fld *list, airllm_err *err)
{
    long first_of_kind[AIRLLM_UNIT_KIND_COUNT];
    for (size_t k = 0; k < AIRLLM_UNIT_KIND_COUNT; k++)
        first_of_kind[k] = -1;
    airllm_index names, files;
    if (airllm_index_init(&names, 0, err))
        return -1;
    if (airllm_index_init(&files, 0, err)) {
        airllm_index_free(&names);
        return -1;
    }
    int rc = parse_units_in(p, list, &names, &files, first_of_kind, err);
    airllm_index_free(&names);
    airllm_index_free(&files);
    return rc;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* One tensor entry; units and sources: the unit names and source files. */
static int parse_tensor(mp *p, const airllm_js_val *v, const char *where, airllm_mf_tensor *t,
                        const airllm_index *units, const airllm_index *sources,
                        airllm_err *err)
{
    airllm_manifest *m = p->m;
    enum { NAME, DTYPE, SHAPE, BYTES, STORED, ENC, QUANT, UNIT, SOURCE, NKEYS };
    static const char *const keys[NKEYS] = {"name",     "dtype", "shape", "bytes", "stored_bytes",
                                            "encoding", "quant", "unit",  "source"};
    fld f[NKEYS];
    char *s;
    if (v->kind != AIRLLM_JS_OBJECT)
        return airllm_errf(err, "%s: must be an object", where);
    if (fields(p, v, keys, NKEYS, f, err) ||
        get_str(p, &f[NAME], "name", where, true, &t->name, err) ||
        get_str(p, &f[DTYPE], "dtype", where, false, &s, err))
        return -1;
    if (airllm_dtype_from_name(s, &t->dtype))
        return airllm_errf(err, "%s (%s): unknown dtype \"%s\"", where, t->name, s);
    if (!f[SHAPE].has)
        return airllm_errf(err, "%s: missing \"shape\"", where);
    size_t nd = 0;
    if (f[SHAPE].v.kind == AIRLLM_JS_ARRAY && count_elems(p, &f[SHAPE].v, &nd, err))
        return -1;
    if (f[SHAPE].v.kind != AIRLLM_JS_ARRAY || nd > AIRLLM_MAX_DIMS)
        return airllm_errf(err, "%s (%s): \"shape\" must be an array of at most %d integers",
                           where, t->name, AIRLLM_MAX_DIMS);
    uint64_t *shape = arena_alloc(m, (nd ? nd : 1) * sizeof *shape);
    if (!shape)
        return airllm_errf(err, "out of memory");
    t->shape = shape;
    airllm_js_iter it;
    airllm_js_val d;
    airllm_js_iter_init(&it, p->b, &f[SHAPE].v);
    while (airllm_js_iter_next(&it, NULL, &d) > 0) {
        fld df = {true, d};
        if (as_u64(p, &df, &shape[t->ndim]))
            return airllm_errf(err, "%s (%s): bad dimension in \"shape\"", where, t->name);
        t->ndim++;
    }
    uint64_t nbytes;
    if (airllm_shape_nbytes(t->dtype, t->shape, t->ndim, NULL, &nbytes))
        return airllm_errf(err, "%s (%s): shape size overflows", where, t->name);
    if (get_u64(p, &f[BYTES], "bytes", where, &t->raw_len, err) ||
        get_u64(p, &f[STORED], "stored_bytes", where, &t->stored_len, err))
        return -1;
    if (t->raw_len != nbytes)
        return airllm_errf(err, "%s (%s): \"bytes\" %llu does not match shape x dtype (%llu)",
                           where, t->name, (unsigned long long)t->raw_len,
                           (unsigned long long)nbytes);
    if (get_str(p, &f[ENC], "encoding", where, false, &s, err))
        return -1;
    int e;
    for (e = 0; e < AIRLLM_ENC_COUNT; e++)
        if (strcmp(s, airllm_encoding_name((airllm_encoding)e)) == 0)
            break;
    if (e == AIRLLM_ENC_COUNT)
        return airllm_errf(err, "%s (%s): unknown encoding \"%s\"", where, t->name, s);
    t->encoding = (airllm_encoding)e;
    if (airllm_encoding_is_quant(t->encoding)) {
        if (m->version_minor < 1)
            return airllm_errf(err, "%s (%s): encoding %s needs format 1.1", where, t->name,
                               airllm_encoding_name(t->encoding));
        if (parse_quant(p, &f[QUANT], where, t, err))
            return -1;
    } else if (f[QUANT].has) {
        return airllm_errf(err, "%s (%s): \"quant\" on a tensor that is not quantized", where,
                           t->name);
    }
    if (get_str(p, &f[UNIT], "unit", where, false, &s, err))
        return -1;
    long u = airllm_index_find(units, s);
    if (u < 0 || !m->units[u].file)
        return airllm_errf(err, "%s (%s): unit \"%s\" is not a unit with a file", where,
                           t->name, s);
    t->unit = (size_t)u;
    if (get_str(p, &f[SOURCE], "source", where, false, &s, err))
        return -1;
    long k = airllm_index_find(sources, s);
    if (k < 0)
        return airllm_errf(err, "%s (%s): source \"%s\" is not in \"sources\"", where, t->name,
                           s);
    t->source = m->sources[k].file; /* shared, not copied */
    return 0;
}

/* Unit and source names are looked up through indexes: a scan of the units
 * per tensor was quadratic (a million tensors in 83k layers). */
static int parse_tensors(mp *p, const fld *list, airllm_err *err)
{
    airllm_manifest *m = p->m;
    size_t n;
    if (get_array(list, "tensors", "manifest", err) || count_elems(p, &list->v, &n, err))
        return -1;
    m->tensors = calloc(n ? n : 1, sizeof *m->tensors);
    if (!m->tensors)
        return airllm_errf(err, "out of memory");
    m->n_tensors = n;
    airllm_index units, sources = {0};
    if (airllm_index_build(&units, m->units, m->n_units, sizeof *m->units,
                           offsetof(airllm_mf_unit, name), err))
        return -1;
    int rc = airllm_index_build(&sources, m->sources, m->n_sources, sizeof *m->sources,
                                offsetof(airllm_mf_file, file), err);
    size_t i = 0;
    airllm_js_iter it;
    airllm_js_val v;
    airllm_js_iter_init(&it, p->b, &list->v);
    while (!rc && airllm_js_iter_next(&it, NULL, &v) > 0) {
        char where[64];
        snprintf(where, sizeof where, "tensors[%zu]", i);
        rc = parse_tensor(p, &v, where, &m->tensors[i], &units, &sources, err);
        i++;
    }
    airllm_index_free(&units);
    airllm_index_free(&sources);
    if (rc)
        return -1;
    /* Names must be unique across the model. Sorting a copy keeps this
     * O(n log n) for models with a million tensors. */
    const char **names = malloc((n ? n : 1) * sizeof *names);
    if (!names)
        return airllm_errf(err, "out of memory");
    for (size_t k = 0; k < n; k++)
        names[k] = m->tensors[k].name;
    qsort(names, n, sizeof *names, cmp_str);
    for (size_t k = 1; k < n && !rc; k++)
        if (strcmp(names[k - 1], names[k]) == 0)
            rc = airllm_errf(err, "tensors: duplicate tensor \"%s\"", names[k]);
    free(names);
    return rc;
}

static int parse_model(mp *p, const fld *model, airllm_mf_model *mo, airllm_err *err)
{
    if (!model->has)
        return airllm_errf(err, "manifest: missing \"model\"");
    if (model->v.kind != AIRLLM_JS_OBJECT)
        return airllm_errf(err, "manifest: \"model\" must be an object");
    static const char *const keys[] = {"architecture", "model_type", "family", "num_layers",
                                       "hidden_size", "vocab_size", "tie_word_embeddings"};
    fld f[7];
    if (fields(p, &model->v, keys, 7, f, err) ||
        get_str(p, &f[0], keys[0], "model", true, &mo->architecture, err) ||
        get_str(p, &f[1], keys[1], "model", true, &mo->model_type, err) ||
        get_str(p, &f[2], keys[2], "model", true, &mo->family, err) ||
        get_i64_opt(p, &f[3], keys[3], "model", &mo->num_layers, err) ||
        get_i64_opt(p, &f[4], keys[4], "model", &mo->hidden_size, err) ||
        get_i64_opt(p, &f[5], keys[5], "model", &mo->vocab_size, err))
        return -1;
    if (!f[6].has)
        return airllm_errf(err, "model: missing \"tie_word_embeddings\"");
    if (!is_bool(&f[6]))
        return airllm_errf(err, "model: \"tie_word_embeddings\" must be true or false");
    mo->tie_word_embeddings = f[6].v.kind == AIRLLM_JS_TRUE;
    return 0;
}

/* format, format_version, complete and tool. */
static int parse_head(mp *p, const fld *f, airllm_err *err)
{
    airllm_manifest *m = p->m;
    char *s;
    if (get_str(p, &f[0], "format", "manifest", false, &s, err))
        return -1;
    if (strcmp(s, AIRLLM_MANIFEST_FORMAT) != 0)
        return airllm_errf(err, "manifest: \"format\" is not \"%s\"", AIRLLM_MANIFEST_FORMAT);
    if (get_str(p, &f[1], "format_version", "manifest", false, &s, err))
        return -1;
    int consumed = 0;
    /* Digits, one dot, digits: sscanf alone would take " 1.0" or "1.+0". */
    if (strspn(s, "0123456789.") != strlen(s) ||
        sscanf(s, "%u.%u%n", &m->version_major, &m->version_minor, &consumed) != 2 ||
        s[consumed] != '\0' || s[0] == '.')
        return airllm_errf(err, "manifest: \"format_version\" must look like \"1.0\"");
    if (m->version_major != AIRLLM_CT_VERSION_MAJOR)
        return airllm_errf(err, "manifest: format version %u.%u is not supported (this reader "
                                "reads %d.x)", m->version_major, m->version_minor,
                           AIRLLM_CT_VERSION_MAJOR);
    if (!f[2].has)
        return airllm_errf(err, "manifest: missing \"complete\"");
    if (!is_bool(&f[2]))
        return airllm_errf(err, "manifest: \"complete\" must be true or false");
    m->complete = f[2].v.kind == AIRLLM_JS_TRUE;
    if (!f[3].has)
        return airllm_errf(err, "manifest: missing \"tool\"");
    if (f[3].v.kind != AIRLLM_JS_OBJECT)
        return airllm_errf(err, "manifest: \"tool\" must be an object");
    static const char *const keys[] = {"name", "version", "options"};
    fld t[3];
    if (fields(p, &f[3].v, keys, 3, t, err) ||
        get_str(p, &t[0], "name", "tool", true, &m->tool_name, err) ||
        get_str(p, &t[1], "version", "tool", true, &m->tool_version, err))
        return -1;
    if (!t[2].has)
        return airllm_errf(err, "tool: missing \"options\"");
    if (t[2].v.kind != AIRLLM_JS_OBJECT)
        return airllm_errf(err, "tool: \"options\" must be an object");
    /* The options are kept as compact JSON text, as cJSON prints them; the
     * object is small (the tool's command-line options). */
    cJSON *opts = cJSON_ParseWithLength((const char *)p->b + t[2].v.start,
                                        t[2].v.end - t[2].v.start);
    m->options_json = opts ? cJSON_PrintUnformatted(opts) : NULL;
    cJSON_Delete(opts);
    if (!m->options_json)
        return airllm_errf(err, "out of memory");
    return 0;
}

int airllm_manifest_parse(const char *json, size_t len, airllm_manifest *m, airllm_err *err)
{
    memset(m, 0, sizeof *m);
    const uint8_t *b = (const uint8_t *)json;
    if (airllm_utf8_check(b, len))
        return airllm_errf(err, "not valid UTF-8");
    size_t end;
    airllm_js_error je;
    if (airllm_js_check(b, len, &end, &je))
        return airllm_errf(err, "not valid JSON: %s (near byte %zu)", je.what, je.at);
    for (size_t i = end; i < len; i++)
        if (b[i] != ' ' && b[i] != '\n' && b[i] != '\r' && b[i] != '\t')
            return airllm_errf(err, "trailing data after the JSON object");
    airllm_js_val root;
    if (airllm_js_value_at(b, end, 0, &root))
        return lost(err);
    if (root.kind != AIRLLM_JS_OBJECT)
        return airllm_errf(err, "not a JSON object");
    enum { FORMAT, VERSION, COMPLETE, TOOL, MODEL, UNITS, SOURCES, FILES, TENSORS, NKEYS };
    static const char *const keys[NKEYS] = {"format", "format_version", "complete",
                                            "tool",   "model",          "units",
                                            "sources", "files",         "tensors"};
    mp p = {b, m, NULL, 0};
    fld f[NKEYS];
    int rc = -1;
    if (fields(&p, &root, keys, NKEYS, f, err) || parse_head(&p, f, err) ||
        parse_model(&p, &f[MODEL], &m->model, err) || parse_units(&p, &f[UNITS], err) ||
        parse_file_list(&p, &f[SOURCES], "sources", &m->sources, &m->n_sources, err) ||
        parse_file_list(&p, &f[FILES], "files", &m->files, &m->n_files, err) ||
        parse_tensors(&p, &f[TENSORS], err))
        goto out;
    for (size_t u = 0; u < m->n_units; u++) {
        if (!m->units[u].tied_to)
            continue;
        bool found = false;
        for (size_t t = 0; t < m->n_tensors && !found; t++)
            found = strcmp(m->tensors[t].name, m->units[u].tied_to) == 0;
        if (!found) {
            airllm_errf(err, "units: \"%s\" is tied to \"%s\", which is not a listed tensor",
                        m->units[u].name, m->units[u].tied_to);
            goto out;
        }
    }
    airllm_index unit_files;
    if (airllm_index_build(&unit_files, m->units, m->n_units, sizeof *m->units,
                           offsetof(airllm_mf_unit, file), err))
        goto out;
    for (size_t i = 0; i < m->n_files; i++)
        if (airllm_index_find(&unit_files, m->files[i].file) >= 0) {
            airllm_errf(err, "files: \"%s\" is also a unit file", m->files[i].file);
            airllm_index_free(&unit_files);
            goto out;
        }
    airllm_index_free(&unit_files);
    rc = 0;
out:
    free(p.scratch);
    if (rc)
        airllm_manifest_free(m);
    return rc;
}

int airllm_manifest_load(const char *dir, airllm_manifest *m, airllm_err *err)
{
    char path[4096];
    char *buf;
    size_t len;
    memset(m, 0, sizeof *m);
    if (airllm_path_join(path, sizeof path, dir, AIRLLM_MANIFEST_NAME, err) ||
        airllm_read_small_file(path, AIRLLM_MANIFEST_MAX_BYTES, &buf, &len, err))
        return -1;
    int rc = airllm_manifest_parse(buf, len, m, err);
    free(buf);
    if (rc)
        return airllm_err_prefix(err, "%s", path);
    return 0;
}
