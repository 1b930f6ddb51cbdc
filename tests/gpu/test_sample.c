/*
 * test_sample.c - device sampling (kernels/cuda/sample.cu) against the CPU
 * sampler (engine/sampler), on fresh random logits at vocab 32000 and 152064:
 *   - greedy ids equal the CPU's on every row (ties to the lowest id,
 *     non-finite logits as -inf, an all non-finite row reported as an error);
 *   - the candidate set after top-k / top-p / min-p equals the CPU's
 *     (eng_sampler_candidates) on every row, with ties and penalties;
 *   - the frequencies of many draws match the CPU-computed filtered
 *     distribution (chi-square at p = 1e-4), no draw leaves the set, and the
 *     same counts reject a wrong distribution (uniform over the set);
 *   - same seed and step give the same ids, other seeds other ids;
 *   - penalties change greedy ids exactly as the CPU's do;
 *   - logprobs (chosen and top n) within 1e-3 of the CPU's;
 * and through the engine API (dummy smollm2-135m on CUDA): greedy generation
 * with device sampling gives the tokens and logprobs of host sampling, with
 * and without penalties, four requests at once; seeded sampling repeats and
 * another seed changes it (one request at a time). Prints the kernel's time per step for 64 rows.
 *   test_sample [MODELS_DIR]   (accepted as run.sh passes it; unused)
 * Exit 0 pass, 1 fail, 77 no GPU.
 */
#include "gpu_gen.h"
#include "gpu_util.h"

#include "cuda/krn_sample.h"
#include "sampler/sampler.h"

#define LP_TOL    1e-3
#define HIST_MAX  256
#define DRAW_ROWS 2048 /* rows per launch in the frequency test */
#define DRAW_RUNS 8

/* ---- inputs ---- */

static double normal(void)
{
    double u = ((double)rand() + 1.0) / ((double)RAND_MAX + 2.0);
    double v = (double)rand() / ((double)RAND_MAX + 1.0);
    return sqrt(-2.0 * log(u)) * cos(2.0 * M_PI * v);
}

enum { ROW_PLAIN, ROW_TIED_MAX, ROW_NONFINITE, ROW_QUANTISED, ROW_KINDS };

/* One row of V logits: normal with spread sd, then by kind: several ids share
 * the maximum; NaN / +inf / -inf sprinkled in; values on a 1/8 grid (ties
 * everywhere, also where a filter cuts). */
static void make_row(float *x, int V, double sd, int kind)
{
    for (int i = 0; i < V; i++)
        x[i] = (float)(sd * normal());
    if (kind == ROW_TIED_MAX) {
        float mx = x[argmax(x, V)] + 0.5f;
        for (int k = 0; k < 4; k++)
            x[rand() % V] = mx;
    } else if (kind == ROW_NONFINITE) {
        for (int k = 0; k < 30; k++) {
            x[rand() % V] = NAN;
            x[rand() % V] = INFINITY;
            x[rand() % V] = -INFINITY;
        }
    } else if (kind == ROW_QUANTISED) {
        for (int i = 0; i < V; i++)
            x[i] = roundf(x[i] * 8.0f) / 8.0f;
    }
}

/* A request's history: prompt ids and generated ids (repeats count), drawn
 * from the row's best tokens so that penalties matter. */
typedef struct history {
    int32_t prompt[HIST_MAX], gen[HIST_MAX];
    int n_prompt, n_gen;
} history;

static void make_history(history *h, const float *x, int V)
{
    static int top[16];
    int n = 0; /* the 16 best finite ids, best first */
    for (int i = 0; i < V; i++) {
        if (!isfinite(x[i]) || (n == 16 && !(x[i] > x[top[15]])))
            continue;
        int j = n < 16 ? n++ : 15;
        while (j > 0 && x[i] > x[top[j - 1]]) {
            top[j] = top[j - 1];
            j--;
        }
        top[j] = i;
    }
    h->n_prompt = 0;
    h->n_gen = 0;
    for (int k = 0; k < 40; k++)
        h->prompt[h->n_prompt++] = rand() % V;
    for (int k = 0; k < n && k < 6; k += 2)
        h->prompt[h->n_prompt++] = top[k];
    for (int k = 1; k < n && k < 8; k += 2)
        for (int c = 0; c <= k % 3; c++)
            h->gen[h->n_gen++] = top[k];
    for (int k = 0; k < 6; k++)
        h->gen[h->n_gen++] = rand() % V;
}

static eng_sampler *make_sampler(const eng_sampling_params *p, int V, const history *h)
{
    eng_sampler *s = NULL;
    if (eng_sampler_create(p, V, &s) != BI_OK) {
        printf("FAIL cannot create a CPU sampler\n");
        exit(1);
    }
    if (h) {
        eng_sampler_add_prompt(s, h->prompt, (size_t)h->n_prompt);
        for (int i = 0; i < h->n_gen; i++)
            eng_sampler_accept(s, h->gen[i]);
    }
    return s;
}

/* ---- one device launch over rows ---- */

typedef struct dev_batch {
    int rows, V;
    krn_sample_row *prm; /* host [rows] */
    int32_t *ids;        /* host history, all rows */
    uint32_t *counts;
    size_t n_hist, cap_hist;
} dev_batch;

