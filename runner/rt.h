/* airllm-run internals: model configuration, the unit store (resident and
 * streamed layers, prefetching), the thread pool and the forward pass.
 * Everything here returns a status with a message (airllm_err); only
 * airllm-run.c prints. */
#ifndef AIRLLM_RT_H
#define AIRLLM_RT_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "airllm_clock.h" /* airllm_now */
#include "airllm_container.h"
#include "airllm_err.h"
#include "airllm_manifest.h"
#include "airllm_matmul.h"

/* ---- configuration (config.json) ---- */

typedef enum {
    RT_ARCH_LLAMA,   /* Llama 1/2/3/3.1 (and SmolLM2, TinyLlama, ...) */
    RT_ARCH_MISTRAL, /* Llama + sliding window */
    RT_ARCH_QWEN2,   /* q/k/v biases */
    RT_ARCH_QWEN3,   /* per-head q/k RMSNorm */
    RT_ARCH_MIXTRAL, /* sliding window + top-k MoE */
    RT_ARCH_CHATGLM, /* ChatGLM2/3: fused qkv and gate|up, RoPE on half a head */
    RT_ARCH_BAICHUAN,/* Baichuan 1/2: fused W_pack; RoPE (7B) or ALiBi (13B) */
    RT_ARCH_QWEN,      /* Qwen v1: fused c_attn, partial RoPE, NTK alpha, logn */
    RT_ARCH_INTERNLM2, /* fused wqkv grouped by KV head; dynamic/linear RoPE */
    RT_ARCH_INTERNLM,  /* InternLM v1: Llama + q/k/v/o biases; dynamic RoPE re-rotating keys */
} rt_arch;

/* RoPE scalings beyond llama3 (rt_family_a.c computes them per token). */
typedef enum {
    RT_ROPE_PLAIN = 0,
    RT_ROPE_LINEAR,      /* InternLM2 "linear": angle = (pos / factor) * inv_freq */
    RT_ROPE_DYNAMIC,     /* InternLM2 "dynamic": base grows with the length so far */
    RT_ROPE_QWEN_NTK,    /* Qwen v1 use_dynamic_ntk: alpha fixed by the prompt length */
    RT_ROPE_DYNAMIC_V1,  /* InternLM v1 "dynamic": the DYNAMIC base, and every cached
                          * key re-rotated with the current one (rt_rerotate_keys) */
} rt_rope_kind;

/* Row order of a fused q/k/v matrix [Q + 2 KV, H] (rt_qkv_split). */
typedef enum {
    RT_QKV_CONCAT = 0, /* q | k | v, each head-major: ChatGLM (its k and v
                        * groups follow all of q), Baichuan W_pack, Qwen c_attn */
    RT_QKV_GROUPED,    /* InternLM2: per KV head j, its G = heads / kv_heads
                        * query heads, then k_j, then v_j (hd rows each) */
} rt_qkv_layout;

typedef struct {
    rt_arch arch;
    char model_type[64];
    int n_layers, hidden, intermediate, n_heads, n_kv_heads, head_dim, vocab;
    int max_pos;
    float rms_eps;
    double rope_theta;
    /* rope_scaling type llama3 */
    bool rope_llama3;
    double rope_factor, rope_low_freq, rope_high_freq, rope_orig_max;
    /* RoPE rotates the first rope_dim dims of each head (head_dim; head_dim
     * / 2 for ChatGLM; int(head_dim * rotary_pct) for Qwen v1), as
     * rotate-half pairs (i, i + rope_dim / 2) or, rope_pairs_adjacent, as
     * (2i, 2i + 1) (ChatGLM). */
    int rope_dim;
    bool rope_pairs_adjacent;
    bool alibi;     /* Baichuan 13B: ALiBi biases, no RoPE */
    bool norm_head; /* Baichuan2: logits use L2-normalized LM head rows */
    /* Name suffixes of the embedding, final norm and LM head tensors (the
     * family's spelling). */
    const char *embed_name, *norm_name, *head_name;
    rt_qkv_layout qkv_layout; /* of a fused wqkv (rt_layer) */
    int sliding_window; /* 0: none */
    int n_experts, n_experts_used;
    /* Qwen v1 and InternLM2 (rt_family_a.c) */
    rt_rope_kind rope_kind;
    double rope_scale;   /* linear/dynamic factor */
    int seq_length;      /* Qwen: the length logn and NTK are keyed on */
    bool logn_attn;      /* Qwen use_logn_attn */
    int ctx_max;         /* positions a sequence may hold: max_pos unless a
                          * scaling lets the family run past it */
    bool tie_embeddings;
    int32_t bos_id, eos_id; /* -1 when absent */
    int32_t eos_ids[8];     /* config may list several EOS ids */
    int n_eos;
} rt_config;

