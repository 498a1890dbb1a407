// Typed configuration from TOML: defaults -> file -> `--set a.b=v` overrides.
//
// Every component owns a plain struct with default member values and a
// `visit` template that lists its fields:
//
//   struct TrainConfig {
//     int64_t max_steps = 100;
//     std::string objective = "simdino";
//     template <class V> void visit(V& v) {
//       v("max_steps", max_steps, "optimizer steps", config::Range{1, 1e9});
//       v("objective", objective, "training objective",
//         config::OneOf{{"mae", "simdino", "mae+simdino"}});
//     }
//     void validate() const;   // optional: cross-field checks, throw config::Error
//   };
//
// and nested structs are listed with `v.section("name", sub)`. Supported field
// types: bool, int, int64_t, double, std::string, std::vector<std::string>,
// std::vector<int64_t>, std::vector<double>, AutoNumber ("auto" or a number).
//
// `Document` holds the parsed TOML file and the overrides; `bind` fills a struct
// from it, and `check_all_used` turns every key that no struct consumed into an
// error. All errors are config::Error naming the key and where its value came
// from (file:line:column, or "--set").
#pragma once

#include <cstdint>
#include <filesystem>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <type_traits>
#include <vector>

#include "core/error.h"

namespace m3ret::config {

class Error : public m3ret::Error {
 public:
  using m3ret::Error::Error;
};

// Inclusive numeric range; use +-1e300 for an open end.
struct Range {
  double lo;
  double hi;
};

// Allowed values of a string field.
struct OneOf {
  std::vector<std::string> values;
};

// A number that may also be the string "auto" (value empty): the component
// then computes it (e.g. simdino.gamma from the batch and the head width).
// In TOML: `key = "auto"` or `key = 0.035`; on the command line
// `--set key=auto` or `--set key=0.035`. Written back as given.
struct AutoNumber {
  std::optional<double> value;  // empty = "auto"
  bool is_auto() const { return !value.has_value(); }
};

namespace detail {
template <class T, class = void>
struct has_validate : std::false_type {};
template <class T>
struct has_validate<T, std::void_t<decltype(std::declval<const T&>().validate())>>
    : std::true_type {};
}  // namespace detail

// Parsed configuration sources (one optional file, any number of overrides).
class Document {
 public:
  Document();
  ~Document();
  Document(Document&&) noexcept;
  Document& operator=(Document&&) noexcept;

  // Parses a TOML file; later files override earlier ones key by key. A top-level
  // `base = "other.toml"` (relative to the file's folder) is read first, recursively,
  // and the file's own keys override it. Throws config::Error naming the file (and
  // line) on a syntax error, a missing base or a chain of bases that returns to a file.
  void add_file(const std::filesystem::path& file);
  // Parses TOML text; `name` stands for the file in messages.
  void add_text(const std::string& text, const std::string& name);
  // Adds an override "a.b.c=value". The value is read as a TOML value
  // (42, 1.5, true, "s", [1, 2]); for string fields bare text is accepted.
  void add_override(const std::string& assignment);

  // Fills `s` from the values under `section` ("" for the root).
  template <class S>
  void bind(const std::string& section, S& s);

  // Throws config::Error for the first key (file or override) that no bind
  // consumed, naming the key and where it was given.
  void check_all_used() const;

  // Files that were read, in order.
  const std::vector<std::filesystem::path>& files() const { return files_; }

  // --- used by the visitors below -------------------------------------
  struct Found {
    const void* node = nullptr;        // toml::node of a file value, or
    const std::string* raw = nullptr;  // value from an override
    std::string origin;                // "file.toml:3:1" or "--set"
  };
  std::optional<Found> find(const std::string& key);
  void mark_section(const std::string& key);

 private:
  // `extending`: the files whose `base` led here, to refuse a cycle.
  void add_file(const std::filesystem::path& file, std::vector<std::filesystem::path> extending);

  struct Table;  // wraps toml::table
  std::unique_ptr<Table> table_;
  std::map<std::string, std::string> overrides_;  // key -> raw value
  std::set<std::string> used_;
  std::set<std::string> sections_;
  std::vector<std::filesystem::path> files_;
};

// Reads values into typed fields.
class Binder {
 public:
  Binder(Document& doc, std::string prefix) : doc_(doc), prefix_(std::move(prefix)) {}

