/* Per-unit container: layout, serialization and validating parser.
 * formats/container.md is the normative byte-level spec; the comments here
 * only explain choices the spec leaves to the implementation. */
#include "airllm_container.h"

#include "airllm_bytes.h"
#include "airllm_hash.h"
#include "airllm_io.h"
#include "airllm_quant.h"

#include <errno.h>
#include <math.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* Byte offsets inside the fixed header and inside one table entry. */
enum {
    FH_MAGIC = 0,
    FH_VMAJOR = 8,
    FH_VMINOR = 10,
    FH_COUNT = 12,
    FH_KIND = 16,
    FH_LAYER = 20,
    FH_HEADER_BYTES = 24,
    FH_DATA_START = 32,
    FH_FILE_SIZE = 40,
    FH_RESERVED = 48,     /* 1.0, 1.1: 16 zero bytes */
    FH_CHECK_OFFSET = 48, /* 1.2: u64, then 8 zero bytes */
    FH_RESERVED_12 = 56,

    TE_NAME_OFF = 0,
    TE_NAME_LEN = 8,
    TE_DTYPE = 12,
    TE_ENCODING = 14,
    TE_NDIM = 16,
    TE_RESERVED = 20,
    TE_SHAPE = 24,
    TE_OFFSET = 88,
    TE_STORED = 96,
    TE_RAW = 104,
    TE_ENC_PARAM = 112,
};

/* The zstd chunk size is bounded so a reader's per-chunk buffers stay small
 * whatever the file says. */
#define CT_MAX_CHUNK (256u << 20)

/* A zstd block holds at most 128 KiB of content and takes at least 4 stored
 * bytes (3-byte block header + 1 RLE byte), so no valid stream decodes to
 * more than 32768 times its stored size. Checking this at parse time stops a
 * tiny file from making a reader allocate a huge raw buffer. */
#define CT_ZSTD_MAX_RATIO 32768u

static const char *const unit_kind_names[AIRLLM_UNIT_KIND_COUNT] = {
    "embed", "layer", "norm", "lm_head"};
static const char *const encoding_names[AIRLLM_ENC_COUNT] = {"raw", "zstd", "nf4",
                                                             "fp4", "int8"};

const char *airllm_unit_kind_name(airllm_unit_kind k)
{
    if ((unsigned)k >= AIRLLM_UNIT_KIND_COUNT)
        return NULL;
    return unit_kind_names[k];
}

int airllm_unit_kind_from_name(const char *s, airllm_unit_kind *out)
{
    if (!s)
        return -1;
    for (unsigned i = 0; i < AIRLLM_UNIT_KIND_COUNT; i++) {
        if (strcmp(s, unit_kind_names[i]) == 0) {
            *out = (airllm_unit_kind)i;
            return 0;
        }
    }
    return -1;
}

const char *airllm_encoding_name(airllm_encoding e)
{
    if ((unsigned)e >= AIRLLM_ENC_COUNT)
        return NULL;
    return encoding_names[e];
}

/* align_up that reports overflow instead of wrapping. */
static int align_up_checked(uint64_t x, uint64_t *out)
{
    if (x > UINT64_MAX - (AIRLLM_CT_ALIGN - 1))
        return -1;
    *out = airllm_align_up(x, AIRLLM_CT_ALIGN);
    return 0;
}

/* Index of the first nonzero byte in buf[from, to) clipped to len, or -1.
 * Parsing only sees the bytes it is given, so padding beyond len is left to
 * whoever reads it. */
static int64_t first_nonzero(const uint8_t *buf, size_t len, uint64_t from, uint64_t to)
{
    if (to > len)
        to = len;
    for (uint64_t i = from; i < to; i++)
        if (buf[i] != 0)
            return (int64_t)i;
    return -1;
}

static int cmp_name_ptr(const void *a, const void *b)
{
    const char *x = *(const char *const *)a, *y = *(const char *const *)b;
    return strcmp(x, y);
}

void airllm_ct_free(airllm_ct_header *h)
{
    if (!h)
        return;
    if (h->tensors) {
        for (uint32_t i = 0; i < h->n_tensors; i++)
            free(h->tensors[i].name);
        free(h->tensors);
    }
    memset(h, 0, sizeof *h);
}

long airllm_ct_find(const airllm_ct_header *h, const char *name)
{
    if (!h || !name)
        return -1;
    for (uint32_t i = 0; i < h->n_tensors; i++)
        if (h->tensors[i].name && strcmp(h->tensors[i].name, name) == 0)
            return (long)i;
    return -1;
}

