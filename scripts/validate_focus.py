"""Check a `focus` export with the FinOps Foundation's focus-validator (FOCUS 1.2).

    python scripts/validate_focus.py site_output/periods/2026-11/exports/focus.csv [--junit report.xml]

The validator needs Python >= 3.12 and pyarrow < 21; this project runs on 3.11, so the
validator gets its own virtual environment (`.focus-validator/` at the repository root,
created on first use from the package registry, then reused). This script only needs the
standard library and runs on any Python >= 3.9.

The Python for that environment is, in order: `FOCUS_PYTHON` (must work: no fallback when it
is set), then pyenv's installed versions `$(pyenv root)/versions/3.1[2-9]*/bin/python3`
(oldest first: the validator needs numpy < 2, which has wheels up to Python 3.12 only), then
`python3.12` / `python3.13` on PATH. Every candidate must actually start (a pyenv shim for a
version that is not selected is on PATH but fails).

The validator runs offline (`--block-download`) from its own site-packages directory (it opens
`focus_validator/rules/…` relative to the working directory) and writes JUnit XML. It exits 0
even when rules fail, so this script reads the XML: it prints the rules passed / failed /
skipped, each failing rule's id and requirement, and exits

  0  every rule passed, apart from the InvoiceId pair below;
  1  a rule failed (or errored);
  2  the validator could not run (no Python >= 3.12, install failure, no report written).

The InvoiceId pair. FOCUS 1.2 makes InvoiceId's nullability conditional: it MUST be null when
the charge is not associated with an invoice (InvoiceId-C-004-C) and MUST NOT be null when it
is (InvoiceId-C-005-C). The validator's model cannot express "associated with an invoice",
so it checks both rules unconditionally on every row and combines them with OR in
InvoiceId-C-003-C. Whatever a file holds, one of the two fails: our rows carry no invoice
(IG1 invoices a month, not a day × team × model row), InvoiceId is null, so
InvoiceId-C-005-C fails and InvoiceId-C-004-C passes. The pair is tolerated; its composite
InvoiceId-C-003-C is not (it fails if, e.g., some rows have an InvoiceId and others do not).
"""

from __future__ import annotations

import argparse
import contextlib
import glob
import gzip
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_VENV = ROOT / ".focus-validator"
# Versions that work together (focus-validator 2.2.1 requires Python >= 3.12 and numpy < 2).
REQUIREMENTS = ("focus-validator==2.2.1", "pyarrow==20.0.0")
FOCUS_VERSION = "1.2"
# The InvoiceId nullability pair the validator evaluates both ways: one of them always fails (see above).
INVOICE_ID_PAIR = frozenset({"InvoiceId-C-004-C", "InvoiceId-C-005-C"})
MIN_VERSION = (3, 12)


class SetupError(Exception):
    """The validator could not be found, installed or run (exit 2)."""


