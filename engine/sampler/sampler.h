/*
 * sampler.h - turning logits into the next token, per request.
 *
 * Order of operations (as in vLLM / HF): penalties (repetition on prompt and
 * generated tokens; presence and frequency on generated tokens), temperature,
 * then top-k, top-p and min-p filtering, then a draw from the seeded RNG.
 * temperature == 0 is greedy (argmax after penalties; ties to the lowest id).
 * Logprobs are the log-softmax of the processed logits before filtering (what
 * the model, after penalties and temperature, assigns), reported for the chosen
 * token and the top n.
 *
 * A sampler is owned by one request and used from one thread at a time.
 */
#ifndef ENG_SAMPLER_H
#define ENG_SAMPLER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/status.h"

#define ENG_MAX_LOGPROBS 20

typedef struct eng_sampling_params {
    float temperature;        /* >= 0; 0 = greedy. Default 1 */
    int top_k;                /* <= 0 = off */
    float top_p;              /* (0, 1]; 1 = off */
    float min_p;              /* [0, 1); 0 = off */
    float repetition_penalty; /* > 0; 1 = off (HF semantics: divide positive logits, multiply
                                 negative) */
    float presence_penalty;   /* [-2, 2]; 0 = off (OpenAI semantics) */
    float frequency_penalty;  /* [-2, 2]; 0 = off */
    uint64_t seed;            /* same seed, same params, same logits -> same tokens */
    int n_logprobs;           /* 0..ENG_MAX_LOGPROBS top alternatives to report; -1 = no logprobs */
} eng_sampling_params;

/* The defaults above (temperature 1, everything else off, n_logprobs -1). */
void eng_sampling_params_default(eng_sampling_params *p);

/* BI_INVALID_ARGUMENT with a message naming the parameter and its valid range
 * for NaN, infinite or out-of-range values. */
bi_status eng_sampling_params_validate(const eng_sampling_params *p, char *err, size_t err_size);

typedef struct eng_logprob_entry {
    int32_t token;
    float logprob;
} eng_logprob_entry;

typedef struct eng_logprobs {
    eng_logprob_entry chosen;
    int n_top;
    eng_logprob_entry top[ENG_MAX_LOGPROBS]; /* best first */
} eng_logprobs;

typedef struct eng_sampler eng_sampler;

/* Creates a sampler for a vocabulary of vocab_size tokens; params must be
 * valid. Free with eng_sampler_destroy (NULL is fine). */
bi_status eng_sampler_create(const eng_sampling_params *params, int vocab_size, eng_sampler **out);
void eng_sampler_destroy(eng_sampler *s);

/* Records prompt tokens (they count for the repetition penalty only). Ids out
 * of range are BI_INVALID_ARGUMENT. */
bi_status eng_sampler_add_prompt(eng_sampler *s, const int32_t *ids, size_t n);

/* Records token as generated without drawing it (a token chosen elsewhere,
 * e.g. by a device-side sampler), so that the penalties stay in step. Ids out
 * of range are BI_INVALID_ARGUMENT. */
bi_status eng_sampler_accept(eng_sampler *s, int32_t token);

/* What a sampler elsewhere (on a device) needs to act as this one: the
 * parameters; the distinct ids seen so far (prompt and generated, in order of
 * first appearance; *ids stays valid until the next call that records a
 * token); how often id was generated (0: never, or prompt only); and how many
 * tokens were recorded as generated (the step counter of a counter-based
 * draw). */
const eng_sampling_params *eng_sampler_params(const eng_sampler *s);
size_t eng_sampler_history(const eng_sampler *s, const int32_t **ids);
uint32_t eng_sampler_count(const eng_sampler *s, int32_t id);
uint64_t eng_sampler_generated(const eng_sampler *s);

/* Chooses the next token from logits[vocab_size] (modified in place), records
 * it as generated, and fills *lp when lp is not NULL and logprobs were asked
 * for. Non-finite logits are treated as -inf; all -inf is BI_INTERNAL.
 * Afterwards logits holds the penalised logits (greedy) or the penalised
 * logits minus their max, divided by the temperature. BI_NOMEM if the
 * filter's scratch could not grow; the token is then not recorded. */
bi_status eng_sampler_sample(eng_sampler *s, float *logits, int32_t *token, eng_logprobs *lp);

/* The candidate set eng_sampler_sample would draw from for these logits:
 * keep[vocab_size] is set to 1 for each token that survives penalties,
 * temperature and top-k / top-p / min-p (every token when no filter is on;
 * the argmax alone when greedy) and 0 otherwise. logits are processed in
 * place as by eng_sampler_sample; nothing is recorded and no random number is
 * drawn. For checking another implementation (the device sampler) against
 * this one. BI_INTERNAL when every logit is non-finite. */
bi_status eng_sampler_candidates(eng_sampler *s, float *logits, uint8_t *keep);

/*
 * Stop strings over a token stream. Text arrives in pieces; the matcher holds
 * back the tail that could still be the start of a stop string, so a client
 * never sees text that a later piece turns into a stop.
 */
typedef struct eng_stop_matcher eng_stop_matcher;

/* stops: n strings (copied). Empty strings are ignored. */
bi_status eng_stop_matcher_create(const char *const *stops, size_t n, eng_stop_matcher **out);
void eng_stop_matcher_destroy(eng_stop_matcher *m);

/* Feeds text; writes into out (capacity out_cap) the text now safe to emit and
 * sets *stopped when a stop string completed (the emitted text ends before
 * it; the stop string itself is not emitted). BI_OUT_OF_RANGE if out is too
 * small (out_cap >= len + longest stop string is always enough); the matcher
 * is then unchanged. Once a stop has completed, every later feed emits nothing
 * and reports *stopped again. The first stop occurrence to complete wins; of
 * two completing at the same byte, the one starting earlier. */
bi_status eng_stop_matcher_feed(eng_stop_matcher *m, const char *text, size_t len, char *out,
                                size_t out_cap, size_t *out_len, bool *stopped);

/* At the end of the stream: the held-back text, which is no stop. */
bi_status eng_stop_matcher_flush(eng_stop_matcher *m, char *out, size_t out_cap, size_t *out_len);

#endif
