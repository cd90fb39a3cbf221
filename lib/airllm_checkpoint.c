#include "airllm_checkpoint.h"

#include <dirent.h>
#include <stddef.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "airllm_bytes.h"
#include "airllm_hash.h"
#include "airllm_index.h"
#include "airllm_jscan.h"
#include "airllm_io.h"
#include "airllm_json.h"
#include "airllm_manifest.h"

#define SAVED_HDR_MAGIC "AIRLHDR1"
#define CONFIG_MAX_BYTES (16u << 20)
#define INDEX_MAX_BYTES (256u << 20)

void airllm_ckpt_free(airllm_ckpt *c)
{
    if (!c)
        return;
    free(c->dir);
    free(c->config_text);
    free(c->architecture);
    free(c->model_type);
    for (size_t i = 0; i < c->n_sources; i++) {
        free(c->sources[i].file);
        airllm_st_free(&c->sources[i].st);
        if (c->sources[i].ct) {
            airllm_ct_free(c->sources[i].ct);
            free(c->sources[i].ct);
        }
    }
    free(c->sources);
    free(c->tensors);
    for (size_t i = 0; i < c->n_units; i++)
        free(c->units[i].tensors);
    free(c->units);
    free(c->tied_to);
    memset(c, 0, sizeof *c);
}

static int exists(const char *dir, const char *name)
{
    char path[4096];
    struct stat st;
    if (snprintf(path, sizeof path, "%s/%s", dir, name) >= (int)sizeof path)
        return 0;
    return stat(path, &st) == 0;
}

static int64_t config_int(const cJSON *cfg, const char *key)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(cfg, key);
    if (!cJSON_IsNumber(v) || v->valuedouble < 0 || v->valuedouble > 1e15)
        return -1;
    return (int64_t)v->valuedouble;
}

static int load_config(airllm_ckpt *c, airllm_err *err)
{
    char path[4096];
    if (airllm_path_join(path, sizeof path, c->dir, AIRLLM_CONFIG_NAME, err))
        return -1;
    if (!exists(c->dir, AIRLLM_CONFIG_NAME))
        return airllm_errf(err, "%s: missing: a Hugging Face checkpoint needs its config.json",
                           path);
    if (airllm_read_small_file(path, CONFIG_MAX_BYTES, &c->config_text, &c->config_len, err))
        return -1;
    cJSON *cfg;
    if (airllm_json_parse_object(c->config_text, c->config_len, path, &cfg, err))
        return -1;
    const cJSON *archs = cJSON_GetObjectItemCaseSensitive(cfg, "architectures");
    const cJSON *a0 = cJSON_IsArray(archs) ? cJSON_GetArrayItem(archs, 0) : NULL;
    const cJSON *mt = cJSON_GetObjectItemCaseSensitive(cfg, "model_type");
    c->architecture = strdup(cJSON_IsString(a0) ? a0->valuestring : "");
    c->model_type = strdup(cJSON_IsString(mt) ? mt->valuestring : "");
    if (!c->architecture || !c->model_type) {
        cJSON_Delete(cfg);
        return airllm_errf(err, "out of memory");
    }
    if (!*c->architecture && !*c->model_type) {
        cJSON_Delete(cfg);
        return airllm_errf(err, "%s: has neither \"architectures\" nor \"model_type\"", path);
    }
    c->arch = airllm_arch_detect(c->architecture, c->model_type);
    c->num_layers = config_int(cfg, airllm_arch_layers_key(c->arch));
    c->hidden_size = config_int(cfg, airllm_arch_hidden_key(c->arch));
    c->vocab_size = config_int(cfg, airllm_arch_vocab_key(c->arch));
    if (c->vocab_size < 0)
        c->vocab_size = config_int(cfg, "vocab_size");
    /* transformers' PretrainedConfig defaults tie_word_embeddings to true;
     * an explicit value wins. */
    const cJSON *tie = cJSON_GetObjectItemCaseSensitive(cfg, "tie_word_embeddings");
    c->tie_word_embeddings = tie ? cJSON_IsTrue(tie) : true;
    cJSON_Delete(cfg);
    if (c->num_layers < 0)
        return airllm_errf(err, "%s: \"%s\" is missing or not a non-negative integer", path,
                           airllm_arch_layers_key(c->arch));
    return 0;
}