/* config.json of DIR, or len bytes of such a file (named path in messages).
 * 0 ok; RT_CONFIG_UNSUPPORTED for a valid configuration this runner does
 * not implement (another architecture, RoPE scaling, activation, per-layer
 * windows): airllm-verify skips the runner's checks then; -1 for a value
 * that is wrong whoever reads it. */
#define RT_CONFIG_UNSUPPORTED (-2)
int rt_config_load(const char *dir, rt_config *c, airllm_err *err);
int rt_config_parse(const char *text, size_t len, const char *path, rt_config *c,
                    airllm_err *err);

/* Checks a unit's header against config: every tensor the forward pass
 * takes from it is there, in a dtype the kernels compute with, with the
 * shape config gives it; for the embedding, that tied_to (the manifest's
 * tied LM head, or NULL) names the embedding matrix. Messages name the
 * tensor, not the file (rt_check.c; airllm-run and airllm-verify). */
int rt_check_unit(const rt_config *c, const airllm_ct_header *h, const char *tied_to,
                  airllm_err *err);

/* ---- weights of one unit, as the kernels see them ---- */

typedef struct {
    const char *name;
    airllm_encoding enc;  /* raw (after zstd decoding, too) or nf4/fp4/int8 */
    airllm_dtype dtype;
    const uint8_t *data;  /* raw elements, or quantized codes */
    const float *absmax;  /* quantized: one per block */
    uint32_t block;
    uint64_t rows, cols;  /* 2-D: [rows, cols]; 1-D: rows = 1, cols = n */
    bool loaded;          /* false: an MoE expert not read yet (rt_store_ensure) */
    uint32_t index;       /* in its unit's header */
} rt_tensor;

/* A unit file mapped read-only (rt_map.c): base, len bytes; entry is its
 * place in the SIGBUS handler's table, -1 when closed. */
typedef struct {
    const uint8_t *base;
    size_t len;
    int entry;
} rt_mapping;

/* A unit's bytes in memory: the file read whole into an aligned buffer, or
 * mapped in place (zero-copy streaming), plus decoded zstd tensors and
 * decompressed double-quant scales. */
typedef struct {
    const uint8_t *bytes; /* the unit's file bytes now: buf, or map.base */
    uint8_t *buf;       /* file bytes read, 4096-aligned, cap bytes */
    size_t cap;
    rt_mapping map;     /* the file mapped instead (base NULL: not mapped) */
    uint8_t *dec;       /* decoded zstd tensors, dec_cap bytes */
    size_t dec_cap;
    float *absmax;      /* decompressed double-quant absmax, absmax_cap floats */
    size_t absmax_cap;
    long unit;          /* which unit it holds, -1: none */
    rt_tensor *tensors; /* n_tensors views into the above */
    size_t n_tensors;
    double read_s, decode_s; /* of the last load */
} rt_slot;

/* ---- the unit store ---- */

