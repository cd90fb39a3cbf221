/* The forward pass of the decoder-only families airllm-run supports, with
 * Hugging Face transformers' semantics:
 *
 *   x = embed[ids]                                        [n, hidden]
 *   per layer:
 *     h = rmsnorm(x) ; q, k, v = h Wq^T (+bq), h Wk^T (+bk), h Wv^T (+bv)
 *     (qwen3) q, k = rmsnorm per head (q_norm, k_norm)
 *     q, k = rope(q, k, position)          rotate_half layout, llama3 scaling
 *     attention over the cached positions (causal, GQA, sliding window)
 *     x += attn Wo^T
 *     h = rmsnorm(x) ; x += mlp(h)   SwiGLU: Wdown(silu(Wgate h) * Wup h),
 *                                    or Mixtral's top-k of E experts
 *   logits = rmsnorm(x_last) Whead^T
 *
 * All tokens of a step (every sequence's prompt in prefill, one token per
 * sequence in decode) go through each layer together, so one read of a
 * layer serves them all. Activations are float32; weights stay as stored
 * (F32/F16/BF16 or quantized) and are widened inside the kernels. */
#include "rt.h"
#include "rt_cuda.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "airllm_bytes.h"
#include "airllm_matmul.h"
#include "airllm_quant.h"

/* Up to four matrices that read the same input (q/k/v, gate/up) go to the
 * pool as one run, their rows stacked: on the development VM a hand-off
 * between cores costs microseconds, as much as a small model's matrix
 * takes, and stacking lets a run split q/k/v (576 + 192 + 192 rows in
 * SmolLM2) into equal parts where a split per matrix could not. */
#define MM_MAX 4

typedef struct {
    const rt_tensor *w[MM_MAX];
    float *y[MM_MAX];
    uint64_t first_row[MM_MAX + 1]; /* of each matrix in the stacked rows */
    uint64_t per;                   /* stacked rows per job */
    size_t count;
    const float *x;
    size_t n;
    airllm_mm_act act; /* x prepared once for all jobs (int8, or packed for
                        * the GEMM path) when w[0] takes one of those paths
                        * (lib/airllm_matmul.h) */
} mm_job;

static int mm_run(void *ctx, size_t job, int thread, airllm_err *err)
{
    (void)thread;
    mm_job *j = ctx;
    uint64_t b = job * j->per, e = b + j->per;
    for (size_t k = 0; k < j->count; k++) {
        uint64_t lo = b > j->first_row[k] ? b : j->first_row[k];
        uint64_t hi = e < j->first_row[k + 1] ? e : j->first_row[k + 1];
        if (lo >= hi)
            continue;
        const rt_tensor *w = j->w[k];
        airllm_mm_weight mw = rt_tensor_mm(w);
        if (airllm_mm_prepared(&mw, &j->act, j->x, j->n, (size_t)w->cols, j->y[k],
                               (size_t)w->rows, lo - j->first_row[k], hi - j->first_row[k],
                               err))
            return -1;
    }
    return 0;
}

/* y_i = x W_i^T for the count matrices (all with the same cols), on the pool. */
static int matmul_multi(rt_pool *p, const rt_tensor *const *w, float *const *y, size_t count,
                        const float *x, size_t n, airllm_err *err)
{
    /* Jobs of whole stacked rows, in multiples of the kernels' row quantum
     * (whole tiles or panels), none below MIN_JOB_ELEMS weights, and a
     * multiple of the threads where there are enough, so that no thread is
     * left with one job more. */
    const uint64_t MIN_JOB_ELEMS = (uint64_t)1 << 17;
    int th = rt_pool_threads(p);
    mm_job j;
    memset(&j, 0, sizeof j);
    j.count = count;
    j.x = x;
    j.n = n;
    for (size_t k = 0; k < count; k++) {
        j.w[k] = w[k];
        j.y[k] = y[k];
        j.first_row[k + 1] = j.first_row[k] + w[k]->rows;
    }
    uint64_t rows = j.first_row[count];
    uint64_t jobs = (uint64_t)th * 4;
    uint64_t by_size = rows * w[0]->cols * (n < 4 ? 1 : n / 4) / MIN_JOB_ELEMS;
    if (jobs > by_size)
        jobs = by_size >= (uint64_t)th ? by_size / th * th : by_size ? by_size : 1;
    uint64_t per = (rows + jobs - 1) / jobs;
    /* 16 rows for one token; 32 for more: SmolLM2's 576-row matrices cut
     * in 80-row jobs at a 128-token prefill sent 16 rows of each job to
     * the tiles, which re-laid x out per call (a tenth of the prefill) */
    uint64_t q = airllm_mm_row_quantum(n);
    j.per = (per + q - 1) / q * q;
    airllm_mm_weight mw0 = rt_tensor_mm(w[0]);
    if (airllm_mm_act_prepare(&j.act, &mw0, x, n, (size_t)w[0]->cols, err))
        return -1;
    int rc = rt_pool_run(p, mm_run, &j, (size_t)((rows + j.per - 1) / j.per), err);
    airllm_mm_act_release(&j.act);
    return rc;
}