static void batch_init(dev_batch *b, int rows, int V)
{
    memset(b, 0, sizeof *b);
    b->rows = rows;
    b->V = V;
    b->prm = calloc((size_t)rows, sizeof *b->prm);
    b->cap_hist = (size_t)rows * 2 * HIST_MAX + 1;
    b->ids = malloc(b->cap_hist * sizeof *b->ids);
    b->counts = malloc(b->cap_hist * sizeof *b->counts);
}

static void batch_free(dev_batch *b)
{
    free(b->prm);
    free(b->ids);
    free(b->counts);
}

/* Row r takes the parameters and the history of sampler s (step: its count
 * of generated tokens plus extra). */
static void batch_set(dev_batch *b, int r, const eng_sampler *s, uint64_t extra_step)
{
    const eng_sampling_params *p = eng_sampler_params(s);
    krn_sample_row *k = &b->prm[r];
    *k = (krn_sample_row){p->temperature,
                          p->top_p,
                          p->min_p,
                          p->repetition_penalty,
                          p->presence_penalty,
                          p->frequency_penalty,
                          p->top_k,
                          p->n_logprobs,
                          (int32_t)b->n_hist,
                          0,
                          p->seed,
                          eng_sampler_generated(s) + extra_step};
    const int32_t *seen;
    size_t n = eng_sampler_history(s, &seen);
    for (size_t i = 0; i < n && b->n_hist < b->cap_hist; i++) {
        b->ids[b->n_hist] = seen[i];
        b->counts[b->n_hist++] = eng_sampler_count(s, seen[i]);
        k->n_hist++;
    }
}

/* Runs krn_sample over logits [rows][V] (host), outputs poisoned first.
 * keep may be NULL. */
static void batch_run(const dev_batch *b, const float *logits, krn_sample_out *out, uint8_t *keep)
{
    size_t n = (size_t)b->rows * b->V;
    float *d_x = dev_upload(logits, n * sizeof(float));
    uint32_t *d_keys = dev_poisoned(n * sizeof(uint32_t));
    krn_sample_row *d_prm = dev_upload(b->prm, (size_t)b->rows * sizeof *b->prm);
    int32_t *d_ids = dev_upload(b->ids, (b->n_hist + 1) * sizeof(int32_t));
    uint32_t *d_counts = dev_upload(b->counts, (b->n_hist + 1) * sizeof(uint32_t));
    krn_sample_out *d_out = dev_poisoned((size_t)b->rows * sizeof *d_out);
    uint8_t *d_keep = keep ? dev_poisoned(n) : NULL;
    bi_status st = krn_sample(d_x, d_keys, b->rows, b->V, d_prm, d_ids, d_counts, d_out, d_keep, 0);
    CUDA_OR_DIE(cudaDeviceSynchronize());
    if (st != BI_OK) {
        printf("FAIL krn_sample: %s\n", bi_strerror(st));
        exit(1);
    }
    CUDA_OR_DIE(cudaMemcpy(out, d_out, (size_t)b->rows * sizeof *out, cudaMemcpyDeviceToHost));
    if (keep)
        CUDA_OR_DIE(cudaMemcpy(keep, d_keep, n, cudaMemcpyDeviceToHost));
    cudaFree(d_x);
    cudaFree(d_keys);
    cudaFree(d_prm);
    cudaFree(d_ids);
    cudaFree(d_counts);
    cudaFree(d_out);
    cudaFree(d_keep);
}

/* Logprobs of the device against the CPU's (chosen: the same token). */
static bool same_logprobs(const krn_sample_out *o, const eng_logprobs *lp, int want_top)
{
    if (o->n_top != want_top || lp->n_top != want_top)
        return false;
    if (!(fabs(o->chosen_logprob - lp->chosen.logprob) <= LP_TOL))
        return false;
    for (int j = 0; j < want_top; j++)
        if (o->top_id[j] != lp->top[j].token ||
            !(fabs(o->top_logprob[j] - lp->top[j].logprob) <= LP_TOL))
            return false;
    return true;
}

/* ---- greedy ---- */

