"""A residual backbone for the token-mixing experiments (the recall study).

    embed -> N x [x + mixer(conv?(RMSNorm(x))) ; x + GatedMLP(RMSNorm(x))] -> RMSNorm -> head

The token mixer is any registered rnnjax cell unrolled over time (the config's `method`, by
default `rnnjax.auto`'s choice; `cell_options` for the factory's keyword arguments), or a
non-recurrent baseline written here: causal softmax attention with rotary position embeddings,
over the whole prefix (`attention`) or a sliding window (`swa`, `window` tokens).
`attention_layers` makes a hybrid: those layers use causal attention over the whole prefix, the
others the cell. `conv > 0` puts a depthwise causal convolution of that width before the mixer
(the short convolution of Mamba and
Griffin). Pure functions over a params dict, like `experiments.model`.
"""

from __future__ import annotations

import inspect
import math
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

import rnnjax

ATTENTION_MIXERS = ("attention", "swa")


def mixer_names() -> tuple[str, ...]:
    """Everything `Backbone` accepts as a mixer: the registered cells and the attention baselines."""
    return (*rnnjax.cells.names(), *ATTENTION_MIXERS)


def parse_cell_options(text: str) -> tuple[tuple[str, Any], ...]:
    """`"householder=2,negative_eigenvalues=True"` -> `(("householder", 2), ("negative_eigenvalues", True))`:
    keyword arguments of the cell's factory, values as Python literals (hashable, so the backbone stays a value)."""
    import ast

    options = []
    for item in filter(None, (part.strip() for part in text.split(","))):
        key, sep, value = item.partition("=")
        try:
            if not sep or not key.isidentifier():
                raise ValueError
            options.append((key, ast.literal_eval(value)))
        except (ValueError, SyntaxError):
            raise ValueError(
                f"cell_options: expected key=value pairs separated by commas with literal values, e.g. "
                f"'householder=2,negative_eigenvalues=True'; got {item!r} in {text!r}"
            ) from None
    return tuple(options)


def parse_layers(text: str, num_layers: int) -> tuple[int, ...]:
    """`"1,3"` -> `(1, 3)`: layer indices in [0, num_layers)."""
    try:
        layers = tuple(sorted({int(part) for part in text.split(",") if part.strip()}))
    except ValueError:
        raise ValueError(f"attention_layers: expected layer indices separated by commas, got {text!r}") from None
    if any(not 0 <= k < num_layers for k in layers):
        raise ValueError(f"attention_layers: {text!r} names a layer outside 0..{num_layers - 1}")
    return layers


def rms_norm(x: jax.Array, scale: jax.Array, eps: float = 1e-6) -> jax.Array:
    return x * jax.lax.rsqrt(jnp.mean(jnp.square(x), axis=-1, keepdims=True) + eps) * scale


def causal_conv(x: jax.Array, w: jax.Array, b: jax.Array) -> jax.Array:
    """Depthwise causal convolution over time: `y_t = b + sum_j w[j] * x_{t-j}`, x `[T, B, D]`, w `[K, D]`."""
    T = x.shape[0]
    padded = jnp.concatenate([jnp.zeros((w.shape[0] - 1, *x.shape[1:]), x.dtype), x])
    return b + sum(w[j] * padded[w.shape[0] - 1 - j : w.shape[0] - 1 - j + T] for j in range(w.shape[0]))


def rotary(x: jax.Array, base: float = 10000.0) -> jax.Array:
    """Rotary position embedding (Su et al. 2021) of `x [T, B, heads, dh]` along T (dh even)."""
    T, dh = x.shape[0], x.shape[-1]
    freqs = base ** (-jnp.arange(0, dh, 2) / dh)
    angles = jnp.arange(T)[:, None] * freqs[None, :]  # [T, dh/2]
    cos, sin = jnp.cos(angles)[:, None, None, :], jnp.sin(angles)[:, None, None, :]
    x1, x2 = x[..., 0::2], x[..., 1::2]
    return jnp.stack([x1 * cos - x2 * sin, x1 * sin + x2 * cos], axis=-1).reshape(x.shape)


