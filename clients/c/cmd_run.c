/*
 * cmd_run.c - `braid run`: the engine in-process, no server. Loads a model,
 * registers the system prompt and context files as chunks, streams the answer
 * and prints speed and cache use. The offline way to try a model and the
 * engine's own smoke test.
 */
#include "cmd_run.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/alloc.h"
#include "common/log.h"
#include "core/backend.h"
#include "core/engine.h"

#define MAX_FILES 64

typedef struct run_opts {
    const char *model, *dummy, *system, *prompt, *chat_format, *backend, *dtype;
    const char *context[MAX_FILES];
    int n_context;
    const char *stops[16];
    int n_stops;
    int threads, max_tokens, repeat, kv_tokens;
    double kv_memory_fraction; /* < 0: not given */
    bool ignore_eos, quiet;
    eng_reuse_mode reuse;
    eng_sampling_params sp;
} run_opts;

static void run_usage(FILE *f)
{
    fprintf(f, "Usage: braid run --model PATH [options] --prompt TEXT\n\n"
               "Runs the engine in this process (no braidd): registers the system prompt and\n"
               "each context file as a chunk, streams the answer, prints speed and cache use.\n\n"
               "  --model PATH          GGUF file or Hugging Face directory\n"
               "  --dummy PRESET        random weights instead (tinyllama-1.1b, qwen3-0.6b,\n"
               "                        llama3-8b, smollm2-135m); prompts are then token ids\n"
               "  --system TEXT         system prompt (a chunk)\n"
               "  --context FILE        a document (a chunk); repeatable\n"
               "  --prompt TEXT         the user message (required)\n"
               "  --max-tokens N        default 256\n"
               "  --temperature T       default 0 (greedy)\n"
               "  --top-k N  --top-p P  --min-p P  --seed N\n"
               "  --repetition-penalty R  --presence-penalty P  --frequency-penalty F\n"
               "  --stop TEXT           stop string; repeatable\n"
               "  --ignore-eos          keep going past end-of-generation tokens\n"
               "  --reuse MODE          exact (default) or independent\n"
               "  --repeat N            run the same generation N times (shows chunk reuse)\n"
               "  --threads N           CPU threads (default: all)\n"
               "  --kv-tokens N         KV pool capacity in tokens (default 16384)\n"
               "  --kv-memory-fraction F  on the GPU, KV pool = F x device memory free after\n"
               "                        the weights (default 0.85 unless --kv-tokens; 0 = off)\n"
               "  --chat-format NAME    override the detected chat template\n"
               "  --backend NAME        auto (default: GPU if usable), cpu or cuda\n"
               "  --dtype TYPE          GPU weights/activations/KV: auto (default: fp16 for F16\n"
               "                        model files, else bf16), bf16 or fp16\n"
               "  --quiet               no log lines, just the answer and the summary\n");
}

static bool parse_num(const char *s, double lo, double hi, double *out)
{
    char *end;
    double v = strtod(s, &end);
    if (end == s || *end || !(v >= lo && v <= hi))
        return false;
    *out = v;
    return true;
}

