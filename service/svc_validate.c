/* svc_validate.c - UTF-8, ids, enums and ranges of wire requests; GenerateRequest -> engine. */
#include "svc_validate.h"

#include <stdio.h>
#include <string.h>

#include "common/alloc.h"

char *svc_utf8_sanitize(const char *s, size_t len)
{
    size_t cap;
    if (!bi_size_mul(len, 3, &cap) || !bi_size_add(cap, 1, &cap))
        return NULL;
    char *out = bi_malloc(cap);
    if (!out)
        return NULL;
    const unsigned char *p = (const unsigned char *)s;
    size_t o = 0;
    for (size_t i = 0; i < len;) {
        size_t k = bi_utf8_seq(p + i, len - i);
        if (k) {
            memcpy(out + o, p + i, k);
            o += k;
            i += k;
        } else {
            memcpy(out + o, "\xef\xbf\xbd", 3);
            o += 3;
            i++;
        }
    }
    out[o] = 0;
    return out;
}

bi_status svc_check_text(const char *field, const char *s, size_t max_len, char *err,
                         size_t err_size)
{
    size_t len = s ? strlen(s) : 0;
    if (max_len && len > max_len) {
        snprintf(err, err_size, "%s is %zu bytes; at most %zu", field, len, max_len);
        return BI_INVALID_ARGUMENT;
    }
    if (!bi_utf8_valid(s ? s : "", len)) {
        snprintf(err, err_size, "%s is not valid UTF-8", field);
        return BI_INVALID_ARGUMENT;
    }
    return BI_OK;
}

bi_status svc_chunk_id_from_wire(const char *field, const char *hex, eng_chunk_id *id, char *err,
                                 size_t err_size)
{
    size_t n = hex ? strlen(hex) : 0;
    bool ok = n == 64;
    for (size_t i = 0; ok && i < n; i++)
        ok = (hex[i] >= '0' && hex[i] <= '9') || (hex[i] >= 'a' && hex[i] <= 'f');
    if (!ok || eng_chunk_id_parse(hex, id) != BI_OK) {
        snprintf(err, err_size, "%s must be 64 lower-case hex digits", field);
        return BI_INVALID_ARGUMENT;
    }
    return BI_OK;
}

bi_status svc_role_from_wire(const char *field, int role, eng_role dflt, eng_role *out, char *err,
                             size_t err_size)
{
    switch (role) {
    case BRAID__V1__ROLE__ROLE_UNSPECIFIED:
        *out = dflt;
        return BI_OK;
    case BRAID__V1__ROLE__ROLE_SYSTEM:
        *out = ENG_ROLE_SYSTEM;
        return BI_OK;
    case BRAID__V1__ROLE__ROLE_CONTEXT:
        *out = ENG_ROLE_CONTEXT;
        return BI_OK;
    case BRAID__V1__ROLE__ROLE_USER:
        *out = ENG_ROLE_USER;
        return BI_OK;
    case BRAID__V1__ROLE__ROLE_ASSISTANT:
        *out = ENG_ROLE_ASSISTANT;
        return BI_OK;
    }
    snprintf(err, err_size, "%s: unknown role %d", field, role);
    return BI_INVALID_ARGUMENT;
}

bi_status svc_sampling_from_wire(const Braid__V1__SamplingParams *sp, uint64_t default_seed,
                                 eng_sampling_params *out, char *err, size_t err_size)
{
    eng_sampling_params_default(out);
    out->seed = default_seed;
    if (!sp)
        return BI_OK;
    if (sp->temperature)
        out->temperature = sp->temperature->value;
    out->top_k = sp->top_k;
    if (sp->top_p)
        out->top_p = sp->top_p->value;
    out->min_p = sp->min_p;
    if (sp->repetition_penalty)
        out->repetition_penalty = sp->repetition_penalty->value;
    out->presence_penalty = sp->presence_penalty;
    out->frequency_penalty = sp->frequency_penalty;
    if (sp->seed)
        out->seed = sp->seed->value;
    if (sp->logprobs) {
        if (sp->logprobs->value < 0 || sp->logprobs->value > ENG_MAX_LOGPROBS) {
            snprintf(err, err_size, "sampling.logprobs must be in [0, %d], got %d",
                     ENG_MAX_LOGPROBS, sp->logprobs->value);
            return BI_INVALID_ARGUMENT;
        }
        out->n_logprobs = sp->logprobs->value;
    }
    char msg[200] = "";
    if (eng_sampling_params_validate(out, msg, sizeof msg) != BI_OK) {
        snprintf(err, err_size, "sampling.%s", msg);
        return BI_INVALID_ARGUMENT;
    }
    return BI_OK;
}

static bi_status part_from_wire(const Braid__V1__Part *wp, size_t i, eng_part *part, char *err,
                                size_t err_size)
{
    char field[48];
    memset(part, 0, sizeof *part);
    switch (wp->content_case) {
    case BRAID__V1__PART__CONTENT_CHUNK_ID:
        snprintf(field, sizeof field, "parts[%zu].chunk_id", i);
        part->is_chunk = true;
        return svc_chunk_id_from_wire(field, wp->chunk_id, &part->chunk, err, err_size);
    case BRAID__V1__PART__CONTENT_TEXT:
        snprintf(field, sizeof field, "parts[%zu].text", i);
        part->text = wp->text;
        part->text_len = strlen(wp->text);
        if (part->text_len == 0) {
            snprintf(err, err_size, "%s is empty", field);
            return BI_INVALID_ARGUMENT;
        }
        break;
    case BRAID__V1__PART__CONTENT_TOKENS:
        snprintf(field, sizeof field, "parts[%zu].tokens", i);
        part->ids = wp->tokens->ids;
        part->n_ids = wp->tokens->n_ids;
        if (part->n_ids == 0) {
            snprintf(err, err_size, "%s is empty", field);
            return BI_INVALID_ARGUMENT;
        }
        break;
    default:
        snprintf(err, err_size, "parts[%zu] has no content (chunk_id, text or tokens)", i);
        return BI_INVALID_ARGUMENT;
    }
    bi_status st = svc_check_text(field, part->text, 0, err, err_size);
    if (st == BI_OK) {
        snprintf(field, sizeof field, "parts[%zu].role", i);
        st = svc_role_from_wire(field, (int)wp->role, ENG_ROLE_USER, &part->role, err, err_size);
    }
    return st;
}

