// conv2d: the ordered lists of implementations and the choice of algorithm.
//
// algo="auto" resolves per call to im2col when the GEMM it feeds is big enough
// to pay for writing the column matrix: a reduction (C/g*kh*kw) of at least 32
// and at least 4 output channels per group. Depthwise, tiny-channel and
// first-layer-like convolutions stay direct. (A first guess: to be replaced by
// measurements.)
//
// Each list runs the first entry that accepts the call: im2col takes im2col
// calls whose single column fits the workspace bound, direct takes direct
// calls and the im2col calls that did not fit, the reference takes the rest.
#include <cstring>
#include <string>

#include "cnnkit/conv.h"
#include "cnnkit/errors.h"
#include "core/registry.h"
#include "cpu/conv/kernels.h"

namespace cnnkit {
namespace {

struct ConvCall {
  const Conv2dParams* p;
  ConvAlgo algo;  // resolved: never Auto
};

bool accepts_im2col(const ConvCall& c) { return c.algo == ConvAlgo::Im2col && im2col_fits(*c.p); }
bool accepts_direct_rows(const ConvCall& c) {
  return c.algo == ConvAlgo::Direct && direct_rows_fits(*c.p);
}
bool accepts_direct(const ConvCall& c) {
  return c.algo == ConvAlgo::Direct || c.algo == ConvAlgo::Im2col;
}

using ForwardFn = void (*)(const Conv2dParams&, const float*, const float*, const float*, float*);
using BackwardFn = void (*)(const Conv2dParams&, const float*, const float*, const float*, float*,
                            float*, float*);

const KernelImpl<ConvCall, ForwardFn> kForwardImpls[] = {
#ifdef CNNKIT_X86
    {"direct_rows_avx512", Isa::Avx512, accepts_direct_rows, conv2d_forward_direct_rows_avx512},
    {"direct_rows_avx2", Isa::Avx2, accepts_direct_rows, conv2d_forward_direct_rows_avx2},
#endif
    {"im2col", Isa::Scalar, accepts_im2col, conv2d_forward_im2col},
    {"direct", Isa::Scalar, accepts_direct, conv2d_forward_direct},
    {"reference", Isa::Scalar, nullptr, conv2d_forward_reference},
};

const KernelImpl<ConvCall, BackwardFn> kBackwardImpls[] = {
    {"im2col", Isa::Scalar, accepts_im2col, conv2d_backward_im2col},
    {"direct", Isa::Scalar, accepts_direct, conv2d_backward_direct},
    {"reference", Isa::Scalar, nullptr, conv2d_backward_reference},
};

ConvCall resolve(const Conv2dParams& p, ConvAlgo algo) {
  if (algo == ConvAlgo::Auto) {
    const bool gemm_pays = p.reduction() >= 32 && p.group_out_channels() >= 4 && im2col_fits(p);
    algo = gemm_pays ? ConvAlgo::Im2col : ConvAlgo::Direct;
  }
  return {&p, algo};
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

void conv2d_forward(const Conv2dParams& p, const float* x, const float* w, const float* bias,
                    float* y, ConvAlgo algo) {
  select_kernel(kForwardImpls, resolve(p, algo)).run(p, x, w, bias, y);
}

void conv2d_backward(const Conv2dParams& p, const float* dy, const float* x, const float* w,
                     float* dx, float* dw, float* db, ConvAlgo algo) {
  select_kernel(kBackwardImpls, resolve(p, algo)).run(p, dy, x, w, dx, dw, db);
}

const char* conv2d_forward_implementation(const Conv2dParams& p, ConvAlgo algo) {
  return select_kernel(kForwardImpls, resolve(p, algo)).name;
}

const char* conv2d_backward_implementation(const Conv2dParams& p, ConvAlgo algo) {
  return select_kernel(kBackwardImpls, resolve(p, algo)).name;
}

}  // namespace cnnkit
