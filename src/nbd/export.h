// Export: what an NBD server serves — a byte-addressed disk with optional write, zero, trim,
// flush and block-status support. Implementations adapt the engine's views and overlays (and,
// at the source, the write splitter) to the protocol.
//
// Thread-safety: every method may be called from several connections' workers at once.
// Errors map to NBD errors: kInvalidArgument/kOutOfRange -> EINVAL (ENOSPC for writes past the
// end), kFailedPrecondition on a read-only export -> EPERM, kResourceExhausted -> ENOSPC,
// anything else -> EIO.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "base/status.h"

namespace ferry::nbd {

// One write of a batch (see Export::WriteMany).
struct WriteOp {
  uint64_t offset = 0;
  std::string_view data;
  bool fua = false;
};

struct Extent {
  uint64_t length = 0;
  bool hole = false;  // nothing stored
  bool zero = false;  // reads as zeros
};

class Export {
 public:
  virtual ~Export() = default;
  virtual uint64_t size() const = 0;
  virtual bool read_only() const = 0;
  // The block size the export prefers (for NBD_INFO_BLOCK_SIZE); any alignment is accepted.
  virtual uint32_t preferred_block_size() const { return 4096; }
  // Whether several connections may be used at once with consistent results (every write is
  // visible to every connection once replied, and a flush on one covers all).
  virtual bool multi_conn() const { return true; }
  virtual std::string description() const { return {}; }

  // Fills all n bytes of dst (the session reuses buffers: nothing may be left unwritten).
  virtual Status Read(uint64_t offset, size_t n, void* dst) = 0;
  virtual Status Write(uint64_t offset, std::string_view data, bool fua) = 0;
  // Writes the client sent without waiting for replies between them, so in no order the
  // protocol defines; results[i] answers ops[i] (the spans have the same size). By default
  // one Write each; an export may do them together (the splitter logs them in one append).
  virtual void WriteMany(std::span<const WriteOp> ops, std::span<Status> results) {
    for (size_t i = 0; i < ops.size(); ++i) results[i] = Write(ops[i].offset, ops[i].data, ops[i].fua);
  }
  // no_hole (NBD_CMD_FLAG_NO_HOLE): the range must stay allocated, and block status must
  // not report it as a hole; without it the export may free the space (punch a hole).
  virtual Status WriteZeroes(uint64_t offset, uint64_t n, bool fua, bool no_hole) = 0;
  virtual Status Trim(uint64_t offset, uint64_t n, bool fua) = 0;
  virtual Status Flush() = 0;
  // Extents covering [offset, offset+n) from offset on (may stop early but covers >= 1 byte).
  // By default the whole range is reported as data: true, if not informative.
  virtual Result<std::vector<Extent>> BlockStatus(uint64_t offset, uint64_t n) {
    if (offset > size() || n > size() - offset) return OutOfRange("block status past the end");
    return std::vector<Extent>{Extent{n, false, false}};
  }
};

// Finds exports by name for a server. The server calls it for every NBD_OPT_GO/INFO/EXPORT_NAME.
class ExportCatalog {
 public:
  virtual ~ExportCatalog() = default;
  // kNotFound (-> NBD_REP_ERR_UNKNOWN) with a message saying what names exist.
  virtual Result<std::shared_ptr<Export>> Find(const std::string& name) = 0;
  // Names listed by NBD_OPT_LIST (with descriptions).
  virtual std::vector<std::pair<std::string, std::string>> List() = 0;
};

}  // namespace ferry::nbd
