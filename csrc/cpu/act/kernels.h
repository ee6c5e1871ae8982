// Every activation implementation, declared once for the dispatcher.
#pragma once
#include "cnnkit/act.h"

namespace cnnkit {

void activation_forward_threaded(const ActParams& p, const float* x, float* y, int64_t n);
void activation_backward_threaded(const ActParams& p, const float* dy, const float* x,
                                  float* dx, int64_t n);
void prelu_forward_threaded(const PreluShape& s, const float* x, const float* weight, float* y);
void prelu_backward_threaded(const PreluShape& s, const float* dy, const float* x,
                             const float* weight, float* dx, float* dweight);

}  // namespace cnnkit
