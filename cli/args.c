#include "args.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

pg_args pg_args_begin(const char *cmd, int argc, char **argv) {
  return (pg_args){.cmd = cmd, .argc = argc, .argv = argv, .i = 0};
}

bool pg_args_next(pg_args *a) { return !a->failed && ++a->i < a->argc; }

const char *pg_args_current(const pg_args *a) { return a->argv[a->i]; }

bool pg_args_help(const pg_args *a) {
  const char *arg = pg_args_current(a);
  return !strcmp(arg, "--help") || !strcmp(arg, "-h");
}

int pg_args_error(const pg_args *a, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  fprintf(stderr, "patchgrad %s: ", a->cmd);
  vfprintf(stderr, fmt, ap);
  fputc('\n', stderr);
  va_end(ap);
  return 2;
}

/* The value after the flag, or NULL (with the error) when it is missing. */
static const char *value_of(pg_args *a, const char *flag) {
  if (a->i + 1 >= a->argc) {
    pg_args_error(a, "%s needs a value", flag);
    a->failed = true;
    return NULL;
  }
  return a->argv[++a->i];
}

bool pg_arg_string(pg_args *a, const char *flag, const char **out) {
  if (strcmp(a->argv[a->i], flag)) return false;
  const char *v = value_of(a, flag);
  if (v) *out = v;
  return true;
}

bool pg_arg_int(pg_args *a, const char *flag, int64_t min, int64_t max, int64_t *out) {
  const char *v = NULL;
  if (!pg_arg_string(a, flag, &v)) return false;
  if (!v) return true;
  char *end;
  errno = 0;
  long long x = strtoll(v, &end, 10);
  if (errno || end == v || *end || x < min || x > max) {
    pg_args_error(a, "%s '%s' is not an integer in [%lld, %lld]", flag, v, (long long)min, (long long)max);
    a->failed = true;
  } else {
    *out = x;
  }
  return true;
}

bool pg_arg_double(pg_args *a, const char *flag, double min, double max, double *out) {
  const char *v = NULL;
  if (!pg_arg_string(a, flag, &v)) return false;
  if (!v) return true;
  char *end;
  errno = 0;
  double x = strtod(v, &end);
  if (errno || end == v || *end || !(x >= min && x <= max)) {
    pg_args_error(a, "%s '%s' is not a number in [%g, %g]", flag, v, min, max);
    a->failed = true;
  } else {
    *out = x;
  }
  return true;
}

bool pg_arg_switch(pg_args *a, const char *flag, bool *out) {
  if (strcmp(a->argv[a->i], flag)) return false;
  *out = true;
  return true;
}

int pg_args_unknown(pg_args *a) {
  pg_args_error(a, "unknown option '%s' (see patchgrad %s --help)", a->argv[a->i], a->cmd);
  a->failed = true;
  return 2;
}

bool pg_arg_field(pg_args *a, int n, const pg_config_field *fields, void *config) {
  for (int i = 0; i < n; i++) {
    const pg_config_field *f = &fields[i];
    if (!f->flag) continue;
    void *member = (char *)config + f->offset;
    if (f->type == PG_FIELD_INT) {
      if (pg_arg_int(a, f->flag, (int64_t)f->min, (int64_t)f->max, member)) return true;
    } else if (f->type == PG_FIELD_FLOAT) {
      double v = *(float *)member;
      if (pg_arg_double(a, f->flag, f->min, f->max, &v)) {
        *(float *)member = (float)v;
        return true;
      }
    } else if (pg_arg_switch(a, f->flag, member)) {
      return true;
    }
  }
  return false;
}

/* A field's value in config, as usage text shows it ("" for a switch). */
static const char *field_value(const pg_config_field *f, const void *config, char *buf, size_t cap) {
  const void *member = (const char *)config + f->offset;
  if (f->type == PG_FIELD_INT) snprintf(buf, cap, "%lld", (long long)*(const int64_t *)member);
  else if (f->type == PG_FIELD_FLOAT) snprintf(buf, cap, "%g", (double)*(const float *)member);
  else buf[0] = 0;
  return buf;
}

void pg_args_usage_fields(FILE *f, int n, const pg_config_field *fields, const void *defaults, bool grouped) {
  char value[64], text[512], flag[64];
  bool any = false;
  for (int i = 0; grouped && i < n; i++) {
    if (!fields[i].flag || fields[i].help) continue;
    fprintf(f, "  %s %s (%s)", fields[i].flag, fields[i].metavar, field_value(&fields[i], defaults, value, sizeof value));
    any = true;
  }
  if (any) fputc('\n', f);
  for (int i = 0; i < n; i++) {
    const pg_config_field *fd = &fields[i];
    if (!fd->flag || !fd->help) continue;
    snprintf(flag, sizeof flag, "%s%s%s", fd->flag, fd->metavar ? " " : "", fd->metavar ? fd->metavar : "");
    field_value(fd, defaults, value, sizeof value);
    snprintf(text, sizeof text, value[0] ? "%s (%s)" : "%s", fd->help, value);
    /* the help after a 24-column margin, broken at spaces before column 80 */
    fprintf(f, "  %-21s", flag);
    int col = 23;
    for (const char *w = text; *w;) {
      const char *end = strchr(w, ' ');
      int len = end ? (int)(end - w) : (int)strlen(w);
      if (col > 23 && col + 1 + len > 80) {
        fprintf(f, "\n%23s", "");
        col = 23;
      }
      fprintf(f, " %.*s", len, w);
      col += 1 + len;
      w += len;
      while (*w == ' ') w++;
    }
    fputc('\n', f);
  }
}