int airllm_ct_layout(airllm_ct_header *h, airllm_err *err)
{
    if (h->n_tensors > AIRLLM_CT_MAX_TENSORS)
        return airllm_errf(err, "container: %u tensors, at most %u allowed",
                           h->n_tensors, AIRLLM_CT_MAX_TENSORS);
    if (h->n_tensors > 0 && !h->tensors)
        return airllm_errf(err, "container: %u tensors but no tensor array",
                           h->n_tensors);
    /* 64 + 128 * 1e6 cannot overflow; the name sum is checked below. */
    uint64_t pos = AIRLLM_CT_FIXED_SIZE + (uint64_t)AIRLLM_CT_ENTRY_SIZE * h->n_tensors;
    for (uint32_t i = 0; i < h->n_tensors; i++) {
        const char *name = h->tensors[i].name;
        if (!name)
            return airllm_errf(err, "container: tensor #%u has no name", i);
        size_t nl = strlen(name);
        if (nl < 1 || nl > AIRLLM_CT_MAX_NAME)
            return airllm_errf(err, "container: tensor #%u: name length %zu, must be 1..%u",
                               i, nl, AIRLLM_CT_MAX_NAME);
        if (airllm_utf8_check((const uint8_t *)name, nl) != 0)
            return airllm_errf(err, "container: tensor #%u: name is not valid UTF-8", i);
        pos += nl; /* at most 1e6 * 1024 added to a small value: no overflow */
    }
    h->header_bytes = pos;
    if (align_up_checked(pos, &h->data_start) != 0)
        return airllm_errf(err, "container: header size overflows");
    pos = h->data_start;
    for (uint32_t i = 0; i < h->n_tensors; i++) {
        airllm_ct_tensor *t = &h->tensors[i];
        if (align_up_checked(pos, &t->offset) != 0 ||
            t->stored_len > UINT64_MAX - t->offset)
            return airllm_errf(err, "container: tensor '%.200s': offset overflows", t->name);
        pos = t->offset + t->stored_len;
    }
    /* The check block follows the data: a writer that streams the data
     * after a header written first can still append the checksums. */
    uint64_t cl = airllm_ct_checks_len(h->n_tensors);
    if (align_up_checked(pos, &h->check_offset) != 0 || h->check_offset > UINT64_MAX - cl ||
        align_up_checked(h->check_offset + cl, &h->file_size) != 0)
        return airllm_errf(err, "container: file size overflows");
    h->version_major = AIRLLM_CT_VERSION_MAJOR;
    h->version_minor = 2;
    return 0;
}

int airllm_ct_encode(const airllm_ct_header *h, uint8_t **out, size_t *out_len,
                     airllm_err *err)
{
    *out = NULL;
    *out_len = 0;
    if (h->n_tensors > AIRLLM_CT_MAX_TENSORS || (h->n_tensors > 0 && !h->tensors))
        return airllm_errf(err, "container: bad tensor count %u", h->n_tensors);
    uint64_t table_end =
        AIRLLM_CT_FIXED_SIZE + (uint64_t)AIRLLM_CT_ENTRY_SIZE * h->n_tensors;
    if (h->header_bytes < table_end || h->data_start < h->header_bytes ||
        h->data_start > SIZE_MAX || h->data_start % AIRLLM_CT_ALIGN != 0)
        return airllm_errf(err, "container: header not laid out (call airllm_ct_layout)");
    size_t n = (size_t)h->data_start;
    uint8_t *buf = calloc(1, n);
    if (!buf)
        return airllm_errf(err, "container: out of memory for a %zu-byte header", n);

    memcpy(buf + FH_MAGIC, AIRLLM_CT_MAGIC, 8);
    airllm_put_le16(buf + FH_VMAJOR, h->version_major);
    airllm_put_le16(buf + FH_VMINOR, h->version_minor);
    airllm_put_le32(buf + FH_COUNT, h->n_tensors);
    airllm_put_le32(buf + FH_KIND, (uint32_t)h->unit_kind);
    airllm_put_le32(buf + FH_LAYER, (uint32_t)h->layer_index);
    airllm_put_le64(buf + FH_HEADER_BYTES, h->header_bytes);
    airllm_put_le64(buf + FH_DATA_START, h->data_start);
    airllm_put_le64(buf + FH_FILE_SIZE, h->file_size);
    if (h->version_minor >= 2)
        airllm_put_le64(buf + FH_CHECK_OFFSET, h->check_offset);

    uint64_t name_off = 0, names_area = h->header_bytes - table_end;
    for (uint32_t i = 0; i < h->n_tensors; i++) {
        const airllm_ct_tensor *t = &h->tensors[i];
        size_t nl = t->name ? strlen(t->name) : 0;
        if (nl > names_area - name_off) {
            free(buf);
            return airllm_errf(err, "container: names do not fit header_bytes "
                                    "(call airllm_ct_layout)");
        }
        uint8_t *e = buf + AIRLLM_CT_FIXED_SIZE + (uint64_t)AIRLLM_CT_ENTRY_SIZE * i;
        airllm_put_le64(e + TE_NAME_OFF, name_off);
        airllm_put_le32(e + TE_NAME_LEN, (uint32_t)nl);
        airllm_put_le16(e + TE_DTYPE, (uint16_t)t->dtype);
        airllm_put_le16(e + TE_ENCODING, (uint16_t)t->encoding);
        airllm_put_le32(e + TE_NDIM, t->ndim);
        /* Unused dims are written as zero whatever the struct holds. */
        for (unsigned d = 0; d < t->ndim && d < AIRLLM_MAX_DIMS; d++)
            airllm_put_le64(e + TE_SHAPE + 8 * d, t->shape[d]);
        airllm_put_le64(e + TE_OFFSET, t->offset);
        airllm_put_le64(e + TE_STORED, t->stored_len);
        airllm_put_le64(e + TE_RAW, t->raw_len);
        for (int k = 0; k < 4; k++)
            airllm_put_le32(e + TE_ENC_PARAM + 4 * k, t->enc_param[k]);
        if (nl)
            memcpy(buf + table_end + name_off, t->name, nl);
        name_off += nl;
    }

    /* Never hand out a header our own reader would refuse: a bad dtype,
     * shape or encoding parameter is caught here, at write time. */
    airllm_ct_header check;
    if (airllm_ct_parse(buf, n, h->file_size, &check, err) != 0) {
        free(buf);
        return airllm_err_prefix(err, "container: encoded header does not validate");
    }
    airllm_ct_free(&check);
    *out = buf;
    *out_len = n;
    return 0;
}

