/* Routes MLX's float32 GEMM to OpenBLAS (scipy-openblas32 prefixes its symbols with `scipy_`).
 * The executable links this library directly, so the loader resolves libmlx's `cblas_sgemm` here
 * before it reaches the reference BLAS that the mlx-cpu wheel bundles. One pool of threads here
 * does all the parallel work: products with many rows are split by weight rows into
 * single-threaded OpenBLAS calls, since OpenBLAS's own threads would spin beside the pool's on
 * the same cores.
 *
 * Products with few rows (a decode step: one token per running sequence times a weight matrix)
 * do not go to OpenBLAS's GEMM, which first copies ("packs") the whole weight matrix on every
 * call: for a handful of rows that copy costs as much as the arithmetic and doubles the memory
 * traffic of a bandwidth-bound product. They go to `few_rows` below instead, which streams each
 * weight row once from memory and multiplies it with every input row while it sits in L1, split
 * over a small pool of threads by weight rows. Each output element is computed by the same
 * instructions in the same order whatever the number of rows or threads, so one sequence gets
 * bit-identical logits alone or inside any batch. */
#include <pthread.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

typedef int blasint;

enum { ROW_MAJOR = 101, NO_TRANS = 111, TRANS = 112 };

extern void scipy_cblas_sgemm(int order, int transa, int transb, blasint m, blasint n, blasint k,
                              float alpha, const float* a, blasint lda, const float* b, blasint ldb,
                              float beta, float* c, blasint ldc);
extern char* scipy_openblas_get_config(void);
extern void scipy_openblas_set_num_threads(int);

/* Up to this many rows, `few_rows` is at least as fast as OpenBLAS's pack-then-multiply (measured on
 * AVX-512: 2x at 4 rows, even at 16, OpenBLAS ahead from ~24). */
#define FEW_ROWS 16
/* Weight rows per block (their dot products share each load of an input element). */
#define BLOCK 4
/* Accumulator lanes: one AVX-512 register, two AVX2 ones. */
#define LANES 16

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define KERNEL __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define KERNEL
#endif

struct job {
  /* Many rows: each thread runs (single-threaded) OpenBLAS on its slice of the weight rows. */
  int gemm;
  const float* a;
  const float* b;
  float* c;
  blasint lda, ldb, ldc, m, k, n;
  float alpha, beta;
  /* Or another caller's work (the bridge's quantized kernel): fn(ctx, part, parts). */
  void (*fn)(void* ctx, int part, int parts);
  void* ctx;
};

/* Accumulators are vectors so they stay in registers (one zmm, two ymm or four xmm each). */
typedef float lanes __attribute__((vector_size(LANES * sizeof(float))));

static inline __attribute__((always_inline)) lanes load(const float* p) {
  lanes v;
  memcpy(&v, p, sizeof v);
  return v;
}

/* The lanes' sum in a fixed order: halves added pairwise down to one. */
typedef float half8 __attribute__((vector_size(8 * sizeof(float))));
typedef float quarter4 __attribute__((vector_size(4 * sizeof(float))));
static inline __attribute__((always_inline)) float hsum(lanes v) {
  half8 a = __builtin_shufflevector(v, v, 0, 1, 2, 3, 4, 5, 6, 7) +
            __builtin_shufflevector(v, v, 8, 9, 10, 11, 12, 13, 14, 15);
  quarter4 b = __builtin_shufflevector(a, a, 0, 1, 2, 3) + __builtin_shufflevector(a, a, 4, 5, 6, 7);
  return (b[0] + b[2]) + (b[1] + b[3]);
}

static void store(const struct job* j, blasint i, blasint n, float v) {
  float* out = j->c + (size_t)i * j->ldc + n;
  *out = j->beta == 0.0f ? j->alpha * v : j->alpha * v + j->beta * *out;
}

/* One input row against BLOCK weight rows: the reference order of every dot product. */
static inline __attribute__((always_inline)) void dot1x4(const float* x, const float* const* w, blasint k, blasint kv, float* out) {
  lanes s0 = {0}, s1 = {0}, s2 = {0}, s3 = {0};
  for (blasint p = 0; p < kv; p += LANES) {
    lanes xv = load(x + p);
    s0 += xv * load(w[0] + p);
    s1 += xv * load(w[1] + p);
    s2 += xv * load(w[2] + p);
    s3 += xv * load(w[3] + p);
  }
  float t[4] = {hsum(s0), hsum(s1), hsum(s2), hsum(s3)};
  for (blasint p = kv; p < k; p++)
    for (int b = 0; b < 4; b++) t[b] += x[p] * w[b][p];
  memcpy(out, t, sizeof t);
}

/* Two input rows at once: eight independent accumulators hide the FMA latency and each loaded
 * weight vector serves two rows. Every accumulator does exactly what `dot1x4` does. */
