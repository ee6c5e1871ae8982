// Local response norm: validation, the reference loops, units split over
// threads, and the ordered list of implementations.
#include <cmath>
#include <string>
#include <vector>

#include "core/parallel.h"
#include "core/registry.h"
#include "cpu/norm/kernels.h"
#include "cpu/norm/lrn_impl.h"

namespace cnnkit {
namespace {

void check(const LrnShape& s, const LrnParams& p) {
  CNNKIT_CHECK(s.batch >= 0 && s.channels >= 0 && s.inner >= 0, ErrorKind::Value,
               "local_response_norm: negative size");
  CNNKIT_CHECK(p.size >= 1, ErrorKind::Value,
               "local_response_norm: size must be >= 1, got " + std::to_string(p.size));
  checked_mul(checked_mul(s.batch, s.channels, "input size"), s.inner, "input size");
  checked_mul(2 * s.channels + 2, kLrnBlock, "local_response_norm workspace");
}

const KernelImpl<LrnShape, const LrnKernels*> kKernels[] = {
#ifdef CNNKIT_X86
    {"threaded_avx512", Isa::Avx512, nullptr, &lrn_avx512},
    {"threaded_avx2", Isa::Avx2, nullptr, &lrn_avx2},
#endif
    {"threaded", Isa::Scalar, nullptr, &lrn_scalar},
};

// Units are (image, block of kLrnBlock positions): the same whatever the thread count.
template <class Fn>
void for_units(const LrnShape& s, int64_t work_doubles_per_position, int64_t cost, Fn fn) {
  const int64_t blocks = (s.inner + kLrnBlock - 1) / kLrnBlock;
  const int64_t units = checked_mul(s.batch, blocks, "local_response_norm units");
  parallel_for(units, work_per_item(units, {s.channels, kLrnBlock, cost}), [&](int64_t u0, int64_t u1) {
    std::vector<double> work(static_cast<size_t>(work_doubles_per_position * kLrnBlock));
    for (int64_t u = u0; u < u1; ++u) {
      const int64_t n = u / blocks, s0 = (u % blocks) * kLrnBlock;
      fn(n, s0, std::min(kLrnBlock, s.inner - s0), work.data());
    }
  });
}

// The window of channel c, summed anew: [c - size/2, c + (size - 1)/2] within [0, C).
double window_sum(const LrnShape& s, const LrnParams& p, const float* x, int64_t n, int64_t c,
                  int64_t i) {
  double sum = 0.0;
  const int64_t first = std::max<int64_t>(0, c - p.size / 2);
  const int64_t last = std::min(s.channels - 1, c + (p.size - 1) / 2);
  for (int64_t d = first; d <= last; ++d) {
    const double v = x[(n * s.channels + d) * s.inner + i];
    sum += v * v;
  }
  return sum;
}

}  // namespace

void local_response_norm(const LrnShape& s, const LrnParams& p, const float* x, float* y) {
  check(s, p);
  const LrnKernels* k = select_kernel(kKernels, s).run;
  for_units(s, 2, 8, [&](int64_t n, int64_t s0, int64_t len, double* work) {
    k->forward(s, p, x, y, n, s0, len, work);
  });
}

void local_response_norm_backward(const LrnShape& s, const LrnParams& p, const float* grad_out,
                                  const float* x, float* grad_input) {
  check(s, p);
  const LrnKernels* k = select_kernel(kKernels, s).run;
  for_units(s, 2 * s.channels + 2, 16, [&](int64_t n, int64_t s0, int64_t len, double* work) {
    k->backward(s, p, grad_out, x, grad_input, n, s0, len, work);
  });
}

const char* local_response_norm_implementation() { return select_kernel(kKernels, LrnShape{}).name; }

void local_response_norm_reference(const LrnShape& s, const LrnParams& p, const float* x, float* y) {
  check(s, p);
  const double coef = p.alpha / static_cast<double>(p.size);
  for (int64_t n = 0; n < s.batch; ++n) {
    for (int64_t c = 0; c < s.channels; ++c) {
      for (int64_t i = 0; i < s.inner; ++i) {
        const int64_t at = (n * s.channels + c) * s.inner + i;
        const double scale = p.k + coef * window_sum(s, p, x, n, c, i);
        y[at] = static_cast<float>(x[at] * std::pow(scale, -p.beta));
      }
    }
  }
}

// dx_j = dy_j scale_j^-beta - 2 alpha beta / size * x_j * sum over the channels c
// whose window holds j of dy_c x_c scale_c^(-beta - 1).
void local_response_norm_backward_reference(const LrnShape& s, const LrnParams& p,
                                            const float* grad_out, const float* x,
                                            float* grad_input) {
  check(s, p);
  const double coef = p.alpha / static_cast<double>(p.size);
  for (int64_t n = 0; n < s.batch; ++n) {
    for (int64_t j = 0; j < s.channels; ++j) {
      for (int64_t i = 0; i < s.inner; ++i) {
        const int64_t at = (n * s.channels + j) * s.inner + i;
        double spread = 0.0;
        for (int64_t c = std::max<int64_t>(0, j - (p.size - 1) / 2);
             c <= std::min(s.channels - 1, j + p.size / 2); ++c) {
          const int64_t ac = (n * s.channels + c) * s.inner + i;
          const double scale = p.k + coef * window_sum(s, p, x, n, c, i);
          spread += static_cast<double>(grad_out[ac]) * x[ac] * std::pow(scale, -p.beta - 1.0);
        }
        const double scale = p.k + coef * window_sum(s, p, x, n, j, i);
        grad_input[at] = static_cast<float>(grad_out[at] * std::pow(scale, -p.beta) -
                                            2.0 * p.alpha * p.beta / static_cast<double>(p.size) *
                                                x[at] * spread);
      }
    }
  }
}

}  // namespace cnnkit
