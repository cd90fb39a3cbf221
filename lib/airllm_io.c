#include "airllm_io.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

static airllm_step_hook step_hook;

void airllm_set_step_hook(airllm_step_hook hook) { step_hook = hook; }

void airllm_step(const char *what)
{
    if (step_hook)
        step_hook(what);
}

int airllm_pread_full(int fd, void *buf, size_t n, uint64_t off, const char *path,
                      airllm_err *err)
{
    const char *sep = path ? ": " : "";
    if (!path)
        path = "";
    uint8_t *p = buf;
    while (n > 0) {
        ssize_t r = pread(fd, p, n, (off_t)off);
        if (r < 0) {
            if (errno == EINTR)
                continue;
            return airllm_errf(err, "%s%sread error at offset %llu: %s", path, sep,
                               (unsigned long long)off, strerror(errno));
        }
        if (r == 0)
            return airllm_errf(err, "%s%struncated: expected %zu more bytes at offset %llu",
                               path, sep, n, (unsigned long long)off);
        p += r;
        n -= (size_t)r;
        off += (uint64_t)r;
    }
    return 0;
}

int airllm_write_full(int fd, const void *buf, size_t n, const char *path, airllm_err *err)
{
    const uint8_t *p = buf;
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return airllm_errf(err, "%s: write error: %s", path, strerror(errno));
        }
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

int airllm_open_input(const char *path, int extra_flags, airllm_err *err)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK | extra_flags);
    if (fd < 0) {
        int e = errno;
        airllm_errf(err, "%s: cannot open: %s", path, strerror(e));
        errno = e;
        return -1;
    }
    struct stat st;
    if (fstat(fd, &st) != 0) {
        int e = errno;
        close(fd);
        airllm_errf(err, "%s: cannot stat: %s", path, strerror(e));
        errno = e;
        return -1;
    }
    if (!S_ISREG(st.st_mode)) {
        close(fd);
        airllm_errf(err, "%s: not a regular file", path);
        errno = EINVAL;
        return -1;
    }
    int fl = fcntl(fd, F_GETFL);
    if (fl < 0 || fcntl(fd, F_SETFL, fl & ~O_NONBLOCK) != 0) {
        int e = errno;
        close(fd);
        airllm_errf(err, "%s: cannot clear O_NONBLOCK: %s", path, strerror(e));
        errno = e;
        return -1;
    }
    return fd;
}

int airllm_read_small_file(const char *path, size_t max_bytes, char **out, size_t *len,
                           airllm_err *err)
{
    *out = NULL;
    int fd = airllm_open_input(path, 0, err);
    if (fd < 0)
        return -1;
    struct stat st;
    if (fstat(fd, &st) != 0) {
        close(fd);
        return airllm_errf(err, "%s: cannot stat: %s", path, strerror(errno));
    }
    if ((uint64_t)st.st_size > max_bytes) {
        close(fd);
        return airllm_errf(err, "%s: too large (%lld bytes, limit %zu)", path,
                           (long long)st.st_size, max_bytes);
    }
    size_t n = (size_t)st.st_size;
    char *buf = malloc(n + 1);
    if (!buf) {
        close(fd);
        return airllm_errf(err, "%s: out of memory", path);
    }
    int rc = airllm_pread_full(fd, buf, n, 0, path, err);
    close(fd);
    if (rc) {
        free(buf);
        return rc;
    }
    buf[n] = '\0';
    *out = buf;
    if (len)
        *len = n;
    return 0;
}

int airllm_fsync_path(const char *path, airllm_err *err)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return airllm_errf(err, "%s: cannot open for fsync: %s", path, strerror(errno));
    int rc = 0;
    if (fsync(fd) != 0)
        rc = airllm_errf(err, "%s: fsync failed: %s", path, strerror(errno));
    close(fd);
    return rc;
}

int airllm_path_join(char *buf, size_t cap, const char *dir, const char *name,
                     airllm_err *err)
{
    int n = snprintf(buf, cap, "%s/%s", dir, name);
    if (n < 0 || (size_t)n >= cap)
        return airllm_errf(err, "path too long: %s/%s", dir, name);
    return 0;
}

