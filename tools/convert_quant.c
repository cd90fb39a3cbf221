/* airllm-quant: which tensors are quantized (plan_quant), the frames of a
 * converted input's zstd tensors decoded into the quantizing encoder
 * (lib/airllm_encode.c), and the error summary. */
#include "convert.h"

static size_t elem_size(airllm_dtype dt)
{
    return airllm_dtype_bits(dt) / 8;
}

/* Converted input: a zstd tensor's frames were collected in w->z; decode
 * them one chunk at a time into the quantizer. */
int quant_feed_frames(split_ctx *s, unit_writer *w, const airllm_ct_tensor *ct,
                      const airllm_ct_tensor *src, airllm_err *err)
{
    size_t cap = src->enc_param[1];
    uint8_t *chunk = malloc(cap), *scratch = malloc(cap);
    int rc = chunk && scratch ? 0 : airllm_errf(err, "out of memory");
    airllm_zstd_frames it;
    airllm_zstd_frames_init(&it, w->z, w->zlen, src->enc_param[0]);
    size_t produced;
    while (!rc) {
        int more = airllm_zstd_frames_next(&it, chunk, cap, &produced, scratch, err);
        if (more < 0)
            rc = airllm_err_prefix(err, "%s: tensor \"%s\"", s->ck.dir, ct->name);
        if (more <= 0)
            break;
        for (size_t off = 0; !rc && off < produced; off += s->buf_size)
            rc = airllm_enc_feed(w->enc, chunk + off,
                                 produced - off < s->buf_size ? produced - off : s->buf_size, err);
    }
    if (!rc && it.produced != ct->raw_len)
        rc = airllm_errf(err, "%s: tensor \"%s\": frames decode to %llu bytes, %llu expected",
                         s->ck.dir, ct->name, (unsigned long long)it.produced,
                         (unsigned long long)ct->raw_len);
    free(chunk);
    free(scratch);
    return rc;
}

/* Router weights of mixture-of-experts layers: small, and their errors
 * change which experts run, so they stay exact. */
static bool is_router(const char *name)
{
    static const char *const suffixes[] = {".block_sparse_moe.gate.weight", ".mlp.gate.weight",
                                           ".shared_expert_gate.weight", ".router.weight",
                                           ".moe.gate.weight"};
    size_t n = strlen(name);
    for (size_t i = 0; i < sizeof suffixes / sizeof *suffixes; i++) {
        size_t k = strlen(suffixes[i]);
        if (n >= k && strcmp(name + n - k, suffixes[i]) == 0)
            return true;
    }
    return false;
}

/* Which tensors airllm-quant quantizes: 2-D float ".weight" matrices of
 * decoder layers (attention, MLP, experts) but not routers; the embeddings
 * and the LM head only when --include names them. Norms and biases are
 * 1-D and stay as they are. */
int plan_quant(split_ctx *s, airllm_err *err)
{
    const airllm_ckpt *c = &s->ck;
    s->quantize = calloc(c->n_tensors + 1, sizeof *s->quantize);
    s->qstats = calloc(c->n_tensors + 1, sizeof *s->qstats);
    if (!s->quantize || !s->qstats)
        return airllm_errf(err, "out of memory");
    for (size_t t = 0; t < c->n_tensors; t++) {
        const airllm_st_tensor *st = airllm_ckpt_st(c, t);
        const airllm_ct_tensor *src = airllm_ckpt_ct(c, t);
        if (src && airllm_encoding_is_quant(src->encoding))
            return airllm_errf(err, "%s/%s: tensor \"%s\" is already quantized (%s); "
                                    "quantize from the checkpoint or an unquantized directory",
                               c->dir, c->sources[c->tensors[t].source].file, st->name,
                               airllm_encoding_name(src->encoding));
        s->qstats[t].rmse = -1; /* not known yet (resume: from the journal) */
        size_t nl = strlen(st->name);
        bool is_float = st->dtype == AIRLLM_DTYPE_F32 || st->dtype == AIRLLM_DTYPE_F16 ||
                        st->dtype == AIRLLM_DTYPE_BF16;
        if (!is_float || st->ndim != 2 || st->shape[0] == 0 || st->shape[1] == 0 || nl < 7 ||
            strcmp(st->name + nl - 7, ".weight") != 0)
            continue;
        switch (c->units[c->tensors[t].unit].kind) {
        case AIRLLM_UNIT_LAYER: s->quantize[t] = is_router(st->name) ? 0 : s->o.qtype; break;
        case AIRLLM_UNIT_EMBED:
            if (s->o.inc_embed)
                s->quantize[t] = s->o.embed_qtype ? s->o.embed_qtype : s->o.qtype;
            break;
        case AIRLLM_UNIT_LM_HEAD:
            if (s->o.inc_lm_head)
                s->quantize[t] = s->o.lm_head_qtype ? s->o.lm_head_qtype : s->o.qtype;
            break;
        default: break;
        }
    }
    if (s->o.inc_lm_head && !s->o.inc_embed && c->tied_to)
        cli_info("note: the LM head is tied to the embeddings; add --include embed to "
                 "quantize it");
    return 0;
}

