#include "link/codec.h"

#include <gtest/gtest.h>
#include <zstd.h>

#include <random>
#include <thread>
#include <vector>

namespace ferry::link {
namespace {

std::string RandomBytes(size_t n, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::string s(n, '\0');
  for (char& c : s) c = static_cast<char>(rng());
  return s;
}

// Log-like lines: compressible, but not trivially.
std::string TextLike(size_t n, uint64_t seed) {
  static const char* const kWords[] = {"replica", "journal", "segment", "INFO", "WARN", "volume",
                                       "seq=",    "offset",  "flushed", "\n",   "0x7f3a", " "};
  std::mt19937_64 rng(seed);
  std::string s;
  while (s.size() < n) {
    s += kWords[rng() % std::size(kWords)];
    s += std::to_string(rng() % 1000);
    s += ' ';
  }
  s.resize(n);
  return s;
}

std::string MustCompress(Codec codec, std::string_view in, CompressOptions options = {}) {
  std::string out;
  Status s = Compress(codec, in, options, &out);
  EXPECT_TRUE(s.ok()) << s.ToString();
  return out;
}

// The status of decompressing `in`; on success *raw holds the bytes.
Status Decode(Codec codec, std::string_view in, size_t raw_length, std::string* raw = nullptr) {
  std::string out;
  Status s = Decompress(codec, in, raw_length, &out);
  if (s.ok() && out.size() != raw_length) return Internal("ok but wrong length");
  if (!s.ok() && !out.empty()) return Internal("error but output changed");
  if (raw != nullptr) *raw = std::move(out);
  return s;
}

TEST(CodecTest, WireNumbersAndNames) {
  EXPECT_EQ(static_cast<int>(Codec::kNone), 0);
  EXPECT_EQ(static_cast<int>(Codec::kLz4), 1);
  EXPECT_EQ(static_cast<int>(Codec::kZstd), 2);
  for (Codec c : {Codec::kNone, Codec::kLz4, Codec::kZstd}) {
    Codec parsed = Codec::kNone;
    ASSERT_TRUE(ParseCodec(CodecName(c), &parsed)) << CodecName(c);
    EXPECT_EQ(parsed, c);
  }
  EXPECT_EQ(CodecName(Codec::kZstd), "zstd");
  EXPECT_EQ(CodecName(static_cast<Codec>(9)), "unknown");
  Codec c = Codec::kLz4;
  for (std::string_view bad : {"", "LZ4", "zstd ", "unknown", "gzip"}) {
    EXPECT_FALSE(ParseCodec(bad, &c)) << bad;
  }
  EXPECT_EQ(c, Codec::kLz4);
}

class CodecRoundTripTest : public ::testing::TestWithParam<Codec> {
 protected:
  void RoundTrip(const std::string& raw, CompressOptions options = {}) {
    // Both directions append: a prefix already in the string stays.
    std::string stored = "hdr";
    ASSERT_TRUE(Compress(GetParam(), raw, options, &stored).ok());
    ASSERT_EQ(stored.substr(0, 3), "hdr");
    std::string back = "xyz";
    Status s = Decompress(GetParam(), std::string_view(stored).substr(3), raw.size(), &back);
    ASSERT_TRUE(s.ok()) << s.ToString();
    ASSERT_EQ(back.size(), raw.size() + 3);
    EXPECT_EQ(back.substr(0, 3), "xyz");
    EXPECT_TRUE(back.compare(3, std::string::npos, raw) == 0) << "bytes differ";
    last_stored_ = stored.size() - 3;
  }
  size_t last_stored_ = 0;
};

TEST_P(CodecRoundTripTest, Random) {
  for (size_t n : {1, 7, 4096, 65536, 1 << 20}) RoundTrip(RandomBytes(n, n));
  // Incompressible data grows by at most the codec's bound.
  EXPECT_LE(last_stored_, (1u << 20) + (1u << 20) / 128 + 1024);
}

TEST_P(CodecRoundTripTest, Zeros) {
  RoundTrip(std::string(4096, '\0'));
  RoundTrip(std::string(16 << 20, '\0'));  // LZ4's largest expansion, near 255:1
  if (GetParam() != Codec::kNone) {
    EXPECT_LT(last_stored_, (16u << 20) / 200);
  }
}

TEST_P(CodecRoundTripTest, TextLike) {
  std::string text = TextLike(1 << 20, 3);
  RoundTrip(text);
  if (GetParam() != Codec::kNone) {
    EXPECT_LT(last_stored_, text.size() / 2);
  }
  RoundTrip(TextLike(4096, 4));
}

TEST_P(CodecRoundTripTest, Empty) { RoundTrip(""); }

TEST_P(CodecRoundTripTest, Options) {
  const std::string text = TextLike(256 << 10, 5);
  for (int acceleration : {1, 4, 65537}) RoundTrip(text, {.lz4_acceleration = acceleration});
  for (int level : {-5, 1, 3, 19}) RoundTrip(text, {.zstd_level = level});
}

// The same input and options give the same bytes, whatever the thread's context did before.
TEST_P(CodecRoundTripTest, DeterministicAcrossThreads) {
  const std::string text = TextLike(300 << 10, 6);
  const std::string want = MustCompress(GetParam(), text);
  (void)MustCompress(GetParam(), text, {.zstd_level = 19, .lz4_acceleration = 8});
  EXPECT_EQ(MustCompress(GetParam(), text), want);
  std::vector<std::thread> threads;
  std::vector<int> same(4, 0);
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 5; ++i) {
        (void)MustCompress(GetParam(), text, {.zstd_level = 3 + t});
        std::string raw;
        same[t] += MustCompress(GetParam(), text) == want &&
                   Decode(GetParam(), want, text.size(), &raw).ok() && raw == text;
      }
    });
  }
  for (auto& th : threads) th.join();
  for (int t = 0; t < 4; ++t) EXPECT_EQ(same[t], 5) << "thread " << t;
}