typedef struct {
    const void *data;
    size_t n;
} whole_buf;

static int write_whole(int fd, const char *path, void *ctx, airllm_err *err)
{
    const whole_buf *b = ctx;
    return airllm_write_full(fd, b->data, b->n, path, err);
}

int airllm_write_file_atomic(const char *dir, const char *name, const void *data,
                             size_t n, airllm_err *err)
{
    whole_buf b = {data, n};
    return airllm_write_file_atomic_fn(dir, name, write_whole, &b, err);
}

int airllm_write_file_atomic_fn(const char *dir, const char *name,
                                int (*fill)(int fd, const char *path, void *ctx,
                                            airllm_err *err),
                                void *ctx, airllm_err *err)
{
    char tmp[4096], final[4096];
    char tmpname[1024];
    snprintf(tmpname, sizeof tmpname, ".%s.tmp", name);
    if (airllm_path_join(tmp, sizeof tmp, dir, tmpname, err) ||
        airllm_path_join(final, sizeof final, dir, name, err))
        return -1;
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0)
        return airllm_errf(err, "%s: cannot create: %s", tmp, strerror(errno));
    if (fill(fd, tmp, ctx, err)) {
        close(fd);
        unlink(tmp);
        return -1;
    }
    if (fsync(fd) != 0) {
        int e = errno;
        close(fd);
        unlink(tmp);
        return airllm_errf(err, "%s: fsync failed: %s", tmp, strerror(e));
    }
    if (close(fd) != 0) {
        int e = errno;
        unlink(tmp);
        return airllm_errf(err, "%s: close failed: %s", tmp, strerror(e));
    }
    if (rename(tmp, final) != 0) {
        int e = errno;
        unlink(tmp);
        return airllm_errf(err, "%s: cannot rename to %s: %s", tmp, final, strerror(e));
    }
    if (airllm_fsync_path(dir, err))
        return -1;
    airllm_step(final);
    return 0;
}

int airllm_mkdir_p(const char *dir, airllm_err *err)
{
    char buf[4096];
    size_t n = strlen(dir);
    if (n == 0 || n >= sizeof buf)
        return airllm_errf(err, "bad directory path: '%s'", dir);
    memcpy(buf, dir, n + 1);
    for (size_t i = 1; i <= n; i++) {
        if (buf[i] != '/' && buf[i] != '\0')
            continue;
        char saved = buf[i];
        buf[i] = '\0';
        if (mkdir(buf, 0755) != 0 && errno != EEXIST)
            return airllm_errf(err, "%s: cannot create: %s", buf, strerror(errno));
        buf[i] = saved;
    }
    struct stat st;
    if (stat(dir, &st) != 0 || !S_ISDIR(st.st_mode))
        return airllm_errf(err, "%s: not a directory", dir);
    return 0;
}

void airllm_existing_ancestor(const char *path, char *buf, size_t cap)
{
    struct stat st;
    snprintf(buf, cap, "%s", path);
    while (stat(buf, &st) != 0) {
        char *slash = strrchr(buf, '/');
        if (!slash) {
            snprintf(buf, cap, ".");
            return;
        }
        if (slash == buf) {
            buf[1] = '\0';
            return;
        }
        *slash = '\0';
    }
}

/* Names the holder of a lock from the "PID TOOL" its writer recorded. */
static int lock_busy(const char *dir, int fd, airllm_err *err)
{
    char buf[64], tool[32] = "airllm-split", who[48] = "pid unknown";
    ssize_t n = pread(fd, buf, sizeof buf - 1, 0);
    if (n > 0) {
        long pid;
        char t[32];
        buf[n] = '\0';
        int k = sscanf(buf, "%ld %31s", &pid, t);
        if (k >= 1 && pid > 0)
            snprintf(who, sizeof who, "pid %ld", pid);
        if (k == 2 && strncmp(t, "airllm-", 7) == 0)
            snprintf(tool, sizeof tool, "%s", t);
    }
    airllm_errf(err, "%s: OUT_DIR is being written by another %s (%s); wait for it to finish",
                dir, tool, who);
    return AIRLLM_LOCK_BUSY;
}