typedef struct {
    char file[64];
    airllm_unit_kind kind;
    int layer;
    uint64_t file_size;
    char sha256[65];
    airllm_ct_header hdr; /* as read at startup; each load is checked against it */
    size_t need_buf, need_dec, need_absmax; /* bytes / floats a slot needs */
    size_t *dec_off, *abs_off; /* per tensor: where its decoded data goes */
    bool moe;             /* has expert tensors: streamed, they are read on demand */
    bool mapped;          /* streamed zero-copy: mapped, not read (rt_store_start) */
    bool scales_ok;       /* its quantized scales were found finite at a load */
    bool resident;
    bool external;        /* held by a device backend (loaded once through
                           * rt_store_load): neither resident here nor streamed */
    rt_slot *slot;        /* resident: its own slot */
} rt_unit;

/* Where slot memory comes from: NULL functions mean posix_memalign/free. A
 * device backend gives pinned (page-locked) host memory, so copies to the
 * device run asynchronously at full bus speed. alloc must return memory
 * aligned to 4096 (O_DIRECT reads go straight into it). */
typedef struct {
    void *(*alloc)(size_t bytes, void *ctx);
    void (*free)(void *p, void *ctx);
    void *ctx;
} rt_allocator;

/* What each load of a unit checks (--verify-load). */
typedef enum {
    RT_VERIFY_OFF = 0,  /* nothing beyond the header: for measurement only */
    RT_VERIFY_FAST = 1, /* each tensor's XXH3 (format 1.2 files), the default */
    RT_VERIFY_FULL = 2, /* the whole file's SHA-256 against the manifest */
} rt_verify;

typedef struct rt_store {
    char dir[4096];
    airllm_manifest mf;
    rt_unit *units;
    size_t n_units;
    long embed_unit, norm_unit, head_unit; /* -1 when absent (tied head) */
    long first_layer_unit;
    rt_verify verify_load;
    size_t n_unchecked; /* unit files without checksums (format 1.0/1.1) */
    bool direct, prefetch;
    bool map_streamed; /* stream eligible units by mapping them (AIRLLM_STREAM_READ) */
    int readers;     /* threads reading each whole unit (1: the loader alone) */
    bool embed_rows; /* embedding rows are read from the file on demand */
    rt_allocator alloc;
    uint64_t resident_bytes;
    /* streaming: units not resident, in execution order, cycled */
    size_t *stream;
    size_t n_stream;
    rt_slot sslots[2];
    /* prefetcher */
    pthread_t thread;
    bool thread_started;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    size_t next_load;  /* index into stream of the next unit to load */
    size_t next_use;   /* index into stream of the next unit the model takes */
    int slot_state[2]; /* 0 free, 1 loading, 2 ready, 3 in use */
    size_t slot_seq[2];/* stream sequence number held */
    /* A streamed slot's fast check, when deferred past its read (raw and
     * quantized units): its tensors' XXH3 are computed by whichever of the
     * prefetch thread and the model is free, each tensor claimed under the
     * lock, which owns these fields. The prefetch thread reads first and
     * hashes only when it cannot start a read: from the page cache the
     * read is the slower side, and the model's core has the slack
     * (docs/runner.md "Load checks"). The model uses a slot only once
     * chk_done == chk_next and every tensor is claimed, or one failed. */
    uint32_t chk_n[2], chk_next[2], chk_done[2]; /* chk_n 0: nothing pending */
    long chk_bad[2];      /* lowest failed tensor, -1 */
    airllm_err chk_err[2];
    bool stop, failed;
    airllm_err load_err;
    /* statistics */
    double read_s, decode_s, wait_s;
    uint64_t bytes_read;
    double expert_read_s; /* on-demand expert reads (in the compute thread) */
    double *unit_read_s, *unit_decode_s, *unit_wait_s, *unit_compute_s;
} rt_store;

/* Opening MODEL_DIR, in two halves. The first reads the manifest and every
 * unit header and sizes the units (need_*); it allocates no slot. Between
 * the halves a device backend marks the units it holds itself (external). */
int rt_store_scan(rt_store *s, const char *dir, bool prefetch, bool direct,
                  rt_verify verify_load, airllm_err *err);
