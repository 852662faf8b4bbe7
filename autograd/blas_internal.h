/* Between blas.c and runtime.c (internal, not installed). */
#ifndef PG_BLAS_INTERNAL_H
#define PG_BLAS_INTERNAL_H

#include <stdbool.h>

/* True once the library has called BLIS (a product or pg_set_threads). */
bool pg_blis_started(void);

#endif
