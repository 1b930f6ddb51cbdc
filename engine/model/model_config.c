/*
 * model_config.c - the architecture table, configuration presets, validation,
 * and reading a configuration from GGUF metadata or a Hugging Face
 * config.json. Both formats end in the same eng_model_config.
 */
#define BI_LOG_MODULE "model"
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "common/log.h"
#include "model/model_int.h"
#include "model/mutil.h"

static const eng_arch_info ARCHS[ENG_ARCH_COUNT_] = {
    [ENG_ARCH_LLAMA] = {ENG_ARCH_LLAMA, "llama", "llama", "LlamaForCausalLM", "llama", false, false,
                        true},
    /* Mistral GGUFs say "llama" and are permuted like Llama's */
    [ENG_ARCH_MISTRAL] = {ENG_ARCH_MISTRAL, "mistral", NULL, "MistralForCausalLM", "mistral", false,
                          false, true},
    [ENG_ARCH_QWEN2] = {ENG_ARCH_QWEN2, "qwen2", "qwen2", "Qwen2ForCausalLM", "qwen2", true, false,
                        false},
    [ENG_ARCH_QWEN3] = {ENG_ARCH_QWEN3, "qwen3", "qwen3", "Qwen3ForCausalLM", "qwen3", false, true,
                        false},
};

const eng_arch_info *eng_arch_get(eng_arch arch)
{
    return (int)arch >= 0 && arch < ENG_ARCH_COUNT_ ? &ARCHS[arch] : NULL;
}

const char *eng_arch_name(eng_arch arch)
{
    const eng_arch_info *a = eng_arch_get(arch);
    return a ? a->name : "?";
}

typedef struct preset {
    const char *name;
    eng_model_config cfg; /* name, flags and token ids are filled in on use */
} preset;

static const preset PRESETS[] = {
    {"tinyllama-1.1b",
     {.arch = ENG_ARCH_LLAMA,
      .n_layer = 22,
      .d_model = 2048,
      .n_head = 32,
      .n_kv_head = 4,
      .head_dim = 64,
      .d_ff = 5632,
      .vocab_size = 32000,
      .max_ctx = 2048,
      .rope_theta = 10000.f,
      .norm_eps = 1e-5f}},
    {"qwen3-0.6b",
     {.arch = ENG_ARCH_QWEN3,
      .n_layer = 28,
      .d_model = 1024,
      .n_head = 16,
      .n_kv_head = 8,
      .head_dim = 128,
      .d_ff = 3072,
      .vocab_size = 151936,
      .max_ctx = 40960,
      .rope_theta = 1000000.f,
      .norm_eps = 1e-6f,
      .tie_embeddings = true}},
    {"llama3-8b",
     {.arch = ENG_ARCH_LLAMA,
      .n_layer = 32,
      .d_model = 4096,
      .n_head = 32,
      .n_kv_head = 8,
      .head_dim = 128,
      .d_ff = 14336,
      .vocab_size = 128256,
      .max_ctx = 8192,
      .rope_theta = 500000.f,
      .norm_eps = 1e-5f}},
    {"smollm2-135m",
     {.arch = ENG_ARCH_LLAMA,
      .n_layer = 30,
      .d_model = 576,
      .n_head = 9,
      .n_kv_head = 3,
      .head_dim = 64,
      .d_ff = 1536,
      .vocab_size = 49152,
      .max_ctx = 8192,
      .rope_theta = 100000.f,
      .norm_eps = 1e-5f,
      .tie_embeddings = true}},
};

bi_status eng_model_config_preset(const char *name, eng_model_config *cfg)
{
    for (size_t i = 0; i < sizeof PRESETS / sizeof PRESETS[0]; i++) {
        if (strcmp(PRESETS[i].name, name) != 0)
            continue;
        *cfg = PRESETS[i].cfg;
        snprintf(cfg->name, sizeof cfg->name, "%s", name);
        cfg->qkv_bias = ARCHS[cfg->arch].qkv_bias;
        cfg->qk_norm = ARCHS[cfg->arch].qk_norm;
        cfg->bos_id = cfg->eos_id = -1;
        return BI_OK;
    }
    return BI_NOT_FOUND;
}

static bool pos_finite(float f)
{
    return isfinite(f) && f > 0;
}

