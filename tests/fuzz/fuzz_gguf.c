/*
 * fuzz_gguf.c - libFuzzer target for the GGUF reader: parses the input, then
 * reads every key through every typed accessor, walks arrays, dequantizes
 * small tensors and derives a model configuration, so that any pointer the
 * reader hands out is touched.
 */
#include <stdint.h>
#include <stdlib.h>

#include "model/gguf.h"
#include "model/model_int.h"

static volatile float sink;

static void touch_array(const eng_gguf_arr *a)
{
    uint64_t n = a->count < 4096 ? a->count : 4096;
    for (uint64_t i = 0; i < n; i++) {
        const char *s;
        size_t len;
        float f;
        int32_t v;
        if (eng_gguf_arr_str(a, i, &s, &len) == BI_OK && len)
            sink += (float)(unsigned char)s[len - 1];
        if (eng_gguf_arr_f32(a, i, &f) == BI_OK)
            sink += f;
        if (eng_gguf_arr_i32(a, i, &v) == BI_OK)
            sink += (float)v;
    }
    eng_gguf_arr_str(a, a->count, NULL, NULL); /* out of range: must not touch the pointers */
}

static void touch_tensors(const eng_gguf *g)
{
    for (size_t i = 0; i < eng_gguf_n_tensors(g); i++) {
        const eng_gguf_tensor *t = eng_gguf_tensor_at(g, i);
        size_t bs = eng_dtype_block_size(t->dtype), ts = eng_dtype_type_size(t->dtype);
        if (!bs || t->nbytes > (1u << 20))
            continue;
        size_t n = t->nbytes / ts * bs;
        float *y = malloc(n ? n * sizeof *y : 1);
        if (y && eng_dequant_f32(t->dtype, t->data, n, y) == BI_OK && n)
            sink += y[n - 1];
        free(y);
        if (eng_gguf_tensor_find(g, t->name) == NULL)
            abort(); /* every listed tensor must be found by name */
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    eng_gguf *g = NULL;
    char err[256];
    if (eng_gguf_open_memory(data, size, &g, err, sizeof err) != BI_OK)
        return 0;
    for (size_t i = 0; i < eng_gguf_n_kv(g); i++) {
        eng_gguf_type type;
        const char *key = eng_gguf_kv_key(g, i, &type);
        uint32_t u;
        int64_t i64;
        float f;
        bool b;
        const char *s;
        size_t len;
        eng_gguf_arr a;
        eng_gguf_get_u32(g, key, &u);
        eng_gguf_get_i64(g, key, &i64);
        eng_gguf_get_f32(g, key, &f);
        eng_gguf_get_bool(g, key, &b);
        if (eng_gguf_get_str(g, key, &s, &len) == BI_OK && len)
            sink += (float)(unsigned char)s[len - 1];
        if (eng_gguf_get_arr(g, key, &a) == BI_OK)
            touch_array(&a);
    }
    touch_tensors(g);
    eng_model_config cfg;
    eng_config_from_gguf(g, &cfg, err, sizeof err);
    eng_gguf_close(g);
    return 0;
}
