"""One-request-per-file JSON folded into NDJSON shards: one line per file, the file's name in the line.

LiteLLM's bucket loggers write an object per request; a busy gateway writes a million a day.
Read one by one they cost a reader set-up each; folded, they are a few large files, and the
rejections of a shard's line still name the original file (SOURCE_FILE_FIELD)."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

# A folded shard keeps each record's original file here (the shard itself names no request's source).
SOURCE_FILE_FIELD = "__source_file"
FOLD_SHARD_FILES = 10_000  # files folded into one shard at most
SHARD_PREFIX = "folded-"  # a landed folder's shards: `folded-0001.ndjson`


@dataclass
class FoldedTree:
    files: int = 0  # one-request files folded
    shards: list[str] = field(default_factory=list)  # the shards written, relative to the root
    folded: list[str] = field(default_factory=list)  # the files now held by the shards (for the caller to remove)


def foldable(path: str) -> bytes | None:
    """The file's bytes if it is plainly one non-empty JSON object on one line (UTF-8); None otherwise."""
    try:
        with open(path, "rb") as stream:
            content = stream.read().strip(b" \t\r\n")
        content.decode("utf-8")
    except (OSError, UnicodeDecodeError):
        return None
    if (len(content) < 3 or content[:1] != b"{" or content[-1:] != b"}" or b"\n" in content or b"\r" in content
            or content[1:].lstrip()[:1] == b"}" or b'"data"' in content or content.startswith(b"\xef\xbb\xbf")):
        return None
    return content


def folded_line(content: bytes, source: str) -> bytes:
    """`content` (one JSON object on one line) with its file's name, `source`, as its first field."""
    return b'{"' + SOURCE_FILE_FIELD.encode() + b'":' + json.dumps(source, ensure_ascii=False).encode() + b"," + content[1:] + b"\n"


def write_shard(shard: Path | str, files: list[tuple[str, str]]) -> list[str]:
    """Write each of `files` (its path, the name rejections give it) that is foldable to `shard`, one line each; the paths
    written (the others are left to the per-file reader)."""
    written = []
    with open(shard, "wb") as stream:
        for path, name in files:
            content = foldable(path)
            if content is not None:
                stream.write(folded_line(content, name))
                written.append(path)
    return written


def fold_tree(folder: Path, root: Path, temp: Path) -> FoldedTree:
    """Fold the one-request `.json` files under `folder` (and those without a suffix, as GCS names objects) into shards beside
    them, at most FOLD_SHARD_FILES each; a shard is written under `temp` and renamed into place. Files that are not plainly
    one object on one line are left as they are. Names are relative to `root`, as ingest gives them."""
    result = FoldedTree()
    prefix = f"{root}/"
    for parent, _, names in sorted(os.walk(folder)):  # strings, not Path objects: 200,000 of those cost seconds
        members = sorted(name for name in names if not name.startswith(SHARD_PREFIX) and os.path.splitext(name)[1] in (".json", ""))
        number = 0
        for start in range(0, len(members), FOLD_SHARD_FILES):
            paths = [os.path.join(parent, name) for name in members[start:start + FOLD_SHARD_FILES]]
            staged = temp / f"shard-{os.getpid()}-{number + 1}.ndjson"
            folded = write_shard(staged, [(path, path.removeprefix(prefix)) for path in paths])
            if not folded:
                staged.unlink()
                continue
            number += 1
            shard = os.path.join(parent, f"{SHARD_PREFIX}{number:04d}.ndjson")
            os.replace(staged, shard)
            result.files += len(folded)
            result.shards.append(shard.removeprefix(prefix))
            result.folded += folded
    return result


def remove_shards(folder: Path) -> None:
    """The shards under `folder`: an unmarked folder's are an interrupted fold's, and its objects are landed again."""
    if folder.is_dir():
        for shard in folder.rglob(f"{SHARD_PREFIX}*.ndjson"):
            shard.unlink()
