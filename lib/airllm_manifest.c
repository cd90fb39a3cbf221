#include "airllm_manifest.h"
#include "airllm_quant.h"

#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "airllm_index.h"
#include "airllm_io.h"
#include "airllm_safetensors.h"

int airllm_safe_filename(const char *name)
{
    if (!name || !*name || strcmp(name, ".") == 0 || strcmp(name, "..") == 0)
        return 0;
    if (strlen(name) > 255)
        return 0;
    for (const unsigned char *p = (const unsigned char *)name; *p; p++)
        if (*p == '/' || *p < 0x20 || *p == 0x7f)
            return 0;
    return 1;
}

void airllm_manifest_free(airllm_manifest *m)
{
    if (!m)
        return;
    free(m->tool_name);
    free(m->tool_version);
    free(m->options_json);
    free(m->model.architecture);
    free(m->model.model_type);
    free(m->model.family);
    for (size_t i = 0; i < m->n_units; i++) {
        free(m->units[i].name);
        free(m->units[i].file);
        free(m->units[i].tied_to);
    }
    free(m->units);
    for (size_t i = 0; i < m->n_tensors; i++) {
        free(m->tensors[i].name);
        free(m->tensors[i].source);
    }
    free(m->tensors);
    for (size_t i = 0; i < m->n_sources; i++)
        free(m->sources[i].file);
    free(m->sources);
    for (size_t i = 0; i < m->n_files; i++)
        free(m->files[i].file);
    free(m->files);
    memset(m, 0, sizeof *m);
}

/* ---- parsing helpers: each names the JSON path that is wrong ---- */

static const cJSON *req(const cJSON *obj, const char *key, const char *where, airllm_err *err)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
    if (!v)
        airllm_errf(err, "%s: missing \"%s\"", where, key);
    return v;
}

static int get_str(const cJSON *obj, const char *key, const char *where, char **out,
                   airllm_err *err)
{
    const cJSON *v = req(obj, key, where, err);
    if (!v)
        return -1;
    if (!cJSON_IsString(v))
        return airllm_errf(err, "%s: \"%s\" must be a string", where, key);
    *out = strdup(v->valuestring);
    if (!*out)
        return airllm_errf(err, "out of memory");
    return 0;
}

/* JSON numbers are doubles: integers are exact up to 2^53, which bounds every
 * size and count we record. */
static int as_u64(const cJSON *v, uint64_t *out)
{
    if (!cJSON_IsNumber(v))
        return -1;
    double d = v->valuedouble;
    if (!(d >= 0) || d > 9007199254740992.0 || floor(d) != d)
        return -1;
    *out = (uint64_t)d;
    return 0;
}

static int get_u64(const cJSON *obj, const char *key, const char *where, uint64_t *out,
                   airllm_err *err)
{
    const cJSON *v = req(obj, key, where, err);
    if (!v)
        return -1;
    if (as_u64(v, out))
        return airllm_errf(err, "%s: \"%s\" must be a non-negative integer", where, key);
    return 0;
}

static int get_i64_opt(const cJSON *obj, const char *key, const char *where, int64_t *out,
                       airllm_err *err)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
    *out = -1;
    if (!v || cJSON_IsNull(v))
        return 0;
    uint64_t u;
    if (as_u64(v, &u))
        return airllm_errf(err, "%s: \"%s\" must be a non-negative integer", where, key);
    *out = (int64_t)u;
    return 0;
}

static int get_sha(const cJSON *obj, const char *where, char out[AIRLLM_SHA256_HEX],
                   airllm_err *err)
{
    const cJSON *v = req(obj, "sha256", where, err);
    if (!v)
        return -1;
    if (!cJSON_IsString(v) || !airllm_sha256_hex_valid(v->valuestring))
        return airllm_errf(err, "%s: \"sha256\" must be 64 lower-case hex digits", where);
    memcpy(out, v->valuestring, AIRLLM_SHA256_HEX);
    return 0;
}

/* A quantized tensor's "quant" object: block size, double quantization and
 * the error statistics, finite and non-negative. */
