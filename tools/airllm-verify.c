/* airllm-verify: checks a converted directory. Every problem is reported
 * with its file (and tensor); the exit status is 0 only when all holds.
 *
 * Checks, in order: the manifest (schema, version, complete); every listed
 * file present with its size and SHA-256 (hashed in parallel with --jobs);
 * each container header valid and in agreement with the manifest and
 * config.json; nothing missing and nothing extra; with --against, every
 * tensor byte-identical to the source checkpoint after decoding. */
#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <fcntl.h>
#include <getopt.h>
#include <pthread.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "airllm_checkpoint.h"
#include "airllm_codec.h"
#include "airllm_container.h"
#include "airllm_hash.h"
#include "airllm_index.h"
#include "airllm_io.h"
#include "airllm_json.h"
#include "airllm_bytes.h"
#include "airllm_manifest.h"
#include "airllm_quant.h"
#include "cli.h"
#include "rt.h"
#include "verify.h"

int cmp_name_ref(const void *a, const void *b)
{
    return strcmp(((const name_ref *)a)->name, ((const name_ref *)b)->name);
}

long find_name(const name_ref *refs, size_t n, const char *name)
{
    name_ref key = {name, 0};
    const name_ref *hit = bsearch(&key, refs, n, sizeof *refs, cmp_name_ref);
    return hit ? (long)hit->index : -1;
}