/* The second half: which non-external units stay resident within budget
 * bytes (UINT64_MAX: all), and tiny ones (at most RT_TINY_UNIT bytes and
 * 1/64 of the largest unit) past it, loaded now; the stream list; slots
 * from alloc (NULL: the default); the prefetcher. */
#define RT_TINY_UNIT ((uint64_t)1 << 20)
int rt_store_start(rt_store *s, uint64_t budget, const rt_allocator *alloc, airllm_err *err);
/* Whether embedding rows can be read straight from the embedding's file
 * (a raw matrix, or a plainly quantized one with whole blocks per row). */
bool rt_store_rows_readable(const rt_store *s);
/* Bytes a unit occupies in a slot (file, decoded zstd, absmax). */
uint64_t rt_unit_bytes(const rt_unit *u);
/* A slot of the store's allocator big enough for any of the n units, and a
 * load of one (every tensor, experts included): how a backend reads its
 * external units. */
int rt_store_slot_new(rt_store *s, const size_t *units, size_t n, rt_slot *sl, airllm_err *err);
int rt_store_load(rt_store *s, size_t ui, rt_slot *sl, airllm_err *err);
/* Reads unit ui's file and checks every tensor against its format 1.2 check
 * block (0 for older files): how a header that fails the config checks at
 * open is told apart from a damaged one (the message then names the
 * damaged tensor, not a "missing" one). */
int rt_store_check_unit(rt_store *s, size_t ui, airllm_err *err);
void rt_store_slot_free(rt_store *s, rt_slot *sl);
void rt_store_close(rt_store *s);
/* The unit's tensors, in memory until rt_store_release: a resident slot, or a
 * streamed one (waiting for the prefetcher, or loading it now without
 * prefetch). Streamed units must be taken in execution order. */
int rt_store_acquire(rt_store *s, size_t unit, rt_slot **out, airllm_err *err);
void rt_store_release(rt_store *s, size_t unit);
/* Whether the prefetch thread has CPU work per streamed unit (a copy, a
 * decode, a hash pass) rather than only page faults (mapped units with
 * --verify-load=off): then light steps leave it a core (rt_model.c). */
bool rt_store_prefetch_busy(const rt_store *s);
/* Stops the prefetch thread (no more acquires follow); after it, the
 * statistics are read without the lock. rt_store_close calls it too. */
void rt_store_stop(rt_store *s);
/* Bytes loaded so far (read, or mapped), while the prefetch thread runs. */
uint64_t rt_store_bytes_read(const rt_store *s);
/* With embed_rows: reads the rows of the embedding matrix that ids need into
 * out (n x hidden floats): only those rows are read from disk. */
int rt_store_embed_rows(rt_store *s, const int32_t *ids, size_t n, int hidden, float *out,
                        airllm_err *err);
/* Makes sure an expert tensor of a streamed MoE layer is in memory: the
 * prefetcher reads only the other tensors of such a layer, and the model
 * asks for the experts its router picked. */
int rt_store_ensure(rt_store *s, rt_slot *sl, const rt_tensor *t, airllm_err *err);
/* A tensor of a slot by name suffix (e.g. "self_attn.q_proj.weight"), NULL if none. */
const rt_tensor *rt_slot_find(const rt_slot *sl, const char *suffix);
/* The same, required to exist with shape [rows, cols] (1-D: [1, n]); NULL
 * and a message naming unit otherwise. */
const rt_tensor *rt_slot_need(const rt_slot *sl, const char *unit, const char *suffix,
                              uint64_t rows, uint64_t cols, airllm_err *err);

/* ---- thread pool ---- */

typedef struct rt_pool rt_pool;
int rt_pool_new(int threads, rt_pool **out, airllm_err *err);
void rt_pool_free(rt_pool *p);
int rt_pool_threads(const rt_pool *p); /* taking part now */
/* Uses only the first `threads` threads (the caller included) for the next
 * runs; the others sleep. Call between runs. */
