// Weight gradient vectorised over output channels ("kvec"), any stride,
// padding, dilation and groups. Included by one file per ISA.
//
//   dw[k][c][r][s] = sum over images n and output positions (oh, ow) of
//                    dy[n][k][oh][ow] * x[n][c][oh*sh + r*dh - pt][ow*sw + s*dw - pl]
//
// Per image, group and block of output channels, that block of dy is packed
// channels-last ([oh][ow][k], k padded with zeros to whole vectors) and x
// into zero-padded planes. A register tile holds NV vectors of output
// channels x SB taps (s) of a few (input channel c, kernel row r) pairs; for
// every output position (or few, with stride 1) it loads the NV dy vectors
// once and broadcasts the inputs they meet. The tile's sums live in a
// channels-last partial dw ([g][c][r][s][k]) between bands of output rows:
// the slice of a band's packed dy that one channel block reads (about 32 KiB)
// stays in L1 while every (c, r, s) tile runs over it.
//
// Threads: the batch is cut into fixed image ranges ("slots", one per thread
// while there are images, within a memory bound), each summed into its own
// partial dw, then added in slot order: the result does not depend on which
// thread ran what. Each slot's input channels are split into parts that write
// disjoint rows of its partial: threads beyond the slots take parts, and with
// enough channels there are a few parts per thread, so a thread that finishes
// early takes the parts a slowed one has not started.
#pragma once
#include <algorithm>
#include <cstdint>
#include <cstring>

#include "cnnkit/errors.h"
#include "cnnkit/threads.h"
#include "core/parallel.h"
#include "core/workspace.h"
#include "cpu/conv/kernels.h"
#include "cpu/conv/tile_size.h"

