/* The float32 engine's decisions per key: a hash table in memory and the
 * per-machine file behind it (gemm_decisions.h). */
#include "patchgrad/autograd/gemm_decisions.h"

#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "patchgrad/autograd/runtime_internal.h"

#define FILE_NAME "gemm-engine"
#define LINE_MAX_CHARS 512

typedef struct {
  bool used;
  pg_gemm_key key;
  pg_gemm_decision d;
} slot;

static struct {
  pthread_mutex_t lock;
  bool loaded;
  char cpu[128]; /* this CPU's name as the file writes it */
  char where[1100];
  slot *slots;
  size_t cap, count; /* cap: 0 or a power of two */
  pg_gemm_decision_counts counts;
} t = {.lock = PTHREAD_MUTEX_INITIALIZER};

static bool same_key(const pg_gemm_key *a, const pg_gemm_key *b) {
  return a->trans_a == b->trans_a && a->trans_b == b->trans_b && a->alpha_one == b->alpha_one &&
         a->beta_zero == b->beta_zero && a->threads == b->threads && a->m == b->m && a->n == b->n &&
         a->k == b->k && a->lda == b->lda && a->ldb == b->ldb && a->ldc == b->ldc;
}

static uint64_t hash_key(const pg_gemm_key *k) {
  const uint64_t v[8] = {(uint64_t)k->trans_a | (uint64_t)k->trans_b << 1 | (uint64_t)k->alpha_one << 2 |
                             (uint64_t)k->beta_zero << 3 | (uint64_t)k->threads << 4,
                         (uint64_t)k->m, (uint64_t)k->n, (uint64_t)k->k, (uint64_t)k->lda, (uint64_t)k->ldb,
                         (uint64_t)k->ldc, 0};
  uint64_t h = 1469598103934665603ull; /* FNV-1a over the words */
  for (int i = 0; i < 7; i++) {
    h ^= v[i];
    h *= 1099511628211ull;
    h ^= h >> 29;
  }
  return h;
}

static slot *find_slot(const pg_gemm_key *k) {
  if (!t.cap) return NULL;
  for (size_t i = hash_key(k) & (t.cap - 1);; i = (i + 1) & (t.cap - 1)) {
    if (!t.slots[i].used) return NULL;
    if (same_key(&t.slots[i].key, k)) return &t.slots[i];
  }
}

/* Places a key known to be absent; the table has room. */
static void place(slot *slots, size_t cap, const pg_gemm_key *k, const pg_gemm_decision *d) {
  size_t i = hash_key(k) & (cap - 1);
  while (slots[i].used) i = (i + 1) & (cap - 1);
  slots[i] = (slot){.used = true, .key = *k, .d = *d};
}

/* Adds key -> d unless the key is there already (the first decision
 * wins). False when it was there, or when memory ran out. */
static bool insert(const pg_gemm_key *k, const pg_gemm_decision *d) {
  if (find_slot(k)) return false;
  if (2 * (t.count + 1) > t.cap) {
    const size_t cap = t.cap ? 2 * t.cap : 64;
    slot *s = calloc(cap, sizeof *s);
    if (!s) return false;
    for (size_t i = 0; i < t.cap; i++)
      if (t.slots[i].used) place(s, cap, &t.slots[i].key, &t.slots[i].d);
    free(t.slots);
    t.slots = s;
    t.cap = cap;
  }
  place(t.slots, t.cap, k, d);
  t.count++;
  return true;
}

/* One line of the file, null-terminated, into a key and a decision when it
 * is well formed and names this CPU. */
