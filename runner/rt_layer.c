/* The tensors of one decoder layer, by role, checked against the config:
 * the one place that knows each family's tensor names and shapes. Two users
 * walk the same table (rt_layer_roles): rt_check.c checks every unit header
 * against it when a model is opened (and airllm-verify does the same), and
 * rt_layer_bind binds a loaded slot's tensors to an rt_layer, from which
 * the CPU forward pass (rt_model.c) and the CUDA backend (cuda/rt_cuda.cu)
 * compute. A new family is new rows here plus whatever new operation it
 * needs, written once per backend.
 *
 * Shapes, with H = hidden, Q = n_heads * head_dim, KV = n_kv_heads *
 * head_dim, I = intermediate, E = n_experts (rows x cols; 1-D as [1, n]):
 *   attn_norm, ffn_norm  [1, H]
 *   wq [Q, H]  wk [KV, H]  wv [KV, H]  wo [H, Q]
 *   bq [Q]  bk [KV]  bv [KV]                optional (Qwen2 has them), any shape
 *   q_norm, k_norm [1, head_dim]            Qwen3 only
 *   gate [I, H]  up [I, H]  down [H, I]     dense MLP
 *   router [E, H], per expert w1 [I, H]  w3 [I, H]  w2 [H, I]   Mixtral
 *   wqkv [Q + 2 KV, H], bqkv [Q + 2 KV] (optional)   ChatGLM, Baichuan,
 *                                           Qwen v1, InternLM2
 *   gate_up [2 I, H]                        ChatGLM
 *   bo [H] (optional)                       InternLM2
 * (Qwen v1 and InternLM2 names: rt_family_a.c) */
#include "rt.h"

#include <stddef.h>
#include <stdio.h>

#define ROLE(field, suffix, rows, cols, optional) \
    (rt_role) { suffix, rows, cols, optional, offsetof(rt_layer, field) }

/* ChatGLM2/3 (transformer.encoder.layers.N.*): query_key_value rows are
 * all Q heads, then K and V for the G groups; its bias is there with
 * add_qkv_bias (chatglm3-6b). dense_h_to_4h rows are gate | up. */
static size_t roles_chatglm(const rt_config *c, rt_role *out)
{
    uint64_t H = (uint64_t)c->hidden, hd = (uint64_t)c->head_dim;
    uint64_t QKV = ((uint64_t)c->n_heads + 2 * (uint64_t)c->n_kv_heads) * hd;
    uint64_t I = (uint64_t)c->intermediate;
    size_t n = 0;
    out[n++] = ROLE(attn_norm, "input_layernorm.weight", 1, H, false);
    out[n++] = ROLE(ffn_norm, "post_attention_layernorm.weight", 1, H, false);
    out[n++] = ROLE(wqkv, "self_attention.query_key_value.weight", QKV, H, false);
    out[n++] = ROLE(bqkv, "self_attention.query_key_value.bias", 0, QKV, true);
    out[n++] = ROLE(wo, "self_attention.dense.weight", H, (uint64_t)c->n_heads * hd, false);
    out[n++] = ROLE(gate_up, "mlp.dense_h_to_4h.weight", 2 * I, H, false);
    out[n++] = ROLE(down, "mlp.dense_4h_to_h.weight", H, I, false);
    return n;
}

/* Baichuan 1/2 (model.layers.N.*): W_pack rows q | k | v, H rows each. */
static size_t roles_baichuan(const rt_config *c, rt_role *out)
{
    uint64_t H = (uint64_t)c->hidden, I = (uint64_t)c->intermediate;
    size_t n = 0;
    out[n++] = ROLE(attn_norm, "input_layernorm.weight", 1, H, false);
    out[n++] = ROLE(ffn_norm, "post_attention_layernorm.weight", 1, H, false);
    out[n++] = ROLE(wqkv, "self_attn.W_pack.weight", 3 * H, H, false);
    out[n++] = ROLE(wo, "self_attn.o_proj.weight", H, H, false);
    out[n++] = ROLE(gate, "mlp.gate_proj.weight", I, H, false);
    out[n++] = ROLE(up, "mlp.up_proj.weight", I, H, false);
    out[n++] = ROLE(down, "mlp.down_proj.weight", H, I, false);
    return n;
}

