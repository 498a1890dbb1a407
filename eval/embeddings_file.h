// The embeddings file: one HDF5 file holding the embedding of every sample
// plus its metadata (format in docs/evaluation.md).
//
//   /embeddings  float32 [N, D]  row i is the (L2-normalised) embedding of sample i
//   /ids         string  [N]     variable-length UTF-8
//   /labels      string  [N]     the sample's labels joined with '|' ("" = no label)
//   /groups      string  [N]     patient/study id ("" = none: the sample is its own group)
//   /modality    string  [N]
//   /splits      string  [N]     "train" | "val" | "test" | ""
//   /sources     string  [N]     the sample's original file or folder ("" = unknown;
//                                optional when reading: older files lack it)
//   root attributes: format = "m3ret-embeddings", format_version = 1, dim = D,
//                    count = N, checkpoint (path), step, random_init (0/1),
//                    encoder ("checkpoint" | "random-init" | "raw-pixels"; optional),
//                    preprocess (JSON of the [preprocess] section the shards used;
//                    optional, "" = unknown),
//                    train_modalities (the checkpoint run's train.modalities joined
//                    with '|'; optional, absent or "" = unknown, e.g. raw pixels)
//
// Files are written under a temporary sibling name and renamed when complete,
// so a reader never sees a partial file. HDF5 calls hold sharding's process-wide
// HDF5 lock (sharding/hdf5_util.h), so these may run beside shard readers.
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include "data/sample.h"

namespace m3ret::eval {

inline constexpr const char* kEmbeddingsFormat = "m3ret-embeddings";
inline constexpr int64_t kEmbeddingsFormatVersion = 1;

// Where the embeddings came from (root attributes of the file).
struct EmbeddingAttrs {
  std::string checkpoint;    // checkpoint directory that was encoded ("" if unknown)
  int64_t step = 0;          // its training step
  bool random_init = false;  // true: the same architecture at its initial weights
  std::string encoder;  // "checkpoint", "random-init", "raw-pixels", "histogram" ("" = unknown)
  // Which network of the checkpoint encoded: "teacher" (SimDINO's EMA teacher)
  // or "student" (the trained encoder); "" for baselines without a model and
  // files written before it was recorded.
  std::string weights;
  std::string pooling;     // "cls" or "mean" (model.embedding); "" = unknown / no model
  std::string preprocess;  // JSON of the shards' [preprocess] section ("" = unknown)
  // train.modalities of the run the checkpoint comes from (also for its random
  // init: the same run's architecture); empty = unknown (raw pixels, older files).
  // A modality in the set but not in this list is "unseen" (Report::unseen).
  std::vector<std::string> train_modalities;
};

// N samples with D-dimensional embeddings. Every per-sample vector has N entries.
struct EmbeddingSet {
  int64_t N = 0, D = 0;
  std::vector<float> X;  // N*D, row-major: X[i*D + j]
  std::vector<std::string> ids, modality, groups, splits;
  std::vector<std::string> sources;              // N entries, or empty (= unknown)
  std::vector<std::vector<std::string>> labels;  // set per sample (may be empty)
  EmbeddingAttrs attrs;

  const float* row(int64_t i) const { return X.data() + i * D; }
  // Throws m3ret::Error (prefixed with `what`) when sizes disagree, D < 1, a
  // value is not finite, or a label (or a train modality) is empty or contains '|'.
  void check(const std::string& what) const;
  // Throws m3ret::Error (prefixed with `what`) naming the sample when a
  // modality is not one of data::modality_names() or an id appears twice.
  // Files are checked on writing and reading.
  void check_samples(const std::string& what) const;
};

// Writes `set` (including set.attrs) to `path` atomically (temp + rename)
// after set.check and set.check_samples.
// Throws m3ret::Error naming the path.
void write_embeddings(const std::filesystem::path& path, const EmbeddingSet& set);

// Reads and validates a file written by write_embeddings: format name and
// version, shapes, dtypes, modalities, unique ids. Shapes are checked against
// the file's size before anything is allocated (N x D floats stored
// contiguously must fit in the file; chunked data may expand at most 1024
// times), string columns against N. Throws m3ret::Error naming the file and
// what is wrong (missing file, not HDF5, wrong format, bad version, bad shape,
// unknown modality, duplicate id).
//
// libhdf5 loops forever or crashes on some corrupt files, so a forked child
// reads the whole file first, with a time limit (limits.base_timeout_s plus 1 s
// per 16 MB of file) and a memory limit (4096 MB plus 4 times the file's size);
// only a file it read without error is then read here. A child that runs out of
// time or memory, or crashes, is an error naming the file.
struct ReadLimits {
  int64_t base_timeout_s = 10;
};
EmbeddingSet read_embeddings(const std::filesystem::path& path, const ReadLimits& limits = {});

// Refuses to compare `other` (file `other_name`) with `base` (file
// `base_name`) unless both hold the same sample ids: throws m3ret::Error
// naming both files, how many ids are missing from `other` and how many it
// has that `base` lacks, with the first few of each.
void check_same_samples(const EmbeddingSet& base, const std::string& base_name,
                        const EmbeddingSet& other, const std::string& other_name);

// Labels are '|'-joined, as everywhere (data/sample.h).
using data::join_labels;
using data::split_labels;

}  // namespace m3ret::eval
