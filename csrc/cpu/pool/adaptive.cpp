// Adaptive average pooling: validation, the reference loops, planes split
// over threads, and the ordered list of implementations.
#include "core/parallel.h"
#include "core/registry.h"
#include "cpu/pool/kernels.h"

namespace cnnkit {
namespace {

void check(const AdaptivePoolShape& s) {
  CNNKIT_CHECK(s.planes >= 0 && s.in_h >= 1 && s.in_w >= 1 && s.out_h >= 1 && s.out_w >= 1,
               ErrorKind::Value, "adaptive_avg_pool2d: sizes must be >= 1 (planes >= 0)");
  // Window bounds are computed as (i + 1) * n: keep that product in range.
  checked_mul(s.out_h + 1, s.in_h, "adaptive_avg_pool2d window bound");
  checked_mul(s.out_w + 1, s.in_w, "adaptive_avg_pool2d window bound");
}

const KernelImpl<AdaptivePoolShape, const AdaptivePoolKernels*> kKernels[] = {
#ifdef CNNKIT_X86
    {"threaded_avx512", Isa::Avx512, nullptr, &adaptive_pool_avx512},
    {"threaded_avx2", Isa::Avx2, nullptr, &adaptive_pool_avx2},
#endif
    {"threaded", Isa::Scalar, nullptr, &adaptive_pool_scalar},
};

// Each plane reads in_h * in_w inputs and writes out_h * out_w outputs (or the reverse).
int64_t plane_cost(const AdaptivePoolShape& s) {
  return work_per_item(s.planes, {s.in_h * s.in_w + s.out_h * s.out_w});
}

}  // namespace

void adaptive_avg_pool2d(const AdaptivePoolShape& s, const float* input, float* out) {
  check(s);
  const AdaptivePoolKernels* k = select_kernel(kKernels, s).run;
  parallel_for(s.planes, plane_cost(s),
               [&](int64_t p0, int64_t p1) { k->forward(s, input, out, p0, p1); });
}

void adaptive_avg_pool2d_backward(const AdaptivePoolShape& s, const float* grad_out,
                                  float* grad_input) {
  check(s);
  const AdaptivePoolKernels* k = select_kernel(kKernels, s).run;
  parallel_for(s.planes, plane_cost(s),
               [&](int64_t p0, int64_t p1) { k->backward(s, grad_out, grad_input, p0, p1); });
}

const char* adaptive_pool2d_implementation() {
  return select_kernel(kKernels, AdaptivePoolShape{}).name;
}

// The definition: each output the double sum of its window in row-major order.
void adaptive_avg_pool2d_reference(const AdaptivePoolShape& s, const float* input, float* out) {
  check(s);
  for (int64_t p = 0; p < s.planes; ++p) {
    for (int64_t i = 0; i < s.out_h; ++i) {
      const int64_t h0 = i * s.in_h / s.out_h, h1 = ((i + 1) * s.in_h + s.out_h - 1) / s.out_h;
      for (int64_t j = 0; j < s.out_w; ++j) {
        const int64_t w0 = j * s.in_w / s.out_w, w1 = ((j + 1) * s.in_w + s.out_w - 1) / s.out_w;
        double sum = 0.0;
        for (int64_t h = h0; h < h1; ++h) {
          for (int64_t w = w0; w < w1; ++w) sum += input[(p * s.in_h + h) * s.in_w + w];
        }
        out[(p * s.out_h + i) * s.out_w + j] =
            static_cast<float>(sum / static_cast<double>((h1 - h0) * (w1 - w0)));
      }
    }
  }
}

// The definition: each input element the double sum of the shares of the windows holding it.
void adaptive_avg_pool2d_backward_reference(const AdaptivePoolShape& s, const float* grad_out,
                                            float* grad_input) {
  check(s);
  for (int64_t p = 0; p < s.planes; ++p) {
    for (int64_t h = 0; h < s.in_h; ++h) {
      for (int64_t w = 0; w < s.in_w; ++w) {
        double sum = 0.0;
        for (int64_t i = 0; i < s.out_h; ++i) {
          const int64_t h0 = i * s.in_h / s.out_h, h1 = ((i + 1) * s.in_h + s.out_h - 1) / s.out_h;
          if (h < h0 || h >= h1) continue;
          for (int64_t j = 0; j < s.out_w; ++j) {
            const int64_t w0 = j * s.in_w / s.out_w;
            const int64_t w1 = ((j + 1) * s.in_w + s.out_w - 1) / s.out_w;
            if (w < w0 || w >= w1) continue;
            sum += static_cast<double>(grad_out[(p * s.out_h + i) * s.out_w + j]) /
                   static_cast<double>((h1 - h0) * (w1 - w0));
          }
        }
        grad_input[(p * s.in_h + h) * s.in_w + w] = static_cast<float>(sum);
      }
    }
  }
}

}  // namespace cnnkit
