// Errors raised by the core. The Python bindings map each kind to the
// matching Python exception; C++ callers catch cnnkit::Error.
#pragma once
#include <cstdint>
#include <stdexcept>
#include <string>

namespace cnnkit {

enum class ErrorKind { Value, Type, Index, Overflow, Memory };

class Error : public std::runtime_error {
 public:
  Error(ErrorKind kind, const std::string& message) : std::runtime_error(message), kind_(kind) {}
  ErrorKind kind() const { return kind_; }

 private:
  ErrorKind kind_;
};

[[noreturn]] inline void fail(ErrorKind kind, const std::string& message) { throw Error(kind, message); }

// Checks stay on in release builds: they guard every shape that reaches a kernel.
// A macro so that the message, often built with std::to_string, is only built
// when the check fails: built eagerly, the messages cost a tiny conv2d call a
// third of its time.
#define CNNKIT_CHECK(ok, kind, message)            \
  do {                                             \
    if (!(ok)) ::cnnkit::fail((kind), (message));  \
  } while (0)

// Size arithmetic for validation, where every derived size is formed once so
// that no kernel sees a value that wrapped. a * b and a + b of non-negative
// sizes fail with an Overflow error naming `what` instead of wrapping.
int64_t checked_mul(int64_t a, int64_t b, const char* what);
int64_t checked_add(int64_t a, int64_t b, const char* what);
// a * b of non-negative sizes, or INT64_MAX where that does not fit: for sizes
// that only bound a choice (a padded plane too big to count is one no kernel
// will copy), so an overflow is a no rather than an error.
int64_t saturating_mul(int64_t a, int64_t b);

}  // namespace cnnkit
