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

// A file holding only a dataset 'embeddings' of n x d floats whose storage is
// never written (so the file stays small), with the format attributes.
void write_hollow(const std::filesystem::path& path, hsize_t n, hsize_t d, bool chunked) {
  hid_t f = H5Fcreate(path.c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
  hsize_t dims[2] = {n, d};
  hid_t space = H5Screate_simple(2, dims, nullptr);
  hid_t dcpl = H5Pcreate(H5P_DATASET_CREATE);
  hsize_t chunk[2] = {1, std::min<hsize_t>(d, 64)};
  if (chunked) H5Pset_chunk(dcpl, 2, chunk);
  hid_t ds = H5Dcreate2(f, "embeddings", H5T_IEEE_F32LE, space, H5P_DEFAULT, dcpl, H5P_DEFAULT);
  ASSERT_GE(ds, 0);
  hid_t aspace = H5Screate(H5S_SCALAR);
  hid_t str = H5Tcopy(H5T_C_S1);
  H5Tset_size(str, 16);  // "m3ret-embeddings", no terminator
  hid_t a = H5Acreate2(f, "format", str, aspace, H5P_DEFAULT, H5P_DEFAULT);
  const char name[17] = "m3ret-embeddings";
  H5Awrite(a, str, name);
  H5Aclose(a);
  for (auto [attr, v] :
       {std::pair<const char*, int64_t>{"format_version", 1}, {"dim", int64_t(d)}}) {
    hid_t i = H5Acreate2(f, attr, H5T_STD_I64LE, aspace, H5P_DEFAULT, H5P_DEFAULT);
    H5Awrite(i, H5T_NATIVE_INT64, &v);
    H5Aclose(i);
  }
  H5Tclose(str);
  H5Sclose(aspace);
  H5Dclose(ds);
  H5Pclose(dcpl);
  H5Sclose(space);
  H5Fclose(f);
}

// Absurd shapes are refused before anything is allocated, naming the file.
TEST(EmbeddingsFile, ShapesTheFileCannotHoldAreRefusedBeforeAllocation) {
  m3ret::testing::TempDir dir("eval-file");
  for (bool chunked : {false, true}) {
    const auto path = dir / (chunked ? "chunked.h5" : "contiguous.h5");
    write_hollow(path, hsize_t{1} << 34, 4096, chunked);  // 2^48 bytes claimed
    const auto e = error_of([&] { read_embeddings(path); });
    EXPECT_NE(e.find(path.string() + ": dataset 'embeddings' claims 17179869184 x 4096 floats"),
              std::string::npos)
        << e;
    EXPECT_NE(e.find("refusing a shape the file cannot hold"), std::string::npos) << e;
  }
  // An overflowing N * D, and string columns longer than the embeddings.
  write_hollow(dir / "overflow.h5", hsize_t{1} << 62, hsize_t{1} << 20, true);
  EXPECT_NE(error_of([&] { read_embeddings(dir / "overflow.h5"); }).find("more than 2^64"),
            std::string::npos);
  write_embeddings(dir / "long.h5", small_set());
  hid_t f = H5Fopen((dir / "long.h5").c_str(), H5F_ACC_RDWR, H5P_DEFAULT);
  H5Ldelete(f, "ids", H5P_DEFAULT);
  hsize_t huge = hsize_t{1} << 40;
  hid_t space = H5Screate_simple(1, &huge, nullptr);
  hid_t type = H5Tcopy(H5T_C_S1);
  H5Tset_size(type, H5T_VARIABLE);
  hid_t dcpl = H5Pcreate(H5P_DATASET_CREATE);
  hsize_t chunk = 1024;
  H5Pset_chunk(dcpl, 1, &chunk);
  H5Dclose(H5Dcreate2(f, "ids", type, space, H5P_DEFAULT, dcpl, H5P_DEFAULT));
  H5Pclose(dcpl);
  H5Tclose(type);
  H5Sclose(space);
  H5Fclose(f);
  const auto e = error_of([&] { read_embeddings(dir / "long.h5"); });
  EXPECT_NE(e.find("long.h5: dataset 'ids' must have shape [3]"), std::string::npos) << e;
  EXPECT_NE(e.find("[1099511627776]"), std::string::npos) << e;
}

// libhdf5 1.10 loops forever in H5Aread on this mutated file (found by fuzz_embeddings): the
// first read, in a forked child, is stopped at its time limit and the error names the file.
TEST(EmbeddingsFile, AFileOnWhichLibhdf5LoopsIsAnErrorNamingItNotAHang) {
  const auto path =
      m3ret::testing::source_dir() / "tests/fuzz/corpus/embeddings/libhdf5-loops-in-H5Aread.h5";
  ASSERT_TRUE(std::filesystem::is_regular_file(path)) << path;
  EXPECT_EQ(error_of([&] { read_embeddings(path, {1}); }),
            "embeddings file " + path.string() +
                ": reading it with libhdf5 took longer than 1 s; "
                "stopped");
}

TEST(EmbeddingsFile, UnknownModalitiesAndDuplicateIdsAreRefusedNamingFileAndSample) {
  m3ret::testing::TempDir dir("eval-file");
  EmbeddingSet s = small_set();
  s.modality[1] = "pet";
  auto e = error_of([&] { write_embeddings(dir / "pet.h5", s); });
  EXPECT_NE(e.find("pet.h5: sample 1 ('ct-1') has unknown modality 'pet' (one of xray, "),
            std::string::npos)
      << e;
  s = small_set();
  s.ids[2] = s.ids[0];
  e = error_of([&] { write_embeddings(dir / "dup.h5", s); });
  EXPECT_NE(e.find("dup.h5: id 'xray-0' appears twice (samples 0 and 2)"), std::string::npos) << e;
  EXPECT_FALSE(std::filesystem::exists(dir / "dup.h5"));

  // Files written by other tools are checked on reading.
  write_embeddings(dir / "other.h5", small_set());
  hid_t f = H5Fopen((dir / "other.h5").c_str(), H5F_ACC_RDWR, H5P_DEFAULT);
  hid_t ds = H5Dopen2(f, "modality", H5P_DEFAULT);
  hid_t type = H5Tcopy(H5T_C_S1);
  H5Tset_size(type, H5T_VARIABLE);
  H5Tset_cset(type, H5T_CSET_UTF8);
  const char* v[3] = {"xray", "ct", "spect"};
  H5Dwrite(ds, type, H5S_ALL, H5S_ALL, H5P_DEFAULT, v);
  H5Tclose(type);
  H5Dclose(ds);
  H5Fclose(f);
  e = error_of([&] { read_embeddings(dir / "other.h5"); });
  EXPECT_NE(e.find("other.h5: sample 2 ('mri/ß-01') has unknown modality 'spect'"),
            std::string::npos)
      << e;
}

TEST(EmbeddingsFile, BaselinesMustCoverTheSameSamples) {
  const EmbeddingSet a = small_set();
  EXPECT_EQ(error_of([&] { check_same_samples(a, "a.h5", a, "b.h5"); }), "");
  EmbeddingSet b = a;
  b.ids[0] = "elsewhere";
  const auto e = error_of([&] { check_same_samples(a, "a.h5", b, "b.h5"); });
  EXPECT_NE(e.find("b.h5 does not cover the same samples: it lacks 1 (first: xray-0) of the 3 "
                   "samples of a.h5 and has 1 (first: elsewhere) samples that a.h5 lacks"),
            std::string::npos)
      << e;
  EmbeddingSet many;
  many.D = 1;
  for (int i = 0; i < 8; ++i) add(many, "ct", "", {}, {1});
  EmbeddingSet few = many;
  few.ids.resize(1);
  few.N = 1;
  EXPECT_NE(error_of([&] {
              check_same_samples(many, "m.h5", few, "f.h5");
            }).find("lacks 7 (first: ct-1, ct-2, ct-3, ct-4, ct-5, ...) of the 8 samples"),
            std::string::npos);
}

TEST(EmbeddingsFile, LabelsJoinAndSplit) {
  EXPECT_EQ(join_labels({"a", "b c"}), "a|b c");
  EXPECT_EQ(split_labels("a|b c"), (std::vector<std::string>{"a", "b c"}));
  EXPECT_TRUE(split_labels("").empty());
  EXPECT_EQ(split_labels("a||b|"), (std::vector<std::string>{"a", "b"}));
}

}  // namespace
}  // namespace m3ret::eval
