"""A bundle's checksums: the sha256 of every file, recorded in the manifest by the writer and
checked by the reader before anything else is read (a truncated, partial or altered bundle is
refused before a parser sees its bytes)."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from pathlib import Path

from feature_store.errors import BundleError

from .layout import MANIFEST

_CHUNK = 1 << 20


def sha256_file(path: Path) -> str:
    """The hex sha256 of the file ``path``, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def bundle_files(root: Path) -> list[str]:
    """Every file of the bundle folder ``root`` but the manifest, as relative POSIX paths, sorted."""
    return sorted(
        path.relative_to(root).as_posix()
        for path in root.rglob("*")
        if path.is_file() and path.relative_to(root).as_posix() != MANIFEST
    )


def file_checksums(root: Path) -> dict[str, str]:
    """Relative path → sha256 of every file of the bundle folder ``root`` but the manifest."""
    return {name: sha256_file(root / name) for name in bundle_files(root)}


def verify_checksums(root: Path, expected: Mapping[str, str]) -> None:
    """Check every file the manifest lists against its sha256: a missing file or one whose bytes
    differ raises :class:`~feature_store.errors.BundleError` naming it (``check`` is
    ``missing_file`` or ``checksum``). Files the manifest does not list are not read."""
    for name in expected:
        if name.startswith("/") or ".." in name.split("/") or name == MANIFEST:
            raise BundleError(
                f"bundle {root.name}: its manifest lists {name!r}, not a file of the bundle",
                check="manifest",
            )
    missing = [name for name in sorted(expected) if not (root / name).is_file()]
    if missing:
        more = f" and {len(missing) - 1} more" if len(missing) > 1 else ""
        raise BundleError(
            f"bundle {root.name} is partial: {missing[0]}{more} listed in its manifest is missing",
            check="missing_file",
        )
    for name in sorted(expected):
        try:
            actual = sha256_file(root / name)
        except OSError as exc:
            raise BundleError(
                f"bundle {root.name}: {name} cannot be read: {exc}", check="missing_file"
            ) from exc
        if actual != expected[name]:
            raise BundleError(
                f"bundle {root.name}: checksum mismatch in {name} (sha256 {actual[:12]}…, "
                f"the manifest says {expected[name][:12]}…)",
                check="checksum",
            )