int rt_matmul(rt_pool *p, const rt_tensor *w, const float *x, size_t n, float *y,
              airllm_err *err)
{
    if (matmul_multi(p, &w, &y, 1, x, n, err))
        return airllm_err_prefix(err, "%s", w->name);
    return 0;
}

/* ---- small operations ---- */

static void rmsnorm(float *o, const float *x, const float *w, int n, float eps)
{
    double ss = 0;
    for (int i = 0; i < n; i++)
        ss += (double)x[i] * x[i];
    float r = (float)(1.0 / sqrt(ss / n + eps));
    for (int i = 0; i < n; i++)
        o[i] = w[i] * (x[i] * r);
}

static float silu(float x)
{
    return x / (1.0f + expf(-x));
}

/* transformers' inverse frequencies, with llama3 scaling when configured. */
void rt_rope_init(const rt_config *c, float *inv)
{
    int half = c->rope_dim / 2;
    for (int i = 0; i < half; i++) {
        float f = (float)(1.0 / pow(c->rope_theta, (double)(2 * i) / c->rope_dim));
        if (c->rope_llama3) {
            double low_wl = c->rope_orig_max / c->rope_low_freq;
            double high_wl = c->rope_orig_max / c->rope_high_freq;
            double wl = 2 * M_PI / f;
            double g = f;
            if (wl > low_wl) {
                g = f / c->rope_factor;
            } else if (wl >= high_wl) {
                double smooth = (c->rope_orig_max / wl - c->rope_low_freq) /
                                (c->rope_high_freq - c->rope_low_freq);
                g = (1 - smooth) * f / c->rope_factor + smooth * f;
            }
            f = (float)g;
        }
        inv[i] = f;
    }
}

/* cs[i] = cos, cs[rd / 2 + i] = sin of position pos's angle i (rd: the
 * rotated dims, rope_dim): once per token and step, shared by every layer
 * (they were computed again in each layer; no speed change could be
 * measured on SmolLM2, within noise). */
static void rope_angles(float *cs, int rd, const float *inv, size_t pos)
{
    int half = rd / 2;
    for (int i = 0; i < half; i++) {
        float ang = (float)pos * inv[i];
        cs[i] = cosf(ang);
        cs[half + i] = sinf(ang);
    }
}

/* Rotates the first rd dims of each of the heads (hd apart) by cs (as
 * rope_angles / rt_rope_token make it, half = rd / 2): pairs (i, i + rd / 2)
 * (rotate-half), or (2i, 2i + 1) with adjacent (ChatGLM); dims past rd
 * (ChatGLM, Qwen rotary_pct) pass through. */
static void rope_apply(float *v, int heads, int hd, int rd, bool adjacent, const float *cs)
{
    int half = rd / 2;
    if (adjacent) {
        for (int h = 0; h < heads; h++) {
            float *x = v + (size_t)h * hd;
            for (int i = 0; i < half; i++) {
                float c = cs[i], s = cs[half + i];
                float a = x[2 * i], b = x[2 * i + 1];
                x[2 * i] = a * c - b * s;
                x[2 * i + 1] = b * c + a * s;
            }
        }
        return;
    }
    for (int i = 0; i < half; i++) {
        float c = cs[i], s = cs[half + i];
        for (int h = 0; h < heads; h++) {
            float *x = v + (size_t)h * hd;
            float a = x[i], b = x[i + half];
            x[i] = a * c - b * s;
            x[i + half] = b * c + a * s;
        }
    }
}

/* ---- model ---- */

