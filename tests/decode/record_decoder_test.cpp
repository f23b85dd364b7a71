// RecordDecoder on records laid out byte for byte as the kernel writes them.
#include "collector/decode/record_decoder.hpp"

#include <gtest/gtest.h>
#include <linux/perf_event.h>

#include <cstring>
#include <iterator>
#include <stdexcept>
#include <string>
#include <vector>

#include "testing/fake_ring.hpp"

namespace perfstream {
namespace {

using perfstream::testing::FakeKernelRing;
using Bytes = std::vector<std::byte>;

// What PerfEventArray opens: TIME | CPU | RAW with sample_id_all.
constexpr std::uint64_t kEventSampleType = PERF_SAMPLE_TIME | PERF_SAMPLE_CPU | PERF_SAMPLE_RAW;

RecordDecoder make_decoder(std::uint64_t sample_type, bool sample_id_all) {
  auto decoder = RecordDecoder::create(sample_type, sample_id_all);
  if (!decoder) throw std::runtime_error(decoder.error().message());
  return std::move(decoder).value();
}

Bytes payload(std::size_t size) {
  Bytes out(size);
  for (std::size_t i = 0; i < size; ++i) out[i] = static_cast<std::byte>(0xa0 + i);
  return out;
}

// Builds a record field by field; the header's size is the bytes appended unless told otherwise.
class RecordBuilder {
 public:
  explicit RecordBuilder(std::uint32_t type) : type_(type), bytes_(sizeof(perf_event_header)) {}

  template <typename T>
  RecordBuilder& put(T value) {
    const std::size_t at = bytes_.size();
    bytes_.resize(at + sizeof(T));
    std::memcpy(bytes_.data() + at, &value, sizeof(T));
    return *this;
  }
  RecordBuilder& append(const Bytes& more) {
    bytes_.insert(bytes_.end(), more.begin(), more.end());
    return *this;
  }
  Bytes build() const { return build_claiming(static_cast<std::uint16_t>(bytes_.size())); }
  Bytes build_claiming(std::uint16_t header_size) const {
    Bytes out = bytes_;
    perf_event_header header{type_, 0, header_size};
    std::memcpy(out.data(), &header, sizeof(header));
    return out;
  }

