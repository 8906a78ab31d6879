"""Pure-Python decisions and checks around TensorRT: no tensorrt, no GPU, all tested on CPU.

The builder and the runtime ask this module what to do (which network typing,
which optimization profile) and whether an engine may run here (TensorRT version,
GPU compute capability, input shapes inside the profile); they only carry it out.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field

from toolchain.errors import ToolchainError

#: Inclusive range of TensorRT major versions this toolchain is written for.
SUPPORTED_MAJORS = (10, 11)
#: How LRN reaches the engine: the FusedLRN nodes through our plugin; the standard ONNX ``LRN`` of a
#: native export; or the FusedLRN nodes' model-local function imported as standard layers (no plugin).
LRN_MODES = ("plugin", "native", "function")
#: Batch range used when neither the options nor a static ONNX say otherwise.
DEFAULT_MIN_BATCH = 1
DEFAULT_MAX_BATCH = 256


def parse_version(text: str) -> tuple[int, ...]:
    """"10.16.0.32" -> (10, 16, 0, 32); trailing non-numeric parts ("rc1", "+cuda12") are dropped."""
    parts = []
    for piece in str(text).strip().split("."):
        match = re.match(r"\d+", piece)
        if not match:
            break
        parts.append(int(match.group()))
        if match.end() != len(piece):
            break
    if not parts:
        raise ToolchainError(f"cannot read a version number from {text!r}")
    return tuple(parts)


def tensorrt_major(version: str) -> int:
    major = parse_version(version)[0]
    if major not in range(SUPPORTED_MAJORS[0], SUPPORTED_MAJORS[1] + 1):
        raise ToolchainError(f"TensorRT {version} is not supported",
                             hint=f"use TensorRT {SUPPORTED_MAJORS[0]}.x or {SUPPORTED_MAJORS[1]}.x")
    return major


#: Manifest names of the two builders.
FULL, RTX = "tensorrt", "tensorrt-rtx"
#: TensorRT-RTX's compute-capability targets (its ``trt.ComputeCapability`` members, 1.7). None given
#: means RTX's portable default, which covers all of them. There is no SM90 (H100/H200).
RTX_TARGETS = ("SM75", "SM80", "SM86", "SM89", "SM120", "SM121")


@dataclass(frozen=True)
class Flavour:
    """Which TensorRT builds or runs an engine, and what that allows (pure; no tensorrt import)."""

    name: str     # FULL or RTX
    version: str  # the module's __version__ ("10.16.1.11", "1.7.1.116")

    @property
    def rtx(self) -> bool:
        return self.name == RTX

    @property
    def label(self) -> str:
        return f"{'TensorRT-RTX' if self.rtx else 'TensorRT'} {self.version}"

    @property
    def strongly_typed_only(self) -> bool:
        """No FP16/INT8 builder flags: precision comes from the graph's types and Q/DQ."""
        return self.rtx or tensorrt_major(self.version) >= 11


def flavour_of(module_name: str, version: str) -> Flavour:
    """The flavour of a ``tensorrt`` / ``tensorrt_lean`` / ``tensorrt_rtx`` module; one line for a
    release this toolchain is not written for."""
    if module_name.split(".")[0].startswith("tensorrt_rtx"):
        if parse_version(version)[0] != 1:
            raise ToolchainError(f"TensorRT-RTX {version} is not supported", hint="use TensorRT-RTX 1.x (1.4 to 1.7)")
        return Flavour(RTX, version)
    tensorrt_major(version)
    return Flavour(FULL, version)


def manifest_flavour(manifest: dict) -> Flavour:
    """The flavour an engine was built with (manifests from before TensorRT-RTX: the full TensorRT)."""
    env = manifest.get("environment") or {}
    return Flavour(RTX if env.get("flavour") == RTX else FULL, str(env.get("tensorrt") or "0"))


