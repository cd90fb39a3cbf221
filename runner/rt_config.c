/* config.json of a converted directory: the hyperparameters the forward
 * pass needs. Both spellings transformers writes are read: rope_theta and
 * rope_scaling at the top level (most Hub checkpoints) or inside
 * rope_parameters (transformers 5). Anything this runner cannot run
 * faithfully (another architecture, another RoPE scaling, Qwen's
 * layer-dependent sliding window) is refused by name. */
#include "rt.h"

#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "airllm_io.h"
#include "airllm_json.h"

static const cJSON *item(const cJSON *o, const char *k)
{
    return cJSON_GetObjectItemCaseSensitive(o, k);
}

/* An integer key in [lo, hi]; missing: def (or an error when def < lo). */
static int get_int(const cJSON *o, const char *k, long def, long lo, long hi, const char *path,
                   long *out, airllm_err *err)
{
    const cJSON *v = item(o, k);
    if (!v || cJSON_IsNull(v)) {
        if (def < lo)
            return airllm_errf(err, "%s: \"%s\" is missing", path, k);
        *out = def;
        return 0;
    }
    if (!cJSON_IsNumber(v) || v->valuedouble != floor(v->valuedouble) || v->valuedouble < lo ||
        v->valuedouble > hi)
        return airllm_errf(err, "%s: \"%s\" must be an integer in [%ld, %ld]", path, k, lo, hi);
    *out = (long)v->valuedouble;
    return 0;
}

static int get_num(const cJSON *o, const char *k, double def, const char *path, double *out,
                   airllm_err *err)
{
    const cJSON *v = item(o, k);
    if (!v || cJSON_IsNull(v)) {
        *out = def;
        return 0;
    }
    if (!cJSON_IsNumber(v) || !isfinite(v->valuedouble))
        return airllm_errf(err, "%s: \"%s\" must be a number", path, k);
    *out = v->valuedouble;
    return 0;
}

/* InternLM2's rope_scaling {"type": "dynamic" | "linear", "factor": f}
 * (modeling_internlm2.py _init_rope; rt_rope_token computes them); also
 * InternLM v1's 2024 spelling of "dynamic" (parse_rotary_internlm). */
static int parse_rope_internlm2(const cJSON *sc, const char *t, const char *path, rt_config *c,
                                airllm_err *err)
{
    if (get_num(sc, "factor", NAN, path, &c->rope_scale, err))
        return -1;
    if (!(c->rope_scale >= 1) || c->rope_scale > 1e6)
        return airllm_errf(err, "%s: rope_scaling \"%s\" needs a factor in [1, 1e6]", path, t);
    c->rope_kind = strcmp(t, "dynamic") == 0 ? RT_ROPE_DYNAMIC : RT_ROPE_LINEAR;
    return 0;
}

static int parse_rope(const cJSON *cfg, const char *path, rt_config *c, airllm_err *err)
{
    const cJSON *params = item(cfg, "rope_parameters");
    if (params && !cJSON_IsObject(params))
        params = NULL;
    double theta = NAN;
    if (get_num(cfg, "rope_theta", NAN, path, &theta, err))
        return -1;
    if (isnan(theta) && params && get_num(params, "rope_theta", NAN, path, &theta, err))
        return -1;
    c->rope_theta = isnan(theta) ? 10000.0 : theta;
    if (!(c->rope_theta > 1))
        return airllm_errf(err, "%s: rope_theta %g must be above 1", path, c->rope_theta);
    const cJSON *sc = item(cfg, "rope_scaling");
    if (!cJSON_IsObject(sc))
        sc = params;
    if (!sc)
        return 0;
    const cJSON *type = item(sc, "rope_type");
    if (!cJSON_IsString(type))
        type = item(sc, "type");
    const char *t = cJSON_IsString(type) ? type->valuestring : "default";
    if (strcmp(t, "default") == 0)
        return 0;
    if (c->arch == RT_ARCH_INTERNLM2 && (strcmp(t, "dynamic") == 0 || strcmp(t, "linear") == 0))
        return parse_rope_internlm2(sc, t, path, c, err);
    if (c->arch == RT_ARCH_INTERNLM && strcmp(t, "dynamic") == 0)
        return parse_rope_internlm2(sc, t, path, c, err);
    if (strcmp(t, "llama3") != 0) {
        airllm_errf(err, "%s: rope scaling type \"%s\" is not supported (default and llama3 "
                         "are)",
                    path, t);
        return RT_CONFIG_UNSUPPORTED;
    }
    c->rope_llama3 = true;
    if (get_num(sc, "factor", NAN, path, &c->rope_factor, err) ||
        get_num(sc, "low_freq_factor", NAN, path, &c->rope_low_freq, err) ||
        get_num(sc, "high_freq_factor", NAN, path, &c->rope_high_freq, err) ||
        get_num(sc, "original_max_position_embeddings", NAN, path, &c->rope_orig_max, err))
        return -1;
    if (!(c->rope_factor > 0) || !(c->rope_low_freq > 0) ||
        !(c->rope_high_freq > c->rope_low_freq) || !(c->rope_orig_max > 0))
        return airllm_errf(err, "%s: llama3 rope_scaling needs factor, low_freq_factor < "
                                "high_freq_factor and original_max_position_embeddings, all "
                                "positive",
                           path);
    return 0;
}

