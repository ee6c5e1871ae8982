// The thread count used by every parallel region in cnnkit.
#pragma once

namespace cnnkit {

// Defaults to OMP_NUM_THREADS when set, else the cores this process may use.
int num_threads();
// n >= 1; throws a Value error otherwise.
void set_num_threads(int n);

// Off by default. When on, reductions that otherwise split their terms by the
// thread count (the conv weight gradients of im2col and kvec keep one partial
// sum per thread's share of the images) split them into a fixed number of
// shares instead, summed in a fixed order: the same bits with any thread count.
bool deterministic();
void set_deterministic(bool on);

}  // namespace cnnkit
