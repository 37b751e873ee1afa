// oneDNN's batch normalization (training forward pass and its backward pass) as XLA:CPU custom calls.
//
// Why: XLA:CPU 0.10 hands a BatchNorm's per-channel sums to YNN's reductions, which do not fuse the conversion
// of a bfloat16 input to float32: each sum first writes the whole input again as float32, and the normalised
// value and the backward pass's terms are written in float32 too. So a bfloat16 BatchNorm + ReLU, forward and
// backward, took as long as in float32, and longer than PyTorch's (benchmarks/RESULTS.md). oneDNN's primitives
// read and write the activations in their own type and keep float32 only inside.
//
// Layout: activations NHWC (or NC, as N x 1 x 1 x C), float32 or bfloat16; scale, shift, mean and variance
// float32 vectors. The variance is the biased one (over N*H*W), as Flax's BatchNorm uses. Compiled together with
// onednn_conv.cc into one library (dl4cv_jax/backends/cpu/onednn_conv.py builds it).

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "oneapi/dnnl/dnnl.hpp"
#include "onednn_bridge.h"
#include "xla/ffi/api/ffi.h"

namespace ffi = xla::ffi;
using dnnl::memory;

namespace {

using namespace dl4cv_onednn;  // Engine, UserScratchpad, ThreadStream, ThreadScratchpad, Cached

// One normalization's sizes, element type, epsilon (its bits, to be a map key) and whether a ReLU follows it
// (oneDNN's fuse_norm_relu: the forward pass also writes a bit mask, its workspace, for the backward pass).
struct Shape {
  int64_t n, h, w, c;
  memory::data_type type;
  float epsilon;
  bool relu;
  int threads = MaxThreads();  // the OpenMP threads it runs on (ClampedThreads of the call's attribute)
};

std::vector<int64_t> Key(bool backward, const Shape& s) {
  uint32_t epsilon_bits;
  std::memcpy(&epsilon_bits, &s.epsilon, sizeof epsilon_bits);
  return {backward, s.threads, s.n, s.h, s.w, s.c, static_cast<int64_t>(s.type), epsilon_bits, s.relu};
}

memory::desc Activations(const Shape& s) {
  return memory::desc({s.n, s.c, s.h, s.w}, s.type, memory::format_tag::nhwc);
}

memory::desc Channels(const Shape& s) { return memory::desc({s.c}, memory::data_type::f32, memory::format_tag::a); }

dnnl::normalization_flags Flags(const Shape& s) {
  const auto affine = dnnl::normalization_flags::use_scale | dnnl::normalization_flags::use_shift;
  return s.relu ? affine | dnnl::normalization_flags::fuse_norm_relu : affine;
}
using ForwardPd = dnnl::batch_normalization_forward::primitive_desc;
using BackwardPd = dnnl::batch_normalization_backward::primitive_desc;

ForwardPd ForwardDesc(const Shape& s) {
  return ForwardPd(Engine(), dnnl::prop_kind::forward_training, Activations(s), Activations(s), s.epsilon, Flags(s),
                   UserScratchpad());
}

struct Plan {
  dnnl::primitive primitive;
  size_t scratchpad_bytes;
  memory::desc workspace;  // the ReLU's bit mask (empty without one)
};

Plan Build(bool backward, const Shape& s) {
  const ForwardPd forward = ForwardDesc(s);
  if (!backward) {
    return Plan{dnnl::batch_normalization_forward(forward), forward.scratchpad_desc().get_size(),
                forward.workspace_desc()};
  }
  const BackwardPd desc(Engine(), dnnl::prop_kind::backward, Activations(s), Activations(s), Activations(s),
                        s.epsilon, Flags(s), forward, UserScratchpad());
  return Plan{dnnl::batch_normalization_backward(desc), desc.scratchpad_desc().get_size(), desc.workspace_desc()};
}

std::shared_ptr<const Plan> CachedPlan(bool backward, const Shape& s) {
  return Cached<Plan>(Key(backward, s), [&] { return Build(backward, s); });
}

// Runs `plan` with `arguments` on this thread's stream and scratchpad.
void Execute(const Plan& plan, std::unordered_map<int, memory> arguments) {
  arguments.emplace(DNNL_ARG_SCRATCHPAD, ThreadScratchpad(plan.scratchpad_bytes));
  dnnl::stream& stream = ThreadStream();
  plan.primitive.execute(stream, arguments);
  stream.wait();
}

// The shape of `x` (NHWC or NC) with its type and threads into `shape`, or an error naming what is wrong.
ffi::Error ShapeOf(const ffi::AnyBuffer& x, float epsilon, bool relu, int64_t threads, Shape& shape) {
  const auto d = x.dimensions();
  if (d.size() != 4 && d.size() != 2) {
    return ffi::Error(ffi::ErrorCode::kInvalidArgument, "onednn_batch_norm: expects NHWC or NC activations");
  }
  if (x.element_type() != ffi::DataType::F32 && x.element_type() != ffi::DataType::BF16) {
    return ffi::Error(ffi::ErrorCode::kInvalidArgument, "onednn_batch_norm: expects float32 or bfloat16");
  }
  const auto type = x.element_type() == ffi::DataType::F32 ? memory::data_type::f32 : memory::data_type::bf16;
  shape = d.size() == 2 ? Shape{d[0], 1, 1, d[1], type, epsilon, relu, ClampedThreads(threads)}
                        : Shape{d[0], d[1], d[2], d[3], type, epsilon, relu, ClampedThreads(threads)};
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

// Whether all `count` floats are finite.
bool AllFinite(const float* values, int64_t count) {
  for (int64_t i = 0; i < count; ++i) {
    if (!std::isfinite(values[i])) return false;
  }
  return true;
}

// A fused ReLU would turn NaN into 0 (max(NaN, 0) is 0 on x86), which hides a diverged run from the loss. Where
// the batch statistics, scale or shift are not finite, the whole output becomes NaN, as XLA's BatchNorm and
// ReLU would make it (one NaN or infinity in the input makes the mean or variance NaN or infinite).
void PropagateNan(const Shape& s, const float* mean, const float* variance, const float* scale, const float* shift,
                  void* y) {
  if (AllFinite(mean, s.c) && AllFinite(variance, s.c) && AllFinite(scale, s.c) && AllFinite(shift, s.c)) return;
  const int64_t count = s.n * s.h * s.w * s.c;
  if (s.type == memory::data_type::f32) {
    std::fill_n(static_cast<float*>(y), count, std::numeric_limits<float>::quiet_NaN());
  } else {
    std::fill_n(static_cast<uint16_t*>(y), count, uint16_t{0x7FC0});  // bfloat16's quiet NaN
  }
}

// `workspace`: the ReLU's mask, written where `relu` (a u8 array of WorkspaceBytes; one byte otherwise).
ffi::Error ForwardImpl(ffi::AnyBuffer x, ffi::Buffer<ffi::F32> scale, ffi::Buffer<ffi::F32> shift,
                       ffi::Result<ffi::AnyBuffer> y, ffi::ResultBuffer<ffi::F32> mean,
                       ffi::ResultBuffer<ffi::F32> variance, ffi::ResultBuffer<ffi::U8> workspace, float epsilon,
                       bool relu, int64_t threads) {
  Shape s;
  if (auto error = ShapeOf(x, epsilon, relu, threads, s); error.failure()) return error;
  return Guarded([&] {
    const ThreadLimit limit(s.threads);
    const auto plan = CachedPlan(false, s);
    std::unordered_map<int, memory> arguments{
        {DNNL_ARG_SRC, memory(Activations(s), Engine(), x.untyped_data())},
        {DNNL_ARG_DST, memory(Activations(s), Engine(), y->untyped_data())},
        {DNNL_ARG_SCALE, memory(Channels(s), Engine(), scale.typed_data())},
        {DNNL_ARG_SHIFT, memory(Channels(s), Engine(), shift.typed_data())},
        {DNNL_ARG_MEAN, memory(Channels(s), Engine(), mean->typed_data())},
        {DNNL_ARG_VARIANCE, memory(Channels(s), Engine(), variance->typed_data())}};
    if (relu) arguments.emplace(DNNL_ARG_WORKSPACE, memory(plan->workspace, Engine(), workspace->typed_data()));
    Execute(*plan, std::move(arguments));
    if (relu) PropagateNan(s, mean->typed_data(), variance->typed_data(), scale.typed_data(), shift.typed_data(),
                           y->untyped_data());
  });
}

ffi::Error BackwardImpl(ffi::AnyBuffer x, ffi::AnyBuffer dy, ffi::Buffer<ffi::F32> mean,
                        ffi::Buffer<ffi::F32> variance, ffi::Buffer<ffi::F32> scale, ffi::Buffer<ffi::U8> workspace,
                        ffi::Result<ffi::AnyBuffer> dx, ffi::ResultBuffer<ffi::F32> dscale,
                        ffi::ResultBuffer<ffi::F32> dshift, float epsilon, bool relu,
                        int64_t threads) {
  Shape s;
  if (auto error = ShapeOf(x, epsilon, relu, threads, s); error.failure()) return error;
  if (dy.element_type() != x.element_type() || dx->element_type() != x.element_type()) {
    return ffi::Error(ffi::ErrorCode::kInvalidArgument, "onednn_batch_norm: x, dy and dx differ in type");
  }
  return Guarded([&] {
    const ThreadLimit limit(s.threads);
    const auto plan = CachedPlan(true, s);
    std::unordered_map<int, memory> arguments{
        {DNNL_ARG_SRC, memory(Activations(s), Engine(), x.untyped_data())},
        {DNNL_ARG_DIFF_DST, memory(Activations(s), Engine(), dy.untyped_data())},
        {DNNL_ARG_MEAN, memory(Channels(s), Engine(), mean.typed_data())},
        {DNNL_ARG_VARIANCE, memory(Channels(s), Engine(), variance.typed_data())},
        {DNNL_ARG_SCALE, memory(Channels(s), Engine(), scale.typed_data())},
        {DNNL_ARG_DIFF_SRC, memory(Activations(s), Engine(), dx->untyped_data())},
        {DNNL_ARG_DIFF_SCALE, memory(Channels(s), Engine(), dscale->typed_data())},
        {DNNL_ARG_DIFF_SHIFT, memory(Channels(s), Engine(), dshift->typed_data())}};
    if (relu) arguments.emplace(DNNL_ARG_WORKSPACE, memory(plan->workspace, Engine(), workspace.typed_data()));
    Execute(*plan, std::move(arguments));
  });
}

}  // namespace

// For the Python side (ctypes), which sizes the workspace output at trace time: the bytes of the ReLU's mask
// for an N x H x W x C input (`bfloat16` 0 or 1), or -1 when oneDNN has no such primitive.
extern "C" int64_t Dl4cvOnednnBatchNormWorkspaceBytes(int64_t n, int64_t h, int64_t w, int64_t c, int bfloat16) {
  const Shape s{n, h, w, c, bfloat16 ? memory::data_type::bf16 : memory::data_type::f32, 1e-5f, true};
  try {
    return static_cast<int64_t>(ForwardDesc(s).workspace_desc().get_size());
  } catch (const dnnl::error&) {
    return -1;
  }
}

XLA_FFI_DEFINE_HANDLER_SYMBOL(Dl4cvOnednnBatchNormForward, ForwardImpl,
                              ffi::Ffi::Bind()
                                  .Arg<ffi::AnyBuffer>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Ret<ffi::AnyBuffer>()
                                  .Ret<ffi::Buffer<ffi::F32>>()
                                  .Ret<ffi::Buffer<ffi::F32>>()
                                  .Ret<ffi::Buffer<ffi::U8>>()
                                  .Attr<float>("epsilon")
                                  .Attr<bool>("relu")
                                  .Attr<int64_t>("threads"));
XLA_FFI_DEFINE_HANDLER_SYMBOL(Dl4cvOnednnBatchNormBackward, BackwardImpl,
                              ffi::Ffi::Bind()
                                  .Arg<ffi::AnyBuffer>()
                                  .Arg<ffi::AnyBuffer>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::U8>>()
                                  .Ret<ffi::AnyBuffer>()
                                  .Ret<ffi::Buffer<ffi::F32>>()
                                  .Ret<ffi::Buffer<ffi::F32>>()
                                  .Attr<float>("epsilon")
                                  .Attr<bool>("relu")
                                  .Attr<int64_t>("threads"));
