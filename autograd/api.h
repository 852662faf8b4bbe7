/* PG_API marks the public API: the functions and data a program may call in
 * libpatchgrad.so. The library is compiled with -fvisibility=hidden, so every
 * other symbol (kernels, helpers shared between the library's own files) stays
 * inside it; the static libraries the build links into the command and the
 * tests still resolve them. Every installed header includes this one. */
#ifndef PG_API_H
#define PG_API_H

#if defined(__GNUC__) || defined(__clang__)
#define PG_API __attribute__((visibility("default")))
#else
#define PG_API
#endif

#endif