/* The file a shard's header is saved in: "<shard>.hdr", unless that name
 * or its temporary (".<shard>.hdr.tmp") would pass the 255-byte limit of
 * file names; then "~<SHA-256 of the shard name>.hdr". */
static void saved_header_name(const char *shard, char name[1024])
{
    if (strlen(shard) + 9 <= 255) {
        snprintf(name, 1024, "%s.hdr", shard);
        return;
    }
    char hex[AIRLLM_SHA256_HEX];
    airllm_sha256 *h = airllm_sha256_new();
    if (!h) {
        snprintf(name, 1024, "%s.hdr", shard); /* fails later, with a message */
        return;
    }
    airllm_sha256_update(h, shard, strlen(shard));
    airllm_sha256_final_hex(h, hex);
    airllm_sha256_free(h);
    snprintf(name, 1024, "~%s.hdr", hex);
}

static int load_saved_header(const char *saved_dir, const char *shard, airllm_st_file *st,
                             airllm_err *err)
{
    char name[1024], path[4096];
    char *buf;
    size_t len;
    saved_header_name(shard, name);
    if (airllm_path_join(path, sizeof path, saved_dir, name, err))
        return airllm_errf(err, "shard name too long: %s", shard);
    if (airllm_read_small_file(path, AIRLLM_ST_MAX_HEADER + 64, &buf, &len, err))
        return -1;
    int rc = 0;
    if (len < 16 || memcmp(buf, SAVED_HDR_MAGIC, 8) != 0) {
        rc = airllm_errf(err, "%s: not a saved shard header", path);
    } else {
        uint64_t size = airllm_get_le64((const uint8_t *)buf + 8);
        if (airllm_st_parse((const uint8_t *)buf + 16, len - 16, size, st, err))
            rc = airllm_err_prefix(err, "%s", path);
    }
    free(buf);
    return rc;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

static int add_source(airllm_ckpt *c, const char *file, const char *saved_dir, airllm_err *err)
{
    airllm_ckpt_source *s = &c->sources[c->n_sources];
    char path[4096];
    if (airllm_path_join(path, sizeof path, c->dir, file, err))
        return -1;
    s->file = strdup(file);
    if (!s->file)
        return airllm_errf(err, "out of memory");
    c->n_sources++;
    if (exists(c->dir, file)) {
        s->present = true;
        return airllm_st_read_file(path, &s->st, err);
    }
    if (saved_dir)
        return load_saved_header(saved_dir, file, &s->st, err);
    return airllm_errf(err, "%s: missing: named by %s but not found", path,
                       c->sharded ? AIRLLM_INDEX_NAME : "the checkpoint");
}

/* weight_map as tables: a JSON tree of it cost about 200 bytes per entry. */
typedef struct {
    char *names;       /* the keys, NUL-terminated, back to back */
    const char **key;  /* weight_map order */
    uint32_t *shard;   /* each key's shard: an index into the sorted names */
    size_t n;
} weight_map;

/* The file at path, read with airllm_jscan: the distinct shard names of its
 * weight_map, sorted (*shards, owned), and the map itself. Per entry the
 * map keeps the key, a pointer and a shard number; the text is freed before
 * any shard header is read. */
static int load_weight_map(const char *path, char ***shards_out, size_t *n_shards_out,
                           weight_map *out, airllm_err *err)
{
    char *text = NULL, *val = NULL;
    size_t len, end, n = 0, key_bytes = 0, n_shards = 0, val_cap = 0;
    char **shards = NULL;
    airllm_index seen = {0};
    airllm_js_error je;
    airllm_js_val root, k, v, wm = {0};
    airllm_js_iter it;
    bool have_wm = false;
    int r, rc = -1;
    if (airllm_read_small_file(path, INDEX_MAX_BYTES, &text, &len, err))
        return -1;
    const uint8_t *b = (const uint8_t *)text;
    if (airllm_utf8_check(b, len)) {
        airllm_errf(err, "%s: not valid UTF-8", path);
        goto out;
    }
    if (airllm_js_check(b, len, &end, &je)) {
        airllm_errf(err, "%s: not valid JSON: %s (near byte %zu)", path, je.what, je.at);
        goto out;
    }
    if (airllm_js_value_at(b, end, 0, &root) || root.kind != AIRLLM_JS_OBJECT) {
        airllm_errf(err, "%s: not a JSON object", path);
        goto out;
    }
    airllm_js_iter_init(&it, b, &root);
    while (!have_wm && (r = airllm_js_iter_next(&it, &k, &v)) > 0)
        if (airllm_js_str_eq(b, &k, "weight_map"))
            wm = v, have_wm = true;
    if (!have_wm || wm.kind != AIRLLM_JS_OBJECT) {
        airllm_errf(err, "%s: \"weight_map\" is missing or not an object", path);
        goto out;
    }
    /* First walk: check every value, collect the distinct shard names. */
    if (airllm_index_init(&seen, 8, err))
        goto out;
    airllm_js_iter_init(&it, b, &wm);
    while ((r = airllm_js_iter_next(&it, &k, &v)) > 0) {
        /* Room for either decoded string (decoding never grows text). */
        size_t kcap = k.end - k.start - 1, cap = v.end - v.start, sl;
        bool nul;
        if (cap < kcap)
            cap = kcap;
        if (cap > val_cap) {
            char *nv = realloc(val, cap);
            if (!nv) {
                airllm_errf(err, "out of memory");
                goto out;
            }
            val = nv;
            val_cap = cap;
        }
        if (v.kind != AIRLLM_JS_STRING) {
            airllm_js_str(b, &k, val, &sl, &nul);
            airllm_errf(err, "%s: weight_map entry \"%s\" is not a file name", path, val);
            goto out;
        }
        airllm_js_str(b, &v, val, &sl, &nul);
        if (nul || !airllm_safe_filename(val)) {
            airllm_errf(err, "%s: weight_map names an unsafe shard path \"%s\"", path, val);
            goto out;
        }
        n++;
        key_bytes += kcap;
        if (airllm_index_find(&seen, val) >= 0)
            continue;
        char **ns = realloc(shards, (n_shards + 1) * sizeof *shards);
        if (!ns || !(ns[n_shards] = strdup(val))) {
            shards = ns ? ns : shards;
            airllm_errf(err, "out of memory");
            goto out;
        }
        shards = ns;
        long prev;
        if (airllm_index_add(&seen, shards[n_shards], n_shards, &prev, err)) {
            free(shards[n_shards]);
            goto out;
        }
        n_shards++;
    }
    if (r < 0 || n > UINT32_MAX) {
        airllm_errf(err, "%s: weight_map could not be read", path);
        goto out;
    }
    if (n_shards == 0) {
        airllm_errf(err, "%s: weight_map lists no tensors", path);
        goto out;
    }
    qsort(shards, n_shards, sizeof *shards, cmp_str);
    /* Second walk: the keys into one block, each with its shard number. */
    out->names = malloc(key_bytes ? key_bytes : 1);
    out->key = malloc(n * sizeof *out->key);
    out->shard = malloc(n * sizeof *out->shard);
    if (!out->names || !out->key || !out->shard) {
        airllm_errf(err, "out of memory");
        goto out;
    }
    size_t at = 0;
    airllm_js_iter_init(&it, b, &wm);
    while (airllm_js_iter_next(&it, &k, &v) > 0) {
        size_t sl;
        bool nul;
        airllm_js_str(b, &k, out->names + at, &sl, &nul);
        if (nul) {
            airllm_errf(err, "%s: weight_map key \"%s\" contains a NUL character", path,
                        out->names + at);
            goto out;
        }
        out->key[out->n] = out->names + at;
        at += sl + 1;
        airllm_js_str(b, &v, val, &sl, &nul);
        /* The first walk collected every value, so it is there. */
        const char *key = val;
        char **hit = bsearch(&key, shards, n_shards, sizeof *shards, cmp_str);
        out->shard[out->n++] = (uint32_t)(hit - shards);
    }
    rc = 0;
out:
    if (rc) {
        for (size_t i = 0; i < n_shards; i++)
            free(shards[i]);
        free(shards);
        shards = NULL;
        n_shards = 0;
    }
    *shards_out = shards;
    *n_shards_out = n_shards;
    airllm_index_free(&seen);
    free(val);
    free(text);
    return rc;
}

/* Every tensor the index maps to a shard must be in that shard, and every
 * tensor in a shard must be mapped to it: otherwise a tensor would be lost
 * or read from the wrong file. Sources are the shards in the order of
 * their sorted names, as wm->shard counts them. */
static int check_index(airllm_ckpt *c, const weight_map *wm, const char *path, airllm_err *err)
{
    size_t n = wm->n;
    const char **keys = malloc((n ? n : 1) * sizeof *keys);
    if (!keys)
        return airllm_errf(err, "out of memory");
    memcpy(keys, wm->key, n * sizeof *keys);
    size_t k = n;
    qsort(keys, k, sizeof *keys, cmp_str);
    for (size_t i = 1; i < k; i++)
        if (strcmp(keys[i - 1], keys[i]) == 0) {
            airllm_errf(err, "%s: tensor \"%s\" is listed twice in weight_map", path, keys[i]);
            free(keys);
            return -1;
        }
    free(keys);
    size_t total = 0;
    for (size_t s = 0; s < c->n_sources; s++)
        total += c->sources[s].st.n_tensors;
    /* Lookups by name through indexes: a scan of the shard per weight_map
     * entry made this quadratic (700k tensors took over 16 minutes). */
    airllm_index *by_shard = calloc(c->n_sources ? c->n_sources : 1, sizeof *by_shard);
    airllm_index by_key = {0};
    int rc = 0;
    if (!by_shard)
        return airllm_errf(err, "out of memory");
    for (size_t s = 0; s < c->n_sources && !rc; s++)
        rc = airllm_index_build(&by_shard[s], c->sources[s].st.tensors,
                                c->sources[s].st.n_tensors, sizeof(airllm_st_tensor),
                                offsetof(airllm_st_tensor, name), err);
    for (size_t i = 0; i < n && !rc; i++)
        if (airllm_index_find(&by_shard[wm->shard[i]], wm->key[i]) < 0)
            rc = airllm_errf(err, "%s: tensor \"%s\" is mapped to %s, which does not "
                                  "contain it", path, wm->key[i], c->sources[wm->shard[i]].file);
    if (!rc && total != n) {
        rc = airllm_index_build(&by_key, wm->key, n, sizeof *wm->key, 0, err);
        for (size_t s = 0; s < c->n_sources && !rc; s++)
            for (size_t t = 0; t < c->sources[s].st.n_tensors && !rc; t++) {
                const char *name = c->sources[s].st.tensors[t].name;
                long at = airllm_index_find(&by_key, name);
                if (at < 0 || wm->shard[at] != s)
                    rc = airllm_errf(err, "%s/%s: tensor \"%s\" is not mapped to this "
                                          "shard by %s", c->dir, c->sources[s].file, name,
                                     path);
            }
    }
    for (size_t s = 0; s < c->n_sources; s++)
        airllm_index_free(&by_shard[s]);
    free(by_shard);
    airllm_index_free(&by_key);
    return rc;
}

static int find_sources(airllm_ckpt *c, const char *saved_dir, airllm_err *err)
{
    char path[4096];
    if (exists(c->dir, AIRLLM_INDEX_NAME)) {
        c->sharded = true;
        /* model.safetensors beside an index that does not name it: which
         * one is the model is a guess, so refuse rather than pick. */
        bool single = exists(c->dir, AIRLLM_SINGLE_NAME);
        char **shards = NULL;
        size_t n_shards = 0, copied;
        weight_map map = {0};
        int rc = airllm_path_join(path, sizeof path, c->dir, AIRLLM_INDEX_NAME, err);
        if (!rc)
            rc = load_weight_map(path, &shards, &n_shards, &map, err);
        copied = n_shards;
        if (!rc) {
            c->sources = calloc(n_shards, sizeof *c->sources);
            if (!c->sources)
                rc = airllm_errf(err, "out of memory");
        }
        for (size_t i = 0; !rc && single && i < n_shards; i++)
            single = strcmp(shards[i], AIRLLM_SINGLE_NAME) != 0;
        if (!rc && single)
            rc = airllm_errf(err, "%s: holds both %s and %s, which does not name it: it is not "
                                  "clear which is the model. Move the one that is not aside "
                                  "(or delete it) and run again",
                             c->dir, AIRLLM_SINGLE_NAME, AIRLLM_INDEX_NAME);
        for (size_t i = 0; !rc && i < n_shards; i++)
            rc = add_source(c, shards[i], saved_dir, err);
        if (!rc)
            rc = check_index(c, &map, path, err);
        for (size_t i = 0; i < copied; i++)
            free(shards[i]);
        free(shards);
        free(map.names);
        free(map.key);
        free(map.shard);
        return rc;
    }
    if (exists(c->dir, AIRLLM_SINGLE_NAME) ||
        (saved_dir && exists(saved_dir, AIRLLM_SINGLE_NAME ".hdr"))) {
        c->sources = calloc(1, sizeof *c->sources);
        if (!c->sources)
            return airllm_errf(err, "out of memory");
        return add_source(c, AIRLLM_SINGLE_NAME, saved_dir, err);
    }
    /* Refuse pickles by name rather than "no model found": the user needs to
     * know why, and what to do instead. */
    DIR *d = opendir(c->dir);
    if (d) {
        struct dirent *e;
        while ((e = readdir(d)) != NULL) {
            size_t l = strlen(e->d_name);
            if ((l > 4 && strcmp(e->d_name + l - 4, ".bin") == 0) ||
                (l > 3 && strcmp(e->d_name + l - 3, ".pt") == 0) ||
                (l > 4 && strcmp(e->d_name + l - 4, ".pth") == 0)) {
                airllm_errf(err, "%s/%s: PyTorch pickle checkpoints are refused: unpickling can "
                                 "run arbitrary code. Convert the model to safetensors first",
                            c->dir, e->d_name);
                closedir(d);
                return -1;
            }
        }
        closedir(d);
    }
    return airllm_errf(err, "%s: no %s or %s found", c->dir, AIRLLM_SINGLE_NAME,
                       AIRLLM_INDEX_NAME);
}

static int cmp_tensor_order(const void *a, const void *b, void *ctx)
{
    const airllm_ckpt *c = ctx;
    const airllm_ckpt_tensor *x = &c->tensors[*(const uint32_t *)a];
    const airllm_ckpt_tensor *y = &c->tensors[*(const uint32_t *)b];
    if (x->source != y->source)
        return x->source < y->source ? -1 : 1;
    return x->st_index < y->st_index ? -1 : x->st_index > y->st_index;
}

/* Assigns every tensor to a unit and builds the units in execution order. */
static int plan_units(airllm_ckpt *c, airllm_err *err)
{
    size_t n = 0;
    for (size_t s = 0; s < c->n_sources; s++)
        n += c->sources[s].st.n_tensors;
    c->tensors = calloc(n ? n : 1, sizeof *c->tensors);
    airllm_unit_kind *kinds = calloc(n ? n : 1, sizeof *kinds);
    int32_t *layers = calloc(n ? n : 1, sizeof *layers);
    int rc = 0;
    if (!c->tensors || !kinds || !layers) {
        rc = airllm_errf(err, "out of memory");
        goto out;
    }
    int32_t max_layer = -1;
    bool have[AIRLLM_UNIT_KIND_COUNT] = {0};
    size_t unmatched = 0;
    char list[600] = "";
    for (size_t s = 0; s < c->n_sources; s++) {
        for (size_t t = 0; t < c->sources[s].st.n_tensors; t++) {
            airllm_ckpt_tensor *ct = &c->tensors[c->n_tensors];
            ct->name = c->sources[s].st.tensors[t].name;
            ct->source = (uint32_t)s;
            ct->st_index = (uint32_t)t;
            if (airllm_arch_classify(c->arch, ct->name, &kinds[c->n_tensors],
                                     &layers[c->n_tensors])) {
                if (unmatched++ < 5 && strlen(list) + strlen(ct->name) + 8 < sizeof list) {
                    strcat(list, unmatched > 1 ? ", \"" : "\"");
                    strcat(list, ct->name);
                    strcat(list, "\"");
                }
            } else {
                have[kinds[c->n_tensors]] = true;
                if (layers[c->n_tensors] > max_layer)
                    max_layer = layers[c->n_tensors];
            }
            c->total_tensor_bytes += c->sources[s].st.tensors[t].end -
                                     c->sources[s].st.tensors[t].begin;
            c->n_tensors++;
        }
    }
    if (unmatched) {
        rc = airllm_errf(err, "%s: %zu tensor(s) fit no unit of the %s family (embeddings, "
                              "layers, final norm, LM head): %s%s", c->dir, unmatched,
                         airllm_arch_family(c->arch), list, unmatched > 5 ? ", ..." : "");
        goto out;
    }
    char cfgpath[4096];
    snprintf(cfgpath, sizeof cfgpath, "%s/%s", c->dir, AIRLLM_CONFIG_NAME);
    if ((int64_t)(max_layer + 1) != c->num_layers) {
        rc = airllm_errf(err, "%s: \"%s\" is %lld but the checkpoint has tensors for %d "
                              "layers", cfgpath, airllm_arch_layers_key(c->arch),
                         (long long)c->num_layers, max_layer + 1);
        goto out;
    }
    /* Units: embed?, layer 0..L-1, norm?, lm_head (own tensors, or tied). */
    const char *embed_name = airllm_arch_embed_tensor(c->arch);
    long embed_idx = -1;
    for (size_t t = 0; t < c->n_tensors; t++) {
        if (kinds[t] != AIRLLM_UNIT_EMBED)
            continue;
        const airllm_st_tensor *st = airllm_ckpt_st(c, t);
        if (embed_name ? strcmp(c->tensors[t].name, embed_name) == 0
                       : (embed_idx < 0 && st->ndim == 2))
            embed_idx = (long)t;
    }
    if (embed_idx >= 0) {
        const airllm_st_tensor *e = airllm_ckpt_st(c, (size_t)embed_idx);
        if (e->ndim != 2) {
            rc = airllm_errf(err, "%s: embedding \"%s\" is not 2-D", c->dir, e->name);
            goto out;
        }
        if (c->hidden_size >= 0 && e->shape[1] != (uint64_t)c->hidden_size) {
            rc = airllm_errf(err, "%s: \"%s\" is %lld but embedding \"%s\" has width %llu",
                             cfgpath, airllm_arch_hidden_key(c->arch),
                             (long long)c->hidden_size, e->name,
                             (unsigned long long)e->shape[1]);
            goto out;
        }
        if (c->vocab_size >= 0 && e->shape[0] != (uint64_t)c->vocab_size) {
            rc = airllm_errf(err, "%s: \"%s\" is %lld but embedding \"%s\" has %llu rows",
                             cfgpath, airllm_arch_vocab_key(c->arch),
                             (long long)c->vocab_size, e->name,
                             (unsigned long long)e->shape[0]);
            goto out;
        }
    }
    if (!have[AIRLLM_UNIT_LM_HEAD]) {
        if (!c->tie_word_embeddings || embed_idx < 0) {
            rc = airllm_errf(err, "%s: the checkpoint has no LM head tensor and %s", c->dir,
                             embed_idx < 0 ? "no embedding to tie it to"
                                           : "config.json does not tie the word embeddings");
            goto out;
        }
        c->tied_to = strdup(c->tensors[embed_idx].name);
        if (!c->tied_to) {
            rc = airllm_errf(err, "out of memory");
            goto out;
        }
    }
    size_t n_units = (have[AIRLLM_UNIT_EMBED] ? 1 : 0) + (size_t)(max_layer + 1) +
                     (have[AIRLLM_UNIT_NORM] ? 1 : 0) + 1;
    c->units = calloc(n_units, sizeof *c->units);
    if (!c->units) {
        rc = airllm_errf(err, "out of memory");
        goto out;
    }
    /* unit_of maps (kind, layer) to a unit index. */
    size_t embed_unit = 0, first_layer_unit, norm_unit = 0, head_unit;
    size_t u = 0;
    if (have[AIRLLM_UNIT_EMBED]) {
        embed_unit = u;
        c->units[u].kind = AIRLLM_UNIT_EMBED;
        c->units[u].layer = -1;
        strcpy(c->units[u].name, "embed");
        strcpy(c->units[u].file, "embed.airc");
        u++;
    }
    first_layer_unit = u;
    for (int32_t l = 0; l <= max_layer; l++, u++) {
        c->units[u].kind = AIRLLM_UNIT_LAYER;
        c->units[u].layer = l;
        snprintf(c->units[u].name, sizeof c->units[u].name, "layer.%d", l);
        snprintf(c->units[u].file, sizeof c->units[u].file, "layer.%05d.airc", l);
    }
    if (have[AIRLLM_UNIT_NORM]) {
        norm_unit = u;
        c->units[u].kind = AIRLLM_UNIT_NORM;
        c->units[u].layer = -1;
        strcpy(c->units[u].name, "norm");
        strcpy(c->units[u].file, "norm.airc");
        u++;
    }
    head_unit = u;
    c->units[u].kind = AIRLLM_UNIT_LM_HEAD;
    c->units[u].layer = -1;
    strcpy(c->units[u].name, "lm_head");
    if (!c->tied_to)
        strcpy(c->units[u].file, "lm_head.airc");
    u++;
    c->n_units = u;

    for (size_t t = 0; t < c->n_tensors; t++) {
        size_t unit = kinds[t] == AIRLLM_UNIT_EMBED  ? embed_unit
                      : kinds[t] == AIRLLM_UNIT_NORM ? norm_unit
                      : kinds[t] == AIRLLM_UNIT_LAYER ? first_layer_unit + (size_t)layers[t]
                                                      : head_unit;
        c->tensors[t].unit = (uint32_t)unit;
        c->units[unit].n_tensors++;
        const airllm_st_tensor *st = airllm_ckpt_st(c, t);
        c->units[unit].raw_bytes += st->end - st->begin;
    }
    for (size_t i = 0; i < c->n_units; i++) {
        airllm_ckpt_unit *un = &c->units[i];
        if (un->kind == AIRLLM_UNIT_LAYER && un->n_tensors == 0) {
            rc = airllm_errf(err, "%s: layer %d has no tensors (layers 0..%d expected)", c->dir,
                             un->layer, max_layer);
            goto out;
        }
        un->tensors = calloc(un->n_tensors ? un->n_tensors : 1, sizeof *un->tensors);
        if (!un->tensors) {
            rc = airllm_errf(err, "out of memory");
            goto out;
        }
        un->n_tensors = 0;
    }
    for (size_t t = 0; t < c->n_tensors; t++) {
        airllm_ckpt_unit *un = &c->units[c->tensors[t].unit];
        un->tensors[un->n_tensors++] = (uint32_t)t;
    }
    for (size_t i = 0; i < c->n_units; i++)
        qsort_r(c->units[i].tensors, c->units[i].n_tensors, sizeof(uint32_t),
                cmp_tensor_order, c);
out:
    free(kinds);
    free(layers);
    return rc;
}

int airllm_ckpt_open(const char *dir, const char *saved_headers_dir, airllm_ckpt *c,
                     airllm_err *err)
{
    memset(c, 0, sizeof *c);
    struct stat st;
    if (stat(dir, &st) != 0)
        return airllm_errf(err, "%s: %s", dir, strerror(errno));
    if (!S_ISDIR(st.st_mode))
        return airllm_errf(err, "%s: not a directory", dir);
    c->dir = strdup(dir);
    if (!c->dir)
        return airllm_errf(err, "out of memory");
    if (load_config(c, err) || find_sources(c, saved_headers_dir, err) || plan_units(c, err)) {
        airllm_ckpt_free(c);
        return -1;
    }
    return 0;
}

int airllm_ckpt_save_header(const airllm_ckpt *c, size_t source, const char *out_dir,
                            airllm_err *err)
{
    const airllm_ckpt_source *s = &c->sources[source];
    char path[4096], name[1024];
    if (!s->present)
        return airllm_errf(err, "%s: cannot save the header of a missing shard", s->file);
    if (airllm_path_join(path, sizeof path, c->dir, s->file, err))
        return -1;
    size_t hdr = (size_t)s->st.data_start;
    uint8_t *buf = malloc(16 + hdr);
    if (!buf)
        return airllm_errf(err, "out of memory");
    memcpy(buf, SAVED_HDR_MAGIC, 8);
    airllm_put_le64(buf + 8, s->st.file_size);
    int fd = airllm_open_input(path, 0, err);
    int rc;
    if (fd < 0) {
        rc = -1;
    } else {
        rc = airllm_pread_full(fd, buf + 16, hdr, 0, path, err);
        close(fd);
    }
    if (!rc) {
        saved_header_name(s->file, name);
        rc = airllm_write_file_atomic(out_dir, name, buf, 16 + hdr, err);
    }
    free(buf);
    return rc;
}

const airllm_ct_tensor *airllm_ckpt_ct(const airllm_ckpt *c, size_t t)
{
    const airllm_ckpt_source *src = &c->sources[c->tensors[t].source];
    return src->ct ? &src->ct->tensors[c->tensors[t].st_index] : NULL;
}

uint64_t airllm_ckpt_raw_len(const airllm_ckpt *c, size_t t)
{
    const airllm_ct_tensor *ct = airllm_ckpt_ct(c, t);
    const airllm_st_tensor *st = airllm_ckpt_st(c, t);
    return ct ? ct->raw_len : st->end - st->begin;
}

/* One unit file of a converted directory as a source: its header, checked
 * against the manifest entry, becomes a tensor list in file order. */
static int add_converted_source(airllm_ckpt *c, const airllm_mf_unit *u, airllm_err *err)
{
    char path[4096];
    if (airllm_path_join(path, sizeof path, c->dir, u->file, err))
        return -1;
    struct stat sb;
    if (stat(path, &sb) != 0)
        return airllm_errf(err, "%s: %s (listed in the manifest)", path, strerror(errno));
    if ((uint64_t)sb.st_size != u->size)
        return airllm_errf(err, "%s: %llu bytes, the manifest says %llu: truncated or changed",
                           path, (unsigned long long)sb.st_size, (unsigned long long)u->size);
    airllm_ckpt_source *src = &c->sources[c->n_sources];
    memset(src, 0, sizeof *src);
    src->file = strdup(u->file);
    src->ct = calloc(1, sizeof *src->ct);
    if (!src->file || !src->ct) {
        free(src->file);
        free(src->ct);
        return airllm_errf(err, "out of memory");
    }
    c->n_sources++;
    src->present = true;
    memcpy(src->sha256, u->sha256, sizeof src->sha256);
    if (airllm_ct_read_file(path, src->ct, err))
        return -1;
    if (src->ct->unit_kind != u->kind || src->ct->layer_index != u->layer)
        return airllm_errf(err, "%s: header says unit %s %d, the manifest %s %d", path,
                           airllm_unit_kind_name(src->ct->unit_kind), src->ct->layer_index,
                           airllm_unit_kind_name(u->kind), u->layer);
    airllm_st_file *st = &src->st;
    st->file_size = src->ct->file_size;
    st->n_tensors = src->ct->n_tensors;
    st->tensors = calloc(st->n_tensors ? st->n_tensors : 1, sizeof *st->tensors);
    if (!st->tensors)
        return airllm_errf(err, "out of memory");
    for (size_t i = 0; i < st->n_tensors; i++) {
        const airllm_ct_tensor *t = &src->ct->tensors[i];
        airllm_st_tensor *o = &st->tensors[i];
        o->name = t->name; /* borrowed: src->ct outlives st */
        o->dtype = t->dtype;
        o->ndim = t->ndim;
        memcpy(o->shape, t->shape, sizeof o->shape);
        o->begin = t->offset;
        o->end = t->offset + t->stored_len;
    }
    return 0;
}

static int cmp_source(const void *a, const void *b)
{
    return strcmp(((const airllm_ckpt_source *)a)->file, ((const airllm_ckpt_source *)b)->file);
}

int airllm_ckpt_open_converted(const char *dir, airllm_ckpt *c, airllm_err *err)
{
    memset(c, 0, sizeof *c);
    airllm_manifest m;
    if (airllm_manifest_load(dir, &m, err))
        return -1;
    int rc = 0;
    if (!m.complete)
        rc = airllm_errf(err, "%s/%s: not marked complete", dir, AIRLLM_MANIFEST_NAME);
    if (!rc && !(c->dir = strdup(dir)))
        rc = airllm_errf(err, "out of memory");
    if (!rc)
        c->sources = calloc(m.n_units ? m.n_units : 1, sizeof *c->sources);
    if (!rc && !c->sources)
        rc = airllm_errf(err, "out of memory");
    c->converted = true;
    if (!rc)
        rc = load_config(c, err);
    for (size_t u = 0; !rc && u < m.n_units; u++)
        if (m.units[u].file)
            rc = add_converted_source(c, &m.units[u], err);
    if (!rc) {
        /* The planner wants sources sorted by name; move the headers with
         * them. The manifest makes unit file names unique, and qsort keeps
         * a model with 100k layers from an insertion sort's n^2. */
        qsort(c->sources, c->n_sources, sizeof *c->sources, cmp_source);
        rc = plan_units(c, err);
    }
    if (!rc && c->n_tensors != m.n_tensors)
        rc = airllm_errf(err, "%s: the unit files hold %zu tensors, the manifest lists %zu", dir,
                         c->n_tensors, m.n_tensors);
    airllm_manifest_free(&m);
    if (rc)
        airllm_ckpt_free(c);
    return rc;
}
