/* gen_llama7b: writes a synthetic Llama-2-7B-shaped BF16 checkpoint in the
 * Hugging Face layout, for benchmarking airllm-split / airllm-verify.
 *
 *   cc -O2 -o gen_llama7b scripts/gen_llama7b.c
 *   gen_llama7b OUT_DIR [--layers N] [--max-shard-size BYTES] [--seed S]
 *
 * Writes config.json (Llama-2-7b), generation_config.json, a tiny tokenizer,
 * model-0000i-of-0000K.safetensors shards and model.safetensors.index.json.
 * Tensors are assigned to shards in module order the way huggingface_hub
 * does (a new shard starts when the next tensor would pass max_shard_size,
 * default 2 GB = 2e9 bytes); inside a shard the header and the data are
 * sorted by name, as the safetensors library writes them. The index is
 * written last (write-then-rename), so its presence marks a complete run.
 *
 * Weights: BF16 values of N(0, 0.02) (norm weights: 1 + N(0, 0.05)). Each
 * value is an entry of a 65536-entry table of pregenerated normal values
 * (Irwin-Hall sums of 12 uniforms), picked by 16 bits of an xorshift64*
 * stream seeded per tensor from its name. This is as fast as copying from a
 * reused random pool, but never repeats, so zstd (even with long-distance
 * matching) sees the entropy of real BF16 weights, not repeated blocks.
 *
 * Exit status: 0 ok, 1 failure, 2 usage. C11, standard library + POSIX. */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <stdarg.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define HIDDEN 4096ULL
#define INTER 11008ULL
#define VOCAB 32000ULL
#define MAX_TENSORS 4096
#define BUF_BYTES (16u << 20)

typedef struct {
    char name[96];
    uint64_t rows, cols; /* cols == 0: 1-D [rows] */
    int norm;
    int shard;
    uint64_t bytes;
} tensor;

static tensor T[MAX_TENSORS];
static int NT;
static uint16_t weight_tab[65536], norm_tab[65536];
static uint16_t *buf;
static const char *prog = "gen_llama7b";

static void die(const char *what, const char *path) {
    fprintf(stderr, "%s: %s %s: %s\n", prog, what, path ? path : "", strerror(errno));
    exit(1);
}

static void add(const char *name, uint64_t rows, uint64_t cols, int norm) {
    if (NT >= MAX_TENSORS) {
        fprintf(stderr, "%s: too many tensors\n", prog);
        exit(2);
    }
    tensor *t = &T[NT++];
    snprintf(t->name, sizeof t->name, "%s", name);
    t->rows = rows;
    t->cols = cols;
    t->norm = norm;
    t->bytes = rows * (cols ? cols : 1) * 2;
}

static uint64_t splitmix(uint64_t *s) {
    uint64_t z = (*s += 0x9E3779B97F4A7C15ULL);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
}

static uint16_t f32_to_bf16(float f) {
    uint32_t b;
    memcpy(&b, &f, 4);
    b += 0x7FFFu + ((b >> 16) & 1u); /* round to nearest, ties to even */
    return (uint16_t)(b >> 16);
}

static void make_tables(uint64_t seed) {
    uint64_t s = seed ^ 0x5EED5EED5EEDULL;
    for (int i = 0; i < 65536; i++) {
        double x = 0;
        for (int k = 0; k < 12; k++)
            x += (double)(splitmix(&s) >> 11) * (1.0 / 9007199254740992.0);
        x -= 6.0; /* Irwin-Hall(12) - 6: mean 0, std 1 */
        weight_tab[i] = f32_to_bf16((float)(0.02 * x));
        norm_tab[i] = f32_to_bf16((float)(1.0 + 0.05 * x));
    }
}

static void write_all(int fd, const void *p, size_t n, const char *path) {
    const char *c = p;
    while (n) {
        ssize_t w = write(fd, c, n);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            die("write", path);
        }
        c += w;
        n -= (size_t)w;
    }
}