void report(verify_ctx *v, const char *file, const char *tensor, const char *fmt, ...)
{
    char msg[AIRLLM_ERR_MSG_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    pthread_mutex_lock(&v->lock);
    if (v->n_problems < MAX_PROBLEMS) {
        problem *p = &v->problems[v->n_problems++];
        p->file = strdup(file ? file : "");
        p->tensor = tensor ? strdup(tensor) : NULL;
        p->msg = strdup(msg);
    } else {
        v->n_dropped++;
    }
    pthread_mutex_unlock(&v->lock);
}

const char *strip_dir(const verify_ctx *v, const char *msg)
{
    size_t n = strlen(v->o.dir);
    if (strncmp(msg, v->o.dir, n) == 0 && msg[n] == '/')
        return msg + n + 1;
    return msg;
}

/* ------------------------------------------------------------------ */
/* container header against the manifest                              */

static void check_unit_header(verify_ctx *v, size_t u, const airllm_ct_header *h)
{
    const airllm_mf_unit *mu = &v->m.units[u];
    if (h->unit_kind != mu->kind || h->layer_index != mu->layer)
        report(v, mu->file, NULL, "header says unit %s %d, manifest says %s %d",
               airllm_unit_kind_name(h->unit_kind), h->layer_index,
               airllm_unit_kind_name(mu->kind), mu->layer);
    size_t listed = 0;
    airllm_index by_name;
    bool indexed = airllm_index_build(&by_name, h->tensors, h->n_tensors, sizeof *h->tensors,
                                      offsetof(airllm_ct_tensor, name), NULL) == 0;
    for (size_t k = v->unit_start[u]; k < v->unit_start[u + 1]; k++) {
        const airllm_mf_tensor *mt = &v->m.tensors[v->by_unit[k]];
        listed++;
        long i = indexed ? airllm_index_find(&by_name, mt->name) : airllm_ct_find(h, mt->name);
        if (i < 0) {
            report(v, mu->file, mt->name, "tensor listed in the manifest is missing");
            continue;
        }
        const airllm_ct_tensor *ct = &h->tensors[i];
        bool shape_ok = ct->ndim == mt->ndim &&
                        memcmp(ct->shape, mt->shape, mt->ndim * sizeof mt->shape[0]) == 0;
        if (ct->dtype != mt->dtype || !shape_ok)
            report(v, mu->file, mt->name, "dtype/shape in the file (%s, %u dims) differ from "
                   "the manifest (%s, %u dims)", airllm_dtype_name(ct->dtype), ct->ndim,
                   airllm_dtype_name(mt->dtype), mt->ndim);
        if (ct->encoding != mt->encoding || ct->stored_len != mt->stored_len ||
            ct->raw_len != mt->raw_len)
            report(v, mu->file, mt->name, "encoding or length in the file (%s, %llu stored) "
                   "differ from the manifest (%s, %llu stored)",
                   airllm_encoding_name(ct->encoding), (unsigned long long)ct->stored_len,
                   airllm_encoding_name(mt->encoding), (unsigned long long)mt->stored_len);
    }
    if (listed != h->n_tensors)
        report(v, mu->file, NULL, "file holds %u tensors, the manifest lists %zu", h->n_tensors,
               listed);
    if (indexed)
        airllm_index_free(&by_name);
}

/* Fills unit_start and by_unit (a counting sort keeps manifest order). */
static int group_by_unit(verify_ctx *v)
{
    size_t nu = v->m.n_units;
    v->unit_start = calloc(nu + 2, sizeof *v->unit_start);
    v->by_unit = malloc((v->m.n_tensors ? v->m.n_tensors : 1) * sizeof *v->by_unit);
    if (!v->unit_start || !v->by_unit)
        return -1;
    for (size_t t = 0; t < v->m.n_tensors; t++)
        v->unit_start[v->m.tensors[t].unit + 2]++;
    for (size_t u = 0; u < nu; u++)
        v->unit_start[u + 2] += v->unit_start[u + 1];
    for (size_t t = 0; t < v->m.n_tensors; t++)
        v->by_unit[v->unit_start[v->m.tensors[t].unit + 1]++] = t;
    return 0;
}

/* ------------------------------------------------------------------ */
/* per-file work, run by --jobs threads                                */

/* One sequential pass over a unit file: its SHA-256 into hex, and (format
 * 1.2, h->has_checks) each tensor's XXH3 against the check block, so a
 * damaged file is pinned on the tensor. Reports the tensors that differ;
 * fails only on I/O. */
static int hash_unit(verify_ctx *v, const char *file, const char *path,
                     const airllm_ct_header *h, char hex[AIRLLM_SHA256_HEX], uint64_t *size,
                     airllm_err *err)
{
    const size_t BUF = (size_t)4 << 20;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return airllm_errf(err, "%s: cannot open: %s", path, strerror(errno));
    posix_fadvise(fd, 0, 0, POSIX_FADV_SEQUENTIAL);
    uint8_t *buf = malloc(BUF);
    airllm_sha256 *sh = airllm_sha256_new();
    airllm_xxh3_state *xs = airllm_xxh3_new();
    int rc = buf && sh && xs ? 0 : airllm_errf(err, "%s: out of memory", path);
    uint64_t pos = 0;
    uint32_t ti = 0; /* the tensor whose range is being hashed or comes next */
    while (!rc) {
        ssize_t n = read(fd, buf, BUF);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            rc = airllm_errf(err, "%s: read failed: %s", path, strerror(errno));
            break;
        }
        if (n == 0)
            break;
        airllm_sha256_update(sh, buf, (size_t)n);
        uint64_t end = pos + (uint64_t)n;
        /* feed the part of [pos, end) inside each tensor; close the
         * tensors that end here (empty ones too) */
        while (h->has_checks && ti < h->n_tensors) {
            const airllm_ct_tensor *t = &h->tensors[ti];
            uint64_t te = t->offset + t->stored_len;
            uint64_t lo = pos > t->offset ? pos : t->offset, hi = end < te ? end : te;
            if (lo < hi)
                airllm_xxh3_update(xs, buf + (lo - pos), (size_t)(hi - lo));
            if (te > end)
                break;
            uint64_t got = airllm_xxh3_final(xs);
            if (got != t->xxh3)
                report(v, file, t->name, "XXH3 of the stored bytes is %016llx, the check "
                       "block says %016llx: the tensor is corrupted",
                       (unsigned long long)got, (unsigned long long)t->xxh3);
            ti++;
        }
        pos = end;
    }
    if (!rc)
        airllm_sha256_final_hex(sh, hex);
    *size = pos;
    airllm_xxh3_free(xs);
    airllm_sha256_free(sh);
    free(buf);
    close(fd);
    return rc;
}

