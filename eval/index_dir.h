// The INDEX folder written by `m3ret index build` and read by `m3ret search`:
//
//   INDEX/index.json       {"format": "m3ret-index", "format_version": 1,
//                           "type": "<canonical factory string>", "dim": D, "count": N,
//                           "embeddings": "<source embeddings file>", "checkpoint": "...",
//                           "step": S, "encoder": "...", "modalities": {"ct": 40, ...}}
//   INDEX/embeddings.h5    the indexed embeddings (L2-normalised) with ids,
//                          labels, groups, modality, sources and the shards'
//                          preprocessing (embeddings file format)
//   INDEX/faiss.index      FAISS types only (faiss::write_index)
//
// The folder is built under a temporary sibling name and renamed when
// complete, so a reader never sees a partial index.
#pragma once

#include <filesystem>
#include <memory>
#include <string>

#include <nlohmann/json.hpp>

#include "eval/embeddings_file.h"
#include "eval/index.h"

namespace m3ret::eval {

inline constexpr const char* kIndexFormat = "m3ret-index";
inline constexpr int64_t kIndexFormatVersion = 1;

struct IndexBuildOptions {
  std::filesystem::path embeddings;  // embeddings file (m3ret embed)
  std::filesystem::path out;         // INDEX folder to create
  std::string type = "exact";        // factory string (eval/index.h)
  std::string split;                 // only samples of this split ("" = all)
  bool overwrite = false;            // replace an existing INDEX folder
  int64_t batch = 0;                 // rows added per call (0: 1 % of them, at least 1000)
};

// Builds and writes the folder; returns its index.json. Throws m3ret::Error
// naming the file or folder: unreadable embeddings, a split with no sample, a
// bad type, `out` existing (unless overwrite, and then only when it is an
// index folder).
nlohmann::json build_index_dir(const IndexBuildOptions& options);

struct OpenedIndex {
  std::filesystem::path dir;
  nlohmann::json info;           // index.json
  EmbeddingSet set;              // metadata (and vectors) of the indexed samples
  std::unique_ptr<Index> index;  // id i = row i of `set`
};

// Opens an INDEX folder; checks format, version and that the parts agree.
// Throws m3ret::Error naming the folder and what is wrong.
OpenedIndex open_index_dir(const std::filesystem::path& dir);

// Rows of `set` scaled to unit L2 norm (zero rows stay zero): N*D floats.
std::vector<float> normalized_rows(const EmbeddingSet& set);

}  // namespace m3ret::eval
