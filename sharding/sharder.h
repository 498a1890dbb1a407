// `m3ret shard`: manifest -> SHARDS/ (formats in docs/formats.md).
//
// Run by every rank of a communicator (or one process with a size-1 one).
// The rows of each sample group (data/sample.h: a modality; endoscopy still
// images apart from endoscopy videos), in manifest order, are cut into
// consecutive shards of R ROWS: SHARDS/<group>/shard-00000.h5, ... where R is
// `samples_per_shard`, or, when `shard_bytes` > 0, the number of unified
// samples of that modality (fixed shape, data/preprocess.h) that fit in
// `shard_bytes` uncompressed bytes, at least 1 and at most samples_per_shard.
// R is known before anything is decoded, so the cut is the same on any number
// of ranks. Shard files left from an earlier run with another cut (numbers
// beyond the current count) are removed.
// All shards of all modalities, enumerated in modality order then shard
// number, are dealt round-robin to the ranks (global shard g -> rank
// g % world); each rank decodes its rows with `threads` threads. So which
// samples land in which shard, and the bytes of every shard file, do not
// depend on the number of ranks or threads; only which rank wrote a file does.
// Rows whose reading throws m3ret::InputError are refused: kept in their
// shard's `rejected_*` datasets and listed in SHARDS/rejects.csv.
// After all ranks finish, rank 0 writes rejects.csv and index.json
// atomically; index.json's presence means the shard folder is complete.
//
// Resumable: a shard already under its final name whose `key` attribute
// matches the current inputs (rows, the size and modification time of each
// input file, preprocessing, compression) and whose pixels match their
// checksums is kept as is; anything else (missing, stale, damaged,
// unreadable) is rewritten. Shard files
// are only renamed into place when complete, so a killed run leaves either
// complete shards or temporary files (removed on the next run).
// Memory does not grow with the manifest: every rank streams it twice instead
// of holding its rows. The first pass validates every row and keeps where
// each shard's first row starts (and, while it runs, 8 bytes per row to
// refuse duplicate paths); the second reads the rows of one of the rank's
// shards at a time from there. At most 4 * threads decoded samples per rank
// wait for the writer. What grows is per shard: the plan, and index.json with
// the shards' entries on rank 0.
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>

#include "core/communicator.h"
#include "core/config.h"
#include "data/preprocess.h"

namespace m3ret::sharding {

struct ShardConfig {
  int64_t samples_per_shard = 64;  // manifest rows per shard file
  int64_t threads = 2;             // decoding threads per rank
  int64_t compression = 4;         // deflate level of pixels (0 = none)
  int64_t shard_bytes = 0;         // uncompressed pixel bytes per shard file (0 = by samples)

  template <class V>
  void visit(V& v) {
    v("samples_per_shard", samples_per_shard, "manifest rows per shard file",
      config::Range{1, 1e9});
    v("threads", threads, "decoding threads per rank", config::Range{1, 1024});
    v("compression", compression, "deflate level of the pixels (0 = store raw)",
      config::Range{0, 9});
    v("shard_bytes", shard_bytes,
      "cut shards by size: uncompressed pixel bytes per shard file (0 = by samples_per_shard, "
      "which stays the upper bound)",
      config::Range{0, 1e15});
  }
};

struct ShardSummary {
  int64_t rows = 0;      // manifest rows
  int64_t samples = 0;   // samples in the shards
  int64_t rejected = 0;  // refused rows
  int64_t shards = 0;    // shard files
  int64_t written = 0;   // shard files written by this run (all ranks)
  int64_t skipped = 0;   // complete shard files kept from an earlier run
  double seconds = 0;    // wall time of this rank
};

// Collective over `comm`: every rank must call it with the same arguments.
// Returns the same totals on every rank. Throws m3ret::Error (on every rank)
// if any rank failed, naming the file; InputErrors never fail the run.
ShardSummary shard_dataset(const std::filesystem::path& manifest,
                           const std::filesystem::path& out_dir, const ShardConfig& cfg,
                           const data::PreprocessConfig& preprocess, Communicator& comm);

// Manifest rows per shard file for the sample group `modality` (a modality, or
// data::kEndoscopyImages) under `cfg` (see above).
int64_t rows_per_shard(const std::string& modality, const ShardConfig& cfg,
                       const data::PreprocessConfig& preprocess);

// The deterministic name of shard k of a modality, relative to the shard folder.
std::string shard_file_name(const std::string& modality, int64_t k);

}  // namespace m3ret::sharding
