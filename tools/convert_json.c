/* airllm-split's and airllm-quant's --json summary (docs/json.md), built
 * from the manifest on disk, so that a full run, a resumed run and the
 * rerun of an already complete command report the same fields from the
 * same source. */
#include "convert.h"

/* The quant object and, with --report, the per-tensor table, from the
 * manifest's tensors (each quantized one records its block and its error
 * against the source values). */
static void add_quant(const split_opts *o, const airllm_manifest *m, cJSON *j)
{
    uint64_t nq = 0, elems = 0, qstored = 0, qsrc = 0;
    double worst_rel = 0;
    cJSON *rep = o->report ? cJSON_AddArrayToObject(j, "report") : NULL;
    for (size_t t = 0; t < m->n_tensors; t++) {
        const airllm_mf_tensor *mt = &m->tensors[t];
        unsigned bits = airllm_dtype_bits(mt->dtype);
        if (!airllm_encoding_is_quant(mt->encoding) || bits < 8)
            continue;
        /* quantized tensors are F32, F16 or BF16: whole bytes per element */
        uint64_t n = mt->raw_len / (bits / 8);
        nq++;
        elems += n;
        qstored += mt->stored_len;
        qsrc += mt->raw_len;
        if (mt->quant_rel_fro > worst_rel)
            worst_rel = mt->quant_rel_fro;
        cJSON *r = rep ? cJSON_CreateObject() : NULL;
        if (r) {
            cJSON_AddStringToObject(r, "tensor", mt->name);
            cJSON_AddStringToObject(r, "encoding", airllm_encoding_name(mt->encoding));
            cJSON_AddNumberToObject(r, "rmse", mt->quant_rmse);
            cJSON_AddNumberToObject(r, "max_abs", mt->quant_max_abs);
            cJSON_AddNumberToObject(r, "rel_frobenius_error", mt->quant_rel_fro);
            cJSON_AddNumberToObject(r, "bits_per_weight",
                                    n ? 8.0 * (double)mt->stored_len / (double)n : 0.0);
            cJSON_AddItemToArray(rep, r);
        }
    }
    cJSON *q = cJSON_AddObjectToObject(j, "quant");
    cJSON_AddStringToObject(q, "type", airllm_quant_type_name(o->qtype));
    quant_part_types_json(o, q);
    cJSON_AddNumberToObject(q, "block_size", o->block);
    cJSON_AddBoolToObject(q, "double_quant", o->double_quant);
    cJSON_AddNumberToObject(q, "tensors", (double)nq);
    cJSON_AddNumberToObject(q, "weights", (double)elems);
    cJSON_AddNumberToObject(q, "bits_per_weight", elems ? 8.0 * (double)qstored / (double)elems : 0);
    cJSON_AddNumberToObject(q, "source_bytes", (double)qsrc);
    cJSON_AddNumberToObject(q, "stored_bytes", (double)qstored);
    cJSON_AddNumberToObject(q, "worst_rel_frobenius_error", worst_rel);
}

int convert_json_summary(const split_ctx *s, bool already_complete, double total_s,
                         airllm_err *err)
{
    const split_opts *o = &s->o;
    airllm_manifest m;
    if (airllm_manifest_load(o->out_dir, &m, err))
        return -1;
    uint64_t out = 0, src = 0;
    for (size_t u = 0; u < m.n_units; u++)
        out += m.units[u].size; /* 0 for a tied LM head: it has no file */
    for (size_t i = 0; i < m.n_sources; i++)
        src += m.sources[i].size;
    cJSON *j = cli_json_new("summary", "ok");
    cJSON_AddBoolToObject(j, "dry_run", false);
    cJSON_AddBoolToObject(j, "already_complete", already_complete);
    cJSON_AddStringToObject(j, "source_dir", o->hf_dir);
    cJSON_AddStringToObject(j, "out_dir", o->out_dir);
    cJSON_AddStringToObject(j, "family", m.model.family ? m.model.family : "");
    cJSON_AddNumberToObject(j, "units", (double)m.n_units);
    cJSON_AddNumberToObject(j, "tensors", (double)m.n_tensors);
    /* a rerun keeps every unit and reads nothing */
    cJSON_AddNumberToObject(j, "units_kept", already_complete ? (double)m.n_units
                                                              : (double)s->units_kept);
    cJSON_AddNumberToObject(j, "bytes_read", already_complete ? 0 : (double)s->bytes_read);
    cJSON_AddNumberToObject(j, "source_bytes", (double)src);
    cJSON_AddNumberToObject(j, "output_bytes", (double)out);
    cJSON_AddNumberToObject(j, "size_ratio", src ? (double)out / (double)src : 0);
    cJSON *opts = cJSON_Parse(m.options_json);
    cJSON *cmp = cJSON_GetObjectItemCaseSensitive(opts, "compress");
    cJSON_AddStringToObject(j, "compress", cJSON_IsString(cmp) ? cmp->valuestring : "none");
    cJSON_AddItemToObject(j, "options", opts ? opts : cJSON_CreateObject());
    cJSON_AddBoolToObject(j, "deleted_original", o->delete_original);
    if (o->quant)
        add_quant(o, &m, j);
    cJSON *tm = cJSON_AddObjectToObject(j, "timings");
    cJSON_AddNumberToObject(tm, "total_s", total_s);
    airllm_manifest_free(&m);
    cli_json_emit(j);
    return 0;
}