static bool parse_line(const char *line, pg_gemm_key *k, pg_gemm_decision *d) {
  char cpu[128], ta = 0, tb = 0, engine[16];
  long long m, n, kk, lda, ldb, ldc;
  int a1, b0, threads, end = -1;
  double blis, onednn;
  if (sscanf(line,
             "v1 cpu=\"%127[^\"]\" trans=%c%c m=%lld n=%lld k=%lld lda=%lld ldb=%lld ldc=%lld alpha1=%d "
             "beta0=%d threads=%d engine=%15s blis=%lf onednn=%lf%n",
             cpu, &ta, &tb, &m, &n, &kk, &lda, &ldb, &ldc, &a1, &b0, &threads, engine, &blis, &onednn,
             &end) != 15 ||
      end < 0)
    return false;
  for (const char *p = line + end; *p; p++)
    if (*p != ' ' && *p != '\r' && *p != '\t') return false;
  if (strcmp(cpu, t.cpu) || (ta != 'n' && ta != 't') || (tb != 'n' && tb != 't') || m < 1 || n < 1 || kk < 1 ||
      lda < 1 || ldb < 1 || ldc < n || (a1 != 0 && a1 != 1) || (b0 != 0 && b0 != 1) || threads < 1 ||
      threads > 65536 || (strcmp(engine, "blis") && strcmp(engine, "onednn")) || !isfinite(blis) || blis < 0 ||
      !isfinite(onednn) || onednn < 0)
    return false;
  *k = (pg_gemm_key){.trans_a = ta == 't', .trans_b = tb == 't', .alpha_one = a1, .beta_zero = b0,
                     .threads = threads, .m = m, .n = n, .k = kk, .lda = lda, .ldb = ldb, .ldc = ldc};
  *d = (pg_gemm_decision){.onednn = !strcmp(engine, "onednn"), .blis_gflops = blis, .onednn_gflops = onednn};
  return true;
}

static int format_line(char *buf, size_t cap, const pg_gemm_key *k, const pg_gemm_decision *d) {
  return snprintf(buf, cap,
                  "v1 cpu=\"%s\" trans=%c%c m=%lld n=%lld k=%lld lda=%lld ldb=%lld ldc=%lld alpha1=%d beta0=%d "
                  "threads=%d engine=%s blis=%.1f onednn=%.1f\n",
                  t.cpu, k->trans_a ? 't' : 'n', k->trans_b ? 't' : 'n', (long long)k->m, (long long)k->n,
                  (long long)k->k, (long long)k->lda, (long long)k->ldb, (long long)k->ldc, k->alpha_one,
                  k->beta_zero, k->threads, d->onednn ? "onednn" : "blis", d->blis_gflops, d->onednn_gflops);
}

/* Reads the whole file and adds the decisions of this CPU that are not in
 * memory yet; returns how many it added. */
static int64_t merge_file(int fd) {
  struct stat st;
  if (fstat(fd, &st) || st.st_size <= 0) return 0;
  char *text = malloc((size_t)st.st_size + 1);
  if (!text) return 0;
  ssize_t got = 0, r = 0;
  while (got < st.st_size && (r = pread(fd, text + got, (size_t)(st.st_size - got), got)) > 0) got += r;
  text[got] = '\0';
  int64_t added = 0;
  char line[LINE_MAX_CHARS];
  for (char *p = text; *p;) {
    char *nl = strchr(p, '\n');
    const size_t len = nl ? (size_t)(nl - p) : strlen(p);
    pg_gemm_key k;
    pg_gemm_decision d;
    /* a line without its newline is being written, or was cut: skipped */
    if (nl && len < sizeof line && p[0] != '#') {
      memcpy(line, p, len);
      line[len] = '\0';
      if (parse_line(line, &k, &d) && insert(&k, &d)) added++;
    }
    p += len + (nl ? 1 : 0);
  }
  free(text);
  return added;
}

/* Appends the decision (after a newline if the file's last line lacks
 * one; with a header when the file is empty). Called under the file lock. */
