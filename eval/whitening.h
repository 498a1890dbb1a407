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
  int64_t D = 0, d = 0;
  int64_t fit_rows = 0;      // rows it was fitted on
  std::vector<double> mean;  // D
  std::vector<double> P;     // d x D, row i = v_i / s_i
  // The d whitened values of each of the n rows of X (n x D, row-major), n x d floats.
  std::vector<float> apply(const float* X, int64_t n) const;
};

// Fits on the rows `rows` of X (row-major, D floats each). `what` names the
// rows in errors, e.g. "the 40 rows of xray in split 'train' (encoder
// random-init)". Throws m3ret::Error naming it and eval.whiten_dims when d < 1,
// d > D, there are no more rows than d, or the centred rows span fewer than d
// directions (s_d <= 1e-6 s_1: a direction that small is rounding noise, and
// dividing by it would make the noise as loud as the signal).
Whitening fit_whitening(const float* X, int64_t D, const std::vector<int64_t>& rows, int64_t d,
                        const std::string& what);

}  // namespace m3ret::eval
