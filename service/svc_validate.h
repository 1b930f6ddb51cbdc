/*
 * svc_validate.h - checking wire requests and turning them into engine calls.
 *
 * Nothing from the wire reaches the engine unchecked: protobuf-c accepts any
 * bytes in proto3 string fields and any number in enum fields, so text is
 * checked for UTF-8 here, enums for range, ids for format, and numbers for the
 * ranges braid.proto documents. Every rejection is BI_INVALID_ARGUMENT (or
 * BI_UNIMPLEMENTED for what the contract names but the service does not do
 * yet) with a message naming the field.
 *
 * Pure functions of their arguments, callable from any thread.
 */
#ifndef SVC_VALIDATE_H
#define SVC_VALIDATE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "braid.pb-c.h"
#include "common/status.h"
#include "common/utf8.h"
#include "core/engine.h"

#define SVC_MAX_NS             63   /* namespace bytes */
#define SVC_MAX_RID            128  /* client_request_id bytes */
#define SVC_MAX_PARTS          4096 /* parts of a composition */
#define SVC_MAX_STOP           64   /* stop strings */
#define SVC_MAX_STOP_LEN       256  /* bytes of one stop string */
#define SVC_MAX_STOP_IDS       1024 /* stop token ids */
#define SVC_DEFAULT_MAX_TOKENS 256

/* A NUL-terminated copy of s[0..len) with every ill-formed sequence replaced
 * by U+FFFD, for text that goes onto the wire (proto3 strings must be UTF-8).
 * The caller frees it with bi_free; NULL when out of memory. */
char *svc_utf8_sanitize(const char *s, size_t len);

/* Checks a text field: well-formed UTF-8 and at most max_len bytes
 * (0 = no limit). field names it in the message. */
bi_status svc_check_text(const char *field, const char *s, size_t max_len, char *err,
                         size_t err_size);

/* A chunk id from the wire: exactly 64 lower-case hex digits. */
bi_status svc_chunk_id_from_wire(const char *field, const char *hex, eng_chunk_id *id, char *err,
                                 size_t err_size);

/* A wire Role to the engine's; ROLE_UNSPECIFIED gives dflt. */
bi_status svc_role_from_wire(const char *field, int role, eng_role dflt, eng_role *out, char *err,
                             size_t err_size);

/* Sampling parameters from the wire (sp may be NULL: all defaults); unset
 * seeds take default_seed. Values outside braid.proto's ranges (NaN,
 * infinities, negatives where they make no sense, huge values) are rejected. */
bi_status svc_sampling_from_wire(const Braid__V1__SamplingParams *sp, uint64_t default_seed,
                                 eng_sampling_params *out, char *err, size_t err_size);

/* eng_generate's parameters built from a GenerateRequest. Its pointers point
 * into the request, which must outlive it. */
typedef struct svc_gen {
    eng_gen_params p;
    eng_part *parts;
    const char **stop;
} svc_gen;

/* Checks rq and fills g. max_ctx bounds max_tokens; now_ms (CLOCK_MONOTONIC)
 * turns timeout_ms into the engine's deadline. On success the caller frees
 * g's arrays with svc_gen_fini; on failure nothing is left to free. */
bi_status svc_gen_from_wire(const Braid__V1__GenerateRequest *rq, int32_t max_ctx,
                            uint64_t default_seed, int64_t now_ms, svc_gen *g, char *err,
                            size_t err_size);
void svc_gen_fini(svc_gen *g);

#endif
