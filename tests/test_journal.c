/* The resume journal's encoding: every record round-trips, whatever its
 * names hold (spaces, UTF-8, 255 bytes, digits and hex that look like the
 * fixed fields); damaged lines are refused, never misread; lines of the
 * first format are read exactly. */
#include <math.h>
#include <string.h>

#include "airllm_journal.h"
#include "test_util.h"

static const char *SHA_A = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
static const char *SHA_B = "ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff";

static bool same(const airllm_jrec *a, const airllm_jrec *b)
{
    if (a->kind != b->kind || strcmp(a->name, b->name) != 0)
        return false;
    switch (a->kind) {
    case AIRLLM_JR_UNIT:
        return a->size == b->size && strcmp(a->sha, b->sha) == 0 &&
               strcmp(a->ck_source, b->ck_source) == 0 && a->ck_offset == b->ck_offset &&
               strcmp(a->ck_sha, b->ck_sha) == 0;
    case AIRLLM_JR_SOURCE: return a->size == b->size && strcmp(a->sha, b->sha) == 0;
    case AIRLLM_JR_DELETED: return true;
    case AIRLLM_JR_QSTATS:
        return a->size == b->size && memcmp(a->stats, b->stats, sizeof a->stats) == 0;
    }
    return false;
}

static void roundtrip(const airllm_jrec *r, const char *what)
{
    char line[AIRLLM_JOURNAL_LINE_MAX];
    size_t n = airllm_journal_encode(r, line, sizeof line);
    CHECK(n > 0 && line[n - 1] == '\n', "%s: encodes", what);
    if (!n)
        return;
    CHECK(memchr(line, '\n', n - 1) == NULL, "%s: one line", what);
    airllm_jrec back;
    CHECK(airllm_journal_decode(line, n - 1, &back) == 0, "%s: decodes: %.*s", what, (int)n,
          line);
    CHECK(same(r, &back), "%s: round-trips", what);
    /* Every proper prefix (a torn append) and every one-byte extension is
     * refused rather than read as another record. */
    int torn_ok = 1;
    for (size_t k = 0; k + 1 < n; k++)
        if (airllm_journal_decode(line, k, &back) == 0)
            torn_ok = 0;
    CHECK(torn_ok, "%s: no prefix decodes", what);
    line[n - 1] = 'x';
    CHECK(airllm_journal_decode(line, n, &back) != 0, "%s: trailing byte refused", what);
}

static airllm_jrec rec(airllm_jr_kind k, const char *name)
{
    airllm_jrec r;
    memset(&r, 0, sizeof r);
    r.kind = k;
    strcpy(r.name, name);
    return r;
}