static void check_greedy(int V)
{
    enum { R = 64 };
    float *x = malloc(sizeof(float) * R * V), *work = malloc(sizeof(float) * V);
    krn_sample_out out[R];
    dev_batch b;
    batch_init(&b, R, V);
    eng_sampler *cpu[R];
    for (int r = 0; r < R; r++) {
        float *row = x + (size_t)r * V;
        make_row(row, V, 0.5 + (r % 8), r % ROW_KINDS);
        if (r == R - 1)
            for (int i = 0; i < V; i++)
                row[i] = i % 3 == 0 ? NAN : i % 3 == 1 ? INFINITY : -INFINITY;
        eng_sampling_params p;
        eng_sampling_params_default(&p);
        p.temperature = 0.0f;
        p.n_logprobs = r % 3 == 0 ? 20 : r % 3 == 1 ? 3 : -1;
        cpu[r] = make_sampler(&p, V, NULL);
        batch_set(&b, r, cpu[r], 0);
    }
    batch_run(&b, x, out, NULL);
    int bad_ids = 0, bad_lp = 0, ties = 0;
    for (int r = 0; r < R; r++) {
        float *row = x + (size_t)r * V;
        memcpy(work, row, sizeof(float) * V);
        int32_t tok = -1;
        eng_logprobs lp;
        bi_status st = eng_sampler_sample(cpu[r], work, &tok, &lp);
        if (r == R - 1) {
            EXPECT(st == BI_INTERNAL && out[r].status == KRN_SAMPLE_NO_FINITE && out[r].token == -1,
                   "V %d: an all non-finite row: CPU %s, device status %d token %d", V,
                   bi_strerror(st), out[r].status, out[r].token);
            continue;
        }
        int n_max = 0;
        for (int i = 0; i < V; i++)
            n_max += work[i] == work[tok];
        ties += n_max > 1;
        if (st != BI_OK || out[r].status != KRN_SAMPLE_OK || out[r].token != tok) {
            if (bad_ids++ < 3)
                printf("  V %d row %d: device %d, CPU %d (%d ids share the max)\n", V, r,
                       out[r].token, tok, n_max);
            continue;
        }
        int n = cpu[r] ? eng_sampler_params(cpu[r])->n_logprobs : -1;
        if (n >= 0 && !same_logprobs(&out[r], &lp, n)) {
            if (bad_lp++ < 3)
                printf("  V %d row %d: logprobs differ (chosen %.6f vs %.6f, top0 %d/%d)\n", V, r,
                       out[r].chosen_logprob, lp.chosen.logprob, out[r].top_id[0], lp.top[0].token);
        }
    }
    printf("  greedy V %d: %d rows (%d with tied maxima), %d id mismatches, %d logprob "
           "mismatches\n",
           V, R, ties, bad_ids, bad_lp);
    EXPECT(bad_ids == 0, "greedy ids differ from the CPU on %d rows", bad_ids);
    EXPECT(bad_lp == 0, "greedy logprobs differ from the CPU on %d rows", bad_lp);
    EXPECT(ties >= R / 8, "too few rows with tied maxima (%d)", ties);
    for (int r = 0; r < R; r++)
        eng_sampler_destroy(cpu[r]);
    batch_free(&b);
    free(x);
    free(work);
}

/* ---- candidate sets (and sampled logprobs) ---- */

typedef struct cfg {
    float t;
    int top_k;
    float top_p, min_p, rep, pres, freq;
} cfg;

static const cfg configs[] = {
    {1.0f, 0, 1.0f, 0.0f, 1.0f, 0.0f, 0.0f},      {0.8f, 50, 1.0f, 0.0f, 1.0f, 0.0f, 0.0f},
    {1.0f, 1, 1.0f, 0.0f, 1.0f, 0.0f, 0.0f},      {1.2f, 1000, 1.0f, 0.0f, 1.0f, 0.0f, 0.0f},
    {1.0f, 0, 0.9f, 0.0f, 1.0f, 0.0f, 0.0f},      {0.6f, 0, 0.5f, 0.0f, 1.0f, 0.0f, 0.0f},
    {1.5f, 0, 0.99f, 0.0f, 1.0f, 0.0f, 0.0f},     {1.0f, 0, 1.0f, 0.05f, 1.0f, 0.0f, 0.0f},
    {0.7f, 0, 1.0f, 0.2f, 1.0f, 0.0f, 0.0f},      {0.9f, 200, 0.8f, 0.01f, 1.0f, 0.0f, 0.0f},
    {1.0f, 40, 0.95f, 0.0f, 1.3f, 0.5f, 0.2f},    {1.1f, 0, 0.7f, 0.02f, 1.2f, 0.0f, 0.4f},
    {0.5f, 5000, 0.97f, 0.0f, 1.0f, -0.5f, 0.0f}, {2.0f, 0, 0.3f, 0.0f, 1.0f, 0.0f, 0.0f},
};
#define N_CONFIGS ((int)(sizeof configs / sizeof configs[0]))

static eng_sampling_params params_of(const cfg *c, uint64_t seed, int n_logprobs)
{
    eng_sampling_params p;
    eng_sampling_params_default(&p);
    p.temperature = c->t;
    p.top_k = c->top_k;
    p.top_p = c->top_p;
    p.min_p = c->min_p;
    p.repetition_penalty = c->rep;
    p.presence_penalty = c->pres;
    p.frequency_penalty = c->freq;
    p.seed = seed;
    p.n_logprobs = n_logprobs;
    return p;
}

/* log(sum exp(x)) over V processed (scaled) logits, in double. */
static double log_sum_exp(const float *x, int V)
{
    double mx = -INFINITY, z = 0.0;
    for (int i = 0; i < V; i++)
        mx = x[i] > mx ? x[i] : mx;
    for (int i = 0; i < V; i++)
        z += exp((double)x[i] - mx);
    return mx + log(z);
}