void rt_pool_set_active(rt_pool *p, int threads);
/* A job: returns 0, or -1 with a message in err (the calling thread's own
 * slot, which nothing else writes during the run). */
typedef int (*rt_pool_job)(void *ctx, size_t job, int thread, airllm_err *err);
/* Runs fn(ctx, job, thread, err) for job in [0, n_jobs) on all threads;
 * returns when every job is done: 0, or -1 with the message of the failed
 * job of lowest index in err (the same whatever the thread count). */
int rt_pool_run(rt_pool *p, rt_pool_job fn, void *ctx, size_t n_jobs, airllm_err *err);

/* ---- kernels ---- */

/* y[t, r] = sum_k W[r, k] x[t, k], t < n, every row of W, on the pool. */
int rt_matmul(rt_pool *p, const rt_tensor *w, const float *x, size_t n, float *y,
              airllm_err *err);
/* The matmul kernels' view of a tensor (rt_tensor.c). */
airllm_mm_weight rt_tensor_mm(const rt_tensor *w);
/* One row of W (cols floats), widened/dequantized. */
int rt_tensor_row(const rt_tensor *w, uint64_t r, float *out, airllm_err *err);
/* A 1-D tensor (norm weight, bias) as floats. */
int rt_tensor_vec(const rt_tensor *w, float *out, size_t n, airllm_err *err);

/* ---- one layer's tensors by role (rt_layer.c) ---- */

/* Bound once per layer and step by rt_layer_bind, which checks every shape
 * against the config; both backends compute from these roles only. Shapes
 * (rows x cols), H hidden, Q = heads * head_dim, KV = kv_heads * head_dim,
 * I intermediate, E experts: */
typedef struct {
    const rt_tensor *attn_norm, *ffn_norm; /* [1, H] */
    const rt_tensor *wq, *wk, *wv, *wo;    /* [Q, H] [KV, H] [KV, H] [H, Q] */
    const rt_tensor *bq, *bk, *bv;         /* [1, Q] [1, KV] [1, KV], or NULL */
    const rt_tensor *q_norm, *k_norm;      /* Qwen3: [1, head_dim] each, else NULL */
    const rt_tensor *gate, *up, *down;     /* [I, H] [I, H] [H, I]; NULL with MoE */
    const rt_tensor *router;               /* Mixtral: [E, H], else NULL */
    /* Fused matrices, used whole by one matmul whose output is split:
     * wqkv [Q + 2 KV, H] (row layout: rt_qkv_layout), bqkv [Q + 2 KV] its
     * bias or NULL (ChatGLM, Baichuan, Qwen v1, InternLM2); gate_up [2 I, H]
     * (rows gate | up, ChatGLM). wq/wk/wv or gate/up are NULL when these
     * are set. */
    const rt_tensor *wqkv, *bqkv, *gate_up;
    const rt_tensor *bo; /* [H] or NULL (InternLM2 bias) */
} rt_layer;

/* One role of a layer: the tensor name's suffix, its shape from the config
 * (rows 0: a vector of cols values in any shape), whether a layer may lack
 * it, and where rt_layer_bind puts it (an offset into rt_layer). */
typedef struct {
    const char *suffix;
    uint64_t rows, cols;
    bool optional;
    size_t field;
} rt_role;
#define RT_LAYER_ROLES_MAX 24
/* The roles of a layer of c's family, in binding order (experts apart):
 * rt_layer_bind binds them, rt_check_unit checks unit headers against them. */
size_t rt_layer_roles(const rt_config *c, rt_role out[RT_LAYER_ROLES_MAX]);
/* Shapes of an expert's w1, w3, w2 (names: rt_moe_expert_names). */
void rt_expert_shapes(const rt_config *c, uint64_t rows[3], uint64_t cols[3]);
/* The layer's tensors from its slot (unit names it in messages): 0, or -1
 * with a message naming the unit and the missing or misshapen tensor. */
int rt_layer_bind(const rt_slot *sl, const char *unit, const rt_config *c, rt_layer *l,
                  airllm_err *err);
