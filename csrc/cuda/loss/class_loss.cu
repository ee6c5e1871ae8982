#include "cuda/common/launch.cuh"
#include "cuda/loss/loss.h"
#include "cuda/loss/rows.h"

namespace cnnkit::cuda {

namespace {

// A row's target and its weight; valid = neither ignored nor out of range.
struct Target {
  int64_t t;
  float w;
  bool ignored, valid;
};

CNNKIT_HD Target target_of(const ClassLoss& l, int64_t r) {
  Target g{l.target[r], 0.0f, false, false};
  g.ignored = g.t == l.ignore_index;
  g.valid = !g.ignored && g.t >= 0 && g.t < l.shape.classes;
  if (g.valid) g.w = l.weight ? l.weight[g.t] : 1.0f;
  return g;
}

CNNKIT_HD float class_weight(const ClassLoss& l, int64_t c) { return l.weight ? l.weight[c] : 1.0f; }

// Per row: log-sum-exp of the logits (cross-entropy only) and, for label smoothing, the sums of
// w_c x_c and w_c over the classes.
struct RowStats {
  LogSumExp lse;
  double wx = 0.0, wsum = 0.0;
};

CNNKIT_HD RowStats fold_stats(const ClassLoss& l, int64_t r, unsigned t, unsigned threads) {
  RowStats a;
  if (!l.log_softmax) return a;
  const int64_t base = row_base(l.shape, r);
  a.lse = fold_row(l.x, base, l.shape.inner, l.shape.classes, t, threads);
  if (l.label_smoothing != 0.0f) {
    for (int64_t c = t; c < l.shape.classes; c += threads) {
      const double w = class_weight(l, c);
      a.wx += w * l.x[base + c * l.shape.inner];
      a.wsum += w;
    }
  }
  return a;
}

CNNKIT_HD RowStats combine_stats(const RowStats& a, const RowStats& b) {
  RowStats r;
  r.lse = combine_lse(a.lse, b.lse);
  r.wx = a.wx + b.wx;
  r.wsum = a.wsum + b.wsum;
  return r;
}

// Each row's loss into scratch[r] and its counted weight into scratch[rows + r] (and the loss
// into out[r] when nothing is reduced).
struct LossRows {
  using Acc = RowStats;
  ClassLoss l;
  float* out;
  double* scratch;
  int64_t segments;
  CNNKIT_HD Acc partial(int64_t r, unsigned t, unsigned threads) const { return fold_stats(l, r, t, threads); }
  CNNKIT_HD static Acc combine(const Acc& a, const Acc& b) { return combine_stats(a, b); }
  CNNKIT_HD void finish(int64_t r, const Acc& total, unsigned t, unsigned) const {
    if (t != 0) return;
    const Target g = target_of(l, r);
    double loss = 0.0;
    if (!g.ignored && !g.valid) {
      loss = NAN;
    } else if (g.valid) {
      const double x_t = l.x[row_base(l.shape, r) + g.t * l.shape.inner];
      if (l.log_softmax) {
        const double lse = total.lse.max + log(total.lse.sum);
        const double eps = l.label_smoothing;
        loss = g.w * (1.0 - eps) * (lse - x_t);
        if (eps != 0.0) loss += eps / l.shape.classes * (total.wsum * lse - total.wx);
      } else {
        loss = -g.w * x_t;
      }
    }
    scratch[r] = loss;
    scratch[segments + r] = g.w;
    if (l.reduction == Reduction::none) out[r] = static_cast<float>(loss);
  }
};

// The sum of the rows' losses and weights, then "sum" or "mean" (0 / 0 = NaN when nothing
// counted, as PyTorch). Also the mean's divisor alone (loss = nullptr) for the backward.
struct SumRows {
  struct Acc {
    double loss = 0.0, weight = 0.0;
  };
  const double* loss;
  const double* weight;
  int64_t rows;
  Reduction reduction;
  float* out;
  double* divisor;
  int64_t segments;  // 1
  CNNKIT_HD Acc partial(int64_t, unsigned t, unsigned threads) const {
    Acc a;
    for (int64_t r = t; r < rows; r += threads) {
      if (loss) a.loss += loss[r];
      a.weight += weight[r];
    }
    return a;
  }
  CNNKIT_HD static Acc combine(const Acc& a, const Acc& b) { return Acc{a.loss + b.loss, a.weight + b.weight}; }
  CNNKIT_HD void finish(int64_t, const Acc& total, unsigned t, unsigned) const {
    if (t != 0) return;
    if (divisor) *divisor = total.weight;
    if (out) out[0] = static_cast<float>(reduction == Reduction::sum ? total.loss : total.loss / total.weight);
  }
};

// The rows' counted weights, for the backward's mean (the forward's scratch is not kept).
struct RowWeights {
  ClassLoss l;
  double* weight;
  CNNKIT_HD void operator()(int64_t r) const { weight[r] = target_of(l, r).w; }
};

// dx = scale * (softmax(x) * sum_c coef_c - coef) for cross-entropy, scale * -coef for NLL, with
// coef_c = w_t (1 - eps) [c == t] + eps / C * w_c; zero for an ignored row, NaN for a bad target.
struct GradRows {
  using Acc = RowStats;
  ClassLoss l;
  const float* grad;
  const double* divisor;  // mean only
  float* dx;
  int64_t segments;
  CNNKIT_HD Acc partial(int64_t r, unsigned t, unsigned threads) const { return fold_stats(l, r, t, threads); }
  CNNKIT_HD static Acc combine(const Acc& a, const Acc& b) { return combine_stats(a, b); }
  CNNKIT_HD void finish(int64_t r, const Acc& total, unsigned t, unsigned threads) const {
    const Target g = target_of(l, r);
    const int64_t base = row_base(l.shape, r);
    double scale = grad[l.reduction == Reduction::none ? r : 0];
    if (l.reduction == Reduction::mean) scale = *divisor != 0.0 ? scale / *divisor : 0.0;
    if (g.ignored || !g.valid) scale = g.ignored ? 0.0 : NAN;
    const double eps = l.log_softmax ? l.label_smoothing : 0.0;
    const double coef_sum = g.w * (1.0 - eps) + (eps != 0.0 ? eps / l.shape.classes * total.wsum : 0.0);
    for (int64_t c = t; c < l.shape.classes; c += threads) {
      const int64_t i = base + c * l.shape.inner;
      double coef = c == g.t ? g.w * (1.0 - eps) : 0.0;
      if (eps != 0.0) coef += eps / l.shape.classes * class_weight(l, c);
      double d = -coef;
      if (l.log_softmax && g.valid) d += exp(static_cast<double>(l.x[i]) - total.lse.max) / total.lse.sum * coef_sum;
      dx[i] = static_cast<float>(g.ignored ? 0.0 : scale * d);
    }
  }
};

}  // namespace

void class_loss_forward(const ClassLoss& l, float* out, double* scratch, bool by_block, const Where& where) {
  const int64_t rows = l.shape.rows();
  reduce_segments(LossRows{l, out, scratch, rows}, by_block, where, "class_loss");
  if (l.reduction == Reduction::none) return;
  block_reduce(SumRows{scratch, scratch + rows, rows, l.reduction, out, nullptr, 1}, where, "class_loss");
}

void class_loss_backward(const ClassLoss& l, const float* grad, float* dx, double* scratch, bool by_block,
                         const Where& where) {
  const int64_t rows = l.shape.rows();
  if (l.reduction == Reduction::mean) {
    for_each(RowWeights{l, scratch + 1}, rows, where, "class_loss_backward");
    block_reduce(SumRows{nullptr, scratch + 1, rows, l.reduction, nullptr, scratch, 1}, where, "class_loss_backward");
  }
  reduce_segments(GradRows{l, grad, scratch, dx, rows}, by_block, where, "class_loss_backward");
}

}  // namespace cnnkit::cuda
