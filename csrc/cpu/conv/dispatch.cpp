// conv2d: the ordered lists of implementations and the choice of algorithm.
//
// algo="auto" resolves per call:
//  - stride 1 (not a plain 1x1) with AVX2 or wider: direct, which runs the
//    direct_rows kernels. Measured on the 2-core Zen 5 dev machine, one
//    thread, torch time / cnnkit time, median of 9 interleaved rounds, with
//    the blocked sgemm of this branch (direct_rows | im2col):
//      LeNet c1 64x1x32x32 k6 5x5        2.78 | 0.65
//      LeNet c2 64x6x14x14 k16 5x5       0.81 | 0.19
//      64x32x14x14 k64 5x5 pad 2         1.20 | 0.67
//      8x3x224x224 k64 3x3 pad 1         7.50 | 4.69
//      8x16x56x56 k16 3x3 pad 1          1.34 | 0.56
//      8x64x56x56 k64 3x3 pad 1          1.11 | 0.75
//      8x128x28x28 k128 3x3 pad 1        0.81 | 0.80
//      8x256x14x14 k256 3x3 pad 1        0.87 | 0.66
//    The register tile reuses every load across 6 output channels and
//    writes no column matrix, so it wins even at 256 channels.
//  - direct_cvec (output channels across the lanes) instead, forward only,
//    for strided layers (not 1x1; with AVX2 only kernels of >= 25 taps:
//    cvec_beats_gemm) and for stride-1 layers with >= 16 output channels
//    and output rows of <= 16 positions or a kernel direct_walk takes
//    (prefers_cvec). Measured after the
//    gemmperf merge, one thread, torch/cnnkit, median of 7 interleaved rounds
//    (im2col | direct_cvec | direct_rows where it applies):
//      LeNet c2 64x6x14x14 k16 5x5       0.23 | 0.79-0.93 | 0.49-0.85
//      64x32x14x14 k64 5x5 pad 2         0.69 | 0.85-1.23 | 0.77
//      8x128x28x28 k256 3x3 stride 2     1.01 | 1.29
//      8x3x227x227 k96 11x11 stride 4    0.64 | 1.08
//    (ranges: separate runs on the shared machine). The backward of strided
//    layers stays im2col; stride-1 backward computes dw with the direct_rows
//    weight-gradient kernel (LeNet c2 forward+backward 0.57 -> 1.65).
//    Among those, kernels 3, 5 or 7 wide with horizontal stride and dilation 1
//    run direct_walk, which walks the input row so that one broadcast feeds
//    kernel-width FMAs. Measured on this branch, torch/cnnkit, median of 11
//    interleaved rounds, each timed block after 10 ms of untimed calls
//    (direct_walk | direct_cvec before it; 1 thread, 2 threads):
//      LeNet c2 64x6x14x14 k16 5x5       1.22 | 0.88     1.36 | 0.92
//      64x32x14x14 k64 5x5 pad 2         1.59 | 1.38     1.79 | 1.72
//    and capped at AVX2, cnnkit GFLOP/s (walk | cvec): LeNet c2 97 | 70,
//    64x32x14x14 k64 90 | 75, 32x64x7x7 k64 3x3 88 | 65.
//  - backward pieces, 2 threads, torch/cnnkit, median of 7 interleaved
//    rounds (input grad | weight grad; direct_rows | im2col):
//      64x32x14x14 k64 5x5 pad 2     0.83 | 0.54     0.62 | 0.46
//      8x128x28x28 k128 3x3 pad 1    0.92 | 0.91     0.83 | 0.70
//      8x128x28x28 k256 3x3 s2       im2col 0.77 (direct 0.02); im2col 1.12
//    so the stride-1 backward stays direct_rows and the strided one im2col.
//    Its input gradient now runs the direct kernel that the forward picks
//    for the transposed shapes (direct_walk for the first: 0.83 -> 0.93),
//    and the weight-gradient tile keeps its sums in registers across an
//    L1-sized block of images (first shape 0.62 -> 0.67). Small planes with
//    many channels run im2col instead (gemm_beats_rows_backward).
//  - backward, first, with AVX-512 on small planes with a weight gradient of
//    2M floats or more (wants_image_blocks): image_blocks, dw as one GEMM
//    over a block of images' columns, dx as for kvec (only algo="auto" picks
//    it; "direct" keeps kvec).
//  - backward, ahead of all that, where wants_kvec holds (a full vector of
//    output channels per group, not 1x1; with AVX2 not stride-1 kernels at
//    most 3 wide on small planes with 2M+ weight-gradient floats per group):
//    kvec, whose weight gradient vectorises over output channels with dy
//    packed channels-last (weight_grad_kvec_impl.h), any stride; its dx is
//    the direct transposed forward for stride 1, im2col otherwise.
//  - 1x1, stride 1, no padding: im2col, whose columns are the input itself:
//    one GEMM per image (8x256x14x14 k256: 1.85 against direct_rows' 1.67);
//    with AVX-512 and at most 64 input channels, direct_rows forward
//    (rows_beat_pointwise_gemm).
//  - otherwise (strided, or no SIMD kernel): im2col when the GEMM it feeds is
//    big enough to pay for writing the column matrix, a reduction
//    (C/g*kh*kw) of at least 32 and at least 4 output channels per group;
//    direct loops for tiny-channel layers.
//  - one input channel per group: the depthwise kernels, forward and
//    backward, at any stride (depthwise_pays: with several output channels
//    per input channel, direct_rows where it runs).
//
// Each list runs the first entry that accepts the call: kvec takes direct
// backward calls that wants_kvec accepts, depthwise the depthwise direct calls
// that depthwise_pays accepts, direct_rows takes
// stride-1 direct calls within its size bounds, im2col takes im2col calls
// whose single column fits the workspace bound, direct takes direct calls
// and the im2col calls that did not fit, the reference takes the rest.
#include <algorithm>
#include <cstring>
#include <string>
#include <utility>