 private:
  std::uint32_t type_;
  Bytes bytes_;
};

TEST(RecordDecoder, DecodesTimeCpuAndRawOfAKernelSample) {
  const RecordDecoder decoder = make_decoder(kEventSampleType, true);
  const Bytes data = payload(5);
  const Bytes rec = FakeKernelRing::sample(123456789012345ull, 7, data);
  const DecodedRecord d = decoder.decode(rec);
  ASSERT_EQ(d.kind, RecordKind::Sample);
  EXPECT_EQ(d.type, static_cast<std::uint32_t>(PERF_RECORD_SAMPLE));
  EXPECT_EQ(d.sample.time, 123456789012345ull);
  EXPECT_EQ(d.sample.cpu, 7u);
  EXPECT_EQ(d.sample.pid, 0u);
  EXPECT_EQ(d.sample.id, 0u);
  // 5 payload bytes + the u32 size make 9; the kernel pads to 16, so raw is 12 bytes.
  ASSERT_EQ(d.sample.raw.size(), 12u);
  EXPECT_EQ(d.sample.raw.data(), rec.data() + 28);  // a view into the record, not a copy
  EXPECT_EQ(0, std::memcmp(d.sample.raw.data(), data.data(), data.size()));
  for (std::size_t i = 5; i < 12; ++i) EXPECT_EQ(d.sample.raw[i], std::byte{0}) << "padding byte " << i;
}

TEST(RecordDecoder, RawSizeIsThePaddedSizeForEveryPayloadLength) {
  const RecordDecoder decoder = make_decoder(kEventSampleType, true);
  for (std::size_t n = 0; n <= 40; ++n) {
    SCOPED_TRACE("payload " + std::to_string(n));
    const Bytes data = payload(n);
    const Bytes rec = FakeKernelRing::sample(n, 1, data);
    ASSERT_EQ(rec.size() % 8, 0u);
    const DecodedRecord d = decoder.decode(rec);
    ASSERT_EQ(d.kind, RecordKind::Sample);
    const std::size_t padded = ((n + 4 + 7) / 8) * 8 - 4;
    ASSERT_EQ(d.sample.raw.size(), padded);
    EXPECT_EQ(d.sample.raw.size() % 8, 4u);
    if (n > 0) {
      EXPECT_EQ(0, std::memcmp(d.sample.raw.data(), data.data(), n));
    }
    for (std::size_t i = n; i < padded; ++i) EXPECT_EQ(d.sample.raw[i], std::byte{0});
    EXPECT_EQ(d.sample.time, n);
  }
}

TEST(RecordDecoder, DecodesLostWithIdCountTimeAndCpuFromTheSampleIdTrailer) {
  const RecordDecoder decoder = make_decoder(kEventSampleType, true);
  const Bytes rec = FakeKernelRing::lost(42, 17, 987654321, 3);
  const DecodedRecord d = decoder.decode(rec);
  ASSERT_EQ(d.kind, RecordKind::Lost);
  EXPECT_EQ(d.type, static_cast<std::uint32_t>(PERF_RECORD_LOST));
  EXPECT_EQ(d.lost.id, 42u);
  EXPECT_EQ(d.lost.lost, 17u);
  EXPECT_EQ(d.lost.time, 987654321u);
  EXPECT_EQ(d.lost.cpu, 3u);
  EXPECT_TRUE(d.lost.has_sample_id);
}

TEST(RecordDecoder, LostWithoutSampleIdAllHasNoTimeOrCpu) {
  const RecordDecoder decoder = make_decoder(kEventSampleType, false);
  const Bytes rec = RecordBuilder(PERF_RECORD_LOST).put<std::uint64_t>(5).put<std::uint64_t>(99).build();
  const DecodedRecord d = decoder.decode(rec);
  ASSERT_EQ(d.kind, RecordKind::Lost);
  EXPECT_EQ(d.lost.id, 5u);
  EXPECT_EQ(d.lost.lost, 99u);
  EXPECT_EQ(d.lost.time, 0u);
  EXPECT_EQ(d.lost.cpu, 0u);
  EXPECT_FALSE(d.lost.has_sample_id);
}

// perfstream's own events ask for RAW alone (PERF_SAMPLE_TIME only when a record has no timestamp of its
// own): a sample is its raw area right after the header, and a loss notice's sample_id trailer is empty.
TEST(RecordDecoder, RawOnlySampleHasNoTimeOrCpuAndItsRawRightAfterTheHeader) {
  const RecordDecoder decoder = make_decoder(PERF_SAMPLE_RAW, true);
  const Bytes data = payload(12);
  const Bytes rec = FakeKernelRing::raw_sample(data);
  ASSERT_EQ(rec.size(), sizeof(perf_event_header) + 4 + 12);
  const DecodedRecord d = decoder.decode(rec);
  ASSERT_EQ(d.kind, RecordKind::Sample);
  EXPECT_EQ(d.sample.time, 0u);
  EXPECT_EQ(d.sample.cpu, 0u);
  ASSERT_EQ(d.sample.raw.size(), 12u);
  EXPECT_EQ(d.sample.raw.data(), rec.data() + sizeof(perf_event_header) + 4);
  EXPECT_EQ(0, std::memcmp(d.sample.raw.data(), data.data(), 12));
}

TEST(RecordDecoder, RawAndTimeSampleHasItsTimeAndNoCpu) {
  const RecordDecoder decoder = make_decoder(PERF_SAMPLE_TIME | PERF_SAMPLE_RAW, true);
  const Bytes data = payload(4);
  const Bytes rec = RecordBuilder(PERF_RECORD_SAMPLE).put<std::uint64_t>(31337).put<std::uint32_t>(4).append(data).build();
  const DecodedRecord d = decoder.decode(rec);
  ASSERT_EQ(d.kind, RecordKind::Sample);
  EXPECT_EQ(d.sample.time, 31337u);
  EXPECT_EQ(d.sample.cpu, 0u);
  ASSERT_EQ(d.sample.raw.size(), 4u);
}

TEST(RecordDecoder, RawOnlyLostHasAnEmptySampleIdWithNoTimeOrCpu) {
  const RecordDecoder decoder = make_decoder(PERF_SAMPLE_RAW, true);
  const DecodedRecord d = decoder.decode(FakeKernelRing::raw_lost(8, 23));
  ASSERT_EQ(d.kind, RecordKind::Lost);
  EXPECT_EQ(d.lost.id, 8u);
  EXPECT_EQ(d.lost.lost, 23u);
  EXPECT_EQ(d.lost.time, 0u) << "the drain times it";
  EXPECT_EQ(d.lost.cpu, 0u) << "the drain gives the ring's CPU";
  EXPECT_TRUE(d.lost.has_sample_id);
}

TEST(RecordDecoder, LostMissingItsTrailerStillGivesTheCount) {
  const RecordDecoder decoder = make_decoder(kEventSampleType, true);
  const Bytes rec = RecordBuilder(PERF_RECORD_LOST).put<std::uint64_t>(5).put<std::uint64_t>(99).build();
  const DecodedRecord d = decoder.decode(rec);
  ASSERT_EQ(d.kind, RecordKind::Lost);
  EXPECT_EQ(d.lost.lost, 99u);
  EXPECT_FALSE(d.lost.has_sample_id);
  EXPECT_EQ(d.lost.time, 0u);
}

TEST(RecordDecoder, DecodesLostSamples) {
  const RecordDecoder decoder = make_decoder(kEventSampleType, true);
  const Bytes rec = RecordBuilder(PERF_RECORD_LOST_SAMPLES)
                        .put<std::uint64_t>(1234)        // lost
                        .put<std::uint64_t>(55555555)    // sample_id: time
                        .put<std::uint32_t>(11)          // cpu
                        .put<std::uint32_t>(0xffffffff)  // res
                        .build();
  const DecodedRecord d = decoder.decode(rec);
  ASSERT_EQ(d.kind, RecordKind::LostSamples);
  EXPECT_EQ(d.type, static_cast<std::uint32_t>(PERF_RECORD_LOST_SAMPLES));
  EXPECT_EQ(d.lost.lost, 1234u);
  EXPECT_EQ(d.lost.id, 0u);
  EXPECT_EQ(d.lost.time, 55555555u);
  EXPECT_EQ(d.lost.cpu, 11u);
  EXPECT_TRUE(d.lost.has_sample_id);
}

TEST(RecordDecoder, ReadsTheSampleIdTrailerAtTheOffsetsTheSampleTypeGives) {
  // sample_id: {pid, tid} if TID; time if TIME; id if ID; {cpu, res} if CPU.
  const RecordDecoder decoder =
      make_decoder(PERF_SAMPLE_TID | PERF_SAMPLE_TIME | PERF_SAMPLE_ID | PERF_SAMPLE_CPU | PERF_SAMPLE_RAW, true);
  const Bytes rec = RecordBuilder(PERF_RECORD_LOST)
                        .put<std::uint64_t>(77)  // id
                        .put<std::uint64_t>(8)   // lost
                        .put<std::uint32_t>(1000).put<std::uint32_t>(1001)  // pid, tid
                        .put<std::uint64_t>(424242)                          // time
                        .put<std::uint64_t>(77)                              // id
                        .put<std::uint32_t>(6).put<std::uint32_t>(0)         // cpu, res
                        .build();
  const DecodedRecord d = decoder.decode(rec);
  ASSERT_EQ(d.kind, RecordKind::Lost);
  EXPECT_EQ(d.lost.id, 77u);
  EXPECT_EQ(d.lost.lost, 8u);
  EXPECT_EQ(d.lost.time, 424242u);
  EXPECT_EQ(d.lost.cpu, 6u);
  EXPECT_TRUE(d.lost.has_sample_id);
}

TEST(RecordDecoder, OtherRecordTypesAreReportedAsOther) {
  const RecordDecoder decoder = make_decoder(kEventSampleType, true);
  const std::uint32_t types[] = {PERF_RECORD_MMAP, PERF_RECORD_COMM, PERF_RECORD_EXIT, PERF_RECORD_THROTTLE,
                                 PERF_RECORD_MMAP2, 200};
  for (std::uint32_t type : types) {
    SCOPED_TRACE("type " + std::to_string(type));
    const DecodedRecord d = decoder.decode(FakeKernelRing::other(type, 24));
    EXPECT_EQ(d.kind, RecordKind::Other);
    EXPECT_EQ(d.type, type);
  }
}

TEST(RecordDecoder, MalformedRecordsAreReportedWithAReason) {
  const RecordDecoder decoder = make_decoder(kEventSampleType, true);
  Bytes raw_past_end = FakeKernelRing::sample(1, 2, payload(12));  // raw size 12 at byte 24
  const std::uint32_t too_big = 20;
  std::memcpy(raw_past_end.data() + 24, &too_big, 4);
  Bytes longer_than_header = FakeKernelRing::sample(1, 2, payload(4));
  longer_than_header.resize(longer_than_header.size() + 8);

  struct Case {
    const char* name;
    Bytes record;
    std::uint32_t type;
    const char* reason;
  };
  const Case cases[] = {
      {"raw size past the end", raw_past_end, PERF_RECORD_SAMPLE, "raw size runs past the end of the sample"},
      {"sample with only a time", RecordBuilder(PERF_RECORD_SAMPLE).put<std::uint64_t>(1).build(), PERF_RECORD_SAMPLE,
       "sample shorter than its sample_type fields"},
      {"sample with a bare header", RecordBuilder(PERF_RECORD_SAMPLE).build(), PERF_RECORD_SAMPLE,
       "sample shorter than its sample_type fields"},
      {"sample without raw size",
       RecordBuilder(PERF_RECORD_SAMPLE).put<std::uint64_t>(1).put<std::uint32_t>(2).put<std::uint32_t>(0).build(),
       PERF_RECORD_SAMPLE, "sample ends before its raw size"},
      {"header size larger than the record", RecordBuilder(PERF_RECORD_SAMPLE).put<std::uint64_t>(1).build_claiming(24),
       PERF_RECORD_SAMPLE, "header size differs from the record's length"},
      {"record longer than its header size", longer_than_header, PERF_RECORD_SAMPLE,
       "header size differs from the record's length"},
      {"shorter than a header", Bytes(4), 0, "record shorter than its header"},
      {"lost without its count", RecordBuilder(PERF_RECORD_LOST).put<std::uint64_t>(1).build(), PERF_RECORD_LOST,
       "lost record too short"},
      {"lost samples without its count", RecordBuilder(PERF_RECORD_LOST_SAMPLES).build(), PERF_RECORD_LOST_SAMPLES,
       "lost-samples record too short"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    const DecodedRecord d = decoder.decode(c.record);
    EXPECT_EQ(d.kind, RecordKind::Malformed);
    EXPECT_EQ(d.type, c.type);
    EXPECT_STREQ(d.malformed, c.reason);
  }
}

TEST(RecordDecoder, CreateRefusesUnsupportedSampleTypeBitsNamingThem) {
  {
    auto decoder = RecordDecoder::create(kEventSampleType | PERF_SAMPLE_CALLCHAIN, true);
    ASSERT_FALSE(decoder);
    const std::string& message = decoder.error().message();
    EXPECT_EQ(message.find("record decoder: sample_type 0x4a4 has fields perfstream does not decode: CALLCHAIN"), 0u)
        << message;
  }
  {
    auto decoder = RecordDecoder::create(PERF_SAMPLE_READ | PERF_SAMPLE_RAW | PERF_SAMPLE_REGS_USER, false);
    ASSERT_FALSE(decoder);
    EXPECT_NE(decoder.error().message().find("does not decode: READ, REGS_USER ("), std::string::npos)
        << decoder.error().message();
  }
  {
    auto decoder = RecordDecoder::create(PERF_SAMPLE_RAW | (1ull << 40), true);
    ASSERT_FALSE(decoder);
    EXPECT_NE(decoder.error().message().find("does not decode: bit 40 ("), std::string::npos)
        << decoder.error().message();
  }
}

TEST(RecordDecoder, CreateAcceptsEverySupportedField) {
  const std::uint64_t all = PERF_SAMPLE_IDENTIFIER | PERF_SAMPLE_IP | PERF_SAMPLE_TID | PERF_SAMPLE_TIME |
                            PERF_SAMPLE_ADDR | PERF_SAMPLE_ID | PERF_SAMPLE_STREAM_ID | PERF_SAMPLE_CPU |
                            PERF_SAMPLE_PERIOD | PERF_SAMPLE_RAW;
  auto decoder = RecordDecoder::create(all, true);
  ASSERT_TRUE(decoder) << decoder.error().message();
  EXPECT_EQ(decoder->sample_type(), all);
}

TEST(RecordDecoder, DecodesAHandBuiltSampleWithTidTimeIdCpuRaw) {
  const RecordDecoder decoder =
      make_decoder(PERF_SAMPLE_TID | PERF_SAMPLE_TIME | PERF_SAMPLE_ID | PERF_SAMPLE_CPU | PERF_SAMPLE_RAW, true);
  const Bytes data = payload(12);  // 12 + 4 = 16: no padding
  const Bytes rec = RecordBuilder(PERF_RECORD_SAMPLE)
                        .put<std::uint32_t>(4321).put<std::uint32_t>(4322)  // pid, tid
                        .put<std::uint64_t>(0x1122334455667788ull)           // time
                        .put<std::uint64_t>(0xabcdefull)                     // id
                        .put<std::uint32_t>(13).put<std::uint32_t>(0)        // cpu, res
                        .put<std::uint32_t>(12)                              // raw size
                        .append(data)
                        .build();
  ASSERT_EQ(rec.size(), 56u);
  const DecodedRecord d = decoder.decode(rec);
  ASSERT_EQ(d.kind, RecordKind::Sample);
  EXPECT_EQ(d.sample.pid, 4321u);
  EXPECT_EQ(d.sample.tid, 4322u);
  EXPECT_EQ(d.sample.time, 0x1122334455667788ull);
  EXPECT_EQ(d.sample.id, 0xabcdefu);
  EXPECT_EQ(d.sample.cpu, 13u);
  ASSERT_EQ(d.sample.raw.size(), 12u);
  EXPECT_EQ(d.sample.raw.data(), rec.data() + 44);
  EXPECT_EQ(0, std::memcmp(d.sample.raw.data(), data.data(), 12));
}

TEST(RecordDecoder, SkipsIpAddrStreamIdAndPeriodInKernelOrder) {
  const RecordDecoder decoder = make_decoder(
      PERF_SAMPLE_IDENTIFIER | PERF_SAMPLE_IP | PERF_SAMPLE_TID | PERF_SAMPLE_TIME | PERF_SAMPLE_ADDR | PERF_SAMPLE_ID |
          PERF_SAMPLE_STREAM_ID | PERF_SAMPLE_CPU | PERF_SAMPLE_PERIOD | PERF_SAMPLE_RAW,
      true);
  const Bytes data = payload(4);  // 4 + 4 = 8: no padding
  const Bytes rec = RecordBuilder(PERF_RECORD_SAMPLE)
                        .put<std::uint64_t>(0x1d)                     // identifier
                        .put<std::uint64_t>(0xffffffff81000000ull)    // ip
                        .put<std::uint32_t>(10).put<std::uint32_t>(11)  // pid, tid
                        .put<std::uint64_t>(5000)                     // time
                        .put<std::uint64_t>(0xdeadbeefull)            // addr
                        .put<std::uint64_t>(0x1d)                     // id
                        .put<std::uint64_t>(0x5151)                   // stream_id
                        .put<std::uint32_t>(2).put<std::uint32_t>(0)  // cpu, res
                        .put<std::uint64_t>(1)                        // period
                        .put<std::uint32_t>(4)                        // raw size
                        .append(data)
                        .build();
  const DecodedRecord d = decoder.decode(rec);
  ASSERT_EQ(d.kind, RecordKind::Sample);
  EXPECT_EQ(d.sample.id, 0x1du);
  EXPECT_EQ(d.sample.pid, 10u);
  EXPECT_EQ(d.sample.tid, 11u);
  EXPECT_EQ(d.sample.time, 5000u);
  EXPECT_EQ(d.sample.cpu, 2u);
  ASSERT_EQ(d.sample.raw.size(), 4u);
  EXPECT_EQ(0, std::memcmp(d.sample.raw.data(), data.data(), 4));
}

TEST(RecordDecoder, SampleWithoutRawHasAnEmptyRawView) {
  const RecordDecoder decoder = make_decoder(PERF_SAMPLE_TIME | PERF_SAMPLE_CPU, true);
  const Bytes rec =
      RecordBuilder(PERF_RECORD_SAMPLE).put<std::uint64_t>(77).put<std::uint32_t>(4).put<std::uint32_t>(0).build();
  const DecodedRecord d = decoder.decode(rec);
  ASSERT_EQ(d.kind, RecordKind::Sample);
  EXPECT_EQ(d.sample.time, 77u);
  EXPECT_EQ(d.sample.cpu, 4u);
  EXPECT_TRUE(d.sample.raw.empty());
}


// decode() reads a well-formed sample at offsets computed from sample_type, and hands everything else to a
// field-by-field reader; both must agree for every combination of fields, and no truncation may pass.
TEST(RecordDecoder, EveryCombinationOfSampleFieldsDecodesInKernelOrderAndEveryTruncationIsMalformed) {
  const std::uint64_t fields[] = {PERF_SAMPLE_IDENTIFIER, PERF_SAMPLE_IP,  PERF_SAMPLE_TID,       PERF_SAMPLE_TIME,
                                  PERF_SAMPLE_ADDR,       PERF_SAMPLE_ID,  PERF_SAMPLE_STREAM_ID, PERF_SAMPLE_CPU,
                                  PERF_SAMPLE_PERIOD,     PERF_SAMPLE_RAW};
  const Bytes data = payload(12);  // 12 + 4 = 16: no padding, so cutting anywhere in it is a truncation
  for (unsigned mask = 0; mask < (1u << std::size(fields)); ++mask) {
    std::uint64_t sample_type = 0;
    for (std::size_t i = 0; i < std::size(fields); ++i) {
      if (mask & (1u << i)) sample_type |= fields[i];
    }
    SCOPED_TRACE("sample_type 0x" + std::to_string(sample_type));
    const RecordDecoder decoder = make_decoder(sample_type, true);
    RecordBuilder builder(PERF_RECORD_SAMPLE);
    if (sample_type & PERF_SAMPLE_IDENTIFIER) builder.put<std::uint64_t>(0x1d1d);
    if (sample_type & PERF_SAMPLE_IP) builder.put<std::uint64_t>(0xffffffff81000000ull);
    if (sample_type & PERF_SAMPLE_TID) builder.put<std::uint32_t>(101).put<std::uint32_t>(102);
    if (sample_type & PERF_SAMPLE_TIME) builder.put<std::uint64_t>(0x1122334455667788ull);
    if (sample_type & PERF_SAMPLE_ADDR) builder.put<std::uint64_t>(0xdeadbeefull);
    if (sample_type & PERF_SAMPLE_ID) builder.put<std::uint64_t>(0x2e2e);
    if (sample_type & PERF_SAMPLE_STREAM_ID) builder.put<std::uint64_t>(0x5151);
    if (sample_type & PERF_SAMPLE_CPU) builder.put<std::uint32_t>(7).put<std::uint32_t>(0);
    if (sample_type & PERF_SAMPLE_PERIOD) builder.put<std::uint64_t>(1);
    if (sample_type & PERF_SAMPLE_RAW) builder.put<std::uint32_t>(12).append(data);
    const Bytes rec = builder.build();

    const DecodedRecord d = decoder.decode(rec);
    ASSERT_EQ(d.kind, RecordKind::Sample) << d.malformed;
    EXPECT_EQ(d.type, static_cast<std::uint32_t>(PERF_RECORD_SAMPLE));
    // ID comes after IDENTIFIER and holds the same id; the later one is kept.
    const std::uint64_t id =
        (sample_type & PERF_SAMPLE_ID) ? 0x2e2e : (sample_type & PERF_SAMPLE_IDENTIFIER) ? 0x1d1d : 0;
    EXPECT_EQ(d.sample.id, id);
    EXPECT_EQ(d.sample.pid, (sample_type & PERF_SAMPLE_TID) ? 101u : 0u);
    EXPECT_EQ(d.sample.tid, (sample_type & PERF_SAMPLE_TID) ? 102u : 0u);
    EXPECT_EQ(d.sample.time, (sample_type & PERF_SAMPLE_TIME) ? 0x1122334455667788ull : 0u);
    EXPECT_EQ(d.sample.cpu, (sample_type & PERF_SAMPLE_CPU) ? 7u : 0u);
    if (sample_type & PERF_SAMPLE_RAW) {
      ASSERT_EQ(d.sample.raw.size(), data.size());
      EXPECT_EQ(d.sample.raw.data(), rec.data() + rec.size() - data.size());
    } else {
      EXPECT_TRUE(d.sample.raw.empty());
    }
    EXPECT_EQ(d.lost.lost, 0u);
    EXPECT_FALSE(d.lost.has_sample_id);
    EXPECT_STREQ(d.malformed, "");

    for (std::size_t cut = 0; cut < rec.size(); ++cut) {
      Bytes shorter(rec.begin(), rec.begin() + static_cast<std::ptrdiff_t>(cut));
      if (cut >= sizeof(perf_event_header)) {
        perf_event_header header{PERF_RECORD_SAMPLE, 0, static_cast<std::uint16_t>(cut)};
        std::memcpy(shorter.data(), &header, sizeof(header));
      }
      const DecodedRecord t = decoder.decode(shorter);
      EXPECT_EQ(t.kind, RecordKind::Malformed) << "cut at " << cut;
      EXPECT_EQ(t.sample.raw.size(), 0u);
    }
  }
}

}  // namespace
}  // namespace perfstream