/* eos_token_id: an integer or a list of them. */
static int parse_eos(const cJSON *cfg, const char *path, rt_config *c, airllm_err *err)
{
    const cJSON *v = item(cfg, "eos_token_id");
    c->n_eos = 0;
    c->eos_id = -1;
    if (!v || cJSON_IsNull(v))
        return 0;
    const cJSON *e;
    double ids[8];
    if (cJSON_IsNumber(v)) {
        ids[c->n_eos++] = v->valuedouble;
    } else if (cJSON_IsArray(v)) {
        cJSON_ArrayForEach(e, v)
        {
            if (!cJSON_IsNumber(e) || c->n_eos == 8)
                return airllm_errf(err, "%s: \"eos_token_id\" must hold at most 8 integers",
                                   path);
            ids[c->n_eos++] = e->valuedouble;
        }
    } else {
        return airllm_errf(err, "%s: \"eos_token_id\" must be an integer or a list", path);
    }
    /* Range-checked as doubles: converting 1e30 (or a NaN) to int32_t is
     * undefined behaviour, not a large id. */
    for (int i = 0; i < c->n_eos; i++) {
        if (!(ids[i] >= 0 && ids[i] < c->vocab) || ids[i] != floor(ids[i]))
            return airllm_errf(err, "%s: eos_token_id %g is not a token id of the "
                                    "vocabulary (0..%d)",
                               path, ids[i], c->vocab - 1);
        c->eos_ids[i] = (int32_t)ids[i];
    }
    c->eos_id = c->n_eos ? c->eos_ids[0] : -1;
    return 0;
}

int rt_config_load(const char *dir, rt_config *c, airllm_err *err)
{
    memset(c, 0, sizeof *c);
    char path[4096];
    if (airllm_path_join(path, sizeof path, dir, "config.json", err))
        return -1;
    char *text;
    size_t len;
    if (airllm_read_small_file(path, 16u << 20, &text, &len, err))
        return -1;
    int rc = rt_config_parse(text, len, path, c, err);
    free(text);
    return rc;
}

/* The activation of the MLP: SwiGLU is all the forward pass computes, so a
 * config that asks for another (gelu, relu, ...) must not silently run
 * SiLU. transformers' ACT2FN maps both "silu" and "swish" to SiLU. */
static int check_act(const cJSON *cfg, const char *path, airllm_err *err)
{
    static const char *const keys[] = {"hidden_act", "hidden_activation"};
    for (size_t i = 0; i < 2; i++) {
        const cJSON *v = item(cfg, keys[i]);
        if (!v || cJSON_IsNull(v))
            continue;
        if (!cJSON_IsString(v))
            return airllm_errf(err, "%s: \"%s\" must be a string", path, keys[i]);
        if (strcmp(v->valuestring, "silu") != 0 && strcmp(v->valuestring, "swish") != 0) {
            airllm_errf(err, "%s: %s \"%s\" is not supported by airllm-run (silu is)", path,
                        keys[i], v->valuestring);
            return RT_CONFIG_UNSUPPORTED;
        }
    }
    return 0;
}

