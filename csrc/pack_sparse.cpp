// The CPU kernels of fire_kernels::pack_sparse and pack_sparse_conv1x1: a
// Fire's weights, or a 1x1 conv's, in the sparse kernels' format (FireSparse
// in fire_kernel.h): per group of `block` output channels, the input positions
// where any of them has a nonzero weight, with those weights.
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <torch/library.h>

#include <tuple>
#include <vector>

#include "fire_checks.h"
#include "fire_kernel.h"

namespace fire_kernels {

namespace {

// Entries of one conv, grouped: rows[g] .. rows[g+1] are group g's.
struct Packed {
  std::vector<int32_t> rows{0};
  std::vector<int32_t> positions;
  std::vector<float> values;
};

// weight(co, k) for co < channels, k < positions; `position(k)` is what the
// kernel stores for input position k. Positions are visited in order k, so
// entries come out in the order the caller enumerates them.
template <typename Weight, typename Position>
Packed pack_groups(int64_t channels, int64_t positions, int64_t block, Weight weight,
                   Position position) {
  Packed p;
  for (int64_t g0 = 0; g0 < channels; g0 += block) {
    for (int64_t k = 0; k < positions; ++k) {
      bool nonzero = false;
      for (int64_t j = 0; j < block && g0 + j < channels; ++j) nonzero |= weight(g0 + j, k) != 0.f;
      if (!nonzero) continue;
      p.positions.push_back(static_cast<int32_t>(position(k)));
      for (int64_t j = 0; j < block; ++j)
        p.values.push_back(g0 + j < channels ? weight(g0 + j, k) : 0.f);
    }
    p.rows.push_back(static_cast<int32_t>(p.positions.size()));
  }
  return p;
}

// [rows..., positions...] as one int32 tensor, and the values.
std::tuple<at::Tensor, at::Tensor> to_tensors(const Packed& p) {
  at::Tensor index = at::empty({static_cast<int64_t>(p.rows.size() + p.positions.size())},
                               at::TensorOptions().dtype(at::kInt));
  int32_t* out = index.data_ptr<int32_t>();
  std::copy(p.rows.begin(), p.rows.end(), out);
  std::copy(p.positions.begin(), p.positions.end(), out + p.rows.size());
  at::Tensor values = at::empty({static_cast<int64_t>(p.values.size())},
                                at::TensorOptions().dtype(at::kFloat));
  std::copy(p.values.begin(), p.values.end(), values.data_ptr<float>());
  return {values, index};
}

}  // namespace

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> pack_sparse_cpu(
    const at::Tensor& squeeze_weight, const at::Tensor& expand1x1_weight,
    const at::Tensor& expand3x3_weight, int64_t block, int64_t width) {
  check_pack_args(squeeze_weight, expand1x1_weight, expand3x3_weight, block, width);
  const int64_t S = squeeze_weight.size(0), C = squeeze_weight.size(1);
  const int64_t E1 = expand1x1_weight.size(0), E3 = expand3x3_weight.size(0);
  const at::Tensor ws = squeeze_weight.contiguous();
  const at::Tensor we1 = expand1x1_weight.contiguous();
  const at::Tensor we3 = expand3x3_weight.contiguous();
  const float* s = ws.data_ptr<float>();
  const float* e1 = we1.data_ptr<float>();
  const float* e3 = we3.data_ptr<float>();

  const Packed squeeze = pack_groups(
      S, C, block, [&](int64_t co, int64_t c) { return s[co * C + c]; },
      [](int64_t c) { return c; });

  // The expands as one conv of E1 + E3 channels over positions k = (dx*S + c)*3 + dy
  // (the order of increasing buffer offset), the 1x1 being the centre tap.
  const int64_t lp = squeeze_row_pitch(max_band_pixels(S, width), width);
  const Packed expand = pack_groups(
      E1 + E3, 9 * S, block,
      [&](int64_t co, int64_t k) {
        const int64_t dy = k % 3, c = (k / 3) % S, dx = k / 3 / S;
        if (co < E1) return (dy == 1 && dx == 1) ? e1[co * S + c] : 0.f;
        return e3[((co - E1) * S + c) * 9 + dy * 3 + dx];
      },
      [&](int64_t k) { return (k / 3) * lp + (k % 3 - 1) * width; });

  auto [s_values, s_index] = to_tensors(squeeze);
  auto [e_values, e_index] = to_tensors(expand);
  return {s_values, s_index, e_values, e_index};
}

std::tuple<at::Tensor, at::Tensor> pack_sparse_conv1x1_cpu(const at::Tensor& weight,
                                                           int64_t block) {
  check_pack_conv1x1_args(weight, block);
  const at::Tensor w = weight.contiguous();
  const float* data = w.data_ptr<float>();
  const int64_t O = w.size(0), C = w.size(1);
  return to_tensors(pack_groups(
      O, C, block, [&](int64_t o, int64_t c) { return data[o * C + c]; },
      [](int64_t c) { return c; }));
}

TORCH_LIBRARY_IMPL(fire_kernels, CPU, m) {
  m.impl("pack_sparse", &pack_sparse_cpu);
  m.impl("pack_sparse_conv1x1", &pack_sparse_conv1x1_cpu);
}

}  // namespace fire_kernels
