"""The release manifest: what identifies a release of the notary."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

from infra import tags


@dataclass(frozen=True)
class ReleaseManifest:
    """The identity of one release, written into the image and onto the AMI.

    PCRs are lower-case hex, as nitro-cli prints them.
    """

    version: str
    git_commit: str
    eif_sha256: str
    pcr0: str
    pcr1: str
    pcr2: str
    build_time: str
    sample: bool
    pcr8: str | None = None

    @property
    def release_id(self) -> str:
        """Return the release id: version, short commit and short PCR0.

        It only uses characters that AMI, launch template and Auto Scaling
        group names all accept.
        """
        return f"{self.version}-{self.git_commit[:7]}-{self.pcr0[:8]}"

    def to_json(self) -> str:
        return json.dumps({"release_id": self.release_id, **asdict(self)}, indent=2)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ReleaseManifest:
        names = {field.name for field in fields(cls)}
        return cls(**{key: value for key, value in data.items() if key in names})

    @classmethod
    def load(cls, path: Path) -> ReleaseManifest:
        return cls.from_dict(json.loads(path.read_text()))

    def image_tags(self) -> dict[str, str]:
        """Return the tags that carry this release on an AMI."""
        result = {
            tags.RELEASE: self.release_id,
            tags.VERSION: self.version,
            tags.GIT_COMMIT: self.git_commit,
            tags.EIF_SHA256: self.eif_sha256,
            tags.PCR0: self.pcr0,
            tags.PCR1: self.pcr1,
            tags.PCR2: self.pcr2,
            tags.BUILD_TIME: self.build_time,
            tags.SAMPLE: "true" if self.sample else "false",
        }
        return result

    @classmethod
    def from_image_tags(cls, image_tags: dict[str, str]) -> ReleaseManifest:
        return cls(
            version=image_tags[tags.VERSION],
            git_commit=image_tags[tags.GIT_COMMIT],
            eif_sha256=image_tags[tags.EIF_SHA256],
            pcr0=image_tags[tags.PCR0],
            pcr1=image_tags[tags.PCR1],
            pcr2=image_tags[tags.PCR2],
            build_time=image_tags[tags.BUILD_TIME],
            sample=image_tags[tags.SAMPLE] == "true",
        )
