"""S5, the simplified state-space layer (Smith, Warrington & Linderman 2023, "Simplified State
Space Layers for Sequence Modeling").

One multi-input, multi-output diagonal state space in complex numbers:

    Lambda = -exp(log_neg_re) + i lambda_im,   Delta = exp(log_step)            [N] (learnable timescales)
    Lambda_bar = exp(Lambda Delta),   B_bar = ((Lambda_bar - 1) / Lambda) * B   zero-order hold
    h_t = Lambda_bar * h_{t-1} + x_t B_bar                                      complex, [*batch, N]
    y_t = 2 Re(h_t C) + x_t D

Of the 2N eigenvalues of the HiPPO-N matrix (the normal part of HiPPO-LegS,
real parts -1/2), which come in conjugate pairs, only the N with positive
imaginary part are kept; the factor 2 in the readout accounts for their
conjugates (the paper's conjugate symmetry). Linear, so `rnnjax.LinearScan()`
applies. Initialisation: `Lambda` from HiPPO-N, `log_step` uniform in
[log 0.001, log 0.1]; `B` and `C` complex normal (variances 1/I and 1/N per
part), drawn directly in the eigenbasis rather than transformed by its
eigenvectors; `D` LeCun normal.

Differs from the paper's code by a convention: the feedthrough `D` is a
dense `[I, O]` matrix (any input and output sizes), where the paper's is a
diagonal `D` (a vector, with O = I); a diagonal `D` is the special case
whose off-diagonal entries are zero.

Params (real): `log_neg_re, lambda_im, log_step [N]`, `b_re, b_im [I, N]`,
`c_re, c_im [N, O]`, `d [I, O]`. Carry: complex `h [*batch, N]` (complex64,
complex128 for float64 params); like the LRU, it follows its params' dtype.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import DTypeLike

from rnnjax import reference
from rnnjax.cells import cell as base
from rnnjax.cells.registry import register


def hippo_n_eigenvalues(n: int) -> tuple[np.ndarray, np.ndarray]:
    """Real and imaginary parts of the N eigenvalues of HiPPO-N (size 2N) with positive imaginary part."""
    size = 2 * n
    k = np.arange(size)
    p = np.sqrt(k + 0.5)
    legs = -np.tril(np.sqrt(2 * k[:, None] + 1) * np.sqrt(2 * k[None, :] + 1), -1) - np.diag(k + 1.0)
    normal = legs + np.outer(p, p)  # = skew-symmetric - I / 2
    skew = normal + 0.5 * np.eye(size)
    omega = np.linalg.eigvalsh(-1j * skew)  # the eigenvalues of skew are i * omega, omega real
    imag = np.sort(omega[omega > 0])
    return np.full(n, -0.5), imag


@register("s5", example={"hidden_size": 4, "output_size": 3}, reference=reference.s5)
def s5(
    hidden_size: int,
    *,
    output_size: int | None = None,
    dt_min: float = 0.001,
    dt_max: float = 0.1,
    dtype: DTypeLike = jnp.float32,
) -> base.Cell:
    """S5 cell with N = `hidden_size` complex states (conjugate pairs of 2N); has a `LinearRecurrence` form.

    Args:
      hidden_size: N, the complex states kept.
      output_size: O, the size of `y_t` (default N).
      dt_min: smallest initial timescale.
      dt_max: largest initial timescale.
      dtype: parameter dtype.
    """
    N = base.check_hidden_size("s5", hidden_size)
    O = N if output_size is None else base.check_hidden_size("s5", output_size)
    dtype = base.check_dtype("s5", dtype)

    def compute_dtypes(params):
        return base.complex_dtypes(params["b_re"].dtype)

    def init(key, input_size):
        I = base.check_input_size(input_size)
        ks = jax.random.split(key, 6)
        re, im = hippo_n_eigenvalues(N)
        normal = lambda k, shape, var: jax.random.normal(k, shape) * math.sqrt(var)  # noqa: E731
        params = {
            "log_neg_re": jnp.log(-jnp.asarray(re)),
            "lambda_im": jnp.asarray(im),
            "log_step": jax.random.uniform(ks[0], (N,), minval=math.log(dt_min), maxval=math.log(dt_max)),
            "b_re": normal(ks[1], (I, N), 1.0 / I),
            "b_im": normal(ks[2], (I, N), 1.0 / I),
            "c_re": normal(ks[3], (N, O), 1.0 / N),
            "c_im": normal(ks[4], (N, O), 1.0 / N),
            "d": normal(ks[5], (I, O), 1.0 / I),
        }
        return {k: v.astype(dtype) for k, v in params.items()}

    def coefficients(params, x):
        real, _ = compute_dtypes(params)
        p = {k: v.astype(real) for k, v in params.items()}
        lam = jax.lax.complex(-jnp.exp(p["log_neg_re"]), p["lambda_im"])
        lam_bar = jnp.exp(lam * jnp.exp(p["log_step"]))
        x = x.astype(real)
        bx = jax.lax.complex(x @ p["b_re"], x @ p["b_im"]) * ((lam_bar - 1.0) / lam)
        return jnp.broadcast_to(lam_bar, bx.shape), bx

    def readout(params, hs, xs):
        real, _ = compute_dtypes(params)
        p = {k: params[k].astype(real) for k in ("c_re", "c_im", "d")}
        y = 2.0 * (jnp.real(hs) @ p["c_re"] - jnp.imag(hs) @ p["c_im"]) + xs.astype(real) @ p["d"]
        return y.astype(params["d"].dtype)

    def initial_carry(params, batch_shape=()):
        return jnp.zeros((*tuple(batch_shape), N), compute_dtypes(params)[1])

    linear = base.LinearRecurrence(coefficients=coefficients, readout=readout)
    return base.Cell(
        init=init,
        initial_carry=initial_carry,
        step=base.linear_step(linear),
        input_spec=base.spec_from_weight("b_re"),
        name="s5",
        hidden_size=N,
        output_size=O,
        config={"hidden_size": N, "output_size": O, "dt_min": dt_min, "dt_max": dt_max, "dtype": dtype},
        linear=linear,
    )
