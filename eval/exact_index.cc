#include "eval/exact_index.h"

#include <torch/torch.h>

#include <algorithm>
#include <limits>
#include <vector>

#include <fmt/format.h>

#include "core/error.h"

namespace m3ret::eval {
namespace {

struct Hit {
  float score;
  int64_t id;
};
// a ranks below c: lower score, or the same score and a higher id.
inline bool worse(const Hit& a, const Hit& c) {
  return a.score != c.score ? a.score < c.score : a.id > c.id;
}
struct WorseOnTop {
  bool operator()(const Hit& a, const Hit& c) const { return worse(c, a); }  // min-heap
};

// Offers row[0..width) (ids g0..) to the heap h of capacity kk holding `filled`.
// Ids arrive in ascending order, so an equal score never displaces a kept one
// (ties keep the lower id). Most entries cost one comparison with the threshold.
void scan(const float* row, int64_t width, int64_t g0, int64_t kk, Hit* h, int64_t& filled) {
  int64_t j = 0;
  for (; j < width && filled < kk; ++j) {
    h[filled++] = {row[j], g0 + j};
    std::push_heap(h, h + filled, WorseOnTop{});
  }
  float threshold = filled == kk ? h[0].score : -std::numeric_limits<float>::infinity();
  for (; j < width; ++j) {
    if (row[j] <= threshold) continue;
    std::pop_heap(h, h + kk, WorseOnTop{});
    h[kk - 1] = {row[j], g0 + j};
    std::push_heap(h, h + kk, WorseOnTop{});
    threshold = h[0].score;
  }
}

class ExactIndex final : public Index {
 public:
  ExactIndex(int64_t dim, ExactIndexOptions options) : dim_(dim), options_(options) {
    M3RET_CHECK(dim >= 1, "index dimension {} must be >= 1", dim);
    M3RET_CHECK(options.query_block >= 1 && options.gallery_block >= 1,
                "exact index blocks must be >= 1");
  }

  int64_t dim() const override { return dim_; }
  int64_t size() const override { return static_cast<int64_t>(rows_.size()) / dim_; }
  std::string spec() const override { return "exact"; }
  bool exact() const override { return true; }

  void add(int64_t n, const float* x) override {
    if (n <= 0) return;
    rows_.insert(rows_.end(), x, x + n * dim_);  // copies: x need not outlive the call
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
    const torch::Tensor gallery =
        torch::from_blob(const_cast<float*>(rows_.data()), {n, dim_}, torch::kFloat32);
    // Per query of the block, a min-heap of its kk best so far (worst on top).
    std::vector<Hit> heaps(static_cast<size_t>(std::min(nq, options_.query_block) * kk));
    for (int64_t q0 = 0; q0 < nq; q0 += options_.query_block) {
      const int64_t q1 = std::min(nq, q0 + options_.query_block), b = q1 - q0;
      std::vector<int64_t> filled(static_cast<size_t>(b), 0);
      torch::Tensor qb = queries.slice(0, q0, q1);
      for (int64_t g0 = 0; g0 < n; g0 += options_.gallery_block) {
        const int64_t g1 = std::min(n, g0 + options_.gallery_block), width = g1 - g0;
        torch::Tensor sims =
            torch::mm(qb, gallery.slice(0, g0, g1).t()).contiguous();  // [b, width]
        const float* S = sims.data_ptr<float>();
        at::parallel_for(0, b, 16, [&](int64_t r0, int64_t r1) {
          for (int64_t r = r0; r < r1; ++r)
            scan(S + r * width, width, g0, kk, heaps.data() + r * kk, filled[r]);
        });
      }
      for (int64_t r = 0; r < b; ++r) {  // best first; equal scores by lower id
        Hit* h = heaps.data() + r * kk;
        std::sort(h, h + filled[r], [](const Hit& a, const Hit& c) { return worse(c, a); });
        for (int64_t j = 0; j < filled[r]; ++j) {
          scores[(q0 + r) * k + j] = h[j].score;
          ids[(q0 + r) * k + j] = h[j].id;
        }
      }
    }
  }

  void save(const std::filesystem::path&) const override {}  // the vectors are the index

 private:
  const int64_t dim_;
  const ExactIndexOptions options_;
  std::vector<float> rows_;  // the gallery: size x dim floats, row-major (appends amortised)
};

}  // namespace

std::unique_ptr<Index> make_exact_index(int64_t dim, ExactIndexOptions options) {
  return std::make_unique<ExactIndex>(dim, options);
}

}  // namespace m3ret::eval
