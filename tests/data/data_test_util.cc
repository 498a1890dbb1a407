#include "data_test_util.h"

#include <algorithm>
#include <stdexcept>

#include <fmt/format.h>
#include <itkGDCMImageIO.h>
#include <itkImageFileWriter.h>
#include <itkMetaDataObject.h>

#include "data/itk_image.h"

namespace m3ret::data::testutil {

namespace {
template <class Image>
void write(const typename Image::Pointer& img, const std::filesystem::path& path,
           itk::ImageIOBase* io = nullptr) {
  itkio::register_factories();
  auto w = itk::ImageFileWriter<Image>::New();
  w->SetInput(img);
  w->SetFileName(path.string());
  if (io) w->SetImageIO(io);
  w->Update();
}
}  // namespace

template <class T>
void write_volume(const std::filesystem::path& path, const std::vector<T>& values,
                  std::array<size_t, 3> size, std::array<double, 3> spacing,
                  std::array<double, 9> direction, std::array<double, 3> origin) {
  using Image = itk::Image<T, 3>;
  auto img = Image::New();
  typename Image::SizeType s = {{size[0], size[1], size[2]}};
  img->SetRegions(s);
  typename Image::SpacingType sp;
  for (int k = 0; k < 3; ++k) sp[k] = spacing[k];
  img->SetSpacing(sp);
  typename Image::DirectionType dir;
  for (int r = 0; r < 3; ++r)
    for (int c = 0; c < 3; ++c) dir[r][c] = direction[r * 3 + c];
  img->SetDirection(dir);
  typename Image::PointType o;
  for (int k = 0; k < 3; ++k) o[k] = origin[k];
  img->SetOrigin(o);
  img->Allocate();
  if (values.size() != size[0] * size[1] * size[2]) throw std::runtime_error("write_volume: size");
  std::copy(values.begin(), values.end(), img->GetBufferPointer());
  write<Image>(img, path);
}

template <class T>
void write_image(const std::filesystem::path& path, const std::vector<T>& values, size_t width,
                 size_t height) {
  using Image = itk::Image<T, 2>;
  auto img = Image::New();
  typename Image::SizeType s = {{width, height}};
  img->SetRegions(s);
  img->Allocate();
  if (values.size() != width * height) throw std::runtime_error("write_image: size");
  std::copy(values.begin(), values.end(), img->GetBufferPointer());
  write<Image>(img, path);
}

template void write_volume<int16_t>(const std::filesystem::path&, const std::vector<int16_t>&,
                                    std::array<size_t, 3>, std::array<double, 3>,
                                    std::array<double, 9>, std::array<double, 3>);
template void write_volume<float>(const std::filesystem::path&, const std::vector<float>&,
                                  std::array<size_t, 3>, std::array<double, 3>,
                                  std::array<double, 9>, std::array<double, 3>);
template void write_image<uint8_t>(const std::filesystem::path&, const std::vector<uint8_t>&,
                                   size_t, size_t);
template void write_image<uint16_t>(const std::filesystem::path&, const std::vector<uint16_t>&,
                                    size_t, size_t);

void write_rgb(const std::filesystem::path& path, const std::vector<uint8_t>& rgb, size_t width,
               size_t height) {
  using Image = itk::Image<itk::RGBPixel<uint8_t>, 2>;
  auto img = Image::New();
  Image::SizeType s = {{width, height}};
  img->SetRegions(s);
  img->Allocate();
  auto* p = img->GetBufferPointer();
  for (size_t i = 0; i < width * height; ++i) {
    p[i].Set(rgb[3 * i], rgb[3 * i + 1], rgb[3 * i + 2]);
  }
  write<Image>(img, path);
}

void write_dicom(const std::filesystem::path& path, const std::vector<uint16_t>& values,
                 size_t width, size_t height, const std::string& modality,
                 const std::vector<std::pair<std::string, std::string>>& tags) {
  using Image = itk::Image<uint16_t, 2>;
  auto img = Image::New();
  Image::SizeType s = {{width, height}};
  img->SetRegions(s);
  img->Allocate();
  std::copy(values.begin(), values.end(), img->GetBufferPointer());
  auto& dict = img->GetMetaDataDictionary();
  itk::EncapsulateMetaData<std::string>(dict, "0008|0060", modality);
  itk::EncapsulateMetaData<std::string>(dict, "0028|0004", "MONOCHROME2");
  for (const auto& [tag, value] : tags) itk::EncapsulateMetaData<std::string>(dict, tag, value);
  auto io = itk::GDCMImageIO::New();
  for (const auto& kv : tags) {
    if (kv.first == "0020|000e") io->KeepOriginalUIDOn();  // else ITK makes new UIDs
  }
  write<Image>(img, path, io);
}

void write_ct_series(const std::filesystem::path& dir, const std::vector<int16_t>& hu,
                     std::array<size_t, 3> size, double intercept, const std::string& series,
                     const std::string& prefix, const std::string& patient, bool flip_x) {
  using Image = itk::Image<int16_t, 2>;
  std::filesystem::create_directories(dir);
  const std::string study = "1.2.826.0.1.3680043.2.1125.1.1";
  for (size_t z = size[2]; z-- > 0;) {
    auto img = Image::New();
    Image::SizeType s = {{size[0], size[1]}};
    img->SetRegions(s);
    Image::SpacingType sp;
    sp.Fill(1.0);
    img->SetSpacing(sp);
    img->Allocate();
    std::copy(hu.begin() + z * size[0] * size[1], hu.begin() + (z + 1) * size[0] * size[1],
              img->GetBufferPointer());
    if (flip_x) {  // rows stored right to left: column i is at x = (size[0] - 1) - i
      for (size_t y = 0; y < size[1]; ++y) {
        int16_t* r = img->GetBufferPointer() + y * size[0];
        std::reverse(r, r + size[0]);
      }
    }
    auto& d = img->GetMetaDataDictionary();
    itk::EncapsulateMetaData<std::string>(d, "0008|0060", "CT");
    itk::EncapsulateMetaData<std::string>(d, "0028|0004", "MONOCHROME2");
    itk::EncapsulateMetaData<std::string>(d, "0020|000d", study);
    itk::EncapsulateMetaData<std::string>(d, "0020|000e", series);
    itk::EncapsulateMetaData<std::string>(d, "0010|0020", patient);
    itk::EncapsulateMetaData<std::string>(d, "0008|0018", fmt::format("{}.{}", series, z + 1));
    itk::EncapsulateMetaData<std::string>(d, "0020|0013", std::to_string(size[2] - z));
    itk::EncapsulateMetaData<std::string>(
        d, "0020|0032", fmt::format("{}\\0\\{}", flip_x ? double(size[0] - 1) : 0.0, 2.5 * z));
    itk::EncapsulateMetaData<std::string>(d, "0020|0037",
                                          flip_x ? "-1\\0\\0\\0\\1\\0" : "1\\0\\0\\0\\1\\0");
    itk::EncapsulateMetaData<std::string>(d, "0018|0050", "2.5");
    itk::EncapsulateMetaData<std::string>(d, "0028|0030", "1\\1");
    itk::EncapsulateMetaData<std::string>(d, "0028|1052", fmt::format("{}", intercept));
    itk::EncapsulateMetaData<std::string>(d, "0028|1053", "1");
    auto io = itk::GDCMImageIO::New();
    io->KeepOriginalUIDOn();
    write<Image>(img, dir / fmt::format("{}{:04d}.dcm", prefix, size[2] - z), io);
  }
}

PreprocessConfig small_cfg() {
  PreprocessConfig cfg;
  cfg.image_size = 32;
  cfg.volume_size = 16;
  cfg.volume_slices = 8;
  cfg.video_frames = 4;
  // Clip = all 4 stored frames, so a video reads as its 4 uniformly sampled
  // frames (the clip tests set their own stored frames and stride).
  cfg.video_stored_frames = 4;
  cfg.video_frame_stride = 1;
  cfg.ct_spacing = {2.0, 2.0, 2.0};
  return cfg;
}

ManifestRow row(const std::filesystem::path& path, const std::string& modality) {
  ManifestRow r;
  r.path = path;
  r.modality = modality;
  r.labels = {"l"};
  r.group = "g";
  r.split = "train";
  return r;
}

}  // namespace m3ret::data::testutil