TEST_P(CodecRoundTripTest, WrongRawLengthIsDataLoss) {
  for (const std::string& raw : {TextLike(4096, 7), RandomBytes(4096, 8), std::string()}) {
    const std::string stored = MustCompress(GetParam(), raw);
    ASSERT_TRUE(Decode(GetParam(), stored, raw.size()).ok());
    for (size_t wrong : {raw.size() + 1, raw.size() * 2 + 1, size_t{1} << 20}) {
      EXPECT_EQ(Decode(GetParam(), stored, wrong).code(), Code::kDataLoss) << wrong;
    }
    if (!raw.empty()) {
      for (size_t wrong : {raw.size() - 1, raw.size() / 2, size_t{0}}) {
        EXPECT_EQ(Decode(GetParam(), stored, wrong).code(), Code::kDataLoss) << wrong;
      }
    }
  }
}

TEST_P(CodecRoundTripTest, RawLengthAboveCapIsDataLoss) {
  Status s = Decode(GetParam(), "abc", kMaxRawLength + 1);
  EXPECT_EQ(s.code(), Code::kDataLoss);
  EXPECT_NE(s.message().find("cap"), std::string_view::npos) << s.ToString();
  s = Decode(GetParam(), "abc", ~size_t{0});
  EXPECT_EQ(s.code(), Code::kDataLoss);
}

TEST_P(CodecRoundTripTest, InputAboveCapIsInvalidArgument) {
  std::string out = "keep";
  const std::string big(kMaxRawLength + 1, 'a');
  EXPECT_EQ(Compress(GetParam(), big, &out).code(), Code::kInvalidArgument);
  EXPECT_EQ(out, "keep");
}

INSTANTIATE_TEST_SUITE_P(Codec, CodecRoundTripTest,
                         ::testing::Values(Codec::kNone, Codec::kLz4, Codec::kZstd),
                         [](const auto& info) { return std::string(CodecName(info.param)); });

class CodecCorruptionTest : public ::testing::TestWithParam<Codec> {};

TEST_P(CodecCorruptionTest, TruncatedIsDataLoss) {
  const std::string raw = TextLike(4096, 9);
  const std::string stored = MustCompress(GetParam(), raw);
  for (size_t len = 0; len < stored.size(); ++len) {
    Status s = Decode(GetParam(), std::string_view(stored).substr(0, len), raw.size());
    ASSERT_EQ(s.code(), Code::kDataLoss) << "prefix " << len << ": " << s.ToString();
  }
}

TEST_P(CodecCorruptionTest, TrailingBytesAreDataLoss) {
  const std::string raw = TextLike(4096, 10);
  const std::string stored = MustCompress(GetParam(), raw);
  for (std::string_view tail : {std::string_view("\0", 1), std::string_view("garbage")}) {
    EXPECT_EQ(Decode(GetParam(), stored + std::string(tail), raw.size()).code(), Code::kDataLoss);
  }
  // A second whole frame after the first is trailing bytes too.
  EXPECT_EQ(Decode(GetParam(), stored + stored, raw.size()).code(), Code::kDataLoss);
}

