// Fuzzes everything that decodes a replica's stored bytes: segment headers and records, marker
// bodies, the MANIFEST and overlay files, and the index built from them.
//
// The input builds a valid replica (records chosen by the input) on a simulated disk, then
// corrupts it (flipped bytes, truncations, garbage appended — also chosen by the input), then
// opens it and reads every point. Whatever the damage: no crash, no hang, no sanitizer report;
// Open either fails with a Status or yields a replica whose views can be read.
#include <fuzzer/FuzzedDataProvider.h>

#include <string>

#include "base/clock.h"
#include "env/sim_env.h"
#include "journal/manifest.h"
#include "journal/overlay.h"
#include "journal/replica.h"
#include "journal/view.h"

using namespace ferry;
using namespace ferry::journal;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  FuzzedDataProvider in(data, size);
  SimEnv env;
  ManualClock clock;
  ReplicaOptions opts;
  opts.env = &env;
  opts.clock = &clock;
  opts.min_free_bytes = 0;
  opts.segment_target_bytes = 2048;
  constexpr uint32_t kBs = 512;
  constexpr uint64_t kSize = 64 * kBs;
  {
    CreateParams p;
    p.size = kSize;
    p.block_size = kBs;
    auto r = Replica::Create("/r", p, opts);
    if (!r.ok()) return 0;
    int n = in.ConsumeIntegralInRange(0, 24);
    for (int i = 0; i < n; ++i) {
      uint64_t block = in.ConsumeIntegralInRange<uint64_t>(0, 63);
      uint64_t count = in.ConsumeIntegralInRange<uint64_t>(1, 64 - block);
      switch (in.ConsumeIntegralInRange(0, 3)) {
        case 0: (void)(*r)->Append(Record::Write(block * kBs, std::string(count * kBs, static_cast<char>(i)))); break;
        case 1: (void)(*r)->Append(Record::Zero(block * kBs, count * kBs)); break;
        case 2: (void)(*r)->Append(Record::Trim(block * kBs, count * kBs)); break;
        default: (void)(*r)->Append(Record::Marker(MarkerKind::kAppConsistent, in.ConsumeRandomLengthString(8))); break;
      }
      clock.Advance(in.ConsumeIntegralInRange<int64_t>(0, 3) * kNanosPerHour);
    }
    if (in.ConsumeBool()) {
      auto o = (*r)->CreateOverlay("o", (*r)->Stats().last_seq);
      if (o.ok()) {
        (void)(*o)->Write(in.ConsumeIntegralInRange<uint64_t>(0, kSize - 10), "overlay!!");
        (void)(*o)->Flush();
      }
    }
    if (in.ConsumeBool()) {
      RetentionPolicy policy;
      policy.window_ns = 6 * kNanosPerHour;
      policy.any_point_ns = kNanosPerHour;
      policy.tiers = {{kNanosPerHour, 2 * kNanosPerHour}};
      (void)(*r)->ApplyRetention(policy);
    }
  }
  // Damage: pick files and bytes.
  std::vector<std::string> files = {"/r/MANIFEST", "/r/overlays/o/OVERLAY", "/r/overlays/o/blocks.log"};
  if (auto names = env.ListDir("/r/journal"); names.ok()) {
    for (const auto& n : *names) files.push_back("/r/journal/" + n);
  }
  int damages = in.ConsumeIntegralInRange(0, 4);
  for (int i = 0; i < damages && !files.empty(); ++i) {
    const std::string& path = files[in.ConsumeIntegralInRange<size_t>(0, files.size() - 1)];
    auto f = env.OpenFile(path, OpenMode::kReadWrite);
    if (!f.ok()) continue;
    auto fsize = (*f)->Size();
    if (!fsize.ok()) continue;
    switch (in.ConsumeIntegralInRange(0, 2)) {
      case 0:
        if (*fsize > 0) {
          uint64_t at = in.ConsumeIntegralInRange<uint64_t>(0, *fsize - 1);
          std::string b(1, static_cast<char>(in.ConsumeIntegral<uint8_t>()));
          (void)(*f)->WriteAt(at, b);
        }
        break;
      case 1: (void)(*f)->Truncate(in.ConsumeIntegralInRange<uint64_t>(0, *fsize)); break;
      default: (void)(*f)->WriteAt(*fsize, in.ConsumeRandomLengthString(128)); break;
    }
    (void)(*f)->Sync();
  }
  auto r = Replica::Open("/r", opts);
  if (!r.ok()) return 0;
  (void)(*r)->Verify();
  auto st = (*r)->Stats();
  std::string buf(kSize, '\0');
  for (uint64_t seq = st.oldest_point; seq <= st.last_seq; ++seq) {
    auto v = (*r)->OpenView(seq);
    if (!v.ok()) continue;
    (void)(*v)->Read(0, kSize, buf.data());
    (void)(*v)->Extents(0, kSize);
  }
  if (auto o = (*r)->GetOverlay("o"); o.ok()) (void)(*o)->Read(0, kSize, buf.data());
  (void)(*r)->ListPoints(PointFilter{});
  // The raw decoders on the rest of the input.
  std::string rest = in.ConsumeRemainingBytesAsString();
  (void)Manifest::Decode(rest);
  (void)DecodeMarkerBody(rest);
  if (rest.size() >= kRecordHeaderSize) (void)DecodeRecordHeader(reinterpret_cast<const uint8_t*>(rest.data()));
  return 0;
}
