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

// fire: the input, the three conv weights and their biases; then what only
// the CPU kernel needs (CPU tensors, float32).
void check_fire_args(const at::Tensor& x, const at::Tensor& squeeze_weight,
                     const std::optional<at::Tensor>& squeeze_bias,
                     const at::Tensor& expand1x1_weight,
                     const std::optional<at::Tensor>& expand1x1_bias,
                     const at::Tensor& expand3x3_weight,
                     const std::optional<at::Tensor>& expand3x3_bias);

// fire_sparse: the input, channel counts, block, packed width and biases; the
// packed entries themselves: check_sparse_part and check_positions.
void check_sparse_args(const at::Tensor& x, const std::optional<at::Tensor>& squeeze_bias,
                       const std::optional<at::Tensor>& expand1x1_bias,
                       const std::optional<at::Tensor>& expand3x3_bias, int64_t squeeze_channels,
                       int64_t expand1x1_channels, int64_t expand3x3_channels, int64_t block,
                       int64_t width);

// One packed conv of fire_sparse: [groups + 1] row starts, then one position
// per entry (index), and `block` values per entry.
void check_sparse_part(const at::Tensor& values, const at::Tensor& index, int64_t groups,
                       int64_t block, const char* name);
// Every entry position of a packed conv within [lo, hi], so that no input can
// make the kernel read outside its buffers.
void check_positions(const at::Tensor& index, int64_t groups, int64_t lo, int64_t hi,
                     const char* name);

// pack_sparse: three float32 CPU conv weights of a Fire, the group size, the width.
void check_pack_args(const at::Tensor& squeeze_weight, const at::Tensor& expand1x1_weight,
                     const at::Tensor& expand3x3_weight, int64_t block, int64_t width);

}  // namespace fire_kernels
