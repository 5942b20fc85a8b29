// Weights of the channels-last kernels: transposed so that output channels
// are innermost (vector loads along them), zero-padded to kChannelPad, and
// cached so that a Fire's weights are packed once, not on every call.
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <memory>

namespace fire_kernels {

struct PackedHwc {
  at::Tensor data;  // float32, one allocation holding the three blocks below
  int64_t Sp, E1p, E3p;
  int64_t ws, we1, we3;  // offsets in `data`: [C][Sp], [S][E1p], [9][S][E3p]
};

// The packed form of (squeeze_weight, expand1x1_weight, expand3x3_weight).
//
// Cached: an entry is reused only while all three tensors are the very same
// TensorImpls (held by weak pointers, so a freed tensor whose address is
// reused cannot match), with the same data pointers and the same version
// counters. Every in-place change through autograd-visible ops (optimizer
// steps, load_state_dict, `with torch.no_grad(): w.mul_(m)`) bumps the
// version and so causes a repack. Writes through `w.data` bypass the version
// counter, as they bypass autograd; inference tensors have none, so they are
// packed on every call.
std::shared_ptr<const PackedHwc> packed_hwc_weights(const at::Tensor& squeeze_weight,
                                                    const at::Tensor& expand1x1_weight,
                                                    const at::Tensor& expand3x3_weight);

// For tests: how many times weights were packed, and emptying the cache.
int64_t hwc_pack_count();
void clear_hwc_pack_cache();

}  // namespace fire_kernels