static bi_status gen_check(const Braid__V1__GenerateRequest *rq, int32_t max_ctx, char *err,
                           size_t err_size)
{
    bi_status st;
    if ((st = svc_check_text("namespace", rq->namespace_, SVC_MAX_NS, err, err_size)) ||
        (st = svc_check_text("client_request_id", rq->client_request_id, SVC_MAX_RID, err,
                             err_size)))
        return st;
    if (rq->n_parts == 0 || rq->n_parts > SVC_MAX_PARTS) {
        snprintf(err, err_size, "parts: a composition has 1 to %d parts, got %zu", SVC_MAX_PARTS,
                 rq->n_parts);
        return BI_INVALID_ARGUMENT;
    }
    if (rq->max_tokens > (uint32_t)max_ctx) {
        snprintf(err, err_size, "max_tokens must be in [1, %d] (0 means %d), got %u", max_ctx,
                 SVC_DEFAULT_MAX_TOKENS, rq->max_tokens);
        return BI_INVALID_ARGUMENT;
    }
    if (rq->n_stop > SVC_MAX_STOP || rq->n_stop_token_ids > SVC_MAX_STOP_IDS) {
        snprintf(err, err_size, "at most %d stop strings and %d stop_token_ids", SVC_MAX_STOP,
                 SVC_MAX_STOP_IDS);
        return BI_INVALID_ARGUMENT;
    }
    for (size_t i = 0; i < rq->n_stop; i++) {
        char field[32];
        snprintf(field, sizeof field, "stop[%zu]", i);
        if ((st = svc_check_text(field, rq->stop[i], SVC_MAX_STOP_LEN, err, err_size)))
            return st;
    }
    if (rq->reuse_mode == BRAID__V1__REUSE_MODE__REUSE_REPAIR) {
        snprintf(err, err_size, "reuse_mode REUSE_REPAIR is not implemented yet");
        return BI_UNIMPLEMENTED;
    }
    if (rq->reuse_mode != BRAID__V1__REUSE_MODE__REUSE_EXACT &&
        rq->reuse_mode != BRAID__V1__REUSE_MODE__REUSE_INDEPENDENT) {
        snprintf(err, err_size, "reuse_mode: unknown value %d", (int)rq->reuse_mode);
        return BI_INVALID_ARGUMENT;
    }
    return BI_OK;
}

bi_status svc_gen_from_wire(const Braid__V1__GenerateRequest *rq, int32_t max_ctx,
                            uint64_t default_seed, int64_t now_ms, svc_gen *g, char *err,
                            size_t err_size)
{
    memset(g, 0, sizeof *g);
    bi_status st = gen_check(rq, max_ctx, err, err_size);
    if (st != BI_OK)
        return st;
    eng_gen_params *p = &g->p;
    if ((st = svc_sampling_from_wire(rq->sampling, default_seed, &p->sampling, err, err_size)))
        return st;
    g->parts = bi_calloc(rq->n_parts, sizeof *g->parts);
    g->stop = bi_calloc(rq->n_stop + 1, sizeof *g->stop);
    if (!g->parts || !g->stop) {
        svc_gen_fini(g);
        return BI_NOMEM;
    }
    for (size_t i = 0; i < rq->n_parts; i++)
        if ((st = part_from_wire(rq->parts[i], i, &g->parts[i], err, err_size)) != BI_OK) {
            svc_gen_fini(g);
            return st;
        }
    for (size_t i = 0; i < rq->n_stop; i++)
        g->stop[i] = rq->stop[i];
    p->ns = rq->namespace_;
    p->parts = g->parts;
    p->n_parts = rq->n_parts;
    p->max_tokens = rq->max_tokens ? (int32_t)rq->max_tokens : SVC_DEFAULT_MAX_TOKENS;
    if (p->max_tokens > max_ctx)
        p->max_tokens = max_ctx;
    p->stop = g->stop;
    p->n_stop = rq->n_stop;
    p->stop_ids = rq->stop_token_ids;
    p->n_stop_ids = rq->n_stop_token_ids;
    p->ignore_eos = rq->ignore_eos;
    p->no_generation_prompt = rq->no_generation_prompt;
    p->reuse = rq->reuse_mode == BRAID__V1__REUSE_MODE__REUSE_INDEPENDENT ? ENG_REUSE_INDEPENDENT
                                                                          : ENG_REUSE_EXACT;
    p->retain_output = rq->retain_output;
    p->request_id = rq->client_request_id[0] ? rq->client_request_id : NULL;
    /* A deadline beyond a year is no deadline worth the overflow risk. */
    uint64_t t = rq->timeout_ms;
    p->deadline_ms = t == 0 ? 0 : now_ms + (int64_t)(t < 31536000000ULL ? t : 31536000000ULL);
    return BI_OK;
}

void svc_gen_fini(svc_gen *g)
{
    bi_free(g->parts);
    bi_free(g->stop);
    g->parts = NULL;
    g->stop = NULL;
}
