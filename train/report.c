/* The training loop's progress lines (train/run.h: pg_run_report_default):
 * one set of fields for every model, fitted to the terminal's width. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "patchgrad/train/run_parts.h"

int pg_run_terminal_width(void) {
  struct winsize ws;
  if (ioctl(STDERR_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_col > 0) return ws.ws_col;
  const char *env = getenv("COLUMNS");
  char *end;
  const long c = env ? strtol(env, &end, 10) : 0;
  return env && *env && !*end && c >= 10 && c <= 100000 ? (int)c : 80;
}

char *pg_run_fit_line(char *buf, size_t cap, const char *const *fields, int n, int width) {
  size_t room = width > 1 ? (size_t)width - 1 : 0, at = 0;
  if (room > cap - 1) room = cap - 1;
  buf[0] = 0;
  for (int i = 0; i < n; i++) {
    const size_t len = strlen(fields[i]), sep = i ? 2 : 0;
    if (at + sep + len > room) {
      if (i == 0) {
        memcpy(buf, fields[0], room);
        buf[room] = 0;
      }
      break;
    }
    snprintf(buf + at, cap - at, "%s%s", sep ? "  " : "", fields[i]);
    at += sep + len;
  }
  return buf;
}

/* The label of a model column in progress lines: its own, else its name
 * without a "train_" or "val_" prefix. */
static const char *label_of(const pg_run_column *c) {
  if (c->label) return c->label;
  if (!strncmp(c->name, "train_", 6)) return c->name + 6;
  if (!strncmp(c->name, "val_", 4)) return c->name + 4;
  return c->name;
}

enum { MAX_FIELDS = 6 + PG_RUN_MAX_COLUMNS, FIELD_CHARS = 64 };

/* The fields of the progress line, most important first: step, the
 * training loss (run.h: at a row that row's, between rows the mean since
 * the last row) and the model's metrics likewise, lr, rate, ETA, epoch. */
static int progress_fields(const pg_run *run, bool at_row, char f[][FIELD_CHARS]) {
  int n = 0, nc;
  const pg_run_column *cols = pg_run_columns(run, &nc);
  const bool open = !at_row && run->interval_steps > 0;
  snprintf(f[n++], FIELD_CHARS, "step %lld/%lld", (long long)run->step, (long long)run->total);
  snprintf(f[n++], FIELD_CHARS, "loss %.4f",
           open ? run->interval_loss / (double)run->interval_steps : run->train_loss);
  for (int c = 0; c < nc; c++) {
    if (cols[c].source != PG_COL_METRIC) continue;
    const int k = cols[c].index;
    const double v = open ? run->interval_metrics[k] / (double)run->interval_samples : run->metrics[k];
    snprintf(f[n++], FIELD_CHARS, "%s %.4g", label_of(&cols[c]), v);
  }
  char eta[32];
  const double rate = pg_run_rate(run, false);
  pg_run_format_duration((double)(run->total - run->step) / rate, eta, sizeof eta);
  snprintf(f[n++], FIELD_CHARS, "lr %.2e", run->lr);
  snprintf(f[n++], FIELD_CHARS, "%.1f steps/s", rate);
  snprintf(f[n++], FIELD_CHARS, "ETA %s", eta);
  snprintf(f[n++], FIELD_CHARS, "epoch %.2f", (double)run->step / (double)run->batches_per_epoch);
  return n;
}

/* On a terminal: the line redrawn in place, as wide as the terminal allows;
 * elsewhere a plain line of all the fields. */
static void progress_line(const pg_run *run, bool at_row) {
  char f[MAX_FIELDS][FIELD_CHARS], line[MAX_FIELDS * (FIELD_CHARS + 2)];
  const char *fields[MAX_FIELDS];
  const int n = progress_fields(run, at_row, f);
  for (int i = 0; i < n; i++) fields[i] = f[i];
  if (run->tty) {
    fprintf(stderr, "\r\033[K%s", pg_run_fit_line(line, sizeof line, fields, n, pg_run_terminal_width()));
  } else {
    pg_run_fit_line(line, sizeof line, fields, n, (int)sizeof line);
    fprintf(stderr, "%s\n", line);
  }
}

/* "step s: validation loss V, accuracy A" */
static void validation_line(const pg_run *run) {
  int nc;
  const pg_run_column *cols = pg_run_columns(run, &nc);
  fprintf(stderr, "%sstep %lld: validation loss %.5f", run->tty ? "\n" : "", (long long)run->step, run->val[0]);
  for (int c = 0; c < nc; c++)
    if (cols[c].source == PG_COL_VAL && cols[c].index > 0)
      fprintf(stderr, ", %s %.5g", label_of(&cols[c]), run->val[cols[c].index]);
  fputc('\n', stderr);
}

void pg_run_report_default(void *self, const pg_run *run, pg_run_event event) {
  (void)self;
  const pg_run_model *m = run->model;
  const pg_run_opts *o = run->opts;
  char path[PG_RUN_PATH_MAX], line[2 * PG_RUN_PATH_MAX];
  switch (event) {
  case PG_RUN_START:
    fprintf(stderr, "%s: data %s\n", m->name, pg_latents_describe(run->info, o->data_path, line, sizeof line));
    fprintf(stderr, "%s: %lld parameters, %lld steps from step %lld, batch %lld", m->name,
            (long long)pg_params_numel(run->params, true), (long long)run->total, (long long)run->step,
            (long long)o->batch);
    if (run->accum > 1)
      fprintf(stderr, " (%lld micro-batches of %lld)", (long long)run->accum, (long long)(o->batch / run->accum));
    fprintf(stderr, ", %s lr %.2e\n", pg_optim_kind_name(o->optim.kind), o->optim.lr);
    break;
  case PG_RUN_TICK:
    progress_line(run, false);
    break;
  case PG_RUN_ROW:
    progress_line(run, true);
    if (run->validated) validation_line(run);
    break;
  case PG_RUN_STOPPED:
    fprintf(stderr, "\n%s: interrupted at step %lld; checkpoint saved to %s\n", m->name, (long long)run->step,
            pg_run_path(run, "ckpt.h5", path) ? path : "(nowhere: no output folder)");
    break;
  case PG_RUN_DONE:
    fprintf(stderr, "%s: %lld steps at %.1f steps/s", m->name, (long long)run->step, pg_run_rate(run, false));
    if (o->out_dir) {
      fprintf(stderr, "; wrote %s/ckpt.h5, loss.csv, loss.png", o->out_dir);
      if (m->extra_files) fprintf(stderr, ", %s", m->extra_files);
    }
    if (run->init_summary[0]) fprintf(stderr, "; %s", run->init_summary);
    fputc('\n', stderr);
    break;
  }
  fflush(stderr);
}
