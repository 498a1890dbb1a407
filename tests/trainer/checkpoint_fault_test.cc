// Checkpoints on a full disk: a clear error, the previous checkpoint intact,
// no temporary left; stale temporaries of dead writers are removed.
#include <gtest/gtest.h>
#include <sys/mount.h>
#include <sys/wait.h>
#include <unistd.h>
#include <zip.h>

#include <algorithm>
#include <fstream>
#include <functional>
#include <tuple>
#include <vector>

#include <nlohmann/json.hpp>
#include <torch/torch.h>

#include "core/error.h"
#include "core/fs.h"
#include "test_util.h"
#include "model/augment.h"
#include "model/objective.h"
#include "model/torch_archive.h"
#include "trainer/checkpoint.h"
#include "trainer/schedule.h"
#include "trainer/trainer_test_util.h"

namespace m3ret::trainer {
namespace {

namespace stdfs = std::filesystem;

std::vector<std::string> temporaries(const stdfs::path& run) {
  std::vector<std::string> out;
  for (auto& e : stdfs::directory_iterator(run / "checkpoints"))
    if (e.path().filename().string().rfind(".tmp", 0) == 0 ||
        e.path().filename().string().find(".tmp-") != std::string::npos)
      out.push_back(e.path().filename().string());
  return out;
}

struct Fixture {
  Fixture() : model(std::make_shared<Model>(testing::tiny_settings("mae+simdino", 1, 1), nullptr)) {
    opt = make_optimizer(*model, TrainConfig{});
    // One step, so that the optimizer has state to save.
    std::vector<uint64_t> seeds = {sample_seed(1, 0, 0), sample_seed(1, 0, 1)};
    TrainBatch b{torch::rand({2, 1, 1, 16, 16}), seeds, 0};
    model->objective->prepare(b);
    model->objective->compute(b).total.backward();
    opt->step();
  }
  stdfs::path save(const stdfs::path& run, int64_t step) {
    return save_checkpoint(run, {step, step, "[train]\nseed = 1\n"}, *model, opt.get(), 0);
  }
  std::shared_ptr<Model> model;
  std::unique_ptr<torch::optim::Optimizer> opt;
};

// The second checkpoint fails; the first stays the valid, latest one.
void expect_failed_second_checkpoint(Fixture& f, const stdfs::path& run) {
  std::string message;
  try {
    f.save(run, 2);
  } catch (const Error& e) {
    message = e.what();
  }
  EXPECT_NE(message.find("No space left on device"), std::string::npos) << message;
  EXPECT_NE(message.find(run.string()), std::string::npos) << message;
  EXPECT_TRUE(temporaries(run).empty()) << temporaries(run).front();
  EXPECT_FALSE(stdfs::exists(run / "checkpoints" / checkpoint_name(2)));
  EXPECT_EQ(verify_checkpoint(run / "checkpoints" / checkpoint_name(1)), "");
  auto latest = find_latest_valid(run);
  ASSERT_TRUE(latest.has_value());
  EXPECT_EQ(latest->filename(), checkpoint_name(1));
  EXPECT_EQ(load_checkpoint(*latest, nullptr, nullptr, false).step, 1);
}

TEST(CheckpointFault, InjectedDiskFullIsAClearErrorAndKeepsThePreviousCheckpoint) {
  testing::TempDir dir("ckfault");
  Fixture f;
  f.save(dir.path(), 1);
  // Fail at several depths: inside model.pt, inside optimizer.pt, in the small files.
  const auto first = dir / "checkpoints" / checkpoint_name(1);
  const auto model_size = static_cast<int64_t>(stdfs::file_size(first / "model.pt"));
  const auto opt_size = static_cast<int64_t>(stdfs::file_size(first / "optimizer.pt"));
  const auto rng_size = static_cast<int64_t>(stdfs::file_size(first / "rng.pt"));
  for (int64_t budget : {int64_t{100}, model_size + 100, model_size + opt_size + rng_size + 10}) {
    SCOPED_TRACE(budget);
    fs::set_write_budget_for_testing(budget);
    expect_failed_second_checkpoint(f, dir.path());
    fs::set_write_budget_for_testing(-1);
  }
  EXPECT_EQ(f.save(dir.path(), 2).filename(), checkpoint_name(2));  // space again: it works
}

// A real full file system: a small tmpfs (needs the right to mount, as root in
// a container; skipped otherwise, the injected variant above still runs).
TEST(CheckpointFault, FullTmpfsIsAClearErrorAndKeepsThePreviousCheckpoint) {
  testing::TempDir dir("ckfault_tmpfs");
  const auto mnt = dir / "mnt";
  stdfs::create_directories(mnt);
  if (::mount("tmpfs", mnt.c_str(), "tmpfs", 0, "size=8m") != 0)
    GTEST_SKIP() << "cannot mount a tmpfs here (" << std::strerror(errno)
                 << "); the disk-full path is covered by the injected test";
  struct Unmount {
    stdfs::path p;
    ~Unmount() { ::umount2(p.c_str(), MNT_DETACH); }
  } unmount{mnt};
  Fixture f;
  const auto run = mnt / "run";
  f.save(run, 1);
  // Fill the rest, then free a little so the next checkpoint starts and fails midway.
  {
    std::ofstream filler(mnt / "filler", std::ios::binary);
    std::vector<char> block(1 << 16, 'x');
    while (filler.write(block.data(), static_cast<std::streamsize>(block.size()))) filler.flush();
  }
  stdfs::resize_file(mnt / "filler", stdfs::file_size(mnt / "filler") - (64 << 10));
  expect_failed_second_checkpoint(f, run);
}

TEST(CheckpointFault, StaleTemporariesOfDeadWritersAreRemoved) {
  testing::TempDir dir("ckstale");
  const auto ck = dir / "checkpoints";
  char buf[256] = {};
  ASSERT_EQ(gethostname(buf, sizeof(buf) - 1), 0);
  std::string host(buf);
  std::replace(host.begin(), host.end(), '-', '_');
  pid_t dead = fork();
  if (dead == 0) _exit(0);
  ASSERT_GT(dead, 0);
  waitpid(dead, nullptr, 0);
  const std::string mine = fmt::format(".tmp-step-000000003-{}-{}", host, getpid());
  const std::string gone = fmt::format(".tmp-step-000000002-{}-{}", host, dead);
  const std::string elsewhere = ".tmp-step-000000002-otherhost-1";
  const std::string old_style = fmt::format(".tmp-step-000000001-{}", dead);
  for (const auto& n : {mine, gone, elsewhere, old_style}) {
    stdfs::create_directories(ck / n);
    std::ofstream(ck / n / "model.pt") << "partial";
  }
  EXPECT_EQ(remove_stale_temporaries(dir.path()), 3);
  EXPECT_TRUE(stdfs::exists(ck / mine));  // a live writer's folder stays
  EXPECT_FALSE(stdfs::exists(ck / gone));
  EXPECT_FALSE(stdfs::exists(ck / elsewhere));
  EXPECT_FALSE(stdfs::exists(ck / old_style));
  EXPECT_EQ(remove_stale_temporaries(dir / "missing"), 0);
}

// A crafted state.json (with a matching checksum) is refused before it is
// used: the error names the file and the key.
TEST(CheckpointFault, CraftedStateIsRefusedNamingTheFileAndTheKey) {
  testing::TempDir dir("ckcrafted");
  Fixture f;
  const auto ck = f.save(dir.path(), 3);
  const std::string good = fs::read_file(ck / "state.json");
  auto craft = [&](const std::string& key, const nlohmann::json& value) {
    auto st = nlohmann::json::parse(good);
    st[key] = value;
    fs::write_atomic(ck / "state.json", st.dump());
    auto manifest = nlohmann::json::parse(fs::read_file(ck / "manifest.json"));
    manifest["files"]["state.json"] = fs::checksum_file(ck / "state.json");
    fs::write_atomic(ck / "manifest.json", manifest.dump());
    EXPECT_EQ(verify_checkpoint(ck), "");  // the checksums agree: only the content is wrong
  };
  auto expect_refused = [&](const std::string& key, const std::string& detail) {
    try {
      load_checkpoint(ck, nullptr, nullptr, false);
      ADD_FAILURE() << "accepted " << key;
    } catch (const Error& e) {
      const std::string m = e.what();
      EXPECT_NE(m.find((ck / "state.json").string()), std::string::npos) << m;
      EXPECT_NE(m.find("'" + key + "'"), std::string::npos) << m;
      EXPECT_NE(m.find(detail), std::string::npos) << m;
    }
  };
  craft("sampler_position", int64_t{1} << 50);
  expect_refused("sampler_position", "out of range");
  craft("sampler_position", -1);
  expect_refused("sampler_position", "out of range");
  craft("step", "3");
  expect_refused("step", "not an integer");
  craft("step", 4);  // state and manifest disagree
  try {
    load_checkpoint(ck, nullptr, nullptr, false);
    ADD_FAILURE() << "accepted a step the manifest does not record";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("manifest.json"), std::string::npos) << e.what();
  }
  craft("step", 3);
  EXPECT_EQ(load_checkpoint(ck, nullptr, nullptr, false).sampler_position, 3);
}

// JSON of the wrong types, or names outside the folder, in a checkpoint's manifest or state:
// a reason or an m3ret::Error naming the file, never a json::type_error or filesystem_error.
// A model.pt whose pickle names a class it has not defined (as fuzz_checkpoint found):
// LibTorch's unpickler throws std::out_of_range, which becomes an Error naming the file.
TEST(CheckpointFault, AMalformedPickleIsAnErrorNamingModelPt) {
  testing::TempDir dir("ckpickle");
  Fixture f;
  const auto ck = f.save(dir.path(), 3);
  std::string pt = fs::read_file(ck / "model.pt");
  const std::string name = "___torch_mangle_0\n";
  const size_t at = pt.find(name);
  ASSERT_NE(at, std::string::npos);
  pt[at + name.size() - 2] = '9';  // a class defined later, or never
  fs::write_atomic(ck / "model.pt", pt);
  try {
    load_checkpoint(ck, f.model.get(), nullptr, false);
    ADD_FAILURE() << "accepted a malformed model.pt";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find((ck / "model.pt").string()), std::string::npos)
        << e.what();
  }
}

