// Checksums used by every Ferry format: XXH3-64 (xxhash library). Runs at memory speed.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string_view>

namespace ferry {

uint64_t Checksum64(const void* data, size_t n);
inline uint64_t Checksum64(std::string_view s) { return Checksum64(s.data(), s.size()); }

// Incremental form for data held in several pieces.
class Checksummer {
 public:
  Checksummer();
  ~Checksummer();
  Checksummer(const Checksummer&) = delete;
  Checksummer& operator=(const Checksummer&) = delete;
  void Update(const void* data, size_t n);
  uint64_t Digest() const;

 private:
  void* state_;
};

}  // namespace ferry
