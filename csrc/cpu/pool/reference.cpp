// The definition of pooling: one window at a time, serial, bounds checked per
// element. Mirrors PyTorch's CPU loops so edge cases (NaN, -inf, ceil_mode
// overhang, the avg divisor) have exactly its behaviour.
#include <algorithm>

#include "cnnkit/pool.h"
#include "cpu/pool/kernels.h"
#include "cpu/pool/window.h"

namespace cnnkit {
namespace {

void max_forward(const Pool2dShape& s, const float* input, float* out, int64_t* indices) {
  for (int64_t p = 0; p < s.planes; ++p) {
    const float* plane = input + p * s.in_h * s.in_w;
    for (int64_t oh = 0; oh < s.out_h; ++oh) {
      for (int64_t ow = 0; ow < s.out_w; ++ow) {
        int64_t best_index = 0;
        const int64_t o = (p * s.out_h + oh) * s.out_w + ow;
        out[o] = window_max(s, plane, oh, ow, best_index);
        if (indices != nullptr) indices[o] = best_index;
      }
    }
  }
}

void max_backward(const Pool2dShape& s, const float* grad_out, const int64_t* indices,
                  float* grad_input) {
  const int64_t plane = s.in_h * s.in_w;
  const int64_t outputs = s.out_h * s.out_w;
  std::fill(grad_input, grad_input + s.planes * plane, 0.0f);
  for (int64_t p = 0; p < s.planes; ++p) {
    for (int64_t o = 0; o < outputs; ++o) {
      grad_input[p * plane + indices[p * outputs + o]] += grad_out[p * outputs + o];
    }
  }
}

void avg_forward(const Pool2dShape& s, bool count_include_pad, const float* input, float* out) {
  for (int64_t p = 0; p < s.planes; ++p) {
    const float* plane = input + p * s.in_h * s.in_w;
    for (int64_t oh = 0; oh < s.out_h; ++oh) {
      for (int64_t ow = 0; ow < s.out_w; ++ow) {
        int64_t h0, h1, w0, w1;
        const int64_t divisor = avg_window(s, count_include_pad, oh, ow, h0, h1, w0, w1);
        float sum = 0.0f;
        for (int64_t h = h0; h < h1; ++h) {
          for (int64_t w = w0; w < w1; ++w) sum += plane[h * s.in_w + w];
        }
        out[(p * s.out_h + oh) * s.out_w + ow] = sum / static_cast<float>(divisor);
      }
    }
  }
}

void avg_backward(const Pool2dShape& s, bool count_include_pad, const float* grad_out,
                  float* grad_input) {
  const int64_t plane_size = s.in_h * s.in_w;
  std::fill(grad_input, grad_input + s.planes * plane_size, 0.0f);
  for (int64_t p = 0; p < s.planes; ++p) {
    float* plane = grad_input + p * plane_size;
    for (int64_t oh = 0; oh < s.out_h; ++oh) {
      for (int64_t ow = 0; ow < s.out_w; ++ow) {
        int64_t h0, h1, w0, w1;
        const int64_t divisor = avg_window(s, count_include_pad, oh, ow, h0, h1, w0, w1);
        const float g = grad_out[(p * s.out_h + oh) * s.out_w + ow] / static_cast<float>(divisor);
        for (int64_t h = h0; h < h1; ++h) {
          for (int64_t w = w0; w < w1; ++w) plane[h * s.in_w + w] += g;
        }
      }
    }
  }
}

}  // namespace

const PoolKernels pool_reference = {max_forward, max_backward, avg_forward, avg_backward};

}  // namespace cnnkit
