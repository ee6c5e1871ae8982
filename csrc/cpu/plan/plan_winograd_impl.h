// The plan's Winograd convolutions F(2x2, 3x3) and F(2x2, 5x5) (plan_direct.h's
// third order), included by one file per ISA after plan_direct_impl.h.
//
// Each 2x2 block of outputs (a tile) comes from an A x A block of the padded
// input d (A = 4 for a 3x3 kernel, 6 for a 5x5 one): y = A^T [(G g G^T) .
// (B^T d B)] A, A^2 products per input channel where the direct convolution
// takes 4 r^2: 16 against 36 for 3x3, 36 against 100 for 5x5 (Lavin and
// Gray, "Fast Algorithms for Convolutional Neural Networks", 2016; F(2, 5)
// interpolates at 0, 1, -1, 2, -2 and infinity, as their F(4, 3) does). The
// weights' transforms U = G g G^T are packed once
// (PlanDirectConv::winograd_packed); the kernel transforms the input
// V = B^T d B with the input channels across the lanes, multiplies U and V
// point by point as A^2 small GEMMs reducing over the input channels (output
// channels across the lanes, the tiles broadcast), and transforms the
// products back, adding the bias, a residual and a ReLU in registers as
// plan_direct_tile does (store_tile).
//
// Where F(2x2, 5x5) does not run (plan_winograd_tile: fewer than 8 input
// channels, whose few terms its larger transforms would leave outside the
// tolerance rule) a 5-wide (or 5-tall) kernel runs as the 3x3 parts of its
// 6-wide zero extension, their products summed before the output's
// transform: the reduction then runs over parts and input channels, 64
// products per 2x2 outputs and input channel.
//
// Threads take (image, band of tile rows, part of the output channel groups)
// items: a band is transformed once per item (the parts split the output
// channels only where an image has too few bands to go round); its tiles go
// through the products in register tiles of NT whatever the rows' width.
// The input is read in place where it is blocked and its border covers the
// padding and the last tile's overhang (a tile past an odd output size reads
// one row or column beyond it, a 5-wide kernel's parts one more); otherwise
// each item first copies the padded input rows its band reads, blocked, into
// a per-thread buffer.
//
// Every transform's matrices are scaled to small integers: F(2x2, 3x3)'s
// weight transforms are packed times 4 (G's halves make quarters) and the
// outputs scaled back by 1/4; F(2x2, 5x5)'s G rows times 4, -6, -6, 24, 24
// and 1, its A^T columns times 6, -4, -4, 1, 1 and 24, the outputs scaled
// back by 1/576 (exact for every integer multiple of 576 below 2^24). Every
// step on small integers is then an integer sum, so integer fills give the
// oracle's bits as long as the sums stay below 2^24: before the scale, up to
// 36 times the magnitude of the direct sums for 3x3, and up to 1384^2 times
// C max|w| max|x| for 5x5. With random data the error stays within the
// tolerance rule.
#pragma once

