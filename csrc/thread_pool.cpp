// The extension's thread pool (thread_pool.h).
#include "thread_pool.h"

#include <ATen/Parallel.h>
#include <c10/util/ParallelGuard.h>
#include <pthread.h>
#include <sched.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <exception>
#include <mutex>
#include <thread>
#include <utility>
#include <vector>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#endif

namespace fire_kernels {

namespace {

using Clock = std::chrono::steady_clock;

// How long a worker spins for the next call before it sleeps, and the caller
// for claimed chunks to finish before it sleeps. Long enough to span the gap
// between the kernel calls of one forward (Python between modules: tens of
// microseconds), short enough to leave the cores to others soon after.
constexpr auto kWorkerSpin = std::chrono::microseconds(1000);
constexpr auto kCallerSpin = std::chrono::microseconds(200);

void cpu_relax() {
#if defined(__x86_64__) || defined(__i386__)
  _mm_pause();
#else
  std::this_thread::yield();
#endif
}

// The CPU the calling thread runs on, or -1 where that is not known.
int current_cpu() {
#ifdef __linux__
  return sched_getcpu();
#else
  return -1;
#endif
}

// Spins until done() or `spin` has passed; whether done() came true.
template <typename Done>
bool spin_until(Done done, Clock::duration spin) {
  const Clock::time_point deadline = Clock::now() + spin;
  for (int i = 1;; ++i) {
    if (done()) return true;
    if (i % 64 == 0 && Clock::now() > deadline) return false;
    cpu_relax();
  }
}

// The published call: epoch (bits 32-63; a new one per call), its chunk count
// (bits 16-31) and the next unclaimed chunk (bits 0-15), in one word so that a
// claim (a compare-and-swap) succeeds only for the call it was meant for.
constexpr uint64_t state_of(uint32_t epoch, uint64_t chunks, uint64_t next) {
  return uint64_t{epoch} << 32 | chunks << 16 | next;
}
constexpr uint32_t epoch_of(uint64_t s) { return static_cast<uint32_t>(s >> 32); }
constexpr int64_t chunks_of(uint64_t s) { return static_cast<int64_t>(s >> 16 & 0xffff); }
constexpr int64_t next_of(uint64_t s) { return static_cast<int64_t>(s & 0xffff); }
constexpr int64_t kMaxChunks = 0xffff;
// Chunks a thread, at most (thread_pool.h). One, as at::parallel_for, leaves a
// call to the caller alone until the worker wakes: after a 100 ms pause, int8
// SqueezeNet 1.1 pruned at batch 16 (its images a chunk each) took 28.1 ms
// (median of 15) where 14.7 back to back, the one thread's time; with 8, 20.6
// (scratch script, AMD EPYC VM, 2 threads).
constexpr int64_t kChunksPerThread = 8;

class Pool {
 public:
  // Runs fn over `chunks` chunks of `chunk_size` from `begin` (the last one
  // cut at `end`) on the caller and any worker that comes, `threads` in all.
  // False where another caller has the pool (the caller then runs inline).
  bool run(int64_t begin, int64_t end, int64_t chunk_size, int64_t chunks, int64_t threads,
           c10::function_ref<void(int64_t, int64_t)> fn) {
    std::unique_lock<std::mutex> caller(caller_mutex_, std::try_to_lock);
    if (!caller.owns_lock()) return false;
    const uint32_t epoch = epoch_of(state_.load()) + 1;
    start_workers(threads - 1);
    keep_workers_off(current_cpu());
    begin_ = begin, end_ = end, chunk_size_ = chunk_size, fn_ = &fn;
    state_.store(state_of(epoch, chunks, 0));
    {
      std::lock_guard<std::mutex> lock(mutex_);
      if (sleepers_ > 0) work_cv_.notify_all();
    }
    {
      const c10::ParallelGuard guard(true);
      run_chunks(epoch);
    }
    // Every chunk is claimed; wait for those a worker runs.
    if (!spin_until([&] { return busy_.load() == 0; }, kCallerSpin)) {
      std::unique_lock<std::mutex> lock(mutex_);
      done_cv_.wait(lock, [&] { return busy_.load() == 0; });
    }
    if (failed_.load()) {
      failed_.store(false);
      std::exception_ptr error = std::exchange(error_, nullptr);
      std::rethrow_exception(error);
    }
    return true;
  }