static int parse_quant(const cJSON *q, const char *where, airllm_mf_tensor *t, airllm_err *err)
{
    if (!cJSON_IsObject(q))
        return airllm_errf(err, "%s (%s): a quantized tensor needs a \"quant\" object", where,
                           t->name);
    uint64_t block;
    if (get_u64(q, "block_size", where, &block, err))
        return -1;
    if (block > UINT32_MAX || airllm_quant_check_block((size_t)block, err))
        return airllm_errf(err, "%s (%s): bad quant block_size %llu", where, t->name,
                           (unsigned long long)block);
    t->quant_block = (uint32_t)block;
    const cJSON *dq = cJSON_GetObjectItemCaseSensitive(q, "double_quant");
    if (!cJSON_IsBool(dq))
        return airllm_errf(err, "%s (%s): quant \"double_quant\" must be true or false", where,
                           t->name);
    t->quant_double = cJSON_IsTrue(dq);
    static const char *const keys[3] = {"rmse", "max_abs_error", "rel_frobenius_error"};
    double *vals[3] = {&t->quant_rmse, &t->quant_max_abs, &t->quant_rel_fro};
    for (int k = 0; k < 3; k++) {
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(q, keys[k]);
        if (!cJSON_IsNumber(v) || !isfinite(v->valuedouble) || v->valuedouble < 0)
            return airllm_errf(err, "%s (%s): quant \"%s\" must be a non-negative number",
                               where, t->name, keys[k]);
        *vals[k] = v->valuedouble;
    }
    return 0;
}

static int get_array(const cJSON *obj, const char *key, const char *where, const cJSON **out,
                     size_t *n, airllm_err *err)
{
    const cJSON *v = req(obj, key, where, err);
    if (!v)
        return -1;
    if (!cJSON_IsArray(v))
        return airllm_errf(err, "%s: \"%s\" must be an array", where, key);
    *out = v;
    *n = (size_t)cJSON_GetArraySize(v);
    return 0;
}

static int parse_file_list(const cJSON *root, const char *key, airllm_mf_file **out,
                           size_t *n_out, airllm_err *err)
{
    const cJSON *arr;
    size_t n;
    if (get_array(root, key, "manifest", &arr, &n, err))
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
    size_t i = 0;
    const cJSON *it;
    cJSON_ArrayForEach(it, arr)
    {
        char where[64];
        snprintf(where, sizeof where, "%s[%zu]", key, i);
        airllm_mf_file *f = &(*out)[i++];
        if (!cJSON_IsObject(it)) {
            airllm_errf(err, "%s: must be an object", where);
            goto fail;
        }
        if (get_str(it, "file", where, &f->file, err) || get_u64(it, "size", where, &f->size, err) ||
            get_sha(it, where, f->sha256, err))
            goto fail;
        if (!airllm_safe_filename(f->file)) {
            airllm_errf(err, "%s: unsafe file name \"%s\"", where, f->file);
            goto fail;
        }
        long prev;
        if (airllm_index_add(&seen, f->file, i - 1, &prev, err))
            goto fail;
        if (prev >= 0) {
            airllm_errf(err, "%s: duplicate file \"%s\"", where, f->file);
            goto fail;
        }
    }
    airllm_index_free(&seen);
    return 0;
fail:
    airllm_index_free(&seen);
    return -1;
}

/* names and files: the unit names and files seen so far; first_of_kind: the
 * first unit of each kind, -1 before one is seen. */
