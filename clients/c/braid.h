/*
 * braid.h - libbraid, the C client of the Braidinfer service.
 *
 * One client holds one connection (an nng REQ socket, redialled automatically)
 * and may be used from several threads at once: every call opens its own nng
 * context, so unary calls and streams proceed concurrently on one connection.
 * Calls block until the reply arrives or the client's timeout passes.
 *
 * Errors: every call returns a braid_status (gRPC numbering, as on the wire).
 * The message for the last failed call on this thread is available from
 * braid_last_error() until the next call on the same thread.
 *
 * Ownership: strings and arrays passed in are borrowed for the call only.
 * Results are written into caller structs (fixed-size strings) or, for
 * variable-length results, into arrays the library allocates and the caller
 * frees with braid_free(). Event contents are owned by the stream (see
 * braid_stream_next).
 *
 * Streams: braid_generate_start() starts a generation; braid_stream_next()
 * returns its events one by one. Underneath, the library long-polls StreamNext
 * with the last sequence number it has seen; a poll that fails in transport
 * (timeout, dropped connection) is sent again with the same sequence number,
 * so no token is lost or repeated. A stream can be picked up from another
 * client (another connection, another process) with braid_stream_attach().
 */
#ifndef BRAID_H
#define BRAID_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum braid_status {
    BRAID_OK = 0,
    BRAID_CANCELLED = 1,
    BRAID_UNKNOWN = 2,
    BRAID_INVALID_ARGUMENT = 3,
    BRAID_DEADLINE_EXCEEDED = 4,
    BRAID_NOT_FOUND = 5,
    BRAID_ALREADY_EXISTS = 6,
    BRAID_PERMISSION_DENIED = 7,
    BRAID_RESOURCE_EXHAUSTED = 8,
    BRAID_FAILED_PRECONDITION = 9,
    BRAID_ABORTED = 10,
    BRAID_OUT_OF_RANGE = 11,
    BRAID_UNIMPLEMENTED = 12,
    BRAID_INTERNAL = 13,
    BRAID_UNAVAILABLE = 14,
    BRAID_DATA_LOSS = 15,
    BRAID_UNAUTHENTICATED = 16,
} braid_status;

typedef struct braid_client braid_client;
typedef struct braid_stream braid_stream;

/* Static description of a status code. */
const char *braid_strerror(braid_status s);

/* Upper-case name of a status code ("NOT_FOUND"); static. */
const char *braid_status_name(braid_status s);

/* The detail message of this thread's last failed call ("" if none); valid
 * until the next call on this thread. */
const char *braid_last_error(void);

/* Frees anything this library documents as "free with braid_free"; NULL is fine. */
void braid_free(void *p);

/* Connects to a braidd at url (tcp://HOST:PORT or ipc:///PATH; tls+tcp://
 * needs braid_client_create_opts and a CA file). The dial is
 * non-blocking: a server that is not up yet is redialled, and calls fail with
 * BRAID_UNAVAILABLE once timeout_ms passes. timeout_ms <= 0 means 30 s; it is
 * the limit of each unary call and, on a stream, how long polls may keep
 * failing in a row before braid_stream_next gives up.
 * The caller frees *out with braid_client_destroy. */
braid_status braid_client_create(const char *url, int timeout_ms, braid_client **out);

/* Options of braid_client_create_opts. Zero-initialise and set what you need;
 * the strings are read during the create call only. */
typedef struct braid_client_opts {
    int timeout_ms;   /* as braid_client_create's; <= 0: 30 s */
    int poll_wait_ms; /* as braid_client_set_poll_wait; <= 0: 10000 ms */
    /* tls+tcp:// only, and required there: a PEM file of the CA certificate(s)
     * the server's certificate must chain to. There is no unverified mode. */
    const char *tls_ca_file;
    /* The name the server's certificate must be issued to; NULL: the URL's
     * host. mbedtls 2.x matches DNS names only (not IP address entries), so
     * for tls+tcp://127.0.0.1:PORT name a DNS entry of the certificate here. */
    const char *tls_server_name;
} braid_client_opts;

/* braid_client_create with options (opts may be NULL: all defaults). For a
 * tls+tcp:// url the outcome of the first TLS handshake is awaited (up to the
 * timeout): a server certificate that tls_ca_file does not vouch for, or that
 * is not issued to the server name, fails here with BRAID_UNAVAILABLE and a
 * message saying so. A server not up yet is redialled as for any url. TLS
 * options with a url that is not tls+tcp:// are BRAID_INVALID_ARGUMENT, so that
 * nobody believes a plain connection is protected. */
