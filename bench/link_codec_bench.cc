// Link compression on a realistic disk image: compression ratio, compress and decompress
// speed of each candidate codec on ONE core, for the decision in
// docs/decisions/0003-link-compression.md. bench/run-link-codec-bench builds the image (an
// ext4 filesystem of system executables, text and already-compressed files, made with
// mke2fs -d) and runs this program on it; any file will do as the image.
//
// The image is read in 4 KiB blocks; all-zero blocks are dropped, as the link sends them as
// zero records without payload. The remaining blocks, in disk order, are cut into batches of
// each size in FERRY_BENCH_CODEC_BATCH_KIB (4,64,1024,4096; quick 4,1024): a batch is what
// one RECORDS or SYNC_DATA frame carries, compressed as one unit. For each batch size and each
// codec (none, lz4, lz4 with acceleration 4, zstd levels -1, 1 and 3) it compresses every
// batch into one buffer, then decompresses every batch, through src/link/codec.h as the link
// does, and checks the round trip (first round). Speeds are raw (uncompressed) bytes per
// second of the thread's CPU time (CLOCK_THREAD_CPUTIME_ID), so that time the thread spends
// waiting for a shared machine's core does not count; MB is 10^6 bytes, as link speeds are
// quoted. Each figure is the best of FERRY_BENCH_CODEC_ROUNDS (3; quick 1) rounds; a round
// measures every batch size and codec once, so each codec's rounds are minutes apart.
// FERRY_BENCH_CODEC_MAX_MIB (0 = all; quick 64) caps the non-zero data used.
//
// Printed (stdout; Markdown with FERRY_BENCH_MARKDOWN=1): the table per batch size and codec;
// for the batch size FERRY_BENCH_CODEC_MATRIX_KIB (1024) the ratio of each codec's compress
// and decompress throughput to every other's; and what one core at each end delivers over
// links of 0.1, 1 and 10 Gbit/s: min(compress, decompress, link rate x ratio) of raw bytes,
// and the cores the sender needs to fill the link. Progress goes to stderr.
//
// Usage: link_codec_bench --image DISK_IMAGE
#include <fcntl.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cinttypes>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "bench_util.h"
#include "link/codec.h"

namespace ferry::bench {
namespace {

using link::Codec;
using link::CompressOptions;

constexpr size_t kBlock = 4096;

struct Config {
  const char* name;
  Codec codec;
  CompressOptions options;
};

// The candidates; "none" comes first: the link table compares every codec with it.
const std::vector<Config>& Configs() {
  static const std::vector<Config> kConfigs = {
      {"none", Codec::kNone, {}},
      {"lz4", Codec::kLz4, {.lz4_acceleration = 1}},
      {"lz4 fast 4", Codec::kLz4, {.lz4_acceleration = 4}},
      {"zstd -1", Codec::kZstd, {.zstd_level = -1}},
      {"zstd 1", Codec::kZstd, {.zstd_level = 1}},
      {"zstd 3", Codec::kZstd, {.zstd_level = 3}},
  };
  return kConfigs;
}

double ThreadCpuSeconds() {
  timespec ts;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) * 1e-9;
}

double Mb(double bytes) { return bytes / 1e6; }

std::string ImageArg(int argc, char** argv) {
  for (int i = 1; i + 1 < argc; ++i) {
    if (std::string_view(argv[i]) == "--image") return argv[i + 1];
  }
  std::fprintf(stderr, "usage: %s --image DISK_IMAGE (bench/run-link-codec-bench builds one)\n",
               argv[0]);
  std::exit(1);
}

struct Image {
  std::string data;  // the non-zero 4 KiB blocks, in disk order
  uint64_t blocks = 0;
  uint64_t zero_blocks = 0;
  uint64_t size = 0;
};

Image LoadImage(const std::string& path, uint64_t max_bytes) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) Fail("open " + path, IoError(std::strerror(errno)));
  struct stat st;
  if (::fstat(fd, &st) != 0) Fail("stat " + path, IoError(std::strerror(errno)));
  Image img;
  img.size = static_cast<uint64_t>(st.st_size);
  img.data.reserve(max_bytes != 0 ? std::min(max_bytes, img.size) : img.size);
  std::string buf(1 << 20, '\0');
  for (uint64_t off = 0; off < img.size; off += buf.size()) {
    const size_t want = static_cast<size_t>(std::min<uint64_t>(buf.size(), img.size - off));
    size_t got = 0;
    while (got < want) {
      ssize_t r = ::pread(fd, buf.data() + got, want - got, static_cast<off_t>(off + got));
      if (r <= 0) Fail("read " + path, IoError(r < 0 ? std::strerror(errno) : "short read"));
      got += static_cast<size_t>(r);
    }
    for (size_t b = 0; b + kBlock <= want; b += kBlock) {
      std::string_view block(buf.data() + b, kBlock);
      ++img.blocks;
      if (link::IsAllZero(block)) {
        ++img.zero_blocks;
      } else if (max_bytes == 0 || img.data.size() < max_bytes) {
        img.data.append(block);
      }
    }
  }
  ::close(fd);
  return img;
}

