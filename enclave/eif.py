"""Read an Enclave Image File (EIF) as a stream: validate it and measure it.

The layout follows aws-nitro-enclaves-image-format (src/defs/mod.rs, format
version 4), all integers big-endian:

- a 548-byte header: magic ``.eif``, version u16, flags u16, default_mem u64
  (bytes), default_cpus u64, reserved u16, num_sections u16, 32 u64 section
  offsets, 32 u64 section sizes, unused u32, crc32 u32;
- then the sections back to back, each a 12-byte header (type u16, flags u16,
  size u64) followed by its payload. A section offset points at the section
  header; a section size is the payload size.

PCRs are computed the way nitro-cli does (src/utils/eif_reader.rs): each PCR
is SHA384(48 zero bytes || SHA384(data)), where PCR0 measures every kernel,
cmdline and ramdisk payload in file order, PCR1 the kernel and cmdline
payloads and the first ramdisk, PCR2 the ramdisks after the first, and PCR8
the DER form of the signing certificate in the signature section. The
metadata section is not measured.

The file is read once, in chunks. Reading happens on the calling thread, and
three worker threads hash: one for PCR0 (which also keeps PCR1 until the
second ramdisk starts), one for PCR2 (and PCR1 after that), one for the file's
SHA-256 and the CRC32. hashlib and zlib release the GIL on large buffers, so
the workers run in parallel.
"""

from __future__ import annotations

import base64
import binascii
import enum
import hashlib
import json
import logging
import os
import re
import struct
import zlib
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from infra.errors import UserError

log = logging.getLogger(__name__)

MAGIC = b".eif"
# Versions 2 and later carry a CRC32; version 3 added the signature section
# and version 4 the metadata section. nitro-cli writes version 4.
SUPPORTED_VERSIONS = range(2, 5)
CURRENT_VERSION = 4
MAX_SECTIONS = 32
HEADER_FORMAT = ">4sHHQQHH32Q32QII"
HEADER_SIZE = struct.calcsize(HEADER_FORMAT)
SECTION_HEADER_FORMAT = ">HHQ"
SECTION_HEADER_SIZE = struct.calcsize(SECTION_HEADER_FORMAT)
# The CRC32 field is the header's last 4 bytes.
CRC_OFFSET = HEADER_SIZE - 4
ARCH_ARM64_FLAG = 0x1
PCR_SIZE = 48
# Signature and metadata payloads are read into memory to be parsed. nitro-cli
# writes a few KiB for each, so a payload above 1 MiB marks a damaged file.
MAX_PARSED_SECTION = 1 << 20
DEFAULT_CHUNK_SIZE = 1 << 20
# Chunks handed to the workers and not yet hashed, at most; with 1 MiB chunks
# this keeps the buffers under 16 MiB.
MAX_PENDING = 16


class SectionType(enum.IntEnum):
    """EIF section types; 0 is defined as invalid by the format."""

    KERNEL = 1
    CMDLINE = 2
    RAMDISK = 3
    SIGNATURE = 4
    METADATA = 5


class EifError(UserError):
    """An input file that is not a valid EIF; the message names the file."""


@dataclass(frozen=True)
class Section:
    """One section: its type, where its 12-byte header starts, payload size."""

    type: SectionType
    offset: int
    size: int

    @property
    def name(self) -> str:
        return self.type.name.lower()

    def to_dict(self) -> dict[str, Any]:
        return {"type": self.name, "offset": self.offset, "size": self.size}