TEST_P(CodecCorruptionTest, GarbageIsDataLoss) {
  for (uint64_t seed = 0; seed < 200; ++seed) {
    const std::string junk = RandomBytes(1 + seed * 7 % 300, seed);
    for (size_t raw_length : {size_t{0}, size_t{1}, size_t{100}, size_t{4096}, size_t{1} << 20}) {
      ASSERT_EQ(Decode(GetParam(), junk, raw_length).code(), Code::kDataLoss)
          << "seed " << seed << " raw_length " << raw_length;
    }
  }
}

// A flipped byte either still decodes to raw_length bytes (a flip inside literals: the frame
// and record checksums catch those) or is kDataLoss; never another code, never a crash.
TEST_P(CodecCorruptionTest, FlippedBytesDecodeToTheLengthOrAreDataLoss) {
  for (const std::string& raw : {TextLike(4096, 11), TextLike(64 << 10, 12)}) {
    const std::string stored = MustCompress(GetParam(), raw);
    int lost = 0;
    for (size_t i = 0; i < stored.size(); i += 1 + i / 64) {
      for (uint8_t flip : {0x01, 0x80, 0xff}) {
        std::string bad = stored;
        bad[i] = static_cast<char>(bad[i] ^ flip);
        Status s = Decode(GetParam(), bad, raw.size());
        ASSERT_TRUE(s.ok() || s.code() == Code::kDataLoss) << i << ": " << s.ToString();
        lost += !s.ok();
      }
    }
    EXPECT_GT(lost, 0);
  }
}

TEST_P(CodecCorruptionTest, MessageNamesCodecAndLength) {
  const std::string stored = MustCompress(GetParam(), TextLike(4096, 13));
  Status s = Decode(GetParam(), std::string_view(stored).substr(0, stored.size() - 1), 4096);
  ASSERT_EQ(s.code(), Code::kDataLoss);
  const std::string want = std::string(CodecName(GetParam())) +
                           " frame does not decompress to 4096 bytes: ";
  EXPECT_EQ(s.message().substr(0, want.size()), want) << s.ToString();
}

INSTANTIATE_TEST_SUITE_P(Codec, CodecCorruptionTest, ::testing::Values(Codec::kLz4, Codec::kZstd),
                         [](const auto& info) { return std::string(CodecName(info.param)); });

TEST(CodecTest, UncompressedLengthMismatchIsDataLoss) {
  Status s = Decode(Codec::kNone, "abc", 4);
  EXPECT_EQ(s.code(), Code::kDataLoss);
  EXPECT_EQ(s.message(), "none frame does not decompress to 4 bytes: it holds 3 bytes");
}

TEST(CodecTest, UnknownCodec) {
  const Codec bad = static_cast<Codec>(3);
  std::string out = "keep";
  EXPECT_EQ(Compress(bad, "abc", &out).code(), Code::kInvalidArgument);
  Status s = Decompress(bad, "abc", 3, &out);
  EXPECT_EQ(s.code(), Code::kDataLoss);
  EXPECT_EQ(s.message(), "unknown codec 3");
  EXPECT_EQ(out, "keep");
}

TEST(CodecTest, OptionsOutOfRangeAreInvalidArgument) {
  std::string out;
  EXPECT_EQ(Compress(Codec::kLz4, "abc", {.lz4_acceleration = 0}, &out).code(),
            Code::kInvalidArgument);
  EXPECT_EQ(Compress(Codec::kLz4, "abc", {.lz4_acceleration = 65538}, &out).code(),
            Code::kInvalidArgument);
  EXPECT_EQ(Compress(Codec::kZstd, "abc", {.zstd_level = ZSTD_maxCLevel() + 1}, &out).code(),
            Code::kInvalidArgument);
  EXPECT_EQ(Compress(Codec::kZstd, "abc", {.zstd_level = ZSTD_minCLevel() - 1}, &out).code(),
            Code::kInvalidArgument);
  EXPECT_TRUE(out.empty());
}

// An LZ4 block cannot expand more than 255 times; such a claim is refused before the output
// buffer is allocated.
TEST(CodecTest, Lz4RawLengthBeyondAnyExpansionIsDataLoss) {
  const std::string stored = MustCompress(Codec::kLz4, std::string(4096, '\0'));
  Status s = Decode(Codec::kLz4, stored, kMaxRawLength);
  EXPECT_EQ(s.code(), Code::kDataLoss);
  EXPECT_NE(s.message().find("cannot expand that far"), std::string_view::npos) << s.ToString();
}

