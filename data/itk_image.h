// Decoding through ITK (internal to data/).
//
// Every file or DICOM series becomes float channels on a 3D grid (2D images
// have z size 1). Values are the file's values after the format's own rescale
// (NIfTI scl_slope/scl_inter; DICOM Rescale Slope/Intercept, i.e. HU for CT).
// Thread-safe: the ITK IO factories are registered once, every call owns its
// readers and filters, and filters run single-threaded (callers parallelise
// across samples).
#pragma once

#include <filesystem>
#include <string>
#include <vector>

#include <itkImage.h>

#include "data/preprocess.h"

namespace m3ret::data::itkio {

using Volume = itk::Image<float, 3>;

struct Decoded {
  std::vector<Volume::Pointer> channels;  // 1 (grey) or 3 (RGB); alpha dropped
  int dims = 0;                // effective dimensionality: 2 or 3 (trailing size-1 axes dropped)
  bool eight_bit = false;      // stored as (u)int8: values already in [0, 255]
  bool monochrome1 = false;    // the DICOM file said MONOCHROME1; GDCM (ITK 5.2) has already
                               // inverted its values to MONOCHROME2 (tested), so nothing to undo
  std::string dicom_modality;  // DICOM Modality (0008,0060), e.g. "CT"; "" for other formats
};

// Reads a file (any ITK format), a DICOM series folder (the series with the
// most files when the folder holds several) or "FOLDER#SERIES_ID" (one series
// of a folder, data/dicom.h). Throws m3ret::InputError(path, reason) when the
// path is missing, empty, not decodable, 4D or more, or has an unsupported
// number of components, and when its header promises more than `max_pixels`
// pixels/voxels (checked before decoding). Values are checked finite.
Decoded read(const std::filesystem::path& path, int64_t max_pixels = kDefaultMaxInputPixels);

// Registers the ITK image IO factories (idempotent, thread-safe); read() calls it.
void register_factories();

}  // namespace m3ret::data::itkio
