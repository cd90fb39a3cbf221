#include "airllm_manifest.h"
#include "airllm_quant.h"

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

/* One unit's object, as the manifest holds it. */
static cJSON *unit_object(const airllm_manifest *m, size_t i)
{
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
    return o;
}

static cJSON *tensor_object_at(const airllm_manifest *m, size_t i)
{
    return tensor_object(m, &m->tensors[i]);
}

/* Prints "[" n objects "]" one at a time, as cJSON_Print would print them
 * as an element of the root object: printed alone an object sits at depth
 * 0; in the document it is an element of an array at depth 1, so every
 * line after the first is indented by two more tabs (strings hold no raw
 * newlines). */
static int emit_array(const airllm_manifest *m, size_t n,
                      cJSON *(*make)(const airllm_manifest *, size_t), airllm_sink sink,
                      void *ctx, airllm_err *err)
{
    int rc = sink(ctx, "[", 1, err);
    for (size_t i = 0; !rc && i < n; i++) {
        cJSON *o = make(m, i);
        char *ot = o ? cJSON_Print(o) : NULL;
        cJSON_Delete(o);
        if (!ot)
            return airllm_errf(err, "out of memory while writing the manifest");
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
    return rc || sink(ctx, "]", 1, err) ? -1 : 0;
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

    /* Units and tensors are printed one object at a time, not as one tree:
     * a tree of a million tensors took about 1.5 KiB each, and of their 83k
     * units about 80 MiB. Raw placeholders mark where they go in the rest
     * of the document (\x01 and \x02 cannot appear in its text otherwise:
     * cJSON escapes control characters in strings). */
    cJSON_AddRawToObject(root, "units", "\x02");
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
    char *umark = strchr(text, '\x02');
    char *mark = umark ? strchr(umark, '\x01') : NULL;
    if (!mark) {
        free(text);
        return airllm_errf(err, "out of memory while writing the manifest");
    }
    int rc = sink(ctx, text, (size_t)(umark - text), err) ||
                     emit_array(m, m->n_units, unit_object, sink, ctx, err) ||
                     sink(ctx, umark + 1, (size_t)(mark - umark - 1), err) ||
                     emit_array(m, m->n_tensors, tensor_object_at, sink, ctx, err) ||
                     sink(ctx, mark + 1, strlen(mark + 1), err) ||
                     /* A final newline, as text files conventionally end with one. */
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
