// Retrieval benchmark (not a test): see docs/performance.md for figures.
//
//   bench_retrieval [--mode all|exact|hnsw|eval] [--n 100000] [--d 384] [--queries 10000]
//                   [--k 10] [--threads T] [--hnsw-m 16] [--ef-construction 40]
//                   [--ef-search 16,32,64,128] [--latency-queries 1000] [--eval-n 40000]
//
// Data: n clustered unit vectors of dimension d (1000 random Gaussian centres,
// each sample = its centre + N(0, 0.5^2) per dimension, normalised; fixed seed;
// about n/1000 samples per cluster, same-cluster cosine about 0.8, other
// clusters about 0), and `queries` more from the same distribution.
//  exact: the LibTorch exact index (eval/exact_index.h) against FAISS
//     IndexFlatIP, same data, same number of threads (torch::set_num_threads and
//     omp_set_num_threads = T), best of 3 runs; checks both return the same ids.
//  hnsw: IndexHNSWFlat (M = --hnsw-m, efConstruction = --ef-construction):
//     build time (T threads), then for each efSearch: single-query latency (one
//     query per call, one thread; mean, p50, p99 over --latency-queries calls),
//     batch search time per query (all queries in one call, T threads) and
//     recall@k against the exact top-k of the same queries (computed with the
//     exact index first).
//  eval: peak resident memory (VmHWM) of eval::evaluate() over eval-n samples
//     of one modality (leave-one-out, groups of 4, 50 labels), against the
//     embeddings' own size and the eval-n^2 * 4 bytes of one full similarity
//     matrix. Only the eval-n samples are generated in this mode, so VmHWM is
//     the process's own peak: run it at two sizes (separate processes) to see
//     that it grows with n, not n^2.
//  all: exact, hnsw, then eval (eval-n <= n, taken from the gallery).
// Prints markdown tables to stdout.
#include <omp.h>
#include <torch/torch.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <functional>
#include <random>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "core/fork_server.h"
#include "eval/exact_index.h"
#include "eval/index.h"
#include "eval/retrieval.h"

using namespace m3ret::eval;
using Clock = std::chrono::steady_clock;