// Frames a Ferry sender never makes are refused: no declared size, skippable frames, a legacy
// magic, a frame that needs a dictionary.
TEST(CodecTest, ZstdFramesOutsideTheProfileAreDataLoss) {
  const std::string raw = TextLike(4096, 14);
  {
    ZSTD_CCtx* cctx = ZSTD_createCCtx();
    ASSERT_EQ(ZSTD_isError(ZSTD_CCtx_setParameter(cctx, ZSTD_c_contentSizeFlag, 0)), 0u);
    std::string stored(ZSTD_compressBound(raw.size()), '\0');
    size_t n = ZSTD_compress2(cctx, stored.data(), stored.size(), raw.data(), raw.size());
    ZSTD_freeCCtx(cctx);
    ASSERT_FALSE(ZSTD_isError(n));
    stored.resize(n);
    Status s = Decode(Codec::kZstd, stored, raw.size());
    EXPECT_EQ(s.code(), Code::kDataLoss);
    EXPECT_NE(s.message().find("does not declare its size"), std::string_view::npos);
  }
  {
    std::string skippable(8, '\0');
    skippable[0] = 0x50;  // 0x184D2A50: a skippable frame of 0 bytes
    skippable[1] = 0x2A;
    skippable[2] = 0x4D;
    skippable[3] = 0x18;
    EXPECT_EQ(Decode(Codec::kZstd, skippable, 0).code(), Code::kDataLoss);
    EXPECT_EQ(Decode(Codec::kZstd, skippable + MustCompress(Codec::kZstd, raw), raw.size()).code(),
              Code::kDataLoss);
  }
  {
    std::string legacy = MustCompress(Codec::kZstd, raw);
    legacy[0] = 0x27;  // 0xFD2FB527: zstd v0.7
    EXPECT_EQ(Decode(Codec::kZstd, legacy, raw.size()).code(), Code::kDataLoss);
  }
  {
    // Compressed against a dictionary the receiver does not have: the matches reach before
    // the start of the output.
    ZSTD_CCtx* cctx = ZSTD_createCCtx();
    const std::string dict = TextLike(1024, 15);
    std::string stored(ZSTD_compressBound(raw.size()), '\0');
    size_t n = ZSTD_compress_usingDict(cctx, stored.data(), stored.size(), raw.data(), raw.size(),
                                       dict.data(), dict.size(), 1);
    ZSTD_freeCCtx(cctx);
    ASSERT_FALSE(ZSTD_isError(n));
    stored.resize(n);
    Status s = Decode(Codec::kZstd, stored, raw.size());
    EXPECT_EQ(s.code(), Code::kDataLoss) << s.ToString();
  }
}

TEST(CodecIsAllZeroTest, ZeroBuffers) {
  EXPECT_TRUE(IsAllZero(""));
  EXPECT_TRUE(IsAllZero(std::string_view()));
  for (size_t n : {1, 7, 8, 9, 15, 63, 64, 65, 4095, 4096, 4097, 8195, 1 << 20}) {
    EXPECT_TRUE(IsAllZero(std::string(n, '\0'))) << n;
  }
}

TEST(CodecIsAllZeroTest, OneNonZeroByteAnywhere) {
  for (size_t n : {1, 3, 8, 13, 64, 100, 4095, 4096, 4097, 12291}) {
    std::vector<size_t> positions;
    if (n <= 100) {
      for (size_t i = 0; i < n; ++i) positions.push_back(i);
    } else {
      positions = {0, 1, 7, 8, 4094, 4095, n / 2, n - 8, n - 2, n - 1};
    }
    for (size_t i : positions) {
      if (i >= n) continue;
      std::string s(n, '\0');
      for (char v : {'\x01', '\x80', '\xff'}) {
        s[i] = v;
        EXPECT_FALSE(IsAllZero(s)) << "length " << n << " byte " << i;
      }
    }
  }
}

TEST(CodecIsAllZeroTest, UnalignedViews) {
  std::string s(4096 + 16, '\0');
  for (size_t start = 0; start < 8; ++start) {
    EXPECT_TRUE(IsAllZero(std::string_view(s).substr(start, 4096 + 1)));
  }
  // A non-zero byte just outside the view is not seen; just inside it is.
  s[3] = 1;
  s[4 + 4096] = 1;
  EXPECT_TRUE(IsAllZero(std::string_view(s).substr(4, 4096)));
  EXPECT_FALSE(IsAllZero(std::string_view(s).substr(3, 4096)));
  EXPECT_FALSE(IsAllZero(std::string_view(s).substr(5, 4096)));
}

}  // namespace
}  // namespace ferry::link
