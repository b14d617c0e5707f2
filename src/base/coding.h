// Little-endian fixed-width encoding of integers into byte buffers. Every Ferry format is
// little-endian; these are the only functions that pack or unpack integers.
#pragma once

#include <cstdint>
#include <cstring>
#include <string>

namespace ferry {

template <typename T>
inline void EncodeFixed(uint8_t* dst, T v) {
  static_assert(std::is_unsigned_v<T>);
  for (size_t i = 0; i < sizeof(T); ++i) dst[i] = static_cast<uint8_t>(v >> (8 * i));
}

template <typename T>
inline T DecodeFixed(const uint8_t* src) {
  static_assert(std::is_unsigned_v<T>);
  T v = 0;
  for (size_t i = 0; i < sizeof(T); ++i) v |= static_cast<T>(src[i]) << (8 * i);
  return v;
}

template <typename T>
inline void AppendFixed(std::string* dst, T v) {
  uint8_t buf[sizeof(T)];
  EncodeFixed(buf, v);
  dst->append(reinterpret_cast<const char*>(buf), sizeof(T));
}

}  // namespace ferry
