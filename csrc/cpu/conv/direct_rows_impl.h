// Direct stride-1 convolution over "extended rows", for few input channels
// (first layers such as LeNet's), included by one file per ISA.
//
// Each image's (group's) input planes are copied once into a zero-padded
// buffer of width Wp = W + pad_left + pad_right. Output position (oh, ow) is
// then computed at extended index e = oh*Wp + ow, and tap (c, r, s) reads the
// padded input at e + c*plane + r*dh*Wp + s*dw: for a fixed tap, consecutive
// extended indices read consecutive inputs, so one unaligned vector load feeds
// V positions at once, with no padding tests. The columns ow >= Wo of the
// extended output are computed and dropped (Wo/Wp of the work is useful:
// 28/32 for LeNet c1, 10/14 for c2). A register tile of KB output channels x
// NB vectors of positions reuses each load KB times and each weight broadcast
// NB times.
//
// Zero padding is read as 0*w, as im2col does (an infinite weight on a
// padded tap gives NaN, unlike the scalar direct loops that skip such taps).
//
// Vec must provide: kWidth, type F, zero(), load(const float*), broadcast(const float*),
// fma(a, b, c) = a*b + c, store(float*, V).
#pragma once
#include <cstdint>
#include <cstring>

#include "core/parallel.h"
#include "core/workspace.h"
#include "cpu/conv/kernels.h"
#include "cpu/conv/tile_size.h"

