/* Data-parallel training over MPI, as PyTorch's DistributedDataParallel:
 * K processes ("ranks") each run the same model on their share of every
 * global batch, and average their gradients before the optimizer step.
 *
 * MPI is optional at build time (meson finds Debian's OpenMPI,
 * libopenmpi-dev). A process joins MPI only when a launcher started it
 * (mpirun, mpiexec or srun set OMPI_COMM_WORLD_SIZE, PMI_SIZE or
 * PMIX_RANK); otherwise it is rank 0 of 1 and no MPI call is made, so a
 * plain run is exactly a run without this room. A build without MPI that is
 * launched as several ranks refuses with "built without MPI".
 *
 * Ownership: pg_dist_init fills a pg_dist the caller owns; pg_dist_finalize
 * ends MPI when this process started it. Every call that communicates is
 * collective: all ranks make it, in the same order. */
#ifndef PG_DIST_H
#define PG_DIST_H

#include "patchgrad/autograd/api.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "patchgrad/autograd/error.h"
#include "patchgrad/autograd/params.h"

typedef struct {
  int rank, size;  /* this process's rank in [0, size) */
  bool mpi;        /* MPI_Init was called by pg_dist_init */
  void *comm;      /* the MPI communicator (MPI_Comm *), NULL without MPI */
} pg_dist;

/* True when the library was built with MPI. */
PG_API bool pg_dist_built_with_mpi(void);

/* Joins MPI when launched by mpirun/srun (see above), else rank 0 of 1.
 * Errors: launched as several ranks by a build without MPI; MPI_Init
 * failing. argc/argv may be NULL. */
PG_API pg_status pg_dist_init(pg_dist *d, int *argc, char ***argv);
PG_API void pg_dist_finalize(pg_dist *d);

/* Ends every rank at once after this rank printed its message (MPI_Abort
 * with `code`); returns (without exiting) when there is only one rank. Use
 * it when one rank fails where the others may be waiting in a collective. */
PG_API void pg_dist_abort(const pg_dist *d, int code);

/* Collective agreement on an error: every rank passes its own status;
 * when any is non-zero, every rank returns non-zero and pg_last_error() on
 * every rank holds the message of the lowest failing rank, prefixed with
 * "rank R: " when there are several ranks. */
PG_API pg_status pg_dist_agree(const pg_dist *d, pg_status local);

/* Sums n doubles over ranks, in place (results identical on every rank). */
PG_API pg_status pg_dist_allreduce_sum(const pg_dist *d, double *values, int n);

/* Copies rank 0's parameter values (buffers too) to every rank. */
PG_API pg_status pg_dist_broadcast_params(const pg_dist *d, pg_params *ps);

/* A barrier at which the waiting ranks sleep (checking every millisecond)
 * instead of spinning as MPI's blocking calls do, so that they leave the
 * cores to ranks still working, e.g. rank 0 timing alone a step the others
 * will then take together (patchgrad bench under mpirun). */
PG_API pg_status pg_dist_idle_barrier(const pg_dist *d);

/* Broadcasts n floats from root. */
PG_API pg_status pg_dist_broadcast_floats(const pg_dist *d, float *values, int64_t n, int root);

#endif
