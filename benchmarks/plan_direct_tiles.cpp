// The plan's direct convolution with AVX2 register tiles of different shapes
// on one 3x3 layer padded by 1 (blocked, bordered input and output, bias and
// ReLU fused), each timed at its fastest over interleaved rounds in one process.
//
//   c++ -O3 -std=gnu++17 -mavx2 -mfma -ffp-contract=fast -Icsrc/include -Icsrc \
//       benchmarks/plan_direct_tiles.cpp BUILD/libcnnkit.a -lpthread -o /tmp/plan_direct_tiles
//   /tmp/plan_direct_tiles CHANNELS SIZE [BATCH] [THREADS]
//
// BUILD is a CMake build folder of cnnkit (its static core library). The
// shapes: the column walk with one vector of output channels x 8 or 12
// positions (plan_direct_tile), and tap order with two vectors x 6 positions,
// or x 2 rows x 3 (plan_direct_tile_taps).
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <vector>

#include "cnnkit/threads.h"
#include "cpu/plan/plan_direct_impl.h"
#include "cpu/simd/avx2.h"

using namespace cnnkit;

int main(int argc, char** argv) {
  if (argc < 3) {
    std::fprintf(stderr, "usage: %s CHANNELS SIZE [BATCH] [THREADS]\n", argv[0]);
    return 2;
  }
  const int64_t C = std::atoi(argv[1]), H = std::atoi(argv[2]);
  const int64_t N = argc > 3 ? std::atoi(argv[3]) : 1;
  set_num_threads(argc > 4 ? std::atoi(argv[4]) : 1);
  const Conv2dParams p = make_conv2d_params(N, C, H, H, C, C, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1, 1);
  std::vector<float> w(C * C * 9), bias(C);
  for (size_t i = 0; i < w.size(); ++i) w[i] = static_cast<float>(i % 17) * 0.01f - 0.08f;
  PlanDirectConv c;
  if (!pack_plan_direct(p, w.data(), bias.data(), &c)) return 1;
  PlanDirectLayout layout;
  layout.in = {1, true};
  layout.out = {1, true};
  std::vector<float> x(N * C * (H + 2) * (H + 2), 0.5f), y(x.size());
  ActParams relu;
  relu.kind = Activation::Relu;
  PlanDirectEpilogue e;
  e.act = &relu;
  using Run = void (*)(const Conv2dParams&, const PlanDirectConv&, const float*, const PlanDirectEpilogue&, float*,
                       const PlanDirectLayout&);
  const struct {
    const char* name;
    Run run;
  } shapes[] = {{"walk 1x8", plan_direct_run<Avx2, 1, 3, 1, 8, 1, true, false>},
                {"walk 1x12", plan_direct_run<Avx2, 1, 3, 1, 12, 1, true, false>},
                {"taps 2x6", plan_direct_run<Avx2, 2, 3, 1, 6, 1, true, false>},
                {"taps 2x2x3", plan_direct_run<Avx2, 2, 3, 1, 3, 2, true, false>}};
  std::vector<double> best(std::size(shapes), 1e30);
  for (int round = 0; round < 30; ++round) {
    for (size_t s = 0; s < std::size(shapes); ++s) {
      for (int rep = 0; rep < 5; ++rep) {
        const auto t0 = std::chrono::steady_clock::now();
        shapes[s].run(p, c, x.data(), e, y.data(), layout);
        best[s] = std::min(best[s], std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
      }
    }
  }
  const double flops = 2.0 * N * C * C * 9 * H * H;
  std::printf("%lld channels, %lldx%lld, batch %lld, %d threads:", static_cast<long long>(C),
              static_cast<long long>(H), static_cast<long long>(H), static_cast<long long>(N), num_threads());
  for (size_t s = 0; s < std::size(shapes); ++s) {
    std::printf("  %s %.1f GFLOP/s", shapes[s].name, flops / best[s] / 1e9);
  }
  std::printf("\n");
}