/* Checks one tensor's encoding fields. */
static int check_encoding(const airllm_ct_tensor *t, unsigned minor, airllm_err *err)
{
    const char *nm = t->name;
    switch (t->encoding) {
    case AIRLLM_ENC_RAW:
        if (t->stored_len != t->raw_len)
            return airllm_errf(err,
                               "tensor '%.200s': raw encoding with stored_len %llu != "
                               "raw_len %llu",
                               nm, (unsigned long long)t->stored_len,
                               (unsigned long long)t->raw_len);
        for (int k = 0; k < 4; k++)
            if (t->enc_param[k] != 0)
                return airllm_errf(err, "tensor '%.200s': raw encoding with nonzero "
                                        "enc_param[%d]",
                                   nm, k);
        return 0;
    case AIRLLM_ENC_ZSTD: {
        uint32_t w = t->enc_param[0], chunk = t->enc_param[1];
        unsigned bits = airllm_dtype_bits(t->dtype);
        if (w != 0 && w != 2 && w != 4)
            return airllm_errf(err, "tensor '%.200s': zstd byte-group width %u, must be "
                                    "0, 2 or 4",
                               nm, w);
        if (w != 0 && bits != 8 * w)
            return airllm_errf(err, "tensor '%.200s': zstd byte-group width %u does not "
                                    "match the %u-bit dtype %s",
                               nm, w, bits, airllm_dtype_name(t->dtype));
        if (chunk == 0 || chunk % AIRLLM_CT_ALIGN != 0 || chunk > CT_MAX_CHUNK)
            return airllm_errf(err, "tensor '%.200s': zstd chunk size %u, must be a "
                                    "nonzero multiple of 4096 up to %u",
                               nm, chunk, CT_MAX_CHUNK);
        /* (chunk is a multiple of 4096, hence of w.) */
        if (t->enc_param[2] != 0 || t->enc_param[3] != 0)
            return airllm_errf(err, "tensor '%.200s': zstd with nonzero enc_param[2..3]",
                               nm);
        if ((t->raw_len == 0) != (t->stored_len == 0))
            return airllm_errf(err, "tensor '%.200s': zstd with raw_len %llu and "
                                    "stored_len %llu (empty iff the other is)",
                               nm, (unsigned long long)t->raw_len,
                               (unsigned long long)t->stored_len);
        if (t->stored_len <= UINT64_MAX / CT_ZSTD_MAX_RATIO &&
            t->raw_len > t->stored_len * CT_ZSTD_MAX_RATIO)
            return airllm_errf(err, "tensor '%.200s': zstd raw_len %llu cannot come "
                                    "from %llu stored bytes",
                               nm, (unsigned long long)t->raw_len,
                               (unsigned long long)t->stored_len);
        return 0;
    }
    case AIRLLM_ENC_NF4:
    case AIRLLM_ENC_FP4:
    case AIRLLM_ENC_INT8: {
        if (minor < 1)
            return airllm_errf(err, "tensor '%.200s': encoding %s needs format 1.1, but the "
                                    "file says 1.%u",
                               nm, airllm_encoding_name(t->encoding), minor);
        airllm_ct_qlayout l;
        if (airllm_ct_tensor_qlayout(t, &l, err) != 0)
            return airllm_err_prefix(err, "tensor '%.200s'", nm);
        if (l.stored_len != t->stored_len)
            return airllm_errf(err, "tensor '%.200s': %s with %llu elements, block %u%s "
                                    "takes %llu bytes, stored_len says %llu",
                               nm, airllm_encoding_name(t->encoding),
                               (unsigned long long)l.n, l.block,
                               l.double_quant ? ", double quant" : "",
                               (unsigned long long)l.stored_len,
                               (unsigned long long)t->stored_len);
        return 0;
    }
    default:
        return airllm_errf(err, "tensor '%.200s': unknown encoding %u", nm,
                           (unsigned)t->encoding);
    }
}

