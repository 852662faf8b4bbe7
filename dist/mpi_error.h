/* Internal to the dist room (not installed): an MPI return code as a
 * patchgrad error, "WHAT failed: <MPI's own text for rc>". */
#ifndef PG_DIST_MPI_ERROR_H
#define PG_DIST_MPI_ERROR_H
#ifdef PG_HAVE_MPI
#include <mpi.h>

#include "patchgrad/autograd/error.h"

pg_status pg_dist_mpi_fail(int rc, const char *what);
#endif
#endif