/* ---- ChatGLM2/3 (model_type chatglm; modeling_chatglm.py) ----
 * Its own key names: num_layers, padded_vocab_size, ffn_hidden_size,
 * kv_channels (head_dim), multi_query_group_num (KV heads),
 * layernorm_epsilon, seq_length (the RoPE table's length: positions past it
 * have no angle). RoPE rotates the first kv_channels / 2 dims of each head
 * in adjacent pairs, base 10000 * rope_ratio (rope_ratio: the 32k/128k
 * variants and GLM-4; 1 when absent). The variants the modeling code allows
 * but no released checkpoint uses are refused by name rather than run
 * wrong: LayerNorm (rmsnorm false), biases on dense / dense_h_to_4h
 * (add_bias_linear), no final norm (post_layer_norm false), residual after
 * the norm, multi_query_attention false (its qkv rows interleave per
 * head), and original_rope false (GLM-4's code then takes another RoPE
 * path; every released config has it true). */
static int chatglm_flag(const cJSON *cfg, const char *k, bool def, bool want, const char *path,
                        airllm_err *err)
{
    const cJSON *v = item(cfg, k);
    bool b = v && !cJSON_IsNull(v) ? cJSON_IsTrue(v) : def;
    if (v && !cJSON_IsNull(v) && !cJSON_IsBool(v))
        return airllm_errf(err, "%s: \"%s\" must be true or false", path, k);
    if (b != want) {
        airllm_errf(err, "%s: chatglm with %s %s is not supported by airllm-run", path, k,
                    b ? "true" : "false");
        return RT_CONFIG_UNSUPPORTED;
    }
    return 0;
}

static bool family_a(const rt_config *c)
{
    return c->arch == RT_ARCH_QWEN || c->arch == RT_ARCH_INTERNLM2 || c->arch == RT_ARCH_INTERNLM;
}

/* The families whose modeling code has its own LM head (no tie by default). */
static bool untied_family(const rt_config *c)
{
    return family_a(c) || c->arch == RT_ARCH_CHATGLM || c->arch == RT_ARCH_BAICHUAN;
}

/* InternLM v1's RoPE. The 2023 modeling code (internlm-7b, internlm-chat-7b)
 * reads "rotary": {"base", "type": "origin" | "dynamic", "scaling_factor"},
 * whose class default is {"base": 10000, "type": "dynamic"}; the 2024 code
 * reads rope_theta and rope_scaling {"type": "dynamic", "factor"} like
 * Llama. "rotary" decides when present; else either of the latter keys
 * means the 2024 way (parse_rope has read them); else the 2023 default. */
static int parse_rotary_internlm(const cJSON *cfg, const char *path, rt_config *c,
                                 airllm_err *err)
{
    const cJSON *r = item(cfg, "rotary");
    if (!r && (item(cfg, "rope_theta") || item(cfg, "rope_scaling"))) {
        if (c->rope_kind == RT_ROPE_DYNAMIC)
            c->rope_kind = RT_ROPE_DYNAMIC_V1;
        return 0;
    }
    const char *type = "dynamic";
    c->rope_kind = RT_ROPE_PLAIN, c->rope_llama3 = false; /* "rotary" alone decides */
    c->rope_theta = 10000;
    c->rope_scale = 1;
    if (r && !cJSON_IsNull(r)) {
        if (!cJSON_IsObject(r))
            return airllm_errf(err, "%s: \"rotary\" must be an object", path);
        const cJSON *t = item(r, "type");
        if (t && !cJSON_IsString(t))
            return airllm_errf(err, "%s: rotary \"type\" must be a string", path);
        type = t ? t->valuestring : "dynamic";
        if (get_num(r, "base", 10000, path, &c->rope_theta, err) ||
            get_num(r, "scaling_factor", 1.0, path, &c->rope_scale, err))
            return -1;
    }
    if (!(c->rope_theta > 1) || !(c->rope_scale >= 1) || c->rope_scale > 1e6)
        return airllm_errf(err, "%s: rotary needs a base above 1 and a scaling_factor in [1, 1e6]",
                           path);
    if (strcmp(type, "dynamic") == 0) {
        c->rope_kind = RT_ROPE_DYNAMIC_V1;
    } else if (strcmp(type, "origin") != 0) {
        airllm_errf(err, "%s: rotary type \"%s\" is not supported (origin and dynamic are)", path,
                    type);
        return RT_CONFIG_UNSUPPORTED;
    }
    return 0;
}