static bool append(int fd, const pg_gemm_key *k, const pg_gemm_decision *d) {
  struct stat st;
  if (fstat(fd, &st)) return false;
  char buf[LINE_MAX_CHARS + 400];
  int n = 0;
  char last = '\n';
  if (st.st_size == 0)
    n = snprintf(buf, sizeof buf,
                 "# patchgrad: the float32 GEMM engine per product on this machine (autograd/gemm_engine.h):\n"
                 "# BLIS or oneDNN, whichever was faster by more than 5%% when first timed, with both\n"
                 "# GFLOP/s. Kept so that runs with one seed stay bit-identical. Delete to measure again.\n");
  else if (pread(fd, &last, 1, st.st_size - 1) == 1 && last != '\n')
    buf[n++] = '\n';
  const int len = format_line(buf + n, sizeof buf - (size_t)n, k, d);
  if (len <= 0 || (size_t)len >= LINE_MAX_CHARS) return false;
  n += len;
  return pwrite(fd, buf, (size_t)n, st.st_size) == n;
}

/* The CPU's name, with the quote the line format uses as a delimiter
 * replaced. */
static void init_cpu(void) {
  pg_cpu_model(t.cpu, sizeof t.cpu);
  for (char *p = t.cpu; *p; p++)
    if (*p == '"') *p = '\'';
}

/* The first use: reads the file once. Called locked. */
static void ensure_loaded(void) {
  if (t.loaded) return;
  t.loaded = true;
  init_cpu();
  char path[1024];
  const int fd = pg_cache_file_open(FILE_NAME, path, sizeof path);
  if (fd < 0) {
    snprintf(t.where, sizeof t.where,
             "not kept: no writable folder for " FILE_NAME " ($PG_CACHE_DIR, $XDG_CACHE_HOME/patchgrad or "
             "~/.cache/patchgrad)");
    return;
  }
  snprintf(t.where, sizeof t.where, "%s", path);
  if (flock(fd, LOCK_SH) == 0) {
    t.counts.loaded += merge_file(fd);
    flock(fd, LOCK_UN);
  }
  close(fd);
}

pg_gemm_decision pg_gemm_decide(const pg_gemm_key *key, pg_gemm_measure_fn measure, void *user) {
  pthread_mutex_lock(&t.lock);
  ensure_loaded();
  const slot *s = find_slot(key);
  pg_gemm_decision d;
  if (s) {
    d = s->d;
    pthread_mutex_unlock(&t.lock);
    return d;
  }
  char path[1024];
  int fd = pg_cache_file_open(FILE_NAME, path, sizeof path);
  if (fd >= 0 && flock(fd, LOCK_EX)) {
    close(fd);
    fd = -1;
  }
  /* another process may have decided this key since the file was read */
  if (fd >= 0) t.counts.loaded += merge_file(fd);
  if (fd >= 0 && (s = find_slot(key))) {
    d = s->d;
    t.counts.adopted++;
    t.counts.loaded--; /* counted as adopted, not as loaded */
  } else {
    measure(user, &d);
    t.counts.timed++;
    insert(key, &d);
    if (fd < 0 || !append(fd, key, &d)) t.counts.not_kept++;
  }
  if (fd >= 0) {
    flock(fd, LOCK_UN);
    close(fd);
  }
  pthread_mutex_unlock(&t.lock);
  return d;
}

bool pg_gemm_decision_find(const pg_gemm_key *key, pg_gemm_decision *out) {
  pthread_mutex_lock(&t.lock);
  ensure_loaded();
  const slot *s = find_slot(key);
  if (s) *out = s->d;
  pthread_mutex_unlock(&t.lock);
  return s != NULL;
}

pg_gemm_decision_counts pg_gemm_decision_counts_get(void) {
  pthread_mutex_lock(&t.lock);
  const pg_gemm_decision_counts c = t.counts;
  pthread_mutex_unlock(&t.lock);
  return c;
}

const char *pg_gemm_decisions_where(void) { return t.where; }

void pg_gemm_decisions_forget(void) {
  pthread_mutex_lock(&t.lock);
  free(t.slots);
  t.slots = NULL;
  t.cap = t.count = 0;
  t.loaded = false;
  t.where[0] = '\0';
  pthread_mutex_unlock(&t.lock);
}