 private:
  // Claims and runs chunks of call `epoch` while it has unclaimed ones.
  void run_chunks(uint32_t epoch) {
    uint64_t s = state_.load();
    while (epoch_of(s) == epoch && next_of(s) < chunks_of(s)) {
      if (!state_.compare_exchange_weak(s, s + 1)) continue;
      // Claimed: the caller waits for this chunk, so the call's fields hold.
      const int64_t b = begin_ + next_of(s) * chunk_size_;
      if (!failed_.load()) {
        try {
          (*fn_)(b, std::min(end_, b + chunk_size_));
        } catch (...) {
          std::lock_guard<std::mutex> lock(mutex_);
          if (!failed_.load()) error_ = std::current_exception(), failed_.store(true);
        }
      }
      s = state_.load();
    }
  }

  void start_workers(int64_t wanted) {
    while (static_cast<int64_t>(workers_.size()) < wanted) {
      const uint32_t seen = epoch_of(state_.load());
      std::thread worker([this, seen] { work(seen); });
      workers_.push_back(worker.native_handle());
      worker.detach();
      off_cpu_ = -1;  // the new worker may run anywhere
    }
  }

  // Lets the workers run on any CPU the caller may but `cpu`, the caller's.
  // Woken after the machine idled, a worker is otherwise often queued on the
  // CPU of the thread that woke it (Linux in a VM does not count a parked vCPU
  // as idle), where it waits for the caller's time slice to end: SqueezeNet
  // 1.1 int8 at batch 1 after a 100 ms pause took 3.0-4.2 ms (medians of 20;
  // 1.5 to 7.7 ms a call, the slow ones with both threads on one CPU), and
  // 1.72-1.85 ms with the workers kept off the caller's CPU (1.2 back to back).
  void keep_workers_off(int cpu) {
#ifdef __linux__
    if (cpu < 0 || cpu == off_cpu_) return;
    off_cpu_ = cpu;
    cpu_set_t others;
    if (sched_getaffinity(0, sizeof(others), &others) != 0) return;
    CPU_CLR(cpu, &others);
    if (CPU_COUNT(&others) == 0) return;  // the caller's one CPU: leave the workers be
    for (const pthread_t worker : workers_) pthread_setaffinity_np(worker, sizeof(others), &others);
#else
    (void)cpu;
#endif
  }

  [[noreturn]] void work(uint32_t seen) {
    const c10::ParallelGuard guard(true);
    for (;;) {
      uint64_t s = 0;
      const auto published = [&] { return epoch_of(s = state_.load()) != seen; };
      if (!spin_until(published, kWorkerSpin)) {
        std::unique_lock<std::mutex> lock(mutex_);
        ++sleepers_;
        work_cv_.wait(lock, published);
        --sleepers_;
      }
      seen = epoch_of(s);
      // Counted before claiming: the caller waits for every counted worker.
      busy_.fetch_add(1);
      run_chunks(seen);
      if (busy_.fetch_sub(1) == 1) {
        std::lock_guard<std::mutex> lock(mutex_);
        done_cv_.notify_all();
      }
    }
  }

  std::atomic<uint64_t> state_{0};
  std::atomic<int64_t> busy_{0};
  std::atomic<bool> failed_{false};
  // The call, set by its caller before it publishes state_.
  int64_t begin_ = 0, end_ = 0, chunk_size_ = 1;
  const c10::function_ref<void(int64_t, int64_t)>* fn_ = nullptr;
  std::exception_ptr error_;
  std::mutex caller_mutex_, mutex_;
  std::condition_variable work_cv_, done_cv_;
  int sleepers_ = 0;
  std::vector<pthread_t> workers_;
  int off_cpu_ = -1;  // the CPU the workers are kept off (-1: none yet)
};

// Never destroyed (workers may wait on it while the process exits); a forked
// child, which has none of the parent's workers, starts a pool of its own.
Pool* pool = nullptr;
std::once_flag made;

Pool& the_pool() {
  std::call_once(made, [] {
    pool = new Pool();
    pthread_atfork(nullptr, nullptr, [] { pool = new Pool(); });
  });
  return *pool;
}

}  // namespace

void parallel_for(int64_t begin, int64_t end, int64_t grain,
                  c10::function_ref<void(int64_t, int64_t)> fn) {
  const int64_t n = end - begin;
  if (n <= 0) return;
  grain = std::max<int64_t>(grain, 1);
  const int64_t threads = at::in_parallel_region() ? 1 : at::get_num_threads();
  if (n <= grain || threads <= 1) {
    fn(begin, end);
    return;
  }
  const int64_t parts =
      std::min({threads * kChunksPerThread, (n + grain - 1) / grain, kMaxChunks});
  const int64_t chunk_size = (n + parts - 1) / parts;
  const int64_t chunks = (n + chunk_size - 1) / chunk_size;
  if (!the_pool().run(begin, end, chunk_size, chunks, threads, fn)) {
    const c10::ParallelGuard guard(true);
    fn(begin, end);
  }
}

}  // namespace fire_kernels