static int parse_chatglm(const cJSON *cfg, const char *path, rt_config *c, airllm_err *err)
{
    int rc;
    if ((rc = chatglm_flag(cfg, "rmsnorm", true, true, path, err)) ||
        (rc = chatglm_flag(cfg, "add_bias_linear", false, false, path, err)) ||
        (rc = chatglm_flag(cfg, "post_layer_norm", true, true, path, err)) ||
        (rc = chatglm_flag(cfg, "apply_residual_connection_post_layernorm", false, false, path,
                           err)) ||
        (rc = chatglm_flag(cfg, "multi_query_attention", false, true, path, err)) ||
        (rc = chatglm_flag(cfg, "original_rope", true, true, path, err)))
        return rc;
    long v;
    if (get_int(cfg, "hidden_size", -1, 1, 1 << 20, path, &v, err))
        return -1;
    c->hidden = (int)v;
    if (get_int(cfg, "ffn_hidden_size", -1, 1, 1 << 22, path, &v, err))
        return -1;
    c->intermediate = (int)v;
    if (get_int(cfg, "num_layers", -1, 1, 100000, path, &v, err))
        return -1;
    c->n_layers = (int)v;
    if (get_int(cfg, "num_attention_heads", -1, 1, 1 << 16, path, &v, err))
        return -1;
    c->n_heads = (int)v;
    if (get_int(cfg, "multi_query_group_num", -1, 1, c->n_heads, path, &v, err))
        return -1;
    c->n_kv_heads = (int)v;
    if (c->n_heads % c->n_kv_heads)
        return airllm_errf(err, "%s: %d attention heads are not a multiple of %d groups", path,
                           c->n_heads, c->n_kv_heads);
    /* kv_channels: head_dim; RoPE needs pairs in its first half */
    if (get_int(cfg, "kv_channels", -1, 4, 1 << 14, path, &v, err))
        return -1;
    c->head_dim = (int)v;
    if (c->head_dim % 4)
        return airllm_errf(err, "%s: kv_channels %d must be a multiple of 4 (RoPE pairs in "
                                "the first half of each head)",
                           path, c->head_dim);
    if (get_int(cfg, "padded_vocab_size", -1, 1, 1 << 24, path, &v, err))
        return -1;
    c->vocab = (int)v;
    if (get_int(cfg, "seq_length", 2048, 1, 1 << 24, path, &v, err))
        return -1;
    c->max_pos = (int)v;
    double eps = 0, ratio = 0;
    if (get_num(cfg, "layernorm_epsilon", 1e-5, path, &eps, err) ||
        get_num(cfg, "rope_ratio", 1.0, path, &ratio, err))
        return -1;
    if (!(eps > 0 && eps <= FLT_MAX && (float)eps > 0))
        return airllm_errf(err, "%s: layernorm_epsilon %g must be a positive float", path, eps);
    c->rms_eps = (float)eps;
    c->rope_theta = 10000.0 * ratio;
    if (!(ratio > 0) || !(c->rope_theta > 1) || !isfinite(c->rope_theta))
        return airllm_errf(err, "%s: rope_ratio %g must make a RoPE base above 1", path, ratio);
    c->rope_dim = c->head_dim / 2;
    c->rope_pairs_adjacent = true;
    c->embed_name = "word_embeddings.weight";
    c->norm_name = "final_layernorm.weight";
    c->head_name = "output_layer.weight";
    /* config.json has no tie key in older exports; the code never ties */
    return 0;
}

/* ---- Baichuan 1/2 (model_type baichuan; modeling_baichuan.py) ----
 * One model_type, two forward passes: 7B (Baichuan-7B, Baichuan2-7B) uses
 * rotate-half RoPE with base 10000 hard-coded in its code (a rope_theta key
 * would be ignored there, so it is here); 13B (Baichuan-13B, Baichuan2-13B)
 * uses ALiBi. Rule: the released 7B configs carry max_position_embeddings,
 * the 13B ones only model_max_length, so ALiBi iff max_position_embeddings
 * is absent. Baichuan2's lm_head is a NormHead (rows L2-normalized before
 * use); Baichuan 1's is plain. Rule: Baichuan 1's vocabulary is 64000,
 * Baichuan2's 125696, so NormHead iff vocab_size != 64000. Both rules give
 * way to explicit keys: "airllm_alibi" and "airllm_norm_head" (true or
 * false) in config.json. */
static int baichuan_override(const cJSON *cfg, const char *k, bool *b, const char *path,
                             airllm_err *err)
{
    const cJSON *v = item(cfg, k);
    if (!v || cJSON_IsNull(v))
        return 0;
    if (!cJSON_IsBool(v))
        return airllm_errf(err, "%s: \"%s\" must be true or false", path, k);
    *b = cJSON_IsTrue(v);
    return 0;
}

