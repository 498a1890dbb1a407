// core/log.h: the progress line (rate, time left, elapsed) and the console
// under a progress bar (a log line clears the bar and redraws it; no bar, but
// plain lines, when the console is not a terminal).
#include <gtest/gtest.h>

#include <cstdio>
#include <string>

#include <spdlog/spdlog.h>

#include "core/error.h"
#include "core/log.h"
#include "test_util.h"

namespace m3ret::log {
namespace {

TEST(ProgressText, ShowsDoneRateTimeLeftAndElapsed) {
  // 50 of 200 in 10 s: 5 per second, 150 left: 30 s.
  EXPECT_EQ(progress_text("shard", 50, 200, 10.0, "", 8),
            "shard [##......] 50/200 5.00/s ETA 0:30 elapsed 0:10");
  EXPECT_EQ(progress_text("train", 1, 7201, 1.0, "loss 0.5", 0),
            "train 1/7201 1.00/s ETA 2:00:00 elapsed 0:01 loss 0.5");
  EXPECT_EQ(progress_text("embed", 0, 10, 0.0, "", 0), "embed 0/10 ETA ? elapsed 0:00");
  EXPECT_EQ(progress_text("embed", 1234, 1234, 61.0, "", 4),
            "embed [####] 1234/1234 20.2/s elapsed 1:01")
      << "no time left at the end";
}

using m3ret::testing::console_of;

TEST(Progress, OnATerminalALogLineClearsTheBarAndTheBarIsDrawnAgainBelowIt) {
  const std::string out = console_of(true, [] {
    Progress p("work", 4);
    p.add(1);
    spdlog::info("a line meanwhile");
    p.add(3);
  });
  const auto line = out.find("a line meanwhile");
  ASSERT_NE(line, std::string::npos) << out;
  const auto first_bar = out.find("work [");
  ASSERT_LT(first_bar, line) << out;
  EXPECT_EQ(out.rfind("\r\x1b[K", line), out.rfind('\r', line))
      << "the bar was not cleared before the line: " << out;
  EXPECT_GT(out.rfind('\r', line), first_bar) << out;
  const auto redrawn = out.find("work [", line);
  ASSERT_NE(redrawn, std::string::npos) << "the bar is not drawn again after the line: " << out;
  EXPECT_EQ(out.substr(redrawn, out.find(' ', out.find(']', redrawn) + 2) - redrawn),
            "work [#######.......................] 1/4")
      << out;
  EXPECT_NE(out.find("4/4", redrawn), std::string::npos) << out;
  EXPECT_EQ(out.back(), '\n') << "the finished bar ends its line";
}

TEST(Progress, ElsewherePrintsPlainLinesWithoutABar) {
  const std::string out = console_of(false, [] {
    Progress p("work", 4);
    p.add(1);
    p.add(3);
  });
  EXPECT_EQ(out.find('\r'), std::string::npos) << out;
  EXPECT_EQ(out.find('#'), std::string::npos) << out;
  EXPECT_NE(out.find("work 1/4 "), std::string::npos) << "the first line" << out;
  EXPECT_NE(out.find("work 4/4 "), std::string::npos) << "the last line" << out;
}

TEST(StageProgressText, TimeLeftFromTheExpectedShareDoneAndTheTimeElapsed) {
  // A tenth of the expected work done in 10 s: 90 s left.
  EXPECT_EQ(stage_progress_text("demo", 2, 8, "shard", 10.0, 0.1, 10),
            "demo [#.........] stage 2/8: shard ETA 1:30 elapsed 0:10");
  EXPECT_EQ(stage_progress_text("demo", 1, 8, "synth", 0.0, 0.0, 0),
            "demo stage 1/8: synth ETA ? elapsed 0:00")
      << "nothing done yet: no estimate";
  EXPECT_EQ(stage_progress_text("demo", 9, 8, "", 351.0, 1.0, 4),
            "demo [####] 8/8 stages done elapsed 5:51");
}

// The demo's overall line: one as each stage starts, weighted by the expected
// shares (here 1 + 1 + 8: the bar is 20 % full when the third starts), and one
// at the end; a bar on a terminal, plain lines elsewhere.
TEST(StageProgress, ALineAsEachStageStartsAndAtTheEnd) {
  auto work = [] {
    StageProgress p("demo", {{"a", 1}, {"b", 1}, {"c", 8}});
    p.begin("a");
    p.begin("b");
    p.begin("c");
    p.finish();
  };
  const std::string plain = console_of(false, work);
  for (const char* line : {"demo stage 1/3: a ETA ? elapsed ", "demo stage 2/3: b ETA ",
                           "demo stage 3/3: c ETA ", "demo 3/3 stages done elapsed "})
    EXPECT_NE(plain.find(line), std::string::npos) << line << "\n" << plain;
  EXPECT_EQ(plain.find('#'), std::string::npos) << plain;
  const std::string bar = console_of(true, work);
  EXPECT_NE(bar.find("demo [######........................] stage 3/3: c ETA "), std::string::npos)
      << bar;
  EXPECT_NE(bar.find("demo [##############################] 3/3 stages done"), std::string::npos)
      << bar;
  StageProgress p("demo", {{"a", 1}, {"b", 1}});
  p.begin("a");
  EXPECT_THROW(p.begin("c"), Error) << "a stage that is not the next planned one";
}

}  // namespace
}  // namespace m3ret::log
