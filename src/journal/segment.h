// Journal segment files: scanning (recovery, verification) and appending.
//
// ScanSegment reads a segment front to back and reports each valid record; it tells a torn
// tail (an interrupted, never-acknowledged write at the end of the last segment) apart from
// corruption of acknowledged data (kDataLoss naming the segment number and byte offset).
//
// SegmentWriter appends encoded record batches to one segment file. Not thread-safe: the
// Replica calls it under its write lock only.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "base/status.h"
#include "env/env.h"
#include "journal/record.h"

namespace ferry::journal {

std::string SegmentFileName(uint64_t segment_number);
// Parses "0000000000000001.seg"; false for any other name.
bool ParseSegmentFileName(const std::string& name, uint64_t* segment_number);

struct ScanOptions {
  bool verify_payloads = false;  // read every payload and check its checksum
  bool allow_torn_tail = false;  // this is the last segment
  // When set, a damaged payload under a sound header is listed here ("DataLoss: segment N
  // offset O: ...") and the scan goes on with the next record, which the header locates; the
  // damaged record is not visited. Otherwise the scan stops there as at any other problem.
  std::vector<std::string>* payload_problems = nullptr;
};

struct ScanResult {
  SegmentHeader header;
  uint64_t valid_end = 0;   // file offset just past the last valid record
  uint64_t file_size = 0;
  bool torn = false;        // bytes after valid_end are a torn tail
  std::string torn_reason;  // what was wrong at valid_end
  uint64_t records = 0;
  uint64_t last_seq = 0;    // 0 if no records
};

// Called for every valid record: its header, the file offset of its header, and its payload
// (filled for markers always, for other records only with verify_payloads).
using RecordVisitor =
    std::function<Status(const RecordHeader& h, uint64_t header_offset, std::string_view payload)>;

// Reads and checks a segment's header (kDataLoss naming the segment if it is bad).
Result<SegmentHeader> ReadSegmentHeader(File* file, uint64_t segment_number);

// segment_number: the number the file name promised (checked against the header).
Result<ScanResult> ScanSegment(File* file, uint64_t segment_number, const ScanOptions& options,
                               const RecordVisitor& visit);

// A trimmed segment's file kept for reuse is named this prefix + its segment file name. Open
// removes any it finds (they hold nothing the replica needs).
inline constexpr char kSpareSegmentPrefix[] = "spare-";

class SegmentWriter {
 public:
  // Creates the segment file (must not exist), writes and syncs its header and syncs dir.
  static Result<std::unique_ptr<SegmentWriter>> Create(Env* env, const std::string& dir,
                                                       const SegmentHeader& header);
  // Makes the file at spare_path (a trimmed segment's) the segment `header` describes: writes
  // and syncs the header, renames the file and syncs dir. What follows the header is older
  // records, which readers take for a torn tail (their seqs precede the segment's first).
  static Result<std::unique_ptr<SegmentWriter>> Recycle(Env* env, const std::string& dir,
                                                        const SegmentHeader& header,
                                                        const std::string& spare_path);
  // Reopens an existing segment to append after valid_end (truncating a torn tail) and
  // makes what it keeps durable.
  static Result<std::unique_ptr<SegmentWriter>> Reopen(Env* env, const std::string& dir,
                                                       uint64_t segment_number,
                                                       uint64_t valid_end);

  // Writes the pieces at the end of the file (not durable until the file is synced; the
  // Replica syncs outside its lock, through shared_file()).
  Status Write(std::span<const std::string_view> pieces);
  // Removes everything from end on, durably: after a failed write or sync, batches written
  // behind the failed one must not survive as valid records after a hole.
  Status CutBackTo(uint64_t end);

  // Direct appends (ReplicaOptions::direct_appends, docs/decisions/0014). A batch is reserved
  // under the replica's write lock, then written durably outside it by a DirectBatch; the
  // reserved batches are written one at a time, in the order they were reserved, because
  // each rewrites the block the one before it ended in. A batch's write covers whole
  // aligned blocks: from the start of the block its first byte falls in (the bytes already
  // there, unchanged) to the end of the block its last byte falls in (zeros after its end,
  // which read as a torn tail until the next batch overwrites them; the segment is cut to
  // its end when sealed or reopened).
  struct Reservation {
    uint64_t start = 0;  // where the batch's bytes begin (the end before it)
    uint64_t end = 0;    // the end after it
    std::string prefix;  // the bytes of [start rounded down to a block, start), as written
  };
  Result<Reservation> Reserve(std::span<const std::string_view> pieces);

  uint64_t segment_number() const { return segment_number_; }
  uint64_t size() const { return end_; }
  File* file() { return file_.get(); }
  std::shared_ptr<File> shared_file() { return file_; }

 private:
  SegmentWriter(uint64_t number, std::shared_ptr<File> file, uint64_t end)
      : segment_number_(number), file_(std::move(file)), end_(end) {}
  // The bytes of the block end_ falls in, before end_ (read back when not known).
  Result<std::string> Tail();
  // Tail() after the pieces (the bytes before them: prefix) are appended.
  void AdvanceTail(std::string_view prefix, std::span<const std::string_view> pieces,
                   uint64_t new_end);
  uint64_t segment_number_;
  std::shared_ptr<File> file_;
  uint64_t end_;
  std::string tail_;
  bool tail_known_ = false;
};

// Writes one reserved batch durably, in chunks of at most kMaxChunk bytes, through a buffer:
// the reservation's prefix, the pieces, then zeros to the end of the last block.
class DirectBatch {
 public:
  static constexpr size_t kMaxChunk = 4u << 20;
  // reservation, pieces and buffer must outlive the DirectBatch.
  DirectBatch(const SegmentWriter::Reservation& reservation,
              std::span<const std::string_view> pieces, DirectBuffer* buffer);
  // Copies the next chunk into the buffer; false once the whole batch has been written.
  bool Fill();
  // Writes the chunk Fill copied, durably (File::WriteDurable).
  Status Write(File* file);

 private:
  std::vector<std::string_view> sources_;  // the prefix, then the pieces
  size_t source_ = 0;                      // the source being copied, and how far
  size_t source_offset_ = 0;
  DirectBuffer* buffer_;
  uint64_t position_;      // file offset of the next chunk
  uint64_t aligned_end_;   // end of the batch's last block
  uint64_t chunk_offset_ = 0;
  size_t chunk_size_ = 0;
};

}  // namespace ferry::journal
