/* Errors: every fallible call returns NULL or a non-zero pg_status and leaves
 * a message, readable with pg_last_error(), that names the op, the argument
 * and the values. Nothing in the library aborts on user error.
 *
 * Ops given a NULL input return NULL without touching the message, so a
 * chain of ops can be written straight and checked once at the end. */
#ifndef PG_ERROR_H
#define PG_ERROR_H

#include "patchgrad/autograd/api.h"

typedef enum {
  PG_OK = 0,
  PG_ERR_ARG,    /* a bad argument: shape, rank, range */
  PG_ERR_MEMORY, /* an allocation failed */
  PG_ERR_IO,     /* a file could not be read or written */
  PG_ERR_FORMAT, /* a file was read but its content is wrong */
  PG_ERR_STATE,  /* a call out of order (backward without a tape, ...) */
} pg_status;

/* The last error's message of this thread ("" when none). */
PG_API const char *pg_last_error(void);
PG_API pg_status pg_last_status(void);
PG_API void pg_clear_error(void);

/* Sets the message (printf format) and returns status, so that
 * `return pg_fail(PG_ERR_ARG, "...")` reads as one step. */
PG_API pg_status pg_fail(pg_status status, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Writes "[2, 3, 4]" into buf; for messages. Returns buf. */
PG_API char *pg_shape_str(char *buf, int cap, int ndim, const long long *shape);

#endif