bi_status eng_model_config_validate(const eng_model_config *c, char *err, size_t err_size)
{
#define BAD(...) return eng_errf(err, err_size, BI_BAD_FORMAT, "model config: " __VA_ARGS__)
    if (!eng_arch_get(c->arch))
        BAD("unknown architecture %d", (int)c->arch);
    if (c->n_layer < 1 || c->n_layer > 1024)
        BAD("n_layer %d out of range 1..1024", c->n_layer);
    if (c->d_model < 1 || c->d_model > (1 << 17))
        BAD("d_model %d out of range", c->d_model);
    if (c->n_head < 1 || c->n_kv_head < 1 || c->n_head > 4096 || c->n_head % c->n_kv_head != 0)
        BAD("n_head %d must be a positive multiple of n_kv_head %d", c->n_head, c->n_kv_head);
    if (c->head_dim < 2 || c->head_dim > 4096 || c->head_dim % 2 != 0)
        BAD("head_dim %d must be even and in 2..4096", c->head_dim);
    if (c->d_ff < 1 || c->d_ff > (1 << 20))
        BAD("d_ff %d out of range", c->d_ff);
    if (c->vocab_size < 1 || c->vocab_size > (1 << 24))
        BAD("vocab_size %d out of range", c->vocab_size);
    if (c->max_ctx < 1)
        BAD("max_ctx %d must be positive", c->max_ctx);
    if (!pos_finite(c->norm_eps) || !pos_finite(c->rope_theta))
        BAD("norm_eps and rope_theta must be positive and finite");
    if (c->rope_scaling == ENG_ROPE_SCALING_LINEAR && !pos_finite(c->rope_factor))
        BAD("linear rope scaling needs a positive factor");
    if (c->rope_scaling == ENG_ROPE_SCALING_LLAMA3 &&
        (!pos_finite(c->rope_factor) || !pos_finite(c->rope_low_freq_factor) ||
         !(c->rope_high_freq_factor > c->rope_low_freq_factor) || c->rope_orig_ctx < 1))
        BAD("llama3 rope scaling needs factor > 0, high_freq_factor > low_freq_factor > 0 and "
            "original_max_position_embeddings > 0");
    if ((int)c->rope_scaling < 0 || c->rope_scaling > ENG_ROPE_SCALING_LLAMA3)
        BAD("unknown rope scaling %d", (int)c->rope_scaling);
    /* bounded sizes above keep every per-layer product below 2^50; the
     * total must still fit size_t bytes */
    double per_layer = (double)c->d_model * c->head_dim * (c->n_head * 2.0 + c->n_kv_head * 2.0) +
                       3.0 * c->d_model * c->d_ff;
    double total = per_layer * c->n_layer + 2.0 * c->vocab_size * c->d_model;
    if (total * 4 > (double)SIZE_MAX / 2)
        BAD("%.0f parameters do not fit in memory arithmetic", total);
#undef BAD
    return BI_OK;
}

/* ---- GGUF ---- */

static bi_status gguf_int(const eng_gguf *g, const char *arch, const char *key, bool required,
                          int def, int *out, char *err, size_t err_size)
{
    char full[160];
    snprintf(full, sizeof full, "%s.%s", arch, key);
    uint32_t v;
    bi_status s = eng_gguf_get_u32(g, full, &v);
    if (s == BI_NOT_FOUND && !required) {
        *out = def;
        return BI_OK;
    }
    if (s == BI_NOT_FOUND)
        return eng_errf(err, err_size, BI_BAD_FORMAT, "gguf: missing key %s", full);
    if (s != BI_OK || v > INT32_MAX)
        return eng_errf(err, err_size, BI_BAD_FORMAT, "gguf: key %s is not a valid integer", full);
    *out = (int)v;
    return BI_OK;
}

static bi_status gguf_float(const eng_gguf *g, const char *arch, const char *key, float def,
                            float *out, char *err, size_t err_size)
{
    char full[160];
    snprintf(full, sizeof full, "%s.%s", arch, key);
    bi_status s = eng_gguf_get_f32(g, full, out);
    if (s == BI_NOT_FOUND) {
        *out = def;
        return BI_OK;
    }
    if (s != BI_OK)
        return eng_errf(err, err_size, BI_BAD_FORMAT, "gguf: key %s is not a float", full);
    return BI_OK;
}