@dataclass(frozen=True)
class EifInfo:
    """The layout, measurements and digests from one pass over an EIF.

    PCRs are lower-case hex, as nitro-cli prints them; pcr8 is None for an
    unsigned image. default_mem is in bytes, as the header stores it.
    """

    path: Path
    size: int
    sha256: str
    version: int
    flags: int
    default_mem: int
    default_cpus: int
    crc32: int
    sections: tuple[Section, ...]
    pcr0: str
    pcr1: str
    pcr2: str
    pcr8: str | None
    metadata: dict[str, Any] | None

    @property
    def sample(self) -> bool:
        """Whether the metadata marks this as the local sample image."""
        if self.metadata is None:
            return False
        custom = self.metadata.get("CustomMetadata")
        if isinstance(custom, dict) and custom.get("sample") is True:
            return True
        return self.metadata.get("sample") is True

    @property
    def arm64(self) -> bool:
        return bool(self.flags & ARCH_ARM64_FLAG)

    @property
    def build_time(self) -> str | None:
        """The build time nitro-cli recorded in the metadata, if any."""
        build = (self.metadata or {}).get("BuildMetadata")
        if isinstance(build, dict) and isinstance(build.get("BuildTime"), str):
            return str(build["BuildTime"])
        return None

    def section_bytes(self, section_type: SectionType) -> int:
        """Return the summed payload size of every section of one type."""
        return sum(s.size for s in self.sections if s.type == section_type)

    def measurements(self) -> dict[str, str]:
        """Return the PCRs keyed as `nitro-cli build-enclave` prints them."""
        result = {
            "HashAlgorithm": "Sha384 { ... }",
            "PCR0": self.pcr0,
            "PCR1": self.pcr1,
            "PCR2": self.pcr2,
        }
        if self.pcr8 is not None:
            result["PCR8"] = self.pcr8
        return result

    def to_dict(self) -> dict[str, Any]:
        result: dict[str, Any] = {
            "path": str(self.path),
            "pcr0": self.pcr0,
            "pcr1": self.pcr1,
            "pcr2": self.pcr2,
            "sha256": self.sha256,
            "size": self.size,
            "version": self.version,
            "arch": "aarch64" if self.arm64 else "x86_64",
            "default_mem": self.default_mem,
            "default_cpus": self.default_cpus,
            "crc32": f"{self.crc32:08x}",
            "kernel_size": self.section_bytes(SectionType.KERNEL),
            "ramdisk_size": self.section_bytes(SectionType.RAMDISK),
            "sections": [section.to_dict() for section in self.sections],
            "sample": self.sample,
            "metadata": self.metadata,
        }
        if self.pcr8 is not None:
            result["pcr8"] = self.pcr8
        return result


# NOTE: the PCRs follow nitro-cli's source and match an independent
# computation in the tests, but no nitro-cli-built EIF has been compared yet.
def pcr_from_digest(digest: bytes) -> str:
    """Extend a zeroed PCR with one SHA-384 digest, as the Nitro hypervisor does."""
    return hashlib.sha384(bytes(PCR_SIZE) + digest).hexdigest()


def inspect_eif(path: Path, *, chunk_size: int = DEFAULT_CHUNK_SIZE) -> EifInfo:
    """Validate an EIF and compute its PCRs, SHA-256 and layout in one read.

    Raise EifError for a file that is not an EIF, is truncated, has a section
    table that disagrees with its sections, an unknown section type, more
    than 32 sections, no kernel section, or a CRC32 mismatch.
    """
    path = Path(path)
    try:
        stream = path.open("rb", buffering=0)
    except FileNotFoundError:
        raise EifError(f"EIF {path} not found: check the path") from None
    except IsADirectoryError:
        raise EifError(f"EIF {path} is a directory: pass the .eif file") from None
    except PermissionError:
        raise EifError(f"EIF {path} is not readable: check its permissions") from None
    except OSError as error:
        raise EifError(f"EIF {path} cannot be opened: {error.strerror}") from None
    with stream, _Workers() as workers:
        return _Reader(path, stream, workers, chunk_size).read()


class _Workers:
    """Three single-thread executors; each runs its tasks in submission order."""

    def __init__(self) -> None:
        self.pcr0 = ThreadPoolExecutor(1, thread_name_prefix="eif-pcr0")
        self.pcr2 = ThreadPoolExecutor(1, thread_name_prefix="eif-pcr2")
        self.whole = ThreadPoolExecutor(1, thread_name_prefix="eif-sha256")
        self._pending: deque[Future[Any]] = deque()

    def submit(
        self, executor: ThreadPoolExecutor, task: Callable[..., Any], *args: Any
    ) -> Future[Any]:
        future = executor.submit(task, *args)
        self._pending.append(future)
        # Back pressure: wait for the oldest task so buffers stay bounded.
        while len(self._pending) > MAX_PENDING:
            self._pending.popleft().result()
        return future

    def drain(self) -> None:
        while self._pending:
            self._pending.popleft().result()

    def __enter__(self) -> _Workers:
        return self

    def __exit__(self, *exc_info: object) -> None:
        for executor in (self.pcr0, self.pcr2, self.whole):
            executor.shutdown(wait=True, cancel_futures=True)


