// The memory the fused operators' outputs live in: blocks kept for reuse after
// their tensors die, as ONNX Runtime's arena keeps its activations.
//
// Why: from glibc, an activation of a few 100 KB or more can come back from the kernel as
// fresh pages on every forward (mmap, or a heap trimmed when it was freed), and
// each 4 KiB page costs a fault and a clear. A fused SqueezeNet 1.1 at batch 16
// took 13,741 page faults per forward, and 13-20 % less time with glibc told to
// keep its memory (its mmap and trim thresholds raised). Outputs allocated here
// reuse the blocks earlier outputs released, in this forward or the last.
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>

namespace fire_kernels {

// An uninitialised float32 CPU tensor of `sizes` in `format`, whose storage
// comes from the cache (large) or PyTorch's CPU allocator (small). It behaves as
// any tensor: resizable, freed (back to the cache) with its last reference.
at::Tensor empty_activation(at::IntArrayRef sizes, at::MemoryFormat format);

// Frees every cached block; returns the bytes freed.
int64_t empty_activation_cache();
// Bytes of free blocks the cache holds now.
int64_t activation_cache_bytes();

}  // namespace fire_kernels
