#include "pack_hwc.h"

#include <ATen/ops/empty.h>
#include <ATen/ops/zeros.h>
#include <c10/util/intrusive_ptr.h>

#include <array>
#include <atomic>
#include <mutex>
#include <vector>

#include "fire_kernel.h"

namespace fire_kernels {

namespace {

using WeakImpl = c10::weak_intrusive_ptr<c10::TensorImpl, c10::UndefinedTensorImpl>;

int64_t padded(int64_t n) { return (n + kChannelPad - 1) / kChannelPad * kChannelPad; }

// Writes conv weight w, [E][K][T] (T taps), into dst as panels of kChannelPad
// output channels, [Ep / kChannelPad][K][T][kChannelPad], zero-padded.
void pack_panels(const at::Tensor& w, int64_t taps, const at::Tensor& dst) {
  const int64_t E = w.size(0), K = w.size(1), Ep = padded(E);
  at::Tensor padded_w = at::zeros({Ep, K, taps}, w.options());
  padded_w.narrow(0, 0, E).copy_(w.reshape({E, K, taps}));
  dst.view({Ep / kChannelPad, K, taps, kChannelPad})
      .copy_(padded_w.view({Ep / kChannelPad, kChannelPad, K, taps}).permute({0, 2, 3, 1}));
}

std::shared_ptr<const PackedHwc> pack(const at::Tensor& ws, const at::Tensor& we1,
                                      const at::Tensor& we3) {
  const int64_t S = ws.size(0), C = ws.size(1), E1 = we1.size(0), E3 = we3.size(0);
  auto p = std::make_shared<PackedHwc>();
  const int64_t E1p = padded(E1), E3p = padded(E3);
  p->Sp = padded(S);
  p->ws = 0;
  p->we1 = p->ws + C * p->Sp;
  p->we3 = p->we1 + S * E1p;
  p->data = at::empty({p->we3 + 9 * S * E3p}, ws.options());
  pack_panels(ws, 1, p->data.narrow(0, p->ws, C * p->Sp));
  pack_panels(we1, 1, p->data.narrow(0, p->we1, S * E1p));
  pack_panels(we3, 9, p->data.narrow(0, p->we3, 9 * S * E3p));
  return p;
}

struct Entry {
  Entry(const std::array<const at::Tensor*, 3>& w, std::shared_ptr<const PackedHwc> p)
      : impl{WeakImpl(w[0]->getIntrusivePtr()), WeakImpl(w[1]->getIntrusivePtr()),
             WeakImpl(w[2]->getIntrusivePtr())},
        data{w[0]->data_ptr(), w[1]->data_ptr(), w[2]->data_ptr()},
        version{w[0]->_version(), w[1]->_version(), w[2]->_version()},
        packed(std::move(p)) {}
  std::array<WeakImpl, 3> impl;
  std::array<const void*, 3> data;
  std::array<int64_t, 3> version;
  std::shared_ptr<const PackedHwc> packed;
};

// Few Fires are live at once; past this many entries the oldest goes.
constexpr size_t kMaxEntries = 64;

std::mutex cache_mutex;
std::vector<Entry> cache;  // most recently added last
std::atomic<int64_t> pack_count{0};

bool matches(const Entry& e, const std::array<const at::Tensor*, 3>& w) {
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

std::shared_ptr<const PackedHwc> packed_hwc_weights(const at::Tensor& squeeze_weight,
                                                    const at::Tensor& expand1x1_weight,
                                                    const at::Tensor& expand3x3_weight) {
  const std::array<const at::Tensor*, 3> w = {&squeeze_weight, &expand1x1_weight,
                                              &expand3x3_weight};
  bool cacheable = true;
  for (const at::Tensor* t : w) cacheable = cacheable && !t->is_inference();
  if (cacheable) {
    std::lock_guard<std::mutex> lock(cache_mutex);
    for (const Entry& e : cache)
      if (matches(e, w)) return e.packed;
  }
  // Pack outside the lock; two threads may pack the same weights at once,
  // which costs time, never correctness.
  std::shared_ptr<const PackedHwc> packed =
      pack(squeeze_weight.contiguous(), expand1x1_weight.contiguous(),
           expand3x3_weight.contiguous());
  ++pack_count;
  if (cacheable) {
    Entry e(w, packed);
    std::lock_guard<std::mutex> lock(cache_mutex);
    // Entries of freed weights, or of these same weights at older versions,
    // can never match again.
    std::vector<Entry> kept;
    for (Entry& old : cache) {
      bool live = true, same = true;
      for (int k = 0; k < 3; ++k) {
        live = live && !old.impl[k].expired();
        same = same && old.impl[k]._unsafe_get_target() == w[k]->unsafeGetTensorImpl();
      }
      if (live && !same) kept.push_back(std::move(old));
    }
    if (kept.size() >= kMaxEntries) kept.erase(kept.begin());
    kept.push_back(std::move(e));
    cache.swap(kept);
  }
  return packed;
}

int64_t hwc_pack_count() { return pack_count.load(); }

void clear_hwc_pack_cache() {
  std::lock_guard<std::mutex> lock(cache_mutex);
  cache.clear();
}

}  // namespace fire_kernels
