// Typed configuration of the trainer: [model], [train], [mae], [simdino].
//
// Each struct lists its keys in visit() (core/config.h) with defaults here.
// validate() throws config::Error naming the key at fault.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "core/config.h"

namespace m3ret::trainer {

// The encoder architecture after resolving the preset and the overrides.
struct VitSpec {
  int64_t width = 768, depth = 12, heads = 12;
  int64_t tube_t = 2, patch_h = 16, patch_w = 16;  // tubelet (t, p, p)
  double mlp_ratio = 4.0;
  double drop_path = 0.0;       // stochastic depth rate of the last block (linear in depth)
  double layerscale = 0.0;      // initial LayerScale value; 0 = off
  bool mean_embedding = false;  // embedding = mean of patch tokens instead of CLS
  std::string stem = "linear";  // "linear" (one Conv3d) or "hmlp" (vit.h)
};

struct ModelConfig {
  std::string preset = "base";
  int64_t width = 0, depth = 0, heads = 0;     // 0 = from the preset
  std::vector<int64_t> tubelet = {2, 16, 16};  // [t, p, p] or [t, ph, pw]
  double mlp_ratio = 4.0;
  double drop_path = 0.0;
  double layerscale = 0.0;
  std::string embedding = "cls";
  std::string stem = "linear";

  template <class V>
  void visit(V& v) {
    v("preset", preset,
      "encoder size: tiny 192/12/3, small 384/12/6, base 768/12/12, "
      "large 1024/24/16, huge 1280/32/16 (width/depth/heads)",
      config::OneOf{{"tiny", "small", "base", "large", "huge"}});
    v("width", width, "embedding width (0 = from preset)", config::Range{0, 65536});
    v("depth", depth, "number of blocks (0 = from preset)", config::Range{0, 1024});
    v("heads", heads, "attention heads (0 = from preset)", config::Range{0, 1024});
    v("tubelet", tubelet, "patch embedding kernel [t, p, p] (or [t, ph, pw])",
      config::Range{1, 1024});
    v("mlp_ratio", mlp_ratio, "MLP hidden width / width", config::Range{0.25, 64});
    v("drop_path", drop_path, "stochastic depth rate", config::Range{0, 0.99});
    v("layerscale", layerscale, "LayerScale initial value (0 = off)", config::Range{0, 10});
    v("embedding", embedding, "retrieval embedding: CLS token or mean of patch tokens",
      config::OneOf{{"cls", "mean"}});
    v("stem", stem,
      "patch embedding: linear (one Conv3d over a tubelet) or hmlp (hierarchical MLP stem, "
      "DeiT III: 3 non-overlapping convolutions with LayerNorm and GELU; patch sides and width "
      "multiples of 4)",
      config::OneOf{{"linear", "hmlp"}});
  }
  void validate() const;
  // Preset + overrides; throws config::Error if width is not divisible by heads.
  VitSpec spec() const;
};

struct TrainConfig {
  std::string objective = "mae";
  int64_t global_batch_size = 64;  // over all ranks; must be divisible by the world size
  int64_t max_steps = 1000;
  double lr = 1.5e-4;
  double min_lr = 1e-6;
  int64_t warmup_steps = 100;
  double weight_decay = 0.05;
  double weight_decay_end = -1;  // cosine from weight_decay to this at max_steps; -1 = constant
  int64_t grad_accum_steps = 1;  // micro-batches per optimizer step (per rank)
  double clip_grad = 3.0;        // global L2 norm; 0 = off
  int64_t checkpoint_every = 500;
  int64_t keep_last = 3;
  int64_t seed = 0;
  bool deterministic = false;
  std::vector<std::string> modalities = {"xray", "ultrasound", "endoscopy", "ct", "other"};
  std::string split = "train";
  int64_t log_every = 10;
  double bucket_mb = 25;              // gradient all-reduce bucket size
  double collective_timeout_s = 300;  // a stalled/dead rank aborts the job after this
  std::string device = "cpu";         // "cuda": cuda:<local rank> (model/device.h)
  std::string precision = "fp32";     // "bf16": autocast to bfloat16 (cuda only)

