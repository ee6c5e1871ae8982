#include "cuda/common/launch.cuh"
#include "cuda/loss/loss.h"
#include "cuda/loss/rows.h"

namespace cnnkit::cuda {

namespace {

// A row's loss is -sum_c coef_c * score_c (score: log_softmax(x) for cross-entropy, x for NLL)
// with coef_c = target_weight * [c == t] + spread_c: the label's own term and the part spread over
// every class (label smoothing's eps / C * w_c, or a probability target's
// w_c ((1 - eps) q_c + eps / C)); `counted` is the row's share of the mean's divisor.
struct Target {
  int64_t t = -1;  // -1: no label (a probability target)
  double target_weight = 0.0, counted = 0.0;
  bool ignored = false, valid = true;
};

CNNKIT_HD float class_weight(const ClassLoss& l, int64_t c) { return l.weight ? l.weight[c] : 1.0f; }

CNNKIT_HD Target target_of(const ClassLoss& l, int64_t r) {
  Target g;
  if (l.probs) {
    g.counted = 1.0;
    return g;
  }
  g.t = l.target[r];
  g.ignored = g.t == l.ignore_index;
  g.valid = !g.ignored && g.t >= 0 && g.t < l.shape.classes;
  if (g.valid) {
    g.counted = class_weight(l, g.t);
    g.target_weight = g.counted * (1.0 - l.label_smoothing);
  }
  return g;
}

CNNKIT_HD double spread(const ClassLoss& l, int64_t i, int64_t c) {
  const double eps = l.label_smoothing;
  if (l.probs) return class_weight(l, c) * ((1.0 - eps) * l.probs[i] + eps / l.shape.classes);
  return eps != 0.0 ? eps / l.shape.classes * class_weight(l, c) : 0.0;
}

// Per row: log-sum-exp of the logits (cross-entropy only) and the sums of spread_c and
// spread_c * x_c (a class with no coefficient is skipped: its score may be -inf).
struct RowStats {
  LogSumExp lse;
  double spread = 0.0, spread_x = 0.0;
};

CNNKIT_HD RowStats fold_stats(const ClassLoss& l, int64_t r, unsigned t, unsigned threads) {
  RowStats a;
  if (!l.log_softmax) return a;
  const int64_t base = row_base(l.shape, r);
  a.lse = fold_row(l.x, base, l.shape.inner, l.shape.classes, t, threads);
  if (l.label_smoothing != 0.0f || l.probs) {
    for (int64_t c = t; c < l.shape.classes; c += threads) {
      const int64_t i = base + c * l.shape.inner;
      const double s = spread(l, i, c);
      if (s == 0.0) continue;
      a.spread += s;
      a.spread_x += s * l.x[i];
    }
  }
  return a;
}

CNNKIT_HD RowStats combine_stats(const RowStats& a, const RowStats& b) {
  RowStats r;
  r.lse = combine_lse(a.lse, b.lse);
  r.spread = a.spread + b.spread;
  r.spread_x = a.spread_x + b.spread_x;
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
    } else if (!g.ignored) {
      const double x_t = g.t >= 0 ? l.x[row_base(l.shape, r) + g.t * l.shape.inner] : 0.0;
      if (l.log_softmax) {
        const double lse = total.lse.max + log(total.lse.sum);
        if (g.target_weight != 0.0) loss = g.target_weight * (lse - x_t);
        if (total.spread != 0.0) loss += total.spread * lse - total.spread_x;
      } else {
        loss = -g.target_weight * x_t;
      }
    }
    scratch[r] = loss;
    scratch[segments + r] = g.counted;
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
  CNNKIT_HD void operator()(int64_t r) const { weight[r] = target_of(l, r).counted; }
};

// dx = scale * (softmax(x) * sum_c coef_c - coef) for cross-entropy, scale * -coef for NLL;
// zero for an ignored row, NaN for a bad target.
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
    if (!g.valid) scale = NAN;
    const double coef_sum = g.target_weight + total.spread;
    for (int64_t c = t; c < l.shape.classes; c += threads) {
      const int64_t i = base + c * l.shape.inner;
      double coef = c == g.t ? g.target_weight : 0.0;
      if (l.log_softmax) coef += spread(l, i, c);
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
