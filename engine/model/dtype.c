/*
 * dtype.c - element-type sizes and dequantization to fp32, bit-exact with
 * ggml's reference (non-SIMD) dequantizers: the same integer unpacking and the
 * same order of float operations, so results match to the bit.
 *
 * The size table covers every type that ggml/GGUF defines, so that a GGUF file
 * holding a type we cannot dequantize still parses (with its sizes checked)
 * and the loader can say which type it does not support.
 */
#define BI_LOG_MODULE "model"
#include "model/dtype.h"

#include <string.h>

typedef struct dtype_info {
    const char *name;
    uint16_t block; /* elements per block */
    uint16_t bytes; /* bytes per block */
    bool supported; /* we can dequantize it */
} dtype_info;

/* Indexed by ggml type id; entries with block == 0 are ids ggml never used or
 * retired. Sizes from ggml's type traits. */
static const dtype_info DTYPES[] = {
    [0] = {"f32", 1, 4, true},          [1] = {"f16", 1, 2, true},
    [2] = {"q4_0", 32, 18, true},       [3] = {"q4_1", 32, 20, true},
    [6] = {"q5_0", 32, 22, true},       [7] = {"q5_1", 32, 24, false},
    [8] = {"q8_0", 32, 34, true},       [9] = {"q8_1", 32, 40, false},
    [10] = {"q2_k", 256, 84, false},    [11] = {"q3_k", 256, 110, false},
    [12] = {"q4_k", 256, 144, true},    [13] = {"q5_k", 256, 176, false},
    [14] = {"q6_k", 256, 210, true},    [15] = {"q8_k", 256, 292, false},
    [16] = {"iq2_xxs", 256, 66, false}, [17] = {"iq2_xs", 256, 74, false},
    [18] = {"iq3_xxs", 256, 98, false}, [19] = {"iq1_s", 256, 50, false},
    [20] = {"iq4_nl", 32, 18, false},   [21] = {"iq3_s", 256, 110, false},
    [22] = {"iq2_s", 256, 82, false},   [23] = {"iq4_xs", 256, 136, false},
    [24] = {"i8", 1, 1, false},         [25] = {"i16", 1, 2, false},
    [26] = {"i32", 1, 4, false},        [27] = {"i64", 1, 8, false},
    [28] = {"f64", 1, 8, false},        [29] = {"iq1_m", 256, 56, false},
    [30] = {"bf16", 1, 2, true},        [34] = {"tq1_0", 256, 54, false},
    [35] = {"tq2_0", 256, 66, false},   [39] = {"mxfp4", 32, 17, false},
};

static const dtype_info *info(eng_dtype t)
{
    if ((int)t < 0 || (size_t)t >= sizeof DTYPES / sizeof DTYPES[0] || DTYPES[t].block == 0)
        return NULL;
    return &DTYPES[t];
}

const char *eng_dtype_name(eng_dtype t)
{
    const dtype_info *i = info(t);
    return i ? i->name : "?";
}

bool eng_dtype_supported(eng_dtype t)
{
    const dtype_info *i = info(t);
    return i && i->supported;
}

bool eng_dtype_known(eng_dtype t)
{
    return info(t) != NULL;
}

size_t eng_dtype_block_size(eng_dtype t)
{
    const dtype_info *i = info(t);
    return i && i->supported ? i->block : 0;
}

size_t eng_dtype_known_block_size(eng_dtype t)
{
    const dtype_info *i = info(t);
    return i ? i->block : 0;
}

size_t eng_dtype_type_size(eng_dtype t)
{
    const dtype_info *i = info(t);
    return i && i->supported ? i->bytes : 0;
}

bi_status eng_dtype_nbytes(eng_dtype t, uint64_t n, size_t *out)
{
    const dtype_info *i = info(t);
    if (!i)
        return BI_UNSUPPORTED;
    if (n % i->block != 0)
        return BI_BAD_FORMAT;
    uint64_t blocks = n / i->block;
    if (blocks > SIZE_MAX / i->bytes)
        return BI_OUT_OF_RANGE;
    *out = (size_t)blocks * i->bytes;
    return BI_OK;
}

static uint32_t f32_bits(float f)
{
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}

