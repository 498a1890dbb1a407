// MedMNIST v2: ROOT/<flag>[_<size>].npz with {train,val,test}_{images,labels}.
// Samples are arrays inside the archives; the readers take files, so each
// image is written out once: 2D as PNG (grey or RGB), 3D as NIfTI, under
// <manifest folder>/medmnist/<stem>/<split>/<index>.{png,nii.gz}.
// Labels: "<flag>:<class index>" (MedMNIST's INFO names the classes); for
// multi-label subsets (ChestMNIST) every positive index, or "<flag>:none".
// 3D CT subsets come already windowed to [0, 255]; they are stored as int16
// v * 2000 / 255 - 1000 (rounded), so that the default CT window [-1000, 1000]
// maps them back to their original bytes exactly.
#include <algorithm>
#include <cmath>
#include <map>

#include <fmt/format.h>
#include <itkImage.h>
#include <itkImageFileWriter.h>
#include <itkRGBPixel.h>

#include "core/error.h"
#include "data/import_util.h"
#include "data/isolate.h"
#include "data/itk_image.h"
#include "data/npz.h"

namespace m3ret::data::importer {

namespace stdfs = std::filesystem;

namespace {

// Default modality per MedMNIST flag; "" = none (needs --modality).
std::string default_modality(const std::string& flag, bool is3d) {
  static const std::map<std::string, std::string> table = {
      {"chestmnist", "xray"},   {"pneumoniamnist", "xray"}, {"breastmnist", "ultrasound"},
      {"organmnist3d", "ct"},   {"nodulemnist3d", "ct"},    {"fracturemnist3d", "ct"},
      {"adrenalmnist3d", "ct"}, {"vesselmnist3d", "mri"},   {"synapsemnist3d", ""},
  };
  auto it = table.find(flag);
  if (it != table.end()) return it->second;
  // Other 2D subsets (pathology, dermatoscopy, OCT, fundus, blood cells, 2D CT
  // slices of OrganA/C/SMNIST) are 2D images of no listed modality.
  return is3d ? "" : "other";
}

template <class Image>
void write_image(const typename Image::Pointer& img, const stdfs::path& path) {
  itkio::register_factories();
  isolate::LibraryScope scope;
  auto w = itk::ImageFileWriter<Image>::New();
  w->SetInput(img);
  w->SetFileName(path.string());
  w->UseCompressionOn();
  w->Update();
}

void write_2d(const uint8_t* data, int64_t h, int64_t w, bool rgb, const stdfs::path& path) {
  if (rgb) {
    using Image = itk::Image<itk::RGBPixel<uint8_t>, 2>;
    auto img = Image::New();
    img->SetRegions(Image::SizeType{{static_cast<size_t>(w), static_cast<size_t>(h)}});
    img->Allocate();
    for (int64_t i = 0; i < h * w; ++i)
      img->GetBufferPointer()[i].Set(data[3 * i], data[3 * i + 1], data[3 * i + 2]);
    write_image<Image>(img, path);
  } else {
    using Image = itk::Image<uint8_t, 2>;
    auto img = Image::New();
    img->SetRegions(Image::SizeType{{static_cast<size_t>(w), static_cast<size_t>(h)}});
    img->Allocate();
    std::copy(data, data + h * w, img->GetBufferPointer());
    write_image<Image>(img, path);
  }
}

template <class T>
void write_3d(const uint8_t* data, const std::vector<int64_t>& shape, bool as_hu,
              const stdfs::path& path) {
  using Image = itk::Image<T, 3>;
  auto img = Image::New();
  // numpy [d0, d1, d2] in C order: the last axis varies fastest (ITK x).
  img->SetRegions(
      typename Image::SizeType{{static_cast<size_t>(shape[3]), static_cast<size_t>(shape[2]),
                                static_cast<size_t>(shape[1])}});
  img->Allocate();
  const int64_t n = shape[1] * shape[2] * shape[3];
  for (int64_t i = 0; i < n; ++i) {
    img->GetBufferPointer()[i] = as_hu
                                     ? static_cast<T>(std::lround(data[i] * 2000.0 / 255.0) - 1000)
                                     : static_cast<T>(data[i]);
  }
  write_image<Image>(img, path);
}

std::vector<std::string> labels_of(const std::string& flag, const std::vector<int64_t>& labels,
                                   int64_t width, int64_t i) {
  std::vector<std::string> out;
  if (width == 1) return {fmt::format("{}:{}", flag, labels[i])};
  for (int64_t k = 0; k < width; ++k) {
    if (labels[i * width + k] != 0) out.push_back(fmt::format("{}:{}", flag, k));
  }
  if (out.empty()) out.push_back(flag + ":none");
  return out;
}

void import_archive(const stdfs::path& file, const ImportOptions& opts, ImportResult& out) {
  const std::string stem = file.stem().string();
  std::string flag = stem;  // "organmnist3d_64" -> "organmnist3d"
  if (auto us = flag.rfind('_');
      us != std::string::npos &&
      flag.find_first_not_of("0123456789", us + 1) == std::string::npos) {
    flag = flag.substr(0, us);
  }
  npz::Archive npz(file);
  bool any = false;
  for (const char* split : {"train", "val", "test"}) {
    const std::string images = std::string(split) + "_images",
                      labels_name = std::string(split) + "_labels";
    if (!npz.has(images)) continue;
    any = true;
    const npz::ArrayInfo info = npz.info(images);
    const auto& s = info.shape;
    const bool rgb = s.size() == 4 && s[3] == 3;
    const bool is3d = s.size() == 4 && !rgb;
    const bool empty_image = std::any_of(s.begin() + std::min<size_t>(1, s.size()), s.end(),
                                         [](int64_t d) { return d < 1; });
    if (info.descr.substr(1) != "u1" || (s.size() != 3 && s.size() != 4) || empty_image) {
      throw InputError(
          fmt::format("{}:{}.npy", file.string(), images),
          fmt::format("expected uint8 images [N, S, S], [N, S, S, 3] or [N, S, S, S], got {} {}",
                      info.descr, fmt::join(s, "x")));
    }
    const std::string modality =
        !opts.modality.empty() ? opts.modality : default_modality(flag, is3d);
    if (modality.empty()) {
      out.skipped.push_back(fmt::format(
          "{}: no default modality for the 3D subset '{}' (pass --modality)", file.string(), flag));
      return;
    }
    const std::vector<int64_t> labels = npz.read_int64(labels_name);
    const npz::ArrayInfo linfo = npz.info(labels_name);
    const int64_t width = linfo.shape.size() >= 2 ? linfo.shape[1] : 1;
    if (linfo.shape.empty() || linfo.shape[0] != s[0]) {
      throw InputError(
          fmt::format("{}:{}.npy", file.string(), labels_name),
          fmt::format("{} labels for {} images", linfo.shape.empty() ? 0 : linfo.shape[0], s[0]));
    }
    if (s[0] == 0) {  // an empty split contributes no sample; said, not fatal
      out.skipped.push_back(
          fmt::format("{}:{}.npy: empty split '{}' (0 images)", file.string(), images, split));
      continue;
    }
    const stdfs::path dir = stdfs::absolute(opts.out).parent_path() / "medmnist" / stem / split;
    stdfs::create_directories(dir);
    npz.for_each_row(images, [&](int64_t i, const uint8_t* data, size_t) {
      ManifestRow row;
      row.path = dir / fmt::format("{:06d}{}", i, is3d ? ".nii.gz" : ".png");
      if (is3d && modality == "ct")
        write_3d<int16_t>(data, s, true, row.path);
      else if (is3d)
        write_3d<uint8_t>(data, s, false, row.path);
      else
        write_2d(data, s[1], s[2], rgb, row.path);
      row.modality = modality;
      row.labels = labels_of(flag, labels, width, i);
      row.split = split;
      out.rows.push_back(std::move(row));
    });
  }
  if (!any)
    out.skipped.push_back(fmt::format("{}: no train/val/test_images arrays", file.string()));
}

}  // namespace

ImportResult medmnist(const ImportOptions& opts) {
  ImportResult out;
  bool found = false;
  for (const auto& file : files_under(opts.root, out.skipped)) {
    if (lower_name(file).size() < 4 ||
        lower_name(file).substr(lower_name(file).size() - 4) != ".npz")
      continue;
    found = true;
    try {
      import_archive(file, opts, out);
    } catch (const InputError& e) {
      out.skipped.push_back(fmt::format("{}: {}", e.path(), e.reason()));
    }
  }
  if (!found)
    throw Error(fmt::format("import medmnist: no .npz files under {}", opts.root.string()));
  return out;
}

}  // namespace m3ret::data::importer
