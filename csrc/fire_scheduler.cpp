// How a forward is cut into work and spread over threads.
//
// The default: each image's pixels are cut into bands (at most
// max_band_pixels, whole micro-kernel tiles each, band_start), and threads
// take runs of consecutive bands (FirePhase::kBands): each band computes its
// own squeeze with its halo in the thread's own scratch, so threads share
// nothing. When there are fewer bands than threads (a small image at batch
// 1: the 13x13 SqueezeNet layers), cutting an image into more bands would
// recompute halos and have every thread stream all the weights; instead the
// image is computed as one band whose squeeze buffers all threads share, in
// three steps with a join between them: the squeeze split by pixels, the
// padding zeros, then the expands split by output channels (channel_split).
#include "fire_scheduler.h"

#include <ATen/Parallel.h>
#include <c10/util/Exception.h>

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <memory>

#include "cpu_features.h"
#include "thread_pool.h"

namespace fire_kernels {

namespace {

std::atomic<bool> skipping_kernels{false};

// With fewer than this many work items per thread, the bands are made a
// multiple of the thread count, so that no thread idles at the end while
// another computes its last band.
constexpr int64_t kBalancedItemsPerThread = 4;

// Bands per image for N images of `rows` units (rows, tiles) each: as few as
// possible (each costs a halo), but, with few items, a count of items that is
// a multiple of the thread count.
int64_t balanced_bands(int64_t N, int64_t bands, int64_t rows, int64_t threads) {
  if (N * bands < kBalancedItemsPerThread * threads)
    while ((N * bands) % threads != 0 && bands < rows) ++bands;
  return bands;
}

// Sets the bands of `a` for bands of whole `unit`-pixel tiles. Returns true
// if each image is to be computed as one band shared by all threads.
bool choose_bands(FireArgs& a, int64_t threads, int64_t unit) {
  const int64_t HW = a.H * a.W;
  int64_t bands = (HW + max_band_pixels(a.S, a.W) - 1) / max_band_pixels(a.S, a.W);
  a.band_unit = unit;
  if (threads > 1 && bands == 1 && a.N < threads) {
    a.band = HW;
    a.bands_per_image = 1;
    return true;
  }
  bands = balanced_bands(a.N, bands, HW, threads);
  const int64_t units = (HW + unit - 1) / unit;
  a.bands_per_image = bands;
  a.band = std::min(HW, unit * ((units + bands - 1) / bands));
  return false;
}

// Output channel where the expands of a shared image are split into `parts`
// of equal work. Dense: an expand 1x1 channel costs S MACs a pixel, a 3x3 one
// 9*S; the split falls at a multiple of w_block within its expand, where a
// block of the packed weights starts. Sparse: a group costs its entries; the
// split falls at a multiple of kChannelPad of the concat, so groups stay whole.
int64_t channel_split(const FireArgs& a, int64_t part, int64_t parts) {
  const int64_t E = a.E1 + a.E3;
  if (part >= parts) return E;
  auto nearest = [](int64_t n, int64_t unit) { return (n + unit / 2) / unit * unit; };
  if (!a.sparse) {
    const int64_t target = (a.E1 + 9 * a.E3) * part / parts;
    if (target <= a.E1) return std::min(a.E1, nearest(target, a.w_block));
    return std::min(E, a.E1 + nearest((target - a.E1) / 9, a.w_block));
  }
  const int64_t groups = (E + a.sparse->block - 1) / a.sparse->block;
  const int64_t target = int64_t{a.sparse->e_rows[groups]} * part / parts;
  const int32_t* g = std::lower_bound(a.sparse->e_rows, a.sparse->e_rows + groups, target);
  return std::min(E, nearest((g - a.sparse->e_rows) * a.sparse->block, kChannelPad));
}

// The threads a kernel call can share its work among: one inside another
// parallel region (a network program running images on threads of their own),
// where parallel_for runs inline.
int64_t available_threads() { return at::in_parallel_region() ? 1 : at::get_num_threads(); }

// Per-thread scratch, kept between calls (the pool's threads persist).
// Zero-filled when it grows, so that the halo lanes tiles read but never
// store are always finite.
enum class Scratch { kKernel, kShared };
float* thread_scratch(int64_t floats, Scratch kind) {
  struct Free {
    void operator()(float* p) const { std::free(p); }
  };
  thread_local std::unique_ptr<float, Free> buffers[2];
  thread_local int64_t capacities[2] = {0, 0};
  const int k = static_cast<int>(kind);
  if (floats > capacities[k]) {
    const size_t bytes = (static_cast<size_t>(floats) * sizeof(float) + 63) / 64 * 64;
    buffers[k].reset(static_cast<float*>(std::aligned_alloc(64, bytes)));
    TORCH_CHECK(buffers[k], "fire: could not allocate ", bytes, " bytes of scratch");
    std::fill_n(buffers[k].get(), floats, 0.f);
    capacities[k] = floats;
  }
  return buffers[k].get();
}

// The three steps of image n computed by all threads on shared squeeze buffers.
void run_shared_image(const FireArgs& a, const FireKernel& kernel, int64_t n, int64_t threads,
                      int64_t scratch_floats, float* shared) {
  const int64_t HW = a.H * a.W;
  const int64_t chunks = (HW + kSharedSplitAlign - 1) / kSharedSplitAlign;
  parallel_for(0, threads, 1, [&](int64_t begin, int64_t end) {
    const int64_t q0 = std::min(HW, chunks * begin / threads * kSharedSplitAlign);
    const int64_t q1 = std::min(HW, chunks * end / threads * kSharedSplitAlign);
    if (q0 < q1)
      kernel.run(a, FireWork{FirePhase::kSqueeze, q0, q1, n, shared},
                 thread_scratch(scratch_floats, Scratch::kKernel));
  });
  kernel.run(a, FireWork{FirePhase::kPadding, 0, 0, n, shared},
             thread_scratch(scratch_floats, Scratch::kKernel));
  parallel_for(0, threads, 1, [&](int64_t begin, int64_t end) {
    const int64_t c0 = channel_split(a, begin, threads), c1 = channel_split(a, end, threads);
    if (c0 < c1)
      kernel.run(a, FireWork{FirePhase::kExpand, c0, c1, n, shared},
                 thread_scratch(scratch_floats, Scratch::kKernel));
  });
}

}  // namespace

const FireKernel& current_kernel() {
  switch (current_isa()) {
    case Isa::kAvx512:
      return kFireKernelAvx512;
    case Isa::kAvx2:
      return kFireKernelAvx2;
    case Isa::kPortable:
      break;
  }
  return kFireKernelPortable;
}

void skip_kernels(bool on) { skipping_kernels.store(on, std::memory_order_relaxed); }

void run_fire(FireArgs& a, const FireKernel& kernel) {
  if (skipping_kernels.load(std::memory_order_relaxed)) return;
  const int64_t threads = available_threads();
  // The sparse kernels take pixels in tiles of their own, per group size.
  const int64_t unit =
      a.sparse ? 1 : (a.channels_last ? kernel.nhwc_pixels : kernel.nchw_pixels);
  const bool shared = choose_bands(a, threads, unit);
  const int64_t scratch_floats = fire_scratch_layout(a).total;
  if (!shared) {
    parallel_for(0, a.N * a.bands_per_image, 1, [&](int64_t begin, int64_t end) {
      kernel.run(a, FireWork{FirePhase::kBands, begin, end, 0, nullptr},
                 thread_scratch(scratch_floats, Scratch::kKernel));
    });
    return;
  }
  float* buffers = thread_scratch(scratch_floats, Scratch::kShared);
  for (int64_t n = 0; n < a.N; ++n) run_shared_image(a, kernel, n, threads, scratch_floats, buffers);
}

const NetworkKernel& current_network_kernel() {
  switch (current_isa()) {
    case Isa::kAvx512:
      return kNetworkKernelAvx512;
    case Isa::kAvx2:
      return kNetworkKernelAvx2;
    case Isa::kPortable:
      break;
  }
  return kNetworkKernelPortable;
}

void run_stem(const StemArgs& a) {
  if (skipping_kernels.load(std::memory_order_relaxed)) return;
  const NetworkKernel& kernel = current_network_kernel();
  const int64_t bands = balanced_bands(a.N, 1, a.Ho, available_threads());
  const int64_t floats = stem_scratch_layout(a).total;
  parallel_for(0, a.N * bands, 1, [&](int64_t begin, int64_t end) {
    float* scratch = thread_scratch(floats, Scratch::kKernel);
    for (int64_t item = begin; item < end; ++item) {
      const int64_t n = item / bands, b = item % bands;
      kernel.stem(a, n, a.Ho * b / bands, a.Ho * (b + 1) / bands, scratch);
    }
  });
}

void run_head(const HeadArgs& a) {
  if (skipping_kernels.load(std::memory_order_relaxed)) return;
  const NetworkKernel& kernel = current_network_kernel();
  const int64_t threads = available_threads();
  // Parts of an image's output channels, at multiples of kChannelPad.
  const int64_t blocks = (a.O + kChannelPad - 1) / kChannelPad;
  const int64_t parts = a.N < threads ? std::min(blocks, (threads + a.N - 1) / a.N) : 1;
  const int64_t floats = head_scratch_floats(a);
  parallel_for(0, a.N * parts, 1, [&](int64_t begin, int64_t end) {
    float* scratch = thread_scratch(floats, Scratch::kKernel);
    for (int64_t item = begin; item < end; ++item) {
      const int64_t n = item / parts, part = item % parts;
      kernel.head(a, n, std::min(a.O, blocks * part / parts * kChannelPad),
                  std::min(a.O, blocks * (part + 1) / parts * kChannelPad), scratch);
    }
  });
}

}  // namespace fire_kernels
