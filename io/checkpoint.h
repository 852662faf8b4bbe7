/* Checkpoints: everything a training run needs to continue exactly, in one
 * HDF5 file (README "Checkpoints" shows the `h5dump -H` view):
 *
 *   /                 attributes format, format_version, step, contents
 *   /config           model config, one attribute per key (pg_kv)
 *   /params/<name>    float32 parameters, PyTorch names and layouts
 *   /ema/<name>       EMA copies of the parameters, same names
 *   /optim            attributes step and hyper-parameters (pg_kv);
 *   /optim/<name>     state tensors "<param>.exp_avg", ... (float32)
 *   /rng_state        uint64 [4]: the pg_rng words s[0..3]
 *   /loader           attributes seed, epoch, position (pg_loader_state)
 *   /run              the run's settings, one attribute per flag that shapes
 *                     the trajectory (pg_kv; train/run.h writes and checks them)
 *
 * Every part is optional: a NULL pointer in pg_checkpoint means "absent"
 * (not written by save, not read by load). Load reads only what is asked for,
 * validates all of it before touching anything (so a failed load leaves the
 * model as it was), and a part asked for but missing is an error. Validated:
 * names, shapes and dtypes of every tensor; every value finite (NaN or Inf in
 * a parameter, EMA or optimizer tensor is an error naming the tensor and the
 * element); `step`, the optimizer's step and the loader's epoch and position
 * integers in [0, PG_CHECKPOINT_MAX_STEP] (a float attribute such as 1.5 or
 * NaN is refused, not rounded). The file is written with checksums (HDF5's
 * on all metadata, Fletcher32 on every tensor) and HDF5 verifies them as it
 * reads: flipped bits are reported as damage naming the dataset, before any
 * value is used.
 *
 * Save is atomic: the file is written as PATH.tmp, flushed, closed, and
 * renamed over PATH; on any failure PATH.tmp is removed and the previous
 * PATH is intact. */
#ifndef PG_CHECKPOINT_H
#define PG_CHECKPOINT_H

#include "patchgrad/autograd/api.h"

#include <hdf5.h>
#include <stdint.h>

#include "patchgrad/io/kv.h"
#include "patchgrad/io/loader.h"
#include "patchgrad/autograd/params.h"
#include "patchgrad/autograd/rng.h"

/* The largest step (and loader epoch or position) a checkpoint may hold:
 * 10^12, thirty years at a thousand steps a second. */
#define PG_CHECKPOINT_MAX_STEP ((int64_t)1000000000000)

typedef struct {
  pg_kv *config;             /* model config (load: replaced by the file's) */
  pg_params *params;         /* params/<name> (load: shapes must match) */
  pg_params *ema;            /* ema/<name> */
  pg_params *optim_state;    /* optim/<param>.exp_avg, ... */
  int64_t *optim_step;       /* optim's step attribute */
  pg_kv *optim_config;       /* optim's hyper-parameters (load: replaced) */
  int64_t *step;             /* training step */
  pg_rng *rng;               /* the run's generator */
  pg_loader_state *loader;   /* data loader position */
  pg_kv *run;                /* run/ attributes: the run's settings (load: replaced) */
} pg_checkpoint;

PG_API pg_status pg_checkpoint_save(const char *path, const pg_checkpoint *ck);
PG_API pg_status pg_checkpoint_load(const char *path, const pg_checkpoint *ck);

/* Loading a model whose shape its checkpoint decides (the DiT, the ViT, the
 * VAE load this way): the file's /config is read, build(self, config, path)
 * makes the model from it (its weights drawn, then replaced) and returns
 * its parameter list, then the weights are read into that list (params/,
 * or the EMA copy ema/ when `ema`); when that fails, unbuild(self) frees
 * the model. The config is the caller's to read from inside build. */
typedef struct {
  pg_params *(*build)(void *self, const pg_kv *config, const char *path); /* NULL: error set */
  void (*unbuild)(void *self);
  void *self;
} pg_checkpoint_model;

PG_API pg_status pg_checkpoint_load_model(const char *path, bool ema, const pg_checkpoint_model *model);

/* Each tensor of ps as a float32 dataset group/<name> (attribute `kind`:
 * weight, bias, norm, embedding or buffer). The group is created. A NaN or
 * Inf value is an error naming the tensor (nothing is written then). */
PG_API pg_status pg_params_save_group(hid_t file, const char *group, const pg_params *ps);
/* Checks that group holds exactly the entries of ps (names, shapes, dtype
 * float32) and reports EVERY mismatch by name in one message (missing,
 * unexpected, wrong shape, wrong dtype); nothing is read then. */
PG_API pg_status pg_params_check_group(hid_t file, const char *group, const pg_params *ps);
/* pg_params_check_group, then every tensor read once to check it (HDF5's
 * checksum, finite values) and then again in place: a failure leaves ps as
 * it was. */
PG_API pg_status pg_params_load_group(hid_t file, const char *group, pg_params *ps);

/* ---- Non-strict loading, for fine-tuning ----
 * What pg_checkpoint_load_matching did, as PyTorch's
 * model.load_state_dict(sd, strict=False) returns missing_keys and
 * unexpected_keys; here the tensors present in both with another shape (or
 * dtype) are a third list and are left as they were (PyTorch raises on
 * them). Every list and string is malloc'd and owned by the report. */
typedef struct {
  int loaded;                /* tensors read into the model */
  int n_missing;             /* the model's tensors the file lacks (left as they were) */
  char **missing;
  int n_unexpected;          /* the file's tensors the model lacks (not read) */
  char **unexpected;
  int n_mismatched;          /* in both with another shape or dtype (left as they were) */
  char **mismatched;         /* their names, and per name how they differ: */
  char **mismatch_detail;    /*   "[11, 16] in the file, [6, 16] in the model" */
} pg_load_report;

/* Reads every tensor of the checkpoint's group (`params` or `ema`) whose
 * name and shape (float32) match an entry of ps into that entry, and lists
 * the rest in *rep (initialised here; release it with pg_load_report_free,
 * also after an error). The tensors read are checked first (HDF5's
 * checksum, finite values) and only then written, so an error leaves ps as
 * it was. Errors: not a patchgrad checkpoint, no such group, a damaged or
 * non-finite tensor among those that match (the message names it). A file
 * that matches nothing is not an error here (rep->loaded is 0): the caller
 * decides, as it decides about the lists. */
PG_API pg_status pg_checkpoint_load_matching(const char *path, const char *group, pg_params *ps,
                                             pg_load_report *rep);
PG_API void pg_load_report_free(pg_load_report *rep);

#endif
