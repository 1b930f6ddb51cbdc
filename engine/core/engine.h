/*
 * engine.h - the engine API the service calls.
 *
 * An engine owns one model, its tokenizer, a backend, the paged KV pool and the
 * chunk catalogue, and runs a worker thread that batches every running
 * generation into one forward pass per step (continuous batching: decodes
 * first, then prefill pieces under a token budget).
 *
 * Chunks: a chunk is an immutable token sequence with a role and a namespace,
 * framed by the model's chat template for its role. Its id is SHA-256 over
 * (namespace, model fingerprint, role, token ids), so registering the same
 * content twice gives the same id and stores it once. A generation composes
 * chunks and inline parts; the KV of each chunk is computed once and reused:
 *   EXACT        KV keyed by the chain of chunks before it: output identical to
 *                running the whole prompt from scratch.
 *   INDEPENDENT  KV computed at local positions 0..n-1 and placed at any offset
 *                through differential RoPE (approximate: the chunk never saw
 *                what precedes it).
 * Idle chunk KV is evicted LRU when the pool needs room; pinned chunks keep
 * theirs. Deleting a chunk in use frees its pages when the last user finishes.
 *
 * Threads: every function may be called from any thread. Event callbacks run on
 * the worker thread; they must not block, and may call eng_cancel. After
 * eng_generate returns BI_OK, the callback receives exactly one final event.
 */
#ifndef ENG_ENGINE_H
#define ENG_ENGINE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/status.h"
#include "model/model.h"
#include "sampler/sampler.h"
#include "tokenizer/chat.h"

typedef struct eng_engine eng_engine;

typedef struct eng_chunk_id {
    uint8_t b[32];
} eng_chunk_id;

/* Lower-case hex of id into out (65 bytes with the NUL). */
void eng_chunk_id_hex(const eng_chunk_id *id, char out[65]);
/* Parses 64 hex digits; BI_INVALID_ARGUMENT otherwise. */
bi_status eng_chunk_id_parse(const char *hex, eng_chunk_id *out);

typedef enum eng_reuse_mode {
    ENG_REUSE_EXACT = 0,
    ENG_REUSE_INDEPENDENT = 1,
} eng_reuse_mode;

typedef struct eng_config {
    const char *model_path; /* GGUF file or HF directory */
    const char
        *dummy_preset; /* instead of model_path: random weights of a preset shape, no tokenizer */
    uint64_t dummy_seed;
    int n_threads;            /* CPU threads; <= 0 = all */
    int32_t kv_tokens;        /* KV pool capacity in tokens; <= 0 = 16384 */
    int page_size;            /* tokens per KV page; <= 0 = 16 */
    int32_t max_batch_tokens; /* tokens per forward step; <= 0 = 256 */
    int32_t max_ctx;          /* longest composition; <= 0 = the model's (capped at the pool). With
                                 dummy_preset it may also exceed the preset's (random weights have no
                                 trained context length) */
    const char *chat_format;  /* override the detected chat template ("chatml", "llama3", ...) */
    const char *backend;      /* "cpu" (NULL), "cuda", or "auto" (cuda when the build has it
                                 and a device is usable, else cpu) */
    float kv_memory_fraction; /* (0, 1): on a device backend, size the pool to this fraction of
                                 the device memory free once the weights are uploaded, instead of
                                 kv_tokens; 0 = kv_tokens. Ignored (logged) on the CPU */
    bool host_sampling;       /* sample on the host even when the backend samples on the device
                                 (CUDA does by default); for comparison and as a fallback */
    const char *dtype;        /* 16-bit storage of weights, activations and KV on a device backend:
                                 "auto" (NULL: fp16 for F16 model files, else bf16), "bf16" or
                                 "fp16" (eng_store_dtype_parse). fp16 weights beyond its range fail
                                 the load when asked for and fall back to bf16 under auto. Ignored
                                 (logged) on the CPU, which computes in fp32 */
    eng_progress_fn progress; /* model loading progress; may be NULL */
    void *progress_user;
} eng_config;

/* The kv_memory_fraction front ends (braidd, `braid run`) use when the user
 * gives none: 0.85 when backend is "cuda", or "auto" with a usable device,
 * and no kv_tokens were asked for (kv_tokens <= 0); else 0 (pool from
 * kv_tokens). */
float eng_kv_memory_fraction_default(const char *backend, int32_t kv_tokens);

/* Loads the model and tokenizer, sizes the pool and starts the worker. On
 * failure writes a message for the user into err. */
bi_status eng_engine_create(const eng_config *cfg, eng_engine **out, char *err, size_t err_size);
/* Cancels every generation (each gets its final event), stops the worker and
 * frees everything. NULL is fine. */
void eng_engine_destroy(eng_engine *e);

/* The model's configuration and name; valid for the engine's lifetime. */
const eng_model_config *eng_engine_model(const eng_engine *e);
/* The tokenizer, or NULL in dummy mode; valid for the engine's lifetime. */
const struct eng_tokenizer *eng_engine_tokenizer(const eng_engine *e);
eng_chat_format eng_engine_chat_format(const eng_engine *e);
/* The backend in use: "cpu" or "cuda" (static string). */
const char *eng_engine_backend_name(const eng_engine *e);
/* True when tokens are sampled on the device (only ids and logprobs come back
 * to the host): a backend with device sampling and cfg.host_sampling off. */
bool eng_engine_device_sampling(const eng_engine *e);

/* --- chunks --- */

typedef struct eng_chunk_desc {
    const char *ns; /* namespace (tenant); NULL = "" */
    eng_role role;
    const char *text; /* content, framed by the chat template for role ... */
    size_t text_len;
    const int32_t *ids; /* ... or token ids used as they are (no framing) */
    size_t n_ids;
    bool pin;        /* keep its KV resident */
    bool precompute; /* compute its KV now (as a leading chunk) instead of on first use */
} eng_chunk_desc;

