/* test_sampler.c - eng_sampler: greedy, seeded draws and their distribution,
 * top-k / top-p / min-p, penalties against hand-computed values, logprobs,
 * parameter validation, and a timing printout over a 152k vocabulary. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/alloc.h"
#include "sampler/sampler.h"

#define QWEN_VOCAB 151936

/* ---- helpers ------------------------------------------------------------ */

static uint64_t test_rng = 0x1234567u;

static double uniform01(void)
{
    uint64_t z = (test_rng += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    z ^= z >> 31;
    return ((double)(z >> 11) + 0.5) * 0x1.0p-53;
}

/* Normal(0, sd) logits, roughly the spread of a language model's output. */
static void random_logits(float *x, int n, double sd)
{
    for (int i = 0; i < n; i++)
        x[i] = (float)(sd * sqrt(-2.0 * log(uniform01())) * cos(2.0 * M_PI * uniform01()));
}

static eng_sampler *make(const eng_sampling_params *p, int vocab)
{
    eng_sampler *s = NULL;
    assert_int_equal(eng_sampler_create(p, vocab, &s), BI_OK);
    assert_non_null(s);
    return s;
}

static int32_t draw(eng_sampler *s, const float *logits, int vocab)
{
    float buf[64];
    assert_true(vocab <= 64);
    memcpy(buf, logits, sizeof(float) * (size_t)vocab);
    int32_t tok = -1;
    assert_int_equal(eng_sampler_sample(s, buf, &tok, NULL), BI_OK);
    assert_true(tok >= 0 && tok < vocab);
    return tok;
}

static eng_sampling_params params_temp(float t, uint64_t seed)
{
    eng_sampling_params p;
    eng_sampling_params_default(&p);
    p.temperature = t;
    p.seed = seed;
    return p;
}

/* Draws n_draws tokens from logits (vocab <= 8) and checks the frequencies
 * against want[] by chi-square (critical value for p = 0.001 with up to 7
 * degrees of freedom is 24.3) and by a 1.5 percentage point tolerance. A zero
 * in want[] must never be drawn. */
static void check_distribution(const eng_sampling_params *p, const float *logits, int vocab,
                               const double *want, int n_draws)
{
    eng_sampler *s = make(p, vocab);
    int hist[8] = {0};
    for (int i = 0; i < n_draws; i++)
        hist[draw(s, logits, vocab)]++;
    double chi2 = 0.0;
    for (int i = 0; i < vocab; i++) {
        double f = (double)hist[i] / n_draws;
        if (want[i] == 0.0) {
            assert_int_equal(hist[i], 0);
            continue;
        }
        double e = want[i] * n_draws;
        chi2 += (hist[i] - e) * (hist[i] - e) / e;
        assert_true(fabs(f - want[i]) < 0.015);
    }
    assert_true(chi2 < 24.3);
    eng_sampler_destroy(s);
}

static const float four_logits[4] = {-2.302585f, -1.609438f, -1.203973f, -0.916291f};
static const double four_probs[4] = {0.1, 0.2, 0.3, 0.4}; /* exp of the logits above */

/* ---- greedy ------------------------------------------------------------- */

static void test_sampler_greedy_argmax(void **state)
{
    (void)state;
    const float logits[5] = {0.1f, 3.0f, -1.0f, 2.9f, -7.0f};
    for (uint64_t seed = 0; seed < 5; seed++) {
        eng_sampling_params p = params_temp(0.0f, seed);
        eng_sampler *s = make(&p, 5);
        for (int i = 0; i < 3; i++)
            assert_int_equal(draw(s, logits, 5), 1);
        eng_sampler_destroy(s);
    }
}

static void test_sampler_greedy_ties_and_nonfinite(void **state)
{
    (void)state;
    eng_sampling_params p = params_temp(0.0f, 7);
    eng_sampler *s = make(&p, 5);
    const float ties[5] = {1.0f, 5.0f, 2.0f, 5.0f, 5.0f};
    assert_int_equal(draw(s, ties, 5), 1);
    /* NaN and +inf count as -inf, not as the best token */
    const float bad[5] = {NAN, INFINITY, 1.0f, 2.0f, -INFINITY};
    assert_int_equal(draw(s, bad, 5), 3);
    float all_bad[5] = {NAN, -INFINITY, INFINITY, NAN, -INFINITY};
    int32_t tok;
    assert_int_equal(eng_sampler_sample(s, all_bad, &tok, NULL), BI_INTERNAL);
    eng_sampler_destroy(s);

    /* with temperature as well: non-finite tokens are never drawn */
    p = params_temp(1.0f, 7);
    s = make(&p, 5);
    for (int i = 0; i < 200; i++) {
        int32_t t = draw(s, bad, 5);
        assert_true(t == 2 || t == 3);
    }
    eng_sampler_destroy(s);
}

/* ---- seeded draws ------------------------------------------------------- */

static void sample_sequence(uint64_t seed, int32_t *out, int n)
{
    enum { V = 1000 };
    static float flat[V];
    eng_sampling_params p = params_temp(1.0f, seed);
    eng_sampler *s = make(&p, V);
    for (int i = 0; i < n; i++) {
        for (int j = 0; j < V; j++)
            flat[j] = 0.5f;
        assert_int_equal(eng_sampler_sample(s, flat, &out[i], NULL), BI_OK);
    }
    eng_sampler_destroy(s);
}

static void test_sampler_seed_reproducible(void **state)
{
    (void)state;
    int32_t a[64], b[64], c[64];
    sample_sequence(42, a, 64);
    sample_sequence(42, b, 64);
    sample_sequence(43, c, 64);
    assert_memory_equal(a, b, sizeof(a));
    int same = 0, distinct = 0;
    for (int i = 0; i < 64; i++) {
        same += a[i] == c[i];
        distinct += i == 0 || a[i] != a[i - 1];
    }
    assert_true(same < 8);      /* 1/1000 chance each on a flat distribution */
    assert_true(distinct > 50); /* and the draws do move */
}

static void test_sampler_distribution_matches(void **state)
{
    (void)state;
    eng_sampling_params p = params_temp(1.0f, 2024);
    check_distribution(&p, four_logits, 4, four_probs, 20000);

    /* temperature 0.5 squares the probabilities: 1, 4, 9, 16 over 30 */
    p = params_temp(0.5f, 99);
    const double sq[4] = {1.0 / 30, 4.0 / 30, 9.0 / 30, 16.0 / 30};
    check_distribution(&p, four_logits, 4, sq, 20000);
}

/* ---- filters ------------------------------------------------------------ */

static void test_sampler_top_k_renormalises(void **state)
{
    (void)state;
    eng_sampling_params p = params_temp(1.0f, 5);
    p.top_k = 2;
    const double want[4] = {0, 0, 3.0 / 7, 4.0 / 7};
    check_distribution(&p, four_logits, 4, want, 20000);
    /* negative top_k and top_k beyond the vocabulary are off */
    p.top_k = -3;
    check_distribution(&p, four_logits, 4, four_probs, 20000);
    p.top_k = 100;
    check_distribution(&p, four_logits, 4, four_probs, 20000);
}

static void test_sampler_top_k1_is_greedy(void **state)
{
    (void)state;
    enum { V = 5000 };
    static float logits[V], copy[V];
    eng_sampling_params p = params_temp(1.3f, 11);
    p.top_k = 1;
    eng_sampler *s = make(&p, V);
    for (int step = 0; step < 50; step++) {
        random_logits(logits, V, 2.0);
        int best = 0;
        for (int i = 1; i < V; i++)
            if (logits[i] > logits[best])
                best = i;
        memcpy(copy, logits, sizeof(logits));
        int32_t tok;
        assert_int_equal(eng_sampler_sample(s, copy, &tok, NULL), BI_OK);
        assert_int_equal(tok, best);
    }
    eng_sampler_destroy(s);
}

static void test_sampler_top_p(void **state)
{
    (void)state;
    eng_sampling_params p = params_temp(1.0f, 17);
    p.top_p = 1e-6f; /* tiny: only the top token */
    const double top[4] = {0, 0, 0, 1};
    check_distribution(&p, four_logits, 4, top, 2000);
    /* 0.65: 0.4 alone is short, 0.4 + 0.3 reaches it */
    p.top_p = 0.65f;
    const double two[4] = {0, 0, 3.0 / 7, 4.0 / 7};
    check_distribution(&p, four_logits, 4, two, 20000);
    /* 0.75 needs the third token too */
    p.top_p = 0.75f;
    const double three[4] = {0, 2.0 / 9, 3.0 / 9, 4.0 / 9};
    check_distribution(&p, four_logits, 4, three, 20000);
    /* top-p after top-k works on the renormalised top-k mass: 4/7 < 0.6 */
    p.top_k = 2;
    p.top_p = 0.6f;
    check_distribution(&p, four_logits, 4, two, 20000);
}

static int cmp_desc(const void *a, const void *b)
{
    float x = *(const float *)a, y = *(const float *)b;
    return (x < y) - (x > y);
}

/* Over a large random vocabulary, every drawn token lies inside the nucleus
 * computed by a full sort, and the most likely nucleus members do appear. */
static void test_sampler_top_p_large_vocab(void **state)
{
    (void)state;
    enum { V = 20000 };
    static float logits[V], copy[V], sorted[V];
    random_logits(logits, V, 3.0);
    memcpy(sorted, logits, sizeof(logits));
    qsort(sorted, V, sizeof(float), cmp_desc);
    double z = 0.0, acc = 0.0;
    for (int i = 0; i < V; i++)
        z += exp((double)sorted[i] - sorted[0]);
    int cut = 0;
    while (acc < 0.5 * z)
        acc += exp((double)sorted[cut++] - sorted[0]);
    float threshold = sorted[cut - 1];
    assert_true(cut > 10 && cut < V / 2);

    eng_sampling_params p = params_temp(1.0f, 3);
    p.top_p = 0.5f;
    eng_sampler *s = make(&p, V);
    int hits_top = 0;
    for (int i = 0; i < 1000; i++) {
        memcpy(copy, logits, sizeof(logits));
        int32_t tok;
        assert_int_equal(eng_sampler_sample(s, copy, &tok, NULL), BI_OK);
        assert_true(logits[tok] >= threshold);
        hits_top += logits[tok] == sorted[0];
    }
    assert_true(hits_top > 0);
    eng_sampler_destroy(s);
}

static void test_sampler_min_p(void **state)
{
    (void)state;
    /* probabilities 0.5, 0.3, 0.15, 0.05; min_p 0.2 keeps p >= 0.1 */
    const float logits[4] = {logf(0.5f), logf(0.3f), logf(0.15f), logf(0.05f)};
    eng_sampling_params p = params_temp(1.0f, 23);
    p.min_p = 0.2f;
    const double want[4] = {0.5 / 0.95, 0.3 / 0.95, 0.15 / 0.95, 0};
    check_distribution(&p, logits, 4, want, 20000);
    p.min_p = 0.7f; /* keeps p >= 0.35: only the first */
    const double one[4] = {1, 0, 0, 0};
    check_distribution(&p, logits, 4, one, 2000);
}

/* ---- the candidate set (what a device sampler is checked against) ------- */

static const float *cmp_logits;
static int cmp_by_logit_desc(const void *a, const void *b)
{
    int i = *(const int *)a, j = *(const int *)b;
    float x = cmp_logits[i], y = cmp_logits[j];
    return x != y ? (x < y) - (x > y) : (i > j) - (i < j);
}

/* Candidates of params p over logits (vocab V) into keep; returns how many. */
static int candidates(const eng_sampling_params *p, const float *logits, int V, uint8_t *keep,
                      float *work)
{
    eng_sampler *s = make(p, V);
    memcpy(work, logits, sizeof(float) * (size_t)V);
    assert_int_equal(eng_sampler_candidates(s, work, keep), BI_OK);
    eng_sampler_destroy(s);
    int n = 0;
    for (int i = 0; i < V; i++)
        n += keep[i];
    return n;
}

/* Greedy keeps the argmax, no filter keeps all, top-k the k best, top-p the
 * shortest best-first prefix reaching the mass, min-p the tokens at or above
 * min_p times the best's probability (reference: a full sort in double). */
static void test_sampler_candidates_sets(void **state)
{
    (void)state;
    enum { V = 3000 };
    static float logits[V], work[V];
    static uint8_t keep[V];
    static int order[V];
    random_logits(logits, V, 2.0);
    for (int i = 0; i < V; i++)
        order[i] = i;
    cmp_logits = logits;
    qsort(order, V, sizeof(int), cmp_by_logit_desc);
    double z = 0.0;
    for (int i = 0; i < V; i++)
        z += exp((double)logits[i] - logits[order[0]]);

    eng_sampling_params p = params_temp(0.0f, 1);
    assert_int_equal(candidates(&p, logits, V, keep, work), 1);
    assert_int_equal(keep[order[0]], 1);
    p = params_temp(1.0f, 1);
    assert_int_equal(candidates(&p, logits, V, keep, work), V);
    p.top_k = 37;
    assert_int_equal(candidates(&p, logits, V, keep, work), 37);
    for (int i = 0; i < 37; i++)
        assert_int_equal(keep[order[i]], 1);
    p = params_temp(1.0f, 1);
    p.top_p = 0.6f;
    int want = 0;
    for (double acc = 0.0; acc < 0.6 * z; want++)
        acc += exp((double)logits[order[want]] - logits[order[0]]);
    assert_int_equal(candidates(&p, logits, V, keep, work), want);
    for (int i = 0; i < want; i++)
        assert_int_equal(keep[order[i]], 1);
    p = params_temp(1.0f, 1);
    p.min_p = 0.05f;
    int n = candidates(&p, logits, V, keep, work);
    for (int i = 0; i < V; i++)
        assert_int_equal(keep[order[i]], exp((double)logits[order[i]] - logits[order[0]]) >= 0.05);
    assert_true(n > 1 && n < V);
}

/* Every draw lies in the candidate set, and asking for the set draws no
 * random number (the seeded sequence is unchanged). */
static void test_sampler_candidates_hold_draws(void **state)
{
    (void)state;
    enum { V = 2000 };
    static float logits[V], work[V];
    static uint8_t keep[V];
    random_logits(logits, V, 1.5);
    eng_sampling_params p = params_temp(0.9f, 99);
    p.top_k = 200;
    p.top_p = 0.8f;
    p.min_p = 0.02f;
    int n = candidates(&p, logits, V, keep, work);
    assert_true(n > 1 && n < 200);
    eng_sampler *a = make(&p, V), *b = make(&p, V);
    static uint8_t scratch[V];
    for (int i = 0; i < 500; i++) {
        int32_t ta, tb;
        memcpy(work, logits, sizeof(logits));
        assert_int_equal(eng_sampler_sample(a, work, &ta, NULL), BI_OK);
        assert_int_equal(keep[ta], 1);
        memcpy(work, logits, sizeof(logits));
        assert_int_equal(eng_sampler_candidates(b, work, scratch), BI_OK);
        memcpy(work, logits, sizeof(logits));
        assert_int_equal(eng_sampler_sample(b, work, &tb, NULL), BI_OK);
        assert_int_equal(ta, tb);
    }
    eng_sampler_destroy(a);
    eng_sampler_destroy(b);
}

/* The history a device sampler uploads: distinct ids in order of first
 * appearance, generated counts (0 for prompt-only ids), tokens generated. */
static void test_sampler_history_for_device(void **state)
{
    (void)state;
    eng_sampling_params p = params_temp(0.7f, 42);
    p.top_k = 9;
    eng_sampler *s = make(&p, 100);
    const int32_t prompt[] = {5, 7, 5};
    assert_int_equal(eng_sampler_add_prompt(s, prompt, 3), BI_OK);
    assert_int_equal(eng_sampler_generated(s), 0);
    assert_int_equal(eng_sampler_accept(s, 7), BI_OK);
    assert_int_equal(eng_sampler_accept(s, 9), BI_OK);
    assert_int_equal(eng_sampler_accept(s, 9), BI_OK);
    const int32_t *ids;
    assert_int_equal(eng_sampler_history(s, &ids), 3);
    assert_int_equal(ids[0], 5);
    assert_int_equal(ids[1], 7);
    assert_int_equal(ids[2], 9);
    assert_int_equal(eng_sampler_count(s, 5), 0);
    assert_int_equal(eng_sampler_count(s, 7), 1);
    assert_int_equal(eng_sampler_count(s, 9), 2);
    assert_int_equal(eng_sampler_count(s, -1), 0);
    assert_int_equal(eng_sampler_count(s, 100), 0);
    assert_int_equal(eng_sampler_generated(s), 3);
    assert_int_equal(eng_sampler_params(s)->top_k, 9);
    assert_int_equal(eng_sampler_params(s)->seed, 42);
    eng_sampler_destroy(s);
}

/* ---- penalties ---------------------------------------------------------- */

/* Greedy leaves the penalised logits in the buffer, so they can be read
 * back and compared with hand-computed values. */
static void penalised(eng_sampler *s, const float *in, float *out, int n, int32_t want_tok)
{
    memcpy(out, in, sizeof(float) * (size_t)n);
    int32_t tok;
    assert_int_equal(eng_sampler_sample(s, out, &tok, NULL), BI_OK);
    assert_int_equal(tok, want_tok);
}

static void test_sampler_repetition_penalty(void **state)
{
    (void)state;
    eng_sampling_params p = params_temp(0.0f, 0);
    p.repetition_penalty = 2.0f;
    eng_sampler *s = make(&p, 6);
    const int32_t prompt[4] = {0, 1, 1, 0};
    assert_int_equal(eng_sampler_add_prompt(s, prompt, 4), BI_OK);
    const float in[6] = {2.0f, -2.0f, 1.0f, 0.5f, 3.0f, -1.0f};
    float out[6];
    /* positive divided, negative multiplied, once per distinct id */
    penalised(s, in, out, 6, 4);
    const float want1[6] = {1.0f, -4.0f, 1.0f, 0.5f, 3.0f, -1.0f};
    assert_memory_equal(out, want1, sizeof(out));
    /* token 4 was generated: now it is penalised as well */
    penalised(s, in, out, 6, 4);
    const float want2[6] = {1.0f, -4.0f, 1.0f, 0.5f, 1.5f, -1.0f};
    assert_memory_equal(out, want2, sizeof(out));
    eng_sampler_destroy(s);
}

static void test_sampler_presence_frequency_penalty(void **state)
{
    (void)state;
    eng_sampling_params p = params_temp(0.0f, 0);
    p.presence_penalty = 0.5f;
    p.frequency_penalty = 0.25f;
    eng_sampler *s = make(&p, 5);
    const int32_t prompt[1] = {4}; /* the prompt does not count for these two */
    assert_int_equal(eng_sampler_add_prompt(s, prompt, 1), BI_OK);
    const int32_t gen[4] = {2, 2, 3, 2};
    for (int i = 0; i < 4; i++)
        assert_int_equal(eng_sampler_accept(s, gen[i]), BI_OK);
    const float in[5] = {1.0f, 1.0f, 1.0f, 1.0f, 1.0f};
    float out[5];
    penalised(s, in, out, 5, 0);
    /* 2: 1 - 3 * 0.25 - 0.5; 3: 1 - 0.25 - 0.5 */
    const float want[5] = {1.0f, 1.0f, -0.25f, 0.25f, 1.0f};
    assert_memory_equal(out, want, sizeof(out));
    /* token 0 is now generated once */
    penalised(s, in, out, 5, 1);
    assert_true(out[0] == 0.25f);
    eng_sampler_destroy(s);

    /* negative penalties encourage repeats */
    p.presence_penalty = -1.0f;
    p.frequency_penalty = -0.5f;
    s = make(&p, 3);
    assert_int_equal(eng_sampler_accept(s, 2), BI_OK);
    const float flat[3] = {0.0f, 0.0f, 0.0f};
    penalised(s, flat, out, 3, 2);
    assert_true(out[2] == 1.5f);
    eng_sampler_destroy(s);
}

static void test_sampler_penalties_combined(void **state)
{
    (void)state;
    /* vLLM order: repetition first, then frequency and presence */
    eng_sampling_params p = params_temp(0.0f, 0);
    p.repetition_penalty = 1.5f;
    p.presence_penalty = 0.5f;
    p.frequency_penalty = 1.0f;
    eng_sampler *s = make(&p, 3);
    assert_int_equal(eng_sampler_accept(s, 0), BI_OK);
    assert_int_equal(eng_sampler_accept(s, 0), BI_OK);
    assert_int_equal(eng_sampler_accept(s, 1), BI_OK);
    const float in[3] = {6.0f, -3.0f, 0.0f};
    float out[3];
    penalised(s, in, out, 3, 0);
    const float want[3] = {6.0f / 1.5f - 2.0f - 0.5f, -3.0f * 1.5f - 1.0f - 0.5f, 0.0f};
    assert_memory_equal(out, want, sizeof(out));
    eng_sampler_destroy(s);

    /* a tiny divisor cannot push a logit to +inf: the result stays finite */
    p = params_temp(1.0f, 1);
    p.repetition_penalty = 1e-38f;
    s = make(&p, 3);
    assert_int_equal(eng_sampler_accept(s, 1), BI_OK);
    const float big[3] = {1.0f, 1e10f, 2.0f};
    eng_logprobs lp;
    float buf[3];
    memcpy(buf, big, sizeof(buf));
    int32_t tok;
    assert_int_equal(eng_sampler_sample(s, buf, &tok, &lp), BI_OK);
    assert_int_equal(tok, 1);
    eng_sampler_destroy(s);
}

/* ---- logprobs ----------------------------------------------------------- */

static void test_sampler_logprobs_sum_to_one(void **state)
{
    (void)state;
    enum { V = 15 };
    float logits[V], copy[V];
    random_logits(logits, V, 2.0);
    for (int mode = 0; mode < 2; mode++) {
        eng_sampling_params p = params_temp(mode == 0 ? 0.7f : 0.0f, 8);
        p.n_logprobs = ENG_MAX_LOGPROBS; /* more than V: the whole vocabulary */
        p.top_k = 3;                     /* filters do not change logprobs */
        eng_sampler *s = make(&p, V);
        memcpy(copy, logits, sizeof(copy));
        int32_t tok;
        eng_logprobs lp;
        assert_int_equal(eng_sampler_sample(s, copy, &tok, &lp), BI_OK);
        assert_int_equal(lp.n_top, V);
        double sum = 0.0;
        double t = mode == 0 ? 0.7 : 1.0;
        double z = 0.0;
        for (int i = 0; i < V; i++)
            z += exp(logits[i] / t);
        for (int i = 0; i < V; i++) {
            sum += exp(lp.top[i].logprob);
            if (i > 0)
                assert_true(lp.top[i].logprob <= lp.top[i - 1].logprob);
            int32_t id = lp.top[i].token;
            assert_float_equal(lp.top[i].logprob, logits[id] / t - log(z), 1e-5);
            if (id == tok)
                assert_float_equal(lp.chosen.logprob, lp.top[i].logprob, 0.0);
        }
        assert_float_equal(sum, 1.0, 1e-5);
        assert_int_equal(lp.chosen.token, tok);
        eng_sampler_destroy(s);
    }
}

static void test_sampler_logprobs_top_order(void **state)
{
    (void)state;
    eng_sampling_params p = params_temp(0.0f, 0);
    p.n_logprobs = 4;
    eng_sampler *s = make(&p, 6);
    float logits[6] = {1.0f, 3.0f, 3.0f, 2.0f, 3.0f, -5.0f};
    int32_t tok;
    eng_logprobs lp;
    assert_int_equal(eng_sampler_sample(s, logits, &tok, &lp), BI_OK);
    assert_int_equal(tok, 1);
    assert_int_equal(lp.n_top, 4);
    const int32_t want[4] = {1, 2, 4, 3};
    for (int i = 0; i < 4; i++)
        assert_int_equal(lp.top[i].token, want[i]);
    assert_float_equal(lp.top[3].logprob - lp.top[0].logprob, -1.0, 1e-6);
    eng_sampler_destroy(s);

    /* n_logprobs 0: only the chosen token; -1: lp left alone */
    p.n_logprobs = 0;
    s = make(&p, 6);
    assert_int_equal(eng_sampler_sample(s, logits, &tok, &lp), BI_OK);
    assert_int_equal(lp.n_top, 0);
    assert_int_equal(lp.chosen.token, 1);
    eng_sampler_destroy(s);
    p.n_logprobs = -1;
    s = make(&p, 6);
    memset(&lp, 0x5a, sizeof(lp));
    assert_int_equal(eng_sampler_sample(s, logits, &tok, &lp), BI_OK);
    assert_int_equal(lp.n_top, 0x5a5a5a5a);
    eng_sampler_destroy(s);
}

/* ---- validation --------------------------------------------------------- */

static void expect_invalid(eng_sampling_params p, const char *name)
{
    char err[128] = "";
    assert_int_equal(eng_sampling_params_validate(&p, err, sizeof(err)), BI_INVALID_ARGUMENT);
    assert_non_null(strstr(err, name));
    eng_sampler *s = (eng_sampler *)&p;
    assert_int_equal(eng_sampler_create(&p, 10, &s), BI_INVALID_ARGUMENT);
    assert_null(s);
}

static void test_sampler_invalid_params(void **state)
{
    (void)state;
    eng_sampling_params d;
    eng_sampling_params_default(&d);
    assert_int_equal(eng_sampling_params_validate(&d, NULL, 0), BI_OK);
    eng_sampling_params p;
    const float bad_temp[] = {-0.1f, 100.5f, NAN, INFINITY};
    for (size_t i = 0; i < 4; i++) {
        p = d;
        p.temperature = bad_temp[i];
        expect_invalid(p, "temperature");
    }
    const float bad_top_p[] = {0.0f, -0.5f, 1.01f, NAN};
    for (size_t i = 0; i < 4; i++) {
        p = d;
        p.top_p = bad_top_p[i];
        expect_invalid(p, "top_p");
    }
    const float bad_min_p[] = {-0.01f, 1.0f, NAN};
    for (size_t i = 0; i < 3; i++) {
        p = d;
        p.min_p = bad_min_p[i];
        expect_invalid(p, "min_p");
    }
    const float bad_rep[] = {0.0f, -1.0f, 10.5f, NAN, INFINITY};
    for (size_t i = 0; i < 5; i++) {
        p = d;
        p.repetition_penalty = bad_rep[i];
        expect_invalid(p, "repetition_penalty");
    }
    const float bad_pen[] = {-2.5f, 2.01f, NAN, -INFINITY};
    for (size_t i = 0; i < 4; i++) {
        p = d;
        p.presence_penalty = bad_pen[i];
        expect_invalid(p, "presence_penalty");
        p = d;
        p.frequency_penalty = bad_pen[i];
        expect_invalid(p, "frequency_penalty");
    }
    const int bad_n[] = {-2, 21, 1000};
    for (size_t i = 0; i < 3; i++) {
        p = d;
        p.n_logprobs = bad_n[i];
        expect_invalid(p, "n_logprobs");
    }
    /* the edges of every range are accepted */
    p = d;
    p.temperature = 100.0f;
    p.top_p = 1.0f;
    p.min_p = 0.0f;
    p.repetition_penalty = 10.0f;
    p.presence_penalty = -2.0f;
    p.frequency_penalty = 2.0f;
    p.n_logprobs = 20;
    p.top_k = -5;
    assert_int_equal(eng_sampling_params_validate(&p, NULL, 0), BI_OK);
    char small[4];
    p.n_logprobs = 21;
    assert_int_equal(eng_sampling_params_validate(&p, small, sizeof(small)), BI_INVALID_ARGUMENT);
    assert_int_equal(strlen(small), 3);
}

static void test_sampler_bad_calls(void **state)
{
    (void)state;
    eng_sampling_params p;
    eng_sampling_params_default(&p);
    eng_sampler *s = NULL;
    assert_int_equal(eng_sampler_create(&p, 0, &s), BI_INVALID_ARGUMENT);
    assert_int_equal(eng_sampler_create(&p, -4, &s), BI_INVALID_ARGUMENT);
    assert_int_equal(eng_sampler_create(NULL, 4, &s), BI_INVALID_ARGUMENT);
    assert_int_equal(eng_sampler_create(&p, 4, NULL), BI_INVALID_ARGUMENT);
    s = make(&p, 4);
    const int32_t bad1[3] = {0, 4, 1}, bad2[1] = {-1};
    assert_int_equal(eng_sampler_add_prompt(s, bad1, 3), BI_INVALID_ARGUMENT);
    assert_int_equal(eng_sampler_add_prompt(s, bad2, 1), BI_INVALID_ARGUMENT);
    assert_int_equal(eng_sampler_add_prompt(s, NULL, 2), BI_INVALID_ARGUMENT);
    assert_int_equal(eng_sampler_add_prompt(s, NULL, 0), BI_OK);
    assert_int_equal(eng_sampler_accept(s, 4), BI_INVALID_ARGUMENT);
    assert_int_equal(eng_sampler_accept(s, -1), BI_INVALID_ARGUMENT);
    float logits[4] = {0};
    int32_t tok;
    assert_int_equal(eng_sampler_sample(s, NULL, &tok, NULL), BI_INVALID_ARGUMENT);
    assert_int_equal(eng_sampler_sample(s, logits, NULL, NULL), BI_INVALID_ARGUMENT);
    eng_sampler_destroy(s);
    eng_sampler_destroy(NULL);

    /* allocation failures are a status, and leak nothing (ASan checks) */
    for (long k = 0; k < 4; k++) {
        bi_alloc_fail_after(k);
        bi_status st = eng_sampler_create(&p, 4, &s);
        bi_alloc_fail_after(-1);
        if (st == BI_OK) {
            eng_sampler_destroy(s);
            continue;
        }
        assert_int_equal(st, BI_NOMEM);
        assert_null(s);
    }
}

/* ---- timing ------------------------------------------------------------- */

/* Thread CPU time: the build machine is shared, and wall time would mostly
 * measure the neighbours. */
static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* Microseconds per step over a Qwen-sized vocabulary, including a 100-token
 * history for the penalties and the copy of the logits (which the engine
 * would not need). Printed, not asserted: sanitizer builds are far slower. */
static double time_per_sample(const char *label, const eng_sampling_params *p, const float *logits,
                              float *work)
{
    eng_sampler *s = make(p, QWEN_VOCAB);
    int32_t hist[100];
    for (int i = 0; i < 100; i++)
        hist[i] = (int32_t)(uniform01() * QWEN_VOCAB);
    assert_int_equal(eng_sampler_add_prompt(s, hist, 100), BI_OK);
    /* as many steps as fit in 0.2 s, so sanitizer builds stay quick */
    int steps = 0;
    double t0 = now_s(), t1 = t0;
    for (; steps < 200 && (steps < 3 || t1 - t0 < 0.2); steps++) {
        memcpy(work, logits, sizeof(float) * QWEN_VOCAB);
        int32_t tok;
        eng_logprobs lp;
        assert_int_equal(eng_sampler_sample(s, work, &tok, &lp), BI_OK);
        t1 = now_s();
    }
    double us = (t1 - t0) / steps * 1e6;
    printf("[ sampler  ] vocab %d, %-32s %8.1f us/sample (CPU)\n", QWEN_VOCAB, label, us);
    eng_sampler_destroy(s);
    return us;
}

static void test_sampler_qwen_vocab_timing(void **state)
{
    (void)state;
    float *logits = bi_mallocarray(QWEN_VOCAB, sizeof(float));
    float *work = bi_mallocarray(QWEN_VOCAB, sizeof(float));
    assert_non_null(logits);
    assert_non_null(work);
    random_logits(logits, QWEN_VOCAB, 3.0);

    eng_sampling_params p = params_temp(0.0f, 1);
    time_per_sample("greedy", &p, logits, work);
    p = params_temp(0.8f, 1);
    time_per_sample("temperature 0.8", &p, logits, work);
    p.top_p = 0.9f;
    time_per_sample("temperature 0.8, top_p 0.9", &p, logits, work);
    p.top_k = 50;
    time_per_sample("top_k 50, top_p 0.9", &p, logits, work);
    p = params_temp(0.8f, 1);
    p.min_p = 0.05f;
    p.repetition_penalty = 1.1f;
    p.presence_penalty = 0.5f;
    time_per_sample("min_p 0.05 + penalties", &p, logits, work);
    p = params_temp(0.8f, 1);
    p.top_p = 0.9f;
    p.n_logprobs = 20;
    time_per_sample("top_p 0.9 + 20 logprobs", &p, logits, work);
    bi_free(logits);
    bi_free(work);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sampler_greedy_argmax),
        cmocka_unit_test(test_sampler_greedy_ties_and_nonfinite),
        cmocka_unit_test(test_sampler_seed_reproducible),
        cmocka_unit_test(test_sampler_distribution_matches),
        cmocka_unit_test(test_sampler_top_k_renormalises),
        cmocka_unit_test(test_sampler_top_k1_is_greedy),
        cmocka_unit_test(test_sampler_top_p),
        cmocka_unit_test(test_sampler_top_p_large_vocab),
        cmocka_unit_test(test_sampler_min_p),
        cmocka_unit_test(test_sampler_candidates_sets),
        cmocka_unit_test(test_sampler_candidates_hold_draws),
        cmocka_unit_test(test_sampler_history_for_device),
        cmocka_unit_test(test_sampler_repetition_penalty),
        cmocka_unit_test(test_sampler_presence_frequency_penalty),
        cmocka_unit_test(test_sampler_penalties_combined),
        cmocka_unit_test(test_sampler_logprobs_sum_to_one),
        cmocka_unit_test(test_sampler_logprobs_top_order),
        cmocka_unit_test(test_sampler_invalid_params),
        cmocka_unit_test(test_sampler_bad_calls),
        cmocka_unit_test(test_sampler_qwen_vocab_timing),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
