#include "link/frame.h"

#include <array>
#include <vector>

#include "base/checksum.h"
#include "base/coding.h"

namespace ferry::link {

namespace {

Status Corrupt(std::string what) { return DataLoss("corrupt frame: " + what); }

bool KnownType(uint8_t t) { return t >= 1 && t <= 13; }

}  // namespace

std::string_view MessageTypeName(MessageType type) {
  switch (type) {
    case MessageType::kHello: return "HELLO";
    case MessageType::kWelcome: return "WELCOME";
    case MessageType::kRefuse: return "REFUSE";
    case MessageType::kRecords: return "RECORDS";
    case MessageType::kAck: return "ACK";
    case MessageType::kSyncData: return "SYNC_DATA";
    case MessageType::kSyncDone: return "SYNC_DONE";
    case MessageType::kPing: return "PING";
    case MessageType::kResyncBegin: return "RESYNC_BEGIN";
    case MessageType::kResyncDone: return "RESYNC_DONE";
    case MessageType::kDigestRequest: return "DIGEST_REQUEST";
    case MessageType::kDigests: return "DIGESTS";
    case MessageType::kVerifyRequest: return "VERIFY_REQUEST";
  }
  return "unknown";
}

std::string EncodeFrameHeader(const FrameHeader& h) {
  std::string out(kFrameHeaderSize, '\0');
  auto* p = reinterpret_cast<uint8_t*>(out.data());
  EncodeFixed<uint32_t>(p, kFrameMagic);
  p[4] = static_cast<uint8_t>(h.type);
  p[5] = static_cast<uint8_t>(h.codec);
  EncodeFixed<uint16_t>(p + 6, 0);
  EncodeFixed<uint32_t>(p + 8, h.stored_length);
  EncodeFixed<uint32_t>(p + 12, h.raw_length);
  EncodeFixed<uint64_t>(p + 16, h.payload_checksum);
  EncodeFixed<uint64_t>(p + 24, Checksum64(p, 24));
  return out;
}

Result<FrameHeader> DecodeFrameHeader(std::string_view bytes) {
  if (bytes.size() < kFrameHeaderSize) return Corrupt("header cut short");
  const auto* p = reinterpret_cast<const uint8_t*>(bytes.data());
  if (DecodeFixed<uint32_t>(p) != kFrameMagic) return Corrupt("bad magic (not a Ferry link peer?)");
  if (DecodeFixed<uint64_t>(p + 24) != Checksum64(p, 24)) return Corrupt("header checksum mismatch");
  FrameHeader h;
  uint8_t type = p[4];
  if (!KnownType(type)) return Corrupt("unknown message type " + std::to_string(type));
  h.type = static_cast<MessageType>(type);
  uint8_t codec = p[5];
  if (codec > static_cast<uint8_t>(Codec::kZstd)) {
    return Corrupt("unknown codec " + std::to_string(codec));
  }
  h.codec = static_cast<Codec>(codec);
  if (DecodeFixed<uint16_t>(p + 6) != 0) return Corrupt("unknown flags");
  h.stored_length = DecodeFixed<uint32_t>(p + 8);
  h.raw_length = DecodeFixed<uint32_t>(p + 12);
  h.payload_checksum = DecodeFixed<uint64_t>(p + 16);
  if (h.raw_length > kMaxFramePayload) {
    return Corrupt("payload of " + std::to_string(h.raw_length) + " bytes exceeds the limit");
  }
  if (h.stored_length > uint64_t{h.raw_length} + kMaxCompressionOverhead ||
      (h.codec == Codec::kNone && h.stored_length != h.raw_length)) {
    return Corrupt("stored length " + std::to_string(h.stored_length) +
                   " does not fit raw length " + std::to_string(h.raw_length));
  }
  return h;
}

Result<std::string_view> DecodeFramePayload(const FrameHeader& h, std::string_view stored,
                                            std::string* buf) {
  if (stored.size() != h.stored_length) return Corrupt("payload cut short");
  if (Checksum64(stored) != h.payload_checksum) {
    return Corrupt(std::string(MessageTypeName(h.type)) + " payload checksum mismatch");
  }
  if (h.codec == Codec::kNone) return stored;
  buf->clear();  // Decompress appends
  Status s = Decompress(h.codec, stored, h.raw_length, buf);
  if (!s.ok()) return Corrupt(std::string(s.message()));
  return std::string_view(*buf);
}

namespace {

Status CheckPayloadSize(size_t n) {
  if (n <= kMaxFramePayload) return Status::Ok();
  return InvalidArgument("frame payload of " + std::to_string(n) + " bytes exceeds the link's limit");
}

}  // namespace

Result<size_t> FrameWriter::Write(MessageType type, std::string_view payload) {
  RETURN_IF_ERROR(CheckPayloadSize(payload.size()));
  FrameHeader h;
  h.type = type;
  h.raw_length = static_cast<uint32_t>(payload.size());
  if (codec_ != Codec::kNone && payload.size() >= 512) {
    compressed_.clear();
    RETURN_IF_ERROR(Compress(codec_, payload, options_, &compressed_));
    if (compressed_.size() < payload.size()) {
      h.codec = codec_;
      std::array<std::string_view, 1> stored{compressed_};
      return Send(h, stored);
    }
  }
  std::array<std::string_view, 1> stored{payload};
  return Send(h, stored);
}

Result<size_t> FrameWriter::WriteV(MessageType type, std::span<const std::string_view> pieces) {
  size_t total = 0;
  for (std::string_view p : pieces) total += p.size();
  RETURN_IF_ERROR(CheckPayloadSize(total));
  if (codec_ != Codec::kNone && total >= 512) {
    gathered_.clear();
    gathered_.reserve(total);
    for (std::string_view p : pieces) gathered_.append(p);
    return Write(type, gathered_);
  }
  FrameHeader h;
  h.type = type;
  h.raw_length = static_cast<uint32_t>(total);
  return Send(h, pieces);
}

Result<size_t> FrameWriter::Send(FrameHeader h, std::span<const std::string_view> stored) {
  size_t total = 0;
  for (std::string_view p : stored) total += p.size();
  h.stored_length = static_cast<uint32_t>(total);
  if (stored.size() == 1) {
    h.payload_checksum = Checksum64(stored[0]);  // most frames: no streaming state to allocate
  } else {
    Checksummer sum;
    for (std::string_view p : stored) sum.Update(p.data(), p.size());
    h.payload_checksum = sum.Digest();
  }
  const std::string header = EncodeFrameHeader(h);
  std::vector<std::string_view> all;
  all.reserve(stored.size() + 1);
  all.push_back(header);
  all.insert(all.end(), stored.begin(), stored.end());
  RETURN_IF_ERROR(stream_->WriteAllV(all));
  return kFrameHeaderSize + total;
}

Result<Frame> FrameReader::Read() {
  char header[kFrameHeaderSize];
  RETURN_IF_ERROR(stream_->ReadFull(header, sizeof header));
  ASSIGN_OR_RETURN(FrameHeader h, DecodeFrameHeader(std::string_view(header, sizeof header)));
  turn_ ^= 1;
  std::string& stored = stored_[turn_];
  stored.resize(h.stored_length);
  Status s = stream_->ReadFull(stored.data(), stored.size());
  if (!s.ok()) {
    if (s.code() == Code::kAborted) return Corrupt("connection closed inside a frame");
    return s;
  }
  Frame f;
  f.type = h.type;
  f.wire_bytes = kFrameHeaderSize + h.stored_length;
  f.raw_checked = h.codec == Codec::kNone;
  ASSIGN_OR_RETURN(f.payload, DecodeFramePayload(h, stored, &raw_[turn_]));
  return f;
}

}  // namespace ferry::link