braid_status braid_client_create_opts(const char *url, const braid_client_opts *opts,
                                      braid_client **out);

/* Closes the connection and frees the client; NULL is fine. Every stream
 * opened on it must be closed first. */
void braid_client_destroy(braid_client *c);

/* How long the server may hold one StreamNext poll waiting for an event
 * (default 10000 ms, range 1..600000). Shorter waits only cost more polls. */
braid_status braid_client_set_poll_wait(braid_client *c, int wait_ms);

/* --- service --- */

typedef struct braid_health {
    int serving;      /* 1 when the service is ready for requests */
    char version[32]; /* braidd version */
    char backend[16]; /* "cpu", "cuda" or "none" */
    char model[128];  /* loaded model name, "" if none */
    uint64_t uptime_ms;
} braid_health;

/* Asks the service whether it is up. */
braid_status braid_health_check(braid_client *c, braid_health *out);

typedef struct braid_stats {
    uint32_t kv_pages_total, kv_pages_free, kv_page_tokens;
    uint64_t kv_page_bytes;
    uint32_t chunks, running, queued;
    uint64_t generations, prompt_tokens, cached_prompt_tokens, generated_tokens;
    uint64_t steps, evictions;
    uint32_t open_streams, calls_in_flight;
    uint64_t uptime_ms;
    uint64_t preemptions;
} braid_stats;

/* The service's counters (see StatsReply in proto/braid.proto). */
braid_status braid_stats_get(braid_client *c, braid_stats *out);

typedef struct braid_model_info {
    char name[128], architecture[32], chat_format[32], backend[16];
    char fingerprint[65];
    uint32_t num_layers, hidden_size, num_heads, num_kv_heads, head_dim, vocab_size;
    uint32_t max_context;
    int32_t bos_token_id, eos_token_id; /* -1 when none */
} braid_model_info;

/* The loaded model's description. */
braid_status braid_model_info_get(braid_client *c, braid_model_info *out);

/* Tokenizes text (UTF-8) with the model's tokenizer. On success *ids holds
 * *n_ids token ids; free it with braid_free. */
braid_status braid_tokenize(braid_client *c, const char *text, int parse_special, int32_t **ids,
                            size_t *n_ids);

/* --- chunks --- */

typedef enum braid_role {
    BRAID_ROLE_UNSPECIFIED = 0, /* USER for inline parts, CONTEXT for chunks */
    BRAID_ROLE_SYSTEM = 1,
    BRAID_ROLE_CONTEXT = 2,
    BRAID_ROLE_USER = 3,
    BRAID_ROLE_ASSISTANT = 4,
} braid_role;

/* Lower-case role name ("system", ...); static. */
const char *braid_role_name(braid_role r);

/* Parses a role name as braid_role_name writes it (also "output" for
 * ASSISTANT); returns -1 when it is none of them. */
int braid_role_parse(const char *name);

#define BRAID_CHUNK_ID_LEN 64 /* hex digits; buffers hold one more for the NUL */

typedef struct braid_chunk_info {
    char id[BRAID_CHUNK_ID_LEN + 1];
    char ns[64]; /* namespace ("" is the default one) */
    braid_role role;
    uint32_t num_tokens; /* framing included */
    int pinned, kv_resident;
    uint32_t users; /* running generations reading it */
    uint64_t hits, tokens_saved, kv_bytes;
} braid_chunk_info;

/* What to register: exactly one of text (UTF-8, framed for role by the chat
 * template) or tokens (n_tokens > 0, used as given). */
typedef struct braid_chunk_desc {
    const char *ns; /* NULL or "" is the default namespace */
    braid_role role;
    const char *text;
    const int32_t *tokens;
    size_t n_tokens;
    int pin;        /* keep its KV resident */
    int precompute; /* compute its KV now rather than on first use */
} braid_chunk_desc;

/* Registers a chunk (deduplicated by content). *out receives its info;
 * existed (may be NULL) is set to 1 when the same content was registered
 * already. */
braid_status braid_chunk_register(braid_client *c, const braid_chunk_desc *d, braid_chunk_info *out,
                                  int *existed);

/* A chunk's content: token_ids[n_tokens] and text (its tokens decoded, framing
 * included). Both are allocated by the library: free with
 * braid_chunk_content_free. */
