/*
 * svc_config.h - braidd's configuration from flags and environment variables.
 *
 * Every option has a flag and an environment variable; a flag wins over the
 * environment, the environment over the default. `braidd --help` prints the
 * table below, so it is the one place where options are documented.
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
    int max_calls;        /* concurrent in-flight calls (nng contexts) */
    size_t max_msg_bytes; /* largest request accepted */
    double grace_s;       /* shutdown grace period */
    bool help;
    bool version;
} svc_config;

/* Fills cfg from the environment and argv. On a bad option returns
 * BI_INVALID_ARGUMENT and writes a message for the user into err. The config
 * borrows strings from argv and the environment; it owns nothing. */
bi_status svc_config_parse(svc_config *cfg, int argc, char **argv, char *err, size_t err_size);

/* Writes the --help text to f. */
void svc_config_usage(const char *prog, void *f);

#endif
