#include "patchgrad/io/optim_kv.h"

#include <string.h>

/* The numeric fields, by their torch.optim names. */
#define DOUBLE_FIELDS(X) X(lr) X(weight_decay) X(momentum) X(dampening) X(beta1) X(beta2) X(eps)
#define BOOL_FIELDS(X) X(decay_weights_only) X(nesterov) X(amsgrad)

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
#define GET_BOOL(f)                                                                      \
  {                                                                                      \
    int64_t v;                                                                           \
    rc = pg_kv_get_int(kv, #f, &v);                                                      \
    if (rc < 0) return pg_last_status();                                                 \
    if (rc == 0) return missing(#f);                                                     \
    if (v != 0 && v != 1)                                                                \
      return pg_fail(PG_ERR_FORMAT, "optimizer settings: '%s' is %lld (expected 0 or 1)", \
                     #f, (long long)v);                                                  \
    c.f = v == 1;                                                                        \
  }
  DOUBLE_FIELDS(GET_DOUBLE)
  BOOL_FIELDS(GET_BOOL)
#undef GET_DOUBLE
#undef GET_BOOL
  static const char *known[] = {"optimizer", "lr", "weight_decay", "momentum", "dampening",
                                "beta1", "beta2", "eps", "decay_weights_only", "nesterov",
                                "amsgrad"};
  for (int i = 0; i < kv->count; i++) {
    bool ok = false;
    for (size_t k = 0; k < sizeof known / sizeof *known; k++) ok |= !strcmp(kv->items[i].key, known[k]);
    if (!ok)
      return pg_fail(PG_ERR_FORMAT, "optimizer settings: unknown key '%s'", kv->items[i].key);
  }
  if (pg_optim_config_check(&c)) return pg_last_status();
  *cfg = c;
  return PG_OK;
}
