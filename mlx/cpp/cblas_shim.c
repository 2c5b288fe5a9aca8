/* Routes MLX's float32 GEMM to OpenBLAS (scipy-openblas32 prefixes its symbols with `scipy_`).
 * The executable links this library directly, so the loader resolves libmlx's `cblas_sgemm` here
 * before it reaches the reference BLAS that the mlx-cpu wheel bundles.
 *
 * A product with a single row (every decode step: one token times a weight matrix) goes to
 * GEMV: OpenBLAS's GEMM would first copy ("pack") the whole weight matrix, doubling the memory
 * traffic of what is a bandwidth-bound operation. */
typedef int blasint;

enum { ROW_MAJOR = 101, NO_TRANS = 111, TRANS = 112 };

extern void scipy_cblas_sgemm(int order, int transa, int transb, blasint m, blasint n, blasint k,
                              float alpha, const float* a, blasint lda, const float* b, blasint ldb,
                              float beta, float* c, blasint ldc);
extern void scipy_cblas_sgemv(int order, int trans, blasint m, blasint n, float alpha,
                              const float* a, blasint lda, const float* x, blasint incx,
                              float beta, float* y, blasint incy);
extern char* scipy_openblas_get_config(void);

void cblas_sgemm(int order, int transa, int transb, blasint m, blasint n, blasint k, float alpha,
                 const float* a, blasint lda, const float* b, blasint ldb, float beta, float* c,
                 blasint ldc) {
  if (order == ROW_MAJOR && m == 1 && k > 0 && n > 0) {
    /* c[1,n] = a[1,k] * op(b)[k,n]  <=>  c = op(b)^T a */
    blasint incx = (transa == NO_TRANS) ? 1 : lda;
    if (transb == NO_TRANS) {
      /* b is k x n: c = b^T a */
      scipy_cblas_sgemv(ROW_MAJOR, TRANS, k, n, alpha, b, ldb, a, incx, beta, c, 1);
    } else {
      /* b is n x k: c = b a */
      scipy_cblas_sgemv(ROW_MAJOR, NO_TRANS, n, k, alpha, b, ldb, a, incx, beta, c, 1);
    }
    return;
  }
  scipy_cblas_sgemm(order, transa, transb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
}

/* Referenced by the bridge so the linker keeps this library as a dependency of every binary. */
const char* zeta_cblas_shim_name(void) { return scipy_openblas_get_config(); }
