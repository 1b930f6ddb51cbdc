/* svc_config.c - flag and environment parsing for braidd. */
#include "svc_config.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/backend.h"

#define DEFAULT_LISTEN "tcp://127.0.0.1:7543"

enum opt_kind { OPT_URL, OPT_LEVEL, OPT_INT, OPT_SIZE, OPT_REAL, OPT_STR, OPT_FLAG };

struct opt {
    const char *flag;
    const char *env;
    enum opt_kind kind;
    size_t offset;
    const char *arg;
    double lo, hi; /* range of OPT_INT, OPT_SIZE and OPT_REAL values */
    const char *help;
};

#define F(field) offsetof(svc_config, field)

static const struct opt opts[] = {
    {"--listen", "BRAID_LISTEN", OPT_URL, F(listen), "URL", 0, 0,
     "address to serve; repeatable (tcp://HOST:PORT, ipc:///PATH, tls+tcp://HOST:PORT). "
     "Default " DEFAULT_LISTEN},
    {"--log-level", "BRAID_LOG_LEVEL", OPT_LEVEL, F(log_level), "LEVEL", 0, 0,
     "debug, info, warn, error or off. Default info"},
    {"--model", "BRAID_MODEL", OPT_STR, F(model_path), "PATH", 0, 0,
     "model to serve: a GGUF file or a Hugging Face directory. Without --model or --dummy "
     "braidd answers Health only"},
    {"--dummy", "BRAID_DUMMY", OPT_STR, F(dummy_preset), "PRESET", 0, 0,
     "serve random weights of a preset shape (tinyllama-1.1b, qwen3-0.6b, llama3-8b, "
     "smollm2-135m; no tokenizer: token ids only) instead of --model"},
    {"--backend", "BRAID_BACKEND", OPT_STR, F(backend), "NAME", 0, 0,
     "auto (the GPU when the build has CUDA and a device is usable, else the CPU), cpu or "
     "cuda. Default auto"},
    {"--dtype", "BRAID_DTYPE", OPT_STR, F(dtype), "TYPE", 0, 0,
     "GPU storage of weights, activations and KV cache: auto (fp16 for F16 model files, else "
     "bf16), bf16 or fp16; math is fp32. fp16 refuses weights beyond 65504 (auto falls back "
     "to bf16). Default auto"},
    {"--threads", "BRAID_THREADS", OPT_INT, F(threads), "N", 0, 1024,
     "CPU threads for the engine; 0 = all cores. Default 0"},
    {"--kv-tokens", "BRAID_KV_TOKENS", OPT_INT, F(kv_tokens), "N", 0, 1 << 24,
     "KV pool capacity in tokens; 0 = the engine default (16384)"},
    {"--kv-memory-fraction", "BRAID_KV_MEMORY_FRACTION", OPT_REAL, F(kv_memory_fraction), "F", 0,
     0.99,
     "on the GPU, size the KV pool to this fraction of the device memory left free by the "
     "weights, instead of --kv-tokens; 0 = --kv-tokens. Default 0.85 on the GPU unless "
     "--kv-tokens is given; unused on the CPU"},
    {"--page-size", "BRAID_PAGE_SIZE", OPT_INT, F(page_size), "N", 0, 4096,
     "tokens per KV page; 0 = the engine default (16)"},
    {"--max-batch-tokens", "BRAID_MAX_BATCH_TOKENS", OPT_INT, F(max_batch_tokens), "N", 0, 1 << 20,
     "tokens per forward step; 0 = the engine default (256)"},
    {"--max-context", "BRAID_MAX_CONTEXT", OPT_INT, F(max_ctx), "N", 0, 1 << 24,
     "longest composition + generation; 0 = the model's, capped at the KV pool"},
    {"--chat-format", "BRAID_CHAT_FORMAT", OPT_STR, F(chat_format), "NAME", 0, 0,
     "override the chat template detected from the model (chatml, llama2, llama3, zephyr, "
     "mistral, gemma)"},
    {"--max-calls", "BRAID_MAX_CALLS", OPT_INT, F(max_calls), "N", 1, 65536,
     "calls served at once over all connections, long polls included (1..65536); "
     "further calls wait inside nng until a slot frees. Default 256"},
    {"--max-message", "BRAID_MAX_MESSAGE", OPT_SIZE, F(max_msg_bytes), "BYTES", 1024, 1 << 30,
     "largest request accepted (1 KiB..1 GiB). Default 16777216"},
    {"--max-streams", "BRAID_MAX_STREAMS", OPT_INT, F(max_streams), "N", 1, 1 << 20,
     "streams held at once, running or not yet drained; Generate beyond it answers "
     "RESOURCE_EXHAUSTED. Default 4096"},
    {"--max-queued", "BRAID_MAX_QUEUED", OPT_INT, F(max_queued), "N", 1, 1 << 20,
     "generations waiting for the batch; Generate beyond it answers RESOURCE_EXHAUSTED. "
     "Default 1024"},
    {"--stream-idle-timeout", "BRAID_STREAM_IDLE_TIMEOUT", OPT_REAL, F(stream_idle_s), "SECONDS",
     0.1, 86400,
     "a stream nobody polls for this long is cancelled, its KV freed and the stream dropped. "
     "Default 30"},
    {"--grace", "BRAID_GRACE", OPT_REAL, F(grace_s), "SECONDS", 0, 3600,
     "on SIGINT/SIGTERM, time running generations get to finish (their streams can still be "
     "drained) before they are cancelled. Default 10"},
    {"--tls-cert", "BRAID_TLS_CERT", OPT_STR, F(tls_cert), "FILE", 0, 0,
     "PEM certificate (chain) for tls+tcp:// listeners"},
    {"--tls-key", "BRAID_TLS_KEY", OPT_STR, F(tls_key), "FILE", 0, 0,
     "PEM private key of --tls-cert (unencrypted)"},
    {"--version", NULL, OPT_FLAG, F(version), NULL, 0, 0, "print the version"},
    {"--help", NULL, OPT_FLAG, F(help), NULL, 0, 0, "print this help"},
};

