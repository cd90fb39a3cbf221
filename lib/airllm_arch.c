#include "airllm_arch.h"

#include <stddef.h>
#include <string.h>

/* Each family lists module prefixes per unit. A tensor belongs to a unit when
 * its name starts with one of the prefixes; the layer prefix is followed by
 * the layer number and a dot. Prefixes end at a module boundary ('.') so that
 * "model.norm." never matches "model.norm_extra.x". */
#define MAXP 4
struct airllm_arch {
    const char *family;
    const char *arch_names[6]; /* config "architectures" values */
    const char *model_types[4];
    const char *layer_prefix[MAXP];
    const char *embed[MAXP];
    const char *norm[MAXP];
    const char *lm_head[MAXP];
    const char *layers_key, *vocab_key, *hidden_key;
    const char *embed_tensor;
};

static const struct airllm_arch families[] = {
    {"llama",
     {"LlamaForCausalLM", "LLaMAForCausalLM"},
     {"llama"},
     {"model.layers."},
     {"model.embed_tokens."},
     {"model.norm."},
     {"lm_head."},
     "num_hidden_layers", "vocab_size", "hidden_size", "model.embed_tokens.weight"},
    {"mistral", {"MistralForCausalLM"}, {"mistral"}, {"model.layers."},
     {"model.embed_tokens."}, {"model.norm."}, {"lm_head."},
     "num_hidden_layers", "vocab_size", "hidden_size", "model.embed_tokens.weight"},
    {"mixtral", {"MixtralForCausalLM"}, {"mixtral"}, {"model.layers."},
     {"model.embed_tokens."}, {"model.norm."}, {"lm_head."},
     "num_hidden_layers", "vocab_size", "hidden_size", "model.embed_tokens.weight"},
    {"qwen2", {"Qwen2ForCausalLM", "Qwen2MoeForCausalLM"}, {"qwen2", "qwen2_moe"},
     {"model.layers."}, {"model.embed_tokens."}, {"model.norm."}, {"lm_head."},
     "num_hidden_layers", "vocab_size", "hidden_size", "model.embed_tokens.weight"},
    {"qwen3", {"Qwen3ForCausalLM", "Qwen3MoeForCausalLM"}, {"qwen3", "qwen3_moe"},
     {"model.layers."}, {"model.embed_tokens."}, {"model.norm."}, {"lm_head."},
     "num_hidden_layers", "vocab_size", "hidden_size", "model.embed_tokens.weight"},
    {"qwen", {"QWenLMHeadModel"}, {"qwen"}, {"transformer.h."}, {"transformer.wte."},
     {"transformer.ln_f."}, {"lm_head."},
     "num_hidden_layers", "vocab_size", "hidden_size", "transformer.wte.weight"},
    /* ChatGLM2/3: the rotary table is computed once before the first layer,
     * so it travels with the embeddings. */
    {"chatglm", {"ChatGLMModel", "ChatGLMForConditionalGeneration"}, {"chatglm"},
     {"transformer.encoder.layers."},
     {"transformer.embedding.", "transformer.rotary_pos_emb."},
     {"transformer.encoder.final_layernorm."},
     {"transformer.output_layer."},
     "num_layers", "padded_vocab_size", "hidden_size",
     "transformer.embedding.word_embeddings.weight"},
    {"baichuan", {"BaichuanForCausalLM", "BaiChuanForCausalLM"}, {"baichuan"},
     {"model.layers."}, {"model.embed_tokens."}, {"model.norm."}, {"lm_head."},
     "num_hidden_layers", "vocab_size", "hidden_size", "model.embed_tokens.weight"},
    {"internlm", {"InternLMForCausalLM"}, {"internlm"}, {"model.layers."},
     {"model.embed_tokens."}, {"model.norm."}, {"lm_head."},
     "num_hidden_layers", "vocab_size", "hidden_size", "model.embed_tokens.weight"},
    {"internlm2", {"InternLM2ForCausalLM"}, {"internlm2"}, {"model.layers."},
     {"model.tok_embeddings."}, {"model.norm."}, {"output."},
     "num_hidden_layers", "vocab_size", "hidden_size", "model.tok_embeddings.weight"},
};

static const struct airllm_arch generic = {
    "generic", {NULL}, {NULL}, {NULL}, {NULL}, {NULL}, {NULL},
    "num_hidden_layers", "vocab_size", "hidden_size", NULL,
};

static int in_list(const char *const *list, size_t n, const char *s)
{
    if (!s)
        return 0;
    for (size_t i = 0; i < n && list[i]; i++)
        if (strcmp(list[i], s) == 0)
            return 1;
    return 0;
}

