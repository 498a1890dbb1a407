# Finds every dependency through its own CMake config or pkg-config and fails
# with the Debian package to install when one is missing. setup.sh installs them all.

function(m3ret_missing what package)
  message(FATAL_ERROR "m3ret: ${what} not found. On Debian 12 install it with:\n"
                      "    apt-get install ${package}\n"
                      "or run: bash setup.sh")
endfunction()

find_package(PkgConfig QUIET)
if(NOT PkgConfig_FOUND)
  m3ret_missing("pkg-config" "pkg-config")
endif()

# LibTorch: Debian's libtorch-dev (1.13, CPU) or any LibTorch given by Torch_DIR; with
# -DM3RET_CUDA=ON, by default the CUDA LibTorch that `bash setup.sh --cuda` installs.
option(M3RET_CUDA "Build against a CUDA LibTorch (the PyTorch wheel's; bash setup.sh --cuda) and NCCL" OFF)
if(M3RET_CUDA AND NOT Torch_DIR)
  file(GLOB M3RET_WHEEL_TORCH_DIR "/opt/m3ret/torch-cuda/lib/python3*/site-packages/torch/share/cmake/Torch")
  if(NOT M3RET_WHEEL_TORCH_DIR)
    message(FATAL_ERROR "m3ret: M3RET_CUDA=ON needs a CUDA LibTorch: run `bash setup.sh --cuda` "
                        "(installs the PyTorch wheel's in /opt/m3ret/torch-cuda) or give -DTorch_DIR=...")
  endif()
  set(Torch_DIR "${M3RET_WHEEL_TORCH_DIR}" CACHE PATH "LibTorch's CMake folder" FORCE)
endif()
# TorchConfig.cmake looks for its libraries with PATHS, which come after the system folders: with
# Debian's libtorch installed as well, a LibTorch given by Torch_DIR would link Debian's .so files.
# Its own prefix goes first.
if(Torch_DIR AND NOT Torch_DIR MATCHES "^/usr/lib")
  get_filename_component(M3RET_TORCH_PREFIX "${Torch_DIR}/../../.." ABSOLUTE)
  list(PREPEND CMAKE_PREFIX_PATH "${M3RET_TORCH_PREFIX}")
endif()
find_package(Torch QUIET)
if(NOT Torch_FOUND)
  m3ret_missing("LibTorch (TorchConfig.cmake; or set -DTorch_DIR=...)" "libtorch-dev")
endif()
# The PyTorch wheel's LibTorch vendors fmt 12 in include/fmt, which would shadow Debian's fmt 9
# that spdlog is built against. Our targets then see LibTorch's headers through a folder of links
# to everything in its include folder but fmt/ (torch/torch.h does not include fmt). Debian's
# LibTorch lives in /usr/include beside Debian's fmt and needs none of this.
list(GET TORCH_INCLUDE_DIRS 0 M3RET_TORCH_INCLUDE)
if(EXISTS "${M3RET_TORCH_INCLUDE}/fmt" AND NOT M3RET_TORCH_INCLUDE IN_LIST CMAKE_CXX_IMPLICIT_INCLUDE_DIRECTORIES)
  set(M3RET_TORCH_SHADOW "${CMAKE_BINARY_DIR}/torch-include")
  file(MAKE_DIRECTORY "${M3RET_TORCH_SHADOW}")
  file(GLOB M3RET_TORCH_ENTRIES RELATIVE "${M3RET_TORCH_INCLUDE}" "${M3RET_TORCH_INCLUDE}/*")
  list(REMOVE_ITEM M3RET_TORCH_ENTRIES fmt)
  foreach(entry IN LISTS M3RET_TORCH_ENTRIES)
    if(NOT EXISTS "${M3RET_TORCH_SHADOW}/${entry}")
      file(CREATE_LINK "${M3RET_TORCH_INCLUDE}/${entry}" "${M3RET_TORCH_SHADOW}/${entry}" SYMBOLIC)
    endif()
  endforeach()
  string(REPLACE "${M3RET_TORCH_INCLUDE}" "${M3RET_TORCH_SHADOW}" TORCH_INCLUDE_DIRS "${TORCH_INCLUDE_DIRS}")
  foreach(t IN ITEMS torch torch_library torch_cpu torch_cpu_library torch_cuda torch_cuda_library c10 c10_cuda)
    if(TARGET ${t})
      get_target_property(dirs ${t} INTERFACE_INCLUDE_DIRECTORIES)
      if(dirs)
        string(REPLACE "${M3RET_TORCH_INCLUDE}" "${M3RET_TORCH_SHADOW}" dirs "${dirs}")
        set_target_properties(${t} PROPERTIES INTERFACE_INCLUDE_DIRECTORIES "${dirs}")
      endif()
    endif()
  endforeach()
  message(STATUS "m3ret: LibTorch headers through ${M3RET_TORCH_SHADOW} (without its vendored fmt)")
