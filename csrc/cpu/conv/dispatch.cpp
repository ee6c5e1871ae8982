// conv2d: the ordered lists of implementations and the choice among them.
//
// algo="auto" is chosen by measurement (autotune.h): the first call of a shape
// (per direction, requested gradients, ISA cap and thread count) times every
// implementation that can run it, once warm, into the call's own outputs, and
// the winner is cached in memory and on disk. The heuristic below decides
// when autotuning is off (CNNKIT_AUTOTUNE=0, cnnkit.autotune.set_enabled(False),
// deterministic mode) and orders the candidates; benchmarks/results holds the
// measurements. Its reasoning, per layer kind:
//  - planes of at most 4x4 with long reductions (backward also small planes
//    with huge weight gradients): GEMMs over blocks of images (image_blocks),
//    whose columns side by side make a GEMM wide enough to run at speed
//    where one image's would be narrower than its tile;
//  - one input channel per group: the depthwise kernels (any stride), unless
//    several output channels per input channel let direct_rows reuse each load;
//  - strided, or stride 1 with many output channels and short rows or a 3/5/7
//    wide kernel: output channels across the lanes (direct_walk, else
//    direct_cvec) forward; with 8 lanes strided kernels need 25+ taps to beat
//    one GEMM, and strided 1x1 layers stay a GEMM (their columns are a copy);
//  - other stride-1 layers with AVX2 or wider: direct_rows, which writes no
//    column matrix (pointwise only with AVX-512 and a short reduction, since
//    a pointwise layer's columns are its input);
//  - backward: the kvec weight gradient with a full vector of output channels
//    per group (not 1x1; with 8 lanes not on small planes with huge weight
//    gradients), else as the forward, with one GEMM per image on small planes
//    with long reductions;
//  - otherwise im2col + GEMM when the GEMM is big enough to pay for its column
//    matrix (and for the backward of 1x1 layers), the direct loops for
//    tiny-channel layers.
//
// Each list runs the first entry that accepts the call, the reference last.
#include <algorithm>
#include <cstring>
#include <string>
#include <utility>
#include <vector>

#include "cnnkit/autotune.h"
#include "cnnkit/conv.h"
#include "cnnkit/errors.h"
#include "core/measure.h"
#include "core/registry.h"
#include "cpu/conv/kernels.h"

