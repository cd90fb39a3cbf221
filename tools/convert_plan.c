/* Disk planning: the free space a run needs (its peak), checked before
 * anything is written, and the --dry-run plan. */
#include "convert.h"

/* ------------------------------------------------------------------ */
/* dry run and summary                                                */

static uint64_t unit_file_bytes(const split_ctx *s, size_t u);

/* airllm-quant's plan: the bytes the quantized tensors take (codes, scales,
 * padding, as airllm_ct_tensor_qlayout lays them out) and their weights, for
 * the bits per weight the output will have. */
static void quant_totals(const split_ctx *s, uint64_t *bytes, uint64_t *weights)
{
    *bytes = *weights = 0;
    for (size_t t = 0; s->quantize && t < s->ck.n_tensors; t++) {
        if (!s->quantize[t])
            continue;
        const airllm_st_tensor *st = airllm_ckpt_st(&s->ck, t);
        airllm_ct_tensor ct = {0};
        ct.name = (char *)st->name;
        ct.dtype = st->dtype;
        ct.ndim = st->ndim;
        memcpy(ct.shape, st->shape, sizeof ct.shape);
        ct.raw_len = airllm_ckpt_raw_len(&s->ck, t);
        ct.encoding = airllm_quant_encoding((airllm_quant_type)s->quantize[t]);
        ct.enc_param[0] = s->o.block;
        ct.enc_param[1] = s->o.double_quant ? AIRLLM_CT_QFLAG_DOUBLE_QUANT : 0;
        airllm_ct_qlayout l;
        if (airllm_ct_tensor_qlayout(&ct, &l, NULL) != 0)
            continue;
        *bytes += l.stored_len;
        *weights += st->shape[0] * st->shape[1]; /* plan_quant: 2-D only */
    }
}

void print_plan(const split_ctx *s, const disk_plan *dp, uint64_t avail)
{
    const airllm_ckpt *c = &s->ck;
    char a[32], b[32], d[32];
    if (s->o.json) {
        /* docs/json.md: a plan line; "units" is a count in every object,
         * the per-unit rows are unit_list */
        cJSON *j = cli_json_new("plan", "ok");
        cJSON_AddBoolToObject(j, "dry_run", true);
        cJSON_AddStringToObject(j, "source_dir", s->o.hf_dir);
        cJSON_AddStringToObject(j, "out_dir", s->o.out_dir);
        cJSON_AddStringToObject(j, "family", airllm_arch_family(c->arch));
        cJSON_AddNumberToObject(j, "layers", (double)c->num_layers);
        cJSON_AddNumberToObject(j, "units", (double)c->n_units);
        cJSON_AddNumberToObject(j, "tensors", (double)c->n_tensors);
        cJSON_AddNumberToObject(j, "sources", (double)c->n_sources);
        cJSON_AddNumberToObject(j, "tensor_bytes", (double)c->total_tensor_bytes);
        cJSON *units = cJSON_AddArrayToObject(j, "unit_list");
        for (size_t u = 0; u < c->n_units; u++) {
            cJSON *o = cJSON_CreateObject();
            cJSON_AddStringToObject(o, "name", c->units[u].name);
            if (c->units[u].n_tensors)
                cJSON_AddStringToObject(o, "file", c->units[u].file);
            else
                cJSON_AddStringToObject(o, "tied_to", c->tied_to);
            cJSON_AddNumberToObject(o, "tensors", (double)c->units[u].n_tensors);
            cJSON_AddNumberToObject(o, "bytes", (double)c->units[u].raw_bytes);
            cJSON_AddItemToArray(units, o);
        }
        cJSON_AddNumberToObject(j, "disk_needed", (double)dp->need);
        cJSON_AddNumberToObject(j, "disk_written", (double)dp->written);
        cJSON_AddBoolToObject(j, "sources_deleted_as_it_goes", dp->freed);
        cJSON_AddNumberToObject(j, "disk_available", (double)avail);
        cli_json_emit(j);
        return;
    }
    printf("plan: %s -> %s\n", c->dir, s->o.out_dir);
    printf("model: %s (family %s), %lld layers, %zu tensors in %zu source file(s)\n",
           *c->architecture ? c->architecture : c->model_type, airllm_arch_family(c->arch),
           (long long)c->num_layers, c->n_tensors, c->n_sources);
    /* "bytes" are the tensors as the input holds them, "file" the unit
     * file this run writes: quantized, or at most that with zstd. */
    printf("%-12s %-20s %8s %14s %14s\n", "unit", "file", "tensors", "bytes", "file bytes");
    uint64_t out_total = 0;
    for (size_t u = 0; u < c->n_units; u++) {
        const airllm_ckpt_unit *un = &c->units[u];
        uint64_t fb = un->n_tensors ? unit_file_bytes(s, u) : 0;
        out_total += fb;
        if (un->n_tensors)
            printf("%-12s %-20s %8zu %14llu %14llu\n", un->name, un->file, un->n_tensors,
                   (unsigned long long)un->raw_bytes, (unsigned long long)fb);
        else {
            char *tied = cli_escape(c->tied_to); /* a name from the checkpoint */
            printf("%-12s %-20s %8s %14s  (tied to %s)\n", un->name, "-", "-", "-",
                   tied ? tied : "?");
            free(tied);
        }
    }
    printf("tensor bytes: %s; disk needed: %s%s; available: %s\n",
           cli_human_size(c->total_tensor_bytes, a), cli_human_size(dp->need, b),
           s->o.zstd ? " (at most)" : "", cli_human_size(avail, d));
    printf("output: %s%s in unit files", cli_human_size(out_total, a),
           s->o.zstd ? " at most" : "");
    uint64_t qb, qw;
    quant_totals(s, &qb, &qw);
    if (qw) {
        /* Over every weight of the output, the tensors left unquantized
         * (norms, embeddings, the LM head unless --include) count too. */
        uint64_t all_w = 0;
        for (size_t t = 0; t < c->n_tensors; t++) {
            const airllm_st_tensor *st = airllm_ckpt_st(c, t);
            uint64_t n = 1;
            for (uint32_t d = 0; d < st->ndim; d++)
                n *= st->shape[d];
            all_w += n;
        }
        printf("; %s, block %u%s: %.2f bits per quantized weight, %.2f per weight over the "
               "files (%llu weights)",
               airllm_quant_type_name(s->o.qtype), s->o.block,
               s->o.double_quant ? ", double quant" : "", 8.0 * (double)qb / (double)qw,
               all_w ? 8.0 * (double)out_total / (double)all_w : 0.0,
               (unsigned long long)all_w);
    }
    printf("\n");
    if (dp->freed)
        printf("--delete-original: %s written in all; the need above is the peak, as each "
               "source is deleted once its units are written\n",
               cli_human_size(dp->written, a));
}