void quant_part_types_json(const split_opts *o, cJSON *q)
{
    if (o->inc_embed && o->embed_qtype)
        cJSON_AddStringToObject(q, "embed_type", airllm_quant_type_name(o->embed_qtype));
    if (o->inc_lm_head && o->lm_head_qtype)
        cJSON_AddStringToObject(q, "lm_head_type", airllm_quant_type_name(o->lm_head_qtype));
}

/* Size and bits per weight of what was quantized, and the error table. */
void quant_summary(const split_ctx *s, cJSON *j)
{
    const airllm_ckpt *c = &s->ck;
    uint64_t nq = 0, elems = 0, qstored = 0, qsrc = 0;
    double worst_rel = 0;
    for (size_t t = 0; t < c->n_tensors; t++) {
        if (!airllm_encoding_is_quant(s->encoding[t]))
            continue;
        /* quantized tensors are F32, F16 or BF16: whole bytes per element */
        uint64_t n = airllm_ckpt_raw_len(c, t) / elem_size(airllm_ckpt_st(c, t)->dtype);
        nq++;
        elems += n;
        qstored += s->stored_len[t];
        qsrc += airllm_ckpt_raw_len(c, t);
        if (s->qstats[t].rel_fro > worst_rel)
            worst_rel = s->qstats[t].rel_fro;
    }
    double bpw = elems ? 8.0 * (double)qstored / (double)elems : 0;
    if (j) {
        cJSON *q = cJSON_AddObjectToObject(j, "quant");
        cJSON_AddStringToObject(q, "type", airllm_quant_type_name(s->o.qtype));
        quant_part_types_json(&s->o, q);
        cJSON_AddNumberToObject(q, "block_size", s->o.block);
        cJSON_AddBoolToObject(q, "double_quant", s->o.double_quant);
        cJSON_AddNumberToObject(q, "tensors", (double)nq);
        cJSON_AddNumberToObject(q, "weights", (double)elems);
        cJSON_AddNumberToObject(q, "bits_per_weight", bpw);
        cJSON_AddNumberToObject(q, "source_bytes", (double)qsrc);
        cJSON_AddNumberToObject(q, "stored_bytes", (double)qstored);
        cJSON_AddNumberToObject(q, "worst_rel_frobenius_error", worst_rel);
        return;
    }
    char a[32], b[32], parts[64] = "";
    if (s->o.inc_embed && s->o.embed_qtype)
        snprintf(parts, sizeof parts, " (embed %s)", airllm_quant_type_name(s->o.embed_qtype));
    if (s->o.inc_lm_head && s->o.lm_head_qtype)
        snprintf(parts + strlen(parts), sizeof parts - strlen(parts), " (lm_head %s)",
                 airllm_quant_type_name(s->o.lm_head_qtype));
    cli_info("quantized %llu tensors (%llu weights) to %s%s, block %u%s: %.3f bits per weight, "
             "%s -> %s; worst relative Frobenius error %.4g",
             (unsigned long long)nq, (unsigned long long)elems,
             airllm_quant_type_name(s->o.qtype), parts, s->o.block,
             s->o.double_quant ? ", double quant" : "", bpw, cli_human_size(qsrc, a),
             cli_human_size(qstored, b), worst_rel);
}

void quant_report(const split_ctx *s)
{
    const airllm_ckpt *c = &s->ck;
    printf("%-56s %-6s %12s %12s %12s %8s\n", "tensor", "type", "rmse", "max_abs",
           "rel_fro", "bits/w");
    for (size_t u = 0; u < c->n_units; u++)
        for (size_t i = 0; i < c->units[u].n_tensors; i++) {
            size_t t = c->units[u].tensors[i];
            if (!airllm_encoding_is_quant(s->encoding[t]))
                continue;
            const airllm_st_tensor *st = airllm_ckpt_st(c, t);
            uint64_t n = airllm_ckpt_raw_len(c, t) / elem_size(st->dtype);
            char *name = cli_escape(st->name); /* a name from the checkpoint */
            printf("%-56s %-6s %12.5g %12.5g %12.5g %8.3f\n", name ? name : "?",
                   airllm_encoding_name(s->encoding[t]), s->qstats[t].rmse,
                   s->qstats[t].max_abs, s->qstats[t].rel_fro,
                   n ? 8.0 * (double)s->stored_len[t] / (double)n : 0.0);
            free(name);
        }
}
