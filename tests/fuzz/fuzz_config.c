/* libFuzzer target: the runner's config.json reader (runner/rt_config.c)
 * must never crash, leak or hit undefined behaviour (UBSan: float-to-int
 * casts of huge, fractional or negative numbers), whatever the bytes. A
 * config it accepts must hold values the forward pass can use. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>

#include "rt.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    rt_config c;
    airllm_err err;
    if (rt_config_parse((const char *)data, size, "config.json", &c, &err) != 0)
        return 0;
    /* What rt_config_parse promises on success. */
    if (c.hidden < 1 || c.intermediate < 1 || c.n_layers < 1 || c.n_heads < 1 ||
        c.n_kv_heads < 1 || c.n_heads % c.n_kv_heads || c.head_dim < 2 || c.head_dim % 2 ||
        c.vocab < 1 || c.max_pos < 1 || !(c.rms_eps > 0) || !isfinite(c.rms_eps) ||
        !(c.rope_theta > 1) || c.n_eos < 0 || c.n_eos > 8 || c.bos_id >= c.vocab)
        abort();
    /* RoPE pairs within a head; the unit tensor names are set */
    if (c.rope_dim < 2 || c.rope_dim % 2 || c.rope_dim > c.head_dim || !isfinite(c.rope_theta) ||
        !c.embed_name || !c.norm_name || !c.head_name)
        abort();
    for (int i = 0; i < c.n_eos; i++)
        if (c.eos_ids[i] < 0 || c.eos_ids[i] >= c.vocab)
            abort();
    return 0;
}
