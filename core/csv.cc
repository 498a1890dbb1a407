#include "core/csv.h"

#include <fmt/format.h>

#include "core/error.h"

namespace m3ret::csv {

std::vector<Record> parse(const std::string& text, const std::string& name, char sep) {
  std::vector<Record> records;
  size_t i = 0;
  const size_t n = text.size();
  int64_t line = 1;
  if (text.compare(0, 3, "\xEF\xBB\xBF") == 0) i = 3;  // UTF-8 byte order mark
  while (i < n) {
    Record rec;
    rec.line = line;
    std::string field;
    bool end_of_record = false;
    while (!end_of_record) {
      if (i < n && text[i] == '"') {  // quoted field
        ++i;
        for (;;) {
          if (i >= n) {
            throw Error(fmt::format("{}:{}: unterminated quoted field", name, rec.line));
          }
          char c = text[i++];
          if (c == '"') {
            if (i < n && text[i] == '"') {
              field += '"';
              ++i;
            } else {
              break;
            }
          } else {
            if (c == '\n') ++line;
            field += c;
          }
        }
        if (i < n && text[i] != sep && text[i] != '\n' && text[i] != '\r') {
          throw Error(fmt::format("{}:{}: unexpected character '{}' after a closing quote", name,
                                  line, text[i]));
        }
      } else {
        while (i < n && text[i] != sep && text[i] != '\n' && text[i] != '\r') field += text[i++];
      }
      rec.fields.push_back(std::move(field));
      field.clear();
      if (i >= n) {
        end_of_record = true;
      } else if (text[i] == sep) {
        ++i;
      } else {  // CR, LF or CRLF
        if (text[i] == '\r') ++i;
        if (i < n && text[i] == '\n') ++i;
        ++line;
        end_of_record = true;
      }
    }
    bool blank = rec.fields.size() == 1 && rec.fields[0].empty();
    if (!blank) records.push_back(std::move(rec));
  }
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