static int parse_units_in(const cJSON *root, airllm_manifest *m, airllm_index *names,
                          airllm_index *files, long *first_of_kind, airllm_err *err)
{
    const cJSON *arr;
    size_t n;
    if (get_array(root, "units", "manifest", &arr, &n, err))
        return -1;
    m->units = calloc(n ? n : 1, sizeof *m->units);
    if (!m->units)
        return airllm_errf(err, "out of memory");
    m->n_units = n;
    size_t i = 0;
    const cJSON *it;
    cJSON_ArrayForEach(it, arr)
    {
        char where[64];
        snprintf(where, sizeof where, "units[%zu]", i);
        airllm_mf_unit *u = &m->units[i++];
        u->layer = -1;
        char *kind = NULL;
        if (!cJSON_IsObject(it))
            return airllm_errf(err, "%s: must be an object", where);
        if (get_str(it, "name", where, &u->name, err) || get_str(it, "kind", where, &kind, err))
            return -1;
        int bad_kind = airllm_unit_kind_from_name(kind, &u->kind);
        free(kind);
        if (bad_kind)
            return airllm_errf(err, "%s: unknown unit kind", where);
        if (u->kind != AIRLLM_UNIT_LAYER && cJSON_GetObjectItemCaseSensitive(it, "layer"))
            return airllm_errf(err, "%s: \"layer\" is only for layer units", where);
        if (u->kind == AIRLLM_UNIT_LAYER) {
            uint64_t layer;
            if (get_u64(it, "layer", where, &layer, err))
                return -1;
            if (layer > 1000000)
                return airllm_errf(err, "%s: layer %llu out of range", where,
                                   (unsigned long long)layer);
            u->layer = (int32_t)layer;
        }
        const cJSON *tied = cJSON_GetObjectItemCaseSensitive(it, "tied_to");
        if (tied) {
            if (u->kind != AIRLLM_UNIT_LM_HEAD || !cJSON_IsString(tied) || !*tied->valuestring)
                return airllm_errf(err, "%s: \"tied_to\" is only for the lm_head unit and must "
                                        "name a tensor", where);
            if (cJSON_GetObjectItemCaseSensitive(it, "file") ||
                cJSON_GetObjectItemCaseSensitive(it, "size") ||
                cJSON_GetObjectItemCaseSensitive(it, "sha256"))
                return airllm_errf(err, "%s: a tied unit has no file, size or sha256", where);
            u->tied_to = strdup(tied->valuestring);
            if (!u->tied_to)
                return airllm_errf(err, "out of memory");
        } else {
            if (get_str(it, "file", where, &u->file, err) ||
                get_u64(it, "size", where, &u->size, err) || get_sha(it, where, u->sha256, err))
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

static int parse_units(const cJSON *root, airllm_manifest *m, airllm_err *err)
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
    int rc = parse_units_in(root, m, &names, &files, first_of_kind, err);
    airllm_index_free(&names);
    airllm_index_free(&files);
    return rc;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* units and sources: the manifest's unit names and source files by name. */
static int parse_tensors_in(const cJSON *root, airllm_manifest *m, const airllm_index *units,
                            const airllm_index *sources, airllm_err *err)
{
    const cJSON *arr;
    size_t n;
    if (get_array(root, "tensors", "manifest", &arr, &n, err))
        return -1;
    m->tensors = calloc(n ? n : 1, sizeof *m->tensors);
    if (!m->tensors)
        return airllm_errf(err, "out of memory");
    m->n_tensors = n;
    size_t i = 0;
    const cJSON *it;
    cJSON_ArrayForEach(it, arr)
    {
        char where[64];
        snprintf(where, sizeof where, "tensors[%zu]", i);
        airllm_mf_tensor *t = &m->tensors[i++];
        char *dtype = NULL, *unit = NULL, *enc = NULL;
        if (!cJSON_IsObject(it))
            return airllm_errf(err, "%s: must be an object", where);
        if (get_str(it, "name", where, &t->name, err))
            return -1;
        int rc = get_str(it, "dtype", where, &dtype, err);
        if (!rc && airllm_dtype_from_name(dtype, &t->dtype))
            rc = airllm_errf(err, "%s (%s): unknown dtype \"%s\"", where, t->name, dtype);
        free(dtype);
        if (rc)
            return -1;
        const cJSON *shape = req(it, "shape", where, err);
        if (!shape)
            return -1;
        if (!cJSON_IsArray(shape) || cJSON_GetArraySize(shape) > AIRLLM_MAX_DIMS)
            return airllm_errf(err, "%s (%s): \"shape\" must be an array of at most %d integers",
                               where, t->name, AIRLLM_MAX_DIMS);
        const cJSON *d;
        cJSON_ArrayForEach(d, shape)
        {
            if (as_u64(d, &t->shape[t->ndim]))
                return airllm_errf(err, "%s (%s): bad dimension in \"shape\"", where, t->name);
            t->ndim++;
        }
        uint64_t nbytes;
        if (airllm_shape_nbytes(t->dtype, t->shape, t->ndim, NULL, &nbytes))
            return airllm_errf(err, "%s (%s): shape size overflows", where, t->name);
        if (get_u64(it, "bytes", where, &t->raw_len, err) ||
            get_u64(it, "stored_bytes", where, &t->stored_len, err))
            return -1;
        if (t->raw_len != nbytes)
            return airllm_errf(err, "%s (%s): \"bytes\" %llu does not match shape x dtype (%llu)",
                               where, t->name, (unsigned long long)t->raw_len,
                               (unsigned long long)nbytes);
        if (get_str(it, "encoding", where, &enc, err))
            return -1;
        rc = -1;
        for (int e = 0; e < AIRLLM_ENC_COUNT; e++)
            if (strcmp(enc, airllm_encoding_name((airllm_encoding)e)) == 0) {
                t->encoding = (airllm_encoding)e;
                rc = 0;
            }
        if (rc)
            airllm_errf(err, "%s (%s): unknown encoding \"%s\"", where, t->name, enc);
        free(enc);
        if (rc)
            return -1;
        const cJSON *q = cJSON_GetObjectItemCaseSensitive(it, "quant");
        if (airllm_encoding_is_quant(t->encoding)) {
            if (m->version_minor < 1)
                return airllm_errf(err, "%s (%s): encoding %s needs format 1.1", where, t->name,
                                   airllm_encoding_name(t->encoding));
            if (parse_quant(q, where, t, err))
                return -1;
        } else if (q) {
            return airllm_errf(err, "%s (%s): \"quant\" on a tensor that is not quantized",
                               where, t->name);
        }
        if (get_str(it, "unit", where, &unit, err))
            return -1;
        long u = airllm_index_find(units, unit);
        rc = u >= 0 && m->units[u].file ? 0 : -1;
        if (!rc)
            t->unit = (size_t)u;
        if (rc)
            airllm_errf(err, "%s (%s): unit \"%s\" is not a unit with a file", where, t->name,
                        unit);
        free(unit);
        if (rc)
            return -1;
        if (get_str(it, "source", where, &t->source, err))
            return -1;
        if (airllm_index_find(sources, t->source) < 0)
            return airllm_errf(err, "%s (%s): source \"%s\" is not in \"sources\"", where,
                               t->name, t->source);
    }
    /* Names must be unique across the model. Sorting a copy keeps this
     * O(n log n) for models with tens of thousands of tensors. */
    const char **names = malloc((n ? n : 1) * sizeof *names);
    if (!names)
        return airllm_errf(err, "out of memory");
    for (size_t k = 0; k < n; k++)
        names[k] = m->tensors[k].name;
    qsort(names, n, sizeof *names, cmp_str);
    int rc = 0;
    for (size_t k = 1; k < n && !rc; k++)
        if (strcmp(names[k - 1], names[k]) == 0)
            rc = airllm_errf(err, "tensors: duplicate tensor \"%s\"", names[k]);
    free(names);
    return rc;
}

/* Unit and source names are looked up through indexes: a scan of the units
 * per tensor was quadratic (a million tensors in 83k layers). */
static int parse_tensors(const cJSON *root, airllm_manifest *m, airllm_err *err)
{
    airllm_index units, sources = {0};
    if (airllm_index_build(&units, m->units, m->n_units, sizeof *m->units,
                           offsetof(airllm_mf_unit, name), err))
        return -1;
    int rc = airllm_index_build(&sources, m->sources, m->n_sources, sizeof *m->sources,
                                offsetof(airllm_mf_file, file), err);
    if (!rc)
        rc = parse_tensors_in(root, m, &units, &sources, err);
    airllm_index_free(&units);
    airllm_index_free(&sources);
    return rc;
}


static int parse_model(const cJSON *root, airllm_mf_model *mo, airllm_err *err)
{
    const cJSON *model = req(root, "model", "manifest", err);
    if (!model)
        return -1;
    if (!cJSON_IsObject(model))
        return airllm_errf(err, "manifest: \"model\" must be an object");
    if (get_str(model, "architecture", "model", &mo->architecture, err) ||
        get_str(model, "model_type", "model", &mo->model_type, err) ||
        get_str(model, "family", "model", &mo->family, err) ||
        get_i64_opt(model, "num_layers", "model", &mo->num_layers, err) ||
        get_i64_opt(model, "hidden_size", "model", &mo->hidden_size, err) ||
        get_i64_opt(model, "vocab_size", "model", &mo->vocab_size, err))
        return -1;
    const cJSON *tie = req(model, "tie_word_embeddings", "model", err);
    if (!tie)
        return -1;
    if (!cJSON_IsBool(tie))
        return airllm_errf(err, "model: \"tie_word_embeddings\" must be true or false");
    mo->tie_word_embeddings = cJSON_IsTrue(tie);
    return 0;
}

int airllm_manifest_parse(const char *json, size_t len, airllm_manifest *m, airllm_err *err)
{
    memset(m, 0, sizeof *m);
    if (airllm_utf8_check((const uint8_t *)json, len))
        return airllm_errf(err, "not valid UTF-8");
    const char *end = NULL;
    cJSON *root = cJSON_ParseWithLengthOpts(json, len, &end, 0);
    if (!root)
        return airllm_errf(err, "not valid JSON (near byte %zu)",
                           end ? (size_t)(end - json) : (size_t)0);
    int rc = -1;
    for (const char *p = end; p && p < json + len; p++)
        if (*p != ' ' && *p != '\n' && *p != '\r' && *p != '\t') {
            airllm_errf(err, "trailing data after the JSON object");
            goto out;
        }
    if (!cJSON_IsObject(root)) {
        airllm_errf(err, "not a JSON object");
        goto out;
    }
    char *format = NULL, *version = NULL;
    if (get_str(root, "format", "manifest", &format, err))
        goto out;
    int bad = strcmp(format, AIRLLM_MANIFEST_FORMAT) != 0;
    free(format);
    if (bad) {
        airllm_errf(err, "manifest: \"format\" is not \"%s\"", AIRLLM_MANIFEST_FORMAT);
        goto out;
    }
    if (get_str(root, "format_version", "manifest", &version, err))
        goto out;
    int consumed = 0;
    /* Digits, one dot, digits: sscanf alone would take " 1.0" or "1.+0". */
    bad = strspn(version, "0123456789.") != strlen(version) ||
          sscanf(version, "%u.%u%n", &m->version_major, &m->version_minor, &consumed) != 2 ||
          version[consumed] != '\0' || version[0] == '.';
    free(version);
    if (bad) {
        airllm_errf(err, "manifest: \"format_version\" must look like \"1.0\"");
        goto out;
    }
    if (m->version_major != AIRLLM_CT_VERSION_MAJOR) {
        airllm_errf(err, "manifest: format version %u.%u is not supported (this reader "
                         "reads %d.x)", m->version_major, m->version_minor,
                    AIRLLM_CT_VERSION_MAJOR);
        goto out;
    }
    const cJSON *complete = req(root, "complete", "manifest", err);
    if (!complete)
        goto out;
    if (!cJSON_IsBool(complete)) {
        airllm_errf(err, "manifest: \"complete\" must be true or false");
        goto out;
    }
    m->complete = cJSON_IsTrue(complete);
    const cJSON *tool = req(root, "tool", "manifest", err);
    if (!tool)
        goto out;
    if (!cJSON_IsObject(tool)) {
        airllm_errf(err, "manifest: \"tool\" must be an object");
        goto out;
    }
    if (get_str(tool, "name", "tool", &m->tool_name, err) ||
        get_str(tool, "version", "tool", &m->tool_version, err))
        goto out;
    const cJSON *opts = req(tool, "options", "tool", err);
    if (!opts)
        goto out;
    if (!cJSON_IsObject(opts)) {
        airllm_errf(err, "tool: \"options\" must be an object");
        goto out;
    }
    m->options_json = cJSON_PrintUnformatted(opts);
    if (!m->options_json) {
        airllm_errf(err, "out of memory");
        goto out;
    }
    if (parse_model(root, &m->model, err) || parse_units(root, m, err) ||
        parse_file_list(root, "sources", &m->sources, &m->n_sources, err) ||
        parse_file_list(root, "files", &m->files, &m->n_files, err) ||
        parse_tensors(root, m, err))
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
    cJSON_Delete(root);
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

/* ---- writing ---- */

static cJSON *file_entry(const char *file, uint64_t size, const char *sha)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "file", file);
    cJSON_AddNumberToObject(o, "size", (double)size);
    cJSON_AddStringToObject(o, "sha256", sha);
    return o;
}

static void add_opt_int(cJSON *o, const char *key, int64_t v)
{
    if (v < 0)
        cJSON_AddNullToObject(o, key);
    else
        cJSON_AddNumberToObject(o, key, (double)v);
}

/* One tensor's object, as the manifest holds it. */
static cJSON *tensor_object(const airllm_manifest *m, const airllm_mf_tensor *t)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "name", t->name);
    cJSON_AddStringToObject(o, "dtype", airllm_dtype_name(t->dtype));
    cJSON *shape = cJSON_AddArrayToObject(o, "shape");
    for (unsigned d = 0; d < t->ndim; d++)
        cJSON_AddItemToArray(shape, cJSON_CreateNumber((double)t->shape[d]));
    cJSON_AddNumberToObject(o, "bytes", (double)t->raw_len);
    cJSON_AddStringToObject(o, "unit", m->units[t->unit].name);
    cJSON_AddStringToObject(o, "encoding", airllm_encoding_name(t->encoding));
    cJSON_AddNumberToObject(o, "stored_bytes", (double)t->stored_len);
    cJSON_AddStringToObject(o, "source", t->source);
    if (airllm_encoding_is_quant(t->encoding)) {
        cJSON *q = cJSON_AddObjectToObject(o, "quant");
        cJSON_AddNumberToObject(q, "block_size", t->quant_block);
        cJSON_AddBoolToObject(q, "double_quant", t->quant_double);
        cJSON_AddNumberToObject(q, "rmse", t->quant_rmse);
        cJSON_AddNumberToObject(q, "max_abs_error", t->quant_max_abs);
        cJSON_AddNumberToObject(q, "rel_frobenius_error", t->quant_rel_fro);
    }
    return o;
}

