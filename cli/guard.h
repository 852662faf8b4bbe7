/* What the training commands check before a run starts: that no other run
 * writes the same output folder (a lock file), that the thread count fits
 * the machine, and that the model fits in memory. Each refusal is a message
 * on stderr naming the value and the limit. */
#ifndef PG_CLI_GUARD_H
#define PG_CLI_GUARD_H

#include <stdbool.h>
#include <stdint.h>

/* Creates the folder dir when missing and takes its lock, dir/.lock, holding
 * this process's pid (created with O_CREAT | O_EXCL). A lock whose pid is
 * still running refuses, naming the folder and that pid; a stale one (its
 * process is gone, e.g. killed with -9) is taken over with a note on
 * stderr. who prefixes the messages ("train"). false: refused, said. */
bool pg_cli_lock_out(const char *who, const char *dir);
/* Removes the lock pg_cli_lock_out took (nothing when none). */
void pg_cli_unlock_out(void);

/* --threads N above the machine's cores is refused (0: all cores). */
bool pg_cli_check_threads(const char *who, int64_t threads);

/* A model of at least `params` parameters keeps `copies` float32 tensors of
 * that size (the weights, their gradients, the optimizer's moments, an EMA):
 * refused when those bytes exceed the memory available (MemAvailable of
 * /proc/meminfo, else the physical pages), naming both. */
bool pg_cli_check_memory(const char *who, double params, int copies);

#endif
