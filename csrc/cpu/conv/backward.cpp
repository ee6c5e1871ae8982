// GEMM-based conv2d backward, the adjoint of im2col.cpp, and the bias gradient.
//   input gradient:  dcol = W_g^T . dY_g per chunk of output positions, then
//                    col2im adds each column entry back where im2col read it;
//   weight gradient: dW_g += dY_g . col^T, summed over the batch. Threads that
//                    take whole images each keep a partial sum (slot 0 writes
//                    dw itself), reduced at the end in a fixed order, so the
//                    result does not depend on scheduling.
#include <algorithm>

#include "cnnkit/errors.h"
#include "cnnkit/gemm.h"
#include "cnnkit/isa.h"
#include "cnnkit/threads.h"
#include "core/parallel.h"
#include "core/workspace.h"
#include "cpu/conv/kernels.h"
#include "cpu/norm/kernels.h"

namespace cnnkit {
namespace {

void input_grad_im2col(const Conv2dParams& p, const ColumnPlan& plan, const float* dy,
                       const float* w, float* dx) {
  const int64_t cg = p.group_in_channels(), kg = p.group_out_channels();
  const int64_t K = p.reduction(), P = p.out_plane();
  const bool direct_columns = columns_are_input(p);
  for_images(plan, p.batch, work_per_item(p.batch, {p.out_channels, K, P}), [&](int64_t n_begin, int64_t n_end) {
    float* dcol = direct_columns
                      ? nullptr
                      : thread_workspace(WorkspaceSlot::Im2col, static_cast<size_t>(K * plan.chunk));
    for (int64_t n = n_begin; n < n_end; ++n) {
      float* dxn = dx + n * p.in_channels * p.in_plane();
      if (!direct_columns) std::fill(dxn, dxn + p.in_channels * p.in_plane(), 0.0f);
      for (int64_t g = 0; g < p.groups; ++g) {
        const float* dyg = dy + (n * p.out_channels + g * kg) * P;
        float* dxg = dxn + g * cg * p.in_plane();
        for (int64_t p0 = 0; p0 < P; p0 += plan.chunk) {
          const int64_t p1 = std::min(P, p0 + plan.chunk);
          if (direct_columns) {
            sgemm(true, false, K, p1 - p0, kg, 1.0f, w + g * kg * K, K, dyg + p0, P, 0.0f, dxg + p0, P);
          } else {
            sgemm(true, false, K, p1 - p0, kg, 1.0f, w + g * kg * K, K, dyg + p0, P, 0.0f, dcol, p1 - p0);
            col2im_columns(p, dcol, p1 - p0, p0, p1, dxg);
          }
        }
      }
    }
  });
}

void weight_grad_im2col(const Conv2dParams& p, const ColumnPlan& plan, const float* dy,
                        const float* x, float* dw) {
  const int64_t cg = p.group_in_channels(), kg = p.group_out_channels();
  const int64_t K = p.reduction(), P = p.out_plane();
  const int64_t w_count = p.out_channels * K;
  const bool direct_columns = columns_are_input(p);
  // Deterministic: a fixed count of shares, their partial sums within the im2col budget.
  const int64_t shares =
      deterministic() ? std::min(kDeterministicImageShares, 1 + kIm2colBudgetFloats / w_count) : plan.outer;
  const int64_t slots = std::min(shares, std::max<int64_t>(p.batch, 1));
  // The calling thread's Scratch0 holds the other slots' sums (nothing in this
  // path uses that slot): no fresh zeroed buffer and page faults per call.
  float* partials = thread_workspace(
      WorkspaceSlot::Scratch0, static_cast<size_t>(checked_mul(slots - 1, w_count, "conv2d weight partial sums")));
  auto slot_sum = [&](int64_t slot) { return slot == 0 ? dw : partials + (slot - 1) * w_count; };
  // One slot per outer thread; a thread given several slots runs them one after another.
  for_images(plan, slots, work_per_item(slots, {p.batch / slots, w_count, P}), [&](int64_t s_begin, int64_t s_end) {
    float* col = direct_columns
                     ? nullptr
                     : thread_workspace(WorkspaceSlot::Im2col, static_cast<size_t>(K * plan.chunk));
    for (int64_t slot = s_begin; slot < s_end; ++slot) {
      float* sum = slot_sum(slot);
      std::fill(sum, sum + w_count, 0.0f);
      for (int64_t n = p.batch * slot / slots; n < p.batch * (slot + 1) / slots; ++n) {
        for (int64_t g = 0; g < p.groups; ++g) {
          const float* xg = x + (n * p.in_channels + g * cg) * p.in_plane();
          const float* dyg = dy + (n * p.out_channels + g * kg) * P;
          for (int64_t p0 = 0; p0 < P; p0 += plan.chunk) {
            const int64_t p1 = std::min(P, p0 + plan.chunk);
            const ColumnBlock b = column_block(p, xg, p0, p1, col);
            sgemm(false, true, kg, K, p1 - p0, 1.0f, dyg + p0, P, b.data, b.ld, 1.0f, sum + g * kg * K, K);
          }
        }
      }
    }
  });
  if (slots > 1) {
    parallel_for(w_count, slots, [&](int64_t begin, int64_t end) {
      for (int64_t slot = 1; slot < slots; ++slot) {
        const float* part = slot_sum(slot);
        for (int64_t i = begin; i < end; ++i) dw[i] += part[i];
      }
    });
  }
}

}  // namespace

void conv2d_weight_grad(const Conv2dParams& p, const float* dy, const float* x, float* dw) {
  if (im2col_fits(p)) {
    weight_grad_im2col(p, plan_columns(p), dy, x, dw);
  } else {
    conv2d_backward_direct(p, dy, x, nullptr, nullptr, dw, nullptr);
  }
}

bool weight_grad_kvec_fits(const Conv2dParams& p, int64_t lanes) {
  if (p.batch == 0 || p.out_plane() == 0 || p.reduction() == 0 || p.out_channels == 0) return false;
  const int64_t kpad = (p.group_out_channels() + lanes - 1) / lanes * lanes;
  const int64_t bound = kDirectRowsMaxFloats;
  return p.padded_plane() <= bound / p.group_in_channels() && p.out_plane() <= bound / kpad &&
         p.groups * p.reduction() <= bound / kpad;
}

void conv2d_input_grad(const Conv2dParams& p, const float* dy, const float* w, float* dx) {
  if (im2col_fits(p)) {
    input_grad_im2col(p, plan_columns(p), dy, w, dx);
  } else {
    conv2d_backward_direct(p, dy, nullptr, w, dx, nullptr, nullptr);
  }
}

void conv2d_bias_grad(const Conv2dParams& p, const float* dy, float* db) {
  const int64_t P = p.out_plane();
  // The batch-norm statistics pass sums a channel's rows in vectors, in float
  // over a few vectors and then in double (norm/vector_impl.h): the serial
  // double sum below ran one add per cycle, a third of mnist_cnn's first
  // layer's backward.
  const BatchNormRangeKernels* range = nullptr;
#ifdef CNNKIT_X86
  if (isa_enabled(Isa::Avx512)) {
    range = &batch_norm_range_avx512;
  } else if (isa_enabled(Isa::Avx2)) {
    range = &batch_norm_range_avx2;
  }
#endif
  parallel_for(p.out_channels, work_per_item(p.out_channels, {p.batch, P}), [&](int64_t begin, int64_t end) {
    for (int64_t o = begin; o < end; ++o) {
      if (range != nullptr) {
        double sums[2];
        range->sums(dy + o * P, nullptr, nullptr, p.batch, p.out_channels * P, P, 0.0f, sums);
        db[o] = static_cast<float>(sums[0]);
        continue;
      }
      // In double: the sum runs over N*Ho*Wo terms, often many thousands.
      // Four running sums, so the adds do not wait on each other.
      double sums[4] = {0.0, 0.0, 0.0, 0.0};
      for (int64_t n = 0; n < p.batch; ++n) {
        const float* plane = dy + (n * p.out_channels + o) * P;
        int64_t i = 0;
        for (; i + 4 <= P; i += 4) {
          for (int k = 0; k < 4; ++k) sums[k] += plane[i + k];
        }
        for (; i < P; ++i) sums[0] += plane[i];
      }
      db[o] = static_cast<float>((sums[0] + sums[1]) + (sums[2] + sums[3]));
    }
  });
}

namespace {

// dw by the given kernel (kvec); dx by the direct kernels run on
// the transposed shape where they can (stride 1), else im2col.
void backward_with_weight_grad(void (*weight_grad)(const Conv2dParams&, const float*, const float*, float*),
                               const Conv2dParams& p, const float* dy, const float* x, const float* w, float* dx,
                               float* dw, float* db) {
  if (dx != nullptr) {
    if (direct_rows_backward_fits(p)) {
      conv2d_input_grad_transposed(p, dy, w, dx);
    } else {
      conv2d_input_grad(p, dy, w, dx);
    }
  }
  if (dw != nullptr) weight_grad(p, dy, x, dw);
  if (db != nullptr) conv2d_bias_grad(p, dy, db);
}

}  // namespace

CNNKIT_CONV2D_BACKWARD_SIGNATURE(conv2d_backward_im2col) {
  const ColumnPlan plan = plan_columns(p);
  if (dx != nullptr) input_grad_im2col(p, plan, dy, w, dx);
  if (dw != nullptr) weight_grad_im2col(p, plan, dy, x, dw);
  if (db != nullptr) conv2d_bias_grad(p, dy, db);
}

CNNKIT_CONV2D_BACKWARD_SIGNATURE(conv2d_backward_kvec_avx2) {
  backward_with_weight_grad(conv2d_weight_grad_kvec_avx2, p, dy, x, w, dx, dw, db);
}

CNNKIT_CONV2D_BACKWARD_SIGNATURE(conv2d_backward_kvec_avx512) {
  backward_with_weight_grad(conv2d_weight_grad_kvec_avx512, p, dy, x, w, dx, dw, db);
}

}  // namespace cnnkit