static int parse_baichuan(const cJSON *cfg, const char *path, rt_config *c, airllm_err *err)
{
    c->alibi = !item(cfg, "max_position_embeddings");
    c->norm_head = c->vocab != 64000;
    if (baichuan_override(cfg, "airllm_alibi", &c->alibi, path, err) ||
        baichuan_override(cfg, "airllm_norm_head", &c->norm_head, path, err))
        return -1;
    long v;
    if (!item(cfg, "max_position_embeddings")) {
        if (get_int(cfg, "model_max_length", 4096, 1, 1 << 24, path, &v, err))
            return -1;
        c->max_pos = (int)v;
    }
    if (c->n_kv_heads != c->n_heads || c->head_dim * c->n_heads != c->hidden)
        return airllm_errf(err, "%s: baichuan has %d heads of hidden_size / heads dims each",
                           path, c->n_heads);
    c->rope_theta = 10000.0;
    return 0;
}

/* Qwen v1 (configuration_qwen.py) and InternLM2 keys beyond the Llama ones,
 * the families' tensor names, and how far past max_position_embeddings a
 * sequence may go. */
static int parse_family_a(const cJSON *cfg, const char *path, rt_config *c, airllm_err *err)
{
    long v;
    /* rt_rope_token's table holds rope_dim / 2 <= 1 << 13 frequencies */
    if (c->head_dim > 1 << 14)
        return airllm_errf(err, "%s: head_dim %d is above %d", path, c->head_dim, 1 << 14);
    if (c->arch == RT_ARCH_INTERNLM) {
        int rc = parse_rotary_internlm(cfg, path, c, err);
        if (rc)
            return rc;
        /* dynamic NTK has no hard limit: 8 x the trained length is ours */
        long lim = (long)c->max_pos * (c->rope_kind == RT_ROPE_DYNAMIC_V1 ? 8 : 1);
        c->ctx_max = lim > (1L << 24) ? 1 << 24 : (int)lim;
        return 0;
    }
    if (c->arch == RT_ARCH_INTERNLM2) {
        c->embed_name = "tok_embeddings.weight", c->head_name = "output.weight";
        c->qkv_layout = RT_QKV_GROUPED;
        long lim = (long)c->max_pos * (c->rope_kind == RT_ROPE_DYNAMIC ? 8
                                       : c->rope_kind == RT_ROPE_LINEAR ? (long)ceil(c->rope_scale)
                                                                         : 1);
        /* dynamic NTK has no hard limit: 8 x the trained length is ours */
        c->ctx_max = lim > (1L << 24) ? 1 << 24 : (int)lim;
        return 0;
    }
    c->embed_name = "wte.weight", c->norm_name = "ln_f.weight";
    /* QWenAttention splits heads by hidden / heads and c_attn by hidden:
     * kv_channels must agree. */
    if (get_int(cfg, "kv_channels", c->head_dim, 2, 1 << 14, path, &v, err))
        return -1;
    if (v != c->head_dim || (long)c->n_heads * v != c->hidden)
        return airllm_errf(err, "%s: kv_channels %ld x %d heads must equal hidden_size %d", path,
                           v, c->n_heads, c->hidden);
    if (c->intermediate % 2)
        return airllm_errf(err, "%s: intermediate_size %d must be even (w1 and w2 are half of "
                                "it)",
                           path, c->intermediate);
    c->intermediate /= 2;
    if (get_num(cfg, "rotary_emb_base", 10000, path, &c->rope_theta, err))
        return -1;
    if (!(c->rope_theta > 1))
        return airllm_errf(err, "%s: rotary_emb_base %g must be above 1", path, c->rope_theta);
    double pct;
    if (get_num(cfg, "rotary_pct", 1.0, path, &pct, err))
        return -1;
    /* QWenModel: int(kv_channels * rotary_pct) dims rotate, unless pct is 1;
     * the range is checked before the cast (a huge pct is no int) */
    c->rope_dim = !(pct > 0 && pct <= 1) ? 0
                  : pct == 1.0           ? c->head_dim
                                         : (int)(c->head_dim * pct);
    if (!(pct > 0 && pct <= 1) || c->rope_dim < 4 || c->rope_dim % 2)
        return airllm_errf(err, "%s: rotary_pct %g gives %d rotary dims (an even number from 4 "
                                "to kv_channels is needed)",
                           path, pct, c->rope_dim);
    if (get_int(cfg, "seq_length", -1, 1, 1 << 24, path, &v, err))
        return -1;
    c->seq_length = (int)v;
    const cJSON *ntk = item(cfg, "use_dynamic_ntk"), *logn = item(cfg, "use_logn_attn");
    if (!cJSON_IsFalse(ntk))
        c->rope_kind = RT_ROPE_QWEN_NTK; /* the class default is true */
    c->logn_attn = !cJSON_IsFalse(logn);
    if (cJSON_IsFalse(item(cfg, "no_bias"))) {
        airllm_errf(err, "%s: no_bias false (biases on c_proj and the MLP) is not supported",
                    path);
        return RT_CONFIG_UNSUPPORTED;
    }
    /* the code never reads max_position_embeddings; logn's table ends at
     * 32767 positions */
    long lim = c->max_pos > c->seq_length ? c->max_pos : c->seq_length;
    c->ctx_max = (int)(lim > 32767 ? lim : 32767);
    return 0;
}

