#include "cnnkit/errors.h"

#include <limits>

namespace cnnkit {

int64_t checked_mul(int64_t a, int64_t b, const char* what) {
  CNNKIT_CHECK(a >= 0 && b >= 0, ErrorKind::Value, std::string(what) + ": negative size");
  if (a != 0 && b > std::numeric_limits<int64_t>::max() / a) {
    fail(ErrorKind::Overflow, std::string(what) + ": size overflows 64-bit integers");
  }
  return a * b;
}

int64_t checked_add(int64_t a, int64_t b, const char* what) {
  CNNKIT_CHECK(a >= 0 && b >= 0, ErrorKind::Value, std::string(what) + ": negative size");
  if (a > std::numeric_limits<int64_t>::max() - b) {
    fail(ErrorKind::Overflow, std::string(what) + ": size overflows 64-bit integers");
  }
  return a + b;
}

int64_t saturating_mul(int64_t a, int64_t b) {
  if (a != 0 && b > std::numeric_limits<int64_t>::max() / a) return std::numeric_limits<int64_t>::max();
  return a * b;
}

}  // namespace cnnkit
