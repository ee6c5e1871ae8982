// A native inference plan: a fixed graph of layers (convolutions with folded
// batch norm and fused epilogues, linear layers, pooling, LRN, elementwise
// ops) run from one call per batch, with every intermediate activation in
// buffers allocated once and reused until the batch size changes.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "cnnkit/act.h"
#include "cnnkit/conv.h"

namespace cnnkit {

// What runs on an op's output before anything else reads it:
// y = act(y + residual), where residual is another value of the plan (or
// none) and act is optional.
struct Epilogue {
  int residual = -1;  // value id, or -1
  bool has_act = false;
  ActParams act;
};

// One image's shape of a value: (channels, height, width); a flat vector of
// features is (features, 1, 1).
struct ValueShape {
  int64_t c = 0, h = 1, w = 1;
  int64_t size() const { return c * h * w; }
};

// How a plan runs each convolution: Kernel runs what conv2d_forward's "auto"
// picks (direct kernels with their weights packed once), Gemm the plan's
// own batched im2col + GEMM with the epilogue fused into its output pass,
// Direct the plan's own direct kernel (cpu/plan/plan_direct.h, epilogue
// fused) where it runs the layer under the ISA cap, else as Kernel;
// DirectBlockMajor the same with each image's work ordered by channel block
// (for weights too large for the L2: each block's weights are read once per
// image rather than once per band of rows); Winograd the same with its
// Winograd F(2x2, 3x3) order on the 3x3 and 5x5 stride-1 layers; Measure
// times every way that can run the layer on the first run after each
// preparation and keeps the fastest. Linear ops follow the same choice:
// Kernel (and Direct) runs linear_forward, Gemm the weights packed once for
// sgemm_packed (as conv_batched_gemm's are).
enum class PlanConvChoice { Measure, Kernel, Gemm, Direct, DirectBlockMajor, Winograd };

// How a batch goes through the plan's first ops, up to the first linear op
// (the "trunk", where every convolution runs on the plan's direct kernel or,
// with Kernel, on its kernel image by image):
// LayerMajor runs each op over the whole batch, the threads splitting each op;
// ImageMajor gives each thread whole images, which it takes through all of
// the trunk on its own (no wait between ops; an image's activations stay in
// that core's cache), the rest then layer by layer. Measure times both on the
// first run of each preparation with a batch of two or more and several
// threads (and ImageMajor with the measured kernels of the convolutions where
// one runs image by image), and keeps the fastest; it is LayerMajor otherwise.
enum class PlanBatchOrder { Measure, LayerMajor, ImageMajor };

// How the values between the plan's direct convolutions lie: Plain (NCHW,
// like every other value), Blocked (NCHW16c with AVX-512, [c / 16][h][w][16],
// where the channels fill whole blocks and every reader takes a blocked
// input, and each plane inside a zero border as wide as the padding of the
// convolutions that read it: no transposes, no padded copies between them),
// or Measure: the whole plan timed both ways on the first run of each
// preparation, the faster kept. The same bits every way.
enum class PlanLayoutChoice { Measure, Plain, Blocked };

class InferencePlan {
 public:
  // Value 0 is the input, one image of `input` shape.
  explicit InferencePlan(ValueShape input);
  ~InferencePlan();
  InferencePlan(const InferencePlan&) = delete;
  InferencePlan& operator=(const InferencePlan&) = delete;

  // Each add_* reads existing values and returns the id of the new value it
  // writes. Parameters are copied. Shapes are checked here (Value errors
  // naming `name`, the layer), so run() never meets a bad one.
  int add_conv(const std::string& name, int src, int64_t out_channels, int64_t kernel_h,
               int64_t kernel_w, int64_t groups, int64_t stride_h, int64_t stride_w,
               int64_t pad_top, int64_t pad_bottom, int64_t pad_left, int64_t pad_right,
               int64_t dilation_h, int64_t dilation_w, const float* weight, const float* bias,
               const Epilogue& epilogue);
  // src is viewed as (features,) = its c * h * w; weight is (out, features).
  int add_linear(const std::string& name, int src, int64_t out_features, const float* weight,
                 const float* bias, const Epilogue& epilogue);
  // The epilogue runs over the pooled output (the Python layer moves a ReLU there from the op
  // before: max commutes with a non-decreasing activation, and the pass is 4x shorter after a 2x2).
  int add_max_pool(const std::string& name, int src, int64_t kernel_h, int64_t kernel_w,
                   int64_t stride_h, int64_t stride_w, int64_t pad_h, int64_t pad_w,
                   int64_t dilation_h, int64_t dilation_w, bool ceil_mode, const Epilogue& epilogue = {});
  int add_avg_pool(const std::string& name, int src, int64_t kernel_h, int64_t kernel_w,
                   int64_t stride_h, int64_t stride_w, int64_t pad_h, int64_t pad_w,
                   bool ceil_mode, bool count_include_pad);
  // PyTorch's adaptive windows: rows [floor(i*H/oh), ceil((i+1)*H/oh)).
  int add_adaptive_avg_pool(const std::string& name, int src, int64_t out_h, int64_t out_w);
  // y = x * scale[c] + shift[c] (a batch norm that follows no conv), then the epilogue.
  int add_channel_affine(const std::string& name, int src, const float* scale, const float* shift,
                         const Epilogue& epilogue);
  // y = x / (k + alpha / size * sum of x^2 over `size` neighbouring channels) ^ beta.
  int add_lrn(const std::string& name, int src, int64_t size, double alpha, double beta, double k);
  // y = epilogue(x): an activation and/or a residual add that no op could take.
  int add_elementwise(const std::string& name, int src, const Epilogue& epilogue);

  void set_conv_choice(PlanConvChoice choice);
  void set_batch_order(PlanBatchOrder order);
  void set_value_layout(PlanLayoutChoice choice);
  ValueShape value_shape(int value) const;
  // The value run() returns: the last one added (the input when there is no op).
  int output() const;
  int64_t num_ops() const;
  // One line per op: its layer name, kind, implementation and epilogue.
  std::string describe() const;

  // x: batch images of the input shape; y: batch images of the output shape.
  // Buffers are (re)allocated when the batch size changes, and kernels are
  // re-chosen (and weights re-packed) when the batch, ISA cap or thread count
  // changes. Calls on one plan are serialised (they share its buffers).
  // With op_seconds, the wall time of each op (its epilogue included) is
  // stored there, one entry per op (the ops run layer-major then).
  void run(const float* x, float* y, int64_t batch, std::vector<double>* op_seconds = nullptr);

  struct Impl;

 private:
  std::unique_ptr<Impl> impl_;
};

}  // namespace cnnkit