int rt_config_parse(const char *text, size_t len, const char *path, rt_config *c,
                    airllm_err *err)
{
    memset(c, 0, sizeof *c);
    cJSON *cfg;
    if (airllm_json_parse_object(text, len, path, &cfg, err))
        return -1;
    int rc = -1;
    const cJSON *mt = item(cfg, "model_type");
    const char *type = cJSON_IsString(mt) ? mt->valuestring : "";
    snprintf(c->model_type, sizeof c->model_type, "%s", type);
    if (strcmp(type, "llama") == 0)
        c->arch = RT_ARCH_LLAMA;
    else if (strcmp(type, "mistral") == 0)
        c->arch = RT_ARCH_MISTRAL;
    else if (strcmp(type, "qwen2") == 0)
        c->arch = RT_ARCH_QWEN2;
    else if (strcmp(type, "qwen3") == 0)
        c->arch = RT_ARCH_QWEN3;
    else if (strcmp(type, "mixtral") == 0)
        c->arch = RT_ARCH_MIXTRAL;
    else if (strcmp(type, "chatglm") == 0)
        c->arch = RT_ARCH_CHATGLM;
    else if (strcmp(type, "baichuan") == 0)
        c->arch = RT_ARCH_BAICHUAN;
    else if (strcmp(type, "qwen") == 0)
        c->arch = RT_ARCH_QWEN;
    else if (strcmp(type, "internlm2") == 0)
        c->arch = RT_ARCH_INTERNLM2;
    else if (strcmp(type, "internlm") == 0)
        c->arch = RT_ARCH_INTERNLM;
    else {
        airllm_errf(err, "%s: architecture \"%s\" is not supported by airllm-run (supported: "
                         "llama, mistral, qwen2, qwen3, mixtral, chatglm, baichuan, qwen, "
                         "internlm, internlm2)",
                    path, *type ? type : "(no model_type)");
        rc = RT_CONFIG_UNSUPPORTED;
        goto out;
    }
    c->embed_name = "embed_tokens.weight";
    c->norm_name = "norm.weight";
    c->head_name = "lm_head.weight";
    long v;
    if (c->arch == RT_ARCH_CHATGLM) {
        if ((rc = parse_chatglm(cfg, path, c, err)) != 0)
            goto out;
        rc = -1;
        goto tail;
    }
    if (get_int(cfg, "hidden_size", -1, 1, 1 << 20, path, &v, err))
        goto out;
    c->hidden = (int)v;
    if (get_int(cfg, "intermediate_size", -1, 1, 1 << 22, path, &v, err))
        goto out;
    c->intermediate = (int)v;
    if (get_int(cfg, "num_hidden_layers", -1, 1, 100000, path, &v, err))
        goto out;
    c->n_layers = (int)v;
    if (get_int(cfg, "num_attention_heads", -1, 1, 1 << 16, path, &v, err))
        goto out;
    c->n_heads = (int)v;
    if (get_int(cfg, "num_key_value_heads", c->n_heads, 1, c->n_heads, path, &v, err))
        goto out;
    c->n_kv_heads = (int)v;
    if (c->n_heads % c->n_kv_heads) {
        airllm_errf(err, "%s: %d attention heads are not a multiple of %d key/value heads", path,
                    c->n_heads, c->n_kv_heads);
        goto out;
    }
    long hd_def = c->hidden % c->n_heads == 0 ? c->hidden / c->n_heads : -1;
    if (get_int(cfg, "head_dim", hd_def, 2, 1 << 14, path, &v, err))
        goto out;
    c->head_dim = (int)v;
    if (c->head_dim % 2) {
        airllm_errf(err, "%s: head_dim %d must be even for RoPE", path, c->head_dim);
        goto out;
    }
    if (get_int(cfg, "vocab_size", -1, 1, 1 << 24, path, &v, err))
        goto out;
    c->vocab = (int)v;
    if (get_int(cfg, "max_position_embeddings", 2048, 1, 1 << 24, path, &v, err))
        goto out;
    c->max_pos = (int)v;
    /* The epsilon inside the norm's square root: zero or negative divides
     * by zero or takes the root of a negative number on a zero row, and the
     * run goes on with NaNs. layer_norm_epsilon is the other spelling
     * (Qwen v1, InternLM); both are checked wherever they appear. */
    double eps = 1e-6, eps2 = 0;
    if (get_num(cfg, "rms_norm_eps", 1e-6, path, &eps, err) ||
        get_num(cfg, "layer_norm_epsilon", 1e-6, path, &eps2, err))
        goto out;
    /* Checked as the float the norm uses: 1e-50 would round to 0 (and a
     * double past FLT_MAX has no float: its conversion is undefined). */
    if (!(eps2 > 0 && eps2 <= FLT_MAX && (float)eps2 > 0)) {
        airllm_errf(err, "%s: layer_norm_epsilon %g must be a positive float", path, eps2);
        goto out;
    }
    if (!(eps > 0 && eps <= FLT_MAX && (float)eps > 0)) {
        airllm_errf(err, "%s: rms_norm_eps %g must be a positive float", path, eps);
        goto out;
    }
    c->rms_eps = (float)(c->arch == RT_ARCH_QWEN ? eps2 : eps); /* Qwen's key */
    if ((rc = check_act(cfg, path, err)) != 0 || (rc = parse_rope(cfg, path, c, err)) != 0)
        goto out;
    rc = -1;
    c->rope_dim = c->head_dim;
    if (c->arch == RT_ARCH_BAICHUAN && parse_baichuan(cfg, path, c, err))
        goto out;
    /* Sliding window: Mistral and Mixtral apply it to every layer. Qwen2/3
     * configs carry a window that only counts with use_sliding_window (and
     * then per layer, which this runner does not do). */
    const cJSON *sw = item(cfg, "sliding_window");
    if (c->arch == RT_ARCH_MISTRAL || c->arch == RT_ARCH_MIXTRAL) {
        if (get_int(cfg, "sliding_window", 0, 0, 1L << 30, path, &v, err))
            goto out;
        c->sliding_window = (int)v;
    } else if (cJSON_IsTrue(item(cfg, "use_sliding_window")) && cJSON_IsNumber(sw)) {
        airllm_errf(err, "%s: use_sliding_window (per-layer windows) is not supported", path);
        rc = RT_CONFIG_UNSUPPORTED;
        goto out;
    }
    if (c->arch == RT_ARCH_MIXTRAL) {
        if (get_int(cfg, "num_local_experts", -1, 1, 4096, path, &v, err))
            goto out;
        c->n_experts = (int)v;
        if (get_int(cfg, "num_experts_per_tok", 2, 1, c->n_experts, path, &v, err))
            goto out;
        c->n_experts_used = (int)v;
    }
tail:;
    const cJSON *tie = item(cfg, "tie_word_embeddings");
    /* ChatGLM, Baichuan, QWenConfig and InternLM(2)Config default to an
     * untied head (their code has its own) */
    c->tie_embeddings = tie ? cJSON_IsTrue(tie) : !untied_family(c);
    c->ctx_max = c->max_pos;
    if (family_a(c) && (rc = parse_family_a(cfg, path, c, err)) != 0)
        goto out;
    rc = -1;
    if (get_int(cfg, "bos_token_id", -2, -2, c->vocab - 1, path, &v, err))
        goto out;
    c->bos_id = v < 0 ? -1 : (int32_t)v;
    if (parse_eos(cfg, path, c, err))
        goto out;
    rc = 0;
out:
    cJSON_Delete(cfg);
    return rc;
}