typedef struct braid_chunk_content {
    int32_t *token_ids;
    size_t n_tokens;
    char *text;
} braid_chunk_content;

/* Looks up a chunk by id in namespace ns (NULL: default). With content
 * non-NULL also fetches its tokens and text. */
braid_status braid_chunk_get(braid_client *c, const char *ns, const char *id, braid_chunk_info *out,
                             braid_chunk_content *content);

/* Frees what braid_chunk_get put into content and zeroes it; NULL is fine. */
void braid_chunk_content_free(braid_chunk_content *content);

/* Lists the chunks of namespace ns (or of every namespace when
 * all_namespaces). *out is an array of *n entries; free it with braid_free
 * (it is NULL when *n is 0). */
braid_status braid_chunk_list(braid_client *c, const char *ns, int all_namespaces,
                              braid_chunk_info **out, size_t *n);

/* Deletes a chunk; its KV is freed once no running generation uses it. */
braid_status braid_chunk_delete(braid_client *c, const char *ns, const char *id);

/* Pins (pinned = 1) or unpins a chunk. out may be NULL. */
braid_status braid_chunk_pin(braid_client *c, const char *ns, const char *id, int pinned,
                             braid_chunk_info *out);

/* --- generation --- */

/* One element of a composition: exactly one of chunk_id (64 hex digits),
 * text (UTF-8, framed for role) or tokens (n_tokens > 0, used as given). role
 * is ignored for chunks. */
typedef struct braid_part {
    braid_role role;
    const char *chunk_id;
    const char *text;
    const int32_t *tokens;
    size_t n_tokens;
} braid_part;

/* Sampling parameters. A zeroed struct means "server defaults everywhere":
 * the fields with a has_ flag are only sent when the flag is set (the proto
 * distinguishes unset from 0 for them); the others default to 0 = off. */
typedef struct braid_sampling {
    int has_temperature;
    float temperature; /* [0, 100], 0 greedy; default 1 */
    int32_t top_k;     /* <= 0 off */
    int has_top_p;
    float top_p; /* (0, 1]; default 1 */
    float min_p; /* [0, 1) */
    int has_repetition_penalty;
    float repetition_penalty;                  /* (0, 10]; default 1 */
    float presence_penalty, frequency_penalty; /* [-2, 2] */
    int has_seed;
    uint64_t seed; /* default: random per request */
    int has_logprobs;
    int32_t logprobs; /* 0..20 alternatives with each token */
} braid_sampling;

typedef enum braid_reuse_mode {
    BRAID_REUSE_EXACT = 0,       /* output identical to no reuse */
    BRAID_REUSE_INDEPENDENT = 1, /* chunk KV computed alone, placed anywhere (approximate) */
    BRAID_REUSE_REPAIR = 2,
} braid_reuse_mode;

/* A generation request. Zero-initialise it and set what you need; every
 * pointer is borrowed for the duration of the start call only. */
typedef struct braid_gen_request {
    const char *ns; /* namespace the chunk ids live in; NULL: default */
    const braid_part *parts;
    size_t n_parts; /* at least 1 */
    braid_sampling sampling;
    uint32_t max_tokens; /* 0: server default (256) */
    const char *const *stop;
    size_t n_stop;
    const int32_t *stop_token_ids;
    size_t n_stop_token_ids;
    int ignore_eos;
    braid_reuse_mode reuse;
    int retain_output;        /* register the answer as an ASSISTANT chunk */
    int no_generation_prompt; /* do not append the assistant prompt */
    uint64_t timeout_ms;      /* deadline of the whole generation; 0: none */
    /* echoed in braidd's logs and the final event; NULL: a random one (braidd
     * answers a call repeated with the same id and bytes, e.g. resent after a
     * dropped connection, with its first stream) */
    const char *client_request_id;
} braid_gen_request;

typedef enum braid_finish_reason {
    BRAID_FINISH_UNSPECIFIED = 0,
    BRAID_FINISH_STOP = 1,
    BRAID_FINISH_LENGTH = 2,
    BRAID_FINISH_CANCELLED = 3,
    BRAID_FINISH_ERROR = 4,
} braid_finish_reason;

/* Lower-case name ("stop", "length", ...); static. */
const char *braid_finish_reason_name(braid_finish_reason r);

