"""`make docs`: the HTML API reference builds from the docstrings without a warning.

pdoc imports every module, so a module that fails to import, an annotation it cannot
evaluate, or a docstring it cannot read shows up here as a warning. It builds in a fresh
interpreter, as `make docs` does, so that what other tests imported or which warning
filters pytest set cannot change what pdoc reports. A reference in a docstring to a deepmat
object that does not exist (renamed, moved, removed) is no warning to pdoc, which just
leaves it unlinked; the last test finds those.
"""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("pdoc", reason="pdoc is not installed (pip install -e '.[dev]')")

SRC = Path(__file__).resolve().parents[1] / "src"


def _module_specs() -> list[str]:
    """pdoc's module arguments, as the Makefile's `docs` target builds them.

    pdoc walks only into the submodules that a package's ``__all__`` names, so every public
    module is named; ``!<package>\\.`` after each package drops what pdoc found under it by
    itself (in a package without ``__all__``), which it would warn about as named twice.
    """
    specs = []
    for path in sorted(SRC.glob("deepmat/**/*.py")):
        name = ".".join(path.relative_to(SRC).with_suffix("").parts)
        if name.endswith(".__init__"):
            package = name.removesuffix(".__init__")
            if "._" not in package:
                specs += [package, "!" + re.escape(package + ".")]
        elif "._" not in name:
            specs.append(name)
    return specs


@pytest.fixture(scope="module")
def built_docs(tmp_path_factory):
    out = tmp_path_factory.mktemp("api")
    command = [sys.executable, "-m", "pdoc", "--docformat", "restructuredtext", "--math"]
    result = subprocess.run(
        [*command, "-o", str(out), *_module_specs()],
        capture_output=True,
        text=True,
        env={**os.environ, "PDOC_ALLOW_EXEC": "1"},
        timeout=300,
    )
    return out, result


def test_docs_build_without_warnings(built_docs):
    _, result = built_docs
    assert result.returncode == 0, result.stderr
    # pdoc prints every warning (import errors, missing modules, unresolvable annotations)
    # to stderr and otherwise prints nothing there
    assert result.stderr.strip() == "", result.stderr


def test_docs_have_the_main_pages(built_docs):
    out, result = built_docs
    assert result.returncode == 0, result.stderr
    for page in ["deepmat.html", "deepmat/train.html", "deepmat/models.html", "deepmat/data.html"]:
        assert (out / page).is_file(), page
    assert "fit_network" in (out / "deepmat" / "train.html").read_text()


def test_docstring_references_to_deepmat_resolve(built_docs):
    """Every ``deepmat.…`` name in a docstring (``:class:`~deepmat.x.Y```, ``deepmat.x.y()``)
    is linked to its documentation: pdoc links every one it finds and leaves the rest as code."""
    out, result = built_docs
    assert result.returncode == 0, result.stderr
    unlinked = re.compile(r"<code>~?(deepmat(?:\.\w+)+)(?:\(\))?</code>")
    missing = sorted(
        f"{page.relative_to(out)}: {name}"
        for page in out.rglob("*.html")
        for name in unlinked.findall(page.read_text())
    )
    assert not missing, "docstrings refer to objects that are not documented:\n" + "\n".join(
        missing
    )
