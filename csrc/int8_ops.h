// The CPU kernels of the int8 operators (int8_ops.cpp; schemas in
// fire_kernels/int8_ops.py), for callers inside the extension that skip the
// dispatcher: a network program (network_program.cpp) runs a chain of them in
// one call. Each checks its arguments as the operator does.
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>

namespace fire_kernels {

at::Tensor fire_int8_cpu(const at::Tensor& x, const at::Tensor& squeeze,
                         const at::Tensor& squeeze_bias, const at::Tensor& squeeze_multiplier,
                         const at::Tensor& expand1x1, const at::Tensor& expand1x1_bias,
                         const at::Tensor& expand1x1_multiplier, const at::Tensor& expand3x3,
                         const at::Tensor& expand3x3_bias,
                         const at::Tensor& expand3x3_multiplier, int64_t squeeze_channels,
                         int64_t expand1x1_channels, int64_t expand3x3_channels,
                         int64_t pool_kernel, int64_t pool_stride, bool pool_ceil_mode);

at::Tensor fire_int8_sparse_cpu(const at::Tensor& x, const at::Tensor& squeeze,
                                const at::Tensor& squeeze_bias,
                                const at::Tensor& squeeze_multiplier,
                                const at::Tensor& expand_rows, const at::Tensor& expand_entries,
                                const at::Tensor& expand_values, const at::Tensor& expand_bias,
                                const at::Tensor& expand_multiplier, int64_t squeeze_channels,
                                int64_t expand1x1_channels, int64_t expand3x3_channels,
                                int64_t pool_kernel, int64_t pool_stride, bool pool_ceil_mode);

at::Tensor head_int8_cpu(const at::Tensor& x, const at::Tensor& weight, const at::Tensor& bias,
                         const at::Tensor& multiplier, int64_t out_channels, double output_scale);

at::Tensor head_int8_sparse_cpu(const at::Tensor& x, const at::Tensor& rows,
                                const at::Tensor& entries, const at::Tensor& values,
                                const at::Tensor& bias, const at::Tensor& multiplier,
                                int64_t out_channels, double output_scale);

at::Tensor stem_int8_cpu(const at::Tensor& x, const at::Tensor& weight, const at::Tensor& bias,
                         const at::Tensor& multiplier, int64_t out_channels, int64_t kernel,
                         int64_t stride, double input_scale, int64_t input_zero_point,
                         int64_t pool_kernel, int64_t pool_stride, bool pool_ceil_mode);

at::Tensor quantize_uint8_cpu(const at::Tensor& x, double scale, int64_t zero_point);

}  // namespace fire_kernels