struct Figures {
  double ratio = 0;         // raw bytes / stored bytes
  double compress = 0;      // raw MB per CPU second, best round
  double decompress = 0;    // raw MB per CPU second, best round
  double wall_per_cpu = 0;  // wall / CPU time of the best compress round (1.0 = had the core)
};

// Buffers shared by every measurement, allocated and touched once before any timing, as the
// link's reused frame buffers are: the first touch of fresh memory costs page faults that would
// otherwise swamp the fast codecs.
struct Buffers {
  Buffers(size_t data_size, size_t max_batch) : out(max_batch, '\0') {
    const size_t min_batches = data_size / kBlock + 1;
    stored.resize(data_size + data_size / 128 + min_batches * 128 + max_batch + (1 << 20));
    stored.clear();
    sizes.reserve(min_batches);
  }
  std::string stored;
  std::vector<size_t> sizes;
  std::string out;
};

// One round for one batch size and codec: compresses every batch into one buffer, then
// decompresses every batch; folds its times into *f (best round wins). The first round also
// checks that every batch comes back byte for byte (untimed).
void MeasureRound(const std::string& data, size_t batch, const Config& config, bool verify,
                  Buffers* buf, Figures* f) {
  const size_t batches = (data.size() + batch - 1) / batch;
  std::string& stored = buf->stored;
  std::vector<size_t>& sizes = buf->sizes;
  std::string& out = buf->out;
  stored.clear();
  sizes.resize(batches);

  const double w0 = Seconds();
  double t0 = ThreadCpuSeconds();
  for (size_t i = 0; i < batches; ++i) {
    const size_t before = stored.size();
    Check(link::Compress(config.codec, std::string_view(data).substr(i * batch, batch),
                         config.options, &stored),
          "compress");
    sizes[i] = stored.size() - before;
  }
  const double ct = ThreadCpuSeconds() - t0;
  const double cw = Seconds() - w0;

  t0 = ThreadCpuSeconds();
  size_t pos = 0;
  for (size_t i = 0; i < batches; ++i) {
    out.clear();
    const size_t raw = std::min(batch, data.size() - i * batch);
    Check(link::Decompress(config.codec, std::string_view(stored).substr(pos, sizes[i]), raw,
                           &out),
          "decompress");
    pos += sizes[i];
  }
  const double dt = ThreadCpuSeconds() - t0;

  if (verify) {
    pos = 0;
    for (size_t i = 0; i < batches; ++i) {
      out.clear();
      std::string_view raw = std::string_view(data).substr(i * batch, batch);
      Check(link::Decompress(config.codec, std::string_view(stored).substr(pos, sizes[i]),
                             raw.size(), &out),
            "decompress");
      if (out != raw) Fail("round trip", Internal("batch " + std::to_string(i) + " differs"));
      pos += sizes[i];
    }
  }

  const double mb = Mb(static_cast<double>(data.size()));
  f->ratio = static_cast<double>(data.size()) / static_cast<double>(stored.size());
  if (mb / ct > f->compress) {
    f->compress = mb / ct;
    f->wall_per_cpu = cw / ct;
  }
  f->decompress = std::max(f->decompress, mb / dt);
}

