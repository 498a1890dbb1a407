#include "data/itk_image.h"

#include <algorithm>
#include <cmath>
#include <functional>
#include <mutex>

#include <fmt/format.h>
#include <gdcmTrace.h>
#include <itkBMPImageIOFactory.h>
#include <itkGDCMImageIO.h>
#include <itkGDCMImageIOFactory.h>
#include <itkImageFileReader.h>
#include <itkMultiThreaderBase.h>
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
#include <nifti1_io.h>

#include "core/error.h"
#include "data/dicom.h"
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

Decoded read_file(const stdfs::path& path, const stdfs::path& name, int64_t max_pixels);

// Refuses a DICOM series whose first file's header times the number of files
// promises more than max_pixels voxels (before the series reader allocates).
void check_series_size(const std::vector<std::string>& files, const stdfs::path& name,
                       int64_t max_pixels) {
  auto io = itk::GDCMImageIO::New();
  std::vector<int64_t> shape;
  try {
    io->SetFileName(files.front());
    io->ReadImageInformation();
    for (unsigned i = 0; i < io->GetNumberOfDimensions(); ++i)
      shape.push_back(int64_t(io->GetDimensions(i)));
  } catch (const itk::ExceptionObject& e) {
    refuse(name,
           "cannot read DICOM header of " + files.front() + ": " + first_line(e.GetDescription()));
  }
  shape.resize(3, 1);
  shape[2] *= static_cast<int64_t>(files.size());
  const std::string why = integrity::too_many_pixels(shape, max_pixels);
  if (!why.empty()) refuse(name, why);
}

// What ITK's NIfTI reader does not check: it reads the voxels missing from a
// truncated file as zeros, and NIfTI's reference library replaces non-finite
// floats by 0 while loading. One pass over the stored payload (through zlib
// for .nii.gz, which also checks the gzip CRC) counts the voxel bytes and, for
// float data, looks for NaN/Inf. The header (voxel offset, byte order, data
// file of a .hdr/.img pair) comes from the NIfTI library itself.
void check_nifti_payload(const stdfs::path& path, const stdfs::path& name,
                         const itk::ImageIOBase& io) {
  nifti_image* nim = nifti_image_read(path.c_str(), 0);  // header only
  if (!nim) refuse(name, "cannot read NIfTI header");
  const stdfs::path data = nim->iname ? stdfs::path(nim->iname) : path;
  const int64_t offset = nim->iname_offset;
  const bool swap = nim->byteorder != nifti_short_order();
  const int datatype = nim->datatype;
  nifti_image_free(nim);
  const bool is_float = datatype == NIFTI_TYPE_FLOAT32 || datatype == NIFTI_TYPE_FLOAT64;
  integrity::NonFiniteScan scan(offset, datatype == NIFTI_TYPE_FLOAT64 ? 8 : 4, swap);
  std::string why;
  const int64_t have = integrity::payload_bytes(
      data, why, is_float ? std::function<void(const uint8_t*, size_t)>(std::ref(scan)) : nullptr);
  if (have < 0) refuse(name, why);
  const auto need = static_cast<int64_t>(io.GetImageSizeInBytes()) + offset;
  if (have < need) {
    refuse(name, fmt::format("truncated NIfTI: {} bytes of {}, the header announces at least {}",
                             have, data.filename().string(), need));
  }
  if (!scan.ok()) refuse(name, "contains NaN or Inf values");
}

