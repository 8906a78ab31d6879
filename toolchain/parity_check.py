"""``toolchain parity`` as a function: load, then run, then compare.

Load (:func:`prepare`): the candidate backend from the registry (:mod:`toolchain.backends`)
with the file it reads and what that file says (:mod:`toolchain.artifacts`), the eager
reference it was made from (:mod:`toolchain.inputs`), its weights checked by content, the
precision and tolerances, and the inputs. Run and compare (:func:`run_check`): both runners
over the inputs (:func:`toolchain.runners.base.collect_outputs`), then every check
(:func:`toolchain.parity.compare_runs`). The layer-wise check (:func:`run_layers`) uses the
same candidate, precision and tolerances. The CLI and the pipeline call these; the
benchmark shares the registry, the loaders and the comparator.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from toolchain.errors import MissingDependencyError, ToolchainError


@dataclass
class ParityRequest:
    """What to compare, as the CLI's options say it."""

    backend: str = "onnxruntime"
    files: object = None                       # toolchain.backends.Files
    checkpoint: object = None
    variant: str | None = None
    image_size: int | None = None
    num_classes: int | None = None
    in_channels: int | None = None
    dataset: str | None = None
    data_dir: object = None
    limit: int | None = None
    random_n: int | None = None
    seed: int = 0
    batch_sizes: tuple[int, ...] = (1, 32)
    precision: str | None = None
    allow_precision_mismatch: bool = False
    tolerances_file: object = None
    overrides: dict = field(default_factory=dict)  # atol, rtol, min_cosine, ... (None: the precision's default)
    device: str = "cpu"                        # the eager reference's device
    fused_lrn: bool = False                    # the eager reference runs LRN through the fused op
    verify_weights: bool = True                # the file holds the reference's weights, by content
    layerwise_samples: int | None = None       # prepare inputs for the layer-wise check (no batch sizes)


@dataclass
class Prepared:
    """The load step's result: everything the run and compare steps need."""

    candidate: object        # toolchain.backends.Candidate
    reference_model: object
    meta: dict
    inputs: object
    labels: object
    source: str
    precision: str
    tolerances: dict
    notes: list[str] = field(default_factory=list)


def prepare(request: ParityRequest) -> Prepared:
    """The load step (see the module docstring); one-line errors for everything the user can fix."""
    import copy

    from toolchain.artifacts import OnnxArtifact, resolve_precision
    from toolchain.backends import FILE_FLAGS, Context, Files, lookup, read_artifact, select
    from toolchain.inputs import choose_inputs, load_reference
    from toolchain.parity import load_tolerances

    files = request.files or Files()
    backend = lookup(request.backend)
    if request.layerwise_samples and backend.reads not in ("onnx", "onnx_int8"):
        raise ToolchainError(f"--layerwise covers the ONNX Runtime backends, not {backend.name}",
                             hint="TensorRT engines expose their layers only when built with marked outputs")
    if backend.reads and files.get(backend.reads) is None:
        raise ToolchainError(f"--backend {backend.name} needs {backend.flag} PATH")
    if request.fused_lrn and not str(request.device).startswith("cuda"):
        # On the CPU it would silently run PyTorch's own LRN.
        raise ToolchainError("--fused-lrn runs LRN through the CUDA kernel, and --device is the CPU",
                             hint="pass --device cuda on a machine with a GPU, or leave --fused-lrn out")
    artifacts: dict = {}
    reference: dict = {}  # the eager model, loaded once the candidate is known to run here

    def model_factory():
        return copy.deepcopy(reference["model"])

    ctx = Context(model_factory=model_factory, files=files, include_compile=True,
                  device="cuda" if str(request.device).startswith("cuda") else "cpu")
    (candidate,) = select([backend.name], ctx, artifacts=artifacts)
    if candidate.unavailable:
        raise MissingDependencyError(f"{backend.name} cannot run here: {candidate.unavailable}")
    described = candidate.artifact
    if described is None:  # an eager candidate: a file given beside it can still describe the model
        for reads, path in ((reads, files.get(reads)) for reads in FILE_FLAGS):
            if path is not None:
                described = read_artifact(lookup("tensorrt" if reads.endswith("engine") else "onnxruntime"), path,
                                          artifacts)
                break
    file_meta = described.metadata if described is not None else {}
    ref = load_reference(checkpoint=request.checkpoint, variant=request.variant, onnx_meta=file_meta,
                         image_size=request.image_size, num_classes=request.num_classes,
                         in_channels=request.in_channels)
    reference["model"] = ref.model
    meta = {**file_meta, **ref.meta}  # the split and dataset come from the checkpoint when there is one
    if request.verify_weights and isinstance(candidate.artifact, OnnxArtifact):
        from toolchain.weights import verify_onnx_weights

        verify_onnx_weights(ref.model, candidate.artifact.path, onnx_label=f"{backend.flag} {candidate.artifact.path}",
                            reference_label=f"checkpoint {request.checkpoint}" if request.checkpoint else
                            f"the reference (variant {meta.get('variant')}, weights {meta.get('weights')})")
    ctx.input_shape = (int(meta["in_channels"]), int(meta["image_size"]), int(meta["image_size"]))
    what = candidate.artifact.describe() if candidate.artifact is not None else f"the {candidate.name} runner"
    precision, note = resolve_precision(request.precision, candidate.precision, what,
                                        allow_mismatch=request.allow_precision_mismatch)
    tolerances = load_tolerances(precision, file=request.tolerances_file, **request.overrides)
    minimum = 16 if request.layerwise_samples else max([16, *request.batch_sizes])
    inputs, labels, source = choose_inputs(meta, dataset=request.dataset, random_n=request.random_n,
                                           limit=request.limit, data_dir=request.data_dir, seed=request.seed,
                                           minimum=minimum)
    if not request.layerwise_samples:
        from toolchain.runners.base import check_batch_sizes

        check_batch_sizes(request.batch_sizes, len(inputs),
                          more="a larger --random N" if labels is None else
                          ("a larger --limit" if request.limit else "--random N inputs"))
    return Prepared(candidate, ref.model, meta, inputs, labels, source, precision, tolerances,
                    [note] if note else [])


def run_check(prepared: Prepared, request: ParityRequest):
    """Run the reference and the candidate over the inputs, then compare: a ParityReport."""
    from toolchain.parity import run_parity
    from toolchain.runners.torch import TorchRunner

    reference = TorchRunner(prepared.reference_model, device=request.device, fused_lrn=request.fused_lrn)
    candidate = prepared.candidate.make()
    with reference, candidate:
        report = run_parity(reference, candidate, prepared.inputs, batch_sizes=list(request.batch_sizes),
                            labels=prepared.labels, tolerances=prepared.tolerances, precision=prepared.precision)
    report.inputs["source"] = prepared.source
    report.notes.extend(prepared.notes)
    return report


def run_layers(prepared: Prepared, samples: int):
    """The layer-wise check of an ONNX candidate, with the same precision and tolerances."""
    from toolchain.layerwise import run_layerwise

    candidate = prepared.candidate
    report = run_layerwise(prepared.reference_model, candidate.make(), prepared.inputs[:samples],
                           precision=prepared.precision, tolerances=prepared.tolerances)
    report.notes.extend(prepared.notes)
    return report