int airllm_ct_parse(const uint8_t *buf, size_t len, uint64_t file_size,
                    airllm_ct_header *out, airllm_err *err)
{
    memset(out, 0, sizeof *out);
    if (len < AIRLLM_CT_FIXED_SIZE)
        return airllm_errf(err, "truncated: %zu bytes, the fixed header needs %u", len,
                           AIRLLM_CT_FIXED_SIZE);
    if (memcmp(buf + FH_MAGIC, AIRLLM_CT_MAGIC, 8) != 0)
        return airllm_errf(err, "bad magic (not an airllm container)");
    airllm_ct_header h;
    memset(&h, 0, sizeof h);
    h.version_major = airllm_get_le16(buf + FH_VMAJOR);
    h.version_minor = airllm_get_le16(buf + FH_VMINOR);
    if (h.version_major != AIRLLM_CT_VERSION_MAJOR)
        return airllm_errf(err, "unsupported container version %u.%u (this reader "
                                "supports %u.%u)",
                           h.version_major, h.version_minor, AIRLLM_CT_VERSION_MAJOR,
                           AIRLLM_CT_VERSION_MINOR);
    int64_t nz = first_nonzero(buf, len, h.version_minor >= 2 ? FH_RESERVED_12 : FH_RESERVED,
                               AIRLLM_CT_FIXED_SIZE);
    if (nz >= 0)
        return airllm_errf(err, "reserved header byte %lld is not zero", (long long)nz);
    if (h.version_minor >= 2)
        h.check_offset = airllm_get_le64(buf + FH_CHECK_OFFSET);

    uint32_t count = airllm_get_le32(buf + FH_COUNT);
    uint32_t kind = airllm_get_le32(buf + FH_KIND);
    int32_t layer = (int32_t)airllm_get_le32(buf + FH_LAYER);
    h.header_bytes = airllm_get_le64(buf + FH_HEADER_BYTES);
    h.data_start = airllm_get_le64(buf + FH_DATA_START);
    h.file_size = airllm_get_le64(buf + FH_FILE_SIZE);

    if (kind >= AIRLLM_UNIT_KIND_COUNT)
        return airllm_errf(err, "unknown unit kind %u", kind);
    h.unit_kind = (airllm_unit_kind)kind;
    if (kind == AIRLLM_UNIT_LAYER && layer < 0)
        return airllm_errf(err, "unit kind layer needs a layer_index >= 0, got %d", layer);
    if (kind != AIRLLM_UNIT_LAYER && layer != -1)
        return airllm_errf(err, "unit kind %s needs layer_index -1, got %d",
                           unit_kind_names[kind], layer);
    h.layer_index = layer;

    if (count > AIRLLM_CT_MAX_TENSORS)
        return airllm_errf(err, "too many tensors: %u (at most %u)", count,
                           AIRLLM_CT_MAX_TENSORS);
    uint64_t table_end = AIRLLM_CT_FIXED_SIZE + (uint64_t)AIRLLM_CT_ENTRY_SIZE * count;
    if (table_end > h.header_bytes)
        return airllm_errf(err, "tensor table of %u entries ends at %llu, past "
                                "header_bytes %llu",
                           count, (unsigned long long)table_end,
                           (unsigned long long)h.header_bytes);
    if (h.header_bytes > file_size)
        return airllm_errf(err, "header_bytes %llu exceeds the file size %llu",
                           (unsigned long long)h.header_bytes,
                           (unsigned long long)file_size);
    if (h.header_bytes > len)
        return airllm_errf(err, "truncated: header_bytes %llu but only %zu bytes given",
                           (unsigned long long)h.header_bytes, len);
    /* header_bytes <= len, so aligning it cannot overflow. */
    uint64_t want_ds = airllm_align_up(h.header_bytes, AIRLLM_CT_ALIGN);
    if (h.data_start != want_ds)
        return airllm_errf(err, "data_start %llu, expected %llu (header_bytes rounded up "
                                "to 4096)",
                           (unsigned long long)h.data_start, (unsigned long long)want_ds);
    if (h.file_size % AIRLLM_CT_ALIGN != 0)
        return airllm_errf(err, "file_size %llu is not a multiple of 4096",
                           (unsigned long long)h.file_size);
    if (h.file_size != file_size)
        return airllm_errf(err, "file_size field %llu but the file has %llu bytes%s",
                           (unsigned long long)h.file_size, (unsigned long long)file_size,
                           file_size < h.file_size ? " (truncated?)" : "");
    if (h.data_start > h.file_size)
        return airllm_errf(err, "data_start %llu is past file_size %llu",
                           (unsigned long long)h.data_start,
                           (unsigned long long)h.file_size);
    nz = first_nonzero(buf, len, h.header_bytes, h.data_start);
    if (nz >= 0)
        return airllm_errf(err, "header padding byte %lld is not zero", (long long)nz);

    /* count entries of 128 bytes lie within header_bytes <= len, so this
     * allocation is bounded by the bytes actually present. */
    h.n_tensors = count;
    if (count) {
        h.tensors = calloc(count, sizeof *h.tensors);
        if (!h.tensors)
            return airllm_errf(err, "out of memory for %u tensors", count);
    }
    const uint8_t *names = buf + table_end;
    uint64_t names_len = h.header_bytes - table_end;
    uint64_t name_pos = 0;   /* running sum of name lengths */
    uint64_t data_pos = h.data_start; /* end of the previous tensor */
    char **sorted = NULL;

    for (uint32_t i = 0; i < count; i++) {
        const uint8_t *e = buf + AIRLLM_CT_FIXED_SIZE + (uint64_t)AIRLLM_CT_ENTRY_SIZE * i;
        airllm_ct_tensor *t = &h.tensors[i];
        uint64_t noff = airllm_get_le64(e + TE_NAME_OFF);
        uint32_t nlen = airllm_get_le32(e + TE_NAME_LEN);
        if (nlen < 1 || nlen > AIRLLM_CT_MAX_NAME) {
            airllm_errf(err, "tensor #%u: name length %u, must be 1..%u", i, nlen,
                        AIRLLM_CT_MAX_NAME);
            goto fail;
        }
        if (noff != name_pos) {
            airllm_errf(err, "tensor #%u: name_offset %llu, expected %llu (names are "
                             "consecutive in table order)",
                        i, (unsigned long long)noff, (unsigned long long)name_pos);
            goto fail;
        }
        if (nlen > names_len - name_pos) {
            airllm_errf(err, "tensor #%u: name [%llu, +%u) runs past the names area "
                             "(%llu bytes)",
                        i, (unsigned long long)noff, nlen, (unsigned long long)names_len);
            goto fail;
        }
        const uint8_t *nm = names + noff;
        if (memchr(nm, 0, nlen)) {
            airllm_errf(err, "tensor #%u: name contains a NUL byte", i);
            goto fail;
        }
        if (airllm_utf8_check(nm, nlen) != 0) {
            airllm_errf(err, "tensor #%u: name is not valid UTF-8", i);
            goto fail;
        }
        name_pos += nlen;
        t->name = malloc((size_t)nlen + 1);
        if (!t->name) {
            airllm_errf(err, "out of memory");
            goto fail;
        }
        memcpy(t->name, nm, nlen);
        t->name[nlen] = '\0';
        const char *tn = t->name;

        uint16_t dt = airllm_get_le16(e + TE_DTYPE);
        uint16_t enc = airllm_get_le16(e + TE_ENCODING);
        uint32_t ndim = airllm_get_le32(e + TE_NDIM);
        if (dt >= AIRLLM_DTYPE_COUNT) {
            airllm_errf(err, "tensor '%.200s': unknown dtype code %u", tn, dt);
            goto fail;
        }
        t->dtype = (airllm_dtype)dt;
        t->encoding = (airllm_encoding)enc;
        if (ndim > AIRLLM_MAX_DIMS) {
            airllm_errf(err, "tensor '%.200s': ndim %u, at most %u", tn, ndim,
                        AIRLLM_MAX_DIMS);
            goto fail;
        }
        t->ndim = ndim;
        if (airllm_get_le32(e + TE_RESERVED) != 0) {
            airllm_errf(err, "tensor '%.200s': reserved entry field is not zero", tn);
            goto fail;
        }
        for (unsigned d = 0; d < AIRLLM_MAX_DIMS; d++) {
            uint64_t v = airllm_get_le64(e + TE_SHAPE + 8 * d);
            if (d >= ndim && v != 0) {
                airllm_errf(err, "tensor '%.200s': unused dimension %u is %llu, must be 0",
                            tn, d, (unsigned long long)v);
                goto fail;
            }
            t->shape[d] = v;
        }
        t->offset = airllm_get_le64(e + TE_OFFSET);
        t->stored_len = airllm_get_le64(e + TE_STORED);
        t->raw_len = airllm_get_le64(e + TE_RAW);
        for (int k = 0; k < 4; k++)
            t->enc_param[k] = airllm_get_le32(e + TE_ENC_PARAM + 4 * k);

        uint64_t nbytes;
        if (airllm_shape_nbytes(t->dtype, t->shape, ndim, NULL, &nbytes) != 0) {
            airllm_errf(err, "tensor '%.200s': shape size overflows or is not a whole "
                             "number of bytes for dtype %s",
                        tn, airllm_dtype_name(t->dtype));
            goto fail;
        }
        if (nbytes != t->raw_len) {
            airllm_errf(err, "tensor '%.200s': raw_len %llu but shape x %s is %llu bytes",
                        tn, (unsigned long long)t->raw_len, airllm_dtype_name(t->dtype),
                        (unsigned long long)nbytes);
            goto fail;
        }
        if (check_encoding(t, h.version_minor, err) != 0)
            goto fail;

        /* Placement: most specific complaint first, then the exact rule. */
        if (t->offset % AIRLLM_CT_ALIGN != 0) {
            airllm_errf(err, "tensor '%.200s': offset %llu is not a multiple of 4096", tn,
                        (unsigned long long)t->offset);
            goto fail;
        }
        if (t->stored_len > UINT64_MAX - t->offset ||
            t->offset + t->stored_len > h.file_size) {
            airllm_errf(err, "tensor '%.200s': data [%llu, +%llu) runs past file_size %llu",
                        tn, (unsigned long long)t->offset,
                        (unsigned long long)t->stored_len,
                        (unsigned long long)h.file_size);
            goto fail;
        }
        if (t->offset < data_pos) {
            airllm_errf(err, "tensor '%.200s': offset %llu overlaps the header or the "
                             "previous tensor (which end at %llu)",
                        tn, (unsigned long long)t->offset, (unsigned long long)data_pos);
            goto fail;
        }
        /* data_pos <= offset <= file_size: no overflow. */
        uint64_t want = airllm_align_up(data_pos, AIRLLM_CT_ALIGN);
        if (t->offset != want) {
            airllm_errf(err, "tensor '%.200s': offset %llu, expected %llu (tensors are "
                             "packed in table order at 4096-byte boundaries)",
                        tn, (unsigned long long)t->offset, (unsigned long long)want);
            goto fail;
        }
        nz = first_nonzero(buf, len, data_pos, t->offset);
        if (nz >= 0) {
            airllm_errf(err, "padding byte %lld before tensor '%.200s' is not zero",
                        (long long)nz, tn);
            goto fail;
        }
        data_pos = t->offset + t->stored_len;
    }
    if (name_pos != names_len) {
        airllm_errf(err, "names area has %llu bytes but the names use %llu",
                    (unsigned long long)names_len, (unsigned long long)name_pos);
        goto fail;
    }
    /* data_pos <= file_size, so aligning it cannot overflow. */
    uint64_t want_fs = airllm_align_up(data_pos, AIRLLM_CT_ALIGN);
    if (h.version_minor >= 2) {
        /* 1.2: the check block sits at the aligned end of the data and the
         * file ends at its aligned end. want_fs <= file_size < 2^64 - 4096
         * and checks_len <= 8 + 8e6: no overflow. */
        uint64_t cl = airllm_ct_checks_len(count);
        if (h.check_offset != want_fs) {
            airllm_errf(err, "check_offset %llu, expected %llu (end of the last tensor "
                             "rounded up to 4096)",
                        (unsigned long long)h.check_offset, (unsigned long long)want_fs);
            goto fail;
        }
        if (want_fs > h.file_size || h.file_size - want_fs < cl ||
            h.file_size != airllm_align_up(want_fs + cl, AIRLLM_CT_ALIGN)) {
            airllm_errf(err, "file_size %llu, expected %llu (the %llu-byte check block at "
                             "%llu rounded up to 4096)",
                        (unsigned long long)h.file_size,
                        (unsigned long long)airllm_align_up(want_fs + cl, AIRLLM_CT_ALIGN),
                        (unsigned long long)cl, (unsigned long long)want_fs);
            goto fail;
        }
        nz = first_nonzero(buf, len, data_pos, want_fs);
        if (nz >= 0) {
            airllm_errf(err, "padding byte %lld before the check block is not zero",
                        (long long)nz);
            goto fail;
        }
    } else {
        if (h.file_size != want_fs) {
            airllm_errf(err, "file_size %llu, expected %llu (end of the last tensor "
                             "rounded up to 4096)",
                        (unsigned long long)h.file_size, (unsigned long long)want_fs);
            goto fail;
        }
        nz = first_nonzero(buf, len, data_pos, h.file_size);
        if (nz >= 0) {
            airllm_errf(err, "trailing padding byte %lld is not zero", (long long)nz);
            goto fail;
        }
    }

    if (count > 1) {
        sorted = malloc(count * sizeof *sorted);
        if (!sorted) {
            airllm_errf(err, "out of memory");
            goto fail;
        }
        for (uint32_t i = 0; i < count; i++)
            sorted[i] = h.tensors[i].name;
        qsort(sorted, count, sizeof *sorted, cmp_name_ptr);
        for (uint32_t i = 1; i < count; i++) {
            if (strcmp(sorted[i - 1], sorted[i]) == 0) {
                airllm_errf(err, "duplicate tensor name '%.200s'", sorted[i]);
                goto fail;
            }
        }
        free(sorted);
        sorted = NULL;
    }
    /* A buffer that holds the check block gets it applied here; a reader
     * given less (the header region only) applies it itself. */
    if (h.version_minor >= 2 && len >= h.check_offset &&
        len - h.check_offset >= airllm_ct_checks_len(count) &&
        airllm_ct_apply_checks(&h, buf, len, buf + h.check_offset,
                               (size_t)(len - h.check_offset), err) != 0)
        goto fail;
    *out = h;
    return 0;

fail:
    free(sorted);
    airllm_ct_free(&h);
    return -1;
}

