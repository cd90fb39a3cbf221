/* Streamed units read in place: a unit file mapped read-only, faulted in
 * ahead of use, checked, and computed on where the page cache holds it (no
 * copy). rt_store.c decides which loads map (raw and plainly quantized
 * units streamed by the CPU backend without --direct); this file owns the
 * mappings and what happens when one goes bad.
 *
 * A mapped file that shrinks under its mapping (truncated in place; a file
 * replaced by rename keeps its old inode, so its mapping is unaffected)
 * makes every access past the new end raise SIGBUS. Three layers keep that
 * from being a crash:
 *  - the size is checked against the manifest on the open descriptor just
 *    before mapping, and airllm-run holds the directory's shared lock, so
 *    airllm-split / airllm-quant cannot write there meanwhile;
 *  - the passes that touch the bytes first (fault-in, the XXH3 and SHA-256
 *    checks) run under rt_map_guard: a SIGBUS inside a registered mapping
 *    jumps back (siglongjmp) and becomes an error naming the file;
 *  - a SIGBUS in a registered mapping elsewhere (a compute thread, when the
 *    file was truncated after its check) cannot be returned from: the
 *    handler writes one line naming the file and the process exits 1.
 *    This is the one place in runner/ that prints outside airllm-run.c: a
 *    signal handler has no caller to hand a message to.
 * A SIGBUS outside every registered mapping goes to the previous handler. */
#include "rt_store_impl.h"

#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "airllm_hash.h"
#include "airllm_io.h"

#ifndef MADV_POPULATE_READ
#define MADV_POPULATE_READ 22 /* Linux 5.14 */
#endif

/* The live mappings, for the SIGBUS handler. An entry is claimed with
 * `used` (compare-and-swap), filled, then published by storing `base`
 * (release); it is withdrawn by clearing `base` before munmap. Owner: the
 * thread that mapped it; the handler only reads. */
#define RT_MAP_MAX 16
typedef struct {
    atomic_int used;
    _Atomic(uintptr_t) base;
    size_t len;
    char path[4096];
} map_entry;
static map_entry reg[RT_MAP_MAX];

static struct sigaction old_bus;
static pthread_once_t bus_once = PTHREAD_ONCE_INIT;
static int bus_installed; /* written once under bus_once */
static const char *const prog_name = "airllm-run"; /* the store's only user */

/* The guard of the calling thread, NULL outside rt_map_guard. */
static __thread sigjmp_buf *guard_jb;

static const map_entry *find_entry(uintptr_t a)
{
    for (int i = 0; i < RT_MAP_MAX; i++) {
        uintptr_t b = atomic_load_explicit(&reg[i].base, memory_order_acquire);
        if (b && a >= b && a - b < reg[i].len)
            return &reg[i];
    }
    return NULL;
}

static void put(const char *s)
{
    size_t n = strlen(s);
    while (n) {
        ssize_t w = write(2, s, n);
        if (w <= 0)
            return;
        s += w;
        n -= (size_t)w;
    }
}

static void on_sigbus(int sig, siginfo_t *si, void *uc)
{
    /* si_code > 0: raised by the kernel for a faulting access (kill and
     * raise give SI_USER and the like, <= 0, and no address). */
    const map_entry *e = si->si_code > 0 ? find_entry((uintptr_t)si->si_addr) : NULL;
    if (e && guard_jb)
        siglongjmp(*guard_jb, 1);
    if (e) {
        put(prog_name);
        put(": error: ");
        put(e->path);
        put(": the file shrank under its mapping while the model used it (truncated or "
            "changed on disk during the run)\n");
        _exit(1);
    }
    /* Not ours: the previous disposition, then the access faults again. */
    if (old_bus.sa_flags & SA_SIGINFO) {
        old_bus.sa_sigaction(sig, si, uc);
        return;
    }
    if (old_bus.sa_handler != SIG_DFL && old_bus.sa_handler != SIG_IGN) {
        old_bus.sa_handler(sig);
        return;
    }
    signal(SIGBUS, SIG_DFL);
    if (si->si_code <= 0)
        raise(SIGBUS); /* sent, not a fault: nothing re-raises it */
}

static void install_bus(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = on_sigbus;
    sa.sa_flags = SA_SIGINFO;
    sigemptyset(&sa.sa_mask);
    bus_installed = sigaction(SIGBUS, &sa, &old_bus) == 0;
}

int rt_map_guard(const char *path, void (*fn)(void *), void *arg, airllm_err *err)
{
    sigjmp_buf jb;
    sigjmp_buf *prev = guard_jb;
    if (sigsetjmp(jb, 1)) {
        guard_jb = prev;
        return airllm_errf(err, "%s: the file shrank under its mapping (truncated or changed "
                                "on disk during the run)",
                           path);
    }
    guard_jb = &jb;
    fn(arg);
    guard_jb = prev;
    return 0;
}