typedef struct braid_usage {
    uint32_t prompt_tokens;
    uint32_t cached_prompt_tokens; /* of prompt_tokens, served from chunk KV in the pool */
    uint32_t completion_tokens;
    double ttft_ms;  /* arrival to first token */
    double total_ms; /* arrival to final event */
} braid_usage;

typedef struct braid_final {
    braid_finish_reason finish_reason;
    braid_status status; /* OK unless finish_reason is ERROR or CANCELLED */
    char message[256];
    braid_usage usage;
    char output_chunk_id[BRAID_CHUNK_ID_LEN + 1]; /* "" unless retain_output succeeded */
    char client_request_id[128];
} braid_final;

typedef struct braid_logprob {
    int32_t token_id;
    float logprob;
    const char *text;
} braid_logprob;

typedef enum braid_event_kind {
    BRAID_EVENT_TOKEN = 1,
    BRAID_EVENT_FINAL = 2,
} braid_event_kind;

/* One stream event. Every pointer in it is owned by the stream and stays valid
 * until the next braid_stream_next or braid_stream_close on that stream. */
typedef struct braid_event {
    braid_event_kind kind;
    uint64_t seq;     /* 1, 2, 3, ... */
    int32_t token_id; /* TOKEN */
    /* TOKEN: the text delta (complete UTF-8 characters; may be empty).
     * FINAL: text held back until the end (e.g. a possible stop-string prefix). */
    const char *text;
    size_t text_len;
    int has_logprob; /* TOKEN, when logprobs were asked for */
    braid_logprob logprob;
    const braid_logprob *top_logprobs; /* best first */
    size_t n_top_logprobs;
    braid_final final; /* FINAL */
} braid_event;

/* Starts a generation. On success *out is a stream to read with
 * braid_stream_next and free with braid_stream_close. Bad requests (no parts,
 * a part with no or two contents, a malformed chunk id, invalid UTF-8, NaN or
 * out-of-range sampling) fail here with BRAID_INVALID_ARGUMENT before anything
 * is sent. */
braid_status braid_generate_start(braid_client *c, const braid_gen_request *req,
                                  braid_stream **out);

/* Picks up a stream by id on client c (any connection), after last_seq (0:
 * from the start). The server still holds every event after the highest seq
 * acknowledged by a poll, so passing the last seq you received loses nothing.
 * Free *out with braid_stream_close. */
braid_status braid_stream_attach(braid_client *c, uint64_t stream_id, uint64_t last_seq,
                                 braid_stream **out);

/* The stream's id (for braid_stream_attach) and the seq of the last event
 * braid_stream_next returned. */
uint64_t braid_stream_id(const braid_stream *s);
uint64_t braid_stream_last_seq(const braid_stream *s);

/* Blocks until the next event and writes it to *ev. Returns BRAID_OK with an
 * event; BRAID_OUT_OF_RANGE once the final event has been returned; the
 * server's status when it refuses the poll (NOT_FOUND: the stream expired);
 * BRAID_UNAVAILABLE when three polls in a row got no reply (each waits
 * the poll wait plus the client's timeout; calling again retries, losing
 * nothing); BRAID_DATA_LOSS if the
 * server skipped sequence numbers. One thread at a time per stream. */
braid_status braid_stream_next(braid_stream *s, braid_event *ev);

/* Asks the server to cancel the generation; the stream then ends with a FINAL
 * event whose finish_reason is CANCELLED (keep calling braid_stream_next to
 * get it). Safe to call from another thread while one is in braid_stream_next. */
braid_status braid_stream_cancel(braid_stream *s);

/* Frees the stream. If its final event was not reached, the generation is
 * cancelled first (best effort). NULL is fine. */
void braid_stream_close(braid_stream *s);

/* Frees the stream without cancelling, leaving the generation running for a
 * later braid_stream_attach (the server cancels it if nobody polls for its
 * idle timeout). NULL is fine. */
void braid_stream_detach(braid_stream *s);

/* Called for every event of braid_generate; return nonzero to cancel the
 * generation (the stream still runs to its final event). */
typedef int (*braid_event_cb)(void *user, const braid_event *ev);

/* Runs a generation to its end, calling cb (may be NULL) for every event.
 * final (may be NULL) receives the final event. Returns a transport or request
 * error, or else the final event's status (OK when it finished with stop or
 * length). */
braid_status braid_generate(braid_client *c, const braid_gen_request *req, braid_event_cb cb,
                            void *user, braid_final *final);

#ifdef __cplusplus
}
#endif

#endif
