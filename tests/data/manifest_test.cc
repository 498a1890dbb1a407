// Manifest CSV: parsing, RFC 4180 quoting, validation errors (file + line),
// writing, sample ids.
#include <fstream>

#include <fmt/format.h>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "core/error.h"
#include "data/manifest.h"
#include "data/sample.h"
#include "test_util.h"

namespace m3ret::data {
namespace {

namespace stdfs = std::filesystem;
using ::testing::HasSubstr;

stdfs::path write_text(const stdfs::path& p, const std::string& text) {
  std::ofstream(p, std::ios::binary) << text;
  return p;
}

// The message of the m3ret::Error that f throws ("" when none).
template <class F>
std::string error_of(F f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

TEST(DataModality, KnownNames) {
  for (const auto& m : modality_names()) EXPECT_TRUE(is_modality(m)) << m;
  EXPECT_FALSE(is_modality("pet"));
  EXPECT_FALSE(is_modality(""));
  EXPECT_FALSE(is_modality("CT"));
}

TEST(DataManifest, ReadsRowsResolvesPathsAndQuoting) {
  testing::TempDir dir("manifest");
  auto csv = write_text(dir / "m.csv",
                        "\xEF\xBB\xBFpath,modality,labels,group,split\r\n"
                        "a/x.png,xray,nodule|mass,p1,train\r\n"
                        "\"b,c/\"\"q\"\".nii.gz\",ct,,p2,test\r\n"
                        "\r\n"
                        "/abs/v.mp4,endoscopy,\"polyp\",\"g\nh\",\n");
  auto rows = read_manifest(csv);
  ASSERT_EQ(rows.size(), 3u);
  EXPECT_EQ(rows[0].path, dir.path() / "a/x.png");
  EXPECT_EQ(rows[0].modality, "xray");
  EXPECT_EQ(rows[0].labels, (std::vector<std::string>{"nodule", "mass"}));
  EXPECT_EQ(rows[0].group, "p1");
  EXPECT_EQ(rows[0].split, "train");
  EXPECT_EQ(rows[0].line, 2);
  EXPECT_EQ(rows[1].path, dir.path() / "b,c/\"q\".nii.gz");
  EXPECT_TRUE(rows[1].labels.empty());
  EXPECT_EQ(rows[1].line, 3);
  EXPECT_EQ(rows[2].path, stdfs::path("/abs/v.mp4"));
  EXPECT_EQ(rows[2].group, "g\nh");
  EXPECT_EQ(rows[2].split, "");
  EXPECT_EQ(rows[2].line, 5);
}

TEST(DataManifest, HeaderColumnsInAnyOrder) {
  testing::TempDir dir("manifest");
  auto csv =
      write_text(dir / "m.csv", "split,group,labels,modality,path\ntest,p9,cyst,mri,v.nii\n");
  auto rows = read_manifest(csv);
  ASSERT_EQ(rows.size(), 1u);
  EXPECT_EQ(rows[0].modality, "mri");
  EXPECT_EQ(rows[0].path, dir.path() / "v.nii");
  EXPECT_EQ(rows[0].split, "test");
}

TEST(DataManifest, ErrorsNameFileAndLine) {
  testing::TempDir dir("manifest");
  const std::string header = "path,modality,labels,group,split\n";
  struct Case {
    std::string text, expect;
  };
  std::vector<Case> cases = {
      {"", "empty manifest"},
      {"path,modality,labels,group\nx.png,xray,,g,train\n", ":1: header lacks column 'split'"},
      {"path,modality,labels,group,split,extra\n", ":1: bad header column 'extra'"},
      {"path,path,labels,group,split\n", ":1: bad header column 'path'"},
      {header + "x.png,xray,,g,train\ny.png,xray,,g\n", ":3: expected 5 fields"},
      {header + "x.png,xray,,g,train,more\n", ":2: expected 5 fields"},
      {header + ",xray,,g,train\n", ":2: empty path"},
      {header + "x.png,pet,,g,train\n", ":2: unknown modality 'pet'"},
      {header + "x.png,xray,,g,later\n", ":2: unknown split 'later'"},
      {header + "\"x.png,xray,,g,train\n", ":2: unterminated quoted field"},
      {header + "\"x\"y.png,xray,,g,train\n", ":2: unexpected character 'y' after a closing quote"},
      {header + "a.png,xray,,g,train\nb.png,xray,,g,\n./a.png,ct,,h,\n",
       ":4: duplicate path ./a.png (also on line 2)"},
  };
  for (size_t i = 0; i < cases.size(); ++i) {
    auto csv = write_text(dir / ("bad" + std::to_string(i) + ".csv"), cases[i].text);
    std::string msg = error_of([&] { read_manifest(csv); });
    EXPECT_THAT(msg, HasSubstr(csv.string())) << "case " << i;
    EXPECT_THAT(msg, HasSubstr(cases[i].expect)) << "case " << i;
  }
  EXPECT_THAT(error_of([&] { read_manifest(dir / "absent.csv"); }), HasSubstr("does not exist"));
}

TEST(DataManifest, CheckPathsReportsMissingFiles) {
  testing::TempDir dir("manifest");
  write_text(dir / "here.png", "x");
  auto csv = write_text(
      dir / "m.csv", "path,modality,labels,group,split\nhere.png,xray,,g,\nmissing.png,xray,,g,\n");
  EXPECT_EQ(read_manifest(csv).size(), 2u);  // not checked by default
  std::string msg = error_of([&] { read_manifest(csv, true); });
  EXPECT_THAT(msg, HasSubstr(csv.string() + ":3: path"));
  EXPECT_THAT(msg, HasSubstr("missing.png does not exist"));
}

TEST(DataManifest, WriteThenReadRoundTrips) {
  testing::TempDir dir("manifest");
  std::vector<ManifestRow> rows(3);
  rows[0].path = dir / "sub" / "a b,c.png";
  rows[0].modality = "ultrasound";
  rows[0].labels = {"benign", "x\"y"};
  rows[0].group = "p,1";
  rows[0].split = "train";
  rows[1].path = "/elsewhere/vol.nii.gz";
  rows[1].modality = "ct";
  rows[1].group = "p2";
  rows[1].split = "test";
  rows[2].path = dir / "series";
  rows[2].modality = "mri";
  rows[2].labels = {"cyst"};
  auto csv = dir / "out.csv";
  write_manifest(csv, rows);
  std::ifstream in(csv);
  std::string first, second;
  std::getline(in, first);
  std::getline(in, second);
  EXPECT_EQ(first, "path,modality,labels,group,split");
  EXPECT_EQ(second, "\"sub/a b,c.png\",ultrasound,\"benign|x\"\"y\",\"p,1\",train");  // relative
  auto back = read_manifest(csv);
  ASSERT_EQ(back.size(), rows.size());
  for (size_t i = 0; i < rows.size(); ++i) {
    EXPECT_EQ(back[i].path, rows[i].path);
    EXPECT_EQ(back[i].modality, rows[i].modality);
    EXPECT_EQ(back[i].labels, rows[i].labels);
    EXPECT_EQ(back[i].group, rows[i].group);
    EXPECT_EQ(back[i].split, rows[i].split);
  }
  // No temporary files are left next to it.
  int files = 0;
  for (const auto& e : stdfs::directory_iterator(dir.path())) files += e.is_regular_file();
  EXPECT_EQ(files, 1);
}

// The optional dataset column: read in any position, absent = "", written when a row has one.
TEST(DataManifest, OptionalDatasetColumn) {
  testing::TempDir dir("manifest");
  auto rows = read_manifest(write_text(dir / "d.csv",
                                       "dataset,path,modality,labels,group,split\n"
                                       "chexpert,a.png,xray,,g,train\n"
                                       ",b.png,xray,,g,\n"));
  ASSERT_EQ(rows.size(), 2u);
  EXPECT_EQ(rows[0].dataset, "chexpert");
  EXPECT_EQ(rows[1].dataset, "");
  EXPECT_EQ(read_manifest(
                write_text(dir / "n.csv", "path,modality,labels,group,split\nc.png,xray,,,\n"))[0]
                .dataset,
            "");
  write_manifest(dir / "out.csv", rows);
  std::ifstream in(dir / "out.csv");
  std::string header, first;
  std::getline(in, header);
  std::getline(in, first);
  EXPECT_EQ(header, "path,modality,labels,group,split,dataset");
  EXPECT_EQ(first, "a.png,xray,,g,train,chexpert");
  EXPECT_EQ(read_manifest(dir / "out.csv")[0].dataset, "chexpert");
  const std::string err = error_of([&] {
    read_manifest(write_text(dir / "e.csv",
                             "path,modality,labels,group,split,dataset\n"
                             "a.png,xray,,g,train\n"));
  });
  EXPECT_THAT(err, HasSubstr(":2: expected 6 fields (path,modality,labels,group,split,dataset)"));
}

// scan_manifest streams the rows read_manifest returns, with where each
// record starts; a cursor seeks there and reads the same rows again.
TEST(DataManifest, ScanReportsPositionsACursorSeeksTo) {
  testing::TempDir dir("manifest");
  const std::string header = "\xEF\xBB\xBFpath,modality,labels,group,split\r\n";
  auto csv = write_text(dir / "m.csv", header +
                                           "a/x.png,xray,nodule|mass,p1,train\r\n"
                                           "\r\n"
                                           "\"b,c/\"\"q\"\".nii.gz\",ct,,\"g\nh\",test\r\n"
                                           "v.mp4,endoscopy,polyp,p3,\n"
                                           "w.png,ultrasound,,p4,val");  // no final line end
  const auto want = read_manifest(csv);
  ASSERT_EQ(want.size(), 4u);
  std::vector<ManifestRow> rows;
  std::vector<RowPosition> at;
  const int64_t n = scan_manifest(csv, [&](const ManifestRow& r, const RowPosition& p) {
    rows.push_back(r);
    at.push_back(p);
  });
  EXPECT_EQ(n, 4);
  ASSERT_EQ(rows.size(), 4u);
  EXPECT_EQ(at[0].offset, int64_t(header.size()));
  EXPECT_EQ(at[0].line, 2);
  EXPECT_EQ(at[1].offset, int64_t(header.size() + 37));  // after row 1 and the blank line
  EXPECT_EQ(at[1].line, 4);
  EXPECT_EQ(at[2].line, 6);  // the quoted field spans lines 4 and 5
  EXPECT_EQ(at[3].line, 7);
  ManifestCursor cursor(csv);
  ManifestRow row;
  RowPosition pos;
  for (size_t i = rows.size(); i-- > 0;) {  // any order
    EXPECT_EQ(rows[i].path, want[i].path);
    EXPECT_EQ(rows[i].labels, want[i].labels);
    EXPECT_EQ(rows[i].group, want[i].group);
    EXPECT_EQ(rows[i].line, want[i].line);
    cursor.seek(at[i]);
    ASSERT_TRUE(cursor.next(row, &pos));
    EXPECT_EQ(row.path, want[i].path);
    EXPECT_EQ(row.modality, want[i].modality);
    EXPECT_EQ(row.split, want[i].split);
    EXPECT_EQ(row.line, want[i].line);
    EXPECT_EQ(pos.offset, at[i].offset);
  }
  cursor.seek(at[3]);
  ASSERT_TRUE(cursor.next(row));
  EXPECT_FALSE(cursor.next(row));  // after the last row
  ManifestCursor from_start(csv);  // the header is read; the first row comes first
  ASSERT_TRUE(from_start.next(row));
  EXPECT_EQ(row.path, want[0].path);
}

// Streaming finds the error that parsing the whole file first, then checking
// the rows in order, finds: a malformed quote anywhere before any row or
// header error; a duplicate before a later bad row; a bad row before a later
// duplicate. scan_manifest and read_manifest give the same message.
TEST(DataManifest, StreamedChecksReportTheFirstErrorOfTheWholeFile) {
  testing::TempDir dir("manifest");
  const std::string header = "path,modality,labels,group,split\n";
  struct Case {
    std::string text, expect;
  };
  std::vector<Case> cases = {
      {header + "a.png,xray,,g,\nb.png,xray,,g,\n./a.png,xray,,g,\nc.png,pet,,g,\n",
       ":4: duplicate path ./a.png (also on line 2)"},
      {header + "c.png,pet,,g,\na.png,xray,,g,\na.png,xray,,g,\n", ":2: unknown modality 'pet'"},
      {header + "a.png,xray,,g,\na.png,xray,,g\n", ":3: expected 5 fields"},
      {header + "c.png,pet,,g,\nd.png,xray,,g,\n\"e.png,xray,,g,\n",
       ":4: unterminated quoted field"},
      {"path,modality\nx.png,xray\n\n\"x\"y,z\n", ":4: unexpected character 'y'"},
      {"\n\r\n", ":1: empty manifest"},
  };
  for (size_t i = 0; i < cases.size(); ++i) {
    auto csv = write_text(dir / ("bad" + std::to_string(i) + ".csv"), cases[i].text);
    const std::string msg = error_of([&] { read_manifest(csv); });
    EXPECT_THAT(msg, HasSubstr(csv.string() + cases[i].expect)) << "case " << i;
    EXPECT_EQ(error_of([&] { scan_manifest(csv, [](const ManifestRow&, const RowPosition&) {}); }),
              msg)
        << "case " << i;
  }
}

// Duplicates are found by a hash of the resolved path and confirmed by
// reading those rows again: both lines are named, among thousands.
TEST(DataManifest, DuplicatePathAmongManyRowsNamesBothLines) {
  testing::TempDir dir("manifest");
  std::string text = "path,modality,labels,group,split\n";
  for (int i = 0; i < 5000; ++i) text += fmt::format("d/r{}.png,xray,,g{},\n", i, i % 7);
  const auto ok = write_text(dir / "ok.csv", text);
  EXPECT_EQ(scan_manifest(ok, [](const ManifestRow&, const RowPosition&) {}), 5000);
  text += "d/x/../r17.png,xray,,g,\nd/r4000.png,xray,,g,\n";
  const auto bad = write_text(dir / "bad.csv", text);
  EXPECT_THAT(error_of([&] { read_manifest(bad); }),
              HasSubstr(bad.string() + ":5002: duplicate path d/x/../r17.png (also on line 19)"));
}

TEST(DataManifest, WriteRejectsBadRows) {
  testing::TempDir dir("manifest");
  ManifestRow r;
  r.path = dir / "a.png";
  r.modality = "photo";
  EXPECT_THAT(error_of([&] { write_manifest(dir / "m.csv", {r}); }),
              HasSubstr("unknown modality 'photo'"));
  r.modality = "xray";
  r.labels = {"a|b"};
  EXPECT_THAT(error_of([&] { write_manifest(dir / "m.csv", {r}); }), HasSubstr("contains '|'"));
  EXPECT_FALSE(stdfs::exists(dir / "m.csv"));
}

TEST(DataManifest, SampleIdIsPathRelativeToManifestFolder) {
  ManifestRow r;
  r.path = "/data/set/ct/p1/vol.nii.gz";
  EXPECT_EQ(sample_id(r, "/data/set"), "ct/p1/vol.nii.gz");
  EXPECT_EQ(sample_id(r, "/data/set/"), "ct/p1/vol.nii.gz");
  EXPECT_EQ(sample_id(r, "/other"), "/data/set/ct/p1/vol.nii.gz");
  r.path = "rel/x.png";
  EXPECT_EQ(sample_id(r, "/data/set"), "rel/x.png");
}

}  // namespace
}  // namespace m3ret::data