// ITK's NIfTI reader derives the direction cosines from the qform/sform matrices the NIfTI
// library computes from the header, and aborts the process (vnl_svd's finiteness assertion) on
// a matrix that is not finite or whose direction columns have no length (normalised to NaN):
// found by fuzz_image. Checked before ITK reads the header: the matrices of the transforms the
// header declares (code not 0), over the axes ITK orients (3 at most; trailing size-1 axes
// beyond the third dropped, as ITK does), and the voxel sizes.
void check_nifti_orientation(const stdfs::path& path, const stdfs::path& name) {
  nifti_image* nim = nifti_image_read(path.c_str(), 0);  // header only
  if (!nim) refuse(name, "cannot read NIfTI header");
  int dims = std::clamp(nim->dim[0], 1, 7);
  while (dims > 3 && nim->dim[dims] == 1) --dims;
  const int d = std::min(dims, 3);
  std::string why;
  auto check = [&](const mat44& m, int code, const char* form) {
    if (code == 0 || !why.empty()) return;
    for (const auto& row : m.m) {
      for (float v : row) {
        if (!std::isfinite(v)) {
          why = fmt::format("its {} matrix is not finite", form);
          return;
        }
      }
    }
    for (int c = 0; c < d; ++c) {
      double norm2 = 0;
      for (int r = 0; r < d; ++r) norm2 += double(m.m[r][c]) * double(m.m[r][c]);
      if (!(norm2 > 0)) {
        why = fmt::format("its {} matrix gives axis {} no direction", form, c);
        return;
      }
    }
  };
  check(nim->qto_xyz, nim->qform_code, "qform");
  check(nim->sto_xyz, nim->sform_code, "sform");
  if (why.empty() && !(std::isfinite(nim->dx) && std::isfinite(nim->dy) && std::isfinite(nim->dz)))
    why = "its voxel sizes are not finite";
  nifti_image_free(nim);
  if (!why.empty()) refuse(name, "bad NIfTI orientation: " + why);
}

// A series folder, or "FOLDER#ID" (data/dicom.h); `name` is what refusals name.
Decoded read_series(const stdfs::path& dir, const std::string& id, const stdfs::path& name,
                    int64_t max_pixels) {
  const std::vector<dicom::Series> all = dicom::list_series_here(dir);  // in the decoding child
  if (all.empty()) refuse(name, "folder holds no DICOM series");
  const dicom::Series* chosen = &all.front();  // the largest
  if (!id.empty()) {
    auto it =
        std::find_if(all.begin(), all.end(), [&](const dicom::Series& s) { return s.id == id; });
    if (it == all.end()) {
      refuse(name,
             fmt::format("no DICOM series '{}' in the folder ({} series there)", id, all.size()));
    }
    chosen = &*it;
  }
  // A one-file series is a single (possibly multi-frame) file.
  if (chosen->files.size() == 1) {
    Decoded d = read_file(chosen->files.front(), name, max_pixels);
    if (d.dims != 3) refuse(name, "DICOM series has 1 slice; a volume needs 2 or more");
    return d;
  }
  std::vector<std::string> files;
  for (const auto& f : chosen->files) files.push_back(f.string());
  check_series_size(files, name, max_pixels);
  const stdfs::path& dir_name = name;
  auto io = itk::GDCMImageIO::New();
  auto reader = itk::ImageSeriesReader<Volume>::New();
  reader->SetImageIO(io);
  reader->SetFileNames(files);
  try {
    reader->Update();
  } catch (const itk::ExceptionObject& e) {
    refuse(dir_name, "cannot read DICOM series: " + first_line(e.GetDescription()));
  }
  Volume::Pointer vol = reader->GetOutput();
  const float* p = vol->GetBufferPointer();
  const size_t n = vol->GetLargestPossibleRegion().GetNumberOfPixels();
  for (size_t i = 0; i < n; ++i) {
    if (!std::isfinite(p[i])) refuse(dir_name, "contains NaN or Inf values");
  }
  Decoded d;
  d.channels.push_back(vol);
  d.dims = 3;
  std::string photometric;
  itk::ExposeMetaData<std::string>(io->GetMetaDataDictionary(), "0028|0004", photometric);
  d.monochrome1 = photometric.find("MONOCHROME1") != std::string::npos;
  d.dicom_modality = chosen->header.modality;
  return d;
}

}  // namespace

