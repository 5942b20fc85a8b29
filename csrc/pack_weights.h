// Weights of the dense kernels, packed in the order their micro-kernels read
// them and cached, so that a Fire's weights are packed once, not on every call.
//
// Each kernel family has its own form (PackLayout), both in blocks of output
// channels zero-padded to whole blocks, each block contiguous:
//
// * Channels last: panels of kChannelPad output channels, [K][taps][16] (K
//   input channels), output channels innermost for vector loads along them.
//   Rows of a [K][taps][E] layout instead lie 4 * E bytes apart; for E = 256
//   that is 1 KiB, and all of a tile's weight reads would fall into 4 of the
//   L1's 64 sets, missing L1 every time.
// * NCHW: blocks of the micro-kernel's Vec::CO output channels, [taps][K][CO],
//   the order its loops walk them (taps outside, channels inside), so that the
//   CO weights a tile broadcasts per step are one sequential stream. Read in
//   PyTorch's [E][K][taps] layout they would be CO streams, each step touching
//   CO cache lines.
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <memory>
#include <vector>

namespace fire_kernels {

struct PackLayout {
  bool channels_last;  // [K][taps][block] blocks; else NCHW [taps][K][block]
  int64_t block;       // output channels per block: kChannelPad, or the NCHW Vec::CO
};

struct PackedWeights {
  at::Tensor data;  // float32, one allocation holding every packed weight
  // Offsets in `data` of the packed weights, in the order they were given:
  // for a Fire, the squeeze (E = S, K = C, 1 tap), expand 1x1 (E = E1, K = S,
  // 1 tap) and expand 3x3 (E = E3, K = S, 9 taps, t = 3*dy + dx).
  std::vector<int64_t> offset;
};

// The packed form of a Fire's (squeeze_weight, expand1x1_weight, expand3x3_weight).
//
// Cached: an entry is reused only for the same layout while all its tensors
// are the very same TensorImpls (held by weak pointers, so a freed tensor
// whose address is reused cannot match), with the same data pointers and the
// same version counters. Every in-place change through autograd-visible ops
// (optimizer steps, load_state_dict, `with torch.no_grad(): w.mul_(m)`) bumps
// the version and so causes a repack. Writes through `w.data` bypass the
// version counter, as they bypass autograd; inference tensors have none, so
// they are packed on every call.
std::shared_ptr<const PackedWeights> packed_weights(const at::Tensor& squeeze_weight,
                                                    const at::Tensor& expand1x1_weight,
                                                    const at::Tensor& expand3x3_weight,
                                                    const PackLayout& layout);

// The packed form of one convolution's weight [O][C][kh][kw], as the GEMM
// [pixels][K] x [K][O] reads it: panels of kChannelPad output channels,
// [Op/16][K][16], with K = kh*kw*C in the order of an im2col row of a
// channels-last input, k = (dy*kw + dx)*C + c. Cached like the above.
std::shared_ptr<const PackedWeights> packed_conv_weight(const at::Tensor& weight);

// Empties the cache (fire_kernels.refresh_packed_weights(), after writes
// through `w.data`, which bypass the version counters).
void clear_pack_cache();

}  // namespace fire_kernels
