"""The bake: turn a release (an EIF plus the config) into a machine image.

Each step is a function a test can call alone. Both targets resolve the EIF,
make the release manifest, check for an AMI to reuse and render the staging
folder. Then:

- target local: unpack the cached base root, provision it through chroot
  (Packer's null builder), run the testinfra suite with its chroot backend
  and archive the root. Last, the template's amazon-ebs source registers the
  AMI record in the emulator and boto3 finishes it.
- target aws: amazon-ebs builds the AMI from Amazon Linux 2023 over SSH and
  runs testinfra before lockdown, then boto3 finishes the AMI.

`--force` rebuilds a release that already has an AMI. Packer's
force_deregister removes the old AMI and its snapshots only after the new
image passed provisioning and testinfra, just before the new one is created.
If finishing the new AMI fails after that, it is deregistered too, so the
release has no AMI until the next bake. Copies of the old AMI in other
regions are left to the copy stage.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from botocore.exceptions import ClientError
from botocore.parsers import ResponseParserError

from enclave.build import manifest_for_eif, require_real_eif
from enclave.eif import inspect_eif
from enclave.eif_writer import write_sample_eif
from enclave.manifest import ReleaseManifest
from healthcheck.config import HealthConfig
from infra import packer, rootfs, tags
from infra.aws import EMULATOR_CREDENTIALS, Aws, error_code
from infra.config import REPO_ROOT, Config
from infra.errors import UserError
from infra.releases import home_region

log = logging.getLogger(__name__)

TEMPLATE = REPO_ROOT / "packer" / "notary.json"
BUILD_DIR = REPO_ROOT / "build"
IMAGE_TESTS = REPO_ROOT / "tests" / "image"
# Tag the template puts on a new AMI until boto3 has finished it. An AMI that
# still carries it comes from an interrupted bake.
INCOMPLETE_TAG = "notary:bake"
EIF_PATH = "/opt/notary/enclave.eif"


@dataclass(frozen=True)
class BakeOptions:
    force: bool = False
    eif: Path | None = None
    keep_work: bool = False
    build_dir: Path = BUILD_DIR
    cache_dir: Path = BUILD_DIR / "cache"
    packer_timeout_seconds: float = 3600.0
    testinfra_timeout_seconds: float = 600.0


@dataclass(frozen=True)
class BakeResult:
    release_id: str
    region: str
    image_id: str
    reused: bool
    archive: Path | None = None
    archive_sha256: str | None = None
    archive_bytes: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "release_id": self.release_id,
            "region": self.region,
            "image_id": self.image_id,
            "reused": self.reused,
            "archive": str(self.archive) if self.archive else None,
            "archive_sha256": self.archive_sha256,
            "archive_bytes": self.archive_bytes,
        }


# Inputs.


def require_root_for(config: Config) -> None:
    """Raise UserError for a local bake without root, before anything runs."""
    if config.target == "local":
        rootfs.require_root("the local bake")


def resolve_eif(config: Config, *, eif: Path | None, work_dir: Path) -> Path:
    """Return the EIF to bake: `eif`, else enclave.eif, else (target local
    only) a freshly written sample EIF."""
    path = eif or config.enclave.eif
    if path is None:
        if config.target == "aws":
            raise UserError(
                "no EIF for target aws: set enclave.eif in the config or pass "
                "--eif FILE (build one with invoke enclave.build)"
            )
        work_dir.mkdir(parents=True, exist_ok=True)
        sample = write_sample_eif(work_dir / "sample.eif", version=config.version)
        log.info("No enclave.eif set: baking the sample EIF %s", sample)
        return sample
    if not Path(path).is_file():
        raise UserError(
            f"EIF {path} not found: build it with invoke enclave.build or fix "
            "enclave.eif / --eif"
        )
    return Path(path)


def git_commit(repo: Path = REPO_ROOT) -> str:
    """Return the commit of the working tree the release is baked from."""
    # NOTE: uncommitted changes are not part of the release id, so a bake from
    # a dirty tree carries the id of its last commit.
    try:
        completed = subprocess.run(
            ["git", "-C", str(repo), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
        )
    except (OSError, subprocess.CalledProcessError):
        raise UserError(
            f"cannot read the git commit of {repo}: bake from a git checkout"
        ) from None
    return completed.stdout.strip()


def release_manifest(config: Config, eif: Path, *, commit: str) -> ReleaseManifest:
    """Return the manifest of `eif`, rejecting the sample EIF for target aws."""
    require_real_eif(inspect_eif(eif), config.target)
    return manifest_for_eif(eif, version=config.version, git_commit=commit)


def ami_name(config: Config, manifest: ReleaseManifest) -> str:
    return f"{config.project}-{manifest.release_id}"


# Reuse.


def find_image(ec2: Any, name: str) -> dict[str, Any] | None:
    """Return this account's AMI called `name`, or None."""
    images = ec2.describe_images(
        Owners=["self"], Filters=[{"Name": "name", "Values": [name]}]
    )["Images"]
    return images[0] if images else None


