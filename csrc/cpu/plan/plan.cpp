// The inference plan: a list of ops over numbered values, each value one
// buffer of batch * (c*h*w) floats. Buffers are shared between values whose
// lifetimes do not overlap (a greedy assignment at the first run), allocated
// once per batch size; the input is read in place and the last op writes the
// caller's output array directly.
//
// Values that the plan's direct convolution both writes and alone reads may
// be kept blocked (NCHW16c with AVX-512) and with each plane inside a zero
// border as wide as the padding of the convolutions that read them
// (PlanValueLayout, choose_layouts), once the first run has chosen how every
// op runs: the writer then stores its channel vectors without a transpose,
// and the reader reads its input in place instead of copying it into a
// padded buffer first.
//
// Epilogues (residual add, activation) run as a threaded pass right after the
// op that produced the output, chunk by chunk (the add and the activation of
// a chunk back to back, while it is in L1), except where the plan's own
// direct convolution (cpu/plan/plan_direct.h) runs: it applies them itself,
// band by band, in the thread that wrote each band. The convolution's bias,
// and a batch norm folded into it, are applied by the kernel itself.
#include "cnnkit/plan.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstring>
#include <mutex>
#include <sstream>
#include <utility>

#include "cnnkit/autotune.h"
#include "cnnkit/errors.h"
#include "cnnkit/gemm.h"
#include "cnnkit/isa.h"
#include "cnnkit/linear.h"
#include "cnnkit/norm.h"
#include "cnnkit/pool.h"
#include "cnnkit/threads.h"
#include "core/parallel.h"
#include "core/workspace.h"
#include "cpu/conv/kernels.h"
#include "cpu/plan/plan_direct.h"

