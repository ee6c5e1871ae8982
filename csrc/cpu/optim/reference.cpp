// The definition of the optimizer updates: update_impl.h one element at a
// time, in order, on the calling thread; and the same scalar code as the
// threaded kernel for CPUs without AVX2.
#include "cpu/optim/scalar_lane.h"
#include "cpu/optim/update_impl.h"

namespace cnnkit {

void optimizer_range_scalar(const OptimizerOptions& o, const OptimizerCoefficients& c,
                            const OptimizerTensor& t, int64_t begin, int64_t end) {
  optimizer_range<ScalarLane>(o, c, t, begin, end);
}

void optimizer_step_reference(const OptimizerOptions& o, const OptimizerTensor* tensors,
                              int64_t count) {
  validate(o, tensors, count);
  for (int64_t k = 0; k < count; ++k) {
    optimizer_range_scalar(o, optimizer_coefficients(o, tensors[k]), tensors[k], 0, tensors[k].n);
  }
}

}  // namespace cnnkit
