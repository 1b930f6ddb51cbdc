/*
 * dtype.h - tensor element types of GGUF and safetensors, their storage sizes
 * and dequantization to fp32.
 *
 * Quantized types store blocks of block_size elements in type_size bytes
 * (Q8_0: 32 elements in 34 bytes; Q4_K: 256 in 144; ...), bit-exact with the
 * GGUF/ggml definitions.
 */
#ifndef ENG_DTYPE_H
#define ENG_DTYPE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/status.h"

/* Values equal ggml's type ids, so GGUF tensor types map directly. */
typedef enum eng_dtype {
    ENG_DTYPE_F32 = 0,
    ENG_DTYPE_F16 = 1,
    ENG_DTYPE_Q4_0 = 2,
    ENG_DTYPE_Q4_1 = 3,
    ENG_DTYPE_Q5_0 = 6,
    ENG_DTYPE_Q8_0 = 8,
    ENG_DTYPE_Q4_K = 12,
    ENG_DTYPE_Q6_K = 14,
    ENG_DTYPE_BF16 = 30,
    ENG_DTYPE_INVALID = -1,
} eng_dtype;

/* "f32", "q4_k", ...; "?" for others. */
const char *eng_dtype_name(eng_dtype t);
/* True for the types above (the ones we can dequantize). */
bool eng_dtype_supported(eng_dtype t);
/* True for every type id ggml defines (Q5_K, IQ2_XS, I32, ...), supported or
 * not: a GGUF file may hold them, and eng_dtype_nbytes sizes them all. */
bool eng_dtype_known(eng_dtype t);
/* Elements per block (1 for F32/F16/BF16). 0 for unsupported types. */
size_t eng_dtype_block_size(eng_dtype t);
/* Elements per block for every known type (eng_dtype_known), 0 otherwise. */
size_t eng_dtype_known_block_size(eng_dtype t);
/* Bytes per block. 0 for unsupported types. */
size_t eng_dtype_type_size(eng_dtype t);
/* Bytes that n elements take, for every known type (eng_dtype_known);
 * BI_BAD_FORMAT if n is not a multiple of the block size, BI_OUT_OF_RANGE on
 * overflow, BI_UNSUPPORTED for unknown type ids. */
bi_status eng_dtype_nbytes(eng_dtype t, uint64_t n, size_t *out);

/* Dequantizes n elements (a multiple of the block size) from src into dst.
 * src needs no alignment. BI_UNSUPPORTED for types we cannot dequantize,
 * BI_BAD_FORMAT when n is not a multiple of the block size. */
bi_status eng_dequant_f32(eng_dtype t, const void *src, size_t n, float *dst);

/* fp16 / bf16 <-> fp32 scalar conversions (round-to-nearest-even on narrowing). */
float eng_f16_to_f32(uint16_t h);
uint16_t eng_f32_to_f16(float f);
float eng_bf16_to_f32(uint16_t h);
uint16_t eng_f32_to_bf16(float f);

#endif
