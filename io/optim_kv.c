#include "patchgrad/io/optim_kv.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The numeric fields, by their torch.optim names. */
#define DOUBLE_FIELDS(X) X(lr) X(weight_decay) X(momentum) X(dampening) X(beta1) X(beta2) X(eps)
#define BOOL_FIELDS(X) X(decay_weights_only) X(nesterov) X(amsgrad)

/* The keys pg_optimizer_to_kv adds to the config's. */
#define GROUPS_KEY "param_groups"
#define SKIPPED_KEY "skipped_steps"

pg_status pg_optim_config_to_kv(const pg_optim_config *cfg, pg_kv *kv) {
  pg_kv_clear(kv);
  pg_status st = pg_kv_set_string(kv, "optimizer", pg_optim_kind_name(cfg->kind));
#define SET_DOUBLE(f) if (!st) st = pg_kv_set_double(kv, #f, cfg->f);
#define SET_BOOL(f) if (!st) st = pg_kv_set_int(kv, #f, cfg->f ? 1 : 0);
  DOUBLE_FIELDS(SET_DOUBLE)
  BOOL_FIELDS(SET_BOOL)
#undef SET_DOUBLE
#undef SET_BOOL
  return st;
}

static pg_status missing(const char *key) {
  return pg_fail(PG_ERR_FORMAT, "optimizer settings: '%s' is missing", key);
}

/* key is `base` or `base.<anything>` */
static bool under(const char *key, const char *base) {
  size_t n = strlen(base);
  return !strncmp(key, base, n) && (key[n] == 0 || key[n] == '.');
}

/* A 0/1 int entry; 1 found, 0 absent, -1 error (message set). */
static int get_bool(const pg_kv *kv, const char *key, bool *out) {
  int64_t v;
  int rc = pg_kv_get_int(kv, key, &v);
  if (rc <= 0) return rc;
  if (v != 0 && v != 1) {
    pg_fail(PG_ERR_FORMAT, "optimizer settings: '%s' is %lld (expected 0 or 1)", key, (long long)v);
    return -1;
  }
  *out = v == 1;
  return 1;
}

