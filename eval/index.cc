#include "eval/index.h"

#include <algorithm>
#include <cctype>
#include <set>

#include <fmt/format.h>

#include "core/error.h"
#include "core/log.h"
#include "eval/exact_index.h"
#include "eval/faiss_index.h"

namespace m3ret::eval {
namespace {

[[noreturn]] void bad(const std::string& spec, const std::string& what) {
  throw Error(fmt::format(
      "index type '{}': {} (expected exact, flat, hnsw[M][,ef_construction=E][,ef_search=S] or "
      "ivf[N][,nprobe=P])",
      spec, what));
}

int64_t positive(const std::string& spec, const std::string& text, const std::string& what) {
  if (text.empty() || text.size() > 9 ||
      !std::all_of(text.begin(), text.end(), [](unsigned char c) { return std::isdigit(c); }))
    bad(spec, fmt::format("{} '{}' is not a positive integer", what, text));
  const int64_t v = std::stoll(text);
  if (v < 1) bad(spec, fmt::format("{} must be >= 1 (got {})", what, v));
  return v;
}

}  // namespace

std::string IndexSpec::str() const {
  std::string s = type;
  if (size > 0) s += std::to_string(size);
  for (const auto& [k, v] : options) s += fmt::format(",{}={}", k, v);
  return s;
}

IndexSpec parse_index_spec(const std::string& text) {
  std::vector<std::string> parts;
  size_t start = 0;
  while (true) {
    size_t comma = text.find(',', start);
    parts.push_back(
        text.substr(start, comma == std::string::npos ? std::string::npos : comma - start));
    if (comma == std::string::npos) break;
    start = comma + 1;
  }
  IndexSpec spec;
  std::string head = parts[0];
  std::transform(head.begin(), head.end(), head.begin(),
                 [](unsigned char c) { return std::tolower(c); });
  size_t digits = head.find_first_of("0123456789");
  spec.type = head.substr(0, digits);
  if (spec.type != "exact" && spec.type != "flat" && spec.type != "hnsw" && spec.type != "ivf")
    bad(text, fmt::format("unknown type '{}'", spec.type.empty() ? head : spec.type));
  if (digits != std::string::npos) {
    if (spec.type != "hnsw" && spec.type != "ivf")
      bad(text, fmt::format("'{}' takes no size", spec.type));
    spec.size =
        positive(text, head.substr(digits), spec.type == "hnsw" ? "M" : "the number of lists");
  }
  const std::set<std::string> allowed = spec.type == "hnsw"
                                            ? std::set<std::string>{"ef_construction", "ef_search"}
                                        : spec.type == "ivf" ? std::set<std::string>{"nprobe"}
                                                             : std::set<std::string>{};
  for (size_t i = 1; i < parts.size(); ++i) {
    const auto eq = parts[i].find('=');
    if (eq == std::string::npos) bad(text, fmt::format("option '{}' is not key=value", parts[i]));
    const std::string key = parts[i].substr(0, eq);
    if (!allowed.count(key))
      bad(text, fmt::format("option '{}' does not apply to '{}'", key, spec.type));
    spec.options[key] = positive(text, parts[i].substr(eq + 1), key);
  }
  return spec;
}

double recall_against(const std::vector<int64_t>& truth, const std::vector<int64_t>& got,
                      int64_t nq, int64_t k) {
  M3RET_CHECK(
      static_cast<int64_t>(truth.size()) == nq * k && static_cast<int64_t>(got.size()) == nq * k,
      "recall_against: {} and {} ids for {} x {}", truth.size(), got.size(), nq, k);
  int64_t total = 0, found = 0;
  for (int64_t q = 0; q < nq; ++q) {
    std::set<int64_t> t;
    for (int64_t j = 0; j < k; ++j)
      if (truth[q * k + j] >= 0) t.insert(truth[q * k + j]);
    total += static_cast<int64_t>(t.size());
    for (int64_t j = 0; j < k; ++j) found += t.count(got[q * k + j]);
  }
  return total ? static_cast<double>(found) / static_cast<double>(total) : 1.0;
}

void Index::set_search_option(const std::string& key, int64_t value) {
  throw Error(fmt::format("index {}: no search option '{}'", spec(), key));
}

void add_with_progress(Index& index, int64_t n, const float* x, const std::string& label,
                       int64_t batch) {
  if (batch <= 0) batch = std::max<int64_t>(1000, (n + 99) / 100);
  index.train(n, x);
  log::Progress progress(label, n);
  for (int64_t i = 0; i < n; i += batch) {
    const int64_t rows = std::min(batch, n - i);
    index.add(rows, x + i * index.dim());
    progress.add(rows);
  }
  progress.finish();
}

std::unique_ptr<Index> make_index(const std::string& text, int64_t dim, int64_t expected_count) {
  const IndexSpec spec = parse_index_spec(text);
  if (spec.type == "exact") return make_exact_index(dim);
  return make_faiss_index(spec, dim, expected_count);
}

std::unique_ptr<Index> load_index(const std::string& text, const std::filesystem::path& dir,
                                  int64_t n, int64_t dim, const float* x) {
  const IndexSpec spec = parse_index_spec(text);
  if (spec.type == "exact") {
    auto index = make_exact_index(dim);
    index->add(n, x);
    return index;
  }
  return load_faiss_index(spec, dir, n, dim);
}

}  // namespace m3ret::eval
