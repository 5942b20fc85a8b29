// The cache behind empty_activation (activation_cache.h): free blocks kept in
// the order they were given up, each request served by the last one given up
// that holds it (and is not much larger), so that a network's forward, whose
// activations have the same sizes call after call, takes back the blocks the
// last one gave up, and each layer's output takes the block an earlier layer's
// output has just given up, whatever their sizes: a chain of layers runs in a
// few blocks, taken back while they are still in the CPU's caches. (Kept by
// exact size from 1 MiB, a fused SqueezeNet 1.1's activations at batch 1 took
// 8 blocks, 5.8 MB, those under 1 MiB from glibc, which at times served them
// as fresh pages, faulted in on every forward: its stem took 0.9 ms instead of
// 0.55. Now 3 blocks, 3.9 MB: fewer lines to fetch into caches that an idle
// spell emptied.)
#include "activation_cache.h"

#include <ATen/EmptyTensor.h>
#include <c10/core/Allocator.h>
#include <c10/core/CPUAllocator.h>
#include <c10/core/impl/alloc_cpu.h>

#ifdef __linux__
#include <sys/mman.h>
#endif

#include <mutex>
#include <vector>

namespace fire_kernels {

namespace {

// Outputs from this size on: glibc serves blocks above its mmap threshold (128
// KiB at first, raised as such blocks are freed) as fresh pages, and trims
// its heap; smaller outputs come from PyTorch's allocator.
constexpr size_t kMinCachedBytes = size_t{64} << 10;
// A free block serves requests down to this fraction of its size: a small
// output may take a large block, not a block much larger than it.
constexpr size_t kMaxBlockOverRequest = 8;
// Free blocks held at most, in bytes and in number: enough for a network's
// activations at a large batch; beyond, blocks go back to the system.
constexpr size_t kMaxCachedBytes = size_t{1} << 30;
constexpr size_t kMaxCachedBlocks = 16;

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
    Block block = take(bytes);
    if (!block.ptr) {
      block = {c10::alloc_cpu(bytes), bytes};
      advise_huge_pages(block.ptr, bytes);
    }
    return {block.ptr, new Block(block), &ActivationCache::release, c10::Device(c10::kCPU)};
  }

  void copy_data(void* dest, const void* src, size_t count) const override {
    default_copy_data(dest, src, count);
  }

  int64_t clear() {
    std::lock_guard<std::mutex> lock(mutex_);
    for (const Block& block : free_) c10::free_cpu(block.ptr);
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
  // The free block given up last of those of at least `bytes` (and at most
  // kMaxBlockOverRequest times that), taken out of the cache; {nullptr, 0} if none.
  Block take(size_t bytes) {
    std::lock_guard<std::mutex> lock(mutex_);
    for (auto it = free_.rbegin(); it != free_.rend(); ++it) {
      if (it->bytes < bytes || it->bytes / kMaxBlockOverRequest > bytes) continue;
      const Block block = *it;
      free_.erase(std::next(it).base());
      cached_ -= block.bytes;
      return block;
    }
    return {nullptr, 0};
  }

  bool keep(const Block& block) {
    std::lock_guard<std::mutex> lock(mutex_);
    if (cached_ + block.bytes > kMaxCachedBytes || free_.size() >= kMaxCachedBlocks) return false;
    free_.push_back(block);
    cached_ += block.bytes;
    return true;
  }

  static void release(void* ctx);

  std::mutex mutex_;
  std::vector<Block> free_;  // in the order given up
  size_t cached_ = 0;
};

// Never destroyed: tensors may die after static destructors have run.
ActivationCache& cache() {
  static ActivationCache* instance = new ActivationCache();
  return *instance;
}

void ActivationCache::release(void* ctx) {
  const Block* block = static_cast<const Block*>(ctx);
  if (!cache().keep(*block)) c10::free_cpu(block->ptr);
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
