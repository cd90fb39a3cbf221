/* airllm-serve's shared state (airllm-serve.c sets it up; serve_http.c
 * answers requests on libmicrohttpd's connection threads). */
#ifndef AIRLLM_SERVE_H
#define AIRLLM_SERVE_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include <microhttpd.h>

#include "airllm_tokenizer.h"
#include "rt.h"
#include "rt_batch.h"
#include "rt_chat.h"
#include "serve_req.h"

typedef struct {
    rt_model *m;
    rt_batch *batch;
    airllm_tokenizer *tok;  /* NULL: prompts as token ids only */
    rt_chat *chat;          /* NULL: no chat template (chat requests refused) */
    serve_defaults defaults;
    const char *model_name;
    const char *api_key;    /* NULL: no authentication */
    size_t max_body;        /* bytes of a request body */
    double body_deadline_s; /* a body not in by then (from the end of the
                               headers) gets 408: --timeout */
    bool json_log;
    /* tok_lock owns the tokenizer: encoding and decoders are serialized
     * (the tokenizer's internals are not promised to be thread-safe). */
    pthread_mutex_t tok_lock;
    /* lock owns the fields below. */
    pthread_mutex_t lock;
    pthread_cond_t idle;    /* signalled when active drops to 0 */
    uint64_t next_id, served, failed;
    long active;            /* connections with a request under way */
    /* log_lock owns stdout (--json lines). */
    pthread_mutex_t log_lock;
} serve_state;

/* libmicrohttpd's access handler and completion callback (serve_http.c);
 * cls is the serve_state. */
enum MHD_Result serve_handle(void *cls, struct MHD_Connection *c, const char *url,
                             const char *method, const char *version, const char *upload,
                             size_t *upload_size, void **con_cls);
void serve_completed(void *cls, struct MHD_Connection *c, void **con_cls,
                     enum MHD_RequestTerminationCode toe);

#endif