static bi_status gguf_rope_scaling(const eng_gguf *g, const char *a, eng_model_config *c, char *err,
                                   size_t err_size)
{
    char key[160];
    const char *type = NULL;
    size_t len = 0;
    bi_status s;
    snprintf(key, sizeof key, "%s.rope.scaling.type", a);
    if (eng_gguf_get_str(g, key, &type, &len) == BI_OK && !(len == 4 && !memcmp(type, "none", 4))) {
        if (!(len == 6 && !memcmp(type, "linear", 6)))
            return eng_errf(err, err_size, BI_UNSUPPORTED,
                            "gguf: rope scaling type '%.*s' is not supported", (int)len, type);
        c->rope_scaling = ENG_ROPE_SCALING_LINEAR;
        return gguf_float(g, a, "rope.scaling.factor", 1.0f, &c->rope_factor, err, err_size);
    }
    float lin = 0;
    if ((s = gguf_float(g, a, "rope.scale_linear", 0.0f, &lin, err, err_size)) != BI_OK)
        return s;
    if (lin > 0 && lin != 1.0f) {
        c->rope_scaling = ENG_ROPE_SCALING_LINEAR;
        c->rope_factor = lin;
    }
    if (eng_gguf_tensor_find(g, "rope_freqs.weight"))
        BI_LOGW(NULL, "gguf: rope_freqs.weight (baked Llama 3.1 rope scaling) is ignored");
    return BI_OK;
}

static bi_status gguf_token_id(const eng_gguf *g, const char *key, int32_t *out)
{
    uint32_t v;
    bi_status s = eng_gguf_get_u32(g, key, &v);
    *out = s == BI_OK && v <= INT32_MAX ? (int32_t)v : -1;
    return BI_OK;
}

static bi_status gguf_arch(const eng_gguf *g, eng_model_config *c, char *arch, size_t arch_size,
                           char *err, size_t err_size)
{
    const char *s;
    size_t len;
    if (eng_gguf_get_str(g, "general.architecture", &s, &len) != BI_OK)
        return eng_errf(err, err_size, BI_BAD_FORMAT, "gguf: no general.architecture string");
    for (int a = 0; a < ENG_ARCH_COUNT_; a++) {
        const char *ga = ARCHS[a].gguf_arch;
        if (ga && strlen(ga) == len && memcmp(ga, s, len) == 0) {
            c->arch = (eng_arch)a;
            snprintf(arch, arch_size, "%s", ga);
            return BI_OK;
        }
    }
    return eng_errf(err, err_size, BI_UNSUPPORTED,
                    "gguf: architecture '%.*s' is not supported (llama, qwen2, qwen3 are)",
                    (int)(len > 64 ? 64 : len), s);
}

bi_status eng_config_from_gguf(const eng_gguf *g, eng_model_config *c, char *err, size_t err_size)
{
    char a[32];
    bi_status s;
    memset(c, 0, sizeof *c);
    if ((s = gguf_arch(g, c, a, sizeof a, err, err_size)) != BI_OK)
        return s;
    const char *name;
    size_t len;
    if (eng_gguf_get_str(g, "general.name", &name, &len) == BI_OK)
        snprintf(c->name, sizeof c->name, "%.*s", (int)(len < 127 ? len : 127), name);
    if ((s = gguf_int(g, a, "block_count", true, 0, &c->n_layer, err, err_size)) ||
        (s = gguf_int(g, a, "embedding_length", true, 0, &c->d_model, err, err_size)) ||
        (s = gguf_int(g, a, "attention.head_count", true, 0, &c->n_head, err, err_size)) ||
        (s = gguf_int(g, a, "attention.head_count_kv", false, c->n_head, &c->n_kv_head, err,
                      err_size)) ||
        (s = gguf_int(g, a, "feed_forward_length", true, 0, &c->d_ff, err, err_size)) ||
        (s = gguf_int(g, a, "context_length", false, 2048, &c->max_ctx, err, err_size)) ||
        (s = gguf_int(g, a, "attention.key_length", false,
                      c->n_head > 0 ? c->d_model / c->n_head : 0, &c->head_dim, err, err_size)) ||
        (s = gguf_float(g, a, "rope.freq_base", 10000.0f, &c->rope_theta, err, err_size)) ||
        (s = gguf_float(g, a, "attention.layer_norm_rms_epsilon", 1e-5f, &c->norm_eps, err,
                        err_size)) ||
        (s = gguf_rope_scaling(g, a, c, err, err_size)))
        return s;
    const eng_gguf_tensor *emb = eng_gguf_tensor_find(g, "token_embd.weight");
    if (!emb || emb->n_dims != 2 || emb->shape[0] > INT32_MAX)
        return eng_errf(err, err_size, BI_BAD_FORMAT,
                        "gguf: token_embd.weight is missing or not a matrix");
    c->vocab_size = (int)emb->shape[0];
    eng_gguf_arr toks;
    if (eng_gguf_get_arr(g, "tokenizer.ggml.tokens", &toks) == BI_OK &&
        toks.count > (uint64_t)c->vocab_size)
        return eng_errf(err, err_size, BI_BAD_FORMAT,
                        "gguf: %llu tokens but token_embd.weight has %d rows",
                        (unsigned long long)toks.count, c->vocab_size);
    c->tie_embeddings = eng_gguf_tensor_find(g, "output.weight") == NULL;
    c->qkv_bias = ARCHS[c->arch].qkv_bias || eng_gguf_tensor_find(g, "blk.0.attn_q.bias") != NULL;
    c->qk_norm = ARCHS[c->arch].qk_norm;
    gguf_token_id(g, "tokenizer.ggml.bos_token_id", &c->bos_id);
    gguf_token_id(g, "tokenizer.ggml.eos_token_id", &c->eos_id);
    return eng_model_config_validate(c, err, err_size);
}