static void check_work_item(verify_ctx *v, size_t w)
{
    const char *file;
    uint64_t size;
    const char *sha;
    size_t unit = SIZE_MAX;
    /* work items: the units that have files, then the copied files */
    size_t k = 0;
    for (size_t u = 0; u < v->m.n_units; u++)
        if (v->m.units[u].file && k++ == w)
            unit = u;
    if (unit != SIZE_MAX) {
        file = v->m.units[unit].file;
        size = v->m.units[unit].size;
        sha = v->m.units[unit].sha256;
    } else {
        const airllm_mf_file *f = &v->m.files[w - k];
        file = f->file;
        size = f->size;
        sha = f->sha256;
    }
    char path[4096];
    struct stat st;
    airllm_err err;
    snprintf(path, sizeof path, "%s/%s", v->o.dir, file);
    if (stat(path, &st) != 0) {
        report(v, file, NULL, "missing");
        return;
    }
    if ((uint64_t)st.st_size != size) {
        report(v, file, NULL, "size is %llu, the manifest says %llu%s",
               (unsigned long long)st.st_size, (unsigned long long)size,
               (uint64_t)st.st_size < size ? " (truncated)" : "");
        return;
    }
    char hs[32];
    cli_verbose("%s/%s: %s", v->o.dir, file, cli_human_size(size, hs));
    airllm_ct_header h = {0};
    if (unit != SIZE_MAX) {
        if (airllm_ct_read_file(path, &h, &err)) {
            report(v, file, NULL, "bad header: %s", strip_dir(v, err.msg));
            return;
        }
        check_unit_header(v, unit, &h);
        if (v->rcfg_ok &&
            rt_check_unit(&v->rcfg, &h, h.unit_kind == AIRLLM_UNIT_EMBED ? v->tied_to : NULL,
                          &err))
            report(v, file, NULL, "airllm-run would refuse it: %s", err.msg);
        if (v->o.against) {
            int fd = airllm_open_input(path, 0, NULL);
            if (fd >= 0) {
                for (uint32_t i = 0; i < h.n_tensors; i++)
                    compare_tensor(v, &v->m.units[unit], fd, path, &h.tensors[i]);
                close(fd);
            }
        }
    }
    if (!v->o.quick) {
        char got[AIRLLM_SHA256_HEX];
        uint64_t n = 0;
        if (unit != SIZE_MAX ? hash_unit(v, file, path, &h, got, &n, &err)
                             : airllm_sha256_file(path, got, &n, &err))
            report(v, file, NULL, "%s", strip_dir(v, err.msg));
        else if (strcmp(got, sha) != 0)
            report(v, file, NULL, "SHA-256 mismatch: the file is corrupted (got %.16s..., "
                   "expected %.16s...)", got, sha);
        pthread_mutex_lock(&v->lock);
        v->bytes_hashed += n;
        pthread_mutex_unlock(&v->lock);
    }
    airllm_ct_free(&h);
    pthread_mutex_lock(&v->lock);
    cli_progress_add(&v->prog, size);
    pthread_mutex_unlock(&v->lock);
}

static void *worker(void *arg)
{
    verify_ctx *v = arg;
    for (;;) {
        pthread_mutex_lock(&v->lock);
        size_t w = v->next_work < v->n_work ? v->next_work++ : SIZE_MAX;
        pthread_mutex_unlock(&v->lock);
        if (w == SIZE_MAX)
            break;
        check_work_item(v, w);
    }
    return NULL;
}

/* ------------------------------------------------------------------ */
/* whole-directory checks                                             */

