#include "data/sample.h"

#include <algorithm>

namespace m3ret::data {

bool is_modality(const std::string& name) {
  const auto& names = modality_names();
  return std::find(names.begin(), names.end(), name) != names.end();
}

}  // namespace m3ret::data