/* ---- Hugging Face config.json ---- */

/* An integer field: absent or null gives def (or an error when required). */
static bi_status json_int(const cJSON *j, const char *key, bool required, int def, int *out,
                          char *err, size_t err_size)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(j, key);
    if (!v || cJSON_IsNull(v)) {
        if (required)
            return eng_errf(err, err_size, BI_BAD_FORMAT, "config.json: missing %s", key);
        *out = def;
        return BI_OK;
    }
    if (!cJSON_IsNumber(v) || !(fabs(v->valuedouble) <= INT32_MAX) ||
        v->valuedouble != (double)(int)v->valuedouble)
        return eng_errf(err, err_size, BI_BAD_FORMAT, "config.json: %s is not an integer", key);
    *out = (int)v->valuedouble;
    return BI_OK;
}

static bi_status json_float(const cJSON *j, const char *key, float def, float *out, char *err,
                            size_t err_size)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(j, key);
    if (!v || cJSON_IsNull(v)) {
        *out = def;
        return BI_OK;
    }
    if (!cJSON_IsNumber(v))
        return eng_errf(err, err_size, BI_BAD_FORMAT, "config.json: %s is not a number", key);
    *out = (float)v->valuedouble;
    return BI_OK;
}

static bool json_bool(const cJSON *j, const char *key, bool def)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(j, key);
    return cJSON_IsBool(v) ? cJSON_IsTrue(v) : def;
}

/* bos/eos: an integer, a list (the first is taken) or absent (-1). */
static int32_t json_token(const cJSON *j, const char *key)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(j, key);
    if (cJSON_IsArray(v))
        v = v->child;
    if (!cJSON_IsNumber(v) || v->valuedouble < 0 || v->valuedouble > INT32_MAX ||
        v->valuedouble != (double)(int32_t)v->valuedouble)
        return -1;
    return (int32_t)v->valuedouble;
}

static bi_status hf_arch(const cJSON *j, eng_model_config *c, char *err, size_t err_size)
{
    const cJSON *archs = cJSON_GetObjectItemCaseSensitive(j, "architectures");
    const cJSON *first = cJSON_IsArray(archs) ? archs->child : NULL;
    const cJSON *type = cJSON_GetObjectItemCaseSensitive(j, "model_type");
    for (int a = 0; a < ENG_ARCH_COUNT_; a++) {
        if ((cJSON_IsString(first) && strcmp(first->valuestring, ARCHS[a].hf_class) == 0) ||
            (!cJSON_IsString(first) && cJSON_IsString(type) &&
             strcmp(type->valuestring, ARCHS[a].hf_type) == 0)) {
            c->arch = (eng_arch)a;
            return BI_OK;
        }
    }
    return eng_errf(err, err_size, BI_UNSUPPORTED,
                    "config.json: architecture '%.64s' is not supported (Llama, Mistral, Qwen2, "
                    "Qwen3 are)",
                    cJSON_IsString(first)  ? first->valuestring
                    : cJSON_IsString(type) ? type->valuestring
                                           : "(none)");
}