int rt_model_open(rt_model *m, const char *dir, uint64_t budget, bool prefetch, bool direct,
                  rt_verify verify_load, int threads, int io_threads, const rt_cuda_opts *cuda,
                  airllm_err *err)
{
    memset(m, 0, sizeof *m);
    /* The manifest first: a directory without one is not a converted model,
     * whatever else it holds. */
    airllm_manifest probe;
    if (airllm_manifest_load(dir, &probe, err))
        return -1;
    airllm_manifest_free(&probe);
    if (rt_config_load(dir, &m->cfg, err))
        return -1;
    if (rt_store_scan(&m->store, dir, prefetch, direct, verify_load, err))
        return -1;
    /* Every unit's shapes against the config now, before any buffer is
     * sized from them and before anything runs. */
    const char *tied_to = NULL;
    for (size_t i = 0; i < m->store.mf.n_units; i++)
        if (m->store.mf.units[i].kind == AIRLLM_UNIT_LM_HEAD && !m->store.mf.units[i].file)
            tied_to = m->store.mf.units[i].tied_to;
    for (size_t i = 0; i < m->store.n_units; i++) {
        const rt_unit *u = &m->store.units[i];
        if (rt_check_unit(&m->cfg, &u->hdr, u->kind == AIRLLM_UNIT_EMBED ? tied_to : NULL,
                          err)) {
            /* A flipped bit in a tensor's name reads as a missing tensor:
             * say it is damage when the check block says so. */
            airllm_err damage;
            if (rt_store_check_unit(&m->store, i, &damage)) {
                *err = damage;
                return -1;
            }
            return airllm_err_prefix(err, "%s/%s", dir, u->file);
        }
    }
    long nproc = sysconf(_SC_NPROCESSORS_ONLN);
    if (io_threads <= 0) {
        /* The CPU backend's cores compute; a device backend's host has
         * cores to spare for copying layers out of the page cache. */
        io_threads = cuda ? (int)(nproc / 2 > 8 ? 8 : nproc / 2) : 1;
        io_threads = io_threads > 0 ? io_threads : 1;
    }
    m->store.readers = io_threads;
    if (cuda) {
        /* The device backend decides first which units it holds, and the
         * store's slots come from its pinned allocator. The host only looks
         * up embeddings and feeds layers: one compute thread. */
        rt_allocator alloc = {0};
        if (rt_cuda_open(&m->gpu, m, cuda, &alloc, err) ||
            rt_store_start(&m->store, budget, &alloc, err) || rt_cuda_load(m->gpu, m, err))
            return -1;
        if (threads <= 0)
            threads = 1;
    } else if (rt_store_start(&m->store, budget, NULL, err)) {
        return -1;
    }
    if (threads <= 0) {
        /* Default: every core. When layers stream with CPU work in the
         * prefetch thread (a copy out of the page cache, a hash: see
         * rt_store_prefetch_busy), sharing 2 cores with the kernels cost a
         * quarter of the decode speed (7B nf4 streamed: 2.69 tok/s on 2
         * threads, 3.46 on 1), so light steps leave it one core; heavy ones
         * (prefill, batches) are compute-bound and use them all. Mapped
         * units unchecked (--verify-load=off) only fault pages in: every
         * core computes. */
        threads = nproc > 0 ? (int)nproc : 1;
        m->spare_core = m->store.n_stream && prefetch && threads > 1 &&
                        rt_store_prefetch_busy(&m->store);
    }
    m->threads = threads;
    if (rt_pool_new(threads, &m->pool, err))
        return -1;
    const rt_config *c = &m->cfg;
    size_t n_layer_units = 0;
    for (size_t i = 0; i < m->store.n_units; i++)
        n_layer_units += m->store.units[i].kind == AIRLLM_UNIT_LAYER;
    if (n_layer_units != (size_t)c->n_layers)
        return airllm_errf(err, "%s: config.json says %d layers, the manifest has %zu", dir,
                           c->n_layers, n_layer_units);
    m->rope_inv_freq = malloc(sizeof(float) * (size_t)c->rope_dim / 2);
    if (c->alibi) {
        if (!(m->alibi_slopes = malloc(sizeof(float) * (size_t)c->n_heads)))
            return airllm_errf(err, "out of memory");
        rt_alibi_slopes(c->n_heads, m->alibi_slopes);
    }
    if (c->norm_head && rt_norm_head_init(m, err))
        return -1;
    size_t vec = (size_t)c->hidden > (size_t)c->intermediate ? (size_t)c->hidden
                                                                : (size_t)c->intermediate;
    if ((size_t)c->head_dim * (c->n_heads + 2 * (size_t)c->n_kv_heads) > vec)
        vec = (size_t)c->head_dim * (c->n_heads + 2 * (size_t)c->n_kv_heads); /* fused bias */
    m->vec = malloc(sizeof(float) * (vec + 64));
    if (!m->rope_inv_freq || !m->vec)
        return airllm_errf(err, "out of memory");
    rt_rope_init(c, m->rope_inv_freq);
    return 0;
}

void rt_model_close(rt_model *m)
{
    /* The store's slots are the backend's pinned memory: the store goes
     * first, while the allocator still works. */
    rt_store_close(&m->store);
    rt_cuda_close(m->gpu);
    rt_pool_free(m->pool);
    free(m->x);
    free(m->xb);
    free(m->q);
    free(m->k);
    free(m->v);
    free(m->att_out);
    free(m->hb);
    free(m->hb2);
    free(m->scores);
    free(m->moe_acc);
    free(m->router);
    free(m->rope_inv_freq);
    free(m->vec);
    free(m->fused);
    free(m->alibi_slopes);
    free(m->head_scale);
}

