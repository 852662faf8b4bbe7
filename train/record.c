/* What a checkpoint records about its run, and what a resumed or a
 * fine-tuned run checks against a checkpoint (train/run.h, "Resuming" and
 * pg_run_opts.init_from; docs/checkpoint.md lists the keys). */
#include <fnmatch.h>
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "patchgrad/io/checkpoint.h"
#include "patchgrad/io/h5util.h"
#include "patchgrad/io/optim_kv.h"
#include "patchgrad/train/run_parts.h"

void pg_run_note(pg_run *run, const char *fmt, ...) {
  const size_t used = strlen(run->notes);
  if (used + 2 >= sizeof run->notes) return;
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(run->notes + used, sizeof run->notes - used - 1, fmt, ap);
  va_end(ap);
  strcat(run->notes, "\n");
}

/* ---- the training data's identity ---- */

pg_status pg_run_fingerprint_data(pg_run *run) {
  const char *path = run->opts->data_path;
  FILE *f = fopen(path, "rb");
  if (!f) return pg_fail(PG_ERR_IO, "%s: cannot read %s", run->model->name, path);
  static const size_t chunk = (size_t)1 << 20;
  unsigned char *buf = malloc(chunk);
  if (!buf) {
    fclose(f);
    return pg_fail(PG_ERR_MEMORY, "%s: out of memory reading %s", run->model->name, path);
  }
  uint64_t h = 0xcbf29ce484222325ULL; /* FNV-1a 64: offset basis, then per byte xor and multiply */
  int64_t bytes = 0;
  size_t n;
  while ((n = fread(buf, 1, chunk, f)) > 0) {
    for (size_t i = 0; i < n; i++) h = (h ^ buf[i]) * 0x100000001b3ULL;
    bytes += (int64_t)n;
  }
  const bool bad = ferror(f);
  free(buf);
  fclose(f);
  if (bad) return pg_fail(PG_ERR_IO, "%s: cannot read %s", run->model->name, path);
  run->data_bytes = bytes;
  run->data_hash = h;
  return PG_OK;
}

/* ---- the run record ---- */

/* The recorded settings a resume compares, and the flags that set them. */
static const struct {
  const char *key, *flag;
} compared[] = {
    {"batch", "--batch"},         {"accum", "--accum"},   {"seed", "--seed"},
    {"schedule", "--schedule"},   {"warmup", "--warmup"}, {"step_size", "--step-size"},
    {"gamma", "--gamma"},         {"min_lr", "the schedule's min_lr"},
    {"schedule_steps", "the schedule's total_steps"},     {"clip", "--clip"},
    {"ema", "--ema"},             {"ema_warmup", "--ema-warmup"}, {"precision", "--precision"},
    /* how the data is read (io/latents.h) */
    {"data_key", "--data-key"},   {"label_key", "--label-key"},
    {"data_read_scale", "--scale/--shift/--stats-from (the values' scale)"},
    {"data_read_offset", "--scale/--shift/--stats-from (the values' offset)"},
};

pg_status pg_run_record(const pg_run *run, pg_kv *kv) {
  const pg_run_opts *o = run->opts;
  char hash[32], seed[32];
  snprintf(hash, sizeof hash, "%016" PRIx64, run->data_hash);
  snprintf(seed, sizeof seed, "%" PRIu64, o->seed);
  pg_status st = pg_kv_set_string(kv, "data", o->data_path);
  st = st ? st : pg_kv_set_int(kv, "data_samples", run->info->n);
  st = st ? st : pg_kv_set_int(kv, "data_bytes", run->data_bytes);
  st = st ? st : pg_kv_set_string(kv, "data_fnv1a64", hash);
  st = st ? st : pg_kv_set_string(kv, "data_key", run->info->data_key);
  st = st ? st : pg_kv_set_string(kv, "label_key", run->info->label_key);
  st = st ? st : pg_kv_set_double(kv, "data_read_scale", run->info->read_scale);
  st = st ? st : pg_kv_set_double(kv, "data_read_offset", run->info->read_offset);
  st = st ? st : pg_kv_set_int(kv, "batch", o->batch);
  st = st ? st : pg_kv_set_int(kv, "accum", run->accum);
  st = st ? st : pg_kv_set_string(kv, "seed", seed);
  st = st ? st : pg_kv_set_string(kv, "schedule", pg_schedule_name(o->schedule.kind));
  st = st ? st : pg_kv_set_int(kv, "warmup", o->schedule.warmup_steps);
  st = st ? st : pg_kv_set_int(kv, "step_size", o->schedule.step_size);
  st = st ? st : pg_kv_set_double(kv, "gamma", o->schedule.gamma);
  st = st ? st : pg_kv_set_double(kv, "min_lr", o->schedule.min_lr);
  st = st ? st : pg_kv_set_int(kv, "schedule_steps", o->schedule.total_steps);
  st = st ? st : pg_kv_set_double(kv, "clip", o->clip);
  st = st ? st : pg_kv_set_double(kv, "ema", o->ema_decay);
  st = st ? st : pg_kv_set_int(kv, "ema_warmup", o->ema_warmup);
  st = st ? st : pg_kv_set_string(kv, "precision", pg_precision_name(o->precision));
  st = st ? st : pg_kv_set_int(kv, "steps", run->total);
  st = st ? st : pg_kv_set_string(kv, "init_from", o->init_from ? o->init_from : "");
  return st;
}

