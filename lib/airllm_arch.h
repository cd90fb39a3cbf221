/* Architecture families: how a checkpoint's tensor names group into
 * execution units (embeddings, decoder layer N, final norm, LM head), and
 * which config.json keys hold the layer count and dimensions. */
#ifndef AIRLLM_ARCH_H
#define AIRLLM_ARCH_H

#include <stdint.h>

#include "airllm_container.h"

typedef struct airllm_arch airllm_arch;

/* Picks the family from config.json's architectures[0] and model_type.
 * Never NULL: unknown models get the generic family, which groups by the
 * `.layers.N.` / `.h.N.` / `.blocks.N.` pattern. */
const airllm_arch *airllm_arch_detect(const char *architecture, const char *model_type);
const airllm_arch *airllm_arch_by_family(const char *family); /* NULL if unknown */

const char *airllm_arch_family(const airllm_arch *a);       /* "llama", "qwen", ... */
const char *airllm_arch_layers_key(const airllm_arch *a);   /* "num_hidden_layers" */
const char *airllm_arch_vocab_key(const airllm_arch *a);    /* "vocab_size" */
const char *airllm_arch_hidden_key(const airllm_arch *a);   /* "hidden_size" */
/* Name of the token embedding matrix for this family, used to check dims
 * and to record what a tied LM head reuses. */
const char *airllm_arch_embed_tensor(const airllm_arch *a);

/* Assigns a tensor to its unit. Returns 0 with *kind and *layer set (layer
 * is -1 for non-layer units), or -1 when the name fits no group. */
int airllm_arch_classify(const airllm_arch *a, const char *name, airllm_unit_kind *kind,
                         int32_t *layer);

#endif