static bi_status hf_rope_scaling(const cJSON *j, eng_model_config *c, char *err, size_t err_size)
{
    /* transformers 5 writes rope_parameters (theta and scaling together) */
    const cJSON *rs = cJSON_GetObjectItemCaseSensitive(j, "rope_scaling");
    if (!rs || cJSON_IsNull(rs))
        rs = cJSON_GetObjectItemCaseSensitive(j, "rope_parameters");
    if (!rs || cJSON_IsNull(rs))
        return BI_OK;
    const cJSON *t = cJSON_GetObjectItemCaseSensitive(rs, "rope_type");
    if (!cJSON_IsString(t))
        t = cJSON_GetObjectItemCaseSensitive(rs, "type");
    if (!cJSON_IsObject(rs) || !cJSON_IsString(t))
        return eng_errf(err, err_size, BI_BAD_FORMAT, "config.json: rope_scaling has no rope_type");
    bi_status s;
    if (strcmp(t->valuestring, "default") == 0)
        return BI_OK;
    if ((s = json_float(rs, "factor", 0, &c->rope_factor, err, err_size)) != BI_OK)
        return s;
    if (strcmp(t->valuestring, "linear") == 0) {
        c->rope_scaling = ENG_ROPE_SCALING_LINEAR;
        return BI_OK;
    }
    if (strcmp(t->valuestring, "llama3") == 0) {
        c->rope_scaling = ENG_ROPE_SCALING_LLAMA3;
        if ((s = json_float(rs, "low_freq_factor", 0, &c->rope_low_freq_factor, err, err_size)) ||
            (s = json_float(rs, "high_freq_factor", 0, &c->rope_high_freq_factor, err, err_size)))
            return s;
        return json_int(rs, "original_max_position_embeddings", true, 0, &c->rope_orig_ctx, err,
                        err_size);
    }
    return eng_errf(err, err_size, BI_UNSUPPORTED,
                    "config.json: rope scaling '%.32s' is not supported (linear, llama3 are)",
                    t->valuestring);
}

bi_status eng_config_from_hf(const cJSON *j, const char *dir, eng_model_config *c, char *err,
                             size_t err_size)
{
    bi_status s;
    memset(c, 0, sizeof *c);
    if ((s = hf_arch(j, c, err, err_size)) != BI_OK)
        return s;
    const cJSON *nm = cJSON_GetObjectItemCaseSensitive(j, "_name_or_path");
    if (cJSON_IsString(nm) && nm->valuestring[0]) {
        snprintf(c->name, sizeof c->name, "%s", nm->valuestring);
    } else {
        const char *base = strrchr(dir, '/');
        snprintf(c->name, sizeof c->name, "%s", base && base[1] ? base + 1 : dir);
    }
    if ((s = json_int(j, "hidden_size", true, 0, &c->d_model, err, err_size)) ||
        (s = json_int(j, "intermediate_size", true, 0, &c->d_ff, err, err_size)) ||
        (s = json_int(j, "num_hidden_layers", true, 0, &c->n_layer, err, err_size)) ||
        (s = json_int(j, "num_attention_heads", true, 0, &c->n_head, err, err_size)) ||
        (s = json_int(j, "num_key_value_heads", false, c->n_head, &c->n_kv_head, err, err_size)) ||
        (s = json_int(j, "head_dim", false, c->n_head > 0 ? c->d_model / c->n_head : 0,
                      &c->head_dim, err, err_size)) ||
        (s = json_int(j, "vocab_size", true, 0, &c->vocab_size, err, err_size)) ||
        (s = json_int(j, "max_position_embeddings", false, 2048, &c->max_ctx, err, err_size)) ||
        (s = json_float(j, "rms_norm_eps", 1e-6f, &c->norm_eps, err, err_size)) ||
        (s = json_float(cJSON_GetObjectItemCaseSensitive(j, "rope_theta")
                            ? j
                            : cJSON_GetObjectItemCaseSensitive(j, "rope_parameters"),
                        "rope_theta", 10000.0f, &c->rope_theta, err, err_size)) ||
        (s = hf_rope_scaling(j, c, err, err_size)))
        return s;
    c->tie_embeddings = json_bool(j, "tie_word_embeddings", false);
    c->qkv_bias = ARCHS[c->arch].qkv_bias || json_bool(j, "attention_bias", false);
    c->qk_norm = ARCHS[c->arch].qk_norm;
    c->bos_id = json_token(j, "bos_token_id");
    c->eos_id = json_token(j, "eos_token_id");
    return eng_model_config_validate(c, err, err_size);
}
