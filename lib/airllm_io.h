/* File I/O helpers: full reads and writes that name the file on error,
 * atomic small-file writes, directory fsync, and the fault-injection hook
 * that tests use to stop a tool at every durable step. */
#ifndef AIRLLM_IO_H
#define AIRLLM_IO_H

#include <stdbool.h>
#include <stdint.h>
#include <stddef.h>

#include "airllm_err.h"

/* pread until n bytes are read; a short file is an error ("truncated").
 * Messages start with path, or with nothing when path is NULL (for callers
 * that prefix the name themselves). */
int airllm_pread_full(int fd, void *buf, size_t n, uint64_t off, const char *path,
                      airllm_err *err);
/* write until all n bytes are written (EINTR and short writes retried). */
int airllm_write_full(int fd, const void *buf, size_t n, const char *path,
                      airllm_err *err);
/* Opens an input file read-only (O_CLOEXEC plus extra_flags, e.g. O_DIRECT)
 * and returns its descriptor, or -1 with err set: "<path>: cannot open:
 * <reason>" (errno kept from open) or "<path>: not a regular file". Every
 * file a tool reads goes through here: a FIFO given as a shard, config or
 * manifest would block open() forever, and /dev/zero or a directory would
 * be read or mapped as if it were data. The open is non-blocking, so that
 * a FIFO without a writer is refused rather than waited on; the flag is
 * cleared before returning. */
int airllm_open_input(const char *path, int extra_flags, airllm_err *err);
/* Reads a whole small file (config, index, manifest) into a NUL-terminated
 * malloc'ed buffer; refuses files over max_bytes. */
int airllm_read_small_file(const char *path, size_t max_bytes, char **out, size_t *len,
                           airllm_err *err);
/* Writes data to dir/name atomically: dir/.name.tmp, fsync, rename, fsync(dir). */
int airllm_write_file_atomic(const char *dir, const char *name, const void *data,
                             size_t n, airllm_err *err);
/* The same, with the contents written by fill(fd, tmp_path, ctx, err), for
 * files too large to build in memory first (a manifest of a million
 * tensors). */
int airllm_write_file_atomic_fn(const char *dir, const char *name,
                                int (*fill)(int fd, const char *path, void *ctx,
                                            airllm_err *err),
                                void *ctx, airllm_err *err);
int airllm_fsync_path(const char *path, airllm_err *err); /* file or directory */
/* Creates dir and any missing parents (mode 0755); existing ones are fine. */
int airllm_mkdir_p(const char *dir, airllm_err *err);
/* Copies into buf the nearest existing ancestor of path (path itself if it
 * exists): where a file under path would be stored, for statvfs. */
void airllm_existing_ancestor(const char *path, char *buf, size_t cap);
/* Joins dir and name into buf (cap bytes); error if it does not fit. */
int airllm_path_join(char *buf, size_t cap, const char *dir, const char *name,
                     airllm_err *err);

/* One writer per output directory. airllm-split and airllm-quant hold an
 * exclusive flock() on OUT_DIR/.airllm-split/lock from before they look at
 * OUT_DIR until they exit; airllm-run and airllm-verify hold a shared one
 * while that folder exists (a directory without it has no writer). flock()
 * dies with its process, so a lock never goes stale. The file holds the
 * writer's "PID TOOL", for messages only. */
#define AIRLLM_STATE_DIR ".airllm-split"
#define AIRLLM_LOCK_NAME "lock"
#define AIRLLM_LOCK_BUSY 1
/* Takes the writer's lock on dir (which must exist), creating the state
 * folder and the lock file when missing (*created_state says whether the
 * folder was created here). Returns 0 with *fd holding the lock,
 * AIRLLM_LOCK_BUSY with a message naming the holder when another process
 * holds it, or -1 on error. */
int airllm_lock_writer(const char *dir, const char *tool, int *fd, bool *created_state,
                       airllm_err *err);
/* Takes a reader's (shared) lock on dir. *fd is -1 when there is no lock
 * file: no writer has the directory. Returns 0, AIRLLM_LOCK_BUSY with a
 * message when a writer holds it, or -1 on error. Never creates anything. */
int airllm_lock_reader(const char *dir, int *fd, airllm_err *err);

/* Fault injection. Tools may install a hook; library code calls
 * airllm_step(what) right after each durable step (a file fsynced, renamed or
 * deleted, a journal line written). Tests use it to kill the process at step
 * N and check that nothing is lost. With no hook it does nothing. */
typedef void (*airllm_step_hook)(const char *what);
void airllm_set_step_hook(airllm_step_hook hook);
void airllm_step(const char *what);

#endif
