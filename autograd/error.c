#include "patchgrad/autograd/error.h"

#include <stdarg.h>
#include <stdio.h>

static _Thread_local char last_message[1024];
static _Thread_local pg_status last_status;

const char *pg_last_error(void) { return last_message; }
pg_status pg_last_status(void) { return last_status; }

void pg_clear_error(void) {
  last_message[0] = '\0';
  last_status = PG_OK;
}

pg_status pg_fail(pg_status status, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(last_message, sizeof last_message, fmt, ap);
  va_end(ap);
  last_status = status;
  return status;
}

char *pg_shape_str(char *buf, int cap, int ndim, const long long *shape) {
  int n = snprintf(buf, (size_t)cap, "[");
  for (int i = 0; i < ndim && n < cap; i++)
    n += snprintf(buf + n, (size_t)(cap - n), i ? ", %lld" : "%lld", shape[i]);
  if (n < cap) snprintf(buf + n, (size_t)(cap - n), "]");
  return buf;
}
