/* rope.c - rotary position embedding frequencies (HF-exact, fp32) and rotation. */
#include <math.h>

#include "common/alloc.h"
#include "core/backend.h"
#include "model/model.h"

/* Llama 3.1 frequency-dependent scaling, as transformers' _compute_llama3_parameters. */
static float llama3_scale(float inv_freq, const eng_model_config *c)
{
    const float pi = 3.14159265358979323846f;
    float old_ctx = (float)c->rope_orig_ctx;
    float low_wavelen = old_ctx / c->rope_low_freq_factor;
    float high_wavelen = old_ctx / c->rope_high_freq_factor;
    float wavelen = 2.0f * pi / inv_freq;
    float scaled = wavelen > low_wavelen ? inv_freq / c->rope_factor : inv_freq;
    bool medium = !(wavelen < high_wavelen) && !(wavelen > low_wavelen);
    if (!medium)
        return scaled;
    float smooth = (old_ctx / wavelen - c->rope_low_freq_factor) /
                   (c->rope_high_freq_factor - c->rope_low_freq_factor);
    return (1.0f - smooth) * scaled / c->rope_factor + smooth * scaled;
}

bi_status eng_rope_init(eng_rope *rope, const eng_model_config *cfg)
{
    int half = cfg->head_dim / 2;
    rope->head_dim = cfg->head_dim;
    rope->inv_freq = bi_mallocarray((size_t)half, sizeof(float));
    if (!rope->inv_freq)
        return BI_NOMEM;
    for (int i = 0; i < half; i++) {
        /* torch: 1.0 / (base ** (arange(0, dim, 2).float() / dim)), all fp32 */
        float expo = (float)(2 * i) / (float)cfg->head_dim;
        float f = 1.0f / powf(cfg->rope_theta, expo);
        if (cfg->rope_scaling == ENG_ROPE_SCALING_LLAMA3)
            f = llama3_scale(f, cfg);
        else if (cfg->rope_scaling == ENG_ROPE_SCALING_LINEAR)
            f = f / cfg->rope_factor;
        rope->inv_freq[i] = f;
    }
    return BI_OK;
}

void eng_rope_fini(eng_rope *rope)
{
    bi_free(rope->inv_freq);
    rope->inv_freq = NULL;
}

void eng_rope_apply(const eng_rope *rope, float *x, int32_t pos)
{
    int half = rope->head_dim / 2;
    float p = (float)pos;
    for (int i = 0; i < half; i++) {
        float ang = p * rope->inv_freq[i];
        float c = cosf(ang), s = sinf(ang);
        float x1 = x[i], x2 = x[i + half];
        x[i] = x1 * c - x2 * s;
        x[i + half] = x2 * c + x1 * s;
    }
}
