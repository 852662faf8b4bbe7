#include "args.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "patchgrad/autograd/error.h"

pg_args pg_args_begin(const char *cmd, int argc, char **argv) {
  return (pg_args){.cmd = cmd, .argc = argc, .argv = argv, .i = 0};
}

bool pg_args_next(pg_args *a) { return !a->failed && ++a->i < a->argc; }

const char *pg_args_current(const pg_args *a) { return a->argv[a->i]; }

bool pg_args_is_help(const char *arg) { return !strcmp(arg, "--help") || !strcmp(arg, "-h"); }

bool pg_args_help(const pg_args *a) { return pg_args_is_help(pg_args_current(a)); }

int pg_args_error(const pg_args *a, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  fprintf(stderr, "patchgrad %s: ", a->cmd);
  vfprintf(stderr, fmt, ap);
  fputc('\n', stderr);
  va_end(ap);
  return 2;
}

/* Whether the current argument is `flag` alone or `flag=...`; for the
 * latter, *inline_value points after the '='. */
static bool is_flag(const pg_args *a, const char *flag, const char **inline_value) {
  const char *arg = a->argv[a->i];
  const size_t n = strlen(flag);
  *inline_value = NULL;
  if (strncmp(arg, flag, n)) return false;
  if (arg[n] == '=') *inline_value = arg + n + 1;
  return arg[n] == 0 || arg[n] == '=';
}

bool pg_arg_string(pg_args *a, const char *flag, const char **out) {
  const char *v;
  if (!is_flag(a, flag, &v)) return false;
  if (!v && a->i + 1 >= a->argc) {
    pg_args_error(a, "%s needs a value", flag);
    a->failed = true;
    return true;
  }
  *out = v ? v : a->argv[++a->i];
  return true;
}

/* The value of a valued flag (NULL: not this flag, or missing and said). */
static const char *value_of(pg_args *a, const char *flag, bool *matched) {
  const char *v = NULL;
  *matched = pg_arg_string(a, flag, &v);
  return *matched && !a->failed ? v : NULL;
}

bool pg_arg_int(pg_args *a, const char *flag, int64_t min, int64_t max, int64_t *out) {
  bool matched;
  const char *v = value_of(a, flag, &matched);
  if (!v) return matched;
  char *end;
  errno = 0;
  long long x = strtoll(v, &end, 10);
  if (errno || end == v || *end || x < min || x > max) {
    if (max == INT64_MAX) pg_args_error(a, "%s '%s' is not an integer >= %lld", flag, v, (long long)min);
    else pg_args_error(a, "%s '%s' is not an integer in [%lld, %lld]", flag, v, (long long)min, (long long)max);
    a->failed = true;
  } else {
    *out = x;
  }
  return true;
}

bool pg_arg_double(pg_args *a, const char *flag, double min, double max, double *out) {
  bool matched;
  const char *v = value_of(a, flag, &matched);
  if (!v) return matched;
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
  const char *v;
  if (!is_flag(a, flag, &v)) return false;
  if (v) {
    pg_args_error(a, "%s takes no value (got '%s')", flag, a->argv[a->i]);
    a->failed = true;
    return true;
  }
  *out = true;
  return true;
}

bool pg_arg_operand(pg_args *a, const char **out) {
  const char *arg = a->argv[a->i];
  if (arg[0] == '-' && arg[1]) return false;
  *out = arg;
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

/* Whether the `len` characters at w are one of the words of `words`. */
static bool has_word(const char *words, const char *w, size_t len) {
  for (const char *c = words; *c;) {
    const size_t n = strcspn(c, " ");
    if (n == len && !strncmp(c, w, len)) return true;
    c += n;
    c += strspn(c, " ");
  }
  return false;
}

bool pg_args_has_word(const char *words, const char *word) { return has_word(words, word, strlen(word)); }

bool pg_args_ends_with(const char *s, const char *tail) {
  const size_t n = strlen(s), t = strlen(tail);
  return n >= t && !strcmp(s + n - t, tail);
}

/* The length of msg's prefix "word word: " when every word of it is one of
 * the command's words (0 otherwise). */
static size_t repeated_prefix(const char *cmd, const char *msg) {
  const char *colon = strstr(msg, ": ");
  if (!colon || colon == msg) return 0;
  for (const char *w = msg; w < colon;) {
    const size_t n = strspn(w, "abcdefghijklmnopqrstuvwxyz");
    if (!n || !has_word(cmd, w, n)) return 0;
    w += n;
    if (w < colon && *w++ != ' ') return 0;
  }
  return (size_t)(colon - msg) + 2;
}

void pg_cli_print_error(const char *cmd, const char *msg) {
  fprintf(stderr, "patchgrad %s: %s\n", cmd, msg + repeated_prefix(cmd, msg));
}

int pg_cli_fail(const char *cmd, int code) {
  pg_cli_print_error(cmd, pg_last_error());
  return code;
}