void register_factories() {
  static std::once_flag once;
  std::call_once(once, [] {
    itk::Object::GlobalWarningDisplayOff();
    // One thread per filter call instead of ITK's global thread pool: the pool's fork handler
    // (which stops its threads) aborts the process when two threads fork at once, and DICOM is
    // decoded in forked children (data/isolate.h). Samples are decoded in parallel anyway.
    itk::MultiThreaderBase::SetGlobalDefaultThreader(
        itk::MultiThreaderBase::ThreaderEnum::Platform);
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

Decoded read(const stdfs::path& path, int64_t max_pixels) {
  register_factories();
  std::error_code ec;
  stdfs::path dir;
  std::string id;
  if (dicom::split_series_ref(path, dir, id)) return read_series(dir, id, path, max_pixels);
  if (stdfs::is_directory(path, ec)) return read_series(path, "", path, max_pixels);
  // A FIFO or device would block the reader forever: refused without opening it.
  const std::string why = integrity::not_a_regular_file(path);
  if (!why.empty()) refuse(path, why);
  return read_file(path, path, max_pixels);
}

namespace {

Decoded read_file(const stdfs::path& path, const stdfs::path& name, int64_t max_pixels) {
  std::error_code ec;
  if (stdfs::file_size(path, ec) == 0) refuse(name, "empty file");
  if (integrity::is_png(path)) {
    const std::string why = integrity::png_error(path, max_pixels);
    if (!why.empty()) refuse(name, why);
  }
  {
    const std::string why = integrity::dicom_meta_error(path);
    if (!why.empty()) refuse(name, why);
  }
  if (integrity::is_jpeg(path)) {
    const std::string why = integrity::jpeg_error(path, max_pixels);
    if (!why.empty()) refuse(name, why);
  }

  auto io = itk::ImageIOFactory::CreateImageIO(path.c_str(), itk::IOFileModeEnum::ReadMode);
  if (!io) refuse(name, "not a readable image (no ITK reader recognises it, or it is corrupt)");
  if (dynamic_cast<itk::NiftiImageIO*>(io.GetPointer())) check_nifti_orientation(path, name);
  std::vector<size_t> size;
  try {
    io->SetFileName(path.string());
    io->ReadImageInformation();
    for (unsigned i = 0; i < io->GetNumberOfDimensions(); ++i) size.push_back(io->GetDimensions(i));
  } catch (const itk::ExceptionObject& e) {
    refuse(name, "cannot read image header: " + first_line(e.GetDescription()));
  }
  for (size_t s : size) {
    if (s == 0) refuse(name, "image has a zero-sized axis");
  }
  const int dims = effective_dims(size);
  if (dims > 3) {
    refuse(name, fmt::format("{}D image (size {}); expected 2D or 3D", dims, fmt::join(size, "x")));
  }
  const std::string too_big =
      integrity::too_many_pixels(std::vector<int64_t>(size.begin(), size.end()), max_pixels);
  if (!too_big.empty()) refuse(name, too_big);
  if (dynamic_cast<itk::NiftiImageIO*>(io.GetPointer())) check_nifti_payload(path, name, *io);
  auto reader = itk::ImageFileReader<VectorVolume>::New();
  reader->SetImageIO(io);
  reader->SetFileName(path.string());
  try {
    reader->Update();
  } catch (const itk::ExceptionObject& e) {
    refuse(name, "cannot decode image (corrupt or truncated?): " + first_line(e.GetDescription()));
  }
  Decoded d;
  d.channels = split_channels(name, reader->GetOutput());
  d.dims = dims < 2 ? 2 : dims;
  const auto ct = io->GetComponentType();
  d.eight_bit = ct == itk::IOComponentEnum::UCHAR || ct == itk::IOComponentEnum::CHAR;
  if (auto* gdcm = dynamic_cast<itk::GDCMImageIO*>(io.GetPointer())) {
    std::string photometric;
    itk::ExposeMetaData<std::string>(gdcm->GetMetaDataDictionary(), "0028|0004", photometric);
    d.monochrome1 = photometric.find("MONOCHROME1") != std::string::npos;
    itk::ExposeMetaData<std::string>(gdcm->GetMetaDataDictionary(), "0008|0060", d.dicom_modality);
    d.dicom_modality.erase(d.dicom_modality.find_last_not_of(" \t\r\n") + 1);
    // GDCM applies Rescale Slope/Intercept, so values may leave the 8-bit range.
    d.eight_bit = false;
  }
  return d;
}

}  // namespace

}  // namespace m3ret::data::itkio