static void check_sets(int V)
{
    enum { R = 112 };
    float *x = malloc(sizeof(float) * R * V), *work = malloc(sizeof(float) * V);
    uint8_t *keep = malloc((size_t)R * V), *cpu_keep = malloc((size_t)V);
    krn_sample_out out[R];
    dev_batch b;
    batch_init(&b, R, V);
    eng_sampler *cpu[R];
    static history h;
    for (int r = 0; r < R; r++) {
        float *row = x + (size_t)r * V;
        make_row(row, V, 0.7 + 0.5 * (r % 7), (r / N_CONFIGS) % ROW_KINDS);
        make_history(&h, row, V);
        eng_sampling_params p = params_of(&configs[r % N_CONFIGS], 1000 + r, r % 2 ? 5 : 0);
        cpu[r] = make_sampler(&p, V, &h);
        batch_set(&b, r, cpu[r], 0);
    }
    batch_run(&b, x, out, keep);
    int bad_sets = 0, bad_lp = 0, outside = 0;
    long kept_total = 0;
    for (int r = 0; r < R; r++) {
        float *row = x + (size_t)r * V;
        memcpy(work, row, sizeof(float) * V);
        EXPECT(eng_sampler_candidates(cpu[r], work, cpu_keep) == BI_OK, "CPU candidates row %d", r);
        int n_cpu = 0, n_dev = 0, diff = 0;
        for (int i = 0; i < V; i++) {
            n_cpu += cpu_keep[i];
            n_dev += keep[(size_t)r * V + i] == 1;
            diff += cpu_keep[i] != keep[(size_t)r * V + i];
        }
        kept_total += n_cpu;
        if (diff) {
            const cfg *c = &configs[r % N_CONFIGS];
            if (bad_sets++ < 4)
                printf("  V %d row %d (T %.2f k %d p %.2f min_p %.2f): %d kept on the device, %d "
                       "on the CPU, %d differ\n",
                       V, r, c->t, c->top_k, c->top_p, c->min_p, n_dev, n_cpu, diff);
        }
        int tok = out[r].token;
        if (out[r].status != KRN_SAMPLE_OK || tok < 0 || tok >= V || !cpu_keep[tok]) {
            outside++;
            continue;
        }
        /* logprobs: chosen against the CPU's formula on its processed logits
         * (work now holds x = (l - max) / T), the top n against the CPU's list */
        double want = (double)work[tok] - log_sum_exp(work, V);
        memcpy(work, row, sizeof(float) * V);
        int32_t cpu_tok;
        eng_logprobs lp;
        EXPECT(eng_sampler_sample(cpu[r], work, &cpu_tok, &lp) == BI_OK, "CPU sample row %d", r);
        lp.chosen.logprob = (float)want;
        if (!same_logprobs(&out[r], &lp, eng_sampler_params(cpu[r])->n_logprobs)) {
            if (bad_lp++ < 3)
                printf("  V %d row %d: logprobs differ (chosen %.6f vs %.6f; n_top %d vs %d)\n", V,
                       r, out[r].chosen_logprob, want, out[r].n_top, lp.n_top);
        }
    }
    printf("  top-k/top-p/min-p V %d: %d rows (%d configurations, %.0f candidates per row on "
           "average), %d sets differ, %d draws outside, %d logprob mismatches\n",
           V, R, N_CONFIGS, (double)kept_total / R, bad_sets, outside, bad_lp);
    EXPECT(bad_sets == 0, "candidate sets differ from the CPU on %d rows", bad_sets);
    EXPECT(outside == 0, "%d draws outside the CPU's candidate set", outside);
    EXPECT(bad_lp == 0, "sampled logprobs differ from the CPU on %d rows", bad_lp);
    for (int r = 0; r < R; r++)
        eng_sampler_destroy(cpu[r]);
    batch_free(&b);
    free(x);
    free(work);
    free(keep);
    free(cpu_keep);
}

/* ---- frequencies of many draws ---- */

/* Upper 1e-4 quantile of chi-square with df degrees of freedom
 * (Wilson-Hilferty). */
static double chi2_crit(int df)
{
    double k = df, zq = 3.719;
    double a = 1.0 - 2.0 / (9.0 * k) + zq * sqrt(2.0 / (9.0 * k));
    return k * a * a * a;
}

static const float *prob_of;
static int by_prob_desc(const void *a, const void *b)
{
    double x = prob_of[*(const int *)a], y = prob_of[*(const int *)b];
    return (x < y) - (x > y);
}

/* Chi-square of counts against want (over the candidates idx[0, n), sorted
 * by want descending), bins merged until each expects >= 10 draws. */
static double chi2_of(const int *counts, const float *want, const int *idx, int n, long draws,
                      int *df)
{
    double chi2 = 0.0, e = 0.0, o = 0.0;
    int bins = 0;
    for (int j = 0; j < n; j++) {
        e += want[idx[j]] * (double)draws;
        o += counts[idx[j]];
        if (e >= 10.0 || j == n - 1) {
            chi2 += (o - e) * (o - e) / (e > 0 ? e : 1e-9);
            bins++;
            e = o = 0.0;
        }
    }
    *df = bins > 1 ? bins - 1 : 1;
    return chi2;
}

