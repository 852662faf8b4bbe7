#include "patchgrad/optim/summary.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>


/* Writes p's module name at that depth into out (PG_PARAM_NAME_MAX bytes). */
static void module_of(const char *name, int depth, char *out) {
  const char *last = strrchr(name, '.');
  size_t len = last ? (size_t)(last - name) : strlen(name); /* without the tensor's own name */
  size_t end = 0;
  int taken = 0;
  for (size_t pos = 0; pos < len;) {
    size_t stop = pos;
    while (stop < len && name[stop] != '.') stop++;
    bool number = stop > pos;
    for (size_t i = pos; i < stop; i++) number &= isdigit((unsigned char)name[i]) != 0;
    if (!number || taken == 0) {
      if (!number && taken == depth) break;
      if (!number) taken++;
    }
    end = stop;
    pos = stop + 1;
  }
  memcpy(out, name, end);
  out[end] = 0;
}

int pg_params_count_modules(const pg_params *ps, int depth, pg_module_count *out, int cap) {
  if (!ps) return pg_fail(PG_ERR_ARG, "pg_params_count_modules: params is NULL"), -1;
  if (depth < 1)
    return pg_fail(PG_ERR_ARG, "pg_params_count_modules: depth = %d must be >= 1", depth), -1;
  int n = 0;
  for (int i = 0; i < ps->count; i++) {
    const pg_param *p = &ps->items[i];
    char name[PG_PARAM_NAME_MAX];
    module_of(p->name, depth, name);
    /* first appearance order: look back among the modules seen so far; when
     * there is no room to keep them, count a module where it first appears */
    int m = -1;
    for (int j = 0; j < n && j < cap; j++)
      if (!strcmp(out[j].name, name)) m = j;
    if (m < 0 && n >= cap) {
      bool seen = false;
      for (int k = 0; k < i && !seen; k++) {
        char other[PG_PARAM_NAME_MAX];
        module_of(ps->items[k].name, depth, other);
        seen = !strcmp(other, name);
      }
      if (!seen) n++;
      continue;
    }
    if (m < 0) {
      m = n++;
      memset(&out[m], 0, sizeof out[m]);
      memcpy(out[m].name, name, strlen(name) + 1);
    }
    out[m].tensors++;
    out[m].params += p->tensor->numel;
    if (pg_param_trainable(p) && p->tensor->requires_grad) out[m].trainable += p->tensor->numel;
  }
  return n;
}

/* 1234567 -> "1,234,567" */
static const char *grouped(char buf[32], int64_t v) {
  char digits[24];
  int n = snprintf(digits, sizeof digits, "%lld", (long long)v), o = 0;
  for (int i = 0; i < n; i++) {
    if (i && digits[i - 1] != '-' && (n - i) % 3 == 0) buf[o++] = ',';
    buf[o++] = digits[i];
  }
  buf[o] = 0;
  return buf;
}

pg_status pg_params_print_summary(const pg_params *ps, int depth, FILE *f) {
  int n = pg_params_count_modules(ps, depth, NULL, 0);
  if (n < 0) return pg_last_status();
  pg_module_count *m = malloc((size_t)(n ? n : 1) * sizeof *m);
  if (!m) return pg_fail(PG_ERR_MEMORY, "pg_params_print_summary: out of memory");
  pg_params_count_modules(ps, depth, m, n);
  int width = (int)strlen("module");
  int64_t total = 0, trainable = 0;
  for (int i = 0; i < n; i++) {
    int len = (int)strlen(m[i].name);
    if (len > width) width = len;
    total += m[i].params;
    trainable += m[i].trainable;
  }
  char a[32], b[32];
  fprintf(f, "%-*s  %13s  %13s\n", width, "module", "params", "trainable");
  for (int i = 0; i < n; i++)
    fprintf(f, "%-*s  %13s  %13s\n", width, m[i].name, grouped(a, m[i].params),
            grouped(b, m[i].trainable));
  fprintf(f, "Total params: %s\n", grouped(a, total));
  fprintf(f, "Trainable params: %s\n", grouped(a, trainable));
  fprintf(f, "Non-trainable params: %s\n", grouped(a, total - trainable));
  free(m);
  if (ferror(f)) return pg_fail(PG_ERR_IO, "pg_params_print_summary: writing the summary failed");
  return PG_OK;
}
