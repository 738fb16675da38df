"""The models the experiments train: [embedding] -> stacked rnnjax cells -> linear head (most),
the residual backbone (`experiments/backbone.py`, the recall study) and the encoder-decoder
(`experiments/seq2seq.py`, translation). Each has `init(key)` and `logits(params, batch)`.

Pure functions over a params dict `{"embed"?, "layers": [cell params...], "head"}`.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

import rnnjax
import rnnjax.methods
from experiments.tasks import Task


class SequenceModel(NamedTuple):
    cells: tuple[rnnjax.cells.Cell, ...]
    input_size: int
    vocab_size: int | None
    embed_size: int
    output_size: int
    readout: str  # "last" | "all"
    method: rnnjax.Method | None = None  # how each layer is unrolled (None: rnnjax.auto; Sharded: time split)
    bidirectional: bool = False  # every layer reads both ways (outputs concatenated); readout "all" only

    def init(self, key: jax.Array) -> dict[str, Any]:
        keys = jax.random.split(key, len(self.cells) + 2)
        params: dict[str, Any] = {}
        size = self.input_size
        if self.vocab_size is not None:
            params["embed"] = jax.random.normal(keys[-1], (self.vocab_size, self.embed_size)) / jnp.sqrt(
                self.embed_size
            )
            size = self.embed_size
        layers = []
        for cell, k in zip(self.cells, keys[: len(self.cells)], strict=True):  # keys[-1] is the embedding's
            if self.bidirectional:
                k_fw, k_bw = jax.random.split(k)
                layers.append((cell.init(k_fw, size), cell.init(k_bw, size)))
                size = 2 * cell.output_size
            else:
                layers.append(cell.init(k, size))
                size = cell.output_size
        params["layers"] = layers
        params["head"] = {
            "w": jax.nn.initializers.lecun_normal()(keys[-2], (size, self.output_size)),
            "b": jnp.zeros(self.output_size),
        }
        return params

    def features(self, params, xs, lengths=None):
        """Per-step top-layer outputs `[T, B, H]`."""
        if self.vocab_size is not None:
            xs = params["embed"][xs]
        for cell, p in zip(self.cells, params["layers"], strict=True):
            if self.bidirectional:
                _, xs = rnnjax.layers.bidirectional(cell, cell, p, xs, lengths=lengths, method=self.method)
            else:
                _, xs = rnnjax.unroll(cell, p, xs, lengths=lengths, method=self.method)
        return xs

    def logits(self, params, batch):
        """The predictions `loss_and_metrics` scores, from a batch."""
        return self.apply(params, batch["xs"], batch.get("lengths"))

    def apply(self, params, xs, lengths=None):
        """Predictions: `[B, O]` for readout "last", `[T, B, O]` for "all"."""
        hs = self.features(params, xs, lengths)
        if self.readout == "last":
            if lengths is None:
                hs = hs[-1]
            else:
                # the output at each sequence's last valid step (a length-0 sequence reads zeros)
                idx = jnp.maximum(lengths - 1, 0)
                hs = jnp.take_along_axis(hs, idx[None, :, None], axis=0)[0]
        return hs @ params["head"]["w"] + params["head"]["b"]


def build(task: Task, config):
    """The model of a run: the residual backbone (`experiments.backbone`) when the config asks
    for it, else the stacked cells of `SequenceModel`."""
    if getattr(config, "seq2seq", False):
        from experiments.seq2seq import Translator

        return Translator(
            cell=config.cell,
            hidden_size=config.hidden_size,
            embed_size=config.embed_size,
            source_vocab=task.vocab_size,
            target_vocab=task.output_size,
            attention=config.attention,
            bidirectional=config.bidirectional,
        )
    if getattr(config, "backbone", False):
        from experiments.backbone import Backbone, parse_cell_options, parse_layers

        return Backbone(
            mixer=config.cell,
            width=config.hidden_size,
            num_layers=config.num_layers,
            vocab_size=task.vocab_size,
            output_size=task.output_size,
            conv=config.conv,
            num_heads=config.num_heads,
            window=config.window,
            readout=task.readout,
            cell_options=parse_cell_options(getattr(config, "cell_options", "")),
            method=_method(config.method),
            attention_layers=parse_layers(getattr(config, "attention_layers", ""), config.num_layers),
        )
    cells = tuple(rnnjax.cells.get(config.cell, hidden_size=config.hidden_size) for _ in range(config.num_layers))
    return SequenceModel(
        cells=cells,
        input_size=task.input_size,
        vocab_size=task.vocab_size,
        embed_size=getattr(config, "embed_size", 32),
        output_size=task.output_size,
        readout=task.readout,
        method=_method(config.method),
        bidirectional=getattr(config, "bidirectional", False),
    )


def _method(text: str) -> rnnjax.Method | None:
    """The config's `method` string as a method value (a ConfigError naming the key when it is not one)."""
    from experiments.config import ConfigError

    try:
        return rnnjax.methods.from_string(text)
    except ValueError as err:
        raise ConfigError(f"config key 'method': {err}") from None


