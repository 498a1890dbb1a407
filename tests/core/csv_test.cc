// core/csv: the record reader (lines, byte offsets, seeking), parse() on top
// of it, quoting, and every error.
#include <gtest/gtest.h>

#include <sstream>

#include "core/csv.h"
#include "core/error.h"

namespace m3ret::csv {
namespace {

// A byte order mark, a CRLF line, a blank line, a quoted field over two lines,
// quotes and another separator inside a field, and a last line without a line end.
const std::string kText =
    "\xEF\xBB\xBF"
    "a,b\r\n"
    "\n"
    "\"x\ny\",2\n"
    "c;d,\"q\"\"\"\n"
    "last";

// The message parse() throws for `text`, or "" when it throws nothing.
std::string parse_error(const std::string& text, char sep = ',') {
  try {
    parse(text, "t.csv", sep);
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

TEST(CsvReader, GivesEachRecordItsFieldsStartLineAndByteOffset) {
  std::istringstream in(kText);
  Reader reader(in, "t.csv");
  std::vector<Record> got;
  for (Record rec; reader.next(rec);) got.push_back(rec);
  ASSERT_EQ(got.size(), 4u);
  const std::vector<std::vector<std::string>> fields = {
      {"a", "b"}, {"x\ny", "2"}, {"c;d", "q\""}, {"last"}};
  const std::vector<int64_t> lines = {1, 3, 5, 6}, offsets = {3, 9, 17, 27};
  for (size_t i = 0; i < got.size(); ++i) {
    EXPECT_EQ(got[i].fields, fields[i]) << i;
    EXPECT_EQ(got[i].line, lines[i]) << i;
    EXPECT_EQ(got[i].offset, offsets[i]) << i;
  }
  EXPECT_EQ(kText.substr(9, 3), "\"x\n");
  EXPECT_EQ(kText.substr(17, 4), "c;d,");
  Record after;
  EXPECT_FALSE(reader.next(after));
}

TEST(CsvReader, SeekResumesAtARecordWithItsLine) {
  std::istringstream in(kText);
  Reader reader(in, "t.csv");
  reader.seek(17, 5);
  Record rec;
  ASSERT_TRUE(reader.next(rec));
  EXPECT_EQ(rec.fields, (std::vector<std::string>{"c;d", "q\""}));
  EXPECT_EQ(rec.line, 5);
  ASSERT_TRUE(reader.next(rec));
  EXPECT_EQ(rec.line, 6);
  EXPECT_EQ(rec.offset, 27);
  reader.seek(9, 3);  // backwards, onto the record whose quoted field spans lines
  ASSERT_TRUE(reader.next(rec));
  EXPECT_EQ(rec.fields, (std::vector<std::string>{"x\ny", "2"}));
  ASSERT_TRUE(reader.next(rec));
  EXPECT_EQ(rec.line, 5);
}

TEST(CsvReader, OffsetsCountFromWhereTheStreamStood) {
  std::istringstream in("skipped\na,b\n\"c\nd\"\ne");
  std::string first;
  std::getline(in, first);
  Reader reader(in, "t.csv");
  Record rec;
  ASSERT_TRUE(reader.next(rec));
  EXPECT_EQ(rec.offset, 0);
  ASSERT_TRUE(reader.next(rec));
  EXPECT_EQ(rec.offset, 4);
  EXPECT_EQ(rec.fields, std::vector<std::string>{"c\nd"});
  ASSERT_TRUE(reader.next(rec));
  EXPECT_EQ(rec.offset, 10);
  EXPECT_EQ(rec.line, 4);
  reader.seek(4, 2);
  ASSERT_TRUE(reader.next(rec));
  EXPECT_EQ(rec.fields, std::vector<std::string>{"c\nd"});
}

TEST(CsvReader, RefusesAStreamItCannotSeek) {
  struct Pipe : std::streambuf {};  // no seekoff: like a pipe
  Pipe pipe;
  std::istream in(&pipe);
  try {
    Reader reader(in, "t.csv");
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_STREQ(e.what(), "t.csv: cannot read it as CSV (the stream is not seekable)");
  }
}

TEST(CsvParse, GivesWhatTheReaderGives) {
  const auto records = parse(kText, "t.csv");
  ASSERT_EQ(records.size(), 4u);
  EXPECT_EQ(records[1].fields, (std::vector<std::string>{"x\ny", "2"}));
  EXPECT_EQ(records[1].line, 3);
  EXPECT_EQ(records[1].offset, 9);
  EXPECT_EQ(records[3].line, 6);
}

TEST(CsvParse, UsesTheSeparatorItIsGiven) {
  const auto records = parse("a;\"b;c\";\r\n\r\nd,e", "t.csv", ';');
  ASSERT_EQ(records.size(), 2u);
  EXPECT_EQ(records[0].fields, (std::vector<std::string>{"a", "b;c", ""}));
  EXPECT_EQ(records[1].fields, std::vector<std::string>{"d,e"});
  EXPECT_EQ(records[1].line, 3);
}

TEST(CsvParse, EmptyAndBlankTextHaveNoRecords) {
  EXPECT_TRUE(parse("", "t.csv").empty());
  EXPECT_TRUE(parse("\xEF\xBB\xBF", "t.csv").empty());
  EXPECT_TRUE(parse("\n\r\n\n", "t.csv").empty());
  EXPECT_EQ(parse("\xEF\xBB", "t.csv")[0].fields, std::vector<std::string>{"\xEF\xBB"});
}

TEST(CsvParse, ErrorsNameTheFileAndLine) {
  // An unterminated quote is reported on the line where its field starts ...
  EXPECT_EQ(parse_error("ok\n\"a\nb\n"), "t.csv:2: unterminated quoted field");
  // ... text after a closing quote on the line where the quote closed.
  EXPECT_EQ(parse_error("ok\n\"a\nb\"x,1\n"),
            "t.csv:3: unexpected character 'x' after a closing quote");
  EXPECT_EQ(parse_error("\"a\";b\n"), "t.csv:1: unexpected character ';' after a closing quote");
  EXPECT_EQ(parse_error("\"a\";b\n", ';'), "");
}

TEST(CsvQuote, QuotesOnlyWhatNeedsIt) {
  EXPECT_EQ(quote("plain"), "plain");
  EXPECT_EQ(quote("a,b"), "\"a,b\"");
  EXPECT_EQ(quote("say \"hi\""), "\"say \"\"hi\"\"\"");
  EXPECT_EQ(quote("two\nlines"), "\"two\nlines\"");
  const std::string tricky = "a,\"b\"\r\nc";
  EXPECT_EQ(parse(quote(tricky) + ",x", "t.csv")[0].fields,
            (std::vector<std::string>{tricky, "x"}));
}

}  // namespace
}  // namespace m3ret::csv
