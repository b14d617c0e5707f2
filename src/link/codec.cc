#include "link/codec.h"

#include <lz4.h>
#include <zstd.h>

#include <cstring>
#include <memory>

#include "base/coding.h"

namespace ferry::link {
namespace {

// LZ4's documented range for the acceleration factor (LZ4_ACCELERATION_MAX in lz4.c).
constexpr int kMaxLz4Acceleration = 65537;

// In an LZ4 block each input byte yields at most 255 output bytes (a match-length extension
// byte), so a raw length above 255 times the stored length cannot be right: refuse it before
// allocating anything for it.
constexpr size_t kMaxLz4Expansion = 255;

struct ZstdCCtxFree {
  void operator()(ZSTD_CCtx* c) const { ZSTD_freeCCtx(c); }
};
struct ZstdDCtxFree {
  void operator()(ZSTD_DCtx* d) const { ZSTD_freeDCtx(d); }
};

// One context per thread: creating one costs more than compressing a 4 KiB block.
ZSTD_CCtx* ThreadCCtx() {
  thread_local std::unique_ptr<ZSTD_CCtx, ZstdCCtxFree> cctx(ZSTD_createCCtx());
  return cctx.get();
}

ZSTD_DCtx* ThreadDCtx() {
  thread_local std::unique_ptr<ZSTD_DCtx, ZstdDCtxFree> dctx(ZSTD_createDCtx());
  return dctx.get();
}

// The libraries want a non-null pointer even for zero bytes.
const char* Data(std::string_view s) { return s.data() != nullptr ? s.data() : ""; }

Status NotDecompressing(Codec codec, size_t raw_length, std::string_view why) {
  std::string m(CodecName(codec));
  m += " frame does not decompress to ";
  m += std::to_string(raw_length);
  m += " bytes: ";
  m += why;
  return DataLoss(std::move(m));
}

Status CompressLz4(std::string_view in, int acceleration, std::string* out) {
  const int bound = LZ4_compressBound(static_cast<int>(in.size()));
  const size_t old = out->size();
  out->resize(old + static_cast<size_t>(bound));
  const int n = LZ4_compress_fast(Data(in), out->data() + old, static_cast<int>(in.size()), bound,
                                  acceleration);
  if (n <= 0) {
    out->resize(old);
    return Internal("LZ4_compress_fast failed on " + std::to_string(in.size()) + " bytes");
  }
  out->resize(old + static_cast<size_t>(n));
  return Status::Ok();
}

Status CompressZstd(std::string_view in, int level, std::string* out) {
  ZSTD_CCtx* cctx = ThreadCCtx();
  if (cctx == nullptr) return Internal("ZSTD_createCCtx failed (out of memory)");
  const size_t bound = ZSTD_compressBound(in.size());
  const size_t old = out->size();
  out->resize(old + bound);
  // ZSTD_compressCCtx applies `level` and nothing else: the frame declares its content size
  // and carries no checksum, whatever an earlier call did with this context.
  const size_t n = ZSTD_compressCCtx(cctx, out->data() + old, bound, Data(in), in.size(), level);
  if (ZSTD_isError(n)) {
    out->resize(old);
    return Internal("ZSTD_compressCCtx failed on " + std::to_string(in.size()) +
                    " bytes: " + ZSTD_getErrorName(n));
  }
  out->resize(old + n);
  return Status::Ok();
}

Status DecompressLz4(std::string_view in, size_t raw_length, std::string* out) {
  if (in.empty()) return NotDecompressing(Codec::kLz4, raw_length, "the frame is empty");
  if (raw_length / kMaxLz4Expansion > in.size()) {
    return NotDecompressing(Codec::kLz4, raw_length,
                            std::to_string(in.size()) + " stored bytes cannot expand that far");
  }
  // raw_length <= kMaxRawLength, so the bound fits an int.
  if (in.size() > static_cast<size_t>(LZ4_compressBound(static_cast<int>(raw_length)))) {
    return NotDecompressing(Codec::kLz4, raw_length,
                            std::to_string(in.size()) + " stored bytes are more than any "
                            "compression of that length");
  }
  const size_t old = out->size();
  out->resize(old + raw_length);
  // Reads only in.size() bytes and writes at most raw_length, whatever the input; fails when
  // the block is malformed, ends early, has trailing bytes or needs more room.
  const int n = LZ4_decompress_safe(in.data(), out->data() + old, static_cast<int>(in.size()),
                                    static_cast<int>(raw_length));
  if (n < 0 || static_cast<size_t>(n) != raw_length) {
    out->resize(old);
    if (n < 0) {
      return NotDecompressing(Codec::kLz4, raw_length,
                              "malformed or truncated block, or more output than that (lz4 "
                              "error at input byte " +
                                  std::to_string(-static_cast<int64_t>(n) - 1) + ")");
    }
    return NotDecompressing(Codec::kLz4, raw_length,
                            "it holds " + std::to_string(n) + " bytes");
  }
  return Status::Ok();
}

Status DecompressZstd(std::string_view in, size_t raw_length, std::string* out) {
  // Exactly one standard zstd frame: no legacy formats, no skippable frames, nothing after it.
  if (in.size() < 4 || DecodeFixed<uint32_t>(reinterpret_cast<const uint8_t*>(in.data())) !=
                           ZSTD_MAGICNUMBER) {
    return NotDecompressing(Codec::kZstd, raw_length, "no zstd frame magic");
  }
  const unsigned long long declared = ZSTD_getFrameContentSize(in.data(), in.size());
  if (declared == ZSTD_CONTENTSIZE_ERROR) {
    return NotDecompressing(Codec::kZstd, raw_length, "malformed frame header");
  }
  if (declared == ZSTD_CONTENTSIZE_UNKNOWN) {
    return NotDecompressing(Codec::kZstd, raw_length, "the frame does not declare its size");
  }
  if (declared != raw_length) {
    return NotDecompressing(Codec::kZstd, raw_length,
                            "the frame declares " + std::to_string(declared) + " bytes");
  }
  const size_t frame = ZSTD_findFrameCompressedSize(in.data(), in.size());
  if (ZSTD_isError(frame)) {
    return NotDecompressing(Codec::kZstd, raw_length,
                            std::string("truncated or malformed frame (") +
                                ZSTD_getErrorName(frame) + ")");
  }
  if (frame != in.size()) {
    return NotDecompressing(Codec::kZstd, raw_length,
                            std::to_string(in.size() - frame) + " bytes after the frame");
  }
  ZSTD_DCtx* dctx = ThreadDCtx();
  if (dctx == nullptr) return Internal("ZSTD_createDCtx failed (out of memory)");
  const size_t old = out->size();
  out->resize(old + raw_length);
  // Into a flat buffer of exactly raw_length: zstd allocates no window and stops with an
  // error rather than write past it.
  const size_t n = ZSTD_decompressDCtx(dctx, out->data() + old, raw_length, in.data(), in.size());
  if (ZSTD_isError(n) || n != raw_length) {
    out->resize(old);
    if (ZSTD_isError(n)) return NotDecompressing(Codec::kZstd, raw_length, ZSTD_getErrorName(n));
    return NotDecompressing(Codec::kZstd, raw_length, "it holds " + std::to_string(n) + " bytes");
  }
  return Status::Ok();
}

}  // namespace

std::string_view CodecName(Codec codec) {
  switch (codec) {
    case Codec::kNone: return "none";
    case Codec::kLz4: return "lz4";
    case Codec::kZstd: return "zstd";
  }
  return "unknown";
}

bool ParseCodec(std::string_view name, Codec* codec) {
  for (Codec c : {Codec::kNone, Codec::kLz4, Codec::kZstd}) {
    if (name == CodecName(c)) {
      *codec = c;
      return true;
    }
  }
  return false;
}

Status Compress(Codec codec, std::string_view in, std::string* out) {
  return Compress(codec, in, CompressOptions(), out);
}

Status Compress(Codec codec, std::string_view in, const CompressOptions& options,
                std::string* out) {
  if (in.size() > kMaxRawLength) {
    return InvalidArgument("cannot compress " + std::to_string(in.size()) +
                           " bytes: the cap is " + std::to_string(kMaxRawLength));
  }
  switch (codec) {
    case Codec::kNone:
      out->append(in);
      return Status::Ok();
    case Codec::kLz4:
      if (options.lz4_acceleration < 1 || options.lz4_acceleration > kMaxLz4Acceleration) {
        return InvalidArgument("lz4 acceleration " + std::to_string(options.lz4_acceleration) +
                               " is outside 1.." + std::to_string(kMaxLz4Acceleration));
      }
      return CompressLz4(in, options.lz4_acceleration, out);
    case Codec::kZstd:
      if (options.zstd_level < ZSTD_minCLevel() || options.zstd_level > ZSTD_maxCLevel()) {
        return InvalidArgument("zstd level " + std::to_string(options.zstd_level) +
                               " is outside " + std::to_string(ZSTD_minCLevel()) + ".." +
                               std::to_string(ZSTD_maxCLevel()));
      }
      return CompressZstd(in, options.zstd_level, out);
  }
  return InvalidArgument("unknown codec " + std::to_string(static_cast<int>(codec)));
}

Status Decompress(Codec codec, std::string_view in, size_t raw_length, std::string* out) {
  if (raw_length > kMaxRawLength) {
    return DataLoss("raw length " + std::to_string(raw_length) + " is above the cap of " +
                    std::to_string(kMaxRawLength) + " bytes");
  }
  switch (codec) {
    case Codec::kNone:
      if (in.size() != raw_length) {
        return NotDecompressing(codec, raw_length, "it holds " + std::to_string(in.size()) +
                                                       " bytes");
      }
      out->append(in);
      return Status::Ok();
    case Codec::kLz4:
      return DecompressLz4(in, raw_length, out);
    case Codec::kZstd:
      return DecompressZstd(in, raw_length, out);
  }
  return DataLoss("unknown codec " + std::to_string(static_cast<int>(codec)));
}

}  // namespace ferry::link
