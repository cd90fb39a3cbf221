/* The host side of the device backend (runner/rt_gpu.c), on real converted
 * directories, without a GPU: which units a budget holds in device memory,
 * and whether a unit copied by the planned copies into a stand-in "device"
 * buffer and viewed through the rebased tensor views decodes to exactly the
 * values of the host slot. Usage: test_gpu_plan DIR... */
#include <stdlib.h>
#include <string.h>

#include <math.h>

#include "airllm_matmul.h"
#include "airllm_quant.h"
#include "rt.h"
#include "rt_decode.h"
#include "rt_gpu.h"
#include "test_util.h"

/* Every row of both views decodes to the same floats. */
static void same_tensor(const rt_tensor *a, const rt_tensor *b, const char *unit)
{
    float *ra = malloc(sizeof(float) * (size_t)a->cols + 16);
    float *rb = malloc(sizeof(float) * (size_t)a->cols + 16);
    bool same = ra && rb && a->rows == b->rows && a->cols == b->cols && a->enc == b->enc;
    for (uint64_t r = 0; same && r < a->rows; r++) {
        airllm_err e1, e2;
        same = rt_tensor_row(a, r, ra, &e1) == 0 && rt_tensor_row(b, r, rb, &e2) == 0 &&
               memcmp(ra, rb, sizeof(float) * (size_t)a->cols) == 0;
    }
    CHECK(same, "%s: %s differs after the device copies", unit, a->name);
    free(ra);
    free(rb);
}

/* Carries out copies into dev (bytes long); checks they stay inside and do
 * not overlap. */
static void do_copies(const rt_gpu_copy *c, size_t n, uint8_t *dev, uint64_t bytes,
                      const char *unit)
{
    for (size_t i = 0; i < n; i++) {
        CHECK(c[i].dst_off + c[i].len <= bytes, "%s: copy %zu past the buffer", unit, i);
        CHECK(c[i].dst_off % 64 == 0, "%s: copy %zu misaligned", unit, i);
        for (size_t j = 0; j < i; j++)
            CHECK(c[i].dst_off + c[i].len <= c[j].dst_off ||
                      c[j].dst_off + c[j].len <= c[i].dst_off,
                  "%s: copies %zu and %zu overlap", unit, j, i);
        if (c[i].dst_off + c[i].len <= bytes)
            memcpy(dev + c[i].dst_off, c[i].src, (size_t)c[i].len);
    }
}

static void check_unit(rt_store *s, size_t ui, bool partial)
{
    rt_unit *u = &s->units[ui];
    u->external = !partial; /* external units load whole; streamed MoE ones without experts */
    rt_gpu_layout l;
    rt_slot sl;
    airllm_err err;
    if (rt_gpu_layout_make(u, &l, &err) || rt_store_slot_new(s, &ui, 1, &sl, &err)) {
        CHECK(0, "%s: %s", u->file, err.msg);
        return;
    }
    uint8_t *dev = aligned_alloc(256, (size_t)((l.bytes + 255) / 256 * 256));
    rt_gpu_copy *cp = malloc(sizeof *cp * 2 * (u->hdr.n_tensors + 1));
    rt_tensor *views = calloc(u->hdr.n_tensors + 1, sizeof *views);
    if (!dev || !cp || !views || rt_store_load(s, ui, &sl, &err)) {
        CHECK(0, "%s: %s", u->file, dev && cp && views ? err.msg : "out of memory");
        goto out;
    }
    memset(dev, 0xA5, (size_t)l.bytes);
    size_t n = rt_gpu_copies(u, &sl, &l, -1, cp);
    do_copies(cp, n, dev, l.bytes, u->file);
    size_t loaded = 0;
    for (size_t i = 0; i < sl.n_tensors; i++) {
        loaded += sl.tensors[i].loaded;
        if (partial && !sl.tensors[i].loaded) {
            /* an expert the router picked: read, then copied alone */
            if (rt_store_ensure(s, &sl, &sl.tensors[i], &err)) {
                CHECK(0, "%s: %s", u->file, err.msg);
                goto out;
            }
            size_t m = rt_gpu_copies(u, &sl, &l, (long)i, cp);
            CHECK(m >= 1 && m <= 2, "%s: %zu copies for one tensor", u->file, m);
            do_copies(cp, m, dev, l.bytes, u->file);
        }
    }
    CHECK(partial ? loaded < sl.n_tensors : loaded == sl.n_tensors,
          "%s: %zu of %zu tensors loaded", u->file, loaded, sl.n_tensors);
    rt_gpu_views(&sl, &l, (uintptr_t)dev, views);
    for (size_t i = 0; i < sl.n_tensors; i++) {
        CHECK(((uintptr_t)views[i].data - (uintptr_t)dev) % 256 == 0, "%s: %s unaligned",
              u->file, views[i].name);
        CHECK(views[i].data >= dev && views[i].data + l.data_len[i] <= dev + l.bytes,
              "%s: %s outside the buffer", u->file, views[i].name);
        same_tensor(&sl.tensors[i], &views[i], u->file);
    }
out:
    rt_store_slot_free(s, &sl);
    rt_gpu_layout_free(&l);
    free(dev);
    free(cp);
    free(views);
    u->external = false;
}