/* Work buffers for n tokens. */
static int ensure_buffers(rt_model *m, size_t n, airllm_err *err)
{
    const rt_config *c = &m->cfg;
    if (n <= m->max_tokens && m->scores)
        return 0;
    size_t H = (size_t)c->hidden, Q = (size_t)c->n_heads * c->head_dim,
           KV = (size_t)c->n_kv_heads * c->head_dim, I = (size_t)c->intermediate;
    free(m->x), free(m->xb), free(m->q), free(m->k), free(m->v), free(m->att_out);
    free(m->hb), free(m->hb2), free(m->scores), free(m->moe_acc), free(m->router);
    free(m->fused);
    /* fused matmul outputs: q | k | v (ChatGLM, Baichuan), gate | up (ChatGLM) */
    m->fused = malloc(sizeof(float) * n * (Q + 2 * KV > 2 * I ? Q + 2 * KV : 2 * I));
    m->x = malloc(sizeof(float) * n * H);
    m->xb = malloc(sizeof(float) * n * (H > Q ? H : Q));
    m->q = malloc(sizeof(float) * n * Q);
    m->k = malloc(sizeof(float) * n * KV);
    m->v = malloc(sizeof(float) * n * KV);
    m->att_out = malloc(sizeof(float) * n * (Q > H ? Q : H));
    m->hb = malloc(sizeof(float) * n * I);
    m->hb2 = malloc(sizeof(float) * n * (I > H ? I : H));
    m->moe_acc = malloc(sizeof(float) * n * H);
    m->router = malloc(sizeof(float) * n * (c->n_experts ? c->n_experts : 1));
    /* attention scores: one row of the context per pool thread (all of
     * them, not just those active now: rt_pool_set_active changes that) */
    m->scores = malloc(sizeof(float) * (size_t)m->threads * (size_t)c->ctx_max);
    m->max_tokens = n;
    if (!m->x || !m->xb || !m->q || !m->k || !m->v || !m->att_out || !m->hb || !m->hb2 ||
        !m->moe_acc || !m->router || !m->scores || !m->fused)
        return airllm_errf(err, "out of memory for %zu tokens of activations", n);
    return 0;
}

int rt_seq_init(rt_seq *s, const rt_model *m, const int32_t *prompt, size_t n, size_t ctx,
                airllm_err *err)
{
    const rt_config *c = &m->cfg;
    memset(s, 0, sizeof *s);
    if (n == 0)
        return airllm_errf(err, "empty prompt");
    if (ctx > (size_t)c->ctx_max)
        return airllm_errf(err, "prompt (%zu tokens) plus new tokens need %zu positions, more "
                                "than %d (max_position_embeddings %d)",
                           n, ctx, c->ctx_max, c->max_pos);
    for (size_t i = 0; i < n; i++)
        if (prompt[i] < 0 || prompt[i] >= c->vocab)
            return airllm_errf(err, "token id %d is outside the vocabulary (0..%d)", prompt[i],
                               c->vocab - 1);
    size_t kv = (size_t)c->n_kv_heads * c->head_dim;
    s->ctx = ctx;
    s->cap = ctx;
    s->ids = malloc(sizeof *s->ids * ctx);
    if (!s->ids)
        return airllm_errf(err, "out of memory");
    if (m->gpu) {
        /* the KV cache lives with the backend */
        s->gpu = m->gpu;
        if (rt_cuda_seq_init(m->gpu, s, err)) {
            rt_seq_free(s);
            return -1;
        }
    } else {
        s->k = malloc(sizeof(float) * (size_t)c->n_layers * ctx * kv);
        s->v = malloc(sizeof(float) * (size_t)c->n_layers * ctx * kv);
    }
    if (!m->gpu && (!s->k || !s->v)) {
        rt_seq_free(s);
        return airllm_errf(err, "out of memory for a KV cache of %zu positions", ctx);
    }
    memcpy(s->ids, prompt, n * sizeof *prompt);
    s->n_ids = s->n_prompt = n;
    return 0;
}

void rt_seq_free(rt_seq *s)
{
    if (s->gpu)
        rt_cuda_seq_free(s->gpu, s);
    free(s->ids);
    free(s->k);
    free(s->v);
    memset(s, 0, sizeof *s);
}

/* The tokens of one step: which sequence and position each row of x is. */
typedef struct {
    rt_model *m;
    rt_seq **seq;    /* per token */
    size_t *pos;     /* per token */
    size_t n;
    int layer;
    float *rope_cs;  /* [n, head_dim]: cos and sin of each token's angles */
} step;