int main(void)
{
    char n255[256];
    memset(n255, 'x', 255);
    memcpy(n255 + 240, ".safetensors", 12);
    n255[255] = '\0';
    const char *names[] = {
        "model-00001-of-00003.safetensors",
        "my model 1.safetensors",
        " leading and trailing ",
        "mod\xc3\xa8le-\xe6\xa8\xa1\xe5\x9e\x8b-\xf0\x9f\xa6\x99.safetensors",
        "12 34 0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
        "5:abc",
        "a\\b\"c%s%n",
        n255,
    };
    for (size_t i = 0; i < sizeof names / sizeof *names; i++) {
        airllm_jrec r = rec(AIRLLM_JR_UNIT, names[i]);
        r.size = 4096u * 1000003u;
        strcpy(r.sha, SHA_A);
        strcpy(r.ck_source, names[(i + 1) % (sizeof names / sizeof *names)]);
        r.ck_offset = UINT64_MAX;
        strcpy(r.ck_sha, SHA_B);
        roundtrip(&r, "unit");
        r = rec(AIRLLM_JR_SOURCE, names[i]);
        r.size = 0;
        strcpy(r.sha, SHA_B);
        roundtrip(&r, "source");
        r = rec(AIRLLM_JR_DELETED, names[i]);
        roundtrip(&r, "deleted");
        r = rec(AIRLLM_JR_QSTATS, names[i]);
        r.size = 7;
        r.stats[0] = 0.1;
        r.stats[1] = 1e-300;
        r.stats[2] = -0.0;
        roundtrip(&r, "qstats");
        r.stats[0] = INFINITY;
        roundtrip(&r, "qstats inf");
    }
    /* a unit without a checkpoint (read from format 1) */
    airllm_jrec u = rec(AIRLLM_JR_UNIT, "embed.airc");
    strcpy(u.sha, SHA_A);
    memset(u.ck_sha, '0', 64);
    roundtrip(&u, "unit without checkpoint");
    /* a 1024-byte tensor name */
    airllm_jrec q = rec(AIRLLM_JR_QSTATS, "");
    memset(q.name, 'n', AIRLLM_JOURNAL_NAME_MAX);
    q.name[AIRLLM_JOURNAL_NAME_MAX] = '\0';
    roundtrip(&q, "1024-byte tensor name");

    /* Names the encoder must refuse: empty, with a newline. */
    char line[AIRLLM_JOURNAL_LINE_MAX];
    airllm_jrec r = rec(AIRLLM_JR_DELETED, "");
    CHECK(airllm_journal_encode(&r, line, sizeof line) == 0, "empty name refused");
    r = rec(AIRLLM_JR_DELETED, "a\nb");
    CHECK(airllm_journal_encode(&r, line, sizeof line) == 0, "newline refused");
    r = rec(AIRLLM_JR_DELETED, "abc");
    CHECK(airllm_journal_encode(&r, line, 8) == 0, "too small a buffer refused");

    /* Damaged lines. */
    const char *badl[] = {
        "",
        "unit",
        "deleted 4:abc",
        "deleted 2:abc",
        "deleted 0:",
        "deleted abc",
        "deleted 3:abc extra",
        "source 3:abc 12 0123",
        "source 3:abc -1 0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
        ("source 3:abc 99999999999999999999 "
         "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"),
        "source 3:abc 1 0123456789ABCDEF0123456789abcdef0123456789abcdef0123456789abcdef",
        "unit 3:abc 1 0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
        "frob 3:abc",
        "qstats 1 0x1p+0 0x1p+0 3:abc",
        "qstats 1 0x1p+0 0x1p+0 0x1p+0 3:ab",
    };
    for (size_t i = 0; i < sizeof badl / sizeof *badl; i++) {
        airllm_jrec b;
        CHECK(airllm_journal_decode(badl[i], strlen(badl[i]), &b) != 0, "refused: \"%s\"",
              badl[i]);
    }

    /* Format 1, as the first airllm-split wrote it ("%s %s %llu %s"). */
    airllm_jrec v;
    const char *l1 = "source my model 1.safetensors 1234 "
                     "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
    CHECK(airllm_journal_decode_v1(l1, strlen(l1), &v) == 0 && v.kind == AIRLLM_JR_SOURCE &&
              strcmp(v.name, "my model 1.safetensors") == 0 && v.size == 1234 &&
              strcmp(v.sha, SHA_A) == 0,
          "v1 source with spaces");
    const char *l2 = "unit layer.00000.airc 8192 "
                     "ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff";
    CHECK(airllm_journal_decode_v1(l2, strlen(l2), &v) == 0 && v.kind == AIRLLM_JR_UNIT &&
              strcmp(v.name, "layer.00000.airc") == 0 && v.size == 8192 && !v.ck_source[0],
          "v1 unit");
    const char *l3 = "deleted a b c.safetensors";
    CHECK(airllm_journal_decode_v1(l3, strlen(l3), &v) == 0 && v.kind == AIRLLM_JR_DELETED &&
              strcmp(v.name, "a b c.safetensors") == 0,
          "v1 deleted with spaces");
    const char *l4 = "qstats 12 model.layers.0.mlp.up_proj.weight 0x1p-3 0x1p+1 0x1.8p-4";
    CHECK(airllm_journal_decode_v1(l4, strlen(l4), &v) == 0 && v.kind == AIRLLM_JR_QSTATS &&
              v.size == 12 && strcmp(v.name, "model.layers.0.mlp.up_proj.weight") == 0 &&
              v.stats[0] == 0.125 && v.stats[1] == 2.0 && v.stats[2] == 0.09375,
          "v1 qstats");
    const char *l5 = "source abc 12 0123";
    CHECK(airllm_journal_decode_v1(l5, strlen(l5), &v) != 0, "v1 torn line refused");
    const char *l6 = "unit layer.0000unit layer.00001.airc 12";
    CHECK(airllm_journal_decode_v1(l6, strlen(l6), &v) != 0, "v1 torn-then-appended refused");
    return test_summary();
}
