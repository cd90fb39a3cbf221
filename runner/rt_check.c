/* The tensors the forward pass takes from each unit, with the shapes and
 * storage config.json gives them. airllm-run checks every unit header with
 * this when it opens a model, before anything is read or allocated from
 * those shapes; airllm-verify runs the same checks, so that a directory it
 * calls OK is one the runner accepts. A layer's list is the binder's own
 * (rt_layer_roles in rt_layer.c), so the two cannot drift apart; the
 * binder's checks at run time stay as a second line. */
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

/* The roles the binder will ask for (rt_layer_roles), and every expert. */
static int check_layer(checker *k)
{
    const rt_config *c = k->c;
    rt_role roles[RT_LAYER_ROLES_MAX];
    size_t n = rt_layer_roles(c, roles);
    for (size_t i = 0; i < n; i++)
        if (need(k, roles[i].suffix, roles[i].rows, roles[i].cols, roles[i].optional))
            return -1;
    if (c->arch != RT_ARCH_MIXTRAL)
        return 0;
    uint64_t rows[3], cols[3];
    rt_expert_shapes(c, rows, cols);
    for (size_t e = 0; e < (size_t)c->n_experts; e++) {
        char nm[3][96];
        rt_moe_expert_names(e, nm);
        for (int i = 0; i < 3; i++)
            if (need(k, nm[i], rows[i], cols[i], false))
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
    case AIRLLM_UNIT_NORM: return need(&k, c->norm_name, 0, H, false);
    case AIRLLM_UNIT_LM_HEAD: return need(&k, c->head_name, V, H, false);
    case AIRLLM_UNIT_EMBED:
        if (need(&k, c->embed_name, V, H, false))
            return -1;
        /* A tied head multiplies by the embedding matrix: the manifest
         * must say so, not name another tensor (a norm weight, say). */
        if (tied_to && strcmp(find(h, c->embed_name)->name, tied_to) != 0)
            return airllm_errf(err, "the LM head is tied to \"%s\", not to the embedding "
                                    "matrix \"%s\" that airllm-run multiplies by",
                               tied_to, find(h, c->embed_name)->name);
        return 0;
    default: return 0;
    }
}
