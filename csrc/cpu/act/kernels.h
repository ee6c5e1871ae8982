// Every activation implementation, declared once for the dispatcher.
#pragma once
#include "cnnkit/act.h"

namespace cnnkit {

// Vector kernels over one contiguous range, serial; built per ISA from
// vector_impl.h. They never throw: the dispatcher validates first.
struct ActRangeKernels {
  void (*forward)(const ActParams&, const float* x, float* y, int64_t n);
  void (*backward)(const ActParams&, const float* dy, const float* x, float* dx, int64_t n);
  void (*add)(const float* a, const float* b, float* out, int64_t n, bool relu);
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
void elementwise_add_avx2(const float* a, const float* b, float* out, int64_t n, bool relu);
void elementwise_add_avx512(const float* a, const float* b, float* out, int64_t n, bool relu);

// PReLU over one contiguous row with one weight, serial; built per ISA from
// prelu_impl.h. backward returns the row's sum of dy * x where x <= 0.
struct PreluRowKernels {
  void (*forward)(const float* x, float* y, int64_t n, float weight);
  double (*backward)(const float* dy, const float* x, float* dx, int64_t n, float weight);
};
extern const PreluRowKernels prelu_rows_avx2;
extern const PreluRowKernels prelu_rows_avx512;

// The PReLU rows split over threads (prelu_vector.cpp).
void prelu_forward_avx2(const PreluShape& s, const float* x, const float* weight, float* y);
void prelu_backward_avx2(const PreluShape& s, const float* dy, const float* x,
                         const float* weight, float* dx, float* dweight);
void prelu_forward_avx512(const PreluShape& s, const float* x, const float* weight, float* y);
void prelu_backward_avx512(const PreluShape& s, const float* dy, const float* x,
                           const float* weight, float* dx, float* dweight);

void activation_forward_threaded(const ActParams& p, const float* x, float* y, int64_t n);
void activation_backward_threaded(const ActParams& p, const float* dy, const float* x,
                                  float* dx, int64_t n);
void elementwise_add_threaded(const float* a, const float* b, float* out, int64_t n, bool relu);
void prelu_forward_threaded(const PreluShape& s, const float* x, const float* weight, float* y);
void prelu_backward_threaded(const PreluShape& s, const float* dy, const float* x,
                             const float* weight, float* dx, float* dweight);

}  // namespace cnnkit