#define N_OPTS (sizeof opts / sizeof opts[0])

/* Writes text word-wrapped to lines of at most width bytes, each after indent spaces
 * (the first line continues the current one). */
static void write_wrapped(FILE *f, const char *text, int indent, int width)
{
    int col = 0;
    while (*text) {
        int w = (int)strcspn(text, " ");
        if (col > 0 && col + 1 + w > width) {
            fprintf(f, "\n%*s", indent, "");
            col = 0;
        } else if (col > 0) {
            fputc(' ', f);
            col++;
        }
        fprintf(f, "%.*s", w, text);
        col += w;
        text += w;
        text += strspn(text, " ");
    }
    fputc('\n', f);
}

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
        fprintf(f, "  %-30s ", left);
        write_wrapped(f, opts[i].help, 33, 60);
        if (opts[i].env)
            fprintf(f, "  %-30s [env %s]\n", "", opts[i].env);
    }
    fprintf(f,
            "\nExample:\n  %s --model models/SmolLM2-135M-Instruct.Q4_1.gguf "
            "--listen tcp://0.0.0.0:7543 --listen ipc:///tmp/braid.sock\n",
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
    case OPT_STR:
        if (*value) {
            *(const char **)field = value;
            return BI_OK;
        }
        break;
    case OPT_INT:
        if (parse_long(value, (long)o->lo, (long)o->hi, &v) == BI_OK) {
            *(int *)field = (int)v;
            return BI_OK;
        }
        break;
    case OPT_SIZE:
        if (parse_long(value, (long)o->lo, (long)o->hi, &v) == BI_OK) {
            *(size_t *)field = (size_t)v;
            return BI_OK;
        }
        break;
    case OPT_REAL: {
        double d = strtod(value, &end);
        if (end != value && !*end && d >= o->lo && d <= o->hi) {
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
    cfg->max_streams = 4096;
    cfg->max_queued = 1024;
    cfg->stream_idle_s = 30.0;
    cfg->kv_memory_fraction = -1.0; /* not given: main.c picks by backend */

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
    eng_store_dtype dt;
    if (eng_store_dtype_parse(cfg->dtype, &dt) != BI_OK) {
        snprintf(err, err_size, "--dtype: invalid value '%s' (auto, bf16 or fp16)", cfg->dtype);
        return BI_INVALID_ARGUMENT;
    }
    if (cfg->model_path && cfg->dummy_preset) {
        snprintf(err, err_size, "give --model or --dummy, not both");
        return BI_INVALID_ARGUMENT;
    }
    if (!cfg->tls_cert != !cfg->tls_key) {
        snprintf(err, err_size, "--tls-cert and --tls-key go together");
        return BI_INVALID_ARGUMENT;
    }
    return BI_OK;
}