// A table printed as aligned text, or as Markdown with FERRY_BENCH_MARKDOWN=1.
class Table {
 public:
  explicit Table(std::vector<std::string> header) { rows_.push_back(std::move(header)); }
  void Add(std::vector<std::string> row) { rows_.push_back(std::move(row)); }
  void Print() const {
    const char* md = std::getenv("FERRY_BENCH_MARKDOWN");
    const bool markdown = md != nullptr && *md != '\0' && std::string_view(md) != "0";
    std::vector<size_t> width(rows_[0].size(), 0);
    for (const auto& r : rows_) {
      for (size_t i = 0; i < r.size(); ++i) width[i] = std::max(width[i], r[i].size());
    }
    for (size_t n = 0; n < rows_.size(); ++n) {
      const auto& r = rows_[n];
      std::string line = markdown ? "|" : "";
      for (size_t i = 0; i < r.size(); ++i) {
        if (markdown) {
          line += " " + r[i] + " |";
        } else {
          line += r[i] + std::string(width[i] - r[i].size() + 2, ' ');
        }
      }
      std::printf("%s\n", line.c_str());
      if (markdown && n == 0) {
        std::string sep = "|";
        for (size_t i = 0; i < r.size(); ++i) sep += "---|";
        std::printf("%s\n", sep.c_str());
      }
    }
    std::printf("\n");
  }

 private:
  std::vector<std::vector<std::string>> rows_;
};

std::string Fmt(const char* fmt, double v) {
  char buf[64];
  std::snprintf(buf, sizeof buf, fmt, v);
  return buf;
}

std::string BatchName(size_t kib) {
  return kib >= 1024 && kib % 1024 == 0 ? std::to_string(kib / 1024) + " MiB"
                                        : std::to_string(kib) + " KiB";
}

// IsAllZero over zero blocks, the case that reads every byte: GB per CPU second.
double IsAllZeroSpeed() {
  const std::string zeros(1 << 20, '\0');
  uint64_t hits = 0;
  const double t0 = ThreadCpuSeconds();
  for (int i = 0; i < 2048; ++i) {
    std::string_view z(zeros);
    for (size_t b = 0; b < z.size(); b += kBlock) hits += link::IsAllZero(z.substr(b, kBlock));
  }
  const double t = ThreadCpuSeconds() - t0;
  if (hits != 2048u * 256) Fail("IsAllZero", Internal("a zero block was not all zero"));
  return 2048.0 * zeros.size() / 1e9 / t;
}

}  // namespace
}  // namespace ferry::bench