static inline __attribute__((always_inline)) void dot2x4(const float* x0, const float* x1, const float* const* w, blasint k, blasint kv,
                          float* out0, float* out1) {
  lanes a0 = {0}, a1 = {0}, a2 = {0}, a3 = {0}, b0 = {0}, b1 = {0}, b2 = {0}, b3 = {0};
  for (blasint p = 0; p < kv; p += LANES) {
    lanes u = load(x0 + p), v = load(x1 + p);
    lanes w0 = load(w[0] + p), w1 = load(w[1] + p), w2 = load(w[2] + p), w3 = load(w[3] + p);
    a0 += u * w0;
    a1 += u * w1;
    a2 += u * w2;
    a3 += u * w3;
    b0 += v * w0;
    b1 += v * w1;
    b2 += v * w2;
    b3 += v * w3;
  }
  float t[4] = {hsum(a0), hsum(a1), hsum(a2), hsum(a3)};
  float r[4] = {hsum(b0), hsum(b1), hsum(b2), hsum(b3)};
  for (blasint p = kv; p < k; p++)
    for (int b = 0; b < 4; b++) {
      t[b] += x0[p] * w[b][p];
      r[b] += x1[p] * w[b][p];
    }
  memcpy(out0, t, sizeof t);
  memcpy(out1, r, sizeof r);
}

/* Four input rows at once: sixteen accumulators, and each load (four of weights, four of inputs)
 * feeds four FMAs instead of 1.6 in `dot2x4`, the loads being what bounds these loops. Every
 * accumulator does exactly what `dot1x4` does. */
static inline __attribute__((always_inline)) void dot4x4(const float* const* x, const float* const* w, blasint k,
                                                         blasint kv, float out[4][4]) {
  lanes acc[4][4];
  memset(acc, 0, sizeof acc);
  for (blasint p = 0; p < kv; p += LANES) {
    lanes xv[4] = {load(x[0] + p), load(x[1] + p), load(x[2] + p), load(x[3] + p)};
    lanes wv[4] = {load(w[0] + p), load(w[1] + p), load(w[2] + p), load(w[3] + p)};
    for (int r = 0; r < 4; r++)
      for (int b = 0; b < 4; b++) acc[r][b] += xv[r] * wv[b];
  }
  for (int r = 0; r < 4; r++) {
    for (int b = 0; b < 4; b++) out[r][b] = hsum(acc[r][b]);
    for (blasint p = kv; p < k; p++)
      for (int b = 0; b < 4; b++) out[r][b] += x[r][p] * w[b][p];
  }
}

/* dot4x4's sixteen accumulators fit AVX-512's 32 registers; with AVX2 (each accumulator two
 * registers of 16) or NEON they would spill, and dot2x4 runs instead. */
static int wide_registers(void) {
#if defined(__x86_64__) && defined(__GNUC__)
  static int yes = -1;
  if (yes < 0) yes = __builtin_cpu_supports("avx512f") ? 1 : 0;
  return yes;
#else
  return 0;
#endif
}

/* c[i, n] for all rows i and weight rows n in [n0, n1). */
KERNEL static void few_rows(const struct job* j, blasint n0, blasint n1) {
  const blasint k = j->k, kv = k / LANES * LANES;
  const int four_rows = wide_registers();
  blasint n = n0;
  for (; n + BLOCK <= n1; n += BLOCK) {
    const float* w[4];
    w[0] = j->b + (size_t)n * j->ldb;
    for (int b = 1; b < 4; b++) w[b] = w[b - 1] + j->ldb;
    blasint i = 0;
    float t[4], r[4];
    for (; four_rows && i + 4 <= j->m; i += 4) {
      const float* x[4];
      for (int q = 0; q < 4; q++) x[q] = j->a + (size_t)(i + q) * j->lda;
      float o[4][4];
      dot4x4(x, w, k, kv, o);
      for (int q = 0; q < 4; q++)
        for (int b = 0; b < 4; b++) store(j, i + q, n + b, o[q][b]);
    }
    for (; i + 2 <= j->m; i += 2) {
      const float* x0 = j->a + (size_t)i * j->lda;
      dot2x4(x0, x0 + j->lda, w, k, kv, t, r);
      for (int b = 0; b < 4; b++) {
        store(j, i, n + b, t[b]);
        store(j, i + 1, n + b, r[b]);
      }
    }
    for (; i < j->m; i++) {
      dot1x4(j->a + (size_t)i * j->lda, w, k, kv, t);
      for (int b = 0; b < 4; b++) store(j, i, n + b, t[b]);
    }
  }
  for (; n < n1; n++) {
    const float* w0 = j->b + (size_t)n * j->ldb;
    for (blasint i = 0; i < j->m; i++) {
      const float* x = j->a + (size_t)i * j->lda;
      lanes s0 = {0};
      for (blasint p = 0; p < kv; p += LANES) s0 += load(x + p) * load(w0 + p);
      float t0 = hsum(s0);
      for (blasint p = kv; p < k; p++) t0 += x[p] * w0[p];
      store(j, i, n, t0);
    }
  }
}

