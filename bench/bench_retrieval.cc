// Retrieval benchmark (not a test): see docs/performance.md for figures.
//
//   bench_retrieval [--n 100000] [--d 384] [--queries 10000] [--k 10] [--threads T]
//                   [--eval-n 40000]
//
// On n clustered unit vectors of dimension d (1000 random centres + noise,
// fixed seed) and `queries` more from the same distribution:
//  1. exact top-k: the LibTorch exact index (eval/exact_index.h) against FAISS
//     IndexFlatIP, same data, same number of threads (torch::set_num_threads and
//     omp_set_num_threads = T), best of 3 runs; checks both return the same ids.
//  2. HNSW (IndexHNSWFlat, M = 32, ef_construction = 200): build time, then for
//     ef_search in {64, 128, 256}: latency per query (one query at a time, one
//     thread), batch throughput (T threads) and recall@k against exact search.
//  3. bounded memory: peak resident memory (VmHWM) added by eval::evaluate()
//     over eval-n samples of one modality (leave-one-out), compared with the
//     eval-n^2 * 4 bytes a full similarity matrix would take.
// Prints markdown tables to stdout.
#include <omp.h>
#include <torch/torch.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <random>
#include <string>
#include <thread>
#include <vector>

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

long vm_hwm_kb() {  // peak resident set size of this process
  std::ifstream in("/proc/self/status");
  std::string line;
  while (std::getline(in, line))
    if (line.rfind("VmHWM:", 0) == 0) return std::atol(line.c_str() + 6);
  return -1;
}

void reset_hwm() { std::ofstream("/proc/self/clear_refs") << "5"; }

}  // namespace

int main(int argc, char** argv) {
  int64_t n = 100000, d = 384, nq = 10000, k = 10, eval_n = 40000;
  int threads = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  for (int i = 1; i + 1 < argc; i += 2) {
    std::string a = argv[i];
    int64_t v = std::atoll(argv[i + 1]);
    if (a == "--n") n = v;
    else if (a == "--d") d = v;
    else if (a == "--queries") nq = v;
    else if (a == "--k") k = v;
    else if (a == "--threads") threads = static_cast<int>(v);
    else if (a == "--eval-n") eval_n = v;
    else {
      std::fprintf(stderr, "bench_retrieval: unknown option %s\n", a.c_str());
      return 2;
    }
  }
  torch::set_num_threads(threads);
  omp_set_num_threads(threads);
  std::printf("# bench_retrieval: n=%lld d=%lld queries=%lld k=%lld threads=%d\n\n", (long long)n,
              (long long)d, (long long)nq, (long long)k, threads);
  const auto g = clustered(n, d, 1000, 1), q = clustered(nq, d, 1000, 2);

  // 1. exact top-k vs FAISS IndexFlatIP
  auto exact = make_index("exact", d), flat = make_index("flat", d);
  exact->add(n, g.data());
  flat->add(n, g.data());
  Results re, rf;
  const double te = best_of(3, [&] { re = search(*exact, q, nq, k); });
  const double tf = best_of(3, [&] { rf = search(*flat, q, nq, k); });
  int64_t same = 0;
  for (size_t i = 0; i < re.ids.size(); ++i) same += re.ids[i] == rf.ids[i];
  std::printf("## exact top-%lld, %lld queries x %lld gallery x %lld dims\n\n", (long long)k,
              (long long)nq, (long long)n, (long long)d);
  std::printf("| index | seconds (best of 3) | queries/s | ratio to FAISS |\n|---|---:|---:|---:|\n");
  std::printf("| m3ret exact (LibTorch, blocked) | %.3f | %.0f | %.2fx |\n", te, nq / te, te / tf);
  std::printf("| FAISS IndexFlatIP | %.3f | %.0f | 1.00x |\n", tf, nq / tf);
  std::printf("\nsame ids as FAISS: %.4f of %lld results\n\n", double(same) / re.ids.size(),
              (long long)re.ids.size());
  std::fflush(stdout);

  // 2. HNSW
  auto t0 = Clock::now();
  auto hnsw = make_index("hnsw32,ef_construction=200", d);
  hnsw->add(n, g.data());
  const double build = seconds_since(t0);
  std::printf("## HNSW (M=32, ef_construction=200): built in %.1f s\n\n", build);
  std::printf("| ef_search | latency per query (1 thread) | queries/s (%d threads) | recall@%lld vs exact |\n"
              "|---:|---:|---:|---:|\n", threads, (long long)k);
  Results one{std::vector<float>(k), std::vector<int64_t>(k)};
  for (int ef : {64, 128, 256}) {
    hnsw->set_search_option("ef_search", ef);
    Results rh;
    const double batch = best_of(2, [&] { rh = search(*hnsw, q, nq, k); });
    const int64_t nlat = std::min<int64_t>(nq, 2000);
    omp_set_num_threads(1);
    const double lat = best_of(2, [&] {
      for (int64_t i = 0; i < nlat; ++i)
        hnsw->search(1, q.data() + i * d, k, one.scores.data(), one.ids.data());
    }) / nlat;
    omp_set_num_threads(threads);
    std::printf("| %d | %.3f ms | %.0f | %.4f |\n", ef, lat * 1e3, nq / batch, recall_against(re.ids, rh.ids, nq, k));
    std::fflush(stdout);
  }

  // 3. bounded memory of blocked evaluation
  if (eval_n > 0) {
    EmbeddingSet set;
    set.N = std::min(eval_n, n);
    set.D = d;
    set.X.assign(g.begin(), g.begin() + set.N * d);
    for (int64_t i = 0; i < set.N; ++i) {
      set.ids.push_back(std::to_string(i));
      set.modality.push_back("ct");
      set.groups.push_back("p" + std::to_string(i / 4));
      set.splits.push_back("test");
      set.labels.push_back({"c" + std::to_string(i % 50)});
    }
    reset_hwm();
    const long before = vm_hwm_kb();
    EvalConfig cfg;
    cfg.cross_modal = false;
    auto t1 = Clock::now();
    Report r = evaluate(set, cfg);
    const double secs = seconds_since(t1);
    const long after = vm_hwm_kb();
    const double full_gb = double(set.N) * set.N * 4 / 1e9;
    std::printf("\n## evaluate(): %lld queries x %lld gallery x %lld dims (leave-one-out)\n\n",
                (long long)set.N, (long long)set.N, (long long)d);
    std::printf("| embeddings | peak memory added by evaluate() | full similarity matrix | seconds | recall@1 |\n"
                "|---:|---:|---:|---:|---:|\n");
    std::printf("| %.0f MB | %.0f MB | %.1f GB | %.1f | %.3f |\n", set.X.size() * 4 / 1e6,
                (after - before) / 1e3, full_gb, secs, r.per_modality[0].metrics.recall.at(1));
  }
  return 0;
}