/* Largest header region read_file will load; real headers are a few KiB,
 * and the limit bounds what a hostile file can make us allocate. */
#define CT_MAX_HEADER_READ (256ull << 20)

int airllm_ct_read_file(const char *path, airllm_ct_header *out, airllm_err *err)
{
    memset(out, 0, sizeof *out);
    int fd = airllm_open_input(path, 0, err);
    if (fd < 0)
        return -1;
    uint8_t *buf = NULL;
    struct stat st;
    if (fstat(fd, &st) != 0) {
        airllm_errf(err, "cannot stat: %s", strerror(errno));
        goto fail;
    }
    if (!S_ISREG(st.st_mode)) {
        airllm_errf(err, "not a regular file");
        goto fail;
    }
    uint64_t fsize = (uint64_t)st.st_size;
    uint8_t fixed[AIRLLM_CT_FIXED_SIZE];
    size_t n = fsize < AIRLLM_CT_FIXED_SIZE ? (size_t)fsize : AIRLLM_CT_FIXED_SIZE;
    if (airllm_pread_full(fd, fixed, n, 0, NULL, err) != 0)
        goto fail;
    if (n < AIRLLM_CT_FIXED_SIZE) {
        /* Let the parser produce the uniform "truncated" message. */
        airllm_ct_parse(fixed, n, fsize, out, err);
        goto fail;
    }
    /* Read the whole header region [0, data_start) so padding is checked
     * too, but bound it by the file and a fixed limit before allocating;
     * anything inconsistent is left for the parser to explain. */
    uint64_t hb = airllm_get_le64(fixed + FH_HEADER_BYTES);
    uint64_t want = hb;
    if (hb <= fsize && hb <= CT_MAX_HEADER_READ) {
        want = airllm_align_up(hb, AIRLLM_CT_ALIGN);
        if (want > fsize)
            want = fsize;
    } else if (hb > fsize) {
        want = AIRLLM_CT_FIXED_SIZE; /* the parser reports header_bytes > file size */
    } else {
        airllm_errf(err, "header_bytes %llu exceeds the %llu-byte limit",
                    (unsigned long long)hb, CT_MAX_HEADER_READ);
        goto fail;
    }
    if (want < AIRLLM_CT_FIXED_SIZE)
        want = AIRLLM_CT_FIXED_SIZE;
    buf = malloc((size_t)want);
    if (!buf) {
        airllm_errf(err, "out of memory for a %llu-byte header", (unsigned long long)want);
        goto fail;
    }
    memcpy(buf, fixed, AIRLLM_CT_FIXED_SIZE);
    if (want > AIRLLM_CT_FIXED_SIZE &&
        airllm_pread_full(fd, buf + AIRLLM_CT_FIXED_SIZE, (size_t)want - AIRLLM_CT_FIXED_SIZE,
                          AIRLLM_CT_FIXED_SIZE, NULL, err) != 0)
        goto fail;
    if (airllm_ct_parse(buf, (size_t)want, fsize, out, err) != 0)
        goto fail;
    if (out->version_minor >= 2 && !out->has_checks) {
        /* The parser bounded the block: file_size - check_offset is
         * align_up(8 + 8n) with n <= 1e6, a few MiB at most. */
        size_t bl = (size_t)(out->file_size - out->check_offset);
        uint8_t *blk = malloc(bl);
        if (!blk) {
            airllm_errf(err, "out of memory for a %zu-byte check block", bl);
            airllm_ct_free(out);
            goto fail;
        }
        int rc = airllm_pread_full(fd, blk, bl, out->check_offset, NULL, err);
        if (!rc)
            rc = airllm_ct_apply_checks(out, buf, (size_t)want, blk, bl, err);
        free(blk);
        if (rc) {
            airllm_ct_free(out);
            goto fail;
        }
    }
    free(buf);
    close(fd);
    return 0;

fail:
    free(buf);
    close(fd);
    return airllm_err_prefix(err, "%s", path);
}