PRECISIONS = {"float32": None, "bf16": jnp.bfloat16}


def with_float32_state(model):
    """The model with its cells' recurrent state carried in float32 (`rnnjax.mixed_precision`)."""
    if isinstance(model, SequenceModel):
        return model._replace(cells=tuple(rnnjax.mixed_precision(c) for c in model.cells))
    if hasattr(model, "state_float32"):  # the residual backbone
        return model._replace(state_float32=True)
    return model


def cast_floats(tree, dtype):
    """Every real floating leaf of `tree` in `dtype` (ints, bools and complex leaves unchanged)."""

    def cast(a):
        a = jnp.asarray(a)
        return a.astype(dtype) if jnp.issubdtype(a.dtype, jnp.floating) else a

    return jax.tree_util.tree_map(cast, tree)


def check_time_sharding(model, task: Task) -> None:
    """Raise a ConfigError unless the model can run with its time axis split over devices."""
    from experiments.config import ConfigError

    cells = getattr(model, "cells", None)
    why = []
    if not isinstance(model, SequenceModel):
        why.append(f"the model is a {type(model).__name__}, not the stacked cells of SequenceModel")
    else:
        if model.bidirectional:
            why.append("the model is bidirectional")
        if model.method is not None:
            why.append(f"method={model.method!r} (the time split runs each cell's parallel form)")
        serial = [c.name for c in cells if c.linear is None and c.matrix is None]
        if serial:
            able = [s.name for s in rnnjax.cells.specs() if s.has_linear_form or s.has_matrix_form]
            why.append(f"cell {serial[0]!r} has no parallel or chunkwise form (these have: {', '.join(able)})")
    if task.readout != "all":
        why.append(f"task {task.name!r} reads out {task.readout!r}, not a loss at every step")
    if why:
        raise ConfigError(f"--seq-devices splits the time axis, which this run cannot: {'; '.join(why)}")


def loss_and_metrics(
    model: SequenceModel, task: Task, params, batch, precision: str = "float32", axes: tuple[str, ...] | None = None
) -> tuple[jax.Array, dict[str, jax.Array]]:
    """Mean loss over the batch, and metrics (accuracy for classification).

    `axes`: called per device inside `jax.shard_map` (the time axis and the
    batch split over these mesh axes): the sums behind each mean are reduced
    over them with `lax.psum`, so every device returns the whole batch's values.

    `precision="bf16"`: the forward and backward pass run in bfloat16 (params
    and float inputs cast on the way in, so the input products and per-step
    layers are bfloat16), the recurrent state in float32 (`rnnjax.mixed_precision`:
    whatever touches the state runs in float32), the loss and its reductions
    in float32; the params and the optimiser state the trainer keeps stay
    float32 (the cast's gradient casts back). The encoder-decoder of
    `translate` keeps its state in bfloat16.
    """
    compute = PRECISIONS[precision]
    if compute is not None:
        params, batch = cast_floats(params, compute), {**batch, "xs": cast_floats(batch["xs"], compute)}
        model = with_float32_state(model)
    preds = model.logits(params, batch).astype(jnp.float32)
    total = jnp.sum if axes is None else lambda a: jax.lax.psum(jnp.sum(a), axes)  # noqa: E731
    mean = jnp.mean if axes is None else lambda a: total(a) / total(jnp.ones_like(a))  # noqa: E731
    if task.loss == "mse":
        loss = mean((preds - batch["ys"]) ** 2)
        return loss, {"loss": loss, "mse": loss}
    logp = jax.nn.log_softmax(preds)
    nll = -jnp.take_along_axis(logp, batch["ys"][..., None], axis=-1)[..., 0]
    correct = (jnp.argmax(preds, -1) == batch["ys"]).astype(jnp.float32)
    if task.readout == "all":
        w = batch["weights"]
        loss = total(nll * w) / jnp.maximum(total(w), 1.0)
        mw = batch.get("metric_weights", w)
        acc = total(correct * mw) / jnp.maximum(total(mw), 1.0)
    else:
        loss, acc = mean(nll), mean(correct)
    return loss, {"loss": loss, "accuracy": acc}
