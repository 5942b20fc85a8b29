// Argument checks of the CPU operators: the C++ twin of
// fire_kernels/validation.py, which every Python entry point and fake kernel
// runs first. Here only what the kernels need to read and write within
// bounds, with the same messages and exception types (ValueError, TypeError,
// RuntimeError), for callers of torch.ops.fire_kernels.* that skip Python;
// tests/test_errors.py compares the two.
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <optional>

namespace fire_kernels {

// A max pool fused into an op's read of its input: kernel x kernel windows,
// `stride` apart, no padding, ceil_mode as nn.MaxPool2d's. kernel 1: none.
struct PoolSpec {
  int64_t kernel, stride;
  bool ceil_mode;
};
constexpr PoolSpec kNoPool{1, 1, false};

// The pooled size of a dimension of `in` pixels (nn.MaxPool2d's rule: with
// ceil_mode the last window may hang over the edge, but must start inside).
inline int64_t pooled_size(int64_t in, const PoolSpec& p) {
  const int64_t span = in - p.kernel + (p.ceil_mode ? p.stride - 1 : 0);
  int64_t out = (span >= 0 ? span / p.stride : -((-span + p.stride - 1) / p.stride)) + 1;
  if (p.ceil_mode && (out - 1) * p.stride >= in) --out;
  return out;
}

// fire (and maxpool_fire, `who`): the input, the three conv weights and their
// biases; then what only the CPU kernel needs (CPU tensors, float32).
void check_fire_args(const at::Tensor& x, const at::Tensor& squeeze_weight,
                     const std::optional<at::Tensor>& squeeze_bias,
                     const at::Tensor& expand1x1_weight,
                     const std::optional<at::Tensor>& expand1x1_bias,
                     const at::Tensor& expand3x3_weight,
                     const std::optional<at::Tensor>& expand3x3_bias, const char* who = "fire");

// The pool of a maxpool_* op on the 4-D input x: positive sizes, and windows
// that fit.
void check_pool_args(const at::Tensor& x, const PoolSpec& pool, const char* who);

// fire_sparse (and maxpool_fire_sparse with its pool, `who`): the input, the
// pool, channel counts, block, packed width (the Fire's input's, pooled) and
// biases; the packed entries themselves: check_sparse_part and check_positions.
void check_sparse_args(const at::Tensor& x, const std::optional<at::Tensor>& squeeze_bias,
                       const std::optional<at::Tensor>& expand1x1_bias,
                       const std::optional<at::Tensor>& expand3x3_bias, int64_t squeeze_channels,
                       int64_t expand1x1_channels, int64_t expand3x3_channels, int64_t block,
                       int64_t width, const PoolSpec& pool = kNoPool,
                       const char* who = "fire_sparse");

// One packed conv of fire_sparse: [groups + 1] row starts, then one position
// per entry (index), and `block` values per entry.
void check_sparse_part(const at::Tensor& values, const at::Tensor& index, int64_t groups,
                       int64_t block, const char* name);
// Every entry position of a packed conv within [lo, hi], so that no input can
// make the kernel read outside its buffers.
void check_positions(const at::Tensor& index, int64_t groups, int64_t lo, int64_t hi,
                     const char* name);

// conv_relu_maxpool: the input, a square conv weight [O][C][k][k] for its
// channels, the bias, stride and padding whose output is at least 1x1, and the
// pool of that output; then CPU tensors, float32.
void check_stem_args(const at::Tensor& x, const at::Tensor& weight,
                     const std::optional<at::Tensor>& bias, int64_t stride, int64_t padding,
                     const PoolSpec& pool);
// The conv output size of a dimension of `in` pixels.
inline int64_t conv_size(int64_t in, int64_t k, int64_t stride, int64_t padding) {
  return (in + 2 * padding - k) / stride + 1;
}

// conv1x1_relu_avgpool: the input and a 1x1 conv weight [O][C][1][1] for its
// channels, the bias; then CPU tensors, float32.
void check_head_args(const at::Tensor& x, const at::Tensor& weight,
                     const std::optional<at::Tensor>& bias);
// conv1x1_relu_avgpool_sparse: the input, the bias of `out_channels`, the
// block; the packed entries: check_sparse_part and check_positions.
void check_head_sparse_args(const at::Tensor& x, const std::optional<at::Tensor>& bias,
                            int64_t out_channels, int64_t block);

// pack_sparse: three float32 CPU conv weights of a Fire, the group size, the width.
void check_pack_args(const at::Tensor& squeeze_weight, const at::Tensor& expand1x1_weight,
                     const at::Tensor& expand3x3_weight, int64_t block, int64_t width);
// pack_sparse_conv1x1: a float32 CPU 1x1 conv weight, the group size.
void check_pack_conv1x1_args(const at::Tensor& weight, int64_t block);

}  // namespace fire_kernels