static void check_frequencies(int V)
{
    static const cfg dist[] = {
        {0.8f, 50, 1.0f, 0.0f, 1.0f, 0.0f, 0.0f}, {1.0f, 0, 0.9f, 0.0f, 1.0f, 0.0f, 0.0f},
        {1.2f, 0, 1.0f, 0.05f, 1.0f, 0.0f, 0.0f}, {0.7f, 100, 0.8f, 0.02f, 1.0f, 0.0f, 0.0f},
        {1.0f, 0, 1.0f, 0.0f, 1.0f, 0.0f, 0.0f},
    };
    const double sds[] = {1.5, 3.0, 2.0, 1.5, 4.0};
    float *row = malloc(sizeof(float) * V), *work = malloc(sizeof(float) * V);
    float *want = malloc(sizeof(float) * V);
    uint8_t *keep = malloc((size_t)V);
    int *counts = malloc(sizeof(int) * V), *idx = malloc(sizeof(int) * V);
    size_t n = (size_t)DRAW_ROWS * V;
    float *d_x;
    uint32_t *d_keys = dev_poisoned(n * sizeof(uint32_t));
    krn_sample_out *d_out = dev_poisoned(DRAW_ROWS * sizeof *d_out);
    krn_sample_row *d_prm;
    int32_t *d_ids;
    CUDA_OR_DIE(cudaMalloc((void **)&d_x, n * sizeof(float)));
    CUDA_OR_DIE(cudaMalloc((void **)&d_prm, DRAW_ROWS * sizeof *d_prm));
    CUDA_OR_DIE(cudaMalloc((void **)&d_ids, sizeof(int32_t)));
    static krn_sample_out out[DRAW_ROWS];
    static krn_sample_row prm[DRAW_ROWS];
    for (size_t c = 0; c < sizeof dist / sizeof dist[0]; c++) {
        for (int i = 0; i < V; i++)
            row[i] = (float)(sds[c] * normal());
        eng_sampling_params p = params_of(&dist[c], 77 + c, -1);
        eng_sampler *s = make_sampler(&p, V, NULL);
        memcpy(work, row, sizeof(float) * V);
        EXPECT(eng_sampler_candidates(s, work, keep) == BI_OK, "CPU candidates");
        int m = 0;
        double z = 0.0, mx = -INFINITY;
        for (int i = 0; i < V; i++)
            if (keep[i])
                mx = work[i] > mx ? work[i] : mx;
        for (int i = 0; i < V; i++)
            if (keep[i])
                z += exp((double)work[i] - mx);
        for (int i = 0; i < V; i++) {
            want[i] = keep[i] ? (float)(exp((double)work[i] - mx) / z) : 0.0f;
            counts[i] = 0;
            if (keep[i])
                idx[m++] = i;
        }
        prob_of = want;
        qsort(idx, (size_t)m, sizeof(int), by_prob_desc);
        /* the row, DRAW_ROWS times, each at its own step of one seed */
        CUDA_OR_DIE(cudaMemcpy(d_x, row, sizeof(float) * V, cudaMemcpyHostToDevice));
        for (int r = 1; r < DRAW_ROWS; r++)
            CUDA_OR_DIE(cudaMemcpyAsync(d_x + (size_t)r * V, d_x, sizeof(float) * V,
                                        cudaMemcpyDeviceToDevice, 0));
        long draws = 0, outside = 0;
        for (int run = 0; run < DRAW_RUNS; run++) {
            for (int r = 0; r < DRAW_ROWS; r++) {
                prm[r] = (krn_sample_row){p.temperature,
                                          p.top_p,
                                          p.min_p,
                                          1.0f,
                                          0.0f,
                                          0.0f,
                                          p.top_k,
                                          -1,
                                          0,
                                          0,
                                          p.seed,
                                          (uint64_t)run * DRAW_ROWS + (uint64_t)r};
            }
            CUDA_OR_DIE(cudaMemcpy(d_prm, prm, sizeof prm, cudaMemcpyHostToDevice));
            bi_status st = krn_sample(d_x, d_keys, DRAW_ROWS, V, d_prm, d_ids, (uint32_t *)d_ids,
                                      d_out, NULL, 0);
            CUDA_OR_DIE(cudaDeviceSynchronize());
            EXPECT(st == BI_OK, "krn_sample: %s", bi_strerror(st));
            CUDA_OR_DIE(cudaMemcpy(out, d_out, sizeof out, cudaMemcpyDeviceToHost));
            for (int r = 0; r < DRAW_ROWS; r++) {
                int t = out[r].token;
                if (t < 0 || t >= V || !keep[t]) {
                    outside++;
                    continue;
                }
                counts[t]++;
                draws++;
            }
        }
        int df, df_u;
        double chi2 = chi2_of(counts, want, idx, m, draws, &df);
        /* the same counts against uniform over the set: a sampler that
         * ignored the weights would pass that one instead */
        for (int j = 0; j < m; j++)
            want[idx[j]] = 1.0f / (float)m;
        double chi2_u = chi2_of(counts, want, idx, m, draws, &df_u);
        printf("  draws V %d (T %.1f k %d p %.2f min_p %.2f): %d candidates, %ld draws, chi2 "
               "%.1f (df %d, crit %.1f); vs uniform %.0f (crit %.1f)\n",
               V, dist[c].t, dist[c].top_k, dist[c].top_p, dist[c].min_p, m, draws, chi2, df,
               chi2_crit(df), chi2_u, chi2_crit(df_u));
        EXPECT(outside == 0, "%ld draws outside the candidate set", outside);
        EXPECT(m == 1 || chi2 < chi2_crit(df), "frequencies do not match: chi2 %.1f, df %d", chi2,
               df);
        EXPECT(m == 1 || chi2_u > chi2_crit(df_u),
               "the test cannot tell the distribution from uniform (chi2 %.1f)", chi2_u);
        eng_sampler_destroy(s);
    }
    cudaFree(d_x);
    cudaFree(d_keys);
    cudaFree(d_out);
    cudaFree(d_prm);
    cudaFree(d_ids);
    free(row);
    free(work);
    free(want);
    free(keep);
    free(counts);
    free(idx);
}

