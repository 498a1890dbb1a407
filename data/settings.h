// The data part of the root configuration: [synth] and [preprocess].
#pragma once

#include "data/preprocess.h"
#include "data/synth.h"

namespace m3ret::data {

struct Settings {
  SynthConfig synth;
  PreprocessConfig preprocess;

  template <class V>
  void visit(V& v) {
    v.section("synth", synth);
    v.section("preprocess", preprocess);
  }
};

}  // namespace m3ret::data
