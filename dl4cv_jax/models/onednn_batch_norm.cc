// oneDNN's batch normalization (training forward pass and its backward pass) as XLA:CPU custom calls.
//
// Why: XLA:CPU 0.10 hands a BatchNorm's per-channel sums to YNN's reductions, which do not fuse the conversion
// of a bfloat16 input to float32: each sum first writes the whole input again as float32, and the normalised
// value and the backward pass's terms are written in float32 too. A bfloat16 BatchNorm + ReLU at 128x32x32x16
// took 2.7 ms forward and backward, as long as in float32, against 1.9 ms for PyTorch's (benchmarks/RESULTS.md).
// oneDNN's primitives read and write the activations in their own type and keep float32 only inside.
//
// Layout: activations NHWC (or NC, as N x 1 x 1 x C), float32 or bfloat16; scale, shift, mean and variance
// float32 vectors. The variance is the biased one (over N*H*W), as Flax's BatchNorm uses. Compiled together with
// onednn_conv.cc into one library (dl4cv_jax/models/onednn_conv.py builds it).

#include <cstdint>
#include <cstring>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <tuple>
#include <unordered_map>
#include <vector>

#include "oneapi/dnnl/dnnl.hpp"
#include "xla/ffi/api/ffi.h"

namespace ffi = xla::ffi;
using dnnl::memory;

