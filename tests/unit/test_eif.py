"""EIF reader and writer: round trips, PCRs, and each kind of bad input."""

from __future__ import annotations

import datetime
import hashlib
import json
import struct
import tracemalloc
import zlib
from pathlib import Path

import cbor2
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from enclave.eif import (
    CRC_OFFSET,
    HEADER_SIZE,
    EifError,
    SectionType,
    inspect_eif,
)
from enclave.eif_writer import (
    SAMPLE_BUILD_TIME,
    SectionSource,
    filler,
    write_eif,
    write_sample_eif,
)
from infra.errors import UserError

KERNEL, CMDLINE, RAMDISK, SIGNATURE, METADATA = 1, 2, 3, 4, 5
# Byte offset of num_sections in the header.
COUNT_OFFSET = 26
# Byte offset of the first section-size entry in the header.
SIZES_OFFSET = 28 + 32 * 8


def pcr(data: bytes) -> str:
    """Compute a PCR from its measured bytes, independently of the reader."""
    inner = hashlib.sha384(data).digest()
    return hashlib.sha384(b"\0" * 48 + inner).hexdigest()


def expected_pcrs(sections: list[tuple[int, bytes]]) -> tuple[str, str, str]:
    """PCR0, PCR1, PCR2 as nitro-cli measures sections in file order."""
    image, bootstrap, app = b"", b"", b""
    ramdisks = 0
    for kind, payload in sections:
        if kind in (KERNEL, CMDLINE):
            image += payload
            bootstrap += payload
        elif kind == RAMDISK:
            image += payload
            if ramdisks == 0:
                bootstrap += payload
            else:
                app += payload
            ramdisks += 1
    return pcr(image), pcr(bootstrap), pcr(app)


def basic_sections() -> list[tuple[int, bytes]]:
    return [
        (KERNEL, b"kernel" * 100),
        (CMDLINE, b"console=ttyS0"),
        (METADATA, json.dumps({"ImageName": "test"}).encode()),
        (RAMDISK, b"bootstrap" * 50),
        (RAMDISK, b"application" * 70),
    ]


def rewrite_crc(path: Path) -> None:
    """Store the correct CRC32 after a test edited the file on purpose."""
    data = bytearray(path.read_bytes())
    crc = zlib.crc32(data[CRC_OFFSET + 4 :], zlib.crc32(data[:CRC_OFFSET]))
    data[CRC_OFFSET : CRC_OFFSET + 4] = struct.pack(">I", crc)
    path.write_bytes(bytes(data))


def patch(path: Path, offset: int, value: bytes) -> None:
    data = bytearray(path.read_bytes())
    data[offset : offset + len(value)] = value
    path.write_bytes(bytes(data))


def test_round_trip_sections(tmp_path: Path) -> None:
    sections = basic_sections()
    path = write_eif(
        tmp_path / "a.eif", sections=sections, default_mem=512 << 20, default_cpus=4
    )
    info = inspect_eif(path)
    assert [s.type for s in info.sections] == [kind for kind, _ in sections]
    assert [s.size for s in info.sections] == [len(p) for _, p in sections]
    assert info.sections[0].offset == HEADER_SIZE
    assert info.default_mem == 512 << 20
    assert info.default_cpus == 4
    assert info.version == 4
    assert info.metadata == {"ImageName": "test"}


def test_round_trip_payloads(tmp_path: Path) -> None:
    sections = basic_sections()
    path = write_eif(tmp_path / "a.eif", sections=sections)
    data = path.read_bytes()
    for section, (_, payload) in zip(inspect_eif(path).sections, sections, strict=True):
        start = section.offset + 12
        assert data[start : start + section.size] == payload


def test_pcrs_match_formula(tmp_path: Path) -> None:
    sections = basic_sections()
    info = inspect_eif(write_eif(tmp_path / "a.eif", sections=sections))
    pcr0, pcr1, pcr2 = expected_pcrs(sections)
    assert info.pcr0 == pcr0
    assert info.pcr1 == pcr1
    assert info.pcr2 == pcr2
    assert info.pcr8 is None


