// Debian's ITK 5.2 headers refuse every compiler but GCC ("Unsupported compiler" in
// itk_compiler_detection.h). The fuzz build (clang, cmake/Fuzz.cmake) includes this header first
// in every file: where ITK is on the include path, ITK's detection header is read here, once,
// as if by GCC 12 (__clang__ hidden, __GNUC__ 12.2: clang 14 implements every C++ feature that
// branch declares for it); its include guard then keeps ITK from reading it again.
#pragma once
#if __has_include(<itk_compiler_detection.h>)
#pragma clang diagnostic push
#pragma clang diagnostic ignored "-Wbuiltin-macro-redefined"
#pragma push_macro("__GNUC__")
#pragma push_macro("__GNUC_MINOR__")
#undef __clang__
#undef __GNUC__
#undef __GNUC_MINOR__
#define __GNUC__ 12
#define __GNUC_MINOR__ 2
#include <itk_compiler_detection.h>
#define __clang__ 1
#pragma pop_macro("__GNUC_MINOR__")
#pragma pop_macro("__GNUC__")
#pragma clang diagnostic pop
#endif
