#include "eval/whitening.h"

#include <algorithm>
#include <cmath>

#include <fmt/format.h>

#include "core/error.h"

// LAPACK and BLAS (OpenBLAS through Debian's alternatives), Fortran interface.
extern "C" {
void dsyevr_(const char* jobz, const char* range, const char* uplo, const int* n, double* a,
             const int* lda, const double* vl, const double* vu, const int* il, const int* iu,
             const double* abstol, int* m, double* w, double* z, const int* ldz, int* isuppz,
             double* work, const int* lwork, int* iwork, const int* liwork, int* info);
void dsyrk_(const char* uplo, const char* trans, const int* n, const int* k, const double* alpha,
            const double* a, const int* lda, const double* beta, double* c, const int* ldc);
}

namespace m3ret::eval {
namespace {

constexpr int64_t kRowBlock = 1024;  // rows converted to double at once (covariance path)

// The top `d` eigenpairs of the symmetric N x N matrix `a` (column-major, upper
// triangle set; destroyed): eigenvalues descending in `w`, eigenvector i in
// z[i*N .. i*N + N).
void top_eigenpairs(std::vector<double>& a, int N, int d, std::vector<double>& w,
                    std::vector<double>& z) {
  const int il = N - d + 1, iu = N;
  const double vl = 0, vu = 0, abstol = 0;
  int m = 0, info = 0, lwork = -1, liwork = -1, iwork_query = 0;
  double work_query = 0;
  std::vector<double> wa(static_cast<size_t>(N));
  std::vector<double> za(static_cast<size_t>(N) * static_cast<size_t>(d));
  std::vector<int> isuppz(2 * static_cast<size_t>(d));
  dsyevr_("V", "I", "U", &N, a.data(), &N, &vl, &vu, &il, &iu, &abstol, &m, wa.data(), za.data(),
          &N, isuppz.data(), &work_query, &lwork, &iwork_query, &liwork, &info);
  M3RET_CHECK(info == 0, "dsyevr workspace query failed (info {})", info);
  lwork = static_cast<int>(work_query);
  liwork = iwork_query;
  std::vector<double> work(static_cast<size_t>(lwork));
  std::vector<int> iwork(static_cast<size_t>(liwork));
  dsyevr_("V", "I", "U", &N, a.data(), &N, &vl, &vu, &il, &iu, &abstol, &m, wa.data(), za.data(),
          &N, isuppz.data(), work.data(), &lwork, iwork.data(), &liwork, &info);
  if (info != 0 || m != d)
    throw Error(fmt::format("whitening: LAPACK dsyevr did not converge (info {}, {} of {} pairs)",
                            info, m, d));
  // dsyevr returns them ascending; reverse to largest first.
  w.resize(static_cast<size_t>(d));
  z.resize(za.size());
  for (int i = 0; i < d; ++i) {
    const int from = d - 1 - i;
    w[static_cast<size_t>(i)] = wa[static_cast<size_t>(from)];
    std::copy_n(za.data() + static_cast<size_t>(from) * N, N,
                z.data() + static_cast<size_t>(i) * N);
  }
}

}  // namespace

std::vector<float> Whitening::apply(const float* X, int64_t n, int64_t width) const {
  if (width < d) width = d;
  std::vector<float> out(static_cast<size_t>(n * width), 0.0f);
  std::vector<double> xc(static_cast<size_t>(D));
  for (int64_t r = 0; r < n; ++r) {
    const float* x = X + r * D;
    for (int64_t j = 0; j < D; ++j) xc[j] = static_cast<double>(x[j]) - mean[j];
    for (int64_t i = 0; i < d; ++i) {
      const double* p = P.data() + i * D;
      double s = 0;
      for (int64_t j = 0; j < D; ++j) s += p[j] * xc[j];
      out[static_cast<size_t>(r * width + i)] = static_cast<float>(s);
    }
  }
  return out;
}

Whitening fit_whitening(const float* X, int64_t D, const std::vector<int64_t>& rows, int64_t d,
                        const std::string& what) {
  const int64_t n = static_cast<int64_t>(rows.size());
  if (d < 1) throw Error(fmt::format("eval.whiten_dims = {} must be >= 1", d));
  if (n < 2)
    throw Error(fmt::format("whitening: {} cannot be fitted on: it needs at least 2 rows", what));
  // n centred rows span at most n - 1 directions, and D-dimensional ones at most D.
  const int64_t k = std::min({d, D, n - 1});
  Whitening w;
  w.D = D;
  w.fit_rows = n;
  w.mean.assign(static_cast<size_t>(D), 0.0);
  for (int64_t r : rows)
    for (int64_t j = 0; j < D; ++j) w.mean[j] += X[r * D + j];
  for (auto& m : w.mean) m /= static_cast<double>(n);

  const double one = 1.0;
  std::vector<double> lambda, vec;  // eigenvalues (= s_i^2), eigenvectors
  std::vector<double> centred;      // rows x D, row-major = D x rows column-major
  auto centre = [&](int64_t from, int64_t to) {
    centred.resize(static_cast<size_t>((to - from) * D));
    for (int64_t r = from; r < to; ++r)
      for (int64_t j = 0; j < D; ++j)
        centred[static_cast<size_t>((r - from) * D + j)] = X[rows[r] * D + j] - w.mean[j];
  };
  const int Di = static_cast<int>(D);
  const bool covariance = n >= D;  // else the Gram matrix: fewer rows than dimensions
  if (covariance) {                // covariance C = X_c^T X_c, D x D, in blocks of rows
    std::vector<double> C(static_cast<size_t>(D * D), 0.0);
    for (int64_t b0 = 0; b0 < n; b0 += kRowBlock) {
      const int64_t b1 = std::min(n, b0 + kRowBlock);
      centre(b0, b1);
      const int rows_in_block = static_cast<int>(b1 - b0);
      dsyrk_("U", "N", &Di, &rows_in_block, &one, centred.data(), &Di, &one, C.data(), &Di);
    }
    top_eigenpairs(C, Di, static_cast<int>(k), lambda, vec);
  } else {  // Gram G = X_c X_c^T, n x n; v_i = X_c^T u_i / s_i
    centre(0, n);
    const int ni = static_cast<int>(n);
    const double zero = 0.0;
    std::vector<double> G(static_cast<size_t>(n * n), 0.0);
    dsyrk_("U", "T", &ni, &Di, &one, centred.data(), &Di, &zero, G.data(), &ni);
    top_eigenpairs(G, ni, static_cast<int>(k), lambda, vec);
  }
  // Keep the directions the rows span: s_i > 1e-6 s_1 (lambda = s^2).
  w.d = 0;
  while (w.d < k && lambda[static_cast<size_t>(w.d)] > 1e-12 * lambda[0] && lambda[0] > 0) ++w.d;
  if (w.d == 0)
    throw Error(fmt::format(
        "whitening: {} are all the same vector: they span no direction to whiten", what));

  const int64_t N = covariance ? D : n;  // length of each eigenvector
  w.P.assign(static_cast<size_t>(w.d * D), 0.0);
  for (int64_t i = 0; i < w.d; ++i) {
    double* p = w.P.data() + i * D;
    const double* v = vec.data() + i * N;
    if (covariance) {  // v_i / s_i
      const double inv_s = 1.0 / std::sqrt(lambda[static_cast<size_t>(i)]);
      for (int64_t j = 0; j < D; ++j) p[j] = v[j] * inv_s;
    } else {  // X_c^T u_i / s_i^2
      for (int64_t r = 0; r < n; ++r)
        for (int64_t j = 0; j < D; ++j) p[j] += centred[static_cast<size_t>(r * D + j)] * v[r];
      for (int64_t j = 0; j < D; ++j) p[j] /= lambda[static_cast<size_t>(i)];
    }
  }
  return w;
}

}  // namespace m3ret::eval
