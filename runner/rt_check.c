/* The tensors the forward pass takes from each unit, with the shapes and
 * storage config.json gives them. airllm-run checks every unit header with
 * this when it opens a model, before anything is read or allocated from
 * those shapes; airllm-verify runs the same checks, so that a directory it
 * calls OK is one the runner accepts (the list lives here only: the
 * forward pass in rt_model.c asks for the same names, and its own checks at
 * run time stay as a second line). */
#include "rt.h"

#include <stdio.h>
#include <string.h>

typedef struct {
    const rt_config *c;
    const airllm_ct_header *h;
    airllm_err *err;
} checker;

/* The tensor whose name ends with ".suffix" (or is suffix), as rt_slot_find
 * finds it. */
static const airllm_ct_tensor *find(const airllm_ct_header *h, const char *suffix)
{
    size_t k = strlen(suffix);
    for (uint32_t i = 0; i < h->n_tensors; i++) {
        const char *n = h->tensors[i].name;
        size_t l = strlen(n);
        if (l >= k && strcmp(n + l - k, suffix) == 0 && (l == k || n[l - k - 1] == '.'))
            return &h->tensors[i];
    }
    return NULL;
}

/* The kernels widen F32, F16 and BF16 (or decode nf4/fp4/int8 codes);
 * anything else stored raw would be read with the wrong element size. */
static bool dtype_ok(const airllm_ct_tensor *t)
{
    if (airllm_encoding_is_quant(t->encoding))
        return true;
    return t->dtype == AIRLLM_DTYPE_F32 || t->dtype == AIRLLM_DTYPE_F16 ||
           t->dtype == AIRLLM_DTYPE_BF16;
}

/* rows x cols as slot_load views the tensor (trailing dimensions folded
 * into cols); rows 0 asks for a vector of cols elements in any shape. */
static int need(checker *k, const char *suffix, uint64_t rows, uint64_t cols, bool optional)
{
    const airllm_ct_tensor *t = find(k->h, suffix);
    if (!t) {
        if (optional)
            return 0;
        return airllm_errf(k->err, "no tensor \"*.%s\", which the %s forward pass needs",
                           suffix, k->c->model_type);
    }
    if (!dtype_ok(t))
        return airllm_errf(k->err, "tensor \"%s\" is %s %s: airllm-run computes with F32, F16, "
                                   "BF16, nf4, fp4 or int8",
                           t->name, airllm_dtype_name(t->dtype),
                           airllm_encoding_name(t->encoding));
    uint64_t r = t->ndim >= 2 ? t->shape[0] : 1;
    uint64_t c = t->ndim >= 2 ? t->shape[1] : (t->ndim == 1 ? t->shape[0] : 1);
    for (unsigned d = 2; d < t->ndim; d++)
        c *= t->shape[d]; /* the container bounds the element count */
    bool ok = rows ? r == rows && c == cols : r * c == cols;
    if (!ok) {
        if (rows)
            return airllm_errf(k->err, "tensor \"%s\" is [%llu, %llu], config.json makes it "
                                       "[%llu, %llu]",
                               t->name, (unsigned long long)r, (unsigned long long)c,
                               (unsigned long long)rows, (unsigned long long)cols);
        return airllm_errf(k->err, "tensor \"%s\" has %llu elements, config.json makes it %llu",
                           t->name, (unsigned long long)(r * c), (unsigned long long)cols);
    }
    return 0;
}

/* Here rather than in rt_model.c, its user: airllm-verify links this file
 * without the forward pass. */
void rt_moe_expert_names(size_t e, char names[3][96])
{
    snprintf(names[0], 96, "block_sparse_moe.experts.%zu.w1.weight", e);
    snprintf(names[1], 96, "block_sparse_moe.experts.%zu.w3.weight", e);
    snprintf(names[2], 96, "block_sparse_moe.experts.%zu.w2.weight", e);
}

static int check_layer(checker *k)
{
    const rt_config *c = k->c;
    uint64_t H = (uint64_t)c->hidden, hd = (uint64_t)c->head_dim, I = (uint64_t)c->intermediate;
    uint64_t Q = (uint64_t)c->n_heads * hd, KV = (uint64_t)c->n_kv_heads * hd;
    if (need(k, "input_layernorm.weight", 0, H, false) ||
        need(k, "post_attention_layernorm.weight", 0, H, false) ||
        need(k, "self_attn.q_proj.weight", Q, H, false) ||
        need(k, "self_attn.k_proj.weight", KV, H, false) ||
        need(k, "self_attn.v_proj.weight", KV, H, false) ||
        need(k, "self_attn.o_proj.weight", H, Q, false) ||
        need(k, "self_attn.q_proj.bias", 0, Q, true) ||
        need(k, "self_attn.k_proj.bias", 0, KV, true) ||
        need(k, "self_attn.v_proj.bias", 0, KV, true))
        return -1;
    if (c->arch == RT_ARCH_QWEN3 && (need(k, "self_attn.q_norm.weight", 0, hd, false) ||
                                     need(k, "self_attn.k_norm.weight", 0, hd, false)))
        return -1;
    if (c->arch != RT_ARCH_MIXTRAL)
        return need(k, "mlp.gate_proj.weight", I, H, false) ||
                       need(k, "mlp.up_proj.weight", I, H, false) ||
                       need(k, "mlp.down_proj.weight", H, I, false)
                   ? -1
                   : 0;
    if (need(k, "block_sparse_moe.gate.weight", (uint64_t)c->n_experts, H, false))
        return -1;
    for (size_t e = 0; e < (size_t)c->n_experts; e++) {
        char nm[3][96];
        rt_moe_expert_names(e, nm);
        if (need(k, nm[0], I, H, false) || need(k, nm[1], I, H, false) ||
            need(k, nm[2], H, I, false))
            return -1;
    }
    return 0;
}

int rt_check_unit(const rt_config *c, const airllm_ct_header *h, const char *tied_to,
                  airllm_err *err)
{
    checker k = {c, h, err};
    uint64_t H = (uint64_t)c->hidden, V = (uint64_t)c->vocab;
    switch (h->unit_kind) {
    case AIRLLM_UNIT_LAYER: return check_layer(&k);
    case AIRLLM_UNIT_NORM: return need(&k, "norm.weight", 0, H, false);
    case AIRLLM_UNIT_LM_HEAD: return need(&k, "lm_head.weight", V, H, false);
    case AIRLLM_UNIT_EMBED:
        if (need(&k, "embed_tokens.weight", V, H, false))
            return -1;
        /* A tied head multiplies by the embedding matrix: the manifest
         * must say so, not name another tensor (a norm weight, say). */
        if (tied_to && strcmp(find(h, "embed_tokens.weight")->name, tied_to) != 0)
            return airllm_errf(err, "the LM head is tied to \"%s\", not to the embedding "
                                    "matrix \"%s\" that airllm-run multiplies by",
                               tied_to, find(h, "embed_tokens.weight")->name);
        return 0;
    default: return 0;
    }
}
