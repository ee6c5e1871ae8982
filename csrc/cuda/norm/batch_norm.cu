#include <math.h>

#include "cuda/common/launch.cuh"
#include "cuda/norm/norm.h"

namespace cnnkit::cuda {

namespace {

// Element k in [0, batch * spatial) of channel c.
CNNKIT_HD int64_t element(const NormShape& s, int64_t c, int64_t k) {
  return ((k / s.spatial) * s.channels + c) * s.spatial + k % s.spatial;
}

CNNKIT_HD int64_t count(const NormShape& s) { return s.batch * s.spatial; }

// Sums of d and d^2 with d = x - shift.
struct Moments {
  double sum = 0.0, squares = 0.0;
};

CNNKIT_HD Moments add(const Moments& a, const Moments& b) { return Moments{a.sum + b.sum, a.squares + b.squares}; }

// mean and biased variance from the shifted moments.
CNNKIT_HD void mean_var(const NormShape& s, const float* x, int64_t c, const Moments& m, double& mean, double& var) {
  const double n = static_cast<double>(count(s));
  const double shifted_mean = m.sum / n;
  mean = x[element(s, c, 0)] + shifted_mean;
  var = m.squares / n - shifted_mean * shifted_mean;
  if (var < 0.0) var = 0.0;  // rounding of a (near-)constant channel
}

CNNKIT_HD double weight_of(const float* w, int64_t c) { return w ? w[c] : 1.0; }
CNNKIT_HD double bias_of(const float* b, int64_t c) { return b ? b[c] : 0.0; }

struct GradSums {
  double dy = 0.0, dy_xhat = 0.0;
};

// Each channel is cut into `chunks` contiguous chunks, folded by a block each (the split form) or
// by one thread per channel (the plain form, chunks = 1, no block). The chunks' sums are then
// folded per channel in chunk order, and the elements are written by an elementwise pass.
struct Chunks {
  NormShape s;
  int64_t chunks;
  CNNKIT_HD int64_t length() const { return (count(s) + chunks - 1) / chunks; }
  CNNKIT_HD int64_t begin(int64_t segment) const { return (segment % chunks) * length(); }
  CNNKIT_HD int64_t end(int64_t segment) const {
    const int64_t e = begin(segment) + length();
    return e < count(s) ? e : count(s);
  }
};

struct ChunkMoments {
  using Acc = Moments;
  Chunks ch;
  const float* x;
  double* partials;  // 2 per segment
  int64_t segments;
  CNNKIT_HD Acc partial(int64_t segment, unsigned t, unsigned threads) const {
    const int64_t c = segment / ch.chunks;
    const double shift = x[element(ch.s, c, 0)];
    Moments m;
    for (int64_t k = ch.begin(segment) + t; k < ch.end(segment); k += threads) {
      const double d = x[element(ch.s, c, k)] - shift;
      m.sum += d;
      m.squares += d * d;
    }
    return m;
  }
  CNNKIT_HD static Acc combine(const Acc& a, const Acc& b) { return add(a, b); }
  CNNKIT_HD void finish(int64_t segment, const Acc& total, unsigned t, unsigned) const {
    if (t != 0) return;
    partials[2 * segment] = total.sum;
    partials[2 * segment + 1] = total.squares;
  }
};

// Per channel: its chunks' moments in order, the mean and 1/sqrt(var + eps) into stats, and the
// running statistics (forward only; null otherwise).
struct ChannelMoments {
  Chunks ch;
  const float* x;
  const double* partials;
  double eps, momentum;
  double* stats;
  float* running_mean;
  float* running_var;
  CNNKIT_HD void operator()(int64_t c) const {
    Moments m;
    for (int64_t j = 0; j < ch.chunks; ++j) {
      m.sum += partials[2 * (c * ch.chunks + j)];
      m.squares += partials[2 * (c * ch.chunks + j) + 1];
    }
    double mean, var;
    mean_var(ch.s, x, c, m, mean, var);
    stats[c] = mean;
    stats[ch.s.channels + c] = 1.0 / sqrt(var + eps);
    if (running_mean) {
      const double n = static_cast<double>(count(ch.s));
      running_mean[c] = static_cast<float>((1.0 - momentum) * running_mean[c] + momentum * mean);
      running_var[c] = static_cast<float>((1.0 - momentum) * running_var[c] + momentum * var * n / (n - 1.0));
    }
  }
};

struct Normalize {
  NormShape s;
  const float* x;
  const double* stats;
  const float* weight;
  const float* bias;
  float* y;
  CNNKIT_HD void operator()(int64_t i) const {
    const int64_t c = (i / s.spatial) % s.channels;
    y[i] = static_cast<float>((x[i] - stats[c]) * stats[s.channels + c] * weight_of(weight, c) + bias_of(bias, c));
  }
};

// The gradient's sums over chunk j of channel c (statistics from `stats`: the batch's, or the
// running ones copied there for eval).
struct ChunkGrad {
  using Acc = GradSums;
  Chunks ch;
  const float* dy;
  const float* x;
  const double* stats;
  double* partials;
  int64_t segments;
  CNNKIT_HD Acc partial(int64_t segment, unsigned t, unsigned threads) const {
    const int64_t c = segment / ch.chunks;
    const double mean = stats[c], invstd = stats[ch.s.channels + c];
    Acc a;
    for (int64_t k = ch.begin(segment) + t; k < ch.end(segment); k += threads) {
      const int64_t i = element(ch.s, c, k);
      a.dy += dy[i];
      a.dy_xhat += dy[i] * (x[i] - mean) * invstd;
    }
    return a;
  }
  CNNKIT_HD static Acc combine(const Acc& a, const Acc& b) { return Acc{a.dy + b.dy, a.dy_xhat + b.dy_xhat}; }
  CNNKIT_HD void finish(int64_t segment, const Acc& total, unsigned t, unsigned) const {
    if (t != 0) return;
    partials[2 * segment] = total.dy;
    partials[2 * segment + 1] = total.dy_xhat;
  }
};

// Per channel: the chunks' gradient sums in order into totals, and the parameter gradients.
struct ChannelGrad {
  Chunks ch;
  const double* partials;
  double* totals;
  float* grad_weight;
  float* grad_bias;
  CNNKIT_HD void operator()(int64_t c) const {
    double sum_dy = 0.0, sum_dy_xhat = 0.0;
    for (int64_t j = 0; j < ch.chunks; ++j) {
      sum_dy += partials[2 * (c * ch.chunks + j)];
      sum_dy_xhat += partials[2 * (c * ch.chunks + j) + 1];
    }
    totals[c] = sum_dy;
    totals[ch.s.channels + c] = sum_dy_xhat;
    if (grad_weight) grad_weight[c] = static_cast<float>(sum_dy_xhat);
    if (grad_bias) grad_bias[c] = static_cast<float>(sum_dy);
  }
};

// The eval statistics in the split form's layout.
struct RunningStats {
  const float* running_mean;
  const float* running_var;
  double eps;
  double* stats;
  int64_t channels;
  CNNKIT_HD void operator()(int64_t c) const {
    stats[c] = running_mean[c];
    stats[channels + c] = 1.0 / sqrt(static_cast<double>(running_var[c]) + eps);
  }
};

struct InputGrad {
  NormShape s;
  const float* dy;
  const float* x;
  const double* stats;
  const double* totals;
  const float* weight;
  bool training;
  float* dx;
  CNNKIT_HD void operator()(int64_t i) const {
    const int64_t c = (i / s.spatial) % s.channels;
    const double mean = stats[c], invstd = stats[s.channels + c];
    const double scale = weight_of(weight, c) * invstd;
    if (!training) {
      dx[i] = static_cast<float>(dy[i] * scale);
      return;
    }
    const double n = static_cast<double>(count(s));
    const double xhat = (x[i] - mean) * invstd;
    dx[i] = static_cast<float>(scale * (dy[i] - totals[c] / n - xhat * totals[s.channels + c] / n));
  }
};

template <class Work>
void run_chunks(const Work& work, int64_t chunks, const Where& where, const char* op) {
  if (chunks == 0) {
    segment_per_thread(work, where, op);
  } else {
    block_reduce(work, where, op);
  }
}

// The statistics into scratch: the batch's (training, blended into update_mean/update_var when
// given) or the running ones (eval).
void channel_stats(const NormShape& s, const float* x, const float* running_mean, const float* running_var,
                   float* update_mean, float* update_var, bool training, double momentum, double eps, int64_t chunks,
                   double* scratch, const Where& where, const char* op) {
  const Chunks ch{s, chunks > 0 ? chunks : 1};
  double* partials = scratch + 4 * s.channels;
  if (!training) {
    for_each(RunningStats{running_mean, running_var, eps, scratch, s.channels}, s.channels, where, op);
    return;
  }
  run_chunks(ChunkMoments{ch, x, partials, s.channels * ch.chunks}, chunks, where, op);
  for_each(ChannelMoments{ch, x, partials, eps, momentum, scratch, update_mean, update_var}, s.channels, where, op);
}

}  // namespace

// stats (2 per channel), gradient totals (2), the chunks' partial sums (2 per chunk).
int64_t batch_norm_scratch(int64_t channels, int64_t chunks) {
  return channels * (4 + 2 * (chunks > 0 ? chunks : 1));
}

void batch_norm_forward(const NormShape& s, const float* x, float* running_mean, float* running_var,
                        const float* weight, const float* bias, bool training, double momentum, double eps, float* y,
                        int64_t chunks, double* scratch, const Where& where) {
  if (count(s) == 0) return;
  channel_stats(s, x, running_mean, running_var, running_mean, running_var, training, momentum, eps, chunks, scratch,
                where, "batch_norm");
  for_each(Normalize{s, x, scratch, weight, bias, y}, count(s) * s.channels, where, "batch_norm");
}

void batch_norm_backward(const NormShape& s, const float* dy, const float* x, const float* running_mean,
                         const float* running_var, const float* weight, bool training, double eps, float* dx,
                         float* grad_weight, float* grad_bias, int64_t chunks, double* scratch, const Where& where) {
  const char* op = "batch_norm_backward";
  // An empty batch still writes the parameter gradients: sums over nothing, zeros.
  if (count(s) > 0) {
    channel_stats(s, x, running_mean, running_var, nullptr, nullptr, training, 0.0, eps, chunks, scratch, where, op);
  }
  const Chunks ch{s, chunks > 0 ? chunks : 1};
  double* totals = scratch + 2 * s.channels;
  double* partials = scratch + 4 * s.channels;
  run_chunks(ChunkGrad{ch, dy, x, scratch, partials, s.channels * ch.chunks}, chunks, where, op);
  for_each(ChannelGrad{ch, partials, totals, grad_weight, grad_bias}, s.channels, where, op);
  for_each(InputGrad{s, dy, x, scratch, totals, weight, training, dx}, count(s) * s.channels, where, op);
}

}  // namespace cnnkit::cuda