def _version(python: str) -> tuple[int, int] | None:
    """The (major, minor) of an interpreter that actually starts, else None."""
    try:
        done = subprocess.run([python, "-c", "import sys; print(*sys.version_info[:2])"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return None
    if done.returncode != 0:
        return None
    try:
        major, minor = (int(part) for part in done.stdout.split())
    except ValueError:
        return None
    return major, minor


def _pyenv_root() -> Path | None:
    pyenv = shutil.which("pyenv")
    if pyenv:
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            done = subprocess.run([pyenv, "root"], capture_output=True, text=True, timeout=30)
            if done.returncode == 0 and done.stdout.strip():
                return Path(done.stdout.strip())
    for candidate in (os.environ.get("PYENV_ROOT"), Path.home() / ".pyenv"):
        if candidate and Path(candidate).is_dir():
            return Path(candidate)
    return None


def _version_key(path: str) -> tuple[int, ...]:
    """Sort key of …/versions/3.12.1/bin/python3: (3, 12, 1)."""
    name = Path(path).parent.parent.name
    return tuple(int(n) for n in re.findall(r"\d+", name)[:3])


def find_python() -> str | None:
    """A Python >= 3.12 that starts, or None. FOCUS_PYTHON, when set, is the only candidate."""
    chosen = os.environ.get("FOCUS_PYTHON")
    if chosen:
        version = _version(chosen)
        if version is None or version < MIN_VERSION:
            found = "does not start" if version is None else f"is {version[0]}.{version[1]}"
            raise SetupError(f"FOCUS_PYTHON={chosen} is not a working Python >= 3.12 (it {found})")
        return chosen
    candidates = []
    root = _pyenv_root()
    if root:
        candidates += sorted(glob.glob(str(root / "versions" / "3.1[2-9]*" / "bin" / "python3")), key=_version_key)
    candidates += [found for name in ("python3.12", "python3.13") if (found := shutil.which(name))]
    for candidate in candidates:
        version = _version(candidate)
        if version is not None and version >= MIN_VERSION:
            return candidate
    return None


def _fingerprint(python: str) -> str:
    return hashlib.sha256(json.dumps([str(Path(python).resolve()), *REQUIREMENTS]).encode()).hexdigest()


@contextlib.contextmanager
def _locked(path: Path):
    """An exclusive lock (two test processes may want the environment at once); a no-op where fcntl is missing."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX
        yield
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def ensure_environment(venv: Path = DEFAULT_VENV, python: str | None = None) -> Path:
    """The validator's virtual environment, created (or re-created when its Python or pins changed) on first use."""
    python = python or find_python()
    if python is None:
        raise SetupError("no Python >= 3.12 found (set FOCUS_PYTHON, or install one with pyenv: `pyenv install 3.12`)")
    marker = venv / ".installed"
    fingerprint = _fingerprint(python)
    with _locked(venv.with_name(venv.name + ".lock")):
        if marker.is_file() and marker.read_text().strip() == fingerprint and (venv / "bin" / "focus-validator").is_file():
            return venv
        print(f"Creating the focus-validator environment in {venv} with {python} ({', '.join(REQUIREMENTS)}); once only.", file=sys.stderr)
        shutil.rmtree(venv, ignore_errors=True)
        steps = ([python, "-m", "venv", str(venv)],
                 [str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", *REQUIREMENTS])
        for step in steps:
            done = subprocess.run(step, capture_output=True, text=True)
            if done.returncode != 0:
                shutil.rmtree(venv, ignore_errors=True)
                raise SetupError(f"`{' '.join(step)}` failed ({done.returncode}):\n{(done.stdout + done.stderr)[-4000:]}")
        marker.write_text(fingerprint + "\n")
    return venv


def _site_packages(venv: Path) -> Path:
    done = subprocess.run([str(venv / "bin" / "python"), "-c", "import focus_validator, os; print(os.path.dirname(os.path.dirname(focus_validator.__file__)))"],
                          capture_output=True, text=True)
    if done.returncode != 0:
        raise SetupError(f"focus_validator does not import in {venv}:\n{done.stderr[-4000:]}")
    return Path(done.stdout.strip())


@dataclass
class Report:
    """What a JUnit report of the validator says, one entry per rule (testcase)."""

    passed: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)  # rule id -> message (failures and errors)

    @property
    def unexpected(self) -> dict[str, str]:
        return {rule: message for rule, message in self.failed.items() if rule not in INVOICE_ID_PAIR}


def read_junit(path: Path) -> Report:
    """Read the validator's JUnit XML: `<testcase name="RuleId :: Check">` with a <failure>, <error> or <skipped> child, or none (passed)."""
    report = Report()
    for case in ET.parse(path).getroot().iter("testcase"):
        rule = case.get("name", "").split(" :: ")[0].strip()
        problem = case.find("failure")
        if problem is None:
            problem = case.find("error")
        if problem is not None:
            kind = "error" if problem.tag == "error" else "failure"
            report.failed[rule] = f"{kind}: {problem.get('message') or (problem.text or '').strip()}"
        elif case.find("skipped") is not None:
            report.skipped.append(rule)
        else:
            report.passed.append(rule)
    return report


def _requirements_text(site_packages: Path) -> dict[str, str]:
    """Each rule's requirement sentence ("MustSatisfy") from the validator's bundled FOCUS model, for readable messages."""
    texts: dict[str, str] = {}
    for model in sorted((site_packages / "focus_validator" / "rules").glob("model-*.json")):
        with contextlib.suppress(OSError, ValueError, AttributeError):
            for rule, body in json.loads(model.read_text(encoding="utf-8")).get("ModelRules", {}).items():
                texts.setdefault(rule, body.get("ValidationCriteria", {}).get("MustSatisfy", ""))
    return texts


def validate(data_file: Path, junit: Path, venv: Path = DEFAULT_VENV) -> Report:
    """Run the validator on `data_file`, write its JUnit XML to `junit` and read it back."""
    data_file, junit = data_file.resolve(), junit.resolve()
    if not data_file.is_file():
        raise SetupError(f"no such file: {data_file}")
    venv = ensure_environment(venv)
    site_packages = _site_packages(venv)
    junit.parent.mkdir(parents=True, exist_ok=True)
    junit.unlink(missing_ok=True)
    command = [str(venv / "bin" / "focus-validator"), "--data-file", str(data_file), "--validate-version", FOCUS_VERSION,
               "--block-download", "--output-type", "unittest", "--output-destination", str(junit)]
    done = subprocess.run(command, cwd=site_packages, capture_output=True, text=True, timeout=900)
    if done.returncode != 0 or not junit.is_file():
        raise SetupError(f"focus-validator exited {done.returncode} without a report:\n{(done.stdout + done.stderr)[-4000:]}")
    report = read_junit(junit)
    texts = _requirements_text(site_packages)
    report.failed = {rule: f"{message} — {texts[rule]}" if texts.get(rule) else message for rule, message in report.failed.items()}
    return report


def summary(report: Report, data_file: Path) -> str:
    lines = [f"FOCUS {FOCUS_VERSION} validation of {data_file}: {len(report.passed)} rules passed, {len(report.failed)} failed, {len(report.skipped)} skipped"]
    for rule, message in sorted(report.failed.items()):
        tolerated = " (tolerated: the InvoiceId pair, one of which always fails)" if rule in INVOICE_ID_PAIR else ""
        lines.append(f"  FAILED {rule}: {message}{tolerated}")
    lines.append("OK: every rule passes but the InvoiceId pair" if not report.unexpected else f"NOT OK: {len(report.unexpected)} rule(s) failed")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("data_file", type=Path, help="a focus.csv export (or focus.csv.gz: a large one is written compressed)")
    parser.add_argument("--junit", type=Path, help="where to keep the validator's JUnit XML (default: a temporary file)")
    parser.add_argument("--venv", type=Path, default=DEFAULT_VENV, help=f"the validator's environment (default: {DEFAULT_VENV})")
    args = parser.parse_args(argv)
    try:
        with tempfile.TemporaryDirectory(prefix="focus-validator-") as scratch:
            junit = args.junit or Path(scratch) / "focus-validator.xml"
            data_file = args.data_file
            if data_file.suffix == ".gz" and data_file.is_file():  # the validator reads plain CSV only
                data_file = Path(scratch) / data_file.stem
                data_file.write_bytes(gzip.decompress(args.data_file.read_bytes()))
            report = validate(data_file, junit, args.venv)
    except (SetupError, subprocess.TimeoutExpired) as problem:
        print(f"validate_focus: {problem}", file=sys.stderr)
        return 2
    print(summary(report, args.data_file))
    return 1 if report.unexpected else 0


if __name__ == "__main__":
    sys.exit(main())
