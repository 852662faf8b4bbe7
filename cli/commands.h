/* The subcommands of the `patchgrad` program: each is one file cli/cmd_*.c
 * with an entry `int pg_cmd_NAME(int argc, char **argv)` (argv[0] is the
 * subcommand's name) returning the process exit status. */
#ifndef PG_COMMANDS_H
#define PG_COMMANDS_H

typedef struct {
  const char *name;
  int (*run)(int argc, char **argv);
  const char *summary;
} pg_command;

/* cli/cmd_vae.c */
int pg_cmd_vae(int argc, char **argv);

#endif
