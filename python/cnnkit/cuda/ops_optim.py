"""The optimizers' update steps on CUDA arrays: one fused kernel per parameter tensor, updating
the parameter and its state in place on the caller's stream, with exactly the arithmetic of
``cnnkit.optim`` (python/cnnkit/optim/optimizer.py) in float32.

The optimizers' device path calls these once per parameter and step (every array a C-contiguous
float32 CUDA array of the parameter's shape; ``None`` where a state is not kept)::

    sgd_step(param, grad, momentum_buffer=None, *, lr, momentum=0.0, dampening=0.0, nesterov=False,
             first=False, weight_decay=0.0, l1_decay=0.0)
        first: this is the buffer's first step (it is set to the gradient, as state["momentum_buffer"]
        is created); momentum_buffer is required when momentum != 0.
    adam_step(param, grad, exp_avg, exp_avg_sq, max_exp_avg_sq=None, *, step, lr, betas=(0.9, 0.999),
              eps=1e-8, weight_decay=0.0, decoupled=False, l1_decay=0.0)
        step: state["step"] after its increment (1 on the first call); max_exp_avg_sq given = AMSGrad;
        decoupled=True is AdamW. The state starts as zeros.
    rmsprop_step(param, grad, square_avg, grad_avg=None, momentum_buffer=None, *, lr, alpha=0.99, eps=1e-8,
                 momentum=0.0, weight_decay=0.0, l1_decay=0.0)
        grad_avg given = centered; momentum_buffer is required when momentum > 0. State starts as zeros.
    adagrad_step(param, grad, sum, *, step, lr, lr_decay=0.0, eps=1e-10, weight_decay=0.0, l1_decay=0.0)
        sum starts as initial_accumulator_value; step as in adam_step.
    adadelta_step(param, grad, square_avg, acc_delta, *, lr=1.0, rho=0.9, eps=1e-6, weight_decay=0.0, l1_decay=0.0)
        The state starts as zeros.

``l1_decay`` is Optimizer.step's ``l1_decay * sign(p)`` term, added before the optimizer's own
weight decay. Hyperparameters are not validated here (the optimizer's ``_check_options`` has done
it); the arrays are (dtype, layout, sizes).
"""

from .. import _cuda
from ._device import stream_of

__all__ = ["sgd_step", "adam_step", "rmsprop_step", "adagrad_step", "adadelta_step"]


def sgd_step(param, grad, momentum_buffer=None, *, lr, momentum=0.0, dampening=0.0, nesterov=False, first=False,
             weight_decay=0.0, l1_decay=0.0):
    _cuda.sgd_step(param, grad, momentum_buffer, float(lr), float(momentum), float(dampening), bool(nesterov),
                   bool(first), float(l1_decay), float(weight_decay), stream_of(param))


def adam_step(param, grad, exp_avg, exp_avg_sq, max_exp_avg_sq=None, *, step, lr, betas=(0.9, 0.999), eps=1e-8,
              weight_decay=0.0, decoupled=False, l1_decay=0.0):
    _cuda.adam_step(param, grad, exp_avg, exp_avg_sq, max_exp_avg_sq, int(step), float(lr), float(betas[0]),
                    float(betas[1]), float(eps), float(weight_decay), bool(decoupled), float(l1_decay),
                    stream_of(param))


def rmsprop_step(param, grad, square_avg, grad_avg=None, momentum_buffer=None, *, lr, alpha=0.99, eps=1e-8,
                 momentum=0.0, weight_decay=0.0, l1_decay=0.0):
    _cuda.rmsprop_step(param, grad, square_avg, grad_avg, momentum_buffer, float(lr), float(alpha), float(eps),
                       float(momentum), float(l1_decay), float(weight_decay), stream_of(param))


def adagrad_step(param, grad, sum, *, step, lr, lr_decay=0.0, eps=1e-10, weight_decay=0.0, l1_decay=0.0):
    _cuda.adagrad_step(param, grad, sum, int(step), float(lr), float(lr_decay), float(eps), float(l1_decay),
                       float(weight_decay), stream_of(param))


def adadelta_step(param, grad, square_avg, acc_delta, *, lr=1.0, rho=0.9, eps=1e-6, weight_decay=0.0, l1_decay=0.0):
    _cuda.adadelta_step(param, grad, square_avg, acc_delta, float(lr), float(rho), float(eps), float(l1_decay),
                        float(weight_decay), stream_of(param))