def target_name(value) -> str:
    """"8.6", "sm_86", "86", "SM86", (8, 6) -> "SM86" (TensorRT-RTX's ComputeCapability member name)."""
    text = str(value).strip() if not isinstance(value, (tuple, list)) else value
    if isinstance(text, str):
        text = text.upper().removeprefix("SM").removeprefix("_")
    return "SM" + compute_capability_str(text).replace(".", "")


def resolve_targets(requested, flavour: Flavour, available: tuple[str, ...] = RTX_TARGETS) -> list[str]:
    """``--compute-capability`` values as TensorRT-RTX target names, in the order given.

    Empty: RTX's portable default (every target). The full TensorRT builds for the GPU it runs on
    and takes no targets; a target RTX lacks (sm_90: H100/H200) is refused, naming the choices.
    """
    requested = [str(value) for value in requested or () if str(value).strip()]
    if not requested:
        return []
    if not flavour.rtx:
        raise ToolchainError(f"--compute-capability picks TensorRT-RTX targets; {flavour.label} builds for the GPU "
                             "it runs on", hint="leave it out, or build with --tensorrt rtx")
    names = []
    for value in requested:
        try:
            name = target_name(value)
        except ToolchainError:
            raise ToolchainError(f"--compute-capability {value!r} is not a compute capability",
                                 hint=f"use e.g. 8.6 or sm_86; {flavour.label} targets: {', '.join(available)}") from None
        if name not in available:
            extra = (" (H100/H200 are Hopper data-centre GPUs: build their engines with the full TensorRT on them)"
                     if name == "SM90" else "")
            raise ToolchainError(f"{flavour.label} has no target {name.lower().replace('sm', 'sm_')}{extra}",
                                 hint=f"its targets: {', '.join(available)}; or leave --compute-capability out for "
                                      "its portable default (all of them)")
        if name not in names:
            names.append(name)
    return names


def rtx_gpu_problem(compute_capability, targets) -> str | None:
    """Why an RTX engine built for ``targets`` (empty: portable) cannot load on this GPU (None: it can)."""
    name = target_name(compute_capability)
    allowed = list(targets) if targets else list(RTX_TARGETS)
    if name in allowed:
        return None
    which = f"the engine's targets ({', '.join(allowed)})" if targets else f"TensorRT-RTX's GPUs ({', '.join(allowed)})"
    return (f"this GPU is {name.lower().replace('sm', 'sm_')}, not among {which}"
            + ("; H100/H200 engines need the full TensorRT" if name == "SM90" else ""))


def format_cuda_version(number: int | None) -> str | None:
    """CUDA's integer versions (12090 from cudaRuntimeGetVersion) as "12.9"."""
    if number is None or number <= 0:
        return None
    return f"{number // 1000}.{(number % 1000) // 10}"


def parse_nvidia_driver_version(text: str) -> str | None:
    """The driver version from /proc/driver/nvidia/version ("... Kernel Module  575.57.08  ...")."""
    match = re.search(r"Kernel Module(?: for [\w-]+)?\s+(\d+\.\d+(?:\.\d+)?)", text)
    return match.group(1) if match else None


def compute_capability_str(value) -> str:
    """(9, 0), "9.0", "sm_90", 90 -> "9.0"."""
    if isinstance(value, (tuple, list)) and len(value) == 2:
        return f"{int(value[0])}.{int(value[1])}"
    text = str(value).strip().lower().removeprefix("sm_").removeprefix("sm")
    if re.fullmatch(r"\d+\.\d+", text):
        return text
    if re.fullmatch(r"\d{2,3}", text):
        return f"{text[:-1]}.{text[-1]}"
    raise ToolchainError(f"cannot read a compute capability from {value!r}")


# --------------------------------------------------------------------------- build options


