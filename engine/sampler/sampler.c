/*
 * sampler.c - logits processing and the seeded draw (see sampler.h).
 *
 * Per step the sampler touches the whole vocabulary only in a few linear
 * passes (clean + argmax, scale + exp, a histogram by log-probability, one
 * gather or draw pass); penalties walk the list of distinct ids seen so far.
 * Top-k / top-p / min-p never sort the vocabulary: the histogram says which
 * tokens a filter surely keeps or drops, and only the one crossing bucket is
 * resolved by (mass-weighted) quickselect.
 *
 * Probabilities are kept unnormalised as e = exp((x - max) / T), so the most
 * likely token has e == 1 exactly; that makes min-p a plain threshold.
 */
#define BI_LOG_MODULE "sampler"

#include "sampler/sampler.h"

#include <float.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "common/alloc.h"
#include "common/log.h"

/* One candidate token: its unnormalised probability and id. */
typedef struct cand {
    float e;
    int32_t id;
} cand;

struct eng_sampler {
    eng_sampling_params p;
    int vocab;
    uint32_t *count; /* (vocab) times each id was generated */
    uint8_t *seen;   /* (vocab) 1 when the id is in the prompt or was generated */
    int32_t *ids;    /* distinct seen ids, in order of first appearance */
    size_t n_ids;
    size_t ids_cap;
    float *e;    /* (vocab) unnormalised probabilities of the current step */
    cand *cands; /* the tokens that survive filtering (grows as needed) */
    size_t cands_cap;
    uint64_t rng[4];    /* xoshiro256** state */
    uint64_t generated; /* tokens recorded as generated */
};

/* ---- parameters ---------------------------------------------------------- */

void eng_sampling_params_default(eng_sampling_params *p)
{
    memset(p, 0, sizeof(*p));
    p->temperature = 1.0f;
    p->top_k = 0;
    p->top_p = 1.0f;
    p->min_p = 0.0f;
    p->repetition_penalty = 1.0f;
    p->n_logprobs = -1;
}

static bi_status invalid(char *err, size_t err_size, const char *name, const char *range,
                         double got)
{
    if (err && err_size > 0)
        snprintf(err, err_size, "%s must be in %s (got %g)", name, range, got);
    return BI_INVALID_ARGUMENT;
}

/* Each test is written so that NaN fails it (comparisons with NaN are false). */
bi_status eng_sampling_params_validate(const eng_sampling_params *p, char *err, size_t err_size)
{
    if (!p)
        return invalid(err, err_size, "sampling params", "a non-NULL struct", 0);
    if (!(p->temperature >= 0.0f && p->temperature <= 100.0f))
        return invalid(err, err_size, "temperature", "[0, 100]", p->temperature);
    if (!(p->top_p > 0.0f && p->top_p <= 1.0f))
        return invalid(err, err_size, "top_p", "(0, 1]", p->top_p);
    if (!(p->min_p >= 0.0f && p->min_p < 1.0f))
        return invalid(err, err_size, "min_p", "[0, 1)", p->min_p);
    if (!(p->repetition_penalty > 0.0f && p->repetition_penalty <= 10.0f))
        return invalid(err, err_size, "repetition_penalty", "(0, 10]", p->repetition_penalty);
    if (!(p->presence_penalty >= -2.0f && p->presence_penalty <= 2.0f))
        return invalid(err, err_size, "presence_penalty", "[-2, 2]", p->presence_penalty);
    if (!(p->frequency_penalty >= -2.0f && p->frequency_penalty <= 2.0f))
        return invalid(err, err_size, "frequency_penalty", "[-2, 2]", p->frequency_penalty);
    if (p->n_logprobs < -1 || p->n_logprobs > ENG_MAX_LOGPROBS)
        return invalid(err, err_size, "n_logprobs", "[-1, 20]", p->n_logprobs);
    /* top_k: every value is meaningful (<= 0 is off). */
    return BI_OK;
}

/* ---- PRNG: splitmix64 seeds xoshiro256** (both public-domain, Vigna) ------ */