/* A pool of worker threads. A job is cut into parts that the caller and the workers claim one at
 * a time, so a worker that the OS has descheduled (on a busy machine, or beside the engine's own
 * thread on two cores) delays nothing: the caller takes the parts it left. Which thread runs a
 * part never changes what the part computes. The products of one step come microseconds apart,
 * so the hand-off is atomic: workers spin for about a millisecond before they sleep, and a job
 * wakes sleepers only when there are any.
 *
 * `state` packs the job's generation (high 32 bits), its part count (16) and the next part to
 * claim (low 16), so a claim is one compare-and-swap that cannot take a part of a later job:
 * the caller publishes the next job only when every part of this one is done, and a claimant
 * reads `pool.job` only after its claim succeeded. */
static struct {
  pthread_once_t once;
  int threads;
  pthread_mutex_t mu;
  pthread_cond_t wake;
  unsigned long long state; /* atomic: generation | parts | next */
  int done;                 /* atomic: parts of the current job finished */
  int sleepers;             /* atomic: workers asleep on `wake` */
  struct job job;
} pool = {PTHREAD_ONCE_INIT, 1, PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0, 0, 0, {0}};

static void part(const struct job* j, int t, int parts) {
  if (j->fn) {
    j->fn(j->ctx, t, parts);
    return;
  }
  /* Split by weight rows on BLOCK boundaries, so which code computes a column never depends on
   * the number of parts. */
  blasint blocks = (j->n + BLOCK - 1) / BLOCK;
  blasint per = (blocks + parts - 1) / parts;
  blasint n0 = t * per * BLOCK, n1 = (t + 1) * per * BLOCK;
  if (n1 > j->n) n1 = j->n;
  if (n0 >= n1) return;
  if (j->gemm)
    scipy_cblas_sgemm(ROW_MAJOR, NO_TRANS, TRANS, j->m, n1 - n0, j->k, j->alpha, j->a, j->lda,
                      j->b + (size_t)n0 * j->ldb, j->ldb, j->beta, j->c + n0, j->ldc);
  else
    few_rows(j, n0, n1);
}

static inline __attribute__((always_inline)) void cpu_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#elif defined(__aarch64__)
  __asm__ volatile("yield");
#endif
}

#define SPIN 20000
#define GEN(s) ((s) >> 32)
#define PARTS(s) ((int)(((s) >> 16) & 0xFFFF))
#define NEXT(s) ((int)((s) & 0xFFFF))

/* Claims and runs parts of job `gen` until none is left. */
static void claim_parts(unsigned long long gen) {
  unsigned long long s = __atomic_load_n(&pool.state, __ATOMIC_ACQUIRE);
  for (;;) {
    if (GEN(s) != gen || NEXT(s) >= PARTS(s)) return;
    if (!__atomic_compare_exchange_n(&pool.state, &s, s + 1, 0, __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE)) continue;
    struct job j = pool.job;
    part(&j, NEXT(s), PARTS(s));
    __atomic_add_fetch(&pool.done, 1, __ATOMIC_RELEASE);
    s = __atomic_load_n(&pool.state, __ATOMIC_ACQUIRE);
  }
}

static void* worker(void* arg) {
  (void)arg;
  unsigned long long seen = 0;
  for (;;) {
    for (int spin = 0; spin < SPIN && GEN(__atomic_load_n(&pool.state, __ATOMIC_ACQUIRE)) == seen; spin++)
      cpu_relax();
    if (GEN(__atomic_load_n(&pool.state, __ATOMIC_ACQUIRE)) == seen) {
      pthread_mutex_lock(&pool.mu);
      __atomic_add_fetch(&pool.sleepers, 1, __ATOMIC_SEQ_CST);
      while (GEN(__atomic_load_n(&pool.state, __ATOMIC_SEQ_CST)) == seen) pthread_cond_wait(&pool.wake, &pool.mu);
      __atomic_sub_fetch(&pool.sleepers, 1, __ATOMIC_SEQ_CST);
      pthread_mutex_unlock(&pool.mu);
    }
    seen = GEN(__atomic_load_n(&pool.state, __ATOMIC_ACQUIRE));
    claim_parts(seen);
  }
  return NULL;
}