typedef struct {
    step *st;
    size_t n_heads;
} att_job;

/* One (token, head): causal attention over the cached positions. */
static int attention_run(void *ctx, size_t job, int thread, airllm_err *err)
{
    att_job *a = ctx;
    step *st = a->st;
    rt_model *m = st->m;
    const rt_config *c = &m->cfg;
    size_t t = job / a->n_heads, h = job % a->n_heads;
    int hd = c->head_dim, group = c->n_heads / c->n_kv_heads;
    size_t kvd = (size_t)c->n_kv_heads * hd;
    rt_seq *s = st->seq[t];
    size_t pos = st->pos[t];
    size_t lo = c->sliding_window && pos + 1 > (size_t)c->sliding_window
                    ? pos + 1 - (size_t)c->sliding_window
                    : 0;
    const float *q = m->q + t * (size_t)c->n_heads * hd + h * hd;
    const float *kc = s->k + (size_t)st->layer * s->ctx * kvd + (h / group) * hd;
    const float *vc = s->v + (size_t)st->layer * s->ctx * kvd + (h / group) * hd;
    float *sc = m->scores + (size_t)thread * c->ctx_max;
    size_t np = pos + 1 - lo;
    if (airllm_attn_scores(q, kc + lo * kvd, kvd, (size_t)hd, np, 1.0f / sqrtf((float)hd), sc,
                           err))
        return -1;
    if (m->alibi_slopes) {
        /* Baichuan adds slope * key position; relative to the query's, as
         * here, it differs by a constant per row, which softmax drops. */
        float sl = m->alibi_slopes[h];
        for (size_t j = 0; j < np; j++)
            sc[j] += sl * ((float)(lo + j) - (float)pos);
    }
    float mx = -INFINITY;
    for (size_t j = 0; j < np; j++)
        mx = sc[j] > mx ? sc[j] : mx;
    double sum = 0;
    for (size_t j = 0; j < np; j++) {
        sc[j] = expf(sc[j] - mx);
        sum += sc[j];
    }
    float inv = (float)(1.0 / sum);
    for (size_t j = 0; j < np; j++)
        sc[j] *= inv;
    float *o = m->att_out + t * (size_t)c->n_heads * hd + h * hd;
    return airllm_attn_mix(sc, vc + lo * kvd, kvd, (size_t)hd, np, o, err);
}

static int add_bias(const rt_tensor *b, float *y, size_t n, size_t dim, float *vec,
                    airllm_err *err)
{
    if (!b)
        return 0;
    if (rt_tensor_vec(b, vec, dim, err))
        return -1;
    for (size_t t = 0; t < n; t++)
        for (size_t i = 0; i < dim; i++)
            y[t * dim + i] += vec[i];
    return 0;
}

/* SwiGLU MLP of the rows of h (n tokens): out = down(silu(gate h) * up h). */
static int mlp(rt_model *m, const rt_tensor *g, const rt_tensor *u, const rt_tensor *d,
               const float *h, size_t n, float *out, airllm_err *err)
{
    size_t I = (size_t)g->rows;
    const rt_tensor *gu[2] = {g, u};
    float *out2[2] = {m->hb, m->hb2};
    if (matmul_multi(m->pool, gu, out2, 2, h, n, err))
        return airllm_err_prefix(err, "%s", g->name);
    for (size_t i = 0; i < n * I; i++)
        m->hb[i] = silu(m->hb[i]) * m->hb2[i];
    return rt_matmul(m->pool, d, m->hb, n, out, err);
}

void rt_moe_route(const rt_config *c, const float *router, size_t n, int *sel, float *wsel)
{
    size_t E = (size_t)c->n_experts, K = (size_t)c->n_experts_used;
    for (size_t t = 0; t < n; t++) {
        const float *r = router + t * E;
        float mx = -INFINITY;
        for (size_t e = 0; e < E; e++)
            mx = r[e] > mx ? r[e] : mx;
        double sum = 0;
        for (size_t e = 0; e < E; e++)
            sum += expf(r[e] - mx);
        /* top K by probability; ties to the lower index, as torch.topk */
        bool taken[4096] = {0};
        double tot = 0;
        for (size_t k = 0; k < K; k++) {
            size_t best = 0;
            float bv = -INFINITY;
            for (size_t e = 0; e < E; e++)
                if (!taken[e] && r[e] > bv) {
                    bv = r[e];
                    best = e;
                }
            taken[best] = true;
            sel[t * K + k] = (int)best;
            wsel[t * K + k] = (float)(expf(r[best] - mx) / sum);
            tot += wsel[t * K + k];
        }
        for (size_t k = 0; k < K; k++)
            wsel[t * K + k] = (float)(wsel[t * K + k] / tot);
    }
}

