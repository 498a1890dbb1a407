#include "core/csv.h"

#include <sstream>

#include <fmt/format.h>

#include "core/error.h"

namespace m3ret::csv {

Reader::Reader(std::istream& in, std::string name, char sep)
    : buf_(in.rdbuf()), name_(std::move(name)), sep_(sep) {
  start_ = buf_->pubseekoff(0, std::ios::cur, std::ios::in);
  if (start_ == std::streampos(-1)) {
    throw Error(fmt::format("{}: cannot read it as CSV (the stream is not seekable)", name_));
  }
  char bom[3] = {};
  if (buf_->sgetn(bom, 3) == 3 && std::string(bom, 3) == "\xEF\xBB\xBF") {
    pos_ = 3;
  } else {
    buf_->pubseekpos(start_, std::ios::in);
  }
}

bool Reader::next(Record& rec) {
  while (peek() != kEnd) {
    rec.offset = pos_;
    rec.line = line_;
    rec.fields.clear();
    for (bool more = true; more;) {
      rec.fields.push_back(peek() == '"' ? quoted_field(rec.line) : plain_field());
      more = peek() == sep_;
      if (more) {
        take();
      } else {
        end_line();
      }
    }
    if (rec.fields.size() != 1 || !rec.fields[0].empty()) return true;
  }
  return false;
}

void Reader::seek(int64_t offset, int64_t line) {
  const std::streampos at = start_ + std::streamoff(offset);
  if (buf_->pubseekpos(at, std::ios::in) != at) {
    throw Error(fmt::format("{}: cannot seek to byte {}", name_, offset));
  }
  pos_ = offset;
  line_ = line;
}

int Reader::take() {
  ++pos_;
  return buf_->sbumpc();
}

bool Reader::at_field_end() {
  const int c = peek();
  return c == kEnd || c == sep_ || c == '\n' || c == '\r';
}

void Reader::end_line() {  // CR, LF, CRLF or the end of the input
  if (peek() == kEnd) return;
  if (peek() == '\r') take();
  if (peek() == '\n') take();
  ++line_;
}

std::string Reader::plain_field() {
  std::string f;
  while (!at_field_end()) f += static_cast<char>(take());
  return f;
}

// A field in quotes ('""' is a quote in it) that started on `first_line`.
std::string Reader::quoted_field(int64_t first_line) {
  std::string f;
  take();
  for (;;) {
    const int c = take();
    if (c == kEnd) throw Error(fmt::format("{}:{}: unterminated quoted field", name_, first_line));
    if (c == '"' && peek() != '"') break;
    if (c == '"') take();
    if (c == '\n') ++line_;
    f += static_cast<char>(c);
  }
  if (!at_field_end()) {
    throw Error(fmt::format("{}:{}: unexpected character '{}' after a closing quote", name_, line_,
                            static_cast<char>(peek())));
  }
  return f;
}

std::vector<Record> parse(const std::string& text, const std::string& name, char sep) {
  std::istringstream in(text);
  Reader reader(in, name, sep);
  std::vector<Record> records;
  for (Record rec; reader.next(rec);) records.push_back(std::move(rec));
  return records;
}

std::string quote(const std::string& field) {
  if (field.find_first_of(",\"\r\n") == std::string::npos) return field;
  std::string out = "\"";
  for (char c : field) {
    if (c == '"') out += '"';
    out += c;
  }
  out += '"';
  return out;
}

}  // namespace m3ret::csv
