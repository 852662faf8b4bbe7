/* MPI communicator (dist.h). */
#include "patchgrad/dist/dist.h"
#include "mpi_error.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#ifdef PG_HAVE_MPI
#include <mpi.h>
#endif

/* The variables a launcher sets for each process it starts: OpenMPI's
 * mpirun, MPICH/Hydra and Slurm's PMI, PMIx (srun --mpi=pmix). */
static int launched_size(void) {
  static const char *const vars[] = {"OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_SIZE"};
  for (size_t i = 0; i < sizeof vars / sizeof vars[0]; i++) {
    const char *v = getenv(vars[i]);
    if (v && *v) {
      char *end;
      const long n = strtol(v, &end, 10);
      if (*end == '\0' && n >= 1 && n < (1L << 30)) return (int)n;
    }
  }
  return getenv("PMIX_RANK") ? 2 : 1; /* PMIx without a size: assume several */
}

bool pg_dist_built_with_mpi(void) {
#ifdef PG_HAVE_MPI
  return true;
#else
  return false;
#endif
}

pg_status pg_dist_init(pg_dist *d, int *argc, char ***argv) {
  memset(d, 0, sizeof *d);
  d->size = 1;
  const int launched = launched_size();
#ifdef PG_HAVE_MPI
  if (launched > 1) {
    int provided = 0;
    /* OpenMP threads compute; only the main thread calls MPI */
    if (MPI_Init_thread(argc, argv, MPI_THREAD_FUNNELED, &provided) != MPI_SUCCESS)
      return pg_fail(PG_ERR_STATE, "MPI_Init_thread failed (launched as %d ranks)", launched);
    static MPI_Comm world;
    world = MPI_COMM_WORLD;
    /* errors come back as codes (and messages) instead of aborting inside MPI */
    MPI_Comm_set_errhandler(world, MPI_ERRORS_RETURN);
    MPI_Comm_rank(world, &d->rank);
    MPI_Comm_size(world, &d->size);
    d->mpi = true;
    d->comm = &world;
  }
  return PG_OK;
#else
  (void)argc, (void)argv;
  if (launched > 1)
    return pg_fail(PG_ERR_STATE,
                   "launched as %d ranks, but this patchgrad was built without MPI "
                   "(install libopenmpi-dev and openmpi-bin, then meson setup again)",
                   launched);
  return PG_OK;
#endif
}

void pg_dist_finalize(pg_dist *d) {
#ifdef PG_HAVE_MPI
  if (d->mpi) MPI_Finalize();
#endif
  d->mpi = false;
  d->comm = NULL;
}

void pg_dist_abort(const pg_dist *d, int code) {
#ifdef PG_HAVE_MPI
  if (d->size > 1) {
    fflush(stdout);
    fflush(stderr);
    MPI_Abort(*(MPI_Comm *)d->comm, code);
  }
#else
  (void)d, (void)code;
#endif
}

#ifdef PG_HAVE_MPI
pg_status pg_dist_mpi_fail(int rc, const char *what) {
  char text[MPI_MAX_ERROR_STRING];
  int len = 0;
  MPI_Error_string(rc, text, &len);
  return pg_fail(PG_ERR_STATE, "%s failed: %s", what, text);
}
#endif

pg_status pg_dist_agree(const pg_dist *d, pg_status local) {
  if (d->size == 1) return local;
#ifdef PG_HAVE_MPI
  MPI_Comm comm = *(MPI_Comm *)d->comm;
  /* the lowest failing rank speaks for all */
  int mine = local ? d->rank : d->size, first = d->size;
  int rc = MPI_Allreduce(&mine, &first, 1, MPI_INT, MPI_MIN, comm);
  if (rc != MPI_SUCCESS) return pg_dist_mpi_fail(rc, "MPI_Allreduce (error agreement)");
  if (first == d->size) return PG_OK;
  char msg[1024];
  int status = (int)local;
  if (d->rank == first) snprintf(msg, sizeof msg, "%s", pg_last_error());
  rc = MPI_Bcast(msg, (int)sizeof msg, MPI_CHAR, first, comm);
  if (rc == MPI_SUCCESS) rc = MPI_Bcast(&status, 1, MPI_INT, first, comm);
  if (rc != MPI_SUCCESS) return pg_dist_mpi_fail(rc, "MPI_Bcast (error agreement)");
  msg[sizeof msg - 1] = '\0';
  return pg_fail((pg_status)status, "rank %d: %s", first, msg);
#else
  return local;
#endif
}

pg_status pg_dist_allreduce_sum(const pg_dist *d, double *values, int n) {
  if (d->size == 1 || n == 0) return PG_OK;
#ifdef PG_HAVE_MPI
  const int rc = MPI_Allreduce(MPI_IN_PLACE, values, n, MPI_DOUBLE, MPI_SUM, *(MPI_Comm *)d->comm);
  return rc == MPI_SUCCESS ? PG_OK : pg_dist_mpi_fail(rc, "MPI_Allreduce");
#else
  (void)values;
  return PG_OK;
#endif
}

pg_status pg_dist_idle_barrier(const pg_dist *d) {
  if (d->size == 1) return PG_OK;
#ifdef PG_HAVE_MPI
  MPI_Request req;
  int rc = MPI_Ibarrier(*(MPI_Comm *)d->comm, &req);
  if (rc != MPI_SUCCESS) return pg_dist_mpi_fail(rc, "MPI_Ibarrier");
  for (int done = 0;;) {
    rc = MPI_Test(&req, &done, MPI_STATUS_IGNORE);
    if (rc != MPI_SUCCESS) return pg_dist_mpi_fail(rc, "MPI_Test");
    if (done) return PG_OK;
    nanosleep(&(struct timespec){.tv_sec = 0, .tv_nsec = 1000000}, NULL);
  }
#else
  return PG_OK;
#endif
}

pg_status pg_dist_broadcast_floats(const pg_dist *d, float *values, int64_t n, int root) {
  if (d->size == 1 || n == 0) return PG_OK;
#ifdef PG_HAVE_MPI
  /* MPI counts are int: send in pieces of at most 2^30 floats */
  for (int64_t off = 0; off < n; off += (int64_t)1 << 30) {
    const int64_t len = n - off < ((int64_t)1 << 30) ? n - off : ((int64_t)1 << 30);
    const int rc = MPI_Bcast(values + off, (int)len, MPI_FLOAT, root, *(MPI_Comm *)d->comm);
    if (rc != MPI_SUCCESS) return pg_dist_mpi_fail(rc, "MPI_Bcast");
  }
  return PG_OK;
#else
  (void)values, (void)root;
  return PG_OK;
#endif
}

pg_status pg_dist_broadcast_params(const pg_dist *d, pg_params *ps) {
  for (int i = 0; i < ps->count; i++) {
    pg_tensor *t = ps->items[i].tensor;
    const pg_status st = pg_dist_broadcast_floats(d, t->data, t->numel, 0);
    if (st) return st;
  }
  return PG_OK;
}