endif()
add_library(m3ret_torch INTERFACE)
target_link_libraries(m3ret_torch INTERFACE ${TORCH_LIBRARIES})
target_include_directories(m3ret_torch SYSTEM INTERFACE ${TORCH_INCLUDE_DIRS})
target_compile_options(m3ret_torch INTERFACE -Wno-error)
add_library(m3ret::torch ALIAS m3ret_torch)
# The PyTorch wheel's libtorch.so exports its own copy of the std::filesystem functions (linked in
# statically from an older GCC); the first library of a binary's NEEDED list that defines a symbol
# wins, and that copy's remove_all crashes (a null call). libstdc++ goes first in every binary that
# uses such a LibTorch, so that the system's definitions are used.
if(M3RET_TORCH_PREFIX)
  target_link_options(m3ret_torch INTERFACE "LINKER:--push-state,--no-as-needed,-lstdc++,--pop-state")
endif()
# The PyTorch wheel's CUDA libraries need others from pip's nvidia-* packages (site-packages/
# nvidia/*/lib: NVSHMEM, cuFILE, cuSPARSELt) and from the CUDA toolkit: found when linking, and
# from the binaries' run path when they run here (on the GPU machine its own torch provides them).
if(M3RET_TORCH_PREFIX AND EXISTS "${M3RET_TORCH_PREFIX}/lib/libtorch_cuda.so")
  file(GLOB M3RET_CUDA_LIB_DIRS LIST_DIRECTORIES true "${M3RET_TORCH_PREFIX}/../nvidia/*/lib")
  foreach(dir IN LISTS M3RET_CUDA_LIB_DIRS ITEMS /usr/local/cuda/lib64 /usr/local/cuda/extras/CUPTI/lib64)
    if(IS_DIRECTORY "${dir}")
      get_filename_component(dir "${dir}" ABSOLUTE)
      target_link_options(m3ret_torch INTERFACE "LINKER:-rpath,${dir}")
    endif()
  endforeach()
endif()
if(M3RET_CUDA)
  if(NOT TARGET torch_cuda)
    message(FATAL_ERROR "m3ret: M3RET_CUDA=ON but the LibTorch of ${Torch_DIR} has no CUDA (torch_cuda)")
  endif()
  find_path(NCCL_INCLUDE_DIR nccl.h HINTS $ENV{NCCL_ROOT}/include /usr/include /usr/local/cuda/include)
  find_library(NCCL_LIBRARY nccl HINTS $ENV{NCCL_ROOT}/lib /usr/lib/x86_64-linux-gnu /usr/local/cuda/lib64)
  if(NOT NCCL_INCLUDE_DIR OR NOT NCCL_LIBRARY)
    message(FATAL_ERROR "m3ret: M3RET_CUDA=ON needs NCCL (nccl.h, libnccl.so): set NCCL_ROOT")
  endif()
  find_package(CUDAToolkit REQUIRED)
  # The GPU code (train.device = "cuda", bf16, NcclCommunicator) is compiled under M3RET_WITH_CUDA,
  # in every target that uses LibTorch or NCCL.
  target_compile_definitions(m3ret_torch INTERFACE M3RET_WITH_CUDA=1)
  add_library(m3ret_nccl INTERFACE)
  target_compile_definitions(m3ret_nccl INTERFACE M3RET_WITH_CUDA=1)
  target_include_directories(m3ret_nccl SYSTEM INTERFACE ${NCCL_INCLUDE_DIR})
  target_link_libraries(m3ret_nccl INTERFACE ${NCCL_LIBRARY} CUDA::cudart)
  add_library(m3ret::nccl ALIAS m3ret_nccl)
  message(STATUS "m3ret: CUDA build: LibTorch ${Torch_VERSION} of ${Torch_DIR}, NCCL ${NCCL_LIBRARY}")
endif()

find_package(MPI QUIET COMPONENTS C)
if(NOT MPI_C_FOUND)
  m3ret_missing("MPI (Open MPI)" "libopenmpi-dev openmpi-bin")
endif()
find_program(M3RET_MPIEXEC NAMES mpiexec mpirun)
if(NOT M3RET_MPIEXEC)
  m3ret_missing("mpiexec" "openmpi-bin")
endif()

find_package(HDF5 QUIET COMPONENTS C)
if(NOT HDF5_FOUND)
  m3ret_missing("HDF5" "libhdf5-dev")