def attention(params: dict[str, jax.Array], x: jax.Array, num_heads: int, window: int | None) -> jax.Array:
    """Causal multi-head softmax attention with rotary positions; `window` limits each query to
    the `window` most recent keys (itself included). x `[T, B, D]`."""
    T, B, D = x.shape
    q, k, v = jnp.split(x @ params["w_qkv"], 3, axis=-1)
    q, k, v = (a.reshape(T, B, num_heads, D // num_heads) for a in (q, k, v))
    q, k = rotary(q), rotary(k)
    scores = jnp.einsum("tbhd,sbhd->bhts", q, k) / math.sqrt(D // num_heads)
    i, j = jnp.arange(T)[:, None], jnp.arange(T)[None, :]
    allowed = (j <= i) if window is None else (j <= i) & (j > i - window)
    weights = jax.nn.softmax(jnp.where(allowed, scores, -jnp.inf), axis=-1)
    out = jnp.einsum("bhts,sbhd->tbhd", weights, v).reshape(T, B, D)
    return out @ params["w_o"]


class Backbone(NamedTuple):
    """The residual backbone; `apply(params, tokens [T, B]) -> logits [T, B, output_size]`."""

    mixer: str
    width: int
    num_layers: int
    vocab_size: int
    output_size: int
    conv: int = 0  # width of the short causal convolution before the mixer; 0: none
    num_heads: int = 4  # attention heads, and the heads of multi-head cells
    window: int = 64  # the sliding window of `swa`
    mlp_ratio: int = 2
    readout: str = "all"
    input_size: int = 0
    state_float32: bool = False  # carry the mixer's state in float32 (rnnjax.mixed_precision) under bf16
    cell_options: tuple[tuple[str, Any], ...] = ()  # the cell factory's keyword arguments (`parse_cell_options`)
    attention_layers: tuple[int, ...] = ()  # layers with causal attention instead of the cell: a hybrid
    method: rnnjax.Method | None = None  # how the cell is unrolled (None: rnnjax.auto)

    def cell(self) -> rnnjax.cells.Cell | None:
        """The rnnjax cell of the mixer, or None for attention."""
        if self.mixer in ATTENTION_MIXERS:
            return None
        spec = rnnjax.cells.spec(self.mixer)
        accepted = inspect.signature(spec.factory).parameters
        kwargs = {"num_heads": self.num_heads} if "num_heads" in accepted else {}
        if "output_size" in accepted:
            kwargs["output_size"] = self.width
        unknown = [k for k, _ in self.cell_options if k not in accepted]
        if unknown:
            raise ValueError(f"cell_options: cell {self.mixer!r} takes no {unknown}; it takes {sorted(accepted)}")
        kwargs.update(self.cell_options)
        cell = rnnjax.cells.get(self.mixer, hidden_size=self.width, **kwargs)
        return rnnjax.mixed_precision(cell) if self.state_float32 else cell

    def layer_cells(self) -> list[rnnjax.cells.Cell | None]:
        """Each layer's cell, None where the layer is attention (the mixer, or a hybrid's attention layers)."""
        cell = self.cell()
        return [None if k in self.attention_layers else cell for k in range(self.num_layers)]

    def init(self, key: jax.Array) -> dict[str, Any]:
        D, E = self.width, self.mlp_ratio * self.width
        keys = iter(jax.random.split(key, 4 * self.num_layers + 2))
        dense = jax.nn.initializers.lecun_normal()
        blocks = []
        for cell in self.layer_cells():
            if cell is None:
                mixer = {"w_qkv": dense(next(keys), (D, 3 * D)), "w_o": dense(next(keys), (D, D)) / self.num_layers}
            else:
                mixer = cell.init(next(keys), D)
                next(keys)
            block = {
                "norm_mixer": jnp.ones(D),
                "mixer": mixer,
                "norm_mlp": jnp.ones(D),
                "mlp": {"w_in": dense(next(keys), (D, 2 * E)), "w_out": dense(next(keys), (E, D)) / self.num_layers},
            }
            if self.conv:
                block["conv"] = {"w": jnp.zeros((self.conv, D)).at[0].set(1.0), "b": jnp.zeros(D)}  # starts as identity
            blocks.append(block)
        return {
            "embed": jax.random.normal(next(keys), (self.vocab_size, D)) / math.sqrt(D),
            "blocks": blocks,
            "norm": jnp.ones(D),
            "head": {"w": dense(next(keys), (D, self.output_size)), "b": jnp.zeros(self.output_size)},
        }

    def apply(self, params: dict[str, Any], tokens: jax.Array, lengths: jax.Array | None = None) -> jax.Array:
        """Logits `[T, B, output_size]` for int tokens `[T, B]` (lengths are not used: causal)."""
        x = params["embed"][tokens]
        for cell, block in zip(self.layer_cells(), params["blocks"], strict=True):
            h = rms_norm(x, block["norm_mixer"])
            if self.conv:
                h = causal_conv(h, block["conv"]["w"], block["conv"]["b"])
            if cell is None:
                h = attention(block["mixer"], h, self.num_heads, self.window if self.mixer == "swa" else None)
            else:
                h = rnnjax.unroll(cell, block["mixer"], h, method=self.method)[1]
            x = x + h
            h = rms_norm(x, block["norm_mlp"])
            gate, up = jnp.split(h @ block["mlp"]["w_in"], 2, axis=-1)
            x = x + (jax.nn.silu(gate) * up) @ block["mlp"]["w_out"]
        return rms_norm(x, params["norm"]) @ params["head"]["w"] + params["head"]["b"]

    def logits(self, params: dict[str, Any], batch) -> jax.Array:
        return self.apply(params, batch["xs"], batch.get("lengths"))

    def state_bytes(self, params: dict[str, Any], seq_len: int) -> int:
        """Bytes of state the model carries from one token to the next while generating, per
        sequence, over all layers (Zoology's x-axis): the recurrent carry; for attention, the
        key-value cache at `seq_len` tokens (the window for `swa`); plus the convolution's buffer."""
        total = 0
        for cell, block in zip(self.layer_cells(), params["blocks"], strict=True):
            if cell is None:
                cached = seq_len if self.mixer != "swa" else min(self.window, seq_len)
                total += 2 * cached * self.width * 4
            else:
                carry = cell.initial_carry(block["mixer"], ())
                total += sum(int(np.size(a)) * jnp.dtype(a.dtype).itemsize for a in jax.tree_util.tree_leaves(carry))
            if self.conv:
                total += (self.conv - 1) * self.width * 4
        return total