/* Streams one tensor's values into fd through the 16 MiB buffer. */
static void write_tensor(int fd, const tensor *t, uint64_t seed, const char *path) {
    uint64_t h = 0xCBF29CE484222325ULL; /* FNV-1a of the name */
    for (const char *c = t->name; *c; c++)
        h = (h ^ (uint8_t)*c) * 0x100000001B3ULL;
    uint64_t s = h ^ seed;
    uint64_t x = splitmix(&s) | 1;
    const uint16_t *tab = t->norm ? norm_tab : weight_tab;
    uint64_t left = t->bytes / 2;
    const size_t cap = BUF_BYTES / 2;
    while (left) {
        size_t n = left < cap ? (size_t)left : cap;
        size_t i = 0;
        for (; i + 4 <= n; i += 4) {
            x ^= x >> 12;
            x ^= x << 25;
            x ^= x >> 27;
            uint64_t r = x * 0x2545F4914F6CDD1DULL;
            buf[i] = tab[r & 0xFFFF];
            buf[i + 1] = tab[(r >> 16) & 0xFFFF];
            buf[i + 2] = tab[(r >> 32) & 0xFFFF];
            buf[i + 3] = tab[r >> 48];
        }
        for (; i < n; i++) {
            x ^= x >> 12;
            x ^= x << 25;
            x ^= x >> 27;
            buf[i] = tab[(x * 0x2545F4914F6CDD1DULL) >> 48];
        }
        write_all(fd, buf, n * 2, path);
        left -= n;
    }
}

static int cmp_name(const void *a, const void *b) {
    return strcmp(T[*(const int *)a].name, T[*(const int *)b].name);
}

static void write_text(const char *dir, const char *file, const char *text) {
    char path[4096], tmp[4200];
    snprintf(path, sizeof path, "%s/%s", dir, file);
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    FILE *f = fopen(tmp, "w");
    if (!f)
        die("cannot create", tmp);
    if (fputs(text, f) == EOF || fclose(f) != 0)
        die("cannot write", tmp);
    if (rename(tmp, path) != 0)
        die("cannot rename", tmp);
}

/* Appends to a growing string. */
typedef struct {
    char *p;
    size_t len, cap;
} sbuf;

static void sb_printf(sbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void sb_printf(sbuf *b, const char *fmt, ...) {
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(b->p ? b->p + b->len : NULL, b->p ? b->cap - b->len : 0, fmt, ap);
        va_end(ap);
        if (n < 0) {
            fprintf(stderr, "%s: vsnprintf failed\n", prog);
            exit(1);
        }
        if (b->p && b->len + (size_t)n < b->cap) {
            b->len += (size_t)n;
            return;
        }
        size_t cap = b->cap ? b->cap * 2 : 4096;
        while (cap < b->len + (size_t)n + 1)
            cap *= 2;
        b->p = realloc(b->p, cap);
        if (!b->p) {
            fprintf(stderr, "%s: out of memory\n", prog);
            exit(1);
        }
        b->cap = cap;
    }
}

static void usage(void) {
    fprintf(stderr,
            "usage: %s OUT_DIR [--layers N] [--max-shard-size BYTES] [--seed S]\n"
            "Writes a synthetic Llama-2-7B-shaped BF16 Hugging Face checkpoint.\n",
            prog);
    exit(2);
}

static uint64_t parse_u64(const char *s, const char *opt) {
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || end == s || *end || s[0] == '-') {
        fprintf(stderr, "%s: bad value for %s: %s\n", prog, opt, s);
        exit(2);
    }
    return v;
}