@dataclass
class BuildOptions:
    """What the user asked ``toolchain build`` for; ``None`` batches mean "decide from the ONNX"."""

    lrn: str = "plugin"
    min_batch: int | None = None
    opt_batch: int | None = None
    max_batch: int | None = None
    workspace_mib: int | None = None
    timing_cache: str | None = None
    allow_fp32: bool = False
    version_compatible: bool = False  # VERSION_COMPATIBLE engine with the dynamic plugin serialized into it
    embed_plugin: bool = False        # the dynamic plugin library serialized into the engine (plugins_to_serialize)
    compute_capabilities: tuple[str, ...] = ()  # TensorRT-RTX targets; empty: its portable default

    def validate(self) -> "BuildOptions":
        problems = []
        if self.lrn not in LRN_MODES:
            problems.append(f"--lrn must be one of {', '.join(LRN_MODES)}, got {self.lrn!r}")
        for name in ("min_batch", "opt_batch", "max_batch"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
                problems.append(f"--{name.replace('_', '-')} must be a positive integer, got {value!r}")
        if not problems:
            given = [(n, getattr(self, n)) for n in ("min_batch", "opt_batch", "max_batch") if getattr(self, n)]
            for (name_a, a), (name_b, b) in zip(given, given[1:]):
                if a > b:
                    problems.append(f"--{name_a.replace('_', '-')} ({a}) is larger than --{name_b.replace('_', '-')} ({b})")
        if self.workspace_mib is not None and (not isinstance(self.workspace_mib, int) or self.workspace_mib < 1):
            problems.append(f"--workspace-mib must be a positive integer, got {self.workspace_mib!r}")
        if self.embed_plugin and self.lrn != "plugin":
            problems.append(f"--embed-plugin needs --lrn plugin (with --lrn {self.lrn} no plugin is used)")
        if problems:
            raise ToolchainError("invalid build options: " + "; ".join(problems))
        return self

    def to_dict(self) -> dict:
        data = asdict(self)
        data["compute_capabilities"] = list(self.compute_capabilities)
        return data

    @property
    def serializes_plugin(self) -> bool:
        """Whether the (dynamic) plugin library goes into the engine."""
        return self.lrn == "plugin" and (self.embed_plugin or self.version_compatible)


def check_flavour_options(options: BuildOptions, flavour: Flavour) -> list[str]:
    """Refuse (one line) what ``flavour`` cannot build; return notes for options that do nothing there."""
    notes = []
    if flavour.rtx:
        if options.version_compatible:
            raise ToolchainError(f"{flavour.label} cannot build version-compatible engines (it has no lean runtime)",
                                 hint="leave --version-compatible out: an RTX engine is compiled for the GPU when it "
                                      "is loaded; --embed-plugin carries the plugin inside it")
        if options.timing_cache:
            notes.append(f"--timing-cache is a no-op with {flavour.label} (its builds time no tactics on a GPU); "
                         f"{options.timing_cache} is neither read nor written")
    elif options.embed_plugin and not options.version_compatible:
        raise ToolchainError(f"{flavour.label} serializes plugin libraries only into version-compatible engines",
                             hint="add --version-compatible (which embeds the dynamic plugin library)")
    resolve_targets(options.compute_capabilities, flavour)  # refuses targets the flavour cannot build
    return notes


@dataclass(frozen=True)
class PrecisionPlan:
    """How the network is typed and which precision the engine computes in."""

    strongly_typed: bool   # NetworkDefinitionCreationFlag.STRONGLY_TYPED
    fp16_flag: bool        # BuilderFlag.FP16 (TensorRT 10 only)
    precision: str         # "fp16", "fp32" or "int8": what the engine's layers run in
    reason: str            # one line for the log and the manifest
    int8_flag: bool = False  # BuilderFlag.INT8 (TensorRT 10, explicit quantization of a weakly typed network)


def plan_precision(onnx_dtype: str, tensorrt_version: str, *, allow_fp32: bool = False,
                   quantized: bool = False, flavour: str = FULL) -> PrecisionPlan:
    """Pick the network typing from the ONNX's "toolchain.dtype", its Q/DQ nodes and the TensorRT major.

    TensorRT 11 has only strongly typed networks and no FP16 builder flag, so an
    FP16 engine needs the FP16-typed export. TensorRT 10 takes either the FP16
    export (strongly typed) or the FP32 export with the FP16 builder flag.

    A Q/DQ (``quantized``) ONNX is explicit quantization: TensorRT 11 builds it
    strongly typed (the Q/DQ-fed layers in INT8, the rest in the ONNX's float
    type); TensorRT 10 builds an FP32 one weakly typed with the INT8 and FP16
    flags, so the layers without Q/DQ may run in FP16. TensorRT-RTX (``flavour=RTX``)
    is strongly typed only, like TensorRT 11.
    """
    builder = Flavour(flavour, tensorrt_version)
    strongly_typed_only = builder.strongly_typed_only
    if onnx_dtype not in ("fp16", "fp32"):
        raise ToolchainError(f"unknown ONNX dtype {onnx_dtype!r} (metadata toolchain.dtype)",
                             hint="export it with `toolchain export --dtype fp16` or `--dtype fp32`")
    if quantized:
        if strongly_typed_only or onnx_dtype == "fp16":
            return PrecisionPlan(True, False, "int8", f"Q/DQ {onnx_dtype.upper()} ONNX: strongly typed network, "
                                 f"Q/DQ-fed layers in INT8, the rest in {onnx_dtype.upper()}")
        return PrecisionPlan(False, True, "int8", "Q/DQ FP32 ONNX under TensorRT 10: explicit quantization with "
                             "the INT8 and FP16 builder flags (weakly typed: the rest may run in FP16)",
                             int8_flag=True)
    if onnx_dtype == "fp16":
        return PrecisionPlan(True, False, "fp16", "FP16-typed ONNX: strongly typed network")
    if strongly_typed_only:
        if not allow_fp32:
            raise ToolchainError(
                f"{builder.label} builds strongly typed networks only (no FP16 builder flag), "
                "so this FP32 ONNX would give an FP32 engine",
                hint="export with `toolchain export --dtype fp16`, or pass --allow-fp32 to build FP32 on purpose")
        return PrecisionPlan(True, False, "fp32", f"FP32 ONNX under {builder.label} (--allow-fp32): FP32 engine")
    return PrecisionPlan(False, True, "fp16", "FP32 ONNX under TensorRT 10: FP16 builder flag (weakly typed)")


def check_lrn_mode(requested: str, onnx_lrn: str | None, fused_lrn_nodes: int, op_type: str) -> None:
    """The requested ``--lrn`` must match how the ONNX was exported."""
    if requested == "plugin":
        if onnx_lrn == "native" or fused_lrn_nodes == 0:
            raise ToolchainError(
                f"the ONNX has no {op_type} nodes (metadata toolchain.lrn={onnx_lrn!r})",
                hint="export with `toolchain export --lrn plugin`, or build this one with --lrn native")
    elif requested == "native":
        if onnx_lrn == "plugin" or fused_lrn_nodes > 0:
            raise ToolchainError(
                f"--lrn native but the ONNX has {fused_lrn_nodes} {op_type} node(s) (metadata toolchain.lrn={onnx_lrn!r})",
                hint="build it with --lrn plugin, or export with `toolchain export --lrn native`")
    elif requested == "function":
        if onnx_lrn == "native" or fused_lrn_nodes == 0:
            raise ToolchainError(
                f"--lrn function imports the {op_type} nodes' local function, but the ONNX has no {op_type} nodes "
                f"(metadata toolchain.lrn={onnx_lrn!r})", hint="build this one with --lrn native")
    else:
        raise ToolchainError(f"--lrn must be one of {', '.join(LRN_MODES)}, got {requested!r}")


@dataclass(frozen=True)
class Profile:
    """One optimization profile of one input: full shapes (batch first)."""

    min: tuple[int, ...]
    opt: tuple[int, ...]
    max: tuple[int, ...]

    def to_dict(self) -> dict:
        return {"min": list(self.min), "opt": list(self.opt), "max": list(self.max)}

    @classmethod
    def from_dict(cls, data: dict) -> "Profile":
        return cls(tuple(data["min"]), tuple(data["opt"]), tuple(data["max"]))


def resolve_profile(input_dims: list, metadata: dict, options: BuildOptions) -> Profile:
    """min/opt/max shapes of the NCHW input from its ONNX dims, metadata and the batch options.

    A symbolic batch takes the options (defaults 1 / max / 256); a static batch
    allows only itself. Symbolic C/H/W come from toolchain.in_channels/image_size.
    """
    if len(input_dims) != 4:
        raise ToolchainError(f"the ONNX input has rank {len(input_dims)}, expected 4 (NCHW)")
    batch, rest = input_dims[0], []
    fallbacks = {1: metadata.get("in_channels"), 2: metadata.get("image_size"), 3: metadata.get("image_size")}
    for axis, dim in enumerate(input_dims[1:], start=1):
        if isinstance(dim, int) and dim > 0:
            rest.append(dim)
            continue
        try:
            rest.append(int(fallbacks[axis]))
        except (TypeError, ValueError):
            raise ToolchainError(f"the ONNX input's axis {axis} is dynamic ({dim!r}) and the metadata does not fix it",
                                 hint="export with a static image size") from None
    if isinstance(batch, int) and batch > 0:
        for name in ("min_batch", "opt_batch", "max_batch"):
            value = getattr(options, name)
            if value is not None and value != batch:
                raise ToolchainError(f"the ONNX has a static batch of {batch}, --{name.replace('_', '-')} {value} cannot apply",
                                     hint="export with a dynamic batch axis, or leave the batch options out")
        lo = opt = hi = batch
    else:
        lo = options.min_batch or DEFAULT_MIN_BATCH
        hi = options.max_batch or max(DEFAULT_MAX_BATCH, lo, options.opt_batch or 0)
        opt = options.opt_batch or hi
        if not lo <= opt <= hi:
            raise ToolchainError(f"batch profile must satisfy min <= opt <= max, got {lo} / {opt} / {hi}")
    return Profile((lo, *rest), (opt, *rest), (hi, *rest))


# --------------------------------------------------------------------------- engine <-> this machine


@dataclass
class CompatReport:
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def check_engine_compat(manifest: dict, *, tensorrt_version: str, compute_capability,
                        gpu_name: str | None = None, flavour: str = FULL) -> CompatReport:
    """Can an engine with this manifest run here? All checks run; the report lists every problem.

    TensorRT engines are tied to the TensorRT release (major.minor.patch) and the
    GPU's compute capability they were built with (this toolchain builds neither
    version- nor hardware-compatible engines). A different GPU model of the same
    compute capability runs, possibly with non-optimal tactics: a note.

    A TensorRT-RTX engine (``environment.flavour``) needs the same TensorRT-RTX release and a GPU
    among its targets (RTX compiles it for the GPU at load time), whatever GPU built it (usually none).
    """
    report = CompatReport()
    env = manifest.get("environment", {})
    built_flavour = manifest_flavour(manifest)
    if built_flavour.name != flavour:
        here = "TensorRT-RTX" if flavour == RTX else "the full TensorRT"
        report.problems.append(f"the engine was built by {built_flavour.label}; this runtime is {here} "
                               f"{tensorrt_version}")
        return report
    if built_flavour.rtx:
        if parse_version(built_flavour.version)[:3] != parse_version(tensorrt_version)[:3]:
            report.problems.append(f"the engine was built with {built_flavour.label}, this is TensorRT-RTX "
                                   f"{tensorrt_version}")
        targets = (manifest.get("build") or {}).get("compute_capabilities") or []
        problem = rtx_gpu_problem(compute_capability, targets) if compute_capability else "no CUDA GPU here"
        if problem:
            report.problems.append(problem + (f" ({gpu_name})" if gpu_name else ""))
        return report
    built_trt = env.get("tensorrt")
    if not built_trt:
        report.problems.append("the manifest records no TensorRT version")
    else:
        built, here_trt = parse_version(built_trt), parse_version(tensorrt_version)
        if (manifest.get("build") or {}).get("version_compatible"):
            # Version-compatible engines run on the same or a later TensorRT of the same major.
            if built[0] != here_trt[0] or here_trt < built:
                report.problems.append(f"the version-compatible engine was built with TensorRT {built_trt}, which runs "
                                       f"on TensorRT {built[0]}.x from {built_trt} on; this is TensorRT {tensorrt_version}")
            elif built != here_trt:
                report.notes.append(f"version-compatible engine built with TensorRT {built_trt}, running on {tensorrt_version}")
        elif built[:3] != here_trt[:3]:
            report.problems.append(f"the engine was built with TensorRT {built_trt}, this is TensorRT {tensorrt_version}")
        elif built != here_trt:
            report.notes.append(f"TensorRT build number differs ({built_trt} vs {tensorrt_version})")
    built_cc = (env.get("gpu") or {}).get("compute_capability")
    if not built_cc:
        report.problems.append("the manifest records no GPU compute capability")
    else:
        here = compute_capability_str(compute_capability)
        if compute_capability_str(built_cc) != here:
            report.problems.append(f"the engine was built for compute capability {built_cc} "
                                   f"({(env.get('gpu') or {}).get('name', 'unknown GPU')}), this GPU is {here}"
                                   + (f" ({gpu_name})" if gpu_name else ""))
    built_gpu = (env.get("gpu") or {}).get("name")
    if gpu_name and built_gpu and gpu_name != built_gpu and report.ok:
        report.notes.append(f"built on {built_gpu}, running on {gpu_name} (same compute capability)")
    return report


def require_engine_compat(manifest: dict, engine_path, **kwargs) -> CompatReport:
    report = check_engine_compat(manifest, **kwargs)
    if not report.ok:
        raise ToolchainError(f"engine {engine_path} cannot run here: " + "; ".join(report.problems),
                             hint="rebuild it on this machine with `toolchain build --force`")
    return report


def check_input_shapes(inputs: list[dict], feed_shapes: dict[str, tuple]) -> None:
    """Every engine input fed once, with a shape inside its profile; one error listing all problems.

    ``inputs``: the manifest's ``io.inputs`` (name, shape with -1 for dynamic axes,
    profile {min, opt, max}).
    """
    problems = []
    known = {spec["name"]: spec for spec in inputs}
    for name in feed_shapes:
        if name not in known:
            problems.append(f"unknown input {name!r} (the engine's inputs: {', '.join(known)})")
    for name, spec in known.items():
        if name not in feed_shapes:
            problems.append(f"input {name!r} is missing from the feed")
            continue
        shape = tuple(int(d) for d in feed_shapes[name])
        profile = spec.get("profile")
        if profile is None:
            expected = tuple(spec["shape"])
            if len(shape) != len(expected) or any(e != -1 and e != s for e, s in zip(expected, shape)):
                problems.append(f"input {name!r} has shape {shape}, the engine expects {expected}")
            continue
        lo, hi = tuple(profile["min"]), tuple(profile["max"])
        if len(shape) != len(lo):
            problems.append(f"input {name!r} has rank {len(shape)} {shape}, the engine expects rank {len(lo)}")
        elif any(s < a or s > b for s, a, b in zip(shape, lo, hi)):
            problems.append(f"input {name!r} has shape {shape}, outside the optimization profile "
                            f"[min {lo}, max {hi}] (opt {tuple(profile['opt'])})")
    if problems:
        raise ToolchainError("; ".join(problems), hint="feed shapes inside the profile the engine was built with "
                             "(rebuild with other --min-batch/--max-batch to change it)")