static float bits_f32(uint32_t u)
{
    float f;
    memcpy(&f, &u, 4);
    return f;
}

float eng_f16_to_f32(uint16_t h)
{
    uint32_t sign = (uint32_t)(h & 0x8000) << 16;
    uint32_t exp = (h >> 10) & 0x1F;
    uint32_t mant = h & 0x3FF;
    if (exp == 0) {
        if (mant == 0)
            return bits_f32(sign);
        /* subnormal: normalise into an fp32 normal */
        uint32_t e = 113;
        while (!(mant & 0x400)) {
            mant <<= 1;
            e--;
        }
        return bits_f32(sign | (e << 23) | ((mant & 0x3FF) << 13));
    }
    if (exp == 31)
        return bits_f32(sign | 0x7F800000u | (mant << 13));
    return bits_f32(sign | ((exp + 112) << 23) | (mant << 13));
}

/* ggml's (FP16 library's) branch-light conversion: the scaled additions let
 * the FPU do the round-to-nearest-even on the mantissa. */
uint16_t eng_f32_to_f16(float f)
{
    const float scale_to_inf = 0x1.0p+112f;
    const float scale_to_zero = 0x1.0p-110f;
    float base = ((f < 0 ? -f : f) * scale_to_inf) * scale_to_zero;
    const uint32_t w = f32_bits(f);
    const uint32_t shl1_w = w + w;
    const uint32_t sign = w & 0x80000000u;
    uint32_t bias = shl1_w & 0xFF000000u;
    if (bias < 0x71000000u)
        bias = 0x71000000u;
    base = bits_f32((bias >> 1) + 0x07800000u) + base;
    const uint32_t bits = f32_bits(base);
    const uint32_t exp_bits = (bits >> 13) & 0x00007C00u;
    const uint32_t mantissa_bits = bits & 0x00000FFFu;
    const uint32_t nonsign = exp_bits + mantissa_bits;
    return (uint16_t)((sign >> 16) | (shl1_w > 0xFF000000u ? 0x7E00u : nonsign));
}

float eng_bf16_to_f32(uint16_t h)
{
    return bits_f32((uint32_t)h << 16);
}

uint16_t eng_f32_to_bf16(float f)
{
    uint32_t u = f32_bits(f);
    if ((u & 0x7FFFFFFFu) > 0x7F800000u) /* NaN: keep it a (quiet) NaN */
        return (uint16_t)((u >> 16) | 64);
    return (uint16_t)((u + (0x7FFFu + ((u >> 16) & 1))) >> 16);
}

static float rd_f16(const uint8_t *p)
{
    uint16_t h;
    memcpy(&h, p, 2);
    return eng_f16_to_f32(h);
}

/* Block layouts as in ggml-common.h; blocks are byte-packed, so fields are
 * read at byte offsets. */
static void deq_q4_0(const uint8_t *b, float *y)
{
    const float d = rd_f16(b);
    const uint8_t *qs = b + 2;
    for (int j = 0; j < 16; j++) {
        y[j] = ((qs[j] & 0x0F) - 8) * d;
        y[j + 16] = ((qs[j] >> 4) - 8) * d;
    }
}

static void deq_q4_1(const uint8_t *b, float *y)
{
    const float d = rd_f16(b), m = rd_f16(b + 2);
    const uint8_t *qs = b + 4;
    for (int j = 0; j < 16; j++) {
        y[j] = (qs[j] & 0x0F) * d + m;
        y[j + 16] = (qs[j] >> 4) * d + m;
    }
}

static void deq_q5_0(const uint8_t *b, float *y)
{
    const float d = rd_f16(b);
    uint32_t qh;
    memcpy(&qh, b + 2, 4);
    const uint8_t *qs = b + 6;
    for (int j = 0; j < 16; j++) {
        const uint8_t xh_0 = ((qh >> (j + 0)) << 4) & 0x10;
        const uint8_t xh_1 = ((qh >> (j + 12))) & 0x10;
        const int32_t x0 = ((qs[j] & 0x0F) | xh_0) - 16;
        const int32_t x1 = ((qs[j] >> 4) | xh_1) - 16;
        y[j] = x0 * d;
        y[j + 16] = x1 * d;
    }
}