/* Parses argv (after "run"); returns 0, or 2 after printing the problem. */
static int run_parse(int argc, char **argv, run_opts *o)
{
    memset(o, 0, sizeof *o);
    eng_sampling_params_default(&o->sp);
    o->sp.temperature = 0;
    o->max_tokens = 256;
    o->repeat = 1;
    o->kv_memory_fraction = -1;
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        double d;
#define NUM(flag, lo, hi, dst)                                                                     \
    if (strcmp(a, flag) == 0) {                                                                    \
        if (!v || !parse_num(v, lo, hi, &d)) {                                                     \
            fprintf(stderr, "braid run: %s needs a number in [%g, %g]\n", flag, (double)lo,        \
                    (double)hi);                                                                   \
            return 2;                                                                              \
        }                                                                                          \
        dst = d;                                                                                   \
        i++;                                                                                       \
        continue;                                                                                  \
    }
#define STR(flag, dst)                                                                             \
    if (strcmp(a, flag) == 0) {                                                                    \
        if (!v) {                                                                                  \
            fprintf(stderr, "braid run: %s needs a value\n", flag);                                \
            return 2;                                                                              \
        }                                                                                          \
        dst = v;                                                                                   \
        i++;                                                                                       \
        continue;                                                                                  \
    }
        STR("--model", o->model)
        STR("--dummy", o->dummy)
        STR("--system", o->system)
        STR("--prompt", o->prompt)
        STR("--chat-format", o->chat_format)
        STR("--backend", o->backend)
        if (strcmp(a, "--dtype") == 0) {
            eng_store_dtype dt;
            if (!v || eng_store_dtype_parse(v, &dt) != BI_OK) {
                fprintf(stderr, "braid run: --dtype is auto, bf16 or fp16\n");
                return 2;
            }
            o->dtype = argv[++i];
            continue;
        }
        NUM("--max-tokens", 1, 1e6, o->max_tokens)
        NUM("--temperature", 0, 100, o->sp.temperature)
        NUM("--top-k", 0, 1e7, o->sp.top_k)
        NUM("--top-p", 1e-9, 1, o->sp.top_p)
        NUM("--min-p", 0, 0.999999, o->sp.min_p)
        NUM("--seed", 0, 9e15, o->sp.seed)
        NUM("--repetition-penalty", 1e-6, 10, o->sp.repetition_penalty)
        NUM("--presence-penalty", -2, 2, o->sp.presence_penalty)
        NUM("--frequency-penalty", -2, 2, o->sp.frequency_penalty)
        NUM("--repeat", 1, 1000, o->repeat)
        NUM("--threads", 1, 1024, o->threads)
        NUM("--kv-tokens", 64, 1e8, o->kv_tokens)
        NUM("--kv-memory-fraction", 0, 0.99, o->kv_memory_fraction)
        if (strcmp(a, "--context") == 0 && v && o->n_context < MAX_FILES) {
            o->context[o->n_context++] = argv[++i];
            continue;
        }
        if (strcmp(a, "--stop") == 0 && v && o->n_stops < 16) {
            o->stops[o->n_stops++] = argv[++i];
            continue;
        }
        if (strcmp(a, "--reuse") == 0 && v) {
            i++;
            if (strcmp(v, "exact") == 0)
                o->reuse = ENG_REUSE_EXACT;
            else if (strcmp(v, "independent") == 0)
                o->reuse = ENG_REUSE_INDEPENDENT;
            else {
                fprintf(stderr, "braid run: --reuse is exact or independent\n");
                return 2;
            }
            continue;
        }
        if (strcmp(a, "--ignore-eos") == 0) {
            o->ignore_eos = true;
            continue;
        }
        if (strcmp(a, "--quiet") == 0) {
            o->quiet = true;
            continue;
        }
        if (strcmp(a, "--help") == 0) {
            run_usage(stdout);
            exit(0);
        }
        fprintf(stderr, "braid run: unknown or incomplete option '%s' (see braid run --help)\n", a);
        return 2;
    }
    if ((!o->model && !o->dummy) || !o->prompt) {
        fprintf(stderr, "braid run: --model (or --dummy) and --prompt are required\n\n");
        run_usage(stderr);
        return 2;
    }
    return 0;
}

typedef struct run_state {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool done;
    eng_usage usage;
    eng_finish finish;
    bi_status status;
    char message[256];
    struct timespec first;
    int tokens;
} run_state;

static void on_event(void *user, const eng_event *ev)
{
    run_state *s = user;
    if (ev->text_len)
        fwrite(ev->text, 1, ev->text_len, stdout);
    fflush(stdout);
    pthread_mutex_lock(&s->mu);
    if (!ev->final) {
        if (s->tokens++ == 0)
            clock_gettime(CLOCK_MONOTONIC, &s->first);
    } else {
        s->usage = *ev->usage;
        s->finish = ev->finish;
        s->status = ev->status;
        snprintf(s->message, sizeof s->message, "%s", ev->message);
        s->done = true;
        pthread_cond_signal(&s->cv);
    }
    pthread_mutex_unlock(&s->mu);
}

static void on_progress(void *user, const char *stage, uint64_t done, uint64_t total)
{
    (void)user;
    fprintf(stderr, "\r[load] %s %3.0f%%", stage, total ? 100.0 * done / total : 100.0);
    if (done >= total)
        fprintf(stderr, "\n");
}

static char *read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    char *buf = NULL;
    size_t cap = 0, n = 0, k;
    char tmp[65536];
    while ((k = fread(tmp, 1, sizeof tmp, f)) > 0) {
        if (bi_array_reserve((void **)&buf, &cap, n + k + 1, 1) != BI_OK)
            break;
        memcpy(buf + n, tmp, k);
        n += k;
    }
    fclose(f);
    if (buf)
        buf[n] = '\0';
    *len = n;
    return buf ? buf : bi_strdup("");
}

static double secs_since(const struct timespec *t0)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)(t.tv_sec - t0->tv_sec) + (double)(t.tv_nsec - t0->tv_nsec) / 1e9;
}