pg_status pg_optim_config_from_kv(const pg_kv *kv, pg_optim_config *cfg) {
  pg_optim_config c;
  memset(&c, 0, sizeof c);
  const char *name;
  int rc = pg_kv_get_string(kv, "optimizer", &name);
  if (rc < 0) return pg_last_status();
  if (rc == 0) return missing("optimizer");
  if (pg_optim_kind_parse(name, &c.kind)) return pg_last_status();
#define GET_DOUBLE(f)                                  \
  rc = pg_kv_get_double(kv, #f, &c.f);                 \
  if (rc < 0) return pg_last_status();                 \
  if (rc == 0) return missing(#f);
#define GET_BOOL(f)                    \
  rc = get_bool(kv, #f, &c.f);         \
  if (rc < 0) return pg_last_status(); \
  if (rc == 0) return missing(#f);
  DOUBLE_FIELDS(GET_DOUBLE)
  BOOL_FIELDS(GET_BOOL)
#undef GET_DOUBLE
#undef GET_BOOL
  static const char *known[] = {"optimizer", "lr", "weight_decay", "momentum", "dampening",
                                "beta1", "beta2", "eps", "decay_weights_only", "nesterov",
                                "amsgrad", "initial_lr"};
  for (int i = 0; i < kv->count; i++) {
    const char *key = kv->items[i].key;
    bool ok = under(key, GROUPS_KEY) || under(key, SKIPPED_KEY);
    for (size_t k = 0; k < sizeof known / sizeof *known; k++) ok |= !strcmp(key, known[k]);
    if (!ok) return pg_fail(PG_ERR_FORMAT, "optimizer settings: unknown key '%s'", key);
  }
  if (pg_optim_config_check(&c)) return pg_last_status();
  *cfg = c;
  return PG_OK;
}

/* ---- Param groups ---- */

static const char *group_key(char *buf, int k, const char *field) {
  snprintf(buf, PG_KV_KEY_MAX, GROUPS_KEY ".%d.%s", k, field);
  return buf;
}

/* The skipped steps as "I:N" / "I-J:N" tokens, cut into attributes of at
 * most PG_KV_STRING_MAX - 1 bytes at token boundaries. */
static pg_status skipped_to_kv(const pg_optimizer *opt, pg_kv *kv) {
  char text[PG_KV_STRING_MAX];
  size_t len = 0;
  int part = 0;
  pg_status st = PG_OK;
  for (int i = 0; i < opt->n_slots && !st;) {
    const int64_t n = opt->slots[i].skipped;
    int j = i;
    while (j + 1 < opt->n_slots && opt->slots[j + 1].skipped == n) j++;
    if (n != 0) {
      char token[64];
      int tl = i == j ? snprintf(token, sizeof token, "%d:%lld", i, (long long)n)
                      : snprintf(token, sizeof token, "%d-%d:%lld", i, j, (long long)n);
      if (len && len + 1 + (size_t)tl >= sizeof text) { /* this attribute is full */
        char key[PG_KV_KEY_MAX];
        snprintf(key, sizeof key, part ? SKIPPED_KEY ".%d" : SKIPPED_KEY, part);
        st = pg_kv_set_string(kv, key, text);
        part++;
        len = 0;
      }
      len += (size_t)snprintf(text + len, sizeof text - len, len ? " %s" : "%s", token);
    }
    i = j + 1;
  }
  if (!st && len) {
    char key[PG_KV_KEY_MAX];
    snprintf(key, sizeof key, part ? SKIPPED_KEY ".%d" : SKIPPED_KEY, part);
    st = pg_kv_set_string(kv, key, text);
  }
  return st;
}

pg_status pg_optimizer_to_kv(const pg_optimizer *opt, pg_kv *kv) {
  pg_status st = pg_optim_config_to_kv(&opt->config, kv);
  if (!st) st = pg_kv_set_double(kv, "initial_lr", opt->initial_lr);
  if (!st) st = pg_kv_set_int(kv, GROUPS_KEY, opt->n_param_groups);
  char key[PG_KV_KEY_MAX];
  for (int k = 1; k <= opt->n_param_groups && !st; k++) {
    const pg_param_group *g = &opt->param_groups[k - 1];
    st = pg_kv_set_string(kv, group_key(key, k, "pattern"), g->pattern);
    if (!st) st = pg_kv_set_double(kv, group_key(key, k, "lr"), g->lr);
    if (!st) st = pg_kv_set_double(kv, group_key(key, k, "weight_decay"), g->weight_decay);
    if (!st) st = pg_kv_set_double(kv, group_key(key, k, "beta1"), g->betas[0]);
    if (!st) st = pg_kv_set_double(kv, group_key(key, k, "beta2"), g->betas[1]);
    if (!st) st = pg_kv_set_double(kv, group_key(key, k, "momentum"), g->momentum);
    if (!st) st = pg_kv_set_int(kv, group_key(key, k, "frozen"), g->frozen ? 1 : 0);
  }
  return st ? st : skipped_to_kv(opt, kv);
}

static pg_status need_double(const pg_kv *kv, const char *key, double *out) {
  int rc = pg_kv_get_double(kv, key, out);
  if (rc < 0) return pg_last_status();
  return rc ? PG_OK : missing(key);
}

pg_status pg_optim_groups_from_kv(const pg_kv *kv, pg_param_group *groups, int cap, int *n) {
  *n = 0;
  int64_t count = 0;
  int rc = pg_kv_get_int(kv, GROUPS_KEY, &count);
  if (rc < 0) return pg_last_status();
  if (rc == 0) return PG_OK;
  if (count < 0)
    return pg_fail(PG_ERR_FORMAT, "optimizer settings: '" GROUPS_KEY "' is %lld (expected >= 0)",
                   (long long)count);
  if (count > cap)
    return pg_fail(PG_ERR_ARG, "optimizer settings: %lld param groups, room for %d", (long long)count,
                   cap);
  char key[PG_KV_KEY_MAX];
  for (int k = 1; k <= count; k++) {
    pg_param_group g = {0};
    rc = pg_kv_get_string(kv, group_key(key, k, "pattern"), &g.pattern);
    if (rc < 0) return pg_last_status();
    if (rc == 0) return missing(key);
    pg_status st;
    if ((st = need_double(kv, group_key(key, k, "lr"), &g.lr)) ||
        (st = need_double(kv, group_key(key, k, "weight_decay"), &g.weight_decay)) ||
        (st = need_double(kv, group_key(key, k, "beta1"), &g.betas[0])) ||
        (st = need_double(kv, group_key(key, k, "beta2"), &g.betas[1])) ||
        (st = need_double(kv, group_key(key, k, "momentum"), &g.momentum)))
      return st;
    rc = get_bool(kv, group_key(key, k, "frozen"), &g.frozen);
    if (rc < 0) return pg_last_status();
    if (rc == 0) return missing(key);
    groups[k - 1] = g;
  }
  *n = (int)count;
  return PG_OK;
}

/* ---- Comparing a checkpoint's settings with this run's ---- */

static const char *const comparable[] = {"lr", "weight_decay", "betas", "momentum", "dampening",
                                         "nesterov", "eps", "amsgrad", "decay_weights_only",
                                         "frozen"};

static bool skip_field(const char *const *may_differ, const char *field) {
  for (; may_differ && *may_differ; may_differ++)
    if (!strcmp(*may_differ, field)) return true;
  return false;
}

/* The shortest text that reads back as v (0.01, not 0.01000000000000000021). */
static const char *num(char buf[32], double v) {
  for (int prec = 6; prec <= 17; prec++) {
    snprintf(buf, 32, "%.*g", prec, v);
    if (strtod(buf, NULL) == v) break;
  }
  return buf;
}

/* "(0.9, 0.999)" */
static const char *pair(char buf[72], double a, double b) {
  char x[32], y[32];
  snprintf(buf, 72, "(%s, %s)", num(x, a), num(y, b));
  return buf;
}

/* The settings that shape an update, for the config or one group. */
typedef struct {
  double lr, weight_decay, beta1, beta2, momentum;
  bool frozen;
} group_values;

/* Compares one group's (or the config's) values; `who` is "optimizer" or
 * "param group K ('pattern')". */
static pg_status compare_values(const char *who, pg_optim_kind kind, const group_values *ck,
                                const group_values *run, bool compare_lr,
                                const char *const *may_differ) {
  char a[72], b[72];
#define mismatch "%s %s: checkpoint %s, this run %s"
  if (compare_lr && !skip_field(may_differ, "lr") && ck->lr != run->lr)
    return pg_fail(PG_ERR_ARG, mismatch, who, "lr", num(a, ck->lr), num(b, run->lr));
  if (!skip_field(may_differ, "weight_decay") && ck->weight_decay != run->weight_decay)
    return pg_fail(PG_ERR_ARG, mismatch, who, "weight_decay", num(a, ck->weight_decay),
                   num(b, run->weight_decay));
  if (kind == PG_OPTIM_SGD) {
    if (!skip_field(may_differ, "momentum") && ck->momentum != run->momentum)
      return pg_fail(PG_ERR_ARG, mismatch, who, "momentum", num(a, ck->momentum),
                     num(b, run->momentum));
  } else if (!skip_field(may_differ, "betas") && (ck->beta1 != run->beta1 || ck->beta2 != run->beta2)) {
    return pg_fail(PG_ERR_ARG, mismatch, who, "betas", pair(a, ck->beta1, ck->beta2),
                   pair(b, run->beta1, run->beta2));
  }
  if (!skip_field(may_differ, "frozen") && ck->frozen != run->frozen)
    return pg_fail(PG_ERR_ARG, mismatch, who, "frozen", ck->frozen ? "yes" : "no",
                   run->frozen ? "yes" : "no");
#undef mismatch
  return PG_OK;
}

/* The settings shared by every group (those of the config alone). */
static pg_status compare_shared(const pg_optim_config *ck, const pg_optim_config *run,
                                const char *const *may_differ) {
  char a[32], b[32];
#define mismatch "optimizer %s: checkpoint %s, this run %s"
#define DIFFERS(field) (!skip_field(may_differ, #field) && ck->field != run->field)
  if (ck->kind == PG_OPTIM_SGD) {
    if (DIFFERS(dampening))
      return pg_fail(PG_ERR_ARG, mismatch, "dampening", num(a, ck->dampening), num(b, run->dampening));
    if (DIFFERS(nesterov))
      return pg_fail(PG_ERR_ARG, mismatch, "nesterov", ck->nesterov ? "on" : "off",
                     run->nesterov ? "on" : "off");
  } else {
    if (DIFFERS(eps)) return pg_fail(PG_ERR_ARG, mismatch, "eps", num(a, ck->eps), num(b, run->eps));
    if (DIFFERS(amsgrad))
      return pg_fail(PG_ERR_ARG, mismatch, "amsgrad", ck->amsgrad ? "on" : "off",
                     run->amsgrad ? "on" : "off");
  }
  if (DIFFERS(decay_weights_only))
    return pg_fail(PG_ERR_ARG, mismatch, "decay_weights_only", ck->decay_weights_only ? "on" : "off",
                   run->decay_weights_only ? "on" : "off");
#undef DIFFERS
#undef mismatch
  return PG_OK;
}

/* "2 ('*.bias', 'norm.*')", cut short with "..." when long. */
static const char *pattern_list(char *buf, size_t cap, int n, const pg_param_group *g) {
  size_t len = (size_t)snprintf(buf, cap, "%d", n);
  for (int k = 0; k < n && len < cap; k++)
    len += (size_t)snprintf(buf + len, cap - len, "%s'%s'%s", k ? ", " : " (", g[k].pattern,
                            k + 1 == n ? ")" : "");
  if (len >= cap && cap > 4) memcpy(buf + cap - 4, "...", 4);
  return buf;
}

/* Most groups a checkpoint may hold: a bound for the comparison's buffer. */
#define MAX_STORED_GROUPS 256

pg_status pg_optimizer_check_kv(const pg_kv *stored, const pg_optimizer *opt,
                                const char *const *may_differ) {
  if (!stored || !opt) return pg_fail(PG_ERR_ARG, "pg_optimizer_check_kv: stored or opt is NULL");
  for (const char *const *m = may_differ; m && *m; m++) {
    bool known = false;
    for (size_t k = 0; k < sizeof comparable / sizeof *comparable; k++) known |= !strcmp(*m, comparable[k]);
    if (!known)
      return pg_fail(PG_ERR_ARG, "pg_optimizer_check_kv: '%s' is not a setting that is compared "
                     "(lr, weight_decay, betas, momentum, dampening, nesterov, eps, amsgrad, "
                     "decay_weights_only, frozen)", *m);
  }
  pg_optim_config ck;
  pg_status st = pg_optim_config_from_kv(stored, &ck);
  if (st) return st;
  const pg_optim_config *run = &opt->config;
  if (ck.kind != run->kind)
    return pg_fail(PG_ERR_ARG, "the checkpoint was trained with %s, this run uses %s",
                   pg_optim_kind_name(ck.kind), pg_optim_kind_name(run->kind));
  double initial_lr = 0;
  int rc = pg_kv_get_double(stored, "initial_lr", &initial_lr);
  if (rc < 0) return pg_last_status();
  group_values ck0 = {initial_lr, ck.weight_decay, ck.beta1, ck.beta2, ck.momentum, false};
  group_values run0 = {opt->initial_lr, run->weight_decay, run->beta1, run->beta2, run->momentum, false};
  if ((st = compare_values("optimizer", ck.kind, &ck0, &run0, rc == 1, may_differ)) ||
      (st = compare_shared(&ck, run, may_differ)))
    return st;

  pg_param_group *groups = malloc(MAX_STORED_GROUPS * sizeof *groups);
  if (!groups) return pg_fail(PG_ERR_MEMORY, "pg_optimizer_check_kv: out of memory");
  int n = 0;
  st = pg_optim_groups_from_kv(stored, groups, MAX_STORED_GROUPS, &n);
  if (!st && n != opt->n_param_groups) {
    char a[400], b[400];
    st = pg_fail(PG_ERR_ARG, "param groups: checkpoint %s, this run %s",
                 pattern_list(a, sizeof a, n, groups),
                 pattern_list(b, sizeof b, opt->n_param_groups, opt->param_groups));
  }
  for (int k = 1; k <= n && !st; k++) {
    const pg_param_group *g = &groups[k - 1], *r = &opt->param_groups[k - 1];
    if (strcmp(g->pattern, r->pattern)) {
      st = pg_fail(PG_ERR_ARG, "param group %d pattern: checkpoint '%s', this run '%s'", k, g->pattern,
                   r->pattern);
      break;
    }
    char who[PG_PARAM_GROUP_PATTERN_MAX + 32];
    snprintf(who, sizeof who, "param group %d ('%s')", k, g->pattern);
    group_values a = {g->lr, g->weight_decay, g->betas[0], g->betas[1], g->momentum, g->frozen};
    group_values b = {r->lr, r->weight_decay, r->betas[0], r->betas[1], r->momentum, r->frozen};
    st = compare_values(who, ck.kind, &a, &b, true, may_differ);
  }
  free(groups);
  return st;
}

/* ---- Skipped steps ---- */

/* Parses one "I:N" or "I-J:N" token into the slots' counts (skipped). */
static pg_status parse_token(const char *key, const char *tok, int n_slots, int64_t step,
                             int64_t *skipped) {
  char *end;
  errno = 0;
  long lo = strtol(tok, &end, 10), hi = lo;
  if (*end == '-') hi = strtol(end + 1, &end, 10);
  long long count = -1;
  if (*end == ':') count = strtoll(end + 1, &end, 10);
  if (errno || *end || end == tok || count < 0 || lo < 0 || hi < lo)
    return pg_fail(PG_ERR_FORMAT, "optimizer settings: '%s' holds '%s' (expected I:N or I-J:N)", key,
                   tok);
  if (hi >= n_slots)
    return pg_fail(PG_ERR_FORMAT, "optimizer settings: '%s' names trainable parameter %ld, the "
                   "optimizer has %d", key, hi, n_slots);
  if (count > step)
    return pg_fail(PG_ERR_FORMAT, "optimizer settings: '%s' says parameter %ld skipped %lld steps, "
                   "more than the optimizer's step %lld (restore step first)", key, lo, count,
                   (long long)step);
  for (long i = lo; i <= hi; i++) skipped[i] = count;
  return PG_OK;
}

pg_status pg_optimizer_restore_kv(pg_optimizer *opt, const pg_kv *kv) {
  if (!opt || !kv) return pg_fail(PG_ERR_ARG, "pg_optimizer_restore_kv: opt or kv is NULL");
  int64_t *skipped = calloc((size_t)(opt->n_slots ? opt->n_slots : 1), sizeof *skipped);
  if (!skipped) return pg_fail(PG_ERR_MEMORY, "pg_optimizer_restore_kv: out of memory");
  pg_status st = PG_OK;
  for (int part = 0; !st; part++) {
    char key[PG_KV_KEY_MAX], text[PG_KV_STRING_MAX];
    snprintf(key, sizeof key, part ? SKIPPED_KEY ".%d" : SKIPPED_KEY, part);
    const char *value;
    int rc = pg_kv_get_string(kv, key, &value);
    if (rc < 0) st = pg_last_status();
    if (rc <= 0) break;
    snprintf(text, sizeof text, "%s", value);
    char *save;
    for (char *tok = strtok_r(text, " ", &save); tok && !st; tok = strtok_r(NULL, " ", &save))
      st = parse_token(key, tok, opt->n_slots, opt->step, skipped);
  }
  if (!st)
    for (int i = 0; i < opt->n_slots; i++) opt->slots[i].skipped = skipped[i];
  free(skipped);
  return st;
}
