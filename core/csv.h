// RFC 4180 CSV records (manifests, label tables, reports): fields separated by ',', quoted
// with '"' when they contain ',', '"', CR or LF; '""' is a quote inside a
// quoted field. CRLF and LF line ends are accepted.
#pragma once

#include <cstdint>
#include <istream>
#include <streambuf>
#include <string>
#include <vector>

namespace m3ret::csv {

struct Record {
  std::vector<std::string> fields;
  int64_t line = 0;    // 1-based line where the record starts
  int64_t offset = 0;  // byte where the record starts, counted from the start of the stream
};

// Reads records one at a time from a seekable stream, through its buffer, so
// that a large file is never held whole. Blank lines are skipped and a leading
// UTF-8 byte order mark is ignored. `sep` is the field separator (',' by
// default; ';' for HyperKvasir's files). `name` names the input in errors.
class Reader {
 public:
  // Reads `in` from its current position; `in` must outlive the reader.
  Reader(std::istream& in, std::string name, char sep = ',');

  const std::string& name() const { return name_; }

  // The next record that is not a blank line; false at the end. Throws
  // m3ret::Error "<name>:<line>: ..." for an unterminated quote or text after
  // a closing quote.
  bool next(Record& rec);

  // Continues at a record's `offset` and `line`, as next() gave them.
  void seek(int64_t offset, int64_t line);

 private:
  static constexpr int kEnd = std::char_traits<char>::eof();
  int peek() { return buf_->sgetc(); }
  int take();
  bool at_field_end();
  void end_line();
  std::string plain_field();
  std::string quoted_field(int64_t first_line);

  std::streambuf* buf_;
  std::string name_;
  char sep_;
  std::streampos start_;
  int64_t pos_ = 0, line_ = 1;
};

// Splits `text` into records as Reader does (offsets count from the start of
// `text`).
std::vector<Record> parse(const std::string& text, const std::string& name, char sep = ',');

// One field, quoted when needed.
std::string quote(const std::string& field);

}  // namespace m3ret::csv
