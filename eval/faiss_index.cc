#include "eval/faiss_index.h"

#include <faiss/IndexFlat.h>
#include <faiss/IndexHNSW.h>
#include <faiss/IndexIVFFlat.h>
#include <faiss/impl/FaissException.h>
#include <faiss/index_io.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <new>
#include <stdexcept>
#include <system_error>

#include <fmt/format.h>

#include "core/error.h"
#include "core/fs.h"
#include "data/isolate.h"

namespace m3ret::eval {
namespace {

constexpr const char* kFaissFile = "faiss.index";

// FAISS reports user errors as faiss::FaissException; turn them into ours.
template <class F>
auto faiss_call(const std::string& what, F&& f) {
  try {
    return f();
  } catch (const faiss::FaissException& e) {
    throw Error(fmt::format("{}: FAISS: {}", what, e.what()));
  } catch (const std::bad_alloc&) {  // a size in a corrupt file larger than memory
    throw Error(
        fmt::format("{}: FAISS asked for more memory than there is (a corrupt size?)", what));
  } catch (const std::length_error& e) {
    throw Error(fmt::format("{}: FAISS: impossible size ({})", what, e.what()));
  }
}

std::unique_ptr<faiss::Index> read_faiss_file(const std::filesystem::path& path) {
  return std::unique_ptr<faiss::Index>(
      faiss_call("reading " + path.string(), [&] { return faiss::read_index(path.c_str()); }));
}

// FAISS sizes its buffers from the counts in the file before it reads them: a corrupt count is a
// huge allocation (2^39 floats: 2 TB), or one that fits and fills memory. So the file is read
// first in a forked child (data/isolate.h) under a memory limit of a few times its size, which a
// genuine index never needs; a corrupt count costs that child, not the process.
constexpr int64_t kCheckMemoryBaseMb = 1024, kCheckBytesPerSecond = int64_t{16} << 20;

void read_in_child(const std::filesystem::path& path) {
  std::error_code ec;
  const auto size = static_cast<int64_t>(std::filesystem::file_size(path, ec));
  data::isolate::Limits limits;
  limits.timeout_s = 120 + size / kCheckBytesPerSecond;
  limits.memory_mb = kCheckMemoryBaseMb + 4 * (size >> 20);
  limits.task = "reading it with FAISS";
  limits.timeout_setting = limits.memory_setting = "";
  try {
    data::isolate::check(
        path.string(), [](const std::string& file) { (void)read_faiss_file(file); }, path.string(),
        limits);
  } catch (const InputError& e) {  // killed, crashed, out of memory
    throw Error(fmt::format("reading {}: {} (a corrupt file?)", path.string(), e.reason()));
  }
}

int64_t option(const IndexSpec& spec, const std::string& key, int64_t fallback) {
  auto it = spec.options.find(key);
  return it == spec.options.end() ? fallback : it->second;
}

class FaissIndex final : public Index {
 public:
  FaissIndex(std::unique_ptr<faiss::Index> index, IndexSpec spec)
      : index_(std::move(index)), spec_(std::move(spec)) {
    apply_search_options();
  }

  int64_t dim() const override { return index_->d; }
  int64_t size() const override { return index_->ntotal; }
  std::string spec() const override { return spec_.str(); }
  bool exact() const override { return spec_.type == "flat"; }

  void train(int64_t n, const float* x) override {
    if (index_->is_trained) return;
    faiss_call("training " + spec(), [&] { index_->train(n, x); });
  }

  void add(int64_t n, const float* x) override {
    if (n <= 0) return;
    if (!index_->is_trained) train(n, x);
    faiss_call("adding to " + spec(), [&] { index_->add(n, x); });
  }

  void search(int64_t nq, const float* q, int64_t k, float* scores, int64_t* ids) const override {
    M3RET_CHECK(k >= 1, "search: k = {} must be >= 1", k);
    if (nq <= 0) return;
    faiss_call("searching " + spec(), [&] { index_->search(nq, q, k, scores, ids); });
    for (int64_t i = 0; i < nq * k; ++i)  // FAISS marks missing results with id -1
      if (ids[i] < 0) scores[i] = -std::numeric_limits<float>::infinity();
  }

