/* Internals shared by the unit store's files: rt_store.c (residency, slots,
 * one load), rt_store_read.c (reading files into memory), rt_prefetch.c
 * (the prefetch thread, acquire / release) and rt_map.c (mapped loads). */
#ifndef AIRLLM_RT_STORE_IMPL_H
#define AIRLLM_RT_STORE_IMPL_H

#include <string.h>

#include "rt.h"

/* An expert tensor of a MoE layer: streamed, read when the router picks it. */
static inline bool rt_is_expert(const char *name)
{
    return strstr(name, ".experts.") != NULL;
}

/* ---- rt_store.c ---- */

/* Loads unit ui into sl (read, or mapped when u->mapped) and builds its
 * tensor views. defer: the caller checks the tensors afterwards (the
 * prefetch thread's deferred check); set to whether it must, or NULL to
 * check here. */
int rt_slot_load(rt_store *s, size_t ui, rt_slot *sl, bool *defer, airllm_err *err);

/* ---- rt_prefetch.c ---- */

void *rt_prefetch_main(void *store);

/* ---- rt_store_read.c ---- */

/* Opens u's file (O_DIRECT first with --direct); path receives its name. */
int rt_open_unit(const rt_store *s, const rt_unit *u, char path[4096], airllm_err *err);
/* Tensor t's aligned file range into sl->buf at its offset; adds to *bytes. */
int rt_read_tensor(int fd, const rt_unit *u, rt_slot *sl, const airllm_ct_tensor *t,
                   const char *path, uint64_t *bytes, airllm_err *err);
/* n bytes from offset 0 with up to `readers` threads. */
int rt_read_parallel(int fd, uint8_t *buf, size_t n, int readers, const char *path,
                     airllm_err *err);
/* Every tensor's XXH3 (skip_experts: not the experts) against hc's check
 * block, with s->readers threads; the message names path and the tensor. */
int rt_check_tensors(const rt_store *s, const airllm_ct_header *hc, const uint8_t *buf,
                     bool skip_experts, const char *path, airllm_err *err);
/* The whole file read into buf, each tensor hashed as it lands (page cache;
 * _direct: O_DIRECT pieces read by a thread, hashed behind it). */
int rt_read_checked(int fd, uint8_t *buf, const rt_unit *u, const char *path, airllm_err *err);
int rt_read_checked_direct(int fd, uint8_t *buf, const rt_unit *u, const char *path,
                           airllm_err *err);
/* The embedding file checked whole, in bounded memory (rows read later are
 * not checked again). */
int rt_check_rows_file(const rt_store *s, const rt_unit *u, airllm_err *err);

/* ---- rt_map.c ---- */

/* Runs fn(arg); a SIGBUS inside a mapped unit file while it runs (the file
 * shrank under its mapping) returns -1 with a message naming path instead.
 * fn must leave nothing half-done that matters when it is cut short (it is
 * a read-only pass: a hash, a fault-in). */
int rt_map_guard(const char *path, void (*fn)(void *), void *arg, airllm_err *err);
/* airllm_ct_check_tensor under the guard (the message then names the
 * tensor; the caller adds the file). */
int rt_map_check_tensor(const airllm_ct_header *h, uint32_t i, const uint8_t *stored,
                        airllm_err *err);
/* The SHA-256 of n bytes as hex, under the guard. */
int rt_map_sha256(const uint8_t *p, size_t n, const char *path, char hex[AIRLLM_SHA256_HEX],
                  airllm_err *err);
/* Maps path read-only after checking its size on the open descriptor, and
 * registers the range with the SIGBUS handler. */
int rt_map_open(rt_mapping *m, const char *path, uint64_t size, airllm_err *err);
void rt_map_close(rt_mapping *m); /* no-op on a closed one */
/* Faults [off, off + n) in (MADV_POPULATE_READ; touching each page where
 * the kernel lacks it): an error naming path, not a signal, if the file
 * shrank. */
int rt_map_populate(const rt_mapping *m, size_t off, size_t n, const char *path,
                    airllm_err *err);

#endif
