// Every pooling implementation, declared once for the dispatcher and the tests.
#pragma once
#include <cstdint>

#include "cnnkit/pool.h"

namespace cnnkit {

// One implementation of the four pooling kernels. They never throw (they run
// inside parallel regions): the dispatcher validates shapes and indices first.
struct PoolKernels {
  void (*max_forward)(const Pool2dShape&, const float* input, float* out, int64_t* indices);
  void (*max_backward)(const Pool2dShape&, const float* grad_out, const int64_t* indices,
                       float* grad_input);
  void (*avg_forward)(const Pool2dShape&, bool count_include_pad, const float* input, float* out);
  void (*avg_backward)(const Pool2dShape&, bool count_include_pad, const float* grad_out,
                       float* grad_input);
};

extern const PoolKernels pool_direct_scalar;
extern const PoolKernels pool_vector_avx2;
extern const PoolKernels pool_vector_avx512;
extern const PoolKernels pool_reference;

// Index error unless every index lies within its plane.
void check_pool_indices(const Pool2dShape& s, const int64_t* indices);

// Adaptive average pooling on planes [p0, p1), serially; built per ISA from adaptive_impl.h.
struct AdaptivePoolKernels {
  void (*forward)(const AdaptivePoolShape&, const float* input, float* out, int64_t p0, int64_t p1);
  void (*backward)(const AdaptivePoolShape&, const float* grad_out, float* grad_input, int64_t p0,
                   int64_t p1);
};
extern const AdaptivePoolKernels adaptive_pool_scalar;
extern const AdaptivePoolKernels adaptive_pool_avx2;
extern const AdaptivePoolKernels adaptive_pool_avx512;

}  // namespace cnnkit
