// The embeddings HDF5 file: round trip, atomic writes, and errors that name the file.
#include <gtest/gtest.h>

#include <hdf5.h>

#include <fstream>

#include "core/error.h"
#include "eval/embeddings_file.h"
#include "eval_test_util.h"
#include "test_util.h"

namespace m3ret::eval {
namespace {

using testing::add;

EmbeddingSet small_set() {
  EmbeddingSet s;
  s.D = 3;
  add(s, "xray", "patient-1", {"pneumonia", "effusion"}, {0.1f, -0.2f, 0.3f}, "train");
  add(s, "ct", "", {}, {1e-3f, 2.5f, -7.0f}, "test");
  add(s, "mri", "patient-ü", {"glioma"}, {0, 0, 1}, "");
  s.ids[2] = "mri/ß-01";
  s.attrs = {"/runs/a/checkpoints/step-000000100", 100, true};
  s.attrs.train_modalities = {"xray", "ct"};
  return s;
}

using testing::error_of;

TEST(EmbeddingsFile, RoundTripKeepsEverything) {
  m3ret::testing::TempDir dir("eval-file");
  const auto s = small_set();
  write_embeddings(dir / "sub/emb.h5", s);
  const auto r = read_embeddings(dir / "sub/emb.h5");
  EXPECT_EQ(r.N, 3);
  EXPECT_EQ(r.D, 3);
  EXPECT_EQ(r.X, s.X);  // bit-exact float32
  EXPECT_EQ(r.ids, s.ids);
  EXPECT_EQ(r.modality, s.modality);
  EXPECT_EQ(r.groups, s.groups);
  EXPECT_EQ(r.splits, s.splits);
  EXPECT_EQ(r.labels, s.labels);
  EXPECT_EQ(r.attrs.checkpoint, s.attrs.checkpoint);
  EXPECT_EQ(r.attrs.step, 100);
  EXPECT_TRUE(r.attrs.random_init);
  EXPECT_EQ(r.attrs.train_modalities, (std::vector<std::string>{"xray", "ct"}));
  // Only the final file is left in the folder (the temporary was renamed).
  int files = 0;
  for (auto& e : std::filesystem::directory_iterator(dir / "sub")) {
    (void)e;
    ++files;
  }
  EXPECT_EQ(files, 1);
}

TEST(EmbeddingsFile, EmptySetRoundTrips) {
  m3ret::testing::TempDir dir("eval-file");
  EmbeddingSet s;
  s.D = 8;
  write_embeddings(dir / "empty.h5", s);
  auto r = read_embeddings(dir / "empty.h5");
  EXPECT_EQ(r.N, 0);
  EXPECT_EQ(r.D, 8);
}

TEST(EmbeddingsFile, InvalidSetsAreRefusedAndLeaveNoFile) {
  m3ret::testing::TempDir dir("eval-file");
  auto s = small_set();
  s.labels[0] = {"a|b"};
  auto msg = error_of([&] { write_embeddings(dir / "bad.h5", s); });
  EXPECT_NE(msg.find("a|b"), std::string::npos) << msg;
  EXPECT_NE(msg.find("bad.h5"), std::string::npos) << msg;
  s = small_set();
  s.X[4] = std::nanf("");
  msg = error_of([&] { write_embeddings(dir / "bad.h5", s); });
  EXPECT_NE(msg.find("not finite"), std::string::npos) << msg;
  s = small_set();
  s.groups.pop_back();
  msg = error_of([&] { write_embeddings(dir / "bad.h5", s); });
  EXPECT_NE(msg.find("'groups' has 2 entries"), std::string::npos) << msg;
  EXPECT_TRUE(std::filesystem::is_empty(dir.path()));
}

TEST(EmbeddingsFile, BadFilesGiveErrorsNamingThem) {
  m3ret::testing::TempDir dir("eval-file");
  auto missing = error_of([&] { read_embeddings(dir / "nope.h5"); });
  EXPECT_NE(missing.find("nope.h5"), std::string::npos);
  EXPECT_NE(missing.find("no such file"), std::string::npos) << missing;

  std::ofstream(dir / "text.h5") << "not hdf5 at all";
  auto text = error_of([&] { read_embeddings(dir / "text.h5"); });
  EXPECT_NE(text.find("text.h5: not an HDF5 file"), std::string::npos) << text;

  // Valid file, then tampered with through the HDF5 C API.
  auto tamper = [&](const std::string& name, auto&& edit) {
    auto path = dir / name;
    write_embeddings(path, small_set());
    hid_t f = H5Fopen(path.c_str(), H5F_ACC_RDWR, H5P_DEFAULT);
    ASSERT_GE(f, 0);
    edit(f);
    H5Fclose(f);
  };
  tamper("version.h5", [](hid_t f) {
    hid_t a = H5Aopen(f, "format_version", H5P_DEFAULT);
    int64_t v = 2;
    H5Awrite(a, H5T_NATIVE_INT64, &v);
    H5Aclose(a);
  });
  auto version = error_of([&] { read_embeddings(dir / "version.h5"); });
  EXPECT_NE(version.find("version.h5"), std::string::npos);
  EXPECT_NE(version.find("format_version is 2"), std::string::npos) << version;

  tamper("format.h5", [](hid_t f) { H5Adelete(f, "format"); });
  auto format = error_of([&] { read_embeddings(dir / "format.h5"); });
  EXPECT_NE(format.find("format.h5: missing attribute 'format'"), std::string::npos) << format;

  tamper("ids.h5", [](hid_t f) { H5Ldelete(f, "ids", H5P_DEFAULT); });
  auto ids = error_of([&] { read_embeddings(dir / "ids.h5"); });
  EXPECT_NE(ids.find("missing dataset 'ids'"), std::string::npos) << ids;

  tamper("short.h5", [](hid_t f) {
    H5Ldelete(f, "groups", H5P_DEFAULT);
    hsize_t n = 2;
    hid_t space = H5Screate_simple(1, &n, nullptr);
    hid_t type = H5Tcopy(H5T_C_S1);
    H5Tset_size(type, H5T_VARIABLE);
    hid_t ds = H5Dcreate2(f, "groups", type, space, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    const char* v[2] = {"a", "b"};
    H5Dwrite(ds, type, H5S_ALL, H5S_ALL, H5P_DEFAULT, v);
    H5Dclose(ds);
    H5Tclose(type);
    H5Sclose(space);
  });
  auto shape = error_of([&] { read_embeddings(dir / "short.h5"); });
  EXPECT_NE(shape.find("dataset 'groups' must have shape [3]"), std::string::npos) << shape;
}

TEST(EmbeddingsFile, LabelsJoinAndSplit) {
  EXPECT_EQ(join_labels({"a", "b c"}), "a|b c");
  EXPECT_EQ(split_labels("a|b c"), (std::vector<std::string>{"a", "b c"}));
  EXPECT_TRUE(split_labels("").empty());
  EXPECT_EQ(split_labels("a||b|"), (std::vector<std::string>{"a", "b"}));
}

}  // namespace
}  // namespace m3ret::eval