const airllm_arch *airllm_arch_detect(const char *architecture, const char *model_type)
{
    size_t n = sizeof families / sizeof families[0];
    for (size_t i = 0; i < n; i++)
        if (in_list(families[i].arch_names, 6, architecture))
            return &families[i];
    for (size_t i = 0; i < n; i++)
        if (in_list(families[i].model_types, 4, model_type))
            return &families[i];
    return &generic;
}

const airllm_arch *airllm_arch_by_family(const char *family)
{
    size_t n = sizeof families / sizeof families[0];
    for (size_t i = 0; i < n; i++)
        if (strcmp(families[i].family, family) == 0)
            return &families[i];
    return strcmp(family, "generic") == 0 ? &generic : NULL;
}

const char *airllm_arch_family(const airllm_arch *a) { return a->family; }
const char *airllm_arch_layers_key(const airllm_arch *a) { return a->layers_key; }
const char *airllm_arch_vocab_key(const airllm_arch *a) { return a->vocab_key; }
const char *airllm_arch_hidden_key(const airllm_arch *a) { return a->hidden_key; }
const char *airllm_arch_embed_tensor(const airllm_arch *a) { return a->embed_tensor; }

/* Parses "<digits>." at s; returns the number of characters consumed
 * (digits and the dot) or 0. Layer numbers are capped well below INT32_MAX. */
static size_t parse_layer_number(const char *s, int32_t *layer)
{
    size_t i = 0;
    int64_t v = 0;
    while (s[i] >= '0' && s[i] <= '9') {
        v = v * 10 + (s[i] - '0');
        if (v > 1000000)
            return 0;
        i++;
    }
    if (i == 0 || s[i] != '.' || s[i + 1] == '\0')
        return 0;
    *layer = (int32_t)v;
    return i + 1;
}

static int has_prefix(const char *s, const char *p) { return strncmp(s, p, strlen(p)) == 0; }

static int match_any(const char *const *prefixes, const char *name)
{
    for (int i = 0; i < MAXP && prefixes[i]; i++)
        if (has_prefix(name, prefixes[i]))
            return 1;
    return 0;
}

/* Generic fallback: the first ".layers.N." / ".h.N." / ".blocks.N." (or a
 * name starting with "layers.N." etc.) marks a decoder layer; outside the
 * layers, common spellings pick the embeddings, the final norm and the head. */
static int classify_generic(const char *name, airllm_unit_kind *kind, int32_t *layer)
{
    static const char *const markers[] = {"layers.", "h.", "blocks."};
    for (size_t m = 0; m < 3; m++) {
        size_t len = strlen(markers[m]);
        for (const char *p = name; (p = strstr(p, markers[m])) != NULL; p++) {
            if (p != name && p[-1] != '.')
                continue;
            if (parse_layer_number(p + len, layer)) {
                *kind = AIRLLM_UNIT_LAYER;
                return 0;
            }
        }
    }
    *layer = -1;
    if (has_prefix(name, "lm_head.") || has_prefix(name, "output.") ||
        strstr(name, "output_layer.")) {
        *kind = AIRLLM_UNIT_LM_HEAD;
        return 0;
    }
    if (strstr(name, "embed") || strstr(name, "wte.") || strstr(name, "word_embeddings") ||
        strstr(name, "rotary_pos_emb")) {
        *kind = AIRLLM_UNIT_EMBED;
        return 0;
    }
    if (strstr(name, "norm.") || strstr(name, "ln_f.")) {
        *kind = AIRLLM_UNIT_NORM;
        return 0;
    }
    return -1;
}

int airllm_arch_classify(const airllm_arch *a, const char *name, airllm_unit_kind *kind,
                         int32_t *layer)
{
    if (a == &generic)
        return classify_generic(name, kind, layer);
    for (int i = 0; i < MAXP && a->layer_prefix[i]; i++) {
        if (has_prefix(name, a->layer_prefix[i]) &&
            parse_layer_number(name + strlen(a->layer_prefix[i]), layer)) {
            *kind = AIRLLM_UNIT_LAYER;
            return 0;
        }
    }
    *layer = -1;
    if (match_any(a->embed, name)) {
        *kind = AIRLLM_UNIT_EMBED;
        return 0;
    }
    if (match_any(a->norm, name)) {
        *kind = AIRLLM_UNIT_NORM;
        return 0;
    }
    if (match_any(a->lm_head, name)) {
        *kind = AIRLLM_UNIT_LM_HEAD;
        return 0;
    }
    return -1;
}
