/* Choosing the next token from a row of logits: greedy, or temperature
 * sampling restricted to the top k and the top-p nucleus. */
#include <math.h>
#include <stdlib.h>

#include "rt_chat.h"

typedef struct {
    float p;
    int32_t id;
} cand;

static uint64_t rng_next(uint64_t *s)
{
    /* splitmix64 */
    uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static int cand_cmp(const void *a, const void *b)
{
    const cand *x = a, *y = b;
    return x->p < y->p ? 1 : x->p > y->p ? -1 : (x->id > y->id) - (x->id < y->id);
}

int rt_sampler_init(rt_sampler *s, int vocab, airllm_err *err)
{
    s->buf = malloc(sizeof(cand) * (size_t)(vocab > 0 ? vocab : 1));
    s->seen = calloc((size_t)(vocab > 0 ? vocab : 1) / 8 + 1, 1);
    return s->buf && s->seen ? 0 : airllm_errf(err, "out of memory");
}

void rt_sampler_free(rt_sampler *s)
{
    free(s->buf);
    free(s->seen);
    s->buf = NULL;
    s->seen = NULL;
}

void rt_repeat_penalty(rt_sampler *s, float *logits, int vocab, const int32_t *ids, size_t n)
{
    if (s->repeat_penalty == 0 || s->repeat_penalty == 1 || !s->seen)
        return;
    size_t from = n > s->repeat_last_n ? n - s->repeat_last_n : 0;
    float p = (float)s->repeat_penalty;
    /* Once per distinct token, as llama.cpp does: a token seen three times
     * is penalized once. seen marks them, and is cleared again below. */
    for (size_t i = from; i < n; i++) {
        int32_t id = ids[i];
        if (id < 0 || id >= vocab || (s->seen[id >> 3] & (1u << (id & 7))))
            continue;
        s->seen[id >> 3] |= (uint8_t)(1u << (id & 7));
        logits[id] = logits[id] > 0 ? logits[id] / p : logits[id] * p;
    }
    for (size_t i = from; i < n; i++)
        if (ids[i] >= 0 && ids[i] < vocab)
            s->seen[ids[i] >> 3] = 0;
}

int32_t rt_sample(rt_sampler *s, const float *logits, int vocab)
{
    if (s->temperature == 0) {
        int32_t best = 0;
        for (int i = 1; i < vocab; i++)
            if (logits[i] > logits[best])
                best = i;
        return best;
    }
    cand *buf = s->buf;
    float mx = -INFINITY;
    for (int i = 0; i < vocab; i++)
        mx = logits[i] > mx ? logits[i] : mx;
    for (int i = 0; i < vocab; i++) {
        buf[i].p = expf((float)((logits[i] - mx) / s->temperature));
        buf[i].id = i;
    }
    size_t n = (size_t)vocab;
    qsort(buf, n, sizeof *buf, cand_cmp);
    if (s->top_k > 0 && (size_t)s->top_k < n)
        n = (size_t)s->top_k;
    double kept = 0;
    for (size_t i = 0; i < n; i++)
        kept += buf[i].p;
    if (s->top_p < 1) {
        double acc = 0;
        for (size_t i = 0; i < n; i++) {
            acc += buf[i].p;
            if (acc >= s->top_p * kept) {
                n = i + 1;
                break;
            }
        }
        kept = acc < kept ? acc : kept;
    }
    double r = (double)(rng_next(&s->rng) >> 11) / 9007199254740992.0 * kept, acc = 0;
    for (size_t i = 0; i < n; i++) {
        acc += buf[i].p;
        if (r < acc)
            return buf[i].id;
    }
    return buf[n - 1].id;
}