def test_pcrs_one_ramdisk(tmp_path: Path) -> None:
    sections = [(KERNEL, b"k"), (CMDLINE, b"c"), (RAMDISK, b"r")]
    info = inspect_eif(write_eif(tmp_path / "a.eif", sections=sections))
    assert info.pcr0 == info.pcr1
    assert info.pcr2 == pcr(b"")


def test_sha256_and_size(tmp_path: Path) -> None:
    path = write_eif(tmp_path / "a.eif", sections=basic_sections())
    info = inspect_eif(path)
    assert info.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    assert info.size == path.stat().st_size


def test_metadata_not_measured(tmp_path: Path) -> None:
    one = basic_sections()
    other = [(k, b'{"other": 1}' if k == METADATA else p) for k, p in one]
    first = inspect_eif(write_eif(tmp_path / "a.eif", sections=one))
    second = inspect_eif(write_eif(tmp_path / "b.eif", sections=other))
    assert first.pcr0 == second.pcr0
    assert first.sha256 != second.sha256


def test_streamed_source(tmp_path: Path) -> None:
    size = 3 * (1 << 20) + 17
    payload = b"".join(filler("ramdisk", size))
    streamed = SectionSource(RAMDISK, size, filler("ramdisk", size))
    path = write_eif(
        tmp_path / "a.eif", sections=[(KERNEL, b"k"), (CMDLINE, b"c"), streamed]
    )
    info = inspect_eif(path, chunk_size=4096)
    assert info.pcr0 == pcr(b"kc" + payload)


def test_reader_memory_bounded(tmp_path: Path) -> None:
    size = 24 << 20
    streamed = SectionSource(RAMDISK, size, filler("big", size))
    path = write_eif(tmp_path / "big.eif", sections=[(KERNEL, b"k"), streamed])
    tracemalloc.start()
    try:
        inspect_eif(path, chunk_size=256 << 10)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 8 << 20


def make_certificate() -> x509.Certificate:
    key = ec.generate_private_key(ec.SECP384R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "eif signer")])
    now = datetime.datetime(2025, 1, 1, tzinfo=datetime.UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(now)
        .not_valid_after(now + datetime.timedelta(days=1))
        .sign(key, hashes.SHA384())
    )


def test_pcr8_signed(tmp_path: Path) -> None:
    certificate = make_certificate()
    pem = certificate.public_bytes(serialization.Encoding.PEM)
    der = certificate.public_bytes(serialization.Encoding.DER)
    # serde_cbor writes Vec<u8> fields as arrays of integers.
    signature = cbor2.dumps([{"signing_certificate": list(pem), "signature": [1, 2]}])
    sections = [*basic_sections(), (SIGNATURE, signature)]
    info = inspect_eif(write_eif(tmp_path / "a.eif", sections=sections))
    assert info.pcr8 == pcr(der)
    assert info.measurements()["PCR8"] == pcr(der)


def test_signature_not_cbor(tmp_path: Path) -> None:
    sections = [*basic_sections(), (SIGNATURE, b"\xff\xff")]
    path = write_eif(tmp_path / "a.eif", sections=sections)
    with pytest.raises(EifError, match=r"section 5 \(signature\) is invalid"):
        inspect_eif(path)


def test_sample_deterministic(tmp_path: Path) -> None:
    first = write_sample_eif(tmp_path / "one.eif", version="1.2.3")
    second = write_sample_eif(tmp_path / "two.eif", version="1.2.3")
    assert first.read_bytes() == second.read_bytes()


def test_sample_version_changes_bytes(tmp_path: Path) -> None:
    first = write_sample_eif(tmp_path / "one.eif", version="1.2.3")
    second = write_sample_eif(tmp_path / "two.eif", version="1.2.4")
    assert first.read_bytes() != second.read_bytes()


def test_sample_valid_and_marked(tmp_path: Path) -> None:
    info = inspect_eif(write_sample_eif(tmp_path / "s.eif", version="1.2.3"))
    assert info.sample is True
    assert info.size < 1 << 20
    assert info.build_time == SAMPLE_BUILD_TIME
    assert info.metadata is not None
    assert info.metadata["ImageVersion"] == "1.2.3"