def check_reuse(
    ec2: Any, *, name: str, release_id: str, region: str, force: bool
) -> str | None:
    """Return the id of a finished AMI of this release to reuse, or None.

    Raises UserError when an unfinished AMI of an interrupted bake has the
    name, unless `force` lets Packer replace it.
    """
    image = find_image(ec2, name)
    if image is None:
        return None
    image_tags = tags.from_list(image.get("Tags"))
    finished = (
        image_tags.get(tags.RELEASE) == release_id
        and INCOMPLETE_TAG not in image_tags
        and image.get("State") == "available"
    )
    if force:
        log.info("Replacing AMI %s (%s) because of --force", image["ImageId"], name)
        return None
    if not finished:
        raise UserError(
            f"AMI {image['ImageId']} named {name} in {region} is left from an "
            "unfinished bake: rerun with --force to replace it"
        )
    return str(image["ImageId"])


# Staging: every value the provisioning scripts install, rendered here.


def enclave_run_config(config: Config) -> dict[str, Any]:
    """Return the nitro-cli run-enclave config, with debug mode always off."""
    return {
        "eif_path": EIF_PATH,
        "memory_mib": config.enclave.memory_mib,
        "cpu_count": config.enclave.cpu_count,
        "enclave_cid": config.enclave.cid,
        "debug_mode": False,
        "enclave_name": config.enclave.name,
    }


def health_config(config: Config) -> HealthConfig:
    return HealthConfig(
        port=config.enclave.health_port,
        notary_host="127.0.0.1",
        notary_port=config.enclave.notary_port,
        notary_tls=config.enclave.notary_tls,
        enclave_name=config.enclave.name,
    )


def render_staging(
    config: Config, manifest: ReleaseManifest, *, eif: Path, staging: Path
) -> Path:
    """Write the folder the provisioning scripts install from."""
    if staging.exists():
        shutil.rmtree(staging)
    etc = staging / "etc"
    etc.mkdir(parents=True)
    shutil.copyfile(eif, staging / "enclave.eif")

    (etc / "release.json").write_text(manifest.to_json() + "\n")
    (etc / "enclave.json").write_text(
        json.dumps(enclave_run_config(config), indent=2) + "\n"
    )
    (etc / "healthcheck.json").write_text(health_config(config).to_json())
    (etc / "allocator.yaml").write_text(
        "---\n"
        f"memory_mib: {config.enclave.memory_mib}\n"
        f"cpu_count: {config.enclave.cpu_count}\n"
    )
    (etc / "bridge.env").write_text(
        f"NOTARY_PORT={config.enclave.notary_port}\n"
        f"ENCLAVE_CID={config.enclave.cid}\n"
        f"VSOCK_PORT={config.enclave.vsock_port}\n"
    )
    (etc / "ports.nft").write_text(
        f"define NOTARY_PORT = {config.enclave.notary_port}\n"
        f"define HEALTH_PORT = {config.enclave.health_port}\n"
    )

    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    shutil.copytree(
        REPO_ROOT / "healthcheck", staging / "lib" / "healthcheck", ignore=ignore
    )
    shutil.copytree(TEMPLATE.parent / "files", staging / "files")
    shutil.copytree(TEMPLATE.parent / "scripts", staging / "scripts")
    return staging


