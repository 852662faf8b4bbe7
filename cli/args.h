/* Command-line flags of the patchgrad subcommands, parsed one at a time:
 *
 *   pg_args a = pg_args_begin("train", argc, argv);
 *   while (pg_args_next(&a)) {
 *     if (pg_args_help(&a)) return usage(stdout);
 *     if (pg_arg_int(&a, "--steps", 1, INT64_MAX, &steps)) continue;
 *     if (pg_arg_double(&a, "--lr", 0, INFINITY, &lr)) continue;
 *     ... return pg_args_unknown(&a);
 *   }
 *   if (a.failed) return 2;
 *
 * The conventions (README, "The command line"): every valued flag takes its
 * value as the next argument or after an equals sign (`--lr 1e-3` and
 * `--lr=1e-3` are the same); a switch takes none (`--ema=1` is refused);
 * `-h` and `--help` print the usage on stdout and exit 0; names are never
 * abbreviated. A matcher returns true when argv[i] is its flag (consuming
 * the value); a bad or missing value prints "patchgrad CMD: --flag 'v' is
 * not ..." naming the accepted range and sets a.failed, which ends the loop.
 *
 * Why not getopt_long: it abbreviates long names (`--lr` would also match a
 * `--lr-for`, silently), permutes argv, and prints its own messages, which
 * name neither the accepted range nor the subcommand; every value would
 * still have to be converted and range-checked here, and the model's flags
 * come from their config tables (pg_arg_field), which getopt_long would need
 * copied into a `struct option` array per command. This one small file
 * gives exact names, `--flag=value`, ranged errors and the table-driven
 * flags with one loop shape in every command. */
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

/* Valued flags: `flag V` or `flag=V`. A range with max INT64_MAX is shown
 * as ">= min". */
bool pg_arg_int(pg_args *a, const char *flag, int64_t min, int64_t max, int64_t *out);
bool pg_arg_double(pg_args *a, const char *flag, double min, double max, double *out);
bool pg_arg_string(pg_args *a, const char *flag, const char **out);
/* A flag without a value; `flag=...` is an error naming the flag. */
bool pg_arg_switch(pg_args *a, const char *flag, bool *out);
/* An operand: the current argument when it is not an option (it does not
 * start with '-', or it is "-" alone). */
bool pg_arg_operand(pg_args *a, const char **out);
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
/* True when arg asks for the usage (--help or -h), for the commands that
 * pick a sub-command from their first word. */
bool pg_args_is_help(const char *arg);
/* Prints "patchgrad CMD: message" for an error of the command itself and
 * returns 2 (the usage exit status): `return pg_args_error(&a, ...);`. */
int pg_args_error(const pg_args *a, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Whether `word` is one of the space-separated words of `words`. */
bool pg_args_has_word(const char *words, const char *word);
/* Whether s ends with tail ("grid.png", ".png"). */
bool pg_args_ends_with(const char *s, const char *tail);

/* Prints a library error under a command: "patchgrad CMD: msg" on stderr.
 * The library's messages often start with the name of their part
 * ("classify: x.h5 has no labels", "train: ...", "vae sheet: ..."); the
 * words of such a prefix that repeat the command's own words are dropped
 * (all of it when nothing else is left), so a line never says
 * "patchgrad classify train: classify: ...". */
void pg_cli_print_error(const char *cmd, const char *msg);
/* pg_cli_print_error(cmd, pg_last_error()) and returns code (1 for a failed
 * run): `return pg_cli_fail("sample", 1);`. */
int pg_cli_fail(const char *cmd, int code);

#endif
