/* attention.c - per-level paged attention and the exact log-sum-exp merge. */
#include "core/attention.h"

#include <math.h>
#include <string.h>

#include "cpu/krn_cpu.h"

void eng_attn_state_clear(eng_attn_state *st, int head_dim)
{
    memset(st->acc, 0, (size_t)head_dim * sizeof(float));
    st->m = -INFINITY;
    st->l = 0.0f;
}

void eng_attn_level(const eng_kv_pool *kv, int layer, int kvh, const float *q, const int32_t *pages,
                    int32_t n, float scale, float *scores, eng_attn_state *out)
{
    const int hd = kv->head_dim, ps = kv->page_size;
    eng_attn_state_clear(out, hd);
    if (n <= 0)
        return;
    float mx = -INFINITY;
    for (int32_t j = 0; j < n; j++) {
        const float *k = eng_kv_k(kv, layer, pages[j / ps], kvh, j % ps);
        float s = krn_cpu_dot(q, k, hd) * scale;
        scores[j] = s;
        if (s > mx)
            mx = s;
    }
    float l = 0.0f;
    for (int32_t j = 0; j < n; j++) {
        float p = expf(scores[j] - mx);
        l += p;
        krn_cpu_axpy(out->acc, p, eng_kv_v(kv, layer, pages[j / ps], kvh, j % ps), hd);
    }
    out->m = mx;
    out->l = l;
}

void eng_attn_merge(eng_attn_state *a, const eng_attn_state *b, int head_dim)
{
    if (b->m == -INFINITY)
        return;
    if (a->m == -INFINITY) {
        memcpy(a->acc, b->acc, (size_t)head_dim * sizeof(float));
        a->m = b->m;
        a->l = b->l;
        return;
    }
    float m = a->m > b->m ? a->m : b->m;
    float sa = expf(a->m - m), sb = expf(b->m - m);
    for (int i = 0; i < head_dim; i++)
        a->acc[i] = a->acc[i] * sa + b->acc[i] * sb;
    a->l = a->l * sa + b->l * sb;
    a->m = m;
}

void eng_attn_finish(const eng_attn_state *a, float *out, int head_dim)
{
    float inv = a->l > 0.0f ? 1.0f / a->l : 0.0f;
    for (int i = 0; i < head_dim; i++)
        out[i] = a->acc[i] * inv;
}
