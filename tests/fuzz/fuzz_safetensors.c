/*
 * fuzz_safetensors.c - libFuzzer target for the safetensors reader: parses
 * the input and reads every tensor it lists (converting small F32/F16/BF16
 * ones), so that every offset the reader accepted is touched.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "model/safetensors.h"

static volatile float sink;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    eng_st *st = NULL;
    char err[256];
    if (eng_st_open_memory(data, size, &st, err, sizeof err) != BI_OK)
        return 0;
    for (size_t i = 0; i < eng_st_n_tensors(st); i++) {
        const eng_st_tensor *t = eng_st_tensor_at(st, i);
        if (eng_st_tensor_find(st, t->name) != t)
            abort();   /* names are unique and found */
        if (t->nbytes) /* every byte the reader vouched for is readable */
            sink += ((const uint8_t *)t->data)[0] + ((const uint8_t *)t->data)[t->nbytes - 1];
        size_t es = eng_dtype_type_size(t->dtype);
        if (!es || t->nbytes > (1u << 20))
            continue;
        size_t n = t->nbytes / es;
        float *y = malloc(n ? n * sizeof *y : 1);
        if (y && eng_dequant_f32(t->dtype, t->data, n, y) == BI_OK && n)
            sink += y[n - 1];
        free(y);
    }
    eng_st_close(st);
    return 0;
}
