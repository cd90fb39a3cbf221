/* The tensors of one decoder layer, by role, checked against the config:
 * the one place that knows each family's tensor names and shapes. The CPU
 * forward pass (rt_model.c) and the CUDA backend (cuda/rt_cuda.cu) both
 * bind a layer here and then only use the roles, so a new family is a new
 * case here plus whatever new operation it needs, written once per backend.
 *
 * Shapes, with H = hidden, Q = n_heads * head_dim, KV = n_kv_heads *
 * head_dim, I = intermediate, E = n_experts (rows x cols; 1-D as [1, n]):
 *   attn_norm, ffn_norm  [1, H]
 *   wq [Q, H]  wk [KV, H]  wv [KV, H]  wo [H, Q]
 *   bq [1, Q]  bk [1, KV]  bv [1, KV]       optional (Qwen2 has them)
 *   q_norm, k_norm [1, head_dim]            Qwen3 only
 *   gate [I, H]  up [I, H]  down [H, I]     dense MLP
 *   router [E, H], per expert w1 [I, H]  w3 [I, H]  w2 [H, I]   Mixtral */
#include "rt.h"

#include <stdio.h>

/* An optional bias: absent is fine, present must hold exactly n values. */
static int bind_bias(const rt_slot *sl, const char *suffix, uint64_t n, const rt_tensor **out,
                     airllm_err *err)
{
    const rt_tensor *b = rt_slot_find(sl, suffix);
    if (b && b->rows * b->cols != n)
        return airllm_errf(err, "%s: %llu elements, %llu expected", b->name,
                           (unsigned long long)(b->rows * b->cols), (unsigned long long)n);
    *out = b;
    return 0;
}

int rt_layer_bind(const rt_slot *sl, const char *unit, const rt_config *c, rt_layer *l,
                  airllm_err *err)
{
    uint64_t H = (uint64_t)c->hidden, hd = (uint64_t)c->head_dim;
    uint64_t Q = (uint64_t)c->n_heads * hd, KV = (uint64_t)c->n_kv_heads * hd;
    uint64_t I = (uint64_t)c->intermediate;
    *l = (rt_layer){0};
    /* In this order so that a broken unit reports the same first problem
     * as before the binder existed. */
    if (!(l->attn_norm = rt_slot_need(sl, unit, "input_layernorm.weight", 1, H, err)) ||
        !(l->ffn_norm = rt_slot_need(sl, unit, "post_attention_layernorm.weight", 1, H, err)) ||
        !(l->wq = rt_slot_need(sl, unit, "self_attn.q_proj.weight", Q, H, err)) ||
        !(l->wk = rt_slot_need(sl, unit, "self_attn.k_proj.weight", KV, H, err)) ||
        !(l->wv = rt_slot_need(sl, unit, "self_attn.v_proj.weight", KV, H, err)) ||
        !(l->wo = rt_slot_need(sl, unit, "self_attn.o_proj.weight", H, Q, err)))
        return -1;
    if (bind_bias(sl, "self_attn.q_proj.bias", Q, &l->bq, err) ||
        bind_bias(sl, "self_attn.k_proj.bias", KV, &l->bk, err) ||
        bind_bias(sl, "self_attn.v_proj.bias", KV, &l->bv, err))
        return -1;
    if (c->arch == RT_ARCH_QWEN3 &&
        (!(l->q_norm = rt_slot_need(sl, unit, "self_attn.q_norm.weight", 1, hd, err)) ||
         !(l->k_norm = rt_slot_need(sl, unit, "self_attn.k_norm.weight", 1, hd, err))))
        return -1;
    if (c->arch == RT_ARCH_MIXTRAL)
        return (l->router = rt_slot_need(sl, unit, "block_sparse_moe.gate.weight",
                                          (uint64_t)c->n_experts, H, err))
                   ? 0
                   : -1;
    if (!(l->gate = rt_slot_need(sl, unit, "mlp.gate_proj.weight", I, H, err)) ||
        !(l->up = rt_slot_need(sl, unit, "mlp.up_proj.weight", I, H, err)) ||
        !(l->down = rt_slot_need(sl, unit, "mlp.down_proj.weight", H, I, err)))
        return -1;
    return 0;
}

void rt_moe_expert_names(size_t e, char names[3][96])
{
    snprintf(names[0], 96, "block_sparse_moe.experts.%zu.w1.weight", e);
    snprintf(names[1], 96, "block_sparse_moe.experts.%zu.w3.weight", e);
    snprintf(names[2], 96, "block_sparse_moe.experts.%zu.w2.weight", e);
}

int rt_layer_expert(const rt_slot *sl, const char *unit, const rt_config *c, size_t e,
                    const rt_tensor *w[3], airllm_err *err)
{
    uint64_t H = (uint64_t)c->hidden, I = (uint64_t)c->intermediate;
    char nm[3][96];
    rt_moe_expert_names(e, nm);
    return (w[0] = rt_slot_need(sl, unit, nm[0], I, H, err)) &&
                   (w[1] = rt_slot_need(sl, unit, nm[1], I, H, err)) &&
                   (w[2] = rt_slot_need(sl, unit, nm[2], H, I, err))
               ? 0
               : -1;
}
