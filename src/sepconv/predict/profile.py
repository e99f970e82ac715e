"""The latency profile: what a calibration measured on one machine and backend, as a JSON file.

A profile holds the machine (:func:`sepconv.bench.environment`), the backend, its runtime's
version and thread count, the fusions found, the fixed cost of one call, and every measured
kernel with its seconds in each variant (eager PyTorch: NCHW and channels-last). It is read as
untrusted input: every field is checked for type and range, and a SHA-256 of the contents
(written last) must match, so that a file edited, truncated or mixed from two runs is refused
with a message that says which file and what to do, never used. :meth:`Profile.check_here`
refuses a profile of another machine, backend, runtime version or thread count.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sepconv.predict.kernels import Kernel
from sepconv.predict.profile_checks import Checker, ProfileError, no_constant
from sepconv.predict.regression import KernelRegressor, fits_slopes
from sepconv.utils.files import write_text
from sepconv.utils.validation import finite_number

__all__ = ["FORMAT", "Profile", "ProfileError", "machine_record"]

FORMAT = "sepconv-latency-profile"
#: The format version written; version 1 (before ``kernel_scale``) is still read, its kernels
#: taken as timed alone.
VERSION = 2
READ_VERSIONS = (1, 2)
#: The facts of the machine record that must match where a profile is used.
MATCHED = ("cpu", "logical_cpus", "cpu_capability", "torch", "gpu", "runtime_version")
MAX_SAMPLES = 200_000
_REQUIRED = (
    "backend",
    "device",
    "threads",
    "machine",
    "variants",
    "fusions",
    "fusion_tests",
    "call_s",
    "module_call_s",
    "budget_s",
    "elapsed_s",
    "samples",
    "sha256",
)


def runtime_version(backend: str) -> str:
    """The version of the package that runs ``backend`` (PyTorch's for eager)."""
    if backend == "onnxruntime":
        import onnxruntime

        return str(onnxruntime.__version__)
    if backend == "openvino":
        import openvino

        return str(openvino.__version__)
    import torch

    return str(torch.__version__)


def machine_record(backend: str, threads: int) -> dict[str, Any]:
    """This machine as a profile records it: :func:`sepconv.bench.environment` and the
    backend runtime's version."""
    from sepconv.bench.timing import environment

    return {**environment(threads), "runtime_version": runtime_version(backend)}


@dataclass(frozen=True)
class Profile:
    """A calibration's measurements (see the module doc).

    Attributes:
        backend: The backend (a name of :data:`sepconv.deploy.registry.BACKEND_TABLE`).
        device: ``"cpu"`` or ``"cuda"``.
        threads: Intra-op threads every kernel was timed with.
        machine: :func:`machine_record` of the machine it was measured on.
        variants: The variants each kernel was timed in (``("nchw", "nhwc")``, ``("native",)``).
        fusions: The fused pairs found (``"conv+relu6"``, ``"conv+add"``...).
        fusion_tests: Every fusion test case's times and verdict.
        call_s: Variant -> seconds of one call of the runtime on no work (added once a model).
        module_call_s: Variant -> the cost of one module call beyond its kernels, which an
            eager runtime pays for every module a model calls, fitted on whole networks
            (0 for a runtime that runs a graph).
        kernel_scale: Variant -> the factor by which a model's kernels, predicted from their
            times alone, are multiplied, fitted on the same whole networks (1 for a runtime
            that runs a graph, and for profiles written before it was fitted).
        samples: ``(kernel, {variant: seconds})`` for every measured kernel.
        budget_s: The calibration's budget; ``elapsed_s``: what it took.
        other_cpu_share: Share of the machine other processes used while it measured.
        validation: Held-out errors of the kernel predictor during calibration.
        created: When it was made (ISO 8601).
    """

    backend: str
    device: str
    threads: int
    machine: Mapping[str, Any]
    variants: tuple[str, ...]
    fusions: tuple[str, ...]
    fusion_tests: tuple[Mapping[str, Any], ...]
    call_s: Mapping[str, float]
    module_call_s: Mapping[str, float]
    samples: tuple[tuple[Kernel, Mapping[str, float]], ...]
    budget_s: float
    elapsed_s: float
    kernel_scale: Mapping[str, float] = field(default_factory=dict)
    other_cpu_share: float | None = None
    validation: Mapping[str, Any] = field(default_factory=dict)
    created: str = ""
    _regressors: dict[str, KernelRegressor] = field(default_factory=dict, compare=False, repr=False)

    def regressor(self, variant: str) -> KernelRegressor:
        """The kernel predictor of ``variant`` (built once)."""
        if variant not in self._regressors:
            kernels = [k for k, _ in self.samples]
            self._regressors[variant] = KernelRegressor(
                kernels, [t[variant] for _, t in self.samples], fits_slopes(self.backend)
            )
        return self._regressors[variant]

    def scale(self, variant: str) -> float:
        """:attr:`kernel_scale` of ``variant`` (1 where the profile fitted none)."""
        return float(self.kernel_scale.get(variant, 1.0))

    @property
    def reference_s(self) -> float | None:
        """The reference network's typical seconds in the calibration
        (:mod:`sepconv.predict.speed`); ``None`` for a profile made before it was timed."""
        speed = self.validation.get("speed")
        typical = speed.get("typical_s") if isinstance(speed, Mapping) else None
        if isinstance(typical, bool) or not isinstance(typical, (int, float)):
            return None
        return float(typical) if math.isfinite(typical) and typical > 0 else None

    def at_speed(self, factor: float) -> Profile:
        """This profile predicting a machine ``factor`` times slower than in its calibration
        (the reference network's time over :attr:`reference_s`, :mod:`sepconv.predict.speed`):
        every time it predicts, multiplied."""
        finite_number("factor", factor, low=0.01, high=100.0)
        return dataclasses.replace(
            self,
            call_s={v: factor * s for v, s in self.call_s.items()},
            module_call_s={v: factor * s for v, s in self.module_call_s.items()},
            kernel_scale={v: factor * self.scale(v) for v in self.variants},
        )

    @property
    def kernel_timing(self) -> str:
        """How the kernels were timed: ``"profiler"`` (ONNX Runtime's own node durations,
        :mod:`sepconv.predict.ort_profiler`) or ``"outside"`` (a call timed from outside, as
        every profile before the profiler was)."""
        return "profiler" if self.validation.get("kernel_timing") == "profiler" else "outside"

    def describe(self) -> str:
        """``"onnxruntime on AMD EPYC (2 threads), 2,345 kernels"`` (and ``", timed by its
        profiler"`` for a calibration with ``profiler=True``)."""
        profiled = self.kernel_timing == "profiler"
        return (
            f"{self.backend} on {self.machine.get('cpu', '?')} ({self.threads} thread"
            f"{'s' if self.threads != 1 else ''}), {len(self.samples):,} kernels"
            + (", timed by its profiler" if profiled else "")
        )

    def check_here(
        self, *, backend: str | None = None, threads: int | None = None, source: str = "profile"
    ) -> None:
        """Refuse a profile measured elsewhere: another backend or thread count than asked
        for, or a machine record that differs from this machine's in :data:`MATCHED`."""
        if backend is not None and backend != self.backend:
            raise ProfileError(
                f"{source} was calibrated for backend {self.backend!r}, not {backend!r}; "
                f"calibrate one with `sepconv calibrate --backend {backend}`."
            )
        if threads is not None and threads != self.threads:
            raise ProfileError(
                f"{source} was calibrated with {self.threads} thread(s), not {threads}; "
                f"calibrate one with `--threads {threads}`."
            )
        here = machine_record(self.backend, self.threads)
        differ = [k for k in MATCHED if self.machine.get(k) != here.get(k)]
        if differ:
            shown = "; ".join(
                f"{k}: {self.machine.get(k)!r} there, {here.get(k)!r} here" for k in differ
            )
            raise ProfileError(
                f"{source} was calibrated on another machine or runtime ({shown}); latencies "
                "measured there do not hold here: run `sepconv calibrate` on this machine."
            )

    def to_dict(self) -> dict[str, Any]:
        """The JSON object of the file, with its checksum."""
        body = {
            "format": FORMAT,
            "version": VERSION,
            "backend": self.backend,
            "device": self.device,
            "threads": self.threads,
            "machine": dict(self.machine),
            "variants": list(self.variants),
            "fusions": list(self.fusions),
            "fusion_tests": [dict(t) for t in self.fusion_tests],
            "call_s": dict(self.call_s),
            "module_call_s": dict(self.module_call_s),
            "kernel_scale": {v: self.scale(v) for v in self.variants},
            "budget_s": self.budget_s,
            "elapsed_s": self.elapsed_s,
            "other_cpu_share": self.other_cpu_share,
            "validation": dict(self.validation),
            "created": self.created,
            "samples": [{"kernel": k.to_dict(), "seconds": dict(t)} for k, t in self.samples],
        }
        return {**body, "sha256": _digest(body)}

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the profile to ``path`` atomically (one sample a line)."""
        data = self.to_dict()
        samples = data.pop("samples")
        head = json.dumps(data, indent=1)[:-2]
        lines = ",\n  ".join(json.dumps(s, separators=(",", ":")) for s in samples)
        return write_text(Path(path), f'{head},\n "samples": [\n  {lines}\n ]\n}}\n')

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Profile:
        """Read and check a profile file; :class:`ProfileError` saying what is wrong."""
        file = Path(path)
        if not file.is_file():
            raise ProfileError(
                f"Profile file {str(file)!r} does not exist; make one with `sepconv calibrate "
                "--out PROFILE.json`."
            )
        try:
            data = json.loads(file.read_text(encoding="utf-8"), parse_constant=no_constant)
        except (UnicodeDecodeError, json.JSONDecodeError) as err:
            raise ProfileError(
                f"Profile file {str(file)!r} is not valid JSON ({err}); it may be truncated: "
                "calibrate again."
            ) from err
        return cls.from_dict(data, source=f"Profile file {str(file)!r}")

    @classmethod
    def from_dict(cls, data: object, *, source: str = "profile") -> Profile:
        """The profile a :meth:`to_dict` object describes, checked field by field."""
        check = Checker(source)
        obj = check.mapping(data, "the file")
        if obj.get("format") != FORMAT:
            raise ProfileError(f"{source} is not a sepconv latency profile (no format {FORMAT!r}).")
        if obj.get("version") not in READ_VERSIONS:
            raise ProfileError(
                f"{source} has format version {obj.get('version')!r}; this "
                f"sepconv reads versions {', '.join(map(str, READ_VERSIONS))}: calibrate again."
            )
        missing = [k for k in _REQUIRED if k not in obj]
        if missing:
            raise ProfileError(
                f"{source} lacks {', '.join(missing)}: it is damaged or not a "
                "profile of this sepconv; calibrate again."
            )
        body = {k: v for k, v in obj.items() if k != "sha256"}
        if obj.get("sha256") != _digest(body):
            raise ProfileError(
                f"{source} does not match its checksum: it was modified or damaged after "
                "calibration; calibrate again rather than edit a profile."
            )
        variants = tuple(
            check.string(v, "variants") for v in check.sequence(obj["variants"], "variants")
        )
        if not variants:
            raise ProfileError(f"{source}: `variants` is empty.")
        samples = []
        for item in check.sequence(obj["samples"], "samples", MAX_SAMPLES):
            entry = check.mapping(item, "a sample")
            kernel = check.kernel(entry.get("kernel"))
            seconds = check.mapping(entry.get("seconds"), "a sample's seconds")
            times = {v: check.seconds(seconds.get(v), f"seconds[{v!r}]") for v in variants}
            samples.append((kernel, times))
        call = check.mapping(obj["call_s"], "call_s")
        per_module = check.mapping(obj["module_call_s"], "module_call_s")
        # Absent in profiles written before whole networks fitted it: the kernels as predicted.
        scales = check.mapping(obj.get("kernel_scale", {}), "kernel_scale")
        share = obj.get("other_cpu_share")
        return cls(
            backend=check.string(obj["backend"], "backend"),
            device=check.string(obj["device"], "device"),
            threads=check.integer(obj["threads"], "threads", 1, 1024),
            machine=check.mapping(obj["machine"], "machine"),
            variants=variants,
            fusions=tuple(
                check.string(f, "fusions") for f in check.sequence(obj["fusions"], "fusions")
            ),
            fusion_tests=tuple(
                check.mapping(t, "fusion_tests")
                for t in check.sequence(obj["fusion_tests"], "fusion_tests")
            ),
            call_s={v: check.seconds(call.get(v), f"call_s[{v!r}]") for v in variants},
            module_call_s={
                v: check.seconds(per_module.get(v), f"module_call_s[{v!r}]") for v in variants
            },
            kernel_scale={
                v: check.factor(scales[v], f"kernel_scale[{v!r}]") for v in variants if v in scales
            },
            samples=tuple(samples),
            budget_s=check.seconds(obj["budget_s"], "budget_s"),
            elapsed_s=check.seconds(obj["elapsed_s"], "elapsed_s"),
            other_cpu_share=None if share is None else check.seconds(share, "other_cpu_share"),
            validation=check.mapping(obj.get("validation", {}), "validation"),
            created=check.string(obj.get("created", ""), "created"),
        )


def _digest(body: Mapping[str, Any]) -> str:
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), allow_nan=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def sample_table(samples: Sequence[tuple[Kernel, Mapping[str, float]]]) -> dict[str, int]:
    """How many samples of each kernel kind."""
    counts: dict[str, int] = {}
    for kernel, _ in samples:
        counts[kernel.kind] = counts.get(kernel.kind, 0) + 1
    return counts
