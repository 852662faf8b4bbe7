#include "data_args.h"

bool pg_arg_data(pg_args *a, pg_data_opts *d) {
  return pg_arg_string(a, "--data-key", &d->data_key) ||
         pg_arg_string(a, "--label-key", &d->label_key) ||
         pg_arg_double(a, "--scale", 1e-30, 1e30, &d->scale) ||
         pg_arg_double(a, "--shift", -1e30, 1e30, &d->shift) ||
         pg_arg_string(a, "--stats-from", &d->stats_from);
}

