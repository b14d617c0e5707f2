// Block compression of link frame payloads (docs/protocols/link.md, "Frames"; the choice of
// codec is docs/decisions/0003-link-compression.md).
//
// A frame's payload travels compressed with one Codec; its header carries the codec number and
// the exact raw length, so Decompress knows how many bytes to expect and refuses anything else.
// The Codec numbers are on the wire: never renumber or reuse one. Stored forms: kLz4 is one
// raw LZ4 block (no LZ4 frame header); kZstd is exactly one standard zstd frame that declares
// its content size and uses no dictionary. Compress always writes that; Decompress refuses
// anything else (skippable or legacy frames, no declared size, bytes after the frame).
//
// Compress and Decompress append to the caller's string and leave it as it was on error. They
// are pure functions of their arguments (the output bytes depend only on codec, options and
// input) and thread-safe: zstd keeps one compression and one decompression context per thread
// (thread_local), so no context is shared and none is allocated per call after the first.
// Decompress treats its input as hostile (bytes from the network): whatever the input, it
// neither reads outside `in` nor writes more than `raw_length` bytes, and its memory is
// bounded by `raw_length` (at most kMaxRawLength).
//
// Errors:
//   Compress    kInvalidArgument  unknown codec, options out of range, or input longer than
//                                 kMaxRawLength (the receiver would refuse the frame);
//               kInternal         the library failed on valid arguments (a bug), or no memory
//                                 for a zstd context.
//   Decompress  kDataLoss         the stored bytes do not decode to exactly raw_length bytes
//                                 (corrupt, truncated, trailing bytes, wrong length), the codec
//                                 number is unknown, or raw_length is above kMaxRawLength. The
//                                 message says which; the link treats it as a corrupt frame.
//               kInternal         no memory for a zstd context.
//
// Neither codec adds a checksum of its own: the frame's payload checksum covers the stored
// bytes, and each record carries the checksum of its raw data.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "base/bytes.h"
#include "base/status.h"

namespace ferry::link {

// Wire numbers (frame header byte 5).
enum class Codec : uint8_t { kNone = 0, kLz4 = 1, kZstd = 2 };

// The largest raw payload the codecs accept (a cap against hostile raw_length values).
inline constexpr size_t kMaxRawLength = size_t{128} << 20;

// "none", "lz4", "zstd"; "unknown" for a number that is not a Codec.
std::string_view CodecName(Codec codec);
// Accepts exactly the names CodecName returns for known codecs.
bool ParseCodec(std::string_view name, Codec* codec);

struct CompressOptions {
  // zstd: ZSTD_minCLevel()..ZSTD_maxCLevel(); negative levels are zstd's fast modes.
  int zstd_level = 1;
  // lz4: 1 is LZ4_compress_default; larger trades ratio for speed (LZ4_compress_fast).
  int lz4_acceleration = 1;
};

// Appends `in` compressed with `codec` to *out.
Status Compress(Codec codec, std::string_view in, std::string* out);
Status Compress(Codec codec, std::string_view in, const CompressOptions& options,
                std::string* out);

// Appends the raw_length bytes that `in` decodes to with `codec` to *out.
Status Decompress(Codec codec, std::string_view in, size_t raw_length, std::string* out);

// True when every byte of `data` is zero (true for empty data). Runs at memory speed: such
// blocks travel as zero records instead of being compressed.
using ferry::IsAllZero;

}  // namespace ferry::link