/* An entry's value as a user reads it. */
static const char *value_str(const pg_kv_entry *e, char *buf, size_t cap) {
  if (e->type == PG_KV_INT) snprintf(buf, cap, "%lld", (long long)e->i);
  else if (e->type == PG_KV_DOUBLE) snprintf(buf, cap, "%g", e->d);
  else snprintf(buf, cap, "%s", e->s);
  return buf;
}

static bool same_entry(const pg_kv_entry *a, const pg_kv_entry *b) {
  if (a->type != b->type) return false;
  if (a->type == PG_KV_INT) return a->i == b->i;
  if (a->type == PG_KV_DOUBLE) return a->d == b->d;
  return !strcmp(a->s, b->s);
}

#define MAY_CHANGE                                                                                   \
  "--steps/--epochs, --lr, --log-every, --val-every, --ckpt-every, --sample-every, --threads, "     \
  "--quiet and --ema from off may change on resume"

/* The recorded settings against this run's: the first difference is an
 * error naming the flag and both values. */
static pg_status check_record(pg_run *run, const pg_kv *stored, const char *path) {
  const char *who = run->model->name;
  pg_kv mine;
  pg_kv_init(&mine);
  pg_status st = pg_run_record(run, &mine);
  /* the data: the same bytes (the path may differ) */
  const pg_kv_entry *sb = pg_kv_find(stored, "data_bytes"), *sh = pg_kv_find(stored, "data_fnv1a64");
  const pg_kv_entry *sp = pg_kv_find(stored, "data"), *sn = pg_kv_find(stored, "data_samples");
  if (!st && sb && sh && (!same_entry(sb, pg_kv_find(&mine, "data_bytes")) || !same_entry(sh, pg_kv_find(&mine, "data_fnv1a64")))) {
    char a[256], b[256];
    st = pg_fail(PG_ERR_ARG,
                 "%s: --data %s is not the data the checkpoint %s was trained on (%s: %s samples, %s bytes, "
                 "FNV-1a %s; this run's: %lld samples, %lld bytes, FNV-1a %016" PRIx64 ")",
                 who, run->opts->data_path, path, sp && sp->type == PG_KV_STRING ? sp->s : "?",
                 sn ? value_str(sn, a, sizeof a) : "?", value_str(sb, b, sizeof b), sh->type == PG_KV_STRING ? sh->s : "?",
                 (long long)run->info->n, (long long)run->data_bytes, run->data_hash);
  }
  for (size_t i = 0; !st && i < sizeof compared / sizeof *compared; i++) {
    const pg_kv_entry *was = pg_kv_find(stored, compared[i].key), *now = pg_kv_find(&mine, compared[i].key);
    if (!was || same_entry(was, now)) continue;
    /* an EMA may start on resume (from the weights resumed) */
    if (!strcmp(compared[i].key, "ema") && was->type == PG_KV_DOUBLE && was->d == 0) continue;
    const pg_kv_entry *ema = pg_kv_find(stored, "ema");
    if (!strcmp(compared[i].key, "ema_warmup") && ema && ema->type == PG_KV_DOUBLE && ema->d == 0) continue;
    char a[256], b[256];
    st = pg_fail(PG_ERR_ARG, "%s: %s %s differs from the checkpoint's %s (%s); only " MAY_CHANGE, who,
                 compared[i].flag, value_str(now, b, sizeof b), value_str(was, a, sizeof a), path);
  }
  if (!st) {
    const pg_kv_entry *steps = pg_kv_find(stored, "steps");
    if (steps && steps->type == PG_KV_INT && steps->i != run->total) {
      const bool stretched = run->opts->schedule.kind == PG_SCHEDULE_COSINE && run->opts->schedule.total_steps <= 0;
      pg_run_note(run, "the run now ends at step %lld (the checkpoint's at %lld)%s", (long long)run->total,
                  (long long)steps->i, stretched ? "; the cosine schedule is stretched to the new end" : "");
    }
  }
  pg_kv_free(&mine);
  return st;
}

/* The optimizer's settings and param groups against the checkpoint's: a
 * different lr is a note, anything else an error. */
