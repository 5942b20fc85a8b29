// Weights of the channels-last kernels: in panels of kChannelPad output
// channels, output channels innermost (vector loads along them), zero-padded,
// and cached so that a Fire's weights are packed once, not on every call.
//
// A panel holds all the weights one micro-kernel tile reads, [K][taps][16]
// (K input channels), contiguous. Rows of a [K][taps][E] layout instead lie
// 4 * E bytes apart; for E = 256 that is 1 KiB, and all of a tile's weight
// reads fell into 4 of the L1's 64 sets, missing L1 every time (callgrind).
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <memory>

namespace fire_kernels {

struct PackedHwc {
  at::Tensor data;  // float32, one allocation holding the three blocks below
  int64_t Sp;  // S rounded up to kChannelPad
  // Offsets in `data`: [Sp/16][C][16], [E1p/16][S][16], [E3p/16][S][9][16]
  // (E1p, E3p: E1, E3 rounded up to kChannelPad).
  int64_t ws, we1, we3;
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
