// Every activation implementation, declared once for the dispatcher.
#pragma once
#include "cnnkit/act.h"

namespace cnnkit {

// Vector kernels over one contiguous range, serial; built per ISA from
// vector_impl.h. They never throw: the dispatcher validates first.
struct ActRangeKernels {
  void (*forward)(const ActParams&, const float* x, float* y, int64_t n);
  void (*backward)(const ActParams&, const float* dy, const float* x, float* dx, int64_t n);
};
extern const ActRangeKernels act_vector_avx2;
extern const ActRangeKernels act_vector_avx512;

// The vector kernels split over threads (vector.cpp).
void activation_forward_avx2(const ActParams& p, const float* x, float* y, int64_t n);
void activation_backward_avx2(const ActParams& p, const float* dy, const float* x, float* dx,
                              int64_t n);
void activation_forward_avx512(const ActParams& p, const float* x, float* y, int64_t n);
void activation_backward_avx512(const ActParams& p, const float* dy, const float* x, float* dx,
                                int64_t n);

void activation_forward_threaded(const ActParams& p, const float* x, float* y, int64_t n);
void activation_backward_threaded(const ActParams& p, const float* dy, const float* x,
                                  float* dx, int64_t n);
void prelu_forward_threaded(const PreluShape& s, const float* x, const float* weight, float* y);
void prelu_backward_threaded(const PreluShape& s, const float* dy, const float* x,
                             const float* weight, float* dx, float* dweight);

}  // namespace cnnkit
