#include "data_args.h"

bool pg_arg_data(pg_args *a, pg_data_opts *d) {
  return pg_arg_string(a, "--data-key", &d->data_key) ||
         pg_arg_string(a, "--label-key", &d->label_key) ||
         pg_arg_double(a, "--scale", 1e-30, 1e30, &d->scale) ||
         pg_arg_double(a, "--shift", -1e30, 1e30, &d->shift) ||
         pg_arg_string(a, "--stats-from", &d->stats_from);
}

void pg_args_usage_data(FILE *f) {
  fprintf(f,
"reading the data (--data and --val-data alike; docs/latents.md)\n"
"  --data-key NAME       the samples' dataset (latents); its attribute layout says\n"
"                        NHWC or NCHW (channels first: transposed on load)\n"
"  --label-key NAME      the labels' dataset (labels), any integer type\n"
"  --scale S --shift M   read each value x as (x - M) * S (1, 0); sample sheets undo it\n"
"  --stats-from T.h5     bring every file to T.h5's mean and std (its attributes,\n"
"                        else those of its values)\n");
}
