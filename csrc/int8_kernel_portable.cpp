// The int8 kernels (fused Fire, head) in portable C++ (see int8_kernel_run.h).
#include "int8_kernel.h"
#include "int8_kernel_run.h"
#include "qvec_portable.h"

namespace fire_kernels {
const Int8Kernel kInt8Portable = int8_kernel<QVecPortable>();
}  // namespace fire_kernels
