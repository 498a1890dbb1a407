#include "eval/exact_index.h"

#include <torch/torch.h>

#include <algorithm>
#include <limits>
#include <numeric>

#include <fmt/format.h>

#include "core/error.h"

namespace m3ret::eval {
namespace {

class ExactIndex final : public Index {
 public:
  ExactIndex(int64_t dim, ExactIndexOptions options)
      : dim_(dim), options_(options), gallery_(torch::empty({0, dim}, torch::kFloat32)) {
    M3RET_CHECK(dim >= 1, "index dimension {} must be >= 1", dim);
    M3RET_CHECK(options.query_block >= 1 && options.gallery_block >= 1,
                "exact index blocks must be >= 1");
  }

  int64_t dim() const override { return dim_; }
  int64_t size() const override { return gallery_.size(0); }
  std::string spec() const override { return "exact"; }
  bool exact() const override { return true; }

  void add(int64_t n, const float* x) override {
    if (n <= 0) return;
    torch::Tensor rows = torch::from_blob(const_cast<float*>(x), {n, dim_}, torch::kFloat32);
    gallery_ = torch::cat({gallery_, rows}).contiguous();  // copies: x need not outlive the call
  }

  void search(int64_t nq, const float* q, int64_t k, float* scores, int64_t* ids) const override {
    M3RET_CHECK(k >= 1, "search: k = {} must be >= 1", k);
    torch::NoGradGuard no_grad;
    const int64_t n = size();
    const int64_t kk = std::min(k, n);
    std::fill(scores, scores + nq * k, -std::numeric_limits<float>::infinity());
    std::fill(ids, ids + nq * k, int64_t{-1});
    if (kk == 0 || nq <= 0) return;
    torch::Tensor queries = torch::from_blob(const_cast<float*>(q), {nq, dim_}, torch::kFloat32);
    for (int64_t q0 = 0; q0 < nq; q0 += options_.query_block) {
      const int64_t q1 = std::min(nq, q0 + options_.query_block);
      torch::Tensor qb = queries.slice(0, q0, q1);
      torch::Tensor best_s, best_i;  // [b, <=kk] running top-k
      for (int64_t g0 = 0; g0 < n; g0 += options_.gallery_block) {
        const int64_t g1 = std::min(n, g0 + options_.gallery_block);
        torch::Tensor sims = torch::mm(qb, gallery_.slice(0, g0, g1).t());  // [b, g1-g0]
        auto [s, i] = sims.topk(std::min(kk, g1 - g0), /*dim=*/1);
        i.add_(g0);
        if (best_s.defined()) {
          torch::Tensor cs = torch::cat({best_s, s}, 1), ci = torch::cat({best_i, i}, 1);
          auto [ts, ti] = cs.topk(std::min(kk, cs.size(1)), 1);
          best_s = ts;
          best_i = ci.gather(1, ti);
        } else {
          best_s = s;
          best_i = i;
        }
      }
      best_s = best_s.contiguous();
      best_i = best_i.contiguous();
      const float* bs = best_s.data_ptr<float>();
      const int64_t* bi = best_i.data_ptr<int64_t>();
      for (int64_t r = 0; r < q1 - q0; ++r) {
        // Equal scores: lower id first (topk leaves their order unspecified).
        std::vector<int64_t> order(static_cast<size_t>(kk));
        std::iota(order.begin(), order.end(), 0);
        const float* rs = bs + r * kk;
        const int64_t* ri = bi + r * kk;
        std::sort(order.begin(), order.end(), [&](int64_t a, int64_t b) {
          return rs[a] != rs[b] ? rs[a] > rs[b] : ri[a] < ri[b];
        });
        for (int64_t j = 0; j < kk; ++j) {
          scores[(q0 + r) * k + j] = rs[order[j]];
          ids[(q0 + r) * k + j] = ri[order[j]];
        }
      }
    }
  }

  void save(const std::filesystem::path&) const override {}  // the vectors are the index

 private:
  const int64_t dim_;
  const ExactIndexOptions options_;
  torch::Tensor gallery_;  // float32 [size, dim], contiguous
};

}  // namespace

std::unique_ptr<Index> make_exact_index(int64_t dim, ExactIndexOptions options) {
  return std::make_unique<ExactIndex>(dim, options);
}

}  // namespace m3ret::eval
