/*
 * utf8.h - strict UTF-8 validation, shared by every module that takes text
 * from outside (model files, the wire, the clients).
 *
 * Well-formed means Unicode's table 3-7: no overlong forms, no surrogates,
 * nothing above U+10FFFF, no truncated sequences. NUL is a valid character
 * here; callers that need NUL-free text check for it themselves.
 */
#ifndef BI_UTF8_H
#define BI_UTF8_H

#include <stdbool.h>
#include <stddef.h>

/* Length (1..4) of the well-formed sequence at s with n > 0 bytes left, or 0
 * when it is ill-formed or truncated. */
size_t bi_utf8_seq(const unsigned char *s, size_t n);

/* True when the n bytes at s are well-formed UTF-8. */
bool bi_utf8_valid(const char *s, size_t n);

#endif
