"""The built wheel builds the site on its own: templates, stylesheet, script and icon ship in it.

The wheel is installed into a fresh virtual environment that borrows this one's installed
dependencies (a path in a .pth file, so this checkout's editable install is not picked up),
and a small demo runs from there, in a folder outside the checkout."""

import os
import shutil
import subprocess
import sys
import sysconfig
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEMO = ["demo", "--days", "3", "--end", "2026-11-20", "--requests-per-day", "60"]


def _build_wheel(tmp_path: Path) -> Path:
    """From a copy of the sources, so the build leaves nothing in the checkout."""
    source = tmp_path / "source"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    shutil.copytree(ROOT / "usage_jobs", source / "usage_jobs", ignore=shutil.ignore_patterns("__pycache__"))
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "--wheel-dir", str(tmp_path / "dist"), str(source)], check=True)
    return next((tmp_path / "dist").glob("usage_jobs-*.whl"))


def _fresh_environment(tmp_path: Path, wheel: Path) -> Path:
    home = tmp_path / "venv"
    venv.create(home, with_pip=False)
    python = home / "bin" / "python"
    site_packages = Path(subprocess.run([python, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
                                        check=True, capture_output=True, text=True).stdout.strip())
    # A plain path line: the .pth files in there (this checkout's editable install among them) are not run.
    (site_packages / "dependencies.pth").write_text(sysconfig.get_path("purelib") + "\n")
    subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps", "--quiet", str(wheel)], check=True)
    return home


def test_the_installed_wheel_builds_the_demo_site(tmp_path):
    home = _fresh_environment(tmp_path, _build_wheel(tmp_path))
    work = tmp_path / "work"
    work.mkdir()
    env = {name: value for name, value in os.environ.items() if not name.startswith(("USAGE_", "IG1_", "GATEWAY_", "DAGSTER_"))}
    env["DAGSTER_HOME"] = str(work / "dagster_home")
    imported = subprocess.run([home / "bin" / "python", "-c", "import usage_jobs; print(usage_jobs.__file__)"],
                              cwd=work, env=env, check=True, capture_output=True, text=True).stdout.strip()
    assert Path(imported).is_relative_to(home), imported  # the wheel's package, not this checkout's

    demo = subprocess.run([home / "bin" / "usage-report", *DEMO], cwd=work, env=env, capture_output=True, text=True)
    assert demo.returncode == 0, demo.stdout + demo.stderr
    site = work / "site_output"
    for name in ("style.css", "report.js", "favicon.svg"):
        assert (site / name).read_bytes() == (ROOT / "usage_jobs" / "report_templates" / name).read_bytes()
    period = site / "periods" / "last-7-days"
    for page in ("index.html", "teams.html", "keys.html", "models.html", "reconciliation.html", "quality.html"):
        html = (period / page).read_text(encoding="utf-8")
        assert '<link rel="stylesheet" href="../../style.css">' in html and "</html>" in html
    assert "Global usage" in (site / "index.html").read_text(encoding="utf-8")
    assert list(period.glob("teams/*.html")) and list(period.glob("charts/*.svg"))
    assert (period / "key.html").is_file() and "window.KEY_DATA = " in (period / "key-data.js").read_text(encoding="ascii")
    assert "window.KEYS_DATA = " in (period / "keys-data.js").read_text(encoding="ascii")  # keys.html's tables
    assert (period / "tag.html").is_file() and (period / "end-user.html").is_file() and not (period / "tags").exists()
    exports = {path.name for path in (period / "exports").iterdir()}
    assert {"daily.csv", "daily.json", "keys.csv", "focus.csv", "reconciliation.csv", "manifest.json"} <= exports
