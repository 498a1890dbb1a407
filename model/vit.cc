#include "model/vit.h"

#include <algorithm>
#include <cmath>
#include <map>
#include <tuple>

#include <torch/version.h>

#include "core/error.h"
#include "core/mutex.h"

namespace m3ret::trainer {

namespace F = torch::nn::functional;

torch::Tensor sincos_1d(const torch::Tensor& positions, int64_t dim) {
  M3RET_CHECK(dim % 2 == 0, "sin-cos dimension {} must be even", dim);
  auto omega = torch::arange(dim / 2, torch::kFloat64) / (dim / 2.0);
  omega = torch::pow(10000.0, -omega);  // [dim/2]
  auto out = positions.to(torch::kFloat64).reshape({-1, 1}) * omega.reshape({1, -1});
  return torch::cat({torch::sin(out), torch::cos(out)}, 1).to(torch::kFloat32);  // [N, dim]
}

torch::Tensor sincos_3d(Grid grid, int64_t dim) {
  int64_t dh = 2 * (dim / 6), dt = dim - 2 * dh;
  auto et = sincos_1d(torch::arange(grid.t), dt);  // [gt, dt]
  auto eh = sincos_1d(torch::arange(grid.h), dh);  // [gh, dh]
  auto ew = sincos_1d(torch::arange(grid.w), dh);  // [gw, dh]
  auto t = et.reshape({grid.t, 1, 1, dt}).expand({grid.t, grid.h, grid.w, dt});
  auto h = eh.reshape({1, grid.h, 1, dh}).expand({grid.t, grid.h, grid.w, dh});
  auto w = ew.reshape({1, 1, grid.w, dh}).expand({grid.t, grid.h, grid.w, dh});
  return torch::cat({t, h, w}, 3).reshape({grid.tokens(), dim});
}

namespace {
// The position embeddings made so far, by (grid, dim, device), shared by the
// ViTs of the process (callers on several threads may ask at once).
struct PositionCache {
  using Key = std::tuple<int64_t, int64_t, int64_t, int64_t, std::string>;
  Mutex mu;
  std::map<Key, torch::Tensor> tables M3RET_GUARDED_BY(mu);
};
PositionCache& position_cache() {
  static PositionCache cache;
  return cache;
}
}  // namespace

torch::Tensor position_embedding(Grid grid, int64_t dim, const torch::Device& device) {
  PositionCache& cache = position_cache();
  const PositionCache::Key key{grid.t, grid.h, grid.w, dim, device.str()};
  MutexLock lock(cache.mu);
  if (auto it = cache.tables.find(key); it != cache.tables.end()) return it->second;
  if (cache.tables.size() >= 256) cache.tables.clear();  // many grids (eval of varied inputs)
  torch::NoGradGuard no_grad;
  auto e = sincos_3d(grid, dim).to(device);
  cache.tables.emplace(key, e);
  return e;
}

ChannelNormImpl::ChannelNormImpl(int64_t channels) {
  weight_ = register_parameter("weight", torch::ones({channels}));
  bias_ = register_parameter("bias", torch::zeros({channels}));
}

torch::Tensor ChannelNormImpl::forward(const torch::Tensor& x) {
  auto y = F::layer_norm(
      x.movedim(1, -1), F::LayerNormFuncOptions({x.size(1)}).weight(weight_).bias(bias_).eps(1e-6));
  return y.movedim(-1, 1);
}

Attention::Attention(int64_t dim, int64_t heads) : heads_(heads) {
  qkv_ = register_module("qkv", torch::nn::Linear(dim, 3 * dim));
  proj_ = register_module("proj", torch::nn::Linear(dim, dim));
}

torch::Tensor Attention::forward(const torch::Tensor& x) {
  const int64_t B = x.size(0), N = x.size(1), D = x.size(2), hd = D / heads_;
  auto qkv = qkv_->forward(x).reshape({B, N, 3, heads_, hd}).permute({2, 0, 3, 1, 4});
  auto q = qkv[0], k = qkv[1], v = qkv[2];  // [B, h, N, hd]
#if TORCH_VERSION_MAJOR >= 2
  auto o = at::scaled_dot_product_attention(q, k, v);
#else
  auto attn = torch::matmul(q, k.transpose(-2, -1)) * (1.0 / std::sqrt(double(hd)));
  auto o = torch::matmul(attn.softmax(-1), v);  // [B, h, N, hd]
#endif
  return proj_->forward(o.transpose(1, 2).reshape({B, N, D}));
}

Block::Block(int64_t dim, int64_t heads, double mlp_ratio, double drop_path, double layerscale)
    : drop_path_(drop_path) {
  norm1_ =
      register_module("norm1", torch::nn::LayerNorm(torch::nn::LayerNormOptions({dim}).eps(1e-6)));
  attn_ = register_module("attn", std::make_shared<Attention>(dim, heads));
  norm2_ =
      register_module("norm2", torch::nn::LayerNorm(torch::nn::LayerNormOptions({dim}).eps(1e-6)));
  const auto hidden = static_cast<int64_t>(std::llround(dim * mlp_ratio));
  fc1_ = register_module("fc1", torch::nn::Linear(dim, hidden));
  fc2_ = register_module("fc2", torch::nn::Linear(hidden, dim));
  if (layerscale > 0) {
    ls1_ = register_parameter("ls1", torch::full({dim}, layerscale));
    ls2_ = register_parameter("ls2", torch::full({dim}, layerscale));
  }
}

torch::Tensor Block::drop_path(const torch::Tensor& x) {
  if (!is_training() || drop_path_ <= 0) return x;
  const double keep = 1.0 - drop_path_;
  auto mask = torch::empty({x.size(0), 1, 1}, x.options()).bernoulli_(keep);
  return x * mask / keep;
}

torch::Tensor Block::forward(const torch::Tensor& x) {
  auto a = attn_->forward(norm1_->forward(x));
  if (ls1_.defined()) a = a * ls1_;
  auto y = x + drop_path(a);
  auto m = fc2_->forward(F::gelu(fc1_->forward(norm2_->forward(y))));
  if (ls2_.defined()) m = m * ls2_;
  return y + drop_path(m);
}

void init_weights(torch::nn::Module& m) {
  torch::NoGradGuard no_grad;
  for (auto& mod : m.modules(/*include_self=*/false)) {
    if (auto* lin = mod->as<torch::nn::Linear>()) {
      torch::nn::init::xavier_uniform_(lin->weight);
      if (lin->bias.defined()) torch::nn::init::zeros_(lin->bias);
    } else if (auto* ln = mod->as<torch::nn::LayerNorm>()) {
      torch::nn::init::ones_(ln->weight);
      torch::nn::init::zeros_(ln->bias);
    }
  }
}

Encoder::Encoder(const VitSpec& spec) : spec_(spec) {
  const int64_t D = spec.width;
  auto conv = [](int64_t in, int64_t out, int64_t t, int64_t h, int64_t w) {
    return torch::nn::Conv3d(torch::nn::Conv3dOptions(in, out, {t, h, w}).stride({t, h, w}));
  };
  if (spec.stem == "hmlp") {
    M3RET_CHECK(spec.patch_h % 4 == 0 && spec.patch_w % 4 == 0 && D % 4 == 0,
                "model.stem hmlp: patch {}x{} and width {} must be multiples of 4", spec.patch_h,
                spec.patch_w, D);
    // Indices 0-7 as in DeiT III's nn.Sequential (GELUs at 2 and 5 have no weights).
    hmlp_ = register_module(
        "patch_embed",
        torch::nn::Sequential(conv(3, D / 4, spec.tube_t, spec.patch_h / 4, spec.patch_w / 4),
                              ChannelNorm(D / 4), torch::nn::GELU(), conv(D / 4, D / 4, 1, 2, 2),
                              ChannelNorm(D / 4), torch::nn::GELU(), conv(D / 4, D, 1, 2, 2),
                              ChannelNorm(D)));
  } else {
    M3RET_CHECK(spec.stem == "linear", "model.stem: unknown stem '{}'", spec.stem);
    patch_ = register_module("patch_embed", conv(3, D, spec.tube_t, spec.patch_h, spec.patch_w));
  }
  cls_ = register_parameter("cls_token", torch::zeros({1, 1, D}));
  blocks_ = register_module("blocks", torch::nn::ModuleList());
  for (int64_t i = 0; i < spec.depth; ++i) {
    double dp =
        spec.depth > 1 ? spec.drop_path * double(i) / double(spec.depth - 1) : spec.drop_path;
    blocks_->push_back(std::make_shared<Block>(D, spec.heads, spec.mlp_ratio, dp, spec.layerscale));
  }
  norm_ = register_module("norm", torch::nn::LayerNorm(torch::nn::LayerNormOptions({D}).eps(1e-6)));
  init_weights(*this);
  torch::NoGradGuard no_grad;
  // Every stem convolution initialised like a Linear on its flattened kernel (MAE).
  for (auto& mod : modules(/*include_self=*/false))
    if (auto* c = mod->as<torch::nn::Conv3d>()) {
      auto w = c->weight.view({c->weight.size(0), -1});
      torch::nn::init::xavier_uniform_(w);
      torch::nn::init::zeros_(c->bias);
    }
  torch::nn::init::normal_(cls_, 0.0, 0.02);
}

torch::Tensor Encoder::prepare(const torch::Tensor& x) const {
  M3RET_CHECK(x.dim() == 5, "encoder input must be [B, C, T, H, W], got {} dims", x.dim());
  const int64_t C = x.size(1), T = x.size(2), H = x.size(3), W = x.size(4);
  M3RET_CHECK(C == 1 || C == 3, "encoder input must have 1 or 3 channels, got {}", C);
  M3RET_CHECK(H >= spec_.patch_h && W >= spec_.patch_w,
              "input {}x{} is smaller than one patch {}x{}", H, W, spec_.patch_h, spec_.patch_w);
  auto y = x.to(torch::kFloat32);
  if (C == 1) y = y.expand({-1, 3, -1, -1, -1});
  if (T < spec_.tube_t) {
    // Repeat every frame so that T reaches the tubelet depth: [f0 f0 f1 f1 ...].
    const int64_t r = (spec_.tube_t + T - 1) / T;
    y = y.repeat_interleave(r, 2).narrow(2, 0, spec_.tube_t);
  }
  const int64_t Tn = y.size(2) / spec_.tube_t * spec_.tube_t;
  y = y.narrow(2, 0, Tn)
          .narrow(3, 0, H / spec_.patch_h * spec_.patch_h)
          .narrow(4, 0, W / spec_.patch_w * spec_.patch_w);
  return y * 2.0 - 1.0;
}

Grid grid_for(const VitSpec& spec, int64_t T, int64_t H, int64_t W) {
  return {std::max(T, spec.tube_t) / spec.tube_t, H / spec.patch_h, W / spec.patch_w};
}

Grid Encoder::grid_of(const torch::Tensor& p) const {
  return {p.size(2) / spec_.tube_t, p.size(3) / spec_.patch_h, p.size(4) / spec_.patch_w};
}

torch::Tensor Encoder::embed_patches(const torch::Tensor& prepared) {
  auto grid = grid_of(prepared);
  auto stem = hmlp_ ? hmlp_->forward(prepared) : patch_->forward(prepared);
  auto tokens = stem.flatten(2).transpose(1, 2);  // [B, N, D]
  return tokens + position_embedding(grid, spec_.width, tokens.device()).unsqueeze(0);
}

torch::Tensor Encoder::run_blocks(torch::Tensor tokens) {
  for (auto& b : *blocks_) tokens = b->as<Block>()->forward(tokens);
  return norm_->forward(tokens);
}

torch::Tensor Encoder::forward(const torch::Tensor& x) {
  auto tokens = embed_patches(prepare(x));
  auto cls = cls_.expand({tokens.size(0), 1, spec_.width});
  return run_blocks(torch::cat({cls, tokens}, 1));
}

torch::Tensor Encoder::forward_visible(const torch::Tensor& prepared, const torch::Tensor& keep) {
  auto tokens = embed_patches(prepared);  // [B, N, D]
  auto idx = keep.unsqueeze(-1).expand({-1, -1, spec_.width});
  auto visible = tokens.gather(1, idx);  // [B, K, D]
  auto cls = cls_.expand({tokens.size(0), 1, spec_.width});
  return run_blocks(torch::cat({cls, visible}, 1));
}

torch::Tensor Encoder::embed(const torch::Tensor& x) {
  auto out = forward(x);
  if (spec_.mean_embedding) return out.narrow(1, 1, out.size(1) - 1).mean(1);
  return out.select(1, 0);
}

int64_t parameter_count(torch::nn::Module& m) {
  int64_t n = 0;
  for (const auto& p : m.parameters()) n += p.numel();
  return n;
}

}  // namespace m3ret::trainer
