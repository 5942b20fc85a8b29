// The CPU scheduler: how one forward of a fused Fire, stem or head is cut into
// pieces and spread over the extension's thread pool (thread_pool.h;
// torch.set_num_threads governs it).
#pragma once

#include "fire_kernel.h"
#include "network_kernel.h"

namespace fire_kernels {

// For measuring what a forward costs outside the kernels: while on, run_fire,
// run_stem and run_head return at once, leaving their outputs unwritten.
void skip_kernels(bool on);

// The kernel of the current ISA (cpu_features.h). A forward reads it once:
// its weights are packed for that kernel's tiles.
const FireKernel& current_kernel();

// Runs the Fire of `a` (its band fields are set here) on `kernel`.
void run_fire(FireArgs& a, const FireKernel& kernel);

// The stem and head kernels of the current ISA.
const NetworkKernel& current_network_kernel();
// The stem: output rows of every image, in bands of rows over threads (a band
// recomputes the conv rows its first pool window shares with the band above).
void run_stem(const StemArgs& a);
// The head: images over threads; with fewer images than threads, each image's
// output channels split between them.
void run_head(const HeadArgs& a);

}  // namespace fire_kernels
