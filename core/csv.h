// RFC 4180 CSV records (manifests, label tables, reports): fields separated by ',', quoted
// with '"' when they contain ',', '"', CR or LF; '""' is a quote inside a
// quoted field. CRLF and LF line ends are accepted.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace m3ret::csv {

struct Record {
  std::vector<std::string> fields;
  int64_t line = 0;  // 1-based line where the record starts
};

// Splits `text` into records; blank lines are skipped. Throws m3ret::Error
// "<name>:<line>: ..." for an unterminated quote or text after a closing quote.
// `sep` is the field separator (',' by default; ';' for HyperKvasir's files).
std::vector<Record> parse(const std::string& text, const std::string& name, char sep = ',');

// One field, quoted when needed.
std::string quote(const std::string& field);

}  // namespace m3ret::csv