class _Digests:
    """The hash states; each attribute is touched only by its own worker."""

    def __init__(self) -> None:
        self.sha256 = hashlib.sha256()
        self.crc32 = 0
        # PCR0's hasher. Until the second ramdisk starts it is also PCR1's.
        self.image = hashlib.sha384()
        self.bootstrap: Any = None
        self.app = hashlib.sha384()

    def update_whole(self, data: bytes, crc: bool) -> None:
        self.sha256.update(data)
        if crc:
            self.crc32 = zlib.crc32(data, self.crc32)

    def split_bootstrap(self) -> None:
        self.bootstrap = self.image.copy()


class _Reader:
    def __init__(
        self, path: Path, stream: BinaryIO, workers: _Workers, chunk_size: int
    ) -> None:
        self.path = path
        self.stream = stream
        self.workers = workers
        self.chunk_size = chunk_size
        self.digests = _Digests()
        # Set once the second ramdisk starts and PCR1's state is copied.
        self.split: Future[Any] | None = None
        self.position = 0
        self.file_size = os.fstat(stream.fileno()).st_size

    def fail(self, message: str) -> EifError:
        return EifError(f"{self.path}: {message}")

    def read_exact(self, count: int, part: str) -> bytes:
        # A raw read may return fewer bytes than requested before the end.
        pieces = []
        got = 0
        while got < count:
            piece = self.stream.read(count - got)
            if not piece:
                raise self.fail(
                    f"truncated: the file ends at byte {self.position + got} "
                    f"inside the {part}; copy or build the EIF again"
                )
            pieces.append(piece)
            got += len(piece)
        self.position += count
        return pieces[0] if len(pieces) == 1 else b"".join(pieces)

    def read(self) -> EifInfo:
        header = self.read_header()
        version, flags, mem, cpus, count, offsets, sizes, crc = header
        self.check_table(count, offsets, sizes)
        sections, metadata, certificate = self.read_sections(count, offsets, sizes)
        self.workers.drain()

        digests = self.digests
        if digests.crc32 != crc:
            raise self.fail(
                f"CRC32 mismatch: the header stores {crc:08x} but the content "
                f"gives {digests.crc32:08x}; the file is damaged or was edited, "
                "so copy or build it again"
            )

        bootstrap = digests.bootstrap or digests.image
        pcr8 = None
        if certificate is not None:
            pcr8 = pcr_from_digest(hashlib.sha384(certificate).digest())
        info = EifInfo(
            path=self.path,
            size=self.file_size,
            sha256=digests.sha256.hexdigest(),
            version=version,
            flags=flags,
            default_mem=mem,
            default_cpus=cpus,
            crc32=crc,
            sections=tuple(sections),
            pcr0=pcr_from_digest(digests.image.digest()),
            pcr1=pcr_from_digest(bootstrap.digest()),
            pcr2=pcr_from_digest(digests.app.digest()),
            pcr8=pcr8,
            metadata=metadata,
        )
        log.debug("inspected %s: %d sections, PCR0 %s", self.path, count, info.pcr0)
        return info

    def read_header(self) -> tuple[Any, ...]:
        if self.file_size < len(MAGIC):
            raise self.fail(f"not an EIF: the file has {self.file_size} bytes")
        magic = self.stream.read(len(MAGIC))
        self.stream.seek(0)
        if magic != MAGIC:
            raise self.fail(
                f"not an EIF: the file starts with {magic.hex()} where an EIF "
                f"starts with {MAGIC.hex()} ('.eif'); pass an enclave image file"
            )

        if self.file_size < HEADER_SIZE:
            raise self.fail(
                f"truncated: {self.file_size} bytes, shorter than the "
                f"{HEADER_SIZE}-byte EIF header; copy or build the EIF again"
            )
        raw = self.read_exact(HEADER_SIZE, "header")
        # The CRC32 covers every byte of the file except its own field.
        self.workers.submit(
            self.workers.whole, self.digests.update_whole, raw[:CRC_OFFSET], True
        )
        self.workers.submit(
            self.workers.whole, self.digests.update_whole, raw[CRC_OFFSET:], False
        )

        fields = struct.unpack(HEADER_FORMAT, raw)
        version, flags, mem, cpus, _reserved, count = fields[1:7]
        offsets = fields[7 : 7 + MAX_SECTIONS]
        sizes = fields[7 + MAX_SECTIONS : 7 + 2 * MAX_SECTIONS]
        crc = fields[-1]
        if version not in SUPPORTED_VERSIONS:
            raise self.fail(
                f"unsupported EIF version {version}: this reader handles versions "
                f"{SUPPORTED_VERSIONS.start} to {SUPPORTED_VERSIONS.stop - 1}"
            )
        return version, flags, mem, cpus, count, offsets, sizes, crc

    def check_table(
        self, count: int, offsets: tuple[int, ...], sizes: tuple[int, ...]
    ) -> None:
        if count > MAX_SECTIONS:
            raise self.fail(
                f"the header lists {count} sections, more than the format's "
                f"maximum of {MAX_SECTIONS}; the file is damaged"
            )
        if count == 0:
            raise self.fail("no kernel section: the header lists no sections")
        expected = HEADER_SIZE
        for index in range(count):
            end = offsets[index] + SECTION_HEADER_SIZE + sizes[index]
            if end > self.file_size:
                raise self.fail(
                    f"section {index} (offset {offsets[index]}, size "
                    f"{sizes[index]}) ends at byte {end}, beyond the end of the "
                    f"file at {self.file_size}; the file is truncated or its "
                    "section table is damaged"
                )
            if offsets[index] != expected:
                raise self.fail(
                    f"section {index} starts at offset {offsets[index]}, but "
                    f"the previous section ends at {expected}; sections must be "
                    "contiguous, so the section table is damaged"
                )
            expected = end
        if expected != self.file_size:
            raise self.fail(
                f"{self.file_size - expected} bytes follow the last section at "
                f"byte {expected}; the file is damaged or was appended to"
            )

    def read_sections(
        self, count: int, offsets: tuple[int, ...], sizes: tuple[int, ...]
    ) -> tuple[list[Section], dict[str, Any] | None, bytes | None]:
        sections: list[Section] = []
        metadata: dict[str, Any] | None = None
        certificate: bytes | None = None
        ramdisks = 0
        for index in range(count):
            raw = self.read_exact(SECTION_HEADER_SIZE, f"header of section {index}")
            self.workers.submit(
                self.workers.whole, self.digests.update_whole, raw, True
            )
            type_code, _flags, size = struct.unpack(SECTION_HEADER_FORMAT, raw)
            section_type = self.section_type(index, type_code)
            if size != sizes[index]:
                raise self.fail(
                    f"section {index} ({section_type.name.lower()}) header gives "
                    f"size {size}, but the section table gives {sizes[index]}; "
                    "the file is damaged"
                )
            if section_type == SectionType.RAMDISK:
                ramdisks += 1
                if ramdisks == 2:
                    # PCR1 stops growing here: keep its state apart from PCR0.
                    self.split = self.workers.submit(
                        self.workers.pcr0, self.digests.split_bootstrap
                    )
            kept = self.read_payload(index, section_type, size, ramdisks)
            if section_type == SectionType.METADATA:
                metadata = self.parse_metadata(index, kept)
            elif section_type == SectionType.SIGNATURE and certificate is None:
                certificate = self.parse_signature(index, kept)
            sections.append(Section(section_type, offsets[index], size))
        if not any(s.type == SectionType.KERNEL for s in sections):
            raise self.fail(
                "no kernel section: an EIF needs one to boot; build it with "
                "nitro-cli build-enclave"
            )
        return sections, metadata, certificate

    def section_type(self, index: int, code: int) -> SectionType:
        try:
            return SectionType(code)
        except ValueError:
            known = ", ".join(f"{t.value} {t.name.lower()}" for t in SectionType)
            raise self.fail(
                f"section {index} has unknown type {code} (known: {known}); the "
                "file is damaged or from a newer format"
            ) from None

    def read_payload(
        self, index: int, section_type: SectionType, size: int, ramdisks: int
    ) -> bytes:
        """Hand the payload to the workers; return it for parsed sections."""
        workers, digests = self.workers, self.digests
        parsed = section_type in (SectionType.METADATA, SectionType.SIGNATURE)
        if parsed and size > MAX_PARSED_SECTION:
            raise self.fail(
                f"section {index} ({section_type.name.lower()}) has {size} bytes, "
                f"more than the {MAX_PARSED_SECTION} this reader parses; the "
                "file is damaged"
            )
        measured = section_type in (
            SectionType.KERNEL,
            SectionType.CMDLINE,
            SectionType.RAMDISK,
        )
        kept: list[bytes] = []
        remaining = size
        while remaining:
            chunk = self.read_exact(
                min(remaining, self.chunk_size), f"payload of section {index}"
            )
            remaining -= len(chunk)
            workers.submit(workers.whole, digests.update_whole, chunk, True)
            if parsed:
                kept.append(chunk)
            if not measured:
                continue
            workers.submit(workers.pcr0, digests.image.update, chunk)
            if self.split is None:
                continue
            if section_type == SectionType.RAMDISK:
                workers.submit(workers.pcr2, digests.app.update, chunk)
            else:
                # A kernel or cmdline after the second ramdisk still goes
                # into PCR1, as nitro-cli measures it.
                workers.submit(
                    workers.pcr2, _update_bootstrap, self.split, digests, chunk
                )
        return b"".join(kept)

    def parse_metadata(self, index: int, payload: bytes) -> dict[str, Any]:
        try:
            metadata = json.loads(payload)
        except (UnicodeDecodeError, json.JSONDecodeError) as error:
            raise self.fail(
                f"section {index} (metadata) is not valid JSON ({error}); the "
                "file is damaged"
            ) from None
        if not isinstance(metadata, dict):
            raise self.fail(
                f"section {index} (metadata) is JSON but not an object; the "
                "file is damaged"
            )
        return metadata

    def parse_signature(self, index: int, payload: bytes) -> bytes:
        """Return the DER form of the first signing certificate."""
        try:
            return signing_certificate_der(payload)
        except ValueError as error:
            raise self.fail(
                f"section {index} (signature) is invalid: {error}; sign the EIF "
                "again with nitro-cli"
            ) from None