# The local root filesystem.


def provision_local(
    *, root: Path, staging: Path, timeout: float = 900.0
) -> packer.BuildResult:
    """Provision `root` through chroot with the template's local source."""
    return packer.run(
        "build",
        TEMPLATE,
        only=["local"],
        variables={"root_dir": str(root), "staging_dir": str(staging)},
        timeout=timeout,
    )


def run_testinfra(
    host: str,
    *,
    expected_manifest: Path | None = None,
    extra: tuple[str, ...] = (),
    timeout: float = 600.0,
) -> None:
    """Run the image test suite against `host` (a testinfra host spec)."""
    command = [
        sys.executable,
        "-m",
        "pytest",
        str(IMAGE_TESTS),
        "-q",
        "-p",
        "no:cacheprovider",
        f"--hosts={host}",
        *extra,
    ]
    if expected_manifest is not None:
        command.append(f"--expected-manifest={expected_manifest}")
    log.info("Running the image tests against %s", host)
    try:
        completed = subprocess.run(
            command, capture_output=True, text=True, timeout=timeout, cwd=REPO_ROOT
        )
    except subprocess.TimeoutExpired:
        raise UserError(
            f"the image tests timed out after {timeout:.0f} s against {host}"
        ) from None
    lines = completed.stdout.strip().splitlines()
    for line in lines:
        log.debug("testinfra: %s", line)
    if completed.returncode == 0:
        return
    failed = [line for line in lines if line.startswith(("FAILED", "ERROR"))]
    if failed:
        summary = failed[0]
    elif lines:
        summary = lines[-1]
    else:
        summary = f"pytest exit status {completed.returncode}"
    raise UserError(
        f"the image tests failed ({len(failed)} failed), so no AMI is "
        f"registered: {summary}"
    )


def build_local_root(
    config: Config,
    manifest: ReleaseManifest,
    *,
    eif: Path,
    work_dir: Path,
    cache_dir: Path,
    timeout: float = 900.0,
) -> Path:
    """Return a provisioned root filesystem under `work_dir`."""
    staging = render_staging(config, manifest, eif=eif, staging=work_dir / "staging")
    base = rootfs.base_root(cache_dir=cache_dir)
    root = work_dir / "root"
    if root.exists():
        shutil.rmtree(root)
    rootfs.extract(base.path, root)
    provision_local(root=root, staging=staging, timeout=timeout)
    return root


# Registration.


def packer_environment(aws: Aws) -> dict[str, str]:
    """Return the environment for an amazon-ebs build.

    For the emulator every AWS_ variable of this process is dropped and the
    emulator's credentials are set, so no real credential can reach Packer.
    """
    if aws.local:
        env = {
            key: value
            for key, value in os.environ.items()
            if not key.startswith("AWS_")
        }
        env["AWS_ACCESS_KEY_ID"] = EMULATOR_CREDENTIALS["aws_access_key_id"]
        env["AWS_SECRET_ACCESS_KEY"] = EMULATOR_CREDENTIALS["aws_secret_access_key"]
        env["AWS_SESSION_TOKEN"] = EMULATOR_CREDENTIALS["aws_session_token"]
        return env
    # NOTE: Packer gets the profile only, so it does not assume a role_arn set
    # on the home region. The boto3 steps after the build do assume it.
    env = dict(os.environ)
    if aws.config.profile:
        env["AWS_PROFILE"] = aws.config.profile
    return env


def amazon_ebs_variables(
    aws: Aws, *, name: str, staging: Path | None, force: bool
) -> dict[str, str]:
    config = aws.config
    variables = {
        "region": home_region(config),
        "ami_name": name,
        "project": config.project,
        "instance_type": config.instance_type_for(home_region(config)),
        "force_deregister": "true" if force else "false",
        "python": sys.executable,
        "staging_dir": str(staging or ""),
    }
    if aws.local:
        # Against the emulator the source only registers the AMI record.
        variables |= {
            "communicator": "none",
            "remote_provision": "0",
            "emulator": "true",
            "ec2_endpoint": aws.endpoint_url or "",
        }
    return variables


