// Direct convolution (stride 1 along rows, any stride down columns) that
// walks the input row, vectorised over output channels, included by one file
// per ISA. Suits layers with short output rows and few input channels (LeNet
// c2: 6 channels, 10 outputs per row, 5x5), where direct_cvec is bound by its
// one broadcast per FMA.
//
// Weights and bias are packed as for direct_cvec ([group][block][c][r][s][NV*L],
// direct_cvec.cpp). A register tile holds NV vectors of output channels for NB
// consecutive positions of one output row. For each (c, r) the KW weight
// vectors of that kernel row are loaded once; then every input column iw of
// the NB + KW - 1 the tile reads is broadcast once and feeds the up to KW
// accumulators acc[iw - s] it contributes to, with w[s]: one broadcast per KW
// FMAs instead of one per FMA. Everything is unrolled at compile time (NB and
// KW are template arguments); widths the templates do not cover run direct_cvec.
//
// Reads go through a zero-padded copy of the image, as in direct_cvec: padded
// taps are read as 0*w.
//
// Vec must provide what direct_cvec_impl.h needs, and
// store_transposed(const F* rows, int n, float* dst, int64_t stride):
// dst[k * stride + j] = lane k of rows[j] for j < n and every lane k.
#pragma once
#include <cstdint>
#include <type_traits>
#include <utility>

#include "cpu/conv/kernels.h"
#include "cpu/conv/padded_rows.h"
#include "cpu/conv/tile_size.h"

