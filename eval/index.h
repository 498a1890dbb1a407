// Nearest-neighbour indices over L2-normalised embeddings, scored by inner
// product (= cosine). One interface; implementations in their own files:
//   exact_index.{h,cc}  blocked matrix products + top-k in LibTorch (exact)
//   faiss_index.{h,cc}  FAISS IndexFlatIP, IndexHNSWFlat, IndexIVFFlat
// built by make_index() from a short factory string (grammar below).
//
// Factory strings (case-insensitive type, then comma-separated key=value):
//   "exact"                          LibTorch, exact, no training
//   "flat"                           FAISS IndexFlatIP (exact)
//   "hnsw" | "hnswM"                 FAISS IndexHNSWFlat, M links per node (default 32);
//       options: ef_construction=E (default 200), ef_search=S (default 256)
//   "ivf"  | "ivfN"                  FAISS IndexIVFFlat with N lists (default: about
//       4*sqrt(count), at least 1, at most count/39 so that k-means has data);
//       options: nprobe=P (default max(1, N/8))
// e.g. "hnsw32,ef_search=256", "ivf1024,nprobe=32".
//
// Thread safety: search() is const and may run concurrently with other
// search() calls; add() and train() need exclusive access.
#pragma once

#include <cstdint>
#include <filesystem>
#include <map>
#include <memory>
#include <string>
#include <vector>

namespace m3ret::eval {

// A parsed factory string.
struct IndexSpec {
  std::string type;                        // "exact" | "flat" | "hnsw" | "ivf"
  int64_t size = 0;                        // M of hnswM, N of ivfN (0 = default)
  std::map<std::string, int64_t> options;  // ef_construction, ef_search, nprobe
  std::string str() const;                 // canonical form, e.g. "hnsw32,ef_search=128"
};
// Throws m3ret::Error naming the string and what is wrong (unknown type or
// option, option not valid for the type, non-positive value).
IndexSpec parse_index_spec(const std::string& spec);

class Index {
 public:
  virtual ~Index() = default;
  virtual int64_t dim() const = 0;
  virtual int64_t size() const = 0;      // vectors added
  virtual std::string spec() const = 0;  // canonical factory string (with defaults filled in)
  virtual bool exact() const = 0;        // true: results equal brute force

  // Learns the index structure from a sample (IVF's k-means); a no-op for the
  // others. x: n*dim floats, row-major.
  virtual void train(int64_t n, const float* x) {}
  // Appends n vectors (ids size() .. size()+n-1). x: n*dim floats, row-major.
  virtual void add(int64_t n, const float* x) = 0;
  // For each of nq queries (q: nq*dim floats) the k best vectors, best first:
  // scores and ids hold nq*k entries each (row-major). Where fewer than k
  // vectors exist, the tail has id -1 and score -infinity.
  virtual void search(int64_t nq, const float* q, int64_t k, float* scores, int64_t* ids) const = 0;

  // Changes a search-time option (hnsw: ef_search; ivf: nprobe) of a built
  // index; spec() reflects it. Throws m3ret::Error when the index has no such
  // option or value < 1.
  virtual void set_search_option(const std::string& key, int64_t value);

  // Persists what cannot be rebuilt from the vectors into folder `dir`
  // (FAISS: dir/faiss.index; exact: nothing, the vectors are enough).
  virtual void save(const std::filesystem::path& dir) const = 0;
};

// Recall of approximate results against exact ones: the fraction of the
// exact top-k ids (truth: nq*k ids) that `got` (nq*k ids) also returns per
// query. Ids < 0 in truth are not counted.
double recall_against(const std::vector<int64_t>& truth, const std::vector<int64_t>& got,
                      int64_t nq, int64_t k);

// Builds `index` from n vectors (x: n*dim floats): trains it on all of them
// first (IVF's k-means; a no-op for the others), then adds them in batches of
// `batch` rows (0: 1 % of n, at least 1000), counting each batch on a progress
// line labelled `label` (core/log.h). Exact, flat and IVF indices come out the
// same as from one add(n, x); an HNSW graph depends on the order in which FAISS
// inserts the vectors, which it chooses per add() call, so its links differ
// (its search results match wherever the search reaches every vector).
void add_with_progress(Index& index, int64_t n, const float* x, const std::string& label,
                       int64_t batch = 0);

// A new, empty index for `dim`-dimensional vectors. `expected_count` sizes the
// defaults that depend on it (IVF lists). Throws m3ret::Error for a bad spec.
std::unique_ptr<Index> make_index(const std::string& spec, int64_t dim, int64_t expected_count = 0);

// Reopens an index saved with save() into `dir`; `x` (n*dim floats) are the
// vectors it was built from, used by indices that keep nothing on disk.
// Throws m3ret::Error naming the folder when files are missing or disagree.
std::unique_ptr<Index> load_index(const std::string& spec, const std::filesystem::path& dir,
                                  int64_t n, int64_t dim, const float* x);

}  // namespace m3ret::eval