static void check_plan(rt_store *s, const char *dir)
{
    rt_gpu_plan p;
    airllm_err err;
    if (rt_gpu_plan_make(s, UINT64_MAX, false, &p, &err)) {
        CHECK(0, "%s: %s", dir, err.msg);
        return;
    }
    uint64_t all = p.all_budget, min = p.min_budget, max_unit = 0;
    size_t n_units = p.n_units;
    CHECK(n_units == s->n_units - (s->head_unit >= 0 ? 1 : 0),
          "%s: %zu device units of %zu", dir, n_units, s->n_units);
    /* A tied embedding whose rows cannot be read from its file (zstd) is
     * needed on the host for the lookup: it streams as the head. */
    bool tied_streams = s->head_unit < 0 && !rt_store_rows_readable(s);
    for (size_t k = 0; k < p.n_units; k++) {
        bool want = !(tied_streams && (long)p.units[k] == s->embed_unit);
        CHECK(p.held[p.units[k]] == want, "%s: unit %zu held %d with no limit", dir, p.units[k],
              p.held[p.units[k]]);
        if (p.dev_bytes[p.units[k]] > max_unit)
            max_unit = p.dev_bytes[p.units[k]];
    }
    CHECK(tied_streams ? p.stream_bytes > 0 : p.stream_bytes == 0 && p.held_bytes == all,
          "%s: everything held", dir);
    CHECK(min == 2 * max_unit, "%s: min budget %llu", dir, (unsigned long long)min);
    rt_gpu_plan_free(&p);
    /* one byte short of two buffers of the largest unit: refused, naming
     * a budget that fits */
    CHECK(rt_gpu_plan_make(s, min - 1, false, &p, &err) == -1 &&
              strstr(err.msg, "--gpu-mem-budget") != NULL,
          "%s: a budget below the minimum is refused (%s)", dir, err.msg);
    /* budgets from the minimum to all: what is held plus two stream buffers
     * never exceeds the budget, and every unit not held fits a buffer */
    for (int step = 0; step <= 8; step++) {
        uint64_t budget = min + (all > min ? (all - min) * (uint64_t)step / 8 : 0);
        if (rt_gpu_plan_make(s, budget, false, &p, &err)) {
            CHECK(0, "%s: budget %llu: %s", dir, (unsigned long long)budget, err.msg);
            continue;
        }
        uint64_t held = 0;
        bool streams = false, fits = true;
        for (size_t k = 0; k < p.n_units; k++) {
            size_t u = p.units[k];
            if (p.held[u])
                held += p.dev_bytes[u];
            else {
                streams = true;
                fits &= p.dev_bytes[u] <= p.stream_bytes;
            }
        }
        CHECK(held == p.held_bytes, "%s: held bytes", dir);
        CHECK(held + 2 * p.stream_bytes <= budget, "%s: budget %llu exceeded (%llu + 2 x %llu)",
              dir, (unsigned long long)budget, (unsigned long long)held,
              (unsigned long long)p.stream_bytes);
        CHECK(fits && streams == (p.stream_bytes > 0), "%s: stream buffers", dir);
        if (step == 0)
            CHECK(held == 0 || min > 2 * p.stream_bytes, "%s: the minimum holds little", dir);
        if (step == 8)
            CHECK(streams == tied_streams, "%s: the full budget streams nothing", dir);
        rt_gpu_plan_free(&p);
    }
    /* unified memory: nothing held, nothing streamed through the device */
    if (rt_gpu_plan_make(s, 0, true, &p, &err) == 0) {
        CHECK(p.held_bytes == 0 && p.stream_bytes == 0 && p.n_units == n_units,
              "%s: unified plan", dir);
        rt_gpu_plan_free(&p);
    } else {
        CHECK(0, "%s: unified plan: %s", dir, err.msg);
    }
}

