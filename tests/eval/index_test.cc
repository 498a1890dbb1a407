// Indices: the factory string, exact search equal to brute force, FAISS Flat
// equal to exact, HNSW/IVF recall against exact (reported), INDEX folders,
// and the raw-pixel baseline features.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <fstream>
#include <random>
#include <set>

#include <sys/resource.h>

#include "core/error.h"
#include "eval/embed.h"
#include "eval/exact_index.h"
#include "eval/index.h"
#include "eval/index_dir.h"
#include "eval/retrieval.h"
#include "eval/search.h"
#include "eval_test_util.h"
#include "test_util.h"

namespace m3ret::eval {
namespace {

// n unit vectors of dimension D around `clusters` random centres (data with
// structure, as embeddings have).
std::vector<float> clustered(int64_t n, int64_t D, int clusters, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal;
  std::vector<float> centres(static_cast<size_t>(clusters * D));
  for (auto& c : centres) c = normal(rng);
  std::vector<float> x(static_cast<size_t>(n * D));
  for (int64_t i = 0; i < n; ++i) {
    const float* c = centres.data() + (rng() % clusters) * D;
    double n2 = 0;
    for (int64_t j = 0; j < D; ++j) {
      x[i * D + j] = c[j] + 0.6f * normal(rng);
      n2 += double(x[i * D + j]) * x[i * D + j];
    }
    for (int64_t j = 0; j < D; ++j) x[i * D + j] /= static_cast<float>(std::sqrt(n2));
  }
  return x;
}

struct Results {
  std::vector<float> scores;
  std::vector<int64_t> ids;
};

Results run(const Index& index, const std::vector<float>& q, int64_t k) {
  const int64_t nq = static_cast<int64_t>(q.size()) / index.dim();
  Results r{std::vector<float>(nq * k), std::vector<int64_t>(nq * k)};
  index.search(nq, q.data(), k, r.scores.data(), r.ids.data());
  return r;
}

using testing::error_of;

TEST(IndexSpec, ParsesTypesSizesAndOptions) {
  EXPECT_EQ(parse_index_spec("exact").str(), "exact");
  EXPECT_EQ(parse_index_spec("FLAT").str(), "flat");
  IndexSpec h = parse_index_spec("hnsw16,ef_search=64");
  EXPECT_EQ(h.type, "hnsw");
  EXPECT_EQ(h.size, 16);
  EXPECT_EQ(h.options.at("ef_search"), 64);
  EXPECT_EQ(parse_index_spec("ivf100,nprobe=7").str(), "ivf100,nprobe=7");
  EXPECT_NE(error_of([] { parse_index_spec("annoy"); }).find("unknown type 'annoy'"),
            std::string::npos);
  EXPECT_NE(error_of([] {
              parse_index_spec("ivf,ef_search=3");
            }).find("'ef_search' does not apply to 'ivf'"),
            std::string::npos);
  EXPECT_NE(error_of([] { parse_index_spec("hnsw0"); }).find("M must be >= 1"), std::string::npos);
  EXPECT_NE(error_of([] { parse_index_spec("flat32"); }).find("takes no size"), std::string::npos);
  EXPECT_NE(
      error_of([] { parse_index_spec("hnsw,ef_search=x"); }).find("'x' is not a positive integer"),
      std::string::npos);
  // Defaults are filled in by the built index.
  EXPECT_EQ(make_index("hnsw", 8)->spec(), "hnsw32,ef_construction=200,ef_search=256");
  EXPECT_EQ(make_index("ivf", 8, 10000)->spec(), "ivf256,nprobe=32");
  EXPECT_EQ(make_index("ivf", 8, 100)->spec(), "ivf2,nprobe=1");
}

TEST(ExactIndex, EqualsBruteForceAcrossBlockBoundaries) {
  const int64_t D = 24, n = 1037, nq = 41, k = 10;
  auto g = clustered(n, D, 20, 1), q = clustered(nq, D, 20, 2);
  for (auto blocks :
       {ExactIndexOptions{1024, 8192}, ExactIndexOptions{7, 100}, ExactIndexOptions{1, 3}}) {
    SCOPED_TRACE(std::to_string(blocks.query_block) + "x" + std::to_string(blocks.gallery_block));
    auto index = make_exact_index(D, blocks);
    index->add(500, g.data());  // two adds: ids continue
    index->add(n - 500, g.data() + 500 * D);
    EXPECT_EQ(index->size(), n);
    Results r = run(*index, q, k);
    for (int64_t i = 0; i < nq; ++i) {
      auto truth = top_k(q.data() + i * D, g.data(), n, D, k);  // brute force, every dot product
      std::vector<int64_t> got(r.ids.begin() + i * k, r.ids.begin() + (i + 1) * k);
      EXPECT_EQ(got, truth) << "query " << i;
      for (int64_t j = 0; j < k; ++j) {
        double dot = 0;
        for (int64_t d = 0; d < D; ++d) dot += double(q[i * D + d]) * g[truth[j] * D + d];
        EXPECT_NEAR(r.scores[i * k + j], dot, 1e-5);
      }
    }
  }
}

TEST(ExactIndex, FewerVectorsThanKAndTiesToTheLowerId) {
  auto index = make_exact_index(2);
  std::vector<float> g = {0, 1, 1, 0, 1, 0};  // ids 1 and 2 tie for the query (1, 0)
  index->add(3, g.data());
  Results r = run(*index, {1, 0}, 5);
  EXPECT_EQ(r.ids, (std::vector<int64_t>{1, 2, 0, -1, -1}));
  EXPECT_FLOAT_EQ(r.scores[0], 1.0f);
  EXPECT_TRUE(std::isinf(r.scores[4]) && r.scores[4] < 0);
}

TEST(FaissIndex, FlatEqualsExact) {
  const int64_t D = 32, n = 3000, nq = 100, k = 10;
  auto g = clustered(n, D, 30, 3), q = clustered(nq, D, 30, 4);
  auto exact = make_index("exact", D), flat = make_index("flat", D);
  exact->add(n, g.data());
  flat->add(n, g.data());
  EXPECT_TRUE(flat->exact());
  Results a = run(*exact, q, k), b = run(*flat, q, k);
  EXPECT_EQ(a.ids, b.ids);
  for (size_t i = 0; i < a.scores.size(); ++i) EXPECT_NEAR(a.scores[i], b.scores[i], 1e-5);
}

TEST(FaissIndex, HnswAndIvfRecallAgainstExactIsReported) {
  const int64_t D = 64, n = 10000, nq = 500, k = 10;
  auto g = clustered(n, D, 100, 5), q = clustered(nq, D, 100, 6);
  auto exact = make_index("exact", D);
  exact->add(n, g.data());
  Results truth = run(*exact, q, k);
  for (const std::string spec : {"hnsw", "ivf"}) {
    auto index = make_index(spec, D, n);
    add_with_progress(*index, n, g.data(), spec);  // in batches, as `m3ret index build` builds
    EXPECT_FALSE(index->exact());
    const double recall = recall_against(truth.ids, run(*index, q, k).ids, nq, k);
    std::printf("[ recall ] %s: recall@10 vs exact = %.4f (%lld x %lld, %lld queries)\n",
                index->spec().c_str(), recall, (long long)n, (long long)D, (long long)nq);
    ::testing::Test::RecordProperty(spec + "_recall_at_10", std::to_string(recall));
    EXPECT_GE(recall, spec == "hnsw" ? 0.95 : 0.80) << index->spec();
  }
}

// Built in batches (as `m3ret index build` does, to show its progress), every
// type answers as when built in one call: exact, flat and IVF (trained on all
// rows first) return the very same ids and scores; HNSW, whose links depend on
// the insertion order, returns the exact results wherever its search reaches
// every vector (ef_search >= n), as the one-call HNSW does.
TEST(IndexBuild, InBatchesAnswersAsBuiltInOneCall) {
  const int64_t D = 16, n = 2000, nq = 50, k = 10;
  auto g = clustered(n, D, 20, 11), q = clustered(nq, D, 20, 12);
  for (const std::string spec : {"exact", "flat", "ivf"}) {
    SCOPED_TRACE(spec);
    auto one = make_index(spec, D, n), batched = make_index(spec, D, n);
    one->add(n, g.data());
    add_with_progress(*batched, n, g.data(), "test", 7);
    EXPECT_EQ(batched->size(), n);
    EXPECT_EQ(batched->spec(), one->spec());
    Results a = run(*one, q, k), b = run(*batched, q, k);
    EXPECT_EQ(a.ids, b.ids);
    EXPECT_EQ(a.scores, b.scores);
  }
  const int64_t small = 300;
  auto exact = make_index("exact", D);
  exact->add(small, g.data());
  const Results truth = run(*exact, q, k);
  auto one = make_index("hnsw,ef_search=512", D), batched = make_index("hnsw,ef_search=512", D);
  one->add(small, g.data());
  add_with_progress(*batched, small, g.data(), "test", 7);
  EXPECT_EQ(run(*one, q, k).ids, truth.ids);
  EXPECT_EQ(run(*batched, q, k).ids, truth.ids);
}

// `m3ret index build` counts the rows it adds on a progress line: a bar redrawn
// in place on a terminal, plain lines elsewhere (the first batch and the end).
TEST(IndexBuild, ShowsItsProgressOnATerminalAndElsewhere) {
  m3ret::testing::TempDir dir("eval-index-progress");
  write_embeddings(dir / "emb.h5", testing::random_set(400, 16, {"xray", "ct"}, 50, 4, 9));
  IndexBuildOptions o;
  o.embeddings = dir / "emb.h5";
  o.out = dir / "index";
  o.type = "ivf4";
  o.batch = 100;
  const std::string plain = m3ret::testing::console_of(false, [&] { build_index_dir(o); });
  EXPECT_EQ(plain.find('\r'), std::string::npos) << plain;
  EXPECT_NE(plain.find("index ivf 100/400 "), std::string::npos) << plain;
  EXPECT_NE(plain.find("index ivf 400/400 "), std::string::npos) << plain;
  o.overwrite = true;
  const std::string bar = m3ret::testing::console_of(true, [&] { build_index_dir(o); });
  EXPECT_NE(bar.find("\rindex ivf [#######"), std::string::npos) << bar;
  EXPECT_NE(bar.find("] 400/400 "), std::string::npos) << bar;
  EXPECT_EQ(bar.back(), '\n') << "the finished bar ends its line";
  EXPECT_EQ(open_index_dir(dir / "index").index->size(), 400);
}

TEST(IndexDir, BuildOpenSearchForEveryTypeAndRefuseBadInput) {
  m3ret::testing::TempDir dir("eval-index");
  auto set = testing::random_set(400, 16, {"xray", "ct"}, 50, 4, 9);
  set.sources.clear();
  for (int64_t i = 0; i < set.N; ++i)
    set.sources.push_back("/data/case-" + std::to_string(i) + ".png");
  set.attrs.preprocess = R"({"image_size": 64})";
  write_embeddings(dir / "emb.h5", set);
  const auto y = normalized_rows(set);
  const auto truth = top_k(y.data() + 5 * 16, y.data(), set.N, 16, 4);
  for (const std::string type : {"exact", "flat", "hnsw", "ivf4,nprobe=4"}) {
    SCOPED_TRACE(type);
    IndexBuildOptions o;
    o.embeddings = dir / "emb.h5";
    o.out = dir / "index";
    o.type = type;
    o.overwrite = true;
    auto info = build_index_dir(o);
    EXPECT_EQ(info.at("count"), 400);
    int entries = 0;
    for (auto& e : std::filesystem::directory_iterator(dir.path()))
      entries += e.path().filename() != "";
    EXPECT_EQ(entries, 2);  // emb.h5 and index: no temporary left
    OpenedIndex opened = open_index_dir(dir / "index");
    EXPECT_EQ(opened.set.sources[7], "/data/case-7.png");
    EXPECT_EQ(opened.set.attrs.preprocess, set.attrs.preprocess);
    auto hits = search_vector(opened, y.data() + 5 * 16, 4);
    ASSERT_EQ(hits.size(), 4u);
    EXPECT_EQ(hits[0].id,
              set.ids[5]);  // a sample finds itself first (ivf4 with nprobe=4 is exhaustive)
    for (size_t j = 0; j < 4; ++j) EXPECT_EQ(hits[j].id, set.ids[truth[j]]);
    EXPECT_NEAR(hits[0].score, 1.0, 1e-5);
    EXPECT_EQ(hits[0].source, set.sources[5]);
    auto only_ct = search_vector(opened, y.data() + 5 * 16, 3, "ct");
    ASSERT_EQ(only_ct.size(), 3u);
    for (const auto& h : only_ct) EXPECT_EQ(h.modality, "ct");
  }
  IndexBuildOptions o;
  o.embeddings = dir / "emb.h5";
  o.out = dir / "index";
  EXPECT_NE(error_of([&] { build_index_dir(o); }).find("exists (pass --overwrite"),
            std::string::npos);
  o.out = dir / "other";
  o.type = "hnsw,nprobe=3";
  EXPECT_NE(error_of([&] { build_index_dir(o); }).find("'nprobe' does not apply"),
            std::string::npos);
  EXPECT_FALSE(std::filesystem::exists(dir / "other"));
  std::filesystem::create_directories(dir / "foreign");
  std::ofstream(dir / "foreign/notes.txt") << "mine";
  o.out = dir / "foreign";
  o.type = "exact";
  o.overwrite = true;
  EXPECT_NE(error_of([&] { build_index_dir(o); }).find("is not an m3ret index"), std::string::npos);
  EXPECT_TRUE(std::filesystem::exists(dir / "foreign/notes.txt"));
  o.out = dir / "test-only";
  o.split = "nonexistent";
  EXPECT_NE(error_of([&] { build_index_dir(o); }).find("no sample of split 'nonexistent'"),
            std::string::npos);
  // A FAISS index folder missing its FAISS file is an error naming it.
  o.split = "";
  o.type = "hnsw";
  o.out = dir / "broken";
  build_index_dir(o);
  std::filesystem::remove(dir / "broken/faiss.index");
  EXPECT_NE(error_of([&] { open_index_dir(dir / "broken"); }).find("missing faiss.index"),
            std::string::npos);
  EXPECT_NE(error_of([&] { open_index_dir(dir / "nowhere"); }).find("no such folder"),
            std::string::npos);
}

// Peak resident memory of this process so far, in MB.
int64_t peak_rss_mb() {
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  return u.ru_maxrss / 1024;
}

// Corrupt index files: an absurd vector size in faiss.index and a --only
// modality the index lacks are clear errors naming the file or folder. A size
// that would fit in memory (8 GB) is refused too, without this process ever
// allocating it: FAISS reads the file first in a child under a memory limit.
TEST(IndexDir, CorruptSizesAndAbsentModalitiesAreClearErrors) {
  m3ret::testing::TempDir dir("eval-index");
  write_embeddings(dir / "emb.h5", testing::random_set(60, 8, {"xray", "ct"}, 20, 3, 4));
  IndexBuildOptions o;
  o.embeddings = dir / "emb.h5";
  o.out = dir / "flat";
  o.type = "flat";
  build_index_dir(o);
  // IndexFlat layout: fourcc, d (4), ntotal (8), two dummies (16), is_trained (1),
  // metric (4), then the size of the vector data (8 bytes at offset 37).
  const int64_t rss_before = peak_rss_mb();
  for (const uint64_t huge : {uint64_t{1} << 39, uint64_t{1} << 31}) {
    SCOPED_TRACE(huge);
    {
      std::fstream f(dir / "flat/faiss.index", std::ios::in | std::ios::out | std::ios::binary);
      f.seekp(37);
      f.write(reinterpret_cast<const char*>(&huge), sizeof huge);
    }
    const auto e = error_of([&] { open_index_dir(dir / "flat"); });
    EXPECT_NE(e.find((dir / "flat/faiss.index").string()), std::string::npos) << e;
  }
  EXPECT_LT(peak_rss_mb() - rss_before, 1024) << "the process allocated what the file claimed";

  o.out = dir / "exact";
  o.type = "exact";
  const auto opened = (build_index_dir(o), open_index_dir(dir / "exact"));
  SearchOptions so;
  so.query = dir / "emb.h5";
  so.modality = "ct";
  so.only_modality = "mri";
  const auto only = error_of([&] { search_file(opened, so); });
  EXPECT_NE(only.find("--only mri: the index " + (dir / "exact").string() +
                      " holds no sample of that modality (it holds ct, xray)"),
            std::string::npos)
      << only;
}

TEST(RawPixels, DownsampledCentredUnitVectorsInvariantToBrightnessAndContrast) {
  // Two samples [C=1, T=2, H=32, W=32]: a gradient, and the same gradient at
  // half contrast plus an offset: the features are equal.
  const int64_t T = 2, H = 32, W = 32, n = T * H * W;
  std::vector<uint8_t> px(2 * n);
  for (int64_t i = 0; i < n; ++i) {
    const int64_t w = i % W, h = (i / W) % H;
    px[i] = static_cast<uint8_t>(4 * w + 2 * h);       // 0 .. 186
    px[n + i] = static_cast<uint8_t>(2 * w + h + 40);  // half contrast, offset
  }
  auto f = raw_pixel_features(px.data(), 2, 1, T, H, W);
  ASSERT_EQ(f.size(), size_t(2 * kRawPixelDim));
  double norm = 0, mean = 0;
  for (int64_t j = 0; j < kRawPixelDim; ++j) {
    norm += double(f[j]) * f[j];
    mean += f[j];
    EXPECT_NEAR(f[j], f[kRawPixelDim + j], 1e-4);
  }
  EXPECT_NEAR(norm, 1.0, 1e-5);
  EXPECT_NEAR(mean, 0.0, 1e-4);
  // 16 x 16 average pooling of a linear ramp keeps it a ramp: left < right.
  EXPECT_LT(f[0], f[15]);
  // RGB averages to grey: 3 equal channels give the grey features.
  std::vector<uint8_t> rgb(3 * n);
  for (int c = 0; c < 3; ++c) std::copy(px.begin(), px.begin() + n, rgb.begin() + c * n);
  auto g = raw_pixel_features(rgb.data(), 1, 3, T, H, W);
  for (int64_t j = 0; j < kRawPixelDim; ++j) EXPECT_NEAR(g[j], f[j], 1e-5);
}

TEST(Histogram, PerChannelHellingerHistogramsOfUnitLength) {
  // Sample 0: grey, half of the pixels 0 and half 255; sample 1: RGB with
  // R = 16 everywhere, G = 200 everywhere, B = 255 on a quarter of the pixels.
  const int64_t T = 2, H = 8, W = 8, n = T * H * W;
  std::vector<uint8_t> grey(n);
  for (int64_t i = 0; i < n; ++i) grey[i] = i % 2 ? 255 : 0;
  auto f = histogram_features(grey.data(), 1, 1, T, H, W);
  ASSERT_EQ(f.size(), size_t(kHistogramDim));
  // Each channel: bins 0 and 31 hold half the pixels: sqrt(0.5) each, then
  // the whole 3-channel vector normalised: sqrt(0.5) / sqrt(3).
  const double v = std::sqrt(0.5) / std::sqrt(3.0);
  for (int64_t c = 0; c < 3; ++c)
    for (int64_t k = 0; k < kHistogramBins; ++k)
      EXPECT_NEAR(f[c * kHistogramBins + k], (k == 0 || k == kHistogramBins - 1) ? v : 0.0, 1e-6)
          << c << " " << k;
  std::vector<uint8_t> rgb(3 * n);
  for (int64_t i = 0; i < n; ++i) {
    rgb[i] = 16;
    rgb[n + i] = 200;
    rgb[2 * n + i] = i % 4 == 0 ? 255 : 0;
  }
  auto g = histogram_features(rgb.data(), 1, 3, T, H, W);
  double norm = 0;
  for (float x : g) norm += double(x) * x;
  EXPECT_NEAR(norm, 1.0, 1e-6);
  EXPECT_GT(g[16 * kHistogramBins / 256], 0.0f);                    // R: bin 2
  EXPECT_GT(g[kHistogramBins + 200 * kHistogramBins / 256], 0.0f);  // G: bin 25
  EXPECT_NEAR(g[2 * kHistogramBins + kHistogramBins - 1] / g[2 * kHistogramBins],
              std::sqrt(0.25 / 0.75), 1e-6);  // B: 1/4 vs 3/4
  // Spatial layout does not matter: a shuffled image has the same features.
  std::vector<uint8_t> shuffled(grey.rbegin(), grey.rend());
  auto h = histogram_features(shuffled.data(), 1, 1, T, H, W);
  for (int64_t j = 0; j < kHistogramDim; ++j) EXPECT_FLOAT_EQ(h[j], f[j]);
  EXPECT_THROW(histogram_features(grey.data(), 1, 2, T, H, W / 2), m3ret::Error);
}

}  // namespace
}  // namespace m3ret::eval