// Replaces the entry of the zip archive `file` whose name ends with `suffix` by `bytes`, stored
// uncompressed as LibTorch stores its records; libzip writes valid CRCs.
void replace_entry(const stdfs::path& file, const std::string& suffix, const std::string& bytes) {
  int err = 0;
  zip_t* z = zip_open(file.c_str(), 0, &err);
  ASSERT_NE(z, nullptr) << err;
  zip_int64_t index = -1;
  for (zip_int64_t i = 0; i < zip_get_num_entries(z, 0); ++i) {
    const std::string name = zip_get_name(z, static_cast<zip_uint64_t>(i), 0);
    if (name.size() >= suffix.size() &&
        name.compare(name.size() - suffix.size(), suffix.size(), suffix) == 0)
      index = i;
  }
  ASSERT_GE(index, 0) << suffix;
  zip_source_t* src = zip_source_buffer(z, bytes.data(), bytes.size(), 0);
  ASSERT_EQ(zip_file_replace(z, static_cast<zip_uint64_t>(index), src, 0), 0) << zip_strerror(z);
  ASSERT_EQ(zip_set_file_compression(z, static_cast<zip_uint64_t>(index), ZIP_CM_STORE, 0), 0);
  ASSERT_EQ(zip_close(z), 0);
}

std::string entry(const stdfs::path& file, const std::string& suffix) {
  int err = 0;
  zip_t* z = zip_open(file.c_str(), ZIP_RDONLY, &err);
  std::string out;
  for (zip_int64_t i = 0; z && i < zip_get_num_entries(z, 0); ++i) {
    zip_stat_t st;
    zip_stat_index(z, static_cast<zip_uint64_t>(i), 0, &st);
    const std::string name = st.name;
    if (name.size() < suffix.size() ||
        name.compare(name.size() - suffix.size(), suffix.size(), suffix) != 0)
      continue;
    zip_file_t* f = zip_fopen_index(z, static_cast<zip_uint64_t>(i), 0);
    out.resize(st.size);
    zip_fread(f, out.data(), st.size);
    zip_fclose(f);
  }
  if (z) zip_discard(z);
  return out;
}

