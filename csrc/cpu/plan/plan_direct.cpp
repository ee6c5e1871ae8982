// Bounds and weight packing of the plan's direct convolution (plan_direct.h),
// compiled for the baseline ISA.
#include "cpu/plan/plan_direct.h"

#include <algorithm>

#include "cnnkit/errors.h"
#include "cnnkit/isa.h"
#include "core/parallel.h"
#include "cpu/conv/kernels.h"

namespace cnnkit {

bool plan_direct_fits(const Conv2dParams& p) {
  if (p.groups != 1 || p.dilation_w != 1 || !direct_cvec_fits(p)) return false;
  if (p.stride_w == 1) return p.kernel_w == 1 || p.kernel_w == 3 || p.kernel_w == 5;
  return p.stride_w == 2 && (p.kernel_w == 1 || p.kernel_w == 3);
}

bool plan_direct_reads_blocked(const Conv2dParams& p) { return plan_direct_fits(p) && p.kernel_w <= 3; }

bool plan_winograd_fits(const Conv2dParams& p) {
  return plan_direct_fits(p) && (p.kernel_h == 3 || p.kernel_h == 5) && (p.kernel_w == 3 || p.kernel_w == 5) &&
         p.stride_h == 1 && p.stride_w == 1 && p.dilation_h == 1 && p.dilation_w == 1;
}

namespace {

// Packs p's weights for the widest ISA enabled now, weight(k, i) being output
// channel k's i-th reduction term; false (nothing done) when p does not fit
// or no vector ISA is enabled.
template <class Weight>
bool pack_weights(const Conv2dParams& p, Weight weight, const float* bias, PlanDirectConv* out) {
#ifdef CNNKIT_X86
  if (!plan_direct_fits(p)) return false;
  PlanDirectConv& c = *out;
  if (isa_enabled(Isa::Avx512)) {
    c.kernel = plan_direct_avx512;
    c.name = "plan_direct_avx512";
    c.lanes = 16;
  } else if (isa_enabled(Isa::Avx2)) {
    c.kernel = plan_direct_avx2;
    c.name = "plan_direct_avx2";
    c.lanes = 8;
  } else {
    return false;
  }
  const int64_t K = p.out_channels, red = p.reduction(), L = c.lanes;
  c.blocks = (K + L - 1) / L;
  c.weight_floats = checked_mul(c.blocks * red, L, "conv2d packed weight");
  c.block_major = false;
  c.winograd = false;
  c.winograd_packed.clear();
  // assign keeps the capacity: conv2d_forward_plan_direct packs into the same buffer every call.
  c.packed.assign(static_cast<size_t>(c.weight_floats + c.blocks * L), 0.0f);
  parallel_for(c.blocks, red * L, [&](int64_t b0, int64_t b1) {
    for (int64_t k = b0 * L; k < std::min(K, b1 * L); ++k) {
      float* dst = c.packed.data() + (k / L) * red * L + k % L;
      for (int64_t i = 0; i < red; ++i) dst[i * L] = weight(k, i);
      if (bias != nullptr) c.packed[static_cast<size_t>(c.weight_floats + k)] = bias[k];
    }
  });
  return true;
#else
  (void)p, (void)weight, (void)bias, (void)out;
  return false;
#endif
}

}  // namespace

bool pack_plan_direct(const Conv2dParams& p, const float* w, const float* bias, PlanDirectConv* out) {
  const int64_t red = p.reduction();
  return pack_weights(p, [&](int64_t k, int64_t i) { return w[k * red + i]; }, bias, out);
}

int plan_winograd_tile(const Conv2dParams& p) {
  // F(2x2, 5x5)'s larger transforms round more: with few input channels
  // (few terms to average it out) the error would leave the tolerance rule.
  return p.kernel_h == 5 && p.kernel_w == 5 && p.in_channels >= 8 ? 6 : 4;
}

namespace {

// U = G g G^T of one r x r kernel g(i, j), scaled as plan_winograd_impl.h
// says, in double: into u[A * i + j] for the tile's A x A points.
template <int A, class Kernel>
void winograd_weight_transform(Kernel g, double* u) {
  constexpr int R = A - 1;
  // The rows of G, scaled: F(2, 3)'s times 2 (the kernel's 1/4 scales both
  // sides back), F(2, 5)'s times 4, -6, -6, 24, 24 and 1.
  static constexpr double kG3[4][3] = {{2, 0, 0}, {1, 1, 1}, {1, -1, 1}, {0, 0, 2}};
  static constexpr double kG5[6][5] = {{1, 0, 0, 0, 0}, {1, 1, 1, 1, 1},   {1, -1, 1, -1, 1},
                                       {1, 2, 4, 8, 16}, {1, -2, 4, -8, 16}, {0, 0, 0, 0, 1}};
  auto G = [](int a, int i) { return A == 4 ? kG3[a][i] : kG5[a][i]; };
  double t[A][R];  // G g
  for (int a = 0; a < A; ++a) {
    for (int j = 0; j < R; ++j) {
      double sum = 0;
      for (int i = 0; i < R; ++i) sum += G(a, i) * g(i, j);
      t[a][j] = sum;
    }
  }
  for (int a = 0; a < A; ++a) {
    for (int b = 0; b < A; ++b) {
      double sum = 0;
      for (int j = 0; j < R; ++j) sum += t[a][j] * G(b, j);
      u[A * a + b] = sum;
    }
  }
}

}  // namespace

bool pack_plan_winograd(const Conv2dParams& p, const float* w, PlanDirectConv* out) {
  PlanDirectConv& c = *out;
  if (c.kernel == nullptr || !plan_winograd_fits(p)) return false;
  const int64_t K = p.out_channels, C = p.in_channels, L = c.lanes, KH = p.kernel_h, KW = p.kernel_w;
  const int A = plan_winograd_tile(p), R = A - 1, P = A * A;
  // The R x R parts of the kernel's zero extension to a multiple of R (plan_winograd_impl.h).
  const int64_t parts_w = (KW + R - 1) / R, S = (KH + R - 1) / R * parts_w;
  c.winograd_packed.assign(static_cast<size_t>(checked_mul(c.blocks * P * S * C, L, "conv2d winograd weight")),
                           0.0f);
  parallel_for(c.blocks, P * S * C * L, [&](int64_t b0, int64_t b1) {
    for (int64_t k = b0 * L; k < std::min(K, b1 * L); ++k) {
      for (int64_t s = 0; s < S; ++s) {
        for (int64_t ci = 0; ci < C; ++ci) {
          auto g = [&](int64_t i, int64_t j) -> double {
            const int64_t r = R * (s / parts_w) + i, q = R * (s % parts_w) + j;
            return r < KH && q < KW ? w[((k * C + ci) * KH + r) * KW + q] : 0.0;
          };
          double u[36];
          if (A == 4) {
            winograd_weight_transform<4>(g, u);
          } else {
            winograd_weight_transform<6>(g, u);
          }
          // Rounded once.
          float* dst = c.winograd_packed.data() + (((k / L) * P * S + s) * C + ci) * L + k % L;
          for (int q = 0; q < P; ++q) dst[q * S * C * L] = static_cast<float>(u[q]);
        }
      }
    }
  });
  return true;
}

bool plan_direct_forward_fits(const Conv2dParams& p) {
  return plan_direct_fits(p) && (isa_enabled(Isa::Avx2) || isa_enabled(Isa::Avx512));
}

namespace {

// The weights packed for the calls of this thread (kept between calls, so
// that a training step's forward reuses the buffer instead of faulting in a
// fresh one).
thread_local PlanDirectConv t_forward_packing;

void forward_plan_direct(const Conv2dParams& p, const float* x, const float* w, const float* bias, float* y,
                         bool block_major, bool winograd) {
  PlanDirectConv& c = t_forward_packing;
  CNNKIT_CHECK(pack_plan_direct(p, w, bias, &c), ErrorKind::Value,
               "conv2d: the plan_direct kernel does not run this layer under the ISA cap");
  c.block_major = block_major;
  c.winograd = winograd;
  if (winograd) {
    CNNKIT_CHECK(pack_plan_winograd(p, w, &c), ErrorKind::Value,
                 "conv2d: the plan_winograd kernel runs only 3x3 and 5x5 stride-1 undilated layers of one group");
  }
  c.kernel(p, c, x, PlanDirectEpilogue{}, y, PlanDirectLayout{});
}

}  // namespace

CNNKIT_CONV2D_FORWARD_SIGNATURE(conv2d_forward_plan_direct) { forward_plan_direct(p, x, w, bias, y, false, false); }

CNNKIT_CONV2D_FORWARD_SIGNATURE(conv2d_forward_plan_direct_block_major) {
  forward_plan_direct(p, x, w, bias, y, true, false);
}

bool plan_winograd_forward_fits(const Conv2dParams& p) { return plan_direct_forward_fits(p) && plan_winograd_fits(p); }

CNNKIT_CONV2D_FORWARD_SIGNATURE(conv2d_forward_plan_winograd) { forward_plan_direct(p, x, w, bias, y, false, true); }

bool plan_direct_input_grad_fits(const Conv2dParams& p) {
  return p.groups == 1 && direct_rows_backward_fits(p) && plan_direct_forward_fits(transposed_params(p));
}

bool kvec_plan_dx_fits_avx512(const Conv2dParams& p) {
  return weight_grad_kvec_fits(p, 16) && plan_direct_input_grad_fits(p);
}

bool kvec_plan_dx_fits_avx2(const Conv2dParams& p) {
  return weight_grad_kvec_fits(p, 8) && plan_direct_input_grad_fits(p);
}

bool image_blocks_plan_dx_fits(const Conv2dParams& p) { return image_blocks_fits(p) && plan_direct_input_grad_fits(p); }

namespace {

thread_local PlanDirectConv t_input_grad_packing;

// dx of p as the block-major kernel over dy on the transposed layer: its
// output channel c (p's input channel) reduces over p's output channels k and
// the flipped taps, weight w[k][c][R-1-r][S-1-s].
void input_grad_plan_direct(const Conv2dParams& p, const float* dy, const float* w, float* dx) {
  const Conv2dParams t = transposed_params(p);
  const int64_t C = p.in_channels, R = p.kernel_h, S = p.kernel_w;
  PlanDirectConv& c = t_input_grad_packing;
  const bool packed = pack_weights(
      t,
      [&](int64_t ci, int64_t i) {
        const int64_t k = i / (R * S), r = i / S % R, s = i % S;
        return w[((k * C + ci) * R + (R - 1 - r)) * S + (S - 1 - s)];
      },
      nullptr, &c);
  CNNKIT_CHECK(packed, ErrorKind::Value, "conv2d_backward: the plan_direct kernel does not run this input gradient");
  c.block_major = true;
  c.winograd = false;
  c.kernel(t, c, dy, PlanDirectEpilogue{}, dx, PlanDirectLayout{});
}

}  // namespace

CNNKIT_CONV2D_BACKWARD_SIGNATURE(conv2d_backward_kvec_plan_dx_avx512) {
  if (dw != nullptr || db != nullptr) conv2d_backward_kvec_avx512(p, dy, x, w, nullptr, dw, db);
  if (dx != nullptr) input_grad_plan_direct(p, dy, w, dx);
}

CNNKIT_CONV2D_BACKWARD_SIGNATURE(conv2d_backward_kvec_plan_dx_avx2) {
  if (dw != nullptr || db != nullptr) conv2d_backward_kvec_avx2(p, dy, x, w, nullptr, dw, db);
  if (dx != nullptr) input_grad_plan_direct(p, dy, w, dx);
}

CNNKIT_CONV2D_BACKWARD_SIGNATURE(conv2d_backward_image_blocks_plan_dx) {
  if (dw != nullptr || db != nullptr) conv2d_backward_image_blocks(p, dy, x, w, nullptr, dw, db);
  if (dx != nullptr) input_grad_plan_direct(p, dy, w, dx);
}

}  // namespace cnnkit