/* Mixtral: softmax over the router logits, the top k renormalized, each
 * token's output the weighted sum of its experts' SwiGLU. Tokens are
 * grouped by expert so each expert's weights serve all its tokens. */
static int moe(rt_model *m, const rt_slot *sl, const char *unit, const rt_tensor *router,
               float *h, size_t n, airllm_err *err)
{
    const rt_config *c = &m->cfg;
    size_t H = (size_t)c->hidden, E = (size_t)c->n_experts, K = (size_t)c->n_experts_used;
    if (rt_matmul(m->pool, router, h, n, m->router, err))
        return -1;
    int *sel = malloc(sizeof(int) * n * K);
    float *wsel = malloc(sizeof(float) * n * K);
    float *gath = malloc(sizeof(float) * n * H);
    size_t *tok = malloc(sizeof(size_t) * n);
    int rc = sel && wsel && gath && tok ? 0 : airllm_errf(err, "out of memory");
    if (!rc)
        rt_moe_route(c, m->router, n, sel, wsel);
    memset(m->moe_acc, 0, sizeof(float) * n * H);
    for (size_t e = 0; !rc && e < E; e++) {
        size_t cnt = 0;
        for (size_t t = 0; t < n; t++)
            for (size_t k = 0; k < K; k++)
                if (sel[t * K + k] == (int)e) {
                    memcpy(gath + cnt * H, h + t * H, H * sizeof(float));
                    tok[cnt++] = t * K + k;
                }
        if (!cnt)
            continue;
        const rt_tensor *w[3];
        /* A streamed layer holds only the experts asked for. */
        if (rt_layer_expert(sl, unit, c, e, w, err) ||
            rt_store_ensure(&m->store, (rt_slot *)sl, w[0], err) ||
            rt_store_ensure(&m->store, (rt_slot *)sl, w[1], err) ||
            rt_store_ensure(&m->store, (rt_slot *)sl, w[2], err) ||
            mlp(m, w[0], w[1], w[2], gath, cnt, m->att_out, err)) {
            rc = -1;
            break;
        }
        for (size_t i = 0; i < cnt; i++) {
            size_t t = tok[i] / K;
            float w = wsel[tok[i]];
            for (size_t d = 0; d < H; d++)
                m->moe_acc[t * H + d] += w * m->att_out[i * H + d];
        }
    }
    if (!rc)
        memcpy(h, m->moe_acc, sizeof(float) * n * H);
    free(sel);
    free(wsel);
    free(gath);
    free(tok);
    return rc;
}