/* ------------------------------------------------------------------ */
/* format 1.2 check block                                              */

uint64_t airllm_ct_checks_len(uint32_t n)
{
    return 8 + 8 * (uint64_t)n;
}

/* XXH3-64 of entry i's 128 bytes followed by its name: the share of the
 * entry in the tensor's check value. hdr holds at least header_bytes. */
static uint64_t entry_hash(const airllm_ct_header *h, const uint8_t *hdr, uint32_t i,
                           uint64_t name_off)
{
    uint8_t tmp[AIRLLM_CT_ENTRY_SIZE + AIRLLM_CT_MAX_NAME];
    size_t nl = strlen(h->tensors[i].name); /* 1..1024, checked by the parser */
    memcpy(tmp, hdr + AIRLLM_CT_FIXED_SIZE + (uint64_t)AIRLLM_CT_ENTRY_SIZE * i,
           AIRLLM_CT_ENTRY_SIZE);
    memcpy(tmp + AIRLLM_CT_ENTRY_SIZE,
           hdr + AIRLLM_CT_FIXED_SIZE + (uint64_t)AIRLLM_CT_ENTRY_SIZE * h->n_tensors + name_off,
           nl);
    return airllm_xxh3(tmp, AIRLLM_CT_ENTRY_SIZE + nl);
}