int airllm_manifest_emit(const airllm_manifest *m, airllm_sink sink, void *ctx, airllm_err *err)
{
    cJSON *root = cJSON_CreateObject();
    char version[32];
    snprintf(version, sizeof version, "%u.%u", m->version_major, m->version_minor);
    cJSON_AddStringToObject(root, "format", AIRLLM_MANIFEST_FORMAT);
    cJSON_AddStringToObject(root, "format_version", version);
    cJSON_AddBoolToObject(root, "complete", m->complete);

    cJSON *tool = cJSON_AddObjectToObject(root, "tool");
    cJSON_AddStringToObject(tool, "name", m->tool_name);
    cJSON_AddStringToObject(tool, "version", m->tool_version);
    cJSON *opts = cJSON_Parse(m->options_json ? m->options_json : "{}");
    if (!opts || !cJSON_IsObject(opts)) {
        cJSON_Delete(opts);
        cJSON_Delete(root);
        return airllm_errf(err, "manifest options are not a JSON object");
    }
    cJSON_AddItemToObject(tool, "options", opts);

    cJSON *model = cJSON_AddObjectToObject(root, "model");
    cJSON_AddStringToObject(model, "architecture", m->model.architecture);
    cJSON_AddStringToObject(model, "model_type", m->model.model_type);
    cJSON_AddStringToObject(model, "family", m->model.family);
    add_opt_int(model, "num_layers", m->model.num_layers);
    add_opt_int(model, "hidden_size", m->model.hidden_size);
    add_opt_int(model, "vocab_size", m->model.vocab_size);
    cJSON_AddBoolToObject(model, "tie_word_embeddings", m->model.tie_word_embeddings);

    cJSON *units = cJSON_AddArrayToObject(root, "units");
    for (size_t i = 0; i < m->n_units; i++) {
        const airllm_mf_unit *u = &m->units[i];
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "name", u->name);
        cJSON_AddStringToObject(o, "kind", airllm_unit_kind_name(u->kind));
        if (u->kind == AIRLLM_UNIT_LAYER)
            cJSON_AddNumberToObject(o, "layer", u->layer);
        if (u->file) {
            cJSON_AddStringToObject(o, "file", u->file);
            cJSON_AddNumberToObject(o, "size", (double)u->size);
            cJSON_AddStringToObject(o, "sha256", u->sha256);
        } else {
            cJSON_AddStringToObject(o, "tied_to", u->tied_to);
        }
        cJSON_AddItemToArray(units, o);
    }

    /* The tensors are printed one object at a time, not as one tree: a tree
     * of a million tensors took about 1.5 KiB each. A raw placeholder marks
     * where they go in the rest of the document (\x01 cannot appear in its
     * text otherwise: cJSON escapes control characters in strings). */
    cJSON_AddRawToObject(root, "tensors", "\x01");
    cJSON *sources = cJSON_AddArrayToObject(root, "sources");
    for (size_t i = 0; i < m->n_sources; i++)
        cJSON_AddItemToArray(sources, file_entry(m->sources[i].file, m->sources[i].size,
                                                 m->sources[i].sha256));
    cJSON *files = cJSON_AddArrayToObject(root, "files");
    for (size_t i = 0; i < m->n_files; i++)
        cJSON_AddItemToArray(files, file_entry(m->files[i].file, m->files[i].size,
                                               m->files[i].sha256));

    char *text = cJSON_Print(root);
    cJSON_Delete(root);
    if (!text)
        return airllm_errf(err, "out of memory while writing the manifest");
    char *mark = strchr(text, '\x01');
    if (!mark) {
        free(text);
        return airllm_errf(err, "out of memory while writing the manifest");
    }
    int rc = sink(ctx, text, (size_t)(mark - text), err) || sink(ctx, "[", 1, err) ? -1 : 0;
    for (size_t i = 0; !rc && i < m->n_tensors; i++) {
        cJSON *o = tensor_object(m, &m->tensors[i]);
        char *ot = o ? cJSON_Print(o) : NULL;
        cJSON_Delete(o);
        if (!ot) {
            rc = airllm_errf(err, "out of memory while writing the manifest");
            break;
        }
        /* Printed alone the object sits at depth 0; in the document it is an
         * element of an array at depth 1, so every line after the first is
         * indented by two more tabs (strings hold no raw newlines). */
        if (i > 0)
            rc = sink(ctx, ", ", 2, err);
        for (char *p = ot, *nl; !rc && *p; p = nl + 1) {
            nl = strchr(p, '\n');
            if (!nl) {
                rc = sink(ctx, p, strlen(p), err);
                break;
            }
            rc = sink(ctx, p, (size_t)(nl - p) + 1, err) || sink(ctx, "\t\t", 2, err) ? -1 : 0;
        }
        free(ot);
    }
    /* A final newline, as text files conventionally end with one. */
    if (!rc)
        rc = sink(ctx, "]", 1, err) || sink(ctx, mark + 1, strlen(mark + 1), err) ||
                     sink(ctx, "\n", 1, err)
                 ? -1
                 : 0;
    free(text);
    return rc;
}

typedef struct {
    char *buf;
    size_t len, cap;
} text_buf;

static int text_append(void *ctx, const void *data, size_t n, airllm_err *err)
{
    text_buf *t = ctx;
    if (t->len + n + 1 > t->cap) {
        size_t cap = t->cap ? t->cap : 4096;
        while (cap < t->len + n + 1)
            cap *= 2;
        char *b = realloc(t->buf, cap);
        if (!b)
            return airllm_errf(err, "out of memory while writing the manifest");
        t->buf = b;
        t->cap = cap;
    }
    memcpy(t->buf + t->len, data, n);
    t->len += n;
    t->buf[t->len] = '\0';
    return 0;
}

int airllm_manifest_to_json(const airllm_manifest *m, char **out, airllm_err *err)
{
    text_buf t = {0};
    *out = NULL;
    if (airllm_manifest_emit(m, text_append, &t, err)) {
        free(t.buf);
        return -1;
    }
    *out = t.buf;
    return 0;
}
