/*
 * hash.h - 64-bit FNV-1a over bytes, for hash tables and request digests
 * (not for anything an adversary may choose collisions against).
 */
#ifndef BI_HASH_H
#define BI_HASH_H

#include <stddef.h>
#include <stdint.h>

static inline uint64_t bi_fnv1a(const void *p, size_t n)
{
    const unsigned char *s = p;
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < n; i++)
        h = (h ^ s[i]) * 1099511628211ull;
    return h;
}

#endif
