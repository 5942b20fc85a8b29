// CPU kernel of the operator fire_kernels::fire (schema in fire_kernels/ops.py):
// checks the arguments, allocates the output in the input's memory format,
// splits the work into bands and runs them on PyTorch's thread pool with the
// per-ISA kernel chosen by cpu_features.
#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <torch/library.h>

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <memory>

#ifdef __linux__
#include <sys/mman.h>
#endif

#include "cpu_features.h"
#include "fire_kernel.h"
#include "pack_hwc.h"

namespace fire_kernels {

namespace {

void check_float_cpu(const at::Tensor& t, const char* name) {
  TORCH_CHECK(t.device().is_cpu(), "fire: ", name, " must be a CPU tensor, got one on ",
              t.device());
  TORCH_CHECK(t.scalar_type() == at::kFloat, "fire: the CPU kernel takes float32; ", name,
              " is ", t.scalar_type());
}

void check_weight(const at::Tensor& w, const char* name, int64_t out, int64_t in, int64_t k) {
  check_float_cpu(w, name);
  TORCH_CHECK(w.dim() == 4 && w.size(0) == out && w.size(1) == in && w.size(2) == k &&
                  w.size(3) == k,
              "fire expected ", name, " of shape [", out, ", ", in, ", ", k, ", ", k, "], got ",
              w.sizes());
}

void check_bias(const std::optional<at::Tensor>& b, const char* name, int64_t out) {
  if (!b) return;
  check_float_cpu(*b, name);
  TORCH_CHECK(b->dim() == 1 && b->size(0) == out, "fire expected ", name, " of shape [", out,
              "], got ", b->sizes());
}

// Pixel q = y*W + x of `t` (dims 2 and 3) at q * pixel_stride, if one exists.
bool uniform_pixels(const at::Tensor& t, int64_t* pixel_stride) {
  const int64_t H = t.size(2), W = t.size(3);
  if (W == 1) {
    *pixel_stride = t.stride(2);
    return true;
  }
  *pixel_stride = t.stride(3);
  return H == 1 || t.stride(2) == W * t.stride(3);
}

// Pixels per band: the three squeeze buffers of a band should stay well
// inside L2 (512 KiB per core on the machines we tune for), next to the
// weights that stream through.
constexpr int64_t kSqueezeBufferBytes = 192 * 1024;

// Splits the work: returns true if each image is to be computed as one band
// shared by all threads (see FirePhase), else sets the bands per image.
bool choose_bands(FireArgs& a, int64_t threads) {
  const int64_t HW = a.H * a.W;
  const int64_t per_pixel = 3 * a.S * static_cast<int64_t>(sizeof(float));
  const int64_t max_band = std::max<int64_t>(64, kSqueezeBufferBytes / per_pixel - 2 * a.W);
  int64_t bands = (HW + max_band - 1) / max_band;
  if (threads > 1 && bands == 1 && a.N < threads) {
    // Fewer images than threads, each small enough for one band: cutting them
    // into bands would recompute halos and have every thread stream all the
    // weights; share one squeeze and split the output channels instead.
    a.band = HW;
    a.bands_per_image = 1;
    return true;
  }
  // With few items, make their count a multiple of the thread count so no
  // thread idles at the end.
  if (a.N * bands < 4 * threads)
    while ((a.N * bands) % threads != 0 && bands < HW) ++bands;
  a.band = (HW + bands - 1) / bands;
  a.bands_per_image = (HW + a.band - 1) / a.band;
  return false;
}

FireKernelFn kernel_for(Isa isa) {
  switch (isa) {
    case Isa::kAvx512:
      return &fire_kernel_avx512;
    case Isa::kAvx2:
      return &fire_kernel_avx2;
    case Isa::kPortable:
      return &fire_kernel_portable;
  }
  return &fire_kernel_portable;
}

// Output channel where the expands of a shared image are split into `parts`
// of equal work: an expand 1x1 channel costs S MACs a pixel, a 3x3 one 9*S.
// Multiples of kChannelPad, so the channels-last kernels' vector loads of
// packed weights stay inside their padding.
int64_t channel_split(const FireArgs& a, int64_t part, int64_t parts) {
  if (part >= parts) return a.E1 + a.E3;
  const int64_t total = a.E1 + 9 * a.E3;
  const int64_t target = total * part / parts;
  const int64_t c = target <= a.E1 ? target : a.E1 + (target - a.E1) / 9;
  const int64_t aligned = (c + kChannelPad / 2) / kChannelPad * kChannelPad;
  return std::min(aligned, a.E1 + a.E3);
}

// Per-thread scratch, kept between calls (PyTorch's pool threads persist).
// Zero-filled when it grows, so the halo lanes that tiles read but never
// store are always finite. kind 0: the kernel's own scratch; kind 1: the
// squeeze buffers a calling thread shares with its workers.
float* thread_scratch(int64_t floats, int kind = 0) {
  struct Free {
    void operator()(float* p) const { std::free(p); }
  };
  thread_local std::unique_ptr<float, Free> buffers[2];
  thread_local int64_t capacities[2] = {0, 0};
  std::unique_ptr<float, Free>& buffer = buffers[kind];
  int64_t& capacity = capacities[kind];
  if (floats > capacity) {
    const size_t bytes = (static_cast<size_t>(floats) * sizeof(float) + 63) / 64 * 64;
    buffer.reset(static_cast<float*>(std::aligned_alloc(64, bytes)));
    TORCH_CHECK(buffer, "fire: could not allocate ", bytes, " bytes of scratch");
    std::fill_n(buffer.get(), floats, 0.f);
    capacity = floats;
  }
  return buffer.get();
}

// Asks Linux to back a large fresh output with 2 MiB pages. PyTorch's CPU
// allocator hands out fresh mmap-ed memory for big tensors, and faulting it in
// 4 KiB at a time cost up to a third of a batch-16 Fire (measured; PyTorch's
// own THP_MEM_ALLOC_ENABLE=1 does the same for every allocation). Without
// transparent huge pages (or off Linux) this does nothing.
void advise_huge_pages(const at::Tensor& t) {
#if defined(__linux__) && defined(MADV_HUGEPAGE)
  constexpr uintptr_t kHuge = uintptr_t{2} << 20;
  const uintptr_t begin = reinterpret_cast<uintptr_t>(t.data_ptr());
  const uintptr_t first = (begin + kHuge - 1) & ~(kHuge - 1);
  const uintptr_t last = (begin + t.nbytes()) & ~(kHuge - 1);
  if (last > first) madvise(reinterpret_cast<void*>(first), last - first, MADV_HUGEPAGE);
#else
  (void)t;
#endif
}

}  // namespace

at::Tensor fire_cpu(const at::Tensor& x, const at::Tensor& squeeze_weight,
                    const std::optional<at::Tensor>& squeeze_bias,
                    const at::Tensor& expand1x1_weight,
                    const std::optional<at::Tensor>& expand1x1_bias,
                    const at::Tensor& expand3x3_weight,
                    const std::optional<at::Tensor>& expand3x3_bias) {
  check_float_cpu(x, "input");
  TORCH_CHECK(x.dim() == 4, "fire expected a 4-D input (N, C, H, W), got ", x.dim(),
              "-D of shape ", x.sizes());
  TORCH_CHECK(squeeze_weight.dim() == 4 && expand1x1_weight.dim() == 4,
              "fire expected 4-D conv weights, got squeeze.weight ", squeeze_weight.sizes(),
              " and expand1x1.weight ", expand1x1_weight.sizes());
  const int64_t S = squeeze_weight.size(0), C = x.size(1);
  const int64_t E1 = expand1x1_weight.size(0), E3 = expand3x3_weight.size(0);
  TORCH_CHECK(squeeze_weight.size(1) == C, "fire expected ", squeeze_weight.size(1),
              " input channels, got ", C);
  check_weight(squeeze_weight, "squeeze.weight", S, C, 1);
  check_weight(expand1x1_weight, "expand1x1.weight", E1, S, 1);
  check_weight(expand3x3_weight, "expand3x3.weight", E3, S, 3);
  check_bias(squeeze_bias, "squeeze.bias", S);
  check_bias(expand1x1_bias, "expand1x1.bias", E1);
  check_bias(expand3x3_bias, "expand3x3.bias", E3);
  TORCH_CHECK(C >= 1 && S >= 1 && E1 >= 1 && E3 >= 1,
              "fire: every convolution needs at least one channel; got C=", C, ", S=", S,
              ", E1=", E1, ", E3=", E3);

  const int64_t N = x.size(0), H = x.size(2), W = x.size(3);
  // The output keeps the input's memory format, and that picks the kernels.
  const at::MemoryFormat format = x.suggest_memory_format();
  at::Tensor out = at::empty({N, E1 + E3, H, W}, x.options(), format);
  if (out.numel() == 0) return out;
  advise_huge_pages(out);

  const at::Tensor ws = squeeze_weight.contiguous();
  const at::Tensor we1 = expand1x1_weight.contiguous();
  const at::Tensor we3 = expand3x3_weight.contiguous();
  const at::Tensor bs = squeeze_bias ? squeeze_bias->contiguous() : at::Tensor();
  const at::Tensor be1 = expand1x1_bias ? expand1x1_bias->contiguous() : at::Tensor();
  const at::Tensor be3 = expand3x3_bias ? expand3x3_bias->contiguous() : at::Tensor();

  FireArgs a{};
  a.N = N, a.C = C, a.H = H, a.W = W, a.S = S, a.E1 = E1, a.E3 = E3;
  a.x = x.data_ptr<float>();
  a.x_sn = x.stride(0), a.x_sc = x.stride(1), a.x_sh = x.stride(2), a.x_sw = x.stride(3);
  a.x_uniform = uniform_pixels(x, &a.x_ps);
  a.w_s = ws.data_ptr<float>(), a.w_e1 = we1.data_ptr<float>(), a.w_e3 = we3.data_ptr<float>();
  a.b_s = bs.defined() ? bs.data_ptr<float>() : nullptr;
  a.b_e1 = be1.defined() ? be1.data_ptr<float>() : nullptr;
  a.b_e3 = be3.defined() ? be3.data_ptr<float>() : nullptr;
  a.out = out.data_ptr<float>();
  std::shared_ptr<const PackedHwc> packed;
  a.channels_last = format == at::MemoryFormat::ChannelsLast;
  if (a.channels_last) {
    packed = packed_hwc_weights(squeeze_weight, expand1x1_weight, expand3x3_weight);
    const float* base = packed->data.data_ptr<float>();
    a.p_ws = base + packed->ws, a.p_we1 = base + packed->we1, a.p_we3 = base + packed->we3;
    a.Sp = packed->Sp, a.E1p = packed->E1p, a.E3p = packed->E3p;
  }
  const int64_t threads = at::get_num_threads();
  const bool shared = choose_bands(a, threads);

  const FireKernelFn kernel = kernel_for(current_isa());
  const int64_t scratch_floats = fire_scratch_layout(a).total;
  if (!shared) {
    at::parallel_for(0, a.N * a.bands_per_image, 1, [&](int64_t begin, int64_t end) {
      kernel(a, FireWork{FirePhase::kBands, begin, end, 0, nullptr},
             thread_scratch(scratch_floats));
    });
    return out;
  }
  float* buffers = thread_scratch(scratch_floats, 1);
  const int64_t HW = H * W;
  const int64_t squeeze_chunks = (HW + kSharedSplitAlign - 1) / kSharedSplitAlign;
  for (int64_t n = 0; n < N; ++n) {
    at::parallel_for(0, threads, 1, [&](int64_t begin, int64_t end) {
      const int64_t q0 = std::min(HW, squeeze_chunks * begin / threads * kSharedSplitAlign);
      const int64_t q1 = std::min(HW, squeeze_chunks * end / threads * kSharedSplitAlign);
      if (q0 < q1)
        kernel(a, FireWork{FirePhase::kSqueeze, q0, q1, n, buffers},
               thread_scratch(scratch_floats));
    });
    kernel(a, FireWork{FirePhase::kPadding, 0, 0, n, buffers}, thread_scratch(scratch_floats));
    at::parallel_for(0, threads, 1, [&](int64_t begin, int64_t end) {
      const int64_t c0 = channel_split(a, begin, threads), c1 = channel_split(a, end, threads);
      if (c0 < c1)
        kernel(a, FireWork{FirePhase::kExpand, c0, c1, n, buffers},
               thread_scratch(scratch_floats));
    });
  }
  return out;
}

TORCH_LIBRARY_IMPL(fire_kernels, CPU, m) { m.impl("fire", &fire_cpu); }

}  // namespace fire_kernels