int main(int argc, char** argv) {
  using namespace ferry::bench;
  const std::string path = ImageArg(argc, argv);
  const std::vector<uint64_t> batch_kib = EnvList("FERRY_BENCH_CODEC_BATCH_KIB", "4,64,1024,4096",
                                                  "4,1024");
  if (batch_kib.empty() || std::count(batch_kib.begin(), batch_kib.end(), 0u) != 0) {
    Fail("FERRY_BENCH_CODEC_BATCH_KIB", ferry::InvalidArgument("want sizes in KiB, e.g. 4,1024"));
  }
  const int rounds = static_cast<int>(EnvU64("FERRY_BENCH_CODEC_ROUNDS", 3, 1));
  const uint64_t max_bytes = EnvU64("FERRY_BENCH_CODEC_MAX_MIB", 0, 64) << 20;
  const uint64_t matrix_kib = EnvU64("FERRY_BENCH_CODEC_MATRIX_KIB", 1024, 1024);

  const double t0 = Seconds();
  const Image img = LoadImage(path, max_bytes);
  if (img.data.empty()) Fail("load image", ferry::InvalidArgument("no non-zero 4 KiB block in the image"));
  Log("image: %.1f MiB, %" PRIu64 " blocks of 4 KiB, %" PRIu64 " all zero (%.1f%%); using %.1f "
      "MiB of non-zero blocks (read in %.1f s)",
      MiB(static_cast<double>(img.size)), img.blocks, img.zero_blocks,
      100.0 * static_cast<double>(img.zero_blocks) / static_cast<double>(img.blocks),
      MiB(static_cast<double>(img.data.size())), Seconds() - t0);

  std::printf("Link compression on one core: %.1f MiB image, %.1f%% of its 4 KiB blocks all "
              "zero (skipped), %.1f MiB of data; best of %d rounds; MB/s = 10^6 raw bytes per "
              "CPU second; IsAllZero on zero blocks %.1f GB/s\n\n",
              MiB(static_cast<double>(img.size)),
              100.0 * static_cast<double>(img.zero_blocks) / static_cast<double>(img.blocks),
              MiB(static_cast<double>(img.data.size())), rounds, IsAllZeroSpeed());

  const auto& configs = Configs();
  std::vector<std::vector<Figures>> figs(batch_kib.size(), std::vector<Figures>(configs.size()));
  Buffers buf(img.data.size(), *std::max_element(batch_kib.begin(), batch_kib.end()) << 10);
  // Rounds run over every batch size and codec in turn, so that a noisy minute on a shared
  // machine hits one round of each rather than every round of one.
  for (int round = 0; round < rounds; ++round) {
    for (size_t b = 0; b < batch_kib.size(); ++b) {
      for (size_t c = 0; c < configs.size(); ++c) {
        const double s0 = Seconds();
        Figures& f = figs[b][c];
        MeasureRound(img.data, batch_kib[b] << 10, configs[c], round == 0, &buf, &f);
        Log("round %d, %s batches, %s: ratio %.3f, best so far: compress %.0f MB/s, "
            "decompress %.0f MB/s (wall/CPU %.2f; %.1f s)", round + 1,
            BatchName(batch_kib[b]).c_str(), configs[c].name, f.ratio, f.compress, f.decompress,
            f.wall_per_cpu, Seconds() - s0);
      }
    }
  }
  Table table({"batch", "codec", "ratio", "saved", "compress MB/s", "decompress MB/s"});
  for (size_t b = 0; b < batch_kib.size(); ++b) {
    for (size_t c = 0; c < configs.size(); ++c) {
      const Figures& f = figs[b][c];
      table.Add({BatchName(batch_kib[b]), configs[c].name, Fmt("%.3f", f.ratio),
                 Fmt("%.1f%%", 100.0 * (1.0 - 1.0 / f.ratio)), Fmt("%.0f", f.compress),
                 Fmt("%.0f", f.decompress)});
    }
  }
  table.Print();

  size_t m = 0;
  while (m < batch_kib.size() && batch_kib[m] != matrix_kib) ++m;
  if (m == batch_kib.size()) return 0;
  const std::string mname = BatchName(matrix_kib);
  for (int decompress = 0; decompress < 2; ++decompress) {
    std::vector<std::string> header = {std::string(decompress ? "decompress" : "compress") +
                                       " speed, " + mname + " batches: row / column"};
    for (const auto& c : configs) header.push_back(c.name);
    Table matrix(header);
    for (size_t r = 0; r < configs.size(); ++r) {
      std::vector<std::string> row = {configs[r].name};
      for (size_t c = 0; c < configs.size(); ++c) {
        const Figures& a = figs[m][r];
        const Figures& b = figs[m][c];
        row.push_back(Fmt("%.2f", decompress ? a.decompress / b.decompress
                                             : a.compress / b.compress));
      }
      matrix.Add(row);
    }
    matrix.Print();
  }

  // Sender and receiver each give the link one core; the link carries stored bytes.
  const double kLinksGbit[] = {0.1, 1, 10};
  std::vector<std::string> header = {"raw MB/s delivered, " + mname + " batches, 1 core"};
  for (double g : kLinksGbit) header.push_back(Fmt("%g Gbit/s", g));
  header.push_back("cores to fill 10 Gbit/s");
  Table links(header);
  auto delivered = [](const Figures& f, double gbit) {
    const double wire = gbit * 1e9 / 8 / 1e6;  // MB/s of stored bytes
    return std::min({f.compress, f.decompress, wire * f.ratio});
  };
  for (size_t c = 0; c < configs.size(); ++c) {
    const Figures& f = figs[m][c];
    std::vector<std::string> row = {configs[c].name};
    for (double g : kLinksGbit) {
      const double raw = delivered(f, g);
      row.push_back(Fmt("%.0f", raw) + Fmt(" (%.2fx none)", raw / delivered(figs[m][0], g)));
    }
    row.push_back(Fmt("%.1f", 10e9 / 8 / 1e6 * f.ratio / f.compress));
    links.Add(row);
  }
  links.Print();
  return 0;
}