/* Bytes unit u's file takes: the layout the writer gives it, quantized
 * tensors at their quantized size (codes, scales, padding) as
 * airllm_ct_tensor_qlayout lays them out. For zstd an upper bound: a tensor
 * that does not shrink is stored raw. */
static uint64_t unit_file_bytes(const split_ctx *s, size_t u)
{
    const airllm_ckpt_unit *un = &s->ck.units[u];
    uint64_t bound =
        un->raw_bytes + (uint64_t)un->n_tensors * AIRLLM_CT_ALIGN + 2 * AIRLLM_CT_ALIGN;
    airllm_ct_header h = {0};
    h.n_tensors = (uint32_t)un->n_tensors;
    h.tensors = calloc(un->n_tensors ? un->n_tensors : 1, sizeof *h.tensors);
    if (!h.tensors)
        return bound;
    for (size_t i = 0; i < un->n_tensors; i++) {
        size_t t = un->tensors[i];
        const airllm_st_tensor *st = airllm_ckpt_st(&s->ck, t);
        const airllm_ct_tensor *src = airllm_ckpt_ct(&s->ck, t);
        airllm_ct_tensor *ct = &h.tensors[i];
        ct->name = (char *)st->name;
        ct->dtype = st->dtype;
        ct->ndim = st->ndim;
        memcpy(ct->shape, st->shape, sizeof ct->shape);
        ct->raw_len = ct->stored_len = airllm_ckpt_raw_len(&s->ck, t);
        if (s->quantize && s->quantize[t]) {
            airllm_ct_qlayout l;
            ct->encoding = airllm_quant_encoding((airllm_quant_type)s->quantize[t]);
            ct->enc_param[0] = s->o.block;
            ct->enc_param[1] = s->o.double_quant ? AIRLLM_CT_QFLAG_DOUBLE_QUANT : 0;
            if (airllm_ct_tensor_qlayout(ct, &l, NULL) == 0)
                ct->stored_len = l.stored_len;
        } else if (src && src->encoding == AIRLLM_ENC_ZSTD) {
            ct->stored_len = src->stored_len;
        }
    }
    uint64_t size = airllm_ct_layout(&h, NULL) == 0 ? h.file_size : bound;
    free(h.tensors);
    return size;
}

static bool plan_all_done(const split_ctx *s, const bool *done, size_t i)
{
    for (size_t k = 0; k < s->n_src_units[i]; k++)
        if (!done[s->src_units[i][k]])
            return false;
    return true;
}

