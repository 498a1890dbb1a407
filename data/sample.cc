#include "data/sample.h"

#include <algorithm>

namespace m3ret::data {

bool is_modality(const std::string& name) {
  const auto& names = modality_names();
  return std::find(names.begin(), names.end(), name) != names.end();
}

std::string join_labels(const std::vector<std::string>& labels) {
  std::string out;
  for (size_t i = 0; i < labels.size(); ++i) {
    if (i) out += '|';
    out += labels[i];
  }
  return out;
}

std::vector<std::string> split_labels(const std::string& joined) {
  std::vector<std::string> out;
  size_t start = 0;
  while (start <= joined.size()) {
    size_t bar = joined.find('|', start);
    if (bar == std::string::npos) bar = joined.size();
    if (bar > start) out.push_back(joined.substr(start, bar - start));
    start = bar + 1;
  }
  return out;
}

}  // namespace m3ret::data
