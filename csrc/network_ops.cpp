// The CPU kernels of the operators for a network's layers around its Fires
// (schemas in fire_kernels/ops.py): conv_relu_maxpool (the stem) and
// conv1x1_relu_avgpool and its sparse twin (the classifier head; its weights
// packed by pack_sparse_conv1x1, pack_sparse.cpp).
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <torch/library.h>

#include <cstdint>
#include <memory>

#include "activation_cache.h"
#include "fire_checks.h"
#include "fire_ops.h"
#include "fire_scheduler.h"
#include "network_kernel.h"
#include "pack_weights.h"

namespace fire_kernels {

namespace {

at::Tensor contiguous_or_undefined(const std::optional<at::Tensor>& t) {
  return t ? t->contiguous() : at::Tensor();
}

// The head's view of x: pixel p of image n at n*x_sn + p*x_ps (a copy where the
// pixels are not evenly spaced, as in a crop).
HeadArgs head_args(const at::Tensor& x, int64_t O, const at::Tensor& out) {
  HeadArgs a{};
  a.N = x.size(0), a.C = x.size(1), a.HW = x.size(2) * x.size(3), a.O = O;
  a.x = x.data_ptr<float>();
  a.x_sn = x.stride(0), a.x_sc = x.stride(1);
  a.x_ps = x.size(3) == 1 ? x.stride(2) : x.stride(3);
  a.out = out.data_ptr<float>();
  return a;
}

bool uniform_pixels(const at::Tensor& x) {
  return x.size(2) == 1 || x.size(3) == 1 || x.stride(2) == x.size(3) * x.stride(3);
}

}  // namespace

at::Tensor conv_relu_maxpool_cpu(const at::Tensor& x, const at::Tensor& weight,
                                 const std::optional<at::Tensor>& bias, int64_t stride,
                                 int64_t padding, int64_t pool_kernel, int64_t pool_stride,
                                 bool pool_ceil_mode) {
  const PoolSpec pool{pool_kernel, pool_stride, pool_ceil_mode};
  check_stem_args(x, weight, bias, stride, padding, pool);
  StemArgs a{};
  a.N = x.size(0), a.C = x.size(1), a.H = x.size(2), a.W = x.size(3);
  a.x = x.data_ptr<float>();
  a.x_sn = x.stride(0), a.x_sc = x.stride(1), a.x_sh = x.stride(2), a.x_sw = x.stride(3);
  a.O = weight.size(0), a.k = weight.size(2), a.stride = stride, a.pad = padding;
  a.Hc = conv_size(a.H, a.k, stride, padding), a.Wc = conv_size(a.W, a.k, stride, padding);
  a.pool = {pool_kernel, pool_stride, a.Hc, a.Wc};
  a.Ho = pooled_size(a.Hc, pool), a.Wo = pooled_size(a.Wc, pool);
  at::Tensor out = empty_activation({a.N, a.O, a.Ho, a.Wo}, at::MemoryFormat::ChannelsLast);
  if (out.numel() == 0) return out;
  const at::Tensor b = contiguous_or_undefined(bias);
  const std::shared_ptr<const PackedWeights> packed = packed_conv_weight(weight);
  a.w = packed->data.data_ptr<float>();
  a.b = b.defined() ? b.data_ptr<float>() : nullptr;
  a.out = out.data_ptr<float>();
  run_stem(a);
  return out;
}

at::Tensor conv1x1_relu_avgpool_cpu(const at::Tensor& x, const at::Tensor& weight,
                                    const std::optional<at::Tensor>& bias) {
  check_head_args(x, weight, bias);
  at::Tensor out = at::empty({x.size(0), weight.size(0), 1, 1}, x.options());
  if (out.numel() == 0) return out;
  const at::Tensor xu = uniform_pixels(x) ? x : x.contiguous(at::MemoryFormat::ChannelsLast);
  const at::Tensor b = contiguous_or_undefined(bias);
  HeadArgs a = head_args(xu, weight.size(0), out);
  const std::shared_ptr<const PackedWeights> packed = packed_conv_weight(weight);
  a.w = packed->data.data_ptr<float>();
  a.b = b.defined() ? b.data_ptr<float>() : nullptr;
  run_head(a);
  return out;
}

at::Tensor conv1x1_relu_avgpool_sparse_cpu(const at::Tensor& x, const at::Tensor& values,
                                           const at::Tensor& index,
                                           const std::optional<at::Tensor>& bias,
                                           int64_t out_channels, int64_t block) {
  check_head_sparse_args(x, bias, out_channels, block);
  const int64_t groups = (out_channels + block - 1) / block;
  check_sparse_part(values, index, groups, block, "weight");
  check_positions(index, groups, 0, x.size(1) - 1, "weight");
  at::Tensor out = at::empty({x.size(0), out_channels, 1, 1}, x.options());
  if (out.numel() == 0) return out;
  const at::Tensor xu = uniform_pixels(x) ? x : x.contiguous(at::MemoryFormat::ChannelsLast);
  const at::Tensor b = contiguous_or_undefined(bias);
  HeadArgs a = head_args(xu, out_channels, out);
  FireSparse sp{};
  sp.block = block;
  sp.s_rows = index.data_ptr<int32_t>();
  sp.s_chan = sp.s_rows + groups + 1;
  sp.s_values = values.data_ptr<float>();
  a.sparse = &sp;
  a.b = b.defined() ? b.data_ptr<float>() : nullptr;
  run_head(a);
  return out;
}

TORCH_LIBRARY_IMPL(fire_kernels, CPU, m) {
  m.impl("conv_relu_maxpool", &conv_relu_maxpool_cpu);
  m.impl("conv1x1_relu_avgpool", &conv1x1_relu_avgpool_cpu);
  m.impl("conv1x1_relu_avgpool_sparse", &conv1x1_relu_avgpool_sparse_cpu);
}

}  // namespace fire_kernels
