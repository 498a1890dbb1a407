// The whitening readout (eval/whitening.h, eval.whiten_dims): what whitening means (unit,
// uncorrelated coordinates on the fit rows, the loudest directions first), when it cannot be
// fitted, and what it does to retrieval: a class under loud class-free directions is found.
// recall_reference.py checks the figures against numpy (retrieval_test.cc).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <random>

#include "core/config.h"
#include "eval/report.h"
#include "eval/retrieval.h"
#include "eval/whitening.h"
#include "eval_test_util.h"

namespace m3ret::eval {
namespace {

using testing::add;
using testing::error_of;

// n x D normal values, column j scaled by scale[j].
std::vector<float> normal_rows(int64_t n, const std::vector<float>& scale, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal;
  std::vector<float> X;
  for (int64_t i = 0; i < n; ++i)
    for (float s : scale) X.push_back(normal(rng) * s + 3.0f);  // an offset the mean removes
  return X;
}

std::vector<int64_t> all_rows(int64_t n) {
  std::vector<int64_t> rows(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) rows[static_cast<size_t>(i)] = i;
  return rows;
}

// Y^T Y of the whitened fit rows: the identity when the coordinates are uncorrelated with unit
// (summed) variance, whichever way LAPACK was asked (covariance when n >= D, Gram when n < D).
TEST(Whitening, FitRowsComeOutUncorrelatedWithUnitVariance) {
  const std::vector<float> scale = {9, 0.5f, 4, 1, 2, 0.1f, 6, 3};
  for (int64_t n : {200, 6}) {  // n >= D and n < D
    SCOPED_TRACE(n);
    const int64_t D = 8, d = n > D ? 5 : 4;
    const auto X = normal_rows(n, scale, 7);
    const Whitening w = fit_whitening(X.data(), D, all_rows(n), d, "test rows");
    EXPECT_EQ(w.fit_rows, n);
    const auto Y = w.apply(X.data(), n);
    ASSERT_EQ(static_cast<int64_t>(Y.size()), n * d);
    for (int64_t a = 0; a < d; ++a)
      for (int64_t b = 0; b < d; ++b) {
        double s = 0;
        for (int64_t r = 0; r < n; ++r) s += double(Y[r * d + a]) * Y[r * d + b];
        EXPECT_NEAR(s, a == b ? 1.0 : 0.0, 1e-4) << a << "," << b;
      }
  }
}

// With d = 1 the one coordinate is the loudest axis, centred and scaled: perfectly correlated
// with it; with d = 2 the second is the next loudest.
TEST(Whitening, KeepsTheLoudestDirectionsFirst) {
  const int64_t n = 500, D = 4;
  const auto X = normal_rows(n, {1, 20, 0.2f, 5}, 11);
  for (int64_t d : {1, 2}) {
    const Whitening w = fit_whitening(X.data(), D, all_rows(n), d, "rows");
    const auto Y = w.apply(X.data(), n);
    for (int64_t i = 0; i < d; ++i) {
      const int64_t axis = i == 0 ? 1 : 3;
      double sx = 0, sy = 0, sxx = 0, syy = 0, sxy = 0;
      for (int64_t r = 0; r < n; ++r) {
        const double x = X[r * D + axis], y = Y[r * d + i];
        sx += x, sy += y, sxx += x * x, syy += y * y, sxy += x * y;
      }
      const double cov = sxy - sx * sy / n;
      const double corr = cov / std::sqrt((sxx - sx * sx / n) * (syy - sy * sy / n));
      EXPECT_GT(std::abs(corr), 0.99) << "d " << d << " coordinate " << i;
    }
  }
}

// It keeps the directions the rows span and no more: at most D, at most rows - 1, none that is
// rounding noise; it refuses rows it cannot fit at all.
TEST(Whitening, KeepsOnlyTheDirectionsTheRowsSpan) {
  const auto X = normal_rows(10, {1, 2, 3}, 1);
  EXPECT_EQ(fit_whitening(X.data(), 3, all_rows(10), 2, "rows").d, 2);
  EXPECT_EQ(fit_whitening(X.data(), 3, all_rows(10), 4, "rows").d, 3);  // D = 3
  EXPECT_EQ(fit_whitening(X.data(), 3, all_rows(3), 3, "rows").d, 2);   // 3 centred rows
  // Rows on a line span one direction: a second would be rounding noise.
  std::vector<float> line;
  for (int i = 0; i < 10; ++i) line.insert(line.end(), {float(i), float(2 * i), 1.0f});
  const Whitening w = fit_whitening(line.data(), 3, all_rows(10), 2, "line");
  EXPECT_EQ(w.d, 1);
  // Padded to the width asked, with zeros after the kept values.
  const auto y = w.apply(line.data(), 10, 4);
  ASSERT_EQ(y.size(), 40u);
  for (int r = 0; r < 10; ++r) {
    EXPECT_NE(y[r * 4], 0.0f) << r;
    for (int j = 1; j < 4; ++j) EXPECT_EQ(y[r * 4 + j], 0.0f) << r;
  }
  auto error = [&](const float* data, int64_t rows, int64_t d) {
    return error_of([&] { fit_whitening(data, 3, all_rows(rows), d, "the rows of xray"); });
  };
  EXPECT_NE(error(X.data(), 1, 2).find("the rows of xray cannot be fitted on: it needs at least 2"),
            std::string::npos)
      << error(X.data(), 1, 2);
  EXPECT_NE(error(X.data(), 10, 0).find("eval.whiten_dims = 0"), std::string::npos);
  const std::vector<float> same(30, 1.5f);
  EXPECT_NE(error(same.data(), 10, 2).find("the rows of xray are all the same vector"),
            std::string::npos)
      << error(same.data(), 10, 2);
}

// Six classes in six quiet directions under four loud class-free ones (as the whitening probe's
// test builds them), X-ray with train and test patients, MRI with test patients only.
EmbeddingSet hidden_class_set() {
  std::mt19937 rng(3);
  std::normal_distribution<float> normal;
  std::vector<std::vector<float>> means(6, std::vector<float>(6));
  for (auto& m : means)
    for (auto& v : m) v = normal(rng);
  EmbeddingSet s;
  s.D = 24;
  for (const std::string modality : {"xray", "mri"})
    for (const std::string split : {"train", "test"}) {
      if (modality == "mri" && split == "train") continue;
      for (int c = 0; c < 6; ++c)
        for (int p = 0; p < 12; ++p)
          for (int image = 0; image < 2; ++image) {
            std::vector<float> x;
            for (int j = 0; j < 4; ++j) x.push_back(normal(rng) * 20);
            for (int j = 0; j < 6; ++j) x.push_back(means[c][j] + normal(rng) * 0.3f);
            for (int j = 0; j < 14; ++j) x.push_back(normal(rng) * 0.05f);
            add(s, modality, fmt::format("{}-{}-{}{}", modality, split, c, p),
                {std::string(1, char('a' + c))}, x, split);
          }
    }
  s.attrs.encoder = "checkpoint";
  return s;
}

EvalConfig whitened(int64_t d, const std::string& fit = "modality") {
  EvalConfig c;
  c.ks = {1, 5};
  c.whiten_dims = d;
  c.whiten_fit = fit;
  return c;
}

TEST(Whitening, FindsAClassUnderLoudDirectionsThatCosineMisses) {
  const EmbeddingSet s = hidden_class_set();
  const Report plain = evaluate(s, whitened(0));
  const Report white = evaluate(s, whitened(10));
  const double chance = plain.find("xray")->metrics.chance_recall.at(1);
  EXPECT_NEAR(chance, 22.0 / 142, 1e-9);
  EXPECT_LT(plain.find("xray")->metrics.recall.at(1), 0.35);
  EXPECT_GT(white.find("xray")->metrics.recall.at(1), 0.8);
  // MRI has no train row: it uses the fit of all train rows (X-ray's), and still finds the class.
  EXPECT_LT(plain.find("mri")->metrics.recall.at(1), 0.35);
  EXPECT_GT(white.find("mri")->metrics.recall.at(1), 0.8);
  EXPECT_GT(white.find("xray->mri")->metrics.recall.at(1), 0.8);
  EXPECT_EQ(white.whitening.at("xray"), (WhiteningFit{"xray", 144, 10}));
  EXPECT_EQ(white.whitening.at("mri"), (WhiteningFit{"all", 144, 10}));
  EXPECT_EQ(white.whitening.at("cross_modal"), (WhiteningFit{"all", 144, 10}));
  EXPECT_TRUE(white.warnings.empty());
  EXPECT_EQ(white.whiten_dims, 10);
  EXPECT_EQ(white.whiten_split, "train");
  EXPECT_TRUE(plain.whitening.empty());
  // Chance and the queries do not change with the readout.
  EXPECT_EQ(white.find("xray")->metrics.queries, plain.find("xray")->metrics.queries);
  EXPECT_DOUBLE_EQ(white.find("xray")->metrics.chance_recall.at(1), chance);
  // Too few dimensions keep only the loud class-free ones.
  EXPECT_LT(evaluate(s, whitened(4)).find("xray")->metrics.recall.at(1), 0.35);
}

TEST(Whitening, UsesNoLabel) {
  EmbeddingSet s = hidden_class_set();
  const Report before = evaluate(s, whitened(10));
  std::mt19937 rng(9);
  for (int64_t i = 0; i < s.N; ++i)  // the fit rows' labels shuffled, or dropped
    if (s.splits[i] == "train") s.labels[i] = rng() % 2 ? std::vector<std::string>{} : s.labels[0];
  const Report after = evaluate(s, whitened(10));
  for (const std::string row : {"xray", "mri", "xray->mri"}) {
    EXPECT_EQ(after.find(row)->metrics.recall, before.find(row)->metrics.recall) << row;
    EXPECT_EQ(after.find(row)->metrics.ci_recall, before.find(row)->metrics.ci_recall) << row;
  }
}

TEST(Whitening, PooledFitAndItsRecordInTheReport) {
  const EmbeddingSet s = hidden_class_set();
  const Report r = evaluate(s, whitened(10, "all"));
  EXPECT_EQ(r.whitening.at("xray"), (WhiteningFit{"all", 144, 10}));
  EXPECT_GT(r.find("xray")->metrics.recall.at(1), 0.8);
  // The report keeps the readout through JSON, and the Markdown says it.
  const Report back = report_from_json(to_json(r));
  EXPECT_EQ(back.whiten_dims, 10);
  EXPECT_EQ(back.whiten_split, "train");
  EXPECT_EQ(back.whiten_fit, "all");
  EXPECT_EQ(back.whitening, r.whitening);
  EXPECT_EQ(report_from_json(to_json(evaluate(s, whitened(0)))).whiten_dims, 0);
  const std::string line = whitening_line(r);
  EXPECT_NE(line.find("PCA whitening to 10 dimensions"), std::string::npos) << line;
  EXPECT_NE(line.find(": xray, mri, cross-modal rows on all modalities' 144 rows pooled\n"),
            std::string::npos)
      << line;
  const std::string own = whitening_line(evaluate(s, whitened(10)));
  EXPECT_NE(own.find("split 'train' (each encoder on its own embeddings): xray on its own 144 "
                     "rows; mri, cross-modal rows on all modalities' 144 rows pooled\n"),
            std::string::npos)
      << own;
  EXPECT_NE(to_markdown(r).find(line), std::string::npos);
  EXPECT_EQ(whitening_line(evaluate(s, whitened(0))), "");
}

TEST(Whitening, ReportsFewerDirectionsAndNamesWhatItCannotFit) {
  EmbeddingSet s = hidden_class_set();
  EvalConfig c = whitened(10);
  c.whiten_split = "val";
  const std::string none = error_of([&] { evaluate(s, c); });
  EXPECT_NE(none.find("eval.whiten_split = 'val' selects none"), std::string::npos) << none;
  EXPECT_NE(none.find("splits present: test, train"), std::string::npos) << none;
  // More dimensions than a fit's rows span: it keeps what they span, and the report says so.
  const Report wide = evaluate(s, whitened(200));
  EXPECT_EQ(wide.whitening.at("xray"), (WhiteningFit{"xray", 144, 24}));
  EXPECT_EQ(wide.whitening.at("mri"), (WhiteningFit{"all", 144, 24}));
  ASSERT_EQ(wide.warnings.size(), 2u);  // the pooled fit and X-ray's own
  EXPECT_NE(wide.warnings[1].find("the 144 checkpoint rows of xray of split 'train' span only "
                                  "24 directions (of dimension 24), so they are whitened to 24, "
                                  "not eval.whiten_dims = 200"),
            std::string::npos)
      << wide.warnings[1];
  EXPECT_NE(whitening_line(wide).find("xray on its own 144 rows (24 dimensions: all they span)"),
            std::string::npos)
      << whitening_line(wide);
  EXPECT_EQ(report_from_json(to_json(wide)).whitening, wide.whitening);
  // The rows span all 24 directions: asking for 24 warns of nothing.
  EXPECT_TRUE(evaluate(s, whitened(24)).warnings.empty());

  EvalConfig bad;
  bad.whiten_dims = -1;
  EXPECT_THROW(bad.validate(), config::Error);
  bad.whiten_dims = 8;
  bad.whiten_fit = "patient";
  EXPECT_THROW(bad.validate(), config::Error);
  const Settings settings = config::load<Settings>(
      std::nullopt, {"eval.whiten_dims=64", "eval.whiten_split=val", "eval.whiten_fit=all"});
  EXPECT_EQ(settings.eval.whiten_dims, 64);
  EXPECT_EQ(settings.eval.whiten_split, "val");
  EXPECT_EQ(settings.eval.whiten_fit, "all");
  EXPECT_EQ(Settings{}.eval.whiten_dims, 0);
  EXPECT_THROW(config::load<Settings>(std::nullopt, {"eval.whiten_fit=patient"}), config::Error);
  EXPECT_EQ(settings.eval.embed_split("test"), "");
  EXPECT_EQ(Settings{}.eval.embed_split("test"), "test");
}

}  // namespace
}  // namespace m3ret::eval