/* The copied config.json must agree with the manifest and the units. */
static void check_config(verify_ctx *v)
{
    char path[4096];
    airllm_err err;
    bool listed = false;
    for (size_t i = 0; i < v->m.n_files; i++)
        listed |= strcmp(v->m.files[i].file, AIRLLM_CONFIG_NAME) == 0;
    if (!listed) {
        report(v, AIRLLM_MANIFEST_NAME, NULL, "config.json is not listed among the files");
        return;
    }
    snprintf(path, sizeof path, "%s/%s", v->o.dir, AIRLLM_CONFIG_NAME);
    if (access(path, F_OK) != 0)
        return; /* reported as missing by the file checks */
    cJSON *cfg;
    if (airllm_json_load_object(path, 16u << 20, &cfg, &err)) {
        report(v, AIRLLM_CONFIG_NAME, NULL, "%s", strip_dir(v, err.msg));
        return;
    }
    /* The runner's own reading of the file (rt_config.c). What it cannot
     * read is not a problem of the conversion (verify checks every family,
     * and faithful copies of configs airllm-run refuses), but a value it
     * refuses is worth a note; a model it does not implement only in
     * verbose mode. */
    int rrc = rt_config_load(v->o.dir, &v->rcfg, &err);
    if (rrc == 0)
        v->rcfg_ok = true;
    else if (rrc == RT_CONFIG_UNSUPPORTED)
        cli_verbose("%s (the runner's shape checks are skipped)", err.msg);
    else
        cli_info("note: airllm-run would refuse it: %s (its shape checks are skipped)",
                 err.msg);
    for (size_t u = 0; u < v->m.n_units; u++)
        if (v->m.units[u].kind == AIRLLM_UNIT_LM_HEAD && !v->m.units[u].file)
            v->tied_to = v->m.units[u].tied_to;
    const airllm_arch *a = airllm_arch_by_family(v->m.model.family);
    if (!a) {
        report(v, AIRLLM_MANIFEST_NAME, NULL, "unknown model family \"%s\"", v->m.model.family);
        cJSON_Delete(cfg);
        return;
    }
    const cJSON *nl = cJSON_GetObjectItemCaseSensitive(cfg, airllm_arch_layers_key(a));
    int64_t layers = cJSON_IsNumber(nl) ? (int64_t)nl->valuedouble : -1;
    size_t n_layer_units = 0;
    for (size_t u = 0; u < v->m.n_units; u++)
        if (v->m.units[u].kind == AIRLLM_UNIT_LAYER) {
            if (v->m.units[u].layer != (int32_t)n_layer_units)
                report(v, AIRLLM_MANIFEST_NAME, NULL, "layer units are not 0..N-1 in order "
                       "(unit %s)", v->m.units[u].name);
            n_layer_units++;
        }
    if (layers != v->m.model.num_layers || layers != (int64_t)n_layer_units)
        report(v, AIRLLM_CONFIG_NAME, NULL, "\"%s\" is %lld; the manifest says %lld and has %zu "
               "layer units", airllm_arch_layers_key(a), (long long)layers,
               (long long)v->m.model.num_layers, n_layer_units);
    const char *embed = airllm_arch_embed_tensor(a);
    const cJSON *hs = cJSON_GetObjectItemCaseSensitive(cfg, airllm_arch_hidden_key(a));
    for (size_t t = 0; embed && t < v->m.n_tensors; t++) {
        const airllm_mf_tensor *mt = &v->m.tensors[t];
        if (strcmp(mt->name, embed) != 0)
            continue;
        if (cJSON_IsNumber(hs) && (mt->ndim != 2 || mt->shape[1] != (uint64_t)hs->valuedouble))
            report(v, AIRLLM_CONFIG_NAME, embed, "\"%s\" does not match the embedding width",
                   airllm_arch_hidden_key(a));
    }
    cJSON_Delete(cfg);
}

/* Nothing extra: every entry of DIR must be the manifest, a unit file or a
 * copied file. */