def _update_bootstrap(split: Future[Any], digests: _Digests, chunk: bytes) -> None:
    # The copy runs on the PCR0 worker, so this PCR2 worker task waits for it.
    split.result()
    digests.bootstrap.update(chunk)


_PEM = re.compile(rb"-----BEGIN CERTIFICATE-----(.+?)-----END CERTIFICATE-----", re.S)


def signing_certificate_der(payload: bytes) -> bytes:
    """Return the DER certificate from a signature section's CBOR payload.

    nitro-cli stores a CBOR array of maps with `signing_certificate` (PEM
    bytes) and `signature` (a COSE_Sign1); serde writes each byte string as
    an array of integers. PCR8 measures the first certificate.
    """
    import cbor2

    try:
        entries = cbor2.loads(payload)
    except (cbor2.CBORDecodeError, ValueError, TypeError) as error:
        raise ValueError(f"not CBOR: {error}") from None
    if not isinstance(entries, list) or not entries:
        raise ValueError("expected a non-empty CBOR array of signatures")
    first = entries[0]
    if not isinstance(first, dict) or "signing_certificate" not in first:
        raise ValueError("the first signature has no signing_certificate")
    pem = first["signing_certificate"]
    if isinstance(pem, list):
        try:
            pem = bytes(pem)
        except (TypeError, ValueError):
            raise ValueError("signing_certificate is not a byte array") from None
    if not isinstance(pem, bytes):
        raise ValueError("signing_certificate is not a byte array")
    # NOTE: nitro-cli re-encodes the parsed certificate to DER; the PEM body
    # is the same bytes for any certificate in canonical DER, as X.509 requires.
    match = _PEM.search(pem)
    if match is None:
        raise ValueError("signing_certificate contains no PEM certificate")
    try:
        return base64.b64decode(b"".join(match.group(1).split()), validate=True)
    except binascii.Error:
        raise ValueError("signing_certificate has invalid base64") from None


def summary_rows(info: EifInfo) -> list[tuple[str, Any]]:
    """Return the label and value rows `enclave.describe` prints."""
    mib = 1 << 20
    rows: list[tuple[str, Any]] = [
        ("file", info.path),
        ("size", f"{info.size} bytes ({info.size / mib:.1f} MiB)"),
        ("sha256", info.sha256),
        (
            "format",
            f"EIF version {info.version}, {'aarch64' if info.arm64 else 'x86_64'}",
        ),
        ("default memory", f"{info.default_mem // mib} MiB"),
        ("default CPUs", info.default_cpus),
        ("PCR0", info.pcr0),
        ("PCR1", info.pcr1),
        ("PCR2", info.pcr2),
        ("PCR8", info.pcr8 or "unsigned"),
        ("sample", "yes: does not boot on Nitro" if info.sample else "no"),
    ]
    if info.build_time:
        rows.append(("build time", info.build_time))
    for index, section in enumerate(info.sections):
        rows.append(
            (
                f"section {index}",
                f"{section.name:<9} offset {section.offset:>12} "
                f"size {section.size:>12}",
            )
        )
    return rows
