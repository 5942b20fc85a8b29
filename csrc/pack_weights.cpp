#include "pack_weights.h"

#include <ATen/record_function.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/zeros.h>
#include <c10/util/intrusive_ptr.h>

#include <array>
#include <mutex>
#include <vector>

#include "fire_kernel.h"

namespace fire_kernels {

namespace {

using WeakImpl = c10::weak_intrusive_ptr<c10::TensorImpl, c10::UndefinedTensorImpl>;

// Writes conv weight w, [E][K][T] (T taps), into dst as blocks of
// layout.block output channels, zero-padded to whole blocks:
// [Ep / block][K][T][block] (channels last) or [Ep / block][T][K][block] (NCHW).
void pack_blocks(const at::Tensor& w, int64_t taps, const PackLayout& layout,
                 const at::Tensor& dst) {
  const int64_t E = w.size(0), K = w.size(1), B = layout.block, Ep = round_up(E, B);
  at::Tensor padded_w = at::zeros({Ep, K, taps}, w.options());
  padded_w.narrow(0, 0, E).copy_(w.reshape({E, K, taps}));
  const at::Tensor blocks = padded_w.view({Ep / B, B, K, taps});
  if (layout.channels_last)
    dst.view({Ep / B, K, taps, B}).copy_(blocks.permute({0, 2, 3, 1}));
  else
    dst.view({Ep / B, taps, K, B}).copy_(blocks.permute({0, 3, 2, 1}));
}

std::shared_ptr<const PackedWeights> pack(const at::Tensor& ws, const at::Tensor& we1,
                                          const at::Tensor& we3, const PackLayout& layout) {
  // Visible in torch.profiler (and to the tests that count packings).
  RECORD_FUNCTION("fire_kernels::pack_weights", std::vector<c10::IValue>());
  const int64_t S = ws.size(0), C = ws.size(1), E1 = we1.size(0), E3 = we3.size(0);
  const int64_t B = layout.block;
  auto p = std::make_shared<PackedWeights>();
  p->ws = 0;
  p->we1 = p->ws + C * round_up(S, B);
  p->we3 = p->we1 + S * round_up(E1, B);
  p->data = at::empty({p->we3 + 9 * S * round_up(E3, B)}, ws.options());
  pack_blocks(ws, 1, layout, p->data.narrow(0, p->ws, p->we1 - p->ws));
  pack_blocks(we1, 1, layout, p->data.narrow(0, p->we1, p->we3 - p->we1));
  pack_blocks(we3, 9, layout, p->data.narrow(0, p->we3, p->data.numel() - p->we3));
  return p;
}

bool same_layout(const PackLayout& a, const PackLayout& b) {
  return a.channels_last == b.channels_last && a.block == b.block;
}

struct Entry {
  Entry(const std::array<const at::Tensor*, 3>& w, const PackLayout& l,
        std::shared_ptr<const PackedWeights> p)
      : layout(l),
        impl{WeakImpl(w[0]->getIntrusivePtr()), WeakImpl(w[1]->getIntrusivePtr()),
             WeakImpl(w[2]->getIntrusivePtr())},
        data{w[0]->data_ptr(), w[1]->data_ptr(), w[2]->data_ptr()},
        version{w[0]->_version(), w[1]->_version(), w[2]->_version()},
        packed(std::move(p)) {}
  PackLayout layout;
  std::array<WeakImpl, 3> impl;
  std::array<const void*, 3> data;
  std::array<int64_t, 3> version;
  std::shared_ptr<const PackedWeights> packed;
};

// Few Fires are live at once; past this many entries the oldest goes.
constexpr size_t kMaxEntries = 64;

std::mutex cache_mutex;
std::vector<Entry> cache;  // most recently added last

// Whether `e` holds the current packing of w (in whatever layout).
bool current(const Entry& e, const std::array<const at::Tensor*, 3>& w) {
  for (int k = 0; k < 3; ++k) {
    // A live weak pointer to the same TensorImpl: the tensor is this one,
    // not a new one that happens to reuse a freed address.
    if (e.impl[k].expired() || e.impl[k]._unsafe_get_target() != w[k]->unsafeGetTensorImpl())
      return false;
    if (e.data[k] != w[k]->data_ptr() || e.version[k] != w[k]->_version()) return false;
  }
  return true;
}

}  // namespace

std::shared_ptr<const PackedWeights> packed_weights(const at::Tensor& squeeze_weight,
                                                    const at::Tensor& expand1x1_weight,
                                                    const at::Tensor& expand3x3_weight,
                                                    const PackLayout& layout) {
  const std::array<const at::Tensor*, 3> w = {&squeeze_weight, &expand1x1_weight,
                                              &expand3x3_weight};
  bool cacheable = true;
  for (const at::Tensor* t : w) cacheable = cacheable && !t->is_inference();
  if (cacheable) {
    std::lock_guard<std::mutex> lock(cache_mutex);
    for (const Entry& e : cache)
      if (same_layout(e.layout, layout) && current(e, w)) return e.packed;
  }
  // Pack outside the lock; two threads may pack the same weights at once,
  // which costs time, never correctness.
  std::shared_ptr<const PackedWeights> packed =
      pack(squeeze_weight.contiguous(), expand1x1_weight.contiguous(),
           expand3x3_weight.contiguous(), layout);
  if (cacheable) {
    Entry e(w, layout, packed);
    std::lock_guard<std::mutex> lock(cache_mutex);
    // Entries of freed weights, or of these same weights at older versions
    // or in this layout, can never match again; these weights' current
    // packing in the other layout stays.
    std::vector<Entry> kept;
    for (Entry& old : cache) {
      bool live = true, same = true;
      for (int k = 0; k < 3; ++k) {
        live = live && !old.impl[k].expired();
        same = same && old.impl[k]._unsafe_get_target() == w[k]->unsafeGetTensorImpl();
      }
      if (live && (!same || (!same_layout(old.layout, layout) && current(old, w))))
        kept.push_back(std::move(old));
    }
    if (kept.size() >= kMaxEntries) kept.erase(kept.begin());
    kept.push_back(std::move(e));
    cache.swap(kept);
  }
  return packed;
}

void clear_pack_cache() {
  std::lock_guard<std::mutex> lock(cache_mutex);
  cache.clear();
}

}  // namespace fire_kernels