static void start_pool(void) {
  /* OpenBLAS's own threads would spin beside these on the same cores. */
  scipy_openblas_set_num_threads(1);
  long cpus = sysconf(_SC_NPROCESSORS_ONLN);
  const char* env = getenv("ZETA_CPU_THREADS");
  if (env && atoi(env) > 0) cpus = atoi(env);
  if (cpus < 1) cpus = 1;
  if (cpus > 64) cpus = 64;
  pool.threads = (int)cpus;
  for (int t = 1; t < pool.threads; t++) {
    pthread_t th;
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    if (pthread_create(&th, &attr, worker, (void*)(long)t) != 0) {
      pool.threads = t; /* run with the threads we got */
      pthread_attr_destroy(&attr);
      break;
    }
    pthread_attr_destroy(&attr);
  }
}

/* One product at a time: MLX calls BLAS from its one CPU stream thread, and a second caller
 * simply waits for the pool. */
static pthread_mutex_t one_job = PTHREAD_MUTEX_INITIALIZER;

static void run(const struct job* j, size_t work, int per_thread) {
  pthread_once(&pool.once, start_pool);
  /* Small products are not worth waking anyone. */
  if (pool.threads == 1 || work < 64 * 1024) {
    if (j->fn)
      j->fn(j->ctx, 0, 1);
    else if (j->gemm)
      scipy_cblas_sgemm(ROW_MAJOR, NO_TRANS, TRANS, j->m, j->n, j->k, j->alpha, j->a, j->lda, j->b,
                        j->ldb, j->beta, j->c, j->ldc);
    else
      few_rows(j, 0, j->n);
    return;
  }
  /* OpenBLAS calls pack their operands: a few large parts. The other kernels: as many parts per
   * thread as their caller asks (see zeta_parallel). */
  int parts = j->gemm ? pool.threads : per_thread * pool.threads;
  if (parts > 0xFFFF) parts = 0xFFFF;
  pthread_mutex_lock(&one_job);
  pool.job = *j;
  __atomic_store_n(&pool.done, 0, __ATOMIC_RELAXED);
  unsigned long long gen = GEN(__atomic_load_n(&pool.state, __ATOMIC_RELAXED)) + 1;
  __atomic_store_n(&pool.state, (gen << 32) | ((unsigned long long)parts << 16), __ATOMIC_SEQ_CST);
  if (__atomic_load_n(&pool.sleepers, __ATOMIC_SEQ_CST) > 0) {
    pthread_mutex_lock(&pool.mu);
    pthread_cond_broadcast(&pool.wake);
    pthread_mutex_unlock(&pool.mu);
  }
  claim_parts(gen);
  for (unsigned long spin = 0; __atomic_load_n(&pool.done, __ATOMIC_ACQUIRE) < parts; spin++) {
    if (spin < SPIN)
      cpu_relax();
    else
      sched_yield(); /* a worker was descheduled mid-part: give it the core */
  }
  pthread_mutex_unlock(&one_job);
}

void cblas_sgemm(int order, int transa, int transb, blasint m, blasint n, blasint k, float alpha,
                 const float* a, blasint lda, const float* b, blasint ldb, float beta, float* c,
                 blasint ldc) {
  /* c[m, n] = a[m, k] * b[n, k]^T: activations times a weight matrix stored row by row (how
   * MLX multiplies by a transposed weight). */
  if (order == ROW_MAJOR && transa == NO_TRANS && transb == TRANS && m >= 1 && n > 0 && k > 0) {
    struct job j = {m > FEW_ROWS, a, b, c, lda, ldb, ldc, m, k, n, alpha, beta, 0, 0};
    run(&j, (size_t)n * k, 2);
    return;
  }
  pthread_once(&pool.once, start_pool);
  scipy_cblas_sgemm(order, transa, transb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
}

/* The pool for the bridge's own CPU kernels, so that one set of threads does all the parallel
 * work: fn(ctx, part, parts) for every part (the caller takes part 0), or fn(ctx, 0, 1) alone
 * when `work` (about the multiply-adds) is too small to share. The job is cut into `per_thread`
 * parts per thread. Two suit streams of weights read once (four per thread cut SmolLM2's
 * batch-1 products into ~35 KB streams, each paying the memory's latency again; two took 10-20%
 * less time). Work bound by arithmetic (a batch's products) wants more: the last part claimed is
 * what the other threads wait for. */
void zeta_parallel(void (*fn)(void* ctx, int part, int parts), void* ctx, size_t work, int per_thread) {
  struct job j;
  memset(&j, 0, sizeof j);
  j.fn = fn;
  j.ctx = ctx;
  run(&j, work, per_thread < 1 ? 1 : per_thread);
}

/* The pool's threads, the caller included. */
int zeta_parallel_threads(void) {
  pthread_once(&pool.once, start_pool);
  return pool.threads;
}

/* Referenced by the bridge so the linker keeps this library as a dependency of every binary. */
const char* zeta_cblas_shim_name(void) { return scipy_openblas_get_config(); }