int rt_map_open(rt_mapping *m, const char *path, uint64_t size, airllm_err *err)
{
    memset(m, 0, sizeof *m);
    m->entry = -1;
    pthread_once(&bus_once, install_bus);
    if (!bus_installed)
        return airllm_errf(err, "cannot install the SIGBUS handler that mapped loads need");
    if (size == 0)
        return airllm_errf(err, "%s: empty unit file", path);
    int fd = airllm_open_input(path, 0, err);
    if (fd < 0)
        return -1;
    struct stat st;
    if (fstat(fd, &st) != 0 || (uint64_t)st.st_size != size) {
        close(fd);
        return airllm_errf(err, "%s: size changed since it was opened (now %lld bytes, the "
                                "manifest says %llu)",
                           path, (long long)st.st_size, (unsigned long long)size);
    }
    int k = -1;
    for (int i = 0; i < RT_MAP_MAX && k < 0; i++) {
        int z = 0;
        if (atomic_compare_exchange_strong(&reg[i].used, &z, 1))
            k = i;
    }
    if (k < 0) {
        close(fd);
        return airllm_errf(err, "internal error: more than %d unit files mapped", RT_MAP_MAX);
    }
    void *p = mmap(NULL, (size_t)size, PROT_READ, MAP_SHARED, fd, 0);
    int e = errno;
    close(fd); /* the mapping keeps the file */
    if (p == MAP_FAILED) {
        atomic_store(&reg[k].used, 0);
        return airllm_errf(err, "%s: cannot map: %s", path, strerror(e));
    }
    snprintf(reg[k].path, sizeof reg[k].path, "%s", path);
    reg[k].len = (size_t)size;
    atomic_store_explicit(&reg[k].base, (uintptr_t)p, memory_order_release);
    m->base = p;
    m->len = (size_t)size;
    m->entry = k;
    return 0;
}

void rt_map_close(rt_mapping *m)
{
    if (!m->base)
        return;
    atomic_store_explicit(&reg[m->entry].base, 0, memory_order_release);
    munmap((void *)m->base, m->len);
    atomic_store(&reg[m->entry].used, 0);
    memset(m, 0, sizeof *m);
    m->entry = -1;
}

/* Reads one byte of every page: the fault-in where MADV_POPULATE_READ is
 * missing (Linux < 5.14), under the guard. */
typedef struct {
    const uint8_t *p;
    size_t n;
} touch_arg;

static void touch_main(void *arg)
{
    const touch_arg *t = arg;
    const volatile uint8_t *p = t->p;
    uint8_t x = 0;
    for (size_t i = 0; i < t->n; i += 4096)
        x ^= p[i];
    (void)x;
}

int rt_map_populate(const rt_mapping *m, size_t off, size_t n, const char *path,
                    airllm_err *err)
{
    if (off >= m->len || n == 0)
        return 0;
    if (n > m->len - off)
        n = m->len - off;
    /* Page-aligned start: madvise needs it, and tensors start on 4096. */
    size_t lo = off & ~(size_t)4095;
    n += off - lo;
    /* Page tables filled for pages already cached, a synchronous read for
     * the others; a range past the end of a shrunk file is EFAULT, not a
     * signal. Measured on 108 MiB of a cached 7B-shaped layer: 0.5 ms (the
     * page cache's large folios are mapped whole). */
    if (madvise((uint8_t *)(uintptr_t)m->base + lo, n, MADV_POPULATE_READ) == 0)
        return 0;
    if (errno == EFAULT)
        return airllm_errf(err, "%s: the file shrank under its mapping (truncated or changed "
                                "on disk during the run)",
                           path);
    if (errno == EIO)
        return airllm_errf(err, "%s: read error: %s", path, strerror(errno));
    touch_arg t = {m->base + lo, n};
    return rt_map_guard(path, touch_main, &t, err);
}

typedef struct {
    const airllm_ct_header *h;
    uint32_t i;
    const uint8_t *stored;
    int rc;
    airllm_err *err;
} check_arg;

static void check_main(void *arg)
{
    check_arg *c = arg;
    c->rc = airllm_ct_check_tensor(c->h, c->i, c->stored, c->err);
}

int rt_map_check_tensor(const airllm_ct_header *h, uint32_t i, const uint8_t *stored,
                        airllm_err *err)
{
    check_arg c = {h, i, stored, 0, err};
    char what[300];
    snprintf(what, sizeof what, "tensor '%.200s'", i < h->n_tensors ? h->tensors[i].name : "?");
    if (rt_map_guard(what, check_main, &c, err))
        return -1;
    return c.rc;
}

typedef struct {
    airllm_sha256 *hs;
    const uint8_t *p;
    size_t n;
} sha_arg;

static void sha_main(void *arg)
{
    sha_arg *a = arg;
    airllm_sha256_update(a->hs, a->p, a->n);
}

int rt_map_sha256(const uint8_t *p, size_t n, const char *path, char hex[AIRLLM_SHA256_HEX],
                  airllm_err *err)
{
    sha_arg a = {airllm_sha256_new(), p, n};
    if (!a.hs)
        return airllm_errf(err, "out of memory");
    int rc = rt_map_guard(path, sha_main, &a, err);
    if (!rc)
        airllm_sha256_final_hex(a.hs, hex);
    airllm_sha256_free(a.hs);
    return rc;
}
