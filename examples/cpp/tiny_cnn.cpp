// A tiny CNN's forward pass with cnnkit's C++ API: conv2d -> ReLU -> 2x2 max pool -> linear ->
// softmax, on two 8x8 images, a vertical bar and a horizontal one. One filter sees vertical
// edges, the other horizontal ones, and the linear layer turns each filter's features into one
// class score, so the first image comes out "vertical" and the second "horizontal".
#include <cnnkit/act.h>
#include <cnnkit/conv.h>
#include <cnnkit/errors.h>
#include <cnnkit/linear.h>
#include <cnnkit/loss.h>
#include <cnnkit/pool.h>

#include <cstdint>
#include <cstdio>
#include <vector>

int main() {
  const int64_t batch = 2, size = 8, classes = 2;
  const char* names[classes] = {"vertical", "horizontal"};
  // NCHW, one channel: image 0 lights columns 3 and 4, image 1 rows 3 and 4.
  std::vector<float> images(batch * size * size, 0.0f);
  for (int64_t i = 0; i < size; ++i) {
    for (int64_t j = 3; j <= 4; ++j) {
      images[i * size + j] = 1.0f;
      images[size * size + j * size + i] = 1.0f;
    }
  }
  // Weight (out, in, kh, kw): filter 0 takes differences across columns, filter 1 across rows.
  const std::vector<float> filters = {-1, 0, 1, -1, 0, 1, -1, 0, 1,
                                      -1, -1, -1, 0, 0, 0, 1, 1, 1};
  try {
    // Sizes in PyTorch's order: input (N, C, H, W), then weight (out, in/groups, kh, kw), groups,
    // stride, padding (top, bottom, left, right) and dilation.
    const cnnkit::Conv2dParams conv = cnnkit::make_conv2d_params(
        batch, 1, size, size, 2, 1, 3, 3, /*groups=*/1, 1, 1, 0, 0, 0, 0, 1, 1);
    std::vector<float> features(batch * conv.out_channels * conv.out_plane());
    cnnkit::conv2d_forward(conv, images.data(), filters.data(), /*bias=*/nullptr,
                           features.data(), cnnkit::ConvAlgo::Auto);
    const cnnkit::ActParams relu;  // ReLU is the default activation
    cnnkit::activation_forward(relu, features.data(), features.data(),
                               static_cast<int64_t>(features.size()));

    // Pooling sees N * C independent planes: kernel 2, stride 2, no padding, dilation 1.
    const cnnkit::Pool2dShape pool = cnnkit::make_pool2d_shape(
        "max_pool2d", batch * conv.out_channels, conv.out_h, conv.out_w, 2, 2, 2, 2, 0, 0, 1, 1,
        /*ceil_mode=*/false);
    std::vector<float> pooled(pool.planes * pool.out_h * pool.out_w);
    cnnkit::max_pool2d(pool, features.data(), pooled.data(), /*indices=*/nullptr);

    // Each image's pooled features, flattened, go through a linear layer whose class k weighs
    // channel k's features by 1/4 (scores of a few units keep the probabilities readable).
    const int64_t channel_features = pool.out_h * pool.out_w;
    const int64_t flat = conv.out_channels * channel_features;
    std::vector<float> weight(classes * flat, 0.0f);
    for (int64_t k = 0; k < classes; ++k) {
      for (int64_t i = 0; i < channel_features; ++i) weight[k * flat + k * channel_features + i] = 0.25f;
    }
    std::vector<float> scores(batch * classes), probabilities(batch * classes);
    cnnkit::linear_forward(pooled.data(), weight.data(), /*bias=*/nullptr, scores.data(), batch,
                           flat, classes);
    cnnkit::softmax_forward({batch, classes, 1}, /*log=*/false, scores.data(),
                            probabilities.data());

    std::printf("conv2d ran %s; max_pool2d ran %s\n",
                cnnkit::conv2d_forward_implementation(conv, cnnkit::ConvAlgo::Auto),
                cnnkit::pool2d_implementation());
    for (int64_t n = 0; n < batch; ++n) {
      const float* p = &probabilities[n * classes];
      std::printf("image %lld: scores (%.2f, %.2f), p(vertical) = %.3f, p(horizontal) = %.3f: %s\n",
                  static_cast<long long>(n), scores[n * classes], scores[n * classes + 1], p[0],
                  p[1], names[p[1] > p[0]]);
    }
  } catch (const cnnkit::Error& e) {
    // Every bad size or parameter surfaces here, with a message naming it.
    std::fprintf(stderr, "cnnkit: %s\n", e.what());
    return 1;
  }
  return 0;
}
