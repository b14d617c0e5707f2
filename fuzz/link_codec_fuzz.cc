// Fuzzes the link's payload decompression (src/link/codec.h) with what a hostile or broken
// peer could put in a frame: any codec number, any raw_length, any stored bytes.
//
// The first input byte picks the codec (0 none, 1 lz4, 2 zstd, 3 an unknown number); the next
// picks how the rest is used:
//   0  raw_length up to 64 KiB from the input, the rest as the stored bytes;
//   1  raw_length any 64-bit value (the cap, the LZ4 expansion bound, zstd's declared size);
//   2  the rest is compressed with the codec (levels and acceleration from the input), then
//      decompressed: it must come back byte for byte; then one byte of the stored form is
//      flipped, and that must decode to raw_length bytes or fail with kDataLoss.
// Whatever the input: Decompress returns ok with exactly raw_length bytes appended or
// kDataLoss with the output untouched; no crash, no sanitizer report. IsAllZero is checked
// against a byte loop on the same bytes.
#include <fuzzer/FuzzedDataProvider.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "link/codec.h"

using namespace ferry;
using namespace ferry::link;

namespace {

void Require(bool ok, const char* what) {
  if (!ok) {
    std::fprintf(stderr, "link_codec_fuzz: %s\n", what);
    std::abort();
  }
}

// Decompresses and checks the contract; returns the output without its prefix when ok.
bool CheckedDecompress(Codec codec, std::string_view stored, size_t raw_length,
                       std::string* raw) {
  std::string out = "prefix";
  Status s = Decompress(codec, stored, raw_length, &out);
  if (!s.ok()) {
    Require(s.code() == Code::kDataLoss, "Decompress failed with a code other than DataLoss");
    Require(out == "prefix", "Decompress changed the output on error");
    return false;
  }
  Require(out.size() == 6 + raw_length, "Decompress returned ok with the wrong length");
  Require(out.compare(0, 6, "prefix") == 0, "Decompress overwrote the prefix");
  if (raw != nullptr) *raw = out.substr(6);
  return true;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  {
    std::string_view all(reinterpret_cast<const char*>(data), size);
    Require(IsAllZero(all) == std::all_of(all.begin(), all.end(), [](char c) { return c == 0; }),
            "IsAllZero disagrees with a byte loop");
  }
  FuzzedDataProvider in(data, size);
  const uint8_t c = in.ConsumeIntegralInRange<uint8_t>(0, 3);
  const Codec codec = c == 3 ? static_cast<Codec>(in.ConsumeIntegralInRange<uint8_t>(3, 255))
                             : static_cast<Codec>(c);
  switch (in.ConsumeIntegralInRange(0, 2)) {
    case 0: {
      const size_t raw_length = in.ConsumeIntegralInRange<size_t>(0, 64 << 10);
      (void)CheckedDecompress(codec, in.ConsumeRemainingBytesAsString(), raw_length, nullptr);
      break;
    }
    case 1: {
      const size_t raw_length = in.ConsumeIntegral<uint64_t>();
      (void)CheckedDecompress(codec, in.ConsumeRemainingBytesAsString(), raw_length, nullptr);
      break;
    }
    default: {
      CompressOptions options;
      options.zstd_level = in.ConsumeIntegralInRange(-5, 9);
      options.lz4_acceleration = in.ConsumeIntegralInRange(1, 64);
      const size_t flip_at = in.ConsumeIntegral<uint16_t>();
      const uint8_t flip = in.ConsumeIntegral<uint8_t>();
      const std::string raw = in.ConsumeRemainingBytesAsString();
      std::string stored;
      Status s = Compress(codec, raw, options, &stored);
      if (c == 3) {
        Require(s.code() == Code::kInvalidArgument, "Compress accepted an unknown codec");
        break;
      }
      Require(s.ok(), "Compress failed on valid arguments");
      std::string back;
      Require(CheckedDecompress(codec, stored, raw.size(), &back), "round trip failed");
      Require(back == raw, "round trip changed the bytes");
      if (!stored.empty() && flip != 0) {
        stored[flip_at % stored.size()] ^= static_cast<char>(flip);
        (void)CheckedDecompress(codec, stored, raw.size(), nullptr);
      }
      break;
    }
  }
  return 0;
}