  template <class V>
  void visit(V& v) {
    v("objective", objective, "self-supervised objective",
      config::OneOf{{"mae", "simdino", "mae+simdino"}});
    v("global_batch_size", global_batch_size,
      "samples per step over all ranks (divisible by the number of ranks)", config::Range{1, 1e9});
    v("max_steps", max_steps, "optimizer steps", config::Range{1, 1e12});
    v("lr", lr, "peak learning rate (after warmup)", config::Range{0, 10});
    v("min_lr", min_lr, "learning rate at the end of the cosine decay", config::Range{0, 10});
    v("warmup_steps", warmup_steps, "linear warmup steps", config::Range{0, 1e12});
    v("weight_decay", weight_decay, "AdamW weight decay (not on biases/norms/tokens)",
      config::Range{0, 10});
    v("weight_decay_end", weight_decay_end,
      "weight decay at max_steps, reached by a cosine from weight_decay as in DINO "
      "(-1 = constant weight_decay)",
      config::Range{-1, 10});
    v("grad_accum_steps", grad_accum_steps,
      "micro-batches accumulated per optimizer step: each rank runs global_batch_size / "
      "(ranks * grad_accum_steps) samples per forward/backward, gradients are all-reduced once "
      "per step",
      config::Range{1, 65536});
    v("clip_grad", clip_grad, "clip gradients to this global L2 norm (0 = off)",
      config::Range{0, 1e9});
    v("checkpoint_every", checkpoint_every, "checkpoint every N steps (0 = only at the end)",
      config::Range{0, 1e12});
    v("keep_last", keep_last, "checkpoints kept (older ones are deleted; 0 = keep all)",
      config::Range{0, 1e9});
    v("seed", seed, "seed of initial weights, augmentations, masks and sampling",
      config::Range{0, 9.2e18});
    v("deterministic", deterministic,
      "deterministic kernels (same seed, same weights; N ranks == 1 rank)");
    v("modalities", modalities, "modalities trained on (others in the shards are skipped)");
    v("split", split, "split trained on (\"\" = all samples)");
    v("log_every", log_every, "metrics/progress every N steps", config::Range{1, 1e12});
    v("bucket_mb", bucket_mb,
      "gradient all-reduce bucket size in MB (reduced while backward continues)",
      config::Range{0.001, 1e6});
    v("collective_timeout_s", collective_timeout_s,
      "seconds a collective may wait for the other ranks before the job aborts (0 = forever)",
      config::Range{0, 1e9});
    v("device", device,
      "where the model trains: cpu, or cuda (the GPU cuda:<local rank>; needs a CUDA build of "
      "m3ret and a visible GPU per rank of the node)",
      config::OneOf{{"cpu", "cuda"}});
    v("precision", precision,
      "fp32, or bf16 (forward and loss under bfloat16 autocast, weights and optimizer in fp32; "
      "needs train.device = \"cuda\")",
      config::OneOf{{"fp32", "bf16"}});
  }
  void validate() const;
  // Samples per rank and step; throws config::Error naming
  // train.global_batch_size if it is not divisible by `world`.
  int64_t per_rank_batch(int world) const;
  // Samples per rank and micro-batch: global_batch_size / (world *
  // grad_accum_steps); throws config::Error naming train.global_batch_size
  // and train.grad_accum_steps when it does not divide.
  int64_t micro_batch(int world) const;
  // The weight decay at max_steps (weight_decay when weight_decay_end = -1).
  double final_weight_decay() const {
    return weight_decay_end < 0 ? weight_decay : weight_decay_end;
  }
};

struct MaeConfig {
  double mask_ratio_image = 0.75;  // token grids with one time step
  double mask_ratio_video = 0.9;   // clips and volumes
  int64_t decoder_width = 512;
  int64_t decoder_depth = 8;
  int64_t decoder_heads = 16;
  bool norm_pix_loss = true;
  double crop_scale_min = 0.2;  // random resized crop area in [crop_scale_min, 1]
  double weight = 1.0;