static pg_status check_optimizer(pg_run *run, const pg_kv *stored, const char *path, int64_t step) {
  const char *who = run->model->name;
  static const char *const lr_only[] = {"lr", NULL};
  char msg[512];
  if (pg_optimizer_check_kv(stored, run->optim, lr_only)) {
    const pg_status st = pg_last_status();
    snprintf(msg, sizeof msg, "%s", pg_last_error());
    return pg_fail(st, "%s: %s (%s); only " MAY_CHANGE, who, msg, path);
  }
  if (pg_optimizer_check_kv(stored, run->optim, NULL)) {
    snprintf(msg, sizeof msg, "%s", pg_last_error());
    pg_run_note(run, "another lr than the checkpoint's (%s): the schedule continues from step %lld with it", msg,
                (long long)step);
  }
  return PG_OK;
}

static bool has_group(const char *path, const char *name) {
  hid_t f = pg_h5_open(path, false);
  if (f < 0) return false;
  const bool has = pg_h5_exists(f, name);
  H5Fclose(f);
  return has;
}

pg_status pg_run_resume_state(pg_run *run, const char *path) {
  const pg_run_model *m = run->model;
  const char *who = m->name;
  if (!m->check_resume)
    return pg_fail(PG_ERR_ARG, "%s: this model's runs cannot resume (from %s)", who, path);
  const bool has_record = has_group(path, "run"), has_ema = has_group(path, "ema");
  pg_kv config, optim_kv, record;
  pg_kv_init(&config);
  pg_kv_init(&optim_kv);
  pg_kv_init(&record);
  /* the small parts first: nothing is read into the model before the
   * checkpoint is known to be this run's */
  int64_t step = 0;
  pg_checkpoint small = {.config = &config, .optim_config = &optim_kv, .step = &step,
                         .run = has_record ? &record : NULL};
  pg_status st = pg_checkpoint_load(path, &small);
  if (!st) st = m->check_resume(m->self, &config, path);
  if (!st && run->total <= step)
    st = pg_fail(PG_ERR_ARG,
                 "%s: the checkpoint %s is at step %lld and this run ends at step %lld (--steps counts from "
                 "the start of the run): give --steps above %lld to continue it",
                 who, path, (long long)step, (long long)run->total, (long long)step);
  if (!st && has_record) st = check_record(run, &record, path);
  if (!st && !has_record)
    pg_run_note(run, "%s predates run records: only the model and the optimizer are checked", path);
  if (!st) st = check_optimizer(run, &optim_kv, path, step);
  /* then the state */
  pg_loader_state ls;
  int64_t optim_step = 0;
  pg_checkpoint full = pg_run_state_parts(run, &ls, &optim_step);
  if (!has_ema) full.ema = NULL;
  /* a sharded optimizer: the whole state read (every rank reads the file),
   * each rank keeps its part */
  pg_params whole = {0};
  if (!st && run->zero_ready) st = pg_zero_full_state(&run->zero, &whole);
  if (run->zero_ready) full.optim_state = &whole;
  if (!st) st = pg_checkpoint_load(path, &full);
  if (!st && run->zero_ready) st = pg_zero_scatter_state(&run->zero, &whole);
  pg_params_free(&whole);
  if (!st) {
    run->optim->step = optim_step;
    st = pg_optimizer_restore_kv(run->optim, &optim_kv);
    if (st) st = pg_error_prefix(path);
  }
  if (!st && run->ema_ready && !has_ema) {
    /* an EMA started on resume: from the weights resumed */
    const double decay = run->ema.decay;
    pg_ema_free(&run->ema);
    run->ema_ready = false;
    if (!(st = pg_ema_init(&run->ema, run->params, decay))) {
      run->ema.warmup = run->opts->ema_warmup;
      run->ema_ready = true;
      pg_run_note(run, "the EMA (decay %g) starts at step %lld from the resumed weights", decay, (long long)run->step);
    }
  }
  /* an EMA kept from the start has made one update per step */
  if (!st && run->ema_ready && has_ema) run->ema.updates = run->step;
  if (!st) {
    run->resumed = true;
    st = pg_loader_set_state(run->loader, &ls);
  }
  pg_kv_free(&config);
  pg_kv_free(&optim_kv);
  pg_kv_free(&record);
  return st;
}

/* ---- fine-tuning ---- */

static bool is_class_tensor(const pg_run_model *m, const char *name) {
  for (const char *const *g = m->class_tensors; g && *g; g++)
    if (!fnmatch(*g, name, 0)) return true;
  return false;
}

