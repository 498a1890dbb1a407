// Shard files (sharding/shard_format.h), read as training's loader and `m3ret embed` read them:
// ShardSet::open over a shard folder, then every sample (its centre clip, and for videos the
// first and the last clip), each read checking the chunk against its recorded checksum; then
// as a resuming `m3ret shard` checks a shard it keeps (read_shard_metadata and
// verify_shard_pixels). Each shard's metadata is read in a forked child first, here with a 2 s
// time limit; the coverage that guides the fuzzer is that of the in-process reads that follow.
// The first byte of an input picks one of three fixed, valid index.json files (2D x-rays,
// videos drawn as clips, CT volumes); the other bytes are the one shard file that index lists.
// Seeds: shards written by ShardWriter (M3RET_FUZZ_WRITE_SEEDS, fuzz_util.h), each behind the
// byte of its index, and the fixed findings (docs/reliability.md, "Fuzzers").
#include <cstdint>
#include <fstream>
#include <iterator>
#include <memory>
#include <string>
#include <vector>

#include "fuzz_util.h"
#include "sharding/shard_format.h"
#include "sharding/shard_index.h"
#include "sharding/shard_set.h"
#include "sharding/shard_writer.h"

namespace {

namespace stdfs = std::filesystem;
namespace sh = m3ret::sharding;

// A shard folder's kind: the one sample group it holds, its stored shape and clip, and samples.
struct Kind {
  const char* group;
  const char* modality;
  int64_t C, T, H, W;
  int64_t clip_frames, clip_stride;
  int64_t count;
};
constexpr Kind kKinds[] = {
    {"xray", "xray", 1, 1, 8, 8, 0, 1, 3},
    {"endoscopy", "endoscopy", 3, 6, 4, 4, 2, 2, 2},
    {"ct", "ct", 1, 4, 6, 6, 0, 1, 2},
};
constexpr size_t kNumKinds = sizeof(kKinds) / sizeof(kKinds[0]);

// The child that reads a shard's metadata first (sharding/shard_set.h) gets 2 s, well under
// run.sh's 10 s per input.
const sh::ShardReadLimits kLimits{2};

std::string shard_file(const Kind& k) { return std::string(k.group) + "/shard-00000.h5"; }

// Writes a valid shard of kind k into dir at deflate level `compression`, with `rejects` rejected
// inputs recorded beside its samples.
void write_shard(const stdfs::path& dir, const Kind& k, int compression, int rejects) {
  sh::ShardHeader h{k.group, compression, 0, 0, "fuzz seed"};
  h.clip_frames = k.clip_frames;
  h.clip_stride = k.clip_stride;
  sh::ShardWriter w(dir / shard_file(k), h);
  for (int64_t i = 0; i < k.count; ++i) {
    m3ret::data::Sample s;
    s.C = k.C, s.T = k.T, s.H = k.H, s.W = k.W;
    s.modality = k.modality;
    s.id = "p" + std::to_string(i) + "/s" + std::to_string(i);
    s.labels = i % 2 ? std::vector<std::string>{"a", "b"} : std::vector<std::string>{};
    s.group = "p" + std::to_string(i);
    s.split = i % 2 ? "test" : "train";
    s.source = "images/" + std::to_string(i) + ".png";
    s.dataset = i % 2 ? "" : "demo";
    for (int64_t j = 0; j < s.numel(); ++j) s.pixels.push_back(static_cast<uint8_t>(j * 7 + i));
    w.append(s);
  }
  for (int r = 0; r < rejects; ++r) w.add_reject("bad/" + std::to_string(r) + ".png", "corrupt");
  w.commit();
}

std::string read_bytes(const stdfs::path& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

// scratch/kind-K/: the fixed index.json of kind K (made once from a valid shard, as `m3ret
// shard` makes it), beside which each input's shard file is written.
stdfs::path kind_dir(size_t k) {
  static const std::vector<stdfs::path> dirs = [] {
    std::vector<stdfs::path> out;
    for (size_t i = 0; i < kNumKinds; ++i) {
      const stdfs::path dir = m3ret::fuzz::scratch_dir() / ("kind-" + std::to_string(i));
      write_shard(dir, kKinds[i], 4, 0);
      sh::write_index(dir, sh::build_index({sh::describe_shard(dir, shard_file(kKinds[i]))}, {}));
      out.push_back(dir);
    }
    return out;
  }();
  return dirs[k];
}

// Reads every sample of every group of the set, as the loader and `m3ret embed` do.
void read_all(const sh::ShardSet& set) {
  std::vector<uint8_t> clip;
  for (const auto& mi : set.modalities()) {
    for (int64_t i = 0; i < mi.count; ++i) {
      (void)set.read(mi.name, i);
      if (mi.clip_starts() > 1) {
        clip.resize(static_cast<size_t>(mi.C * mi.T * mi.H * mi.W));
        set.read_clip(mi.name, i, 0, clip.data());
        set.read_clip(mi.name, i, mi.clip_starts() - 1, clip.data());
      }
    }
  }
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  // libhdf5 reads past its buffers on some files, in the reading child (fuzz_util.h).
  m3ret::fuzz::forked_children_die_quietly();
  m3ret::fuzz::write_seeds_if_asked([](const stdfs::path& dir) {
    // Each seed: the byte of its index, then a shard file written by ShardWriter.
    auto seed = [&](const std::string& name, size_t k, int compression, int rejects) {
      const stdfs::path tmp = m3ret::fuzz::scratch_dir() / "seed";
      write_shard(tmp, kKinds[k], compression, rejects);
      std::string bytes(1, static_cast<char>(k));
      bytes += read_bytes(tmp / shard_file(kKinds[k]));
      std::ofstream(dir / name, std::ios::binary) << bytes;
      stdfs::remove_all(tmp);
    };
    seed("xray-deflate.bin", 0, 4, 0);
    seed("xray-raw-rejects.bin", 0, 0, 2);
    seed("endoscopy-video-clips.bin", 1, 1, 0);
    seed("ct-volume-raw.bin", 2, 0, 1);
  });
  (void)kind_dir(0);
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  const size_t k = data[0] % kNumKinds;
  const stdfs::path dir = kind_dir(k);
  const stdfs::path shard = dir / shard_file(kKinds[k]);
  {
    std::ofstream out(shard, std::ios::binary | std::ios::trunc);
    out.write(reinterpret_cast<const char*>(data + 1), static_cast<std::streamsize>(size - 1));
  }
  m3ret::fuzz::refuse_only_with_error([&] {
    std::unique_ptr<sh::ShardSet> set = sh::ShardSet::open(dir, kLimits);
    read_all(*set);
  });
  m3ret::fuzz::refuse_only_with_error([&] {
    const sh::ShardMetadata md = sh::read_shard_metadata(shard, kLimits);
    sh::verify_shard_pixels(shard, md);
  });
  return 0;
}