size_t rt_layer_roles(const rt_config *c, rt_role out[RT_LAYER_ROLES_MAX])
{
    uint64_t H = (uint64_t)c->hidden, hd = (uint64_t)c->head_dim;
    uint64_t Q = (uint64_t)c->n_heads * hd, KV = (uint64_t)c->n_kv_heads * hd;
    uint64_t I = (uint64_t)c->intermediate;
    size_t n = 0;
    if (c->arch == RT_ARCH_CHATGLM)
        return roles_chatglm(c, out);
    if (c->arch == RT_ARCH_BAICHUAN)
        return roles_baichuan(c, out);
    if (c->arch == RT_ARCH_QWEN || c->arch == RT_ARCH_INTERNLM2)
        return rt_roles_family_a(c, out); /* fused q/k/v: rt_family_a.c */
    /* In this order so that a broken unit reports the same first problem
     * as before the binder existed. */
    out[n++] = ROLE(attn_norm, "input_layernorm.weight", 1, H, false);
    out[n++] = ROLE(ffn_norm, "post_attention_layernorm.weight", 1, H, false);
    out[n++] = ROLE(wq, "self_attn.q_proj.weight", Q, H, false);
    out[n++] = ROLE(wk, "self_attn.k_proj.weight", KV, H, false);
    out[n++] = ROLE(wv, "self_attn.v_proj.weight", KV, H, false);
    out[n++] = ROLE(wo, "self_attn.o_proj.weight", H, Q, false);
    out[n++] = ROLE(bq, "self_attn.q_proj.bias", 0, Q, true);
    out[n++] = ROLE(bk, "self_attn.k_proj.bias", 0, KV, true);
    out[n++] = ROLE(bv, "self_attn.v_proj.bias", 0, KV, true);
    if (c->arch == RT_ARCH_INTERNLM) /* config "bias": q/k/v and o */
        out[n++] = ROLE(bo, "self_attn.o_proj.bias", 0, H, true);
    if (c->arch == RT_ARCH_QWEN3) {
        out[n++] = ROLE(q_norm, "self_attn.q_norm.weight", 1, hd, false);
        out[n++] = ROLE(k_norm, "self_attn.k_norm.weight", 1, hd, false);
    }
    if (c->arch == RT_ARCH_MIXTRAL) {
        out[n++] = ROLE(router, "block_sparse_moe.gate.weight", (uint64_t)c->n_experts, H, false);
    } else {
        out[n++] = ROLE(gate, "mlp.gate_proj.weight", I, H, false);
        out[n++] = ROLE(up, "mlp.up_proj.weight", I, H, false);
        out[n++] = ROLE(down, "mlp.down_proj.weight", H, I, false);
    }
    return n;
}

void rt_moe_expert_names(size_t e, char names[3][96])
{
    snprintf(names[0], 96, "block_sparse_moe.experts.%zu.w1.weight", e);
    snprintf(names[1], 96, "block_sparse_moe.experts.%zu.w3.weight", e);
    snprintf(names[2], 96, "block_sparse_moe.experts.%zu.w2.weight", e);
}

void rt_expert_shapes(const rt_config *c, uint64_t rows[3], uint64_t cols[3])
{
    uint64_t H = (uint64_t)c->hidden, I = (uint64_t)c->intermediate;
    rows[0] = rows[1] = I, cols[0] = cols[1] = H; /* w1 (gate), w3 (up) */
    rows[2] = H, cols[2] = I;                     /* w2 (down) */
}

/* A slot's tensor for one role: required ones through rt_slot_need (its
 * messages); a vector role (rows 0) needs exactly cols values in any shape. */
static int bind_role(const rt_slot *sl, const char *unit, const rt_role *r, const rt_tensor **out,
                     airllm_err *err)
{
    if (r->rows) {
        *out = r->optional && !rt_slot_find(sl, r->suffix)
                   ? NULL
                   : rt_slot_need(sl, unit, r->suffix, r->rows, r->cols, err);
        return *out || r->optional ? 0 : -1;
    }
    const rt_tensor *t = rt_slot_find(sl, r->suffix);
    if (!t && !r->optional)
        return airllm_errf(err, "%s: no tensor \"*.%s\"", unit, r->suffix);
    if (t && t->rows * t->cols != r->cols)
        return airllm_errf(err, "%s: %llu elements, %llu expected", t->name,
                           (unsigned long long)(t->rows * t->cols), (unsigned long long)r->cols);
    *out = t;
    return 0;
}

int rt_layer_bind(const rt_slot *sl, const char *unit, const rt_config *c, rt_layer *l,
                  airllm_err *err)
{
    rt_role roles[RT_LAYER_ROLES_MAX];
    size_t n = rt_layer_roles(c, roles);
    *l = (rt_layer){0};
    for (size_t i = 0; i < n; i++)
        if (bind_role(sl, unit, &roles[i],
                      (const rt_tensor **)((char *)l + roles[i].field), err))
            return -1;
    return 0;
}

int rt_layer_expert(const rt_slot *sl, const char *unit, const rt_config *c, size_t e,
                    const rt_tensor *w[3], airllm_err *err)
{
    char nm[3][96];
    uint64_t rows[3], cols[3];
    rt_moe_expert_names(e, nm);
    rt_expert_shapes(c, rows, cols);
    for (int i = 0; i < 3; i++)
        if (!(w[i] = rt_slot_need(sl, unit, nm[i], rows[i], cols[i], err)))
            return -1;
    return 0;
}
