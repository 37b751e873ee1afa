"""Optimizers (config.optimizer) as optax chains: gradient clipping, weight decay, then an optax optimizer.

Weight decay (config.optimizer.weight_decay = wd, config.optimizer.weight_decay_mode):

- ``l2``: classic coupled L2 regularisation, as the ``weight_decay`` argument of PyTorch's SGD and Adam:
  ``wd * param`` is added to the gradient before the optimizer, so it is scaled by the learning rate and, for
  adaptive optimizers, also divided by the running gradient scale (that is why it is weak in Adam).
- ``decoupled``: Loshchilov & Hutter (AdamW, SGDW): after the optimizer's own update,
  ``param -= lr(t) * wd * param`` with lr(t) the scheduled learning rate. adamw, lamb and lion use
  optax's native ``weight_decay`` argument (for lamb the decay also passes through the trust ratio, as in
  the LAMB paper); every other optimizer gets ``optax.add_decayed_weights(-wd * lr(t))`` chained after
  it, so the decay never enters a momentum or second-moment accumulator.
- ``auto`` (default): decoupled for adamw, lamb and lion, l2 for all others.

Parameters with ndim <= 1 (biases, BatchNorm/LayerNorm scales and offsets) are never decayed, in either mode.
Gradient clipping (grad_clip_norm > 0) acts on the loss gradient, before the L2 term is added. When
reduce-on-plateau is on, the train step scales the whole update (decay included) by the plateau multiplier.
"""

import math
from collections.abc import Callable
from typing import Any

import jax
import optax
from ml_collections import ConfigDict

from dl4cv_jax.choices import choose, require
from dl4cv_jax.schedules import check_learning_rate

# (optimizer config section, learning-rate schedule, decoupled weight decay, decay mask) -> transformation;
# only the natively decoupled optimizers use the last two.
_Builder = Callable[[ConfigDict, optax.Schedule, float, Any], optax.GradientTransformation]


def _momentum(opt: ConfigDict) -> float | None:
    """optax wants None, not 0, for 'no momentum' (it then skips the accumulator)."""
    return opt.momentum or None


OPTIMIZERS: dict[str, _Builder] = {
    "sgd": lambda o, lr, wd, mask: optax.sgd(lr),
    "momentum": lambda o, lr, wd, mask: optax.sgd(lr, momentum=_momentum(o)),
    "nesterov": lambda o, lr, wd, mask: optax.sgd(lr, momentum=_momentum(o), nesterov=True),
    "adam": lambda o, lr, wd, mask: optax.adam(lr, b1=o.b1, b2=o.b2, eps=o.eps),
    "adamw": lambda o, lr, wd, mask: optax.adamw(lr, b1=o.b1, b2=o.b2, eps=o.eps, weight_decay=wd, mask=mask),
    "adagrad": lambda o, lr, wd, mask: optax.adagrad(lr, eps=o.eps),
    "adadelta": lambda o, lr, wd, mask: optax.adadelta(lr, eps=o.eps),
    "adamax": lambda o, lr, wd, mask: optax.adamax(lr, b1=o.b1, b2=o.b2, eps=o.eps),
    "nadam": lambda o, lr, wd, mask: optax.nadam(lr, b1=o.b1, b2=o.b2, eps=o.eps),
    "rmsprop": lambda o, lr, wd, mask: optax.rmsprop(lr, eps=o.eps, momentum=_momentum(o)),
    "lamb": lambda o, lr, wd, mask: optax.lamb(lr, b1=o.b1, b2=o.b2, eps=o.eps, weight_decay=wd, mask=mask),
    "lion": lambda o, lr, wd, mask: optax.lion(lr, b1=o.b1, b2=o.b2, weight_decay=wd, mask=mask),
}
# Optimizers whose optax alias implements decoupled weight decay itself.
NATIVE_DECOUPLED = ("adamw", "lamb", "lion")
WEIGHT_DECAY_MODES = ("auto", "decoupled", "l2")


def decay_mask(params: Any) -> Any:
    """True for the parameters weight decay applies to: kernels (ndim >= 2), never biases or norm scales."""
    return jax.tree.map(lambda p: p.ndim > 1, params)


def _validate(opt: ConfigDict) -> None:
    """Refuses values that would silently train nonsense (e.g. a negative decay that grows the weights, an
    infinite one that turns the first update into nan)."""
    decay, clip = opt.weight_decay, opt.grad_clip_norm
    require(math.isfinite(decay) and decay >= 0, "optimizer.weight_decay", decay, "must be >= 0 and finite")
    require(math.isfinite(clip) and clip >= 0, "optimizer.grad_clip_norm", clip, "must be >= 0 and finite (0 = off)")
    require(0 <= opt.momentum < 1, "optimizer.momentum", opt.momentum, "must be in [0, 1)")
    require(0 <= opt.b1 < 1, "optimizer.b1", opt.b1, "must be in [0, 1)")
    require(0 <= opt.b2 < 1, "optimizer.b2", opt.b2, "must be in [0, 1)")
    require(math.isfinite(opt.eps) and opt.eps > 0, "optimizer.eps", opt.eps, "must be > 0 and finite")


def is_decoupled(optimizer_name: str, weight_decay_mode: str) -> bool:
    """Resolves weight_decay_mode (auto | decoupled | l2) to True for decoupled decay."""
    modes = dict.fromkeys(WEIGHT_DECAY_MODES)
    choose(modes, "optimizer.weight_decay_mode", weight_decay_mode)
    if weight_decay_mode == "auto":
        return optimizer_name in NATIVE_DECOUPLED
    return weight_decay_mode == "decoupled"


def make_optimizer(config: ConfigDict, schedule: optax.Schedule) -> optax.GradientTransformation:
    """Returns chain([clip_by_global_norm] + [L2 decay] + optimizer + [decoupled decay]) for config.optimizer.

    `schedule` is the learning rate per step (see dl4cv_jax.schedules.make_schedule); the decoupled decay
    follows it too, so the decay shrinks with the learning rate as in AdamW.
    """
    opt = config.optimizer
    build = choose(OPTIMIZERS, "optimizer.name", opt.name)
    check_learning_rate(config)
    _validate(opt)
    wd = float(opt.weight_decay)
    decoupled = is_decoupled(opt.name, opt.weight_decay_mode)
    native = decoupled and opt.name in NATIVE_DECOUPLED

    parts = []
    if opt.grad_clip_norm > 0:
        parts.append(optax.clip_by_global_norm(opt.grad_clip_norm))
    if wd > 0 and not decoupled:
        parts.append(optax.add_decayed_weights(wd, mask=decay_mask))
    # The natively decoupled aliases must get 0 when their decay is not wanted (their defaults are not 0).
    parts.append(build(opt, schedule, wd if native else 0.0, decay_mask))
    if wd > 0 and decoupled and not native:
        # Updates already carry the -lr sign; adding -lr(t) * wd * param gives param -= lr(t) * wd * param.
        parts.append(optax.add_decayed_weights(lambda count: -wd * schedule(count), mask=decay_mask))
    return optax.chain(*parts)
