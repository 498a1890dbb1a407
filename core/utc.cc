#include "core/utc.h"

#include <algorithm>
#include <ctime>

#include <fmt/format.h>

namespace m3ret {

std::string utc_timestamp(std::chrono::system_clock::time_point t, int fraction_digits) {
  using namespace std::chrono;
  const auto secs = time_point_cast<seconds>(t);
  auto ns = duration_cast<nanoseconds>(t - secs).count();
  std::time_t tt = system_clock::to_time_t(secs);
  if (ns < 0) {  // before 1970: floor to the second
    ns += 1000000000;
    --tt;
  }
  std::tm tm{};
  gmtime_r(&tt, &tm);
  char buf[32];
  std::strftime(buf, sizeof(buf), "%Y-%m-%dT%H:%M:%S", &tm);
  std::string out(buf);
  const int digits = std::clamp(fraction_digits, 0, 9);
  if (digits > 0) {
    int64_t scale = 1;
    for (int i = digits; i < 9; ++i) scale *= 10;
    out += fmt::format(".{:0{}d}", ns / scale, digits);
  }
  return out + "Z";
}

std::string utc_now(int fraction_digits) {
  return utc_timestamp(std::chrono::system_clock::now(), fraction_digits);
}

}  // namespace m3ret
