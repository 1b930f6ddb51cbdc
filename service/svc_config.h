/*
 * svc_config.h - braidd's configuration from flags and environment variables.
 *
 * Every option has a flag and an environment variable; a flag wins over the
 * environment, the environment over the default. `braidd --help` prints the
 * table in svc_config.c, so it is the one place where options are documented.
 */
#ifndef SVC_CONFIG_H
#define SVC_CONFIG_H

#include <stdbool.h>
#include <stddef.h>

#include "common/log.h"
#include "common/status.h"

#define SVC_MAX_LISTEN 8

typedef struct svc_config {
    const char *listen[SVC_MAX_LISTEN]; /* nng URLs; point into argv/environ or defaults */
    int n_listen;
    bi_log_level log_level;

    /* the engine (values <= 0 take the engine's defaults) */
    const char *model_path;   /* GGUF file or HF directory; NULL = no model */
    const char *dummy_preset; /* random weights of a preset shape instead of a model */
    int threads;
    int kv_tokens;
    double kv_memory_fraction; /* [0, 0.99]; < 0 = not given (0.85 on the GPU unless kv_tokens) */
    int page_size;
    int max_batch_tokens;
    int max_ctx;
    const char *chat_format; /* NULL = detected from the model */
    const char *backend;     /* "auto" (NULL), "cpu" or "cuda" */
    const char *dtype;       /* "auto" (NULL), "bf16" or "fp16": checked when parsed */

    /* service limits */
    int max_calls;        /* concurrent in-flight calls (nng contexts) */
    size_t max_msg_bytes; /* largest request accepted */
    int max_streams;      /* streams held at once (running or not yet drained) */
    int max_queued;       /* generations waiting for admission */
    double stream_idle_s; /* an unpolled stream is cancelled after this long */
    double grace_s;       /* shutdown grace period */
    const char *tls_cert; /* PEM certificate (chain) for tls+tcp:// listeners */
    const char *tls_key;  /* PEM private key for it */
    bool help;
    bool version;
} svc_config;

/* Fills cfg from the environment and argv. On a bad option returns
 * BI_INVALID_ARGUMENT and writes a message for the user into err. The config
 * borrows strings from argv and the environment; it owns nothing. */
bi_status svc_config_parse(svc_config *cfg, int argc, char **argv, char *err, size_t err_size);

/* Writes the --help text to f (a FILE *). */
void svc_config_usage(const char *prog, void *f);

#endif