int airllm_ct_apply_checks(airllm_ct_header *h, const uint8_t *hdr, size_t hdr_len,
                           const uint8_t *blk, size_t blk_len, airllm_err *err)
{
    uint64_t cl = airllm_ct_checks_len(h->n_tensors);
    if (h->version_minor < 2 || hdr_len < h->header_bytes || blk_len < cl)
        return airllm_errf(err, "internal error: check block applied without its bytes");
    uint64_t want = airllm_get_le64(blk);
    uint64_t got = airllm_xxh3(hdr, AIRLLM_CT_FIXED_SIZE);
    if (got != want)
        return airllm_errf(err, "fixed header: XXH3 %016llx, the check block records "
                                "%016llx: the header or the check block is corrupted",
                           (unsigned long long)got, (unsigned long long)want);
    int64_t nz = first_nonzero(blk, blk_len, cl, blk_len);
    if (nz >= 0)
        return airllm_errf(err, "check block padding byte %llu is not zero",
                           (unsigned long long)(h->check_offset + (uint64_t)nz));
    uint64_t name_off = 0;
    for (uint32_t i = 0; i < h->n_tensors; i++) {
        h->tensors[i].xxh3 = airllm_get_le64(blk + 8 + 8 * (uint64_t)i) ^
                             entry_hash(h, hdr, i, name_off);
        name_off += strlen(h->tensors[i].name);
    }
    h->has_checks = 1;
    return 0;
}

int airllm_ct_encode_checks(const airllm_ct_header *h, uint8_t **out, size_t *out_len,
                            airllm_err *err)
{
    *out = NULL;
    *out_len = 0;
    if (h->version_minor < 2 || h->file_size < h->check_offset ||
        h->file_size - h->check_offset < airllm_ct_checks_len(h->n_tensors))
        return airllm_errf(err, "container: header not laid out for 1.2 "
                                "(call airllm_ct_layout)");
    uint8_t *hdr;
    size_t hl;
    if (airllm_ct_encode(h, &hdr, &hl, err) != 0)
        return -1;
    size_t n = (size_t)(h->file_size - h->check_offset);
    uint8_t *blk = calloc(1, n);
    if (!blk) {
        free(hdr);
        return airllm_errf(err, "container: out of memory for the check block");
    }
    airllm_put_le64(blk, airllm_xxh3(hdr, AIRLLM_CT_FIXED_SIZE));
    uint64_t name_off = 0;
    for (uint32_t i = 0; i < h->n_tensors; i++) {
        airllm_put_le64(blk + 8 + 8 * (uint64_t)i,
                        h->tensors[i].xxh3 ^ entry_hash(h, hdr, i, name_off));
        name_off += strlen(h->tensors[i].name);
    }
    free(hdr);
    *out = blk;
    *out_len = n;
    return 0;
}

int airllm_ct_check_value(const airllm_ct_header *h, uint32_t i, uint64_t got,
                          airllm_err *err)
{
    if (!h->has_checks || i >= h->n_tensors)
        return airllm_errf(err, "internal error: no checksum for tensor #%u", i);
    const airllm_ct_tensor *t = &h->tensors[i];
    if (got != t->xxh3)
        return airllm_errf(err, "tensor '%.200s': XXH3 of its %llu stored bytes is %016llx, "
                                "the header and check block say %016llx: corrupted",
                           t->name, (unsigned long long)t->stored_len,
                           (unsigned long long)got, (unsigned long long)t->xxh3);
    return 0;
}

int airllm_ct_check_tensor(const airllm_ct_header *h, uint32_t i, const uint8_t *stored,
                           airllm_err *err)
{
    if (!h->has_checks || i >= h->n_tensors)
        return airllm_errf(err, "internal error: no checksum for tensor #%u", i);
    return airllm_ct_check_value(h, i, airllm_xxh3(stored, (size_t)h->tensors[i].stored_len),
                                 err);
}

/* ------------------------------------------------------------------ */
/* block-quantized tensors                                             */

int airllm_encoding_is_quant(airllm_encoding e)
{
    return e == AIRLLM_ENC_NF4 || e == AIRLLM_ENC_FP4 || e == AIRLLM_ENC_INT8;
}

