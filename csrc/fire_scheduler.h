// The CPU scheduler of the fused Fire: how one forward's work is cut into
// pieces and spread over PyTorch's thread pool (at::parallel_for, so
// torch.set_num_threads governs it).
#pragma once

#include "fire_kernel.h"

namespace fire_kernels {

// The kernel of the current ISA (cpu_features.h). A forward reads it once:
// its weights are packed for that kernel's tiles.
const FireKernel& current_kernel();

// Runs the Fire of `a` (its band fields are set here) on `kernel`.
void run_fire(FireArgs& a, const FireKernel& kernel);

}  // namespace fire_kernels
