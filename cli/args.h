/* Command-line flags of the patchgrad subcommands, parsed one at a time:
 *
 *   pg_args a = pg_args_begin("train", argc, argv);
 *   while (pg_args_next(&a)) {
 *     if (pg_arg_int(&a, "--steps", 1, INT64_MAX, &steps)) continue;
 *     if (pg_arg_double(&a, "--lr", 0, INFINITY, &lr)) continue;
 *     ... return pg_args_unknown(&a);
 *   }
 *   if (a.failed) return 2;
 *
 * A matcher returns true when argv[i] is its flag (consuming the value); a
 * bad or missing value prints "patchgrad CMD: --flag 'v' is not ..." and sets
 * a.failed, which ends the loop. */
#ifndef PG_ARGS_H
#define PG_ARGS_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "patchgrad/io/kv.h"

typedef struct {
  const char *cmd;
  int argc;
  char **argv;
  int i;
  bool failed;
} pg_args;

pg_args pg_args_begin(const char *cmd, int argc, char **argv);
/* Advances to the next argument; false at the end or after a failure. */
bool pg_args_next(pg_args *a);
/* The current argument. */
const char *pg_args_current(const pg_args *a);

bool pg_arg_int(pg_args *a, const char *flag, int64_t min, int64_t max, int64_t *out);
bool pg_arg_double(pg_args *a, const char *flag, double min, double max, double *out);
bool pg_arg_string(pg_args *a, const char *flag, const char **out);
/* A flag without a value. */
bool pg_arg_switch(pg_args *a, const char *flag, bool *out);
/* A flag of a model's config table (io/kv.h): true when the current
 * argument is one of the table's flags, whose value (in the field's range)
 * is then stored in its member of config. */
bool pg_arg_field(pg_args *a, int n, const pg_config_field *fields, void *config);
/* Usage lines of a config table's flags, with the values of `defaults` (a
 * config struct): when `grouped`, one line "  --patch P (4)  --hidden H (64)
 * ..." of the flags without help; then a line "  --flag V    help (default)"
 * for each flag with help, wrapped at 80 columns. */
void pg_args_usage_fields(FILE *f, int n, const pg_config_field *fields, const void *defaults, bool grouped);
/* Prints "unknown option" and returns 2 (the usage exit status). */
int pg_args_unknown(pg_args *a);
/* True when the current argument asks for the usage (--help or -h). */
bool pg_args_help(const pg_args *a);
/* Prints "patchgrad CMD: message" for an error of the command itself and
 * returns 2 (the usage exit status): `return pg_args_error(&a, ...);`. */
int pg_args_error(const pg_args *a, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#endif