namespace cnnkit {
namespace {

// How a convolution runs: the kernel conv2d's dispatch picks (packed where it
// is direct_cvec/direct_walk), the batched GEMM, or the plan's direct kernel
// with its items band by band or block by block (PlanDirectConv::block_major),
// or as Winograd F(2x2, 3x3) or F(2x2, 5x5) (PlanDirectConv::winograd, 3x3 and 5x5 stride-1 layers).
// A linear op runs linear_forward (Kernel) or its packed weights (Gemm).
enum class ConvWay { Kernel, Gemm, PlanDirect, PlanDirectBlockMajor, PlanWinograd };
constexpr int kConvWays = 5;

bool is_plan_direct(ConvWay way) {
  return way == ConvWay::PlanDirect || way == ConvWay::PlanDirectBlockMajor || way == ConvWay::PlanWinograd;
}

// Sets the direct kernel's order for `way`, one of its three ways.
void use_direct_way(PlanDirectConv& d, ConvWay way) {
  d.block_major = way == ConvWay::PlanDirectBlockMajor;
  d.winograd = way == ConvWay::PlanWinograd;
}

// Whether the op's direct kernel can go `way` (the Winograd order only where
// its transforms are packed).
bool direct_way_fits(const PlanDirectConv& d, ConvWay way) {
  return d.kernel != nullptr && (way != ConvWay::PlanWinograd || !d.winograd_packed.empty());
}

// What describe() says after the direct kernel's name for its `way`.
const char* direct_order_name(ConvWay way) {
  return way == ConvWay::PlanWinograd ? ", winograd" : way == ConvWay::PlanDirectBlockMajor ? ", block-major" : "";
}

enum class OpKind { Conv, Linear, MaxPool, AvgPool, AdaptiveAvgPool, ChannelAffine, Lrn, Elementwise };

const char* kind_name(OpKind k) {
  switch (k) {
    case OpKind::Conv: return "conv2d";
    case OpKind::Linear: return "linear";
    case OpKind::MaxPool: return "max_pool2d";
    case OpKind::AvgPool: return "avg_pool2d";
    case OpKind::AdaptiveAvgPool: return "adaptive_avg_pool2d";
    case OpKind::ChannelAffine: return "channel_affine";
    case OpKind::Lrn: return "local_response_norm";
    case OpKind::Elementwise: return "elementwise";
  }
  return "?";
}

struct Op {
  OpKind kind;
  std::string name;
  int src = 0, dst = 0;
  Epilogue epilogue;
  std::vector<float> weight, bias;  // conv/linear parameters; scale/shift of ChannelAffine
  bool has_bias = false;
  Conv2dParams conv;        // batch 1; the batch is set when the plan is prepared
  Conv2dParams conv_batch;  // the prepared one
  std::string impl;         // the conv kernel algo="auto" runs (Kernel way)
  bool impl_measured = false;  // impl is the measured one (for this preparation): use_measured_kernel
  PackedCvecConv packed;    // when impl is a cvec/walk kernel
  PlanDirectConv direct;    // packed for the ISA cap of the preparation; kernel null where it does not fit
  // conv: how it runs; linear: Kernel (linear_forward) or Gemm (the packed weights)
  ConvWay way = ConvWay::Kernel;
  bool measured = false;    // the choice among the ways is made (for this preparation)
  bool serial = false;      // measured faster on the calling thread alone than on all threads
  // The fastest of the direct kernel's orders, where it was measured (choose_layouts).
  ConvWay faster_direct = ConvWay::PlanDirect;
  // In an image-major trunk, runs its Kernel way image by image rather than
  // the direct kernel (choose_order's third order, or conv_algo="kernel").
  bool image_kernel = false;
  // The weights packed for the GEMM kernels (one per group; linear: one),
  // packed at preparation where the choice may take the GEMM (freed where the
  // measurement picks another way), again after an ISA cap change.
  std::vector<PackedMatrix> packed_weights;
  Pool2dShape pool{};       // planes = channels of one image
  bool count_include_pad = true;
  int64_t lrn_size = 0;
  double lrn_alpha = 0, lrn_beta = 0, lrn_k = 0;
};

// Runs `impl` for the op's Kernel way, with its weights packed once where it
// is a cvec/walk kernel.
void use_kernel(Op& op, const std::string& impl) {
  if (impl == op.impl) return;
  op.impl = impl;
  op.packed = PackedCvecConv{};
  pack_cvec_forward(impl.c_str(), op.conv_batch, op.weight.data(), op.has_bias ? op.bias.data() : nullptr,
                    &op.packed);
}

// Preparation knows only the heuristic's pick for a shape algo="auto" has not
// measured yet: the first run of the Kernel way measures the candidates on the
// plan's own values (autotune: cached in memory and on disk) and runs the
// winner from then on, so the plan times and keeps the kernel a layer-by-layer
// call would run. (mnist_cnn's 1 -> 32 5x5 layer at batch 64 with AVX2: the
// heuristic's direct_walk, where direct_rows measures faster.)
void use_measured_kernel(Op& op, const float* x, float* y) {
  op.impl_measured = true;
  if (!autotune_enabled()) return;
  use_kernel(op, conv2d_forward_measured_implementation(op.conv_batch, x, op.weight.data(),
                                                        op.has_bias ? op.bias.data() : nullptr, y));
}

// Whether an image-major trunk can run the op's Kernel way image by image:
// its implementation is a candidate for one image's shape and needs no
// weights packed for the batch (conv2d_forward_candidate runs it).
bool runs_kernel_per_image(const Op& op) {
  if (op.kind != OpKind::Conv || op.way != ConvWay::Kernel || op.packed.kernel != nullptr) return false;
  const std::vector<std::string> candidates = conv2d_candidates(op.conv, false);
  return std::find(candidates.begin(), candidates.end(), op.impl) != candidates.end();
}

// The direct kernel's way in an image-major trunk: the op's own where that is
// one, else the fastest order measured (or the band order, never measured).
ConvWay trunk_direct_way(const Op& op) { return is_plan_direct(op.way) ? op.way : op.faster_direct; }

// Whether an image-major trunk runs the op's Kernel way rather than the direct
// kernel when the op goes `way` (choose_layouts may time the op's direct way
// in its place).
bool runs_image_kernel(const Op& op, ConvWay way) { return op.image_kernel && way == ConvWay::Kernel; }

Op new_op(OpKind kind, const std::string& name, int src, const Epilogue& epilogue = Epilogue{}) {
  Op op{};
  op.kind = kind;
  op.name = name;
  op.src = src;
  op.epilogue = epilogue;
  return op;
}

// Chunks of this many floats keep an epilogue's add and activation in L1.
constexpr int64_t kEpilogueChunk = 4096;

void apply_epilogue(const Epilogue& e, float* y, const float* residual, int64_t n) {
  if (residual == nullptr && !e.has_act) return;
  const int64_t chunks = (n + kEpilogueChunk - 1) / kEpilogueChunk;
  parallel_for(chunks, kEpilogueChunk, [&](int64_t c0, int64_t c1) {
    for (int64_t c = c0; c < c1; ++c) {
      const int64_t begin = c * kEpilogueChunk, len = std::min(kEpilogueChunk, n - begin);
      float* yc = y + begin;
      if (residual != nullptr) {
        const float* rc = residual + begin;
        for (int64_t i = 0; i < len; ++i) yc[i] += rc[i];
      }
      // Inside a parallel region activation_forward runs serially on this chunk.
      if (e.has_act) activation_forward(e.act, yc, yc, len);
    }
  });
}

void channel_affine(const Op& op, const ValueShape& s, int64_t batch, const float* x, float* y) {
  const int64_t plane = s.h * s.w, planes = batch * s.c;
  parallel_for(planes, plane, [&](int64_t p0, int64_t p1) {
    for (int64_t p = p0; p < p1; ++p) {
      const float a = op.weight[p % s.c], b = op.bias[p % s.c];
      const float* xp = x + p * plane;
      float* yp = y + p * plane;
      for (int64_t i = 0; i < plane; ++i) yp[i] = xp[i] * a + b;
    }
  });
}

// The library's threaded LRN (cpu/norm/lrn.cpp) over the value's channels and planes.
void lrn(const Op& op, const ValueShape& s, int64_t batch, const float* x, float* y) {
  LrnParams params;
  params.size = op.lrn_size;
  params.alpha = op.lrn_alpha;
  params.beta = op.lrn_beta;
  params.k = op.lrn_k;
  local_response_norm(LrnShape{batch, s.c, s.h * s.w}, params, x, y);
}

// A convolution as one GEMM per group over a block of images
// (conv2d_forward_blocks: their im2col columns side by side, so small planes
// give a GEMM of kg x (images * plane) instead of one too narrow to run at
// speed per image), with the weights pre-packed, then the GEMM's output
// scattered back to NCHW with the bias and the epilogue applied in the same
// pass, while each row is in cache.
void conv_batched_gemm(const Op& op, const float* x, float* y, const float* residual) {
  const Conv2dParams& p = op.conv_batch;
  const int64_t plane = p.out_plane();
  const float* bias = op.has_bias ? op.bias.data() : nullptr;
  conv2d_forward_blocks(
      p, x,
      [&](int64_t g, const float* col, int64_t width, float* prod) {
        sgemm_packed(op.packed_weights[g], false, width, 1.0f, col, width, 0.0f, prod, width);
      },
      [&](int64_t offset, int64_t channel, const float* src) {
        float* dst = y + offset;
        const float b = bias != nullptr ? bias[channel] : 0.0f;
        if (residual != nullptr) {
          const float* res = residual + offset;
          for (int64_t j = 0; j < plane; ++j) dst[j] = src[j] + b + res[j];
        } else {
          for (int64_t j = 0; j < plane; ++j) dst[j] = src[j] + b;
        }
        if (op.epilogue.has_act) activation_forward(op.epilogue.act, dst, dst, plane);
      });
}

// Packs a conv or linear op's weights (its output of shape `out`) for
// sgemm_packed where they may be used (`wanted`) and are not packed for the
// kernel the ISA cap selects now; frees them where they will not be used.
void pack_gemm_weights(Op& op, bool wanted, const ValueShape& out) {
  if (!wanted) {
    op.packed_weights.clear();
    return;
  }
  if (!op.packed_weights.empty() && op.packed_weights[0].usable()) return;
  op.packed_weights.clear();
  if (op.kind == OpKind::Linear) {
    const int64_t in = static_cast<int64_t>(op.weight.size()) / out.c;
    op.packed_weights.emplace_back(false, out.c, in, op.weight.data(), in);
    return;
  }
  const int64_t K = op.conv.reduction(), kg = op.conv.group_out_channels();
  for (int64_t g = 0; g < op.conv.groups; ++g) {
    op.packed_weights.emplace_back(false, kg, K, op.weight.data() + g * kg * K, K);
  }
}

}  // namespace

struct InferencePlan::Impl {
  std::vector<ValueShape> shapes;
  std::vector<PlanValueLayout> layout;  // per value: blocked or not, the zero border of its planes
  std::vector<Op> ops;
  // Prepared state: what run() last prepared for.
  int64_t batch = -1;
  Isa isa = Isa::Scalar;
  int threads = 0;
  std::vector<int> slot_of;              // value -> buffer slot (-1: input or output)
  std::vector<int64_t> slot_floats;      // per image
  std::vector<std::vector<float>> buffers;
  std::vector<float*> ptr;
  PlanConvChoice conv_choice = PlanConvChoice::Measure;
  PlanBatchOrder batch_order = PlanBatchOrder::Measure;
  PlanLayoutChoice layout_choice = PlanLayoutChoice::Measure;
  std::mutex running;
  // The trunk (plan.h's PlanBatchOrder): ops [0, trunk); image_major once
  // chosen; order_measured when the choice is made for this preparation.
  int trunk = 0;
  bool image_major = false, order_measured = true;
  // The values' layouts are chosen after the preparation's ops and order are.
  bool layouts_chosen = false;
  // Image-major: which values live in each thread's PlanImage workspace
  // (made and used up within the trunk), at lane_offset[their slot].
  std::vector<char> lane_value;
  std::vector<int64_t> lane_offset;
  int64_t lane_floats = 0;

  int add_value(ValueShape s) {
    shapes.push_back(s);
    layout.emplace_back();
    return static_cast<int>(shapes.size()) - 1;
  }
  // Floats of one image of value v as stored (with its border).
  int64_t stored_size(int v) const {
    const ValueShape& s = shapes[v];
    const int64_t b = layout[v].border;
    return s.c * (s.h + 2 * b) * (s.w + 2 * b);
  }
  PlanDirectLayout layout_of(const Op& op) const {
    return {layout[op.src], layout[op.dst],
            op.epilogue.residual >= 0 ? layout[op.epilogue.residual] : PlanValueLayout{}};
  }
  std::vector<ConvWay> ways() const {
    std::vector<ConvWay> w(ops.size());
    for (size_t k = 0; k < ops.size(); ++k) w[k] = ops[k].way;
    return w;
  }
  void set_ways(const std::vector<ConvWay>& w) {
    for (size_t k = 0; k < ops.size(); ++k) ops[k].way = w[k];
  }
  const ValueShape& shape(int v, const std::string& name) const {
    CNNKIT_CHECK(v >= 0 && v < static_cast<int>(shapes.size()), ErrorKind::Value,
                 name + ": value " + std::to_string(v) + " does not exist in this plan");
    return shapes[v];
  }
  void check_epilogue(const Epilogue& e, const ValueShape& out, const std::string& name) const {
    if (e.has_act) validate(e.act);
    if (e.residual < 0) return;
    const ValueShape& r = shape(e.residual, name);
    CNNKIT_CHECK(r.c == out.c && r.h == out.h && r.w == out.w, ErrorKind::Value,
                 name + ": the residual has shape (" + std::to_string(r.c) + ", " + std::to_string(r.h) +
                     ", " + std::to_string(r.w) + "), the output (" + std::to_string(out.c) + ", " +
                     std::to_string(out.h) + ", " + std::to_string(out.w) + ")");
  }
  int push(Op op, ValueShape out) {
    CNNKIT_CHECK(out.size() > 0, ErrorKind::Value, op.name + ": the output would have no elements");
    checked_mul(out.c * out.h, out.w, "plan value size");
    op.dst = add_value(out);
    ops.push_back(std::move(op));
    batch = -1;  // the buffer assignment must be redone
    return ops.back().dst;
  }

