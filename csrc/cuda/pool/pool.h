// Pooling on the GPU, on NCHW planes, with the CPU's semantics (cnnkit/pool.h; the windows are
// cpu/pool/window.h). Backward passes gather: each input element sums the outputs whose windows
// hold it, in a fixed order, so no atomics and the result never depends on scheduling.
#pragma once
#include <cstdint>

#include "cnnkit/pool.h"
#include "cuda/common/where.h"

namespace cnnkit::cuda {

// indices may be null.
void max_pool2d_forward(const Pool2dShape& s, const float* x, float* y, int64_t* indices, const Where& where);
// An index that is not a tap of its own window (the forward never gives one) makes its whole
// plane's gradient NaN: the GPU cannot raise without synchronising, and a dropped gradient would
// be a silent wrong answer.
void max_pool2d_backward(const Pool2dShape& s, const float* dy, const int64_t* indices, float* dx, const Where& where);

// divisor_override: 0 for PyTorch's divisor (count_include_pad), else the divisor of every window.
void avg_pool2d_forward(const Pool2dShape& s, bool count_include_pad, int64_t divisor_override, const float* x,
                        float* y, const Where& where);
void avg_pool2d_backward(const Pool2dShape& s, bool count_include_pad, int64_t divisor_override, const float* dy,
                         float* dx, const Where& where);

// PyTorch's adaptive windows [floor(i * in / out), ceil((i + 1) * in / out)).
void adaptive_avg_pool2d_forward(int64_t planes, int64_t in_h, int64_t in_w, int64_t out_h, int64_t out_w,
                                 const float* x, float* y, const Where& where);
void adaptive_avg_pool2d_backward(int64_t planes, int64_t in_h, int64_t in_w, int64_t out_h, int64_t out_w,
                                  const float* dy, float* dx, const Where& where);

}  // namespace cnnkit::cuda