static void deq_q8_0(const uint8_t *b, float *y)
{
    const float d = rd_f16(b);
    const int8_t *qs = (const int8_t *)(b + 2);
    for (int j = 0; j < 32; j++)
        y[j] = qs[j] * d;
}

static void scale_min_k4(int j, const uint8_t *q, uint8_t *d, uint8_t *m)
{
    if (j < 4) {
        *d = q[j] & 63;
        *m = q[j + 4] & 63;
    } else {
        *d = (q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4);
        *m = (q[j + 4] >> 4) | ((q[j - 0] >> 6) << 4);
    }
}

static void deq_q4_k(const uint8_t *b, float *y)
{
    const float d = rd_f16(b), min = rd_f16(b + 2);
    const uint8_t *scales = b + 4, *q = b + 16;
    int is = 0;
    uint8_t sc, m;
    for (int j = 0; j < 256; j += 64) {
        scale_min_k4(is + 0, scales, &sc, &m);
        const float d1 = d * sc, m1 = min * m;
        scale_min_k4(is + 1, scales, &sc, &m);
        const float d2 = d * sc, m2 = min * m;
        for (int l = 0; l < 32; ++l)
            *y++ = d1 * (q[l] & 0xF) - m1;
        for (int l = 0; l < 32; ++l)
            *y++ = d2 * (q[l] >> 4) - m2;
        q += 32;
        is += 2;
    }
}

static void deq_q6_k(const uint8_t *b, float *y)
{
    const uint8_t *ql = b, *qh = b + 128;
    const int8_t *sc = (const int8_t *)(b + 192);
    const float d = rd_f16(b + 208);
    for (int n = 0; n < 256; n += 128) {
        for (int l = 0; l < 32; ++l) {
            int is = l / 16;
            const int8_t q1 = (int8_t)((ql[l + 0] & 0xF) | (((qh[l] >> 0) & 3) << 4)) - 32;
            const int8_t q2 = (int8_t)((ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4)) - 32;
            const int8_t q3 = (int8_t)((ql[l + 0] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32;
            const int8_t q4 = (int8_t)((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32;
            y[l + 0] = d * sc[is + 0] * q1;
            y[l + 32] = d * sc[is + 2] * q2;
            y[l + 64] = d * sc[is + 4] * q3;
            y[l + 96] = d * sc[is + 6] * q4;
        }
        y += 128;
        ql += 64;
        qh += 32;
        sc += 8;
    }
}

typedef void (*deq_block_fn)(const uint8_t *b, float *y);

static deq_block_fn block_fn(eng_dtype t)
{
    switch (t) {
    case ENG_DTYPE_Q4_0:
        return deq_q4_0;
    case ENG_DTYPE_Q4_1:
        return deq_q4_1;
    case ENG_DTYPE_Q5_0:
        return deq_q5_0;
    case ENG_DTYPE_Q8_0:
        return deq_q8_0;
    case ENG_DTYPE_Q4_K:
        return deq_q4_k;
    case ENG_DTYPE_Q6_K:
        return deq_q6_k;
    default:
        return NULL;
    }
}

bi_status eng_dequant_f32(eng_dtype t, const void *src, size_t n, float *dst)
{
    const dtype_info *i = info(t);
    if (!i || !i->supported)
        return BI_UNSUPPORTED;
    if (n % i->block != 0)
        return BI_BAD_FORMAT;
    const uint8_t *s = src;
    switch (t) {
    case ENG_DTYPE_F32:
        memcpy(dst, s, n * 4);
        return BI_OK;
    case ENG_DTYPE_F16:
        for (size_t k = 0; k < n; k++)
            dst[k] = rd_f16(s + 2 * k);
        return BI_OK;
    case ENG_DTYPE_BF16:
        for (size_t k = 0; k < n; k++) {
            uint16_t h;
            memcpy(&h, s + 2 * k, 2);
            dst[k] = eng_bf16_to_f32(h);
        }
        return BI_OK;
    default: {
        deq_block_fn fn = block_fn(t);
        for (size_t blk = 0; blk < n / i->block; blk++)
            fn(s + blk * i->bytes, dst + blk * i->block);
        return BI_OK;
    }
    }
}
