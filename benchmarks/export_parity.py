"""Parity of the exports with the numpy model, on many more inputs than the tests use.

For every case of tests/cases.py (its own small size) and the 15 lib programs at vocab 16 /
max_seq_len 16: all valid inputs where there are at most 5,000, else a seeded sample of
about 5,000 (fewer for the two largest models, see LIMITS). Prints, per model, the number of
inputs, the decode mismatches of torch and of the TransformerLens bridge against the numpy
model, the largest residual difference (every hook: resid pre/mid/post, attention and MLP
outputs; attention patterns against softmax of the numpy logits), and whether the bridge
loaded with strict=True; then the circuit ablation check at 16/16, and TransformerLens's
own converter (its key names fixed) on the categorical lib programs at 16/16.

Run: python benchmarks/export_parity.py [name ...]   (from the repository root)
"""

from __future__ import annotations

import pathlib
import sys
import time

import numpy as np
import torch

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent))

from tests.export import programs  # noqa: E402

from tracr import export  # noqa: E402
from tracr.export import lens  # noqa: E402

LIMIT = 5000
# numpy's forward pass is slow on these (d_model 325 and 4433); their samples are smaller.
LIMITS = {"lib16/make_sort": 1024, "lib16/make_nary_sequencemap": 256}
CHUNK = 256


def _diff(got, want, mask) -> float:
    d = np.abs(got.detach().numpy().astype(np.float64) - np.asarray(want, dtype=np.float64))
    return float(d[mask].max(initial=0.0))


def _softmax(x):
    x = x.astype(np.float64)
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def _check_chunk(model, net, bridge, seqs):
    ref = model.apply_batch(seqs)
    ids, mask = net.encode(seqs)
    m = mask.numpy()
    with torch.no_grad():
        t_out = net(ids, mask, return_activations=True)
        logits, cache = bridge.run_with_cache(ids, attention_mask=mask.long())
    bad_t = sum(
        not programs.same_outputs([a], [b])
        for a, b in zip(net.decode(t_out.logits, mask), ref.decoded)
    )
    bad_l = sum(
        not programs.same_outputs([a], [b])
        for a, b in zip(lens.decode(model, logits, mask), ref.decoded)
    )
    pre = [ref.input_embeddings] + ref.residuals[1::2][:-1]
    hooks = {"hook_resid_pre": pre, "hook_attn_out": ref.layer_outputs[0::2]}
    hooks |= {"hook_resid_mid": ref.residuals[0::2], "hook_mlp_out": ref.layer_outputs[1::2]}
    hooks |= {"hook_resid_post": ref.residuals[1::2]}
    d_t = d_l = 0.0
    acts = t_out.activations
    for hook, wanted in hooks.items():
        for layer, want in enumerate(wanted):
            d_t = max(d_t, _diff(acts[f"blocks.{layer}.{hook}"], want, m))
            d_l = max(d_l, _diff(cache[f"blocks.{layer}.{hook}"], want, m))
    for layer, logit in enumerate(ref.attn_logits):
        real = np.broadcast_to(m[:, None, :, None], logit.shape)
        want = _softmax(logit)
        d_t = max(d_t, _diff(acts[f"blocks.{layer}.attn.hook_pattern"], want, real))
        d_l = max(d_l, _diff(cache[f"blocks.{layer}.attn.hook_pattern"], want, real))
    return bad_t, bad_l, d_t, d_l


def parity(name: str) -> str:
    start = time.perf_counter()
    program, model, vocab, max_len = programs.compiled(name)
    limit = LIMITS.get(name, LIMIT)
    seqs = programs.inputs(name, limit, seed=1)
    everything = programs._count(vocab, max_len) <= limit and name != "lib16/make_sort_unique"
    net = export.to_torch(model)
    bridge = export.to_transformer_lens(model)  # raises unless load_state_dict(strict=True)
    strict = bridge.load_state_dict(lens.state_dict(model), strict=True)
    strict_ok = not strict.missing_keys and not strict.unexpected_keys
    totals = [0, 0, 0.0, 0.0]
    for i in range(0, len(seqs), CHUNK):
        bt, bl, dt, dl = _check_chunk(model, net, bridge, seqs[i : i + CHUNK])
        totals = [totals[0] + bt, totals[1] + bl, max(totals[2], dt), max(totals[3], dl)]
    kind = "all" if everything else "sample"
    return (
        f"| {name} | {len(seqs)} ({kind}) | {totals[0]} | {totals[1]} | {totals[2]:.1e} | "
        f"{totals[3]:.1e} | {strict_ok} | {time.perf_counter() - start:.0f} |"
    )