/* Expert e of an MoE layer: w[0] w1 (gate) [I, H], w[1] w3 (up) [I, H],
 * w[2] w2 (down) [H, I]. A streamed layer may not hold their bytes yet
 * (rt_store_ensure). */
int rt_layer_expert(const rt_slot *sl, const char *unit, const rt_config *c, size_t e,
                    const rt_tensor *w[3], airllm_err *err);

/* ---- the model ---- */

struct rt_cuda;

/* --device cuda[:N] (runner/rt_cuda.h). */
typedef struct {
    int device;      /* cuda:N */
    uint64_t budget; /* bytes of weights in device memory; UINT64_MAX: what is free,
                      * less a reserve for the KV cache and work buffers */
    bool kv_host;    /* keep KV caches in pinned host memory the GPU reads */
} rt_cuda_opts;

typedef struct {
    int32_t *ids;        /* prompt + generated */
    size_t n_ids, cap;
    size_t n_prompt;
    float *k, *v;        /* KV cache: [layer][pos][kv_heads * head_dim] */
    size_t ctx;          /* positions the cache holds */
    size_t n_cached;     /* positions already in the cache */
    bool done;
    struct rt_cuda *gpu; /* the device backend holding k/v, or NULL */
    void *dev;           /* its per-sequence state (device KV cache) */
} rt_seq;

typedef struct {
    rt_config cfg;
    rt_store store;
    rt_pool *pool;
    /* Per-step work buffers, sized for n = max_tokens tokens of a step
     * (ensure_buffers); H hidden, Q = heads * head_dim, KV = kv_heads *
     * head_dim, I intermediate, E experts (1 without MoE). */
    size_t max_tokens;
    float *x;       /* [n, H]: the residual stream */
    float *xb;      /* [n, max(H, Q)]: normed input of a block, block output */
    float *q;       /* [n, Q] */
    float *k, *v;   /* [n, KV]: this step's keys/values, before the KV cache */
    float *att_out; /* [n, max(Q, H)]: attention output; MoE: expert output */
    float *hb;      /* [n, I]: silu(gate) * up */
    float *hb2;     /* [n, max(I, H)]: up */
    float *moe_acc; /* [n, H]: weighted sum of the experts */
    float *router;  /* [n, E]: router logits */
    float *scores;  /* [threads, max_pos]: one attention row per pool thread */
    float *rope_inv_freq; /* [rope_dim / 2] */
    float *fused;   /* [n, max(Q + 2 KV, 2 I)]: output of a fused matmul */
    float *alibi_slopes; /* [n_heads] with ALiBi, else NULL */
    float *head_scale;   /* [vocab]: NormHead's 1 / ||row||, else NULL */
    float *vec;     /* [max(H, I, Q + 2 KV) + 64]: scratch for 1-D tensors (norms, biases) */
    int threads;        /* in the pool */
    bool spare_core;    /* leave one core to the prefetch thread in light steps */
    double compute_s;
    struct rt_cuda *gpu; /* --device cuda: the forward pass runs there */
} rt_model;

/* threads <= 0: all cores; then, when some units stream with prefetch, steps
 * of fewer than 4 tokens (decode) leave one core to the prefetch thread. */
/* io_threads <= 0: 1 on the CPU (its cores compute), up to 8 (half the
 * cores) with cuda. */
int rt_model_open(rt_model *m, const char *dir, uint64_t budget, bool prefetch, bool direct,
                  rt_verify verify_load, int threads, int io_threads, const rt_cuda_opts *cuda,
                  airllm_err *err);
void rt_model_close(rt_model *m);
int rt_seq_init(rt_seq *s, const rt_model *m, const int32_t *prompt, size_t n, size_t ctx,
                airllm_err *err);
void rt_seq_free(rt_seq *s);
/* Runs every not-yet-cached token of the given sequences through the model
 * (prefill: the whole prompt at once; decode: one token each) and writes the
 * logits of each sequence's last token to logits + i * vocab. */
