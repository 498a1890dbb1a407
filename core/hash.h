// splitmix64 (Steele, Lea, Flood 2014): a fixed, portable 64-bit mixing
// function, for seeds derived from other values (sample seeds, bootstrap
// streams). The same output on every platform and standard library.
#pragma once

#include <cstdint>

namespace m3ret {

inline uint64_t splitmix64(uint64_t x) {
  x += 0x9e3779b97f4a7c15ULL;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
  return x ^ (x >> 31);
}

}  // namespace m3ret
