// The mel front end's tables (window, twiddles, Bluestein chirp, sparse filters), built once per
// configuration and kept on the device that uses them. A training run calls mel_spectrogram with
// one configuration thousands of times; rebuilding the tables on the host and copying them to the
// GPU on every call cost a host build, two transfers and a synchronisation each time.
//
// Why a cache here rather than buffers of a front-end module (as torchaudio's MelScale keeps its
// filters): the functional op musicrep.ops.mel_spectrogram is called directly too (MULE's loader,
// tests, benchmarks), the packed layout (offsets into two arrays) is a detail of this extension,
// and buffers would enter every checkpoint's state dict.
//
// Bounded (least recently used out), thread-safe (one mutex around the list; tables are built
// outside it), and an entry stays alive while a call holds it even if another thread evicts it.
#pragma once
#include <torch/extension.h>

#include <list>
#include <memory>
#include <mutex>
#include <tuple>
#include <utility>

#include "cpu/mel.h"

namespace musicrep {

// Everything the tables depend on (not the clip length, hop, padding, power or log).
struct MelTableKey {
  int64_t n_fft, win_length, n_mels, bluestein;
  bool pow2, htk;
  double sample_rate, f_min, f_max, norm_p;
  c10::Device device;

  bool operator==(const MelTableKey& o) const {
    auto fields = [](const MelTableKey& k) {
      return std::tie(k.n_fft, k.win_length, k.n_mels, k.bluestein, k.pow2, k.htk, k.sample_rate,
                      k.f_min, k.f_max, k.norm_p, k.device);
    };
    return fields(*this) == fields(o);
  }
};

// One configuration's tables: the offsets of cpu::MelTableData (its host vectors released) over
// a copy of its two arrays on the key's device.
template <typename T>
struct MelTableEntry {
  cpu::MelTableData<T> layout;
  at::Tensor reals, ints;

  MelTables<T> view() const { return layout.view(reals.data_ptr<T>(), ints.data_ptr<int32_t>()); }
};

template <typename T>
class MelTableCache {
 public:
  static constexpr size_t kCapacity = 8;  // per dtype; a run uses one or two configurations

  static MelTableCache& instance() {
    // one per dtype, initialised once and thread-safely; never destroyed, so no device tensor
    // is freed during interpreter shutdown, after the CUDA allocator may be gone
    static auto* cache = new MelTableCache();
    return *cache;
  }

  // The tables of `key`, built and copied to key.device on a miss.
  std::shared_ptr<const MelTableEntry<T>> get(const MelTableKey& key, const MelParams& q,
                                              const cpu::MelFilterSpec& spec) {
    {
      const std::lock_guard<std::mutex> lock(mutex_);
      for (auto it = entries_.begin(); it != entries_.end(); ++it) {
        if (it->first == key) {
          entries_.splice(entries_.begin(), entries_, it);  // most recently used first
          return it->second;
        }
      }
    }
    auto entry = build(key, q, spec);
    const std::lock_guard<std::mutex> lock(mutex_);
    for (const auto& kept : entries_)
      if (kept.first == key) return kept.second;  // another thread built it meanwhile
    entries_.emplace_front(key, entry);
    if (entries_.size() > kCapacity) entries_.pop_back();
    return entry;
  }

  size_t size() {
    const std::lock_guard<std::mutex> lock(mutex_);
    return entries_.size();
  }

  void clear() {
    const std::lock_guard<std::mutex> lock(mutex_);
    entries_.clear();
  }

 private:
  static std::shared_ptr<const MelTableEntry<T>> build(const MelTableKey& key, const MelParams& q,
                                                       const cpu::MelFilterSpec& spec) {
    auto entry = std::make_shared<MelTableEntry<T>>();
    entry->layout = cpu::build_mel_tables<T>(q, key.win_length, spec);
    auto& host = entry->layout;
    // a blocking copy: the tables are on the device before any stream reads them
    entry->reals = host_copy(host.reals, c10::CppTypeToScalarType<T>::value).to(key.device);
    entry->ints = host_copy(host.ints, at::kInt).to(key.device);
    host.reals = {};
    host.ints = {};
    return entry;
  }

  template <typename V>
  static at::Tensor host_copy(const std::vector<V>& v, at::ScalarType type) {
    return at::from_blob(const_cast<V*>(v.data()), {static_cast<int64_t>(v.size())},
                         at::TensorOptions().dtype(type)).clone();
  }

  std::mutex mutex_;
  std::list<std::pair<MelTableKey, std::shared_ptr<const MelTableEntry<T>>>> entries_;
};

}  // namespace musicrep