namespace cnnkit {
namespace {

template <class F, int... I>
__attribute__((always_inline)) inline void walk_unroll(F&& f, std::integer_sequence<int, I...>) {
  (f(std::integral_constant<int, I>{}), ...);
}
template <int N, class F>
__attribute__((always_inline)) inline void walk_unroll(F&& f) {
  walk_unroll(f, std::make_integer_sequence<int, N>{});
}

// One tile: NV vectors of channels x NB positions of ROWS output rows. Row q
// starts at input x0 + q * out_row_step (the tap (0, 0) of its first
// position) and is written transposed to y + q * out_w (channel-major,
// `channel_stride` floats apart; only the first `kb` channels are stored).
// Each kernel row's KW weight vectors are loaded once for all ROWS rows; the
// rows give each accumulator's FMA chain ROWS times as many independent
// chains to hide its latency behind.
template <class Vec, int NV, int NB, int KW, int ROWS>
void walk_tile(int64_t cg, int64_t R, int64_t plane, int64_t row_step, int64_t out_row_step, const float* x0,
               const float* wb, const float* bb, float* y, int64_t out_w, int64_t channel_stride, int64_t kb,
               int64_t row_left) {
  using V = typename Vec::F;
  constexpr int L = Vec::kWidth;
  V acc[ROWS][NV][NB];
  for (int v = 0; v < NV; ++v) {
    const V b = Vec::load(bb + v * L);
    for (int q = 0; q < ROWS; ++q)
      for (int j = 0; j < NB; ++j) acc[q][v][j] = b;
  }
  // The kernel row's weights stay in registers when they fit beside the
  // accumulators and a broadcast; otherwise each FMA reads its weight from
  // L1 as a memory operand, which keeps every accumulator in a register
  // (AVX2, 14 positions: 14 accumulators; 1 thread, 16 channels, 5x5, rows
  // of 14-56: 94-102 -> 114-117 GFLOP/s against 10 positions with weights
  // in registers, which spilled and split 14-wide rows into 7 + 7).
  constexpr bool kWeightsInRegisters = ROWS * NV * NB + KW * NV + 1 <= Vec::kRegisters;
  const float* w = wb;
  for (int64_t c = 0; c < cg; ++c) {
    // One pointer per row, so that every broadcast is pointer + constant: with
    // a shared base + (row offset + iw), GCC kept one index register per iw and
    // spilled them.
    const float* xrow[ROWS];
    for (int q = 0; q < ROWS; ++q) xrow[q] = x0 + c * plane + q * out_row_step;
    for (int64_t r = 0; r < R; ++r, w += KW * NV * L) {
      V wv[KW][NV];
      if constexpr (kWeightsInRegisters) {
        for (int s = 0; s < KW; ++s)
          for (int v = 0; v < NV; ++v) wv[s][v] = Vec::load(w + (s * NV + v) * L);
      }
      walk_unroll<NB + KW - 1>([&](auto iw_c) __attribute__((always_inline)) {
        constexpr int iw = decltype(iw_c)::value;
        walk_unroll<ROWS>([&](auto q_c) __attribute__((always_inline)) {
          constexpr int q = decltype(q_c)::value;
          const V xb = Vec::broadcast(xrow[q] + iw);
          walk_unroll<KW>([&](auto s_c) __attribute__((always_inline)) {
            constexpr int s = decltype(s_c)::value, j = iw - s;
            if constexpr (j >= 0 && j < NB) {
              for (int v = 0; v < NV; ++v) {
                const V weight = kWeightsInRegisters ? wv[s][v] : Vec::load(w + (s * NV + v) * L);
                acc[q][v][j] = Vec::fma(weight, xb, acc[q][v][j]);
              }
            }
          });
        });
      });
      for (int q = 0; q < ROWS; ++q) xrow[q] += row_step;
    }
  }
  for (int q = 0; q < ROWS; ++q) {
    float* yq = y + q * out_w;
    for (int v = 0; v < NV && v * L < kb; ++v) {
      if (kb - v * L >= L) {
        Vec::store_transposed(acc[q][v], NB, yq + v * L * channel_stride, channel_stride, row_left);
      } else {
        float t[L * NB];
        for (int j = 0; j < NB; ++j) Vec::store(t + j * L, acc[q][v][j]);
        for (int64_t k = 0; k < kb - v * L; ++k)
          for (int j = 0; j < NB; ++j) yq[(v * L + k) * channel_stride + j] = t[j * L + k];
      }
    }
  }
}

// Bands of ROWS output rows, each cut into tiles of at most NB positions.
template <class Vec, int NV, int NB, int KW, int ROWS>
void conv2d_forward_walk(const Conv2dParams& p, const CvecPlan& plan, const float* x, float* y) {
  constexpr int64_t L = Vec::kWidth, BL = NV * L;
  const int64_t cg = p.in_channels / p.groups, kg = p.out_channels / p.groups;
  const int64_t Ho = p.out_h, Wo = p.out_w, Wp = plan.padded_w, plane = plan.plane;
  const int64_t row_step = p.dilation_h * Wp, out_row_step = p.stride_h * Wp;
  const int64_t taps_per_block = cg * p.kernel_h * KW * BL;
  const int64_t row_tiles = (Wo + NB - 1) / NB, nb_size = (Wo + row_tiles - 1) / row_tiles;
  for_each_padded_band(p, plan, x, ROWS, plan.blocks * taps_per_block * Wo, [&](const float* xp, int64_t n,
                                                                               int64_t g, int64_t oh, int64_t rows) {
    for (int64_t blk = 0; blk < plan.blocks; ++blk) {
      const float* wb = plan.weights + (g * plan.blocks + blk) * taps_per_block;
      const float* bb = plan.bias + (g * plan.blocks + blk) * BL;
      const int64_t k0 = blk * BL, kb = kg - k0 < BL ? kg - k0 : BL;
      float* yb = y + ((n * p.out_channels + g * kg + k0) * Ho + oh) * Wo;
      for (int64_t ow0 = 0; ow0 < Wo; ow0 += nb_size) {
        const int64_t nb = Wo - ow0 < nb_size ? Wo - ow0 : nb_size;
        with_tile_size<ROWS>(static_cast<int>(rows), [&](auto q) {
          with_tile_size<NB>(static_cast<int>(nb), [&](auto n) {
            walk_tile<Vec, NV, decltype(n)::value, KW, decltype(q)::value>(
                cg, p.kernel_h, plane, row_step, out_row_step, xp + oh * out_row_step + ow0, wb, bb, yb + ow0, Wo,
                Ho * Wo, kb, Wo - ow0);
          });
        });
      }
    }
  });
}

}  // namespace
}  // namespace cnnkit