/* "a, b, c" of a list (the first few, then how many more) into buf. */
static void list_names(char *buf, size_t cap, char **names, int n) {
  size_t at = 0;
  buf[0] = 0;
  for (int i = 0; i < n && at + 1 < cap; i++) {
    if (i == 6) {
      snprintf(buf + at, cap - at, ", ... (%d more)", n - i);
      return;
    }
    at += (size_t)snprintf(buf + at, cap - at, "%s%s", i ? ", " : "", names[i]);
  }
}

pg_status pg_run_init_from(pg_run *run) {
  const pg_run_opts *o = run->opts;
  const pg_run_model *m = run->model;
  const char *who = m->name, *path = o->init_from;
  /* the number of classes the checkpoint was trained with, when its config says */
  pg_kv config;
  pg_kv_init(&config);
  pg_checkpoint ck = {.config = &config};
  int64_t classes = -1;
  pg_status st = pg_checkpoint_load(path, &ck);
  if (!st && pg_kv_get_int(&config, "num_classes", &classes) != 1) classes = -1;
  pg_kv_free(&config);
  pg_load_report rep;
  if (!st) st = pg_checkpoint_load_matching(path, "params", run->params, &rep);
  if (st) return pg_error_prefix(who);
  /* the class tensors whose shape alone differs are re-initialised; the
   * rest of the mismatches are problems */
  char reinit[256] = "", other[512] = "", missing[512], unexpected[512];
  int n_reinit = 0, n_other = 0;
  size_t at_r = 0, at_o = 0;
  for (int i = 0; i < rep.n_mismatched; i++) {
    const bool cls = is_class_tensor(m, rep.mismatched[i]);
    char *buf = cls ? reinit : other;
    size_t *at = cls ? &at_r : &at_o;
    const size_t cap = cls ? sizeof reinit : sizeof other;
    if (*at + 1 < cap)
      *at += (size_t)snprintf(buf + *at, cap - *at, "%s%s (%s)", (cls ? n_reinit : n_other) ? ", " : "",
                              rep.mismatched[i], rep.mismatch_detail[i]);
    *(cls ? &n_reinit : &n_other) += 1;
  }
  list_names(missing, sizeof missing, rep.missing, rep.n_missing);
  list_names(unexpected, sizeof unexpected, rep.unexpected, rep.n_unexpected);
  const int problems = rep.n_missing + rep.n_unexpected + n_other;
  if (problems && !o->allow_partial) {
    char what[1600] = "";
    size_t at = 0;
    if (rep.n_missing) at += (size_t)snprintf(what + at, sizeof what - at, "; %d missing: %s", rep.n_missing, missing);
    if (rep.n_unexpected && at < sizeof what)
      at += (size_t)snprintf(what + at, sizeof what - at, "; %d unexpected: %s", rep.n_unexpected, unexpected);
    if (n_other && at < sizeof what) snprintf(what + at, sizeof what - at, "; %d of another shape: %s", n_other, other);
    st = pg_fail(PG_ERR_ARG, "%s: --init-from %s does not fit the model (give --allow-partial to load the %d tensors "
                             "that match)%s", who, path, rep.loaded, what);
  } else if (rep.loaded == 0) {
    st = pg_fail(PG_ERR_ARG, "%s: --init-from %s holds none of the model's tensors", who, path);
  } else {
    const int total = run->params->count;
    pg_run_note(run, "fine-tuning from %s: loaded %d of the model's %d tensors", path, rep.loaded, total);
    if (rep.n_missing) pg_run_note(run, "missing (kept as initialised): %s", missing);
    if (rep.n_unexpected) pg_run_note(run, "unexpected (not loaded): %s", unexpected);
    if (n_other) pg_run_note(run, "of another shape (kept as initialised): %s", other);
    if (n_reinit) {
      char from[48] = "";
      if (classes >= 0) snprintf(from, sizeof from, " (the checkpoint's %lld)", (long long)classes);
      pg_run_note(run, "re-initialised for the data's %lld classes%s: %s", (long long)run->info->num_classes,
                  from, reinit);
    }
    char names[256] = "", was[48] = "";
    for (int i = 0, at = 0; i < rep.n_mismatched && at >= 0 && (size_t)at < sizeof names; i++)
      if (is_class_tensor(m, rep.mismatched[i]))
        at += snprintf(names + at, sizeof names - (size_t)at, "%s%s", at ? ", " : "", rep.mismatched[i]);
    if (classes >= 0) snprintf(was, sizeof was, " (was %lld)", (long long)classes);
    if (n_reinit)
      snprintf(run->init_summary, sizeof run->init_summary,
               "fine-tuned from %s (%d of %d tensors); class table re-initialised for %lld classes%s: %s", path,
               rep.loaded, total, (long long)run->info->num_classes, was, names);
    else
      snprintf(run->init_summary, sizeof run->init_summary, "fine-tuned from %s (%d of %d tensors)", path,
               rep.loaded, total);
  }
  pg_load_report_free(&rep);
  return st;
}