def register_image(
    aws: Aws,
    *,
    name: str,
    staging: Path | None,
    force: bool,
    timeout: float = 3600.0,
) -> str:
    """Build or register the AMI with the template's amazon-ebs source."""
    env = packer_environment(aws)
    # The emulator's fixed credentials are no secret, and redacting "testing"
    # would garble ordinary progress lines.
    secrets: list[str] = []
    if not aws.local:
        names = ("AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN")
        secrets = [env[name] for name in names if name in env]
    result = packer.run(
        "build",
        TEMPLATE,
        only=["amazon-ebs"],
        variables=amazon_ebs_variables(aws, name=name, staging=staging, force=force),
        env=env,
        secrets=secrets,
        timeout=timeout,
    )
    region = home_region(aws.config)
    for artifact in result.artifacts:
        image_id = artifact.image_ids.get(region)
        if image_id:
            return image_id
    raise UserError(
        f"packer build reported no AMI in {region}: check its progress lines"
    )


def finish_image(
    ec2: Any,
    image_id: str,
    *,
    config: Config,
    manifest: ReleaseManifest,
    now: datetime | None = None,
) -> None:
    """Tag the new AMI and set ImdsSupport v2.0 and its deprecation time.

    The emulator stores no ImdsSupport and returns HTTP 500 for
    EnableImageDeprecation. With target local that gap is logged as a warning.
    """
    image = ec2.describe_images(ImageIds=[image_id])["Images"][0]
    base_image = tags.from_list(image.get("Tags")).get(tags.BASE_IMAGE, "")
    image_tags = config.resource_tags(**manifest.image_tags())
    image_tags[tags.BASE_IMAGE] = base_image
    ec2.create_tags(Resources=[image_id], Tags=tags.to_list(image_tags))
    ec2.modify_image_attribute(ImageId=image_id, ImdsSupport={"Value": "v2.0"})
    deprecate_at = (now or datetime.now(UTC)) + timedelta(
        days=config.deprecate_after_days
    )
    try:
        ec2.enable_image_deprecation(ImageId=image_id, DeprecateAt=deprecate_at)
    except ResponseParserError:
        if config.target != "local":
            raise
        log.warning(
            "The emulator does not implement EnableImageDeprecation: %s has no "
            "deprecation time (AWS would set %s)",
            image_id,
            deprecate_at.isoformat(),
        )
    # Last: an AMI without this tag is finished and may be reused.
    ec2.delete_tags(Resources=[image_id], Tags=[{"Key": INCOMPLETE_TAG}])


def deregister_image(ec2: Any, image_id: str) -> None:
    """Deregister an AMI and delete its snapshots."""
    images = ec2.describe_images(ImageIds=[image_id])["Images"]
    snapshots = [
        mapping["Ebs"]["SnapshotId"]
        for image in images
        for mapping in image.get("BlockDeviceMappings", [])
        if mapping.get("Ebs", {}).get("SnapshotId")
    ]
    ec2.deregister_image(ImageId=image_id)
    for snapshot in snapshots:
        ec2.delete_snapshot(SnapshotId=snapshot)
    log.info("Deregistered %s and deleted %d snapshots", image_id, len(snapshots))


def finish_or_remove(
    ec2: Any, image_id: str, *, config: Config, manifest: ReleaseManifest
) -> None:
    """Finish the new AMI, or deregister it so nothing half-made remains."""
    try:
        finish_image(ec2, image_id, config=config, manifest=manifest)
    except (ClientError, ResponseParserError) as error:
        log.error("Finishing %s failed (%s): deregistering it", image_id, error)
        deregister_image(ec2, image_id)
        raise UserError(
            f"setting tags, IMDSv2 or deprecation on {image_id} failed "
            f"({error_code(error) or type(error).__name__}): the AMI was "
            "deregistered; fix the cause and bake again"
        ) from None