static void check_extra(verify_ctx *v)
{
    /* Listed names through an index: a scan of the units per directory
     * entry is quadratic in the layer count. */
    airllm_index listed;
    long prev;
    bool indexed = airllm_index_build(&listed, v->m.units, v->m.n_units, sizeof *v->m.units,
                                      offsetof(airllm_mf_unit, file), NULL) == 0;
    for (size_t i = 0; i < v->m.n_files && indexed; i++)
        if (airllm_index_add(&listed, v->m.files[i].file, i, &prev, NULL)) {
            airllm_index_free(&listed);
            indexed = false;
        }
    DIR *d = opendir(v->o.dir);
    if (!d) {
        if (indexed)
            airllm_index_free(&listed);
        return;
    }
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        const char *n = e->d_name;
        if (strcmp(n, ".") == 0 || strcmp(n, "..") == 0 || strcmp(n, AIRLLM_MANIFEST_NAME) == 0)
            continue;
        bool known = indexed && airllm_index_find(&listed, n) >= 0;
        for (size_t u = 0; u < v->m.n_units && !known && !indexed; u++)
            known = v->m.units[u].file && strcmp(v->m.units[u].file, n) == 0;
        for (size_t i = 0; i < v->m.n_files && !known && !indexed; i++)
            known = strcmp(v->m.files[i].file, n) == 0;
        if (!known)
            report(v, n, NULL, "extra file not listed in the manifest");
    }
    closedir(d);
    if (indexed)
        airllm_index_free(&listed);
}

static name_ref *sorted_names(size_t n, const char *(*name_of)(const void *, size_t),
                              const void *ctx)
{
    name_ref *refs = malloc((n ? n : 1) * sizeof *refs);
    if (!refs)
        return NULL;
    for (size_t i = 0; i < n; i++)
        refs[i] = (name_ref){name_of(ctx, i), i};
    qsort(refs, n, sizeof *refs, cmp_name_ref);
    return refs;
}

static const char *src_tensor_name(const void *ctx, size_t i)
{
    return ((const airllm_ckpt *)ctx)->tensors[i].name;
}

static const char *manifest_tensor_name(const void *ctx, size_t i)
{
    return ((const airllm_manifest *)ctx)->tensors[i].name;
}

/* --against: every source tensor must be in the output. */
static int check_source_coverage(verify_ctx *v)
{
    name_ref *out = sorted_names(v->m.n_tensors, manifest_tensor_name, &v->m);
    if (!out)
        return -1;
    for (size_t t = 0; t < v->src.n_tensors; t++)
        if (find_name(out, v->m.n_tensors, v->src.tensors[t].name) < 0)
            report(v, v->src.sources[v->src.tensors[t].source].file, v->src.tensors[t].name,
                   "source tensor is missing from the output");
    free(out);
    return 0;
}

/* --against a checkpoint of another model: how many of the output's
 * tensors the source has, with the same dtype and shape. Under half is another model,
 * said in one line instead of a problem per tensor. */
static size_t count_same_tensors(const verify_ctx *v)
{
    size_t same = 0;
    for (size_t t = 0; t < v->m.n_tensors; t++) {
        const airllm_mf_tensor *mt = &v->m.tensors[t];
        long i = find_name(v->src_by_name, v->src.n_tensors, mt->name);
        if (i < 0)
            continue;
        const airllm_st_tensor *st = airllm_ckpt_st(&v->src, (size_t)i);
        same += st->dtype == mt->dtype && st->ndim == mt->ndim &&
                memcmp(st->shape, mt->shape, mt->ndim * sizeof mt->shape[0]) == 0;
    }
    return same;
}

static void usage(FILE *f)
{
    fprintf(f,
            "Usage: airllm-verify [options] DIR\n"
            "Check a directory written by airllm-split: manifest, sizes, SHA-256 digests,\n"
            "container headers, config.json, and nothing missing or extra.\n\n"
            "      --against HF_DIR  also compare every tensor, decoded, with the source\n"
            "                        checkpoint HF_DIR: byte for byte, or within the error\n"
            "                        bound for nf4/fp4/int8\n"
            "      --quick           structure and sizes only, no hashing\n"
            "  -j, --jobs N          files checked in parallel (default 1; --threads too)\n"
            "      --json            print a JSON report on stdout\n"
            "  -q, --quiet           print nothing but problems\n"
            "  -v, --verbose         name each file as it is checked, with its size\n"
            "  -h, --help            this help\n"
            "  -V, --version         print the version\n\n"
            "Exit status: 0 everything holds, 1 a problem was found, 2 usage error.\n");
}