static int layer_forward(rt_model *m, step *st, const rt_slot *sl, const char *unit,
                         airllm_err *err)
{
    const rt_config *c = &m->cfg;
    size_t n = st->n, H = (size_t)c->hidden, hd = (size_t)c->head_dim;
    size_t Q = (size_t)c->n_heads * hd, KV = (size_t)c->n_kv_heads * hd;
    rt_layer l;
    if (rt_layer_bind(sl, unit, c, &l, err))
        return -1;
    float *w = m->vec;
    if (rt_tensor_vec(l.attn_norm, w, H, err))
        return -1;
    for (size_t t = 0; t < n; t++)
        rmsnorm(m->xb + t * H, m->x + t * H, w, (int)H, c->rms_eps);
    const rt_tensor *qkv[3] = {l.wq, l.wk, l.wv};
    float *out3[3] = {m->q, m->k, m->v};
    if (l.wqkv ? rt_qkv_fused(m, &l, m->xb, n, err)
               : matmul_multi(m->pool, qkv, out3, 3, m->xb, n, err))
        return airllm_err_prefix(err, "%s", unit);
    if (add_bias(l.bq, m->q, n, Q, w, err) || add_bias(l.bk, m->k, n, KV, w, err) ||
        add_bias(l.bv, m->v, n, KV, w, err))
        return -1;
    if (l.q_norm) {
        float *kw = w + hd; /* k_norm weight; w holds q_norm's */
        if (rt_tensor_vec(l.q_norm, w, hd, err) || rt_tensor_vec(l.k_norm, kw, hd, err))
            return -1;
        for (size_t t = 0; t < n; t++) {
            for (int h = 0; h < c->n_heads; h++) {
                float *v = m->q + t * Q + h * hd;
                rmsnorm(v, v, w, (int)hd, c->rms_eps);
            }
            for (int h = 0; h < c->n_kv_heads; h++) {
                float *v = m->k + t * KV + h * hd;
                rmsnorm(v, v, kw, (int)hd, c->rms_eps);
            }
        }
    }
    for (size_t t = 0; t < n; t++) {
        if (!c->alibi) {
            rope_apply(m->q + t * Q, c->n_heads, (int)hd, c->rope_dim, c->rope_pairs_adjacent,
                       st->rope_cs + t * hd);
            rope_apply(m->k + t * KV, c->n_kv_heads, (int)hd, c->rope_dim,
                       c->rope_pairs_adjacent, st->rope_cs + t * hd);
        }
        float ls = rt_logn_scale(c, st->pos[t]); /* Qwen logn; 1 otherwise */
        if (ls != 1.0f)
            for (size_t i = 0; i < Q; i++)
                m->q[t * Q + i] *= ls;
        rt_seq *s = st->seq[t];
        size_t off = ((size_t)st->layer * s->ctx + st->pos[t]) * KV;
        memcpy(s->k + off, m->k + t * KV, KV * sizeof(float));
        memcpy(s->v + off, m->v + t * KV, KV * sizeof(float));
    }
    /* InternLM v1 dynamic RoPE: each sequence's earlier keys turn to the
     * rotation of its new length (once per sequence: its first token) */
    if (c->rope_kind == RT_ROPE_DYNAMIC_V1)
        for (size_t t = 0; t < n; t++) {
            rt_seq *s = st->seq[t];
            if (st->pos[t] == s->n_cached && s->n_cached)
                rt_rerotate_keys(c, s->k + (size_t)st->layer * s->ctx * KV, s->n_cached, KV,
                                 s->n_cached, s->n_ids);
        }
    att_job aj = {st, (size_t)c->n_heads};
    /* Decode attention over a short context is microseconds: run it here
     * rather than pay a hand-off (see rt_matmul). */
    size_t work = 0, jobs = n * (size_t)c->n_heads;
    for (size_t t = 0; t < n; t++)
        work += (st->pos[t] + 1) * (size_t)c->n_heads * hd;
    int arc = 0;
    if (work < ((size_t)1 << 18))
        for (size_t j = 0; j < jobs && !arc; j++)
            arc = attention_run(&aj, j, 0, err);
    else
        arc = rt_pool_run(m->pool, attention_run, &aj, jobs, err);
    if (arc)
        return airllm_err_prefix(err, "%s: attention", unit);
    if (rt_matmul(m->pool, l.wo, m->att_out, n, m->xb, err) || add_bias(l.bo, m->xb, n, H, w, err))
        return -1;
    for (size_t i = 0; i < n * H; i++)
        m->x[i] += m->xb[i];
    if (rt_tensor_vec(l.ffn_norm, w, H, err))
        return -1;
    for (size_t t = 0; t < n; t++)
        rmsnorm(m->xb + t * H, m->x + t * H, w, (int)H, c->rms_eps);
    if (l.router    ? moe(m, sl, unit, l.router, m->xb, n, err)
        : l.gate_up ? rt_mlp_halves(m, l.gate_up, l.down, m->xb, n, m->xb, err)
                    : mlp(m, l.gate, l.up, l.down, m->xb, n, m->xb, err))
        return -1;
    for (size_t i = 0; i < n * H; i++)
        m->x[i] += m->xb[i];
    return 0;
}

int rt_embed(rt_model *m, const int32_t *ids, size_t n, float *out, airllm_err *err)
{
    const rt_config *c = &m->cfg;
    rt_store *st = &m->store;
    size_t H = (size_t)c->hidden;
    if (st->embed_rows)
        return rt_store_embed_rows(st, ids, n, (int)H, out, err);
    rt_slot *sl;
    if (rt_store_acquire(st, (size_t)st->embed_unit, &sl, err))
        return -1;
    const rt_tensor *e = rt_slot_need(sl, st->units[st->embed_unit].file, c->embed_name,
                              (uint64_t)c->vocab, H, err);
    int rc = e ? 0 : -1;
    for (size_t t = 0; !rc && t < n; t++)
        rc = rt_tensor_row(e, (uint64_t)ids[t], out + t * H, err);
    rt_store_release(st, (size_t)st->embed_unit);
    return rc;
}

