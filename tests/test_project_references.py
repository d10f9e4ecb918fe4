"""The repository speaks for itself: no tracked text file refers to material that does not
ship with it (private protocol notes and their experiment ids, papers by file number,
issue numbers, people, or paths of the machine something was run on).

Papers are cited by authors, year and title; the papers' experiments are described in
docs/experiments.md. The patterns are assembled from pieces so that this file does not
match them itself.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

FORBIDDEN = {
    "private protocol notes": re.compile("(?i)proto" + "cols"),
    "a paper by file number": re.compile(r"\b[Pp]apers? " + r"0\d\d\b"),
    "a person instead of the project": re.compile(r"\bthe " + r"lead\b"),
    "an unpublished design document": re.compile(r"\bdesign " + r"card\b"),
    "an issue number": re.compile(r"\b[Ii]ssue " + r"#?\d"),
    "a path of the machine it ran on": re.compile(r"(?<![\w.~-])/(?:tmp|work|root)" + r"/"),
    "a path into unshipped notes": re.compile(r"\bshared" + r"/"),
    "a protocol id": re.compile(r"\bA" + r"[1-7]\b"),
}

# Embedded images (data URIs in the committed HTML report) are not text.
DATA_URI = re.compile(r"data:[\w/+.-]+;base64,[A-Za-z0-9+/=]+")


def tracked_text_files() -> list[Path]:
    """Every file git tracks that decodes as UTF-8 text without NUL bytes."""
    out = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True,
                         check=True).stdout.decode()
    files = []
    for name in filter(None, out.split("\0")):
        path = ROOT / name
        try:
            data = path.read_bytes()
        except OSError:       # deleted in the working tree, not yet committed
            continue
        if b"\0" in data:
            continue
        try:
            data.decode("utf-8")
        except UnicodeDecodeError:
            continue
        files.append(path)
    return files


def find_references(text: str) -> list[tuple[int, str, str]]:
    """(line number, what is referred to, the line) for every forbidden reference."""
    hits = []
    for number, line in enumerate(text.splitlines(), start=1):
        line = DATA_URI.sub("", line)
        for what, pattern in FORBIDDEN.items():
            if pattern.search(line):
                hits.append((number, what, line.strip()[:120]))
    return hits


needs_git = pytest.mark.skipif(
    shutil.which("git") is None or not (ROOT / ".git").exists(),
    reason="not a git checkout")


@needs_git
def test_no_tracked_file_refers_to_unshipped_material():
    files = tracked_text_files()
    assert len(files) > 50            # the listing worked: the tree has many text files
    problems = [f"{path.relative_to(ROOT)}:{number}: {what}: {line}"
                for path in files
                for number, what, line in find_references(path.read_text(encoding="utf-8"))]
    assert not problems, "references to material that does not ship:\n" + "\n".join(problems)


@pytest.mark.parametrize("line", [
    "# PROTO" "COLS A" "4 (paper 0" "00 section 6.3.1)",
    "see Paper 0" "03, Table 6",
    "resolved by the l" "ead, 58f9b31",
    "as the design c" "ard asks",
    "Issue " "4: none / L2",
    "robench run x.toml --out /t" "mp/bench/x",
    "OMP_NUM_THREADS=1 robench run /wo" "rk/main/benchmarks/x.toml",
    "`/wo" "rk/sha" "red/PROTO" "COLS.md`",
    "the first-layer filters (A" "7)",
])
def test_each_kind_of_reference_is_caught(line):
    assert find_references(line), line


@pytest.mark.parametrize("line", [
    "Galloway, Tanay & Taylor (2018), Adversarial Training Versus Weight Decay",
    "robench run benchmarks/cifar_l0_small.toml --out runs/bench/cifar_l0_small",
    "a leading zero; the " "leader board; issues are reported",  # one string, split here
    "eps = 0.003 on 1,000 images; cells A10 and B4",
    '<img src="data:image/png;base64,iVBOR+A1/xyz+A4/=">',
    "the shared model cache; ~/tmp/x and ./work/y are relative",
])
def test_ordinary_text_passes(line):
    assert not find_references(line), find_references(line)
