// The thread count used by every parallel region in cnnkit.
#pragma once

namespace cnnkit {

// Defaults to OMP_NUM_THREADS when set, else the cores this process may use.
int num_threads();
// n >= 1; throws a Value error otherwise.
void set_num_threads(int n);

}  // namespace cnnkit