// The error of load_checkpoint(ck) reading the model into `f`'s, or "" if it loads.
std::string model_load_error(Fixture& f, const stdfs::path& ck) {
  try {
    load_checkpoint(ck, f.model.get(), nullptr, false);
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

// A pickled string claiming 25 GB in a 50 KB model.pt (as fuzz_checkpoint found: LibTorch's
// unpickler allocated what it claimed) is refused before LibTorch reads the archive.
TEST(CheckpointFault, APickleClaimingMoreBytesThanItsRecordIsRefusedBeforeLoading) {
  testing::TempDir dir("ckpicklelen");
  Fixture f;
  const auto ck = f.save(dir.path(), 3);
  const auto pt = ck / "model.pt";
  EXPECT_EQ(model_load_error(f, ck), "");
  std::string pkl = entry(pt, "/data.pkl");
  ASSERT_EQ(pkl.substr(0, 2), std::string("\x80\x02"));
  // BINUNICODE8 of 0x5f5f68630 bytes right after PROTO 2.
  pkl.insert(2, std::string("\x8d\x30\x86\xf6\xf5\x05\0\0\0", 9) + "abc");
  replace_entry(pt, "/data.pkl", pkl);
  const std::string why = model_load_error(f, ck);
  EXPECT_NE(why.find(pt.string() + ": not a valid LibTorch archive: pickle record"),
            std::string::npos)
      << why;
  EXPECT_NE(why.find("declares 25601410608 bytes"), std::string::npos) << why;
  EXPECT_EQ(why.find('\n'), std::string::npos) << why;
}

// `zip` with the uncompressed size of its first entry whose name ends with `suffix` set to
// 2^31 - 1, in its local header and in the central directory (the same in both).
std::string with_entry_size_2gb(std::string zip, const std::string& suffix) {
  for (const auto& [signature, name_len_at, name_at, size_at] :
       {std::tuple{std::string("PK\3\4"), 26, 30, 22},
        std::tuple{std::string("PK\1\2"), 28, 46, 24}}) {
    size_t at = zip.find(signature);
    for (; at != std::string::npos; at = zip.find(signature, at + 1)) {
      const size_t name_len = static_cast<unsigned char>(zip[at + name_len_at]);
      const std::string name = zip.substr(at + name_at, name_len);
      if (name.size() >= suffix.size() &&
          name.compare(name.size() - suffix.size(), suffix.size(), suffix) == 0)
        break;
    }
    if (at == std::string::npos) ADD_FAILURE() << "no entry *" << suffix;
    if (at != std::string::npos) zip.replace(at + size_at, 4, std::string("\xff\xff\xff\x7f", 4));
  }
  return zip;
}

// Zip entries declaring 2 GB (LibTorch allocates what an entry declares, whatever the file holds),
// stored (libzip finds model.pt inconsistent) or deflated (more than deflate can expand), and a
// tensor whose shape is not the model's are refused, naming the file.
TEST(CheckpointFault, OversizedZipEntriesOrATensorOfAnotherShapeAreRefused) {
  testing::TempDir dir("ckzipentry");
  Fixture f;
  const auto ck = f.save(dir.path(), 3);
  const auto pt = ck / "model.pt";
  const std::string original = fs::read_file(pt);
  const std::string invalid = pt.string() + ": not a valid LibTorch archive: ";
  fs::write_atomic(pt, with_entry_size_2gb(original, "/data/0"));
  EXPECT_EQ(model_load_error(f, ck),
            invalid + "not a readable zip archive (Zip archive inconsistent)");
  // A deflated entry (LibTorch deflates its code/ sources) whose headers agree on 2 GB.
  const auto deflated = dir.path() / "deflated.pt";
  int err = 0;
  zip_t* z = zip_open(deflated.c_str(), ZIP_CREATE | ZIP_TRUNCATE, &err);
  ASSERT_NE(z, nullptr);
  const std::string source(5000, 'x');
  ASSERT_GE(zip_file_add(z, "archive/code/x.py",
                         zip_source_buffer(z, source.data(), source.size(), 0), 0),
            0);
  ASSERT_EQ(zip_close(z), 0);
  fs::write_atomic(deflated, with_entry_size_2gb(fs::read_file(deflated), ".py"));
  try {
    check_torch_archive(deflated);
    ADD_FAILURE() << "accepted 2 GB from a deflated entry of a few bytes";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(deflated.string() +
                                         ": not a valid LibTorch archive: entry "
                                         "'archive/code/x.py' declares 2147483647 bytes from "
                                         "deflated "),
              std::string::npos)
        << e.what();
  }

  fs::write_atomic(pt, original);
  torch::nn::Linear small(4, 3), large(4, 5);
  const auto linear = dir.path() / "linear.pt";
  torch::save(small, linear.string());
  torch::serialize::InputArchive archive;
  load_torch_archive(archive, linear);
  try {
    load_module(*large, archive, linear);
    ADD_FAILURE() << "loaded a [3, 4] weight into a [5, 4] one";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(linear.string() + ": tensor 'weight' is Float [3, 4], "
                                                           "the model expects Float [5, 4]"),
              std::string::npos)
        << e.what();
  }
}

