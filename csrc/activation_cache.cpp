// The cache behind empty_activation (activation_cache.h): free blocks kept by
// exact size, so that a network's forward, whose activations have the same
// sizes call after call, takes back the blocks the last one gave up.
#include "activation_cache.h"

#include <ATen/EmptyTensor.h>
#include <c10/core/Allocator.h>
#include <c10/core/CPUAllocator.h>
#include <c10/core/impl/alloc_cpu.h>

#ifdef __linux__
#include <sys/mman.h>
#endif

#include <mutex>
#include <unordered_map>
#include <vector>

namespace fire_kernels {

namespace {

// Smaller blocks come from glibc's heap without faults (below its mmap threshold).
constexpr size_t kMinCachedBytes = size_t{1} << 20;
// Free blocks held at most, in bytes and per size: enough for a network's
// activations at a large batch; beyond, blocks go back to the system.
constexpr size_t kMaxCachedBytes = size_t{1} << 30;
constexpr size_t kMaxBlocksPerSize = 4;

// Asks Linux to back a large fresh block with 2 MiB pages, as PyTorch's own
// THP_MEM_ALLOC_ENABLE=1 does for every allocation: a block the cache cannot keep
// (beyond its limits) is a fresh mapping on every call, and faulting it in 4 KiB
// at a time cost up to a third of a batch-16 Fire. Only from 32 MiB, glibc's
// largest mmap threshold: below it the first use can stall for compaction for
// little gain. Without transparent huge pages (or off Linux) this does nothing.
void advise_huge_pages(void* ptr, size_t bytes) {
#if defined(__linux__) && defined(MADV_HUGEPAGE)
  constexpr size_t kFreshMappingBytes = size_t{32} << 20;
  if (bytes < kFreshMappingBytes) return;
  constexpr uintptr_t kHuge = uintptr_t{2} << 20;
  const uintptr_t begin = reinterpret_cast<uintptr_t>(ptr);
  const uintptr_t first = (begin + kHuge - 1) & ~(kHuge - 1);
  const uintptr_t last = (begin + bytes) & ~(kHuge - 1);
  if (last > first) madvise(reinterpret_cast<void*>(first), last - first, MADV_HUGEPAGE);
#else
  (void)ptr;
  (void)bytes;
#endif
}

struct Block {
  void* ptr;
  size_t bytes;
};

class ActivationCache final : public c10::Allocator {
 public:
  c10::DataPtr allocate(size_t bytes) override {
    if (bytes < kMinCachedBytes) return c10::GetDefaultCPUAllocator()->allocate(bytes);
    void* ptr = take(bytes);
    if (!ptr) {
      ptr = c10::alloc_cpu(bytes);
      advise_huge_pages(ptr, bytes);
    }
    return {ptr, new Block{ptr, bytes}, &ActivationCache::release, c10::Device(c10::kCPU)};
  }

  void copy_data(void* dest, const void* src, size_t count) const override {
    default_copy_data(dest, src, count);
  }

  int64_t clear() {
    std::lock_guard<std::mutex> lock(mutex_);
    for (auto& [bytes, blocks] : free_)
      for (void* ptr : blocks) c10::free_cpu(ptr);
    free_.clear();
    const size_t freed = cached_;
    cached_ = 0;
    return static_cast<int64_t>(freed);
  }

  int64_t cached() {
    std::lock_guard<std::mutex> lock(mutex_);
    return static_cast<int64_t>(cached_);
  }

 private:
  void* take(size_t bytes) {
    std::lock_guard<std::mutex> lock(mutex_);
    auto it = free_.find(bytes);
    if (it == free_.end() || it->second.empty()) return nullptr;
    void* ptr = it->second.back();
    it->second.pop_back();
    cached_ -= bytes;
    return ptr;
  }

  bool keep(void* ptr, size_t bytes) {
    std::lock_guard<std::mutex> lock(mutex_);
    std::vector<void*>& blocks = free_[bytes];
    if (cached_ + bytes > kMaxCachedBytes || blocks.size() >= kMaxBlocksPerSize) return false;
    blocks.push_back(ptr);
    cached_ += bytes;
    return true;
  }

  static void release(void* ctx);

  std::mutex mutex_;
  std::unordered_map<size_t, std::vector<void*>> free_;
  size_t cached_ = 0;
};

// Never destroyed: tensors may die after static destructors have run.
ActivationCache& cache() {
  static ActivationCache* instance = new ActivationCache();
  return *instance;
}

void ActivationCache::release(void* ctx) {
  const Block* block = static_cast<const Block*>(ctx);
  if (!cache().keep(block->ptr, block->bytes)) c10::free_cpu(block->ptr);
  delete block;
}

}  // namespace

at::Tensor empty_activation(at::IntArrayRef sizes, at::MemoryFormat format) {
  return at::detail::empty_generic(sizes, &cache(), c10::DispatchKeySet(c10::DispatchKey::CPU),
                                   at::kFloat, format);
}

int64_t empty_activation_cache() { return cache().clear(); }

int64_t activation_cache_bytes() { return cache().cached(); }

}  // namespace fire_kernels
