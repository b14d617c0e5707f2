// Fixed-width encoding of integers into byte buffers: the only functions that pack or unpack
// integers. Every Ferry format is little-endian (EncodeFixed/DecodeFixed/AppendFixed); the
// big-endian forms (PutBe/GetBe/AppendBe) are for wire protocols that prescribe network byte
// order, such as NBD.
#pragma once

#include <cstdint>
#include <cstring>
#include <string>
#include <type_traits>

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

template <typename T>
inline void PutBe(uint8_t* p, T v) {
  static_assert(std::is_unsigned_v<T>);
  for (size_t i = 0; i < sizeof(T); ++i) p[i] = static_cast<uint8_t>(v >> (8 * (sizeof(T) - 1 - i)));
}

template <typename T>
inline T GetBe(const uint8_t* p) {
  static_assert(std::is_unsigned_v<T>);
  T v = 0;
  for (size_t i = 0; i < sizeof(T); ++i) v = static_cast<T>(v << 8 | p[i]);
  return v;
}

template <typename T>
inline void AppendBe(std::string* dst, T v) {
  uint8_t buf[sizeof(T)];
  PutBe(buf, v);
  dst->append(reinterpret_cast<const char*>(buf), sizeof(T));
}

}  // namespace ferry