#include "cnnkit/conv.h"
#include "cnnkit/errors.h"
#include "core/registry.h"
#include "cpu/conv/kernels.h"

namespace cnnkit {
namespace {

struct ConvCall {
  const Conv2dParams* p;
  ConvAlgo algo;  // resolved: never Auto
  bool channel_vectors;  // a direct forward prefers direct_cvec to direct_rows
  bool image_blocks = false;  // an auto backward chose image_blocks (wants_image_blocks)
};

// direct_cvec fills its vectors with output channels: it needs a few of them
// per group. It wins for strided layers (the extended rows only do stride 1)
// and for stride-1 layers with short output rows, where direct_rows computes
// more dropped columns than useful ones. With >= 16 channels direct_walk also
// beats direct_rows on long rows: forward, 2 threads, one process, direct_rows
// time / direct_walk time, AVX-512 (AVX2): 8x64x56x56 k64 3x3 1.12 (1.10),
// 8x128x28x28 k128 3x3 1.14 (1.15), 8x64x112x112 k128 3x3 1.17 (1.40),
// 8x128x56x56 k256 3x3 1.14, 64x1x28x28 k32 5x5 pad 2 1.19 (1.14), AlexNet
// conv2 1.09 (1.11); input gradients of the 3x3 layers 1.16-1.21.
bool prefers_cvec(const Conv2dParams& p) {
  if (columns_are_input(p) || p.group_out_channels() < 8 || !direct_cvec_fits(p)) return false;
  if (p.stride_h > 1 || p.stride_w > 1) return true;
  return p.group_out_channels() >= 16 && (p.out_w <= 16 || direct_walk_fits(p));
}

// Whether algo="auto" runs a layer that prefers_cvec through direct_cvec (or
// direct_walk) rather than im2col + GEMM. Stride 1 takes it with AVX2 or wider.
// Strided layers: forward, 2 threads, one process, im2col time / direct_cvec
// time, AVX-512 | AVX2:
//   8x3x227x227 k96 11x11 s4 (AlexNet c1)  2.17 | 1.25-1.38
//   8x3x224x224 k64 7x7 s2 (ResNet conv1)  1.82 | 1.52
//   8x64x56x56 k64 7x7 s2                  1.99 | 1.72
//   8x32x56x56 k64 5x5 s2                  1.53 | 1.26
//   8x64x56x56 k128 5x5 s2                 1.50 | 1.21
//   8x3x224x224 k64 5x5 s2                 1.24 | 1.12
//   8x128x28x28 k256 3x3 s2                1.32 | 0.87-0.92
//   8x64x56x56 k128 1x1 s2 (ResNet down)   0.74 | 0.51
// so with 8 lanes only kernels of 25 or more taps take it, and 1x1 strided
// layers, whose columns are a subsampled copy of the input, stay one GEMM.
bool cvec_beats_gemm(const Conv2dParams& p) {
  const int64_t taps = p.kernel_h * p.kernel_w;
  if (p.stride_h == 1 && p.stride_w == 1) return isa_enabled(Isa::Avx2);
  if (taps == 1) return false;
  return isa_enabled(Isa::Avx512) || (taps >= 25 && isa_enabled(Isa::Avx2));
}

bool accepts_im2col(const ConvCall& c) { return c.algo == ConvAlgo::Im2col && im2col_fits(*c.p); }
bool accepts_direct_walk(const ConvCall& c) {
  return c.algo == ConvAlgo::Direct && c.channel_vectors && direct_walk_fits(*c.p);
}
// The depthwise kernels take one input channel per group. With several output
// channels per input channel, direct_rows reuses each load across them and
// wins at stride 1; strided layers it cannot run. 2 threads, one process,
// time before (direct_rows at stride 1, the scalar direct loops strided) /
// time with depthwise, forward | backward:
//   MobileNet 8x32x112x112 3x3      1.18-1.40 | 1.42-1.47
//   MobileNet 8x128x56x56 3x3 s2    1.35-1.48 | 1.27-1.52
//   MobileNet 8x512x14x14 3x3       1.22-1.40 | 1.31-1.38
//   8x32x56x56 -> 64, 32 groups      0.77 | 1.04;  stride 2: 3.01 | 1.92
//   LeNet c1 (1 -> 6 channels)       0.62 | 0.52
bool depthwise_pays(const Conv2dParams& p, bool rows_fit) {
  return depthwise_fits(p) && (p.group_out_channels() == 1 || !rows_fit);
}
// Small planes whose weight gradient has 2M or more floats per group (512 x
// 512 3x3), where kvec's partial sums per slot of images outweigh the few
// positions each image adds to them (below).
bool small_plane_huge_weight_grad(const Conv2dParams& p) {
  return p.out_plane() <= 256 && p.group_out_channels() * p.reduction() >= (int64_t{2} << 20);
}
// On small planes kvec keeps partial sums of the whole weight gradient per
// slot of images, and each image adds only out_plane positions to them: with
// 512 x 512 3x3 weights (9.4 MB) that traffic dominates, and one GEMM over a
// block of images' columns wins. Backward, 2 threads, AVX-512, one process,
// kvec time / image-block time: ResNet layer4 7x7 512 1.38 (weight gradient
// alone 1.53), VGG conv5_1 14x14 512 1.14 (1.21); with 256-384 channels
// (3.5 MB of weights and less) it lost: AlexNet conv5 0.60, conv3 0.86, ResNet
// layer3 0.78 (weight gradient alone). Under AVX2, whose backward for these
// is im2col already, it measured 0.99-1.03 and is not used.
bool wants_image_blocks(const Conv2dParams& p) {
  return isa_enabled(Isa::Avx512) && small_plane_huge_weight_grad(p) && weight_grad_image_blocks_fits(p);
}
bool accepts_image_blocks(const ConvCall& c) { return c.image_blocks; }
bool accepts_depthwise(const ConvCall& c) {
  return c.algo == ConvAlgo::Direct && depthwise_pays(*c.p, direct_rows_fits(*c.p));
}
bool accepts_depthwise_backward(const ConvCall& c) {
  return c.algo == ConvAlgo::Direct && depthwise_pays(*c.p, direct_rows_backward_fits(*c.p));
}
bool accepts_direct_rows(const ConvCall& c) {
  return c.algo == ConvAlgo::Direct && direct_rows_fits(*c.p);
}
bool accepts_direct_cvec(const ConvCall& c) {
  return c.algo == ConvAlgo::Direct && c.channel_vectors && direct_cvec_fits(*c.p);
}
bool accepts_direct_rows_backward(const ConvCall& c) {
  return c.algo == ConvAlgo::Direct && direct_rows_backward_fits(*c.p);
}
// The kvec weight gradient wants at least one full vector of output channels
// per group; 1x1 layers stay one GEMM per image (8x64x56x56 k128 1x1 stride
// 2, backward, im2col time / kvec time: 0.89 AVX-512, 0.55 AVX2). With 8
// lanes, stride-1 layers at most 3 wide run kvec except small planes with a
// huge weight gradient, which stay im2col (gemm_beats_rows_backward). Since
// kvec pairs an odd last kernel row with the next channel's, AVX2 backward,
// 2 threads, one process, time before (direct_rows, or im2col on small planes)
// / time with kvec: 8x64x56x56 k64 3x3 1.16, VGG 128 28x28 1.10, VGG conv3_1
// 1.12, conv2_1 1.06, ResNet layer3 14x14 256 1.10, AlexNet conv3 1.03; 512
// channels on 7x7 and 14x14 0.94-0.95 (left to im2col). Before the pairing it
// lost to direct_rows there (0.93-0.98 on the 56x56 and 28x28 layers).
// Weight gradient, 2 threads, one process, time before / time with kvec
// (im2col for strided layers before, direct_rows otherwise), AVX-512 | AVX2:
//   64x32x14x14 k64 5x5 pad 2      1.50 | 1.07
//   8x64x56x56 k64 3x3 pad 1       1.32 | 0.93
//   8x128x28x28 k128 3x3 pad 1     1.09 | 0.98
//   8x128x28x28 k256 3x3 s2        1.08 | 1.06
//   8x3x227x227 k96 11x11 s4       2.43 | 1.23
//   64x6x14x14 k16 5x5 (LeNet c2)  1.31 | 1.43
//   AlexNet conv2 (2 groups, 5x5)  1.19
bool wants_kvec(const Conv2dParams& p, int64_t lanes) {
  const bool one_tap = p.kernel_h == 1 && p.kernel_w == 1;
  if (one_tap || p.group_out_channels() < lanes || !weight_grad_kvec_fits(p, lanes)) return false;
  const bool strided = p.stride_h > 1 || p.stride_w > 1;
  return lanes >= 16 || strided || p.kernel_w > 3 || !small_plane_huge_weight_grad(p);
}
// The direct_rows backward pads every output row to whole vectors and runs
// its weight gradient per row, so on small planes with many channels one
// GEMM per image wins (of these layers kvec now leaves it only the AVX2 ones
// with huge weight gradients). Backward, 2 threads, AVX2, one process, direct_rows
// time / im2col time: 7x7 512 channels 1.20, 13x13 256 -> 384 1.22, 14x14 256
// 1.09, 14x14 512 1.14; 28x28 128 and 256 1.02 and 1.00, 56x56 64 0.85. (That
// was before direct_walk's 14-position AVX2 tile sped up these layers' input
// gradient; re-measured after it, on a slow minute: 0.95-1.05, a tie.)
bool gemm_beats_rows_backward(const Conv2dParams& p) {
  return p.out_plane() <= 256 && p.reduction() >= 1152 && im2col_fits(p);
}

// A pointwise forward is one GEMM per image, except with AVX-512 and at most
// 64 input channels (a short reduction) where the direct_rows tile wins.
// Forward, 2 threads, AVX-512, two runs of an A/B in one process (GEMM time /
// direct_rows time): 8x32x56x56 k64 1.19-1.20, 8x64x56x56 k128 1.05-1.21,
// 8x24x56x56 k144 0.99-1.13, 8x16x112x112 k32 1.04, 8x32x112x112 k64 1.00;
// not taken for 8x128x28x28 k256 (0.94) or 8x96x28x28 k24 (0.80). With AVX2
// the GEMM wins on all of these (direct_rows 0.58-0.65).
bool rows_beat_pointwise_gemm(const Conv2dParams& p) {
  return isa_enabled(Isa::Avx512) && p.group_in_channels() <= 64 && p.group_out_channels() >= 32;
}

// Judged with the lanes of the widest enabled ISA, whose entry comes first in
// the list: a layer with 8 to 15 channels runs direct_rows under AVX-512
// rather than the 8-lane kvec.
int64_t kvec_lanes() { return isa_enabled(Isa::Avx512) ? 16 : isa_enabled(Isa::Avx2) ? 8 : 0; }
bool accepts_kvec(const ConvCall& c) {
  return c.algo == ConvAlgo::Direct && kvec_lanes() > 0 && wants_kvec(*c.p, kvec_lanes());
}
bool accepts_direct(const ConvCall& c) {
  return c.algo == ConvAlgo::Direct || c.algo == ConvAlgo::Im2col;
}

using ForwardFn = void (*)(const Conv2dParams&, const float*, const float*, const float*, float*);
using BackwardFn = void (*)(const Conv2dParams&, const float*, const float*, const float*, float*,
                            float*, float*);

const KernelImpl<ConvCall, ForwardFn> kForwardImpls[] = {
#ifdef CNNKIT_X86
    {"direct_walk_avx512", Isa::Avx512, accepts_direct_walk, conv2d_forward_direct_walk_avx512},
    {"direct_walk_avx2", Isa::Avx2, accepts_direct_walk, conv2d_forward_direct_walk_avx2},
    {"direct_cvec_avx512", Isa::Avx512, accepts_direct_cvec, conv2d_forward_direct_cvec_avx512},
    {"direct_cvec_avx2", Isa::Avx2, accepts_direct_cvec, conv2d_forward_direct_cvec_avx2},
    {"depthwise_avx512", Isa::Avx512, accepts_depthwise, conv2d_forward_depthwise_avx512},
    {"depthwise_avx2", Isa::Avx2, accepts_depthwise, conv2d_forward_depthwise_avx2},
    {"direct_rows_avx512", Isa::Avx512, accepts_direct_rows, conv2d_forward_direct_rows_avx512},
    {"direct_rows_avx2", Isa::Avx2, accepts_direct_rows, conv2d_forward_direct_rows_avx2},
#endif
    {"im2col", Isa::Scalar, accepts_im2col, conv2d_forward_im2col},
    {"direct", Isa::Scalar, accepts_direct, conv2d_forward_direct},
    {"reference", Isa::Scalar, nullptr, conv2d_forward_reference},
};

const KernelImpl<ConvCall, BackwardFn> kBackwardImpls[] = {
    {"image_blocks", Isa::Scalar, accepts_image_blocks, conv2d_backward_image_blocks},
#ifdef CNNKIT_X86
    {"kvec_avx512", Isa::Avx512, accepts_kvec, conv2d_backward_kvec_avx512},
    {"kvec_avx2", Isa::Avx2, accepts_kvec, conv2d_backward_kvec_avx2},
    {"depthwise_avx512", Isa::Avx512, accepts_depthwise_backward, conv2d_backward_depthwise_avx512},
    {"depthwise_avx2", Isa::Avx2, accepts_depthwise_backward, conv2d_backward_depthwise_avx2},
    {"direct_rows_avx512", Isa::Avx512, accepts_direct_rows_backward, conv2d_backward_direct_rows_avx512},
    {"direct_rows_avx2", Isa::Avx2, accepts_direct_rows_backward, conv2d_backward_direct_rows_avx2},
#endif
    {"im2col", Isa::Scalar, accepts_im2col, conv2d_backward_im2col},
    {"direct", Isa::Scalar, accepts_direct, conv2d_backward_direct},
    {"reference", Isa::Scalar, nullptr, conv2d_backward_reference},
};

ConvCall resolve(const Conv2dParams& p, ConvAlgo algo, bool forward) {
  if (algo == ConvAlgo::Auto) {
    if (!forward && wants_image_blocks(p)) return {&p, ConvAlgo::Direct, false, true};
    if (!forward && kvec_lanes() > 0 && wants_kvec(p, kvec_lanes())) return {&p, ConvAlgo::Direct, false};
    if (forward && prefers_cvec(p) && cvec_beats_gemm(p)) return {&p, ConvAlgo::Direct, true};
    const bool rows =
        forward ? direct_rows_fits(p) : direct_rows_backward_fits(p) && !gemm_beats_rows_backward(p);
    const bool pointwise = columns_are_input(p);
    if (rows && (pointwise ? forward && rows_beat_pointwise_gemm(p) : isa_enabled(Isa::Avx2))) {
      return {&p, ConvAlgo::Direct, false};
    }
    const bool gemm_pays = p.reduction() >= 32 && p.group_out_channels() >= 4 && im2col_fits(p);
    algo = gemm_pays ? ConvAlgo::Im2col : ConvAlgo::Direct;
  }
  return {&p, algo, forward && algo == ConvAlgo::Direct && prefers_cvec(p)};
}

}  // namespace

ConvAlgo parse_conv_algo(const char* name) {
  if (std::strcmp(name, "auto") == 0) return ConvAlgo::Auto;
  if (std::strcmp(name, "direct") == 0) return ConvAlgo::Direct;
  if (std::strcmp(name, "im2col") == 0) return ConvAlgo::Im2col;
  if (std::strcmp(name, "reference") == 0) return ConvAlgo::Reference;
  fail(ErrorKind::Value, std::string("conv2d: algo must be \"auto\", \"direct\" or \"im2col\", got \"") +
                             name + "\"");
}

// Calls with a 0-size input or output are answered here, so no kernel ever
// sees one (their blockings divide by channel and image counts). An input
// without elements reads only padding: every output is the bias.
void conv2d_forward(const Conv2dParams& p, const float* x, const float* w, const float* bias,
                    float* y, ConvAlgo algo) {
  const int64_t planes = p.batch * p.out_channels;
  if (planes == 0 || p.out_plane() == 0) return;
  if (p.batch * p.in_channels * p.in_plane() == 0) {
    for (int64_t i = 0; i < planes; ++i) {
      const float value = bias != nullptr ? bias[i % p.out_channels] : 0.0f;
      std::fill(y + i * p.out_plane(), y + (i + 1) * p.out_plane(), value);
    }
    return;
  }
  select_kernel(kForwardImpls, resolve(p, algo, true)).run(p, x, w, bias, y);
}

void conv2d_backward(const Conv2dParams& p, const float* dy, const float* x, const float* w,
                     float* dx, float* dw, float* db, ConvAlgo algo) {
  const int64_t x_count = p.batch * p.in_channels * p.in_plane();
  if (x_count == 0 || p.batch * p.out_channels * p.out_plane() == 0) {
    if (dx != nullptr) std::fill(dx, dx + x_count, 0.0f);
    if (dw != nullptr) std::fill(dw, dw + p.out_channels * p.reduction(), 0.0f);
    if (db != nullptr) conv2d_bias_grad(p, dy, db);
    return;
  }
  select_kernel(kBackwardImpls, resolve(p, algo, false)).run(p, dy, x, w, dx, dw, db);
}

bool conv2d_forward_flipped(const Conv2dParams& t, const float* dy, const float* w, float* dx) {
#ifdef CNNKIT_X86
  using FlippedFn = void (*)(const Conv2dParams&, const float*, const float*, float*);
  static const std::pair<ForwardFn, FlippedFn> kPackingKernels[] = {
      {conv2d_forward_direct_walk_avx512, conv2d_flipped_direct_walk_avx512},
      {conv2d_forward_direct_walk_avx2, conv2d_flipped_direct_walk_avx2},
      {conv2d_forward_direct_cvec_avx512, conv2d_flipped_direct_cvec_avx512},
      {conv2d_forward_direct_cvec_avx2, conv2d_flipped_direct_cvec_avx2},
  };
  const ForwardFn chosen = select_kernel(kForwardImpls, resolve(t, ConvAlgo::Direct, true)).run;
  for (const auto& [forward, flipped] : kPackingKernels) {
    if (forward == chosen) {
      flipped(t, dy, w, dx);
      return true;
    }
  }
#endif
  return false;
}

const char* conv2d_forward_implementation(const Conv2dParams& p, ConvAlgo algo) {
  return select_kernel(kForwardImpls, resolve(p, algo, true)).name;
}

const char* conv2d_backward_implementation(const Conv2dParams& p, ConvAlgo algo) {
  return select_kernel(kBackwardImpls, resolve(p, algo, false)).name;
}

}  // namespace cnnkit
