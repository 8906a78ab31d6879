"""Where each artifact's weights come from: the sha256 chain checkpoint -> ONNX ``metadata_props`` ->
engine manifest, so backends timed side by side run the same weights (pure; the files' metadata
is read by :mod:`toolchain.artifacts`). The weights' content is checked by :mod:`toolchain.weights`.
"""

from __future__ import annotations

from toolchain.errors import ToolchainError


def weights_identity(meta: dict) -> dict:
    """What identifies a model's weights: checkpoint sha256, else variant + weights + seed."""
    sha = meta.get("checkpoint_sha256") or None
    out = {"checkpoint_sha256": sha, "variant": meta.get("variant")}
    if not sha:
        weights = meta.get("weights") or None
        out["weights"] = None if weights in (None, "", "checkpoint") or str(weights).startswith("random") else weights
        out["seed"] = int(meta["seed"]) if meta.get("seed") not in (None, "") else None
    return out


def weights_mismatch(reference: dict, artifact: dict, what: str) -> str | None:
    """Why ``artifact`` (a :func:`weights_identity`) holds other weights than ``reference``, or None."""
    ref_sha, art_sha = reference.get("checkpoint_sha256"), artifact.get("checkpoint_sha256")
    if ref_sha or art_sha:
        if ref_sha == art_sha:
            return None
        if not art_sha:
            return f"{what} was not exported from a checkpoint (the reference is checkpoint {ref_sha[:12]}...)"
        if not ref_sha:
            return f"{what} was exported from checkpoint {art_sha[:12]}..., the reference is a variant"
        return f"{what} was exported from checkpoint {art_sha[:12]}..., the reference is {ref_sha[:12]}..."
    for key in ("variant", "weights", "seed"):
        a, b = reference.get(key), artifact.get(key)
        if a is not None and b is not None and a != b:
            return f"{what} holds {key} {b!r}, the reference {a!r}"
    return None


def check_weights(reference: dict | None, sources: dict[str, dict | None], *, allow_mismatch: bool,
                  found: dict[str, str] | None = None) -> dict[str, str]:
    """{artifact: mismatch} over ``sources`` ({"--onnx x.onnx": identity}) and the mismatches already
    ``found`` (by content, :mod:`toolchain.weights`); raises unless ``allow_mismatch``."""
    by_content, found = found or {}, {}
    for what, identity in (sources.items() if reference else ()):
        if identity is None:
            continue
        problem = weights_mismatch(reference, identity, what)
        if problem:
            found[what] = problem
    for what, problem in by_content.items():  # the recorded identity says more, where it differs too
        found.setdefault(what, problem)
    if found and not allow_mismatch:
        first = next(iter(found.values()))
        raise ToolchainError(f"{first}: its timings would not be comparable",
                             hint="pass the artifacts built from the reference weights, or --allow-mismatch to "
                                  "time them anyway (the rows are marked)")
    return found
