#include "sizes.h"

#include <string.h>

static const pg_cli_dit_size sizes[] = {
    {"tiny", 64, 2, 4, 32, 8, 50},
    {"small", 128, 4, 4, 64, 16, 20},
    {"medium", 384, 6, 6, 16, 32, 8},
};

const pg_cli_dit_size *pg_cli_dit_size_find(pg_args *a, const char *name) {
  for (size_t i = 0; i < sizeof sizes / sizeof *sizes; i++)
    if (!strcmp(sizes[i].name, name)) return &sizes[i];
  pg_args_error(a, "--size '%s' is not one of tiny, small, medium", name);
  a->failed = true;
  return NULL;
}