namespace cnnkit {
namespace {

struct ConvCall {
  const Conv2dParams* p;
  ConvAlgo algo;  // resolved: never Auto
  bool channel_vectors;  // a direct forward prefers direct_cvec to direct_rows
  bool image_blocks = false;  // auto chose image_blocks (wants_image_blocks_*)
};

// direct_cvec fills its vectors with output channels, so it needs a few per
// group; it runs strided layers (direct_rows only does stride 1) and short
// rows, where direct_rows would compute more dropped columns than useful ones.
// direct_walk takes the long rows too once there are 16 channels.
bool prefers_cvec(const Conv2dParams& p) {
  if (columns_are_input(p) || p.group_out_channels() < 8 || !direct_cvec_fits(p)) return false;
  if (p.stride_h > 1 || p.stride_w > 1) return true;
  return p.group_out_channels() >= 16 && (p.out_w <= 16 || direct_walk_fits(p));
}

// Strided layers over direct_cvec rather than a GEMM: with 8 lanes only long
// kernels have enough taps per output to keep the vectors busy; a strided 1x1
// layer's columns are a subsampled copy of its input, one cheap GEMM.
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
// With several output channels per input channel direct_rows reuses each load
// across them, so the depthwise kernels keep those layers only where it cannot run.
bool depthwise_pays(const Conv2dParams& p, bool rows_fit) {
  return depthwise_fits(p) && (p.group_out_channels() == 1 || !rows_fit);
}
bool small_plane_huge_weight_grad(const Conv2dParams& p) {
  return p.out_plane() <= 256 && p.group_out_channels() * p.reduction() >= (int64_t{2} << 20);
}
// A GEMM per image on a plane of at most 4x4 is narrower than the GEMM's
// micro-kernel tile (16 positions fill half of a 32-wide one) and packs all
// of the weights for 2 * out_plane flops per packed float; with a long
// reduction those weights are large. One GEMM over a block of images'
// columns avoids both. (On 8x8 planes the direct kernels measure as fast.)
bool small_plane_long_reduction(const Conv2dParams& p) {
  return p.out_plane() <= 16 && p.reduction() >= 1152 && p.group_out_channels() >= 32;
}
bool wants_image_blocks_forward(const Conv2dParams& p) {
  return small_plane_long_reduction(p) && image_blocks_fits(p);
}
// Backward also on larger small planes with a huge weight gradient: kvec
// keeps a partial weight gradient per slot of images and each image adds
// only a small plane's positions to it, and that traffic dominates (AVX2
// leaves those layers to the GEMMs anyway).
bool wants_image_blocks_backward(const Conv2dParams& p) {
  return (small_plane_long_reduction(p) || small_plane_huge_weight_grad(p)) && image_blocks_fits(p);
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
// The kvec weight gradient wants a full vector of output channels per group;
// 1x1 layers stay one GEMM per image. With 8 lanes, stride-1 kernels at most
// 3 wide on small planes with a huge weight gradient stay with the GEMM.
bool wants_kvec(const Conv2dParams& p, int64_t lanes) {
  const bool one_tap = p.kernel_h == 1 && p.kernel_w == 1;
  if (one_tap || p.group_out_channels() < lanes || !weight_grad_kvec_fits(p, lanes)) return false;
  const bool strided = p.stride_h > 1 || p.stride_w > 1;
  return lanes >= 16 || strided || p.kernel_w > 3 || !small_plane_huge_weight_grad(p);
}
// The direct_rows backward pads every output row to whole vectors and runs its
// weight gradient per row: on small planes with long reductions one GEMM per
// image does less work.
bool gemm_beats_rows_backward(const Conv2dParams& p) {
  return p.out_plane() <= 256 && p.reduction() >= 1152 && im2col_fits(p);
}
// A pointwise layer's columns are its input, one GEMM per image; only 16
// lanes over a short reduction let the direct_rows tile beat it.
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

// What each implementation can run, whatever it costs: the candidates that
// autotuning times. The scalar direct loops only where a GEMM does not pay (a
// short reduction or few output channels): elsewhere they lose by an order of
// magnitude and timing them would dominate the first call.
bool gemm_pays(const Conv2dParams& p) {
  return p.reduction() >= 32 && p.group_out_channels() >= 4 && im2col_fits(p);
}
bool direct_worth_timing(const Conv2dParams& p) { return !gemm_pays(p); }
// The backward of a 1x1 layer is two GEMMs over (a strided copy of) the input
// even with few input channels: the direct loops' weight gradient, a scalar
// reduction over every position per weight, loses by far more than the
// forward's (benchmarks/results: ResNet-20's 16 -> 32 1x1 stride-2 shortcut).
bool pointwise_gradient_pays(const Conv2dParams& p) {
  return p.kernel_h == 1 && p.kernel_w == 1 && p.group_out_channels() >= 4 && im2col_fits(p);
}
bool kvec_fits_avx512(const Conv2dParams& p) { return weight_grad_kvec_fits(p, 16); }
bool kvec_fits_avx2(const Conv2dParams& p) { return weight_grad_kvec_fits(p, 8); }
// Entries no heuristic picks: they run when autotuning measures them fastest
// (or a test names them).
bool only_measured(const ConvCall&) { return false; }

template <class Fn>
struct ConvImpl {
  const char* name;
  Isa isa;
  bool (*accepts)(const ConvCall&);  // the heuristic: nullptr accepts every call
  bool (*fits)(const Conv2dParams&);  // a candidate for autotuning; nullptr: never timed
  Fn run;
};

using ForwardFn = void (*)(const Conv2dParams&, const float*, const float*, const float*, float*);
using BackwardFn = void (*)(const Conv2dParams&, const float*, const float*, const float*, float*,
                            float*, float*);

const ConvImpl<ForwardFn> kForwardImpls[] = {
    {"image_blocks", Isa::Scalar, accepts_image_blocks, image_blocks_fits, conv2d_forward_image_blocks},
#ifdef CNNKIT_X86
    {"direct_walk_avx512", Isa::Avx512, accepts_direct_walk, direct_walk_fits, conv2d_forward_direct_walk_avx512},
    {"direct_walk_avx2", Isa::Avx2, accepts_direct_walk, direct_walk_fits, conv2d_forward_direct_walk_avx2},
    {"direct_cvec_avx512", Isa::Avx512, accepts_direct_cvec, direct_cvec_fits, conv2d_forward_direct_cvec_avx512},
    {"direct_cvec_avx2", Isa::Avx2, accepts_direct_cvec, direct_cvec_fits, conv2d_forward_direct_cvec_avx2},
    {"depthwise_avx512", Isa::Avx512, accepts_depthwise, depthwise_fits, conv2d_forward_depthwise_avx512},
    {"depthwise_avx2", Isa::Avx2, accepts_depthwise, depthwise_fits, conv2d_forward_depthwise_avx2},
    {"direct_rows_avx512", Isa::Avx512, accepts_direct_rows, direct_rows_fits, conv2d_forward_direct_rows_avx512},
    {"direct_rows_avx2", Isa::Avx2, accepts_direct_rows, direct_rows_fits, conv2d_forward_direct_rows_avx2},
    {"plan_direct", Isa::Avx2, only_measured, plan_direct_forward_fits, conv2d_forward_plan_direct},
    {"plan_direct_block_major", Isa::Avx2, only_measured, plan_direct_forward_fits,
     conv2d_forward_plan_direct_block_major},
    {"plan_winograd", Isa::Avx2, only_measured, plan_winograd_forward_fits, conv2d_forward_plan_winograd},
#endif
    {"tap_gemm", Isa::Scalar, only_measured, tap_gemm_fits, conv2d_forward_tap_gemm},
    {"im2col", Isa::Scalar, accepts_im2col, im2col_fits, conv2d_forward_im2col},
    {"direct", Isa::Scalar, accepts_direct, direct_worth_timing, conv2d_forward_direct},
    {"reference", Isa::Scalar, nullptr, nullptr, conv2d_forward_reference},
};

const ConvImpl<BackwardFn> kBackwardImpls[] = {
    {"image_blocks", Isa::Scalar, accepts_image_blocks, image_blocks_fits, conv2d_backward_image_blocks},
#ifdef CNNKIT_X86
    {"kvec_avx512", Isa::Avx512, accepts_kvec, kvec_fits_avx512, conv2d_backward_kvec_avx512},
    {"kvec_avx2", Isa::Avx2, accepts_kvec, kvec_fits_avx2, conv2d_backward_kvec_avx2},
    {"depthwise_avx512", Isa::Avx512, accepts_depthwise_backward, depthwise_fits, conv2d_backward_depthwise_avx512},
    {"depthwise_avx2", Isa::Avx2, accepts_depthwise_backward, depthwise_fits, conv2d_backward_depthwise_avx2},
    {"direct_rows_avx512", Isa::Avx512, accepts_direct_rows_backward, direct_rows_backward_fits,
     conv2d_backward_direct_rows_avx512},
    {"direct_rows_avx2", Isa::Avx2, accepts_direct_rows_backward, direct_rows_backward_fits,
     conv2d_backward_direct_rows_avx2},
    {"kvec_plan_dx_avx512", Isa::Avx512, only_measured, kvec_plan_dx_fits_avx512,
     conv2d_backward_kvec_plan_dx_avx512},
    {"kvec_plan_dx_avx2", Isa::Avx2, only_measured, kvec_plan_dx_fits_avx2, conv2d_backward_kvec_plan_dx_avx2},
    {"image_blocks_plan_dx", Isa::Avx2, only_measured, image_blocks_plan_dx_fits,
     conv2d_backward_image_blocks_plan_dx},
#endif
    {"tap_gemm", Isa::Scalar, only_measured, tap_gemm_fits, conv2d_backward_tap_gemm},
    {"im2col", Isa::Scalar, accepts_im2col, im2col_fits, conv2d_backward_im2col},
    {"direct", Isa::Scalar, accepts_direct, direct_worth_timing, conv2d_backward_direct},
    {"reference", Isa::Scalar, nullptr, nullptr, conv2d_backward_reference},
};

ConvCall resolve(const Conv2dParams& p, ConvAlgo algo, bool forward) {
  if (algo == ConvAlgo::Auto) {
    if (forward ? wants_image_blocks_forward(p) : wants_image_blocks_backward(p)) {
      return {&p, ConvAlgo::Direct, false, true};
    }
    if (!forward && kvec_lanes() > 0 && wants_kvec(p, kvec_lanes())) return {&p, ConvAlgo::Direct, false};
    if (forward && prefers_cvec(p) && cvec_beats_gemm(p)) return {&p, ConvAlgo::Direct, true};
    const bool rows =
        forward ? direct_rows_fits(p) : direct_rows_backward_fits(p) && !gemm_beats_rows_backward(p);
    const bool pointwise = columns_are_input(p);
    if (rows && (pointwise ? forward && rows_beat_pointwise_gemm(p) : isa_enabled(Isa::Avx2))) {
      return {&p, ConvAlgo::Direct, false};
    }
    algo = gemm_pays(p) || (!forward && pointwise_gradient_pays(p)) ? ConvAlgo::Im2col : ConvAlgo::Direct;
  }
  return {&p, algo, forward && algo == ConvAlgo::Direct && prefers_cvec(p)};
}

// The entry's name without its ISA suffix: entries of one family differ only
// in their vector width.
std::string family(const char* name) {
  std::string s(name);
  for (const char* suffix : {"_avx512", "_avx2"}) {
    const size_t n = std::strlen(suffix);
    if (s.size() > n && s.compare(s.size() - n, n, suffix) == 0) return s.substr(0, s.size() - n);
  }
  return s;
}

// The entries autotuning times for `p`: the heuristic's pick first, then every
// other entry that can run the call, only the widest enabled ISA of each
// family (a narrower one does the same work with half the lanes).
template <class Impl, size_t N>
std::vector<const Impl*> candidates(const Impl (&list)[N], const Conv2dParams& p, const Impl& heuristic) {
  std::vector<const Impl*> out{&heuristic};
  std::vector<std::string> families{family(heuristic.name)};
  for (const Impl& impl : list) {
    if (impl.fits == nullptr || !isa_enabled(impl.isa) || !impl.fits(p)) continue;
    std::string f = family(impl.name);
    if (std::find(families.begin(), families.end(), f) != families.end()) continue;
    families.push_back(std::move(f));
    out.push_back(&impl);
  }
  return out;
}

template <class Impl, size_t N>
const Impl* find_candidate(const Impl (&list)[N], const Conv2dParams& p, const Impl& heuristic,
                           const std::string& name) {
  for (const Impl* impl : candidates(list, p, heuristic)) {
    if (name == impl->name) return impl;
  }
  return nullptr;
}

std::string call_key(const Conv2dParams& p, const char* direction) {
  std::string key = std::string("conv2d ") + direction;
  for (int64_t v : {p.batch, p.in_channels, p.in_h, p.in_w, p.out_channels, p.kernel_h, p.kernel_w, p.groups,
                    p.stride_h, p.stride_w, p.pad_top, p.pad_bottom, p.pad_left, p.pad_right, p.dilation_h,
                    p.dilation_w}) {
    key += ' ' + std::to_string(v);
  }
  return key + autotune_context();
}

// The implementation algo="auto" runs: the cached winner, or (measure_now)
// the winner of a measurement that runs the call through `run` and leaves its
// own result in the outputs; else the heuristic's pick.
template <class Impl, size_t N, class Run>
const Impl& choose(const Impl (&list)[N], const Conv2dParams& p, const ConvCall& heuristic_call,
                   const std::string& key, bool measure_now, Run run) {
  const Impl& heuristic = select_kernel(list, heuristic_call);
  if (!autotune_enabled()) return heuristic;
  const std::string cached = autotune_lookup(key);
  if (!cached.empty()) {
    if (const Impl* impl = find_candidate(list, p, heuristic, cached)) return *impl;
  }
  if (!measure_now) return heuristic;
  const std::vector<const Impl*> cands = candidates(list, p, heuristic);
  // A lone candidate is stored too, so later calls find it in memory at once.
  const Impl* best = cands.size() == 1 ? cands[0] : measure_fastest(cands, run);
  autotune_store(key, best->name);
  return *best;
}

std::string backward_key(const Conv2dParams& p, bool dx, bool dw, bool db) {
  std::string dir = "backward";
  if (dx) dir += "+dx";
  if (dw) dir += "+dw";
  if (db) dir += "+db";
  return call_key(p, dir.c_str());
}

const ConvImpl<ForwardFn>& forward_impl(const Conv2dParams& p, ConvAlgo algo, bool measure_now,
                                        const float* x, const float* w, const float* bias, float* y) {
  const ConvCall call = resolve(p, algo, true);
  if (algo != ConvAlgo::Auto) return select_kernel(kForwardImpls, call);
  return choose(kForwardImpls, p, call, call_key(p, "forward"), measure_now,
                [&](const ConvImpl<ForwardFn>& impl) { impl.run(p, x, w, bias, y); });
}

// `key` names the gradients asked for (backward_key): the winner differs
// between a first layer's (no dx) and the others'.
const ConvImpl<BackwardFn>& backward_impl(const Conv2dParams& p, ConvAlgo algo, const std::string& key,
                                          bool measure_now, const float* dy, const float* x, const float* w,
                                          float* dx, float* dw, float* db) {
  const ConvCall call = resolve(p, algo, false);
  if (algo != ConvAlgo::Auto) return select_kernel(kBackwardImpls, call);
  return choose(kBackwardImpls, p, call, key, measure_now,
                [&](const ConvImpl<BackwardFn>& impl) { impl.run(p, dy, x, w, dx, dw, db); });
}

// Calls with a 0-size input or output are answered here, so no kernel ever
// sees one (their blockings divide by channel and image counts). An input
// without elements reads only padding: every output is the bias. True when
// the call was answered.
bool forward_trivial(const Conv2dParams& p, const float* bias, float* y) {
  const int64_t planes = p.batch * p.out_channels;
  if (planes == 0 || p.out_plane() == 0) return true;
  if (p.batch * p.in_channels * p.in_plane() != 0) return false;
  for (int64_t i = 0; i < planes; ++i) {
    const float value = bias != nullptr ? bias[i % p.out_channels] : 0.0f;
    std::fill(y + i * p.out_plane(), y + (i + 1) * p.out_plane(), value);
  }
  return true;
}

bool backward_trivial(const Conv2dParams& p, const float* dy, float* dx, float* dw, float* db) {
  const int64_t x_count = p.batch * p.in_channels * p.in_plane();
  if (x_count != 0 && p.batch * p.out_channels * p.out_plane() != 0) return false;
  if (dx != nullptr) std::fill(dx, dx + x_count, 0.0f);
  if (dw != nullptr) std::fill(dw, dw + p.out_channels * p.reduction(), 0.0f);
  if (db != nullptr) conv2d_bias_grad(p, dy, db);
  return true;
}

template <class Impl, size_t N>
const Impl& named_candidate(const Impl (&list)[N], const Conv2dParams& p, bool forward, const char* name) {
  const Impl& heuristic = select_kernel(list, resolve(p, ConvAlgo::Auto, forward));
  if (const Impl* impl = find_candidate(list, p, heuristic, name)) return *impl;
  std::string names;
  for (const Impl* impl : candidates(list, p, heuristic)) names += std::string(names.empty() ? "" : ", ") + impl->name;
  fail(ErrorKind::Value, std::string("conv2d: implementation \"") + name + "\" cannot run this call; its " +
                             (forward ? "forward" : "backward") + " candidates are " + names);
}

}  // namespace

ConvAlgo parse_conv_algo(const char* name) {
  if (std::strcmp(name, "auto") == 0) return ConvAlgo::Auto;
  if (std::strcmp(name, "direct") == 0) return ConvAlgo::Direct;
  if (std::strcmp(name, "im2col") == 0) return ConvAlgo::Im2col;
  if (std::strcmp(name, "reference") == 0) return ConvAlgo::Reference;
  fail(ErrorKind::Value, std::string("conv2d: algo must be \"auto\", \"direct\", \"im2col\" or \"reference\", got \"") +
                             name + "\"");
}

void conv2d_forward(const Conv2dParams& p, const float* x, const float* w, const float* bias,
                    float* y, ConvAlgo algo) {
  if (forward_trivial(p, bias, y)) return;
  forward_impl(p, algo, true, x, w, bias, y).run(p, x, w, bias, y);
}

void conv2d_backward(const Conv2dParams& p, const float* dy, const float* x, const float* w,
                     float* dx, float* dw, float* db, ConvAlgo algo) {
  if (backward_trivial(p, dy, dx, dw, db)) return;
  const std::string key = algo == ConvAlgo::Auto ? backward_key(p, dx != nullptr, dw != nullptr, db != nullptr) : "";
  backward_impl(p, algo, key, true, dy, x, w, dx, dw, db).run(p, dy, x, w, dx, dw, db);
}

std::vector<std::string> conv2d_candidates(const Conv2dParams& p, bool backward) {
  std::vector<std::string> names;
  if (backward) {
    const auto& heuristic = select_kernel(kBackwardImpls, resolve(p, ConvAlgo::Auto, false));
    for (const auto* impl : candidates(kBackwardImpls, p, heuristic)) names.emplace_back(impl->name);
  } else {
    const auto& heuristic = select_kernel(kForwardImpls, resolve(p, ConvAlgo::Auto, true));
    for (const auto* impl : candidates(kForwardImpls, p, heuristic)) names.emplace_back(impl->name);
  }
  return names;
}

void conv2d_forward_candidate(const Conv2dParams& p, const char* impl, const float* x, const float* w,
                              const float* bias, float* y) {
  if (forward_trivial(p, bias, y)) return;
  named_candidate(kForwardImpls, p, true, impl).run(p, x, w, bias, y);
}

void conv2d_backward_candidate(const Conv2dParams& p, const char* impl, const float* dy, const float* x,
                               const float* w, float* dx, float* dw, float* db) {
  if (backward_trivial(p, dy, dx, dw, db)) return;
  named_candidate(kBackwardImpls, p, false, impl).run(p, dy, x, w, dx, dw, db);
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
  return forward_impl(p, algo, false, nullptr, nullptr, nullptr, nullptr).name;
}

const char* conv2d_forward_measured_implementation(const Conv2dParams& p, const float* x, const float* w,
                                                   const float* bias, float* y) {
  const bool measure_now = !forward_trivial(p, bias, y);
  return forward_impl(p, ConvAlgo::Auto, measure_now, x, w, bias, y).name;
}

const char* conv2d_backward_implementation(const Conv2dParams& p, ConvAlgo algo) {
  // As a layer's backward asks: every gradient.
  const std::string key = algo == ConvAlgo::Auto ? backward_key(p, true, true, true) : "";
  return backward_impl(p, algo, key, false, nullptr, nullptr, nullptr, nullptr, nullptr, nullptr).name;
}

}  // namespace cnnkit
