"""Write EIF files: a general streaming writer and the local sample image.

The writer lays sections out the way nitro-cli does: back to back after the
548-byte header, each behind its 12-byte section header, with the header's
offset table pointing at the section headers. It streams every payload, so
it can write an image of any size in bounded memory.
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
import tempfile
import zlib
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from enclave.eif import (
    CRC_OFFSET,
    CURRENT_VERSION,
    HEADER_FORMAT,
    HEADER_SIZE,
    MAGIC,
    MAX_SECTIONS,
    SECTION_HEADER_FORMAT,
    SECTION_HEADER_SIZE,
    SectionType,
)

# nitro-cli's defaults for an image's boot settings.
DEFAULT_MEM = 1 << 30
DEFAULT_CPUS = 2
# The sample's metadata carries this build time so its bytes never change.
SAMPLE_BUILD_TIME = "2025-06-01T00:00:00+00:00"
SAMPLE_NOTARY_VERSION = "v0.1.0-alpha.12"


@dataclass(frozen=True)
class SectionSource:
    """A section to write: its type code, payload size and payload chunks.

    The type is an int so that tests can write codes the format does not
    define.
    """

    type: int
    size: int
    chunks: Iterable[bytes]

    @classmethod
    def from_bytes(cls, section_type: int, payload: bytes) -> SectionSource:
        return cls(int(section_type), len(payload), (payload,))


def write_eif(
    path: Path,
    *,
    sections: Sequence[SectionSource | tuple[int, bytes]],
    default_mem: int = DEFAULT_MEM,
    default_cpus: int = DEFAULT_CPUS,
    flags: int = 0,
    version: int = CURRENT_VERSION,
) -> Path:
    """Write an EIF with these sections in order and a correct CRC32.

    The file appears at `path` only once complete: the writer fills a
    temporary file beside it and renames it. Raise ValueError for more than
    32 sections or a source whose chunks do not add up to its size.
    """
    sources = [
        item if isinstance(item, SectionSource) else SectionSource.from_bytes(*item)
        for item in sections
    ]
    if len(sources) > MAX_SECTIONS:
        raise ValueError(
            f"{len(sources)} sections given; an EIF has at most {MAX_SECTIONS}"
        )
    header = header_bytes(
        sources,
        default_mem=default_mem,
        default_cpus=default_cpus,
        flags=flags,
        version=version,
    )
    path = Path(path)
    descriptor, temporary = tempfile.mkstemp(
        prefix=f".{path.name}.", suffix=".tmp", dir=path.parent
    )
    try:
        with os.fdopen(descriptor, "wb") as stream:
            # The CRC32 covers the header up to its own field, then every
            # section header and payload in file order.
            crc = zlib.crc32(header[:CRC_OFFSET])
            stream.write(header)
            for index, source in enumerate(sources):
                crc = _write_section(stream, index, source, crc)
            stream.seek(CRC_OFFSET)
            stream.write(struct.pack(">I", crc))
        # mkstemp creates the file as 0600; an EIF is not secret.
        os.chmod(temporary, 0o644)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return path


def header_bytes(
    sources: Sequence[SectionSource],
    *,
    default_mem: int,
    default_cpus: int,
    flags: int,
    version: int,
    crc32: int = 0,
) -> bytes:
    """Return the 548-byte header for sections laid out back to back."""
    offsets = [0] * MAX_SECTIONS
    sizes = [0] * MAX_SECTIONS
    position = HEADER_SIZE
    for index, source in enumerate(sources):
        offsets[index] = position
        sizes[index] = source.size
        position += SECTION_HEADER_SIZE + source.size
    return struct.pack(
        HEADER_FORMAT,
        MAGIC,
        version,
        flags,
        default_mem,
        default_cpus,
        0,
        len(sources),
        *offsets,
        *sizes,
        0,
        crc32,
    )


def _write_section(stream: object, index: int, source: SectionSource, crc: int) -> int:
    write = stream.write  # type: ignore[attr-defined]
    section_header = struct.pack(SECTION_HEADER_FORMAT, source.type, 0, source.size)
    write(section_header)
    crc = zlib.crc32(section_header, crc)
    written = 0
    for chunk in source.chunks:
        write(chunk)
        crc = zlib.crc32(chunk, crc)
        written += len(chunk)
    if written != source.size:
        raise ValueError(
            f"section {index} declared {source.size} bytes but its chunks hold "
            f"{written}"
        )
    return crc


def filler(seed: str, size: int) -> Iterator[bytes]:
    """Yield `size` deterministic pseudo-random bytes in chunks of up to 1 MiB.

    The first chunk is SHA-512 in counter mode over `seed`; each later chunk
    repeats it behind its 8-byte chunk number. The bytes are cheap to make
    and do not compress, so they stand in for kernel and ramdisk content.
    """
    block_size = 1 << 20
    digests = []
    for counter in range(-(-min(size, block_size) // 64)):
        digests.append(hashlib.sha512(f"{seed}:{counter}".encode()).digest())
    block = b"".join(digests)
    remaining = size
    number = 0
    while remaining:
        chunk = block if number == 0 else number.to_bytes(8, "big") + block[8:]
        chunk = chunk[: min(block_size, remaining)]
        remaining -= len(chunk)
        number += 1
        yield chunk


def sample_metadata(version: str) -> dict[str, object]:
    """Return the sample's metadata, in the shape nitro-cli writes."""
    return {
        "ImageName": "notary-sample",
        "ImageVersion": version,
        "BuildMetadata": {
            "BuildTime": SAMPLE_BUILD_TIME,
            "BuildTool": "notary-fleet enclave.sample",
            "BuildToolVersion": "1",
            "OperatingSystem": "none",
            "KernelVersion": "none",
        },
        "DockerInfo": {},
        "CustomMetadata": {
            "sample": True,
            "notary_version": SAMPLE_NOTARY_VERSION,
            "note": "sample image for local rehearsal; it does not boot on Nitro",
        },
    }


def write_sample_eif(path: Path, *, version: str) -> Path:
    """Write the sample EIF: small, deterministic, valid, and not bootable.

    Its kernel and ramdisks are filler bytes, so it does not boot on Nitro;
    its metadata sets `"sample": true` so that a bake for `target: aws`
    rejects it. The same version always gives the same bytes.
    """
    notice = b"notary-fleet sample EIF: not a kernel, does not boot on Nitro\n"
    kernel = notice + b"".join(filler(f"sample-kernel-{version}", 32 * 1024))
    cmdline = b"reboot=k panic=30 pci=off nomodules console=ttyS0 sample=true"
    metadata = json.dumps(sample_metadata(version), sort_keys=True).encode()
    bootstrap = b"".join(filler(f"sample-bootstrap-{version}", 16 * 1024))
    application = b"".join(filler(f"sample-application-{version}", 16 * 1024))
    sections: list[tuple[int, bytes]] = [
        (SectionType.KERNEL, kernel),
        (SectionType.CMDLINE, cmdline),
        (SectionType.METADATA, metadata),
        (SectionType.RAMDISK, bootstrap),
        (SectionType.RAMDISK, application),
    ]
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    return write_eif(path, sections=sections)