// LibTorch's TorchScript importer dereferences a wild pointer on this model.pt's mutated code/
// source (found by fuzz_checkpoint: the model.pt part of its corpus file): the archive is read in
// a forked child first, whose crash is an error naming the file, not the end of the process.
TEST(CheckpointFault, AModelPtOnWhichLibTorchCrashesIsAnErrorNamingIt) {
  testing::TempDir dir("cksegv");
  const std::string input = fs::read_file(
      testing::source_dir() / "tests/fuzz/corpus/checkpoint/torchscript-importer-segv.ckpt");
  const std::string separator = "\n--m3ret-checkpoint-file--\n";  // state, manifest, model.pt
  size_t begin = input.find(separator);
  ASSERT_NE(begin, std::string::npos);
  begin = input.find(separator, begin + separator.size());
  ASSERT_NE(begin, std::string::npos);
  begin += separator.size();
  const auto pt = dir.path() / "model.pt";
  fs::write_atomic(pt, input.substr(begin, input.find(separator, begin) - begin));
  torch::serialize::InputArchive archive;
  try {
    load_torch_archive(archive, pt);
    ADD_FAILURE() << "loaded the mutated model.pt";
  } catch (const Error& e) {
    // The mutated source makes LibTorch follow a wild pointer: in the child it crashes, or, with
    // another heap layout, LibTorch reads garbage and refuses it. Either way, an error naming it.
    EXPECT_EQ(std::string(e.what()).rfind(pt.string() + ": not a valid LibTorch archive: ", 0), 0u)
        << e.what();
  }
}