/* ---- the CUDA kernels' decoders and row dot product (rt_decode.h) ---- */

static uint64_t rng = 88172645463325252ull;
static uint32_t rnd(void)
{
    rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
    return (uint32_t)(rng >> 11);
}
static float rndf(void)
{
    return (float)((double)(rnd() % 2000001) / 1000000.0 - 1.0);
}

/* W [rows, cols] of one kind from random values, as the container holds it. */
static void make_weight(int kind, uint64_t rows, uint64_t cols, uint32_t block, uint8_t **data,
                        float **absmax, airllm_mm_weight *mw)
{
    size_t n = (size_t)(rows * cols);
    float *x = malloc(sizeof(float) * n);
    *data = calloc(n * 4 + 64, 1);
    *absmax = calloc(n / 32 + 2, sizeof(float));
    for (size_t i = 0; i < n; i++)
        x[i] = rndf() * (i % 17 == 0 ? 3.0f : 0.5f);
    memset(mw, 0, sizeof *mw);
    mw->enc = AIRLLM_ENC_RAW;
    mw->rows = rows;
    mw->cols = cols;
    mw->data = *data;
    if (kind == RT_W_F32) {
        memcpy(*data, x, n * 4);
        mw->dtype = AIRLLM_DTYPE_F32;
    } else if (kind == RT_W_BF16 || kind == RT_W_F16) {
        for (size_t i = 0; i < n; i++) {
            uint32_t b;
            memcpy(&b, &x[i], 4);
            /* f16: random sign, exponent and mantissa, subnormals included */
            uint16_t h = kind == RT_W_BF16 ? (uint16_t)(b >> 16)
                                            : (uint16_t)((rnd() & 0x8000u) | (rnd() % 30) << 10 |
                                                         (rnd() & 0x3ffu));
            (*data)[2 * i] = (uint8_t)h;
            (*data)[2 * i + 1] = (uint8_t)(h >> 8);
        }
        mw->dtype = kind == RT_W_BF16 ? AIRLLM_DTYPE_BF16 : AIRLLM_DTYPE_F16;
    } else {
        airllm_quant_type qt = kind == RT_W_INT8  ? AIRLLM_QUANT_INT8
                               : kind == RT_W_NF4 ? AIRLLM_QUANT_NF4
                                                  : AIRLLM_QUANT_FP4;
        airllm_err err;
        CHECK(airllm_quantize_ref(qt, x, n, block, *data, n * 4 + 64, *absmax, n / 32 + 2,
                                  &err) == 0,
              "quantize");
        mw->enc = airllm_quant_encoding(qt);
        mw->absmax = *absmax;
        mw->block = block;
    }
    free(x);
}

