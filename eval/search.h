// `m3ret search`: the k indexed cases most similar to a study file.
//
// The query (a DICOM series folder, a NIfTI/NRRD/MetaImage volume, a PNG/JPEG
// image or a video) is read and preprocessed exactly as the shards were
// (data::read_sample with the [preprocess] section recorded in the index's
// embeddings), encoded with the checkpoint (trainer::embed_batch) and looked
// up in the index.
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "eval/index_dir.h"

namespace m3ret::eval {

struct SearchOptions {
  std::filesystem::path checkpoint;  // checkpoint or run folder (its latest)
  std::filesystem::path query;       // study file or DICOM series folder
  std::string modality;              // of the query ("" = infer; see infer_query_modality)
  int64_t k = 10;
  std::string only_modality;  // keep only results of this modality ("" = all)
  // Which network encodes the query (trainer::EncoderChoice::weights) and its
  // pooling; "" = what the index's embeddings record (so query and index are
  // encoded alike), else "auto"/"teacher"/"student" and "cls"/"mean".
  std::string weights, pooling;
};

struct SearchHit {
  int64_t rank = 0;  // 1-based
  float score = 0;   // cosine similarity
  std::string id, modality, group, source;
  std::vector<std::string> labels;
};

struct SearchResult {
  std::string query, modality, checkpoint;
  int64_t step = 0;
  std::vector<SearchHit> hits;
};

// The query's modality when not given: a video file (.mp4 .avi .mkv .webm
// .mov .m4v) is endoscopy; otherwise, when the index holds one modality, that
// one. Throws m3ret::Error listing the index's modalities when ambiguous.
std::string infer_query_modality(const std::filesystem::path& query, const OpenedIndex& index);

// Runs the whole search. Throws m3ret::Error naming the file or folder for an
// unreadable query (via data::InputError), a checkpoint of another embedding
// dimension than the index, or an index without a preprocessing record.
SearchResult search_file(const OpenedIndex& index, const SearchOptions& options);

// Hits for a query embedding (q: index dim floats, L2-normalised).
std::vector<SearchHit> search_vector(const OpenedIndex& index, const float* q, int64_t k,
                                     const std::string& only_modality = "");

nlohmann::ordered_json to_json(const SearchResult& result);
// An aligned text table: rank, score, id, modality, labels, source.
std::string to_table(const SearchResult& result);

}  // namespace m3ret::eval
