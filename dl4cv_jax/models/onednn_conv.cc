// oneDNN's 2-D convolutions (forward, input gradient, kernel gradient) as XLA:CPU custom calls (the XLA FFI).
//
// Why: XLA:CPU 0.10's convolutions, above all the kernel gradient, are 2-5x slower than oneDNN's on the same
// layer (benchmarks/RESULTS.md), and no XLA flag in that jaxlib routes them to oneDNN. This file is the whole
// bridge: the layouts are Flax's (activations NHWC, kernels HWIO), in float32 or bfloat16 (one type for all
// three arrays); dl4cv_jax/models/onednn_conv.py compiles it on first use and falls back to XLA's convolution
// where it cannot.
//
// Each handler builds its oneDNN primitive once per geometry (cached; oneDNN JIT-compiles its kernels), lets
// oneDNN pick its kernel layout (format `any`) and reorders the HWIO kernel to and from it. Scratch memory is
// per calling thread, so that XLA may run two convolutions at once.

#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "oneapi/dnnl/dnnl.hpp"
#include "xla/ffi/api/ffi.h"

namespace ffi = xla::ffi;
using dnnl::memory;
using Dims = ffi::Span<const int64_t>;

namespace {

enum class Direction { kForward, kInputGradient, kKernelGradient };

// One convolution's sizes and element type; NHWC activations, HWIO kernel.
struct Geometry {
  int64_t n, h, w, c, o, kh, kw, ho, wo, sh, sw, pt, pl, pb, pr;
  memory::data_type type;
};

std::vector<int64_t> Key(Direction direction, const Geometry& g) {
  return {static_cast<int64_t>(direction), g.n, g.h, g.w, g.c, g.o, g.kh, g.kw, g.ho, g.wo,
          g.sh, g.sw, g.pt, g.pl, g.pb, g.pr, static_cast<int64_t>(g.type)};
}

dnnl::engine& Engine() {
  static dnnl::engine engine(dnnl::engine::kind::cpu, 0);
  return engine;
}

memory::desc Input(const Geometry& g) {
  return memory::desc({g.n, g.c, g.h, g.w}, g.type, memory::format_tag::nhwc);
}

memory::desc Output(const Geometry& g) {
  return memory::desc({g.n, g.o, g.ho, g.wo}, g.type, memory::format_tag::nhwc);
}

memory::desc Kernel(const Geometry& g, memory::format_tag tag) {
  return memory::desc({g.o, g.c, g.kh, g.kw}, g.type, tag);
}

dnnl::primitive_attr UserScratchpad() {
  dnnl::primitive_attr attr;
  attr.set_scratchpad_mode(dnnl::scratchpad_mode::user);
  return attr;
}

dnnl::convolution_forward::primitive_desc ForwardDesc(const Geometry& g) {
  return dnnl::convolution_forward::primitive_desc(
      Engine(), dnnl::prop_kind::forward_training, dnnl::algorithm::convolution_direct,
      Input(g), Kernel(g, memory::format_tag::any), Output(g),
      {g.sh, g.sw}, {g.pt, g.pl}, {g.pb, g.pr}, UserScratchpad());
}

// A primitive for one direction and geometry, with the reorder between the HWIO kernel and its own layout.
struct Plan {
  dnnl::primitive primitive;
  memory::desc kernel;  // the layout the primitive reads or writes its kernel in
  bool reorders;        // whether that differs from HWIO
  dnnl::reorder reorder;
  size_t scratchpad_bytes;
};

template <typename Primitive, typename Desc>
Plan MakePlan(const Desc& desc, const memory::desc& kernel, const Geometry& g, bool kernel_is_output) {
  const memory::desc hwio = Kernel(g, memory::format_tag::hwio);
  Plan plan{Primitive(desc), kernel, kernel != hwio, {}, desc.scratchpad_desc().get_size()};
  if (plan.reorders) {
    plan.reorder = kernel_is_output ? dnnl::reorder(memory(kernel, Engine()), memory(hwio, Engine()))
                                    : dnnl::reorder(memory(hwio, Engine()), memory(kernel, Engine()));
  }
  return plan;
}

Plan Build(Direction direction, const Geometry& g) {
  const auto forward = ForwardDesc(g);
  const memory::desc any = Kernel(g, memory::format_tag::any);
  switch (direction) {
    case Direction::kForward:
      return MakePlan<dnnl::convolution_forward>(forward, forward.weights_desc(), g, false);
    case Direction::kInputGradient: {
      dnnl::convolution_backward_data::primitive_desc desc(
          Engine(), dnnl::algorithm::convolution_direct, Input(g), any,
          Output(g), {g.sh, g.sw}, {g.pt, g.pl}, {g.pb, g.pr}, forward, UserScratchpad());
      return MakePlan<dnnl::convolution_backward_data>(desc, desc.weights_desc(), g, false);
    }
    case Direction::kKernelGradient: {
      dnnl::convolution_backward_weights::primitive_desc desc(
          Engine(), dnnl::algorithm::convolution_direct, Input(g), any,
          Output(g), {g.sh, g.sw}, {g.pt, g.pl}, {g.pb, g.pr}, forward, UserScratchpad());
      return MakePlan<dnnl::convolution_backward_weights>(desc, desc.diff_weights_desc(), g, true);
    }
  }
  throw std::logic_error("unknown direction");
}

std::shared_ptr<const Plan> CachedPlan(Direction direction, const Geometry& g) {
  static std::mutex mutex;
  static std::map<std::vector<int64_t>, std::shared_ptr<const Plan>> plans;
  const auto key = Key(direction, g);
  {
    std::lock_guard<std::mutex> lock(mutex);
    auto found = plans.find(key);
    if (found != plans.end()) return found->second;
  }
  auto plan = std::make_shared<const Plan>(Build(direction, g));  // outside the lock: JIT compilation is slow
  std::lock_guard<std::mutex> lock(mutex);
  return plans.emplace(key, plan).first->second;
}

// Per-thread scratch buffers, grown as needed and kept.
void* ThreadScratch(int slot, size_t bytes) {
  thread_local std::vector<char> buffers[2];
  if (buffers[slot].size() < bytes) buffers[slot].resize(bytes);
  return buffers[slot].data();
}

void Run(Direction direction, const Geometry& g, void* activations, void* kernel, void* gradient) {
  // activations: the input (forward, kernel gradient) or its gradient (input gradient); gradient: the output
  // (forward) or its gradient.
  const auto plan = CachedPlan(direction, g);
  thread_local std::unique_ptr<dnnl::stream> stream_holder;
  if (!stream_holder) stream_holder = std::make_unique<dnnl::stream>(Engine());
  dnnl::stream& stream = *stream_holder;

  memory x(Input(g), Engine(), activations);
  memory y(Output(g), Engine(), gradient);
  memory hwio(Kernel(g, memory::format_tag::hwio), Engine(), kernel);
  memory own = plan->reorders ? memory(plan->kernel, Engine(), ThreadScratch(0, plan->kernel.get_size())) : hwio;
  memory scratchpad(memory::desc({static_cast<int64_t>(plan->scratchpad_bytes)}, memory::data_type::u8,
                                 memory::format_tag::a),
                    Engine(), ThreadScratch(1, plan->scratchpad_bytes));

  if (direction != Direction::kKernelGradient && plan->reorders) plan->reorder.execute(stream, hwio, own);
  switch (direction) {
    case Direction::kForward:
      plan->primitive.execute(stream, {{DNNL_ARG_SRC, x}, {DNNL_ARG_WEIGHTS, own}, {DNNL_ARG_DST, y},
                                       {DNNL_ARG_SCRATCHPAD, scratchpad}});
      break;
    case Direction::kInputGradient:
      plan->primitive.execute(stream, {{DNNL_ARG_DIFF_SRC, x}, {DNNL_ARG_WEIGHTS, own}, {DNNL_ARG_DIFF_DST, y},
                                       {DNNL_ARG_SCRATCHPAD, scratchpad}});
      break;
    case Direction::kKernelGradient:
      plan->primitive.execute(stream, {{DNNL_ARG_SRC, x}, {DNNL_ARG_DIFF_WEIGHTS, own}, {DNNL_ARG_DIFF_DST, y},
                                       {DNNL_ARG_SCRATCHPAD, scratchpad}});
      if (plan->reorders) plan->reorder.execute(stream, own, hwio);
      break;
  }
  stream.wait();
}

ffi::Error Convolve(Direction direction, Dims activations, Dims kernel, Dims outputs, Dims strides, Dims padding,
                    ffi::DataType type, void* x, void* k, void* y) {
  if (activations.size() != 4 || kernel.size() != 4 || outputs.size() != 4 || strides.size() != 2 ||
      padding.size() != 4) {
    return ffi::Error(ffi::ErrorCode::kInvalidArgument,
                      "onednn_conv: expects NHWC activations, an HWIO kernel, 2 strides and 4 pads");
  }
  if (type != ffi::DataType::F32 && type != ffi::DataType::BF16) {
    return ffi::Error(ffi::ErrorCode::kInvalidArgument, "onednn_conv: expects float32 or bfloat16 arrays");
  }
  const Geometry g{activations[0], activations[1], activations[2], activations[3], kernel[3],
                   kernel[0],      kernel[1],      outputs[1],     outputs[2],     strides[0],
                   strides[1],     padding[0],     padding[2],     padding[1],     padding[3],
                   type == ffi::DataType::F32 ? memory::data_type::f32 : memory::data_type::bf16};
  try {
    Run(direction, g, x, k, y);
  } catch (const dnnl::error& error) {
    return ffi::Error(ffi::ErrorCode::kInternal, std::string("onednn_conv: oneDNN failed: ") + error.what());
  }
  return ffi::Error::Success();
}

ffi::Error SameTypes(const ffi::AnyBuffer& a, const ffi::AnyBuffer& b, ffi::DataType result) {
  if (a.element_type() != b.element_type() || a.element_type() != result) {
    return ffi::Error(ffi::ErrorCode::kInvalidArgument, "onednn_conv: operands and result differ in type");
  }
  return ffi::Error::Success();
}

// padding: [top, bottom, left, right], as lax.conv_general_dilated's ((top, bottom), (left, right)).
ffi::Error ForwardImpl(ffi::AnyBuffer x, ffi::AnyBuffer k, ffi::Result<ffi::AnyBuffer> y, Dims strides, Dims padding) {
  if (auto error = SameTypes(x, k, y->element_type()); error.failure()) return error;
  return Convolve(Direction::kForward, x.dimensions(), k.dimensions(), y->dimensions(), strides, padding,
                  x.element_type(), x.untyped_data(), k.untyped_data(), y->untyped_data());
}

ffi::Error InputGradientImpl(ffi::AnyBuffer g, ffi::AnyBuffer k, ffi::Result<ffi::AnyBuffer> dx, Dims strides,
                             Dims padding) {
  if (auto error = SameTypes(g, k, dx->element_type()); error.failure()) return error;
  return Convolve(Direction::kInputGradient, dx->dimensions(), k.dimensions(), g.dimensions(), strides, padding,
                  g.element_type(), dx->untyped_data(), k.untyped_data(), g.untyped_data());
}

ffi::Error KernelGradientImpl(ffi::AnyBuffer x, ffi::AnyBuffer g, ffi::Result<ffi::AnyBuffer> dk, Dims strides,
                              Dims padding) {
  if (auto error = SameTypes(x, g, dk->element_type()); error.failure()) return error;
  return Convolve(Direction::kKernelGradient, x.dimensions(), dk->dimensions(), g.dimensions(), strides, padding,
                  x.element_type(), x.untyped_data(), dk->untyped_data(), g.untyped_data());
}

}  // namespace

// Two operands and a result of one type (float32 or bfloat16), the strides and the pads.
#define DL4CV_CONV_BINDING                                                              \
  ffi::Ffi::Bind()                                                                     \
      .Arg<ffi::AnyBuffer>()                                                           \
      .Arg<ffi::AnyBuffer>()                                                           \
      .Ret<ffi::AnyBuffer>()                                                           \
      .Attr<Dims>("strides")                                                           \
      .Attr<Dims>("padding")

XLA_FFI_DEFINE_HANDLER_SYMBOL(Dl4cvOnednnConvForward, ForwardImpl, DL4CV_CONV_BINDING);
XLA_FFI_DEFINE_HANDLER_SYMBOL(Dl4cvOnednnConvInputGradient, InputGradientImpl, DL4CV_CONV_BINDING);
XLA_FFI_DEFINE_HANDLER_SYMBOL(Dl4cvOnednnConvKernelGradient, KernelGradientImpl, DL4CV_CONV_BINDING);