def ablation(name: str, n: int = 64) -> str:
    """Zero each SOp's blocks; count SOps whose ablation changed a column outside the SOp's
    and its downstream SOps' dimensions, or left its own dimensions unchanged."""
    _, model, _, _ = programs.compiled(name)
    seqs = programs.inputs(name, n, seed=2)
    width = max(len(s) for s in seqs)
    pad = model.input_encoder.pad_encoding
    ids = np.array([model.input_encoder.encode(s) + [pad] * (width - len(s)) for s in seqs])
    real = ids != pad
    clean = model.forward(model.params, ids).transformer_output.output
    c = model.circuit
    tested = leaks = silent = 0
    for node in c.nodes:
        if node.kind != "sop" or node.blocks[0].kind not in ("attn", "mlp"):
            continue
        tested += 1
        out = model.forward(c.ablate(model, node.label), ids).transformer_output.output
        changed = np.any(np.abs(out - clean)[real] > 1e-6, axis=0)
        allowed = set(node.writes).union(*(c[d].writes for d in c.downstream(node.label)))
        leaks += bool(set(np.flatnonzero(changed)) - allowed)
        silent += not changed[list(node.writes)].any()
    return f"| {name} | {tested} | {len(seqs)} | {leaks} | {silent} |"


def converter(name: str, n: int = 150) -> str:
    """TransformerLens 4.3's own tracr converter, its key names fixed (mlp.fc_in/fc_out ->
    mlp.in/out, a zero unembed bias added), loaded strictly: decode mismatches."""
    from transformer_lens.utilities import tracr as tl_tracr

    _, model, _, _ = programs.compiled(name)
    seqs = programs.inputs(name, n, seed=4)
    converted = tl_tracr.make_tracr_transformer_bridge_state_dict(model, model.circuit.output)
    fixed = {
        k.replace("mlp.fc_in.", "mlp.in.").replace("mlp.fc_out.", "mlp.out."): v
        for k, v in converted.items()
    }
    fixed["head.bias"] = torch.zeros(fixed["head.weight"].shape[0])
    bridge_cls, config_cls = lens._bridge_classes()
    bridge = bridge_cls.boot_native(tl_tracr.make_tracr_transformer_bridge_config(model))
    bridge.load_state_dict(fixed, strict=True)
    bad = 0
    for i in range(0, len(seqs), CHUNK):
        chunk = seqs[i : i + CHUNK]
        got = lens.run(bridge, model, chunk)
        want = model.apply_batch(chunk).decoded
        bad += sum(not programs.same_outputs([a], [b]) for a, b in zip(got, want))
    return f"| {name} | {len(seqs)} | {bad} |"


def main() -> None:
    names = sys.argv[1:] or programs.NAMES
    print(
        "| model | inputs | torch decode mismatches | lens decode mismatches "
        "| max diff torch | max diff lens | strict load | s |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for name in names:
        print(parity(name), flush=True)
    print()
    print("| model | SOps ablated | inputs | changed other columns | own columns unchanged |")
    print("|---|---|---|---|---|")
    for name in names:
        if name.startswith("lib16/"):
            print(ablation(name, 16 if name in LIMITS else 64), flush=True)
    print()
    print("| model (TransformerLens's converter, keys fixed) | inputs | decode mismatches |")
    print("|---|---|---|")
    for name in names:
        _, model, _, _ = programs.compiled(name)
        if name.startswith("lib16/") and hasattr(model.output_encoder, "encoding_map"):
            print(converter(name), flush=True)


if __name__ == "__main__":
    main()