namespace {

double seconds_since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

std::vector<float> clustered(int64_t n, int64_t d, int clusters, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal;
  std::mt19937 crng(12345);  // same centres for gallery and queries
  std::vector<float> centres(static_cast<size_t>(clusters * d));
  for (auto& c : centres) c = normal(crng);
  std::vector<float> x(static_cast<size_t>(n * d));
  for (int64_t i = 0; i < n; ++i) {
    const float* c = centres.data() + (rng() % clusters) * d;
    double n2 = 0;
    for (int64_t j = 0; j < d; ++j) {
      x[i * d + j] = c[j] + 0.5f * normal(rng);
      n2 += double(x[i * d + j]) * x[i * d + j];
    }
    const float inv = static_cast<float>(1.0 / std::sqrt(n2));
    for (int64_t j = 0; j < d; ++j) x[i * d + j] *= inv;
  }
  return x;
}

struct Results {
  std::vector<float> scores;
  std::vector<int64_t> ids;
};

Results search(const Index& index, const std::vector<float>& q, int64_t nq, int64_t k) {
  Results r{std::vector<float>(nq * k), std::vector<int64_t>(nq * k)};
  index.search(nq, q.data(), k, r.scores.data(), r.ids.data());
  return r;
}

double best_of(int runs, const std::function<void()>& f) {
  double best = 1e30;
  for (int i = 0; i < runs; ++i) {
    auto t0 = Clock::now();
    f();
    best = std::min(best, seconds_since(t0));
  }
  return best;
}

long status_kb(const char* key) {  // a "Key:   123 kB" line of /proc/self/status
  std::ifstream in("/proc/self/status");
  std::string line;
  const size_t len = std::strlen(key);
  while (std::getline(in, line))
    if (line.compare(0, len, key) == 0) return std::atol(line.c_str() + len);
  return -1;
}

// Resets VmHWM to the current RSS (Linux >= 4.0); false if not possible.
bool reset_hwm() {
  std::ofstream out("/proc/self/clear_refs");
  out << "5";
  out.flush();
  return out.good();
}

std::vector<int> int_list(const std::string& s) {
  std::vector<int> v;
  std::stringstream in(s);
  std::string item;
  while (std::getline(in, item, ',')) v.push_back(std::atoi(item.c_str()));
  return v;
}

struct Options {
  std::string mode = "all";
  int64_t n = 100000, d = 384, nq = 10000, k = 10, eval_n = 40000;
  // The parameters measured in docs/performance.md (recall@10 >= 0.95 from efSearch 64).
  int64_t hnsw_m = 16, ef_construction = 40, latency_queries = 1000;
  std::vector<int> ef_search = {16, 32, 64, 128};
  int threads = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
};

void bench_exact(const Options& o, const std::vector<float>& g, const std::vector<float>& q) {
  auto exact = make_index("exact", o.d), flat = make_index("flat", o.d);
  exact->add(o.n, g.data());
  flat->add(o.n, g.data());
  Results re, rf;
  const double te = best_of(3, [&] { re = search(*exact, q, o.nq, o.k); });
  const double tf = best_of(3, [&] { rf = search(*flat, q, o.nq, o.k); });
  int64_t same = 0;
  for (size_t i = 0; i < re.ids.size(); ++i) same += re.ids[i] == rf.ids[i];
  std::printf("## exact top-%lld, %lld queries x %lld gallery x %lld dims\n\n", (long long)o.k,
              (long long)o.nq, (long long)o.n, (long long)o.d);
  std::printf(
      "| index | seconds (best of 3) | queries/s | ratio to FAISS |\n|---|---:|---:|---:|\n");
  std::printf("| m3ret exact (LibTorch, blocked) | %.3f | %.0f | %.2fx |\n", te, o.nq / te,
              te / tf);
  std::printf("| FAISS IndexFlatIP | %.3f | %.0f | 1.00x |\n", tf, o.nq / tf);
  std::printf("\nsame ids as FAISS: %.4f of %lld results\n\n", double(same) / re.ids.size(),
              (long long)re.ids.size());
  std::fflush(stdout);
}

void bench_hnsw(const Options& o, const std::vector<float>& g, const std::vector<float>& q) {
  // Ground truth: the exact top-k of the same queries.
  auto exact = make_index("exact", o.d);
  exact->add(o.n, g.data());
  auto t0 = Clock::now();
  const Results truth = search(*exact, q, o.nq, o.k);
  const double t_exact = seconds_since(t0);

  const std::string spec =
      "hnsw" + std::to_string(o.hnsw_m) + ",ef_construction=" + std::to_string(o.ef_construction);
  t0 = Clock::now();
  auto hnsw = make_index(spec, o.d);
  hnsw->add(o.n, g.data());
  const double build = seconds_since(t0);
  std::printf("## HNSW (IndexHNSWFlat, inner product), %lld gallery x %lld dims, top-%lld\n\n",
              (long long)o.n, (long long)o.d, (long long)o.k);
  std::printf(
      "M = %lld, efConstruction = %lld: built in %.1f s with %d threads (%.0f vectors/s). "
      "Exact ground truth for %lld queries: %.2f s (%.2f ms/query, %d threads).\n\n",
      (long long)o.hnsw_m, (long long)o.ef_construction, build, o.threads, o.n / build,
      (long long)o.nq, t_exact, t_exact / o.nq * 1e3, o.threads);
  std::printf(
      "| efSearch | single query, 1 thread: mean / p50 / p99 | batch of %lld, %d threads: per "
      "query | "
      "recall@%lld vs exact |\n|---:|---:|---:|---:|\n",
      (long long)o.nq, o.threads, (long long)o.k);
  std::fflush(stdout);
  Results one{std::vector<float>(o.k), std::vector<int64_t>(o.k)};
  const int64_t nlat = std::min(o.nq, o.latency_queries);
  for (int ef : o.ef_search) {
    hnsw->set_search_option("ef_search", ef);
    Results rh;
    const double batch = best_of(2, [&] { rh = search(*hnsw, q, o.nq, o.k); });
    omp_set_num_threads(1);
    std::vector<double> lat(static_cast<size_t>(nlat));
    for (int64_t i = 0; i < nlat; ++i) {
      auto t1 = Clock::now();
      hnsw->search(1, q.data() + i * o.d, o.k, one.scores.data(), one.ids.data());
      lat[i] = seconds_since(t1);
    }
    omp_set_num_threads(o.threads);
    double mean = 0;
    for (double v : lat) mean += v;
    mean /= static_cast<double>(nlat);
    std::sort(lat.begin(), lat.end());
    const double p50 = lat[nlat / 2], p99 = lat[std::min<int64_t>(nlat - 1, nlat * 99 / 100)];
    std::printf("| %d | %.3f / %.3f / %.3f ms | %.3f ms | %.4f |\n", ef, mean * 1e3, p50 * 1e3,
                p99 * 1e3, batch / o.nq * 1e3, recall_against(truth.ids, rh.ids, o.nq, o.k));
    std::fflush(stdout);
  }
  std::printf("\n");
}

void bench_eval(const Options& o, std::vector<float> x, int64_t n) {
  EmbeddingSet set;
  set.N = n;
  set.D = o.d;
  set.X = std::move(x);
  set.X.resize(static_cast<size_t>(n * o.d));
  set.X.shrink_to_fit();
  for (int64_t i = 0; i < set.N; ++i) {
    set.ids.push_back(std::to_string(i));
    set.modality.push_back("ct");
    set.groups.push_back("p" + std::to_string(i / 4));
    set.splits.push_back("test");
    set.labels.push_back({"c" + std::to_string(i % 50)});
  }
  const long rss_before = status_kb("VmRSS:");
  const bool reset = reset_hwm();
  EvalConfig cfg;
  cfg.cross_modal = false;
  auto t1 = Clock::now();
  Report r = evaluate(set, cfg);
  const double secs = seconds_since(t1);
  const long hwm = status_kb("VmHWM:");
  const double emb_mb = set.X.size() * 4 / 1e6;
  const double full_gb = double(set.N) * set.N * 4 / 1e9;
  std::printf(
      "## evaluate(): %lld queries x %lld gallery x %lld dims (leave-one-out, %d threads)\n\n",
      (long long)set.N, (long long)set.N, (long long)o.d, o.threads);
  std::printf(
      "| embeddings (N x D x 4 B) | RSS before evaluate() | peak RSS (VmHWM) during evaluate() "
      "| added by evaluate() | one full similarity matrix (N^2 x 4 B) | seconds | recall@1 |\n"
      "|---:|---:|---:|---:|---:|---:|---:|\n");
  std::printf("| %.0f MB | %.0f MB | %.0f MB%s | %.0f MB | %.1f GB | %.1f | %.3f |\n\n", emb_mb,
              rss_before / 1e3, hwm / 1e3, reset ? "" : " (VmHWM not reset: process peak)",
              (hwm - rss_before) / 1e3, full_gb, secs, r.per_modality[0].metrics.recall.at(1));
  std::fflush(stdout);
}

}  // namespace

