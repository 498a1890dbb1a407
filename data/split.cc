#include "data/split.h"

#include <algorithm>
#include <cmath>
#include <map>
#include <set>

#include <boost/algorithm/string/split.hpp>
#include <boost/algorithm/string/trim.hpp>
#include <boost/lexical_cast.hpp>
#include <fmt/format.h>

#include "core/error.h"

namespace m3ret::data {

namespace {

const std::array<const char*, 3> kSplitNames = {"train", "val", "test"};

void check_ratios(const std::array<double, 3>& r, const std::string& what) {
  for (double x : r) {
    if (!std::isfinite(x) || x < 0)
      throw Error(fmt::format("{}: ratio {} is negative or not a number", what, x));
  }
  const double sum = r[0] + r[1] + r[2];
  if (std::abs(sum - 1.0) > 1e-6) {
    throw Error(fmt::format("{}: ratios {},{},{} sum to {}, not 1", what, r[0], r[1], r[2], sum));
  }
}

// Portable 64-bit hash of (seed, group): FNV-1a, then a splitmix64 finaliser.
uint64_t group_key(uint64_t seed, const std::string& group) {
  uint64_t h = 1469598103934665603ULL ^ seed;
  for (unsigned char c : group) h = (h ^ c) * 1099511628211ULL;
  h += 0x9e3779b97f4a7c15ULL;
  h = (h ^ (h >> 30)) * 0xbf58476d1ce4e5b9ULL;
  h = (h ^ (h >> 27)) * 0x94d049bb133111ebULL;
  return h ^ (h >> 31);
}

// Group counts per split for n groups: largest remainder, then every split with
// a non-zero ratio gets at least one group when n allows (taken from the largest).
std::array<size_t, 3> apportion(size_t n, const std::array<double, 3>& r) {
  std::array<size_t, 3> count{};
  std::array<double, 3> rest{};
  size_t given = 0;
  for (int k = 0; k < 3; ++k) {
    const double exact = r[k] * static_cast<double>(n);
    count[k] = static_cast<size_t>(std::floor(exact));
    rest[k] = exact - static_cast<double>(count[k]);
    given += count[k];
  }
  while (given < n) {
    const auto k = std::max_element(rest.begin(), rest.end()) - rest.begin();
    ++count[k];
    rest[k] = -1;
    ++given;
  }
  for (int k = 0; k < 3; ++k) {
    if (r[k] <= 0 || count[k] > 0) continue;
    const auto big = std::max_element(count.begin(), count.end()) - count.begin();
    if (count[big] > 1) --count[big], ++count[k];
  }
  return count;
}

}  // namespace

std::array<double, 3> parse_ratios(const std::string& text) {
  std::vector<std::string> parts;
  boost::split(parts, text, [](char c) { return c == ','; });
  if (parts.size() != 3) {
    throw Error(
        fmt::format("--ratios '{}': expected three comma-separated numbers TRAIN,VAL,TEST", text));
  }
  std::array<double, 3> r{};
  for (int k = 0; k < 3; ++k) {
    try {
      r[k] = boost::lexical_cast<double>(boost::trim_copy(parts[k]));
    } catch (const boost::bad_lexical_cast&) {
      throw Error(fmt::format("--ratios '{}': '{}' is not a number", text, parts[k]));
    }
  }
  check_ratios(r, fmt::format("--ratios '{}'", text));
  return r;
}

void assign_splits(std::vector<ManifestRow>& rows, const SplitOptions& opts,
                   const std::string& name) {
  check_ratios(opts.ratios, name);
  if (rows.empty()) throw Error(fmt::format("{}: the manifest has no rows to split", name));
  std::map<std::string, std::set<std::string>> labels_of;  // group -> label set
  for (const auto& row : rows) {
    if (row.group.empty()) {
      throw Error(
          fmt::format("{}:{}: row {} has no group (split keeps each group in one split; fill "
                      "the group column, e.g. with the patient id)",
                      name, row.line, row.path.string()));
    }
    labels_of[row.group].insert(row.labels.begin(), row.labels.end());
  }
  std::map<std::string, std::vector<std::pair<uint64_t, std::string>>> strata;
  for (const auto& [group, labels] : labels_of) {
    const std::string stratum = opts.stratify ? fmt::format("{}", fmt::join(labels, "|")) : "";
    strata[stratum].emplace_back(group_key(opts.seed, group), group);
  }
  std::map<std::string, const char*> split_of;
  for (auto& [stratum, groups] : strata) {
    std::sort(groups.begin(), groups.end());
    const auto count = apportion(groups.size(), opts.ratios);
    size_t i = 0;
    for (int k = 0; k < 3; ++k) {
      for (size_t j = 0; j < count[k]; ++j) split_of[groups[i++].second] = kSplitNames[k];
    }
  }
  for (auto& row : rows) row.split = split_of.at(row.group);
}

}  // namespace m3ret::data