int rt_forward(rt_model *m, rt_seq **seqs, size_t n_seqs, float *logits, airllm_err *err);

/* ---- pieces the device backend shares ---- */

/* Embedding rows of ids into out (n x hidden floats), on the host. */
int rt_embed(rt_model *m, const int32_t *ids, size_t n, float *out, airllm_err *err);
/* Mixtral routing from router logits [n, n_experts]: sel/wsel [n, k] get each
 * token's top k experts (ties to the lower index) and their renormalized
 * softmax weights. */
void rt_moe_route(const rt_config *c, const float *router, size_t n, int *sel, float *wsel);
/* RoPE inverse frequencies [rope_dim / 2], llama3 scaling included. */
void rt_rope_init(const rt_config *c, float *inv);
/* Fused matrices used whole (rt_fused.c): q, k, v of the layer's wqkv
 * (and bqkv) for the n rows of x into m->q, m->k, m->v; and ChatGLM's MLP,
 * out = down(silu(first half) * second half of gate_up h). */
int rt_qkv_fused(rt_model *m, const rt_layer *l, const float *x, size_t n, airllm_err *err);
/* One token's fused projection y [Q + 2 KV] into q [Q], k [KV], v [KV] by
 * c->qkv_layout (rt_fused.c). */
void rt_qkv_split(const rt_config *c, const float *y, float *q, float *k, float *v);
int rt_mlp_halves(rt_model *m, const rt_tensor *gate_up, const rt_tensor *down, const float *h,
                  size_t n, float *out, airllm_err *err);
/* ALiBi slopes of n heads (Baichuan's rule, non-powers of two included). */
void rt_alibi_slopes(int n, float *out);
/* NormHead: out[v] = 1 / max(||row v of the LM head||, 1e-12), from the
 * head as stored (dequantized), read once at open (rt_family_baichuan.c). */
int rt_norm_head_init(rt_model *m, airllm_err *err);
/* logits [n, vocab] *= head_scale, when the model has a NormHead. */
void rt_norm_head_apply(const rt_model *m, float *logits, size_t n);

/* ---- Qwen v1 and InternLM2 pieces (rt_family_a.c) ---- */

/* The layer roles of Qwen v1 and InternLM2 (rt_layer_roles calls it). */
size_t rt_roles_family_a(const rt_config *c, rt_role *out);
/* cos (cs[i]) and sin (cs[rope_dim / 2 + i]) of position pos's angles,
 * i < rope_dim / 2, for a token computed in a step after which its sequence
 * holds len positions, its prompt having n_prompt (the scalings depend on
 * them: see rt_family_a.c). */
void rt_rope_token(const rt_config *c, size_t pos, size_t len, size_t n_prompt, float *cs);
/* Qwen use_logn_attn: the factor the query at position pos is multiplied
 * by (1 when off, or while pos + 1 <= seq_length). */
float rt_logn_scale(const rt_config *c, size_t pos);
/* InternLM v1 (RT_ROPE_DYNAMIC_V1): its reference caches keys before RoPE
 * and rotates all of them each step with the base of the current length.
 * Here keys are cached rotated; this turns the n_pos cached keys of one
 * layer (rows of stride floats, kv_heads heads each) from the rotation of a
 * sequence of len_old positions to that of len_new. false: no change was
 * needed (the base did not move). */
bool rt_rerotate_keys(const rt_config *c, float *k, size_t n_pos, size_t stride, size_t len_old,
                      size_t len_new);
/* inv[i] = the inverse frequency i < rope_dim / 2 a token of a sequence of
 * len positions (prompt n_prompt) rotates with, as rt_rope_token uses it. */
void rt_rope_inv(const rt_config *c, size_t len, size_t n_prompt, float *inv);

/* Expert e's w1 (gate), w3 (up) and w2 (down) tensor name suffixes. */
void rt_moe_expert_names(size_t e, char names[3][96]);

#endif
