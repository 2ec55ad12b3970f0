"""Repack torchaudio's official wheel without its compiled extensions, for braindecode.

braindecode (the `emg_lens[braindecode]` extra: the parity tests of
`emg_lens.models.from_braindecode`) imports torchaudio. torchaudio's newest release (2.11)
ships C++/CUDA extensions (``torchaudio/lib/*.so``) built against torch 2.11, and loading them
into another torch (this project pins 2.13, `TORCH_SPEC` in the Makefile) fails, so
``import braindecode`` fails. When those files are absent, torchaudio's
``_extension/utils.py::_load_lib`` returns False and torchaudio runs in its pure-Python mode,
which is all braindecode's transformers use.

This script downloads the official wheel with pip (``pip download torchaudio==VERSION
--no-deps``, from the package index pip is configured with), drops ``torchaudio/lib/*.so``,
and writes ``torchaudio-VERSION+nolib-py3-none-any.whl`` (the local version label says what
it is; METADATA, WHEEL and RECORD rewritten to match) into the output folder, then prints
its path. Nothing else in the wheel changes. ``make test`` installs it before
``emg_lens[dev]``; a user whose torch matches torchaudio's build needs none of this (plain
``pip install "emg_lens[braindecode]"``).

    python tools/torchaudio_nolib.py .whl            # -> .whl/torchaudio-2.11.0+nolib-...whl
                                                     #    (kept: a second run downloads nothing)
    python tools/torchaudio_nolib.py .whl --wheel torchaudio-2.11.0-cp311-...whl  # offline
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

VERSION = "2.11.0"
LABEL = "nolib"


def _record_hash(data: bytes) -> str:
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=")
    return f"sha256={digest.decode()}"


def download(version: str, folder: Path) -> Path:
    """The official wheel for this interpreter and platform, via pip (no dependencies)."""
    pip = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps"]
    subprocess.run(
        [*pip, "--only-binary=:all:", "--dest", str(folder), f"torchaudio=={version}"], check=True
    )
    wheels = sorted(folder.glob(f"torchaudio-{version}-*.whl"))
    if len(wheels) != 1:
        sys.exit(f"expected one torchaudio {version} wheel in {folder}, found {wheels}")
    return wheels[0]


def repack(source: Path, out_dir: Path, label: str = LABEL) -> Path:
    """``source`` without ``torchaudio/lib/*.so`` as a ``+label`` py3-none-any wheel."""
    with zipfile.ZipFile(source) as zin:
        names = zin.namelist()
        info_dirs = {n.split("/", 1)[0] for n in names if n.split("/", 1)[0].endswith(".dist-info")}
        if len(info_dirs) != 1:
            sys.exit(f"{source}: expected one .dist-info folder, found {sorted(info_dirs)}")
        old_info = info_dirs.pop()
        version = old_info.removeprefix("torchaudio-").removesuffix(".dist-info")
        new_version = f"{version}+{label}"
        new_info = f"torchaudio-{new_version}.dist-info"
        files: dict[str, bytes] = {}
        for name in names:
            if name.startswith("torchaudio/lib/") and name.endswith((".so", ".pyd", ".dylib")):
                continue  # the compiled extensions: what this repack is for
            if name == f"{old_info}/RECORD" or name.endswith("/"):
                continue
            data = zin.read(name)
            if name == f"{old_info}/METADATA":
                data = data.replace(
                    f"\nVersion: {version}\n".encode(), f"\nVersion: {new_version}\n".encode(), 1
                )
            elif name == f"{old_info}/WHEEL":
                lines = [
                    line
                    for line in data.decode().splitlines()
                    if line.strip() and not line.startswith(("Tag:", "Root-Is-Purelib:"))
                ]
                lines += ["Root-Is-Purelib: true", "Tag: py3-none-any"]
                data = ("\n".join(lines) + "\n").encode()
            files[new_info + name[len(old_info) :] if name.startswith(old_info) else name] = data
    record = [f"{name},{_record_hash(data)},{len(data)}" for name, data in files.items()]
    record.append(f"{new_info}/RECORD,,")
    files[f"{new_info}/RECORD"] = ("\n".join(record) + "\n").encode()
    out_dir.mkdir(parents=True, exist_ok=True)
    target = out_dir / f"torchaudio-{new_version}-py3-none-any.whl"
    partial = target.with_suffix(".partial")
    with zipfile.ZipFile(partial, "w", zipfile.ZIP_DEFLATED) as zout:
        for name, data in files.items():  # a fixed date: the same input gives the same bytes
            info = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))
            zout.writestr(info, data, compress_type=zipfile.ZIP_DEFLATED)
    partial.replace(target)  # never a half-written wheel under the final name
    return target


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out_dir", type=Path, help="folder for the repacked wheel")
    parser.add_argument("--version", default=VERSION, help=f"torchaudio version ({VERSION})")
    parser.add_argument("--wheel", type=Path, help="an official wheel already downloaded")
    args = parser.parse_args()
    done = args.out_dir / f"torchaudio-{args.version}+{LABEL}-py3-none-any.whl"
    if args.wheel is None and done.is_file():
        print(done)  # made by an earlier run: nothing to download
        return
    if args.wheel is not None:
        print(repack(args.wheel, args.out_dir))
        return
    with tempfile.TemporaryDirectory() as tmp:
        print(repack(download(args.version, Path(tmp)), args.out_dir))


if __name__ == "__main__":
    main()