  std::vector<int> last_uses() const;
  void assign_buffers();
  void allocate(int64_t n);
  void assign_lanes();
  std::vector<PlanValueLayout> direct_layouts(const std::vector<ConvWay>& ways, bool image_major_trunk) const;
  void lay_out_buffers(const std::vector<PlanValueLayout>& widest, int64_t n, const float* x, float* y);
  void choose_layouts(int64_t n, const float* x, float* y);
  void point_values(const float* x, float* y);
  void run_all(int64_t n);
  void prepare(int64_t n);
  void run_op(Op& op, int64_t n);
  void run_conv(Op& op, ConvWay way, int64_t n);
  void run_linear(Op& op, bool packed, int64_t n);
  void run_way(Op& op, ConvWay way, int64_t n);
  void run_serial_or_not(Op& op, ConvWay way, bool serial, int64_t n);
  void measure(Op& op, int64_t n);
  void run_other(const Op& op, int64_t n, float* const* at) const;
  void prepare_trunk(int64_t n);
  void run_images(int64_t n);
  void choose_order(int64_t n, const float* x, float* y);
};

// The last op that reads each value (as its input or residual), -1 for none.
std::vector<int> InferencePlan::Impl::last_uses() const {
  std::vector<int> last_use(shapes.size(), -1);
  for (int i = 0; i < static_cast<int>(ops.size()); ++i) {
    last_use[ops[i].src] = i;
    if (ops[i].epilogue.residual >= 0) last_use[ops[i].epilogue.residual] = i;
  }
  return last_use;
}

// Greedy: values in order of creation take a free slot (the smallest that is
// big enough, else the biggest, grown); a value's slot is freed after the last
// op that reads it.
void InferencePlan::Impl::assign_buffers() {
  const int values = static_cast<int>(shapes.size());
  const std::vector<int> last_use = last_uses();
  slot_of.assign(values, -1);
  slot_floats.clear();
  std::vector<bool> busy;
  const int output = ops.empty() ? 0 : ops.back().dst;
  for (int i = 0; i < static_cast<int>(ops.size()); ++i) {
    const int v = ops[i].dst;
    if (v != output) {
      const int64_t need = stored_size(v);
      int best = -1;
      for (int s = 0; s < static_cast<int>(busy.size()); ++s) {
        if (busy[s]) continue;
        const bool fits = slot_floats[s] >= need;
        if (best < 0) {
          best = s;
        } else if (fits ? slot_floats[best] < need || slot_floats[s] < slot_floats[best]
                        : slot_floats[best] < need && slot_floats[s] > slot_floats[best]) {
          best = s;
        }
      }
      if (best < 0) {
        best = static_cast<int>(busy.size());
        busy.push_back(false);
        slot_floats.push_back(0);
      }
      slot_floats[best] = std::max(slot_floats[best], need);
      busy[best] = true;
      slot_of[v] = best;
    }
    for (int u = 1; u < values; ++u) {
      if (last_use[u] == i && slot_of[u] >= 0) busy[slot_of[u]] = false;
    }
  }
}

// Floats past a buffer's start to its first 64-byte boundary (the buffers
// have that many spare): a blocked value's vectors then each fill one cache line.
constexpr int64_t kAlignFloats = 64 / sizeof(float);

void InferencePlan::Impl::allocate(int64_t n) {
  assign_buffers();
  buffers.assign(slot_floats.size(), {});
  for (size_t s = 0; s < slot_floats.size(); ++s) {
    buffers[s].resize(static_cast<size_t>(checked_mul(slot_floats[s], n, "plan buffer") + kAlignFloats));
  }
}

void InferencePlan::Impl::prepare(int64_t n) {
  const Isa cap = max_isa();
  const int nt = num_threads();
  if (n == batch && cap == isa && nt == threads) return;
  // Every op's way is chosen again, and the layouts after them.
  const bool laid_out = std::any_of(layout.begin(), layout.end(),
                                    [](const PlanValueLayout& l) { return l.border > 0 || l.blocked; });
  std::fill(layout.begin(), layout.end(), PlanValueLayout{});
  layouts_chosen = false;
  if (n != batch || laid_out) allocate(n);
  for (Op& op : ops) {
    if (op.kind != OpKind::Conv && op.kind != OpKind::Linear) continue;
    op.serial = false;
    pack_gemm_weights(op, conv_choice == PlanConvChoice::Measure || conv_choice == PlanConvChoice::Gemm,
                      shapes[op.dst]);
    if (op.kind == OpKind::Linear) {
      // "direct" has no linear kernel of its own: linear_forward, as "kernel".
      op.measured = conv_choice != PlanConvChoice::Measure;
      op.way = conv_choice == PlanConvChoice::Gemm ? ConvWay::Gemm : ConvWay::Kernel;
      continue;
    }
    const Conv2dParams& c = op.conv;
    op.conv_batch = make_conv2d_params(n, c.in_channels, c.in_h, c.in_w, c.out_channels, c.group_in_channels(),
                                       c.kernel_h, c.kernel_w, c.groups, c.stride_h, c.stride_w, c.pad_top,
                                       c.pad_bottom, c.pad_left, c.pad_right, c.dilation_h, c.dilation_w);
    // Packed again for every preparation (the ISA cap may have changed), and
    // only where the plan's direct kernel may run.
    op.direct = PlanDirectConv{};
    const bool direct = conv_choice == PlanConvChoice::Direct || conv_choice == PlanConvChoice::DirectBlockMajor ||
                        conv_choice == PlanConvChoice::Winograd;
    if (conv_choice == PlanConvChoice::Measure || direct) {
      pack_plan_direct(op.conv_batch, op.weight.data(), op.has_bias ? op.bias.data() : nullptr, &op.direct);
    }
    if (conv_choice == PlanConvChoice::Measure || conv_choice == PlanConvChoice::Winograd) {
      pack_plan_winograd(op.conv_batch, op.weight.data(), &op.direct);
    }
    op.measured = conv_choice != PlanConvChoice::Measure;
    op.way = conv_choice == PlanConvChoice::Gemm ? ConvWay::Gemm : ConvWay::Kernel;
    // "direct" where the plan's kernel runs this layer (and this ISA), the kernel elsewhere.
    if (direct && op.direct.kernel != nullptr) {
      op.way = conv_choice == PlanConvChoice::DirectBlockMajor ? ConvWay::PlanDirectBlockMajor : ConvWay::PlanDirect;
      if (conv_choice == PlanConvChoice::Winograd && direct_way_fits(op.direct, ConvWay::PlanWinograd)) {
        op.way = ConvWay::PlanWinograd;
      }
    }
    op.impl_measured = false;
    use_kernel(op, conv2d_forward_implementation(op.conv_batch, ConvAlgo::Auto));
  }
  prepare_trunk(n);
  batch = n;
  isa = cap;
  threads = nt;
}

// The trunk: the ops before the first linear one, as long as every
// convolution among them fits the plan's direct kernel (packed above), which
// runs them image by image, or, with conv_algo="kernel", runs a kernel that
// can (runs_kernel_per_image). Values made and used up within it take the
// image-major run's per-thread slots; the others (read after the trunk, the
// plan's output) stay in the batch's buffers.
void InferencePlan::Impl::prepare_trunk(int64_t n) {
  trunk = 0;
  int convs = 0;
  const bool kernels = conv_choice == PlanConvChoice::Kernel;
  for (const Op& op : ops) {
    if (op.kind == OpKind::Linear) break;
    if (op.kind == OpKind::Conv && op.direct.kernel == nullptr && !(kernels && runs_kernel_per_image(op))) break;
    convs += op.kind == OpKind::Conv;
    ++trunk;
  }
  if (convs == 0) trunk = 0;
  image_major = trunk > 0 && batch_order == PlanBatchOrder::ImageMajor;
  order_measured = trunk == 0 || batch_order != PlanBatchOrder::Measure || n < 2 || num_threads() < 2;
  // conv_algo="kernel": each convolution of the trunk runs its kernel image by image.
  for (int k = 0; k < static_cast<int>(ops.size()); ++k) ops[k].image_kernel = kernels && k < trunk;
  assign_lanes();
}

// Which values live in the image-major run's per-thread slots, and where.
void InferencePlan::Impl::assign_lanes() {
  const int values = static_cast<int>(shapes.size());
  const std::vector<int> last_use = last_uses();
  lane_value.assign(values, 0);
  for (int i = 0; i < trunk; ++i) {
    const int v = ops[i].dst;
    lane_value[v] = v != ops.back().dst && last_use[v] < trunk;
  }
  lane_offset.assign(slot_floats.size(), 0);
  lane_floats = 0;
  for (size_t s = 0; s < slot_floats.size(); ++s) {
    lane_offset[s] = lane_floats;
    lane_floats += slot_floats[s];
  }
}

// Image-major: each thread takes whole images through the trunk, every op
// with a batch of one on that thread alone (nested regions run serially).
// Each convolution's direct kernel goes in the order of its way or, where
// another kernel was its way layer by layer, in its faster measured order
// (faster_direct): the flag otherwise keeps what the last measured run set.
// A convolution marked image_kernel (its way the Kernel) runs that kernel.
void InferencePlan::Impl::run_images(int64_t n) {
  const int values = static_cast<int>(shapes.size());
  for (int k = 0; k < trunk; ++k) {
    Op& op = ops[k];
    if (op.kind == OpKind::Conv) {
      use_direct_way(op.direct, trunk_direct_way(op));
    }
  }
  parallel_for_each_item(n, [&](int64_t i0, int64_t i1) {
    float* lane = thread_workspace(WorkspaceSlot::PlanImage, static_cast<size_t>(lane_floats));
    std::vector<float*> at(values);
    for (int64_t i = i0; i < i1; ++i) {
      for (int v = 0; v < values; ++v) {
        at[v] = lane_value[v] ? lane + lane_offset[slot_of[v]] : ptr[v] + i * stored_size(v);
      }
      for (int k = 0; k < trunk; ++k) {
        const Op& op = ops[k];
        if (op.kind != OpKind::Conv) {
          run_other(op, 1, at.data());
          continue;
        }
        const float* residual = op.epilogue.residual >= 0 ? at[op.epilogue.residual] : nullptr;
        if (runs_image_kernel(op, op.way)) {
          conv2d_forward_candidate(op.conv, op.impl.c_str(), at[op.src], op.weight.data(),
                                   op.has_bias ? op.bias.data() : nullptr, at[op.dst]);
          apply_epilogue(op.epilogue, at[op.dst], residual, shapes[op.dst].size());
          continue;
        }
        const PlanDirectEpilogue e{residual, op.epilogue.has_act ? &op.epilogue.act : nullptr};
        op.direct.kernel(op.conv, op.direct, at[op.src], e, at[op.dst], layout_of(op));
      }
    }
  });
}

// Which of run(0) .. run(count - 1) is the fastest: timed in turn, at least
// `min_rounds` rounds and more, up to `max_rounds`, while they take under
// `seconds` in all, the fastest run of each kept (interference only ever adds
// time); ties go to the first. run(count - 1) ran last.
namespace {
template <class Run>
int fastest_of(int count, Run&& run, int min_rounds, int max_rounds, double seconds) {
  std::vector<double> best(static_cast<size_t>(count), 1e300);
  double spent = 0;
  for (int round = 0; round < max_rounds && (round < min_rounds || spent < seconds); ++round) {
    for (int way = 0; way < count; ++way) {
      const auto t0 = std::chrono::steady_clock::now();
      run(way);
      const double t = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      best[static_cast<size_t>(way)] = std::min(best[static_cast<size_t>(way)], t);
      spent += t;
    }
  }
  return static_cast<int>(std::min_element(best.begin(), best.end()) - best.begin());
}
}  // namespace

// After a preparation's first (layer-major) run of the trunk has chosen each
// op's way: the trunk layer-major, image-major with the direct kernel on every
// convolution and, where a convolution's measured way is a kernel that can run
// image by image (runs_kernel_per_image: direct_rows on a first layer of one
// to three channels, where the direct kernel's tiles hold too short a
// reduction to pay for their stores), image-major with those kernels too;
// three rounds (fastest_of), the chosen order run last, so the results do not
// depend on the timing. Image-major runs with the layouts it would get (the
// direct kernel's values blocked and bordered: direct_layouts), not the plain
// ones the layer-major ways leave: timed plain, it lost to layer-major where,
// laid out, it won (resnet20 at batch 64 with AVX2, benchmarks/results).
// choose_layouts then decides the layouts for the chosen order.
void InferencePlan::Impl::choose_order(int64_t n, const float* x, float* y) {
  const std::vector<PlanValueLayout> plain(layout.size());
  const bool lay_out = layout_choice != PlanLayoutChoice::Plain;
  std::vector<int> kernel_ops;
  for (int k = 0; k < trunk; ++k) {
    if (runs_kernel_per_image(ops[k])) kernel_ops.push_back(k);
  }
  auto keep_kernels = [&](bool keep) {
    for (int k : kernel_ops) ops[k].image_kernel = keep;
  };
  // 0: layer-major; 1: image-major, every convolution direct (where the
  // direct kernel runs them all); 2: image-major with the kernels.
  std::vector<int> orders = {0};
  const bool all_direct = std::all_of(ops.begin(), ops.begin() + trunk, [](const Op& op) {
    return op.kind != OpKind::Conv || op.direct.kernel != nullptr;
  });
  if (all_direct) orders.push_back(1);
  if (!kernel_ops.empty()) orders.push_back(2);
  keep_kernels(true);
  const std::vector<PlanValueLayout> kernel_layouts = lay_out ? direct_layouts(ways(), true) : plain;
  keep_kernels(false);
  const std::vector<PlanValueLayout> image_layouts =
      lay_out && all_direct ? direct_layouts(ways(), true) : kernel_layouts;
  // The direct kernel's layouts border every value the others do, at least as wide.
  lay_out_buffers(image_layouts, n, x, y);
  auto run_order = [&](int order) {
    keep_kernels(order == 2);
    if (order == 0) {
      layout = plain;
      for (int k = 0; k < trunk; ++k) run_op(ops[k], n);
    } else {
      layout = order == 1 ? image_layouts : kernel_layouts;
      run_images(n);
    }
  };
  const int count = static_cast<int>(orders.size());
  const int chosen = fastest_of(count, [&](int i) { run_order(orders[static_cast<size_t>(i)]); }, 3, 3, 0.0);
  if (chosen != count - 1) run_order(orders[static_cast<size_t>(chosen)]);
  image_major = orders[static_cast<size_t>(chosen)] != 0;
  layout = plain;
  order_measured = true;
}

// Each value's batch in its buffer, from the buffer's first 64-byte boundary;
// the input read in place (no op writes value 0), the output written there.
void InferencePlan::Impl::point_values(const float* x, float* y) {
  ptr.assign(shapes.size(), nullptr);
  for (size_t v = 0; v < shapes.size(); ++v) {
    if (slot_of[v] < 0) continue;
    float* start = buffers[slot_of[v]].data();
    ptr[v] = start + (kAlignFloats - reinterpret_cast<uintptr_t>(start) / sizeof(float) % kAlignFloats) % kAlignFloats;
  }
  ptr[0] = const_cast<float*>(x);
  ptr[ops.back().dst] = y;
}

// Every op, once each op's way and the batch order are chosen.
void InferencePlan::Impl::run_all(int64_t n) {
  if (image_major) {
    run_images(n);
  } else {
    for (int k = 0; k < trunk; ++k) run_op(ops[k], n);
  }
  for (int k = trunk; k < static_cast<int>(ops.size()); ++k) run_op(ops[k], n);
}

// Layouts (PlanValueLayout) for the values the plan's direct convolution
// writes and only it reads (as input or residual): a zero border as wide as
// the widest padding of the convolutions reading each, and blocked where the
// channels fill whole blocks, every reader takes a blocked input and the
// writer's residual, if any, is blocked too (the kernel adds a blocked
// residual to its accumulators, whatever the output's layout). The input and
// the output (the caller's arrays) stay plain. An image-major trunk's
// convolutions all run the direct kernel, and a layer-major run of them (a
// profile) then does too. `ways` are the ops' ways to lay out for, and
// image_major_trunk whether the trunk runs image-major.
std::vector<PlanValueLayout> InferencePlan::Impl::direct_layouts(const std::vector<ConvWay>& ways,
                                                                 bool image_major_trunk) const {
  const int values = static_cast<int>(shapes.size()), count = static_cast<int>(ops.size());
  auto runs_direct = [&](int k) {
    return ops[k].kind == OpKind::Conv &&
           (is_plan_direct(ways[k]) || (image_major_trunk && k < trunk && !runs_image_kernel(ops[k], ways[k])));
  };
  std::vector<char> direct_only(values, 0), blockable(values, 0);
  std::vector<int64_t> pad(values, 0);
  for (int k = 0; k < count; ++k) {
    if (!runs_direct(k)) continue;
    const int v = ops[k].dst;
    direct_only[v] = 1;
    blockable[v] = shapes[v].c % ops[k].direct.lanes == 0;
  }
  direct_only[0] = 0;
  direct_only[ops.back().dst] = 0;
  for (int k = 0; k < count; ++k) {
    const Op& op = ops[k];
    if (runs_direct(k)) {
      const Conv2dParams& c = op.conv;
      pad[op.src] = std::max({pad[op.src], c.pad_top, c.pad_bottom, c.pad_left, c.pad_right});
      if (!plan_direct_reads_blocked(c)) blockable[op.src] = 0;
      continue;
    }
    direct_only[op.src] = 0;
    if (op.epilogue.residual >= 0) direct_only[op.epilogue.residual] = 0;
  }
  for (int v = 0; v < values; ++v) blockable[v] = blockable[v] && direct_only[v];
  // A blocked output needs a blocked residual: unblocking one value may
  // unblock the outputs that add it, in turn.
  for (bool changed = true; changed;) {
    changed = false;
    for (const Op& op : ops) {
      const int r = op.epilogue.residual;
      if (r >= 0 && blockable[op.dst] && !blockable[r]) blockable[op.dst] = 0, changed = true;
    }
  }
  std::vector<PlanValueLayout> laid(values);
  for (int v = 0; v < values; ++v) {
    if (direct_only[v]) laid[v] = PlanValueLayout{pad[v], blockable[v] != 0};
  }
  return laid;
}

// Buffers for the values laid out as `widest` (every other layout the plan
// may time has borders at most as wide, and fits in them), with the image-major
// lanes and the values pointed at.
void InferencePlan::Impl::lay_out_buffers(const std::vector<PlanValueLayout>& widest, int64_t n, const float* x,
                                          float* y) {
  layout = widest;
  allocate(n);
  assign_lanes();
  point_values(x, y);
}

// Once every op's way is measured (and the order chosen): the whole plan runs
// with the measured ways on plain values and with their layouts, and with
// every convolution the direct kernel fits on it (in its faster order, then
// as Winograd wherever that fits), with theirs, each also with every op on
// all threads where some were measured faster alone, in turn, the fastest run
// of each kept, and the fastest is kept (all in the same buffers): where many
// channel blocks meet small planes, reading blocked inputs can be the slower
// (vgg11's 512-channel 4x4 layers), and op by op on plain values another
// kernel can beat the direct one where, between blocked values, it wins
// (resnet20 at batch 1 with AVX2; benchmarks/results).
void InferencePlan::Impl::choose_layouts(int64_t n, const float* x, float* y) {
  layouts_chosen = true;
  const int count = static_cast<int>(ops.size());
  for (int k = 0; k < trunk && image_major; ++k) {
    Op& op = ops[k];
    if (op.kind == OpKind::Conv && !is_plan_direct(op.way) && !runs_image_kernel(op, op.way)) {
      op.way = op.faster_direct;
    }
  }
  // The ways measured op by op (with every value plain), and the same with
  // every convolution the direct kernel fits on it, in its faster order.
  const std::vector<ConvWay> measured = ways();
  std::vector<ConvWay> direct = measured;
  for (int k = 0; k < count; ++k) {
    const Op& op = ops[k];
    if (op.kind == OpKind::Conv && op.direct.kernel != nullptr && !is_plan_direct(op.way)) {
      direct[k] = op.faster_direct;
    }
  }
  // And the same with Winograd on every convolution it fits: timed op by op
  // on plain values, whose input it copies first, it can lose to the direct
  // kernel where, reading a blocked and bordered input in place, it wins.
  // The direct kernel runs the same convolutions either way, so the values
  // are laid out alike.
  std::vector<ConvWay> winograd = direct;
  for (int k = 0; k < count; ++k) {
    if (ops[k].kind == OpKind::Conv && direct_way_fits(ops[k].direct, ConvWay::PlanWinograd)) {
      winograd[k] = ConvWay::PlanWinograd;
    }
  }
  const std::vector<PlanValueLayout> plain(layout.size());
  const bool lay_out = layout_choice != PlanLayoutChoice::Plain;
  const std::vector<PlanValueLayout> laid = lay_out ? direct_layouts(measured, image_major) : plain;
  const std::vector<PlanValueLayout> direct_laid = lay_out ? direct_layouts(direct, image_major) : plain;
  const bool any = std::any_of(laid.begin(), laid.end(),
                               [](const PlanValueLayout& l) { return l.border > 0 || l.blocked; });
  // The whole plans to time: the measured ways on plain values; the same laid
  // out, where that lays out any value; the direct kernel on every convolution
  // it fits, laid out, where that changes a way; and Winograd on those it
  // fits, where that changes one. The ops measured faster on the calling
  // thread alone stay so in these; where there are any, each plan also runs
  // with every op on all threads: an op timed while another process held a
  // core looks faster alone than it is (fresh resnet20 plans at batch 1 on a
  // busy virtual machine put 0 to 11 of their convolutions on one thread, and
  // those with the most ran about 1.25x longer).
  struct Candidate {
    const std::vector<ConvWay>* ways;
    const std::vector<PlanValueLayout>* layout;
    bool all_threaded;
  };
  std::vector<Candidate> plans = {{&measured, &plain, false}};
  if (any) plans.push_back({&measured, &laid, false});
  if (direct != measured) plans.push_back({&direct, &direct_laid, false});
  if (winograd != direct) plans.push_back({&winograd, &direct_laid, false});
  std::vector<char> measured_serial(static_cast<size_t>(count));
  for (int k = 0; k < count; ++k) measured_serial[static_cast<size_t>(k)] = ops[k].serial;
  if (std::find(measured_serial.begin(), measured_serial.end(), 1) != measured_serial.end()) {
    const size_t alone = plans.size();
    for (size_t i = 0; i < alone; ++i) plans.push_back({plans[i].ways, plans[i].layout, true});
  }
  const bool timed = layout_choice == PlanLayoutChoice::Measure && plans.size() > 1;
  // direct_laid borders every value laid borders, at least as wide.
  if (any || timed) lay_out_buffers(direct_laid, n, x, y);
  layout = laid;
  if (timed) {
    // At least three rounds, and more, up to 15, while they take under 10 ms
    // in all: a batch-1 plan runs in a fraction of a millisecond, where one
    // descheduling would otherwise decide. The chosen one runs last.
    auto choose = [&](int i) {
      const Candidate& c = plans[static_cast<size_t>(i)];
      set_ways(*c.ways);
      layout = *c.layout;
      for (int k = 0; k < count; ++k) ops[k].serial = !c.all_threaded && measured_serial[static_cast<size_t>(k)];
    };
    const int count_plans = static_cast<int>(plans.size());
    const int fastest = fastest_of(
        count_plans,
        [&](int i) {
          choose(i);
          run_all(n);
        },
        3, 15, 10e-3);
    choose(fastest);
    if (fastest != count_plans - 1) run_all(n);
  }
  // Copies of the weights the plan no longer needs (until the next
  // preparation); an image-major trunk keeps its direct kernels, and the
  // Winograd transforms (16/9 of a 3x3 layer's weights) stay only where that
  // order runs.
  for (int k = 0; k < count; ++k) {
    Op& op = ops[k];
    if (op.kind != OpKind::Conv) continue;
    if (!is_plan_direct(op.way) && !(image_major && k < trunk)) {
      op.direct = PlanDirectConv{};
    } else if (trunk_direct_way(op) != ConvWay::PlanWinograd) {
      std::vector<float>().swap(op.direct.winograd_packed);
    }
  }
}

void InferencePlan::Impl::run_conv(Op& op, ConvWay way, int64_t n) {
  const float* x = ptr[op.src];
  float* y = ptr[op.dst];
  const float* residual = op.epilogue.residual >= 0 ? ptr[op.epilogue.residual] : nullptr;
  if (way == ConvWay::Gemm) {
    conv_batched_gemm(op, x, y, residual);
    return;
  }
  if (is_plan_direct(way)) {
    const PlanDirectEpilogue e{residual, op.epilogue.has_act ? &op.epilogue.act : nullptr};
    use_direct_way(op.direct, way);
    op.direct.kernel(op.conv_batch, op.direct, x, e, y, layout_of(op));
    return;
  }
  if (!op.impl_measured) use_measured_kernel(op, x, y);
  if (op.packed.kernel != nullptr) {
    run_packed_cvec_forward(op.conv_batch, op.packed, x, y);
  } else {
    conv2d_forward(op.conv_batch, x, op.weight.data(), op.has_bias ? op.bias.data() : nullptr, y, ConvAlgo::Auto);
  }
  apply_epilogue(op.epilogue, y, residual, n * shapes[op.dst].size());
}

void InferencePlan::Impl::run_linear(Op& op, bool packed, int64_t n) {
  const float* x = ptr[op.src];
  float* y = ptr[op.dst];
  const float* bias = op.has_bias ? op.bias.data() : nullptr;
  if (packed) {
    linear_forward_packed(x, op.packed_weights[0], bias, y, n);
  } else {
    linear_forward(x, op.weight.data(), bias, y, n, shapes[op.src].size(), shapes[op.dst].size());
  }
  const float* residual = op.epilogue.residual >= 0 ? ptr[op.epilogue.residual] : nullptr;
  apply_epilogue(op.epilogue, y, residual, n * shapes[op.dst].size());
}

// Runs a conv op `way`, or a linear op with its packed weights (Gemm) or linear_forward.
void InferencePlan::Impl::run_way(Op& op, ConvWay way, int64_t n) {
  if (op.kind == OpKind::Conv) {
    run_conv(op, way, n);
  } else {
    run_linear(op, way == ConvWay::Gemm, n);
  }
}

// The first run after a preparation times every way that can run the op (a
// conv's kernel, conv_batched_gemm and, where it fits, the plan's direct
// kernel in both orders; a linear op's linear_forward and its packed weights) on the real
// data: each once to warm up (the GEMM's scratch is allocated then), then
// alternately, keeping each way's fastest run (interference from other
// processes only ever adds time): at least kMinMeasureRounds rounds, and more, up to
// kMaxMeasureRounds, while they take less than kMeasureSeconds in all, so
// that small layers, where a single descheduling outweighs the difference,
// get more samples. With several threads each way is also timed on the
// calling thread alone: a layer of a few microseconds at batch 1 (resnet20's
// 1x1 shortcuts) runs faster there than it pays for waking the others. Each
// round times the runs on every thread first, after an untimed one: a worker
// left idle by a serial run goes to sleep, and a threaded run timed right
// after one paid for waking it, which the plan's back-to-back ops do not (on
// a virtual machine that cost more than the op at batch 1: mnist_cnn's
// 3136 -> 1024 linear chose the calling thread alone in half the plans, at
// twice its threaded time). Every run leaves a complete output; the chosen
// way runs last, so a plan's results do not depend on the timing.
constexpr int kMinMeasureRounds = 3, kMaxMeasureRounds = 15;
constexpr double kMeasureSeconds = 2e-3;

void InferencePlan::Impl::measure(Op& op, int64_t n) {
  const bool direct = op.kind == OpKind::Conv && op.direct.kernel != nullptr;
  const int ways = direct ? kConvWays : 2;
  auto fits = [&](int way) { return way < 2 || direct_way_fits(op.direct, static_cast<ConvWay>(way)); };
  int last = 0;  // the way timed last in a round
  for (int way = 0; way < ways; ++way) last = fits(way) ? way : last;
  const int thread_choices = threads > 1 ? 2 : 1;  // all threads, then (1) the calling thread alone
  double best[kConvWays][2], spent = 0;
  for (auto& b : best) b[0] = b[1] = 1e300;
  for (int round = 0; round <= kMaxMeasureRounds; ++round) {
    if (round > kMinMeasureRounds && spent > kMeasureSeconds) break;
    // Round 0 is not recorded: its first threaded run is the warm-up.
    if (thread_choices > 1 && round > 0) run_serial_or_not(op, static_cast<ConvWay>(0), false, n);
    for (int serial = 0; serial < thread_choices; ++serial) {
      for (int way = 0; way < ways; ++way) {
        if (!fits(way)) continue;
        const auto t0 = std::chrono::steady_clock::now();
        run_serial_or_not(op, static_cast<ConvWay>(way), serial != 0, n);
        const double t = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        spent += t;
        if (round > 0) best[way][serial] = std::min(best[way][serial], t);
      }
    }
  }
  int fastest = 0, fastest_serial = 0;
  for (int way = 0; way < ways; ++way) {
    for (int serial = 0; serial < thread_choices; ++serial) {
      if (best[way][serial] < best[fastest][fastest_serial]) fastest = way, fastest_serial = serial;
    }
  }
  op.way = static_cast<ConvWay>(fastest);
  op.serial = fastest_serial != 0;
  op.measured = true;
  if (direct) {
    op.faster_direct = ConvWay::PlanDirect;
    for (ConvWay way : {ConvWay::PlanDirectBlockMajor, ConvWay::PlanWinograd}) {
      const int w = static_cast<int>(way), f = static_cast<int>(op.faster_direct);
      if (fits(w) && std::min(best[w][0], best[w][1]) < std::min(best[f][0], best[f][1])) op.faster_direct = way;
    }
  }
  // The direct kernel's weights stay until choose_layouts has timed the plan
  // with every convolution it fits on it; those of a GEMM that lost go now.
  if (op.way != ConvWay::Gemm) op.packed_weights.clear();
  if (fastest != last || fastest_serial != thread_choices - 1) run_serial_or_not(op, op.way, op.serial, n);
}

void InferencePlan::Impl::run_serial_or_not(Op& op, ConvWay way, bool serial, int64_t n) {
  if (serial) {
    SerialRegion alone;
    run_way(op, way, n);
  } else {
    run_way(op, way, n);
  }
}

void InferencePlan::Impl::run_op(Op& op, int64_t n) {
  if (op.kind != OpKind::Conv && op.kind != OpKind::Linear) return run_other(op, n, ptr.data());
  if (op.measured) {
    run_serial_or_not(op, op.way, op.serial, n);
  } else {
    measure(op, n);
  }
}

// An op other than conv and linear over n images of the values at `at`.
void InferencePlan::Impl::run_other(const Op& op, int64_t n, float* const* at) const {
  const float* x = at[op.src];
  float* y = at[op.dst];
  const ValueShape& in = shapes[op.src];
  const ValueShape& out = shapes[op.dst];
  switch (op.kind) {
    case OpKind::Conv:
    case OpKind::Linear: return;  // run_op's
    case OpKind::MaxPool: {
      Pool2dShape s = op.pool;
      s.planes = n * in.c;
      max_pool2d(s, x, y, nullptr);
      break;
    }
    case OpKind::AvgPool: {
      Pool2dShape s = op.pool;
      s.planes = n * in.c;
      avg_pool2d(s, op.count_include_pad, x, y);
      break;
    }
    case OpKind::AdaptiveAvgPool: adaptive_avg_pool2d({n * in.c, in.h, in.w, out.h, out.w}, x, y); break;
    case OpKind::ChannelAffine: channel_affine(op, in, n, x, y); break;
    case OpKind::Lrn: lrn(op, in, n, x, y); break;
    case OpKind::Elementwise: std::memcpy(y, x, static_cast<size_t>(n * in.size()) * sizeof(float)); break;
  }
  const float* residual = op.epilogue.residual >= 0 ? at[op.epilogue.residual] : nullptr;
  apply_epilogue(op.epilogue, y, residual, n * out.size());
}

InferencePlan::InferencePlan(ValueShape input) : impl_(std::make_unique<Impl>()) {
  CNNKIT_CHECK(input.c > 0 && input.h > 0 && input.w > 0, ErrorKind::Value,
               "input_shape must be positive, got (" + std::to_string(input.c) + ", " + std::to_string(input.h) +
                   ", " + std::to_string(input.w) + ")");
  checked_mul(input.c * input.h, input.w, "input size");
  impl_->add_value(input);
}

InferencePlan::~InferencePlan() = default;

void InferencePlan::set_batch_order(PlanBatchOrder order) {
  impl_->batch_order = order;
  impl_->batch = -1;
}

void InferencePlan::set_value_layout(PlanLayoutChoice choice) {
  impl_->layout_choice = choice;
  impl_->batch = -1;
}

void InferencePlan::set_conv_choice(PlanConvChoice choice) {
  impl_->conv_choice = choice;
  impl_->batch = -1;
}

int InferencePlan::add_conv(const std::string& name, int src, int64_t out_channels, int64_t kernel_h,
                            int64_t kernel_w, int64_t groups, int64_t stride_h, int64_t stride_w,
                            int64_t pad_top, int64_t pad_bottom, int64_t pad_left, int64_t pad_right,
                            int64_t dilation_h, int64_t dilation_w, const float* weight, const float* bias,
                            const Epilogue& epilogue) {
  const ValueShape in = impl_->shape(src, name);
  CNNKIT_CHECK(groups > 0 && in.c % groups == 0, ErrorKind::Value,
               name + ": groups=" + std::to_string(groups) + " must divide the input's " +
                   std::to_string(in.c) + " channels");
  Op op = new_op(OpKind::Conv, name, src, epilogue);
  try {
    op.conv = make_conv2d_params(1, in.c, in.h, in.w, out_channels, in.c / groups, kernel_h, kernel_w, groups,
                                 stride_h, stride_w, pad_top, pad_bottom, pad_left, pad_right, dilation_h,
                                 dilation_w);
  } catch (const Error& e) {
    fail(e.kind(), name + ": " + e.what());
  }
  const ValueShape out{out_channels, op.conv.out_h, op.conv.out_w};
  impl_->check_epilogue(epilogue, out, name);
  op.weight.assign(weight, weight + out_channels * op.conv.reduction());
  op.has_bias = bias != nullptr;
  if (op.has_bias) op.bias.assign(bias, bias + out_channels);
  return impl_->push(std::move(op), out);
}

int InferencePlan::add_linear(const std::string& name, int src, int64_t out_features, const float* weight,
                              const float* bias, const Epilogue& epilogue) {
  const ValueShape in = impl_->shape(src, name);
  CNNKIT_CHECK(out_features > 0, ErrorKind::Value, name + ": out_features must be positive");
  Op op = new_op(OpKind::Linear, name, src, epilogue);
  const ValueShape out{out_features, 1, 1};
  impl_->check_epilogue(epilogue, out, name);
  op.weight.assign(weight, weight + checked_mul(out_features, in.size(), "linear weight"));
  op.has_bias = bias != nullptr;
  if (op.has_bias) op.bias.assign(bias, bias + out_features);
  return impl_->push(std::move(op), out);
}

int InferencePlan::add_max_pool(const std::string& name, int src, int64_t kernel_h, int64_t kernel_w,
                                int64_t stride_h, int64_t stride_w, int64_t pad_h, int64_t pad_w,
                                int64_t dilation_h, int64_t dilation_w, bool ceil_mode, const Epilogue& epilogue) {
  const ValueShape in = impl_->shape(src, name);
  Op op = new_op(OpKind::MaxPool, name, src, epilogue);
  op.pool = make_pool2d_shape(name.c_str(), in.c, in.h, in.w, kernel_h, kernel_w, stride_h, stride_w, pad_h,
                              pad_w, dilation_h, dilation_w, ceil_mode);
  const ValueShape out{in.c, op.pool.out_h, op.pool.out_w};
  impl_->check_epilogue(epilogue, out, name);
  return impl_->push(std::move(op), out);
}

int InferencePlan::add_avg_pool(const std::string& name, int src, int64_t kernel_h, int64_t kernel_w,
                                int64_t stride_h, int64_t stride_w, int64_t pad_h, int64_t pad_w, bool ceil_mode,
                                bool count_include_pad) {
  const ValueShape in = impl_->shape(src, name);
  Op op = new_op(OpKind::AvgPool, name, src);
  op.count_include_pad = count_include_pad;
  op.pool = make_pool2d_shape(name.c_str(), in.c, in.h, in.w, kernel_h, kernel_w, stride_h, stride_w, pad_h,
                              pad_w, 1, 1, ceil_mode);
  const ValueShape out{in.c, op.pool.out_h, op.pool.out_w};
  return impl_->push(std::move(op), out);
}

int InferencePlan::add_adaptive_avg_pool(const std::string& name, int src, int64_t out_h, int64_t out_w) {
  const ValueShape in = impl_->shape(src, name);
  CNNKIT_CHECK(out_h > 0 && out_w > 0, ErrorKind::Value, name + ": output_size must be positive");
  Op op = new_op(OpKind::AdaptiveAvgPool, name, src);
  return impl_->push(std::move(op), ValueShape{in.c, out_h, out_w});
}

int InferencePlan::add_channel_affine(const std::string& name, int src, const float* scale, const float* shift,
                                      const Epilogue& epilogue) {
  const ValueShape in = impl_->shape(src, name);
  Op op = new_op(OpKind::ChannelAffine, name, src, epilogue);
  impl_->check_epilogue(epilogue, in, name);
  op.weight.assign(scale, scale + in.c);
  op.bias.assign(shift, shift + in.c);
  return impl_->push(std::move(op), in);
}

int InferencePlan::add_lrn(const std::string& name, int src, int64_t size, double alpha, double beta, double k) {
  const ValueShape in = impl_->shape(src, name);
  CNNKIT_CHECK(size > 0, ErrorKind::Value, name + ": size must be positive, got " + std::to_string(size));
  CNNKIT_CHECK(std::isfinite(alpha) && std::isfinite(beta) && std::isfinite(k), ErrorKind::Value,
               name + ": alpha, beta and k must be finite");
  Op op = new_op(OpKind::Lrn, name, src);
  op.lrn_size = size;
  op.lrn_alpha = alpha;
  op.lrn_beta = beta;
  op.lrn_k = k;
  return impl_->push(std::move(op), in);
}

int InferencePlan::add_elementwise(const std::string& name, int src, const Epilogue& epilogue) {
  const ValueShape in = impl_->shape(src, name);
  Op op = new_op(OpKind::Elementwise, name, src, epilogue);
  impl_->check_epilogue(epilogue, in, name);
  return impl_->push(std::move(op), in);
}

ValueShape InferencePlan::value_shape(int value) const { return impl_->shape(value, "value_shape"); }

int InferencePlan::output() const { return impl_->ops.empty() ? 0 : impl_->ops.back().dst; }

int64_t InferencePlan::num_ops() const { return static_cast<int64_t>(impl_->ops.size()); }

std::string InferencePlan::describe() const {
  std::ostringstream out;
  for (int k = 0; k < static_cast<int>(impl_->ops.size()); ++k) {
    const Op& op = impl_->ops[k];
    const ValueShape& s = impl_->shapes[op.dst];
    out << op.name << ": " << kind_name(op.kind);
    if (op.kind == OpKind::Conv && impl_->image_major && k < impl_->trunk) {
      if (runs_image_kernel(op, op.way)) {
        out << " [" << op.impl << ", image-major]";
      } else {
        out << " [" << op.direct.name << direct_order_name(trunk_direct_way(op)) << ", image-major]";
      }
    } else if (op.kind == OpKind::Conv && op.measured) {
      out << " [";
      switch (op.way) {
        case ConvWay::Kernel: out << op.impl << (op.packed.kernel ? ", packed" : ""); break;
        case ConvWay::Gemm: out << "batched_gemm"; break;
        case ConvWay::PlanDirect:
        case ConvWay::PlanDirectBlockMajor:
        case ConvWay::PlanWinograd: out << op.direct.name << direct_order_name(op.way); break;
      }
      out << (op.serial ? ", 1 thread]" : "]");
    }
    if (op.kind == OpKind::Linear && op.measured) {
      out << (op.way == ConvWay::Gemm ? " [packed_gemm" : " [linear_forward") << (op.serial ? ", 1 thread]" : "]");
    }
    if (op.has_bias) out << " +bias";
    if (op.epilogue.residual >= 0) out << " +residual(v" << op.epilogue.residual << ")";
    if (op.epilogue.has_act) out << " +act";
    out << " v" << op.src << " -> v" << op.dst << " (" << s.c << ", " << s.h << ", " << s.w << ")";
    const PlanValueLayout& l = impl_->layout[op.dst];
    if (l.blocked || l.border > 0) {
      out << " [" << (l.blocked ? "blocked" : "") << (l.blocked && l.border > 0 ? ", " : "");
      if (l.border > 0) out << "border " << l.border;
      out << "]";
    }
    out << "\n";
  }
  return out.str();
}

void InferencePlan::run(const float* x, float* y, int64_t batch, std::vector<double>* op_seconds) {
  CNNKIT_CHECK(batch >= 0, ErrorKind::Value, "batch must be >= 0");
  Impl& m = *impl_;
  std::lock_guard<std::mutex> lock(m.running);
  const int64_t out_size = m.shapes[output()].size();
  if (batch == 0) return;
  checked_mul(batch, std::max(m.shapes[0].size(), out_size), "plan input size");
  if (m.ops.empty()) {
    std::memcpy(y, x, static_cast<size_t>(batch * out_size) * sizeof(float));
    return;
  }
  m.prepare(batch);
  m.point_values(x, y);
  if (op_seconds == nullptr) {
    // The trunk: image-major, or layer-major (which measures its ops' ways on
    // a preparation's first run), then that first run chooses the order.
    if (m.image_major || m.order_measured) {
      m.run_all(batch);
    } else {
      for (int k = 0; k < m.trunk; ++k) m.run_op(m.ops[k], batch);
      m.choose_order(batch, x, y);
      for (int k = m.trunk; k < static_cast<int>(m.ops.size()); ++k) m.run_op(m.ops[k], batch);
    }
  } else {
    op_seconds->clear();
    for (Op& op : m.ops) {
      const auto t0 = std::chrono::steady_clock::now();
      // A convolution of an image-major trunk that was never measured runs
      // the way the trunk runs it: measuring it here could pick an order of
      // other bits (Winograd's) for the trunk's later runs.
      const bool trunk_conv = m.image_major && &op - m.ops.data() < m.trunk && op.kind == OpKind::Conv;
      if (trunk_conv && !op.measured) {
        m.run_conv(op, trunk_direct_way(op), batch);
      } else {
        m.run_op(op, batch);
      }
      op_seconds->push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
    }
  }
  // An image-major trunk's convolutions run the direct kernel, measured or not
  // (a trunk run image-major from the start, batch_order="image_major", never measures them).
  const bool measured = std::all_of(m.ops.begin(), m.ops.end(), [&m](const Op& op) {
    const bool image_major_trunk = m.image_major && &op - m.ops.data() < m.trunk;
    return op.measured || image_major_trunk || (op.kind != OpKind::Conv && op.kind != OpKind::Linear);
  });
  if (!m.layouts_chosen && m.order_measured && measured) m.choose_layouts(batch, x, y);
}

}  // namespace cnnkit