int rt_forward(rt_model *m, rt_seq **seqs, size_t n_seqs, float *logits, airllm_err *err)
{
    const rt_config *c = &m->cfg;
    rt_store *st_ = &m->store;
    size_t H = (size_t)c->hidden, n = 0;
    for (size_t i = 0; i < n_seqs; i++) {
        n += seqs[i]->n_ids - seqs[i]->n_cached;
        if (seqs[i]->n_ids > seqs[i]->ctx)
            return airllm_errf(err, "sequence longer than its KV cache (%zu positions)",
                               seqs[i]->ctx);
    }
    if (n == 0)
        return airllm_errf(err, "nothing to run");
    if (m->gpu) {
        /* the host only looks up the embeddings */
        if (n > m->max_tokens || !m->x) {
            free(m->x);
            m->x = malloc(sizeof(float) * n * H);
            m->max_tokens = m->x ? n : 0;
            if (!m->x)
                return airllm_errf(err, "out of memory for %zu tokens of embeddings", n);
        }
        if (rt_cuda_forward(m->gpu, m, seqs, n_seqs, logits, err))
            return -1;
        rt_norm_head_apply(m, logits, n_seqs);
        return 0;
    }
    if (ensure_buffers(m, n, err))
        return -1;
    if (m->spare_core)
        rt_pool_set_active(m->pool, n < 4 ? m->threads - 1 : m->threads);
    step st = {m, malloc(sizeof(rt_seq *) * n), malloc(sizeof(size_t) * n), n, 0,
               malloc(sizeof(float) * n * (size_t)c->head_dim)};
    int32_t *ids = malloc(sizeof(int32_t) * n);
    size_t *last = malloc(sizeof(size_t) * n_seqs);
    int rc = st.seq && st.pos && st.rope_cs && ids && last ? 0 : airllm_errf(err, "out of memory");
    size_t k = 0;
    for (size_t i = 0; !rc && i < n_seqs; i++) {
        for (size_t p = seqs[i]->n_cached; p < seqs[i]->n_ids; p++, k++) {
            st.seq[k] = seqs[i];
            st.pos[k] = p;
            ids[k] = seqs[i]->ids[p];
            /* the scalings of rt_family_a.c depend on the sequence's
             * length; plain RoPE (any rope_dim) is one table for all */
            if (c->rope_kind != RT_ROPE_PLAIN)
                rt_rope_token(c, p, seqs[i]->n_ids, seqs[i]->n_prompt,
                              st.rope_cs + k * (size_t)c->head_dim);
            else
                rope_angles(st.rope_cs + k * (size_t)c->head_dim, c->rope_dim,
                            m->rope_inv_freq, p);
        }
        last[i] = k - 1;
    }
    /* embeddings */
    double t0 = airllm_now();
    rt_slot *sl = NULL;
    if (!rc)
        rc = rt_embed(m, ids, n, m->x, err);
    /* layers */
    for (size_t u = 0; !rc && u < st_->n_units; u++) {
        rt_unit *un = &st_->units[u];
        if (un->kind != AIRLLM_UNIT_LAYER)
            continue;
        if ((rc = rt_store_acquire(st_, u, &sl, err)))
            break;
        double c0 = airllm_now();
        st.layer = un->layer;
        rc = layer_forward(m, &st, sl, un->file, err);
        st_->unit_compute_s[u] += airllm_now() - c0;
        rt_store_release(st_, u);
    }
    /* final norm on each sequence's last token, then the head */
    float *xl = m->xb;
    if (!rc && !(rc = rt_store_acquire(st_, (size_t)st_->norm_unit, &sl, err))) {
        const rt_tensor *nw = rt_slot_find(sl, c->norm_name);
        if (!nw)
            rc = airllm_errf(err, "%s: no norm weight", st_->units[st_->norm_unit].file);
        if (!rc)
            rc = rt_tensor_vec(nw, m->vec, H, err);
        for (size_t i = 0; !rc && i < n_seqs; i++)
            rmsnorm(m->att_out + i * H, m->x + last[i] * H, m->vec, (int)H, c->rms_eps);
        rt_store_release(st_, (size_t)st_->norm_unit);
        memcpy(xl, m->att_out, sizeof(float) * n_seqs * H);
    }
    if (!rc) {
        size_t hu = st_->head_unit >= 0 ? (size_t)st_->head_unit : (size_t)st_->embed_unit;
        if (!(rc = rt_store_acquire(st_, hu, &sl, err))) {
            const rt_tensor *hw = st_->head_unit >= 0
                                      ? rt_slot_need(sl, st_->units[hu].file, c->head_name,
                                             (uint64_t)c->vocab, H, err)
                                      : rt_slot_need(sl, st_->units[hu].file, c->embed_name,
                                             (uint64_t)c->vocab, H, err);
            double c0 = airllm_now();
            rc = hw ? rt_matmul(m->pool, hw, xl, n_seqs, logits, err) : -1;
            st_->unit_compute_s[hu] += airllm_now() - c0;
            rt_store_release(st_, hu);
        }
    }
    if (!rc)
        rt_norm_head_apply(m, logits, n_seqs);
    if (!rc)
        for (size_t i = 0; i < n_seqs; i++)
            seqs[i]->n_cached = seqs[i]->n_ids;
    m->compute_s += airllm_now() - t0;
    free(st.seq);
    free(st.pos);
    free(st.rope_cs);
    free(ids);
    free(last);
    return rc;
}
