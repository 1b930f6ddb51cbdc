/*
 * model_int.h - internals shared by model_config.c (architectures and
 * configurations) and model.c (weights). Not part of the public API.
 */
#ifndef ENG_MODEL_INT_H
#define ENG_MODEL_INT_H

#include <stdbool.h>

#include "model/gguf.h"
#include "model/model.h"

struct cJSON;

/* One row of the architecture table: everything that differs between the
 * supported families, for both file formats. */
typedef struct eng_arch_info {
    eng_arch arch;
    const char *name;      /* eng_arch_name */
    const char *gguf_arch; /* general.architecture, or NULL when files say another */
    const char *hf_class;  /* config.json architectures[0] */
    const char *hf_type;   /* config.json model_type */
    bool qkv_bias;         /* q/k/v projections carry biases */
    bool qk_norm;          /* RMSNorm over head_dim on q and k */
    bool gguf_permuted_qk; /* llama.cpp's converter permuted Q/K rows */
} eng_arch_info;

const eng_arch_info *eng_arch_get(eng_arch arch);

/* Configuration from a GGUF file's <arch>.* keys (vocab from token_embd). */
bi_status eng_config_from_gguf(const eng_gguf *g, eng_model_config *cfg, char *err,
                               size_t err_size);
/* Configuration from a parsed config.json; dir names the model when the file
 * has no _name_or_path. */
bi_status eng_config_from_hf(const struct cJSON *j, const char *dir, eng_model_config *cfg,
                             char *err, size_t err_size);

#endif