/* Registers the system prompt and context files as chunks into parts. */
static int run_chunks(eng_engine *e, const run_opts *o, eng_part *parts, int *n_parts)
{
    eng_chunk_desc d = {.role = ENG_ROLE_SYSTEM};
    eng_chunk_id id;
    if (o->system) {
        d.text = o->system;
        d.text_len = strlen(o->system);
        if (eng_chunk_register(e, &d, &id, NULL) != BI_OK) {
            fprintf(stderr, "braid run: cannot register the system prompt\n");
            return 1;
        }
        parts[(*n_parts)++] = (eng_part){.is_chunk = true, .chunk = id};
    }
    for (int i = 0; i < o->n_context; i++) {
        size_t len;
        char *text = read_file(o->context[i], &len);
        if (!text) {
            fprintf(stderr, "braid run: cannot read %s\n", o->context[i]);
            return 1;
        }
        d = (eng_chunk_desc){.role = ENG_ROLE_CONTEXT, .text = text, .text_len = len};
        bi_status st = eng_chunk_register(e, &d, &id, NULL);
        bi_free(text);
        if (st != BI_OK) {
            fprintf(stderr, "braid run: cannot register %s: %s\n", o->context[i], bi_strerror(st));
            return 1;
        }
        parts[(*n_parts)++] = (eng_part){.is_chunk = true, .chunk = id};
    }
    return 0;
}

static int run_once(eng_engine *e, const run_opts *o, eng_part *parts, int n_parts, int round)
{
    eng_gen_params p = {.parts = parts,
                        .n_parts = (size_t)n_parts,
                        .sampling = o->sp,
                        .max_tokens = o->max_tokens,
                        .stop = o->stops,
                        .n_stop = (size_t)o->n_stops,
                        .ignore_eos = o->ignore_eos,
                        .reuse = o->reuse};
    run_state s;
    memset(&s, 0, sizeof s);
    pthread_mutex_init(&s.mu, NULL);
    pthread_cond_init(&s.cv, NULL);
    char err[512] = "";
    uint64_t id;
    struct timespec t0;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    bi_status st = eng_generate(e, &p, on_event, &s, &id, err, sizeof err);
    if (st != BI_OK) {
        fprintf(stderr, "braid run: %s: %s\n", bi_status_name(st), err);
        return 1;
    }
    pthread_mutex_lock(&s.mu);
    while (!s.done)
        pthread_cond_wait(&s.cv, &s.mu);
    pthread_mutex_unlock(&s.mu);
    double total = secs_since(&t0);
    double decode_s = s.tokens > 1 ? secs_since(&s.first) : 0;
    const eng_usage *u = &s.usage;
    eng_stats es;
    eng_stats_get(e, &es);
    fputc('\n', stdout);
    fflush(stdout);
    fprintf(stderr,
            "--- run %d: finish %s%s%s\n"
            "prompt %d tokens (%d from cached chunks), generated %d\n"
            "time to first token %.1f ms (prefill %.1f tokens/s), decode %.1f tokens/s\n"
            "KV pool: %d of %d pages in use (%.1f MiB of %.1f), %zu chunks, %llu evictions\n",
            round, eng_finish_name(s.finish), s.status ? ": " : "", s.status ? s.message : "",
            u->prompt_tokens, u->cached_tokens, u->generated_tokens, u->ttft_ms,
            u->ttft_ms > 0 ? (u->prompt_tokens - u->cached_tokens) / (u->ttft_ms / 1000.0) : 0.0,
            decode_s > 0 ? (s.tokens - 1) / decode_s : 0.0, es.kv_pages_total - es.kv_pages_free,
            es.kv_pages_total,
            (es.kv_pages_total - es.kv_pages_free) * es.kv_page_bytes / 1048576.0,
            es.kv_pages_total * es.kv_page_bytes / 1048576.0, es.n_chunks,
            (unsigned long long)es.evictions);
    (void)total;
    return s.status == BI_OK ? 0 : 1;
}

int braid_cmd_run(int argc, char **argv)
{
    run_opts o;
    int rc = run_parse(argc, argv, &o);
    if (rc)
        return rc;
    if (!o.quiet)
        bi_log_set_sink(bi_log_stderr_sink, NULL);
    eng_config cfg = {.model_path = o.model,
                      .dummy_preset = o.dummy,
                      .n_threads = o.threads,
                      .kv_tokens = o.kv_tokens,
                      .chat_format = o.chat_format,
                      .backend = o.backend ? o.backend : "auto",
                      .dtype = o.dtype,
                      .kv_memory_fraction = o.kv_memory_fraction >= 0
                                                ? (float)o.kv_memory_fraction
                                                : eng_kv_memory_fraction_default(
                                                      o.backend ? o.backend : "auto", o.kv_tokens),
                      .progress = o.quiet ? NULL : on_progress};
    char err[512];
    eng_engine *e;
    bi_status st = eng_engine_create(&cfg, &e, err, sizeof err);
    if (st != BI_OK) {
        fprintf(stderr, "braid run: %s\n", err);
        return 1;
    }
    eng_part parts[MAX_FILES + 2];
    int n_parts = 0;
    rc = run_chunks(e, &o, parts, &n_parts);
    parts[n_parts++] =
        (eng_part){.role = ENG_ROLE_USER, .text = o.prompt, .text_len = strlen(o.prompt)};
    for (int r = 1; !rc && r <= o.repeat; r++)
        rc = run_once(e, &o, parts, n_parts, r);
    eng_engine_destroy(e);
    return rc;
}