/* After flock() succeeded: is path still the file locked? Between our open()
 * and flock(), a writer that finished may have removed the lock file with its
 * folder, and another writer may have created a new one: a lock on the old
 * file would then exclude nobody. 1 yes, 0 no (retry), -1 error. */
static int lock_current(int fd, const char *path)
{
    struct stat a, b;
    if (fstat(fd, &a) != 0)
        return -1;
    if (lstat(path, &b) != 0)
        return errno == ENOENT || errno == ENOTDIR ? 0 : -1;
    return a.st_dev == b.st_dev && a.st_ino == b.st_ino;
}

static int lock_paths(const char *dir, char *sdir, char *path, airllm_err *err)
{
    if (airllm_path_join(sdir, 4096, dir, AIRLLM_STATE_DIR, err) ||
        airllm_path_join(path, 4096, sdir, AIRLLM_LOCK_NAME, err))
        return -1;
    return 0;
}

int airllm_lock_writer(const char *dir, const char *tool, int *fd, bool *created_state,
                       airllm_err *err)
{
    char sdir[4096], path[4096];
    *fd = -1;
    *created_state = false;
    if (lock_paths(dir, sdir, path, err))
        return -1;
    for (int tries = 0; tries < 100; tries++) {
        if (mkdir(sdir, 0755) == 0)
            *created_state = true;
        else if (errno != EEXIST)
            return airllm_errf(err, "%s: cannot create: %s", sdir, strerror(errno));
        int f = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0644);
        if (f < 0) {
            if (errno == ENOENT) /* a finishing writer removed the folder: again */
                continue;
            return airllm_errf(err, "%s: cannot open: %s", path, strerror(errno));
        }
        if (flock(f, LOCK_EX | LOCK_NB) != 0) {
            int e = errno, rc;
            if (e != EWOULDBLOCK)
                rc = airllm_errf(err, "%s: cannot lock: %s", path, strerror(e));
            else if (flock(f, LOCK_SH | LOCK_NB) == 0) { /* only readers hold it */
                airllm_errf(err, "%s: OUT_DIR is in use by airllm-run or airllm-verify; try "
                                 "again when they finish", dir);
                rc = AIRLLM_LOCK_BUSY;
            } else
                rc = lock_busy(dir, f, err);
            close(f);
            return rc;
        }
        int cur = lock_current(f, path);
        if (cur == 0) {
            close(f);
            continue;
        }
        /* The record is written over the old one, then cut to length, so
         * that a contender reading it never sees it empty. */
        char rec[64];
        int n = snprintf(rec, sizeof rec, "%ld %s\n", (long)getpid(), tool);
        if (cur < 0 || pwrite(f, rec, (size_t)n, 0) != n || ftruncate(f, n) != 0) {
            int e = errno;
            close(f);
            return airllm_errf(err, "%s: cannot record the lock: %s", path, strerror(e));
        }
        *fd = f;
        return 0;
    }
    return airllm_errf(err, "%s: cannot take the lock: the file keeps being replaced", path);
}

int airllm_lock_reader(const char *dir, int *fd, airllm_err *err)
{
    char sdir[4096], path[4096];
    *fd = -1;
    if (lock_paths(dir, sdir, path, err))
        return -1;
    for (int tries = 0; tries < 100; tries++) {
        int f = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
        if (f < 0) {
            if (errno == ENOENT || errno == ENOTDIR)
                return 0; /* no writer has this directory */
            return airllm_errf(err, "%s: cannot open: %s", path, strerror(errno));
        }
        if (flock(f, LOCK_SH | LOCK_NB) != 0) {
            int rc = errno == EWOULDBLOCK
                         ? lock_busy(dir, f, err)
                         : airllm_errf(err, "%s: cannot lock: %s", path, strerror(errno));
            close(f);
            return rc;
        }
        int cur = lock_current(f, path), e = errno;
        if (cur == 1) {
            *fd = f;
            return 0;
        }
        close(f);
        if (cur < 0)
            return airllm_errf(err, "%s: cannot stat: %s", path, strerror(e));
        /* The writer finished (and removed the file) meanwhile: look again. */
    }
    return airllm_errf(err, "%s: cannot take the lock: the file keeps being replaced", path);
}
