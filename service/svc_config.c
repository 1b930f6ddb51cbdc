/* svc_config.c - flag and environment parsing for braidd. */
#include "svc_config.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define DEFAULT_LISTEN "tcp://127.0.0.1:7543"

enum opt_kind { OPT_URL, OPT_LEVEL, OPT_INT, OPT_SIZE, OPT_SECONDS, OPT_FLAG };

struct opt {
    const char *flag;
    const char *env;
    enum opt_kind kind;
    size_t offset;
    const char *arg;
    const char *help;
};

static const struct opt opts[] = {
    {"--listen", "BRAID_LISTEN", OPT_URL, offsetof(svc_config, listen), "URL",
     "address to serve; repeatable (tcp://HOST:PORT, ipc:///PATH). Default " DEFAULT_LISTEN},
    {"--log-level", "BRAID_LOG_LEVEL", OPT_LEVEL, offsetof(svc_config, log_level), "LEVEL",
     "debug, info, warn, error or off. Default info"},
    {"--max-calls", "BRAID_MAX_CALLS", OPT_INT, offsetof(svc_config, max_calls), "N",
     "calls served at once, over all connections (1..65536). Default 256"},
    {"--max-message", "BRAID_MAX_MESSAGE", OPT_SIZE, offsetof(svc_config, max_msg_bytes), "BYTES",
     "largest request accepted (1 KiB..1 GiB). Default 16777216"},
    {"--grace", "BRAID_GRACE", OPT_SECONDS, offsetof(svc_config, grace_s), "SECONDS",
     "on SIGINT/SIGTERM, time in-flight calls get to finish. Default 10"},
    {"--version", NULL, OPT_FLAG, offsetof(svc_config, version), NULL, "print the version"},
    {"--help", NULL, OPT_FLAG, offsetof(svc_config, help), NULL, "print this help"},
};

#define N_OPTS (sizeof opts / sizeof opts[0])

void svc_config_usage(const char *prog, void *fp)
{
    FILE *f = fp;
    fprintf(f,
            "Usage: %s [OPTIONS]\n\n"
            "braidd serves the Braid RPC API (proto/braid.proto) over nng sockets.\n\n"
            "Options (each also read from the environment variable shown):\n",
            prog);
    for (size_t i = 0; i < N_OPTS; i++) {
        char left[64];
        snprintf(left, sizeof left, "%s%s%s", opts[i].flag, opts[i].arg ? " " : "",
                 opts[i].arg ? opts[i].arg : "");
        fprintf(f, "  %-24s %s\n", left, opts[i].help);
        if (opts[i].env)
            fprintf(f, "  %-24s   [env %s]\n", "", opts[i].env);
    }
    fprintf(f, "\nExample:\n  %s --listen tcp://0.0.0.0:7543 --listen ipc:///tmp/braid.sock\n",
            prog);
}

static bi_status parse_long(const char *s, long lo, long hi, long *out)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end || v < lo || v > hi)
        return BI_INVALID_ARGUMENT;
    *out = v;
    return BI_OK;
}

/* Applies one option value; value is NULL for flags. */
static bi_status opt_apply(svc_config *cfg, const struct opt *o, const char *value, char *err,
                           size_t err_size)
{
    char *field = (char *)cfg + o->offset;
    long v = 0;
    char *end;
    switch (o->kind) {
    case OPT_FLAG:
        *(bool *)field = true;
        return BI_OK;
    case OPT_URL:
        if (cfg->n_listen == SVC_MAX_LISTEN) {
            snprintf(err, err_size, "at most %d --listen addresses", SVC_MAX_LISTEN);
            return BI_INVALID_ARGUMENT;
        }
        cfg->listen[cfg->n_listen++] = value;
        return BI_OK;
    case OPT_LEVEL:
        if (bi_log_level_parse(value, (bi_log_level *)field) == BI_OK)
            return BI_OK;
        break;
    case OPT_INT:
        if (parse_long(value, 1, 65536, &v) == BI_OK) {
            *(int *)field = (int)v;
            return BI_OK;
        }
        break;
    case OPT_SIZE:
        if (parse_long(value, 1024, 1L << 30, &v) == BI_OK) {
            *(size_t *)field = (size_t)v;
            return BI_OK;
        }
        break;
    case OPT_SECONDS: {
        double d = strtod(value, &end);
        if (end != value && !*end && d >= 0 && d <= 3600) {
            *(double *)field = d;
            return BI_OK;
        }
        break;
    }
    }
    snprintf(err, err_size, "%s: invalid value '%s' (%s)", o->flag, value, o->help);
    return BI_INVALID_ARGUMENT;
}

static const struct opt *opt_find(const char *flag, size_t len)
{
    for (size_t i = 0; i < N_OPTS; i++)
        if (strlen(opts[i].flag) == len && strncmp(opts[i].flag, flag, len) == 0)
            return &opts[i];
    return NULL;
}

bi_status svc_config_parse(svc_config *cfg, int argc, char **argv, char *err, size_t err_size)
{
    bi_status st;
    memset(cfg, 0, sizeof *cfg);
    cfg->log_level = BI_LOG_INFO;
    cfg->max_calls = 256;
    cfg->max_msg_bytes = 16u << 20;
    cfg->grace_s = 10.0;

    for (size_t i = 0; i < N_OPTS; i++) {
        const char *e = opts[i].env ? getenv(opts[i].env) : NULL;
        if (e && *e && (st = opt_apply(cfg, &opts[i], e, err, err_size)) != BI_OK)
            return st;
    }
    bool listen_from_env = cfg->n_listen > 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *eq = strchr(a, '=');
        size_t flen = eq ? (size_t)(eq - a) : strlen(a);
        const struct opt *o = opt_find(a, flen);
        if (!o) {
            snprintf(err, err_size, "unknown option '%s' (try --help)", a);
            return BI_INVALID_ARGUMENT;
        }
        const char *value = NULL;
        if (o->kind != OPT_FLAG) {
            value = eq ? eq + 1 : (i + 1 < argc ? argv[++i] : NULL);
            if (!value) {
                snprintf(err, err_size, "%s needs a value (%s)", o->flag, o->arg);
                return BI_INVALID_ARGUMENT;
            }
        }
        if (o->kind == OPT_URL && listen_from_env) {
            cfg->n_listen = 0; /* flags replace the environment's addresses */
            listen_from_env = false;
        }
        if ((st = opt_apply(cfg, o, value, err, err_size)) != BI_OK)
            return st;
    }
    if (cfg->n_listen == 0)
        cfg->listen[cfg->n_listen++] = DEFAULT_LISTEN;
    return BI_OK;
}
