// Wall-clock timestamps in UTC, for records that people read (metrics, run
// records, evaluation history).
#pragma once

#include <chrono>
#include <string>

namespace m3ret {

// ISO 8601 in UTC: "2026-12-01T20:12:49Z", or with `fraction_digits` (0-9)
// decimals of the second: "2026-12-01T20:12:49.123Z". Thread-safe (gmtime_r).
std::string utc_timestamp(std::chrono::system_clock::time_point t, int fraction_digits = 0);
std::string utc_now(int fraction_digits = 0);

}  // namespace m3ret
