#include "pack_weights.h"

#include <ATen/record_function.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/zeros.h>
#include <c10/util/intrusive_ptr.h>

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

using Weights = std::vector<const at::Tensor*>;

// Packs each of `w` (with its number of taps) into one allocation, in
// `layout`; with `channels_last_taps`, a weight's K runs (dy, dx, c) instead of
// PyTorch's (c, dy, dx).
std::shared_ptr<const PackedWeights> pack(const Weights& w, const std::vector<int64_t>& taps,
                                          const PackLayout& layout, bool channels_last_taps) {
  // Visible in torch.profiler (and to the tests that count packings).
  RECORD_FUNCTION("fire_kernels::pack_weights", std::vector<c10::IValue>());
  auto p = std::make_shared<PackedWeights>();
  int64_t size = 0;
  for (size_t k = 0; k < w.size(); ++k) {
    p->offset.push_back(size);
    size += round_up(w[k]->size(0), layout.block) * (w[k]->numel() / w[k]->size(0));
  }
  p->data = at::empty({size}, w[0]->options());
  for (size_t k = 0; k < w.size(); ++k) {
    const at::Tensor t =
        channels_last_taps ? w[k]->permute({0, 2, 3, 1}).contiguous() : w[k]->contiguous();
    const int64_t end = k + 1 < w.size() ? p->offset[k + 1] : size;
    pack_blocks(t.reshape({t.size(0), t.numel() / t.size(0) / taps[k], taps[k]}), taps[k],
                layout, p->data.narrow(0, p->offset[k], end - p->offset[k]));
  }
  return p;
}

bool same_layout(const PackLayout& a, const PackLayout& b) {
  return a.channels_last == b.channels_last && a.block == b.block;
}

struct Entry {
  Entry(const Weights& w, const PackLayout& l, bool taps_last,
        std::shared_ptr<const PackedWeights> p)
      : layout(l), channels_last_taps(taps_last), packed(std::move(p)) {
    for (const at::Tensor* t : w) {
      impl.emplace_back(t->getIntrusivePtr());
      data.push_back(t->data_ptr());
      version.push_back(t->_version());
    }
  }
  PackLayout layout;
  bool channels_last_taps;
  std::vector<WeakImpl> impl;
  std::vector<const void*> data;
  std::vector<int64_t> version;
  std::shared_ptr<const PackedWeights> packed;
};

// Few layers are live at once; past this many entries the oldest goes.
constexpr size_t kMaxEntries = 64;

std::mutex cache_mutex;
std::vector<Entry> cache;  // most recently added last

// Whether `e` is an entry of the tensors w.
bool same_tensors(const Entry& e, const Weights& w) {
  if (e.impl.size() != w.size()) return false;
  for (size_t k = 0; k < w.size(); ++k)
    if (e.impl[k]._unsafe_get_target() != w[k]->unsafeGetTensorImpl()) return false;
  return true;
}

// Whether `e` holds the current packing of w (in whatever layout).
bool current(const Entry& e, const Weights& w) {
  if (!same_tensors(e, w)) return false;
  for (size_t k = 0; k < w.size(); ++k) {
    // A live weak pointer to the same TensorImpl: the tensor is this one,
    // not a new one that happens to reuse a freed address.
    if (e.impl[k].expired() || e.data[k] != w[k]->data_ptr() ||
        e.version[k] != w[k]->_version())
      return false;
  }
  return true;
}

// The packing of w in `layout` (taps[k]: the taps of w[k]; channels_last_taps
// as for pack), from the cache or made.
std::shared_ptr<const PackedWeights> cached_pack(const Weights& w,
                                                 const std::vector<int64_t>& taps,
                                                 const PackLayout& layout,
                                                 bool channels_last_taps = false) {
  bool cacheable = true;
  for (const at::Tensor* t : w) cacheable = cacheable && !t->is_inference();
  if (cacheable) {
    std::lock_guard<std::mutex> lock(cache_mutex);
    for (const Entry& e : cache)
      if (same_layout(e.layout, layout) && e.channels_last_taps == channels_last_taps &&
          current(e, w))
        return e.packed;
  }
  // Pack outside the lock; two threads may pack the same weights at once,
  // which costs time, never correctness.
  std::shared_ptr<const PackedWeights> packed = pack(w, taps, layout, channels_last_taps);
  if (cacheable) {
    Entry e(w, layout, channels_last_taps, packed);
    std::lock_guard<std::mutex> lock(cache_mutex);
    // Entries of freed weights, or of these same weights at older versions
    // or in this layout, can never match again; these weights' current
    // packing in the other layout stays.
    std::vector<Entry> kept;
    for (Entry& old : cache) {
      bool live = true;
      for (const WeakImpl& i : old.impl) live = live && !i.expired();
      if (live && (!same_tensors(old, w) || (!same_layout(old.layout, layout) && current(old, w))))
        kept.push_back(std::move(old));
    }
    if (kept.size() >= kMaxEntries) kept.erase(kept.begin());
    kept.push_back(std::move(e));
    cache.swap(kept);
  }
  return packed;
}

}  // namespace

std::shared_ptr<const PackedWeights> packed_weights(const at::Tensor& squeeze_weight,
                                                    const at::Tensor& expand1x1_weight,
                                                    const at::Tensor& expand3x3_weight,
                                                    const PackLayout& layout) {
  return cached_pack({&squeeze_weight, &expand1x1_weight, &expand3x3_weight}, {1, 1, 9}, layout);
}

std::shared_ptr<const PackedWeights> packed_conv_weight(const at::Tensor& weight) {
  return cached_pack({&weight}, {1}, {true, kChannelPad}, /*channels_last_taps=*/true);
}

void clear_pack_cache() {
  std::lock_guard<std::mutex> lock(cache_mutex);
  cache.clear();
}

}  // namespace fire_kernels
