// The extension's own thread pool: parallel_for for every kernel call, in
// place of at::parallel_for.
//
// Why not PyTorch's pool (OpenMP): its parallel region ends in a barrier at
// which the calling thread waits, spinning, for every thread of the team to
// arrive, whether or not it had any work. On a virtual machine whose idle
// vCPUs the host parks, a worker woken after the process idled can take a host
// time slice to run, and the caller spins for it the whole time: measured on a
// 2-vCPU AMD EPYC, a 256x256 torch.mm took 0.2 ms back to back and 11.8 ms
// after a 100 ms pause (0.7 ms, median, with OMP_WAIT_POLICY=passive, which
// costs every back-to-back call instead), and SqueezeNet 1.1 int8 at batch 1
// 1.4 ms and 11.8 ms. ONNX Runtime, whose caller never waits for a worker that has not
// started, lost nothing.
//
// So here the range is cut into contiguous chunks, up to kChunksPerThread per
// thread (at::parallel_for's are one per thread), claimed in order: the caller
// publishes the call, wakes any sleeping worker, and runs chunks itself until
// none is left; then it waits only for chunks a worker has already claimed. A
// worker that has not woken by then finds nothing to do, and one that wakes
// late still finds chunks left. Workers spin for a while after a call (most
// kernel calls follow another within microseconds) and then sleep.
//
// torch.set_num_threads governs it (at::get_num_threads() threads, the caller
// one of them). Inside a chunk at::in_parallel_region() is true (c10's
// ParallelGuard), so nested parallel_for and at::parallel_for calls run inline.
// An exception thrown by a chunk is rethrown to the caller (the first one, as
// at::parallel_for does), after every claimed chunk has finished.
#pragma once

#include <c10/util/FunctionRef.h>

#include <cstdint>

namespace fire_kernels {

// fn(b, e) over [begin, end) in chunks, as at::parallel_for(begin, end, grain,
// fn): inline (one chunk) where the range has at most `grain` elements, one
// thread is set, or the caller is inside a parallel region.
void parallel_for(int64_t begin, int64_t end, int64_t grain,
                  c10::function_ref<void(int64_t, int64_t)> fn);

}  // namespace fire_kernels