int main(int argc, char** argv) {
  m3ret::fork_server::start();  // before any thread, as m3ret does
  Options o;
  for (int i = 1; i < argc; i += 2) {
    const std::string a = argv[i];
    if (i + 1 >= argc) {
      std::fprintf(stderr, "bench_retrieval: %s needs a value\n", a.c_str());
      return 2;
    }
    const std::string s = argv[i + 1];
    const int64_t v = std::atoll(s.c_str());
    if (a == "--mode")
      o.mode = s;
    else if (a == "--n")
      o.n = v;
    else if (a == "--d")
      o.d = v;
    else if (a == "--queries")
      o.nq = v;
    else if (a == "--k")
      o.k = v;
    else if (a == "--threads")
      o.threads = static_cast<int>(v);
    else if (a == "--hnsw-m")
      o.hnsw_m = v;
    else if (a == "--ef-construction")
      o.ef_construction = v;
    else if (a == "--ef-search")
      o.ef_search = int_list(s);
    else if (a == "--latency-queries")
      o.latency_queries = v;
    else if (a == "--eval-n")
      o.eval_n = v;
    else {
      std::fprintf(stderr, "bench_retrieval: unknown option %s\n", a.c_str());
      return 2;
    }
  }
  if (o.mode != "all" && o.mode != "exact" && o.mode != "hnsw" && o.mode != "eval") {
    std::fprintf(stderr, "bench_retrieval: --mode must be all, exact, hnsw or eval, not '%s'\n",
                 o.mode.c_str());
    return 2;
  }
  if (o.n < 1 || o.d < 1 || o.nq < 1 || o.k < 1 || o.threads < 1 || o.ef_search.empty()) {
    std::fprintf(stderr, "bench_retrieval: --n, --d, --queries, --k, --threads must be >= 1\n");
    return 2;
  }
  torch::set_num_threads(o.threads);
  omp_set_num_threads(o.threads);
  std::printf("# bench_retrieval --mode %s: n=%lld d=%lld queries=%lld k=%lld threads=%d\n\n",
              o.mode.c_str(), (long long)o.n, (long long)o.d, (long long)o.nq, (long long)o.k,
              o.threads);
  if (o.mode == "eval") {
    if (o.eval_n < 2) {
      std::fprintf(stderr, "bench_retrieval: --eval-n must be >= 2\n");
      return 2;
    }
    bench_eval(o, clustered(o.eval_n, o.d, 1000, 1), o.eval_n);
    return 0;
  }
  std::vector<float> g = clustered(o.n, o.d, 1000, 1);
  const std::vector<float> q = clustered(o.nq, o.d, 1000, 2);
  if (o.mode == "all" || o.mode == "exact") bench_exact(o, g, q);
  if (o.mode == "all" || o.mode == "hnsw") bench_hnsw(o, g, q);
  if (o.mode == "all" && o.eval_n > 1) {
    const int64_t n = std::min(o.eval_n, o.n);
    bench_eval(o, std::move(g), n);
  }
  return 0;
}
