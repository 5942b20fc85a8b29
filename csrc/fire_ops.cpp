// The CPU kernels of the operators fire_kernels::fire and fire_sparse, and of
// their twins with a max pool fused into the squeeze's read of the input,
// maxpool_fire and maxpool_fire_sparse (schemas in fire_kernels/ops.py): check
// the arguments (fire_checks.h), allocate the output in the input's memory
// format, bind the weights and run the scheduler (fire_scheduler.h).
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <torch/library.h>

#include <cstdint>
#include <cstdlib>
#include <limits>
#include <memory>
#include <string>

#include "activation_cache.h"
#include "fire_checks.h"
#include "fire_ops.h"
#include "fire_kernel.h"
#include "fire_scheduler.h"
#include "pack_weights.h"

namespace fire_kernels {

namespace {

// Pixel q = y*W + x of `t` (dims 2 and 3) at q * pixel_stride, if one exists.
bool uniform_pixels(const at::Tensor& t, int64_t* pixel_stride) {
  const int64_t H = t.size(2), W = t.size(3);
  if (W == 1) {
    *pixel_stride = t.stride(2);
    return true;
  }
  *pixel_stride = t.stride(3);
  return H == 1 || t.stride(2) == W * t.stride(3);
}

// FIRE_KERNELS_DEBUG_NAN_FILL=1 (a test switch, read once): outputs are filled
// with NaN before the kernels write them, so that an element a kernel never
// writes shows as NaN instead of passing for a ReLU's 0.
bool debug_nan_fill() {
  static const bool on = [] {
    const char* v = std::getenv("FIRE_KERNELS_DEBUG_NAN_FILL");
    return v != nullptr && std::string(v) == "1";
  }();
  return on;
}

// A forward's output and kernel arguments: everything but the weights.
struct Forward {
  at::Tensor out;  // in the input's memory format
  FireArgs args;
  // Contiguous copies of the biases the kernels read (usually the biases themselves).
  at::Tensor b_s, b_e1, b_e3;
};

at::Tensor contiguous_or_undefined(const std::optional<at::Tensor>& t) {
  return t ? t->contiguous() : at::Tensor();
}

const float* data_or_null(const at::Tensor& t) { return t.defined() ? t.data_ptr<float>() : nullptr; }

// `pool`: the max pooling fused into the squeeze's read of x (kernel 1: none);
// the Fire's input is the pooled x.
Forward start_forward(const at::Tensor& x, int64_t S, int64_t E1, int64_t E3,
                      const std::optional<at::Tensor>& bs,
                      const std::optional<at::Tensor>& be1,
                      const std::optional<at::Tensor>& be3, const PoolSpec& pool) {
  Forward f;
  const int64_t N = x.size(0), C = x.size(1);
  const int64_t H = pooled_size(x.size(2), pool), W = pooled_size(x.size(3), pool);
  const at::MemoryFormat format = x.suggest_memory_format();
  f.out = empty_activation({N, E1 + E3, H, W}, format);
  if (debug_nan_fill()) f.out.fill_(std::numeric_limits<float>::quiet_NaN());
  FireArgs& a = f.args;
  a = FireArgs{};
  a.N = N, a.C = C, a.H = H, a.W = W, a.S = S, a.E1 = E1, a.E3 = E3;
  a.Sp = round_up(S, kChannelPad);
  a.x = x.data_ptr<float>();
  a.x_sn = x.stride(0), a.x_sc = x.stride(1), a.x_sh = x.stride(2), a.x_sw = x.stride(3);
  a.pool = {pool.kernel, pool.stride, x.size(2), x.size(3)};
  a.x_uniform = pool.kernel == 1 && uniform_pixels(x, &a.x_ps);
  a.channels_last = format == at::MemoryFormat::ChannelsLast;
  a.out = f.out.data_ptr<float>();
  f.b_s = contiguous_or_undefined(bs);
  f.b_e1 = contiguous_or_undefined(be1);
  f.b_e3 = contiguous_or_undefined(be3);
  a.b_s = data_or_null(f.b_s), a.b_e1 = data_or_null(f.b_e1), a.b_e3 = data_or_null(f.b_e3);
  return f;
}

at::Tensor dense_fire(const at::Tensor& x, const at::Tensor& squeeze_weight,
                      const std::optional<at::Tensor>& squeeze_bias,
                      const at::Tensor& expand1x1_weight,
                      const std::optional<at::Tensor>& expand1x1_bias,
                      const at::Tensor& expand3x3_weight,
                      const std::optional<at::Tensor>& expand3x3_bias, const PoolSpec& pool) {
  Forward f = start_forward(x, squeeze_weight.size(0), expand1x1_weight.size(0),
                            expand3x3_weight.size(0), squeeze_bias, expand1x1_bias,
                            expand3x3_bias, pool);
  if (f.out.numel() == 0) return f.out;
  FireArgs& a = f.args;
  // Each kernel family reads its own packed form of the weights. Neither
  // touches the raw ones: after `model.to(memory_format=torch.channels_last)`
  // they are channels-last too, and making them contiguous would copy them
  // on every call.
  const FireKernel& kernel = current_kernel();
  a.w_block = a.channels_last ? kChannelPad : kernel.nchw_block;
  const std::shared_ptr<const PackedWeights> packed = packed_weights(
      squeeze_weight, expand1x1_weight, expand3x3_weight, {a.channels_last, a.w_block});
  const float* base = packed->data.data_ptr<float>();
  a.w_s = base + packed->offset[0], a.w_e1 = base + packed->offset[1];
  a.w_e3 = base + packed->offset[2];
  run_fire(a, kernel);
  return f.out;
}

at::Tensor sparse_fire(const at::Tensor& x, const at::Tensor& squeeze_values,
                       const at::Tensor& squeeze_index,
                       const std::optional<at::Tensor>& squeeze_bias,
                       const at::Tensor& expand_values, const at::Tensor& expand_index,
                       const std::optional<at::Tensor>& expand1x1_bias,
                       const std::optional<at::Tensor>& expand3x3_bias, int64_t S, int64_t E1,
                       int64_t E3, int64_t block, const PoolSpec& pool) {
  const int64_t s_groups = (S + block - 1) / block, e_groups = (E1 + E3 + block - 1) / block;
  check_sparse_part(squeeze_values, squeeze_index, s_groups, block, "squeeze");
  check_sparse_part(expand_values, expand_index, e_groups, block, "expand");
  const int64_t C = x.size(1), W = pooled_size(x.size(3), pool);
  const int64_t lp = squeeze_row_pitch(max_band_pixels(S, W), W);
  check_positions(squeeze_index, s_groups, 0, C - 1, "squeeze");
  check_positions(expand_index, e_groups, -W, (3 * S - 1) * lp + W, "expand");

  Forward f = start_forward(x, S, E1, E3, squeeze_bias, expand1x1_bias, expand3x3_bias, pool);
  if (f.out.numel() == 0) return f.out;
  FireSparse sp;
  sp.block = block;
  sp.s_rows = squeeze_index.data_ptr<int32_t>();
  sp.s_chan = sp.s_rows + s_groups + 1;
  sp.s_values = squeeze_values.data_ptr<float>();
  sp.e_rows = expand_index.data_ptr<int32_t>();
  sp.e_offset = sp.e_rows + e_groups + 1;
  sp.e_values = expand_values.data_ptr<float>();
  f.args.sparse = &sp;
  run_fire(f.args, current_kernel());
  return f.out;
}

}  // namespace

at::Tensor fire_cpu(const at::Tensor& x, const at::Tensor& squeeze_weight,
                    const std::optional<at::Tensor>& squeeze_bias,
                    const at::Tensor& expand1x1_weight,
                    const std::optional<at::Tensor>& expand1x1_bias,
                    const at::Tensor& expand3x3_weight,
                    const std::optional<at::Tensor>& expand3x3_bias) {
  check_fire_args(x, squeeze_weight, squeeze_bias, expand1x1_weight, expand1x1_bias,
                  expand3x3_weight, expand3x3_bias);
  return dense_fire(x, squeeze_weight, squeeze_bias, expand1x1_weight, expand1x1_bias,
                    expand3x3_weight, expand3x3_bias, kNoPool);
}

at::Tensor maxpool_fire_cpu(const at::Tensor& x, const at::Tensor& squeeze_weight,
                            const std::optional<at::Tensor>& squeeze_bias,
                            const at::Tensor& expand1x1_weight,
                            const std::optional<at::Tensor>& expand1x1_bias,
                            const at::Tensor& expand3x3_weight,
                            const std::optional<at::Tensor>& expand3x3_bias,
                            int64_t pool_kernel, int64_t pool_stride, bool pool_ceil_mode) {
  check_fire_args(x, squeeze_weight, squeeze_bias, expand1x1_weight, expand1x1_bias,
                  expand3x3_weight, expand3x3_bias, "maxpool_fire");
  const PoolSpec pool{pool_kernel, pool_stride, pool_ceil_mode};
  check_pool_args(x, pool, "maxpool_fire");
  return dense_fire(x, squeeze_weight, squeeze_bias, expand1x1_weight, expand1x1_bias,
                    expand3x3_weight, expand3x3_bias, pool);
}

at::Tensor fire_sparse_cpu(const at::Tensor& x, const at::Tensor& squeeze_values,
                           const at::Tensor& squeeze_index,
                           const std::optional<at::Tensor>& squeeze_bias,
                           const at::Tensor& expand_values, const at::Tensor& expand_index,
                           const std::optional<at::Tensor>& expand1x1_bias,
                           const std::optional<at::Tensor>& expand3x3_bias,
                           int64_t squeeze_channels, int64_t expand1x1_channels,
                           int64_t expand3x3_channels, int64_t block, int64_t width) {
  check_sparse_args(x, squeeze_bias, expand1x1_bias, expand3x3_bias, squeeze_channels,
                    expand1x1_channels, expand3x3_channels, block, width);
  return sparse_fire(x, squeeze_values, squeeze_index, squeeze_bias, expand_values, expand_index,
                     expand1x1_bias, expand3x3_bias, squeeze_channels, expand1x1_channels,
                     expand3x3_channels, block, kNoPool);
}

at::Tensor maxpool_fire_sparse_cpu(
    const at::Tensor& x, const at::Tensor& squeeze_values, const at::Tensor& squeeze_index,
    const std::optional<at::Tensor>& squeeze_bias, const at::Tensor& expand_values,
    const at::Tensor& expand_index, const std::optional<at::Tensor>& expand1x1_bias,
    const std::optional<at::Tensor>& expand3x3_bias, int64_t squeeze_channels,
    int64_t expand1x1_channels, int64_t expand3x3_channels, int64_t block, int64_t width,
    int64_t pool_kernel, int64_t pool_stride, bool pool_ceil_mode) {
  const PoolSpec pool{pool_kernel, pool_stride, pool_ceil_mode};
  check_sparse_args(x, squeeze_bias, expand1x1_bias, expand3x3_bias, squeeze_channels,
                    expand1x1_channels, expand3x3_channels, block, width, pool,
                    "maxpool_fire_sparse");
  return sparse_fire(x, squeeze_values, squeeze_index, squeeze_bias, expand_values, expand_index,
                     expand1x1_bias, expand3x3_bias, squeeze_channels, expand1x1_channels,
                     expand3x3_channels, block, pool);
}

TORCH_LIBRARY_IMPL(fire_kernels, CPU, m) {
  m.impl("fire", &fire_cpu);
  m.impl("maxpool_fire", &maxpool_fire_cpu);
  m.impl("fire_sparse", &fire_sparse_cpu);
  m.impl("maxpool_fire_sparse", &maxpool_fire_sparse_cpu);
}

}  // namespace fire_kernels
