// Batch norm on the vector passes of vector_impl.h, threaded over channels and,
// when a channel is large, over chunks of its rows. The chunks depend on the
// shape only and their partial sums are combined in chunk order (Passes::run):
// results do not depend on the thread count. Per-channel
// constants are derived in double; the passes over the data run in float with
// the mean split into a float and a float remainder (x - mean_hi is exact for
// concentrated data, so a large mean costs no precision).
#include <cmath>
#include <vector>

#include "core/parallel.h"
#include "cpu/norm/kernels.h"

#ifdef CNNKIT_X86
namespace cnnkit {
namespace {

// About this many values per chunk: enough to amortise a thread hand-off,
// small enough that a few channels still keep two threads busy.
constexpr int64_t kChunkValues = 1 << 15;

struct Chunks {
  int64_t rows_per_chunk, per_channel;

  explicit Chunks(const BatchNormShape& s)
      : rows_per_chunk(s.spatial >= kChunkValues ? 1 : kChunkValues / (s.spatial > 0 ? s.spatial : 1)),
        per_channel((s.batch + rows_per_chunk - 1) / rows_per_chunk) {}

  // Calls fn(first element, rows) for work item `item` = (channel, chunk).
  template <class Fn>
  void visit(const BatchNormShape& s, int64_t item, Fn&& fn) const {
    const int64_t c = item / per_channel, k = item % per_channel;
    const int64_t n0 = k * rows_per_chunk;
    const int64_t rows = (n0 + rows_per_chunk <= s.batch ? rows_per_chunk : s.batch - n0);
    fn(c, (n0 * s.channels + c) * s.spatial, rows);
  }
};

struct ChannelStats {
  double shift, count, sum, squares, dy, dy_shifted;

  double mean() const { return shift + sum / count; }
  // Biased variance; rounding can make it a hair negative when it is ~0.
  double var() const {
    const double m = sum / count;
    const double v = squares / count - m * m;
    return v > 0.0 ? v : 0.0;
  }
};

// One pass's per-channel constants, in float.
struct Affine {
  float center, a, b, c;
};

// The passes over one call's data, chunk by chunk (Chunks): sums of d = x -
// shift (and of g, g * d with dy: g = dy, or dy through the fused ReLU whose
// output is `mask`), the shift being the channel's first value or, when
// given, center[c]; and the pass that writes `out`: forward (dy null) the
// normalised x, with `relu` through a ReLU; backward the input gradient from
// dy (through the ReLU whose output is `mask`).
struct Passes {
  const BatchNormRangeKernels& k;
  const BatchNormShape& s;
  const float *x, *dy, *mask, *center;
  bool relu;
  float* out;
  Chunks chunks;
  std::vector<double> partial;  // 4 sums per item

  Passes(const BatchNormRangeKernels& k_, const BatchNormShape& s_, const float* x_, const float* dy_,
         const float* mask_, const float* center_, bool relu_, float* out_)
      : k(k_), s(s_), x(x_), dy(dy_), mask(mask_), center(center_), relu(relu_), out(out_), chunks(s_),
        partial(static_cast<size_t>(items()) * 4, 0.0) {}

  int64_t items() const { return s.channels * chunks.per_channel; }
  int64_t stride() const { return s.channels * s.spatial; }
  // Arrays the sums read.
  int64_t arrays() const { return dy ? (mask ? 3 : 2) : 1; }
  float shift_of(int64_t c) const { return center ? center[c] : x[c * s.spatial]; }

  void sum_item(int64_t item) {
    chunks.visit(s, item, [&](int64_t c, int64_t at, int64_t rows) {
      k.sums(x + at, dy ? dy + at : nullptr, mask ? mask + at : nullptr, rows, stride(), s.spatial, shift_of(c),
             &partial[static_cast<size_t>(item) * 4]);
    });
  }

  // Channel c's sums, its chunks' partial sums combined in chunk order.
  ChannelStats stats_of(int64_t c) const {
    ChannelStats r{shift_of(c), static_cast<double>(s.batch * s.spatial), 0.0, 0.0, 0.0, 0.0};
    for (int64_t q = 0; q < chunks.per_channel; ++q) {
      const double* p = &partial[static_cast<size_t>(c * chunks.per_channel + q) * 4];
      r.sum += p[0];
      r.squares += p[1];
      r.dy += p[2];
      r.dy_shifted += p[3];
    }
    return r;
  }

