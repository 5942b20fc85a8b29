// The int8 fused Fire kernel in portable C++ (see int8_fire_run.h).
#include "int8_fire.h"
#include "int8_fire_run.h"
#include "qvec_portable.h"

namespace fire_kernels {
const Int8FireKernel kInt8FirePortable = int8_fire_kernel<QVecPortable>();
}  // namespace fire_kernels
