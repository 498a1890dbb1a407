#include "data/itk_image.h"

#include <cmath>
#include <mutex>

#include <fmt/format.h>
#include <gdcmTrace.h>
#include <itkBMPImageIOFactory.h>
#include <itkGDCMImageIO.h>
#include <itkGDCMImageIOFactory.h>
#include <itkGDCMSeriesFileNames.h>
#include <itkImageFileReader.h>
#include <itkImageIOFactory.h>
#include <itkImageSeriesReader.h>
#include <itkJPEGImageIOFactory.h>
#include <itkMetaDataObject.h>
#include <itkMetaImageIOFactory.h>
#include <itkNiftiImageIO.h>
#include <itkNiftiImageIOFactory.h>
#include <itkNrrdImageIOFactory.h>
#include <itkObjectFactoryBase.h>
#include <itkPNGImageIOFactory.h>
#include <itkTIFFImageIOFactory.h>
#include <itkVectorImage.h>

#include "core/error.h"
#include "data/integrity.h"

namespace m3ret::data::itkio {

namespace stdfs = std::filesystem;

namespace {

using VectorVolume = itk::VectorImage<float, 3>;

template <class Factory>
void register_once(const char* class_name) {
  for (auto* f : itk::ObjectFactoryBase::GetRegisteredFactories()) {
    if (std::string(f->GetNameOfClass()) == class_name) return;
  }
  Factory::RegisterOneFactory();
}

[[noreturn]] void refuse(const stdfs::path& path, const std::string& reason) {
  throw InputError(path.string(), reason);
}

std::string first_line(const std::string& s) {
  auto pos = s.find_last_not_of(" \n\r\t");
  std::string t = pos == std::string::npos ? s : s.substr(0, pos + 1);
  // ITK messages carry a "file:line:\nITK ERROR: ..." prefix; keep the description.
  auto desc = t.rfind(": ");
  return desc == std::string::npos ? t : t.substr(desc + 2);
}

// Splits an n-component image into 1 or 3 float channels (RGB kept, alpha and
// a grey+alpha second component dropped).
std::vector<Volume::Pointer> split_channels(const stdfs::path& path, VectorVolume* img) {
  const unsigned nc = img->GetNumberOfComponentsPerPixel();
  if (nc != 1 && nc != 2 && nc != 3 && nc != 4) {
    refuse(path, fmt::format("unsupported number of components per pixel: {}", nc));
  }
  const unsigned keep = nc >= 3 ? 3 : 1;
  const auto region = img->GetLargestPossibleRegion();
  const size_t n = region.GetNumberOfPixels();
  const float* src = img->GetBufferPointer();
  std::vector<Volume::Pointer> out;
  for (unsigned c = 0; c < keep; ++c) {
    auto ch = Volume::New();
    ch->SetRegions(region);
    ch->SetSpacing(img->GetSpacing());
    ch->SetOrigin(img->GetOrigin());
    ch->SetDirection(img->GetDirection());
    ch->Allocate();
    float* dst = ch->GetBufferPointer();
    for (size_t i = 0; i < n; ++i) {
      float v = src[i * nc + c];
      if (!std::isfinite(v)) refuse(path, "contains NaN or Inf values");
      dst[i] = v;
    }
    out.push_back(ch);
  }
  return out;
}

int effective_dims(const std::vector<size_t>& size) {
  int d = static_cast<int>(size.size());
  while (d > 2 && size[d - 1] == 1) --d;
  return d;
}

Decoded read_series(const stdfs::path& dir) {
  // GDCM scans every file of the folder and aborts on some cut files: check first.
  for (const auto& entry : stdfs::directory_iterator(dir)) {
    if (!entry.is_regular_file()) continue;
    const std::string why = integrity::dicom_meta_error(entry.path());
    if (!why.empty()) refuse(dir, fmt::format("{}: {}", entry.path().filename().string(), why));
  }
  auto names = itk::GDCMSeriesFileNames::New();
  names->SetUseSeriesDetails(true);
  names->SetDirectory(dir.string());
  const auto& uids = names->GetSeriesUIDs();
  if (uids.empty()) refuse(dir, "folder holds no DICOM series");
  std::vector<std::string> files;
  for (const auto& uid : uids) {
    auto f = names->GetFileNames(uid);
    if (f.size() > files.size()) files = f;
  }
  if (files.size() < 2) refuse(dir, fmt::format("DICOM series has {} slice(s); a volume needs 2 or more",
                                                files.size()));
  auto io = itk::GDCMImageIO::New();
  auto reader = itk::ImageSeriesReader<Volume>::New();
  reader->SetImageIO(io);
  reader->SetFileNames(files);
  try {
    reader->Update();
  } catch (const itk::ExceptionObject& e) {
    refuse(dir, "cannot read DICOM series: " + first_line(e.GetDescription()));
  }
  Volume::Pointer vol = reader->GetOutput();
  const float* p = vol->GetBufferPointer();
  const size_t n = vol->GetLargestPossibleRegion().GetNumberOfPixels();
  for (size_t i = 0; i < n; ++i) {
    if (!std::isfinite(p[i])) refuse(dir, "contains NaN or Inf values");
  }
  Decoded d;
  d.channels.push_back(vol);
  d.dims = 3;
  std::string photometric;
  itk::ExposeMetaData<std::string>(io->GetMetaDataDictionary(), "0028|0004", photometric);
  d.monochrome1 = photometric.find("MONOCHROME1") != std::string::npos;
  return d;
}

}  // namespace

void register_factories() {
  static std::once_flag once;
  std::call_once(once, [] {
    itk::Object::GlobalWarningDisplayOff();
    gdcm::Trace::WarningOff();  // e.g. "No PhotometricInterpretation found" on stderr
    gdcm::Trace::DebugOff();
    register_once<itk::NiftiImageIOFactory>("NiftiImageIOFactory");
    register_once<itk::NrrdImageIOFactory>("NrrdImageIOFactory");
    register_once<itk::MetaImageIOFactory>("MetaImageIOFactory");
    register_once<itk::GDCMImageIOFactory>("GDCMImageIOFactory");
    register_once<itk::PNGImageIOFactory>("PNGImageIOFactory");
    register_once<itk::JPEGImageIOFactory>("JPEGImageIOFactory");
    register_once<itk::TIFFImageIOFactory>("TIFFImageIOFactory");
    register_once<itk::BMPImageIOFactory>("BMPImageIOFactory");
  });
}

Decoded read(const stdfs::path& path) {
  register_factories();
  std::error_code ec;
  if (!stdfs::exists(path, ec)) refuse(path, "does not exist");
  if (stdfs::is_directory(path, ec)) return read_series(path);
  if (stdfs::file_size(path, ec) == 0) refuse(path, "empty file");
  if (integrity::is_png(path)) {
    const std::string why = integrity::png_error(path);
    if (!why.empty()) refuse(path, "corrupt PNG: " + why);
  }
  {
    const std::string why = integrity::dicom_meta_error(path);
    if (!why.empty()) refuse(path, why);
  }
  if (integrity::is_jpeg(path)) {
    const std::string why = integrity::jpeg_error(path);
    if (!why.empty()) refuse(path, "corrupt JPEG: " + why);
  }

  auto io = itk::ImageIOFactory::CreateImageIO(path.c_str(), itk::IOFileModeEnum::ReadMode);
  if (!io) refuse(path, "not a readable image (no ITK reader recognises it, or it is corrupt)");
  std::vector<size_t> size;
  try {
    io->SetFileName(path.string());
    io->ReadImageInformation();
    for (unsigned i = 0; i < io->GetNumberOfDimensions(); ++i) size.push_back(io->GetDimensions(i));
  } catch (const itk::ExceptionObject& e) {
    refuse(path, "cannot read image header: " + first_line(e.GetDescription()));
  }
  for (size_t s : size) {
    if (s == 0) refuse(path, "image has a zero-sized axis");
  }
  const int dims = effective_dims(size);
  if (dims > 3) {
    refuse(path, fmt::format("{}D image (size {}); expected 2D or 3D", dims, fmt::join(size, "x")));
  }
  if (dynamic_cast<itk::NiftiImageIO*>(io.GetPointer())) {
    // ITK reads missing voxels of a truncated NIfTI as zeros: count them.
    constexpr int64_t kNiftiHeaderBytes = 348;
    std::string why;
    const int64_t have = integrity::payload_bytes(path, why);
    if (have < 0) refuse(path, why);
    const auto need = static_cast<int64_t>(io->GetImageSizeInBytes()) + kNiftiHeaderBytes;
    if (have < need) {
      refuse(path, fmt::format("truncated NIfTI: {} bytes, the header announces at least {}", have, need));
    }
  }
  auto reader = itk::ImageFileReader<VectorVolume>::New();
  reader->SetImageIO(io);
  reader->SetFileName(path.string());
  try {
    reader->Update();
  } catch (const itk::ExceptionObject& e) {
    refuse(path, "cannot decode image (corrupt or truncated?): " + first_line(e.GetDescription()));
  }
  Decoded d;
  d.channels = split_channels(path, reader->GetOutput());
  d.dims = dims < 2 ? 2 : dims;
  const auto ct = io->GetComponentType();
  d.eight_bit = ct == itk::IOComponentEnum::UCHAR || ct == itk::IOComponentEnum::CHAR;
  if (auto* gdcm = dynamic_cast<itk::GDCMImageIO*>(io.GetPointer())) {
    std::string photometric;
    itk::ExposeMetaData<std::string>(gdcm->GetMetaDataDictionary(), "0028|0004", photometric);
    d.monochrome1 = photometric.find("MONOCHROME1") != std::string::npos;
    // GDCM applies Rescale Slope/Intercept, so values may leave the 8-bit range.
    d.eight_bit = false;
  }
  return d;
}

}  // namespace m3ret::data::itkio