static int parse_args(int argc, char **argv, verify_opts *o)
{
    static const struct option longopts[] = {
        {"against", required_argument, 0, 'a'}, {"quick", no_argument, 0, 'Q'},
        {"jobs", required_argument, 0, 'j'},    {"json", no_argument, 0, 'J'},
        {"threads", required_argument, 0, 'j'},
        {"quiet", no_argument, 0, 'q'},         {"verbose", no_argument, 0, 'v'},
        {"help", no_argument, 0, 'h'},          {"version", no_argument, 0, 'V'},
        {0, 0, 0, 0},
    };
    memset(o, 0, sizeof *o);
    o->jobs = 1;
    int ch;
    uint64_t n;
    opterr = 0; /* cli_getopt_error says it once */
    while ((ch = getopt_long(argc, argv, ":j:qvhV", longopts, NULL)) != -1) {
        switch (ch) {
        case 'a': o->against = optarg; break;
        case 'Q': o->quick = true; break;
        case 'j':
            if (cli_parse_uint(optarg, 1, 256, &n))
                return cli_usage_error("bad --jobs '%s' (1-256)", optarg);
            o->jobs = (unsigned)n;
            break;
        case 'J': o->json = true; break;
        case 'q': cli_verbosity = 0; break;
        case 'v': cli_verbosity = 2; break;
        case 'h': usage(stdout); exit(AIRLLM_EXIT_OK);
        case 'V': cli_print_version(); exit(AIRLLM_EXIT_OK);
        default: return cli_getopt_error(ch, argv);
        }
    }
    if (argc - optind != 1)
        return cli_usage_error("expected one DIR");
    o->dir = argv[optind];
    return 0;
}

static int finish(verify_ctx *v, double secs, const char *fatal)
{
    bool ok = !fatal && v->n_problems == 0;
    if (v->o.json && fatal && !v->incomplete) {
        /* nothing could be checked: the error object every tool prints */
        cli_json_error(AIRLLM_EXIT_FAIL, fatal);
    } else if (v->o.json) {
        /* docs/json.md: status ok, failed (problems found) or incomplete
         * (not a complete conversion: nothing else could be checked) */
        cJSON *j = cli_json_new("summary", ok ? "ok" : v->incomplete ? "incomplete" : "failed");
        cJSON_AddStringToObject(j, "out_dir", v->o.dir);
        if (v->o.against)
            cJSON_AddStringToObject(j, "against", v->o.against);
        else
            cJSON_AddNullToObject(j, "against");
        cJSON_AddBoolToObject(j, "quick", v->o.quick);
        if (fatal)
            cJSON_AddStringToObject(j, "error", fatal);
        else if (!ok)
            cJSON_AddStringToObject(j, "error", "problems found");
        if (!ok)
            cJSON_AddNumberToObject(j, "exit_code", AIRLLM_EXIT_FAIL);
        cJSON_AddNumberToObject(j, "units", (double)v->m.n_units);
        cJSON_AddNumberToObject(j, "tensors", (double)v->m.n_tensors);
        cJSON_AddNumberToObject(j, "bytes_hashed", (double)v->bytes_hashed);
        cJSON *ps = cJSON_AddArrayToObject(j, "problems");
        for (size_t i = 0; i < v->n_problems; i++) {
            cJSON *p = cJSON_CreateObject();
            cJSON_AddStringToObject(p, "file", v->problems[i].file);
            if (v->problems[i].tensor)
                cJSON_AddStringToObject(p, "tensor", v->problems[i].tensor);
            cJSON_AddStringToObject(p, "problem", v->problems[i].msg);
            cJSON_AddItemToArray(ps, p);
        }
        cJSON_AddNumberToObject(j, "problems_not_listed", (double)v->n_dropped);
        cJSON *tm = cJSON_AddObjectToObject(j, "timings");
        cJSON_AddNumberToObject(tm, "total_s", secs);
        cli_json_emit(j);
    }
    if (fatal)
        cli_error("%s", fatal);
    for (size_t i = 0; i < v->n_problems; i++) {
        /* File and tensor names come from the manifest and the headers:
         * escaped, like every message (cli/cli.c). */
        const problem *p = &v->problems[i];
        fprintf(stderr, "%s: ", cli_prog);
        cli_fputs_escaped(stderr, v->o.dir);
        fputc('/', stderr);
        cli_fputs_escaped(stderr, p->file);
        if (p->tensor) {
            fputs(": tensor \"", stderr);
            cli_fputs_escaped(stderr, p->tensor);
            fputc('"', stderr);
        }
        fputs(": ", stderr);
        cli_fputs_escaped(stderr, p->msg);
        fputc('\n', stderr);
    }
    if (v->n_dropped)
        fprintf(stderr, "%s: ... and %zu more problems\n", cli_prog, v->n_dropped);
    if (ok && !v->o.json) {
        char a[32];
        cli_info("%s: OK: %zu units, %zu tensors, %s hashed%s%s in %.2f s", v->o.dir,
                 v->m.n_units, v->m.n_tensors, cli_human_size(v->bytes_hashed, a),
                 v->o.quick ? " (quick: sizes only)" : "",
                 v->o.against ? ", matching the source (byte for byte, or within the quantization bound)" : "", secs);
    } else if (!ok && !fatal) {
        cli_error("%s: %zu problem(s) found", v->o.dir, v->n_problems + v->n_dropped);
    }
    return ok ? AIRLLM_EXIT_OK : AIRLLM_EXIT_FAIL;
}