  void operator()(const std::string& key, bool& v, const std::string& help);
  void operator()(const std::string& key, int64_t& v, const std::string& help,
                  std::optional<Range> range = std::nullopt);
  void operator()(const std::string& key, int& v, const std::string& help,
                  std::optional<Range> range = std::nullopt);
  void operator()(const std::string& key, double& v, const std::string& help,
                  std::optional<Range> range = std::nullopt);
  void operator()(const std::string& key, std::string& v, const std::string& help,
                  std::optional<OneOf> one_of = std::nullopt);
  void operator()(const std::string& key, std::vector<std::string>& v, const std::string& help);
  void operator()(const std::string& key, std::vector<int64_t>& v, const std::string& help,
                  std::optional<Range> range = std::nullopt);
  void operator()(const std::string& key, std::vector<double>& v, const std::string& help,
                  std::optional<Range> range = std::nullopt);
  void operator()(const std::string& key, AutoNumber& v, const std::string& help,
                  std::optional<Range> range = std::nullopt);

  template <class S>
  void section(const std::string& key, S& s) {
    Binder sub(doc_, full(key) + ".");
    doc_.mark_section(full(key));
    s.visit(sub);
    if constexpr (detail::has_validate<S>::value) s.validate();
  }

 private:
  std::string full(const std::string& key) const { return prefix_ + key; }
  Document& doc_;
  std::string prefix_;
};

// Writes the resolved values as TOML (the run directory's config.toml).
class Writer {
 public:
  Writer();
  ~Writer();
  template <class T>
  void operator()(const std::string& key, T& v, const std::string& /*help*/) {
    put(key, v);
  }
  template <class T, class C>
  void operator()(const std::string& key, T& v, const std::string& /*help*/, const C&) {
    put(key, v);
  }
  template <class S>
  void section(const std::string& key, S& s) {
    Writer sub;
    s.visit(sub);
    put_table(key, sub);
  }
  std::string str() const;  // TOML text

 private:
  void put(const std::string& key, bool v);
  void put(const std::string& key, int64_t v);
  void put(const std::string& key, int v) { put(key, static_cast<int64_t>(v)); }
  void put(const std::string& key, double v);
  void put(const std::string& key, const std::string& v);
  void put(const std::string& key, const std::vector<std::string>& v);
  void put(const std::string& key, const std::vector<int64_t>& v);
  void put(const std::string& key, const std::vector<double>& v);
  void put(const std::string& key, const AutoNumber& v);
  void put_table(const std::string& key, Writer& sub);
  struct Table;  // wraps toml::table
  std::unique_ptr<Table> table_;
};

// Lists every key with its help text and default (for `--help` style output).
class Lister {
 public:
  explicit Lister(std::string prefix = "") : prefix_(std::move(prefix)) {}
  template <class T>
  void operator()(const std::string& key, T& v, const std::string& help) {
    add(key, v, help);
  }
  template <class T, class C>
  void operator()(const std::string& key, T& v, const std::string& help, const C&) {
    add(key, v, help);
  }
  template <class S>
  void section(const std::string& key, S& s) {
    Lister sub(prefix_ + key + ".");
    s.visit(sub);
    lines_.insert(lines_.end(), sub.lines_.begin(), sub.lines_.end());
  }
  const std::vector<std::string>& lines() const { return lines_; }

 private:
  template <class T>
  void add(const std::string& key, T& v, const std::string& help) {
    Writer w;
    w(key, v, help);
    std::string text = w.str();
    auto eq = text.find('=');
    std::string value = eq == std::string::npos ? text : text.substr(eq + 1);
    while (!value.empty() && (value.back() == '\n' || value.back() == ' ')) value.pop_back();
    while (!value.empty() && value.front() == ' ') value.erase(value.begin());
    lines_.push_back(prefix_ + key + " = " + value + "    # " + help);
  }
  std::string prefix_;
  std::vector<std::string> lines_;
};

template <class S>
void Document::bind(const std::string& section, S& s) {
  if (section.empty()) {
    Binder b(*this, "");
    s.visit(b);
    if constexpr (detail::has_validate<S>::value) s.validate();
  } else {
    Binder root(*this, "");
    root.section(section, s);
  }
}

// Convenience: parse `file` (optional) and `overrides`, bind the whole root
// struct, reject unknown keys.
template <class S>
S load(const std::optional<std::filesystem::path>& file,
       const std::vector<std::string>& overrides) {
  Document doc;
  if (file) doc.add_file(*file);
  for (const auto& o : overrides) doc.add_override(o);
  S s;
  doc.bind("", s);
  doc.check_all_used();
  return s;
}

// Resolved config as TOML text.
template <class S>
std::string to_toml(S& s) {
  Writer w;
  s.visit(w);
  return w.str();
}

}  // namespace m3ret::config
