// Batch normalisation and local response normalisation on the GPU, with the CPU's definitions
// (cpu/norm/reference.cpp, functional.local_response_norm). Per-channel statistics are reduced in
// double, around a shift (the channel's first element) so that a large mean does not cancel the
// variance, in the fixed order of launch.cuh: results never depend on scheduling.
#pragma once
#include <cstdint>

#include "cuda/common/where.h"

namespace cnnkit::cuda {

// x is (batch, channels, spatial) in memory.
struct NormShape {
  int64_t batch = 0, channels = 0, spatial = 1;
};

// weight, bias may be null (1 and 0). Training: batch statistics, and running_mean/running_var
// (both or neither) blended in with momentum, the variance unbiased. Eval: the running statistics.
// `by_block`: one block per channel (long channels) or one thread per channel.
void batch_norm_forward(const NormShape& s, const float* x, float* running_mean, float* running_var,
                        const float* weight, const float* bias, bool training, double momentum, double eps, float* y,
                        bool by_block, const Where& where);

// grad_weight, grad_bias may be null (not wanted). Training recomputes the batch statistics from
// x into scratch (2 * channels doubles); eval reads the running statistics (scratch unused).
void batch_norm_backward(const NormShape& s, const float* dy, const float* x, const float* running_mean,
                         const float* running_var, const float* weight, bool training, double eps, float* dx,
                         float* grad_weight, float* grad_bias, double* scratch, bool by_block, const Where& where);

// x / (k + alpha / size * sum of x^2 over channels [c - size/2, c + (size-1)/2]) ** beta, with the
// input viewed as (batch, channels, spatial).
void lrn_forward(const NormShape& s, const float* x, int64_t size, double alpha, double beta, double k, float* y,
                 const Where& where);
void lrn_backward(const NormShape& s, const float* dy, const float* x, int64_t size, double alpha, double beta,
                  double k, float* dx, const Where& where);

}  // namespace cnnkit::cuda