  void set_search_option(const std::string& key, int64_t value) override {
    const bool known =
        (key == "ef_search" && spec_.type == "hnsw") || (key == "nprobe" && spec_.type == "ivf");
    if (!known) Index::set_search_option(key, value);
    if (value < 1) throw Error(fmt::format("index {}: {} = {} must be >= 1", spec(), key, value));
    spec_.options[key] = value;
    apply_search_options();
  }

  void save(const std::filesystem::path& dir) const override {
    const auto path = dir / kFaissFile;
    const auto tmp = fs::temp_sibling(path);
    try {
      faiss_call("writing " + path.string(),
                 [&] { faiss::write_index(index_.get(), tmp.c_str()); });
      fs::commit(tmp, path);
    } catch (...) {
      std::error_code ec;
      std::filesystem::remove(tmp, ec);
      throw;
    }
  }

 private:
  void apply_search_options() {
    if (auto* hnsw = dynamic_cast<faiss::IndexHNSW*>(index_.get()))
      hnsw->hnsw.efSearch = static_cast<int>(option(spec_, "ef_search", 256));
    if (auto* ivf = dynamic_cast<faiss::IndexIVF*>(index_.get()))
      ivf->nprobe =
          static_cast<size_t>(option(spec_, "nprobe", std::max<int64_t>(1, spec_.size / 8)));
  }

  std::unique_ptr<faiss::Index> index_;
  IndexSpec spec_;  // with every default filled in
};

// Lists of an IVF index for `count` vectors: about 4*sqrt(count), and at most
// count/39 so that k-means sees its recommended 39 points per centroid.
int64_t default_lists(int64_t count) {
  int64_t n = static_cast<int64_t>(
      std::lround(4.0 * std::sqrt(static_cast<double>(std::max<int64_t>(count, 1)))));
  return std::max<int64_t>(1, std::min(n, count / 39));
}

}  // namespace

std::unique_ptr<Index> make_faiss_index(const IndexSpec& in, int64_t dim, int64_t expected_count) {
  M3RET_CHECK(dim >= 1, "index dimension {} must be >= 1", dim);
  IndexSpec spec = in;
  std::unique_ptr<faiss::Index> index;
  if (spec.type == "flat") {
    index = std::make_unique<faiss::IndexFlatIP>(dim);
  } else if (spec.type == "hnsw") {
    if (spec.size == 0) spec.size = 32;
    spec.options.emplace("ef_construction", 200);
    spec.options.emplace("ef_search", 256);
    auto h = std::make_unique<faiss::IndexHNSWFlat>(
        static_cast<int>(dim), static_cast<int>(spec.size), faiss::METRIC_INNER_PRODUCT);
    h->hnsw.efConstruction = static_cast<int>(spec.options.at("ef_construction"));
    index = std::move(h);
  } else if (spec.type == "ivf") {
    if (spec.size == 0) spec.size = default_lists(expected_count);
    spec.options.emplace("nprobe", std::max<int64_t>(1, spec.size / 8));
    auto quantizer = std::make_unique<faiss::IndexFlatIP>(dim);
    auto ivf = std::make_unique<faiss::IndexIVFFlat>(quantizer.release(), dim, spec.size,
                                                     faiss::METRIC_INNER_PRODUCT);
    ivf->own_fields = true;
    index = std::move(ivf);
  } else {
    throw Error(fmt::format("index type '{}' is not a FAISS index (flat, hnsw, ivf)", spec.type));
  }
  return std::make_unique<FaissIndex>(std::move(index), spec);
}

std::unique_ptr<Index> load_faiss_index(const IndexSpec& spec, const std::filesystem::path& dir,
                                        int64_t n, int64_t dim) {
  const auto path = dir / kFaissFile;
  std::error_code ec;
  if (!std::filesystem::is_regular_file(path, ec))
    throw Error(
        fmt::format("index {}: missing {} (index type {})", dir.string(), kFaissFile, spec.str()));
  read_in_child(path);
  auto index = read_faiss_file(path);
  if (index->d != dim || index->ntotal != n)
    throw Error(fmt::format("index {}: {} holds {} vectors of dimension {}, expected {} of {}",
                            dir.string(), kFaissFile, index->ntotal, index->d, n, dim));
  return std::make_unique<FaissIndex>(std::move(index), spec);
}

}  // namespace m3ret::eval
