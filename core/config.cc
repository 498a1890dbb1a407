#include "core/config.h"

#include <algorithm>
#include <cctype>
#include <cstdlib>
#include <functional>
#include <limits>
#include <sstream>

#include <fmt/format.h>
#include <toml++/toml.h>

namespace m3ret::config {

struct Document::Table {
  toml::table t;
};
struct Writer::Table {
  toml::table t;
};

namespace {

std::string where(const toml::node& n) {
  const auto& src = n.source();
  std::string file = src.path ? std::string(*src.path) : std::string("<config>");
  if (src.begin.line == 0) return file;
  return fmt::format("{}:{}:{}", file, src.begin.line, src.begin.column);
}

std::string type_name(const toml::node& n) {
  std::ostringstream os;
  os << n.type();
  return os.str();
}

// Moves (not copies) so that values keep their source positions for messages.
void merge(toml::table& into, toml::table&& from) {
  for (auto&& [k, v] : from) {
    auto* existing = into.get(k);
    if (existing && existing->is_table() && v.is_table()) {
      merge(*existing->as_table(), std::move(*v.as_table()));
    } else {
      into.insert_or_assign(k, std::move(v));
    }
  }
}

std::vector<std::string> split_key(const std::string& key) {
  std::vector<std::string> parts;
  size_t start = 0;
  while (true) {
    size_t dot = key.find('.', start);
    parts.push_back(key.substr(start, dot - start));
    if (dot == std::string::npos) break;
    start = dot + 1;
  }
  return parts;
}

// Parses an override's raw text as one TOML value. Keeps the parsed table alive.
struct ParsedValue {
  toml::table holder;
  const toml::node* node = nullptr;
};

ParsedValue parse_raw(const std::string& key, const std::string& raw) {
  ParsedValue p;
  try {
    p.holder = toml::parse("v = " + raw, std::string_view("--set"));
  } catch (const toml::parse_error& e) {
    throw Error(
        fmt::format("--set {}={}: '{}' is not a TOML value ({})", key, raw, raw, e.description()));
  }
  if (p.holder.size() != 1) {  // e.g. a newline and another key after the value
    throw Error(fmt::format("--set {}={}: '{}' is more than one TOML value", key, raw, raw));
  }
  p.node = p.holder.get("v");
  return p;
}

[[noreturn]] void type_error(const std::string& key, const std::string& expected,
                             const toml::node& n, const std::string& origin) {
  throw Error(
      fmt::format("config key '{}' must be {}, got {} ({})", key, expected, type_name(n), origin));
}

void check_range(const std::string& key, double v, const std::optional<Range>& r,
                 const std::string& origin) {
  if (r && !(v >= r->lo && v <= r->hi)) {
    throw Error(fmt::format("config key '{}' = {} is out of range [{}, {}] ({})", key, v, r->lo,
                            r->hi, origin));
  }
}

int64_t to_int(const std::string& key, const toml::node& n, const std::string& origin) {
  if (auto i = n.as_integer()) return i->get();
  type_error(key, "an integer", n, origin);
}

double to_double(const std::string& key, const toml::node& n, const std::string& origin) {
  if (auto f = n.as_floating_point()) return f->get();
  if (auto i = n.as_integer()) return static_cast<double>(i->get());
  type_error(key, "a number", n, origin);
}

const toml::array& to_array(const std::string& key, const toml::node& n,
                            const std::string& origin) {
  if (auto a = n.as_array()) return *a;
  type_error(key, "an array", n, origin);
}

}  // namespace

Document::Document() : table_(std::make_unique<Table>()) {}
Document::~Document() = default;
Document::Document(Document&&) noexcept = default;
Document& Document::operator=(Document&&) noexcept = default;

void Document::add_file(const std::filesystem::path& file) { add_file(file, {}); }

void Document::add_file(const std::filesystem::path& file,
                        std::vector<std::filesystem::path> extending) {
  std::error_code ec;
  if (!std::filesystem::is_regular_file(file, ec)) {
    throw Error(fmt::format("config file '{}' does not exist or is not a file", file.string()));
  }
  toml::table parsed;
  try {
    parsed = toml::parse_file(file.string());
  } catch (const toml::parse_error& e) {
    throw Error(fmt::format("config file {}:{}:{}: {}", file.string(), e.source().begin.line,
                            e.source().begin.column, e.description()));
  }
  if (const toml::node* base = parsed.get("base")) {
    const auto* name = base->as_string();
    if (!name || name->get().empty()) {
      throw Error(fmt::format(
          "config key 'base' at {}: must be the path of the config file this one extends "
          "(a non-empty string), got {}",
          where(*base), name ? std::string("\"\"") : type_name(*base)));
    }
    std::filesystem::path target(name->get());
    if (target.is_relative()) target = file.parent_path() / target;
    extending.push_back(std::filesystem::weakly_canonical(file, ec));
    const auto canonical = std::filesystem::weakly_canonical(target, ec);
    if (std::find(extending.begin(), extending.end(), canonical) != extending.end()) {
      std::string chain;
      for (const auto& f : extending) chain += f.string() + " -> ";
      throw Error(
          fmt::format("config key 'base' at {}: '{}' leads back to a file already being read: {}{}",
                      where(*base), name->get(), chain, canonical.string()));
    }
    if (!std::filesystem::is_regular_file(target, ec)) {
      throw Error(fmt::format("config key 'base' at {}: '{}' ({}) does not exist or is not a file",
                              where(*base), name->get(),
                              std::filesystem::absolute(target, ec).string()));
    }
    add_file(target, std::move(extending));
    parsed.erase("base");
  }
  merge(table_->t, std::move(parsed));
  files_.push_back(file);
}

void Document::add_text(const std::string& text, const std::string& name) {
  toml::table parsed;
  try {
    parsed = toml::parse(text, name);
  } catch (const toml::parse_error& e) {
    throw Error(fmt::format("config {}:{}:{}: {}", name, e.source().begin.line,
                            e.source().begin.column, e.description()));
  }
  if (const toml::node* base = parsed.get("base")) {
    throw Error(fmt::format(
        "config key 'base' at {}: only a config file can extend another (its path is relative "
        "to the file's folder)",
        where(*base)));
  }
  merge(table_->t, std::move(parsed));
  files_.push_back(name);
}

void Document::add_override(const std::string& assignment) {
  auto eq = assignment.find('=');
  if (eq == std::string::npos || eq == 0) {
    throw Error(
        fmt::format("--set '{}': expected KEY=VALUE, e.g. train.max_steps=100", assignment));
  }
  std::string key = assignment.substr(0, eq);
  for (const auto& part : split_key(key)) {
    if (part.empty()) throw Error(fmt::format("--set '{}': malformed key '{}'", assignment, key));
  }
  overrides_[key] = assignment.substr(eq + 1);
}

std::optional<Document::Found> Document::find(const std::string& key) {
  used_.insert(key);
  if (auto it = overrides_.find(key); it != overrides_.end()) {
    Found f;
    f.raw = &it->second;
    f.origin = "--set " + key + "=" + it->second;
    return f;
  }
  const toml::node* node = &table_->t;
  std::string path;
  for (const auto& part : split_key(key)) {
    const auto* tbl = node->as_table();
    if (!tbl) {
      throw Error(fmt::format("config key '{}' must be a table (section), got {} ({})", path,
                              type_name(*node), where(*node)));
    }
    node = tbl->get(part);
    if (!node) return std::nullopt;
    path += (path.empty() ? "" : ".") + part;
  }
  Found f;
  f.node = node;
  f.origin = where(*node);
  return f;
}

void Document::mark_section(const std::string& key) {
  sections_.insert(key);
  const toml::node* node = &table_->t;
  for (const auto& part : split_key(key)) {
    const auto* tbl = node->as_table();
    if (!tbl) return;
    node = tbl->get(part);
    if (!node) return;
  }
  if (!node->is_table()) {
    throw Error(fmt::format("config key '{}' must be a table (section), got {} ({})", key,
                            type_name(*node), where(*node)));
  }
}

void Document::check_all_used() const {
  // Walk the file values depth-first in file order of keys.
  std::function<void(const toml::table&, const std::string&)> walk =
      [&](const toml::table& t, const std::string& prefix) {
        for (const auto& [k, v] : t) {
          std::string key = prefix + std::string(k.str());
          if (v.is_table()) {
            if (!sections_.count(key)) {
              throw Error(fmt::format("unknown config section '{}' ({})", key, where(v)));
            }
            walk(*v.as_table(), key + ".");
          } else if (!used_.count(key)) {
            throw Error(fmt::format("unknown config key '{}' ({})", key, where(v)));
          }
        }
      };
  walk(table_->t, "");
  for (const auto& [key, raw] : overrides_) {
    if (!used_.count(key)) {
      throw Error(fmt::format("unknown config key '{}' (--set {}={})", key, key, raw));
    }
  }
}

// ---------------------------------------------------------------- Binder

namespace {
// Calls fn(node, origin) with the value's node, parsing an override if needed.
template <class Fn>
void with_value(Document& doc, const std::string& key, Fn fn) {
  auto found = doc.find(key);
  if (!found) return;
  if (found->node) {
    fn(*static_cast<const toml::node*>(found->node), found->origin);
  } else {
    ParsedValue p = parse_raw(key, *found->raw);
    fn(*p.node, found->origin);
  }
}
}  // namespace

void Binder::operator()(const std::string& key, bool& v, const std::string&) {
  with_value(doc_, full(key), [&](const toml::node& n, const std::string& origin) {
    auto b = n.as_boolean();
    if (!b) type_error(full(key), "a boolean (true or false)", n, origin);
    v = b->get();
  });
}

void Binder::operator()(const std::string& key, int64_t& v, const std::string&,
                        std::optional<Range> range) {
  with_value(doc_, full(key), [&](const toml::node& n, const std::string& origin) {
    int64_t x = to_int(full(key), n, origin);
    check_range(full(key), static_cast<double>(x), range, origin);
    v = x;
  });
}

void Binder::operator()(const std::string& key, int& v, const std::string&,
                        std::optional<Range> range) {
  if (!range) {
    range = Range{static_cast<double>(std::numeric_limits<int>::min()),
                  static_cast<double>(std::numeric_limits<int>::max())};
  }
  with_value(doc_, full(key), [&](const toml::node& n, const std::string& origin) {
    int64_t x = to_int(full(key), n, origin);
    check_range(full(key), static_cast<double>(x), range, origin);
    v = static_cast<int>(x);
  });
}

void Binder::operator()(const std::string& key, double& v, const std::string&,
                        std::optional<Range> range) {
  with_value(doc_, full(key), [&](const toml::node& n, const std::string& origin) {
    double x = to_double(full(key), n, origin);
    check_range(full(key), x, range, origin);
    v = x;
  });
}

void Binder::operator()(const std::string& key, std::string& v, const std::string&,
                        std::optional<OneOf> one_of) {
  auto found = doc_.find(full(key));
  if (!found) return;
  std::string value;
  if (found->node) {
    const auto& n = *static_cast<const toml::node*>(found->node);
    auto s = n.as_string();
    if (!s) type_error(full(key), "a string", n, found->origin);
    value = s->get();
  } else if (!found->raw->empty() && found->raw->front() == '"') {
    ParsedValue p = parse_raw(full(key), *found->raw);
    auto s = p.node->as_string();
    if (!s) type_error(full(key), "a string", *p.node, found->origin);
    value = s->get();
  } else {
    value = *found->raw;  // bare text on the command line
  }
  if (one_of) {
    bool ok = false;
    for (const auto& allowed : one_of->values) ok = ok || allowed == value;
    if (!ok) {
      throw Error(fmt::format("config key '{}' = '{}' is not one of {{{}}} ({})", full(key), value,
                              fmt::join(one_of->values, ", "), found->origin));
    }
  }
  v = value;
}

void Binder::operator()(const std::string& key, std::vector<std::string>& v, const std::string&) {
  with_value(doc_, full(key), [&](const toml::node& n, const std::string& origin) {
    std::vector<std::string> out;
    for (const auto& e : to_array(full(key), n, origin)) {
      auto s = e.as_string();
      if (!s) type_error(full(key), "an array of strings", e, origin);
      out.push_back(s->get());
    }
    v = std::move(out);
  });
}

void Binder::operator()(const std::string& key, std::vector<int64_t>& v, const std::string&,
                        std::optional<Range> range) {
  with_value(doc_, full(key), [&](const toml::node& n, const std::string& origin) {
    std::vector<int64_t> out;
    for (const auto& e : to_array(full(key), n, origin)) {
      int64_t x = to_int(full(key) + "[]", e, origin);
      check_range(full(key), static_cast<double>(x), range, origin);
      out.push_back(x);
    }
    v = std::move(out);
  });
}

void Binder::operator()(const std::string& key, std::vector<double>& v, const std::string&,
                        std::optional<Range> range) {
  with_value(doc_, full(key), [&](const toml::node& n, const std::string& origin) {
    std::vector<double> out;
    for (const auto& e : to_array(full(key), n, origin)) {
      double x = to_double(full(key) + "[]", e, origin);
      check_range(full(key), x, range, origin);
      out.push_back(x);
    }
    v = std::move(out);
  });
}

void Binder::operator()(const std::string& key, AutoNumber& v, const std::string&,
                        std::optional<Range> range) {
  auto found = doc_.find(full(key));
  if (!found) return;
  auto bind = [&](const toml::node& n, const std::string& origin) {
    if (auto s = n.as_string()) {
      if (s->get() != "auto")
        throw Error(fmt::format("config key '{}' = '{}' must be \"auto\" or a number ({})",
                                full(key), s->get(), origin));
      v.value.reset();
      return;
    }
    if (!n.as_floating_point() && !n.as_integer())
      type_error(full(key), "\"auto\" or a number", n, origin);
    double x = to_double(full(key), n, origin);
    check_range(full(key), x, range, origin);
    v.value = x;
  };
  if (found->node) return bind(*static_cast<const toml::node*>(found->node), found->origin);
  if (*found->raw == "auto") {  // bare text on the command line
    v.value.reset();
    return;
  }
  ParsedValue p = parse_raw(full(key), *found->raw);
  bind(*p.node, found->origin);
}

// ---------------------------------------------------------------- Writer

Writer::Writer() : table_(std::make_unique<Table>()) {}
Writer::~Writer() = default;

void Writer::put(const std::string& key, bool v) { table_->t.insert_or_assign(key, v); }
void Writer::put(const std::string& key, int64_t v) { table_->t.insert_or_assign(key, v); }
void Writer::put(const std::string& key, double v) { table_->t.insert_or_assign(key, v); }
void Writer::put(const std::string& key, const std::string& v) {
  table_->t.insert_or_assign(key, v);
}
void Writer::put(const std::string& key, const std::vector<std::string>& v) {
  toml::array a;
  for (const auto& s : v) a.push_back(s);
  table_->t.insert_or_assign(key, std::move(a));
}
void Writer::put(const std::string& key, const std::vector<int64_t>& v) {
  toml::array a;
  for (auto x : v) a.push_back(x);
  table_->t.insert_or_assign(key, std::move(a));
}
void Writer::put(const std::string& key, const std::vector<double>& v) {
  toml::array a;
  for (auto x : v) a.push_back(x);
  table_->t.insert_or_assign(key, std::move(a));
}
void Writer::put(const std::string& key, const AutoNumber& v) {
  if (v.value)
    table_->t.insert_or_assign(key, *v.value);
  else
    table_->t.insert_or_assign(key, std::string("auto"));
}
void Writer::put_table(const std::string& key, Writer& sub) {
  table_->t.insert_or_assign(key, std::move(sub.table_->t));
}

namespace {

bool is_key_char(char c) {
  return std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '-';
}

// The shortest decimal that reads back as the same double, as a TOML float.
std::string shortest_float(double v) {
  std::string s = fmt::format("{}", v);
  if (s.find_first_of(".eEni") == std::string::npos) s += ".0";
  return s;
}

// toml++ as Debian builds it prints every float with 17 significant digits
// (0.9 as 0.90000000000000002). Rewrites each float literal of a value (after
// '=' on its line, or inside a value's array) as shortest_float; strings, keys and
// table headers are copied as they are.
std::string with_shortest_floats(const std::string& text) {
  std::string out;
  out.reserve(text.size());
  bool in_value = false;
  int depth = 0;  // brackets open inside the current value
  for (size_t i = 0; i < text.size();) {
    const char c = text[i];
    if (c == '"' || c == '\'') {  // a string literal, copied whole
      size_t j = i + 1;
      while (j < text.size() && text[j] != c) j += (c == '"' && text[j] == '\\') ? 2 : 1;
      j = std::min(j + 1, text.size());
      out.append(text, i, j - i);
      i = j;
      continue;
    }
    const bool starts_number = std::isdigit(static_cast<unsigned char>(c)) ||
                               ((c == '-' || c == '+') && i + 1 < text.size() &&
                                std::isdigit(static_cast<unsigned char>(text[i + 1])));
    if (in_value && starts_number && (i == 0 || !is_key_char(text[i - 1]))) {
      size_t j = i + 1;
      while (j < text.size() && (is_key_char(text[j]) || text[j] == '.' || text[j] == '+')) ++j;
      const std::string token = text.substr(i, j - i);
      char* end = nullptr;
      const double v = std::strtod(token.c_str(), &end);
      const bool is_float =
          token.find_first_of(".eE") != std::string::npos && end == token.c_str() + token.size();
      out += is_float ? shortest_float(v) : token;
      i = j;
      continue;
    }
    if (c == '=') in_value = true;
    if (in_value && c == '[') ++depth;
    if (in_value && c == ']') --depth;
    if (c == '\n' && depth <= 0) in_value = false, depth = 0;
    out += c;
    ++i;
  }
  return out;
}

}  // namespace

std::string Writer::str() const {
  std::ostringstream os;
  os << table_->t << "\n";
  return with_shortest_floats(os.str());
}

}  // namespace m3ret::config
