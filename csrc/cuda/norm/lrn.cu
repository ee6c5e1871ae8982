#include <math.h>

#include "cuda/common/launch.cuh"
#include "cuda/norm/norm.h"

namespace cnnkit::cuda {

namespace {

struct Lrn {
  NormShape s;
  int64_t size;
  double alpha, beta, k;
  // k + alpha / size * the sum of x^2 over PyTorch's window of channel c (zero outside).
  CNNKIT_HD double scale(const float* x, int64_t n, int64_t c, int64_t i) const {
    double sum = 0.0;
    for (int64_t j = c - size / 2; j <= c + (size - 1) / 2; ++j) {
      if (j < 0 || j >= s.channels) continue;
      const double v = x[(n * s.channels + j) * s.spatial + i];
      sum += v * v;
    }
    return k + alpha / size * sum;
  }
};

struct LrnForward {
  Lrn l;
  const float* x;
  float* y;
  CNNKIT_HD void operator()(int64_t e) const {
    const int64_t i = e % l.s.spatial, c = (e / l.s.spatial) % l.s.channels, n = e / (l.s.spatial * l.s.channels);
    y[e] = static_cast<float>(x[e] * pow(l.scale(x, n, c, i), -l.beta));
  }
};

// dx_c = dy_c s_c^-beta - 2 alpha beta / size * x_c * sum over the channels j whose windows hold c
// (j in [c - (size-1)/2, c + size/2]) of dy_j x_j s_j^(-beta-1).
struct LrnBackward {
  Lrn l;
  const float* dy;
  const float* x;
  float* dx;
  CNNKIT_HD void operator()(int64_t e) const {
    const int64_t i = e % l.s.spatial, c = (e / l.s.spatial) % l.s.channels, n = e / (l.s.spatial * l.s.channels);
    double spread = 0.0;
    for (int64_t j = c - (l.size - 1) / 2; j <= c + l.size / 2; ++j) {
      if (j < 0 || j >= l.s.channels) continue;
      const int64_t o = (n * l.s.channels + j) * l.s.spatial + i;
      spread += static_cast<double>(dy[o]) * x[o] * pow(l.scale(x, n, j, i), -l.beta - 1.0);
    }
    dx[e] = static_cast<float>(dy[e] * pow(l.scale(x, n, c, i), -l.beta) -
                               2.0 * l.alpha * l.beta / l.size * x[e] * spread);
  }
};

}  // namespace

void lrn_forward(const NormShape& s, const float* x, int64_t size, double alpha, double beta, double k, float* y,
                 const Where& where) {
  for_each(LrnForward{{s, size, alpha, beta, k}, x, y}, s.batch * s.channels * s.spatial, where,
           "local_response_norm");
}

void lrn_backward(const NormShape& s, const float* dy, const float* x, int64_t size, double alpha, double beta,
                  double k, float* dx, const Where& where) {
  for_each(LrnBackward{{s, size, alpha, beta, k}, dy, x, dx}, s.batch * s.channels * s.spatial, where,
           "local_response_norm_backward");
}

}  // namespace cnnkit::cuda
