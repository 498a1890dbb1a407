// PCA whitening of embeddings, fitted without labels: the retrieval readout
// of eval.whiten_dims (eval/retrieval.h, docs/evaluation.md "Whitening").
//
// Fit on n rows x_1..x_n of dimension D: their mean mu, and the d largest
// singular values s_1 >= ... >= s_d of the centred rows with their right
// singular vectors v_1..v_d (the first d principal directions). A row x maps
// to the d values (x - mu) . v_i / s_i: every kept direction gets unit
// variance on the fit rows, so a cosine afterwards weighs them equally
// instead of letting the few loudest directions decide.
//
// Computed in double with LAPACK's dsyevr: the top d eigenpairs of the
// covariance (D x D, accumulated in blocks of rows) when n >= D, else of the
// Gram matrix (n x n), from which v_i = X_c^T u_i / s_i. Each v_i's sign is
// LAPACK's choice; cosine similarities do not depend on it.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace m3ret::eval {

struct Whitening {
  int64_t D = 0;
  int64_t d = 0;             // directions kept (at most the d asked for, see fit_whitening)
  int64_t fit_rows = 0;      // rows it was fitted on
  std::vector<double> mean;  // D
  std::vector<double> P;     // d x D, row i = v_i / s_i
  // The whitened values of each of the n rows of X (n x D, row-major): n x width floats, the
  // d kept values then zeros up to `width` (zeros change no cosine; width < d means d).
  std::vector<float> apply(const float* X, int64_t n, int64_t width = 0) const;
};

// Fits on the rows `rows` of X (row-major, D floats each), keeping the d
// largest directions, or fewer when the rows span fewer: at most D, at most
// rows - 1 (centred rows), and only directions with s_i > 1e-6 s_1 (smaller
// ones are rounding noise, and dividing by them would make the noise as loud
// as the signal). Whitening::d says how many were kept. `what` names the rows
// in errors, e.g. "the 40 random-init rows of xray of split 'train'". Throws
// m3ret::Error naming it when d < 1, there are fewer than 2 rows, or every
// row is the same vector.
Whitening fit_whitening(const float* X, int64_t D, const std::vector<int64_t>& rows, int64_t d,
                        const std::string& what);

}  // namespace m3ret::eval