static void check_decoders(void)
{
    static const struct {
        uint64_t rows, cols;
        uint32_t block;
    } shapes[] = {{37, 256, 64}, {5, 200, 32}, {7, 99, 32}, {3, 1000, 128}, {9, 24, 32}};
    const char *kinds[] = {"f32", "f16", "bf16", "int8", "nf4", "fp4"};
    for (int kind = RT_W_F32; kind <= RT_W_FP4; kind++) {
        const float *book = kind == RT_W_FP4 ? airllm_fp4_code : airllm_nf4_code;
        for (size_t si = 0; si < sizeof shapes / sizeof shapes[0]; si++) {
            uint64_t rows = shapes[si].rows, cols = shapes[si].cols;
            uint8_t *data;
            float *absmax;
            airllm_mm_weight mw;
            make_weight(kind, rows, cols, shapes[si].block, &data, &absmax, &mw);
            rt_dmat d = {data, absmax, rows, cols, shapes[si].block, kind};
            float *row = malloc(sizeof(float) * cols);
            bool elem_ok = true, dec8_ok = true;
            for (uint64_t r = 0; r < rows; r++) {
                airllm_err err;
                airllm_mm_row_f32(&mw, r, row, &err);
                for (uint64_t c = 0; c < cols; c++) {
                    float v = rt_w_elem(&d, r * cols + c, book);
                    elem_ok &= memcmp(&v, &row[c], 4) == 0;
                }
                for (uint64_t c = 0; rt_w_vec8(&d) && c < cols; c += 8) {
                    float v[8];
                    rt_w_dec8(&d, r * cols + c, book, v);
                    dec8_ok &= memcmp(v, &row[c], 32) == 0;
                }
            }
            CHECK(elem_ok, "%s [%llu, %llu]: rt_w_elem differs from airllm_mm_row_f32",
                  kinds[kind], (unsigned long long)rows, (unsigned long long)cols);
            CHECK(dec8_ok, "%s [%llu, %llu]: rt_w_dec8 differs", kinds[kind],
                  (unsigned long long)rows, (unsigned long long)cols);
            CHECK(rt_w_vec8(&d) == (cols % 8 == 0), "%s: vec8 rule", kinds[kind]);
            /* the kernel's split of a row over 32 lanes, summed, against the
             * oracle, for 1..RT_MAXT tokens */
            float *x = malloc(sizeof(float) * cols * RT_MAXT);
            float *yr = malloc(sizeof(float) * rows * RT_MAXT);
            for (size_t i = 0; i < cols * RT_MAXT; i++)
                x[i] = rndf();
            for (int nt = 1; nt <= RT_MAXT; nt += nt < 2 ? 1 : 3) {
                airllm_err err;
                airllm_mm_ref(&mw, x, (size_t)nt, (size_t)cols, yr, (size_t)rows, 0, rows, &err);
                bool close = true;
                for (uint64_t r = 0; r < rows; r++) {
                    float acc[RT_MAXT] = {0}, part[RT_MAXT];
                    for (int lane = 0; lane < 32; lane++) {
                        memset(part, 0, sizeof part);
                        rt_row_dot_part(&d, r, x, nt, cols, lane, 32, book, part);
                        for (int t = 0; t < nt; t++)
                            acc[t] += part[t];
                    }
                    airllm_mm_row_f32(&mw, r, row, &err);
                    for (int t = 0; t < nt; t++) {
                        double mag = 0;
                        for (uint64_t c = 0; c < cols; c++)
                            mag += fabs((double)row[c] * x[t * cols + c]);
                        close &= fabs((double)acc[t] - yr[t * rows + r]) <= 1e-5 * mag + 1e-30;
                    }
                }
                CHECK(close, "%s [%llu, %llu] %d tokens: lane sums differ from airllm_mm_ref",
                      kinds[kind], (unsigned long long)rows, (unsigned long long)cols, nt);
            }
            free(x);
            free(yr);
            free(row);
            free(data);
            free(absmax);
        }
    }
    /* f16 specials: the portable widening against lib's */
    bool f16_ok = true;
    for (uint32_t h = 0; h < 65536; h++) {
        float a = rt_f16_f32(h), b = airllm_f16_to_f32((uint16_t)h);
        f16_ok &= memcmp(&a, &b, 4) == 0;
    }
    CHECK(f16_ok, "rt_f16_f32 matches airllm_f16_to_f32 on all 65536 halves");
}

int main(int argc, char **argv)
{
    check_decoders();
    printf("decoders: %d checks passed, %d failed\n", passed, failed);
    for (int a = 1; a < argc; a++) {
        rt_store s;
        airllm_err err;
        if (rt_store_scan(&s, argv[a], false, false, RT_VERIFY_FAST, &err)) {
            CHECK(0, "%s: %s", argv[a], err.msg);
            rt_store_close(&s);
            continue;
        }
        check_plan(&s, argv[a]);
        for (size_t i = 0; i < s.n_units; i++) {
            check_unit(&s, i, false);
            if (s.units[i].moe)
                check_unit(&s, i, true);
        }
        printf("%s: %zu units\n", argv[a], s.n_units);
        rt_store_close(&s);
    }
    return test_summary();
}
