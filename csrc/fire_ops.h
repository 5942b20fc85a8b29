// The CPU kernels of the registered operators (fire_ops.cpp, network_ops.cpp),
// for callers inside the extension that skip the dispatcher: a network program
// (network_program.cpp) runs a chain of them in one call. Each checks its
// arguments as the operator does.
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <optional>

namespace fire_kernels {

at::Tensor fire_cpu(const at::Tensor& x, const at::Tensor& squeeze_weight,
                    const std::optional<at::Tensor>& squeeze_bias,
                    const at::Tensor& expand1x1_weight,
                    const std::optional<at::Tensor>& expand1x1_bias,
                    const at::Tensor& expand3x3_weight,
                    const std::optional<at::Tensor>& expand3x3_bias);

at::Tensor maxpool_fire_cpu(const at::Tensor& x, const at::Tensor& squeeze_weight,
                            const std::optional<at::Tensor>& squeeze_bias,
                            const at::Tensor& expand1x1_weight,
                            const std::optional<at::Tensor>& expand1x1_bias,
                            const at::Tensor& expand3x3_weight,
                            const std::optional<at::Tensor>& expand3x3_bias,
                            int64_t pool_kernel, int64_t pool_stride, bool pool_ceil_mode);

at::Tensor fire_sparse_cpu(const at::Tensor& x, const at::Tensor& squeeze_values,
                           const at::Tensor& squeeze_index,
                           const std::optional<at::Tensor>& squeeze_bias,
                           const at::Tensor& expand_values, const at::Tensor& expand_index,
                           const std::optional<at::Tensor>& expand1x1_bias,
                           const std::optional<at::Tensor>& expand3x3_bias,
                           int64_t squeeze_channels, int64_t expand1x1_channels,
                           int64_t expand3x3_channels, int64_t block, int64_t width);

at::Tensor maxpool_fire_sparse_cpu(
    const at::Tensor& x, const at::Tensor& squeeze_values, const at::Tensor& squeeze_index,
    const std::optional<at::Tensor>& squeeze_bias, const at::Tensor& expand_values,
    const at::Tensor& expand_index, const std::optional<at::Tensor>& expand1x1_bias,
    const std::optional<at::Tensor>& expand3x3_bias, int64_t squeeze_channels,
    int64_t expand1x1_channels, int64_t expand3x3_channels, int64_t block, int64_t width,
    int64_t pool_kernel, int64_t pool_stride, bool pool_ceil_mode);

at::Tensor conv_relu_maxpool_cpu(const at::Tensor& x, const at::Tensor& weight,
                                 const std::optional<at::Tensor>& bias, int64_t stride,
                                 int64_t padding, int64_t pool_kernel, int64_t pool_stride,
                                 bool pool_ceil_mode);

at::Tensor conv1x1_relu_avgpool_cpu(const at::Tensor& x, const at::Tensor& weight,
                                    const std::optional<at::Tensor>& bias);

at::Tensor conv1x1_relu_avgpool_sparse_cpu(const at::Tensor& x, const at::Tensor& values,
                                           const at::Tensor& index,
                                           const std::optional<at::Tensor>& bias,
                                           int64_t out_channels, int64_t block);

}  // namespace fire_kernels
