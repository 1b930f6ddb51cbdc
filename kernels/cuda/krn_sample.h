/*
 * krn_sample.h - logits processing and sampling on the device: one launch
 * turns every logit row of a step into a token id (and the logprobs asked
 * for), so that only those come back to the host.
 *
 * Per row, in the order of engine/sampler (the reference, which this matches
 * token for token where it is deterministic): repetition / frequency /
 * presence penalties over the row's history, non-finite logits as -inf,
 * greedy argmax (ties to the lowest id) when temperature is 0, otherwise
 * x = (l - max) / T and e = exp(x) computed bit for bit as the CPU sampler
 * does, then top-k, top-p and min-p keeping exactly the candidate set the CPU
 * keeps (order: larger e first, then lower id), and a draw in proportion to e
 * from Philox4x32-10 keyed by the row's seed with its step as the counter
 * (same seed and step, same logits: same token). Logprobs are the log-softmax
 * of the processed logits before filtering, for the chosen token and the top
 * n (best first, ties to the lower id).
 *
 * The launcher takes a stream, never allocates or synchronises, checks the
 * launch and returns BI_DEVICE if it failed (BI_INVALID_ARGUMENT for bad
 * sizes). Every pointer is a device pointer owned by the caller.
 */
#ifndef KRN_SAMPLE_H
#define KRN_SAMPLE_H

#include <stdint.h>

#include <cuda_runtime_api.h>

#include "common/status.h"

#ifdef __cplusplus
extern "C" {
#endif

#define KRN_SAMPLE_MAX_TOP   20
#define KRN_SAMPLE_MAX_VOCAB (1 << 19) /* fixed-point masses of a row fit 64 bits */

/* One row's parameters (the meaning of eng_sampling_params). */
typedef struct krn_sample_row {
    float temperature;        /* 0 = greedy */
    float top_p;              /* 1 = off */
    float min_p;              /* 0 = off */
    float repetition_penalty; /* 1 = off */
    float presence_penalty, frequency_penalty;
    int32_t top_k;      /* <= 0 or >= vocab = off */
    int32_t n_logprobs; /* -1 = none, else 0..KRN_SAMPLE_MAX_TOP alternatives */
    int32_t hist_off;   /* the row's history: hist_ids/hist_counts[hist_off, + n_hist) */
    int32_t n_hist;     /* distinct ids (no repeats), each penalised once */
    uint64_t seed;      /* the draw's key */
    uint64_t step;      /* the draw's counter: tokens the request generated so far */
} krn_sample_row;

enum { KRN_SAMPLE_OK = 0, KRN_SAMPLE_NO_FINITE = 1 };

typedef struct krn_sample_out {
    int32_t token;  /* -1 when status is not KRN_SAMPLE_OK */
    int32_t status; /* KRN_SAMPLE_NO_FINITE: every logit was NaN or infinite */
    float chosen_logprob;
    int32_t n_top;
    int32_t top_id[KRN_SAMPLE_MAX_TOP];
    float top_logprob[KRN_SAMPLE_MAX_TOP];
} krn_sample_out;

/* Samples rows of logits[rows][vocab] (modified in place: penalties are
 * written back) into out[rows]. hist_counts[j] is how often hist_ids[j] was
 * generated (0: in the prompt only); the repetition penalty applies to every
 * history id, presence and frequency to those with a count. keys is scratch
 * of rows * vocab words (used by rows with temperature > 0). keep, when not
 * NULL, receives rows * vocab flags: 1 for the tokens of the row's final
 * candidate set (the argmax alone when greedy), for tests. vocab is at most
 * KRN_SAMPLE_MAX_VOCAB; history ids outside the vocabulary are ignored. */
bi_status krn_sample(float *logits, uint32_t *keys, int rows, int vocab,
                     const krn_sample_row *params, const int32_t *hist_ids,
                     const uint32_t *hist_counts, krn_sample_out *out, uint8_t *keep,
                     cudaStream_t stream);

#ifdef __cplusplus
}
#endif

#endif
