// Link frames (docs/protocols/link.md, "Frames"): a 32-byte checksummed header and a payload,
// optionally compressed. This file encodes and decodes frames and reads and writes them on a
// Stream; the messages inside are in messages.h.
//
// Thread-safety: FrameReader and FrameWriter each serve one thread; a link has one of each
// on the same stream (one reads, one writes).
// Errors: kDataLoss "corrupt frame: …" for anything a damaged or hostile peer can send (the
// link then resets and applies nothing from the frame); the stream's own errors (kAborted
// when the peer closed) pass through unchanged.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <string_view>

#include "base/status.h"
#include "env/stream.h"
#include "link/codec.h"

namespace ferry::link {

enum class MessageType : uint8_t {
  kHello = 1,
  kWelcome = 2,
  kRefuse = 3,
  kRecords = 4,
  kAck = 5,
  kSyncData = 6,
  kSyncDone = 7,
  kPing = 8,
  kResyncBegin = 9,
  kResyncDone = 10,
  kDigestRequest = 11,
  kDigests = 12,
  kVerifyRequest = 13,  // DIGEST_REQUEST about the target's newest state
};
std::string_view MessageTypeName(MessageType type);

inline constexpr uint32_t kFrameMagic = 0x4B4E4C46;  // "FLNK" as little-endian bytes
inline constexpr size_t kFrameHeaderSize = 32;
inline constexpr size_t kMaxFramePayload = size_t{96} << 20;
inline constexpr size_t kMaxCompressionOverhead = size_t{64} << 10;

struct FrameHeader {
  MessageType type = MessageType::kPing;
  Codec codec = Codec::kNone;
  uint32_t stored_length = 0;
  uint32_t raw_length = 0;
  uint64_t payload_checksum = 0;
};

// Encodes the header for a stored payload.
std::string EncodeFrameHeader(const FrameHeader& h);
// Checks magic, header checksum, type, codec, flags and lengths.
Result<FrameHeader> DecodeFrameHeader(std::string_view bytes);
// Checks the payload checksum and decompresses to exactly raw_length bytes. The view is
// stored itself when the payload is not compressed, else *buf (reused across calls).
Result<std::string_view> DecodeFramePayload(const FrameHeader& h, std::string_view stored,
                                            std::string* buf);

struct Frame {
  MessageType type;
  // Raw (decompressed). A view into the reader's buffers: valid until the second Read after
  // the one that returned it (the reader alternates between two sets of buffers, so a frame
  // can be applied on another thread while the next one is read).
  std::string_view payload;
  size_t wire_bytes = 0;
  // The payload was stored uncompressed: the frame's verified checksum covers these bytes.
  bool raw_checked = false;
};

class FrameWriter {
 public:
  FrameWriter(Stream* stream, Codec codec, CompressOptions options = {})
      : stream_(stream), codec_(codec), options_(options) {}
  // Compresses payloads of 512 bytes or more with the link's codec, unless that does not make
  // them smaller. Returns the bytes put on the wire.
  Result<size_t> Write(MessageType type, std::string_view payload);
  // The same frame, its payload given in pieces: sent without gathering them first when the
  // link does not compress (a codec needs them in one buffer).
  Result<size_t> WriteV(MessageType type, std::span<const std::string_view> pieces);
  void set_codec(Codec codec) { codec_ = codec; }

 private:
  Stream* stream_;
  Codec codec_;
  CompressOptions options_;
  std::string compressed_;
  std::string gathered_;  // WriteV's pieces, when they must be compressed

  // Puts a frame on the wire: h with its stored length and checksum filled in from stored.
  Result<size_t> Send(FrameHeader h, std::span<const std::string_view> stored);
};

class FrameReader {
 public:
  explicit FrameReader(Stream* stream) : stream_(stream) {}
  Result<Frame> Read();

 private:
  Stream* stream_;
  // Reused, two of each (Frame::payload): a frame's payload is read and decoded without
  // allocating.
  std::string stored_[2];
  std::string raw_[2];
  int turn_ = 0;
};

}  // namespace ferry::link
