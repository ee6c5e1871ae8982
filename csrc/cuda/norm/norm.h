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

// Two forms, both tested: chunks = 0 is the plain one, a thread per channel folding the channel
// serially (as the CPU reference loops); chunks >= 1 splits each channel into that many chunks
// folded by a block each, so that even a few channels fill the GPU. Either way the partial sums
// are folded per channel in a fixed order and the elements written by an elementwise pass. The
// scratch holds batch_norm_scratch(channels, chunks) doubles.
int64_t batch_norm_scratch(int64_t channels, int64_t chunks);

// weight, bias may be null (1 and 0). Training: batch statistics, and running_mean/running_var
// (both or neither) blended in with momentum, the variance unbiased. Eval: the running statistics.
void batch_norm_forward(const NormShape& s, const float* x, float* running_mean, float* running_var,
                        const float* weight, const float* bias, bool training, double momentum, double eps, float* y,
                        int64_t chunks, double* scratch, const Where& where);

// grad_weight, grad_bias may be null (not wanted). Training recomputes the batch statistics from
// x; eval uses the running statistics.
void batch_norm_backward(const NormShape& s, const float* dy, const float* x, const float* running_mean,
                         const float* running_var, const float* weight, bool training, double eps, float* dx,
                         float* grad_weight, float* grad_bias, int64_t chunks, double* scratch, const Where& where);

// x / (k + alpha / size * sum of x^2 over channels [c - size/2, c + (size-1)/2]) ** beta, with the
// input viewed as (batch, channels, spatial).
void lrn_forward(const NormShape& s, const float* x, int64_t size, double alpha, double beta, double k, float* y,
                 const Where& where);
void lrn_backward(const NormShape& s, const float* dy, const float* x, int64_t size, double alpha, double beta,
                  double k, float* dx, const Where& where);

}  // namespace cnnkit::cuda