namespace cnnkit {
namespace {

// The tiles of one band, channel block and tap block: for every input
// channel c in [c0, c1) and kernel row r, SB consecutive taps s (from s0) x NV
// channel vectors (from v0), summed over the band's output positions into
// partial[c][r][s][k] (`kpad` floats per tap).
struct KvecBand {
  float* partial;          // the group's partial dw at channel c0
  const float* dy;         // packed dy of the band's first row (the channel block's slice)
  const float* x;          // padded input at channel c0, the band's first row, tap s0
  int64_t channels, R, S, kpad, plane, padded_w;
  int64_t dy_step;         // floats per position of packed dy
  int64_t rows, out_w;     // the band's output rows and positions per row
  int64_t stride_h, stride_w, dilation_h, dilation_w;
};

// One tile: RB (channel, kernel row) pairs x SB taps x NV channel vectors.
// Pair q's input row starts at x_rows[q] (the band's first row) and its
// partial sums at acc_rows[q]. With U > 1 (stride and dilation 1 across,
// where position u's tap s reads input u + s) a step covers U positions: the
// U + SB - 1 inputs of a row are broadcast once for U * SB * NV FMAs, where
// one position at a time broadcasts SB of them for SB * NV. With one vector
// of channels and 3 taps that took the loads per FMA from 7/6 to 7/12 (4 dy
// vectors and 24 broadcasts for 48 FMAs; 4 kernel rows). Each sum still
// adds its positions in order, so U changes no bits.
template <class Vec, int NV, int RB, int SB, int U>
__attribute__((always_inline)) inline void kvec_tile(const KvecBand& b, const float* const (&x_rows)[RB],
                                                     float* const (&acc_rows)[RB]) {
  using V = typename Vec::F;
  constexpr int64_t L = Vec::kWidth;
  const int64_t kpad = b.kpad, step = b.dy_step, dy_row = b.out_w * step, x_row = b.stride_h * b.padded_w;
  V acc[RB][SB][NV];
  for (int q = 0; q < RB; ++q)
    for (int s = 0; s < SB; ++s)
      for (int v = 0; v < NV; ++v) acc[q][s][v] = Vec::load(acc_rows[q] + s * kpad + v * L);
  for (int64_t row = 0; row < b.rows; ++row) {
    const float* d = b.dy + row * dy_row;
    const float* xr[RB];
    for (int q = 0; q < RB; ++q) xr[q] = x_rows[q] + row * x_row;
    const int64_t steps_end = U > 1 ? b.out_w / U * U : 0;
    if constexpr (U > 1) {
      for (int64_t ow = 0; ow < steps_end; ow += U, d += U * step) {
        V dv[U][NV];
        for (int u = 0; u < U; ++u)
          for (int v = 0; v < NV; ++v) dv[u][v] = Vec::load(d + u * step + v * L);
        for (int q = 0; q < RB; ++q) {
          V xb[U + SB - 1];
          for (int j = 0; j < U + SB - 1; ++j) xb[j] = Vec::broadcast(xr[q] + j);
          for (int u = 0; u < U; ++u)
            for (int s = 0; s < SB; ++s)
              for (int v = 0; v < NV; ++v) acc[q][s][v] = Vec::fma(dv[u][v], xb[u + s], acc[q][s][v]);
          xr[q] += U;
        }
      }
    }
    for (int64_t ow = steps_end; ow < b.out_w; ++ow, d += step) {
      V dv[NV];
      for (int v = 0; v < NV; ++v) dv[v] = Vec::load(d + v * L);
      for (int q = 0; q < RB; ++q) {
        for (int s = 0; s < SB; ++s) {
          const V xb = Vec::broadcast(xr[q] + s * b.dilation_w);
          for (int v = 0; v < NV; ++v) acc[q][s][v] = Vec::fma(dv[v], xb, acc[q][s][v]);
        }
        xr[q] += b.stride_w;
      }
    }
  }
  for (int q = 0; q < RB; ++q)
    for (int s = 0; s < SB; ++s)
      for (int v = 0; v < NV; ++v) Vec::store(acc_rows[q] + s * kpad + v * L, acc[q][s][v]);
}

// A tile's (channel, kernel row) pairs and positions per step for NV vectors
// x SB taps. Several vectors of channels: two kernel rows for blocks of at
// most 3 taps, else one; one position per step. One vector: pairs for about
// 3/8 of the registers in sums (12 on AVX-512: 4 rows of 3 taps, 2 of 5),
// and the most positions per step whose dy vectors and broadcasts fit in the
// rest, two registers spare. Larger tiles or steps (all 24 sums of the
// several-vector tiles with one vector) made GCC keep sums on the stack.
template <class Vec, int NV, int SB>
struct KvecTileShape {
  static constexpr int kRows = NV > 1 ? (SB <= 3 ? 2 : 1) : std::clamp(Vec::kRegisters * 3 / 8 / SB, 1, 4);
  static constexpr bool fits(int u) { return kRows * SB + u + (u + SB - 1) <= Vec::kRegisters - 2; }
  static constexpr int kPositions = NV > 1 ? 1 : fits(4) ? 4 : fits(2) ? 2 : 1;
};

// One tile of RB (channel, kernel row) pairs of the band from pair `first`
// (pair i is channel i / R, kernel row i % R).
template <class Vec, int NV, int SB, int RB>
__attribute__((always_inline)) inline void kvec_pairs(const KvecBand& b, int64_t first, bool unit_steps) {
  const int64_t x_tap_row = b.dilation_h * b.padded_w, taps_row = b.S * b.kpad;
  const float* x_rows[RB];
  float* acc_rows[RB];
  for (int q = 0; q < RB; ++q) {
    const int64_t c = (first + q) / b.R, r = (first + q) % b.R;
    x_rows[q] = b.x + c * b.plane + r * x_tap_row;
    acc_rows[q] = b.partial + (c * b.R + r) * taps_row;
  }
  constexpr int U = KvecTileShape<Vec, NV, SB>::kPositions;
  if constexpr (U > 1) {
    if (unit_steps) return kvec_tile<Vec, NV, RB, SB, U>(b, x_rows, acc_rows);
  }
  kvec_tile<Vec, NV, RB, SB, 1>(b, x_rows, acc_rows);
}

// Every (c, r) of the band in as few tiles as the shape allows, of even
// sizes: 3 channels x 3 rows in 4 + 4 + 1 pairs ran the last one at the
// FMA latency (3 sums in flight), in 3 + 3 + 3 every tile keeps 9. Not
// inlined into the image loop: there it ran 5-9% slower (64x32x14x14 k64
// 5x5).
template <class Vec, int NV, int SB>
__attribute__((noinline)) void kvec_band(const KvecBand& b) {
  constexpr int RB = KvecTileShape<Vec, NV, SB>::kRows;
  const bool unit_steps = b.stride_w == 1 && b.dilation_w == 1;
  const int64_t pairs = b.channels * b.R, tiles = (pairs + RB - 1) / RB;
  for (int64_t t = 0; t < tiles; ++t) {
    const int64_t first = pairs * t / tiles, size = pairs * (t + 1) / tiles - first;
    // Inlined: as functions of their own, the tiles stored their sums to the
    // stack at every position (AVX2, 2 vectors x 3 taps: 20% slower).
    with_tile_size<RB>(static_cast<int>(size), [&](auto rb) __attribute__((always_inline)) {
      kvec_pairs<Vec, NV, SB, decltype(rb)::value>(b, first, unit_steps);
    });
  }
}

// The floats of a band's packed dy that one channel block reads (32 KiB):
// they stay in L1 (48 KiB on Zen 5) across the band's tiles. Against 16 KiB,
// which gave 56-wide rows one-row bands and so tiles of 56 positions between
// loads and stores of their partial sums, A/B dw: VGG conv3_1 1.08, AlexNet
// conv3 1.04, mnist_c2_pad2 1.04, ResNet 3x3 1.03, VGG 128 channels 0.99;
// 64 KiB lost 3-5% on the last two.
constexpr int64_t kKvecBandFloats = 8192;

// dst[pos][k] = dy_group[k][pos] for k < kg, 0 for kg <= k < kpad: one
// vector-width square of positions x channels at a time, transposed in
// registers. dst needs room for P rounded up to whole vectors of positions.
template <class Vec>
void pack_dy_channels_last(const float* dy_group, int64_t kg, int64_t P, int64_t kpad, float* dst) {
  using V = typename Vec::F;
  constexpr int L = static_cast<int>(Vec::kWidth);
  for (int64_t pos0 = 0; pos0 < P; pos0 += L) {
    const int64_t m = std::min<int64_t>(L, P - pos0);
    for (int64_t k0 = 0; k0 < kpad; k0 += L) {
      V rows[L];
      for (int j = 0; j < L; ++j) {
        const float* src = dy_group + (k0 + j) * P + pos0;
        rows[j] = k0 + j >= kg ? Vec::zero() : m == L ? Vec::load(src) : Vec::load_partial(src, m);
      }
      Vec::store_transposed(rows, L, dst + pos0 * kpad + k0, kpad, L);
    }
  }
}

// The padded inputs of a group of images that kvec runs each channel block
// over in turn, in floats (512 KiB: a quarter of L2).
constexpr int64_t kKvecGroupInputFloats = int64_t{1} << 17;

// All slots' partial sums together, in floats (64 MiB).
constexpr int64_t kKvecPartialsBudgetFloats = int64_t{16} << 20;

template <class Vec, int NVMax, int SBMax>
void conv2d_weight_grad_kvec(const Conv2dParams& p, const float* dy, const float* x, float* dw) {
  constexpr int64_t L = Vec::kWidth;
  const int64_t G = p.groups, cg = p.group_in_channels(), kg = p.group_out_channels();
  const int64_t R = p.kernel_h, S = p.kernel_w, Ho = p.out_h, Wo = p.out_w, P = p.out_plane();
  const int64_t H = p.in_h, W = p.in_w;
  const int64_t kpad = (kg + L - 1) / L * L;
  const int64_t Wp = W + p.pad_left + p.pad_right, Hp = H + p.pad_top + p.pad_bottom;
  const int64_t plane = Hp * Wp;
  const int64_t partial_floats = G * cg * R * S * kpad;
  const int64_t threads = num_threads();
  // One slot per thread while there are images for them, within a bound on
  // all slots' partial sums together; threads beyond the slots split the
  // input channels instead. Layers with kMinPartChannels channels per part to
  // spare get about kPartsPerThread parts per thread: with one item per
  // thread, a thread slowed by a neighbour on its core left the other waiting
  // (AlexNet conv3, 2 threads: 7% of the time in sched_yield). A/B, dw, 15
  // rounds: AlexNet conv3 1.02-1.04, conv4 1.05, ResNet layer3 and VGG 128
  // channels 1.00. Each part packs dy again: LeNet c2 (6 channels, not
  // split) lost 14% when it was.
  constexpr int64_t kPartsPerThread = 4, kMinPartChannels = 32;
  const int64_t slot_bound = std::max<int64_t>(1, kKvecPartialsBudgetFloats / partial_floats);
  const int64_t shares = deterministic() ? kDeterministicImageShares : threads;
  const int64_t slots = std::clamp<int64_t>(std::min(shares, p.batch), 1, slot_bound);
  const int64_t balancing_parts =
      threads == 1 ? 1 : std::min(cg / kMinPartChannels, (kPartsPerThread * threads + slots - 1) / slots);
  const int64_t channel_parts = std::max(std::min(cg, (threads + slots - 1) / slots), balancing_parts);
  // A tile reads one channel block's slice of the band: size the band by that.
  const int64_t slice = std::min<int64_t>(kpad, NVMax * L);
  const int64_t band = std::clamp<int64_t>(kKvecBandFloats / std::max<int64_t>(Wo * slice, 1), 1, Ho);
  const int64_t s_blocks = (S + SBMax - 1) / SBMax;
  const int64_t vectors = kpad / L, k_blocks = (vectors + NVMax - 1) / NVMax;
  float* partials = thread_workspace(WorkspaceSlot::Scratch1,
                                     static_cast<size_t>(checked_mul(slots, partial_floats, "conv2d weight partial sums")));
  const int64_t work = work_per_item(slots * channel_parts, {p.batch / slots + 1, kg, cg / channel_parts + 1, R * S, P});
  parallel_for(slots * channel_parts, work, [&](int64_t item_begin, int64_t item_end) {
    for (int64_t item = item_begin; item < item_end; ++item) {
      const int64_t slot = item / channel_parts, part = item % channel_parts;
      const int64_t c0 = cg * part / channel_parts, c1 = cg * (part + 1) / channel_parts;
      float* partial = partials + slot * partial_floats;
      for (int64_t g = 0; g < G; ++g) {
        std::fill(partial + (g * cg + c0) * R * S * kpad, partial + (g * cg + c1) * R * S * kpad, 0.0f);
      }
      // Images in groups whose padded inputs (about kKvecGroupInputFloats)
      // stay in L2, and channel blocks outside a group's images: the partial
      // sums one block touches (cg*R*S*NV vectors) stay in L2 over the
      // group's images, where all of them might not over one image's (128 ->
      // 256 channels 3x3: 1.2 MB). Each image packs only the block's dy.
      const int64_t n_begin = p.batch * slot / slots, n_end = p.batch * (slot + 1) / slots;
      const int64_t input_floats = (c1 - c0) * plane;
      const int64_t group_images =
          k_blocks == 1 ? 1 : std::clamp<int64_t>(kKvecGroupInputFloats / input_floats, 1, n_end - n_begin);
      float* xp = thread_workspace(WorkspaceSlot::Im2col, static_cast<size_t>(group_images * input_floats));
      float* dyp = thread_workspace(WorkspaceSlot::Scratch0, static_cast<size_t>((P + L) * kpad));
      std::fill(xp, xp + group_images * input_floats, 0.0f);  // the padding; copy_into_padded writes the rest
      for (int64_t g = 0; g < G; ++g) {
        for (int64_t n0 = n_begin; n0 < n_end; n0 += group_images) {
          const int64_t n1 = std::min(n_end, n0 + group_images);
          for (int64_t n = n0; n < n1; ++n) {
            copy_into_padded(p, x + (n * p.in_channels + g * cg + c0) * H * W, c1 - c0, xp + (n - n0) * input_floats,
                             plane, Wp);
          }
          for (int64_t kb = 0; kb < k_blocks; ++kb) {
            const int64_t v0 = vectors * kb / k_blocks, v1 = vectors * (kb + 1) / k_blocks;
            const int64_t k_lo = v0 * L, k_step = (v1 - v0) * L;
            for (int64_t n = n0; n < n1; ++n) {
              pack_dy_channels_last<Vec>(dy + (n * p.out_channels + g * kg + k_lo) * P, std::min(kg, v1 * L) - k_lo,
                                         P, k_step, dyp);
              for (int64_t oh0 = 0; oh0 < Ho; oh0 += band) {
                for (int64_t sb = 0; sb < s_blocks; ++sb) {
                  const int64_t s0 = S * sb / s_blocks, s1 = S * (sb + 1) / s_blocks;
                  const KvecBand b{partial + (g * cg + c0) * R * S * kpad + s0 * kpad + k_lo,
                                   dyp + oh0 * Wo * k_step,
                                   xp + (n - n0) * input_floats + oh0 * p.stride_h * Wp + s0 * p.dilation_w,
                                   c1 - c0, R, S, kpad, plane, Wp, k_step,
                                   std::min(band, Ho - oh0), Wo,
                                   p.stride_h, p.stride_w, p.dilation_h, p.dilation_w};
                  with_tile_size<NVMax>(static_cast<int>(v1 - v0), [&](auto nv) {
                    with_tile_size<SBMax>(static_cast<int>(s1 - s0), [&](auto sb) {
                      kvec_band<Vec, decltype(nv)::value, decltype(sb)::value>(b);
                    });
                  });
                }
              }
            }
          }
        }
      }
    }
  });
  // dw[g*kg + k][c][r][s] = the partials' [g][c][r][s][k], added in slot
  // order into slot 0's, then transposed a vector-width square at a time.
  const int64_t taps = R * S;
  parallel_for(G * cg, work_per_item(G * cg, {slots, kpad, taps}), [&](int64_t begin, int64_t end) {
    for (int64_t gc = begin; gc < end; ++gc) {
      const int64_t g = gc / cg, c = gc % cg;
      float* sum = partials + gc * taps * kpad;
      for (int64_t i = 0; i < taps * kpad; i += L) {
        auto v = Vec::load(sum + i);
        for (int64_t slot = 1; slot < slots; ++slot) v = Vec::add(v, Vec::load(sum + slot * partial_floats + i));
        Vec::store(sum + i, v);
      }
      const int64_t dw_stride = cg * taps;  // between output channels
      float* dwc = dw + (g * kg * cg + c) * taps;
      for (int64_t k0 = 0; k0 < kg; k0 += L) {
        if (kg - k0 < L) {
          for (int64_t k = k0; k < kg; ++k)
            for (int64_t t = 0; t < taps; ++t) dwc[k * dw_stride + t] = sum[t * kpad + k];
          break;
        }
        for (int64_t t0 = 0; t0 < taps; t0 += L) {
          const int n = static_cast<int>(std::min<int64_t>(L, taps - t0));
          typename Vec::F rows[L];
          for (int j = 0; j < n; ++j) rows[j] = Vec::load(sum + (t0 + j) * kpad + k0);
          Vec::store_transposed(rows, n, dwc + k0 * dw_stride + t0, dw_stride, n);
        }
      }
    }
  });
}

}  // namespace
}  // namespace cnnkit