/* ---- seeds ---- */

static void check_seeds(int V)
{
    enum { R = 64 };
    float *x = malloc(sizeof(float) * R * V);
    krn_sample_out a[R], b2[R], c[R], d[R];
    dev_batch b;
    batch_init(&b, R, V);
    eng_sampler *s[R];
    for (int r = 0; r < R; r++) {
        make_row(x + (size_t)r * V, V, 1.0, ROW_PLAIN);
        eng_sampling_params p = params_of(&configs[0], 5000 + r, -1);
        s[r] = make_sampler(&p, V, NULL);
        batch_set(&b, r, s[r], 0);
    }
    batch_run(&b, x, a, NULL);
    batch_run(&b, x, b2, NULL);
    for (int r = 0; r < R; r++)
        b.prm[r].seed += 1;
    batch_run(&b, x, c, NULL);
    for (int r = 0; r < R; r++) {
        b.prm[r].seed -= 1;
        b.prm[r].step += 1;
    }
    batch_run(&b, x, d, NULL);
    int same = 0, other_seed = 0, other_step = 0;
    for (int r = 0; r < R; r++) {
        same += a[r].token == b2[r].token;
        other_seed += a[r].token != c[r].token;
        other_step += a[r].token != d[r].token;
    }
    printf("  seeds V %d: %d/%d rows repeat with the same seed; %d differ with another seed, %d "
           "at another step\n",
           V, same, R, other_seed, other_step);
    EXPECT(same == R, "the same seed gave other ids on %d rows", R - same);
    EXPECT(other_seed >= R * 9 / 10, "another seed changed only %d of %d rows", other_seed, R);
    EXPECT(other_step >= R * 9 / 10, "another step changed only %d of %d rows", other_step, R);
    for (int r = 0; r < R; r++)
        eng_sampler_destroy(s[r]);
    batch_free(&b);
    free(x);
}

/* ---- penalties, greedy ---- */

static void check_penalties(int V)
{
    static const cfg pen[] = {
        {0.0f, 0, 1.0f, 0.0f, 1.5f, 0.0f, 0.0f},  {0.0f, 0, 1.0f, 0.0f, 1.0f, 1.5f, 0.0f},
        {0.0f, 0, 1.0f, 0.0f, 1.0f, 0.0f, 0.8f},  {0.0f, 0, 1.0f, 0.0f, 1.2f, 0.5f, 0.3f},
        {0.0f, 0, 1.0f, 0.0f, 0.8f, 0.0f, 0.0f},  {0.0f, 0, 1.0f, 0.0f, 1.0f, -1.0f, 0.0f},
        {0.0f, 0, 1.0f, 0.0f, 3.0f, 2.0f, -0.5f},
    };
    enum { R = 70 };
    const int n_pen = (int)(sizeof pen / sizeof pen[0]);
    float *x = malloc(sizeof(float) * R * V), *work = malloc(sizeof(float) * V);
    krn_sample_out out[R];
    dev_batch b;
    batch_init(&b, R, V);
    eng_sampler *s[R];
    static history h;
    for (int r = 0; r < R; r++) {
        make_row(x + (size_t)r * V, V, 2.0, r % 5 == 4 ? ROW_QUANTISED : ROW_PLAIN);
        make_history(&h, x + (size_t)r * V, V);
        eng_sampling_params p = params_of(&pen[r % n_pen], 1, r % 2 ? 4 : -1);
        s[r] = make_sampler(&p, V, &h);
        batch_set(&b, r, s[r], 0);
    }
    batch_run(&b, x, out, NULL);
    int bad = 0, bad_lp = 0, changed = 0;
    for (int r = 0; r < R; r++) {
        const float *row = x + (size_t)r * V;
        memcpy(work, row, sizeof(float) * V);
        int32_t tok;
        eng_logprobs lp;
        EXPECT(eng_sampler_sample(s[r], work, &tok, &lp) == BI_OK, "CPU sample row %d", r);
        changed += tok != argmax(row, V);
        if (out[r].token != tok) {
            if (bad++ < 3)
                printf("  V %d row %d: penalised greedy %d on the device, %d on the CPU\n", V, r,
                       out[r].token, tok);
        } else if (eng_sampler_params(s[r])->n_logprobs >= 0 &&
                   !same_logprobs(&out[r], &lp, eng_sampler_params(s[r])->n_logprobs)) {
            bad_lp++;
        }
    }
    printf("  penalties V %d: %d rows, the penalties moved the argmax on %d; %d id mismatches, %d "
           "logprob mismatches\n",
           V, R, changed, bad, bad_lp);
    EXPECT(bad == 0, "penalised greedy ids differ from the CPU on %d rows", bad);
    EXPECT(bad_lp == 0, "penalised logprobs differ from the CPU on %d rows", bad_lp);
    EXPECT(changed >= R / 4, "penalties moved the argmax on only %d rows", changed);
    for (int r = 0; r < R; r++)
        eng_sampler_destroy(s[r]);
    batch_free(&b);
    free(x);
    free(work);
}

