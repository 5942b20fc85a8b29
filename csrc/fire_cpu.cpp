// CPU kernels of the operators fire_kernels::fire and fire_kernels::fire_sparse
// (schemas in fire_kernels/ops.py): check the arguments, allocate the output in
// the input's memory format, split the work and run it on PyTorch's thread pool
// with the per-ISA kernel chosen by cpu_features.
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
#include "pack_weights.h"

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

void check_input(const at::Tensor& x) {
  check_float_cpu(x, "input");
  TORCH_CHECK(x.dim() == 4, "fire expected a 4-D input (N, C, H, W), got ", x.dim(),
              "-D of shape ", x.sizes());
}

void check_channels(int64_t C, int64_t S, int64_t E1, int64_t E3) {
  TORCH_CHECK(C >= 1 && S >= 1 && E1 >= 1 && E3 >= 1,
              "fire: every convolution needs at least one channel; got C=", C, ", S=", S,
              ", E1=", E1, ", E3=", E3);
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

// Asks Linux to back a large fresh output with 2 MiB pages. PyTorch's CPU
// allocator hands out fresh mmap-ed memory for big tensors, and faulting it in
// 4 KiB at a time cost up to a third of a batch-16 Fire (measured; PyTorch's
// own THP_MEM_ALLOC_ENABLE=1 does the same for every allocation). Only from
// 32 MiB, glibc's largest mmap threshold: above it every allocation is a fresh
// mapping, faulted in on every call; below it memory is often recycled,
// already faulted in, and advising it gained nothing while its first use
// could stall for compaction (25 MB outputs, measured). Without transparent
// huge pages (or off Linux) this does nothing.
void advise_huge_pages(const at::Tensor& t) {
#if defined(__linux__) && defined(MADV_HUGEPAGE)
  constexpr size_t kFreshMappingBytes = size_t{32} << 20;
  if (t.nbytes() < kFreshMappingBytes) return;
  constexpr uintptr_t kHuge = uintptr_t{2} << 20;
  const uintptr_t begin = reinterpret_cast<uintptr_t>(t.data_ptr());
  const uintptr_t first = (begin + kHuge - 1) & ~(kHuge - 1);
  const uintptr_t last = (begin + t.nbytes()) & ~(kHuge - 1);
  if (last > first) madvise(reinterpret_cast<void*>(first), last - first, MADV_HUGEPAGE);
#else
  (void)t;
#endif
}

// The output (in the input's memory format) and the arguments every kernel
// shares; weights are filled in by the caller.
at::Tensor start_args(const at::Tensor& x, int64_t S, int64_t E1, int64_t E3, FireArgs& a) {
  const int64_t N = x.size(0), C = x.size(1), H = x.size(2), W = x.size(3);
  const at::MemoryFormat format = x.suggest_memory_format();
  at::Tensor out = at::empty({N, E1 + E3, H, W}, x.options(), format);
  a = FireArgs{};
  a.N = N, a.C = C, a.H = H, a.W = W, a.S = S, a.E1 = E1, a.E3 = E3;
  a.x = x.data_ptr<float>();
  a.x_sn = x.stride(0), a.x_sc = x.stride(1), a.x_sh = x.stride(2), a.x_sw = x.stride(3);
  a.x_uniform = uniform_pixels(x, &a.x_ps);
  a.channels_last = format == at::MemoryFormat::ChannelsLast;
  a.out = out.data_ptr<float>();
  if (out.numel() > 0) advise_huge_pages(out);
  return out;
}

// Splits the work into bands of whole `unit`-pixel tiles (band_start):
// returns true if each image is to be computed as one band shared by all
// threads (see FirePhase), else sets the bands per image.
bool choose_bands(FireArgs& a, int64_t threads, int64_t unit) {
  const int64_t HW = a.H * a.W;
  const int64_t max_band = max_band_pixels(a.S, a.W);
  int64_t bands = (HW + max_band - 1) / max_band;
  a.band_unit = unit;
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
  const int64_t units = (HW + unit - 1) / unit;
  a.bands_per_image = bands;
  a.band = std::min(HW, unit * ((units + bands - 1) / bands));
  return false;
}

const FireKernel& kernel_for(Isa isa) {
  switch (isa) {
    case Isa::kAvx512:
      return kFireKernelAvx512;
    case Isa::kAvx2:
      return kFireKernelAvx2;
    case Isa::kPortable:
      return kFireKernelPortable;
  }
  return kFireKernelPortable;
}

// Output channel where the expands of a shared image are split into `parts`
// of equal work. Dense: an expand 1x1 channel costs S MACs a pixel, a 3x3 one
// 9*S; the split falls at a multiple of w_block within its expand, where a
// block of the packed weights starts. Sparse: a
// group costs its entries; the split falls at a multiple of kChannelPad of
// the concat, so groups stay whole.
int64_t channel_split(const FireArgs& a, int64_t part, int64_t parts) {
  const int64_t E = a.E1 + a.E3;
  if (part >= parts) return E;
  auto round = [](int64_t n, int64_t unit) { return (n + unit / 2) / unit * unit; };
  if (!a.sparse) {
    const int64_t target = (a.E1 + 9 * a.E3) * part / parts;
    if (target <= a.E1) return std::min(a.E1, round(target, a.w_block));
    return std::min(E, a.E1 + round((target - a.E1) / 9, a.w_block));
  }
  const int64_t groups = (E + a.sparse->block - 1) / a.sparse->block;
  const int64_t target = int64_t{a.sparse->e_rows[groups]} * part / parts;
  const int32_t* g = std::lower_bound(a.sparse->e_rows, a.sparse->e_rows + groups, target);
  return std::min(E, round((g - a.sparse->e_rows) * a.sparse->block, kChannelPad));
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

// Runs `kernel` over every image of `a` on PyTorch's thread pool.
void run(FireArgs& a, const FireKernel& kernel) {
  const int64_t threads = at::get_num_threads();
  // The sparse kernels take pixels in tiles of their own, per group size.
  const int64_t unit =
      a.sparse ? 1 : (a.channels_last ? kernel.nhwc_pixels : kernel.nchw_pixels);
  const bool shared = choose_bands(a, threads, unit);
  const int64_t scratch_floats = fire_scratch_layout(a).total;
  if (!shared) {
    at::parallel_for(0, a.N * a.bands_per_image, 1, [&](int64_t begin, int64_t end) {
      kernel.run(a, FireWork{FirePhase::kBands, begin, end, 0, nullptr},
                 thread_scratch(scratch_floats));
    });
    return;
  }
  float* buffers = thread_scratch(scratch_floats, 1);
  const int64_t HW = a.H * a.W;
  const int64_t squeeze_chunks = (HW + kSharedSplitAlign - 1) / kSharedSplitAlign;
  for (int64_t n = 0; n < a.N; ++n) {
    at::parallel_for(0, threads, 1, [&](int64_t begin, int64_t end) {
      const int64_t q0 = std::min(HW, squeeze_chunks * begin / threads * kSharedSplitAlign);
      const int64_t q1 = std::min(HW, squeeze_chunks * end / threads * kSharedSplitAlign);
      if (q0 < q1)
        kernel.run(a, FireWork{FirePhase::kSqueeze, q0, q1, n, buffers},
                   thread_scratch(scratch_floats));
    });
    kernel.run(a, FireWork{FirePhase::kPadding, 0, 0, n, buffers},
               thread_scratch(scratch_floats));
    at::parallel_for(0, threads, 1, [&](int64_t begin, int64_t end) {
      const int64_t c0 = channel_split(a, begin, threads), c1 = channel_split(a, end, threads);
      if (c0 < c1)
        kernel.run(a, FireWork{FirePhase::kExpand, c0, c1, n, buffers},
                   thread_scratch(scratch_floats));
    });
  }
}

const float* data_or_null(const at::Tensor& t) { return t.defined() ? t.data_ptr<float>() : nullptr; }

at::Tensor contiguous_or_undefined(const std::optional<at::Tensor>& t) {
  return t ? t->contiguous() : at::Tensor();
}

// The entries of packed sparse weights: [groups + 1] row starts, then one
// position per entry, and `block` values per entry.
void check_sparse_part(const at::Tensor& values, const at::Tensor& index, int64_t groups,
                       int64_t block, const char* name) {
  TORCH_CHECK(index.device().is_cpu() && index.scalar_type() == at::kInt && index.dim() == 1 &&
                  index.is_contiguous(),
              "fire_sparse expected ", name, "_index to be a contiguous 1-D int32 CPU tensor");
  check_float_cpu(values, name);
  TORCH_CHECK(values.dim() == 1 && values.is_contiguous(), "fire_sparse expected ", name,
              "_values to be a contiguous 1-D tensor");
  TORCH_CHECK(index.numel() >= groups + 1, "fire_sparse: ", name, "_index has ", index.numel(),
              " elements, fewer than the ", groups + 1, " row starts");
  const int32_t* rows = index.data_ptr<int32_t>();
  const int64_t entries = index.numel() - groups - 1;
  TORCH_CHECK(rows[0] == 0 && rows[groups] == entries, "fire_sparse: ", name,
              "_index row starts must run from 0 to its ", entries, " entries");
  for (int64_t g = 0; g < groups; ++g)
    TORCH_CHECK(rows[g] <= rows[g + 1], "fire_sparse: ", name, "_index row starts decrease");
  TORCH_CHECK(values.numel() == entries * block, "fire_sparse expected ", entries * block, " ",
              name, "_values (", entries, " entries x block ", block, "), got ", values.numel());
}

// Every entry position within [lo, hi], so no input can make the kernel read
// outside its buffers. One pass of min/max over the entries.
void check_positions(const at::Tensor& index, int64_t groups, int64_t lo, int64_t hi,
                     const char* name) {
  const int32_t* pos = index.data_ptr<int32_t>() + groups + 1;
  const int64_t entries = index.numel() - groups - 1;
  int32_t mn = 0, mx = 0;
  if (entries > 0) {
    mn = *std::min_element(pos, pos + entries);
    mx = *std::max_element(pos, pos + entries);
  }
  TORCH_CHECK(entries == 0 || (mn >= lo && mx <= hi), "fire_sparse: ", name,
              "_index holds positions outside [", lo, ", ", hi, "]: packed for another shape?");
}

}  // namespace

at::Tensor fire_cpu(const at::Tensor& x, const at::Tensor& squeeze_weight,
                    const std::optional<at::Tensor>& squeeze_bias,
                    const at::Tensor& expand1x1_weight,
                    const std::optional<at::Tensor>& expand1x1_bias,
                    const at::Tensor& expand3x3_weight,
                    const std::optional<at::Tensor>& expand3x3_bias) {
  check_input(x);
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
  check_channels(C, S, E1, E3);

  FireArgs a;
  at::Tensor out = start_args(x, S, E1, E3, a);
  if (out.numel() == 0) return out;
  const at::Tensor bs = contiguous_or_undefined(squeeze_bias);
  const at::Tensor be1 = contiguous_or_undefined(expand1x1_bias);
  const at::Tensor be3 = contiguous_or_undefined(expand3x3_bias);
  a.b_s = data_or_null(bs), a.b_e1 = data_or_null(be1), a.b_e3 = data_or_null(be3);
  // Each kernel family reads its own packed form of the weights. Neither
  // touches the raw ones: after `model.to(memory_format=torch.channels_last)`
  // they are channels-last too, and making them contiguous would copy them
  // on every call (0.6 ms of a 9 ms SqueezeNet 1.1 forward, measured).
  const FireKernel& kernel = kernel_for(current_isa());
  a.w_block = a.channels_last ? kChannelPad : kernel.nchw_block;
  const std::shared_ptr<const PackedWeights> packed = packed_weights(
      squeeze_weight, expand1x1_weight, expand3x3_weight, {a.channels_last, a.w_block});
  const float* base = packed->data.data_ptr<float>();
  a.w_s = base + packed->ws, a.w_e1 = base + packed->we1, a.w_e3 = base + packed->we3;
  a.Sp = (S + kChannelPad - 1) / kChannelPad * kChannelPad;
  run(a, kernel);
  return out;
}

at::Tensor fire_sparse_cpu(const at::Tensor& x, const at::Tensor& squeeze_values,
                           const at::Tensor& squeeze_index,
                           const std::optional<at::Tensor>& squeeze_bias,
                           const at::Tensor& expand_values, const at::Tensor& expand_index,
                           const std::optional<at::Tensor>& expand1x1_bias,
                           const std::optional<at::Tensor>& expand3x3_bias,
                           int64_t squeeze_channels, int64_t expand1x1_channels,
                           int64_t expand3x3_channels, int64_t block, int64_t width) {
  check_input(x);
  const int64_t C = x.size(1), S = squeeze_channels;
  const int64_t E1 = expand1x1_channels, E3 = expand3x3_channels;
  check_channels(C, S, E1, E3);
  TORCH_CHECK(block == 1 || block == 4, "fire_sparse: block must be 1 or 4, got ", block);
  TORCH_CHECK(width == x.size(3), "fire_sparse: the weights were packed for images ", width,
              " wide, the input is ", x.size(3), " wide");
  check_bias(squeeze_bias, "squeeze.bias", S);
  check_bias(expand1x1_bias, "expand1x1.bias", E1);
  check_bias(expand3x3_bias, "expand3x3.bias", E3);
  const int64_t s_groups = (S + block - 1) / block, e_groups = (E1 + E3 + block - 1) / block;
  check_sparse_part(squeeze_values, squeeze_index, s_groups, block, "squeeze");
  check_sparse_part(expand_values, expand_index, e_groups, block, "expand");
  const int64_t W = x.size(3);
  const int64_t lp = squeeze_row_pitch(max_band_pixels(S, W), W);
  check_positions(squeeze_index, s_groups, 0, C - 1, "squeeze");
  check_positions(expand_index, e_groups, -W, (3 * S - 1) * lp + W, "expand");

  FireArgs a;
  at::Tensor out = start_args(x, S, E1, E3, a);
  if (out.numel() == 0) return out;
  const at::Tensor bs = contiguous_or_undefined(squeeze_bias);
  const at::Tensor be1 = contiguous_or_undefined(expand1x1_bias);
  const at::Tensor be3 = contiguous_or_undefined(expand3x3_bias);
  a.b_s = data_or_null(bs), a.b_e1 = data_or_null(be1), a.b_e3 = data_or_null(be3);
  FireSparse sp;
  sp.block = block;
  sp.s_rows = squeeze_index.data_ptr<int32_t>();
  sp.s_chan = sp.s_rows + s_groups + 1;
  sp.s_values = squeeze_values.data_ptr<float>();
  sp.e_rows = expand_index.data_ptr<int32_t>();
  sp.e_offset = sp.e_rows + e_groups + 1;
  sp.e_values = expand_values.data_ptr<float>();
  a.sparse = &sp;
  run(a, kernel_for(current_isa()));
  return out;
}

TORCH_LIBRARY_IMPL(fire_kernels, CPU, m) {
  m.impl("fire", &fire_cpu);
  m.impl("fire_sparse", &fire_sparse_cpu);
}

}  // namespace fire_kernels
