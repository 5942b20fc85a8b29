// The CPU kernels of the int8 operators (schemas in fire_kernels/int8_ops.py):
// pack_int8 (a conv's int8 weights, int32 bias and float32 multipliers in the
// kernels' layout, int8_kernel.h), fire_int8 (the fused int8 Fire), head_int8
// (the classifier: conv 1x1, ReLU, global average pool) and quantize_uint8 (a
// float tensor to uint8, zero point 0).
#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/zeros.h>
#include <ATen/ops/sum.h>
#include <torch/library.h>

#include <emmintrin.h>

#include <algorithm>
#include <cstdint>
#include <initializer_list>
#include <limits>
#include <vector>

#include "fire_checks.h"
#include "fire_kernel.h"
#include "int8_kernel.h"
#include "int8_paths.h"

namespace fire_kernels {

namespace {

// The largest reduction a kernel accumulates: 255 * 127 * K products plus a
// bias within +-2**30 (int8_reference.quantize_bias) must fit int32.
constexpr int64_t kMaxReduction = 33000;

// Band buffers up to about this size (L2 on every CPU the kernels target).
constexpr int64_t kBandBytes = 512 * 1024;

void check_packed(const at::Tensor& w, const at::Tensor& bias, const at::Tensor& multiplier,
                  int64_t O, int64_t K4, int64_t taps, const char* who, const char* name) {
  const int64_t Op = round_up(O, kInt8Panel);
  TORCH_CHECK_VALUE(w.scalar_type() == at::kChar && w.dim() == 1 && w.numel() == Op * taps * K4 &&
                        w.is_contiguous(),
                    who, ": ", name, " expected packed int8 weights of ", Op * taps * K4,
                    " elements (pack_int8), got ", w.scalar_type(), " ", w.sizes());
  TORCH_CHECK_VALUE(bias.scalar_type() == at::kInt && bias.dim() == 1 && bias.numel() == Op &&
                        bias.is_contiguous(),
                    who, ": ", name, " expected a packed int32 bias of ", Op,
                    " elements, got ", bias.scalar_type(), " ", bias.sizes());
  TORCH_CHECK_VALUE(multiplier.scalar_type() == at::kFloat && multiplier.dim() == 1 &&
                        multiplier.numel() == Op && multiplier.is_contiguous(),
                    who, ": ", name, " expected packed float32 multipliers of ", Op,
                    " elements, got ", multiplier.scalar_type(), " ", multiplier.sizes());
  TORCH_CHECK_VALUE(w.device().is_cpu() && bias.device().is_cpu() && multiplier.device().is_cpu(),
                    who, ": ", name, " expected CPU tensors");
}

Int8Conv bind(const at::Tensor& w, const at::Tensor& bias, const at::Tensor& multiplier) {
  return {w.data_ptr<int8_t>(), bias.data_ptr<int32_t>(), multiplier.data_ptr<float>()};
}

// x as the kernels read it: channels last, pixels C4 bytes apart (a zero-padded
// copy unless x already is so).
at::Tensor kernel_input(const at::Tensor& x, int64_t C4) {
  if (x.size(1) == C4 && x.is_contiguous(at::MemoryFormat::ChannelsLast)) return x;
  at::Tensor padded =
      at::zeros({x.size(0), x.size(2), x.size(3), C4}, x.options());  // NHWC
  padded.narrow(3, 0, x.size(1)).copy_(x.permute({0, 2, 3, 1}));
  return padded;
}

// Whether every adjacent pair of packed weights is within kMaxPairMagnitude.
bool small_pairs(const at::Tensor& packed) {
  const int8_t* w = packed.data_ptr<int8_t>();
  const int64_t n = packed.numel();  // a multiple of 4
  bool fits = true;
  for (int64_t i = 0; i < n; i += 2) {
    const int magnitude = (w[i] < 0 ? -w[i] : w[i]) + (w[i + 1] < 0 ? -w[i + 1] : w[i + 1]);
    fits &= magnitude <= kMaxPairMagnitude;
  }
  return fits;
}

// dst[i] = int8_reference.quantize_activation(src[i], scale, zp): src / scale,
// rounded half to even (cvtps2dq in the default rounding mode), plus zp,
// clamped to [0, 255], NaN to 0. The clamp is taken on the float, to
// [-zp, 255 - zp], before the conversion (which turns out-of-range values
// into INT_MIN); maxps returns its second operand, -zp, for a NaN. SSE2,
// which every x86-64 CPU has: GCC does not vectorize the plain loop (it
// cannot turn NaN-aware comparisons into maxps/minps).
void quantize_range(const float* src, uint8_t* dst, int64_t n, float scale, int zp) {
  const __m128 s = _mm_set1_ps(scale), lo = _mm_set1_ps(static_cast<float>(-zp));
  const __m128 hi = _mm_set1_ps(static_cast<float>(255 - zp));
  const __m128i z = _mm_set1_epi32(zp);
  const auto quads = [&](const float* p) {
    const __m128 f = _mm_min_ps(_mm_max_ps(_mm_div_ps(_mm_loadu_ps(p), s), lo), hi);
    return _mm_add_epi32(_mm_cvtps_epi32(f), z);
  };
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    const __m128i a = _mm_packs_epi32(quads(src + i), quads(src + i + 4));
    const __m128i b = _mm_packs_epi32(quads(src + i + 8), quads(src + i + 12));
    _mm_storeu_si128(reinterpret_cast<__m128i*>(dst + i), _mm_packus_epi16(a, b));
  }
  for (; i < n; ++i) {
    const __m128 f = _mm_div_ss(_mm_set_ss(src[i]), s);
    dst[i] = static_cast<uint8_t>(_mm_cvtss_si32(_mm_min_ss(_mm_max_ss(f, lo), hi)) + zp);
  }
}

// The current path's kernels, or the exact AVX2 ones where they would saturate
// on these packed weights.
const Int8Kernel& kernel_for(std::initializer_list<const at::Tensor*> weights) {
  const Int8Kernel& chosen = current_int8_kernel();
  if (!chosen.small_pairs) return chosen;
  for (const at::Tensor* w : weights)
    if (!small_pairs(*w)) return kInt8Avx2Wide;
  return chosen;
}

// This thread's scratch of at least `bytes` bytes, kept between calls.
uint8_t* thread_scratch(int64_t bytes) {
  thread_local std::vector<uint8_t> scratch;
  if (static_cast<int64_t>(scratch.size()) < bytes) scratch.resize(bytes);
  return scratch.data();
}

}  // namespace

