// What the oneDNN custom calls (onednn_conv.cc, onednn_batch_norm.cc; one library, built by onednn_conv.py)
// share: one engine, primitives that take their scratchpad from the caller, a stream and scratch buffers per
// calling thread (XLA may run two custom calls at once), and a cache of built primitives.

#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <vector>

#include "oneapi/dnnl/dnnl.hpp"

namespace dl4cv_onednn {

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