namespace {

// One normalization's sizes, element type and epsilon (its bits, to be a map key).
struct Shape {
  int64_t n, h, w, c;
  memory::data_type type;
  float epsilon;
};

std::vector<int64_t> Key(bool backward, const Shape& s) {
  uint32_t epsilon_bits;
  std::memcpy(&epsilon_bits, &s.epsilon, sizeof epsilon_bits);
  return {backward, s.n, s.h, s.w, s.c, static_cast<int64_t>(s.type), epsilon_bits};
}

dnnl::engine& Engine() {
  static dnnl::engine engine(dnnl::engine::kind::cpu, 0);
  return engine;
}

memory::desc Activations(const Shape& s) {
  return memory::desc({s.n, s.c, s.h, s.w}, s.type, memory::format_tag::nhwc);
}

memory::desc Channels(const Shape& s) { return memory::desc({s.c}, memory::data_type::f32, memory::format_tag::a); }

dnnl::primitive_attr UserScratchpad() {
  dnnl::primitive_attr attr;
  attr.set_scratchpad_mode(dnnl::scratchpad_mode::user);
  return attr;
}

dnnl::normalization_flags Flags() {
  return dnnl::normalization_flags::use_scale | dnnl::normalization_flags::use_shift;
}
using ForwardPd = dnnl::batch_normalization_forward::primitive_desc;
using BackwardPd = dnnl::batch_normalization_backward::primitive_desc;

ForwardPd ForwardDesc(const Shape& s) {
  return ForwardPd(Engine(), dnnl::prop_kind::forward_training, Activations(s), Activations(s), s.epsilon, Flags(),
                   UserScratchpad());
}

struct Plan {
  dnnl::primitive primitive;
  size_t scratchpad_bytes;
};

Plan Build(bool backward, const Shape& s) {
  const ForwardPd forward = ForwardDesc(s);
  if (!backward) return Plan{dnnl::batch_normalization_forward(forward), forward.scratchpad_desc().get_size()};
  const BackwardPd desc(Engine(), dnnl::prop_kind::backward, Activations(s), Activations(s), Activations(s),
                        s.epsilon, Flags(), forward, UserScratchpad());
  return Plan{dnnl::batch_normalization_backward(desc), desc.scratchpad_desc().get_size()};
}

std::shared_ptr<const Plan> CachedPlan(bool backward, const Shape& s) {
  static std::mutex mutex;
  static std::map<std::vector<int64_t>, std::shared_ptr<const Plan>> plans;
  const auto key = Key(backward, s);
  {
    std::lock_guard<std::mutex> lock(mutex);
    auto found = plans.find(key);
    if (found != plans.end()) return found->second;
  }
  auto plan = std::make_shared<const Plan>(Build(backward, s));  // outside the lock: oneDNN JIT-compiles
  std::lock_guard<std::mutex> lock(mutex);
  return plans.emplace(key, plan).first->second;
}

// Runs `plan` with `arguments` on this thread's stream and scratch buffer (XLA may run two at once).
void Execute(const Plan& plan, std::unordered_map<int, memory> arguments) {
  thread_local std::unique_ptr<dnnl::stream> stream;
  thread_local std::vector<char> scratch;
  if (!stream) stream = std::make_unique<dnnl::stream>(Engine());
  if (scratch.size() < plan.scratchpad_bytes) scratch.resize(plan.scratchpad_bytes);
  const memory::desc bytes({static_cast<int64_t>(plan.scratchpad_bytes)}, memory::data_type::u8, memory::format_tag::a);
  arguments.emplace(DNNL_ARG_SCRATCHPAD, memory(bytes, Engine(), scratch.data()));
  plan.primitive.execute(*stream, arguments);
  stream->wait();
}

// The shape of `x` (NHWC or NC) with its type into `shape`, or an error naming what is wrong.
ffi::Error ShapeOf(const ffi::AnyBuffer& x, float epsilon, Shape& shape) {
  const auto d = x.dimensions();
  if (d.size() != 4 && d.size() != 2) {
    return ffi::Error(ffi::ErrorCode::kInvalidArgument, "onednn_batch_norm: expects NHWC or NC activations");
  }
  if (x.element_type() != ffi::DataType::F32 && x.element_type() != ffi::DataType::BF16) {
    return ffi::Error(ffi::ErrorCode::kInvalidArgument, "onednn_batch_norm: expects float32 or bfloat16");
  }
  const auto type = x.element_type() == ffi::DataType::F32 ? memory::data_type::f32 : memory::data_type::bf16;
  shape = d.size() == 2 ? Shape{d[0], 1, 1, d[1], type, epsilon} : Shape{d[0], d[1], d[2], d[3], type, epsilon};
  return ffi::Error::Success();
}

template <typename Body>
ffi::Error Guarded(Body body) {
  try {
    body();
  } catch (const dnnl::error& error) {
    return ffi::Error(ffi::ErrorCode::kInternal, std::string("onednn_batch_norm: oneDNN failed: ") + error.what());
  }
  return ffi::Error::Success();
}

ffi::Error ForwardImpl(ffi::AnyBuffer x, ffi::Buffer<ffi::F32> scale, ffi::Buffer<ffi::F32> shift,
                       ffi::Result<ffi::AnyBuffer> y, ffi::ResultBuffer<ffi::F32> mean,
                       ffi::ResultBuffer<ffi::F32> variance, float epsilon) {
  Shape s;
  if (auto error = ShapeOf(x, epsilon, s); error.failure()) return error;
  return Guarded([&] {
    const auto plan = CachedPlan(false, s);
    Execute(*plan, {{DNNL_ARG_SRC, memory(Activations(s), Engine(), x.untyped_data())},
                    {DNNL_ARG_DST, memory(Activations(s), Engine(), y->untyped_data())},
                    {DNNL_ARG_SCALE, memory(Channels(s), Engine(), scale.typed_data())},
                    {DNNL_ARG_SHIFT, memory(Channels(s), Engine(), shift.typed_data())},
                    {DNNL_ARG_MEAN, memory(Channels(s), Engine(), mean->typed_data())},
                    {DNNL_ARG_VARIANCE, memory(Channels(s), Engine(), variance->typed_data())}});
  });
}

ffi::Error BackwardImpl(ffi::AnyBuffer x, ffi::AnyBuffer dy, ffi::Buffer<ffi::F32> mean,
                        ffi::Buffer<ffi::F32> variance, ffi::Buffer<ffi::F32> scale, ffi::Result<ffi::AnyBuffer> dx,
                        ffi::ResultBuffer<ffi::F32> dscale, ffi::ResultBuffer<ffi::F32> dshift, float epsilon) {
  Shape s;
  if (auto error = ShapeOf(x, epsilon, s); error.failure()) return error;
  if (dy.element_type() != x.element_type() || dx->element_type() != x.element_type()) {
    return ffi::Error(ffi::ErrorCode::kInvalidArgument, "onednn_batch_norm: x, dy and dx differ in type");
  }
  return Guarded([&] {
    const auto plan = CachedPlan(true, s);
    Execute(*plan, {{DNNL_ARG_SRC, memory(Activations(s), Engine(), x.untyped_data())},
                    {DNNL_ARG_DIFF_DST, memory(Activations(s), Engine(), dy.untyped_data())},
                    {DNNL_ARG_MEAN, memory(Channels(s), Engine(), mean.typed_data())},
                    {DNNL_ARG_VARIANCE, memory(Channels(s), Engine(), variance.typed_data())},
                    {DNNL_ARG_SCALE, memory(Channels(s), Engine(), scale.typed_data())},
                    {DNNL_ARG_DIFF_SRC, memory(Activations(s), Engine(), dx->untyped_data())},
                    {DNNL_ARG_DIFF_SCALE, memory(Channels(s), Engine(), dscale->typed_data())},
                    {DNNL_ARG_DIFF_SHIFT, memory(Channels(s), Engine(), dshift->typed_data())}});
  });
}

}  // namespace

XLA_FFI_DEFINE_HANDLER_SYMBOL(Dl4cvOnednnBatchNormForward, ForwardImpl,
                              ffi::Ffi::Bind()
                                  .Arg<ffi::AnyBuffer>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Ret<ffi::AnyBuffer>()
                                  .Ret<ffi::Buffer<ffi::F32>>()
                                  .Ret<ffi::Buffer<ffi::F32>>()
                                  .Attr<float>("epsilon"));
XLA_FFI_DEFINE_HANDLER_SYMBOL(Dl4cvOnednnBatchNormBackward, BackwardImpl,
                              ffi::Ffi::Bind()
                                  .Arg<ffi::AnyBuffer>()
                                  .Arg<ffi::AnyBuffer>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Ret<ffi::AnyBuffer>()
                                  .Ret<ffi::Buffer<ffi::F32>>()
                                  .Ret<ffi::Buffer<ffi::F32>>()
                                  .Attr<float>("epsilon"));