static int verify_main(verify_ctx *vp, int argc, char **argv);

int main(int argc, char **argv)
{
    cli_prog = "airllm-verify";
    cli_json_prescan(argc, argv); /* usage errors print JSON too */
    verify_ctx v;
    memset(&v, 0, sizeof v);
    int rc = verify_main(&v, argc, argv);
    for (size_t i = 0; i < v.n_problems; i++) {
        free(v.problems[i].file);
        free(v.problems[i].tensor);
        free(v.problems[i].msg);
    }
    free(v.problems);
    free(v.src_by_name);
    free(v.unit_start);
    free(v.by_unit);
    airllm_manifest_free(&v.m);
    airllm_ckpt_free(&v.src);
    return rc;
}

static int verify_main(verify_ctx *vp, int argc, char **argv)
{
    int rc = parse_args(argc, argv, &vp->o);
    if (rc)
        return rc;
    pthread_mutex_init(&vp->lock, NULL);
    vp->problems = calloc(MAX_PROBLEMS, sizeof *vp->problems);
    if (!vp->problems)
        return AIRLLM_EXIT_FAIL;
    double t0 = airllm_now();
    airllm_err err;
    char path[4096], msg[AIRLLM_ERR_MSG_MAX + 200];
    struct stat st;
    if (stat(vp->o.dir, &st) != 0 || !S_ISDIR(st.st_mode)) {
        snprintf(msg, sizeof msg, "%s: not a directory", vp->o.dir);
        return finish(vp, 0, msg);
    }
    /* A directory that airllm-split or airllm-quant is still writing is
     * reported as such, not as a list of mismatches; the shared lock is held
     * until exit, so that no writer starts meanwhile. */
    int lock_fd;
    if (airllm_lock_reader(vp->o.dir, &lock_fd, &err)) {
        vp->incomplete = true; /* being written, or the lock cannot be taken */
        snprintf(msg, sizeof msg, "%s", err.msg);
        return finish(vp, airllm_now() - t0, msg);
    }
    snprintf(path, sizeof path, "%s/%s", vp->o.dir, AIRLLM_MANIFEST_NAME);
    cli_dir_kind kind = cli_dir_classify(vp->o.dir);
    if (kind == CLI_DIR_HF && vp->o.against &&
        cli_dir_classify(vp->o.against) == CLI_DIR_CONVERTED) {
        snprintf(msg, sizeof msg, "the arguments are swapped: --against takes the Hugging "
                 "Face checkpoint, DIR the converted directory: airllm-verify --against %s %s",
                 vp->o.dir, vp->o.against);
        return finish(vp, airllm_now() - t0, msg);
    }
    if (kind == CLI_DIR_HF) {
        snprintf(msg, sizeof msg, "%s: this is a Hugging Face checkpoint, not a converted "
                 "directory: airllm-verify checks what airllm-split or airllm-quant wrote "
                 "(airllm-verify --against %s OUT_DIR)", vp->o.dir, vp->o.dir);
        return finish(vp, airllm_now() - t0, msg);
    }
    if (access(path, F_OK) != 0) {
        snprintf(path, sizeof path, "%s/.airllm-split", vp->o.dir);
        vp->incomplete = true;
        snprintf(msg, sizeof msg, "%s: incomplete: no manifest.json%s", vp->o.dir,
                 access(path, F_OK) == 0
                     ? " (an interrupted airllm-split run: run the same command again to "
                       "resume)"
                     : "");
        return finish(vp, airllm_now() - t0, msg);
    }
    if (airllm_manifest_load(vp->o.dir, &vp->m, &err)) {
        snprintf(msg, sizeof msg, "%s", err.msg);
        return finish(vp, airllm_now() - t0, msg);
    }
    if (!vp->m.complete) {
        vp->incomplete = true;
        snprintf(msg, sizeof msg, "%s: incomplete: the manifest is not marked complete",
                 vp->o.dir);
        return finish(vp, airllm_now() - t0, msg);
    }
    if (vp->o.against && airllm_ckpt_open(vp->o.against, NULL, &vp->src, &err)) {
        snprintf(msg, sizeof msg, "--against: %s", err.msg);
        return finish(vp, airllm_now() - t0, msg);
    }

    if (group_by_unit(vp)) {
        snprintf(msg, sizeof msg, "out of memory");
        return finish(vp, airllm_now() - t0, msg);
    }
    check_config(vp);
    check_extra(vp);
    if (vp->o.against) {
        vp->src_by_name = sorted_names(vp->src.n_tensors, src_tensor_name, &vp->src);
        if (!vp->src_by_name) {
            snprintf(msg, sizeof msg, "out of memory");
            return finish(vp, airllm_now() - t0, msg);
        }
        size_t same = count_same_tensors(vp);
        if (2 * same < vp->m.n_tensors) {
            snprintf(msg, sizeof msg, "%s is a different model from %s: only %zu of its %zu "
                     "tensors are in the source with the same dtype and shape", vp->o.dir,
                     vp->o.against, same, vp->m.n_tensors);
            return finish(vp, airllm_now() - t0, msg);
        }
        if (check_source_coverage(vp)) {
            snprintf(msg, sizeof msg, "out of memory");
            return finish(vp, airllm_now() - t0, msg);
        }
    }
    uint64_t total = 0;
    for (size_t u = 0; u < vp->m.n_units; u++) {
        vp->n_work += vp->m.units[u].file != NULL;
        total += vp->m.units[u].file ? vp->m.units[u].size : 0;
    }
    vp->n_work += vp->m.n_files;
    for (size_t i = 0; i < vp->m.n_files; i++)
        total += vp->m.files[i].size;
    cli_progress_init(&vp->prog, cli_prog, total);
    unsigned nt = vp->o.jobs;
    pthread_t *th = calloc(nt, sizeof *th);
    for (unsigned i = 1; th && i < nt; i++)
        if (pthread_create(&th[i], NULL, worker, vp) != 0)
            th[i] = 0;
    worker(vp);
    for (unsigned i = 1; th && i < nt; i++)
        if (th[i])
            pthread_join(th[i], NULL);
    free(th);
    cli_progress_finish(&vp->prog);
    return finish(vp, airllm_now() - t0, NULL);
}
