// What the oneDNN custom calls (onednn_conv.cc, onednn_batch_norm.cc; one library, built by onednn_conv.py)
// share: one engine, primitives that take their scratchpad from the caller, a stream and scratch buffers per
// calling thread (XLA may run two custom calls at once), a cache of built primitives, and the number of OpenMP
// threads each call runs on.

#pragma once

#include <algorithm>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <vector>

#include "oneapi/dnnl/dnnl.hpp"

extern "C" int omp_get_max_threads();
extern "C" void omp_set_num_threads(int);

namespace dl4cv_onednn {

// The OpenMP threads oneDNN may use (OMP_NUM_THREADS, else one per core), read once.
inline int MaxThreads() {
  static const int threads = omp_get_max_threads();
  return threads;
}

// A call's `threads` attribute (the Python side's rule: one per so much work) as the count it runs on: at least
// one, at most MaxThreads().
inline int ClampedThreads(int64_t requested) {
  return static_cast<int>(std::clamp<int64_t>(requested, 1, MaxThreads()));
}

// While alive, oneDNN primitives built or run on this thread use `threads` OpenMP threads. It is an OpenMP
// setting of the calling thread only (XLA's other threads are untouched), and a primitive must run on the count
// it was built for, so the plan caches' keys hold it.
class ThreadLimit {
 public:
  explicit ThreadLimit(int threads) : saved_(omp_get_max_threads()) { omp_set_num_threads(threads); }
  ~ThreadLimit() { omp_set_num_threads(saved_); }
  ThreadLimit(const ThreadLimit&) = delete;
  ThreadLimit& operator=(const ThreadLimit&) = delete;

 private:
  int saved_;
};

inline dnnl::engine& Engine() {
  static dnnl::engine engine(dnnl::engine::kind::cpu, 0);
  return engine;
}

inline dnnl::primitive_attr UserScratchpad() {
  dnnl::primitive_attr attr;
  attr.set_scratchpad_mode(dnnl::scratchpad_mode::user);
  return attr;
}

inline dnnl::stream& ThreadStream() {
  thread_local dnnl::stream stream(Engine());
  return stream;
}

// This thread's scratch buffer `slot` (0 or 1), grown to at least `bytes` and kept.
inline void* ThreadScratch(int slot, size_t bytes) {
  thread_local std::vector<char> buffers[2];
  if (buffers[slot].size() < bytes) buffers[slot].resize(bytes);
  return buffers[slot].data();
}

// A primitive's user scratchpad of `bytes`, in this thread's scratch buffer 1.
inline dnnl::memory ThreadScratchpad(size_t bytes) {
  const dnnl::memory::desc desc({static_cast<int64_t>(bytes)}, dnnl::memory::data_type::u8,
                                dnnl::memory::format_tag::a);
  return dnnl::memory(desc, Engine(), ThreadScratch(1, bytes));
}

// The plan cached under `key`, or `build()`'s, built once per key (one cache per Plan type).
template <typename Plan, typename Build>
std::shared_ptr<const Plan> Cached(const std::vector<int64_t>& key, Build build) {
  static std::mutex mutex;
  static std::map<std::vector<int64_t>, std::shared_ptr<const Plan>> plans;
  {
    std::lock_guard<std::mutex> lock(mutex);
    auto found = plans.find(key);
    if (found != plans.end()) return found->second;
  }
  // Built outside the lock: oneDNN's JIT compilation is slow.
  auto plan = std::make_shared<const Plan>(build());
  std::lock_guard<std::mutex> lock(mutex);
  return plans.emplace(key, plan).first->second;
}

}  // namespace dl4cv_onednn