namespace cnnkit {
namespace {

// Accumulates KB output channels x NB vectors starting at extended index e0
// over every (c, r, s) tap; stores them to ext[k * ext_stride + e0 + ...].
template <class Vec, int KB, int NB>
inline void rows_tile(const float* xp, int64_t plane, int64_t cg, const int64_t* tap_off,
                      int64_t taps, const float* w, int64_t red, int64_t e0, float* ext,
                      int64_t ext_stride) {
  using V = typename Vec::F;
  constexpr int L = Vec::kWidth;
  V acc[KB][NB];
  for (int k = 0; k < KB; ++k)
    for (int j = 0; j < NB; ++j) acc[k][j] = Vec::zero();
  for (int64_t c = 0; c < cg; ++c) {
    const float* xc = xp + c * plane + e0;
    const float* wc = w + c * taps;
    for (int64_t t = 0; t < taps; ++t) {
      const float* src = xc + tap_off[t];
      V xv[NB];
      for (int j = 0; j < NB; ++j) xv[j] = Vec::load(src + j * L);
      for (int k = 0; k < KB; ++k) {
        const V wv = Vec::broadcast(wc + k * red + t);
        for (int j = 0; j < NB; ++j) acc[k][j] = Vec::fma(wv, xv[j], acc[k][j]);
      }
    }
  }
  for (int k = 0; k < KB; ++k)
    for (int j = 0; j < NB; ++j) Vec::store(ext + k * ext_stride + e0 + j * L, acc[k][j]);
}

// All extended positions of KB output channels, in tiles of as even a size
// as NB allows: 13 vectors run as 4 + 3 + 3 + 3, not 4 + 4 + 4 + 1, whose
// one-vector tile loads a broadcast per KB multiply-adds (LeNet c2's input
// gradient: a tenth of the time for a fourteenth of the work).
template <class Vec, int KB, int NB>
inline void rows_channels(const float* xp, int64_t plane, int64_t cg, const int64_t* tap_off, int64_t taps,
                          const float* w, int64_t red, int64_t ext_len, float* ext, int64_t ext_stride) {
  constexpr int64_t L = Vec::kWidth;
  const int64_t vectors = (ext_len + L - 1) / L, tiles = (vectors + NB - 1) / NB;
  for (int64_t t = 0; t < tiles; ++t) {
    const int64_t v0 = vectors * t / tiles, v1 = vectors * (t + 1) / tiles;
    with_tile_size<NB>(static_cast<int>(v1 - v0), [&](auto n) {
      rows_tile<Vec, KB, decltype(n)::value>(xp, plane, cg, tap_off, taps, w, red, v0 * L, ext, ext_stride);
    });
  }
}

template <class Vec, int KB, int NB>
void conv2d_forward_direct_rows(const Conv2dParams& p, const float* x, const float* w,
                                const float* bias, float* y) {
  constexpr int64_t L = Vec::kWidth;
  // Sizes come from the baseline-compiled planner: this file calls no inline
  // helper or STL template that the linker could share with scalar code.
  const DirectRowsPlan plan = plan_direct_rows(p, L * NB);
  const int64_t cg = plan.group_in_channels, kg = plan.group_out_channels, red = plan.reduction;
  const int64_t Wp = plan.padded_w, plane = plan.plane, Ho = p.out_h, Wo = p.out_w;
  const int64_t taps = p.kernel_h * p.kernel_w;
  parallel_for(plan.items, plan.work_per_item, [&](int64_t begin, int64_t end) {
    float* xp = thread_workspace(WorkspaceSlot::Scratch0, static_cast<size_t>(plan.input_floats));
    float* ext = thread_workspace(WorkspaceSlot::Scratch1, static_cast<size_t>(KB * plan.ext_stride));
    int64_t tap_off[kDirectRowsMaxTaps];
    for (int64_t r = 0; r < p.kernel_h; ++r)
      for (int64_t s = 0; s < p.kernel_w; ++s)
        tap_off[r * p.kernel_w + s] = r * p.dilation_h * Wp + s * p.dilation_w;
    // The padding stays zero across items (only the interior is rewritten);
    // the last vectors read up to one tile past the planes: dropped positions.
    std::memset(xp, 0, static_cast<size_t>(plan.input_floats) * sizeof(float));
    for (int64_t item = begin; item < end; ++item) {
      const int64_t n = item / p.groups, g = item % p.groups;
      const float* xg = x + (n * p.in_channels + g * cg) * p.in_h * p.in_w;
      copy_into_padded(p, xg, cg, xp, plane, Wp);
      for (int64_t o0 = 0; o0 < kg; o0 += KB) {
        const int kb = static_cast<int>(kg - o0 < KB ? kg - o0 : KB);
        const int64_t o_first = g * kg + o0;
        with_tile_size<KB>(kb, [&](auto k) {
          rows_channels<Vec, decltype(k)::value, NB>(xp, plane, cg, tap_off, taps, w + o_first * red, red,
                                                     plan.ext_len, ext, plan.ext_stride);
        });
        for (int k = 0; k < kb; ++k) {
          const float b = bias != nullptr ? bias[o_first + k] : 0.0f;
          float* yk = y + (n * p.out_channels + o_first + k) * Ho * Wo;
          const float* ek = ext + k * plan.ext_stride;
          for (int64_t oh = 0; oh < Ho; ++oh) {
            for (int64_t ow = 0; ow < Wo; ++ow) yk[oh * Wo + ow] = ek[oh * Wp + ow] + b;
          }
        }
      }
    }
  });
}

// Weight gradient over extended rows: a register tile of KB output channels x
// TB taps of one input channel, each accumulator a vector of partial sums over
// V consecutive extended positions. Per position vector the tile loads KB dy
// vectors and TB input vectors for KB*TB FMAs. The sums live in `acc`
// (KB*TB vectors, L1-resident) between blocks of images, sized so that the
// block's dy rows and input planes stay in L1 while every tap block reads
// them; within a block they stay in registers (64x32x14x14 k64 5x5 runs only
// 16 vectors per image: loading and storing the tile per image cost ~15%).
template <class Vec, int KB, int TB>
inline void wgrad_tile(const float* xn, const float* dyn, int64_t images, int64_t x_step,
                       int64_t dy_step, int64_t ext_stride, int64_t vectors,
                       const int64_t* tap_off, float* acc) {
  using V = typename Vec::F;
  constexpr int L = Vec::kWidth;
  V a[KB][TB];
  for (int k = 0; k < KB; ++k)
    for (int t = 0; t < TB; ++t) a[k][t] = Vec::load(acc + (k * TB + t) * L);
  for (int64_t n = 0; n < images; ++n) {
    const float* xi = xn + n * x_step;
    const float* dyi = dyn + n * dy_step;
    for (int64_t v = 0; v < vectors; ++v) {
      const int64_t e = v * L;
      V d[KB];
      for (int k = 0; k < KB; ++k) d[k] = Vec::load(dyi + k * ext_stride + e);
      for (int t = 0; t < TB; ++t) {
        const V xv = Vec::load(xi + e + tap_off[t]);
        for (int k = 0; k < KB; ++k) a[k][t] = Vec::fma(d[k], xv, a[k][t]);
      }
    }
  }
  for (int k = 0; k < KB; ++k)
    for (int t = 0; t < TB; ++t) Vec::store(acc + (k * TB + t) * L, a[k][t]);
}

// Threads take (group, channel block, input channel) items, each summing over
// every image of the chunk in a fixed order: the result does not depend on the
// number of threads. Channel and tap blocks are balanced (kg = 6 with KB = 4
// runs two blocks of 3) so that no tile is left nearly empty.
template <class Vec, int KB, int TB>
void conv2d_weight_grad_rows(const Conv2dParams& p, const WeightGradRowsChunk& chunk, float* dw,
                             bool accumulate) {
  constexpr int64_t L = Vec::kWidth;
  const int64_t cg = p.in_channels / p.groups, kg = p.out_channels / p.groups;
  const int64_t taps = p.kernel_h * p.kernel_w, red = cg * taps;
  const int64_t k_blocks = (kg + KB - 1) / KB, k_size = (kg + k_blocks - 1) / k_blocks;
  const int64_t t_blocks = (taps + TB - 1) / TB, t_size = (taps + t_blocks - 1) / t_blocks;
  const int64_t vectors = chunk.ext_stride / L;
  const int64_t x_step = p.in_channels * chunk.plane, dy_step = p.out_channels * chunk.ext_stride;
  const int64_t items = p.groups * k_blocks * cg;
  // Images per block: their dy rows and input plane fill at most 16 KiB of L1
  // (a third of it; 32 KiB ran 5% slower on 64x32x14x14 k64 5x5 pad 2).
  auto image_block = [](int64_t floats_per_image) {
    const int64_t fit = (int64_t{4} << 10) / floats_per_image;
    return fit > 1 ? fit : int64_t{1};
  };
  // Bounded by the packed buffers' sizes: no overflow.
  const int64_t work = chunk.images * k_size * taps * chunk.ext_stride;
  parallel_for(items, work, [&](int64_t begin, int64_t end) {
    float* acc = thread_workspace(WorkspaceSlot::Scratch0, static_cast<size_t>(KB * taps * L));
    int64_t tap_off[kDirectRowsMaxTaps];
    for (int64_t r = 0; r < p.kernel_h; ++r)
      for (int64_t s = 0; s < p.kernel_w; ++s)
        tap_off[r * p.kernel_w + s] = r * p.dilation_h * chunk.padded_w + s * p.dilation_w;
    for (int64_t item = begin; item < end; ++item) {
      const int64_t g = item / (k_blocks * cg), kbi = item / cg % k_blocks, c = item % cg;
      const int64_t k0 = kbi * k_size;
      const int kb = static_cast<int>(kg - k0 < k_size ? kg - k0 : k_size);
      std::memset(acc, 0, static_cast<size_t>(kb * taps * L) * sizeof(float));
      const int64_t block = image_block(kb * chunk.ext_stride + chunk.plane);
      for (int64_t n0 = 0; n0 < chunk.images; n0 += block) {
        const int64_t images = chunk.images - n0 < block ? chunk.images - n0 : block;
        const float* xn = chunk.xp + (n0 * p.in_channels + g * cg + c) * chunk.plane;
        const float* dyn = chunk.dyx + (n0 * p.out_channels + g * kg + k0) * chunk.ext_stride;
        for (int64_t t0 = 0; t0 < taps; t0 += t_size) {
          const int tb = static_cast<int>(taps - t0 < t_size ? taps - t0 : t_size);
          with_tile_size<KB>(kb, [&](auto k) {
            with_tile_size<TB>(tb, [&](auto t) {
              wgrad_tile<Vec, decltype(k)::value, decltype(t)::value>(xn, dyn, images, x_step, dy_step,
                                                                      chunk.ext_stride, vectors, tap_off + t0,
                                                                      acc + kb * t0 * L);
            });
          });
        }
      }
      for (int64_t t0 = 0; t0 < taps; t0 += t_size) {
        const int64_t tb = taps - t0 < t_size ? taps - t0 : t_size;
        for (int64_t k = 0; k < kb; ++k) {
          for (int64_t t = 0; t < tb; ++t) {
            // A tree of vector adds: a serial sum of the lanes cost 10-20%
            // of the item at 8 images (a 16-add dependency chain per weight).
            const float sum = Vec::sum(Vec::load(acc + (kb * t0 + k * tb + t) * L));
            float& out = dw[(g * kg + k0 + k) * red + c * taps + t0 + t];
            out = accumulate ? out + sum : sum;
          }
        }
      }
    }
  });
}

}  // namespace
}  // namespace cnnkit