/* ---- time per step (information) ---- */

static void time_kernel(int V)
{
    enum { R = 64, REPS = 20 };
    static const cfg cases[] = {
        {0.0f, 0, 1.0f, 0.0f, 1.0f, 0.0f, 0.0f},
        {0.8f, 0, 1.0f, 0.0f, 1.0f, 0.0f, 0.0f},
        {0.8f, 50, 0.9f, 0.0f, 1.0f, 0.0f, 0.0f},
        {0.8f, 0, 0.9f, 0.05f, 1.0f, 0.0f, 0.0f},
    };
    static const char *names[] = {"greedy", "T 0.8", "top_k 50 + top_p 0.9", "top_p 0.9 + min_p"};
    size_t n = (size_t)R * V;
    float *x = malloc(sizeof(float) * n);
    for (size_t i = 0; i < n; i++)
        x[i] = (float)(2.0 * normal());
    float *d_x = dev_upload(x, n * sizeof(float));
    uint32_t *d_keys = dev_poisoned(n * sizeof(uint32_t));
    krn_sample_out *d_out = dev_poisoned(R * sizeof *d_out);
    krn_sample_row prm[R];
    krn_sample_row *d_prm;
    CUDA_OR_DIE(cudaMalloc((void **)&d_prm, sizeof prm));
    cudaEvent_t e0, e1;
    cudaEventCreate(&e0);
    cudaEventCreate(&e1);
    printf("  time per launch, %d rows x %d:", R, V);
    for (int c = 0; c < 4; c++) {
        for (int r = 0; r < R; r++)
            prm[r] = (krn_sample_row){cases[c].t,
                                      cases[c].top_p,
                                      cases[c].min_p,
                                      1.0f,
                                      0.0f,
                                      0.0f,
                                      cases[c].top_k,
                                      -1,
                                      0,
                                      0,
                                      3,
                                      (uint64_t)r};
        CUDA_OR_DIE(cudaMemcpy(d_prm, prm, sizeof prm, cudaMemcpyHostToDevice));
        double t[REPS];
        for (int k = 0; k < REPS + 3; k++) {
            cudaEventRecord(e0, 0);
            krn_sample(d_x, d_keys, R, V, d_prm, NULL, NULL, d_out, NULL, 0);
            cudaEventRecord(e1, 0);
            CUDA_OR_DIE(cudaEventSynchronize(e1));
            float ms;
            cudaEventElapsedTime(&ms, e0, e1);
            if (k >= 3)
                t[k - 3] = ms * 1e3;
        }
        for (int i = 1; i < REPS; i++) /* median */
            for (int j = i; j > 0 && t[j] < t[j - 1]; j--) {
                double y = t[j];
                t[j] = t[j - 1];
                t[j - 1] = y;
            }
        printf(" %s %.0f us%s", names[c], t[REPS / 2], c < 3 ? ";" : "\n");
    }
    cudaFree(d_x);
    cudaFree(d_keys);
    cudaFree(d_out);
    cudaFree(d_prm);
    free(x);
}

/* ---- through the engine ---- */

static eng_engine *open_engine(bool host_sampling)
{
    eng_config cfg = {0};
    cfg.dummy_preset = "smollm2-135m";
    cfg.dummy_seed = 3;
    cfg.backend = "cuda";
    cfg.kv_tokens = 8192;
    cfg.host_sampling = host_sampling;
    char err[512];
    eng_engine *e = NULL;
    if (eng_engine_create(&cfg, &e, err, sizeof err) != BI_OK) {
        printf("FAIL engine: %s\n", err);
        exit(1);
    }
    return e;
}

/* Four requests at once with the given parameters (one per request). */
static void generate4(eng_engine *e, const eng_part *parts, const eng_sampling_params *sp,
                      gpu_gen *g)
{
    bi_status st[4];
    for (int k = 0; k < 4; k++)
        st[k] = gpu_gen_start(e, &parts[k], 1, ENG_REUSE_EXACT, 48, &sp[k], &g[k]);
    for (int k = 0; k < 4; k++) {
        if (st[k] == BI_OK)
            st[k] = gpu_gen_wait(&g[k]);
        EXPECT(st[k] == BI_OK && g[k].n_tokens == 48, "request %d: %s (%s), %d tokens", k,
               bi_strerror(st[k]), g[k].message, g[k].n_tokens);
    }
}