/* The source bytes try_delete_sources would delete now, in plan_disk's
 * replay. */
static uint64_t plan_deletions(const split_ctx *s, const disk_plan *dp, const bool *sdone,
                               const bool *done, bool *gone)
{
    uint64_t freed = 0;
    for (size_t j = 0; s->o.delete_original && j < s->ck.n_sources; j++)
        if (!gone[j] && sdone[j] && plan_all_done(s, done, j)) {
            gone[j] = true;
            freed += dp->freed ? s->ck.sources[j].st.file_size : 0;
        }
    return freed;
}

/* Without --delete-original a run needs room for every unit still to be
 * written. With it, sources are deleted as it goes, so what it needs is
 * the peak of (bytes written - source bytes deleted), replayed in the order
 * the run works: sources in order; a unit's file counted whole from its
 * first tensor on; units finished when their last tensor arrives (a
 * converted input's at the end of its source); a source deleted once it is
 * read and all its units are finished, as try_delete_sources does. Deleting
 * frees space for OUT_DIR only on the same filesystem (probe: OUT_DIR or its
 * closest existing ancestor). Copied config/tokenizer files and 1 MiB of
 * margin come on top. */
void plan_disk(const split_ctx *s, const char *probe, disk_plan *dp)
{
    const airllm_ckpt *c = &s->ck;
    struct stat a, b;
    memset(dp, 0, sizeof *dp);
    dp->freed = s->o.delete_original && stat(c->dir, &a) == 0 && stat(probe, &b) == 0 &&
                a.st_dev == b.st_dev;
    uint64_t extra = 1u << 20;
    for (size_t i = 0; i < N_AUX; i++) {
        char p[4096];
        struct stat st;
        if (airllm_path_join(p, sizeof p, c->dir, aux_files[i], NULL) == 0 && stat(p, &st) == 0)
            extra += (uint64_t)st.st_size;
    }
    bool *done = calloc(c->n_units + 1, sizeof *done), *opened = calloc(c->n_units + 1, 1);
    size_t *left = calloc(c->n_units + 1, sizeof *left);
    bool *sdone = calloc(c->n_sources + 1, sizeof *sdone), *gone = calloc(c->n_sources + 1, 1);
    uint64_t *size = calloc(c->n_units + 1, sizeof *size);
    if (!done || !opened || !left || !sdone || !gone || !size) {
        /* no memory for the replay: count every unit, free nothing */
        for (size_t u = 0; u < c->n_units; u++)
            if (c->units[u].n_tensors && !(s->unit_done && s->unit_done[u].done))
                dp->written += unit_file_bytes(s, u);
        dp->need = dp->written + extra;
        dp->freed = false;
        goto out;
    }
    for (size_t u = 0; u < c->n_units; u++) {
        done[u] = !c->units[u].n_tensors || (s->unit_done && s->unit_done[u].done);
        left[u] = c->units[u].n_tensors;
        size[u] = done[u] ? 0 : unit_file_bytes(s, u);
    }
    for (size_t i = 0; i < c->n_sources; i++) {
        sdone[i] = s->src_done && s->src_done[i].done;
        gone[i] = (s->src_deleted && s->src_deleted[i]) || !c->sources[i].present;
    }
    uint64_t written = 0, freed = 0, peak = 0;
    for (size_t i = 0; i < c->n_sources; i++) {
        if (sdone[i] && plan_all_done(s, done, i))
            continue; /* not read again: source_needed() */
        for (size_t t = 0; t < c->n_tensors; t++) {
            size_t u = c->tensors[t].unit;
            if (c->tensors[t].source != i || done[u])
                continue;
            if (!opened[u]) {
                opened[u] = true;
                written += size[u];
                /* freed may exceed written: a resumed run deletes sources
                 * whose units an earlier run wrote */
                if (written > freed && written - freed > peak)
                    peak = written - freed;
            }
            if (--left[u] == 0 && !c->converted) {
                done[u] = true;
                freed += plan_deletions(s, dp, sdone, done, gone);
            }
        }
        sdone[i] = true;
        for (size_t k = 0; k < s->n_src_units[i]; k++)
            done[s->src_units[i][k]] |= left[s->src_units[i][k]] == 0;
        freed += plan_deletions(s, dp, sdone, done, gone);
    }
    dp->written = written;
    dp->need = peak + extra;
out:
    free(done);
    free(opened);
    free(left);
    free(sdone);
    free(gone);
    free(size);
}

uint64_t disk_available(const char *dir)
{
    struct statvfs v;
    if (statvfs(dir, &v) != 0)
        return UINT64_MAX;
    return (uint64_t)v.f_bavail * v.f_frsize;
}
