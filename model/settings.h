// The trainer part of the root configuration: [model], [train], [mae], [simdino].
#pragma once

#include "model/config.h"

namespace m3ret::trainer {

struct Settings {
  ModelConfig model;
  TrainConfig train;
  MaeConfig mae;
  SimDinoConfig simdino;

  template <class V>
  void visit(V& v) {
    v.section("model", model);
    v.section("train", train);
    v.section("mae", mae);
    v.section("simdino", simdino);
  }
};

}  // namespace m3ret::trainer