static void check_engine(void)
{
    eng_engine *host = open_engine(true), *dev = open_engine(false);
    EXPECT(!eng_engine_device_sampling(host) && eng_engine_device_sampling(dev),
           "device sampling should be off with host_sampling and on by default on CUDA");
    int32_t vocab = eng_engine_model(dev)->vocab_size;
    static int32_t ids[4][24];
    eng_part parts[4];
    for (int k = 0; k < 4; k++) {
        for (int i = 0; i < 24; i++) /* requests 0 and 1 share a prompt */
            ids[k][i] = k == 1 ? ids[0][i] : 3 + rand() % (vocab - 3);
        parts[k] = gpu_part_ids(ids[k], 24);
    }
    eng_sampling_params sp[4];
    for (int k = 0; k < 4; k++) {
        eng_sampling_params_default(&sp[k]);
        sp[k].temperature = 0.0f;
        sp[k].n_logprobs = 3;
    }
    sp[1].repetition_penalty = 1.3f;
    sp[2].presence_penalty = 0.7f;
    sp[2].frequency_penalty = 0.4f;
    sp[3].repetition_penalty = 1.1f;
    sp[3].frequency_penalty = 1.0f;
    sp[3].n_logprobs = -1;
    static gpu_gen gh[4], gd[4];
    generate4(host, parts, sp, gh);
    generate4(dev, parts, sp, gd);
    for (int k = 0; k < 4; k++) {
        int n = gh[k].n_tokens < gd[k].n_tokens ? gh[k].n_tokens : gd[k].n_tokens, first = -1;
        double lp_err = 0.0;
        for (int i = 0; i < n; i++) {
            if (first < 0 && gh[k].tokens[i] != gd[k].tokens[i])
                first = i;
            double d = fabs((double)gh[k].logprob[i] - gd[k].logprob[i]);
            lp_err = first < 0 && d > lp_err ? d : lp_err;
        }
        int distinct = 0;
        for (int i = 0; i < n; i++) {
            int j = 0;
            while (j < i && gh[k].tokens[j] != gh[k].tokens[i])
                j++;
            distinct += j == i;
        }
        printf("  engine greedy request %d (rep %.1f pres %.1f freq %.1f): %d tokens (%d "
               "distinct), first difference %d, logprob error %.2e\n",
               k, sp[k].repetition_penalty, sp[k].presence_penalty, sp[k].frequency_penalty, n,
               distinct, first, lp_err);
        EXPECT(first < 0 && n == 48,
               "request %d: device sampling diverges from host sampling at "
               "token %d (host %d, device %d; top-2 gap %.2e)",
               k, first, first >= 0 ? gh[k].tokens[first] : -1,
               first >= 0 ? gd[k].tokens[first] : -1, first >= 0 ? gh[k].margin[first] : 0.0f);
        EXPECT(lp_err <= LP_TOL, "request %d: logprobs differ by %.2e", k, lp_err);
    }
    /* the penalty must have changed something for the comparison to mean much
     * (requests 0 and 1: one prompt, without and with it) */
    EXPECT(memcmp(gh[0].tokens, gh[1].tokens, sizeof gh[0].tokens) != 0,
           "the repetition penalty changed no token");

    /* Seeded sampling, one request at a time so that the logits are the
     * same bits each time (batched with others they may differ in the last
     * bits, and then so may a draw): the same seed repeats, another differs. */
    eng_sampling_params ss;
    eng_sampling_params_default(&ss);
    ss.temperature = 0.9f;
    ss.top_p = 0.95f;
    static gpu_gen gs[3];
    for (int k = 0; k < 3; k++) {
        ss.seed = k < 2 ? 11 : 12;
        bi_status st = gpu_gen_start(dev, &parts[0], 1, ENG_REUSE_EXACT, 48, &ss, &gs[k]);
        if (st == BI_OK)
            st = gpu_gen_wait(&gs[k]);
        EXPECT(st == BI_OK && gs[k].n_tokens == 48, "sampled request %d: %s (%s)", k,
               bi_strerror(st), gs[k].message);
    }
    bool repeat = memcmp(gs[0].tokens, gs[1].tokens, sizeof gs[0].tokens) == 0;
    bool differ = memcmp(gs[0].tokens, gs[2].tokens, sizeof gs[0].tokens) != 0;
    printf("  engine sampling: same seed repeats %s, another seed differs %s\n",
           repeat ? "yes" : "NO", differ ? "yes" : "NO");
    EXPECT(repeat, "seeded device sampling did not repeat");
    EXPECT(differ, "another seed gave the same tokens");
    eng_engine_destroy(host);
    eng_engine_destroy(dev);
}

int main(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    gpu_begin("test_sample");
    bi_log_set_level(BI_LOG_WARN);
    const int vocabs[] = {32000, 152064};
    for (int v = 0; v < 2; v++) {
        int V = vocabs[v];
        check_greedy(V);
        check_sets(V);
        check_penalties(V);
        check_seeds(V);
        check_frequencies(V);
        time_kernel(V);
    }
    check_engine();
    return gpu_end("test_sample");
}
