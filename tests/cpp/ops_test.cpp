// Checks a few ops of the installed C++ package against values worked out by hand, under every
// ISA this CPU runs and with 1 and 2 threads, and checks that bad parameters throw cnnkit::Error
// of the documented kind. Inputs are small integers, so most expected values are exact in float32.
#include <cnnkit/act.h>
#include <cnnkit/conv.h>
#include <cnnkit/errors.h>
#include <cnnkit/gemm.h>
#include <cnnkit/isa.h>
#include <cnnkit/loss.h>
#include <cnnkit/pool.h>
#include <cnnkit/threads.h>

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <limits>
#include <string>
#include <vector>

namespace {

int g_failures = 0;
std::string g_context = "setup";

void report(const char* what, int line, const std::string& detail) {
  ++g_failures;
  std::fprintf(stderr, "FAIL [%s] line %d: %s%s\n", g_context.c_str(), line, what, detail.c_str());
}

#define CHECK(cond) \
  do {                                         \
    if (!(cond)) report(#cond, __LINE__, ""); \
  } while (0)

// Element by element; tol = 0 asks for exact equality.
void check_close(const std::vector<float>& got, const std::vector<float>& want, float tol,
                 const char* what, int line) {
  if (got.size() != want.size()) {
    report(what, line, ": size " + std::to_string(got.size()) + ", want " + std::to_string(want.size()));
    return;
  }
  for (size_t i = 0; i < got.size(); ++i) {
    if (!(std::fabs(got[i] - want[i]) <= tol)) {
      report(what, line, ": [" + std::to_string(i) + "] = " + std::to_string(got[i]) + ", want " +
                             std::to_string(want[i]));
      return;
    }
  }
}
#define CHECK_EQUAL(got, want) check_close((got), (want), 0.0f, #got, __LINE__)
// For results that go through exp and log: a few float32 roundings of values below 2.
#define CHECK_NEAR(got, want) check_close((got), (want), 1e-6f, #got, __LINE__)

// `call` must throw cnnkit::Error of `kind` whose message contains `needle`.
template <class Call>
void check_throws(cnnkit::ErrorKind kind, const char* needle, Call call, const char* what, int line) {
  try {
    call();
    report(what, line, ": did not throw");
  } catch (const cnnkit::Error& e) {
    if (e.kind() != kind) report(what, line, std::string(": wrong error kind: ") + e.what());
    if (std::string(e.what()).find(needle) == std::string::npos) {
      report(what, line, std::string(": message lacks \"") + needle + "\": " + e.what());
    }
  }
}
#define CHECK_THROWS(kind, needle, expr) \
  check_throws((kind), (needle), [&] { expr; }, #expr, __LINE__)

// x[r][c] = 4r + c + 1, one 4x4 plane:
//    1  2  3  4
//    5  6  7  8
//    9 10 11 12
//   13 14 15 16
const std::vector<float> kCounting = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16};

void test_conv2d_stride_2_padding_1() {
  // 3x3 kernels, stride 2, padding 1: out = (4 + 2 - 3) / 2 + 1 = 2 per side. Output (i, j)
  // reads x[2i - 1 + kh][2j - 1 + kw] for tap (kh, kw); padding reads 0.
  const cnnkit::Conv2dParams p =
      cnnkit::make_conv2d_params(1, 1, 4, 4, 2, 1, 3, 3, 1, 2, 2, 1, 1, 1, 1, 1, 1);
  CHECK(p.out_h == 2 && p.out_w == 2);
  // Filter 0 has tap (1,1) = 1 and tap (2,2) = 2, so out = x[2i][2j] + 2 x[2i+1][2j+1] - 1:
  //   (0,0): 1 + 2*6 - 1 = 12    (0,1): 3 + 2*8 - 1 = 18
  //   (1,0): 9 + 2*14 - 1 = 36   (1,1): 11 + 2*16 - 1 = 42
  // A flipped kernel (true convolution) would read x[2i-1][2j-1] instead and differ.
  // Filter 1 is all ones: the sum of the window's part inside the image, + 0.5:
  //   (0,0): 1+2+5+6 = 14                (0,1): 2+3+4+6+7+8 = 30
  //   (1,0): 5+6+9+10+13+14 = 57         (1,1): 6+7+8+10+11+12+14+15+16 = 99
  const std::vector<float> w = {0, 0, 0, 0, 1, 0, 0, 0, 2,
                                1, 1, 1, 1, 1, 1, 1, 1, 1};
  const std::vector<float> bias = {-1.0f, 0.5f};
  const std::vector<float> want = {12, 18, 36, 42, 14.5f, 30.5f, 57.5f, 99.5f};
  const std::string context = g_context;
  for (const char* algo : {"auto", "direct", "im2col", "reference"}) {
    g_context = context + ", algo=" + algo;
    std::vector<float> y(8, std::nanf(""));
    cnnkit::conv2d_forward(p, kCounting.data(), w.data(), bias.data(), y.data(),
                           cnnkit::parse_conv_algo(algo));
    CHECK_EQUAL(y, want);
  }
  g_context = context;
}

// One 4x4 plane with its maxima in different corners of the 2x2 windows:
//    1  8  2  3
//    5  4  7  6
//    9  0 -1 -2
//   12 11 -3 15
const std::vector<float> kPlane = {1, 8, 2, 3, 5, 4, 7, 6, 9, 0, -1, -2, 12, 11, -3, 15};

void test_max_pool_2x2() {
  const cnnkit::Pool2dShape s =
      cnnkit::make_pool2d_shape("max_pool2d", 1, 4, 4, 2, 2, 2, 2, 0, 0, 1, 1, false);
  CHECK(s.out_h == 2 && s.out_w == 2);
  // Windows {1,8,5,4}, {2,3,7,6}, {9,0,12,11}, {-1,-2,-3,15}: maxima 8, 7, 12, 15 at flat
  // positions 1, 6, 12 and 15 of the plane.
  std::vector<float> out(4);
  std::vector<int64_t> indices(4);
  cnnkit::max_pool2d(s, kPlane.data(), out.data(), indices.data());
  CHECK_EQUAL(out, (std::vector<float>{8, 7, 12, 15}));
  CHECK((indices == std::vector<int64_t>{1, 6, 12, 15}));
  // The gradient goes back to those positions only.
  const std::vector<float> grad_out = {1, 2, 3, 4};
  std::vector<float> grad_in(16, std::nanf(""));
  cnnkit::max_pool2d_backward(s, grad_out.data(), indices.data(), grad_in.data());
  CHECK_EQUAL(grad_in, (std::vector<float>{0, 1, 0, 0, 0, 0, 2, 0, 0, 0, 0, 0, 3, 0, 0, 4}));
}

void test_avg_pool_padding() {
  // Kernel 2, stride 2, padding 1: out = (4 + 2 - 2) / 2 + 1 = 3 per side; the windows cover
  // rows {0}, {1,2}, {3} and the same columns. Window sums (elements inside the image):
  //   {1} = 1        {8,2} = 10          {3} = 3
  //   {5,9} = 14     {4,7,0,-1} = 10     {6,-2} = 4
  //   {12} = 12      {11,-3} = 8         {15} = 15
  // count_include_pad divides each by 4; without it, by 1, 2, 1 / 2, 4, 2 / 1, 2, 1.
  const cnnkit::Pool2dShape s =
      cnnkit::make_pool2d_shape("avg_pool2d", 1, 4, 4, 2, 2, 2, 2, 1, 1, 1, 1, false);
  CHECK(s.out_h == 3 && s.out_w == 3);
  std::vector<float> out(9);
  cnnkit::avg_pool2d(s, true, kPlane.data(), out.data());
  CHECK_EQUAL(out, (std::vector<float>{0.25f, 2.5f, 0.75f, 3.5f, 2.5f, 1, 3, 2, 3.75f}));
  cnnkit::avg_pool2d(s, false, kPlane.data(), out.data());
  CHECK_EQUAL(out, (std::vector<float>{1, 5, 3, 7, 2.5f, 2, 12, 4, 15}));
}

void test_sgemm() {
  // [1 2 3]   [ 7  8]   [1*7 + 2*9 + 3*11  1*8 + 2*10 + 3*12]   [ 58  64]
  // [4 5 6] x [ 9 10] = [4*7 + 5*9 + 6*11  4*8 + 5*10 + 6*12] = [139 154]
  //           [11 12]
  const std::vector<float> a = {1, 2, 3, 4, 5, 6};
  const std::vector<float> b = {7, 8, 9, 10, 11, 12};
  // beta = 0 must overwrite C without reading the NaNs in it.
  std::vector<float> c(4, std::nanf(""));
  cnnkit::sgemm(false, false, 2, 2, 3, 1.0f, a.data(), 3, b.data(), 2, 0.0f, c.data(), 2);
  CHECK_EQUAL(c, (std::vector<float>{58, 64, 139, 154}));
  // B stored transposed ([N, K]); C = 2 * A B - 1 * C with C all ones: 2 * 58 - 1 = 115, ...
  const std::vector<float> b_t = {7, 9, 11, 8, 10, 12};
  c.assign(4, 1.0f);
  cnnkit::sgemm(false, true, 2, 2, 3, 2.0f, a.data(), 3, b_t.data(), 3, -1.0f, c.data(), 2);
  CHECK_EQUAL(c, (std::vector<float>{115, 127, 277, 307}));

  // 37 is past two AVX-512 vectors and four AVX2 ones, so the SIMD kernels and their tails run.
  // Entries in [-2, 2] keep every partial sum a small integer, exact in float; the expected
  // product is a plain loop here, independent of the library.
  const int64_t n = 37;
  std::vector<float> x(n * n), y(n * n), z(n * n), want(n * n, 0.0f);
  for (int64_t i = 0; i < n * n; ++i) {
    x[i] = static_cast<float>((i * 7) % 5 - 2);
    y[i] = static_cast<float>((i * 3) % 5 - 2);
  }
  for (int64_t i = 0; i < n; ++i)
    for (int64_t k = 0; k < n; ++k)
      for (int64_t j = 0; j < n; ++j) want[i * n + j] += x[i * n + k] * y[k * n + j];
  cnnkit::sgemm(false, false, n, n, n, 1.0f, x.data(), n, y.data(), n, 0.0f, z.data(), n);
  CHECK_EQUAL(z, want);
}

void test_activations() {
  // Repeated to 20 elements so a vector body and a tail both run.
  std::vector<float> x;
  for (int i = 0; i < 4; ++i) x.insert(x.end(), {-2.0f, -0.5f, 0.0f, 3.0f, 7.0f});
  auto repeat = [](std::vector<float> five) {
    std::vector<float> out;
    for (int i = 0; i < 4; ++i) out.insert(out.end(), five.begin(), five.end());
    return out;
  };
  std::vector<float> y(x.size());
  cnnkit::ActParams relu;
  cnnkit::activation_forward(relu, x.data(), y.data(), static_cast<int64_t>(x.size()));
  CHECK_EQUAL(y, repeat({0, 0, 0, 3, 7}));
  // PyTorch's ReLU gradient at 0 is 0.
  const std::vector<float> ones(x.size(), 1.0f);
  cnnkit::activation_backward(relu, ones.data(), x.data(), y.data(), static_cast<int64_t>(x.size()));
  CHECK_EQUAL(y, repeat({0, 0, 0, 1, 1}));

  cnnkit::ActParams leaky;
  leaky.kind = cnnkit::parse_activation("leaky_relu");
  leaky.alpha = 0.25f;  // -2 * 0.25 = -0.5, -0.5 * 0.25 = -0.125
  cnnkit::activation_forward(leaky, x.data(), y.data(), static_cast<int64_t>(x.size()));
  CHECK_EQUAL(y, repeat({-0.5f, -0.125f, 0, 3, 7}));

  cnnkit::ActParams relu6;
  relu6.kind = cnnkit::Activation::Relu6;  // min(max(x, 0), 6)
  cnnkit::activation_forward(relu6, x.data(), y.data(), static_cast<int64_t>(x.size()));
  CHECK_EQUAL(y, repeat({0, 0, 0, 3, 6}));
}

void test_softmax_and_cross_entropy() {
  // softmax(0, ln 3) = (1, 3) / (1 + 3) = (1/4, 3/4); log_softmax = (-ln 4, ln 3 - ln 4).
  const float ln3 = std::log(3.0f), ln4 = std::log(4.0f);
  const std::vector<float> x = {0.0f, ln3};
  std::vector<float> y(2);
  cnnkit::softmax_forward({1, 2, 1}, false, x.data(), y.data());
  CHECK_NEAR(y, (std::vector<float>{0.25f, 0.75f}));
  cnnkit::softmax_forward({1, 2, 1}, true, x.data(), y.data());
  CHECK_NEAR(y, (std::vector<float>{-ln4, ln3 - ln4}));

  // Equal logits give probability 1/4 to each of the 4 classes, so each counted row's loss is
  // -ln(1/4) = ln 4 whatever its target (row 1 checks the shift by the row maximum, 5). Row 2
  // is ignored: 0 in "none", left out of the mean's count (so the mean is ln 4, the sum 2 ln 4).
  const std::vector<float> logits = {0, 0, 0, 0, 5, 5, 5, 5, 1, 2, 3, 4};
  const std::vector<int64_t> target = {3, 0, -100};
  std::vector<float> losses(3);
  cnnkit::cross_entropy_forward(logits.data(), target.data(), 3, 4, -100, cnnkit::Reduction::None,
                                losses.data());
  CHECK_NEAR(losses, (std::vector<float>{ln4, ln4, 0}));
  std::vector<float> loss(1);
  cnnkit::cross_entropy_forward(logits.data(), target.data(), 3, 4, -100, cnnkit::Reduction::Mean,
                                loss.data());
  CHECK_NEAR(loss, std::vector<float>{ln4});
  cnnkit::cross_entropy_forward(logits.data(), target.data(), 3, 4, -100,
                                cnnkit::parse_reduction("sum"), loss.data());
  CHECK_NEAR(loss, std::vector<float>{2 * ln4});
  // d(mean)/d(logits) = (softmax - one_hot(target)) / 2 counted rows: 1/8 = 0.125 off the
  // target, (1/4 - 1) / 2 = -0.375 on it; zeros for the ignored row.
  const std::vector<float> grad_output = {1.0f};
  std::vector<float> grad(12, std::nanf(""));
  cnnkit::cross_entropy_backward(logits.data(), target.data(), 3, 4, -100, cnnkit::Reduction::Mean,
                                 grad_output.data(), grad.data());
  CHECK_NEAR(grad, (std::vector<float>{0.125f, 0.125f, 0.125f, -0.375f,
                                       -0.375f, 0.125f, 0.125f, 0.125f,
                                       0, 0, 0, 0}));
}

void test_bad_parameters_throw() {
  using cnnkit::ErrorKind;
  CHECK_THROWS(ErrorKind::Value, "stride",
               cnnkit::make_conv2d_params(1, 1, 4, 4, 1, 1, 3, 3, 1, 0, 1, 0, 0, 0, 0, 1, 1));
  CHECK_THROWS(ErrorKind::Value, "groups",
               cnnkit::make_conv2d_params(1, 3, 4, 4, 2, 1, 3, 3, 2, 1, 1, 0, 0, 0, 0, 1, 1));
  // Padding 2 is more than half of kernel 2.
  CHECK_THROWS(ErrorKind::Value, "padding",
               cnnkit::make_pool2d_shape("max_pool2d", 1, 4, 4, 2, 2, 2, 2, 2, 2, 1, 1, false));
  CHECK_THROWS(ErrorKind::Value, "num_threads", cnnkit::set_num_threads(0));
  CHECK_THROWS(ErrorKind::Value, "swish", cnnkit::parse_activation("swish"));
  CHECK_THROWS(ErrorKind::Value, "reduction", cnnkit::parse_reduction("average"));
  CHECK_THROWS(ErrorKind::Overflow, "bytes",
               cnnkit::checked_mul(std::numeric_limits<int64_t>::max(), 2, "bytes"));

  // A label outside [0, C) is an Index error raised before anything is written.
  const std::vector<float> logits(8, 0.0f);
  const std::vector<int64_t> target = {1, 4};
  std::vector<float> out = {-7.0f, -7.0f};
  CHECK_THROWS(ErrorKind::Index, "target",
               cnnkit::cross_entropy_forward(logits.data(), target.data(), 2, 4, -100,
                                             cnnkit::Reduction::None, out.data()));
  CHECK_EQUAL(out, (std::vector<float>{-7.0f, -7.0f}));
}

}  // namespace

int main() {
  test_bad_parameters_throw();
  int runs = 0;
  for (cnnkit::Isa isa : {cnnkit::Isa::Scalar, cnnkit::Isa::Avx2, cnnkit::Isa::Avx512}) {
    if (!cnnkit::isa_compiled(isa) || isa > cnnkit::detected_isa()) continue;
    cnnkit::set_max_isa(isa);
    for (int threads : {1, 2}) {
      cnnkit::set_num_threads(threads);
      g_context = std::string("isa=") + cnnkit::isa_name(isa) + ", threads=" + std::to_string(threads);
      test_conv2d_stride_2_padding_1();
      test_max_pool_2x2();
      test_avg_pool_padding();
      test_sgemm();
      test_activations();
      test_softmax_and_cross_entropy();
      ++runs;
      std::printf("ops checked under %s\n", g_context.c_str());
    }
  }
  if (runs == 0) {
    std::fprintf(stderr, "FAIL: no ISA enabled, not even scalar\n");
    return 1;
  }
  if (g_failures != 0) {
    std::fprintf(stderr, "%d check(s) failed\n", g_failures);
    return 1;
  }
  return 0;
}