int64_t int8_band_bytes(const Int8FireArgs& a) {
  return ((a.band_rows + 2) * (a.W + 2) + kInt8MaxTile) * a.Sp;
}

int64_t int8_scratch_bytes(const Int8FireArgs& a) {
  return int8_band_bytes(a) + (a.pool_kernel > 1 ? kInt8MaxTile * a.C4 : 0);
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> pack_int8_cpu(const at::Tensor& weight,
                                                             const at::Tensor& bias,
                                                             const at::Tensor& multiplier) {
  TORCH_CHECK_VALUE(weight.dim() == 4 && weight.size(2) == weight.size(3) &&
                        weight.size(2) >= 1 && weight.size(2) * weight.size(3) <= kInt8MaxStemTaps,
                    "pack_int8: expected a square conv weight (O, C, k, k), k <= 11, got ",
                    weight.sizes());
  TORCH_CHECK_TYPE(weight.scalar_type() == at::kChar, "pack_int8: expected int8 weights, got ",
                   weight.scalar_type());
  const int64_t O = weight.size(0), C = weight.size(1), taps = weight.size(2) * weight.size(3);
  TORCH_CHECK_VALUE(bias.scalar_type() == at::kInt && bias.dim() == 1 && bias.numel() == O,
                    "pack_int8: expected an int32 bias of ", O, " elements, got ",
                    bias.scalar_type(), " ", bias.sizes());
  TORCH_CHECK_VALUE(multiplier.scalar_type() == at::kFloat && multiplier.dim() == 1 &&
                        multiplier.numel() == O,
                    "pack_int8: expected float32 multipliers of ", O, " elements, got ",
                    multiplier.scalar_type(), " ", multiplier.sizes());
  const int64_t Op = round_up(O, kInt8Panel), C4 = round_up(C, kInt8Quad);
  at::Tensor packed = at::zeros({Op * taps * C4}, weight.options());
  // [Op/16][taps][C4/4][16][4] from (O, C, k, k): element (o, c, t) lands at
  // (((o/16*taps + t)*C4/4 + c/4)*16 + o%16)*4 + c%4.
  const at::Tensor w = weight.contiguous();
  const int8_t* src = w.data_ptr<int8_t>();
  int8_t* dst = packed.data_ptr<int8_t>();
  for (int64_t o = 0; o < O; ++o)
    for (int64_t c = 0; c < C; ++c)
      for (int64_t t = 0; t < taps; ++t)
        dst[(((o / kInt8Panel * taps + t) * (C4 / kInt8Quad) + c / kInt8Quad) * kInt8Panel +
             o % kInt8Panel) * kInt8Quad + c % kInt8Quad] = src[(o * C + c) * taps + t];
  at::Tensor b = at::zeros({Op}, bias.options());
  b.narrow(0, 0, O).copy_(bias);
  at::Tensor m = at::zeros({Op}, multiplier.options());
  m.narrow(0, 0, O).copy_(multiplier);
  return {packed, b, m};
}

at::Tensor fire_int8_cpu(const at::Tensor& x, const at::Tensor& squeeze,
                         const at::Tensor& squeeze_bias, const at::Tensor& squeeze_multiplier,
                         const at::Tensor& expand1x1, const at::Tensor& expand1x1_bias,
                         const at::Tensor& expand1x1_multiplier, const at::Tensor& expand3x3,
                         const at::Tensor& expand3x3_bias,
                         const at::Tensor& expand3x3_multiplier, int64_t squeeze_channels,
                         int64_t expand1x1_channels, int64_t expand3x3_channels,
                         int64_t pool_kernel, int64_t pool_stride, bool pool_ceil_mode) {
  TORCH_CHECK_TYPE(x.scalar_type() == at::kByte, "fire_int8: expected a uint8 input, got ",
                   x.scalar_type());
  TORCH_CHECK_VALUE(x.dim() == 4, "fire_int8: expected a 4-D input (N, C, H, W), got ",
                    x.dim(), "-D");
  TORCH_CHECK_VALUE(x.device().is_cpu(), "fire_int8: expected a CPU input");
  const PoolSpec pool{pool_kernel, pool_stride, pool_ceil_mode};
  check_pool_args(x, pool, "fire_int8");
  const int64_t N = x.size(0), C = x.size(1);
  const int64_t H = pooled_size(x.size(2), pool), W = pooled_size(x.size(3), pool);
  const int64_t S = squeeze_channels, E1 = expand1x1_channels, E3 = expand3x3_channels;
  TORCH_CHECK_VALUE(C >= 1 && S >= 1 && E1 >= 1 && E3 >= 1,
                    "fire_int8: expected positive channel counts, got C=", C, " S=", S,
                    " E1=", E1, " E3=", E3);
  const int64_t C4 = round_up(C, kInt8Quad), S4 = round_up(S, kInt8Quad);
  TORCH_CHECK_VALUE(C4 <= kMaxReduction && 9 * S4 <= kMaxReduction,
                    "fire_int8: reductions of more than ", kMaxReduction,
                    " products could overflow the int32 accumulators (C=", C, ", S=", S, ")");
  check_packed(squeeze, squeeze_bias, squeeze_multiplier, S, C4, 1, "fire_int8", "squeeze");
  check_packed(expand1x1, expand1x1_bias, expand1x1_multiplier, E1, S4, 1, "fire_int8",
               "expand1x1");
  check_packed(expand3x3, expand3x3_bias, expand3x3_multiplier, E3, S4, 9, "fire_int8",
               "expand3x3");
  at::Tensor out = at::empty({N, E1 + E3, H, W}, x.options(), at::MemoryFormat::ChannelsLast);
  if (out.numel() == 0) return out;
  const at::Tensor xk = kernel_input(x, C4);

  Int8FireArgs a{};
  a.N = N, a.C4 = C4, a.H = H, a.W = W, a.S = S, a.E1 = E1, a.E3 = E3;
  a.Sp = round_up(S, kInt8Panel);
  a.pool_kernel = pool_kernel, a.pool_stride = pool_stride;
  a.in_h = x.size(2), a.in_w = x.size(3);
  a.x = xk.data_ptr<uint8_t>();
  a.squeeze = bind(squeeze, squeeze_bias, squeeze_multiplier);
  a.expand1x1 = bind(expand1x1, expand1x1_bias, expand1x1_multiplier);
  a.expand3x3 = bind(expand3x3, expand3x3_bias, expand3x3_multiplier);
  a.out = out.data_ptr<uint8_t>();
  // Bands of rows: enough for every thread when the images are fewer than the
  // threads, and small enough that a band's squeeze stays in L2.
  const int64_t threads = at::get_num_threads();
  int64_t bands = N >= threads ? 1 : (threads + N - 1) / N;
  const int64_t row_bytes = (W + 2) * a.Sp;
  bands = std::max(bands, (H + 2) * row_bytes / kBandBytes + 1);
  a.band_rows = (H + std::min(bands, H) - 1) / std::min(bands, H);
  a.bands = (H + a.band_rows - 1) / a.band_rows;
  const Int8Kernel& kernel = kernel_for({&squeeze, &expand1x1, &expand3x3});
  const int64_t scratch_bytes = int8_scratch_bytes(a);
  at::parallel_for(0, N * a.bands, 1, [&](int64_t begin, int64_t end) {
    kernel.fire(a, begin, end, thread_scratch(scratch_bytes));
  });
  return out;
}

at::Tensor head_int8_cpu(const at::Tensor& x, const at::Tensor& weight, const at::Tensor& bias,
                         const at::Tensor& multiplier, int64_t out_channels,
                         double output_scale) {
  TORCH_CHECK_TYPE(x.scalar_type() == at::kByte, "head_int8: expected a uint8 input, got ",
                   x.scalar_type());
  TORCH_CHECK_VALUE(x.dim() == 4, "head_int8: expected a 4-D input (N, C, H, W), got ", x.dim(),
                    "-D");
  TORCH_CHECK_VALUE(x.device().is_cpu(), "head_int8: expected a CPU input");
  const int64_t N = x.size(0), C = x.size(1), HW = x.size(2) * x.size(3), O = out_channels;
  TORCH_CHECK_VALUE(C >= 1 && O >= 1, "head_int8: expected positive channel counts, got C=", C,
                    " O=", O);
  TORCH_CHECK_VALUE(HW >= 1, "head_int8: expected a non-empty image, got ", x.size(2), "x",
                    x.size(3));
  TORCH_CHECK_VALUE(output_scale > 0.0, "head_int8: expected a positive output scale, got ",
                    output_scale);
  const int64_t C4 = round_up(C, kInt8Quad);
  TORCH_CHECK_VALUE(C4 <= kMaxReduction && 255 * HW < (int64_t{1} << 24),
                    "head_int8: too many input channels (", C, ") or pixels (", HW,
                    ") for exact int32 accumulators and float32 sums");
  check_packed(weight, bias, multiplier, O, C4, 1, "head_int8", "weight");
  at::Tensor out = at::empty({N, O, 1, 1}, x.options().dtype(at::kFloat));
  if (N == 0) return out;
  const at::Tensor xk = kernel_input(x, C4);
  Int8HeadArgs a{};
  a.N = N, a.C4 = C4, a.HW = HW, a.O = O;
  a.x = xk.data_ptr<uint8_t>();
  a.conv = bind(weight, bias, multiplier);
  a.scale = static_cast<float>(output_scale / static_cast<double>(HW));
  a.out = out.data_ptr<float>();
  a.blocks = (O + kInt8HeadBlock - 1) / kInt8HeadBlock;
  const Int8Kernel& kernel = kernel_for({&weight});
  at::parallel_for(0, N * a.blocks, 1,
                   [&](int64_t begin, int64_t end) { kernel.head(a, begin, end); });
  return out;
}

at::Tensor stem_int8_cpu(const at::Tensor& x, const at::Tensor& weight, const at::Tensor& bias,
                         const at::Tensor& multiplier, int64_t out_channels, int64_t kernel,
                         int64_t stride, int64_t input_zero_point, int64_t pool_kernel,
                         int64_t pool_stride, bool pool_ceil_mode) {
  TORCH_CHECK_TYPE(x.scalar_type() == at::kByte, "stem_int8: expected a uint8 input, got ",
                   x.scalar_type());
  TORCH_CHECK_VALUE(x.dim() == 4, "stem_int8: expected a 4-D input (N, C, H, W), got ", x.dim(),
                    "-D");
  TORCH_CHECK_VALUE(x.device().is_cpu(), "stem_int8: expected a CPU input");
  const int64_t N = x.size(0), C = x.size(1), O = out_channels, k = kernel;
  TORCH_CHECK_VALUE(C >= 1 && O >= 1, "stem_int8: expected positive channel counts, got C=", C,
                    " O=", O);
  TORCH_CHECK_VALUE(k >= 1 && k * k <= kInt8MaxStemTaps && stride >= 1,
                    "stem_int8: expected a kernel of 1 to 11 and a positive stride, got ", k,
                    " and ", stride);
  TORCH_CHECK_VALUE(x.size(2) >= k && x.size(3) >= k, "stem_int8: the ", k, "x", k,
                    " kernel does not fit the ", x.size(2), "x", x.size(3), " input");
  TORCH_CHECK_VALUE(input_zero_point >= 0 && input_zero_point <= 255,
                    "stem_int8: expected a zero point in [0, 255], got ", input_zero_point);
  const int64_t C4 = round_up(C, kInt8Quad), Op = round_up(O, kInt8Panel);
  TORCH_CHECK_VALUE(k * k * C4 <= kMaxReduction, "stem_int8: reductions of more than ",
                    kMaxReduction, " products could overflow the int32 accumulators");
  check_packed(weight, bias, multiplier, O, C4, k * k, "stem_int8", "weight");
  Int8StemArgs a{};
  a.N = N, a.C4 = C4, a.in_h = x.size(2), a.in_w = x.size(3);
  a.k = k, a.stride = stride;
  a.conv_h = (a.in_h - k) / stride + 1, a.conv_w = (a.in_w - k) / stride + 1;
  a.O = O, a.Op = Op;
  const PoolSpec pool{pool_kernel, pool_stride, pool_ceil_mode};
  TORCH_CHECK_VALUE(pool_kernel >= 1 && pool_stride >= 1 && pool_kernel <= a.conv_h &&
                        pool_kernel <= a.conv_w,
                    "stem_int8: the ", pool_kernel, "x", pool_kernel, " pool does not fit the ",
                    a.conv_h, "x", a.conv_w, " conv output");
  a.pool_kernel = pool_kernel, a.pool_stride = pool_stride;
  a.out_h = pooled_size(a.conv_h, pool), a.out_w = pooled_size(a.conv_w, pool);
  at::Tensor out =
      at::empty({N, O, a.out_h, a.out_w}, x.options(), at::MemoryFormat::ChannelsLast);
  if (N == 0) return out;
  const at::Tensor xk = kernel_input(x, C4);
  // The input's zero point folded into the bias: sum_k w (x - zp) = sum_k w x - zp sum_k w,
  // exact without padding.
  const at::Tensor weight_sums =
      weight.view({Op / kInt8Panel, k * k * C4 / kInt8Quad, kInt8Panel, kInt8Quad})
          .to(at::kLong)
          .sum({1, 3})
          .reshape({Op});
  const at::Tensor folded32 = bias.to(at::kLong).sub(weight_sums.mul(input_zero_point)).to(at::kInt);
  a.x = xk.data_ptr<uint8_t>();
  a.conv = {weight.data_ptr<int8_t>(), folded32.data_ptr<int32_t>(), multiplier.data_ptr<float>()};
  a.out = out.data_ptr<uint8_t>();
  // Bands of output rows: enough for every thread when the images are fewer
  // than the threads, and small enough that a band's conv rows stay in L2.
  const int64_t threads = at::get_num_threads();
  const int64_t per_thread = N >= threads ? 1 : (threads + N - 1) / N;
  const int64_t fit = std::max<int64_t>(
      1, (kBandBytes / (a.conv_w * Op) - pool_kernel) / pool_stride + 1);
  a.band_rows = std::min(fit, (a.out_h + per_thread - 1) / per_thread);
  a.bands = (a.out_h + a.band_rows - 1) / a.band_rows;
  const Int8Kernel& kernels = kernel_for({&weight});
  const int64_t scratch_bytes = int8_stem_conv_rows(a, a.band_rows) * a.conv_w * Op;
  at::parallel_for(0, N * a.bands, 1, [&](int64_t begin, int64_t end) {
    kernels.stem(a, begin, end, thread_scratch(scratch_bytes));
  });
  return out;
}

at::Tensor quantize_uint8_cpu(const at::Tensor& x, double scale, int64_t zero_point) {
  TORCH_CHECK_TYPE(x.scalar_type() == at::kFloat, "quantize_uint8: expected a float32 input, got ",
                   x.scalar_type());
  TORCH_CHECK_VALUE(x.device().is_cpu(), "quantize_uint8: expected a CPU input");
  TORCH_CHECK_VALUE(scale > 0.0 && scale < std::numeric_limits<float>::infinity(),
                    "quantize_uint8: expected a positive finite scale, got ", scale);
  TORCH_CHECK_VALUE(zero_point >= 0 && zero_point <= 255,
                    "quantize_uint8: expected a zero point in [0, 255], got ", zero_point);
  const at::MemoryFormat format = x.suggest_memory_format();
  const at::Tensor xc = x.contiguous(format);
  at::Tensor out = at::empty(x.sizes(), x.options().dtype(at::kByte), format);
  const float* src = xc.data_ptr<float>();
  uint8_t* dst = out.data_ptr<uint8_t>();
  const float s = static_cast<float>(scale);
  at::parallel_for(0, xc.numel(), 1 << 16, [&](int64_t begin, int64_t end) {
    quantize_range(src + begin, dst + begin, end - begin, s, static_cast<int>(zero_point));
  });
  return out;
}

TORCH_LIBRARY_IMPL(fire_kernels, CPU, m) {
  m.impl("pack_int8", &pack_int8_cpu);
  m.impl("fire_int8", &fire_int8_cpu);
  m.impl("head_int8", &head_int8_cpu);
  m.impl("stem_int8", &stem_int8_cpu);
  m.impl("quantize_uint8", &quantize_uint8_cpu);
}

}  // namespace fire_kernels
