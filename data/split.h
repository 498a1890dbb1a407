// Patient-level train/val/test splits of a manifest (`m3ret split`): whole
// groups (the manifest's `group` column, e.g. a patient) go to one split, so no
// patient is in two splits. Ratios are of groups. With stratification the groups
// are split per stratum, where a group's stratum is its label set (the sorted,
// de-duplicated union of the labels of its rows; no labels is a stratum too), so
// every label set is represented in every split with a non-zero ratio where the
// stratum has enough groups. The assignment depends only on the group names,
// their labels, the ratios and the seed.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <vector>

#include "data/manifest.h"

namespace m3ret::data {

struct SplitOptions {
  std::array<double, 3> ratios{0.8, 0.1, 0.1};  // train, val, test
  uint64_t seed = 0;
  bool stratify = false;
};

// Parses "TRAIN,VAL,TEST" (three non-negative numbers summing to 1, within
// 1e-6). Throws m3ret::Error naming the text and the bad value.
std::array<double, 3> parse_ratios(const std::string& text);

// Fills `split` of every row. `name` (the manifest file) is used in errors.
// Throws m3ret::Error for: no rows, a row without a group (names its line),
// ratios that are negative or do not sum to 1.
void assign_splits(std::vector<ManifestRow>& rows, const SplitOptions& opts,
                   const std::string& name);

}  // namespace m3ret::data