airllm_quant_type airllm_encoding_quant_type(airllm_encoding e)
{
    return e == AIRLLM_ENC_NF4 ? AIRLLM_QUANT_NF4
         : e == AIRLLM_ENC_FP4 ? AIRLLM_QUANT_FP4
                               : AIRLLM_QUANT_INT8;
}

airllm_encoding airllm_quant_encoding(airllm_quant_type t)
{
    return t == AIRLLM_QUANT_NF4 ? AIRLLM_ENC_NF4
         : t == AIRLLM_QUANT_FP4 ? AIRLLM_ENC_FP4
                                 : AIRLLM_ENC_INT8;
}

int airllm_ct_qlayout_make(airllm_encoding enc, uint64_t n, uint32_t block, int double_quant,
                           airllm_ct_qlayout *out, airllm_err *err)
{
    memset(out, 0, sizeof *out);
    if (!airllm_encoding_is_quant(enc))
        return airllm_errf(err, "encoding %u is not a quantized one", (unsigned)enc);
    if (airllm_quant_check_block(block, err) != 0)
        return -1;
    /* n <= 2^60 keeps every sum below far from overflow (a tensor that big
     * could not be stored anyway). */
    if (n > ((uint64_t)1 << 60))
        return airllm_errf(err, "%llu elements is too many", (unsigned long long)n);
    out->n = n;
    out->block = block;
    out->double_quant = double_quant != 0;
    if (n == 0)
        return 0; /* an empty tensor stores nothing */
    out->nblocks = (n + block - 1) / block;
    out->codes_len = enc == AIRLLM_ENC_INT8 ? n : (n + 1) / 2;
    out->scales_off = airllm_align_up(out->codes_len, 64);
    if (!out->double_quant) {
        out->stored_len = out->scales_off + 4 * out->nblocks;
    } else {
        out->nblocks2 = (out->nblocks + AIRLLM_QUANT_DQ_BLOCK - 1) / AIRLLM_QUANT_DQ_BLOCK;
        out->dq_offset_off = airllm_align_up(out->scales_off + out->nblocks, 4);
        out->dq_absmax2_off = out->dq_offset_off + 4;
        out->stored_len = out->dq_absmax2_off + 4 * out->nblocks2;
    }
    return 0;
}

int airllm_ct_tensor_qlayout(const airllm_ct_tensor *t, airllm_ct_qlayout *out,
                             airllm_err *err)
{
    if (t->dtype != AIRLLM_DTYPE_F32 && t->dtype != AIRLLM_DTYPE_F16 &&
        t->dtype != AIRLLM_DTYPE_BF16)
        return airllm_errf(err, "%s needs a F32, F16 or BF16 source dtype, not %s",
                           airllm_encoding_name(t->encoding), airllm_dtype_name(t->dtype));
    if (t->enc_param[1] & ~AIRLLM_CT_QFLAGS_KNOWN)
        return airllm_errf(err, "unknown quantization flags 0x%x", t->enc_param[1]);
    if (t->enc_param[2] != 0 || t->enc_param[3] != 0)
        return airllm_errf(err, "%s with nonzero enc_param[2..3]",
                           airllm_encoding_name(t->encoding));
    uint64_t n = t->raw_len / (airllm_dtype_bits(t->dtype) / 8);
    return airllm_ct_qlayout_make(t->encoding, n, t->enc_param[0],
                                  (t->enc_param[1] & AIRLLM_CT_QFLAG_DOUBLE_QUANT) != 0, out,
                                  err);
}

int airllm_ct_quant_absmax(const airllm_ct_qlayout *l, const uint8_t *scales, float *absmax,
                           airllm_err *err)
{
    if (!l->double_quant) {
        for (uint64_t b = 0; b < l->nblocks; b++) {
            absmax[b] = airllm_get_lef32(scales + 4 * b);
            if (!isfinite(absmax[b]))
                return airllm_errf(err, "block %llu: absmax is not finite",
                                   (unsigned long long)b);
        }
        return 0;
    }
    /* Offsets relative to the scales section. */
    const uint8_t *off_p = scales + (l->dq_offset_off - l->scales_off);
    const uint8_t *a2_p = scales + (l->dq_absmax2_off - l->scales_off);
    float offset = airllm_get_lef32(off_p);
    float *a2 = malloc((l->nblocks2 ? l->nblocks2 : 1) * sizeof *a2);
    if (!a2)
        return airllm_errf(err, "out of memory");
    int rc = 0;
    for (uint64_t b = 0; b < l->nblocks2 && !rc; b++) {
        a2[b] = airllm_get_lef32(a2_p + 4 * b);
        if (!isfinite(a2[b]))
            rc = airllm_errf(err, "absmax block %llu: scale is not finite",
                             (unsigned long long)b);
    }
    if (!rc && !isfinite(offset))
        rc = airllm_errf(err, "absmax offset is not finite");
    if (!rc)
        rc = airllm_dq_decompress(scales, (size_t)l->nblocks, a2, (size_t)l->nblocks2, offset,
                                  absmax, err);
    free(a2);
    return rc;
}

int airllm_ct_dequantize(airllm_encoding enc, const airllm_ct_qlayout *l, const uint8_t *stored,
                         float *out, airllm_err *err)
{
    if (l->n == 0)
        return 0;
    float *absmax = malloc(l->nblocks * sizeof *absmax);
    if (!absmax)
        return airllm_errf(err, "out of memory");
    int rc = airllm_ct_quant_absmax(l, stored + l->scales_off, absmax, err);
    if (!rc)
        rc = airllm_dequantize(airllm_encoding_quant_type(enc), stored, (size_t)l->codes_len, absmax,
                               (size_t)l->nblocks, (size_t)l->n, l->block, out, err);
    free(absmax);
    return rc;
}