  void sum_all() {
    parallel_for(items(), arrays() * chunks.rows_per_chunk * s.spatial, [&](int64_t begin, int64_t end) {
      for (int64_t item = begin; item < end; ++item) sum_item(item);
    });
  }

  void apply_item(int64_t item, const Affine& f) const {
    chunks.visit(s, item, [&](int64_t, int64_t at, int64_t rows) {
      if (dy == nullptr) {
        k.normalise(x + at, out + at, rows, stride(), s.spatial, f.center, f.a, f.b, relu);
      } else {
        k.input_grad(dy + at, mask ? mask + at : nullptr, x ? x + at : nullptr, out + at, rows, stride(),
                     s.spatial, f.center, f.a, f.b, f.c);
      }
    });
  }

  void apply_all(const std::vector<Affine>& affine) const {
    parallel_for(items(), chunks.rows_per_chunk * s.spatial, [&](int64_t begin, int64_t end) {
      for (int64_t item = begin; item < end; ++item) {
        apply_item(item, affine[static_cast<size_t>(item / chunks.per_channel)]);
      }
    });
  }

  // Training mode: the sums, then the constants from them (`affine_of(c,
  // stats)`, which may also write that channel's other outputs), then the pass
  // that writes `out`.
  //
  // `by_channel` (where the channels split evenly over the threads, or there
  // are many): each work item is a whole channel, summed chunk by chunk and
  // then written right away, so that the second pass finds the channel's data
  // in this core's L2 instead of reading it from memory again. The backward
  // takes it (three arrays per value read twice); the forward, whose input
  // the convolution before it has just written, was measured no faster so
  // (benchmarks/results). Otherwise by chunk, so that a few large channels
  // still keep every thread busy. Either way a channel's chunks are summed
  // and combined in the same order: the results are the same bits.
  template <class AffineOf>
  void run(bool by_channel, AffineOf&& affine_of) {
    const int64_t threads = num_threads();
    if (by_channel && (s.channels % threads == 0 || s.channels >= 8 * threads)) {
      const int64_t per_channel = chunks.per_channel;
      parallel_for(s.channels, work_per_item(s.channels, {2 * arrays() + 1, s.batch, s.spatial}),
                   [&](int64_t c0, int64_t c1) {
                     for (int64_t c = c0; c < c1; ++c) {
                       for (int64_t q = 0; q < per_channel; ++q) sum_item(c * per_channel + q);
                       const Affine f = affine_of(c, stats_of(c));
                       for (int64_t q = 0; q < per_channel; ++q) apply_item(c * per_channel + q, f);
                     }
                   });
      return;
    }
    sum_all();
    std::vector<Affine> affine(static_cast<size_t>(s.channels));
    for (int64_t c = 0; c < s.channels; ++c) affine[static_cast<size_t>(c)] = affine_of(c, stats_of(c));
    apply_all(affine);
  }
};

// The mean as a float plus a float remainder.
void split(double mean, float& hi, double& lo) {
  hi = static_cast<float>(mean);
  lo = mean - static_cast<double>(hi);
}

double weight_of(const float* weight, int64_t c) { return weight ? weight[c] : 1.0; }
double bias_of(const float* bias, int64_t c) { return bias ? bias[c] : 0.0; }

template <const BatchNormRangeKernels* K>
void training(const BatchNormShape& s, const float* x, const float* weight, const float* bias,
              float* running_mean, float* running_var, double momentum, double eps, float* out,
              bool relu) {
  Passes(*K, s, x, nullptr, nullptr, nullptr, relu, out).run(false, [&](int64_t c, const ChannelStats& r) {
    const double mean = r.mean(), var = r.var();
    const double scale = weight_of(weight, c) / std::sqrt(var + eps);
    float hi;
    double lo;
    split(mean, hi, lo);
    if (running_mean != nullptr) {
      running_mean[c] = static_cast<float>((1.0 - momentum) * running_mean[c] + momentum * mean);
      running_var[c] = static_cast<float>((1.0 - momentum) * running_var[c] +
                                          momentum * var * r.count / (r.count - 1.0));
    }
    // (x - mean) * scale + bias = (x - hi) * scale + (bias - lo * scale).
    return Affine{hi, static_cast<float>(scale), static_cast<float>(bias_of(bias, c) - lo * scale), 0.0f};
  });
}

template <const BatchNormRangeKernels* K>
void inference(const BatchNormShape& s, const float* x, const float* running_mean,
               const float* running_var, const float* weight, const float* bias, double eps,
               float* out, bool relu) {
  std::vector<Affine> affine(static_cast<size_t>(s.channels));
  for (int64_t c = 0; c < s.channels; ++c) {
    const double scale =
        weight_of(weight, c) / std::sqrt(static_cast<double>(running_var[c]) + eps);
    affine[static_cast<size_t>(c)] = {running_mean[c], static_cast<float>(scale),
                                      static_cast<float>(bias_of(bias, c)), 0.0f};
  }
  Passes(*K, s, x, nullptr, nullptr, nullptr, relu, out).apply_all(affine);
}

// dx = w invstd (dy - mean(dy) - (x - mean) coef) with coef = invstd * mean(dy * x_hat),
// = dy * a + ((x - hi) * b + c) for a = w invstd, b = -a coef, c = a (coef lo - mean(dy)).
template <const BatchNormRangeKernels* K>
void backward_training(const BatchNormShape& s, const float* dy, const float* x,
                       const float* weight, double eps, float* dx, float* grad_weight,
                       float* grad_bias, const float* relu_output) {
  Passes(*K, s, x, dy, relu_output, nullptr, false, dx).run(true, [&](int64_t c, const ChannelStats& r) {
    const double mean = r.mean();
    const double invstd = 1.0 / std::sqrt(r.var() + eps);
    // sum(dy * (x - mean)) = sum(dy * (x - shift)) - (mean - shift) * sum(dy).
    const double sum_dy_xhat = (r.dy_shifted - (mean - r.shift) * r.dy) * invstd;
    const double a = weight_of(weight, c) * invstd;
    const double coef = sum_dy_xhat / r.count * invstd;
    float hi;
    double lo;
    split(mean, hi, lo);
    if (grad_weight != nullptr) grad_weight[c] = static_cast<float>(sum_dy_xhat);
    if (grad_bias != nullptr) grad_bias[c] = static_cast<float>(r.dy);
    return Affine{hi, static_cast<float>(a), static_cast<float>(-a * coef),
                  static_cast<float>(a * (coef * lo - r.dy / r.count))};
  });
}

// dx = dy * w invstd (running statistics are constants); the weight and bias
// gradients from the sums around the running mean.
template <const BatchNormRangeKernels* K>
void backward_inference(const BatchNormShape& s, const float* dy, const float* x,
                        const float* running_mean, const float* running_var, const float* weight,
                        double eps, float* dx, float* grad_weight, float* grad_bias,
                        const float* relu_output) {
  std::vector<Affine> affine(static_cast<size_t>(s.channels));
  for (int64_t c = 0; c < s.channels; ++c) {
    const double invstd = 1.0 / std::sqrt(static_cast<double>(running_var[c]) + eps);
    affine[static_cast<size_t>(c)] = {0.0f, static_cast<float>(weight_of(weight, c) * invstd),
                                      0.0f, 0.0f};
  }
  Passes(*K, s, nullptr, dy, relu_output, nullptr, false, dx).apply_all(affine);
  if (grad_weight == nullptr && grad_bias == nullptr) return;
  Passes sums(*K, s, x, dy, relu_output, running_mean, false, nullptr);
  sums.sum_all();
  for (int64_t c = 0; c < s.channels; ++c) {
    const ChannelStats r = sums.stats_of(c);
    const double invstd = 1.0 / std::sqrt(static_cast<double>(running_var[c]) + eps);
    if (grad_weight != nullptr) grad_weight[c] = static_cast<float>(r.dy_shifted * invstd);
    if (grad_bias != nullptr) grad_bias[c] = static_cast<float>(r.dy);
  }
}

template <const BatchNormRangeKernels* K>
constexpr BatchNormKernels kernels() {
  return {training<K>, inference<K>, backward_training<K>, backward_inference<K>};
}

}  // namespace

const BatchNormKernels batch_norm_vector_avx2 = kernels<&batch_norm_range_avx2>();
const BatchNormKernels batch_norm_vector_avx512 = kernels<&batch_norm_range_avx512>();

}  // namespace cnnkit
#endif  // CNNKIT_X86