TEST(CheckpointFault, CraftedManifestAndStateTypesAreRefusedNotThrownAsJsonErrors) {
  testing::TempDir dir("ckcraftedtypes");
  Fixture f;
  const auto ck = f.save(dir.path(), 3);
  const auto manifest = nlohmann::json::parse(fs::read_file(ck / "manifest.json"));
  auto verify_with = [&](const std::function<void(nlohmann::json&)>& edit) {
    auto m = manifest;
    edit(m);
    fs::write_atomic(ck / "manifest.json", m.dump());
    return verify_checkpoint(ck);
  };
  EXPECT_NE(verify_with([](auto& m) { m = nlohmann::json::array({1}); }), "");
  EXPECT_NE(verify_with([](auto& m) { m["format"] = 7; }), "");
  EXPECT_NE(verify_with([](auto& m) { m["version"] = "1"; }), "");
  EXPECT_NE(verify_with([](auto& m) { m["files"] = "model.pt"; }), "");
  EXPECT_NE(verify_with([](auto& m) { m["files"]["model.pt"] = 12; }), "");
  EXPECT_NE(verify_with([](auto& m) {
              m["files"]["../../state.json"] = "crc32:0";
            }).find("not a file of the checkpoint folder"),
            std::string::npos);
  EXPECT_NE(verify_with([](auto& m) { m["files"][std::string(300, 'x')] = "crc32:0"; }), "");
  EXPECT_EQ(verify_with([](auto&) {}), "");
  auto st = nlohmann::json::parse(fs::read_file(ck / "state.json"));
  st["format"] = 1;
  fs::write_atomic(ck / "state.json", st.dump());
  try {
    load_checkpoint(ck, nullptr, nullptr, false);
    ADD_FAILURE() << "accepted a numeric format";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find((ck / "state.json").string()), std::string::npos);
  }
}

}  // namespace
}  // namespace m3ret::trainer