typedef struct eng_chunk_info {
    eng_chunk_id id;
    char ns[64];
    eng_role role;
    int32_t n_tokens;
    bool pinned;
    bool kv_resident;      /* at least one KV variant is computed */
    uint32_t users;        /* running generations using it */
    uint64_t hits;         /* generations that reused its KV */
    uint64_t tokens_saved; /* prompt tokens not recomputed thanks to it */
    uint64_t kv_bytes;     /* pool bytes its KV variants hold */
} eng_chunk_info;

/* Registers a chunk. *existed tells whether it was already there (then its
 * pin flag is raised if desc->pin, never lowered). BI_INVALID_ARGUMENT for
 * empty content, text without a tokenizer or ids out of the vocabulary;
 * BI_OUT_OF_RANGE when longer than the context. */
bi_status eng_chunk_register(eng_engine *e, const eng_chunk_desc *desc, eng_chunk_id *id,
                             bool *existed);
/* BI_NOT_FOUND unless the chunk exists in namespace ns. */
bi_status eng_chunk_get(eng_engine *e, const char *ns, const eng_chunk_id *id,
                        eng_chunk_info *info);
/* The chunks of namespace ns (NULL = every namespace); *infos is freed by the
 * caller with bi_free. */
bi_status eng_chunk_list(eng_engine *e, const char *ns, eng_chunk_info **infos, size_t *n);
bi_status eng_chunk_delete(eng_engine *e, const char *ns, const eng_chunk_id *id);
bi_status eng_chunk_pin(eng_engine *e, const char *ns, const eng_chunk_id *id, bool pin);
/* The chunk's token ids (caller frees *ids with bi_free). */
bi_status eng_chunk_tokens(eng_engine *e, const char *ns, const eng_chunk_id *id, int32_t **ids,
                           size_t *n);

/* --- generation --- */

typedef struct eng_part {
    bool is_chunk;
    eng_chunk_id chunk; /* when is_chunk */
    eng_role role;      /* inline text: framed for this role */
    const char *text;
    size_t text_len;
    const int32_t *ids; /* inline token ids, used as they are (instead of text) */
    size_t n_ids;
} eng_part;

typedef struct eng_gen_params {
    const char *ns;
    const eng_part *parts;
    size_t n_parts;
    eng_sampling_params sampling;
    int32_t max_tokens;      /* >= 1 */
    const char *const *stop; /* stop strings */
    size_t n_stop;
    const int32_t *stop_ids; /* stop token ids */
    size_t n_stop_ids;
    bool ignore_eos;
    bool no_generation_prompt; /* do not append the template's assistant prompt */
    eng_reuse_mode reuse;
    bool retain_output;     /* register the answer as an assistant chunk */
    const char *request_id; /* for logs; may be NULL */
    int64_t deadline_ms;    /* CLOCK_MONOTONIC milliseconds; 0 = none */
} eng_gen_params;

typedef enum eng_finish {
    ENG_FINISH_NONE = 0,
    ENG_FINISH_STOP,   /* end-of-generation token, stop string or stop id */
    ENG_FINISH_LENGTH, /* max_tokens or the context */
    ENG_FINISH_CANCELLED,
    ENG_FINISH_DEADLINE,
    ENG_FINISH_ERROR,
} eng_finish;

const char *eng_finish_name(eng_finish f);

typedef struct eng_usage {
    int32_t prompt_tokens; /* composition length */
    int32_t cached_tokens; /* of which served from chunk KV already in the pool */
    int32_t generated_tokens;
    double ttft_ms; /* submit to first token */
    double total_ms;
    bool has_output_chunk;
    eng_chunk_id output_chunk; /* when retain_output */
} eng_usage;

typedef struct eng_event {
    uint64_t gen_id;
    bool final;
    /* token events */
    int32_t token;
    const char *text; /* UTF-8-complete delta (may be empty); valid during the call */
    size_t text_len;
    const eng_logprobs *logprobs; /* NULL unless asked for */
    /* final event */
    eng_finish finish;
    bi_status status;    /* BI_OK unless finish is ERROR */
    const char *message; /* detail for errors; "" otherwise */
    const eng_usage *usage;
} eng_event;

typedef void (*eng_event_fn)(void *user, const eng_event *ev);

/* Validates and queues a generation. Errors in the request (unknown chunk,
 * bad parameters, too long) are returned here, with a message in err, and no
 * event follows. */
bi_status eng_generate(eng_engine *e, const eng_gen_params *p, eng_event_fn fn, void *user,
                       uint64_t *gen_id, char *err, size_t err_size);
/* Asks a generation to stop; its final event says CANCELLED. BI_NOT_FOUND if
 * it already finished or never existed. */
bi_status eng_cancel(eng_engine *e, uint64_t gen_id);

typedef struct eng_stats {
    int32_t kv_pages_total, kv_pages_free, page_size;
    uint64_t kv_page_bytes;
    size_t n_chunks;
    int running, queued;
    uint64_t generations, prompt_tokens, cached_tokens, generated_tokens, steps;
    uint64_t evictions;
    uint64_t preemptions; /* running generations that gave up their pages to recompute later */
} eng_stats;

bi_status eng_stats_get(eng_engine *e, eng_stats *out);

/* --- accessors added for the service --- */

/* The model's fingerprint: 64 lower-case hex digits (NUL-terminated), part of
 * every chunk id. Valid for the engine's lifetime. */
const char *eng_engine_fingerprint(const eng_engine *e);
/* The longest composition plus generation the engine accepts, in tokens (the
 * model's context capped by the configuration and the KV pool). */
int32_t eng_engine_max_ctx(const eng_engine *e);

#endif
