#include "cuda/common/check.h"

namespace cnnkit::cuda {

void fail(const char* op, cudaError_t status) {
  ErrorKind kind = status == cudaErrorMemoryAllocation ? ErrorKind::Memory : ErrorKind::Value;
  throw Error(kind, std::string(op) + ": CUDA error " + cudaGetErrorName(status) + ": " +
                        cudaGetErrorString(status));
}

}  // namespace cnnkit::cuda