int main(int argc, char **argv) {
    const char *out = NULL;
    uint64_t layers = 32, max_shard = 2000000000ULL, seed = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--layers") && i + 1 < argc)
            layers = parse_u64(argv[++i], "--layers");
        else if (!strcmp(argv[i], "--max-shard-size") && i + 1 < argc)
            max_shard = parse_u64(argv[++i], "--max-shard-size");
        else if (!strcmp(argv[i], "--seed") && i + 1 < argc)
            seed = parse_u64(argv[++i], "--seed");
        else if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help"))
            usage();
        else if (argv[i][0] == '-' || out)
            usage();
        else
            out = argv[i];
    }
    if (!out || layers < 1 || layers > 400 || max_shard < 1)
        usage();

    /* Tensors in module (state_dict) order. */
    char nm[96];
    add("model.embed_tokens.weight", VOCAB, HIDDEN, 0);
    for (uint64_t l = 0; l < layers; l++) {
        static const char *attn[] = {"q_proj", "k_proj", "v_proj", "o_proj"};
        for (int k = 0; k < 4; k++) {
            snprintf(nm, sizeof nm, "model.layers.%llu.self_attn.%s.weight",
                     (unsigned long long)l, attn[k]);
            add(nm, HIDDEN, HIDDEN, 0);
        }
        snprintf(nm, sizeof nm, "model.layers.%llu.mlp.gate_proj.weight", (unsigned long long)l);
        add(nm, INTER, HIDDEN, 0);
        snprintf(nm, sizeof nm, "model.layers.%llu.mlp.up_proj.weight", (unsigned long long)l);
        add(nm, INTER, HIDDEN, 0);
        snprintf(nm, sizeof nm, "model.layers.%llu.mlp.down_proj.weight", (unsigned long long)l);
        add(nm, HIDDEN, INTER, 0);
        snprintf(nm, sizeof nm, "model.layers.%llu.input_layernorm.weight", (unsigned long long)l);
        add(nm, HIDDEN, 0, 1);
        snprintf(nm, sizeof nm, "model.layers.%llu.post_attention_layernorm.weight",
                 (unsigned long long)l);
        add(nm, HIDDEN, 0, 1);
    }
    add("model.norm.weight", HIDDEN, 0, 1);
    add("lm_head.weight", VOCAB, HIDDEN, 0);

    /* Shard assignment, as huggingface_hub's split_state_dict_into_shards. */
    int nshards = 1;
    uint64_t cur = 0, total = 0;
    for (int i = 0; i < NT; i++) {
        if (cur > 0 && cur + T[i].bytes > max_shard) {
            nshards++;
            cur = 0;
        }
        T[i].shard = nshards - 1;
        cur += T[i].bytes;
        total += T[i].bytes;
    }

    if (mkdir(out, 0777) != 0 && errno != EEXIST)
        die("cannot create", out);
    make_tables(seed);
    buf = malloc(BUF_BYTES);
    if (!buf) {
        fprintf(stderr, "%s: out of memory\n", prog);
        return 1;
    }

    /* Small files first; the index goes last. */
    char path[4096];
    snprintf(path, sizeof path, "%s/model.safetensors.index.json", out);
    if (unlink(path) != 0 && errno != ENOENT)
        die("cannot remove", path);
    /* Shards of an earlier run (perhaps another count) would confuse a reader. */
    DIR *d = opendir(out);
    if (!d)
        die("cannot open", out);
    for (struct dirent *e; (e = readdir(d));) {
        size_t L = strlen(e->d_name);
        if (!strncmp(e->d_name, "model", 5) &&
            ((L > 12 && !strcmp(e->d_name + L - 12, ".safetensors")) ||
             (L > 16 && !strcmp(e->d_name + L - 16, ".safetensors.tmp")))) {
            snprintf(path, sizeof path, "%s/%s", out, e->d_name);
            if (unlink(path) != 0)
                die("cannot remove", path);
        }
    }
    closedir(d);
    sbuf cfg = {0};
    sb_printf(&cfg,
              "{\n"
              "  \"_name_or_path\": \"meta-llama/Llama-2-7b-hf\",\n"
              "  \"architectures\": [\n    \"LlamaForCausalLM\"\n  ],\n"
              "  \"attention_bias\": false,\n"
              "  \"attention_dropout\": 0.0,\n"
              "  \"bos_token_id\": 1,\n"
              "  \"eos_token_id\": 2,\n"
              "  \"hidden_act\": \"silu\",\n"
              "  \"hidden_size\": %llu,\n"
              "  \"initializer_range\": 0.02,\n"
              "  \"intermediate_size\": %llu,\n"
              "  \"max_position_embeddings\": 4096,\n"
              "  \"model_type\": \"llama\",\n"
              "  \"num_attention_heads\": 32,\n"
              "  \"num_hidden_layers\": %llu,\n"
              "  \"num_key_value_heads\": 32,\n"
              "  \"pretraining_tp\": 1,\n"
              "  \"rms_norm_eps\": 1e-05,\n"
              "  \"rope_scaling\": null,\n"
              "  \"rope_theta\": 10000.0,\n"
              "  \"tie_word_embeddings\": false,\n"
              "  \"torch_dtype\": \"bfloat16\",\n"
              "  \"transformers_version\": \"4.44.0\",\n"
              "  \"use_cache\": true,\n"
              "  \"vocab_size\": %llu\n"
              "}\n",
              HIDDEN, INTER, (unsigned long long)layers, VOCAB);
    write_text(out, "config.json", cfg.p);
    write_text(out, "generation_config.json",
               "{\n  \"_from_model_config\": true,\n  \"bos_token_id\": 1,\n"
               "  \"eos_token_id\": 2,\n  \"transformers_version\": \"4.44.0\"\n}\n");
    write_text(out, "tokenizer_config.json",
               "{\n  \"add_bos_token\": true,\n  \"add_eos_token\": false,\n"
               "  \"bos_token\": \"<s>\",\n  \"eos_token\": \"</s>\",\n"
               "  \"model_max_length\": 4096,\n  \"pad_token\": null,\n"
               "  \"tokenizer_class\": \"LlamaTokenizer\",\n  \"unk_token\": \"<unk>\"\n}\n");
    write_text(out, "tokenizer.json",
               "{\n  \"version\": \"1.0\",\n  \"truncation\": null,\n  \"padding\": null,\n"
               "  \"added_tokens\": [],\n  \"normalizer\": null,\n  \"pre_tokenizer\": null,\n"
               "  \"post_processor\": null,\n  \"decoder\": null,\n"
               "  \"model\": {\"type\": \"WordLevel\", \"vocab\": "
               "{\"<unk>\": 0, \"<s>\": 1, \"</s>\": 2}, \"unk_token\": \"<unk>\"}\n}\n");

    int *order = malloc(sizeof(int) * (size_t)NT);
    if (!order) {
        fprintf(stderr, "%s: out of memory\n", prog);
        return 1;
    }
    for (int s = 0; s < nshards; s++) {
        int n = 0;
        for (int i = 0; i < NT; i++)
            if (T[i].shard == s)
                order[n++] = i;
        qsort(order, (size_t)n, sizeof *order, cmp_name);
        sbuf hdr = {0};
        uint64_t off = 0;
        sb_printf(&hdr, "{\"__metadata__\":{\"format\":\"pt\"}");
        for (int k = 0; k < n; k++) {
            const tensor *t = &T[order[k]];
            if (t->cols)
                sb_printf(&hdr, ",\"%s\":{\"dtype\":\"BF16\",\"shape\":[%llu,%llu],", t->name,
                          (unsigned long long)t->rows, (unsigned long long)t->cols);
            else
                sb_printf(&hdr, ",\"%s\":{\"dtype\":\"BF16\",\"shape\":[%llu],", t->name,
                          (unsigned long long)t->rows);
            sb_printf(&hdr, "\"data_offsets\":[%llu,%llu]}", (unsigned long long)off,
                      (unsigned long long)(off + t->bytes));
            off += t->bytes;
        }
        sb_printf(&hdr, "}");
        while (hdr.len % 8)
            sb_printf(&hdr, " ");

        char tmp[4200];
        snprintf(path, sizeof path, "%s/model-%05d-of-%05d.safetensors", out, s + 1, nshards);
        snprintf(tmp, sizeof tmp, "%s.tmp", path);
        int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0666);
        if (fd < 0)
            die("cannot create", tmp);
        uint8_t le[8];
        for (int b = 0; b < 8; b++)
            le[b] = (uint8_t)((uint64_t)hdr.len >> (8 * b));
        write_all(fd, le, 8, tmp);
        write_all(fd, hdr.p, hdr.len, tmp);
        for (int k = 0; k < n; k++)
            write_tensor(fd, &T[order[k]], seed, tmp);
        if (close(fd) != 0)
            die("cannot close", tmp);
        if (rename(tmp, path) != 0)
            die("cannot rename", tmp);
        fprintf(stderr, "%s: wrote %s (%d tensors, %.2f GB)\n", prog, path, n,
                (double)(8 + hdr.len + off) / 1e9);
        free(hdr.p);
    }

    /* Index: keys sorted, indent 2, as transformers writes it. */
    for (int i = 0; i < NT; i++)
        order[i] = i;
    qsort(order, (size_t)NT, sizeof *order, cmp_name);
    sbuf idx = {0};
    sb_printf(&idx, "{\n  \"metadata\": {\n    \"total_size\": %llu\n  },\n  \"weight_map\": {\n",
              (unsigned long long)total);
    for (int k = 0; k < NT; k++) {
        const tensor *t = &T[order[k]];
        sb_printf(&idx, "    \"%s\": \"model-%05d-of-%05d.safetensors\"%s\n", t->name,
                  t->shard + 1, nshards, k + 1 < NT ? "," : "");
    }
    sb_printf(&idx, "  }\n}\n");
    write_text(out, "model.safetensors.index.json", idx.p);
    fprintf(stderr, "%s: %d tensors, %d shards, %.2f GB in %s\n", prog, NT, nshards,
            (double)total / 1e9, out);
    free(idx.p);
    free(cfg.p);
    free(order);
    free(buf);
    return 0;
}