# The whole bake.


def bake(
    config: Config,
    aws: Aws,
    *,
    options: BakeOptions = BakeOptions(),
    on_step: Callable[[str], None] | None = None,
) -> BakeResult:
    """Bake the config's release and return the AMI (and archive) made."""
    announce = on_step or (lambda step: log.info("Bake step: %s", step))
    require_root_for(config)
    packer.find_packer()

    region = home_region(config)
    work_dir = options.build_dir / "bake" / config.project
    eif = resolve_eif(config, eif=options.eif, work_dir=work_dir)
    announce("manifest")
    manifest = release_manifest(config, eif, commit=git_commit())
    name = ami_name(config, manifest)

    ec2 = aws.client("ec2", region)
    reused = check_reuse(
        ec2,
        name=name,
        release_id=manifest.release_id,
        region=region,
        force=options.force,
    )
    if reused:
        log.info(
            "Release %s already has AMI %s in %s: reusing it",
            manifest.release_id,
            reused,
            region,
        )
        return BakeResult(manifest.release_id, region, reused, reused=True)

    release_dir = work_dir / manifest.release_id
    try:
        if config.target == "local":
            return _bake_local(
                config,
                aws,
                manifest,
                eif=eif,
                name=name,
                release_dir=release_dir,
                options=options,
                announce=announce,
            )
        return _bake_aws(
            config,
            aws,
            manifest,
            eif=eif,
            name=name,
            release_dir=release_dir,
            options=options,
            announce=announce,
        )
    finally:
        if options.keep_work:
            log.info("Kept the staging folder and root filesystem in %s", release_dir)
        elif release_dir.exists():
            shutil.rmtree(release_dir)


def _bake_local(
    config: Config,
    aws: Aws,
    manifest: ReleaseManifest,
    *,
    eif: Path,
    name: str,
    release_dir: Path,
    options: BakeOptions,
    announce: Callable[[str], None],
) -> BakeResult:
    announce("base root and provisioning")
    root = build_local_root(
        config,
        manifest,
        eif=eif,
        work_dir=release_dir,
        cache_dir=options.cache_dir,
        timeout=options.packer_timeout_seconds,
    )
    announce("testinfra")
    expected = release_dir / "release.json"
    expected.write_text(manifest.to_json() + "\n")
    run_testinfra(
        f"chroot://{root}",
        expected_manifest=expected,
        timeout=options.testinfra_timeout_seconds,
    )
    announce("archive")
    archive = rootfs.archive(root, options.build_dir / "images" / f"{name}.tar.zst")
    announce("register")
    region = home_region(config)
    ec2 = aws.client("ec2", region)
    image_id = register_image(
        aws,
        name=name,
        staging=None,
        force=options.force,
        timeout=options.packer_timeout_seconds,
    )
    finish_or_remove(ec2, image_id, config=config, manifest=manifest)
    return BakeResult(
        manifest.release_id,
        region,
        image_id,
        reused=False,
        archive=archive.path,
        archive_sha256=archive.sha256,
        archive_bytes=archive.size,
    )


def _bake_aws(
    config: Config,
    aws: Aws,
    manifest: ReleaseManifest,
    *,
    eif: Path,
    name: str,
    release_dir: Path,
    options: BakeOptions,
    announce: Callable[[str], None],
) -> BakeResult:
    # NOTE: this path has never run on AWS, only with a stand-in ssh and the
    # emulator, because no machine here reaches AWS.
    announce("amazon-ebs")
    staging = render_staging(config, manifest, eif=eif, staging=release_dir / "staging")
    image_id = register_image(
        aws,
        name=name,
        staging=staging,
        force=options.force,
        timeout=options.packer_timeout_seconds,
    )
    region = home_region(config)
    ec2 = aws.client("ec2", region)
    finish_or_remove(ec2, image_id, config=config, manifest=manifest)
    return BakeResult(manifest.release_id, region, image_id, reused=False)
