/* Routes MLX's float32 GEMM to OpenBLAS (scipy-openblas32 prefixes its symbols with `scipy_`).
 * The executable links this library directly, so the loader resolves libmlx's `cblas_sgemm` here
 * before it reaches the reference BLAS that the mlx-cpu wheel bundles. */
typedef int blasint;

extern void scipy_cblas_sgemm(int order, int transa, int transb, blasint m, blasint n, blasint k,
                              float alpha, const float* a, blasint lda, const float* b, blasint ldb,
                              float beta, float* c, blasint ldc);
extern char* scipy_openblas_get_config(void);

void cblas_sgemm(int order, int transa, int transb, blasint m, blasint n, blasint k, float alpha,
                 const float* a, blasint lda, const float* b, blasint ldb, float beta, float* c,
                 blasint ldc) {
  scipy_cblas_sgemm(order, transa, transb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
}

/* Called by the bridge so the linker keeps this library as a dependency of every binary. */
const char* zeta_cblas_shim_name(void) { return scipy_openblas_get_config(); }