endif()
add_library(m3ret_hdf5 INTERFACE)
target_include_directories(m3ret_hdf5 SYSTEM INTERFACE ${HDF5_C_INCLUDE_DIRS} ${HDF5_INCLUDE_DIRS})
target_link_libraries(m3ret_hdf5 INTERFACE ${HDF5_C_LIBRARIES} ${HDF5_LIBRARIES})
target_compile_definitions(m3ret_hdf5 INTERFACE ${HDF5_DEFINITIONS} ${HDF5_C_DEFINITIONS})
add_library(m3ret::hdf5 ALIAS m3ret_hdf5)

find_package(ITK QUIET COMPONENTS ITKCommon ITKIOImageBase ITKIONIFTI ITKIOPNG ITKIOJPEG
             ITKIOTIFF ITKIOBMP ITKIOGDCM ITKIONRRD ITKIOMeta ITKImageGrid ITKImageFunction
             ITKImageIntensity ITKTransform ITKGDCM)
if(NOT ITK_FOUND)
  m3ret_missing("ITK" "libinsighttoolkit5-dev")
endif()
add_library(m3ret_itk INTERFACE)
target_include_directories(m3ret_itk SYSTEM INTERFACE ${ITK_INCLUDE_DIRS})
target_link_libraries(m3ret_itk INTERFACE ${ITK_LIBRARIES})
add_library(m3ret::itk ALIAS m3ret_itk)

pkg_check_modules(FFMPEG QUIET IMPORTED_TARGET libavformat libavcodec libswscale libavutil)
if(NOT FFMPEG_FOUND)
  m3ret_missing("FFmpeg (libavformat, libavcodec, libswscale, libavutil)"
                "libavformat-dev libavcodec-dev libswscale-dev libavutil-dev")
endif()

# libzip: MedMNIST .npz archives (data/npz.h).
pkg_check_modules(LIBZIP QUIET IMPORTED_TARGET libzip)
if(NOT LIBZIP_FOUND)
  m3ret_missing("libzip" "libzip-dev")
endif()

find_package(Boost 1.74 QUIET)
if(NOT Boost_FOUND)
  m3ret_missing("Boost (Asio, Beast)" "libboost-dev")
endif()

find_package(tomlplusplus QUIET)
if(NOT tomlplusplus_FOUND)
  m3ret_missing("TOML++" "libtomlplusplus-dev")
endif()
find_package(fmt QUIET)
if(NOT fmt_FOUND)
  m3ret_missing("fmt" "libfmt-dev")
endif()
find_package(spdlog QUIET)
if(NOT spdlog_FOUND)
  m3ret_missing("spdlog" "libspdlog-dev")
endif()
find_package(CLI11 QUIET)
if(NOT CLI11_FOUND)
  m3ret_missing("CLI11" "libcli11-dev")
endif()
find_package(nlohmann_json 3.10 QUIET)
if(NOT nlohmann_json_FOUND)
  m3ret_missing("nlohmann-json" "nlohmann-json3-dev")
endif()
find_package(ZLIB QUIET)
if(NOT ZLIB_FOUND)
  m3ret_missing("zlib" "zlib1g-dev")
endif()
find_package(SQLite3 QUIET)
if(NOT SQLite3_FOUND)
  m3ret_missing("SQLite" "libsqlite3-dev")
endif()
find_package(Threads REQUIRED)

# FAISS (Flat/HNSW/IVF indices of eval/). Debian's static libfaiss links libgomp and the BLAS
# chosen by the alternatives system (OpenBLAS, see setup.sh), the same ones as Debian's LibTorch.
find_package(OpenMP QUIET COMPONENTS CXX)
find_package(faiss QUIET)
if(NOT faiss_FOUND OR NOT OpenMP_CXX_FOUND)
  m3ret_missing("FAISS (faiss-config.cmake) with OpenMP" "libfaiss-dev")
endif()
# BLAS (Fortran sgemm_) for the similarity blocks of eval's metrics.
find_package(BLAS QUIET)
if(NOT BLAS_FOUND)
  m3ret_missing("BLAS (libblas.so)" "libblas-dev libopenblas0-pthread")
endif()
# LAPACK (Fortran dsyevr_) for the whitening readout of eval's metrics (eval/whitening.h).
find_package(LAPACK QUIET)
if(NOT LAPACK_FOUND)
  m3ret_missing("LAPACK (liblapack.so)" "liblapack-dev libopenblas0-pthread")
endif()

if(M3RET_BUILD_TESTS)
  find_package(GTest QUIET)
  if(NOT GTest_FOUND)
    m3ret_missing("GoogleTest" "libgtest-dev libgmock-dev")
  endif()
  find_package(Python3 QUIET COMPONENTS Interpreter)
endif()