static uint64_t splitmix64(uint64_t *x)
{
    uint64_t z = (*x += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static uint64_t rotl(uint64_t x, int k)
{
    return (x << k) | (x >> (64 - k));
}

static uint64_t xoshiro_next(uint64_t s[4])
{
    uint64_t result = rotl(s[1] * 5, 7) * 9;
    uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return result;
}

/* Uniform in [0, 1) with 53 random bits. */
static double rng_uniform(uint64_t s[4])
{
    return (double)(xoshiro_next(s) >> 11) * 0x1.0p-53;
}

/* ---- lifetime and history ------------------------------------------------ */

bi_status eng_sampler_create(const eng_sampling_params *params, int vocab_size, eng_sampler **out)
{
    char err[160];
    if (!out || vocab_size <= 0)
        return BI_INVALID_ARGUMENT;
    *out = NULL;
    if (eng_sampling_params_validate(params, err, sizeof(err)) != BI_OK) {
        BI_LOGD(NULL, "rejected sampling params: %s", err);
        return BI_INVALID_ARGUMENT;
    }
    eng_sampler *s = bi_calloc(1, sizeof(*s));
    if (!s)
        return BI_NOMEM;
    s->p = *params;
    s->vocab = vocab_size;
    s->count = bi_calloc((size_t)vocab_size, sizeof(*s->count));
    s->seen = bi_calloc((size_t)vocab_size, sizeof(*s->seen));
    s->e = bi_mallocarray((size_t)vocab_size, sizeof(*s->e));
    if (!s->count || !s->seen || !s->e) {
        eng_sampler_destroy(s);
        return BI_NOMEM;
    }
    uint64_t x = params->seed;
    for (int i = 0; i < 4; i++)
        s->rng[i] = splitmix64(&x);
    *out = s;
    return BI_OK;
}

void eng_sampler_destroy(eng_sampler *s)
{
    if (!s)
        return;
    bi_free(s->count);
    bi_free(s->seen);
    bi_free(s->ids);
    bi_free(s->e);
    bi_free(s->cands);
    bi_free(s);
}

/* Marks id as seen, remembering it in the distinct list the penalties walk. */
static bi_status mark_seen(eng_sampler *s, int32_t id)
{
    if (s->seen[id])
        return BI_OK;
    void *arr = s->ids;
    bi_status st = bi_array_reserve(&arr, &s->ids_cap, s->n_ids + 1, sizeof(*s->ids));
    s->ids = arr;
    if (st != BI_OK)
        return st;
    s->ids[s->n_ids++] = id;
    s->seen[id] = 1;
    return BI_OK;
}

bi_status eng_sampler_add_prompt(eng_sampler *s, const int32_t *ids, size_t n)
{
    if (!s || (!ids && n > 0))
        return BI_INVALID_ARGUMENT;
    for (size_t i = 0; i < n; i++)
        if (ids[i] < 0 || ids[i] >= s->vocab)
            return BI_INVALID_ARGUMENT;
    for (size_t i = 0; i < n; i++) {
        bi_status st = mark_seen(s, ids[i]);
        if (st != BI_OK)
            return st;
    }
    return BI_OK;
}

bi_status eng_sampler_accept(eng_sampler *s, int32_t token)
{
    if (!s || token < 0 || token >= s->vocab)
        return BI_INVALID_ARGUMENT;
    bi_status st = mark_seen(s, token);
    if (st != BI_OK)
        return st;
    if (s->count[token] < UINT32_MAX)
        s->count[token]++;
    s->generated++;
    return BI_OK;
}

const eng_sampling_params *eng_sampler_params(const eng_sampler *s)
{
    return &s->p;
}

size_t eng_sampler_history(const eng_sampler *s, const int32_t **ids)
{
    *ids = s->ids;
    return s->n_ids;
}

uint32_t eng_sampler_count(const eng_sampler *s, int32_t id)
{
    return id >= 0 && id < s->vocab ? s->count[id] : 0;
}

uint64_t eng_sampler_generated(const eng_sampler *s)
{
    return s->generated;
}

/* ---- logits processing --------------------------------------------------- */

static float clamp_finite(float x)
{
    if (x > FLT_MAX)
        return FLT_MAX;
    if (x < -FLT_MAX)
        return -FLT_MAX;
    return x;
}

/* Repetition (HF), then frequency and presence (OpenAI/vLLM), once per
 * distinct seen id. Results are clamped to finite so that a tiny penalty
 * divisor cannot turn a logit into +inf and poison the softmax. */
static void apply_penalties(const eng_sampler *s, float *logits)
{
    const eng_sampling_params *p = &s->p;
    for (size_t i = 0; i < s->n_ids; i++) {
        int32_t id = s->ids[i];
        float x = logits[id];
        if (!isfinite(x)) {
            logits[id] = -INFINITY;
            continue;
        }
        if (p->repetition_penalty != 1.0f)
            x = x > 0.0f ? x / p->repetition_penalty : x * p->repetition_penalty;
        uint32_t c = s->count[id];
        if (c > 0)
            x -= p->frequency_penalty * (float)c + p->presence_penalty;
        logits[id] = clamp_finite(x);
    }
}

/* Replaces non-finite logits by -inf and returns the argmax (lowest id on
 * ties), or -1 when every logit is -inf. */
static int32_t clean_argmax(float *logits, int n)
{
    int32_t best = -1;
    float bx = -INFINITY;
    for (int i = 0; i < n; i++) {
        float x = logits[i];
        if (!isfinite(x)) {
            logits[i] = -INFINITY;
            continue;
        }
        if (best < 0 || x > bx) {
            bx = x;
            best = i;
        }
    }
    return best;
}

/* log(sum(exp(x - max))) over the vocabulary; used for greedy logprobs. */
static double log_sum_exp_shifted(const float *logits, int n, float max)
{
    double z = 0.0;
    for (int i = 0; i < n; i++)
        z += expf(logits[i] - max);
    return log(z);
}

/* Top n logits, best first, ties to the lower id, by insertion into a short
 * sorted list: one pass, no sort of the vocabulary. */
static void fill_logprobs(const float *logits, int vocab, double log_z, float shift, int32_t chosen,
                          int n_top, eng_logprobs *lp)
{
    int have = 0;
    for (int i = 0; i < vocab && n_top > 0; i++) {
        float x = logits[i];
        if (have == n_top && !(x > lp->top[have - 1].logprob))
            continue;
        int j = have < n_top ? have++ : have - 1;
        while (j > 0 && x > lp->top[j - 1].logprob) {
            lp->top[j] = lp->top[j - 1];
            j--;
        }
        lp->top[j].token = i;
        lp->top[j].logprob = x;
    }
    for (int j = 0; j < have; j++)
        lp->top[j].logprob = (float)((double)(lp->top[j].logprob - shift) - log_z);
    lp->n_top = have;
    lp->chosen.token = chosen;
    lp->chosen.logprob = (float)((double)(logits[chosen] - shift) - log_z);
}

/* ---- selection over candidates ------------------------------------------ */

/* The total order used for filtering: more probable first, then lower id. */
static bool better(cand a, cand b)
{
    return a.e > b.e || (a.e == b.e && a.id < b.id);
}

static void swap_cand(cand *a, cand *b)
{
    cand t = *a;
    *a = *b;
    *b = t;
}

/* Partitions c[lo, hi) around a pivot chosen from three positions of a
 * deterministic sequence (so adversarial orders cannot force quadratic time
 * while the result still depends only on the input). Returns the pivot's
 * final index p: c[lo, p) is better than c[p], c(p, hi) worse. *upper_mass
 * receives the sum of e over c[lo, p). */
static size_t partition(cand *c, size_t lo, size_t hi, uint64_t *pick, double *upper_mass)
{
    size_t n = hi - lo;
    size_t a = lo + splitmix64(pick) % n, b = lo + splitmix64(pick) % n;
    size_t m = lo + splitmix64(pick) % n;
    /* median of three */
    if (better(c[a], c[b]))
        swap_cand(&c[a], &c[b]);
    if (better(c[b], c[m]))
        swap_cand(&c[b], &c[m]);
    if (better(c[a], c[b]))
        swap_cand(&c[a], &c[b]);
    swap_cand(&c[b], &c[hi - 1]);
    cand pv = c[hi - 1];
    size_t store = lo;
    double mass = 0.0;
    for (size_t i = lo; i < hi - 1; i++) {
        if (better(c[i], pv)) {
            mass += c[i].e;
            swap_cand(&c[i], &c[store]);
            store++;
        }
    }
    swap_cand(&c[store], &c[hi - 1]);
    *upper_mass = mass;
    return store;
}

/* Moves the k best of c[0, n) to c[0, k) (in no particular order). */
static void select_top_k(cand *c, size_t n, size_t k)
{
    uint64_t pick = n;
    size_t lo = 0, hi = n;
    double unused;
    while (hi - lo > 1) {
        size_t p = partition(c, lo, hi, &pick, &unused);
        if (p == k || p + 1 == k)
            return;
        if (p > k)
            hi = p;
        else
            lo = p + 1;
    }
}

/* The nucleus: returns the size of the smallest best-first prefix of c[0, n)
 * whose mass reaches target, having moved that prefix to c[0, cut). A
 * mass-weighted quickselect: each round keeps the side that holds the
 * crossing point, so the expected work is linear. */
static size_t select_top_p(cand *c, size_t n, double target)
{
    uint64_t pick = n;
    size_t lo = 0, hi = n;
    double acc = 0.0; /* mass of c[0, lo), always < target */
    while (hi - lo > 1) {
        double upper;
        size_t p = partition(c, lo, hi, &pick, &upper);
        if (acc + upper >= target) {
            hi = p;
        } else if (acc + upper + c[p].e >= target) {
            return p + 1;
        } else {
            acc += upper + c[p].e;
            lo = p + 1;
        }
    }
    return hi;
}

static double mass_of(const cand *c, size_t n)
{
    double z = 0.0;
    for (size_t i = 0; i < n; i++)
        z += c[i].e;
    return z;
}

/* ---- buckets -------------------------------------------------------------
 * A histogram of the step's tokens by distance below the best logit (in
 * 1/8 nat steps) tells which tokens a filter surely keeps, surely drops, or
 * must look at: only the one bucket where the count (top-k) or the mass
 * (top-p) crosses the limit needs selection, so filters cost a few linear
 * passes even when they keep most of the vocabulary.
 */
#define N_BUCKETS       512
#define BUCKETS_PER_NAT 8.0f

typedef struct histogram {
    uint32_t count[N_BUCKETS];
    double mass[N_BUCKETS];
} histogram;

/* x is a shifted logit (<= 0, or -inf); far-down tokens share the last bucket. */
static int bucket_of(float x)
{
    float b = -x * BUCKETS_PER_NAT;
    return b < (float)(N_BUCKETS - 1) ? (int)b : N_BUCKETS - 1;
}

/* Copies into s->cands, in id order, the tokens of a bucket below cut, then
 * those of bucket cut (n_above and n_cut of them, from the histogram). */
static bi_status gather(eng_sampler *s, const float *x, int cut, size_t n_above, size_t n_cut)
{
    void *arr = s->cands;
    bi_status st = bi_array_reserve(&arr, &s->cands_cap, n_above + n_cut, sizeof(cand));
    s->cands = arr;
    if (st != BI_OK)
        return st;
    size_t i_above = 0, i_cut = n_above;
    for (int id = 0; id < s->vocab; id++) {
        int b = bucket_of(x[id]);
        if (b < cut)
            s->cands[i_above++] = (cand){s->e[id], id};
        else if (b == cut)
            s->cands[i_cut++] = (cand){s->e[id], id};
    }
    return BI_OK;
}

/* Leaves in s->cands[0, *n) the top_k best tokens. */
static bi_status gather_top_k(eng_sampler *s, const float *x, const histogram *h, size_t k,
                              size_t *n)
{
    size_t above = 0;
    int b = 0;
    while (b < N_BUCKETS - 1 && above + h->count[b] < k)
        above += h->count[b++];
    bi_status st = gather(s, x, b, above, h->count[b]);
    if (st != BI_OK)
        return st;
    if (k < above + h->count[b])
        select_top_k(s->cands + above, h->count[b], k - above);
    *n = k;
    return BI_OK;
}

/* Leaves in s->cands[0, *n) the nucleus of mass top_p * z. */
static bi_status gather_top_p(eng_sampler *s, const float *x, const histogram *h, double target,
                              size_t *n)
{
    size_t above = 0;
    double mass = 0.0;
    int b = 0;
    while (b < N_BUCKETS - 1 && mass + h->mass[b] < target) {
        above += h->count[b];
        mass += h->mass[b++];
    }
    bi_status st = gather(s, x, b, above, h->count[b]);
    if (st != BI_OK)
        return st;
    *n = above + select_top_p(s->cands + above, h->count[b], target - mass);
    return BI_OK;
}

/* Leaves in s->cands[0, *n) every token that can pass min_p (a superset: the
 * threshold itself is applied in filter_and_draw). */
static bi_status gather_min_p(eng_sampler *s, const float *x, const histogram *h, float min_p,
                              size_t *n)
{
    /* one bucket of slack: expf may round a token across the boundary */
    int cut = bucket_of(logf(min_p)) + 1;
    if (cut > N_BUCKETS - 1)
        cut = N_BUCKETS - 1;
    size_t above = 0;
    for (int b = 0; b < cut; b++)
        above += h->count[b];
    *n = above + h->count[cut];
    return gather(s, x, cut, above, h->count[cut]);
}

/* The unfiltered draw: find the bucket holding r by its mass, then the token
 * inside it in id order. No long chain of dependent additions over the whole
 * vocabulary, which would cost more than the rest of the step. */
static int32_t draw_all(const eng_sampler *s, const float *x, const histogram *h, double r,
                        int32_t best)
{
    int b = 0;
    while (b < N_BUCKETS - 1 && r >= h->mass[b])
        r -= h->mass[b++];
    double acc = 0.0;
    int32_t last = best; /* only reached when rounding leaves r past every token */
    for (int id = 0; id < s->vocab; id++) {
        if (bucket_of(x[id]) != b || s->e[id] == 0.0f)
            continue;
        acc += s->e[id];
        last = id;
        if (r < acc)
            return id;
    }
    return last;
}

/* Applies top-p (unless done) and min-p to c[0, n); returns how many
 * candidates are left in c[0, n'). The best token always survives. */
static size_t filter_cands(const eng_sampling_params *p, bool top_p_done, cand *c, size_t n)
{
    if (p->top_p < 1.0f && !top_p_done)
        n = select_top_p(c, n, (double)p->top_p * mass_of(c, n));
    if (p->min_p > 0.0f) {
        size_t k = 0;
        for (size_t i = 0; i < n; i++)
            if (c[i].e >= p->min_p) /* the best has e == 1 */
                c[k++] = c[i];
        n = k;
    }
    return n;
}

/* Draws one of c[0, n) (n > 0) in proportion to e, with u in [0, 1). */
static int32_t draw_cands(const cand *c, size_t n, double u)
{
    double r = u * mass_of(c, n), acc = 0.0;
    for (size_t i = 0; i < n; i++) {
        acc += c[i].e;
        if (r < acc)
            return c[i].id;
    }
    /* rounding left r at the very top: the last candidate with mass */
    for (size_t i = n; i-- > 0;)
        if (c[i].e > 0.0f)
            return c[i].id;
    return c[0].id;
}

/* exp(x) for x <= 0 (or -inf), within 2 ulp of expf: Cody-Waite reduction to
 * [-ln2/2, ln2/2] and Cephes' degree-6 polynomial. Written without calls or
 * branches so that the loop over the vocabulary vectorises, and the same on
 * every machine, unlike libm's expf. Below -87 it returns 0 (true values are
 * below 2^-125, no weight next to the best token's 1). */
static float exp_nonpos(float x)
{
    float keep = x >= -87.0f ? 1.0f : 0.0f;
    x = x >= -87.0f ? x : -87.0f;
    float n = x * 1.44269504088896341f + 12582912.0f; /* round to nearest via 1.5 * 2^23 */
    n -= 12582912.0f;
    float r = x - n * 0.693359375f;
    r -= n * -2.12194440e-4f;
    float y = 1.9875691500e-4f;
    y = y * r + 1.3981999507e-3f;
    y = y * r + 8.3334519073e-3f;
    y = y * r + 4.1665795894e-2f;
    y = y * r + 1.6666665459e-1f;
    y = y * r + 5.0000001201e-1f;
    y = y * r * r + r + 1.0f;
    int32_t bits = ((int32_t)n + 127) << 23;
    float scale;
    memcpy(&scale, &bits, sizeof(scale));
    return y * scale * keep;
}

/* Shifts by the max and divides by the temperature (so no temperature can
 * overflow; softmax does not see the shift), and fills s->e and h. */
static void scale_and_exp(eng_sampler *s, float *logits, float max, histogram *h)
{
    float t = s->p.temperature;
    float *e = s->e;
    for (int i = 0; i < s->vocab; i++) {
        float x = (logits[i] - max) / t;
        logits[i] = x;
        e[i] = exp_nonpos(x);
    }
    memset(h, 0, sizeof(*h));
    for (int i = 0; i < s->vocab; i++) {
        int b = bucket_of(logits[i]);
        h->count[b]++;
        h->mass[b] += e[i];
    }
}

/* Leaves in s->cands[0, *n) the tokens that top-k, top-p and min-p keep
 * (x: the scaled logits, h and z from scale_and_exp), or sets *all when no
 * filter is on (every token is a candidate; nothing gathered). */
static bi_status filter(eng_sampler *s, const float *x, const histogram *h, double z, size_t *n,
                        bool *all)
{
    const eng_sampling_params *p = &s->p;
    bi_status st;
    bool top_k = p->top_k > 0 && p->top_k < s->vocab;
    *all = false;
    if (top_k)
        st = gather_top_k(s, x, h, (size_t)p->top_k, n);
    else if (p->top_p < 1.0f)
        st = gather_top_p(s, x, h, (double)p->top_p * z, n);
    else if (p->min_p > 0.0f)
        st = gather_min_p(s, x, h, p->min_p, n);
    else {
        *all = true;
        return BI_OK;
    }
    if (st != BI_OK)
        return st;
    /* n == 0 only if rounding emptied the nucleus; the caller falls back to the best token */
    if (*n > 0)
        *n = filter_cands(p, !top_k, s->cands, *n);
    return BI_OK;
}

static double histogram_mass(const histogram *h)
{
    double z = 0.0;
    for (int b = 0; b < N_BUCKETS; b++)
        z += h->mass[b];
    return z;
}

static bi_status sample_temperature(eng_sampler *s, float *logits, float max, int32_t best,
                                    int32_t *chosen, double *z)
{
    histogram h;
    scale_and_exp(s, logits, max, &h);
    *z = histogram_mass(&h);
    double u = rng_uniform(s->rng);
    size_t n;
    bool all;
    bi_status st = filter(s, logits, &h, *z, &n, &all);
    if (st != BI_OK)
        return st;
    if (all)
        *chosen = draw_all(s, logits, &h, u * *z, best);
    else
        *chosen = n > 0 ? draw_cands(s->cands, n, u) : best;
    return BI_OK;
}

bi_status eng_sampler_candidates(eng_sampler *s, float *logits, uint8_t *keep)
{
    if (!s || !logits || !keep)
        return BI_INVALID_ARGUMENT;
    apply_penalties(s, logits);
    int32_t best = clean_argmax(logits, s->vocab);
    if (best < 0)
        return BI_INTERNAL;
    memset(keep, 0, (size_t)s->vocab);
    if (s->p.temperature == 0.0f) {
        keep[best] = 1;
        return BI_OK;
    }
    histogram h;
    scale_and_exp(s, logits, logits[best], &h);
    size_t n;
    bool all;
    bi_status st = filter(s, logits, &h, histogram_mass(&h), &n, &all);
    if (st != BI_OK)
        return st;
    if (all)
        memset(keep, 1, (size_t)s->vocab);
    else if (n == 0)
        keep[best] = 1;
    for (size_t i = 0; i < n && !all; i++)
        keep[s->cands[i].id] = 1;
    return BI_OK;
}

bi_status eng_sampler_sample(eng_sampler *s, float *logits, int32_t *token, eng_logprobs *lp)
{
    if (!s || !logits || !token)
        return BI_INVALID_ARGUMENT;
    const eng_sampling_params *p = &s->p;
    int vocab = s->vocab;
    apply_penalties(s, logits);
    int32_t best = clean_argmax(logits, vocab);
    if (best < 0)
        return BI_INTERNAL;
    float max = logits[best];
    bool want_lp = lp && p->n_logprobs >= 0;
    int32_t chosen = best;

    if (p->temperature == 0.0f) {
        if (want_lp)
            fill_logprobs(logits, vocab, log_sum_exp_shifted(logits, vocab, max), max, chosen,
                          p->n_logprobs, lp);
    } else {
        double z;
        bi_status st = sample_temperature(s, logits, max, best, &chosen, &z);
        if (st != BI_OK)
            return st;
        if (want_lp)
            fill_logprobs(logits, vocab, log(z), 0.0f, chosen, p->n_logprobs, lp);
    }
    *token = chosen;
    return eng_sampler_accept(s, chosen);
}