  template <class V>
  void visit(V& v) {
    v("mask_ratio_image", mask_ratio_image, "masked fraction of tokens for images",
      config::Range{0, 0.99});
    v("mask_ratio_video", mask_ratio_video, "masked fraction of tokens for clips/volumes",
      config::Range{0, 0.99});
    v("decoder_width", decoder_width, "decoder width", config::Range{8, 65536});
    v("decoder_depth", decoder_depth, "decoder blocks", config::Range{1, 1024});
    v("decoder_heads", decoder_heads, "decoder attention heads", config::Range{1, 1024});
    v("norm_pix_loss", norm_pix_loss, "normalise each target patch (mean 0, var 1)");
    v("crop_scale_min", crop_scale_min, "smallest random-resized-crop area fraction",
      config::Range{0.01, 1});
    v("weight", weight, "weight of the MAE loss in mae+simdino", config::Range{0, 1e6});
  }
  void validate() const;
};

struct SimDinoConfig {
  int64_t local_crops = 4;
  std::vector<double> global_crop_scale = {0.4, 1.0};  // area fraction
  std::vector<double> local_crop_scale = {0.05, 0.4};
  double local_crop_size = 0.5;    // local view H, W = this fraction of the input (patch multiple)
  double local_crop_frames = 0.5;  // local view T = this fraction of the input T (tubelet multiple)
  double rotation = 0;             // each view rotated by up to this many degrees (0 = off)
  int64_t head_hidden = 2048;
  int64_t head_out = 256;
  double eps = 0.05;
  config::AutoNumber gamma;  // auto: (p + N m) / (p N m), as SimDINO's reference computes it
  double coeff = 1.0;
  std::string expansion_views = "student";
  double momentum_start = 0.996;
  double momentum_end = 1.0;
  double weight = 1.0;
  bool allreduce_cov = false;

  template <class V>
  void visit(V& v) {
    v("local_crops", local_crops, "number of local views", config::Range{0, 64});
    v("global_crop_scale", global_crop_scale, "[lo, hi] area fraction of global crops",
      config::Range{0.01, 1});
    v("local_crop_scale", local_crop_scale, "[lo, hi] area fraction of local crops",
      config::Range{0.01, 1});
    v("local_crop_size", local_crop_size, "local view height/width relative to the input",
      config::Range{0.05, 1});
    v("local_crop_frames", local_crop_frames, "local view frames relative to the input",
      config::Range{0.05, 1});
    v("rotation", rotation,
      "rotate every view in its image plane by an angle drawn in [-rotation, rotation] degrees "
      "(0 = off, as in DINO)",
      config::Range{0, 180});
    v("head_hidden", head_hidden, "projection head hidden width", config::Range{1, 65536});
    v("head_out", head_out, "projection head output width", config::Range{1, 65536});
    v("eps", eps, "coding-rate precision epsilon", config::Range{1e-9, 1e9});
    v("gamma", gamma,
      "weight of the coding-rate term: \"auto\" = (p + N*m) / (p*N*m) with p = head_out, "
      "m = samples per rank and micro-batch, N = ranks (the reference implementation's balancing "
      "factor), or a number",
      config::Range{0, 1e9});
    v("coeff", coeff, "weight of the alignment (compression) term", config::Range{0, 1e9});
    v("expansion_views", expansion_views,
      "features whose coding rate is expanded: the student's global views, or the average of "
      "student and teacher global features (the reference's expa_type 0 and 1)",
      config::OneOf{{"student", "student+teacher"}});
    v("momentum_start", momentum_start, "teacher EMA momentum at step 0", config::Range{0, 1});
    v("momentum_end", momentum_end, "teacher EMA momentum at the last step (cosine)",
      config::Range{0, 1});
    v("weight", weight, "weight of the SimDINO loss in mae+simdino", config::Range{0, 1e6});
    v("allreduce_cov", allreduce_cov,
      "sum Z^T Z over ranks for the coding rate (off: each rank's own Z^T Z, scaled by "
      "p / (m N eps) all the same, as the reference does)");
  }
  void validate() const;
};

}  // namespace m3ret::trainer
