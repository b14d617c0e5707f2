#include "base/bytes.h"

#include <cstring>

namespace ferry {

bool IsAllZero(std::string_view data) {
  // memcmp against a zero page that stays in L1: glibc's vectorised memcmp, early exit at the
  // first non-zero byte.
  static constexpr size_t kPage = 4096;
  alignas(64) static const char kZeros[kPage] = {};
  const char* p = data.data();
  size_t n = data.size();
  for (; n >= kPage; p += kPage, n -= kPage) {
    if (std::memcmp(p, kZeros, kPage) != 0) return false;
  }
  return n == 0 || std::memcmp(p, kZeros, n) == 0;
}

}  // namespace ferry