def test_not_sample_without_flag(tmp_path: Path) -> None:
    info = inspect_eif(write_eif(tmp_path / "a.eif", sections=basic_sections()))
    assert info.sample is False


def test_error_is_user_error() -> None:
    assert issubclass(EifError, UserError)


def test_wrong_magic(tmp_path: Path) -> None:
    path = tmp_path / "a.eif"
    path.write_bytes(b"\x7fELF" + bytes(600))
    with pytest.raises(EifError, match=r"not an EIF: the file starts with 7f454c46"):
        inspect_eif(path)


def test_tiny_file(tmp_path: Path) -> None:
    path = tmp_path / "a.eif"
    path.write_bytes(b".e")
    with pytest.raises(EifError, match="not an EIF: the file has 2 bytes"):
        inspect_eif(path)


def test_truncated_header(tmp_path: Path) -> None:
    path = write_eif(tmp_path / "a.eif", sections=basic_sections())
    path.write_bytes(path.read_bytes()[:300])
    with pytest.raises(EifError, match="truncated: 300 bytes, shorter than the 548"):
        inspect_eif(path)


def test_truncated_section(tmp_path: Path) -> None:
    path = write_eif(tmp_path / "a.eif", sections=basic_sections())
    path.write_bytes(path.read_bytes()[:-10])
    with pytest.raises(EifError, match=r"section 4 .* beyond the end of the file"):
        inspect_eif(path)


def test_section_beyond_end(tmp_path: Path) -> None:
    path = write_eif(tmp_path / "a.eif", sections=basic_sections())
    patch(path, SIZES_OFFSET + 4 * 8, struct.pack(">Q", 1 << 40))
    rewrite_crc(path)
    with pytest.raises(EifError, match=r"section 4 \(offset \d+, size 1099511627776"):
        inspect_eif(path)


def test_crc_mismatch(tmp_path: Path) -> None:
    path = write_eif(tmp_path / "a.eif", sections=basic_sections())
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(EifError, match="CRC32 mismatch: the header stores"):
        inspect_eif(path)


def test_crc_covers_header(tmp_path: Path) -> None:
    path = write_eif(tmp_path / "a.eif", sections=basic_sections())
    # default_cpus is not checked otherwise, so only the CRC32 catches it.
    patch(path, 16, struct.pack(">Q", 64))
    with pytest.raises(EifError, match="CRC32 mismatch"):
        inspect_eif(path)


def test_unknown_section_type(tmp_path: Path) -> None:
    sections = [(KERNEL, b"k"), (9, b"x"), (RAMDISK, b"r")]
    path = write_eif(tmp_path / "a.eif", sections=sections)
    with pytest.raises(EifError, match="section 1 has unknown type 9"):
        inspect_eif(path)


def test_invalid_section_type_zero(tmp_path: Path) -> None:
    path = write_eif(tmp_path / "a.eif", sections=[(KERNEL, b"k"), (0, b"x")])
    with pytest.raises(EifError, match="section 1 has unknown type 0"):
        inspect_eif(path)


def test_too_many_sections(tmp_path: Path) -> None:
    path = write_eif(tmp_path / "a.eif", sections=basic_sections())
    patch(path, COUNT_OFFSET, struct.pack(">H", 33))
    rewrite_crc(path)
    with pytest.raises(EifError, match="lists 33 sections, more than the format's"):
        inspect_eif(path)


def test_no_kernel(tmp_path: Path) -> None:
    path = write_eif(tmp_path / "a.eif", sections=[(CMDLINE, b"c"), (RAMDISK, b"r")])
    with pytest.raises(EifError, match="no kernel section: an EIF needs one"):
        inspect_eif(path)


def test_no_sections(tmp_path: Path) -> None:
    path = write_eif(tmp_path / "a.eif", sections=[])
    with pytest.raises(EifError, match="no kernel section: the header lists no"):
        inspect_eif(path)


def test_unsupported_version(tmp_path: Path) -> None:
    path = write_eif(tmp_path / "a.eif", sections=basic_sections(), version=9)
    with pytest.raises(EifError, match="unsupported EIF version 9"):
        inspect_eif(path)


