/*
 * model.h - a loaded model: its configuration and its weights, in one layout
 * whatever the file format.
 *
 * Layout: every matrix is row-major [out_features][in_features], as Hugging
 * Face stores nn.Linear weights, in fp32 (GGUF quantized types are dequantized
 * on load for the CPU backend). Q and K projection rows are in HF's RoPE layout
 * (half-split pairs: dimension i rotates with i + head_dim/2); GGUF llama files,
 * whose Q/K rows are permuted for adjacent pairs, are un-permuted on load.
 *
 * Architectures come from one table (model.c), not forked forward passes:
 * an architecture is a set of flags on eng_model_config.
 *
 * Ownership: eng_model_load / eng_model_dummy return a model the caller frees
 * with eng_model_destroy; every pointer inside stays valid until then.
 */
#ifndef ENG_MODEL_H
#define ENG_MODEL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/status.h"
#include "dtype.h"

typedef enum eng_arch {
    ENG_ARCH_LLAMA = 0, /* Llama 2/3, TinyLlama, SmolLM2 */
    ENG_ARCH_MISTRAL,
    ENG_ARCH_QWEN2, /* QKV bias */
    ENG_ARCH_QWEN3, /* QK-norm (RMSNorm over head_dim on q and k, before RoPE) */
    ENG_ARCH_COUNT_
} eng_arch;

typedef enum eng_rope_scaling {
    ENG_ROPE_SCALING_NONE = 0,
    ENG_ROPE_SCALING_LINEAR, /* positions divided by factor */
    ENG_ROPE_SCALING_LLAMA3, /* Llama 3.1 frequency-dependent scaling */
} eng_rope_scaling;

typedef struct eng_model_config {
    eng_arch arch;
    char name[128]; /* human-readable model name (general.name or directory name) */
    int n_layer;
    int d_model;   /* hidden size */
    int n_head;    /* query heads */
    int n_kv_head; /* key/value heads (GQA when < n_head) */
    int head_dim;  /* usually d_model / n_head; Qwen3 may differ */
    int d_ff;      /* MLP intermediate size */
    int vocab_size;
    int max_ctx;    /* max_position_embeddings / context_length */
    float norm_eps; /* RMSNorm epsilon */
    float rope_theta;
    eng_rope_scaling rope_scaling;
    float rope_factor;           /* LINEAR and LLAMA3 */
    float rope_low_freq_factor;  /* LLAMA3 */
    float rope_high_freq_factor; /* LLAMA3 */
    int rope_orig_ctx;           /* LLAMA3: original_max_position_embeddings */
    bool tie_embeddings;         /* lm_head shares tok_embd */
    bool qkv_bias;               /* Qwen2 */
    bool qk_norm;                /* Qwen3 */
    int32_t bos_id, eos_id;      /* from the config when it has them, else -1 */
} eng_model_config;

typedef struct eng_layer_weights {
    float *attn_norm;    /* (d_model) */
    float *wq;           /* (n_head * head_dim, d_model) */
    float *wk;           /* (n_kv_head * head_dim, d_model) */
    float *wv;           /* (n_kv_head * head_dim, d_model) */
    float *bq, *bk, *bv; /* (n_head * head_dim), (n_kv_head * head_dim) x2; NULL unless qkv_bias */
    float *q_norm;       /* (head_dim); NULL unless qk_norm */
    float *k_norm;       /* (head_dim); NULL unless qk_norm */
    float *wo;           /* (d_model, n_head * head_dim) */
    float *ffn_norm;     /* (d_model) */
    float *w_gate;       /* (d_ff, d_model) */
    float *w_up;         /* (d_ff, d_model) */
    float *w_down;       /* (d_model, d_ff) */
} eng_layer_weights;

typedef struct eng_model {
    eng_model_config cfg;
    float *tok_embd;           /* (vocab_size, d_model) */
    float *out_norm;           /* (d_model) */
    float *lm_head;            /* (vocab_size, d_model); equals tok_embd when tied */
    eng_layer_weights *layers; /* n_layer entries */
    char fingerprint[65];      /* hex SHA-256 identifying the weights (file contents or dummy
                                  seed+config) */
    eng_dtype weight_dtype;    /* the type the file stores the weight matrices in (2-D tensors;
                                  norms and biases aside) when they all share one: ENG_DTYPE_F16,
                                  ENG_DTYPE_BF16, ENG_DTYPE_Q8_0, ...; ENG_DTYPE_INVALID when they
                                  are mixed; ENG_DTYPE_F32 for dummy weights */
    void *priv_;               /* loader-owned storage; do not touch */
} eng_model;

/* Progress of a long load: stage is a short static label ("reading",
 * "dequantizing"), done/total count bytes or tensors. Called from the loading
 * thread, at most about a hundred times per load. */
typedef void (*eng_progress_fn)(void *user, const char *stage, uint64_t done, uint64_t total);

typedef struct eng_model_load_opts {
    eng_progress_fn progress; /* may be NULL */
    void *progress_user;
} eng_model_load_opts;

/* Loads a model from a GGUF file or a Hugging Face directory (config.json and
 * model.safetensors or model.safetensors.index.json with its shards). Files
 * are memory-mapped. Every size, offset and dimension is checked against the
 * file: a bad file gives BI_BAD_FORMAT (or BI_UNSUPPORTED for valid but
 * unhandled content, BI_IO for unreadable files) with a message in err, never a
 * crash. opts may be NULL. */
bi_status eng_model_load(const char *path, const eng_model_load_opts *opts, eng_model **out,
                         char *err, size_t err_size);

/* Builds a model of the given configuration with random weights (normal,
 * std 0.02, norms at 1) from seed: the `dummy` mode for benchmarks of big
 * shapes. The configuration is validated like a loaded one. */
bi_status eng_model_dummy(const eng_model_config *cfg, uint64_t seed, eng_model **out, char *err,
                          size_t err_size);

/* Checks a configuration for consistency and sane bounds (positive sizes,
 * n_head % n_kv_head == 0, products that fit in memory arithmetic, ...). */
bi_status eng_model_config_validate(const eng_model_config *cfg, char *err, size_t err_size);

/* Fills cfg with the named preset shape ("tinyllama-1.1b", "qwen3-0.6b",
 * "llama3-8b", "smollm2-135m") for dummy mode; BI_NOT_FOUND for other names. */
bi_status eng_model_config_preset(const char *name, eng_model_config *cfg);

/* Architecture name ("llama", "mistral", "qwen2", "qwen3"). */
const char *eng_arch_name(eng_arch arch);

void eng_model_destroy(eng_model *m);

#endif