namespace cnnkit {
namespace {

// V = B^T d B of one A x A block of input vectors (d[i][j] at
// x + i * row + j * L), its A^2 points stored `point` floats apart.
template <class Vec, int A>
__attribute__((always_inline)) inline void winograd_input_tile(const float* x, int64_t row, float* v,
                                                               int64_t point) {
  using V = typename Vec::F;
  constexpr int L = Vec::kWidth;
  // B^T applied to A vectors d[0..A): F(2, 3)'s rows d0 - d2, d1 + d2,
  // d2 - d1, d1 - d3; F(2, 5)'s 4 d0 - 5 d2 + d4, (d4 - 4 d2) +- (d3 - 4 d1),
  // (d4 - d2) +- 2 (d3 - d1), 4 d1 - 5 d3 + d5.
  auto transform = [](const V (&d)[A], V (&t)[A]) {
    if constexpr (A == 4) {
      t[0] = Vec::sub(d[0], d[2]);
      t[1] = Vec::add(d[1], d[2]);
      t[2] = Vec::sub(d[2], d[1]);
      t[3] = Vec::sub(d[1], d[3]);
    } else {
      const V four = Vec::set1(4.0f), five = Vec::set1(5.0f), two = Vec::set1(2.0f);
      const V a = Vec::fnma(four, d[2], d[4]), b = Vec::fnma(four, d[1], d[3]);
      const V c = Vec::sub(d[4], d[2]), e = Vec::mul(two, Vec::sub(d[3], d[1]));
      t[0] = Vec::fma(four, d[0], Vec::fnma(five, d[2], d[4]));
      t[1] = Vec::add(a, b);
      t[2] = Vec::sub(a, b);
      t[3] = Vec::add(c, e);
      t[4] = Vec::sub(c, e);
      t[5] = Vec::fma(four, d[1], Vec::fnma(five, d[3], d[5]));
    }
  };
  V w[A][A];
  for (int j = 0; j < A; ++j) {
    V d[A], t[A];
    for (int i = 0; i < A; ++i) d[i] = Vec::load(x + i * row + j * L);
    transform(d, t);
    for (int i = 0; i < A; ++i) w[i][j] = t[i];
  }
  for (int i = 0; i < A; ++i) {
    V t[A];
    transform(w[i], t);
    for (int j = 0; j < A; ++j) Vec::store(v + (A * i + j) * point, t[j]);
  }
}

// One point's products for NT tiles and NV blocks of output channels, over
// the kernel's S parts and C input channels: m[t * MV + b] = sum over s, c of
// v[t * tile + s * part + c] * u[b * block + (s * C + c) * L] (m's entries
// L floats each; MV, at least NV, the blocks of a whole group).
template <class Vec, int NT, int NV, int MV>
__attribute__((always_inline)) inline void winograd_point(const float* v, int64_t tile, int64_t part, const float* u,
                                                          int64_t block, int64_t S, int64_t C, float* m) {
  using V = typename Vec::F;
  constexpr int L = Vec::kWidth;
  V acc[NT][NV];
  for (int t = 0; t < NT; ++t)
    for (int b = 0; b < NV; ++b) acc[t][b] = Vec::zero();
  for (int64_t s = 0; s < S; ++s, v += part, u += C * L) {
    for (int64_t c = 0; c < C; ++c) {
      V uc[NV];
      for (int b = 0; b < NV; ++b) uc[b] = Vec::load(u + b * block + c * L);
      for (int t = 0; t < NT; ++t) {
        const V x = Vec::broadcast(v + t * tile + c);
        for (int b = 0; b < NV; ++b) acc[t][b] = Vec::fma(uc[b], x, acc[t][b]);
      }
    }
  }
  for (int t = 0; t < NT; ++t)
    for (int b = 0; b < NV; ++b) Vec::store(m + (t * MV + b) * L, acc[t][b]);
}

// The scale of F(2x2, 3x3)'s (A = 4) and F(2x2, 5x5)'s (A = 6) transforms.
template <int A>
constexpr float kWinogradScale = A == 4 ? 4.0f : 576.0f;

// The 2x2 outputs y = (A^T m A + bias kWinogradScale) / kWinogradScale of
// one tile from its A^2 points (m[A i + j] at m + (A i + j) * point, of the
// scaled weights' transforms) and the scaled bias, as o[2 r + s] (L floats
// each). The bias goes in before the scale, which a compiler cannot contract
// into one rounding of an FMA: on integers both steps are then exact (1/576
// is exact on every integer multiple of 576 below 2^24). Not inlined: one
// copy per ISA and tile side, called once per tile, where a copy unrolled
// into each register tile's shape cost the AVX-512 file about half a minute
// of its compile time, for no speed that could be measured.
template <class Vec, int A>
__attribute__((noinline)) void winograd_output_tile(const float* m, int64_t point, typename Vec::F scaled_bias,
                                                    float* o) {
  using V = typename Vec::F;
  constexpr int L = Vec::kWidth;
  // The two rows of A^T (scaled) applied to A values: the sum and the difference.
  auto transform = [](const V* v, int step, V& sum, V& diff) {
    if constexpr (A == 4) {
      sum = Vec::add(Vec::add(v[0], v[step]), v[2 * step]);
      diff = Vec::sub(Vec::sub(v[step], v[2 * step]), v[3 * step]);
    } else {
      // 6 v0 - 4 (v1 + v2) + (v3 + v4), and -4 (v1 - v2) + 2 (v3 - v4) + 24 v5.
      const V a = Vec::add(v[step], v[2 * step]), b = Vec::sub(v[step], v[2 * step]);
      const V c = Vec::add(v[3 * step], v[4 * step]), e = Vec::sub(v[3 * step], v[4 * step]);
      const V four = Vec::set1(4.0f);
      sum = Vec::fma(Vec::set1(6.0f), v[0], Vec::fnma(four, a, c));
      diff = Vec::fma(Vec::set1(24.0f), v[5 * step], Vec::fnma(four, b, Vec::add(e, e)));
    }
  };
  const V scale = Vec::set1(1.0f / kWinogradScale<A>);
  auto put = [&](float* dst, V sum) { Vec::store(dst, Vec::mul(Vec::add(sum, scaled_bias), scale)); };
  V mt[A * A], s[A], d[A], y0, y1;
  for (int q = 0; q < A * A; ++q) mt[q] = Vec::load(m + q * point);
  for (int j = 0; j < A; ++j) transform(mt + j, A, s[j], d[j]);
  transform(s, 1, y0, y1);
  put(o, y0);
  put(o + L, y1);
  transform(d, 1, y0, y1);
  put(o + 2 * L, y0);
  put(o + 3 * L, y1);
}

// The outputs of NT tiles of one tile row (the last group of a row may be
// narrower) and nv blocks of output channels from their products (m: point
// p's at m + p * point, tile t's block b at (t * mv + b) * L from there),
// stored as ROWS rows (1 for the last tile row of an odd height) of NB
// positions (one fewer than 2 NT past an odd width).
template <class Vec, int A, int NT, int ROWS, int NB>
__attribute__((always_inline)) inline void winograd_outputs(const PlanTileArgs& a, const float* m, int64_t point,
                                                            int64_t mv, int64_t nv, const float* bias, float* y,
                                                            const float* r) {
  using V = typename Vec::F;
  constexpr int L = Vec::kWidth;
  for (int64_t b = 0; b < nv; ++b) {
    alignas(64) float o[NT][4 * L];
    const V scaled_bias = Vec::mul(Vec::load(bias + b * L), Vec::set1(kWinogradScale<A>));
    for (int t = 0; t < NT; ++t) winograd_output_tile<Vec, A>(m + (t * mv + b) * L, point, scaled_bias, o[t]);
    V out[ROWS][NB];
    for (int q = 0; q < ROWS; ++q)
      for (int j = 0; j < NB; ++j) out[q][j] = Vec::load(o[j / 2] + (2 * q + j % 2) * L);
    store_tile<Vec, NB, ROWS>(a, out, y + b * a.out_block, r != nullptr ? r + b * a.residual_block : nullptr,
                              std::min<int64_t>(a.kb - b * L, L));
  }
}

// Copies padded input rows [r0, r0 + rows) of image n (columns [0, wp) of
// the padded plane), channels in blocks of L, zeros where the padding is (and
// past it), into xp: [block][rows][wp][L].
template <class Vec>
void winograd_stage_rows(const Conv2dParams& p, const PlanValueView& in, const float* xn, int64_t r0, int64_t rows,
                         int64_t wp, float* xp) {
  constexpr int64_t L = Vec::kWidth;
  const int64_t C = p.in_channels, blocks = (C + L - 1) / L;
  for (int64_t cb = 0; cb < blocks; ++cb) {
    const int64_t lanes = std::min(L, C - cb * L);
    for (int64_t q = 0; q < rows; ++q) {
      float* dst = xp + (cb * rows + q) * wp * L;
      const int64_t i = r0 + q - p.pad_top;
      if (i < 0 || i >= p.in_h) {
        zero_row<Vec>(dst, wp * L);
        continue;
      }
      for (int64_t col = 0; col < wp; ++col) {
        const int64_t j = col - p.pad_left;
        float* d = dst + col * L;
        if (j < 0 || j >= p.in_w) {
          Vec::store(d, Vec::zero());
        } else if (in.blocked) {
          Vec::store(d, Vec::load(xn + cb * in.plane + in.origin + i * in.row + j * L));
        } else {
          for (int64_t l = 0; l < L; ++l) d[l] = l < lanes ? xn[(cb * L + l) * in.plane + in.origin + i * in.row + j] : 0.0f;
        }
      }
    }
  }
}

// NT tiles and NV blocks of output channels per register tile; input tiles
// of A x A (plan_winograd_tile).
template <class Vec, int NT, int NV, int A>
void plan_winograd_run(const Conv2dParams& p, const PlanDirectConv& c, const float* x, const PlanDirectEpilogue& e,
                       float* y, const PlanDirectLayout& layout) {
  constexpr int64_t L = Vec::kWidth;
  const int64_t C = p.in_channels, K = p.out_channels, Ho = p.out_h, Wo = p.out_w;
  const int64_t tile_rows = (Ho + 1) / 2, tiles = (Wo + 1) / 2, cpad = (C + L - 1) / L * L;
  // Items take bands of tile rows, enough tiles for two whole register tiles
  // where the rows are short (an 8-wide plane's 4 tiles a row: bands of 2
  // rows, 8 tiles as 4 + 4, where single rows would run 4-tile tiles), the
  // rows split evenly between the bands (band b starts at tile row
  // tile_rows b / bands): bands of 3 and 1 rows had one of two threads wait
  // for the other at batch 1, no faster than one thread alone.
  const int64_t wanted_rows = std::min(tile_rows, (2 * NT + tiles - 1) / tiles);
  const int64_t bands = (tile_rows + wanted_rows - 1) / wanted_rows;
  const int64_t band_rows = (tile_rows + bands - 1) / bands, band_tiles = band_rows * tiles;  // the most a band has
  // The kernel's R x R parts (one where R = 5, plan_winograd_fits): part
  // (i, j) starts at kernel row R i, column R j.
  constexpr int64_t R = A - 1, P = A * A;
  const int64_t parts_h = (p.kernel_h + R - 1) / R, parts_w = (p.kernel_w + R - 1) / R, S = parts_h * parts_w;
  // The padded input rows and columns a band's tiles read; beyond the padded
  // input by up to one tile's overhang and the parts' zero extension.
  const int64_t staged_rows = 2 * (band_rows - 1) + R * (parts_h - 1) + A;
  const int64_t wp = 2 * (tiles - 1) + R * (parts_w - 1) + A;
  const int64_t over_h = 2 * tile_rows - Ho + R * parts_h - p.kernel_h;
  const int64_t over_w = 2 * tiles - Wo + R * parts_w - p.kernel_w;
  const PlanValueView in(layout.in, C, p.in_h, p.in_w, L);
  const PlanValueView out(layout.out, K, Ho, Wo, L);
  const PlanValueView res(layout.residual, K, Ho, Wo, L);
  const int64_t bi = layout.in.border, bo = layout.out.border;
  // In place: a blocked input whose border holds every padded row and column the tiles read.
  const bool in_place =
      layout.in.blocked && bi >= std::max({p.pad_top, p.pad_left, p.pad_bottom + over_h, p.pad_right + over_w});
  const int64_t groups = (c.blocks + NV - 1) / NV;
  // Parts of the channel groups: enough items for the threads to share.
  const int64_t parts = std::clamp<int64_t>((16 + p.batch * bands - 1) / (p.batch * bands), 1, groups);
  const int64_t items = p.batch * bands * parts;
  // vbuf: point q's transform of band tile i, part s, channel c at q * point + i * tile + s * cpad + c.
  const int64_t tile = S * cpad, point = band_tiles * tile, block = P * S * C * L;
  const bool relu = e.act != nullptr && e.act->kind == Activation::Relu;
  // store_tile's arguments (the input's pitches, plan_direct_tile's, unused).
  PlanTileArgs args{C,         3, 0,       0,         0,         out.row, out.plane, 0, res.row, res.plane,
                    out.blocked, res.blocked, relu, block * NV, out.blocked ? out.plane : L * out.plane,
                    res.blocked ? res.plane : L * res.plane, Wo};
  parallel_for(items, work_per_item(items, {P * band_tiles, S * C, K / parts + 1}), [&](int64_t begin, int64_t end) {
    float* vbuf = thread_workspace(WorkspaceSlot::Scratch1, static_cast<size_t>(P * point));
    float* mbuf = thread_workspace(WorkspaceSlot::Scratch2, static_cast<size_t>(P * band_tiles * NV * L));
    float* xp =
        in_place ? nullptr : thread_workspace(WorkspaceSlot::Scratch0, static_cast<size_t>(cpad * staged_rows * wp));
    int64_t held = -1;  // the (image, band) whose transform vbuf holds
    PlanTileArgs t = args;
    for (int64_t item = begin; item < end; ++item) {
      const int64_t part = item % parts, band_of_image = item / parts;
      const int64_t n = band_of_image / bands, band = band_of_image % bands;
      const int64_t ty0 = tile_rows * band / bands, rows_here = tile_rows * (band + 1) / bands - ty0;
      const int64_t tiles_here = rows_here * tiles;
      const int64_t oh0 = 2 * ty0, out_rows = std::min(2 * rows_here, Ho - oh0);
      if (band_of_image != held) {
        const float* src;
        int64_t row, plane;
        if (in_place) {
          src = x + in.at(n, 0) + in.origin + (oh0 - p.pad_top) * in.row - p.pad_left * L;
          row = in.row;
          plane = in.plane;
        } else {
          winograd_stage_rows<Vec>(p, in, x + in.at(n, 0), oh0, staged_rows, wp, xp);
          src = xp;
          row = wp * L;
          plane = staged_rows * wp * L;
        }
        for (int64_t r = 0; r < rows_here; ++r) {
          for (int64_t s = 0; s < S; ++s) {
            const float* part_src = src + (2 * r + R * (s / parts_w)) * row + R * (s % parts_w) * L;
            for (int64_t cb = 0; cb < cpad / L; ++cb) {
              for (int64_t tx = 0; tx < tiles; ++tx) {
                winograd_input_tile<Vec, A>(part_src + cb * plane + 2 * tx * L, row,
                                         vbuf + (r * tiles + tx) * tile + s * cpad + cb * L, point);
              }
            }
          }
        }
        held = band_of_image;
      }
      const int64_t g0 = groups * part / parts, g1 = groups * (part + 1) / parts;
      for (int64_t g = g0; g < g1; ++g) {
        const int64_t k0 = g * NV * L, group_blocks = std::min<int64_t>(NV, c.blocks - g * NV);
        t.kb = std::min(K - k0, NV * L);
        const float* u = c.winograd_packed.data() + g * NV * block;
        const float* bias = c.packed.data() + c.weight_floats + k0;
        // Point by point over the whole band: a point's transformed weights
        // (S C NV L floats) stay in L1 across the band's tiles, taken in
        // register tiles of NT whatever the rows' width.
        for (int64_t q = 0; q < P; ++q) {
          for_even_groups<NT>(tiles_here, [&](int64_t i, int64_t nt) {
            with_tile_size<NV>(static_cast<int>(group_blocks), [&](auto nv) {
              with_tile_size<NT>(static_cast<int>(nt), [&](auto nt_c) {
                constexpr int kNv = decltype(nv)::value, kNt = decltype(nt_c)::value;
                winograd_point<Vec, kNt, kNv, NV>(vbuf + q * point + i * tile, tile, cpad, u + q * S * C * L, block, S,
                                              C, mbuf + (q * band_tiles + i) * NV * L);
              });
            });
          });
        }
        // The outputs row by row, in the same even groups per row.
        for (int64_t r = 0; r < rows_here; ++r) {
          const int64_t oh = oh0 + 2 * r, rows = std::min<int64_t>(2, Ho - oh);
          float* yb = y + out.at(n, k0) + out.origin + oh * out.row;
          const float* rb =
              e.residual != nullptr ? e.residual + res.at(n, k0) + res.origin + oh * res.row : nullptr;
          for_even_groups<NT>(tiles, [&](int64_t tx, int64_t nt) {
            const int64_t ow0 = 2 * tx, cols = std::min<int64_t>(2 * nt, Wo - ow0);
            t.row_left = Wo - ow0;
            float* yt = yb + ow0 * out.column;
            const float* rt = rb != nullptr ? rb + ow0 * res.column : nullptr;
            const float* mt = mbuf + (r * tiles + tx) * NV * L;
            with_tile_size<NT>(static_cast<int>(nt), [&](auto nt_c) {
              constexpr int kNt = decltype(nt_c)::value;
              auto run = [&](auto rows_c, auto cols_c) {
                winograd_outputs<Vec, A, kNt, decltype(rows_c)::value, decltype(cols_c)::value>(
                    t, mt, band_tiles * NV * L, NV, group_blocks, bias, yt, rt);
              };
              using Two = std::integral_constant<int, 2>;
              using One = std::integral_constant<int, 1>;
              using Full = std::integral_constant<int, 2 * kNt>;
              using Odd = std::integral_constant<int, 2 * kNt - 1>;
              if (rows == 2) {
                cols == 2 * kNt ? run(Two{}, Full{}) : run(Two{}, Odd{});
              } else {
                cols == 2 * kNt ? run(One{}, Full{}) : run(One{}, Odd{});
              }
            });
          });
        }
        float* y0 = y + out.at(n, k0);
        finish_rows<Vec>(e.act, out, y0, y0 + out.origin + oh0 * out.row, t.kb, bo, oh0, out_rows, Ho, Wo);
      }
    }
  });
}

}  // namespace
}  // namespace cnnkit