def test_trailing_bytes(tmp_path: Path) -> None:
    path = write_eif(tmp_path / "a.eif", sections=basic_sections())
    path.write_bytes(path.read_bytes() + b"extra")
    with pytest.raises(EifError, match="5 bytes follow the last section"):
        inspect_eif(path)


def test_gap_between_sections(tmp_path: Path) -> None:
    path = write_eif(tmp_path / "a.eif", sections=basic_sections())
    offsets_start = 28
    patch(path, offsets_start + 8, struct.pack(">Q", 1000))
    with pytest.raises(EifError, match="section 1 starts at offset 1000"):
        inspect_eif(path)


def test_header_size_disagrees(tmp_path: Path) -> None:
    sections = [(KERNEL, b"kernel"), (RAMDISK, b"r")]
    path = write_eif(tmp_path / "a.eif", sections=sections)
    # Shrink the kernel's own size field; the table still gives 6.
    patch(path, HEADER_SIZE + 4, struct.pack(">Q", 5))
    with pytest.raises(EifError, match="header gives size 5, but the section table"):
        inspect_eif(path)


def test_metadata_not_json(tmp_path: Path) -> None:
    path = write_eif(tmp_path / "a.eif", sections=[(KERNEL, b"k"), (METADATA, b"{")])
    with pytest.raises(EifError, match=r"section 1 \(metadata\) is not valid JSON"):
        inspect_eif(path)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(EifError, match="not found: check the path"):
        inspect_eif(tmp_path / "absent.eif")


def test_writer_rejects_33_sections(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="at most 32"):
        write_eif(tmp_path / "a.eif", sections=[(RAMDISK, b"r")] * 33)


def test_writer_short_source(tmp_path: Path) -> None:
    source = SectionSource(RAMDISK, 10, (b"short",))
    with pytest.raises(ValueError, match="declared 10 bytes but its chunks hold 5"):
        write_eif(tmp_path / "a.eif", sections=[(KERNEL, b"k"), source])
    assert list(tmp_path.iterdir()) == []


json_payloads = st.dictionaries(
    st.text(max_size=5), st.integers(-10, 10), max_size=3
).map(lambda value: json.dumps(value).encode())
raw_section = st.tuples(
    st.sampled_from([KERNEL, CMDLINE, RAMDISK]), st.binary(max_size=200)
)
metadata_section = st.tuples(st.just(METADATA), json_payloads)
layouts = st.lists(st.one_of(raw_section, metadata_section), max_size=12).flatmap(
    lambda rest: st.integers(0, len(rest)).map(
        lambda at: [*rest[:at], (KERNEL, b"vmlinux"), *rest[at:]]
    )
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    sections=layouts,
    default_mem=st.integers(0, 2**64 - 1),
    default_cpus=st.integers(0, 2**64 - 1),
    chunk_size=st.integers(1, 300),
)
def test_random_layouts(
    tmp_path_factory: pytest.TempPathFactory,
    sections: list[tuple[int, bytes]],
    default_mem: int,
    default_cpus: int,
    chunk_size: int,
) -> None:
    path = tmp_path_factory.mktemp("layout") / "a.eif"
    write_eif(
        path, sections=sections, default_mem=default_mem, default_cpus=default_cpus
    )
    info = inspect_eif(path, chunk_size=chunk_size)
    assert [(s.type, s.size) for s in info.sections] == [
        (SectionType(kind), len(payload)) for kind, payload in sections
    ]
    assert (info.pcr0, info.pcr1, info.pcr2) == expected_pcrs(sections)
    assert info.default_mem == default_mem
    assert info.default_cpus == default_cpus
    assert info.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()


def test_symlink_loop_is_one_line(tmp_path: Path) -> None:
    loop = tmp_path / "loop.eif"
    loop.symlink_to(loop)
    with pytest.raises(EifError) as caught:
        inspect_eif(loop)

    assert "cannot be opened" in str(caught.value)
    assert "symbolic links" in str(caught.value)
